//! The WebSocket route `/v1/ws`: one reader task per socket that parses,
//! rate-limits and dispatches frames to the hub, and one writer task that
//! sends queued frames once the CDR writes they follow are committed.
//!
//! This is where the hub's [`Effects`] meet IO: [`Routing`] keeps the hub
//! beside a registry of sockets and the CDR queue, and applies each hub
//! operation's effects under the same lock (CDR writes first, then frames),
//! so that per-socket order and sequence numbers follow the order of the
//! hub's state changes. Timers become sleeping tasks that call back in.
//!
//! A panic in one socket's task ends that socket only: its registration is
//! undone by a drop guard, and the hub lock recovers from poisoning
//! ([`Shared::routing`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse as _, Response};
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, SplitStream, StreamExt};
use governor::{Quota, RateLimiter};
use softphone_protocol::{
    ClientFrame, ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage, close_code,
    parse_client_frame, valid_device_id,
};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument as _;

use crate::hub::{
    ConnCmd, ConnId, Effects, Hub, HubError, HubResult, LiveEvent, Outbound, Timer, WebCaller,
    WelcomeParts,
};
use crate::metrics::Metrics;
use crate::store::{AuthedUser, CdrQueue, CdrWrite, Role, TenantId, TokenRefusal, UserId};
use crate::{Shared, ice, now_ms};

/// Messages above this are not even read: the socket closes with 1009.
/// Between [`softphone_protocol::MAX_FRAME_BYTES`] and this, the frame is
/// answered with `frame_too_large` and the socket stays usable.
const HARD_LIMIT: usize = 256 * 1024;
/// Frames queued to one socket before it counts as too slow.
const QUEUE: usize = 256;
/// Rate-limited frames in a row before the socket is closed (4029).
const MAX_STRIKES: u32 = 100;
/// Time a single socket write may take before the socket is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket's writer, as the registry reaches it.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    /// Bounded queue to the writer task.
    pub tx: mpsc::Sender<ConnCmd>,
    /// Notified when the queue overflowed: the writer closes with 4008.
    pub kill: Arc<Notify>,
    /// The login the socket authenticated with ([`AuthedUser::login_id`]).
    pub login: String,
    /// Set once the socket was told to close for its login, so that a later
    /// sweep neither tells nor counts it again.
    pub closing: Arc<std::sync::atomic::AtomicBool>,
}

/// The hub, the sockets it routes to, and the CDR queue: everything one
/// routing step touches, behind one lock in [`Shared`].
pub(crate) struct Routing {
    /// The routing state machine.
    pub hub: Hub,
    /// Writers of the authenticated sockets, by connection id.
    pub sockets: HashMap<ConnId, ConnHandle>,
    /// Where CDR writes go, in the hub's sequence order.
    pub cdr: CdrQueue,
    /// The login of each endpoint in reconnect grace, by user and
    /// endpoint: a login that ends meanwhile signs it out
    /// ([`close_ended_logins`]).
    pub grace_logins: HashMap<(UserId, String), String>,
    /// The supervisors' live events of every tenant
    /// ([`crate::supervise`] filters and paces them).
    pub live: tokio::sync::broadcast::Sender<Arc<LiveEvent>>,
    metrics: Arc<Metrics>,
}

/// Live events kept for a supervisor's stream that is slow to read; one
/// that falls further behind is sent a fresh snapshot instead.
const LIVE_BACKLOG: usize = 4096;

impl Routing {
    /// An empty hub writing CDRs to `cdr`.
    pub fn new(cdr: CdrQueue, metrics: Arc<Metrics>) -> Self {
        Self {
            hub: Hub::new(),
            sockets: HashMap::new(),
            grace_logins: HashMap::new(),
            cdr,
            live: tokio::sync::broadcast::channel(LIVE_BACKLOG).0,
            metrics,
        }
    }

    /// Applies a hub operation's effects, in order: CDR writes into the
    /// queue, then frames to the sockets' writers (never blocking: a full
    /// queue tells that writer to close its socket with 4008; a frame for a
    /// socket that is gone is dropped), then live events to supervisors'
    /// streams (none listening: dropped). Returns the timers to arm.
    pub fn apply(&mut self, fx: Effects) -> Vec<Timer> {
        for (seq, write) in fx.cdr {
            if let CdrWrite::Ended { reason, .. } = &write {
                self.metrics
                    .calls_ended
                    .get_or_create(&vec![("reason", reason.as_str())])
                    .inc();
            }
            self.cdr.push(seq, write);
        }
        for (conn, cmd) in fx.frames {
            self.metrics.frames_out.inc();
            match self.sockets.get(&conn) {
                Some(h) => {
                    if h.tx.try_send(cmd).is_err() {
                        h.kill.notify_one();
                    }
                }
                None => tracing::debug!(conn, "frame for a socket that is gone"),
            }
        }
        for ev in fx.live {
            // Err: every stream went away since; nothing to tell.
            let _ = self.live.send(Arc::new(ev));
        }
        self.metrics
            .connections
            .set(i64::try_from(self.hub.connection_count()).unwrap_or(i64::MAX));
        self.metrics
            .calls_active
            .set(i64::try_from(self.hub.call_count()).unwrap_or(i64::MAX));
        fx.timers
    }
}

/// Runs one hub operation at the current time under the lock, applies its
/// effects, and arms its timers. A refusal changes nothing.
pub(crate) fn route(
    shared: &Arc<Shared>,
    op: impl FnOnce(&mut Hub, u64) -> HubResult,
) -> Result<(), HubError> {
    let timers = {
        let mut r = shared.routing();
        let fx = op(&mut r.hub, now_ms())?;
        r.apply(fx)
    };
    arm(shared, timers);
    Ok(())
}

/// The admission limiter of new sockets: `ws_admissions_per_sec`, bursts
/// of twice that.
pub(crate) fn admission_limiter(config: &crate::Config) -> governor::DefaultDirectRateLimiter {
    RateLimiter::direct(admission_quota(config.ws_admissions_per_sec))
}

/// The per-IP admission limiter: `ws_admissions_per_ip_per_sec`, bursts
/// of 2×.
pub(crate) fn ip_admission_limiter(
    config: &crate::Config,
) -> governor::DefaultKeyedRateLimiter<std::net::IpAddr> {
    RateLimiter::keyed(admission_quota(config.ws_admissions_per_ip_per_sec))
}

/// `per_sec` a second with bursts of twice that.
fn admission_quota(per_sec: u32) -> Quota {
    let n = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(n).allow_burst(n.saturating_mul(NonZeroU32::new(2).unwrap_or(n)))
}

/// `GET /v1/ws`: upgrades with small buffers (4 KiB read, unbuffered
/// writes) so that tens of thousands of idle sockets stay cheap. Over the
/// admission rate, the client IP's or the node's, the upgrade is refused
/// with `503 rate_limited` and `Retry-After: 1` (clients retry with their
/// backoff).
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    // The client's share first, so that a flood from one IP does not use
    // up the node's admissions.
    let ip = crate::http::client_ip(&shared.config, &headers, addr);
    if shared.ip_admissions.check_key(&ip).is_err() || shared.admissions.check().is_err() {
        shared.metrics.admissions_refused.inc();
        return crate::http::ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::RateLimited,
            "too many new connections; retry in a moment",
        )
        .retry_after(1)
        .into_response();
    }
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(HARD_LIMIT * 4)
        .max_message_size(HARD_LIMIT)
        .max_frame_size(HARD_LIMIT)
        .on_upgrade(move |socket| handle(socket, shared, addr))
}

type Sink = SplitSink<WebSocket, Message>;
type Stream = SplitStream<WebSocket>;

fn error_frame(
    code: ErrorCode,
    message: impl Into<String>,
    ref_id: Option<String>,
    call_id: Option<String>,
) -> String {
    ServerMessage::Error {
        code,
        message: message.into(),
        ref_id,
        call_id,
    }
    .to_json()
}

async fn send_direct(sink: &mut Sink, text: String) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn close(sink: &mut Sink, code: u16, reason: impl Into<String>) {
    let frame = CloseFrame {
        code,
        reason: reason.into().into(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

async fn handle(socket: WebSocket, shared: Arc<Shared>, addr: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let Some((who, endpoint_id)) = await_hello(&shared, &mut sink, &mut stream).await else {
        return;
    };
    let span = tracing::info_span!("ws", user = %who.user.user, tenant = %who.tenant, endpoint = %endpoint_id);
    serve_socket(sink, stream, shared, who, endpoint_id, addr)
        .instrument(span)
        .await;
}

/// An attached socket; dropping it (also while unwinding from a panic)
/// detaches it from the hub and the registry and arms its grace timers.
struct Attached {
    shared: Arc<Shared>,
    conn: ConnId,
    user: UserId,
    endpoint: String,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let timers = {
            let mut r = self.shared.routing();
            let handle = r.sockets.remove(&self.conn);
            let fx = r.hub.detach(self.conn, now_ms());
            // Still in calls: remember the login, so that a logout during
            // the grace ends them at once.
            if let Some(h) = handle
                && !h.login.is_empty()
                && r.hub.in_grace(self.user, &self.endpoint)
            {
                r.grace_logins
                    .insert((self.user, self.endpoint.clone()), h.login);
            }
            r.apply(fx)
        };
        arm(&self.shared, timers);
    }
}

/// Serves an authenticated socket until it closes.
async fn serve_socket(
    sink: Sink,
    mut stream: Stream,
    shared: Arc<Shared>,
    who: AuthedUser,
    endpoint_id: String,
    addr: SocketAddr,
) {
    tracing::info!(%addr, "connected");

    let (tx, rx) = mpsc::channel(QUEUE);
    let kill = Arc::new(Notify::new());
    let closing: Arc<std::sync::atomic::AtomicBool> = Arc::default();
    let handle = ConnHandle {
        tx: tx.clone(),
        kill: kill.clone(),
        login: who.login_id.clone(),
        closing: closing.clone(),
    };
    let parts = WelcomeParts {
        session_id: uuid::Uuid::new_v4().simple().to_string(),
        ice_servers: ice::ice_servers(&shared.config, &who.tenant, &who.user.user, now_ms()),
        heartbeat_ms: u64::try_from(shared.config.heartbeat.as_millis()).unwrap_or(u64::MAX),
    };
    let attached = {
        let mut r = shared.routing();
        let conn = r.hub.next_conn_id();
        r.sockets.insert(conn, handle);
        // Back from grace: the socket's own login counts from now on.
        r.grace_logins.remove(&(who.user_id, endpoint_id.clone()));
        let fx = r.hub.attach(conn, &who, &endpoint_id, parts, now_ms());
        let timers = r.apply(fx);
        drop(r);
        arm(&shared, timers);
        Attached {
            shared: shared.clone(),
            conn,
            user: who.user_id,
            endpoint: endpoint_id.clone(),
        }
    };
    let conn = attached.conn;
    let kill_reply = kill.clone();
    let mut writer = tokio::spawn(writer_task(
        sink,
        rx,
        kill,
        shared.committed.clone(),
        shared.metrics.clone(),
    ));

    let per_sec = shared.config.frames_per_sec;
    let quota = Quota::per_second(NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(per_sec.saturating_mul(4)).unwrap_or(NonZeroU32::MIN));
    let limiter = RateLimiter::direct(quota);
    let mut strikes = 0u32;
    let idle = shared.config.heartbeat.saturating_mul(3);
    let reply = |text: String| {
        if tx
            .try_send(ConnCmd::Frame(Outbound { text, after_seq: 0 }))
            .is_err()
        {
            // The client is not reading its frames: close it as too slow.
            kill_reply.notify_one();
        }
    };

    // Whether the client's side of the stream has ended (its close frame,
    // EOF or a read error); until then the server lingers after its own
    // close frame (below).
    let mut client_done = false;
    loop {
        let next = tokio::select! {
            _ = &mut writer => break,
            r = tokio::time::timeout(idle, stream.next()) => r,
        };
        let msg = match next {
            Err(_) => {
                let _ = tx.try_send(ConnCmd::Close(
                    close_code::IDLE_TIMEOUT,
                    "no frame for three heartbeats",
                ));
                break;
            }
            Ok(None) => {
                client_done = true;
                break;
            }
            Ok(Some(Err(e))) => {
                client_done = true;
                // tungstenite refuses a message over HARD_LIMIT with a capacity
                // error ("Message too long"); tell the client why we close.
                if e.to_string().contains("too long") {
                    let _ = tx.try_send(ConnCmd::Close(
                        close_code::MESSAGE_TOO_BIG,
                        "message over 256 KiB",
                    ));
                }
                tracing::debug!(error = %e, "socket read failed");
                break;
            }
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                reply(error_frame(
                    ErrorCode::BadFrame,
                    "binary frames are not used; send JSON text",
                    None,
                    None,
                ));
                continue;
            }
            Message::Close(_) => {
                client_done = true;
                break;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        // The login ended and the close is on its way: nothing this socket
        // still sends may start a call that would outlive the sign-out.
        if closing.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        shared.metrics.frames_in.inc();
        if limiter.check().is_err() {
            strikes += 1;
            shared
                .metrics
                .errors
                .get_or_create(&vec![("code", "rate_limited")])
                .inc();
            if strikes > MAX_STRIKES {
                let _ = tx.try_send(ConnCmd::Close(
                    close_code::RATE_LIMITED,
                    "far over the frame rate limit",
                ));
                break;
            }
            let id = parse_client_frame(&text).ok().and_then(|f| f.id);
            reply(error_frame(
                ErrorCode::RateLimited,
                "too many frames; slow down",
                id,
                None,
            ));
            continue;
        }
        strikes = 0;
        let frame = match parse_client_frame(&text) {
            Ok(f) => f,
            Err(e) => {
                shared
                    .metrics
                    .errors
                    .get_or_create(&vec![("code", e.code.as_str())])
                    .inc();
                reply(error_frame(e.code, e.message, e.ref_id, None));
                continue;
            }
        };
        #[cfg(test)]
        tests::panic_hook(&shared, &frame);
        let ref_id = frame.id.clone();
        if let Err(e) = dispatch(&shared, conn, &who, frame, &reply).await {
            shared
                .metrics
                .errors
                .get_or_create(&vec![("code", e.code.as_str())])
                .inc();
            tracing::debug!(code = %e.code, message = %e.message, "frame refused");
            reply(error_frame(e.code, e.message, ref_id, e.call_id));
        }
    }

    // Detach first: the registry holds a sender too, and the writer ends
    // once every sender is gone.
    drop(attached);
    drop(tx);
    // When the server closes (4029, 4004, 4001, 4008, …) the client may
    // still be sending. Dropping the TCP socket with unread bytes makes the
    // kernel answer with a reset, and the client would see 1006 instead of
    // the close frame. So the reader keeps reading, and discards, until the
    // client answers the close frame (RFC 6455 §5.5.1) or ends, while the
    // writer sends what is queued and the close frame; at most 10 s.
    let drain = async {
        if !client_done {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    let finish = async {
        if !writer.is_finished() {
            let _ = (&mut writer).await;
        }
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async { tokio::join!(drain, finish) }).await;
    writer.abort();
    tracing::info!("disconnected");
}

/// "10 s", or "250 ms" for a timeout that is not whole seconds.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Reads frames until a good `hello` and returns its user and endpoint id
/// (wire name `device_id`); answers anything else with `not_authenticated`.
/// Returns `None` when the socket was closed (also after the configured
/// hello timeout, with 4003).
async fn await_hello(
    shared: &Arc<Shared>,
    sink: &mut Sink,
    stream: &mut Stream,
) -> Option<(AuthedUser, String)> {
    let deadline = tokio::time::sleep(shared.config.hello_timeout);
    tokio::pin!(deadline);
    let mut stop = shared.shutdown.clone();
    loop {
        let msg = tokio::select! {
            _ = &mut deadline => {
                let reason = format!("no hello within {}", human(shared.config.hello_timeout));
                close(sink, close_code::HELLO_TIMEOUT, reason).await;
                return None;
            }
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => {
                close(sink, close_code::SERVICE_RESTART, "server shutting down").await;
                return None;
            }
            m = stream.next() => m,
        };
        let text = match msg? {
            Ok(Message::Text(t)) => t,
            Ok(Message::Binary(_)) => {
                send_direct(
                    sink,
                    error_frame(
                        ErrorCode::BadFrame,
                        "binary frames are not used",
                        None,
                        None,
                    ),
                )
                .await;
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        };
        let frame = match parse_client_frame(&text) {
            Ok(f) => f,
            Err(e) => {
                if !send_direct(sink, error_frame(e.code, e.message, e.ref_id, None)).await {
                    return None;
                }
                continue;
            }
        };
        let ClientMessage::Hello {
            token,
            device_id: endpoint_id,
            device_name: endpoint_name,
            protocol,
        } = frame.message
        else {
            let text = error_frame(
                ErrorCode::NotAuthenticated,
                "send hello first",
                frame.id,
                None,
            );
            if !send_direct(sink, text).await {
                return None;
            }
            continue;
        };
        let refuse = |code, message: &str| error_frame(code, message, frame.id.clone(), None);
        if protocol != PROTOCOL_VERSION {
            let m = format!("this server speaks protocol {PROTOCOL_VERSION}");
            send_direct(sink, refuse(ErrorCode::ProtocolVersion, &m)).await;
            close(sink, close_code::BAD_HELLO, "unsupported protocol version").await;
            return None;
        }
        if !valid_device_id(&endpoint_id) || endpoint_name.len() > 128 {
            let m = "device_id must be 1–64 characters of A–Z a–z 0–9 - _; device_name at most 128 bytes";
            send_direct(sink, refuse(ErrorCode::InvalidValue, m)).await;
            close(sink, close_code::BAD_HELLO, "bad device_id or device_name").await;
            return None;
        }
        match shared.store.resolve_token(&token).await {
            Ok(Ok(who)) => return Some((who, endpoint_id)),
            Ok(Err(refusal)) => {
                let (code, m) = match refusal {
                    TokenRefusal::Expired => {
                        (ErrorCode::TokenExpired, "token expired; log in again")
                    }
                    TokenRefusal::Unknown => (
                        ErrorCode::Unauthorized,
                        "unknown or revoked token; log in again",
                    ),
                };
                send_direct(sink, refuse(code, m)).await;
                close(sink, close_code::UNAUTHORIZED, m).await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "token lookup failed");
                send_direct(
                    sink,
                    refuse(ErrorCode::Internal, "server error; retry later"),
                )
                .await;
                close(sink, close_code::SERVICE_RESTART, "server error").await;
                return None;
            }
        }
    }
}

fn internal(e: crate::Error) -> HubError {
    tracing::error!(error = %e, "store failed during a frame");
    HubError {
        code: ErrorCode::Internal,
        message: "server error; retry later".into(),
        call_id: None,
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    conn: ConnId,
    who: &AuthedUser,
    frame: ClientFrame,
    reply: &impl Fn(String),
) -> Result<(), HubError> {
    match frame.message {
        ClientMessage::Ping {} => {
            reply(
                ServerMessage::Pong {
                    server_time_ms: now_ms(),
                }
                .to_json(),
            );
            Ok(())
        }
        ClientMessage::Hello { .. } => Err(HubError {
            code: ErrorCode::AlreadyAuthenticated,
            message: "this socket is already authenticated".into(),
            call_id: None,
        }),
        ClientMessage::PresenceSet { .. } if who.role == Role::Guest => Err(forbidden()),
        ClientMessage::PresenceSet { status } => {
            route(shared, |h, now| h.set_presence(conn, status, now))
        }
        ClientMessage::Invite { call_id, to, sdp } if who.role == Role::Guest => {
            // A guest calls the tenant's published queues, nothing else.
            refresh_queues(shared, who.tenant_id).await?;
            let queue = {
                let r = shared.routing();
                r.hub
                    .find_queue(who.tenant_id, &to)
                    .filter(|q| r.hub.queue_published(who.tenant_id, q))
            };
            let Some(q) = queue else {
                return Err(forbidden());
            };
            if shared.store.call_exists(&call_id).await.map_err(internal)? {
                return Err(HubError {
                    code: ErrorCode::CallExists,
                    message: "call_id already used".into(),
                    call_id: None,
                });
            }
            let web = web_caller(shared, who).await?;
            route(shared, |h, now| {
                h.invite_queue(conn, &call_id, &q, Some(web), sdp, now)
            })
        }
        ClientMessage::Invite { call_id, to, sdp } => {
            let online = shared.routing().hub.find_online(who.tenant_id, &to);
            let callee = match online {
                Some(c) => Some(c),
                None => shared
                    .store
                    .find_user(who.tenant_id, &to)
                    .await
                    .map_err(internal)?,
            };
            if shared.store.call_exists(&call_id).await.map_err(internal)? {
                return Err(HubError {
                    code: ErrorCode::CallExists,
                    message: "call_id already used".into(),
                    call_id: None,
                });
            }
            if callee.is_none() {
                // Not a user: a queue's name or number? The hub routes
                // with the queues as the store has them now.
                refresh_queues(shared, who.tenant_id).await?;
                let queue = shared.routing().hub.find_queue(who.tenant_id, &to);
                if let Some(q) = queue {
                    return route(shared, |h, now| {
                        h.invite_queue(conn, &call_id, &q, None, sdp, now)
                    });
                }
            }
            route(shared, |h, now| {
                h.invite(conn, &call_id, &to, callee, sdp, now)
            })
        }
        ClientMessage::Ringing { call_id } => {
            route(shared, |h, now| h.ringing(conn, &call_id, now))
        }
        ClientMessage::Accept { call_id, sdp } => {
            route(shared, |h, now| h.accept(conn, &call_id, sdp, now))
        }
        ClientMessage::Reject { call_id, reason } => {
            route(shared, |h, now| h.reject(conn, &call_id, reason, now))
        }
        ClientMessage::Cancel { call_id } => route(shared, |h, now| h.cancel(conn, &call_id, now)),
        ClientMessage::Hangup { call_id, reason } => {
            route(shared, |h, now| h.hangup(conn, &call_id, reason, now))
        }
        ClientMessage::Candidate { call_id, candidate } => {
            route(shared, |h, _| h.candidate(conn, &call_id, candidate))
        }
        ClientMessage::Update { call_id, kind, sdp } => {
            route(shared, |h, _| h.update(conn, &call_id, kind, sdp))
        }
        ClientMessage::Stats { call_id, quality } => {
            route(shared, |h, now| h.stats(conn, &call_id, quality, now))
        }
        _ => Err(HubError {
            code: ErrorCode::UnknownType,
            message: "message type not handled by this server".into(),
            call_id: None,
        }),
    }
}

fn forbidden() -> HubError {
    HubError {
        code: ErrorCode::Forbidden,
        message: "guests may only call the support line".into(),
        call_id: None,
    }
}

/// What a guest typed in the widget, and their earlier calls by email.
async fn web_caller(shared: &Arc<Shared>, who: &AuthedUser) -> Result<WebCaller, HubError> {
    let info = shared
        .store
        .guest_info(who.user_id)
        .await
        .map_err(internal)?
        .unwrap_or_default();
    let earlier_calls = match &info.email {
        Some(e) => shared
            .store
            .earlier_calls_by_email(who.tenant_id, e, who.user_id)
            .await
            .map_err(internal)?,
        None => 0,
    };
    Ok(WebCaller {
        email: info.email,
        topic: info.topic,
        page: info.page,
        earlier_calls,
    })
}

/// Loads a tenant's queues from the store into the hub
/// ([`Hub::set_queues`]): settings, hours and members as they are now, also
/// when another process (the admin CLI) changed them.
///
/// # Errors
/// `internal` when the store cannot be read.
pub(crate) async fn refresh_queues(shared: &Arc<Shared>, tenant: TenantId) -> Result<(), HubError> {
    let defs = shared
        .store
        .routing_queues(tenant)
        .await
        .map_err(internal)?;
    route(shared, |h, now| Ok(h.set_queues(tenant, defs, now)))
}

/// Closes with 4001 every socket whose login `gone` names, e.g. after a
/// logout; returns how many. Each socket's endpoint first leaves its calls
/// ([`Hub::sign_out`]): they end at once rather than after the reconnect
/// grace; so do those of the login's endpoints already in grace
/// ([`Hub::sign_out_in_grace`]). The close goes through each socket's
/// queue, so frames already queued are sent first; a full queue closes
/// with 4008.
pub(crate) fn close_logins(
    shared: &Arc<Shared>,
    gone: impl Fn(&str) -> bool,
    reason: &'static str,
) -> usize {
    let mut r = shared.routing();
    let in_grace: Vec<(UserId, String)> = r
        .grace_logins
        .iter()
        .filter(|(_, login)| gone(login))
        .map(|(k, _)| k.clone())
        .collect();
    for (user, ep) in in_grace {
        r.grace_logins.remove(&(user, ep.clone()));
        let fx = r.hub.sign_out_in_grace(user, &ep, crate::now_ms());
        let timers = r.apply(fx);
        arm(shared, timers);
    }
    let ids: Vec<ConnId> = r
        .sockets
        .iter()
        .filter(|(_, h)| gone(&h.login))
        .filter(|(_, h)| !h.closing.swap(true, std::sync::atomic::Ordering::Relaxed))
        .map(|(id, _)| *id)
        .collect();
    for id in &ids {
        // The login is over: its calls end now, not after the reconnect
        // grace, and the other parties hear of it before the close.
        let fx = r.hub.sign_out(*id, crate::now_ms());
        let timers = r.apply(fx);
        arm(shared, timers);
        let Some(h) = r.sockets.get(id) else {
            continue;
        };
        if h.tx
            .try_send(ConnCmd::Close(close_code::UNAUTHORIZED, reason))
            .is_err()
        {
            h.kill.notify_one();
        }
    }
    let n = ids.len();
    shared.metrics.login_closes.inc_by(n as u64);
    n
}

/// Closes (4001) the sockets of this node whose login was ended in the
/// store: logged out on any node, or the user disabled (also by the admin
/// CLI in another process). Returns how many were closed.
///
/// # Errors
/// [`crate::Error::Database`] when the store cannot be read; nothing is
/// closed then.
pub(crate) async fn close_ended_logins(shared: &Arc<Shared>) -> Result<usize, crate::Error> {
    let asked: Vec<String> = {
        let mut r = shared.routing();
        // Endpoints whose grace ran out (or that came back) need no watch.
        let Routing {
            hub, grace_logins, ..
        } = &mut *r;
        grace_logins.retain(|(user, ep), _| hub.in_grace(*user, ep));
        r.sockets
            .values()
            .filter(|h| !h.login.is_empty())
            .map(|h| h.login.clone())
            .chain(r.grace_logins.values().cloned())
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect()
    };
    let ended = shared.store.ended_logins(&asked).await?;
    shared.metrics.login_sweeps.inc();
    Ok(close_logins(
        shared,
        |l| ended.contains(l),
        "logged out or disabled",
    ))
}

/// Arms hub timers as tasks that sleep for the configured ring timeout or
/// reconnect grace, then report the expiry to the hub at that time. Outside
/// a tokio runtime (a socket dropped while the runtime shuts down) there is
/// nothing left to time, and the timers are dropped.
fn arm(shared: &Arc<Shared>, timers: Vec<Timer>) {
    if timers.is_empty() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    for t in timers {
        let s = shared.clone();
        let delay = match &t {
            Timer::RingTimeout { .. } => s.config.ring_timeout,
            Timer::Grace { .. } => s.config.reconnect_grace,
            Timer::QueueTick { at_ms, .. } => Duration::from_millis(at_ms.saturating_sub(now_ms())),
        };
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = route(&s, |h, now| {
                Ok(match t {
                    Timer::RingTimeout { call_id } => h.ring_timeout(&call_id, now),
                    Timer::Grace {
                        user,
                        endpoint,
                        generation,
                    } => h.grace_expired(user, &endpoint, generation, now),
                    Timer::QueueTick { queue, at_ms } => h.queue_tick(&queue, at_ms, now),
                })
            });
        });
    }
}

/// Sends the socket's queued frames in order, each once the CDR writes it
/// follows are committed; closes when told to or when the queue overflowed
/// (`kill`: 4008, also while a write is stuck on a client that stopped
/// reading; the close frame reaches the client if it reads again within
/// 10 s, behind the frames already buffered).
async fn writer_task(
    mut sink: Sink,
    mut rx: mpsc::Receiver<ConnCmd>,
    kill: Arc<Notify>,
    mut committed: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
) {
    let too_slow = async |sink: &mut Sink| {
        metrics.too_slow.inc();
        close(sink, close_code::TOO_SLOW, "not reading fast enough").await;
    };
    loop {
        let cmd = tokio::select! {
            biased;
            _ = kill.notified() => return too_slow(&mut sink).await,
            cmd = rx.recv() => cmd,
        };
        match cmd {
            None => {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.close()).await;
                return;
            }
            Some(ConnCmd::Frame(o)) => {
                if o.after_seq > *committed.borrow() {
                    // Err: the CDR writer has stopped (shutdown); send anyway.
                    let _ = committed.wait_for(|c| *c >= o.after_seq).await;
                }
                // A write stuck on a full TCP buffer gives way to the kill:
                // the frame stays in the sink's buffer, ahead of the close.
                let sent = tokio::select! {
                    biased;
                    _ = kill.notified() => return too_slow(&mut sink).await,
                    sent = send_direct(&mut sink, o.text) => sent,
                };
                if !sent {
                    return;
                }
            }
            Some(ConnCmd::Close(code, reason)) => {
                close(&mut sink, code, reason).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests;
