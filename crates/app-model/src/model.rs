//! The app's state and its rules, as pure functions of the engine's events
//! and the clock.

use softphone_engine::call::CallState;
use softphone_engine::{DisconnectReason, EngineEvent};
use softphone_protocol::{CallDirection, Presence, UserRef};

use crate::error::{ErrorKind, UiError};
use crate::tray::{TrayStatus, TrayView};
use crate::types::{
    Account, AppEvent, CallView, Calls, HotkeyAction, HotkeyStatus, NoticeLevel, SessionInfo,
    Settings, Snapshot,
};

/// What the shell must do after a change, besides redrawing the tray from
/// [`Model::tray`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    /// Tell the UI.
    Emit(AppEvent),
    /// Start the ringtone (on the ringer device, from the settings) and,
    /// when the window is not in view, show an OS notification. Never
    /// focus the window.
    Ring {
        /// The caller.
        from: UserRef,
    },
    /// Stop the ringtone.
    StopRinging,
    /// A call was missed: an OS notification when the window is not in view.
    Missed {
        /// The caller.
        from: UserRef,
    },
    /// Delete this account's token from the keyring: the server refused it.
    ForgetToken {
        /// The account key (`softphone_engine::credentials::account_key`).
        account: String,
    },
    /// Signaling is gone for good: drop the engine and the HTTP client.
    EndSession,
    /// Write the settings file.
    SaveSettings(Settings),
}

/// An action on a call, resolved from a hotkey or the tray.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Answer this ringing call.
    Answer(String),
    /// Decline this ringing call.
    Decline(String),
    /// Hang up this call.
    Hangup(String),
    /// Mute (`true`) or unmute this call.
    Mute(String, bool),
    /// Hold (`true`) or resume this call.
    Hold(String, bool),
}

/// The signed-in session as the model knows it.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    info: SessionInfo,
    /// Keyring key of its token; `None` for a session handed over in the
    /// environment (never stored).
    account: Option<String>,
}

/// What the app shows. Every method is pure: it takes the clock as an
/// argument where it needs one and returns the [`Effect`]s for the shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    settings: Settings,
    session: Option<Session>,
    restoring: bool,
    calls: Vec<CallView>,
    missed: u32,
    presence: Presence,
    online: bool,
    hotkeys: Vec<HotkeyStatus>,
}

fn emit(e: AppEvent) -> Effect {
    Effect::Emit(e)
}

fn notice(level: NoticeLevel, message: impl Into<String>) -> Effect {
    emit(AppEvent::notice(level, message))
}

impl Model {
    /// A model with these settings, signed out.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            session: None,
            restoring: false,
            calls: Vec::new(),
            missed: 0,
            presence: Presence::Available,
            online: false,
            hotkeys: Vec::new(),
        }
    }

    /// Everything the UI draws from.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            session: self.session.as_ref().map(|s| s.info.clone()),
            restoring: self.restoring,
            calls: self.calls(),
            missed: self.missed,
            presence: self.presence,
            settings: self.settings.clone(),
            hotkeys: self.hotkeys.clone(),
            online: self.online,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The session, when signed in.
    pub fn session(&self) -> Option<&SessionInfo> {
        self.session.as_ref().map(|s| &s.info)
    }

    /// The incoming call that rings, if any.
    pub fn ringing(&self) -> Option<&CallView> {
        self.calls
            .iter()
            .find(|c| c.direction == CallDirection::Incoming && c.state == CallState::Ringing)
    }

    /// The call the call screen and the hotkeys act on: the first one that
    /// is not ringing at us.
    pub fn current(&self) -> Option<&CallView> {
        self.calls
            .iter()
            .find(|c| c.direction == CallDirection::Outgoing || c.state != CallState::Ringing)
    }

    /// The calls and which is which.
    pub fn calls(&self) -> Calls {
        Calls {
            calls: self.calls.clone(),
            ringing: self.ringing().map(|c| c.call_id.clone()),
            current: self.current().map(|c| c.call_id.clone()),
        }
    }

    fn calls_changed(&self) -> Effect {
        emit(AppEvent::Calls {
            calls: self.calls(),
        })
    }

    /// A silent sign-in (keyring token or a handed-over session) starts or
    /// ends.
    pub fn set_restoring(&mut self, restoring: bool) {
        self.restoring = restoring;
    }

    /// Signed in as `info`; `account` is the keyring key of the token when
    /// it is stored there. The account becomes the one to restore next
    /// time.
    pub fn signed_in(&mut self, info: SessionInfo, account: Option<String>) -> Vec<Effect> {
        self.settings.last_account = Some(Account {
            server: info.server.clone(),
            tenant: info.tenant.clone(),
            user: info.user.user.clone(),
        });
        self.session = Some(Session {
            info: info.clone(),
            account,
        });
        self.restoring = false;
        self.online = true;
        self.presence = Presence::Available;
        vec![
            Effect::SaveSettings(self.settings.clone()),
            emit(AppEvent::Session {
                session: Some(info),
            }),
            emit(AppEvent::Presence {
                status: self.presence,
            }),
            emit(AppEvent::Online { online: true }),
        ]
    }

    /// Signed out (by the agent): no session, no calls.
    pub fn signed_out(&mut self) -> Vec<Effect> {
        self.session = None;
        self.restoring = false;
        self.calls.clear();
        self.online = false;
        vec![
            Effect::StopRinging,
            Effect::EndSession,
            self.calls_changed(),
            emit(AppEvent::Session { session: None }),
        ]
    }

    /// The keyring key of the session's token, if it is stored.
    pub fn account(&self) -> Option<&str> {
        self.session.as_ref().and_then(|s| s.account.as_deref())
    }

    /// Applies one engine event at `now_ms` (ms since the Unix epoch).
    pub fn apply(&mut self, ev: &EngineEvent, now_ms: u64) -> Vec<Effect> {
        let mut fx = Vec::new();
        match ev {
            EngineEvent::Registered { .. } => {
                if !self.online && self.session.is_some() {
                    fx.push(notice(NoticeLevel::Info, "Connected to the server again."));
                }
                self.online = true;
                fx.push(emit(AppEvent::Online { online: true }));
            }
            EngineEvent::Reconnecting { .. } => {
                if self.online {
                    fx.push(notice(
                        NoticeLevel::Warning,
                        "Can't reach the server — reconnecting. Calls in progress go on.",
                    ));
                }
                self.online = false;
                fx.push(emit(AppEvent::Online { online: false }));
            }
            EngineEvent::Dialing { call_id, to } => {
                self.calls
                    .push(new_call(call_id, to, CallDirection::Outgoing));
                fx.push(self.calls_changed());
            }
            EngineEvent::Incoming {
                call_id,
                from,
                queue,
            } => {
                let mut c = new_call(call_id, from, CallDirection::Incoming);
                c.queue = queue.clone();
                self.calls.push(c);
                fx.push(Effect::Ring { from: from.clone() });
                fx.push(self.calls_changed());
            }
            EngineEvent::CallState { call_id, state } => {
                let Some(i) = self.calls.iter().position(|c| c.call_id == *call_id) else {
                    return fx;
                };
                let rang = self.ringing().is_some();
                if let CallState::Ended { reason } = state {
                    let c = self.calls.remove(i);
                    if reason.is_missed(c.direction, c.answered_at_ms.is_some()) {
                        self.missed += 1;
                        fx.push(emit(AppEvent::MissedCalls { count: self.missed }));
                        fx.push(Effect::Missed { from: c.peer });
                    }
                } else {
                    let c = &mut self.calls[i];
                    c.state = *state;
                    if *state == CallState::Active && c.answered_at_ms.is_none() {
                        c.answered_at_ms = Some(now_ms);
                    }
                }
                if rang && self.ringing().is_none() {
                    fx.push(Effect::StopRinging);
                }
                fx.push(self.calls_changed());
            }
            EngineEvent::Stats { call_id, stats } => {
                if let Some(c) = self.calls.iter_mut().find(|c| c.call_id == *call_id) {
                    c.stats = Some(*stats);
                    fx.push(self.calls_changed());
                }
            }
            EngineEvent::Presence { user, status } => {
                let me = self.session.as_ref().map(|s| s.info.user.user.as_str());
                if me == Some(user.user.as_str()) {
                    if status.can_be_set() && *status != self.presence {
                        self.presence = *status;
                        fx.push(emit(AppEvent::Presence { status: *status }));
                    }
                } else {
                    fx.push(emit(AppEvent::PeerPresence {
                        user: user.clone(),
                        status: *status,
                    }));
                }
            }
            EngineEvent::AudioDeviceLost {
                input, replacement, ..
            } => {
                let what = if *input { "microphone" } else { "headset" };
                fx.push(notice(
                    NoticeLevel::Warning,
                    format!("Your {what} went away; the call goes on with {replacement}."),
                ));
            }
            EngineEvent::ServerError { message, .. } => {
                fx.push(notice(
                    NoticeLevel::Warning,
                    format!("The server said: {message}"),
                ));
            }
            EngineEvent::Disconnected { reason } => {
                let account = self.session.as_ref().and_then(|s| s.account.clone());
                let was_signed_in = self.session.is_some();
                fx.extend(self.signed_out());
                let words = match reason {
                    DisconnectReason::ShutDown => None,
                    DisconnectReason::Unauthorized { .. } => {
                        if let Some(account) = account {
                            fx.push(Effect::ForgetToken { account });
                        }
                        Some("Your sign-in has expired — sign in again.")
                    }
                    DisconnectReason::Replaced => {
                        Some("Signed out: this app was signed in again from elsewhere.")
                    }
                    DisconnectReason::BadHello => {
                        Some("Signed out: the server refused this version of the app.")
                    }
                };
                if let Some(words) = words.filter(|_| was_signed_in) {
                    fx.push(notice(NoticeLevel::Error, words));
                }
            }
            _ => {}
        }
        fx
    }

    /// The agent muted or unmuted a call.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when the call is over.
    pub fn set_muted(&mut self, call_id: &str, muted: bool) -> Result<Vec<Effect>, UiError> {
        let c = self
            .calls
            .iter_mut()
            .find(|c| c.call_id == call_id)
            .ok_or_else(|| UiError::new(ErrorKind::InvalidState, "That call is over."))?;
        c.muted = muted;
        Ok(vec![self.calls_changed()])
    }

    /// The agent sets their availability.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] for `offline` (shown, never chosen:
    /// [`Presence::can_be_set`]) or when not signed in.
    pub fn set_presence(&mut self, status: Presence) -> Result<Vec<Effect>, UiError> {
        if !status.can_be_set() {
            return Err(UiError::new(
                ErrorKind::InvalidState,
                "Offline is shown, not chosen: sign out instead.",
            ));
        }
        if self.session.is_none() {
            return Err(UiError::not_signed_in());
        }
        self.presence = status;
        Ok(vec![emit(AppEvent::Presence { status })])
    }

    /// The agent has seen the missed calls: the count goes back to 0.
    pub fn missed_seen(&mut self) -> Vec<Effect> {
        self.missed = 0;
        vec![emit(AppEvent::MissedCalls { count: 0 })]
    }

    /// New settings from the UI: the endpoint id and the last account are
    /// kept, the volume clamped to 0–1.
    pub fn set_settings(&mut self, mut new: Settings) -> Vec<Effect> {
        new.endpoint_id = self.settings.endpoint_id.clone();
        new.last_account = self.settings.last_account.clone();
        new.ringtone_volume = new.ringtone_volume.clamp(0.0, 1.0);
        self.settings = new;
        vec![
            Effect::SaveSettings(self.settings.clone()),
            emit(AppEvent::Settings {
                settings: self.settings.clone(),
            }),
        ]
    }

    /// The hotkeys' registration results.
    pub fn set_hotkeys(&mut self, status: Vec<HotkeyStatus>) -> Vec<Effect> {
        self.hotkeys = status.clone();
        vec![emit(AppEvent::Hotkeys { status })]
    }

    /// What a hotkey (or the tray's call items) does now: Answer and
    /// Decline act on the ringing call, Hang up on it too, else on the
    /// current call; Mute and Hold toggle the current call.
    pub fn intent(&self, action: HotkeyAction) -> Option<Intent> {
        let ringing = self.ringing().map(|c| c.call_id.clone());
        let current = self.current();
        match action {
            HotkeyAction::Answer => ringing.map(Intent::Answer),
            HotkeyAction::Hangup => ringing
                .map(Intent::Decline)
                .or_else(|| current.map(|c| Intent::Hangup(c.call_id.clone()))),
            HotkeyAction::Mute => current.map(|c| Intent::Mute(c.call_id.clone(), !c.muted)),
            HotkeyAction::Hold => current.map(|c| {
                let held = matches!(c.state, CallState::Held { local: true, .. });
                Intent::Hold(c.call_id.clone(), !held)
            }),
        }
    }

    /// What the tray shows now.
    pub fn tray(&self) -> TrayView {
        let status = if self.session.is_none() || !self.online {
            (TrayStatus::Offline, None)
        } else if let Some(c) = self.ringing() {
            (TrayStatus::Ringing, Some(c.peer.display_name.as_str()))
        } else if let Some(c) = self.current() {
            let s = if c.muted {
                TrayStatus::Muted
            } else {
                TrayStatus::InCall
            };
            (s, Some(c.peer.display_name.as_str()))
        } else {
            (TrayStatus::Idle(self.presence), None)
        };
        TrayView::new(status.0, status.1, self.missed)
    }
}

fn new_call(call_id: &str, peer: &UserRef, direction: CallDirection) -> CallView {
    CallView {
        call_id: call_id.to_string(),
        peer: peer.clone(),
        direction,
        state: CallState::initial(direction),
        muted: false,
        answered_at_ms: None,
        stats: None,
        queue: None,
    }
}
