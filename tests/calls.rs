//! Real calls through a real switchboard: two engines, real WebRTC on
//! loopback, generators in, analysis of what arrived out.

use std::time::{Duration, Instant};

use softphone_audio::{Tone, analysis};
use softphone_e2e::{Capture, Party, Server, dominant, establish};
use softphone_engine::call::CallState;
use softphone_engine::{CallAudio, EngineEvent};
use softphone_protocol::EndReason;

fn state_of(call: &str, want: CallState) -> impl FnMut(&EngineEvent) -> Option<()> + '_ {
    move |ev| match ev {
        EngineEvent::CallState { call_id, state } if call_id == call && *state == want => Some(()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_tones_both_ways_mutes_holds_and_leaves_a_cdr() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let (alice, mut a_ev, a_token) = srv.engine("alice", "alice-laptop").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "bob-desk").await;
    let (a_hears, b_hears) = (Capture::default(), Capture::default());

    let call = alice
        .dial(
            "bob",
            CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(a_hears.clone()),
            },
        )
        .await
        .unwrap();
    let (incoming, from) = b_ev
        .wait("incoming call", |ev| match ev {
            EngineEvent::Incoming { call_id, from, .. } => Some((call_id.clone(), from.clone())),
            _ => None,
        })
        .await;
    assert_eq!(incoming, call);
    assert_eq!(from.user, "alice");
    a_ev.wait("ringing", state_of(&call, CallState::Ringing))
        .await;

    // The CDR counts from the moment the switchboard took the accept, which
    // lies between these two instants.
    let before_answer = Instant::now();
    bob.answer(
        &call,
        CallAudio {
            source: Box::new(Tone::new(1000.0, -12.0)),
            sink: Box::new(b_hears.clone()),
        },
    )
    .await
    .unwrap();
    let after_answer = Instant::now();
    a_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    b_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    b_ev.wait("first audio", |ev| {
        matches!(ev, EngineEvent::FirstAudio { .. }).then_some(())
    })
    .await;

    // What arrived, not what was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
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

    // Mute: the far end hears digital silence.
    alice.set_mute(&call, true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let muted = analysis::rms_dbfs(&b_hears.listen(1000).await);
    assert!(muted < -60.0, "muted call level {muted} dBFS");
    alice.set_mute(&call, false);

    // Hold by re-offer: both sides show Held, no audio; resume brings it back.
    alice.set_hold(&call, true).await.unwrap();
    a_ev.wait(
        "held (local)",
        state_of(
            &call,
            CallState::Held {
                local: true,
                remote: false,
            },
        ),
    )
    .await;
    b_ev.wait(
        "held (remote)",
        state_of(
            &call,
            CallState::Held {
                local: false,
                remote: true,
            },
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(analysis::rms_dbfs(&b_hears.listen(1000).await) < -60.0);
    assert!(analysis::rms_dbfs(&a_hears.listen(1000).await) < -60.0);
    alice.set_hold(&call, false).await.unwrap();
    a_ev.wait("resumed", state_of(&call, CallState::Active))
        .await;
    b_ev.wait("resumed", state_of(&call, CallState::Active))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let resumed = b_hears.listen(1000).await;
    assert!(
        (dominant(&resumed) - 440.0).abs() < 5.0,
        "after resume bob heard {} Hz",
        dominant(&resumed)
    );

    // Hang up: both ends see Ended(completed); the CDR's duration matches.
    // DTMF as RFC 4733 events: every digit arrives once, in order.
    alice.send_dtmf(&call, "1234#").await.unwrap();
    let mut digits = String::new();
    while digits.len() < 5 {
        let d = b_ev
            .wait("DTMF digit", |ev| match ev {
                EngineEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .await;
        digits.push(d);
    }
    assert_eq!(digits, "1234#");
    assert!(
        alice.send_dtmf(&call, "9x").await.is_err(),
        "a non-digit is refused"
    );

    let before_hangup = Instant::now();
    alice.hangup(&call);
    let ended = CallState::Ended {
        reason: EndReason::Completed,
    };
    a_ev.wait("ended", state_of(&call, ended)).await;
    let after_hangup = Instant::now();
    b_ev.wait("ended", state_of(&call, ended)).await;
    let shortest = before_hangup.duration_since(after_answer).as_millis() as i64;
    let longest = after_hangup.duration_since(before_answer).as_millis() as i64;
    // The server closes the record when the hang-up reaches it, and each
    // engine posts its quality summary just after; give them up to 10 s on a
    // loaded machine rather than a fixed pause.
    let mut cdr = serde_json::Value::Null;
    for _ in 0..100 {
        cdr = srv.get(&format!("/v1/calls/{call}"), &a_token).await;
        let complete = ["end_reason", "caller_quality", "callee_quality"]
            .iter()
            .all(|k| !cdr[k].is_null());
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cdr["end_reason"], "completed", "{cdr}");
    assert_eq!(cdr["ended_by"], "alice");
    let duration = cdr["duration_ms"].as_i64().unwrap();
    assert!(
        (shortest - 500..=longest + 500).contains(&duration),
        "CDR {duration} ms, measured between {shortest} and {longest} ms"
    );
    assert!(
        longest - shortest < 3_000,
        "the measurement itself is too loose"
    );
    // Both engines posted their quality summary (call.stats) into the CDR.
    for side in ["caller_quality", "callee_quality"] {
        let mos = cdr[side]["mos"]
            .as_f64()
            .unwrap_or_else(|| panic!("no {side}: {cdr}"));
        assert!((3.5..=4.5).contains(&mos), "{side} MOS {mos}");
        assert!(cdr[side]["loss_pct"].as_f64().unwrap() < 5.0, "{cdr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_and_unanswered_calls_end_with_their_reasons() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let (alice, mut a_ev, _) = srv.engine("alice", "a").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "b").await;
    let audio = || CallAudio {
        source: Box::new(softphone_audio::Silence),
        sink: Box::new(softphone_audio::NullSink),
    };
    let call = alice.dial("bob", audio()).await.unwrap();
    b_ev.wait("incoming", |ev| {
        matches!(ev, EngineEvent::Incoming { .. }).then_some(())
    })
    .await;
    bob.reject(&call);
    a_ev.wait(
        "rejected",
        state_of(
            &call,
            CallState::Ended {
                reason: EndReason::Rejected,
            },
        ),
    )
    .await;

    let call = alice.dial("carol", audio()).await.unwrap();
    a_ev.wait(
        "unavailable",
        state_of(
            &call,
            CallState::Ended {
                reason: EndReason::Unavailable,
            },
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_arrives_intact_enough_to_correlate() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/speech.wav");
    let mut original = Vec::new();
    {
        use softphone_audio::Source;
        let mut src = softphone_audio::WavSource::open(&fixture, false).unwrap();
        let mut f = vec![0.0f32; softphone_audio::FRAME];
        while src.read_frame(&mut f) {
            original.extend_from_slice(&f);
        }
    }
    let srv = Server::start().await;
    let (alice, mut a_ev, _) = srv.engine("alice", "a").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "b").await;
    let b_hears = Capture::default();
    let call = alice
        .dial(
            "bob",
            CallAudio {
                source: Box::new(softphone_audio::Silence),
                sink: Box::new(softphone_audio::NullSink),
            },
        )
        .await
        .unwrap();
    b_ev.wait("incoming", |ev| {
        matches!(ev, EngineEvent::Incoming { .. }).then_some(())
    })
    .await;
    bob.answer(
        &call,
        CallAudio {
            source: Box::new(softphone_audio::Silence),
            sink: Box::new(b_hears.clone()),
        },
    )
    .await
    .unwrap();
    a_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    alice.hangup(&call);
    a_ev.wait("ended", |ev| {
        matches!(
            ev,
            EngineEvent::CallState {
                state: CallState::Ended { .. },
                ..
            }
        )
        .then_some(())
    })
    .await;

    // Second call: the speech starts once media is up.
    let call = alice
        .dial(
            "bob",
            CallAudio {
                source: Box::new(softphone_audio::WavSource::open(&fixture, false).unwrap()),
                sink: Box::new(softphone_audio::NullSink),
            },
        )
        .await
        .unwrap();
    b_ev.wait("incoming", |ev| {
        matches!(ev, EngineEvent::Incoming { call_id, .. } if *call_id == call).then_some(())
    })
    .await;
    b_hears.take();
    bob.answer(
        &call,
        CallAudio {
            source: Box::new(softphone_audio::Silence),
            sink: Box::new(b_hears.clone()),
        },
    )
    .await
    .unwrap();
    b_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    // Count from the moment media is up at bob's end.
    b_hears.take();

    tokio::time::sleep(Duration::from_millis(5_500)).await;
    let heard = b_hears.take();
    alice.hangup(&call);
    // The file starts when media connects; bob hears it a little later.
    let (lag, whole) = analysis::best_alignment_coarse_fine(&original, &heard, 96_000);
    let overlap = original.len().min(heard.len() - lag);
    assert!(
        overlap > 3 * 48_000,
        "lag {lag}: only {overlap} samples overlap"
    );
    // The jitter buffer may stretch or shrink the delay by whole frames
    // while it adapts, so align each 250 ms of speech on its own (within
    // ±60 ms of the overall lag) and average, weighted by loudness.
    let seg = 12_000;
    let (mut sum, mut weight) = (0.0, 0.0);
    for start in (0..overlap.saturating_sub(seg)).step_by(seg) {
        let a = &original[start..start + seg];
        let energy = analysis::rms_dbfs(a);
        if energy < -40.0 {
            continue; // a pause between words
        }
        let lo = (lag + start).saturating_sub(2_880);
        let b = &heard[lo..(lag + start + seg + 2_880).min(heard.len())];
        let (_, c) = analysis::best_alignment(a, b, b.len().saturating_sub(seg));
        let w = 10f64.powf(energy / 20.0);
        sum += c * w;
        weight += w;
    }
    let c = sum / weight.max(1e-9);
    eprintln!(
        "speech: normalised cross-correlation {c:.3} by segment ({whole:.3} whole) at lag {lag} samples"
    );
    assert!(c >= 0.8, "normalised cross-correlation {c:.3} at lag {lag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_signaling_reconnect() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let proxy = softphone_e2e::Proxy::start(&srv.base).await;
    let (alice, mut a_ev, _) = srv.engine_via(&proxy.base, "alice", "alice-pc").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "bob-pc").await;
    let b_hears = Capture::default();
    let call = establish(
        Party {
            engine: &alice,
            events: &mut a_ev,
            audio: CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(softphone_audio::NullSink),
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

    proxy.cut();
    a_ev.wait("reconnecting", |ev| {
        matches!(ev, EngineEvent::Reconnecting { .. }).then_some(())
    })
    .await;
    // Media is peer to peer: bob keeps hearing alice while signaling is down.
    let during = b_hears.listen(600).await;
    assert!(
        (dominant(&during) - 440.0).abs() < 5.0,
        "bob heard {} Hz",
        dominant(&during)
    );
    a_ev.wait("registered again", |ev| {
        matches!(ev, EngineEvent::Registered { .. }).then_some(())
    })
    .await;

    // Signaling resumed on the same call: a hang-up from bob reaches alice.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    bob.hangup(&call);
    a_ev.wait(
        "ended",
        state_of(
            &call,
            CallState::Ended {
                reason: EndReason::Completed,
            },
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_input_mid_call_keeps_the_call() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let (alice, mut a_ev, _) = srv.engine("alice", "a").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "b").await;
    let b_hears = Capture::default();
    let call = establish(
        Party {
            engine: &alice,
            events: &mut a_ev,
            audio: CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(softphone_audio::NullSink),
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
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!((dominant(&b_hears.listen(800).await) - 440.0).abs() < 5.0);

    alice
        .set_audio_devices(&call, Some(Box::new(Tone::new(880.0, -12.0))), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = b_hears.listen(800).await;
    assert!(
        (dominant(&after) - 880.0).abs() < 5.0,
        "after the switch bob heard {} Hz",
        dominant(&after)
    );
    alice.hangup(&call);
    a_ev.wait(
        "ended",
        state_of(
            &call,
            CallState::Ended {
                reason: EndReason::Completed,
            },
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_sent_the_moment_the_call_turns_active_arrives_whole() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let (alice, mut a_ev, _) = srv.engine("alice", "a").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "b").await;
    let silence = || CallAudio {
        source: Box::new(softphone_audio::Silence),
        sink: Box::new(softphone_audio::NullSink),
    };
    let call = alice.dial("bob", silence()).await.unwrap();
    b_ev.wait("incoming", |ev| {
        matches!(ev, EngineEvent::Incoming { .. }).then_some(())
    })
    .await;
    bob.answer(&call, silence()).await.unwrap();
    // The caller sends at once, before the callee may have finished its own
    // DTLS handshake: the engine holds the digits until the far end is up.
    a_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    alice.send_dtmf(&call, "159#").await.unwrap();
    let mut digits = String::new();
    while digits.len() < 4 {
        digits.push(
            b_ev.wait("DTMF digit", |ev| match ev {
                EngineEvent::Dtmf { digit, .. } => Some(*digit),
                _ => None,
            })
            .await,
        );
    }
    assert_eq!(digits, "159#");
    alice.hangup(&call);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_call_waits_is_declined_by_one_agent_and_carries_tones_with_the_other() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let acme = srv.store.tenant_id("acme").await.unwrap();
    let mut spec = switchboard::store::QueueSpec::named("support");
    spec.wrap_up_secs = 0;
    srv.store.add_queue(acme, &spec).await.unwrap();
    for agent in ["bob", "carol"] {
        srv.store
            .set_queue_member(acme, "support", agent, true)
            .await
            .unwrap();
    }
    let (alice, mut a_ev, a_token) = srv.engine("alice", "alice-laptop").await;
    let a_hears = Capture::default();
    let call = alice
        .dial(
            "support",
            CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(a_hears.clone()),
            },
        )
        .await
        .unwrap();
    // Nobody is signed in: the caller waits first in line, and its ICE
    // candidates wait with it.
    let (queue, position) = a_ev
        .wait("queued", |ev| match ev {
            EngineEvent::Queued {
                call_id,
                queue,
                position,
                ..
            } if *call_id == call => Some((queue.clone(), *position)),
            _ => None,
        })
        .await;
    assert_eq!((queue.as_str(), position), ("support", 1));

    // Bob signs in first (the longest idle) and declines; carol answers.
    let (bob, mut b_ev, _) = srv.engine("bob", "bob-desk").await;
    let (carol, mut c_ev, _) = srv.engine("carol", "carol-desk").await;
    let offer = |ev: &EngineEvent| match ev {
        EngineEvent::Incoming {
            call_id,
            from,
            queue: Some(q),
        } => Some((call_id.clone(), from.user.clone(), q.name.clone())),
        _ => None,
    };
    let (id, from, q) = b_ev.wait("bob offered", offer).await;
    assert_eq!(
        (id.as_str(), from.as_str(), q.as_str()),
        (call.as_str(), "alice", "support")
    );
    bob.reject(&call);
    let (id, _, _) = c_ev.wait("carol offered", offer).await;
    assert_eq!(id, call);
    let c_hears = Capture::default();
    carol
        .answer(
            &call,
            CallAudio {
                source: Box::new(Tone::new(1000.0, -12.0)),
                sink: Box::new(c_hears.clone()),
            },
        )
        .await
        .unwrap();
    a_ev.wait("active", state_of(&call, CallState::Active))
        .await;
    c_ev.wait("first audio", |ev| {
        matches!(ev, EngineEvent::FirstAudio { .. }).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (at_c, at_a) = (c_hears.listen(1000).await, a_hears.listen(1000).await);
    assert!(
        (dominant(&at_c) - 440.0).abs() < 5.0,
        "carol heard {} Hz",
        dominant(&at_c)
    );
    assert!(
        (dominant(&at_a) - 1000.0).abs() < 5.0,
        "alice heard {} Hz",
        dominant(&at_a)
    );

    alice.hangup(&call);
    c_ev.wait(
        "ended",
        state_of(
            &call,
            CallState::Ended {
                reason: EndReason::Completed,
            },
        ),
    )
    .await;
    let rec = srv.get(&format!("/v1/calls/{call}"), &a_token).await;
    assert_eq!(rec["queue"], "support");
    assert_eq!(rec["callee"]["user"], "carol");
    assert!(rec["wait_ms"].as_u64().unwrap() > 0, "{rec}");
}
