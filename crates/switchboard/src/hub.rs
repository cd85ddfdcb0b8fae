//! The routing core: who is connected on which endpoint, which calls exist and
//! in what phase, and who must hear about each change.
//!
//! An *endpoint* is one signed-in installation of the app, phonectl or a
//! browser tab, known by the id it sends as `hello.device_id` (the wire keeps
//! that historical name); it has nothing to do with audio devices.
//!
//! The hub is a pure state machine. It holds no socket, channel, clock or
//! database: every method that needs the time takes it as `now_ms` (ms since
//! the Unix epoch), and every method that changes something returns
//! [`Effects`], what the caller must do next:
//!
//! - `frames`: [`ConnCmd`]s to queue, in order, to connections by [`ConnId`];
//! - `cdr`: call detail record writes to persist, in order, each with the
//!   sequence number the hub gave it;
//! - `timers`: [`Timer`]s to arm (ring timeout, reconnect grace), whose
//!   expiry the caller reports back ([`Hub::ring_timeout`],
//!   [`Hub::grace_expired`]).
//!
//! The socket layer (`ws.rs`) calls one method at a time under one lock and
//! applies its effects under the same lock: CDR writes first, then frames.
//!
//! **Durable before told.** A frame that reports a CDR change carries that
//! write's sequence number in [`Outbound::after_seq`], and a connection's
//! writer holds it (and everything queued behind it) until the write is
//! committed: a client never hears of a state change that a crash could
//! still lose (docs/protocol.md §8.2).
//!
//! Nothing a client sends can make the hub panic: a frame about something
//! that does not exist, or is not the sender's, is refused with a
//! [`HubError`] and changes nothing. The unit tests (`hub/tests.rs`) drive
//! every routing rule of docs/protocol.md §6 and §8.1 through these methods
//! alone.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use softphone_protocol::{
    CallPhase, CallQuality, CallSummary, EndReason, ErrorCode, HangupReason, IceCandidate,
    IceServer, MAX_SDP_BYTES, PROTOCOL_VERSION, Presence, RejectReason, SdpKind, ServerMessage,
    UserRef, close_code, valid_call_id,
};

use crate::acd;
use crate::store::{AuthedUser, Callee, CdrWrite, TenantId, UserId};

mod queues;
use queues::{LiveQueue, QueueLeg};
pub use queues::{QueueDef, QueueKey, WebCaller};
mod supervisor;
pub use supervisor::{LiveEvent, LiveKind};

/// Identifies one authenticated socket.
pub type ConnId = u64;

/// How long an ended call is remembered, so that late `call.stats` and
/// duplicate hang-ups get a precise answer: 5 minutes.
const ENDED_MEMORY_MS: u64 = 5 * 60 * 1000;

/// Frames kept for an endpoint whose socket dropped, until it reconnects.
const PENDING_LIMIT: usize = 128;

/// A frame queued to a connection, released once CDR write `after_seq` is
/// committed (0: at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The JSON text.
    pub text: String,
    /// CDR sequence number to wait for.
    pub after_seq: u64,
}

/// What a connection's writer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnCmd {
    /// Send a frame.
    Frame(Outbound),
    /// Close the socket with this close code and reason.
    Close(u16, &'static str),
}

/// What the caller of a hub method must do, in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    /// Commands to queue to connections, in order.
    pub frames: Vec<(ConnId, ConnCmd)>,
    /// CDR writes to persist, in order, with their sequence numbers
    /// (strictly increasing over the hub's life, starting at 1).
    pub cdr: Vec<(u64, CdrWrite)>,
    /// Timers to arm.
    pub timers: Vec<Timer>,
    /// What supervisors watching the tenant hear (`GET /v1/events`).
    pub live: Vec<LiveEvent>,
}

/// A refused request: the code and message of the `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct HubError {
    /// Error code.
    pub code: ErrorCode,
    /// Detail.
    pub message: String,
    /// The call concerned, when useful to the client (glare).
    pub call_id: Option<String>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> HubError {
    HubError {
        code,
        message: message.into(),
        call_id: None,
    }
}

/// A timer the caller must arm; when it fires, call the matching method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// After the ring timeout: [`Hub::ring_timeout`].
    RingTimeout {
        /// The call.
        call_id: String,
    },
    /// At `at_ms` (ms since the epoch): [`Hub::queue_tick`].
    QueueTick {
        /// The queue.
        queue: QueueKey,
        /// When.
        at_ms: u64,
    },
    /// After the reconnect grace: [`Hub::grace_expired`].
    Grace {
        /// Whose endpoint.
        user: UserId,
        /// Which endpoint.
        endpoint: String,
        /// Generation; a reconnect bumps it and voids the timer.
        generation: u64,
    },
}

/// Result of a hub operation on a client's request: what to do, or the
/// refusal to answer with an `error` frame (a refusal changes nothing).
pub type HubResult = Result<Effects, HubError>;

struct Conn {
    user: UserId,
    endpoint: String,
}

/// One endpoint of an online user: its socket while connected, the calls
/// it is in, and the frames kept for it while in reconnect grace.
#[derive(Default)]
struct Endpoint {
    conn: Option<ConnId>,
    calls: HashSet<String>,
    pending: Vec<Outbound>,
    generation: u64,
}

struct OnlineUser {
    tenant: TenantId,
    user: UserRef,
    presence: Presence,
    /// When `presence` last became `available` (or the user came online),
    /// ms since the epoch: how long a queue agent has been free.
    available_since: u64,
    /// A web caller: hears no presence, and nobody hears theirs.
    guest: bool,
    endpoints: HashMap<String, Endpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Active,
}

struct Call {
    tenant: TenantId,
    caller: UserId,
    caller_endpoint: String,
    callee: UserId,
    callee_ref: UserRef,
    caller_ref: UserRef,
    rung_endpoints: Vec<String>,
    answered_endpoint: Option<String>,
    phase: Phase,
    ringing_told: bool,
    /// The SDP offer, kept while ringing so that a rung endpoint whose socket
    /// was replaced can be rung again.
    offer: String,
    /// For a call to a queue: where it waits and whom it rings. Its
    /// `callee` is [`NO_AGENT`] until an agent answers.
    queue: Option<QueueLeg>,
}

/// The `callee` of a queue call that no agent answered yet (user ids start
/// at 1).
const NO_AGENT: UserId = 0;

struct Ended {
    caller: UserId,
    callee: UserId,
}

/// Parts of the `welcome` frame that the socket layer knows.
pub struct WelcomeParts {
    /// This connection's session id.
    pub session_id: String,
    /// ICE servers with fresh credentials.
    pub ice_servers: Vec<IceServer>,
    /// Keepalive period, ms.
    pub heartbeat_ms: u64,
}

/// The routing state. See the module docs.
#[derive(Default)]
pub struct Hub {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<UserId, OnlineUser>,
    by_name: HashMap<(TenantId, String), UserId>,
    tenants: HashMap<TenantId, HashSet<UserId>>,
    calls: HashMap<String, Call>,
    ringing_pairs: HashMap<(UserId, UserId), String>,
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<(u64, String)>,
    cdr_seq: u64,
    next_conn: ConnId,
    /// Live queues, by tenant and name.
    queues: HashMap<QueueKey, LiveQueue>,
    /// The queues each agent is a member of.
    agent_queues: HashMap<UserId, BTreeSet<QueueKey>>,
    /// Agents whose presence the queues must hear again (their calls,
    /// endpoints or status changed); see `queues::settle`.
    dirty: BTreeSet<UserId>,
    /// Queue actions not yet carried out, in order.
    work: VecDeque<(QueueKey, acd::Action)>,
    /// Queues whose next deadline may have moved.
    touched: BTreeSet<QueueKey>,
    /// Each queue member's state for supervisors, and since when (ms).
    agent_states: HashMap<UserId, (softphone_protocol::AgentState, u64)>,
    /// Supervisors' streams open per tenant: live events are made only for
    /// these ([`Self::watch`]).
    watchers: HashMap<TenantId, usize>,
}

impl Hub {
    /// An empty hub; its first CDR write gets sequence number 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh connection id (never 0, never reused).
    pub fn next_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Number of authenticated connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of calls ringing or answered.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The online user of a tenant with this name, if any.
    pub fn find_online(&self, tenant: TenantId, name: &str) -> Option<Callee> {
        let id = *self.by_name.get(&(tenant, name.to_string()))?;
        let u = self.users.get(&id)?;
        Some(Callee {
            user_id: id,
            user: u.user.clone(),
        })
    }

    /// A user's presence: their set status while an endpoint is connected (or
    /// in grace), `offline` otherwise.
    pub fn presence_of(&self, user: UserId) -> Presence {
        self.users
            .get(&user)
            .map_or(Presence::Offline, |u| u.presence)
    }

    /// Registers an authenticated socket `conn` for `who` on `endpoint_id`:
    /// sends it `welcome` (listing calls the endpoint is part of), the frames
    /// kept while it was away, and `call.incoming` again for calls it is
    /// still rung for. A previous socket of the same endpoint is closed with
    /// 4002 (replaced). The user's first endpoint tells the tenant the user is
    /// present.
    pub fn attach(
        &mut self,
        conn: ConnId,
        who: &AuthedUser,
        endpoint_id: &str,
        parts: WelcomeParts,
        now_ms: u64,
    ) -> Effects {
        let mut fx = Effects::default();
        let uid = who.user_id;
        let new_user = !self.users.contains_key(&uid);
        if new_user {
            self.by_name
                .insert((who.tenant_id, who.user.user.clone()), uid);
            self.tenants.entry(who.tenant_id).or_default().insert(uid);
        }
        let user = self.users.entry(uid).or_insert_with(|| OnlineUser {
            tenant: who.tenant_id,
            user: who.user.clone(),
            presence: Presence::Available,
            available_since: now_ms,
            guest: who.role == crate::store::Role::Guest,
            endpoints: HashMap::new(),
        });
        let presence = user.presence;
        let endpoint = user.endpoints.entry(endpoint_id.to_string()).or_default();
        if let Some(old) = endpoint.conn.take()
            && self.conns.remove(&old).is_some()
        {
            fx.frames.push((
                old,
                ConnCmd::Close(close_code::REPLACED, "replaced by a newer connection"),
            ));
        }
        endpoint.generation += 1;
        endpoint.conn = Some(conn);
        let pending = std::mem::take(&mut endpoint.pending);
        let mut call_ids: Vec<String> = endpoint.calls.iter().cloned().collect();
        call_ids.sort();
        let calls = call_ids
            .iter()
            .filter_map(|id| {
                let c = self.calls.get(id)?;
                let outgoing = c.caller == uid && c.caller_endpoint == endpoint_id;
                Some(CallSummary {
                    call_id: id.clone(),
                    peer: if outgoing {
                        c.callee_ref.clone()
                    } else {
                        c.caller_ref.clone()
                    },
                    outgoing,
                    phase: match c.phase {
                        Phase::Ringing => CallPhase::Ringing,
                        Phase::Active => CallPhase::Active,
                    },
                })
            })
            .collect();
        // A rung endpoint that came back is rung again: its new socket has not
        // seen the offer.
        let rering: Vec<String> = call_ids
            .iter()
            .filter_map(|id| {
                let c = self.calls.get(id)?;
                let rung = c.phase == Phase::Ringing
                    && ((c.callee == uid && c.rung_endpoints.iter().any(|d| d == endpoint_id))
                        || c.queue.as_ref().is_some_and(|l| l.rings(uid, endpoint_id)));
                rung.then(|| {
                    ServerMessage::Incoming {
                        call_id: id.clone(),
                        from: c.caller_ref.clone(),
                        sdp: c.offer.clone(),
                        queue: c.queue.as_ref().map(|l| l.offer_info(now_ms)),
                    }
                    .to_json()
                })
            })
            .collect();
        let welcome = ServerMessage::Welcome {
            protocol: PROTOCOL_VERSION,
            user: who.user.clone(),
            tenant: who.tenant.clone(),
            session_id: parts.session_id,
            device_id: endpoint_id.to_string(),
            presence,
            ice_servers: parts.ice_servers,
            heartbeat_ms: parts.heartbeat_ms,
            calls,
        };
        fx.frames.push((conn, frame(&welcome, 0)));
        for o in pending {
            fx.frames.push((conn, ConnCmd::Frame(o)));
        }
        for text in rering {
            fx.frames
                .push((conn, ConnCmd::Frame(Outbound { text, after_seq: 0 })));
        }
        self.conns.insert(
            conn,
            Conn {
                user: uid,
                endpoint: endpoint_id.to_string(),
            },
        );
        if new_user {
            self.broadcast_presence(&mut fx, uid);
        }
        self.dirty.insert(uid);
        self.settle(&mut fx, now_ms);
        fx
    }

    /// Forgets a socket that closed. Calls its endpoint placed or answered get
    /// a reconnect grace period (a [`Timer::Grace`] to arm); an endpoint that
    /// was only being rung stops ringing, and a call whose last rung endpoint
    /// left ends as `unavailable`. An unknown (or already replaced) `conn`
    /// changes nothing.
    pub fn detach(&mut self, conn: ConnId, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let Some(c) = self.conns.remove(&conn) else {
            return fx;
        };
        let Some(endpoint) = self.endpoint_mut(c.user, &c.endpoint) else {
            return fx;
        };
        endpoint.conn = None;
        let mut ids: Vec<String> = endpoint.calls.iter().cloned().collect();
        ids.sort();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            if call.phase != Phase::Ringing
                || (call.caller == c.user && call.caller_endpoint == c.endpoint)
            {
                continue;
            }
            self.stop_ringing(&mut fx, &id, c.user, &c.endpoint, now_ms);
        }
        let Some(endpoint) = self.endpoint_mut(c.user, &c.endpoint) else {
            return fx;
        };
        if endpoint.calls.is_empty() {
            self.drop_endpoint_if_idle(&mut fx, c.user, &c.endpoint);
        } else {
            endpoint.generation += 1;
            fx.timers.push(Timer::Grace {
                user: c.user,
                endpoint: c.endpoint,
                generation: endpoint.generation,
            });
        }
        self.dirty.insert(c.user);
        self.settle(&mut fx, now_ms);
        fx
    }

    /// The endpoint behind `conn` signed out: its login ended (logout, or
    /// the user disabled), so it will not come back and its calls get no
    /// reconnect grace. It leaves every call it is in as a hang-up would:
    /// an answered call ends `completed` by this user, its own ringing
    /// invite ends `cancelled`, and an invite ringing it stops ringing it
    /// (`unavailable` when it was the last rung endpoint; the user's other
    /// endpoints ring on). Call before the socket closes; the later
    /// [`Self::detach`] then finds no call. An unknown `conn` changes
    /// nothing.
    pub fn sign_out(&mut self, conn: ConnId, now_ms: u64) -> Effects {
        let Ok((me, ep)) = self.me(conn) else {
            return Effects::default();
        };
        self.leave_calls_signed_out(me, &ep, now_ms)
    }

    /// Whether `user`'s `endpoint` is in reconnect grace: known and without
    /// a socket (an endpoint with no call is forgotten when its socket
    /// drops).
    pub fn in_grace(&self, user: UserId, endpoint: &str) -> bool {
        self.users
            .get(&user)
            .and_then(|u| u.endpoints.get(endpoint))
            .is_some_and(|d| d.conn.is_none())
    }

    /// [`Self::sign_out`] for an endpoint in reconnect grace (its socket
    /// dropped before its login ended): it leaves its calls at once, and
    /// is forgotten (a pending [`Timer::Grace`] then finds nothing). An
    /// endpoint that is not in grace is left alone.
    pub fn sign_out_in_grace(&mut self, user: UserId, endpoint: &str, now_ms: u64) -> Effects {
        if !self.in_grace(user, endpoint) {
            return Effects::default();
        }
        let mut fx = self.leave_calls_signed_out(user, endpoint, now_ms);
        if let Some(d) = self.endpoint_mut(user, endpoint) {
            d.pending.clear();
            d.generation += 1;
        }
        self.drop_endpoint_if_idle(&mut fx, user, endpoint);
        self.settle(&mut fx, now_ms);
        fx
    }

    fn leave_calls_signed_out(&mut self, me: UserId, ep: &str, now_ms: u64) -> Effects {
        let ep = ep.to_string();
        let mut fx = Effects::default();
        let mut ids: Vec<String> = self
            .users
            .get(&me)
            .and_then(|u| u.endpoints.get(&ep))
            .map(|d| d.calls.iter().cloned().collect())
            .unwrap_or_default();
        ids.sort();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else {
                continue;
            };
            let is_caller = call.caller == me && call.caller_endpoint == ep;
            match call.phase {
                Phase::Active => {
                    self.end_call(&mut fx, &id, EndReason::Completed, Some(me), now_ms);
                }
                Phase::Ringing if is_caller => {
                    self.end_call(&mut fx, &id, EndReason::Cancelled, Some(me), now_ms);
                }
                Phase::Ringing => self.stop_ringing(&mut fx, &id, me, &ep, now_ms),
            }
        }
        self.settle(&mut fx, now_ms);
        fx
    }

    /// The reconnect grace of an endpoint ran out: if it did not come back, its
    /// calls end as `failed` and the frames kept for it are dropped. A stale
    /// timer (the endpoint came back, or a newer grace started) does nothing.
    pub fn grace_expired(
        &mut self,
        user: UserId,
        endpoint: &str,
        generation: u64,
        now_ms: u64,
    ) -> Effects {
        let mut fx = Effects::default();
        let Some(d) = self
            .users
            .get(&user)
            .and_then(|u| u.endpoints.get(endpoint))
        else {
            return fx;
        };
        if d.conn.is_some() || d.generation != generation {
            return fx;
        }
        let mut ids: Vec<String> = d.calls.iter().cloned().collect();
        ids.sort();
        for id in ids {
            self.end_call(&mut fx, &id, EndReason::Failed, None, now_ms);
        }
        if let Some(d) = self.endpoint_mut(user, endpoint) {
            d.pending.clear();
        }
        self.drop_endpoint_if_idle(&mut fx, user, endpoint);
        self.settle(&mut fx, now_ms);
        fx
    }

    /// The ring timeout of a call ran out: if still ringing, it ends as
    /// `no_answer`; otherwise nothing happens.
    pub fn ring_timeout(&mut self, call_id: &str, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        if self
            .calls
            .get(call_id)
            .is_some_and(|c| c.phase == Phase::Ringing)
        {
            self.end_call(&mut fx, call_id, EndReason::NoAnswer, None, now_ms);
        }
        self.settle(&mut fx, now_ms);
        fx
    }

    fn me(&self, conn: ConnId) -> Result<(UserId, String), HubError> {
        self.conns
            .get(&conn)
            .map(|c| (c.user, c.endpoint.clone()))
            .ok_or_else(|| err(ErrorCode::Internal, "connection not registered"))
    }

    /// `call.invite` from `conn` to `callee` (already resolved within the
    /// caller's tenant; `None` when no such user). On success the call
    /// exists and has a CDR row: it rings the callee's free endpoints (with a
    /// [`Timer::RingTimeout`]), or ends at once as `busy` or `unavailable`.
    ///
    /// # Errors
    /// `invalid_value` (call id shape, SDP size), `not_found`, `self_call`,
    /// `call_exists`, `glare` (with the surviving call's id); `internal` for
    /// an unregistered connection.
    pub fn invite(
        &mut self,
        conn: ConnId,
        call_id: &str,
        to: &str,
        callee: Option<Callee>,
        sdp: String,
        now_ms: u64,
    ) -> HubResult {
        let r = self.invite_direct(conn, call_id, to, callee, sdp, now_ms);
        self.settled(r, now_ms)
    }

    fn invite_direct(
        &mut self,
        conn: ConnId,
        call_id: &str,
        to: &str,
        callee: Option<Callee>,
        sdp: String,
        now_ms: u64,
    ) -> HubResult {
        let (me, my_endpoint) = self.me(conn)?;
        check_invite(call_id, &sdp)?;
        let Some(callee) = callee else {
            return Err(err(ErrorCode::NotFound, format!("no user `{to}`")));
        };
        if callee.user_id == me {
            return Err(err(ErrorCode::SelfCall, "you cannot call yourself"));
        }
        if self.calls.contains_key(call_id) || self.ended.contains_key(call_id) {
            return Err(err(ErrorCode::CallExists, "call_id already used"));
        }
        if let Some(theirs) = self.ringing_pairs.get(&(callee.user_id, me)) {
            return Err(HubError {
                code: ErrorCode::Glare,
                message: format!(
                    "`{}` is calling you at the same moment; answer their call",
                    callee.user.user
                ),
                call_id: Some(theirs.clone()),
            });
        }
        let Some(caller) = self.users.get(&me) else {
            return Err(err(ErrorCode::Internal, "connection not registered"));
        };
        let call = Call {
            tenant: caller.tenant,
            caller: me,
            caller_endpoint: my_endpoint.clone(),
            callee: callee.user_id,
            callee_ref: callee.user.clone(),
            caller_ref: caller.user.clone(),
            rung_endpoints: Vec::new(),
            answered_endpoint: None,
            phase: Phase::Ringing,
            ringing_told: false,
            offer: String::new(),
            queue: None,
        };
        let mut fx = Effects::default();
        let from = call.caller_ref.clone();
        let tenant_id = call.tenant;
        // In the call table first, so that supervisors hear it by name.
        self.calls.insert(call_id.to_string(), call);
        let created = self.record(
            &mut fx,
            CdrWrite::Created {
                call_id: call_id.to_string(),
                tenant_id,
                caller_id: me,
                callee_id: callee.user_id,
                caller_endpoint: my_endpoint.clone(),
                at_ms: now_ms,
            },
        );
        self.endpoint_joins_call(me, &my_endpoint, call_id);

        let Some(target) = self.users.get(&callee.user_id) else {
            self.end_call(&mut fx, call_id, EndReason::Unavailable, None, now_ms);
            return Ok(fx);
        };
        if target.presence == Presence::Dnd {
            let by = Some(callee.user_id);
            self.end_call(&mut fx, call_id, EndReason::Busy, by, now_ms);
            return Ok(fx);
        }
        if !target.endpoints.values().any(|d| d.conn.is_some()) {
            self.end_call(&mut fx, call_id, EndReason::Unavailable, None, now_ms);
            return Ok(fx);
        }
        let mut free: Vec<String> = target
            .endpoints
            .iter()
            .filter(|(id, d)| d.conn.is_some() && !self.endpoint_busy(callee.user_id, id, d))
            .map(|(id, _)| id.clone())
            .collect();
        free.sort();
        if free.is_empty() {
            self.end_call(&mut fx, call_id, EndReason::Busy, None, now_ms);
            return Ok(fx);
        }
        let text = ServerMessage::Incoming {
            call_id: call_id.to_string(),
            from,
            sdp: sdp.clone(),
            queue: None,
        }
        .to_json();
        for d in &free {
            self.endpoint_joins_call(callee.user_id, d, call_id);
            self.send_text(&mut fx, callee.user_id, d, &text, created);
        }
        if let Some(c) = self.calls.get_mut(call_id) {
            c.rung_endpoints = free;
            c.offer = sdp;
        }
        self.ringing_pairs
            .insert((me, callee.user_id), call_id.to_string());
        fx.timers.push(Timer::RingTimeout {
            call_id: call_id.to_string(),
        });
        Ok(fx)
    }

    /// An endpoint is busy when it is in an answered call or placing one.
    fn endpoint_busy(&self, user: UserId, endpoint: &str, d: &Endpoint) -> bool {
        d.calls.iter().any(|id| {
            self.calls.get(id).is_some_and(|c| {
                c.phase == Phase::Active || (c.caller == user && c.caller_endpoint == endpoint)
            })
        })
    }

    /// Looks up a call for a party request; refuses foreign and unknown calls
    /// alike with `not_found`, ended ones with `call_state`.
    fn party_call(&self, call_id: &str, me: UserId) -> Result<&Call, HubError> {
        match self.calls.get(call_id) {
            Some(c) if c.caller == me || c.callee == me || c.offered_to(me) => Ok(c),
            Some(_) => Err(err(ErrorCode::NotFound, "no such call")),
            None => match self.ended.get(call_id) {
                Some(e) if e.caller == me || e.callee == me => {
                    Err(err(ErrorCode::CallState, "the call has already ended"))
                }
                _ => Err(err(ErrorCode::NotFound, "no such call")),
            },
        }
    }

    /// `call.ringing` from a rung callee endpoint: records `ringing_at_ms` and
    /// tells the calling endpoint, once per call; later ones do nothing.
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, or this endpoint is not rung).
    pub fn ringing(&mut self, conn: ConnId, call_id: &str, now_ms: u64) -> HubResult {
        let (me, ep) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.queue.is_some() && call.phase == Phase::Ringing {
            return self.offer_ringing(call_id, me, &ep, now_ms);
        }
        if call.callee != me || !call.rung_endpoints.contains(&ep) {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint is not ringing for the call",
            ));
        }
        let mut fx = Effects::default();
        if call.ringing_told {
            return Ok(fx);
        }
        let (caller, caller_endpoint) = (call.caller, call.caller_endpoint.clone());
        let seq = self.record(
            &mut fx,
            CdrWrite::Ringing {
                call_id: call_id.to_string(),
                at_ms: now_ms,
            },
        );
        if let Some(c) = self.calls.get_mut(call_id) {
            c.ringing_told = true;
        }
        let msg = ServerMessage::Ringing {
            call_id: call_id.to_string(),
        };
        self.send(&mut fx, caller, &caller_endpoint, &msg, seq);
        Ok(fx)
    }

    /// `call.accept` from a rung callee endpoint: the first accept wins. The
    /// caller gets the SDP answer, this endpoint a confirmation, the callee's
    /// other rung endpoints `call.answered_elsewhere` (terminal for them).
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, not the callee, already answered,
    /// not rung); `invalid_value` (SDP size).
    pub fn accept(&mut self, conn: ConnId, call_id: &str, sdp: String, now_ms: u64) -> HubResult {
        let (me, ep) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.queue.is_some() && call.phase == Phase::Ringing {
            let r = self.accept_offer(call_id, me, &ep, sdp, now_ms);
            return self.settled(r, now_ms);
        }
        if call.callee != me {
            return Err(err(ErrorCode::CallState, "only the callee can accept"));
        }
        if call.phase == Phase::Active {
            return Err(err(ErrorCode::CallState, "the call is already answered"));
        }
        if !call.rung_endpoints.contains(&ep) {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint was not rung for the call",
            ));
        }
        check_sdp(&sdp)?;
        let mut fx = Effects::default();
        let seq = self.record(
            &mut fx,
            CdrWrite::Answered {
                call_id: call_id.to_string(),
                endpoint: ep.clone(),
                agent: None,
                at_ms: now_ms,
            },
        );
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(err(ErrorCode::NotFound, "no such call"));
        };
        call.phase = Phase::Active;
        call.answered_endpoint = Some(ep.clone());
        call.offer = String::new();
        // Ringing became talking: queues and supervisors hear it.
        self.dirty.insert(me);
        let others: Vec<String> = call.rung_endpoints.drain(..).filter(|d| *d != ep).collect();
        let (caller, caller_endpoint) = (call.caller, call.caller_endpoint.clone());
        self.forget_ringing_pair(caller, me, call_id);
        let to_caller = ServerMessage::Accepted {
            call_id: call_id.to_string(),
            sdp: Some(sdp),
            device_id: ep.clone(),
        };
        self.send(&mut fx, caller, &caller_endpoint, &to_caller, seq);
        let to_me = ServerMessage::Accepted {
            call_id: call_id.to_string(),
            sdp: None,
            device_id: ep.clone(),
        };
        self.send(&mut fx, me, &ep, &to_me, seq);
        let elsewhere = ServerMessage::AnsweredElsewhere {
            call_id: call_id.to_string(),
            device_id: ep.clone(),
        };
        for d in others {
            self.send(&mut fx, me, &d, &elsewhere, seq);
            self.endpoint_leaves_call(me, &d, call_id);
            self.drop_endpoint_if_idle(&mut fx, me, &d);
        }
        Ok(fx)
    }

    /// `call.reject` from a rung callee endpoint: ends the call on every
    /// endpoint with the given reason, `ended_by` the callee.
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, the caller, answered, not rung).
    pub fn reject(
        &mut self,
        conn: ConnId,
        call_id: &str,
        reason: RejectReason,
        now_ms: u64,
    ) -> HubResult {
        let (me, ep) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.offered_to(me) {
            let r = self.decline_offer(call_id, me, &ep, now_ms);
            return self.settled(r, now_ms);
        }
        if call.callee != me {
            return Err(err(
                ErrorCode::CallState,
                "only the callee can reject; cancel instead",
            ));
        }
        if call.phase == Phase::Active {
            return Err(err(
                ErrorCode::CallState,
                "the call is answered; hang up instead",
            ));
        }
        if !call.rung_endpoints.contains(&ep) {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint was not rung for the call",
            ));
        }
        let reason = match reason {
            RejectReason::Rejected => EndReason::Rejected,
            RejectReason::Busy => EndReason::Busy,
            RejectReason::Incompatible => EndReason::Incompatible,
        };
        let mut fx = Effects::default();
        self.end_call(&mut fx, call_id, reason, Some(me), now_ms);
        self.settle(&mut fx, now_ms);
        Ok(fx)
    }

    /// `call.cancel` from the calling endpoint while ringing: ends the call as
    /// `cancelled`.
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, not the calling endpoint, answered).
    pub fn cancel(&mut self, conn: ConnId, call_id: &str, now_ms: u64) -> HubResult {
        let (me, ep) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.caller != me || call.caller_endpoint != ep {
            return Err(err(
                ErrorCode::CallState,
                "only the calling endpoint can cancel",
            ));
        }
        if call.phase == Phase::Active {
            return Err(err(
                ErrorCode::CallState,
                "the call is answered; hang up instead",
            ));
        }
        let mut fx = Effects::default();
        self.end_call(&mut fx, call_id, EndReason::Cancelled, Some(me), now_ms);
        self.settle(&mut fx, now_ms);
        Ok(fx)
    }

    /// `call.hangup` from a party endpoint. While answered it ends the call as
    /// `completed` (or as `why` says); while ringing it cancels (calling
    /// endpoint) or rejects (a rung endpoint).
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, or this endpoint is not in the call).
    pub fn hangup(
        &mut self,
        conn: ConnId,
        call_id: &str,
        why: Option<HangupReason>,
        now_ms: u64,
    ) -> HubResult {
        let (me, ep) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        let is_caller = call.caller == me && call.caller_endpoint == ep;
        if !is_caller && call.offered_to(me) {
            let r = self.decline_offer(call_id, me, &ep, now_ms);
            return self.settled(r, now_ms);
        }
        let reason = match call.phase {
            Phase::Active
                if is_caller || call.answered_endpoint.as_deref() == Some(ep.as_str()) =>
            {
                why.map_or(EndReason::Completed, HangupReason::end_reason)
            }
            Phase::Ringing if is_caller => EndReason::Cancelled,
            Phase::Ringing if call.callee == me && call.rung_endpoints.contains(&ep) => {
                EndReason::Rejected
            }
            _ => {
                return Err(err(
                    ErrorCode::CallState,
                    "this endpoint is not in the call",
                ));
            }
        };
        let mut fx = Effects::default();
        self.end_call(&mut fx, call_id, reason, Some(me), now_ms);
        self.settle(&mut fx, now_ms);
        Ok(fx)
    }

    /// The endpoint on the other end of a call from `(me, ep)`: for the caller,
    /// the answering endpoint (or every rung endpoint while ringing); for the
    /// answering endpoint, the caller's.
    fn peers(
        &self,
        call_id: &str,
        me: UserId,
        ep: &str,
        need_active: bool,
    ) -> Result<(UserId, Vec<String>), HubError> {
        let call = self.party_call(call_id, me)?;
        if need_active && call.phase != Phase::Active {
            return Err(err(ErrorCode::CallState, "the call is not answered yet"));
        }
        if call.caller == me && call.caller_endpoint == ep {
            let targets = match &call.answered_endpoint {
                Some(d) => vec![d.clone()],
                None => call.rung_endpoints.clone(),
            };
            Ok((call.callee, targets))
        } else if call.callee == me && call.answered_endpoint.as_deref() == Some(ep) {
            Ok((call.caller, vec![call.caller_endpoint.clone()]))
        } else {
            Err(err(
                ErrorCode::CallState,
                "this endpoint is not in the call",
            ))
        }
    }

    /// `ice.candidate`: relays a trickled candidate (RFC 8838) to the other
    /// party's endpoint(s), unheld.
    ///
    /// # Errors
    /// `not_found`; `call_state` (ended, or not in the call, which includes
    /// a rung endpoint before its accept).
    pub fn candidate(
        &mut self,
        conn: ConnId,
        call_id: &str,
        candidate: Option<IceCandidate>,
    ) -> HubResult {
        let (me, ep) = self.me(conn)?;
        if let Some(fx) = self.queue_candidate(call_id, me, &ep, &candidate) {
            return Ok(fx);
        }
        let (peer, endpoints) = self.peers(call_id, me, &ep, false)?;
        let text = ServerMessage::Candidate {
            call_id: call_id.to_string(),
            candidate,
        }
        .to_json();
        let mut fx = Effects::default();
        for d in endpoints {
            self.send_text(&mut fx, peer, &d, &text, 0);
        }
        Ok(fx)
    }

    /// `call.update`: relays a re-offer or answer (RFC 3264) during an
    /// answered call, unheld.
    ///
    /// # Errors
    /// `invalid_value` (SDP size, checked first); `not_found`; `call_state`
    /// (ended, not answered yet, not in the call).
    pub fn update(&mut self, conn: ConnId, call_id: &str, kind: SdpKind, sdp: String) -> HubResult {
        let (me, ep) = self.me(conn)?;
        check_sdp(&sdp)?;
        let (peer, endpoints) = self.peers(call_id, me, &ep, true)?;
        let msg = ServerMessage::Update {
            call_id: call_id.to_string(),
            kind,
            sdp,
        };
        let mut fx = Effects::default();
        for d in endpoints {
            self.send(&mut fx, peer, &d, &msg, 0);
        }
        Ok(fx)
    }

    /// `call.stats`: records a party's quality summary, during the call or
    /// within 5 minutes of its end. Nothing is sent back.
    ///
    /// # Errors
    /// `invalid_value` (a figure out of range); `not_found` (not a party,
    /// unknown, or forgotten).
    pub fn stats(
        &mut self,
        conn: ConnId,
        call_id: &str,
        quality: CallQuality,
        now_ms: u64,
    ) -> HubResult {
        let (me, _) = self.me(conn)?;
        if let Some(field) = quality.out_of_range() {
            return Err(err(
                ErrorCode::InvalidValue,
                format!("`{field}` is out of range"),
            ));
        }
        let party = match (self.calls.get(call_id), self.ended.get(call_id)) {
            (Some(c), _) => c.caller == me || c.callee == me,
            (None, Some(e)) => e.caller == me || e.callee == me,
            (None, None) => false,
        };
        if !party {
            return Err(err(
                ErrorCode::NotFound,
                "no such call (or ended over 5 minutes ago)",
            ));
        }
        let mut fx = Effects::default();
        self.record(
            &mut fx,
            CdrWrite::Quality {
                call_id: call_id.to_string(),
                user_id: me,
                quality,
                at_ms: now_ms,
            },
        );
        Ok(fx)
    }

    /// `presence.set`: changes my availability and tells my tenant (even
    /// when it did not change).
    ///
    /// # Errors
    /// `invalid_value` for a status that cannot be set
    /// ([`Presence::can_be_set`]: `offline`).
    pub fn set_presence(&mut self, conn: ConnId, status: Presence, now_ms: u64) -> HubResult {
        let (me, _) = self.me(conn)?;
        if !status.can_be_set() {
            return Err(err(
                ErrorCode::InvalidValue,
                "offline cannot be set; disconnect instead",
            ));
        }
        if let Some(u) = self.users.get_mut(&me) {
            if status == Presence::Available && u.presence != Presence::Available {
                u.available_since = now_ms;
            }
            u.presence = status;
        }
        let mut fx = Effects::default();
        self.broadcast_presence(&mut fx, me);
        self.dirty.insert(me);
        self.settle(&mut fx, now_ms);
        Ok(fx)
    }

    /// Ends a call: CDR, terminal frame to every endpoint in it, cleanup.
    fn end_call(
        &mut self,
        fx: &mut Effects,
        call_id: &str,
        reason: EndReason,
        by: Option<UserId>,
        now_ms: u64,
    ) {
        self.end_call_with(fx, call_id, reason, by, None, now_ms);
    }

    /// [`Self::end_call`] with words for the caller in `call.ended`. A queue
    /// call whose caller gives up before an answer ends `abandoned`; its
    /// offers are withdrawn, and an answered one starts its agent's
    /// wrap-up.
    fn end_call_with(
        &mut self,
        fx: &mut Effects,
        call_id: &str,
        reason: EndReason,
        by: Option<UserId>,
        message: Option<String>,
        now_ms: u64,
    ) {
        let Some(mut call) = self.calls.remove(call_id) else {
            return;
        };
        let reason = match (&call.queue, call.phase, reason) {
            (Some(_), Phase::Ringing, EndReason::Cancelled) => EndReason::Abandoned,
            _ => reason,
        };
        if let Some(leg) = call.queue.take() {
            self.queue_call_ends(fx, call_id, &call, leg, reason, now_ms);
        }
        self.forget_ringing_pair(call.caller, call.callee, call_id);
        let end = CdrWrite::Ended {
            call_id: call_id.to_string(),
            at_ms: now_ms,
            reason,
            by,
        };
        self.live_call_events(fx, &call, &end);
        let seq = self.record(fx, end);
        let by_name = by.and_then(|u| {
            if u == call.caller {
                Some(call.caller_ref.user.clone())
            } else if u == call.callee {
                Some(call.callee_ref.user.clone())
            } else {
                None
            }
        });
        let to_caller = match reason {
            EndReason::Rejected | EndReason::Busy => ServerMessage::Rejected {
                call_id: call_id.to_string(),
                reason,
            },
            EndReason::Incompatible if call.phase == Phase::Ringing => ServerMessage::Rejected {
                call_id: call_id.to_string(),
                reason,
            },
            _ => ServerMessage::Ended {
                call_id: call_id.to_string(),
                reason,
                by: by_name.clone(),
                message,
            },
        };
        let ended = ServerMessage::Ended {
            call_id: call_id.to_string(),
            reason,
            by: by_name,
            message: None,
        };
        self.send(fx, call.caller, &call.caller_endpoint, &to_caller, seq);
        self.endpoint_leaves_call(call.caller, &call.caller_endpoint, call_id);
        self.drop_endpoint_if_idle(fx, call.caller, &call.caller_endpoint);
        let callee_endpoints: Vec<String> = call
            .answered_endpoint
            .iter()
            .cloned()
            .chain(call.rung_endpoints.iter().cloned())
            .collect();
        for d in callee_endpoints {
            self.send(fx, call.callee, &d, &ended, seq);
            self.endpoint_leaves_call(call.callee, &d, call_id);
            self.drop_endpoint_if_idle(fx, call.callee, &d);
        }
        self.ended.insert(
            call_id.to_string(),
            Ended {
                caller: call.caller,
                callee: call.callee,
            },
        );
        self.ended_order.push_back((now_ms, call_id.to_string()));
    }

    /// Forgets calls that ended 5 minutes or more before `now_ms`.
    pub fn prune_ended(&mut self, now_ms: u64) {
        while self
            .ended_order
            .front()
            .is_some_and(|(at, _)| now_ms.saturating_sub(*at) >= ENDED_MEMORY_MS)
        {
            if let Some((_, id)) = self.ended_order.pop_front() {
                self.ended.remove(&id);
            }
        }
    }

    /// Closes every socket with 1012 (server shutting down).
    pub fn close_all(&self) -> Effects {
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        Effects {
            frames: conns
                .into_iter()
                .map(|c| {
                    let cmd = ConnCmd::Close(close_code::SERVICE_RESTART, "server shutting down");
                    (c, cmd)
                })
                .collect(),
            ..Effects::default()
        }
    }

    /// Numbers a CDR write and adds it to the effects; returns its number.
    /// The call events it stands for go to supervisors too, for a call in
    /// the call table (an ended call has left it: [`Self::end_call_with`]
    /// tells its end itself).
    fn record(&mut self, fx: &mut Effects, write: CdrWrite) -> u64 {
        if let Some(call) = supervisor::call_of(&write).and_then(|id| self.calls.get(id)) {
            self.live_call_events(fx, call, &write);
        }
        self.cdr_seq += 1;
        fx.cdr.push((self.cdr_seq, write));
        self.cdr_seq
    }

    fn forget_ringing_pair(&mut self, caller: UserId, callee: UserId, call_id: &str) {
        if self
            .ringing_pairs
            .get(&(caller, callee))
            .is_some_and(|id| id == call_id)
        {
            self.ringing_pairs.remove(&(caller, callee));
        }
    }

    /// Stops ringing endpoint `(user, endpoint)` with call `call_id`; the call
    /// ends `unavailable` when that was its last rung endpoint.
    fn stop_ringing(
        &mut self,
        fx: &mut Effects,
        call_id: &str,
        user: UserId,
        endpoint: &str,
        now_ms: u64,
    ) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.queue.is_some() {
            self.offer_endpoint_gone(fx, call_id, user, endpoint, now_ms);
            return;
        }
        call.rung_endpoints.retain(|d| d != endpoint);
        let empty = call.rung_endpoints.is_empty();
        self.endpoint_leaves_call(user, endpoint, call_id);
        if empty {
            self.end_call(fx, call_id, EndReason::Unavailable, None, now_ms);
        }
    }

    fn endpoint_mut(&mut self, user: UserId, endpoint: &str) -> Option<&mut Endpoint> {
        self.users
            .get_mut(&user)
            .and_then(|u| u.endpoints.get_mut(endpoint))
    }

    fn endpoint_joins_call(&mut self, user: UserId, endpoint: &str, call_id: &str) {
        if let Some(d) = self.endpoint_mut(user, endpoint) {
            d.calls.insert(call_id.to_string());
        }
        self.dirty.insert(user);
    }

    fn endpoint_leaves_call(&mut self, user: UserId, endpoint: &str, call_id: &str) {
        if let Some(d) = self.endpoint_mut(user, endpoint) {
            d.calls.remove(call_id);
        }
        self.dirty.insert(user);
    }

    /// Removes a disconnected endpoint with no calls and no kept frames left,
    /// and the user with their last endpoint (telling the tenant they are
    /// offline). An endpoint in grace keeps the `call.ended` of a call that
    /// ended while it was away until it returns or its grace runs out.
    fn drop_endpoint_if_idle(&mut self, fx: &mut Effects, user: UserId, endpoint: &str) {
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        if u.endpoints
            .get(endpoint)
            .is_some_and(|d| d.conn.is_none() && d.calls.is_empty() && d.pending.is_empty())
        {
            u.endpoints.remove(endpoint);
        }
        if !u.endpoints.is_empty() {
            return;
        }
        let Some(u) = self.users.remove(&user) else {
            return;
        };
        self.dirty.insert(user);
        self.by_name.remove(&(u.tenant, u.user.user.clone()));
        if let Some(set) = self.tenants.get_mut(&u.tenant) {
            set.remove(&user);
            if set.is_empty() {
                self.tenants.remove(&u.tenant);
            }
        }
        if u.guest {
            return;
        }
        let msg = ServerMessage::Presence {
            user: u.user,
            status: Presence::Offline,
        };
        self.broadcast(fx, u.tenant, &msg);
    }

    fn broadcast_presence(&self, fx: &mut Effects, user: UserId) {
        let Some(u) = self.users.get(&user).filter(|u| !u.guest) else {
            return;
        };
        let msg = ServerMessage::Presence {
            user: u.user.clone(),
            status: u.presence,
        };
        self.broadcast(fx, u.tenant, &msg);
    }

    /// Queues a frame to every connected endpoint of a tenant (not kept for
    /// endpoints in grace).
    fn broadcast(&self, fx: &mut Effects, tenant: TenantId, msg: &ServerMessage) {
        let Some(members) = self.tenants.get(&tenant) else {
            return;
        };
        let text = msg.to_json();
        let mut conns: Vec<ConnId> = members
            .iter()
            .filter_map(|uid| self.users.get(uid))
            .filter(|u| !u.guest)
            .flat_map(|u| u.endpoints.values())
            .filter_map(|d| d.conn)
            .collect();
        conns.sort_unstable();
        for c in conns {
            let o = Outbound {
                text: text.clone(),
                after_seq: 0,
            };
            fx.frames.push((c, ConnCmd::Frame(o)));
        }
    }

    fn send(
        &mut self,
        fx: &mut Effects,
        user: UserId,
        endpoint: &str,
        msg: &ServerMessage,
        after_seq: u64,
    ) {
        let text = msg.to_json();
        self.send_text(fx, user, endpoint, &text, after_seq);
    }

    /// Queues a frame to an endpoint: to its socket, or kept for its return
    /// while it is in reconnect grace (at most [`PENDING_LIMIT`]).
    fn send_text(
        &mut self,
        fx: &mut Effects,
        user: UserId,
        endpoint: &str,
        text: &str,
        after_seq: u64,
    ) {
        let Some(d) = self.endpoint_mut(user, endpoint) else {
            return;
        };
        let o = Outbound {
            text: text.to_string(),
            after_seq,
        };
        match d.conn {
            Some(c) => fx.frames.push((c, ConnCmd::Frame(o))),
            None if d.pending.len() < PENDING_LIMIT => d.pending.push(o),
            None => tracing::debug!(user, endpoint, "pending frames full; dropping one"),
        }
    }
}

fn frame(msg: &ServerMessage, after_seq: u64) -> ConnCmd {
    ConnCmd::Frame(Outbound {
        text: msg.to_json(),
        after_seq,
    })
}

/// The checks every `call.invite` passes first: the call id's shape, then
/// the SDP offer's size.
fn check_invite(call_id: &str, sdp: &str) -> Result<(), HubError> {
    if !valid_call_id(call_id) {
        return Err(err(
            ErrorCode::InvalidValue,
            "call_id must be 1–64 characters of A–Z a–z 0–9 - _",
        ));
    }
    check_sdp(sdp)
}

fn check_sdp(sdp: &str) -> Result<(), HubError> {
    if sdp.is_empty() || sdp.len() > MAX_SDP_BYTES {
        return Err(err(
            ErrorCode::InvalidValue,
            format!("sdp must be 1–{MAX_SDP_BYTES} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
