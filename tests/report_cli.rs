//! `report`: the answer section in every text format, `--by device` (the paper's Table 1
//! across devices) and `--output`.

mod common;

use common::*;

const TABLE1: &str = "results/cpu-xeon-2c-1t-table1.json";
const TORCH: &str = "results/cpu-xeon-2c-1t-table1-torch.json";

/// The committed PyTorch run relabelled as measured on another device.
fn other_device(dir: &std::path::Path) -> String {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TORCH))
            .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["device"]["name"] = "Test ARM board".into();
    let p = dir.join("arm-torch.json");
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

/// CSV cells of the row whose first cell is `first`, by header name.
fn csv_cell(csv: &str, first: &str, column: &str) -> String {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == column)
        .unwrap_or_else(|| panic!("no column {column:?} in {header:?}"));
    let row = lines
        .find(|l| l.starts_with(first))
        .unwrap_or_else(|| panic!("no row {first:?}"));
    row.split(',').nth(col).unwrap().to_string()
}

#[test]
fn by_device_lays_out_the_papers_table_across_devices() {
    let dir = tempfile::tempdir().unwrap();
    let arm = other_device(dir.path());
    let out = run(&["report", TABLE1, &arm, "--by", "device"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for column in [
        "Intel Xeon native ms",
        "Test ARM board torch GMAC/s",
        "paper GPU fps",
        "paper CPU ms",
        "paper ARM GMAC/s",
    ] {
        assert!(text.contains(column), "{column} missing:\n{text}");
    }
    assert!(text.contains("from results/cpu-xeon-2c-1t-table1.json"));

    let csv = run(&["report", TABLE1, &arm, "--by", "device", "--format", "csv"]);
    let csv = stdout(&csv);
    // The paper's own headline: PConv reaches 6.2x DWConv's FLOPS on its CPU, 10.5x on GPU.
    assert_eq!(
        csv_cell(&csv, "FLOPS PConv / DWConv", "paper CPU GMAC/s"),
        "6.22x"
    );
    assert_eq!(
        csv_cell(&csv, "FLOPS PConv / DWConv", "paper GPU GMAC/s"),
        "10.45x"
    );
    // One row per operator and shape (24) plus 6 summary rows; each measured cell matches
    // its file: DWConv 96x56x56 on the relabelled device is the torch file's median.
    assert_eq!(csv.lines().count(), 1 + 24 + 6);
    let torch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&arm).unwrap()).unwrap();
    let dw = torch["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["op"] == "dwconv" && r["shape"] == "96x56x56")
        .unwrap();
    let cell: f64 = csv_cell(&csv, "DWConv 3x3,96x56x56", "Test ARM board torch ms")
        .parse()
        .unwrap();
    assert!((cell - dw["stats"]["median_ms"].as_f64().unwrap()).abs() < 1e-3);

    let hidden = stdout(&run(&["report", TABLE1, "--by", "device", "--no-paper"]));
    assert!(!hidden.contains("paper CPU"), "{hidden}");
}

#[test]
fn by_device_refuses_what_it_cannot_lay_out() {
    let dir = tempfile::tempdir().unwrap();
    let ci = dir.path().join("ci.json");
    let out = run(&quick_run_args(
        ci.to_str().unwrap(),
        &["--ops", "pconv,dwconv", "--impl", "native"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ci = ci.to_str().unwrap();
    // No Table 1 shape: --paper has nothing to show.
    assert_bad_input(
        &run(&["report", ci, "--by", "device", "--paper"]),
        "--paper without Table 1 shapes",
        "no record has a row in the paper's Table 1",
    );
    // The same device, implementation and threads from two files: ambiguous columns.
    assert_bad_input(
        &run(&[
            "report",
            TABLE1,
            "results/cpu-xeon-2c-1t-table1-native.json",
            "--by",
            "device",
        ]),
        "two files of one device",
        "merge",
    );
    assert_bad_input(
        &run(&["report", ci, "--by", "device", "--format", "json"]),
        "json layout",
        "not json",
    );
    // The claim names only the rivals that ran (here DWConv, not GConv).
    let md = stdout(&run(&["report", ci, "--format", "markdown"]));
    assert!(
        md.contains("paper's claim, FLOPS(PConv) > FLOPS(DWConv): "),
        "{md}"
    );
    assert!(!md.contains("FLOPS(GConv)"), "{md}");
    // Without the paper's shapes the table still builds, without paper columns.
    let plain = run(&["report", ci, "--by", "device"]);
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert!(!stdout(&plain).contains("paper CPU"));
}

#[test]
fn the_answer_is_in_every_text_format_and_output_writes_a_file() {
    let md = stdout(&run(&["report", TABLE1, "--format", "markdown"]));
    assert!(md.contains("### The answer per shape"), "{md}");
    assert!(md.contains("- paper's claim, FLOPS(PConv) > FLOPS(DWConv), FLOPS(GConv): "));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("report.html");
    std::fs::write(&p, "earlier").unwrap();
    let out = run(&[
        "report",
        TABLE1,
        "--format",
        "html",
        "-o",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "the report went to the file");
    let html = std::fs::read_to_string(&p).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("The answer per shape"));
    // Several files: each one's environment under its path.
    let two = dir.path().join("two.html");
    let out = run(&[
        "report",
        TABLE1,
        TORCH,
        "--format",
        "html",
        "-o",
        two.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html2 = std::fs::read_to_string(&two).unwrap();
    assert!(html2.contains("<h2>Environments</h2>"));
    assert!(
        html2.contains(&format!("<h3>{TABLE1}</h3>"))
            && html2.contains(&format!("<h3>{TORCH}</h3>"))
    );
    assert!(
        html2.contains("PyTorch"),
        "the torch file's environment names its PyTorch"
    );
    let by = dir.path().join("by.html");
    let out = run(&[
        "report",
        TABLE1,
        TORCH,
        "--by",
        "device",
        "--format",
        "html",
        "-o",
        by.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::fs::read_to_string(&by)
        .unwrap()
        .contains("id=\"by-device\""));
}

#[test]
fn run_writes_its_html_report_beside_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let (j, h) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let mut args = quick_run_args(j.to_str().unwrap(), &[]);
    args.extend(["--html", h.to_str().unwrap()]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(&h).unwrap();
    assert!(html.contains("The answer per shape") && html.contains("<svg"));
    assert!(html.contains("id=\"results\""));
}

/// Bencher Metric Format: one benchmark per record, named by its identity; latency in ns and
/// throughput in MAC/s, each value inside its bounds and equal to the record's median.
#[test]
fn bmf_has_one_benchmark_per_record_with_bounded_latency_and_throughput() {
    let out = run(&["report", TABLE1, "--format", "bmf"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let bmf: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let table1 = read_json(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(TABLE1)
            .as_path(),
    );
    let records = table1["records"].as_array().unwrap();
    let benches = bmf.as_object().unwrap();
    assert_eq!(benches.len(), records.len());
    for (name, measures) in benches {
        // The schema: every measure an object with a numeric value and optional bounds.
        for (_, m) in measures.as_object().unwrap() {
            let (v, lo, hi) = (
                m["value"].as_f64().unwrap(),
                m["lower_value"].as_f64().unwrap(),
                m["upper_value"].as_f64().unwrap(),
            );
            assert!(lo <= v && v <= hi, "{name}: {m}");
        }
        let r = records
            .iter()
            .find(|r| {
                name.starts_with(&format!(
                    "{} {} {} {}",
                    r["op"].as_str().unwrap(),
                    r["variant"].as_str().unwrap(),
                    r["shape"].as_str().unwrap(),
                    r["implementation"].as_str().unwrap()
                ))
            })
            .unwrap_or_else(|| panic!("no record for {name}"));
        let median_ms = r["stats"]["median_ms"].as_f64().unwrap();
        let ns = measures["latency"]["value"].as_f64().unwrap();
        assert!((ns - median_ms * 1e6).abs() < 1e-6 * ns, "{name}");
        let macs = r["cost"]["macs"].as_f64().unwrap();
        let per_s = measures["throughput"]["value"].as_f64().unwrap();
        assert!(
            (per_s - macs / (median_ms / 1e3)).abs() < 1e-9 * per_s,
            "{name}"
        );
        assert!(
            (per_s / 1e9 - r["rates"]["gmac_per_s"].as_f64().unwrap()).abs() < 1e-6 * per_s / 1e9
        );
    }
}

/// github-action-benchmark's customSmallerIsBetter: an array of {name, unit, value, range,
/// extra}, the value the record's median in ms.
#[test]
fn github_action_benchmark_output_is_custom_smaller_is_better() {
    let out = run(&["report", TABLE1, "--format", "github-action-benchmark"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let benches = v.as_array().unwrap();
    assert_eq!(benches.len(), 48);
    let mut names: Vec<&str> = benches
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 48, "names are unique");
    for b in benches {
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["extra", "name", "range", "unit", "value"], "{b}");
        assert_eq!(b["unit"], "ms");
        assert!(b["value"].as_f64().unwrap() > 0.0);
        let range = b["range"].as_str().unwrap();
        let half: f64 = range.strip_prefix("± ").unwrap().parse().unwrap();
        assert!(half >= 0.0 && half < b["value"].as_f64().unwrap(), "{b}");
        assert!(b["extra"].as_str().unwrap().contains("GMAC/s"));
    }
}

/// Each file answers on its own: the same run given twice gives each answer twice, never a
/// PConv forward paired with itself from the other file.
#[test]
fn each_file_answers_on_its_own() {
    let json = |files: &[&str]| {
        let mut args = vec!["report"];
        args.extend_from_slice(files);
        args.extend(["--format", "json"]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    let one = json(&[TABLE1]);
    let two = json(&[TABLE1, TABLE1]);
    let answers = |v: &serde_json::Value| v["verdicts"]["answers"].as_array().unwrap().clone();
    assert_eq!(answers(&one).len(), 8);
    assert_eq!(answers(&two).len(), 16);
    for a in answers(&two) {
        let (mine, other) = (
            a["pconv"]["variant"].as_str().unwrap(),
            a["other_forward"]["side"]["variant"].as_str().unwrap(),
        );
        assert_ne!(mine, other, "{a}");
    }
}

/// Two outputs on one file, or a report over its own input, are refused before anything is
/// written.
#[test]
fn outputs_that_would_overwrite_each_other_or_the_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("r.json");
    let mut args = quick_run_args(j.to_str().unwrap(), &[]);
    args.extend(["--html", j.to_str().unwrap()]);
    assert_bad_input(
        &run(&args),
        "--json and --html on one file",
        "name the same file",
    );
    assert!(!j.exists());
    let copy = dir.path().join("t1.json");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE1),
        &copy,
    )
    .unwrap();
    let before = std::fs::read(&copy).unwrap();
    let c = copy.to_str().unwrap();
    assert_bad_input(
        &run(&["report", c, "--format", "html", "-o", c]),
        "report over its input",
        "would replace the results file",
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

/// A file with forwards and training steps: the steps get rows of their own in `--by device`
/// and stay out of its FLOPS summary (the paper's FLOPS are of forwards) and of the figures;
/// CSV says each row's pass.
#[test]
fn training_steps_get_their_own_rows_and_stay_out_of_the_summary_and_figures() {
    const BOTH: &str = "results/cpu-xeon-2c-1t-table1-train.json";
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(BOTH).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let records = v["records"].as_array_mut().unwrap();
    let trained = records.iter().filter(|r| r["pass"] == "train").count();
    assert!(trained > 0);
    records.retain(|r| r["pass"] == "infer");
    let forwards = dir.path().join("forwards.json");
    std::fs::write(&forwards, serde_json::to_string(&v).unwrap()).unwrap();

    let csv = |file: &str| {
        let out = run(&["report", file, "--by", "device", "--format", "csv"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let (both, only) = (csv(BOTH), csv(forwards.to_str().unwrap()));
    let steps = both
        .lines()
        .filter(|l| l.contains(", training step"))
        .count();
    assert_eq!(
        steps,
        trained / 2,
        "one row per operator and shape, two implementations"
    );
    for row in ["FLOPS PConv / DWConv", "FLOPS PConv / GConv"] {
        for col in ["Intel Xeon native GMAC/s", "Intel Xeon candle GMAC/s"] {
            assert_eq!(
                csv_cell(&both, row, col),
                csv_cell(&only, row, col),
                "{row} {col}"
            );
        }
    }

    let records_csv = stdout(&run(&["report", BOTH, "--format", "csv"]));
    assert!(records_csv.lines().next().unwrap().ends_with(",pass"));
    assert_eq!(
        records_csv
            .lines()
            .filter(|l| l.ends_with(",train"))
            .count(),
        trained
    );

    let svg = dir.path().join("fig.svg");
    let out = run(&["report", BOTH, "--plot", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let figure = std::fs::read_to_string(&svg).unwrap();
    assert!(!figure.contains("training steps"), "the forwards are drawn");
    // One tip per point drawn: the native forwards only.
    let native_forwards = v["records"].as_array().unwrap().len() / 2;
    let tips = &figure[figure.find("<g class=\"tips\">").expect("tips")..];
    assert_eq!(tips.matches("<title>").count(), native_forwards);
}
