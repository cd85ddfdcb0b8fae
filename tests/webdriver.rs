//! A W3C WebDriver session and the driver process behind it, for the
//! browser interop test (chromedriver driving headless Chromium) and the
//! desktop tests (tauri-driver proxying to WebKitWebDriver, driving the
//! app). The protocol is spoken by one client crate, `fantoccini`; this
//! module only owns the processes and files around it.
//!
//! Lifetime: [`Session::start`] spawns the driver as a
//! [`Guarded`](crate::cleanup::Guarded) process and opens a session;
//! [`Session::close`] ends the session (the driver quits the browser or the
//! app itself) and then stops the driver. When a test fails before that,
//! dropping the `Session` stops the driver and everything it started (the
//! browser's or the app's whole process tree) and removes the directories
//! handed to it, such as a browser profile.

use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::ClientBuilder;
use fantoccini::error::NewSessionError;
use hyper_util::client::legacy::connect::HttpConnector;

/// The client crate's types the tests use, so that the desktop tests (in
/// the app's package) need no dependency of their own on it.
pub use fantoccini::{Client, Locator, elements::Element};

use crate::cleanup::Guarded;

/// How long a driver may take to serve WebDriver on its port.
const DRIVER_START: Duration = Duration::from_secs(20);

/// An open WebDriver session.
///
/// Fields drop in order: the client, then the driver process tree, then the
/// directories it used.
pub struct Session {
    client: Client,
    driver: Guarded,
    _dirs: Vec<tempfile::TempDir>,
}

impl Session {
    /// Spawns `driver` (a WebDriver server told to listen on `port` of
    /// 127.0.0.1), waits until it serves, and opens a session with
    /// `capabilities` (the `alwaysMatch` set: `browserName`,
    /// `goog:chromeOptions`, `tauri:options`…). `dirs` are removed once the
    /// driver and what it started have stopped.
    ///
    /// Panics (it is test code) when the driver does not start or refuses
    /// the session.
    pub async fn start(
        driver: &mut Command,
        port: u16,
        capabilities: serde_json::Value,
        dirs: Vec<tempfile::TempDir>,
    ) -> Self {
        let program = driver.get_program().to_string_lossy().into_owned();
        let mut process = Guarded::spawn(driver)
            .unwrap_or_else(|e| panic!("{program}: {e} (cargo xtask setup installs it)"));
        let serde_json::Value::Object(capabilities) = capabilities else {
            panic!("WebDriver capabilities must be a JSON object: {capabilities}");
        };
        let url = format!("http://127.0.0.1:{port}");
        // A driver that listens may not serve yet: tauri-driver accepts
        // connections before the WebKitWebDriver behind it does, and drops
        // them meanwhile. Connection-level failures are retried until
        // DRIVER_START; a refusal by the driver is not.
        let t = Instant::now();
        let client = loop {
            // Plain HTTP: a WebDriver server listens on loopback only.
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(client) => break client,
                Err(
                    e @ (NewSessionError::Failed(_)
                    | NewSessionError::FailedC(_)
                    | NewSessionError::Lost(_)),
                ) => {
                    if let Ok(Some(status)) = process.child().try_wait() {
                        panic!("{program} exited before serving WebDriver: {status}");
                    }
                    assert!(
                        t.elapsed() < DRIVER_START,
                        "{program} not serving WebDriver on {url} within {DRIVER_START:?}: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{program} refused a WebDriver session: {e}"),
            }
        };
        Self {
            client,
            driver: process,
            _dirs: dirs,
        }
    }

    /// The WebDriver client of this session.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the WebDriver session (the browser or app quits), then stops the
    /// driver and removes the session's directories.
    pub async fn close(self) {
        let Self {
            client,
            mut driver,
            _dirs,
        } = self;
        // The browser's helper processes, before the browser itself exits
        // and leaves them to init: they are waited for too.
        driver.track();
        if let Err(e) = client.close().await {
            eprintln!("webdriver: ending the session failed ({e}); stopping its processes");
        }
        driver.stop();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the driver binds it
/// next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
