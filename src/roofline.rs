//! The roofline: the device's measured ceilings (peak compute from a large GEMM, bandwidth
//! from a large copy and a read-only reduction) and, per record, how close it gets to
//! min(peak, intensity x bandwidth).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DeviceSpec;
use crate::error::{Error, Result};
use crate::measure::{self, Budget, Summary};
use crate::metadata::{self, DeviceInfo, ToolInfo};
use crate::ops::native::gemm_conv::{matmul, Gemm};
use crate::ops::Dtype;
use crate::output::Output;

pub const PROFILE_KIND: &str = "pconv-bench-profile";
pub const PROFILE_SCHEMA_VERSION: u32 = 1;

/// One ceiling: the measured rate and the statistics of the runs behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// GFLOP/s for compute, GB/s (10^9 bytes read plus written) for bandwidth.
    pub value: f64,
    pub unit: String,
    /// What was run, e.g. "sgemm 1024x1024x1024" or "copy 512 MiB -> 512 MiB".
    pub kernel: String,
    /// Work per run: FLOP or bytes.
    pub work_per_run: f64,
    pub stats: Summary,
    /// False when the runs scattered (relative IQR above 10%): the value is not to be trusted.
    pub stable: bool,
}

/// The ceilings for one thread count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub threads: usize,
    /// Peak f32 compute, GFLOP/s (an FMA counts 2).
    pub compute: Ceiling,
    /// Copy bandwidth, GB/s counting bytes read plus written: the roofline's slope.
    pub copy: Ceiling,
    /// Read-only bandwidth (a reduction), GB/s.
    pub read: Ceiling,
}

impl Ceilings {
    pub fn stable(&self) -> bool {
        self.compute.stable && self.copy.stable && self.read.stable
    }
}

/// A calibration file: the ceilings of one device at one or more thread counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub kind: String,
    pub schema_version: u32,
    pub tool: ToolInfo,
    pub created_at: String,
    pub device: DeviceInfo,
    pub dtype: String,
    pub ceilings: Vec<Ceilings>,
}

impl Profile {
    pub fn for_threads(&self, threads: usize) -> Option<&Ceilings> {
        self.ceilings.iter().find(|c| c.threads == threads)
    }
}

/// Where a record sits under the roofline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// FLOP / byte under the paper's memory model.
    pub intensity_flop_per_byte: f64,
    pub peak_gflop_per_s: f64,
    pub bandwidth_gb_per_s: f64,
    /// min(peak, intensity x bandwidth), GFLOP/s.
    pub attainable_gflop_per_s: f64,
    /// Achieved GFLOP/s as a percentage of attainable.
    pub achieved_pct: f64,
    /// `memory` when intensity x bandwidth < peak, else `compute`.
    pub bound: String,
}

/// The roofline position of a rate at an intensity, under `c`.
pub fn place(intensity: f64, achieved_gflop_per_s: f64, c: &Ceilings) -> Roofline {
    let peak = c.compute.value;
    let slope = intensity * c.copy.value;
    let attainable = peak.min(slope);
    Roofline {
        intensity_flop_per_byte: intensity,
        peak_gflop_per_s: peak,
        bandwidth_gb_per_s: c.copy.value,
        attainable_gflop_per_s: attainable,
        achieved_pct: 100.0 * achieved_gflop_per_s / attainable,
        bound: if slope < peak { "memory" } else { "compute" }.into(),
    }
}

/// Places every record under the profile's ceilings for its thread count (none when the
/// profile has no ceilings for it).
pub fn place_records(profile: &Profile, records: &mut [crate::record::Record]) {
    for r in records {
        r.roofline = profile.for_threads(r.threads).map(|c| {
            place(
                r.cost.arithmetic_intensity_flop_per_byte,
                r.rates.gflop_per_s,
                c,
            )
        });
    }
}

/// Sizes of the calibration kernels.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// GEMM m = n = k.
    pub gemm: usize,
    /// Bytes of each bandwidth buffer (well above the last-level cache).
    pub buffer_bytes: usize,
}

fn ceiling(kernel: String, unit: &str, work: f64, samples_ms: &[f64]) -> Ceiling {
    let stats = Summary::from_samples(samples_ms);
    Ceiling {
        value: work / (stats.median_ms / 1e3) / 1e9,
        unit: unit.into(),
        kernel,
        work_per_run: work,
        stable: !stats.noisy,
        stats,
    }
}

fn timed(budget: &Budget, mut f: impl FnMut()) -> Vec<f64> {
    let m = measure::measure::<std::convert::Infallible>(
        budget,
        || {
            f();
            Ok(())
        },
        || Ok(()),
    );
    match m {
        Ok(m) => m.samples_ms,
        Err(never) => match never {},
    }
}

/// Measures the CPU ceilings on the current rayon pool (`threads` threads).
pub fn calibrate_cpu(threads: usize, sizes: Sizes, budget: &Budget) -> Ceilings {
    use rayon::prelude::*;
    let n = sizes.gemm;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let gemm_samples = timed(budget, || {
        // SAFETY: a, b and c are n x n row-major buffers that outlive the call.
        unsafe {
            matmul(
                c.as_mut_ptr(),
                n,
                &a,
                &b,
                n,
                Gemm {
                    m: n,
                    n,
                    k: n,
                    par,
                    accumulate: false,
                },
            )
        }
    });
    std::hint::black_box(&c);

    let len = sizes.buffer_bytes / 4;
    let src: Vec<f32> = (0..len).map(|i| (i % 3) as f32).collect();
    let mut dst = vec![0f32; len];
    let chunk = len.div_ceil(threads * 8).max(1 << 16);
    let copy_samples = timed(budget, || {
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    std::hint::black_box(&dst);
    let read_samples = timed(budget, || {
        let total: f32 = src
            .par_chunks(chunk)
            .map(|s| {
                // 16 independent partial sums: vectorises, and is not latency-bound.
                let mut acc = [0f32; 16];
                for block in s.chunks_exact(16) {
                    for (a, v) in acc.iter_mut().zip(block) {
                        *a += v;
                    }
                }
                acc.iter().sum::<f32>() + s.chunks_exact(16).remainder().iter().sum::<f32>()
            })
            .sum();
        std::hint::black_box(total);
    });

    let mib = sizes.buffer_bytes as f64 / (1 << 20) as f64;
    Ceilings {
        threads,
        compute: ceiling(
            format!("sgemm {n}x{n}x{n} (gemm crate)"),
            "GFLOP/s",
            2.0 * (n * n * n) as f64,
            &gemm_samples,
        ),
        copy: ceiling(
            format!("copy {mib:.0} MiB -> {mib:.0} MiB"),
            "GB/s",
            2.0 * sizes.buffer_bytes as f64,
            &copy_samples,
        ),
        read: ceiling(
            format!("sum of {mib:.0} MiB"),
            "GB/s",
            sizes.buffer_bytes as f64,
            &read_samples,
        ),
    }
}

/// The default profile path: `$XDG_CACHE_HOME` (else `~/.cache`)`/pconv-bench/profile-<device>.json`.
pub fn default_path(device: &DeviceInfo) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    let slug: String = format!("{}-{}", device.kind, device.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    base.join("pconv-bench")
        .join(format!("profile-{slug}.json"))
}

/// Reads a profile, refusing what is not one.
pub fn read(path: &Path) -> Result<Profile> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("cannot read profile '{shown}': {e}")))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("profile '{shown}' is corrupt (not JSON): {e}")))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(PROFILE_KIND) {
        return Err(Error::Invalid(format!(
            "'{shown}' is not a pconv-bench profile (write one with `pconv-bench calibrate`)"
        )));
    }
    let version = value
        .get("schema_version")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if version > u64::from(PROFILE_SCHEMA_VERSION) {
        return Err(Error::Invalid(format!(
            "profile '{shown}' has schema_version {version}, newer than this tool reads ({PROFILE_SCHEMA_VERSION})"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::Invalid(format!("profile '{shown}' is corrupt: {e}")))
}

/// Checks that `profile` describes `device` at every thread count in `threads`.
pub fn check_matches(
    profile: &Profile,
    path: &Path,
    device: &DeviceInfo,
    threads: &[usize],
    allow: bool,
) -> Result<()> {
    if allow {
        return Ok(());
    }
    let shown = path.display();
    if profile.device.name != device.name || profile.device.kind != device.kind {
        return Err(Error::Invalid(format!(
            "profile '{shown}' is for '{}' ({}), this run is on '{}' ({}): calibrate here or pass --allow-profile-mismatch",
            profile.device.name, profile.device.kind, device.name, device.kind
        )));
    }
    if let Some(t) = threads.iter().find(|&&t| profile.for_threads(t).is_none()) {
        let have: Vec<String> = profile
            .ceilings
            .iter()
            .map(|c| c.threads.to_string())
            .collect();
        return Err(Error::Invalid(format!(
            "profile '{shown}' has no ceilings for {t} thread(s) (it has: {}): run `pconv-bench calibrate --threads {t}` or pass --allow-profile-mismatch",
            have.join(", ")
        )));
    }
    Ok(())
}

/// Measures the ceilings at each thread count.
pub fn measure_profile(
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
        ceilings.push(pool.install(|| calibrate_cpu(t, sizes, budget)));
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

pub fn save(out: &Output, profile: &Profile) -> Result<()> {
    let text = serde_json::to_string_pretty(profile).expect("profile serialises") + "\n";
    out.write(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceilings(peak: f64, bw: f64) -> Ceilings {
        // One run of 1 s: the rate is the work in units of 10^9.
        let c = |value: f64| ceiling("k".into(), "u", value * 1e9, &[1000.0]);
        Ceilings {
            threads: 1,
            compute: c(peak),
            copy: c(bw),
            read: c(bw),
        }
    }

    #[test]
    fn roofline_takes_the_lower_ceiling() {
        // Ridge point at 100 / 10 = 10 FLOP/byte.
        let c = ceilings(100.0, 10.0);
        let low = place(2.0, 10.0, &c);
        assert_eq!(low.attainable_gflop_per_s, 20.0);
        assert_eq!(low.bound, "memory");
        assert_eq!(low.achieved_pct, 50.0);
        let high = place(50.0, 80.0, &c);
        assert_eq!(high.attainable_gflop_per_s, 100.0);
        assert_eq!(high.bound, "compute");
        assert_eq!(high.achieved_pct, 80.0);
    }

    #[test]
    fn calibration_measures_positive_ceilings() {
        let budget = Budget::new(0.0, 0.0);
        let c = calibrate_cpu(
            1,
            Sizes {
                gemm: 64,
                buffer_bytes: 1 << 20,
            },
            &budget,
        );
        assert!(c.compute.value > 0.0 && c.copy.value > 0.0 && c.read.value > 0.0);
        assert_eq!(c.compute.work_per_run, 2.0 * 64.0 * 64.0 * 64.0);
        assert_eq!(c.copy.work_per_run, 2.0 * (1 << 20) as f64);
    }

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
