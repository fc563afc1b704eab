//! Results for the benchmark-tracking services teams already run, one benchmark per record
//! (named by its `compare` identity, so a record keeps its name across commits and runs):
//!
//! - Bencher Metric Format (BMF, `--format bmf`): `{name: {measure: {value, lower_value,
//!   upper_value}}}`. `latency` in nanoseconds (Bencher's built-in Latency measure), its
//!   bounds the 95 % bootstrap interval of the median; `throughput` in multiply-adds per
//!   second (Bencher's built-in Throughput measure counts operations per second; here one
//!   operation is one MAC, so the value is GMAC/s × 10⁹), its bounds from the same interval.
//! - github-action-benchmark's `customSmallerIsBetter` (`--format github-action-benchmark`):
//!   `[{name, unit, value, range, extra}]` with the median in ms, `range` the half-width of
//!   the 95 % interval, `extra` the GMAC/s, interval, sample count and device.

use serde_json::{json, Map, Value};

use crate::compare::identity;
use crate::measure::stats::{bootstrap_median_ci, groups};
use crate::record::{Record, RunResult};

/// Confidence of the latency bounds.
const CONFIDENCE: f64 = 0.95;

/// (median, lo, hi) of a record's latency, ms.
fn latency_ms(r: &Record, seed: u64) -> (f64, f64, f64) {
    let (lo, hi) = bootstrap_median_ci(
        &groups(&r.samples_ms, &r.repetitions),
        CONFIDENCE,
        crate::compare::RESAMPLES,
        seed,
    );
    (r.stats.median_ms, lo, hi)
}

fn measured(result: &RunResult) -> impl Iterator<Item = (u64, &Record)> {
    result
        .records
        .iter()
        .filter(|r| !r.samples_ms.is_empty())
        .enumerate()
        .map(|(i, r)| (i as u64, r))
}

pub struct BmfFormat;

impl super::Export for BmfFormat {
    fn export(&self, result: &RunResult) -> String {
        let mut out = Map::new();
        for (i, r) in measured(result) {
            let (m, lo, hi) = latency_ms(r, i);
            let macs = r.cost.macs as f64;
            let per_s = |ms: f64| macs / (ms / 1e3);
            out.insert(
                identity(r, result.config.tf32),
                json!({
                    "latency": {"value": m * 1e6, "lower_value": lo * 1e6, "upper_value": hi * 1e6},
                    "throughput": {"value": per_s(m), "lower_value": per_s(hi), "upper_value": per_s(lo)},
                }),
            );
        }
        serde_json::to_string_pretty(&Value::Object(out)).expect("BMF serialises") + "\n"
    }
}

pub struct GithubActionBenchmarkFormat;

impl super::Export for GithubActionBenchmarkFormat {
    fn export(&self, result: &RunResult) -> String {
        let benches: Vec<Value> = measured(result)
            .map(|(i, r)| {
                let (m, lo, hi) = latency_ms(r, i);
                json!({
                    "name": identity(r, result.config.tf32),
                    "unit": "ms",
                    "value": m,
                    "range": format!("± {:.4}", (hi - lo) / 2.0),
                    "extra": format!(
                        "{:.1} GMAC/s; {:.0} % interval of the median [{lo:.4}, {hi:.4}] ms; {} samples; {} ({})",
                        r.rates.gmac_per_s,
                        CONFIDENCE * 100.0,
                        r.stats.samples,
                        result.device.name,
                        r.device
                    ),
                })
            })
            .collect();
        serde_json::to_string_pretty(&benches).expect("benches serialise") + "\n"
    }
}
