//! Convolution as GEMM: im2col of a band of output rows feeding one GEMM that writes straight
//! into the NCHW output through its strides (no scatter, no NHWC round trip). A 1 x 1 kernel
//! skips im2col: the input planes already are the GEMM's right-hand side.

use gemm::Parallelism;
use rayon::prelude::*;

use crate::ops::kernel_path;

use super::Geometry;

/// Target size of one im2col band, in floats (about 1 MiB): big enough for an efficient GEMM,
/// small enough to stay in L2 between im2col and GEMM.
const BAND_FLOATS: usize = 256 * 1024;

/// Fewest output positions (GEMM columns) in a band: narrower GEMMs waste the microkernel.
/// With both limits, Table 1's Conv 3x3 runs at 1.03-1.16x PyTorch's latency here (README).
const MIN_BAND_COLUMNS: usize = 256;

/// Raw output pointer shared by workers that write disjoint regions.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: every worker writes a disjoint set of output elements (distinct images or distinct
// output rows), and the buffer outlives the parallel loop.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element at `offset` (a method, so closures capture the whole Send + Sync wrapper).
    ///
    /// # Safety
    /// `offset` must lie inside the buffer.
    pub(crate) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// Fills `col` ((c·k·k) x (rows·w), row-major) with the im2col of output rows
/// `y0..y0 + rows` of one image `x` (c planes of h x w), zero where the kernel hangs over
/// the border.
pub(crate) fn im2col(x: &[f32], g: &Geometry, y0: usize, rows: usize, col: &mut [f32]) {
    let Geometry { c, h, w, k } = *g;
    let pad = k / 2;
    let n = rows * w;
    for ci in 0..c {
        let plane = &x[ci * h * w..][..h * w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut col[((ci * k + ky) * k + kx) * n..][..n];
                // Output x reads input x + kx - pad; valid for x in [x_lo, x_hi).
                let x_lo = pad.saturating_sub(kx);
                let x_hi = (w + pad).saturating_sub(kx).min(w);
                for r in 0..rows {
                    let out = &mut row[r * w..][..w];
                    let iy = (y0 + r + ky).checked_sub(pad).filter(|&iy| iy < h);
                    match iy {
                        Some(iy) if x_lo < x_hi => {
                            out[..x_lo].fill(0.0);
                            let src = &plane[iy * w..][..w];
                            out[x_lo..x_hi].copy_from_slice(&src[x_lo + kx - pad..x_hi + kx - pad]);
                            out[x_hi..].fill(0.0);
                        }
                        _ => out.fill(0.0),
                    }
                }
            }
        }
    }
}

/// The shape and mode of one GEMM.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub par: Parallelism,
    /// Add the product to what dst holds (else overwrite it).
    pub accumulate: bool,
}

/// dst (m x n, row stride `dst_rs`) (+)= lhs (m x k, row-major) · rhs (k x n, row stride
/// `rhs_rs`).
///
/// # Safety
/// `dst` must be valid for writes of m rows of n floats at row stride `dst_rs`, and no one
/// else may access them during the call.
pub(crate) unsafe fn matmul(
    dst: *mut f32,
    dst_rs: usize,
    lhs: &[f32],
    rhs: &[f32],
    rhs_rs: usize,
    g: Gemm,
) {
    let Gemm {
        m,
        n,
        k: kk,
        par,
        accumulate,
    } = g;
    assert!(lhs.len() >= m * kk && rhs.len() >= (kk - 1) * rhs_rs + n);
    gemm::gemm(
        m,
        n,
        kk,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.as_ptr(),
        1,
        kk as isize,
        rhs.as_ptr(),
        1,
        rhs_rs as isize,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// One image's pointwise convolution: dst (m x hw) (+)= w (m x k) · src (k x hw), all dense,
/// with the GEMM parallel on the current rayon pool.
pub(crate) fn pointwise(
    dst: &mut [f32],
    w: &[f32],
    src: &[f32],
    (m, k, hw): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(dst.len() >= m * hw && src.len() >= k * hw && w.len() >= m * k);
    let par = super::gemm_parallelism();
    note_gemm(kernel_path::GEMM, par);
    // SAFETY: dst is an exclusive borrow of at least m rows of hw floats.
    unsafe {
        matmul(
            dst.as_mut_ptr(),
            hw,
            w,
            src,
            hw,
            Gemm {
                m,
                n: hw,
                k,
                par,
                accumulate,
            },
        )
    }
}

/// Output rows per band: an im2col band of about BAND_FLOATS, at least MIN_BAND_COLUMNS
/// wide; with several threads and fewer bands than threads, split further (while a band
/// keeps MIN_PARALLEL_COLUMNS columns) so every thread gets one, in a count that divides
/// evenly among them.
pub(crate) fn band_rows(g: &Geometry, n: usize, threads: usize) -> usize {
    let Geometry { c, h, w, k } = *g;
    let mut rows = if k == 1 {
        h
    } else {
        (BAND_FLOATS / (c * k * k * w))
            .max(MIN_BAND_COLUMNS.div_ceil(w))
            .clamp(1, h)
    };
    if threads > 1 {
        let per_image = h.div_ceil(rows);
        let total = (n * per_image).next_multiple_of(threads);
        let want = total.div_ceil(n);
        let split = h.div_ceil(want);
        if split * w >= MIN_PARALLEL_COLUMNS {
            rows = rows.min(split);
        }
    }
    rows
}

/// Notes a plain GEMM and its parallelism in the kernel-path trace.
fn note_gemm(kernel: &str, par: Parallelism) {
    match par {
        Parallelism::Rayon(t) if t > 1 => {
            kernel_path::note(&kernel_path::scheduled(kernel, &format!("par=gemm:{t}")))
        }
        _ => kernel_path::note(kernel),
    }
}

/// Fewest GEMM columns a band split for threading may have.
const MIN_PARALLEL_COLUMNS: usize = 24;

thread_local! {
    /// Each worker's im2col buffer, kept between calls: im2col overwrites what it uses.
    static COL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's im2col buffer, grown to at least `len` floats.
fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COL.with(|col| {
        let mut col = col.borrow_mut();
        if col.len() < len {
            col.resize(len, 0.0);
        }
        f(&mut col[..len])
    })
}

/// A grouped convolution (groups = 1: dense) of `g.c` channels in and out on `n` images.
/// Image b's input is `x[b * x_image..][..c·h·w]`, its output goes to
/// `out[b * out_image..][..c·h·w]`: strides let PConv read and write a channel prefix of
/// wider tensors in place.
pub struct Conv<'a> {
    pub x: &'a [f32],
    pub x_image: usize,
    /// (c, c / groups, k, k), row-major: group `grp`'s rows are one (cg x cg·k·k) matrix.
    pub weight: &'a [f32],
    pub groups: usize,
    pub g: Geometry,
}

impl Conv<'_> {
    /// Runs on the current rayon pool: bands (image, rows) in parallel when there are enough
    /// of them, otherwise one band at a time with the GEMM itself parallel. One im2col per
    /// band serves every group: group `grp`'s rows of it are contiguous.
    pub fn run(&self, out: &mut [f32], out_image: usize, n: usize) {
        let Geometry { c, h, w, k } = self.g;
        let kk = c * k * k;
        let cg = c / self.groups;
        let kk_group = cg * k * k;
        let hw = h * w;
        assert!(
            out.len() >= (n - 1) * out_image + c * hw,
            "output too small"
        );
        assert!(
            self.x.len() >= (n - 1) * self.x_image + c * hw,
            "input too small"
        );
        assert_eq!(self.weight.len(), c * kk_group, "weight shape");
        let threads = rayon::current_num_threads();
        let rows = band_rows(&self.g, n, threads);
        let bands: Vec<(usize, usize)> = (0..n)
            .flat_map(|b| (0..h).step_by(rows).map(move |y0| (b, y0)))
            .collect();
        // Parallel over bands when every thread gets one, else over groups, else inside the
        // GEMM (one big GEMM, e.g. Conv at 768x7x7).
        let (par_bands, par_groups) = (
            threads > 1 && bands.len() >= threads,
            threads > 1 && self.groups >= threads,
        );
        let gemm_par = if threads > 1 && !par_bands && !par_groups {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        let kernel = if k == 1 {
            kernel_path::GEMM
        } else {
            kernel_path::IM2COL_GEMM
        };
        let par = match (par_bands, par_groups, gemm_par) {
            (true, _, _) => format!("bands:{threads}"),
            (false, true, _) => format!("groups:{threads}"),
            (false, false, Parallelism::Rayon(t)) => format!("gemm:{t}"),
            _ => "none".into(),
        };
        kernel_path::note(&kernel_path::scheduled(
            kernel,
            &format!("rows={rows}/{h},par={par}"),
        ));
        let dst = OutPtr(out.as_mut_ptr());
        let band = |&(b, y0): &(usize, usize)| {
            let r = rows.min(h - y0);
            let cols = r * w;
            let x = &self.x[b * self.x_image..][..c * hw];
            // rhs: (kk x cols) at row stride rhs_rs.
            let gemms = |rhs: &[f32], rhs_rs: usize| {
                let group = |grp: usize| {
                    // SAFETY: band (b, y0) writes rows y0..y0 + r of the output channels of
                    // image b, each group its own channels: disjoint from every other band
                    // and group; `out` is large enough (asserted above).
                    unsafe {
                        matmul(
                            dst.at(b * out_image + grp * cg * hw + y0 * w),
                            hw,
                            &self.weight[grp * cg * kk_group..][..cg * kk_group],
                            &rhs[grp * kk_group * rhs_rs..],
                            rhs_rs,
                            Gemm {
                                m: cg,
                                n: cols,
                                k: kk_group,
                                par: gemm_par,
                                accumulate: false,
                            },
                        )
                    }
                };
                if par_groups && !par_bands {
                    (0..self.groups).into_par_iter().for_each(group);
                } else {
                    (0..self.groups).for_each(group);
                }
            };
            if k == 1 {
                // 1x1: the input planes already are the right-hand side.
                gemms(&x[y0 * w..], hw);
            } else {
                with_col(kk * cols, |col| {
                    im2col(x, &self.g, y0, r, col);
                    gemms(col, cols)
                });
            }
        };
        if par_bands {
            bands.par_iter().for_each(band);
        } else {
            bands.iter().for_each(band);
        }
    }
}
