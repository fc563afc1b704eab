//! `pconv-bench calibrate`: the device's ceilings for the roofline, saved as a profile.

use std::path::PathBuf;

use crate::cli::CalibrateArgs;
use crate::error::{Error, Result};
use crate::measure::Budget;
use crate::ops::Dtype;
use crate::output::Output;
use crate::roofline::{self, Sizes};

pub fn execute(args: &CalibrateArgs) -> Result<i32> {
    if args.dtype != Dtype::F32 {
        return Err(Error::Invalid(format!(
            "dtype {} is not calibrated: allowed is f32",
            args.dtype
        )));
    }
    let mut seen = Vec::new();
    for t in &args.threads {
        if seen.contains(t) {
            return Err(Error::Invalid(format!(
                "threads lists '{t}' twice: give each value once"
            )));
        }
        seen.push(*t);
    }
    let path: PathBuf = match &args.json {
        Some(p) => p.clone(),
        None => roofline::default_path(&crate::device::info(args.device)),
    };
    if args.json.is_none() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating '{}'", dir.display()), e))?;
        }
    }
    let out = Output::resolve(&path, "--json")?;
    crate::device::check_threads(&args.threads, args.oversubscribe)?;
    let sizes = Sizes {
        gemm: args.gemm_size,
        buffer_bytes: args.buffer_mib << 20,
    };
    let budget = Budget::new(args.warmup_time, args.measure_time);
    crate::device::steady_allocator();
    let profile =
        roofline::measure_profile(args.device, &args.threads, sizes, &budget, args.quiet)?;
    if out.is_stdout() {
        eprint!("{}", roofline::describe(&profile));
    } else {
        print!("{}", roofline::describe(&profile));
    }
    roofline::save(&out, &profile)?;
    if !args.quiet {
        eprintln!("wrote profile to {}", out.path().display());
    }
    Ok(0)
}
