//! `switchboard`: the signaling server binary and its admin commands.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use serde::Serialize;
use switchboard::acd::Strategy;
use switchboard::store::{QueueSpec, Role};
use switchboard::{Config, LogFormat, Store};

/// Switchboard: signaling server of the softphone.
///
/// Serves the HTTP API and the WebSocket signaling route under /v1, keeps
/// accounts and call detail records in an embedded SQLite file. Run it behind
/// a TLS-terminating reverse proxy in production.
///
/// Every option can also be set through the environment (SWITCHBOARD_<NAME>,
/// e.g. SWITCHBOARD_LISTEN) or the TOML file given with --config (keys named
/// like the options, e.g. ring_timeout_secs); flags win over the
/// environment, which wins over the file.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options of every command. Serialized, they are the flags-and-environment
/// layer of the configuration (absent values leave the file's or the
/// default).
#[derive(Args, Debug, Clone, Serialize)]
struct Common {
    /// Directory of the SQLite database [default: the OS data dir, e.g.
    /// ~/.local/share/switchboard].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// The store: sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    /// (`?host=/dir` for a unix socket) [default: switchboard.db in the
    /// data dir].
    #[arg(long, env = "SWITCHBOARD_DATABASE", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    /// TOML configuration file (keys as in README.md, "Running Switchboard").
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true)]
    #[serde(skip)]
    config: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the API and signaling (the default).
    Serve(Box<ServeArgs>),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage queues (support lines callers dial by name or number).
    #[command(subcommand)]
    Queue(QueueCmd),
}

/// Options of `serve`, named as the TOML keys. Serialized, they join
/// [`Common`] in the flags-and-environment layer.
#[derive(Parser, Debug, Clone, Serialize)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<std::net::SocketAddr>,
    /// Login token lifetime in seconds [default: 86400].
    #[arg(long, env = "SWITCHBOARD_TOKEN_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ttl_secs: Option<u64>,
    /// Seconds an invite rings before it ends as no_answer [default: 45].
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ring_timeout_secs: Option<u64>,
    /// Seconds a call survives a party's dropped socket [default: 30].
    #[arg(long, env = "SWITCHBOARD_RECONNECT_GRACE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnect_grace_secs: Option<u64>,
    /// This node's name, unique among the nodes sharing a database and
    /// stable across restarts [default: the host name].
    #[arg(long, env = "SWITCHBOARD_NODE_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_name: Option<String>,
    /// Seconds between this node's heartbeats in the store [default: 5].
    #[arg(long, env = "SWITCHBOARD_NODE_HEARTBEAT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_heartbeat_secs: Option<u64>,
    /// Seconds without a heartbeat after which a node is gone and its
    /// calls are failed by the others [default: 15].
    #[arg(long, env = "SWITCHBOARD_NODE_STALE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_stale_secs: Option<u64>,
    /// Keepalive period told to clients, seconds [default: 20].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_secs: Option<u64>,
    /// STUN URL handed to clients (repeatable; comma-separated in the env).
    #[arg(
        long = "stun-url",
        env = "SWITCHBOARD_STUN_URLS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stun_urls: Vec<String>,
    /// TURN URL handed to clients (repeatable; needs --turn-secret).
    #[arg(
        long = "turn-url",
        env = "SWITCHBOARD_TURN_URLS",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    turn_urls: Vec<String>,
    /// Shared secret with the TURN server (coturn static-auth-secret).
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds [default: 3600].
    #[arg(long, env = "SWITCHBOARD_TURN_TTL_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    turn_ttl_secs: Option<u64>,
    /// Logins allowed per account per minute [default: 10].
    #[arg(long, env = "SWITCHBOARD_LOGIN_PER_ACCOUNT_PER_MIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    login_per_account_per_min: Option<u32>,
    /// Logins allowed per client IP per minute [default: 60].
    #[arg(long, env = "SWITCHBOARD_LOGIN_PER_IP_PER_MIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    login_per_ip_per_min: Option<u32>,
    /// Frames a socket may send per second [default: 50].
    #[arg(long, env = "SWITCHBOARD_FRAMES_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_per_sec: Option<u32>,
    /// WebSocket upgrades admitted per second [default: 1000].
    #[arg(long, env = "SWITCHBOARD_WS_ADMISSIONS_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_admissions_per_sec: Option<u32>,
    /// WebSocket upgrades admitted per second from one client IP
    /// [default: 200].
    #[arg(long, env = "SWITCHBOARD_WS_ADMISSIONS_PER_IP_PER_SEC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_admissions_per_ip_per_sec: Option<u32>,
    /// Take client IPs from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(long, env = "SWITCHBOARD_TRUST_FORWARDED_FOR")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    trust_forwarded_for: bool,
    /// Bearer token GET /v1/metrics requires; without it metrics are off.
    #[arg(long, env = "SWITCHBOARD_METRICS_TOKEN", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics_token: Option<String>,
    /// Log format [default: text].
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    /// The options of a plain `switchboard` (no subcommand): `serve` with no
    /// flags, so only the environment sets them.
    fn from_env() -> Result<Self, clap::Error> {
        let cmd = ServeArgs::command().no_binary_name(true);
        let matches = cmd.try_get_matches_from(std::iter::empty::<String>())?;
        ServeArgs::from_arg_matches(&matches)
    }
}

/// The flags-and-environment layer: the common options and, when serving,
/// those of `serve`.
#[derive(Serialize)]
struct Overrides<'a> {
    #[serde(flatten)]
    common: &'a Common,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    serve: Option<&'a ServeArgs>,
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
    /// Set a user's role: `agent` only calls; `supervisor` also watches the
    /// tenant's queues and agents; `admin` also manages the queues, webhooks
    /// and widget through the admin HTTP API.
    Role {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// User name.
        #[arg(long)]
        user: String,
        /// `agent`, `supervisor` or `admin`.
        #[arg(long, value_parser = ["agent", "supervisor", "admin"])]
        role: String,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCmd {
    /// Add a queue with no members.
    ///
    /// Example: switchboard queue add --tenant acme --name support
    ///   --number 2001 --strategy longest_idle --ring-secs 20
    Add {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// What callers dial: 1–64 of A–Z a–z 0–9 - _ . @, not a user's name.
        #[arg(long)]
        name: String,
        /// An extension callers may dial instead: 2–15 digits.
        #[arg(long)]
        number: Option<String>,
        /// longest_idle, round_robin or ring_all.
        #[arg(long, default_value = "longest_idle", value_parser = ["longest_idle", "round_robin", "ring_all"])]
        strategy: String,
        /// Seconds one offer rings before the next agent (5–300).
        #[arg(long, default_value_t = 20)]
        ring_secs: u32,
        /// Seconds a caller waits at most (10–86400).
        #[arg(long, default_value_t = 300)]
        max_wait_secs: u32,
        /// Queue the caller moves to at the maximum wait; without it the
        /// call ends as no_answer.
        #[arg(long)]
        overflow_queue: Option<String>,
        /// Told to a caller whose call ends at the maximum wait.
        #[arg(long)]
        max_wait_message: Option<String>,
        /// Seconds of after-call work after each queue call (0–3600).
        #[arg(long, default_value_t = 30)]
        wrap_up_secs: u32,
        /// Offers in a row an agent lets lapse or declines before being set
        /// away (1–20).
        #[arg(long, default_value_t = 3)]
        lapse_limit: u32,
        /// Business hours, e.g. "mon-fri 09:00-18:00; sat 10:00-14:00";
        /// without them the queue is always open.
        #[arg(long)]
        hours: Option<String>,
        /// IANA time zone of the hours, e.g. Europe/Paris [default: UTC].
        #[arg(long)]
        timezone: Option<String>,
        /// Told to callers outside the business hours.
        #[arg(long)]
        closed_message: Option<String>,
        /// Customers may call it from the tenant's web widget.
        #[arg(long)]
        published: bool,
    },
    /// List the queues of a tenant with their members.
    List {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
    },
    /// Remove a queue.
    Remove {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Queue name.
        #[arg(long)]
        name: String,
    },
    /// Make an agent a member of a queue.
    MemberAdd {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Queue name.
        #[arg(long)]
        queue: String,
        /// User name of the agent.
        #[arg(long)]
        user: String,
    },
    /// Take an agent out of a queue.
    MemberRemove {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Queue name.
        #[arg(long)]
        queue: String,
        /// User name of the agent.
        #[arg(long)]
        user: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serve = match &cli.command {
        Some(Command::Serve(a)) => Some(a.as_ref().clone()),
        None => Some(ServeArgs::from_env()?),
        Some(_) => None,
    };
    let overrides = Overrides {
        common: &cli.common,
        serve: serve.as_ref(),
    };
    let config = Config::layered(cli.common.config.as_deref(), overrides)?;
    init_logging(config.log_format);

    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        None | Some(Command::Serve(_)) => rt.block_on(serve_main(config)),
        Some(Command::Tenant(t)) => rt.block_on(tenant_cmd(config, t)),
        Some(Command::User(u)) => rt.block_on(user_cmd(config, u)),
        Some(Command::Queue(q)) => rt.block_on(queue_cmd(config, q)),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve_main(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let addr = config.listen;
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
    let store = Store::connect(&config.store_database()?).await?;
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
    let store = Store::connect(&config.store_database()?).await?;
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
                "{:<20} {:<24} {:<32} {:<6} STATUS",
                "TENANT", "USER", "DISPLAY NAME", "ROLE"
            );
            for u in store.list_users(tenant.as_deref()).await? {
                let status = if u.disabled { "disabled" } else { "active" };
                println!(
                    "{:<20} {:<24} {:<32} {:<6} {status}",
                    u.tenant, u.username, u.display_name, u.role
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
        UserCmd::Role { tenant, user, role } => {
            store.set_role(&tenant, &user, Role::parse(&role)).await?;
            println!("user `{user}` of tenant `{tenant}` is now {role}");
        }
    }
    store.close().await;
    Ok(())
}

/// `queue member-add` (`member`) or `queue member-remove`.
async fn member_cmd(
    store: &Store,
    tenant: &str,
    queue: &str,
    user: &str,
    member: bool,
) -> anyhow::Result<()> {
    let t = store.tenant_id(tenant).await?;
    store.set_queue_member(t, queue, user, member).await?;
    if member {
        println!("`{user}` is a member of queue `{queue}`");
    } else {
        println!("`{user}` is no longer a member of queue `{queue}`");
    }
    Ok(())
}

async fn queue_cmd(config: Config, cmd: QueueCmd) -> anyhow::Result<()> {
    let store = Store::connect(&config.store_database()?).await?;
    match cmd {
        QueueCmd::Add {
            tenant,
            name,
            number,
            strategy,
            ring_secs,
            max_wait_secs,
            overflow_queue,
            max_wait_message,
            wrap_up_secs,
            lapse_limit,
            hours,
            timezone,
            closed_message,
            published,
        } => {
            let spec = QueueSpec {
                name: name.clone(),
                number,
                strategy: Strategy::parse(&strategy).context("unknown strategy")?,
                ring_secs,
                max_wait_secs,
                overflow_queue,
                max_wait_message,
                wrap_up_secs,
                lapse_limit,
                hours,
                timezone,
                closed_message,
                published,
            };
            let t = store.tenant_id(&tenant).await?;
            store.add_queue(t, &spec).await?;
            println!("queue `{name}` added to tenant `{tenant}`");
        }
        QueueCmd::List { tenant } => {
            let t = store.tenant_id(&tenant).await?;
            println!(
                "{:<20} {:<8} {:<13} {:>5} {:>8} {:>7}  MEMBERS",
                "QUEUE", "NUMBER", "STRATEGY", "RING", "MAX WAIT", "WRAP-UP"
            );
            for q in store.queues(t).await? {
                let s = &q.spec;
                println!(
                    "{:<20} {:<8} {:<13} {:>4}s {:>7}s {:>6}s  {}",
                    s.name,
                    s.number.as_deref().unwrap_or("-"),
                    s.strategy.as_str(),
                    s.ring_secs,
                    s.max_wait_secs,
                    s.wrap_up_secs,
                    q.members.join(" ")
                );
            }
        }
        QueueCmd::Remove { tenant, name } => {
            let t = store.tenant_id(&tenant).await?;
            store.remove_queue(t, &name).await?;
            println!("queue `{name}` removed from tenant `{tenant}`");
        }
        QueueCmd::MemberAdd {
            tenant,
            queue,
            user,
        } => member_cmd(&store, &tenant, &queue, &user, true).await?,
        QueueCmd::MemberRemove {
            tenant,
            queue,
            user,
        } => member_cmd(&store, &tenant, &queue, &user, false).await?,
    }
    store.close().await;
    Ok(())
}
