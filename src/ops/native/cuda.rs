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
//! candle's `gemm_reduced_precision_f32` is on (`--tf32 on`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys as blas_sys};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::cudarc::nvrtc;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Layout, Shape};
use std::sync::OnceLock;

use super::{uses_direct, Geometry, NativeLayer};
use crate::ops::{OpKind, PConvForward};

const MODULE: &str = "pconv_bench_native";

const SOURCE: &str = r#"
extern "C" __global__ void pcb_grouped_conv(
    const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
    int n, int c, int h, int wd, int k, int groups, long long x_image, long long y_image)
{
    const long long total = (long long)n * c * h * wd;
    const int cg = c / groups, pad = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const int ox = (int)(i % wd);
        long long t = i / wd;
        const int oy = (int)(t % h); t /= h;
        const int oc = (int)(t % c);
        const long long b = t / c;
        const float* xb = x + b * x_image + (long long)(oc / cg) * cg * h * wd;
        const float* wo = w + (long long)oc * cg * k * k;
        float acc = 0.f;
        for (int ic = 0; ic < cg; ++ic) {
            const float* xp = xb + (long long)ic * h * wd;
            const float* wp = wo + ic * k * k;
            for (int ky = 0; ky < k; ++ky) {
                const int iy = oy + ky - pad;
                if (iy < 0 || iy >= h) continue;
                for (int kx = 0; kx < k; ++kx) {
                    const int ix = ox + kx - pad;
                    if (ix >= 0 && ix < wd) acc = fmaf(__ldg(wp + ky * k + kx), __ldg(xp + iy * wd + ix), acc);
                }
            }
        }
        y[b * y_image + (long long)oc * h * wd + (long long)oy * wd + ox] = acc;
    }
}

// col[b][(ic*k + ky)*k + kx][oy*wd + ox] for the first c channels of each image of x.
extern "C" __global__ void pcb_im2col(
    const float* __restrict__ x, float* __restrict__ col,
    int n, int c, int h, int wd, int k, long long x_image)
{
    const long long hw = (long long)h * wd;
    const long long rows = (long long)c * k * k;
    const long long total = (long long)n * rows * hw;
    const int pad = k / 2;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long p = i % hw;
        long long t = i / hw;
        const int row = (int)(t % rows);
        const long long b = t / rows;
        const int kx = row % k, ky = (row / k) % k, ic = row / (k * k);
        const int oy = (int)(p / wd), ox = (int)(p % wd);
        const int iy = oy + ky - pad, ix = ox + kx - pad;
        col[i] = (iy >= 0 && iy < h && ix >= 0 && ix < wd)
            ? __ldg(x + b * x_image + (long long)ic * hw + (long long)iy * wd + ix) : 0.f;
    }
}

// y[b][from .. from + count) = x[b][from .. from + count) for images of `image` elements.
extern "C" __global__ void pcb_copy_range(
    const float* __restrict__ x, float* __restrict__ y,
    int n, long long from, long long count, long long image)
{
    const long long total = (long long)n * count;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long off = (i / count) * image + from + i % count;
        y[off] = x[off];
    }
}
"#;

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

fn weight<'a>(layer: &'a NativeLayer, dev: &CudaDevice) -> candle_core::Result<&'a CudaSlice<f32>> {
    if let Some(w) = layer.gpu_weight.get() {
        return Ok(w);
    }
    let w = dev.clone_htod(&layer.weight)?;
    Ok(layer.gpu_weight.get_or_init(|| w))
}

/// One convolution: it reads the first `g.c` channels of `n` images of `x_image` floats and
/// writes the first `g.c` channels of `n` images of `y_image` floats.
struct Conv<'a> {
    dev: &'a CudaDevice,
    x: &'a CudaView<'a, f32>,
    w: &'a CudaSlice<f32>,
    n: usize,
    x_image: usize,
    y_image: usize,
}

/// The direct kernel: every group in one launch.
fn grouped_conv(
    conv: &Conv,
    y: &mut CudaSlice<f32>,
    g: Geometry,
    groups: usize,
) -> candle_core::Result<()> {
    let Conv { dev, x, w, n, .. } = *conv;
    let func = dev.get_or_load_custom_func("pcb_grouped_conv", MODULE, ptx()?)?;
    let mut b = func.builder();
    let (n_, c, h, wd, k, gr) = (
        n as i32,
        g.c as i32,
        g.h as i32,
        g.w as i32,
        g.k as i32,
        groups as i32,
    );
    let (xi, yi) = (conv.x_image as i64, conv.y_image as i64);
    b.arg(x).arg(w).arg(y);
    b.arg(&n_)
        .arg(&c)
        .arg(&h)
        .arg(&wd)
        .arg(&k)
        .arg(&gr)
        .arg(&xi)
        .arg(&yi);
    // SAFETY: the kernel reads n images of x_image floats from x, c·(c/groups)·k² weights,
    // and writes n images of y_image floats of y, all within the allocations.
    unsafe { b.launch(launch_config(n * g.c * g.h * g.w)) }.w()?;
    Ok(())
}

/// A dense convolution (groups = 1) as im2col + one strided-batched SGEMM:
/// y_b (c x hw) = W (c x c·k²) · col_b (c·k² x hw), for every image b.
fn gemm_conv(conv: &Conv, y: &mut CudaSlice<f32>, g: Geometry) -> candle_core::Result<()> {
    let Conv { dev, x, w, n, .. } = *conv;
    let hw = g.h * g.w;
    let rows = g.c * g.k * g.k;
    let col_holder;
    let (col_view, col_stride) = if g.k == 1 {
        (x.slice(..), conv.x_image) // a 1x1 conv's im2col is the input itself
    } else {
        // SAFETY: im2col writes every element before the GEMM reads it.
        let mut col = unsafe { dev.alloc::<f32>(n * rows * hw)? };
        let func = dev.get_or_load_custom_func("pcb_im2col", MODULE, ptx()?)?;
        let mut b = func.builder();
        let (n_, c, h, wd, k) = (n as i32, g.c as i32, g.h as i32, g.w as i32, g.k as i32);
        let xi = conv.x_image as i64;
        b.arg(x).arg(&mut col);
        b.arg(&n_).arg(&c).arg(&h).arg(&wd).arg(&k).arg(&xi);
        // SAFETY: reads the first c channels of n images of x_image floats, writes n·rows·hw.
        unsafe { b.launch(launch_config(n * rows * hw)) }.w()?;
        col_holder = col;
        (col_holder.slice(..), rows * hw)
    };
    let blas = dev.cublas_handle();
    let stream = dev.cuda_stream();
    let (a, _ra) = col_view.device_ptr(&stream);
    let (bp, _rb) = w.device_ptr(&stream);
    let (cp, _rc) = y.device_ptr(&stream);
    let (alpha, beta) = (1.0f32, 0.0f32);
    let compute = if candle_core::cuda::gemm_reduced_precision_f32() {
        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    } else {
        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    };
    // Row-major y_b = W · col_b is column-major y_bᵀ (hw x c) = col_bᵀ (hw x K) · Wᵀ (K x c).
    // SAFETY: pointers from live allocations of the sizes the strides describe; the calls are
    // ordered on candle's stream, which the cuBLAS handle uses.
    unsafe {
        blas::gemm_strided_batched_ex(
            *blas.handle(),
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            hw as i32,
            g.c as i32,
            rows as i32,
            (&alpha) as *const f32 as *const _,
            a as *const _,
            blas_sys::cudaDataType_t::CUDA_R_32F,
            hw as i32,
            col_stride as i64,
            bp as *const _,
            blas_sys::cudaDataType_t::CUDA_R_32F,
            rows as i32,
            0,
            (&beta) as *const f32 as *const _,
            cp as *mut _,
            blas_sys::cudaDataType_t::CUDA_R_32F,
            hw as i32,
            conv.y_image as i64,
            n as i32,
            compute,
            blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .w()
}

/// Copies elements [from, from + count) of every image of `image` elements from x to y.
fn copy_range(
    dev: &CudaDevice,
    x: &CudaView<f32>,
    y: &mut CudaSlice<f32>,
    n: usize,
    from: usize,
    count: usize,
    image: usize,
) -> candle_core::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let func = dev.get_or_load_custom_func("pcb_copy_range", MODULE, ptx()?)?;
    let mut b = func.builder();
    let (n_, f, cnt, im) = (n as i32, from as i64, count as i64, image as i64);
    b.arg(x).arg(y).arg(&n_).arg(&f).arg(&cnt).arg(&im);
    // SAFETY: from + count <= image; n images of `image` floats in both buffers.
    unsafe { b.launch(launch_config(n * count)) }.w()?;
    Ok(())
}

/// One native layer on the GPU.
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
    let image = c * h * wd;
    let w = weight(layer, &dev)?;
    // SAFETY: every element is written below (conv channels by the conv, the rest by the copy).
    let mut y = unsafe { dev.alloc::<f32>(n * image)? };
    let launch = Conv {
        dev: &dev,
        x: &x,
        w,
        n,
        x_image: image,
        y_image: image,
    };
    let conv = |y: &mut CudaSlice<f32>, g: Geometry, groups: usize| {
        if groups > 1 || uses_direct(g.c, g.h * g.w) {
            grouped_conv(&launch, y, g, groups)
        } else {
            gemm_conv(&launch, y, g)
        }
    };
    let g = Geometry {
        c,
        h,
        w: wd,
        k: layer.k,
    };
    match layer.kind {
        OpKind::PConv => {
            let cp = layer.partial;
            let copy_from = match layer.forward {
                PConvForward::SplitCat => cp * h * wd,
                PConvForward::Slicing => 0,
            };
            copy_range(&dev, &x, &mut y, n, copy_from, image - copy_from, image)?;
            conv(&mut y, Geometry { c: cp, ..g }, 1)?;
        }
        _ => conv(&mut y, g, layer.groups)?,
    }
    Ok((CudaStorage::wrap_cuda_slice(y, dev), layout.shape().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NVRTC needs no GPU: the kernels' CUDA C must compile to PTX with every entry point.
    /// (A CUDA test binary still needs a libcuda.so.1 to start; the link stub of
    /// ../shared/cuda/setup.sh on LD_LIBRARY_PATH is enough.)
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
