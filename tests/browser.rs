//! Interop with a browser's WebRTC: headless Chromium runs `browser/peer.html`,
//! a client written only from docs/protocol.md, and calls an engine and is
//! called by it through a real switchboard. Driven over WebDriver
//! (chromedriver); `cargo xtask setup` installs chromium and its driver.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use softphone_audio::{Tone, analysis};
use softphone_e2e::webdriver::{self, Session};
use softphone_e2e::{Capture, Server};
use softphone_engine::call::CallState;
use softphone_engine::{CallAudio, EngineEvent};

const PAGE: &str = include_str!("browser/peer.html");

/// Headless Chromium under chromedriver, with a profile directory of its
/// own; all of it stopped and removed when the test ends, passed or not.
struct Driver(Session);

impl Driver {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Driver::start`] with more Chromium switches.
    async fn start_with(extra: &[String]) -> Self {
        let port = webdriver::free_port();
        let profile = tempfile::tempdir().expect("tmp");
        // Chromium's own temporary files (its singleton socket) go here too.
        let tmp = tempfile::tempdir().expect("tmp");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.extend(extra.iter().cloned());
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        });
        let mut chromedriver = Command::new("chromedriver");
        chromedriver
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self(Session::start(&mut chromedriver, port, caps, vec![profile, tmp]).await)
    }

    async fn goto(&self, url: &str) {
        self.0
            .client()
            .goto(url)
            .await
            .expect("webdriver: navigate");
    }

    async fn eval(&self, script: &str) -> Value {
        self.0
            .client()
            .execute(script, vec![])
            .await
            .expect("webdriver: execute script")
    }

    /// Polls `window.peer` until `pick` accepts it (15 s at most).
    async fn wait(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        self.wait_for("window.peer", what, pick).await
    }

    /// Polls the page's value `expr` until `pick` accepts it (15 s at most).
    async fn wait_for(&self, expr: &str, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let script = format!("return {expr};");
        for _ in 0..150 {
            let p = self.eval(&script).await;
            if pick(&p) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = self.eval(&script).await;
        panic!("browser: no {what} within 15 s: {p}");
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    async fn close(self) {
        self.0.close().await;
    }
}

/// Serves the peer page on 127.0.0.1.
async fn serve_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_written_from_the_protocol_document_calls_and_is_called() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let page = serve_page().await;
    let driver = Driver::start().await;
    driver.goto(&format!("{page}/peer.html")).await;
    // The engine gathers ordinary host candidates here (a browser offers no
    // loopback ones); they are this machine's own addresses.
    let media = softphone_engine::media::MediaOptions {
        loopback_only: false,
        relay_only: false,
    };
    let (bob, mut b_ev, _) = srv.engine_with(media, "bob", "bob-engine").await;

    // 1. The browser calls the engine.
    let start = format!(
        "window.startPeer({{server: '{}', tenant: 'acme', user: 'carol', password: '{}', device: 'chromium', mode: 'call', target: 'bob'}}); return true;",
        srv.base,
        softphone_e2e::PW
    );
    driver.eval(&start).await;
    driver
        .wait("dialing", |p| {
            p["callState"] == "dialing" || !p["error"].is_null()
        })
        .await;
    let (call, from) = b_ev
        .wait("call from the browser", |ev| match ev {
            EngineEvent::Incoming { call_id, from, .. } => {
                Some((call_id.clone(), from.user.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(from, "carol");
    let heard = Capture::default();
    bob.answer(
        &call,
        CallAudio {
            source: Box::new(Tone::new(440.0, -12.0)),
            sink: Box::new(heard.clone()),
        },
    )
    .await
    .expect("answer the browser");
    b_ev.wait("active", |ev| {
        matches!(
            ev,
            EngineEvent::CallState {
                state: CallState::Active,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let p = driver
        .wait("audio from the engine", |p| {
            p["packetsReceived"].as_u64().unwrap_or(0) > 50
                && p["audioEnergy"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    assert!(p["error"].is_null(), "{p}");
    // Chromium's fake microphone beeps; what arrives is not silence.
    let got = heard.listen(2000).await;
    assert!(
        analysis::rms_dbfs(&got) > -50.0,
        "the engine heard {} dBFS from the browser",
        analysis::rms_dbfs(&got)
    );
    bob.hangup(&call);
    driver
        .wait("call end", |p| p["callState"] == "ended:completed")
        .await;

    // 2. The engine calls the browser.
    driver.goto(&format!("{page}/peer.html")).await;
    driver
        .eval(
            &start
                .replace("mode: 'call'", "mode: 'answer'")
                .replace("device: 'chromium'", "device: 'chromium-2'"),
        )
        .await;
    driver
        .wait("registration", |p| p["callState"] == "registered")
        .await;
    let call = bob
        .dial(
            "carol",
            CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(heard.clone()),
            },
        )
        .await
        .expect("dial the browser");
    b_ev.wait("active", |ev| matches!(ev, EngineEvent::CallState { call_id, state: CallState::Active } if *call_id == call).then_some(())).await;
    driver
        .wait("audio from the engine", |p| {
            p["packetsReceived"].as_u64().unwrap_or(0) > 50
        })
        .await;
    let got = heard.listen(2000).await;
    assert!(
        analysis::rms_dbfs(&got) > -50.0,
        "the engine heard {} dBFS",
        analysis::rms_dbfs(&got)
    );
    bob.hangup(&call);
    driver
        .wait("call end", |p| p["callState"] == "ended:completed")
        .await;
    driver.close().await;
}

/// A tiny webhook receiver: every POSTed event's JSON body, in order.
async fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let keep = keep.clone();
            async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    keep.lock().expect("hook log").push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// A customer calls the support line from the widget page in headless
/// Chromium (its microphone a 660 Hz tone file): the longest-idle agent
/// declines, the other answers and sees who calls, audio flows both ways,
/// the customer hangs up, and the CDR, the queue's figures and the webhook
/// events agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_calls_the_support_line_from_the_web_widget() {
    let _serial = softphone_e2e::ONE_CALL_AT_A_TIME.lock().await;
    let srv = Server::start().await;
    let acme = srv.store.tenant_id("acme").await.expect("tenant");
    let mut spec = switchboard::store::QueueSpec::named("support");
    spec.published = true;
    spec.ring_secs = 5;
    spec.wrap_up_secs = 0;
    srv.store.add_queue(acme, &spec).await.expect("queue");
    for agent in ["bob", "carol"] {
        srv.store
            .set_queue_member(acme, "support", agent, true)
            .await
            .expect("member");
    }
    let (hook_url, hooks) = webhook_receiver().await;
    srv.store
        .add_webhook(acme, &hook_url)
        .await
        .expect("webhook");

    // The customer's microphone: a 660 Hz tone, 10 s, looped by Chromium.
    let dir = tempfile::tempdir().expect("tmp");
    let wav = dir.path().join("tone.wav");
    let mut w = hound::WavWriter::create(
        &wav,
        hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .expect("wav");
    for i in 0..480_000 {
        let t = i as f64 / 48_000.0;
        let v = (t * 660.0 * std::f64::consts::TAU).sin() * 0.25;
        w.write_sample((v * f64::from(i16::MAX)) as i16)
            .expect("sample");
    }
    w.finalize().expect("wav");

    let media = softphone_engine::media::MediaOptions {
        loopback_only: false,
        relay_only: false,
    };
    // Bob is available first: the longest idle, he is offered first.
    let (bob, mut b_ev, _) = srv.engine_with(media, "bob", "bob-engine").await;
    let (carol, mut c_ev, carol_token) = srv.engine_with(media, "carol", "carol-engine").await;

    let driver = Driver::start_with(&[
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
        // About the size of the widget's frame on a page.
        "--window-size=400,560".to_string(),
    ])
    .await;
    driver
        .goto(&format!(
            "{}/v1/widget/acme/support?page=https%3A%2F%2Fshop.example%2Fhelp",
            srv.base
        ))
        .await;
    driver
        .eval(
            "document.getElementById('name').value = 'Zoe Quinn';
             document.getElementById('topic').value = 'Broken headset';
             document.getElementById('call').click(); return true;",
        )
        .await;
    let w = driver
        .wait_for("window.widget", "in the queue", |w| {
            w["state"] == "queued" || !w["error"].is_null()
        })
        .await;
    assert!(w["error"].is_null(), "{w}");
    assert_eq!(w["position"], 1);
    // What the customer sees while waiting: docs/screenshots/widget.png.
    let png = driver.0.client().screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::write(shots.join("widget.png"), png).expect("write the widget screenshot");

    let offer = |ev: &EngineEvent| match ev {
        EngineEvent::Incoming {
            call_id,
            from,
            queue: Some(q),
        } => Some((call_id.clone(), from.display_name.clone(), q.clone())),
        _ => None,
    };
    let (call, _, _) = b_ev.wait("bob offered", offer).await;
    bob.reject(&call);
    let (id, name, q) = c_ev.wait("carol offered", offer).await;
    assert_eq!(id, call);
    // The screen-pop: who, about what, from where.
    assert_eq!(name, "Zoe Quinn");
    assert_eq!(q.name, "support");
    assert_eq!(q.topic.as_deref(), Some("Broken headset"));
    assert_eq!(q.page.as_deref(), Some("https://shop.example/help"));
    let heard = Capture::default();
    carol
        .answer(
            &call,
            CallAudio {
                source: Box::new(Tone::new(440.0, -12.0)),
                sink: Box::new(heard.clone()),
            },
        )
        .await
        .expect("answer the web caller");
    let w = driver
        .wait_for("window.widget", "audio from the agent", |w| {
            w["state"] == "active"
                && w["packetsReceived"].as_u64().unwrap_or(0) > 50
                && w["audioEnergy"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    assert!(w["error"].is_null(), "{w}");
    let got = heard.listen(1000).await;
    let f = softphone_e2e::dominant(&got);
    assert!(
        (f - 660.0).abs() < 10.0,
        "carol heard {f} Hz from the browser"
    );

    // The customer hangs up.
    driver
        .eval("document.getElementById('hangup').click(); return true;")
        .await;
    c_ev.wait("ended", |ev| match ev {
        EngineEvent::CallState {
            call_id,
            state: CallState::Ended { reason },
        } if *call_id == call => Some(*reason),
        _ => None,
    })
    .await;
    driver
        .wait_for("window.widget", "the end", |w| {
            w["state"] == "ended:completed"
        })
        .await;

    // The CDR, the figures and the webhook events agree.
    let rec = srv.get(&format!("/v1/calls/{call}"), &carol_token).await;
    assert_eq!(rec["queue"], "support");
    assert_eq!(rec["caller"]["display_name"], "Zoe Quinn");
    assert_eq!(rec["callee"]["user"], "carol");
    assert_eq!(rec["end_reason"], "completed");
    assert_eq!(rec["ended_by"], rec["caller"]["user"]);
    let stats = srv.get("/v1/queues/support/stats", &carol_token).await;
    assert_eq!(stats["today"]["entered"], 1, "{stats}");
    assert_eq!(stats["today"]["answered"], 1, "{stats}");
    assert_eq!(stats["waiting"], 0, "{stats}");
    let want = [
        "call.initiated",
        "call.queued",
        "call.offered",
        "call.answered",
        "call.ended",
    ];
    let mut events = Vec::new();
    for _ in 0..100 {
        events = hooks.lock().expect("hook log").clone();
        if want.iter().all(|t| events.iter().any(|e| e["type"] == *t)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in want {
        assert!(
            events.iter().any(|e| e["type"] == t),
            "no {t} in {events:?}"
        );
    }
    let offered: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "call.offered")
        .collect();
    assert_eq!(offered.len(), 2, "{events:?}");
    assert_eq!(offered[0]["agent"], "bob");
    assert_eq!(offered[1]["agent"], "carol");
    assert!(events.iter().all(|e| e["call"]["call_id"] == call.as_str()));
    let ended = events
        .iter()
        .find(|e| e["type"] == "call.ended")
        .expect("ended");
    assert_eq!(ended["call"]["end_reason"], "completed");
    assert_eq!(ended["call"]["callee"]["user"], "carol");
    driver.close().await;
}
