//! Helpers for end-to-end tests that run the real binary.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pconv-bench");

pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary starts")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `command --quiet` with `defaults`, except those whose flag `extra` gives, then `extra`.
pub fn args_with_defaults<'a>(
    command: &'a str,
    defaults: &[(&'a str, &'a str)],
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![command, "--quiet"];
    for &(flag, value) in defaults {
        if !extra.contains(&flag) {
            v.extend([flag, value]);
        }
    }
    v.extend_from_slice(extra);
    v
}

/// A tiny, fast `run` for tests: the CI suite with minimal budgets. A flag in `extra`
/// replaces the default one of the same name.
pub fn quick_run_args<'a>(json: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--config", "configs/ci.toml"),
        ("--warmup-time", "0"),
        ("--measure-time", "0"),
        ("--json", json),
    ];
    args_with_defaults("run", &defaults, extra)
}

/// A fast `model` for tests: minimal budgets. A flag in `extra` replaces the default one.
pub fn quick_model_args<'a>(json: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--warmup-time", "0"),
        ("--measure-time", "0"),
        ("--json", json),
    ];
    args_with_defaults("model", &defaults, extra)
}

/// A quick device profile (small GEMM and buffers) for the given thread counts, in `dir`.
pub fn quick_profile(dir: &Path, threads: &str) -> PathBuf {
    let p = dir.join("profile.json");
    let out = run(&[
        "calibrate",
        "--threads",
        threads,
        "--gemm-size",
        "64",
        "--buffer-mib",
        "4",
        "--warmup-time",
        "0",
        "--measure-time",
        "0",
        "--quiet",
        "--json",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("copy bandwidth"), "{}", stdout(&out));
    p
}

/// Bad input: exit code 2 and exactly one line on stderr that contains `expect`.
pub fn assert_bad_input(out: &Output, what: &str, expect: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err}"
    );
    assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("results file")).expect("valid JSON")
}

/// Writes a copy of `src` with every sample (and every time in its stats) multiplied by
/// `factor` and `edit` applied.
pub fn edited(src: &Path, name: &str, factor: f64, edit: impl Fn(&mut Value)) -> PathBuf {
    let mut v = read_json(src);
    for r in v["records"].as_array_mut().unwrap() {
        for s in r["samples_ms"].as_array_mut().unwrap() {
            *s = Value::from(s.as_f64().unwrap() * factor);
        }
        for k in [
            "median_ms",
            "mean_ms",
            "min_ms",
            "max_ms",
            "p25_ms",
            "p75_ms",
        ] {
            if let Some(t) = r["stats"][k].as_f64() {
                r["stats"][k] = Value::from(t * factor);
            }
        }
    }
    edit(&mut v);
    let p = src.with_file_name(name);
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
    p
}

/// A copy of a real run whose samples are replaced by a tight, known spread (±1% around
/// each record's median), so verdicts on scaled copies test the gate, not the machine's noise.
pub fn steady(src: &Path) -> PathBuf {
    edited(src, "steady.json", 1.0, |v| {
        for r in v["records"].as_array_mut().unwrap() {
            let m = r["stats"]["median_ms"].as_f64().unwrap();
            let samples: Vec<Value> = (0..30)
                .map(|i| Value::from(m * (0.99 + 0.02 * f64::from(i) / 29.0)))
                .collect();
            r["repetitions"] = Value::from(vec![30]);
            r["samples_ms"] = Value::Array(samples);
        }
    })
}
