//! `pconv-bench model`: whole FasterNets through the real binary.

mod common;

use common::*;

#[test]
fn model_verifies_times_and_counts_macs_like_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("m.json");
    let js = j.to_str().unwrap();
    let out = run(&quick_model_args(js, &["fasternet-t0"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("fasternet-t0") && table.contains("-0.58%"),
        "{table}"
    );
    let v = read_json(&j);
    assert_eq!(v["mode"], "model");
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "native and candle");
    for r in records {
        assert_eq!(
            (r["op"].as_str(), r["model"].as_str()),
            (Some("fasternet"), Some("fasternet-t0"))
        );
        // 0.3380 G against the paper's 0.34 G.
        let n = &r["network"];
        let flops = n["cost"]["fvcore_flops"].as_u64().unwrap();
        assert!((337_000_000..339_000_000).contains(&flops), "{flops}");
        assert!(n["flops_vs_paper"].as_f64().unwrap().abs() < 0.01);
        assert_eq!(r["cost"]["macs"], n["cost"]["conv_linear_macs"]);
        assert!(r["verification"]["max_rel_err"].as_f64().unwrap() < 1e-4);
        // Verified at the timed resolution and batch, on the kernels it was timed on.
        assert_eq!(r["verification"]["input"], "1x3x224x224");
        let path = r["kernel_path"].as_str().unwrap();
        assert_eq!(r["verification"]["kernel_path"].as_str(), Some(path), "{r}");
        assert_eq!(r["implementation"] == "candle", path == "candle", "{r}");
        let samples = r["samples_ms"].as_array().unwrap();
        assert!(samples.len() >= 10 && r["stats"]["median_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(n["act"], "gelu");
    }
    // At another resolution there is no paper figure to compare with.
    let out = run(&quick_model_args(
        js,
        &[
            "fasternet-t2",
            "--resolution",
            "128",
            "--impl",
            "native",
            "--batch",
            "3",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    let r = &v["records"][0];
    assert!(r["network"]["flops_vs_paper"].is_null());
    assert_eq!(r["verification"]["input"], "3x3x128x128");
    assert!(
        r["verification"]["checks"][0]
            .as_str()
            .unwrap()
            .starts_with("images [0, 1, 2] of 3"),
        "{r}"
    );
    assert_eq!(r["network"]["act"], "relu");
    // The file is an ordinary results file: report renders it, and compare gates on it, so
    // CI can gate on whole-network latency: the same network 1.5x slower is a regression.
    let out = run(&["report", js]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Whole networks"), "{}", stdout(&out));
    // Both sides get a tight, known spread of samples (the measured ones carry whatever noise
    // the machine had, and a wide interval would make the verdict depend on it).
    let base = steady(&j);
    let slower = edited(&base, "slower.json", 1.5, |_| {});
    let out = run(&["compare", base.to_str().unwrap(), slower.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("fasternet-t2") && text.contains("1 regressed"),
        "{text}"
    );
    // A file in the layout older versions wrote is named as such.
    let old = dir.path().join("old.json");
    std::fs::copy("tests/golden/fasternet-t0.json", &old).unwrap();
    let mut value = read_json(&old);
    value["schema_version"] = 1.into();
    value["mode"] = "model".into();
    value["tool"] = serde_json::json!({"name": "pconv-bench"});
    std::fs::write(&old, value.to_string()).unwrap();
    let out = run(&["report", old.to_str().unwrap()]);
    assert_bad_input(&out, "an old model file", "older pconv-bench");
}

#[test]
fn bad_model_input_is_refused_and_leaves_results_alone() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("m.json");
    std::fs::write(&j, "earlier results").unwrap();
    let js = j.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["fasternet-xl"], "'fasternet-xl'"),
        (
            vec!["fasternet-t0", "--resolution", "200"],
            "resolution 200",
        ),
        (vec!["fasternet-t0", "--resolution", "64"], "resolution 64"),
        (vec!["fasternet-t0", "--resolution", "0"], "'0'"),
        (vec!["fasternet-t0", "--batch", "0"], "'0'"),
        (vec!["fasternet-t0", "--impl", "torch"], "'torch'"),
        (
            vec!["fasternet-t0", "--impl", "native,native"],
            "'native' twice",
        ),
    ];
    for (extra, expect) in cases {
        let out = run(&quick_model_args(js, &extra));
        assert_bad_input(&out, &format!("{extra:?}"), expect);
        assert_eq!(std::fs::read_to_string(&j).unwrap(), "earlier results");
    }
}
