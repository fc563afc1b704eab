//! The native kernels on CUDA (f32, NCHW), built with `--features cuda`.
//!
//! - Grouped convolutions (DWConv, GConv, and any conv with few channels per group): one
//!   direct kernel of our own, one thread per output element, all groups in one launch
//!   (candle runs one conv per group and concatenates).
//! - Conv, PWConv and PConv's partial conv: an im2col kernel, then one strided-batched cuBLAS
//!   SGEMM over the whole batch writing straight into the NCHW output (PWConv skips im2col).
//! - PConv writes its conv result into the first c_p channels of the output and copies the
//!   untouched channels once (`split_cat`), or copies the whole input once and writes over it
//!   (`slicing`): the same copies as the CPU path.
//!
//! The kernels are CUDA C compiled at run time by NVRTC (once per process), so no nvcc is
//! needed where the binary runs. TF32: the GEMM uses `CUBLAS_COMPUTE_32F_FAST_TF32` only when
//! candle's `gemm_reduced_precision_f32` is on (`--tf32 on`). The source and each layer's
//! plan of launches live in `gpu.rs`, where every build's tests run them on the CPU; this file
//! only carries the plan out on the device.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Layout, Shape};
use std::sync::OnceLock;

use super::gpu::{plan, workspace_floats, GemmArgs, Grouped, Im2col, Step, Workspace, SOURCE};
use super::NativeLayer;

const MODULE: &str = "pconv_bench_native";

/// The PTX of `SOURCE`, compiled once per process.
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        nvrtc::compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| {
        candle_core::Error::Msg(format!("NVRTC could not compile the native kernels: {e}"))
    })
}

/// A grid-stride launch over `total` elements.
fn launch_config(total: usize) -> LaunchConfig {
    let blocks = total.div_ceil(256).clamp(1, 65_535 * 8) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The layer's weights on the device, uploaded on first use (before timing: verification
/// and warm-up run first).
pub(super) type GpuWeight = OnceLock<CudaSlice<f32>>;

/// The layer's im2col workspace on the device: grown (reallocated) only when a plan needs
/// more than it holds, so timed forwards after warm-up allocate nothing but their output.
pub(super) type GpuWorkspace = std::sync::Mutex<(Workspace, Option<CudaSlice<f32>>)>;

fn weight<'a>(layer: &'a NativeLayer, dev: &CudaDevice) -> candle_core::Result<&'a CudaSlice<f32>> {
    if let Some(w) = layer.gpu_weight.get() {
        return Ok(w);
    }
    let w = dev.clone_htod(&layer.weight)?;
    Ok(layer.gpu_weight.get_or_init(|| w))
}

fn launch_grouped(
    dev: &CudaDevice,
    (x, w, y): (&CudaView<f32>, &CudaSlice<f32>, &mut CudaSlice<f32>),
    n: usize,
    s: &Grouped,
) -> candle_core::Result<()> {
    let func = dev.get_or_load_custom_func("pcb_grouped_conv", MODULE, ptx()?)?;
    let mut b = func.builder();
    let g = s.g;
    let ints = [n, g.c, g.h, g.w, g.k, s.groups].map(|v| v as i32);
    let (xi, yi) = (s.x_image as i64, s.y_image as i64);
    b.arg(x).arg(w).arg(y);
    for v in &ints {
        b.arg(v);
    }
    b.arg(&xi).arg(&yi);
    // SAFETY: the kernel reads n images of x_image floats from x, c·(c/groups)·k² weights,
    // and writes n images of y_image floats of y, all within the allocations.
    unsafe { b.launch(launch_config(n * g.c * g.h * g.w)) }.w()?;
    Ok(())
}

fn launch_im2col(
    dev: &CudaDevice,
    (x, col): (&CudaView<f32>, &mut CudaSlice<f32>),
    n: usize,
    s: &Im2col,
) -> candle_core::Result<()> {
    let g = s.g;
    let len = n * g.c * g.k * g.k * g.h * g.w;
    if col.len() < len {
        candle_core::bail!("im2col workspace of {} floats, {len} needed", col.len())
    }
    let func = dev.get_or_load_custom_func("pcb_im2col", MODULE, ptx()?)?;
    let mut b = func.builder();
    let ints = [n, g.c, g.h, g.w, g.k].map(|v| v as i32);
    let xi = s.x_image as i64;
    b.arg(x).arg(col);
    for v in &ints {
        b.arg(v);
    }
    b.arg(&xi);
    // SAFETY: reads the first c channels of n images of x_image floats, writes the first
    // `len` floats of the workspace (checked above to hold them).
    unsafe { b.launch(launch_config(len)) }.w()?;
    Ok(())
}

fn launch_gemm(
    dev: &CudaDevice,
    (a, w, y): (&CudaView<f32>, &CudaSlice<f32>, &mut CudaSlice<f32>),
    s: &GemmArgs,
) -> candle_core::Result<()> {
    let blas = dev.cublas_handle();
    let stream = dev.cuda_stream();
    let (ap, _ra) = a.device_ptr(&stream);
    let (bp, _rb) = w.device_ptr(&stream);
    // The output is written: its mutable view, so cudarc orders it as a write.
    let (cp, _rc) = y.device_ptr_mut(&stream);
    // A group's slices start `*_offset` floats into each buffer.
    let at = |p: u64, offset: usize| p + (offset * std::mem::size_of::<f32>()) as u64;
    let (ap, bp, cp) = (at(ap, s.a_offset), at(bp, s.b_offset), at(cp, s.c_offset));
    let (alpha, beta) = (1.0f32, 0.0f32);
    let compute = if candle_core::cuda::gemm_reduced_precision_f32() {
        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    } else {
        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    };
    let f32_t = blas_sys::cudaDataType_t::CUDA_R_32F;
    let op_n = blas_sys::cublasOperation_t::CUBLAS_OP_N;
    // SAFETY: pointers from live allocations of the sizes the strides describe; the calls are
    // ordered on candle's stream, which the cuBLAS handle uses.
    unsafe {
        blas::gemm_strided_batched_ex(
            *blas.handle(),
            op_n,
            op_n,
            s.m as i32,
            s.n as i32,
            s.k as i32,
            (&alpha) as *const f32 as *const _,
            ap as *const _,
            f32_t,
            s.lda as i32,
            s.stride_a as i64,
            bp as *const _,
            f32_t,
            s.ldb as i32,
            s.stride_b as i64,
            (&beta) as *const f32 as *const _,
            cp as *mut _,
            f32_t,
            s.ldc as i32,
            s.stride_c as i64,
            s.batch as i32,
            compute,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .w()
}

/// Copies elements [from, from + count) of every image of `image` elements from x to y.
fn launch_copy(
    dev: &CudaDevice,
    (x, y): (&CudaView<f32>, &mut CudaSlice<f32>),
    n: usize,
    (from, count, image): (usize, usize, usize),
) -> candle_core::Result<()> {
    let func = dev.get_or_load_custom_func("pcb_copy_range", MODULE, ptx()?)?;
    let mut b = func.builder();
    let (n_, f, cnt, im) = (n as i32, from as i64, count as i64, image as i64);
    b.arg(x).arg(y).arg(&n_).arg(&f).arg(&cnt).arg(&im);
    // SAFETY: from + count <= image; n images of `image` floats in both buffers.
    unsafe { b.launch(launch_config(n * count)) }.w()?;
    Ok(())
}

/// One native layer on the GPU: its plan, launched in order on candle's stream.
pub(super) fn forward(
    layer: &NativeLayer,
    storage: &CudaStorage,
    layout: &Layout,
) -> candle_core::Result<(CudaStorage, Shape)> {
    let Some((start, _)) = layout.contiguous_offsets() else {
        candle_core::bail!("native kernels need a contiguous input")
    };
    let dev = storage.device().clone();
    let x_all = storage.as_cuda_slice::<f32>()?;
    let x = x_all.slice(start..);
    let (n, c, h, wd) = layout.shape().dims4()?;
    let w = weight(layer, &dev)?;
    // SAFETY: the plan writes every element (the conv its channels, the copy the rest).
    let mut y = unsafe { dev.alloc::<f32>(n * c * h * wd)? };
    let steps = plan(layer, n, c, h, wd);
    let mut guard = layer
        .gpu_workspace
        .lock()
        .map_err(|_| candle_core::Error::Msg("a GPU workspace lock was poisoned".into()))?;
    let (sizes, workspace) = &mut *guard;
    if sizes.reserve(workspace_floats(&steps, n)) || workspace.is_none() {
        // SAFETY: im2col writes every element it later reads.
        *workspace = Some(unsafe { dev.alloc::<f32>(sizes.floats.max(1))? });
    }
    let mut have_col = false;
    for step in steps {
        match step {
            Step::Copy { from, count, image } => {
                launch_copy(&dev, (&x, &mut y), n, (from, count, image))?
            }
            Step::Grouped(s) => launch_grouped(&dev, (&x, w, &mut y), n, &s)?,
            Step::Im2col(s) => {
                let Some(ws) = workspace.as_mut() else {
                    candle_core::bail!("im2col step without a workspace")
                };
                launch_im2col(&dev, (&x, ws), n, &s)?;
                have_col = true;
            }
            Step::Gemm { args, a_is_x } => {
                let a = match (workspace.as_ref(), a_is_x) {
                    (_, true) => x.slice(..),
                    (Some(ws), false) if have_col => ws.slice(..),
                    _ => candle_core::bail!("GEMM step without its im2col"),
                };
                launch_gemm(&dev, (&a, w, &mut y), &args)?
            }
        }
    }
    Ok((CudaStorage::wrap_cuda_slice(y, dev), layout.shape().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC needs no GPU: the kernels' CUDA C must compile to PTX with every entry point.
    /// (A CUDA test binary still needs a libcuda.so.1 to start; the link stub of
    /// .ci/cuda-setup.sh on LD_LIBRARY_PATH is enough.)
    #[test]
    fn kernels_compile_with_nvrtc() {
        let ptx = ptx().unwrap();
        for entry in ["pcb_grouped_conv", "pcb_im2col", "pcb_copy_range"] {
            assert!(ptx.contains(&format!(".entry {entry}(")), "{entry} missing");
        }
        let cfg = launch_config(10);
        assert_eq!((cfg.grid_dim.0, cfg.block_dim.0), (1, 256));
        assert_eq!(launch_config(1 << 40).grid_dim.0, 65_535 * 8);
    }
}
