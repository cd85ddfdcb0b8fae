//! Error codes of `error` frames and HTTP error bodies, and WebSocket close codes.

use serde::{Deserialize, Serialize};

/// Machine-readable error code: a closed set shared by `error` frames and the
/// HTTP API's `{ "code", "message" }` bodies. Clients match on the code, never
/// on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum ErrorCode {
    /// Not JSON, not an object, no string `type`, or a known type with
    /// missing or mistyped fields. Fix the frame; retrying it as is fails again.
    BadFrame,
    /// `type` is not one this protocol version knows.
    UnknownType,
    /// The frame is over 64 KiB (`MAX_FRAME_BYTES`).
    FrameTooLarge,
    /// A field has the right type but a bad value (call id shape, SDP size,
    /// stats out of range, `presence.set` to offline).
    InvalidValue,
    /// A frame other than `hello` before authentication. Send `hello` first.
    NotAuthenticated,
    /// A second `hello` on an authenticated socket.
    AlreadyAuthenticated,
    /// Token unknown, revoked, or the user disabled (HTTP 401; on the socket,
    /// close code 4001). Log in again.
    Unauthorized,
    /// Token past its expiry (HTTP 401; close code 4001). Log in again.
    TokenExpired,
    /// Wrong tenant, user or password at login (HTTP 401).
    InvalidCredentials,
    /// No such user or call *for you*: unknown, or in another tenant.
    NotFound,
    /// The call exists but is not in a state that allows this (accepting an
    /// answered call, hanging up an ended one, cancelling as the callee…).
    CallState,
    /// `call.invite` with a `call_id` already in use.
    CallExists,
    /// The other user is inviting you at the same moment; your invite is
    /// dropped and theirs (its id in `call_id`) keeps ringing you.
    Glare,
    /// You cannot call yourself.
    SelfCall,
    /// Too many frames or logins; slow down (HTTP 429 with `Retry-After`).
    RateLimited,
    /// Protocol version in `hello` not spoken by this server.
    ProtocolVersion,
    /// Signed in, but not allowed to do this: an administrator's request
    /// from an agent (HTTP 403).
    Forbidden,
    /// The name or number is taken (HTTP 409); pick another.
    Conflict,
    /// The server failed; retrying later may help.
    Internal,
}

impl ErrorCode {
    /// The code's wire name, e.g. `"bad_frame"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadFrame => "bad_frame",
            Self::UnknownType => "unknown_type",
            Self::FrameTooLarge => "frame_too_large",
            Self::InvalidValue => "invalid_value",
            Self::NotAuthenticated => "not_authenticated",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::InvalidCredentials => "invalid_credentials",
            Self::NotFound => "not_found",
            Self::CallState => "call_state",
            Self::CallExists => "call_exists",
            Self::Glare => "glare",
            Self::SelfCall => "self_call",
            Self::RateLimited => "rate_limited",
            Self::ProtocolVersion => "protocol_version",
            Self::Forbidden => "forbidden",
            Self::Conflict => "conflict",
            Self::Internal => "internal",
        }
    }

    /// Whether sending the same request again later can succeed
    /// (rate limits and server failures), as opposed to needing a change.
    pub fn retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Internal)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// WebSocket close codes the server uses (RFC 6455 §7.4; 4000–4999 are ours).
pub mod close_code {
    /// Server shutting down or restarting; reconnect with backoff.
    pub const SERVICE_RESTART: u16 = 1012;
    /// A message over the hard limit (256 KiB) that could not even be read
    /// (after `hello`; before it, the socket is simply dropped).
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// `hello` named an unsupported protocol version or a malformed
    /// `device_id`/`device_name` (the endpoint's id and name). (A `hello` that is not even valid JSON gets a `bad_frame`
    /// error and the socket keeps waiting for a good one.)
    pub const BAD_HELLO: u16 = 4000;
    /// Token unknown, revoked or expired, or user disabled: log in again.
    pub const UNAUTHORIZED: u16 = 4001;
    /// Another connection authenticated with the same endpoint id
    /// (`device_id`).
    pub const REPLACED: u16 = 4002;
    /// No `hello` within 10 s of connecting.
    pub const HELLO_TIMEOUT: u16 = 4003;
    /// Silent for three heartbeat periods.
    pub const IDLE_TIMEOUT: u16 = 4004;
    /// The client did not read its frames fast enough; its queue overflowed.
    pub const TOO_SLOW: u16 = 4008;
    /// Far over the message rate limit.
    pub const RATE_LIMITED: u16 = 4029;
}

/// Why a client frame could not be parsed: the code, a message, and the
/// frame's `id` when it was readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// One of `bad_frame`, `unknown_type`, `frame_too_large`.
    pub code: ErrorCode,
    /// Detail for humans.
    pub message: String,
    /// The frame's `id`, when it could be read.
    pub ref_id: Option<String>,
}

impl ParseError {
    pub(crate) fn bad(message: impl Into<String>, ref_id: Option<String>) -> Self {
        Self {
            code: ErrorCode::BadFrame,
            message: message.into(),
            ref_id,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ParseError {}
