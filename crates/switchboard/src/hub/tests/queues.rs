//! Queue calls through the hub (docs/protocol.md §6.4): who is offered a
//! waiting call, what each party hears, and what the CDR keeps. Time moves
//! only when a test says so; queue timers fire at the deadlines the hub
//! armed.

use super::*;
use crate::acd::{AtMaxWait, Hours, QueueConfig, Strategy};
use crate::hub::LiveKind;
use crate::hub::QueueDef;
use softphone_protocol::{AgentState, CallEventType, QueueOffer};

const RING: u64 = 15_000;

fn def(name: &str, strategy: Strategy, members: &[&AuthedUser]) -> QueueDef {
    QueueDef {
        name: name.into(),
        number: None,
        config: QueueConfig {
            strategy,
            ring_ms: RING,
            max_wait_ms: 300_000,
            at_max_wait: AtMaxWait::NoAnswer,
            wrap_up_ms: 30_000,
            lapse_limit: 3,
        },
        hours: None,
        closed_message: None,
        max_wait_message: None,
        members: members.iter().map(|m| m.user_id).collect(),
        names: members
            .iter()
            .map(|m| (m.user_id, m.user.clone()))
            .collect(),
        published: false,
    }
}

impl World {
    fn queues(&mut self, defs: Vec<QueueDef>) -> Effects {
        self.run(|h, now| h.set_queues(ACME, defs, now))
    }

    fn call_queue(&mut self, from: ConnId, call_id: &str, queue: &str) -> Effects {
        self.op(|h, now| h.invite_queue(from, call_id, queue, None, OFFER.into(), now))
            .unwrap_or_else(|e| panic!("queue invite {call_id} refused: {e:?}"))
    }

    fn reject(&mut self, conn: ConnId, call_id: &str) -> Effects {
        self.op(|h, now| h.reject(conn, call_id, RejectReason::Rejected, now))
            .unwrap_or_else(|e| panic!("reject {call_id} refused: {e:?}"))
    }

    /// Moves time on by `ms`, firing every queue timer that falls due, in
    /// deadline order, at its deadline; returns their effects merged.
    fn advance(&mut self, ms: u64) -> Effects {
        let end = self.now + ms;
        let mut all = Effects::default();
        loop {
            self.queue_timers.sort_by_key(|(_, at)| *at);
            let Some(i) = self.queue_timers.iter().position(|(_, at)| *at <= end) else {
                break;
            };
            let (q, at) = self.queue_timers.remove(i);
            self.now = self.now.max(at);
            let fx = self.run(|h, now| h.queue_tick(&q, at, now));
            all.frames.extend(fx.frames);
            all.cdr.extend(fx.cdr);
            all.live.extend(fx.live);
        }
        self.now = end;
        all
    }
}

/// The `call.incoming` of a queue's offer.
fn offer(call_id: &str, from: &AuthedUser, queue: &str, waited_ms: u64) -> ServerMessage {
    ServerMessage::Incoming {
        call_id: call_id.into(),
        from: from.user.clone(),
        sdp: OFFER.into(),
        queue: Some(QueueOffer {
            name: queue.into(),
            waited_ms,
            email: None,
            topic: None,
            page: None,
            earlier_calls: None,
        }),
    }
}

fn offered_to(fx: &Effects, conn: ConnId, call_id: &str) -> bool {
    msgs(fx, conn).iter().any(
        |m| matches!(m, ServerMessage::Incoming { call_id: c, queue: Some(_), .. } if c == call_id),
    )
}

fn queued(fx: &Effects, conn: ConnId) -> Vec<(u32, u64)> {
    msgs(fx, conn)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::Queued {
                position, ewt_ms, ..
            } => Some((position, ewt_ms)),
            _ => None,
        })
        .collect()
}

fn outcomes(fx: &Effects) -> Vec<(UserId, &'static str)> {
    fx.cdr
        .iter()
        .filter_map(|(_, w)| match w {
            CdrWrite::OfferEnded { agent, outcome, .. } => Some((*agent, *outcome)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_queue_call_waits_goes_to_the_longest_idle_agent_and_leaves_a_queue_cdr() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    w.queues(vec![def(
        "support",
        Strategy::LongestIdle,
        &[&bob(), &carol()],
    )]);
    let c1 = w.connect(&carol(), "c1");
    w.later(1_000);
    let b1 = w.connect(&bob(), "b1");
    w.later(1_000);

    let fx = w.call_queue(a1, "q1", "support");
    // The row names the queue and no callee; the caller hears its place.
    assert!(matches!(
        &fx.cdr[0],
        (_, CdrWrite::CreatedQueued { call_id, caller_id: 1, queue, .. })
            if call_id == "q1" && queue == "support"
    ));
    assert_eq!(queued(&fx, a1).len(), 1, "{:?}", msgs(&fx, a1));
    assert_eq!(queued(&fx, a1)[0].0, 1);
    // Carol has been available the longest; she alone rings.
    assert_eq!(msgs(&fx, c1), vec![offer("q1", &alice(), "support", 0)]);
    assert!(msgs(&fx, b1).is_empty());
    assert!(matches!(
        fx.cdr
            .iter()
            .find(|(_, w)| matches!(w, CdrWrite::Offered { .. })),
        Some((_, CdrWrite::Offered { agent: 3, .. }))
    ));

    w.op(|h, now| h.ringing(c1, "q1", now)).unwrap();
    w.later(4_000);
    let fx = w.accept(c1, "q1");
    assert_eq!(outcomes(&fx), vec![(3, "answered")]);
    assert!(fx.cdr.iter().any(|(_, w)| matches!(
        w,
        CdrWrite::Answered { agent: Some(3), endpoint, .. } if endpoint == "c1"
    )));
    assert!(msgs(&fx, a1).contains(&accepted("q1", Some(ANSWER), "c1")));
    assert!(msgs(&fx, c1).contains(&accepted("q1", None, "c1")));

    // The call goes on as any call: the agent's candidates reach the
    // caller, and the caller's hang-up ends it completed for the agent.
    let fx = w
        .op(|h, _| h.candidate(c1, "q1", Some(candidate())))
        .unwrap();
    assert_eq!(msgs(&fx, a1).len(), 1);
    let fx = w.hangup(a1, "q1");
    assert!(msgs(&fx, c1).contains(&ended("q1", EndReason::Completed, Some("alice"))));

    // Carol is in wrap-up: the next call goes to bob.
    let fx = w.call_queue(a1, "q2", "support");
    assert!(offered_to(&fx, b1, "q2"));
    assert!(!offered_to(&fx, c1, "q2"));
}

#[test]
fn ring_all_rings_every_free_agent_and_the_first_accept_wins() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let b2 = w.connect(&bob(), "b2");
    let c1 = w.connect(&carol(), "c1");
    w.queues(vec![def("support", Strategy::RingAll, &[&bob(), &carol()])]);

    let fx = w.call_queue(a1, "q1", "support");
    for conn in [b1, b2, c1] {
        assert!(offered_to(&fx, conn, "q1"), "{conn} not rung");
    }
    let fx = w.accept(c1, "q1");
    // Bob's two endpoints stop ringing; the offer is recorded as lost to
    // another agent.
    for conn in [b1, b2] {
        assert_eq!(
            msgs(&fx, conn),
            vec![ended("q1", EndReason::AnsweredElsewhere, None)]
        );
    }
    assert!(outcomes(&fx).contains(&(2, "answered_elsewhere")));
    // A late accept from bob is refused and changes nothing.
    assert_eq!(
        code(w.op(|h, now| h.accept(b1, "q1", ANSWER.into(), now))),
        ErrorCode::NotFound
    );
    assert_eq!(w.writes.get("answered"), Some(&1));
}

#[test]
fn a_decline_or_a_lapse_goes_to_the_next_agent_and_repeated_lapses_set_away() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let c1 = w.connect(&carol(), "c1");
    let mut d = def("support", Strategy::RoundRobin, &[&bob(), &carol()]);
    d.config.lapse_limit = 2;
    d.config.wrap_up_ms = 0;
    w.queues(vec![d]);

    // Round robin starts with bob; he declines: carol rings.
    let fx = w.call_queue(a1, "q1", "support");
    assert!(offered_to(&fx, b1, "q1"));
    let fx = w.reject(b1, "q1");
    assert_eq!(
        msgs(&fx, b1),
        vec![ended("q1", EndReason::Rejected, Some("bob"))]
    );
    assert!(offered_to(&fx, c1, "q1"));
    assert_eq!(outcomes(&fx), vec![(2, "declined")]);
    // The caller is not told of offers: only where it stands.
    assert!(
        msgs(&fx, a1)
            .iter()
            .all(|m| matches!(m, ServerMessage::Queued { .. }))
    );

    // Carol lets it ring out: after the ring time it goes back to bob.
    let fx = w.advance(RING);
    assert!(msgs(&fx, c1).contains(&ended("q1", EndReason::NoAnswer, None)));
    assert!(outcomes(&fx).contains(&(3, "lapsed")));
    assert!(offered_to(&fx, b1, "q1"));

    // Bob lets it lapse too: his second refusal in a row sets him away,
    // and the tenant sees it.
    let fx = w.advance(RING);
    assert!(msgs(&fx, a1).contains(&presence(&bob(), Presence::Away)));
    assert_eq!(w.hub.presence_of(bob().user_id), Presence::Away);
    assert!(offered_to(&fx, c1, "q1"));
    // Away, bob is offered nothing more.
    let fx = w.advance(RING);
    assert!(!offered_to(&fx, b1, "q1"));

    // Back to available, he is offered the waiting call again.
    let fx = w
        .op(|h, now| h.set_presence(b1, Presence::Available, now))
        .unwrap();
    assert!(offered_to(&fx, b1, "q1"));
}

#[test]
fn callers_wait_with_no_agent_and_the_first_agent_free_takes_the_longest_waiting() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let d1 = w.connect(&dave(), "d1");
    w.queues(vec![def("support", Strategy::LongestIdle, &[&bob()])]);

    let fx = w.call_queue(a1, "first", "support");
    assert_eq!(queued(&fx, a1)[0].0, 1);
    w.later(2_000);
    let fx = w.call_queue(d1, "second", "support");
    assert_eq!(queued(&fx, d1)[0].0, 2);

    // Bob signs in: he is offered the call that waited longest, with the
    // wait so far on the screen-pop.
    w.later(3_000);
    let (b1, fx) = w.connect_fx(&bob(), "b1");
    assert!(msgs(&fx, b1).contains(&offer("first", &alice(), "support", 5_000)));
    assert!(!offered_to(&fx, b1, "second"));

    // Alice gives up: abandoned (not cancelled), bob stops ringing, and
    // dave moves up to first with bob offered his call.
    let fx = w.op(|h, now| h.cancel(a1, "first", now)).unwrap();
    let (_, end) = end_write(&fx);
    assert!(matches!(
        end,
        CdrWrite::Ended {
            reason: EndReason::Abandoned,
            ..
        }
    ));
    assert!(msgs(&fx, a1).contains(&ended("first", EndReason::Abandoned, Some("alice"))));
    assert!(msgs(&fx, b1).contains(&ended("first", EndReason::Cancelled, None)));
    assert!(outcomes(&fx).contains(&(2, "caller_gone")));
    assert!(offered_to(&fx, b1, "second"));
    assert_eq!(queued(&fx, d1).last().map(|p| p.0), Some(1));
}

#[test]
fn an_agent_busy_elsewhere_is_not_offered_until_free() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let b1 = w.connect(&bob(), "b1");
    let d1 = w.connect(&dave(), "d1");
    w.queues(vec![
        def("support", Strategy::LongestIdle, &[&bob()]),
        def("sales", Strategy::LongestIdle, &[&bob()]),
    ]);
    // Bob is in a direct call with dave.
    w.answered(d1, b1, &bob(), "direct");
    let fx = w.call_queue(a1, "q1", "support");
    assert!(!offered_to(&fx, b1, "q1"));

    // The direct call ends: bob is offered the waiting call at once.
    let fx = w.hangup(d1, "direct");
    assert!(offered_to(&fx, b1, "q1"));

    // While support rings him, sales cannot.
    let c1 = w.connect(&carol(), "c1");
    let fx = w.call_queue(c1, "q2", "sales");
    assert!(!offered_to(&fx, b1, "q2"));

    // He answers support; after that call and its wrap-up, sales gets him.
    w.accept(b1, "q1");
    let fx = w.hangup(b1, "q1");
    assert!(!offered_to(&fx, b1, "q2"), "offered during wrap-up");
    let fx = w.advance(30_000);
    assert!(offered_to(&fx, b1, "q2"));
}

#[test]
fn the_maximum_wait_ends_no_answer_with_words_or_overflows() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    let c1 = w.connect(&carol(), "c1");
    let mut first = def("first", Strategy::LongestIdle, &[&bob()]);
    first.config.max_wait_ms = 60_000;
    first.config.at_max_wait = AtMaxWait::Overflow("second".into());
    let mut second = def("second", Strategy::LongestIdle, &[&carol()]);
    second.config.max_wait_ms = 60_000;
    second.max_wait_message = Some("Please try again later.".into());
    // Carol is busy until the call overflows to her queue.
    w.queues(vec![first, second]);
    w.op(|h, now| h.set_presence(c1, Presence::Away, now))
        .unwrap();

    w.call_queue(a1, "q1", "first");
    let fx = w.advance(60_000);
    assert!(fx.cdr.iter().any(|(_, w)| matches!(
        w,
        CdrWrite::Requeued { queue, .. } if queue == "second"
    )));
    let told = msgs(&fx, a1);
    assert!(
        told.iter()
            .any(|m| matches!(m, ServerMessage::Queued { queue, .. } if queue == "second")),
        "{told:?}"
    );

    // Nobody in the second queue either: no_answer, with its words.
    let fx = w.advance(60_000);
    assert!(msgs(&fx, a1).contains(&ServerMessage::Ended {
        call_id: "q1".into(),
        reason: EndReason::NoAnswer,
        by: None,
        message: Some("Please try again later.".into()),
    }));
    assert_eq!(w.hub.call_count(), 0);
}

#[test]
fn a_closed_queue_ends_the_call_unavailable_with_its_message() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    w.connect(&bob(), "b1");
    let mut d = def("support", Strategy::LongestIdle, &[&bob()]);
    // T0 is a Tuesday, 22:13 UTC.
    d.hours = Some(Hours::parse("mon-fri 09:00-17:00", "UTC").unwrap());
    d.closed_message = Some("We open at 9.".into());
    w.queues(vec![d]);
    let fx = w.call_queue(a1, "q1", "support");
    assert!(msgs(&fx, a1).contains(&ServerMessage::Ended {
        call_id: "q1".into(),
        reason: EndReason::Unavailable,
        by: None,
        message: Some("We open at 9.".into()),
    }));
    assert_eq!(w.writes.get("offered"), None);
}

#[test]
fn the_callers_candidates_wait_for_the_agent_and_a_dropped_agent_is_skipped() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    w.queues(vec![def(
        "support",
        Strategy::LongestIdle,
        &[&bob(), &carol()],
    )]);
    w.call_queue(a1, "q1", "support");
    w.op(|h, _| h.candidate(a1, "q1", Some(candidate())))
        .unwrap();
    w.op(|h, _| h.candidate(a1, "q1", None)).unwrap();

    // Bob arrives: the offer, then the kept candidates, in order.
    let (b1, fx) = w.connect_fx(&bob(), "b1");
    let got: Vec<ServerMessage> = msgs(&fx, b1)
        .into_iter()
        .filter(|m| m.call_id() == Some("q1"))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(matches!(
        got[1],
        ServerMessage::Candidate {
            candidate: Some(_),
            ..
        }
    ));
    assert!(matches!(
        got[2],
        ServerMessage::Candidate {
            candidate: None,
            ..
        }
    ));

    // His socket drops while ringing: the offer ends and carol, who
    // arrives, is offered the call.
    let fx = w.drop_conn(b1);
    assert!(outcomes(&fx).contains(&(2, "agent_gone")));
    let (c1, fx) = w.connect_fx(&carol(), "c1");
    assert!(offered_to(&fx, c1, "q1"));
    assert_eq!(w.hub.call_count(), 1);
}

#[test]
fn removing_a_queue_ends_its_waiting_calls_and_the_stats_count_them() {
    let mut w = World::new();
    let a1 = w.connect(&alice(), "a1");
    w.queues(vec![def("support", Strategy::LongestIdle, &[&bob()])]);
    w.call_queue(a1, "q1", "support");
    let stats = w.hub.queue_stats(ACME, "support", w.now).unwrap();
    assert_eq!((stats.waiting, stats.entered), (1, 1));
    assert_eq!(w.hub.find_queue(ACME, "support"), Some("support".into()));
    assert_eq!(w.hub.find_queue(GLOBEX, "support"), None);

    let fx = w.queues(Vec::new());
    assert!(msgs(&fx, a1).iter().any(|m| matches!(
        m,
        ServerMessage::Ended {
            reason: EndReason::Unavailable,
            ..
        }
    )));
    assert!(w.hub.queue_stats(ACME, "support", w.now).is_none());
}

/// The call events supervisors hear, as `type call agent`.
fn call_events(fx: &Effects) -> Vec<String> {
    fx.live
        .iter()
        .filter_map(|e| match &e.kind {
            LiveKind::Call(c) => Some(format!(
                "{} {} {}",
                c.kind.as_str(),
                c.call_id,
                c.agent.as_deref().unwrap_or("-")
            )),
            LiveKind::Agent(_) => None,
        })
        .collect()
}

/// The agent states supervisors hear, as `user state`.
fn agent_events(fx: &Effects) -> Vec<String> {
    fx.live
        .iter()
        .filter_map(|e| match &e.kind {
            LiveKind::Agent(a) => Some(format!(
                "{} {}",
                a.agent.user,
                serde_json::to_value(a.state).unwrap().as_str().unwrap()
            )),
            LiveKind::Call(_) => None,
        })
        .collect()
}

#[test]
fn supervisors_hear_call_events_and_agent_states_and_see_the_queue_now() {
    let mut w = World::new();
    w.hub.watch(ACME);
    let a1 = w.connect(&alice(), "a1");
    let m1 = w.connect(&mallory(), "m1");
    let fx = w.queues(vec![def(
        "support",
        Strategy::LongestIdle,
        &[&bob(), &carol()],
    )]);
    assert!(agent_events(&fx).contains(&"carol offline".to_string()));
    let (b1, fx) = w.connect_fx(&bob(), "b1");
    assert_eq!(agent_events(&fx), vec!["bob available"]);

    let t_call = w.now;
    let fx = w.call_queue(a1, "q1", "support");
    assert_eq!(
        call_events(&fx),
        vec![
            "call.initiated q1 -",
            "call.queued q1 -",
            "call.offered q1 bob"
        ]
    );
    assert_eq!(agent_events(&fx), vec!["bob ringing"]);
    assert!(fx.live.iter().all(|e| e.tenant == ACME));
    // Each event waits for its own CDR write, and carries the webhook's id.
    let offered_seq = fx
        .cdr
        .iter()
        .find(|(_, w)| matches!(w, CdrWrite::Offered { .. }))
        .map(|(s, _)| *s)
        .unwrap();
    let offered = fx
        .live
        .iter()
        .find_map(|e| match &e.kind {
            LiveKind::Call(c) if c.kind == CallEventType::Offered => Some((e.after_seq, c)),
            _ => None,
        })
        .unwrap();
    assert_eq!(offered.0, offered_seq);
    assert_eq!(offered.1.id, format!("q1/call.offered/{t_call}/2"));
    assert_eq!(offered.1.queue.as_deref(), Some("support"));
    assert_eq!(offered.1.caller, "alice");

    w.later(3_000);
    let view = w.hub.supervisor_view(ACME, w.now);
    assert_eq!(view.queues.len(), 1);
    let q = &view.queues[0];
    assert_eq!(q.name, "support");
    assert_eq!(q.longest_wait_ms, 3_000);
    assert_eq!(q.waiting.len(), 1);
    assert_eq!(q.waiting[0].call_id, "q1");
    assert_eq!(q.waiting[0].caller, alice().user);
    assert_eq!(q.waiting[0].since_ms, t_call);
    assert_eq!(q.waiting[0].offered_to, vec!["bob"]);
    let states: Vec<(String, AgentState, u64)> = view
        .agents
        .iter()
        .map(|a| (a.agent.user.clone(), a.state, a.since_ms))
        .collect();
    // Carol, offline, is known by the name the queue lists.
    assert_eq!(
        states,
        vec![
            ("bob".into(), AgentState::Ringing, t_call),
            ("carol".into(), AgentState::Offline, T0),
        ]
    );
    assert_eq!(view.agents[1].agent, carol().user);
    assert_eq!(view.agents[0].queues, vec!["support"]);
    // Another tenant sees nothing of it.
    let other = w.hub.supervisor_view(GLOBEX, w.now);
    assert!(other.queues.is_empty() && other.agents.is_empty());

    let fx = w.accept(b1, "q1");
    assert_eq!(call_events(&fx), vec!["call.answered q1 bob"]);
    assert_eq!(agent_events(&fx), vec!["bob on_call"]);
    w.later(10_000);
    let fx = w.hangup(a1, "q1");
    assert_eq!(call_events(&fx), vec!["call.ended q1 bob"]);
    assert_eq!(agent_events(&fx), vec!["bob wrap_up"]);
    let ended = fx
        .live
        .iter()
        .find_map(|e| match &e.kind {
            LiveKind::Call(c) => Some(c.reason),
            LiveKind::Agent(_) => None,
        })
        .unwrap();
    assert_eq!(ended, Some(EndReason::Completed));
    // Wrap-up ends at the queue's time (30 s): bob is available again.
    let fx = w.advance(30_000);
    assert_eq!(agent_events(&fx), vec!["bob available"]);

    // A caller who gives up while waiting: abandoned, then ended. Bob is
    // away, so nobody is offered the call.
    w.op(|h, now| h.set_presence(b1, Presence::Away, now))
        .unwrap();
    let fx = w.call_queue(a1, "q2", "support");
    assert_eq!(
        call_events(&fx),
        vec!["call.initiated q2 -", "call.queued q2 -"]
    );
    let fx = w.hangup(a1, "q2");
    assert_eq!(
        call_events(&fx),
        vec!["call.abandoned q2 -", "call.ended q2 -"]
    );
    // Direct calls are heard too; a declined one is rejected, then ended.
    let fx = w.invite(a1, "d1", &bob());
    assert_eq!(call_events(&fx), vec!["call.initiated d1 bob"]);
    assert_eq!(agent_events(&fx), vec!["bob ringing"]);
    let fx = w.reject(b1, "d1");
    assert_eq!(
        call_events(&fx),
        vec!["call.rejected d1 bob", "call.ended d1 bob"]
    );
    assert_eq!(agent_events(&fx), vec!["bob away"]);
    // Mallory's tenant has no queue: none of this reached it.
    assert!(w.log.get(&m1).is_none_or(|l| l.is_empty()));
}
