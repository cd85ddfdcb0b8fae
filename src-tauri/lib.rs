//! The desktop softphone: a thin Tauri 2 shell over the call engine
//! (`softphone-engine`) and the app's model (`softphone-app-model`, where
//! every rule of what the app shows lives). The web UI in `ui/` draws the
//! screens; this crate runs the engine, the audio devices, the OS keyring,
//! the tray, global hotkeys, the ringer and notifications.
//!
//! - [`commands`]: what the UI calls, each a line over the
//!   [`softphone_app_runtime::Runtime`] (the app without its window);
//! - [`surface`]: what the runtime shows through Tauri (events to the UI,
//!   notifications, the tray);
//! - [`tray`], [`hotkeys`]: the OS surfaces, drawn from the model;
//! - [`memory`]: the heap over a day of calls.
//!
//! Command line: `softphone [--minimised] [tel:NUMBER]`. A second launch
//! focuses the first (and hands it the `tel:` number).

pub mod commands;
pub mod hotkeys;
pub mod memory;
pub mod surface;
pub mod tray;

use std::sync::Arc;

use softphone_app_model::{AppEvent, HotkeyAction, NoticeLevel, tel_number};
use softphone_engine::credentials::TokenStore;
use tauri::{AppHandle, Manager, RunEvent, WindowEvent};
use tauri_plugin_autostart::MacosLauncher;
use tauri_plugin_deep_link::DeepLinkExt;

use softphone_app_runtime::Runtime;
use tray::MenuAction;

fn runtime(app: &AppHandle) -> Arc<Runtime> {
    app.state::<Arc<Runtime>>().inner().clone()
}

/// Shows, unminimises and focuses the main window (tray, a second launch).
/// Never called on an incoming call: no focus stealing.
pub fn show_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

/// Runs a call action from a hotkey or the tray; failures become notices.
fn on_call_action(app: &AppHandle, action: HotkeyAction) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        let rt = runtime(&app);
        if let Err(e) = rt.act(action).await {
            rt.emit(AppEvent::from(e));
        }
    });
}

fn on_menu(app: &AppHandle, action: MenuAction) {
    match action {
        MenuAction::Show => show_window(app),
        MenuAction::Presence(p) => {
            let rt = runtime(app);
            if let Err(e) = rt.set_presence(p) {
                rt.emit(AppEvent::from(e));
            }
        }
        MenuAction::Call(a) => on_call_action(app, a),
        MenuAction::Quit => app.exit(0),
    }
}

fn dial_link(app: &AppHandle, number: String) {
    show_window(app);
    runtime(app).emit(AppEvent::Dial { number });
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
        .plugin(hotkeys::plugin(on_call_action))
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
            commands::supervisor,
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
            let surface = Arc::new(surface::TauriSurface::new(handle.clone()));
            app.manage(Runtime::new(config_dir, tokens, surface));
            hotkeys::init(&handle);
            if let Err(e) = tray::create(&handle, on_menu) {
                tracing::warn!(error = %e, "no tray icon on this desktop");
            }
            let shell = runtime(&handle);
            let settings = shell.settings();
            let status = hotkeys::register(&handle, &settings.hotkeys);
            shell.update(|m| m.set_hotkeys(status));
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
                shell.emit(AppEvent::Dial { number: n });
            }
            tauri::async_runtime::spawn(async move {
                let rt = runtime(&handle);
                if let Err(e) = rt.restore().await {
                    rt.emit(AppEvent::notice(NoticeLevel::Error, e.message));
                    rt.emit(AppEvent::Session { session: None });
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
                runtime(app).stop_ringing();
            }
        }
    });
}
