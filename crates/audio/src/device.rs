//! Sound-card devices through cpal (PulseAudio or ALSA on Linux, WASAPI on
//! Windows, CoreAudio on macOS).
//!
//! Real-time discipline (cpal's feedback example): the device callback only
//! moves samples between the device buffer and a pre-sized lock-free SPSC
//! ring ([`rtrb`]); it never allocates, locks, logs or blocks. On underrun it
//! plays silence, on overrun it drops samples, and counts both in atomics
//! that [`DeviceHealth`] reports. Resampling to and from 48 kHz (rubato)
//! happens on the pipeline side, in [`Source::read_frame`] and
//! [`Sink::write_frame`].
//!
//! A cpal stream is not `Send` on every platform, so each device's stream
//! lives on its own thread; dropping the device stops that thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rubato::{FftFixedIn, FftFixedOut, Resampler};

use crate::{AudioError, FRAME, SAMPLE_RATE, Sink, Source};

/// One device as [`list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Name to pass to [`CpalSource::open`] / [`CpalSink::open`].
    pub name: String,
    /// Whether it can record.
    pub input: bool,
    /// Whether it can play.
    pub output: bool,
    /// Whether it is the host's default for its direction(s).
    pub default: bool,
}

fn device_name(d: &cpal::Device) -> String {
    d.description()
        .map(|x| x.to_string())
        .unwrap_or_else(|_| "unknown device".into())
}

/// Lists the default host's devices.
///
/// # Errors
/// [`AudioError::Backend`] when the host cannot enumerate.
pub fn list() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = cpal::default_host();
    let def_in = host.default_input_device().map(|d| device_name(&d));
    let def_out = host.default_output_device().map(|d| device_name(&d));
    let mut out = Vec::new();
    for d in host.devices().map_err(AudioError::backend)? {
        let name = device_name(&d);
        let input = d.default_input_config().is_ok();
        let output = d.default_output_config().is_ok();
        let default =
            def_in.as_deref() == Some(name.as_str()) || def_out.as_deref() == Some(name.as_str());
        out.push(DeviceInfo {
            name,
            input,
            output,
            default,
        });
    }
    Ok(out)
}

/// Counters of a device's real-time side.
#[derive(Debug, Default)]
pub struct DeviceHealth {
    /// Samples the callback could not hand over (ring full / empty).
    pub xruns: AtomicU64,
    /// Set when the backend reported an error (device unplugged…).
    pub failed: AtomicBool,
}

fn pick(host: &cpal::Host, name: Option<&str>, input: bool) -> Result<cpal::Device, AudioError> {
    let kind = if input { "input" } else { "output" };
    match name {
        None => if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        }
        .ok_or_else(|| AudioError::NotFound(format!("no default {kind} device"))),
        Some(n) => host
            .devices()
            .map_err(AudioError::backend)?
            .find(|d| device_name(d) == n)
            .ok_or_else(|| AudioError::NotFound(format!("no {kind} device `{n}`"))),
    }
}

/// The cpal output device called `name` (as [`list`] names it), or the
/// default one for `None`: for players that drive cpal themselves (the
/// desktop app's ringer, through rodio).
///
/// # Errors
/// [`AudioError::NotFound`] when there is no such device.
pub fn output_device(name: Option<&str>) -> Result<cpal::Device, AudioError> {
    pick(&cpal::default_host(), name, false)
}

/// The device's default configuration with 10 ms buffers: without a fixed
/// size, PulseAudio picks buffers of up to two seconds.
fn low_latency(mut config: cpal::StreamConfig) -> cpal::StreamConfig {
    config.buffer_size = cpal::BufferSize::Fixed(config.sample_rate / 100);
    config
}

/// Runs `open` on a new thread that keeps the returned stream alive until
/// the stop flag is set.
fn spawn_stream<F>(open: F, stop: Arc<AtomicBool>) -> Result<u32, AudioError>
where
    F: FnOnce() -> Result<(cpal::Stream, u32), AudioError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("audio-device".into())
        .spawn(move || match open() {
            Ok((stream, rate)) => {
                if let Err(e) = stream.play() {
                    let _ = tx.send(Err(AudioError::backend(e)));
                    return;
                }
                let _ = tx.send(Ok(rate));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                drop(stream);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(AudioError::backend)?;
    rx.recv()
        .map_err(|_| AudioError::backend("the audio device thread died"))?
}

/// A microphone (or any input device, e.g. a PulseAudio monitor).
pub struct CpalSource {
    /// The device's sample rate, in Hz.
    pub device_rate: u32,
    ring: rtrb::Consumer<f32>,
    resampler: Option<FftFixedOut<f32>>,
    scratch: Vec<f32>,
    stop: Arc<AtomicBool>,
    /// The device's counters.
    pub health: Arc<DeviceHealth>,
}

impl CpalSource {
    /// Opens an input device by name (`None`: the default) and starts it.
    ///
    /// # Errors
    /// [`AudioError::NotFound`] or [`AudioError::Backend`].
    pub fn open(name: Option<&str>) -> Result<Self, AudioError> {
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(SAMPLE_RATE as usize);
        let health = Arc::new(DeviceHealth::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (h, n) = (health.clone(), name.map(str::to_string));
        let rate = spawn_stream(
            move || {
                let host = cpal::default_host();
                let dev = pick(&host, n.as_deref(), true)?;
                let cfg = dev.default_input_config().map_err(AudioError::backend)?;
                let channels = cfg.channels() as usize;
                let rate = cfg.sample_rate();
                let mut producer = producer;
                let (h1, h2) = (h.clone(), h);
                let stream = dev
                    .build_input_stream::<f32, _, _>(
                        low_latency(cfg.config()),
                        move |data: &[f32], _| {
                            for frame in data.chunks(channels.max(1)) {
                                let mono = frame.iter().sum::<f32>() / frame.len() as f32;
                                if producer.push(mono).is_err() {
                                    h1.xruns.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        },
                        move |_| h2.failed.store(true, Ordering::Relaxed),
                        None,
                    )
                    .map_err(AudioError::backend)?;
                Ok((stream, rate))
            },
            stop.clone(),
        )?;
        let resampler = if rate == SAMPLE_RATE {
            None
        } else {
            Some(
                FftFixedOut::<f32>::new(rate as usize, SAMPLE_RATE as usize, FRAME, 2, 1)
                    .map_err(AudioError::backend)?,
            )
        };
        Ok(Self {
            device_rate: rate,
            ring: consumer,
            resampler,
            scratch: Vec::with_capacity(FRAME * 4),
            stop,
            health,
        })
    }
}

impl Source for CpalSource {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        let needed = self
            .resampler
            .as_ref()
            .map_or(FRAME, |r| r.input_frames_next());
        if self.ring.slots() < needed {
            // Underrun: the device has not delivered 20 ms yet.
            frame.fill(0.0);
            return true;
        }
        // Keep at most 40 ms queued: what piled up while nobody read (before
        // the call connected) or through clock drift would otherwise become
        // permanent delay.
        let excess = self.ring.slots().saturating_sub(needed * 3);
        for _ in 0..excess {
            let _ = self.ring.pop();
        }
        self.scratch.clear();
        for _ in 0..needed {
            self.scratch.push(self.ring.pop().unwrap_or(0.0));
        }
        match &mut self.resampler {
            None => frame.copy_from_slice(&self.scratch[..FRAME]),
            Some(r) => match r.process(&[&self.scratch[..]], None) {
                Ok(out) => frame.copy_from_slice(&out[0][..FRAME]),
                Err(_) => frame.fill(0.0),
            },
        }
        true
    }

    fn failed(&self) -> bool {
        self.health.failed.load(Ordering::Relaxed)
    }
}

impl Drop for CpalSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A speaker (or any output device, e.g. a PulseAudio null sink).
pub struct CpalSink {
    /// The device's sample rate, in Hz.
    pub device_rate: u32,
    ring: rtrb::Producer<f32>,
    resampler: Option<FftFixedIn<f32>>,
    stop: Arc<AtomicBool>,
    /// The device's counters.
    pub health: Arc<DeviceHealth>,
}

impl CpalSink {
    /// Opens an output device by name (`None`: the default) and starts it.
    ///
    /// # Errors
    /// [`AudioError::NotFound`] or [`AudioError::Backend`].
    pub fn open(name: Option<&str>) -> Result<Self, AudioError> {
        // 200 ms of headroom at up to 96 kHz.
        let (producer, consumer) = rtrb::RingBuffer::<f32>::new(96_000 / 5);
        let health = Arc::new(DeviceHealth::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (h, n) = (health.clone(), name.map(str::to_string));
        let rate = spawn_stream(
            move || {
                let host = cpal::default_host();
                let dev = pick(&host, n.as_deref(), false)?;
                let cfg = dev.default_output_config().map_err(AudioError::backend)?;
                let channels = cfg.channels() as usize;
                let rate = cfg.sample_rate();
                let mut consumer = consumer;
                let (h1, h2) = (h.clone(), h);
                let stream = dev
                    .build_output_stream::<f32, _, _>(
                        low_latency(cfg.config()),
                        move |data: &mut [f32], _| {
                            for frame in data.chunks_mut(channels.max(1)) {
                                let s = match consumer.pop() {
                                    Ok(s) => s,
                                    Err(_) => {
                                        h1.xruns.fetch_add(1, Ordering::Relaxed);
                                        0.0
                                    }
                                };
                                frame.fill(s);
                            }
                        },
                        move |_| h2.failed.store(true, Ordering::Relaxed),
                        None,
                    )
                    .map_err(AudioError::backend)?;
                Ok((stream, rate))
            },
            stop.clone(),
        )?;
        let resampler = if rate == SAMPLE_RATE {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(SAMPLE_RATE as usize, rate as usize, FRAME, 2, 1)
                    .map_err(AudioError::backend)?,
            )
        };
        Ok(Self {
            device_rate: rate,
            ring: producer,
            resampler,
            stop,
            health,
        })
    }
}

impl Sink for CpalSink {
    fn write_frame(&mut self, frame: &[f32]) {
        let out;
        let samples: &[f32] = match &mut self.resampler {
            None => frame,
            Some(r) => match r.process(&[frame], None) {
                Ok(o) => {
                    out = o;
                    &out[0]
                }
                Err(_) => return,
            },
        };
        for &s in samples {
            if self.ring.push(s).is_err() {
                self.health.xruns.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }

    fn failed(&self) -> bool {
        self.health.failed.load(Ordering::Relaxed)
    }
}

impl Drop for CpalSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
