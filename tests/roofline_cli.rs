//! `pconv-bench calibrate` and the roofline columns of `run`, through the real binary.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn calibrate_writes_a_profile_per_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let p = quick_profile(dir.path(), "1,2");
    let v = read_json(&p);
    assert_eq!(v["kind"], "pconv-bench-profile");
    let ceilings = v["ceilings"].as_array().unwrap();
    assert_eq!(ceilings.len(), 2);
    for c in ceilings {
        for k in ["compute", "copy", "read"] {
            assert!(c[k]["value"].as_f64().unwrap() > 0.0, "{k}: {c}");
        }
    }
}

#[test]
fn run_with_a_profile_places_every_record_under_the_roofline() {
    let dir = tempfile::tempdir().unwrap();
    let p = quick_profile(dir.path(), "1");
    let j = dir.path().join("r.json");
    let svg = dir.path().join("roof.svg");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &[
            "--ops",
            "dwconv,pconv",
            "--impl",
            "native",
            "--profile",
            p.to_str().unwrap(),
            "--roofline",
            svg.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("% roofline"), "{}", stdout(&out));
    let v = read_json(&j);
    assert_eq!(v["profile"]["kind"], "pconv-bench-profile");
    for r in v["records"].as_array().unwrap() {
        let rl = &r["roofline"];
        let attainable = rl["attainable_gflop_per_s"].as_f64().unwrap();
        let achieved = r["rates"]["gflop_per_s"].as_f64().unwrap();
        assert!(
            (rl["achieved_pct"].as_f64().unwrap() - 100.0 * achieved / attainable).abs() < 1e-9
        );
        assert!(rl["bound"] == "memory" || rl["bound"] == "compute");
    }
    assert!(std::fs::read_to_string(&svg).unwrap().contains("roofline:"));
    // report redraws it from the saved file alone.
    let again = dir.path().join("again.svg");
    let out = run(&[
        "report",
        j.to_str().unwrap(),
        "--roofline",
        again.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(again.exists());
}

#[test]
fn profiles_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = quick_profile(dir.path(), "1");
    let mut v: Value = read_json(&p);
    v["device"]["name"] = Value::from("Some Other CPU");
    let other = dir.path().join("other.json");
    std::fs::write(&other, serde_json::to_string(&v).unwrap()).unwrap();
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"kind\": \"pconv-bench-profile\", ").unwrap();
    let results = dir.path().join("keep.json");
    std::fs::write(&results, "earlier").unwrap();
    let j = results.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--profile", other.to_str().unwrap()],
            "--allow-profile-mismatch",
        ),
        (
            vec!["--profile", p.to_str().unwrap(), "--threads", "2"],
            "no ceilings for 2 thread(s)",
        ),
        (vec!["--profile", corrupt.to_str().unwrap()], "is corrupt"),
        (vec!["--profile", "/no/profile.json"], "cannot read profile"),
        (vec!["--roofline", "r.svg"], "needs device ceilings"),
    ];
    for (extra, expect) in cases {
        let out = run(&quick_run_args(j, &extra));
        assert_bad_input(&out, &format!("{extra:?}"), expect);
        assert_eq!(std::fs::read_to_string(&results).unwrap(), "earlier");
    }
    // With the flag, the mismatched profile is used.
    let out = run(&quick_run_args(
        j,
        &[
            "--ops",
            "pwconv",
            "--profile",
            other.to_str().unwrap(),
            "--allow-profile-mismatch",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // report --roofline on results without a profile says so.
    let plain = dir.path().join("plain.json");
    let out = run(&quick_run_args(
        plain.to_str().unwrap(),
        &["--ops", "pwconv"],
    ));
    assert_eq!(out.status.code(), Some(0));
    let out = run(&[
        "report",
        plain.to_str().unwrap(),
        "--roofline",
        dir.path().join("x.svg").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no device profile"),
        "{}",
        stderr(&out)
    );
}
