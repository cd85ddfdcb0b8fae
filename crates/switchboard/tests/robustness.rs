//! Bad input never crashes or wedges the server; records survive SIGKILL and
//! shutdown; the admin commands work.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use switchboard::now_ms;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn every_bad_frame_gets_a_coded_error_and_the_socket_stays_usable() {
    let srv = TestServer::start().await;

    // Before hello: refused, but the socket waits for a hello.
    let ws = srv.raw_socket().await;
    let mut early = Client {
        ws,
        token: String::new(),
        user: "alice".into(),
        endpoint: "a0".into(),
        welcome: json!(null),
    };
    early.send(json!({"type": "call.invite", "id": "too-early", "call_id": "x", "to": "bob", "sdp": "v=0"})).await;
    early
        .expect_error("not_authenticated", Some("too-early"))
        .await;
    early.send_raw("{{{").await;
    early.expect_error("bad_frame", None).await;
    let token = srv.login("acme", "alice").await;
    early
        .send(json!({"type": "hello", "token": token, "device_id": "a0"}))
        .await;
    early.expect("welcome").await;
    early.assert_usable().await;

    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("not json at all".into(), "bad_frame", None),
        ("[1,2,3]".into(), "bad_frame", None),
        (r#"{"id":"n1"}"#.into(), "bad_frame", Some("n1")),
        (
            r#"{"id":"n2","type":"call.teleport"}"#.into(),
            "unknown_type",
            Some("n2"),
        ),
        (
            r#"{"id":"n3","type":"call.invite","to":"bob"}"#.into(),
            "bad_frame",
            Some("n3"),
        ),
        (
            r#"{"id":"n4","type":"call.accept","call_id":7,"sdp":"v=0"}"#.into(),
            "bad_frame",
            Some("n4"),
        ),
        (
            r#"{"id":"n5","type":"call.hangup","call_id":"no-such-call"}"#.into(),
            "not_found",
            Some("n5"),
        ),
        (
            r#"{"id":"n6","type":"call.invite","call_id":"bad id!","to":"bob","sdp":"v=0"}"#.into(),
            "invalid_value",
            Some("n6"),
        ),
        (
            r#"{"id":"n7","type":"call.invite","call_id":"c7","to":"alice","sdp":"v=0"}"#.into(),
            "self_call",
            Some("n7"),
        ),
        (
            r#"{"id":"n8","type":"hello","token":"t","device_id":"d"}"#.into(),
            "already_authenticated",
            Some("n8"),
        ),
        (
            r#"{"id":"n9","type":"call.stats","call_id":"x","loss_pct":250}"#.into(),
            "invalid_value",
            Some("n9"),
        ),
        (
            format!(
                r#"{{"id":"big","type":"ping","pad":"{}"}}"#,
                "x".repeat(70_000)
            ),
            "frame_too_large",
            Some("big"),
        ),
        (
            format!(
                r#"{{"id":"sdp","type":"call.invite","call_id":"c8","to":"bob","sdp":"{}"}}"#,
                "v".repeat(40_000)
            ),
            "invalid_value",
            Some("sdp"),
        ),
    ];
    for (text, code, ref_id) in &cases {
        alice.send_raw(text).await;
        alice.expect_error(code, *ref_id).await;
    }
    alice
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    alice.expect_error("bad_frame", None).await;
    alice.assert_usable().await;

    // Accepting and hanging up twice.
    answered_call(&mut alice, &mut bob, "twice").await;
    bob.accept("twice").await;
    bob.expect_error("call_state", Some("acc-twice")).await;
    alice.hangup("twice").await;
    alice.expect("call.ended").await;
    bob.expect("call.ended").await;
    alice.hangup("twice").await;
    alice.expect_error("call_state", Some("bye-twice")).await;
    bob.hangup("twice").await;
    bob.expect_error("call_state", Some("bye-twice")).await;
    // Reusing a call id.
    alice.invite("twice", "bob").await;
    alice.expect_error("call_exists", Some("inv-twice")).await;
    // Updates before an answer, stats after the end.
    alice.invite("early-update", "bob").await;
    bob.expect("call.incoming").await;
    alice.send(json!({"type": "call.update", "id": "u", "call_id": "early-update", "kind": "offer", "sdp": "v=0"})).await;
    alice.expect_error("call_state", Some("u")).await;
    alice
        .send(json!({"type": "call.stats", "id": "st", "call_id": "twice", "mos": 4.1}))
        .await;
    alice.assert_usable().await;
    bob.assert_usable().await;
}

#[tokio::test]
async fn frames_over_the_hard_limit_close_with_1009_and_the_server_lives_on() {
    let srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(300 * 1024));
    let _ = alice.ws.send(Message::text(huge)).await;
    let code = alice.expect_close().await;
    assert_eq!(code, 1009);
    let mut again = srv.client("alice", "a2").await;
    again.assert_usable().await;
}

#[tokio::test]
async fn frame_floods_are_rate_limited_without_closing() {
    let srv = TestServer::start_with(|c| c.frames_per_sec = 5).await;
    let mut alice = srv.client("alice", "a1").await;
    for i in 0..40 {
        alice
            .send(json!({"type": "ping", "id": format!("p{i}")}))
            .await;
    }
    let (mut pongs, mut limited) = (0, 0);
    for _ in 0..40 {
        let v = alice.recv().await;
        match v["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(v["code"], "rate_limited");
                assert!(v["ref"].as_str().unwrap().starts_with('p'));
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((20..=22).contains(&pongs), "{pongs} pongs");
    assert_eq!(pongs + limited, 40);
    // Time passes, the bucket refills (5 per second): two frames' worth.
    tokio::time::sleep(Duration::from_millis(400)).await;
    alice.assert_usable().await;
}

#[tokio::test]
async fn a_client_far_over_the_rate_limit_sees_close_4029_not_a_reset() {
    let srv = TestServer::start_with(|c| c.frames_per_sec = 5).await;
    let mut alice = srv.client("alice", "a1").await;
    // 2,000 frames in one write burst: the server stops processing after
    // the 101st refused one, while most of the burst is still unread.
    for i in 0..2000 {
        alice
            .ws
            .feed(Message::text(format!(r#"{{"type":"ping","id":"p{i}"}}"#)))
            .await
            .unwrap();
    }
    alice.ws.flush().await.unwrap();
    assert_eq!(alice.expect_close().await, 4029);
    let mut again = srv.client("alice", "a2").await;
    again.assert_usable().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_gets_close_4008_when_it_reads_again() {
    let srv = TestServer::start_with(|c| c.frames_per_sec = 1_000_000).await;
    // Alice's endpoint on a socket with a small receive buffer, so that the
    // kernel's buffers fill after a few hundred frames, not tens of thousands.
    let token = srv.login("acme", "alice").await;
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let addr = srv.base.trim_start_matches("http://").parse().unwrap();
    let stream = tcp.connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        srv.ws_url.as_str(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut alice = Client {
        ws,
        token: token.clone(),
        user: "alice".into(),
        endpoint: "a1".into(),
        welcome: serde_json::Value::Null,
    };
    alice
        .send(json!({"type": "hello", "token": token, "device_id": "a1", "device_name": "slow", "protocol": 1}))
        .await;
    alice.expect("welcome").await;

    // Bob changes presence over and over; each change is a frame to Alice,
    // who reads nothing. Bob's own copies are read by a task.
    let bob = srv.client("bob", "b1").await;
    let (mut bob_tx, mut bob_rx) = futures_util::StreamExt::split(bob.ws);
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut bob_rx).await {}
    });
    let mut sent = 0;
    while srv.metric("switchboard_too_slow_closes_total").await == 0 {
        for i in 0..500 {
            let status = if i % 2 == 0 { "away" } else { "available" };
            let frame = json!({"type": "presence.set", "status": status});
            bob_tx.feed(Message::text(frame.to_string())).await.unwrap();
        }
        bob_tx.flush().await.unwrap();
        sent += 500;
        assert!(sent < 200_000, "no 4008 after {sent} presence changes");
    }
    // Alice reads again: what was buffered, then the close frame.
    assert_eq!(alice.expect_close().await, 4008);
    reader.abort();
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_three_heartbeats() {
    let srv = TestServer::start_with(|c| c.heartbeat = Duration::from_millis(300)).await;
    let mut alice = srv.client("alice", "a1").await;
    assert_eq!(alice.welcome["heartbeat_ms"], 300);
    assert_eq!(alice.expect_close().await, 4004);
}

#[tokio::test]
async fn a_socket_that_never_says_hello_is_closed() {
    let srv = TestServer::start_with(|c| c.hello_timeout = Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let mut ws = srv.raw_socket().await;
    // Frames other than hello do not reset the timer.
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, 4003);
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(300)..Duration::from_secs(5)).contains(&waited),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_and_keeps_records() {
    let mut srv = TestServer::start().await;
    let mut alice = srv.client("alice", "a1").await;
    let mut bob = srv.client("bob", "b1").await;
    answered_call(&mut alice, &mut bob, "before-stop").await;
    alice.hangup("before-stop").await;
    alice.expect("call.ended").await;
    bob.expect("call.ended").await;
    answered_call(&mut alice, &mut bob, "during-stop").await;
    srv.stop().await;
    assert_eq!(alice.expect_close().await, 1012);
    assert_eq!(bob.expect_close().await, 1012);

    // Restart on the same store: the ended call is intact, the open one failed.
    let srv2 = srv.restart().await;
    let token = srv2.login("acme", "alice").await;
    let (_, done) = srv2.get("/v1/calls/before-stop", Some(&token)).await;
    assert_eq!(done["end_reason"], "completed");
    let (_, open) = srv2.get("/v1/calls/during-stop", Some(&token)).await;
    assert_eq!(open["end_reason"], "failed");
    assert!(open["answered_at_ms"].as_u64().is_some());
    // Call ids are never reused, even once the server has forgotten them.
    let mut alice = srv2.connect(&token, "alice", "a1").await;
    alice.invite("before-stop", "bob").await;
    alice
        .expect_error("call_exists", Some("inv-before-stop"))
        .await;
}

/// The binary, run as an operator would; killed when dropped.
struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The options that name a store: the SQLite file in `data`.
fn data_dir(data: &std::path::Path) -> Vec<String> {
    vec!["--data-dir".into(), data.display().to_string()]
}

/// The binary on the store `store` names ([`data_dir`], or `--database URL`).
fn switchboard_cmd(store: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    c.args(store).env("SWITCHBOARD_LOG", "warn");
    c
}

fn admin(data: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    admin_on(&data_dir(data), args, stdin)
}

fn admin_on(store: &[String], args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = switchboard_cmd(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn start_binary(store: &[String]) -> Proc {
    start_binary_with(store, &[])
}

/// [`start_binary`] with more `serve` options.
fn start_binary_with(store: &[String], serve: &[&str]) -> Proc {
    let mut child = switchboard_cmd(store)
        .stderr(Stdio::null())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--login-per-ip-per-min",
            "1000",
        ])
        .args(serve)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Proc { child, base }
}

/// The binary with exactly `args` (no `--data-dir` unless given) and the
/// `SWITCHBOARD_*` variables `envs` (others removed); its URL once it listens.
fn start_configured(args: &[&str], envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("SWITCHBOARD_LOG", "warn")
        .envs(envs.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    Proc { child, base }
}

#[tokio::test]
async fn configuration_layers_flags_over_environment_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(admin(&data, &["tenant", "add", "acme"], None).0);
    let add = [
        "user",
        "add",
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--display-name",
        "Alice",
        "--password-stdin",
    ];
    assert!(admin(&data, &add, Some(PW)).0);
    // The file alone says where the data is and where to listen.
    let file = dir.path().join("switchboard.toml");
    std::fs::write(
        &file,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nheartbeat_secs = 7\nlogin_per_ip_per_min = 1000\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let heartbeat_ms = |p: Proc| async move {
        let token = login_at(&p.base, "acme", "alice").await;
        let ws_url = format!("{}/v1/ws", p.base.replace("http://", "ws://"));
        let alice = connect_at(&ws_url, &token, "alice", "a1").await;
        drop(p);
        alice.welcome["heartbeat_ms"].as_u64().unwrap()
    };
    let env = [("SWITCHBOARD_HEARTBEAT_SECS", "5")];
    // File over defaults; with no subcommand `serve` is meant.
    let p = start_configured(&["--config", config], &[]);
    assert_eq!(heartbeat_ms(p).await, 7_000);
    // The environment over the file.
    let p = start_configured(&["--config", config], &env);
    assert_eq!(heartbeat_ms(p).await, 5_000);
    // A flag over the environment; the config file may come from it too.
    let both = [env[0], ("SWITCHBOARD_CONFIG", config)];
    let p = start_configured(&["serve", "--heartbeat-secs", "3"], &both);
    assert_eq!(heartbeat_ms(p).await, 3_000);

    // A key the server does not know is refused, naming it.
    std::fs::write(&file, "heartbeat_sec = 7\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", config, "tenant", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("heartbeat_sec"), "{err}");
}

#[tokio::test]
async fn admin_commands_manage_tenants_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(admin(d, &["tenant", "add", "acme"], None).0);
    let (ok, out) = admin(d, &["tenant", "add", "acme"], None);
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = admin(
        d,
        &[
            "user",
            "add",
            "--tenant",
            "acme",
            "--user",
            "alice",
            "--display-name",
            "Alice Martin",
            "--password-stdin",
        ],
        Some("password-123\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(
        d,
        &[
            "user",
            "add",
            "--tenant",
            "acme",
            "--user",
            "bob",
            "--display-name",
            "Bob",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert!(!ok && out.contains("at least 8"), "{out}");
    let (ok, out) = admin(
        d,
        &[
            "user",
            "add",
            "--tenant",
            "nope",
            "--user",
            "x",
            "--display-name",
            "X",
            "--password-stdin",
        ],
        Some("password-123"),
    );
    assert!(!ok && out.contains("no tenant"), "{out}");
    let (_, out) = admin(d, &["user", "list"], None);
    assert!(
        out.contains("alice") && out.contains("Alice Martin") && out.contains("active"),
        "{out}"
    );

    let mut p = start_binary(&data_dir(d));
    let token = login_at(&p.base, "acme", "alice").await;
    assert!(
        admin(
            d,
            &["user", "disable", "--tenant", "acme", "--user", "alice"],
            None
        )
        .0
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/login", p.base))
        .json(&json!({"tenant": "acme", "user": "alice", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let me = reqwest::Client::new()
        .get(format!("{}/v1/me", p.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "disabling revokes tokens");
    let (_, out) = admin(d, &["user", "list", "--tenant", "acme"], None);
    assert!(out.contains("disabled"), "{out}");
    assert!(
        admin(
            d,
            &["user", "enable", "--tenant", "acme", "--user", "alice"],
            None
        )
        .0
    );
    login_at(&p.base, "acme", "alice").await;
    p.child.kill().unwrap();
    let _ = p.child.wait();
}

#[tokio::test]
async fn sigkill_mid_call_keeps_ended_calls_and_fails_open_ones_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    sigkill_mid_call(&data_dir(dir.path())).await;
}

/// The same on PostgreSQL, the admin commands included (`--database`).
#[tokio::test]
async fn sigkill_mid_call_keeps_records_in_postgres_too() {
    let pg = common::postgres::Postgres::start();
    let url = pg.create_database("switchboard").await;
    let dir = tempfile::tempdir().unwrap();
    let mut store = data_dir(dir.path());
    store.extend(["--database".to_string(), url]);
    sigkill_mid_call(&store).await;
    // Nothing went to the data directory's SQLite file.
    assert!(!dir.path().join(switchboard::store::DB_FILE).exists());
}

async fn sigkill_mid_call(d: &[String]) {
    assert!(admin_on(d, &["tenant", "add", "acme"], None).0);
    for u in ["alice", "bob"] {
        let (ok, out) = admin_on(
            d,
            &[
                "user",
                "add",
                "--tenant",
                "acme",
                "--user",
                u,
                "--display-name",
                u,
                "--password-stdin",
            ],
            Some(PW),
        );
        assert!(ok, "{out}");
    }
    let mut p = start_binary(d);
    let ws_url = format!("{}/v1/ws", p.base.replace("http://", "ws://"));
    let ta = login_at(&p.base, "acme", "alice").await;
    let tb = login_at(&p.base, "acme", "bob").await;
    let mut alice = connect_at(&ws_url, &ta, "alice", "a1").await;
    let mut bob = connect_at(&ws_url, &tb, "bob", "b1").await;
    for i in 0..3 {
        let id = format!("done-{i}");
        answered_call(&mut alice, &mut bob, &id).await;
        bob.hangup(&id).await;
        alice.expect("call.ended").await;
        bob.expect("call.ended").await;
    }
    answered_call(&mut alice, &mut bob, "open-call").await;
    let mut bob2 = connect_at(&ws_url, &tb, "bob", "b2").await;
    alice.invite("ringing-call", "bob").await;
    // call.incoming is held until the call's row is committed (§8.2).
    bob2.expect("call.incoming").await;

    // SIGKILL: no chance to flush anything.
    p.child.kill().unwrap();
    p.child.wait().unwrap();

    let mut p = start_binary(d);
    let ta = login_at(&p.base, "acme", "alice").await;
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/calls?limit=50", p.base))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = resp["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 5, "{resp}");
    let by_id = |id: &str| calls.iter().find(|c| c["call_id"] == id).unwrap().clone();
    for i in 0..3 {
        let c = by_id(&format!("done-{i}"));
        assert_eq!(c["end_reason"], "completed");
        assert_eq!(c["ended_by"], "bob");
    }
    let open = by_id("open-call");
    assert_eq!(open["end_reason"], "failed");
    assert!(open["ended_at_ms"].as_u64().unwrap() >= open["answered_at_ms"].as_u64().unwrap());
    assert_eq!(by_id("ringing-call")["end_reason"], "failed");
    assert_eq!(by_id("ringing-call")["duration_ms"], 0);
    p.child.kill().unwrap();
    let _ = p.child.wait();
}

/// Two nodes share one PostgreSQL database. A node that starts leaves the
/// other's live calls alone; a node that is SIGKILLed mid-call has its
/// unfinished calls failed by the survivor once its heartbeat is stale,
/// ending at its last heartbeat; the survivor's own call goes on.
#[tokio::test]
async fn the_calls_of_a_killed_node_are_failed_by_another_and_its_own_go_on() {
    let pg = common::postgres::Postgres::start();
    let url = pg.create_database("switchboard").await;
    let dir = tempfile::tempdir().unwrap();
    let mut store = data_dir(dir.path());
    store.extend(["--database".to_string(), url]);
    assert!(admin_on(&store, &["tenant", "add", "acme"], None).0);
    for u in ["alice", "bob", "carol", "dave"] {
        let add = [
            "user",
            "add",
            "--tenant",
            "acme",
            "--user",
            u,
            "--display-name",
            u,
            "--password-stdin",
        ];
        let (ok, out) = admin_on(&store, &add, Some(PW));
        assert!(ok, "{out}");
    }
    let node = |name: &str| {
        start_binary_with(
            &store,
            &[
                "--node-name",
                name,
                "--node-heartbeat-secs",
                "1",
                "--node-stale-secs",
                "3",
            ],
        )
    };
    let ws = |p: &Proc| format!("{}/v1/ws", p.base.replace("http://", "ws://"));
    let record = |base: String, token: String, id: &'static str| async move {
        let rec: serde_json::Value = reqwest::Client::new()
            .get(format!("{base}/v1/calls/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rec
    };

    let mut a = node("a");
    let ta = login_at(&a.base, "acme", "alice").await;
    let tb = login_at(&a.base, "acme", "bob").await;
    let mut alice = connect_at(&ws(&a), &ta, "alice", "a1").await;
    let mut bob = connect_at(&ws(&a), &tb, "bob", "b1").await;
    answered_call(&mut alice, &mut bob, "on-a").await;

    let b = node("b");
    let tc = login_at(&b.base, "acme", "carol").await;
    let td = login_at(&b.base, "acme", "dave").await;
    let mut carol = connect_at(&ws(&b), &tc, "carol", "c1").await;
    let mut dave = connect_at(&ws(&b), &td, "dave", "d1").await;
    answered_call(&mut carol, &mut dave, "on-b").await;
    // Node b's start did not end node a's call; a's tokens work on b.
    let on_a = record(b.base.clone(), ta.clone(), "on-a").await;
    assert!(on_a["answered_at_ms"].is_u64(), "{on_a}");
    assert!(on_a["ended_at_ms"].is_null(), "{on_a}");

    let killed_at = now_ms();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let on_a = loop {
        let rec = record(b.base.clone(), ta.clone(), "on-a").await;
        if !rec["end_reason"].is_null() {
            break rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node a's call still open 15 s after its death: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(on_a["end_reason"], "failed");
    let ended = on_a["ended_at_ms"].as_u64().unwrap();
    let answered = on_a["answered_at_ms"].as_u64().unwrap();
    // Ended at a's last heartbeat (every second) before the kill.
    assert!(
        ended >= answered && ended <= killed_at,
        "{on_a}, killed at {killed_at}"
    );
    assert_eq!(on_a["duration_ms"].as_u64().unwrap(), ended - answered);

    // Node b's call is untouched and ends normally.
    let on_b = record(b.base.clone(), tc.clone(), "on-b").await;
    assert!(on_b["ended_at_ms"].is_null(), "{on_b}");
    carol.hangup("on-b").await;
    carol.expect("call.ended").await;
    dave.expect("call.ended").await;
    let on_b = record(b.base.clone(), tc.clone(), "on-b").await;
    assert_eq!(on_b["end_reason"], "completed", "{on_b}");
    drop(b);
}

#[tokio::test]
async fn admin_commands_manage_queues_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(admin(d, &["tenant", "add", "acme"], None).0);
    let add = [
        "user",
        "add",
        "--tenant",
        "acme",
        "--user",
        "alice",
        "--display-name",
        "Alice",
        "--password-stdin",
    ];
    assert!(admin(d, &add, Some(PW)).0);
    let (ok, out) = admin(
        d,
        &[
            "user", "role", "--tenant", "acme", "--user", "alice", "--role", "admin",
        ],
        None,
    );
    assert!(ok, "{out}");
    let (_, out) = admin(d, &["user", "list"], None);
    assert!(out.contains("admin"), "{out}");

    let queue = |extra: &[&str]| {
        let mut args = vec!["queue", "add", "--tenant", "acme"];
        args.extend_from_slice(extra);
        admin(d, &args, None)
    };
    let (ok, out) = queue(&[
        "--name",
        "support",
        "--number",
        "2001",
        "--strategy",
        "ring_all",
        "--hours",
        "mon-fri 09:00-18:00",
        "--timezone",
        "Europe/Paris",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = queue(&["--name", "alice"]);
    assert!(!ok && out.contains("user's name"), "{out}");
    let (ok, out) = queue(&["--name", "sales", "--ring-secs", "1"]);
    assert!(!ok && out.contains("ring_secs"), "{out}");
    let (ok, out) = queue(&["--name", "sales", "--hours", "weekdays 9-5"]);
    assert!(!ok && out.contains("weekdays"), "{out}");
    let member = ["--tenant", "acme", "--queue", "support", "--user", "alice"];
    let (ok, out) = admin(d, &[&["queue", "member-add"][..], &member].concat(), None);
    assert!(ok, "{out}");
    let (_, out) = admin(d, &["queue", "list", "--tenant", "acme"], None);
    let line = out
        .lines()
        .find(|l| l.starts_with("support"))
        .unwrap_or_default();
    for part in ["2001", "ring_all", "20s", "alice"] {
        assert!(line.contains(part), "{part} missing: {out}");
    }
    let (ok, out) = admin(
        d,
        &[&["queue", "member-remove"][..], &member].concat(),
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(
        d,
        &["queue", "remove", "--tenant", "acme", "--name", "support"],
        None,
    );
    assert!(ok, "{out}");
    let (_, out) = admin(d, &["queue", "list", "--tenant", "acme"], None);
    assert!(!out.contains("support"), "{out}");
}

/// Webhook events are written with the CDR change they report: a node
/// SIGKILLed while its receiver is down loses none, and the next run
/// delivers them.
#[tokio::test]
async fn webhook_events_survive_sigkill_and_are_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = data_dir(dir.path());
    assert!(admin_on(&d, &["tenant", "add", "acme"], None).0);
    for u in ["alice", "bob"] {
        let (ok, out) = admin_on(
            &d,
            &[
                "user",
                "add",
                "--tenant",
                "acme",
                "--user",
                u,
                "--display-name",
                u,
                "--password-stdin",
            ],
            Some(PW),
        );
        assert!(ok, "{out}");
    }
    let (ok, out) = admin_on(
        &d,
        &[
            "user", "role", "--tenant", "acme", "--user", "alice", "--role", "admin",
        ],
        None,
    );
    assert!(ok, "{out}");
    let hook = common::hooks::Receiver::start(true).await;

    let mut p = start_binary(&d);
    let ws_url = format!("{}/v1/ws", p.base.replace("http://", "ws://"));
    let ta = login_at(&p.base, "acme", "alice").await;
    let tb = login_at(&p.base, "acme", "bob").await;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/admin/webhooks", p.base))
        .bearer_auth(&ta)
        .json(&json!({"url": hook.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_string();
    let mut alice = connect_at(&ws_url, &ta, "alice", "a1").await;
    let mut bob = connect_at(&ws_url, &tb, "bob", "b1").await;
    answered_call(&mut alice, &mut bob, "hooked").await;
    bob.hangup("hooked").await;
    alice.expect("call.ended").await;
    // The receiver refuses: the events stay in the outbox.
    while !hook.hits().iter().any(|h| h.event == "call.ended") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.child.kill().unwrap();
    p.child.wait().unwrap();

    hook.refuse(false);
    let mut p = start_binary(&d);
    let got = hook
        .await_events(
            "hooked",
            &["call.initiated", "call.answered", "call.ended"],
            // A delivery under way at the kill waits out its 30 s lease.
            45,
        )
        .await;
    for h in &got {
        common::hooks::verify(h, &secret);
    }
    p.child.kill().unwrap();
    let _ = p.child.wait();
}
