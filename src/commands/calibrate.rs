//! `pconv-bench calibrate`: the device's ceilings for the roofline, saved as a profile.

use std::path::PathBuf;

use crate::cli::CalibrateArgs;
use crate::config::DeviceSpec;
use crate::error::{Error, Result};
use crate::measure::Budget;
use crate::metadata::{self, ToolInfo};
use crate::ops::Dtype;
use crate::output::Output;
use crate::roofline::{self, Ceiling, Profile, Sizes, PROFILE_KIND, PROFILE_SCHEMA_VERSION};

/// Measures the ceilings at each thread count.
pub fn measure(
    device: DeviceSpec,
    threads: &[usize],
    sizes: Sizes,
    budget: &Budget,
    quiet: bool,
) -> Result<Profile> {
    if device != DeviceSpec::Cpu {
        crate::device::open(device)?; // says how to build for CUDA
        return Err(Error::Unsupported(format!(
            "calibrate supports --device cpu in this version, not '{device}'"
        )));
    }
    let mut ceilings = Vec::new();
    for &t in threads {
        if !quiet {
            eprintln!(
                "calibrating {t} thread(s): sgemm {0}^3, copy and read of {1} MiB ...",
                sizes.gemm,
                sizes.buffer_bytes >> 20
            );
        }
        let pool = crate::device::pin_threads(t)?;
        ceilings.push(pool.install(|| roofline::calibrate_cpu(t, sizes, budget)));
    }
    Ok(Profile {
        kind: PROFILE_KIND.into(),
        schema_version: PROFILE_SCHEMA_VERSION,
        tool: ToolInfo::current(),
        created_at: metadata::now_rfc3339(),
        device: crate::device::info(device),
        dtype: Dtype::F32.to_string(),
        ceilings,
    })
}

fn show(c: &Ceiling) -> String {
    if c.stable {
        format!("{:.1} {}", c.value, c.unit)
    } else {
        format!(
            "unstable (relative IQR {:.0}% > 10%; median {:.1} {}, not to be trusted)",
            c.stats.rel_iqr * 100.0,
            c.value,
            c.unit
        )
    }
}

/// The profile as text for people.
pub fn describe(p: &Profile) -> String {
    let mut out = format!("{} ({}), {}\n", p.device.name, p.device.kind, p.dtype);
    for c in &p.ceilings {
        out += &format!(
            "  {} thread(s): compute {} = {}; copy bandwidth {}; read bandwidth {}; ridge point {:.1} FLOP/byte\n",
            c.threads,
            show(&c.compute),
            if c.compute.stable { format!("{:.1} GMAC/s", c.compute.value / 2.0) } else { "-".into() },
            show(&c.copy),
            show(&c.read),
            c.compute.value / c.copy.value
        );
    }
    out
}

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
    let profile = measure(args.device, &args.threads, sizes, &budget, args.quiet)?;
    if out.is_stdout() {
        eprint!("{}", describe(&profile));
    } else {
        print!("{}", describe(&profile));
    }
    save(&out, &profile)?;
    if !args.quiet {
        eprintln!("wrote profile to {}", out.path().display());
    }
    Ok(0)
}

pub fn save(out: &Output, profile: &Profile) -> Result<()> {
    let text = serde_json::to_string_pretty(profile).expect("profile serialises") + "\n";
    out.write(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Summary;

    #[test]
    fn an_unstable_ceiling_is_said_to_be_unstable_not_printed_as_exact() {
        let noisy = [1.0, 1.0, 2.0, 3.0, 3.0];
        let c = Ceiling {
            value: 42.0,
            unit: "GB/s".into(),
            kernel: "copy".into(),
            work_per_run: 1.0,
            stats: Summary::from_samples(&noisy),
            stable: false,
        };
        let text = show(&c);
        assert!(
            text.starts_with("unstable (relative IQR 100% > 10%"),
            "{text}"
        );
        let steady = Ceiling { stable: true, ..c };
        assert_eq!(show(&steady), "42.0 GB/s");
    }
}
