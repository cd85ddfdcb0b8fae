//! Test harness: a switchboard on 127.0.0.1:0 with a temp SQLite file (or,
//! with `SWITCHBOARD_TEST_STORE=postgres`, a private PostgreSQL server:
//! `cargo xtask test` runs the API, routing, robustness and queue suites both
//! ways), and WebSocket clients speaking the protocol as raw JSON.
#![allow(dead_code, missing_docs)]

pub mod hooks;
pub mod postgres;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::{Config, Store};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PW: &str = "password-123";
/// The metrics bearer token every test server is configured with.
pub const METRICS_TOKEN: &str = "metrics-token-for-tests";

pub struct TestServer {
    pub base: String,
    pub ws_url: String,
    pub dir: tempfile::TempDir,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), switchboard::Error>>>,
    http: reqwest::Client,
    /// The PostgreSQL server of this test, stopped when the server is
    /// dropped (declared last: dropped last).
    pg: Option<postgres::Postgres>,
}

/// Whether test servers use PostgreSQL (`SWITCHBOARD_TEST_STORE=postgres`)
/// rather than SQLite (unset or `sqlite`); any other value is a mistake.
pub fn test_store_is_postgres() -> bool {
    match std::env::var("SWITCHBOARD_TEST_STORE").as_deref() {
        Err(_) | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("SWITCHBOARD_TEST_STORE={other}: sqlite or postgres"),
    }
}

/// Tenant `acme` with alice, bob, carol, dave; tenant `globex` with mallory.
pub async fn seed(store: &Store) {
    store.add_tenant("acme").await.unwrap();
    store.add_tenant("globex").await.unwrap();
    for (u, d) in [
        ("alice", "Alice Martin"),
        ("bob", "Bob Stone"),
        ("carol", "Carol King"),
        ("dave", "Dave Lee"),
    ] {
        store.add_user("acme", u, d, PW).await.unwrap();
    }
    store
        .add_user("globex", "mallory", "Mallory", PW)
        .await
        .unwrap();
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if test_store_is_postgres() {
            let pg = postgres::Postgres::start();
            let url = pg.create_database("switchboard").await;
            let db = switchboard::store::Database::parse(&url).unwrap();
            let store = Store::connect(&db).await.unwrap();
            seed(&store).await;
            let mut server = Self::serve(dir, store, |c| {
                c.database = Some(url);
                tune(c);
            })
            .await;
            server.pg = Some(pg);
            return server;
        }
        let store = Store::open(dir.path()).await.unwrap();
        seed(&store).await;
        Self::serve(dir, store, tune).await
    }

    pub async fn serve(
        dir: tempfile::TempDir,
        store: Store,
        tune: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::with_data_dir(dir.path());
        config.login_per_account_per_min = 1000;
        config.login_per_ip_per_min = 1000;
        config.metrics_token = Some(METRICS_TOKEN.into());
        tune(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(switchboard::run(listener, config, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            ws_url: format!("ws://{addr}/v1/ws"),
            dir,
            store,
            stop: Some(tx),
            task: Some(task),
            http: reqwest::Client::new(),
            pg: None,
        }
    }

    /// A new server on this one's store (the same SQLite file or
    /// PostgreSQL database), once this one is [stopped](Self::stop).
    pub async fn restart(&mut self) -> TestServer {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let database = self.store.database().clone();
        let store = Store::connect(&database).await.unwrap();
        let url = match database {
            switchboard::store::Database::Postgres(url) => Some(url),
            switchboard::store::Database::Sqlite(_) => None,
        };
        let mut server = Self::serve(dir, store, |c| c.database = url).await;
        server.pg = self.pg.take();
        server
    }

    /// Stops the server and waits until run() returns.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Any method, with a JSON body when given; the answer's status and
    /// JSON body (`Null` when empty).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Polls `GET /v1/calls/{call_id}` (as the holder of `token`) until the
    /// record satisfies `done`, for writes that no frame waits for (e.g.
    /// `call.stats`); panics with the last record after 5 s.
    pub async fn await_record(
        &self,
        token: &str,
        call_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (status, rec) = self.get(&format!("/v1/calls/{call_id}"), Some(token)).await;
            if status == 200 && done(&rec) {
                return rec;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "call {call_id}: record not as expected within 5 s: {status} {rec}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the `switchboard_connections` gauge until it is `n`, i.e. the
    /// server has seen sockets open or close; panics after 5 s.
    pub async fn await_connections(&self, n: usize) {
        let want = format!("switchboard_connections {n}\n");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (_, text) = self.get("/v1/metrics", Some(METRICS_TOKEN)).await;
            if text.as_str().is_some_and(|t| t.contains(&want)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not {n} connections within 5 s: {text}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The value of an unlabelled counter or gauge, e.g.
    /// `switchboard_login_sweeps_total`.
    pub async fn metric(&self, name: &str) -> u64 {
        let (status, text) = self.get("/v1/metrics", Some(METRICS_TOKEN)).await;
        assert_eq!(status, 200, "{text}");
        let text = text.as_str().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// Polls the metric `name` until it reaches `at_least`; panics after 5 s.
    pub async fn await_metric(&self, name: &str, at_least: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.metric(name).await < at_least {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} below {at_least} after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn login(&self, tenant: &str, user: &str) -> String {
        login_at(&self.base, tenant, user).await
    }

    pub async fn raw_socket(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(&self.ws_url)
            .await
            .unwrap();
        ws
    }

    /// Logs in (tenant acme unless `user` is mallory) and connects an endpoint.
    pub async fn client(&self, user: &str, endpoint: &str) -> Client {
        let tenant = if user == "mallory" { "globex" } else { "acme" };
        let token = self.login(tenant, user).await;
        self.connect(&token, user, endpoint).await
    }

    pub async fn connect(&self, token: &str, user: &str, endpoint: &str) -> Client {
        connect_at(&self.ws_url, token, user, endpoint).await
    }
}

/// Logs in at a server's base URL (`http://host:port`) with [`PW`].
pub async fn login_at(base: &str, tenant: &str, user: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/login"))
        .json(&json!({"tenant": tenant, "user": user, "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "login {tenant}/{user}");
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// Connects and says hello; returns once `welcome` arrived.
pub async fn connect_at(ws_url: &str, token: &str, user: &str, endpoint: &str) -> Client {
    {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let mut c = Client {
            ws,
            token: token.to_string(),
            user: user.to_string(),
            endpoint: endpoint.to_string(),
            welcome: Value::Null,
        };
        c.send(json!({"type": "hello", "token": token, "device_id": endpoint, "device_name": format!("{user} {endpoint}"), "protocol": 1}))
            .await;
        c.welcome = c.expect("welcome").await;
        c
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub token: String,
    pub user: String,
    pub endpoint: String,
    pub welcome: Value,
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).await.unwrap();
    }

    /// Next frame of any type (5 s limit). Panics on close.
    pub async fn recv_any(&mut self) -> Value {
        self.recv_any_within(5_000).await
    }

    /// Next frame of any type within `ms`. Panics on close.
    pub async fn recv_any_within(&mut self, ms: u64) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_millis(ms), self.ws.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("{}/{}: no frame within {ms} ms", self.user, self.endpoint)
                })
                .expect("socket ended")
                .expect("socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Close(f) => panic!("{}/{}: closed: {f:?}", self.user, self.endpoint),
                _ => continue,
            }
        }
    }

    /// Next frame that is not `presence`.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = self.recv_any().await;
            if v["type"] != "presence" {
                return v;
            }
        }
    }

    /// Next non-presence frame, which must have this type.
    pub async fn expect(&mut self, ty: &str) -> Value {
        let v = self.recv().await;
        assert_eq!(
            v["type"], ty,
            "{}/{} expected {ty}, got {v}",
            self.user, self.endpoint
        );
        v
    }

    /// Next non-presence frame, within `ms`, which must have this type.
    pub async fn expect_within(&mut self, ty: &str, ms: u64) -> Value {
        let v = loop {
            let v = self.recv_any_within(ms).await;
            if v["type"] != "presence" {
                break v;
            }
        };
        assert_eq!(
            v["type"], ty,
            "{}/{} expected {ty}, got {v}",
            self.user, self.endpoint
        );
        v
    }

    /// Next non-presence frame must be an error with this code and ref.
    pub async fn expect_error(&mut self, code: &str, ref_id: Option<&str>) -> Value {
        let v = self.expect("error").await;
        assert_eq!(v["code"], code, "{v}");
        match ref_id {
            Some(r) => assert_eq!(v["ref"], r, "{v}"),
            None => assert!(v.get("ref").is_none(), "{v}"),
        }
        v
    }

    /// No non-presence frame arrives within `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(
                        v["type"], "presence",
                        "{}/{}: unexpected {v}",
                        self.user, self.endpoint
                    );
                }
                Ok(Some(Ok(Message::Close(f)))) => panic!("closed: {f:?}"),
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("socket ended: {other:?}"),
            }
        }
    }

    /// The connection still answers ping with pong.
    pub async fn assert_usable(&mut self) {
        self.send(json!({"type": "ping", "id": "alive?"})).await;
        self.expect("pong").await;
    }

    /// Waits for the close frame and returns its code.
    pub async fn expect_close(&mut self) -> u16 {
        close_code(&mut self.ws).await
    }

    pub async fn invite(&mut self, call_id: &str, to: &str) {
        self.send(json!({"type": "call.invite", "id": format!("inv-{call_id}"), "call_id": call_id, "to": to, "sdp": fake_sdp("offer")}))
            .await;
    }

    pub async fn accept(&mut self, call_id: &str) {
        self.send(json!({"type": "call.accept", "id": format!("acc-{call_id}"), "call_id": call_id, "sdp": fake_sdp("answer")}))
            .await;
    }

    pub async fn hangup(&mut self, call_id: &str) {
        self.send(
            json!({"type": "call.hangup", "id": format!("bye-{call_id}"), "call_id": call_id}),
        )
        .await;
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Reads until a close frame (or end) and returns its code (1006 if none).
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("no close within 15 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 1006,
            Some(Ok(_)) => continue,
        }
    }
}

pub fn fake_sdp(kind: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns={kind}\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    )
}

/// Alice calls bob and bob answers; returns after both saw call.accepted.
pub async fn answered_call(alice: &mut Client, bob: &mut Client, call_id: &str) {
    alice.invite(call_id, &bob.user.clone()).await;
    let inc = bob.expect("call.incoming").await;
    assert_eq!(inc["call_id"], call_id);
    bob.accept(call_id).await;
    alice.expect("call.accepted").await;
    bob.expect("call.accepted").await;
}
