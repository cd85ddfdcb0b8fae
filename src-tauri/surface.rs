//! What the runtime shows through Tauri: `app` events to the UI, OS
//! notifications, whether the window is in view, and the tray.

use std::sync::atomic::{AtomicBool, Ordering};

use softphone_app_model::{AppEvent, TrayView};
use softphone_app_runtime::Surface;
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_notification::NotificationExt;

/// The Tauri side of [`Surface`].
pub struct TauriSurface {
    app: AppHandle,
    /// Whether the last tray drawn showed a call (ringing or in one).
    busy: AtomicBool,
}

impl TauriSurface {
    /// The surface of `app`.
    pub fn new(app: AppHandle) -> Self {
        Self {
            app,
            busy: AtomicBool::new(false),
        }
    }
}

impl Surface for TauriSurface {
    fn emit(&self, event: AppEvent) {
        if let Err(e) = self.app.emit("app", event) {
            tracing::warn!(error = %e, "emit failed");
        }
    }

    fn notify(&self, title: &str, body: &str) {
        let shown = self
            .app
            .notification()
            .builder()
            .title(title)
            .body(body)
            .show();
        if let Err(e) = shown {
            tracing::debug!(error = %e, "no notification service");
        }
    }

    fn in_view(&self) -> bool {
        self.app
            .get_webview_window("main")
            .is_some_and(|w| w.is_visible().unwrap_or(false) && w.is_focused().unwrap_or(false))
    }

    fn render_tray(&self, view: &TrayView) {
        crate::tray::render(&self.app, view);
        let busy = view.ringing || view.in_call;
        if self.busy.swap(busy, Ordering::Relaxed) && !busy {
            crate::memory::release_freed();
        }
    }
}
