//! The WebSocket endpoint `/v1/ws`: one reader task per socket that parses,
//! rate-limits and dispatches frames to the hub, and one writer task that
//! sends queued frames once the CDR writes they follow are committed.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use governor::{Quota, RateLimiter};
use softphone_protocol::{
    ClientFrame, ClientMessage, ErrorCode, PROTOCOL_VERSION, ServerMessage, close_code,
    parse_client_frame, valid_device_id,
};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument as _;

use crate::hub::{ConnCmd, ConnHandle, ConnId, HubError, HubResult, Outbound, Timer, WelcomeParts};
use crate::store::{AuthedUser, TokenRefusal};
use crate::{Shared, ice, now_ms};

/// Messages above this are not even read: the socket closes with 1009.
/// Between [`softphone_protocol::MAX_FRAME_BYTES`] and this, the frame is
/// answered with `frame_too_large` and the socket stays usable.
const HARD_LIMIT: usize = 256 * 1024;
/// Time allowed between connecting and `hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued to one socket before it counts as too slow.
const QUEUE: usize = 256;
/// Rate-limited frames in a row before the socket is closed (4029).
const MAX_STRIKES: u32 = 100;
/// Time a single socket write may take before the socket is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /v1/ws`: upgrades with small buffers (4 KiB read, unbuffered
/// writes) so that tens of thousands of idle sockets stay cheap.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<Shared>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Response {
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(HARD_LIMIT * 4)
        .max_message_size(HARD_LIMIT)
        .max_frame_size(HARD_LIMIT)
        .on_upgrade(move |socket| handle(socket, shared, addr))
}

type Sink = SplitSink<WebSocket, Message>;

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

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
}

async fn handle(socket: WebSocket, shared: Arc<Shared>, addr: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let Some((who, device_id)) = await_hello(&shared, &mut sink, &mut stream).await else {
        return;
    };
    let span =
        tracing::info_span!("ws", user = %who.user.user, tenant = %who.tenant, device = %device_id);
    serve_socket(sink, stream, shared, who, device_id, addr)
        .instrument(span)
        .await;
}

/// Serves an authenticated socket until it closes.
async fn serve_socket(
    sink: Sink,
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    shared: Arc<Shared>,
    who: AuthedUser,
    device_id: String,
    addr: SocketAddr,
) {
    tracing::info!(%addr, "connected");

    let (tx, rx) = mpsc::channel(QUEUE);
    let kill = Arc::new(Notify::new());
    let handle = ConnHandle {
        tx: tx.clone(),
        kill: kill.clone(),
    };
    let parts = WelcomeParts {
        session_id: uuid::Uuid::new_v4().simple().to_string(),
        ice_servers: ice::ice_servers(&shared.config, &who.tenant, &who.user.user, now_ms()),
        heartbeat_ms: shared.config.heartbeat.as_millis() as u64,
    };
    let conn = {
        let mut hub = shared.hub.lock().expect("hub lock");
        let id = hub.next_conn_id();
        hub.attach(id, handle, &who, &device_id, parts);
        id
    };
    let kill_reply = kill.clone();
    let mut writer = tokio::spawn(writer_task(sink, rx, kill, shared.committed.clone()));

    let quota =
        Quota::per_second(NonZeroU32::new(shared.config.frames_per_sec).unwrap_or(NonZeroU32::MIN))
            .allow_burst(
                NonZeroU32::new(shared.config.frames_per_sec * 4).unwrap_or(NonZeroU32::MIN),
            );
    let limiter = RateLimiter::direct(quota);
    let mut strikes = 0u32;
    let idle = shared.config.heartbeat * 3;
    let reply = |text: String| {
        if tx
            .try_send(ConnCmd::Frame(Outbound { text, after_seq: 0 }))
            .is_err()
        {
            // The client is not reading its frames: close it as too slow.
            kill_reply.notify_one();
        }
    };

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
            Ok(None) => break,
            Ok(Some(Err(e))) => {
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
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => continue,
        };
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

    let timers = shared.hub.lock().expect("hub lock").detach(conn);
    arm(&shared, timers);
    drop(tx);
    if !writer.is_finished() {
        let _ = tokio::time::timeout(WRITE_TIMEOUT, &mut writer).await;
        writer.abort();
    }
    tracing::info!("disconnected");
}

/// Reads frames until a good `hello`; answers anything else with
/// `not_authenticated`. Returns `None` when the socket was closed.
async fn await_hello(
    shared: &Arc<Shared>,
    sink: &mut Sink,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
) -> Option<(AuthedUser, String)> {
    let deadline = tokio::time::sleep(HELLO_TIMEOUT);
    tokio::pin!(deadline);
    let mut stop = shared.shutdown.clone();
    loop {
        let msg = tokio::select! {
            _ = &mut deadline => {
                close(sink, close_code::HELLO_TIMEOUT, "no hello within 10 s").await;
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
            device_id,
            device_name,
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
        if !valid_device_id(&device_id) || device_name.len() > 128 {
            let m = "device_id must be 1–64 characters of A–Z a–z 0–9 - _; device_name at most 128 bytes";
            send_direct(sink, refuse(ErrorCode::InvalidValue, m)).await;
            close(sink, close_code::BAD_HELLO, "bad device id").await;
            return None;
        }
        match shared.store.resolve_token(&token).await {
            Ok(Ok(who)) => return Some((who, device_id)),
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
    let hub = || shared.hub.lock().expect("hub lock");
    let timers: HubResult = match frame.message {
        ClientMessage::Ping {} => {
            reply(
                ServerMessage::Pong {
                    server_time_ms: now_ms(),
                }
                .to_json(),
            );
            Ok(Vec::new())
        }
        ClientMessage::Hello { .. } => Err(HubError {
            code: ErrorCode::AlreadyAuthenticated,
            message: "this socket is already authenticated".into(),
            call_id: None,
        }),
        ClientMessage::PresenceSet { status } => hub().set_presence(conn, status),
        ClientMessage::Invite { call_id, to, sdp } => {
            let online = hub().find_online(who.tenant_id, &to);
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
            hub().invite(conn, &call_id, &to, callee, sdp)
        }
        ClientMessage::Ringing { call_id } => hub().ringing(conn, &call_id),
        ClientMessage::Accept { call_id, sdp } => hub().accept(conn, &call_id, sdp),
        ClientMessage::Reject { call_id, reason } => hub().reject(conn, &call_id, reason),
        ClientMessage::Cancel { call_id } => hub().cancel(conn, &call_id),
        ClientMessage::Hangup { call_id, reason } => hub().hangup(conn, &call_id, reason),
        ClientMessage::Candidate { call_id, candidate } => {
            hub().candidate(conn, &call_id, candidate)
        }
        ClientMessage::Update { call_id, kind, sdp } => hub().update(conn, &call_id, kind, sdp),
        ClientMessage::Stats { call_id, quality } => hub().stats(conn, &call_id, quality),
        _ => Err(HubError {
            code: ErrorCode::UnknownType,
            message: "message type not handled by this server".into(),
            call_id: None,
        }),
    };
    arm(shared, timers?);
    Ok(())
}

/// Arms hub timers as tasks that call back into the hub when they fire.
fn arm(shared: &Arc<Shared>, timers: Vec<Timer>) {
    for t in timers {
        let s = shared.clone();
        let delay = match &t {
            Timer::RingTimeout { .. } => s.config.ring_timeout,
            Timer::Grace { .. } => s.config.reconnect_grace,
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let mut hub = s.hub.lock().expect("hub lock");
            match t {
                Timer::RingTimeout { call_id } => hub.ring_timeout(&call_id),
                Timer::Grace {
                    user,
                    device,
                    generation,
                } => hub.grace_expired(user, &device, generation),
            }
        });
    }
}

async fn writer_task(
    mut sink: Sink,
    mut rx: mpsc::Receiver<ConnCmd>,
    kill: Arc<Notify>,
    mut committed: watch::Receiver<u64>,
) {
    loop {
        let cmd = tokio::select! {
            biased;
            _ = kill.notified() => {
                close(&mut sink, close_code::TOO_SLOW, "not reading fast enough").await;
                return;
            }
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
                if !send_direct(&mut sink, o.text).await {
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
