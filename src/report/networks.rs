//! The table of whole networks (`model` records): their cost counted as the paper counts
//! FLOPs, beside the paper's figure, and their speed.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::record::Record;

/// The networks' table with its notes, or None when no record is a whole network.
pub fn text(records: &[Record]) -> Option<String> {
    let nets: Vec<(&Record, &crate::ops::fasternet::NetworkInfo)> = records
        .iter()
        .filter_map(|r| r.network.as_ref().map(|n| (r, n)))
        .collect();
    if nets.is_empty() {
        return None;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "model",
        "impl",
        "input",
        "params (M)",
        "GFLOPs (fvcore)",
        "paper GFLOPs",
        "vs paper",
        "median ms ± IQR",
        "img/s",
        "GMAC/s",
        "verified (rel err)",
    ]);
    for (r, n) in nets {
        let cells = vec![
            r.spec.model.map_or_else(String::new, |m| m.to_string()),
            r.implementation.to_string(),
            format!("{}x{}", r.batch, r.spec.map),
            format!("{:.2}", n.cost.params as f64 / 1e6),
            format!("{:.4}", n.cost.fvcore_flops as f64 / 1e9),
            format!("{:.2}", n.paper_gflops),
            n.flops_vs_paper
                .map_or("- (not 224)".into(), |d| format!("{:+.2}%", d * 100.0)),
            format!(
                "{:.3} ± {:.3}{}",
                r.stats.median_ms,
                r.stats.iqr_ms,
                if r.stats.noisy { " noisy" } else { "" }
            ),
            format!("{:.1}", r.rates.throughput_img_per_s),
            format!("{:.1}", r.rates.gmac_per_s),
            format!("{:.1e}", r.verification.max_rel_err),
        ];
        t.add_row(cells.into_iter().enumerate().map(|(i, s)| {
            let c = Cell::new(s);
            if i >= 3 {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    Some(format!(
        "\nWhole networks\n{t}\nGFLOPs (fvcore): per image, as the paper counts FLOPs (multiply-adds of the convolutions and the Linear, plus 2 per BatchNorm output and 1 per pooled element). GMAC/s: convolution and Linear multiply-adds per second.\nBN is folded into the convolutions for inference. The paper gives no CPU latency for whole networks at this protocol, so none is printed beside ours.\nverified: the timed batch at the timed resolution, on the timed threads; the logits of its first, middle and last image against an f64 reference of the same network; kernel path as timed.\n"
    ))
}
