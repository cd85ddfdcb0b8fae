//! Global hotkeys (tauri-plugin-global-shortcut): answer, hang up/decline,
//! mute toggle, hold toggle, from any application. A hotkey that cannot be
//! registered (taken by another program, not an accelerator) is reported
//! in the settings, never swallowed. What a hotkey does is the model's
//! ([`softphone_app_model::Model::intent`]); this only registers keys.

use std::collections::HashMap;
use std::sync::Mutex;

use softphone_app_model::{HotkeyAction, HotkeyStatus, Hotkeys};
use tauri::{AppHandle, Manager};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, Shortcut, ShortcutState};

/// Shortcut id → action, for the plugin's handler.
#[derive(Default)]
struct Bound(Mutex<HashMap<u32, HotkeyAction>>);

/// The plugin, calling `on_press` with the bound action on key press.
pub fn plugin(on_press: fn(&AppHandle, HotkeyAction)) -> tauri::plugin::TauriPlugin<tauri::Wry> {
    tauri_plugin_global_shortcut::Builder::new()
        .with_handler(move |app, shortcut, event| {
            if event.state() != ShortcutState::Pressed {
                return;
            }
            let action = app
                .try_state::<Bound>()
                .and_then(|b| b.0.lock().ok()?.get(&shortcut.id()).copied());
            if let Some(action) = action {
                on_press(app, action);
            }
        })
        .build()
}

/// (Re)registers the hotkeys of `keys`; returns one status per action.
pub fn register(app: &AppHandle, keys: &Hotkeys) -> Vec<HotkeyStatus> {
    let gs = app.global_shortcut();
    if let Err(e) = gs.unregister_all() {
        tracing::warn!(error = %e, "unregistering hotkeys");
    }
    let mut map = HashMap::new();
    let mut out = Vec::new();
    for (action, accel) in keys.each() {
        let mut status = HotkeyStatus {
            action,
            accelerator: accel.to_string(),
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
    let bound = app.state::<Bound>();
    *bound.0.lock().unwrap_or_else(|p| p.into_inner()) = map;
    out
}

/// Makes the key map a managed state (once, at setup).
pub fn init(app: &AppHandle) {
    app.manage(Bound::default());
}
