//! `cargo xtask`: the project's developer tasks.
//!
//! - `cargo xtask setup`: installs what the build and the tests need (Debian
//!   packages through apt-get, `sudo` only when not root; Node.js/npm when
//!   there is none; `tauri-driver` and `cargo-deny` through
//!   `cargo install --locked`).
//! - `cargo xtask demo [--headless]`: a local switchboard with demo
//!   accounts and an echo-test bot, and the desktop app signed in as alice;
//!   `--headless` makes a scripted call between two phonectls instead.
//! - `cargo xtask test`: setup, then rustfmt check, the UI's type check,
//!   build and Vitest tests, clippy `-D warnings`, the supply-chain policy
//!   (`cargo deny`: bans, licenses, sources), every Rust test, and the
//!   desktop end-to-end test; prints one summary line per suite and a
//!   closing `N passed, M failed` line. After each suite it checks that no
//!   process the suite started is still running (`leftovers.rs`) and fails
//!   the suite, listing them, when one is.
//! - `cargo xtask bundle`: the .deb and .rpm installers (Tauri CLI).
//! - `cargo xtask bench signaling|queue|call|desktop [ARGS]`: the benchmark
//!   programs (see `docs/benchmarks.md`).
//! - `cargo xtask fuzz [--seconds N] [TARGET]`: runs the fuzz targets of
//!   `fuzz/` (cargo-fuzz, libFuzzer) for N seconds each; not part of
//!   `test`.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(about = "Developer tasks of the softphone workspace")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the system packages and tools the build and tests need.
    Setup,
    /// Run every check and test: fmt, UI build and tests, clippy, Rust
    /// tests, the desktop end-to-end test.
    Test,
    /// Start a local switchboard with demo accounts and an echo-test bot,
    /// and open the desktop app signed in as alice.
    Demo {
        /// Instead of waiting for you to call, run a scripted call from
        /// alice to the echo test and print what happened.
        #[arg(long)]
        headless: bool,
    },
    /// Build the desktop installers for this OS (.deb and .rpm on Linux)
    /// with the Tauri CLI; they land in target/release/bundle/.
    Bundle,
    /// Run a benchmark program and print its table.
    Bench {
        /// Which benchmark.
        which: Bench,
        /// Arguments passed to the benchmark program (see its --help).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Fuzz the parsers (fuzz/, cargo-fuzz and libFuzzer on the stable
    /// toolchain): every target, or TARGET, for a given time each.
    Fuzz {
        /// How long to fuzz each target, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// One target (`cargo fuzz list --fuzz-dir fuzz`); all when omitted.
        target: Option<String>,
    },
}

/// The benchmark programs (docs/benchmarks.md).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// The switchboard under load: idle clients, call setups per second,
    /// relay latency.
    Signaling,
    /// Queues under load: agents answering a steady stream of web callers;
    /// time to offer, offers per second, no double offer, no lost caller.
    Queue,
    /// One call between two engines: setup time, latency, bandwidth, CPU.
    Call,
    /// The desktop app's memory, idle and in a call.
    Desktop,
}

impl Bench {
    /// `(package, bench target)` of the program.
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Self::Signaling => ("switchboard", "signaling"),
            Self::Queue => ("switchboard", "queue"),
            Self::Call => ("softphone-e2e", "call"),
            Self::Desktop => ("softphone", "desktop_memory"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Signaling => "signaling",
            Self::Queue => "queue",
            Self::Call => "call",
            Self::Desktop => "desktop",
        }
    }
}

/// Debian packages needed to build and test, with the reason for each.
const PACKAGES: &[(&str, &str)] = &[
    ("pkg-config", "locates system libraries for -sys crates"),
    (
        "build-essential",
        "C compiler and linker for bundled C code",
    ),
    ("cmake", "builds the bundled libopus (opus crate)"),
    ("libasound2-dev", "ALSA headers for cpal (sound devices)"),
    ("libdbus-1-dev", "D-Bus headers for the OS keyring client"),
    (
        "libssl-dev",
        "OpenSSL headers for the desktop app's HTTP stack",
    ),
    (
        "libwebkit2gtk-4.1-dev",
        "WebKitGTK: the desktop app's webview (Tauri)",
    ),
    (
        "libgtk-3-dev",
        "GTK 3: the desktop app's window and menus (Tauri)",
    ),
    ("librsvg2-dev", "SVG icons in GTK (Tauri)"),
    ("libayatana-appindicator3-dev", "the tray icon (Tauri)"),
    ("libxdo-dev", "menu accelerators on X11 (Tauri)"),
    ("file", "used by the Linux bundler (.deb/.rpm)"),
    (
        "pulseaudio",
        "a sound server with a null sink: audio tests without a sound card",
    ),
    ("pulseaudio-utils", "pactl: loads and unloads test sinks"),
    (
        "dbus",
        "dbus-run-session: a private session bus for keyring tests",
    ),
    (
        "gnome-keyring",
        "a real Secret Service (OS keyring) for tests",
    ),
    ("chromium", "browser interop test (WebRTC in Chromium)"),
    ("chromium-driver", "WebDriver for Chromium"),
    (
        "webkit2gtk-driver",
        "WebKitWebDriver: desktop end-to-end tests through tauri-driver",
    ),
    (
        "xvfb",
        "a virtual X display for the desktop tests and the headless demo",
    ),
    ("xauth", "X authority files for xvfb-run"),
    (
        "coturn",
        "a real TURN relay (turnserver) for the relay-only call test",
    ),
    (
        "postgresql",
        "PostgreSQL (initdb, pg_ctl): the switchboard's shared store, tested on a private server",
    ),
];

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool> {
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match Cli::parse().task {
        Task::Setup => setup().and_then(|_| setup_tools(true)).map(|_| true),
        Task::Test => test(),
        Task::Demo { headless } => demo::run(headless),
        Task::Bundle => bundle().map(|_| true),
        Task::Bench { which, args } => bench(which, &args).map(|_| true),
        Task::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
    }
}

mod demo;
mod fuzz;
mod leftovers;

/// This run's tag (`SOFTPHONE_XTASK_RUN`), set by `test`: every command the
/// xtask starts then carries it, and so does every process below them.
static RUN_TAG: OnceLock<String> = OnceLock::new();

/// `cmd` with this run's tag in its environment, when there is one.
fn tagged(mut cmd: Command) -> Command {
    if let Some(tag) = RUN_TAG.get() {
        cmd.env(leftovers::RUN_VAR, tag);
    }
    cmd
}

/// `cargo` without the variables `cargo run` set for this program: build
/// scripts (ring's) track `CARGO_MANIFEST_DIR`, so passing it on would make
/// every build from the xtask rebuild what a plain `cargo build` built.
pub(crate) fn cargo() -> Command {
    let mut c = tagged(Command::new("cargo"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let from_cargo_run = k.starts_with("CARGO_PKG_")
            || matches!(
                k.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if from_cargo_run {
            c.env_remove(k.as_ref());
        }
    }
    c
}

fn workspace_root() -> Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(|p| p.to_path_buf())
        .context("xtask has no parent directory")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs missing Debian packages (no-op when all are there, or when the
/// machine has no apt-get: then it says what to install by hand).
pub(crate) fn setup() -> Result<()> {
    let missing: Vec<&(&str, &str)> = PACKAGES.iter().filter(|(p, _)| !installed(p)).collect();
    if missing.is_empty() {
        println!("setup: system packages present");
        return Ok(());
    }
    println!("setup: installing missing Debian packages:");
    for (p, why) in &missing {
        println!("  {p:<20} {why}");
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!("no apt-get here: install the packages above with your package manager");
    }
    let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let sudo = !is_root();
    if sudo {
        println!("setup: not root, using sudo");
    }
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let status = cmd.status().context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(names);
    apt(&args)
}

/// `program --version` runs and succeeds.
fn has(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo install --locked <args>` of a tool the tasks need, when `cargo
/// <subcommand> --version` (or `<program> --version`) does not run.
pub(crate) fn cargo_install(probe: (&str, &[&str]), args: &[&str], why: &str) -> Result<()> {
    if has(probe.0, probe.1) {
        return Ok(());
    }
    let name = args.last().copied().unwrap_or("?");
    println!("setup: installing {name} ({why}) with cargo install");
    let ok = cargo()
        .args(["install", "--locked"])
        .args(args)
        .status()
        .context("running cargo install")?
        .success();
    if !ok {
        bail!("installing {name} failed");
    }
    Ok(())
}

/// Installs what is not a Debian package of this list: Node.js and npm
/// (Debian's, only when there is no `node` at all) for the UI; with
/// `test_tools`, `tauri-driver` (WebDriver for the desktop end-to-end
/// tests) and `cargo-deny` (the supply-chain suite), from crates.io.
fn setup_tools(test_tools: bool) -> Result<()> {
    let has = |cmd: &str| has(cmd, &[]);
    if !has("node") || !has("npm") {
        println!("setup: installing nodejs and npm (Debian) to build and test the UI");
        let sudo = !is_root();
        let mut cmd = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            cmd.arg("apt-get");
        }
        let ok = cmd
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "nodejs",
                "npm",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success();
        if !ok {
            bail!("installing nodejs and npm failed");
        }
    }
    if test_tools {
        install_tauri_driver()?;
        cargo_install(
            ("cargo", &["deny"]),
            &["cargo-deny"],
            "the supply-chain checks",
        )?;
    }
    Ok(())
}

/// `tauri-driver` from crates.io, unless it runs: WebDriver for the desktop
/// app's end-to-end tests and memory bench.
fn install_tauri_driver() -> Result<()> {
    cargo_install(
        ("tauri-driver", &[]),
        &["--version", "^2", "tauri-driver"],
        "WebDriver for the desktop app",
    )
}

/// Installs the UI's npm packages when missing or out of date, then
/// type-checks and builds it into `ui/dist`. `npm install` rather than
/// `npm ci`: the lock file npm writes here lists only this platform's
/// optional packages (esbuild, rollup, the Tauri CLI), which `npm ci`
/// refuses as out of sync.
pub(crate) fn ui_build() -> Result<()> {
    setup_tools(false)?;
    let stamp = std::path::Path::new("ui/node_modules/.package-lock.json");
    let lock_time = std::fs::metadata("ui/package-lock.json").and_then(|m| m.modified());
    let stale = match (
        std::fs::metadata(stamp).and_then(|m| m.modified()),
        lock_time,
    ) {
        (Ok(installed), Ok(lock)) => installed < lock,
        _ => true,
    };
    if stale {
        println!("ui: npm install");
        let ok = tagged(Command::new("npm"))
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir("ui")
            .status()
            .context("running npm install")?
            .success();
        if !ok {
            bail!("npm install failed in ui/");
        }
    }
    let ok = tagged(Command::new("npm"))
        .args(["run", "build"])
        .current_dir("ui")
        .status()
        .context("running npm run build")?
        .success();
    if !ok {
        bail!("building the UI failed (npm run build in ui/)");
    }
    Ok(())
}

/// One suite's outcome.
struct Suite {
    name: &'static str,
    passed: u64,
    failed: u64,
    secs: f64,
    /// Processes the suite left running (they fail it).
    leftovers: usize,
}

fn test() -> Result<bool> {
    setup()?;
    setup_tools(true)?;
    let tag = RUN_TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{}-{nanos}", std::process::id())
    });
    let mut suites = Vec::new();
    let mut step = |name: &'static str, run: &mut dyn FnMut() -> Result<(u64, u64, bool)>| {
        let before = leftovers::snapshot();
        let t = Instant::now();
        let (passed, failed, ok) = run()?;
        let left = leftovers::check(&before, tag, leftovers::SETTLE);
        report_leftovers(name, &left);
        let ok = ok && left.is_empty();
        suites.push(Suite {
            name,
            passed,
            failed: if ok { failed } else { failed.max(1) },
            secs: t.elapsed().as_secs_f64(),
            leftovers: left.len(),
        });
        anyhow::Ok(())
    };
    let status = |cmd: &mut Command, what: &str| -> Result<(u64, u64, bool)> {
        let ok = cmd
            .status()
            .with_context(|| format!("running {what}"))?
            .success();
        Ok((ok as u64, !ok as u64, ok))
    };

    step("fmt", &mut || {
        status(cargo().args(["fmt", "--all", "--", "--check"]), "cargo fmt")
    })?;
    step("ui-build", &mut || match ui_build() {
        Ok(()) => Ok((1, 0, true)),
        Err(e) => {
            eprintln!("{e:#}");
            Ok((0, 1, false))
        }
    })?;
    step("ui-tests", &mut || ui_tests())?;
    step("clippy", &mut || {
        status(
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            "cargo clippy",
        )
    })?;
    // Bans (wildcards), licenses and sources of the whole crate graph, per
    // deny.toml. Not `advisories`: its database is on GitHub, which the
    // project's machines cannot reach (see deny.toml).
    step("deny", &mut || {
        status(
            cargo().args([
                "deny",
                "--workspace",
                "--locked",
                "check",
                "bans",
                "licenses",
                "sources",
            ]),
            "cargo deny",
        )
    })?;
    // Every binary and test target, with the same feature resolution as
    // `cargo test --workspace` (so nothing is built twice): the process
    // tests and the desktop test run the binaries.
    step("build", &mut || {
        status(
            cargo().args(["build", "--workspace", "--bins", "--tests"]),
            "cargo build",
        )
    })?;
    // Every test binary runs even when one fails, so the summary counts
    // every test and a failure does not hide the ones after it.
    step("rust-tests", &mut || {
        cargo_test(&[
            "test",
            "--workspace",
            "--no-fail-fast",
            "--",
            "--skip",
            DESKTOP_TEST,
        ])
    })?;
    // The switchboard's API, routing, robustness and queue suites again,
    // each test server on its own private PostgreSQL instead of a SQLite
    // file (the store suite runs both backends by itself). The binaries are
    // the ones the rust-tests step ran: built with the whole workspace's
    // features, which these targets alone would not select (cargo would
    // build them once more).
    step("switchboard-postgres", &mut || {
        let mut passed = 0;
        let mut failed = 0;
        let mut ok = true;
        for exe in workspace_test_binaries(&["api", "routing", "robustness", "queues"])? {
            let mut cmd = tagged(Command::new(&exe));
            cmd.current_dir("crates/switchboard")
                .env("SWITCHBOARD_TEST_STORE", "postgres");
            let (p, f, o) = run_tests(cmd, &exe.display().to_string())?;
            passed += p;
            failed += f;
            ok &= o;
        }
        Ok((passed, failed, ok))
    })?;
    step("desktop-e2e", &mut || {
        cargo_test(&["test", "--workspace", "--test", "desktop"])
    })?;

    println!();
    for s in &suites {
        let left = match s.leftovers {
            0 => String::new(),
            n => format!(", {n} processes left running"),
        };
        println!(
            "{}: {} passed, {} failed ({:.0} s{left})",
            s.name, s.passed, s.failed, s.secs
        );
    }
    let passed: u64 = suites.iter().map(|s| s.passed).sum();
    let failed: u64 = suites.iter().map(|s| s.failed).sum();
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// Prints what a suite left running, then stops those of them that carry
/// this run's tag (certainly ours) so that the next suite starts clean.
fn report_leftovers(suite: &str, left: &[leftovers::Leftover]) {
    if left.is_empty() {
        return;
    }
    eprintln!(
        "\n{suite}: {} processes it started are still running {} s after it ended \
         (every test must stop what it starts, also when it fails):",
        left.len(),
        leftovers::SETTLE.as_secs()
    );
    for l in left {
        let whose = if l.tagged {
            ""
        } else {
            "  [without this run's tag: cleared its environment, or another program's]"
        };
        eprintln!(
            "  pid {:>7} {:>8} kB  {}{whose}",
            l.pid(),
            l.rss_kb,
            l.command
        );
    }
    let ours: Vec<&leftovers::Leftover> = left.iter().filter(|l| l.tagged).collect();
    if !ours.is_empty() {
        eprintln!("{suite}: stopping the {} tagged ones", ours.len());
        leftovers::stop(&ours);
    }
}

/// Vitest's JSON report (`--reporter=json`): the totals it starts with.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VitestReport {
    num_passed_tests: u64,
    num_failed_tests: u64,
    success: bool,
    #[serde(default)]
    test_results: Vec<VitestFile>,
}

/// One test file of a [`VitestReport`].
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VitestFile {
    name: String,
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    assertion_results: Vec<VitestTest>,
}

/// One test of a [`VitestFile`].
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct VitestTest {
    full_name: String,
    status: String,
}

impl VitestReport {
    /// `(passed, failed)`; a file that failed outside any test (it did not
    /// load) counts as one failed test.
    fn counts(&self) -> (u64, u64) {
        let broken_files = self
            .test_results
            .iter()
            .filter(|f| {
                f.status == "failed" && f.assertion_results.iter().all(|t| t.status != "failed")
            })
            .count() as u64;
        (self.num_passed_tests, self.num_failed_tests + broken_files)
    }

    /// What failed, one line each.
    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.test_results {
            let failed: Vec<&VitestTest> = f
                .assertion_results
                .iter()
                .filter(|t| t.status == "failed")
                .collect();
            if failed.is_empty() && f.status == "failed" {
                let first = f.message.lines().next().unwrap_or("");
                out.push(format!("{}: {first}", f.name));
            }
            out.extend(
                failed
                    .iter()
                    .map(|t| format!("{}: {}", f.name, t.full_name)),
            );
        }
        out
    }
}

/// Runs Vitest in ui/ with its usual console output and a JSON report
/// (`--reporter=default --reporter=json`), and counts tests from the report.
fn ui_tests() -> Result<(u64, u64, bool)> {
    let report = workspace_root()?.join("target/xtask/vitest.json");
    std::fs::create_dir_all(report.parent().context("report dir")?)?;
    // Never read the report of an earlier run.
    let _ = std::fs::remove_file(&report);
    let ok = tagged(Command::new("npm"))
        .args([
            "test",
            "--silent",
            "--",
            "--reporter=default",
            "--reporter=json",
        ])
        .arg(format!("--outputFile.json={}", report.display()))
        .current_dir("ui")
        .status()
        .context("running npm test")?
        .success();
    let parsed: Result<VitestReport> = std::fs::read_to_string(&report)
        .with_context(|| format!("Vitest wrote no JSON report at {}", report.display()))
        .and_then(|text| serde_json::from_str(&text).context("reading Vitest's JSON report"));
    match parsed {
        Ok(r) => {
            let (passed, failed) = r.counts();
            for f in r.failures() {
                eprintln!("ui-tests: failed: {f}");
            }
            Ok((passed, failed, ok && r.success))
        }
        Err(e) => {
            eprintln!("ui-tests: {e:#}");
            Ok((0, 1, false))
        }
    }
}

/// The desktop end-to-end test (tests/desktop.rs), reported as its own suite.
const DESKTOP_TEST: &str = "the_desktop_app_signs_in_takes_calls_misses_one_dials_and_signs_out";

/// Runs cargo test, echoing its output, and adds up its `test result:` lines.
fn cargo_test(args: &[&str]) -> Result<(u64, u64, bool)> {
    let mut cmd = cargo();
    cmd.args(args);
    run_tests(cmd, "cargo test")
}

/// The test executables of `cargo test --workspace` whose target names are
/// in `names`, as cargo reports them (`--no-run --message-format=json`:
/// nothing is built when they are up to date). Panics never; an absent
/// name is an error.
fn workspace_test_binaries(names: &[&str]) -> Result<Vec<std::path::PathBuf>> {
    let out = cargo()
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("cargo test --no-run failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_test = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        let name = v["target"]["name"].as_str().unwrap_or_default();
        if v["reason"] == "compiler-artifact"
            && is_test
            && names.contains(&name)
            && let Some(exe) = v["executable"].as_str()
        {
            found.push((name.to_string(), std::path::PathBuf::from(exe)));
        }
    }
    for n in names {
        if !found.iter().any(|(f, _)| f == n) {
            bail!("no test binary `{n}` in the workspace");
        }
    }
    Ok(found.into_iter().map(|(_, exe)| exe).collect())
}

/// Runs a test program (cargo test, or a test binary), echoing its output,
/// and adds up its `test result:` lines.
fn run_tests(mut cmd: Command, what: &str) -> Result<(u64, u64, bool)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    let out = child.stdout.take().context("no stdout")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(out).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let ok = child.wait()?.success();
    Ok((passed, failed, ok))
}

/// In `ok. 9 passed; 0 failed; ...`, the number before `label`.
fn count(s: &str, label: &str) -> u64 {
    s.split(';')
        .find(|part| part.contains(label))
        .and_then(|part| part.split_whitespace().rev().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn bench(which: Bench, args: &[String]) -> Result<()> {
    let (package, target) = which.target();
    let name = which.name();
    // A bench on a fresh machine installs what it runs on, as the demo and
    // the tests do: the system packages, and for the desktop bench Node.js
    // (the UI's build) and tauri-driver.
    setup()?;
    if which == Bench::Desktop {
        setup_tools(false)?;
        install_tauri_driver()?;
        ui_build()?;
    }
    if !matches!(which, Bench::Signaling | Bench::Queue) {
        // The call and desktop benches run a release phonectl as the peer.
        let ok = cargo()
            .args(["build", "--release", "-p", "phonectl"])
            .status()
            .context("building phonectl")?
            .success();
        if !ok {
            bail!("building phonectl failed");
        }
    }
    let status = cargo()
        .args(["bench", "-p", package, "--bench", target, "--"])
        .args(args)
        .status()
        .with_context(|| format!("running the {name} bench"))?;
    if !status.success() {
        bail!("{name} bench failed");
    }
    Ok(())
}

/// `tauri build` for this OS's installer formats (Linux: .deb and .rpm;
/// AppImage, msi/nsis and dmg are built by .github/workflows/release.yml).
fn bundle() -> Result<()> {
    setup()?;
    ui_build()?;
    let bundles = if cfg!(target_os = "linux") {
        "deb,rpm"
    } else {
        ""
    };
    let mut cmd = Command::new("ui/node_modules/.bin/tauri");
    cmd.arg("build");
    if !bundles.is_empty() {
        cmd.args(["--bundles", bundles]);
    }
    let ok = cmd.status().context("running the Tauri CLI")?.success();
    if !ok {
        bail!("tauri build failed");
    }
    for entry in std::fs::read_dir("target/release/bundle")? {
        let dir = entry?.path();
        for f in std::fs::read_dir(&dir)? {
            let f = f?.path();
            if f.is_file() {
                println!("bundle: {}", f.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Cli, VitestReport, cargo, count, workspace_root};
    use std::os::unix::fs::PermissionsExt;

    /// The xtask is what installs the system packages, so it must build
    /// without any of them: no crate in its tree may need pkg-config, a
    /// system library or cmake. This checks the xtask in a target directory
    /// of its own (no feature unification with the rest of the workspace)
    /// with `pkg-config` and `cmake` replaced by programs that fail and an
    /// empty `PKG_CONFIG_LIBDIR`, as on a fresh machine.
    #[test]
    fn xtask_needs_no_system_library() {
        let root = workspace_root().unwrap();
        let shims_dir = tempfile::tempdir().unwrap();
        let shims = shims_dir.path().to_path_buf();
        for tool in ["pkg-config", "cmake"] {
            let path = shims.join(tool);
            std::fs::write(
                &path,
                format!(
                    "#!/bin/sh\necho \"{tool} is not installed on a fresh machine\" >&2\nexit 1\n"
                ),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let empty = shims.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let path = std::env::join_paths(std::iter::once(shims.clone()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let out = cargo()
            .current_dir(&root)
            .args(["check", "--locked", "-p", "xtask", "--target-dir"])
            .arg(root.join("target/xtask-alone"))
            .env("PATH", path)
            .env("PKG_CONFIG", shims.join("pkg-config"))
            .env("PKG_CONFIG_LIBDIR", &empty)
            .env_remove("PKG_CONFIG_PATH")
            .env_remove("PKG_CONFIG_SYSROOT_DIR")
            .env("CMAKE", shims.join("cmake"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the xtask needs a system library or tool to build; keep such crates out of its \
             dependency tree (see xtask/Cargo.toml):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            <Cli as clap::Parser>::try_parse_from(["xtask", "bench", "call", "--", "--calls", "3"])
                .expect("bench call parses");
        assert!(matches!(
            cli.task,
            super::Task::Bench {
                which: super::Bench::Call,
                ..
            }
        ));
        assert!(<Cli as clap::Parser>::try_parse_from(["xtask", "bench", "nope"]).is_err());
        let cli = <Cli as clap::Parser>::try_parse_from([
            "xtask",
            "fuzz",
            "--seconds",
            "5",
            "client_frame",
        ])
        .expect("fuzz parses");
        assert!(
            matches!(cli.task, super::Task::Fuzz { seconds: 5, target: Some(ref t) } if t == "client_frame")
        );
    }

    /// Vitest's JSON report as `vitest run --reporter=json` writes it (v3),
    /// cut down: one passing file, one with a failing test, one that did
    /// not load.
    #[test]
    fn reads_vitest_json_reports() {
        let report: VitestReport = serde_json::from_str(
            r#"{"numTotalTestSuites":4,"numPassedTestSuites":2,"numFailedTestSuites":2,
            "numPendingTestSuites":0,"numTotalTests":3,"numPassedTests":2,"numFailedTests":1,
            "numPendingTests":0,"numTodoTests":0,"startTime":1,"success":false,
            "testResults":[
              {"name":"/ui/src/a.test.ts","status":"passed","message":"","startTime":1,"endTime":2,
               "assertionResults":[{"ancestorTitles":[],"fullName":"a works","status":"passed","title":"a works","duration":1,"failureMessages":[],"meta":{}}]},
              {"name":"/ui/src/b.test.ts","status":"failed","message":"","startTime":1,"endTime":2,
               "assertionResults":[
                 {"ancestorTitles":["b"],"fullName":"b adds","status":"passed","title":"adds","failureMessages":[],"meta":{}},
                 {"ancestorTitles":["b"],"fullName":"b subtracts","status":"failed","title":"subtracts","failureMessages":["expected 1 to be 2"],"meta":{}}]},
              {"name":"/ui/src/c.test.ts","status":"failed","message":"Failed to load url ./missing","startTime":1,"endTime":2,"assertionResults":[]}
            ]}"#,
        )
        .expect("report");
        assert_eq!(report.counts(), (2, 2));
        assert!(!report.success);
        assert_eq!(
            report.failures(),
            vec![
                "/ui/src/b.test.ts: b subtracts".to_string(),
                "/ui/src/c.test.ts: Failed to load url ./missing".to_string(),
            ]
        );
    }

    #[test]
    fn counts_cargo_test_result_lines() {
        let line =
            "ok. 9 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        assert_eq!(count(line, " passed"), 9);
        assert_eq!(count(line, " failed"), 2);
    }
}
