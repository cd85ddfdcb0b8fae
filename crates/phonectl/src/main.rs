//! `phonectl`: the call engine, headless. For tests, benchmarks, bots and
//! operators.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use softphone_audio::device::{CpalSink, CpalSource};
use softphone_audio::{NullSink, Silence, Sink, Source, Tone, WavSink, WavSource};
use softphone_engine::api::Api;
use softphone_engine::call::CallState;
use softphone_engine::credentials::{TokenStore, account_key};
use softphone_engine::{CallAudio, Engine, EngineConfig, EngineEvent};
use softphone_protocol::{CallDirection, EndReason};

/// phonectl: make and take softphone calls from the command line.
///
/// Credentials: the session token is kept in the OS credential store after
/// `phonectl login`. Without a stored token, commands log in with the
/// password in PHONECTL_PASSWORD. Nothing else is stored.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Switchboard URL.
    #[arg(
        long,
        env = "PHONECTL_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Other nodes of the same Switchboard cluster, tried in turn when the
    /// signaling socket to --server drops or cannot be opened
    /// (repeatable, or comma-separated).
    #[arg(
        long = "fallback-server",
        env = "PHONECTL_FALLBACK_SERVERS",
        value_delimiter = ',',
        global = true
    )]
    fallback_servers: Vec<String>,
    /// Tenant name.
    #[arg(long, env = "PHONECTL_TENANT", global = true)]
    tenant: Option<String>,
    /// User name.
    #[arg(long, env = "PHONECTL_USER", global = true)]
    user: Option<String>,
    /// Endpoint id: this installation's stable id towards the switchboard
    /// [default: phonectl-<user>].
    #[arg(long, env = "PHONECTL_ENDPOINT_ID", global = true)]
    endpoint_id: Option<String>,
    /// Keep the token in memory only, not in the OS credential store.
    #[arg(long, global = true)]
    no_keyring: bool,
    /// Use only loopback ICE candidates (tests and benchmarks on one machine).
    #[arg(long, env = "PHONECTL_ICE_LOOPBACK", global = true)]
    ice_loopback: bool,
    /// Use only relayed ICE candidates: media goes through the TURN server
    /// the switchboard hands out (needs one; UDP `turn:` only).
    #[arg(long, env = "PHONECTL_ICE_RELAY", global = true)]
    ice_relay: bool,
    /// Print events as JSON lines instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Log in and keep the token in the OS credential store.
    Login {
        /// Read the password from standard input (else PHONECTL_PASSWORD).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the token and delete it from the credential store.
    Logout,
    /// Show who the stored token belongs to.
    Whoami,
    /// List the audio devices phonectl can use.
    Devices,
    /// Call a user of your tenant.
    Call {
        /// User name to call.
        target: String,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Wait for the next incoming call and answer it.
    Answer {
        /// Keep answering calls, one after another, until interrupted.
        #[arg(long)]
        auto: bool,
        #[command(flatten)]
        media: MediaArgs,
    },
    /// Show my call history, newest first.
    History {
        /// How many calls.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Args, Debug, Clone)]
struct MediaArgs {
    /// Send this WAV file (any rate, mono or stereo).
    #[arg(long, conflicts_with = "tone")]
    play: Option<PathBuf>,
    /// Send a sine tone of this frequency, in Hz.
    #[arg(long)]
    tone: Option<f32>,
    /// Record what arrives to this WAV file (48 kHz mono, 16-bit).
    #[arg(long, conflicts_with = "output_device")]
    record: Option<PathBuf>,
    /// Use a sound-card input (name from `phonectl devices`, or `default`).
    #[arg(long, conflicts_with_all = ["play", "tone"])]
    input_device: Option<String>,
    /// Use a sound-card output (name from `phonectl devices`, or `default`).
    #[arg(long)]
    output_device: Option<String>,
    /// Hang up this many seconds after the call is answered.
    #[arg(long)]
    duration: Option<f64>,
    /// Put the call on hold this many seconds after it is answered (and
    /// resume two seconds later).
    #[arg(long)]
    hold_after: Option<f64>,
    /// Echo test: greet (with --play FILE, or a short beep), then send the
    /// caller's own audio back one second later.
    #[arg(long, conflicts_with_all = ["tone", "input_device", "record", "output_device"])]
    echo: bool,
    /// Send these DTMF digits (RFC 4733) once the call is up.
    #[arg(long)]
    dtmf: Option<String>,
}

impl MediaArgs {
    fn audio(&self) -> anyhow::Result<CallAudio> {
        if self.echo {
            let greeting: Box<dyn Source> = match &self.play {
                Some(p) => Box::new(WavSource::open(p, false)?),
                None => Box::new(softphone_audio::Limit::new(
                    Box::new(Tone::new(660.0, -12.0)),
                    20,
                )),
            };
            let (sink, source) = softphone_audio::echo(50, Some(greeting));
            return Ok(CallAudio {
                source: Box::new(source),
                sink: Box::new(sink),
            });
        }
        let card = |n: &str| (n != "default").then(|| n.to_string());
        let source: Box<dyn Source> = match (&self.play, self.tone, &self.input_device) {
            (Some(p), _, _) => Box::new(WavSource::open(p, false)?),
            (None, Some(hz), _) => Box::new(Tone::new(hz, -12.0)),
            (None, None, Some(d)) => Box::new(CpalSource::open(card(d).as_deref())?),
            (None, None, None) => Box::new(Silence),
        };
        let sink: Box<dyn Sink> = match (&self.record, &self.output_device) {
            (Some(p), _) => Box::new(WavSink::create(p)?),
            (None, Some(d)) => Box::new(CpalSink::open(card(d).as_deref())?),
            (None, None) => Box::new(NullSink),
        };
        Ok(CallAudio { source, sink })
    }
}

struct Ctx {
    server: String,
    tenant: String,
    user: String,
    endpoint_id: String,
    store: TokenStore,
    json: bool,
    loopback: bool,
    relay: bool,
    fallback_servers: Vec<String>,
}

impl Ctx {
    fn account(&self) -> String {
        account_key(&self.server, &self.tenant, &self.user)
    }

    fn password(from_stdin: bool) -> anyhow::Result<Option<String>> {
        if from_stdin {
            let mut pw = String::new();
            std::io::stdin().read_to_string(&mut pw)?;
            return Ok(Some(pw.trim_end_matches(['\n', '\r']).to_string()));
        }
        Ok(std::env::var("PHONECTL_PASSWORD").ok())
    }

    /// A usable token: PHONECTL_TOKEN, the stored one, or a fresh login
    /// with PHONECTL_PASSWORD.
    async fn token(&self) -> anyhow::Result<String> {
        if let Ok(t) = std::env::var("PHONECTL_TOKEN") {
            return Ok(t);
        }
        match self.store.load(&self.account()) {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            // No credential store here (a server without a Secret Service):
            // a password in the environment still works.
            Err(e) => tracing::info!(error = %e, "no stored token"),
        }
        let Some(pw) = Self::password(false)? else {
            bail!("not logged in: run `phonectl login` or set PHONECTL_PASSWORD");
        };
        let login = Api::login(&self.server, &self.tenant, &self.user, &pw).await?;
        Ok(login.token)
    }

    async fn api(&self) -> anyhow::Result<Api> {
        Ok(Api::new(&self.server, &self.token().await?))
    }

    fn print(&self, ev: &EngineEvent) {
        if self.json {
            println!("{}", serde_json::to_string(ev).unwrap_or_default());
            return;
        }
        match ev {
            EngineEvent::Registered { user, tenant } => {
                println!(
                    "registered as {} ({}) in {tenant}",
                    user.user, user.display_name
                )
            }
            EngineEvent::Dialing { call_id, to } => println!("call {call_id}: dialing {}", to.user),
            EngineEvent::Incoming {
                call_id,
                from,
                queue,
            } => match queue {
                Some(q) => {
                    println!(
                        "incoming call {call_id} from {} ({}) via queue {}, waited {} s",
                        from.user,
                        from.display_name,
                        q.name,
                        q.waited_ms / 1000
                    );
                    // The screen-pop of a web caller, one line each.
                    for (what, v) in [("topic", &q.topic), ("email", &q.email), ("page", &q.page)] {
                        if let Some(v) = v {
                            println!("  {what}: {v}");
                        }
                    }
                    if let Some(n) = q.earlier_calls {
                        println!("  earlier calls: {n}");
                    }
                }
                None => println!(
                    "incoming call {call_id} from {} ({})",
                    from.user, from.display_name
                ),
            },
            EngineEvent::Queued {
                call_id,
                queue,
                position,
                ewt_ms,
            } => {
                println!(
                    "call {call_id}: waiting in queue {queue}, position {position}, about {} s",
                    ewt_ms.div_ceil(1000)
                )
            }
            EngineEvent::CallState { call_id, state } => println!("call {call_id}: {state:?}"),
            EngineEvent::FirstAudio { call_id } => println!("call {call_id}: audio flowing"),
            EngineEvent::Dtmf { call_id, digit } => println!("call {call_id}: DTMF {digit}"),
            EngineEvent::Stats { stats, .. } => println!(
                "stats: rtt {} ms, jitter {:.1} ms, loss {:.1} %, send {:.1} kbit/s, recv {:.1} kbit/s, MOS {:.2}",
                stats.rtt_ms.map_or("-".into(), |r| format!("{r:.1}")),
                stats.jitter_ms,
                stats.loss_pct,
                stats.send_kbps,
                stats.recv_kbps,
                stats.mos
            ),
            EngineEvent::ServerError { code, message, .. } => {
                eprintln!("server refused: {code}: {message}")
            }
            EngineEvent::Disconnected { reason } => eprintln!("disconnected: {reason}"),
            EngineEvent::Reconnecting { detail } => eprintln!("reconnecting ({detail})"),
            other => println!("{other:?}"),
        }
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PHONECTL_LOG").unwrap_or_else(|_| {
                // webrtc-rs warns about routine teardown; keep it quiet.
                tracing_subscriber::EnvFilter::new(
                    "warn,webrtc=error,webrtc_ice=error,webrtc_mdns=error",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("phonectl: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phonectl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Command::Devices) {
        println!(
            "files and generators: --play FILE.wav, --tone HZ, --record FILE.wav (default: silence in, discard out)"
        );
        match softphone_audio::device::list() {
            Ok(devices) if !devices.is_empty() => {
                println!("sound cards (--input-device / --output-device NAME, or `default`):");
                for d in devices {
                    let dir = match (d.input, d.output) {
                        (true, true) => "in/out",
                        (true, false) => "in",
                        (false, true) => "out",
                        (false, false) => "-",
                    };
                    println!(
                        "  {:<7} {}{}",
                        dir,
                        d.name,
                        if d.default { "  (default)" } else { "" }
                    );
                }
            }
            Ok(_) => println!("no sound cards found"),
            Err(e) => println!("sound cards unavailable: {e}"),
        }
        return Ok(());
    }
    let tenant = cli
        .tenant
        .clone()
        .context("--tenant (or PHONECTL_TENANT) is required")?;
    let user = cli
        .user
        .clone()
        .context("--user (or PHONECTL_USER) is required")?;
    let ctx = Ctx {
        endpoint_id: cli
            .endpoint_id
            .clone()
            .unwrap_or_else(|| format!("phonectl-{user}")),
        server: cli.server.trim_end_matches('/').to_string(),
        tenant,
        user,
        store: if cli.no_keyring {
            TokenStore::memory()
        } else {
            TokenStore::Keyring
        },
        json: cli.json,
        loopback: cli.ice_loopback,
        relay: cli.ice_relay,
        fallback_servers: cli.fallback_servers.clone(),
    };
    match cli.command {
        Command::Login { password_stdin } => {
            let pw = Ctx::password(password_stdin)?
                .context("no password: use --password-stdin or PHONECTL_PASSWORD")?;
            let login = Api::login(&ctx.server, &ctx.tenant, &ctx.user, &pw).await?;
            ctx.store.save(&ctx.account(), &login.token)?;
            println!(
                "logged in as {} ({}) in {}{}",
                login.user.user,
                login.user.display_name,
                login.tenant,
                if cli.no_keyring {
                    "; token not stored (--no-keyring)"
                } else {
                    "; token stored in the OS credential store"
                }
            );
        }
        Command::Logout => {
            if let Some(t) = ctx.store.load(&ctx.account())?
                && let Err(e) = Api::new(&ctx.server, &t).logout().await
            {
                eprintln!("the server could not be told ({e}); the token is deleted here anyway");
            }
            ctx.store.delete(&ctx.account())?;
            println!("logged out");
        }
        Command::Whoami => {
            let me = ctx.api().await?.me().await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&me)?);
            } else {
                println!(
                    "{} ({}) in tenant {}, {}",
                    me.user.user,
                    me.user.display_name,
                    me.tenant,
                    me.presence.as_str()
                );
            }
        }
        Command::History { limit } => {
            let calls = ctx.api().await?.history(limit).await?;
            if ctx.json {
                println!("{}", serde_json::to_string(&calls)?);
            } else {
                for c in calls {
                    let (dir, peer) = match c.direction {
                        CallDirection::Outgoing => ("outgoing", &c.callee.user),
                        CallDirection::Incoming => ("incoming", &c.caller.user),
                    };
                    println!(
                        "{dir:<10} {peer:<12} {:<14} {:>7.1} s{}",
                        c.end_reason.map_or("in progress", EndReason::as_str),
                        c.duration_ms.unwrap_or(0) as f64 / 1000.0,
                        if c.missed { "  MISSED" } else { "" }
                    );
                }
            }
        }
        Command::Call { target, media } => {
            let (engine, mut events) = connect(&ctx).await?;
            let call_id = engine.dial(&target, media.audio()?).await?;
            let reason = follow_call(&ctx, &engine, &mut events, &call_id, &media).await?;
            check_end(reason)?;
        }
        Command::Answer { auto, media } => {
            let (engine, mut events) = connect(&ctx).await?;
            loop {
                let call_id = loop {
                    match events.recv().await {
                        Some(ev @ EngineEvent::Incoming { .. }) => {
                            ctx.print(&ev);
                            if let EngineEvent::Incoming { call_id, .. } = ev {
                                break call_id;
                            }
                        }
                        Some(ev @ EngineEvent::Disconnected { .. }) => {
                            ctx.print(&ev);
                            bail!("signaling lost");
                        }
                        Some(ev) => ctx.print(&ev),
                        None => bail!("engine stopped"),
                    }
                };
                if let Err(e) = engine.answer(&call_id, media.audio()?).await {
                    if !auto {
                        return Err(e.into());
                    }
                    eprintln!("phonectl: could not answer {call_id}: {e}");
                    continue;
                }
                let reason = follow_call(&ctx, &engine, &mut events, &call_id, &media).await?;
                if !auto {
                    check_end(reason)?;
                    break;
                }
            }
        }
        Command::Devices => {}
    }
    Ok(())
}

async fn connect(
    ctx: &Ctx,
) -> anyhow::Result<(Engine, tokio::sync::mpsc::UnboundedReceiver<EngineEvent>)> {
    let token = ctx.token().await?;
    let mut config = EngineConfig::new(&ctx.server, &token, &ctx.endpoint_id);
    config.endpoint_name = format!(
        "phonectl on {}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into())
    );
    config.media.loopback_only = ctx.loopback;
    config.media.relay_only = ctx.relay;
    config.fallback_servers = ctx.fallback_servers.clone();
    let (engine, events) = Engine::connect(config).await?;
    Ok((engine, events))
}

/// A call that could not be set up is a failure of the command (exit
/// status 1): its media could not be negotiated, or it was lost.
fn check_end(reason: EndReason) -> anyhow::Result<()> {
    match reason {
        EndReason::Incompatible => {
            bail!("the call ended as incompatible: its media could not be negotiated")
        }
        EndReason::Failed => bail!("the call failed: its media or signaling was lost"),
        _ => Ok(()),
    }
}

/// Prints a call's events until it ends and returns why it ended; applies
/// --duration and --hold-after from the moment it is answered.
async fn follow_call(
    ctx: &Ctx,
    engine: &Engine,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    call_id: &str,
    media: &MediaArgs,
) -> anyhow::Result<EndReason> {
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    let mut hangup_at = far;
    let mut hold_at = far;
    let mut resume_at = far;
    let mut answered = false;
    let mut dtmf_sent = false;
    loop {
        let next = hangup_at.min(hold_at).min(resume_at);
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                if now >= hangup_at {
                    engine.hangup(call_id);
                    hangup_at = far;
                } else if now >= hold_at {
                    engine.set_hold(call_id, true).await?;
                    hold_at = far;
                    resume_at = now + Duration::from_secs(2);
                } else if now >= resume_at {
                    engine.set_hold(call_id, false).await?;
                    resume_at = far;
                }
                continue;
            }
        };
        let Some(ev) = ev else {
            bail!("engine stopped")
        };
        ctx.print(&ev);
        match &ev {
            EngineEvent::CallState { call_id: id, state } if id == call_id => {
                if matches!(state, CallState::Connecting) && !answered {
                    answered = true;
                    let now = tokio::time::Instant::now();
                    if let Some(d) = media.duration {
                        hangup_at = now + Duration::from_secs_f64(d);
                    }
                    if let Some(h) = media.hold_after {
                        hold_at = now + Duration::from_secs_f64(h);
                    }
                }
                if matches!(state, CallState::Active)
                    && let Some(d) = media.dtmf.as_deref().filter(|_| !dtmf_sent)
                {
                    dtmf_sent = true;
                    engine.send_dtmf(call_id, d).await?;
                }
                if let CallState::Ended { reason } = state {
                    return Ok(*reason);
                }
            }
            EngineEvent::Disconnected { .. } => bail!("signaling lost"),
            _ => {}
        }
    }
}
