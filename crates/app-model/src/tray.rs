//! What the tray shows, as data: its status, tooltip and which menu items
//! apply; and the icon with its status dot as RGBA pixels. The shell only
//! hands these to the OS.

use softphone_protocol::Presence;

/// What the tray's status dot says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayStatus {
    /// Not signed in, or signaling down.
    Offline,
    /// Signed in, with this availability.
    Idle(Presence),
    /// A call rings.
    Ringing,
    /// In a call.
    InCall,
    /// In a call, muted.
    Muted,
}

impl TrayStatus {
    /// The colour (RGB) of the dot.
    pub fn colour(self) -> [u8; 3] {
        match self {
            Self::Offline | Self::Idle(Presence::Offline) => [140, 140, 140],
            Self::Idle(Presence::Available) => [46, 160, 67],
            Self::Idle(Presence::Away) => [219, 154, 4],
            Self::Idle(Presence::Dnd) => [207, 34, 46],
            Self::Ringing => [9, 105, 218],
            Self::InCall => [130, 80, 223],
            Self::Muted => [207, 34, 46],
        }
    }
}

/// The tray's icon status, tooltip and menu state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrayView {
    /// The status dot.
    pub status: TrayStatus,
    /// The tooltip, e.g. "Softphone — Bob Stone is calling — 2 missed".
    pub tooltip: String,
    /// Availability items enabled (signed in and online).
    pub presence_enabled: bool,
    /// The checked availability item, when idle.
    pub checked: Option<Presence>,
    /// Answer and Decline enabled (a call rings).
    pub ringing: bool,
    /// Hang up and Mute enabled (in a call).
    pub in_call: bool,
    /// The mute item's label: "Mute" or "Unmute".
    pub mute_label: &'static str,
}

impl TrayView {
    /// The view for `status`, the call's peer (display name) and the
    /// unseen missed calls.
    pub fn new(status: TrayStatus, peer: Option<&str>, missed: u32) -> Self {
        let peer = peer.unwrap_or("");
        let mut tooltip = match status {
            TrayStatus::Offline => "Softphone — offline".to_string(),
            TrayStatus::Idle(Presence::Available) => "Softphone — available".into(),
            TrayStatus::Idle(Presence::Away) => "Softphone — away".into(),
            TrayStatus::Idle(_) => "Softphone — do not disturb".into(),
            TrayStatus::Ringing => format!("Softphone — {peer} is calling"),
            TrayStatus::InCall => format!("Softphone — in a call with {peer}"),
            TrayStatus::Muted => format!("Softphone — in a call with {peer} (muted)"),
        };
        if missed > 0 {
            tooltip.push_str(&format!(" — {missed} missed"));
        }
        Self {
            status,
            tooltip,
            presence_enabled: status != TrayStatus::Offline,
            checked: match status {
                TrayStatus::Idle(p) => Some(p),
                _ => None,
            },
            ringing: status == TrayStatus::Ringing,
            in_call: matches!(status, TrayStatus::InCall | TrayStatus::Muted),
            mute_label: if status == TrayStatus::Muted {
                "Unmute"
            } else {
                "Mute"
            },
        }
    }
}

/// The app icon (`size`×`size` RGBA, 4 bytes a pixel) with a white-rimmed
/// status dot in its lower right corner.
pub fn icon_rgba(base: &[u8], size: u32, status: TrayStatus) -> Vec<u8> {
    let mut px = base.to_vec();
    let [r, g, b] = status.colour();
    let s = size as f32;
    let (cx, cy, rad) = (s * 0.76, s * 0.76, s * 0.22);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            let i = ((y * size + x) * 4) as usize;
            let Some(p) = px.get_mut(i..i + 4) else {
                return px;
            };
            if d <= rad {
                p.copy_from_slice(&[r, g, b, 255]);
            } else if d <= rad + s * 0.05 {
                p.copy_from_slice(&[255, 255, 255, 255]);
            }
        }
    }
    px
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
        assert_ne!(TrayStatus::InCall.colour(), TrayStatus::Muted.colour());
        assert_ne!(
            TrayStatus::Offline.colour(),
            TrayStatus::Idle(Presence::Available).colour()
        );
        let v = TrayView::new(TrayStatus::Muted, Some("Bob Stone"), 2);
        assert_eq!(
            v.tooltip,
            "Softphone — in a call with Bob Stone (muted) — 2 missed"
        );
        assert!(v.in_call && !v.ringing && v.presence_enabled);
        assert_eq!(v.mute_label, "Unmute");
        let off = TrayView::new(TrayStatus::Offline, None, 0);
        assert!(!off.presence_enabled && !off.in_call && off.checked.is_none());
        let idle = TrayView::new(TrayStatus::Idle(Presence::Away), None, 0);
        assert_eq!(idle.checked, Some(Presence::Away));
    }

    #[test]
    fn a_short_buffer_is_not_read_past_its_end() {
        assert_eq!(icon_rgba(&[0u8; 8], 64, TrayStatus::InCall).len(), 8);
    }
}
