//! Call routing rules and every end reason, over real WebSockets.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn full_call_relays_sdp_candidates_updates_and_keeps_a_cdr() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;

    alice.invite("call-1", "bob").await;
    let inc = bob.expect("call.incoming").await;
    assert_eq!(inc["from"]["user"], "alice");
    assert_eq!(inc["from"]["display_name"], "Alice Martin");
    assert_eq!(inc["sdp"], fake_sdp("offer"));

    // The caller trickles before the answer: the rung endpoint gets it.
    let cand = json!({"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host", "sdp_mid": "0", "sdp_mline_index": 0});
    alice
        .send(json!({"type": "ice.candidate", "call_id": "call-1", "candidate": cand}))
        .await;
    let got = bob.expect("ice.candidate").await;
    assert_eq!(got["candidate"], cand);

    bob.send(json!({"type": "call.ringing", "call_id": "call-1"}))
        .await;
    alice.expect("call.ringing").await;

    let answered_at = std::time::Instant::now();
    bob.accept("call-1").await;
    let acc = alice.expect("call.accepted").await;
    assert_eq!(acc["sdp"], fake_sdp("answer"));
    assert_eq!(acc["device_id"], "b1");
    let mine = bob.expect("call.accepted").await;
    assert!(mine.get("sdp").is_none(), "{mine}");

    bob.send(json!({"type": "ice.candidate", "call_id": "call-1", "candidate": cand}))
        .await;
    alice.expect("ice.candidate").await;
    bob.send(json!({"type": "ice.candidate", "call_id": "call-1", "candidate": null}))
        .await;
    let end = alice.expect("ice.candidate").await;
    assert!(end["candidate"].is_null());

    // Hold by re-offer, answered.
    alice.send(json!({"type": "call.update", "call_id": "call-1", "kind": "offer", "sdp": "v=0\r\na=sendonly\r\n"})).await;
    let upd = bob.expect("call.update").await;
    assert_eq!(upd["kind"], "offer");
    bob.send(json!({"type": "call.update", "call_id": "call-1", "kind": "answer", "sdp": "v=0\r\na=recvonly\r\n"})).await;
    assert_eq!(alice.expect("call.update").await["kind"], "answer");

    // Let the call last, so that its duration is measurable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.hangup("call-1").await;
    let measured = answered_at.elapsed().as_millis() as i64;
    for c in [&mut alice, &mut bob] {
        let e = c.expect("call.ended").await;
        assert_eq!(e["reason"], "completed");
        assert_eq!(e["by"], "alice");
    }
    for c in [&mut alice, &mut bob] {
        c.send(json!({"type": "call.stats", "id": "s", "call_id": "call-1", "rtt_ms": 3.5, "jitter_ms": 1.0, "loss_pct": 0.0, "mos": 4.4})).await;
        c.assert_usable().await;
    }
    // Stats are written asynchronously (no frame waits for them).
    let rec = srv
        .await_record(&bob.token, "call-1", |r| {
            !r["caller_quality"].is_null() && !r["callee_quality"].is_null()
        })
        .await;
    assert_eq!(rec["end_reason"], "completed");
    assert_eq!(rec["ended_by"], "alice");
    assert_eq!(rec["answered_device"], "b1");
    assert_eq!(rec["direction"], "incoming");
    assert_eq!(rec["missed"], false);
    assert!(rec["ringing_at_ms"].as_u64().is_some());
    let duration = rec["duration_ms"].as_i64().unwrap();
    assert!(
        (duration - measured).abs() < 200,
        "duration {duration} vs measured {measured}"
    );
    assert_eq!(rec["caller_quality"]["mos"], 4.4);
    assert_eq!(rec["callee_quality"]["rtt_ms"], 3.5);

    let (_, hist) = srv.get("/v1/calls", Some(&alice.token)).await;
    assert_eq!(hist["calls"][0]["call_id"], "call-1");
    assert_eq!(hist["calls"][0]["direction"], "outgoing");
}

#[tokio::test]
async fn invite_rings_every_endpoint_and_the_first_accept_wins() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob1 = srv.client("bob", "desk").await;
    let mut bob2 = srv.connect(&bob1.token.clone(), "bob", "laptop").await;

    alice.invite("multi", "bob").await;
    bob1.expect("call.incoming").await;
    bob2.expect("call.incoming").await;
    bob2.accept("multi").await;
    let acc = alice.expect("call.accepted").await;
    assert_eq!(acc["device_id"], "laptop");
    bob2.expect("call.accepted").await;
    let other = bob1.expect("call.answered_elsewhere").await;
    assert_eq!(other["device_id"], "laptop");

    // A late accept from the other endpoint loses.
    bob1.accept("multi").await;
    bob1.expect_error("call_state", Some("acc-multi")).await;
    // Accepting twice on the winning endpoint is refused too.
    bob2.accept("multi").await;
    bob2.expect_error("call_state", Some("acc-multi")).await;

    alice.hangup("multi").await;
    alice.expect("call.ended").await;
    bob2.expect("call.ended").await;
    bob1.expect_silence(200).await;
}

#[tokio::test]
async fn ring_timeout_ends_as_no_answer_and_is_a_missed_call() {
    let srv = TestServer::start_with(|c| c.ring_timeout = Duration::from_millis(500)).await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("ring-out", "bob").await;
    bob.expect("call.incoming").await;
    for c in [&mut alice, &mut bob] {
        let e = c.expect("call.ended").await;
        assert_eq!(e["reason"], "no_answer");
        assert!(e.get("by").is_none());
    }
    // call.ended is held until the end is committed (protocol.md §8.2).
    let (_, hist) = srv.get("/v1/calls", Some(&bob.token)).await;
    let rec = &hist["calls"][0];
    assert_eq!(rec["end_reason"], "no_answer");
    assert_eq!(rec["missed"], true);
    assert_eq!(rec["duration_ms"], 0);
}

#[tokio::test]
async fn callee_offline_is_unavailable() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    alice.invite("nobody-home", "bob").await;
    let e = alice.expect("call.ended").await;
    assert_eq!(e["reason"], "unavailable");
    // call.ended is held until the end is committed (protocol.md §8.2).
    let (_, rec) = srv.get("/v1/calls/nobody-home", Some(&alice.token)).await;
    assert_eq!(rec["end_reason"], "unavailable");
    let bob = srv.login("acme", "bob").await;
    let (_, rec) = srv.get("/v1/calls/nobody-home", Some(&bob)).await;
    assert_eq!(rec["missed"], true);
}

#[tokio::test]
async fn callee_busy_on_every_endpoint_or_in_dnd_is_busy() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    let mut carol = srv.client("carol", "c1").await;
    answered_call(&mut carol, &mut bob, "carol-bob").await;

    alice.invite("to-busy-bob", "bob").await;
    let r = alice.expect("call.rejected").await;
    assert_eq!(r["reason"], "busy");
    bob.expect_silence(200).await;

    // dave in do-not-disturb: busy without ringing.
    let mut dave = srv.client("dave", "d1").await;
    dave.send(json!({"type": "presence.set", "status": "dnd"}))
        .await;
    // Dave hears his own status once the hub has it.
    loop {
        let p = dave.recv_any().await;
        if p["type"] == "presence" && p["user"]["user"] == "dave" && p["status"] == "dnd" {
            break;
        }
    }
    alice.invite("to-dnd-dave", "dave").await;
    assert_eq!(alice.expect("call.rejected").await["reason"], "busy");
    dave.expect_silence(200).await;
    // call.rejected is held until the end is committed (protocol.md §8.2).
    let (_, rec) = srv.get("/v1/calls/to-dnd-dave", Some(&alice.token)).await;
    assert_eq!(rec["end_reason"], "busy");
}

#[tokio::test]
async fn reject_and_busy_reject_reach_the_caller() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("declined", "bob").await;
    bob.expect("call.incoming").await;
    bob.send(json!({"type": "call.reject", "call_id": "declined"}))
        .await;
    let r = alice.expect("call.rejected").await;
    assert_eq!(r["reason"], "rejected");
    let e = bob.expect("call.ended").await;
    assert_eq!(e["reason"], "rejected");
    assert_eq!(e["by"], "bob");

    alice.invite("declined-busy", "bob").await;
    bob.expect("call.incoming").await;
    bob.send(json!({"type": "call.reject", "call_id": "declined-busy", "reason": "busy"}))
        .await;
    assert_eq!(alice.expect("call.rejected").await["reason"], "busy");
    // call.rejected is held until the end is committed (protocol.md §8.2).
    let (_, rec) = srv.get("/v1/calls/declined", Some(&alice.token)).await;
    assert_eq!(rec["end_reason"], "rejected");
    assert_eq!(rec["ended_by"], "bob");
}

#[tokio::test]
async fn caller_cancel_while_ringing_is_cancelled_and_missed() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("oops", "bob").await;
    bob.expect("call.incoming").await;
    // The callee cannot cancel.
    bob.send(json!({"type": "call.cancel", "id": "c", "call_id": "oops"}))
        .await;
    bob.expect_error("call_state", Some("c")).await;
    alice
        .send(json!({"type": "call.cancel", "call_id": "oops"}))
        .await;
    for c in [&mut alice, &mut bob] {
        assert_eq!(c.expect("call.ended").await["reason"], "cancelled");
    }
    // call.ended is held until the end is committed (protocol.md §8.2).
    let (_, rec) = srv.get("/v1/calls/oops", Some(&bob.token)).await;
    assert_eq!(rec["end_reason"], "cancelled");
    assert_eq!(rec["missed"], true);
}

#[tokio::test]
async fn glare_resolves_to_one_call() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("from-alice", "bob").await;
    bob.invite("from-bob", "alice").await;
    // Whichever invite the server routed first survives; the other side
    // gets `glare` naming it, and is being rung by it. Only the loser hears
    // anything: the incoming call and the error, in either order.
    let (alice_lost, first) = tokio::select! {
        v = alice.recv() => (true, v),
        v = bob.recv() => (false, v),
    };
    let (winner, loser, survivor, refused) = if alice_lost {
        (&mut bob, &mut alice, "from-bob", "inv-from-alice")
    } else {
        (&mut alice, &mut bob, "from-alice", "inv-from-bob")
    };
    let second = loser.recv().await;
    let (err, inc) = if first["type"] == "error" {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(err["code"], "glare", "{err}");
    assert_eq!(err["ref"], refused);
    assert_eq!(err["call_id"], survivor);
    assert_eq!(inc["type"], "call.incoming");
    assert_eq!(inc["call_id"], survivor);
    winner.expect_silence(200).await;
    loser.accept(survivor).await;
    winner.expect("call.accepted").await;
    loser.expect("call.accepted").await;
    // call.accepted is held until the answer is committed (protocol.md §8.2).
    let (_, hist) = srv.get("/v1/calls", Some(&alice.token)).await;
    assert_eq!(hist["calls"].as_array().unwrap().len(), 1, "{hist}");
}

#[tokio::test]
async fn dropped_socket_gets_a_grace_period_and_resumes_on_the_same_endpoint() {
    let srv = TestServer::start_with(|c| c.reconnect_grace = Duration::from_secs(3)).await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    answered_call(&mut alice, &mut bob, "survivor").await;
    let token = bob.token.clone();
    drop(bob); // the socket drops without a close frame

    srv.await_connections(1).await; // the server saw it go
    alice.send(json!({"type": "call.update", "call_id": "survivor", "kind": "offer", "sdp": "v=0\r\na=ice-restart\r\n"})).await;
    alice.expect_silence(300).await; // no call.ended: the call stays up

    let mut bob = srv.connect(&token, "bob", "b1").await;
    let calls = bob.welcome["calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 1, "{}", bob.welcome);
    assert_eq!(calls[0]["call_id"], "survivor");
    assert_eq!(calls[0]["phase"], "active");
    assert_eq!(calls[0]["peer"]["user"], "alice");
    // What alice sent meanwhile was kept for bob.
    let upd = bob.expect("call.update").await;
    assert_eq!(upd["sdp"], "v=0\r\na=ice-restart\r\n");
    bob.hangup("survivor").await;
    assert_eq!(alice.expect("call.ended").await["reason"], "completed");
    assert_eq!(bob.expect("call.ended").await["reason"], "completed");
}

#[tokio::test]
async fn a_party_that_does_not_come_back_ends_the_call_as_failed() {
    let srv = TestServer::start_with(|c| c.reconnect_grace = Duration::from_millis(500)).await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    answered_call(&mut alice, &mut bob, "lost").await;
    drop(bob);
    let e = alice.expect("call.ended").await;
    assert_eq!(e["reason"], "failed");
    // call.ended is held until the end is committed (protocol.md §8.2).
    let (_, rec) = srv.get("/v1/calls/lost", Some(&alice.token)).await;
    assert_eq!(rec["end_reason"], "failed");
}

#[tokio::test]
async fn a_rung_endpoint_that_drops_stops_ringing_and_the_last_one_makes_it_unavailable() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("gone", "bob").await;
    bob.expect("call.incoming").await;
    bob.close().await;
    assert_eq!(alice.expect("call.ended").await["reason"], "unavailable");
}

#[tokio::test]
async fn presence_is_broadcast_within_the_tenant_and_shown_in_the_directory() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    // Alice hears of herself first (the broadcast includes her), then of bob.
    let p = alice.recv_any().await;
    assert_eq!(
        (p["type"].as_str(), p["user"]["user"].as_str()),
        (Some("presence"), Some("alice"))
    );
    let bob = srv.client("bob", "b1").await;
    let p = alice.recv_any().await;
    assert_eq!(p["type"], "presence");
    assert_eq!(p["user"]["user"], "bob");
    assert_eq!(p["status"], "available");

    let mut bob = bob;
    bob.send(json!({"type": "presence.set", "status": "away"}))
        .await;
    let p = alice.recv_any().await;
    assert_eq!(
        (p["user"]["user"].as_str(), p["status"].as_str()),
        (Some("bob"), Some("away"))
    );
    let (_, dir) = srv.get("/v1/directory", Some(&alice.token)).await;
    let users = dir["users"].as_array().unwrap();
    let find = |u: &str| users.iter().find(|e| e["user"] == u).unwrap()["presence"].clone();
    assert_eq!(find("bob"), "away");
    assert_eq!(find("alice"), "available");
    assert_eq!(find("carol"), "offline");
    let (_, dir) = srv.get("/v1/directory?q=car", Some(&alice.token)).await;
    assert_eq!(dir["users"].as_array().unwrap().len(), 1);

    bob.send(json!({"type": "presence.set", "id": "off", "status": "offline"}))
        .await;
    bob.expect_error("invalid_value", Some("off")).await;
    bob.close().await;
    loop {
        let p = alice.recv_any().await;
        if p["status"] == "offline" {
            assert_eq!(p["user"]["user"], "bob");
            break;
        }
    }
}

#[tokio::test]
async fn a_second_connection_with_the_same_device_id_replaces_the_first() {
    let srv = TestServer::start().await;
    let mut first = srv.client("alice", "a1").await;
    let _second = srv.connect(&first.token.clone(), "alice", "a1").await;
    assert_eq!(first.expect_close().await, 4002);
}

#[tokio::test]
async fn a_call_that_ends_during_grace_is_told_on_return() {
    let srv = TestServer::start_with(|c| c.reconnect_grace = Duration::from_secs(3)).await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    answered_call(&mut alice, &mut bob, "ended-away").await;
    let token = bob.token.clone();
    drop(bob);
    srv.await_connections(1).await; // the server saw it go
    alice.hangup("ended-away").await;
    assert_eq!(alice.expect("call.ended").await["reason"], "completed");
    let mut bob = srv.connect(&token, "bob", "b1").await;
    assert!(bob.welcome["calls"].as_array().unwrap().is_empty());
    let e = bob.expect("call.ended").await;
    assert_eq!(
        (e["call_id"].as_str(), e["by"].as_str()),
        (Some("ended-away"), Some("alice"))
    );
}

#[tokio::test]
async fn a_rung_endpoint_whose_socket_is_replaced_is_rung_again() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    alice.invite("re-ring", "bob").await;
    bob.expect("call.incoming").await;
    let mut bob2 = srv.connect(&bob.token.clone(), "bob", "b1").await;
    assert_eq!(bob.expect_close().await, 4002);
    assert_eq!(bob2.welcome["calls"][0]["phase"], "ringing");
    let inc = bob2.expect("call.incoming").await;
    assert_eq!(inc["sdp"], fake_sdp("offer"));
    bob2.accept("re-ring").await;
    assert_eq!(alice.expect("call.accepted").await["device_id"], "b1");
}
