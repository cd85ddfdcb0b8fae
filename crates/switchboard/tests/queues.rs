//! Queues over real WebSockets and the real store (SQLite, or PostgreSQL
//! with `SWITCHBOARD_TEST_STORE=postgres`): a caller dials a queue by name
//! or number, waits, is offered to agents, and leaves a CDR and figures.

mod common;

use common::hooks;
use common::*;
use serde_json::{Value, json};
use switchboard::acd::Strategy;
use switchboard::store::QueueSpec;

/// Creates queue `support` (number 2001) in acme with these members.
async fn support(srv: &TestServer, members: &[&str], tune: impl FnOnce(&mut QueueSpec)) {
    let acme = srv.store.tenant_id("acme").await.unwrap();
    let mut spec = QueueSpec::named("support");
    spec.number = Some("2001".into());
    spec.strategy = Strategy::LongestIdle;
    spec.ring_secs = 5;
    spec.wrap_up_secs = 0;
    tune(&mut spec);
    srv.store.add_queue(acme, &spec).await.unwrap();
    for m in members {
        srv.store
            .set_queue_member(acme, "support", m, true)
            .await
            .unwrap();
    }
}

/// The next frame that is neither `presence` nor a position update.
async fn next(c: &mut Client) -> Value {
    loop {
        let v = c.recv().await;
        if v["type"] != "call.queued" {
            return v;
        }
    }
}

#[tokio::test]
async fn a_caller_dials_the_queue_number_waits_is_declined_then_answered() {
    let srv = TestServer::start().await;
    support(&srv, &["bob", "carol"], |_| {}).await;
    // Carol is available first: the longest idle.
    let mut carol = srv.client("carol", "c1").await;
    let mut bob = srv.client("bob", "b1").await;
    let mut alice = srv.client("alice", "a1").await;
    let alice_token = srv.login("acme", "alice").await;

    alice.invite("q-1", "2001").await;
    let pos = alice.expect("call.queued").await;
    assert_eq!(pos["queue"], "support");
    assert_eq!(pos["position"], 1);
    assert!(pos["ewt_ms"].as_u64().is_some(), "{pos}");

    let offer = carol.expect("call.incoming").await;
    assert_eq!(offer["from"]["user"], "alice");
    assert_eq!(offer["queue"]["name"], "support");
    assert_eq!(offer["sdp"], fake_sdp("offer"));
    carol
        .send(json!({"type": "call.reject", "call_id": "q-1", "reason": "rejected"}))
        .await;
    let gone = carol.expect("call.ended").await;
    assert_eq!(gone["reason"], "rejected");

    // Bob is next; he answers and the caller gets his SDP answer.
    let offer = bob.expect("call.incoming").await;
    assert_eq!(offer["queue"]["name"], "support");
    bob.accept("q-1").await;
    let acc = next(&mut alice).await;
    assert_eq!(acc["type"], "call.accepted", "{acc}");
    assert_eq!(acc["sdp"], fake_sdp("answer"));
    assert_eq!(bob.expect("call.accepted").await["device_id"], "b1");

    alice.hangup("q-1").await;
    assert_eq!(bob.expect("call.ended").await["reason"], "completed");
    assert_eq!(alice.expect("call.ended").await["reason"], "completed");

    // The CDR names the queue and the agent who answered.
    let rec = srv
        .await_record(&alice_token, "q-1", |r| !r["ended_at_ms"].is_null())
        .await;
    assert_eq!(rec["queue"], "support");
    assert_eq!(rec["callee"]["user"], "bob");
    assert_eq!(rec["end_reason"], "completed");
    assert!(rec["wait_ms"].as_u64().is_some(), "{rec}");

    // Bob's history has it too, as an incoming call he answered.
    let bob_token = srv.login("acme", "bob").await;
    let (_, mine) = srv.get("/v1/calls/q-1", Some(&bob_token)).await;
    assert_eq!(mine["direction"], "incoming");
    assert_eq!(mine["missed"], false);

    let (status, stats) = srv
        .get("/v1/queues/support/stats", Some(&alice_token))
        .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["today"]["entered"], 1);
    assert_eq!(stats["today"]["answered"], 1);
    assert_eq!(stats["today"]["abandoned"], 0);
    assert_eq!(stats["waiting"], 0);
    assert_eq!(stats["today"]["service_level_pct"], 100.0);
}

#[tokio::test]
async fn an_offer_that_rings_out_goes_to_the_next_agent() {
    let srv = TestServer::start().await;
    support(&srv, &["bob", "carol"], |s| {
        s.strategy = Strategy::RoundRobin
    })
    .await;
    let mut bob = srv.client("bob", "b1").await;
    let mut carol = srv.client("carol", "c1").await;
    let mut alice = srv.client("alice", "a1").await;

    alice.invite("q-2", "support").await;
    let first = bob.expect("call.incoming").await;
    assert_eq!(first["call_id"], "q-2");
    // Bob lets it ring for the ring time (5 s): it lapses to carol.
    let lapsed = bob.expect_within("call.ended", 10_000).await;
    assert_eq!(lapsed["reason"], "no_answer");
    let offer = carol.expect("call.incoming").await;
    assert!(
        offer["queue"]["waited_ms"].as_u64().unwrap() >= 5_000,
        "{offer}"
    );
    carol.accept("q-2").await;
    assert_eq!(next(&mut alice).await["type"], "call.accepted");
}

#[tokio::test]
async fn a_caller_who_hangs_up_while_waiting_is_abandoned_and_counted() {
    let srv = TestServer::start().await;
    support(&srv, &["bob"], |_| {}).await;
    let mut alice = srv.client("alice", "a1").await;
    let token = srv.login("acme", "alice").await;

    alice.invite("q-3", "support").await;
    alice.expect("call.queued").await;
    let (_, stats) = srv.get("/v1/queues/support/stats", Some(&token)).await;
    assert_eq!(stats["waiting"], 1, "{stats}");

    alice
        .send(json!({"type": "call.cancel", "call_id": "q-3"}))
        .await;
    let end = alice.expect("call.ended").await;
    assert_eq!(end["reason"], "abandoned");
    let rec = srv
        .await_record(&token, "q-3", |r| !r["ended_at_ms"].is_null())
        .await;
    assert_eq!(rec["end_reason"], "abandoned");
    assert_eq!(rec["callee"]["user"], "support");
    let (_, stats) = srv.get("/v1/queues/support/stats", Some(&token)).await;
    assert_eq!(stats["waiting"], 0);
    assert_eq!(stats["today"]["abandoned"], 1);
    assert_eq!(stats["today"]["service_level_pct"], 0.0);
}

#[tokio::test]
async fn a_closed_queue_says_so_and_a_queue_is_only_its_tenants() {
    let srv = TestServer::start().await;
    // Open two days from today (UTC) only: closed now, whatever the time.
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let open_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][((days + 3 + 2) % 7) as usize];
    support(&srv, &["bob"], |s| {
        s.hours = Some(format!("{open_day} 09:00-17:00"));
        s.timezone = Some("UTC".into());
        s.closed_message = Some("We are closed today.".into());
    })
    .await;
    let mut alice = srv.client("alice", "a1").await;
    alice.invite("q-4", "support").await;
    let end = alice.expect("call.ended").await;
    assert_eq!(end["reason"], "unavailable");
    assert_eq!(end["message"], "We are closed today.");

    // Mallory (globex) cannot dial acme's queue or read its figures.
    let mut mallory = srv.client("mallory", "m1").await;
    mallory.invite("q-5", "support").await;
    mallory.expect_error("not_found", Some("inv-q-5")).await;
    let token = srv.login("globex", "mallory").await;
    let (status, _) = srv.get("/v1/queues/support/stats", Some(&token)).await;
    assert_eq!(status, 404);
    let (status, _) = srv.get("/v1/queues/support/stats", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn webhooks_get_every_event_of_a_queue_call_signed_and_retried() {
    let srv = TestServer::start().await;
    let hook = hooks::Receiver::start(false).await;
    // The first delivery fails: it is retried.
    hook.refuse_next(1);
    srv.store
        .set_role("acme", "alice", switchboard::store::Role::Admin)
        .await
        .unwrap();
    let admin = srv.login("acme", "alice").await;
    let (status, created) = srv
        .post("/v1/admin/webhooks", Some(&admin), json!({"url": hook.url}))
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    // Agents may not add receivers; a bad URL is refused.
    let agent = srv.login("acme", "bob").await;
    let (status, _) = srv
        .post("/v1/admin/webhooks", Some(&agent), json!({"url": hook.url}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = srv
        .post(
            "/v1/admin/webhooks",
            Some(&admin),
            json!({"url": "ftp://x"}),
        )
        .await;
    assert_eq!(status, 400);

    support(&srv, &["bob"], |_| {}).await;
    let mut bob = srv.client("bob", "b1").await;
    let mut carol = srv.client("carol", "c1").await;
    carol.invite("q-6", "support").await;
    bob.expect("call.incoming").await;
    bob.accept("q-6").await;
    bob.expect("call.accepted").await;
    carol.hangup("q-6").await;
    bob.expect("call.ended").await;

    let types = [
        "call.initiated",
        "call.queued",
        "call.offered",
        "call.answered",
        "call.ended",
    ];
    let got = hook.await_events("q-6", &types, 15).await;
    for h in &got {
        hooks::verify(h, &secret);
        let v: Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(v["id"], h.event_id.as_str());
        assert_eq!(v["type"], h.event.as_str());
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["call"]["queue"], "support");
        assert!(v["call"].get("direction").is_none(), "{v}");
        if h.event == "call.offered" {
            assert_eq!(v["agent"], "bob");
        }
    }
    // Each event was accepted once; the refused first one came again.
    let all = hook.hits();
    let refused: Vec<_> = all.iter().filter(|h| !h.accepted).collect();
    assert_eq!(refused.len(), 1);
    assert!(got.iter().any(|h| h.event_id == refused[0].event_id));
    for t in types {
        assert_eq!(got.iter().filter(|h| h.event == t).count(), 1, "{t}");
    }
    // Nothing is left to send once the last answers are recorded.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, list) = srv.get("/v1/admin/webhooks", Some(&admin)).await;
        if list["webhooks"][0]["pending"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A guest token for the web widget's caller `name` of acme's `queue`.
async fn guest(srv: &TestServer, queue: &str, name: &str) -> (u16, Value) {
    srv.post(
        "/v1/guest/acme/token",
        None,
        json!({"queue": queue, "name": name, "email": "zoe@example.org",
               "topic": "My order 1042", "page": "https://shop.example/cart"}),
    )
    .await
}

#[tokio::test]
async fn a_guest_calls_only_published_queues_and_the_agent_sees_who_calls() {
    let srv = TestServer::start().await;
    support(&srv, &["bob"], |s| s.published = true).await;
    let acme = srv.store.tenant_id("acme").await.unwrap();
    let mut sales = QueueSpec::named("sales");
    sales.ring_secs = 5;
    srv.store.add_queue(acme, &sales).await.unwrap();

    // Tokens only for published queues; an unknown tenant looks the same.
    assert_eq!(guest(&srv, "sales", "Zoe").await.0, 404);
    let (status, _) = srv
        .post(
            "/v1/guest/nope/token",
            None,
            json!({"queue": "support", "name": "Zoe"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = srv
        .post(
            "/v1/guest/acme/token",
            None,
            json!({"queue": "support", "name": ""}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, tok) = guest(&srv, "support", "Zoe Quinn").await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(tok["open"], true);
    let token = tok["token"].as_str().unwrap().to_string();
    let guest_user = tok["user"]["user"].as_str().unwrap().to_string();
    assert!(guest_user.starts_with("guest-"), "{tok}");

    // Nothing of the tenant is visible to the guest.
    for path in ["/v1/directory", "/v1/calls", "/v1/queues/support/stats"] {
        let (status, body) = srv.get(path, Some(&token)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    let mut bob = srv.client("bob", "b1").await;
    let mut web = srv.connect(&token, &guest_user, "web").await;
    let (_, me) = srv.get("/v1/me", Some(&token)).await;
    assert_eq!(me["user"]["display_name"], "Zoe Quinn");
    // No calling agents directly, no other queue, no presence.
    web.invite("g-1", "bob").await;
    web.expect_error("forbidden", Some("inv-g-1")).await;
    web.invite("g-2", "sales").await;
    web.expect_error("forbidden", Some("inv-g-2")).await;
    web.send(json!({"type": "presence.set", "id": "p", "status": "away"}))
        .await;
    web.expect_error("forbidden", Some("p")).await;
    // The agents' directory does not list guests.
    let bob_token = srv.login("acme", "bob").await;
    let (_, dir) = srv.get("/v1/directory?q=zoe", Some(&bob_token)).await;
    assert_eq!(dir["users"].as_array().map(Vec::len), Some(0), "{dir}");

    // The support line: bob sees who calls before answering.
    web.invite("g-3", "support").await;
    web.expect("call.queued").await;
    let offer = bob.expect("call.incoming").await;
    assert_eq!(offer["from"]["display_name"], "Zoe Quinn");
    assert_eq!(offer["queue"]["email"], "zoe@example.org");
    assert_eq!(offer["queue"]["topic"], "My order 1042");
    assert_eq!(offer["queue"]["page"], "https://shop.example/cart");
    assert_eq!(offer["queue"]["earlier_calls"], 0);
    bob.accept("g-3").await;
    bob.expect("call.accepted").await;
    assert_eq!(next(&mut web).await["type"], "call.accepted");
    bob.hangup("g-3").await;
    assert_eq!(web.expect("call.ended").await["reason"], "completed");

    // Bob calls the guest back while their page is open.
    bob.expect("call.ended").await;
    bob.invite("back-1", &guest_user).await;
    let inc = web.expect("call.incoming").await;
    assert_eq!(inc["from"]["user"], "bob");
    web.send(json!({"type": "call.reject", "call_id": "back-1"}))
        .await;
    assert_eq!(bob.expect("call.rejected").await["reason"], "rejected");

    // A later guest with the same email: the agent sees the earlier call.
    let (_, tok2) = guest(&srv, "support", "Zoe Q.").await;
    let mut web2 = srv
        .connect(
            tok2["token"].as_str().unwrap(),
            tok2["user"]["user"].as_str().unwrap(),
            "web2",
        )
        .await;
    web2.invite("g-4", "support").await;
    let offer = bob.expect("call.incoming").await;
    assert_eq!(offer["queue"]["earlier_calls"], 2, "{offer}");
    // Guests cannot log in with a password.
    let (status, _) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": guest_user, "password": "!guest"}),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn guest_tokens_are_rate_limited_and_the_widget_is_framed_only_by_allowed_origins() {
    let srv = TestServer::start_with(|c| c.guest_tokens_per_ip_per_min = 2).await;
    support(&srv, &["bob"], |s| s.published = true).await;
    assert_eq!(guest(&srv, "support", "A").await.0, 200);
    assert_eq!(guest(&srv, "support", "B").await.0, 200);
    let (status, body) = guest(&srv, "support", "C").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited");

    srv.store
        .set_role("acme", "alice", switchboard::store::Role::Admin)
        .await
        .unwrap();
    let admin = srv.login("acme", "alice").await;
    let (status, _) = srv
        .request(
            reqwest::Method::PUT,
            "/v1/admin/widget",
            Some(&admin),
            Some(json!({"origins": ["https://shop.example", "not an origin"]})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = srv
        .request(
            reqwest::Method::PUT,
            "/v1/admin/widget",
            Some(&admin),
            Some(json!({"origins": ["https://shop.example"]})),
        )
        .await;
    assert_eq!(status, 200);
    let resp = reqwest::get(format!("{}/v1/widget/acme/support", srv.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("frame-ancestors 'self' https://shop.example"),
        "{csp}"
    );
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(r#"const CONFIG = {"queue":"support","tenant":"acme"};"#),
        "config not in the page"
    );
    let js = reqwest::get(format!("{}/v1/widget.js", srv.base))
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

/// A server-sent event stream read as it comes (`GET /v1/events`).
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(srv: &TestServer, token: &str) -> Self {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/events", srv.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's name and JSON data (keep-alive comments skipped);
    /// panics after 10 s or when the stream ends.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if name.is_empty() {
                    continue;
                }
                return (name, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream goes on");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event named `name`; the ones before it are returned too.
    async fn until(&mut self, name: &str) -> (Value, Vec<String>) {
        let mut before = Vec::new();
        loop {
            let (n, v) = self.next().await;
            if n == name {
                return (v, before);
            }
            before.push(n);
        }
    }

    /// Whether the stream ended (within 10 s).
    async fn ended(&mut self) -> bool {
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(10), self.resp.chunk()).await,
            Ok(Ok(None))
        )
    }
}

#[tokio::test]
async fn a_supervisor_watches_queues_and_agents_live_and_agents_may_not() {
    let srv =
        TestServer::start_with(|c| c.login_sweep = std::time::Duration::from_millis(200)).await;
    support(&srv, &["bob"], |s| s.wrap_up_secs = 1).await;
    srv.store
        .set_role("acme", "carol", switchboard::store::Role::Supervisor)
        .await
        .unwrap();
    srv.store
        .set_role("globex", "mallory", switchboard::store::Role::Admin)
        .await
        .unwrap();
    let carol = srv.login("acme", "carol").await;
    let alice_token = srv.login("acme", "alice").await;

    // Agents may not watch; the role is on /v1/me for the app to know.
    for path in ["/v1/supervisor", "/v1/events"] {
        let (status, body) = srv.get(path, Some(&alice_token)).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    assert_eq!(
        srv.get("/v1/me", Some(&alice_token)).await.1["role"],
        "agent"
    );
    assert_eq!(
        srv.get("/v1/me", Some(&carol)).await.1["role"],
        "supervisor"
    );

    let (status, view) = srv.get("/v1/supervisor", Some(&carol)).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["queues"][0]["name"], "support");
    assert_eq!(view["queues"][0]["number"], "2001");
    assert_eq!(view["agents"][0]["agent"]["user"], "bob");
    assert_eq!(view["agents"][0]["agent"]["display_name"], "Bob Stone");
    assert_eq!(view["agents"][0]["state"], "offline");

    let mut events = Events::open(&srv, &carol).await;
    let (first, data) = events.next().await;
    assert_eq!(first, "snapshot");
    assert_eq!(data["agents"][0]["state"], "offline");
    // An admin of another tenant watches too, and hears none of acme's.
    let mallory = srv.login("globex", "mallory").await;
    let mut other = Events::open(&srv, &mallory).await;
    let (first, data) = other.next().await;
    assert_eq!(first, "snapshot");
    assert_eq!(data["queues"], json!([]));

    let mut bob = srv.client("bob", "b1").await;
    let (state, _) = events.until("agent.state").await;
    assert_eq!(state["agent"]["user"], "bob");
    assert_eq!(state["state"], "available");

    let mut alice = srv.client("alice", "a1").await;
    alice.invite("q-s", "support").await;
    let (queued, before) = events.until("call.queued").await;
    assert_eq!(before, vec!["call.initiated"]);
    assert_eq!(queued["call_id"], "q-s");
    assert_eq!(queued["caller"], "alice");
    assert_eq!(queued["queue"], "support");
    let (offered, _) = events.until("call.offered").await;
    assert_eq!(offered["agent"], "bob");
    assert!(
        offered["id"]
            .as_str()
            .unwrap()
            .starts_with("q-s/call.offered/"),
        "{offered}"
    );
    let (state, _) = events.until("agent.state").await;
    assert_eq!(state["state"], "ringing");
    // The view now has the caller waiting, offered to bob.
    let (_, view) = srv.get("/v1/supervisor", Some(&carol)).await;
    let waiting = &view["queues"][0]["waiting"][0];
    assert_eq!(waiting["call_id"], "q-s");
    assert_eq!(waiting["caller"]["user"], "alice");
    assert_eq!(waiting["offered_to"], json!(["bob"]));

    bob.expect("call.incoming").await;
    bob.accept("q-s").await;
    let (answered, _) = events.until("call.answered").await;
    assert_eq!(answered["agent"], "bob");
    let (state, _) = events.until("agent.state").await;
    assert_eq!(state["state"], "on_call");

    alice.hangup("q-s").await;
    let (end, _) = events.until("call.ended").await;
    assert_eq!(end["reason"], "completed");
    // Heard only once committed: the record is ended already.
    let (_, rec) = srv.get("/v1/calls/q-s", Some(&alice_token)).await;
    assert!(rec["ended_at_ms"].is_u64(), "{rec}");
    let (state, _) = events.until("agent.state").await;
    assert_eq!(state["state"], "wrap_up");
    // One second of wrap-up, then available again.
    let (state, _) = events.until("agent.state").await;
    assert_eq!(state["state"], "available");

    // Nothing of acme reached globex's stream; logging out ends carol's.
    let _ = srv.post("/v1/logout", Some(&carol), json!({})).await;
    let (closed, _) = events.until("closed").await;
    assert_eq!(closed["code"], "unauthorized");
    assert!(events.ended().await);
    let _ = srv.post("/v1/logout", Some(&mallory), json!({})).await;
    let (_, before) = other.until("closed").await;
    assert!(before.is_empty(), "globex heard {before:?}");
}
