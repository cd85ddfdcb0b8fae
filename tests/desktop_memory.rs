//! `cargo xtask bench desktop`: memory of the desktop app, every process
//! of it (the Tauri shell and WebKitGTK's web and network processes), idle
//! after sign-in and during a call, next to a baseline measured in the same
//! run: the phonectl on the other end of that call (the same engine, no
//! webview). Prints medians and p95 of RSS and PSS (PSS splits shared pages
//! between processes, so the app's figure is not inflated by libraries
//! that WebKit's processes share).
//!
//! Runs the release app under Xvfb with a private D-Bus session and a
//! PulseAudio null sink, driven by tauri-driver, against an in-process
//! switchboard. Options: `--samples N` (default 20, 250 ms apart).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use softphone_e2e::{PW, Server};

#[path = "desktop_support.rs"]
mod desktop_support;
use desktop_support::{Driver, Peer, xvfb};

fn main() {
    if std::env::var_os("SOFTPHONE_TEST_IN_DBUS").is_none() {
        let exe = std::env::current_exe().expect("bench path");
        let status = Command::new("dbus-run-session")
            .arg("--")
            .arg(exe)
            .args(std::env::args().skip(1))
            .env("SOFTPHONE_TEST_IN_DBUS", "1")
            .status()
            .expect("dbus-run-session (cargo xtask setup installs dbus)");
        std::process::exit(status.code().unwrap_or(1));
    }
    if !softphone_e2e::inside_pulseaudio("desktop_memory") {
        return;
    }
    let samples = std::env::args()
        .skip_while(|a| a != "--samples")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20usize);
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(run(samples));
}

/// `(rss_kb, pss_kb)` of one process.
fn memory(pid: u32) -> (u64, u64) {
    let field = |path: String, key: &str| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    (
        field(format!("/proc/{pid}/status"), "VmRSS:"),
        field(format!("/proc/{pid}/smaps_rollup"), "Pss:"),
    )
}

/// Every process: (pid, parent pid, executable).
fn processes() -> Vec<(u32, u32, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name may hold spaces; fields resume after the last ')'.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        out.push((pid, ppid, exe));
    }
    out
}

/// The app's process and all its descendants.
fn app_tree(app: &Path) -> Vec<u32> {
    let all = processes();
    let Some(root) = all.iter().find(|(_, _, exe)| exe == app).map(|p| p.0) else {
        return vec![];
    };
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|p| p.1 == parent).map(|p| p.0));
        i += 1;
    }
    tree
}

fn stats(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1024.0;
    (at(0.5), at(0.95))
}

async fn sample(app: &Path, baseline_pid: Option<u32>, n: usize) -> [(f64, f64); 3] {
    let (mut rss, mut pss, mut base) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let tree = app_tree(app);
        assert!(!tree.is_empty(), "the app is not running");
        let (r, p) = tree
            .iter()
            .map(|pid| memory(*pid))
            .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
        rss.push(r);
        pss.push(p);
        if let Some(pid) = baseline_pid {
            base.push(memory(pid).0);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if base.is_empty() {
        base.push(0);
    }
    [stats(rss), stats(pss), stats(base)]
}

async fn run(samples: usize) {
    let srv = Server::start().await;
    let home = tempfile::tempdir().expect("home");
    let (_x, display) = xvfb();
    let app = PathBuf::from(env!("CARGO_BIN_EXE_softphone"))
        .canonicalize()
        .expect("app path");
    let login = softphone_engine::api::Api::login(&srv.base, "acme", "alice", PW)
        .await
        .expect("login");
    let env = [
        ("DISPLAY", display),
        (
            "XDG_CONFIG_HOME",
            home.path().join("config").display().to_string(),
        ),
        (
            "XDG_DATA_HOME",
            home.path().join("data").display().to_string(),
        ),
        ("SOFTPHONE_ICE_LOOPBACK", "1".to_string()),
        ("SOFTPHONE_NO_KEYRING", "1".to_string()),
        ("SOFTPHONE_SERVER", srv.base.clone()),
        ("SOFTPHONE_TENANT", "acme".to_string()),
        ("SOFTPHONE_USER", "alice".to_string()),
        ("SOFTPHONE_TOKEN", login.token),
    ];
    // The app inherits the rest of the bench's environment, so WebKit's
    // knobs (SOFTPHONE_WEBKIT_COMPOSITING=1, WEBKIT_*) can be compared.
    let d = Driver::start(&app, &env).await;
    d.wait_visible("#screen-phone").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let processes = app_tree(&app).len();
    let idle = sample(&app, None, samples).await;

    let bob = Peer::start(
        &srv.base,
        "bob",
        &["call", "alice", "--tone", "440", "--duration", "120"],
    );
    d.wait_visible("#incoming").await;
    d.click("#answer").await;
    d.until(
        "the call",
        "const c = document.querySelector('#call'); return !!c && !c.hidden && c.querySelector('#call-state').textContent === 'Connected'",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let call = sample(&app, Some(bob.pid()), samples).await;
    d.click("#hangup").await;
    d.quit().await;

    println!();
    println!(
        "desktop app memory ({} processes: shell + WebKit web and network processes), {samples} samples 250 ms apart",
        processes
    );
    println!("{:<34} {:>10} {:>10}", "", "median MB", "p95 MB");
    let row = |name: &str, (m, p): (f64, f64)| println!("{name:<34} {m:>10.1} {p:>10.1}");
    row("app RSS, idle (signed in)", idle[0]);
    row("app PSS, idle (signed in)", idle[1]);
    row("app RSS, in a call", call[0]);
    row("app PSS, in a call", call[1]);
    row("baseline: phonectl RSS, in the call", call[2]);
}
