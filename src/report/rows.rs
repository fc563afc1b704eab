//! The rows every human-readable format shows (terminal table, Markdown): built once from a
//! result, rendered by each format in its own way.

use crate::ops::{Implementation, OpKind};
use crate::record::{Record, RunResult};

/// A formatted table: title, header, rows (right-aligned numeric columns), footnotes.
pub struct Rows {
    pub title: String,
    pub header: Vec<String>,
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
    /// Summary rows after the body (kept last when an HTML table is sorted).
    pub foot: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

pub(crate) fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn rate(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

/// The paper's achieved rate for this record's device class, if Table 1 has the row.
fn paper_gmacs(r: &Record) -> Option<f64> {
    let p = r.paper.as_ref()?;
    Some(if r.device.starts_with("cuda") {
        p.gpu_gmacs
    } else {
        p.cpu_gmacs
    })
}

/// native median / candle median for the same point, when both were measured.
fn native_over_candle(records: &[Record], r: &Record) -> Option<f64> {
    if r.implementation != Implementation::Native {
        return None;
    }
    let mut twin = r.point();
    twin.implementation = Implementation::Candle;
    let candle = records
        .iter()
        .find(|o| o.point() == twin && o.device == r.device)?;
    Some(r.stats.median_ms / candle.stats.median_ms)
}

/// Conv median / this record's median: the speed-up over a regular convolution at the same
/// shape, implementation, dtype, batch, threads and device (same kernel size, else 3x3).
pub fn speedup_vs_conv(records: &[Record], r: &Record) -> Option<f64> {
    if r.spec.kind == OpKind::Conv {
        return None;
    }
    let same = |o: &&Record| {
        o.spec.kind == OpKind::Conv
            && o.spec.map == r.spec.map
            && o.implementation == r.implementation
            && o.dtype == r.dtype
            && o.batch == r.batch
            && o.threads == r.threads
            && o.device == r.device
            && o.layers == r.layers
    };
    let conv = records
        .iter()
        .filter(same)
        .find(|o| o.spec.kernel == r.spec.kernel)
        .or_else(|| records.iter().filter(same).find(|o| o.spec.kernel == 3))?;
    Some(conv.stats.median_ms / r.stats.median_ms)
}

/// Columns whose values differ between records get a column; the rest go in the title.
fn varies<T: PartialEq>(records: &[Record], f: impl Fn(&Record) -> T) -> bool {
    records.windows(2).any(|w| f(&w[0]) != f(&w[1]))
}

/// Records in display order: a sweep reads by shape, then operator; a run as it ran.
pub fn ordered(result: &RunResult) -> Vec<&Record> {
    let mut v: Vec<&Record> = result.records.iter().collect();
    if result.mode == crate::record::Mode::Sweep {
        let op_rank = |r: &Record| OpKind::ALL.iter().position(|o| *o == r.spec.kind);
        v.sort_by_key(|r| {
            (
                r.spec.map,
                op_rank(r),
                r.spec.kernel,
                r.spec.groups,
                r.spec.n_div,
                r.spec.forward,
                r.implementation,
            )
        });
    }
    v
}

pub fn build(result: &RunResult) -> Rows {
    let records = &result.records;
    let gpu = result.device.kind.starts_with("cuda");
    let show_dtype = varies(records, |r| r.dtype);
    let show_batch = varies(records, |r| r.batch);
    let show_threads = varies(records, |r| r.threads);
    let show_impl_ratio = records
        .iter()
        .any(|r| native_over_candle(records, r).is_some());
    let show_vs_conv = records
        .iter()
        .any(|r| speedup_vs_conv(records, r).is_some());
    let show_roofline = records.iter().any(|r| r.roofline.is_some());

    let mut header: Vec<(&str, bool)> = vec![
        ("op", false),
        ("variant", false),
        ("impl", false),
        ("shape (CxHxW)", false),
    ];
    if show_dtype {
        header.push(("dtype", false));
    }
    if show_batch {
        header.push(("batch", true));
    }
    if show_threads {
        header.push(("threads", true));
    }
    header.extend([
        ("MMACs", true),
        ("MB moved", true),
        ("median ms ± IQR", true),
        ("GMAC/s", true),
        ("GB/s", true),
        (
            if gpu {
                "paper GPU GMAC/s"
            } else {
                "paper CPU GMAC/s"
            },
            true,
        ),
    ]);
    if show_roofline {
        header.push(("% roofline", true));
    }
    if show_vs_conv {
        header.push(("speed-up vs conv", true));
    }
    if show_impl_ratio {
        header.push(("native/candle time", true));
    }

    let mut copy_notes: Vec<String> = Vec::new();
    let mut any_noisy = false;
    let mut rows = Vec::new();
    for r in ordered(result) {
        let mut row = vec![
            r.spec.kind.to_string(),
            r.variant.clone(),
            r.implementation.to_string(),
            r.spec.map.to_string(),
        ];
        if show_dtype {
            row.push(r.dtype.to_string());
        }
        if show_batch {
            row.push(r.batch.to_string());
        }
        if show_threads {
            row.push(r.threads.to_string());
        }
        let marker = if r.cost.copy_bytes > 0 { " *" } else { "" };
        let noisy = if r.stats.noisy { " noisy" } else { "" };
        any_noisy |= r.stats.noisy;
        if r.cost.copy_bytes > 0 {
            let forward = r.spec.forward.map_or_else(String::new, |f| format!(" {f}"));
            let note = format!(
                "{}{forward} ({}): {}",
                r.spec.kind, r.implementation, r.cost.copies
            );
            if !copy_notes.contains(&note) {
                copy_notes.push(note);
            }
        }
        row.extend([
            format!("{:.3}", r.cost.macs as f64 / 1e6),
            format!("{:.2}{marker}", r.cost.memory_bytes as f64 / 1e6),
            format!("{} ± {}{noisy}", ms(r.stats.median_ms), ms(r.stats.iqr_ms)),
            rate(r.rates.gmac_per_s),
            rate(r.rates.gb_per_s),
            paper_gmacs(r).map_or_else(|| "-".into(), rate),
        ]);
        if show_roofline {
            row.push(r.roofline.as_ref().map_or_else(
                || "-".into(),
                |q| {
                    let bound = if q.bound == "memory" { "mem" } else { "cmp" };
                    format!("{:.0}% {bound}", q.achieved_pct)
                },
            ));
        }
        if show_vs_conv {
            row.push(
                speedup_vs_conv(records, r).map_or_else(|| "-".into(), |q| format!("{q:.2}x")),
            );
        }
        if show_impl_ratio {
            let ratio = native_over_candle(records, r);
            row.push(ratio.map_or_else(|| "-".into(), |q| format!("{q:.3} ({:.1}x)", 1.0 / q)));
        }
        rows.push(row);
    }

    let mut title = format!(
        "pconv-bench {}: {} ({}), {} layers",
        result.config.name, result.device.kind, result.device.name, result.config.layers
    );
    if let Some(r) = records.first() {
        if !show_dtype {
            title += &format!(", {}", r.dtype);
        }
        if !show_batch {
            title += &format!(", batch {}", r.batch);
        }
        if !show_threads {
            title += &format!(
                ", {} thread{}",
                r.threads,
                if r.threads == 1 { "" } else { "s" }
            );
        }
    }

    let mut notes = vec![
        "MMACs: multiply-adds per run (all layers, whole batch; the paper's \"FLOPs\"). GMAC/s: the paper's \"FLOPS\" (1 MAC = 2 FLOP).".to_string(),
        "MB moved / GB/s: the paper's memory-access model (activations in + out, weights), dtype-sized.".to_string(),
    ];
    if show_roofline {
        notes.push("% roofline: achieved GFLOP/s over min(peak, intensity x bandwidth) of the profile; mem / cmp: memory- or compute-bound at this intensity.".into());
    }
    if show_vs_conv {
        notes.push("speed-up vs conv: Conv median / this median at the same shape, impl, dtype, batch and threads (same kernel size, else 3x3).".into());
    }
    if show_impl_ratio {
        notes.push("native/candle time: native median / candle median at the same point (in brackets: native's speed-up).".into());
    }
    for note in &copy_notes {
        notes.push(format!("* {note}; not in MB moved (see cost.copy_bytes)."));
    }
    if any_noisy {
        notes.push("noisy: relative IQR above 10%; rerun with a longer --measure-time or on a quieter machine.".into());
    }
    if !result.complete {
        notes.push(
            "incomplete: the run was interrupted; only the points above were measured.".into(),
        );
    }
    for f in &result.failures {
        notes.push(format!(
            "FAILED {} {} at {} ({}, {}): {}",
            f.op, f.variant, f.shape, f.implementation, f.dtype, f.error
        ));
    }
    Rows {
        title,
        right: header.iter().map(|(_, r)| *r).collect(),
        header: header.into_iter().map(|(h, _)| h.to_string()).collect(),
        rows,
        foot: Vec::new(),
        notes,
    }
}
