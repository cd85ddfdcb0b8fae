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
    /// What I may do beyond calling (older servers: absent, an agent).
    #[serde(default)]
    pub role: Role,
}

/// What a user may do beyond calling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes and places calls.
    #[default]
    Agent,
    /// An agent who also watches the tenant's queues and agents: the
    /// supervisor view (`GET /v1/supervisor`) and the live call events
    /// (`GET /v1/events`).
    Supervisor,
    /// A supervisor who also manages the tenant's queues, webhooks and
    /// widget origins (`/v1/admin`).
    Admin,
    /// A customer calling from the web widget: may only call the tenant's
    /// published queues (and take a call back), nothing else.
    Guest,
}

impl Role {
    /// The store and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Supervisor => "supervisor",
            Self::Admin => "admin",
            Self::Guest => "guest",
        }
    }

    /// The role of a store or wire name; anything unknown is an agent (the
    /// least privilege).
    pub fn parse(s: &str) -> Self {
        match s {
            "supervisor" => Self::Supervisor,
            "admin" => Self::Admin,
            "guest" => Self::Guest,
            _ => Self::Agent,
        }
    }

    /// Whether the role may watch the tenant's queues and agents.
    pub fn supervises(self) -> bool {
        matches!(self, Self::Supervisor | Self::Admin)
    }
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

/// A queue member's state as a supervisor sees it (`GET /v1/supervisor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Signed in, `available`, free to be offered a call.
    Available,
    /// Being rung: a queue offer or a direct call.
    Ringing,
    /// In a call (answered, or placing one).
    OnCall,
    /// After-call work following a queue call (the queue's wrap-up time).
    WrapUp,
    /// Signed in with a status other than `available` (including set away
    /// by a queue after lapsed offers).
    Away,
    /// No connected device.
    Offline,
}

/// A queue member in `GET /v1/supervisor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SupervisedAgent {
    /// Who.
    pub agent: UserRef,
    /// Their state now.
    pub state: AgentState,
    /// Since when, ms since the Unix epoch (when this node first saw them,
    /// if the state began before).
    pub since_ms: u64,
    /// The queues they are a member of, by name.
    pub queues: Vec<String>,
}

/// A caller waiting in a queue, in `GET /v1/supervisor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WaitingCaller {
    /// The call.
    pub call_id: String,
    /// Who is calling (a web caller: the name they typed).
    pub caller: UserRef,
    /// When they entered their first queue, ms since the Unix epoch.
    pub since_ms: u64,
    /// Agents (user names) ringing with this call now.
    pub offered_to: Vec<String>,
}

/// A queue in `GET /v1/supervisor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SupervisedQueue {
    /// The queue's name.
    pub name: String,
    /// Its number, if any.
    pub number: Option<String>,
    /// Callers waiting, longest-waiting first.
    pub waiting: Vec<WaitingCaller>,
    /// The longest current wait, ms.
    pub longest_wait_ms: u64,
    /// Member agents available (idle or ringing with an offer).
    pub agents_available: u32,
    /// Member agents in a call.
    pub agents_busy: u32,
    /// Member agents in wrap-up.
    pub agents_wrap_up: u32,
}

/// `GET /v1/supervisor` answer: the tenant's queues and their agents now,
/// as the node asked routes them. Supervisors and admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SupervisorView {
    /// When the view was taken, ms since the Unix epoch.
    pub now_ms: u64,
    /// The queues, by name.
    pub queues: Vec<SupervisedQueue>,
    /// Every member of a queue, by user name.
    pub agents: Vec<SupervisedAgent>,
}

/// The kind of a call event: the webhook event types (docs/protocol.md
/// §2.13), also sent on the supervisors' live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CallEventType {
    /// A call was placed (to a user or a queue).
    #[serde(rename = "call.initiated")]
    Initiated,
    /// A call entered a queue (also after an overflow to another queue).
    #[serde(rename = "call.queued")]
    Queued,
    /// A queue offered a call to an agent.
    #[serde(rename = "call.offered")]
    Offered,
    /// A call was answered.
    #[serde(rename = "call.answered")]
    Answered,
    /// An unanswered call ended unanswered by the callee (`call.ended` follows).
    #[serde(rename = "call.missed")]
    Missed,
    /// A call was declined or the callee was busy (`call.ended` follows).
    #[serde(rename = "call.rejected")]
    Rejected,
    /// A caller hung up while waiting in a queue (`call.ended` follows).
    #[serde(rename = "call.abandoned")]
    Abandoned,
    /// A call ended.
    #[serde(rename = "call.ended")]
    Ended,
}

impl CallEventType {
    /// The wire name, e.g. `call.answered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "call.initiated",
            Self::Queued => "call.queued",
            Self::Offered => "call.offered",
            Self::Answered => "call.answered",
            Self::Missed => "call.missed",
            Self::Rejected => "call.rejected",
            Self::Abandoned => "call.abandoned",
            Self::Ended => "call.ended",
        }
    }
}

/// A call event on the supervisors' live stream (`GET /v1/events`, server-
/// sent events named by `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallEvent {
    /// The event id, the same as the webhook delivery's (de-duplicate on it).
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: CallEventType,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The call.
    pub call_id: String,
    /// The caller's user name.
    pub caller: String,
    /// The callee (a direct call), or the agent offered or answering.
    pub agent: Option<String>,
    /// The queue, for a queue call.
    pub queue: Option<String>,
    /// Why it ended (`call.ended` and the kinds of end before it).
    pub reason: Option<EndReason>,
}
