//! A self-contained HTML report: one file that opens offline in any browser. The
//! environment, the answer per shape, the tables and the figures (inline SVG); no external
//! script, font or stylesheet. Tables sort by a click on a column header (a few lines of
//! inline JavaScript); `#sort=TABLE:COLUMN` (or `:COLUMN-` for descending) in the address
//! sorts on load, so a sorted view can be linked.

use super::rows::{self, Rows};
use crate::answer::{self, Verdicts};
use crate::record::RunResult;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;color:#1a1a1a;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
h3{font-size:1rem;margin-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.2rem .5rem;white-space:nowrap}
th{background:#f3f3f3;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}
td.r{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{background:#fafafa;font-weight:600}
.scroll{overflow-x:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dt{font-weight:600}dd{margin:0}
ul.answer{list-style:none;padding-left:1rem;margin-top:.2rem}
.pconv{color:#1b5e20}.other{color:#b71c1c}.none{color:#555}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}
.notes{font-size:.8rem;color:#444}
";

/// Sorts a table's body by a column: numbers (the leading number of a cell) before text in
/// either direction; an unknown table or column in the address is ignored.
const SCRIPT: &str = "
(function(){
function key(td){var t=td.textContent.trim();var m=t.match(/^[-+]?[0-9]*\\.?[0-9]+(e[-+]?[0-9]+)?/i);return m?parseFloat(m[0]):t;}
function sort(table,col,desc){var tb=table.tBodies[0];var rows=Array.prototype.slice.call(tb.rows);
if(!table.tHead||col>=table.tHead.rows[0].cells.length){return;}
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);var nx=typeof x==='number',ny=typeof y==='number';
if(nx!==ny){return nx?-1:1;}var c=nx?x-y:String(x).localeCompare(String(y));return desc?-c:c;});
rows.forEach(function(r){tb.appendChild(r);});
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){if(i===col){th.setAttribute('aria-sort',desc?'descending':'ascending');}else{th.removeAttribute('aria-sort');}});}
document.querySelectorAll('table.sortable').forEach(function(table){
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.addEventListener('click',function(){sort(table,i,th.getAttribute('aria-sort')==='ascending');});});});
var m=location.hash.match(/^#sort=([A-Za-z0-9_-]+):([0-9]+)(-?)$/);
if(m){var t=document.getElementById(m[1]);if(t){sort(t,parseInt(m[2],10),m[3]==='-');}}
document.body.setAttribute('data-ready','1');
})();
";

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        esc(title),
        esc(title)
    )
}

/// A sortable table with id `id`, its title as a caption-like heading and its notes below.
pub fn table(r: &Rows, id: &str) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table class=\"sortable\" id=\"{}\">\n<thead><tr>",
        esc(id)
    );
    for h in &r.header {
        out += &format!("<th scope=\"col\">{}</th>", esc(h));
    }
    out += "</tr></thead>\n<tbody>\n";
    let row = |cells: &[String]| {
        let mut s = String::from("<tr>");
        for (c, &right) in cells.iter().zip(&r.right) {
            if right {
                s += &format!("<td class=\"r\">{}</td>", esc(c));
            } else {
                s += &format!("<td>{}</td>", esc(c));
            }
        }
        s + "</tr>\n"
    };
    for cells in &r.rows {
        out += &row(cells);
    }
    out += "</tbody>\n";
    if !r.foot.is_empty() {
        out += "<tfoot>\n";
        for cells in &r.foot {
            out += &row(cells);
        }
        out += "</tfoot>\n";
    }
    out += "</table></div>\n";
    if !r.notes.is_empty() {
        out += "<ul class=\"notes\">";
        for n in &r.notes {
            out += &format!("<li>{}</li>", esc(n));
        }
        out += "</ul>\n";
    }
    out
}

/// The environment of a results file as a definition list.
pub fn environment(result: &RunResult) -> String {
    let t = &result.tool;
    let d = &result.device;
    let mut items: Vec<(&str, String)> = vec![
        ("device", format!("{} ({})", d.name, d.kind)),
        (
            "host",
            format!("{} logical CPUs, {} {}", d.logical_cpus, d.os, d.arch),
        ),
        (
            "suite",
            format!("{} ({})", result.config.name, result.config_source),
        ),
        (
            "threads",
            result
                .config
                .threads
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "dtype",
            result
                .config
                .dtype
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("layers", result.config.layers.to_string()),
        (
            "tool",
            format!(
                "{} {}, commit {}, candle {}{}",
                t.name,
                t.version,
                t.git_commit.as_deref().unwrap_or("unknown"),
                t.candle_version,
                if t.features.is_empty() {
                    String::new()
                } else {
                    format!(", features {}", t.features.join(", "))
                }
            ),
        ),
        ("created", result.created_at.clone()),
        ("command", result.command.join(" ")),
        (
            "complete",
            if result.complete {
                "yes".into()
            } else {
                "no (interrupted)".to_string()
            },
        ),
    ];
    if let Some(gpu) = &d.gpu {
        items.insert(
            1,
            (
                "GPU",
                format!(
                    "{}, compute capability {}, {}, driver CUDA {}{}",
                    gpu.name,
                    gpu.compute_capability,
                    crate::memory::human_bytes(gpu.memory_bytes),
                    gpu.driver_cuda_version,
                    gpu.built_cuda_version
                        .as_deref()
                        .map(|v| format!(", built with CUDA {v}"))
                        .unwrap_or_default()
                ),
            ),
        );
    }
    if let Some(torch) = &t.torch_version {
        items.push(("PyTorch", torch.clone()));
    }
    let mut out = String::from("<dl>\n");
    for (k, v) in items {
        out += &format!("<dt>{}</dt><dd>{}</dd>\n", esc(k), esc(&v));
    }
    out + "</dl>\n"
}

/// The answer section.
pub fn answer(v: &Verdicts) -> String {
    let mut out = format!(
        "<p>{:.0} % intervals of the ratio of medians (bootstrap; with repetitions, also a t interval across them); a latency ratio whose interval holds 1 is reported as no difference.</p>\n",
        v.confidence * 100.0
    );
    for a in &v.answers {
        out += &format!("<h3>{}</h3>\n<ul class=\"answer\">\n", esc(&a.heading()));
        out += &format!(
            "<li><b>{}</b>: {:.3} ms, {:.1} GMAC/s{}</li>\n",
            esc(&a.pconv.label()),
            a.pconv.median_ms,
            a.pconv.gmac_per_s,
            a.forward_text()
                .map(|f| format!("; {}", esc(&f)))
                .unwrap_or_default()
        );
        for v in &a.versus {
            let class = match v.finding {
                answer::Finding::PconvFaster => "pconv",
                answer::Finding::OtherFaster => "other",
                answer::Finding::NoDifference => "none",
            };
            out += &format!(
                "<li>vs {}: <span class=\"{class}\">{}</span></li>\n",
                esc(&v.other.label()),
                esc(&a.versus_text(v))
            );
        }
        if let Some(c) = a.claim_text() {
            let class = match a.claim {
                answer::Claim::Holds => "pconv",
                answer::Claim::DoesNotHold => "other",
                _ => "none",
            };
            out += &format!("<li><b class=\"{class}\">{}</b></li>\n", esc(&c));
        }
        if let Some(t) = a.step_text() {
            out += &format!("<li>{}</li>\n", esc(&t));
        }
        out += "</ul>\n";
    }
    out
}

/// An SVG document as an inline figure (any XML declaration dropped).
pub fn figure(svg: &str, caption: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    format!(
        "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
        &svg[start..],
        esc(caption)
    )
}

/// The full report of one results file (or several merged): environment, answer, the
/// table, the figures, failures.
pub fn report(result: &RunResult) -> String {
    report_of_files(result, &[])
}

/// [`report`] of several files merged into `result`, with each file's environment under its
/// path (`sources`: path and contents; empty: `result`'s own environment).
pub fn report_of_files(result: &RunResult, sources: &[(std::path::PathBuf, RunResult)]) -> String {
    let mut body = String::new();
    if sources.len() > 1 {
        body += "<h2>Environments</h2>\n";
        for (path, file) in sources {
            body += &format!("<h3>{}</h3>\n", esc(&path.display().to_string()));
            body += &environment(file);
        }
    } else {
        body += "<h2>Environment</h2>\n";
        body += &environment(result);
    }
    if let Some(v) = &result.verdicts {
        body += "<h2>The answer per shape</h2>\n";
        body += &answer(v);
    }
    let r = rows::build(result);
    body += &format!("<h2>{}</h2>\n", esc(&r.title));
    body += &table(&r, "results");
    if let Some(n) = super::networks::build(&result.records) {
        body += &format!("<h2>{}</h2>\n", esc(&n.title));
        body += &table(&n, "networks");
    }
    body += "<h2>Figures</h2>\n";
    match super::plot::render_svg(result) {
        Ok(svg) => body += &figure(
            &svg,
            "Latency against MACs; GMAC/s against n_div and groups; latency against kernel size.",
        ),
        Err(e) => body += &format!("<p>No figures: {}</p>\n", esc(&e.to_string())),
    }
    if result.profile.is_some() {
        if let Ok(svg) = super::plot::render_roofline_svg(result) {
            body += &figure(
                &svg,
                "Roofline: each record at its arithmetic intensity under the device's ceilings.",
            );
        }
    }
    if !result.failures.is_empty() {
        body += "<h2>Failures</h2>\n<ul>\n";
        for f in &result.failures {
            body += &format!(
                "<li>{} {} at {} ({}, {}): {}</li>\n",
                esc(f.op.as_str()),
                esc(&f.variant),
                f.shape,
                f.implementation,
                f.dtype,
                esc(&f.error)
            );
        }
        body += "</ul>\n";
    }
    page(&format!("pconv-bench {}", result.config.name), &body)
}

/// The HTML format of `report`, `run --html` and `sweep --html`.
pub struct HtmlFormat;

impl super::Export for HtmlFormat {
    fn export(&self, result: &RunResult) -> String {
        report(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_page_needs_nothing_outside_itself() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let result: RunResult =
            serde_json::from_str(include_str!("../../results/cpu-xeon-2c-1t-table1.json")).unwrap();
        let mut result = result;
        result.verdicts = Verdicts::of(&result.records);
        let html = report(&result);
        assert!(html.starts_with("<!DOCTYPE html>"));
        for external in ["src=\"http", "href=\"http", "<link", "@import", "url("] {
            assert!(!html.contains(external), "external resource: {external}");
        }
        assert_eq!(
            html.matches("<svg").count(),
            2,
            "figures and roofline inline"
        );
        assert!(html.contains("<table class=\"sortable\" id=\"results\">"));
        assert!(html.contains("paper&#39;s claim"));
        assert!(!html.contains("<?xml"));
    }
}
