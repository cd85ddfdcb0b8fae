use super::*;

const RING: u64 = 15_000;
const WRAP: u64 = 30_000;
const MAX_WAIT: u64 = 300_000;

fn queue(strategy: Strategy) -> Queue {
    Queue::new(QueueConfig {
        strategy,
        ring_ms: RING,
        max_wait_ms: MAX_WAIT,
        at_max_wait: AtMaxWait::NoAnswer,
        wrap_up_ms: WRAP,
        lapse_limit: 3,
    })
}

fn offers(actions: &[Action]) -> Vec<(String, AgentId)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Offer { call, agent } => Some((call.clone(), *agent)),
            _ => None,
        })
        .collect()
}

fn withdrawals(actions: &[Action]) -> Vec<(String, AgentId, Withdrawn)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Withdraw { call, agent, why } => Some((call.clone(), *agent, *why)),
            _ => None,
        })
        .collect()
}

fn offer(call: &str, agent: AgentId) -> (String, AgentId) {
    (call.to_string(), agent)
}

/// Members 1, 2, 3 becoming available at 1 000, 2 000 and 3 000 ms.
fn staffed(strategy: Strategy) -> Queue {
    let mut q = queue(strategy);
    for agent in 1..=3 {
        assert!(
            q.add_member(agent, AgentPresence::Available, agent as u64 * 1_000)
                .is_empty()
        );
    }
    q
}

#[test]
fn longest_idle_offers_the_agent_idle_longest_and_idle_restarts_after_wrap_up() {
    let mut q = staffed(Strategy::LongestIdle);
    assert_eq!(offers(&q.enqueue("c1", 10_000)), [offer("c1", 1)]);
    q.answer("c1", 1, 12_000).unwrap();
    assert_eq!(offers(&q.enqueue("c2", 13_000)), [offer("c2", 2)]);
    q.answer("c2", 2, 14_000).unwrap();
    // Agent 1 hangs up and wraps up until 50 000; agent 3 is idle longest.
    assert!(q.handled(1, "c2", 20_000).is_empty(), "not agent 1's call");
    q.handled(1, "c1", 20_000);
    assert_eq!(offers(&q.enqueue("c3", 21_000)), [offer("c3", 3)]);
    q.answer("c3", 3, 22_000).unwrap();
    assert_eq!(q.next_deadline(), Some(20_000 + WRAP));
    // Nobody is free: the caller waits, and is offered to agent 1 when
    // their wrap-up ends.
    assert!(offers(&q.enqueue("c4", 30_000)).is_empty());
    assert!(offers(&q.tick(49_999)).is_empty());
    assert_eq!(offers(&q.tick(50_000)), [offer("c4", 1)]);
}

#[test]
fn round_robin_takes_members_in_turn() {
    let mut q = staffed(Strategy::RoundRobin);
    let mut order = Vec::new();
    for (i, call) in ["a", "b", "c", "d"].iter().enumerate() {
        let now = 10_000 + i as u64 * 1_000;
        let o = offers(&q.enqueue(call, now));
        assert_eq!(o.len(), 1, "{o:?}");
        order.push(o[0].1);
        q.answer(call, o[0].1, now).unwrap();
        q.handled(o[0].1, call, now);
        q.tick(now + WRAP);
    }
    assert_eq!(order, [1, 2, 3, 1]);
}

#[test]
fn ring_all_rings_everyone_first_accept_wins_and_a_second_accept_is_refused() {
    let mut q = staffed(Strategy::RingAll);
    assert_eq!(
        offers(&q.enqueue("c1", 10_000)),
        [offer("c1", 1), offer("c1", 2), offer("c1", 3)]
    );
    let won = q.answer("c1", 2, 11_000).unwrap();
    assert_eq!(
        withdrawals(&won),
        [
            ("c1".into(), 1, Withdrawn::AnsweredElsewhere),
            ("c1".into(), 3, Withdrawn::AnsweredElsewhere)
        ]
    );
    assert_eq!(
        q.answer("c1", 3, 11_001),
        Err(AcdError::NotWaiting("c1".into()))
    );
    // The two losers are free for the next caller; the winner is not.
    assert_eq!(
        offers(&q.enqueue("c2", 12_000)),
        [offer("c2", 1), offer("c2", 3)]
    );
    assert_eq!(
        q.answer("c2", 2, 12_500),
        Err(AcdError::NotOffered {
            call: "c2".into(),
            agent: 2
        })
    );
}

#[test]
fn an_unanswered_offer_lapses_after_the_ring_time_and_goes_to_the_next_agent() {
    let mut q = staffed(Strategy::LongestIdle);
    assert_eq!(offers(&q.enqueue("c1", 10_000)), [offer("c1", 1)]);
    assert_eq!(q.next_deadline(), Some(10_000 + RING));
    assert!(q.tick(10_000 + RING - 1).is_empty());
    let a = q.tick(10_000 + RING);
    assert_eq!(withdrawals(&a), [("c1".into(), 1, Withdrawn::Lapsed)]);
    assert_eq!(offers(&a), [offer("c1", 2)]);
    // Declining is like a lapse: on to the last untried agent.
    assert_eq!(offers(&q.decline("c1", 2, 26_000)), [offer("c1", 3)]);
    // A decline of an offer the agent does not hold changes nothing.
    assert!(q.decline("c1", 2, 26_500).is_empty());
    // All three refused it: nobody is offered it again for one ring time,
    // then a new round starts with the first.
    let a = q.decline("c1", 3, 27_000);
    assert!(offers(&a).is_empty(), "{a:?}");
    assert_eq!(q.next_deadline(), Some(25_000 + RING));
    assert!(offers(&q.tick(25_000 + RING - 1)).is_empty());
    assert_eq!(offers(&q.tick(25_000 + RING)), [offer("c1", 1)]);
}

#[test]
fn an_agent_who_lets_offers_lapse_three_times_in_a_row_is_set_away() {
    let mut q = queue(Strategy::LongestIdle);
    q.add_member(7, AgentPresence::Available, 0);
    assert_eq!(offers(&q.enqueue("c1", 1_000)), [offer("c1", 7)]);
    let mut now = 1_000;
    for lapse in 1..=3 {
        // The offer rings out; the call is not offered back at once...
        now += RING;
        let a = q.tick(now);
        assert_eq!(withdrawals(&a), [("c1".into(), 7, Withdrawn::Lapsed)]);
        let away = a.contains(&Action::SetAway { agent: 7 });
        assert_eq!(away, lapse == 3, "lapse {lapse}: {a:?}");
        assert!(offers(&a).is_empty(), "{a:?}");
        // ...but one ring time later, unless the agent is away now.
        now += RING;
        let a = q.tick(now);
        assert_eq!(offers(&a).len(), usize::from(lapse < 3), "{a:?}");
    }
    // Away: not offered, the caller waits.
    assert_eq!(q.stats(now).agents_available, 0);
    assert!(offers(&q.tick(now + RING)).is_empty());
    // Back to available: offered again, with a fresh count.
    assert_eq!(
        offers(&q.set_presence(7, AgentPresence::Available, now + 20_000)),
        [offer("c1", 7)]
    );
    q.answer("c1", 7, now + 21_000).unwrap();
}

#[test]
fn only_available_free_agents_are_offered() {
    let mut q = queue(Strategy::LongestIdle);
    q.add_member(1, AgentPresence::Away, 0);
    q.add_member(2, AgentPresence::Offline, 0);
    q.add_member(3, AgentPresence::OnCall, 0);
    assert!(offers(&q.enqueue("c1", 1_000)).is_empty());
    // The agent in another call hangs up: available, offered.
    assert_eq!(
        offers(&q.set_presence(3, AgentPresence::Available, 2_000)),
        [offer("c1", 3)]
    );
    // An agent ringing who goes away loses the offer; it goes on.
    q.set_presence(1, AgentPresence::Available, 2_500);
    let a = q.set_presence(3, AgentPresence::Away, 3_000);
    assert_eq!(withdrawals(&a), [("c1".into(), 3, Withdrawn::AgentGone)]);
    assert_eq!(offers(&a), [offer("c1", 1)]);
}

#[test]
fn an_agent_becoming_available_takes_the_longest_waiting_caller_first() {
    let mut q = queue(Strategy::LongestIdle);
    q.add_member(1, AgentPresence::Away, 0);
    q.enqueue("late", 5_000);
    q.enqueue("later", 6_000);
    // Arrival order, whatever the names.
    let mut q2 = q.clone();
    assert_eq!(
        offers(&q.set_presence(1, AgentPresence::Available, 7_000)),
        [offer("late", 1)]
    );
    q2.abandon("late", 6_500);
    assert_eq!(
        offers(&q2.set_presence(1, AgentPresence::Available, 7_000)),
        [offer("later", 1)]
    );
}

#[test]
fn callers_leave_at_the_maximum_wait_as_no_answer_or_to_the_overflow_queue() {
    let mut q = staffed(Strategy::LongestIdle);
    // Offers that ring longer than anyone waits, to see the wait alone.
    q.config.ring_ms = 2 * MAX_WAIT;
    q.enqueue("c1", 10_000);
    q.enqueue("c2", 20_000);
    q.enqueue("c3", 30_000);
    q.enqueue("c4", 40_000);
    let a = q.tick(10_000 + MAX_WAIT);
    assert!(a.contains(&Action::Leave {
        call: "c1".into(),
        outcome: Leave::NoAnswer
    }));
    assert!(
        withdrawals(&a)
            .iter()
            .any(|(c, _, why)| c == "c1" && *why == Withdrawn::CallerGone),
        "{a:?}"
    );
    // The agent freed by c1 is offered the next caller waiting.
    assert_eq!(offers(&a), [offer("c4", 1)]);

    let mut q = queue(Strategy::RingAll);
    q.config.at_max_wait = AtMaxWait::Overflow("sales".into());
    q.enqueue("c9", 0);
    assert_eq!(q.next_deadline(), Some(MAX_WAIT));
    assert_eq!(
        q.tick(MAX_WAIT),
        [Action::Leave {
            call: "c9".into(),
            outcome: Leave::Overflow("sales".into())
        }]
    );
    assert_eq!(q.stats(MAX_WAIT).waiting, 0);
}

#[test]
fn a_caller_who_hangs_up_while_waiting_is_abandoned_and_their_offers_withdrawn() {
    let mut q = staffed(Strategy::RingAll);
    q.enqueue("c1", 10_000);
    let a = q.abandon("c1", 12_000);
    assert_eq!(withdrawals(&a).len(), 3);
    assert!(q.abandon("c1", 12_001).is_empty(), "only once");
    let s = q.stats(12_000);
    assert_eq!((s.entered, s.offered, s.abandoned, s.waiting), (1, 3, 1, 0));
    assert_eq!(s.agents_available, 3);
}

#[test]
fn callers_are_told_their_position_and_estimated_wait_when_it_changes() {
    let mut q = queue(Strategy::LongestIdle);
    q.add_member(1, AgentPresence::OnCall, 0);
    q.add_member(2, AgentPresence::Away, 0);
    let pos = |a: &[Action]| -> Vec<(String, usize, u64)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Position {
                    call,
                    position,
                    ewt_ms,
                } => Some((call.clone(), *position, *ewt_ms)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        pos(&q.enqueue("c1", 0)),
        [("c1".into(), 1, DEFAULT_HANDLE_MS)]
    );
    assert_eq!(
        pos(&q.enqueue("c2", 1_000)),
        [("c2".into(), 2, 2 * DEFAULT_HANDLE_MS)],
        "c1's figures did not change"
    );
    // An agent in another call does not staff this queue: no change.
    let a = q.set_presence(2, AgentPresence::OnCall, 2_000);
    assert!(pos(&a).is_empty(), "{a:?}");
    // The caller ahead hangs up: c2 moves up, once.
    assert_eq!(
        pos(&q.abandon("c1", 3_000)),
        [("c2".into(), 1, DEFAULT_HANDLE_MS)]
    );
    assert!(pos(&q.tick(3_000)).is_empty());
    let mut q2 = queue(Strategy::LongestIdle);
    q2.add_member(1, AgentPresence::Available, 0);
    q2.enqueue("x", 0);
    q2.answer("x", 1, 1_000).unwrap();
    q2.handled(1, "x", 61_000);
    // One handled call: 60 s talk + 30 s wrap-up = 90 s handle time.
    let a = q2.enqueue("y", 62_000);
    assert_eq!(pos(&a), [("y".into(), 1, 90_000)]);
}

#[test]
fn stats_count_offers_answers_service_level_and_averages() {
    let mut q = staffed(Strategy::LongestIdle);
    q.enqueue("fast", 10_000);
    q.answer("fast", 1, 15_000).unwrap();
    q.enqueue("slow", 20_000);
    q.tick(20_000 + RING);
    q.answer("slow", 3, 50_000).unwrap();
    q.handled(1, "fast", 75_000);
    let s = q.stats(80_000);
    assert_eq!(s.entered, 2);
    assert_eq!(s.offered, 3, "fast to 1, slow to 2 then 3");
    assert_eq!(s.answered, 2);
    assert_eq!(s.answered_in_time, 1);
    assert_eq!(s.average_wait_ms, (5_000 + 30_000) / 2);
    assert_eq!(s.average_handle_ms, 60_000 + WRAP);
    assert_eq!(
        (s.agents_available, s.agents_busy, s.agents_wrap_up),
        (1, 1, 1)
    );
}

#[test]
fn a_talking_agent_whose_socket_drops_is_not_offered_a_second_call() {
    let mut q = queue(Strategy::LongestIdle);
    q.add_member(1, AgentPresence::Available, 0);
    q.enqueue("c1", 1_000);
    q.answer("c1", 1, 2_000).unwrap();
    // Offline and back (reconnect grace) mid-call: still talking.
    q.set_presence(1, AgentPresence::Offline, 3_000);
    q.set_presence(1, AgentPresence::Available, 4_000);
    assert!(offers(&q.enqueue("c2", 5_000)).is_empty());
    // Adding the member again changes nothing either.
    assert!(offers(&q.add_member(1, AgentPresence::Available, 5_500)).is_empty());
    // The call ends: wrap-up, then c2.
    assert!(offers(&q.handled(1, "c1", 6_000)).is_empty());
    assert_eq!(offers(&q.tick(6_000 + WRAP)), [offer("c2", 1)]);
}

#[test]
fn in_ring_all_a_decline_does_not_ring_the_decliner_again_at_once() {
    let mut q = staffed(Strategy::RingAll);
    q.enqueue("c1", 10_000);
    let a = q.decline("c1", 2, 11_000);
    assert_eq!(withdrawals(&a), [("c1".into(), 2, Withdrawn::Lapsed)]);
    assert!(offers(&a).is_empty(), "{a:?}");
    // A fourth agent signing in is rung with the others.
    assert_eq!(
        offers(&q.add_member(4, AgentPresence::Available, 12_000)),
        [offer("c1", 4)]
    );
    assert_eq!(q.stats(12_000).agents_available, 4);
}

#[test]
fn times_near_the_end_of_u64_do_not_overflow() {
    let mut q = queue(Strategy::LongestIdle);
    q.config.max_wait_ms = u64::MAX;
    q.config.ring_ms = u64::MAX;
    q.add_member(1, AgentPresence::Available, 0);
    q.enqueue("c1", 1_000);
    assert_eq!(q.next_deadline(), Some(u64::MAX));
    assert!(
        q.tick(2_000)
            .iter()
            .all(|a| !matches!(a, Action::Leave { .. }))
    );
}

/// Random events against the invariants: offers go only to members who
/// are available and free; an agent rings with at most one call; outside
/// `ring_all` a call rings at most one agent; every caller that entered is
/// waiting, answered, abandoned or gone at the maximum — never lost, never
/// answered twice.
#[test]
fn random_traffic_never_double_offers_or_loses_a_caller() {
    for strategy in [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::RingAll,
    ] {
        let mut q = queue(strategy);
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = 0;
        // The test's own model of the agents.
        let mut available: BTreeSet<AgentId> = (1..=5).collect();
        let mut members: BTreeSet<AgentId> = (1..=5).collect();
        let mut ringing: BTreeMap<AgentId, String> = BTreeMap::new();
        let mut talking: BTreeMap<AgentId, String> = BTreeMap::new();
        let (mut entered, mut answered, mut abandoned, mut left) = (0u64, 0u64, 0u64, 0u64);
        let mut waiting: Vec<String> = Vec::new();
        for agent in 1..=5 {
            q.add_member(agent, AgentPresence::Available, 0);
        }
        for step in 0..5_000 {
            now += rand(4_000);
            let pick = |m: &BTreeMap<AgentId, String>, r: u64| {
                m.iter().nth(r as usize).map(|(a, c)| (*a, c.clone()))
            };
            let actions = match rand(10) {
                0 | 1 => {
                    entered += 1;
                    let call = format!("c{step}");
                    waiting.push(call.clone());
                    q.enqueue(&call, now)
                }
                2 | 3 => match pick(&ringing, rand(5)) {
                    Some((agent, call)) => {
                        let a = q
                            .answer(&call, agent, now)
                            .expect("a ringing offer can be answered");
                        assert_eq!(
                            q.answer(&call, agent, now),
                            Err(AcdError::NotWaiting(call.clone()))
                        );
                        answered += 1;
                        waiting.retain(|c| *c != call);
                        ringing.remove(&agent);
                        talking.insert(agent, call);
                        a
                    }
                    None => q.tick(now),
                },
                4 => match pick(&talking, rand(5)) {
                    Some((agent, call)) => {
                        talking.remove(&agent);
                        q.handled(agent, &call, now)
                    }
                    None => q.tick(now),
                },
                5 if !waiting.is_empty() => {
                    let call = waiting.remove(rand(waiting.len() as u64) as usize);
                    abandoned += 1;
                    q.abandon(&call, now)
                }
                6 => {
                    let agent = 1 + rand(5) as AgentId;
                    let p = [
                        AgentPresence::Available,
                        AgentPresence::Away,
                        AgentPresence::Offline,
                        AgentPresence::OnCall,
                    ][rand(4) as usize];
                    if p == AgentPresence::Available {
                        available.insert(agent);
                    } else {
                        available.remove(&agent);
                    }
                    if members.contains(&agent) {
                        q.set_presence(agent, p, now)
                    } else {
                        members.insert(agent);
                        q.add_member(agent, p, now)
                    }
                }
                7 => match pick(&ringing, rand(5)) {
                    Some((agent, call)) => q.decline(&call, agent, now),
                    None => q.tick(now),
                },
                8 => {
                    let agent = 1 + rand(5) as AgentId;
                    if talking.contains_key(&agent) {
                        q.tick(now)
                    } else {
                        members.remove(&agent);
                        q.remove_member(agent, now)
                    }
                }
                _ => q.tick(now),
            };
            for a in actions {
                match a {
                    Action::Offer { call, agent } => {
                        assert!(
                            members.contains(&agent) && available.contains(&agent),
                            "{strategy:?}: offer to {agent}, not available"
                        );
                        assert!(
                            !talking.contains_key(&agent),
                            "{strategy:?}: offer to a talking agent"
                        );
                        assert!(
                            ringing.insert(agent, call.clone()).is_none(),
                            "{strategy:?}: agent {agent} offered two calls"
                        );
                        if strategy != Strategy::RingAll {
                            let rings = ringing.values().filter(|c| **c == call).count();
                            assert_eq!(rings, 1, "{strategy:?}: {call} rings {rings} agents");
                        }
                    }
                    Action::Withdraw { agent, .. } => {
                        ringing.remove(&agent);
                    }
                    Action::SetAway { agent } => {
                        available.remove(&agent);
                    }
                    Action::Leave { call, .. } => {
                        left += 1;
                        waiting.retain(|c| *c != call);
                    }
                    Action::Position { .. } => {}
                }
            }
            let s = q.stats(now);
            assert_eq!(s.waiting, waiting.len(), "{strategy:?} step {step}");
            assert_eq!(entered, answered + abandoned + left + waiting.len() as u64);
            assert_eq!((s.answered, s.abandoned), (answered, abandoned));
        }
        assert!(answered > 30, "{strategy:?}: only {answered} answered");
    }
}
