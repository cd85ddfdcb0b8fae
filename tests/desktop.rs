//! The desktop app end to end: the real `softphone` binary under Xvfb,
//! driven over WebDriver by `tauri-driver` and WebKitGTK's
//! `WebKitWebDriver`, signed in to a real switchboard, with `phonectl`
//! processes as the other party, PulseAudio's null sink as its sound card,
//! and a real gnome-keyring for its token. The test starts all of these
//! itself (re-executing inside `dbus-run-session` and a private PulseAudio);
//! `cargo xtask setup` installs them.
//!
//! It also takes the screenshots in `docs/screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use softphone_audio::Tone;
use softphone_e2e::{Capture, PW, Server};
use softphone_engine::CallAudio;
use softphone_engine::call::CallState;
use softphone_engine::credentials::{TokenStore, account_key};

#[path = "desktop_support.rs"]
mod desktop_support;
use desktop_support::{Driver, Peer, xvfb};

/// The call screen is shown and says Connected.
const CONNECTED: &str = "const c = document.querySelector('#call'); \
    return !!c && !c.hidden && c.querySelector('#call-state').textContent === 'Connected'";

const TEST: &str = "the_desktop_app_signs_in_takes_calls_misses_one_dials_and_signs_out";

/// Outer runs: a private D-Bus session with an unlocked gnome-keyring, then
/// a private PulseAudio with a null sink; the innermost run does the work.
fn inside_dbus_and_pulseaudio() -> bool {
    if !softphone_e2e::inside_dbus_keyring(TEST, &[]) {
        return false;
    }
    softphone_e2e::inside_pulseaudio(TEST)
}

#[test]
fn the_desktop_app_signs_in_takes_calls_misses_one_dials_and_signs_out() {
    if !inside_dbus_and_pulseaudio() {
        return;
    }
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(scenario());
}

async fn scenario() {
    let srv = Server::start_with(
        |c| c.ring_timeout = Duration::from_secs(6),
        &[("2001", "Support Line")],
    )
    .await;
    // Alice also watches the team, and answers the support line.
    srv.set_role("alice", "supervisor").await;
    srv.support_queue(&["alice", "carol"]).await;
    let home = tempfile::tempdir().expect("home");
    let (_x, display) = xvfb();
    let app = PathBuf::from(env!("CARGO_BIN_EXE_softphone"));
    let env = [
        ("DISPLAY", display.clone()),
        (
            "XDG_CONFIG_HOME",
            home.path().join("config").display().to_string(),
        ),
        (
            "XDG_DATA_HOME",
            home.path().join("data").display().to_string(),
        ),
        (
            "XDG_CACHE_HOME",
            home.path().join("cache").display().to_string(),
        ),
        ("SOFTPHONE_ICE_LOOPBACK", "1".to_string()),
    ];
    eprintln!("desktop: starting the app on {display}");
    let d = Driver::start(&app, &env).await;
    let account = account_key(&srv.base, "acme", "alice");
    let keyring = TokenStore::Keyring;
    assert_eq!(keyring.load(&account).expect("secret service"), None);

    eprintln!("desktop: signing in");
    // Sign in.
    d.wait_visible("#signin").await;
    d.screenshot("sign-in").await;
    d.type_into("#server", &srv.base).await;
    d.type_into("#tenant", "acme").await;
    d.type_into("#user", "alice").await;
    d.type_into("#password", PW).await;
    d.click("#signin-submit").await;
    d.wait_visible("#screen-phone").await;
    d.until(
        "the directory",
        "return document.querySelectorAll('.dir-entry').length >= 3",
    )
    .await;
    assert_eq!(d.text("#me").await, "Alice Martin");
    assert!(
        keyring.load(&account).expect("secret service").is_some(),
        "the token is in the OS keyring after sign-in"
    );
    d.screenshot("phone").await;

    eprintln!("desktop: signed in; bob calls");
    // bob calls; the agent answers, mutes, holds, resumes, and hangs up.
    let bob = Peer::start(
        &srv.base,
        "bob",
        &["call", "alice", "--tone", "440", "--duration", "60"],
    );
    d.wait_visible("#incoming").await;
    assert_eq!(d.text("#incoming-name").await, "Bob Stone");
    assert_eq!(d.text("#incoming-number").await, "bob");
    d.screenshot("incoming-call").await;
    d.click("#answer").await;
    d.until("the call to connect", CONNECTED).await;
    bob.wait_for("\"active\"", 10).await;

    d.click("#mute").await;
    d.until(
        "mute on",
        "return document.querySelector('#mute').getAttribute('aria-pressed') === 'true'",
    )
    .await;
    d.click("#mute").await;
    d.until(
        "mute off",
        "return document.querySelector('#mute').getAttribute('aria-pressed') === 'false'",
    )
    .await;

    d.click("#hold").await;
    d.until(
        "on hold",
        "return document.querySelector('#call-state').textContent === 'On hold'",
    )
    .await;
    bob.wait_for("\"held\"", 10).await;
    d.click("#hold").await;
    d.until("resumed", CONNECTED).await;

    let mos = d
        .until(
            "the quality indicator",
            "return document.querySelector('#quality').dataset.mos || null",
        )
        .await;
    let mos: f64 = mos.as_str().expect("mos").parse().expect("number");
    assert!((1.0..=4.5).contains(&mos), "MOS {mos}");
    let title = d
        .js("return document.querySelector('#quality').title")
        .await;
    assert!(
        title.as_str().unwrap_or("").contains("RTT"),
        "hover shows the figures: {title}"
    );
    d.screenshot("in-call").await;
    d.click("#hangup").await;
    d.wait_visible("#screen-phone").await;
    bob.wait_for("completed", 10).await;

    eprintln!("desktop: call done; history");
    // The call is in the history.
    d.click("#tab-history").await;
    d.until(
        "the answered call in the history",
        "return [...document.querySelectorAll('.history-item')].some(e => e.textContent.includes('Bob Stone') && e.dataset.missed === 'false')",
    )
    .await;

    eprintln!("desktop: a call rings out");
    // A second call rings out: missed, counted, highlighted.
    d.click("#tab-phone").await;
    let _bob2 = Peer::start(&srv.base, "bob", &["call", "alice", "--duration", "5"]);
    d.wait_visible("#incoming").await;
    d.until(
        "the missed-call count",
        "return document.querySelector('#missed-badge').textContent === '1' && !document.querySelector('#missed-badge').hidden",
    )
    .await;
    d.wait_visible("#screen-phone").await;
    d.click("#tab-history").await;
    d.until(
        "the missed call highlighted",
        "return document.querySelectorAll('.history-item.missed').length === 1",
    )
    .await;
    d.until(
        "the count cleared once seen",
        "return document.querySelector('#missed-badge').hidden",
    )
    .await;
    d.screenshot("history").await;

    eprintln!("desktop: dialing 2001");
    // The agent dials 2001 from the dial pad; phonectl answers it.
    let line = Peer::start(
        &srv.base,
        "2001",
        &["answer", "--auto", "--tone", "1000", "--duration", "4"],
    );
    d.click("#tab-phone").await;
    d.until(
        "2001 online in the directory",
        "return !!document.querySelector('.dir-entry[data-user=\"2001\"] .presence-available')",
    )
    .await;
    for k in ["2", "0", "0", "1"] {
        d.click(&format!(".key[data-key=\"{k}\"]")).await;
    }
    assert_eq!(
        d.js("return document.querySelector('#dial-input').value")
            .await,
        json!("2001")
    );
    d.click("#dial-call").await;
    d.until("the dialed call to connect", CONNECTED).await;
    assert_eq!(d.text("#call-peer").await, "Support Line");
    line.wait_for("\"active\"", 10).await;
    // phonectl hangs up after 4 s.
    d.wait_visible("#screen-phone").await;

    support_line(&srv, &d, &account).await;

    d.click("#tab-settings").await;
    d.until(
        "the hotkeys registered",
        "return document.querySelector('#hk-answer-status').textContent.includes('active')",
    )
    .await;
    d.screenshot("settings").await;

    eprintln!("desktop: signing out");
    // Sign out: back to the form, and the keyring entry is gone.
    d.click("#signout").await;
    d.wait_visible("#signin").await;
    assert_eq!(
        keyring.load(&account).expect("secret service"),
        None,
        "sign-out deletes the token from the OS keyring"
    );
    d.quit().await;
}

/// A tone for a caller's microphone, and a sink that keeps what it hears.
fn audio(hz: f32) -> CallAudio {
    CallAudio {
        source: Box::new(Tone::new(hz, -12.0)),
        sink: Box::new(Capture::default()),
    }
}

/// Sets the agent's availability from the header, and waits until the
/// switchboard has it (the supervisor view shows the agent so).
async fn set_presence(srv: &Server, d: &Driver, token: &str, presence: &str, state: &str) {
    d.js(&format!(
        "const p = document.querySelector('#presence'); p.value = '{presence}'; \
         p.dispatchEvent(new Event('change')); return true"
    ))
    .await;
    for _ in 0..100 {
        let v = srv.get("/v1/supervisor", token).await;
        let alice = v["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["agent"]["user"] == "alice"))
            .map(|a| a["state"].clone());
        if alice == Some(json!(state)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the switchboard did not see alice {state}");
}

/// Customers call the support line as the web widget does (guest tokens
/// with name, email, topic and page): the agent sees who calls and why
/// before answering; then, away, sees a second caller wait in the Team tab.
async fn support_line(srv: &Server, d: &Driver, account: &str) {
    let token = TokenStore::Keyring
        .load(account)
        .expect("secret service")
        .expect("alice's token");
    eprintln!("desktop: a customer calls the support line");
    let (guest, mut g_ev) = srv
        .guest_engine(
            "support",
            json!({"name": "Zoe Quinn", "email": "zoe@example.org",
                   "topic": "Broken headset", "page": "https://shop.example/help"}),
        )
        .await;
    let call = guest
        .dial("support", audio(660.0))
        .await
        .expect("guest dials");
    d.wait_visible("#incoming").await;
    assert_eq!(d.text("#incoming-name").await, "Zoe Quinn");
    assert!(
        d.text("#pop-queue").await.starts_with("via support"),
        "{}",
        d.text("#pop-queue").await
    );
    assert_eq!(d.text("#pop-topic").await, "Broken headset");
    assert_eq!(d.text("#pop-email").await, "zoe@example.org");
    assert_eq!(d.text("#pop-page").await, "from https://shop.example/help");
    assert_eq!(d.text("#pop-earlier").await, "First call");
    d.screenshot("queue-call").await;
    d.click("#answer").await;
    d.until("the queue call to connect", CONNECTED).await;
    g_ev.wait_state(&call, CallState::Active).await;
    d.click("#hangup").await;
    d.wait_visible("#screen-phone").await;

    eprintln!("desktop: away; a second customer waits, seen in the Team tab");
    set_presence(srv, d, &token, "away", "away").await;
    let (guest2, _g2_ev) = srv
        .guest_engine("support", json!({"name": "Yann Ortiz", "topic": "Invoice"}))
        .await;
    let call2 = guest2
        .dial("support", audio(550.0))
        .await
        .expect("guest 2 dials");
    d.click("#tab-team").await;
    d.until(
        "the waiting caller in the Team tab",
        "return [...document.querySelectorAll('.waiting-caller')].some(e => e.textContent.includes('Yann Ortiz'))",
    )
    .await;
    d.until(
        "alice away and carol offline",
        "const s = u => document.querySelector(`.team-agent[data-user=\"${u}\"]`)?.dataset.state; \
         return s('alice') === 'away' && s('carol') === 'offline'",
    )
    .await;
    assert!(d.text(".team-queue").await.contains("1 waiting"));
    // The wait counts up as the view is read again.
    d.until(
        "the wait counting",
        "return document.querySelector('.waiting-caller .wait').textContent !== '00:00'",
    )
    .await;
    d.screenshot("team").await;
    // The caller gives up: nobody waits any more.
    guest2.hangup(&call2);
    d.until(
        "the queue empty again",
        "return document.querySelectorAll('.waiting-caller').length === 0 && \
         document.querySelector('.queue-waiting').dataset.waiting === '0'",
    )
    .await;
    set_presence(srv, d, &token, "available", "available").await;
    d.click("#tab-phone").await;
    guest.shutdown();
    guest2.shutdown();
}
