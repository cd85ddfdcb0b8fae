//! The Tauri commands the UI calls (through `ui/src/backend.ts` only). Each
//! delegates in a line or two to the [`Runtime`].

use softphone_app_model::{AudioDevices, HotkeyStatus, SessionInfo, Settings, Snapshot, UiError};
use softphone_protocol::{CallRecord, DirectoryEntry, Presence, SupervisorView};
use std::sync::Arc;

use softphone_app_model::ErrorKind;
use softphone_app_runtime::Runtime;
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use crate::hotkeys;

type R<T> = Result<T, UiError>;
type Shell<'a> = State<'a, Arc<Runtime>>;

/// Everything the UI draws from.
#[tauri::command]
pub fn snapshot(shell: Shell<'_>) -> Snapshot {
    shell.snapshot()
}

/// Signs in; the token goes to the OS keyring.
#[tauri::command]
pub async fn sign_in(
    shell: Shell<'_>,
    server: String,
    tenant: String,
    user: String,
    password: String,
) -> R<SessionInfo> {
    shell.sign_in(&server, &tenant, &user, &password).await
}

/// Signs out and deletes the keyring entry.
#[tauri::command]
pub async fn sign_out(shell: Shell<'_>) -> R<()> {
    shell.sign_out().await
}

/// Dials a user (or number) of my tenant; returns the call id.
#[tauri::command]
pub async fn dial(shell: Shell<'_>, to: String) -> R<String> {
    shell.dial(&to).await
}

/// Answers a ringing call.
#[tauri::command]
pub async fn answer(shell: Shell<'_>, call_id: String) -> R<()> {
    shell.answer(&call_id).await
}

/// Declines a ringing call.
#[tauri::command]
pub fn decline(shell: Shell<'_>, call_id: String) -> R<()> {
    shell.decline(&call_id)
}

/// Hangs up.
#[tauri::command]
pub fn hangup(shell: Shell<'_>, call_id: String) -> R<()> {
    shell.hangup(&call_id)
}

/// Mutes or unmutes.
#[tauri::command]
pub fn set_mute(shell: Shell<'_>, call_id: String, muted: bool) -> R<()> {
    shell.set_mute(&call_id, muted)
}

/// Holds or resumes.
#[tauri::command]
pub async fn set_hold(shell: Shell<'_>, call_id: String, held: bool) -> R<()> {
    shell.set_hold(&call_id, held).await
}

/// Sends DTMF digits.
#[tauri::command]
pub async fn send_dtmf(shell: Shell<'_>, call_id: String, digits: String) -> R<()> {
    shell.send_dtmf(&call_id, &digits).await
}

/// Sets my availability.
#[tauri::command]
pub fn set_presence(shell: Shell<'_>, status: Presence) -> R<()> {
    shell.set_presence(status)
}

/// Searches the directory.
#[tauri::command]
pub async fn directory(shell: Shell<'_>, query: String) -> R<Vec<DirectoryEntry>> {
    shell.directory(&query).await
}

/// My recent calls, newest first.
#[tauri::command]
pub async fn history(shell: Shell<'_>, limit: u32) -> R<Vec<CallRecord>> {
    shell.history(limit).await
}

/// My tenant's queues and agents now (the team view of supervisors).
#[tauri::command]
pub async fn supervisor(shell: Shell<'_>) -> R<SupervisorView> {
    shell.supervisor().await
}

/// The agent looked at the missed calls.
#[tauri::command]
pub fn missed_seen(shell: Shell<'_>) {
    shell.update(|m| m.missed_seen());
}

/// Audio devices to pick from.
#[tauri::command]
pub async fn devices() -> R<AudioDevices> {
    tauri::async_runtime::spawn_blocking(softphone_app_runtime::audio_devices)
        .await
        .map_err(|e| UiError::new(ErrorKind::Other, e.to_string()))?
}

/// Switches a call's audio devices mid-call (`None`: leave as is).
#[tauri::command]
pub async fn set_call_devices(
    shell: Shell<'_>,
    call_id: String,
    input: Option<String>,
    output: Option<String>,
) -> R<()> {
    shell.set_call_devices(&call_id, input, output).await
}

/// Saves the settings; re-registers the hotkeys and turns start-at-login
/// on or off.
#[tauri::command]
pub fn save_settings(app: AppHandle, shell: Shell<'_>, settings: Settings) -> R<Vec<HotkeyStatus>> {
    let autostart_before = shell.settings().start_at_login;
    shell.update(|m| m.set_settings(settings));
    let now = shell.settings();
    if now.start_at_login != autostart_before {
        let al = app.autolaunch();
        let r = if now.start_at_login {
            al.enable()
        } else {
            al.disable()
        };
        r.map_err(|e| UiError::new(ErrorKind::Other, format!("Start at login: {e}")))?;
    }
    let status = hotkeys::register(&app, &now.hotkeys);
    shell.update(|m| m.set_hotkeys(status.clone()));
    Ok(status)
}

/// Plays one cycle of the ringtone on the ringer device.
#[tauri::command]
pub fn test_ringer(shell: Shell<'_>, settings: Settings) {
    shell.test_ringtone(settings, false)
}

/// Plays one cycle of the ringtone on the call output device.
#[tauri::command]
pub fn test_output(shell: Shell<'_>, settings: Settings) {
    shell.test_ringtone(settings, true)
}

/// Starts (`on`) or stops the microphone level meter (`app` events
/// `mic_level`).
#[tauri::command]
pub async fn mic_meter(shell: Shell<'_>, on: bool, device: Option<String>) -> R<()> {
    shell.mic_meter(on.then_some(device)).await
}
