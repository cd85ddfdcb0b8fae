//! Queue calls in the hub: a call to a queue waits in its [`acd::Queue`],
//! which decides whom to offer it; the hub rings the chosen agents'
//! endpoints, relays the accept that wins, and keeps each queue told of its
//! members' presence (docs/protocol.md §6.4).
//!
//! **Presence for a queue.** A member is `Offline` with no connected
//! endpoint, `Away` when their status is not `available`, `OnCall` when
//! any call occupies them that is not this queue's own business (a direct
//! call, placing a call, another queue's offer or call, or another queue's
//! wrap-up), and `Available` otherwise. Whenever an agent's calls,
//! endpoints or status change they are marked *dirty*; [`Hub::settle`]
//! (run at the end of every hub operation) tells each of their queues the
//! new value and carries out what the queues answer, one action at a time,
//! so that no agent is ever rung by two queues at once.
//!
//! **Who wins.** Every accept is decided here, under the one lock the
//! socket layer holds for each hub operation: the first accept of an offer
//! wins, and [`acd::Queue::answer`] refuses any other.
//!
//! **Media.** The caller's SDP offer and trickled ICE candidates are kept
//! while the call waits and replayed to each agent offered; the agent who
//! answers sends the SDP answer to the caller as in a direct call.

use std::collections::BTreeMap;

use softphone_protocol::{
    EndReason, ErrorCode, IceCandidate, Presence, QueueOffer, ServerMessage, UserRef,
};

use super::{Call, Effects, Hub, HubResult, NO_AGENT, Phase, Timer, check_invite, check_sdp, err};
use crate::acd::{self, Action, AgentPresence, Hours, Withdrawn};
use crate::store::{CdrWrite, TenantId, UserId};

/// A queue's key: its tenant and name.
pub type QueueKey = (TenantId, String);

/// Candidates of a waiting caller kept for replay; more are dropped (a
/// browser gathers a handful).
const MAX_KEPT_CANDIDATES: usize = 64;

/// Bound on one settle pass (actions plus presence updates), against a
/// loop no rule should allow.
const SETTLE_LIMIT: usize = 100_000;

/// A queue as the store defines it, loaded by the socket layer.
#[derive(Debug, Clone)]
pub struct QueueDef {
    /// The queue's name, e.g. `support`.
    pub name: String,
    /// Its number, e.g. `2001`, dialable like the name.
    pub number: Option<String>,
    /// Routing settings.
    pub config: acd::QueueConfig,
    /// Business hours; `None`: always open.
    pub hours: Option<Hours>,
    /// Told to a caller when the queue is closed.
    pub closed_message: Option<String>,
    /// Told to a caller who waited the maximum (when there is no overflow).
    pub max_wait_message: Option<String>,
    /// Member agents.
    pub members: Vec<UserId>,
    /// The members' names, for supervisors (also while offline).
    pub names: std::collections::HashMap<UserId, UserRef>,
    /// Whether guests (the web widget's callers) may call it.
    pub published: bool,
}

/// A queue the hub routes: its definition and routing core.
pub(super) struct LiveQueue {
    pub(super) def: QueueDef,
    pub(super) acd: acd::Queue,
    /// The deadline a [`Timer::QueueTick`] is armed for, if any.
    armed: Option<u64>,
}

/// The queue part of a call to a queue.
pub(super) struct QueueLeg {
    /// The queue it waits in (after an overflow, the queue it moved to).
    pub name: String,
    /// When it entered its first queue, ms since the epoch.
    pub entered_ms: u64,
    /// Agents ringing with it, and their endpoints rung.
    pub offers: BTreeMap<UserId, Vec<String>>,
    /// The caller's trickled candidates, replayed to each agent offered.
    pub candidates: Vec<Option<IceCandidate>>,
    /// The CDR write that created the call: `call.queued` frames wait for it.
    pub created_seq: u64,
    /// What a web caller typed, for the agents' screen-pop.
    pub caller: Option<WebCaller>,
}

/// A web caller (guest) as agents see them before answering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebCaller {
    /// Their email.
    pub email: Option<String>,
    /// Their topic.
    pub topic: Option<String>,
    /// The page they called from.
    pub page: Option<String>,
    /// Earlier calls of the tenant from the same email.
    pub earlier_calls: u32,
}

impl QueueLeg {
    /// Whether `user`'s `endpoint` rings with this call.
    pub fn rings(&self, user: UserId, endpoint: &str) -> bool {
        self.offers
            .get(&user)
            .is_some_and(|eps| eps.iter().any(|d| d == endpoint))
    }

    /// The screen-pop part of `call.incoming`.
    pub fn offer_info(&self, now_ms: u64) -> QueueOffer {
        let c = self.caller.clone().unwrap_or_default();
        QueueOffer {
            name: self.name.clone(),
            waited_ms: now_ms.saturating_sub(self.entered_ms),
            earlier_calls: self.caller.as_ref().map(|_| c.earlier_calls),
            email: c.email,
            topic: c.topic,
            page: c.page,
        }
    }
}

impl Call {
    /// Whether a queue rings `user` with this call now.
    pub(super) fn offered_to(&self, user: UserId) -> bool {
        self.queue
            .as_ref()
            .is_some_and(|l| l.offers.contains_key(&user))
    }
}

impl Hub {
    /// Replaces the queues of `tenant` with `defs` (as the store has them):
    /// new queues start empty, changed ones keep their waiting callers and
    /// agents' activity, members added are told their presence, and a queue
    /// no longer defined ends its waiting calls as `unavailable`.
    pub fn set_queues(&mut self, tenant: TenantId, defs: Vec<QueueDef>, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let gone: Vec<QueueKey> = self
            .queues
            .keys()
            .filter(|(t, n)| *t == tenant && !defs.iter().any(|d| d.name == *n))
            .cloned()
            .collect();
        for key in gone {
            self.remove_queue(&mut fx, &key, now_ms);
        }
        for def in defs {
            let key: QueueKey = (tenant, def.name.clone());
            let q = self.queues.entry(key.clone()).or_insert_with(|| LiveQueue {
                acd: acd::Queue::new(def.config.clone()),
                def: def.clone(),
                armed: None,
            });
            q.acd.set_config(def.config.clone());
            let old = q.acd.members();
            q.def = def;
            let members = q.def.members.clone();
            for agent in old.iter().filter(|a| !members.contains(a)) {
                if let Some(set) = self.agent_queues.get_mut(agent) {
                    set.remove(&key);
                }
                let acts = self
                    .queues
                    .get_mut(&key)
                    .map(|q| q.acd.remove_member(*agent, now_ms))
                    .unwrap_or_default();
                self.queue_work(&key, acts);
                self.dirty.insert(*agent);
            }
            for agent in members.iter().filter(|a| !old.contains(a)) {
                self.agent_queues
                    .entry(*agent)
                    .or_default()
                    .insert(key.clone());
                let p = self.agent_presence(*agent, &key);
                let since = self.users.get(agent).map_or(now_ms, |u| u.available_since);
                let acts = self
                    .queues
                    .get_mut(&key)
                    .map(|q| q.acd.add_member_idle_since(*agent, p, since, now_ms))
                    .unwrap_or_default();
                self.queue_work(&key, acts);
                self.dirty.insert(*agent);
            }
            self.touched.insert(key);
        }
        self.settle(&mut fx, now_ms);
        fx
    }

    fn remove_queue(&mut self, fx: &mut Effects, key: &QueueKey, now_ms: u64) {
        let Some(q) = self.queues.remove(key) else {
            return;
        };
        for agent in q.acd.members() {
            if let Some(set) = self.agent_queues.get_mut(&agent) {
                set.remove(key);
            }
            self.dirty.insert(agent);
        }
        for (call, _) in q.acd.waiting() {
            let words = Some("This line is no longer in service.".to_string());
            self.end_call_with(fx, &call, EndReason::Unavailable, None, words, now_ms);
        }
    }

    /// The name of the tenant's queue dialled as `dial` (its name or its
    /// number), if the hub knows it.
    pub fn find_queue(&self, tenant: TenantId, dial: &str) -> Option<String> {
        self.queues
            .iter()
            .find(|((t, n), q)| {
                *t == tenant && (n == dial || q.def.number.as_deref() == Some(dial))
            })
            .map(|((_, n), _)| n.clone())
    }

    /// Whether the tenant's queue `name` takes calls from guests.
    pub fn queue_published(&self, tenant: TenantId, name: &str) -> bool {
        self.queues
            .get(&(tenant, name.to_string()))
            .is_some_and(|q| q.def.published)
    }

    /// A queue's figures now; `None` for a queue the hub does not know.
    pub fn queue_stats(
        &self,
        tenant: TenantId,
        name: &str,
        now_ms: u64,
    ) -> Option<acd::QueueStats> {
        self.queues
            .get(&(tenant, name.to_string()))
            .map(|q| q.acd.stats(now_ms))
    }

    /// `call.invite` from `conn` to the caller's tenant's queue `queue`
    /// (a name [`Self::find_queue`] returned), with what a web caller
    /// typed for the agents' screen-pop. The call gets a CDR row with
    /// no callee and waits in the queue (`call.queued` to the caller), or
    /// ends at once as `unavailable` with the closed message outside
    /// business hours.
    ///
    /// # Errors
    /// `invalid_value` (call id shape, SDP size), `not_found` (no such
    /// queue), `call_exists`; `internal` for an unregistered connection.
    pub fn invite_queue(
        &mut self,
        conn: super::ConnId,
        call_id: &str,
        queue: &str,
        web: Option<WebCaller>,
        sdp: String,
        now_ms: u64,
    ) -> HubResult {
        let (me, my_endpoint) = self.me(conn)?;
        check_invite(call_id, &sdp)?;
        if self.calls.contains_key(call_id) || self.ended.contains_key(call_id) {
            return Err(err(ErrorCode::CallExists, "call_id already used"));
        }
        let Some(caller) = self.users.get(&me) else {
            return Err(err(ErrorCode::Internal, "connection not registered"));
        };
        let key: QueueKey = (caller.tenant, queue.to_string());
        let Some(q) = self.queues.get(&key) else {
            return Err(err(ErrorCode::NotFound, format!("no queue `{queue}`")));
        };
        let open = q.def.hours.as_ref().is_none_or(|h| h.is_open(now_ms));
        let closed_message = q.def.closed_message.clone();
        let caller_ref = caller.user.clone();
        let tenant = caller.tenant;
        let mut fx = Effects::default();
        // The call's first CDR write, recorded just after the call enters
        // the call table (so that supervisors hear it by name).
        let created_seq = self.cdr_seq + 1;
        self.calls.insert(
            call_id.to_string(),
            Call {
                tenant,
                caller: me,
                caller_endpoint: my_endpoint.clone(),
                callee: NO_AGENT,
                callee_ref: UserRef {
                    user: queue.to_string(),
                    display_name: queue.to_string(),
                },
                caller_ref,
                rung_endpoints: Vec::new(),
                answered_endpoint: None,
                phase: Phase::Ringing,
                ringing_told: false,
                offer: sdp,
                queue: Some(QueueLeg {
                    name: queue.to_string(),
                    entered_ms: now_ms,
                    offers: BTreeMap::new(),
                    candidates: Vec::new(),
                    created_seq,
                    caller: web,
                }),
            },
        );
        let seq = self.record(
            &mut fx,
            CdrWrite::CreatedQueued {
                call_id: call_id.to_string(),
                tenant_id: tenant,
                caller_id: me,
                caller_endpoint: my_endpoint.clone(),
                queue: queue.to_string(),
                at_ms: now_ms,
            },
        );
        debug_assert_eq!(seq, created_seq);
        self.endpoint_joins_call(me, &my_endpoint, call_id);
        if !open {
            let words = closed_message.or_else(|| Some("We are closed now.".to_string()));
            self.end_call_with(
                &mut fx,
                call_id,
                EndReason::Unavailable,
                None,
                words,
                now_ms,
            );
        } else if let Some(q) = self.queues.get_mut(&key) {
            let acts = q.acd.enqueue(call_id, now_ms);
            self.queue_work(&key, acts);
            self.touched.insert(key);
        }
        self.settle(&mut fx, now_ms);
        Ok(fx)
    }

    /// A [`Timer::QueueTick`] fired: offers that rang out go on to the next
    /// agent, callers at the maximum wait leave, wrap-ups end.
    pub fn queue_tick(&mut self, key: &QueueKey, at_ms: u64, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let Some(q) = self.queues.get_mut(key) else {
            return fx;
        };
        if q.armed == Some(at_ms) {
            q.armed = None;
        }
        let acts = q.acd.tick(now_ms);
        // A wrap-up that ended frees the agent for their other queues too.
        self.dirty.extend(q.acd.members());
        self.queue_work(key, acts);
        self.touched.insert(key.clone());
        self.settle(&mut fx, now_ms);
        fx
    }

    /// `call.ringing` from an offered agent's endpoint: the CDR's first
    /// ringing time. The caller is not told (it waits in the queue).
    pub(super) fn offer_ringing(
        &mut self,
        call_id: &str,
        me: UserId,
        ep: &str,
        now_ms: u64,
    ) -> HubResult {
        let mut fx = Effects::default();
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(err(ErrorCode::NotFound, "no such call"));
        };
        if !call.queue.as_ref().is_some_and(|l| l.rings(me, ep)) {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint is not ringing for the call",
            ));
        }
        if !call.ringing_told {
            call.ringing_told = true;
            self.record(
                &mut fx,
                CdrWrite::Ringing {
                    call_id: call_id.to_string(),
                    at_ms: now_ms,
                },
            );
        }
        Ok(fx)
    }

    /// `call.accept` of a queue's offer: the first accept wins the call.
    pub(super) fn accept_offer(
        &mut self,
        call_id: &str,
        me: UserId,
        ep: &str,
        sdp: String,
        now_ms: u64,
    ) -> HubResult {
        let Some(call) = self.calls.get(call_id) else {
            return Err(err(ErrorCode::NotFound, "no such call"));
        };
        let Some(leg) = call.queue.as_ref().filter(|l| l.rings(me, ep)) else {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint was not offered the call",
            ));
        };
        check_sdp(&sdp)?;
        let key: QueueKey = (call.tenant, leg.name.clone());
        let acts = match self.queues.get_mut(&key) {
            Some(q) => q.acd.answer(call_id, me, now_ms).map_err(|e| {
                err(
                    ErrorCode::CallState,
                    format!("the call cannot be taken: {e}"),
                )
            })?,
            None => Vec::new(),
        };
        let me_ref = self.users.get(&me).map(|u| u.user.clone());
        let mut fx = Effects::default();
        self.record(
            &mut fx,
            CdrWrite::OfferEnded {
                call_id: call_id.to_string(),
                agent: me,
                outcome: "answered",
                at_ms: now_ms,
            },
        );
        let seq = self.record(
            &mut fx,
            CdrWrite::Answered {
                call_id: call_id.to_string(),
                endpoint: ep.to_string(),
                agent: Some(me),
                at_ms: now_ms,
            },
        );
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(err(ErrorCode::NotFound, "no such call"));
        };
        let mine = call
            .queue
            .as_mut()
            .and_then(|l| {
                l.candidates.clear();
                l.offers.remove(&me)
            })
            .unwrap_or_default();
        call.callee = me;
        if let Some(r) = me_ref {
            call.callee_ref = r;
        }
        call.phase = Phase::Active;
        call.answered_endpoint = Some(ep.to_string());
        call.offer = String::new();
        // Ringing became talking: queues and supervisors hear it.
        self.dirty.insert(me);
        let (caller, caller_endpoint) = (call.caller, call.caller_endpoint.clone());
        let to_caller = ServerMessage::Accepted {
            call_id: call_id.to_string(),
            sdp: Some(sdp),
            device_id: ep.to_string(),
        };
        self.send(&mut fx, caller, &caller_endpoint, &to_caller, seq);
        let to_me = ServerMessage::Accepted {
            call_id: call_id.to_string(),
            sdp: None,
            device_id: ep.to_string(),
        };
        self.send(&mut fx, me, ep, &to_me, seq);
        let elsewhere = ServerMessage::AnsweredElsewhere {
            call_id: call_id.to_string(),
            device_id: ep.to_string(),
        };
        for d in mine.iter().filter(|d| *d != ep) {
            self.send(&mut fx, me, d, &elsewhere, seq);
            self.endpoint_leaves_call(me, d, call_id);
            self.drop_endpoint_if_idle(&mut fx, me, d);
        }
        self.queue_work(&key, acts);
        self.touched.insert(key);
        Ok(fx)
    }

    /// `call.reject` (or a hang-up) of a queue's offer: the agent declines;
    /// it counts as a lapse and the call goes to the next agent.
    pub(super) fn decline_offer(
        &mut self,
        call_id: &str,
        me: UserId,
        ep: &str,
        now_ms: u64,
    ) -> HubResult {
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(err(ErrorCode::NotFound, "no such call"));
        };
        let Some(leg) = call.queue.as_mut().filter(|l| l.rings(me, ep)) else {
            return Err(err(
                ErrorCode::CallState,
                "this endpoint was not offered the call",
            ));
        };
        let endpoints = leg.offers.remove(&me).unwrap_or_default();
        let key: QueueKey = (call.tenant, leg.name.clone());
        let mut fx = Effects::default();
        let seq = self.record(
            &mut fx,
            CdrWrite::OfferEnded {
                call_id: call_id.to_string(),
                agent: me,
                outcome: "declined",
                at_ms: now_ms,
            },
        );
        let by = self.users.get(&me).map(|u| u.user.user.clone());
        let ended = ServerMessage::Ended {
            call_id: call_id.to_string(),
            reason: EndReason::Rejected,
            by,
            message: None,
        };
        for d in endpoints {
            self.send(&mut fx, me, &d, &ended, seq);
            self.endpoint_leaves_call(me, &d, call_id);
            self.drop_endpoint_if_idle(&mut fx, me, &d);
        }
        if let Some(q) = self.queues.get_mut(&key) {
            let acts = q.acd.decline(call_id, me, now_ms);
            self.queue_work(&key, acts);
            self.touched.insert(key);
        }
        Ok(fx)
    }

    /// A rung endpoint of an offered agent left (socket closed, signed
    /// out): it stops ringing; with the agent's last rung endpoint gone the
    /// offer ends (`agent_gone`) and the queue hears the agent's presence
    /// again.
    pub(super) fn offer_endpoint_gone(
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
        let tenant = call.tenant;
        let Some(leg) = call.queue.as_mut() else {
            return;
        };
        let key: QueueKey = (tenant, leg.name.clone());
        let mut last = false;
        if let Some(eps) = leg.offers.get_mut(&user) {
            eps.retain(|d| d != endpoint);
            if eps.is_empty() {
                leg.offers.remove(&user);
                last = true;
            }
        }
        self.endpoint_leaves_call(user, endpoint, call_id);
        if last {
            self.record(
                fx,
                CdrWrite::OfferEnded {
                    call_id: call_id.to_string(),
                    agent: user,
                    outcome: "agent_gone",
                    at_ms: now_ms,
                },
            );
            // The queue forgets the offer; the settle that follows tells it
            // the agent's presence as it now is.
            if let Some(q) = self.queues.get_mut(&key) {
                let acts = q.acd.set_presence(user, AgentPresence::Offline, now_ms);
                self.queue_work(&key, acts);
                self.touched.insert(key);
            }
        }
    }

    /// `ice.candidate` from the caller of a waiting queue call: kept for
    /// agents offered later, and relayed to those ringing now. `None` when
    /// the frame is not that (the direct-call rules apply).
    pub(super) fn queue_candidate(
        &mut self,
        call_id: &str,
        me: UserId,
        ep: &str,
        candidate: &Option<IceCandidate>,
    ) -> Option<Effects> {
        let call = self.calls.get_mut(call_id)?;
        if call.phase != Phase::Ringing || call.caller != me || call.caller_endpoint != ep {
            return None;
        }
        let leg = call.queue.as_mut()?;
        if leg.candidates.len() < MAX_KEPT_CANDIDATES {
            leg.candidates.push(candidate.clone());
        }
        let targets: Vec<(UserId, String)> = leg
            .offers
            .iter()
            .flat_map(|(a, eps)| eps.iter().map(|d| (*a, d.clone())))
            .collect();
        let text = ServerMessage::Candidate {
            call_id: call_id.to_string(),
            candidate: candidate.clone(),
        }
        .to_json();
        let mut fx = Effects::default();
        for (agent, d) in targets {
            self.send_text(&mut fx, agent, &d, &text, 0);
        }
        Some(fx)
    }

    /// A queue call ends (`call` already out of the call table): ringing
    /// agents stop ringing, the queue forgets a waiting call, and an
    /// answered one starts its agent's wrap-up.
    pub(super) fn queue_call_ends(
        &mut self,
        fx: &mut Effects,
        call_id: &str,
        call: &Call,
        leg: QueueLeg,
        reason: EndReason,
        now_ms: u64,
    ) {
        let to_agents = match reason {
            EndReason::Abandoned | EndReason::Cancelled | EndReason::NoAnswer => {
                EndReason::Cancelled
            }
            other => other,
        };
        for (agent, endpoints) in leg.offers {
            let seq = self.record(
                fx,
                CdrWrite::OfferEnded {
                    call_id: call_id.to_string(),
                    agent,
                    outcome: "caller_gone",
                    at_ms: now_ms,
                },
            );
            let ended = ServerMessage::Ended {
                call_id: call_id.to_string(),
                reason: to_agents,
                by: None,
                message: None,
            };
            for d in endpoints {
                self.send(fx, agent, &d, &ended, seq);
                self.endpoint_leaves_call(agent, &d, call_id);
                self.drop_endpoint_if_idle(fx, agent, &d);
            }
        }
        let key: QueueKey = (call.tenant, leg.name);
        let Some(q) = self.queues.get_mut(&key) else {
            return;
        };
        let acts = match call.phase {
            Phase::Ringing => q.acd.abandon(call_id, now_ms),
            Phase::Active => q.acd.handled(call.callee, call_id, now_ms),
        };
        self.queue_work(&key, acts);
        self.touched.insert(key);
    }

    fn queue_work(&mut self, key: &QueueKey, acts: Vec<Action>) {
        self.work.extend(acts.into_iter().map(|a| (key.clone(), a)));
    }

    /// Wraps a hub operation's result in [`Self::settle`].
    pub(super) fn settled(&mut self, r: HubResult, now_ms: u64) -> HubResult {
        r.map(|mut fx| {
            self.settle(&mut fx, now_ms);
            fx
        })
    }

    /// Carries out pending queue actions and tells queues the presence of
    /// agents marked dirty, one at a time, until nothing is left; then arms
    /// the queues' next deadlines. Run at the end of every operation.
    pub(super) fn settle(&mut self, fx: &mut Effects, now_ms: u64) {
        for _ in 0..SETTLE_LIMIT {
            if let Some((key, action)) = self.work.pop_front() {
                self.run_action(fx, &key, action, now_ms);
                continue;
            }
            let Some(agent) = self.dirty.pop_first() else {
                break;
            };
            self.note_agent_state(fx, agent, now_ms);
            let keys: Vec<QueueKey> = self
                .agent_queues
                .get(&agent)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            for key in keys {
                self.tell_presence(agent, &key, now_ms);
                // Each queue's answer is carried out before the next queue
                // hears: an agent one queue just rang is busy for the next.
                while let Some((k, action)) = self.work.pop_front() {
                    self.run_action(fx, &k, action, now_ms);
                }
            }
        }
        if !self.work.is_empty() || !self.dirty.is_empty() {
            tracing::error!("queue settling did not finish; the rest waits for the next event");
        }
        for key in std::mem::take(&mut self.touched) {
            let Some(q) = self.queues.get_mut(&key) else {
                continue;
            };
            if let Some(at_ms) = q.acd.next_deadline()
                && q.armed.is_none_or(|a| at_ms < a)
            {
                q.armed = Some(at_ms);
                fx.timers.push(Timer::QueueTick { queue: key, at_ms });
            }
        }
    }

    /// Tells queue `key` the agent's presence when it changed.
    fn tell_presence(&mut self, agent: UserId, key: &QueueKey, now_ms: u64) {
        let p = self.agent_presence(agent, key);
        let Some(q) = self.queues.get_mut(key) else {
            return;
        };
        if q.acd.presence(agent).is_some_and(|old| old != p) {
            let acts = q.acd.set_presence(agent, p, now_ms);
            self.queue_work(key, acts);
            self.touched.insert(key.clone());
        }
    }

    /// The agent's presence as queue `key` must see it (module docs).
    fn agent_presence(&self, agent: UserId, key: &QueueKey) -> AgentPresence {
        let Some(u) = self.users.get(&agent) else {
            return AgentPresence::Offline;
        };
        if !u.endpoints.values().any(|d| d.conn.is_some()) {
            return AgentPresence::Offline;
        }
        if u.presence != Presence::Available {
            return AgentPresence::Away;
        }
        // This queue's own offers and answered calls (which keep their leg)
        // are the queue's to track; any other call occupies the agent.
        let in_other_call = u.endpoints.values().flat_map(|d| d.calls.iter()).any(|id| {
            self.calls.get(id).is_some_and(|c| {
                let ours = c.tenant == key.0
                    && c.caller != agent
                    && c.queue.as_ref().is_some_and(|l| l.name == key.1);
                !ours
            })
        });
        let in_other_queue_work = self
            .agent_queues
            .get(&agent)
            .into_iter()
            .flatten()
            .filter(|k| *k != key)
            .any(|k| self.queues.get(k).is_some_and(|q| q.acd.engaged(agent)));
        if in_other_call || in_other_queue_work {
            AgentPresence::OnCall
        } else {
            AgentPresence::Available
        }
    }

    fn run_action(&mut self, fx: &mut Effects, key: &QueueKey, action: Action, now_ms: u64) {
        match action {
            Action::Offer { call, agent } => self.ring_agent(fx, key, &call, agent, now_ms),
            Action::Withdraw { call, agent, why } => {
                self.withdraw_offer(fx, &call, agent, why, now_ms)
            }
            Action::Position {
                call,
                position,
                ewt_ms,
            } => {
                let Some(c) = self.calls.get(&call) else {
                    return;
                };
                let Some(leg) = c.queue.as_ref() else {
                    return;
                };
                let msg = ServerMessage::Queued {
                    call_id: call.clone(),
                    queue: leg.name.clone(),
                    position: u32::try_from(position).unwrap_or(u32::MAX),
                    ewt_ms,
                };
                let (caller, ep, seq) = (c.caller, c.caller_endpoint.clone(), leg.created_seq);
                self.send(fx, caller, &ep, &msg, seq);
            }
            Action::SetAway { agent } => {
                if let Some(u) = self.users.get_mut(&agent) {
                    u.presence = Presence::Away;
                    self.broadcast_presence(fx, agent);
                }
                self.dirty.insert(agent);
            }
            Action::Leave { call, outcome } => match outcome {
                acd::Leave::NoAnswer => {
                    let words = self
                        .queues
                        .get(key)
                        .and_then(|q| q.def.max_wait_message.clone());
                    self.end_call_with(fx, &call, EndReason::NoAnswer, None, words, now_ms);
                }
                acd::Leave::Overflow(to) => self.overflow(fx, key, &call, &to, now_ms),
            },
        }
    }

    /// Moves a call that waited the maximum to queue `to` (ends it as
    /// `no_answer` when that queue is gone).
    fn overflow(&mut self, fx: &mut Effects, from: &QueueKey, call: &str, to: &str, now_ms: u64) {
        let target: QueueKey = (from.0, to.to_string());
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        let (Some(leg), true) = (c.queue.as_mut(), self.queues.contains_key(&target)) else {
            let words = self
                .queues
                .get(from)
                .and_then(|q| q.def.max_wait_message.clone());
            self.end_call_with(fx, call, EndReason::NoAnswer, None, words, now_ms);
            return;
        };
        leg.name = to.to_string();
        self.record(
            fx,
            CdrWrite::Requeued {
                call_id: call.to_string(),
                queue: to.to_string(),
                at_ms: now_ms,
            },
        );
        if let Some(q) = self.queues.get_mut(&target) {
            let acts = q.acd.enqueue(call, now_ms);
            self.queue_work(&target, acts);
        }
        self.touched.insert(target);
    }

    /// Rings an agent's free endpoints with a queue's offer (replaying the
    /// caller's candidates). An agent who is busy after all (an earlier
    /// action of this settle rang them) is told to the queue instead, which
    /// takes the offer back and offers the call on.
    fn ring_agent(
        &mut self,
        fx: &mut Effects,
        key: &QueueKey,
        call_id: &str,
        agent: UserId,
        now_ms: u64,
    ) {
        let p = self.agent_presence(agent, key);
        let free: Vec<String> = match self.users.get(&agent) {
            Some(u) if p == AgentPresence::Available => {
                let mut v: Vec<String> = u
                    .endpoints
                    .iter()
                    .filter(|(id, d)| d.conn.is_some() && !self.endpoint_busy(agent, id, d))
                    .map(|(id, _)| id.clone())
                    .collect();
                v.sort();
                v
            }
            _ => Vec::new(),
        };
        let live = self.calls.get(call_id).is_some_and(|c| c.queue.is_some());
        if free.is_empty() || !live {
            let p = if p == AgentPresence::Available {
                AgentPresence::OnCall
            } else {
                p
            };
            if let Some(q) = self.queues.get_mut(key) {
                let mut acts = q.acd.set_presence(agent, p, now_ms);
                if !live {
                    acts.retain(|a| !matches!(a, Action::Withdraw { call, .. } if call == call_id));
                }
                self.queue_work(key, acts);
                self.touched.insert(key.clone());
            }
            return;
        }
        let seq = self.record(
            fx,
            CdrWrite::Offered {
                call_id: call_id.to_string(),
                agent,
                at_ms: now_ms,
            },
        );
        let Some(c) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(leg) = c.queue.as_mut() else {
            return;
        };
        leg.offers.insert(agent, free.clone());
        let text = ServerMessage::Incoming {
            call_id: call_id.to_string(),
            from: c.caller_ref.clone(),
            sdp: c.offer.clone(),
            queue: Some(leg.offer_info(now_ms)),
        }
        .to_json();
        let kept: Vec<String> = leg
            .candidates
            .iter()
            .map(|cand| {
                ServerMessage::Candidate {
                    call_id: call_id.to_string(),
                    candidate: cand.clone(),
                }
                .to_json()
            })
            .collect();
        for d in &free {
            self.endpoint_joins_call(agent, d, call_id);
            self.send_text(fx, agent, d, &text, seq);
            for t in &kept {
                self.send_text(fx, agent, d, t, seq);
            }
        }
    }

    /// Takes a queue's offer back from an agent: their rung endpoints get
    /// `call.ended` (`answered_elsewhere`, `no_answer` for a lapse,
    /// `cancelled` when the caller left, `unavailable` when the agent
    /// went). An offer already ended here (declined, the endpoint gone)
    /// changes nothing.
    fn withdraw_offer(
        &mut self,
        fx: &mut Effects,
        call_id: &str,
        agent: UserId,
        why: Withdrawn,
        now_ms: u64,
    ) {
        let Some(eps) = self
            .calls
            .get_mut(call_id)
            .and_then(|c| c.queue.as_mut())
            .and_then(|l| l.offers.remove(&agent))
        else {
            return;
        };
        let (outcome, reason) = match why {
            Withdrawn::AnsweredElsewhere => ("answered_elsewhere", EndReason::AnsweredElsewhere),
            Withdrawn::Lapsed => ("lapsed", EndReason::NoAnswer),
            Withdrawn::CallerGone => ("caller_gone", EndReason::Cancelled),
            Withdrawn::AgentGone => ("agent_gone", EndReason::Unavailable),
        };
        let seq = self.record(
            fx,
            CdrWrite::OfferEnded {
                call_id: call_id.to_string(),
                agent,
                outcome,
                at_ms: now_ms,
            },
        );
        let ended = ServerMessage::Ended {
            call_id: call_id.to_string(),
            reason,
            by: None,
            message: None,
        };
        for d in eps {
            self.send(fx, agent, &d, &ended, seq);
            self.endpoint_leaves_call(agent, &d, call_id);
            self.drop_endpoint_if_idle(fx, agent, &d);
        }
    }
}
