//! The desktop softphone: a Tauri 2 shell over the call engine
//! (`softphone-engine`). The web UI in `ui/` draws the screens; this crate
//! runs the engine, the sound devices, the OS keyring, the tray, global
//! hotkeys, the ringer and notifications.
//!
//! - [`commands`]: what the UI calls, each a few lines over [`shell::Shell`];
//! - [`bindings`]: the IPC types, generated into `ui/src/bindings`;
//! - [`shell`]: state and the one mapping of engine events;
//! - [`tray`], [`hotkeys`], [`ringer`], [`meter`].
//!
//! Command line: `softphone [--minimised] [tel:NUMBER]`. A second launch
//! focuses the first (and hands it the `tel:` number).

pub mod bindings;
pub mod commands;
pub mod hotkeys;
pub mod meter;
pub mod ringer;
pub mod shell;
pub mod tray;

use softphone_engine::credentials::TokenStore;
use tauri::{AppHandle, Manager, RunEvent, WindowEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt};
use tauri_plugin_deep_link::DeepLinkExt;

use bindings::{
    AppEvent, Devices, ErrorKind, HotkeyAction, HotkeyStatus, NoticeLevel, Settings, UiError,
};
use shell::{Shell, emit, notice};

/// Shows, unminimises and focuses the main window (tray Show, tray click, a
/// second launch). Never called on an incoming call: no focus stealing.
pub fn show_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Runs a call action from a hotkey or the tray; failures become notices.
pub fn run_action(app: &AppHandle, action: HotkeyAction) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let shell = app.state::<Shell>();
        if let Err(e) = shell.act(&app, action).await {
            notice(&app, NoticeLevel::Warning, e.message);
        }
    });
}

/// Lists the sound devices.
///
/// # Errors
/// [`ErrorKind::Device`] when the sound system cannot be asked.
pub fn list_devices() -> Result<Devices, UiError> {
    let all = softphone_audio::device::list()
        .map_err(|e| UiError::new(ErrorKind::Device, format!("Sound devices: {e}")))?;
    Ok(Devices {
        inputs: all
            .iter()
            .filter(|d| d.input)
            .map(|d| d.name.clone())
            .collect(),
        outputs: all
            .iter()
            .filter(|d| d.output)
            .map(|d| d.name.clone())
            .collect(),
    })
}

/// Stores settings, re-registers hotkeys, and turns start-at-login on or
/// off.
///
/// # Errors
/// The settings file or the login item cannot be written.
pub fn apply_settings(app: &AppHandle, settings: Settings) -> Result<Vec<HotkeyStatus>, UiError> {
    let shell = app.state::<Shell>();
    let before = shell.settings();
    shell.set_settings(settings)?;
    let now = shell.settings();
    if now.start_at_login != before.start_at_login {
        let al = app.autolaunch();
        let r = if now.start_at_login {
            al.enable()
        } else {
            al.disable()
        };
        r.map_err(|e| UiError::new(ErrorKind::Other, format!("Start at login: {e}")))?;
    }
    emit(
        app,
        AppEvent::Settings {
            settings: now.clone(),
        },
    );
    Ok(hotkeys::apply(app, &now.hotkeys))
}

/// The number in a `tel:` argument, if any (`tel:+1-555-0100` → `+15550100`,
/// `tel:bob` → `bob`).
pub fn tel_number<S: AsRef<str>>(args: &[S]) -> Option<String> {
    args.iter().find_map(|a| {
        let rest = a.as_ref().strip_prefix("tel:")?;
        let rest = rest.split(';').next().unwrap_or("");
        let n: String = rest
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | ' ' | '(' | ')' | '/'))
            .collect();
        (!n.is_empty()).then_some(n)
    })
}

fn dial_link(app: &AppHandle, number: String) {
    show_window(app);
    emit(app, AppEvent::Dial { number });
}

/// Starts the app (blocks until Quit).
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SOFTPHONE_LOG")
                .unwrap_or_else(|_| "info,webrtc=warn,webrtc_ice=warn".into()),
        )
        .try_init();
    let args: Vec<String> = std::env::args().collect();
    let minimised_arg = args
        .iter()
        .any(|a| a == "--minimised" || a == "--minimized");

    let app = tauri::Builder::default()
        // First, so that a second launch hands over before anything starts.
        .plugin(tauri_plugin_single_instance::init(
            |app, argv, _cwd| match tel_number(&argv) {
                Some(n) => dial_link(app, n),
                None => show_window(app),
            },
        ))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec!["--minimised"]),
        ))
        .plugin(hotkeys::plugin())
        .invoke_handler(tauri::generate_handler![
            commands::snapshot,
            commands::sign_in,
            commands::sign_out,
            commands::dial,
            commands::answer,
            commands::decline,
            commands::hangup,
            commands::set_mute,
            commands::set_hold,
            commands::send_dtmf,
            commands::set_presence,
            commands::directory,
            commands::history,
            commands::missed_seen,
            commands::devices,
            commands::set_call_devices,
            commands::save_settings,
            commands::test_ringer,
            commands::test_output,
            commands::mic_meter,
        ])
        .setup(move |app| {
            let handle = app.handle().clone();
            let config_dir = app
                .path()
                .app_config_dir()
                .unwrap_or_else(|_| std::env::temp_dir().join("softphone"));
            let tokens = if std::env::var_os("SOFTPHONE_NO_KEYRING").is_some() {
                TokenStore::memory()
            } else {
                TokenStore::Keyring
            };
            app.manage(Shell::new(config_dir, tokens));
            app.manage(hotkeys::Bindings::default());
            if let Err(e) = tray::create(&handle) {
                tracing::warn!(error = %e, "no tray icon on this desktop");
            }
            let settings = app.state::<Shell>().settings();
            hotkeys::apply(&handle, &settings.hotkeys);
            if !(minimised_arg || settings.start_minimised) {
                show_window(&handle);
            }
            let h = handle.clone();
            app.deep_link().on_open_url(move |event| {
                let urls: Vec<String> = event.urls().iter().map(|u| u.to_string()).collect();
                if let Some(n) = tel_number(&urls) {
                    dial_link(&h, n);
                }
            });
            if let Some(n) = tel_number(&args) {
                emit(&handle, AppEvent::Dial { number: n });
            }
            tauri::async_runtime::spawn(async move {
                let shell = handle.state::<Shell>();
                if let Err(e) = shell.restore(&handle).await {
                    notice(&handle, NoticeLevel::Error, e.message);
                    emit(&handle, AppEvent::Session { session: None });
                }
            });
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window hides it to the tray; calls go on.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .build(tauri::generate_context!())
        .expect("the desktop app could not start (is a display available?)");
    app.run(|app, event| {
        if let RunEvent::ExitRequested { api, code, .. } = event {
            // Only Quit (an explicit exit code) ends the app.
            if code.is_none() {
                api.prevent_exit();
            } else {
                app.state::<Shell>().ringer.stop();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::tel_number;

    #[test]
    fn tel_links_give_the_number() {
        assert_eq!(
            tel_number(&["softphone", "tel:+1-555-0100"]),
            Some("+15550100".into())
        );
        assert_eq!(
            tel_number(&["tel:bob;phone-context=acme"]),
            Some("bob".into())
        );
        assert_eq!(tel_number(&["softphone", "--minimised"]), None);
        assert_eq!(tel_number(&["tel:"]), None);
    }
}
