//! `cargo xtask bench desktop`: memory of the desktop app, every process
//! of it (the Tauri shell and WebKitGTK's web and network processes), next
//! to a baseline measured in the same run: the phonectl on the other end of
//! the calls (the same engine, no webview). Prints medians and p95 of RSS
//! and PSS (PSS splits shared pages between processes, so the app's figure
//! is not inflated by libraries that WebKit's processes share), per process
//! and in total, at four moments:
//!
//! 1. idle, right after sign-in;
//! 2. over an idle stretch (`--idle-secs`, default 180): one sample every
//!    15 s, to show whether memory creeps while nothing happens;
//! 3. in a call the app answered;
//! 4. idle again after `--calls` more calls (default 20), each answered in
//!    the UI, 1 s of tone, hung up by the caller: to show whether calls leave
//!    memory behind.
//!
//! Runs the release app under Xvfb with a private D-Bus session and a
//! PulseAudio null sink, driven by tauri-driver, against an in-process
//! switchboard. Options: `--samples N` (default 20, 250 ms apart, per
//! moment), `--idle-secs S`, `--calls N`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use softphone_e2e::{PW, Server};

#[path = "desktop_support.rs"]
mod desktop_support;
use desktop_support::{Driver, Peer, xvfb};

/// The bench's options.
struct Opts {
    /// Samples per moment, 250 ms apart.
    samples: usize,
    /// Length of the idle stretch, s.
    idle_secs: u64,
    /// Calls between the in-call moment and the last idle moment.
    calls: usize,
}

impl Opts {
    /// The bench's command line: the options reach the innermost run (inside
    /// D-Bus and PulseAudio) through `SOFTPHONE_BENCH_ARGS`, since the
    /// PulseAudio wrapper runs it again with arguments of its own.
    fn from_args() -> Self {
        let args: Vec<String> = match std::env::var("SOFTPHONE_BENCH_ARGS") {
            Ok(a) => a.split('\u{1f}').map(str::to_string).collect(),
            Err(_) => std::env::args().collect(),
        };
        let num = |flag: &str, default: u64| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(|n| {
                    n.parse()
                        .unwrap_or_else(|_| panic!("{flag} takes a number, not {n}"))
                })
                .unwrap_or(default)
        };
        Self {
            samples: num("--samples", 20).max(1) as usize,
            idle_secs: num("--idle-secs", 180),
            calls: num("--calls", 20) as usize,
        }
    }
}

fn main() {
    if std::env::var_os("SOFTPHONE_BENCH_ARGS").is_none() {
        let args: Vec<String> = std::env::args().collect();
        // SAFETY: the first statement of main; no other thread exists yet.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("SOFTPHONE_BENCH_ARGS", args.join("\u{1f}"));
        }
    }
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
    let opts = Opts::from_args();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(run(opts));
}

/// One process's memory, kB: resident set, and its proportional share split
/// into anonymous memory (heaps, stacks) and file pages (code, data files).
#[derive(Clone, Copy, Default)]
struct Mem {
    rss: u64,
    pss: u64,
    pss_anon: u64,
    pss_file: u64,
}

impl std::ops::AddAssign for Mem {
    fn add_assign(&mut self, o: Self) {
        self.rss += o.rss;
        self.pss += o.pss;
        self.pss_anon += o.pss_anon;
        self.pss_file += o.pss_file;
    }
}

/// The memory of process `pid` (zero if it is gone).
fn memory(pid: u32) -> Mem {
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let status = read(format!("/proc/{pid}/status"));
    let rollup = read(format!("/proc/{pid}/smaps_rollup"));
    Mem {
        rss: field(&status, "VmRSS:"),
        pss: field(&rollup, "Pss:"),
        pss_anon: field(&rollup, "Pss_Anon:"),
        pss_file: field(&rollup, "Pss_File:"),
    }
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

/// The app's process and all its descendants, each with a role: `shell`
/// (the app's own process) or the executable's name (WebKitWebProcess,
/// WebKitNetworkProcess).
fn app_tree(app: &Path) -> Vec<(u32, String)> {
    let all = processes();
    let Some(root) = all.iter().find(|(_, _, exe)| exe == app).map(|p| p.0) else {
        return vec![];
    };
    let mut tree = vec![(root, "shell".to_string())];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].0;
        tree.extend(all.iter().filter(|p| p.1 == parent).map(|p| {
            let name =
                p.2.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| format!("pid {}", p.0));
            (p.0, name)
        }));
        i += 1;
    }
    tree
}

/// Median and p95 of `v`, in MB (from kB).
fn stats(mut v: Vec<u64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1024.0;
    (at(0.5), at(0.95))
}

/// Samples of one moment: per role and in total, and of the baseline.
#[derive(Default)]
struct Moment {
    by_role: BTreeMap<String, Vec<Mem>>,
    total: Vec<Mem>,
    baseline: Vec<Mem>,
}

impl Moment {
    fn total_pss(&self) -> (f64, f64) {
        stats(self.total.iter().map(|m| m.pss).collect())
    }
}

/// One snapshot of the app's processes (and the baseline's, if any).
fn snapshot(app: &Path, baseline_pid: Option<u32>, into: &mut Moment) {
    let tree = app_tree(app);
    assert!(!tree.is_empty(), "the app is not running");
    let mut total = Mem::default();
    for (pid, role) in tree {
        let m = memory(pid);
        total += m;
        into.by_role.entry(role).or_default().push(m);
    }
    into.total.push(total);
    if let Some(pid) = baseline_pid {
        into.baseline.push(memory(pid));
    }
}

async fn sample(app: &Path, baseline_pid: Option<u32>, n: usize) -> Moment {
    let mut moment = Moment::default();
    for _ in 0..n {
        snapshot(app, baseline_pid, &mut moment);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    moment
}

/// Waits until the app shows no call (back on the dial pad).
async fn until_no_call(d: &Driver) {
    d.until(
        "no call shown",
        "const c = document.querySelector('#call'); const i = document.querySelector('#incoming'); return (!c || c.hidden) && (!i || i.hidden)",
    )
    .await;
}

/// Waits for the app to ring for call `n`; if it does not, fails with
/// what the caller's phonectl printed (its engine events).
async fn until_ringing(d: &Driver, peer: &Peer, n: usize) {
    d.until_explained(
        &format!("ringing for call {n}"),
        "const i = document.querySelector('#incoming'); return !!i && !i.hidden",
        || format!("caller's events: {:?}", peer.lines()),
    )
    .await;
}

async fn run(opts: Opts) {
    // Every call below is a new phonectl, hence a new login as bob: more
    // than the default per-account limit (a minute's worth of logins).
    let srv = Server::start_with(
        |c| {
            c.login_per_account_per_min = 1000;
            c.login_per_ip_per_min = 1000;
        },
        &[],
    )
    .await;
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
    print_header(&opts);
    let idle = sample(&app, None, opts.samples).await;
    print_moment("idle after sign-in", &idle);

    // The idle stretch: one snapshot every 15 s.
    let mut stretch = Vec::new();
    let started = Instant::now();
    loop {
        let mut m = Moment::default();
        snapshot(&app, None, &mut m);
        stretch.push((started.elapsed().as_secs(), m.total[0]));
        if started.elapsed().as_secs() >= opts.idle_secs {
            break;
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let idle_late = sample(&app, None, opts.samples).await;
    print_moment("idle, after the idle stretch", &idle_late);

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
    let call = sample(&app, Some(bob.pid()), opts.samples).await;
    print_moment("in a call", &call);
    d.click("#hangup").await;
    bob.wait_for("completed", 20).await;
    until_no_call(&d).await;
    drop(bob);

    let calls_started = Instant::now();
    for n in 0..opts.calls {
        let peer = Peer::start(
            &srv.base,
            "bob",
            &["call", "alice", "--tone", "440", "--duration", "1"],
        );
        until_ringing(&d, &peer, n + 1).await;
        d.click("#answer").await;
        peer.wait_for("completed", 30).await;
        until_no_call(&d).await;
        eprintln!("desktop_memory: call {} of {} done", n + 1, opts.calls);
        // One snapshot every 5 calls: a leak grows with every call, memory
        // that allocators keep for reuse levels off.
        if (n + 1) % 5 == 0 {
            let mut m = Moment::default();
            snapshot(&app, None, &mut m);
            let shell = m.by_role.get("shell").and_then(|v| v.first()).copied();
            println!(
                "{:<44} {:>10.1} {:>10.1}   (shell PSS {:.1}, anon {:.1})",
                format!("after {} calls: app total, one sample", n + 1),
                m.total[0].rss as f64 / 1024.0,
                m.total[0].pss as f64 / 1024.0,
                shell.map_or(0.0, |s| s.pss as f64 / 1024.0),
                shell.map_or(0.0, |s| s.pss_anon as f64 / 1024.0),
            );
        }
    }
    let calls_secs = calls_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sample(&app, None, opts.samples).await;
    print_moment("idle, after the calls", &after);
    d.quit().await;

    print_summary(&opts, &stretch, &idle_late, &after, calls_secs);
}

fn print_header(opts: &Opts) {
    println!();
    println!(
        "desktop app memory, every process, medians of {} samples 250 ms apart per moment",
        opts.samples
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>10}",
        "", "RSS MB", "PSS MB", "anon MB", "file MB"
    );
}

/// Prints one moment as soon as it is measured, so a bench that fails later
/// still shows what it saw.
fn print_moment(name: &str, m: &Moment) {
    let median = |v: &[Mem], f: fn(&Mem) -> u64| stats(v.iter().map(f).collect()).0;
    for (role, v) in &m.by_role {
        println!(
            "{:<44} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            format!("{name}: {role}"),
            median(v, |m| m.rss),
            median(v, |m| m.pss),
            median(v, |m| m.pss_anon),
            median(v, |m| m.pss_file),
        );
    }
    let (p50, p95) = m.total_pss();
    println!(
        "{:<44} {:>10.1} {:>10.1}   (PSS p95 {p95:.1})",
        format!("{name}: app total"),
        median(&m.total, |m| m.rss),
        p50,
    );
    if !m.baseline.is_empty() {
        println!(
            "{:<44} {:>10.1} {:>10.1}",
            "baseline: phonectl, in the same call",
            median(&m.baseline, |m| m.rss),
            median(&m.baseline, |m| m.pss),
        );
    }
}

fn print_summary(
    opts: &Opts,
    stretch: &[(u64, Mem)],
    idle_late: &Moment,
    after: &Moment,
    calls_secs: f64,
) {
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!();
    println!("idle stretch ({} s), app total PSS:", opts.idle_secs);
    for (secs, m) in stretch {
        println!("  t = {secs:>4} s   {:>7.1} MB", mb(m.pss));
    }
    if let (Some(first), Some(last)) = (stretch.first(), stretch.last()) {
        println!(
            "  change over the stretch: {:+.1} MB",
            mb(last.1.pss) - mb(first.1.pss)
        );
    }
    println!(
        "{} calls in {calls_secs:.0} s; app total PSS idle before them {:.1} MB, after them {:.1} MB ({:+.1} MB)",
        opts.calls,
        idle_late.total_pss().0,
        after.total_pss().0,
        after.total_pss().0 - idle_late.total_pss().0,
    );
}
