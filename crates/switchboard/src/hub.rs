//! The routing core: who is connected on which device, which calls exist and
//! in what phase, and who must hear about each change.
//!
//! The hub is synchronous and holds no IO: socket tasks call its methods under
//! one mutex with the current time; it queues frames to connection channels
//! (never blocking: a full queue kills the slow connection), queues CDR
//! writes in the order the state changed, and returns the timers the caller
//! must arm (ring timeout, reconnect grace).
//!
//! Frames that follow a CDR write carry that write's sequence number, and a
//! connection's writer holds them until the write is committed: a client
//! never hears of a state change that a crash could still lose.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use softphone_protocol::{
    CallPhase, CallQuality, CallSummary, EndReason, ErrorCode, IceCandidate, IceServer,
    MAX_SDP_BYTES, PROTOCOL_VERSION, Presence, RejectReason, HangupReason, SdpKind, ServerMessage, UserRef,
    close_code, valid_call_id,
};
use tokio::sync::{Notify, mpsc};

use crate::metrics::Metrics;
use crate::store::{AuthedUser, Callee, CdrQueue, CdrWrite, TenantId, UserId};

/// Identifies one authenticated socket.
pub type ConnId = u64;

/// How long an ended call is remembered, so that late `call.stats` and
/// duplicate hang-ups get a precise answer: 5 minutes.
const ENDED_MEMORY_MS: u64 = 5 * 60 * 1000;

/// Frames kept for a device whose socket dropped, until it reconnects.
const PENDING_LIMIT: usize = 128;

/// A frame queued to a connection, released once CDR write `after_seq` is
/// committed (0: at once).
#[derive(Debug)]
pub struct Outbound {
    /// The JSON text.
    pub text: String,
    /// CDR sequence number to wait for.
    pub after_seq: u64,
}

/// What a connection's writer task receives.
#[derive(Debug)]
pub enum ConnCmd {
    /// Send a frame.
    Frame(Outbound),
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

/// The hub's way to reach a connection's writer.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// Bounded queue to the writer task.
    pub tx: mpsc::Sender<ConnCmd>,
    /// Notified when the queue overflowed: the writer closes with 4008.
    pub kill: Arc<Notify>,
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
    /// After the reconnect grace: [`Hub::grace_expired`].
    Grace {
        /// Whose device.
        user: UserId,
        /// Which device.
        device: String,
        /// Generation; a reconnect bumps it and voids the timer.
        generation: u64,
    },
}

/// Result of a hub operation: timers to arm, or a refusal.
pub type HubResult = Result<Vec<Timer>, HubError>;

struct Conn {
    user: UserId,
    device: String,
    handle: ConnHandle,
}

#[derive(Default)]
struct Device {
    conn: Option<ConnId>,
    calls: HashSet<String>,
    pending: Vec<ConnCmd>,
    generation: u64,
}

struct OnlineUser {
    tenant: TenantId,
    user: UserRef,
    presence: Presence,
    devices: HashMap<String, Device>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Active,
}

struct Call {
    tenant: TenantId,
    caller: UserId,
    caller_device: String,
    callee: UserId,
    callee_ref: UserRef,
    caller_ref: UserRef,
    ringing: Vec<String>,
    answered: Option<String>,
    phase: Phase,
    ringing_told: bool,
    /// The SDP offer, kept while ringing so that a rung device whose socket
    /// was replaced can be rung again.
    offer: String,
}

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
pub struct Hub {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<UserId, OnlineUser>,
    by_name: HashMap<(TenantId, String), UserId>,
    tenants: HashMap<TenantId, HashSet<UserId>>,
    calls: HashMap<String, Call>,
    ringing_pairs: HashMap<(UserId, UserId), String>,
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<(u64, String)>,
    cdr: CdrQueue,
    metrics: Arc<Metrics>,
    next_conn: ConnId,
}

impl Hub {
    /// An empty hub writing CDRs to `cdr`.
    pub fn new(cdr: CdrQueue, metrics: Arc<Metrics>) -> Self {
        Self {
            conns: HashMap::new(),
            users: HashMap::new(),
            by_name: HashMap::new(),
            tenants: HashMap::new(),
            calls: HashMap::new(),
            ringing_pairs: HashMap::new(),
            ended: HashMap::new(),
            ended_order: VecDeque::new(),
            cdr,
            metrics,
            next_conn: 1,
        }
    }

    /// A fresh connection id.
    pub fn next_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    /// Number of authenticated connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
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

    /// A user's presence: their set status while a device is connected (or in
    /// grace), `offline` otherwise.
    pub fn presence_of(&self, user: UserId) -> Presence {
        self.users
            .get(&user)
            .map_or(Presence::Offline, |u| u.presence)
    }

    /// Registers an authenticated socket for `who` on `device_id`, sends it
    /// `welcome` (listing calls the device is part of) and any frames kept
    /// while it was away. A previous socket of the same device is closed
    /// with 4002 (replaced).
    pub fn attach(
        &mut self,
        conn: ConnId,
        handle: ConnHandle,
        who: &AuthedUser,
        device_id: &str,
        parts: WelcomeParts,
    ) {
        let uid = who.user_id;
        let new_user = !self.users.contains_key(&uid);
        if new_user {
            self.users.insert(
                uid,
                OnlineUser {
                    tenant: who.tenant_id,
                    user: who.user.clone(),
                    presence: Presence::Available,
                    devices: HashMap::new(),
                },
            );
            self.by_name
                .insert((who.tenant_id, who.user.user.clone()), uid);
            self.tenants.entry(who.tenant_id).or_default().insert(uid);
        }
        let user = self.users.get_mut(&uid).expect("just inserted");
        let presence = user.presence;
        let device = user.devices.entry(device_id.to_string()).or_default();
        if let Some(old) = device.conn.take()
            && let Some(old) = self.conns.remove(&old)
        {
            self.metrics.connections.dec();
            push(
                &old.handle,
                ConnCmd::Close(close_code::REPLACED, "replaced by a newer connection"),
                &self.metrics,
            );
        }
        device.generation += 1;
        device.conn = Some(conn);
        let pending = std::mem::take(&mut device.pending);
        let call_ids: Vec<String> = device.calls.iter().cloned().collect();
        let calls = call_ids
            .iter()
            .filter_map(|id| {
                let c = self.calls.get(id)?;
                let outgoing = c.caller == uid && c.caller_device == device_id;
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
        // A rung device that came back is rung again: its new socket has not
        // seen the offer.
        let rering: Vec<String> = call_ids
            .iter()
            .filter_map(|id| {
                let c = self.calls.get(id)?;
                let rung = c.phase == Phase::Ringing
                    && c.callee == uid
                    && c.ringing.iter().any(|d| d == device_id);
                rung.then(|| {
                    ServerMessage::Incoming {
                        call_id: id.clone(),
                        from: c.caller_ref.clone(),
                        sdp: c.offer.clone(),
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
            device_id: device_id.to_string(),
            presence,
            ice_servers: parts.ice_servers,
            heartbeat_ms: parts.heartbeat_ms,
            calls,
        };
        push(&handle, frame(&welcome, 0), &self.metrics);
        for cmd in pending {
            push(&handle, cmd, &self.metrics);
        }
        for text in rering {
            let cmd = ConnCmd::Frame(Outbound { text, after_seq: 0 });
            push(&handle, cmd, &self.metrics);
        }
        self.conns.insert(
            conn,
            Conn {
                user: uid,
                device: device_id.to_string(),
                handle,
            },
        );
        self.metrics.connections.inc();
        if new_user {
            self.broadcast_presence(uid);
        }
    }

    /// Forgets a socket that closed. Calls its device placed or answered get
    /// a reconnect grace period (a [`Timer::Grace`] to arm); a device that
    /// was only being rung stops ringing.
    pub fn detach(&mut self, conn: ConnId) -> Vec<Timer> {
        let Some(c) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        self.metrics.connections.dec();
        let Some(device) = self
            .users
            .get_mut(&c.user)
            .and_then(|u| u.devices.get_mut(&c.device))
        else {
            return Vec::new();
        };
        device.conn = None;
        let ids: Vec<String> = device.calls.iter().cloned().collect();
        let mut stop_ringing = Vec::new();
        for id in ids {
            if let Some(call) = self.calls.get(&id)
                && call.phase == Phase::Ringing
                && !(call.caller == c.user && call.caller_device == c.device)
            {
                stop_ringing.push(id);
            }
        }
        for id in stop_ringing {
            if let Some(call) = self.calls.get_mut(&id) {
                call.ringing.retain(|d| *d != c.device);
                let empty = call.ringing.is_empty();
                self.device_leaves_call(c.user, &c.device, &id);
                if empty {
                    self.end_call(&id, EndReason::Unavailable, None);
                }
            }
        }
        let Some(device) = self
            .users
            .get_mut(&c.user)
            .and_then(|u| u.devices.get_mut(&c.device))
        else {
            return Vec::new();
        };
        if device.calls.is_empty() {
            self.drop_device_if_idle(c.user, &c.device);
            Vec::new()
        } else {
            device.generation += 1;
            vec![Timer::Grace {
                user: c.user,
                device: c.device,
                generation: device.generation,
            }]
        }
    }

    /// The reconnect grace of a device ran out: if it did not come back, its
    /// calls end as `failed`.
    pub fn grace_expired(&mut self, user: UserId, device: &str, generation: u64) {
        let Some(d) = self.users.get(&user).and_then(|u| u.devices.get(device)) else {
            return;
        };
        if d.conn.is_some() || d.generation != generation {
            return;
        }
        let ids: Vec<String> = d.calls.iter().cloned().collect();
        for id in ids {
            self.end_call(&id, EndReason::Failed, None);
        }
        if let Some(d) = self
            .users
            .get_mut(&user)
            .and_then(|u| u.devices.get_mut(device))
        {
            d.pending.clear();
        }
        self.drop_device_if_idle(user, device);
    }

    /// The ring timeout of a call ran out: if still ringing, it ends as
    /// `no_answer`.
    pub fn ring_timeout(&mut self, call_id: &str) {
        if self
            .calls
            .get(call_id)
            .is_some_and(|c| c.phase == Phase::Ringing)
        {
            self.end_call(call_id, EndReason::NoAnswer, None);
        }
    }

    fn me(&self, conn: ConnId) -> Result<(UserId, String), HubError> {
        self.conns
            .get(&conn)
            .map(|c| (c.user, c.device.clone()))
            .ok_or_else(|| err(ErrorCode::Internal, "connection not registered"))
    }

    /// `call.invite` from `conn` to `callee` (already resolved within the
    /// caller's tenant; `None` when no such user).
    pub fn invite(
        &mut self,
        conn: ConnId,
        call_id: &str,
        to: &str,
        callee: Option<Callee>,
        sdp: String,
    ) -> HubResult {
        let (me, my_device) = self.me(conn)?;
        if !valid_call_id(call_id) {
            return Err(err(
                ErrorCode::InvalidValue,
                "call_id must be 1–64 characters of A–Z a–z 0–9 - _",
            ));
        }
        check_sdp(&sdp)?;
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
        let caller = &self.users[&me];
        let call = Call {
            tenant: caller.tenant,
            caller: me,
            caller_device: my_device.clone(),
            callee: callee.user_id,
            callee_ref: callee.user.clone(),
            caller_ref: caller.user.clone(),
            ringing: Vec::new(),
            answered: None,
            phase: Phase::Ringing,
            ringing_told: false,
            offer: String::new(),
        };
        let now = crate::now_ms();
        let created = self.cdr.push(CdrWrite::Created {
            call_id: call_id.to_string(),
            tenant_id: call.tenant,
            caller_id: me,
            callee_id: callee.user_id,
            caller_device: my_device.clone(),
            at_ms: now,
        });
        let from = call.caller_ref.clone();
        self.calls.insert(call_id.to_string(), call);
        self.metrics.calls_active.inc();
        self.device_joins_call(me, &my_device, call_id);

        let Some(target) = self.users.get(&callee.user_id) else {
            self.end_call(call_id, EndReason::Unavailable, None);
            return Ok(Vec::new());
        };
        if target.presence == Presence::Dnd {
            self.end_call(call_id, EndReason::Busy, Some(callee.user_id));
            return Ok(Vec::new());
        }
        let connected: Vec<&String> = target
            .devices
            .iter()
            .filter(|(_, d)| d.conn.is_some())
            .map(|(id, _)| id)
            .collect();
        if connected.is_empty() {
            self.end_call(call_id, EndReason::Unavailable, None);
            return Ok(Vec::new());
        }
        let free: Vec<String> = target
            .devices
            .iter()
            .filter(|(id, d)| d.conn.is_some() && !self.device_busy(callee.user_id, id, d))
            .map(|(id, _)| id.clone())
            .collect();
        if free.is_empty() {
            self.end_call(call_id, EndReason::Busy, None);
            return Ok(Vec::new());
        }
        let incoming = ServerMessage::Incoming {
            call_id: call_id.to_string(),
            from,
            sdp,
        };
        let text = incoming.to_json();
        for d in &free {
            self.device_joins_call(callee.user_id, d, call_id);
            self.send_text(callee.user_id, d, &text, created);
        }
        if let Some(c) = self.calls.get_mut(call_id) {
            c.ringing = free;
            if let ServerMessage::Incoming { sdp, .. } = incoming {
                c.offer = sdp;
            }
        }
        self.ringing_pairs
            .insert((me, callee.user_id), call_id.to_string());
        Ok(vec![Timer::RingTimeout {
            call_id: call_id.to_string(),
        }])
    }

    /// A device is busy when it is in an answered call or placing one.
    fn device_busy(&self, user: UserId, device: &str, d: &Device) -> bool {
        d.calls.iter().any(|id| {
            self.calls.get(id).is_some_and(|c| {
                c.phase == Phase::Active || (c.caller == user && c.caller_device == device)
            })
        })
    }

    /// Looks up a call for a party request; refuses foreign and unknown calls
    /// alike with `not_found`, ended ones with `call_state`.
    fn party_call(&self, call_id: &str, me: UserId) -> Result<&Call, HubError> {
        match self.calls.get(call_id) {
            Some(c) if c.caller == me || c.callee == me => Ok(c),
            Some(_) => Err(err(ErrorCode::NotFound, "no such call")),
            None => match self.ended.get(call_id) {
                Some(e) if e.caller == me || e.callee == me => {
                    Err(err(ErrorCode::CallState, "the call has already ended"))
                }
                _ => Err(err(ErrorCode::NotFound, "no such call")),
            },
        }
    }

    /// `call.ringing` from a rung callee device: tells the caller once.
    pub fn ringing(&mut self, conn: ConnId, call_id: &str) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.callee != me || !call.ringing.contains(&dev) {
            return Err(err(
                ErrorCode::CallState,
                "this device is not ringing for the call",
            ));
        }
        if call.ringing_told {
            return Ok(Vec::new());
        }
        let (caller, caller_device) = (call.caller, call.caller_device.clone());
        let seq = self.cdr.push(CdrWrite::Ringing {
            call_id: call_id.to_string(),
            at_ms: crate::now_ms(),
        });
        if let Some(c) = self.calls.get_mut(call_id) {
            c.ringing_told = true;
        }
        let msg = ServerMessage::Ringing {
            call_id: call_id.to_string(),
        };
        self.send(caller, &caller_device, &msg, seq);
        Ok(Vec::new())
    }

    /// `call.accept` from a rung callee device: the first accept wins.
    pub fn accept(&mut self, conn: ConnId, call_id: &str, sdp: String) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.callee != me {
            return Err(err(ErrorCode::CallState, "only the callee can accept"));
        }
        if call.phase == Phase::Active {
            return Err(err(ErrorCode::CallState, "the call is already answered"));
        }
        if !call.ringing.contains(&dev) {
            return Err(err(
                ErrorCode::CallState,
                "this device was not rung for the call",
            ));
        }
        check_sdp(&sdp)?;
        let seq = self.cdr.push(CdrWrite::Answered {
            call_id: call_id.to_string(),
            device: dev.clone(),
            at_ms: crate::now_ms(),
        });
        let call = self.calls.get_mut(call_id).expect("checked above");
        call.phase = Phase::Active;
        call.answered = Some(dev.clone());
        call.offer = String::new();
        let others: Vec<String> = call.ringing.drain(..).filter(|d| *d != dev).collect();
        let (caller, caller_device) = (call.caller, call.caller_device.clone());
        self.forget_ringing_pair(caller, me, call_id);
        self.send(
            caller,
            &caller_device,
            &ServerMessage::Accepted {
                call_id: call_id.to_string(),
                sdp: Some(sdp),
                device_id: dev.clone(),
            },
            seq,
        );
        self.send(
            me,
            &dev,
            &ServerMessage::Accepted {
                call_id: call_id.to_string(),
                sdp: None,
                device_id: dev.clone(),
            },
            seq,
        );
        let elsewhere = ServerMessage::AnsweredElsewhere {
            call_id: call_id.to_string(),
            device_id: dev.clone(),
        };
        for d in others {
            self.send(me, &d, &elsewhere, seq);
            self.device_leaves_call(me, &d, call_id);
            self.drop_device_if_idle(me, &d);
        }
        Ok(Vec::new())
    }

    /// `call.reject` from a rung callee device: ends the call on every device.
    pub fn reject(&mut self, conn: ConnId, call_id: &str, reason: RejectReason) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
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
        if !call.ringing.contains(&dev) {
            return Err(err(
                ErrorCode::CallState,
                "this device was not rung for the call",
            ));
        }
        let reason = match reason {
            RejectReason::Rejected => EndReason::Rejected,
            RejectReason::Busy => EndReason::Busy,
            RejectReason::Incompatible => EndReason::Incompatible,
        };
        self.end_call(call_id, reason, Some(me));
        Ok(Vec::new())
    }

    /// `call.cancel` from the caller's device while ringing.
    pub fn cancel(&mut self, conn: ConnId, call_id: &str) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        if call.caller != me || call.caller_device != dev {
            return Err(err(
                ErrorCode::CallState,
                "only the calling device can cancel",
            ));
        }
        if call.phase == Phase::Active {
            return Err(err(
                ErrorCode::CallState,
                "the call is answered; hang up instead",
            ));
        }
        self.end_call(call_id, EndReason::Cancelled, Some(me));
        Ok(Vec::new())
    }

    /// `call.hangup` from a party device. While ringing it cancels (caller)
    /// or rejects (callee).
    pub fn hangup(
        &mut self,
        conn: ConnId,
        call_id: &str,
        why: Option<HangupReason>,
    ) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let call = self.party_call(call_id, me)?;
        let is_caller = call.caller == me && call.caller_device == dev;
        let reason = match call.phase {
            Phase::Active if is_caller || call.answered.as_deref() == Some(dev.as_str()) => {
                why.map_or(EndReason::Completed, HangupReason::end_reason)
            }
            Phase::Ringing if is_caller => EndReason::Cancelled,
            Phase::Ringing if call.callee == me && call.ringing.contains(&dev) => {
                EndReason::Rejected
            }
            _ => return Err(err(ErrorCode::CallState, "this device is not in the call")),
        };
        self.end_call(call_id, reason, Some(me));
        Ok(Vec::new())
    }

    /// The device on the other end of a call from `(me, dev)`: for the caller,
    /// the answering device (or every rung device while ringing); for the
    /// answering device, the caller's.
    fn peers(
        &self,
        call_id: &str,
        me: UserId,
        dev: &str,
        need_active: bool,
    ) -> Result<(UserId, Vec<String>), HubError> {
        let call = self.party_call(call_id, me)?;
        if need_active && call.phase != Phase::Active {
            return Err(err(ErrorCode::CallState, "the call is not answered yet"));
        }
        if call.caller == me && call.caller_device == dev {
            let targets = match &call.answered {
                Some(d) => vec![d.clone()],
                None => call.ringing.clone(),
            };
            Ok((call.callee, targets))
        } else if call.callee == me && call.answered.as_deref() == Some(dev) {
            Ok((call.caller, vec![call.caller_device.clone()]))
        } else {
            Err(err(ErrorCode::CallState, "this device is not in the call"))
        }
    }

    /// `ice.candidate`: relays a trickled candidate to the other party.
    pub fn candidate(
        &mut self,
        conn: ConnId,
        call_id: &str,
        candidate: Option<IceCandidate>,
    ) -> HubResult {
        let (me, dev) = self.me(conn)?;
        let (peer, devices) = self.peers(call_id, me, &dev, false)?;
        let text = ServerMessage::Candidate {
            call_id: call_id.to_string(),
            candidate,
        }
        .to_json();
        for d in devices {
            self.send_text(peer, &d, &text, 0);
        }
        Ok(Vec::new())
    }

    /// `call.update`: relays a re-offer or answer during an answered call.
    pub fn update(&mut self, conn: ConnId, call_id: &str, kind: SdpKind, sdp: String) -> HubResult {
        let (me, dev) = self.me(conn)?;
        check_sdp(&sdp)?;
        let (peer, devices) = self.peers(call_id, me, &dev, true)?;
        let msg = ServerMessage::Update {
            call_id: call_id.to_string(),
            kind,
            sdp,
        };
        for d in devices {
            self.send(peer, &d, &msg, 0);
        }
        Ok(Vec::new())
    }

    /// `call.stats`: records a party's quality summary, during the call or
    /// within 5 minutes of its end.
    pub fn stats(&mut self, conn: ConnId, call_id: &str, quality: CallQuality) -> HubResult {
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
        self.cdr.push(CdrWrite::Quality {
            call_id: call_id.to_string(),
            user_id: me,
            quality,
            at_ms: crate::now_ms(),
        });
        Ok(Vec::new())
    }

    /// `presence.set`: changes my availability and tells my tenant.
    pub fn set_presence(&mut self, conn: ConnId, status: Presence) -> HubResult {
        let (me, _) = self.me(conn)?;
        if status == Presence::Offline {
            return Err(err(
                ErrorCode::InvalidValue,
                "offline cannot be set; disconnect instead",
            ));
        }
        if let Some(u) = self.users.get_mut(&me) {
            u.presence = status;
        }
        self.broadcast_presence(me);
        Ok(Vec::new())
    }

    /// Ends a call: CDR, terminal frame to every device in it, cleanup.
    fn end_call(&mut self, call_id: &str, reason: EndReason, by: Option<UserId>) {
        let Some(call) = self.calls.remove(call_id) else {
            return;
        };
        self.forget_ringing_pair(call.caller, call.callee, call_id);
        let seq = self.cdr.push(CdrWrite::Ended {
            call_id: call_id.to_string(),
            at_ms: crate::now_ms(),
            reason,
            by,
        });
        self.metrics.calls_active.dec();
        self.metrics
            .calls_ended
            .get_or_create(&vec![("reason", reason.as_str())])
            .inc();
        let by_name = by.and_then(|u| {
            if u == call.caller {
                Some(call.caller_ref.user.clone())
            } else if u == call.callee {
                Some(call.callee_ref.user.clone())
            } else {
                None
            }
        });
        let ended = ServerMessage::Ended {
            call_id: call_id.to_string(),
            reason,
            by: by_name,
        };
        let to_caller = match reason {
            EndReason::Rejected | EndReason::Busy => ServerMessage::Rejected {
                call_id: call_id.to_string(),
                reason,
            },
            EndReason::Incompatible if call.phase == Phase::Ringing => ServerMessage::Rejected {
                call_id: call_id.to_string(),
                reason,
            },
            _ => ended.clone(),
        };
        self.send(call.caller, &call.caller_device, &to_caller, seq);
        self.device_leaves_call(call.caller, &call.caller_device, call_id);
        self.drop_device_if_idle(call.caller, &call.caller_device);
        let callee_devices: Vec<String> = call
            .answered
            .iter()
            .cloned()
            .chain(call.ringing.iter().cloned())
            .collect();
        for d in callee_devices {
            self.send(call.callee, &d, &ended, seq);
            self.device_leaves_call(call.callee, &d, call_id);
            self.drop_device_if_idle(call.callee, &d);
        }
        self.ended.insert(
            call_id.to_string(),
            Ended {
                caller: call.caller,
                callee: call.callee,
            },
        );
        self.ended_order
            .push_back((crate::now_ms(), call_id.to_string()));
    }

    /// Forgets ended calls older than 5 minutes.
    pub fn prune_ended(&mut self, now_ms: u64) {
        while let Some((at, _)) = self.ended_order.front() {
            if now_ms.saturating_sub(*at) < ENDED_MEMORY_MS {
                break;
            }
            let (_, id) = self.ended_order.pop_front().expect("front exists");
            self.ended.remove(&id);
        }
    }

    /// Closes every socket with 1012 (server shutting down).
    pub fn close_all(&mut self) {
        for c in self.conns.values() {
            push(
                &c.handle,
                ConnCmd::Close(close_code::SERVICE_RESTART, "server shutting down"),
                &self.metrics,
            );
        }
    }

    /// Stops queueing CDR writes, so the writer can drain and end.
    pub fn close_cdr_queue(&mut self) {
        self.cdr.close();
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

    fn device_joins_call(&mut self, user: UserId, device: &str, call_id: &str) {
        if let Some(d) = self
            .users
            .get_mut(&user)
            .and_then(|u| u.devices.get_mut(device))
        {
            d.calls.insert(call_id.to_string());
        }
    }

    fn device_leaves_call(&mut self, user: UserId, device: &str, call_id: &str) {
        if let Some(d) = self
            .users
            .get_mut(&user)
            .and_then(|u| u.devices.get_mut(device))
        {
            d.calls.remove(call_id);
        }
    }

    /// Removes a disconnected device with no calls and no kept frames left,
    /// and the user with their last device (telling the tenant they are
    /// offline). A device in grace keeps the `call.ended` of a call that
    /// ended while it was away until it returns or its grace runs out.
    fn drop_device_if_idle(&mut self, user: UserId, device: &str) {
        let Some(u) = self.users.get_mut(&user) else {
            return;
        };
        if u.devices
            .get(device)
            .is_some_and(|d| d.conn.is_none() && d.calls.is_empty() && d.pending.is_empty())
        {
            u.devices.remove(device);
        }
        if u.devices.is_empty() {
            let u = self.users.remove(&user).expect("present");
            self.by_name.remove(&(u.tenant, u.user.user.clone()));
            if let Some(set) = self.tenants.get_mut(&u.tenant) {
                set.remove(&user);
                if set.is_empty() {
                    self.tenants.remove(&u.tenant);
                }
            }
            let msg = ServerMessage::Presence {
                user: u.user,
                status: Presence::Offline,
            };
            self.broadcast(u.tenant, &msg);
        }
    }

    fn broadcast_presence(&mut self, user: UserId) {
        let Some(u) = self.users.get(&user) else {
            return;
        };
        let msg = ServerMessage::Presence {
            user: u.user.clone(),
            status: u.presence,
        };
        let tenant = u.tenant;
        self.broadcast(tenant, &msg);
    }

    fn broadcast(&self, tenant: TenantId, msg: &ServerMessage) {
        let Some(members) = self.tenants.get(&tenant) else {
            return;
        };
        let text = msg.to_json();
        for uid in members {
            for d in self.users[uid].devices.values() {
                if let Some(c) = d.conn.and_then(|c| self.conns.get(&c)) {
                    push(
                        &c.handle,
                        ConnCmd::Frame(Outbound {
                            text: text.clone(),
                            after_seq: 0,
                        }),
                        &self.metrics,
                    );
                }
            }
        }
    }

    fn send(&mut self, user: UserId, device: &str, msg: &ServerMessage, after_seq: u64) {
        let text = msg.to_json();
        self.send_text(user, device, &text, after_seq);
    }

    /// Queues a frame to a device: to its socket, or kept for its return
    /// while it is in reconnect grace.
    fn send_text(&mut self, user: UserId, device: &str, text: &str, after_seq: u64) {
        let Some(d) = self
            .users
            .get_mut(&user)
            .and_then(|u| u.devices.get_mut(device))
        else {
            return;
        };
        let cmd = ConnCmd::Frame(Outbound {
            text: text.to_string(),
            after_seq,
        });
        match d.conn.and_then(|c| self.conns.get(&c)) {
            Some(c) => push(&c.handle, cmd, &self.metrics),
            None if d.pending.len() < PENDING_LIMIT => d.pending.push(cmd),
            None => tracing::debug!(user, device, "pending frames full; dropping one"),
        }
    }
}

fn frame(msg: &ServerMessage, after_seq: u64) -> ConnCmd {
    ConnCmd::Frame(Outbound {
        text: msg.to_json(),
        after_seq,
    })
}

/// Queues without blocking; a full queue means the client is not reading,
/// and its writer is told to close the socket.
fn push(handle: &ConnHandle, cmd: ConnCmd, metrics: &Metrics) {
    metrics.frames_out.inc();
    if handle.tx.try_send(cmd).is_err() {
        handle.kill.notify_one();
    }
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
