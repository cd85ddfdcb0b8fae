//! The desktop app's ringtones: synthesised patterns (no audio files to
//! ship), mono at 48 kHz. Pure; [`crate::ringer`] plays them.

/// Sample rate of [`pattern`], in Hz.
pub const RATE: u32 = 48_000;

/// Synthesised ringtones (no audio files to ship).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Ringtone {
    /// North-American ring: 440 + 480 Hz, 2 s on, 4 s off.
    #[default]
    Classic,
    /// Two soft 660/880 Hz chimes every 3 s.
    Soft,
    /// 1 kHz beeps, four in a row, every 2 s.
    Digital,
}

/// One cycle of a ringtone: mono samples at 48 kHz, peak 0.5.
pub fn pattern(tone: Ringtone) -> Vec<f32> {
    let mut out = Vec::new();
    let mut push = |freqs: &[f32], ms: u32| {
        let n = (RATE / 1000 * ms) as usize;
        let fade = (RATE / 100) as usize; // 10 ms ramps: no clicks
        for i in 0..n {
            let t = i as f32 / RATE as f32;
            let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            let v: f32 = freqs
                .iter()
                .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                .sum::<f32>()
                / freqs.len().max(1) as f32;
            out.push(if freqs.is_empty() { 0.0 } else { 0.5 * env * v });
        }
    };
    match tone {
        Ringtone::Classic => {
            push(&[440.0, 480.0], 2000);
            push(&[], 4000);
        }
        Ringtone::Soft => {
            push(&[660.0], 300);
            push(&[880.0], 500);
            push(&[], 2200);
        }
        Ringtone::Digital => {
            for _ in 0..4 {
                push(&[1000.0], 80);
                push(&[], 70);
            }
            push(&[], 1400);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringtones_have_their_cadence_and_frequencies() {
        let classic = pattern(Ringtone::Classic);
        assert_eq!(classic.len(), 6 * RATE as usize);
        let on = &classic[..RATE as usize];
        let off = &classic[3 * RATE as usize..4 * RATE as usize];
        assert!(crate::analysis::rms_dbfs(on) > -15.0);
        assert!(crate::analysis::rms_dbfs(off) < -90.0);
        let digital = pattern(Ringtone::Digital);
        let f = crate::analysis::dominant_frequency(&digital[..3840], 48_000.0, 200.0, 2000.0);
        assert!((f - 1000.0).abs() < 30.0, "{f}");
        assert!(classic.iter().all(|s| s.abs() <= 0.5));
    }
}
