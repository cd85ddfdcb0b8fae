//! Call benchmark: `cargo xtask bench call [--calls N]`.
//!
//! A switchboard on loopback and two engines in this process place `--calls`
//! calls one after another, measuring per call:
//! - dial → the callee's engine reports the incoming call ("rings");
//! - accept → first decoded audio frame, at the caller and at the callee;
//! - mouth-to-ear latency added by our pipeline: an impulse every 500 ms is
//!   read by the caller's source and found in the callee's sink; both
//!   devices are in-process, so one clock times both ends (this covers the
//!   20 ms frame, Opus, RTP/SRTP over loopback, the jitter buffer and the
//!   decoder, not sound-card buffers).
//!
//! Then one `phonectl` process answers a 12 s call with a tone: its CPU (% of
//! one core) and RSS are sampled while idle (the baseline) and in the call,
//! and the RTP payload bitrate each way is read from the engine's stats, for
//! a tone and for silence (DTX).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use softphone_audio::{NullSink, Silence, Sink, Source, Tone};
use softphone_e2e::{Events, PW, Server};
use softphone_engine::call::CallState;
use softphone_engine::{CallAudio, EngineEvent};

/// Emits a full-scale impulse every `period` frames and records when.
struct ImpulseSource {
    n: u64,
    period: u64,
    sent: Arc<Mutex<Vec<Instant>>>,
}

impl Source for ImpulseSource {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        frame.fill(0.0);
        if self.n.is_multiple_of(self.period) {
            // A short click: 2 ms of a 1 kHz burst survives Opus well.
            for (i, s) in frame.iter_mut().take(96).enumerate() {
                *s = 0.9 * (i as f32 * std::f32::consts::TAU / 48.0).sin();
            }
            if let Ok(mut v) = self.sent.lock() {
                v.push(Instant::now());
            }
        }
        self.n += 1;
        true
    }
}

/// Finds impulses in what it is given and records when (corrected for the
/// click's position within the frame).
struct ImpulseSink {
    got: Arc<Mutex<Vec<Instant>>>,
    armed: bool,
}

impl Sink for ImpulseSink {
    fn write_frame(&mut self, frame: &[f32]) {
        let now = Instant::now();
        match frame.iter().position(|s| s.abs() > 0.3) {
            Some(pos) if self.armed => {
                self.armed = false;
                let offset = Duration::from_secs_f64(pos as f64 / 48_000.0);
                if let Ok(mut v) = self.got.lock() {
                    v.push(now + offset);
                }
            }
            None if frame.iter().all(|s| s.abs() < 0.05) => self.armed = true,
            _ => {}
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit(')').next()?.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn proc_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU of `pid` over `secs`, in % of one core (USER_HZ = 100).
async fn cpu_pct(pid: u32, secs: f64) -> f64 {
    let t0 = proc_cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    (proc_cpu_ticks(pid) - t0) as f64 / (secs * 100.0) * 100.0
}

/// Waits for the call's first decoded audio; ms since `since`.
async fn first_audio(ev: &mut Events, call: &str, since: Instant) -> f64 {
    ev.wait("first audio", |e| match e {
        EngineEvent::FirstAudio { call_id } if call_id == call => Some(()),
        _ => None,
    })
    .await;
    since.elapsed().as_secs_f64() * 1e3
}

fn state_is(call: &str, want: CallState) -> impl FnMut(&EngineEvent) -> Option<()> + '_ {
    move |ev| match ev {
        EngineEvent::CallState { call_id, state } if call_id == call && *state == want => Some(()),
        _ => None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let srv = Server::start().await;
    let (alice, mut a_ev, _) = srv.engine("alice", "bench-a").await;
    let (bob, mut b_ev, _) = srv.engine("bob", "bench-b").await;

    let (mut ring, mut first_a, mut first_b, mut m2e) = (vec![], vec![], vec![], vec![]);
    for i in 0..calls {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let got = Arc::new(Mutex::new(Vec::new()));
        let t_dial = Instant::now();
        let call = alice
            .dial(
                "bob",
                CallAudio {
                    source: Box::new(ImpulseSource {
                        n: 0,
                        period: 25,
                        sent: sent.clone(),
                    }),
                    sink: Box::new(NullSink),
                },
            )
            .await
            .expect("dial");
        b_ev.wait("incoming", |ev| {
            matches!(ev, EngineEvent::Incoming { .. }).then_some(())
        })
        .await;
        ring.push(t_dial.elapsed().as_secs_f64() * 1e3);
        let t_accept = Instant::now();
        bob.answer(
            &call,
            CallAudio {
                source: Box::new(Tone::new(1000.0, -12.0)),
                sink: Box::new(ImpulseSink {
                    got: got.clone(),
                    armed: true,
                }),
            },
        )
        .await
        .expect("answer");
        first_b.push(first_audio(&mut b_ev, &call, t_accept).await);
        first_a.push(first_audio(&mut a_ev, &call, t_accept).await);
        // Let a few impulses through (only on a few calls: it takes time).
        if i % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(2_600)).await;
            let (s, g) = (sent.lock().unwrap().clone(), got.lock().unwrap().clone());
            // Pair each received click with the latest click sent before it.
            for r in g {
                if let Some(t) = s.iter().rev().find(|t| **t <= r) {
                    let d = r.duration_since(*t).as_secs_f64() * 1e3;
                    if d < 400.0 {
                        m2e.push(d);
                    }
                }
            }
        }
        alice.hangup(&call);
        a_ev.wait("ended", |e| matches!(e, EngineEvent::CallState { call_id, state: CallState::Ended { .. } } if *call_id == call).then_some(())).await;
        b_ev.wait("ended", |e| matches!(e, EngineEvent::CallState { call_id, state: CallState::Ended { .. } } if *call_id == call).then_some(())).await;
    }

    // A phonectl process in a call: CPU, RSS, bitrate.
    let exe = std::env::current_exe().expect("bench path");
    let phonectl: PathBuf = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("phonectl");
    let mut child = Command::new(&phonectl)
        .args([
            "--server",
            &srv.base,
            "--tenant",
            "acme",
            "--user",
            "carol",
            "--no-keyring",
        ])
        .args(["--ice-loopback", "answer", "--auto", "--tone", "440"])
        .env("PHONECTL_PASSWORD", PW)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo build --release -p phonectl`)",
                phonectl.display()
            )
        });
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while out.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && !line.contains("registered") {
        line.clear();
    }
    std::thread::spawn(move || for _ in out.lines() {});
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu = cpu_pct(pid, 4.0).await;
    let idle_rss = proc_rss_mb(pid);

    let mut kbps = Vec::new();
    for (label, source) in [
        (
            "tone",
            Box::new(Tone::new(1000.0, -12.0)) as Box<dyn Source>,
        ),
        ("silence (DTX)", Box::new(Silence) as Box<dyn Source>),
    ] {
        let call = alice
            .dial(
                "carol",
                CallAudio {
                    source,
                    sink: Box::new(NullSink),
                },
            )
            .await
            .expect("dial");
        a_ev.wait("active", state_is(&call, CallState::Active))
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = cpu_pct(pid, 6.0).await;
        let rss = proc_rss_mb(pid);
        let mut sends = Vec::new();
        let mut recvs = Vec::new();
        for _ in 0..2 {
            let st = a_ev
                .wait("stats", |e| match e {
                    EngineEvent::Stats { call_id, stats } if *call_id == call => Some(*stats),
                    _ => None,
                })
                .await;
            sends.push(st.send_kbps);
            recvs.push(st.recv_kbps);
        }
        kbps.push((label, cpu, rss, pct(&mut sends, 0.5), pct(&mut recvs, 0.5)));
        alice.hangup(&call);
        a_ev.wait("ended", |e| matches!(e, EngineEvent::CallState { call_id, state: CallState::Ended { .. } } if *call_id == call).then_some(())).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    println!();
    println!(
        "call bench: {calls} calls on loopback (release build), {} mouth-to-ear samples",
        m2e.len()
    );
    println!("  {:<48} {:>9} {:>9}", "latency (ms)", "p50", "p95");
    for (name, v) in [
        ("dial -> callee rings", &mut ring),
        ("accept -> first decoded audio at callee", &mut first_b),
        ("accept -> first decoded audio at caller", &mut first_a),
        ("mouth-to-ear added by the pipeline", &mut m2e),
    ] {
        let (p50, p95) = (pct(v, 0.5), pct(v, 0.95));
        println!("  {name:<48} {p50:>9.1} {p95:>9.1}");
    }
    println!();
    println!(
        "  phonectl process (answering)        CPU % of one core   RSS MB   caller sends kbit/s   caller receives kbit/s"
    );
    println!(
        "  {:<35} {:>17.1} {:>8.1} {:>21} {:>24}",
        "baseline: registered, idle", idle_cpu, idle_rss, "-", "-"
    );
    for (label, cpu, rss, send, recv) in kbps {
        println!(
            "  {:<35} {cpu:>17.1} {rss:>8.1} {send:>21.1} {recv:>24.1}",
            format!("in a call, caller sends {label}")
        );
    }
    println!(
        "  (kbit/s are RTP payload; on the wire add ~20 kbit/s of IP/UDP/RTP/SRTP headers at 50 packets/s)"
    );
}
