//! Helpers of the desktop end-to-end test and the desktop memory bench:
//! Xvfb, phonectl peers, and a W3C WebDriver client for tauri-driver.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use softphone_e2e::PW;
use softphone_e2e::cleanup::Guarded;
use softphone_e2e::webdriver::{Client, Element, Locator, Session, free_port};

/// A process the test started, stopped with everything it started when
/// dropped (also when the test fails).
pub type Proc = Guarded;

pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// `phonectl`, built next to this test (the xtask builds it first).
pub fn phonectl() -> PathBuf {
    softphone_e2e::binary("phonectl")
}

/// Starts Xvfb on a free display number; returns it and the display name.
pub fn xvfb() -> (Proc, String) {
    for n in 90..140 {
        if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            || Path::new(&format!("/tmp/.X{n}-lock")).exists()
        {
            continue;
        }
        let display = format!(":{n}");
        // Stopped with SIGTERM first, Xvfb removes its lock file and socket.
        let xvfb = Guarded::spawn(
            Command::new("Xvfb")
                .args([
                    display.as_str(),
                    "-screen",
                    "0",
                    "1280x900x24",
                    "-nolisten",
                    "tcp",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("Xvfb (install xvfb: cargo xtask setup)");
        let socket = format!("/tmp/.X11-unix/X{n}");
        for _ in 0..100 {
            if Path::new(&socket).exists() {
                return (xvfb, display);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Xvfb did not start on {display}");
    }
    panic!("no free X display number");
}

/// A phonectl process; its `--json` event lines are collected.
pub struct Peer {
    _proc: Proc,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    pub fn start(base: &str, user: &str, args: &[&str]) -> Self {
        let mut child = Guarded::spawn(
            Command::new(phonectl())
                .args([
                    "--server",
                    base,
                    "--tenant",
                    "acme",
                    "--user",
                    user,
                    "--no-keyring",
                    "--json",
                    "--ice-loopback",
                ])
                .args(args)
                .env("PHONECTL_PASSWORD", PW)
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("phonectl");
        let out = child.child().stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                l2.lock().expect("lines").push(line);
            }
        });
        Self {
            _proc: child,
            lines,
        }
    }

    /// The phonectl process id.
    pub fn pid(&self) -> u32 {
        self._proc.id()
    }

    /// Every line phonectl printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    pub fn saw(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(needle))
    }

    pub async fn wait_for(&self, needle: &str, secs: u64) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            if self.saw(needle) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "phonectl never printed {needle}: {:?}",
            self.lines.lock().expect("lines")
        );
    }
}

/// A W3C WebDriver session on the app, through tauri-driver (which starts
/// WebKitWebDriver, which starts the app).
pub struct Driver {
    session: Session,
    display: String,
}

impl Driver {
    /// Starts tauri-driver with `env` (which names the X `DISPLAY`) and opens
    /// a session on the app at `app`.
    pub async fn start(app: &Path, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let native = free_port();
        let mut cmd = Command::new("tauri-driver");
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
            "--native-driver",
            "/usr/bin/WebKitWebDriver",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let caps = json!({
            "tauri:options": {"application": app.display().to_string()}
        });
        Self {
            session: Session::start(&mut cmd, port, caps, vec![]).await,
            display: env
                .iter()
                .find(|(k, _)| *k == "DISPLAY")
                .map(|(_, v)| v.clone())
                .expect("the driver's environment names the X DISPLAY"),
        }
    }

    fn client(&self) -> &Client {
        self.session.client()
    }

    /// Runs `script` in the app's page; what it returns.
    pub async fn js(&self, script: &str) -> Value {
        self.client()
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("desktop app: script failed ({e}): {script}"))
    }

    /// The element `css` selects.
    pub async fn element(&self, css: &str) -> Element {
        self.client()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Clicks `css` as a user would (WebDriver element click).
    pub async fn click(&self, css: &str) {
        self.wait_visible(css).await;
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Replaces the text of an input with `text`, typed key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.element(css).await;
        input
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        input
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type {css}: {e}"));
    }

    /// Waits until the script returns a truthy value (20 s at most).
    pub async fn until(&self, what: &str, script: &str) -> Value {
        self.until_explained(what, script, String::new).await
    }

    /// [`Driver::until`], and on a timeout the failure also says what
    /// `context` returns (e.g. what a peer printed).
    pub async fn until_explained(
        &self,
        what: &str,
        script: &str,
        context: impl Fn() -> String,
    ) -> Value {
        let t = Instant::now();
        loop {
            let v = self.js(script).await;
            let ok = match &v {
                Value::Bool(b) => *b,
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(_) | Value::Array(_) | Value::Object(_) => true,
            };
            if ok && v.get("error").is_none() {
                return v;
            }
            if t.elapsed() > Duration::from_secs(20) {
                let page = self
                    .js("return document.getElementById('app').innerText")
                    .await;
                panic!(
                    "desktop app: no {what} within 20 s; got {v}; page: {page}; {}",
                    context()
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until `css` selects an element that is shown.
    pub async fn wait_visible(&self, css: &str) {
        let script = format!(
            "const e = document.querySelector({css:?}); return !!e && e.offsetParent !== null;"
        );
        self.until(&format!("visible {css}"), &script).await;
    }

    /// The text content of `css` (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.js(&format!(
            "return document.querySelector({css:?})?.textContent ?? ''"
        ))
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Saves a PNG of the window's content to docs/screenshots/`name`.png.
    /// The pixels come from the X server, not from WebDriver: WebKitWebDriver
    /// cannot take a screenshot when compositing is off, as the app has it.
    pub async fn screenshot(&self, name: &str) {
        // WebKit paints asynchronously: let the last DOM change reach the screen.
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (x, y, width, height) = self.client().get_window_rect().await.expect("window rect");
        let png = capture_x(
            &self.display,
            (x as f64, y as f64),
            (width as f64, height as f64),
        );
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the session (the app quits), then stops tauri-driver and
    /// WebKitWebDriver.
    pub async fn quit(self) {
        self.session.close().await;
    }
}

/// A PNG (8-bit RGB) of the root window's area at `(x, y)` of `(width,
/// height)` pixels on X display `display`, clipped to the screen. Expects the
/// 24-bit TrueColor screen Xvfb is started with here (32 bits per pixel, BGRX).
fn capture_x(display: &str, (x, y): (f64, f64), (w, h): (f64, f64)) -> Vec<u8> {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
    let (conn, screen) = x11rb::connect(Some(display)).expect("X display");
    let root = &conn.setup().roots[screen];
    let x = x.max(0.0) as i16;
    let y = y.max(0.0) as i16;
    let w = (w as u16).min(root.width_in_pixels.saturating_sub(x as u16));
    let h = (h as u16).min(root.height_in_pixels.saturating_sub(y as u16));
    let img = conn
        .get_image(ImageFormat::Z_PIXMAP, root.root, x, y, w, h, !0)
        .expect("GetImage")
        .reply()
        .expect("GetImage reply");
    assert_eq!(img.depth, 24, "expected a 24-bit screen");
    assert_eq!(
        img.data.len(),
        w as usize * h as usize * 4,
        "expected 32 bpp"
    );
    let rgb: Vec<u8> = img
        .data
        .chunks_exact(4)
        .flat_map(|bgrx| [bgrx[2], bgrx[1], bgrx[0]])
        .collect();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, u32::from(w), u32::from(h));
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .expect("PNG header")
        .write_image_data(&rgb)
        .expect("PNG data");
    out
}
