//! Property tests: no input may make the tool panic. Random and mutated config files,
//! command-line values, and results files fed to `report` and `compare` each end in a value
//! or an error, never a panic.

use clap::Parser;
use proptest::prelude::*;
use serde_json::Value;

use pconv_bench::cli::{Cli, Command};
use pconv_bench::compare::{self, Options};
use pconv_bench::config;
use pconv_bench::record::RunResult;
use pconv_bench::report::{self, json, plot};

const TABLE1: &str = include_str!("../configs/table1.toml");
const BLOCKS: &str = include_str!("../results/cpu-xeon-2c-1t-blocks.json");

/// Replaces the characters at `edits` (positions modulo the length) of `src`.
fn mutate(src: &str, edits: &[(usize, char)]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for &(at, c) in edits {
        let i = at % chars.len();
        chars[i] = c;
    }
    chars.into_iter().collect()
}

/// Every JSON pointer of `v`, leaves and containers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn replacement(kind: u8) -> Value {
    match kind % 12 {
        0 => Value::Null,
        1 => Value::from(true),
        2 => Value::from(-1),
        3 => Value::from(0),
        4 => Value::from(1e308),
        5 => Value::from(u64::MAX),
        6 => Value::from(""),
        7 => Value::from("96x0x56"),
        8 => Value::Array(vec![]),
        9 => serde_json::json!({}),
        10 => Value::from(-0.5),
        _ => Value::from("conv"),
    }
}

/// A small real results file: the blocks run with every record's samples cut to 12.
fn small_results() -> Value {
    let mut v: Value = serde_json::from_str(BLOCKS).unwrap();
    let recs = v["records"].as_array_mut().unwrap();
    recs.truncate(6);
    for r in recs.iter_mut() {
        let all = r["samples_ms"].as_array().unwrap();
        assert!(all.len() >= 12, "the fixture has 12 samples per record");
        let s: Vec<Value> = all[..12].to_vec();
        r["samples_ms"] = Value::Array(s);
        r["repetitions"] = serde_json::json!([4, 4, 4]);
    }
    v
}

fn read(v: &Value, dir: &std::path::Path, name: &str) -> pconv_bench::error::Result<RunResult> {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    json::read(&p)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn config_parser_never_panics_on_random_text(src in "\\PC{0,300}") {
        let _ = config::parse("random.toml", &src);
    }

    #[test]
    fn config_parser_never_panics_on_mutated_suites(
        edits in prop::collection::vec((any::<usize>(), any::<char>()), 1..6)
    ) {
        let _ = config::parse("mutated.toml", &mutate(TABLE1, &edits));
    }

    /// Any value of the list, shape, count and time flags: parsed and validated into a
    /// suite, or refused.
    #[test]
    fn command_line_values_never_panic(
        flag in prop::sample::select(vec![
            "--shapes", "--kernel", "--batch", "--threads", "--warmup-time", "--measure-time",
            "--n-div", "--groups", "--seed", "--layers", "--repeat", "--tf32", "--ops",
            "--expansion", "--bottlenecks", "--dtype", "--impl", "--act", "--pconv-forward",
        ]),
        value in "\\PC{0,24}|[0-9x,.msu% -]{0,24}",
    ) {
        if let Ok(cli) = Cli::try_parse_from(["pconv-bench", "run", flag, &value]) {
            if let Command::Run(args) = cli.command {
                let loaded = config::load(None).unwrap();
                if let Ok(suite) = loaded.suite.with_overrides(args.measure.suite.overrides.clone()) {
                    for p in pconv_bench::plan::expand(&suite).iter().take(64) {
                        let _ = p.spec.validate();
                    }
                }
            }
        }
        let _ = Cli::try_parse_from(["pconv-bench", "compare", "a", "b", "--threshold", &value]);
        let _ = Cli::try_parse_from(["pconv-bench", "compare", "a", "b", "--confidence", &value]);
        let _ = Cli::try_parse_from(["pconv-bench", "model", "fasternet-t0", "--resolution", &value]);
    }

    /// A results file with one value replaced: read and refused, or rendered in every
    /// format and compared against the original.
    #[test]
    fn report_and_compare_never_panic_on_mutated_results(
        pick in any::<prop::sample::Index>(),
        kind in any::<u8>(),
        delete in any::<bool>(),
    ) {
        let base = small_results();
        let mut ptrs = Vec::new();
        pointers(&base, String::new(), &mut ptrs);
        let at = pick.get(&ptrs).clone();
        let mut v = base.clone();
        if at.is_empty() {
            v = replacement(kind);
        } else {
            let (parent, key) = at.rsplit_once('/').unwrap();
            match v.pointer_mut(parent) {
                Some(Value::Object(m)) if delete => { m.remove(key); }
                Some(Value::Array(a)) if delete => {
                    if let Ok(i) = key.parse::<usize>() { if i < a.len() { a.remove(i); } }
                }
                _ => { *v.pointer_mut(&at).unwrap() = replacement(kind); }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let original = read(&base, dir.path(), "base.json").unwrap();
        if let Ok(r) = read(&v, dir.path(), "mutated.json") {
            for f in [report::Format::Table, report::Format::Markdown, report::Format::Csv, report::Format::Json] {
                let _ = f.exporter().export(&r);
            }
            let _ = plot::render_svg(&r);
            let _ = plot::render_roofline_svg(&r);
            let opts = Options {
                threshold: 0.1,
                confidence: 0.99,
                allow_different_device: true,
                allow_missing: false,
                fail_on_inconclusive: false,
            };
            let b = dir.path().join("base.json");
            let m = dir.path().join("mutated.json");
            let _ = compare::compare(&b, &original, &m, &r, opts);
            let _ = compare::compare(&m, &r, &b, &original, opts);
            let _ = pconv_bench::merge::merge(vec![(b.clone(), original.clone()), (m.clone(), r)]);
        }
    }
}
