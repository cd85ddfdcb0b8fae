//! A webhook receiver for tests: an HTTP server on 127.0.0.1:0 that keeps
//! every request and answers `503` while refusing, `200` otherwise.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The JSON body as sent.
    pub body: String,
    /// `x-switchboard-event-id`.
    pub event_id: String,
    /// `x-switchboard-event`.
    pub event: String,
    /// `x-switchboard-signature`.
    pub signature: String,
    /// Whether it was answered 200.
    pub accepted: bool,
}

#[derive(Default)]
struct State {
    hits: Mutex<Vec<Hit>>,
    refuse: AtomicBool,
    refuse_next: AtomicUsize,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    /// Where to POST: `http://127.0.0.1:PORT/hook`.
    pub url: String,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts it, accepting (refusing when `refuse`).
    pub async fn start(refuse: bool) -> Self {
        let state = Arc::new(State::default());
        state.refuse.store(refuse, Ordering::SeqCst);
        let s = state.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let once = s
                        .refuse_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let accepted = !s.refuse.load(Ordering::SeqCst) && !once;
                    s.hits.lock().unwrap().push(Hit {
                        body,
                        event_id: h("x-switchboard-event-id"),
                        event: h("x-switchboard-event"),
                        signature: h("x-switchboard-signature"),
                        accepted,
                    });
                    if accepted {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, state, task }
    }

    /// Refuses the next `n` requests, then accepts again.
    pub fn refuse_next(&self, n: usize) {
        self.state.refuse_next.store(n, Ordering::SeqCst);
    }

    /// Refuses every request while `on`.
    pub fn refuse(&self, on: bool) {
        self.state.refuse.store(on, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Waits (at most `secs`) until events of every type in `types` about
    /// `call_id` were accepted; returns the accepted hits of that call.
    pub async fn await_events(&self, call_id: &str, types: &[&str], secs: u64) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got: Vec<Hit> = self
                .hits()
                .into_iter()
                .filter(|h| h.accepted)
                .filter(|h| {
                    serde_json::from_str::<Value>(&h.body)
                        .is_ok_and(|v| v["call"]["call_id"] == call_id)
                })
                .collect();
            if types.iter().all(|t| got.iter().any(|h| h.event == *t)) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not all of {types:?} for {call_id} within {secs} s: {:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks a hit's signature against `secret` (and that its timestamp is
/// within 5 minutes of now).
pub fn verify(hit: &Hit, secret: &str) {
    let ts: u64 = hit
        .signature
        .strip_prefix("t=")
        .and_then(|r| r.split(',').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("bad signature header {}", hit.signature));
    let now = switchboard::now_ms() / 1000;
    assert!(now.abs_diff(ts) < 300, "timestamp {ts} far from {now}");
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{}", hit.body).as_bytes());
    let want = format!("t={ts},v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(hit.signature, want, "signature of {}", hit.body);
}
