//! The client-side call state machine (see `docs/call-states.md`).
//!
//! ```text
//! outgoing: Dialing → Ringing → Connecting → Active ⇄ Held → Ended(reason)
//! incoming: Ringing → Connecting → Active ⇄ Held → Ended(reason)
//! ```
//!
//! Pure: [`CallState::next`] takes the current state and an input and
//! returns the new state or why the input does not apply. Mute is a flag of
//! the call, not a state. `Held` records who holds: this side, the other
//! side, or both; the call is `Active` again only when neither does.

use serde::{Deserialize, Serialize};
use softphone_protocol::{CallDirection as Direction, EndReason};

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CallState {
    /// Invite sent, no device of the callee alerting yet.
    Dialing,
    /// Alerting (outgoing: the callee's device rings; incoming: ours does).
    Ringing,
    /// Answered; ICE and DTLS are connecting.
    Connecting,
    /// Media flowing both ways.
    Active,
    /// On hold: by this side (`local`), the other side (`remote`), or both.
    Held {
        /// This side put the call on hold.
        local: bool,
        /// The other side put the call on hold.
        remote: bool,
    },
    /// Over.
    Ended {
        /// Why.
        reason: EndReason,
    },
}

/// What can happen to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallInput {
    /// (outgoing) `call.ringing` from the server.
    RemoteRinging,
    /// (outgoing) `call.accepted` with the SDP answer.
    RemoteAccepted,
    /// (incoming) the agent answered.
    LocalAnswer,
    /// ICE and DTLS connected.
    MediaConnected,
    /// This side holds (`true`) or resumes (`false`).
    LocalHold(bool),
    /// The other side's re-offer holds (`true`) or resumes (`false`).
    RemoteHold(bool),
    /// The call ended.
    End(EndReason),
}

/// An input that does not apply in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} does not apply to a call that is {state:?}")]
pub struct InvalidTransition {
    /// The state the call was in.
    pub state: CallState,
    /// The refused input.
    pub input: CallInput,
}

impl CallState {
    /// The first state of a call.
    pub fn initial(direction: Direction) -> Self {
        match direction {
            Direction::Outgoing => Self::Dialing,
            Direction::Incoming => Self::Ringing,
        }
    }

    /// Whether the call is over.
    pub fn is_ended(&self) -> bool {
        matches!(self, Self::Ended { .. })
    }

    /// Whether media has been set up (Active or Held).
    pub fn is_established(&self) -> bool {
        matches!(self, Self::Active | Self::Held { .. })
    }

    /// The state after `input`, for a call of `direction`.
    ///
    /// # Errors
    /// [`InvalidTransition`] when the input does not apply (answering an
    /// outgoing call, holding a ringing one, anything after the end).
    pub fn next(self, direction: Direction, input: CallInput) -> Result<Self, InvalidTransition> {
        use CallInput as I;
        use CallState as S;
        let bad = Err(InvalidTransition { state: self, input });
        Ok(match (self, input) {
            (S::Ended { .. }, _) => return bad,
            (_, I::End(reason)) => S::Ended { reason },
            (S::Dialing, I::RemoteRinging) if direction == Direction::Outgoing => S::Ringing,
            (S::Ringing, I::RemoteRinging) if direction == Direction::Outgoing => S::Ringing,
            (S::Dialing | S::Ringing, I::RemoteAccepted) if direction == Direction::Outgoing => {
                S::Connecting
            }
            (S::Ringing, I::LocalAnswer) if direction == Direction::Incoming => S::Connecting,
            (S::Connecting, I::MediaConnected) => S::Active,
            (S::Active | S::Held { .. }, I::MediaConnected) => self,
            (S::Active, I::LocalHold(true)) => S::Held {
                local: true,
                remote: false,
            },
            (S::Active, I::RemoteHold(true)) => S::Held {
                local: false,
                remote: true,
            },
            (S::Active, I::LocalHold(false) | I::RemoteHold(false)) => S::Active,
            (S::Held { remote, .. }, I::LocalHold(local)) => held(local, remote),
            (S::Held { local, .. }, I::RemoteHold(remote)) => held(local, remote),
            _ => return bad,
        })
    }
}

fn held(local: bool, remote: bool) -> CallState {
    if local || remote {
        CallState::Held { local, remote }
    } else {
        CallState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallInput as I;
    use CallState as S;

    fn walk(direction: Direction, inputs: &[CallInput]) -> Result<CallState, InvalidTransition> {
        inputs
            .iter()
            .try_fold(CallState::initial(direction), |s, &i| s.next(direction, i))
    }

    #[test]
    fn outgoing_call_lifecycle() {
        let d = Direction::Outgoing;
        assert_eq!(walk(d, &[]).unwrap(), S::Dialing);
        assert_eq!(walk(d, &[I::RemoteRinging]).unwrap(), S::Ringing);
        assert_eq!(
            walk(d, &[I::RemoteRinging, I::RemoteAccepted]).unwrap(),
            S::Connecting
        );
        assert_eq!(
            walk(d, &[I::RemoteRinging, I::RemoteAccepted, I::MediaConnected]).unwrap(),
            S::Active
        );
        // Answered before any ringing (auto-answer).
        assert_eq!(
            walk(d, &[I::RemoteAccepted, I::MediaConnected]).unwrap(),
            S::Active
        );
        assert!(walk(d, &[I::LocalAnswer]).is_err());
    }

    #[test]
    fn incoming_call_lifecycle() {
        let d = Direction::Incoming;
        assert_eq!(walk(d, &[]).unwrap(), S::Ringing);
        assert_eq!(
            walk(d, &[I::LocalAnswer, I::MediaConnected]).unwrap(),
            S::Active
        );
        assert!(walk(d, &[I::RemoteAccepted]).is_err());
        assert!(
            walk(d, &[I::LocalHold(true)]).is_err(),
            "cannot hold a ringing call"
        );
    }

    #[test]
    fn hold_is_local_remote_or_both() {
        let d = Direction::Outgoing;
        let up = [I::RemoteAccepted, I::MediaConnected];
        let s = walk(d, &[&up[..], &[I::LocalHold(true)]].concat()).unwrap();
        assert_eq!(
            s,
            S::Held {
                local: true,
                remote: false
            }
        );
        let s = s.next(d, I::RemoteHold(true)).unwrap();
        assert_eq!(
            s,
            S::Held {
                local: true,
                remote: true
            }
        );
        let s = s.next(d, I::LocalHold(false)).unwrap();
        assert_eq!(
            s,
            S::Held {
                local: false,
                remote: true
            }
        );
        let s = s.next(d, I::RemoteHold(false)).unwrap();
        assert_eq!(s, S::Active);
    }

    #[test]
    fn end_is_final_from_anywhere() {
        for d in [Direction::Outgoing, Direction::Incoming] {
            let s = CallState::initial(d)
                .next(d, I::End(EndReason::Cancelled))
                .unwrap();
            assert!(s.is_ended());
            assert!(s.next(d, I::MediaConnected).is_err());
            assert!(s.next(d, I::End(EndReason::Completed)).is_err());
        }
    }

    #[test]
    fn states_serialise_as_tagged_objects() {
        let s = S::Held {
            local: true,
            remote: false,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"state":"held","local":true,"remote":false}"#
        );
        let e = S::Ended {
            reason: EndReason::NoAnswer,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"state":"ended","reason":"no_answer"}"#
        );
    }
}
