//! The send side of a call, one 20 ms tick at a time: a frame of PCM in,
//! the RTP packets to send out. Opus-encodes voice (VOIP, 32 kbit/s,
//! in-band FEC, DTX) and, while a DTMF digit plays, sends its RFC 4733
//! telephone-events instead. No IO and no clock: the caller's 20 ms timer
//! drives [`SendPipeline::tick`].
//!
//! RTP sequence numbers and timestamps start at random values
//! (RFC 3550 §5.1), so that packets of a call are not guessable from the
//! clock.

use std::collections::VecDeque;

use bytes::Bytes;
use softphone_audio::FRAME;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;

use crate::EngineError;
use crate::dtmf::{EventPacket, GAP_MS, TONE_MS, event_code, packets_for};
use crate::track::Payload;

/// Target Opus bitrate, in bit/s.
pub const OPUS_BITRATE: i32 = 32_000;
/// Expected packet loss told to the Opus encoder, in percent: sizes its
/// in-band FEC.
pub const OPUS_EXPECTED_LOSS_PCT: i32 = 10;

/// What the tick must know about the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickFlags {
    /// Either side holds the call: send nothing.
    pub held: bool,
    /// This side is muted: encode digital silence.
    pub muted: bool,
    /// The far end is ready to play out what we send (it has been
    /// connected long enough, or we have heard from it): a queued DTMF digit
    /// may start. Until then digits wait, so that the first one is not
    /// lost while the far end finishes its handshake.
    pub dtmf_ready: bool,
}

/// The digit being sent: its packets, its RTP timestamp, ms since it began.
struct Digit {
    train: Vec<EventPacket>,
    timestamp: u32,
    elapsed_ms: u32,
}

/// The send pipeline of one call. See the module docs.
pub struct SendPipeline {
    encoder: opus::Encoder,
    seq: u16,
    timestamp: u32,
    marker: bool,
    digit: Option<Digit>,
    dtmf: VecDeque<u8>,
    gap_until_ms: u32,
    since_ms: u32,
    out: Vec<u8>,
}

impl SendPipeline {
    /// A pipeline whose first RTP packet has sequence number `seq` and
    /// timestamp `timestamp` (pass random values: [`SendPipeline::random`]).
    ///
    /// # Errors
    /// [`EngineError::Media`] when libopus refuses the settings.
    pub fn new(seq: u16, timestamp: u32) -> Result<Self, EngineError> {
        let opus = |e| EngineError::media("setting up the Opus encoder", e);
        let mut encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .map_err(opus)?;
        encoder
            .set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))
            .map_err(opus)?;
        encoder.set_inband_fec(true).map_err(opus)?;
        encoder
            .set_packet_loss_perc(OPUS_EXPECTED_LOSS_PCT)
            .map_err(opus)?;
        encoder.set_dtx(true).map_err(opus)?;
        Ok(Self {
            encoder,
            seq,
            timestamp,
            marker: true,
            digit: None,
            dtmf: VecDeque::new(),
            gap_until_ms: 0,
            since_ms: 0,
            out: vec![0u8; 1500],
        })
    }

    /// A pipeline with random RTP sequence and timestamp seeds.
    ///
    /// # Errors
    /// As [`SendPipeline::new`].
    pub fn random() -> Result<Self, EngineError> {
        Self::new(rand::random(), rand::random())
    }

    /// Queues DTMF digits (`0-9 * # A-D`).
    ///
    /// # Errors
    /// [`EngineError::InvalidState`] naming the first character that is not
    /// a digit; nothing is queued then.
    pub fn queue_dtmf(&mut self, digits: &str) -> Result<(), EngineError> {
        let codes = parse_digits(digits)?;
        self.dtmf.extend(codes);
        Ok(())
    }

    /// 20 ms passed before the media path is up: the RTP clock runs on,
    /// nothing is sent.
    pub fn idle(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
    }

    /// One 20 ms tick with `pcm` (length [`FRAME`], 48 kHz mono, ±1.0 full
    /// scale; overwritten with silence when muted): the packets to send, in
    /// order, each with what it carries.
    pub fn tick(&mut self, pcm: &mut [f32], flags: TickFlags) -> Vec<(Packet, Payload)> {
        self.idle();
        if flags.held {
            self.marker = true;
            return Vec::new();
        }
        self.since_ms = self.since_ms.saturating_add(20);
        if self.digit.is_none()
            && flags.dtmf_ready
            && self.since_ms >= self.gap_until_ms
            && let Some(code) = self.dtmf.pop_front()
        {
            self.digit = Some(Digit {
                train: packets_for(code, TONE_MS),
                timestamp: self.timestamp,
                elapsed_ms: 0,
            });
        }
        if let Some(d) = &mut self.digit {
            // While a digit plays, it replaces the voice.
            let due: Vec<EventPacket> = d
                .train
                .iter()
                .filter(|p| p.at_ms >= d.elapsed_ms && p.at_ms < d.elapsed_ms + 20)
                .copied()
                .collect();
            let ts = d.timestamp;
            d.elapsed_ms += 20;
            if d.elapsed_ms >= TONE_MS + 20 {
                self.digit = None;
                self.gap_until_ms = self.since_ms + GAP_MS;
                self.marker = true;
            }
            return due
                .into_iter()
                .map(|p| {
                    let pkt =
                        self.packet(p.marker, ts, Bytes::copy_from_slice(&p.payload.encode()));
                    (pkt, Payload::TelephoneEvent)
                })
                .collect();
        }
        if flags.muted {
            pcm.fill(0.0);
        }
        let Ok(n) = self.encoder.encode_float(pcm, &mut self.out) else {
            return Vec::new();
        };
        if n <= 2 {
            // DTX: nothing worth sending during silence.
            self.marker = true;
            return Vec::new();
        }
        let marker = std::mem::replace(&mut self.marker, false);
        let payload = Bytes::copy_from_slice(&self.out[..n]);
        vec![(self.packet(marker, self.timestamp, payload), Payload::Opus)]
    }

    fn packet(&mut self, marker: bool, timestamp: u32, payload: Bytes) -> Packet {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        Packet {
            header: Header {
                version: 2,
                marker,
                sequence_number: seq,
                timestamp,
                ..Default::default()
            },
            payload,
        }
    }
}

/// The RFC 4733 event codes of `digits`.
///
/// # Errors
/// [`EngineError::InvalidState`] naming the first character that is not a
/// DTMF digit.
pub fn parse_digits(digits: &str) -> Result<Vec<u8>, EngineError> {
    digits
        .chars()
        .map(|d| {
            event_code(d)
                .ok_or_else(|| EngineError::InvalidState(format!("`{d}` is not a DTMF digit")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use softphone_audio::{Source, Tone};

    const READY: TickFlags = TickFlags {
        held: false,
        muted: false,
        dtmf_ready: true,
    };

    fn tone_frame(t: &mut Tone) -> Vec<f32> {
        let mut f = vec![0.0; FRAME];
        t.read_frame(&mut f);
        f
    }

    #[test]
    fn voice_goes_out_as_one_opus_packet_per_tick_with_consecutive_numbers() {
        let mut p = SendPipeline::new(65_534, 4_294_966_000).unwrap();
        let mut tone = Tone::new(440.0, -12.0);
        let mut sent = Vec::new();
        for _ in 0..5 {
            sent.extend(p.tick(&mut tone_frame(&mut tone), READY));
        }
        assert_eq!(sent.len(), 5);
        let seqs: Vec<u16> = sent.iter().map(|(p, _)| p.header.sequence_number).collect();
        assert_eq!(seqs, [65_534, 65_535, 0, 1, 2], "wraps around");
        assert!(sent[0].0.header.marker && !sent[1].0.header.marker);
        let ts: Vec<u32> = sent.iter().map(|(p, _)| p.header.timestamp).collect();
        for w in ts.windows(2) {
            assert_eq!(w[1].wrapping_sub(w[0]), FRAME as u32, "20 ms at 48 kHz");
        }
        assert!(sent.iter().all(|(_, k)| *k == Payload::Opus));
        // 32 kbit/s is ~80 bytes per 20 ms.
        let bytes: usize = sent.iter().map(|(p, _)| p.payload.len()).sum();
        assert!((150..=800).contains(&bytes), "{bytes} bytes");
    }

    #[test]
    fn seeds_are_random_not_clock_derived() {
        let a: Vec<(u16, u32)> = (0..8)
            .map(|_| {
                let mut p = SendPipeline::random().unwrap();
                let (pkt, _) = p
                    .tick(&mut tone_frame(&mut Tone::new(440.0, -12.0)), READY)
                    .remove(0);
                (pkt.header.sequence_number, pkt.header.timestamp)
            })
            .collect();
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(distinct.len(), a.len(), "{a:?}");
    }

    #[test]
    fn silence_held_and_muted_send_little_or_nothing() {
        let mut p = SendPipeline::new(0, 0).unwrap();
        let mut quiet = 0;
        for _ in 0..50 {
            quiet += p.tick(&mut vec![0.0; FRAME], READY).len();
        }
        // DTX sends a few frames while it settles, then one every 400 ms.
        assert!(
            quiet <= 15,
            "DTX sent {quiet} of 50 packets of silence in 1 s"
        );
        let mut tone = Tone::new(440.0, -12.0);
        let held = TickFlags {
            held: true,
            ..READY
        };
        assert!(p.tick(&mut tone_frame(&mut tone), held).is_empty());
        let muted = TickFlags {
            muted: true,
            ..READY
        };
        let mut frame = tone_frame(&mut tone);
        p.tick(&mut frame, muted);
        assert!(frame.iter().all(|s| *s == 0.0), "muted frames are silence");
        // After hold the next voice packet starts a talkspurt.
        let mut sent = Vec::new();
        for _ in 0..3 {
            sent.extend(p.tick(&mut tone_frame(&mut tone), READY));
        }
        assert!(sent[0].0.header.marker);
    }

    #[test]
    fn a_digit_replaces_voice_with_rfc_4733_events_then_waits_out_the_gap() {
        let mut p = SendPipeline::new(100, 0).unwrap();
        p.queue_dtmf("1#").unwrap();
        let mut tone = Tone::new(440.0, -12.0);
        let waiting = TickFlags {
            dtmf_ready: false,
            ..READY
        };
        let before = p.tick(&mut tone_frame(&mut tone), waiting);
        assert_eq!(
            before[0].1,
            Payload::Opus,
            "digits wait until the far end is ready"
        );
        let mut events = Vec::new();
        for _ in 0..30 {
            for (pkt, kind) in p.tick(&mut tone_frame(&mut tone), READY) {
                if kind == Payload::TelephoneEvent {
                    events.push(pkt);
                }
            }
        }
        let digit_ts: std::collections::BTreeSet<u32> =
            events.iter().map(|p| p.header.timestamp).collect();
        assert_eq!(digit_ts.len(), 2, "two digits, one timestamp each");
        assert!(
            events[0].header.marker,
            "a new event starts with the marker"
        );
        assert_eq!(events[0].payload[0], 1, "event code of `1`");
        assert_eq!(events.last().unwrap().payload[0], 11, "event code of `#`");
        assert!(
            events.last().unwrap().payload[1] & 0x80 != 0,
            "the last packet has the E bit"
        );
    }

    #[test]
    fn a_character_that_is_not_a_digit_queues_nothing() {
        let mut p = SendPipeline::new(0, 0).unwrap();
        let e = p.queue_dtmf("12x").unwrap_err();
        assert!(e.to_string().contains("`x`"), "{e}");
        let mut silent = vec![0.0; FRAME];
        let events = (0..20)
            .flat_map(|_| p.tick(&mut silent, READY))
            .filter(|(_, kind)| *kind == Payload::TelephoneEvent)
            .count();
        assert_eq!(events, 0, "no digit went out");
    }
}
