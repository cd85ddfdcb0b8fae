//! Shared pieces of the end-to-end tests: a switchboard on loopback with a
//! temp SQLite file, engines logged in to it, and capturing sinks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use softphone_audio::Sink;
use softphone_engine::call::CallState;
use softphone_engine::{Engine, EngineConfig, EngineEvent};
use tokio::sync::mpsc;

pub mod cleanup;
pub mod webdriver;

/// Held by each test that makes real calls, so a test binary runs its
/// calls one at a time: audio timing assertions need the CPU they measure.
pub static ONE_CALL_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Password of every test account.
pub const PW: &str = "password-123";

/// A running switchboard with tenant `acme` and users alice, bob, carol.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The data directory (kept alive while the server runs).
    pub dir: tempfile::TempDir,
    /// The server's store (its SQLite file), e.g. to define queues.
    pub store: switchboard::Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Starts the server in this process on a free port.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, &[]).await
    }

    /// Like [`Server::start`], with the configuration adjusted by `tune`
    /// (e.g. a short ring timeout) and extra users `(user, display name)`.
    pub async fn start_with(
        tune: impl FnOnce(&mut switchboard::Config),
        extra_users: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = switchboard::Store::open(dir.path()).await.expect("store");
        store.add_tenant("acme").await.expect("tenant");
        for (u, d) in [
            ("alice", "Alice Martin"),
            ("bob", "Bob Stone"),
            ("carol", "Carol King"),
        ] {
            store.add_user("acme", u, d, PW).await.expect("user");
        }
        for (u, d) in extra_users {
            store.add_user("acme", u, d, PW).await.expect("user");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut config = switchboard::Config::with_data_dir(dir.path());
        tune(&mut config);
        tokio::spawn(switchboard::run(listener, config, async move {
            let _ = rx.await;
        }));
        Self {
            base,
            dir,
            store,
            stop: Some(tx),
        }
    }

    /// Logs `user` in and connects an engine for device `device`.
    pub async fn engine(&self, user: &str, device: &str) -> (Engine, Events, String) {
        self.engine_via(&self.base, user, device).await
    }

    /// GET with a bearer token; the JSON body.
    pub async fn get(&self, path: &str, token: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// An engine's event stream with waiting helpers.
pub struct Events(pub mpsc::UnboundedReceiver<EngineEvent>);

impl Events {
    /// Waits (10 s at most) for the first event `pick` accepts.
    pub async fn wait<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = self.0.recv().await {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            panic!("event stream ended while waiting for {what}");
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
    }

    /// Waits (10 s at most) for call `call` to reach state `want`.
    pub async fn wait_state(&mut self, call: &str, want: CallState) {
        let what = format!("call {call} {want:?}");
        self.wait(&what, |ev| match ev {
            EngineEvent::CallState { call_id, state } if call_id == call && *state == want => {
                Some(())
            }
            _ => None,
        })
        .await
    }

    /// Collects what `pick` accepts (10 s at most) up to and including the
    /// first item `last` says ends the sequence.
    pub async fn collect_until<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&EngineEvent) -> Option<T>,
        last: impl Fn(&T) -> bool,
    ) -> Vec<T> {
        let mut out = Vec::new();
        loop {
            let t = self.wait(what, &mut pick).await;
            let done = last(&t);
            out.push(t);
            if done {
                return out;
            }
        }
    }
}

/// A binary of the workspace (`phonectl`, `switchboard`), built next to
/// this test binary (`cargo xtask test` builds them first; a lone `cargo
/// test` builds them here).
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir");
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "switchboard", "-p", "phonectl"])
            .status()
            .expect("cargo build")
            .success();
        assert!(ok, "building the binaries failed");
    }
    path
}

/// The strongest frequency of 48 kHz mono `samples`, in Hz, searched
/// between 100 Hz and 4 kHz: what a tone that crossed a call arrived as.
pub fn dominant(samples: &[f32]) -> f64 {
    softphone_audio::analysis::dominant_frequency(samples, 48_000.0, 100.0, 4_000.0)
}

/// A sink that keeps everything it hears.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<f32>>>);

impl Sink for Capture {
    fn write_frame(&mut self, frame: &[f32]) {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(frame);
        }
    }
}

impl Capture {
    /// Takes what was heard so far.
    pub fn take(&self) -> Vec<f32> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// Discards what was heard so far, waits, and returns what is heard
    /// during the next `ms`.
    pub async fn listen(&self, ms: u64) -> Vec<f32> {
        self.take();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.take()
    }
}

/// A TCP proxy in front of the switchboard whose connections can be cut,
/// to drop an engine's signaling socket from outside.
pub struct Proxy {
    /// `http://127.0.0.1:PORT` of the proxy.
    pub base: String,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Proxy {
    /// Starts a proxy to the server at `target` (`http://host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (cut, _) = tokio::sync::broadcast::channel::<()>(4);
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let mut stop = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stop.recv() => {}
                    }
                });
            }
        });
        Self { base, cut }
    }

    /// Drops every connection open through the proxy now.
    pub fn cut(&self) {
        let _ = self.cut.send(());
    }
}

impl Server {
    /// Creates acme's published queue `support` (longest idle, 20 s ring
    /// time, no wrap-up) with these members.
    pub async fn support_queue(&self, members: &[&str]) {
        let acme = self.store.tenant_id("acme").await.expect("tenant");
        let mut spec = switchboard::store::QueueSpec::named("support");
        spec.published = true;
        spec.ring_secs = 20;
        spec.wrap_up_secs = 0;
        self.store.add_queue(acme, &spec).await.expect("queue");
        for m in members {
            self.store
                .set_queue_member(acme, "support", m, true)
                .await
                .expect("member");
        }
    }

    /// Gives acme's `user` a role: `agent`, `supervisor` or `admin`.
    pub async fn set_role(&self, user: &str, role: &str) {
        self.store
            .set_role("acme", user, switchboard::store::Role::parse(role))
            .await
            .expect("role");
    }

    /// A web caller (guest) of acme's published queue `queue`, as the call
    /// widget makes one (`POST /v1/guest/acme/token` with `who`: name,
    /// email, topic, page), with an engine connected on its token
    /// (loopback ICE only).
    pub async fn guest_engine(&self, queue: &str, who: serde_json::Value) -> (Engine, Events) {
        let mut body = who;
        body["queue"] = serde_json::Value::String(queue.into());
        let resp: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/guest/acme/token", self.base))
            .json(&body)
            .send()
            .await
            .expect("guest token request")
            .json()
            .await
            .expect("guest token json");
        let token = resp["token"].as_str().expect("a guest token").to_string();
        let mut config = EngineConfig::new(&self.base, &token, "guest-browser");
        config.media.loopback_only = true;
        let (engine, rx) = Engine::connect(config).await.expect("guest connects");
        (engine, Events(rx))
    }

    /// Like [`Server::engine`], but the engine talks to `via` (e.g. a
    /// [`Proxy`]); also returns the token.
    pub async fn engine_via(
        &self,
        via: &str,
        user: &str,
        device: &str,
    ) -> (Engine, Events, String) {
        let media = softphone_engine::media::MediaOptions {
            loopback_only: true,
            relay_only: false,
        };
        self.connect_engine(via, media, user, device).await
    }

    /// Like [`Server::engine`], with explicit media options.
    pub async fn engine_with(
        &self,
        media: softphone_engine::media::MediaOptions,
        user: &str,
        device: &str,
    ) -> (Engine, Events, String) {
        self.connect_engine(&self.base, media, user, device).await
    }

    async fn connect_engine(
        &self,
        via: &str,
        media: softphone_engine::media::MediaOptions,
        user: &str,
        device: &str,
    ) -> (Engine, Events, String) {
        let login = softphone_engine::api::Api::login(&self.base, "acme", user, PW)
            .await
            .expect("login");
        let mut config = EngineConfig::new(via, &login.token, device);
        config.endpoint_name = format!("{user}'s test endpoint");
        config.media = media;
        let (engine, rx) = Engine::connect(config).await.expect("connect");
        (engine, Events(rx), login.token)
    }
}

/// Runs a re-execution of a test (inside PulseAudio, D-Bus…) and echoes
/// its standard output with a `│ ` prefix, so that its `test result:` line
/// is not counted as a second test by `cargo xtask test`.
pub fn run_nested(cmd: &mut std::process::Command) -> std::process::ExitStatus {
    use std::io::BufRead;
    let mut run = cleanup::Guarded::spawn(cmd.stdout(std::process::Stdio::piped()))
        .expect("re-running the test");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    if let Some(out) = run.child().stdout.take() {
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                println!("  │ {line}");
            }
            let _ = done_tx.send(());
        });
    }
    // Waits for the re-run, then stops what it left running: the daemons
    // of its session (gnome-keyring-daemon, D-Bus activated services),
    // which would otherwise outlive the test and keep the pipe open.
    let status = run.wait().expect("waiting for the re-run test");
    let _ = done_rx.recv_timeout(Duration::from_secs(3));
    status
}

/// Runs the calling test again, inside a private D-Bus session
/// (`dbus-run-session`) with a gnome-keyring daemon unlocked for the Secret
/// Service, plus the variables in `env`; returns `true` when the caller is
/// that inner run and should do the work, `false` when it was the outer run
/// (which has asserted that the inner run passed). `cargo xtask setup`
/// installs dbus and gnome-keyring.
pub fn inside_dbus_keyring(test_name: &str, env: &[(&str, &std::path::Path)]) -> bool {
    if std::env::var_os("SOFTPHONE_TEST_IN_DBUS").is_some() {
        return true;
    }
    let mut cmd = std::process::Command::new("dbus-run-session");
    cmd.args(["--", "sh", "-c"])
        .arg(
            "printf ci-secret | gnome-keyring-daemon --unlock --components=secrets >/dev/null \
             && exec \"$0\" --exact \"$1\" --nocapture",
        )
        .arg(std::env::current_exe().expect("test path"))
        .arg(test_name)
        .env("SOFTPHONE_TEST_IN_DBUS", "1")
        .envs(env.iter().copied());
    let status = run_nested(&mut cmd);
    assert!(
        status.success(),
        "{test_name} failed inside its D-Bus session"
    );
    false
}

/// Runs the calling test again, inside a private PulseAudio daemon whose
/// default sink is a null sink (`softphone_test`) and default source its
/// monitor; returns `true` when the caller is that inner run and should do
/// the work, `false` when it was the outer run (which has asserted that the
/// inner run passed). No sound card is needed; `cargo xtask setup` installs
/// PulseAudio.
pub fn inside_pulseaudio(test_name: &str) -> bool {
    if std::env::var_os("SOFTPHONE_TEST_IN_PULSE").is_some() {
        return true;
    }
    let runtime = tempfile::tempdir().expect("tmp");
    let daemon = cleanup::Guarded::spawn(
        std::process::Command::new("pulseaudio")
            .args([
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "--load=module-null-sink sink_name=softphone_test",
                "--load=module-native-protocol-unix",
                "--log-level=error",
            ])
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("HOME", runtime.path()),
    )
    .expect("pulseaudio (install it: cargo xtask setup)");
    let socket = runtime.path().join("pulse/native");
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut status = std::process::Command::new(std::env::current_exe().expect("test path"));
    status
        .args(["--exact", test_name, "--nocapture"])
        .env("SOFTPHONE_TEST_IN_PULSE", "1")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("PULSE_SERVER", format!("unix:{}", socket.display()))
        // The daemon's cookie (it writes one under its HOME). Without it
        // cpal's native PulseAudio client sends an empty cookie, the daemon
        // kicks it ("protocol error"), and cpal falls back to its ALSA host
        // through ALSA's pulse plugin: the tests would not run the host the
        // app uses on a desktop.
        .env("PULSE_COOKIE", runtime.path().join(".config/pulse/cookie"));
    let status = run_nested(&mut status);
    // Stopped (SIGTERM, then SIGKILL) before its runtime directory goes.
    drop(daemon);
    assert!(
        status.success(),
        "{test_name} failed inside its PulseAudio session"
    );
    false
}

/// A party of a test call: its engine, its events, and the audio it uses.
pub struct Party<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// Its event stream.
    pub events: &'a mut Events,
    /// Its microphone and speaker for this call.
    pub audio: softphone_engine::CallAudio,
}

/// `caller` dials `callee_user`, `callee` answers the incoming call, and
/// both wait until their side is Active. Returns the call id.
pub async fn establish(caller: Party<'_>, callee_user: &str, callee: Party<'_>) -> String {
    let call = caller
        .engine
        .dial(callee_user, caller.audio)
        .await
        .expect("dial");
    callee
        .events
        .wait("incoming call", |ev| match ev {
            EngineEvent::Incoming { call_id, .. } if *call_id == call => Some(()),
            _ => None,
        })
        .await;
    callee
        .engine
        .answer(&call, callee.audio)
        .await
        .expect("answer");
    for events in [caller.events, callee.events] {
        events.wait_state(&call, CallState::Active).await;
    }
    call
}

/// A private coturn (`turnserver`, Debian's `coturn`) on 127.0.0.1, with
/// TURN REST credentials (`use-auth-secret`, the scheme the switchboard's
/// `turn_secret` signs), stopped when dropped. Loopback peers are allowed,
/// so that relayed media can reach engines on this machine.
pub struct Turn {
    /// UDP (and TCP) port of the TURN listener.
    pub port: u16,
    /// The shared secret (coturn `static-auth-secret`).
    pub secret: String,
    // Stopped before its directory is removed (fields drop in order).
    _proc: cleanup::Guarded,
    _dir: tempfile::TempDir,
}

impl Turn {
    /// Starts turnserver and returns once it answers a STUN binding request.
    ///
    /// # Panics
    /// When `turnserver` is missing (`cargo xtask setup` installs coturn) or
    /// does not answer within 10 s.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let secret = format!("turn-secret-{}", std::process::id());
        let at = |name: &str| dir.path().join(name).display().to_string();
        let args = [
            "-n".to_string(),
            "--listening-ip=127.0.0.1".into(),
            "--relay-ip=127.0.0.1".into(),
            format!("--listening-port={port}"),
            "--min-port=40000".into(),
            "--max-port=40999".into(),
            "--use-auth-secret".into(),
            format!("--static-auth-secret={secret}"),
            "--realm=softphone.test".into(),
            "--allow-loopback-peers".into(),
            "--no-tls".into(),
            "--no-dtls".into(),
            "--no-cli".into(),
            "--no-multicast-peers".into(),
            format!("--userdb={}", at("turndb")),
            format!("--pidfile={}", at("turnserver.pid")),
            format!("--log-file={}", at("turnserver.log")),
            "--simple-log".into(),
        ];
        let proc = cleanup::Guarded::spawn(
            std::process::Command::new("turnserver")
                .args(&args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("turnserver (Debian coturn; `cargo xtask setup` installs it)");
        let probe = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("probe socket");
        // A STUN binding request (RFC 8489 §5): type 0x0001, length 0, the
        // magic cookie, a 96-bit transaction id.
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        request.extend_from_slice(b"softphone-tx");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 512];
        loop {
            let _ = probe.send_to(&request, ("127.0.0.1", port)).await;
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), probe.recv(&mut buf)).await
                && n >= 20
                && buf[..2] == [0x01, 0x01]
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "turnserver did not answer STUN within 10 s; its log: {}",
                std::fs::read_to_string(at("turnserver.log")).unwrap_or_default()
            );
        }
        Self {
            port,
            secret,
            _proc: proc,
            _dir: dir,
        }
    }

    /// The `turn:` URL to hand out, UDP.
    pub fn url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
}
