//! A command's error as the UI receives it: `{ kind, message }`, a closed
//! set of kinds (the UI never matches message strings), and plain words.

use serde::{Deserialize, Serialize};
use softphone_audio::AudioError;
use softphone_engine::{AuthRefusal, EngineError};
use ts_rs::TS;

/// What kind of failure a command had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The switchboard cannot be reached.
    Unreachable,
    /// Wrong credentials or an expired token: sign in again.
    Unauthorized,
    /// The OS keyring refused.
    Credentials,
    /// An audio device is missing or busy.
    AudioDevice,
    /// Not possible now (no such call, wrong state, not signed in).
    InvalidState,
    /// Anything else.
    Other,
}

/// A command's error (`invoke` rejects with this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct UiError {
    /// The kind.
    pub kind: ErrorKind,
    /// Plain words for the agent.
    pub message: String,
}

impl UiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// "Not signed in."
    pub fn not_signed_in() -> Self {
        Self::new(ErrorKind::InvalidState, "Not signed in.")
    }
}

impl From<EngineError> for UiError {
    fn from(e: EngineError) -> Self {
        use EngineError as E;
        match e {
            E::Unreachable { .. } | E::Protocol { .. } => Self::new(
                ErrorKind::Unreachable,
                format!("Can't reach the server ({e})."),
            ),
            E::Unauthorized(AuthRefusal::WrongCredentials) => Self::new(
                ErrorKind::Unauthorized,
                "Sign-in refused: check the tenant, user and password.",
            ),
            E::Unauthorized(_) => Self::new(
                ErrorKind::Unauthorized,
                "Your sign-in has expired — sign in again.",
            ),
            E::Credentials(source) => Self::new(
                ErrorKind::Credentials,
                format!("The system keyring refused: {source}"),
            ),
            E::UnknownCall(_) => Self::new(ErrorKind::InvalidState, "That call is already over."),
            E::InvalidState(m) => Self::new(ErrorKind::InvalidState, m),
            E::Media { .. } | E::Negotiation(_) => {
                Self::new(ErrorKind::Other, format!("Audio connection failed: {e}"))
            }
            E::Refused { message, .. } => {
                Self::new(ErrorKind::Other, format!("The server refused: {message}"))
            }
            E::Stopped => Self::not_signed_in(),
            other => Self::new(ErrorKind::Other, other.to_string()),
        }
    }
}

impl From<AudioError> for UiError {
    fn from(e: AudioError) -> Self {
        Self::new(ErrorKind::AudioDevice, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_become_kinds_the_ui_can_act_on() {
        let expired: UiError = EngineError::Unauthorized(AuthRefusal::TokenExpired).into();
        assert_eq!(expired.kind, ErrorKind::Unauthorized);
        assert!(expired.message.contains("expired"), "{expired}");
        let wrong: UiError = EngineError::Unauthorized(AuthRefusal::WrongCredentials).into();
        assert!(wrong.message.contains("password"), "{wrong}");
        let gone: UiError = EngineError::UnknownCall("c1".into()).into();
        assert_eq!(gone.kind, ErrorKind::InvalidState);
        let missing: UiError = AudioError::NotFound("no input device `USB`".into()).into();
        assert_eq!(missing.kind, ErrorKind::AudioDevice);
    }
}
