//! The FasterNet block: x + PWConv(e·c -> c)(act(BN(PWConv(c -> e·c)(PConv(x))))), with BN
//! folded into the first PWConv for inference (a weight scale and a bias). Its forward (candle
//! and native), cost model, weights and naive reference live here side by side.

use candle_core::{Device, Module, Shape, Tensor};
use rand::Rng;

use super::native::gemm_conv::pointwise;
use super::native::{self, Native, NativeForward, NativeLayer};
use super::{
    pconv, tensor_from, Act, ConvBias, Copies, Dtype, Implementation, LayerCost, LayerWeights,
    OpKind, OpSpec, Stack, Target,
};
use crate::error::{Error, Result};

/// Expansion ratio of FasterNet (hidden width 2c).
pub const DEFAULT_EXPANSION: usize = 2;
/// BN epsilon (PyTorch's default).
const BN_EPS: f32 = 1e-5;
/// Weight sets per block: PConv, first PWConv (BN folded), its bias, second PWConv.
pub const WEIGHT_SETS: usize = 4;

/// One block's weights by name: `S` is a `LayerWeights` when building, a widened `Vec<f64>`
/// for the reference.
#[derive(Debug, Clone, Copy)]
pub struct BlockWeights<T> {
    /// The PConv's (c_p, c_p, k, k).
    pub pconv: T,
    /// The first PWConv (e·c, c, 1, 1) with BN folded, and its bias (e·c).
    pub fc1: ConvBias<T>,
    /// The second PWConv (c, e·c, 1, 1).
    pub fc2: T,
}

impl<'a, S> BlockWeights<&'a S> {
    /// Names the `WEIGHT_SETS` sets of one block, in the order `random_weights` draws them.
    pub fn of(sets: &'a [S]) -> Self {
        match sets {
            [pconv, weight, bias, fc2] => BlockWeights {
                pconv,
                fc1: ConvBias { weight, bias },
                fc2,
            },
            _ => panic!(
                "a FasterNet block has {WEIGHT_SETS} weight sets, not {}",
                sets.len()
            ),
        }
    }
}

fn expansion(spec: &OpSpec) -> usize {
    spec.expansion.unwrap_or(DEFAULT_EXPANSION)
}

fn act(spec: &OpSpec) -> Act {
    spec.act.unwrap_or(Act::Relu)
}

/// The block's spatial mixer: a PConv with the block's kernel, n_div and forward.
pub fn pconv_part(spec: &OpSpec) -> OpSpec {
    OpSpec {
        kind: OpKind::PConv,
        expansion: None,
        act: None,
        bottlenecks: None,
        ..spec.clone()
    }
}

pub fn validate(spec: &OpSpec) -> Result<()> {
    let e = spec.expansion.unwrap_or(0);
    if e == 0 {
        return Err(Error::Invalid(format!(
            "expansion ratio {e} for fasternet_block: allowed is a positive integer (FasterNet uses {DEFAULT_EXPANSION})"
        )));
    }
    pconv_part(spec).validate()
}

pub fn variant(spec: &OpSpec) -> String {
    format!(
        "{} e{} {}",
        pconv_part(spec).variant(),
        expansion(spec),
        act(spec)
    )
}

/// PConv + PWConv(c -> e·c, with bias) + PWConv(e·c -> c) + the residual add (read two
/// tensors, write one); the activation is applied in place and moves nothing extra.
pub fn cost(spec: &OpSpec) -> LayerCost {
    let p = pconv_part(spec).cost();
    let (c, hidden, hw) = dims(spec);
    LayerCost {
        macs: p.macs + 2 * hw * c * hidden,
        activation_elements: p.activation_elements + 2 * hw * (c + hidden) + 3 * hw * c,
        weight_elements: p.weight_elements + 2 * c * hidden + hidden,
    }
}

fn dims(spec: &OpSpec) -> (u64, u64, u64) {
    let c = spec.map.c as u64;
    (
        c,
        c * expansion(spec) as u64,
        (spec.map.h * spec.map.w) as u64,
    )
}

/// Folds inference BN (per output channel: gamma, beta, running mean and variance) into a
/// bias-free convolution's weights (`out` rows) and a new bias: BN(W·x) = W'·x + b.
pub fn fold_bn(
    weight: &mut [f32],
    out: usize,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> Vec<f32> {
    let per_row = weight.len() / out;
    (0..out)
        .map(|o| {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            weight[o * per_row..(o + 1) * per_row]
                .iter_mut()
                .for_each(|w| *w *= scale);
            beta[o] - mean[o] * scale
        })
        .collect()
}

/// A bias-free convolution of `out` rows of `fan_in` weights with a random inference BN
/// folded in: the weight (unit-variance init, scaled by `scale`) and the bias BN leaves.
pub fn random_conv_bn(
    out: usize,
    fan_in: usize,
    scale: f32,
    rng: &mut impl Rng,
) -> (Vec<f32>, Vec<f32>) {
    let mut w = super::uniform(out * fan_in, scale * (3.0 / fan_in as f32).sqrt(), rng);
    let mut draw =
        |lo: f32, hi: f32| -> Vec<f32> { (0..out).map(|_| rng.random_range(lo..hi)).collect() };
    let (gamma, beta, mean, var) = (
        draw(0.5, 1.5),
        draw(-0.1, 0.1),
        draw(-0.1, 0.1),
        draw(0.5, 1.5),
    );
    let bias = fold_bn(&mut w, out, &gamma, &beta, &mean, &var);
    (w, bias)
}

/// One block's weight sets: PConv, first PWConv with a random BN folded in, its bias, and the
/// second PWConv (scaled by 1/2 so ten residual blocks grow activations ~1.25x each, not 2x).
pub fn random_weights(spec: &OpSpec, rng: &mut impl Rng) -> Vec<LayerWeights> {
    let (c, hidden) = (spec.map.c, spec.map.c * expansion(spec));
    let pconv = LayerWeights::random(&pconv_part(spec), rng);
    let (w1, bias) = random_conv_bn(hidden, c, 1.0, rng);
    let w2 = super::uniform(c * hidden, 0.5 * (3.0 / hidden as f32).sqrt(), rng);
    vec![
        pconv,
        LayerWeights {
            shape: [hidden, c, 1, 1],
            data: w1,
        },
        LayerWeights {
            shape: [hidden, 1, 1, 1],
            data: bias,
        },
        LayerWeights {
            shape: [c, hidden, 1, 1],
            data: w2,
        },
    ]
}

/// f64 reference of one block; `w` are the weight sets of `random_weights` (dtype-rounded).
pub fn reference(spec: &OpSpec, w: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
    reference_named(spec, BlockWeights::of(w), x, n)
}

/// f64 reference of one block from its named weights.
pub fn reference_named(spec: &OpSpec, w: BlockWeights<&Vec<f64>>, x: &[f64], n: usize) -> Vec<f64> {
    let (c, hw) = (spec.map.c, spec.map.h * spec.map.w);
    let hidden = c * expansion(spec);
    let a = act(spec);
    let t = crate::ops::reference::reference_forward(&pconv_part(spec), w.pconv, x, n);
    let mut out = x.to_vec();
    for b in 0..n {
        let tb = &t[b * c * hw..][..c * hw];
        let mut h = reference_hidden(w.fc1, tb, hidden, hw);
        h.iter_mut().for_each(|v| *v = a.apply_f64(*v));
        let ob = &mut out[b * c * hw..][..c * hw];
        for o in 0..c {
            for i in 0..hidden {
                let wv = w.fc2[o * hidden + i];
                for p in 0..hw {
                    ob[o * hw + p] += wv * h[i * hw + p];
                }
            }
        }
    }
    out
}

/// `act` on stock candle ops.
pub(crate) fn candle_act(y: &Tensor, act: Act) -> candle_core::Result<Tensor> {
    match act {
        Act::Relu => y.relu(),
        Act::Gelu => y.gelu_erf(),
        Act::Silu => y.silu(),
    }
}

/// The block on stock candle ops (conv2d, broadcast_add, relu / gelu_erf, add).
pub(crate) struct CandleBlock {
    pconv: pconv::CandlePConv,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    act: Act,
}

impl Module for CandleBlock {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.pconv.forward(x)?;
        let y = y.conv2d(&self.w1, 0, 1, 1, 1)?.broadcast_add(&self.b1)?;
        let y = candle_act(&y, self.act)?;
        x + y.conv2d(&self.w2, 0, 1, 1, 1)?
    }
}

/// The block on the native kernels: the PConv kernel, then two GEMMs per image; bias and
/// activation in place between them, the residual as the second GEMM's accumulator.
pub(crate) struct NativeBlock {
    pconv: NativeLayer,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    act: Act,
    hidden: usize,
}

impl NativeBlock {
    /// Runs the block on `n` dense images of c x h x w into `out`, writing every element.
    pub(crate) fn run(&self, x: &[f32], out: &mut [f32], n: usize, h: usize, w: usize) {
        let hw = h * w;
        let (c, hidden) = (x.len() / (n * hw), self.hidden);
        let t = native::with_output(x.len(), |t| self.pconv.run(x, t, n, h, w));
        let mut hbuf = native::with_output(n * hidden * hw, |hb| {
            for (hb, t) in hb.chunks_mut(hidden * hw).zip(t.chunks(c * hw)) {
                pointwise(hb, &self.w1, t, (hidden, c, hw), false);
            }
        });
        native::bias_act(&mut hbuf, &self.b1, hw, self.act);
        out.copy_from_slice(x); // the residual, which the second GEMM accumulates onto
        for (o, hb) in out.chunks_mut(c * hw).zip(hbuf.chunks(hidden * hw)) {
            pointwise(o, &self.w2, hb, (c, hidden, hw), true);
        }
    }
}

impl NativeForward for NativeBlock {
    const NAME: &'static str = "pconv-bench-native-fasternet-block";

    fn forward_batch(&self, x: &[f32], dims: (usize, usize, usize, usize)) -> (Vec<f32>, Shape) {
        let (n, _, h, w) = dims;
        let out = native::with_output(x.len(), |out| self.run(x, out, n, h, w));
        (out, Shape::from(dims))
    }
}

/// One block on the native kernels.
pub(crate) fn native_block(spec: &OpSpec, w: BlockWeights<&LayerWeights>) -> NativeBlock {
    NativeBlock {
        pconv: NativeLayer::new(&pconv_part(spec), w.pconv),
        w1: w.fc1.weight.data.clone(),
        b1: w.fc1.bias.data.clone(),
        w2: w.fc2.data.clone(),
        act: act(spec),
        hidden: spec.map.c * expansion(spec),
    }
}

/// One block on stock candle ops.
pub(crate) fn candle_block(
    spec: &OpSpec,
    w: BlockWeights<&LayerWeights>,
    device: &Device,
    dtype: Dtype,
) -> Result<CandleBlock> {
    candle_block_with(spec, w, &mut |lw, shape| {
        tensor_from(lw.data.clone(), shape, device, dtype)
    })
}

/// One block on stock candle ops, each weight made a tensor by `t` (in the order of
/// `random_weights`: training makes them variables).
pub(crate) fn candle_block_with(
    spec: &OpSpec,
    w: BlockWeights<&LayerWeights>,
    t: &mut dyn FnMut(&LayerWeights, &[usize]) -> Result<Tensor>,
) -> Result<CandleBlock> {
    let bias = w.fc1.bias;
    Ok(CandleBlock {
        pconv: pconv::CandlePConv::new(&pconv_part(spec), t(w.pconv, &w.pconv.shape)?),
        w1: t(w.fc1.weight, &w.fc1.weight.shape)?,
        b1: t(bias, &[1, bias.data.len(), 1, 1])?,
        w2: t(w.fc2, &w.fc2.shape)?,
        act: act(spec),
    })
}

/// What one block copies beyond the paper's model: its PConv's copies.
pub(crate) fn copies(spec: &OpSpec, implementation: Implementation) -> Copies {
    let part = pconv_part(spec);
    match implementation {
        Implementation::Native => native::copies(&part),
        _ => pconv::candle_copies(&part),
    }
}

/// Builds `weights.len() / WEIGHT_SETS` stacked blocks.
pub fn build(spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
    let mut layers: Vec<Box<dyn Module + Send + Sync>> = Vec::new();
    for w in weights.chunks(WEIGHT_SETS) {
        layers.push(match on.implementation {
            Implementation::Native => Box::new(Native(native_block(spec, BlockWeights::of(w)))),
            Implementation::Candle | Implementation::Torch => Box::new(candle_block(
                spec,
                BlockWeights::of(w),
                on.device,
                on.dtype,
            )?),
        });
    }
    Ok(Stack {
        layers,
        copies: build_copies(spec, on.implementation),
    })
}

/// The copies of a stack of blocks: its PConv's, BN folded.
fn build_copies(spec: &OpSpec, implementation: Implementation) -> Copies {
    let copies = copies(spec, implementation);
    Copies {
        description: format!("{} (BN folded into the first PWConv)", copies.description),
        ..copies
    }
}

// Training (`--pass train`). BN stays folded: the training step trains the first PWConv's
// folded weight and bias, as fine-tuning with frozen BN does (docs/training.md).

/// Activations one block's backward needs kept from the forward, per pixel of one image: the
/// PConv's input channels, the PConv's output (the first PWConv's input), the pre-activation
/// (for the activation's derivative) and the activation (the second PWConv's input).
pub fn saved_per_pixel(spec: &OpSpec) -> u64 {
    let (c, hidden, _) = dims(spec);
    pconv_part(spec).conv_channels() as u64 + c + 2 * hidden
}

/// f64 W1·t + b1, the first PWConv's pre-activation on one image of `hw` pixels.
fn reference_hidden(fc1: ConvBias<&Vec<f64>>, t: &[f64], hidden: usize, hw: usize) -> Vec<f64> {
    let c = t.len() / hw;
    let mut h = vec![0.0; hidden * hw];
    for (o, plane) in h.chunks_mut(hw).enumerate() {
        for i in 0..c {
            let wv = fc1.weight[o * c + i];
            for (v, x) in plane.iter_mut().zip(&t[i * hw..][..hw]) {
                *v += wv * x;
            }
        }
        plane.iter_mut().for_each(|v| *v += fc1.bias[o]);
    }
    h
}

/// The f64 reference of one block's training step for the loss sum(y ⊙ dy): (output, d input,
/// d weight sets in the order of `random_weights`).
pub fn reference_step(
    spec: &OpSpec,
    w: &[Vec<f64>],
    x: &[f64],
    dy: &[f64],
    n: usize,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let w = BlockWeights::of(w);
    let (c, hw) = (spec.map.c, spec.map.h * spec.map.w);
    let hidden = c * expansion(spec);
    let a_fn = act(spec);
    let part = pconv_part(spec);
    let t = crate::ops::reference::reference_forward(&part, w.pconv, x, n);
    let mut y = x.to_vec();
    let mut dt = vec![0.0; t.len()];
    let (mut dw1, mut db1, mut dw2) = (
        vec![0.0; hidden * c],
        vec![0.0; hidden],
        vec![0.0; c * hidden],
    );
    for b in 0..n {
        let tb = &t[b * c * hw..][..c * hw];
        let dyb = &dy[b * c * hw..][..c * hw];
        let h = reference_hidden(w.fc1, tb, hidden, hw);
        let a: Vec<f64> = h.iter().map(|&v| a_fn.apply_f64(v)).collect();
        let yb = &mut y[b * c * hw..][..c * hw];
        let mut da = vec![0.0; hidden * hw];
        for o in 0..c {
            for i in 0..hidden {
                let wv = w.fc2[o * hidden + i];
                let mut g = 0.0;
                for p in 0..hw {
                    yb[o * hw + p] += wv * a[i * hw + p];
                    da[i * hw + p] += wv * dyb[o * hw + p];
                    g += dyb[o * hw + p] * a[i * hw + p];
                }
                dw2[o * hidden + i] += g;
            }
        }
        let dh: Vec<f64> = da
            .iter()
            .zip(&h)
            .map(|(d, &v)| d * a_fn.grad_f64(v))
            .collect();
        let dtb = &mut dt[b * c * hw..][..c * hw];
        for o in 0..hidden {
            let row = &dh[o * hw..][..hw];
            db1[o] += row.iter().sum::<f64>();
            for i in 0..c {
                let wv = w.fc1.weight[o * c + i];
                let mut g = 0.0;
                for p in 0..hw {
                    dtb[i * hw + p] += wv * row[p];
                    g += row[p] * tb[i * hw + p];
                }
                dw1[o * c + i] += g;
            }
        }
    }
    let (dx_p, dwp) = crate::ops::train::reference_single(&part, w.pconv, x, &dt, n);
    // The residual passes dy straight to the input.
    let dx = dx_p.iter().zip(dy).map(|(a, b)| a + b).collect();
    (y, dx, vec![dwp, dw1, db1, dw2])
}

/// With ReLU, how far the implementation's gradients may honestly differ from
/// [`reference_step`]'s: a unit whose pre-activation is within `kink` times the largest one of
/// 0 (the caller sizes the window to the arithmetic's rounding) can land on either side of the
/// kink in the implementation's precision, and each that does adds or drops its own
/// contribution. The slack is, per element, the sum over such units of the absolute value of
/// what their flip changes: exactly |da| at the unit's bias gradient and |da|·|t| in its row
/// of the first PWConv's gradient; bounded through the absolute weights and input for the
/// PConv's weight gradient and the input gradient. The second PWConv's gradient changes by at
/// most the pre-activation itself (below the tolerance). None for smooth activations or when
/// no unit is in the window.
pub fn reference_slack(
    spec: &OpSpec,
    w: &[Vec<f64>],
    (x, dy): (&[f64], &[f64]),
    n: usize,
    kink: f64,
) -> Option<crate::ops::Slack> {
    if act(spec) != Act::Relu {
        return None;
    }
    let w = BlockWeights::of(w);
    let (c, hw) = (spec.map.c, spec.map.h * spec.map.w);
    let hidden = c * expansion(spec);
    let part = pconv_part(spec);
    let t = crate::ops::reference::reference_forward(&part, w.pconv, x, n);
    let abs = |v: &[f64]| v.iter().map(|a| a.abs()).collect::<Vec<f64>>();
    let w1 = abs(w.fc1.weight);
    let mut dt = vec![0.0; t.len()];
    let (mut dw1, mut db1) = (vec![0.0; hidden * c], vec![0.0; hidden]);
    let mut units = 0;
    for b in 0..n {
        let tb = &t[b * c * hw..][..c * hw];
        let dyb = &dy[b * c * hw..][..c * hw];
        let h = reference_hidden(w.fc1, tb, hidden, hw);
        let kink = kink * h.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (o, row) in h.chunks(hw).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                if v.abs() >= kink {
                    continue;
                }
                units += 1;
                // The unit's gradient before ReLU's derivative: what flipping it adds or drops.
                let da: f64 = (0..c)
                    .map(|q| w.fc2[q * hidden + o] * dyb[q * hw + p])
                    .sum::<f64>()
                    .abs();
                db1[o] += da;
                for i in 0..c {
                    dw1[o * c + i] += da * tb[i * hw + p].abs();
                    dt[(b * c + i) * hw + p] += w1[o * c + i] * da;
                }
            }
        }
    }
    if units == 0 {
        return None;
    }
    let (dx, dwp) = crate::ops::train::reference_single(&part, &abs(w.pconv), &abs(x), &dt, n);
    let dw2 = vec![0.0; c * hidden];
    Some(crate::ops::Slack {
        units,
        input: dx,
        weights: vec![dwp, dw1, db1, dw2],
    })
}

/// `layers` blocks' training step: candle's autograd, or the native kernels.
pub fn build_train(
    spec: &OpSpec,
    weights: &[LayerWeights],
    on: &Target,
) -> Result<Box<dyn crate::ops::train::TrainStep>> {
    use crate::ops::train::{self, CandleTrain};
    let forward = build_copies(spec, on.implementation);
    match on.implementation {
        Implementation::Native => {
            let blocks = weights
                .chunks(WEIGHT_SETS)
                .map(|w| NativeBlockTrain::new(spec, BlockWeights::of(w)))
                .collect();
            Ok(Box::new(NativeBlocksTrain {
                blocks,
                copies: train::twice(
                    &forward,
                    "the backward copies the untouched channels' gradient likewise",
                ),
            }))
        }
        Implementation::Candle | Implementation::Torch => {
            let mut vars = Vec::with_capacity(weights.len());
            let mut layers: Vec<Box<dyn Module + Send + Sync>> = Vec::new();
            for w in weights.chunks(WEIGHT_SETS) {
                let mut var =
                    |lw: &LayerWeights, shape: &[usize]| train::var_of(&mut vars, lw, shape, on);
                layers.push(Box::new(candle_block_with(
                    spec,
                    BlockWeights::of(w),
                    &mut var,
                )?));
            }
            Ok(Box::new(CandleTrain {
                layers,
                vars,
                copies: train::candle_copies(forward),
            }))
        }
    }
}

/// One block's native training: its PConv part, the PWConvs' weights and their transposes.
pub(crate) struct NativeBlockTrain {
    pconv: crate::ops::train::NativePart,
    w1: Vec<f32>,
    /// W1ᵀ (c x e·c): the first PWConv's input gradient.
    w1t: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    /// W2ᵀ (e·c x c).
    w2t: Vec<f32>,
    act: Act,
    hidden: usize,
    shapes: [[usize; 4]; WEIGHT_SETS],
}

/// What one block's forward keeps for its backward (its input is the previous block's
/// output, kept by the caller).
pub(crate) struct Saved {
    /// The PConv's output.
    t: Vec<f32>,
    /// The first PWConv's output plus bias, before the activation.
    h: Vec<f32>,
    /// The activation.
    a: Vec<f32>,
}

/// A dense (rows x cols) matrix transposed.
pub(crate) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

impl NativeBlockTrain {
    pub(crate) fn new(spec: &OpSpec, w: BlockWeights<&LayerWeights>) -> Self {
        let (c, hidden) = (spec.map.c, spec.map.c * expansion(spec));
        Self {
            pconv: crate::ops::train::NativePart::new(&pconv_part(spec), w.pconv),
            w1: w.fc1.weight.data.clone(),
            w1t: transpose(&w.fc1.weight.data, hidden, c),
            b1: w.fc1.bias.data.clone(),
            w2: w.fc2.data.clone(),
            w2t: transpose(&w.fc2.data, c, hidden),
            act: act(spec),
            hidden,
            shapes: [
                w.pconv.shape,
                w.fc1.weight.shape,
                w.fc1.bias.shape,
                w.fc2.shape,
            ],
        }
    }

    /// The block's forward on `n` images, keeping what the backward needs.
    pub(crate) fn forward(&self, x: &[f32], (n, h, w): (usize, usize, usize)) -> (Vec<f32>, Saved) {
        let hw = h * w;
        let (c, hidden) = (x.len() / (n * hw), self.hidden);
        let t = self.pconv.forward(x, (n, h, w));
        let mut hpre = native::with_output(n * hidden * hw, |hb| {
            for (hb, t) in hb.chunks_mut(hidden * hw).zip(t.chunks(c * hw)) {
                pointwise(hb, &self.w1, t, (hidden, c, hw), false);
            }
        });
        let a = native::backward::bias_then_act(&mut hpre, &self.b1, hw, self.act);
        let mut y = x.to_vec(); // the residual, which the second GEMM accumulates onto
        for (o, ab) in y.chunks_mut(c * hw).zip(a.chunks(hidden * hw)) {
            pointwise(o, &self.w2, ab, (c, hidden, hw), true);
        }
        (y, Saved { t, h: hpre, a })
    }

    /// The block's backward: (d input, [d PConv, d W1, d b1, d W2]).
    pub(crate) fn backward(
        &self,
        x: &[f32],
        s: &Saved,
        dy: &[f32],
        (n, h, w): (usize, usize, usize),
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        use crate::ops::native::backward::pointwise_weight_grad;
        let hw = h * w;
        let (c, hidden) = (x.len() / (n * hw), self.hidden);
        let mut dw2 = vec![0.0; c * hidden];
        pointwise_weight_grad(&mut dw2, dy, &s.a, (n, c, hidden, hw));
        let mut dh = native::with_output(n * hidden * hw, |da| {
            for (da, d) in da.chunks_mut(hidden * hw).zip(dy.chunks(c * hw)) {
                pointwise(da, &self.w2t, d, (hidden, c, hw), false);
            }
        });
        let db1 = native::backward::act_bias_backward(&mut dh, &s.h, hidden, hw, self.act);
        let mut dw1 = vec![0.0; hidden * c];
        pointwise_weight_grad(&mut dw1, &dh, &s.t, (n, hidden, c, hw));
        let dt = native::with_output(x.len(), |dt| {
            for (dt, d) in dt.chunks_mut(c * hw).zip(dh.chunks(hidden * hw)) {
                pointwise(dt, &self.w1t, d, (c, hidden, hw), false);
            }
        });
        let (mut dx, dwp) = self.pconv.backward(x, &dt, (n, h, w));
        // The residual passes dy straight to the input.
        dx.iter_mut().zip(dy).for_each(|(a, b)| *a += b);
        (dx, vec![dwp, dw1, db1, dw2])
    }
}

/// Stacked blocks' native training step.
struct NativeBlocksTrain {
    blocks: Vec<NativeBlockTrain>,
    copies: Copies,
}

impl crate::ops::train::TrainStep for NativeBlocksTrain {
    fn input(&self, x: Tensor) -> Result<Tensor> {
        Ok(x)
    }

    fn step(
        &self,
        x: &Tensor,
        upstream: Option<&Tensor>,
    ) -> candle_core::Result<crate::ops::train::Gradients> {
        use crate::ops::train::with_host;
        let dims = x.dims4()?;
        let (n, _, h, w) = dims;
        let upstream = match upstream {
            Some(g) => Some(with_host(g, <[f32]>::to_vec)?),
            None => None,
        };
        let (y, dx, dws) = with_host(x, |xs| {
            let mut outputs: Vec<Vec<f32>> = Vec::with_capacity(self.blocks.len());
            let mut saved = Vec::with_capacity(self.blocks.len());
            for block in &self.blocks {
                let input = outputs.last().map_or(xs, Vec::as_slice);
                let (y, s) = block.forward(input, (n, h, w));
                outputs.push(y);
                saved.push(s);
            }
            let y = outputs.pop().expect("at least one block");
            let mut dy = upstream.unwrap_or_else(|| vec![1.0; y.len()]);
            let mut dws = Vec::with_capacity(self.blocks.len());
            for block in self.blocks.iter().rev() {
                let s = saved.pop().expect("one per block");
                let input = outputs.last().map_or(xs, Vec::as_slice);
                let (dx, dw) = block.backward(input, &s, &dy, (n, h, w));
                dws.push(dw);
                dy = dx;
                outputs.pop();
            }
            dws.reverse();
            (y, dy, dws)
        })?;
        let mut weights = Vec::with_capacity(dws.len() * WEIGHT_SETS);
        for (block, dw) in self.blocks.iter().zip(dws) {
            for (d, shape) in dw.into_iter().zip(block.shapes) {
                weights.push(Tensor::from_vec(d, shape.to_vec(), &Device::Cpu)?);
            }
        }
        Ok(crate::ops::train::Gradients {
            output: Tensor::from_vec(y, dims, &Device::Cpu)?,
            input: Tensor::from_vec(dx, dims, &Device::Cpu)?,
            weights,
        })
    }

    fn copies(&self) -> &Copies {
        &self.copies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_bn_equals_bn_after_the_conv() {
        // One output channel, two inputs: BN(w·x) with gamma 2, beta 1, mean 0.5, var 4.
        let x = [1.5f32, -2.0];
        let mut w = vec![0.5f32, 0.25];
        let conv = w[0] * x[0] + w[1] * x[1];
        let bn = 2.0 * (conv - 0.5) / (4.0f32 + BN_EPS).sqrt() + 1.0;
        let b = fold_bn(&mut w, 1, &[2.0], &[1.0], &[0.5], &[4.0]);
        assert!((w[0] * x[0] + w[1] * x[1] + b[0] - bn).abs() < 1e-6);
    }

    /// A unit exactly at ReLU's kink: its derivative is 0 in the reference (ReLU'(0) = 0), 1
    /// an ulp above; the slack covers that difference element by element, sits only where
    /// that unit reaches (its row of the first PWConv's gradient, its bias), and is absent
    /// when no unit is near the kink or the activation is smooth.
    #[test]
    fn the_relu_slack_covers_a_unit_flipped_at_the_kink_and_only_there() {
        let spec = OpSpec {
            kind: OpKind::FasterNetBlock,
            kernel: 3,
            groups: None,
            n_div: Some(4),
            forward: Some(super::super::PConvForward::SplitCat),
            expansion: Some(2),
            act: Some(Act::Relu),
            bottlenecks: None,
            model: None,
            map: "8x5x5".parse().unwrap(),
        };
        let mut rng = crate::ops::seeded_rng(4);
        let sets: Vec<Vec<f64>> = random_weights(&spec, &mut rng)
            .iter()
            .map(|w| w.data.iter().map(|&v| f64::from(v)).collect())
            .collect();
        let wide = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<f64>>();
        let x = wide(crate::ops::uniform(200, 1.0, &mut rng));
        let dy = wide(crate::ops::uniform(200, 1.0, &mut rng));
        let kink = 4e-6;
        // These weights and inputs put no unit near the kink: nothing to allow.
        assert!(reference_slack(&spec, &sets, (&x, &dy), 1, kink).is_none());
        // Put hidden unit (o = 3, p = 12) exactly at 0 by moving its bias.
        let (o, p, hw) = (3, 12, 25);
        let t = crate::ops::reference::reference_forward(&pconv_part(&spec), &sets[0], &x, 1);
        let h: f64 = (0..8).map(|i| sets[1][o * 8 + i] * t[i * hw + p]).sum();
        let mut at = sets.clone();
        at[2][o] = -h;
        let mut above = at.clone();
        above[2][o] += 1e-12;
        let (_, dx0, dw0) = reference_step(&spec, &at, &x, &dy, 1);
        let (_, dx1, dw1) = reference_step(&spec, &above, &x, &dy, 1);
        let slack = reference_slack(&spec, &at, (&x, &dy), 1, kink).unwrap();
        assert_eq!(slack.units, 1);
        let covered = |a: &[f64], b: &[f64], s: &[f64]| {
            a.iter()
                .zip(b)
                .zip(s)
                .all(|((a, b), s)| (a - b).abs() <= s + 1e-9)
        };
        assert!(
            dx0.iter().zip(&dx1).any(|(a, b)| (a - b).abs() > 1e-3),
            "the flip matters"
        );
        assert!(covered(&dx0, &dx1, &slack.input));
        for i in 0..WEIGHT_SETS {
            assert!(
                covered(&dw0[i], &dw1[i], &slack.weights[i]),
                "weight set {i}"
            );
        }
        // Only the unit's own row and bias, exactly what its flip changes there.
        let [_, sw1, sb1, sw2] = [0, 1, 2, 3].map(|i| &slack.weights[i]);
        for (r, row) in sw1.chunks(8).enumerate() {
            assert_eq!(row.iter().any(|&v| v > 0.0), r == o, "row {r}");
        }
        assert!(sb1.iter().enumerate().all(|(r, &v)| (v > 0.0) == (r == o)));
        assert!((sb1[o] - (dw0[2][o] - dw1[2][o]).abs()).abs() < 1e-9);
        assert!(sw2.iter().all(|&v| v == 0.0));
        // The input gradient's slack stays within the PConv's reach of pixel p (the 3x3
        // around it, on the partial channels; the pixel itself on the others).
        for (i, &v) in slack.input.iter().enumerate() {
            let (ch, q) = (i / hw, i % hw);
            let (dy_, dx_) = ((q / 5) as i64 - 2, (q % 5) as i64 - 2);
            let near = if ch < 2 {
                dy_.abs() <= 1 && dx_.abs() <= 1
            } else {
                q == p
            };
            assert!(near || v == 0.0, "slack at channel {ch}, pixel {q}");
        }
        let smooth = OpSpec {
            act: Some(Act::Gelu),
            ..spec
        };
        assert!(reference_slack(&smooth, &at, (&x, &dy), 1, kink).is_none());
    }

    #[test]
    fn cost_is_pconv_plus_two_pointwise_convs_plus_the_residual() {
        let spec = OpSpec {
            kind: OpKind::FasterNetBlock,
            kernel: 3,
            groups: None,
            n_div: Some(4),
            forward: Some(super::super::PConvForward::SplitCat),
            expansion: Some(2),
            act: Some(Act::Relu),
            bottlenecks: None,
            model: None,
            map: "64x8x8".parse().unwrap(),
        };
        let c = cost(&spec);
        assert_eq!(c.macs, 64 * (9 * 16 * 16 + 2 * 64 * 128));
        assert_eq!(c.weight_elements, 9 * 16 * 16 + 2 * 64 * 128 + 128);
        assert_eq!(variant(&spec), "3x3 n_div=4 split_cat e2 relu");
        let mut bad = spec.clone();
        bad.expansion = Some(0);
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("expansion ratio 0"));
    }
}
