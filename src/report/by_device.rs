//! The paper's Table 1 layout across devices: one operator per row, one column group
//! (latency and GMAC/s) per device, from files measured on different machines. Records
//! match by what they computed (operator, variant, shape, dtype, layers); a column is one
//! (device, implementation, threads, batch) of one file. The paper's own GPU, CPU and ARM
//! columns stand beside them where the shapes are Table 1's, and the bottom rows give each
//! column's mean GMAC/s per operator and the FLOPS ratios the paper's thesis rests on.

use std::path::PathBuf;

use super::rows::{ms, rate, Rows};
use crate::answer::paper_name;
use crate::config::PaperReference;
use crate::error::{Error, Result};
use crate::ops::{Dtype, FeatureMap, Implementation, OpKind, Pass};
use crate::record::{Record, RunResult};

/// Whether the paper's three devices appear as reference columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperColumns {
    /// When any record has a Table 1 row.
    Auto,
    /// Always (an error when no record has a Table 1 row).
    On,
    Off,
}

/// One measured column group.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    device_name: String,
    device: String,
    implementation: Implementation,
    threads: usize,
    batch: usize,
    file: PathBuf,
}

impl Column {
    fn of(path: &std::path::Path, result: &RunResult, r: &Record) -> Column {
        Column {
            device_name: result.device.name.clone(),
            device: r.device.clone(),
            implementation: r.implementation,
            threads: r.threads,
            batch: r.batch,
            file: path.to_path_buf(),
        }
    }

    fn same(&self, o: &Column) -> bool {
        (
            &self.device_name,
            &self.device,
            self.implementation,
            self.threads,
            self.batch,
        ) == (
            &o.device_name,
            &o.device,
            o.implementation,
            o.threads,
            o.batch,
        )
    }
}

/// A device name without trademarks and filler: `Intel(R) Xeon(R) Processor` -> `Intel Xeon`.
pub fn short_device_name(name: &str) -> String {
    let cleaned = name
        .replace("(R)", "")
        .replace("(TM)", "")
        .replace("(tm)", "");
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .take_while(|w| *w != "@")
        .filter(|w| !matches!(*w, "Processor" | "CPU" | "NVIDIA" | "Core"))
        .collect();
    if words.is_empty() {
        name.trim().to_string()
    } else {
        words.join(" ")
    }
}

/// What a row computed: records of different columns with equal keys are the same work.
#[derive(Debug, Clone, PartialEq)]
struct RowKey {
    op: OpKind,
    variant: String,
    shape: FeatureMap,
    dtype: Dtype,
    layers: usize,
    /// A training step is its own row.
    pass: Pass,
}

impl RowKey {
    fn of(r: &Record) -> RowKey {
        RowKey {
            op: r.spec.kind,
            variant: r.variant.clone(),
            shape: r.spec.map,
            dtype: r.dtype,
            layers: r.layers,
            pass: r.pass,
        }
    }
}

struct Row {
    key: RowKey,
    /// Multiply-adds of the stacked layers on one image (the paper's FLOPs column).
    macs: u64,
    paper: Option<PaperReference>,
    /// (median ms, GMAC/s) per column.
    cells: Vec<Option<(f64, f64)>>,
}

/// The paper's three devices: (header prefix, latency header, latency, GMAC/s).
type PaperCol = (
    &'static str,
    &'static str,
    fn(&PaperReference) -> (f64, f64),
);
const PAPER: [PaperCol; 3] = [
    ("paper GPU", "fps", |p| (p.gpu_fps, p.gpu_gmacs)),
    ("paper CPU", "ms", |p| (p.cpu_ms, p.cpu_gmacs)),
    ("paper ARM", "ms", |p| (p.arm_ms, p.arm_gmacs)),
];

/// The operators whose mean GMAC/s the bottom rows give, in the paper's order.
const SUMMARY_OPS: [OpKind; 4] = [OpKind::Conv, OpKind::GConv, OpKind::DWConv, OpKind::PConv];

/// Builds the cross-device table from results files (path, contents), in file order.
pub fn build(files: &[(PathBuf, RunResult)], paper: PaperColumns) -> Result<Rows> {
    let mut columns: Vec<Column> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for (path, result) in files {
        for r in &result.records {
            let col = Column::of(path, result, r);
            let ci = match columns.iter().position(|c| c.same(&col)) {
                Some(i) if columns[i].file != col.file => {
                    return Err(Error::Invalid(format!(
                        "'{}' and '{}' both hold {} {} records of {}: merge rounds of one machine with pconv-bench merge first, or give one of them",
                        columns[i].file.display(),
                        path.display(),
                        col.implementation,
                        col.device,
                        col.device_name
                    )))
                }
                Some(i) => i,
                None => {
                    columns.push(col);
                    for row in &mut rows {
                        row.cells.push(None);
                    }
                    columns.len() - 1
                }
            };
            let key = RowKey::of(r);
            let ri = match rows.iter().position(|row| row.key == key) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        key,
                        macs: r.cost.macs_per_image_layer * r.layers as u64,
                        paper: None,
                        cells: vec![None; columns.len()],
                    });
                    rows.len() - 1
                }
            };
            let row = &mut rows[ri];
            if row.paper.is_none() {
                row.paper = r.paper.clone();
            }
            if row.cells[ci].is_some() {
                return Err(Error::Invalid(format!(
                    "'{}' holds {} {} at {} twice for one device: give each device's results once",
                    path.display(),
                    r.spec.kind,
                    r.variant,
                    r.spec.map
                )));
            }
            row.cells[ci] = Some((r.stats.median_ms, r.rates.gmac_per_s));
        }
    }
    if rows.is_empty() {
        return Err(Error::Invalid(
            "report --by device: the files hold no records".into(),
        ));
    }
    let any_paper = rows.iter().any(|r| r.paper.is_some());
    let with_paper = match paper {
        PaperColumns::Auto => any_paper,
        PaperColumns::On if !any_paper => {
            return Err(Error::Invalid(
                "--paper: no record has a row in the paper's Table 1 (its shapes are 96x56x56, 192x28x28, 384x14x14 and 768x7x7, 3x3, 10 layers)".into(),
            ))
        }
        PaperColumns::On => true,
        PaperColumns::Off => false,
    };

    let labels = column_labels(&columns);
    let mut header = vec![
        "operator".to_string(),
        "shape".into(),
        "MMACs per image".into(),
    ];
    for l in &labels {
        header.push(format!("{l} ms"));
        header.push(format!("{l} GMAC/s"));
    }
    if with_paper {
        for (name, lat, _) in PAPER {
            header.push(format!("{name} {lat}"));
            header.push(format!("{name} GMAC/s"));
        }
    }
    let mut right = vec![false, false, true];
    right.resize(header.len(), true);

    let dash = || "-".to_string();
    let mut out_rows = Vec::new();
    let mut foot = Vec::new();
    for row in &rows {
        let mut cells = vec![
            format!(
                "{} {}{}",
                paper_name(row.key.op),
                row.key.variant,
                if row.key.pass == Pass::Train {
                    ", training step"
                } else {
                    ""
                }
            ),
            row.key.shape.to_string(),
            format!("{:.3}", row.macs as f64 / 1e6),
        ];
        for c in &row.cells {
            match c {
                Some((t, g)) => cells.extend([ms(*t), rate(*g)]),
                None => cells.extend([dash(), dash()]),
            }
        }
        if with_paper {
            for (_, _, get) in PAPER {
                match &row.paper {
                    Some(p) => {
                        let (lat, g) = get(p);
                        cells.extend([format!("{lat}"), format!("{g}")]);
                    }
                    None => cells.extend([dash(), dash()]),
                }
            }
        }
        out_rows.push(cells);
    }

    // Bottom rows: mean GMAC/s per operator over the shapes, then the FLOPS ratios, over one
    // kernel size and dtype (3x3 and f32 when present, as in the paper) and the paper's
    // variants where they ran (GConv g=16, PConv n_div=4).
    let kernel = if rows.iter().any(|r| r.key.variant.starts_with("3x3")) {
        "3x3".to_string()
    } else {
        rows[0]
            .key
            .variant
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    let dtype = if rows.iter().any(|r| r.key.dtype == Dtype::F32) {
        Dtype::F32
    } else {
        rows[0].key.dtype
    };
    let paper_variant = |op: OpKind, v: &str| {
        let want = match op {
            OpKind::GConv => "g=16",
            OpKind::PConv => "n_div=4",
            _ => return true,
        };
        let any_paper = rows
            .iter()
            .any(|r| r.key.op == op && r.key.variant.contains(want));
        !any_paper || v.contains(want)
    };
    // The paper's FLOPS are of the forward: training steps stay out of the bottom rows.
    let summarised = |r: &Row| {
        r.key.pass == Pass::Infer
            && r.key.variant.split(' ').next() == Some(kernel.as_str())
            && r.key.dtype == dtype
            && paper_variant(r.key.op, &r.key.variant)
    };
    let n_cols = columns.len() + if with_paper { PAPER.len() } else { 0 };
    let column_gmacs = |ci: usize, op: OpKind| -> Vec<(FeatureMap, f64)> {
        // Per shape the best record of the operator (PConv: its faster forward).
        let mut best: Vec<(FeatureMap, f64)> = Vec::new();
        for row in rows.iter().filter(|r| r.key.op == op && summarised(r)) {
            let g = if ci < columns.len() {
                row.cells[ci].map(|(_, g)| g)
            } else {
                row.paper.as_ref().map(|p| PAPER[ci - columns.len()].2(p).1)
            };
            let Some(g) = g else { continue };
            match best.iter_mut().find(|(s, _)| *s == row.key.shape) {
                Some((_, b)) => *b = b.max(g),
                None => best.push((row.key.shape, g)),
            }
        }
        best
    };
    let mean = |v: &[(FeatureMap, f64)]| {
        (!v.is_empty()).then(|| v.iter().map(|(_, g)| g).sum::<f64>() / v.len() as f64)
    };
    let summary_row = |label: String, cell: &dyn Fn(usize) -> Option<String>| {
        let mut cells = vec![
            label,
            format!("mean of shapes ({kernel} {dtype})"),
            String::new(),
        ];
        for ci in 0..n_cols {
            cells.push(String::new());
            cells.push(cell(ci).unwrap_or_else(dash));
        }
        cells
    };
    for op in SUMMARY_OPS {
        if !rows.iter().any(|r| r.key.op == op) {
            continue;
        }
        foot.push(summary_row(
            format!("{} mean GMAC/s", paper_name(op)),
            &|ci| mean(&column_gmacs(ci, op)).map(rate),
        ));
    }
    for rival in [OpKind::DWConv, OpKind::GConv] {
        if !rows.iter().any(|r| r.key.op == rival)
            || !rows.iter().any(|r| r.key.op == OpKind::PConv)
        {
            continue;
        }
        foot.push(summary_row(
            format!("FLOPS PConv / {}", paper_name(rival)),
            &|ci| {
                // Only shapes both ran, so a missing shape does not tilt the ratio.
                let p = column_gmacs(ci, OpKind::PConv);
                let o = column_gmacs(ci, rival);
                let both = |a: &[(FeatureMap, f64)], b: &[(FeatureMap, f64)]| {
                    a.iter()
                        .filter(|(s, _)| b.iter().any(|(t, _)| t == s))
                        .copied()
                        .collect::<Vec<_>>()
                };
                let (p, o) = (mean(&both(&p, &o))?, mean(&both(&o, &p))?);
                Some(format!("{:.2}x", p / o))
            },
        ));
    }

    let mut notes: Vec<String> = columns
        .iter()
        .zip(&labels)
        .map(|(c, l)| {
            format!(
                "{l}: {} ({}), {}, {} thread{}, batch {}; from {}",
                c.device_name,
                c.device,
                c.implementation,
                c.threads,
                if c.threads == 1 { "" } else { "s" },
                c.batch,
                c.file.display()
            )
        })
        .collect();
    if with_paper {
        notes.push("paper GPU: RTX 2080Ti, batch 32, throughput in images/s (fps); paper CPU: Intel i9-9900X, 1 thread, batch 1; paper ARM: Cortex-A72, 1 thread, batch 1 (the paper's Table 1).".into());
    }
    notes.push(format!("GMAC/s: multiply-adds per second, the paper's FLOPS. Bottom rows: {kernel} {dtype} records only, GConv at g=16 and PConv at n_div=4 where those ran; mean over the shapes the column ran (PConv: its faster forward per shape); the FLOPS ratios use only shapes both operators ran."));
    Ok(Rows {
        title: "Table 1 across devices: median latency and GMAC/s per device".into(),
        header,
        right,
        rows: out_rows,
        foot,
        notes,
    })
}

/// Short column labels: the device's short name and the implementation, plus threads or
/// batch where columns differ in them, and a number where they are still equal.
fn column_labels(columns: &[Column]) -> Vec<String> {
    let varies = |f: &dyn Fn(&Column) -> usize| columns.iter().any(|c| f(c) != f(&columns[0]));
    let (threads, batch) = (varies(&|c| c.threads), varies(&|c| c.batch));
    let mut labels: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut l = format!("{} {}", short_device_name(&c.device_name), c.implementation);
            if threads {
                l += &format!(" {}t", c.threads);
            }
            if batch {
                l += &format!(" b{}", c.batch);
            }
            l
        })
        .collect();
    for i in 0..labels.len() {
        let same: Vec<usize> = (0..labels.len())
            .filter(|&j| labels[j] == labels[i])
            .collect();
        if same.len() > 1 {
            for (n, j) in same.into_iter().enumerate() {
                labels[j] = format!("{} #{}", labels[j], n + 1);
            }
        }
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_lose_trademarks_and_filler() {
        assert_eq!(
            short_device_name("Intel(R) Xeon(R) Processor"),
            "Intel Xeon"
        );
        assert_eq!(
            short_device_name("Intel(R) Core(TM) i9-9900X CPU @ 3.50GHz"),
            "Intel i9-9900X"
        );
        assert_eq!(short_device_name("NVIDIA H200"), "H200");
        assert_eq!(short_device_name("  "), "");
    }
}
