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
        let port = webdriver::free_port();
        let profile = tempfile::tempdir().expect("tmp");
        // Chromium's own temporary files (its singleton socket) go here too.
        let tmp = tempfile::tempdir().expect("tmp");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    "--autoplay-policy=no-user-gesture-required",
                    "--disable-features=WebRtcHideLocalIpsWithMdns",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
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
        for _ in 0..150 {
            let p = self.eval("return window.peer;").await;
            if pick(&p) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let p = self.eval("return window.peer;").await;
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
