//! Backward kernels of the native convolutions (f32, NCHW, stride 1, padding k / 2).
//!
//! - The input gradient of a convolution is a convolution of the output gradient with the
//!   weights transposed within each group and flipped in space ([`transposed`]): the forward
//!   kernels compute it, dispatch and all.
//! - The weight gradient is a correlation of input and output gradient, summed over the
//!   batch ([`weight_grad`]): im2col bands of the input and one GEMM per group,
//!   dW_g += dY_g · col_gᵀ; for groups of at most 8 channels (DWConv, small GConv groups) a
//!   per-tap correlation over the flattened padded planes, vectorised over pixels
//!   ([`wgrad_direct`] says where, and how the cut-over was measured).

use rayon::prelude::*;

use super::{gemm_conv, Geometry};
use crate::ops::kernel_path;

/// The weights whose convolution is the input gradient: w'[g·cg + i, o, ky, kx] =
/// w[g·cg + o, i, k-1-ky, k-1-kx] for a (c, cg, k, k) weight with c / cg groups.
pub fn transposed(weight: &[f32], c: usize, cg: usize, k: usize) -> Vec<f32> {
    let kk = k * k;
    assert_eq!(weight.len(), c * cg * kk, "weight shape");
    let mut out = vec![0.0; weight.len()];
    for oc in 0..c {
        let (group, o) = (oc / cg, oc % cg);
        for i in 0..cg {
            let src = &weight[(oc * cg + i) * kk..][..kk];
            let dst = &mut out[((group * cg + i) * cg + o) * kk..][..kk];
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    out
}

/// Whether the weight gradient of a convolution with `cg` channels per group takes the
/// per-tap correlation (else im2col + GEMM): the forward's direct-stencil bound. Measured with
/// a temporary switch between the two rules, `run --impl native --pass train --ops gconv
/// --shapes 96x56x56,192x28x28,384x14x14 --measure-time 1`, 3 interleaved rounds (median of
/// per-round ratios, GEMM over per-tap): cg = 6 0.97 (no difference), cg = 12 0.78,
/// cg = 24 0.63; the bound 8 itself lies between measured points. DWConv (cg = 1) would be a
/// one-row GEMM.
pub fn wgrad_direct(cg: usize) -> bool {
    cg <= 8
}

/// The weight gradient (c, c / groups, k, k) of a grouped convolution over the first `c`
/// channels of `n` images: image b's input channels are `x[b * image..][..c·h·w]` and its
/// output gradient `dy[b * image..][..c·h·w]` (so PConv's first c_p channels are read in
/// place). Summed over the batch.
pub fn weight_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    image: usize,
    g: &Geometry,
    groups: usize,
) -> Vec<f32> {
    let Geometry { c, h, w, .. } = *g;
    let cg = c / groups;
    let hw = h * w;
    assert!(x.len() >= (n - 1) * image + c * hw && dy.len() >= (n - 1) * image + c * hw);
    if wgrad_direct(cg) {
        // Groups are spread over the threads: the schedule is part of the path.
        match rayon::current_num_threads() {
            1 => kernel_path::note(kernel_path::WGRAD_DIRECT),
            t => kernel_path::note(&kernel_path::scheduled(
                kernel_path::WGRAD_DIRECT,
                &format!("par=groups:{t}"),
            )),
        }
        direct_weight_grad(x, dy, n, image, g, groups)
    } else {
        gemm_weight_grad(x, dy, n, image, g, groups)
    }
}

/// dW_g (cg x cg·k·k) += dY_g (cg x cols) · col_gᵀ (cols x cg·k·k), band by band.
fn gemm_weight_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    image: usize,
    g: &Geometry,
    groups: usize,
) -> Vec<f32> {
    let Geometry { c, h, w, k } = *g;
    let (cg, hw) = (c / groups, h * w);
    let kk_group = cg * k * k;
    let mut dw = vec![0.0f32; c * kk_group];
    let rows = gemm_conv::band_rows(g, 1, 1);
    let par = gemm_parallelism_noted();
    let mut col = if k == 1 {
        Vec::new()
    } else {
        vec![0.0f32; c * k * k * rows * w]
    };
    for b in 0..n {
        let xb = &x[b * image..][..c * hw];
        let dyb = &dy[b * image..][..c * hw];
        for y0 in (0..h).step_by(rows) {
            let r = rows.min(h - y0);
            let cols = r * w;
            // rhs[i][j] = col[j][i]: the band's im2col, read transposed.
            let (rhs, rhs_row): (&[f32], usize) = if k == 1 {
                (&xb[y0 * w..], hw)
            } else {
                gemm_conv::im2col(xb, g, y0, r, &mut col);
                (&col[..], cols)
            };
            for grp in 0..groups {
                gemm_abt(
                    &mut dw[grp * cg * kk_group..][..cg * kk_group],
                    (cg, kk_group, cols),
                    (&dyb[grp * cg * hw + y0 * w..], hw),
                    (&rhs[grp * kk_group * rhs_row..], rhs_row),
                    par,
                );
            }
        }
    }
    dw
}

/// Adds a per-channel bias to planes of `hw` values (plane i takes `bias[i % bias.len()]`)
/// and returns the activation of the result: (pre-activation in `buf`, activation).
pub(crate) fn bias_then_act(
    buf: &mut [f32],
    bias: &[f32],
    hw: usize,
    act: crate::ops::Act,
) -> Vec<f32> {
    for (i, plane) in buf.chunks_mut(hw).enumerate() {
        let b = bias[i % bias.len()];
        plane.iter_mut().for_each(|v| *v += b);
    }
    let mut a = buf.to_vec();
    super::bias_act(&mut a, &[0.0], hw, act);
    a
}

/// The backward of `act(pre + bias)`: multiplies the gradient `d` by act'(pre) in place and
/// returns the bias gradient (per channel of `channels`, summed over planes of `hw`).
pub(crate) fn act_bias_backward(
    d: &mut [f32],
    pre: &[f32],
    channels: usize,
    hw: usize,
    act: crate::ops::Act,
) -> Vec<f32> {
    d.iter_mut().zip(pre).for_each(|(d, &v)| *d *= act.grad(v));
    let mut db = vec![0.0f32; channels];
    for (i, plane) in d.chunks(hw).enumerate() {
        db[i % channels] += plane.iter().sum::<f32>();
    }
    db
}

/// The GEMM parallelism of the current pool, noted in the kernel-path trace.
fn gemm_parallelism_noted() -> gemm::Parallelism {
    let par = super::gemm_parallelism();
    kernel_path::note(&match par {
        gemm::Parallelism::Rayon(t) if t > 1 => {
            kernel_path::scheduled(kernel_path::WGRAD_GEMM, &format!("par=gemm:{t}"))
        }
        _ => kernel_path::WGRAD_GEMM.to_string(),
    });
    par
}

/// A pointwise convolution's weight gradient over `n` images: dw (m x k) += Σ_b dY_b · X_bᵀ,
/// with dY_b (m x hw) and X_b (k x hw) dense, image after image.
pub fn pointwise_weight_grad(
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    (n, m, k, hw): (usize, usize, usize, usize),
) {
    let par = gemm_parallelism_noted();
    for b in 0..n {
        gemm_abt(
            dw,
            (m, k, hw),
            (&dy[b * m * hw..], hw),
            (&x[b * k * hw..], hw),
            par,
        );
    }
}

/// dst (m x n, dense, row-major) += lhs · rhsᵀ, where lhs is m rows and rhs n rows of `kdim`
/// floats each, at the given row strides: a weight gradient, dY · Xᵀ.
pub(crate) fn gemm_abt(
    dst: &mut [f32],
    (m, n, kdim): (usize, usize, usize),
    (lhs, lhs_rs): (&[f32], usize),
    (rhs, rhs_rs): (&[f32], usize),
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n);
    assert!(lhs.len() >= (m - 1) * lhs_rs + kdim && rhs.len() >= (n - 1) * rhs_rs + kdim);
    // SAFETY: dst is an exclusive borrow of m x n floats; lhs holds m rows and rhs n rows of
    // kdim floats at their strides (asserted above).
    unsafe {
        gemm::gemm(
            m,
            n,
            kdim,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_rs as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Per group, per image: its input planes zero-padded (rows of wp = w + 2·(k / 2)) and its
/// output-gradient planes laid out on the same row stride with zeros in the extra columns;
/// then for each (output, input) channel pair the k² sums
/// Σ_i dy_padded[o][i] · x_padded[i][i + ky·wp + kx] over the flat plane, which are the
/// weight gradient's taps (the zero columns drop the positions that are not outputs).
fn direct_weight_grad(
    x: &[f32],
    dy: &[f32],
    n: usize,
    image: usize,
    g: &Geometry,
    groups: usize,
) -> Vec<f32> {
    let Geometry { c, h, w, k } = *g;
    let (cg, hw, kk) = (c / groups, h * w, k * k);
    let pad = k / 2;
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    // k floats of slack: the last taps read past the last padded row by up to k - 1.
    let plane = hp * wp + k;
    let flat = h * wp;
    let unit = |group: usize, dst: &mut [f32]| {
        let mut xp = vec![0.0f32; cg * plane];
        let mut dp = vec![0.0f32; cg * flat];
        dst.fill(0.0);
        for b in 0..n {
            for i in 0..cg {
                let src = &x[b * image + (group * cg + i) * hw..][..hw];
                let d = &dy[b * image + (group * cg + i) * hw..][..hw];
                for y in 0..h {
                    xp[i * plane + (y + pad) * wp + pad..][..w].copy_from_slice(&src[y * w..][..w]);
                    dp[i * flat + y * wp..][..w].copy_from_slice(&d[y * w..][..w]);
                }
            }
            for o in 0..cg {
                let d = &dp[o * flat..][..flat];
                for i in 0..cg {
                    let taps = &mut dst[(o * cg + i) * kk..][..kk];
                    super::simd::correlate_taps(taps, d, &xp[i * plane..][..plane], wp, k);
                }
            }
        }
    };
    let mut dw = vec![0.0f32; c * cg * kk];
    let per_group = cg * cg * kk;
    if rayon::current_num_threads() > 1 {
        dw.par_chunks_mut(per_group)
            .enumerate()
            .for_each(|(grp, dst)| unit(grp, dst));
    } else {
        dw.chunks_mut(per_group)
            .enumerate()
            .for_each(|(grp, dst)| unit(grp, dst));
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_twice_gives_the_weights_back() {
        let w: Vec<f32> = (0..4 * 2 * 9).map(|v| v as f32).collect();
        let t = transposed(&w, 4, 2, 3);
        assert_ne!(t, w);
        assert_eq!(transposed(&t, 4, 2, 3), w);
        // Group 1 (channels 2, 3), i = 0, o = 1: w'[2, 1] is w[3, 0] flipped.
        let (wp_2_1, w_3_0) = ((2 * 2 + 1) * 9, (3 * 2) * 9);
        for t_k in 0..9 {
            assert_eq!(t[wp_2_1 + t_k], w[w_3_0 + 8 - t_k]);
        }
    }
}
