//! The socket layer against real WebSockets: a panic in one socket's task.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use softphone_protocol::ClientFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::{Config, Shared, Store};

/// Frame id that makes the socket task panic while it holds the hub lock:
/// a stand-in for a bug, to show that it ends that socket only.
pub(super) const PANIC_ID: &str = "test:panic-holding-the-hub-lock";

/// Panics, holding the routing lock, on a frame with id [`PANIC_ID`].
pub(super) fn panic_hook(shared: &Arc<Shared>, frame: &ClientFrame) {
    if frame.id.as_deref() == Some(PANIC_ID) {
        let _held = shared.routing();
        panic!("test hook: a bug while the hub lock is held");
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// The next text frame, or `None` once the socket closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame or the end within 5 s");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// The next frame of type `ty`, skipping `presence`.
async fn expect(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let v = next(ws)
            .await
            .unwrap_or_else(|| panic!("closed; wanted {ty}"));
        if v["type"] == ty {
            return v;
        }
        assert_eq!(v["type"], "presence", "wanted {ty}, got {v}");
    }
}

async fn connect(url: &str, token: &str, endpoint: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    send(
        &mut ws,
        json!({"type": "hello", "token": token, "device_id": endpoint}),
    )
    .await;
    expect(&mut ws, "welcome").await;
    ws
}

#[tokio::test]
async fn a_panic_while_the_hub_lock_is_held_ends_that_socket_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store.add_tenant("acme").await.unwrap();
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let id = store
            .add_user("acme", name, name, "password-123")
            .await
            .unwrap();
        let (token, _) = store
            .create_session(id, Duration::from_secs(600))
            .await
            .unwrap();
        tokens.push(token);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::run(
        listener,
        Config::with_data_dir(dir.path()),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut alice = connect(&url, &tokens[0], "a1").await;
    let mut bob = connect(&url, &tokens[1], "b1").await;
    send(&mut bob, json!({"type": "ping", "id": PANIC_ID})).await;
    // Bob's socket ends…
    while next(&mut bob).await.is_some() {}
    // …and is forgotten as if it had closed: alice hears bob went offline.
    loop {
        let v = next(&mut alice).await.expect("alice's socket stays up");
        if v["type"] == "presence" && v["user"]["user"] == "bob" && v["status"] == "offline" {
            break;
        }
    }

    // The hub, its lock poisoned by the panic, still routes: presence,
    // a new socket, and a whole call.
    send(
        &mut alice,
        json!({"type": "presence.set", "status": "away"}),
    )
    .await;
    loop {
        let v = next(&mut alice).await.expect("alice's socket stays up");
        if v["type"] == "presence" && v["status"] == "away" {
            break;
        }
    }
    let mut bob = connect(&url, &tokens[1], "b1").await;
    let sdp = "v=0\r\n";
    send(
        &mut alice,
        json!({"type": "call.invite", "call_id": "after-panic", "to": "bob", "sdp": sdp}),
    )
    .await;
    expect(&mut bob, "call.incoming").await;
    send(
        &mut bob,
        json!({"type": "call.accept", "call_id": "after-panic", "sdp": sdp}),
    )
    .await;
    expect(&mut alice, "call.accepted").await;
    expect(&mut bob, "call.accepted").await;
    send(
        &mut bob,
        json!({"type": "call.hangup", "call_id": "after-panic"}),
    )
    .await;
    assert_eq!(
        expect(&mut alice, "call.ended").await["reason"],
        "completed"
    );
    assert_eq!(expect(&mut bob, "call.ended").await["reason"], "completed");

    // And it still shuts down cleanly, committing the record.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let alice_id = store.list_users(Some("acme")).await.unwrap()[0].id;
    let rec = store
        .call_of(alice_id, "after-panic")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rec.end_reason,
        Some(softphone_protocol::EndReason::Completed)
    );
}
