//! The ringtone: synthesised patterns played through rodio on the ringer
//! device (often not the headset), on a thread of its own because an
//! output stream may not cross threads.

use std::num::NonZero;
use std::sync::mpsc;

use rodio::Source;
use rodio::buffer::SamplesBuffer;

use crate::bindings::Ringtone;

const RATE: u32 = 48_000;

enum Cmd {
    Ring {
        device: Option<String>,
        tone: Ringtone,
        volume: f32,
        /// Play once (a settings test) instead of until stopped.
        once: bool,
    },
    Stop,
}

/// Handle to the ringer thread.
pub struct Ringer {
    tx: mpsc::Sender<Cmd>,
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

impl Ringer {
    /// Starts the ringer thread (idle until [`Ringer::ring`]).
    pub fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let spawned = std::thread::Builder::new()
            .name("ringer".into())
            .spawn(move || {
                // The stream and player live here; dropping them stops the sound.
                let mut playing: Option<(rodio::MixerDeviceSink, rodio::Player)> = None;
                while let Ok(cmd) = rx.recv() {
                    drop(playing.take());
                    if let Cmd::Ring {
                        device,
                        tone,
                        volume,
                        once,
                    } = cmd
                    {
                        match open(device.as_deref()).or_else(|e| {
                            tracing::warn!(error = %e, "ringer device; using the default");
                            open(None)
                        }) {
                            Ok(sink) => {
                                let player = rodio::Player::connect_new(sink.mixer());
                                player.set_volume(volume.clamp(0.0, 1.0));
                                let buf = SamplesBuffer::new(
                                    NonZero::new(1).expect("1"),
                                    NonZero::new(RATE).expect("rate"),
                                    pattern(tone),
                                );
                                if once {
                                    player.append(buf);
                                } else {
                                    player.append(buf.repeat_infinite());
                                }
                                playing = Some((sink, player));
                            }
                            Err(e) => tracing::warn!(error = %e, "no device to ring on"),
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the ringer thread");
        }
        Self { tx }
    }

    /// Rings until [`Ringer::stop`].
    pub fn ring(&self, device: Option<String>, tone: Ringtone, volume: f32) {
        let _ = self.tx.send(Cmd::Ring {
            device,
            tone,
            volume,
            once: false,
        });
    }

    /// Plays one cycle of `tone` (the settings screen's test button).
    pub fn test(&self, device: Option<String>, tone: Ringtone, volume: f32) {
        let _ = self.tx.send(Cmd::Ring {
            device,
            tone,
            volume,
            once: true,
        });
    }

    /// Stops ringing.
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

fn open(device: Option<&str>) -> Result<rodio::MixerDeviceSink, String> {
    let dev = softphone_audio::device::output_device(device).map_err(|e| e.to_string())?;
    let mut sink = rodio::DeviceSinkBuilder::from_device(dev)
        .map_err(|e| e.to_string())?
        .open_stream()
        .map_err(|e| e.to_string())?;
    sink.log_on_drop(false);
    Ok(sink)
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
        assert!(softphone_audio::analysis::rms_dbfs(on) > -15.0);
        assert!(softphone_audio::analysis::rms_dbfs(off) < -90.0);
        let digital = pattern(Ringtone::Digital);
        let f = softphone_audio::analysis::dominant_frequency(
            &digital[..3840],
            48_000.0,
            200.0,
            2000.0,
        );
        assert!((f - 1000.0).abs() < 30.0, "{f}");
        assert!(classic.iter().all(|s| s.abs() <= 0.5));
    }
}
