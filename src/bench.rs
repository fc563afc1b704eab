//! Runs points: verify each one against the reference, then time it. Produces records; never
//! formats them.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Device;

use crate::config::PaperReference;
use crate::error::{CandleContext, Error, Result};
use crate::measure::{self, Budget, Summary};
use crate::ops::{self, FeatureMap, OpKind};
use crate::plan::Point;
use crate::record::{self, CostRecord, Failure, Rates, Record, Warmup};
use crate::verify;

/// What every point of a run shares.
pub struct Context<'a> {
    pub device: &'a Device,
    /// `cpu` or `cuda:N`, written into each record.
    pub device_label: String,
    pub references: &'a [PaperReference],
    pub layers: usize,
    pub budget: Budget,
    pub seed: u64,
}

/// The records and failures of a run, and whether it ran to the end.
#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
    pub complete: bool,
}

/// Verifies and times one point on the current thread pool.
pub fn measure_point(ctx: &Context, point: &Point) -> Result<std::result::Result<Record, Failure>> {
    let spec = &point.spec;
    let verification = match verify::verify(
        spec,
        point.implementation,
        ctx.device,
        point.dtype,
        ctx.seed,
    ) {
        Ok(v) => v,
        Err(Error::Verification(error)) => {
            return Ok(Err(Failure {
                op: spec.kind,
                variant: spec.variant(),
                shape: spec.map,
                implementation: point.implementation,
                dtype: point.dtype,
                error,
            }))
        }
        Err(e) => return Err(e),
    };

    let weights = ops::random_weights(spec, ctx.layers, ctx.seed);
    let stack = ops::build(
        spec,
        point.implementation,
        &weights,
        ctx.device,
        point.dtype,
    )?;
    let FeatureMap { c, h, w } = spec.map;
    let shape = [point.batch, c, h, w];
    let input = ops::uniform(
        shape.iter().product(),
        1.0,
        &mut ops::seeded_rng(ctx.seed ^ 0x1a7e),
    );
    let x = ops::tensor_from(input, &shape, ctx.device, point.dtype)?;

    let m = measure::measure(
        &ctx.budget,
        || stack.forward(&x).map(drop),
        || ctx.device.synchronize(),
    )
    .context(|| format!("timing {} {} at {}", spec.kind, spec.variant(), spec.map))?;

    let stats = Summary::from_samples(&m.samples_ms);
    let cost = CostRecord::new(spec, stack.copies(), point.batch, ctx.layers, point.dtype);
    let rates = Rates::new(&cost, stats.median_ms, point.batch);
    Ok(Ok(Record {
        op: spec.kind,
        variant: spec.variant(),
        kernel: spec.kernel,
        groups: spec.groups,
        n_div: spec.n_div,
        partial_channels: (spec.kind == OpKind::PConv).then(|| spec.conv_channels()),
        forward: spec.forward,
        shape: spec.map,
        batch: point.batch,
        layers: ctx.layers,
        implementation: point.implementation,
        dtype: point.dtype,
        device: ctx.device_label.clone(),
        threads: point.threads,
        cost,
        verification,
        warmup: Warmup {
            runs: m.warmup_runs,
            time_s: m.warmup_time_s,
        },
        stats,
        rates,
        paper: record::paper_row(ctx.references, spec, ctx.layers).cloned(),
        samples_ms: m.samples_ms,
    }))
}

/// Runs `points` in order, each thread count in its own pool. `on_start` is told before each
/// point; `stop` (Ctrl-C) ends the run after the point in flight, with `complete: false`.
pub fn run(
    ctx: &Context,
    points: &[Point],
    on_start: &mut dyn FnMut(usize, &Point),
    stop: &AtomicBool,
) -> Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut pool: Option<(usize, rayon::ThreadPool)> = None;
    for (i, point) in points.iter().enumerate() {
        if stop.load(Ordering::SeqCst) {
            return Ok(outcome);
        }
        if pool.as_ref().is_none_or(|(t, _)| *t != point.threads) {
            pool = Some((point.threads, crate::device::pin_threads(point.threads)?));
        }
        on_start(i, point);
        let (_, p) = pool.as_ref().expect("pool set above");
        match p.install(|| measure_point(ctx, point))? {
            Ok(r) => outcome.records.push(r),
            Err(f) => outcome.failures.push(f),
        }
    }
    outcome.complete = true;
    Ok(outcome)
}
