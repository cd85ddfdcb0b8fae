//! Call quality: an estimated MOS from the simplified E-model
//! (ITU-T G.107, with the codec impairment of ITU-T G.113 Appendix I).
//!
//! ```
//! use softphone_engine::quality::estimate_mos;
//! // A clean LAN call: 20 ms one-way, no loss.
//! assert!(estimate_mos(20.0, 0.0) > 4.3);
//! // 5 % random loss costs about half a point with FEC/PLC.
//! assert!(estimate_mos(20.0, 5.0) < 4.1);
//! ```

/// Equipment impairment of Opus at ~32 kbit/s in VoIP mode. G.113 has no
/// entry for Opus; wideband codecs at this rate score close to G.722, so we
/// use 0 (no impairment without loss).
const IE_OPUS: f64 = 0.0;
/// Packet-loss robustness of Opus with in-band FEC and PLC (G.113 lists
/// 10–25 for codecs with concealment; we use 20).
const BPL_OPUS: f64 = 20.0;

/// Transmission rating factor R (0–100) for a mouth-to-ear one-way delay in
/// ms and random packet loss in percent (0–100).
pub fn r_factor(one_way_delay_ms: f64, loss_pct: f64) -> f64 {
    let d = one_way_delay_ms.max(0.0);
    let ppl = loss_pct.clamp(0.0, 100.0);
    // G.107 simplified delay impairment.
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    // G.107 §3.6 effective equipment impairment, random loss (BurstR = 1).
    let ie_eff = IE_OPUS + (95.0 - IE_OPUS) * ppl / (ppl + BPL_OPUS);
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// MOS (1.0–4.5) from R (G.107 Annex B).
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6).clamp(1.0, 4.5)
    }
}

/// Estimated MOS (1.0–4.5) for a one-way delay in ms and loss in percent.
pub fn estimate_mos(one_way_delay_ms: f64, loss_pct: f64) -> f64 {
    mos_from_r(r_factor(one_way_delay_ms, loss_pct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_points() {
        // No delay, no loss: R = 93.2, MOS ≈ 4.41 (the G.107 default).
        assert!((mos_from_r(93.2) - 4.41).abs() < 0.01);
        assert!((r_factor(0.0, 0.0) - 93.2).abs() < 1e-9);
        // Delay beyond 177.3 ms hurts much more.
        let near = r_factor(150.0, 0.0) - r_factor(170.0, 0.0);
        let far = r_factor(300.0, 0.0) - r_factor(320.0, 0.0);
        assert!(far > 3.0 * near);
    }

    #[test]
    fn mos_falls_with_loss_and_delay_and_stays_in_range() {
        let mut prev = 5.0;
        for loss in [0.0, 1.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0] {
            let m = estimate_mos(40.0, loss);
            assert!(m < prev && (1.0..=4.5).contains(&m), "{loss}% -> {m}");
            prev = m;
        }
        assert!(estimate_mos(600.0, 0.0) < 3.0);
        assert_eq!(mos_from_r(-5.0), 1.0);
    }
}
