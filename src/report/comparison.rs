//! Renders a baseline-vs-current comparison: terminal table, Markdown (a pull-request
//! comment) or JSON.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::compare::{Change, Comparison, Verdict};

fn pct(ratio: f64) -> String {
    format!("{:+.1}%", (ratio - 1.0) * 100.0)
}

fn summary(c: &Comparison) -> String {
    format!(
        "{} regressed, {} improved, {} unchanged, {} inconclusive of {} matched records, {} missing from current (threshold ±{:.1}%, {:.0}% CI of the median ratio)",
        c.count(Verdict::Regressed),
        c.count(Verdict::Improved),
        c.count(Verdict::Unchanged),
        c.count(Verdict::Inconclusive),
        c.changes.len(),
        c.only_in_baseline.len(),
        c.threshold * 100.0,
        c.confidence * 100.0
    )
}

fn cells(ch: &Change) -> [String; 6] {
    [
        ch.label.clone(),
        format!("{:.4}", ch.baseline_median_ms),
        format!("{:.4}", ch.current_median_ms),
        pct(ch.ratio.ratio),
        format!("[{}, {}]", pct(ch.ratio.lo), pct(ch.ratio.hi)),
        ch.verdict.as_str().to_string(),
    ]
}

const HEADER: [&str; 6] = [
    "record",
    "baseline ms",
    "current ms",
    "change",
    "CI",
    "verdict",
];

fn notes(c: &Comparison) -> Vec<String> {
    let mut out: Vec<String> = c.environment.iter().map(|e| format!("note: {e}")).collect();
    out.extend(
        c.only_in_baseline
            .iter()
            .map(|r| format!("missing from current (only in baseline): {r}")),
    );
    out.extend(
        c.only_in_current
            .iter()
            .map(|r| format!("only in current: {r}")),
    );
    out
}

pub fn table(c: &Comparison) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(HEADER);
    for ch in &c.changes {
        let row: Vec<Cell> = cells(ch)
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let cell = Cell::new(s);
                if (1..5).contains(&i) {
                    cell.set_alignment(CellAlignment::Right)
                } else {
                    cell
                }
            })
            .collect();
        t.add_row(row);
    }
    let mut out = format!("baseline {} vs current {}\n", c.baseline, c.current);
    for n in notes(c) {
        out += &format!("{n}\n");
    }
    out += &format!("{t}\n{}\n", summary(c));
    for why in c.failures() {
        out += &format!("gate fails: {why}\n");
    }
    out
}

/// Markdown for a pull-request comment: a summary line, then only what changed (all rows
/// when nothing did).
pub fn markdown(c: &Comparison) -> String {
    let icon = if c.passed() { "✅" } else { "❌" };
    let mut out = format!("{icon} **pconv-bench**: {}\n\n", summary(c));
    for why in c.failures() {
        out += &format!("- gate fails: {why}\n");
    }
    for n in notes(c) {
        out += &format!("- {n}\n");
    }
    if !c.environment.is_empty() || !c.only_in_baseline.is_empty() || !c.only_in_current.is_empty()
    {
        out += "\n";
    }
    let changed: Vec<&Change> = c
        .changes
        .iter()
        .filter(|ch| ch.verdict != Verdict::Unchanged)
        .collect();
    let rows: Vec<&Change> = if changed.is_empty() {
        c.changes.iter().collect()
    } else {
        changed
    };
    out += &format!(
        "| {} |\n|{}\n",
        HEADER.join(" | "),
        "---|".repeat(HEADER.len())
    );
    for ch in rows {
        out += &format!("| {} |\n", cells(ch).join(" | "));
    }
    out
}

pub fn json(c: &Comparison) -> String {
    use crate::compare::Verdict;
    let mut v = serde_json::to_value(c).expect("comparison serialises");
    let counts: serde_json::Map<String, serde_json::Value> = [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ]
    .into_iter()
    .map(|k| (k.as_str().to_string(), c.count(k).into()))
    .collect();
    v["counts"] = counts.into();
    v["passed"] = c.passed().into();
    v["failures"] = c.failures().into();
    serde_json::to_string_pretty(&v).expect("comparison serialises") + "\n"
}
