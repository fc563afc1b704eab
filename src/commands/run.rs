//! `pconv-bench run`: the operator suite (default: the paper's Table 1), verified then timed.

use super::measure::{self, Job, SuiteFrom};
use crate::cli::RunArgs;
use crate::config;
use crate::error::Result;
use crate::record::Mode;

pub fn execute(args: &RunArgs, argv: Vec<String>) -> Result<i32> {
    measure::execute(Job {
        args: &args.measure.run,
        mode: Mode::Run,
        suite: SuiteFrom::Config {
            args: &args.measure.suite,
            // The paper's protocols: batch 1 on CPU, batch 32 on the GPU.
            builtin: match args.measure.suite.overrides.device {
                Some(config::DeviceSpec::Cuda(_)) => config::TABLE1_CUDA,
                _ => config::TABLE1,
            },
        },
        resume: None,
        yes: true,
        argv,
    })
}
