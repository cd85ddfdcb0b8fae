//! Automatic call distribution (ACD): the pure core of one queue.
//!
//! A [`Queue`] holds the callers waiting in arrival order and the member
//! agents with their state, and decides whom to offer which call: only
//! agents who are available, signed in, not in a call, not in wrap-up and
//! not already ringing with another offer; the longest-waiting caller first.
//! It takes time as an argument (`now_ms`, ms since the Unix epoch) and
//! returns [`Action`]s; sockets, timers and the store are the caller's.
//!
//! Who wins a call offered to several agents (`ring_all`) is not decided
//! here: the store's conditional update picks the one accept that counts,
//! and the winner is then reported with [`Queue::answer`], which withdraws
//! the other offers. A second `answer` for the same call is refused.
//!
//! Rules, after Amazon Connect's routing profiles and Twilio TaskRouter:
//! - **Strategies** ([`Strategy`]): `longest_idle` offers to the agent idle
//!   the longest (idle since the end of their wrap-up, or since they became
//!   available); `round_robin` to the next member after the last one
//!   offered, in a fixed order; `ring_all` to every eligible agent at once.
//! - **Ring time**: an offer not answered in `ring_ms` lapses and the call
//!   goes to the next agent, preferring agents not yet offered this call in
//!   the current round; once every eligible agent was tried, a new round
//!   starts. A decline counts like a lapse. An agent who let a call lapse or
//!   declined it is not offered that call again for one ring time.
//! - **Presence and queue work are apart**: an agent is offered a call only
//!   when `available` *and* free (not ringing, talking or in wrap-up); a
//!   queue call and its wrap-up go on whatever the presence does meanwhile
//!   (a dropped socket mid-call does not make a talking agent free).
//! - **Lapses**: an agent who lets `lapse_limit` offers in a row lapse or
//!   declines them is set away ([`Action::SetAway`]); answering resets the
//!   count.
//! - **Maximum wait**: a caller waiting `max_wait_ms` leaves the queue with
//!   [`Action::Leave`]: end as `no_answer`, or overflow to another queue.
//! - **Wrap-up**: after a queue call, the agent gets `wrap_up_ms` of
//!   after-call work before the next offer.
//! - **Position and estimated wait** ([`Action::Position`]) are sent to a
//!   caller when they change: EWT = position × average handle time ÷ staffed
//!   agents (available, ringing, talking or in wrap-up), with the handle
//!   time (talk + wrap-up) averaged over the calls handled so far, 120 s
//!   before the first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::store::UserId;

pub mod hours;
pub use hours::{Hours, HoursError};

/// An agent: the user's key.
pub type AgentId = UserId;

/// Handle time assumed before any call was handled, ms.
pub const DEFAULT_HANDLE_MS: u64 = 120_000;
/// Service level threshold: a call answered within this wait counts as
/// answered in time (the industry's 80/20 figure), ms.
pub const SERVICE_LEVEL_MS: u64 = 20_000;

/// Whom a queue offers a waiting call. On the wire and in the store:
/// `longest_idle`, `round_robin`, `ring_all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The eligible agent idle the longest.
    LongestIdle,
    /// The next eligible member after the last one offered, in member order.
    RoundRobin,
    /// Every eligible agent at once; first accept wins.
    RingAll,
}

impl Strategy {
    /// The wire and store name, e.g. `"longest_idle"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LongestIdle => "longest_idle",
            Self::RoundRobin => "round_robin",
            Self::RingAll => "ring_all",
        }
    }

    /// The strategy of a wire or store name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::LongestIdle, Self::RoundRobin, Self::RingAll]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// What happens to a caller who waited the maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtMaxWait {
    /// The call ends as `no_answer`.
    NoAnswer,
    /// The caller moves to another queue (its id), keeping their call.
    Overflow(String),
}

/// A queue's routing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Whom to offer.
    pub strategy: Strategy,
    /// How long one offer rings before it lapses, ms.
    pub ring_ms: u64,
    /// How long a caller may wait in all, ms.
    pub max_wait_ms: u64,
    /// What happens then.
    pub at_max_wait: AtMaxWait,
    /// After-call work time after each queue call, ms.
    pub wrap_up_ms: u64,
    /// Lapsed or declined offers in a row that set an agent away.
    pub lapse_limit: u32,
}

/// What an agent is doing, as the rest of Switchboard knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPresence {
    /// Signed in and `available`.
    Available,
    /// Signed in and `away` or `dnd`.
    Away,
    /// No endpoint connected.
    Offline,
    /// In a call that is not from this queue.
    OnCall,
}

/// Why an offer was taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withdrawn {
    /// Another agent answered (`answered_elsewhere`).
    AnsweredElsewhere,
    /// Not answered within the ring time.
    Lapsed,
    /// The caller hung up, or left at the maximum wait.
    CallerGone,
    /// The agent went away, offline or into another call.
    AgentGone,
}

/// Why a caller left the queue without an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leave {
    /// The maximum wait passed: end the call as `no_answer`.
    NoAnswer,
    /// The maximum wait passed: move the caller to this queue.
    Overflow(String),
}

/// What the caller of the queue must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ring `agent` with `call`.
    Offer {
        /// The waiting call.
        call: String,
        /// The agent to ring.
        agent: AgentId,
    },
    /// Stop ringing `agent` with `call`.
    Withdraw {
        /// The call.
        call: String,
        /// The agent.
        agent: AgentId,
        /// Why.
        why: Withdrawn,
    },
    /// Tell the caller where they stand.
    Position {
        /// The waiting call.
        call: String,
        /// 1 for the next caller to be served.
        position: usize,
        /// Estimated wait, ms.
        ewt_ms: u64,
    },
    /// Set the agent's presence to `away` (too many lapsed offers).
    SetAway {
        /// The agent.
        agent: AgentId,
    },
    /// The caller leaves the queue without an agent.
    Leave {
        /// The call.
        call: String,
        /// How.
        outcome: Leave,
    },
}

/// Why [`Queue::answer`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcdError {
    /// The call is not waiting here (answered already, abandoned, left).
    #[error("call {0} is not waiting in this queue")]
    NotWaiting(String),
    /// The agent has no offer of this call.
    #[error("agent {agent} was not offered call {call}")]
    NotOffered {
        /// The call.
        call: String,
        /// The agent.
        agent: AgentId,
    },
}

/// A queue's figures (`GET /v1/queues/{id}/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Callers waiting now.
    pub waiting: usize,
    /// The longest current wait, ms.
    pub longest_wait_ms: u64,
    /// Agents available (idle or ringing).
    pub agents_available: usize,
    /// Agents talking (a queue call or another).
    pub agents_busy: usize,
    /// Agents in wrap-up.
    pub agents_wrap_up: usize,
    /// Calls that entered the queue.
    pub entered: u64,
    /// Offers made.
    pub offered: u64,
    /// Calls answered by an agent.
    pub answered: u64,
    /// Callers who hung up while waiting.
    pub abandoned: u64,
    /// Calls answered within [`SERVICE_LEVEL_MS`] of entering.
    pub answered_in_time: u64,
    /// Average wait of answered calls, ms (0 before the first).
    pub average_wait_ms: u64,
    /// Average handle time (talk + wrap-up) of handled calls, ms.
    pub average_handle_ms: u64,
}

/// What an agent is doing for this queue (their presence is apart).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Activity {
    /// Free since `since` (ms): the end of their last wrap-up or offer, or
    /// when they became available.
    Idle { since: u64 },
    /// Ringing with `call` until `until` (ms).
    Ringing {
        call: String,
        until: u64,
        idle_since: u64,
    },
    /// In `call`, from this queue, since `since` (ms).
    Talking { call: String, since: u64 },
    /// After-call work until `until` (ms).
    WrapUp { until: u64 },
}

#[derive(Debug, Clone)]
struct Agent {
    presence: AgentPresence,
    activity: Activity,
    lapses: u32,
}

impl Agent {
    /// May be offered a call now.
    fn eligible(&self) -> bool {
        self.presence == AgentPresence::Available && matches!(self.activity, Activity::Idle { .. })
    }
}

#[derive(Debug, Clone)]
struct Waiting {
    call: String,
    since: u64,
    /// Agents ringing with this call now.
    ringing: BTreeSet<AgentId>,
    /// Agents offered this call in the current round.
    tried: BTreeSet<AgentId>,
    /// Agents who let this call lapse or declined it, and until when (ms)
    /// they are not offered it again.
    refused: BTreeMap<AgentId, u64>,
    /// The last position told to the caller.
    told: Option<(usize, u64)>,
}

/// One queue: waiting callers and member agents. See the module docs.
#[derive(Debug, Clone)]
pub struct Queue {
    config: QueueConfig,
    waiting: VecDeque<Waiting>,
    agents: BTreeMap<AgentId, Agent>,
    /// Round robin: the member offered last.
    last_offered: Option<AgentId>,
    stats: QueueStats,
    handled: u64,
    handle_ms_total: u64,
    wait_ms_total: u64,
}

impl Queue {
    /// An empty queue with no members.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            waiting: VecDeque::new(),
            agents: BTreeMap::new(),
            last_offered: None,
            stats: QueueStats::default(),
            handled: 0,
            handle_ms_total: 0,
            wait_ms_total: 0,
        }
    }

    /// The routing settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Changes the routing settings; offers ringing and callers waiting
    /// keep the times they were given, later ones follow the new settings.
    pub fn set_config(&mut self, config: QueueConfig) {
        self.config = config;
    }

    /// The members, in id order.
    pub fn members(&self) -> Vec<AgentId> {
        self.agents.keys().copied().collect()
    }

    /// A member's presence as this queue last heard it; `None` for a
    /// non-member.
    pub fn presence(&self, agent: AgentId) -> Option<AgentPresence> {
        self.agents.get(&agent).map(|a| a.presence)
    }

    /// Whether a member is busy with this queue: ringing with one of its
    /// calls, talking in one, or in wrap-up after one.
    pub fn engaged(&self, agent: AgentId) -> bool {
        self.agents
            .get(&agent)
            .is_some_and(|a| !matches!(a.activity, Activity::Idle { .. }))
    }

    /// Whether a member is in after-call work.
    pub fn in_wrap_up(&self, agent: AgentId) -> bool {
        self.agents
            .get(&agent)
            .is_some_and(|a| matches!(a.activity, Activity::WrapUp { .. }))
    }

    /// The calls waiting, longest-waiting first, with when each entered
    /// (ms since the epoch).
    pub fn waiting(&self) -> Vec<(String, u64)> {
        self.waiting
            .iter()
            .map(|w| (w.call.clone(), w.since))
            .collect()
    }

    /// Adds a member in the given presence (and offers them a waiting call
    /// when they are available). For a member already there this is
    /// [`Queue::set_presence`]: their calls and wrap-up are kept.
    pub fn add_member(
        &mut self,
        agent: AgentId,
        presence: AgentPresence,
        now_ms: u64,
    ) -> Vec<Action> {
        self.add_member_idle_since(agent, presence, now_ms, now_ms)
    }

    /// [`Queue::add_member`] for an agent who has been free since
    /// `idle_since_ms` (e.g. available before the queue was loaded), so
    /// that `longest_idle` ranks them fairly.
    pub fn add_member_idle_since(
        &mut self,
        agent: AgentId,
        presence: AgentPresence,
        idle_since_ms: u64,
        now_ms: u64,
    ) -> Vec<Action> {
        if self.agents.contains_key(&agent) {
            return self.set_presence(agent, presence, now_ms);
        }
        self.agents.insert(
            agent,
            Agent {
                presence,
                activity: Activity::Idle {
                    since: idle_since_ms.min(now_ms),
                },
                lapses: 0,
            },
        );
        self.dispatch(now_ms)
    }

    /// Removes a member; an offer ringing them is withdrawn and goes on.
    pub fn remove_member(&mut self, agent: AgentId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        self.withdraw_from(agent, Withdrawn::AgentGone, &mut out);
        self.agents.remove(&agent);
        out.extend(self.dispatch(now_ms));
        out
    }

    /// The agent's presence changed outside the queue (available, away,
    /// signed out, or in a call that is not from this queue). An offer
    /// ringing an agent who is no longer available is withdrawn. A queue
    /// call they are in, and its wrap-up, go on whatever the presence: an
    /// agent whose socket drops mid-call is not offered a second call when
    /// they come back.
    pub fn set_presence(
        &mut self,
        agent: AgentId,
        presence: AgentPresence,
        now_ms: u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(old) = self.agents.get(&agent).map(|a| a.presence) else {
            return out;
        };
        if presence != AgentPresence::Available {
            self.withdraw_from(agent, Withdrawn::AgentGone, &mut out);
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.presence = presence;
            if presence == AgentPresence::Available && old != AgentPresence::Available {
                a.lapses = 0;
                if let Activity::Idle { since } = &mut a.activity {
                    *since = now_ms;
                }
            }
        }
        out.extend(self.dispatch(now_ms));
        out
    }

    /// A call enters the queue; it is offered at once when an agent is free.
    pub fn enqueue(&mut self, call: &str, now_ms: u64) -> Vec<Action> {
        self.stats.entered += 1;
        self.waiting.push_back(Waiting {
            call: call.to_string(),
            since: now_ms,
            ringing: BTreeSet::new(),
            tried: BTreeSet::new(),
            refused: BTreeMap::new(),
            told: None,
        });
        self.dispatch(now_ms)
    }

    /// The agent declined the offer: it counts as a lapse, and the call goes
    /// to the next agent. A decline of an offer the agent does not hold
    /// changes nothing.
    pub fn decline(&mut self, call: &str, agent: AgentId, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let ringing = self
            .agents
            .get(&agent)
            .is_some_and(|a| matches!(&a.activity, Activity::Ringing { call: c, .. } if c == call));
        if ringing {
            self.lapse(agent, now_ms, &mut out);
        }
        out.extend(self.dispatch(now_ms));
        out
    }

    /// `agent` won `call` (the store's conditional update said so): the
    /// caller leaves the queue, the agent is talking, and the other offers
    /// of the call are withdrawn.
    ///
    /// # Errors
    /// [`AcdError::NotWaiting`] when the call is no longer waiting (a
    /// second accept), [`AcdError::NotOffered`] when the agent was not
    /// ringing with it. Nothing changes then.
    pub fn answer(
        &mut self,
        call: &str,
        agent: AgentId,
        now_ms: u64,
    ) -> Result<Vec<Action>, AcdError> {
        let i = self
            .position_of(call)
            .ok_or_else(|| AcdError::NotWaiting(call.to_string()))?;
        if !self.waiting[i].ringing.contains(&agent) {
            return Err(AcdError::NotOffered {
                call: call.to_string(),
                agent,
            });
        }
        let Some(w) = self.waiting.remove(i) else {
            return Err(AcdError::NotWaiting(call.to_string()));
        };
        let mut out = Vec::new();
        for other in w.ringing.iter().copied().filter(|a| *a != agent) {
            self.free(other);
            out.push(Action::Withdraw {
                call: call.to_string(),
                agent: other,
                why: Withdrawn::AnsweredElsewhere,
            });
        }
        if let Some(a) = self.agents.get_mut(&agent) {
            a.activity = Activity::Talking {
                call: call.to_string(),
                since: now_ms,
            };
            a.lapses = 0;
        }
        let waited = now_ms.saturating_sub(w.since);
        self.stats.answered += 1;
        self.wait_ms_total = self.wait_ms_total.saturating_add(waited);
        if waited <= SERVICE_LEVEL_MS {
            self.stats.answered_in_time += 1;
        }
        out.extend(self.dispatch(now_ms));
        Ok(out)
    }

    /// The caller hung up while waiting (`abandoned`): offers are withdrawn.
    /// A call that is not waiting here changes nothing.
    pub fn abandon(&mut self, call: &str, now_ms: u64) -> Vec<Action> {
        let Some(i) = self.position_of(call) else {
            return Vec::new();
        };
        self.stats.abandoned += 1;
        let mut out = self.remove_waiting(i);
        out.extend(self.dispatch(now_ms));
        out
    }

    /// The agent's queue call `call` ended: wrap-up starts (or, with no
    /// wrap-up time, the agent is free again). Anything else changes
    /// nothing.
    pub fn handled(&mut self, agent: AgentId, call: &str, now_ms: u64) -> Vec<Action> {
        let wrap_up_ms = self.config.wrap_up_ms;
        let Some(a) = self.agents.get_mut(&agent) else {
            return Vec::new();
        };
        let Activity::Talking { call: c, since } = &a.activity else {
            return Vec::new();
        };
        if c != call {
            return Vec::new();
        }
        let until = now_ms.saturating_add(wrap_up_ms);
        self.handled += 1;
        self.handle_ms_total = self
            .handle_ms_total
            .saturating_add(until.saturating_sub(*since));
        a.activity = if wrap_up_ms == 0 {
            Activity::Idle { since: now_ms }
        } else {
            Activity::WrapUp { until }
        };
        self.dispatch(now_ms)
    }

    /// Runs what time brings: offers that rang out, callers at the maximum
    /// wait, wrap-ups and refusal cool-downs that ended. Call it at
    /// [`Queue::next_deadline`].
    pub fn tick(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let rang_out: Vec<AgentId> = self
            .agents
            .iter()
            .filter(
                |(_, a)| matches!(a.activity, Activity::Ringing { until, .. } if until <= now_ms),
            )
            .map(|(id, _)| *id)
            .collect();
        for agent in rang_out {
            self.lapse(agent, now_ms, &mut out);
        }
        for a in self.agents.values_mut() {
            if let Activity::WrapUp { until } = a.activity
                && until <= now_ms
            {
                a.activity = Activity::Idle { since: until };
            }
        }
        let max_wait = self.config.max_wait_ms;
        while let Some(i) = self
            .waiting
            .iter()
            .position(|w| now_ms.saturating_sub(w.since) >= max_wait)
        {
            let call = self.waiting[i].call.clone();
            out.extend(self.remove_waiting(i));
            let outcome = match &self.config.at_max_wait {
                AtMaxWait::NoAnswer => Leave::NoAnswer,
                AtMaxWait::Overflow(q) => Leave::Overflow(q.clone()),
            };
            out.push(Action::Leave { call, outcome });
        }
        out.extend(self.dispatch(now_ms));
        out
    }

    /// When [`Queue::tick`] next has something to do, ms since the epoch.
    pub fn next_deadline(&self) -> Option<u64> {
        let agents = self.agents.values().filter_map(|a| match a.activity {
            Activity::Ringing { until, .. } | Activity::WrapUp { until } => Some(until),
            _ => None,
        });
        let waits = self.waiting.iter().flat_map(|w| {
            std::iter::once(w.since.saturating_add(self.config.max_wait_ms))
                .chain(w.refused.values().copied())
        });
        agents.chain(waits).min()
    }

    /// The queue's figures now.
    pub fn stats(&self, now_ms: u64) -> QueueStats {
        let count = |f: &dyn Fn(&Agent) -> bool| self.agents.values().filter(|a| f(a)).count();
        QueueStats {
            waiting: self.waiting.len(),
            longest_wait_ms: self
                .waiting
                .front()
                .map_or(0, |w| now_ms.saturating_sub(w.since)),
            agents_available: count(&|a| {
                a.presence == AgentPresence::Available
                    && matches!(a.activity, Activity::Idle { .. } | Activity::Ringing { .. })
            }),
            agents_busy: count(&|a| {
                matches!(a.activity, Activity::Talking { .. })
                    || a.presence == AgentPresence::OnCall
            }),
            agents_wrap_up: count(&|a| matches!(a.activity, Activity::WrapUp { .. })),
            average_wait_ms: self
                .wait_ms_total
                .checked_div(self.stats.answered)
                .unwrap_or(0),
            average_handle_ms: self.handle_ms_total.checked_div(self.handled).unwrap_or(0),
            ..self.stats
        }
    }

    fn position_of(&self, call: &str) -> Option<usize> {
        self.waiting.iter().position(|w| w.call == call)
    }

    /// Takes a waiting call out, withdrawing its offers.
    fn remove_waiting(&mut self, i: usize) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(w) = self.waiting.remove(i) {
            for agent in w.ringing {
                self.free(agent);
                out.push(Action::Withdraw {
                    call: w.call.clone(),
                    agent,
                    why: Withdrawn::CallerGone,
                });
            }
        }
        out
    }

    /// An agent ringing with a call is free again, idle as before the offer.
    fn free(&mut self, agent: AgentId) {
        if let Some(a) = self.agents.get_mut(&agent)
            && let Activity::Ringing { idle_since, .. } = a.activity
        {
            a.activity = Activity::Idle { since: idle_since };
        }
    }

    /// Withdraws the offer ringing `agent`, if any.
    fn withdraw_from(&mut self, agent: AgentId, why: Withdrawn, out: &mut Vec<Action>) {
        let Some(Activity::Ringing { call, .. }) =
            self.agents.get(&agent).map(|a| a.activity.clone())
        else {
            return;
        };
        if let Some(w) = self.waiting.iter_mut().find(|w| w.call == call) {
            w.ringing.remove(&agent);
        }
        self.free(agent);
        out.push(Action::Withdraw { call, agent, why });
    }

    /// The agent's offer lapsed or was declined: free them, keep the call
    /// from them for one ring time, count it, and set them away at the
    /// limit.
    fn lapse(&mut self, agent: AgentId, now_ms: u64, out: &mut Vec<Action>) {
        let Some(Activity::Ringing { call, .. }) =
            self.agents.get(&agent).map(|a| a.activity.clone())
        else {
            return;
        };
        let cool_down = now_ms.saturating_add(self.config.ring_ms);
        if let Some(w) = self.waiting.iter_mut().find(|w| w.call == call) {
            w.refused.insert(agent, cool_down);
        }
        self.withdraw_from(agent, Withdrawn::Lapsed, out);
        if let Some(a) = self.agents.get_mut(&agent) {
            a.lapses += 1;
            if self.config.lapse_limit > 0 && a.lapses >= self.config.lapse_limit {
                a.presence = AgentPresence::Away;
                a.lapses = 0;
                out.push(Action::SetAway { agent });
            }
        }
    }

    /// Eligible agents in the order the strategy offers them.
    fn eligible_in_order(&self) -> Vec<AgentId> {
        let mut idle: Vec<(AgentId, u64)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.eligible())
            .filter_map(|(id, a)| match a.activity {
                Activity::Idle { since } => Some((*id, since)),
                _ => None,
            })
            .collect();
        match self.config.strategy {
            Strategy::LongestIdle => idle.sort_by_key(|(id, since)| (*since, *id)),
            Strategy::RoundRobin => {
                // Member order, starting after the one offered last.
                let pivot = self.last_offered.unwrap_or(AgentId::MIN);
                idle.sort_by_key(|(id, _)| (*id <= pivot, *id));
            }
            Strategy::RingAll => {}
        }
        idle.into_iter().map(|(id, _)| id).collect()
    }

    /// Offers waiting calls, longest waiting first, to eligible agents; then
    /// tells callers whose position or estimate changed.
    fn dispatch(&mut self, now_ms: u64) -> Vec<Action> {
        let mut out = Vec::new();
        let mut free = self.eligible_in_order();
        let ring_all = self.config.strategy == Strategy::RingAll;
        for i in 0..self.waiting.len() {
            let w = &mut self.waiting[i];
            w.refused.retain(|_, until| *until > now_ms);
            if free.is_empty() || (!w.ringing.is_empty() && !ring_all) {
                continue;
            }
            let allowed: Vec<AgentId> = free
                .iter()
                .copied()
                .filter(|a| !w.refused.contains_key(a))
                .collect();
            let chosen: Vec<AgentId> = if ring_all {
                allowed
            } else {
                // Agents not yet offered this call in this round first;
                // when every allowed agent was, a new round starts.
                let fresh = allowed.iter().copied().find(|a| !w.tried.contains(a));
                match (fresh, allowed.first().copied()) {
                    (Some(a), _) => vec![a],
                    (None, Some(a)) => {
                        w.tried.clear();
                        vec![a]
                    }
                    (None, None) => Vec::new(),
                }
            };
            if chosen.is_empty() {
                continue;
            }
            let call = w.call.clone();
            for agent in &chosen {
                w.ringing.insert(*agent);
                w.tried.insert(*agent);
            }
            for agent in chosen {
                free.retain(|a| *a != agent);
                if let Some(a) = self.agents.get_mut(&agent) {
                    let idle_since = match a.activity {
                        Activity::Idle { since } => since,
                        _ => now_ms,
                    };
                    a.activity = Activity::Ringing {
                        call: call.clone(),
                        until: now_ms.saturating_add(self.config.ring_ms),
                        idle_since,
                    };
                }
                self.last_offered = Some(agent);
                self.stats.offered += 1;
                out.push(Action::Offer {
                    call: call.clone(),
                    agent,
                });
            }
        }
        self.tell_positions(&mut out);
        out
    }

    /// Position and estimated wait for every caller whose figures changed.
    fn tell_positions(&mut self, out: &mut Vec<Action>) {
        let staffed = self
            .agents
            .values()
            .filter(|a| {
                a.presence == AgentPresence::Available
                    || !matches!(a.activity, Activity::Idle { .. })
            })
            .count()
            .max(1) as u64;
        let handle_ms = self
            .handle_ms_total
            .checked_div(self.handled)
            .unwrap_or(DEFAULT_HANDLE_MS);
        for (i, w) in self.waiting.iter_mut().enumerate() {
            let position = i + 1;
            let ewt_ms = if w.ringing.is_empty() {
                (position as u64).saturating_mul(handle_ms) / staffed
            } else {
                0
            };
            if w.told != Some((position, ewt_ms)) {
                w.told = Some((position, ewt_ms));
                out.push(Action::Position {
                    call: w.call.clone(),
                    position,
                    ewt_ms,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
