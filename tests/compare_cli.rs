//! `pconv-bench compare` end to end, through the real binary, on a real run and on
//! synthetic edits of it with known shifts.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A small real results file (two operators, both implementations).
fn real_run(dir: &Path) -> PathBuf {
    let j = dir.join("base.json");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &["--ops", "dwconv,pwconv", "--measure-time", "0.05"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    j
}

fn compare(args: &[&str]) -> std::process::Output {
    let mut v = vec!["compare"];
    v.extend_from_slice(args);
    run(&v)
}

#[test]
fn a_run_against_itself_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let b = base.to_str().unwrap();
    let out = compare(&[b, b]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    // Identical samples: no change estimated. A record with few, scattered samples (a short
    // real run) may get an interval too wide to call unchanged, never a verdict either way.
    assert!(text.contains("0 regressed, 0 improved, "), "{text}");
    let json = compare(&[b, b, "--format", "json"]);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 8);
    for ch in changes {
        assert_eq!(ch["ratio"]["ratio"], 1.0, "{ch}");
        assert!(
            ch["verdict"] == "unchanged" || ch["verdict"] == "inconclusive",
            "{ch}"
        );
    }
    // With a steady spread, every record is called unchanged.
    let steady = steady(&base);
    let s = steady.to_str().unwrap();
    let text = stdout(&compare(&[s, s]));
    assert!(
        text.contains("0 regressed, 0 improved, 8 unchanged"),
        "{text}"
    );
}

#[test]
fn a_20_percent_slowdown_regresses_and_a_speedup_improves() {
    let dir = tempfile::tempdir().unwrap();
    let base = steady(&real_run(dir.path()));
    let slow = edited(&base, "slow.json", 1.2, |_| {});
    let out = compare(&[
        base.to_str().unwrap(),
        slow.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The same counts and outcome as the table and Markdown formats.
    let n = v["changes"].as_array().unwrap().len();
    assert_eq!(v["counts"]["regressed"], n);
    assert_eq!(v["counts"]["unchanged"], 0);
    assert_eq!(v["passed"], false);
    assert_eq!(v["failures"][0], format!("{n} regressed"));
    for ch in v["changes"].as_array().unwrap() {
        assert_eq!(ch["verdict"], "regressed", "{ch}");
        assert!((ch["ratio"]["ratio"].as_f64().unwrap() - 1.2).abs() < 1e-9);
    }
    let fast = edited(&base, "fast.json", 0.8, |_| {});
    let out = compare(&[
        base.to_str().unwrap(),
        fast.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.starts_with("✅ **pconv-bench**: 0 regressed, 8 improved"),
        "{md}"
    );
    assert!(md.contains("| record | baseline ms |"), "{md}");
}

#[test]
fn a_shift_inside_the_threshold_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let base = steady(&real_run(dir.path()));
    let slightly = edited(&base, "slightly.json", 1.03, |_| {});
    let out = compare(&[base.to_str().unwrap(), slightly.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = compare(&[
        base.to_str().unwrap(),
        slightly.to_str().unwrap(),
        "--threshold",
        "1%",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn records_on_one_side_and_other_devices_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let fewer = edited(&base, "fewer.json", 1.0, |v| {
        v["records"].as_array_mut().unwrap().truncate(3);
        v["device"]["name"] = Value::from("Another CPU");
    });
    let (b, f) = (base.to_str().unwrap(), fewer.to_str().unwrap());
    let out = compare(&[b, f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--allow-different-device"),
        "{}",
        stderr(&out)
    );
    // Five baseline records vanished: a coverage regression, exit 1 ...
    let out = compare(&[b, f, "--allow-different-device"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("note: device differs"), "{text}");
    assert_eq!(
        text.matches("missing from current (only in baseline):")
            .count(),
        5,
        "{text}"
    );
    assert!(text.contains("5 missing from current"), "{text}");
    assert!(
        text.contains("gate fails: 5 baseline record(s) missing"),
        "{text}"
    );
    // ... unless accepted.
    let out = compare(&[b, f, "--allow-different-device", "--allow-missing"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Records only in the current run are new coverage, never a failure.
    let out = compare(&[f, b, "--allow-different-device"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// Rounds that disagree (0.97x, 1.0x, 1.3x of the baseline): the interval of the change is
/// too wide to call it unchanged or regressed at 10%.
#[test]
fn a_change_too_wide_to_decide_is_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let base = steady(&real_run(dir.path()));
    let wide = edited(&base, "wide.json", 1.0, |v| {
        for r in v["records"].as_array_mut().unwrap() {
            let m = r["stats"]["median_ms"].as_f64().unwrap();
            let samples: Vec<Value> = [0.97, 1.0, 1.3]
                .iter()
                .flat_map(|f| {
                    (0..10).map(move |i| Value::from(m * f * (1.0 + 0.001 * f64::from(i))))
                })
                .collect();
            r["repetitions"] = Value::from(vec![10, 10, 10]);
            r["samples_ms"] = Value::Array(samples);
        }
    });
    let (b, w) = (base.to_str().unwrap(), wide.to_str().unwrap());
    let out = compare(&[b, w, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for ch in v["changes"].as_array().unwrap() {
        assert_eq!(ch["verdict"], "inconclusive", "{ch}");
    }
    let out = compare(&[b, w]);
    assert!(stdout(&out).contains("8 inconclusive"), "{}", stdout(&out));
    let out = compare(&[b, w, "--format", "markdown", "--fail-on-inconclusive"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("❌"), "{}", stdout(&out));
}

/// Writes a copy of `src` whose every record holds three rounds of 101 samples, each spread
/// ±2 % around the given multiple of the record's median.
fn rounds(src: &Path, name: &str, levels: [f64; 3]) -> PathBuf {
    edited(src, name, 1.0, |v| {
        for r in v["records"].as_array_mut().unwrap() {
            let m = r["stats"]["median_ms"].as_f64().unwrap();
            let samples: Vec<Value> = levels
                .iter()
                .flat_map(|f| {
                    (0..101).map(move |i| Value::from(m * f * (0.98 + 0.0004 * f64::from(i))))
                })
                .collect();
            r["repetitions"] = Value::from(vec![101, 101, 101]);
            r["samples_ms"] = Value::Array(samples);
        }
    })
}

/// Three rounds a side that disagree as one binary's did against itself under load (per-round
/// medians 0.152, 0.173, 0.125 ms against 0.095, 0.100, 0.113): the bootstrap over three
/// rounds alone would call that improved; with the t interval across rounds it is
/// inconclusive. Rounds that agree still give a verdict.
#[test]
fn three_rounds_a_side_that_disagree_are_not_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let b = rounds(&base, "b3.json", [1.0, 1.138, 0.822]);
    let c = rounds(&base, "c3.json", [0.625, 0.658, 0.743]);
    let (bs, cs) = (b.to_str().unwrap(), c.to_str().unwrap());
    let out = compare(&[bs, cs, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    for ch in v["changes"].as_array().unwrap() {
        assert_eq!(ch["verdict"], "inconclusive", "{ch}");
    }
    let agree = rounds(&base, "a3.json", [1.0, 1.01, 0.99]);
    let slow = rounds(&base, "s3.json", [1.5, 1.51, 1.49]);
    let (a, s) = (agree.to_str().unwrap(), slow.to_str().unwrap());
    let out = compare(&[a, s, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["counts"]["regressed"], 8, "{v}");
}

/// `merge` pools rounds: each file a repetition, stats recomputed from all samples.
#[test]
fn merge_pools_rounds_as_repetitions() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let slower = edited(&base, "slower.json", 2.0, |_| {});
    let merged = dir.path().join("merged.json");
    let out = run(&[
        "merge",
        base.to_str().unwrap(),
        slower.to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (a, m) = (read_json(&base), read_json(&merged));
    let recs = m["records"].as_array().unwrap();
    assert_eq!(recs.len(), a["records"].as_array().unwrap().len());
    for (r, orig) in recs.iter().zip(a["records"].as_array().unwrap()) {
        let n = orig["samples_ms"].as_array().unwrap().len();
        assert_eq!(r["repetitions"], serde_json::json!([n, n]), "{r}");
        assert_eq!(r["samples_ms"].as_array().unwrap().len(), 2 * n);
        assert_eq!(r["stats"]["samples"], 2 * n);
        let (lo, hi) = (
            orig["stats"]["min_ms"].as_f64().unwrap(),
            2.0 * orig["stats"]["max_ms"].as_f64().unwrap(),
        );
        let med = r["stats"]["median_ms"].as_f64().unwrap();
        assert!(lo <= med && med <= hi, "{med} outside [{lo}, {hi}]");
    }
    // Another machine's round is refused, and the output is not written.
    let other = edited(&base, "other.json", 1.0, |v| {
        v["device"]["name"] = Value::from("Another CPU");
    });
    let out2 = dir.path().join("no.json");
    let out = run(&[
        "merge",
        base.to_str().unwrap(),
        other.to_str().unwrap(),
        "--json",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("device differs"), "{}", stderr(&out));
    assert!(!out2.exists());
}

#[test]
fn bad_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let b = base.to_str().unwrap();
    let not_json = dir.path().join("x.json");
    std::fs::write(&not_json, "{ nope").unwrap();
    let other = dir.path().join("other.json");
    std::fs::write(
        &other,
        r#"{"schema_version": 1, "tool": {"name": "hyperfine"}}"#,
    )
    .unwrap();
    let newer = edited(&base, "newer.json", 1.0, |v| {
        v["schema_version"] = Value::from(99)
    });
    let no_samples = edited(&base, "empty.json", 1.0, |v| {
        v["records"][0]["samples_ms"] = Value::Array(vec![]);
    });
    let disjoint = edited(&base, "disjoint.json", 1.0, |v| {
        for r in v["records"].as_array_mut().unwrap() {
            r["threads"] = Value::from(7);
        }
    });
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![b, not_json.to_str().unwrap()], "is not JSON"),
        (
            vec![b, other.to_str().unwrap()],
            "is not a pconv-bench result",
        ),
        (vec![b, newer.to_str().unwrap()], "schema_version 99"),
        (vec![b, no_samples.to_str().unwrap()], "no raw samples"),
        (vec![b, disjoint.to_str().unwrap()], "no record in common"),
        (vec![b, "/no/such/file.json"], "cannot read"),
        (vec![b, b, "--threshold", "0%"], "threshold '0%'"),
        (vec![b, b, "--threshold", "100"], "threshold '100'"),
        (vec![b, b, "--threshold", "lots"], "threshold 'lots'"),
        (vec![b, b, "--format", "html"], "'html'"),
    ];
    for (args, expect) in cases {
        let out = compare(&args);
        assert_bad_input(&out, &format!("{args:?}"), expect);
    }
}

#[test]
fn injected_delay_is_caught_by_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let base = real_run(dir.path());
    let slow = dir.path().join("slow.json");
    let out = run(&quick_run_args(
        slow.to_str().unwrap(),
        &[
            "--ops",
            "dwconv,pwconv",
            "--measure-time",
            "0.05",
            "--inject-delay-us",
            "3000",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = compare(&[base.to_str().unwrap(), slow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn repeat_pools_samples_of_interleaved_repetitions() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("rep.json");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &["--ops", "pwconv", "--impl", "native", "--repeat", "3"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    for r in v["records"].as_array().unwrap() {
        // measure-time 0: exactly 10 samples per repetition.
        assert_eq!(r["samples_ms"].as_array().unwrap().len(), 30);
        assert_eq!(r["warmup"]["runs"], 9);
    }
}
