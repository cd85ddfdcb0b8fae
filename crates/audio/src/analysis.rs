//! Measurements of received audio, for tests and `phonectl`: dominant
//! frequency (Goertzel scan), RMS level in dBFS, and normalised
//! cross-correlation with the best alignment.

use std::f64::consts::PI;

/// Goertzel power of `samples` at `hz`.
pub fn goertzel_power(samples: &[f32], sample_rate: f64, hz: f64) -> f64 {
    let w = 2.0 * PI * hz / sample_rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The frequency in `[lo_hz, hi_hz]` with the most energy, found by a 5 Hz
/// Goertzel scan refined to 1 Hz; in Hz.
pub fn dominant_frequency(samples: &[f32], sample_rate: f64, lo_hz: f64, hi_hz: f64) -> f64 {
    let scan = |lo: f64, hi: f64, step: f64| {
        let mut best = (lo, f64::MIN);
        let mut f = lo;
        while f <= hi {
            let p = goertzel_power(samples, sample_rate, f);
            if p > best.1 {
                best = (f, p);
            }
            f += step;
        }
        best.0
    };
    let coarse = scan(lo_hz, hi_hz, 5.0);
    scan((coarse - 5.0).max(lo_hz), (coarse + 5.0).min(hi_hz), 1.0)
}

/// RMS level in dBFS (a full-scale square wave is 0 dBFS); −200 for silence.
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return -200.0;
    }
    let ms = samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64;
    if ms <= 0.0 {
        -200.0
    } else {
        (10.0 * ms.log10()).max(-200.0)
    }
}

/// Normalised cross-correlation of `a` against `b` shifted by every lag in
/// `0..=max_lag` samples (b delayed relative to a); returns (best lag, its
/// correlation in −1..1).
pub fn best_alignment(a: &[f32], b: &[f32], max_lag: usize) -> (usize, f64) {
    best_in(a, b, 0, max_lag)
}

/// The lag in `lo..=hi` with the highest correlation of `a` against `b`
/// delayed by it.
fn best_in(a: &[f32], b: &[f32], lo: usize, hi: usize) -> (usize, f64) {
    let mut best = (lo, f64::MIN);
    for lag in lo..=hi.min(b.len()) {
        let n = a.len().min(b.len() - lag);
        if n == 0 {
            break;
        }
        let c = correlation(&a[..n], &b[lag..lag + n]);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// Like [`best_alignment`] but fast on long signals: finds the lag on
/// 48×-decimated copies first, then refines it within ±96 samples at full
/// rate. Returns (lag in samples, correlation).
pub fn best_alignment_coarse_fine(a: &[f32], b: &[f32], max_lag: usize) -> (usize, f64) {
    const K: usize = 48;
    let decimate = |x: &[f32]| -> Vec<f32> {
        x.chunks(K)
            .map(|c| c.iter().map(|v| v.abs()).sum::<f32>() / c.len() as f32)
            .collect()
    };
    let (da, db) = (decimate(a), decimate(b));
    let (coarse, _) = best_alignment(&da, &db, max_lag / K + 1);
    let center = coarse * K;
    best_in(a, b, center.saturating_sub(2 * K), center + 2 * K)
}

/// Pearson correlation of two equal-length signals.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    let ma = a[..n].iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let mb = b[..n].iter().map(|&x| x as f64).sum::<f64>() / n as f64;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i] as f64 - ma, b[i] as f64 - mb);
        num += x * y;
        da += x * x;
        db += y * y;
    }
    if da == 0.0 || db == 0.0 {
        0.0
    } else {
        num / (da * db).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_finds_a_delay() {
        let a: Vec<f32> = (0..4800)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let mut b = vec![0.0f32; 300];
        b.extend_from_slice(&a);
        let (lag, c) = best_alignment(&a, &b, 1000);
        assert_eq!(lag, 300);
        assert!(c > 0.999);
        assert_eq!(rms_dbfs(&[0.0; 10]), -200.0);
    }
}
