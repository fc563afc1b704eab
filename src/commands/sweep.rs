//! `pconv-bench sweep`: the cartesian product of n_div, kernel, groups, shapes (and the rest)
//! through the same engine as `run`, resumable, with figures.

use super::measure::{self, Job, SuiteFrom};
use crate::cli::SweepArgs;
use crate::config;
use crate::error::Result;
use crate::record::Mode;

pub fn execute(args: &SweepArgs, argv: Vec<String>) -> Result<i32> {
    measure::execute(Job {
        args: &args.measure.run,
        mode: Mode::Sweep,
        suite: SuiteFrom::Config {
            args: &args.measure.suite,
            builtin: config::SWEEP,
        },
        resume: args.resume.as_deref(),
        yes: args.yes,
        argv,
    })
}
