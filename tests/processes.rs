//! The shipped binaries, run as an operator would: a `switchboard` process
//! and two `phonectl` processes making a real call, files in and out.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use softphone_audio::{Source, WavSource, analysis};

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin(data: &Path, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new(softphone_e2e::binary("switchboard"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("switchboard admin");
    if let Some(s) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(s.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    assert!(
        child.wait().expect("wait").success(),
        "switchboard {args:?} failed"
    );
}

/// A switchboard process with tenant acme (alice, bob) in `dir`; its URL.
fn start_server(dir: &Path) -> (Proc, String) {
    let data = dir.join("data");
    admin(&data, &["tenant", "add", "acme"], None);
    for u in ["alice", "bob"] {
        admin(
            &data,
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
            Some("password-123"),
        );
    }
    let mut server = Command::new(softphone_e2e::binary("switchboard"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("switchboard");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("line");
    let base = line.trim().rsplit(' ').next().expect("url").to_string();
    (Proc(server), base)
}

fn phonectl(base: &str, user: &str, args: &[&str]) -> Command {
    let mut c = Command::new(softphone_e2e::binary("phonectl"));
    c.args([
        "--server",
        base,
        "--tenant",
        "acme",
        "--user",
        user,
        "--no-keyring",
    ])
    .args(args)
    .env("PHONECTL_PASSWORD", "password-123");
    c
}

fn read_wav(path: &Path) -> Vec<f32> {
    let mut src = WavSource::open(path, false).expect("recording");
    let mut all = Vec::new();
    let mut frame = vec![0.0f32; softphone_audio::FRAME];
    while src.read_frame(&mut frame) {
        all.extend_from_slice(&frame);
    }
    all
}

#[test]
fn two_phonectl_processes_call_through_a_switchboard_process() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_server, base) = start_server(dir.path());

    let bob_wav = dir.path().join("bob.wav");
    let alice_wav = dir.path().join("alice.wav");
    let mut bob = phonectl(&base, "bob", &["answer", "--tone", "1000"])
        .arg("--record")
        .arg(&bob_wav)
        .stdout(Stdio::piped())
        .spawn()
        .expect("phonectl answer");
    let mut bob_out = BufReader::new(bob.stdout.take().expect("stdout"));
    let mut bob_lines = Vec::new();
    loop {
        let mut l = String::new();
        assert!(
            bob_out.read_line(&mut l).expect("read") > 0,
            "bob exited: {bob_lines:?}"
        );
        bob_lines.push(l.clone());
        if l.starts_with("registered as bob") {
            break;
        }
    }
    let bob = Proc(bob);

    let out = phonectl(
        &base,
        "alice",
        &["--json", "call", "bob", "--tone", "440", "--duration", "3"],
    )
    .arg("--record")
    .arg(&alice_wav)
    .output()
    .expect("phonectl call");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "call failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "call_state")
        .filter_map(|e| e["state"]["state"].as_str())
        .collect();
    // A call starts with one `dialing` event naming the peer; every later
    // change is a `call_state`.
    let first = events
        .iter()
        .find(|e| e["call_id"].is_string())
        .expect("a call event");
    assert_eq!(first["event"], "dialing", "{text}");
    assert_eq!(first["to"]["user"], "bob", "{text}");
    assert_eq!(states.first(), Some(&"ringing"), "{text}");
    assert!(states.contains(&"active"), "{text}");
    assert_eq!(states.last(), Some(&"ended"), "{text}");
    let last = events
        .iter()
        .rev()
        .find(|e| e["event"] == "call_state")
        .expect("state");
    assert_eq!(last["state"]["reason"], "completed");

    // bob's `answer` ends with the call.
    let mut bob = bob;
    for _ in 0..50 {
        if bob.0.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        bob.0.try_wait().expect("wait").is_some_and(|s| s.success()),
        "bob still running or failed"
    );

    // What arrived, not what was sent.
    let at_bob = read_wav(&bob_wav);
    let at_alice = read_wav(&alice_wav);
    assert!(
        at_bob.len() > 48_000 * 2,
        "bob recorded {} samples",
        at_bob.len()
    );
    let tail = |v: &[f32]| v[v.len() / 3..].to_vec();
    let fb = analysis::dominant_frequency(&tail(&at_bob), 48_000.0, 100.0, 4_000.0);
    let fa = analysis::dominant_frequency(&tail(&at_alice), 48_000.0, 100.0, 4_000.0);
    assert!((fb - 440.0).abs() < 5.0, "bob heard {fb} Hz");
    assert!((fa - 1000.0).abs() < 5.0, "alice heard {fa} Hz");

    let hist = phonectl(&base, "alice", &["history"])
        .output()
        .expect("history");
    let hist = String::from_utf8_lossy(&hist.stdout);
    assert!(
        hist.contains("outgoing") && hist.contains("bob") && hist.contains("completed"),
        "{hist}"
    );
}

/// Runs inside a private D-Bus session with a real gnome-keyring (the test
/// re-executes itself under `dbus-run-session`; `cargo xtask setup` installs
/// both): `phonectl login` stores the token in the Secret Service, later
/// commands use it without a password, and `logout` deletes it.
#[test]
fn phonectl_keeps_its_token_in_the_os_keyring() {
    let home = tempfile::tempdir().expect("tmp");
    if !softphone_e2e::inside_dbus_keyring(
        "phonectl_keeps_its_token_in_the_os_keyring",
        &[("XDG_DATA_HOME", home.path())],
    ) {
        return;
    }
    use softphone_engine::credentials::{TokenStore, account_key};
    let dir = tempfile::tempdir().expect("tmp");
    let (_server, base) = start_server(dir.path());
    let account = account_key(&base, "acme", "alice");
    let store = TokenStore::Keyring;
    assert_eq!(store.load(&account).expect("secret service"), None);

    let cmd = |args: &[&str]| {
        let mut c = Command::new(softphone_e2e::binary("phonectl"));
        c.args(["--server", &base, "--tenant", "acme", "--user", "alice"])
            .args(args)
            .env_remove("PHONECTL_PASSWORD");
        c
    };
    let mut login = cmd(&["login", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("login");
    {
        use std::io::Write;
        login
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"password-123\n")
            .expect("write");
    }
    let out = login.wait_with_output().expect("login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let token = store
        .load(&account)
        .expect("secret service")
        .expect("token stored in the keyring");
    assert_eq!(token.len(), 43);

    let who = cmd(&["whoami"]).output().expect("whoami");
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    assert!(String::from_utf8_lossy(&who.stdout).contains("alice"));

    let out = cmd(&["logout"]).output().expect("logout");
    assert!(out.status.success());
    assert_eq!(
        store.load(&account).expect("secret service"),
        None,
        "logout deletes the entry"
    );
    let who = cmd(&["whoami"]).output().expect("whoami");
    assert!(!who.status.success(), "no token, no password: refused");
    assert!(String::from_utf8_lossy(&who.stderr).contains("not logged in"));
}
