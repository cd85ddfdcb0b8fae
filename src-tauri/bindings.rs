//! The types that cross the IPC boundary between the shell and the UI, and
//! their TypeScript declarations (ts-rs), generated into
//! `ui/src/bindings/index.ts`. The UI sees engine events as the engine
//! serialises them ([`EngineEvent`], event `engine`) and the shell's own
//! state as [`AppEvent`]s (event `app`).
//!
//! `cargo test -p softphone bindings` fails when the committed file differs
//! from what the Rust types generate; `UPDATE_BINDINGS=1` rewrites it.

use serde::{Deserialize, Serialize};
use softphone_engine::call::CallState;
use softphone_engine::media::MediaStats;
use softphone_engine::{AuthRefusal, DisconnectReason, EngineEvent};
use softphone_protocol::{
    CallDirection, CallQuality, CallRecord, DirectoryEntry, EndReason, ErrorCode, Presence, UserRef,
};
use ts_rs::TS;

/// Who is signed in, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SessionInfo {
    /// Switchboard base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Tenant.
    pub tenant: String,
    /// Me.
    pub user: UserRef,
    /// This app's device id at the switchboard.
    pub device_id: String,
}

/// One call as the UI shows it (the shell keeps these; every change is sent
/// as [`AppEvent::Calls`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CallView {
    /// The call's id.
    pub call_id: String,
    /// The other party.
    pub peer: UserRef,
    /// `true` when we dialed.
    pub outgoing: bool,
    /// Where the call stands.
    pub state: CallState,
    /// Our microphone is muted (digital silence is sent).
    pub muted: bool,
    /// When it became Active the first time, ms since the Unix epoch (the
    /// call timer starts there).
    pub answered_at_ms: Option<u64>,
    /// Latest media statistics (every 2 s while up).
    pub stats: Option<MediaStats>,
}

/// The agent's call-handling hotkeys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum HotkeyAction {
    /// Answer the ringing call.
    Answer,
    /// Hang up the call, or decline the ringing one.
    Hangup,
    /// Mute toggle.
    Mute,
    /// Hold toggle.
    Hold,
}

/// Whether a hotkey is registered with the OS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct HotkeyStatus {
    /// What it does.
    pub action: HotkeyAction,
    /// The accelerator, e.g. `Ctrl+Alt+A` (empty: none).
    pub accelerator: String,
    /// Registered and working.
    pub registered: bool,
    /// Why not (taken by another program, not a valid accelerator).
    pub error: Option<String>,
}

/// Synthesised ringtones (no audio files to ship).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Ringtone {
    /// North-American ring: 440 + 480 Hz, 2 s on, 4 s off.
    #[default]
    Classic,
    /// Two soft 660/880 Hz chimes every 3 s.
    Soft,
    /// 1 kHz beeps, four in a row, every 2 s.
    Digital,
}

/// The last account signed in (its token is in the OS keyring, never here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Account {
    /// Switchboard base URL.
    pub server: String,
    /// Tenant.
    pub tenant: String,
    /// User name.
    pub user: String,
}

/// Accelerators of the four hotkeys (`""`: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Hotkeys {
    /// Answer the ringing call.
    pub answer: String,
    /// Hang up or decline.
    pub hangup: String,
    /// Mute toggle.
    pub mute: String,
    /// Hold toggle.
    pub hold: String,
}

impl Default for Hotkeys {
    fn default() -> Self {
        Self {
            answer: "Ctrl+Alt+A".into(),
            hangup: "Ctrl+Alt+H".into(),
            mute: "Ctrl+Alt+M".into(),
            hold: "Ctrl+Alt+P".into(),
        }
    }
}

/// The agent's settings, kept as JSON in the OS config dir
/// (`~/.config/dev.softphone.desktop/settings.json` on Linux).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Settings {
    /// Microphone (a name from [`Devices`]); `None`: the system default.
    pub input_device: Option<String>,
    /// Headset or speakers for calls; `None`: the system default.
    pub output_device: Option<String>,
    /// Where the ringtone plays (often the laptop's speakers while the
    /// headset is off); `None`: the system default.
    pub ringer_device: Option<String>,
    /// Which ringtone.
    pub ringtone: Ringtone,
    /// Ringtone volume, 0.0–1.0.
    pub ringtone_volume: f32,
    /// Global hotkeys.
    pub hotkeys: Hotkeys,
    /// Start when the agent logs in to the desktop.
    pub start_at_login: bool,
    /// Start hidden in the tray.
    pub start_minimised: bool,
    /// Last account, for the silent sign-in at start.
    pub last_account: Option<Account>,
    /// This installation's device id at the switchboard (made once).
    pub device_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            input_device: None,
            output_device: None,
            ringer_device: None,
            ringtone: Ringtone::Classic,
            ringtone_volume: 0.7,
            hotkeys: Hotkeys::default(),
            start_at_login: false,
            start_minimised: false,
            last_account: None,
            device_id: String::new(),
        }
    }
}

/// Sound devices the agent can pick.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, TS)]
pub struct Devices {
    /// Names of devices that can record.
    pub inputs: Vec<String>,
    /// Names of devices that can play.
    pub outputs: Vec<String>,
}

/// Everything the UI needs to draw itself after a (re)load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct Snapshot {
    /// Signed in, or not.
    pub session: Option<SessionInfo>,
    /// A silent sign-in with the keyring's token is under way.
    pub restoring: bool,
    /// Calls in progress.
    pub calls: Vec<CallView>,
    /// Missed calls since the agent last looked at the history.
    pub missed: u32,
    /// My availability.
    pub presence: Presence,
    /// Settings.
    pub settings: Settings,
    /// Hotkey registration results.
    pub hotkeys: Vec<HotkeyStatus>,
    /// Whether signaling is connected (`false` while reconnecting).
    pub online: bool,
}

/// How serious a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum NoticeLevel {
    /// For information.
    Info,
    /// Something did not work; the app goes on.
    Warning,
    /// Something failed that the agent must act on.
    Error,
}

/// The shell's own events (Tauri event `app`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AppEvent {
    /// Calls in progress changed (state, mute, stats).
    Calls {
        /// All of them.
        calls: Vec<CallView>,
    },
    /// The missed-call count changed.
    MissedCalls {
        /// Unseen missed calls.
        count: u32,
    },
    /// Signed in or out (including by an expired token).
    Session {
        /// The session, or `None` after sign-out.
        session: Option<SessionInfo>,
    },
    /// My availability changed (from the tray, or the UI).
    Presence {
        /// Now.
        status: Presence,
    },
    /// Signaling up (`true`) or reconnecting (`false`).
    Online {
        /// Connected.
        online: bool,
    },
    /// A `tel:` link asked to dial this number.
    Dial {
        /// The number or user, without `tel:`.
        number: String,
    },
    /// Microphone level for the settings meter, every 100 ms.
    MicLevel {
        /// Peak RMS over 100 ms, in dBFS (−100 for silence).
        dbfs: f64,
    },
    /// Hotkey registration results, after start or a settings change.
    Hotkeys {
        /// One per action.
        status: Vec<HotkeyStatus>,
    },
    /// Something for the agent to read, in plain words.
    Notice {
        /// How serious.
        level: NoticeLevel,
        /// What happened and what to do.
        message: String,
    },
    /// The settings changed (e.g. start at login toggled from elsewhere).
    Settings {
        /// The new settings.
        settings: Settings,
    },
}

/// What kind of failure a command had; the UI words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The switchboard cannot be reached.
    Unreachable,
    /// Wrong credentials or an expired token: sign in again.
    Unauthorized,
    /// The OS keyring refused.
    Credentials,
    /// A sound device is missing or busy.
    Device,
    /// Not possible now (no such call, wrong state, not signed in).
    InvalidState,
    /// Anything else.
    Other,
}

/// A command's error, as the UI receives it (`invoke` rejects with this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct UiError {
    /// The kind.
    pub kind: ErrorKind,
    /// Plain words for the agent.
    pub message: String,
}

impl UiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<softphone_engine::EngineError> for UiError {
    fn from(e: softphone_engine::EngineError) -> Self {
        use softphone_engine::EngineError as E;
        match e {
            E::Unreachable { .. } | E::Protocol { .. } => Self::new(
                ErrorKind::Unreachable,
                format!("Can't reach the server. ({e})"),
            ),
            E::Unauthorized(why) => Self::new(
                ErrorKind::Unauthorized,
                format!("Sign-in refused or expired — sign in again. ({why})"),
            ),
            E::Credentials(source) => Self::new(
                ErrorKind::Credentials,
                format!("The system keyring refused: {source}"),
            ),
            E::UnknownCall(_) => Self::new(ErrorKind::InvalidState, "That call is already over."),
            E::InvalidState(m) => Self::new(ErrorKind::InvalidState, m),
            E::Media { .. } | E::Negotiation(_) => {
                Self::new(ErrorKind::Other, format!("Audio connection failed: {e}"))
            }
            E::Stopped => Self::new(ErrorKind::InvalidState, "Not signed in."),
            other => Self::new(ErrorKind::Other, other.to_string()),
        }
    }
}

/// The TypeScript declarations of every IPC type, as one module.
pub fn typescript() -> String {
    let cfg = ts_rs::Config::new().with_large_int("number");
    let decls = [
        UserRef::decl(&cfg),
        Presence::decl(&cfg),
        EndReason::decl(&cfg),
        CallDirection::decl(&cfg),
        ErrorCode::decl(&cfg),
        CallQuality::decl(&cfg),
        DirectoryEntry::decl(&cfg),
        CallRecord::decl(&cfg),
        CallState::decl(&cfg),
        MediaStats::decl(&cfg),
        AuthRefusal::decl(&cfg),
        DisconnectReason::decl(&cfg),
        EngineEvent::decl(&cfg),
        SessionInfo::decl(&cfg),
        CallView::decl(&cfg),
        HotkeyAction::decl(&cfg),
        HotkeyStatus::decl(&cfg),
        Ringtone::decl(&cfg),
        Account::decl(&cfg),
        Hotkeys::decl(&cfg),
        Settings::decl(&cfg),
        Devices::decl(&cfg),
        Snapshot::decl(&cfg),
        NoticeLevel::decl(&cfg),
        AppEvent::decl(&cfg),
        ErrorKind::decl(&cfg),
        UiError::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the Rust types by ts-rs (src-tauri/bindings.rs). Do not edit:\n\
         // run `UPDATE_BINDINGS=1 cargo test -p softphone bindings` after changing them.\n",
    );
    for d in decls {
        out.push('\n');
        out.push_str("export ");
        out.push_str(d.trim());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_match_the_rust_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/ui/src/bindings/index.ts");
        let fresh = typescript();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().expect("dir"))
                .expect("mkdir");
            std::fs::write(path, &fresh).expect("write bindings");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/bindings/index.ts is out of date with the Rust types: \
             run `UPDATE_BINDINGS=1 cargo test -p softphone bindings`"
        );
    }

    #[test]
    fn engine_events_serialise_as_the_bindings_declare() {
        let ev = EngineEvent::CallState {
            call_id: "c1".into(),
            state: CallState::Held {
                local: true,
                remote: false,
            },
        };
        let v = serde_json::to_value(&ev).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"event": "call_state", "call_id": "c1",
                "state": {"state": "held", "local": true, "remote": false}})
        );
        let ts = typescript();
        assert!(ts.contains("\"event\": \"call_state\""), "{ts}");
    }

    #[test]
    fn settings_files_from_older_versions_still_load() {
        let s: Settings = serde_json::from_str(r#"{"ringtone_volume": 0.3}"#).expect("parse");
        assert_eq!(s.ringtone_volume, 0.3);
        assert_eq!(s.hotkeys, Hotkeys::default());
    }
}
