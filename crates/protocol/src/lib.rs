//! Signaling wire types of the softphone: what the call engine and the
//! switchboard say to each other over the WebSocket `/v1/ws`, and the JSON
//! bodies of the switchboard's HTTP API under `/v1`.
//!
//! This crate is the Rust face of `docs/protocol.md`, which is the contract;
//! it holds types, constants and the frame parser, and does no IO.
//!
//! Every WebSocket frame is one JSON text message: an object with a `type`
//! tag (`"call.invite"`, `"welcome"`, …), an optional client-chosen `id`
//! that the server echoes in any `error` about that frame, and the fields of
//! the message.
//!
//! An *endpoint* is one signed-in installation of a client (the app,
//! phonectl, a browser tab): the unit the server rings, routes to and keeps
//! reconnect grace for. The wire fields that name it keep their historical
//! names, `device_id` and `device_name` (and `answered_device` in a call
//! record); they never mean an audio device.
//!
//! ```
//! use softphone_protocol::{ClientFrame, ClientMessage, parse_client_frame};
//!
//! let frame = parse_client_frame(r#"{"type":"ping","id":"7"}"#).unwrap();
//! assert_eq!(frame.id.as_deref(), Some("7"));
//! assert!(matches!(frame.message, ClientMessage::Ping {}));
//!
//! // Serialising goes through the same shape.
//! let text = ClientFrame::new(ClientMessage::Ping {}).to_json();
//! assert_eq!(text, r#"{"type":"ping"}"#);
//! ```

use serde::{Deserialize, Serialize};

mod error;
mod http;

pub use error::{ErrorCode, ParseError, close_code};
pub use http::*;

/// Version of the WebSocket protocol described in `docs/protocol.md`.
/// A client sends the version it speaks in `hello`; the server answers
/// `protocol_version` errors to versions it does not speak.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame, in bytes of UTF-8 JSON, that either side may send. A larger
/// frame is answered with an [`ErrorCode::FrameTooLarge`] error and dropped.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Largest SDP body, in bytes, accepted in an offer or answer.
pub const MAX_SDP_BYTES: usize = 32 * 1024;

/// A call's identifier: chosen by the caller in `call.invite`, 1 to 64
/// characters from `[A-Za-z0-9_-]` (a UUID is a good choice).
pub type CallId = String;

/// Checks a call id's shape: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn valid_call_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks an endpoint id's shape (`hello.device_id`): the same rules as
/// [`valid_call_id`].
pub fn valid_device_id(id: &str) -> bool {
    valid_call_id(id)
}

/// A frame from a client: the optional `id` that errors refer back to, and
/// the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Client-chosen frame id (any string up to 64 bytes); echoed as `ref`
    /// in an `error` about this frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The message itself; its `type` tag sits beside `id` in the JSON.
    #[serde(flatten)]
    pub message: ClientMessage,
}

impl ClientFrame {
    /// A frame without an id.
    pub fn new(message: ClientMessage) -> Self {
        Self { id: None, message }
    }

    /// A frame with an id, so that an `error` about it can be matched.
    pub fn with_id(id: impl Into<String>, message: ClientMessage) -> Self {
        Self {
            id: Some(id.into()),
            message,
        }
    }

    /// The frame as one JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client frames always serialise")
    }
}

/// Availability a user sets for themselves; `offline` is never set, it is
/// what the server reports when none of the user's endpoints is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Presence {
    /// Takes calls.
    Available,
    /// Takes calls, but is away from the desk.
    Away,
    /// Do not disturb: invites are rejected as `busy` without ringing.
    Dnd,
    /// No endpoint connected (reported only, never set).
    Offline,
}

impl Presence {
    /// The wire name, e.g. `"dnd"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Away => "away",
            Self::Dnd => "dnd",
            Self::Offline => "offline",
        }
    }

    /// Whether a user may set this status with `presence.set`: every status
    /// but `offline`, which only the server reports (the one rule, used by
    /// the switchboard and the app).
    pub fn can_be_set(self) -> bool {
        self != Self::Offline
    }
}

/// What an SDP in `call.update` is: a re-offer, or the answer to one
/// (RFC 3264 offer/answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SdpKind {
    /// A new offer (hold, resume, ICE restart).
    Offer,
    /// The answer to the last offer.
    Answer,
}

/// One trickled ICE candidate (RFC 8838), in the shape of the W3C
/// `RTCIceCandidateInit` dictionary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line, e.g.
    /// `"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"`.
    pub candidate: String,
    /// The media stream identification tag of the m-line, e.g. `"0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the m-line, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
    /// ICE ufrag the candidate belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Why a call ended: a closed set shared by `call.ended`, `call.rejected`,
/// the CDR and the HTTP history (`answered_elsewhere` only describes what the
/// callee's other endpoints saw; a CDR never ends with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum EndReason {
    /// Answered, then hung up by either party.
    Completed,
    /// The callee declined.
    Rejected,
    /// The callee was busy on every endpoint, or in do-not-disturb.
    Busy,
    /// Nobody answered before the ring timeout (a missed call).
    NoAnswer,
    /// The caller cancelled before an answer.
    Cancelled,
    /// The callee had no connected endpoint.
    Unavailable,
    /// Lost: a party's connection did not come back within the grace period,
    /// or the server restarted and found the call unfinished.
    Failed,
    /// Another endpoint of the callee answered (as seen by the other
    /// endpoints).
    AnsweredElsewhere,
    /// The parties' media could not be negotiated: an offer or answer
    /// without usable audio, or no common codec.
    Incompatible,
    /// A queue call whose caller hung up while waiting, before an agent
    /// answered (the contact-centre term; counted apart from `cancelled`
    /// in a queue's figures).
    Abandoned,
}

impl EndReason {
    /// The reason's wire name, e.g. `"no_answer"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Rejected => "rejected",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Cancelled => "cancelled",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::Incompatible => "incompatible",
            Self::Abandoned => "abandoned",
        }
    }

    /// Parses a wire name back; `None` for anything outside the set.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "completed" => Self::Completed,
            "rejected" => Self::Rejected,
            "busy" => Self::Busy,
            "no_answer" => Self::NoAnswer,
            "cancelled" => Self::Cancelled,
            "unavailable" => Self::Unavailable,
            "failed" => Self::Failed,
            "answered_elsewhere" => Self::AnsweredElsewhere,
            "incompatible" => Self::Incompatible,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }
}

impl EndReason {
    /// Whether a call that ended this way is a *missed call* for its callee:
    /// incoming, never answered by them, and ended because nobody picked up
    /// (`no_answer`), the caller gave up (`cancelled`), no endpoint could ring
    /// (`unavailable`) or the call was lost (`failed`). A call declined,
    /// refused as busy or answered on another endpoint is not missed.
    ///
    /// The one rule for the server's CDR (`CallRecord::missed`) and the
    /// desktop app's missed-call badge.
    pub fn is_missed(self, direction: CallDirection, answered: bool) -> bool {
        direction == CallDirection::Incoming
            && !answered
            && matches!(
                self,
                Self::NoAnswer | Self::Cancelled | Self::Unavailable | Self::Failed
            )
    }
}

/// Which way a call goes, from one party's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CallDirection {
    /// I placed the call.
    Outgoing,
    /// The call came to me.
    Incoming,
}

/// Why a callee declines in `call.reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The agent pressed Decline.
    #[default]
    Rejected,
    /// The endpoint cannot take the call (already in one, do-not-disturb).
    Busy,
    /// The offer cannot be answered: no usable audio section or no common
    /// codec (Opus/48000 is required).
    Incompatible,
}

/// Why a party ends an answered call in `call.hangup`, when it is not an
/// ordinary hang-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    /// The SDP answer or re-offer cannot carry the call (audio refused, no
    /// common codec): the call ends as `incompatible`.
    Incompatible,
    /// The media path failed (ICE or DTLS): the call ends as `failed`.
    Failed,
}

impl HangupReason {
    /// The end reason the call gets.
    pub fn end_reason(self) -> EndReason {
        match self {
            Self::Incompatible => EndReason::Incompatible,
            Self::Failed => EndReason::Failed,
        }
    }
}

/// Call quality summary a client posts in `call.stats` (and the CDR keeps):
/// the figures as that client measured them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CallQuality {
    /// Round-trip time from RTCP, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter of received RTP (RFC 3550 §6.4.1), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// Received packets lost, in percent (0–100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    /// Estimated mean opinion score (ITU-T G.107 E-model gives 1.0–4.5;
    /// values up to 5.0 are accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
    /// Average bitrate sent, in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_kbps: Option<f64>,
    /// Average bitrate received, in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_kbps: Option<f64>,
}

impl CallQuality {
    /// Checks the ranges above; returns the first field that is out of range.
    pub fn out_of_range(&self) -> Option<&'static str> {
        let bad = |v: Option<f64>, lo: f64, hi: f64| v.is_some_and(|v| !(lo..=hi).contains(&v));
        if bad(self.rtt_ms, 0.0, 600_000.0) {
            Some("rtt_ms")
        } else if bad(self.jitter_ms, 0.0, 600_000.0) {
            Some("jitter_ms")
        } else if bad(self.loss_pct, 0.0, 100.0) {
            Some("loss_pct")
        } else if bad(self.mos, 1.0, 5.0) {
            Some("mos")
        } else if bad(self.send_kbps, 0.0, 1_000_000.0) {
            Some("send_kbps")
        } else if bad(self.recv_kbps, 0.0, 1_000_000.0) {
            Some("recv_kbps")
        } else {
            None
        }
    }
}

/// Messages a client sends. The JSON `type` of each variant is given in its
/// doc; the fields are the variant's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ClientMessage {
    /// `hello`: must be the first frame; authenticates the socket.
    #[serde(rename = "hello")]
    Hello {
        /// Bearer token from `POST /v1/login`.
        token: String,
        /// Stable id of this endpoint (one installation of the app or
        /// phonectl, or a browser tab), 1–64 of `[A-Za-z0-9_-]`;
        /// reconnecting with the same id resumes its calls.
        device_id: String,
        /// Human name of the endpoint, e.g. `"alice's laptop"` (≤ 128
        /// bytes).
        #[serde(default)]
        device_name: String,
        /// Protocol version spoken, [`PROTOCOL_VERSION`].
        #[serde(default = "default_protocol")]
        protocol: u32,
    },
    /// `presence.set`: my availability.
    #[serde(rename = "presence.set")]
    PresenceSet {
        /// New status; `offline` is refused.
        status: Presence,
    },
    /// `call.invite`: ring a user of my tenant with an SDP offer.
    #[serde(rename = "call.invite")]
    Invite {
        /// Id for the new call, chosen by the caller (see [`valid_call_id`]).
        call_id: CallId,
        /// Callee's user name within my tenant.
        to: String,
        /// SDP offer (RFC 3264), ≤ [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// `call.ringing`: this callee endpoint is alerting the agent.
    #[serde(rename = "call.ringing")]
    Ringing {
        /// The call.
        call_id: CallId,
    },
    /// `call.accept`: answer on this endpoint with an SDP answer.
    #[serde(rename = "call.accept")]
    Accept {
        /// The call.
        call_id: CallId,
        /// SDP answer, ≤ [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// `call.reject`: decline a ringing call (on every endpoint of mine).
    #[serde(rename = "call.reject")]
    Reject {
        /// The call.
        call_id: CallId,
        /// `rejected` (default), `busy` or `incompatible`.
        #[serde(default)]
        reason: RejectReason,
    },
    /// `call.cancel`: the caller gives up before an answer.
    #[serde(rename = "call.cancel")]
    Cancel {
        /// The call.
        call_id: CallId,
    },
    /// `call.hangup`: end an answered call.
    #[serde(rename = "call.hangup")]
    Hangup {
        /// The call.
        call_id: CallId,
        /// Why, when it is not an ordinary hang-up: the media could not be
        /// negotiated or failed. Absent: `completed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<HangupReason>,
    },
    /// `ice.candidate`: a trickled ICE candidate for the other party;
    /// `candidate: null` says gathering is complete.
    #[serde(rename = "ice.candidate")]
    Candidate {
        /// The call.
        call_id: CallId,
        /// The candidate, or `null` for end-of-candidates.
        candidate: Option<IceCandidate>,
    },
    /// `call.update`: a re-offer or its answer during an answered call
    /// (hold, resume, ICE restart).
    #[serde(rename = "call.update")]
    Update {
        /// The call.
        call_id: CallId,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP, ≤ [`MAX_SDP_BYTES`].
        sdp: String,
    },
    /// `call.stats`: my quality summary for a call, during it or up to five
    /// minutes after it ended; the last one posted is kept in the CDR.
    #[serde(rename = "call.stats")]
    Stats {
        /// The call.
        call_id: CallId,
        /// The figures.
        #[serde(flatten)]
        quality: CallQuality,
    },
    /// `ping`: keepalive; answered by `pong`.
    #[serde(rename = "ping")]
    Ping {},
}

fn default_protocol() -> u32 {
    PROTOCOL_VERSION
}

/// The `type` tags of [`ClientMessage`], so that a parser can tell an
/// unknown type from a malformed known one.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "presence.set",
    "call.invite",
    "call.ringing",
    "call.accept",
    "call.reject",
    "call.cancel",
    "call.hangup",
    "ice.candidate",
    "call.update",
    "call.stats",
    "ping",
];

/// A user as other users see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UserRef {
    /// User name, unique within the tenant (what `call.invite` takes in `to`).
    pub user: String,
    /// Display name, e.g. `"Alice Martin"`.
    pub display_name: String,
}

/// A configured ICE server (W3C `RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:` or `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name (TURN REST API: `"<expiry unix s>:<tenant>/<user>"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password: base64 of HMAC-SHA1(secret, username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Where a call stands, as told in `welcome.calls` after a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// Invited, not yet answered.
    Ringing,
    /// Answered.
    Active,
}

/// A call this endpoint is part of, listed in `welcome` so a reconnecting
/// endpoint can resume it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSummary {
    /// The call.
    pub call_id: CallId,
    /// The other party.
    pub peer: UserRef,
    /// `true` when this endpoint placed the call.
    pub outgoing: bool,
    /// Ringing or active.
    pub phase: CallPhase,
}

/// A queue's offer of a waiting call, carried by `call.incoming` to the
/// agent it rings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct QueueOffer {
    /// The queue's name, e.g. `support`.
    pub name: String,
    /// How long the caller has waited so far, ms.
    pub waited_ms: u64,
    /// A web caller's email, as they typed it in the widget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A web caller's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The page a web caller called from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// Earlier calls of this tenant from web callers with the same email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earlier_calls: Option<u32>,
}

/// A frame from the server: the message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ServerMessage {
    /// `welcome`: the answer to a good `hello`.
    #[serde(rename = "welcome")]
    Welcome {
        /// Protocol version the server speaks.
        protocol: u32,
        /// Me.
        user: UserRef,
        /// My tenant's name.
        tenant: String,
        /// This connection's session id (for logs and support).
        session_id: String,
        /// The endpoint id from `hello` (wire name `device_id`).
        device_id: String,
        /// My current availability.
        presence: Presence,
        /// ICE servers to use (STUN, TURN with fresh credentials).
        ice_servers: Vec<IceServer>,
        /// Send a `ping` at least this often, in ms; the server closes a
        /// socket that stays silent for three times as long.
        heartbeat_ms: u64,
        /// Calls of this endpoint that survived a reconnect (empty
        /// otherwise).
        calls: Vec<CallSummary>,
    },
    /// `presence`: a user of my tenant changed availability.
    #[serde(rename = "presence")]
    Presence {
        /// Who.
        user: UserRef,
        /// Their new status.
        status: Presence,
    },
    /// `call.incoming`: a call rings this endpoint.
    #[serde(rename = "call.incoming")]
    Incoming {
        /// The call.
        call_id: CallId,
        /// The caller.
        from: UserRef,
        /// SDP offer.
        sdp: String,
        /// Present when the call is a queue's offer to this agent: which
        /// queue, and how long the caller has waited (the screen-pop).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<QueueOffer>,
    },
    /// `call.queued`: (to the caller of a queue) the call waits for an
    /// agent; sent when the call enters a queue and whenever its position
    /// or estimated wait changes. Not terminal.
    #[serde(rename = "call.queued")]
    Queued {
        /// The call.
        call_id: CallId,
        /// The queue's name (after an overflow, the queue it moved to).
        queue: String,
        /// 1 for the next caller to be served.
        position: u32,
        /// Estimated wait, ms: position × average handle time ÷ staffed
        /// agents.
        ewt_ms: u64,
    },
    /// `call.ringing`: (to the caller) a callee endpoint is alerting.
    #[serde(rename = "call.ringing")]
    Ringing {
        /// The call.
        call_id: CallId,
    },
    /// `call.accepted`: the call was answered. The caller receives the SDP
    /// answer; the answering endpoint receives it with `sdp` absent, as the
    /// confirmation that its accept won.
    #[serde(rename = "call.accepted")]
    Accepted {
        /// The call.
        call_id: CallId,
        /// SDP answer (to the caller only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp: Option<String>,
        /// The endpoint id that answered (wire name `device_id`).
        device_id: String,
    },
    /// `call.answered_elsewhere`: another endpoint of mine answered; this
    /// endpoint stops ringing. Terminal for this endpoint.
    #[serde(rename = "call.answered_elsewhere")]
    AnsweredElsewhere {
        /// The call.
        call_id: CallId,
        /// The endpoint that answered (wire name `device_id`).
        device_id: String,
    },
    /// `call.rejected`: (to the caller) the callee declined or was busy.
    /// Terminal for the caller.
    #[serde(rename = "call.rejected")]
    Rejected {
        /// The call.
        call_id: CallId,
        /// `rejected` or `busy`.
        reason: EndReason,
    },
    /// `call.ended`: the call is over for this endpoint. Terminal.
    #[serde(rename = "call.ended")]
    Ended {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: EndReason,
        /// User name of the party that ended it, when a party did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// Words for the caller, when the server has some: a queue's
        /// closed-hours or maximum-wait message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// `ice.candidate`: the other party's trickled candidate (or `null`).
    #[serde(rename = "ice.candidate")]
    Candidate {
        /// The call.
        call_id: CallId,
        /// The candidate, or `null` for end-of-candidates.
        candidate: Option<IceCandidate>,
    },
    /// `call.update`: the other party's re-offer or answer.
    #[serde(rename = "call.update")]
    Update {
        /// The call.
        call_id: CallId,
        /// Offer or answer.
        kind: SdpKind,
        /// The SDP.
        sdp: String,
    },
    /// `error`: a frame was refused. The connection stays usable.
    #[serde(rename = "error")]
    Error {
        /// Machine-readable code, from a closed set.
        code: ErrorCode,
        /// Human-readable detail; never parse it.
        message: String,
        /// The offending frame's `id`, when it had one.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        ref_id: Option<String>,
        /// The call concerned, when there is one (e.g. the surviving call of
        /// a `glare`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<CallId>,
    },
    /// `pong`: answer to `ping`.
    #[serde(rename = "pong")]
    Pong {
        /// Server clock, ms since the Unix epoch.
        server_time_ms: u64,
    },
}

impl ServerMessage {
    /// The message as one JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialise")
    }

    /// The call this message is about, if any.
    pub fn call_id(&self) -> Option<&str> {
        match self {
            Self::Incoming { call_id, .. }
            | Self::Queued { call_id, .. }
            | Self::Ringing { call_id }
            | Self::Accepted { call_id, .. }
            | Self::AnsweredElsewhere { call_id, .. }
            | Self::Rejected { call_id, .. }
            | Self::Ended { call_id, .. }
            | Self::Candidate { call_id, .. }
            | Self::Update { call_id, .. } => Some(call_id),
            Self::Error { call_id, .. } => call_id.as_deref(),
            _ => None,
        }
    }
}

/// Parses one client text frame, classifying what is wrong with a bad one.
///
/// # Errors
/// [`ParseError`] with the frame's `id` when it could be read:
/// [`ErrorCode::FrameTooLarge`] over [`MAX_FRAME_BYTES`],
/// [`ErrorCode::BadFrame`] for anything that is not a JSON object with a
/// string `type`, or a known type with missing or mistyped fields, and
/// [`ErrorCode::UnknownType`] for a `type` outside [`CLIENT_TYPES`].
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ParseError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ParseError {
            code: ErrorCode::FrameTooLarge,
            message: format!(
                "frame of {} bytes is over the {MAX_FRAME_BYTES}-byte limit",
                text.len()
            ),
            ref_id: sniff_id(text),
        });
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ParseError {
        code: ErrorCode::BadFrame,
        message: format!("not JSON: {e}"),
        ref_id: None,
    })?;
    let serde_json::Value::Object(map) = &value else {
        return Err(ParseError::bad("a frame must be a JSON object", None));
    };
    let ref_id = match map.get("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.len() <= 64 => Some(s.clone()),
        Some(_) => {
            return Err(ParseError::bad(
                "`id` must be a string of at most 64 bytes",
                None,
            ));
        }
    };
    let Some(serde_json::Value::String(kind)) = map.get("type") else {
        return Err(ParseError::bad("missing string field `type`", ref_id));
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err(ParseError {
            code: ErrorCode::UnknownType,
            message: format!("unknown message type `{shown}`"),
            ref_id,
        });
    }
    serde_json::from_value::<ClientFrame>(value).map_err(|e| ParseError::bad(e.to_string(), ref_id))
}

/// Best-effort `"id":"…"` lookup in the first 512 bytes of an oversized frame
/// (which is not parsed whole).
fn sniff_id(text: &str) -> Option<String> {
    let head = &text.as_bytes()[..text.len().min(512)];
    let head = String::from_utf8_lossy(head);
    let start = head.find("\"id\"")? + 4;
    let rest = head[start..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    (end <= 64).then(|| rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_round_trips() {
        let frame = ClientFrame::with_id(
            "f1",
            ClientMessage::Invite {
                call_id: "c1".into(),
                to: "bob".into(),
                sdp: "v=0\r\n".into(),
            },
        );
        let json = frame.to_json();
        assert!(json.contains(r#""type":"call.invite""#), "{json}");
        assert_eq!(parse_client_frame(&json).unwrap(), frame);
    }

    #[test]
    fn unknown_type_is_told_apart_from_bad_fields() {
        let e = parse_client_frame(r#"{"type":"call.dance","id":"x"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert_eq!(e.ref_id.as_deref(), Some("x"));
        let e = parse_client_frame(r#"{"type":"call.invite","id":"y","to":"bob"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadFrame);
        assert_eq!(e.ref_id.as_deref(), Some("y"));
        assert!(
            e.message.contains("call_id") || e.message.contains("sdp"),
            "{}",
            e.message
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_bad_frames() {
        for text in ["{", "[]", "42", r#"{"id":"a"}"#, r#"{"type":5}"#] {
            let e = parse_client_frame(text).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadFrame, "{text}");
        }
    }

    #[test]
    fn oversized_frame_keeps_its_id() {
        let big = format!(
            r#"{{"id":"big-1","type":"ping","pad":"{}"}}"#,
            "x".repeat(70_000)
        );
        let e = parse_client_frame(&big).unwrap_err();
        assert_eq!(e.code, ErrorCode::FrameTooLarge);
        assert_eq!(e.ref_id.as_deref(), Some("big-1"));
    }

    #[test]
    fn null_candidate_means_end_of_candidates() {
        let f = parse_client_frame(r#"{"type":"ice.candidate","call_id":"c","candidate":null}"#)
            .unwrap();
        assert_eq!(
            f.message,
            ClientMessage::Candidate {
                call_id: "c".into(),
                candidate: None
            }
        );
    }

    #[test]
    fn stats_are_flat_and_range_checked() {
        let f =
            parse_client_frame(r#"{"type":"call.stats","call_id":"c","rtt_ms":12.5,"mos":4.3}"#)
                .unwrap();
        let ClientMessage::Stats { quality, .. } = f.message else {
            panic!("not stats");
        };
        assert_eq!(quality.rtt_ms, Some(12.5));
        assert_eq!(quality.out_of_range(), None);
        let q = CallQuality {
            loss_pct: Some(140.0),
            ..Default::default()
        };
        assert_eq!(q.out_of_range(), Some("loss_pct"));
    }

    #[test]
    fn server_error_uses_ref() {
        let m = ServerMessage::Error {
            code: ErrorCode::NotFound,
            message: "no such user".into(),
            ref_id: Some("9".into()),
            call_id: None,
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"error","code":"not_found","message":"no such user","ref":"9"}"#
        );
    }

    #[test]
    fn call_ids_are_checked() {
        assert!(valid_call_id("0b7c-AA_1"));
        assert!(!valid_call_id(""));
        assert!(!valid_call_id("a b"));
        assert!(!valid_call_id(&"a".repeat(65)));
    }

    #[test]
    fn a_missed_call_is_incoming_unanswered_and_ended_by_nobody_picking_up() {
        use CallDirection::{Incoming, Outgoing};
        for r in [
            EndReason::NoAnswer,
            EndReason::Cancelled,
            EndReason::Unavailable,
            EndReason::Failed,
        ] {
            assert!(r.is_missed(Incoming, false), "{r:?}");
            assert!(!r.is_missed(Incoming, true), "{r:?} after an answer");
            assert!(!r.is_missed(Outgoing, false), "{r:?} outgoing");
        }
        for r in [
            EndReason::Completed,
            EndReason::Rejected,
            EndReason::Busy,
            EndReason::AnsweredElsewhere,
        ] {
            assert!(!r.is_missed(Incoming, false), "{r:?}");
        }
    }

    #[test]
    fn end_reasons_round_trip() {
        for r in [
            EndReason::Completed,
            EndReason::Rejected,
            EndReason::Busy,
            EndReason::NoAnswer,
            EndReason::Cancelled,
            EndReason::Unavailable,
            EndReason::Failed,
            EndReason::AnsweredElsewhere,
        ] {
            assert_eq!(EndReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }
}
