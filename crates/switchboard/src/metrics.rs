//! Prometheus metrics, served as text at `GET /v1/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The server's counters and gauges (all atomics; cheap to touch under the
/// hub lock).
pub struct Metrics {
    registry: Registry,
    /// Authenticated sockets open now.
    pub connections: Gauge,
    /// Calls ringing or answered now.
    pub calls_active: Gauge,
    /// Calls ended, by end reason.
    pub calls_ended: Family<Labels, Counter>,
    /// Frames received from clients.
    pub frames_in: Counter,
    /// Frames queued to clients.
    pub frames_out: Counter,
    /// `error` frames sent, by code.
    pub errors: Family<Labels, Counter>,
    /// Login attempts, by result.
    pub logins: Family<Labels, Counter>,
    /// CDR writes that failed even alone.
    pub cdr_write_errors: Counter,
    /// Checks of open sockets against the store's logins that completed.
    pub login_sweeps: Counter,
    /// Sockets closed (4001) because their login ended: logout, disabled.
    pub login_closes: Counter,
    /// Sockets closed (4008) because they did not read their frames.
    pub too_slow: Counter,
    /// WebSocket upgrades refused by the admission rate limit (503).
    pub admissions_refused: Counter,
    /// Calls of gone nodes that this node's sweep failed.
    pub gone_node_calls: Counter,
    /// Webhook delivery attempts, by outcome (`delivered`, `failed`).
    pub webhook_deliveries: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let m = Self {
            connections: Gauge::default(),
            calls_active: Gauge::default(),
            calls_ended: Family::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            errors: Family::default(),
            logins: Family::default(),
            cdr_write_errors: Counter::default(),
            login_sweeps: Counter::default(),
            login_closes: Counter::default(),
            too_slow: Counter::default(),
            admissions_refused: Counter::default(),
            gone_node_calls: Counter::default(),
            webhook_deliveries: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Authenticated WebSocket connections (one per connected endpoint)",
            m.connections.clone(),
        );
        registry.register(
            "calls_active",
            "Calls ringing or answered",
            m.calls_active.clone(),
        );
        registry.register(
            "calls_ended",
            "Calls ended, by reason",
            m.calls_ended.clone(),
        );
        registry.register(
            "frames_received",
            "Frames received from clients",
            m.frames_in.clone(),
        );
        registry.register(
            "frames_sent",
            "Frames queued to clients",
            m.frames_out.clone(),
        );
        registry.register("errors", "Error frames sent, by code", m.errors.clone());
        registry.register("logins", "Login attempts, by result", m.logins.clone());
        registry.register(
            "cdr_write_errors",
            "CDR writes that failed",
            m.cdr_write_errors.clone(),
        );
        registry.register(
            "login_sweeps",
            "Completed checks of open sockets against the logins in the store",
            m.login_sweeps.clone(),
        );
        registry.register(
            "login_closes",
            "Sockets closed because their login ended (logout, user disabled)",
            m.login_closes.clone(),
        );
        registry.register(
            "too_slow_closes",
            "Sockets closed because the client did not read its frames (4008)",
            m.too_slow.clone(),
        );
        registry.register(
            "admissions_refused",
            "WebSocket upgrades refused by the admission rate limit (503)",
            m.admissions_refused.clone(),
        );
        registry.register(
            "gone_node_calls",
            "Unfinished calls of gone nodes (stale heartbeat) this node ended as failed",
            m.gone_node_calls.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            m.webhook_deliveries.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
