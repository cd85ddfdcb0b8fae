//! The leftover-process check of `cargo xtask test`: after each suite, no
//! process that the suite started may still be running.
//!
//! Two ways to recognise such a process, since either alone misses some:
//! - a name from [`WATCHED`], the programs the tests start (browsers,
//!   drivers, X and sound servers, D-Bus, our own binaries), on a process
//!   that was not running when the suite began ([`Snapshot`]); this catches
//!   one that cleared its environment;
//! - this run's tag: every command the xtask starts carries
//!   `SOFTPHONE_XTASK_RUN=<id>` in its environment, which every process
//!   below it inherits, daemons that left the process tree included; this
//!   catches programs of any name, and tells ours apart from another
//!   program's that happens to run at the same time.
//!
//! A process that is still shutting down is not a leftover: the check
//! waits up to [`SETTLE`] for the candidates to exit before it reports
//! them. Processes that were running before the suite are never reported.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// The programs a test may leave behind (as `/proc/PID/comm` shows them,
/// which cuts names at 15 bytes, or as the executable's file name).
pub(crate) const WATCHED: &[&str] = &[
    "chromium",
    "chrome",
    "chromedriver",
    "Xvfb",
    "pulseaudio",
    "dbus-daemon",
    "dbus-run-session",
    "gnome-keyring-daemon",
    "tauri-driver",
    "WebKitWebDriver",
    "WebKitWebProcess",
    "WebKitNetworkProcess",
    "xdg-dbus-proxy",
    "xdg-desktop-portal",
    "at-spi-bus-launcher",
    "at-spi2-registryd",
    "dconf-service",
    "switchboard",
    "phonectl",
    "turnserver",
    // Not "postgres": a system PostgreSQL forks backends by that name at
    // any time. The tests' private servers carry this run's tag (runuser
    // and pg_ctl keep the environment), which is how they are caught.
    "softphone",
];

/// How long the check waits for candidates to finish exiting.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// The environment variable that marks the processes of one xtask run.
pub(crate) const RUN_VAR: &str = "SOFTPHONE_XTASK_RUN";

/// One process, told apart from a later one with a reused pid by its start
/// time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ProcId {
    pid: u32,
    start: u64,
}

/// The processes running at one moment.
pub(crate) struct Snapshot(HashSet<ProcId>);

/// Takes a [`Snapshot`] of every running process.
pub(crate) fn snapshot() -> Snapshot {
    Snapshot(pids().filter_map(proc_id).collect())
}

/// A process a suite left running.
#[derive(Debug)]
pub(crate) struct Leftover {
    id: ProcId,
    /// Its command line (or name).
    pub(crate) command: String,
    /// Resident memory, in kB.
    pub(crate) rss_kb: u64,
    /// Carries this run's tag: certainly started by this run.
    pub(crate) tagged: bool,
}

impl Leftover {
    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.id.pid
    }
}

/// The processes that were not in `before` and are still running after up
/// to [`SETTLE`]: those carrying `RUN_VAR=tag`, and those with a
/// [`WATCHED`] name. Never this process or its ancestors.
pub(crate) fn check(before: &Snapshot, tag: &str, settle: Duration) -> Vec<Leftover> {
    let deadline = Instant::now() + settle;
    loop {
        let found = candidates(before, tag);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn candidates(before: &Snapshot, tag: &str) -> Vec<Leftover> {
    let entry = format!("{RUN_VAR}={tag}");
    let mine = ancestors();
    pids()
        .filter(|pid| !mine.contains(pid))
        .filter_map(|pid| {
            let id = proc_id(pid)?;
            if before.0.contains(&id) || state(pid)? == 'Z' {
                return None;
            }
            let tagged = environ(pid).iter().any(|e| e == entry.as_bytes());
            (tagged || watched(pid)).then(|| Leftover {
                id,
                command: command(pid),
                rss_kb: rss_kb(pid),
                tagged,
            })
        })
        .collect()
}

/// Stops `leftovers` (SIGTERM, then SIGKILL after up to 5 s).
pub(crate) fn stop(leftovers: &[&Leftover]) {
    let alive = |l: &&&Leftover| proc_id(l.id.pid) == Some(l.id) && state(l.id.pid) != Some('Z');
    let signal = |l: &&Leftover, sig| {
        if let Some(pid) = Pid::from_raw(l.id.pid as i32) {
            let _ = kill_process(pid, sig);
        }
    };
    leftovers
        .iter()
        .filter(alive)
        .for_each(|l| signal(l, Signal::TERM));
    let deadline = Instant::now() + Duration::from_secs(5);
    while leftovers.iter().any(|l| alive(&l)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    leftovers
        .iter()
        .filter(alive)
        .for_each(|l| signal(l, Signal::KILL));
}

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// `/proc/PID/stat` fields after the command name (which may hold spaces
/// and parentheses: they resume after its last `)`).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        text.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

fn proc_id(pid: u32) -> Option<ProcId> {
    let f = stat_fields(pid)?;
    Some(ProcId {
        pid,
        start: f.get(19)?.parse().ok()?,
    })
}

fn state(pid: u32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// This process and its ancestors, up to init.
fn ancestors() -> HashSet<u32> {
    let mut out = HashSet::new();
    let mut pid = std::process::id();
    while pid > 1 && out.insert(pid) {
        pid = stat_fields(pid)
            .and_then(|f| f.get(1)?.parse().ok())
            .unwrap_or(0);
    }
    out
}

fn environ(pid: u32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).map(<[u8]>::to_vec).collect())
        .unwrap_or_default()
}

/// Its names: `comm` (cut at 15 bytes) and the executable's file name.
fn names(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        out.push(comm.trim_end().to_string());
    }
    if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
        && let Some(name) = exe.file_name()
    {
        // A replaced executable reads as "name (deleted)".
        let name = name.to_string_lossy();
        out.push(name.trim_end_matches(" (deleted)").to_string());
    }
    out
}

fn watched(pid: u32) -> bool {
    names(pid).iter().any(|n| is_watched(n))
}

/// `name` is one of [`WATCHED`], or the first 15 bytes of one (`comm`).
fn is_watched(name: &str) -> bool {
    WATCHED
        .iter()
        .any(|w| *w == name || (name.len() == 15 && w.starts_with(name)))
}

fn command(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let text: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let text = if text.is_empty() {
        names(pid).into_iter().next().unwrap_or_default()
    } else {
        text.join(" ")
    };
    if text.chars().count() > 160 {
        let cut: String = text.chars().take(160).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn comm_names_cut_at_15_bytes_match() {
        assert!(is_watched("chromedriver"));
        assert!(is_watched("gnome-keyring-d"));
        assert!(is_watched("WebKitWebProces"));
        assert!(!is_watched("gnome-keyring"));
        assert!(!is_watched("cargo"));
    }

    /// A process started after the snapshot with this run's tag is
    /// reported, and so is an untagged one with a watched name; one that
    /// was running before is not; one that exits within the settling time
    /// is not. (Only the test's own processes are looked at: others may run
    /// on the machine meanwhile.)
    #[test]
    fn reports_new_processes_that_stay_and_nothing_else() {
        let tag = format!("test-{}", std::process::id());
        let sleep = |secs: &str, tagged: bool| {
            let mut c = Command::new("sleep");
            c.arg(secs).stdout(Stdio::null());
            if tagged {
                c.env(RUN_VAR, &tag);
            }
            c.spawn().expect("sleep")
        };
        let mut old = sleep("30", true);
        let before = snapshot();
        let mut stays = sleep("30", true);
        let mut exits = sleep("0.5", true);
        // An untagged program named like one the tests start.
        let dir = tempfile::tempdir().expect("tmp");
        let phonectl = dir.path().join("phonectl");
        std::fs::copy("/bin/sleep", &phonectl).expect("copy sleep");
        let mut named = Command::new(&phonectl)
            .arg("30")
            .spawn()
            .expect("renamed sleep");
        // `exits` is our child: reap it as it exits (a zombie is ignored
        // anyway).
        let reaper = std::thread::spawn(move || exits.wait());
        let ours = [old.id(), stays.id(), named.id()];
        let found: Vec<Leftover> = check(&before, &tag, Duration::from_secs(3))
            .into_iter()
            .filter(|l| ours.contains(&l.pid()))
            .collect();
        let mut pids: Vec<u32> = found.iter().map(Leftover::pid).collect();
        pids.sort_unstable();
        let mut want = vec![stays.id(), named.id()];
        want.sort_unstable();
        assert_eq!(pids, want, "{found:?}");
        for l in &found {
            assert_eq!(l.tagged, l.pid() == stays.id(), "{l:?}");
        }
        stop(&found.iter().collect::<Vec<_>>());
        assert!(stays.try_wait().expect("wait").is_some(), "stop() ended it");
        assert!(named.try_wait().expect("wait").is_some(), "stop() ended it");
        let _ = reaper.join();
        let _ = old.kill();
        let _ = old.wait();
    }
}
