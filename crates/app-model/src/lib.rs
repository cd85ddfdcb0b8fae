//! What the desktop app shows and what its controls do, as a pure function
//! of the engine's events and the clock: the call list and which call is
//! current, missed calls (the protocol's one rule,
//! [`softphone_protocol::EndReason::is_missed`]), my availability, the
//! tray's state, what each hotkey does, and the notices in plain words.
//!
//! It is **not** the shell: it opens no window, device, socket or keyring.
//! The Tauri shell (`src-tauri/`) feeds it engine events and the agent's
//! commands, and carries out the [`Effect`]s it returns. It compiles and
//! tests without Tauri, GTK or WebKit.
//!
//! ```
//! use softphone_app_model::{Effect, Model, Settings, TrayStatus};
//! use softphone_engine::EngineEvent;
//! use softphone_protocol::UserRef;
//!
//! let mut model = Model::new(Settings::default());
//! let bob = UserRef { user: "bob".into(), display_name: "Bob Stone".into() };
//! let fx = model.apply(&EngineEvent::Incoming { call_id: "c1".into(), from: bob.clone(), queue: None }, 0);
//! assert!(fx.contains(&Effect::Ring { from: bob }));
//! assert_eq!(model.ringing().map(|c| c.call_id.as_str()), Some("c1"));
//! assert_eq!(model.tray().status, TrayStatus::Offline); // not signed in
//! ```

pub mod bindings;
mod error;
mod model;
pub mod settings;
pub mod tray;
mod types;

pub use error::{ErrorKind, UiError};
pub use model::{Effect, Intent, Model};
pub use tray::{TrayStatus, TrayView};
pub use types::{
    Account, AppEvent, AudioDevices, CallView, Calls, HotkeyAction, HotkeyStatus, Hotkeys,
    NoticeLevel, SessionInfo, Settings, Snapshot,
};

/// The number in a `tel:` argument, if any (`tel:+1-555-0100` → `+15550100`,
/// `tel:bob;phone-context=acme` → `bob`).
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

/// What to dial from what the agent typed or a link gave: trimmed, without
/// `tel:`.
///
/// # Errors
/// [`ErrorKind::InvalidState`] when nothing is left.
pub fn dial_target(typed: &str) -> Result<String, UiError> {
    let to = typed.trim().trim_start_matches("tel:").trim();
    if to.is_empty() {
        return Err(UiError::new(
            ErrorKind::InvalidState,
            "Type a number or a name.",
        ));
    }
    Ok(to.to_string())
}

/// The switchboard URL from the sign-in form: trimmed, without a trailing
/// `/`.
///
/// # Errors
/// [`ErrorKind::InvalidState`] unless it starts with `http://` or
/// `https://`.
pub fn server_url(typed: &str) -> Result<String, UiError> {
    let server = typed.trim().trim_end_matches('/');
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(UiError::new(
            ErrorKind::InvalidState,
            "The server URL starts with http:// or https://",
        ));
    }
    Ok(server.to_string())
}

#[cfg(test)]
mod tests;
