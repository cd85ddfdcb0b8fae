//! `cargo xtask fuzz [--seconds N] [TARGET]`: runs the fuzz targets of
//! `fuzz/` with cargo-fuzz (libFuzzer), each for N seconds, and prints one
//! line per target: executions, time, corpus size, crashes.
//!
//! The toolchain here is stable (rust-toolchain.toml); cargo-fuzz passes
//! nightly-only flags (`-Zsanitizer=address`), which `RUSTC_BOOTSTRAP=1`
//! lets the stable compiler accept. Targets are whatever `fuzz/Cargo.toml`
//! lists (`cargo fuzz list`), so a new target needs no change here.
//!
//! Each target reads its committed seeds (`fuzz/seeds/TARGET/`) and grows a
//! working corpus (`fuzz/corpus/TARGET/`, not committed); inputs that crash
//! land in `fuzz/artifacts/TARGET/` and make the task fail.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use crate::{cargo, cargo_install};

/// Runs `target` (or every target) for `seconds` each; `Ok(false)` when one
/// crashed.
pub(crate) fn run(seconds: u64, target: Option<&str>) -> Result<bool> {
    cargo_install(
        ("cargo", &["fuzz"]),
        &["cargo-fuzz"],
        "runs the fuzz targets with libFuzzer",
    )?;
    let dir = std::env::current_dir()?.join("fuzz");
    let all = list(&dir)?;
    let targets: Vec<String> = match target {
        Some(t) if all.iter().any(|a| a == t) => vec![t.to_string()],
        Some(t) => bail!("no fuzz target `{t}` (known: {})", all.join(", ")),
        None => all,
    };
    let mut results = Vec::new();
    for t in &targets {
        results.push(run_one(&dir, t, seconds)?);
    }
    println!();
    println!(
        "{:<16} {:>12} {:>6} {:>10} {:>8} {:>8}",
        "target", "executions", "s", "exec/s", "corpus", "crashes"
    );
    for r in &results {
        println!(
            "{:<16} {:>12} {:>6} {:>10.0} {:>8} {:>8}",
            r.target,
            r.executions,
            r.secs,
            r.executions as f64 / r.secs.max(1) as f64,
            r.corpus,
            r.crashes.len()
        );
    }
    let crashed: Vec<&PathBuf> = results.iter().flat_map(|r| &r.crashes).collect();
    for c in &crashed {
        println!(
            "crash: {} (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz TARGET {})",
            c.display(),
            c.display()
        );
    }
    Ok(crashed.is_empty())
}

/// What one target's run did.
struct Outcome {
    target: String,
    executions: u64,
    secs: u64,
    corpus: usize,
    crashes: Vec<PathBuf>,
}

/// `cargo fuzz list`: the targets `fuzz/Cargo.toml` declares.
fn list(dir: &Path) -> Result<Vec<String>> {
    let out = cargo()
        .args(["fuzz", "list", "--fuzz-dir"])
        .arg(dir)
        .output()
        .context("running cargo fuzz list")?;
    if !out.status.success() {
        bail!(
            "cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}

fn run_one(dir: &Path, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = dir.join("corpus").join(target);
    let seeds = dir.join("seeds").join(target);
    let artifacts = dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&seeds)?;
    let known_crashes = files(&artifacts);
    let mut cmd = cargo();
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(dir)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1");
    let dict = dir.join("protocol.dict");
    if dict.exists() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    println!("fuzz: {target} for {seconds} s");
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo fuzz")?;
    let err = child.stderr.take().context("no stderr")?;
    let (mut executions, mut secs) = (0u64, 0u64);
    for line in BufReader::new(err).lines() {
        let line = line?;
        // libFuzzer's progress lines (`#1234 NEW cov: …`, `\tNEW_FUNC…`)
        // and its dictionary advice (`"token" # Uses: N`) are many; the
        // rest (start-up, crashes, final stats) is shown.
        if !(line.starts_with('#') || line.starts_with('\t') || line.starts_with('"')) {
            eprintln!("{line}");
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            executions = n.trim().parse().unwrap_or(executions);
        }
        // `Done 1368860 runs in 31 second(s)`
        if let Some(rest) = line.strip_prefix("Done ") {
            let mut w = rest.split_whitespace();
            if let (Some(n), Some(_), Some(_), Some(s)) = (w.next(), w.next(), w.next(), w.next()) {
                executions = n.parse().unwrap_or(executions);
                secs = s.parse().unwrap_or(secs);
            }
        }
    }
    let status = child.wait()?;
    let crashes: Vec<PathBuf> = files(&artifacts)
        .into_iter()
        .filter(|p| !known_crashes.contains(p))
        .collect();
    if !status.success() && crashes.is_empty() {
        bail!("cargo fuzz run {target} failed without a crash input ({status})");
    }
    Ok(Outcome {
        target: target.to_string(),
        executions,
        secs: if secs == 0 { seconds } else { secs },
        corpus: files(&corpus).len(),
        crashes,
    })
}
