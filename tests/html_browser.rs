//! The HTML report in a real browser: headless Chromium loads the page written by
//! `report --format html` from the committed Table 1 run, with `#sort=results:COL-` in the
//! address, and the test reads back the rendered DOM (figures and tables present, the
//! inline script ran and sorted the table) and a screenshot at 1400 px wide (not blank).
//!
//! Without a browser the test says that it skipped; with `PCONV_BENCH_REQUIRE_BROWSER` set
//! (as `.ci/run` does after installing Chromium) a missing browser fails it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    })
    .find(|p| p.is_file())
}

/// Headless Chromium with the flags a closed network and a root sandbox need.
fn browser(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1400,2400",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// The cells of each body row of the table with id `id` in serialised HTML.
fn body_rows(dom: &str, id: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table #{id}"));
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    // The contents of each <tag> or <tag ...> element (not <thead> for th).
    let cells = |html: &str, tag: &str| -> Vec<String> {
        let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(i) = rest.find(&open) {
            rest = &rest[i + open.len()..];
            if !rest.starts_with([' ', '>']) {
                continue;
            }
            let body = &rest[rest.find('>').unwrap() + 1..];
            out.push(body[..body.find(&close).unwrap()].to_string());
        }
        out
    };
    let head = &table[..table.find("</thead>").unwrap()];
    let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
    let rows = body.split("<tr").skip(1).map(|r| cells(r, "td")).collect();
    (cells(head, "th"), rows)
}

#[test]
fn the_html_report_renders_in_a_real_browser() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("PCONV_BENCH_REQUIRE_BROWSER").is_none(),
            "PCONV_BENCH_REQUIRE_BROWSER is set but no Chromium was found"
        );
        eprintln!("SKIPPED the_html_report_renders_in_a_real_browser: no Chromium on PATH (install the chromium package or set CHROMIUM=/path; .ci/run does both)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = run(&[
        "report",
        "results/cpu-xeon-2c-1t-table1.json",
        "--format",
        "html",
        "--output",
        page.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    let (header, _) = body_rows(&html, "results");
    let col = header.iter().position(|h| h == "GMAC/s").unwrap();
    let url = format!("file://{}#sort=results:{col}-", page.display());

    let dom = browser(&bin, &dir.path().join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the inline script did not run"
    );
    assert!(dom.matches("<svg").count() >= 2, "figures missing");
    assert!(dom.contains("The answer per shape"));
    let (header, rows) = body_rows(&dom, "results");
    assert_eq!(rows.len(), 48);
    assert!(
        dom.contains("aria-sort=\"descending\">GMAC/s</th>"),
        "{header:?}"
    );
    let gmacs: Vec<f64> = rows.iter().map(|r| r[col].parse().unwrap()).collect();
    assert!(
        gmacs.windows(2).all(|w| w[0] >= w[1]),
        "not sorted by GMAC/s, descending: {gmacs:?}"
    );
    // The committed file's order is not already sorted, so the script did the work.
    let (_, unsorted) = body_rows(&html, "results");
    let before: Vec<f64> = unsorted.iter().map(|r| r[col].parse().unwrap()).collect();
    assert_ne!(before, gmacs);

    let shot = dir.path().join("report.png");
    let status = browser(&bin, &dir.path().join("profile-shot"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(status.status.success());
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, 1400);
    let px = info.line_size / info.width as usize;
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let inked = pixels
        .iter()
        .filter(|p| p[..3].iter().any(|&c| c < 200))
        .count();
    let mut colours: Vec<[u8; 3]> = pixels.iter().map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(
        inked * 100 > pixels.len(),
        "the screenshot is nearly blank: {inked} of {} pixels inked",
        pixels.len()
    );
    assert!(colours.len() > 50, "{} colours", colours.len());
}
