//! The tray icon, always present: it shows what [`TrayView`] says (status
//! dot, tooltip, which menu items apply) and reports menu clicks as
//! [`MenuAction`]s. No state and no rules of its own.

use std::sync::Mutex;

use softphone_app_model::tray::icon_rgba;
use softphone_app_model::{HotkeyAction, TrayView};
use softphone_protocol::Presence;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, MouseButtonState, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager, Wry};

const ICON: &[u8] = include_bytes!("../icons/64x64.png");

/// What a click in the tray asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuAction {
    /// Show the window (menu item or a left click on the icon).
    Show,
    /// Set my availability.
    Presence(Presence),
    /// A call action, as its hotkey would.
    Call(HotkeyAction),
    /// Quit the app.
    Quit,
}

/// The menu items whose state follows the view, the decoded icon, and the
/// view shown (an unchanged view redraws nothing).
struct Items {
    base: Image<'static>,
    shown: Mutex<Option<TrayView>>,
    presence: [(Presence, CheckMenuItem<Wry>); 3],
    answer: MenuItem<Wry>,
    decline: MenuItem<Wry>,
    hangup: MenuItem<Wry>,
    mute: MenuItem<Wry>,
}

/// Builds the tray icon and its menu; clicks go to `on_menu`.
///
/// # Errors
/// When the platform has no tray (the app still runs).
pub fn create(app: &AppHandle, on_menu: fn(&AppHandle, MenuAction)) -> tauri::Result<()> {
    let item = |id: &str, text: &str, on: bool| MenuItem::with_id(app, id, text, on, None::<&str>);
    let check =
        |id: &str, text: &str| CheckMenuItem::with_id(app, id, text, false, false, None::<&str>);
    let (show, quit) = (
        item("show", "Show Softphone", true)?,
        item("quit", "Quit", true)?,
    );
    let presence = [
        (Presence::Available, check("available", "Available")?),
        (Presence::Away, check("away", "Away")?),
        (Presence::Dnd, check("dnd", "Do not disturb")?),
    ];
    let (answer, decline) = (
        item("answer", "Answer", false)?,
        item("decline", "Decline", false)?,
    );
    let (hangup, mute) = (
        item("hangup", "Hang up", false)?,
        item("mute", "Mute", false)?,
    );
    let sep = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(
        app,
        &[
            &show,
            &sep()?,
            &presence[0].1,
            &presence[1].1,
            &presence[2].1,
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
    TrayIconBuilder::with_id("main")
        .icon(base.clone())
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(move |app, event| {
            let action = match event.id.as_ref() {
                "show" => MenuAction::Show,
                "available" => MenuAction::Presence(Presence::Available),
                "away" => MenuAction::Presence(Presence::Away),
                "dnd" => MenuAction::Presence(Presence::Dnd),
                "answer" => MenuAction::Call(HotkeyAction::Answer),
                "decline" | "hangup" => MenuAction::Call(HotkeyAction::Hangup),
                "mute" => MenuAction::Call(HotkeyAction::Mute),
                "quit" => MenuAction::Quit,
                _ => return,
            };
            on_menu(app, action);
        })
        .on_tray_icon_event(move |tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                on_menu(tray.app_handle(), MenuAction::Show);
            }
        })
        .build(app)?;
    app.manage(Items {
        base,
        shown: Mutex::new(None),
        presence,
        answer,
        decline,
        hangup,
        mute,
    });
    Ok(())
}

/// Redraws the tray (icon, tooltip, menu) when `view` differs from what
/// it shows.
pub fn render(app: &AppHandle, view: &TrayView) {
    let Some(items) = app.try_state::<Items>() else {
        return;
    };
    {
        let mut shown = items.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.as_ref() == Some(view) {
            return;
        }
        *shown = Some(view.clone());
    }
    if let Some(tray) = app.tray_by_id("main") {
        let (w, h) = (items.base.width(), items.base.height());
        let rgba = icon_rgba(items.base.rgba(), w, view.status);
        let _ = tray.set_icon(Some(Image::new_owned(rgba, w, h)));
        let _ = tray.set_tooltip(Some(view.tooltip.clone()));
    }
    for (p, item) in &items.presence {
        let _ = item.set_enabled(view.presence_enabled);
        if let Some(checked) = view.checked {
            let _ = item.set_checked(*p == checked);
        }
    }
    let _ = items.answer.set_enabled(view.ringing);
    let _ = items.decline.set_enabled(view.ringing);
    let _ = items.hangup.set_enabled(view.in_call);
    let _ = items.mute.set_enabled(view.in_call);
    let _ = items.mute.set_text(view.mute_label);
}
