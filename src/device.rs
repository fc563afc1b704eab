//! Opening the compute device and pinning the CPU thread count.

use candle_core::Device;

use crate::config::DeviceSpec;
use crate::error::{Error, Result};
use crate::metadata::DeviceInfo;
use crate::ops::{Dtype, Implementation};

/// Opens the device, or says why it cannot be used.
pub fn open(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        DeviceSpec::Cuda(ordinal) => open_cuda(ordinal),
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Unsupported(format!(
            "no CUDA device found: cuda:{ordinal} could not be opened ({})",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Unsupported(format!(
        "device 'cuda:{ordinal}' needs a CUDA build of pconv-bench: cargo build --release --features cuda (see README, 'CUDA'); this build supports: cpu"
    )))
}

/// What the results file says about the device (the host CPU, plus the GPU on CUDA).
pub fn info(spec: DeviceSpec) -> DeviceInfo {
    let mut info = DeviceInfo::cpu();
    info.kind = spec.to_string();
    if let DeviceSpec::Cuda(ordinal) = spec {
        info.gpu = gpu_info(ordinal);
        if let Some(g) = &info.gpu {
            info.name = g.name.clone();
        }
    }
    info
}

#[cfg(feature = "cuda")]
fn gpu_info(ordinal: usize) -> Option<crate::metadata::GpuInfo> {
    use candle_core::cuda_backend::cudarc::driver::{sys, CudaContext};
    let ctx = CudaContext::new(ordinal).ok()?;
    let (major, minor) = ctx.compute_capability().ok()?;
    let mut version = 0i32;
    // SAFETY: cuDriverGetVersion writes one int; the driver is loaded (the context exists).
    let driver = unsafe { sys::cuDriverGetVersion(&mut version) };
    let driver_cuda_version = if driver == sys::CUresult::CUDA_SUCCESS {
        format!("{}.{}", version / 1000, (version % 1000) / 10)
    } else {
        "unknown".into()
    };
    Some(crate::metadata::GpuInfo {
        name: ctx.name().ok()?,
        compute_capability: format!("{major}.{minor}"),
        driver_cuda_version,
        built_cuda_version: option_env!("CUDARC_CUDA_VERSION")
            .and_then(|v| v.parse::<u32>().ok())
            .map(|v| format!("{}.{}", v / 1000, (v % 1000) / 10)),
        memory_bytes: ctx.total_mem().ok()? as u64,
    })
}

#[cfg(not(feature = "cuda"))]
fn gpu_info(_ordinal: usize) -> Option<crate::metadata::GpuInfo> {
    None
}

/// Logical CPUs this process may run on.
pub fn logical_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Refuses thread counts above the logical CPUs (they would hang on spawning a huge pool or
/// time threads fighting for cores) unless `oversubscribe` says it is meant.
pub fn check_threads(threads: &[usize], oversubscribe: bool) -> Result<()> {
    let cpus = logical_cpus();
    match threads.iter().find(|&&t| t > cpus) {
        Some(t) if !oversubscribe => Err(Error::Invalid(format!(
            "threads {t} is more than the {cpus} logical CPUs of this machine: allowed are 1 to {cpus}, or add --oversubscribe to run it deliberately"
        ))),
        _ => Ok(()),
    }
}

/// Pins the thread count candle's CPU kernels use: candle reads `RAYON_NUM_THREADS` on each
/// GEMM, and its rayon loops run in whichever pool is current. Call before the pool that
/// will run the work is built, from the main thread, with no candle work in flight.
pub fn pin_threads(threads: usize) -> Result<rayon::ThreadPool> {
    // Safe in edition 2021; nothing else reads or writes the environment concurrently here.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start {threads} threads: {e}")))
}

/// Runs a tiny instance of every candle op the operators use, so a dtype the backend cannot
/// run is refused up front with a clear message instead of failing mid-run.
pub fn check_supported(
    device: &Device,
    implementation: Implementation,
    dtype: Dtype,
) -> Result<()> {
    if let Some(why) = implementation.not_runnable_here() {
        return Err(Error::Unsupported(why));
    }
    if implementation == Implementation::Native && dtype != Dtype::F32 {
        return Err(Error::Unsupported(format!(
            "implementation native runs on {} with dtype f32 only (asked: {dtype}): use --impl candle for other dtypes",
            device_name(device)
        )));
    }
    let probe = || -> candle_core::Result<()> {
        let x = candle_core::Tensor::ones((1, 4, 3, 3), dtype.candle(), device)?;
        let w = candle_core::Tensor::ones((4, 2, 3, 3), dtype.candle(), device)?;
        let y = x.conv2d(&w, 1, 1, 1, 2)?;
        let out =
            candle_core::Tensor::cat(&[&y.narrow(1, 0, 2)?, &x.narrow(1, 2, 2)?], 1)?.copy()?;
        out.slice_set(&y.narrow(1, 0, 1)?.contiguous()?, 1, 0)?;
        device.synchronize()
    };
    probe().map_err(|e| {
        Error::Unsupported(format!(
            "dtype {dtype} is not supported by implementation {implementation} on {}: {}",
            device_name(device),
            e.to_string().lines().next().unwrap_or_default()
        ))
    })
}

pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}

/// Keeps glibc's malloc from returning freed memory to the OS between runs.
///
/// Otherwise an output buffer of a few MB is a fresh mmap (or a regrown heap) on every run,
/// and its page faults make the first operator of a process look up to 50% slower than the
/// same operator measured after a larger one (seen on native DWConv 96x56x56: 2.2 vs 1.4 ms).
/// Every implementation runs under the same setting.
pub fn steady_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before the timed work starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
