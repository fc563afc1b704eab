//! `pconv-bench sweep` and `report` end to end, through the real binary.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// A quick sweep on one small shape; `extra` flags replace the defaults of the same name.
fn sweep_args<'a>(json: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--config", "configs/ci.toml"),
        ("--shapes", "32x16x16"),
        ("--impl", "native"),
        ("--warmup-time", "0"),
        ("--measure-time", "0"),
        ("--json", json),
    ];
    args_with_defaults("sweep", &defaults, extra)
}

const GRID: [&str; 8] = [
    "--ops",
    "pconv,gconv",
    "--n-div",
    "2,4",
    "--groups",
    "4,8",
    "--kernel",
    "3,5",
];

#[test]
fn sweep_expands_the_cartesian_product_and_draws_three_figures() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("s.json");
    let svg = dir.path().join("s.svg");
    let mut extra = GRID.to_vec();
    extra.extend(["--plot", svg.to_str().unwrap()]);
    let out = run(&sweep_args(j.to_str().unwrap(), &extra));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    assert_eq!(v["mode"], "sweep");
    let records = v["records"].as_array().unwrap();
    // PConv: 2 kernels x 2 n_div x 2 forwards; GConv: 2 kernels x 2 groups.
    assert_eq!(records.len(), 12);
    let pconv = records.iter().filter(|r| r["op"] == "pconv").count();
    assert_eq!(pconv, 8);
    let figure = std::fs::read_to_string(&svg).unwrap();
    assert!(figure.starts_with("<svg"), "not an SVG");
    for title in [
        "1. latency vs multiply-adds",
        "2. GMAC/s vs n_div / groups",
        "3. latency vs kernel size",
    ] {
        assert!(figure.contains(title), "missing panel {title}");
    }
}

#[test]
fn report_rerenders_the_sweep_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("s.json");
    let out = run(&sweep_args(j.to_str().unwrap(), &GRID));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let measured_table = stdout(&out);
    let js = j.to_str().unwrap();

    let table = run(&["report", js]);
    assert_eq!(table.status.code(), Some(0));
    assert_eq!(
        stdout(&table),
        measured_table,
        "report must reproduce the sweep's table"
    );

    let md = stdout(&run(&["report", js, "--format", "markdown"]));
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(rows.len(), 13, "header + 12 rows:\n{md}");
    assert!(rows[0].contains("median ms ± IQR") && !rows[0].contains("speed-up vs conv"));

    let csv = stdout(&run(&["report", js, "--format", "csv"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 13);
    let width = lines[0].split(',').count();
    assert!(
        lines.iter().all(|l| l.split(',').count() == width),
        "ragged CSV:\n{csv}"
    );
    assert!(lines[0].starts_with("op,variant,kernel,groups,n_div,forward,shape"));
    // Sorted by shape then op: GConv before PConv.
    assert!(
        lines[1].starts_with("gconv,") && lines[12].starts_with("pconv,"),
        "{csv}"
    );

    let json = stdout(&run(&["report", js, "--format", "json"]));
    let back: Value = serde_json::from_str(&json).unwrap();
    assert!(
        back == read_json(&j),
        "report --format json must reproduce the file"
    );
}

#[test]
fn resume_measures_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("s.json");
    let js = j.to_str().unwrap();
    let out = run(&sweep_args(js, &["--ops", "pconv", "--n-div", "2"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first = read_json(&j)["records"].as_array().unwrap().clone();
    assert_eq!(first.len(), 2);

    let mut args = sweep_args(js, &["--ops", "pconv", "--n-div", "2,4", "--resume", js]);
    args.retain(|a| *a != "--quiet");
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2 points (2 of 4 already measured)"),
        "{}",
        stderr(&out)
    );
    let all = read_json(&j)["records"].as_array().unwrap().clone();
    assert_eq!(all.len(), 4);
    assert_eq!(
        all[..2],
        first[..],
        "resumed records must be kept as they were"
    );

    let out = run(&sweep_args(
        js,
        &[
            "--ops", "pconv", "--n-div", "2,4", "--resume", js, "--layers", "3",
        ],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot resume") && stderr(&out).contains("layers is 10"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctrl_c_stops_after_the_current_point_and_keeps_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("s.json");
    let mut args = sweep_args(
        j.to_str().unwrap(),
        &[
            "--ops",
            "pconv,dwconv",
            "--n-div",
            "1,2,3,4,5,6,7,8",
            "--kernel",
            "3,5,7",
            "--measure-time",
            "0.2",
        ],
    );
    args.retain(|a| *a != "--quiet");
    let child = Command::new(BIN)
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = read_json(&j);
    assert_eq!(v["complete"], false);
    let n = v["records"].as_array().unwrap().len();
    assert!(n > 0 && n < 51, "{n} records");
}

#[test]
fn bad_inputs_exit_2_with_one_line_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("keep.json");
    std::fs::write(&j, "earlier").unwrap();
    let js = j.to_str().unwrap();
    let big_n_div: String = (1..=50)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let big_batch: String = (1..=25)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--n-div", ""], "''"),
        (vec!["--kernel", "3,3"], "'3' twice"),
        (vec!["--groups", "4,x"], "'x'"),
        (vec!["--kernel", "0"], "'0'"),
        (
            vec!["--ops", "pconv", "--n-div", "2,200", "--shapes", "96x8x8"],
            "n_div 200 gives c_p = c / n_div = 0 for shape 96x8x8",
        ),
        (
            vec!["--ops", "gconv", "--groups", "4,5", "--shapes", "96x8x8"],
            "groups 5 does not divide the 96 channels of shape 96x8x8",
        ),
        (
            vec![
                "--ops", "pconv", "--n-div", &big_n_div, "--batch", &big_batch, "--shapes",
                "64x8x8",
            ],
            "sweep of 2500 points",
        ),
        (vec!["--plot", "figure.png"], "PNG"),
        (vec!["--plot", "figure.pdf"], "unknown extension"),
        (vec!["--resume", "/no/such/results.json"], "cannot read"),
    ];
    for (extra, expect) in cases {
        let out = run(&sweep_args(js, &extra));
        assert_bad_input(&out, &format!("{extra:?}"), expect);
        assert_eq!(std::fs::read_to_string(&j).unwrap(), "earlier", "{extra:?}");
    }
}

#[test]
fn report_refuses_what_it_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"results": []}"#).unwrap();
    let newer = dir.path().join("newer.json");
    std::fs::write(
        &newer,
        r#"{"schema_version": 7, "tool": {"name": "pconv-bench"}}"#,
    )
    .unwrap();
    for (file, expect) in [
        (&other, "is not a pconv-bench result"),
        (&newer, "schema_version 7"),
    ] {
        let out = run(&["report", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
    }
    let out = run(&["report", other.to_str().unwrap(), "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}
