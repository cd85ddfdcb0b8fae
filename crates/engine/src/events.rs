//! What the engine reports: one ordered stream of [`EngineEvent`]s.

use softphone_protocol::{ErrorCode, Presence, QueueOffer, UserRef};

use crate::AuthRefusal;
use crate::call::CallState;
use crate::media::MediaStats;

/// Everything the engine reports, in order, on one stream. Serialises as
/// `{"event": "call_state", ...}` (phonectl's `--json` lines).
///
/// A call starts with exactly one [`EngineEvent::Dialing`] (ours) or
/// [`EngineEvent::Incoming`] (theirs), which names the peer; every later
/// change of its state is one [`EngineEvent::CallState`], the last one
/// `Ended`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum EngineEvent {
    /// Signaling is up (after each `welcome`, the first and every one after
    /// a reconnect).
    Registered {
        /// Who we are.
        user: UserRef,
        /// Our tenant.
        tenant: String,
    },
    /// We placed a call (state `Dialing`).
    Dialing {
        /// The call.
        call_id: String,
        /// Whom we called: the user name we dialled (the display name is
        /// the user name until the directory says otherwise).
        to: UserRef,
    },
    /// A call rings this endpoint (state `Ringing`).
    Incoming {
        /// The call.
        call_id: String,
        /// The caller.
        from: UserRef,
        /// The queue that offers the call, and how long its caller has
        /// waited (absent for a direct call).
        queue: Option<QueueOffer>,
    },
    /// Our call to a queue waits for an agent (state stays `Dialing`): sent
    /// when it enters the queue and whenever its position or estimated
    /// wait changes.
    Queued {
        /// The call.
        call_id: String,
        /// The queue's name.
        queue: String,
        /// 1 for the next caller to be served.
        position: u32,
        /// Estimated wait, ms.
        ewt_ms: u64,
    },
    /// A call changed state (every transition of [`CallState`] after the
    /// first).
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
    /// An audio device (sound card) failed mid-call and was replaced; the
    /// call goes on.
    AudioDeviceLost {
        /// The call.
        call_id: String,
        /// `true` for the input (microphone), `false` for the output.
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
    /// A user of our tenant changed availability (ourselves included).
    Presence {
        /// Who.
        user: UserRef,
        /// Their status.
        status: Presence,
    },
    /// The server refused something we sent.
    ServerError {
        /// Machine-readable code.
        code: ErrorCode,
        /// Detail.
        message: String,
        /// The call it concerns, when it concerns one.
        call_id: Option<String>,
    },
    /// Signaling dropped; the engine is reconnecting (calls stay up: media
    /// is peer to peer and the server keeps them for its grace period).
    Reconnecting {
        /// What the transport said, for logs.
        detail: String,
    },
    /// Signaling was lost for good: the engine stops and its calls end.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
    },
}

/// Why signaling ended for good ([`EngineEvent::Disconnected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum DisconnectReason {
    /// The server refused our token (close code 4001, or `hello` refused
    /// on a reconnect): sign in again.
    Unauthorized {
        /// Expired or revoked.
        refusal: AuthRefusal,
    },
    /// Another connection of this endpoint took over (close code 4002).
    Replaced,
    /// The server refused our `hello` (close code 4000: protocol version or
    /// endpoint id).
    BadHello,
    /// [`crate::Engine::shutdown`] was called.
    ShutDown,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unauthorized { refusal } => write!(f, "signed out: {refusal}"),
            Self::Replaced => f.write_str("this endpoint signed in elsewhere"),
            Self::BadHello => f.write_str("the server refused our hello"),
            Self::ShutDown => f.write_str("shut down"),
        }
    }
}
