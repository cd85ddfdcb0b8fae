//! Sound-card devices through cpal against a real PulseAudio daemon with a
//! null sink: what is played into the sink comes back from its monitor.

use std::time::{Duration, Instant};

use softphone_audio::device::{CpalSink, CpalSource};
use softphone_audio::{FRAME, Sink, Source, Tone, analysis};
use softphone_e2e::{Capture, Party, Server, establish, inside_pulseaudio};
use softphone_engine::call::CallState;
use softphone_engine::{CallAudio, EngineEvent};

/// Plays a tone into the default (null) sink in real time on its own thread.
fn play_into_null_sink(hz: f32, secs: f64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sink = CpalSink::open(None).expect("null sink");
        let mut tone = Tone::new(hz, -6.0);
        let mut f = vec![0.0f32; FRAME];
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed().as_secs_f64() < secs {
            tone.read_frame(&mut f);
            sink.write_frame(&f);
            n += 1;
            let due = start + Duration::from_millis(20 * n as u64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
    })
}

#[test]
fn the_null_sink_monitor_records_what_cpal_plays() {
    if !inside_pulseaudio("the_null_sink_monitor_records_what_cpal_plays") {
        return;
    }
    let names = softphone_audio::device::list().expect("devices");
    assert!(
        names.iter().any(|d| d.input) && names.iter().any(|d| d.output),
        "{names:?}"
    );
    let mut source = CpalSource::open(None).expect("monitor source");
    let player = play_into_null_sink(523.0, 3.5);
    let mut heard = Vec::new();
    let mut f = vec![0.0f32; FRAME];
    // Read on a 20 ms clock, as the engine's media loop does (a tick missed
    // under load is caught up, not skipped): a reader that only sleeps 20 ms
    // between frames falls behind real time, and the source then drops the
    // backlog, which splices the tone and moves its measured pitch.
    let start = Instant::now();
    for n in 1..=160u64 {
        let due = start + Duration::from_millis(20 * n);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        source.read_frame(&mut f);
        heard.extend_from_slice(&f);
    }
    player.join().expect("player");
    let tail = &heard[heard.len() / 2..];
    let hz = analysis::dominant_frequency(tail, 48_000.0, 100.0, 4_000.0);
    assert!((hz - 523.0).abs() < 5.0, "monitor heard {hz} Hz");
    assert!(
        analysis::rms_dbfs(tail) > -30.0,
        "level {}",
        analysis::rms_dbfs(tail)
    );
}

#[test]
fn a_call_whose_microphone_is_the_null_sink_monitor() {
    if !inside_pulseaudio("a_call_whose_microphone_is_the_null_sink_monitor") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let srv = Server::start().await;
        let (alice, mut a_ev, _) = srv.engine("alice", "alice-headset").await;
        let (bob, mut b_ev, _) = srv.engine("bob", "bob-files").await;
        let player = play_into_null_sink(700.0, 6.0);
        let b_hears = Capture::default();
        let call = establish(
            Party {
                engine: &alice,
                events: &mut a_ev,
                audio: CallAudio {
                    source: Box::new(CpalSource::open(None).expect("monitor as microphone")),
                    sink: Box::new(CpalSink::open(None).expect("null sink as speaker")),
                },
            },
            "bob",
            Party {
                engine: &bob,
                events: &mut b_ev,
                audio: CallAudio {
                    source: Box::new(softphone_audio::Silence),
                    sink: Box::new(b_hears.clone()),
                },
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let heard = b_hears.listen(1500).await;
        let hz = analysis::dominant_frequency(&heard, 48_000.0, 100.0, 4_000.0);
        assert!(
            (hz - 700.0).abs() < 5.0,
            "bob heard {hz} Hz through alice's sound card"
        );
        alice.hangup(&call);
        tokio::task::spawn_blocking(move || player.join())
            .await
            .ok();
    });
}

#[test]
fn a_sound_card_that_vanishes_mid_call_is_replaced_and_the_call_goes_on() {
    if !inside_pulseaudio("a_sound_card_that_vanishes_mid_call_is_replaced_and_the_call_goes_on") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let srv = Server::start().await;
        let (alice, mut a_ev, _) = srv.engine("alice", "alice-headset").await;
        let (bob, mut b_ev, _) = srv.engine("bob", "bob-files").await;
        let call = establish(
            Party {
                engine: &alice,
                events: &mut a_ev,
                audio: CallAudio {
                    source: Box::new(softphone_audio::Silence),
                    sink: Box::new(CpalSink::open(None).expect("null sink as speaker")),
                },
            },
            "bob",
            Party {
                engine: &bob,
                events: &mut b_ev,
                audio: CallAudio {
                    source: Box::new(Tone::new(440.0, -12.0)),
                    sink: Box::new(softphone_audio::NullSink),
                },
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Unplug: the null sink goes away under the running stream.
        let ok = std::process::Command::new("pactl")
            .args(["unload-module", "module-null-sink"])
            .status()
            .expect("pactl")
            .success();
        assert!(ok, "pactl unload-module failed");
        let (input, replacement) = a_ev
            .wait("device lost", |ev| match ev {
                EngineEvent::AudioDeviceLost {
                    input, replacement, ..
                } => Some((*input, replacement.clone())),
                _ => None,
            })
            .await;
        assert!(!input, "it was the output that vanished");
        assert!(!replacement.is_empty());
        // The call is still up: a hang-up completes it normally.
        tokio::time::sleep(Duration::from_millis(300)).await;
        alice.hangup(&call);
        a_ev.wait("ended", |ev| {
            matches!(
                ev,
                EngineEvent::CallState {
                    state: CallState::Ended {
                        reason: softphone_protocol::EndReason::Completed
                    },
                    ..
                }
            )
            .then_some(())
        })
        .await;
    });
}
