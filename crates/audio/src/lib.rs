//! Audio devices of the softphone, behind two small traits: a [`Source`]
//! yields 20 ms frames of 48 kHz mono `f32` samples (full scale ±1.0), a
//! [`Sink`] takes them. The call pipeline's 20 ms clock paces every device,
//! so file devices play and record in real time.
//!
//! Kinds: sound cards through cpal ([`device::CpalSource`],
//! [`device::CpalSink`]), WAV files ([`WavSource`], [`WavSink`]), generators
//! ([`Tone`], [`Silence`]), and a discard sink ([`NullSink`]).
//!
//! [`analysis`] measures what arrived: dominant frequency, RMS in dBFS,
//! normalised cross-correlation.
//!
//! ```
//! use softphone_audio::{FRAME, Source, Tone, analysis};
//! let mut tone = Tone::new(440.0, -12.0);
//! let mut buf = vec![0.0f32; FRAME * 10];
//! for chunk in buf.chunks_mut(FRAME) {
//!     tone.read_frame(chunk);
//! }
//! assert!((analysis::dominant_frequency(&buf, 48_000.0, 100.0, 4_000.0) - 440.0).abs() < 5.0);
//! assert!((analysis::rms_dbfs(&buf) - (-15.0)).abs() < 0.2); // sine RMS = peak − 3 dB
//! ```

use std::f32::consts::TAU;
use std::path::{Path, PathBuf};

pub mod analysis;
#[cfg(feature = "cpal")]
pub mod device;
#[cfg(feature = "cpal")]
pub mod meter;
#[cfg(feature = "ringer")]
pub mod ringer;
pub mod ringtone;

/// Sample rate of every frame, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per 20 ms frame at 48 kHz.
pub const FRAME: usize = 960;

/// Errors of the audio crate: files, sound cards, players.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A WAV file could not be read or written; retrying does not help
    /// unless the file changes.
    #[error("{path}: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: hound::Error,
    },
    /// The file's format is not supported (e.g. more than 2 channels).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No such audio device, or no default one (e.g. `"no input device
    /// `USB headset`"`). Retrying after plugging one in may help.
    #[error("{0}")]
    NotFound(String),
    /// The sound system refused (device busy or gone, unsupported format,
    /// the sound server not running). Retrying may help.
    #[error("the sound system refused: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl AudioError {
    /// Whether retrying the same operation later can succeed (a device
    /// plugged in, the sound server back).
    pub fn retryable(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Backend(_))
    }

    /// A sound-system error, keeping its source.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Backend(e.into())
    }
}

/// Where audio comes from.
pub trait Source: Send {
    /// Fills `frame` (length [`FRAME`]) with the next 20 ms. Returns `false`
    /// once the source is exhausted (the frame is then silence).
    fn read_frame(&mut self, frame: &mut [f32]) -> bool;

    /// Whether the device behind this source has failed (unplugged, its
    /// server gone); the pipeline then replaces it. Files and generators
    /// never fail.
    fn failed(&self) -> bool {
        false
    }
}

/// Where audio goes.
pub trait Sink: Send {
    /// Takes the next 20 ms (length [`FRAME`]).
    fn write_frame(&mut self, frame: &[f32]);
    /// Flushes and closes (e.g. writes the WAV header). Idempotent.
    fn finish(&mut self) {}

    /// Whether the device behind this sink has failed (see
    /// [`Source::failed`]).
    fn failed(&self) -> bool {
        false
    }
}

/// Digital silence, forever.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silence;

impl Source for Silence {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        frame.fill(0.0);
        true
    }
}

/// A sine tone of a given frequency (Hz) and peak level (dBFS), forever.
#[derive(Debug, Clone)]
pub struct Tone {
    step: f32,
    phase: f32,
    amplitude: f32,
}

impl Tone {
    /// A tone of `hz` at `peak_dbfs` (e.g. −12.0).
    pub fn new(hz: f32, peak_dbfs: f32) -> Self {
        Self {
            step: TAU * hz / SAMPLE_RATE as f32,
            phase: 0.0,
            amplitude: 10f32.powf(peak_dbfs / 20.0),
        }
    }
}

impl Source for Tone {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        for s in frame.iter_mut() {
            *s = self.amplitude * self.phase.sin();
            self.phase = (self.phase + self.step) % TAU;
        }
        true
    }
}

/// A WAV file played once (mixed to mono, resampled to 48 kHz), optionally
/// looped.
#[derive(Debug)]
pub struct WavSource {
    samples: Vec<f32>,
    pos: usize,
    looped: bool,
}

impl WavSource {
    /// Loads a PCM (8/16/24/32-bit integer or 32-bit float) WAV file, mono or
    /// stereo, at any rate.
    ///
    /// # Errors
    /// [`AudioError::Wav`] when unreadable, [`AudioError::Format`] for more
    /// than two channels or a failed resampler.
    pub fn open(path: &Path, looped: bool) -> Result<Self, AudioError> {
        let wav_err = |source| AudioError::Wav {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = hound::WavReader::open(path).map_err(wav_err)?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.channels > 2 {
            return Err(AudioError::Format {
                path: path.to_path_buf(),
                reason: format!("{} channels (1 or 2 supported)", spec.channels),
            });
        }
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(wav_err)?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(wav_err)?
            }
        };
        let mono: Vec<f32> = interleaved
            .chunks(spec.channels as usize)
            .map(|c| c.iter().sum::<f32>() / c.len() as f32)
            .collect();
        let samples = if spec.sample_rate == SAMPLE_RATE {
            mono
        } else {
            resample(&mono, spec.sample_rate, SAMPLE_RATE).map_err(|e| AudioError::Format {
                path: path.to_path_buf(),
                reason: format!("cannot resample from {} Hz: {e}", spec.sample_rate),
            })?
        };
        Ok(Self {
            samples,
            pos: 0,
            looped,
        })
    }

    /// Length in samples at 48 kHz.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the file had no audio.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

impl Source for WavSource {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        for s in frame.iter_mut() {
            if self.pos >= self.samples.len() {
                if self.looped && !self.samples.is_empty() {
                    self.pos = 0;
                } else {
                    *s = 0.0;
                    continue;
                }
            }
            *s = self.samples[self.pos];
            self.pos += 1;
        }
        self.looped || self.pos < self.samples.len()
    }
}

/// Resamples mono audio with rubato's FFT resampler.
///
/// # Errors
/// [`AudioError::Backend`] with the resampler's error when it refuses the
/// rates.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, AudioError> {
    use rubato::{FftFixedIn, Resampler};
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(from_hz as usize, to_hz as usize, chunk, 2, 1)
        .map_err(AudioError::backend)?;
    let mut out = Vec::with_capacity(input.len() * to_hz as usize / from_hz as usize + chunk);
    let mut pos = 0;
    while pos + chunk <= input.len() {
        let o = r
            .process(&[&input[pos..pos + chunk]], None)
            .map_err(AudioError::backend)?;
        out.extend_from_slice(&o[0]);
        pos += chunk;
    }
    if pos < input.len() {
        let o = r
            .process_partial(Some(&[&input[pos..]]), None)
            .map_err(AudioError::backend)?;
        out.extend_from_slice(&o[0]);
    }
    let o = r
        .process_partial::<&[f32]>(None, None)
        .map_err(AudioError::backend)?;
    out.extend_from_slice(&o[0]);
    // Drop the resampler's delay so the output lines up with the input.
    let delay = r.output_delay().min(out.len());
    out.drain(..delay);
    out.truncate(input.len() * to_hz as usize / from_hz as usize);
    Ok(out)
}

/// Records to a 48 kHz mono 16-bit WAV file.
pub struct WavSink {
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
}

impl WavSink {
    /// Creates (truncates) the file.
    ///
    /// # Errors
    /// [`AudioError::Wav`] when the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|source| AudioError::Wav {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            writer: Some(writer),
        })
    }
}

impl Sink for WavSink {
    fn write_frame(&mut self, frame: &[f32]) {
        if let Some(w) = &mut self.writer {
            for &s in frame {
                if w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
                    .is_err()
                {
                    self.writer = None;
                    return;
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.finalize();
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl Sink for NullSink {
    fn write_frame(&mut self, _frame: &[f32]) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_and_resampling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let mut sink = WavSink::create(&path).unwrap();
        let mut tone = Tone::new(1000.0, -6.0);
        let mut f = [0.0f32; FRAME];
        for _ in 0..50 {
            tone.read_frame(&mut f);
            sink.write_frame(&f);
        }
        sink.finish();
        let mut src = WavSource::open(&path, false).unwrap();
        assert_eq!(src.len(), 50 * FRAME);
        let mut all = Vec::new();
        while src.read_frame(&mut f) {
            all.extend_from_slice(&f);
        }
        assert!(
            (analysis::dominant_frequency(&all, 48_000.0, 100.0, 4_000.0) - 1000.0).abs() < 5.0
        );

        // A 16 kHz stereo file comes out at 48 kHz mono with the same pitch.
        let path16 = dir.path().join("16k.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path16, spec).unwrap();
        for i in 0..16_000 {
            let v = ((TAU * 500.0 * i as f32 / 16_000.0).sin() * 16_000.0) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let src = WavSource::open(&path16, false).unwrap();
        assert!((src.len() as i64 - 48_000).abs() < 100, "{}", src.len());
        assert!(
            (analysis::dominant_frequency(&src.samples, 48_000.0, 100.0, 4_000.0) - 500.0).abs()
                < 5.0
        );
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let e = WavSource::open(Path::new("/nonexistent/x.wav"), false).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.wav"), "{e}");
    }
}

/// A source cut to its first `frames` × 20 ms (then exhausted).
pub struct Limit {
    inner: Box<dyn Source>,
    left: u32,
}

impl Limit {
    /// `inner` for `frames` frames.
    pub fn new(inner: Box<dyn Source>, frames: u32) -> Self {
        Self {
            inner,
            left: frames,
        }
    }
}

impl Source for Limit {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        if self.left == 0 {
            frame.fill(0.0);
            return false;
        }
        self.left -= 1;
        self.inner.read_frame(frame) && self.left > 0
    }
}

/// What an echo test returns: the far end's audio, `delay` later.
///
/// [`echo`] makes the two ends: the [`EchoSink`] takes what arrives from
/// the caller, the [`EchoSource`] sends it back `delay_frames` × 20 ms
/// later, after an optional greeting.
pub fn echo(delay_frames: usize, greeting: Option<Box<dyn Source>>) -> (EchoSink, EchoSource) {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    (
        EchoSink {
            buffer: shared.clone(),
        },
        EchoSource {
            buffer: shared,
            delay: delay_frames * FRAME,
            greeting,
        },
    )
}

/// The receiving half of [`echo`].
pub struct EchoSink {
    buffer: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<f32>>>,
}

impl Sink for EchoSink {
    fn write_frame(&mut self, frame: &[f32]) {
        if let Ok(mut b) = self.buffer.lock() {
            b.extend(frame.iter().copied());
            // Never hold more than 10 s.
            let excess = b.len().saturating_sub(SAMPLE_RATE as usize * 10);
            b.drain(..excess);
        }
    }
}

/// The sending half of [`echo`].
pub struct EchoSource {
    buffer: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<f32>>>,
    delay: usize,
    greeting: Option<Box<dyn Source>>,
}

impl Source for EchoSource {
    fn read_frame(&mut self, frame: &mut [f32]) -> bool {
        if let Some(g) = &mut self.greeting {
            if g.read_frame(frame) {
                // Discard what the caller said during the greeting.
                if let Ok(mut b) = self.buffer.lock() {
                    b.clear();
                }
                return true;
            }
            self.greeting = None;
        }
        frame.fill(0.0);
        if let Ok(mut b) = self.buffer.lock()
            && b.len() >= self.delay + FRAME
        {
            for s in frame.iter_mut() {
                *s = b.pop_front().unwrap_or(0.0);
            }
        }
        true
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    #[test]
    fn echo_returns_audio_after_the_delay_and_the_greeting() {
        let greeting = Limit::new(Box::new(Tone::new(800.0, -6.0)), 10);
        let (mut sink, mut source) = echo(50, Some(Box::new(greeting)));
        let mut f = [0.0f32; FRAME];
        let mut out = Vec::new();
        let mut tone = Tone::new(300.0, -6.0);
        for _ in 0..120 {
            tone.read_frame(&mut f);
            sink.write_frame(&f);
            source.read_frame(&mut f);
            out.extend_from_slice(&f);
        }
        // Greeting first, then silence for ~1 s, then the caller's 300 Hz.
        assert!(
            (analysis::dominant_frequency(&out[..9 * FRAME], 48_000.0, 100.0, 2_000.0) - 800.0)
                .abs()
                < 5.0
        );
        assert!(analysis::rms_dbfs(&out[12 * FRAME..55 * FRAME]) < -100.0);
        let tail = &out[70 * FRAME..];
        assert!((analysis::dominant_frequency(tail, 48_000.0, 100.0, 2_000.0) - 300.0).abs() < 5.0);
    }
}
