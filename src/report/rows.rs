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
            && o.pass == r.pass
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

/// One column: its header, alignment, whether it is shown, its cell, and its footnote.
struct Column<'a> {
    header: &'static str,
    right: bool,
    shown: bool,
    cell: Box<dyn Fn(&Record) -> String + 'a>,
    note: Option<&'static str>,
}

impl<'a> Column<'a> {
    fn new(header: &'static str, right: bool, cell: impl Fn(&Record) -> String + 'a) -> Self {
        Self {
            header,
            right,
            shown: true,
            cell: Box::new(cell),
            note: None,
        }
    }

    fn when(self, shown: bool) -> Self {
        Self { shown, ..self }
    }

    fn note(self, note: &'static str) -> Self {
        Self {
            note: Some(note),
            ..self
        }
    }
}

/// Every column the table can show, in order; a column whose values would not differ
/// between records is hidden (the title says its value).
fn columns(result: &RunResult) -> Vec<Column<'_>> {
    let records = &result.records;
    let gpu = result.device.kind.starts_with("cuda");
    let dash = || "-".to_string();
    vec![
        Column::new("op", false, |r| r.spec.kind.to_string()),
        Column::new("variant", false, |r| r.variant.clone()),
        Column::new("impl", false, |r| r.implementation.to_string()),
        Column::new("shape (CxHxW)", false, |r| r.spec.map.to_string()),
        Column::new("dtype", false, |r| r.dtype.to_string()).when(varies(records, |r| r.dtype)),
        Column::new("batch", true, |r| r.batch.to_string()).when(varies(records, |r| r.batch)),
        Column::new("threads", true, |r| r.threads.to_string())
            .when(varies(records, |r| r.threads)),
        Column::new("pass", false, |r| r.pass.to_string()).when(varies(records, |r| r.pass)).note(
            "pass: infer times the forward; train one training step (forward, loss = sum of the output, backward to the input's and every weight's gradient), MMACs and MB moved counting both.",
        ),
        Column::new("MMACs", true, |r| format!("{:.3}", r.cost.macs as f64 / 1e6)).note(
            "MMACs: multiply-adds per run (all layers, whole batch; the paper's \"FLOPs\"). GMAC/s: the paper's \"FLOPS\" (1 MAC = 2 FLOP).",
        ),
        Column::new("MB moved", true, |r| {
            let marker = if r.cost.copy_bytes > 0 { " *" } else { "" };
            format!("{:.2}{marker}", r.cost.memory_bytes as f64 / 1e6)
        })
        .note("MB moved / GB/s: the paper's memory-access model (activations in + out, weights), dtype-sized."),
        Column::new("median ms ± IQR", true, |r| {
            let noisy = if r.stats.noisy { " noisy" } else { "" };
            format!("{} ± {}{noisy}", ms(r.stats.median_ms), ms(r.stats.iqr_ms))
        }),
        Column::new("GMAC/s", true, |r| rate(r.rates.gmac_per_s)),
        Column::new("GB/s", true, |r| rate(r.rates.gb_per_s)),
        Column::new(
            if gpu {
                "paper GPU GMAC/s"
            } else {
                "paper CPU GMAC/s"
            },
            true,
            move |r| paper_gmacs(r).map_or_else(dash, rate),
        ),
        Column::new("% roofline", true, move |r| {
            r.roofline.as_ref().map_or_else(dash, |q| {
                let bound = if q.bound == "memory" { "mem" } else { "cmp" };
                format!("{:.0}% {bound}", q.achieved_pct)
            })
        })
        .when(records.iter().any(|r| r.roofline.is_some()))
        .note("% roofline: achieved GFLOP/s over min(peak, intensity x bandwidth) of the profile; mem / cmp: memory- or compute-bound at this intensity."),
        Column::new("speed-up vs conv", true, move |r| {
            speedup_vs_conv(records, r).map_or_else(dash, |q| format!("{q:.2}x"))
        })
        .when(records.iter().any(|r| speedup_vs_conv(records, r).is_some()))
        .note("speed-up vs conv: Conv median / this median at the same shape, impl, dtype, batch and threads (same kernel size, else 3x3)."),
        Column::new("native/candle time", true, move |r| {
            native_over_candle(records, r)
                .map_or_else(dash, |q| format!("{q:.3} ({:.1}x)", 1.0 / q))
        })
        .when(records.iter().any(|r| native_over_candle(records, r).is_some()))
        .note("native/candle time: native median / candle median at the same point (in brackets: native's speed-up)."),
    ]
}

pub fn build(result: &RunResult) -> Rows {
    let records = &result.records;
    let columns: Vec<Column> = columns(result).into_iter().filter(|c| c.shown).collect();
    let shown = |h: &str| columns.iter().any(|c| c.header == h);
    let (show_dtype, show_batch, show_threads) = (shown("dtype"), shown("batch"), shown("threads"));
    let show_pass = shown("pass");
    let order = ordered(result);
    let rows: Vec<Vec<String>> = order
        .iter()
        .map(|r| columns.iter().map(|c| (c.cell)(r)).collect())
        .collect();
    let mut copy_notes: Vec<String> = Vec::new();
    for r in order.iter().filter(|r| r.cost.copy_bytes > 0) {
        let forward = r.spec.forward.map_or_else(String::new, |f| format!(" {f}"));
        let note = format!(
            "{}{forward} ({}): {}",
            r.spec.kind, r.implementation, r.cost.copies
        );
        if !copy_notes.contains(&note) {
            copy_notes.push(note);
        }
    }
    let any_noisy = records.iter().any(|r| r.stats.noisy);

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
        if !show_pass && r.pass == crate::ops::Pass::Train {
            title += ", training steps (forward + backward)";
        }
    }

    let mut notes: Vec<String> = columns
        .iter()
        .filter_map(|c| c.note.map(str::to_string))
        .collect();
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
        let pass = if f.pass.is_infer() { "" } else { ", train" };
        notes.push(format!(
            "FAILED {} {} at {} ({}, {}{pass}): {}",
            f.op, f.variant, f.shape, f.implementation, f.dtype, f.error
        ));
    }
    Rows {
        title,
        right: columns.iter().map(|c| c.right).collect(),
        header: columns.iter().map(|c| c.header.to_string()).collect(),
        rows,
        foot: Vec::new(),
        notes,
    }
}
