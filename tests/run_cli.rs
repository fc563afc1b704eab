//! `pconv-bench run` end to end, through the real binary.

mod common;

use common::*;

/// Every bad input: exit 2, one line on stderr naming the value, the results file untouched.
#[test]
fn bad_inputs_exit_2_with_one_line_and_leave_results_alone() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("keep.json");
    std::fs::write(&json, "earlier results").unwrap();
    let j = json.to_str().unwrap();

    let missing = dir.path().join("missing.toml");
    let not_toml = dir.path().join("not.toml");
    std::fs::write(&not_toml, "[suite\nname = ").unwrap();
    let unknown_key = dir.path().join("unknown.toml");
    let text = std::fs::read_to_string("configs/ci.toml").unwrap();
    std::fs::write(
        &unknown_key,
        text.replace("layers = 10", "layers = 10\nlayer_count = 3"),
    )
    .unwrap();
    let unknown_line = text.lines().position(|l| l.starts_with("layers")).unwrap() + 2;

    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--n-div", "0"], "'0'".into()),
        (
            vec!["--ops", "pconv", "--shapes", "8x8x8", "--n-div", "9"],
            "n_div 9".into(),
        ),
        (
            vec!["--ops", "gconv", "--shapes", "96x8x8", "--groups", "5"],
            "groups 5".into(),
        ),
        (
            vec!["--ops", "pconv", "--kernel", "4"],
            "kernel size 4".into(),
        ),
        (
            vec!["--shapes", "8x3x3", "--kernel", "5"],
            "kernel size 5".into(),
        ),
        (vec!["--shapes", "96x56"], "'96x56'".into()),
        (vec!["--shapes", "0x56x56"], "'0x56x56'".into()),
        (vec!["--shapes", "axbxc"], "'axbxc'".into()),
        (vec!["--batch", "0"], "'0'".into()),
        (
            vec!["--ops", "fasternet_block", "--expansion", "0"],
            "'0'".into(),
        ),
        (
            vec!["--ops", "fasternet_block", "--act", "swish"],
            "'swish'".into(),
        ),
        (vec!["--ops", "c2f", "--bottlenecks", "0"], "'0'".into()),
        (vec!["--pass", "backprop"], "'backprop'".into()),
        (
            vec![
                "--ops",
                "pconv",
                "--pconv-forward",
                "slicing",
                "--pass",
                "train",
            ],
            "inference-only".into(),
        ),
        (
            vec![
                "--ops",
                "pconv_pw",
                "--pconv-forward",
                "slicing",
                "--pass",
                "infer,train",
            ],
            "allowed with train is split_cat".into(),
        ),
        (
            vec![
                "--ops",
                "conv,fasternet",
                "--models",
                "fasternet-t0",
                "--pass",
                "train",
            ],
            "op fasternet".into(),
        ),
        (
            vec!["--ops", "c2f", "--shapes", "63x8x8"],
            "the 63 channels of 63x8x8".into(),
        ),
        (
            vec!["--ops", "c2f_faster", "--shapes", "60x8x8", "--n-div", "4"],
            "n_div 4 does not divide the 30 channels".into(),
        ),
        (vec!["--layers", "0"], "'0'".into()),
        (vec!["--precision", "0"], "'0' is not a precision".into()),
        (
            vec!["--precision", "0.5"],
            "'0.5' is not a precision".into(),
        ),
        (
            vec!["--precision", "60%"],
            "'60%' is not a precision".into(),
        ),
        (
            vec!["--precision", "fast"],
            "'fast' is not a precision".into(),
        ),
        (
            vec!["--ops", "fasternet"],
            "op fasternet needs models".into(),
        ),
        (
            vec!["--ops", "fasternet", "--models", "fasternet-t0"],
            "layers 10 with op fasternet".into(),
        ),
        (vec!["--tf32", "on"], "--tf32 on applies to CUDA".into()),
        (vec!["--tf32", "maybe"], "'maybe'".into()),
        (vec!["--threads", "0"], "'0'".into()),
        (vec!["--ops", "conv4"], "'conv4'".into()),
        (vec!["--device", "tpu"], "'tpu'".into()),
        (vec!["--dtype", "f64"], "'f64'".into()),
        (vec!["--pconv-forward", "inplace"], "'inplace'".into()),
        (vec!["--impl", "pytorch"], "'pytorch'".into()),
        (
            vec!["--impl", "torch"],
            "'torch' is measured by scripts/torch_reference.py".into(),
        ),
        (
            vec!["--impl", "native", "--dtype", "f16"],
            "native runs on cpu with dtype f32 only".into(),
        ),
        (vec!["--kernel", "3,3"], "'3' twice".into()),
        (vec!["--measure-time", "soon"], "'soon'".into()),
        (
            vec!["--config", missing.to_str().unwrap()],
            "missing.toml:0: cannot read".into(),
        ),
        (
            vec!["--config", not_toml.to_str().unwrap()],
            "not.toml:".into(),
        ),
        (
            vec!["--config", unknown_key.to_str().unwrap()],
            format!("unknown.toml:{unknown_line}: unknown field `layer_count`"),
        ),
    ];
    for (extra, expect) in cases {
        let out = run(&quick_run_args(j, &extra));
        assert_bad_input(&out, &format!("{extra:?}"), &expect);
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            "earlier results",
            "{extra:?}"
        );
    }
}

#[test]
fn unwritable_json_destinations_are_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = dir.path().join("no-such-dir").join("r.json");
    for (path, expect) in [
        (nowhere.to_str().unwrap(), "does not exist"),
        ("/proc/pconv-bench-test.json", "not writable"),
    ] {
        let out = run(&quick_run_args(path, &[]));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expect) && err.contains(path), "{err}");
        assert!(stdout(&out).is_empty(), "measured anyway: {}", stdout(&out));
    }
}

#[test]
fn cuda_in_a_cpu_build_says_how_to_build_it() {
    if cfg!(feature = "cuda") {
        return;
    }
    let out = run(&["run", "--device", "cuda", "--config", "configs/ci.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--features cuda"), "{}", stderr(&out));
}

#[test]
fn bf16_on_cpu_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("r.json");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &["--dtype", "bf16", "--impl", "candle"],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("dtype bf16 is not supported"),
        "{}",
        stderr(&out)
    );
    assert!(!j.exists());
}

#[test]
fn run_writes_a_complete_results_file_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("ci.json");
    let out = run(&quick_run_args(j.to_str().unwrap(), &[]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("median ms ± IQR") && table.contains("GMAC/s"),
        "{table}"
    );
    let v = read_json(&j);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["tool"]["name"], "pconv-bench");
    assert_eq!(v["complete"], true);
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 24);
    // The answer: one per shape and implementation, PConv against DWConv, GConv and Conv.
    assert!(table.contains("The answer per shape"), "{table}");
    assert!(table.contains("paper's claim, FLOPS(PConv) > FLOPS(DWConv), FLOPS(GConv): "));
    let answers = v["verdicts"]["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 4, "{}", v["verdicts"]);
    assert_eq!(v["verdicts"]["confidence"], 0.95);
    for a in answers {
        let rivals: Vec<&str> = a["versus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["other"]["op"].as_str().unwrap())
            .collect();
        assert_eq!(rivals, ["dwconv", "gconv", "conv"], "{a}");
        assert!(a["other_forward"].is_object(), "both forwards ran: {a}");
        let l = &a["versus"][0]["latency_ratio"];
        // A percentile interval need not hold the point estimate; it must be ordered.
        assert!(l["lo"].as_f64() <= l["hi"].as_f64(), "{l}");
    }
    for r in records {
        let n = r["samples_ms"].as_array().unwrap().len();
        assert!(n >= 10, "{n} samples");
        assert_eq!(r["stats"]["samples"], n);
        assert_eq!(r["threads"], 1);
        assert!(r["verification"]["max_rel_err"].as_f64().unwrap() <= 1e-4);
        // Verified on the kernels and schedule it was timed on, at the timed batch and shape.
        let path = r["kernel_path"].as_str().unwrap();
        assert!(!path.is_empty(), "{r}");
        assert_eq!(r["verification"]["kernel_path"].as_str(), Some(path), "{r}");
        assert_eq!(r["implementation"] == "candle", path == "candle", "{r}");
        assert_eq!(
            r["verification"]["input"].as_str().unwrap(),
            format!("{}x{}", r["batch"], r["shape"].as_str().unwrap())
        );
        let macs = r["cost"]["macs"].as_f64().unwrap();
        let gmacs = r["rates"]["gmac_per_s"].as_f64().unwrap();
        let ms = r["stats"]["median_ms"].as_f64().unwrap();
        assert!((macs / (ms / 1e3) / 1e9 - gmacs).abs() < 1e-9 * gmacs.max(1.0));
    }
}

/// `--precision` is recorded and ends sampling once the median is known that well: a loose
/// target is met as soon as the minimum count and time allow, long before the 5 s cap.
#[test]
fn a_precision_target_is_recorded_and_stops_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("p.json");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &["--measure-time", "5", "--precision", "50%"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    assert_eq!(v["config"]["precision"], 0.5);
    // A point disturbed by the tests running beside this one (two cores) may use the whole
    // cap; the quiet majority stops early, with its interval within the target.
    let records = v["records"].as_array().unwrap();
    let mut stopped = 0;
    for r in records {
        let s = &r["stats"];
        let sampled: f64 = r["samples_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .sum();
        assert!(s["samples"].as_u64().unwrap() >= 20, "{s}");
        if sampled < 4000.0 && s["ci95_rel"].as_f64().unwrap() <= 0.5 {
            stopped += 1;
        }
    }
    assert!(
        stopped * 2 >= records.len(),
        "only {stopped} of {} points stopped before 4 s of a 5 s cap",
        records.len()
    );
    // With --repeat every repetition samples the whole time, and the file says so.
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &["--ops", "pwconv", "--precision", "50%", "--repeat", "2"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(read_json(&j)["config"].get("precision").is_none());
}

#[test]
fn table1_mmacs_column_equals_the_papers_flops() {
    // Measuring is irrelevant here: one layer would do, but MACs are per 10 layers.
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("t1.json");
    let out = run(&[
        "run",
        "--warmup-time",
        "0",
        "--measure-time",
        "0",
        "--quiet",
        "--ops",
        "conv,gconv,dwconv,pconv",
        "--pconv-forward",
        "split_cat",
        "--impl",
        "native",
        "--shapes",
        "96x56x56,192x28x28,384x14x14,768x7x7",
        "--json",
        j.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 16);
    for r in records {
        let paper = &r["paper"];
        let ours = r["cost"]["macs"].as_f64().unwrap() / 1e6;
        let theirs = paper["macs_m"].as_f64().unwrap();
        // The paper prints 2601, 162 and 27.09 / 13.54 / 6.77 / 3.38: truncated, not rounded.
        let digits = if theirs < 100.0 { 100.0 } else { 1.0 };
        assert_eq!(
            (ours * digits).floor() / digits,
            theirs,
            "{} {}",
            r["op"],
            r["shape"]
        );
    }
    let table = stdout(&out);
    for row in ["2601.124", "162.570", "27.095", "13.548", "6.774", "3.387"] {
        assert!(table.contains(row), "{row} missing from\n{table}");
    }
}

/// docs/json.md documents every field the JSON has (each key by name, in the section of
/// its group), and its tables list nothing the JSON lacks.
#[test]
fn the_json_docs_document_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("ci.json");
    let prof = quick_profile(dir.path(), "1");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &[
            "--ops",
            "pconv,gconv,fasternet_block,c2f_faster",
            "--shapes",
            "768x7x7",
            "--profile",
            prof.to_str().unwrap(),
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&j);
    // A `model` file is an ordinary results file with whole-network records.
    let m = dir.path().join("model.json");
    let out = run(&quick_model_args(
        m.to_str().unwrap(),
        &["fasternet-t0", "--resolution", "96", "--impl", "native"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let model = read_json(&m);
    // Training records carry their own fields.
    let t = dir.path().join("train.json");
    let out = run(&quick_run_args(
        t.to_str().unwrap(),
        &[
            "--ops",
            "pconv,dwconv",
            "--pass",
            "infer,train",
            "--shapes",
            "48x7x7",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let train = read_json(&t);
    let mut fields = Vec::new();
    flatten("", &v, &mut fields);
    flatten("", &model, &mut fields);
    flatten("", &train, &mut fields);
    let docs = std::fs::read_to_string("docs/json.md").unwrap();
    let section = |name: &str| -> &str {
        docs.split(&format!("\n## {name}\n"))
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap_or_else(|| panic!("docs/json.md has no '## {name}' section"))
    };
    // Where each group of keys is documented: the longest matching prefix wins.
    let groups = [
        ("", "The file"),
        ("tool.", "tool"),
        ("profile.tool.", "tool"),
        ("device.", "device"),
        ("profile.device.", "device"),
        ("config.", "config"),
        ("records[].", "records"),
        ("records[].stats.", "statistics"),
        ("profile.", "profile"),
        ("profile.ceilings[].", "profile"),
        ("verdicts.", "verdicts"),
    ];
    for f in &fields {
        let (prefix, name) = groups
            .iter()
            .filter(|(p, _)| f.starts_with(p))
            .max_by_key(|(p, _)| p.len())
            .unwrap();
        let rest = &f[prefix.len()..];
        // Nested objects inside a group (cost.macs, verdicts.answers[].versus[].other.op) are
        // documented by their keys within the group's section.
        for key in rest.split('.').map(|k| k.trim_end_matches("[]")) {
            let quoted = format!("`{key}`");
            // A ceiling's statistics are the statistics object.
            let documented = section(name).contains(&quoted)
                || (*name == "profile" && section("statistics").contains(&quoted));
            assert!(
                documented,
                "docs/json.md, section '{name}', does not document {quoted} (of `{f}`)"
            );
        }
    }
    // Every field a records-table row names exists in the records of this run.
    let record = &v["records"][0];
    let all_records: Vec<&serde_json::Value> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .chain(model["records"].as_array().unwrap())
        .chain(train["records"].as_array().unwrap())
        .collect();
    for line in section("records").lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for name in first.split('`').skip(1).step_by(2) {
            assert!(
                all_records.iter().any(|r| r.get(name).is_some()),
                "docs/json.md documents records[].{name}, which no record has: {record}"
            );
        }
    }
    for line in section("The file").lines().filter(|l| l.starts_with("| `")) {
        let name = line.split('`').nth(1).unwrap();
        assert!(
            v.get(name).is_some() || name == "failures",
            "docs/json.md documents `{name}`, which the file lacks"
        );
    }
}

/// Dotted paths of every key; arrays of objects contribute their first element as `name[]`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if !out.contains(&path) {
                    out.push(path.clone());
                }
                flatten(&path, child, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                flatten(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {}
    }
}

#[test]
fn a_training_pass_is_verified_timed_and_recorded_beside_the_forward() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("train.json");
    let out = run(&quick_run_args(
        j.to_str().unwrap(),
        &[
            "--ops",
            "pconv,dwconv",
            "--pconv-forward",
            "slicing,split_cat",
            "--shapes",
            "32x9x9",
            "--impl",
            "native,candle",
            "--pass",
            "infer,train",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Slicing trains nowhere: it is skipped (the run says so unless --quiet).
    let v = read_json(&j);
    assert_eq!(v["config"]["pass"], serde_json::json!(["infer", "train"]));
    let records = v["records"].as_array().unwrap();
    // pconv: 2 forwards infer + split_cat train; dwconv: infer + train; each for 2 impls.
    assert_eq!(records.len(), (3 + 2) * 2);
    let train: Vec<_> = records.iter().filter(|r| r["pass"] == "train").collect();
    assert_eq!(train.len(), 4);
    for r in &train {
        assert_ne!(r["forward"], "slicing");
        let checks = r["verification"]["checks"].to_string();
        assert!(
            checks.contains("input gradient") && checks.contains("weight gradient"),
            "{checks}"
        );
        // Hand counts at 32x9x9, 10 layers: PConv's conv on c_p = 8 channels does
        // 81·9·8·8 MACs a layer, DWConv 81·9·32; the backward twice that.
        let t = &r["cost"]["train"];
        let forward: u64 = if r["op"] == "pconv" {
            81 * 9 * 8 * 8 * 10
        } else {
            81 * 9 * 32 * 10
        };
        assert_eq!(t["forward_macs"], forward);
        assert_eq!(t["backward_macs"], 2 * forward);
        assert_eq!(r["cost"]["macs"], 3 * forward);
        assert!(r["peak_step_bytes"].as_u64().unwrap() > 0);
        assert!(r["paper"].is_null());
        if r["implementation"] == "native" {
            assert!(
                r["kernel_path"].as_str().unwrap().contains("wgrad_"),
                "{}",
                r["kernel_path"]
            );
        }
    }
    // The answer of the training records says what a step costs in forwards.
    let answers = v["verdicts"]["answers"].as_array().unwrap();
    let trained: Vec<_> = answers.iter().filter(|a| a["pass"] == "train").collect();
    assert_eq!(trained.len(), 2, "{answers:?}");
    for a in trained {
        assert!(a["step_vs_forward"]["ratio"]["estimate"].as_f64().unwrap() > 1.0);
        assert_eq!(a["versus"][0]["other"]["op"], "dwconv");
    }
    assert!(
        stdout(&out).contains("training step takes"),
        "{}",
        stdout(&out)
    );
}
