//! Every transition the shell handles, at the model level.

use softphone_engine::call::CallState;
use softphone_engine::media::MediaStats;
use softphone_engine::{AuthRefusal, DisconnectReason, EngineEvent};
use softphone_protocol::{CallDirection, EndReason, Presence, UserRef};

use super::*;

const T0: u64 = 1_700_000_000_000;

fn bob() -> UserRef {
    UserRef {
        user: "bob".into(),
        display_name: "Bob Stone".into(),
    }
}

fn alice() -> UserRef {
    UserRef {
        user: "alice".into(),
        display_name: "Alice Martin".into(),
    }
}

fn signed_in() -> Model {
    let mut m = Model::new(Settings {
        endpoint_id: "desktop-1".into(),
        ..Settings::default()
    });
    m.signed_in(
        SessionInfo {
            server: "http://sb".into(),
            tenant: "acme".into(),
            user: alice(),
            endpoint_id: "desktop-1".into(),
            role: softphone_protocol::Role::Agent,
        },
        Some("http://sb|acme|alice".into()),
    );
    m
}

fn state(id: &str, state: CallState) -> EngineEvent {
    EngineEvent::CallState {
        call_id: id.into(),
        state,
    }
}

fn ended(id: &str, reason: EndReason) -> EngineEvent {
    state(id, CallState::Ended { reason })
}

fn incoming(id: &str) -> EngineEvent {
    EngineEvent::Incoming {
        call_id: id.into(),
        from: bob(),
        queue: None,
    }
}

fn notices(fx: &[Effect]) -> Vec<(NoticeLevel, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Emit(AppEvent::Notice { level, message }) => Some((*level, message.clone())),
            _ => None,
        })
        .collect()
}

fn calls_event(fx: &[Effect]) -> Option<Calls> {
    fx.iter().rev().find_map(|e| match e {
        Effect::Emit(AppEvent::Calls { calls }) => Some(calls.clone()),
        _ => None,
    })
}

#[test]
fn an_incoming_call_rings_is_answered_and_ends_without_counting_as_missed() {
    let mut m = signed_in();
    let fx = m.apply(&incoming("c1"), T0);
    assert!(fx.contains(&Effect::Ring { from: bob() }));
    let calls = calls_event(&fx).expect("one calls event");
    assert_eq!(calls.ringing.as_deref(), Some("c1"));
    assert_eq!(calls.current, None, "a ringing call is not the current one");
    assert_eq!(m.tray().status, TrayStatus::Ringing);
    assert!(m.tray().tooltip.contains("Bob Stone is calling"));

    let fx = m.apply(&state("c1", CallState::Connecting), T0 + 3_000);
    assert!(
        fx.contains(&Effect::StopRinging),
        "answering stops the ringer"
    );
    assert_eq!(calls_event(&fx).unwrap().current.as_deref(), Some("c1"));
    m.apply(&state("c1", CallState::Active), T0 + 3_200);
    assert_eq!(m.current().unwrap().answered_at_ms, Some(T0 + 3_200));
    m.apply(&state("c1", CallState::Active), T0 + 9_000);
    assert_eq!(
        m.current().unwrap().answered_at_ms,
        Some(T0 + 3_200),
        "the call timer starts at the first Active"
    );
    assert_eq!(m.tray().status, TrayStatus::InCall);

    let fx = m.apply(&ended("c1", EndReason::Completed), T0 + 60_000);
    assert_eq!(calls_event(&fx).unwrap(), Calls::default());
    assert!(!fx.iter().any(|e| matches!(e, Effect::Missed { .. })));
    assert_eq!(m.snapshot().missed, 0);
    assert_eq!(m.tray().status, TrayStatus::Idle(Presence::Available));
}

#[test]
fn calls_that_ring_out_are_cancelled_or_lost_are_missed_and_others_not() {
    let mut m = signed_in();
    let cases = [
        (EndReason::NoAnswer, true),
        (EndReason::Cancelled, true),
        (EndReason::Failed, true),
        (EndReason::Unavailable, true),
        (EndReason::AnsweredElsewhere, false),
        (EndReason::Rejected, false),
        (EndReason::Incompatible, false),
    ];
    let mut expected = 0;
    for (n, (reason, missed)) in cases.into_iter().enumerate() {
        let id = format!("c{n}");
        m.apply(&incoming(&id), T0);
        let fx = m.apply(&ended(&id, reason), T0 + 1);
        assert!(fx.contains(&Effect::StopRinging), "{reason:?}");
        expected += missed as u32;
        assert_eq!(
            fx.contains(&Effect::Missed { from: bob() }),
            missed,
            "{reason:?}"
        );
        assert_eq!(m.snapshot().missed, expected);
    }
    assert!(m.tray().tooltip.ends_with("— 4 missed"));
    let fx = m.missed_seen();
    assert_eq!(fx, [Effect::Emit(AppEvent::MissedCalls { count: 0 })]);
    assert_eq!(m.snapshot().missed, 0);
}

#[test]
fn a_call_answered_then_lost_is_not_missed_nor_is_our_own() {
    let mut m = signed_in();
    m.apply(&incoming("c1"), T0);
    m.apply(&state("c1", CallState::Connecting), T0);
    m.apply(&state("c1", CallState::Active), T0);
    let fx = m.apply(&ended("c1", EndReason::Failed), T0);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Missed { .. })));
    m.apply(
        &EngineEvent::Dialing {
            call_id: "c2".into(),
            to: bob(),
        },
        T0,
    );
    m.apply(&ended("c2", EndReason::NoAnswer), T0);
    assert_eq!(m.snapshot().missed, 0);
}

#[test]
fn a_dial_shows_the_peer_from_the_first_event() {
    let mut m = signed_in();
    let fx = m.apply(
        &EngineEvent::Dialing {
            call_id: "c9".into(),
            to: bob(),
        },
        T0,
    );
    let calls = calls_event(&fx).unwrap();
    assert_eq!(calls.calls.len(), 1);
    assert_eq!(calls.calls[0].peer, bob());
    assert_eq!(calls.calls[0].direction, CallDirection::Outgoing);
    assert_eq!(calls.calls[0].state, CallState::Dialing);
    assert_eq!(calls.current.as_deref(), Some("c9"));
    assert_eq!(fx.len(), 1, "one event per change");
    let fx = m.apply(&state("c9", CallState::Ringing), T0);
    assert!(
        !fx.contains(&Effect::StopRinging),
        "our own call never rang here"
    );
    let fx = m.apply(
        &EngineEvent::Stats {
            call_id: "c9".into(),
            stats: MediaStats {
                mos: 4.1,
                ..MediaStats::default()
            },
        },
        T0,
    );
    assert_eq!(calls_event(&fx).unwrap().calls[0].stats.unwrap().mos, 4.1);
    assert!(
        m.apply(&state("unknown", CallState::Active), T0).is_empty(),
        "an unknown call changes nothing"
    );
}

#[test]
fn losing_the_server_is_said_in_plain_words_and_coming_back_too() {
    let mut m = signed_in();
    let fx = m.apply(
        &EngineEvent::Reconnecting {
            detail: "socket closed".into(),
        },
        T0,
    );
    assert!(fx.contains(&Effect::Emit(AppEvent::Online { online: false })));
    let n = notices(&fx);
    assert_eq!(n[0].0, NoticeLevel::Warning);
    assert!(n[0].1.contains("Can't reach the server"));
    assert_eq!(m.tray().status, TrayStatus::Offline);
    let fx = m.apply(
        &EngineEvent::Reconnecting {
            detail: "again".into(),
        },
        T0,
    );
    assert!(notices(&fx).is_empty(), "said once");
    let fx = m.apply(
        &EngineEvent::Registered {
            user: alice(),
            tenant: "acme".into(),
        },
        T0,
    );
    assert!(fx.contains(&Effect::Emit(AppEvent::Online { online: true })));
    assert_eq!(notices(&fx)[0].0, NoticeLevel::Info);
}

#[test]
fn an_expired_token_signs_out_forgets_the_token_and_says_so() {
    let mut m = signed_in();
    m.apply(&incoming("c1"), T0);
    let fx = m.apply(
        &EngineEvent::Disconnected {
            reason: DisconnectReason::Unauthorized {
                refusal: AuthRefusal::TokenExpired,
            },
        },
        T0,
    );
    assert!(fx.contains(&Effect::StopRinging));
    assert!(fx.contains(&Effect::EndSession));
    assert!(fx.contains(&Effect::ForgetToken {
        account: "http://sb|acme|alice".into()
    }));
    assert!(fx.contains(&Effect::Emit(AppEvent::Session { session: None })));
    assert_eq!(calls_event(&fx).unwrap(), Calls::default());
    let n = notices(&fx);
    assert_eq!(n[0].0, NoticeLevel::Error);
    assert!(n[0].1.contains("sign in again"));
    assert_eq!(m.session(), None);
    assert_eq!(m.tray().status, TrayStatus::Offline);
}

#[test]
fn a_replaced_endpoint_signs_out_but_keeps_the_token_and_our_own_shutdown_says_nothing() {
    let mut m = signed_in();
    let fx = m.apply(
        &EngineEvent::Disconnected {
            reason: DisconnectReason::Replaced,
        },
        T0,
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::ForgetToken { .. })));
    assert!(notices(&fx)[0].1.contains("elsewhere"));
    let mut m = signed_in();
    m.signed_out();
    let fx = m.apply(
        &EngineEvent::Disconnected {
            reason: DisconnectReason::ShutDown,
        },
        T0,
    );
    assert!(notices(&fx).is_empty());
}

#[test]
fn presence_of_mine_and_of_others_and_offline_cannot_be_chosen() {
    let mut m = signed_in();
    let fx = m.apply(
        &EngineEvent::Presence {
            user: bob(),
            status: Presence::Dnd,
        },
        T0,
    );
    assert_eq!(
        fx,
        [Effect::Emit(AppEvent::PeerPresence {
            user: bob(),
            status: Presence::Dnd
        })]
    );
    let fx = m.apply(
        &EngineEvent::Presence {
            user: alice(),
            status: Presence::Away,
        },
        T0,
    );
    assert_eq!(
        fx,
        [Effect::Emit(AppEvent::Presence {
            status: Presence::Away
        })]
    );
    assert_eq!(m.tray().status, TrayStatus::Idle(Presence::Away));
    let err = m.set_presence(Presence::Offline).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidState);
    assert_eq!(m.snapshot().presence, Presence::Away, "unchanged");
    assert!(m.set_presence(Presence::Dnd).is_ok());
    assert_eq!(m.tray().checked, Some(Presence::Dnd));
    let mut out = Model::new(Settings::default());
    assert!(out.set_presence(Presence::Away).is_err(), "not signed in");
}

#[test]
fn hotkeys_act_on_the_ringing_call_first_then_the_current_one() {
    let mut m = signed_in();
    for a in [
        HotkeyAction::Answer,
        HotkeyAction::Hangup,
        HotkeyAction::Mute,
        HotkeyAction::Hold,
    ] {
        assert_eq!(m.intent(a), None, "no call: {a:?} does nothing");
    }
    m.apply(&incoming("c1"), T0);
    assert_eq!(
        m.intent(HotkeyAction::Answer),
        Some(Intent::Answer("c1".into()))
    );
    assert_eq!(
        m.intent(HotkeyAction::Hangup),
        Some(Intent::Decline("c1".into()))
    );
    assert_eq!(m.intent(HotkeyAction::Mute), None, "nothing to mute yet");
    m.apply(&state("c1", CallState::Connecting), T0);
    m.apply(&state("c1", CallState::Active), T0);
    assert_eq!(
        m.intent(HotkeyAction::Mute),
        Some(Intent::Mute("c1".into(), true))
    );
    assert_eq!(
        m.intent(HotkeyAction::Hold),
        Some(Intent::Hold("c1".into(), true))
    );
    m.set_muted("c1", true).unwrap();
    assert_eq!(m.tray().status, TrayStatus::Muted);
    assert_eq!(
        m.intent(HotkeyAction::Mute),
        Some(Intent::Mute("c1".into(), false))
    );
    m.apply(
        &state(
            "c1",
            CallState::Held {
                local: true,
                remote: false,
            },
        ),
        T0,
    );
    assert_eq!(
        m.intent(HotkeyAction::Hold),
        Some(Intent::Hold("c1".into(), false))
    );
    // A second call rings during the first: Answer and Hang up are about it.
    m.apply(&incoming("c2"), T0);
    assert_eq!(
        m.intent(HotkeyAction::Hangup),
        Some(Intent::Decline("c2".into()))
    );
    assert_eq!(m.calls().current.as_deref(), Some("c1"));
    assert!(m.set_muted("gone", true).is_err());
}

#[test]
fn settings_keep_the_endpoint_id_and_last_account_and_clamp_the_volume() {
    let mut m = signed_in();
    let mut s = m.settings().clone();
    s.ringtone_volume = 3.0;
    s.endpoint_id = "forged".into();
    s.last_account = None;
    let fx = m.set_settings(s);
    assert_eq!(m.settings().endpoint_id, "desktop-1");
    assert_eq!(m.settings().ringtone_volume, 1.0);
    assert_eq!(m.settings().last_account.as_ref().unwrap().user, "alice");
    assert!(matches!(&fx[0], Effect::SaveSettings(s) if s.endpoint_id == "desktop-1"));
}

#[test]
fn signing_in_remembers_the_account_and_signing_out_clears_the_calls() {
    let mut m = Model::new(Settings::default());
    let fx = m.signed_in(
        SessionInfo {
            server: "http://sb".into(),
            tenant: "acme".into(),
            user: alice(),
            endpoint_id: "e".into(),
            role: softphone_protocol::Role::Agent,
        },
        None,
    );
    assert!(matches!(&fx[0], Effect::SaveSettings(s) if s.last_account.is_some()));
    assert_eq!(m.account(), None, "a handed-over session is not stored");
    m.apply(&incoming("c1"), T0);
    let fx = m.signed_out();
    assert!(fx.contains(&Effect::StopRinging));
    assert!(m.snapshot().calls.calls.is_empty());
}

#[test]
fn tel_links_and_typed_numbers() {
    assert_eq!(
        tel_number(&["softphone", "tel:+1-555-0100"]),
        Some("+15550100".into())
    );
    assert_eq!(
        tel_number(&["tel:bob;phone-context=acme"]),
        Some("bob".into())
    );
    assert_eq!(tel_number(&["softphone", "--minimised"]), None);
    assert_eq!(tel_number(&["tel:"]), None);
    assert_eq!(dial_target("  tel:2001 ").unwrap(), "2001");
    assert!(dial_target("   ").is_err());
    assert_eq!(server_url(" http://sb:8080/ ").unwrap(), "http://sb:8080");
    assert!(server_url("sb:8080").is_err());
}

#[test]
fn a_queue_offer_keeps_its_screen_pop_on_the_call_through_the_answer() {
    let mut m = signed_in();
    let offer = softphone_protocol::QueueOffer {
        name: "support".into(),
        waited_ms: 48_000,
        email: Some("zoe@example.org".into()),
        topic: Some("Broken headset".into()),
        page: Some("https://shop.example/help".into()),
        earlier_calls: Some(2),
    };
    let fx = m.apply(
        &EngineEvent::Incoming {
            call_id: "q1".into(),
            from: bob(),
            queue: Some(offer.clone()),
        },
        T0,
    );
    let calls = calls_event(&fx).expect("calls");
    assert_eq!(calls.calls[0].queue.as_ref(), Some(&offer));
    m.apply(&state("q1", CallState::Active), T0 + 2_000);
    assert_eq!(m.current().and_then(|c| c.queue.as_ref()), Some(&offer));
    // A direct call has none.
    let fx = m.apply(&incoming("c2"), T0 + 3_000);
    let calls = calls_event(&fx).expect("calls");
    let direct = calls.calls.iter().find(|c| c.call_id == "c2").expect("c2");
    assert_eq!(direct.queue, None);
}
