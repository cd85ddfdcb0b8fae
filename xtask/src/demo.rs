//! `cargo xtask demo`: a switchboard on loopback with an embedded SQLite
//! database in a temp directory, tenant `demo` with agents alice and bob and
//! an `echo` account, and an echo-test bot (a phonectl that answers every
//! call, greets with a beep, and returns the caller's audio one second
//! later). `--headless` then calls the echo test from alice and prints a
//! one-screen summary; without it, the demo waits for you to call.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use softphone_audio::{FRAME, Source, WavSource, analysis};
use softphone_protocol::{LoginRequest, LoginResponse};

const PASSWORD: &str = "demo-password";

/// A child process killed when dropped (Ctrl-C reaches it directly too).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin(name: &str) -> PathBuf {
    PathBuf::from("target/debug").join(name)
}

fn admin(data: &Path, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new(bin("switchboard"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("running switchboard")?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(s.as_bytes())?;
    }
    drop(child.stdin.take());
    if !child.wait()?.success() {
        bail!("switchboard {} failed", args.join(" "));
    }
    Ok(())
}

fn phonectl(url: &str, user: &str) -> Command {
    let mut c = Command::new(bin("phonectl"));
    c.args([
        "--server",
        url,
        "--tenant",
        "demo",
        "--user",
        user,
        "--no-keyring",
    ])
    .env("PHONECTL_PASSWORD", PASSWORD);
    c
}

/// Builds, provisions and starts everything; returns whether the demo
/// (headless: the scripted call) succeeded.
pub fn run(headless: bool) -> Result<bool> {
    crate::setup()?;
    let mut packages = vec!["-p", "switchboard", "-p", "phonectl"];
    if !headless {
        crate::ui_build()?;
        packages.extend(["-p", "softphone"]);
    }
    println!(
        "demo: building {}…",
        packages
            .iter()
            .filter(|p| **p != "-p")
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ok = crate::cargo()
        .args(["build", "-q"])
        .args(&packages)
        .status()?
        .success();
    if !ok {
        bail!("build failed");
    }
    let dir = std::env::temp_dir().join(format!("softphone-demo-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    admin(&data, &["tenant", "add", "demo"], None)?;
    for (user, name) in [
        ("alice", "Alice (agent)"),
        ("bob", "Bob (agent)"),
        ("echo", "Echo test"),
        ("customer", "Zoe (customer)"),
    ] {
        admin(
            &data,
            &[
                "user",
                "add",
                "--tenant",
                "demo",
                "--user",
                user,
                "--display-name",
                name,
                "--password-stdin",
            ],
            Some(PASSWORD),
        )?;
    }
    // The support line: alice and bob answer it (bob is a bot that greets
    // and echoes); customers call it from the web widget. Alice administers
    // the tenant (webhooks).
    admin(
        &data,
        &[
            "user", "role", "--tenant", "demo", "--user", "alice", "--role", "admin",
        ],
        None,
    )?;
    admin(
        &data,
        &[
            "queue",
            "add",
            "--tenant",
            "demo",
            "--name",
            "support",
            "--number",
            "2001",
            "--published",
            "--ring-secs",
            "10",
            "--wrap-up-secs",
            "5",
        ],
        None,
    )?;
    for agent in ["alice", "bob"] {
        admin(
            &data,
            &[
                "queue",
                "member-add",
                "--tenant",
                "demo",
                "--queue",
                "support",
                "--user",
                agent,
            ],
            None,
        )?;
    }
    let mut server = Command::new(bin("switchboard"))
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting switchboard")?;
    let mut line = String::new();
    BufReader::new(server.stdout.take().context("stdout")?).read_line(&mut line)?;
    let server = Proc(server);
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    let loopback: &[&str] = if headless { &["--ice-loopback"] } else { &[] };
    let mut bot = phonectl(&url, "echo")
        .args(loopback)
        .args(["answer", "--auto", "--echo"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the echo bot")?;
    let mut bot_out = BufReader::new(bot.stdout.take().context("stdout")?);
    line.clear();
    while bot_out.read_line(&mut line)? > 0 && !line.starts_with("registered") {
        line.clear();
    }
    std::thread::spawn(move || for _ in bot_out.lines() {});
    let _bot = Proc(bot);
    // Bob, the support line's bot: answers, greets with a beep, echoes.
    let mut bob = phonectl(&url, "bob")
        .args(loopback)
        .args(["answer", "--auto", "--echo"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting bob's bot")?;
    let mut bob_out = BufReader::new(bob.stdout.take().context("stdout")?);
    line.clear();
    while bob_out.read_line(&mut line)? > 0 && !line.starts_with("registered") {
        line.clear();
    }
    std::thread::spawn(move || for _ in bob_out.lines() {});
    let _bob = Proc(bob);
    // A webhook receiver: the events of the tenant's calls, as a CRM would
    // get them.
    let hooks = webhook_receiver()?;
    add_webhook(&url, &hooks.url)?;
    let widget = format!("{url}/v1/widget-demo/demo/support");

    if !headless {
        let app = open_app(&url, &dir)?;
        println!();
        println!("Softphone demo is running (Ctrl-C stops everything).");
        println!("  switchboard   {url}   (data in {})", data.display());
        println!("  accounts      tenant demo: alice, bob, echo — password {PASSWORD}");
        println!("  echo test     answers every call, beeps, then plays you back one second later");
        println!("  desktop app   signed in as alice{}", app.note);
        println!();
        println!(
            "  support line  queue `support` (2001): alice and bob (a bot that greets and echoes)"
        );
        println!("  web widget    {widget}");
        println!(
            "                (an example shop page; press Call us to call the support line as a customer)"
        );
        println!();
        println!("In the app, type `echo` (or pick Echo test in the directory) and press Call.");
        println!("Sign in as bob elsewhere with:");
        println!(
            "  PHONECTL_PASSWORD={PASSWORD} target/debug/phonectl --server {url} --tenant demo --user bob \\\n      call alice --input-device default --output-device default --duration 20"
        );
        let mut app = app;
        app.proc.0.wait()?;
        drop(server);
        return Ok(true);
    }

    // Headless: alice calls the echo test with a 440 Hz tone for 6 s.
    let heard_path = dir.join("heard.wav");
    let started = Instant::now();
    let mut call = phonectl(&url, "alice")
        .args(loopback)
        .args(["--json", "call", "echo", "--tone", "440", "--duration", "6"])
        .arg("--record")
        .arg(&heard_path)
        .stdout(Stdio::piped())
        .spawn()
        .context("placing the call")?;
    let out = BufReader::new(call.stdout.take().context("stdout")?);
    let (mut setup_ms, mut last_stats, mut end_reason) = (None, serde_json::Value::Null, None);
    for line in out.lines() {
        let line = line?;
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match ev["event"].as_str() {
            Some("call_state") if ev["state"]["state"] == "active" && setup_ms.is_none() => {
                setup_ms = Some(started.elapsed().as_millis());
            }
            Some("call_state") if ev["state"]["state"] == "ended" => {
                end_reason = ev["state"]["reason"].as_str().map(str::to_string);
            }
            Some("stats") => last_stats = ev["stats"].clone(),
            _ => {}
        }
    }
    let ok = call.wait()?.success();
    let mut heard = Vec::new();
    if let Ok(mut wav) = WavSource::open(&heard_path, false) {
        let mut f = vec![0.0f32; FRAME];
        while wav.read_frame(&mut f) {
            heard.extend_from_slice(&f);
        }
    }
    let freq = |from_s: f64, to_s: f64| {
        let (a, b) = ((from_s * 48_000.0) as usize, (to_s * 48_000.0) as usize);
        heard
            .get(a..b.min(heard.len()))
            .map(|s| analysis::dominant_frequency(s, 48_000.0, 100.0, 2_000.0))
    };
    let tail_hz = freq(2.5, 5.5);
    let echoed = tail_hz.is_some_and(|f| (f - 440.0).abs() < 5.0);
    let num = |k: &str, unit: &str| {
        last_stats[k]
            .as_f64()
            .map_or("-".to_string(), |v| format!("{v:.1}{unit}"))
    };
    println!();
    println!("Softphone demo (headless): alice called the echo test through a local switchboard.");
    println!(
        "  call setup (dial → media up)   {}",
        setup_ms.map_or("-".into(), |m| format!("{m} ms"))
    );
    println!(
        "  ended                          {}",
        end_reason.as_deref().unwrap_or("-")
    );
    println!("  MOS (E-model)                  {}", num("mos", ""));
    println!(
        "  RTT / jitter / loss            {} / {} / {}",
        num("rtt_ms", " ms"),
        num("jitter_ms", " ms"),
        num("loss_pct", " %")
    );
    println!(
        "  sent / received (Opus payload) {} / {}",
        num("send_kbps", " kbit/s"),
        num("recv_kbps", " kbit/s")
    );
    println!(
        "  heard                          {} s recorded; the echo bot's beep, then {}",
        heard.len() / 48_000,
        match tail_hz {
            Some(f) if echoed => format!("our 440 Hz tone played back ({f:.0} Hz)"),
            Some(f) => format!("{f:.0} Hz (expected our 440 Hz tone back)"),
            None => "nothing".into(),
        }
    );
    println!("  recording                      {}", heard_path.display());

    // The support line: the customer calls queue 2001; bob's bot answers.
    let support = phonectl(&url, "customer")
        .args(loopback)
        .args(["--json", "call", "2001", "--tone", "440", "--duration", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .context("calling the support line")?;
    let out = support.wait_with_output()?;
    let mut queued = None;
    let mut support_end = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match ev["event"].as_str() {
            Some("queued") if queued.is_none() => {
                queued = Some((ev["position"].as_u64(), ev["ewt_ms"].as_u64()));
            }
            Some("call_state") if ev["state"]["state"] == "ended" => {
                support_end = ev["state"]["reason"].as_str().map(str::to_string);
            }
            _ => {}
        }
    }
    let token = login(&url, "alice")?;
    let stats: serde_json::Value = ureq::get(format!("{url}/v1/queues/support/stats"))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .context("reading the queue's figures")?
        .body_mut()
        .read_json()
        .context("reading the queue's figures")?;
    // The last events are delivered within a second or two of the call.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while Instant::now() < deadline && !hooks.types().iter().any(|t| t == "call.ended") {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let events = hooks.types();
    println!();
    println!("The customer called the support line (2001); bob's bot answered.");
    println!(
        "  in line                        {}",
        queued.map_or("-".into(), |(p, e)| format!(
            "position {}, about {} s",
            p.unwrap_or(0),
            e.unwrap_or(0).div_ceil(1000)
        ))
    );
    println!(
        "  ended                          {}",
        support_end.as_deref().unwrap_or("-")
    );
    println!(
        "  queue today                    {} entered, {} answered, {} abandoned, service level {}",
        stats["today"]["entered"],
        stats["today"]["answered"],
        stats["today"]["abandoned"],
        stats["today"]["service_level_pct"]
            .as_f64()
            .map_or("-".into(), |v| format!("{v:.0} %"))
    );
    println!("  webhook events                 {}", events.join(", "));
    println!(
        "  web widget                     {widget} (open it in a browser while the demo runs)"
    );
    let support_ok =
        support_end.as_deref() == Some("completed") && events.iter().any(|t| t == "call.answered");
    Ok(ok && echoed && end_reason.as_deref() == Some("completed") && support_ok)
}

/// A webhook receiver on 127.0.0.1: keeps each event's `type`.
struct Hooks {
    url: String,
    types: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Hooks {
    fn types(&self) -> Vec<String> {
        self.types.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Starts a minimal HTTP/1.1 receiver of webhook POSTs (one request per
/// connection, answered `200`).
fn webhook_receiver() -> Result<Hooks> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let types = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = types.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; length.min(1 << 20)];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                && let (Some(t), Ok(mut types)) = (v["type"].as_str(), keep.lock())
            {
                types.push(t.to_string());
            }
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    Ok(Hooks { url, types })
}

/// Registers `receiver` as a webhook of tenant demo (as alice, an admin).
fn add_webhook(url: &str, receiver: &str) -> Result<()> {
    let token = login(url, "alice")?;
    ureq::post(format!("{url}/v1/admin/webhooks"))
        .header("authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({ "url": receiver }))
        .context("adding the demo's webhook")?;
    Ok(())
}

/// The running desktop app, and how it is shown.
struct RunningApp {
    proc: Proc,
    _display: Option<Proc>,
    note: String,
}

/// Logs `user` in over HTTP (`POST /v1/login`) and returns their token.
fn login(url: &str, user: &str) -> Result<String> {
    let request = LoginRequest {
        tenant: "demo".into(),
        user: user.into(),
        password: PASSWORD.into(),
    };
    let answer: LoginResponse = ureq::post(format!("{url}/v1/login"))
        .send_json(&request)
        .with_context(|| format!("logging {user} in at {url}"))?
        .body_mut()
        .read_json()
        .context("reading the login answer")?;
    Ok(answer.token)
}

/// Starts the desktop app signed in as alice (a provisioned session: the
/// token is handed over in the environment and never stored). Without a
/// display (a server, CI), it starts Xvfb and says so.
fn open_app(url: &str, dir: &Path) -> Result<RunningApp> {
    let token = login(url, "alice")?;
    let mut display = None;
    let mut note = String::new();
    let mut cmd = Command::new(bin("softphone"));
    if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
        let n = (90..140)
            .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
            .context("no free X display number")?;
        let child = Command::new("Xvfb")
            .args([
                format!(":{n}").as_str(),
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("no display here, and Xvfb would not start (cargo xtask setup installs it)")?;
        for _ in 0..100 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        display = Some(Proc(child));
        cmd.env("DISPLAY", format!(":{n}"));
        note = format!(
            " — no display found, so on a virtual one (DISPLAY=:{n}; e.g. `DISPLAY=:{n} import -window root shot.png`)"
        );
    }
    let child = cmd
        .env("SOFTPHONE_SERVER", url)
        .env("SOFTPHONE_TENANT", "demo")
        .env("SOFTPHONE_USER", "alice")
        .env("SOFTPHONE_TOKEN", token)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("SOFTPHONE_LOG", "warn")
        .spawn()
        .context("starting the desktop app")?;
    Ok(RunningApp {
        proc: Proc(child),
        _display: display,
        note,
    })
}
