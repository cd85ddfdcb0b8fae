//! DTMF as RFC 4733 telephone-events: the 4-byte RTP payload, a sender that
//! turns a digit into its packet train, and a receiver that turns packets
//! back into digits exactly once each.
//!
//! Payload (RFC 4733 §2.3): `event` (8 bits), `E` end bit, `R` reserved bit,
//! `volume` (6 bits, −dBm0), `duration` (16 bits, in RTP timestamp units).
//! Every packet of one event carries the same RTP timestamp (the event's
//! start); the first has the RTP marker bit; the last three have `E` set.

/// RTP clock rate of telephone-event when negotiated with Opus, in Hz.
pub const CLOCK_RATE: u32 = 48_000;
/// Time between packets of one event, in ms.
pub const PACKET_INTERVAL_MS: u32 = 20;
/// Tone length we send per digit, in ms.
pub const TONE_MS: u32 = 100;
/// Pause after each digit before the next one starts, in ms.
pub const GAP_MS: u32 = 60;

/// A DTMF digit's event code (RFC 4733 §3.2): `0`–`9` → 0–9, `*` → 10,
/// `#` → 11, `A`–`D` → 12–15. `None` for any other character.
pub fn event_code(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

/// The digit of an event code 0–15.
pub fn digit_of(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => return None,
    })
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code 0–15.
    pub event: u8,
    /// End of event.
    pub end: bool,
    /// Volume, 0–63 (−dBm0).
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl EventPayload {
    /// The 4 payload bytes.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// Parses 4 or more bytes (extra bytes are ignored, as RFC 4733 allows
    /// redundancy); `None` when shorter.
    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() >= 4).then(|| Self {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

/// One RTP packet to send for a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Send this many ms after the digit starts.
    pub at_ms: u32,
    /// Set the RTP marker bit (first packet of the event).
    pub marker: bool,
    /// The payload; every packet of the event uses the RTP timestamp of the
    /// digit's start.
    pub payload: EventPayload,
}

/// The packet train for one digit: one packet every 20 ms while the tone
/// lasts, then the end packet sent three times (RFC 4733 §2.5.1.4).
pub fn packets_for(code: u8, tone_ms: u32) -> Vec<EventPacket> {
    let per_ms = CLOCK_RATE / 1000;
    let mut out = Vec::new();
    let mut t = PACKET_INTERVAL_MS;
    while t < tone_ms {
        out.push(EventPacket {
            at_ms: t - PACKET_INTERVAL_MS,
            marker: out.is_empty(),
            payload: EventPayload {
                event: code,
                end: false,
                volume: 10,
                duration: (t * per_ms).min(u16::MAX as u32) as u16,
            },
        });
        t += PACKET_INTERVAL_MS;
    }
    let end = EventPayload {
        event: code,
        end: true,
        volume: 10,
        duration: (tone_ms * per_ms).min(u16::MAX as u32) as u16,
    };
    for i in 0..3 {
        out.push(EventPacket {
            at_ms: tone_ms - PACKET_INTERVAL_MS + i * 5,
            marker: out.is_empty(),
            payload: end,
        });
    }
    out
}

/// Turns received telephone-event packets into digits, each once, however
/// many packets (including retransmitted end packets) carry it.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    last_timestamp: Option<u32>,
}

impl DtmfReceiver {
    /// Feeds one packet (its RTP timestamp and payload); returns the digit
    /// when this packet starts a new event.
    pub fn on_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Option<char> {
        let p = EventPayload::decode(payload)?;
        if self.last_timestamp == Some(rtp_timestamp) {
            return None;
        }
        self.last_timestamp = Some(rtp_timestamp);
        digit_of(p.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit_of(event_code(d).unwrap()), Some(d));
        }
        assert_eq!(event_code('a'), Some(12));
        assert_eq!(event_code('x'), None);
    }

    #[test]
    fn payload_layout_matches_rfc_4733() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 10,
            duration: 4800,
        };
        assert_eq!(p.encode(), [11, 0x80 | 10, 0x12, 0xc0]);
        assert_eq!(EventPayload::decode(&p.encode()), Some(p));
        assert_eq!(EventPayload::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn a_digit_is_a_marked_train_ending_in_three_end_packets() {
        let train = packets_for(5, TONE_MS);
        assert!(train[0].marker && train.iter().skip(1).all(|p| !p.marker));
        let ends: Vec<_> = train.iter().filter(|p| p.payload.end).collect();
        assert_eq!(ends.len(), 3);
        assert_eq!(ends[0].payload.duration, (TONE_MS * 48) as u16);
        let durations: Vec<u16> = train.iter().map(|p| p.payload.duration).collect();
        assert!(durations.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn receiver_reports_each_digit_once_in_order() {
        let mut rx = DtmfReceiver::default();
        let mut got = String::new();
        for (i, d) in "1234#".chars().enumerate() {
            let ts = 10_000 + i as u32 * 9_600;
            for p in packets_for(event_code(d).unwrap(), TONE_MS) {
                if let Some(c) = rx.on_packet(ts, &p.payload.encode()) {
                    got.push(c);
                }
            }
        }
        assert_eq!(got, "1234#");
        // The same digit twice in a row is two events (new timestamps).
        let mut rx = DtmfReceiver::default();
        let a = rx.on_packet(
            1,
            &EventPayload {
                event: 1,
                end: false,
                volume: 10,
                duration: 960,
            }
            .encode(),
        );
        let b = rx.on_packet(
            2,
            &EventPayload {
                event: 1,
                end: false,
                volume: 10,
                duration: 960,
            }
            .encode(),
        );
        assert_eq!((a, b), (Some('1'), Some('1')));
    }
}
