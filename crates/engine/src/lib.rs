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
//! What it is not (yet): the signaling client, the WebRTC session and the
//! audio pipeline that put these together behind a cloneable handle and an
//! event stream; see the "Call engine and phonectl" issue.
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

pub mod call;
pub mod dtmf;
pub mod jitter;
pub mod media;
pub mod quality;

/// Errors of the call engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The WebRTC stack or the codec refused something (bad SDP, ICE
    /// failure). Retrying the same thing does not help; a new call may.
    #[error("media: {0}")]
    Media(String),
}

impl EngineError {
    /// Whether retrying the same operation later can succeed.
    pub fn retryable(&self) -> bool {
        false
    }
}
