//! What supervisors see (docs/protocol.md §2.14): a tenant's queues with
//! their waiting callers, every queue member's state and since when
//! ([`Hub::supervisor_view`]), and live events as they happen
//! ([`Effects::live`]): the call events webhooks carry, with the same ids,
//! and each member's change of state.
//!
//! **Agent state** ([`AgentState`]), first that applies: `offline` with no
//! connected endpoint; `on_call` in an answered call or placing one;
//! `ringing` when rung (a queue offer or a direct call); `wrap_up` in a
//! queue's after-call work; `away` with a status other than `available`;
//! `available` otherwise. It is worked out again whenever the hub marks the
//! agent dirty (their calls, endpoints or status changed, or a queue of
//! theirs ticked), so a change is heard in the same operation.

use softphone_protocol::{
    AgentState, CallDirection, CallEvent, CallEventType, EndReason, SupervisedAgent,
    SupervisedQueue, SupervisorView, UserRef, WaitingCaller,
};

use super::{Call, Effects, Hub, NO_AGENT, Phase};
use crate::store::{CdrWrite, TenantId, UserId};

/// Something a tenant's supervisors hear (`GET /v1/events`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveEvent {
    /// Whose.
    pub tenant: TenantId,
    /// Sent once CDR write `after_seq` is committed (like a frame's
    /// [`super::Outbound::after_seq`]), so a supervisor who hears of a call
    /// finds it in the call history.
    pub after_seq: u64,
    /// What.
    pub kind: LiveKind,
}

/// The two kinds of live event.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveKind {
    /// A call event (the webhook event types).
    Call(CallEvent),
    /// A queue member's new state.
    Agent(SupervisedAgent),
}

/// The call a CDR write is about.
pub(super) fn call_of(w: &CdrWrite) -> Option<&str> {
    match w {
        CdrWrite::Created { call_id, .. }
        | CdrWrite::CreatedQueued { call_id, .. }
        | CdrWrite::Requeued { call_id, .. }
        | CdrWrite::Offered { call_id, .. }
        | CdrWrite::OfferEnded { call_id, .. }
        | CdrWrite::Ringing { call_id, .. }
        | CdrWrite::Answered { call_id, .. }
        | CdrWrite::Ended { call_id, .. }
        | CdrWrite::Quality { call_id, .. } => Some(call_id),
    }
}

/// The webhook event id of an event (store.rs `outbox!`): call, type, time
/// and, for an offer, the agent's id.
fn event_id(call_id: &str, kind: CallEventType, at_ms: u64, agent: Option<UserId>) -> String {
    match agent {
        Some(a) => format!("{call_id}/{}/{at_ms}/{a}", kind.as_str()),
        None => format!("{call_id}/{}/{at_ms}", kind.as_str()),
    }
}

impl Hub {
    /// A supervisors' stream of `tenant` opened: live events of the tenant
    /// are made from now on (none are made for a tenant nobody watches).
    pub fn watch(&mut self, tenant: TenantId) {
        *self.watchers.entry(tenant).or_default() += 1;
    }

    /// A stream [`Self::watch`] opened has ended.
    pub fn unwatch(&mut self, tenant: TenantId) {
        if let Some(n) = self.watchers.get_mut(&tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.watchers.remove(&tenant);
            }
        }
    }

    fn watched(&self, tenant: TenantId) -> bool {
        self.watchers.contains_key(&tenant)
    }

    /// Adds the live events of CDR write `w` about `call` (before `w` is
    /// recorded: they wait for its sequence number): the same events the
    /// store writes to the webhook outbox for it. Nothing when no
    /// supervisor watches the call's tenant.
    pub(super) fn live_call_events(&self, fx: &mut Effects, call: &Call, w: &CdrWrite) {
        if !self.watched(call.tenant) {
            return;
        }
        let Some(call_id) = call_of(w) else {
            return;
        };
        let after_seq = self.cdr_seq + 1;
        let queue = match w {
            // The leg still names the queue the call leaves.
            CdrWrite::Requeued { queue: to, .. } => Some(to.clone()),
            _ => call.queue.as_ref().map(|l| l.name.clone()),
        };
        let callee = (call.callee != NO_AGENT).then(|| call.callee_ref.user.clone());
        let mut push = |kind, at_ms: u64, agent: Option<String>, agent_id, reason| {
            fx.live.push(LiveEvent {
                tenant: call.tenant,
                after_seq,
                kind: LiveKind::Call(CallEvent {
                    id: event_id(call_id, kind, at_ms, agent_id),
                    kind,
                    at_ms,
                    call_id: call_id.to_string(),
                    caller: call.caller_ref.user.clone(),
                    agent,
                    queue: queue.clone(),
                    reason,
                }),
            });
        };
        match w {
            CdrWrite::Created { at_ms, .. } => {
                push(CallEventType::Initiated, *at_ms, callee, None, None);
            }
            CdrWrite::CreatedQueued { at_ms, .. } => {
                push(CallEventType::Initiated, *at_ms, None, None, None);
                push(CallEventType::Queued, *at_ms, None, None, None);
            }
            CdrWrite::Requeued { at_ms, .. } => {
                push(CallEventType::Queued, *at_ms, None, None, None);
            }
            CdrWrite::Offered { agent, at_ms, .. } => {
                let name = self.agent_ref(call.tenant, *agent).map(|r| r.user);
                push(CallEventType::Offered, *at_ms, name, Some(*agent), None);
            }
            CdrWrite::Answered { agent, at_ms, .. } => {
                let name = match agent {
                    Some(a) => self.agent_ref(call.tenant, *a).map(|r| r.user),
                    None => callee,
                };
                push(CallEventType::Answered, *at_ms, name, None, None);
            }
            CdrWrite::Ended { at_ms, reason, .. } => {
                let unanswered = call.phase == Phase::Ringing;
                let kind = match reason {
                    EndReason::Rejected | EndReason::Busy => Some(CallEventType::Rejected),
                    EndReason::Abandoned => Some(CallEventType::Abandoned),
                    r if unanswered && r.is_missed(CallDirection::Incoming, false) => {
                        Some(CallEventType::Missed)
                    }
                    _ => None,
                };
                if let Some(k) = kind {
                    push(k, *at_ms, callee.clone(), None, Some(*reason));
                }
                push(CallEventType::Ended, *at_ms, callee, None, Some(*reason));
            }
            CdrWrite::OfferEnded { .. } | CdrWrite::Ringing { .. } | CdrWrite::Quality { .. } => {}
        }
    }

    /// A member's name: from their online record, else from a queue of
    /// the tenant that lists them.
    fn agent_ref(&self, tenant: TenantId, agent: UserId) -> Option<UserRef> {
        if let Some(u) = self.users.get(&agent) {
            return Some(u.user.clone());
        }
        self.agent_queues
            .get(&agent)?
            .iter()
            .filter(|k| k.0 == tenant)
            .find_map(|k| self.queues.get(k)?.def.names.get(&agent).cloned())
    }

    /// The member's state now (module docs).
    fn agent_state(&self, agent: UserId) -> AgentState {
        let Some(u) = self.users.get(&agent) else {
            return AgentState::Offline;
        };
        if !u.endpoints.values().any(|d| d.conn.is_some()) {
            return AgentState::Offline;
        }
        let mut ringing = false;
        for id in u.endpoints.values().flat_map(|d| d.calls.iter()) {
            let Some(c) = self.calls.get(id) else {
                continue;
            };
            let answered_by_me = c.phase == Phase::Active && c.callee == agent;
            if c.caller == agent || answered_by_me {
                return AgentState::OnCall;
            }
            ringing |= c.phase == Phase::Ringing;
        }
        if ringing {
            return AgentState::Ringing;
        }
        let wrapping_up = self
            .agent_queues
            .get(&agent)
            .into_iter()
            .flatten()
            .any(|k| self.queues.get(k).is_some_and(|q| q.acd.in_wrap_up(agent)));
        if wrapping_up {
            AgentState::WrapUp
        } else if u.presence != softphone_protocol::Presence::Available {
            AgentState::Away
        } else {
            AgentState::Available
        }
    }

    /// Works out a member's state again; a change is kept with its time
    /// and told to the tenant's supervisors. A user who is no member of any
    /// queue is forgotten.
    pub(super) fn note_agent_state(&mut self, fx: &mut Effects, agent: UserId, now_ms: u64) {
        let Some(tenant) = self
            .agent_queues
            .get(&agent)
            .and_then(|s| s.iter().next())
            .map(|k| k.0)
        else {
            self.agent_states.remove(&agent);
            return;
        };
        let state = self.agent_state(agent);
        if self.agent_states.get(&agent).map(|s| s.0) == Some(state) {
            return;
        }
        self.agent_states.insert(agent, (state, now_ms));
        if !self.watched(tenant) {
            return;
        }
        if let Some(view) = self.agent_view(tenant, agent) {
            fx.live.push(LiveEvent {
                tenant,
                after_seq: self.cdr_seq,
                kind: LiveKind::Agent(view),
            });
        }
    }

    fn agent_view(&self, tenant: TenantId, agent: UserId) -> Option<SupervisedAgent> {
        let (state, since_ms) = *self.agent_states.get(&agent)?;
        let mut queues: Vec<String> = self
            .agent_queues
            .get(&agent)?
            .iter()
            .filter(|k| k.0 == tenant)
            .map(|k| k.1.clone())
            .collect();
        queues.sort();
        Some(SupervisedAgent {
            agent: self.agent_ref(tenant, agent)?,
            state,
            since_ms,
            queues,
        })
    }

    /// The tenant's queues and their members now, by name
    /// (`GET /v1/supervisor`). A member first seen now counts from now.
    pub fn supervisor_view(&mut self, tenant: TenantId, now_ms: u64) -> SupervisorView {
        let mut keys: Vec<_> = self
            .queues
            .keys()
            .filter(|k| k.0 == tenant)
            .cloned()
            .collect();
        keys.sort();
        let mut members: Vec<UserId> = Vec::new();
        let mut queues = Vec::with_capacity(keys.len());
        for key in &keys {
            let Some(q) = self.queues.get(key) else {
                continue;
            };
            members.extend(q.acd.members());
            let stats = q.acd.stats(now_ms);
            let waiting = q
                .acd
                .waiting()
                .into_iter()
                .filter_map(|(id, since)| {
                    let c = self.calls.get(&id)?;
                    let leg = c.queue.as_ref()?;
                    let offered_to = leg
                        .offers
                        .keys()
                        .filter_map(|a| self.agent_ref(tenant, *a).map(|r| r.user))
                        .collect();
                    Some(WaitingCaller {
                        call_id: id,
                        caller: c.caller_ref.clone(),
                        since_ms: leg.entered_ms.min(since),
                        offered_to,
                    })
                })
                .collect();
            let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            queues.push(SupervisedQueue {
                name: q.def.name.clone(),
                number: q.def.number.clone(),
                waiting,
                longest_wait_ms: stats.longest_wait_ms,
                agents_available: count(stats.agents_available),
                agents_busy: count(stats.agents_busy),
                agents_wrap_up: count(stats.agents_wrap_up),
            });
        }
        members.sort_unstable();
        members.dedup();
        for &m in &members {
            if !self.agent_states.contains_key(&m) {
                let state = self.agent_state(m);
                self.agent_states.insert(m, (state, now_ms));
            }
        }
        let mut agents: Vec<SupervisedAgent> = members
            .into_iter()
            .filter_map(|m| self.agent_view(tenant, m))
            .collect();
        agents.sort_by(|a, b| a.agent.user.cmp(&b.agent.user));
        SupervisorView {
            now_ms,
            queues,
            agents,
        }
    }
}
