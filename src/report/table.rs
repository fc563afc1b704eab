//! The terminal table (comfy-table), units in every header.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::ops::Implementation;
use crate::record::{Record, RunResult};

fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.3}")
    }
}

fn rate(v: f64) -> String {
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

/// Columns whose values differ between records get a column; the rest go in the title.
fn varies<T: PartialEq>(records: &[Record], f: impl Fn(&Record) -> T) -> bool {
    records.windows(2).any(|w| f(&w[0]) != f(&w[1]))
}

/// Renders the records of a result as a table plus footnotes.
pub fn render(result: &RunResult) -> String {
    let records = &result.records;
    let gpu = result.device.kind.starts_with("cuda");
    let show_dtype = varies(records, |r| r.dtype);
    let show_batch = varies(records, |r| r.batch);
    let show_threads = varies(records, |r| r.threads);
    let show_ratio = records
        .iter()
        .any(|r| native_over_candle(records, r).is_some());

    let mut header = vec!["op", "variant", "impl", "shape (CxHxW)"];
    if show_dtype {
        header.push("dtype");
    }
    if show_batch {
        header.push("batch");
    }
    if show_threads {
        header.push("threads");
    }
    header.extend([
        "MMACs",
        "MB moved",
        "median ms ± IQR",
        "GMAC/s",
        "GB/s",
        if gpu {
            "paper GPU GMAC/s"
        } else {
            "paper CPU GMAC/s"
        },
    ]);

    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    let mut copy_notes: Vec<String> = Vec::new();
    let mut any_noisy = false;
    for r in records {
        let mut row = vec![
            Cell::new(r.op),
            Cell::new(&r.variant),
            Cell::new(r.implementation),
            Cell::new(r.shape),
        ];
        if show_dtype {
            row.push(Cell::new(r.dtype));
        }
        if show_batch {
            row.push(Cell::new(r.batch));
        }
        if show_threads {
            row.push(Cell::new(r.threads));
        }
        let mb = r.cost.memory_bytes as f64 / 1e6;
        let marker = if r.cost.copy_bytes > 0 { " *" } else { "" };
        let noisy = if r.stats.noisy { " noisy" } else { "" };
        any_noisy |= r.stats.noisy;
        if r.cost.copy_bytes > 0 {
            let note = format!(
                "{} {} ({}): {}",
                r.op, r.variant, r.implementation, r.cost.copies
            );
            if !copy_notes.contains(&note) {
                copy_notes.push(note);
            }
        }
        let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
        row.extend([
            right(format!("{:.3}", r.cost.macs as f64 / 1e6)),
            right(format!("{mb:.2}{marker}")),
            right(format!(
                "{} ± {}{noisy}",
                ms(r.stats.median_ms),
                ms(r.stats.iqr_ms)
            )),
            right(rate(r.rates.gmac_per_s)),
            right(rate(r.rates.gb_per_s)),
            right(paper_gmacs(r).map_or_else(|| "-".into(), rate)),
        ]);
        if show_ratio {
            let ratio = native_over_candle(records, r);
            row.push(right(ratio.map_or_else(
                || "-".into(),
                |q| format!("{q:.3} ({:.1}x)", 1.0 / q),
            )));
        }
        table.add_row(row);
    }

    let mut title = format!(
        "pconv-bench {}: {} ({}), {} layers",
        result.config.name, result.device.kind, result.device.name, result.config.layers
    );
    if !show_dtype {
        if let Some(r) = records.first() {
            title += &format!(", {}", r.dtype);
        }
    }
    if !show_batch {
        if let Some(r) = records.first() {
            title += &format!(", batch {}", r.batch);
        }
    }
    if !show_threads {
        if let Some(r) = records.first() {
            title += &format!(
                ", {} thread{}",
                r.threads,
                if r.threads == 1 { "" } else { "s" }
            );
        }
    }

    let mut out = format!("{title}\n{table}\n");
    out += "MMACs: multiply-adds per run (all layers, whole batch; the paper's \"FLOPs\"). GMAC/s: the paper's \"FLOPS\" (1 MAC = 2 FLOP).\n";
    out += "MB moved / GB/s: the paper's memory-access model (activations in + out, weights), dtype-sized.\n";
    if show_ratio {
        out += "native/candle time: native median / candle median at the same point (in brackets: native's speed-up).\n";
    }
    for note in &copy_notes {
        out += &format!("* {note}; not in MB moved (see cost.copy_bytes).\n");
    }
    if any_noisy {
        out += "noisy: relative IQR above 10%; rerun with a longer --measure-time or on a quieter machine.\n";
    }
    if !result.complete {
        out += "incomplete: the run was interrupted; only the points above were measured.\n";
    }
    for f in &result.failures {
        out += &format!(
            "FAILED {} {} at {} ({}, {}): {}\n",
            f.op, f.variant, f.shape, f.implementation, f.dtype, f.error
        );
    }
    out
}
