//! The softphone's call engine.
//!
//! Today this crate holds the engine's pure core, each part with its own
//! tests and no IO:
//!
//! - [`call`]: the client-side call state machine (Dialing → Ringing →
//!   Connecting → Active ⇄ Held → Ended);
//! - [`jitter`]: the adaptive jitter buffer (reordering, a target delay that
//!   follows RFC 3550 jitter, Opus FEC from the next packet, PLC on gaps);
//! - [`dtmf`]: RFC 4733 telephone-events, send and receive;
//! - [`quality`]: estimated MOS from the ITU-T G.107 E-model.
//!
//! Around that core: [`media`], one call's WebRTC session (webrtc-rs behind
//! the [`media::MediaSession`] trait) with its Opus audio pipeline, and
//! [`Engine`], the cloneable handle over one signaling connection with one
//! stream of [`EngineEvent`]s.
//!
//! ```
//! use softphone_engine::call::{CallInput, CallState, Direction};
//! use softphone_engine::jitter::{JitterBuffer, Playout};
//!
//! let d = Direction::Incoming;
//! let s = CallState::initial(d).next(d, CallInput::LocalAnswer).unwrap();
//! assert_eq!(s, CallState::Connecting);
//!
//! let mut jb = JitterBuffer::new(48_000);
//! jb.push(7, 0, vec![0xf8], 1_000);
//! assert_eq!(jb.pop(1_020), Playout::Frame(vec![0xf8]));
//! ```

pub mod api;
pub mod call;
pub mod credentials;
pub mod dtmf;
mod engine;
pub mod jitter;
pub mod media;
pub mod quality;
pub mod track;

/// Errors of the call engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The WebRTC stack or the codec refused something (bad SDP, ICE
    /// failure). Retrying the same thing does not help; a new call may.
    #[error("media: {0}")]
    Media(String),
    /// The switchboard cannot be reached or broke the protocol; retrying
    /// later may help.
    #[error("signaling: {0}")]
    Signaling(String),
    /// Wrong credentials, or the token was refused or expired: log in again.
    #[error("not authorised: {0}")]
    Unauthorized(String),
    /// No such call on this engine.
    #[error("no call `{0}` here")]
    UnknownCall(String),
    /// The call is not in a state that allows this.
    #[error("{0}")]
    InvalidState(String),
    /// The OS credential store refused or is not running (no Secret
    /// Service, locked keychain). Retrying after unlocking it may help.
    #[error("credential store: {0}")]
    Credentials(String),
    /// The engine has shut down.
    #[error("the engine has stopped")]
    Stopped,
}

pub use engine::{CallAudio, Engine, EngineConfig, EngineEvent, login};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EngineError {
    /// Whether retrying the same operation later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Signaling(_) | Self::Credentials(_))
    }
}
