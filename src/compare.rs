//! Baseline vs current: match records by identity, estimate each change with a bootstrap
//! confidence interval, and give the regression verdict (criterion's rule: a change counts
//! only when its whole interval lies beyond the noise threshold).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::measure::stats::{bootstrap_median_ratio, groups, RatioCi};
use crate::record::{Record, RunResult};

/// Bootstrap resamples per comparison.
pub const RESAMPLES: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole interval lies above 1 + threshold.
    Regressed,
    /// The whole interval lies below 1 - threshold.
    Improved,
    Unchanged,
}

/// Options of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Noise threshold as a fraction (0.05 = 5%).
    pub threshold: f64,
    /// Confidence level of the interval (0.99 = 99%).
    pub confidence: f64,
    pub allow_different_device: bool,
}

/// One matched record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The record's identity, for people.
    pub label: String,
    pub baseline_median_ms: f64,
    pub current_median_ms: f64,
    /// median(current) / median(baseline) with its interval.
    pub ratio: RatioCi,
    pub verdict: Verdict,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: String,
    pub current: String,
    pub threshold: f64,
    pub confidence: f64,
    /// Differences of environment between the two files, said up front.
    pub environment: Vec<String>,
    pub changes: Vec<Change>,
    pub only_in_baseline: Vec<String>,
    pub only_in_current: Vec<String>,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.changes.iter().filter(|c| c.verdict == v).count()
    }

    pub fn regressed(&self) -> bool {
        self.count(Verdict::Regressed) > 0
    }
}

/// A record's identity: everything that must match for two records to be comparable.
pub fn identity(r: &Record) -> String {
    format!(
        "{} {} {} {} {} b{} t{} {} L{}",
        r.op, r.variant, r.shape, r.implementation, r.dtype, r.batch, r.threads, r.device, r.layers
    )
}

/// The verdict for an interval.
pub fn verdict(ci: &RatioCi, threshold: f64) -> Verdict {
    if ci.lo > 1.0 + threshold {
        Verdict::Regressed
    } else if ci.hi < 1.0 - threshold {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

/// Parses a threshold such as `5%`, `5` or `2.5%` into a fraction in (0, 1).
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim();
    t.strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v < 100.0)
        .map(|v| v / 100.0)
        .ok_or_else(|| {
            format!("threshold '{s}' is not allowed: give a percentage in (0, 100), e.g. 5%")
        })
}

fn check_samples(path: &Path, result: &RunResult) -> Result<()> {
    match result.records.iter().find(|r| r.samples_ms.is_empty()) {
        Some(r) => Err(Error::Invalid(format!(
            "'{}': record '{}' has no raw samples (samples_ms is empty): compare needs them",
            path.display(),
            identity(r)
        ))),
        None => Ok(()),
    }
}

/// Compares two results files.
pub fn compare(
    base_path: &Path,
    base: &RunResult,
    cur_path: &Path,
    cur: &RunResult,
    opts: Options,
) -> Result<Comparison> {
    check_samples(base_path, base)?;
    check_samples(cur_path, cur)?;
    let mut environment = Vec::new();
    if base.device.name != cur.device.name {
        if !opts.allow_different_device {
            return Err(Error::Invalid(format!(
                "baseline ran on '{}', current on '{}': comparing different devices needs --allow-different-device",
                base.device.name, cur.device.name
            )));
        }
        environment.push(format!(
            "device differs: '{}' vs '{}'",
            base.device.name, cur.device.name
        ));
    }
    let differ = |what: &str, a: &str, b: &str, env: &mut Vec<String>| {
        if a != b {
            env.push(format!("{what} differs: {a} vs {b}"));
        }
    };
    differ(
        "schema_version",
        &base.schema_version.to_string(),
        &cur.schema_version.to_string(),
        &mut environment,
    );
    differ(
        "candle version",
        &base.tool.candle_version,
        &cur.tool.candle_version,
        &mut environment,
    );
    let commit = |r: &RunResult| {
        r.tool
            .git_commit
            .clone()
            .unwrap_or_else(|| "unknown".into())
    };
    differ("tool commit", &commit(base), &commit(cur), &mut environment);

    let single = |r: &RunResult| r.records.iter().any(|rec| rec.repetitions.len() < 2);
    if single(base) || single(cur) {
        environment.push(
            "some records come from a single repetition: their intervals cannot see run-to-run drift (use run --repeat 3 or more for a gate)".into(),
        );
    }
    let mut changes = Vec::new();
    let mut only_in_baseline = Vec::new();
    for (i, b) in base.records.iter().enumerate() {
        let id = identity(b);
        match cur.records.iter().find(|c| identity(c) == id) {
            Some(c) => {
                let ci = bootstrap_median_ratio(
                    &groups(&b.samples_ms, &b.repetitions),
                    &groups(&c.samples_ms, &c.repetitions),
                    opts.confidence,
                    RESAMPLES,
                    i as u64,
                );
                changes.push(Change {
                    verdict: verdict(&ci, opts.threshold),
                    label: id,
                    baseline_median_ms: b.stats.median_ms,
                    current_median_ms: c.stats.median_ms,
                    ratio: ci,
                });
            }
            None => only_in_baseline.push(id),
        }
    }
    let only_in_current: Vec<String> = cur
        .records
        .iter()
        .map(identity)
        .filter(|id| !base.records.iter().any(|b| identity(b) == *id))
        .collect();
    if changes.is_empty() {
        return Err(Error::Invalid(format!(
            "'{}' and '{}' have no record in common (same op, variant, shape, impl, dtype, batch, threads, device, layers): nothing to compare",
            base_path.display(),
            cur_path.display()
        )));
    }
    Ok(Comparison {
        baseline: base_path.display().to_string(),
        current: cur_path.display().to_string(),
        threshold: opts.threshold,
        confidence: opts.confidence,
        environment,
        changes,
        only_in_baseline,
        only_in_current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_percentages() {
        assert_eq!(parse_threshold("5%").unwrap(), 0.05);
        assert_eq!(parse_threshold("2.5").unwrap(), 0.025);
        for bad in ["0", "100%", "-3%", "five", ""] {
            assert!(parse_threshold(bad)
                .unwrap_err()
                .contains(&format!("'{bad}'")));
        }
    }

    #[test]
    fn verdicts_need_the_whole_interval_beyond_the_threshold() {
        let ci = |lo, hi| RatioCi {
            ratio: (lo + hi) / 2.0,
            lo,
            hi,
            confidence: 0.99,
        };
        assert_eq!(verdict(&ci(1.06, 1.3), 0.05), Verdict::Regressed);
        assert_eq!(verdict(&ci(1.04, 1.3), 0.05), Verdict::Unchanged);
        assert_eq!(verdict(&ci(0.7, 0.94), 0.05), Verdict::Improved);
        assert_eq!(verdict(&ci(0.7, 0.96), 0.05), Verdict::Unchanged);
    }
}
