//! `pconv-bench compare`: baseline vs current, with a regression verdict as the exit code.

use crate::cli::{CompareArgs, CompareFormat};
use crate::compare::{self, Options};
use crate::error::{exit, Result};
use crate::report::{comparison, json};

pub fn execute(args: &CompareArgs) -> Result<i32> {
    let base = json::read(&args.baseline)?;
    let cur = json::read(&args.current)?;
    let opts = Options {
        threshold: args.threshold,
        confidence: args.confidence,
        allow_different_device: args.allow_different_device,
        allow_missing: args.allow_missing,
        fail_on_inconclusive: args.fail_on_inconclusive,
    };
    let c = compare::compare(&args.baseline, &base, &args.current, &cur, opts)?;
    print!(
        "{}",
        match args.format {
            CompareFormat::Table => comparison::table(&c),
            CompareFormat::Markdown => comparison::markdown(&c),
            CompareFormat::Json => comparison::json(&c),
        }
    );
    Ok(if c.passed() { 0 } else { exit::REGRESSION })
}
