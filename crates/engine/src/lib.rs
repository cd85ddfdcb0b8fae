//! The softphone's call engine: what the desktop app and `phonectl` share.
//!
//! It is **not** a UI and not a server: it signs in to a switchboard, keeps
//! one signaling connection, runs every call's WebRTC session and audio
//! pipeline, and reports what happens on one stream of [`EngineEvent`]s.
//!
//! Read it by folder:
//!
//! - [`api`]: the switchboard's HTTP API (login, directory, history, logout);
//! - [`signaling`]: the WebSocket (open, `hello`, reconnect with jittered
//!   backoff, keepalive);
//! - [`core`]: the pure call core: switchboard frames, commands and media
//!   results in, frames to send, events and media work out;
//! - [`Engine`]: the cloneable handle over a task that runs the core, with
//!   one media worker per call so that a slow peer connection delays only
//!   its own call;
//! - [`media`]: one call's WebRTC session (webrtc-rs behind the
//!   [`media::MediaSession`] trait): its send loop, playout loop and stats;
//! - pure parts with their own tests: [`call`] (the call state machine),
//!   [`sdp`] (what a remote SDP offers), [`jitter`] (the adaptive jitter
//!   buffer), [`dtmf`] (RFC 4733), [`quality`] (E-model MOS);
//! - [`credentials`]: the session token in the OS credential store.
//!
//! The usage loop:
//!
//! ```no_run
//! use softphone_audio::{NullSink, Tone};
//! use softphone_engine::{CallAudio, Engine, EngineConfig, EngineEvent, api::Api};
//!
//! # async fn demo() -> Result<(), softphone_engine::EngineError> {
//! let login = Api::login("http://127.0.0.1:8080", "acme", "alice", "correct horse").await?;
//! let (engine, mut events) =
//!     Engine::connect(EngineConfig::new("http://127.0.0.1:8080", &login.token, "alice-laptop"))
//!         .await?;
//! let call = engine
//!     .dial("bob", CallAudio { source: Box::new(Tone::new(440.0, -12.0)), sink: Box::new(NullSink) })
//!     .await?;
//! while let Some(ev) = events.recv().await {
//!     if let EngineEvent::CallState { call_id, state } = &ev
//!         && *call_id == call
//!         && state.is_ended()
//!     {
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod call;
pub mod core;
pub mod credentials;
pub mod dtmf;
mod engine;
mod events;
pub mod jitter;
pub mod media;
pub mod quality;
pub mod sdp;
pub mod signaling;
pub mod track;

use softphone_protocol::ErrorCode;

pub use engine::{Engine, EngineConfig};
pub use events::{DisconnectReason, EngineEvent};
pub use media::CallAudio;

/// A boxed error kept as the source of an [`EngineError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the switchboard refused who we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum AuthRefusal {
    /// Wrong tenant, user or password (or a disabled user) at login.
    WrongCredentials,
    /// The token is past its expiry: log in again.
    TokenExpired,
    /// The token is unknown or was revoked: log in again.
    TokenRevoked,
}

impl std::fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WrongCredentials => "wrong tenant, user or password",
            Self::TokenExpired => "the token has expired",
            Self::TokenRevoked => "the token is unknown or revoked",
        })
    }
}

/// Errors of the call engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The WebRTC stack or the codec refused something (`context` says
    /// what we were doing). Retrying the same thing does not help; a new
    /// call may.
    #[error("media: {context}")]
    Media {
        /// What failed, e.g. "applying the SDP answer".
        context: &'static str,
        /// The WebRTC or Opus error.
        #[source]
        source: BoxError,
    },
    /// The far end's SDP cannot carry the call (no audio, audio refused,
    /// no common codec). The call ends as `incompatible`.
    #[error("media negotiation failed: {0}")]
    Negotiation(#[from] sdp::NegotiationError),
    /// The switchboard cannot be reached (connection refused, TLS, timeout,
    /// the socket dropped). Retrying later may help.
    #[error("cannot reach {url}")]
    Unreachable {
        /// The URL we tried.
        url: String,
        /// The transport's error.
        #[source]
        source: BoxError,
    },
    /// The switchboard answered something we cannot use (an unexpected
    /// HTTP status, an unreadable body, no `welcome`). Retrying may help
    /// when the server was restarting.
    #[error("unexpected answer from the server: {what}")]
    Protocol {
        /// What was wrong.
        what: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The switchboard refused the request with an error code
    /// (docs/protocol.md §10). Retrying helps for `rate_limited` and
    /// `internal`.
    #[error("the server refused: {message} ({code})")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// Wrong credentials, or the token was refused: log in again.
    #[error("not authorised: {0}")]
    Unauthorized(AuthRefusal),
    /// No such call on this engine.
    #[error("no call `{0}` here")]
    UnknownCall(String),
    /// The call is not in a state that allows this, or an argument is
    /// invalid (a DTMF character that is not a digit).
    #[error("{0}")]
    InvalidState(String),
    /// The OS credential store refused or is not running (no Secret
    /// Service, locked keychain). Retrying after unlocking it may help.
    #[error("credential store")]
    Credentials(#[from] keyring::Error),
    /// The engine has shut down.
    #[error("the engine has stopped")]
    Stopped,
}

impl EngineError {
    /// Whether retrying the same operation later can succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Protocol { .. } | Self::Credentials(_) => true,
            Self::Refused { code, .. } => {
                matches!(code, ErrorCode::RateLimited | ErrorCode::Internal)
            }
            _ => false,
        }
    }

    /// A media error with what we were doing.
    pub(crate) fn media(context: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Media {
            context,
            source: source.into(),
        }
    }
}

/// Milliseconds since the Unix epoch, from the system clock (the rim: the
/// pure parts take time as an argument).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
