//! The receive side's playout, one 20 ms tick at a time: what the jitter
//! buffer says to play ([`Playout`]) in, one decoded frame of PCM out.
//! Decodes Opus frames, recovers a lost frame from the next packet's
//! in-band FEC (RFC 6716 §2.1.7), conceals short gaps with Opus PLC and
//! plays long ones (DTX, hold, a dead path) as silence. No IO, no clock.

use softphone_audio::FRAME;

use crate::EngineError;
use crate::jitter::Playout;

/// Consecutive frames (of 20 ms) that packet loss concealment may fill;
/// after that the gap plays as silence.
pub const MAX_PLC_FRAMES: u32 = 5;

/// The playout pipeline of one call. See the module docs.
pub struct PlayoutPipeline {
    decoder: opus::Decoder,
    pcm: Vec<f32>,
    heard: bool,
    concealed_run: u32,
}

/// One tick's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// This tick decoded the call's first audio frame.
    pub first_audio: bool,
    /// This tick's frame came from PLC or FEC rather than a packet.
    pub concealed: bool,
}

impl PlayoutPipeline {
    /// A pipeline with a fresh Opus decoder (48 kHz mono).
    ///
    /// # Errors
    /// [`EngineError::Media`] when libopus refuses.
    pub fn new() -> Result<Self, EngineError> {
        Ok(Self {
            decoder: opus::Decoder::new(48_000, opus::Channels::Mono)
                .map_err(|e| EngineError::media("setting up the Opus decoder", e))?,
            pcm: vec![0.0; FRAME],
            heard: false,
            concealed_run: 0,
        })
    }

    /// Decodes what the jitter buffer gave for this tick; the frame is then
    /// in [`PlayoutPipeline::frame`].
    pub fn tick(&mut self, playout: &Playout) -> Tick {
        if matches!(playout, Playout::Conceal) {
            self.concealed_run += 1;
        } else {
            self.concealed_run = 0;
        }
        let ok = match playout {
            Playout::Frame(p) => self.decoder.decode_float(p, &mut self.pcm, false).is_ok(),
            Playout::Fec(p) => self.decoder.decode_float(p, &mut self.pcm, true).is_ok(),
            Playout::Conceal if self.heard && self.concealed_run <= MAX_PLC_FRAMES => {
                self.decoder.decode_float(&[], &mut self.pcm, false).is_ok()
            }
            _ => false,
        };
        if !ok {
            self.pcm.fill(0.0);
        }
        let first_audio = matches!(playout, Playout::Frame(_)) && !self.heard;
        self.heard |= first_audio;
        Tick {
            first_audio,
            concealed: matches!(playout, Playout::Fec(_) | Playout::Conceal),
        }
    }

    /// The frame of the last tick: [`FRAME`] samples, 48 kHz mono.
    pub fn frame(&self) -> &[f32] {
        &self.pcm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::send::{SendPipeline, TickFlags};
    use softphone_audio::{Source, Tone, analysis};

    fn opus_frames(n: usize) -> Vec<Vec<u8>> {
        let mut send = SendPipeline::new(0, 0).unwrap();
        let mut tone = Tone::new(440.0, -12.0);
        let mut out = Vec::new();
        while out.len() < n {
            let mut f = vec![0.0; FRAME];
            tone.read_frame(&mut f);
            for (p, _) in send.tick(&mut f, TickFlags::default()) {
                out.push(p.payload.to_vec());
            }
        }
        out
    }

    #[test]
    fn frames_decode_to_the_tone_and_only_the_first_reports_first_audio() {
        let mut p = PlayoutPipeline::new().unwrap();
        let mut heard = Vec::new();
        let mut firsts = 0;
        for f in opus_frames(25) {
            let t = p.tick(&Playout::Frame(f));
            firsts += t.first_audio as u32;
            heard.extend_from_slice(p.frame());
        }
        assert_eq!(firsts, 1);
        let f = analysis::dominant_frequency(&heard[FRAME * 5..], 48_000.0, 100.0, 4_000.0);
        assert!((f - 440.0).abs() < 5.0, "{f} Hz");
    }

    #[test]
    fn short_gaps_are_concealed_and_long_ones_fall_silent() {
        let mut p = PlayoutPipeline::new().unwrap();
        for f in opus_frames(10) {
            p.tick(&Playout::Frame(f));
        }
        for n in 1..=MAX_PLC_FRAMES {
            assert!(p.tick(&Playout::Conceal).concealed);
            // Opus PLC fades out; the first frames still carry the tone.
            if n <= 2 {
                assert!(
                    analysis::rms_dbfs(p.frame()) > -40.0,
                    "PLC frame {n} has sound"
                );
            }
        }
        p.tick(&Playout::Conceal);
        assert!(p.frame().iter().all(|s| *s == 0.0), "a long gap is silence");
    }

    #[test]
    fn nothing_is_invented_before_the_first_packet() {
        let mut p = PlayoutPipeline::new().unwrap();
        for pl in [Playout::Buffering, Playout::Conceal] {
            let t = p.tick(&pl);
            assert!(!t.first_audio);
            assert!(p.frame().iter().all(|s| *s == 0.0));
        }
    }
}
