//! Stopping what a test started, also when the test fails: a child process
//! and every process it started in turn.
//!
//! A [`Guarded`] child is stopped when it is dropped (a panicking test drops
//! it too). "Every process it started" is found two ways, because neither is
//! enough alone:
//! - its descendants, by parent pid in `/proc`, taken *before* anything is
//!   signalled (once a parent dies its children are re-parented to init);
//! - every process whose environment carries the guard's tag, a variable
//!   set only on the guarded command: daemons that left the tree on purpose
//!   (gnome-keyring-daemon forks away, D-Bus activates services as children
//!   of dbus-daemon, Chromium's zygote re-parents) keep their environment.
//!
//! They get SIGTERM first, so that they remove what they wrote themselves
//! (Xvfb its lock file and socket, Chromium its `/dev/shm` segments), then a
//! bounded wait, then SIGKILL for what is still there. The guarded process
//! stays in the test's process group, so a Ctrl-C on `cargo test` still
//! reaches it when no destructor gets to run.
//!
//! `cargo xtask test` checks after each suite that nothing it started is
//! still running; this module is what keeps that check quiet.

use std::collections::{HashMap, HashSet};
use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// How long stopped processes get to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// A child process that is stopped, with everything it started, when
/// dropped or [`stop`](Guarded::stop)ped.
pub struct Guarded {
    child: Child,
    /// `NAME=1`, the entry of the tag variable as it appears in
    /// `/proc/PID/environ`.
    tag: String,
    reaped: Option<ExitStatus>,
    /// Processes seen below it by [`Guarded::track`].
    seen: HashSet<ProcId>,
}

impl Guarded {
    /// Spawns `cmd` with a tag of its own in its environment (inherited by
    /// everything it starts).
    ///
    /// # Errors
    /// When the program cannot be started (not installed, not executable).
    pub fn spawn(cmd: &mut Command) -> io::Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "SOFTPHONE_TEST_TAG_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let child = cmd.env(&name, "1").spawn()?;
        Ok(Self {
            child,
            tag: format!("{name}=1"),
            reaped: None,
            seen: HashSet::new(),
        })
    }

    /// The guarded process.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Notes the processes below the guarded one now, so that [`stop`]
    /// finds them even after their parents are gone. Call it before asking
    /// the process to shut down by itself (a WebDriver session's end): a
    /// browser's helper processes (not tagged: Chromium's zygote clears
    /// their environment) are re-parented to init when the browser exits
    /// first, and may still be writing to its profile.
    ///
    /// [`stop`]: Guarded::stop
    pub fn track(&mut self) {
        if self.reaped.is_none() {
            let below = self.started(Some(self.child.id()));
            self.seen.extend(below);
        }
    }

    /// Waits for the guarded process to exit by itself, then stops whatever
    /// it left running (daemons it started); its exit status.
    ///
    /// # Errors
    /// When waiting for the process fails.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = Some(status);
        self.stop();
        Ok(status)
    }

    /// Stops the guarded process and everything it started: SIGTERM, up to
    /// [`GRACE`] to exit, then SIGKILL. Idempotent.
    pub fn stop(&mut self) {
        let root = self.child.id();
        let still_ours = self.reaped.is_none();
        let mut targets = self.started(still_ours.then_some(root));
        targets.extend(self.seen.drain().filter(ProcId::alive));
        if still_ours {
            targets.insert(ProcId::of(root));
        }
        for p in &targets {
            p.signal(Signal::TERM);
        }
        let deadline = Instant::now() + GRACE;
        loop {
            // The root is our child: reap it, or it stays a zombie.
            if self.reaped.is_none()
                && let Ok(Some(status)) = self.child.try_wait()
            {
                self.reaped = Some(status);
            }
            // What started meanwhile (a service activated during shutdown).
            for p in self.started(None) {
                if targets.insert(p) {
                    p.signal(Signal::TERM);
                }
            }
            targets.retain(ProcId::alive);
            if targets.is_empty() || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &targets {
            p.signal(Signal::KILL);
        }
        if self.reaped.is_none() {
            let _ = self.child.kill();
            self.reaped = self.child.wait().ok();
        }
    }

    /// The processes carrying this guard's tag, plus the descendants of
    /// `root`; never this process.
    fn started(&self, root: Option<u32>) -> HashSet<ProcId> {
        let me = std::process::id();
        let all = processes();
        let mut out: HashSet<ProcId> = all
            .iter()
            .filter(|p| p.id.pid != me && environ_has(p.id.pid, &self.tag))
            .map(|p| p.id)
            .collect();
        if let Some(root) = root {
            let mut children: HashMap<u32, Vec<ProcId>> = HashMap::new();
            for p in &all {
                children.entry(p.ppid).or_default().push(p.id);
            }
            let mut below = HashSet::new();
            let mut stack = vec![root];
            while let Some(pid) = stack.pop() {
                for c in children.get(&pid).into_iter().flatten() {
                    if c.pid != me && below.insert(*c) {
                        stack.push(c.pid);
                    }
                }
            }
            out.extend(below);
        }
        out
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One process, told apart from a later one with a reused pid by its start
/// time (clock ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ProcId {
    pid: u32,
    start: u64,
}

impl ProcId {
    fn of(pid: u32) -> Self {
        let start = stat(pid).map(|s| s.start).unwrap_or(0);
        Self { pid, start }
    }

    /// Still running (a zombie has exited; its parent or init reaps it).
    fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }

    fn signal(&self, sig: Signal) {
        if self.alive()
            && let Some(pid) = Pid::from_raw(self.pid as i32)
        {
            let _ = kill_process(pid, sig);
        }
    }
}

struct Stat {
    ppid: u32,
    state: char,
    start: u64,
}

/// Fields of `/proc/PID/stat` (after the command name, which may hold
/// spaces and parentheses: the fields resume after its last `)`).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Stat {
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

struct Proc {
    id: ProcId,
    ppid: u32,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let s = stat(pid)?;
            (s.state != 'Z').then_some(Proc {
                id: ProcId {
                    pid,
                    start: s.start,
                },
                ppid: s.ppid,
            })
        })
        .collect()
}

fn environ_has(pid: u32, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that starts a daemon that leaves the tree (`setsid`,
    /// re-parented to init once its subshell exits) and a second shell whose
    /// child clears its environment (as Chromium's zygote does for the
    /// processes it forks): stopping the guard ends them all (the daemon
    /// found by its tag, the grandchild by the tree below a tagged parent),
    /// and the test's own process is untouched.
    #[test]
    fn stop_ends_descendants_and_daemons_that_left_the_tree() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "(setsid sleep 300 &) ; sh -c 'env -i sleep 300 & echo $! ; wait' & wait",
        ])
        .stdout(std::process::Stdio::piped());
        let mut g = Guarded::spawn(&mut cmd).expect("sh");
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(g.child().stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("grandchild pid");
        let grandchild = ProcId::of(line.trim().parse().expect("pid"));
        // The daemon is found by its tag alone (the only tagged `sleep`;
        // the grandchild has no tag).
        let is_sleep = |p: &ProcId| {
            std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                .is_ok_and(|c| c.trim() == "sleep")
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_sleep(&grandchild) || environ_has(grandchild.pid, &g.tag) {
            assert!(Instant::now() < deadline, "env -i never ran sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let daemon = loop {
            let tagged: Vec<ProcId> = g.started(None).into_iter().filter(is_sleep).collect();
            if let Some(d) = tagged.first() {
                break *d;
            }
            assert!(Instant::now() < deadline, "the daemon never started");
            std::thread::sleep(Duration::from_millis(20));
        };
        let root = ProcId::of(g.id());
        assert!(root.alive() && grandchild.alive() && daemon.alive());
        g.stop();
        assert!(!root.alive(), "the guarded shell is still running");
        assert!(!grandchild.alive(), "its child is still running");
        assert!(
            !daemon.alive(),
            "the daemon that left the tree is still running"
        );
        g.stop();
    }
}
