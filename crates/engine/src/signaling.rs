//! The signaling connection to the switchboard (docs/protocol.md §3): a
//! WebSocket that authenticates with `hello`, keeps itself alive with
//! `ping`s, and reconnects with jittered exponential backoff when it drops.
//!
//! [`open`] connects once and returns the `welcome`; [`spawn`] then owns the
//! socket in a task: frames to send go in as [`ClientFrame`]s, what
//! happens comes out as [`Signal`]s. Calls survive a reconnect (media is
//! peer to peer and the server keeps them for its grace period): the new
//! `welcome` lists them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), softphone_engine::EngineError> {
//! use softphone_engine::{EngineConfig, signaling};
//! let config = EngineConfig::new("http://127.0.0.1:8080", "token", "alice-laptop");
//! let (ws, welcome) = signaling::open(&config).await?;
//! let (out, mut signals) = signaling::spawn(config, ws, &welcome);
//! while let Some(signal) = signals.recv().await {
//!     println!("{signal:?}");
//! }
//! # drop(out);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use softphone_protocol::{
    CallSummary, ClientFrame, ClientMessage, ErrorCode, IceServer, PROTOCOL_VERSION, Presence,
    ServerMessage, UserRef, close_code,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::{AuthRefusal, DisconnectReason, EngineConfig, EngineError};

/// Time allowed between opening the socket and the `welcome`: 10 s.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for the TCP (and TLS) connect and the WebSocket upgrade,
/// so that a node that vanished without a reset (packets dropped) costs
/// one attempt 5 s, not the kernel's two minutes of SYN retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether an error of [`open`] ends signaling for good: a refused token,
/// or a refusal of the hello that no retry changes (protocol version,
/// endpoint id). A server failure (`internal`) or a rate limit is not.
fn is_final(e: &EngineError) -> bool {
    match e {
        EngineError::Unauthorized(_) => true,
        EngineError::Refused { code, .. } => !code.retryable(),
        _ => false,
    }
}

/// The open WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's `welcome` (docs/protocol.md §5.1), as the engine uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Welcome {
    /// Who we are.
    pub user: UserRef,
    /// Our tenant.
    pub tenant: String,
    /// Our availability as the server has it.
    pub presence: Presence,
    /// ICE servers with fresh (time-limited) TURN credentials: used for
    /// every call placed or answered until the next `welcome`.
    pub ice_servers: Vec<IceServer>,
    /// Keepalive period, ms.
    pub heartbeat_ms: u64,
    /// Calls of this endpoint that survived a reconnect.
    pub calls: Vec<CallSummary>,
    /// The base URL of the node that sent it ([`EngineConfig::servers`]).
    pub server: String,
}

impl Welcome {
    fn from_message(m: ServerMessage, server: &str) -> Option<Self> {
        match m {
            ServerMessage::Welcome {
                user,
                tenant,
                presence,
                ice_servers,
                heartbeat_ms,
                calls,
                ..
            } => Some(Self {
                user,
                tenant,
                presence,
                ice_servers,
                heartbeat_ms,
                calls,
                server: server.to_string(),
            }),
            _ => None,
        }
    }

    /// The keepalive period, kept within 1–60 s whatever the server says.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.clamp(1_000, 60_000))
    }
}

/// What the signaling task reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A frame from the server (never `welcome`: see [`Signal::Welcome`]).
    Message(ServerMessage),
    /// The socket dropped; reconnecting.
    Reconnecting {
        /// What the transport said.
        detail: String,
    },
    /// Back after a reconnect: the new `welcome`.
    Welcome(Welcome),
    /// Gone for good; the task has ended.
    Closed(DisconnectReason),
}

/// The switchboard's WebSocket URL for a base URL (`http://h:p` →
/// `ws://h:p/v1/ws`, `https` → `wss`).
pub fn ws_url(server: &str) -> String {
    format!(
        "{}/v1/ws",
        server
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    )
}

/// Opens the signaling WebSocket and authenticates with `hello`, trying
/// [`EngineConfig::servers`] in order until one answers; returns the socket
/// and the `welcome` (whose `server` says which node answered).
///
/// # Errors
/// [`EngineError::Unauthorized`] for a refused token and
/// [`EngineError::Refused`] for another refusal (protocol version, endpoint
/// id), at once: another node would refuse the same. When no node answers,
/// the last node's error: [`EngineError::Unreachable`] when the socket
/// cannot be opened or drops during the handshake,
/// [`EngineError::Protocol`] when no `welcome` comes within 10 s.
pub async fn open(config: &EngineConfig) -> Result<(Ws, Welcome), EngineError> {
    let mut last = None;
    for server in config.servers() {
        match open_at(config, &server).await {
            Ok(done) => return Ok(done),
            Err(e) if is_final(&e) => return Err(e),
            Err(e) => {
                tracing::info!(%server, error = %e, "switchboard node not reachable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| EngineError::Protocol {
        what: "no switchboard URL configured".into(),
        source: None,
    }))
}

/// [`open`] at one node's base URL.
async fn open_at(config: &EngineConfig, server: &str) -> Result<(Ws, Welcome), EngineError> {
    let url = ws_url(server);
    let unreachable = |e: tokio_tungstenite::tungstenite::Error| EngineError::Unreachable {
        url: url.clone(),
        source: e.into(),
    };
    let (mut ws, _) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(&url, None, true),
    )
    .await
    .map_err(|_| EngineError::Unreachable {
        url: url.clone(),
        source: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()).into(),
    })?
    .map_err(unreachable)?;
    let hello = ClientFrame::new(ClientMessage::Hello {
        token: config.token.clone(),
        device_id: config.endpoint_id.clone(),
        device_name: config.endpoint_name.clone(),
        protocol: PROTOCOL_VERSION,
    });
    ws.send(Message::text(hello.to_json()))
        .await
        .map_err(unreachable)?;
    loop {
        let msg = tokio::time::timeout(WELCOME_TIMEOUT, ws.next())
            .await
            .map_err(|_| EngineError::Protocol {
                what: "no welcome within 10 s".into(),
                source: None,
            })?
            .ok_or_else(|| EngineError::Protocol {
                what: "the socket closed before the welcome".into(),
                source: None,
            })?
            .map_err(unreachable)?;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&t) {
            Ok(ServerMessage::Error { code, message, .. }) => {
                return Err(match code {
                    ErrorCode::TokenExpired => EngineError::Unauthorized(AuthRefusal::TokenExpired),
                    ErrorCode::Unauthorized => EngineError::Unauthorized(AuthRefusal::TokenRevoked),
                    code => EngineError::Refused { code, message },
                });
            }
            Ok(m) => {
                if let Some(w) = Welcome::from_message(m, server) {
                    return Ok((ws, w));
                }
            }
            Err(e) => tracing::debug!(error = %e, "unreadable frame before welcome"),
        }
    }
}

/// What a close code from the server means for us: `Some` when
/// reconnecting cannot help.
pub fn final_close(code: u16) -> Option<DisconnectReason> {
    match code {
        close_code::UNAUTHORIZED => Some(DisconnectReason::Unauthorized {
            refusal: AuthRefusal::TokenRevoked,
        }),
        close_code::REPLACED => Some(DisconnectReason::Replaced),
        close_code::BAD_HELLO => Some(DisconnectReason::BadHello),
        _ => None,
    }
}

/// Exponential backoff with jitter for reconnecting: the n-th wait lies in
/// [d/2, d] with d = 500 ms · 2ⁿ, capped at 15 s, so that clients dropped
/// together do not come back together.
#[derive(Debug, Clone)]
pub struct Backoff {
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            ceiling: Self::FIRST,
        }
    }
}

impl Backoff {
    /// The first ceiling: 500 ms.
    pub const FIRST: Duration = Duration::from_millis(500);
    /// The largest ceiling: 15 s.
    pub const MAX: Duration = Duration::from_secs(15);

    /// The next wait, given a random number in `[0, 1)`; doubles the
    /// ceiling for the wait after.
    pub fn next(&mut self, random: f64) -> Duration {
        let d = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(Self::MAX);
        d / 2 + d.mul_f64(random.clamp(0.0, 1.0) / 2.0)
    }
}

/// Starts the task that owns the socket: it sends what comes in on the
/// returned sender, pings every heartbeat, reports [`Signal`]s, and
/// reconnects when the socket drops. Dropping the sender closes the socket
/// and ends the task.
pub fn spawn(
    config: EngineConfig,
    ws: Ws,
    welcome: &Welcome,
) -> (
    mpsc::UnboundedSender<ClientFrame>,
    mpsc::UnboundedReceiver<Signal>,
) {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (sig_tx, sig_rx) = mpsc::unbounded_channel();
    let at = config
        .servers()
        .iter()
        .position(|s| *s == welcome.server)
        .unwrap_or(0);
    tokio::spawn(run(config, ws, at, welcome.heartbeat(), out_rx, sig_tx));
    (out_tx, sig_rx)
}

/// Why one socket's life ended.
enum Ended {
    /// The engine let go of the sender: stop.
    Done,
    /// Reconnect.
    Lost(String),
    /// Do not reconnect.
    Final(DisconnectReason),
}

async fn serve(
    ws: &mut Ws,
    heartbeat: Duration,
    out: &mut mpsc::UnboundedReceiver<ClientFrame>,
    signals: &mpsc::UnboundedSender<Signal>,
) -> Ended {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        tokio::select! {
            frame = out.recv() => {
                let Some(frame) = frame else {
                    let _ = ws.close(None).await;
                    return Ended::Done;
                };
                if let Err(e) = ws.send(Message::text(frame.to_json())).await {
                    return Ended::Lost(e.to_string());
                }
            }
            _ = ping.tick() => {
                let ping = ClientFrame::new(ClientMessage::Ping {}).to_json();
                if let Err(e) = ws.send(Message::text(ping)).await {
                    return Ended::Lost(e.to_string());
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                    Ok(ServerMessage::Pong { .. }) => {}
                    Ok(m) => {
                        if signals.send(Signal::Message(m)).is_err() {
                            return Ended::Done;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable server frame"),
                },
                Some(Ok(Message::Close(f))) => {
                    let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                    return match final_close(code) {
                        Some(reason) => Ended::Final(reason),
                        None => Ended::Lost(format!("closed by the server ({code})")),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Ended::Lost(e.to_string()),
                None => return Ended::Lost("socket ended".into()),
            },
        }
    }
}

async fn run(
    config: EngineConfig,
    first: Ws,
    mut at: usize,
    mut heartbeat: Duration,
    mut out: mpsc::UnboundedReceiver<ClientFrame>,
    signals: mpsc::UnboundedSender<Signal>,
) {
    let servers = config.servers();
    let mut ws = first;
    loop {
        let detail = match serve(&mut ws, heartbeat, &mut out, &signals).await {
            Ended::Done => return,
            Ended::Final(reason) => {
                let _ = signals.send(Signal::Closed(reason));
                return;
            }
            Ended::Lost(detail) => detail,
        };
        // Finish the old socket (answer a close frame, free the port).
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
        tracing::info!(%detail, "signaling lost; reconnecting");
        let _ = signals.send(Signal::Reconnecting { detail });
        let mut backoff = Backoff::default();
        let mut first = true;
        ws = loop {
            tokio::time::sleep(backoff.next(rand::random())).await;
            if signals.is_closed() {
                return;
            }
            // The first attempt goes back to the same node (a blip keeps
            // the calls it holds); each failed attempt moves to the next
            // node in turn, so a node that died is left after one try.
            if !first {
                at = (at + 1) % servers.len().max(1);
            }
            first = false;
            let server = servers
                .get(at)
                .map_or(config.server.as_str(), String::as_str);
            match open_at(&config, server).await {
                Ok((ws, welcome)) => {
                    tracing::info!(%server, "signaling back");
                    heartbeat = welcome.heartbeat();
                    let _ = signals.send(Signal::Welcome(welcome));
                    break ws;
                }
                Err(EngineError::Unauthorized(refusal)) => {
                    let _ =
                        signals.send(Signal::Closed(DisconnectReason::Unauthorized { refusal }));
                    return;
                }
                Err(e) if is_final(&e) => {
                    let _ = signals.send(Signal::Closed(DisconnectReason::BadHello));
                    return;
                }
                Err(e) => tracing::debug!(%server, error = %e, "reconnect failed"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softphone_protocol::parse_client_frame;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    #[test]
    fn backoff_doubles_to_15_s_and_stays_within_its_jitter_band() {
        let mut b = Backoff::default();
        let low: Vec<Duration> = (0..8).map(|_| b.next(0.0)).collect();
        let mut b = Backoff::default();
        let high: Vec<Duration> = (0..8).map(|_| b.next(0.999_999)).collect();
        assert_eq!(low[0], Duration::from_millis(250));
        assert_eq!(low[1], Duration::from_millis(500));
        assert!(high[0] > Duration::from_millis(499) && high[0] <= Duration::from_millis(500));
        assert_eq!(low[7], Duration::from_millis(7_500), "capped at 15 s / 2");
        assert!(high[7] <= Backoff::MAX);
        for (l, h) in low.iter().zip(&high) {
            assert!(l <= h);
        }
    }

    #[test]
    fn only_auth_replacement_and_bad_hello_closes_are_final() {
        assert_eq!(
            final_close(close_code::REPLACED),
            Some(DisconnectReason::Replaced)
        );
        assert!(matches!(
            final_close(close_code::UNAUTHORIZED),
            Some(DisconnectReason::Unauthorized { .. })
        ));
        assert_eq!(
            final_close(close_code::BAD_HELLO),
            Some(DisconnectReason::BadHello)
        );
        for code in [
            1000,
            1001,
            1006,
            close_code::SERVICE_RESTART,
            close_code::IDLE_TIMEOUT,
        ] {
            assert_eq!(final_close(code), None, "{code}");
        }
    }

    /// A switchboard stand-in that speaks just the handshake: each accepted
    /// socket gets the next scripted behaviour.
    enum Script {
        /// Answer `hello` with this welcome, then report every frame read
        /// until the test drops the socket (after `frames` frames).
        Welcome {
            ice_user: &'static str,
            heartbeat_ms: u64,
            frames: usize,
        },
        /// Answer `hello` with a `token_expired` error and close 4001.
        Refuse,
        /// Close at once with this code after the welcome.
        CloseWith(u16),
    }

    async fn fake_switchboard(
        scripts: Vec<Script>,
    ) -> (String, mpsc::UnboundedReceiver<(usize, ClientMessage)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for (n, script) in scripts.into_iter().enumerate() {
                let (tcp, _) = listener.accept().await.unwrap();
                let seen_tx = seen_tx.clone();
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let Some(Ok(Message::Text(hello))) = ws.next().await else {
                        panic!("no hello");
                    };
                    let hello = parse_client_frame(&hello).unwrap().message;
                    seen_tx.send((n, hello)).unwrap();
                    let welcome = |ice_user: &str, heartbeat_ms| ServerMessage::Welcome {
                        protocol: PROTOCOL_VERSION,
                        user: UserRef {
                            user: "alice".into(),
                            display_name: "Alice".into(),
                        },
                        tenant: "acme".into(),
                        session_id: format!("s{n}"),
                        device_id: "alice-laptop".into(),
                        presence: Presence::Available,
                        ice_servers: vec![IceServer {
                            urls: vec!["turn:127.0.0.1:3478".into()],
                            username: Some(ice_user.into()),
                            credential: Some("secret".into()),
                        }],
                        heartbeat_ms,
                        calls: vec![],
                    };
                    match script {
                        Script::Welcome {
                            ice_user,
                            heartbeat_ms,
                            frames,
                        } => {
                            let w = welcome(ice_user, heartbeat_ms).to_json();
                            ws.send(Message::text(w)).await.unwrap();
                            for _ in 0..frames {
                                let Some(Ok(Message::Text(t))) = ws.next().await else {
                                    break;
                                };
                                seen_tx
                                    .send((n, parse_client_frame(&t).unwrap().message))
                                    .unwrap();
                            }
                            // Dropping the socket without a close frame: a
                            // network cut, as the client sees it.
                        }
                        Script::Refuse => {
                            let e = ServerMessage::Error {
                                code: ErrorCode::TokenExpired,
                                message: "token expired".into(),
                                ref_id: None,
                                call_id: None,
                            };
                            ws.send(Message::text(e.to_json())).await.unwrap();
                            let _ = ws
                                .close(Some(CloseFrame {
                                    code: close_code::UNAUTHORIZED.into(),
                                    reason: "expired".into(),
                                }))
                                .await;
                        }
                        Script::CloseWith(code) => {
                            let w = welcome("u", 20_000).to_json();
                            ws.send(Message::text(w)).await.unwrap();
                            let _ = ws
                                .close(Some(CloseFrame {
                                    code: code.into(),
                                    reason: "bye".into(),
                                }))
                                .await;
                            while ws.next().await.is_some() {}
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    fn config(url: &str) -> EngineConfig {
        EngineConfig::new(url, "tok-1", "alice-laptop")
    }

    #[tokio::test]
    async fn hello_carries_token_and_endpoint_and_the_welcome_comes_back() {
        let (url, mut seen) = fake_switchboard(vec![Script::Welcome {
            ice_user: "first",
            heartbeat_ms: 20_000,
            frames: 1,
        }])
        .await;
        let (ws, welcome) = open(&config(&url)).await.unwrap();
        let (_, hello) = seen.recv().await.unwrap();
        let ClientMessage::Hello {
            token,
            device_id,
            protocol,
            ..
        } = hello
        else {
            panic!("{hello:?}")
        };
        assert_eq!(
            (token.as_str(), device_id.as_str()),
            ("tok-1", "alice-laptop")
        );
        assert_eq!(protocol, PROTOCOL_VERSION);
        assert_eq!(welcome.user.user, "alice");
        assert_eq!(welcome.ice_servers[0].username.as_deref(), Some("first"));
        let (out, _signals) = spawn(config(&url), ws, &welcome);
        out.send(ClientFrame::new(ClientMessage::PresenceSet {
            status: Presence::Away,
        }))
        .unwrap();
        let (_, frame) = seen.recv().await.unwrap();
        assert_eq!(
            frame,
            ClientMessage::PresenceSet {
                status: Presence::Away
            }
        );
    }

    #[tokio::test]
    async fn a_dropped_socket_reconnects_and_reports_the_new_welcome_with_fresh_ice_servers() {
        let (url, mut seen) = fake_switchboard(vec![
            Script::Welcome {
                ice_user: "first",
                heartbeat_ms: 20_000,
                frames: 0,
            },
            Script::Welcome {
                ice_user: "second",
                heartbeat_ms: 20_000,
                frames: 1,
            },
        ])
        .await;
        let (ws, welcome) = open(&config(&url)).await.unwrap();
        let (out, mut signals) = spawn(config(&url), ws, &welcome);
        assert!(matches!(
            signals.recv().await,
            Some(Signal::Reconnecting { .. })
        ));
        let Some(Signal::Welcome(again)) = signals.recv().await else {
            panic!("no welcome after reconnecting");
        };
        assert_eq!(again.ice_servers[0].username.as_deref(), Some("second"));
        // Both sockets said hello with the same token and endpoint.
        assert!(matches!(
            seen.recv().await,
            Some((0, ClientMessage::Hello { .. }))
        ));
        assert!(matches!(
            seen.recv().await,
            Some((1, ClientMessage::Hello { .. }))
        ));
        // Frames go out on the new socket.
        out.send(ClientFrame::new(ClientMessage::Hangup {
            call_id: "c1".into(),
            reason: None,
        }))
        .unwrap();
        assert_eq!(
            seen.recv().await,
            Some((
                1,
                ClientMessage::Hangup {
                    call_id: "c1".into(),
                    reason: None,
                }
            ))
        );
    }

    /// A base URL where nothing listens (a node that died).
    async fn dead_node() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    }

    #[tokio::test]
    async fn a_dead_first_node_is_skipped_and_a_dropped_socket_moves_to_the_next_node() {
        let dead = dead_node().await;
        let (a, mut seen_a) = fake_switchboard(vec![Script::Welcome {
            ice_user: "on-a",
            heartbeat_ms: 20_000,
            frames: 0,
        }])
        .await;
        let (b, mut seen_b) = fake_switchboard(vec![Script::Welcome {
            ice_user: "on-b",
            heartbeat_ms: 20_000,
            frames: 1,
        }])
        .await;
        let mut config = config(&dead);
        config.fallback_servers = vec![a.clone(), format!("{b}/")];
        // The first node is down: the first open lands on the second.
        let (ws, welcome) = open(&config).await.unwrap();
        assert_eq!(welcome.server, a);
        assert!(matches!(
            seen_a.recv().await,
            Some((0, ClientMessage::Hello { .. }))
        ));
        // That node drops the socket and is gone (its listener closed once
        // its one script ran): the first reconnect tries it again, fails,
        // and the next attempt goes to the next node.
        let (out, mut signals) = spawn(config, ws, &welcome);
        assert!(matches!(
            signals.recv().await,
            Some(Signal::Reconnecting { .. })
        ));
        let Some(Signal::Welcome(again)) = signals.recv().await else {
            panic!("no welcome from the next node");
        };
        assert_eq!(again.server, b);
        assert_eq!(again.ice_servers[0].username.as_deref(), Some("on-b"));
        assert!(matches!(
            seen_b.recv().await,
            Some((0, ClientMessage::Hello { .. }))
        ));
        out.send(ClientFrame::new(ClientMessage::Ping {})).unwrap();
        assert_eq!(seen_b.recv().await, Some((0, ClientMessage::Ping {})));
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried_on_other_nodes() {
        let (a, _seen_a) = fake_switchboard(vec![Script::Refuse]).await;
        let (b, mut seen_b) = fake_switchboard(vec![Script::Welcome {
            ice_user: "on-b",
            heartbeat_ms: 20_000,
            frames: 0,
        }])
        .await;
        let mut config = config(&a);
        config.fallback_servers = vec![b];
        let err = open(&config).await.unwrap_err();
        assert!(matches!(err, EngineError::Unauthorized(_)), "{err:?}");
        assert!(seen_b.try_recv().is_err(), "the other node was not asked");
    }

    #[tokio::test]
    async fn pings_keep_the_socket_alive_at_the_heartbeat() {
        let (url, mut seen) = fake_switchboard(vec![Script::Welcome {
            ice_user: "u",
            heartbeat_ms: 1_000,
            frames: 2,
        }])
        .await;
        let (ws, welcome) = open(&config(&url)).await.unwrap();
        let started = tokio::time::Instant::now();
        let (_out, _signals) = spawn(config(&url), ws, &welcome);
        let _hello = seen.recv().await.unwrap();
        assert_eq!(seen.recv().await, Some((0, ClientMessage::Ping {})));
        assert_eq!(seen.recv().await, Some((0, ClientMessage::Ping {})));
        assert!(
            started.elapsed() >= Duration::from_millis(2_000),
            "one per second"
        );
    }

    #[tokio::test]
    async fn a_refused_token_and_a_replaced_endpoint_end_signaling_for_good() {
        let (url, _seen) = fake_switchboard(vec![Script::Refuse]).await;
        let err = open(&config(&url)).await.unwrap_err();
        assert!(
            matches!(err, EngineError::Unauthorized(AuthRefusal::TokenExpired)),
            "{err:?}"
        );

        let (url, _seen) = fake_switchboard(vec![Script::CloseWith(close_code::REPLACED)]).await;
        let (ws, welcome) = open(&config(&url)).await.unwrap();
        let (_out, mut signals) = spawn(config(&url), ws, &welcome);
        assert_eq!(
            signals.recv().await,
            Some(Signal::Closed(DisconnectReason::Replaced))
        );
        assert_eq!(signals.recv().await, None, "the task has ended");
    }

    #[tokio::test]
    async fn a_token_refused_on_reconnect_signs_out() {
        let (url, _seen) = fake_switchboard(vec![
            Script::CloseWith(close_code::SERVICE_RESTART),
            Script::Refuse,
        ])
        .await;
        let (ws, welcome) = open(&config(&url)).await.unwrap();
        let (_out, mut signals) = spawn(config(&url), ws, &welcome);
        assert!(matches!(
            signals.recv().await,
            Some(Signal::Reconnecting { .. })
        ));
        assert_eq!(
            signals.recv().await,
            Some(Signal::Closed(DisconnectReason::Unauthorized {
                refusal: AuthRefusal::TokenExpired
            }))
        );
    }
}
