//! Statistics of raw samples, as pure functions (no I/O, no clocks).

use serde::{Deserialize, Serialize};

/// A record whose relative IQR (IQR / median) exceeds this is flagged noisy.
pub const NOISY_REL_IQR: f64 = 0.10;

/// Linear-interpolation quantile (Hyndman-Fan type 7, numpy's default) of sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no samples");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(samples: &[f64]) -> f64 {
    quantile_sorted(&sorted(samples), 0.5)
}

pub fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// Sample standard deviation (n - 1 in the denominator); 0 for fewer than two samples.
pub fn std_dev(samples: &[f64]) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let m = mean(samples);
    let ss: f64 = samples.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (samples.len() - 1) as f64).sqrt()
}

/// Samples outside Tukey's fences [p25 - 1.5 IQR, p75 + 1.5 IQR].
pub fn tukey_outliers(samples: &[f64], p25: f64, p75: f64) -> usize {
    let iqr = p75 - p25;
    let (lo, hi) = (p25 - 1.5 * iqr, p75 + 1.5 * iqr);
    samples.iter().filter(|&&x| x < lo || x > hi).count()
}

/// Summary of one record's samples (all in the samples' unit, milliseconds here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub samples: usize,
    pub median_ms: f64,
    pub mean_ms: f64,
    pub std_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub p25_ms: f64,
    pub p75_ms: f64,
    pub iqr_ms: f64,
    /// IQR / median.
    pub rel_iqr: f64,
    /// Tukey outliers (beyond 1.5 IQR from the quartiles).
    pub outliers: usize,
    /// rel_iqr > NOISY_REL_IQR.
    pub noisy: bool,
}

impl Summary {
    /// Summarises a non-empty set of samples.
    pub fn from_samples(samples: &[f64]) -> Self {
        let s = sorted(samples);
        let p25 = quantile_sorted(&s, 0.25);
        let p75 = quantile_sorted(&s, 0.75);
        let median = quantile_sorted(&s, 0.5);
        let iqr = p75 - p25;
        let rel_iqr = if median > 0.0 { iqr / median } else { 0.0 };
        Self {
            samples: s.len(),
            median_ms: median,
            mean_ms: mean(&s),
            std_ms: std_dev(&s),
            min_ms: s[0],
            max_ms: s[s.len() - 1],
            p25_ms: p25,
            p75_ms: p75,
            iqr_ms: iqr,
            rel_iqr,
            outliers: tukey_outliers(&s, p25, p75),
            noisy: rel_iqr > NOISY_REL_IQR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.25), 1.75);
        assert_eq!(quantile_sorted(&s, 0.75), 3.25);
        assert_eq!(quantile_sorted(&s, 0.0), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn summary_of_known_samples() {
        // 1..=9 plus one far outlier.
        let mut v: Vec<f64> = (1..=9).map(f64::from).collect();
        v.push(100.0);
        let s = Summary::from_samples(&v);
        assert_eq!(s.samples, 10);
        assert_eq!(s.median_ms, 5.5);
        assert_eq!(s.min_ms, 1.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(s.p25_ms, 3.25);
        assert_eq!(s.p75_ms, 7.75);
        assert_eq!(s.outliers, 1);
        assert!((s.mean_ms - 14.5).abs() < 1e-12);
        assert!((s.std_ms - 30.152_390_728_873_67).abs() < 1e-9);
        assert!(s.noisy);
    }

    #[test]
    fn tight_samples_are_not_noisy() {
        let v = [10.0, 10.1, 9.9, 10.05, 9.95, 10.0];
        let s = Summary::from_samples(&v);
        assert!(!s.noisy, "{s:?}");
        assert_eq!(s.outliers, 0);
        assert_eq!(std_dev(&[3.0]), 0.0);
    }
}
