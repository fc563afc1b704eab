//! The terminal table (comfy-table), units in every header.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use super::rows;
use crate::record::RunResult;

pub struct TableFormat;

impl super::Export for TableFormat {
    fn export(&self, result: &RunResult) -> String {
        let mut out = render(&rows::build(result));
        if let Some(r) = super::networks::build(&result.records) {
            out += &format!("\n{}", render(&r));
        }
        if let Some(v) = &result.verdicts {
            out += &crate::answer::text(v);
        }
        out
    }
}

/// Title, the rows as a terminal table, then the notes.
pub fn render(r: &rows::Rows) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(&r.header);
    for row in r.rows.iter().chain(&r.foot) {
        table.add_row(row.iter().zip(&r.right).map(|(s, &right)| {
            let cell = Cell::new(s);
            if right {
                cell.set_alignment(CellAlignment::Right)
            } else {
                cell
            }
        }));
    }
    let mut out = format!("{}\n{table}\n", r.title);
    for n in &r.notes {
        out += &format!("{n}\n");
    }
    out
}
