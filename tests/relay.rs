//! A call whose media goes through a real TURN relay (coturn) on both ends:
//! ICE policy `relay` at both engines, TURN REST credentials from the
//! switchboard's `welcome`, audio checked where it arrives.

use softphone_audio::Tone;
use softphone_e2e::{Capture, Party, Server, Turn, dominant, establish};
use softphone_engine::call::CallState;
use softphone_engine::media::{CandidateKind, MediaOptions};
use softphone_engine::{CallAudio, EngineEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_call_carries_audio_through_coturn() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let turn = Turn::start().await;
    let srv = Server::start_with(
        |c| {
            c.turn_urls = vec![turn.url()];
            c.turn_secret = Some(turn.secret.clone());
        },
        &[],
    )
    .await;
    let relay = MediaOptions {
        loopback_only: true,
        relay_only: true,
    };
    let (alice, mut a_ev, _) = srv.engine_with(relay, "alice", "alice-laptop").await;
    let (bob, mut b_ev, _) = srv.engine_with(relay, "bob", "bob-desk").await;
    let (a_hears, b_hears) = (Capture::default(), Capture::default());
    let call = establish(
        Party {
            engine: &alice,
            events: &mut a_ev,
            audio: CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(a_hears.clone()),
            },
        },
        "bob",
        Party {
            engine: &bob,
            events: &mut b_ev,
            audio: CallAudio {
                source: Box::new(Tone::new(1000.0, -12.0)),
                sink: Box::new(b_hears.clone()),
            },
        },
    )
    .await;

    // Both ends report the selected pair: relay to relay.
    for (who, events) in [("alice", &mut a_ev), ("bob", &mut b_ev)] {
        let stats = events
            .wait("stats with a selected pair and packets", |ev| match ev {
                EngineEvent::Stats { call_id, stats }
                    if *call_id == call
                        && stats.local_candidate.is_some()
                        && stats.packets_received > 0 =>
                {
                    Some(*stats)
                }
                _ => None,
            })
            .await;
        assert_eq!(
            (stats.local_candidate, stats.remote_candidate),
            (Some(CandidateKind::Relay), Some(CandidateKind::Relay)),
            "{who}: {stats:?}"
        );
        assert!(stats.packets_received > 0, "{who}: {stats:?}");
    }

    // What arrived through the relay, both ways.
    let at_b = b_hears.listen(1000).await;
    let at_a = a_hears.listen(1000).await;
    assert!(
        (dominant(&at_b) - 440.0).abs() < 5.0,
        "bob heard {} Hz",
        dominant(&at_b)
    );
    assert!(
        (dominant(&at_a) - 1000.0).abs() < 5.0,
        "alice heard {} Hz",
        dominant(&at_a)
    );
    alice.hangup(&call);
    b_ev.wait("the hang-up", |ev| match ev {
        EngineEvent::CallState {
            call_id,
            state: CallState::Ended { .. },
        } if *call_id == call => Some(()),
        _ => None,
    })
    .await;
}
