//! The engine's handling of what a switchboard (or anything pretending to
//! be one) sends: each line of the input is one server frame, parsed as the
//! signaling task does and handed to the pure `EngineCore` with one call of
//! ours ringing out and one of theirs ringing in, then the media results
//! and timers the frames may lead to. Also every line as a remote SDP
//! (`softphone_engine::sdp::audio`). Never panics; a call, once ended,
//! stays gone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use softphone_audio::{NullSink, Silence};
use softphone_engine::core::{Command, EngineCore, MediaDone, Timer};
use softphone_engine::media::{CallAudio, MediaEvent};
use softphone_engine::signaling::{Signal, Welcome};
use softphone_engine::sdp;
use softphone_protocol::{Presence, ServerMessage, UserRef};

const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 101\r\n\
    a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let welcome = Welcome {
        user: UserRef { user: "alice".into(), display_name: "Alice".into() },
        tenant: "acme".into(),
        presence: Presence::Available,
        ice_servers: vec![],
        heartbeat_ms: 20_000,
        calls: vec![],
    };
    let mut core = EngineCore::new("fuzz", &welcome);
    let (reply, mut rx) = tokio::sync::oneshot::channel();
    let audio = CallAudio { source: Box::new(Silence), sink: Box::new(NullSink) };
    core.command(Command::Dial { to: "bob".into(), audio, reply }, 0);
    let Ok(Ok(ours)) = rx.try_recv() else { return };
    core.media_done(&ours, MediaDone::Offer(OFFER.into()));
    core.server(ServerMessage::Incoming {
        call_id: "c-in".into(),
        from: UserRef { user: "bob".into(), display_name: "Bob".into() },
        sdp: OFFER.into(),
    });
    let mut ended = Vec::new();
    for line in text.lines() {
        let _ = sdp::audio(line);
        let Ok(msg) = serde_json::from_str::<ServerMessage>(line) else {
            continue;
        };
        let before = core.call_ids();
        core.signal(Signal::Message(msg));
        for id in &before {
            if core.state(id).is_none() {
                ended.push(id.clone());
            }
        }
        for id in core.call_ids() {
            assert!(!ended.contains(&id), "call {id} came back after it ended");
            core.media_done(&id, MediaDone::AnswerApplied);
            core.media_event(&id, MediaEvent::Connected);
        }
    }
    core.timer(Timer::Orphans(core.call_ids()));
    assert!(core.call_ids().is_empty(), "orphans end");
});
