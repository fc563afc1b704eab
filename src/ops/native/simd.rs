//! The one SIMD-critical loop of the direct kernels, compiled per instruction set and picked
//! at run time, so one binary is fast and still runs anywhere: on x86-64 AVX-512, AVX2+FMA or
//! portable code; on aarch64 NEON, which is baseline there (Advanced SIMD with fused
//! multiply-add: the loops compile to `fmla` on vector registers, see `docs/arm.md`).

use std::sync::OnceLock;

use crate::ops::Act;

/// Instruction-set level the kernels run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    /// aarch64's Advanced SIMD, always present there.
    Neon,
    Portable,
}

impl Isa {
    pub fn as_str(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2+fma",
            Isa::Neon => "neon",
            Isa::Portable => "portable",
        }
    }
}

/// Detected once per process.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            return Isa::Neon;
        }
        #[allow(unreachable_code)]
        Isa::Portable
    })
}

/// `a * b + c`, fused where the target has FMA (`mul_add` is a libm call without it).
trait MulAdd {
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // aarch64 has its own NEON loop
struct Fused;
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

struct Plain;
impl MulAdd for Plain {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// For each of B output channels b:
/// `acc[b·n + i] (+)= sum over ky, kx < K of w[(b·K + ky)·K + kx] · src[i + ky·stride + kx]`,
/// with n = acc.len() / B.
///
/// A k x k stencil over a zero-padded plane flattened with row stride `stride`: output
/// position i = y·stride + x. Columns x >= the real width are junk the caller drops; this
/// keeps the loop long and branch-free even for 7 x 7 maps. B output channels share every
/// input load and give B independent FMA chains.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // ky, kx index both the input offset and every wk[b]
fn stencil_body<M: MulAdd, const K: usize, const B: usize>(
    acc: &mut [f32],
    src: &[f32],
    stride: usize,
    w: &[f32],
    accumulate: bool,
) {
    let n = acc.len() / B;
    assert_eq!(acc.len(), n * B, "accumulator length");
    assert_eq!(w.len(), B * K * K, "weight length");
    assert!(
        src.len() >= n + (K - 1) * stride + K - 1,
        "stencil reads past the padded plane"
    );
    let mut wk = [[[0f32; K]; K]; B];
    for (b, plane) in wk.iter_mut().enumerate() {
        for (ky, row) in plane.iter_mut().enumerate() {
            row.copy_from_slice(&w[(b * K + ky) * K..][..K]);
        }
    }
    let s = src.as_ptr();
    let d = acc.as_mut_ptr();
    for i in 0..n {
        let mut a = [0f32; B];
        if accumulate {
            for (b, av) in a.iter_mut().enumerate() {
                // SAFETY: b·n + i < B·n = acc.len().
                *av = unsafe { *d.add(b * n + i) };
            }
        }
        for ky in 0..K {
            for kx in 0..K {
                // SAFETY: i + ky·stride + kx <= n - 1 + (K - 1)·stride + K - 1 < src.len(),
                // asserted above.
                let x = unsafe { *s.add(i + ky * stride + kx) };
                for (b, av) in a.iter_mut().enumerate() {
                    *av = M::mul_add(wk[b][ky][kx], x, *av);
                }
            }
        }
        for (b, av) in a.iter().enumerate() {
            // SAFETY: as above.
            unsafe { *d.add(b * n + i) = *av };
        }
    }
}

/// [`stencil_body`] with NEON intrinsics: four output positions per step in one 128-bit
/// register per output channel, one `fmla` per weight (LLVM leaves the generic loop scalar on
/// aarch64), then the generic loop for the last `n % 4` positions.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn stencil_neon<const K: usize, const B: usize>(
    acc: &mut [f32],
    src: &[f32],
    stride: usize,
    w: &[f32],
    accumulate: bool,
) {
    use std::arch::aarch64::{float32x4_t, vdupq_n_f32, vfmaq_f32, vld1q_f32, vst1q_f32};
    let n = acc.len() / B;
    assert_eq!(acc.len(), n * B, "accumulator length");
    assert_eq!(w.len(), B * K * K, "weight length");
    assert!(
        src.len() >= n + (K - 1) * stride + K - 1,
        "stencil reads past the padded plane"
    );
    let body = n / 4 * 4;
    let s = src.as_ptr();
    let d = acc.as_mut_ptr();
    // SAFETY: NEON is baseline on aarch64; every load reads src[i + ky·stride + kx ..][..4]
    // with i + 3 < n, inside the asserted bound, and every store writes acc[b·n + i ..][..4]
    // with i + 3 < n.
    unsafe {
        let mut wv = [[[vdupq_n_f32(0.0); K]; K]; B];
        for (b, plane) in wv.iter_mut().enumerate() {
            for (ky, row) in plane.iter_mut().enumerate() {
                for (kx, v) in row.iter_mut().enumerate() {
                    *v = vdupq_n_f32(w[(b * K + ky) * K + kx]);
                }
            }
        }
        for i in (0..body).step_by(4) {
            let mut a: [float32x4_t; B] = [vdupq_n_f32(0.0); B];
            if accumulate {
                for (b, av) in a.iter_mut().enumerate() {
                    *av = vld1q_f32(d.add(b * n + i));
                }
            }
            for ky in 0..K {
                for kx in 0..K {
                    let x = vld1q_f32(s.add(i + ky * stride + kx));
                    for (b, av) in a.iter_mut().enumerate() {
                        *av = vfmaq_f32(*av, x, wv[b][ky][kx]);
                    }
                }
            }
            for (b, av) in a.iter().enumerate() {
                vst1q_f32(d.add(b * n + i), *av);
            }
        }
    }
    if body < n {
        // The tail through the generic loop: the same sums, one position at a time.
        for b in 0..B {
            for i in body..n {
                let mut a = if accumulate { acc[b * n + i] } else { 0.0 };
                for ky in 0..K {
                    for kx in 0..K {
                        a = w[(b * K + ky) * K + kx].mul_add(src[i + ky * stride + kx], a);
                    }
                }
                acc[b * n + i] = a;
            }
        }
    }
}

/// The same stencil for a kernel size known only at run time (any odd k; slower).
fn stencil_dyn(
    acc: &mut [f32],
    src: &[f32],
    stride: usize,
    w: &[f32],
    k: usize,
    blocks: usize,
    accumulate: bool,
) {
    let n = acc.len() / blocks;
    assert!(src.len() >= n + (k - 1) * stride + k - 1);
    for b in 0..blocks {
        for i in 0..n {
            let mut a = if accumulate { acc[b * n + i] } else { 0.0 };
            for ky in 0..k {
                for kx in 0..k {
                    a += w[(b * k + ky) * k + kx] * src[i + ky * stride + kx];
                }
            }
            acc[b * n + i] = a;
        }
    }
}

macro_rules! versions {
    ($(($k:literal, $b:literal) => $v512:ident, $v256:ident;)+) => {
        $(
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn $v512(acc: &mut [f32], src: &[f32], stride: usize, w: &[f32], accumulate: bool) {
                stencil_body::<Fused, $k, $b>(acc, src, stride, w, accumulate)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $v256(acc: &mut [f32], src: &[f32], stride: usize, w: &[f32], accumulate: bool) {
                stencil_body::<Fused, $k, $b>(acc, src, stride, w, accumulate)
            }
        )+

        /// Runs the stencil for `blocks` output channels (1, 2 or 4 are fast; any works) at the
        /// best instruction set this CPU has.
        pub fn stencil(acc: &mut [f32], src: &[f32], stride: usize, w: &[f32], k: usize, blocks: usize, accumulate: bool) {
            match (k, blocks, isa()) {
                $(
                    // SAFETY: the CPU has the features these versions were compiled for.
                    #[cfg(target_arch = "x86_64")]
                    ($k, $b, Isa::Avx512) => unsafe { $v512(acc, src, stride, w, accumulate) },
                    #[cfg(target_arch = "x86_64")]
                    ($k, $b, Isa::Avx2) => unsafe { $v256(acc, src, stride, w, accumulate) },
                    #[cfg(target_arch = "aarch64")]
                    ($k, $b, Isa::Neon) => stencil_neon::<$k, $b>(acc, src, stride, w, accumulate),
                    ($k, $b, Isa::Portable) => stencil_body::<Plain, $k, $b>(acc, src, stride, w, accumulate),
                )+
                _ => stencil_dyn(acc, src, stride, w, k, blocks, accumulate),
            }
        }
    };
}

versions! {
    (1, 1) => s1b1_512, s1b1_256;
    (3, 1) => s3b1_512, s3b1_256;
    (5, 1) => s5b1_512, s5b1_256;
    (7, 1) => s7b1_512, s7b1_256;
    (1, 2) => s1b2_512, s1b2_256;
    (3, 2) => s3b2_512, s3b2_256;
    (5, 2) => s5b2_512, s5b2_256;
    (7, 2) => s7b2_512, s7b2_256;
    (1, 4) => s1b4_512, s1b4_256;
    (3, 4) => s3b4_512, s3b4_256;
    (5, 4) => s5b4_512, s5b4_256;
}

/// e^x for f32, branch-free so loops over it vectorise (glibc's `expf` is a scalar call):
/// Cody-Waite reduction x = n·ln2 + r, Cephes' degree-6 polynomial for e^r, and 2^n built
/// in the exponent bits. Relative error below 2e-7 on [-87, 88] (tested); inputs are
/// clamped there, so e^x never overflows and tiny results flush towards 2^-126.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    // n as an integer from t's mantissa bits: `n as i32` would be a saturating cast, which
    // LLVM scalarises lane by lane.
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes: 5.0000001201E-1, which rounds to 0.5 in f32
    let e = p * r * r + r + 1.0;
    e * f32::from_bits(((ni + 127) as u32) << 23)
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7) on `exp_f32`.
#[inline(always)]
fn erf_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp_f32(-a * a);
    y.copysign(x)
}

/// act(v + bias) in place over a plane.
#[inline(always)]
fn bias_act_body(plane: &mut [f32], bias: f32, act: Act) {
    match act {
        Act::Relu => plane.iter_mut().for_each(|v| *v = (*v + bias).max(0.0)),
        Act::Silu => plane.iter_mut().for_each(|v| {
            let u = *v + bias;
            *v = u / (1.0 + exp_f32(-u));
        }),
        Act::Gelu => plane.iter_mut().for_each(|v| {
            let u = *v + bias;
            *v = 0.5 * u * (1.0 + erf_f32(u * std::f32::consts::FRAC_1_SQRT_2));
        }),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn bias_act_512(plane: &mut [f32], bias: f32, act: Act) {
    bias_act_body(plane, bias, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_act_256(plane: &mut [f32], bias: f32, act: Act) {
    bias_act_body(plane, bias, act)
}

/// act(v + bias) in place, vectorised at the best instruction set this CPU has. Agrees with
/// `Act::apply` (libm) to about 1e-6 relative (tested).
pub fn bias_act_plane(plane: &mut [f32], bias: f32, act: Act) {
    match isa() {
        // SAFETY: the CPU has the features these versions were compiled for.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { bias_act_512(plane, bias, act) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { bias_act_256(plane, bias, act) },
        _ => bias_act_body(plane, bias, act),
    }
}

/// How many output channels one stencil pass computes for a group of `cg` channels and a
/// k x k kernel. Four 7 x 7 weight sets (196 broadcast constants) defeat the vectoriser:
/// the sweep showed GConv 7x7 with 12 or 24 channels per group 10x slower than its 5x5 trend
/// with blocks of four, so 7 x 7 (and larger) kernels block at most two.
pub fn block_for(cg: usize, k: usize) -> usize {
    let max = if k >= 7 { 2 } else { 4 };
    [4, 2, 1]
        .into_iter()
        .filter(|&b| b <= max)
        .find(|&b| cg.is_multiple_of(b))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_activations_match_libm() {
        let mut worst = (0f64, 0f32);
        for i in -86_990..=87_990 {
            let x = i as f32 * 1e-3;
            let exact = f64::from(x).exp();
            let e = ((f64::from(exp_f32(x)) - exact) / exact).abs();
            if e > worst.0 {
                worst = (e, x);
            }
        }
        assert!(
            worst.0 < 2e-7,
            "exp relative error {} at {}",
            worst.0,
            worst.1
        );
        assert_eq!(exp_f32(-200.0), exp_f32(-87.0));
        assert!(exp_f32(200.0).is_finite());
        for act in [Act::Relu, Act::Silu, Act::Gelu] {
            let xs: Vec<f32> = (-4000..4000).map(|i| i as f32 * 5e-3).collect();
            let mut fast = xs.clone();
            bias_act_plane(&mut fast, 0.25, act);
            for (x, f) in xs.iter().zip(&fast) {
                let exact = act.apply_f64(f64::from(*x) + 0.25);
                let err = (f64::from(*f) - exact).abs() / exact.abs().max(1.0);
                assert!(err < 1e-6, "{act} at {x}: {f} vs {exact}");
            }
        }
    }

    #[test]
    fn the_instruction_set_matches_the_target() {
        #[cfg(target_arch = "aarch64")]
        assert_eq!(isa(), Isa::Neon);
        #[cfg(target_arch = "x86_64")]
        assert_ne!(isa(), Isa::Neon);
        assert!(["avx512", "avx2+fma", "neon", "portable"].contains(&isa().as_str()));
    }

    #[test]
    fn every_version_agrees_with_the_dynamic_loop() {
        for k in [1usize, 3, 5, 7, 9] {
            for blocks in [1usize, 2, 3, 4] {
                if k == 7 && blocks == 4 {
                    continue; // never asked for (block_for)
                }
                let stride = 11;
                let n = 4 * stride;
                let src: Vec<f32> = (0..n + (k - 1) * stride + k)
                    .map(|i| (i % 13) as f32 - 6.0)
                    .collect();
                let w: Vec<f32> = (0..blocks * k * k)
                    .map(|i| (i % 5) as f32 * 0.25 - 0.5)
                    .collect();
                let init: Vec<f32> = (0..blocks * n).map(|i| (i % 3) as f32).collect();
                let mut expect = init.clone();
                stencil_dyn(&mut expect, &src, stride, &w, k, blocks, true);
                let mut got = init.clone();
                stencil(&mut got, &src, stride, &w, k, blocks, true);
                // Small integers and quarters: exact in f32 whether fused or not.
                assert_eq!(got, expect, "k={k} blocks={blocks} at {:?}", isa());
                let mut fresh = vec![7.0; blocks * n];
                stencil(&mut fresh, &src, stride, &w, k, blocks, false);
                let mut plain = vec![0.0; blocks * n];
                stencil_dyn(&mut plain, &src, stride, &w, k, blocks, false);
                assert_eq!(fresh, plain, "k={k} blocks={blocks}");
            }
        }
        assert_eq!(
            (
                block_for(1, 3),
                block_for(6, 3),
                block_for(12, 3),
                block_for(7, 3)
            ),
            (1, 2, 4, 1)
        );
        assert_eq!((block_for(12, 7), block_for(12, 5)), (2, 4));
    }
}

/// Lanes of the per-tap accumulators of [`correlate_taps`]: 16 floats, one AVX-512 register
/// (two AVX2 ones).
const TAP_LANES: usize = 16;

/// `taps[ky·K + kx] += Σ_i dy[i] · src[i + ky·stride + kx]` for i < dy.len(): the k² sums of
/// a weight gradient over a flattened plane, each kept in a vector of lanes (one load of dy
/// serves all taps).
#[inline(always)]
#[allow(clippy::needless_range_loop)] // l indexes the dy chunk, the source window and acc
fn taps_body<M: MulAdd, const K: usize>(taps: &mut [f32], dy: &[f32], src: &[f32], stride: usize) {
    let n = dy.len();
    assert_eq!(taps.len(), K * K, "taps length");
    assert!(
        src.len() >= n + (K - 1) * stride + K - 1,
        "taps read past the source"
    );
    let mut acc = [[[0f32; TAP_LANES]; K]; K];
    let full = n / TAP_LANES * TAP_LANES;
    for i0 in (0..full).step_by(TAP_LANES) {
        let dv: [f32; TAP_LANES] = dy[i0..][..TAP_LANES].try_into().expect("a full chunk");
        for ky in 0..K {
            let row = &src[i0 + ky * stride..][..TAP_LANES + K - 1];
            for kx in 0..K {
                let a = &mut acc[ky][kx];
                for l in 0..TAP_LANES {
                    a[l] = M::mul_add(dv[l], row[kx + l], a[l]);
                }
            }
        }
    }
    for ky in 0..K {
        for kx in 0..K {
            let mut t = acc[ky][kx].iter().sum::<f32>();
            for i in full..n {
                t = M::mul_add(dy[i], src[i + ky * stride + kx], t);
            }
            taps[ky * K + kx] += t;
        }
    }
}

/// [`taps_body`] for a kernel size known only at run time.
fn taps_dyn(taps: &mut [f32], dy: &[f32], src: &[f32], stride: usize, k: usize) {
    assert_eq!(taps.len(), k * k);
    for ky in 0..k {
        for kx in 0..k {
            let window = &src[ky * stride + kx..][..dy.len()];
            taps[ky * k + kx] += dy.iter().zip(window).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

macro_rules! tap_versions {
    ($($k:literal => $v512:ident, $v256:ident;)+) => {
        $(
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            unsafe fn $v512(taps: &mut [f32], dy: &[f32], src: &[f32], stride: usize) {
                taps_body::<Fused, $k>(taps, dy, src, stride)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn $v256(taps: &mut [f32], dy: &[f32], src: &[f32], stride: usize) {
                taps_body::<Fused, $k>(taps, dy, src, stride)
            }
        )+

        /// Adds to `taps` (k x k) the correlation of an output-gradient plane `dy` with a
        /// zero-padded input plane `src`, both flattened with row stride `stride` (dy zero in
        /// the columns that are not outputs): one input channel's share of a weight gradient,
        /// at the best instruction set here.
        pub fn correlate_taps(taps: &mut [f32], dy: &[f32], src: &[f32], stride: usize, k: usize) {
            match (k, isa()) {
                $(
                    // SAFETY: the CPU has the features these versions were compiled for.
                    #[cfg(target_arch = "x86_64")]
                    ($k, Isa::Avx512) => unsafe { $v512(taps, dy, src, stride) },
                    #[cfg(target_arch = "x86_64")]
                    ($k, Isa::Avx2) => unsafe { $v256(taps, dy, src, stride) },
                    ($k, Isa::Neon | Isa::Portable) => taps_body::<Plain, $k>(taps, dy, src, stride),
                )+
                _ => taps_dyn(taps, dy, src, stride, k),
            }
        }
    };
}

tap_versions! {
    1 => t1_512, t1_256;
    3 => t3_512, t3_256;
    5 => t5_512, t5_256;
    7 => t7_512, t7_256;
}
