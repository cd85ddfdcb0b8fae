//! Global hotkeys (tauri-plugin-global-shortcut): answer, hang up/decline,
//! mute toggle, hold toggle, from any application. A hotkey that cannot be
//! registered (taken by another program, not an accelerator) is reported
//! in the settings, never swallowed.

use std::collections::HashMap;
use std::sync::Mutex;

use tauri::{AppHandle, Manager};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Shortcut, ShortcutState};

use crate::bindings::{AppEvent, HotkeyAction, HotkeyStatus, Hotkeys};
use crate::shell::{Shell, emit};

/// Shortcut id → action, for the plugin's handler.
#[derive(Default)]
pub struct Bindings(Mutex<HashMap<u32, HotkeyAction>>);

/// The plugin, with a handler that runs the bound action on key press.
pub fn plugin() -> tauri::plugin::TauriPlugin<tauri::Wry> {
    tauri_plugin_global_shortcut::Builder::new()
        .with_handler(|app, shortcut, event| {
            if event.state() != ShortcutState::Pressed {
                return;
            }
            let action = app
                .try_state::<Bindings>()
                .and_then(|b| b.0.lock().ok()?.get(&shortcut.id()).copied());
            if let Some(action) = action {
                let app = app.app_handle().clone();
                crate::run_action(&app, action);
            }
        })
        .build()
}

/// (Re)registers the hotkeys of `keys`; returns one status per action and
/// sends them to the UI.
pub fn apply(app: &AppHandle, keys: &Hotkeys) -> Vec<HotkeyStatus> {
    let gs = app.global_shortcut();
    if let Err(e) = gs.unregister_all() {
        tracing::warn!(error = %e, "unregistering hotkeys");
    }
    let mut map = HashMap::new();
    let mut out = Vec::new();
    for (action, accel) in [
        (HotkeyAction::Answer, &keys.answer),
        (HotkeyAction::Hangup, &keys.hangup),
        (HotkeyAction::Mute, &keys.mute),
        (HotkeyAction::Hold, &keys.hold),
    ] {
        let mut status = HotkeyStatus {
            action,
            accelerator: accel.clone(),
            registered: false,
            error: None,
        };
        if !accel.trim().is_empty() {
            match accel.parse::<Shortcut>() {
                Err(e) => status.error = Some(format!("not a hotkey: {e}")),
                Ok(sc) if map.contains_key(&sc.id()) => {
                    status.error = Some("already used by another action".into())
                }
                Ok(sc) => match gs.register(sc) {
                    Ok(()) => {
                        status.registered = true;
                        map.insert(sc.id(), action);
                    }
                    Err(e) => status.error = Some(format!("taken by another program? {e}")),
                },
            }
        }
        out.push(status);
    }
    if let Some(b) = app.try_state::<Bindings>()
        && let Ok(mut m) = b.0.lock()
    {
        *m = map;
    }
    app.state::<Shell>().set_hotkeys(out.clone());
    emit(
        app,
        AppEvent::Hotkeys {
            status: out.clone(),
        },
    );
    out
}
