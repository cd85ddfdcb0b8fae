//! Server configuration: built-in defaults, overridden by an optional TOML
//! file, overridden by `SWITCHBOARD_*` environment variables and flags (the
//! binary merges those; see `switchboard serve --help`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// Everything [`crate::run`] needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the SQLite file (`switchboard.db`).
    pub data_dir: PathBuf,
    /// Lifetime of a login token. Default 24 h.
    pub token_ttl: Duration,
    /// How long an invite rings before it ends as `no_answer`. Default 45 s.
    pub ring_timeout: Duration,
    /// How long a call survives its party's socket dropping. Default 30 s.
    pub reconnect_grace: Duration,
    /// Keepalive period told to clients; silence for 3× closes. Default 20 s.
    pub heartbeat: Duration,
    /// Time a new socket has to send a good `hello` before it is closed with
    /// 4003. Default 10 s; not an operator setting (docs/protocol.md §3.3),
    /// tests shorten it.
    pub hello_timeout: Duration,
    /// STUN URLs handed to clients, e.g. `stun:stun.example.org:3478`.
    pub stun_urls: Vec<String>,
    /// TURN URLs, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn `static-auth-secret`);
    /// without it no TURN entry is handed out.
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials. Default 1 h.
    pub turn_ttl: Duration,
    /// Logins allowed per account per minute. Default 10.
    pub login_per_account_per_min: u32,
    /// Logins allowed per client IP per minute. Default 60.
    pub login_per_ip_per_min: u32,
    /// Frames a socket may send per second (sustained; bursts of 4× pass).
    /// Default 50.
    pub frames_per_sec: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a reverse
    /// proxy that sets it). Default off.
    pub trust_forwarded_for: bool,
}

impl Config {
    /// Defaults with the given data directory.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: dir.into(),
            token_ttl: Duration::from_secs(24 * 3600),
            ring_timeout: Duration::from_secs(45),
            reconnect_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(20),
            hello_timeout: Duration::from_secs(10),
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl: Duration::from_secs(3600),
            login_per_account_per_min: 10,
            login_per_ip_per_min: 60,
            frames_per_sec: 50,
            trust_forwarded_for: false,
        }
    }

    /// Applies the values set in a TOML file over these.
    pub fn apply_file(&mut self, f: &FileConfig) {
        let secs = |v: Option<u64>, d: &mut Duration| {
            if let Some(v) = v {
                *d = Duration::from_secs(v);
            }
        };
        if let Some(d) = &f.data_dir {
            self.data_dir = d.clone();
        }
        secs(f.token_ttl_secs, &mut self.token_ttl);
        secs(f.ring_timeout_secs, &mut self.ring_timeout);
        secs(f.reconnect_grace_secs, &mut self.reconnect_grace);
        secs(f.heartbeat_secs, &mut self.heartbeat);
        secs(f.turn_ttl_secs, &mut self.turn_ttl);
        if let Some(v) = &f.stun_urls {
            self.stun_urls = v.clone();
        }
        if let Some(v) = &f.turn_urls {
            self.turn_urls = v.clone();
        }
        if f.turn_secret.is_some() {
            self.turn_secret = f.turn_secret.clone();
        }
        if let Some(v) = f.login_per_account_per_min {
            self.login_per_account_per_min = v;
        }
        if let Some(v) = f.login_per_ip_per_min {
            self.login_per_ip_per_min = v;
        }
        if let Some(v) = f.frames_per_sec {
            self.frames_per_sec = v;
        }
        if let Some(v) = f.trust_forwarded_for {
            self.trust_forwarded_for = v;
        }
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
            ("turn_ttl", self.turn_ttl),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be above zero")));
            }
        }
        if self.login_per_account_per_min == 0
            || self.login_per_ip_per_min == 0
            || self.frames_per_sec == 0
        {
            return Err(Error::Config("rate limits must be above zero".into()));
        }
        if !self.turn_urls.is_empty() && self.turn_secret.is_none() {
            return Err(Error::Config("turn_urls need turn_secret".into()));
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

/// The optional TOML configuration file (`--config FILE`); every key is
/// optional and named as in [`Config`] (durations in seconds).
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// data_dir = "/var/lib/switchboard"
/// token_ttl_secs = 86400
/// ring_timeout_secs = 45
/// stun_urls = ["stun:turn.example.org:3478"]
/// turn_urls = ["turn:turn.example.org:3478?transport=udp"]
/// turn_secret = "change me"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address, e.g. `"127.0.0.1:8080"`.
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Token lifetime, s.
    pub token_ttl_secs: Option<u64>,
    /// Ring timeout, s.
    pub ring_timeout_secs: Option<u64>,
    /// Reconnect grace, s.
    pub reconnect_grace_secs: Option<u64>,
    /// Heartbeat, s.
    pub heartbeat_secs: Option<u64>,
    /// STUN URLs.
    pub stun_urls: Option<Vec<String>>,
    /// TURN URLs.
    pub turn_urls: Option<Vec<String>>,
    /// TURN shared secret.
    pub turn_secret: Option<String>,
    /// TURN credential lifetime, s.
    pub turn_ttl_secs: Option<u64>,
    /// Logins per account per minute.
    pub login_per_account_per_min: Option<u32>,
    /// Logins per IP per minute.
    pub login_per_ip_per_min: Option<u32>,
    /// Frames per socket per second.
    pub frames_per_sec: Option<u32>,
    /// Trust `X-Forwarded-For`.
    pub trust_forwarded_for: Option<bool>,
    /// Log format: `"text"` or `"json"`.
    pub log_format: Option<String>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// [`Error::Config`] with the file name and the parser's message.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }
}
