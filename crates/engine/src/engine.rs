//! The engine: a cloneable [`Engine`] handle with async methods, and one
//! stream of [`EngineEvent`]s. Behind it, one task owns the signaling socket
//! and every call: it turns switchboard frames, media events and the
//! handle's commands into call state transitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use softphone_audio::{Sink, Source};
use softphone_protocol::{
    CallQuality, ClientFrame, ClientMessage, EndReason, IceCandidate, IceServer, LoginRequest,
    LoginResponse, PROTOCOL_VERSION, Presence, RejectReason, SdpKind, ServerMessage, UserRef,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::EngineError;
use crate::call::{CallInput, CallState, Direction};
use crate::media::{MediaEvent, MediaSession, MediaStats, WebRtcSession};

/// Where and who: what [`Engine::connect`] needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Switchboard base URL, e.g. `http://127.0.0.1:8080` (or `https://…`).
    pub server: String,
    /// Bearer token from [`login`].
    pub token: String,
    /// Stable id of this device (1–64 of `[A-Za-z0-9_-]`).
    pub device_id: String,
    /// Human name of this device.
    pub device_name: String,
    /// Media options (e.g. loopback-only ICE for tests).
    pub media: crate::media::MediaOptions,
}

/// Audio devices for one call.
pub struct CallAudio {
    /// Microphone (or file, or generator).
    pub source: Box<dyn Source>,
    /// Speaker (or file).
    pub sink: Box<dyn Sink>,
}

/// Everything the engine reports, in order, on one stream. Serialises as
/// `{"event": "call_state", ...}` (phonectl's `--json` lines).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum EngineEvent {
    /// Signaling is up (after `welcome`).
    Registered {
        /// Who we are.
        user: UserRef,
        /// Our tenant.
        tenant: String,
    },
    /// A call rings this device.
    Incoming {
        /// The call.
        call_id: String,
        /// The caller.
        from: UserRef,
    },
    /// A call changed state (every transition of [`CallState`]).
    CallState {
        /// The call.
        call_id: String,
        /// Its new state.
        state: CallState,
    },
    /// The first audio frame of a call was decoded.
    FirstAudio {
        /// The call.
        call_id: String,
    },
    /// A sound device failed mid-call and was replaced; the call goes on.
    DeviceLost {
        /// The call.
        call_id: String,
        /// `true` for the input, `false` for the output.
        input: bool,
        /// What took its place.
        replacement: String,
    },
    /// A DTMF digit arrived (RFC 4733).
    Dtmf {
        /// The call.
        call_id: String,
        /// `0-9 * # A-D`.
        digit: char,
    },
    /// Media statistics, every 2 s during a call.
    Stats {
        /// The call.
        call_id: String,
        /// The figures.
        stats: MediaStats,
    },
    /// A user of our tenant changed availability.
    Presence {
        /// Who.
        user: UserRef,
        /// Their status.
        status: Presence,
    },
    /// The server refused something we sent.
    ServerError {
        /// Machine-readable code.
        code: softphone_protocol::ErrorCode,
        /// Detail.
        message: String,
    },
    /// Signaling dropped; the engine is reconnecting (calls stay up).
    Reconnecting {
        /// Why it dropped.
        reason: String,
    },
    /// Signaling was lost for good (token refused, replaced by another
    /// connection of this device): the engine stops and its calls end.
    Disconnected {
        /// Why.
        reason: String,
    },
}

/// Logs in with a password; returns the token and who we are.
///
/// # Errors
/// [`EngineError::Unauthorized`] for wrong credentials,
/// [`EngineError::Signaling`] when the server cannot be reached.
pub async fn login(
    server: &str,
    tenant: &str,
    user: &str,
    password: &str,
) -> Result<LoginResponse, EngineError> {
    let url = format!("{}/v1/login", server.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&LoginRequest {
            tenant: tenant.into(),
            user: user.into(),
            password: password.into(),
        })
        .send()
        .await
        .map_err(|e| EngineError::Signaling(format!("cannot reach {url}: {e}")))?;
    match resp.status().as_u16() {
        200 => resp
            .json()
            .await
            .map_err(|e| EngineError::Signaling(e.to_string())),
        401 => Err(EngineError::Unauthorized(
            "wrong tenant, user or password".into(),
        )),
        429 => Err(EngineError::Signaling(
            "too many login attempts; wait a minute".into(),
        )),
        s => Err(EngineError::Signaling(format!(
            "login failed with HTTP {s}"
        ))),
    }
}

enum Cmd {
    Dial {
        to: String,
        audio: CallAudio,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Answer {
        call_id: String,
        audio: CallAudio,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Reject {
        call_id: String,
    },
    Hangup {
        call_id: String,
    },
    Mute {
        call_id: String,
        mute: bool,
    },
    Hold {
        call_id: String,
        hold: bool,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    SetPresence {
        status: Presence,
    },
    Devices {
        call_id: String,
        source: Option<Box<dyn Source>>,
        sink: Option<Box<dyn Sink>>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Dtmf {
        call_id: String,
        digits: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Shutdown,
}

enum Input {
    Cmd(Cmd),
    Server(ServerMessage),
    Media(String, MediaEvent),
    SocketClosed(String),
    Reconnecting(String),
    Orphans(Vec<String>),
    Ping,
}

/// The engine handle: cheap to clone; every method talks to the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Input>,
    /// ICE servers from `welcome`.
    pub ice_servers: Arc<Vec<IceServer>>,
}

impl Engine {
    /// Connects to the switchboard's WebSocket, authenticates, and starts
    /// the engine task. Returns the handle and the event stream.
    ///
    /// # Errors
    /// [`EngineError::Unauthorized`] for a refused token,
    /// [`EngineError::Signaling`] when the socket cannot be opened.
    pub async fn connect(
        config: EngineConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<EngineEvent>), EngineError> {
        let (ws, welcome) = open_signaling(&config).await?;
        let ServerMessage::Welcome {
            user,
            tenant,
            ice_servers,
            heartbeat_ms,
            ..
        } = welcome
        else {
            unreachable!("open_signaling returns a welcome")
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let _ = events_tx.send(EngineEvent::Registered {
            user: user.clone(),
            tenant,
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(signaling_task(config.clone(), ws, out_rx, tx.clone()));
        // Keepalive.
        let ptx = tx.clone();
        let period = Duration::from_millis(heartbeat_ms.clamp(1_000, 60_000));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                if ptx.send(Input::Ping).is_err() {
                    return;
                }
            }
        });
        let ice = Arc::new(ice_servers);
        let actor = Actor {
            out: out_tx,
            events: events_tx,
            tx: tx.clone(),
            calls: HashMap::new(),
            ice: ice.clone(),
            next_id: 0,
            device: config.device_id.clone(),
            media: config.media,
        };
        tokio::spawn(actor.run(rx));
        Ok((
            Self {
                tx,
                ice_servers: ice,
            },
            events,
        ))
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EngineError>>) -> Cmd,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Input::Cmd(make(reply)))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Calls a user of our tenant; returns the new call's id. The call's
    /// progress arrives as [`EngineEvent::CallState`] events.
    ///
    /// # Errors
    /// [`EngineError::Media`] when the WebRTC session cannot be built;
    /// [`EngineError::Stopped`] after shutdown.
    pub async fn dial(&self, to: &str, audio: CallAudio) -> Result<String, EngineError> {
        let to = to.to_string();
        self.ask(|reply| Cmd::Dial { to, audio, reply }).await
    }

    /// Answers a ringing incoming call.
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`] when no such call rings here;
    /// [`EngineError::Media`] when the offer cannot be answered.
    pub async fn answer(&self, call_id: &str, audio: CallAudio) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Cmd::Answer {
            call_id,
            audio,
            reply,
        })
        .await
    }

    /// Declines a ringing incoming call.
    pub fn reject(&self, call_id: &str) {
        let _ = self.tx.send(Input::Cmd(Cmd::Reject {
            call_id: call_id.into(),
        }));
    }

    /// Hangs up (or cancels, while ringing).
    pub fn hangup(&self, call_id: &str) {
        let _ = self.tx.send(Input::Cmd(Cmd::Hangup {
            call_id: call_id.into(),
        }));
    }

    /// Mutes or unmutes the microphone of a call.
    pub fn set_mute(&self, call_id: &str, mute: bool) {
        let _ = self.tx.send(Input::Cmd(Cmd::Mute {
            call_id: call_id.into(),
            mute,
        }));
    }

    /// Holds or resumes a call (re-offer, RFC 3264).
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`], or [`EngineError::InvalidState`] when
    /// the call is not established.
    pub async fn set_hold(&self, call_id: &str, hold: bool) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Cmd::Hold {
            call_id,
            hold,
            reply,
        })
        .await
    }

    /// Sends DTMF digits on an established call (RFC 4733 telephone-events).
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`]; [`EngineError::InvalidState`] when the
    /// call is not established, a character is not a digit, or the far end
    /// did not accept telephone-events.
    pub async fn send_dtmf(&self, call_id: &str, digits: &str) -> Result<(), EngineError> {
        let (call_id, digits) = (call_id.to_string(), digits.to_string());
        self.ask(|reply| Cmd::Dtmf {
            call_id,
            digits,
            reply,
        })
        .await
    }

    /// Switches a call's input and/or output device mid-call without
    /// dropping the call.
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`]; [`EngineError::InvalidState`] before
    /// the call has media (answer it first).
    pub async fn set_devices(
        &self,
        call_id: &str,
        source: Option<Box<dyn Source>>,
        sink: Option<Box<dyn Sink>>,
    ) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Cmd::Devices {
            call_id,
            source,
            sink,
            reply,
        })
        .await
    }

    /// Sets my availability.
    pub fn set_presence(&self, status: Presence) {
        let _ = self.tx.send(Input::Cmd(Cmd::SetPresence { status }));
    }

    /// Hangs up every call and closes signaling.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Input::Cmd(Cmd::Shutdown));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the signaling WebSocket and authenticates: returns the socket and
/// the `welcome`.
async fn open_signaling(config: &EngineConfig) -> Result<(Ws, ServerMessage), EngineError> {
    let ws_url = format!(
        "{}/v1/ws",
        config
            .server
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&ws_url, None, true)
        .await
        .map_err(|e| EngineError::Signaling(format!("cannot open {ws_url}: {e}")))?;
    let hello = ClientFrame::new(ClientMessage::Hello {
        token: config.token.clone(),
        device_id: config.device_id.clone(),
        device_name: config.device_name.clone(),
        protocol: PROTOCOL_VERSION,
    });
    ws.send(Message::text(hello.to_json()))
        .await
        .map_err(|e| EngineError::Signaling(e.to_string()))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| EngineError::Signaling("no welcome within 10 s".into()))?
            .ok_or_else(|| EngineError::Signaling("socket closed during hello".into()))?
            .map_err(|e| EngineError::Signaling(e.to_string()))?;
        let Message::Text(t) = msg else { continue };
        match serde_json::from_str::<ServerMessage>(&t) {
            Ok(m @ ServerMessage::Welcome { .. }) => return Ok((ws, m)),
            Ok(ServerMessage::Error { code, message, .. }) => {
                return Err(match code {
                    softphone_protocol::ErrorCode::Unauthorized
                    | softphone_protocol::ErrorCode::TokenExpired => {
                        EngineError::Unauthorized(message)
                    }
                    _ => EngineError::Signaling(message),
                });
            }
            _ => continue,
        }
    }
}

/// Close codes after which reconnecting cannot help.
fn final_close(code: u16) -> bool {
    use softphone_protocol::close_code as c;
    matches!(code, c::UNAUTHORIZED | c::REPLACED | c::BAD_HELLO)
}

/// Owns the signaling socket: forwards frames both ways and, when the
/// socket drops, reconnects with jittered exponential backoff (0.5 s
/// doubling to 15 s). Calls survive: media is peer to peer and the
/// switchboard keeps them for its reconnect grace.
async fn signaling_task(
    config: EngineConfig,
    first: Ws,
    mut out: mpsc::UnboundedReceiver<String>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut ws = first;
    loop {
        let reason = loop {
            tokio::select! {
                frame = out.recv() => match frame {
                    Some(text) => {
                        if let Err(e) = ws.send(Message::text(text)).await {
                            break (e.to_string(), false);
                        }
                    }
                    None => {
                        let _ = ws.close(None).await;
                        return;
                    }
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                        Ok(m) => {
                            if tx.send(Input::Server(m)).is_err() {
                                return;
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable server frame"),
                    },
                    Some(Ok(Message::Close(f))) => {
                        let code = f.as_ref().map_or(1005, |f| u16::from(f.code));
                        break (format!("closed by the server ({code})"), final_close(code));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break (e.to_string(), false),
                    None => break ("socket ended".into(), false),
                },
            }
        };
        let (reason, is_final) = reason;
        if is_final {
            let _ = tx.send(Input::SocketClosed(reason));
            return;
        }
        let _ = tx.send(Input::Reconnecting(reason));
        let mut delay = Duration::from_millis(500);
        ws = loop {
            let jitter =
                Duration::from_millis(crate::now_ms() % (delay.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(delay / 2 + jitter).await;
            if tx.is_closed() {
                return;
            }
            match open_signaling(&config).await {
                Ok((ws, welcome)) => {
                    // Frames queued while away are stale pings or refer to
                    // calls the welcome now describes; drop pings only.
                    let _ = tx.send(Input::Server(welcome));
                    break ws;
                }
                Err(EngineError::Unauthorized(m)) => {
                    let _ = tx.send(Input::SocketClosed(format!("token refused: {m}")));
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "reconnect failed");
                    delay = (delay * 2).min(Duration::from_secs(15));
                }
            }
        };
    }
}

struct CallCtx {
    direction: Direction,
    state: CallState,
    session: Option<Arc<WebRtcSession>>,
    offer: Option<String>,
    early_candidates: Vec<Option<IceCandidate>>,
    last_stats: Option<MediaStats>,
    started: Instant,
}

struct Actor {
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedSender<EngineEvent>,
    tx: mpsc::UnboundedSender<Input>,
    calls: HashMap<String, CallCtx>,
    ice: Arc<Vec<IceServer>>,
    next_id: u64,
    device: String,
    media: crate::media::MediaOptions,
}

impl Actor {
    fn send(&self, m: ClientMessage) {
        let _ = self.out.send(ClientFrame::new(m).to_json());
    }

    fn emit(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    fn transition(&mut self, call_id: &str, input: CallInput) {
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        match c.state.next(c.direction, input) {
            Ok(next) if next != c.state => {
                c.state = next;
                let _ = self.events.send(EngineEvent::CallState {
                    call_id: call_id.to_string(),
                    state: next,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(call_id, error = %e, "ignored call input"),
        }
        if c.state.is_ended() {
            let c = self.calls.remove(call_id).expect("present");
            if let Some(s) = c.session {
                let quality = c.last_stats.map(|st| CallQuality {
                    rtt_ms: st.rtt_ms,
                    jitter_ms: Some(st.jitter_ms),
                    loss_pct: Some(st.loss_pct),
                    mos: Some(st.mos),
                    send_kbps: Some(st.send_kbps),
                    recv_kbps: Some(st.recv_kbps),
                });
                if let Some(quality) = quality {
                    self.send(ClientMessage::Stats {
                        call_id: call_id.to_string(),
                        quality,
                    });
                }
                tokio::spawn(async move { s.close().await });
            }
        }
    }

    async fn new_session(
        &self,
        call_id: &str,
        audio: CallAudio,
    ) -> Result<Arc<WebRtcSession>, EngineError> {
        let (mtx, mut mrx) = mpsc::unbounded_channel();
        let session =
            WebRtcSession::new(&self.media, &self.ice, audio.source, audio.sink, mtx).await?;
        let tx = self.tx.clone();
        let id = call_id.to_string();
        tokio::spawn(async move {
            while let Some(ev) = mrx.recv().await {
                if tx.send(Input::Media(id.clone(), ev)).is_err() {
                    return;
                }
            }
        });
        Ok(session)
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        while let Some(input) = rx.recv().await {
            match input {
                Input::Cmd(Cmd::Shutdown) => {
                    let ids: Vec<String> = self.calls.keys().cloned().collect();
                    for id in ids {
                        self.send(ClientMessage::Hangup {
                            call_id: id.clone(),
                        });
                        self.transition(&id, CallInput::End(EndReason::Completed));
                    }
                    break;
                }
                Input::Cmd(cmd) => self.on_cmd(cmd).await,
                Input::Server(m) => self.on_server(m).await,
                Input::Media(id, ev) => self.on_media(&id, ev),
                Input::Ping => self.send(ClientMessage::Ping {}),
                Input::Reconnecting(reason) => self.emit(EngineEvent::Reconnecting { reason }),
                Input::Orphans(ids) => {
                    for id in ids {
                        self.transition(&id, CallInput::End(EndReason::Failed));
                    }
                }
                Input::SocketClosed(reason) => {
                    let ids: Vec<String> = self.calls.keys().cloned().collect();
                    for id in ids {
                        self.transition(&id, CallInput::End(EndReason::Failed));
                    }
                    self.emit(EngineEvent::Disconnected { reason });
                    break;
                }
            }
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Dial { to, audio, reply } => {
                self.next_id += 1;
                let call_id = format!("{}-{}-{}", self.device, crate::now_ms(), self.next_id);
                let result = async {
                    let session = self.new_session(&call_id, audio).await?;
                    let sdp = session.create_offer().await?;
                    Ok::<_, EngineError>((session, sdp))
                }
                .await;
                match result {
                    Ok((session, sdp)) => {
                        self.calls.insert(
                            call_id.clone(),
                            CallCtx {
                                direction: Direction::Outgoing,
                                state: CallState::Dialing,
                                session: Some(session),
                                offer: None,
                                early_candidates: Vec::new(),
                                last_stats: None,
                                started: Instant::now(),
                            },
                        );
                        self.send(ClientMessage::Invite {
                            call_id: call_id.clone(),
                            to,
                            sdp,
                        });
                        self.emit(EngineEvent::CallState {
                            call_id: call_id.clone(),
                            state: CallState::Dialing,
                        });
                        let _ = reply.send(Ok(call_id));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Answer {
                call_id,
                audio,
                reply,
            } => {
                let offer = match self.calls.get(&call_id) {
                    Some(c)
                        if c.direction == Direction::Incoming && c.state == CallState::Ringing =>
                    {
                        c.offer.clone()
                    }
                    Some(_) => {
                        let _ = reply.send(Err(EngineError::InvalidState(
                            "the call is not ringing here".into(),
                        )));
                        return;
                    }
                    None => {
                        let _ = reply.send(Err(EngineError::UnknownCall(call_id)));
                        return;
                    }
                };
                let result = async {
                    let session = self.new_session(&call_id, audio).await?;
                    let answer = session
                        .accept_offer(offer.as_deref().unwrap_or_default())
                        .await?;
                    Ok::<_, EngineError>((session, answer))
                }
                .await;
                match result {
                    Ok((session, answer)) => {
                        let early = self
                            .calls
                            .get_mut(&call_id)
                            .map(|c| {
                                c.session = Some(session.clone());
                                std::mem::take(&mut c.early_candidates)
                            })
                            .unwrap_or_default();
                        for cand in early {
                            let _ = session.add_candidate(cand).await;
                        }
                        self.send(ClientMessage::Accept {
                            call_id: call_id.clone(),
                            sdp: answer,
                        });
                        self.transition(&call_id, CallInput::LocalAnswer);
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        self.send(ClientMessage::Reject {
                            call_id: call_id.clone(),
                            reason: RejectReason::Busy,
                        });
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::Reject { call_id } => self.send(ClientMessage::Reject {
                call_id,
                reason: RejectReason::Rejected,
            }),
            Cmd::Hangup { call_id } => self.send(ClientMessage::Hangup { call_id }),
            Cmd::Mute { call_id, mute } => {
                if let Some(s) = self.calls.get(&call_id).and_then(|c| c.session.clone()) {
                    s.set_mute(mute);
                }
            }
            Cmd::Hold {
                call_id,
                hold,
                reply,
            } => {
                let Some(c) = self.calls.get(&call_id) else {
                    let _ = reply.send(Err(EngineError::UnknownCall(call_id)));
                    return;
                };
                let (true, Some(s)) = (c.state.is_established(), c.session.clone()) else {
                    let _ = reply.send(Err(EngineError::InvalidState(
                        "the call is not established".into(),
                    )));
                    return;
                };
                match s.set_local_hold(hold).await {
                    Ok(sdp) => {
                        self.send(ClientMessage::Update {
                            call_id: call_id.clone(),
                            kind: SdpKind::Offer,
                            sdp,
                        });
                        self.transition(&call_id, CallInput::LocalHold(hold));
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Cmd::SetPresence { status } => self.send(ClientMessage::PresenceSet { status }),
            Cmd::Devices {
                call_id,
                source,
                sink,
                reply,
            } => {
                let result = match self.calls.get(&call_id) {
                    None => Err(EngineError::UnknownCall(call_id)),
                    Some(CallCtx {
                        session: Some(s), ..
                    }) => {
                        if let Some(src) = source {
                            s.set_source(src);
                        }
                        if let Some(snk) = sink {
                            s.set_sink(snk);
                        }
                        Ok(())
                    }
                    Some(_) => Err(EngineError::InvalidState(
                        "the call has no media yet".into(),
                    )),
                };
                let _ = reply.send(result);
            }
            Cmd::Dtmf {
                call_id,
                digits,
                reply,
            } => {
                let result = match self.calls.get(&call_id) {
                    None => Err(EngineError::UnknownCall(call_id)),
                    Some(c) => match (&c.session, c.state.is_established()) {
                        (Some(s), true) => s.send_dtmf(&digits),
                        _ => Err(EngineError::InvalidState(
                            "the call is not established".into(),
                        )),
                    },
                };
                let _ = reply.send(result);
            }
            Cmd::Shutdown => {}
        }
    }

    async fn on_server(&mut self, m: ServerMessage) {
        match m {
            ServerMessage::Welcome {
                user,
                tenant,
                calls,
                ..
            } => {
                // Back after a reconnect: calls the server no longer has ended
                // while we were away.
                let known: Vec<String> = calls.iter().map(|c| c.call_id.clone()).collect();
                let gone: Vec<String> = self
                    .calls
                    .iter()
                    .filter(|(id, c)| !known.contains(id) && c.session.is_some())
                    .map(|(id, _)| id.clone())
                    .collect();
                if !gone.is_empty() {
                    // Their call.ended, kept by the server, follows the
                    // welcome; whatever is still here in 2 s was lost.
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        let _ = tx.send(Input::Orphans(gone));
                    });
                }
                self.emit(EngineEvent::Registered { user, tenant });
            }
            ServerMessage::Incoming { call_id, from, sdp } => {
                self.calls.insert(
                    call_id.clone(),
                    CallCtx {
                        direction: Direction::Incoming,
                        state: CallState::Ringing,
                        session: None,
                        offer: Some(sdp),
                        early_candidates: Vec::new(),
                        last_stats: None,
                        started: Instant::now(),
                    },
                );
                self.send(ClientMessage::Ringing {
                    call_id: call_id.clone(),
                });
                self.emit(EngineEvent::Incoming {
                    call_id: call_id.clone(),
                    from,
                });
                self.emit(EngineEvent::CallState {
                    call_id,
                    state: CallState::Ringing,
                });
            }
            ServerMessage::Ringing { call_id } => {
                self.transition(&call_id, CallInput::RemoteRinging)
            }
            ServerMessage::Accepted { call_id, sdp, .. } => {
                let Some(c) = self.calls.get(&call_id) else {
                    return;
                };
                if c.direction == Direction::Outgoing {
                    if let (Some(s), Some(sdp)) = (c.session.clone(), sdp)
                        && let Err(e) = s.set_answer(&sdp).await
                    {
                        tracing::warn!(call_id, error = %e, "bad SDP answer");
                        self.send(ClientMessage::Hangup {
                            call_id: call_id.clone(),
                        });
                        return;
                    }
                    self.transition(&call_id, CallInput::RemoteAccepted);
                }
            }
            ServerMessage::Candidate { call_id, candidate } => {
                let Some(c) = self.calls.get_mut(&call_id) else {
                    return;
                };
                match c.session.clone() {
                    Some(s) => {
                        if let Err(e) = s.add_candidate(candidate).await {
                            tracing::debug!(call_id, error = %e, "remote candidate refused");
                        }
                    }
                    None => c.early_candidates.push(candidate),
                }
            }
            ServerMessage::Update { call_id, kind, sdp } => {
                let Some(s) = self.calls.get(&call_id).and_then(|c| c.session.clone()) else {
                    return;
                };
                match kind {
                    SdpKind::Offer => match s.accept_reoffer(&sdp).await {
                        Ok((answer, held)) => {
                            self.send(ClientMessage::Update {
                                call_id: call_id.clone(),
                                kind: SdpKind::Answer,
                                sdp: answer,
                            });
                            self.transition(&call_id, CallInput::RemoteHold(held));
                        }
                        Err(e) => tracing::warn!(call_id, error = %e, "re-offer refused"),
                    },
                    SdpKind::Answer => {
                        if let Err(e) = s.set_answer(&sdp).await {
                            tracing::warn!(call_id, error = %e, "re-answer refused");
                        }
                    }
                }
            }
            ServerMessage::Rejected { call_id, reason }
            | ServerMessage::Ended {
                call_id, reason, ..
            } => {
                self.transition(&call_id, CallInput::End(reason));
            }
            ServerMessage::AnsweredElsewhere { call_id, .. } => {
                self.transition(&call_id, CallInput::End(EndReason::AnsweredElsewhere));
            }
            ServerMessage::Presence { user, status } => {
                self.emit(EngineEvent::Presence { user, status })
            }
            ServerMessage::Error {
                code,
                message,
                call_id,
                ..
            } => {
                if let Some(id) = call_id.filter(|id| self.calls.contains_key(id)) {
                    tracing::debug!(id, "error about a call");
                }
                self.emit(EngineEvent::ServerError { code, message });
            }
            _ => {}
        }
    }

    fn on_media(&mut self, call_id: &str, ev: MediaEvent) {
        match ev {
            MediaEvent::LocalCandidate(candidate) => self.send(ClientMessage::Candidate {
                call_id: call_id.to_string(),
                candidate,
            }),
            MediaEvent::Connected => self.transition(call_id, CallInput::MediaConnected),
            MediaEvent::Failed(reason) => {
                tracing::warn!(call_id, reason, "media failed; hanging up");
                self.send(ClientMessage::Hangup {
                    call_id: call_id.to_string(),
                });
            }
            MediaEvent::FirstAudio => {
                if let Some(c) = self.calls.get(call_id) {
                    tracing::debug!(
                        call_id,
                        ms = c.started.elapsed().as_millis() as u64,
                        "first audio"
                    );
                }
                self.emit(EngineEvent::FirstAudio {
                    call_id: call_id.to_string(),
                });
            }
            MediaEvent::DeviceLost { input, replacement } => {
                tracing::warn!(call_id, input, replacement, "sound device lost; replaced");
                self.emit(EngineEvent::DeviceLost {
                    call_id: call_id.to_string(),
                    input,
                    replacement,
                });
            }
            MediaEvent::Dtmf(digit) => self.emit(EngineEvent::Dtmf {
                call_id: call_id.to_string(),
                digit,
            }),
            MediaEvent::Stats(stats) => {
                if let Some(c) = self.calls.get_mut(call_id) {
                    c.last_stats = Some(stats);
                }
                self.emit(EngineEvent::Stats {
                    call_id: call_id.to_string(),
                    stats,
                });
            }
        }
    }
}
