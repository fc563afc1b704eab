//! The references every operator is checked against, beside the operators they describe: a
//! naive direct convolution in plain Rust accumulating in f64, one layer of any single
//! operator built on it, and how far an output is from its reference. The families compose
//! these into their own references (`Family::reference`); `verify` runs the checks.

use super::{FeatureMap, OpKind, OpSpec};

/// Direct convolution, NCHW, stride 1, zero padding k / 2, f64 throughout.
/// `weight` is (c_out, c_in / groups, k, k), c_out = c_in.
pub fn naive_conv2d(
    x: &[f64],
    (n, c, h, w): (usize, usize, usize, usize),
    weight: &[f64],
    k: usize,
    groups: usize,
) -> Vec<f64> {
    let cg = c / groups;
    let pad = k / 2;
    let mut out = vec![0.0; n * c * h * w];
    for b in 0..n {
        for oc in 0..c {
            let g = oc / cg;
            let plane = &mut out[(b * c + oc) * h * w..][..h * w];
            for icg in 0..cg {
                let ic = g * cg + icg;
                let src = &x[(b * c + ic) * h * w..][..h * w];
                for ky in 0..k {
                    for kx in 0..k {
                        let wv = weight[((oc * cg + icg) * k + ky) * k + kx];
                        // Output columns xo whose input column xo + kx - pad lies inside.
                        let (x0, x1) =
                            (pad.saturating_sub(kx), (w + pad).saturating_sub(kx).min(w));
                        if x0 >= x1 {
                            continue;
                        }
                        for y in 0..h {
                            let Some(iy) = (y + ky).checked_sub(pad).filter(|&iy| iy < h) else {
                                continue;
                            };
                            let dst = &mut plane[y * w + x0..y * w + x1];
                            let row = &src[iy * w + x0 + kx - pad..][..x1 - x0];
                            for (d, s) in dst.iter_mut().zip(row) {
                                *d += wv * s;
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The reference for one layer of `spec`: PConv convolves the first c_p channels and copies
/// the rest; every other operator is a grouped convolution.
pub fn reference_forward(spec: &OpSpec, weight: &[f64], x: &[f64], n: usize) -> Vec<f64> {
    let FeatureMap { c, h, w } = spec.map;
    let k = spec.kernel;
    if spec.kind != OpKind::PConv {
        return naive_conv2d(x, (n, c, h, w), weight, k, spec.conv_groups());
    }
    let cp = spec.conv_channels();
    let plane = h * w;
    let head: Vec<f64> = (0..n)
        .flat_map(|b| x[b * c * plane..][..cp * plane].iter().copied())
        .collect();
    let conv = naive_conv2d(&head, (n, cp, h, w), weight, k, 1);
    let mut out = x.to_vec();
    for b in 0..n {
        out[b * c * plane..][..cp * plane].copy_from_slice(&conv[b * cp * plane..][..cp * plane]);
    }
    out
}

/// The largest of `values`, NaN when any is NaN (`f64::max` would drop it).
fn max_or_nan(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |m: f64, v| {
        if m.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

/// max |a - b| and max |a - b| / max |b|. Any non-finite output or difference, or outputs
/// of different sizes, make both NaN or infinite, so no bound accepts them.
pub fn compare(actual: &[f64], reference: &[f64]) -> (f64, f64) {
    compare_by(actual, reference, |v| *v)
}

/// [`compare`] over values of any float type, widened to f64 one at a time (no f64 copy of
/// a whole batch).
pub(crate) fn compare_by<T>(actual: &[T], reference: &[T], wide: impl Fn(&T) -> f64) -> (f64, f64) {
    if actual.len() != reference.len() {
        return (f64::NAN, f64::NAN);
    }
    let max_abs = max_or_nan(
        actual
            .iter()
            .zip(reference)
            .map(|(a, r)| (wide(a) - wide(r)).abs()),
    );
    let scale = max_or_nan(reference.iter().map(|r| wide(r).abs()));
    let rel = if scale > 0.0 {
        max_abs / scale
    } else {
        max_abs
    };
    (max_abs, rel)
}
