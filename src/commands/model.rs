//! `pconv-bench model`: whole FasterNet classifiers through the same verify-then-time path as
//! every operator. The command builds a suite of `fasternet` points (one per model and
//! implementation, on a 3xRxR image, one forward per run) and hands it to the common engine:
//! the file it writes is a results file like `run`'s (`"mode": "model"`), which `report`,
//! `compare` and `merge` read.

use super::measure::{self, Job, SuiteFrom};
use crate::cli::ModelArgs;
use crate::config::{DeviceSpec, Suite};
use crate::error::{Error, Result};
use crate::ops::{block, fasternet, Act, Dtype, OpKind, PConvForward};
use crate::record::Mode;

/// The suite `model` runs: its networks at one resolution, one forward per timed run.
pub fn suite(args: &ModelArgs) -> Suite {
    let r = args.resolution;
    let mut acts: Vec<Act> = Vec::new();
    for m in &args.models {
        if !acts.contains(&m.arch().act) {
            acts.push(m.arch().act);
        }
    }
    Suite {
        name: "models".into(),
        device: args.device,
        ops: vec![OpKind::FasterNet],
        shapes: vec![fasternet::image(r)],
        // The settings of the networks' own blocks, for the record.
        kernel: vec![3],
        groups: vec![1],
        n_div: vec![4],
        pconv_forward: vec![PConvForward::SplitCat],
        expansion: vec![block::DEFAULT_EXPANSION],
        act: acts,
        bottlenecks: vec![1],
        models: args.models.clone(),
        batch: vec![args.batch],
        threads: vec![args.threads],
        layers: 1,
        dtype: vec![Dtype::F32],
        implementations: args.implementations.clone(),
        pass: vec![crate::ops::Pass::Infer],
        warmup_time_s: args.warmup_time,
        measure_time_s: args.measure_time,
        precision: None,
        seed: args.seed,
        tf32: false,
        oversubscribe: args.oversubscribe,
    }
}

pub fn execute(args: &ModelArgs, argv: Vec<String>) -> Result<i32> {
    // The resolution is named in its own words before the suite's checks see the shape.
    for m in &args.models {
        fasternet::Model::new(m.arch(), args.resolution)?;
    }
    if args.device != DeviceSpec::Cpu {
        crate::device::open(args.device)?; // says how to build for CUDA when it is missing
        return Err(Error::Unsupported(format!(
            "model runs on --device cpu in this version, not '{}'",
            args.device
        )));
    }
    measure::execute(Job {
        suite: SuiteFrom::Built {
            suite: Box::new(suite(args)),
            source: "pconv-bench model (command line)".into(),
        },
        args: &args.run,
        mode: Mode::Model,
        resume: None,
        yes: true,
        argv,
    })
}
