//! Who, where and when: tool and library versions, git commit, the device, a timestamp.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    /// Commit the binary was built from (`-dirty` when the tree had changes), if known.
    pub git_commit: Option<String>,
    pub candle_version: String,
    /// Cargo features compiled in (cuda, cudnn, mkl).
    pub features: Vec<String>,
    /// PyTorch version, in files written by scripts/torch_reference.py.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_version: Option<String>,
}

impl ToolInfo {
    pub fn current() -> Self {
        let features = [
            ("cuda", cfg!(feature = "cuda")),
            ("cudnn", cfg!(feature = "cudnn")),
            ("mkl", cfg!(feature = "mkl")),
        ];
        Self {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("PCONV_GIT_COMMIT")
                .filter(|c| !c.is_empty())
                .map(str::to_string),
            candle_version: env!("PCONV_CANDLE_VERSION").into(),
            features: features
                .iter()
                .filter(|(_, on)| *on)
                .map(|(f, _)| f.to_string())
                .collect(),
            torch_version: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `cpu` or `cuda:N`.
    pub kind: String,
    /// CPU model (from /proc/cpuinfo) or GPU name.
    pub name: String,
    /// Logical CPUs the OS reports.
    pub logical_cpus: usize,
    pub os: String,
    pub arch: String,
    /// The GPU, on CUDA devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuInfo>,
}

/// What the CUDA driver says about the GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub name: String,
    /// `major.minor`, e.g. 9.0 for H100 / H200.
    pub compute_capability: String,
    /// CUDA version the driver supports, e.g. 13.0.
    pub driver_cuda_version: String,
    /// CUDA toolkit the binary was built against (CUDARC_CUDA_VERSION at build time), if known.
    pub built_cuda_version: Option<String>,
    pub memory_bytes: u64,
}

impl DeviceInfo {
    pub fn cpu() -> Self {
        Self {
            kind: "cpu".into(),
            name: cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            gpu: None,
        }
    }
}

/// The `model name` line of /proc/cpuinfo.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Current UTC time as RFC 3339 (`2026-11-28T05:17:15Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_843_035), "2026-11-28T05:17:15Z");
    }
}
