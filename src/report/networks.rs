//! The table of whole networks (`model` records): their cost counted as the paper counts
//! FLOPs, beside the paper's figure, and their speed. Rendered by the table, Markdown and
//! HTML formats after the records' own table.

use super::rows::{self, Rows};
use crate::record::Record;

/// The networks' rows with their notes, or None when no record is a whole network.
pub fn build(records: &[Record]) -> Option<Rows> {
    let nets: Vec<(&Record, &crate::ops::fasternet::NetworkInfo)> = records
        .iter()
        .filter_map(|r| r.network.as_ref().map(|n| (r, n)))
        .collect();
    if nets.is_empty() {
        return None;
    }
    let columns = [
        ("model", false),
        ("impl", false),
        ("input", false),
        ("params (M)", true),
        ("GFLOPs (fvcore)", true),
        ("paper GFLOPs", true),
        ("vs paper", true),
        ("median ms ± IQR", true),
        ("img/s", true),
        ("GMAC/s", true),
        ("verified (rel err)", true),
    ];
    let rows = nets
        .iter()
        .map(|(r, n)| {
            vec![
                r.spec.model.map_or_else(String::new, |m| m.to_string()),
                r.implementation.to_string(),
                format!("{}x{}", r.batch, r.spec.map),
                format!("{:.2}", n.cost.params as f64 / 1e6),
                format!("{:.4}", n.cost.fvcore_flops as f64 / 1e9),
                format!("{:.2}", n.paper_gflops),
                n.flops_vs_paper
                    .map_or("- (not 224)".into(), |d| format!("{:+.2}%", d * 100.0)),
                format!(
                    "{} ± {}{}",
                    rows::ms(r.stats.median_ms),
                    rows::ms(r.stats.iqr_ms),
                    if r.stats.noisy { " noisy" } else { "" }
                ),
                rows::rate(r.rates.throughput_img_per_s),
                rows::rate(r.rates.gmac_per_s),
                format!("{:.1e}", r.verification.max_rel_err),
            ]
        })
        .collect();
    Some(Rows {
        title: "Whole networks".into(),
        header: columns.iter().map(|c| c.0.to_string()).collect(),
        right: columns.iter().map(|c| c.1).collect(),
        rows,
        foot: Vec::new(),
        notes: vec![
            "GFLOPs (fvcore): per image, as the paper counts FLOPs (multiply-adds of the convolutions and the Linear, plus 2 per BatchNorm output and 1 per pooled element). GMAC/s: convolution and Linear multiply-adds per second.".into(),
            "BN is folded into the convolutions for inference. The paper gives no CPU latency for whole networks at this protocol, so none is printed beside ours.".into(),
            "verified: the timed batch at the timed resolution, on the timed threads; the logits of its first, middle and last image against an f64 reference of the same network; kernel path as timed.".into(),
        ],
    })
}
