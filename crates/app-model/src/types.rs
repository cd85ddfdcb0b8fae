//! The types that cross IPC between the Rust shell and the web UI; their
//! TypeScript declarations are generated into `ui/src/bindings/index.ts`
//! ([`crate::bindings`]).

use serde::{Deserialize, Serialize};
use softphone_audio::ringtone::Ringtone;
use softphone_engine::call::CallState;
use softphone_engine::media::MediaStats;
use softphone_protocol::{CallDirection, Presence, QueueOffer, Role, UserRef};
use ts_rs::TS;

use crate::error::UiError;

/// Who is signed in, where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct SessionInfo {
    /// Switchboard base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Tenant.
    pub tenant: String,
    /// Me.
    pub user: UserRef,
    /// This installation's endpoint id at the switchboard.
    pub endpoint_id: String,
    /// What I may do beyond calling: a `supervisor` or `admin` also sees
    /// the team view.
    pub role: Role,
}

/// One call as the UI shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
pub struct CallView {
    /// The call's id.
    pub call_id: String,
    /// The other party.
    pub peer: UserRef,
    /// Who placed it.
    pub direction: CallDirection,
    /// Where the call stands.
    pub state: CallState,
    /// Our microphone is muted (digital silence is sent).
    pub muted: bool,
    /// When it became Active the first time, ms since the Unix epoch (the
    /// call timer starts there).
    pub answered_at_ms: Option<u64>,
    /// Latest media statistics (every 2 s while up).
    pub stats: Option<MediaStats>,
    /// For a call a queue offered us: the queue, the caller's wait and what
    /// a web caller typed (the screen-pop); `null` for a direct call.
    pub queue: Option<QueueOffer>,
}

/// The calls in progress, and which of them the screens and hotkeys are
/// about (decided once, here, by [`crate::Model`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, TS)]
pub struct Calls {
    /// Every call in progress, oldest first.
    pub calls: Vec<CallView>,
    /// The incoming call that rings, if any (the incoming-call screen,
    /// Answer and Decline).
    pub ringing: Option<String>,
    /// The call that is not ringing at us: ours, or one we answered (the
    /// call screen, Hang up, Mute, Hold).
    pub current: Option<String>,
}

/// The agent's call-handling hotkeys (and the tray's call items).
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

impl Hotkeys {
    /// Each action with its accelerator.
    pub fn each(&self) -> [(HotkeyAction, &str); 4] {
        [
            (HotkeyAction::Answer, &self.answer),
            (HotkeyAction::Hangup, &self.hangup),
            (HotkeyAction::Mute, &self.mute),
            (HotkeyAction::Hold, &self.hold),
        ]
    }
}

/// The agent's settings, kept as JSON in the OS config dir
/// (`~/.config/dev.softphone.desktop/settings.json` on Linux).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Settings {
    /// Microphone (a name from [`AudioDevices`]); `None`: the system
    /// default.
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
    /// This installation's endpoint id at the switchboard (made once;
    /// files of earlier versions call it `device_id`).
    #[serde(alias = "device_id")]
    pub endpoint_id: String,
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
            endpoint_id: String::new(),
        }
    }
}

/// Audio devices (sound cards) the agent can pick.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, TS)]
pub struct AudioDevices {
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
    pub calls: Calls,
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

/// What the shell tells the UI (Tauri event `app`): one event per change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AppEvent {
    /// Calls in progress changed (state, mute, stats).
    Calls {
        /// All of them, and which is which.
        calls: Calls,
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
    /// Another user of my tenant changed availability (the directory).
    PeerPresence {
        /// Who.
        user: UserRef,
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
    /// The settings changed.
    Settings {
        /// The new settings.
        settings: Settings,
    },
}

impl AppEvent {
    /// A notice of `level` saying `message`.
    pub fn notice(level: NoticeLevel, message: impl Into<String>) -> Self {
        Self::Notice {
            level,
            message: message.into(),
        }
    }
}

impl From<UiError> for AppEvent {
    fn from(e: UiError) -> Self {
        Self::notice(NoticeLevel::Warning, e.message)
    }
}
