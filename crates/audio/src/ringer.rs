//! The ringtone: synthesised patterns played through rodio on the ringer
//! device (often not the headset, separately selectable from the call's
//! output), on a thread of its own because an output stream may not cross
//! threads.
//!
//! ```no_run
//! use softphone_audio::{ringer::Ringer, ringtone::Ringtone};
//! let ringer = Ringer::start();
//! ringer.ring(None, Ringtone::Classic, 0.7); // until stopped
//! ringer.stop();
//! ```

use std::num::NonZero;
use std::sync::mpsc;

use rodio::Source;
use rodio::buffer::SamplesBuffer;

use crate::AudioError;
use crate::ringtone::{RATE, Ringtone, pattern};

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

fn open(device: Option<&str>) -> Result<rodio::MixerDeviceSink, AudioError> {
    let dev = crate::device::output_device(device)?;
    // rodio's default prints every stream error to stderr; a backend in a
    // bad state reports one per period (about 100 a second). One warning per
    // ring says the same.
    let mut reported = false;
    let mut sink = rodio::DeviceSinkBuilder::from_device(dev)
        .map_err(AudioError::backend)?
        .with_error_callback(move |e| {
            if !reported {
                reported = true;
                tracing::warn!(error = %e, "ringer stream error (further ones this ring not logged)");
            }
        })
        .open_stream()
        .map_err(AudioError::backend)?;
    sink.log_on_drop(false);
    Ok(sink)
}
