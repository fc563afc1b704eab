//! GitHub-flavoured Markdown: the same rows as the terminal table.

use super::rows;
use crate::record::RunResult;

pub struct MarkdownFormat;

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
}

impl super::Export for MarkdownFormat {
    fn export(&self, result: &RunResult) -> String {
        let mut out = render(&rows::build(result));
        if let Some(r) = super::networks::build(&result.records) {
            out += &format!("\n{}", render(&r));
        }
        if let Some(v) = &result.verdicts {
            out += &crate::answer::markdown(v);
        }
        out
    }
}

/// Title, the rows as a Markdown table, then the notes as a list.
pub fn render(r: &rows::Rows) -> String {
    let mut out = format!("**{}**\n\n", escape(&r.title));
    out += &format!(
        "| {} |\n",
        r.header
            .iter()
            .map(|h| escape(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let align: Vec<&str> = r
        .right
        .iter()
        .map(|&right| if right { "--:" } else { "---" })
        .collect();
    out += &format!("|{}|\n", align.join("|"));
    for row in r.rows.iter().chain(&r.foot) {
        out += &format!(
            "| {} |\n",
            row.iter()
                .map(|c| escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    out += "\n";
    for n in &r.notes {
        out += &format!("- {}\n", escape(n));
    }
    out
}
