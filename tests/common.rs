//! Helpers for end-to-end tests that run the real binary.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::Path;
use std::process::{Command, Output};

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

/// A tiny, fast `run` for tests: the CI suite with minimal budgets. A flag in `extra`
/// replaces the default one of the same name.
pub fn quick_run_args<'a>(json: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--config", "configs/ci.toml"),
        ("--warmup-time", "0"),
        ("--measure-time", "0"),
        ("--json", json),
    ];
    let mut v = vec!["run", "--quiet"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            v.extend([flag, value]);
        }
    }
    v.extend_from_slice(extra);
    v
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("results file")).expect("valid JSON")
}
