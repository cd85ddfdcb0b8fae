//! The desktop app's runtime, without its window: the [`Model`] behind one
//! lock, the engine and HTTP client of the signed-in session, and the
//! [`Effect`]s carried out at the edges: the ringer, the OS keyring, the
//! settings file, and whatever the window system shows (UI events,
//! notifications, the tray) through a [`Surface`]. Every rule lives in
//! `softphone-app-model`; this crate only wires, and the Tauri shell
//! (`src-tauri/`) only implements [`Surface`] and forwards commands.
//!
//! Blocking work (opening cpal streams, the keyring over D-Bus) runs on
//! blocking threads, never on the async runtime's workers.
//!
//! ```no_run
//! # async fn demo(surface: std::sync::Arc<dyn softphone_app_runtime::Surface>)
//! #     -> Result<(), softphone_app_model::UiError> {
//! use softphone_app_runtime::Runtime;
//! use softphone_engine::credentials::TokenStore;
//! let rt = Runtime::new("/tmp/softphone-config".into(), TokenStore::memory(), surface);
//! rt.sign_in("http://127.0.0.1:8080", "acme", "alice", "correct horse").await?;
//! let call = rt.dial("bob").await?;
//! rt.hangup(&call)?;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use softphone_app_model::{
    AppEvent, AudioDevices, Effect, ErrorKind, HotkeyAction, Intent, Model, NoticeLevel,
    SessionInfo, Settings, Snapshot, UiError, dial_target, server_url, settings,
};
use softphone_audio::device::{CpalSink, CpalSource};
use softphone_audio::meter::Meter;
use softphone_audio::ringer::Ringer;
use softphone_audio::{NullSink, Silence, Sink, Source};
use softphone_engine::api::Api;
use softphone_engine::credentials::{TokenStore, account_key};
use softphone_engine::{CallAudio, Engine, EngineConfig};
use softphone_protocol::{CallRecord, DirectoryEntry, Presence, Role, SupervisorView};
use std::sync::{Arc, Weak};

use softphone_app_model::TrayView;

type R<T> = Result<T, UiError>;

/// The signed-in session's engine and HTTP client.
struct Live {
    engine: Engine,
    api: Api,
    /// Which sign-in this is: events of an earlier engine are ignored.
    generation: u64,
}

struct State {
    model: Model,
    live: Option<Live>,
    sign_ins: u64,
}

/// What the window system shows; the Tauri shell implements it.
pub trait Surface: Send + Sync {
    /// Sends an event to the UI.
    fn emit(&self, event: AppEvent);
    /// Shows an OS notification (only called when the window is not in
    /// view: no focus stealing).
    fn notify(&self, title: &str, body: &str);
    /// Whether the agent is looking at the window now (visible and
    /// focused).
    fn in_view(&self) -> bool;
    /// Redraws the tray when `view` differs from what it shows.
    fn render_tray(&self, view: &TrayView);
}

/// The runtime (the Tauri shell manages one).
pub struct Runtime {
    state: Mutex<State>,
    settings_path: PathBuf,
    tokens: TokenStore,
    ringer: Ringer,
    meter: Mutex<Option<Meter>>,
    surface: Arc<dyn Surface>,
    /// Itself, for the task that feeds it the engine's events.
    me: Weak<Runtime>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs blocking work (cpal, the keyring over D-Bus) off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> R<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UiError::new(ErrorKind::Other, format!("Background work failed: {e}")))
}

/// Opens a named audio device, `"default"`/`None` being the system's.
fn named(name: &Option<String>) -> Option<&str> {
    name.as_deref().filter(|n| *n != "default")
}

/// The call's audio from the settings; a missing device becomes silence,
/// with a warning in plain words.
fn open_audio(s: &Settings) -> (CallAudio, Vec<String>) {
    let mut warnings = Vec::new();
    let source: Box<dyn Source> =
        match CpalSource::open(named(&s.input_device)).or_else(|_| CpalSource::open(None)) {
            Ok(src) => Box::new(src),
            Err(e) => {
                warnings.push(format!(
                    "No microphone ({e}): the other side will hear silence."
                ));
                Box::new(Silence)
            }
        };
    let sink: Box<dyn Sink> =
        match CpalSink::open(named(&s.output_device)).or_else(|_| CpalSink::open(None)) {
            Ok(sink) => Box::new(sink),
            Err(e) => {
                warnings.push(format!(
                    "No headset or speaker ({e}): you will not hear the other side."
                ));
                Box::new(NullSink)
            }
        };
    (CallAudio { source, sink }, warnings)
}

/// The audio devices to pick from.
pub fn audio_devices() -> R<AudioDevices> {
    let all = softphone_audio::device::list()?;
    let names = |f: fn(&softphone_audio::device::DeviceInfo) -> bool| {
        all.iter()
            .filter(|d| f(d))
            .map(|d| d.name.clone())
            .collect()
    };
    Ok(AudioDevices {
        inputs: names(|d| d.input),
        outputs: names(|d| d.output),
    })
}

impl Runtime {
    /// Loads the settings from `config_dir/settings.json` (a new
    /// installation gets its endpoint id here); what is to be shown goes to
    /// `surface`.
    pub fn new(config_dir: PathBuf, tokens: TokenStore, surface: Arc<dyn Surface>) -> Arc<Self> {
        let settings_path = config_dir.join("settings.json");
        let loaded = settings::load(&settings_path, || {
            format!(
                "desktop-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        if let Err(e) = settings::save(&settings_path, &loaded) {
            tracing::warn!(error = %e, "cannot write settings");
        }
        Arc::new_cyclic(|me| Self {
            state: Mutex::new(State {
                model: Model::new(loaded),
                live: None,
                sign_ins: 0,
            }),
            settings_path,
            tokens,
            ringer: Ringer::start(),
            meter: Mutex::new(None),
            surface,
            me: me.clone(),
        })
    }

    /// The one lock; a panic while it was held leaves whole values behind
    /// (the model changes by whole assignments), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the model under the lock, then carries out what it asks.
    pub fn update(&self, f: impl FnOnce(&mut Model) -> Vec<Effect>) {
        let (fx, tray, live) = {
            let mut st = self.lock();
            let fx = f(&mut st.model);
            let ended = fx.contains(&Effect::EndSession);
            (
                fx,
                st.model.tray(),
                if ended { st.live.take() } else { None },
            )
        };
        if let Some(live) = live {
            live.engine.shutdown();
        }
        let notify = |title: &str, from: &softphone_protocol::UserRef| {
            if !self.surface.in_view() {
                let body = format!("{} ({})", from.display_name, from.user);
                self.surface.notify(title, &body);
            }
        };
        for e in fx {
            match e {
                Effect::Emit(ev) => self.emit(ev),
                Effect::Ring { from } => {
                    let s = self.settings();
                    self.ringer
                        .ring(s.ringer_device, s.ringtone, s.ringtone_volume);
                    notify("Incoming call", &from);
                }
                Effect::StopRinging => self.ringer.stop(),
                Effect::Missed { from } => notify("Missed call", &from),
                Effect::ForgetToken { account } => {
                    // A plain thread: this may run outside the async runtime
                    // (a tray click), and D-Bus must not block the caller.
                    let tokens = self.tokens.clone();
                    std::thread::spawn(move || {
                        if let Err(e) = tokens.delete(&account) {
                            tracing::warn!(error = %e, "cannot delete the refused token");
                        }
                    });
                }
                Effect::SaveSettings(s) => {
                    if let Err(e) = settings::save(&self.settings_path, &s) {
                        let m = format!("Can't save the settings: {e}");
                        self.emit(AppEvent::notice(NoticeLevel::Warning, m));
                    }
                }
                _ => {}
            }
        }
        self.surface.render_tray(&tray);
    }

    /// Sends an event to the UI (notices are logged too).
    pub fn emit(&self, ev: AppEvent) {
        if let AppEvent::Notice { level, message } = &ev {
            tracing::info!(?level, %message, "notice");
        }
        self.surface.emit(ev);
    }

    /// Applies a model change that may be refused.
    fn try_update(&self, f: impl FnOnce(&mut Model) -> R<Vec<Effect>>) -> R<()> {
        let mut result = Ok(());
        self.update(|m| {
            f(m).unwrap_or_else(|e| {
                result = Err(e);
                Vec::new()
            })
        });
        result
    }

    /// Everything the UI draws from.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().model.snapshot()
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.lock().model.settings().clone()
    }

    fn live<T>(&self, f: impl FnOnce(&Live) -> T) -> R<T> {
        self.lock()
            .live
            .as_ref()
            .map(f)
            .ok_or_else(UiError::not_signed_in)
    }

    /// Signs in with a password: the token goes to the OS keyring (the
    /// password is kept nowhere), then signaling connects.
    ///
    /// # Errors
    /// Wrong credentials, an unreachable server. A keyring that refuses is
    /// a notice; the session still starts (it will not survive a restart).
    pub async fn sign_in(
        &self,
        server: &str,
        tenant: &str,
        user: &str,
        password: &str,
    ) -> R<SessionInfo> {
        let server = server_url(server)?;
        let login = Api::login(&server, tenant.trim(), user.trim(), password).await?;
        let account = account_key(&server, &login.tenant, &login.user.user);
        let (tokens, key, token) = (self.tokens.clone(), account.clone(), login.token.clone());
        if let Err(e) = blocking(move || tokens.save(&key, &token)).await? {
            self.emit(AppEvent::notice(
                NoticeLevel::Warning,
                format!(
                    "Signed in, but the system keyring refused to keep the sign-in ({e}); \
                     you will have to sign in again next time."
                ),
            ));
        }
        self.connect(&server, &login.tenant, login.token, Some(account))
            .await
    }

    /// Signs in silently: with the session handed over in
    /// `SOFTPHONE_SERVER/TENANT/USER/TOKEN` (never stored), or with the last
    /// account's token from the keyring. `Ok(None)`: nothing to restore.
    ///
    /// # Errors
    /// An unreachable server or keyring; an expired token (deleted).
    pub async fn restore(&self) -> R<Option<SessionInfo>> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let handed_over = (|| {
            Some((
                var("SOFTPHONE_SERVER")?,
                var("SOFTPHONE_TENANT")?,
                var("SOFTPHONE_USER")?,
                var("SOFTPHONE_TOKEN")?,
            ))
        })();
        let (server, tenant, token, account) = match (handed_over, self.settings().last_account) {
            // SOFTPHONE_USER must be set too; who we are comes from `welcome`.
            (Some((s, t, _user, token)), _) => (s, t, token, None),
            (None, Some(acc)) => {
                let key = account_key(&acc.server, &acc.tenant, &acc.user);
                let (tokens, k) = (self.tokens.clone(), key.clone());
                let Some(token) = blocking(move || tokens.load(&k)).await?? else {
                    return Ok(None);
                };
                (acc.server, acc.tenant, token, Some(key))
            }
            (None, None) => return Ok(None),
        };
        self.lock().model.set_restoring(true);
        let r = self.connect(&server, &tenant, token, account.clone()).await;
        self.lock().model.set_restoring(false);
        if let (Err(e), Some(key)) = (&r, account)
            && e.kind == ErrorKind::Unauthorized
        {
            let tokens = self.tokens.clone();
            let _ = blocking(move || tokens.delete(&key)).await;
        }
        r.map(Some)
    }

    async fn connect(
        &self,
        server: &str,
        tenant: &str,
        token: String,
        account: Option<String>,
    ) -> R<SessionInfo> {
        let endpoint_id = self.settings().endpoint_id;
        let mut config = EngineConfig::new(server, &token, &endpoint_id);
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        config.endpoint_name = format!("Softphone on {}", host.trim());
        config.media.loopback_only = std::env::var_os("SOFTPHONE_ICE_LOOPBACK").is_some();
        // Media through the TURN server only: for a network that must not
        // see the agent's addresses, and for tests of the relay path.
        config.media.relay_only = std::env::var_os("SOFTPHONE_ICE_RELAY").is_some();
        let (engine, mut events) = Engine::connect(config).await?;
        let me = match events.recv().await {
            Some(softphone_engine::EngineEvent::Registered { user, .. }) => user,
            _ => {
                return Err(UiError::new(
                    ErrorKind::Unreachable,
                    "The server hung up during sign-in.",
                ));
            }
        };
        let api = Api::new(server, &token);
        // The role decides whether the team view shows; a server that
        // cannot tell (older, or a hiccup) leaves the agent's view.
        let role = match api.me().await {
            Ok(m) => m.role,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read my role; showing the agent's view");
                Role::Agent
            }
        };
        let info = SessionInfo {
            server: server.into(),
            tenant: tenant.into(),
            user: me,
            endpoint_id,
            role,
        };
        let (old, generation) = {
            let mut st = self.lock();
            st.sign_ins += 1;
            let generation = st.sign_ins;
            (
                st.live.replace(Live {
                    engine,
                    api,
                    generation,
                }),
                generation,
            )
        };
        if let Some(old) = old {
            old.engine.shutdown();
        }
        self.update(|m| m.signed_in(info.clone(), account));
        let me = self.me.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let Some(rt) = me.upgrade() else { return };
                let current = rt
                    .lock()
                    .live
                    .as_ref()
                    .is_some_and(|l| l.generation == generation);
                if current {
                    rt.update(|m| m.apply(&ev, now_ms()));
                }
            }
        });
        Ok(info)
    }

    /// Signs out: stops signaling, deletes the token from the keyring, then
    /// shows the sign-in form and revokes the token on the server (best
    /// effort: a server that cannot be reached only logs a warning).
    ///
    /// # Errors
    /// When the keyring refuses to delete.
    pub async fn sign_out(&self) -> R<()> {
        let (live, account) = {
            let mut st = self.lock();
            (st.live.take(), st.model.account().map(str::to_string))
        };
        if let Some(live) = &live {
            live.engine.shutdown();
        }
        // The keyring forgets the token before the form shows: once the
        // agent sees "signed out", the next start cannot sign in silently,
        // even if the app is killed while the server is told.
        let forgotten: R<()> = async {
            if let Some(key) = account {
                let tokens = self.tokens.clone();
                blocking(move || tokens.delete(&key)).await??;
            }
            Ok(())
        }
        .await;
        self.update(Model::signed_out);
        if let Some(live) = live
            && let Err(e) = live.api.logout().await
        {
            tracing::warn!(error = %e, "logout on the server failed");
        }
        forgotten
    }

    async fn call_audio(&self) -> R<CallAudio> {
        let s = self.settings();
        let (audio, warnings) = blocking(move || open_audio(&s)).await?;
        for w in warnings {
            self.emit(AppEvent::notice(NoticeLevel::Warning, w));
        }
        Ok(audio)
    }

    /// Dials `to` (a user name of my tenant, or a `tel:` link).
    ///
    /// # Errors
    /// Nothing to dial, not signed in, or the engine refused.
    pub async fn dial(&self, to: &str) -> R<String> {
        let to = dial_target(to)?;
        let engine = self.live(|l| l.engine.clone())?;
        Ok(engine.dial(&to, self.call_audio().await?).await?)
    }

    /// Answers a ringing call with the configured audio devices.
    ///
    /// # Errors
    /// No such call, or the engine refused.
    pub async fn answer(&self, call_id: &str) -> R<()> {
        let engine = self.live(|l| l.engine.clone())?;
        self.ringer.stop();
        Ok(engine.answer(call_id, self.call_audio().await?).await?)
    }

    /// Declines a ringing call.
    ///
    /// # Errors
    /// Not signed in.
    pub fn decline(&self, call_id: &str) -> R<()> {
        self.ringer.stop();
        self.live(|l| l.engine.reject(call_id))
    }

    /// Hangs up (or cancels our outgoing call).
    ///
    /// # Errors
    /// Not signed in.
    pub fn hangup(&self, call_id: &str) -> R<()> {
        self.live(|l| l.engine.hangup(call_id))
    }

    /// Mutes or unmutes our microphone in a call.
    ///
    /// # Errors
    /// Not signed in, or the call is over.
    pub fn set_mute(&self, call_id: &str, muted: bool) -> R<()> {
        self.try_update(|m| m.set_muted(call_id, muted))?;
        self.live(|l| l.engine.set_mute(call_id, muted))
    }

    /// Holds or resumes a call (RFC 3264 re-offer).
    ///
    /// # Errors
    /// Not signed in, no such call, or the re-offer failed.
    pub async fn set_hold(&self, call_id: &str, held: bool) -> R<()> {
        let engine = self.live(|l| l.engine.clone())?;
        Ok(engine.set_hold(call_id, held).await?)
    }

    /// Sends DTMF digits (RFC 4733) in a call.
    ///
    /// # Errors
    /// Not signed in, no such call, or digits outside `0-9*#A-D`.
    pub async fn send_dtmf(&self, call_id: &str, digits: &str) -> R<()> {
        let engine = self.live(|l| l.engine.clone())?;
        Ok(engine.send_dtmf(call_id, digits).await?)
    }

    /// Sets my availability (`dnd` makes the switchboard refuse calls as
    /// busy).
    ///
    /// # Errors
    /// Not signed in, or `offline` (shown, never chosen).
    pub fn set_presence(&self, status: Presence) -> R<()> {
        self.try_update(|m| m.set_presence(status))?;
        self.live(|l| l.engine.set_presence(status))
    }

    /// Searches the directory of my tenant.
    ///
    /// # Errors
    /// Not signed in, server unreachable.
    pub async fn directory(&self, query: &str) -> R<Vec<DirectoryEntry>> {
        let api = self.live(|l| l.api.clone())?;
        Ok(api.directory(query).await?)
    }

    /// My tenant's queues and agents now (the team view).
    ///
    /// # Errors
    /// Not signed in, server unreachable, not a supervisor.
    pub async fn supervisor(&self) -> R<SupervisorView> {
        let api = self.live(|l| l.api.clone())?;
        Ok(api.supervisor().await?)
    }

    /// My last `limit` calls, newest first.
    ///
    /// # Errors
    /// Not signed in, server unreachable.
    pub async fn history(&self, limit: u32) -> R<Vec<CallRecord>> {
        let api = self.live(|l| l.api.clone())?;
        Ok(api.history(limit).await?)
    }

    /// Switches the audio devices of a call in progress (the call goes on).
    ///
    /// # Errors
    /// Not signed in, no such call, or the device cannot be opened.
    pub async fn set_call_devices(
        &self,
        call_id: &str,
        input: Option<String>,
        output: Option<String>,
    ) -> R<()> {
        let engine = self.live(|l| l.engine.clone())?;
        type Opened = (Option<Box<dyn Source>>, Option<Box<dyn Sink>>);
        let (source, sink): Opened = blocking(move || -> R<Opened> {
            let source = match &input {
                Some(_) => Some(Box::new(CpalSource::open(named(&input))?) as Box<dyn Source>),
                None => None,
            };
            let sink = match &output {
                Some(_) => Some(Box::new(CpalSink::open(named(&output))?) as Box<dyn Sink>),
                None => None,
            };
            Ok((source, sink))
        })
        .await??;
        Ok(engine.set_audio_devices(call_id, source, sink).await?)
    }

    /// Starts (`Some(device)`, `None` inside for the default) or stops the
    /// microphone level meter of the settings screen.
    ///
    /// # Errors
    /// The microphone cannot be opened.
    pub async fn mic_meter(&self, on: Option<Option<String>>) -> R<()> {
        self.meter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(device) = on else { return Ok(()) };
        let surface = self.surface.clone();
        let meter = blocking(move || {
            Meter::start(device.as_deref(), move |dbfs| {
                surface.emit(AppEvent::MicLevel { dbfs })
            })
        })
        .await??;
        *self.meter.lock().unwrap_or_else(PoisonError::into_inner) = Some(meter);
        Ok(())
    }

    /// Plays one cycle of the ringtone on the ringer (`false`) or call
    /// output (`true`) device of `s`.
    pub fn test_ringtone(&self, s: Settings, on_output: bool) {
        let device = if on_output {
            s.output_device
        } else {
            s.ringer_device
        };
        self.ringer.test(device, s.ringtone, s.ringtone_volume);
    }

    /// Stops the ringtone (the app is quitting).
    pub fn stop_ringing(&self) {
        self.ringer.stop();
    }

    /// Runs a hotkey or tray action on the call it is about.
    ///
    /// # Errors
    /// As the command it turns into.
    pub async fn act(&self, action: HotkeyAction) -> R<()> {
        let intent = self.lock().model.intent(action);
        match intent {
            None => Ok(()),
            Some(Intent::Answer(id)) => self.answer(&id).await,
            Some(Intent::Decline(id)) => self.decline(&id),
            Some(Intent::Hangup(id)) => self.hangup(&id),
            Some(Intent::Mute(id, m)) => self.set_mute(&id, m),
            Some(Intent::Hold(id, h)) => self.set_hold(&id, h).await,
        }
    }
}
