//! The routing rules of docs/protocol.md §6 (call flows) and §8.1 (terminal
//! frames), driven through the hub alone: no socket, no database, no clock,
//! no runtime. Time is whatever the test says it is.
//!
//! Every operation goes through [`World`], which parses the frames back into
//! [`ServerMessage`]s and checks what must hold after any operation: CDR
//! numbers are 1, 2, 3… in the order of the state changes, a call's first
//! write creates it and it ends at most once, frames go only to registered
//! connections (a replaced one only gets its close), and a connection hears
//! nothing more about a call after its terminal frame.

use std::collections::{BTreeMap, HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use softphone_protocol::{
    CallPhase, CallQuality, CallSummary, EndReason, ErrorCode, HangupReason, IceCandidate,
    Presence, RejectReason, SdpKind, ServerMessage, UserRef, close_code,
};

use super::{ConnCmd, ConnId, Effects, Hub, HubResult, Timer, WelcomeParts};
use crate::store::{AuthedUser, Callee, CdrWrite, TenantId, UserId};

/// Some instant, ms since the Unix epoch.
const T0: u64 = 1_700_000_000_000;
const ACME: TenantId = 1;
const GLOBEX: TenantId = 2;
const OFFER: &str = "v=0\r\ns=offer\r\n";
const ANSWER: &str = "v=0\r\ns=answer\r\n";
const RING_MS: u64 = 45_000;
const GRACE_MS: u64 = 30_000;

fn person(user_id: UserId, tenant_id: TenantId, name: &str) -> AuthedUser {
    AuthedUser {
        user_id,
        tenant_id,
        tenant: if tenant_id == ACME { "acme" } else { "globex" }.into(),
        user: UserRef {
            user: name.into(),
            display_name: format!("{name} (display)"),
        },
        token_expires_at_ms: u64::MAX,
        login_id: format!("login-{user_id}"),
        role: crate::store::Role::Agent,
    }
}

fn alice() -> AuthedUser {
    person(1, ACME, "alice")
}
fn bob() -> AuthedUser {
    person(2, ACME, "bob")
}
fn carol() -> AuthedUser {
    person(3, ACME, "carol")
}
fn dave() -> AuthedUser {
    person(4, ACME, "dave")
}
fn mallory() -> AuthedUser {
    person(9, GLOBEX, "mallory")
}

fn callee(who: &AuthedUser) -> Option<Callee> {
    Some(Callee {
        user_id: who.user_id,
        user: who.user.clone(),
    })
}

fn incoming(call_id: &str, from: &AuthedUser) -> ServerMessage {
    ServerMessage::Incoming {
        call_id: call_id.into(),
        from: from.user.clone(),
        sdp: OFFER.into(),
        queue: None,
    }
}

fn accepted(call_id: &str, sdp: Option<&str>, endpoint: &str) -> ServerMessage {
    ServerMessage::Accepted {
        call_id: call_id.into(),
        sdp: sdp.map(Into::into),
        device_id: endpoint.into(),
    }
}

fn ended(call_id: &str, reason: EndReason, by: Option<&str>) -> ServerMessage {
    ServerMessage::Ended {
        call_id: call_id.into(),
        reason,
        by: by.map(Into::into),
        message: None,
    }
}

fn rejected(call_id: &str, reason: EndReason) -> ServerMessage {
    ServerMessage::Rejected {
        call_id: call_id.into(),
        reason,
    }
}

fn elsewhere(call_id: &str, endpoint: &str) -> ServerMessage {
    ServerMessage::AnsweredElsewhere {
        call_id: call_id.into(),
        device_id: endpoint.into(),
    }
}

fn update(call_id: &str, kind: SdpKind, sdp: &str) -> ServerMessage {
    ServerMessage::Update {
        call_id: call_id.into(),
        kind,
        sdp: sdp.into(),
    }
}

fn presence(who: &AuthedUser, status: Presence) -> ServerMessage {
    ServerMessage::Presence {
        user: who.user.clone(),
        status,
    }
}

fn candidate() -> IceCandidate {
    IceCandidate {
        candidate: "candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

fn ended_write(call_id: &str, at_ms: u64, reason: EndReason, by: Option<UserId>) -> CdrWrite {
    CdrWrite::Ended {
        call_id: call_id.into(),
        at_ms,
        reason,
        by,
    }
}

fn created_write(call_id: &str, caller: &AuthedUser, to: &AuthedUser, ep: &str) -> CdrWrite {
    CdrWrite::Created {
        call_id: call_id.into(),
        tenant_id: caller.tenant_id,
        caller_id: caller.user_id,
        callee_id: to.user_id,
        caller_endpoint: ep.into(),
        at_ms: T0,
    }
}

/// Reports a timer's expiry to the hub, as the socket layer does.
fn fire(h: &mut Hub, t: Timer, now: u64) -> Effects {
    match t {
        Timer::RingTimeout { call_id } => h.ring_timeout(&call_id, now),
        Timer::Grace {
            user,
            endpoint,
            generation,
        } => h.grace_expired(user, &endpoint, generation, now),
        Timer::QueueTick { queue, at_ms } => h.queue_tick(&queue, at_ms, now),
    }
}

fn is_terminal(m: &ServerMessage) -> bool {
    matches!(
        m,
        ServerMessage::Ended { .. }
            | ServerMessage::Rejected { .. }
            | ServerMessage::AnsweredElsewhere { .. }
    )
}

/// The frames of `fx` for `conn`, parsed, with the CDR number each waits
/// for; `presence` frames left out.
fn sent(fx: &Effects, conn: ConnId) -> Vec<(ServerMessage, u64)> {
    all_sent(fx, conn)
        .into_iter()
        .filter(|(m, _)| !matches!(m, ServerMessage::Presence { .. }))
        .collect()
}

/// Like [`sent`], `presence` frames included.
fn all_sent(fx: &Effects, conn: ConnId) -> Vec<(ServerMessage, u64)> {
    fx.frames
        .iter()
        .filter(|(c, _)| *c == conn)
        .filter_map(|(_, cmd)| match cmd {
            ConnCmd::Frame(o) => Some((parse(&o.text), o.after_seq)),
            ConnCmd::Close(..) => None,
        })
        .collect()
}

/// Only the messages for `conn`, `presence` included.
fn msgs(fx: &Effects, conn: ConnId) -> Vec<ServerMessage> {
    all_sent(fx, conn).into_iter().map(|(m, _)| m).collect()
}

fn closes(fx: &Effects, conn: ConnId) -> Vec<u16> {
    fx.frames
        .iter()
        .filter_map(|(c, cmd)| match cmd {
            ConnCmd::Close(code, _) if *c == conn => Some(*code),
            _ => None,
        })
        .collect()
}

fn parse(text: &str) -> ServerMessage {
    match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => panic!("the hub sent a frame that does not parse ({e}): {text}"),
    }
}

fn code(r: HubResult) -> ErrorCode {
    match r {
        Ok(fx) => panic!("expected a refusal, got {fx:?}"),
        Err(e) => e.code,
    }
}

/// The one CDR write of `fx` that ends a call: its number and the write.
fn end_write(fx: &Effects) -> (u64, CdrWrite) {
    let ends: Vec<_> = fx
        .cdr
        .iter()
        .filter(|(_, w)| matches!(w, CdrWrite::Ended { .. }))
        .cloned()
        .collect();
    assert_eq!(ends.len(), 1, "one end write expected: {:?}", fx.cdr);
    ends[0].clone()
}

/// A hub, the time, and the checks that hold after every operation.
struct World {
    hub: Hub,
    now: u64,
    last_seq: u64,
    created: HashSet<String>,
    ended: HashSet<String>,
    terminated: HashSet<(ConnId, String)>,
    /// How many CDR writes of each kind were seen (`created`, `answered`…).
    writes: HashMap<&'static str, usize>,
    /// Every call frame each connection received, in order.
    log: BTreeMap<ConnId, Vec<ServerMessage>>,
    /// Queue timers armed and not yet fired.
    queue_timers: Vec<(super::QueueKey, u64)>,
}

impl World {
    fn new() -> Self {
        Self {
            hub: Hub::new(),
            now: T0,
            last_seq: 0,
            created: HashSet::new(),
            ended: HashSet::new(),
            terminated: HashSet::new(),
            writes: HashMap::new(),
            log: BTreeMap::new(),
            queue_timers: Vec::new(),
        }
    }

    fn later(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Runs a request; on success checks and logs its effects.
    fn op(&mut self, f: impl FnOnce(&mut Hub, u64) -> HubResult) -> HubResult {
        let before = self.hub.cdr_seq;
        let r = f(&mut self.hub, self.now);
        match &r {
            Ok(fx) => self.check(fx),
            // A refusal changes nothing, the CDR numbering included.
            Err(_) => assert_eq!(self.hub.cdr_seq, before, "a refusal wrote a CDR"),
        }
        r
    }

    /// Runs an operation that cannot be refused; checks and logs it.
    fn run(&mut self, f: impl FnOnce(&mut Hub, u64) -> Effects) -> Effects {
        let fx = f(&mut self.hub, self.now);
        self.check(&fx);
        fx
    }

    fn check(&mut self, fx: &Effects) {
        for t in &fx.timers {
            if let Timer::QueueTick { queue, at_ms } = t {
                self.queue_timers.push((queue.clone(), *at_ms));
            }
        }
        for (seq, w) in &fx.cdr {
            assert_eq!(*seq, self.last_seq + 1, "CDR numbers grow by one");
            self.last_seq = *seq;
            let kind = match w {
                CdrWrite::Created { .. } | CdrWrite::CreatedQueued { .. } => "created",
                CdrWrite::Requeued { .. } => "requeued",
                CdrWrite::Offered { .. } => "offered",
                CdrWrite::OfferEnded { .. } => "offer_ended",
                CdrWrite::Ringing { .. } => "ringing",
                CdrWrite::Answered { .. } => "answered",
                CdrWrite::Ended { .. } => "ended",
                CdrWrite::Quality { .. } => "quality",
            };
            *self.writes.entry(kind).or_default() += 1;
            match w {
                CdrWrite::Created { call_id, .. } | CdrWrite::CreatedQueued { call_id, .. } => {
                    // An id is used once; the hub alone forgets it 5 minutes
                    // after the end (the socket layer asks the store too).
                    assert!(
                        !self.created.contains(call_id) || self.ended.contains(call_id),
                        "{call_id} created while live"
                    );
                    self.created.insert(call_id.clone());
                    self.ended.remove(call_id);
                    self.terminated.retain(|(_, id)| id != call_id);
                }
                CdrWrite::Ended { call_id, .. } => {
                    assert!(
                        self.created.contains(call_id),
                        "{call_id} ended, never created"
                    );
                    assert!(self.ended.insert(call_id.clone()), "{call_id} ended twice");
                }
                CdrWrite::Ringing { call_id, .. }
                | CdrWrite::Answered { call_id, .. }
                | CdrWrite::Requeued { call_id, .. }
                | CdrWrite::Offered { call_id, .. }
                | CdrWrite::OfferEnded { call_id, .. } => {
                    assert!(self.created.contains(call_id), "{call_id} not created");
                    assert!(
                        !self.ended.contains(call_id),
                        "{call_id} changed after its end"
                    );
                }
                CdrWrite::Quality { call_id, .. } => {
                    assert!(self.created.contains(call_id), "{call_id} not created");
                }
            }
        }
        for (conn, cmd) in &fx.frames {
            let ConnCmd::Frame(o) = cmd else {
                continue;
            };
            assert!(
                self.hub.conns.contains_key(conn),
                "frame to unregistered connection {conn}: {}",
                o.text
            );
            assert!(
                o.after_seq <= self.last_seq,
                "held for a write that does not exist"
            );
            let m = parse(&o.text);
            if let Some(id) = m.call_id() {
                let key = (*conn, id.to_string());
                // A queue may offer a call again to an agent whose earlier
                // offer of it ended (a new round): that starts over.
                if matches!(m, ServerMessage::Incoming { queue: Some(_), .. }) {
                    self.terminated.remove(&key);
                }
                assert!(
                    !self.terminated.contains(&key),
                    "connection {conn} heard of {id} after its terminal frame: {}",
                    o.text
                );
                if is_terminal(&m) {
                    self.terminated.insert(key);
                }
                self.log.entry(*conn).or_default().push(m);
            }
        }
    }

    fn connect(&mut self, who: &AuthedUser, endpoint: &str) -> ConnId {
        self.connect_fx(who, endpoint).0
    }

    fn connect_fx(&mut self, who: &AuthedUser, endpoint: &str) -> (ConnId, Effects) {
        let conn = self.hub.next_conn_id();
        let parts = WelcomeParts {
            session_id: format!("session-{conn}"),
            ice_servers: Vec::new(),
            heartbeat_ms: 20_000,
        };
        let fx = self.run(|h, now| h.attach(conn, who, endpoint, parts, now));
        (conn, fx)
    }

    fn drop_conn(&mut self, conn: ConnId) -> Effects {
        self.run(|h, now| h.detach(conn, now))
    }

    fn invite(&mut self, from: ConnId, call_id: &str, to: &AuthedUser) -> Effects {
        let name = to.user.user.clone();
        self.op(|h, now| h.invite(from, call_id, &name, callee(to), OFFER.into(), now))
            .unwrap_or_else(|e| panic!("invite {call_id} refused: {e:?}"))
    }

    fn accept(&mut self, conn: ConnId, call_id: &str) -> Effects {
        self.op(|h, now| h.accept(conn, call_id, ANSWER.into(), now))
            .unwrap_or_else(|e| panic!("accept {call_id} refused: {e:?}"))
    }

    fn hangup(&mut self, conn: ConnId, call_id: &str) -> Effects {
        self.op(|h, now| h.hangup(conn, call_id, None, now))
            .unwrap_or_else(|e| panic!("hangup {call_id} refused: {e:?}"))
    }

    /// `from` calls `to` (on `to_conn`), which answers.
    fn answered(&mut self, from: ConnId, to_conn: ConnId, to: &AuthedUser, call_id: &str) {
        self.invite(from, call_id, to);
        self.accept(to_conn, call_id);
    }

    /// How many terminal frames about `call_id` connection `conn` received.
    fn terminals(&self, conn: ConnId, call_id: &str) -> usize {
        self.log.get(&conn).map_or(0, |ms| {
            ms.iter()
                .filter(|m| m.call_id() == Some(call_id) && is_terminal(m))
                .count()
        })
    }
}

// ---- attach, presence ------------------------------------------------------

#[test]
fn attach_sends_welcome_and_presence_goes_to_the_tenant_only() {
    let mut w = World::new();
    let (a1, fx) = w.connect_fx(&alice(), "a1");
    assert_eq!(
        msgs(&fx, a1),
        vec![
            ServerMessage::Welcome {
                protocol: 1,
                user: alice().user,
                tenant: "acme".into(),
                session_id: format!("session-{a1}"),
                device_id: "a1".into(),
                presence: Presence::Available,
                ice_servers: Vec::new(),
                heartbeat_ms: 20_000,
                calls: Vec::new(),
            },
            presence(&alice(), Presence::Available),
        ]
    );
    assert!(fx.cdr.is_empty() && fx.timers.is_empty());

    // Another tenant hears nothing of acme, and acme nothing of it.
    let (m1, fx) = w.connect_fx(&mallory(), "m1");
    assert!(msgs(&fx, a1).is_empty());
    assert_eq!(msgs(&fx, m1)[1], presence(&mallory(), Presence::Available));

    let (b1, fx) = w.connect_fx(&bob(), "b1");
    let bob_here = presence(&bob(), Presence::Available);
    assert_eq!(msgs(&fx, a1), vec![bob_here.clone()]);
    assert_eq!(msgs(&fx, b1)[1], bob_here);
    assert!(msgs(&fx, m1).is_empty());

    // A second endpoint of a present user is not news.
    let (b2, fx) = w.connect_fx(&bob(), "b2");
    assert!(msgs(&fx, a1).is_empty());
    assert_eq!(msgs(&fx, b2).len(), 1, "welcome only");

    let fx = w
        .op(|h, now| h.set_presence(b1, Presence::Away, now))
        .unwrap();
    let away = presence(&bob(), Presence::Away);
    for c in [a1, b1, b2] {
        assert_eq!(msgs(&fx, c), vec![away.clone()]);
    }
    assert!(msgs(&fx, m1).is_empty());
    // The broadcast goes out even when nothing changed.
    let fx = w
        .op(|h, now| h.set_presence(b2, Presence::Away, now))
        .unwrap();
    assert_eq!(msgs(&fx, a1), vec![away]);
    assert_eq!(
        code(w.op(|h, now| h.set_presence(b1, Presence::Offline, now))),
        ErrorCode::InvalidValue
    );
    assert_eq!(w.hub.presence_of(bob().user_id), Presence::Away);

    // An endpoint joining a present user learns the status as set.
    let (b3, fx) = w.connect_fx(&bob(), "b3");
    assert!(matches!(
        &msgs(&fx, b3)[0],
        ServerMessage::Welcome {
            presence: Presence::Away,
            ..
        }
    ));

    // Offline only when the last endpoint is gone.
    assert!(msgs(&w.drop_conn(b1), a1).is_empty());
    assert!(msgs(&w.drop_conn(b2), a1).is_empty());
    let fx = w.drop_conn(b3);
    assert_eq!(msgs(&fx, a1), vec![presence(&bob(), Presence::Offline)]);
    assert_eq!(w.hub.presence_of(bob().user_id), Presence::Offline);
    assert!(w.hub.find_online(ACME, "bob").is_none());
    assert_eq!(w.hub.find_online(ACME, "alice"), callee(&alice()));
    assert!(w.hub.find_online(GLOBEX, "alice").is_none());

    // After a full disconnect the status starts over as available.
    let (b4, fx) = w.connect_fx(&bob(), "b4");
    assert!(matches!(
        &msgs(&fx, b4)[0],
        ServerMessage::Welcome {
            presence: Presence::Available,
            ..
        }
    ));
    assert_eq!(w.hub.connection_count(), 3);
}

// ---- §6.1 basic call ---------------------------------------------------------

#[test]
fn a_signed_out_endpoint_leaves_its_calls_at_once_without_grace() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let a2 = w.connect(&alice(), "a2");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    let c2 = w.connect(&carol(), "c2");
    let d1 = w.connect(&dave(), "d1");
    w.answered(a1, b1, &bob(), "talk");
    // a1 is busy: carol's invite rings a2 alone; c1 is busy calling, so
    // dave's invite rings c2 alone.
    w.invite(c1, "ring", &alice());
    w.invite(d1, "out", &carol());

    // a1's login ends: the answered call ends completed, by alice; the
    // invite ringing a2 rings on.
    let fx = w.run(|h, now| h.sign_out(a1, now));
    assert!(msgs(&fx, b1).contains(&ended("talk", EndReason::Completed, Some("alice"))));
    assert!(msgs(&fx, a2).is_empty(), "{:?}", msgs(&fx, a2));
    assert!(fx.timers.is_empty());
    let fx = w.drop_conn(a1);
    assert!(fx.timers.is_empty(), "no grace: {:?}", fx.timers);

    // a2, the last rung endpoint, signs out: unavailable.
    let fx = w.run(|h, now| h.sign_out(a2, now));
    assert!(msgs(&fx, c1).contains(&ended("ring", EndReason::Unavailable, None)));

    // The caller signs out while ringing: cancelled, by the caller.
    let fx = w.run(|h, now| h.sign_out(d1, now));
    assert!(msgs(&fx, c2).contains(&ended("out", EndReason::Cancelled, Some("dave"))));
    assert_eq!(w.hub.call_count(), 0);

    // An unknown connection changes nothing.
    let fx = w.run(|h, now| h.sign_out(999, now));
    assert_eq!(fx, Effects::default());
}

#[test]
fn basic_call_6_1_relays_offer_answer_candidates_and_ends_completed() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");

    let fx = w.invite(a1, "c1", &bob());
    assert_eq!(
        fx.cdr,
        vec![(1, created_write("c1", &alice(), &bob(), "a1"))]
    );
    // call.incoming is held until the row exists.
    assert_eq!(sent(&fx, b1), vec![(incoming("c1", &alice()), 1)]);
    assert!(sent(&fx, a1).is_empty());
    assert_eq!(
        fx.timers,
        vec![Timer::RingTimeout {
            call_id: "c1".into()
        }]
    );
    assert_eq!(w.hub.call_count(), 1);

    // The caller trickles to every rung endpoint at once (not held).
    let fx = w
        .op(|h, _| h.candidate(a1, "c1", Some(candidate())))
        .unwrap();
    let relayed = ServerMessage::Candidate {
        call_id: "c1".into(),
        candidate: Some(candidate()),
    };
    assert_eq!(sent(&fx, b1), vec![(relayed, 0)]);
    assert!(fx.cdr.is_empty());
    // A rung endpoint holds its candidates back until it accepts.
    assert_eq!(
        code(w.op(|h, _| h.candidate(b1, "c1", Some(candidate())))),
        ErrorCode::CallState
    );

    w.later(120);
    let fx = w.op(|h, now| h.ringing(b1, "c1", now)).unwrap();
    assert_eq!(
        fx.cdr,
        vec![(
            2,
            CdrWrite::Ringing {
                call_id: "c1".into(),
                at_ms: T0 + 120
            }
        )]
    );
    let ringing = ServerMessage::Ringing {
        call_id: "c1".into(),
    };
    assert_eq!(sent(&fx, a1), vec![(ringing, 2)]);
    // Once per call.
    let again = w.op(|h, now| h.ringing(b1, "c1", now)).unwrap();
    assert_eq!(again, Effects::default());

    w.later(3_880);
    let fx = w.accept(b1, "c1");
    assert_eq!(
        fx.cdr,
        vec![(
            3,
            CdrWrite::Answered {
                call_id: "c1".into(),
                endpoint: "b1".into(),
                agent: None,
                at_ms: T0 + 4_000
            }
        )]
    );
    assert_eq!(sent(&fx, a1), vec![(accepted("c1", Some(ANSWER), "b1"), 3)]);
    assert_eq!(sent(&fx, b1), vec![(accepted("c1", None, "b1"), 3)]);
    assert!(fx.timers.is_empty());

    let fx = w.op(|h, _| h.candidate(b1, "c1", None)).unwrap();
    let end_of_candidates = ServerMessage::Candidate {
        call_id: "c1".into(),
        candidate: None,
    };
    assert_eq!(sent(&fx, a1), vec![(end_of_candidates, 0)]);

    w.later(60_000);
    let fx = w.hangup(a1, "c1");
    assert_eq!(
        fx.cdr,
        vec![(
            4,
            ended_write("c1", T0 + 64_000, EndReason::Completed, Some(1))
        )]
    );
    let end = ended("c1", EndReason::Completed, Some("alice"));
    assert_eq!(sent(&fx, a1), vec![(end.clone(), 4)]);
    assert_eq!(sent(&fx, b1), vec![(end, 4)]);
    assert_eq!(w.hub.call_count(), 0);

    // Both parties post their figures after the end: recorded, not answered.
    let q = CallQuality {
        rtt_ms: Some(3.5),
        mos: Some(4.4),
        ..CallQuality::default()
    };
    for (conn, user) in [(a1, 1), (b1, 2)] {
        let fx = w.op(|h, now| h.stats(conn, "c1", q, now)).unwrap();
        assert!(fx.frames.is_empty());
        assert!(matches!(
            fx.cdr.as_slice(),
            [(_, CdrWrite::Quality { call_id, user_id, quality, at_ms })]
                if call_id == "c1" && *user_id == user && *quality == q && *at_ms == T0 + 64_000
        ));
    }
}

#[test]
fn the_answering_endpoint_may_hang_up_and_a_reason_changes_the_end() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "x");
    let fx = w.hangup(b1, "x");
    assert_eq!(
        end_write(&fx).1,
        ended_write("x", T0, EndReason::Completed, Some(2))
    );
    assert_eq!(
        msgs(&fx, a1),
        vec![ended("x", EndReason::Completed, Some("bob"))]
    );

    for (id, why, reason) in [
        ("y", HangupReason::Incompatible, EndReason::Incompatible),
        ("z", HangupReason::Failed, EndReason::Failed),
    ] {
        w.answered(a1, b1, &bob(), id);
        let fx = w.op(|h, now| h.hangup(a1, id, Some(why), now)).unwrap();
        assert_eq!(end_write(&fx).1, ended_write(id, T0, reason, Some(1)));
        // An answered call ends with call.ended on both sides.
        assert_eq!(msgs(&fx, a1), vec![ended(id, reason, Some("alice"))]);
        assert_eq!(msgs(&fx, b1), vec![ended(id, reason, Some("alice"))]);
    }
}

// ---- §6.2 several endpoints --------------------------------------------------

#[test]
fn several_endpoints_6_2_ring_and_the_first_accept_wins() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let desk = w.connect(&bob(), "desk");
    let laptop = w.connect(&bob(), "laptop");

    let fx = w.invite(a1, "m", &bob());
    assert_eq!(sent(&fx, desk), vec![(incoming("m", &alice()), 1)]);
    assert_eq!(sent(&fx, laptop), vec![(incoming("m", &alice()), 1)]);

    // An endpoint that connects after the invite is not rung for it.
    let (late, fx) = w.connect_fx(&bob(), "late");
    assert!(
        matches!(&msgs(&fx, late)[..], [ServerMessage::Welcome { calls, .. }] if calls.is_empty())
    );

    let fx = w.accept(laptop, "m");
    assert_eq!(
        sent(&fx, a1),
        vec![(accepted("m", Some(ANSWER), "laptop"), 2)]
    );
    assert_eq!(sent(&fx, laptop), vec![(accepted("m", None, "laptop"), 2)]);
    // The loser hears of it at once, held like the answer itself.
    assert_eq!(sent(&fx, desk), vec![(elsewhere("m", "laptop"), 2)]);
    assert!(sent(&fx, late).is_empty());

    // A late accept loses, and so does a repeated one.
    for conn in [desk, laptop] {
        let r = w.op(|h, now| h.accept(conn, "m", ANSWER.into(), now));
        assert_eq!(code(r), ErrorCode::CallState);
    }
    // The loser is out of the call.
    let r = w.op(|h, _| h.candidate(desk, "m", None));
    assert_eq!(code(r), ErrorCode::CallState);
    // Candidates now go to the answering endpoint only.
    let fx = w.op(|h, _| h.candidate(a1, "m", None)).unwrap();
    assert_eq!(fx.frames.len(), 1);
    assert_eq!(fx.frames[0].0, laptop);

    let fx = w.hangup(a1, "m");
    let end = ended("m", EndReason::Completed, Some("alice"));
    assert_eq!(msgs(&fx, a1), vec![end.clone()]);
    assert_eq!(msgs(&fx, laptop), vec![end]);
    assert!(msgs(&fx, desk).is_empty() && msgs(&fx, late).is_empty());
    assert_eq!(w.terminals(desk, "m"), 1);
}

// ---- §6.3 reject -------------------------------------------------------------

#[test]
fn reject_6_3_ends_the_call_on_every_endpoint_with_the_reason() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    for (id, why, reason) in [
        ("d", RejectReason::Rejected, EndReason::Rejected),
        ("e", RejectReason::Busy, EndReason::Busy),
        ("f", RejectReason::Incompatible, EndReason::Incompatible),
    ] {
        w.invite(a1, id, &bob());
        w.later(1_000);
        let fx = w.op(|h, now| h.reject(b1, id, why, now)).unwrap();
        let (seq, write) = end_write(&fx);
        assert_eq!(write, ended_write(id, w.now, reason, Some(2)));
        // The caller gets call.rejected; every rung endpoint call.ended by bob.
        assert_eq!(sent(&fx, a1), vec![(rejected(id, reason), seq)]);
        for conn in [b1, b2] {
            assert_eq!(sent(&fx, conn), vec![(ended(id, reason, Some("bob")), seq)]);
        }
    }

    // A hang-up from a rung endpoint while ringing is a reject.
    w.invite(a1, "g", &bob());
    let fx = w.hangup(b2, "g");
    assert_eq!(
        end_write(&fx).1,
        ended_write("g", w.now, EndReason::Rejected, Some(2))
    );
    assert_eq!(msgs(&fx, a1), vec![rejected("g", EndReason::Rejected)]);
    assert_eq!(
        msgs(&fx, b1),
        vec![ended("g", EndReason::Rejected, Some("bob"))]
    );

    // Who may not reject.
    w.invite(a1, "h", &bob());
    let r = w.op(|h, now| h.reject(a1, "h", RejectReason::Rejected, now));
    assert_eq!(code(r), ErrorCode::CallState, "the caller cancels instead");
    w.accept(b1, "h");
    let r = w.op(|h, now| h.reject(b1, "h", RejectReason::Rejected, now));
    assert_eq!(code(r), ErrorCode::CallState, "answered: hang up instead");
    let r = w.op(|h, now| h.reject(b2, "h", RejectReason::Rejected, now));
    assert_eq!(code(r), ErrorCode::CallState, "answered elsewhere");
}

// ---- §6.4 cancel ---------------------------------------------------------------

#[test]
fn cancel_6_4_is_the_calling_endpoints_alone() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let a2 = w.connect(&alice(), "a2");
    let b1 = w.connect(&bob(), "b1");
    w.invite(a1, "o", &bob());
    for conn in [b1, a2] {
        let r = w.op(|h, now| h.cancel(conn, "o", now));
        assert_eq!(code(r), ErrorCode::CallState);
    }
    w.later(2_000);
    let fx = w.op(|h, now| h.cancel(a1, "o", now)).unwrap();
    let (seq, write) = end_write(&fx);
    assert_eq!(
        write,
        ended_write("o", T0 + 2_000, EndReason::Cancelled, Some(1))
    );
    let end = ended("o", EndReason::Cancelled, Some("alice"));
    assert_eq!(sent(&fx, a1), vec![(end.clone(), seq)]);
    assert_eq!(sent(&fx, b1), vec![(end, seq)]);
    assert!(
        sent(&fx, a2).is_empty(),
        "the caller's other endpoints are not in the call"
    );

    // A hang-up from the calling endpoint while ringing is a cancel.
    w.invite(a1, "p", &bob());
    let fx = w.hangup(a1, "p");
    assert_eq!(
        msgs(&fx, b1),
        vec![ended("p", EndReason::Cancelled, Some("alice"))]
    );
    // Once answered, cancel is refused.
    w.answered(a1, b1, &bob(), "q");
    assert_eq!(
        code(w.op(|h, now| h.cancel(a1, "q", now))),
        ErrorCode::CallState
    );
    // An endpoint of the caller that is not the calling one cannot hang up.
    assert_eq!(
        code(w.op(|h, now| h.hangup(a2, "q", None, now))),
        ErrorCode::CallState
    );
}

// ---- §6.5 busy and do-not-disturb ------------------------------------------------

#[test]
fn busy_6_5_every_endpoint_busy_or_dnd_ends_at_once_without_ringing() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    w.answered(c1, b1, &bob(), "carol-bob");

    let fx = w.invite(a1, "x", &bob());
    let (seq, write) = end_write(&fx);
    assert_eq!(fx.cdr[0].1, created_write("x", &alice(), &bob(), "a1"));
    assert_eq!(write, ended_write("x", T0, EndReason::Busy, None));
    assert_eq!(sent(&fx, a1), vec![(rejected("x", EndReason::Busy), seq)]);
    assert!(sent(&fx, b1).is_empty(), "nothing is sent to bob");
    assert!(fx.timers.is_empty());

    // Only the free endpoints ring.
    let b2 = w.connect(&bob(), "b2");
    let fx = w.invite(a1, "x2", &bob());
    assert_eq!(sent(&fx, b2), vec![(incoming("x2", &alice()), fx.cdr[0].0)]);
    assert!(sent(&fx, b1).is_empty());
    w.hangup(a1, "x2");

    // A calling endpoint is busy too, even while its call only rings…
    let erin = person(5, ACME, "erin");
    let d1 = w.connect(&dave(), "d1");
    let e1 = w.connect(&erin, "e1");
    w.invite(d1, "dave-out", &erin);
    let fx = w.invite(a1, "to-dave", &dave());
    assert_eq!(msgs(&fx, a1), vec![rejected("to-dave", EndReason::Busy)]);
    assert!(msgs(&fx, d1).is_empty());
    // …but an endpoint that only rings for another call can ring again.
    let fx = w.invite(a1, "to-erin", &erin);
    assert_eq!(
        sent(&fx, e1),
        vec![(incoming("to-erin", &alice()), fx.cdr[0].0)]
    );

    // Do not disturb: busy by the callee, nothing sent to them.
    let f1 = w.connect(&person(6, ACME, "frank"), "f1");
    w.op(|h, now| h.set_presence(f1, Presence::Dnd, now))
        .unwrap();
    let fx = w.invite(a1, "y", &person(6, ACME, "frank"));
    assert_eq!(
        end_write(&fx).1,
        ended_write("y", T0, EndReason::Busy, Some(6))
    );
    assert_eq!(msgs(&fx, a1), vec![rejected("y", EndReason::Busy)]);
    assert!(msgs(&fx, f1).is_empty());
}

// ---- §6.6 no answer ----------------------------------------------------------------

#[test]
fn no_answer_6_6_the_ring_timeout_ends_a_ringing_call_only() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    w.invite(a1, "r", &bob());
    w.later(RING_MS);
    let fx = w.run(|h, now| h.ring_timeout("r", now));
    let (seq, write) = end_write(&fx);
    assert_eq!(
        write,
        ended_write("r", T0 + RING_MS, EndReason::NoAnswer, None)
    );
    for conn in [a1, b1, b2] {
        assert_eq!(
            sent(&fx, conn),
            vec![(ended("r", EndReason::NoAnswer, None), seq)]
        );
    }
    // Fired again, or for an answered or unknown call: nothing.
    assert_eq!(w.run(|h, now| h.ring_timeout("r", now)), Effects::default());
    w.answered(a1, b1, &bob(), "s");
    w.later(RING_MS);
    assert_eq!(w.run(|h, now| h.ring_timeout("s", now)), Effects::default());
    assert_eq!(
        w.run(|h, now| h.ring_timeout("nope", now)),
        Effects::default()
    );
}

// ---- §6.7 unavailable --------------------------------------------------------------

#[test]
fn unavailable_6_7_no_connected_endpoint_or_the_last_rung_one_leaves() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    // Bob exists but is not connected.
    let fx = w.invite(a1, "n", &bob());
    let (seq, write) = end_write(&fx);
    assert_eq!(write, ended_write("n", T0, EndReason::Unavailable, None));
    assert_eq!(
        sent(&fx, a1),
        vec![(ended("n", EndReason::Unavailable, None), seq)]
    );
    assert!(fx.timers.is_empty());

    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    w.invite(a1, "g", &bob());
    // A rung endpoint that leaves stops ringing: no grace, no frame.
    let fx = w.drop_conn(b1);
    assert!(fx.timers.is_empty() && fx.cdr.is_empty());
    assert!(sent(&fx, a1).is_empty());
    // Candidates now reach the endpoint still rung only.
    let fx = w.op(|h, _| h.candidate(a1, "g", None)).unwrap();
    assert_eq!(
        fx.frames.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![b2]
    );
    // The last one ends the call.
    w.later(500);
    let fx = w.drop_conn(b2);
    let (seq, write) = end_write(&fx);
    assert_eq!(
        write,
        ended_write("g", T0 + 500, EndReason::Unavailable, None)
    );
    assert_eq!(
        sent(&fx, a1),
        vec![(ended("g", EndReason::Unavailable, None), seq)]
    );
    assert!(fx.timers.is_empty());
    assert_eq!(
        msgs(&fx, a1).last(),
        Some(&presence(&bob(), Presence::Offline))
    );
}

// ---- §6.8 glare ----------------------------------------------------------------------

#[test]
fn glare_6_8_the_second_invite_is_refused_naming_the_first() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let a2 = w.connect(&alice(), "a2");
    let b1 = w.connect(&bob(), "b1");
    w.invite(a1, "from-alice", &bob());
    let r = w.op(|h, now| h.invite(b1, "from-bob", "alice", callee(&alice()), OFFER.into(), now));
    let e = r.expect_err("glare");
    assert_eq!(e.code, ErrorCode::Glare);
    assert_eq!(e.call_id.as_deref(), Some("from-alice"));
    assert_eq!(
        w.hub.call_count(),
        1,
        "bob's call was dropped without a trace"
    );

    // Once alice's call is answered it is no longer glare: bob's call rings
    // alice's free endpoint (a1 is busy placing the answered call).
    w.accept(b1, "from-alice");
    let fx = w.invite(b1, "from-bob", &alice());
    assert_eq!(
        sent(&fx, a2),
        vec![(incoming("from-bob", &bob()), fx.cdr[0].0)]
    );
    assert!(sent(&fx, a1).is_empty());
}

#[test]
fn glare_follows_the_latest_call_in_that_direction() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let a2 = w.connect(&alice(), "a2");
    let a3 = w.connect(&alice(), "a3");
    let b1 = w.connect(&bob(), "b1");
    // A second invite in the same direction is not glare: bob rings twice.
    w.invite(a1, "g1", &bob());
    let fx = w.invite(a2, "g2", &bob());
    assert_eq!(sent(&fx, b1).len(), 1);
    let bob_calls = |w: &mut World| {
        w.op(|h, now| h.invite(b1, "from-bob", "alice", callee(&alice()), OFFER.into(), now))
    };
    let e = bob_calls(&mut w).expect_err("glare");
    assert_eq!(e.call_id.as_deref(), Some("g2"));
    // The latest call ends: no glare, though the older one still rings.
    w.hangup(a2, "g2");
    let fx = bob_calls(&mut w).expect("no glare once the latest call ended");
    let rung: Vec<ConnId> = fx.frames.iter().map(|(c, _)| *c).collect();
    assert_eq!(rung, vec![a2, a3], "a1 is busy placing g1");
}

// ---- §6.9 hold and resume ---------------------------------------------------------------

#[test]
fn updates_6_9_are_relayed_between_calling_and_answering_endpoint_once_answered() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    w.invite(a1, "u", &bob());
    let r = w.op(|h, _| h.update(a1, "u", SdpKind::Offer, OFFER.into()));
    assert_eq!(code(r), ErrorCode::CallState, "not answered yet");
    w.accept(b2, "u");

    let hold = "v=0\r\na=sendonly\r\n";
    let fx = w
        .op(|h, _| h.update(a1, "u", SdpKind::Offer, hold.into()))
        .unwrap();
    assert_eq!(sent(&fx, b2), vec![(update("u", SdpKind::Offer, hold), 0)]);
    assert!(fx.cdr.is_empty() && sent(&fx, b1).is_empty());
    let held = "v=0\r\na=recvonly\r\n";
    let fx = w
        .op(|h, _| h.update(b2, "u", SdpKind::Answer, held.into()))
        .unwrap();
    assert_eq!(sent(&fx, a1), vec![(update("u", SdpKind::Answer, held), 0)]);

    // Only the two endpoints of the call may update.
    let r = w.op(|h, _| h.update(b1, "u", SdpKind::Offer, OFFER.into()));
    assert_eq!(code(r), ErrorCode::CallState);
    let c1 = w.connect(&carol(), "c1");
    let r = w.op(|h, _| h.update(c1, "u", SdpKind::Offer, OFFER.into()));
    assert_eq!(code(r), ErrorCode::NotFound);
    // The SDP size is checked first, even for a call that is not yours.
    let huge = "v".repeat(softphone_protocol::MAX_SDP_BYTES + 1);
    let r = w.op(|h, _| h.update(c1, "u", SdpKind::Offer, huge));
    assert_eq!(code(r), ErrorCode::InvalidValue);
    let r = w.op(|h, _| h.update(a1, "u", SdpKind::Offer, String::new()));
    assert_eq!(code(r), ErrorCode::InvalidValue);
}

// ---- §6.10 reconnect within grace -------------------------------------------------------

#[test]
fn reconnect_6_10_within_grace_resumes_with_the_kept_frames_in_order() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "s");

    let fx = w.drop_conn(b1);
    let Some(Timer::Grace {
        user,
        endpoint,
        generation,
    }) = fx.timers.first().cloned()
    else {
        panic!("a grace timer: {fx:?}");
    };
    assert_eq!((user, endpoint.as_str()), (2, "b1"));
    assert_eq!(fx.timers.len(), 1);
    assert!(fx.frames.is_empty(), "no offline presence during grace");
    assert_eq!(w.hub.presence_of(2), Presence::Available);

    // What alice sends meanwhile is kept for b1, and she hears no error.
    let restart = "v=0\r\na=ice-restart\r\n";
    let fx = w
        .op(|h, _| h.update(a1, "s", SdpKind::Offer, restart.into()))
        .unwrap();
    assert!(fx.frames.is_empty());
    let fx = w
        .op(|h, _| h.candidate(a1, "s", Some(candidate())))
        .unwrap();
    assert!(fx.frames.is_empty());

    w.later(GRACE_MS / 2);
    let (b1x, fx) = w.connect_fx(&bob(), "b1");
    let got = msgs(&fx, b1x);
    assert_eq!(got.len(), 3, "{got:?}");
    let ServerMessage::Welcome { calls, .. } = &got[0] else {
        panic!("welcome first: {got:?}");
    };
    assert_eq!(
        calls,
        &vec![CallSummary {
            call_id: "s".into(),
            peer: alice().user,
            outgoing: false,
            phase: CallPhase::Active,
        }]
    );
    assert_eq!(got[1], update("s", SdpKind::Offer, restart));
    assert!(
        matches!(&got[2], ServerMessage::Candidate { candidate: Some(c), .. } if *c == candidate())
    );
    assert!(msgs(&fx, a1).is_empty(), "bob never left, for presence");

    // The old timer is void; the call goes on.
    w.later(GRACE_MS);
    let stale = w.run(|h, now| h.grace_expired(user, &endpoint, generation, now));
    assert_eq!(stale, Effects::default());
    let fx = w.hangup(b1x, "s");
    assert_eq!(
        msgs(&fx, a1),
        vec![ended("s", EndReason::Completed, Some("bob"))]
    );
}

#[test]
fn a_calling_endpoint_in_grace_keeps_its_call_and_hears_the_answer_on_return() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.invite(a1, "k", &bob());
    let fx = w.drop_conn(a1);
    assert_eq!(fx.timers.len(), 1, "the calling endpoint gets grace");
    assert!(sent(&fx, b1).is_empty(), "bob keeps ringing");
    w.op(|h, now| h.ringing(b1, "k", now)).unwrap();
    let fx = w.accept(b1, "k");
    let seq = fx.cdr[0].0;
    assert!(sent(&fx, a1).is_empty());
    let (a1x, fx) = w.connect_fx(&alice(), "a1");
    let got = sent(&fx, a1x);
    assert!(matches!(&got[0].0, ServerMessage::Welcome { calls, .. }
        if calls.len() == 1 && calls[0].outgoing && calls[0].phase == CallPhase::Active));
    // Kept frames keep the CDR number they wait for.
    assert_eq!(
        got[1],
        (
            ServerMessage::Ringing {
                call_id: "k".into()
            },
            seq - 1
        )
    );
    assert_eq!(got[2], (accepted("k", Some(ANSWER), "b1"), seq));
}

#[test]
fn kept_frames_are_capped_at_128_and_keep_their_order() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "cap");
    w.drop_conn(b1);
    for i in 0..200 {
        let sdp = format!("v=0\r\ns={i}\r\n");
        w.op(|h, _| h.update(a1, "cap", SdpKind::Offer, sdp))
            .unwrap();
    }
    let (b1x, fx) = w.connect_fx(&bob(), "b1");
    let got = msgs(&fx, b1x);
    assert_eq!(got.len(), 1 + 128);
    for (i, m) in got[1..].iter().enumerate() {
        assert_eq!(
            *m,
            update("cap", SdpKind::Offer, &format!("v=0\r\ns={i}\r\n"))
        );
    }
}

#[test]
fn a_call_that_ends_during_grace_is_told_after_welcome() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "away");
    w.drop_conn(b1);
    let fx = w.hangup(a1, "away");
    let (seq, _) = end_write(&fx);
    assert_eq!(
        msgs(&fx, a1),
        vec![ended("away", EndReason::Completed, Some("alice"))]
    );
    // Bob's endpoint stays in grace, holding the terminal frame.
    assert_eq!(w.hub.presence_of(2), Presence::Available);
    // Presence is not kept for an endpoint in grace.
    w.connect(&carol(), "c1");
    let (b1x, fx) = w.connect_fx(&bob(), "b1");
    let got = all_sent(&fx, b1x);
    assert!(matches!(&got[0].0, ServerMessage::Welcome { calls, .. } if calls.is_empty()));
    assert_eq!(
        got[1..].to_vec(),
        vec![(ended("away", EndReason::Completed, Some("alice")), seq)]
    );
}

#[test]
fn an_endpoint_in_grace_is_not_rung_for_new_calls() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    w.answered(a1, b1, &bob(), "on");
    w.drop_conn(b1);
    let fx = w.invite(c1, "new", &bob());
    assert_eq!(
        end_write(&fx).1,
        ended_write("new", T0, EndReason::Unavailable, None)
    );
    assert_eq!(
        msgs(&fx, c1),
        vec![ended("new", EndReason::Unavailable, None)]
    );
}

#[test]
fn a_replaced_socket_is_closed_and_a_rung_endpoint_is_rung_again() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.invite(a1, "re", &bob());
    let (b1x, fx) = w.connect_fx(&bob(), "b1");
    assert_eq!(closes(&fx, b1), vec![close_code::REPLACED]);
    assert!(sent(&fx, b1).is_empty());
    let got = sent(&fx, b1x);
    assert!(matches!(&got[0].0, ServerMessage::Welcome { calls, .. }
    if calls == &vec![CallSummary {
        call_id: "re".into(),
        peer: alice().user,
        outgoing: false,
        phase: CallPhase::Ringing,
    }]));
    // Rung again with the kept offer, not held: the row exists already.
    assert_eq!(got[1], (incoming("re", &alice()), 0));
    assert_eq!(got.len(), 2);
    assert!(fx.cdr.is_empty());
    assert!(msgs(&fx, a1).is_empty());

    // The old socket's task ends later: that changes nothing.
    assert_eq!(w.drop_conn(b1), Effects::default());
    // A frame that raced in on the old socket is refused.
    let r = w.op(|h, now| h.accept(b1, "re", ANSWER.into(), now));
    assert_eq!(code(r), ErrorCode::Internal);
    let fx = w.accept(b1x, "re");
    assert_eq!(msgs(&fx, a1), vec![accepted("re", Some(ANSWER), "b1")]);
    assert_eq!(w.hub.connection_count(), 2);
}

// ---- §6.11 grace expiry ---------------------------------------------------------------------

#[test]
fn grace_expiry_6_11_fails_the_calls_and_forgets_the_endpoint() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "l");
    let Some(Timer::Grace { generation, .. }) = w.drop_conn(b1).timers.pop() else {
        panic!("grace timer");
    };
    w.op(|h, _| h.update(a1, "l", SdpKind::Offer, OFFER.into()))
        .unwrap();

    // An older generation's timer does nothing.
    let stale = w.run(|h, now| h.grace_expired(2, "b1", generation - 1, now));
    assert_eq!(stale, Effects::default());

    w.later(GRACE_MS);
    let fx = w.run(|h, now| h.grace_expired(2, "b1", generation, now));
    let (seq, write) = end_write(&fx);
    assert_eq!(
        write,
        ended_write("l", T0 + GRACE_MS, EndReason::Failed, None)
    );
    assert_eq!(
        sent(&fx, a1),
        vec![(ended("l", EndReason::Failed, None), seq)]
    );
    assert_eq!(
        msgs(&fx, a1).last(),
        Some(&presence(&bob(), Presence::Offline))
    );
    assert_eq!(w.hub.presence_of(2), Presence::Offline);

    // The kept frames went with the endpoint.
    let (b1x, fx) = w.connect_fx(&bob(), "b1");
    let got = msgs(&fx, b1x);
    assert!(matches!(&got[0], ServerMessage::Welcome { calls, .. } if calls.is_empty()));
    assert_eq!(got[1..], [presence(&bob(), Presence::Available)]);
}

#[test]
fn the_calling_endpoints_grace_expiring_while_ringing_fails_it_on_every_rung_endpoint() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    w.invite(a1, "lost", &bob());
    let Some(Timer::Grace { generation, .. }) = w.drop_conn(a1).timers.pop() else {
        panic!("grace timer");
    };
    w.later(GRACE_MS);
    let fx = w.run(|h, now| h.grace_expired(1, "a1", generation, now));
    let (seq, _) = end_write(&fx);
    for conn in [b1, b2] {
        assert_eq!(
            sent(&fx, conn),
            vec![(ended("lost", EndReason::Failed, None), seq)]
        );
    }
}

#[test]
fn a_second_drop_voids_the_first_grace_timer() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "twice");
    let Some(Timer::Grace { generation: g1, .. }) = w.drop_conn(b1).timers.pop() else {
        panic!("grace timer");
    };
    let b1x = w.connect(&bob(), "b1");
    let Some(Timer::Grace { generation: g2, .. }) = w.drop_conn(b1x).timers.pop() else {
        panic!("grace timer");
    };
    assert_ne!(g1, g2);
    let stale = w.run(|h, now| h.grace_expired(2, "b1", g1, now));
    assert_eq!(stale, Effects::default());
    let fx = w.run(|h, now| h.grace_expired(2, "b1", g2, now));
    assert_eq!(msgs(&fx, a1)[0], ended("twice", EndReason::Failed, None));
}

// ---- §8.1 one terminal frame per endpoint --------------------------------------------------

/// The ways a call can end, each played with the same cast: alice on a1
/// (calling) and a2 (not in the call), bob on b1 and b2 (both rung).
#[derive(Debug, Clone, Copy)]
enum Ending {
    CallerHangsUp,
    CalleeHangsUp,
    Reject,
    RejectBusy,
    Cancel,
    RingTimeout,
    LastRungEndpointLeaves,
    CallerGraceExpires,
    CalleeGraceExpires,
}

#[test]
fn terminal_frames_8_1_exactly_one_per_endpoint_in_the_call() {
    use Ending::*;
    for ending in [
        CallerHangsUp,
        CalleeHangsUp,
        Reject,
        RejectBusy,
        Cancel,
        RingTimeout,
        LastRungEndpointLeaves,
        CallerGraceExpires,
        CalleeGraceExpires,
    ] {
        let mut w = World::new();
        let a1 = w.connect(&alice(), "a1");
        let a2 = w.connect(&alice(), "a2");
        let b1 = w.connect(&bob(), "b1");
        let b2 = w.connect(&bob(), "b2");
        w.invite(a1, "t", &bob());
        let answered = matches!(ending, CallerHangsUp | CalleeHangsUp | CalleeGraceExpires);
        if answered {
            w.accept(b1, "t");
        }
        // (connection, how many terminal frames it must get)
        let expect: Vec<(ConnId, usize)> = match ending {
            CallerHangsUp => {
                w.hangup(a1, "t");
                vec![(a1, 1), (b1, 1), (b2, 1)] // b2: answered_elsewhere
            }
            CalleeHangsUp => {
                w.hangup(b1, "t");
                vec![(a1, 1), (b1, 1), (b2, 1)]
            }
            Reject | RejectBusy => {
                let why = if matches!(ending, Reject) {
                    RejectReason::Rejected
                } else {
                    RejectReason::Busy
                };
                w.op(|h, now| h.reject(b2, "t", why, now)).unwrap();
                vec![(a1, 1), (b1, 1), (b2, 1)]
            }
            Cancel => {
                w.op(|h, now| h.cancel(a1, "t", now)).unwrap();
                vec![(a1, 1), (b1, 1), (b2, 1)]
            }
            RingTimeout => {
                w.run(|h, now| h.ring_timeout("t", now));
                vec![(a1, 1), (b1, 1), (b2, 1)]
            }
            LastRungEndpointLeaves => {
                w.drop_conn(b1);
                w.drop_conn(b2);
                // Rung endpoints that left are out of the call.
                vec![(a1, 1), (b1, 0), (b2, 0)]
            }
            CallerGraceExpires | CalleeGraceExpires => {
                let (user, ep, conn) = if matches!(ending, CallerGraceExpires) {
                    (1, "a1", a1)
                } else {
                    (2, "b1", b1)
                };
                let Some(Timer::Grace { generation, .. }) = w.drop_conn(conn).timers.pop() else {
                    panic!("grace timer");
                };
                w.run(|h, now| h.grace_expired(user, ep, generation, now));
                // The endpoint in grace never came back: nothing reaches it.
                let others: Vec<(ConnId, usize)> = [a1, b1, b2]
                    .into_iter()
                    .filter(|c| *c != conn)
                    .map(|c| (c, 1))
                    .collect();
                [vec![(conn, 0)], others].concat()
            }
        };
        for (conn, n) in expect {
            assert_eq!(w.terminals(conn, "t"), n, "{ending:?}: connection {conn}");
        }
        assert_eq!(
            w.terminals(a2, "t"),
            0,
            "{ending:?}: the caller's other endpoint"
        );
        assert!(w.log.get(&a2).is_none_or(|l| l.is_empty()), "{ending:?}");
        assert_eq!(w.hub.call_count(), 0, "{ending:?}");
    }
}

#[test]
fn terminal_frames_8_1_none_for_endpoints_outside_the_call() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    w.answered(c1, b1, &bob(), "busy-one");
    // Every endpoint of bob busy: the refused-as-busy call reaches only alice.
    w.invite(a1, "nope", &bob());
    assert_eq!(w.terminals(a1, "nope"), 1);
    assert_eq!(w.terminals(b1, "nope"), 0);
    // A refused invite is no call at all.
    let r = w.op(|h, now| h.invite(a1, "bad id!", "bob", callee(&bob()), OFFER.into(), now));
    assert_eq!(code(r), ErrorCode::InvalidValue);
    assert!(
        w.log
            .values()
            .flatten()
            .all(|m| m.call_id() != Some("bad id!"))
    );
}

// ---- refusals -------------------------------------------------------------------------------

#[test]
fn calls_of_others_are_not_found_and_ended_ones_are_call_state() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    let m1 = w.connect(&mallory(), "m1");
    w.answered(a1, b1, &bob(), "private");
    let q = CallQuality::default();
    for conn in [c1, m1] {
        let refusals: Vec<HubResult> = vec![
            w.op(|h, now| h.ringing(conn, "private", now)),
            w.op(|h, now| h.accept(conn, "private", ANSWER.into(), now)),
            w.op(|h, now| h.reject(conn, "private", RejectReason::Rejected, now)),
            w.op(|h, now| h.cancel(conn, "private", now)),
            w.op(|h, now| h.hangup(conn, "private", None, now)),
            w.op(|h, _| h.candidate(conn, "private", None)),
            w.op(|h, _| h.update(conn, "private", SdpKind::Offer, OFFER.into())),
            w.op(|h, now| h.stats(conn, "private", q, now)),
            w.op(|h, now| h.hangup(conn, "no-such-call", None, now)),
        ];
        for r in refusals {
            assert_eq!(code(r), ErrorCode::NotFound);
        }
    }
    // Inviting a user of another tenant: resolved to nobody by the caller.
    let r = w.op(|h, now| h.invite(m1, "cross", "alice", None, OFFER.into(), now));
    let e = r.expect_err("not found");
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::NotFound, "no user `alice`")
    );

    w.hangup(a1, "private");
    // Parties: ended is call_state; others still not_found.
    assert_eq!(
        code(w.op(|h, now| h.hangup(a1, "private", None, now))),
        ErrorCode::CallState
    );
    assert_eq!(
        code(w.op(|h, now| h.hangup(b1, "private", None, now))),
        ErrorCode::CallState
    );
    assert_eq!(
        code(w.op(|h, now| h.accept(b1, "private", ANSWER.into(), now))),
        ErrorCode::CallState
    );
    assert_eq!(
        code(w.op(|h, now| h.hangup(c1, "private", None, now))),
        ErrorCode::NotFound
    );

    // Late stats within 5 minutes are taken, then the call is forgotten.
    w.later(5 * 60 * 1000 - 1);
    w.hub.prune_ended(w.now);
    assert!(w.op(|h, now| h.stats(a1, "private", q, now)).is_ok());
    w.later(1);
    w.hub.prune_ended(w.now);
    assert_eq!(
        code(w.op(|h, now| h.stats(a1, "private", q, now))),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(w.op(|h, now| h.hangup(a1, "private", None, now))),
        ErrorCode::NotFound
    );
    // Forgotten here, but the id stays used (the socket layer asks the store).
}

#[test]
fn invites_are_checked_in_the_documented_order() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let big = "v".repeat(softphone_protocol::MAX_SDP_BYTES + 1);
    let mut try_invite = |id: &str, to: Option<Callee>, sdp: &str| {
        let sdp = sdp.to_string();
        w.op(|h, now| h.invite(a1, id, "someone", to, sdp, now))
            .map(|_| ())
            .map_err(|e| e.code)
    };
    // Id shape first, then SDP size, then the callee.
    assert_eq!(try_invite("", None, ""), Err(ErrorCode::InvalidValue));
    assert_eq!(
        try_invite(&"x".repeat(65), callee(&bob()), OFFER),
        Err(ErrorCode::InvalidValue)
    );
    assert_eq!(try_invite("ok", None, ""), Err(ErrorCode::InvalidValue));
    assert_eq!(
        try_invite("ok", callee(&bob()), &big),
        Err(ErrorCode::InvalidValue)
    );
    assert_eq!(try_invite("ok", None, OFFER), Err(ErrorCode::NotFound));
    assert_eq!(
        try_invite("ok", callee(&alice()), OFFER),
        Err(ErrorCode::SelfCall)
    );
    assert_eq!(try_invite("ok", callee(&bob()), OFFER), Ok(()));
    // A live id, then an ended one, is taken.
    assert_eq!(
        try_invite("ok", callee(&bob()), OFFER),
        Err(ErrorCode::CallExists)
    );
    w.hangup(a1, "ok");
    let r = w.op(|h, now| h.invite(a1, "ok", "bob", callee(&bob()), OFFER.into(), now));
    assert_eq!(code(r), ErrorCode::CallExists);
    // The exact limits pass.
    let max = "s".repeat(softphone_protocol::MAX_SDP_BYTES);
    let id = "i".repeat(64);
    let r = w.op(|h, now| h.invite(a1, &id, "bob", callee(&bob()), max, now));
    assert!(r.is_ok());
    let r = w.op(|h, now| h.accept(b1, &id, String::new(), now));
    assert_eq!(code(r), ErrorCode::InvalidValue, "an empty answer");
}

#[test]
fn requests_from_an_unregistered_connection_are_internal_errors() {
    let mut w = World::new();
    let q = CallQuality::default();
    let ghost: ConnId = 4242;
    let results: Vec<HubResult> = vec![
        w.op(|h, now| h.invite(ghost, "c", "bob", callee(&bob()), OFFER.into(), now)),
        w.op(|h, now| h.ringing(ghost, "c", now)),
        w.op(|h, now| h.accept(ghost, "c", ANSWER.into(), now)),
        w.op(|h, now| h.reject(ghost, "c", RejectReason::Busy, now)),
        w.op(|h, now| h.cancel(ghost, "c", now)),
        w.op(|h, now| h.hangup(ghost, "c", None, now)),
        w.op(|h, _| h.candidate(ghost, "c", None)),
        w.op(|h, _| h.update(ghost, "c", SdpKind::Answer, OFFER.into())),
        w.op(|h, now| h.stats(ghost, "c", q, now)),
        w.op(|h, now| h.set_presence(ghost, Presence::Away, now)),
    ];
    for r in results {
        assert_eq!(code(r), ErrorCode::Internal);
    }
    assert_eq!(w.drop_conn(ghost), Effects::default());
    assert_eq!(
        w.run(|h, now| h.grace_expired(7, "x", 1, now)),
        Effects::default()
    );
}

#[test]
fn stats_out_of_range_are_refused() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    w.answered(a1, b1, &bob(), "q");
    let bad = CallQuality {
        loss_pct: Some(250.0),
        ..CallQuality::default()
    };
    assert_eq!(
        code(w.op(|h, now| h.stats(a1, "q", bad, now))),
        ErrorCode::InvalidValue
    );
    let nan = CallQuality {
        mos: Some(f64::NAN),
        ..CallQuality::default()
    };
    assert_eq!(
        code(w.op(|h, now| h.stats(b1, "q", nan, now))),
        ErrorCode::InvalidValue
    );
}

#[test]
fn shutdown_closes_every_socket_with_1012() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let m1 = w.connect(&mallory(), "m1");
    let fx = w.hub.close_all();
    assert_eq!(closes(&fx, a1), vec![close_code::SERVICE_RESTART]);
    assert_eq!(closes(&fx, m1), vec![close_code::SERVICE_RESTART]);
    assert_eq!(fx.frames.len(), 2);
}

// ---- nothing a client sends can break the hub ------------------------------------------------

/// Thousands of random requests, from registered and unknown connections,
/// about calls that exist, ended, or never did, with the socket layer's
/// callbacks (drops, reconnects, timers) mixed in: the hub never panics, and
/// [`World`]'s checks hold after every step.
#[test]
fn random_requests_never_panic_and_keep_the_invariants() {
    let people = [alice(), bob(), carol(), dave(), mallory()];
    let endpoints = ["d1", "d2"];
    let calls: Vec<String> = (0..24)
        .map(|i| format!("r{i}"))
        .chain(["bad id".to_string(), String::new()])
        .collect();
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut w = World::new();
        let mut live: Vec<ConnId> = Vec::new();
        let mut timers: Vec<Timer> = Vec::new();
        for step in 0..6_000 {
            let who = &people[rng.gen_range(0..people.len())];
            let ep = endpoints[rng.gen_range(0..endpoints.len())];
            let mut call = calls[rng.gen_range(0..calls.len())].clone();
            // Mostly live connections, sometimes a stale or unknown one.
            let mut conn = if live.is_empty() || rng.gen_bool(0.05) {
                rng.gen_range(0..40)
            } else {
                live[rng.gen_range(0..live.len())]
            };
            // Often a live call and a connected endpoint that is in it, so
            // that calls get rung, answered and updated, not only refused.
            if rng.gen_bool(0.6) && !w.hub.calls.is_empty() {
                let mut ids: Vec<&String> = w.hub.calls.keys().collect();
                ids.sort();
                let id = ids[rng.gen_range(0..ids.len())].clone();
                let c = &w.hub.calls[&id];
                let mut parties = vec![(c.caller, c.caller_endpoint.clone())];
                parties.extend(c.rung_endpoints.iter().map(|d| (c.callee, d.clone())));
                parties.extend(c.answered_endpoint.iter().map(|d| (c.callee, d.clone())));
                let (u, d) = &parties[rng.gen_range(0..parties.len())];
                let endpoint_conn = w.hub.users.get(u).and_then(|x| x.endpoints.get(d)?.conn);
                conn = endpoint_conn.unwrap_or(conn);
                call = id;
            }
            let call = call.as_str();
            let sdp = match rng.gen_range(0..20) {
                0 => String::new(),
                1 => "v".repeat(softphone_protocol::MAX_SDP_BYTES + 1),
                _ => OFFER.to_string(),
            };
            w.later(rng.gen_range(0..2_000));
            let fx = match rng.gen_range(0..19) {
                0 | 1 => {
                    let (c, fx) = w.connect_fx(who, ep);
                    live.push(c);
                    Ok(fx)
                }
                2 => {
                    live.retain(|c| *c != conn);
                    // Half the drops end the login first (logout, user
                    // disabled): then the endpoint keeps no call, so its
                    // socket's close arms no grace.
                    if rng.gen_bool(0.5) {
                        let out = w.run(|h, now| h.sign_out(conn, now));
                        timers.extend(out.timers);
                        let fx = w.drop_conn(conn);
                        assert!(
                            !fx.timers.iter().any(|t| matches!(t, Timer::Grace { .. })),
                            "a signed-out endpoint got a grace"
                        );
                        Ok(fx)
                    } else {
                        Ok(w.drop_conn(conn))
                    }
                }
                3 | 4 => {
                    let target = people[rng.gen_range(0..people.len())].clone();
                    // The socket layer resolves names within the caller's tenant.
                    let resolved = w
                        .hub
                        .conns
                        .get(&conn)
                        .and_then(|c| w.hub.users.get(&c.user))
                        .filter(|u| u.tenant == target.tenant_id)
                        .and(callee(&target));
                    w.op(|h, now| h.invite(conn, call, &target.user.user, resolved, sdp, now))
                }
                5 | 17 | 18 => w.op(|h, now| h.ringing(conn, call, now)),
                6 | 7 => w.op(|h, now| h.accept(conn, call, sdp, now)),
                8 => {
                    let why = [
                        RejectReason::Rejected,
                        RejectReason::Busy,
                        RejectReason::Incompatible,
                    ][rng.gen_range(0..3)];
                    w.op(|h, now| h.reject(conn, call, why, now))
                }
                9 => w.op(|h, now| h.cancel(conn, call, now)),
                10 => {
                    let why = [
                        None,
                        Some(HangupReason::Failed),
                        Some(HangupReason::Incompatible),
                    ][rng.gen_range(0..3)];
                    w.op(|h, now| h.hangup(conn, call, why, now))
                }
                11 => w.op(|h, _| h.candidate(conn, call, Some(candidate()))),
                12 => w.op(|h, _| h.update(conn, call, SdpKind::Offer, sdp)),
                13 => {
                    let q = CallQuality {
                        mos: Some(rng.gen_range(0.5..5.5)),
                        ..CallQuality::default()
                    };
                    w.op(|h, now| h.stats(conn, call, q, now))
                }
                14 => {
                    let p = [
                        Presence::Available,
                        Presence::Away,
                        Presence::Dnd,
                        Presence::Offline,
                    ][rng.gen_range(0..4)];
                    w.op(|h, now| h.set_presence(conn, p, now))
                }
                15 if !timers.is_empty() => {
                    // A timer fires (in any order, possibly late or stale).
                    let t = timers.swap_remove(rng.gen_range(0..timers.len()));
                    Ok(w.run(|h, now| fire(h, t, now)))
                }
                _ => {
                    w.later(rng.gen_range(0..400_000));
                    w.hub.prune_ended(w.now);
                    Ok(Effects::default())
                }
            };
            if let Ok(fx) = fx {
                timers.extend(fx.timers);
            }
            assert!(
                live.iter().filter(|c| w.hub.conns.contains_key(c)).count()
                    == w.hub.connection_count(),
                "seed {seed} step {step}: connection count"
            );
            live.retain(|c| w.hub.conns.contains_key(c));
        }
        // Everything ends once every socket is gone and every timer fired.
        for c in live.clone() {
            let fx = w.drop_conn(c);
            timers.extend(fx.timers);
        }
        w.later(RING_MS + GRACE_MS);
        while let Some(t) = timers.pop() {
            let fx = w.run(|h, now| fire(h, t, now));
            timers.extend(fx.timers);
        }
        assert_eq!(w.hub.call_count(), 0, "seed {seed}: calls left");
        assert!(w.hub.users.is_empty(), "seed {seed}: users left");
        assert!(
            w.created.iter().all(|id| w.ended.contains(id)),
            "seed {seed}: a call never ended"
        );
        // The walk reached every kind of change, not only refusals.
        for kind in ["created", "ringing", "answered", "ended", "quality"] {
            let n = w.writes.get(kind).copied().unwrap_or(0);
            assert!(
                n >= 10,
                "seed {seed}: only {n} `{kind}` writes: {:?}",
                w.writes
            );
        }
    }
}

mod queues;
