//! Pools results files measured apart (interleaved rounds of one benchmark, each round its
//! own process) into one file, as `run --repeat` pools repetitions inside one process: each
//! file's samples of a record become repetitions of the merged record, so `compare` resamples
//! whole rounds and its interval sees round-to-round drift.

use std::path::{Path, PathBuf};

use crate::compare::identity;
use crate::error::{Error, Result};
use crate::measure::Summary;
use crate::record::{Rates, RunResult};

/// Merges `files` (path, contents) in order. They must come from one device model, one
/// implementation set of settings that changes results (layers, seed, TF32), and one mode.
pub fn merge(files: Vec<(PathBuf, RunResult)>) -> Result<RunResult> {
    let mut files = files.into_iter();
    let Some((first_path, mut merged)) = files.next() else {
        return Err(Error::Invalid(
            "merge needs at least one results file".into(),
        ));
    };
    let tf32 = merged.config.tf32;
    for r in &mut merged.records {
        if r.repetitions.is_empty() {
            r.repetitions = vec![r.samples_ms.len()];
        }
    }
    for (path, more) in files {
        check_same_setup(&first_path, &merged, &path, &more)?;
        merged.complete &= more.complete;
        merged.failures.extend(more.failures);
        for rec in more.records {
            let id = identity(&rec, tf32);
            let reps = if rec.repetitions.is_empty() {
                vec![rec.samples_ms.len()]
            } else {
                rec.repetitions.clone()
            };
            match merged.records.iter_mut().find(|m| identity(m, tf32) == id) {
                Some(m) => {
                    if m.verification.kernel_path != rec.verification.kernel_path {
                        return Err(Error::Invalid(format!(
                            "'{}': record '{id}' ran kernel path '{}', an earlier file '{}': merge only rounds of the same build",
                            path.display(),
                            rec.verification.kernel_path,
                            m.verification.kernel_path
                        )));
                    }
                    m.samples_ms.extend(rec.samples_ms);
                    m.repetitions.extend(reps);
                    m.warmup.runs += rec.warmup.runs;
                    m.warmup.time_s += rec.warmup.time_s;
                }
                None => merged.records.push(crate::record::Record {
                    repetitions: reps,
                    ..rec
                }),
            }
        }
    }
    for r in &mut merged.records {
        if r.samples_ms.is_empty() {
            continue;
        }
        r.stats = Summary::from_samples(&r.samples_ms);
        r.rates = Rates::new(&r.cost, r.stats.median_ms, r.batch);
    }
    if let Some(p) = &merged.profile {
        crate::roofline::place_records(p, &mut merged.records);
    }
    merged.verdicts = crate::answer::Verdicts::of(&merged.records);
    Ok(merged)
}

fn check_same_setup(a_path: &Path, a: &RunResult, b_path: &Path, b: &RunResult) -> Result<()> {
    let differ = |what: &str, x: String, y: String| {
        Err(Error::Invalid(format!(
            "cannot merge '{}' into '{}': {what} differs ({y} vs {x}); merge rounds of one benchmark on one machine",
            b_path.display(),
            a_path.display()
        )))
    };
    if a.device.name != b.device.name {
        return differ("device", a.device.name.clone(), b.device.name.clone());
    }
    if a.mode != b.mode {
        return differ("mode", format!("{:?}", a.mode), format!("{:?}", b.mode));
    }
    if a.config.layers != b.config.layers {
        return differ(
            "layers",
            a.config.layers.to_string(),
            b.config.layers.to_string(),
        );
    }
    if a.config.seed != b.config.seed {
        return differ("seed", a.config.seed.to_string(), b.config.seed.to_string());
    }
    if a.config.precision != b.config.precision {
        let shown = |p: Option<f64>| p.map_or("off".to_string(), |p| format!("{}%", p * 100.0));
        return differ(
            "precision",
            shown(a.config.precision),
            shown(b.config.precision),
        );
    }
    if a.config.tf32 != b.config.tf32 {
        return differ("tf32", a.config.tf32.to_string(), b.config.tf32.to_string());
    }
    Ok(())
}
