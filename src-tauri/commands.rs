//! The Tauri commands the UI calls (through `ui/src/backend.ts` only). Each
//! is a few lines delegating to the [`Shell`] and the engine behind it.

use softphone_protocol::{CallRecord, DirectoryEntry, Presence};
use tauri::{AppHandle, State};

use crate::bindings::{Devices, HotkeyStatus, SessionInfo, Settings, Snapshot, UiError};
use crate::shell::Shell;

type R<T> = Result<T, UiError>;

/// Everything the UI draws from.
#[tauri::command]
pub fn snapshot(shell: State<'_, Shell>) -> Snapshot {
    shell.snapshot()
}

/// Signs in; the token goes to the OS keyring.
#[tauri::command]
pub async fn sign_in(
    app: AppHandle,
    shell: State<'_, Shell>,
    server: String,
    tenant: String,
    user: String,
    password: String,
) -> R<SessionInfo> {
    shell
        .sign_in(&app, &server, &tenant, &user, &password)
        .await
}

/// Signs out and deletes the keyring entry.
#[tauri::command]
pub async fn sign_out(app: AppHandle, shell: State<'_, Shell>) -> R<()> {
    shell.sign_out(&app).await
}

/// Dials a user (or number) of my tenant; returns the call id.
#[tauri::command]
pub async fn dial(app: AppHandle, shell: State<'_, Shell>, to: String) -> R<String> {
    shell.dial(&app, &to).await
}

/// Answers a ringing call.
#[tauri::command]
pub async fn answer(app: AppHandle, shell: State<'_, Shell>, call_id: String) -> R<()> {
    shell.answer(&app, &call_id).await
}

/// Declines a ringing call.
#[tauri::command]
pub fn decline(shell: State<'_, Shell>, call_id: String) -> R<()> {
    shell.decline(&call_id)
}

/// Hangs up.
#[tauri::command]
pub fn hangup(shell: State<'_, Shell>, call_id: String) -> R<()> {
    shell.hangup(&call_id)
}

/// Mutes or unmutes.
#[tauri::command]
pub fn set_mute(app: AppHandle, shell: State<'_, Shell>, call_id: String, muted: bool) -> R<()> {
    shell.set_mute(&app, &call_id, muted)
}

/// Holds or resumes.
#[tauri::command]
pub async fn set_hold(shell: State<'_, Shell>, call_id: String, held: bool) -> R<()> {
    shell.set_hold(&call_id, held).await
}

/// Sends DTMF digits.
#[tauri::command]
pub async fn send_dtmf(shell: State<'_, Shell>, call_id: String, digits: String) -> R<()> {
    shell.send_dtmf(&call_id, &digits).await
}

/// Sets my availability.
#[tauri::command]
pub fn set_presence(app: AppHandle, shell: State<'_, Shell>, status: Presence) -> R<()> {
    shell.set_presence(&app, status)
}

/// Searches the directory.
#[tauri::command]
pub async fn directory(shell: State<'_, Shell>, query: String) -> R<Vec<DirectoryEntry>> {
    shell.directory(&query).await
}

/// My recent calls, newest first.
#[tauri::command]
pub async fn history(shell: State<'_, Shell>, limit: u32) -> R<Vec<CallRecord>> {
    shell.history(limit).await
}

/// The agent looked at the missed calls.
#[tauri::command]
pub fn missed_seen(app: AppHandle, shell: State<'_, Shell>) {
    shell.missed_seen(&app)
}

/// Sound devices to pick from.
#[tauri::command]
pub fn devices() -> R<Devices> {
    crate::list_devices()
}

/// Switches a call's devices mid-call (`None`: leave as is).
#[tauri::command]
pub async fn set_call_devices(
    shell: State<'_, Shell>,
    call_id: String,
    input: Option<String>,
    output: Option<String>,
) -> R<()> {
    shell.set_call_devices(&call_id, input, output).await
}

/// Saves the settings; re-registers the hotkeys and the login item.
#[tauri::command]
pub fn save_settings(app: AppHandle, settings: Settings) -> R<Vec<HotkeyStatus>> {
    crate::apply_settings(&app, settings)
}

/// Plays one cycle of the ringtone on the ringer device.
#[tauri::command]
pub fn test_ringer(shell: State<'_, Shell>, settings: Settings) {
    shell.ringer.test(
        settings.ringer_device,
        settings.ringtone,
        settings.ringtone_volume,
    )
}

/// Plays one cycle of the ringtone on the call output device.
#[tauri::command]
pub fn test_output(shell: State<'_, Shell>, settings: Settings) {
    shell.ringer.test(
        settings.output_device,
        settings.ringtone,
        settings.ringtone_volume,
    )
}

/// Starts (`on`) or stops the microphone level meter (`app` events
/// `mic_level`).
#[tauri::command]
pub fn mic_meter(
    app: AppHandle,
    shell: State<'_, Shell>,
    on: bool,
    device: Option<String>,
) -> R<()> {
    shell.mic_meter(&app, on.then_some(device))
}
