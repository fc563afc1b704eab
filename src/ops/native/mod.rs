//! Native CPU kernels (f32, NCHW), run as candle custom ops so they share the operator
//! interface, tensors and timing path with the stock candle implementation.
//!
//! - k x k convolutions (k > 1) whose channels per group are a multiple of 16, or of 6 or
//!   4, on AVX-512: register-blocked direct convolutions (`blocked`); so are the 1x1 convs
//!   whose weights outweigh their input planes four times (cg >= 4·h·w).
//! - DWConv with channels in multiples of 16 on AVX-512 (but 3x3 on rows wider than 16): 16
//!   channels in the lanes (`depthwise`).
//! - Other DWConv, and other GConv / PConv with few channels per group: a direct stencil
//!   (`direct`).
//! - Other PWConv and the rest: im2col bands (none for 1x1) into one GEMM writing straight
//!   into the NCHW output (`gemm_conv`).
//! - PConv `split_cat` writes the conv result and the untouched channels into one output;
//!   `slicing` clones the input once and writes the conv result over its first c_p channels.
//! - With `--features cuda`, the same layers run on the GPU (`cuda`): a direct grouped-conv
//!   kernel and im2col + cuBLAS, compiled by NVRTC at run time.

pub(crate) mod backward;
pub mod blocked;
#[cfg(feature = "cuda")]
mod cuda;
pub mod depthwise;
mod direct;
pub(crate) mod gemm_conv;
mod gpu;
pub mod simd;

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};

use super::{kernel_path, Copies, LayerWeights, OpKind, OpSpec, PConvForward};

/// A convolution's geometry: input channels, map, kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

/// Whether the direct stencil computes a convolution with `cg` channels per group on an
/// `hw`-pixel map (where no register-blocked kernel takes it, see [`conv_kernel`]).
///
/// The direct stencil wins when a group has few channels (its GEMM would be a sliver), or a
/// moderate number on a small map (per-group GEMMs too small to amortise packing). Measured
/// on Table 1's shapes (README, "Native kernels"): GConv g=16 at 384x14x14 (cg = 24,
/// hw = 196) runs 4.3 ms direct vs 5.3 ms GEMM; PConv's 24-channel conv at 96x56x56
/// (hw = 3136) 3.8 ms GEMM vs 5.0 ms direct.
pub fn uses_direct(cg: usize, hw: usize) -> bool {
    cg <= 8 || (cg <= 32 && hw <= 1024)
}

/// The CPU kernels a convolution can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// The direct stencil (`direct.rs`).
    Direct,
    /// im2col bands and a GEMM per group, or a plain GEMM for 1x1 (`gemm_conv.rs`).
    Gemm,
    /// The register-blocked direct convolution with output channels in the lanes
    /// (`blocked.rs`).
    BlockedOc,
    /// The register-blocked direct convolution with pixels in the lanes (`blocked.rs`).
    BlockedPx,
    /// The depthwise convolution with channels in the lanes (`depthwise.rs`).
    BlockedDw,
}

impl ConvKernel {
    /// Every kernel, for tools that time them against each other.
    pub const ALL: [ConvKernel; 5] = [
        ConvKernel::Direct,
        ConvKernel::Gemm,
        ConvKernel::BlockedOc,
        ConvKernel::BlockedPx,
        ConvKernel::BlockedDw,
    ];

    /// The register-blocked kernels' lanes.
    fn lanes(self) -> Option<blocked::Lanes> {
        match self {
            ConvKernel::BlockedOc => Some(blocked::Lanes::Channels),
            ConvKernel::BlockedPx => Some(blocked::Lanes::Pixels),
            ConvKernel::Direct | ConvKernel::Gemm | ConvKernel::BlockedDw => None,
        }
    }

    /// Whether this kernel can run a convolution of `c` channels in `groups` groups on an
    /// h x w map with a k x k kernel here (the register-blocked ones on AVX-512 only, where
    /// they were measured; the depthwise one where each group has one channel).
    pub fn runs(self, c: usize, groups: usize, (h, w): (usize, usize), k: usize) -> bool {
        let avx512 = simd::isa() == simd::Isa::Avx512;
        match (self, self.lanes()) {
            (ConvKernel::BlockedDw, _) => avx512 && c == groups && depthwise::fits(c, (h, w), k),
            (_, None) => true,
            (_, Some(lanes)) => avx512 && blocked::fits(lanes, c / groups, (h, w), k),
        }
    }
}

/// The kernel for a convolution with `cg` channels per group on an h x w map with a k x k
/// kernel: the one rule the dispatcher follows.
///
/// The register-blocked kernels note their own trace labels, with their tiles and
/// schedule; the others note theirs.
///
/// For k > 1 on AVX-512 the depthwise kernel takes depthwise convs (but 3x3 on rows wider
/// than 16), then the register-blocked kernels run wherever their tiles fit, channel lanes
/// first; for 1x1 the channel-lanes kernel where a group's weights outweigh its input planes
/// four times or more (cg >= 4·h·w), else the GEMM. Measured by `cargo bench --bench cutover`
/// on the 112 convolutions of the Table 1 and sweep suites (`results/cpu-xeon-2c-1t-cutover.md`,
/// whose PWConv rows predate the 1x1 paths), this picks, for k > 1, the fastest kernel or one
/// within 3 % of it at one thread everywhere but DWConv 3x3 at 96x56x56 (a 4 % tie given to the
/// stencil), DWConv 5x5 at 192x28x28 (3 %) and PConv 3x3 n_div=2's conv at 96x56x56 (pixel
/// lanes 10 % faster).
///
/// PWConv: the GEMM packs the weights on every call, the channel lanes read them packed once
/// per layer, which pays where the weights are large next to the map. In
/// `results/cpu-xeon-2c-{1,2}t-cutover-pwconv.md` (`--table1 --only pwconv`, under load from
/// elsewhere) the channel lanes ran 768x7x7 (768 >= 4·49) 1.08x faster than the GEMM at 1
/// thread (2.47x at 2, where that run's GEMM was slower than at 1 thread), and the three
/// larger maps 1.02-1.91x slower, so those stay on the GEMM.
pub fn conv_kernel(c: usize, groups: usize, (h, w): (usize, usize), k: usize) -> ConvKernel {
    let order: &[ConvKernel] = if k == 1 {
        if c / groups >= 4 * h * w {
            &[ConvKernel::BlockedOc]
        } else {
            &[]
        }
    } else {
        &[
            ConvKernel::BlockedDw,
            ConvKernel::BlockedOc,
            ConvKernel::BlockedPx,
        ]
    };
    let cg = c / groups;
    // The depthwise kernel's transposes cost as much as a 3x3 sum on wide rows: DWConv 3x3
    // at 192x28x28 ran 0.186 ms against the stencil's 0.134, at 96x56x56 within 4 %; on rows
    // of 14 and 7 it was 1.06x and 2.6x faster (`results/cpu-xeon-2c-1t-cutover.md`, 1
    // thread only).
    let wide_3x3 = k <= 3 && w > 16;
    if let Some(&kernel) = order
        .iter()
        .filter(|&&kern| !(kern == ConvKernel::BlockedDw && wide_3x3))
        .find(|kern| kern.runs(c, groups, (h, w), k))
    {
        kernel
    } else if uses_direct(cg, h * w) {
        ConvKernel::Direct
    } else {
        ConvKernel::Gemm
    }
}

/// One layer of a native operator.
pub struct NativeLayer {
    kind: OpKind,
    weight: Vec<f32>,
    k: usize,
    groups: usize,
    partial: usize,
    forward: PConvForward,
    /// The weights packed for each register-blocked kernel, on its first use (a layer runs
    /// one kernel, so it holds at most one packed copy).
    packed_oc: std::sync::OnceLock<Option<blocked::PackedWeights>>,
    packed_px: std::sync::OnceLock<Option<blocked::PackedWeights>>,
    packed_dw: std::sync::OnceLock<Option<depthwise::PackedDw>>,
    /// A kernel forced by a tool that times kernels against each other (else the
    /// dispatcher's choice).
    forced: Option<ConvKernel>,
    /// The weight on the GPU, uploaded on first use there.
    #[cfg(feature = "cuda")]
    gpu_weight: cuda::GpuWeight,
    /// The im2col workspace on the GPU, reused across forwards.
    #[cfg(feature = "cuda")]
    gpu_workspace: cuda::GpuWorkspace,
}

impl NativeLayer {
    pub fn new(spec: &OpSpec, weights: &LayerWeights) -> Self {
        let (channels, groups) = (spec.conv_channels(), spec.conv_groups());
        Self {
            kind: spec.kind,
            weight: weights.data.clone(),
            k: spec.kernel,
            groups,
            partial: channels,
            forward: spec.forward.unwrap_or(PConvForward::SplitCat),
            packed_oc: Default::default(),
            packed_px: Default::default(),
            packed_dw: Default::default(),
            forced: None,
            #[cfg(feature = "cuda")]
            gpu_weight: Default::default(),
            #[cfg(feature = "cuda")]
            gpu_workspace: Default::default(),
        }
    }

    /// Runs the layer on `n` images of h x w (channels from the buffer size) into `out`,
    /// writing every element.
    pub fn run(&self, x: &[f32], out: &mut [f32], n: usize, h: usize, w: usize) {
        let g = Geometry {
            c: x.len() / (n * h * w),
            h,
            w,
            k: self.k,
        };
        match self.kind {
            OpKind::PConv => self.pconv(x, out, n, g),
            _ => self.conv(x, out, n, g, self.groups),
        }
    }

    /// The same layer always running `kernel`, for tools that time the kernels against each
    /// other; None where `kernel` cannot run this layer's shape on this CPU.
    pub fn forced(spec: &OpSpec, weights: &LayerWeights, kernel: ConvKernel) -> Option<Self> {
        kernel
            .runs(
                spec.conv_channels(),
                spec.conv_groups(),
                (spec.map.h, spec.map.w),
                spec.kernel,
            )
            .then(|| Self {
                forced: Some(kernel),
                ..Self::new(spec, weights)
            })
    }

    /// The kernel for the `g.c` channels of `g` in `groups` groups.
    fn kernel(&self, groups: usize, g: &Geometry) -> ConvKernel {
        self.forced
            .unwrap_or_else(|| conv_kernel(g.c, groups, (g.h, g.w), g.k))
    }

    /// A convolution with `groups` groups on `n` images of `g.c` channels.
    fn conv(&self, x: &[f32], out: &mut [f32], n: usize, g: Geometry, groups: usize) {
        let image = g.c * g.h * g.w;
        match self.kernel(groups, &g) {
            ConvKernel::Direct => {
                kernel_path::note(kernel_path::DIRECT);
                direct::grouped_conv(x, &self.weight, out, n, &g, groups);
            }
            ConvKernel::BlockedDw => {
                let weights = self
                    .packed_dw
                    .get_or_init(|| depthwise::PackedDw::new(&self.weight, g.c, g.k))
                    .as_ref()
                    .expect("the dispatcher picks the depthwise kernel only where it fits");
                depthwise::Depthwise {
                    x,
                    x_image: image,
                    weights,
                    g,
                }
                .run(out, image, n)
            }
            kernel => self.strided(kernel, (x, image), (out, image), n, g, groups),
        }
    }

    /// The GEMM or register-blocked kernel on `n` images read from `x` and written to `out`
    /// at the given image strides (PConv's prefix of wider tensors); each notes itself with
    /// its schedule.
    fn strided(
        &self,
        kernel: ConvKernel,
        (x, x_image): (&[f32], usize),
        (out, out_image): (&mut [f32], usize),
        n: usize,
        g: Geometry,
        groups: usize,
    ) {
        let (cell, lanes) = match kernel {
            ConvKernel::BlockedOc => (&self.packed_oc, blocked::Lanes::Channels),
            ConvKernel::BlockedPx => (&self.packed_px, blocked::Lanes::Pixels),
            // PConv's partial conv has c_p channels in one group: never depthwise.
            ConvKernel::BlockedDw => unreachable!("the depthwise kernel runs whole layers"),
            ConvKernel::Direct | ConvKernel::Gemm => {
                return gemm_conv::Conv {
                    x,
                    x_image,
                    weight: &self.weight,
                    groups,
                    g,
                }
                .run(out, out_image, n)
            }
        };
        let weights = cell
            .get_or_init(|| blocked::PackedWeights::new(&self.weight, g.c, groups, g.k, lanes))
            .as_ref()
            .expect("the dispatcher picks a blocked kernel only where its tiles fit");
        blocked::Blocked {
            x,
            x_image,
            weights,
            groups,
            g,
        }
        .run(out, out_image, n)
    }

    /// PConv: the partial conv on channels 0..c_p, the rest passed through.
    fn pconv(&self, x: &[f32], out: &mut [f32], n: usize, g: Geometry) {
        let (c, cp, hw) = (g.c, self.partial, g.h * g.w);
        let image = c * hw;
        let copy_from = match self.forward {
            PConvForward::SplitCat => cp, // only the untouched channels
            PConvForward::Slicing => 0,   // the clone: every channel
        };
        copy_channels(x, out, (n, image), copy_from * hw..image);
        let partial = Geometry { c: cp, ..g };
        match self.kernel(1, &partial) {
            ConvKernel::Direct => {
                kernel_path::note(kernel_path::DIRECT);
                // The direct kernel wants dense images of c_p channels: gather them.
                let head: Vec<f32> = (0..n)
                    .flat_map(|b| x[b * image..][..cp * hw].iter().copied())
                    .collect();
                let mut y = vec![0.0; head.len()];
                direct::grouped_conv(&head, &self.weight, &mut y, n, &partial, 1);
                for b in 0..n {
                    out[b * image..][..cp * hw].copy_from_slice(&y[b * cp * hw..][..cp * hw]);
                }
            }
            kernel => self.strided(kernel, (x, image), (out, image), n, partial, 1),
        }
    }
}

/// Copies elements `range` of each of `n` images (`image` floats apart) from `x` to `out`,
/// split over the current pool's threads: a serial copy would hold PConv's scaling on two
/// threads to 1.1-1.6x (`results/cpu-xeon-2c-table1-threads.json` at 3d0b75a).
fn copy_channels(
    x: &[f32],
    out: &mut [f32],
    (n, image): (usize, usize),
    range: std::ops::Range<usize>,
) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let len = range.len();
    if len == 0 {
        return;
    }
    // Pieces of at least 16 Ki floats, about two per thread per image.
    let piece = len.div_ceil(2 * threads).max(1 << 14);
    for b in 0..n {
        let (from, to) = (
            &x[b * image + range.start..][..len],
            &mut out[b * image + range.start..][..len],
        );
        if threads > 1 && len > piece {
            to.par_chunks_mut(piece)
                .zip(from.par_chunks(piece))
                .for_each(|(t, f)| t.copy_from_slice(f));
        } else {
            to.copy_from_slice(from);
        }
    }
}

/// Allocates an output of `len` floats, lets `fill` write every element, and returns it.
///
/// The memory is not zeroed first: measured on Table 1's DWConv (96x56x56, 10 layers) a
/// zeroed buffer costs 1.5 -> 2.4 ms, a memset no framework pays (PyTorch's `at::empty`
/// and candle's own kernels do the same). Every kernel here writes its whole output before
/// anything reads it: the verification suite compares every element with the reference.
pub(crate) fn with_output(len: usize, fill: impl FnOnce(&mut [f32])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the spare capacity holds `len` floats; f32 has no invalid bit patterns, and
    // `fill` only writes through the slice before `set_len` exposes it (candle's
    // `unary_map_vec_par` uses the same pattern).
    let out = unsafe {
        std::slice::from_raw_parts_mut(v.spare_capacity_mut().as_mut_ptr().cast::<f32>(), len)
    };
    fill(out);
    // SAFETY: `fill` wrote all `len` elements (every kernel covers its whole output).
    unsafe { v.set_len(len) };
    v
}

/// GEMM parallelism for the current rayon pool.
pub(crate) fn gemm_parallelism() -> gemm::Parallelism {
    match rayon::current_num_threads() {
        1 => gemm::Parallelism::None,
        threads => gemm::Parallelism::Rayon(threads),
    }
}

/// Adds a per-channel bias and applies `act` in place to planes of `hw` values (channel i
/// of the buffer takes `bias[i % bias.len()]`), vectorised, planes in parallel on the
/// current pool.
pub(crate) fn bias_act(buf: &mut [f32], bias: &[f32], hw: usize, act: crate::ops::Act) {
    use rayon::prelude::*;
    let one =
        |(i, plane): (usize, &mut [f32])| simd::bias_act_plane(plane, bias[i % bias.len()], act);
    if rayon::current_num_threads() > 1 {
        buf.par_chunks_mut(hw).enumerate().for_each(one);
    } else {
        buf.chunks_mut(hw).enumerate().for_each(one);
    }
}

/// The f32 data of a contiguous input, as every native kernel wants it.
pub(crate) fn f32_input<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("native kernels run f32 only")
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("native kernels need a contiguous input")
    };
    Ok(&data[start..end])
}

/// A native forward of a whole batch: every native layer, block and network implements it,
/// and [`Native`] makes it a candle op.
pub(crate) trait NativeForward: Send + Sync {
    /// The op's name for candle.
    const NAME: &'static str;
    /// The output of `x`, a dense (n, c, h, w) batch on the host, and its shape.
    fn forward_batch(&self, x: &[f32], dims: (usize, usize, usize, usize)) -> (Vec<f32>, Shape);
    /// The forward on a CUDA device, for ops that have one.
    #[cfg(feature = "cuda")]
    fn cuda_forward(
        &self,
        _storage: &candle_core::CudaStorage,
        _layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        candle_core::bail!("{} runs on the CPU only", Self::NAME)
    }
}

/// A [`NativeForward`] as a candle op and module (no backward).
pub(crate) struct Native<T>(pub T);

impl<T: NativeForward> CustomOp1 for Native<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_input(storage, layout)?;
        let (out, shape) = self.0.forward_batch(x, layout.shape().dims4()?);
        Ok((CpuStorage::F32(out), shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        self.0.cuda_forward(storage, layout)
    }
}

impl<T: NativeForward> Module for Native<T> {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }
}

impl NativeForward for NativeLayer {
    const NAME: &'static str = "pconv-bench-native";

    fn forward_batch(&self, x: &[f32], dims: (usize, usize, usize, usize)) -> (Vec<f32>, Shape) {
        let (n, _, h, w) = dims;
        let out = with_output(x.len(), |out| self.run(x, out, n, h, w));
        (out, Shape::from(dims))
    }

    #[cfg(feature = "cuda")]
    fn cuda_forward(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::forward(self, storage, layout)
    }
}

/// What the native forwards copy beyond the paper's model (reads plus writes, per image).
pub fn copies(spec: &OpSpec) -> Copies {
    if spec.kind != OpKind::PConv {
        return Copies::default();
    }
    let hw = (spec.map.h * spec.map.w) as u64;
    let c = spec.map.c as u64;
    let cp = spec.conv_channels() as u64;
    match spec.forward.unwrap_or(PConvForward::SplitCat) {
        PConvForward::SplitCat => Copies {
            elements_per_image: 2 * (c - cp) * hw,
            description: "the c - c_p untouched channels are copied into the output".into(),
        },
        PConvForward::Slicing => Copies {
            elements_per_image: 2 * c * hw,
            description: "clone copies all c channels; the conv writes over the first c_p in place"
                .into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::reference::{compare, reference_forward};
    use crate::ops::{self, FeatureMap};

    /// A single operator for the native kernels' tests (here and in `gpu.rs`).
    pub(super) fn spec(
        kind: OpKind,
        map: &str,
        k: usize,
        groups: Option<usize>,
        n_div: Option<usize>,
        fwd: PConvForward,
    ) -> OpSpec {
        OpSpec {
            kind,
            kernel: k,
            groups,
            n_div,
            forward: (kind == OpKind::PConv).then_some(fwd),
            expansion: None,
            act: None,
            bottlenecks: None,
            model: None,
            map: map.parse().unwrap(),
        }
    }

    /// Runs every kernel that can run `s` here (each forced, whatever the dispatcher would
    /// pick) on full-size maps (so GEMM bands split and the direct kernel's junk columns
    /// matter) against the f64 reference, on `threads` threads; returns the kernels that ran.
    fn check(s: &OpSpec, n: usize, threads: usize) -> Vec<ConvKernel> {
        let FeatureMap { c, h, w } = s.map;
        let weights = ops::random_weights(s, 1, 11);
        let x = ops::uniform(n * c * h * w, 1.0, &mut ops::seeded_rng(5));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let reference = reference_forward(s, &wide(&weights[0].data), &wide(&x), n);
        let mut ran = Vec::new();
        for kernel in ConvKernel::ALL {
            let Some(layer) = NativeLayer::forced(s, &weights[0], kernel) else {
                continue;
            };
            let mut out = vec![f32::NAN; x.len()];
            pool.install(|| layer.run(&x, &mut out, n, h, w));
            let (_, rel) = compare(&wide(&out), &reference);
            assert!(
                rel < 1e-5,
                "{} {} at {} (n={n}, {threads} threads, {kernel:?}): rel err {rel}",
                s.kind,
                s.variant(),
                s.map
            );
            ran.push(kernel);
        }
        ran
    }

    #[test]
    fn the_dispatcher_sends_depthwise_convs_where_the_cut_over_bench_says() {
        use ConvKernel::{BlockedDw, BlockedOc, Direct, Gemm};
        let avx512 = simd::isa() == simd::Isa::Avx512;
        let on_avx512 = |k: ConvKernel| if avx512 { k } else { Direct };
        // (c, groups, map, k), the kernel on AVX-512 (the stencil elsewhere).
        let cases = [
            ((96, 96, (56, 56), 7), on_avx512(BlockedDw)),
            ((96, 96, (56, 56), 3), Direct), // 3x3 on rows wider than 16
            ((32, 32, (20, 17), 3), Direct),
            ((32, 32, (20, 16), 3), on_avx512(BlockedDw)),
            ((768, 768, (7, 7), 3), on_avx512(BlockedDw)),
            ((192, 192, (28, 28), 5), on_avx512(BlockedDw)),
            ((24, 24, (14, 14), 5), Direct), // 24 channels: no block of 16
            ((32, 32, (14, 6), 5), Direct),  // rows shorter than a tile
        ];
        for ((c, groups, hw, k), want) in cases {
            assert_eq!(
                conv_kernel(c, groups, hw, k),
                want,
                "{c}/{groups} {hw:?} k={k}"
            );
        }
        // Not depthwise: the other rules, unchanged.
        let dense = conv_kernel(96, 1, (56, 56), 3);
        assert_eq!(dense, if avx512 { BlockedOc } else { Gemm });
        assert_eq!(conv_kernel(96, 96, (56, 56), 1), Direct);
        // PWConv: channel lanes where cg >= 4·h·w, else the GEMM.
        for (c, hw, small) in [
            (768, (7, 7), true),
            (784, (14, 14), true),
            (768, (14, 14), false),
            (384, (14, 14), false),
            (192, (28, 28), false),
            (96, (56, 56), false),
        ] {
            let want = if small && avx512 { BlockedOc } else { Gemm };
            assert_eq!(conv_kernel(c, 1, hw, 1), want, "PWConv {c}x{hw:?}");
        }
    }

    #[test]
    fn native_kernels_match_the_reference_on_full_size_maps() {
        use PConvForward::{Slicing, SplitCat};
        let cases = [
            spec(OpKind::Conv, "40x37x29", 3, None, None, SplitCat), // GEMM: two bands per image
            spec(OpKind::Conv, "24x24x24", 5, None, None, SplitCat), // C == H == W
            spec(OpKind::Conv, "6x9x11", 7, None, None, SplitCat),   // cg <= 8
            spec(OpKind::PWConv, "33x13x17", 1, None, None, SplitCat),
            spec(OpKind::DWConv, "19x31x23", 3, None, None, SplitCat),
            spec(OpKind::DWConv, "16x7x7", 7, None, None, SplitCat),
            spec(OpKind::DWConv, "5x12x12", 9, None, None, SplitCat), // run-time kernel size
            spec(OpKind::GConv, "96x20x20", 3, Some(16), None, SplitCat), // stencil blocks of 2
            spec(OpKind::GConv, "96x9x9", 5, Some(4), None, SplitCat), // stencil blocks of 4
            spec(OpKind::GConv, "96x40x40", 3, Some(2), None, SplitCat), // a GEMM per group
            spec(OpKind::PConv, "70x33x31", 3, None, Some(2), Slicing), // c_p = 35: no tile
            spec(OpKind::PConv, "70x33x31", 3, None, Some(2), SplitCat),
            spec(OpKind::PConv, "10x15x15", 5, None, Some(3), SplitCat), // 3 does not divide 10
            spec(OpKind::PConv, "10x15x15", 1, None, Some(3), Slicing),
        ];
        for s in &cases {
            check(s, 2, 1);
            check(s, 3, 2);
            let ran = check(s, 1, 2);
            assert!(
                ran.starts_with(&[ConvKernel::Direct, ConvKernel::Gemm]),
                "{ran:?}"
            );
        }
        // PConv through the blocked kernels, reading and writing a channel prefix of wider
        // images: c_p = 48 fits both tiles.
        let s = spec(OpKind::PConv, "96x10x12", 3, None, Some(2), SplitCat);
        let ran = check(&s, 3, 2);
        if simd::isa() == simd::Isa::Avx512 {
            assert_eq!(
                ran,
                ConvKernel::ALL[..4],
                "every kernel but the depthwise runs c_p = 48"
            );
        }
        // DWConv through the depthwise kernel: 32 channels, rows of 20 (tiles of 8).
        let s = spec(OpKind::DWConv, "32x9x20", 5, None, None, SplitCat);
        let ran = check(&s, 3, 2);
        if simd::isa() == simd::Isa::Avx512 {
            assert_eq!(
                ran,
                [ConvKernel::Direct, ConvKernel::Gemm, ConvKernel::BlockedDw]
            );
        }
        check(
            &spec(OpKind::PConv, "96x10x12", 3, None, Some(2), Slicing),
            2,
            1,
        );
    }
}
