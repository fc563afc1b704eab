//! Baseline vs current: match records by identity, estimate each change with a confidence
//! interval ([`median_ratio_ci`]: a bootstrap, widened by a t interval across repetitions
//! when both sides have several), and give the regression verdict (criterion's rule: a change counts
//! only when its whole interval lies beyond the noise threshold; "unchanged" only when the
//! whole interval lies within it; anything between is "inconclusive").

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::measure::stats::{groups, median_ratio_ci, RatioCi};
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
    /// The whole interval lies within 1 ± threshold.
    Unchanged,
    /// The interval reaches beyond 1 ± threshold but not wholly: too wide to decide.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Options of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Noise threshold as a fraction (0.05 = 5%).
    pub threshold: f64,
    /// Confidence level of the interval (0.99 = 99%).
    pub confidence: f64,
    pub allow_different_device: bool,
    /// Records of the baseline missing from the current run do not fail the gate.
    pub allow_missing: bool,
    /// Inconclusive changes fail the gate.
    pub fail_on_inconclusive: bool,
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
    /// Baseline records the current run lacks: a coverage regression unless allowed.
    pub only_in_baseline: Vec<String>,
    pub only_in_current: Vec<String>,
    pub allow_missing: bool,
    pub fail_on_inconclusive: bool,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.changes.iter().filter(|c| c.verdict == v).count()
    }

    pub fn regressed(&self) -> bool {
        self.count(Verdict::Regressed) > 0
    }

    /// Why the gate fails (empty when it passes): regressions, missing records unless
    /// allowed, inconclusive changes when asked.
    pub fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.regressed() {
            why.push(format!("{} regressed", self.count(Verdict::Regressed)));
        }
        if !self.allow_missing && !self.only_in_baseline.is_empty() {
            why.push(format!(
                "{} baseline record(s) missing from the current run (--allow-missing to accept)",
                self.only_in_baseline.len()
            ));
        }
        let inconclusive = self.count(Verdict::Inconclusive);
        if self.fail_on_inconclusive && inconclusive > 0 {
            why.push(format!(
                "{inconclusive} inconclusive (--fail-on-inconclusive)"
            ));
        }
        why
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}

/// A record's identity: everything that must match for two records to be comparable,
/// every field that changes the work done included, and the file's TF32 setting.
pub fn identity(r: &Record, tf32: bool) -> String {
    let opt = |name: &str, v: Option<String>| v.map_or(String::new(), |v| format!(" {name}={v}"));
    format!(
        "{} {} {} {} {} b{} t{} {} L{} k={}{}{}{}{}{}{}{}{}",
        r.spec.kind,
        r.variant,
        r.spec.map,
        r.implementation,
        r.dtype,
        r.batch,
        r.threads,
        r.device,
        r.layers,
        r.spec.kernel,
        opt("g", r.spec.groups.map(|v| v.to_string())),
        opt("n_div", r.spec.n_div.map(|v| v.to_string())),
        opt("fwd", r.spec.forward.map(|v| v.to_string())),
        opt("e", r.spec.expansion.map(|v| v.to_string())),
        opt("act", r.spec.act.map(|v| v.to_string())),
        opt("n", r.spec.bottlenecks.map(|v| v.to_string())),
        // Infer is the pass of files from before passes existed: it adds nothing.
        opt("pass", (!r.pass.is_infer()).then(|| r.pass.to_string())),
        if tf32 { " tf32" } else { "" }
    )
}

/// The verdict for an interval.
pub fn verdict(ci: &RatioCi, threshold: f64) -> Verdict {
    let (lo, hi) = (1.0 - threshold, 1.0 + threshold);
    if ci.lo > hi {
        Verdict::Regressed
    } else if ci.hi < lo {
        Verdict::Improved
    } else if ci.lo >= lo && ci.hi <= hi {
        Verdict::Unchanged
    } else {
        Verdict::Inconclusive
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
            identity(r, result.config.tf32)
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
            "some records come from a single repetition: their intervals cannot see run-to-run drift (use run --repeat 5 or more for a gate)".into(),
        );
    }
    let mut changes = Vec::new();
    let mut only_in_baseline = Vec::new();
    let base_id = |r: &Record| identity(r, base.config.tf32);
    let cur_id = |r: &Record| identity(r, cur.config.tf32);
    for (i, b) in base.records.iter().enumerate() {
        let id = base_id(b);
        match cur.records.iter().find(|c| cur_id(c) == id) {
            Some(c) => {
                let ci = median_ratio_ci(
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
        .map(cur_id)
        .filter(|id| !base.records.iter().any(|b| base_id(b) == *id))
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
        allow_missing: opts.allow_missing,
        fail_on_inconclusive: opts.fail_on_inconclusive,
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
        assert_eq!(verdict(&ci(1.04, 1.3), 0.05), Verdict::Inconclusive);
        assert_eq!(verdict(&ci(0.7, 0.94), 0.05), Verdict::Improved);
        assert_eq!(verdict(&ci(0.7, 0.96), 0.05), Verdict::Inconclusive);
        assert_eq!(verdict(&ci(0.96, 1.04), 0.05), Verdict::Unchanged);
        // Too wide on both sides: nothing can be said.
        assert_eq!(verdict(&ci(0.8, 1.2), 0.05), Verdict::Inconclusive);
        // The example: [0.92, 1.52] at 10% is no evidence of "unchanged".
        assert_eq!(verdict(&ci(0.92, 1.52), 0.10), Verdict::Inconclusive);
    }

    #[test]
    fn identity_separates_every_field_that_changes_the_work() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/results/cpu-xeon-2c-1t-blocks.json"
        );
        let file: RunResult =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let r = file.records[0].clone();
        let id = identity(&r, false);
        assert_ne!(id, identity(&r, true), "tf32");
        let edits: [fn(&mut Record); 8] = [
            |r| r.pass = crate::ops::Pass::Train,
            |r| r.spec.kernel += 2,
            |r| r.spec.groups = Some(r.spec.groups.unwrap_or(1) + 1),
            |r| r.spec.n_div = Some(r.spec.n_div.unwrap_or(1) + 1),
            |r| {
                r.spec.forward = Some(match r.spec.forward {
                    Some(crate::ops::PConvForward::Slicing) => crate::ops::PConvForward::SplitCat,
                    _ => crate::ops::PConvForward::Slicing,
                })
            },
            |r| r.spec.expansion = Some(r.spec.expansion.unwrap_or(1) + 1),
            |r| {
                r.spec.act = Some(match r.spec.act {
                    Some(crate::ops::Act::Relu) => crate::ops::Act::Gelu,
                    _ => crate::ops::Act::Relu,
                })
            },
            |r| r.spec.bottlenecks = Some(r.spec.bottlenecks.unwrap_or(1) + 1),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut other = r.clone();
            edit(&mut other);
            assert_ne!(identity(&other, false), id, "edit {i}");
        }
    }
}
