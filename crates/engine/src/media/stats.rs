//! A call's media statistics: counters the send and receive paths bump,
//! and [`StatsMeter`], which turns two samples of them into rates, loss and
//! an estimated MOS. Pure: time is an argument.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kind of an ICE candidate (RFC 8445 §5.1.1): where a media path ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum CandidateKind {
    /// An address of the endpoint's own interface.
    Host,
    /// The endpoint's public address as a STUN server saw it (behind NAT).
    Srflx,
    /// An address learnt from a connectivity check (RFC 8445 §7.2.5.3.1).
    Prflx,
    /// An address on a TURN server (RFC 8656) that relays the media.
    Relay,
}

/// Media statistics of one call (the seeds' quality metrics).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MediaStats {
    /// ICE round-trip time (STUN consent checks), in ms.
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter of received RTP (RFC 3550 §6.4.1), in ms.
    pub jitter_ms: f64,
    /// Received packets lost, in percent of those expected.
    pub loss_pct: f64,
    /// RTP payload bitrate sent over the last period, in kbit/s.
    pub send_kbps: f64,
    /// RTP payload bitrate received over the last period, in kbit/s.
    pub recv_kbps: f64,
    /// RTP packets sent in total.
    pub packets_sent: u64,
    /// RTP packets received in total.
    pub packets_received: u64,
    /// Current jitter buffer target delay, in ms.
    pub jitter_buffer_ms: u32,
    /// Estimated MOS (ITU-T G.107 E-model), 1.0–4.5.
    pub mos: f64,
    /// Our end of the selected ICE candidate pair, once one is selected;
    /// `relay` when our media goes through a TURN server.
    pub local_candidate: Option<CandidateKind>,
    /// The far end of the selected ICE candidate pair.
    pub remote_candidate: Option<CandidateKind>,
}

/// Counters shared by a call's send loop, receive path and stats loop
/// (relaxed atomics: each is a monotonic total).
#[derive(Debug, Default)]
pub struct Counters {
    /// RTP packets sent.
    pub sent_packets: AtomicU64,
    /// RTP payload bytes sent.
    pub sent_bytes: AtomicU64,
    /// Audio RTP packets received.
    pub recv_packets: AtomicU64,
    /// Audio RTP payload bytes received.
    pub recv_bytes: AtomicU64,
    /// Audio RTP packets expected from the extended sequence numbers.
    pub expected: AtomicU64,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSample {
    /// RTP packets sent.
    pub sent_packets: u64,
    /// RTP payload bytes sent.
    pub sent_bytes: u64,
    /// Audio RTP packets received.
    pub recv_packets: u64,
    /// Audio RTP payload bytes received.
    pub recv_bytes: u64,
    /// Audio RTP packets expected.
    pub expected: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn sample(&self) -> CounterSample {
        CounterSample {
            sent_packets: self.sent_packets.load(Ordering::Relaxed),
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            recv_packets: self.recv_packets.load(Ordering::Relaxed),
            recv_bytes: self.recv_bytes.load(Ordering::Relaxed),
            expected: self.expected.load(Ordering::Relaxed),
        }
    }

    /// Counts a sent RTP packet with `bytes` of payload.
    pub fn sent(&self, bytes: usize) {
        self.sent_packets.fetch_add(1, Ordering::Relaxed);
        self.sent_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Expected packets from received sequence numbers (RFC 3550 §A.3): the
/// highest extended sequence number seen, counted from the first packet.
#[derive(Debug, Default, Clone)]
pub struct LossCounter {
    first: Option<u16>,
    highest: u64,
}

impl LossCounter {
    /// Notes a received sequence number; returns how many packets are
    /// expected so far. A number far behind the highest (a reordering of
    /// over 30 000) is not counted as progress.
    pub fn on_packet(&mut self, seq: u16) -> u64 {
        let first = *self.first.get_or_insert(seq);
        let ext = seq.wrapping_sub(first) as u64;
        if ext > self.highest && ext < 30_000 {
            self.highest = ext;
        }
        self.highest + 1
    }
}

/// Turns counter samples into [`MediaStats`] over the period since the
/// previous sample (or since the meter started).
#[derive(Debug, Clone)]
pub struct StatsMeter {
    last: CounterSample,
    last_ms: u64,
}

impl StatsMeter {
    /// A meter whose first period starts at `now_ms`, with all counters 0.
    pub fn new(now_ms: u64) -> Self {
        Self {
            last: CounterSample::default(),
            last_ms: now_ms,
        }
    }

    /// The stats at `now_ms` from `c`, the ICE RTT (ms) when known, the
    /// jitter buffer's RFC 3550 jitter (ms) and target delay (ms).
    pub fn sample(
        &mut self,
        c: CounterSample,
        rtt_ms: Option<f64>,
        jitter_ms: f64,
        jitter_buffer_ms: u32,
        now_ms: u64,
    ) -> MediaStats {
        let prev = std::mem::replace(&mut self.last, c);
        let at = std::mem::replace(&mut self.last_ms, now_ms);
        let secs = (now_ms.saturating_sub(at) as f64 / 1000.0).max(0.001);
        let kbps = |now: u64, before: u64| now.saturating_sub(before) as f64 * 8.0 / 1000.0 / secs;
        let loss_pct = if c.expected > 0 {
            (c.expected.saturating_sub(c.recv_packets) as f64 * 100.0 / c.expected as f64)
                .clamp(0.0, 100.0)
        } else {
            0.0
        };
        // Mouth-to-ear: half the RTT, the jitter buffer and one frame.
        let one_way_ms = rtt_ms.unwrap_or(0.0) / 2.0 + jitter_buffer_ms as f64 + 20.0;
        MediaStats {
            rtt_ms,
            jitter_ms,
            loss_pct,
            send_kbps: kbps(c.sent_bytes, prev.sent_bytes),
            recv_kbps: kbps(c.recv_bytes, prev.recv_bytes),
            packets_sent: c.sent_packets,
            packets_received: c.recv_packets,
            jitter_buffer_ms,
            mos: crate::quality::estimate_mos(one_way_ms, loss_pct),
            local_candidate: None,
            remote_candidate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_period_and_loss_from_expected_packets() {
        let mut m = StatsMeter::new(8_000);
        let first = CounterSample {
            sent_packets: 100,
            sent_bytes: 8_000,
            recv_packets: 100,
            recv_bytes: 8_000,
            expected: 100,
        };
        let s = m.sample(first, None, 0.0, 20, 10_000);
        assert!(
            (s.send_kbps - 32.0).abs() < 1e-9,
            "the first period runs from the start"
        );
        let second = CounterSample {
            sent_packets: 200,
            sent_bytes: 16_000,
            recv_packets: 190,
            recv_bytes: 15_000,
            expected: 200,
        };
        let s = m.sample(second, Some(40.0), 3.0, 40, 12_000);
        assert!(
            (s.send_kbps - 32.0).abs() < 1e-9,
            "8000 B in 2 s = 32 kbit/s"
        );
        assert!((s.recv_kbps - 28.0).abs() < 1e-9);
        assert!((s.loss_pct - 5.0).abs() < 1e-9, "10 of 200 lost");
        assert_eq!((s.packets_sent, s.packets_received), (200, 190));
        let clean = StatsMeter::new(0).sample(first, Some(40.0), 3.0, 40, 2_000);
        assert!(s.mos < clean.mos, "loss lowers the MOS");
        assert!((1.0..=4.5).contains(&s.mos));
    }

    #[test]
    fn expected_packets_follow_the_extended_sequence_across_wraparound() {
        let mut l = LossCounter::default();
        assert_eq!(l.on_packet(65_534), 1);
        assert_eq!(l.on_packet(65_535), 2);
        assert_eq!(l.on_packet(1), 4, "0 was lost");
        assert_eq!(l.on_packet(0), 4, "late, no progress");
        assert_eq!(l.on_packet(40_000), 4, "a wild jump is not progress");
    }
}
