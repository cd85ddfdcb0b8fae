//! JSON bodies of the switchboard's HTTP API under `/v1`.

use serde::{Deserialize, Serialize};

use crate::{CallDirection, CallQuality, EndReason, ErrorCode, IceServer, Presence, UserRef};

/// `POST /v1/login` request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// Tenant name.
    pub tenant: String,
    /// User name within the tenant.
    pub user: String,
    /// Password (sent over TLS; never stored, only its argon2id hash is).
    pub password: String,
}

/// `POST /v1/login` and `POST /v1/token/refresh` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Opaque bearer token: 43 characters of base64url (256 random bits).
    pub token: String,
    /// When the token stops working, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Who logged in.
    pub user: UserRef,
    /// Their tenant's name.
    pub tenant: String,
}

/// `GET /v1/me` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeResponse {
    /// Me.
    pub user: UserRef,
    /// My tenant's name.
    pub tenant: String,
    /// My current availability.
    pub presence: Presence,
    /// When my token expires, ms since the Unix epoch.
    pub token_expires_at_ms: u64,
}

/// One entry of `GET /v1/directory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DirectoryEntry {
    /// User name.
    pub user: String,
    /// Display name.
    pub display_name: String,
    /// Current availability.
    pub presence: Presence,
}

/// `GET /v1/directory` answer: users of my tenant, sorted by user name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryResponse {
    /// The users (disabled ones left out).
    pub users: Vec<DirectoryEntry>,
}

/// One call detail record, as `GET /v1/calls` and `GET /v1/calls/{id}` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallRecord {
    /// The call's id.
    pub call_id: String,
    /// From the asking user's side: `"outgoing"` or `"incoming"`.
    pub direction: CallDirection,
    /// Caller.
    pub caller: UserRef,
    /// Callee: for a queue call, the agent who answered, or the queue
    /// (`user` and `display_name` its name) when none did.
    pub callee: UserRef,
    /// The queue that routed the call (the last one after an overflow);
    /// `null` for a direct call.
    #[serde(default)]
    pub queue: Option<String>,
    /// For a queue call, how long the caller waited: until an agent
    /// answered, or until the call ended unanswered, ms.
    #[serde(default)]
    pub wait_ms: Option<u64>,
    /// The endpoint id (`hello.device_id`) that answered, once answered.
    pub answered_device: Option<String>,
    /// Invite received, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// First callee endpoint ringing, ms since the Unix epoch.
    pub ringing_at_ms: Option<u64>,
    /// Answered, ms since the Unix epoch.
    pub answered_at_ms: Option<u64>,
    /// Ended, ms since the Unix epoch (`null` while the call is up).
    pub ended_at_ms: Option<u64>,
    /// Answered time, in ms (0 when never answered; `null` while up).
    pub duration_ms: Option<u64>,
    /// Why it ended (`null` while up).
    pub end_reason: Option<EndReason>,
    /// User name of the party that ended it, when a party did.
    pub ended_by: Option<String>,
    /// `true` for an incoming call that was never answered by me (no_answer,
    /// or cancelled/unavailable/failed before an answer):
    /// [`EndReason::is_missed`].
    pub missed: bool,
    /// Quality as the caller reported it.
    pub caller_quality: Option<CallQuality>,
    /// Quality as the callee reported it.
    pub callee_quality: Option<CallQuality>,
}

/// `GET /v1/calls` answer: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallsResponse {
    /// One page of records.
    pub calls: Vec<CallRecord>,
    /// Pass as `?before=` for the next page; `null` on the last page.
    pub next_before: Option<String>,
}

/// `GET /v1/ice-servers` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServersResponse {
    /// Servers for `RTCConfiguration.iceServers`.
    pub ice_servers: Vec<IceServer>,
    /// Lifetime of the TURN credentials in them, in seconds.
    pub ttl_s: u64,
}

/// Body of every HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Detail for humans.
    pub message: String,
}

/// `user` in the CDR of a user that no longer exists is shown with this name.
pub const UNKNOWN_USER: &str = "(deleted)";
