//! Queue load generator: `cargo xtask bench queue [--agents N] [--callers N]`.
//!
//! Starts the real `switchboard` binary on loopback with a fresh SQLite file,
//! provisions one tenant with `--agents` agents, all members of the
//! published queue `support` (longest idle, no wrap-up), and `--callers`
//! guests (the web widget's callers). Agents stay connected and answer
//! every offer at once; each caller connects at its arrival time (a steady
//! `--rate` per second), calls `support` with dummy SDP, talks for
//! `--talk-ms` after the answer, hangs up and leaves.
//!
//! Prints offers per second and p50/p95/p99 of the time from a caller's
//! invite to its offer reaching an agent, split by whether an agent was free
//! when the caller arrived, next to the baseline measured in the same run
//! under the same load: a ping → pong round trip on a connected socket. It
//! also checks what must never happen, and fails if it did: a caller
//! offered to two agents at once, a call answered twice, or a caller never
//! answered (lost).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use switchboard::Store;
use switchboard::store::{GuestInfo, QueueSpec};

mod common;
use common::{SDP, Ws, connect, next_json, percentile, send, start_switchboard};

#[derive(Parser, Debug)]
#[command(about = "Switchboard queue load generator")]
struct Args {
    /// Agents, members of the queue, connected throughout.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// Callers, arriving one after another at `--rate`.
    #[arg(long, default_value_t = 2000)]
    callers: usize,
    /// Arrivals per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// How long each answered call lasts before the caller hangs up, ms.
    #[arg(long, default_value_t = 1000)]
    talk_ms: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What every task reports into.
#[derive(Default)]
struct Shared {
    /// When each caller sent its invite, and whether an agent was free then.
    invited: Mutex<HashMap<String, (Instant, bool)>>,
    /// Agents ringing with each call now.
    ringing: Mutex<HashMap<String, u32>>,
    /// Invite → offer, ms: (agent free at arrival, waited).
    to_offer_free: Mutex<Vec<f64>>,
    to_offer_waited: Mutex<Vec<f64>>,
    /// Calls each agent answered and was confirmed.
    answered: Mutex<HashMap<String, u32>>,
    offers: AtomicU64,
    /// Offers of a call already ringing another agent.
    double_offers: AtomicU64,
    /// Agents free now (connected, not ringing or talking).
    free: AtomicI64,
}

/// An agent: answers every offer at once, is free again when the call ends.
async fn agent(mut ws: Ws, shared: Arc<Shared>) -> anyhow::Result<()> {
    loop {
        let v = next_json(&mut ws).await?;
        let call = v["call_id"].as_str().unwrap_or_default().to_string();
        match v["type"].as_str() {
            Some("call.incoming") => {
                let now = Instant::now();
                shared.free.fetch_sub(1, Ordering::Relaxed);
                shared.offers.fetch_add(1, Ordering::Relaxed);
                {
                    let mut r = shared.ringing.lock().expect("lock");
                    let n = r.entry(call.clone()).or_default();
                    if *n > 0 {
                        shared.double_offers.fetch_add(1, Ordering::Relaxed);
                    }
                    *n += 1;
                }
                if let Some((t, free)) = shared.invited.lock().expect("lock").get(&call).copied() {
                    let ms = (now - t).as_secs_f64() * 1e3;
                    let bucket = if free {
                        &shared.to_offer_free
                    } else {
                        &shared.to_offer_waited
                    };
                    bucket.lock().expect("lock").push(ms);
                }
                send(
                    &mut ws,
                    json!({"type": "call.accept", "call_id": call, "sdp": SDP}),
                )
                .await?;
            }
            Some("call.accepted") => {
                if let Some(n) = shared.ringing.lock().expect("lock").get_mut(&call) {
                    *n = n.saturating_sub(1);
                }
                *shared
                    .answered
                    .lock()
                    .expect("lock")
                    .entry(call)
                    .or_default() += 1;
            }
            Some("call.ended") => {
                if let Some(n) = shared.ringing.lock().expect("lock").get_mut(&call) {
                    *n = n.saturating_sub(1);
                }
                shared.free.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// A caller: connects, calls the queue, waits for the answer, talks, hangs
/// up. Returns whether it was answered.
async fn caller(
    url: Arc<String>,
    token: String,
    n: usize,
    talk: Duration,
    shared: Arc<Shared>,
) -> anyhow::Result<bool> {
    let mut ws = connect(&url, &token, &format!("web{n}")).await?;
    let call = format!("q{n}");
    let free = shared.free.load(Ordering::Relaxed) > 0;
    shared
        .invited
        .lock()
        .expect("lock")
        .insert(call.clone(), (Instant::now(), free));
    send(
        &mut ws,
        json!({"type": "call.invite", "call_id": call, "to": "support", "sdp": SDP}),
    )
    .await?;
    loop {
        let v = next_json(&mut ws).await?;
        match v["type"].as_str() {
            Some("call.accepted") => break,
            Some("call.ended") | Some("call.rejected") => return Ok(false),
            _ => {}
        }
    }
    tokio::time::sleep(talk).await;
    send(&mut ws, json!({"type": "call.hangup", "call_id": call})).await?;
    loop {
        let v = next_json(&mut ws).await?;
        if v["type"] == "call.ended" {
            break;
        }
    }
    let _ = ws.close(None).await;
    Ok(true)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path()).await?;
    let t0 = Instant::now();
    let tenant = store.add_tenant("t0").await?;
    let hash = switchboard::store::hash_password("bench-password".into()).await?;
    let names: Vec<(String, String)> = (0..args.agents)
        .map(|i| (format!("a{i}"), format!("Agent {i}")))
        .collect();
    let mut spec = QueueSpec::named("support");
    spec.published = true;
    spec.wrap_up_secs = 0;
    spec.max_wait_secs = 3600;
    store.add_queue(tenant, &spec).await?;
    let mut agent_tokens = Vec::new();
    for (id, (user, _)) in store
        .add_users_hashed("t0", &names, &hash)
        .await?
        .into_iter()
        .zip(&names)
    {
        store
            .set_queue_member(tenant, "support", user, true)
            .await?;
        agent_tokens.push(store.create_session(id, Duration::from_secs(3600)).await?.0);
    }
    let baseline_id = store
        .add_users_hashed("t0", &[("watcher".into(), "Watcher".into())], &hash)
        .await?[0];
    let baseline_token = store
        .create_session(baseline_id, Duration::from_secs(3600))
        .await?
        .0;
    let mut caller_tokens = Vec::new();
    for i in 0..args.callers {
        let info = GuestInfo {
            email: Some(format!("c{i}@example.org")),
            topic: Some("bench".into()),
            page: None,
        };
        let (id, _) = store
            .add_guest(tenant, "support", &format!("Caller {i}"), &info)
            .await?;
        caller_tokens.push(store.create_session(id, Duration::from_secs(3600)).await?.0);
    }
    store.close().await;
    eprintln!(
        "provisioned {} agents and {} callers in {:.1} s",
        args.agents,
        args.callers,
        t0.elapsed().as_secs_f64()
    );

    let (_server, base) = start_switchboard(dir.path(), &[], &[])?;
    let url = Arc::new(format!("{}/v1/ws", base.replace("http://", "ws://")));

    let shared = Arc::new(Shared::default());
    let mut agents = Vec::new();
    for (i, token) in agent_tokens.iter().enumerate() {
        let ws = connect(&url, token, &format!("desk{i}")).await?;
        shared.free.fetch_add(1, Ordering::Relaxed);
        agents.push(tokio::spawn(agent(ws, shared.clone())));
    }
    let mut watcher = connect(&url, &baseline_token, "watch").await?;
    eprintln!("{} agents connected", args.agents);

    // Callers arrive at a steady rate; the baseline pings meanwhile.
    let t_run = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / args.rate.max(0.001));
    let talk = Duration::from_millis(args.talk_ms);
    let arrivals = {
        let (url, shared) = (url.clone(), shared.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(gap);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut calls = Vec::new();
            for (n, token) in caller_tokens.into_iter().enumerate() {
                tick.tick().await;
                calls.push(tokio::spawn(caller(
                    url.clone(),
                    token,
                    n,
                    talk,
                    shared.clone(),
                )));
            }
            calls
        })
    };
    let mut ping_ms = Vec::new();
    while !arrivals.is_finished() {
        let t = Instant::now();
        send(&mut watcher, json!({"type": "ping"})).await?;
        loop {
            if next_json(&mut watcher).await?["type"] == "pong" {
                break;
            }
        }
        ping_ms.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answered_callers = 0usize;
    let mut failed = Vec::new();
    for c in arrivals.await? {
        match c.await? {
            Ok(true) => answered_callers += 1,
            Ok(false) => failed.push("ended unanswered".to_string()),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let run_s = t_run.elapsed().as_secs_f64();
    for a in agents {
        a.abort();
    }

    let offers = shared.offers.load(Ordering::Relaxed);
    let doubles = shared.double_offers.load(Ordering::Relaxed);
    let answered_twice = shared
        .answered
        .lock()
        .expect("lock")
        .values()
        .filter(|&&n| n > 1)
        .count();
    let mut free = shared.to_offer_free.lock().expect("lock").clone();
    let mut waited = shared.to_offer_waited.lock().expect("lock").clone();
    for v in [&mut free, &mut waited, &mut ping_ms] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!();
    println!(
        "queue bench: {} agents, {} callers at {:.0}/s, {} ms talk, {run_s:.1} s",
        args.agents, args.callers, args.rate, args.talk_ms
    );
    println!(
        "  offers                        {offers} ({:.0} offers/s)",
        offers as f64 / run_s
    );
    println!(
        "  callers answered              {answered_callers} / {}",
        args.callers
    );
    println!("  offered to two agents at once {doubles}");
    println!("  answered twice                {answered_twice}");
    println!();
    println!(
        "  {:<46} {:>6} {:>8} {:>8} {:>8}",
        "latency (ms)", "n", "p50", "p95", "p99"
    );
    for (name, v) in [
        ("baseline: ping -> pong round trip", &ping_ms),
        ("invite -> offer, an agent free at arrival", &free),
        ("invite -> offer, all agents busy at arrival", &waited),
    ] {
        println!(
            "  {:<46} {:>6} {:>8.2} {:>8.2} {:>8.2}",
            name,
            v.len(),
            percentile(v, 0.50),
            percentile(v, 0.95),
            percentile(v, 0.99)
        );
    }
    if doubles > 0 || answered_twice > 0 || !failed.is_empty() {
        failed.truncate(5);
        anyhow::bail!(
            "queue invariants broken: {doubles} double offers, {answered_twice} calls answered twice, lost callers: {failed:?}"
        );
    }
    Ok(())
}
