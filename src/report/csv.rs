//! CSV: one row per record, plain numbers in fixed units (no formatting, no samples), for
//! spreadsheets and pandas.

use super::rows::{ordered, speedup_vs_conv};
use crate::record::RunResult;

pub struct CsvFormat;

const HEADER: &[&str] = &[
    "op",
    "variant",
    "kernel",
    "groups",
    "n_div",
    "forward",
    "shape",
    "c",
    "h",
    "w",
    "batch",
    "layers",
    "implementation",
    "dtype",
    "device",
    "threads",
    "macs",
    "flop",
    "memory_bytes",
    "copy_bytes",
    "params",
    "samples",
    "median_ms",
    "p25_ms",
    "p75_ms",
    "iqr_ms",
    "rel_iqr",
    "noisy",
    "throughput_img_per_s",
    "gmac_per_s",
    "gflop_per_s",
    "gb_per_s",
    "speedup_vs_conv",
    "paper_cpu_gmac_per_s",
    "paper_gpu_gmac_per_s",
    "pass",
];

/// Quotes a field when CSV needs it (RFC 4180).
fn field(s: String) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

impl super::Export for CsvFormat {
    fn export(&self, result: &RunResult) -> String {
        let mut out = HEADER.join(",") + "\n";
        for r in ordered(result) {
            let cells = [
                r.spec.kind.to_string(),
                r.variant.clone(),
                r.spec.kernel.to_string(),
                opt(r.spec.groups),
                opt(r.spec.n_div),
                opt(r.spec.forward),
                r.spec.map.to_string(),
                r.spec.map.c.to_string(),
                r.spec.map.h.to_string(),
                r.spec.map.w.to_string(),
                r.batch.to_string(),
                r.layers.to_string(),
                r.implementation.to_string(),
                r.dtype.to_string(),
                r.device.clone(),
                r.threads.to_string(),
                r.cost.macs.to_string(),
                r.cost.flop.to_string(),
                r.cost.memory_bytes.to_string(),
                r.cost.copy_bytes.to_string(),
                r.cost.params.to_string(),
                r.stats.samples.to_string(),
                r.stats.median_ms.to_string(),
                r.stats.p25_ms.to_string(),
                r.stats.p75_ms.to_string(),
                r.stats.iqr_ms.to_string(),
                r.stats.rel_iqr.to_string(),
                r.stats.noisy.to_string(),
                r.rates.throughput_img_per_s.to_string(),
                r.rates.gmac_per_s.to_string(),
                r.rates.gflop_per_s.to_string(),
                r.rates.gb_per_s.to_string(),
                opt(speedup_vs_conv(&result.records, r)),
                opt(r.paper.as_ref().map(|p| p.cpu_gmacs)),
                opt(r.paper.as_ref().map(|p| p.gpu_gmacs)),
                r.pass.to_string(),
            ];
            out += &cells.into_iter().map(field).collect::<Vec<_>>().join(",");
            out += "\n";
        }
        out
    }
}

/// A formatted table as CSV: the header, then the body and summary rows (numbers as the
/// table shows them, without thousands separators or units in the cells).
pub fn render(r: &super::rows::Rows) -> String {
    let line = |cells: &[String]| {
        cells
            .iter()
            .map(|c| field(c.clone()))
            .collect::<Vec<_>>()
            .join(",")
            + "\n"
    };
    let mut out = line(&r.header);
    for row in r.rows.iter().chain(&r.foot) {
        out += &line(row);
    }
    out
}
