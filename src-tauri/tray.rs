//! The tray icon, always present: its icon and tooltip show offline /
//! available / away / do not disturb / ringing / in call / muted, and its
//! menu offers Show, availability, Answer, Decline, Hang up, Mute and Quit.

use softphone_protocol::Presence;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Wry};

use crate::bindings::HotkeyAction;
use crate::shell::{Shell, TrayStatus};

const ICON: &[u8] = include_bytes!("../icons/64x64.png");

/// The menu items whose state follows the calls, the decoded app icon,
/// and what the tray shows now (so that an unchanged state, e.g. a stats
/// event every 2 s, redraws nothing).
pub struct TrayItems {
    base: Image<'static>,
    shown: std::sync::Mutex<Option<(TrayStatus, String)>>,
    available: CheckMenuItem<Wry>,
    away: CheckMenuItem<Wry>,
    dnd: CheckMenuItem<Wry>,
    answer: MenuItem<Wry>,
    decline: MenuItem<Wry>,
    hangup: MenuItem<Wry>,
    mute: MenuItem<Wry>,
}

/// The status colour (RGB) of the dot on the icon.
pub fn colour(status: TrayStatus) -> [u8; 3] {
    match status {
        TrayStatus::Offline => [140, 140, 140],
        TrayStatus::Idle(Presence::Available) => [46, 160, 67],
        TrayStatus::Idle(Presence::Away) => [219, 154, 4],
        TrayStatus::Idle(Presence::Dnd) => [207, 34, 46],
        TrayStatus::Idle(Presence::Offline) => [140, 140, 140],
        TrayStatus::Ringing => [9, 105, 218],
        TrayStatus::InCall => [130, 80, 223],
        TrayStatus::Muted => [207, 34, 46],
    }
}

/// The tooltip text.
pub fn tooltip(status: TrayStatus, peer: Option<&str>) -> String {
    let peer = peer.unwrap_or("");
    match status {
        TrayStatus::Offline => "Softphone — offline".into(),
        TrayStatus::Idle(Presence::Available) => "Softphone — available".into(),
        TrayStatus::Idle(Presence::Away) => "Softphone — away".into(),
        TrayStatus::Idle(_) => "Softphone — do not disturb".into(),
        TrayStatus::Ringing => format!("Softphone — {peer} is calling"),
        TrayStatus::InCall => format!("Softphone — in a call with {peer}"),
        TrayStatus::Muted => format!("Softphone — in a call with {peer} (muted)"),
    }
}

/// The app icon (`size`×`size` RGBA) with a white-rimmed status dot in its
/// lower right corner.
pub fn icon_rgba(base: &[u8], size: u32, status: TrayStatus) -> Vec<u8> {
    let mut px = base.to_vec();
    let [r, g, b] = colour(status);
    let s = size as f32;
    let (cx, cy, rad) = (s * 0.76, s * 0.76, s * 0.22);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            let i = ((y * size + x) * 4) as usize;
            if d <= rad {
                px[i..i + 4].copy_from_slice(&[r, g, b, 255]);
            } else if d <= rad + s * 0.05 {
                px[i..i + 4].copy_from_slice(&[255, 255, 255, 255]);
            }
        }
    }
    px
}

/// Builds the tray icon and its menu.
///
/// # Errors
/// When the platform has no tray (then the app still runs; the error is
/// logged by the caller).
pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let show = MenuItem::with_id(app, "show", "Show Softphone", true, None::<&str>)?;
    let available =
        CheckMenuItem::with_id(app, "available", "Available", false, true, None::<&str>)?;
    let away = CheckMenuItem::with_id(app, "away", "Away", false, false, None::<&str>)?;
    let dnd = CheckMenuItem::with_id(app, "dnd", "Do not disturb", false, false, None::<&str>)?;
    let answer = MenuItem::with_id(app, "answer", "Answer", false, None::<&str>)?;
    let decline = MenuItem::with_id(app, "decline", "Decline", false, None::<&str>)?;
    let hangup = MenuItem::with_id(app, "hangup", "Hang up", false, None::<&str>)?;
    let mute = MenuItem::with_id(app, "mute", "Mute", false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit", true, None::<&str>)?;
    let sep = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(
        app,
        &[
            &show,
            &sep()?,
            &available,
            &away,
            &dnd,
            &sep()?,
            &answer,
            &decline,
            &hangup,
            &mute,
            &sep()?,
            &quit,
        ],
    )?;
    let base = Image::from_bytes(ICON)?;
    let rgba = icon_rgba(base.rgba(), base.width(), TrayStatus::Offline);
    TrayIconBuilder::with_id("main")
        .icon(Image::new_owned(rgba, base.width(), base.height()))
        .tooltip(tooltip(TrayStatus::Offline, None))
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(|app, event| match event.id.as_ref() {
            "show" => crate::show_window(app),
            "available" => set_presence(app, Presence::Available),
            "away" => set_presence(app, Presence::Away),
            "dnd" => set_presence(app, Presence::Dnd),
            "answer" => crate::run_action(app, HotkeyAction::Answer),
            "decline" | "hangup" => crate::run_action(app, HotkeyAction::Hangup),
            "mute" => crate::run_action(app, HotkeyAction::Mute),
            "quit" => app.exit(0),
            _ => {}
        })
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                crate::show_window(tray.app_handle());
            }
        })
        .build(app)?;
    app.manage(TrayItems {
        base,
        shown: std::sync::Mutex::new(None),
        available,
        away,
        dnd,
        answer,
        decline,
        hangup,
        mute,
    });
    refresh(app);
    Ok(())
}

fn set_presence(app: &AppHandle, status: Presence) {
    if let Err(e) = app.state::<Shell>().set_presence(app, status) {
        crate::shell::notice(app, crate::bindings::NoticeLevel::Warning, e.message);
    }
    refresh(app);
}

/// Redraws the tray from the shell's state (icon, tooltip, menu) when what
/// it shows has changed.
pub fn refresh(app: &AppHandle) {
    let Some(items) = app.try_state::<TrayItems>() else {
        return;
    };
    let ((status, peer), missed) = app.state::<Shell>().tray_status_and_missed();
    let mut tip = tooltip(status, peer.as_deref());
    if missed > 0 {
        tip.push_str(&format!(" — {missed} missed"));
    }
    {
        let mut shown = items.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.as_ref() == Some(&(status, tip.clone())) {
            return;
        }
        *shown = Some((status, tip.clone()));
    }
    if let Some(tray) = app.tray_by_id("main") {
        let (w, h) = (items.base.width(), items.base.height());
        let rgba = icon_rgba(items.base.rgba(), w, status);
        let _ = tray.set_icon(Some(Image::new_owned(rgba, w, h)));
        let _ = tray.set_tooltip(Some(tip));
    }
    let online = status != TrayStatus::Offline;
    let in_call = matches!(status, TrayStatus::InCall | TrayStatus::Muted);
    let ringing = status == TrayStatus::Ringing;
    let _ = items.available.set_enabled(online);
    let _ = items.away.set_enabled(online);
    let _ = items.dnd.set_enabled(online);
    if let TrayStatus::Idle(p) = status {
        let _ = items.available.set_checked(p == Presence::Available);
        let _ = items.away.set_checked(p == Presence::Away);
        let _ = items.dnd.set_checked(p == Presence::Dnd);
    }
    let _ = items.answer.set_enabled(ringing);
    let _ = items.decline.set_enabled(ringing);
    let _ = items.hangup.set_enabled(in_call);
    let _ = items.mute.set_enabled(in_call);
    let _ = items.mute.set_text(if status == TrayStatus::Muted {
        "Unmute"
    } else {
        "Mute"
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_has_its_own_dot_and_words() {
        let base = vec![0u8; 64 * 64 * 4];
        let ringing = icon_rgba(&base, 64, TrayStatus::Ringing);
        let i = ((48 * 64 + 48) * 4) as usize;
        assert_eq!(&ringing[i..i + 4], &[9, 105, 218, 255]);
        assert_eq!(&ringing[0..4], &[0, 0, 0, 0], "the corner is untouched");
        assert_ne!(colour(TrayStatus::InCall), colour(TrayStatus::Muted));
        assert_ne!(
            colour(TrayStatus::Offline),
            colour(TrayStatus::Idle(Presence::Available))
        );
        assert_eq!(
            tooltip(TrayStatus::Muted, Some("Bob Stone")),
            "Softphone — in a call with Bob Stone (muted)"
        );
    }
}
