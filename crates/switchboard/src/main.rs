//! `switchboard`: the signaling server binary and its admin commands.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use switchboard::{Config, FileConfig, Store};

/// Switchboard: signaling server of the softphone.
///
/// Serves the HTTP API and the WebSocket signaling endpoint under /v1, keeps
/// accounts and call detail records in an embedded SQLite file. Run it behind
/// a TLS-terminating reverse proxy in production.
///
/// Every option can also be set through the environment (SWITCHBOARD_<NAME>,
/// e.g. SWITCHBOARD_LISTEN) or the TOML file given with --config; flags win
/// over the environment, which wins over the file.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Directory of the SQLite database [default: the OS data dir, e.g.
    /// ~/.local/share/switchboard].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (see docs/operations.md for the keys).
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API and signaling (the default).
    Serve(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<String>,
    /// Login token lifetime in seconds [default: 86400].
    #[arg(long, env = "SWITCHBOARD_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<u64>,
    /// Seconds an invite rings before it ends as no_answer [default: 45].
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT_SECS")]
    ring_timeout_secs: Option<u64>,
    /// Seconds a call survives a party's dropped socket [default: 30].
    #[arg(long, env = "SWITCHBOARD_RECONNECT_GRACE_SECS")]
    reconnect_grace_secs: Option<u64>,
    /// Keepalive period told to clients, seconds [default: 20].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS")]
    heartbeat_secs: Option<u64>,
    /// STUN URL handed to clients (repeatable; comma-separated in the env).
    #[arg(
        long = "stun-url",
        env = "SWITCHBOARD_STUN_URLS",
        value_delimiter = ','
    )]
    stun_urls: Vec<String>,
    /// TURN URL handed to clients (repeatable; needs --turn-secret).
    #[arg(
        long = "turn-url",
        env = "SWITCHBOARD_TURN_URLS",
        value_delimiter = ','
    )]
    turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn static-auth-secret).
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds [default: 3600].
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS")]
    turn_ttl_secs: Option<u64>,
    /// Logins allowed per account per minute [default: 10].
    #[arg(long, env = "SWITCHBOARD_LOGIN_PER_ACCOUNT_PER_MIN")]
    login_per_account_per_min: Option<u32>,
    /// Logins allowed per client IP per minute [default: 60].
    #[arg(long, env = "SWITCHBOARD_LOGIN_PER_IP_PER_MIN")]
    login_per_ip_per_min: Option<u32>,
    /// Frames a socket may send per second [default: 50].
    #[arg(long, env = "SWITCHBOARD_FRAMES_PER_SEC")]
    frames_per_sec: Option<u32>,
    /// Take client IPs from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(long, env = "SWITCHBOARD_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Log format: text or json [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT")]
    log_format: Option<String>,
}

#[derive(Subcommand, Debug)]
enum TenantCmd {
    /// Add a tenant (an organisation; users call only within their tenant).
    Add {
        /// Tenant name: 1–64 of A–Z a–z 0–9 - _ . @
        name: String,
    },
    /// List tenants.
    List,
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Add a user; the password is read from standard input.
    ///
    /// Example: printf '%s' "$PW" | switchboard user add --tenant acme
    ///   --user alice --display-name "Alice Martin" --password-stdin
    Add {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// User name (what callers dial): 1–64 of A–Z a–z 0–9 - _ . @
        #[arg(long)]
        user: String,
        /// Name shown to others.
        #[arg(long)]
        display_name: String,
        /// Read the password (at least 8 characters) from standard input;
        /// one trailing newline is dropped.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Disable a user: login is refused and their tokens are revoked.
    Disable {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match &cli.common.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let serve = match &cli.command {
        Some(Command::Serve(a)) => Some(a),
        None => None,
        _ => None,
    };
    let default_serve = ServeArgs::default();
    let log_format = serve
        .unwrap_or(&default_serve)
        .log_format
        .clone()
        .or(file.log_format.clone())
        .unwrap_or_else(|| "text".into());
    init_logging(&log_format)?;

    let mut config = Config::with_data_dir(switchboard::default_data_dir());
    config.apply_file(&file);
    if let Some(d) = &cli.common.data_dir {
        config.data_dir = d.clone();
    }
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        None => rt.block_on(serve_main(config, &file, &default_serve)),
        Some(Command::Serve(a)) => rt.block_on(serve_main(config, &file, &a)),
        Some(Command::Tenant(t)) => rt.block_on(tenant_cmd(config, t)),
        Some(Command::User(u)) => rt.block_on(user_cmd(config, u)),
    }
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("unknown log format `{other}` (text or json)"),
    }
    Ok(())
}

async fn serve_main(mut config: Config, file: &FileConfig, a: &ServeArgs) -> anyhow::Result<()> {
    let secs = |v: Option<u64>, d: &mut Duration| {
        if let Some(v) = v {
            *d = Duration::from_secs(v);
        }
    };
    secs(a.token_ttl_secs, &mut config.token_ttl);
    secs(a.ring_timeout_secs, &mut config.ring_timeout);
    secs(a.reconnect_grace_secs, &mut config.reconnect_grace);
    secs(a.heartbeat_secs, &mut config.heartbeat);
    secs(a.turn_ttl_secs, &mut config.turn_ttl);
    if !a.stun_urls.is_empty() {
        config.stun_urls = a.stun_urls.clone();
    }
    if !a.turn_urls.is_empty() {
        config.turn_urls = a.turn_urls.clone();
    }
    if a.turn_secret.is_some() {
        config.turn_secret = a.turn_secret.clone();
    }
    if let Some(v) = a.login_per_account_per_min {
        config.login_per_account_per_min = v;
    }
    if let Some(v) = a.login_per_ip_per_min {
        config.login_per_ip_per_min = v;
    }
    if let Some(v) = a.frames_per_sec {
        config.frames_per_sec = v;
    }
    config.trust_forwarded_for |= a.trust_forwarded_for;
    config.validate()?;
    let listen = a
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("bad listen address `{listen}`"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Scripts (the xtask, tests) read the bound port from this line.
    println!("switchboard listening on http://{}", listener.local_addr()?);
    switchboard::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn tenant_cmd(config: Config, cmd: TenantCmd) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir).await?;
    match cmd {
        TenantCmd::Add { name } => {
            store.add_tenant(&name).await?;
            println!("tenant `{name}` added");
        }
        TenantCmd::List => {
            for t in store.list_tenants().await? {
                println!("{t}");
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn user_cmd(config: Config, cmd: UserCmd) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir).await?;
    match cmd {
        UserCmd::Add {
            tenant,
            user,
            display_name,
            password_stdin: _,
        } => {
            let mut pw = String::new();
            std::io::stdin()
                .read_to_string(&mut pw)
                .context("reading the password from standard input")?;
            let pw = pw.strip_suffix('\n').unwrap_or(&pw);
            let pw = pw.strip_suffix('\r').unwrap_or(pw);
            store.add_user(&tenant, &user, &display_name, pw).await?;
            println!("user `{user}` added to tenant `{tenant}`");
        }
        UserCmd::List { tenant } => {
            println!(
                "{:<20} {:<24} {:<32} STATUS",
                "TENANT", "USER", "DISPLAY NAME"
            );
            for u in store.list_users(tenant.as_deref()).await? {
                let status = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<20} {:<24} {:<32} {status}",
                    u.tenant, u.username, u.display_name
                );
            }
        }
        UserCmd::Disable { tenant, user } => {
            store.set_disabled(&tenant, &user, true).await?;
            println!("user `{user}` of tenant `{tenant}` disabled; their tokens are revoked");
        }
        UserCmd::Enable { tenant, user } => {
            store.set_disabled(&tenant, &user, false).await?;
            println!("user `{user}` of tenant `{tenant}` enabled");
        }
    }
    store.close().await;
    Ok(())
}
