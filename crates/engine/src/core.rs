//! The engine's pure core: every call's state, and the rules that turn what
//! happens (a command from the handle, a switchboard frame, a media event,
//! a media worker's result, a timer) into what to do ([`Action`]s: frames
//! to send, events to report, media work to queue).
//!
//! No IO and no clock: the task around it ([`crate::Engine`]) executes the
//! actions, and time comes in as an argument. Media work (creating a peer
//! connection, applying an SDP) never runs here: it goes to the call's own
//! media worker as a [`MediaOp`] and comes back as a [`MediaDone`], so one
//! slow peer connection cannot delay another call's commands.
//!
//! Rules kept here, each once:
//! - a call starts with one [`EngineEvent::Dialing`] or
//!   [`EngineEvent::Incoming`] naming the peer, then one
//!   [`EngineEvent::CallState`] per transition of [`CallState`];
//! - our ICE candidates wait until the server knows the call (our invite or
//!   accept is sent), since it refuses candidates for calls it has not seen;
//! - a remote SDP without usable audio ([`crate::sdp`]) ends the call as
//!   `incompatible`, never as `completed`;
//! - the ICE servers of the latest `welcome` serve every later call, so
//!   time-limited TURN credentials are renewed by each reconnect.

use std::collections::HashMap;
use std::sync::Arc;

use softphone_audio::{Sink, Source};
use softphone_protocol::{
    CallDirection, CallQuality, ClientFrame, ClientMessage, EndReason, ErrorCode, HangupReason,
    IceCandidate, IceServer, Presence, RejectReason, SdpKind, ServerMessage, UserRef,
};
use tokio::sync::oneshot;

use crate::call::{CallInput, CallState};
use crate::media::{CallAudio, MediaEvent, MediaSession, MediaStats};
use crate::signaling::{Signal, Welcome};
use crate::{DisconnectReason, EngineError, EngineEvent, sdp};

/// Where a command's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// What the [`crate::Engine`] handle asks for.
#[non_exhaustive]
pub enum Command {
    /// Call `to` (a user name of our tenant); the reply is the call id.
    Dial {
        /// Whom.
        to: String,
        /// Audio devices for the call.
        audio: CallAudio,
        /// The new call's id, at once (before the offer is ready).
        reply: Reply<String>,
    },
    /// Answer a ringing call; the reply comes once the answer is sent.
    Answer {
        /// The call.
        call_id: String,
        /// Audio devices for the call.
        audio: CallAudio,
        /// Done, or why not.
        reply: Reply<()>,
    },
    /// Decline a ringing call.
    Reject {
        /// The call.
        call_id: String,
    },
    /// Hang up (or cancel, while ringing).
    Hangup {
        /// The call.
        call_id: String,
    },
    /// Mute or unmute the microphone.
    Mute {
        /// The call.
        call_id: String,
        /// Muted or not.
        mute: bool,
    },
    /// Hold or resume; the reply comes once the re-offer is sent.
    Hold {
        /// The call.
        call_id: String,
        /// Hold or resume.
        hold: bool,
        /// Done, or why not.
        reply: Reply<()>,
    },
    /// Send DTMF digits.
    Dtmf {
        /// The call.
        call_id: String,
        /// `0-9 * # A-D`.
        digits: String,
        /// Queued, or why not.
        reply: Reply<()>,
    },
    /// Switch audio devices mid-call.
    Devices {
        /// The call.
        call_id: String,
        /// New input, if any.
        source: Option<Box<dyn Source>>,
        /// New output, if any.
        sink: Option<Box<dyn Sink>>,
        /// Done, or why not.
        reply: Reply<()>,
    },
    /// Set my availability.
    SetPresence {
        /// The new status.
        status: Presence,
    },
    /// Hang up every call and stop.
    Shutdown,
}

/// Work for a call's media worker, run in order, one at a time.
#[non_exhaustive]
pub enum MediaOp {
    /// Create the session and our offer → [`MediaDone::Offer`].
    Offer {
        /// ICE servers to use.
        ice: Vec<IceServer>,
        /// Audio devices.
        audio: CallAudio,
    },
    /// Create the session and answer `offer` → [`MediaDone::Answered`].
    Answer {
        /// ICE servers to use.
        ice: Vec<IceServer>,
        /// Audio devices.
        audio: CallAudio,
        /// The caller's SDP offer.
        offer: String,
        /// Passed back in [`MediaDone::Answered`].
        reply: Reply<()>,
    },
    /// Apply the callee's answer to our offer → [`MediaDone::AnswerApplied`].
    SetAnswer {
        /// The SDP answer.
        sdp: String,
    },
    /// Add a remote candidate (kept until the session exists).
    Candidate(Option<IceCandidate>),
    /// Hold or resume from this side → [`MediaDone::HoldOffer`].
    Hold {
        /// Hold or resume.
        hold: bool,
        /// Passed back in [`MediaDone::HoldOffer`].
        reply: Reply<()>,
    },
    /// Answer the far end's re-offer → [`MediaDone::ReAnswer`].
    ReOffer {
        /// Their SDP.
        sdp: String,
        /// Whether it holds us.
        held: bool,
    },
    /// Apply the far end's answer to our re-offer.
    ReAnswer {
        /// Their SDP.
        sdp: String,
    },
}

/// What a media worker reports back.
pub enum MediaDone {
    /// Our offer is ready.
    Offer(String),
    /// Our answer is ready.
    Answered {
        /// The SDP answer.
        sdp: String,
        /// The command's reply.
        reply: Reply<()>,
    },
    /// The callee's answer is applied.
    AnswerApplied,
    /// Our hold/resume re-offer is ready.
    HoldOffer {
        /// The SDP re-offer.
        sdp: String,
        /// Hold or resume.
        hold: bool,
        /// The command's reply.
        reply: Reply<()>,
    },
    /// Our answer to their re-offer is ready.
    ReAnswer {
        /// The SDP answer.
        sdp: String,
        /// Whether their re-offer holds us.
        held: bool,
    },
    /// A step failed.
    Failed {
        /// Which step.
        step: MediaStep,
        /// Why.
        error: EngineError,
        /// The command's reply, when the step had one.
        reply: Option<Reply<()>>,
    },
}

/// The media steps that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStep {
    /// Creating the session or our offer.
    Offer,
    /// Creating the session or our answer.
    Answer,
    /// Applying the callee's answer.
    SetAnswer,
    /// Adding a remote candidate (not fatal).
    Candidate,
    /// Our hold/resume re-offer (not fatal).
    Hold,
    /// Their re-offer (not fatal).
    ReOffer,
    /// Their re-answer (not fatal).
    ReAnswer,
}

/// Synchronous work on a call's session, done at once by the task.
#[non_exhaustive]
pub enum SessionOp {
    /// Mute or unmute.
    Mute(bool),
    /// Queue DTMF digits.
    Dtmf {
        /// The digits.
        digits: String,
        /// Queued, or why not.
        reply: Reply<()>,
    },
    /// Switch audio devices.
    Devices {
        /// New input.
        source: Option<Box<dyn Source>>,
        /// New output.
        sink: Option<Box<dyn Sink>>,
        /// Done, or why not.
        reply: Reply<()>,
    },
}

impl SessionOp {
    /// Runs the op on `session`, or answers that there is no media yet.
    pub fn run(self, session: Option<&Arc<dyn MediaSession>>) {
        let Some(s) = session else {
            let no_media = || {
                Err(EngineError::InvalidState(
                    "the call has no media yet".into(),
                ))
            };
            match self {
                Self::Mute(_) => {}
                Self::Dtmf { reply, .. } | Self::Devices { reply, .. } => {
                    let _ = reply.send(no_media());
                }
            }
            return;
        };
        match self {
            Self::Mute(m) => s.set_mute(m),
            Self::Dtmf { digits, reply } => {
                let _ = reply.send(s.send_dtmf(&digits));
            }
            Self::Devices {
                source,
                sink,
                reply,
            } => {
                if let Some(src) = source {
                    s.set_source(src);
                }
                if let Some(snk) = sink {
                    s.set_sink(snk);
                }
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// A timer the task arms for the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// After a reconnect: calls the server did not list and that are still
    /// here were lost while we were away.
    Orphans(Vec<String>),
}

/// What the core asks the task to do, in order.
#[non_exhaustive]
pub enum Action {
    /// Send this frame to the switchboard.
    Send(ClientFrame),
    /// Report this event.
    Emit(EngineEvent),
    /// Queue work on a call's media worker (started on first use).
    Media {
        /// The call.
        call_id: String,
        /// The work.
        op: MediaOp,
    },
    /// Run synchronous work on a call's session.
    Session {
        /// The call.
        call_id: String,
        /// The work.
        op: SessionOp,
    },
    /// The call is over: stop its worker and close its session.
    CloseMedia {
        /// The call.
        call_id: String,
    },
    /// Call [`EngineCore::timer`] with this after `ms` milliseconds.
    After {
        /// Delay, ms.
        ms: u64,
        /// The timer.
        timer: Timer,
    },
    /// The engine is done: stop the task.
    Stop,
}

/// How long after a reconnect's `welcome` a call it did not list is ended
/// as lost, in ms (its `call.ended`, kept by the server, normally follows
/// the `welcome` at once).
pub const ORPHAN_DELAY_MS: u64 = 2_000;

struct Call {
    direction: CallDirection,
    state: CallState,
    peer: UserRef,
    /// The caller's offer, while ringing here.
    offer: Option<String>,
    /// The server knows the call from us (invite or accept sent): our
    /// candidates may go out.
    signaled: bool,
    /// Our candidates gathered before that.
    candidates: Vec<Option<IceCandidate>>,
    /// A media worker exists for the call.
    has_media: bool,
    last_stats: Option<MediaStats>,
}

/// The engine's pure core. See the module docs.
pub struct EngineCore {
    endpoint_id: String,
    ice: Vec<IceServer>,
    calls: HashMap<String, Call>,
    next_id: u64,
}

fn send(m: ClientMessage) -> Action {
    Action::Send(ClientFrame::new(m))
}

impl EngineCore {
    /// A core for endpoint `endpoint_id` after the first `welcome`.
    pub fn new(endpoint_id: &str, welcome: &Welcome) -> Self {
        Self {
            endpoint_id: endpoint_id.to_string(),
            ice: welcome.ice_servers.clone(),
            calls: HashMap::new(),
            next_id: 0,
        }
    }

    /// The ICE servers the next call will use.
    pub fn ice_servers(&self) -> &[IceServer] {
        &self.ice
    }

    /// Ids of the calls in progress.
    pub fn call_ids(&self) -> Vec<String> {
        self.calls.keys().cloned().collect()
    }

    /// The state of a call in progress.
    pub fn state(&self, call_id: &str) -> Option<CallState> {
        self.calls.get(call_id).map(|c| c.state)
    }

    /// Applies `input` to a call: one [`EngineEvent::CallState`] per change;
    /// when the call ends, its media is closed and its quality summary sent.
    fn transition(&mut self, call_id: &str, input: CallInput, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        match c.state.next(c.direction, input) {
            Ok(next) if next != c.state => {
                c.state = next;
                out.push(Action::Emit(EngineEvent::CallState {
                    call_id: call_id.to_string(),
                    state: next,
                }));
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(call_id, error = %e, "ignored call input"),
        }
        if !c.state.is_ended() {
            return;
        }
        let Some(c) = self.calls.remove(call_id) else {
            return;
        };
        if let Some(st) = c.last_stats {
            out.push(send(ClientMessage::Stats {
                call_id: call_id.to_string(),
                quality: CallQuality {
                    rtt_ms: st.rtt_ms,
                    jitter_ms: Some(st.jitter_ms),
                    loss_pct: Some(st.loss_pct),
                    mos: Some(st.mos),
                    send_kbps: Some(st.send_kbps),
                    recv_kbps: Some(st.recv_kbps),
                },
            }));
        }
        if c.has_media {
            out.push(Action::CloseMedia {
                call_id: call_id.to_string(),
            });
        }
    }

    fn end(&mut self, call_id: &str, reason: EndReason, out: &mut Vec<Action>) {
        self.transition(call_id, CallInput::End(reason), out);
    }

    fn media(&mut self, call_id: &str, op: MediaOp, out: &mut Vec<Action>) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.has_media = true;
        }
        out.push(Action::Media {
            call_id: call_id.to_string(),
            op,
        });
    }

    /// Tells the server we give up on a call for `reason`, and ends it here
    /// with the matching end reason at once.
    fn abandon(&mut self, call_id: &str, reason: HangupReason, out: &mut Vec<Action>) {
        let Some(c) = self.calls.get(call_id) else {
            return;
        };
        if c.signaled || c.direction == CallDirection::Incoming {
            out.push(send(ClientMessage::Hangup {
                call_id: call_id.to_string(),
                reason: Some(reason),
            }));
        }
        self.end(call_id, reason.end_reason(), out);
    }

    /// `reply` back when `call_id` is established; otherwise it is answered
    /// with why not (unknown call, not established yet).
    fn established(&self, call_id: &str, reply: Reply<()>) -> Option<Reply<()>> {
        let why = match self.calls.get(call_id) {
            None => EngineError::UnknownCall(call_id.to_string()),
            Some(c) if !c.state.is_established() => {
                EngineError::InvalidState("the call is not established".into())
            }
            Some(_) => return Some(reply),
        };
        let _ = reply.send(Err(why));
        None
    }

    /// A command from the handle, at `now_ms` (ms since the Unix epoch).
    pub fn command(&mut self, cmd: Command, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        match cmd {
            Command::Dial { to, audio, reply } => {
                self.next_id += 1;
                let call_id = format!("{}-{now_ms}-{}", self.endpoint_id, self.next_id);
                let peer = UserRef {
                    user: to.clone(),
                    display_name: to,
                };
                self.calls.insert(
                    call_id.clone(),
                    Call {
                        direction: CallDirection::Outgoing,
                        state: CallState::Dialing,
                        peer: peer.clone(),
                        offer: None,
                        signaled: false,
                        candidates: Vec::new(),
                        has_media: false,
                        last_stats: None,
                    },
                );
                out.push(Action::Emit(EngineEvent::Dialing {
                    call_id: call_id.clone(),
                    to: peer,
                }));
                let ice = self.ice.clone();
                self.media(&call_id, MediaOp::Offer { ice, audio }, &mut out);
                let _ = reply.send(Ok(call_id));
            }
            Command::Answer {
                call_id,
                audio,
                reply,
            } => {
                let offer = match self.calls.get_mut(&call_id) {
                    Some(c)
                        if c.direction == CallDirection::Incoming
                            && c.state == CallState::Ringing =>
                    {
                        c.offer.take()
                    }
                    Some(_) => None,
                    None => {
                        let _ = reply.send(Err(EngineError::UnknownCall(call_id)));
                        return out;
                    }
                };
                let Some(offer) = offer else {
                    let _ = reply.send(Err(EngineError::InvalidState(
                        "the call is not ringing here (or is being answered)".into(),
                    )));
                    return out;
                };
                let ice = self.ice.clone();
                self.media(
                    &call_id,
                    MediaOp::Answer {
                        ice,
                        audio,
                        offer,
                        reply,
                    },
                    &mut out,
                );
            }
            Command::Reject { call_id } => {
                if self.calls.contains_key(&call_id) {
                    out.push(send(ClientMessage::Reject {
                        call_id,
                        reason: RejectReason::Rejected,
                    }));
                }
            }
            Command::Hangup { call_id } => match self.calls.get(&call_id) {
                Some(c) if !c.signaled && c.direction == CallDirection::Outgoing => {
                    // The invite has not gone out: nobody else knows the call.
                    self.end(&call_id, EndReason::Cancelled, &mut out);
                }
                Some(_) => out.push(send(ClientMessage::Hangup {
                    call_id,
                    reason: None,
                })),
                None => {}
            },
            Command::Mute { call_id, mute } => {
                if self.calls.contains_key(&call_id) {
                    out.push(Action::Session {
                        call_id,
                        op: SessionOp::Mute(mute),
                    });
                }
            }
            Command::Hold {
                call_id,
                hold,
                reply,
            } => {
                if let Some(reply) = self.established(&call_id, reply) {
                    self.media(&call_id, MediaOp::Hold { hold, reply }, &mut out);
                }
            }
            Command::Dtmf {
                call_id,
                digits,
                reply,
            } => {
                if let Some(reply) = self.established(&call_id, reply) {
                    out.push(Action::Session {
                        call_id,
                        op: SessionOp::Dtmf { digits, reply },
                    });
                }
            }
            Command::Devices {
                call_id,
                source,
                sink,
                reply,
            } => {
                if self.calls.contains_key(&call_id) {
                    out.push(Action::Session {
                        call_id,
                        op: SessionOp::Devices {
                            source,
                            sink,
                            reply,
                        },
                    });
                } else {
                    let _ = reply.send(Err(EngineError::UnknownCall(call_id)));
                }
            }
            Command::SetPresence { status } => {
                out.push(send(ClientMessage::PresenceSet { status }));
            }
            Command::Shutdown => {
                for id in self.call_ids() {
                    out.push(send(ClientMessage::Hangup {
                        call_id: id.clone(),
                        reason: None,
                    }));
                    self.end(&id, EndReason::Completed, &mut out);
                }
                out.push(Action::Emit(EngineEvent::Disconnected {
                    reason: DisconnectReason::ShutDown,
                }));
                out.push(Action::Stop);
            }
        }
        out
    }

    /// What the signaling task reports.
    pub fn signal(&mut self, signal: Signal) -> Vec<Action> {
        let mut out = Vec::new();
        match signal {
            Signal::Message(m) => return self.server(m),
            Signal::Welcome(w) => {
                // Fresh ICE servers (TURN credentials expire) for new calls.
                self.ice = w.ice_servers;
                let known: Vec<&str> = w.calls.iter().map(|c| c.call_id.as_str()).collect();
                let gone: Vec<String> = self
                    .calls
                    .iter()
                    .filter(|(id, c)| c.signaled && !known.contains(&id.as_str()))
                    .map(|(id, _)| id.clone())
                    .collect();
                if !gone.is_empty() {
                    out.push(Action::After {
                        ms: ORPHAN_DELAY_MS,
                        timer: Timer::Orphans(gone),
                    });
                }
                out.push(Action::Emit(EngineEvent::Registered {
                    user: w.user,
                    tenant: w.tenant,
                }));
            }
            Signal::Reconnecting { detail } => {
                out.push(Action::Emit(EngineEvent::Reconnecting { detail }));
            }
            Signal::Closed(reason) => {
                for id in self.call_ids() {
                    self.end(&id, EndReason::Failed, &mut out);
                }
                out.push(Action::Emit(EngineEvent::Disconnected { reason }));
                out.push(Action::Stop);
            }
        }
        out
    }

    /// A frame from the switchboard.
    pub fn server(&mut self, m: ServerMessage) -> Vec<Action> {
        let mut out = Vec::new();
        match m {
            ServerMessage::Incoming {
                call_id,
                from,
                sdp,
                queue,
            } => {
                if self.calls.contains_key(&call_id) {
                    // Rung again after our socket was replaced.
                    return out;
                }
                if let Err(e) = sdp::audio(&sdp) {
                    tracing::info!(call_id, error = %e, "refusing an offer we cannot answer");
                    out.push(send(ClientMessage::Reject {
                        call_id,
                        reason: RejectReason::Incompatible,
                    }));
                    return out;
                }
                self.calls.insert(
                    call_id.clone(),
                    Call {
                        direction: CallDirection::Incoming,
                        state: CallState::Ringing,
                        peer: from.clone(),
                        offer: Some(sdp),
                        signaled: false,
                        candidates: Vec::new(),
                        has_media: false,
                        last_stats: None,
                    },
                );
                out.push(send(ClientMessage::Ringing {
                    call_id: call_id.clone(),
                }));
                out.push(Action::Emit(EngineEvent::Incoming {
                    call_id,
                    from,
                    queue,
                }));
            }
            ServerMessage::Queued {
                call_id,
                queue,
                position,
                ewt_ms,
            } => {
                let ours = self
                    .calls
                    .get(&call_id)
                    .is_some_and(|c| c.direction == CallDirection::Outgoing);
                if ours {
                    out.push(Action::Emit(EngineEvent::Queued {
                        call_id,
                        queue,
                        position,
                        ewt_ms,
                    }));
                }
            }
            ServerMessage::Ringing { call_id } => {
                self.transition(&call_id, CallInput::RemoteRinging, &mut out)
            }
            ServerMessage::Accepted { call_id, sdp, .. } => {
                let Some(c) = self.calls.get(&call_id) else {
                    return out;
                };
                if c.direction != CallDirection::Outgoing {
                    return out;
                }
                let Some(sdp) = sdp else {
                    return out;
                };
                match sdp::audio(&sdp) {
                    Ok(_) => self.media(&call_id, MediaOp::SetAnswer { sdp }, &mut out),
                    Err(e) => {
                        tracing::info!(call_id, error = %e, "the answer cannot carry the call");
                        out.push(Action::Emit(EngineEvent::ServerError {
                            code: ErrorCode::InvalidValue,
                            message: format!("The other side's answer is unusable: {e}"),
                            call_id: Some(call_id.clone()),
                        }));
                        self.abandon(&call_id, HangupReason::Incompatible, &mut out);
                    }
                }
            }
            ServerMessage::Candidate { call_id, candidate }
                if self.calls.contains_key(&call_id) =>
            {
                self.media(&call_id, MediaOp::Candidate(candidate), &mut out);
            }
            ServerMessage::Update { call_id, kind, sdp } => {
                let Some(c) = self.calls.get(&call_id) else {
                    return out;
                };
                if !c.state.is_established() {
                    return out;
                }
                match kind {
                    SdpKind::Offer => match sdp::audio(&sdp) {
                        Ok(a) => {
                            let held = a.direction.holds();
                            self.media(&call_id, MediaOp::ReOffer { sdp, held }, &mut out);
                        }
                        Err(e) => {
                            tracing::info!(call_id, error = %e, "re-offer without usable audio");
                            self.abandon(&call_id, HangupReason::Incompatible, &mut out);
                        }
                    },
                    SdpKind::Answer => self.media(&call_id, MediaOp::ReAnswer { sdp }, &mut out),
                }
            }
            ServerMessage::Rejected { call_id, reason }
            | ServerMessage::Ended {
                call_id, reason, ..
            } => self.end(&call_id, reason, &mut out),
            ServerMessage::AnsweredElsewhere { call_id, .. } => {
                self.end(&call_id, EndReason::AnsweredElsewhere, &mut out)
            }
            ServerMessage::Presence { user, status } => {
                out.push(Action::Emit(EngineEvent::Presence { user, status }))
            }
            ServerMessage::Error {
                code,
                message,
                ref_id,
                call_id,
            } => {
                // Our invites carry the call id as frame id: a refused
                // invite ends its call.
                let refused = ref_id
                    .filter(|id| {
                        self.calls
                            .get(id)
                            .is_some_and(|c| c.state == CallState::Dialing)
                    })
                    .filter(|_| code != ErrorCode::Glare);
                let call_id = refused.clone().or(call_id);
                out.push(Action::Emit(EngineEvent::ServerError {
                    code,
                    message,
                    call_id,
                }));
                if let Some(id) = refused {
                    self.end(&id, EndReason::Failed, &mut out);
                }
            }
            _ => {}
        }
        out
    }

    /// An event from a call's media session.
    pub fn media_event(&mut self, call_id: &str, ev: MediaEvent) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(c) = self.calls.get_mut(call_id) else {
            return out;
        };
        match ev {
            MediaEvent::LocalCandidate(candidate) if c.signaled => {
                out.push(send(ClientMessage::Candidate {
                    call_id: call_id.to_string(),
                    candidate,
                }))
            }
            MediaEvent::LocalCandidate(candidate) => c.candidates.push(candidate),
            MediaEvent::Connected => self.transition(call_id, CallInput::MediaConnected, &mut out),
            MediaEvent::Failed(reason) => {
                tracing::warn!(call_id, reason, "media failed; hanging up");
                self.abandon(call_id, HangupReason::Failed, &mut out);
            }
            MediaEvent::FirstAudio => out.push(Action::Emit(EngineEvent::FirstAudio {
                call_id: call_id.to_string(),
            })),
            MediaEvent::AudioDeviceLost { input, replacement } => {
                tracing::warn!(call_id, input, replacement, "audio device lost; replaced");
                out.push(Action::Emit(EngineEvent::AudioDeviceLost {
                    call_id: call_id.to_string(),
                    input,
                    replacement,
                }));
            }
            MediaEvent::Dtmf(digit) => out.push(Action::Emit(EngineEvent::Dtmf {
                call_id: call_id.to_string(),
                digit,
            })),
            MediaEvent::Stats(stats) => {
                c.last_stats = Some(stats);
                out.push(Action::Emit(EngineEvent::Stats {
                    call_id: call_id.to_string(),
                    stats,
                }));
            }
        }
        out
    }

    /// Marks the call known to the server and sends the candidates that
    /// waited for it.
    fn signaled(&mut self, call_id: &str, out: &mut Vec<Action>) {
        if let Some(c) = self.calls.get_mut(call_id) {
            c.signaled = true;
            for candidate in c.candidates.drain(..) {
                out.push(send(ClientMessage::Candidate {
                    call_id: call_id.to_string(),
                    candidate,
                }));
            }
        }
    }

    /// A media worker's result.
    pub fn media_done(&mut self, call_id: &str, done: MediaDone) -> Vec<Action> {
        let mut out = Vec::new();
        let live = self.calls.contains_key(call_id);
        match done {
            MediaDone::Offer(sdp) if live => {
                let to = self.calls[call_id].peer.user.clone();
                out.push(Action::Send(ClientFrame::with_id(
                    call_id,
                    ClientMessage::Invite {
                        call_id: call_id.to_string(),
                        to,
                        sdp,
                    },
                )));
                self.signaled(call_id, &mut out);
            }
            MediaDone::Answered { sdp, reply } => {
                let ringing = self
                    .calls
                    .get(call_id)
                    .is_some_and(|c| c.state == CallState::Ringing);
                if !ringing {
                    // Cancelled or answered elsewhere while we built the answer.
                    let _ = reply.send(Err(EngineError::UnknownCall(call_id.to_string())));
                    return out;
                }
                out.push(send(ClientMessage::Accept {
                    call_id: call_id.to_string(),
                    sdp,
                }));
                self.signaled(call_id, &mut out);
                self.transition(call_id, CallInput::LocalAnswer, &mut out);
                let _ = reply.send(Ok(()));
            }
            MediaDone::AnswerApplied => {
                self.transition(call_id, CallInput::RemoteAccepted, &mut out)
            }
            MediaDone::HoldOffer { sdp, hold, reply } if live => {
                out.push(send(ClientMessage::Update {
                    call_id: call_id.to_string(),
                    kind: SdpKind::Offer,
                    sdp,
                }));
                self.transition(call_id, CallInput::LocalHold(hold), &mut out);
                let _ = reply.send(Ok(()));
            }
            MediaDone::ReAnswer { sdp, held } if live => {
                out.push(send(ClientMessage::Update {
                    call_id: call_id.to_string(),
                    kind: SdpKind::Answer,
                    sdp,
                }));
                self.transition(call_id, CallInput::RemoteHold(held), &mut out);
            }
            MediaDone::HoldOffer { reply, .. } => {
                let _ = reply.send(Err(EngineError::UnknownCall(call_id.to_string())));
            }
            MediaDone::Failed { step, error, reply } => {
                tracing::warn!(call_id, ?step, error = %error, "media step failed");
                let fatal = matches!(
                    step,
                    MediaStep::Offer | MediaStep::Answer | MediaStep::SetAnswer
                );
                let reason = match &error {
                    EngineError::Negotiation(_) => HangupReason::Incompatible,
                    _ => HangupReason::Failed,
                };
                if let Some(reply) = reply {
                    let _ = reply.send(Err(error));
                }
                if fatal && live {
                    if step == MediaStep::Answer {
                        out.push(send(ClientMessage::Reject {
                            call_id: call_id.to_string(),
                            reason: RejectReason::Incompatible,
                        }));
                        self.end(call_id, reason.end_reason(), &mut out);
                    } else {
                        self.abandon(call_id, reason, &mut out);
                    }
                }
            }
            MediaDone::Offer(_) | MediaDone::ReAnswer { .. } => {}
        }
        out
    }

    /// A timer armed by [`Action::After`] fired.
    pub fn timer(&mut self, timer: Timer) -> Vec<Action> {
        let mut out = Vec::new();
        match timer {
            Timer::Orphans(ids) => {
                for id in ids {
                    self.end(&id, EndReason::Failed, &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softphone_audio::{NullSink, Silence};
    use softphone_protocol::{CallPhase, CallSummary};

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 101\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\na=sendrecv\r\n";

    fn user(name: &str) -> UserRef {
        UserRef {
            user: name.into(),
            display_name: name.to_uppercase(),
        }
    }

    fn ice(username: &str) -> Vec<IceServer> {
        vec![IceServer {
            urls: vec!["turn:turn.example.org:3478".into()],
            username: Some(username.into()),
            credential: Some("c".into()),
        }]
    }

    fn welcome(ice_user: &str, calls: Vec<CallSummary>) -> Welcome {
        Welcome {
            user: user("alice"),
            tenant: "acme".into(),
            presence: Presence::Available,
            ice_servers: ice(ice_user),
            heartbeat_ms: 20_000,
            calls,
            server: "http://switchboard.test".into(),
        }
    }

    fn audio() -> CallAudio {
        CallAudio {
            source: Box::new(Silence),
            sink: Box::new(NullSink),
        }
    }

    fn frames(actions: &[Action]) -> Vec<&ClientMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(f) => Some(&f.message),
                _ => None,
            })
            .collect()
    }

    fn events(actions: &[Action]) -> Vec<&EngineEvent> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn ended(actions: &[Action]) -> Option<EndReason> {
        events(actions).into_iter().find_map(|e| match e {
            EngineEvent::CallState {
                state: CallState::Ended { reason },
                ..
            } => Some(*reason),
            _ => None,
        })
    }

    fn closes_media(actions: &[Action]) -> bool {
        actions
            .iter()
            .any(|a| matches!(a, Action::CloseMedia { .. }))
    }

    /// Dials bob and returns the call id and the actions.
    fn dial(core: &mut EngineCore) -> (String, Vec<Action>) {
        let (reply, mut rx) = oneshot::channel();
        let actions = core.command(
            Command::Dial {
                to: "bob".into(),
                audio: audio(),
                reply,
            },
            1_700_000_000_000,
        );
        let id = rx.try_recv().unwrap().unwrap();
        (id, actions)
    }

    fn candidate(n: u8) -> Option<IceCandidate> {
        Some(IceCandidate {
            candidate: format!("candidate:{n} 1 udp 1 127.0.0.1 5000{n} typ host"),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        })
    }

    #[test]
    fn a_dial_names_the_peer_at_once_and_invites_once_the_offer_is_ready() {
        let mut core = EngineCore::new("alice-laptop", &welcome("u1", vec![]));
        let (id, actions) = dial(&mut core);
        assert!(id.starts_with("alice-laptop-"), "{id}");
        assert_eq!(
            events(&actions),
            [&EngineEvent::Dialing {
                call_id: id.clone(),
                to: UserRef {
                    user: "bob".into(),
                    display_name: "bob".into()
                }
            }]
        );
        assert!(frames(&actions).is_empty(), "no invite before the offer");
        let Some(Action::Media {
            op: MediaOp::Offer { ice, .. },
            ..
        }) = actions.last()
        else {
            panic!("no offer work queued");
        };
        assert_eq!(ice[0].username.as_deref(), Some("u1"));

        // A candidate gathered before the invite waits for it.
        let early = core.media_event(&id, MediaEvent::LocalCandidate(candidate(1)));
        assert!(early.is_empty());
        let actions = core.media_done(&id, MediaDone::Offer(OFFER.into()));
        let sent: Vec<&ClientFrame> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(f) => Some(f),
                _ => None,
            })
            .collect();
        assert!(matches!(
            &sent[0].message,
            ClientMessage::Invite { to, .. } if to == "bob"
        ));
        assert_eq!(sent[0].id.as_deref(), Some(id.as_str()), "invite frame id");
        assert!(matches!(
            &sent[1].message,
            ClientMessage::Candidate { candidate: c, .. } if *c == candidate(1)
        ));
        // Later candidates go out at once.
        let later = core.media_event(&id, MediaEvent::LocalCandidate(None));
        assert!(matches!(
            frames(&later)[..],
            [ClientMessage::Candidate {
                candidate: None,
                ..
            }]
        ));
    }

    #[test]
    fn an_outgoing_call_rings_connects_and_ends_with_its_quality_sent() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        core.media_done(&id, MediaDone::Offer(OFFER.into()));
        let a = core.server(ServerMessage::Ringing {
            call_id: id.clone(),
        });
        assert_eq!(
            events(&a),
            [&EngineEvent::CallState {
                call_id: id.clone(),
                state: CallState::Ringing
            }]
        );
        let a = core.server(ServerMessage::Accepted {
            call_id: id.clone(),
            sdp: Some(OFFER.into()),
            device_id: "bob-desk".into(),
        });
        assert!(matches!(
            a[..],
            [Action::Media {
                op: MediaOp::SetAnswer { .. },
                ..
            }]
        ));
        assert!(
            events(&a).is_empty(),
            "connecting once the answer is applied"
        );
        let a = core.media_done(&id, MediaDone::AnswerApplied);
        assert_eq!(core.state(&id), Some(CallState::Connecting));
        assert_eq!(events(&a).len(), 1);
        core.media_event(&id, MediaEvent::Connected);
        assert_eq!(core.state(&id), Some(CallState::Active));
        let stats = MediaStats {
            mos: 4.3,
            ..MediaStats::default()
        };
        core.media_event(&id, MediaEvent::Stats(stats));
        let a = core.server(ServerMessage::Ended {
            call_id: id.clone(),
            reason: EndReason::Completed,
            by: Some("bob".into()),
            message: None,
        });
        assert_eq!(ended(&a), Some(EndReason::Completed));
        assert!(matches!(
            frames(&a)[..],
            [ClientMessage::Stats { quality, .. }] if quality.mos == Some(4.3)
        ));
        assert!(closes_media(&a));
        assert!(core.call_ids().is_empty());
    }

    #[test]
    fn an_answer_that_refuses_audio_ends_the_call_as_incompatible() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        core.media_done(&id, MediaDone::Offer(OFFER.into()));
        let rejected = OFFER.replace("m=audio 9 ", "m=audio 0 ");
        let a = core.server(ServerMessage::Accepted {
            call_id: id.clone(),
            sdp: Some(rejected),
            device_id: "bob-desk".into(),
        });
        assert!(matches!(
            frames(&a)[..],
            [ClientMessage::Hangup {
                reason: Some(HangupReason::Incompatible),
                ..
            }]
        ));
        assert_eq!(ended(&a), Some(EndReason::Incompatible));
        assert!(closes_media(&a));
        assert!(
            !a.iter().any(|x| matches!(
                x,
                Action::Media {
                    op: MediaOp::SetAnswer { .. },
                    ..
                }
            )),
            "the unusable answer never reaches the media stack"
        );
    }

    #[test]
    fn an_incoming_call_rings_and_is_answered_once_the_answer_is_ready() {
        let mut core = EngineCore::new("b", &welcome("u", vec![]));
        let a = core.server(ServerMessage::Incoming {
            call_id: "c1".into(),
            from: user("alice"),
            sdp: OFFER.into(),
            queue: None,
        });
        assert!(matches!(frames(&a)[..], [ClientMessage::Ringing { .. }]));
        assert_eq!(
            events(&a),
            [&EngineEvent::Incoming {
                call_id: "c1".into(),
                from: user("alice"),
                queue: None,
            }]
        );
        // The caller's candidates go to the media worker, which keeps them.
        let a = core.server(ServerMessage::Candidate {
            call_id: "c1".into(),
            candidate: candidate(7),
        });
        assert!(matches!(
            a[..],
            [Action::Media {
                op: MediaOp::Candidate(_),
                ..
            }]
        ));
        let (reply, mut rx) = oneshot::channel();
        let a = core.command(
            Command::Answer {
                call_id: "c1".into(),
                audio: audio(),
                reply,
            },
            0,
        );
        assert!(matches!(
            &a[..],
            [Action::Media { op: MediaOp::Answer { offer, .. }, .. }] if offer == OFFER
        ));
        // A second answer while the first is being built is refused.
        let (reply2, mut rx2) = oneshot::channel();
        core.command(
            Command::Answer {
                call_id: "c1".into(),
                audio: audio(),
                reply: reply2,
            },
            0,
        );
        assert!(matches!(
            rx2.try_recv(),
            Ok(Err(EngineError::InvalidState(_)))
        ));
        // Our own candidates wait for the accept.
        assert!(
            core.media_event("c1", MediaEvent::LocalCandidate(candidate(2)))
                .is_empty()
        );
        let Some(Action::Media {
            op: MediaOp::Answer { reply, .. },
            ..
        }) = a.into_iter().next()
        else {
            unreachable!()
        };
        let a = core.media_done(
            "c1",
            MediaDone::Answered {
                sdp: "answer".into(),
                reply,
            },
        );
        let f = frames(&a);
        assert!(matches!(f[0], ClientMessage::Accept { sdp, .. } if sdp == "answer"));
        assert!(matches!(f[1], ClientMessage::Candidate { .. }));
        assert_eq!(core.state("c1"), Some(CallState::Connecting));
        assert!(matches!(rx.try_recv(), Ok(Ok(()))));
    }

    #[test]
    fn an_offer_without_usable_audio_is_refused_without_ringing() {
        let mut core = EngineCore::new("b", &welcome("u", vec![]));
        let pcmu_only = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let a = core.server(ServerMessage::Incoming {
            call_id: "c1".into(),
            from: user("alice"),
            sdp: pcmu_only.into(),
            queue: None,
        });
        assert!(matches!(
            frames(&a)[..],
            [ClientMessage::Reject {
                reason: RejectReason::Incompatible,
                ..
            }]
        ));
        assert!(events(&a).is_empty(), "the agent is not rung");
        assert!(core.call_ids().is_empty());
    }

    #[test]
    fn a_call_cancelled_while_its_answer_is_built_refuses_the_answer() {
        let mut core = EngineCore::new("b", &welcome("u", vec![]));
        core.server(ServerMessage::Incoming {
            call_id: "c1".into(),
            from: user("alice"),
            sdp: OFFER.into(),
            queue: None,
        });
        let (reply, _) = oneshot::channel();
        let work = core.command(
            Command::Answer {
                call_id: "c1".into(),
                audio: audio(),
                reply,
            },
            0,
        );
        let a = core.server(ServerMessage::Ended {
            call_id: "c1".into(),
            reason: EndReason::Cancelled,
            by: Some("alice".into()),
            message: None,
        });
        assert_eq!(ended(&a), Some(EndReason::Cancelled));
        assert!(closes_media(&a));
        let Some(Action::Media {
            op: MediaOp::Answer { reply, .. },
            ..
        }) = work.into_iter().next()
        else {
            unreachable!()
        };
        let (tx, mut rx) = oneshot::channel();
        drop(reply);
        let a = core.media_done(
            "c1",
            MediaDone::Answered {
                sdp: "late".into(),
                reply: tx,
            },
        );
        assert!(frames(&a).is_empty(), "no accept for a call that is over");
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(EngineError::UnknownCall(_)))
        ));
    }

    #[test]
    fn a_reconnect_renews_the_ice_servers_for_the_next_call_and_ends_lost_calls() {
        let mut core = EngineCore::new("a", &welcome("old", vec![]));
        let (lost, _) = dial(&mut core);
        core.media_done(&lost, MediaDone::Offer(OFFER.into()));
        let (kept, _) = dial(&mut core);
        core.media_done(&kept, MediaDone::Offer(OFFER.into()));
        let summary = CallSummary {
            call_id: kept.clone(),
            peer: user("bob"),
            outgoing: true,
            phase: CallPhase::Ringing,
        };
        let a = core.signal(Signal::Welcome(welcome("fresh", vec![summary])));
        assert!(matches!(events(&a)[..], [EngineEvent::Registered { .. }]));
        let Some(Action::After {
            ms,
            timer: Timer::Orphans(ids),
        }) = a.first()
        else {
            panic!("no orphan timer");
        };
        assert_eq!((*ms, ids.clone()), (ORPHAN_DELAY_MS, vec![lost.clone()]));
        assert_eq!(core.ice_servers()[0].username.as_deref(), Some("fresh"));
        let (_, a) = dial(&mut core);
        let Some(Action::Media {
            op: MediaOp::Offer { ice, .. },
            ..
        }) = a.last()
        else {
            panic!("no offer");
        };
        assert_eq!(
            ice[0].username.as_deref(),
            Some("fresh"),
            "new TURN credentials"
        );
        let a = core.timer(Timer::Orphans(vec![lost.clone()]));
        assert_eq!(ended(&a), Some(EndReason::Failed));
        assert!(core.state(&kept).is_some());
    }

    #[test]
    fn a_refused_invite_ends_its_call_and_says_why() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        core.media_done(&id, MediaDone::Offer(OFFER.into()));
        let a = core.server(ServerMessage::Error {
            code: ErrorCode::NotFound,
            message: "no user `bob`".into(),
            ref_id: Some(id.clone()),
            call_id: None,
        });
        assert!(matches!(
            events(&a)[0],
            EngineEvent::ServerError { code: ErrorCode::NotFound, call_id: Some(c), .. } if *c == id
        ));
        assert_eq!(ended(&a), Some(EndReason::Failed));
    }

    #[test]
    fn hanging_up_before_the_invite_went_out_ends_the_call_here_only() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        let a = core.command(
            Command::Hangup {
                call_id: id.clone(),
            },
            0,
        );
        assert!(frames(&a).is_empty());
        assert_eq!(ended(&a), Some(EndReason::Cancelled));
        // The offer that arrives later is dropped.
        assert!(
            core.media_done(&id, MediaDone::Offer(OFFER.into()))
                .is_empty()
        );
    }

    #[test]
    fn media_failure_hangs_up_as_failed_and_losing_signaling_for_good_ends_everything() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        core.media_done(&id, MediaDone::Offer(OFFER.into()));
        let a = core.media_event(&id, MediaEvent::Failed("ICE/DTLS failed".into()));
        assert!(matches!(
            frames(&a)[..],
            [ClientMessage::Hangup {
                reason: Some(HangupReason::Failed),
                ..
            }]
        ));
        assert_eq!(ended(&a), Some(EndReason::Failed));

        let (other, _) = dial(&mut core);
        let a = core.signal(Signal::Closed(DisconnectReason::Replaced));
        assert_eq!(ended(&a), Some(EndReason::Failed));
        assert!(events(&a).contains(&&EngineEvent::Disconnected {
            reason: DisconnectReason::Replaced
        }));
        assert!(matches!(a.last(), Some(Action::Stop)));
        assert!(core.state(&other).is_none());
    }

    #[test]
    fn hold_and_dtmf_need_an_established_call() {
        let mut core = EngineCore::new("a", &welcome("u", vec![]));
        let (id, _) = dial(&mut core);
        let (reply, mut rx) = oneshot::channel();
        core.command(
            Command::Hold {
                call_id: id.clone(),
                hold: true,
                reply,
            },
            0,
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(EngineError::InvalidState(_)))
        ));
        let (reply, mut rx) = oneshot::channel();
        core.command(
            Command::Dtmf {
                call_id: "nope".into(),
                digits: "1".into(),
                reply,
            },
            0,
        );
        assert!(matches!(
            rx.try_recv(),
            Ok(Err(EngineError::UnknownCall(_)))
        ));
    }
}
