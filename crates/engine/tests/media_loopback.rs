//! Two WebRTC sessions on loopback, wired to each other directly (no
//! signaling server): real ICE, DTLS-SRTP and Opus, files in, analysis out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use softphone_audio::{Sink, Tone, analysis};
use softphone_engine::media::MediaOptions;
use softphone_engine::media::webrtc::WebRtcSession;
use softphone_engine::media::{CallAudio, MediaEvent, MediaSession};
use softphone_engine::sdp;
use tokio::sync::mpsc;

const OPTS: MediaOptions = MediaOptions {
    loopback_only: true,
    relay_only: false,
};

/// A sink that keeps everything it hears.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<f32>>>);

impl Sink for Capture {
    fn write_frame(&mut self, frame: &[f32]) {
        self.0.lock().unwrap().extend_from_slice(frame);
    }
}

impl Capture {
    fn take(&self) -> Vec<f32> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// Forwards one side's candidates to the other, and watches for an event.
fn pump(
    mut rx: mpsc::UnboundedReceiver<MediaEvent>,
    peer: Arc<WebRtcSession>,
) -> mpsc::UnboundedReceiver<MediaEvent> {
    let (tx, out) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let MediaEvent::LocalCandidate(c) = &ev {
                peer.add_candidate(c.clone()).await.unwrap();
            }
            let _ = tx.send(ev);
        }
    });
    out
}

async fn wait_for(rx: &mut mpsc::UnboundedReceiver<MediaEvent>, want: MediaEvent) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = rx.recv().await {
            if ev == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} within 10 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tones_cross_both_ways_and_mute_and_hold_silence_them() {
    let (a_tx, a_rx) = mpsc::unbounded_channel();
    let (b_tx, b_rx) = mpsc::unbounded_channel();
    let (a_hears, b_hears) = (Capture::default(), Capture::default());
    let a = WebRtcSession::new(
        &OPTS,
        &[],
        CallAudio {
            source: Box::new(Tone::new(440.0, -12.0)),
            sink: Box::new(a_hears.clone()),
        },
        a_tx,
    )
    .await
    .unwrap();
    let b = WebRtcSession::new(
        &OPTS,
        &[],
        CallAudio {
            source: Box::new(Tone::new(1000.0, -12.0)),
            sink: Box::new(b_hears.clone()),
        },
        b_tx,
    )
    .await
    .unwrap();
    let offer = a.create_offer().await.unwrap();
    assert!(
        offer.contains("opus/48000/2") && offer.contains("useinbandfec=1"),
        "{offer}"
    );
    let answer = b.accept_offer(&offer).await.unwrap();
    a.set_answer(&answer).await.unwrap();
    let mut a_ev = pump(a_rx, b.clone());
    let mut b_ev = pump(b_rx, a.clone());
    wait_for(&mut a_ev, MediaEvent::Connected).await;
    wait_for(&mut b_ev, MediaEvent::FirstAudio).await;
    wait_for(&mut a_ev, MediaEvent::FirstAudio).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    a_hears.take();
    b_hears.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_b = b_hears.take();
    let at_a = a_hears.take();
    let fb = analysis::dominant_frequency(&at_b, 48_000.0, 100.0, 4_000.0);
    let fa = analysis::dominant_frequency(&at_a, 48_000.0, 100.0, 4_000.0);
    assert!((fb - 440.0).abs() < 5.0, "B heard {fb} Hz");
    assert!((fa - 1000.0).abs() < 5.0, "A heard {fa} Hz");
    assert!(
        analysis::rms_dbfs(&at_b) > -25.0,
        "B level {}",
        analysis::rms_dbfs(&at_b)
    );

    // Mute A: B hears digital silence.
    a.set_mute(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b_hears.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let muted = analysis::rms_dbfs(&b_hears.take());
    assert!(muted < -60.0, "muted level {muted} dBFS");
    a.set_mute(false);

    // Hold from A by re-offer: nothing flows either way; resume restores it.
    let reoffer = a.set_local_hold(true).await.unwrap();
    assert!(reoffer.contains("a=sendonly"), "{reoffer}");
    let held = sdp::audio(&reoffer).unwrap().direction.holds();
    assert!(held);
    b.set_remote_hold(held);
    let answer = b.accept_offer(&reoffer).await.unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    a.set_answer(&answer).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a_hears.take();
    b_hears.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(analysis::rms_dbfs(&b_hears.take()) < -60.0);
    assert!(analysis::rms_dbfs(&a_hears.take()) < -60.0);

    let reoffer = a.set_local_hold(false).await.unwrap();
    let held = sdp::audio(&reoffer).unwrap().direction.holds();
    assert!(!held);
    b.set_remote_hold(held);
    let answer = b.accept_offer(&reoffer).await.unwrap();
    a.set_answer(&answer).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    b_hears.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed = b_hears.take();
    assert!((analysis::dominant_frequency(&resumed, 48_000.0, 100.0, 4_000.0) - 440.0).abs() < 5.0);

    a.close().await;
    b.close().await;
}
