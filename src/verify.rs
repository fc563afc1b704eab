//! Correctness before speed: a naive direct convolution in plain Rust with f64 accumulation,
//! and the checks every operator passes (one layer, on a random batch of the timed shape) before it is
//! timed.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{CandleContext, Error, Result};
use crate::ops::reference::compare_by;
pub use crate::ops::reference::{compare, naive_conv2d, reference_forward};
use crate::ops::{
    self, kernel_path, Dtype, FeatureMap, Implementation, LayerWeights, OpKind, OpSpec,
    PConvForward,
};

/// The images of an `n`-image batch that the f64 reference recomputes: the first, the
/// middle and the last (each image's output depends on that image alone; the middle and last
/// are where batch strides and the schedule's later bands show).
pub fn reference_images(n: usize) -> Vec<usize> {
    let mut which = vec![0, n / 2, n - 1];
    which.dedup();
    which
}

/// The images `which` of a batch of `image`-sized images, concatenated.
pub fn pick_images<T: Copy>(v: &[T], image: usize, which: &[usize]) -> Vec<T> {
    which
        .iter()
        .flat_map(|&b| v[b * image..][..image].iter().copied())
        .collect()
}

/// Batches a training step is verified on whole (every image's upstream gradient random);
/// above it, on [`reference_images`] with a zero upstream gradient elsewhere.
pub const TRAIN_FULL_BATCH: usize = 8;

/// The images a training step's verification compares with the reference.
pub fn train_images(n: usize) -> Vec<usize> {
    if n <= TRAIN_FULL_BATCH {
        (0..n).collect()
    } else {
        reference_images(n)
    }
}

/// What the checks found, recorded beside the timings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// Shape of the verification input, `NxCxHxW`: the timed c x h x w.
    pub input: String,
    /// The kernels the verified forward ran (`kernel_path::traced`); a record's own
    /// `kernel_path`, from its timed runs, must equal it.
    #[serde(default)]
    pub kernel_path: String,
    /// max |out - ref| over all elements (a training step's elements checked with an
    /// allowance for ReLU's kink: the excess beyond it).
    pub max_abs_err: f64,
    /// max |out - ref| / max |ref|.
    pub max_rel_err: f64,
    /// The bound `max_rel_err` had to stay under for this dtype.
    pub tolerance: f64,
    /// The checks that passed, in words.
    pub checks: Vec<String>,
}

/// Relative error bound per dtype (normalised by the largest reference value): f32 has a
/// 2^-24 unit roundoff; f16 (2^-11) and bf16 (2^-8) round inputs, products and the output.
pub fn tolerance(dtype: Dtype) -> f64 {
    match dtype {
        Dtype::F32 => 1e-4,
        Dtype::F16 => 1e-2,
        Dtype::BF16 => 5e-2,
    }
}

/// The f32 bound when CUDA GEMMs may use TF32 (`--tf32 on`): TF32 keeps 10 mantissa bits
/// (unit roundoff 2^-11, about 4.9e-4) on the GEMM inputs, so the bound is f16's.
pub const TF32_TOLERANCE: f64 = 1e-2;

/// True when `err` is a number no larger than `tol` (NaN fails).
fn within(err: f64, tol: f64) -> bool {
    err <= tol
}

/// Compares an output with its reference: (max abs error, max rel error) when the relative
/// error is within `tol`; a verification error when it is not, or when the output holds a
/// NaN or an infinity.
fn check_output(label: &str, y: &[f64], reference: &[f64], tol: f64) -> Result<(f64, f64)> {
    let (max_abs_err, max_rel_err) = compare(y, reference);
    if !max_rel_err.is_finite() {
        return Err(Error::Verification(format!(
            "{label}: the output holds non-finite values (NaN or infinity) where the naive reference is finite"
        )));
    }
    if !within(max_rel_err, tol) {
        return Err(Error::Verification(format!(
            "{label}: max relative error {max_rel_err:.3e} against the naive reference exceeds the tolerance {tol:.0e}"
        )));
    }
    Ok((max_abs_err, max_rel_err))
}

/// [`check_output`] allowing each element `slack[i]` of honest difference beyond rounding:
/// what lies within it counts as no error, what lies beyond counts by its excess.
fn check_with_slack(
    label: &str,
    y: &[f64],
    reference: &[f64],
    slack: Option<&[f64]>,
    tol: f64,
) -> Result<(f64, f64)> {
    let Some(slack) = slack else {
        return check_output(label, y, reference, tol);
    };
    let within: Vec<f64> = y
        .iter()
        .zip(reference)
        .zip(slack)
        .map(|((&a, &r), &s)| {
            let d = a - r;
            if d.abs() <= s {
                r
            } else {
                a - s.copysign(d)
            }
        })
        .collect();
    check_output(label, &within, reference, tol)
}

fn to_f32_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context(|| "reading a tensor back to the host".into())
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

fn rounded(w: &LayerWeights, dtype: Dtype) -> Vec<f64> {
    w.data.iter().map(|&v| f64::from(dtype.round(v))).collect()
}

/// Runs one layer of `spec` in `implementation` on a random input of the timed shape (batch
/// and c x h x w, on the caller's thread pool, so the dispatcher picks the kernels and
/// schedule it picks when timed) and checks it against the naive reference on the first,
/// middle and last image (and, for PConv, the pass-through and aliasing promises on every
/// image).
pub fn verify(
    spec: &OpSpec,
    implementation: Implementation,
    device: &Device,
    dtype: Dtype,
    (batch, seed): (usize, u64),
    poison_output: bool,
) -> Result<Verification> {
    let FeatureMap { c, h, w } = spec.map;
    let n = batch;
    let label = format!(
        "{} {} at {} ({implementation}, {dtype})",
        spec.kind,
        spec.variant(),
        spec.map
    );
    let weights = ops::random_weights(spec, 1, seed);
    let x_data = ops::verification_input(spec, n, seed);
    let x = ops::tensor_from(x_data, &[n, c, h, w], device, dtype)?;
    let x_before = to_f32_vec(&x)?;
    let stack = ops::build(spec, implementation, &weights, device, dtype)?;
    let (y, kernel_path) = kernel_path::traced(|| {
        let y = stack.forward(&x)?;
        device.synchronize()?;
        Ok::<_, candle_core::Error>(y)
    });
    let y = y.context(|| format!("running {label}"))?;
    let mut y_host = to_f32_vec(&y)?;
    if poison_output {
        // Test hook (`run --inject-nan-into OP`): the failure path, end to end.
        let mid = y_host.len() / 2;
        if let Some(v) = y_host.get_mut(mid) {
            *v = f32::NAN;
        }
    }

    let (image, out_image) = (c * h * w, ops::output_elements(spec));
    if y_host.len() != n * out_image {
        return Err(Error::Verification(format!(
            "{label}: the output holds {} values where {n} images of {out_image} = {} were expected",
            y_host.len(),
            n * out_image
        )));
    }
    // Every image, not only those the reference recomputes.
    if let Some(i) = y_host.iter().position(|v| !v.is_finite()) {
        return Err(Error::Verification(format!(
            "{label}: the output holds a non-finite value (NaN or infinity) in image {} of {n}",
            i / out_image
        )));
    }
    let which = reference_images(n);
    let m = which.len();
    let rounded_weights: Vec<Vec<f64>> = weights.iter().map(|w| rounded(w, dtype)).collect();
    let reference = ops::reference_layer(
        spec,
        &rounded_weights,
        &widen(&pick_images(&x_before, image, &which)),
        m,
    );
    let tol = if dtype == Dtype::F32
        && device.is_cuda()
        && candle_core::cuda::gemm_reduced_precision_f32()
    {
        TF32_TOLERANCE
    } else {
        tolerance(dtype)
    };
    let checked = widen(&pick_images(&y_host, out_image, &which));
    let (max_abs_err, max_rel_err) = check_output(&label, &checked, &reference, tol)?;
    let images = match which.as_slice() {
        [only] => format!("image {only}"),
        _ => format!("images {which:?}"),
    };
    let mut checks = vec![format!(
        "{images} of {n} match the naive f64 reference (rel err {max_rel_err:.2e} <= {tol:.0e})"
    )];

    if spec.kind == OpKind::PConv {
        let cp = spec.conv_channels();
        let plane = h * w;
        for b in 0..n {
            let range = (b * c + cp) * plane..(b + 1) * c * plane;
            let same_bits = x_before[range.clone()]
                .iter()
                .zip(&y_host[range])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            if !same_bits {
                return Err(Error::Verification(format!(
                    "{label}: the {} untouched channels differ from the input",
                    c - cp
                )));
            }
        }
        checks.push(format!(
            "untouched {} channels equal the input bit for bit",
            c - cp
        ));
        let x_after = to_f32_vec(&x)?;
        if x_after
            .iter()
            .zip(&x_before)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(Error::Verification(format!(
                "{label}: the forward modified its input (it aliases it)"
            )));
        }
        checks.push("input left unmodified (no aliasing)".into());

        let other = match spec.forward.unwrap_or(PConvForward::SplitCat) {
            PConvForward::Slicing => PConvForward::SplitCat,
            PConvForward::SplitCat => PConvForward::Slicing,
        };
        let other_spec = OpSpec {
            forward: Some(other),
            ..spec.clone()
        };
        let y_other = ops::build(&other_spec, implementation, &weights, device, dtype)?
            .forward(&x)
            .context(|| format!("running {label} with forward {other}"))?;
        let (_, rel) = compare_by(&to_f32_vec(&y_other)?, &y_host, |v| f64::from(*v));
        if !within(rel, tol) {
            return Err(Error::Verification(format!(
                "{label}: forwards slicing and split_cat disagree (rel diff {rel:.3e})"
            )));
        }
        checks.push(format!(
            "agrees with the {other} forward (rel diff {rel:.2e})"
        ));
    }

    Ok(Verification {
        input: format!("{n}x{c}x{h}x{w}"),
        kernel_path,
        max_abs_err,
        max_rel_err,
        tolerance: tol,
        checks,
    })
}

/// Runs one layer's training step of `spec` in `implementation` at the timed batch (on the
/// caller's pool, as it is timed) with a random upstream gradient g (loss sum(y ⊙ g), so
/// every gradient entry is tested; the timed step's sum(y) is the case g = 1), and checks
/// against the f64 reference (the naive convolution's analytic gradients): the output and the
/// input gradient on every image of a batch up to [`TRAIN_FULL_BATCH`] (above it on the first,
/// middle and last, g being zero on the others, whose input gradient must then be zero), every
/// weight gradient, and, for PConv, that the untouched channels pass their gradient through
/// bit for bit.
pub fn verify_train(
    spec: &OpSpec,
    implementation: Implementation,
    device: &Device,
    dtype: Dtype,
    (batch, seed): (usize, u64),
    poison_output: bool,
) -> Result<Verification> {
    let FeatureMap { c, h, w } = spec.map;
    let n = batch;
    let label = format!(
        "{} {} at {} ({implementation}, {dtype}, train)",
        spec.kind,
        spec.variant(),
        spec.map
    );
    let weights = ops::random_weights(spec, 1, seed);
    let shape = [n, c, h, w];
    let image = c * h * w;
    let which = train_images(n);
    let x_data = ops::verification_input(spec, n, seed);
    // Above TRAIN_FULL_BATCH images, the upstream gradient is zero on the images the reference
    // does not recompute: images do not interact, so the weight gradients (sums over the
    // batch) are those of the compared images alone, and the reference stays at three images.
    let mut g_data = ops::uniform(x_data.len(), 1.0, &mut ops::seeded_rng(seed ^ 0x9bad));
    for b in (0..n).filter(|b| !which.contains(b)) {
        g_data[b * image..][..image].fill(0.0);
    }
    let step = ops::build_train(spec, implementation, &weights, device, dtype)?;
    let x = step.input(ops::tensor_from(x_data, &shape, device, dtype)?)?;
    let g = ops::tensor_from(g_data, &shape, device, dtype)?;
    // What the layer really sees, after rounding to the dtype.
    let (x_host, g_host) = (to_f32_vec(&x)?, to_f32_vec(&g)?);
    let (grads, kernel_path) = kernel_path::traced(|| {
        let grads = step.step(&x, Some(&g))?;
        device.synchronize()?;
        Ok::<_, candle_core::Error>(grads)
    });
    let grads = grads.context(|| format!("running a training step of {label}"))?;
    let mut dx = to_f32_vec(&grads.input)?;
    if poison_output {
        let mid = dx.len() / 2;
        dx[mid] = f32::NAN;
    }
    let y = to_f32_vec(&grads.output)?;
    let dws = grads
        .weights
        .iter()
        .map(to_f32_vec)
        .collect::<Result<Vec<_>>>()?;
    if let Some(i) = dx.iter().chain(&y).position(|v| !v.is_finite()) {
        return Err(Error::Verification(format!(
            "{label}: {} holds a non-finite value (NaN or infinity)",
            if i < dx.len() {
                "the input gradient"
            } else {
                "the output"
            }
        )));
    }
    let rounded_weights: Vec<Vec<f64>> = weights.iter().map(|w| rounded(w, dtype)).collect();
    let pick = |v: &[f32]| widen(&pick_images(v, image, &which));
    let (y_ref, dx_ref, dw_ref) = ops::reference_step(
        spec,
        &rounded_weights,
        &pick(&x_host),
        &pick(&g_host),
        which.len(),
    );
    let tol = if dtype == Dtype::F32
        && device.is_cuda()
        && candle_core::cuda::gemm_reduced_precision_f32()
    {
        TF32_TOLERANCE
    } else {
        tolerance(dtype)
    };
    let (y_abs, y_rel) = check_output(&format!("{label}: output"), &pick(&y), &y_ref, tol)?;
    let (x_ref, g_ref) = (pick(&x_host), pick(&g_host));
    // A ReLU unit within 64 unit roundoffs (of the largest pre-activation) of its kink may land
    // on the other side: PyTorch's f32 first PWConv of the block at 384x14x14 erred by 2.5e-6
    // at a largest value of 4.3 against float64, about 10 roundoffs; TF32 and f16 keep 11
    // bits, bf16 8.
    let roundoff = match dtype {
        Dtype::F32 if tol == TF32_TOLERANCE => 2f64.powi(-11),
        Dtype::F32 => 2f64.powi(-24),
        Dtype::F16 => 2f64.powi(-11),
        Dtype::BF16 => 2f64.powi(-8),
    };
    let slack = ops::reference_slack(
        spec,
        &rounded_weights,
        (&x_ref, &g_ref),
        which.len(),
        64.0 * roundoff,
    );
    let (dx_abs, dx_rel) = check_with_slack(
        &format!("{label}: input gradient"),
        &pick(&dx),
        &dx_ref,
        slack.as_ref().map(|s| s.input.as_slice()),
        tol,
    )?;
    let others: Vec<usize> = (0..n).filter(|b| !which.contains(b)).collect();
    if let Some(b) = others
        .iter()
        .find(|&&b| dx[b * image..][..image].iter().any(|&v| v != 0.0))
    {
        return Err(Error::Verification(format!(
            "{label}: image {b} has a zero upstream gradient but a nonzero input gradient (images leak into each other)"
        )));
    }
    if dws.len() != dw_ref.len() {
        return Err(Error::Verification(format!(
            "{label}: {} weight gradients where {} were expected",
            dws.len(),
            dw_ref.len()
        )));
    }
    let mut dw_rel: f64 = 0.0;
    let mut dw_abs: f64 = y_abs.max(dx_abs);
    for (i, (got, want)) in dws.iter().zip(&dw_ref).enumerate() {
        let (abs, rel) = check_with_slack(
            &format!("{label}: weight gradient {}", i + 1),
            &widen(got),
            want,
            slack.as_ref().map(|s| s.weights[i].as_slice()),
            tol,
        )?;
        dw_rel = dw_rel.max(rel);
        dw_abs = dw_abs.max(abs);
    }
    let images = match which.as_slice() {
        [only] => format!("image {only}"),
        _ => format!("images {which:?}"),
    };
    let mut checks = vec![
        format!("output of {images} of {n} matches the naive f64 reference (rel err {y_rel:.2e} <= {tol:.0e})"),
        format!("input gradient of {images} of {n} matches the naive f64 gradient (rel err {dx_rel:.2e} <= {tol:.0e})"),
        format!(
            "{} weight gradient(s), summed over {images}, match the naive f64 gradient (rel err {dw_rel:.2e} <= {tol:.0e})",
            dws.len()
        ),
    ];
    if !others.is_empty() {
        checks.push(format!(
            "the input gradient of the other {} image(s), whose upstream gradient is zero, is zero",
            others.len()
        ));
    }
    if let Some(s) = &slack {
        checks.push(format!(
            "{} ReLU unit(s) within rounding of the kink may fall either side: what their flips change is allowed",
            s.units
        ));
    }
    if spec.kind == OpKind::PConv {
        let (cp, plane) = (spec.conv_channels(), h * w);
        for b in 0..n {
            let range = (b * c + cp) * plane..(b + 1) * c * plane;
            let same = g_host[range.clone()]
                .iter()
                .zip(&dx[range])
                .all(|(a, b)| a.to_bits() == b.to_bits());
            if !same {
                return Err(Error::Verification(format!(
                    "{label}: the gradient of the {} untouched channels differs from the upstream gradient",
                    c - cp
                )));
            }
        }
        checks.push(format!(
            "untouched {} channels pass their gradient through bit for bit",
            c - cp
        ));
    }
    Ok(Verification {
        input: format!("{n}x{c}x{h}x{w}"),
        kernel_path,
        max_abs_err: dw_abs,
        max_rel_err: y_rel.max(dx_rel).max(dw_rel),
        tolerance: tol,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: OpKind, map: &str, k: usize) -> OpSpec {
        OpSpec {
            kind,
            kernel: k,
            groups: matches!(kind, OpKind::GConv | OpKind::GConvPw).then_some(4),
            n_div: matches!(
                kind,
                OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster
            )
            .then_some(3),
            forward: matches!(
                kind,
                OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock | OpKind::C2fFaster
            )
            .then_some(PConvForward::Slicing),
            expansion: matches!(kind, OpKind::FasterNetBlock | OpKind::C2fFaster).then_some(2),
            act: (kind == OpKind::FasterNetBlock).then_some(crate::ops::Act::Gelu),
            bottlenecks: matches!(kind, OpKind::C2f | OpKind::C2fFaster).then_some(2),
            model: None,
            map: map.parse().unwrap(),
        }
    }

    /// A training step's verification, for every family that trains: whole batches up to 8,
    /// three images above (the others' input gradient must be zero), and a poisoned input
    /// gradient fails.
    #[test]
    fn training_steps_verify_for_every_family_and_at_large_batches() {
        let split = |mut s: OpSpec| {
            if s.forward.is_some() {
                s.forward = Some(PConvForward::SplitCat);
            }
            s
        };
        let relu_block = OpSpec {
            act: Some(crate::ops::Act::Relu),
            ..split(spec(OpKind::FasterNetBlock, "12x7x9", 3))
        };
        let cases = [
            (split(spec(OpKind::PConv, "10x9x8", 3)), 9),
            (spec(OpKind::GConvPw, "8x6x6", 5), 2),
            (relu_block, 2),
            (split(spec(OpKind::C2fFaster, "12x6x7", 3)), 1),
            (spec(OpKind::C2f, "8x5x5", 1), 10),
        ];
        for (s, n) in &cases {
            for imp in [Implementation::Native, Implementation::Candle] {
                let v = verify_train(s, imp, &Device::Cpu, Dtype::F32, (*n, 3), false)
                    .unwrap_or_else(|e| panic!("{} {imp} n={n}: {e}", s.kind));
                let all = v.checks.join("; ");
                assert!(all.contains("weight gradient"), "{all}");
                assert_eq!(all.contains("is zero"), *n > TRAIN_FULL_BATCH, "{all}");
            }
        }
        let err = verify_train(
            &cases[0].0,
            Implementation::Native,
            &Device::Cpu,
            Dtype::F32,
            (2, 3),
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("non-finite") && err.contains("input gradient"),
            "{err}"
        );
    }

    #[test]
    fn naive_conv_identity_kernel_returns_the_input() {
        let (c, h, w, k) = (2, 4, 3, 3);
        let x: Vec<f64> = (0..c * h * w).map(|i| i as f64).collect();
        let mut weight = vec![0.0; c * c * k * k];
        for oc in 0..c {
            weight[((oc * c + oc) * k + 1) * k + 1] = 1.0;
        }
        assert_eq!(naive_conv2d(&x, (1, c, h, w), &weight, k, 1), x);
    }

    #[test]
    fn naive_conv_box_filter_counts_neighbours_at_the_border() {
        // All-ones input and 3x3 all-ones depthwise kernel: each output is the number of
        // in-bounds neighbours (4 in a corner, 6 on an edge, 9 inside).
        let (c, h, w, k) = (1, 3, 4, 3);
        let out = naive_conv2d(&vec![1.0; c * h * w], (1, c, h, w), &[1.0; 9], k, 1);
        assert_eq!(out, vec![4., 6., 6., 4., 6., 9., 9., 6., 4., 6., 6., 4.]);
    }

    #[test]
    fn compare_catches_a_wrong_output() {
        let reference = vec![1.0, -2.0, 4.0];
        assert_eq!(compare(&reference, &reference), (0.0, 0.0));
        let (abs, rel) = compare(&[1.0, -2.0, 4.1], &reference);
        assert!((abs - 0.1).abs() < 1e-12 && (rel - 0.025).abs() < 1e-12);
    }

    #[test]
    fn one_nan_in_the_output_fails_the_bound() {
        let reference = vec![1.0, -2.0, 4.0, 0.5];
        let mut one = reference.clone();
        one[2] = f64::NAN;
        let (abs, rel) = compare(&one, &reference);
        assert!(abs.is_nan() && !within(rel, 1e-4), "abs {abs}, rel {rel}");
        let all = vec![f64::NAN; reference.len()];
        assert!(!within(compare(&all, &reference).1, 1e-4));
        let mut inf = reference.clone();
        inf[0] = f64::INFINITY;
        assert!(!within(compare(&inf, &reference).1, 1e-4));
        // A short output is not a match either.
        assert!(!within(compare(&reference[..2], &reference).1, 1e-4));
    }

    /// An output with one NaN where the reference is finite fails the check `verify` runs
    /// (and so the point: exit 3, listed under failures).
    #[test]
    fn an_output_with_one_nan_fails_verification() {
        let reference: Vec<f64> = (0..50).map(|i| f64::from(i) - 20.0).collect();
        assert!(check_output("ok", &reference, &reference, 1e-4).is_ok());
        let mut y = reference.clone();
        y[17] = f64::NAN;
        let err = check_output("dwconv 3x3 at 4x5x5", &y, &reference, 1e-4).unwrap_err();
        assert!(matches!(err, Error::Verification(_)), "{err}");
        assert!(err.to_string().contains("non-finite"), "{err}");
    }

    #[test]
    fn candle_operators_match_the_reference() {
        let cases = [
            (OpKind::Conv, "8x8x8", 3), // C == H == W
            (OpKind::Conv, "5x7x6", 5),
            (OpKind::GConv, "12x9x7", 3),
            (OpKind::DWConv, "6x9x9", 7),
            (OpKind::DWConv, "8x8x8", 3),
            (OpKind::PConv, "10x7x9", 3), // n_div = 3 does not divide 10
            (OpKind::PConv, "9x9x9", 5),
            (OpKind::PWConv, "7x5x6", 1),
        ];
        for (kind, map, k) in cases {
            let s = spec(kind, map, k);
            let v = verify(
                &s,
                Implementation::Candle,
                &Device::Cpu,
                Dtype::F32,
                (3, 7),
                false,
            )
            .unwrap_or_else(|e| panic!("{kind} {map} k={k}: {e}"));
            assert!(v.max_rel_err < 1e-5, "{kind} {map}: {}", v.max_rel_err);
            if kind == OpKind::PConv {
                assert_eq!(v.checks.len(), 4, "{:?}", v.checks);
            }
        }
    }

    #[test]
    fn native_operators_match_the_reference() {
        let cases = [
            (OpKind::Conv, "8x8x8", 3),    // C == H == W, direct
            (OpKind::Conv, "40x9x7", 5),   // GEMM
            (OpKind::GConv, "12x9x7", 3),  // g = 4: direct
            (OpKind::GConv, "160x9x9", 3), // g = 4, 40 per group: GEMM
            (OpKind::DWConv, "6x9x9", 7),
            (OpKind::DWConv, "13x8x8", 1),
            (OpKind::PConv, "10x7x9", 3), // n_div = 3 does not divide 10
            (OpKind::PConv, "101x9x9", 5), // c_p = 33: GEMM
            (OpKind::PWConv, "7x5x6", 1),
        ];
        for (kind, map, k) in cases {
            let s = spec(kind, map, k);
            let v = verify(
                &s,
                Implementation::Native,
                &Device::Cpu,
                Dtype::F32,
                (3, 7),
                false,
            )
            .unwrap_or_else(|e| panic!("{kind} {map} k={k}: {e}"));
            assert!(v.max_rel_err < 1e-5, "{kind} {map}: {}", v.max_rel_err);
        }
    }

    #[test]
    fn composites_match_the_reference_composition() {
        let cases = [
            (OpKind::PConvPw, "10x7x9", 3), // n_div = 3 does not divide 10
            (OpKind::PConvPw, "40x8x8", 5),
            (OpKind::DwPw, "12x9x7", 3),
            (OpKind::GConvPw, "12x8x8", 3),  // g = 4
            (OpKind::GConvPw, "160x9x9", 3), // 40 per group: GEMM path
            (OpKind::FasterNetBlock, "10x7x9", 3),
            (OpKind::FasterNetBlock, "40x8x8", 5), // c_p = 13
            (OpKind::C2f, "10x7x9", 3),            // c_ = 5, n = 2
            (OpKind::C2f, "64x9x9", 5),            // c_ = 32: GEMM convs
            (OpKind::C2fFaster, "12x7x9", 3),      // c_ = 6, n_div = 3: c_p = 2
            (OpKind::C2fFaster, "96x8x8", 3),      // c_p = 16
        ];
        for imp in [Implementation::Native, Implementation::Candle] {
            for (kind, map, k) in cases {
                let s = spec(kind, map, k);
                let v = verify(&s, imp, &Device::Cpu, Dtype::F32, (2, 5), false)
                    .unwrap_or_else(|e| panic!("{kind} {map} k={k} {imp}: {e}"));
                assert!(
                    v.max_rel_err < 1e-5,
                    "{kind} {map} {imp}: {}",
                    v.max_rel_err
                );
            }
        }
        // The reference really is the chain: PConv + PWConv differs from PConv alone.
        let s = spec(OpKind::PConvPw, "8x6x6", 3);
        assert_eq!(s.parts().len(), 2);
        assert_eq!(s.variant(), "3x3 n_div=3 slicing + 1x1");
    }

    #[test]
    fn f16_verifies_within_its_tolerance() {
        let s = spec(OpKind::PConv, "16x8x8", 3);
        let v = verify(
            &s,
            Implementation::Candle,
            &Device::Cpu,
            Dtype::F16,
            (2, 3),
            false,
        )
        .unwrap();
        // Rounding is visible (not an f32 path in disguise) yet inside the bound.
        assert!(
            v.max_rel_err > 1e-6 && v.max_rel_err <= tolerance(Dtype::F16),
            "{v:?}"
        );
    }

    #[test]
    fn bf16_on_cpu_is_refused_up_front_with_a_clear_error() {
        // candle 0.11's CPU matmul has no bf16 kernel: the probe must say so.
        let err = crate::device::check_supported(&Device::Cpu, Implementation::Candle, Dtype::BF16)
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err}");
        assert!(err.to_string().contains("dtype bf16"), "{err}");
    }
}
