//! Depthwise convolution with 16 channels in the vector lanes (`blocked_dw`), the layout
//! oneDNN's depthwise kernels use.
//!
//! The direct stencil (`direct.rs`) runs one plane at a time over the flattened padded plane:
//! at 7 x 7 on a 7 x 7 map six of its thirteen columns are padding, and the 49 weights do not
//! fit in registers. Here each work unit (image, block of 16 channels, rows) first copies its
//! rows of the 16 input planes into a zero-padded slab laid out [row][column][channel]
//! (transposed 8 pixels at a time); then a tile of P = 8 consecutive output pixels of one row
//! (7 on rows of 7) keeps P accumulators of 16 channels and, for each tap, loads the tap's 16
//! weights once and multiplies them by the P input vectors under it, read straight from the
//! slab. No column is wasted beyond the last tile's overlap, and any k fits. The sums are
//! transposed back to rows of the NCHW output in registers (as the Channels tiles of
//! `blocked.rs` do).

use rayon::prelude::*;

use super::blocked::{block_starts, with_slab, LANES};
use super::gemm_conv::OutPtr;
use super::simd::{isa, Isa};
use super::Geometry;
use crate::ops::kernel_path;

/// Whether this kernel can run a depthwise convolution of `c` channels on an h x w map with a
/// k x k kernel: whole blocks of 16 channels, rows of at least one tile and an odd kernel.
pub fn fits(c: usize, (h, w): (usize, usize), k: usize) -> bool {
    c.is_multiple_of(LANES) && c > 0 && h > 0 && w >= 7 && !k.is_multiple_of(2)
}

/// Output pixels of a tile on rows `w` wide (w >= 7): 8, or 7 on rows of 7. Tiles of 7
/// where they cover a row with less overlap ran slower than 8 with the overlap: DWConv 7x7
/// at 192x28x28 took 0.38 ms with tiles of 7 (four per row), 0.22 ms with 8 (`cargo bench
/// --bench cutover -- --table1`, one build each, before the slab was aligned).
pub fn tile_pixels(w: usize) -> usize {
    if w < 8 {
        7
    } else {
        8
    }
}

/// Depthwise weights ((c, 1, k, k), row-major) packed as [block of 16 channels][tap][channel
/// of the block].
#[derive(Debug, Clone)]
pub struct PackedDw {
    data: Vec<f32>,
}

impl PackedDw {
    /// Packs `weight` for `c` channels of k x k taps, or None where 16 does not divide c.
    pub fn new(weight: &[f32], c: usize, k: usize) -> Option<Self> {
        let kk = k * k;
        assert_eq!(weight.len(), c * kk, "weight shape");
        if !c.is_multiple_of(LANES) {
            return None;
        }
        let mut data = vec![0f32; weight.len()];
        for (i, v) in data.iter_mut().enumerate() {
            let (block, tap, lane) = (i / (kk * LANES), i / LANES % kk, i % LANES);
            *v = weight[(block * LANES + lane) * kk + tap];
        }
        Some(Self { data })
    }
}

/// A depthwise convolution of `g.c` channels on `n` images, read from `x` (images `x_image`
/// floats apart) and written to NCHW images `out_image` floats apart.
pub struct Depthwise<'a> {
    pub x: &'a [f32],
    pub x_image: usize,
    pub weights: &'a PackedDw,
    pub g: Geometry,
}

impl Depthwise<'_> {
    /// Runs on the current rayon pool with this CPU's instruction set.
    pub fn run(&self, out: &mut [f32], out_image: usize, n: usize) {
        self.run_with(out, out_image, n, isa())
    }

    /// Runs with instruction set `isa` (tests run the portable loops too).
    ///
    /// Work units are (image, block of 16 channels, chunk of rows); with fewer (image,
    /// block) pairs than twice the threads each pair is split into chunks of rows, each
    /// padding its own rows (plus the halo).
    pub(crate) fn run_with(&self, out: &mut [f32], out_image: usize, n: usize, isa: Isa) {
        let Geometry { c, h, w, k } = self.g;
        let hw = h * w;
        assert!(fits(c, (h, w), k), "shape");
        assert_eq!(self.weights.data.len(), c * k * k, "weight shape");
        assert!(
            out.len() >= (n - 1) * out_image + c * hw,
            "output too small"
        );
        assert!(
            self.x.len() >= (n - 1) * self.x_image + c * hw,
            "input too small"
        );
        assert!(n <= 1 || out_image >= c * hw, "output images overlap");
        let threads = rayon::current_num_threads();
        let pairs = n * c / LANES;
        let chunks = if threads > 1 && pairs < 2 * threads {
            (2 * threads).div_ceil(pairs).min(h)
        } else {
            1
        };
        let p = tile_pixels(w);
        kernel_path::note(&kernel_path::scheduled(
            kernel_path::BLOCKED_DW,
            &format!("tile=16x{p},units={}", c / LANES * chunks),
        ));
        let dst = OutPtr(out.as_mut_ptr());
        let unit = |u: usize| {
            let (pair, chunk) = (u / chunks, u % chunks);
            let (b, block) = (pair / (c / LANES), pair % (c / LANES));
            let rows = (chunk * h / chunks, (chunk + 1) * h / chunks);
            let x = &self.x[b * self.x_image + block * LANES * hw..][..LANES * hw];
            let kk = k * k;
            let w = &self.weights.data[block * kk * LANES..][..kk * LANES];
            // SAFETY: image b's channel block·16 lies inside `out` (asserted above).
            let out = OutPtr(unsafe { dst.at(b * out_image + block * LANES * hw) });
            self.unit(x, w, out, rows, isa);
        };
        if threads > 1 {
            (0..pairs * chunks).into_par_iter().for_each(unit);
        } else {
            (0..pairs * chunks).for_each(unit);
        }
    }

    /// Output rows y0..y1 of one block of 16 channels: `x` holds its 16 input planes, `w`
    /// its packed weights, `out` points at its first output channel.
    fn unit(&self, x: &[f32], w: &[f32], out: OutPtr, (y0, y1): (usize, usize), isa: Isa) {
        let Geometry { h, w: width, k, .. } = self.g;
        let (hw, pad) = (h * width, k / 2);
        let wp = width + 2 * pad;
        let row_floats = wp * LANES;
        let len = (y1 - y0 + 2 * pad) * row_floats;
        with_slab(len + LANES, |buf| {
            // Every vector a tile reads is a pixel's 16 channels: aligned to 64 bytes, none
            // straddles two cache lines (unaligned, DWConv 7x7 at 96x56x56 took 0.55 ms
            // against 0.33 aligned, in a one-off in-process A/B).
            let skip = buf.as_ptr().align_offset(64).min(LANES);
            let slab = &mut buf[skip..][..len];
            // Slab row r holds input row y0 + r - pad, zero outside the image and in the
            // left and right borders.
            for (r, row) in slab.chunks_exact_mut(row_floats).enumerate() {
                match (y0 + r).checked_sub(pad).filter(|&iy| iy < h) {
                    Some(iy) => {
                        row[..pad * LANES].fill(0.0);
                        row[(pad + width) * LANES..].fill(0.0);
                        let to = &mut row[pad * LANES..][..width * LANES];
                        // SAFETY: 16 planes of hw floats from x, row iy; `to` holds
                        // width pixels of 16 channels.
                        unsafe { gather_row(&x[iy * width..], hw, to, width, isa) };
                    }
                    None => row.fill(0.0),
                }
            }
            let p = tile_pixels(width);
            for y in y0..y1 {
                for x0 in block_starts(0, width, p) {
                    let tile = Tile {
                        // The window corner of output (y, x0) in the slab.
                        src: slab[(y - y0) * row_floats + x0 * LANES..].as_ptr(),
                        row_floats,
                        k,
                        w,
                        // SAFETY: pixel (y, x0) of channel 0 of this block.
                        out: unsafe { out.at(y * width + x0) },
                        hw,
                    };
                    // SAFETY: the windows of the tile's pixels lie in the slab; this unit
                    // alone writes rows y0..y1 of the block's output.
                    unsafe { run_tile(&tile, p, isa) };
                }
            }
        });
    }
}

/// Copies `width` pixels of 16 planes (`plane` floats apart, the first at `x`) into `to` as
/// [pixel][channel].
///
/// # Safety
/// `x[o·plane + i]` for o < 16, i < width lies in `x`'s allocation (the planes follow it).
unsafe fn gather_row(x: &[f32], plane: usize, to: &mut [f32], width: usize, isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => gather_row_avx512(x.as_ptr(), plane, to, width),
        _ => {
            for (i, px) in to.chunks_exact_mut(LANES).take(width).enumerate() {
                for (o, v) in px.iter_mut().enumerate() {
                    *v = *x.as_ptr().add(o * plane + i);
                }
            }
        }
    }
}

/// [`gather_row`] 8 pixels at a time, the inverse of the Channels tiles' store
/// ([`super::blocked::store_transposed`]): masked loads put channels o and o + 4 (8 pixels
/// each) into one register, two permutes per pair of registers and the 4 x 4 transposes turn
/// them into 8 vectors of 16 channels: 16 row loads and 24 shuffles per 8 pixels, where a
/// gather per pixel would issue 16 element loads per pixel.
///
/// # Safety
/// As [`gather_row`]; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_row_avx512(x: *const f32, plane: usize, to: &mut [f32], width: usize) {
    use std::arch::x86_64::*;
    // By 128-bit quarters: even = (a.0, a.2, b.0, b.2), odd = (a.1, a.3, b.1, b.3).
    let even = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
    let odd = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    assert!(to.len() >= width * LANES);
    for i in (0..width).step_by(8) {
        let n = (width - i).min(8);
        let mask: __mmask16 = (1 << n) - 1;
        let base = x.add(i);
        // Channels o (lanes 0..8) and o + 4 (lanes 8..16): whole rows of 8 by two 256-bit
        // loads, shorter ones under a mask (the masked-off lanes read no memory).
        let pair = |o: usize| {
            let (p, q) = (base.add(o * plane), base.add((o + 4) * plane));
            if n == 8 {
                let low = _mm512_castps256_ps512(_mm256_loadu_ps(p));
                let high = _mm256_castps_pd(_mm256_loadu_ps(q));
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(_mm512_castps_pd(low), high))
            } else {
                let (low, high) = (
                    _mm512_maskz_loadu_ps(mask, p),
                    _mm512_maskz_loadu_ps(mask, q),
                );
                _mm512_shuffle_f32x4::<0x44>(low, high)
            }
        };
        let mut u = [_mm512_setzero_ps(); 8];
        for m in 0..4 {
            let (a, b) = (pair(m), pair(8 + m));
            // Pixels 0..4 of channel 4q + m in quarter q, then pixels 4..8.
            u[m] = _mm512_permutex2var_ps(a, even, b);
            u[4 + m] = _mm512_permutex2var_ps(a, odd, b);
        }
        let r = super::blocked::transpose_quarters(u);
        for (j, v) in r.iter().enumerate().take(n) {
            _mm512_storeu_ps(to.as_mut_ptr().add((i + j) * LANES), *v);
        }
    }
}

/// What one tile reads and writes: P consecutive output pixels of one row, 16 channels.
struct Tile<'a> {
    /// The first pixel's window corner in the slab ([row][column][channel]).
    src: *const f32,
    /// Floats between consecutive slab rows.
    row_floats: usize,
    k: usize,
    /// The block's packed weights: k·k taps of 16 channels.
    w: &'a [f32],
    /// Channel 0 of the block at the tile's first pixel; channel o at + o·hw.
    out: *mut f32,
    hw: usize,
}

/// Runs one tile of `p` pixels with instruction set `isa`.
///
/// # Safety
/// `src + ky·row_floats + (j + kx)·16 + o` for ky, kx < k, j < p, o < 16 lies in the slab;
/// `out + o·hw + j` lies in a buffer no one else touches during the call.
unsafe fn run_tile(t: &Tile, p: usize, isa: Isa) {
    match (isa, p) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 8) => tile_avx512::<8>(t),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 7) => tile_avx512::<7>(t),
        _ => tile_portable(t, p),
    }
}

/// The AVX-512 tile: P accumulators of 16 channels; per tap one weight load and P
/// multiply-adds reading their inputs from the slab.
///
/// # Safety
/// As [`run_tile`]; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const P: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    assert!(t.w.len() == t.k * t.k * LANES);
    let mut acc = [[_mm512_setzero_ps(); 1]; P];
    let mut w = t.w.as_ptr();
    for ky in 0..t.k {
        let row = t.src.add(ky * t.row_floats);
        for kx in 0..t.k {
            let wv = _mm512_loadu_ps(w);
            w = w.add(LANES);
            let s = row.add(kx * LANES);
            for (j, a) in acc.iter_mut().enumerate() {
                a[0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(s.add(j * LANES)), a[0]);
            }
        }
    }
    super::blocked::store_transposed(&acc, t.out, t.hw);
}

/// The same tile one sum at a time, for any CPU, in the AVX-512 version's order.
///
/// # Safety
/// As [`run_tile`].
unsafe fn tile_portable(t: &Tile, p: usize) {
    for j in 0..p {
        for o in 0..LANES {
            let mut a = 0f32;
            for ky in 0..t.k {
                for kx in 0..t.k {
                    let x = *t.src.add(ky * t.row_floats + (j + kx) * LANES + o);
                    a = t.w[(ky * t.k + kx) * LANES + o].mul_add(x, a);
                }
            }
            *t.out.add(o * t.hw + j) = a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::reference::{compare, reference_forward};
    use crate::ops::{self, OpKind, OpSpec};

    /// Runs the kernel (portable, and AVX-512 where this CPU has it) against the f64
    /// reference; returns each run's kernel path.
    fn check(c: usize, (h, w): (usize, usize), k: usize, n: usize, threads: usize) -> Vec<String> {
        let spec = OpSpec::plain(OpKind::DWConv, k, format!("{c}x{h}x{w}").parse().unwrap());
        let weights = ops::random_weights(&spec, 1, 17);
        let x = ops::uniform(n * c * h * w, 1.0, &mut ops::seeded_rng(4));
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
        let packed = PackedDw::new(&weights[0].data, c, k).unwrap();
        let mut paths = Vec::new();
        for isa in isas {
            let mut out = vec![f32::NAN; x.len()];
            let conv = Depthwise {
                x: &x,
                x_image: c * h * w,
                weights: &packed,
                g: Geometry { c, h, w, k },
            };
            let ((), path) =
                pool.install(|| kernel_path::traced(|| conv.run_with(&mut out, c * h * w, n, isa)));
            let (_, rel) = compare(&wide(&out), &reference);
            assert!(
                rel < 1e-5,
                "{c}x{h}x{w} k={k} n={n} {threads} threads {isa:?}: rel err {rel}"
            );
            paths.push(path);
        }
        paths
    }

    #[test]
    fn depthwise_tiles_match_the_reference() {
        // (c, map, k, batch, threads), the label each run must note.
        let cases = [
            // Rows of 7: one tile each; 49 taps.
            ((32, (7, 7), 7, 1, 1), "blocked_dw[tile=16x7,units=2]"),
            // Rows of 28: four tiles of 8, the last overlapping; batch 2 on 2 threads, 4
            // pairs: no split.
            ((32, (5, 28), 3, 2, 2), "blocked_dw[tile=16x8,units=2]"),
            // Rows of 13: two tiles of 8, the second overlapping; one block on 2 threads:
            // four chunks of rows.
            ((16, (9, 13), 5, 1, 2), "blocked_dw[tile=16x8,units=4]"),
            // A kernel wider than the map's height; rows of 8.
            ((48, (3, 8), 9, 1, 1), "blocked_dw[tile=16x8,units=3]"),
            // 1x1 and a batch of 3; rows of 16: two tiles of 8.
            ((16, (4, 16), 1, 3, 1), "blocked_dw[tile=16x8,units=1]"),
        ];
        for ((c, hw, k, n, threads), label) in cases {
            for path in check(c, hw, k, n, threads) {
                assert_eq!(path, label, "{c}x{hw:?} k={k}");
            }
        }
    }

    #[test]
    fn packing_and_fit() {
        let weight: Vec<f32> = (0..32 * 9).map(|i| i as f32).collect();
        let packed = PackedDw::new(&weight, 32, 3).unwrap();
        // Block 1, tap 4, channel 3 of the block: channel 19's fifth tap.
        assert_eq!(packed.data[(9 + 4) * 16 + 3], weight[19 * 9 + 4]);
        assert!(PackedDw::new(&[0.0; 24 * 9], 24, 3).is_none());
        assert!(fits(16, (1, 7), 3) && !fits(16, (7, 6), 3) && !fits(24, (7, 7), 3));
        assert!(!fits(16, (7, 7), 2) && !fits(0, (7, 7), 3));
        assert_eq!(
            (tile_pixels(7), tile_pixels(28), tile_pixels(56)),
            (7, 8, 8)
        );
        assert_eq!(
            (tile_pixels(13), tile_pixels(8), tile_pixels(16)),
            (8, 8, 8)
        );
    }
}
