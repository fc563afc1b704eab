//! Adaptive runner: warm up for a while, then time individual runs until a budget is spent.
//! It records raw samples; analysis happens afterwards (`stats`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long to warm up and measure. Defaults live in the suite config (`configs/*.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Warm-up time in seconds (at least `min_warmup_runs` runs happen regardless).
    pub warmup_time_s: f64,
    /// Measurement time in seconds (at least `min_samples` samples regardless).
    pub measure_time_s: f64,
    pub min_warmup_runs: usize,
    pub min_samples: usize,
    /// Upper bound on samples, so a microsecond operator does not produce a huge file.
    pub max_samples: usize,
    /// Stop sampling once the median is known to this fraction of it
    /// ([`super::stats::precise_enough`], after a quarter of the measurement time, at most
    /// [`Budget::MIN_STOP_TIME_S`]); the measurement time stays the cap. None: use it all.
    pub precision: Option<f64>,
}

impl Budget {
    pub const MIN_WARMUP_RUNS: usize = 3;
    pub const MIN_SAMPLES: usize = 10;
    pub const MAX_SAMPLES: usize = 10_000;
    /// Sampling time a precision stop needs at least (or a quarter of the budget, if less): so
    /// the samples span more than one spell of the machine.
    pub const MIN_STOP_TIME_S: f64 = 0.3;

    pub fn new(warmup_time_s: f64, measure_time_s: f64) -> Self {
        Self {
            warmup_time_s,
            measure_time_s,
            min_warmup_runs: Self::MIN_WARMUP_RUNS,
            min_samples: Self::MIN_SAMPLES,
            max_samples: Self::MAX_SAMPLES,
            precision: None,
        }
    }

    /// This budget, stopping early once the median is known to `precision` (a fraction).
    pub fn with_precision(self, precision: Option<f64>) -> Self {
        Self { precision, ..self }
    }
}

/// Raw result of measuring one operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub warmup_runs: usize,
    pub warmup_time_s: f64,
    /// Wall time of each timed run (one forward of the whole stack plus a device
    /// synchronisation), in milliseconds, in the order they ran.
    pub samples_ms: Vec<f64>,
}

/// Times `run` (which must leave the device idle when `sync` returns).
///
/// Every sample brackets exactly one `run` and one `sync`: on CPU `sync` is a no-op, on CUDA
/// it waits for the stream, so queued kernels are inside the sample they belong to.
pub fn measure<E>(
    budget: &Budget,
    mut run: impl FnMut() -> Result<(), E>,
    mut sync: impl FnMut() -> Result<(), E>,
) -> Result<Measurement, E> {
    let warmup_budget = Duration::from_secs_f64(budget.warmup_time_s.max(0.0));
    let start = Instant::now();
    let mut warmup_runs = 0;
    while warmup_runs < budget.min_warmup_runs || start.elapsed() < warmup_budget {
        run()?;
        sync()?;
        warmup_runs += 1;
    }
    let warmup_time_s = start.elapsed().as_secs_f64();

    let measure_budget = Duration::from_secs_f64(budget.measure_time_s.max(0.0));
    let mut samples_ms = Vec::new();
    // With a precision target the samples are checked after every sample up to 100, then
    // after every 5 % more (a sort each time; outside the timed region), once the minimum
    // sampling time has passed.
    let min_stop = Duration::from_secs_f64(
        (budget.measure_time_s.max(0.0) / 4.0).min(Budget::MIN_STOP_TIME_S),
    );
    let mut next_check = budget.min_samples;
    let start = Instant::now();
    while samples_ms.len() < budget.max_samples
        && (samples_ms.len() < budget.min_samples || start.elapsed() < measure_budget)
    {
        let t0 = Instant::now();
        run()?;
        sync()?;
        samples_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if let Some(target) = budget.precision {
            let n = samples_ms.len();
            if n >= next_check && start.elapsed() >= min_stop {
                if super::stats::precise_enough(&samples_ms, target) {
                    break;
                }
                next_check = n + if n < 100 { 1 } else { n / 20 };
            }
        }
    }
    Ok(Measurement {
        warmup_runs,
        warmup_time_s,
        samples_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_at_least_the_minimums_and_syncs_after_every_run() {
        let budget = Budget::new(0.0, 0.0);
        let (mut runs, mut syncs) = (0, 0);
        let m = measure::<()>(
            &budget,
            || {
                runs += 1;
                Ok(())
            },
            || {
                syncs += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(m.warmup_runs, Budget::MIN_WARMUP_RUNS);
        assert_eq!(m.samples_ms.len(), Budget::MIN_SAMPLES);
        assert_eq!(runs, Budget::MIN_WARMUP_RUNS + Budget::MIN_SAMPLES);
        assert_eq!(syncs, runs);
    }

    #[test]
    fn a_precision_target_stops_sampling_early_and_the_time_cap_still_holds() {
        let run = || {
            std::thread::sleep(Duration::from_micros(200));
            Ok::<(), ()>(())
        };
        // A target any samples meet: it stops once the minimum time and count are reached,
        // long before a minute.
        let loose = Budget::new(0.0, 60.0).with_precision(Some(10.0));
        let t0 = Instant::now();
        let m = measure(&loose, run, || Ok(())).unwrap();
        let took = t0.elapsed().as_secs_f64();
        assert!(m.samples_ms.len() >= crate::measure::stats::MIN_STOP_SAMPLES);
        assert!((Budget::MIN_STOP_TIME_S..30.0).contains(&took), "{took} s");
        // A target no timer meets (1e-9 of a sleep): sampling runs to the time cap.
        let strict = Budget::new(0.0, 0.05).with_precision(Some(1e-9));
        let t0 = Instant::now();
        let m = measure(&strict, run, || Ok(())).unwrap();
        let took = t0.elapsed().as_secs_f64();
        assert!(took >= 0.05, "stopped after {took} s of a 0.05 s budget");
        assert!(m.samples_ms.len() > Budget::MIN_SAMPLES);
    }

    #[test]
    fn stops_at_max_samples_and_propagates_errors() {
        let mut budget = Budget::new(0.0, 60.0);
        budget.max_samples = 25;
        let m = measure::<()>(&budget, || Ok(()), || Ok(())).unwrap();
        assert_eq!(m.samples_ms.len(), 25);
        let mut n = 0;
        let err = measure(
            &budget,
            || {
                n += 1;
                if n == 5 {
                    Err("boom")
                } else {
                    Ok(())
                }
            },
            || Ok(()),
        );
        assert_eq!(err.unwrap_err(), "boom");
    }
}
