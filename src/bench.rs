//! Runs points: verify each one against the reference, then time it. Produces records; never
//! formats them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use candle_core::Device;

use crate::config::PaperReference;
use crate::error::{CandleContext, Error, Result};
use crate::measure::{self, Budget, Measurement, Summary};
use crate::ops::{self, kernel_path, Copies, FeatureMap, OpKind, Pass};
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
    /// Operators whose verified output gets a NaN written into it: a test hook for the
    /// verification failure path, never set in real measurements.
    pub inject_nan_into: Option<OpKind>,
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
        pass: point.pass,
        error,
    }
}

/// Times one point on the current thread pool (the stack and input are built first,
/// outside the timed region). A training point's step runs once more, untimed, first, with
/// its heap counted (on the CPU).
fn time_point(ctx: &Context, point: &Point) -> Result<Timed> {
    let spec = &point.spec;
    let weights = ops::random_weights(spec, ctx.layers, ctx.seed);
    let FeatureMap { c, h, w } = spec.map;
    let shape = [point.batch, c, h, w];
    let input = ops::timed_input(spec, point.batch, ctx.seed);
    let x = ops::tensor_from(input, &shape, ctx.device, point.dtype)?;
    type Run<'a> = Box<dyn Fn() -> candle_core::Result<()> + 'a>;
    let (copies, run, peak_step_bytes): (Copies, Run, Option<u64>) = match point.pass {
        Pass::Infer => {
            let stack = ops::build(
                spec,
                point.implementation,
                &weights,
                ctx.device,
                point.dtype,
            )?;
            let copies = stack.copies().clone();
            (copies, Box::new(move || stack.forward(&x).map(drop)), None)
        }
        Pass::Train => {
            let step = ops::build_train(
                spec,
                point.implementation,
                &weights,
                ctx.device,
                point.dtype,
            )?;
            let x = step.input(x)?;
            let copies = step.copies().clone();
            let run = move || step.step(&x, None).map(drop);
            let peak = if ctx.device.is_cpu() {
                let (r, peak) = crate::heap::peak_during(&run);
                r.context(|| format!("a training step of {} {}", spec.kind, spec.variant()))?;
                Some(peak)
            } else {
                None
            };
            (copies, Box::new(run), peak)
        }
    };
    let (m, kernel_path) = kernel_path::traced(|| {
        measure::measure(
            &ctx.budget,
            || {
                let y = run();
                if let Some(d) = ctx.inject_delay {
                    std::thread::sleep(d);
                }
                y
            },
            || ctx.device.synchronize(),
        )
    });
    let m = m.context(|| format!("timing {} {} at {}", spec.kind, spec.variant(), spec.map))?;
    let cost = CostRecord::new(
        spec,
        &copies,
        (point.batch, ctx.layers),
        point.dtype,
        point.pass,
    );
    Ok(Timed {
        measurement: m,
        cost,
        kernel_path,
        peak_step_bytes,
    })
}

/// One timing of a point: its samples, its cost, and the kernels its runs took.
struct Timed {
    measurement: Measurement,
    cost: CostRecord,
    kernel_path: String,
    peak_step_bytes: Option<u64>,
}

/// Refuses a timing whose kernels are not the ones verification checked.
fn same_path(
    point: &Point,
    verified: &Verification,
    timed: &str,
) -> std::result::Result<(), String> {
    if verified.kernel_path == timed {
        return Ok(());
    }
    Err(format!(
        "{} {} at {}: timed on kernel path '{timed}' but verified on '{}' ({}); the timing does not describe verified code",
        point.spec.kind,
        point.spec.variant(),
        point.spec.map,
        verified.kernel_path,
        verified.input
    ))
}

/// A record from a point's verification and its (possibly pooled) measurements.
fn record(ctx: &Context, point: &Point, slot: Slot) -> Record {
    let Slot {
        verification,
        cost,
        kernel_path,
        pooled: m,
        repetitions,
        peak_step_bytes,
    } = slot;
    let spec = &point.spec;
    let stats = Summary::from_samples(&m.samples_ms);
    let rates = Rates::new(&cost, stats.median_ms, point.batch);
    Record {
        spec: spec.clone(),
        variant: spec.variant(),
        partial_channels: matches!(
            spec.kind,
            OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster
        )
        .then(|| spec.conv_channels()),
        network: crate::ops::fasternet::info(spec),
        batch: point.batch,
        layers: ctx.layers,
        implementation: point.implementation,
        dtype: point.dtype,
        device: ctx.device_label.clone(),
        threads: point.threads,
        pass: point.pass,
        cost,
        kernel_path,
        verification,
        warmup: Warmup {
            runs: m.warmup_runs,
            time_s: m.warmup_time_s,
        },
        stats,
        rates,
        // The paper's rows time the forward.
        paper: (point.pass == Pass::Infer)
            .then(|| record::paper_row(ctx.references, spec, ctx.layers).cloned())
            .flatten(),
        peak_step_bytes,
        samples_ms: m.samples_ms,
        roofline: None,
        repetitions,
    }
}

/// A point verified and measured so far.
struct Slot {
    verification: Verification,
    cost: CostRecord,
    kernel_path: String,
    pooled: Measurement,
    repetitions: Vec<usize>,
    peak_step_bytes: Option<u64>,
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
                let timed = p.install(|| time_point(ctx, point))?;
                if let Err(e) = same_path(point, &slot.verification, &timed.kernel_path) {
                    failures.push(failure(point, e));
                    failed[i] = true;
                    slots[i] = None;
                    continue;
                }
                let m = timed.measurement;
                slot.pooled.warmup_runs += m.warmup_runs;
                slot.pooled.warmup_time_s += m.warmup_time_s;
                slot.repetitions.push(m.samples_ms.len());
                slot.pooled.samples_ms.extend(m.samples_ms);
                continue;
            }
            let verified = p.install(|| {
                let verify = match point.pass {
                    Pass::Infer => verify::verify,
                    Pass::Train => verify::verify_train,
                };
                verify(
                    &point.spec,
                    point.implementation,
                    ctx.device,
                    point.dtype,
                    (point.batch, ctx.seed),
                    ctx.inject_nan_into == Some(point.spec.kind),
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
            let timed = p.install(|| time_point(ctx, point))?;
            if let Err(e) = same_path(point, &verification, &timed.kernel_path) {
                failures.push(failure(point, e));
                failed[i] = true;
                continue;
            }
            slots[i] = Some(Slot {
                verification,
                cost: timed.cost,
                kernel_path: timed.kernel_path,
                repetitions: vec![timed.measurement.samples_ms.len()],
                pooled: timed.measurement,
                peak_step_bytes: timed.peak_step_bytes,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Dtype, Implementation, OpSpec};

    fn verified(path: &str) -> Verification {
        Verification {
            input: "2x96x56x56".into(),
            kernel_path: path.into(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            tolerance: 1e-4,
            checks: vec![],
        }
    }

    #[test]
    fn a_timing_on_another_kernel_path_than_verified_is_refused() {
        let point = Point {
            spec: OpSpec::plain(OpKind::Conv, 3, "96x56x56".parse().unwrap()),
            implementation: Implementation::Native,
            dtype: Dtype::F32,
            batch: 1,
            threads: 1,
            pass: crate::ops::Pass::Infer,
        };
        assert!(same_path(&point, &verified("im2col_gemm"), "im2col_gemm").is_ok());
        let err = same_path(&point, &verified("direct"), "im2col_gemm").unwrap_err();
        assert!(
            err.contains("'im2col_gemm'") && err.contains("'direct'"),
            "{err}"
        );
    }

    /// The schedule is part of the path: Conv 770x7x7 (channels no register-blocked tile
    /// divides, so im2col + GEMM) on 2 threads splits one image into row bands but gives
    /// each of two images a whole band, so a verification at batch 2 would not have run the
    /// timed schedule of batch 1, and the labels say so.
    #[test]
    fn the_kernel_path_names_the_schedule_that_depends_on_batch_and_threads() {
        let spec = OpSpec::plain(OpKind::Conv, 3, "770x7x7".parse().unwrap());
        let weights = ops::random_weights(&spec, 1, 3);
        let stack = ops::build(
            &spec,
            Implementation::Native,
            &weights,
            &Device::Cpu,
            Dtype::F32,
        )
        .unwrap();
        let path_at = |n: usize, threads: usize| {
            let x = ops::tensor_from(
                vec![0.5; n * 770 * 49],
                &[n, 770, 7, 7],
                &Device::Cpu,
                Dtype::F32,
            )
            .unwrap();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| kernel_path::traced(|| stack.forward(&x).map(drop)).1)
        };
        let (one, two) = (path_at(1, 2), path_at(2, 2));
        assert!(one.starts_with("im2col_gemm[rows="), "{one}");
        assert_ne!(
            one, two,
            "batch 1 and 2 on 2 threads run different schedules"
        );
        assert_ne!(
            path_at(1, 1),
            one,
            "1 and 2 threads run different schedules"
        );
    }

    /// Every native point of the shipped suites runs native kernels (a candle fallback would
    /// time candle under the native label), and every candle point runs candle.
    #[test]
    fn shipped_suites_run_the_implementation_they_name() {
        let suites = [
            include_str!("../configs/table1.toml"),
            include_str!("../configs/sweep.toml"),
            include_str!("../configs/ci.toml"),
            include_str!("../configs/blocks.toml"),
        ];
        let mut checked = 0;
        for (i, src) in suites.iter().enumerate() {
            let suite = crate::config::parse(&format!("suite {i}"), src)
                .unwrap()
                .suite;
            for p in crate::plan::expand(&suite) {
                let weights = ops::random_weights(&p.spec, 1, 3);
                let stack =
                    ops::build(&p.spec, p.implementation, &weights, &Device::Cpu, p.dtype).unwrap();
                let FeatureMap { c, h, w } = p.spec.map;
                let x =
                    ops::tensor_from(vec![0.5; c * h * w], &[1, c, h, w], &Device::Cpu, p.dtype)
                        .unwrap();
                let path = kernel_path::traced(|| stack.forward(&x).map(drop)).1;
                assert_eq!(
                    p.implementation == Implementation::Candle,
                    path == kernel_path::CANDLE,
                    "{p:?}: {path}"
                );
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked} points");
    }

    /// Verification runs on the pool and at the batch the point is timed at, so a
    /// multi-threaded point whose schedule depends on both passes `same_path`.
    #[test]
    fn a_two_thread_point_is_verified_on_its_timed_schedule() {
        let ctx = Context {
            device: &Device::Cpu,
            device_label: "cpu".into(),
            references: &[],
            layers: 1,
            seed: 3,
            budget: crate::measure::Budget::new(0.0, 0.0),
            inject_delay: None,
            inject_nan_into: None,
        };
        let point = Point {
            spec: OpSpec::plain(OpKind::Conv, 3, "770x7x7".parse().unwrap()),
            implementation: Implementation::Native,
            dtype: Dtype::F32,
            batch: 1,
            threads: 2,
            pass: crate::ops::Pass::Infer,
        };
        let out = run(&ctx, &[point], 1, &mut |_, _| {}, &AtomicBool::new(false)).unwrap();
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        let r = &out.records[0];
        assert!(r.kernel_path.contains("rows="), "{}", r.kernel_path);
        assert_eq!(r.verification.kernel_path, r.kernel_path);
        assert!(r.verification.input.starts_with("1x770x7x7"));
    }
}
