//! Training steps (`--pass train`): the forward through every layer, the loss sum(output),
//! and the backward producing the gradient of the input and of every layer's weights. Each
//! implementation's step, its f64 reference, and what a step costs in the paper's
//! conventions, side by side.
//!
//! - `candle`: candle's autograd. The weights are `Var`s, the forward is the inference
//!   forward, and `backward()` walks the graph it recorded.
//! - `native`: the forward kernels keep every layer's input; the backward runs, layer by layer
//!   in reverse, the weight gradient (`native::backward::weight_grad`) and the input gradient
//!   (the forward of the same operator with transposed, flipped weights). PConv's untouched
//!   channels pass their gradient straight through, as its forward passes them.

use candle_core::{Device, Module, Tensor, Var};

use super::native::{self, backward, Geometry, NativeLayer};
use super::{
    part_layer, parts_copies, tensor_from, Copies, FeatureMap, LayerWeights, OpKind, OpSpec, Target,
};
use crate::error::{CandleContext, Error, Result};
use crate::ops::Implementation;

/// What one training step computed.
pub struct Gradients {
    /// The forward's output (the loss is its sum, or its dot product with an upstream
    /// gradient).
    pub output: Tensor,
    /// d loss / d input.
    pub input: Tensor,
    /// d loss / d weights, one per weight set, in the order the weights were given.
    pub weights: Vec<Tensor>,
}

/// A runnable training step of `layers` stacked layers.
pub trait TrainStep: Send + Sync {
    /// The input as the step differentiates it (candle: a variable), made once, outside the
    /// timed region.
    fn input(&self, x: Tensor) -> Result<Tensor>;
    /// One step. The loss is sum(output), or sum(output ⊙ upstream) when an upstream
    /// gradient is given (verification uses a random one so every gradient entry is tested).
    fn step(&self, x: &Tensor, upstream: Option<&Tensor>) -> candle_core::Result<Gradients>;
    /// What the step copies beyond the paper's model (forward and backward).
    fn copies(&self) -> &Copies;
}

/// The refusal of native training on a CUDA device (`device`: its label).
pub fn native_on_cuda(device: &str) -> Error {
    Error::Unsupported(format!(
        "implementation native has backward kernels on cpu only: with --pass train use --impl candle on {device}"
    ))
}

/// The training step of a single operator or composite (its parts in a row per layer).
pub(super) fn build_parts(
    spec: &OpSpec,
    weights: &[LayerWeights],
    on: &Target,
) -> Result<Box<dyn TrainStep>> {
    let parts = spec.parts();
    let forward_copies = parts_copies(spec, on.implementation);
    match on.implementation {
        Implementation::Native => {
            let layers = weights
                .iter()
                .zip(parts.iter().cycle())
                .map(|(w, part)| NativePart::new(part, w))
                .collect();
            Ok(Box::new(NativeTrain {
                layers,
                // The backward of each copy is the same copy of the gradient: split_cat's
                // untouched channels go into the input gradient as they went into the output.
                copies: twice(
                    &forward_copies,
                    "the backward copies the untouched channels' gradient likewise",
                ),
            }))
        }
        Implementation::Candle | Implementation::Torch => {
            let mut vars = Vec::with_capacity(weights.len());
            let mut layers = Vec::with_capacity(weights.len());
            for (w, part) in weights.iter().zip(parts.iter().cycle()) {
                let weight = var_of(&mut vars, w, &w.shape, on)?;
                layers.push(part_layer(part, w, Some(weight)));
            }
            Ok(Box::new(CandleTrain {
                layers,
                vars,
                copies: candle_copies(forward_copies),
            }))
        }
    }
}

/// The copies of a candle training step: the forward's (candle's autograd copies more, which
/// is not modelled, and the description says so).
pub(super) fn candle_copies(mut copies: Copies) -> Copies {
    if !copies.description.is_empty() {
        copies
            .description
            .push_str(" (forward only: the copies candle's autograd makes are not modelled)");
    }
    copies
}

/// `c` counted twice (forward and backward), with `why` added to its description.
pub(super) fn twice(c: &Copies, why: &str) -> Copies {
    if c.elements_per_image == 0 {
        return Copies::default();
    }
    Copies {
        elements_per_image: 2 * c.elements_per_image,
        description: format!("{}; {why}", c.description),
    }
}

/// candle's autograd over the inference forward.
pub(super) struct CandleTrain {
    pub(super) layers: Vec<Box<dyn Module + Send + Sync>>,
    /// Every weight, in the order the weights were given.
    pub(super) vars: Vec<Var>,
    pub(super) copies: Copies,
}

/// A weight as a candle variable, remembered in `vars` (in the order they are made).
pub(super) fn var_of(
    vars: &mut Vec<Var>,
    w: &LayerWeights,
    shape: &[usize],
    on: &Target,
) -> Result<Tensor> {
    let t = tensor_from(w.data.clone(), shape, on.device, on.dtype)?;
    let var = Var::from_tensor(&t).context(|| "making a weight a variable".into())?;
    let tensor = var.as_tensor().clone();
    vars.push(var);
    Ok(tensor)
}

impl TrainStep for CandleTrain {
    fn input(&self, x: Tensor) -> Result<Tensor> {
        Var::from_tensor(&x)
            .map(|v| v.as_tensor().clone())
            .context(|| "making the input a variable".into())
    }

    fn step(&self, x: &Tensor, upstream: Option<&Tensor>) -> candle_core::Result<Gradients> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y)?;
        }
        let loss = match upstream {
            Some(g) => (&y * g)?.sum_all()?,
            None => y.sum_all()?,
        };
        let grads = loss.backward()?;
        let get = |t: &Tensor, what: &str| {
            grads.get(t).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!("autograd gave no gradient for {what}"))
            })
        };
        let weights = self
            .vars
            .iter()
            .map(|v| get(v.as_tensor(), "a weight"))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Gradients {
            output: y.detach(),
            input: get(x, "the input")?,
            weights,
        })
    }

    fn copies(&self) -> &Copies {
        &self.copies
    }
}

/// One part of a native training stack: its forward, the layer whose forward is its input
/// gradient, and its convolution's geometry.
pub(super) struct NativePart {
    forward: NativeLayer,
    input_grad: NativeLayer,
    kernel: usize,
    groups: usize,
    /// Channels the convolution sees (c_p for PConv).
    channels: usize,
    weight_shape: [usize; 4],
}

impl NativePart {
    pub(super) fn new(part: &OpSpec, w: &LayerWeights) -> Self {
        let [c, cg, k, _] = w.shape;
        let flipped = LayerWeights {
            shape: w.shape,
            data: backward::transposed(&w.data, c, cg, k),
        };
        Self {
            forward: NativeLayer::new(part, w),
            input_grad: NativeLayer::new(part, &flipped),
            kernel: part.kernel,
            groups: part.conv_groups(),
            channels: part.conv_channels(),
            weight_shape: w.shape,
        }
    }

    /// The forward of `n` images of h x w (channels from the buffer size).
    pub(super) fn forward(&self, x: &[f32], (n, h, w): (usize, usize, usize)) -> Vec<f32> {
        native::with_output(x.len(), |o| self.forward.run(x, o, n, h, w))
    }

    /// The backward for the part's input `x` and output gradient `dy`: (d input, d weight).
    pub(super) fn backward(
        &self,
        x: &[f32],
        dy: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<f32>) {
        let g = Geometry {
            c: self.channels,
            h,
            w,
            k: self.kernel,
        };
        let dw = backward::weight_grad(x, dy, n, x.len() / n, &g, self.groups);
        let dx = native::with_output(dy.len(), |o| self.input_grad.run(dy, o, n, h, w));
        (dx, dw)
    }
}

/// The native kernels, forward and backward.
struct NativeTrain {
    layers: Vec<NativePart>,
    copies: Copies,
}

/// The f32 data of a contiguous tensor on the CPU, borrowed.
pub(super) fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("native backward kernels run on the cpu only")
    };
    Ok(f(native::f32_input(cpu, layout)?))
}

impl TrainStep for NativeTrain {
    fn input(&self, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }

    fn step(&self, x: &Tensor, upstream: Option<&Tensor>) -> candle_core::Result<Gradients> {
        let dims = x.dims4()?;
        let (n, _, h, w) = dims;
        let upstream = match upstream {
            Some(g) => Some(with_host(g, <[f32]>::to_vec)?),
            None => None,
        };
        let (y, dx, dws) = with_host(x, |xs| {
            // Forward: every part's output is kept; part l reads part l - 1's.
            let mut saved: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
            for part in &self.layers {
                let input = saved.last().map_or(xs, Vec::as_slice);
                saved.push(part.forward(input, (n, h, w)));
            }
            let y = saved.pop().expect("at least one layer");
            // d sum(y ⊙ g) / dy = g; d sum(y) / dy = 1.
            let mut dy = upstream.unwrap_or_else(|| vec![1.0; y.len()]);
            let mut dws = Vec::with_capacity(self.layers.len());
            for part in self.layers.iter().rev() {
                let input = saved.last().map_or(xs, Vec::as_slice);
                let (dx, dw) = part.backward(input, &dy, (n, h, w));
                dws.push(dw);
                dy = dx;
                // This part's input is needed no more.
                saved.pop();
            }
            dws.reverse();
            (y, dy, dws)
        })?;
        let weights = dws
            .into_iter()
            .zip(&self.layers)
            .map(|(d, part)| Tensor::from_vec(d, part.weight_shape.to_vec(), &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Gradients {
            output: Tensor::from_vec(y, dims, &Device::Cpu)?,
            input: Tensor::from_vec(dx, dims, &Device::Cpu)?,
            weights,
        })
    }

    fn copies(&self) -> &Copies {
        &self.copies
    }
}

/// The gradients of a naive grouped convolution (NCHW, stride 1, padding k / 2, f64) for the
/// loss sum(y ⊙ dy): (d input, d weight). The adjoint of
/// [`naive_conv2d`](super::reference::naive_conv2d), loop by loop.
pub fn naive_conv2d_backward(
    x: &[f64],
    (n, c, h, w): (usize, usize, usize, usize),
    weight: &[f64],
    dy: &[f64],
    k: usize,
    groups: usize,
) -> (Vec<f64>, Vec<f64>) {
    let cg = c / groups;
    let pad = k / 2;
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; weight.len()];
    for b in 0..n {
        for oc in 0..c {
            let g = oc / cg;
            let grad = &dy[(b * c + oc) * h * w..][..h * w];
            for icg in 0..cg {
                let ic = g * cg + icg;
                let plane = (b * c + ic) * h * w;
                for ky in 0..k {
                    for kx in 0..k {
                        let wi = ((oc * cg + icg) * k + ky) * k + kx;
                        let mut acc = 0.0;
                        for y in 0..h {
                            let Some(iy) = (y + ky).checked_sub(pad).filter(|&iy| iy < h) else {
                                continue;
                            };
                            for xo in 0..w {
                                let Some(ix) = (xo + kx).checked_sub(pad).filter(|&ix| ix < w)
                                else {
                                    continue;
                                };
                                let d = grad[y * w + xo];
                                dx[plane + iy * w + ix] += weight[wi] * d;
                                acc += x[plane + iy * w + ix] * d;
                            }
                        }
                        dw[wi] += acc;
                    }
                }
            }
        }
    }
    (dx, dw)
}

/// The reference gradients of one single operator (PConv: its conv on the first c_p
/// channels, the rest passed through) for the loss sum(y ⊙ dy) on `n` images.
pub(crate) fn reference_single(
    spec: &OpSpec,
    weight: &[f64],
    x: &[f64],
    dy: &[f64],
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let FeatureMap { c, h, w } = spec.map;
    let (k, plane) = (spec.kernel, h * w);
    if spec.kind != OpKind::PConv {
        return naive_conv2d_backward(x, (n, c, h, w), weight, dy, k, spec.conv_groups());
    }
    let cp = spec.conv_channels();
    let head = |v: &[f64]| -> Vec<f64> {
        (0..n)
            .flat_map(|b| v[b * c * plane..][..cp * plane].to_vec())
            .collect()
    };
    let (dx_head, dw) = naive_conv2d_backward(&head(x), (n, cp, h, w), weight, &head(dy), k, 1);
    let mut dx = dy.to_vec();
    for b in 0..n {
        dx[b * c * plane..][..cp * plane].copy_from_slice(&dx_head[b * cp * plane..][..cp * plane]);
    }
    (dx, dw)
}

/// The f64 reference of one layer's training step for the loss sum(y ⊙ dy): (output, d input,
/// d weights), the parts of a composite chained (a single operator is its own part).
pub(super) fn reference_parts(
    spec: &OpSpec,
    weights: &[Vec<f64>],
    x: &[f64],
    dy: &[f64],
    n: usize,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let parts = spec.parts();
    let mut inputs = vec![x.to_vec()];
    for (part, w) in parts.iter().zip(weights) {
        let next = super::reference::reference_forward(part, w, inputs.last().unwrap(), n);
        inputs.push(next);
    }
    let y = inputs.pop().unwrap();
    let mut grad = dy.to_vec();
    let mut dws = Vec::new();
    for ((part, w), input) in parts.iter().zip(weights).zip(&inputs).rev() {
        let (dx, dw) = reference_single(part, w, input, &grad, n);
        dws.push(dw);
        grad = dx;
    }
    dws.reverse();
    (y, grad, dws)
}

/// The analytic cost of one layer's training step on one image, in the paper's conventions:
/// the forward's cost, a backward of twice its MACs and memory (input gradient: read dY and
/// the weights, write dX; weight gradient: read X and dY, write dW), and the activations the
/// backward needs kept from the forward (each convolution's input; PConv's first c_p
/// channels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCost {
    pub forward: super::LayerCost,
    pub backward: super::LayerCost,
    /// Elements kept from the forward for the backward, per image.
    pub saved_activation_elements: u64,
}

pub fn step_cost(spec: &OpSpec) -> StepCost {
    let forward = spec.cost();
    let backward = super::LayerCost {
        macs: 2 * forward.macs,
        activation_elements: 2 * forward.activation_elements,
        weight_elements: 2 * forward.weight_elements,
    };
    let saved = super::saved_per_pixel(spec) * (spec.map.h * spec.map.w) as u64;
    StepCost {
        forward,
        backward,
        saved_activation_elements: saved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::reference::{compare, naive_conv2d};
    use crate::ops::{self, Act, Dtype, PConvForward};

    fn spec(
        kind: OpKind,
        map: &str,
        k: usize,
        groups: Option<usize>,
        n_div: Option<usize>,
    ) -> OpSpec {
        OpSpec {
            groups,
            n_div,
            forward: n_div.map(|_| PConvForward::SplitCat),
            ..OpSpec::plain(kind, k, map.parse().unwrap())
        }
    }

    fn wide(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&v| f64::from(v)).collect()
    }

    /// The reference gradients are right: d sum(y ⊙ dy) / d x[i] and / d w[j], by central
    /// differences of the naive forward (exact up to rounding: the loss is linear in each).
    #[test]
    fn naive_gradients_match_finite_differences() {
        let (n, c, h, w, k, groups) = (2, 6, 5, 7, 3, 2);
        let mut rng = ops::seeded_rng(1);
        let x = wide(&ops::uniform(n * c * h * w, 1.0, &mut rng));
        let wt = wide(&ops::uniform(c * (c / groups) * k * k, 1.0, &mut rng));
        let dy = wide(&ops::uniform(x.len(), 1.0, &mut rng));
        let loss = |x: &[f64], wt: &[f64]| -> f64 {
            naive_conv2d(x, (n, c, h, w), wt, k, groups)
                .iter()
                .zip(&dy)
                .map(|(a, b)| a * b)
                .sum()
        };
        let (dx, dw) = naive_conv2d_backward(&x, (n, c, h, w), &wt, &dy, k, groups);
        let eps = 1e-3;
        // Corners, edges and the interior, in both images; weights of both groups.
        for &i in &[0, 6, 34, 35, 100, 209, x.len() - 1] {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += eps;
            down[i] -= eps;
            let fd = (loss(&up, &wt) - loss(&down, &wt)) / (2.0 * eps);
            assert!(
                (fd - dx[i]).abs() < 1e-8 * (1.0 + fd.abs()),
                "dx[{i}]: {fd} vs {}",
                dx[i]
            );
        }
        for &j in &[0, 4, 8, 13, 50, wt.len() - 1] {
            let (mut up, mut down) = (wt.clone(), wt.clone());
            up[j] += eps;
            down[j] -= eps;
            let fd = (loss(&x, &up) - loss(&x, &down)) / (2.0 * eps);
            assert!(
                (fd - dw[j]).abs() < 1e-8 * (1.0 + fd.abs()),
                "dw[{j}]: {fd} vs {}",
                dw[j]
            );
        }
    }

    /// One step of `implementation` against the f64 reference, on `threads` threads.
    fn check(s: &OpSpec, n: usize, threads: usize, implementation: Implementation) {
        let FeatureMap { c, h, w } = s.map;
        let weights = ops::random_weights(s, 2, 7);
        let step = ops::build_train(s, implementation, &weights, &Device::Cpu, Dtype::F32).unwrap();
        let mut rng = ops::seeded_rng(9);
        let x = ops::uniform(n * c * h * w, 1.0, &mut rng);
        let g = ops::uniform(x.len(), 1.0, &mut rng);
        let shape = [n, c, h, w];
        let xt = step
            .input(ops::tensor_from(x.clone(), &shape, &Device::Cpu, Dtype::F32).unwrap())
            .unwrap();
        let gt = ops::tensor_from(g.clone(), &shape, &Device::Cpu, Dtype::F32).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let grads = pool.install(|| step.step(&xt, Some(&gt))).unwrap();
        let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Two stacked layers: the reference chains two layers' steps.
        let per_layer = weights.len() / 2;
        let ws: Vec<Vec<f64>> = weights.iter().map(|w| wide(&w.data)).collect();
        let mid = ops::reference_layer(s, &ws[..per_layer], &wide(&x), n);
        let (y, d_mid, dw2) = ops::reference_step(s, &ws[per_layer..], &mid, &wide(&g), n);
        let (_, dx, dw1) = ops::reference_step(s, &ws[..per_layer], &wide(&x), &d_mid, n);
        let label = format!(
            "{} {} at {} n={n} t={threads} {implementation}",
            s.kind,
            s.variant(),
            s.map
        );
        let close = |what: &str, got: &[f32], want: &[f64]| {
            let (_, rel) = compare(&wide(got), want);
            assert!(rel < 1e-5, "{label}: {what} rel err {rel}");
        };
        close("output", &host(&grads.output), &y);
        close("input gradient", &host(&grads.input), &dx);
        for (i, (got, want)) in grads.weights.iter().zip(dw1.iter().chain(&dw2)).enumerate() {
            close(&format!("weight gradient {i}"), &host(got), want);
        }
    }

    #[test]
    fn backward_kernels_match_the_reference_gradients() {
        let cases = [
            spec(OpKind::Conv, "12x9x11", 3, None, None), // GEMM path
            spec(OpKind::Conv, "40x37x29", 5, None, None), // GEMM, several bands
            spec(OpKind::Conv, "6x9x11", 7, None, None),  // direct (cg <= 8)
            spec(OpKind::PWConv, "33x13x17", 1, None, None), // k = 1
            spec(OpKind::DWConv, "19x31x23", 3, None, None), // per-tap correlation, tails
            spec(OpKind::DWConv, "5x12x12", 7, None, None),
            spec(OpKind::DWConv, "5x12x12", 9, None, None), // run-time kernel size
            spec(OpKind::GConv, "96x20x20", 3, Some(16), None), // direct
            spec(OpKind::GConv, "96x40x40", 3, Some(2), None), // GEMM per group
            spec(OpKind::PConv, "10x15x15", 5, None, Some(3)), // 3 does not divide 10
            spec(OpKind::PConv, "70x33x31", 3, None, Some(2)), // GEMM, c_p = 35
            spec(OpKind::PConv, "9x8x8", 1, None, Some(4)),
            spec(OpKind::PConvPw, "16x10x10", 3, None, Some(4)),
            spec(OpKind::DwPw, "8x9x9", 3, None, None),
            spec(OpKind::DWConv, "32x9x10", 5, None, None), // blocked_dw on AVX-512
        ];
        for s in &cases {
            check(s, 1, 1, Implementation::Native);
            check(s, 3, 2, Implementation::Native);
        }
        for s in [&cases[0], &cases[4], &cases[7], &cases[9], &cases[12]] {
            check(s, 2, 1, Implementation::Candle);
        }
    }

    #[test]
    fn fasternet_blocks_train_like_their_reference() {
        for (act, map, k, n_div, e) in [
            (Act::Relu, "16x9x11", 3, 4, 2),
            (Act::Gelu, "10x8x8", 5, 3, 1), // 3 does not divide 10
            (Act::Silu, "24x7x7", 1, 2, 3),
        ] {
            let s = OpSpec {
                kind: OpKind::FasterNetBlock,
                expansion: Some(e),
                act: Some(act),
                ..spec(OpKind::PConv, map, k, None, Some(n_div))
            };
            check(&s, 1, 1, Implementation::Native);
            check(&s, 3, 2, Implementation::Native);
            check(&s, 2, 1, Implementation::Candle);
        }
    }

    /// The blocks' f64 gradients against central differences of their f64 forwards, along
    /// random directions (of the input and of each weight set): smooth activations, so the
    /// differences are exact to O(eps²).
    #[test]
    fn block_and_c2f_references_match_directional_finite_differences() {
        let block = OpSpec {
            kind: OpKind::FasterNetBlock,
            expansion: Some(2),
            act: Some(Act::Gelu),
            ..spec(OpKind::PConv, "8x6x7", 3, None, Some(4))
        };
        let c2f = |kind, map: &str, n| {
            let faster = kind == OpKind::C2fFaster;
            OpSpec {
                kind,
                n_div: faster.then_some(4),
                forward: faster.then_some(PConvForward::SplitCat),
                expansion: faster.then_some(2),
                act: faster.then_some(Act::Silu),
                bottlenecks: Some(n),
                ..OpSpec::plain(kind, 3, map.parse().unwrap())
            }
        };
        for s in [
            block,
            c2f(OpKind::C2f, "8x6x5", 2),
            c2f(OpKind::C2fFaster, "16x5x6", 1),
        ] {
            let n = 2;
            let ws: Vec<Vec<f64>> = ops::random_weights(&s, 1, 5)
                .iter()
                .map(|w| wide(&w.data))
                .collect();
            let mut rng = ops::seeded_rng(6);
            let len = n * s.map.elements();
            let x = wide(&ops::uniform(len, 1.0, &mut rng));
            let g = wide(&ops::uniform(len, 1.0, &mut rng));
            let loss = |x: &[f64], ws: &[Vec<f64>]| -> f64 {
                ops::reference_layer(&s, ws, x, n)
                    .iter()
                    .zip(&g)
                    .map(|(a, b)| a * b)
                    .sum()
            };
            let (_, dx, dws) = ops::reference_step(&s, &ws, &x, &g, n);
            let eps = 1e-4;
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            let close = |what: &str, fd: f64, analytic: f64| {
                assert!(
                    (fd - analytic).abs() <= 1e-6 * (1.0 + analytic.abs()),
                    "{} {what}: finite difference {fd} vs analytic {analytic}",
                    s.kind
                );
            };
            let v = wide(&ops::uniform(len, 1.0, &mut rng));
            let shifted = |sign: f64| -> Vec<f64> {
                x.iter().zip(&v).map(|(a, d)| a + sign * eps * d).collect()
            };
            let fd = (loss(&shifted(1.0), &ws) - loss(&shifted(-1.0), &ws)) / (2.0 * eps);
            close("input", fd, dot(&dx, &v));
            for (i, dw) in dws.iter().enumerate() {
                let v = wide(&ops::uniform(ws[i].len(), 1.0, &mut rng));
                let at = |sign: f64| {
                    let mut w = ws.clone();
                    w[i].iter_mut()
                        .zip(&v)
                        .for_each(|(a, d)| *a += sign * eps * d);
                    w
                };
                let fd = (loss(&x, &at(1.0)) - loss(&x, &at(-1.0))) / (2.0 * eps);
                close(&format!("weight set {i}"), fd, dot(dw, &v));
            }
        }
    }

    #[test]
    fn c2f_blocks_train_like_their_reference() {
        for (kind, map, k, n) in [
            (OpKind::C2f, "12x9x7", 3, 2),
            (OpKind::C2f, "8x6x6", 1, 1),
            (OpKind::C2fFaster, "16x8x9", 3, 2),
            (OpKind::C2fFaster, "24x7x7", 5, 1),
        ] {
            let faster = kind == OpKind::C2fFaster;
            let s = OpSpec {
                kind,
                n_div: faster.then_some(4),
                forward: faster.then_some(PConvForward::SplitCat),
                expansion: faster.then_some(2),
                act: faster.then_some(Act::Silu),
                bottlenecks: Some(n),
                ..OpSpec::plain(kind, k, map.parse().unwrap())
            };
            check(&s, 1, 1, Implementation::Native);
            check(&s, 3, 2, Implementation::Native);
            check(&s, 2, 1, Implementation::Candle);
        }
    }

    #[test]
    fn slicing_cannot_be_trained() {
        let mut s = spec(OpKind::PConv, "16x8x8", 3, None, Some(4));
        s.forward = Some(PConvForward::Slicing);
        let w = ops::random_weights(&s, 1, 1);
        let err = ops::build_train(&s, Implementation::Native, &w, &Device::Cpu, Dtype::F32)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("inference-only") && err.contains("split_cat"),
            "{err}"
        );
    }

    #[test]
    fn the_step_cost_model_matches_hand_counts() {
        // Conv 3x3 at 96x56x56: forward 56·56·9·96² MACs; backward twice; memory: forward
        // h·w·2c + 9c², backward twice that; the backward keeps the input, 96·56·56.
        let conv = step_cost(&spec(OpKind::Conv, "96x56x56", 3, None, None));
        assert_eq!(conv.forward.macs, 56 * 56 * 9 * 96 * 96);
        assert_eq!(conv.backward.macs, 2 * 56 * 56 * 9 * 96 * 96);
        assert_eq!(
            conv.backward.memory_elements(),
            2 * (56 * 56 * 2 * 96 + 9 * 96 * 96)
        );
        assert_eq!(conv.saved_activation_elements, 96 * 56 * 56);
        // PConv n_div = 4: only c_p = 24 channels are kept and convolved.
        let pconv = step_cost(&spec(OpKind::PConv, "96x56x56", 3, None, Some(4)));
        assert_eq!(pconv.backward.macs, 2 * 56 * 56 * 9 * 24 * 24);
        assert_eq!(pconv.saved_activation_elements, 24 * 56 * 56);
        // DWConv: 9 MACs per output element, twice in the backward.
        let dw = step_cost(&spec(OpKind::DWConv, "96x56x56", 3, None, None));
        assert_eq!(dw.backward.macs, 2 * 9 * 96 * 56 * 56);
        // PConv + PWConv keeps both parts' inputs: 24 + 96 channels.
        let both = step_cost(&spec(OpKind::PConvPw, "96x56x56", 3, None, Some(4)));
        assert_eq!(both.saved_activation_elements, (24 + 96) * 56 * 56);
        // A record of 10 layers at batch 2 carries the step's whole cost.
        let s = spec(OpKind::Conv, "96x56x56", 3, None, None);
        let r = crate::record::CostRecord::new(
            &s,
            &Copies::default(),
            (2, 10),
            Dtype::F32,
            crate::ops::Pass::Train,
        );
        assert_eq!(r.macs, 3 * 56 * 56 * 9 * 96 * 96 * 2 * 10);
        let t = r.train.unwrap();
        assert_eq!(t.backward_macs, 2 * t.forward_macs);
        assert_eq!(t.saved_activation_bytes, 96 * 56 * 56 * 2 * 10 * 4);
        assert_eq!(r.params, 9 * 96 * 96 * 10);
    }
}
