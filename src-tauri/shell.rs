//! The shell's state: the signed-in engine, the calls as the UI shows them,
//! the missed-call count, settings, and the one task that maps engine events
//! to the UI, the tray, the ringer and OS notifications.

use std::path::PathBuf;
use std::sync::Mutex;

use softphone_audio::device::{CpalSink, CpalSource};
use softphone_audio::{NullSink, Silence, Sink, Source};
use softphone_engine::api::Api;
use softphone_engine::call::CallState;
use softphone_engine::credentials::{TokenStore, account_key};
use softphone_engine::media::MediaOptions;
use softphone_engine::{CallAudio, Engine, EngineConfig, EngineEvent};
use softphone_protocol::{EndReason, Presence, UserRef};
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_notification::NotificationExt;

use crate::bindings::{
    Account, AppEvent, CallView, ErrorKind, HotkeyAction, HotkeyStatus, NoticeLevel, SessionInfo,
    Settings, Snapshot, UiError,
};
use crate::ringer::Ringer;

/// A signed-in session.
struct Live {
    info: SessionInfo,
    engine: Engine,
    api: Api,
    account: String,
}

#[derive(Default)]
struct Inner {
    settings: Settings,
    session: Option<Live>,
    restoring: bool,
    calls: Vec<CallView>,
    missed: u32,
    presence: Option<Presence>,
    online: bool,
    hotkeys: Vec<HotkeyStatus>,
}

/// What the tray shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayStatus {
    /// Not signed in, or signaling down.
    Offline,
    /// Signed in, with this availability.
    Idle(Presence),
    /// A call rings.
    Ringing,
    /// In a call.
    InCall,
    /// In a call, muted.
    Muted,
}

/// The shell's state, managed by Tauri (`State<Shell>`).
pub struct Shell {
    inner: Mutex<Inner>,
    settings_path: PathBuf,
    tokens: TokenStore,
    /// The ringtone player.
    pub ringer: Ringer,
    meter: Mutex<Option<crate::meter::Meter>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_signed_in() -> UiError {
    UiError::new(ErrorKind::InvalidState, "Not signed in.")
}

/// The account and token given in `SOFTPHONE_SERVER`, `SOFTPHONE_TENANT`,
/// `SOFTPHONE_USER` and `SOFTPHONE_TOKEN`, when all four are set.
fn provisioned() -> Option<(Account, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some((
        Account {
            server: var("SOFTPHONE_SERVER")?,
            tenant: var("SOFTPHONE_TENANT")?,
            user: var("SOFTPHONE_USER")?,
        },
        var("SOFTPHONE_TOKEN")?,
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "desktop".into())
}

impl Shell {
    /// Loads the settings from `config_dir/settings.json` (defaults when
    /// missing or unreadable) and makes this installation's device id.
    pub fn new(config_dir: PathBuf, tokens: TokenStore) -> Self {
        let settings_path = config_dir.join("settings.json");
        let mut settings: Settings = std::fs::read(&settings_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if settings.device_id.is_empty() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            settings.device_id = format!("desktop-{}", &id[..12]);
        }
        let shell = Self {
            inner: Mutex::new(Inner {
                settings,
                ..Inner::default()
            }),
            settings_path,
            tokens,
            ringer: Ringer::start(),
            meter: Mutex::new(None),
        };
        if let Err(e) = shell.persist() {
            tracing::warn!(error = %e, "cannot write settings");
        }
        shell
    }

    fn persist(&self) -> std::io::Result<()> {
        let settings = lock(&self.inner).settings.clone();
        if let Some(dir) = self.settings_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.settings_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&settings)?)?;
        std::fs::rename(tmp, &self.settings_path)
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        lock(&self.inner).settings.clone()
    }

    /// Stores new settings (the device id and last account are kept).
    ///
    /// # Errors
    /// When the settings file cannot be written.
    pub fn set_settings(&self, mut new: Settings) -> Result<(), UiError> {
        {
            let mut inner = lock(&self.inner);
            new.device_id = inner.settings.device_id.clone();
            new.last_account = inner.settings.last_account.clone();
            new.ringtone_volume = new.ringtone_volume.clamp(0.0, 1.0);
            inner.settings = new;
        }
        self.persist()
            .map_err(|e| UiError::new(ErrorKind::Other, format!("Can't save the settings: {e}")))
    }

    /// Everything the UI draws from.
    pub fn snapshot(&self) -> Snapshot {
        let inner = lock(&self.inner);
        Snapshot {
            session: inner.session.as_ref().map(|l| l.info.clone()),
            restoring: inner.restoring,
            calls: inner.calls.clone(),
            missed: inner.missed,
            presence: inner.presence.unwrap_or(Presence::Available),
            settings: inner.settings.clone(),
            hotkeys: inner.hotkeys.clone(),
            online: inner.online,
        }
    }

    /// Records the hotkey registration results.
    pub fn set_hotkeys(&self, status: Vec<HotkeyStatus>) {
        lock(&self.inner).hotkeys = status;
    }

    /// What the tray should show now, and the peer of the call it is about.
    pub fn tray_status(&self) -> (TrayStatus, Option<String>) {
        self.tray_status_and_missed().0
    }

    /// [`Shell::tray_status`] and the unseen missed calls.
    pub fn tray_status_and_missed(&self) -> ((TrayStatus, Option<String>), u32) {
        let missed = lock(&self.inner).missed;
        (self.status_now(), missed)
    }

    fn status_now(&self) -> (TrayStatus, Option<String>) {
        let inner = lock(&self.inner);
        if inner.session.is_none() || !inner.online {
            return (TrayStatus::Offline, None);
        }
        if let Some(c) = inner
            .calls
            .iter()
            .find(|c| !c.outgoing && c.state == CallState::Ringing)
        {
            return (TrayStatus::Ringing, Some(c.peer.display_name.clone()));
        }
        if let Some(c) = inner.calls.first() {
            let status = if c.muted {
                TrayStatus::Muted
            } else {
                TrayStatus::InCall
            };
            return (status, Some(c.peer.display_name.clone()));
        }
        (
            TrayStatus::Idle(inner.presence.unwrap_or(Presence::Available)),
            None,
        )
    }

    fn engine(&self) -> Result<Engine, UiError> {
        lock(&self.inner)
            .session
            .as_ref()
            .map(|l| l.engine.clone())
            .ok_or_else(not_signed_in)
    }

    fn api(&self) -> Result<Api, UiError> {
        lock(&self.inner)
            .session
            .as_ref()
            .map(|l| l.api.clone())
            .ok_or_else(not_signed_in)
    }

    /// Signs in with a password: the token goes to the OS keyring (the
    /// password is not kept anywhere), then signaling connects.
    ///
    /// # Errors
    /// Wrong credentials, an unreachable server; a keyring that refuses is
    /// reported as a notice and the session still starts (it will not
    /// survive a restart).
    pub async fn sign_in(
        &self,
        app: &AppHandle,
        server: &str,
        tenant: &str,
        user: &str,
        password: &str,
    ) -> Result<SessionInfo, UiError> {
        let server = server.trim().trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(UiError::new(
                ErrorKind::InvalidState,
                "The server URL starts with http:// or https://",
            ));
        }
        let login =
            softphone_engine::api::Api::login(&server, tenant.trim(), user.trim(), password)
                .await?;
        let account = account_key(&server, &login.tenant, &login.user.user);
        if let Err(e) = self.tokens.save(&account, &login.token) {
            notice(
                app,
                NoticeLevel::Warning,
                format!(
                    "Signed in, but the system keyring refused to keep the sign-in ({e}); \
                     you will have to sign in again next time."
                ),
            );
        }
        self.connect(app, &server, &login.tenant, &login.user.user, login.token)
            .await
    }

    /// Signs in silently with the last account's token from the keyring.
    /// `Ok(None)` when there is nothing to restore; an expired token is
    /// deleted and reported.
    ///
    /// # Errors
    /// An unreachable server or keyring.
    pub async fn restore(&self, app: &AppHandle) -> Result<Option<SessionInfo>, UiError> {
        if let Some((acc, token)) = provisioned() {
            // A session handed over by whoever started us (`cargo xtask
            // demo`, a kiosk script): used as is, never stored.
            lock(&self.inner).restoring = true;
            let r = self
                .connect(app, &acc.server, &acc.tenant, &acc.user, token)
                .await;
            lock(&self.inner).restoring = false;
            return r.map(Some);
        }
        let Some(acc) = lock(&self.inner).settings.last_account.clone() else {
            return Ok(None);
        };
        let key = account_key(&acc.server, &acc.tenant, &acc.user);
        let Some(token) = self.tokens.load(&key)? else {
            return Ok(None);
        };
        lock(&self.inner).restoring = true;
        let r = self
            .connect(app, &acc.server, &acc.tenant, &acc.user, token)
            .await;
        lock(&self.inner).restoring = false;
        match r {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.kind == ErrorKind::Unauthorized => {
                let _ = self.tokens.delete(&key);
                Err(UiError::new(
                    ErrorKind::Unauthorized,
                    "Your sign-in has expired — sign in again.",
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn connect(
        &self,
        app: &AppHandle,
        server: &str,
        tenant: &str,
        user: &str,
        token: String,
    ) -> Result<SessionInfo, UiError> {
        let device_id = lock(&self.inner).settings.device_id.clone();
        let mut config = EngineConfig::new(server, &token, &device_id);
        config.endpoint_name = format!("Softphone on {}", hostname());
        config.media = MediaOptions {
            loopback_only: std::env::var_os("SOFTPHONE_ICE_LOOPBACK").is_some(),
        };
        let (engine, mut events) = Engine::connect(config).await?;
        // The first event is `Registered`, with who we are.
        let me = match events.recv().await {
            Some(EngineEvent::Registered { user, .. }) => user,
            _ => UserRef {
                user: user.to_string(),
                display_name: user.to_string(),
            },
        };
        let info = SessionInfo {
            server: server.to_string(),
            tenant: tenant.to_string(),
            user: me,
            device_id,
        };
        let old = {
            let mut inner = lock(&self.inner);
            inner.settings.last_account = Some(Account {
                server: server.to_string(),
                tenant: tenant.to_string(),
                user: user.to_string(),
            });
            inner.online = true;
            inner.presence = Some(Presence::Available);
            inner.session.replace(Live {
                info: info.clone(),
                engine,
                api: Api::new(server, &token),
                account: account_key(server, tenant, user),
            })
        };
        if let Some(old) = old {
            old.engine.shutdown();
        }
        let _ = self.persist();
        let app2 = app.clone();
        tauri::async_runtime::spawn(async move {
            while let Some(ev) = events.recv().await {
                on_engine_event(&app2, ev);
            }
        });
        emit(
            app,
            AppEvent::Session {
                session: Some(info.clone()),
            },
        );
        crate::tray::refresh(app);
        Ok(info)
    }

    /// Signs out: revokes the token on the server (best effort), deletes
    /// it from the keyring, stops signaling.
    ///
    /// # Errors
    /// When the keyring refuses to delete.
    pub async fn sign_out(&self, app: &AppHandle) -> Result<(), UiError> {
        let live = {
            let mut inner = lock(&self.inner);
            inner.calls.clear();
            inner.online = false;
            inner.session.take()
        };
        self.ringer.stop();
        let result = match live {
            Some(live) => {
                live.engine.shutdown();
                if let Err(e) = live.api.logout().await {
                    tracing::warn!(error = %e, "logout on the server failed");
                }
                self.tokens.delete(&live.account).map_err(UiError::from)
            }
            None => Ok(()),
        };
        emit(app, AppEvent::Session { session: None });
        emit(app, AppEvent::Calls { calls: vec![] });
        crate::tray::refresh(app);
        result
    }

    /// Opens the call audio from the settings; a missing device becomes
    /// silence, with a notice in plain words.
    fn call_audio(&self, app: &AppHandle) -> CallAudio {
        let s = self.settings();
        let source: Box<dyn Source> =
            match CpalSource::open(s.input_device.as_deref()).or_else(|_| CpalSource::open(None)) {
                Ok(src) => Box::new(src),
                Err(e) => {
                    notice(
                        app,
                        NoticeLevel::Warning,
                        format!("No microphone ({e}): the other side will hear silence."),
                    );
                    Box::new(Silence)
                }
            };
        let sink: Box<dyn Sink> =
            match CpalSink::open(s.output_device.as_deref()).or_else(|_| CpalSink::open(None)) {
                Ok(sink) => Box::new(sink),
                Err(e) => {
                    notice(
                        app,
                        NoticeLevel::Warning,
                        format!("No headset or speaker ({e}): you will not hear the other side."),
                    );
                    Box::new(NullSink)
                }
            };
        CallAudio { source, sink }
    }

    /// Dials `to` (a user name of my tenant).
    ///
    /// # Errors
    /// Not signed in, already in a call, or the engine refused.
    pub async fn dial(&self, app: &AppHandle, to: &str) -> Result<String, UiError> {
        let to = to.trim().trim_start_matches("tel:");
        if to.is_empty() {
            return Err(UiError::new(
                ErrorKind::InvalidState,
                "Type a number or a name.",
            ));
        }
        let engine = self.engine()?;
        let call_id = engine.dial(to, self.call_audio(app)).await?;
        {
            let mut inner = lock(&self.inner);
            let peer = UserRef {
                user: to.to_string(),
                display_name: to.to_string(),
            };
            match inner.calls.iter_mut().find(|c| c.call_id == call_id) {
                Some(c) => c.peer = peer,
                None => inner.calls.push(CallView {
                    call_id: call_id.clone(),
                    peer,
                    outgoing: true,
                    state: CallState::Dialing,
                    muted: false,
                    answered_at_ms: None,
                    stats: None,
                }),
            }
        }
        changed(app);
        Ok(call_id)
    }

    /// Answers a ringing call with the configured devices.
    ///
    /// # Errors
    /// No such call, or the engine refused.
    pub async fn answer(&self, app: &AppHandle, call_id: &str) -> Result<(), UiError> {
        let engine = self.engine()?;
        self.ringer.stop();
        engine.answer(call_id, self.call_audio(app)).await?;
        Ok(())
    }

    /// Declines a ringing call.
    ///
    /// # Errors
    /// Not signed in.
    pub fn decline(&self, call_id: &str) -> Result<(), UiError> {
        self.ringer.stop();
        self.engine()?.reject(call_id);
        Ok(())
    }

    /// Hangs up (or cancels our outgoing call).
    ///
    /// # Errors
    /// Not signed in.
    pub fn hangup(&self, call_id: &str) -> Result<(), UiError> {
        self.engine()?.hangup(call_id);
        Ok(())
    }

    /// Mutes or unmutes our microphone in a call.
    ///
    /// # Errors
    /// Not signed in, or no such call.
    pub fn set_mute(&self, app: &AppHandle, call_id: &str, muted: bool) -> Result<(), UiError> {
        let engine = self.engine()?;
        {
            let mut inner = lock(&self.inner);
            let call = inner
                .calls
                .iter_mut()
                .find(|c| c.call_id == call_id)
                .ok_or_else(|| UiError::new(ErrorKind::InvalidState, "That call is over."))?;
            call.muted = muted;
        }
        engine.set_mute(call_id, muted);
        changed(app);
        Ok(())
    }

    /// Puts a call on hold or resumes it (RFC 3264 re-offer).
    ///
    /// # Errors
    /// Not signed in, no such call, or the re-offer failed.
    pub async fn set_hold(&self, call_id: &str, held: bool) -> Result<(), UiError> {
        self.engine()?.set_hold(call_id, held).await?;
        Ok(())
    }

    /// Sends DTMF digits (RFC 4733) in a call.
    ///
    /// # Errors
    /// Not signed in, no such call, or digits outside `0-9*#A-D`.
    pub async fn send_dtmf(&self, call_id: &str, digits: &str) -> Result<(), UiError> {
        self.engine()?.send_dtmf(call_id, digits).await?;
        Ok(())
    }

    /// Sets my availability (`dnd` makes the switchboard reject calls as
    /// busy).
    ///
    /// # Errors
    /// Not signed in, or `offline` (reported, never set).
    pub fn set_presence(&self, app: &AppHandle, status: Presence) -> Result<(), UiError> {
        if status == Presence::Offline {
            return Err(UiError::new(
                ErrorKind::InvalidState,
                "Offline is shown, not chosen: sign out instead.",
            ));
        }
        self.engine()?.set_presence(status);
        lock(&self.inner).presence = Some(status);
        emit(app, AppEvent::Presence { status });
        crate::tray::refresh(app);
        Ok(())
    }

    /// Searches the directory of my tenant.
    ///
    /// # Errors
    /// Not signed in, server unreachable.
    pub async fn directory(
        &self,
        query: &str,
    ) -> Result<Vec<softphone_protocol::DirectoryEntry>, UiError> {
        Ok(self.api()?.directory(query).await?)
    }

    /// My last `limit` calls, newest first.
    ///
    /// # Errors
    /// Not signed in, server unreachable.
    pub async fn history(
        &self,
        limit: u32,
    ) -> Result<Vec<softphone_protocol::CallRecord>, UiError> {
        Ok(self.api()?.history(limit).await?)
    }

    /// The agent has seen the missed calls: the count goes back to 0.
    pub fn missed_seen(&self, app: &AppHandle) {
        lock(&self.inner).missed = 0;
        emit(app, AppEvent::MissedCalls { count: 0 });
        crate::tray::refresh(app);
    }

    /// Switches the devices of a call in progress (the call goes on).
    ///
    /// # Errors
    /// Not signed in, no such call, or the device cannot be opened.
    pub async fn set_call_devices(
        &self,
        call_id: &str,
        input: Option<String>,
        output: Option<String>,
    ) -> Result<(), UiError> {
        let engine = self.engine()?;
        let source: Option<Box<dyn Source>> = match input {
            Some(name) => Some(Box::new(
                CpalSource::open(
                    Some(&name)
                        .filter(|n| n.as_str() != "default")
                        .map(|n| n.as_str()),
                )
                .map_err(|e| UiError::new(ErrorKind::Device, format!("Microphone: {e}")))?,
            )),
            None => None,
        };
        let sink: Option<Box<dyn Sink>> = match output {
            Some(name) => Some(Box::new(
                CpalSink::open(
                    Some(&name)
                        .filter(|n| n.as_str() != "default")
                        .map(|n| n.as_str()),
                )
                .map_err(|e| UiError::new(ErrorKind::Device, format!("Headset: {e}")))?,
            )),
            None => None,
        };
        engine.set_audio_devices(call_id, source, sink).await?;
        Ok(())
    }

    /// Starts (`Some(device)`, `None` inside for the default) or stops the
    /// microphone level meter of the settings screen.
    ///
    /// # Errors
    /// The microphone cannot be opened.
    pub fn mic_meter(&self, app: &AppHandle, on: Option<Option<String>>) -> Result<(), UiError> {
        let mut meter = lock(&self.meter);
        meter.take();
        if let Some(device) = on {
            let app = app.clone();
            *meter = Some(
                crate::meter::Meter::start(device.as_deref(), move |dbfs| {
                    emit(&app, AppEvent::MicLevel { dbfs })
                })
                .map_err(|e| UiError::new(ErrorKind::Device, format!("Microphone: {e}")))?,
            );
        }
        Ok(())
    }

    /// The first call that is not ringing at us (the one hotkeys act on),
    /// and the first incoming call that rings.
    fn current(&self) -> (Option<CallView>, Option<CallView>) {
        let inner = lock(&self.inner);
        let ringing = inner
            .calls
            .iter()
            .find(|c| !c.outgoing && c.state == CallState::Ringing)
            .cloned();
        let active = inner
            .calls
            .iter()
            .find(|c| c.outgoing || c.state != CallState::Ringing)
            .cloned();
        (active, ringing)
    }

    /// Runs a hotkey or tray action on the current call.
    pub async fn act(&self, app: &AppHandle, action: HotkeyAction) -> Result<(), UiError> {
        let (active, ringing) = self.current();
        match action {
            HotkeyAction::Answer => match ringing {
                Some(c) => self.answer(app, &c.call_id).await,
                None => Ok(()),
            },
            HotkeyAction::Hangup => match (ringing, active) {
                (Some(c), _) => self.decline(&c.call_id),
                (None, Some(c)) => self.hangup(&c.call_id),
                (None, None) => Ok(()),
            },
            HotkeyAction::Mute => match active {
                Some(c) => self.set_mute(app, &c.call_id, !c.muted),
                None => Ok(()),
            },
            HotkeyAction::Hold => match active {
                Some(c) => {
                    let held = matches!(c.state, CallState::Held { local: true, .. });
                    self.set_hold(&c.call_id, !held).await
                }
                None => Ok(()),
            },
        }
    }

    /// Applies one engine event to the calls; returns what else to do.
    fn apply(&self, ev: &EngineEvent) -> Effects {
        let mut fx = Effects::default();
        let mut inner = lock(&self.inner);
        match ev {
            EngineEvent::Registered { .. } => {
                if !inner.online {
                    fx.notice = Some((NoticeLevel::Info, "Connected to the server again.".into()));
                }
                inner.online = true;
                fx.online = Some(true);
            }
            EngineEvent::Reconnecting { .. } => {
                if inner.online {
                    fx.notice = Some((
                        NoticeLevel::Warning,
                        "Can't reach the server — reconnecting. Calls in progress go on.".into(),
                    ));
                }
                inner.online = false;
                fx.online = Some(false);
            }
            EngineEvent::Dialing { call_id, to } => {
                inner.calls.push(CallView {
                    call_id: call_id.clone(),
                    peer: to.clone(),
                    outgoing: true,
                    state: CallState::Dialing,
                    muted: false,
                    answered_at_ms: None,
                    stats: None,
                });
                fx.calls = true;
            }
            EngineEvent::Incoming { call_id, from } => {
                inner.calls.push(CallView {
                    call_id: call_id.clone(),
                    peer: from.clone(),
                    outgoing: false,
                    state: CallState::Ringing,
                    muted: false,
                    answered_at_ms: None,
                    stats: None,
                });
                fx.calls = true;
                fx.ring = Some(from.clone());
            }
            EngineEvent::CallState { call_id, state } => {
                let idx = match inner.calls.iter().position(|c| &c.call_id == call_id) {
                    Some(i) => i,
                    None => {
                        // Our own dial, before `dial` returned.
                        inner.calls.push(CallView {
                            call_id: call_id.clone(),
                            peer: UserRef {
                                user: String::new(),
                                display_name: String::new(),
                            },
                            outgoing: true,
                            state: *state,
                            muted: false,
                            answered_at_ms: None,
                            stats: None,
                        });
                        inner.calls.len() - 1
                    }
                };
                let was_ringing_in = {
                    let c = &inner.calls[idx];
                    !c.outgoing && c.state == CallState::Ringing
                };
                if let CallState::Ended { reason } = state {
                    let c = inner.calls.remove(idx);
                    let missed = !c.outgoing
                        && c.answered_at_ms.is_none()
                        && matches!(
                            reason,
                            EndReason::NoAnswer
                                | EndReason::Cancelled
                                | EndReason::Failed
                                | EndReason::Unavailable
                        );
                    if missed {
                        inner.missed += 1;
                        fx.missed = Some((inner.missed, c.peer.clone()));
                    }
                } else {
                    let c = &mut inner.calls[idx];
                    c.state = *state;
                    if *state == CallState::Active && c.answered_at_ms.is_none() {
                        c.answered_at_ms = Some(now_ms());
                    }
                }
                fx.calls = true;
                let still_ringing = inner
                    .calls
                    .iter()
                    .any(|c| !c.outgoing && c.state == CallState::Ringing);
                fx.stop_ring = was_ringing_in && !still_ringing;
            }
            EngineEvent::Stats { call_id, stats } => {
                if let Some(c) = inner.calls.iter_mut().find(|c| &c.call_id == call_id) {
                    c.stats = Some(*stats);
                    fx.calls = true;
                }
            }
            EngineEvent::Presence { user, status } => {
                let me = inner.session.as_ref().map(|l| l.info.user.user.clone());
                if me.as_deref() == Some(user.user.as_str()) && *status != Presence::Offline {
                    inner.presence = Some(*status);
                    fx.presence = Some(*status);
                }
            }
            EngineEvent::AudioDeviceLost {
                input, replacement, ..
            } => {
                let what = if *input { "microphone" } else { "headset" };
                fx.notice = Some((
                    NoticeLevel::Warning,
                    format!("Your {what} went away; the call goes on with {replacement}."),
                ));
            }
            EngineEvent::ServerError { message, .. } => {
                fx.notice = Some((NoticeLevel::Warning, format!("The server said: {message}")));
            }
            EngineEvent::Disconnected { reason } => {
                let live = inner.session.take();
                inner.calls.clear();
                inner.online = false;
                fx.calls = true;
                fx.stop_ring = true;
                fx.signed_out = true;
                let expired = matches!(
                    reason,
                    softphone_engine::DisconnectReason::Unauthorized { .. }
                );
                if expired && let Some(l) = &live {
                    fx.delete_token = Some(l.account.clone());
                }
                fx.notice = Some((
                    NoticeLevel::Error,
                    if expired {
                        "Your sign-in has expired — sign in again.".to_string()
                    } else {
                        format!("Signed out: {reason}")
                    },
                ));
            }
            _ => {}
        }
        if fx.calls {
            fx.call_list = inner.calls.clone();
        }
        fx
    }
}

/// What an engine event asks of the UI, the tray, the ringer.
#[derive(Default)]
struct Effects {
    calls: bool,
    call_list: Vec<CallView>,
    ring: Option<UserRef>,
    stop_ring: bool,
    missed: Option<(u32, UserRef)>,
    presence: Option<Presence>,
    online: Option<bool>,
    notice: Option<(NoticeLevel, String)>,
    signed_out: bool,
    delete_token: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends an [`AppEvent`] to the UI.
pub fn emit(app: &AppHandle, ev: AppEvent) {
    if let Err(e) = app.emit("app", ev) {
        tracing::warn!(error = %e, "emit failed");
    }
}

/// Tells the agent something in plain words.
pub fn notice(app: &AppHandle, level: NoticeLevel, message: String) {
    tracing::info!(?level, %message, "notice");
    emit(app, AppEvent::Notice { level, message });
}

fn changed(app: &AppHandle) {
    let calls = app.state::<Shell>().snapshot().calls;
    emit(app, AppEvent::Calls { calls });
    crate::tray::refresh(app);
}

/// Whether the agent is looking at the window right now.
fn window_in_view(app: &AppHandle) -> bool {
    app.get_webview_window("main")
        .map(|w| w.is_visible().unwrap_or(false) && w.is_focused().unwrap_or(false))
        .unwrap_or(false)
}

fn os_notification(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!(error = %e, "no notification service");
    }
}

/// The one mapping from engine events to the UI (event `engine`, as the
/// engine serialises it) and to the shell's state, tray, ringer and OS
/// notifications.
fn on_engine_event(app: &AppHandle, ev: EngineEvent) {
    if let Err(e) = app.emit("engine", &ev) {
        tracing::warn!(error = %e, "emit failed");
    }
    let shell = app.state::<Shell>();
    let fx = shell.apply(&ev);
    if let Some(from) = &fx.ring {
        let s = shell.settings();
        shell
            .ringer
            .ring(s.ringer_device.clone(), s.ringtone, s.ringtone_volume);
        if !window_in_view(app) {
            // No focus stealing: a notification and the tray, never the window.
            os_notification(
                app,
                "Incoming call",
                &format!("{} ({})", from.display_name, from.user),
            );
        }
    }
    if fx.stop_ring {
        shell.ringer.stop();
    }
    if fx.calls {
        emit(
            app,
            AppEvent::Calls {
                calls: fx.call_list,
            },
        );
    }
    if let Some((count, from)) = fx.missed {
        emit(app, AppEvent::MissedCalls { count });
        if !window_in_view(app) {
            os_notification(
                app,
                "Missed call",
                &format!("{} ({})", from.display_name, from.user),
            );
        }
    }
    if let Some(status) = fx.presence {
        emit(app, AppEvent::Presence { status });
    }
    if let Some(online) = fx.online {
        emit(app, AppEvent::Online { online });
    }
    if let Some(account) = fx.delete_token
        && let Err(e) = shell.tokens.delete(&account)
    {
        tracing::warn!(error = %e, "cannot delete the expired token");
    }
    if fx.signed_out {
        emit(app, AppEvent::Session { session: None });
    }
    if let Some((level, message)) = fx.notice {
        notice(app, level, message);
    }
    crate::tray::refresh(app);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell() -> (Shell, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tmp");
        (
            Shell::new(dir.path().to_path_buf(), TokenStore::memory()),
            dir,
        )
    }

    fn bob() -> UserRef {
        UserRef {
            user: "bob".into(),
            display_name: "Bob Stone".into(),
        }
    }

    fn state(id: &str, state: CallState) -> EngineEvent {
        EngineEvent::CallState {
            call_id: id.into(),
            state,
        }
    }

    #[test]
    fn an_incoming_call_rings_is_answered_and_ends_without_counting_as_missed() {
        let (sh, _d) = shell();
        let fx = sh.apply(&EngineEvent::Incoming {
            call_id: "c1".into(),
            from: bob(),
        });
        assert_eq!(fx.ring, Some(bob()));
        assert_eq!(fx.call_list.len(), 1);
        assert_eq!(sh.tray_status().0, TrayStatus::Offline, "not signed in");
        let fx = sh.apply(&state("c1", CallState::Connecting));
        assert!(fx.stop_ring, "answering stops the ringer");
        let fx = sh.apply(&state("c1", CallState::Active));
        assert!(fx.call_list[0].answered_at_ms.is_some());
        let fx = sh.apply(&state(
            "c1",
            CallState::Ended {
                reason: EndReason::Completed,
            },
        ));
        assert!(fx.call_list.is_empty());
        assert_eq!(fx.missed, None);
        assert_eq!(sh.snapshot().missed, 0);
    }

    #[test]
    fn a_call_that_rings_out_or_is_cancelled_counts_as_missed_but_not_one_answered_elsewhere() {
        let (sh, _d) = shell();
        for (id, reason) in [
            ("c1", EndReason::NoAnswer),
            ("c2", EndReason::Cancelled),
            ("c3", EndReason::AnsweredElsewhere),
        ] {
            sh.apply(&EngineEvent::Incoming {
                call_id: id.into(),
                from: bob(),
            });
            let fx = sh.apply(&state(id, CallState::Ended { reason }));
            assert!(fx.stop_ring);
        }
        assert_eq!(sh.snapshot().missed, 2);
    }

    #[test]
    fn losing_the_server_is_said_in_plain_words_and_an_expired_token_signs_out() {
        let (sh, _d) = shell();
        lock(&sh.inner).online = true;
        let fx = sh.apply(&EngineEvent::Reconnecting {
            detail: "socket closed".into(),
        });
        assert_eq!(fx.online, Some(false));
        let (level, msg) = fx.notice.expect("notice");
        assert_eq!(level, NoticeLevel::Warning);
        assert!(msg.contains("Can't reach the server"), "{msg}");
        let fx = sh.apply(&EngineEvent::Registered {
            user: bob(),
            tenant: "acme".into(),
        });
        assert_eq!(fx.online, Some(true));
        assert!(fx.notice.is_some());

        sh.apply(&EngineEvent::Incoming {
            call_id: "c1".into(),
            from: bob(),
        });
        let fx = sh.apply(&EngineEvent::Disconnected {
            reason: softphone_engine::DisconnectReason::Unauthorized {
                refusal: softphone_engine::AuthRefusal::TokenExpired,
            },
        });
        assert!(fx.signed_out && fx.stop_ring);
        assert!(fx.call_list.is_empty());
        assert!(fx.notice.expect("notice").1.contains("sign in again"));
    }

    #[test]
    fn settings_survive_a_restart_and_keep_the_device_id() {
        let dir = tempfile::tempdir().expect("tmp");
        let first = Shell::new(dir.path().to_path_buf(), TokenStore::memory());
        let id = first.settings().device_id;
        assert!(id.starts_with("desktop-"), "{id}");
        let mut s = first.settings();
        s.ringtone_volume = 3.0;
        s.device_id = "forged".into();
        first.set_settings(s).expect("save");
        let again = Shell::new(dir.path().to_path_buf(), TokenStore::memory());
        assert_eq!(again.settings().device_id, id);
        assert_eq!(again.settings().ringtone_volume, 1.0, "clamped to 0–1");
    }
}
