//! Adaptive jitter buffer for 20 ms Opus packets.
//!
//! Received RTP packets go in with [`JitterBuffer::push`] in arrival order;
//! the playout clock takes one 20 ms frame out every 20 ms with
//! [`JitterBuffer::pop`]. In between, the buffer
//!
//! - puts packets back in sequence order (reordering) and drops duplicates
//!   and packets that arrive after their playout time (late);
//! - holds playout back by a *target delay* that follows the measured
//!   interarrival jitter (RFC 3550 §6.4.1): `target = clamp(20 ms,
//!   frame + 3 × jitter, 200 ms)`, rounded up to whole frames;
//! - when a packet is missing but the next one is there, asks the decoder
//!   to rebuild it from the next packet's in-band FEC (Opus LBRR, RFC 6716
//!   §2.1.7); when both are missing, asks for packet loss concealment (PLC);
//! - when nothing at all is buffered (a late packet, or DTX silence), conceals
//!   *without* advancing, which stretches the delay by one frame; if later
//!   packets then show the awaited ones were lost, those concealed frames
//!   count for them; when more than `target + 2` frames are buffered, it
//!   drops one frame (at most one per 200 ms) to shrink the delay.
//!
//! Sequence numbers are 16-bit on the wire and extended to 64 bits here, so
//! wrap-around is handled. Times are in ms from any monotonic origin.
//!
//! The buffer allocates only when a packet is pushed (it owns the payload);
//! [`JitterBuffer::pop`] never allocates.

use std::collections::BTreeMap;

/// Duration of one frame, in ms.
pub const FRAME_MS: u32 = 20;
/// Smallest target delay, in ms.
pub const MIN_DELAY_MS: u32 = 20;
/// Largest target delay, in ms.
pub const MAX_DELAY_MS: u32 = 200;
/// Packets kept at most (10 s of audio); beyond that the oldest go.
const CAPACITY: usize = 500;
/// Pops between two skips when the buffer is too deep (200 ms).
const SKIP_EVERY: u32 = 10;

/// What the playout clock should decode for the next 20 ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet normally.
    Frame(Vec<u8>),
    /// This frame was lost; decode it from the FEC data carried in this (the
    /// next) packet, i.e. `decode(payload, fec = true)`.
    Fec(Vec<u8>),
    /// This frame is missing and cannot be rebuilt: run the decoder's packet
    /// loss concealment.
    Conceal,
    /// Playout has not started (nothing received yet, or still filling to the
    /// target delay): play silence.
    Buffering,
}

/// Counters, for stats (all since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub received: u64,
    /// Frames played from their own packet.
    pub played: u64,
    /// Frames rebuilt from the next packet's FEC.
    pub fec: u64,
    /// Frames concealed (PLC), including stretches while empty.
    pub concealed: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Packets discarded unplayed to shrink the delay.
    pub skipped: u64,
}

/// The adaptive jitter buffer. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, Vec<u8>>,
    /// Highest extended sequence number seen.
    highest: Option<u64>,
    /// Next extended sequence number to play.
    next: Option<u64>,
    started: bool,
    /// RFC 3550 interarrival jitter estimate, in ms.
    jitter_ms: f64,
    /// (arrival ms, RTP timestamp) of the previous packet, for the jitter.
    last_transit: Option<f64>,
    clock_rate_per_ms: f64,
    first_arrival_ms: Option<u64>,
    /// Frames concealed while empty since the last played frame.
    stretch: u64,
    pops_since_skip: u32,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new(48_000)
    }
}

impl JitterBuffer {
    /// A buffer for RTP timestamps at `clock_rate` Hz (48 000 for Opus).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            started: false,
            jitter_ms: 0.0,
            last_transit: None,
            clock_rate_per_ms: clock_rate as f64 / 1000.0,
            first_arrival_ms: None,
            stretch: 0,
            pops_since_skip: 0,
            stats: JitterStats::default(),
        }
    }

    /// Current interarrival jitter estimate, in ms.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ms
    }

    /// Current target delay, in ms (a multiple of [`FRAME_MS`], 20–200).
    pub fn target_delay_ms(&self) -> u32 {
        let raw = FRAME_MS as f64 + 3.0 * self.jitter_ms;
        let frames = (raw / FRAME_MS as f64).ceil() as u32;
        (frames * FRAME_MS).clamp(MIN_DELAY_MS, MAX_DELAY_MS)
    }

    /// Audio buffered ahead of the playout point, in ms.
    pub fn buffered_ms(&self) -> u32 {
        match (self.next, self.highest) {
            (Some(n), Some(h)) if h >= n => ((h - n + 1) as u32) * FRAME_MS,
            _ => 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Extends a 16-bit sequence number to the one closest to the highest
    /// seen (RFC 3550 Appendix A.1 style).
    fn extend(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            // Start high enough that early reordering cannot go below zero.
            return (1u64 << 16) + seq as u64;
        };
        let base = h & !0xffff;
        let candidates = [base.wrapping_sub(1 << 16), base, base + (1 << 16)];
        candidates
            .into_iter()
            .map(|b| b + seq as u64)
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(base + seq as u64)
    }

    /// Adds a received packet: RTP sequence number, RTP timestamp, payload,
    /// and its arrival time in ms.
    pub fn push(&mut self, seq: u16, timestamp: u32, payload: Vec<u8>, arrival_ms: u64) {
        let ext = self.extend(seq);
        if self.next.is_some_and(|n| ext < n) {
            self.stats.late += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        // RFC 3550 §6.4.1: D = (Rj - Ri) - (Sj - Si); J += (|D| - J) / 16.
        let transit = arrival_ms as f64 - timestamp as f64 / self.clock_rate_per_ms;
        if let Some(prev) = self.last_transit {
            let mut d = (transit - prev).abs();
            // A timestamp jump (DTX, wrap) is not jitter.
            if d > 1000.0 {
                d = self.jitter_ms;
            }
            self.jitter_ms += (d - self.jitter_ms) / 16.0;
        }
        self.last_transit = Some(transit);
        self.first_arrival_ms.get_or_insert(arrival_ms);
        self.packets.insert(ext, payload);
        self.stats.received += 1;
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        if self.next.is_none_or(|n| ext < n) && !self.started {
            self.next = Some(ext);
        }
        while self.packets.len() > CAPACITY {
            if let Some((&k, _)) = self.packets.iter().next() {
                self.packets.remove(&k);
                self.next = Some(k + 1);
            }
        }
    }

    /// Takes the next 20 ms of playout; call exactly once per 20 ms.
    pub fn pop(&mut self, now_ms: u64) -> Playout {
        let Some(mut next) = self.next else {
            return Playout::Buffering;
        };
        if !self.started {
            let waited = now_ms.saturating_sub(self.first_arrival_ms.unwrap_or(now_ms));
            if waited + FRAME_MS as u64 <= self.target_delay_ms() as u64 {
                return Playout::Buffering;
            }
            self.started = true;
        }
        // Too deep: drop one frame (at most one per SKIP_EVERY pops) to bring
        // the delay back towards the target.
        self.pops_since_skip = self.pops_since_skip.saturating_add(1);
        let target_frames = (self.target_delay_ms() / FRAME_MS) as u64;
        if self.packets.len() as u64 > target_frames + 2 && self.pops_since_skip >= SKIP_EVERY {
            if self.packets.remove(&next).is_some() {
                self.stats.skipped += 1;
            }
            next += 1;
            self.pops_since_skip = 0;
        }
        if let Some(payload) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            self.stretch = 0;
            self.stats.played += 1;
            return Playout::Frame(payload);
        }
        let highest = self.highest.unwrap_or(next);
        if highest <= next {
            // Empty: the packet may only be late (or the sender is in DTX).
            // Conceal without advancing; this stretches the delay.
            self.next = Some(next);
            self.stretch += 1;
            self.stats.concealed += 1;
            return Playout::Conceal;
        }
        // A gap is confirmed by later packets. The frames concealed while we
        // waited stand in for the first missing ones.
        while self.stretch > 0 && next < highest && !self.packets.contains_key(&next) {
            next += 1;
            self.stretch -= 1;
        }
        self.stretch = 0;
        if let Some(payload) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            self.stats.played += 1;
            return Playout::Frame(payload);
        }
        self.next = Some(next + 1);
        match self.packets.get(&(next + 1)) {
            Some(following) => {
                self.stats.fec += 1;
                Playout::Fec(following.clone())
            }
            None => {
                self.stats.concealed += 1;
                Playout::Conceal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u32 = 960; // 20 ms at 48 kHz

    fn pkt(n: u16) -> Vec<u8> {
        n.to_be_bytes().to_vec()
    }

    /// Feeds packets (seq, arrival ms) and pops every 20 ms from `start`
    /// until `end`; returns the playout sequence.
    fn run(arrivals: &[(u16, u64)], start: u64, end: u64) -> (Vec<Playout>, JitterBuffer) {
        let mut jb = JitterBuffer::new(48_000);
        let mut out = Vec::new();
        let mut t = start;
        let mut i = 0;
        let mut sorted: Vec<(u16, u64)> = arrivals.to_vec();
        sorted.sort_by_key(|&(_, at)| at);
        while t <= end {
            while i < sorted.len() && sorted[i].1 <= t {
                let (seq, at) = sorted[i];
                jb.push(seq, seq as u32 * TS, pkt(seq), at);
                i += 1;
            }
            out.push(jb.pop(t));
            t += 20;
        }
        (out, jb)
    }

    fn frames(out: &[Playout]) -> Vec<u16> {
        out.iter()
            .filter_map(|p| match p {
                Playout::Frame(b) => Some(u16::from_be_bytes([b[0], b[1]])),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_packets_play_in_order_after_the_minimum_delay() {
        let arrivals: Vec<(u16, u64)> = (0..50).map(|s| (s, 1000 + s as u64 * 20)).collect();
        let (out, jb) = run(&arrivals, 1000, 2000);
        assert_eq!(out[0], Playout::Buffering);
        assert_eq!(frames(&out), (0..50).collect::<Vec<_>>());
        assert_eq!(jb.target_delay_ms(), 20);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn reordered_packets_are_put_back_in_order() {
        let mut arrivals: Vec<(u16, u64)> = (0..40).map(|s| (s, 1000 + s as u64 * 20)).collect();
        // 11 overtakes 10, and 21 overtakes 20, both within the 20 ms target.
        arrivals[10].1 = 1000 + 10 * 20 + 15;
        arrivals[11].1 = 1000 + 10 * 20 + 10;
        arrivals[20].1 = 1000 + 20 * 20 + 18;
        arrivals[21].1 = 1000 + 20 * 20 + 2;
        let (out, jb) = run(&arrivals, 1000, 1800);
        assert_eq!(frames(&out), (0..40).collect::<Vec<_>>());
        assert_eq!(jb.stats().late, 0);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn a_single_loss_is_rebuilt_from_the_next_packets_fec() {
        let arrivals: Vec<(u16, u64)> = (0..30)
            .filter(|&s| s != 12)
            .map(|s| (s, 1000 + s as u64 * 20))
            .collect();
        let (out, jb) = run(&arrivals, 1000, 1600);
        let pos = out
            .iter()
            .position(|p| matches!(p, Playout::Fec(_)))
            .expect("an FEC frame");
        assert_eq!(out[pos], Playout::Fec(pkt(13)));
        assert_eq!(out[pos + 1], Playout::Frame(pkt(13)));
        assert_eq!(jb.stats().fec, 1);
        assert_eq!(jb.stats().concealed, 0);
    }

    #[test]
    fn a_burst_loss_is_concealed_then_fec_then_resumes() {
        let arrivals: Vec<(u16, u64)> = (0..30)
            .filter(|s| !(10..13).contains(s))
            .map(|s| (s, 1000 + s as u64 * 20))
            .collect();
        let (out, jb) = run(&arrivals, 1000, 1600);
        let first_gap = out
            .iter()
            .position(|p| matches!(p, Playout::Conceal))
            .expect("concealment");
        assert_eq!(out[first_gap + 1], Playout::Conceal);
        assert_eq!(out[first_gap + 2], Playout::Fec(pkt(13)));
        assert_eq!(out[first_gap + 3], Playout::Frame(pkt(13)));
        assert_eq!(jb.stats().concealed, 2);
    }

    #[test]
    fn target_delay_follows_jitter_up_and_back_down() {
        // 25 ms of random-ish jitter for 10 s, then a clean network for 30 s.
        let mut jb = JitterBuffer::new(48_000);
        let mut seed: u64 = 7;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % 50
        };
        for s in 0..500u32 {
            jb.push(
                s as u16,
                s * TS,
                pkt(s as u16),
                1000 + s as u64 * 20 + rand(),
            );
        }
        let jittery = jb.target_delay_ms();
        assert!(jb.jitter_ms() > 8.0, "jitter {}", jb.jitter_ms());
        assert!(jittery >= 60, "target {jittery} ms");
        for s in 500..2000u32 {
            jb.push(s as u16, s * TS, pkt(s as u16), 1000 + s as u64 * 20 + 60);
        }
        assert!(jb.jitter_ms() < 1.0, "jitter {}", jb.jitter_ms());
        assert_eq!(jb.target_delay_ms(), 20);
    }

    #[test]
    fn under_jitter_every_packet_is_played_once_and_in_order() {
        let mut seed: u64 = 99;
        let mut rand = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % 40
        };
        let arrivals: Vec<(u16, u64)> = (0..300)
            .map(|s| (s, 1000 + s as u64 * 20 + rand()))
            .collect();
        let (out, jb) = run(&arrivals, 1000, 1000 + 300 * 20 + 400);
        let played = frames(&out);
        let mut sorted = played.clone();
        sorted.dedup();
        sorted.sort();
        assert_eq!(played, sorted, "order");
        let st = jb.stats();
        // Every packet is either played, skipped, or late; lateness stays rare
        // because the target delay grows with the jitter.
        assert_eq!(st.played + st.skipped + st.late, 300, "{st:?}");
        assert!(st.late <= 15, "{st:?}");
    }

    #[test]
    fn a_deep_buffer_is_shrunk_by_skipping() {
        // A 200 ms stall, then everything at once.
        let mut arrivals: Vec<(u16, u64)> = (0..10).map(|s| (s, 1000 + s as u64 * 20)).collect();
        arrivals.extend((10..60).map(|s| (s, 1400)));
        arrivals.extend((60..100).map(|s| (s, 1000 + s as u64 * 20)));
        let (_, jb) = run(&arrivals, 1000, 3200);
        assert!(jb.stats().skipped > 0, "{:?}", jb.stats());
        assert!(jb.buffered_ms() <= jb.target_delay_ms() + 3 * FRAME_MS);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let mut jb = JitterBuffer::new(48_000);
        for s in 0..5u16 {
            jb.push(s, s as u32 * TS, pkt(s), 1000 + s as u64 * 20);
        }
        jb.push(3, 3 * TS, pkt(3), 1090);
        assert_eq!(jb.stats().duplicates, 1);
        for t in 0..5 {
            jb.pop(1100 + t * 20);
        }
        jb.push(1, TS, pkt(1), 1300);
        assert_eq!(jb.stats().late, 1);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut jb = JitterBuffer::new(48_000);
        let seqs: Vec<u16> = (0..20).map(|i| 65530u16.wrapping_add(i)).collect();
        let mut played = Vec::new();
        for (i, &s) in seqs.iter().enumerate() {
            let at = 1000 + i as u64 * 20;
            jb.push(s, i as u32 * TS, pkt(s), at);
            if let Playout::Frame(b) = jb.pop(at + 20) {
                played.push(u16::from_be_bytes([b[0], b[1]]));
            }
        }
        if let Playout::Frame(b) = jb.pop(1000 + 20 * 20 + 20) {
            played.push(u16::from_be_bytes([b[0], b[1]]));
        }
        assert_eq!(played, seqs);
    }

    #[test]
    fn an_empty_buffer_conceals_without_losing_its_place() {
        let mut jb = JitterBuffer::new(48_000);
        jb.push(0, 0, pkt(0), 1000);
        assert_eq!(jb.pop(1020), Playout::Frame(pkt(0)));
        // Packet 1 is 50 ms late: two concealed frames, then it plays.
        assert_eq!(jb.pop(1040), Playout::Conceal);
        assert_eq!(jb.pop(1060), Playout::Conceal);
        jb.push(1, TS, pkt(1), 1070);
        assert_eq!(jb.pop(1080), Playout::Frame(pkt(1)));
    }
}
