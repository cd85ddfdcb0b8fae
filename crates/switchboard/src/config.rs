//! Server configuration, layered once: built-in defaults, then an optional
//! TOML file, then the environment (`SWITCHBOARD_*`), then flags; each layer
//! wins over the ones before it.
//!
//! [`Config`] is the one shape of all layers: its serde names are the TOML
//! keys (durations in whole seconds, `*_secs`), and the binary's flags and
//! environment variables carry the same names (`--ring-timeout-secs`,
//! `SWITCHBOARD_RING_TIMEOUT_SECS`). [`Config::layered`] merges the file
//! under the values the binary parsed from its flags and environment, with
//! figment, and fills what is left from [`Config::default`].
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/switchboard"
//! # or, shared by several nodes (docs/deploy.md):
//! # database = "postgres://switchboard:secret@db.internal/switchboard"
//! node_name = "sb-1"
//! token_ttl_secs = 86400
//! ring_timeout_secs = 45
//! stun_urls = ["stun:turn.example.org:3478"]
//! turn_urls = ["turn:turn.example.org:3478?transport=udp"]
//! turn_secret = "change me"
//! log_format = "json"
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// How the binary writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything the server needs to know. Build it with
/// [`Config::with_data_dir`] (tests, embedding) or [`Config::layered`] (the
/// binary); every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the SQLite file (`switchboard.db`). Default: the OS data
    /// directory ([`crate::default_data_dir`]).
    pub data_dir: PathBuf,
    /// The store: `sqlite://PATH` or `postgres://USER@HOST/DB` (see
    /// [`crate::store::Database::parse`]). Default: `switchboard.db` in
    /// [`Self::data_dir`]. Several nodes may share one PostgreSQL database;
    /// what they share and what not yet is in docs/deploy.md.
    pub database: Option<String>,
    /// This node's name among the switchboards sharing a database: stable
    /// across restarts and unique per node (two live nodes must not share
    /// it: a node that starts fails the unfinished calls of every earlier
    /// run of its name). Default: the host name.
    pub node_name: String,
    /// How often this node writes its heartbeat to the store and sweeps
    /// the calls of gone nodes. Default 5 s. Key `node_heartbeat_secs`.
    #[serde(rename = "node_heartbeat_secs", deserialize_with = "secs")]
    pub node_heartbeat: Duration,
    /// A node whose heartbeat is older than this is gone: any other node
    /// fails its unfinished calls. Default 15 s; at least 3 ×
    /// `node_heartbeat`. Heartbeats carry each node's own clock, so the
    /// nodes' clocks must agree (NTP) to well within this. Key
    /// `node_stale_secs`.
    #[serde(rename = "node_stale_secs", deserialize_with = "secs")]
    pub node_stale: Duration,
    /// Address the binary listens on. Default `127.0.0.1:8080`. [`crate::run`]
    /// serves the listener it is given and does not read this.
    pub listen: SocketAddr,
    /// Log format of the binary. Default text.
    pub log_format: LogFormat,
    /// Lifetime of a login token. Default 24 h. Key `token_ttl_secs`.
    #[serde(rename = "token_ttl_secs", deserialize_with = "secs")]
    pub token_ttl: Duration,
    /// How long an invite rings before it ends as `no_answer`. Default 45 s.
    /// Key `ring_timeout_secs`.
    #[serde(rename = "ring_timeout_secs", deserialize_with = "secs")]
    pub ring_timeout: Duration,
    /// How long a call survives its party's socket dropping. Default 30 s.
    /// Key `reconnect_grace_secs`.
    #[serde(rename = "reconnect_grace_secs", deserialize_with = "secs")]
    pub reconnect_grace: Duration,
    /// Keepalive period told to clients; silence for 3× closes. Default 20 s.
    /// Key `heartbeat_secs`.
    #[serde(rename = "heartbeat_secs", deserialize_with = "secs")]
    pub heartbeat: Duration,
    /// Time a new socket has to send a good `hello` before it is closed with
    /// 4003. Default 10 s; not an operator setting (docs/protocol.md §3.3),
    /// tests shorten it.
    #[serde(skip)]
    pub hello_timeout: Duration,
    /// How often sockets are checked against the store for a login that
    /// ended elsewhere (logout on another node, a user disabled by the admin
    /// CLI): such sockets close with 4001 within this period. Default 5 s;
    /// not an operator setting, tests shorten it.
    #[serde(skip)]
    pub login_sweep: Duration,
    /// How often the webhook outbox is checked for events due. Default
    /// 500 ms; not an operator setting.
    #[serde(skip)]
    pub webhook_poll: Duration,
    /// STUN URLs handed to clients, e.g. `stun:stun.example.org:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn `static-auth-secret`);
    /// without it no TURN entry is handed out.
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials. Default 1 h. Key `turn_ttl_secs`.
    #[serde(rename = "turn_ttl_secs", deserialize_with = "secs")]
    pub turn_ttl: Duration,
    /// Logins allowed per account per minute. Default 10.
    pub login_per_account_per_min: u32,
    /// Logins allowed per client IP per minute. Default 60.
    pub login_per_ip_per_min: u32,
    /// Guest tokens (web widget callers) issued per client IP per minute.
    /// Default 10.
    pub guest_tokens_per_ip_per_min: u32,
    /// Guest tokens issued per tenant per minute. Default 600.
    pub guest_tokens_per_tenant_per_min: u32,
    /// Lifetime of a guest token. Default 15 min. Key `guest_token_ttl_secs`.
    #[serde(rename = "guest_token_ttl_secs", deserialize_with = "secs")]
    pub guest_token_ttl: Duration,
    /// Frames a socket may send per second (sustained; bursts of 4× pass).
    /// Default 50.
    pub frames_per_sec: u32,
    /// WebSocket upgrades this node admits per second (bursts of 2× pass);
    /// more get `503 rate_limited` with `Retry-After: 1`, so that the
    /// reconnect storm after a node dies reaches the others as a steady
    /// flow. Default 1000.
    pub ws_admissions_per_sec: u32,
    /// WebSocket upgrades admitted per second from one client IP (bursts
    /// of 2×), within [`Self::ws_admissions_per_sec`], so that one client
    /// cannot use up the node's admissions; the IP is the one the login
    /// limits see (`X-Forwarded-For` with [`Self::trust_forwarded_for`]).
    /// A contact centre behind one NAT address reconnects at this rate
    /// after a node dies. Default 200.
    pub ws_admissions_per_ip_per_sec: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a reverse
    /// proxy that sets it). Default off.
    pub trust_forwarded_for: bool,
    /// Bearer token that `GET /v1/metrics` requires (`Authorization: Bearer
    /// …`, Prometheus `authorization.credentials`). Without it the metrics
    /// are not served at all (401), so they are never open to the world.
    /// At least 16 characters.
    pub metrics_token: Option<String>,
}

/// The host name (`$HOSTNAME`, else the kernel's), or `switchboard`.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchboard".into())
}

/// A duration given in whole seconds.
fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

impl Default for Config {
    /// The defaults, with the OS data directory.
    fn default() -> Self {
        Self::with_data_dir(crate::default_data_dir())
    }
}

impl Config {
    /// The store this configuration names: [`Self::database`], or the
    /// SQLite file in [`Self::data_dir`].
    ///
    /// # Errors
    /// [`crate::Error::Invalid`] for a malformed `database` URL.
    pub fn store_database(&self) -> Result<crate::store::Database, crate::Error> {
        match &self.database {
            Some(url) => crate::store::Database::parse(url),
            None => Ok(crate::store::Database::in_data_dir(&self.data_dir)),
        }
    }

    /// Defaults with the given data directory.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: dir.into(),
            database: None,
            node_name: host_name(),
            node_heartbeat: Duration::from_secs(5),
            node_stale: Duration::from_secs(15),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            log_format: LogFormat::Text,
            token_ttl: Duration::from_secs(24 * 3600),
            ring_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(10),
            login_sweep: Duration::from_secs(5),
            webhook_poll: Duration::from_millis(500),
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
            login_per_account_per_min: 10,
            login_per_ip_per_min: 60,
            guest_tokens_per_ip_per_min: 10,
            guest_tokens_per_tenant_per_min: 600,
            guest_token_ttl: Duration::from_secs(15 * 60),
            frames_per_sec: 50,
            ws_admissions_per_sec: 1000,
            ws_admissions_per_ip_per_sec: 200,
            trust_forwarded_for: false,
            metrics_token: None,
        }
    }

    /// The configuration from its layers: [`Config::default`], overridden by
    /// the TOML file `file` (when given), overridden by `overrides`, the
    /// values taken from the environment and flags (a struct or map with the
    /// keys of the file; leave out what was not given, e.g. with
    /// `#[serde(skip_serializing_if = "Option::is_none")]`). A list given in
    /// a later layer replaces the earlier one.
    ///
    /// Does not [`validate`](Self::validate).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file or the key: the file is missing or
    /// is not TOML, a key is unknown, or a value has the wrong type.
    pub fn layered(file: Option<&Path>, overrides: impl Serialize) -> Result<Self, Error> {
        let mut layers = Figment::new();
        if let Some(path) = file {
            layers = layers.merge(Toml::file_exact(path));
        }
        layers
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks values that would make the server misbehave.
    ///
    /// # Errors
    /// [`Error::Config`] naming the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        let positive = [
            ("token_ttl", self.token_ttl),
            ("ring_timeout", self.ring_timeout),
            ("heartbeat", self.heartbeat),
            ("hello_timeout", self.hello_timeout),
            ("login_sweep", self.login_sweep),
            ("turn_ttl", self.turn_ttl),
            ("node_heartbeat", self.node_heartbeat),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be above zero")));
            }
        }
        if self.login_per_account_per_min == 0
            || self.login_per_ip_per_min == 0
            || self.guest_tokens_per_ip_per_min == 0
            || self.guest_tokens_per_tenant_per_min == 0
            || self.frames_per_sec == 0
            || self.ws_admissions_per_sec == 0
            || self.ws_admissions_per_ip_per_sec == 0
        {
            return Err(Error::Config("rate limits must be above zero".into()));
        }
        if self.node_stale < self.node_heartbeat * 3 {
            return Err(Error::Config(
                "node_stale_secs must be at least 3 × node_heartbeat_secs".into(),
            ));
        }
        let name = self.node_name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(Error::Config("node_name must be 1–64 bytes".into()));
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err(Error::Config("turn_urls need turn_secret".into()));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().len() < 16)
        {
            return Err(Error::Config(
                "metrics_token must be at least 16 characters".into(),
            ));
        }
        for u in &self.stun_urls {
            if !u.starts_with("stun:") && !u.starts_with("stuns:") {
                return Err(Error::Config(format!("`{u}` is not a stun: URL")));
            }
        }
        for u in &self.turn_urls {
            if !u.starts_with("turn:") && !u.starts_with("turns:") {
                return Err(Error::Config(format!("`{u}` is not a turn: URL")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn nothing_given_is_the_defaults() {
        let c = Config::layered(None, json!({})).unwrap();
        assert_eq!(c.data_dir, crate::default_data_dir());
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.ring_timeout, Duration::from_secs(45));
        assert_eq!(c.reconnect_grace, Duration::from_secs(30));
        assert_eq!(c.heartbeat, Duration::from_secs(20));
        assert_eq!(c.hello_timeout, Duration::from_secs(10));
        assert_eq!(c.token_ttl, Duration::from_secs(86_400));
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn the_file_wins_over_defaults_and_overrides_win_over_the_file() {
        let f = file(
            r#"
            data_dir = "/srv/sb"
            listen = "0.0.0.0:9000"
            ring_timeout_secs = 20
            heartbeat_secs = 7
            stun_urls = ["stun:a:3478", "stun:b:3478"]
            trust_forwarded_for = true
            log_format = "json"
            "#,
        );
        let c = Config::layered(Some(f.path()), json!({})).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/sb"));
        assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(c.ring_timeout, Duration::from_secs(20));
        assert_eq!(c.heartbeat, Duration::from_secs(7));
        assert_eq!(c.stun_urls, ["stun:a:3478", "stun:b:3478"]);
        assert!(c.trust_forwarded_for);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.reconnect_grace, Duration::from_secs(30), "untouched");

        let over = json!({"heartbeat_secs": 3, "stun_urls": ["stun:c:3478"], "data_dir": "/x"});
        let c = Config::layered(Some(f.path()), over).unwrap();
        assert_eq!(c.heartbeat, Duration::from_secs(3));
        assert_eq!(c.stun_urls, ["stun:c:3478"], "a later list replaces");
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.ring_timeout, Duration::from_secs(20), "from the file");
    }

    #[test]
    fn bad_files_and_values_are_refused_with_their_name() {
        let typo = file("ring_timout_secs = 20\n");
        let e = Config::layered(Some(typo.path()), json!({})).unwrap_err();
        assert!(e.to_string().contains("ring_timout_secs"), "{e}");
        let e = Config::layered(None, json!({"hello_timeout": 1})).unwrap_err();
        assert!(
            e.to_string().contains("hello_timeout"),
            "not a setting: {e}"
        );
        let e = Config::layered(None, json!({"heartbeat_secs": "soon"})).unwrap_err();
        assert!(e.to_string().contains("heartbeat_secs"), "{e}");
        let e = Config::layered(None, json!({"log_format": "xml"})).unwrap_err();
        assert!(e.to_string().contains("xml"), "{e}");
        let missing = Path::new("/nonexistent/switchboard.toml");
        let e = Config::layered(Some(missing), json!({})).unwrap_err();
        assert!(e.to_string().contains("switchboard.toml"), "{e}");
        let not_toml = file("this is not = = toml");
        assert!(Config::layered(Some(not_toml.path()), json!({})).is_err());
    }

    #[test]
    fn validation_names_the_bad_value() {
        let mut c = Config::with_data_dir("/tmp");
        c.turn_urls = vec!["turn:t:3478".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("turn_secret")
        );
        c.turn_secret = Some("s".into());
        assert!(c.validate().is_ok());
        c.hello_timeout = Duration::ZERO;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("hello_timeout")
        );
    }
}
