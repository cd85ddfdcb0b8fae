//! Login, tokens, rate limits, tenant isolation and the HTTP endpoints.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn login_me_refresh_logout() {
    let srv = TestServer::start().await;
    let (status, body) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "alice", "password": "wrong-pass"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, body) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "nobody", "password": PW}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, body) = srv.post("/v1/login", None, json!({"tenant": "acme"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_frame")));

    let (status, body) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "alice", "password": PW}),
        )
        .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(token.len(), 43);
    let ttl = body["expires_at_ms"].as_u64().unwrap() - switchboard::now_ms();
    assert!((86_300_000..=86_400_000).contains(&ttl), "ttl {ttl}");

    let (status, me) = srv.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["user"], "alice");
    assert_eq!(me["tenant"], "acme");
    assert_eq!(me["presence"], "offline");

    let (status, fresh) = srv.post("/v1/token/refresh", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    let fresh = fresh["token"].as_str().unwrap().to_string();
    assert_ne!(fresh, token);
    let (status, body) = srv.get("/v1/me", Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));

    let (status, _) = srv.post("/v1/logout", Some(&fresh), json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = srv.get("/v1/me", Some(&fresh)).await;
    assert_eq!(status, 401);
    let (status, body) = srv.get("/v1/me", None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
}

#[tokio::test]
async fn expired_tokens_are_refused_over_http_and_websocket() {
    let srv = TestServer::start_with(|c| c.token_ttl = Duration::from_millis(1500)).await;
    let token = srv.login("acme", "alice").await;
    let (status, _) = srv.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200);
    // Time passes until the token's lifetime is over.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, body) = srv.get("/v1/me", Some(&token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_expired"))
    );

    let ws = srv.raw_socket().await;
    let mut c = Client {
        ws,
        token: token.clone(),
        user: "alice".into(),
        endpoint: "a1".into(),
        welcome: json!(null),
    };
    c.send(json!({"type": "hello", "id": "h", "token": token, "device_id": "a1"}))
        .await;
    c.expect_error("token_expired", Some("h")).await;
    assert_eq!(c.expect_close().await, 4001);
}

#[tokio::test]
async fn bad_tokens_and_bad_hellos_close_with_documented_codes() {
    let srv = TestServer::start().await;
    let ws = srv.raw_socket().await;
    let mut c = Client {
        ws,
        token: String::new(),
        user: "x".into(),
        endpoint: "x".into(),
        welcome: json!(null),
    };
    c.send(json!({"type": "hello", "id": "h1", "token": "not-a-token", "device_id": "d"}))
        .await;
    c.expect_error("unauthorized", Some("h1")).await;
    assert_eq!(c.expect_close().await, 4001);

    let token = srv.login("acme", "alice").await;
    let ws = srv.raw_socket().await;
    let mut c = Client {
        ws,
        token: token.clone(),
        user: "alice".into(),
        endpoint: "x".into(),
        welcome: json!(null),
    };
    c.send(json!({"type": "hello", "id": "h2", "token": token, "device_id": "d", "protocol": 99}))
        .await;
    c.expect_error("protocol_version", Some("h2")).await;
    assert_eq!(c.expect_close().await, 4000);

    let ws = srv.raw_socket().await;
    let mut c = Client {
        ws,
        token: token.clone(),
        user: "alice".into(),
        endpoint: "x".into(),
        welcome: json!(null),
    };
    c.send(json!({"type": "hello", "id": "h3", "token": token, "device_id": "bad endpoint id!"}))
        .await;
    c.expect_error("invalid_value", Some("h3")).await;
    assert_eq!(c.expect_close().await, 4000);
}

#[tokio::test]
async fn login_is_rate_limited_per_account_and_per_ip() {
    let srv = TestServer::start_with(|c| {
        c.login_per_account_per_min = 3;
        c.login_per_ip_per_min = 5;
    })
    .await;
    for _ in 0..3 {
        let (status, _) = srv
            .post(
                "/v1/login",
                None,
                json!({"tenant": "acme", "user": "alice", "password": "bad-guess"}),
            )
            .await;
        assert_eq!(status, 401);
    }
    let (status, body) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "alice", "password": PW}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    // Another account from the same IP still works, until the IP limit.
    let (status, _) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "bob", "password": PW}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = srv
        .post(
            "/v1/login",
            None,
            json!({"tenant": "acme", "user": "carol", "password": PW}),
        )
        .await;
    assert_eq!(status, 429);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/login", srv.base))
        .json(&json!({"tenant": "acme", "user": "dave", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[tokio::test]
async fn tenants_are_isolated_and_foreign_things_look_unknown() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    let mut mallory = srv.client("mallory", "m1").await;

    // Inviting a user of another tenant is the same not_found as an unknown user.
    mallory.invite("m-to-alice", "alice").await;
    let foreign = mallory
        .expect_error("not_found", Some("inv-m-to-alice"))
        .await;
    mallory.invite("m-to-nobody", "nobody").await;
    let unknown = mallory
        .expect_error("not_found", Some("inv-m-to-nobody"))
        .await;
    assert_eq!(
        foreign["message"].as_str().unwrap().replace("alice", "X"),
        unknown["message"].as_str().unwrap().replace("nobody", "X")
    );
    alice.expect_silence(200).await;

    answered_call(&mut alice, &mut bob, "acme-call").await;
    // Mallory cannot touch, read or even see the call.
    for frame in [
        json!({"type": "call.hangup", "id": "x", "call_id": "acme-call"}),
        json!({"type": "call.accept", "id": "x", "call_id": "acme-call", "sdp": "v=0"}),
        json!({"type": "ice.candidate", "id": "x", "call_id": "acme-call", "candidate": null}),
        json!({"type": "call.stats", "id": "x", "call_id": "acme-call", "mos": 1.0}),
    ] {
        mallory.send(frame).await;
        mallory.expect_error("not_found", Some("x")).await;
    }
    let (status, body) = srv.get("/v1/calls/acme-call", Some(&mallory.token)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (_, hist) = srv.get("/v1/calls", Some(&mallory.token)).await;
    assert!(hist["calls"].as_array().unwrap().is_empty());
    // Nor see acme's people or presence.
    let (_, dir) = srv.get("/v1/directory", Some(&mallory.token)).await;
    let users: Vec<_> = dir["users"]
        .as_array()
        .unwrap_or_else(|| panic!("{dir}"))
        .iter()
        .map(|u| u["user"].clone())
        .collect();
    assert_eq!(users, vec![json!("mallory")]);
    mallory.expect_silence(200).await; // no presence frames from acme either
}

#[tokio::test]
async fn history_is_paginated_newest_first() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    for i in 0..5 {
        alice.invite(&format!("h{i}"), "bob").await; // bob offline: ends at once
        alice.expect("call.ended").await;
        // Distinct creation times, so that the order is the invite order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // call.ended is held until the end is committed (protocol.md §8.2).
    let (_, p1) = srv.get("/v1/calls?limit=2", Some(&alice.token)).await;
    let ids = |p: &serde_json::Value| -> Vec<String> {
        p["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&p1), ["h4", "h3"]);
    let next = p1["next_before"].as_str().unwrap();
    let (_, p2) = srv
        .get(
            &format!("/v1/calls?limit=2&before={next}"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(ids(&p2), ["h2", "h1"]);
    let next = p2["next_before"].as_str().unwrap();
    let (_, p3) = srv
        .get(
            &format!("/v1/calls?limit=2&before={next}"),
            Some(&alice.token),
        )
        .await;
    assert_eq!(ids(&p3), ["h0"]);
    assert!(p3["next_before"].is_null());
    let (status, body) = srv
        .get("/v1/calls?before=garbage", Some(&alice.token))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_value"))
    );
}

#[tokio::test]
async fn ice_servers_carry_time_limited_turn_credentials() {
    let srv = TestServer::start_with(|c| {
        c.stun_urls = vec!["stun:stun.example.org:3478".into()];
        c.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        c.turn_secret = Some("s3cret".into());
        c.turn_ttl = Duration::from_secs(600);
    })
    .await;
    let alice = srv.client("alice", "a1").await;
    let (status, body) = srv.get("/v1/ice-servers", Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["ttl_s"], 600);
    let servers = body["ice_servers"].as_array().unwrap();
    assert_eq!(servers[0]["urls"][0], "stun:stun.example.org:3478");
    let user = servers[1]["username"].as_str().unwrap();
    let (expiry, who) = user.split_once(':').unwrap();
    assert_eq!(who, "acme/alice");
    let expiry: u64 = expiry.parse().unwrap();
    let now = switchboard::now_ms() / 1000;
    assert!((now + 590..=now + 610).contains(&expiry));
    assert!(!servers[1]["credential"].as_str().unwrap().is_empty());
    assert_eq!(alice.welcome["ice_servers"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn health_and_metrics() {
    let srv = TestServer::start().await;
    let (status, body) = srv.get("/v1/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, Some("ok\n")));
    let mut alice = srv.client("alice", "a1").await;
    alice.send_raw("not json").await;
    alice.expect_error("bad_frame", None).await;
    alice.invite("m1", "bob").await;
    alice.expect("call.ended").await;
    let (status, body) = srv.get("/v1/metrics", None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = srv.get("/v1/metrics", Some("not-the-metrics-token")).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = srv.get("/v1/metrics", Some(&alice.token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthorized")),
        "a user's token does not open the metrics"
    );
    let (status, text) = srv.get("/v1/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    assert!(text.contains("switchboard_connections 1"), "{text}");
    assert!(
        text.contains(r#"switchboard_calls_ended_total{reason="unavailable"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_errors_total{code="bad_frame"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"switchboard_logins_total{result="ok"} 1"#),
        "{text}"
    );
    let (status, body) = srv.get("/v1/nothing-here", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn browsers_may_call_the_api_from_another_origin() {
    let srv = TestServer::start().await;
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/v1/login", srv.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");
    let token = srv.login("acme", "alice").await;
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/me", srv.base))
        .header("origin", "http://localhost:5173")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn metrics_are_off_without_a_metrics_token() {
    let srv = TestServer::start_with(|c| c.metrics_token = None).await;
    let (status, body) = srv.get("/v1/metrics", Some(METRICS_TOKEN)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert!(body["message"].as_str().unwrap().contains("metrics_token"));
}

#[tokio::test]
async fn errors_made_by_the_framework_are_json_with_a_code() {
    let srv = TestServer::start().await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!("{}/v1/login", srv.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");

    let resp = http
        .post(format!("{}/v1/login", srv.base))
        .header("content-type", "application/json")
        .body(format!(r#"{{"tenant":"{}"}}"#, "x".repeat(20 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "frame_too_large", "{body}");
    assert!(body["message"].as_str().unwrap().contains("16 KiB"));

    let token = srv.login("acme", "alice").await;
    let (status, body) = srv.get("/v1/calls?limit=abc", Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_frame")));
    assert!(
        body["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );

    // The WebSocket route without an upgrade: axum refuses it itself.
    let resp = http
        .get(srv.ws_url.replace("ws://", "http://"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "bad_frame", "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
}

/// A login that ends (logout, user disabled) ends its endpoint's calls at
/// once, as hang-ups by that user: the other party does not wait out the
/// reconnect grace, which is set far beyond the test here.
#[tokio::test]
async fn a_login_that_ends_mid_call_ends_its_calls_at_once() {
    let srv = TestServer::start_with(|c| {
        c.login_sweep = Duration::from_millis(50);
        c.reconnect_grace = Duration::from_secs(600);
    })
    .await;
    let token = srv.login("acme", "alice").await;
    let mut alice = srv.connect(&token, "alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;

    // Logout while talking: completed, by alice.
    answered_call(&mut alice, &mut bob, "talk").await;
    let (status, _) = srv.post("/v1/logout", Some(&token), json!({})).await;
    assert_eq!(status, 204);
    let e = bob.expect("call.ended").await;
    assert_eq!(
        (&e["call_id"], &e["reason"], &e["by"]),
        (&json!("talk"), &json!("completed"), &json!("alice"))
    );
    assert_eq!(alice.expect_close().await, 4001);
    let rec = srv
        .await_record(&bob.token, "talk", |r| !r["end_reason"].is_null())
        .await;
    assert_eq!(
        (&rec["end_reason"], &rec["ended_by"]),
        (&json!("completed"), &json!("alice"))
    );

    // The only rung endpoint signs out: the invite ends unavailable.
    let mut alice2 = srv.client("alice", "a2").await;
    bob.invite("ring-a2", "alice").await;
    alice2.expect("call.incoming").await;
    let (status, _) = srv.post("/v1/logout", Some(&alice2.token), json!({})).await;
    assert_eq!(status, 204);
    let e = bob.expect("call.ended").await;
    assert_eq!(
        (&e["call_id"], &e["reason"]),
        (&json!("ring-a2"), &json!("unavailable"))
    );
    assert_eq!(alice2.expect_close().await, 4001);

    // The caller is disabled while ringing: cancelled, by the caller; the
    // sweep finds it (the admin CLI writes the store from another process).
    let mut carol = srv.client("carol", "c1").await;
    bob.invite("ring-c", "carol").await;
    carol.expect("call.incoming").await;
    srv.store.set_disabled("acme", "bob", true).await.unwrap();
    let e = carol.expect("call.ended").await;
    assert_eq!(
        (&e["call_id"], &e["reason"], &e["by"]),
        (&json!("ring-c"), &json!("cancelled"), &json!("bob"))
    );
    assert_eq!(bob.expect_close().await, 4001);
    carol.assert_usable().await;
}

#[tokio::test]
async fn a_login_that_ends_during_reconnect_grace_ends_its_calls_at_once() {
    let srv = TestServer::start_with(|c| {
        c.login_sweep = Duration::from_millis(50);
        c.reconnect_grace = Duration::from_secs(600);
    })
    .await;
    let token = srv.login("acme", "alice").await;
    let mut alice = srv.connect(&token, "alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    answered_call(&mut alice, &mut bob, "talk").await;
    // Alice's socket drops mid-call: her endpoint is in grace (600 s here)
    // and the call goes on.
    alice.close().await;
    srv.await_connections(1).await;
    bob.expect_silence(200).await;
    // Her login ends (a logout from elsewhere with her token): the call ends
    // now, completed by her, as if she had hung up.
    let (status, _) = srv.post("/v1/logout", Some(&token), json!({})).await;
    assert_eq!(status, 204);
    let e = bob.expect("call.ended").await;
    assert_eq!(
        (&e["call_id"], &e["reason"], &e["by"]),
        (&json!("talk"), &json!("completed"), &json!("alice"))
    );

    // The same when the login ends in another process (the admin CLI
    // disables the user): the sweep finds the endpoint in grace too.
    let mut carol = srv.client("carol", "c1").await;
    answered_call(&mut bob, &mut carol, "talk-2").await;
    carol.close().await;
    srv.await_connections(1).await;
    srv.store.set_disabled("acme", "carol", true).await.unwrap();
    let e = bob.expect("call.ended").await;
    assert_eq!(
        (&e["call_id"], &e["reason"], &e["by"]),
        (&json!("talk-2"), &json!("completed"), &json!("carol"))
    );
    bob.assert_usable().await;
}

#[tokio::test]
async fn logout_and_disabling_close_open_sockets_and_refresh_does_not() {
    let srv = TestServer::start_with(|c| c.login_sweep = Duration::from_millis(50)).await;
    let token = srv.login("acme", "alice").await;
    let mut a1 = srv.connect(&token, "alice", "a1").await;
    let mut a2 = srv.client("alice", "a2").await;
    let mut bob = srv.client("bob", "b1").await;

    // A refreshed token keeps its login: the socket opened with the old one
    // stays open through later sweeps.
    let (status, body) = srv.post("/v1/token/refresh", Some(&token), json!({})).await;
    assert_eq!(status, 200);
    let fresh = body["token"].as_str().unwrap().to_string();
    let sweeps = srv.metric("switchboard_login_sweeps_total").await;
    srv.await_metric("switchboard_login_sweeps_total", sweeps + 2)
        .await;
    a1.assert_usable().await;

    // Logging out closes that login's sockets at once, and only those.
    let (status, _) = srv.post("/v1/logout", Some(&fresh), json!({})).await;
    assert_eq!(status, 204);
    assert_eq!(a1.expect_close().await, 4001);
    a2.assert_usable().await;

    // Disabling the user (the admin CLI writes the store, here another pool
    // on the same file) closes every socket of the user at the next sweep.
    srv.store.set_disabled("acme", "alice", true).await.unwrap();
    assert_eq!(a2.expect_close().await, 4001);
    bob.assert_usable().await;
    assert_eq!(srv.metric("switchboard_login_closes_total").await, 2);
    let (status, _) = srv.get("/v1/me", Some(&a2.token)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn new_sockets_over_the_admission_rate_get_503_and_retry_after() {
    // One a second, bursts of two: the third socket at once is refused
    // before the upgrade, and the sockets already admitted are unaffected.
    let srv = TestServer::start_with(|c| c.ws_admissions_per_sec = 1).await;
    // Log in first (argon2 takes time), then connect back to back.
    let (alice, bob) = (
        srv.login("acme", "alice").await,
        srv.login("acme", "bob").await,
    );
    let mut a1 = srv.connect(&alice, "alice", "a1").await;
    let _b1 = srv.connect(&bob, "bob", "b1").await;
    let err = tokio_tungstenite::connect_async(&srv.ws_url)
        .await
        .expect_err("a third socket at once is refused");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("not an HTTP refusal: {err:?}");
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: serde_json::Value =
        serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(srv.metric("switchboard_admissions_refused_total").await, 1);
    a1.assert_usable().await;
    // A second later the bucket has room again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    srv.client("carol", "c1").await.assert_usable().await;
}

/// One client IP gets its share of the admissions, not the node's: its
/// third socket at once is refused while another IP still gets in.
#[tokio::test]
async fn one_client_ip_cannot_use_up_the_admissions_of_a_node() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let srv = TestServer::start_with(|c| {
        c.trust_forwarded_for = true;
        c.ws_admissions_per_ip_per_sec = 1;
    })
    .await;
    let upgrade = |ip: &'static str| {
        let mut req = srv.ws_url.as_str().into_client_request().unwrap();
        req.headers_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
        async move {
            tokio_tungstenite::connect_async(req)
                .await
                .map(|(ws, _)| ws)
        }
    };
    // One a second per IP, bursts of two: back to back, the third is
    // refused, and the node's admissions are not what refused it.
    let _one = upgrade("10.0.0.1").await.expect("first socket");
    let _two = upgrade("10.0.0.1").await.expect("second socket");
    let err = upgrade("10.0.0.1")
        .await
        .expect_err("a third socket at once");
    let tokio_tungstenite::tungstenite::Error::Http(resp) = err else {
        panic!("not an HTTP refusal: {err:?}");
    };
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let _other = upgrade("10.0.0.2").await.expect("another IP gets in");
    assert_eq!(srv.metric("switchboard_admissions_refused_total").await, 1);
}

#[tokio::test]
async fn a_socket_outlives_its_expired_and_purged_token() {
    let srv = TestServer::start_with(|c| {
        c.token_ttl = Duration::from_secs(1);
        c.login_sweep = Duration::from_millis(50);
    })
    .await;
    let mut alice = srv.client("alice", "a1").await;
    // Past the token's lifetime, its session row purged: not a logout.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(srv.store.purge_expired_sessions().await.unwrap(), 1);
    let sweeps = srv.metric("switchboard_login_sweeps_total").await;
    srv.await_metric("switchboard_login_sweeps_total", sweeps + 2)
        .await;
    alice.assert_usable().await;
    assert_eq!(srv.metric("switchboard_login_closes_total").await, 0);
}

/// Administrators manage the queues of their own tenant through the admin
/// API; agents get 403, and bad settings clear errors.
#[tokio::test]
async fn admins_manage_the_queues_of_their_tenant_and_agents_may_not() {
    use reqwest::Method;
    let srv = TestServer::start().await;
    let role = switchboard::store::Role::Admin;
    srv.store.set_role("acme", "alice", role).await.unwrap();
    srv.store.set_role("globex", "mallory", role).await.unwrap();
    let admin = srv.login("acme", "alice").await;
    let agent = srv.login("acme", "bob").await;
    let other = srv.login("globex", "mallory").await;
    let srv = &srv;
    let call = |method: Method, path: &str, token: &str, body: Option<serde_json::Value>| {
        let (path, token) = (path.to_string(), token.to_string());
        async move { srv.request(method, &path, Some(&token), body).await }
    };

    // Agents and strangers are refused on every route.
    let routes = [
        (Method::GET, "/v1/admin/queues"),
        (Method::POST, "/v1/admin/queues"),
        (Method::GET, "/v1/admin/queues/support"),
        (Method::PUT, "/v1/admin/queues/support"),
        (Method::DELETE, "/v1/admin/queues/support"),
        (Method::PUT, "/v1/admin/queues/support/members/bob"),
        (Method::DELETE, "/v1/admin/queues/support/members/bob"),
    ];
    for (m, path) in &routes {
        let body = Some(json!({"name": "support"}));
        let (status, err) = call(m.clone(), path, &agent, body.clone()).await;
        assert_eq!(
            (status, &err["code"]),
            (403, &json!("forbidden")),
            "{m} {path}"
        );
        let (status, _) = srv.request(m.clone(), path, None, body).await;
        assert_eq!(status, 401, "{m} {path}");
    }

    // Create with defaults filled in.
    let spec = json!({"name": "support", "number": "2001", "strategy": "ring_all"});
    let (status, q) = call(Method::POST, "/v1/admin/queues", &admin, Some(spec.clone())).await;
    assert_eq!(status, 201, "{q}");
    assert_eq!(
        q,
        json!({"name": "support", "number": "2001", "strategy": "ring_all", "ring_secs": 20,
               "max_wait_secs": 300, "overflow_queue": null, "max_wait_message": null,
               "wrap_up_secs": 30, "lapse_limit": 3, "hours": null, "timezone": null,
               "closed_message": null, "published": false, "members": []})
    );
    // Taken names, bad values, unknown keys.
    for (body, status, code) in [
        (spec.clone(), 409, "conflict"),
        (json!({"name": "bob"}), 409, "conflict"),
        (json!({"name": "sales", "number": "2001"}), 409, "conflict"),
        (
            json!({"name": "sales", "ring_secs": 0}),
            400,
            "invalid_value",
        ),
        (
            json!({"name": "sales", "number": "12a"}),
            400,
            "invalid_value",
        ),
        (
            json!({"name": "sales", "overflow_queue": "nope"}),
            400,
            "invalid_value",
        ),
        (
            json!({"name": "sales", "strategy": "random"}),
            400,
            "bad_frame",
        ),
        (json!({"name": "sales", "colour": "red"}), 400, "bad_frame"),
        (
            json!({"name": "sales", "hours": "mon-fry 09:00-17:00"}),
            400,
            "invalid_value",
        ),
        (
            json!({"name": "sales", "hours": "mon 09:00-17:00", "timezone": "Mars/Base"}),
            400,
            "invalid_value",
        ),
        (
            json!({"name": "sales", "timezone": "Europe/Paris"}),
            400,
            "invalid_value",
        ),
    ] {
        let (got, err) = call(Method::POST, "/v1/admin/queues", &admin, Some(body.clone())).await;
        assert_eq!(
            (got, err["code"].as_str()),
            (status, Some(code)),
            "{body}: {err}"
        );
        assert!(!err["message"].as_str().unwrap().is_empty());
    }

    // Members: of this tenant only; idempotent.
    for user in ["bob", "carol", "bob"] {
        let path = format!("/v1/admin/queues/support/members/{user}");
        assert_eq!(call(Method::PUT, &path, &admin, None).await.0, 204);
    }
    let path = "/v1/admin/queues/support/members/mallory";
    assert_eq!(call(Method::PUT, path, &admin, None).await.0, 404);
    let path = "/v1/admin/queues/nope/members/bob";
    assert_eq!(call(Method::PUT, path, &admin, None).await.0, 404);
    let path = "/v1/admin/queues/support/members/carol";
    assert_eq!(call(Method::DELETE, path, &admin, None).await.0, 204);

    // Replace: settings change, members stay.
    let new = json!({"name": "support", "strategy": "longest_idle", "wrap_up_secs": 0,
                     "hours": "mon-fri 09:00-18:00; sat 10:00-14:00", "timezone": "Europe/Paris",
                     "closed_message": "We are closed"});
    let (status, q) = call(Method::PUT, "/v1/admin/queues/support", &admin, Some(new)).await;
    assert_eq!(status, 200, "{q}");
    assert_eq!(
        (&q["strategy"], &q["wrap_up_secs"], &q["number"]),
        (&json!("longest_idle"), &json!(0), &json!(null))
    );
    assert_eq!(q["members"], json!(["bob"]));
    assert_eq!(q["hours"], "mon-fri 09:00-18:00; sat 10:00-14:00");
    assert_eq!(
        (&q["timezone"], &q["closed_message"]),
        (&json!("Europe/Paris"), &json!("We are closed"))
    );
    let (status, list) = call(Method::GET, "/v1/admin/queues", &admin, None).await;
    assert_eq!((status, list["queues"].as_array().unwrap().len()), (200, 1));

    // Another tenant's admin sees none of it.
    let (_, list) = call(Method::GET, "/v1/admin/queues", &other, None).await;
    assert_eq!(list["queues"], json!([]));
    assert_eq!(
        call(Method::GET, "/v1/admin/queues/support", &other, None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(Method::DELETE, "/v1/admin/queues/support", &other, None)
            .await
            .0,
        404
    );

    assert_eq!(
        call(Method::DELETE, "/v1/admin/queues/support", &admin, None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(Method::GET, "/v1/admin/queues/support", &admin, None)
            .await
            .0,
        404
    );
}
