//! Switchboard: the softphone's signaling server.
//!
//! It keeps accounts and tenants, hands out login tokens, tracks presence,
//! routes calls between the users of a tenant (relaying SDP offers/answers
//! and trickled ICE candidates over WebSockets), keeps a call detail record
//! (CDR) of every call in SQLite, hands out ICE server configuration with
//! short-lived TURN credentials, and exports Prometheus metrics.
//!
//! It does **not** carry media: calls are peer to peer (DTLS-SRTP), through
//! a TURN relay when no direct path exists. The wire protocol is
//! `docs/protocol.md`; its Rust types are in `softphone-protocol`.
//!
//! The server is one function, [`run`], that serves a bound listener until a
//! shutdown future completes, so tests bind `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard::Error> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = switchboard::Config::with_data_dir("/tmp/switchboard-demo");
//! let store = switchboard::Store::open(&config.data_dir).await?;
//! store.add_tenant("acme").await?;
//! store.add_user("acme", "alice", "Alice Martin", "correct horse").await?;
//! switchboard::run(listener, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub mod acd;
mod admin;
mod config;
mod http;
mod hub;
mod ice;
mod metrics;
pub mod store;
mod supervise;
mod webhooks;
mod widget;
mod ws;

pub use config::{Config, LogFormat};
pub use store::Store;

/// Errors of the switchboard library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQLite store failed. Retrying may help if the disk was full or
    /// the file locked.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed: the file is from a newer version or damaged.
    /// Retrying does not help.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Files or sockets failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The thing already exists (tenant, user). Retrying does not help.
    #[error("{0}")]
    Conflict(String),
    /// No such tenant or user. Retrying does not help.
    #[error("{0}")]
    NotFound(String),
    /// A value is malformed (name, password length, cursor). Retrying does
    /// not help.
    #[error("{0}")]
    Invalid(String),
    /// The configuration is unusable. Retrying does not help.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else that went wrong inside; retrying may help.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Whether retrying the same operation later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Io(_) | Self::Internal(_))
    }
}

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// State shared by the HTTP handlers and the socket tasks.
pub(crate) struct Shared {
    pub config: Config,
    pub store: Store,
    /// The hub with its sockets and CDR queue; lock through [`Self::routing`].
    routing: Mutex<ws::Routing>,
    pub metrics: Arc<metrics::Metrics>,
    pub committed: tokio::sync::watch::Receiver<u64>,
    pub limits: http::LoginLimits,
    /// Guest token limits, per tenant and per IP.
    pub guest_limits: http::LoginLimits,
    /// Admission of new WebSockets ([`Config::ws_admissions_per_sec`]).
    pub admissions: governor::DefaultDirectRateLimiter,
    /// Admission of new WebSockets per client IP
    /// ([`Config::ws_admissions_per_ip_per_sec`]).
    pub ip_admissions: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    /// Locks the routing state. A panic while it was held (a bug) leaves the
    /// lock poisoned; the state is taken as it is, so that one failed frame
    /// does not fail every later frame of every socket.
    pub fn routing(&self) -> MutexGuard<'_, ws::Routing> {
        self.routing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves the switchboard on `listener` until `shutdown` completes.
///
/// Opens (or creates) the store ([`Config::store_database`]), marks calls left
/// unfinished by a previous run as `failed`, then serves HTTP and WebSocket
/// connections. On shutdown it closes every socket with close code 1012
/// (service restart), waits up to 5 s for them to go, and commits every
/// pending CDR write before returning.
///
/// # Errors
/// [`Error::Database`]/[`Error::Migrate`] when the store cannot be opened,
/// [`Error::Io`] when serving fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let node = store::NodeRun::new(config.node_name.trim());
    let store = Store::connect(&config.store_database()?)
        .await?
        .for_node(&node);
    store.node_heartbeat(&node).await?;
    let recovered = store.recover_unfinished_calls().await?
        + store
            .fail_calls_of_gone_nodes(&node, stale_before(&config), true)
            .await?;
    if recovered > 0 {
        tracing::warn!(
            calls = recovered,
            "marked calls left unfinished by an earlier run or a gone node as failed"
        );
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let m = metrics.clone();
    let (cdr, committed, writer) = store::CdrWriter::start(store.clone(), move || {
        m.cdr_write_errors.inc();
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        routing: Mutex::new(ws::Routing::new(cdr, metrics.clone())),
        limits: http::LoginLimits::new(&config),
        guest_limits: http::LoginLimits::guests(&config),
        admissions: ws::admission_limiter(&config),
        ip_admissions: ws::ip_admission_limiter(&config),
        config,
        store: store.clone(),
        metrics,
        committed,
        shutdown: stop_rx,
    });
    let background = tokio::spawn(background_tasks(shared.clone(), node.clone()));
    let heartbeat = tokio::spawn(node_heartbeat(shared.clone(), node.clone()));
    let sweep = tokio::spawn(login_sweep(shared.clone()));
    let deliveries = tokio::spawn(webhooks::deliver_loop(shared.clone()));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = %store.database().display(), "switchboard listening");
    let app = http::router(shared.clone());
    // Signaling frames are small and latency-bound: no Nagle delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let mut stop_wait = shared.shutdown.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_wait.wait_for(|s| *s).await;
    });
    let serving = tokio::spawn(async move { server.await });

    shutdown.await;
    tracing::info!("shutting down: closing sockets");
    let _ = stop_tx.send(true);
    {
        let mut r = shared.routing();
        let fx = r.hub.close_all();
        r.apply(fx);
    }
    for _ in 0..50 {
        if shared.routing().hub.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match tokio::time::timeout(Duration::from_secs(5), serving).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server ended with an error"),
        Ok(_) => {}
        Err(_) => tracing::warn!("HTTP connections still open after 5 s; leaving them"),
    }
    background.abort();
    heartbeat.abort();
    sweep.abort();
    deliveries.abort();
    // Dropping the last queue handle lets the writer drain and stop.
    shared.routing().cdr.close();
    drop(shared);
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "CDR writer ended abnormally");
    }
    store.node_heartbeat(&node).await.ok();
    store.close().await;
    tracing::info!("switchboard stopped");
    Ok(())
}

/// This node's heartbeat in the store, every [`Config::node_heartbeat`],
/// in a task of its own so that nothing slower delays it.
async fn node_heartbeat(shared: Arc<Shared>, node: store::NodeRun) {
    let mut tick = tokio::time::interval(shared.config.node_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match shared.store.node_heartbeat(&node).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                run = %node.run_id,
                "another node took this one for dead (its heartbeat was older than \
                 node_stale_secs) and ended the records of its unfinished calls as failed"
            ),
            Err(e) => tracing::warn!(error = %e, "heartbeat write failed"),
        }
    }
}

/// Every [`Config::node_heartbeat`]: the sweep of gone nodes' calls, and
/// the pruning of ended calls and rate limiters; hourly, the purge of
/// expired sessions.
async fn background_tasks(shared: Arc<Shared>, node: store::NodeRun) {
    let mut tick = tokio::time::interval(shared.config.node_heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_purge: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        match shared
            .store
            .fail_calls_of_gone_nodes(&node, stale_before(&shared.config), false)
            .await
        {
            Ok(0) => {}
            Ok(k) => {
                shared.metrics.gone_node_calls.inc_by(k);
            }
            Err(e) => tracing::warn!(error = %e, "sweep of gone nodes failed"),
        }
        if last_purge.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
            last_purge = Some(tokio::time::Instant::now());
            match shared.store.purge_expired_sessions().await {
                Ok(0) => {}
                Ok(k) => tracing::info!(sessions = k, "purged expired sessions"),
                Err(e) => tracing::warn!(error = %e, "session purge failed"),
            }
        }
        shared.routing().hub.prune_ended(now_ms());
        shared.limits.prune();
        shared.guest_limits.prune();
        shared.ip_admissions.retain_recent();
        shared.ip_admissions.shrink_to_fit();
    }
}

/// Heartbeats older than this (ms since the Unix epoch) are of gone nodes.
fn stale_before(config: &Config) -> u64 {
    now_ms().saturating_sub(config.node_stale.as_millis() as u64)
}

/// Closes the sockets whose login ended in the store, every
/// [`Config::login_sweep`] ([`ws::close_ended_logins`]).
async fn login_sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.login_sweep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ws::close_ended_logins(&shared).await {
            Ok(0) => {}
            Ok(k) => tracing::info!(sockets = k, "closed the sockets of ended logins"),
            Err(e) => tracing::warn!(error = %e, "login sweep failed"),
        }
    }
}

/// Where the data lives by default: the OS data directory for
/// `switchboard` (e.g. `~/.local/share/switchboard` on Linux).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "softphone", "switchboard")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("switchboard-data"))
}
