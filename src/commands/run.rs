//! `pconv-bench run`: the operator suite, verified then timed, as a table and JSON.

use crate::bench::{self, Context};
use crate::cli::RunArgs;
use crate::config;
use crate::error::{exit, Result};
use crate::measure::Budget;
use crate::metadata::{self, ToolInfo};
use crate::plan;
use crate::progress;
use crate::record::{RunResult, SCHEMA_VERSION};
use crate::report::{self, json, table};

pub fn execute(args: &RunArgs, argv: Vec<String>) -> Result<i32> {
    let loaded = config::load(args.suite.config.as_deref())?;
    let suite = loaded
        .suite
        .clone()
        .with_overrides(args.suite.overrides())?;
    let points = plan::expand(&suite);
    for p in &points {
        p.spec.validate()?;
    }
    if let Some(path) = &args.json {
        report::check_writable(path, "--json")?;
    }
    let device = crate::device::open(suite.device)?;
    for &implementation in &suite.implementations {
        for &dtype in &suite.dtype {
            crate::device::check_supported(&device, implementation, dtype)?;
        }
    }

    crate::device::steady_allocator();
    let stop = super::interrupt_flag();
    let bar = progress::bar(points.len() * args.repeat, args.quiet);
    let ctx = Context {
        device: &device,
        device_label: suite.device.to_string(),
        references: &loaded.references,
        layers: suite.layers,
        budget: Budget::new(suite.warmup_time_s, suite.measure_time_s),
        seed: suite.seed,
        inject_delay: args.inject_delay_us.map(std::time::Duration::from_micros),
    };
    let outcome = bench::run(
        &ctx,
        &points,
        args.repeat,
        &mut |i, p| {
            bar.set_position(i as u64);
            bar.set_message(progress::label(p));
        },
        &stop,
    );
    bar.finish_and_clear();
    let outcome = outcome?;

    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo::current(),
        created_at: metadata::now_rfc3339(),
        command: argv,
        complete: outcome.complete,
        device: crate::device::info(suite.device),
        config: suite,
        config_source: loaded.source,
        records: outcome.records,
        failures: outcome.failures,
    };
    print!("{}", table::render(&result));
    if let Some(path) = &args.json {
        json::write(path, &result)?;
        if !args.quiet {
            eprintln!(
                "wrote {} records to {}",
                result.records.len(),
                path.display()
            );
        }
    }
    Ok(if !result.complete {
        exit::INTERRUPTED
    } else if !result.failures.is_empty() {
        exit::VERIFICATION
    } else {
        0
    })
}
