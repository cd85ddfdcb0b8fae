//! The engine handle and the task behind it.
//!
//! [`Engine`] is a cheap, cloneable handle; every method sends a
//! [`Command`] to one task that runs the pure [`EngineCore`] and executes
//! the [`Action`]s it returns: frames go to the signaling task, events to
//! the stream, media work to the call's own worker task. A worker runs its
//! call's media steps (creating the peer connection, applying SDP, adding
//! candidates) one at a time and reports back; the engine task never waits
//! for one, so a slow or hung peer connection delays only its own call.

use std::collections::HashMap;
use std::sync::Arc;

use softphone_audio::{Sink, Source};
use softphone_protocol::{ClientFrame, IceCandidate, Presence};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::core::{Action, Command, EngineCore, MediaDone, MediaOp, MediaStep, Reply, Timer};
use crate::media::webrtc::WebRtcFactory;
use crate::media::{CallAudio, MediaEvent, MediaFactory, MediaOptions, MediaSession};
use crate::signaling::{self, Signal, Welcome};
use crate::{EngineError, EngineEvent};

/// Where and who: what [`Engine::connect`] needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Switchboard base URL, e.g. `http://127.0.0.1:8080` (or `https://…`).
    pub server: String,
    /// Bearer token from [`crate::api::Api::login`].
    pub token: String,
    /// Stable id of this endpoint (one installation of the app or CLI),
    /// 1–64 of `[A-Za-z0-9_-]`; the wire calls it `device_id`.
    pub endpoint_id: String,
    /// Human name of this endpoint, e.g. "Softphone on desk-12".
    pub endpoint_name: String,
    /// Media options (e.g. loopback-only ICE for tests).
    pub media: MediaOptions,
    /// Base URLs of the other nodes of the same Switchboard cluster (same
    /// accounts and tokens), for failover: when the signaling socket drops
    /// or cannot be opened, each new attempt goes to the next URL of
    /// `server` + these, in turn, with the usual jittered backoff. Empty:
    /// `server` only (or one URL behind a load balancer). HTTP requests
    /// ([`crate::api::Api`]) still go to `server`.
    pub fallback_servers: Vec<String>,
}

impl EngineConfig {
    /// A config with the endpoint named after its id and default media
    /// options.
    pub fn new(server: &str, token: &str, endpoint_id: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            token: token.to_string(),
            endpoint_id: endpoint_id.to_string(),
            endpoint_name: endpoint_id.to_string(),
            media: MediaOptions::default(),
            fallback_servers: Vec::new(),
        }
    }

    /// `server`, then the fallbacks: the order signaling tries them in.
    pub fn servers(&self) -> Vec<String> {
        std::iter::once(&self.server)
            .chain(&self.fallback_servers)
            .map(|s| s.trim_end_matches('/').to_string())
            .collect()
    }
}

/// What the engine task reacts to.
enum Input {
    Command(Command),
    Signal(Signal),
    MediaEvent(String, MediaEvent),
    MediaDone(String, MediaDone),
    SessionReady(String, Arc<dyn MediaSession>),
    Timer(Timer),
}

/// The engine handle: cheap to clone; every method talks to the engine task.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::UnboundedSender<Input>,
}

impl Engine {
    /// Connects to the switchboard's WebSocket, authenticates, and starts
    /// the engine with WebRTC media. Returns the handle and the event
    /// stream, whose first event is [`EngineEvent::Registered`].
    ///
    /// # Errors
    /// As [`signaling::open`]: [`EngineError::Unauthorized`] for a refused
    /// token, [`EngineError::Unreachable`] when the socket cannot be opened.
    pub async fn connect(
        config: EngineConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<EngineEvent>), EngineError> {
        let factory = Arc::new(WebRtcFactory {
            options: config.media,
        });
        Self::connect_with(config, factory).await
    }

    /// [`Engine::connect`] with another media implementation.
    ///
    /// # Errors
    /// As [`Engine::connect`].
    pub async fn connect_with(
        config: EngineConfig,
        media: Arc<dyn MediaFactory>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<EngineEvent>), EngineError> {
        let (ws, welcome) = signaling::open(&config).await?;
        let (out, signals) = signaling::spawn(config.clone(), ws, &welcome);
        Ok(Self::start(
            &config.endpoint_id,
            &welcome,
            media,
            out,
            signals,
        ))
    }

    /// Starts the engine task over an already open signaling channel pair:
    /// frames to send go to `out`, what the server says comes from
    /// `signals`. [`Engine::connect`] passes the signaling task's; tests
    /// pass their own and play the server.
    pub fn start(
        endpoint_id: &str,
        welcome: &Welcome,
        media: Arc<dyn MediaFactory>,
        out: mpsc::UnboundedSender<ClientFrame>,
        mut signals: mpsc::UnboundedReceiver<Signal>,
    ) -> (Self, mpsc::UnboundedReceiver<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let _ = events_tx.send(EngineEvent::Registered {
            user: welcome.user.clone(),
            tenant: welcome.tenant.clone(),
        });
        let stx = tx.clone();
        tokio::spawn(async move {
            while let Some(s) = signals.recv().await {
                if stx.send(Input::Signal(s)).is_err() {
                    return;
                }
            }
        });
        let task = Task {
            core: EngineCore::new(endpoint_id, welcome),
            media,
            out,
            events: events_tx,
            tx: tx.clone(),
            workers: HashMap::new(),
        };
        tokio::spawn(task.run(rx));
        (Self { tx }, events)
    }

    fn command(&self, cmd: Command) -> Result<(), EngineError> {
        self.tx
            .send(Input::Command(cmd))
            .map_err(|_| EngineError::Stopped)
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.command(make(reply))?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Calls a user of our tenant; returns the new call's id at once. The
    /// call's progress arrives as [`EngineEvent::Dialing`], then
    /// [`EngineEvent::CallState`] events (`Ended { failed }` when the
    /// media cannot be set up).
    ///
    /// # Errors
    /// [`EngineError::Stopped`] after shutdown.
    pub async fn dial(&self, to: &str, audio: CallAudio) -> Result<String, EngineError> {
        let to = to.to_string();
        self.ask(|reply| Command::Dial { to, audio, reply }).await
    }

    /// Answers a ringing incoming call; returns once the answer is sent.
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`] when no such call rings here (or it
    /// ended meanwhile); [`EngineError::Media`] or
    /// [`EngineError::Negotiation`] when the offer cannot be answered.
    pub async fn answer(&self, call_id: &str, audio: CallAudio) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Command::Answer {
            call_id,
            audio,
            reply,
        })
        .await
    }

    /// Declines a ringing incoming call.
    pub fn reject(&self, call_id: &str) {
        let _ = self.command(Command::Reject {
            call_id: call_id.into(),
        });
    }

    /// Hangs up (or cancels, while ringing).
    pub fn hangup(&self, call_id: &str) {
        let _ = self.command(Command::Hangup {
            call_id: call_id.into(),
        });
    }

    /// Mutes or unmutes the microphone of a call.
    pub fn set_mute(&self, call_id: &str, mute: bool) {
        let _ = self.command(Command::Mute {
            call_id: call_id.into(),
            mute,
        });
    }

    /// Holds or resumes a call (re-offer, RFC 3264); returns once the
    /// re-offer is sent.
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`], or [`EngineError::InvalidState`] when
    /// the call is not established.
    pub async fn set_hold(&self, call_id: &str, hold: bool) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Command::Hold {
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
        self.ask(|reply| Command::Dtmf {
            call_id,
            digits,
            reply,
        })
        .await
    }

    /// Switches a call's input and/or output audio device mid-call without
    /// dropping the call.
    ///
    /// # Errors
    /// [`EngineError::UnknownCall`]; [`EngineError::InvalidState`] before
    /// the call has media (answer it first).
    pub async fn set_audio_devices(
        &self,
        call_id: &str,
        source: Option<Box<dyn Source>>,
        sink: Option<Box<dyn Sink>>,
    ) -> Result<(), EngineError> {
        let call_id = call_id.to_string();
        self.ask(|reply| Command::Devices {
            call_id,
            source,
            sink,
            reply,
        })
        .await
    }

    /// Sets my availability (`offline` cannot be set: the server refuses
    /// it, as docs/protocol.md §4.3 says).
    pub fn set_presence(&self, status: Presence) {
        let _ = self.command(Command::SetPresence { status });
    }

    /// Hangs up every call, reports [`EngineEvent::Disconnected`] and
    /// closes signaling.
    pub fn shutdown(&self) {
        let _ = self.command(Command::Shutdown);
    }
}

/// One call's media worker.
struct Worker {
    ops: mpsc::UnboundedSender<MediaOp>,
    task: JoinHandle<()>,
    session: Option<Arc<dyn MediaSession>>,
}

struct Task {
    core: EngineCore,
    media: Arc<dyn MediaFactory>,
    out: mpsc::UnboundedSender<ClientFrame>,
    events: mpsc::UnboundedSender<EngineEvent>,
    tx: mpsc::UnboundedSender<Input>,
    workers: HashMap<String, Worker>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>) {
        while let Some(input) = rx.recv().await {
            let actions = match input {
                Input::Command(cmd) => self.core.command(cmd, crate::now_ms()),
                Input::Signal(s) => self.core.signal(s),
                Input::MediaEvent(id, ev) => self.core.media_event(&id, ev),
                Input::MediaDone(id, done) => self.core.media_done(&id, done),
                Input::SessionReady(id, session) => {
                    match self.workers.get_mut(&id) {
                        Some(w) => w.session = Some(session),
                        // The call ended while its session was being made.
                        None => {
                            tokio::spawn(async move { session.close().await });
                        }
                    }
                    continue;
                }
                Input::Timer(t) => self.core.timer(t),
            };
            if !self.execute(actions) {
                break;
            }
        }
        for (_, w) in self.workers.drain() {
            close(w);
        }
    }

    /// Runs the core's actions; `false` once the engine must stop.
    fn execute(&mut self, actions: Vec<Action>) -> bool {
        for action in actions {
            match action {
                Action::Send(frame) => {
                    let _ = self.out.send(frame);
                }
                Action::Emit(e) => {
                    let _ = self.events.send(e);
                }
                Action::Media { call_id, op } => {
                    let worker = self.workers.entry(call_id.clone()).or_insert_with(|| {
                        spawn_worker(call_id.clone(), self.media.clone(), self.tx.clone())
                    });
                    let _ = worker.ops.send(op);
                }
                Action::Session { call_id, op } => {
                    op.run(self.workers.get(&call_id).and_then(|w| w.session.as_ref()))
                }
                Action::CloseMedia { call_id } => {
                    if let Some(w) = self.workers.remove(&call_id) {
                        close(w);
                    }
                }
                Action::After { ms, timer } => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                        let _ = tx.send(Input::Timer(timer));
                    });
                }
                Action::Stop => return false,
            }
        }
        true
    }
}

/// Stops a worker (even one stuck in a media step) and closes its session.
fn close(w: Worker) {
    w.task.abort();
    if let Some(s) = w.session {
        tokio::spawn(async move { s.close().await });
    }
}

fn spawn_worker(
    call_id: String,
    media: Arc<dyn MediaFactory>,
    tx: mpsc::UnboundedSender<Input>,
) -> Worker {
    let (ops, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(worker(call_id, media, rx, tx));
    Worker {
        ops,
        task,
        session: None,
    }
}

/// Runs one call's media steps in order. See the module docs.
async fn worker(
    call_id: String,
    media: Arc<dyn MediaFactory>,
    mut ops: mpsc::UnboundedReceiver<MediaOp>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let mut session: Option<Arc<dyn MediaSession>> = None;
    // Remote candidates that came before the session (or its remote SDP).
    let mut early: Vec<Option<IceCandidate>> = Vec::new();
    let done = |d: MediaDone| {
        let _ = tx.send(Input::MediaDone(call_id.clone(), d));
    };
    let failed = |step, error, reply| MediaDone::Failed { step, error, reply };
    while let Some(op) = ops.recv().await {
        match op {
            MediaOp::Offer { ice, audio } => {
                match create(&call_id, &media, &ice, audio, &tx).await {
                    Ok(s) => {
                        session = Some(s.clone());
                        match s.create_offer().await {
                            Ok(sdp) => done(MediaDone::Offer(sdp)),
                            Err(e) => done(failed(MediaStep::Offer, e, None)),
                        }
                    }
                    Err(e) => done(failed(MediaStep::Offer, e, None)),
                }
            }
            MediaOp::Answer {
                ice,
                audio,
                offer,
                reply,
            } => {
                let s = match create(&call_id, &media, &ice, audio, &tx).await {
                    Ok(s) => s,
                    Err(e) => {
                        done(failed(MediaStep::Answer, e, Some(reply)));
                        continue;
                    }
                };
                session = Some(s.clone());
                match s.accept_offer(&offer).await {
                    Ok(sdp) => {
                        for c in early.drain(..) {
                            if let Err(e) = s.add_candidate(c).await {
                                tracing::debug!(call_id, error = %e, "early candidate refused");
                            }
                        }
                        done(MediaDone::Answered { sdp, reply });
                    }
                    Err(e) => done(failed(MediaStep::Answer, e, Some(reply))),
                }
            }
            MediaOp::SetAnswer { sdp } => {
                let Some(s) = &session else { continue };
                match s.set_answer(&sdp).await {
                    Ok(()) => {
                        for c in early.drain(..) {
                            let _ = s.add_candidate(c).await;
                        }
                        done(MediaDone::AnswerApplied);
                    }
                    Err(e) => done(failed(MediaStep::SetAnswer, e, None)),
                }
            }
            MediaOp::Candidate(c) => match &session {
                Some(s) => {
                    if let Err(e) = s.add_candidate(c).await {
                        tracing::debug!(call_id, error = %e, "remote candidate refused");
                    }
                }
                None => early.push(c),
            },
            MediaOp::Hold { hold, reply } => {
                let Some(s) = &session else {
                    let e = EngineError::InvalidState("the call has no media yet".into());
                    done(failed(MediaStep::Hold, e, Some(reply)));
                    continue;
                };
                match s.set_local_hold(hold).await {
                    Ok(sdp) => done(MediaDone::HoldOffer { sdp, hold, reply }),
                    Err(e) => done(failed(MediaStep::Hold, e, Some(reply))),
                }
            }
            MediaOp::ReOffer { sdp, held } => {
                let Some(s) = &session else { continue };
                s.set_remote_hold(held);
                match s.accept_offer(&sdp).await {
                    Ok(answer) => done(MediaDone::ReAnswer { sdp: answer, held }),
                    Err(e) => done(failed(MediaStep::ReOffer, e, None)),
                }
            }
            MediaOp::ReAnswer { sdp } => {
                let Some(s) = &session else { continue };
                if let Err(e) = s.set_answer(&sdp).await {
                    done(failed(MediaStep::ReAnswer, e, None));
                }
            }
        }
    }
}

/// Makes a call's session, forwarding its events to the engine task and
/// handing the task the session for synchronous work.
async fn create(
    call_id: &str,
    media: &Arc<dyn MediaFactory>,
    ice: &[softphone_protocol::IceServer],
    audio: CallAudio,
    tx: &mpsc::UnboundedSender<Input>,
) -> Result<Arc<dyn MediaSession>, EngineError> {
    let (etx, mut erx) = mpsc::unbounded_channel();
    let session = media.create(ice, audio, etx).await?;
    let _ = tx.send(Input::SessionReady(call_id.to_string(), session.clone()));
    let (id, tx) = (call_id.to_string(), tx.clone());
    tokio::spawn(async move {
        while let Some(ev) = erx.recv().await {
            if tx.send(Input::MediaEvent(id.clone(), ev)).is_err() {
                return;
            }
        }
    });
    Ok(session)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use softphone_audio::{NullSink, Silence};
    use softphone_protocol::{ClientMessage, IceServer, UserRef};

    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";

    /// A session that answers at once, or never (its offer hangs forever,
    /// like a peer connection stuck on a dead network).
    struct FakeSession {
        hang: bool,
    }

    #[async_trait::async_trait]
    impl MediaSession for FakeSession {
        async fn create_offer(&self) -> Result<String, EngineError> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            Ok(OFFER.into())
        }
        async fn accept_offer(&self, _: &str) -> Result<String, EngineError> {
            Ok(OFFER.into())
        }
        async fn set_answer(&self, _: &str) -> Result<(), EngineError> {
            Ok(())
        }
        async fn add_candidate(&self, _: Option<IceCandidate>) -> Result<(), EngineError> {
            Ok(())
        }
        async fn set_local_hold(&self, _: bool) -> Result<String, EngineError> {
            Ok(OFFER.into())
        }
        fn set_remote_hold(&self, _: bool) {}
        fn set_mute(&self, _: bool) {}
        fn send_dtmf(&self, _: &str) -> Result<(), EngineError> {
            Ok(())
        }
        fn set_source(&self, _: Box<dyn Source>) {}
        fn set_sink(&self, _: Box<dyn Sink>) {}
        async fn close(&self) {}
    }

    /// Makes fake sessions (the first one hangs when asked) and records the
    /// ICE servers each call was given.
    #[derive(Default)]
    struct FakeMedia {
        hang_first: bool,
        made: AtomicUsize,
        ice: Mutex<Vec<Vec<IceServer>>>,
    }

    #[async_trait::async_trait]
    impl MediaFactory for FakeMedia {
        async fn create(
            &self,
            ice_servers: &[IceServer],
            _: CallAudio,
            _: mpsc::UnboundedSender<MediaEvent>,
        ) -> Result<Arc<dyn MediaSession>, EngineError> {
            self.ice.lock().unwrap().push(ice_servers.to_vec());
            let n = self.made.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(FakeSession {
                hang: self.hang_first && n == 0,
            }))
        }
    }

    fn welcome(ice_user: &str) -> Welcome {
        Welcome {
            user: UserRef {
                user: "alice".into(),
                display_name: "Alice".into(),
            },
            tenant: "acme".into(),
            presence: Presence::Available,
            ice_servers: vec![IceServer {
                urls: vec!["turn:turn.example.org".into()],
                username: Some(ice_user.into()),
                credential: Some("x".into()),
            }],
            heartbeat_ms: 20_000,
            calls: vec![],
            server: "http://switchboard.test".into(),
        }
    }

    fn audio() -> CallAudio {
        CallAudio {
            source: Box::new(Silence),
            sink: Box::new(NullSink),
        }
    }

    /// The next frame the engine sends, within 5 s.
    async fn next_frame(out: &mut mpsc::UnboundedReceiver<ClientFrame>) -> ClientMessage {
        tokio::time::timeout(Duration::from_secs(5), out.recv())
            .await
            .expect("a frame within 5 s")
            .expect("engine running")
            .message
    }

    #[tokio::test]
    async fn a_hung_peer_connection_delays_only_its_own_call() {
        let media = Arc::new(FakeMedia {
            hang_first: true,
            ..FakeMedia::default()
        });
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let (_signals_tx, signals) = mpsc::unbounded_channel();
        let (engine, mut events) = Engine::start("a", &welcome("u"), media, out_tx, signals);
        let stuck = engine.dial("bob", audio()).await.unwrap();
        let fine = engine.dial("carol", audio()).await.unwrap();
        // Carol's invite goes out while Bob's offer never completes.
        match next_frame(&mut out).await {
            ClientMessage::Invite { call_id, to, .. } => {
                assert_eq!((call_id.as_str(), to.as_str()), (fine.as_str(), "carol"));
            }
            other => panic!("{other:?}"),
        }
        // Commands keep working: presence, and hanging up the stuck call.
        engine.set_presence(Presence::Away);
        assert_eq!(
            next_frame(&mut out).await,
            ClientMessage::PresenceSet {
                status: Presence::Away
            }
        );
        engine.hangup(&stuck);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(ev) = events.recv().await {
                if let EngineEvent::CallState {
                    call_id,
                    state: crate::call::CallState::Ended { reason },
                } = ev
                    && call_id == stuck
                {
                    return reason;
                }
            }
            panic!("events ended");
        })
        .await
        .expect("the stuck call ends at once");
        assert_eq!(ended, softphone_protocol::EndReason::Cancelled);
    }

    #[tokio::test]
    async fn new_turn_credentials_from_a_reconnect_reach_the_next_call() {
        let media = Arc::new(FakeMedia::default());
        let (out_tx, mut out) = mpsc::unbounded_channel();
        let (signals_tx, signals) = mpsc::unbounded_channel();
        let (engine, mut events) =
            Engine::start("a", &welcome("first"), media.clone(), out_tx, signals);
        engine.dial("bob", audio()).await.unwrap();
        assert!(matches!(
            next_frame(&mut out).await,
            ClientMessage::Invite { .. }
        ));
        signals_tx
            .send(Signal::Reconnecting {
                detail: "cut".into(),
            })
            .unwrap();
        signals_tx.send(Signal::Welcome(welcome("second"))).unwrap();
        // Wait until the engine has taken the welcome in.
        let mut registered = 0;
        while registered < 2 {
            if let Some(EngineEvent::Registered { .. }) = events.recv().await {
                registered += 1;
            }
        }
        engine.dial("carol", audio()).await.unwrap();
        assert!(matches!(
            next_frame(&mut out).await,
            ClientMessage::Invite { .. }
        ));
        let ice = media.ice.lock().unwrap().clone();
        let users: Vec<Option<&str>> = ice.iter().map(|s| s[0].username.as_deref()).collect();
        assert_eq!(users, [Some("first"), Some("second")]);
    }
}
