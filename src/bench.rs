//! Runs points: verify each one against the reference, then time it. Produces records; never
//! formats them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use candle_core::Device;

use crate::config::PaperReference;
use crate::error::{CandleContext, Error, Result};
use crate::measure::{self, Budget, Measurement, Summary};
use crate::ops::{self, FeatureMap, OpKind};
use crate::plan::Point;
use crate::record::{self, CostRecord, Failure, Rates, Record, Warmup};
use crate::verify::{self, Verification};

/// What every point of a run shares.
pub struct Context<'a> {
    pub device: &'a Device,
    /// `cpu` or `cuda:N`, written into each record.
    pub device_label: String,
    pub references: &'a [PaperReference],
    pub layers: usize,
    pub budget: Budget,
    pub seed: u64,
    /// Extra time added to every timed run: a test hook for the regression gate, never set
    /// in real measurements.
    pub inject_delay: Option<Duration>,
}

/// The records and failures of a run, and whether it ran to the end.
#[derive(Debug, Default)]
pub struct Outcome {
    pub records: Vec<Record>,
    pub failures: Vec<Failure>,
    pub complete: bool,
}

fn failure(point: &Point, error: String) -> Failure {
    Failure {
        op: point.spec.kind,
        variant: point.spec.variant(),
        shape: point.spec.map,
        implementation: point.implementation,
        dtype: point.dtype,
        error,
    }
}

/// Times one point on the current thread pool (the stack and input are built first,
/// outside the timed region).
fn time_point(ctx: &Context, point: &Point) -> Result<(Measurement, CostRecord)> {
    let spec = &point.spec;
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
        || {
            let y = stack.forward(&x).map(drop);
            if let Some(d) = ctx.inject_delay {
                std::thread::sleep(d);
            }
            y
        },
        || ctx.device.synchronize(),
    )
    .context(|| format!("timing {} {} at {}", spec.kind, spec.variant(), spec.map))?;
    let cost = CostRecord::new(spec, stack.copies(), point.batch, ctx.layers, point.dtype);
    Ok((m, cost))
}

/// A record from a point's verification and its (possibly pooled) measurements.
fn record(ctx: &Context, point: &Point, slot: Slot) -> Record {
    let Slot {
        verification,
        cost,
        pooled: m,
        repetitions,
    } = slot;
    let spec = &point.spec;
    let stats = Summary::from_samples(&m.samples_ms);
    let rates = Rates::new(&cost, stats.median_ms, point.batch);
    Record {
        op: spec.kind,
        variant: spec.variant(),
        kernel: spec.kernel,
        groups: spec.groups,
        n_div: spec.n_div,
        partial_channels: matches!(
            spec.kind,
            OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster
        )
        .then(|| spec.conv_channels()),
        forward: spec.forward,
        expansion: spec.expansion,
        act: spec.act,
        bottlenecks: spec.bottlenecks,
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
        roofline: None,
        repetitions,
    }
}

/// A point verified and measured so far.
struct Slot {
    verification: Verification,
    cost: CostRecord,
    pooled: Measurement,
    repetitions: Vec<usize>,
}

/// Runs `points` `repeat` times, interleaved (the whole list, then again), pooling each
/// point's samples; each thread count runs in its own pool. Each point is verified once,
/// before its first timing. `on_start` is told before each point; `stop` (Ctrl-C) ends
/// the run after the point in flight, with `complete: false` and the finished points kept.
pub fn run(
    ctx: &Context,
    points: &[Point],
    repeat: usize,
    on_start: &mut dyn FnMut(usize, &Point),
    stop: &AtomicBool,
) -> Result<Outcome> {
    let mut slots: Vec<Option<Slot>> = (0..points.len()).map(|_| None).collect();
    let mut failures = Vec::new();
    let mut failed = vec![false; points.len()];
    let mut pool: Option<(usize, rayon::ThreadPool)> = None;
    let mut complete = true;
    'reps: for rep in 0..repeat {
        for (i, point) in points.iter().enumerate() {
            if stop.load(Ordering::SeqCst) {
                complete = false;
                break 'reps;
            }
            if failed[i] {
                continue;
            }
            if pool.as_ref().is_none_or(|(t, _)| *t != point.threads) {
                pool = Some((point.threads, crate::device::pin_threads(point.threads)?));
            }
            on_start(rep * points.len() + i, point);
            let (_, p) = pool.as_ref().expect("pool set above");
            if let Some(slot) = &mut slots[i] {
                let (m, _) = p.install(|| time_point(ctx, point))?;
                slot.pooled.warmup_runs += m.warmup_runs;
                slot.pooled.warmup_time_s += m.warmup_time_s;
                slot.repetitions.push(m.samples_ms.len());
                slot.pooled.samples_ms.extend(m.samples_ms);
                continue;
            }
            let verified = p.install(|| {
                verify::verify(
                    &point.spec,
                    point.implementation,
                    ctx.device,
                    point.dtype,
                    ctx.seed,
                )
            });
            let verification = match verified {
                Ok(v) => v,
                Err(Error::Verification(e)) => {
                    failures.push(failure(point, e));
                    failed[i] = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (pooled, cost) = p.install(|| time_point(ctx, point))?;
            slots[i] = Some(Slot {
                verification,
                cost,
                repetitions: vec![pooled.samples_ms.len()],
                pooled,
            });
        }
    }
    // An interrupted repetition keeps what it pooled: every kept sample is a real run.
    let records = points
        .iter()
        .zip(slots)
        .filter_map(|(p, s)| s.map(|s| record(ctx, p, s)))
        .collect();
    Ok(Outcome {
        records,
        failures,
        complete,
    })
}
