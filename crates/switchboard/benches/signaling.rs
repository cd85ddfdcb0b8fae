//! Switchboard load generator: `cargo xtask bench signaling [--clients N]`.
//!
//! Starts the real `switchboard` binary on loopback with a fresh SQLite file
//! (or, with `--store postgres`, a private PostgreSQL server started as the
//! tests start it),
//! provisions N users (tenants of `--tenant-size` users), opens N
//! authenticated WebSocket clients, then drives `--pairs` concurrent
//! invite → ringing → accept → hangup cycles with dummy SDP for `--seconds`.
//! Idle clients keep their sockets alive with pings and drain presence frames.
//!
//! Prints connections held, server RSS, setups per second, and p50/p95/p99 of
//! the relay latency (invite sent → call.incoming received, accept sent →
//! call.accepted received) next to the baseline measured in the same run: a
//! ping → pong round trip on the same sockets, which is the server's cheapest
//! path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::Store;
use tokio_tungstenite::tungstenite::Message;

mod common;
use common::{SDP, Ws, connect, next_json, percentile, start_switchboard};

/// The tests' private PostgreSQL server (`--store postgres`).
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

#[derive(Parser, Debug)]
#[command(about = "Switchboard signaling load generator")]
struct Args {
    /// Authenticated clients to hold open.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Concurrent call cycles (each uses two clients).
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// How long to drive calls, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Users per tenant (presence is broadcast within a tenant).
    #[arg(long, default_value_t = 100)]
    tenant_size: usize,
    /// Clients connecting at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// The store: `sqlite` (a temp file) or `postgres` (a private server
    /// in a temp directory, as in the tests; needs PostgreSQL installed).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    store: String,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Next frame of `ty`, skipping presence and candidates.
async fn expect(ws: &mut Ws, ty: &str) -> anyhow::Result<Value> {
    loop {
        let v = next_json(ws).await?;
        if v["type"] == ty {
            return Ok(v);
        }
        if v["type"] != "presence" {
            anyhow::bail!("expected {ty}, got {v}");
        }
    }
}

#[derive(Default)]
struct Samples {
    invite_ms: Vec<f64>,
    accept_ms: Vec<f64>,
    setup_ms: Vec<f64>,
    ping_ms: Vec<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let clients = args.clients.max(2) & !1;
    let pairs = args.pairs.clamp(1, clients / 2);

    // Provision users and tokens straight into the store (argon2 once).
    let dir = tempfile::tempdir()?;
    let (store, _pg, database) = if args.store == "postgres" {
        let pg = postgres::Postgres::start();
        let url = pg.create_database("switchboard").await;
        let store = Store::connect(&switchboard::store::Database::parse(&url)?).await?;
        (store, Some(pg), Some(url))
    } else {
        (Store::open(dir.path()).await?, None, None)
    };
    let hash = switchboard::store::hash_password("bench-password".into()).await?;
    let mut tokens = Vec::with_capacity(clients);
    let tenants = clients.div_ceil(args.tenant_size);
    let t0 = Instant::now();
    for t in 0..tenants {
        let name = format!("t{t}");
        store.add_tenant(&name).await?;
        let users: Vec<(String, String)> = (0..args.tenant_size)
            .map(|i| t * args.tenant_size + i)
            .take_while(|&n| n < clients)
            .map(|n| (format!("u{n}"), format!("User {n}")))
            .collect();
        for id in store.add_users_hashed(&name, &users, &hash).await? {
            let (token, _) = store.create_session(id, Duration::from_secs(3600)).await?;
            tokens.push(token);
        }
    }
    store.close().await;
    eprintln!(
        "provisioned {clients} users in {tenants} tenants in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let db_args: Vec<&str> = match &database {
        Some(url) => vec!["--database", url],
        None => Vec::new(),
    };
    let (server, base) = start_switchboard(dir.path(), &db_args, &["--heartbeat-secs", "60"])?;
    // Stopped on every way out, errors included, before the PostgreSQL
    // server (dropped after it).
    let pid = server.0.id();
    let url = format!("{}/v1/ws", base.replace("http://", "ws://"));
    let rss_idle_server = rss_mb(pid);

    // Connect everyone.
    let t0 = Instant::now();
    let url = Arc::new(url);
    let mut sockets: Vec<Option<Ws>> = Vec::with_capacity(clients);
    let sem = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    let mut handles = Vec::with_capacity(clients);
    for (i, token) in tokens.iter().enumerate() {
        let (url, token, sem) = (url.clone(), token.clone(), sem.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            connect(&url, &token, &format!("d{i}")).await
        }));
    }
    for h in handles {
        sockets.push(Some(h.await??));
    }
    let connect_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_connected = rss_mb(pid);
    eprintln!("connected {clients} clients in {connect_s:.1} s");

    // Callers are the first `pairs` even-numbered clients, callees the next
    // odd ones: pair k = (2k, 2k+1), same tenant since tenant_size is even.
    let mut pair_sockets = Vec::new();
    for k in 0..pairs {
        let a = sockets[2 * k].take().expect("socket");
        let b = sockets[2 * k + 1].take().expect("socket");
        pair_sockets.push((k, a, b));
    }
    // Idle clients: drain frames, ping every 20 s.
    let held = Arc::new(AtomicU64::new(0));
    let mut idle_tasks = Vec::new();
    for ws in sockets.into_iter().flatten() {
        let held = held.clone();
        idle_tasks.push(tokio::spawn(async move {
            let mut ws = ws;
            held.fetch_add(1, Ordering::Relaxed);
            let mut tick = tokio::time::interval(Duration::from_secs(20));
            loop {
                tokio::select! {
                    m = ws.next() => match m {
                        Some(Ok(_)) => {}
                        _ => { held.fetch_sub(1, Ordering::Relaxed); return; }
                    },
                    _ = tick.tick() => {
                        if ws.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                            held.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let seq = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (k, mut a, mut b) in pair_sockets {
        let seq = seq.clone();
        workers.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let callee = format!("u{}", 2 * k + 1);
            // Baseline: ping round trips on the caller's socket.
            for _ in 0..20 {
                let t = Instant::now();
                a.send(Message::text(r#"{"type":"ping"}"#)).await?;
                expect(&mut a, "pong").await?;
                s.ping_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            while Instant::now() < deadline {
                let id = format!("k{k}-{}", seq.fetch_add(1, Ordering::Relaxed));
                let t_inv = Instant::now();
                let invite =
                    json!({"type": "call.invite", "call_id": id, "to": callee, "sdp": SDP});
                a.send(Message::text(invite.to_string())).await?;
                expect(&mut b, "call.incoming").await?;
                s.invite_ms.push(t_inv.elapsed().as_secs_f64() * 1e3);
                b.send(Message::text(
                    json!({"type": "call.ringing", "call_id": id}).to_string(),
                ))
                .await?;
                expect(&mut a, "call.ringing").await?;
                let t_acc = Instant::now();
                b.send(Message::text(
                    json!({"type": "call.accept", "call_id": id, "sdp": SDP}).to_string(),
                ))
                .await?;
                expect(&mut a, "call.accepted").await?;
                s.accept_ms.push(t_acc.elapsed().as_secs_f64() * 1e3);
                expect(&mut b, "call.accepted").await?;
                s.setup_ms.push(t_inv.elapsed().as_secs_f64() * 1e3);
                a.send(Message::text(
                    json!({"type": "call.hangup", "call_id": id}).to_string(),
                ))
                .await?;
                expect(&mut a, "call.ended").await?;
                expect(&mut b, "call.ended").await?;
            }
            anyhow::Ok(s)
        }));
    }
    let t_run = Instant::now();
    let mut all = Samples::default();
    let mut done = 0;
    let mut workers = workers.into_iter();
    // Sample server RSS while the workers run.
    let sampler = tokio::spawn(async move {
        let mut peak = 0.0f64;
        while Instant::now() < deadline {
            peak = peak.max(rss_mb(pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    });
    for w in workers.by_ref() {
        let s = w.await??;
        all.invite_ms.extend(s.invite_ms);
        all.accept_ms.extend(s.accept_ms);
        all.setup_ms.extend(s.setup_ms);
        all.ping_ms.extend(s.ping_ms);
        done += 1;
    }
    let run_s = t_run.elapsed().as_secs_f64();
    let rss_peak = sampler.await?.max(rss_mb(pid));
    let held_now = held.load(Ordering::Relaxed) as usize + 2 * done;
    let setups = all.setup_ms.len();

    for v in [
        &mut all.invite_ms,
        &mut all.accept_ms,
        &mut all.setup_ms,
        &mut all.ping_ms,
    ] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!();
    println!(
        "signaling bench: {clients} clients ({tenants} tenants of {}), {pairs} concurrent call cycles, {:.1} s, store {}",
        args.tenant_size, run_s, args.store
    );
    println!("  connections held at the end   {held_now} / {clients}");
    println!(
        "  connect time                  {connect_s:.1} s ({:.0} hellos/s)",
        clients as f64 / connect_s
    );
    println!(
        "  server RSS                    {rss_idle_server:.1} MB empty, {rss_connected:.1} MB connected, {rss_peak:.1} MB peak during calls"
    );
    println!(
        "  call setups                   {setups} ({:.0} setups/s)",
        setups as f64 / run_s
    );
    println!();
    println!(
        "  {:<42} {:>8} {:>8} {:>8}",
        "latency (ms)", "p50", "p95", "p99"
    );
    for (name, v) in [
        ("baseline: ping -> pong round trip", &all.ping_ms),
        ("relay: invite -> call.incoming", &all.invite_ms),
        ("relay: accept -> call.accepted", &all.accept_ms),
        ("setup: invite -> both see call.accepted", &all.setup_ms),
    ] {
        println!(
            "  {:<42} {:>8.2} {:>8.2} {:>8.2}",
            name,
            percentile(v, 0.50),
            percentile(v, 0.95),
            percentile(v, 0.99)
        );
    }
    for t in idle_tasks {
        t.abort();
    }
    Ok(())
}
