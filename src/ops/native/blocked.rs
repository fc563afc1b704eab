//! Direct convolutions register-blocked over output channels × pixels, the shape of
//! oneDNN's JIT kernels: a tile keeps 8-24 accumulator registers (of AVX-512's 32) for the
//! whole reduction over input channels and taps, each step loading a few vectors and
//! broadcasting a few scalars into R x P fused multiply-adds. No im2col: inputs are read
//! through offsets into a zero-padded copy of the image (for 1 x 1, which needs no padding,
//! from the input planes in place or from a packed panel of them, see `Job::unit`). Two
//! layouts of a tile:
//!
//! - **Channels** (`blocked_oc`): lanes are 16 output channels, V = 1-3 registers of them by
//!   P = 7-10 pixels. Each step loads V vectors of weights and broadcasts P input values; any
//!   P consecutive output pixels make a tile (each read through its own offset), so 7 x 7
//!   and 14 x 14 maps waste nothing on junk columns. Results are transposed in registers
//!   into rows of 8 pixels per channel and stored as such into the NCHW output. For
//!   many input channels the reduction runs in passes whose weights stay in L1, partial sums
//!   kept per super-block of tiles; the weights of the steps ahead are prefetched.
//! - **Pixels** (`blocked_px`): lanes are 16 consecutive positions of the flattened padded
//!   plane, R = 6 or 4 output channels by P = 4 or 6 vectors. Each step loads P input
//!   vectors and broadcasts R weights: suits groups with few channels (GConv, PConv's small
//!   c_p). Junk columns (the padding) land in scratch and are dropped by a row copy (1 x 1
//!   has none: its tiles store straight into the output).
//!
//! Weights are repacked per tile as [input channel][tap][output channel of the tile]. The
//! dispatcher (`super::conv_kernel`) picks these kernels on AVX-512 only, where they were
//! measured; a portable version of each loop (scalar, any CPU) checks their indexing in tests
//! on any machine.

use rayon::prelude::*;

use super::gemm_conv::OutPtr;
use super::simd::{isa, Isa};
use super::Geometry;
use crate::ops::kernel_path;

/// f32 lanes of one AVX-512 register.
pub(super) const LANES: usize = 16;

/// Which dimension a kernel's vector lanes run along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// Lanes are 16 output channels; each pixel's input is broadcast. Tiles of 16·V
    /// channels by P pixels, any P consecutive pixels: no junk columns, so small maps waste
    /// little, and wide weight tiles suit many channels per group.
    Channels,
    /// Lanes are 16 consecutive positions of the flattened padded plane (junk columns
    /// dropped afterwards); each weight is broadcast. Tiles of R channels by P vectors: few
    /// channels per group (R = 6 or 4) and 1x1 convolutions, read and written as contiguous
    /// vectors.
    Pixels,
}

/// Output channels of a tile for `cg` channels per group, or None where the lanes do not
/// divide them: 48, 32 or 16 (Channels, the widest reuses each broadcast input most), 6 or 4
/// (Pixels).
pub fn tile_channels(lanes: Lanes, cg: usize) -> Option<usize> {
    let widths: &[usize] = match lanes {
        Lanes::Channels => &[3 * LANES, 2 * LANES, LANES],
        Lanes::Pixels => &[6, 4],
    };
    widths.iter().copied().find(|&t| cg.is_multiple_of(t))
}

/// Pixels of a Channels tile `t` channels wide on an `hw`-pixel map. 48 channels: 8 pixels
/// (24 accumulators of the 32 registers), or 7 where that tiles the map with less overlap (49
/// pixels: 7 x 7 instead of 7 x 8). 32 channels: 10 pixels (20 accumulators; at 14 the
/// compiler hoists the broadcasts and spills accumulators: 92 GFLOP/s against 171 for 10 on
/// L1-resident data, in a one-off in-process test). 16 channels:
/// 8 pixels (a tile of one register is bound by its loads, one per multiply-add, whatever
/// its width; more pixels only add offsets the registers cannot hold).
pub fn channel_tile_pixels(t: usize, hw: usize) -> usize {
    let candidates: &[usize] = match t / LANES {
        3 => &[8, 7],
        2 => &[10],
        _ => &[8],
    };
    *candidates
        .iter()
        .min_by_key(|&&p| hw.div_ceil(p) * p)
        .expect("a candidate")
}

/// Vectors of pixels of a Pixels tile `r` channels wide: 24 accumulators.
fn pixel_tile_vectors(r: usize) -> usize {
    24 / r
}

/// Floats of the flattened padded plane from the first output's window corner to the last
/// output's: what a Pixels kernel sweeps (h >= 1).
fn flat_outputs(h: usize, w: usize, k: usize) -> usize {
    (h - 1) * (w + 2 * (k / 2)) + w
}

/// Whether the kernel with `lanes` can run `cg` channels per group on an h x w map with a
/// k x k kernel: whole tiles of channels and at least one tile of pixels.
pub fn fits(lanes: Lanes, cg: usize, (h, w): (usize, usize), k: usize) -> bool {
    let hw = h * w;
    match (lanes, tile_channels(lanes, cg)) {
        (_, None) => false,
        _ if hw == 0 || k.is_multiple_of(2) => false,
        (Lanes::Channels, Some(t)) => hw >= channel_tile_pixels(t, hw),
        (Lanes::Pixels, Some(r)) => flat_outputs(h, w, k) >= pixel_tile_vectors(r) * LANES,
    }
}

/// A layer's weights (c, c / groups, k, k) repacked per tile: for group `grp` and tile `t`,
/// `[input channel][tap][output channel of the tile]`, so one step of a kernel reads its
/// weights contiguously.
#[derive(Debug, Clone)]
pub struct PackedWeights {
    data: Vec<f32>,
    /// Output channels per tile.
    tile: usize,
    lanes: Lanes,
}

impl PackedWeights {
    /// Packs `weight` ((c, c / groups, k, k), row-major) for the kernel with `lanes`, or None
    /// where its tiles do not divide the channels per group.
    pub fn new(weight: &[f32], c: usize, groups: usize, k: usize, lanes: Lanes) -> Option<Self> {
        let cg = c / groups;
        let tile = tile_channels(lanes, cg)?;
        let kk = k * k;
        assert_eq!(weight.len(), c * cg * kk, "weight shape");
        let mut data = vec![0.0; weight.len()];
        // Destination index ((tile_index·cg + ci)·kk + tap)·tile + lane, with tile_index
        // running over every group's tiles in order (grp · tiles + t): the output channel
        // tile_index·tile + lane.
        for (oc, row) in weight.chunks_exact(cg * kk).enumerate() {
            let (tile_index, lane) = (oc / tile, oc % tile);
            for (ci, taps) in row.chunks_exact(kk).enumerate() {
                for (tap, &v) in taps.iter().enumerate() {
                    data[((tile_index * cg + ci) * kk + tap) * tile + lane] = v;
                }
            }
        }
        Some(Self { data, tile, lanes })
    }

    /// Output channels per tile.
    pub fn tile(&self) -> usize {
        self.tile
    }
}

/// What one tile reads and writes.
struct Tile<'a> {
    /// The tile's first input channel of this pass, in the unit's padded slab (for 1 x 1:
    /// in the input planes themselves).
    src: *const f32,
    /// Floats between consecutive input planes.
    plane_stride: usize,
    /// Input channels this pass reduces over.
    channels: usize,
    /// Offset of each tap (ky · row stride + kx) from a pixel's window corner.
    taps: &'a [usize],
    /// The packed weights of those input channels: channels · taps · tile floats.
    w: &'a [f32],
    /// Each pixel's window corner in the source plane.
    off: &'a [usize],
    /// Partial sums of the earlier passes, `[pixel][output channel]`: read unless this is the
    /// first pass, written unless it is the last.
    partial: *mut f32,
    first: bool,
    /// On the last pass the sums go to the output instead: channel 0 of the tile at the
    /// tile's first pixel, channel o at + o · hw.
    last: Option<*mut f32>,
    hw: usize,
}

/// The AVX-512 tile: V registers of channels by P pixels.
///
/// # Safety
/// The CPU has AVX-512F; every `src + ci·plane_stride + off[j] + tap` for ci < channels lies
/// in the source; `partial` holds P · 16·V floats; `last + o·hw + j` for o < 16·V, j < P lies
/// in the output; no one else touches those elements during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const V: usize, const P: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    assert!(t.off.len() == P && t.w.len() == t.channels * t.taps.len() * V * LANES);
    let mut off = [0usize; P];
    off.copy_from_slice(t.off);
    let mut acc = [[_mm512_setzero_ps(); V]; P];
    if !t.first {
        for (j, regs) in acc.iter_mut().enumerate() {
            for (v, r) in regs.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(t.partial.add((j * V + v) * LANES));
            }
        }
    }
    let mut w = t.w.as_ptr();
    for ci in 0..t.channels {
        let plane = t.src.add(ci * t.plane_stride);
        for &tap in t.taps {
            let s = plane.add(tap);
            let mut wv = [_mm512_setzero_ps(); V];
            for (v, r) in wv.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(w.add(v * LANES));
                // Where the weights do not stay in cache (768 channels: 21 MB a layer) the
                // stream is fetched 16 steps ahead (past the end: a prefetch does not fault).
                _mm_prefetch::<_MM_HINT_T0>(
                    w.wrapping_add((PREFETCH_STEPS * V + v) * LANES).cast(),
                );
            }
            w = w.add(V * LANES);
            for j in 0..P {
                let x = _mm512_set1_ps(*s.add(off[j]));
                for v in 0..V {
                    acc[j][v] = _mm512_fmadd_ps(wv[v], x, acc[j][v]);
                }
            }
        }
    }
    match t.last {
        Some(out) => store_transposed(&acc, out, t.hw),
        None => {
            for (j, regs) in acc.iter().enumerate() {
                for (v, r) in regs.iter().enumerate() {
                    _mm512_storeu_ps(t.partial.add((j * V + v) * LANES), *r);
                }
            }
        }
    }
}

/// Steps (input channel, tap) of a Channels tile between a weight load and its prefetch.
#[cfg(target_arch = "x86_64")]
const PREFETCH_STEPS: usize = 16;

/// Writes a Channels tile's sums into the output planes: `acc[j][v]` holds channels
/// 16·v..16·v + 16 of pixel j, and channel o's P pixels go to `out + o·hw` onward. Each 8
/// pixels of 16 channels are transposed in registers (two 8 x 8 transposes at once, one per
/// half of the register) into 16 rows of 8, each stored by one 256-bit store (fewer than 8
/// pixels: under a mask). A scatter per register cost about 6 % of Conv 3x3 at 96x56x56
/// (a one-off in-process A/B of the whole convolution with and without its scatters).
///
/// # Safety
/// The CPU has AVX-512F; `out + o·hw + j` for o < 16·V, j < P lies in a buffer no one else
/// touches during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
// v picks the register within each pixel's row of `acc`, not a row of it.
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn store_transposed<const V: usize, const P: usize>(
    acc: &[[std::arch::x86_64::__m512; V]; P],
    out: *mut f32,
    hw: usize,
) {
    use std::arch::x86_64::*;
    // By 128-bit quarters: lo = (a.0, b.0, a.1, b.1), hi = (a.2, b.2, a.3, b.3).
    let lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let hi = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for v in 0..V {
        for g in (0..P).step_by(8) {
            let n = (P - g).min(8);
            let r: [__m512; 8] = std::array::from_fn(|i| {
                if g + i < P {
                    acc[g + i][v]
                } else {
                    _mm512_setzero_ps()
                }
            });
            // Within each quarter q (channels 4q..4q + 4), u[m] holds pixels 0..4 of channel
            // 4q + m, u[4 + m] pixels 4..8.
            let u = transpose_quarters(r);
            let mask: __mmask16 = (1 << n) - 1;
            let base = out.add(v * LANES * hw + g);
            for m in 0..4 {
                // Channel m's 8 pixels, then channel 4 + m's; channel 8 + m's, then 12 + m's.
                let a = _mm512_permutex2var_ps(u[m], lo, u[4 + m]);
                let b = _mm512_permutex2var_ps(u[m], hi, u[4 + m]);
                for (z, o) in [(a, m), (b, 8 + m)] {
                    let (p, q) = (base.add(o * hw), base.add((o + 4) * hw));
                    let high = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(z));
                    if n == 8 {
                        _mm256_storeu_ps(p, _mm512_castps512_ps256(z));
                        _mm256_storeu_ps(q, _mm256_castpd_ps(high));
                    } else {
                        // The masked-off lanes touch no memory.
                        _mm512_mask_storeu_ps(p, mask, z);
                        let high = _mm512_castpd_ps(_mm512_castpd256_pd512(high));
                        _mm512_mask_storeu_ps(q, mask, high);
                    }
                }
            }
        }
    }
}

/// Two 4 x 4 transposes in every 128-bit quarter: within a quarter, element e of `r[4h + i]`
/// becomes element i of the result's `4h + e` (h = 0, 1). An involution: applied twice it
/// gives `r` back, so it both spreads pixels' channel vectors into channel rows and gathers
/// them back.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn transpose_quarters(
    r: [std::arch::x86_64::__m512; 8],
) -> [std::arch::x86_64::__m512; 8] {
    use std::arch::x86_64::*;
    // t[2i], t[2i + 1] interleave r[2i] and r[2i + 1],
    let t: [__m512; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // then pairs of those make the columns.
    std::array::from_fn(|i| {
        let (a, b) = (t[i / 4 * 4 + i % 4 / 2], t[i / 4 * 4 + i % 4 / 2 + 2]);
        if i % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(a, b)
        } else {
            _mm512_shuffle_ps::<0xEE>(a, b)
        }
    })
}

/// The same tile one sum at a time, for any CPU: `tile` output channels by `off.len()`
/// pixels, in the AVX-512 version's order of summation.
///
/// # Safety
/// As [`tile_avx512`], less the CPU requirement.
unsafe fn tile_portable(t: &Tile, tile: usize) {
    let steps = t.channels * t.taps.len();
    for (j, &off) in t.off.iter().enumerate() {
        for o in 0..tile {
            let mut a = if t.first {
                0f32
            } else {
                *t.partial.add(j * tile + o)
            };
            for step in 0..steps {
                let (ci, tap) = (step / t.taps.len(), t.taps[step % t.taps.len()]);
                let x = *t.src.add(ci * t.plane_stride + off + tap);
                a = t.w[step * tile + o].mul_add(x, a);
            }
            match t.last {
                Some(out) => *out.add(o * t.hw + j) = a,
                None => *t.partial.add(j * tile + o) = a,
            }
        }
    }
}

/// Runs one tile with the instruction set `isa` (AVX-512, or the portable loop otherwise).
///
/// # Safety
/// As [`tile_avx512`].
unsafe fn run_tile(t: &Tile, channels: usize, isa: Isa) {
    match (isa, channels / LANES) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) if t.off.len() == 8 => tile_avx512::<3, 8>(t),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) if t.off.len() == 7 => tile_avx512::<3, 7>(t),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 2) if t.off.len() == 10 => tile_avx512::<2, 10>(t),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 1) if t.off.len() == 8 => tile_avx512::<1, 8>(t),
        _ => tile_portable(t, channels),
    }
}

/// What one Pixels tile reads and writes: R channels by P vectors of 16 consecutive
/// positions of the flattened source planes.
struct PixelTile<'a> {
    /// Input channel 0 of the group at the tile's first position (its window corner).
    src: *const f32,
    plane_stride: usize,
    channels: usize,
    taps: &'a [usize],
    /// The tile's packed weights: channels · taps · R floats.
    w: &'a [f32],
    /// Output channel 0 at the tile's first position; channel r at + r · out_stride.
    out: *mut f32,
    out_stride: usize,
}

/// The AVX-512 Pixels tile: R channels by P vectors.
///
/// # Safety
/// The CPU has AVX-512F; `src + ci·plane_stride + tap + i` for ci < channels, i < 16·P lies
/// in the source; `out + r·out_stride + i` for r < R, i < 16·P lies in a buffer no one else
/// touches during the call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pixels_avx512<const R: usize, const P: usize>(t: &PixelTile) {
    use std::arch::x86_64::*;
    assert!(t.w.len() == t.channels * t.taps.len() * R);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    let mut w = t.w.as_ptr();
    for ci in 0..t.channels {
        let plane = t.src.add(ci * t.plane_stride);
        for &tap in t.taps {
            let s = plane.add(tap);
            let mut xv = [_mm512_setzero_ps(); P];
            for (p, v) in xv.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(s.add(p * LANES));
            }
            for (r, regs) in acc.iter_mut().enumerate() {
                let wb = _mm512_set1_ps(*w.add(r));
                for (a, x) in regs.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(wb, *x, *a);
                }
            }
            w = w.add(R);
        }
    }
    for (r, regs) in acc.iter().enumerate() {
        for (p, a) in regs.iter().enumerate() {
            _mm512_storeu_ps(t.out.add(r * t.out_stride + p * LANES), *a);
        }
    }
}

/// The same tile one sum at a time, for any CPU, in the AVX-512 version's order.
///
/// # Safety
/// As [`pixels_avx512`], less the CPU requirement.
unsafe fn pixels_portable(t: &PixelTile, r: usize, positions: usize) {
    let steps = t.channels * t.taps.len();
    for o in 0..r {
        for i in 0..positions {
            let mut a = 0f32;
            for step in 0..steps {
                let (ci, tap) = (step / t.taps.len(), t.taps[step % t.taps.len()]);
                let x = *t.src.add(ci * t.plane_stride + tap + i);
                a = t.w[step * r + o].mul_add(x, a);
            }
            *t.out.add(o * t.out_stride + i) = a;
        }
    }
}

/// Runs one Pixels tile `r` channels wide with the instruction set `isa`.
///
/// # Safety
/// As [`pixels_avx512`].
unsafe fn run_pixel_tile(t: &PixelTile, r: usize, isa: Isa) {
    match (isa, r) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 6) => pixels_avx512::<6, 4>(t),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 4) => pixels_avx512::<4, 6>(t),
        _ => pixels_portable(t, r, pixel_tile_vectors(r) * LANES),
    }
}

/// Floats of weights one pass over input channels may use (24 KiB, half of L1).
const L1_WEIGHT_FLOATS: usize = 6 * 1024;

/// Tiles that share one pass's weights before the next pass (their partial sums, at most
/// 32 tiles of 8 x 48 floats, stay in L2).
const SUPER_BLOCK_TILES: usize = 32;

thread_local! {
    /// Each worker's padded slab: its unit's rows (plus the kernel's halo) of its group's
    /// input planes, kept between calls; every element is rewritten. For 1 x 1 Pixels tiles:
    /// the packed panel (after up to 15 floats skipped to align it, never read).
    static SLAB: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Each worker's scratch, kept between calls: a Channels super-block's partial sums
    /// (the first pass writes what later passes read) or a Pixels tile's rows with their
    /// junk columns (written before they are read).
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's slab (the depthwise kernel's too), at least `len` floats.
pub(super) fn with_slab<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SLAB, len, f)
}

/// Runs `f` with this thread's buffer `key`, grown to at least `len` floats.
fn with_buffer<R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        let result = f(&mut buf[..len]);
        // A huge map's buffer is not kept for the points after it.
        if buf.len() > KEPT_BUFFER_FLOATS {
            *buf = Vec::new();
        }
        result
    })
}

/// Largest per-thread buffer kept between calls (16 MiB, as much as four im2col bands).
const KEPT_BUFFER_FLOATS: usize = 1 << 22;

/// A grouped convolution (groups = 1: dense) of `g.c` channels in and out on `n` images,
/// with the same strided input and output as [`super::gemm_conv::Conv`].
pub struct Blocked<'a> {
    pub x: &'a [f32],
    pub x_image: usize,
    pub weights: &'a PackedWeights,
    pub groups: usize,
    pub g: Geometry,
}

impl Blocked<'_> {
    /// Runs on the current rayon pool with this CPU's instruction set.
    pub fn run(&self, out: &mut [f32], out_image: usize, n: usize) {
        self.run_with(out, out_image, n, isa())
    }

    /// Runs with the tiles of instruction set `isa` (tests run the portable loops too).
    ///
    /// Work units are (image, group, slice of tiles, chunk of output rows): each pads its
    /// own rows (with the kernel's halo) of its group's input into a private slab, then runs
    /// its tiles over them, so a worker reads what it padded and nothing crosses cores
    /// (for 1 x 1: no slab, see `Job::unit`).
    pub(crate) fn run_with(&self, out: &mut [f32], out_image: usize, n: usize, isa: Isa) {
        let Geometry { c, h, w, k } = self.g;
        let (hw, cg, t, lanes) = (
            h * w,
            c / self.groups,
            self.weights.tile,
            self.weights.lanes,
        );
        assert!(
            fits(lanes, cg, (h, w), k) && tile_channels(lanes, cg) == Some(t),
            "tile shape"
        );
        assert_eq!(self.weights.data.len(), c * cg * k * k, "weight shape");
        assert!(
            out.len() >= (n - 1) * out_image + c * hw,
            "output too small"
        );
        assert!(
            self.x.len() >= (n - 1) * self.x_image + c * hw,
            "input too small"
        );
        // Images' outputs must not overlap: units of different images run concurrently.
        assert!(n <= 1 || out_image >= c * hw, "output images overlap");
        let wp = w + 2 * (k / 2);
        let threads = rayon::current_num_threads();
        let (shape, min_rows, path) = match lanes {
            Lanes::Channels => {
                let px = channel_tile_pixels(t, hw);
                (px, px.div_ceil(w), kernel_path::BLOCKED_OC)
            }
            Lanes::Pixels => {
                let span = pixel_tile_vectors(t) * LANES;
                (span, span.div_ceil(wp) + 1, kernel_path::BLOCKED_PX)
            }
        };
        // With several threads and fewer (image, group) pairs than twice the threads, each
        // pair is split, into slices of its tiles (each slice pads the group's rows itself,
        // but for 1 x 1)
        // where there are enough tiles and either the map is too short for rows or the
        // group's weights outweigh its padded planes (cg·k² > one padded plane: each chunk of
        // rows would stream every tile's weights again; Conv 384x14x14 on 2 threads ran 1.62x
        // its 1-thread speed split by rows); else into chunks of rows.
        let (tiles, pairs) = (cg / t, n * self.groups);
        let padded_plane = (h + 2 * (k / 2)) * wp;
        let (slices, chunks) = if threads > 1 && pairs < 2 * threads {
            let need = (2 * threads).div_ceil(pairs);
            let short = h / min_rows < 2 * need;
            if tiles >= need && (short || cg * k * k > padded_plane) {
                (need, 1)
            } else {
                (1, need.min(h / min_rows).max(1))
            }
        } else {
            (1, 1)
        };
        let per_pair = slices * chunks;
        // The label counts one image's units (how a pair is split depends on the batch too:
        // n · groups pairs).
        kernel_path::note(&kernel_path::scheduled(
            path,
            &format!("tile={t}x{shape},units={}", self.groups * per_pair),
        ));
        let job = Job {
            cg,
            t,
            g: self.g,
            taps: (0..k * k).map(|i| (i / k) * wp + i % k).collect(),
            isa,
        };
        let dst = OutPtr(out.as_mut_ptr());
        let unit = |u: usize| {
            let (pair, part) = (u / per_pair, u % per_pair);
            let (b, grp) = (pair / self.groups, pair % self.groups);
            let (slice, chunk) = (part / chunks, part % chunks);
            let rows = (chunk * h / chunks, (chunk + 1) * h / chunks);
            let slice_tiles = (slice * tiles / slices, (slice + 1) * tiles / slices);
            let group_x = &self.x[b * self.x_image + grp * cg * hw..][..cg * hw];
            // The group's tiles are consecutive in the packing.
            let group_weights = &self.weights.data[grp * cg * cg * k * k..][..cg * cg * k * k];
            // SAFETY: image b's channel grp·cg lies inside `out` (asserted above).
            let group_out = OutPtr(unsafe { dst.at(b * out_image + grp * cg * hw) });
            job.unit(
                group_x,
                group_weights,
                group_out,
                (rows, slice_tiles),
                lanes,
            );
        };
        let units = pairs * per_pair;
        if threads > 1 {
            (0..units).into_par_iter().for_each(unit);
        } else {
            (0..units).for_each(unit);
        }
    }
}

/// What every work unit of one convolution shares.
struct Job {
    /// Channels per group.
    cg: usize,
    /// Output channels per tile.
    t: usize,
    g: Geometry,
    /// Offset of each tap from a window corner in a slab (row stride w + k - 1).
    taps: Vec<usize>,
    isa: Isa,
}

impl Job {
    /// One unit: output rows y0..y1 of tiles t0..t1 of one group of one image. `x` holds
    /// the group's cg input planes, `weights` its packed tiles, `out` points at its first
    /// output channel.
    fn unit(
        &self,
        x: &[f32],
        weights: &[f32],
        out: OutPtr,
        ((y0, y1), (t0, t1)): ((usize, usize), (usize, usize)),
        lanes: Lanes,
    ) {
        let Geometry { h, w, k, .. } = self.g;
        if k == 1 {
            // No padding to add: Channels tiles read the input planes in place; Pixels tiles
            // read a packed panel (below).
            match lanes {
                Lanes::Channels => {
                    let per_tile = self.cg * self.t;
                    for (tile, wt) in weights.chunks_exact(per_tile).enumerate().take(t1).skip(t0) {
                        self.channels_tile(&x[y0 * w..], h * w, (tile, wt, out), (y0, y1));
                    }
                }
                Lanes::Pixels => self.pointwise_pixels(x, weights, out, (y0, y1), (t0, t1)),
            }
            return;
        }
        let pad = k / 2;
        let wp = w + 2 * pad;
        let slab_rows = y1 - y0 + 2 * pad;
        let plane_stride = slab_rows * wp;
        with_buffer(&SLAB, self.cg * plane_stride, |slab| {
            // Slab row r holds input row y0 + r - pad, zero outside the image and in the
            // left and right borders.
            for (plane, dst) in x
                .chunks_exact(h * w)
                .zip(slab.chunks_exact_mut(plane_stride))
            {
                for (r, row) in dst.chunks_exact_mut(wp).enumerate() {
                    match (y0 + r).checked_sub(pad).filter(|&iy| iy < h) {
                        Some(iy) => {
                            row[..pad].fill(0.0);
                            row[pad..pad + w].copy_from_slice(&plane[iy * w..][..w]);
                            row[pad + w..].fill(0.0);
                        }
                        None => row.fill(0.0),
                    }
                }
            }
            let per_tile = self.cg * self.taps.len() * self.t;
            for (tile, w) in weights.chunks_exact(per_tile).enumerate().take(t1).skip(t0) {
                let at = (tile, w, out);
                match lanes {
                    Lanes::Channels => self.channels_tile(slab, plane_stride, at, (y0, y1)),
                    Lanes::Pixels => self.pixels_tile(slab, plane_stride, at, (y0, y1)),
                }
            }
        });
    }

    /// One Channels tile (index `tile` in the group, its packed `weights`) over output rows y0..y1, read from the slab (or the planes, for 1 x 1), in passes
    /// over the input channels whose weights stay in L1 while a super-block of pixel tiles
    /// reuses them.
    fn channels_tile(
        &self,
        slab: &[f32],
        plane_stride: usize,
        (tile, weights, out): (usize, &[f32], OutPtr),
        (y0, y1): (usize, usize),
    ) {
        let Geometry { h, w, k, .. } = self.g;
        let (hw, wp, t, kk) = (h * w, w + 2 * (k / 2), self.t, k * k);
        let px = channel_tile_pixels(t, hw);
        let starts: Vec<usize> = block_starts(y0 * w, y1 * w, px).collect();
        let pass_channels = (L1_WEIGHT_FLOATS / (kk * t)).clamp(1, self.cg);
        for block in starts.chunks(SUPER_BLOCK_TILES) {
            // Window corners in the slab, whose row 0 is output row y0's.
            let off: Vec<usize> = block
                .iter()
                .flat_map(|&q| (q..q + px).map(|p| (p / w - y0) * wp + p % w))
                .collect();
            with_buffer(&SCRATCH, block.len() * px * t, |partial| {
                for ci0 in (0..self.cg).step_by(pass_channels) {
                    let channels = pass_channels.min(self.cg - ci0);
                    let last = ci0 + channels == self.cg;
                    for (i, &q) in block.iter().enumerate() {
                        let tile = Tile {
                            src: slab[ci0 * plane_stride..].as_ptr(),
                            plane_stride,
                            channels,
                            taps: &self.taps,
                            w: &weights[ci0 * kk * t..][..channels * kk * t],
                            off: &off[i * px..][..px],
                            partial: partial[i * px * t..][..px * t].as_mut_ptr(),
                            first: ci0 == 0,
                            // SAFETY: the tile's channels at pixel q lie in the group's
                            // output.
                            last: last.then(|| unsafe { out.at(tile * t * hw + q) }),
                            hw,
                        };
                        // SAFETY: window corners plus taps stay inside each slab plane;
                        // `partial` is this worker's; this unit alone writes rows y0..y1 of
                        // the group's output.
                        unsafe { run_tile(&tile, t, self.isa) };
                    }
                }
            });
        }
    }

    /// A 1 x 1 convolution (a GEMM: output planes = weights x input planes) with Pixels tiles,
    /// over output rows y0..y1 and tiles t0..t1: per block of 16·P consecutive pixels, the
    /// input planes' slices are packed into one contiguous panel (cg x 16·P floats, read by
    /// every tile from L1 or L2 instead of from cg planes a page or more apart), then each
    /// tile writes its R output rows of the block straight into the output (no junk columns).
    fn pointwise_pixels(
        &self,
        x: &[f32],
        weights: &[f32],
        out: OutPtr,
        (y0, y1): (usize, usize),
        (t0, t1): (usize, usize),
    ) {
        let Geometry { h, w, .. } = self.g;
        let (hw, cg, r) = (h * w, self.cg, self.t);
        let span = pixel_tile_vectors(r) * LANES;
        with_buffer(&SLAB, cg * span + LANES, |buf| {
            // Rows of the panel start on cache lines: no load of the tiles straddles two.
            let skip = buf.as_ptr().align_offset(64).min(LANES);
            let panel = &mut buf[skip..][..cg * span];
            for at in block_starts(y0 * w, y1 * w, span) {
                for (ci, dst) in panel.chunks_exact_mut(span).enumerate() {
                    dst.copy_from_slice(&x[ci * hw + at..][..span]);
                }
                for (tile, wt) in weights.chunks_exact(cg * r).enumerate().take(t1).skip(t0) {
                    let pixel_tile = PixelTile {
                        src: panel.as_ptr(),
                        plane_stride: span,
                        channels: cg,
                        taps: &self.taps,
                        w: wt,
                        // SAFETY: channel tile·r of the group at pixel `at`, inside its output.
                        out: unsafe { out.at(tile * r * hw + at) },
                        out_stride: hw,
                    };
                    // SAFETY: the panel holds cg rows of span floats (the only tap is 0);
                    // pixels at..at + span <= y1·w of the tile's R channels are this unit's.
                    unsafe { run_pixel_tile(&pixel_tile, r, self.isa) };
                }
            }
        });
    }

    /// One Pixels tile (index `tile` in the group, its packed `weights`) over output rows y0..y1: the slab's flattened planes
    /// swept in steps of 16·P positions (the last step ending at the last output, overlapping
    /// its neighbour) into rows with junk columns in scratch; then the real columns are
    /// copied out.
    fn pixels_tile(
        &self,
        slab: &[f32],
        plane_stride: usize,
        (tile, weights, out): (usize, &[f32], OutPtr),
        (y0, y1): (usize, usize),
    ) {
        let Geometry { h, w, k, .. } = self.g;
        let (hw, wp, r) = (h * w, w + 2 * (k / 2), self.t);
        let span = pixel_tile_vectors(r) * LANES;
        // Slab positions of the first output's window corner and one past the last's.
        let len = (y1 - y0 - 1) * wp + w;
        with_buffer(&SCRATCH, r * len, |rows| {
            for at in block_starts(0, len, span) {
                let pixel_tile = PixelTile {
                    src: slab[at..].as_ptr(),
                    plane_stride,
                    channels: self.cg,
                    taps: &self.taps,
                    w: weights,
                    // SAFETY: positions at..at + span of rows r < R lie in scratch.
                    out: unsafe { rows.as_mut_ptr().add(at) },
                    out_stride: len,
                };
                // SAFETY: the window of every position before len stays inside its slab
                // plane; `rows` is this worker's.
                unsafe { run_pixel_tile(&pixel_tile, r, self.isa) };
            }
            for o in 0..r {
                for y in y0..y1 {
                    let from = &rows[o * len + (y - y0) * wp..][..w];
                    // SAFETY: row y of channel tile·r + o of the group, written by this unit
                    // only.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            from.as_ptr(),
                            out.at((tile * r + o) * hw + y * w),
                            w,
                        )
                    };
                }
            }
        });
    }
}

/// Starts of `span`-wide blocks covering positions f0..f1 (f1 - f0 >= span): f0, f0 + span,
/// ..., the last one ending at f1 and overlapping its neighbour (computed twice, identically).
pub(super) fn block_starts(f0: usize, f1: usize, span: usize) -> impl Iterator<Item = usize> {
    (f0..f1).step_by(span).map(move |f| f.min(f1 - span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::reference::{compare, reference_forward};
    use crate::ops::{self, OpKind, OpSpec};

    /// Runs every kernel whose tiles fit (portable loops, and AVX-512 where this CPU has it)
    /// against the f64 reference; returns the kernels that ran.
    fn check(
        c: usize,
        groups: usize,
        (h, w): (usize, usize),
        k: usize,
        n: usize,
        threads: usize,
    ) -> Vec<(Lanes, String)> {
        let spec = OpSpec {
            kind: if groups == 1 {
                OpKind::Conv
            } else {
                OpKind::GConv
            },
            kernel: k,
            groups: (groups > 1).then_some(groups),
            n_div: None,
            forward: None,
            expansion: None,
            act: None,
            bottlenecks: None,
            model: None,
            map: format!("{c}x{h}x{w}").parse().unwrap(),
        };
        let weights = ops::random_weights(&spec, 1, 7);
        let x = ops::uniform(n * c * h * w, 1.0, &mut ops::seeded_rng(3));
        let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
        let reference = reference_forward(&spec, &wide(&weights[0].data), &wide(&x), n);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut isas = vec![Isa::Portable];
        if isa() == Isa::Avx512 {
            isas.push(Isa::Avx512);
        }
        let mut ran = Vec::new();
        for lanes in [Lanes::Channels, Lanes::Pixels] {
            if !fits(lanes, c / groups, (h, w), k) {
                continue;
            }
            let packed = PackedWeights::new(&weights[0].data, c, groups, k, lanes).unwrap();
            for &isa in &isas {
                let mut out = vec![f32::NAN; x.len()];
                let conv = Blocked {
                    x: &x,
                    x_image: c * h * w,
                    weights: &packed,
                    groups,
                    g: Geometry { c, h, w, k },
                };
                let ((), path) = pool
                    .install(|| kernel_path::traced(|| conv.run_with(&mut out, c * h * w, n, isa)));
                let (_, rel) = compare(&wide(&out), &reference);
                assert!(
                    rel < 1e-5,
                    "{c}x{h}x{w} k={k} g={groups} n={n} {threads} threads {lanes:?} {isa:?}: \
                     rel err {rel}"
                );
                ran.push((lanes, path));
            }
        }
        ran
    }

    #[test]
    fn blocked_tiles_match_the_reference() {
        use Lanes::{Channels, Pixels};
        // (c, groups, map, k, batch, threads), the kernels that fit, and for splits the work
        // units per image the schedule must make.
        let cases = [
            // 48-channel tiles of 7 pixels; 61 positions are too few for 6 x 64.
            ((48, 1, (7, 7), 3, 1, 1), vec![Channels], None),
            // 48 per group, two groups, batch 2; Pixels sweeps 77 positions, overlapping.
            ((96, 2, (9, 5), 5, 2, 2), vec![Channels, Pixels], None),
            // 32-channel tiles of 10 (66 pixels: the last overlapping) on 2 threads: two
            // chunks of rows per group.
            ((64, 2, (6, 11), 3, 1, 2), vec![Channels], Some(4)),
            // 16-channel tiles of 8, 1x1.
            ((32, 2, (5, 5), 1, 3, 1), vec![Channels], None),
            // A kernel wider than the map.
            ((16, 1, (5, 5), 7, 1, 2), vec![Channels], None),
            // Two overlapping tiles of 7 pixels on 9.
            ((48, 1, (3, 3), 3, 2, 1), vec![Channels], None),
            // 129 tiles of 7 pixels: five super-blocks and four passes; Pixels over 958
            // positions.
            ((48, 1, (30, 30), 3, 1, 1), vec![Channels, Pixels], None),
            // 6 per group, 16 groups: no split needed.
            ((96, 16, (20, 19), 3, 2, 2), vec![Pixels], Some(16)),
            // 4 per group, a map narrower than a vector, two row chunks per group.
            ((8, 2, (40, 3), 5, 1, 2), vec![Pixels], Some(4)),
            // 1x1 Pixels in four row chunks.
            ((12, 1, (33, 17), 1, 1, 2), vec![Pixels], Some(4)),
            // 1x1, batch 2 on 2 threads: Channels reads the planes in place in two chunks of
            // rows; Pixels packs panels of 64 pixels (130: the last overlapping) in two
            // slices of tiles.
            ((96, 1, (10, 13), 1, 2, 2), vec![Channels, Pixels], Some(2)),
            // 1x1 Pixels, two groups of 12, one thread.
            ((24, 2, (9, 8), 1, 2, 1), vec![Pixels], None),
            // 1x1 Pixels with 4-channel tiles: panels of 96 pixels (108: the last overlapping).
            ((8, 1, (9, 12), 1, 1, 1), vec![Pixels], None),
            // 1x1 Channels with 32-channel tiles of 10 pixels.
            ((64, 1, (6, 11), 1, 1, 1), vec![Channels], None),
            // 1x1 over 192 channels: two passes (128 + 64) and two super-blocks of tiles (35
            // tiles of 8); Pixels in panels of 64.
            ((192, 1, (7, 40), 1, 1, 1), vec![Channels, Pixels], None),
            // 1x1 on a short map on 2 threads: four slices of 48-channel tiles.
            ((192, 1, (2, 8), 1, 1, 2), vec![Channels], Some(4)),
            // Two rows, four 48-channel tiles on 2 threads: four slices of tiles.
            ((192, 1, (2, 8), 3, 1, 2), vec![Channels], Some(4)),
            // Four 6-channel tiles per group, too few rows to split: two slices each.
            ((48, 2, (5, 20), 3, 1, 2), vec![Pixels], Some(4)),
            // Batch 3 on 2 threads, one tile: each image split into two chunks of rows.
            ((48, 1, (12, 12), 3, 3, 2), vec![Channels, Pixels], Some(2)),
        ];
        for ((c, g, hw, k, n, threads), expect, units) in cases {
            let ran = check(c, g, hw, k, n, threads);
            let lanes: Vec<Lanes> = ran.iter().map(|(l, _)| *l).collect::<Vec<_>>();
            let mut distinct = lanes.clone();
            distinct.dedup();
            assert_eq!(distinct, expect, "{c}x{hw:?} g={g} k={k}");
            if let Some(units) = units {
                for (lanes, path) in &ran {
                    assert!(
                        path.ends_with(&format!(",units={units}]")),
                        "{c}x{hw:?} g={g} k={k} {lanes:?}: {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn packing_puts_each_weight_under_its_tile_channel_and_tap() {
        let (c, groups, k) = (64, 2, 3); // 32 per group: 32-channel tiles
        let weight: Vec<f32> = (0..c * 32 * 9).map(|i| i as f32).collect();
        let p = PackedWeights::new(&weight, c, groups, k, Lanes::Channels).unwrap();
        assert_eq!(p.tile(), 32);
        // Output channel 37 (group 1, tile 1, lane 5), input channel 3, tap 4.
        let (oc, ci, tap) = (37, 3, 4);
        assert_eq!(
            p.data[((32 + ci) * 9 + tap) * 32 + 5] as usize,
            (oc * 32 + ci) * 9 + tap
        );
        let p = PackedWeights::new(&weight, c, groups, k, Lanes::Pixels).unwrap();
        assert_eq!(p.tile(), 4); // 32 is not a multiple of 6
                                 // Output channel 37 is tile 9, lane 1.
        assert_eq!(
            p.data[((9 * 32 + ci) * 9 + tap) * 4 + 1] as usize,
            (oc * 32 + ci) * 9 + tap
        );
        assert!(PackedWeights::new(&[0.0; 24 * 24], 24, 1, 1, Lanes::Channels).is_none());
        assert!(PackedWeights::new(&[0.0; 10 * 5], 10, 2, 1, Lanes::Pixels).is_none());
        assert_eq!(
            (
                tile_channels(Lanes::Channels, 96),
                tile_channels(Lanes::Channels, 64),
                tile_channels(Lanes::Channels, 80),
                tile_channels(Lanes::Pixels, 96),
                tile_channels(Lanes::Pixels, 8),
            ),
            (Some(48), Some(32), Some(16), Some(6), Some(4))
        );
        assert_eq!(
            (channel_tile_pixels(48, 49), channel_tile_pixels(48, 3136)),
            (7, 8)
        );
        assert!(!fits(Lanes::Channels, 48, (2, 3), 3) && fits(Lanes::Channels, 48, (2, 4), 3));
        // 64 positions for 6-channel tiles: 7x7 with a 3x3 kernel sweeps 6·9 + 7 = 61.
        assert!(!fits(Lanes::Pixels, 6, (7, 7), 3) && fits(Lanes::Pixels, 6, (8, 8), 1));
    }
}
