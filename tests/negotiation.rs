//! Calls whose media cannot be negotiated, against a peer that speaks the
//! wire protocol directly (written from docs/protocol.md, like a browser
//! client): its SDP answer refuses the audio stream (`m=audio 0`, RFC 3264
//! §6). The call must end as `incompatible` — in the engine's events, in
//! the CDR, and in phonectl's exit status — never as `completed` with
//! media flowing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use softphone_audio::Tone;
use softphone_e2e::{PW, Server};
use softphone_engine::call::CallState;
use softphone_engine::{CallAudio, EngineEvent};
use softphone_protocol::EndReason;
use tokio_tungstenite::tungstenite::Message;

/// An answer whose audio section has port 0: the stream is refused.
const REFUSING_ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
    m=audio 0 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Bob as a bare protocol client: logs in over HTTP, says hello, and
/// returns the socket after the welcome.
async fn raw_bob(srv: &Server) -> Ws {
    let login: Value = reqwest::Client::new()
        .post(format!("{}/v1/login", srv.base))
        .json(&json!({"tenant": "acme", "user": "bob", "password": PW}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let url = format!("{}/v1/ws", srv.base.replacen("http://", "ws://", 1));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    let hello = json!({"type": "hello", "token": login["token"], "device_id": "raw-bob",
        "device_name": "a protocol-only client", "protocol": 1});
    ws.send(Message::text(hello.to_string()))
        .await
        .expect("hello");
    next_of(&mut ws, "welcome").await;
    ws
}

/// The next frame of `kind`, within 10 s.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("socket closed while waiting for {kind}");
            };
            let v: Value = serde_json::from_str(&t).expect("json frame");
            if v["type"] == kind {
                return v;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} within 10 s"))
}

/// Answers the next invite with [`REFUSING_ANSWER`]; returns the call id.
async fn answer_without_audio(ws: &mut Ws) -> String {
    let incoming = next_of(ws, "call.incoming").await;
    let call_id = incoming["call_id"].as_str().expect("call_id").to_string();
    let accept = json!({"type": "call.accept", "call_id": call_id, "sdp": REFUSING_ANSWER});
    ws.send(Message::text(accept.to_string()))
        .await
        .expect("accept");
    call_id
}

/// The CDR once its end reason is committed (polled with a deadline).
async fn ended_cdr(srv: &Server, call: &str, token: &str) -> Value {
    for _ in 0..100 {
        let cdr = srv.get(&format!("/v1/calls/{call}"), token).await;
        if !cdr["end_reason"].is_null() {
            return cdr;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CDR of {call} never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_refuses_audio_ends_the_call_as_incompatible_everywhere() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let mut bob = raw_bob(&srv).await;
    let (alice, mut a_ev, token) = srv.engine("alice", "alice-laptop").await;
    let call = alice
        .dial(
            "bob",
            CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(softphone_audio::NullSink),
            },
        )
        .await
        .expect("dial");
    assert_eq!(answer_without_audio(&mut bob).await, call);
    let states = a_ev
        .collect_until(
            "the call ends",
            |ev| match ev {
                EngineEvent::CallState { call_id, state } if *call_id == call => Some(*state),
                _ => None,
            },
            |s| s.is_ended(),
        )
        .await;
    assert_eq!(
        states.last(),
        Some(&CallState::Ended {
            reason: EndReason::Incompatible
        })
    );
    assert!(
        !states.contains(&CallState::Active),
        "no media for a refused stream: {states:?}"
    );
    let ended = next_of(&mut bob, "call.ended").await;
    assert_eq!(ended["reason"], "incompatible");
    let cdr = ended_cdr(&srv, &call, &token).await;
    assert_eq!(cdr["end_reason"], "incompatible", "{cdr}");
    assert_eq!(cdr["ended_by"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phonectl_exits_non_zero_when_the_answer_refuses_audio() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let mut bob = raw_bob(&srv).await;
    let mut cmd = tokio::process::Command::new(softphone_e2e::binary("phonectl"));
    cmd.args(["--server", &srv.base, "--tenant", "acme", "--user", "alice"])
        .args([
            "--no-keyring",
            "--ice-loopback",
            "--json",
            "call",
            "bob",
            "--tone",
            "440",
        ])
        .args(["--duration", "5"])
        .env("PHONECTL_PASSWORD", PW)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("phonectl");
    answer_without_audio(&mut bob).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("phonectl ends")
        .expect("phonectl output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "phonectl exited 0:\n{stdout}");
    assert!(
        stdout.contains(r#""reason":"incompatible""#),
        "the end reason is in the events:\n{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("incompatible"),
        "and in the error"
    );
}
