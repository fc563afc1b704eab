//! YOLOv8's C2f block and its FasterNet variant, with forward (candle and native), cost model,
//! weights and naive reference side by side.
//!
//! C2f(c -> c, n), as ultralytics builds it with its default e = 0.5 (c_ = c / 2):
//! cv1 = Conv1x1(c -> 2·c_); split into halves y0, y1; y_{i+1} = bottleneck_i(y_i) for
//! i = 1..n; cv2 = Conv1x1((2 + n)·c_ -> c) over the concat [y0, y1, ..., y_{n+1}]. Every
//! ultralytics `Conv` is conv + BN + SiLU; BN is folded here (inference).
//! - `c2f`: the bottleneck is y + Conv_kxk(Conv_kxk(y)) (shortcut on, as in the backbone).
//! - `c2f_faster`: the bottleneck is a FasterNet block on c_ channels (PConv, PWConv
//!   c_ -> e·c_ with BN and SiLU, PWConv back, shortcut), the "C2f_Faster" of YOLO ports.

use candle_core::{Module, Shape, Tensor};
use rand::Rng;

use super::block::{self, candle_act, BlockWeights, NativeBlock};
use super::native::gemm_conv::pointwise;
use super::native::{self, Native, NativeForward, NativeLayer};
use super::{
    tensor_from, Act, ConvBias, Copies, FeatureMap, Implementation, LayerCost, LayerWeights,
    OpKind, OpSpec, Stack, Target,
};
use crate::error::{Error, Result};

/// Every ultralytics `Conv` ends in SiLU.
const ACT: Act = Act::Silu;

/// c_ = c / 2: the width of each half and of every bottleneck.
pub fn hidden(spec: &OpSpec) -> usize {
    spec.map.c / 2
}

fn bottleneck_count(spec: &OpSpec) -> usize {
    spec.bottlenecks.unwrap_or(1)
}

/// Weight sets per C2f: cv1 (weight, bias), four per bottleneck, cv2 (weight, bias).
pub fn weight_sets(spec: &OpSpec) -> usize {
    4 + 4 * bottleneck_count(spec)
}

/// One C2f's weights by name (`S` as in `block::BlockWeights`).
pub struct C2fWeights<'a, S> {
    /// cv1, the 1x1 Conv c -> 2·c_.
    pub cv1: ConvBias<&'a S>,
    /// Each bottleneck's four sets: `c2f`'s two k x k Convs ([`conv_pair`]), or
    /// `c2f_faster`'s FasterNet block (`block::BlockWeights::of`).
    pub m: Vec<&'a [S]>,
    /// cv2, the 1x1 Conv (2 + n)·c_ -> c.
    pub cv2: ConvBias<&'a S>,
}

impl<'a, S> C2fWeights<'a, S> {
    /// Names one C2f's sets, in the order `random_weights` draws them.
    pub fn of(sets: &'a [S]) -> Self {
        let conv = |s: &'a [S]| ConvBias {
            weight: &s[0],
            bias: &s[1],
        };
        assert!(
            sets.len() >= 8 && sets.len().is_multiple_of(4),
            "a C2f has 4 + 4·n weight sets, not {}",
            sets.len()
        );
        let (cv1, rest) = sets.split_at(2);
        let (m, cv2) = rest.split_at(rest.len() - 2);
        C2fWeights {
            cv1: conv(cv1),
            m: m.chunks(4).collect(),
            cv2: conv(cv2),
        }
    }
}

/// A `c2f` bottleneck's two k x k Convs, each with its bias, by name.
pub fn conv_pair<S>(s: &[S]) -> [ConvBias<&S>; 2] {
    [
        ConvBias {
            weight: &s[0],
            bias: &s[1],
        },
        ConvBias {
            weight: &s[2],
            bias: &s[3],
        },
    ]
}

/// The bottleneck's own spec on c_ channels: its k x k Conv (`c2f`, two per bottleneck) or
/// its FasterNet block (`c2f_faster`).
pub fn bottleneck(spec: &OpSpec) -> OpSpec {
    let map = FeatureMap {
        c: hidden(spec),
        ..spec.map
    };
    match spec.kind {
        OpKind::C2fFaster => OpSpec {
            kind: OpKind::FasterNetBlock,
            act: Some(ACT),
            bottlenecks: None,
            map,
            ..spec.clone()
        },
        _ => OpSpec::plain(OpKind::Conv, spec.kernel, map),
    }
}

pub fn validate(spec: &OpSpec) -> Result<()> {
    let kind = spec.kind;
    let n = spec.bottlenecks.unwrap_or(0);
    if n == 0 {
        return Err(Error::Invalid(format!(
            "{n} bottlenecks for {kind}: allowed is n >= 1 (YOLOv8 uses 1 to 6)"
        )));
    }
    let c = spec.map.c;
    if c < 2 || !c.is_multiple_of(2) {
        return Err(Error::Invalid(format!(
            "{kind} splits the {c} channels of {} into two halves of c/2: allowed are even channel counts",
            spec.map
        )));
    }
    if kind == OpKind::C2fFaster {
        let (d, half) = (spec.n_div.unwrap_or(0), hidden(spec));
        if d == 0 || half % d != 0 {
            return Err(Error::Invalid(format!(
                "n_div {d} does not divide the {half} channels (c/2 of {}) of {kind}'s FasterNet bottlenecks: allowed are divisors of {half}",
                spec.map
            )));
        }
    }
    bottleneck(spec).validate()
}

pub fn variant(spec: &OpSpec) -> String {
    format!(
        "n={} {}",
        bottleneck_count(spec),
        bottleneck(spec).variant()
    )
}

/// A 1x1 conv cin -> cout with its (folded-BN) bias on `hw` pixels.
fn pointwise_cost(cin: u64, cout: u64, hw: u64) -> LayerCost {
    LayerCost {
        macs: hw * cin * cout,
        activation_elements: hw * (cin + cout),
        weight_elements: cin * cout + cout,
    }
}

fn add(a: LayerCost, b: LayerCost) -> LayerCost {
    LayerCost {
        macs: a.macs + b.macs,
        activation_elements: a.activation_elements + b.activation_elements,
        weight_elements: a.weight_elements + b.weight_elements,
    }
}

/// cv1 + n bottlenecks + cv2. A `c2f` bottleneck is two k x k convs with biases plus its
/// shortcut add (read two c_ tensors, write one); bias and SiLU are applied in place and move
/// nothing extra. The concat moves nothing in the model: each part is written where cv2
/// reads it (what an implementation copies is reported as its copies).
pub fn cost(spec: &OpSpec) -> LayerCost {
    let (c, half) = (spec.map.c as u64, hidden(spec) as u64);
    let hw = (spec.map.h * spec.map.w) as u64;
    let n = bottleneck_count(spec) as u64;
    let inner = bottleneck(spec);
    let one = match spec.kind {
        OpKind::C2fFaster => inner.cost(),
        _ => {
            let conv = inner.cost();
            LayerCost {
                macs: 2 * conv.macs,
                activation_elements: 2 * conv.activation_elements + 3 * hw * half,
                weight_elements: 2 * (conv.weight_elements + half),
            }
        }
    };
    let bottlenecks = LayerCost {
        macs: n * one.macs,
        activation_elements: n * one.activation_elements,
        weight_elements: n * one.weight_elements,
    };
    add(
        add(pointwise_cost(c, 2 * half, hw), bottlenecks),
        pointwise_cost((2 + n) * half, c, hw),
    )
}

/// A conv with a random BN folded in, as two weight sets (weight, bias).
fn conv_bn(shape: [usize; 4], rng: &mut impl Rng) -> [LayerWeights; 2] {
    let (w, b) = block::random_conv_bn(shape[0], shape[1] * shape[2] * shape[3], 1.0, rng);
    [
        LayerWeights { shape, data: w },
        LayerWeights {
            shape: [shape[0], 1, 1, 1],
            data: b,
        },
    ]
}

/// One C2f's weight sets, in the order of `weight_sets`.
pub fn random_weights(spec: &OpSpec, rng: &mut impl Rng) -> Vec<LayerWeights> {
    let (c, half, k) = (spec.map.c, hidden(spec), spec.kernel);
    let n = bottleneck_count(spec);
    let inner = bottleneck(spec);
    let mut sets: Vec<LayerWeights> = conv_bn([2 * half, c, 1, 1], rng).into();
    for _ in 0..n {
        match spec.kind {
            OpKind::C2fFaster => sets.extend(block::random_weights(&inner, rng)),
            _ => {
                sets.extend(conv_bn([half, half, k, k], rng));
                sets.extend(conv_bn([half, half, k, k], rng));
            }
        }
    }
    sets.extend(conv_bn([c, (2 + n) * half, 1, 1], rng));
    sets
}

/// f64 act(W·x + b) for a 1x1 conv cin -> cout on one image of `hw` pixels.
fn reference_pointwise(wb: ConvBias<&Vec<f64>>, x: &[f64], cout: usize, hw: usize) -> Vec<f64> {
    let (w, b) = (wb.weight, wb.bias);
    let cin = x.len() / hw;
    let mut y = vec![0.0; cout * hw];
    for (o, plane) in y.chunks_mut(hw).enumerate() {
        for i in 0..cin {
            let wv = w[o * cin + i];
            for (p, v) in plane.iter_mut().enumerate() {
                *v += wv * x[i * hw + p];
            }
        }
        plane.iter_mut().for_each(|v| *v = ACT.apply_f64(*v + b[o]));
    }
    y
}

/// f64 act(conv_kxk(x) + b) for one image of c_ channels (`inner` is the Conv's spec).
fn reference_conv(inner: &OpSpec, w: ConvBias<&Vec<f64>>, x: &[f64]) -> Vec<f64> {
    let hw = inner.map.h * inner.map.w;
    let mut y = crate::ops::reference::reference_forward(inner, w.weight, x, 1);
    for (o, plane) in y.chunks_mut(hw).enumerate() {
        plane
            .iter_mut()
            .for_each(|v| *v = ACT.apply_f64(*v + w.bias[o]));
    }
    y
}

/// f64 reference of one C2f on `batch` images; `w` are the weight sets of `random_weights`
/// (dtype-rounded).
pub fn reference(spec: &OpSpec, w: &[Vec<f64>], x: &[f64], batch: usize) -> Vec<f64> {
    let (c, half, hw) = (spec.map.c, hidden(spec), spec.map.h * spec.map.w);
    let w = C2fWeights::of(w);
    let inner = bottleneck(spec);
    let mut out = Vec::with_capacity(x.len());
    for xb in x.chunks(c * hw).take(batch) {
        let mut parts = reference_pointwise(w.cv1, xb, 2 * half, hw);
        for (i, sets) in w.m.iter().enumerate() {
            let src = parts[(1 + i) * half * hw..].to_vec();
            let y = match spec.kind {
                OpKind::C2fFaster => block::reference(&inner, sets, &src, 1),
                _ => {
                    let [a, b] = conv_pair(sets);
                    let t = reference_conv(&inner, a, &src);
                    let t = reference_conv(&inner, b, &t);
                    src.iter().zip(&t).map(|(a, b)| a + b).collect()
                }
            };
            parts.extend(y);
        }
        out.extend(reference_pointwise(w.cv2, &parts, c, hw));
    }
    out
}

/// A `c2f` bottleneck on stock candle ops.
struct CandleBottleneck {
    wa: Tensor,
    ba: Tensor,
    wb: Tensor,
    bb: Tensor,
    padding: usize,
}

impl Module for CandleBottleneck {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let conv = |x: &Tensor, w: &Tensor, b: &Tensor| {
            candle_act(&x.conv2d(w, self.padding, 1, 1, 1)?.broadcast_add(b)?, ACT)
        };
        x + conv(&conv(x, &self.wa, &self.ba)?, &self.wb, &self.bb)?
    }
}

/// C2f on stock candle ops: conv2d, narrow (the split), cat, broadcast_add, silu.
struct CandleC2f {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    m: Vec<Box<dyn Module + Send + Sync>>,
    half: usize,
}

impl Module for CandleC2f {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = candle_act(
            &x.conv2d(&self.w1, 0, 1, 1, 1)?.broadcast_add(&self.b1)?,
            ACT,
        )?;
        let mut ys = vec![
            y.narrow(1, 0, self.half)?,
            y.narrow(1, self.half, self.half)?,
        ];
        for m in &self.m {
            let next = m.forward(&ys[ys.len() - 1])?;
            ys.push(next);
        }
        let cat = Tensor::cat(&ys, 1)?;
        candle_act(
            &cat.conv2d(&self.w2, 0, 1, 1, 1)?.broadcast_add(&self.b2)?,
            ACT,
        )
    }
}

/// A bottleneck on the native kernels, reading c_ channels and writing c_ channels of one
/// image, both slices of the C2f's concat buffer. The layers are boxed: with `--features
/// cuda` a layer carries GPU handles, and the variants' sizes would differ by hundreds of
/// bytes (clippy's large_enum_variant) whichever holds them.
enum NativeBottleneck {
    Conv {
        a: Box<NativeLayer>,
        ba: Vec<f32>,
        b: Box<NativeLayer>,
        bb: Vec<f32>,
    },
    Faster(Box<NativeBlock>),
}

impl NativeBottleneck {
    fn run(&self, src: &[f32], dst: &mut [f32], h: usize, w: usize) {
        match self {
            NativeBottleneck::Conv { a, ba, b, bb } => {
                let mut t = native::with_output(src.len(), |t| a.run(src, t, 1, h, w));
                native::bias_act(&mut t, ba, h * w, ACT);
                b.run(&t, dst, 1, h, w);
                native::bias_act(dst, bb, h * w, ACT);
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
            NativeBottleneck::Faster(block) => block.run(src, dst, 1, h, w),
        }
    }
}

/// C2f on the native kernels. Per image, cv1 writes both halves into one concat buffer, each
/// bottleneck reads its predecessor's slice and writes the next, and cv2 reads the whole
/// buffer: the split and the concat copy nothing.
struct NativeC2f {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
    m: Vec<NativeBottleneck>,
    half: usize,
}

impl NativeForward for NativeC2f {
    const NAME: &'static str = "pconv-bench-native-c2f";

    fn forward_batch(&self, x: &[f32], dims: (usize, usize, usize, usize)) -> (Vec<f32>, Shape) {
        let (_, c, h, w) = dims;
        let (hw, half) = (h * w, self.half);
        let cat = (2 + self.m.len()) * half;
        let out = native::with_output(x.len(), |out| {
            for (xb, ob) in x.chunks(c * hw).zip(out.chunks_mut(c * hw)) {
                let buf = native::with_output(cat * hw, |buf| {
                    let halves = &mut buf[..2 * half * hw];
                    pointwise(halves, &self.w1, xb, (2 * half, c, hw), false);
                    native::bias_act(halves, &self.b1, hw, ACT);
                    for (i, m) in self.m.iter().enumerate() {
                        let (done, rest) = buf.split_at_mut((2 + i) * half * hw);
                        m.run(&done[(1 + i) * half * hw..], &mut rest[..half * hw], h, w);
                    }
                });
                pointwise(ob, &self.w2, &buf, (c, cat, hw), false);
                native::bias_act(ob, &self.b2, hw, ACT);
            }
        });
        (out, Shape::from(dims))
    }
}

/// One C2f from its weight sets.
fn layer(
    spec: &OpSpec,
    sets: &[LayerWeights],
    on: &Target,
) -> Result<Box<dyn Module + Send + Sync>> {
    let Target {
        implementation,
        device,
        dtype,
    } = *on;
    let half = hidden(spec);
    let inner = bottleneck(spec);
    let w = C2fWeights::of(sets);
    if implementation == Implementation::Native {
        let m =
            w.m.iter()
                .map(|s| match spec.kind {
                    OpKind::C2fFaster => NativeBottleneck::Faster(Box::new(block::native_block(
                        &inner,
                        BlockWeights::of(s),
                    ))),
                    _ => {
                        let [a, b] = conv_pair(s);
                        NativeBottleneck::Conv {
                            a: Box::new(NativeLayer::new(&inner, a.weight)),
                            ba: a.bias.data.clone(),
                            b: Box::new(NativeLayer::new(&inner, b.weight)),
                            bb: b.bias.data.clone(),
                        }
                    }
                })
                .collect();
        return Ok(Box::new(Native(NativeC2f {
            w1: w.cv1.weight.data.clone(),
            b1: w.cv1.bias.data.clone(),
            w2: w.cv2.weight.data.clone(),
            b2: w.cv2.bias.data.clone(),
            m,
            half,
        })));
    }
    candle_layer_with(spec, sets, &mut |lw, shape| {
        tensor_from(lw.data.clone(), shape, device, dtype)
    })
}

/// One C2f on stock candle ops, each weight made a tensor by `t` in the order of
/// `random_weights` (training makes them variables).
fn candle_layer_with(
    spec: &OpSpec,
    sets: &[LayerWeights],
    t: &mut dyn FnMut(&LayerWeights, &[usize]) -> Result<Tensor>,
) -> Result<Box<dyn Module + Send + Sync>> {
    let w = C2fWeights::of(sets);
    let inner = bottleneck(spec);
    let bias_shape = |lw: &LayerWeights| [1, lw.shape[0], 1, 1];
    let w1 = t(w.cv1.weight, &w.cv1.weight.shape)?;
    let b1 = t(w.cv1.bias, &bias_shape(w.cv1.bias))?;
    let mut blocks: Vec<Box<dyn Module + Send + Sync>> = Vec::with_capacity(w.m.len());
    for s in &w.m {
        blocks.push(match spec.kind {
            OpKind::C2fFaster => {
                Box::new(block::candle_block_with(&inner, BlockWeights::of(s), t)?)
            }
            _ => {
                let [a, b] = conv_pair(s);
                Box::new(CandleBottleneck {
                    wa: t(a.weight, &a.weight.shape)?,
                    ba: t(a.bias, &bias_shape(a.bias))?,
                    wb: t(b.weight, &b.weight.shape)?,
                    bb: t(b.bias, &bias_shape(b.bias))?,
                    padding: spec.kernel / 2,
                })
            }
        });
    }
    Ok(Box::new(CandleC2f {
        w1,
        b1,
        w2: t(w.cv2.weight, &w.cv2.weight.shape)?,
        b2: t(w.cv2.bias, &bias_shape(w.cv2.bias))?,
        m: blocks,
        half: hidden(spec),
    }))
}

/// What one C2f copies beyond the model: candle's cat of all (2 + n)·c_ channels (the
/// split is a view), and the FasterNet bottlenecks' PConv copies.
fn copies(spec: &OpSpec, implementation: Implementation) -> Copies {
    let (half, n) = (hidden(spec) as u64, bottleneck_count(spec) as u64);
    let hw = (spec.map.h * spec.map.w) as u64;
    let mut parts = Vec::new();
    let mut elements = 0;
    if implementation != Implementation::Native {
        elements += 2 * (2 + n) * half * hw;
        parts.push(format!(
            "cat copies all (2 + n)·c/2 = {} channels",
            (2 + n) * half
        ));
    }
    if spec.kind == OpKind::C2fFaster {
        let inner = block::copies(&bottleneck(spec), implementation);
        elements += n * inner.elements_per_image;
        parts.push(format!(
            "each of the {n} bottlenecks: {}",
            inner.description
        ));
    }
    if parts.is_empty() {
        parts.push("none: split and concat are slices of one buffer".into());
    }
    Copies {
        elements_per_image: elements,
        description: format!("{}; BN folded into every conv", parts.join("; ")),
    }
}

/// Builds `weights.len() / weight_sets(spec)` stacked C2f blocks.
pub fn build(spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
    let layers = weights
        .chunks(weight_sets(spec))
        .map(|w| layer(spec, w, on))
        .collect::<Result<Vec<_>>>()?;
    Ok(Stack {
        layers,
        copies: copies(spec, on.implementation),
    })
}

// Training (`--pass train`). BN stays folded (frozen): each Conv's folded weight and bias
// train (docs/training.md).

/// Activations one C2f's backward needs kept from the forward, per pixel of one image: the
/// input (cv1's), cv1's pre-activation, the concat buffer (cv2's input and the bottlenecks'),
/// cv2's pre-activation, and per bottleneck its own (`c2f`: both convs' pre-activations and
/// the first's activation; `c2f_faster`: the FasterNet block's).
pub fn saved_per_pixel(spec: &OpSpec) -> u64 {
    let (c, half, n) = (
        spec.map.c as u64,
        hidden(spec) as u64,
        bottleneck_count(spec) as u64,
    );
    let per_bottleneck = match spec.kind {
        OpKind::C2fFaster => block::saved_per_pixel(&bottleneck(spec)),
        _ => 3 * half,
    };
    c + 2 * half + (2 + n) * half + c + n * per_bottleneck
}

/// f64: (act(W·x + b), W·x + b) for a 1x1 conv on one image of `hw` pixels.
fn ref_pointwise_pre(
    wb: ConvBias<&Vec<f64>>,
    x: &[f64],
    cout: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (w, b) = (wb.weight, wb.bias);
    let cin = x.len() / hw;
    let mut pre = vec![0.0; cout * hw];
    for (o, plane) in pre.chunks_mut(hw).enumerate() {
        for i in 0..cin {
            let wv = w[o * cin + i];
            for (p, v) in plane.iter_mut().enumerate() {
                *v += wv * x[i * hw + p];
            }
        }
        plane.iter_mut().for_each(|v| *v += b[o]);
    }
    (pre.iter().map(|&v| ACT.apply_f64(v)).collect(), pre)
}

/// f64 backward of y = act(W·x + b), 1x1, one image: (dx, dW, db), dW and db added into.
fn ref_pointwise_back(
    w: &[f64],
    x: &[f64],
    pre: &[f64],
    dy: &[f64],
    hw: usize,
    (dw, db): (&mut [f64], &mut [f64]),
) -> Vec<f64> {
    let (cout, cin) = (pre.len() / hw, x.len() / hw);
    let d: Vec<f64> = dy
        .iter()
        .zip(pre)
        .map(|(g, &v)| g * ACT.grad_f64(v))
        .collect();
    let mut dx = vec![0.0; cin * hw];
    for o in 0..cout {
        let row = &d[o * hw..][..hw];
        db[o] += row.iter().sum::<f64>();
        for i in 0..cin {
            let wv = w[o * cin + i];
            let mut g = 0.0;
            for p in 0..hw {
                dx[i * hw + p] += wv * row[p];
                g += row[p] * x[i * hw + p];
            }
            dw[o * cin + i] += g;
        }
    }
    dx
}

/// f64 forward of act(conv_kxk(x) + b) keeping the pre-activation, one image.
fn ref_conv_pre(inner: &OpSpec, w: ConvBias<&Vec<f64>>, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let hw = inner.map.h * inner.map.w;
    let mut pre = crate::ops::reference::reference_forward(inner, w.weight, x, 1);
    for (o, plane) in pre.chunks_mut(hw).enumerate() {
        plane.iter_mut().for_each(|v| *v += w.bias[o]);
    }
    (pre.iter().map(|&v| ACT.apply_f64(v)).collect(), pre)
}

/// f64 backward of act(conv_kxk(x) + b), one image: dx, with dW and db added into.
fn ref_conv_back(
    inner: &OpSpec,
    w: &[f64],
    x: &[f64],
    pre: &[f64],
    dy: &[f64],
    (dw, db): (&mut [f64], &mut [f64]),
) -> Vec<f64> {
    let hw = inner.map.h * inner.map.w;
    let d: Vec<f64> = dy
        .iter()
        .zip(pre)
        .map(|(g, &v)| g * ACT.grad_f64(v))
        .collect();
    for (o, plane) in d.chunks(hw).enumerate() {
        db[o] += plane.iter().sum::<f64>();
    }
    let (dx, dwi) = crate::ops::train::reference_single(inner, w, x, &d, 1);
    dw.iter_mut().zip(dwi).for_each(|(a, b)| *a += b);
    dx
}

/// The f64 reference of one C2f's training step for the loss sum(y ⊙ dy): (output, d input,
/// d weight sets in the order of `random_weights`).
pub fn reference_step(
    spec: &OpSpec,
    w: &[Vec<f64>],
    x: &[f64],
    dy: &[f64],
    batch: usize,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let (c, half, hw) = (spec.map.c, hidden(spec), spec.map.h * spec.map.w);
    let inner = bottleneck(spec);
    let named = C2fWeights::of(w);
    let mut grads: Vec<Vec<f64>> = w.iter().map(|s| vec![0.0; s.len()]).collect();
    let (mut y, mut dx) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for (xb, dyb) in x.chunks(c * hw).zip(dy.chunks(c * hw)).take(batch) {
        let (halves, pre1) = ref_pointwise_pre(named.cv1, xb, 2 * half, hw);
        let mut buf = halves;
        // Each conv bottleneck's (first pre-activation, first activation, second
        // pre-activation), for its backward.
        let mut kept = Vec::new();
        for (i, sets) in named.m.iter().enumerate() {
            let src = buf[(1 + i) * half * hw..][..half * hw].to_vec();
            let out = match spec.kind {
                OpKind::C2fFaster => block::reference(&inner, sets, &src, 1),
                _ => {
                    let [a, b] = conv_pair(sets);
                    let (ta, pa) = ref_conv_pre(&inner, a, &src);
                    let (tb, pb) = ref_conv_pre(&inner, b, &ta);
                    kept.push((pa, ta, pb));
                    src.iter().zip(&tb).map(|(s, t)| s + t).collect()
                }
            };
            buf.extend(out);
        }
        let (out, pre2) = ref_pointwise_pre(named.cv2, &buf, c, hw);
        y.extend(out);
        // Backward.
        let last = grads.len() - 2;
        let (head, tail) = grads.split_at_mut(last);
        let (dw2, db2) = tail.split_at_mut(1);
        let mut dbuf = ref_pointwise_back(
            named.cv2.weight,
            &buf,
            &pre2,
            dyb,
            hw,
            (&mut dw2[0], &mut db2[0]),
        );
        for i in (0..named.m.len()).rev() {
            let src = buf[(1 + i) * half * hw..][..half * hw].to_vec();
            let dout = dbuf[(2 + i) * half * hw..][..half * hw].to_vec();
            let sets = named.m[i];
            let g = &mut head[2 + 4 * i..][..4];
            let dsrc = match spec.kind {
                OpKind::C2fFaster => {
                    let (_, dsrc, dws) = block::reference_step(&inner, sets, &src, &dout, 1);
                    for (acc, d) in g.iter_mut().zip(dws) {
                        acc.iter_mut().zip(d).for_each(|(a, b)| *a += b);
                    }
                    dsrc
                }
                _ => {
                    let (pa, ta, pb) = &kept[i];
                    let (ga, gb) = g.split_at_mut(2);
                    let (gaw, gab) = ga.split_at_mut(1);
                    let (gbw, gbb) = gb.split_at_mut(1);
                    let dta =
                        ref_conv_back(&inner, &sets[2], ta, pb, &dout, (&mut gbw[0], &mut gbb[0]));
                    let dsrc =
                        ref_conv_back(&inner, &sets[0], &src, pa, &dta, (&mut gaw[0], &mut gab[0]));
                    // The shortcut passes the output gradient to the input.
                    dsrc.iter().zip(&dout).map(|(a, b)| a + b).collect()
                }
            };
            dbuf[(1 + i) * half * hw..][..half * hw]
                .iter_mut()
                .zip(dsrc)
                .for_each(|(a, b)| *a += b);
        }
        let (g1w, g1b) = head.split_at_mut(1);
        let dxb = ref_pointwise_back(
            named.cv1.weight,
            xb,
            &pre1,
            &dbuf[..2 * half * hw],
            hw,
            (&mut g1w[0], &mut g1b[0]),
        );
        dx.extend(dxb);
    }
    (y, dx, grads)
}

/// A `c2f` bottleneck's training on the native kernels: its two convs (each with its bias
/// and SiLU), or a FasterNet block.
enum BottleneckTrain {
    // Boxed: with `--features cuda` a native layer carries its GPU buffers' handles.
    Conv {
        a: Box<crate::ops::train::NativePart>,
        ba: Vec<f32>,
        b: Box<crate::ops::train::NativePart>,
        bb: Vec<f32>,
    },
    Faster(Box<block::NativeBlockTrain>),
}

/// What a bottleneck's forward keeps for its backward (its input is a slice of the concat
/// buffer, kept by the C2f).
enum BottleneckSaved {
    Conv {
        pa: Vec<f32>,
        ta: Vec<f32>,
        pb: Vec<f32>,
    },
    Faster(block::Saved),
}

impl BottleneckTrain {
    /// One image's bottleneck: its output and what its backward needs.
    fn forward(&self, src: &[f32], (h, w): (usize, usize)) -> (Vec<f32>, BottleneckSaved) {
        let hw = h * w;
        match self {
            BottleneckTrain::Conv { a, ba, b, bb } => {
                let mut pa = a.forward(src, (1, h, w));
                let ta = native::backward::bias_then_act(&mut pa, ba, hw, ACT);
                let mut pb = b.forward(&ta, (1, h, w));
                let mut out = native::backward::bias_then_act(&mut pb, bb, hw, ACT);
                out.iter_mut().zip(src).for_each(|(o, s)| *o += s);
                (out, BottleneckSaved::Conv { pa, ta, pb })
            }
            BottleneckTrain::Faster(block) => {
                let (out, s) = block.forward(src, (1, h, w));
                (out, BottleneckSaved::Faster(s))
            }
        }
    }

    /// One image's bottleneck backward: d input, with its weight gradients added into `g`
    /// (its four sets).
    fn backward(
        &self,
        src: &[f32],
        saved: &BottleneckSaved,
        dout: &[f32],
        (h, w): (usize, usize),
        g: &mut [Vec<f32>],
    ) -> Vec<f32> {
        let hw = h * w;
        let add = |acc: &mut Vec<f32>, d: &[f32]| acc.iter_mut().zip(d).for_each(|(a, b)| *a += b);
        match (self, saved) {
            (BottleneckTrain::Conv { a, b, .. }, BottleneckSaved::Conv { pa, ta, pb }) => {
                let half = src.len() / hw;
                let mut d = dout.to_vec();
                let dbb = native::backward::act_bias_backward(&mut d, pb, half, hw, ACT);
                let (mut dta, dwb) = b.backward(ta, &d, (1, h, w));
                let dba = native::backward::act_bias_backward(&mut dta, pa, half, hw, ACT);
                let (mut dsrc, dwa) = a.backward(src, &dta, (1, h, w));
                for (acc, d) in g.iter_mut().zip([&dwa, &dba, &dwb, &dbb]) {
                    add(acc, d);
                }
                // The shortcut passes the output gradient to the input.
                dsrc.iter_mut().zip(dout).for_each(|(a, b)| *a += b);
                dsrc
            }
            (BottleneckTrain::Faster(block), BottleneckSaved::Faster(s)) => {
                let (dsrc, dws) = block.backward(src, s, dout, (1, h, w));
                for (acc, d) in g.iter_mut().zip(&dws) {
                    add(acc, d);
                }
                dsrc
            }
            _ => unreachable!("a bottleneck's saved state is its own kind"),
        }
    }
}

/// One C2f's training on the native kernels, image by image (weight gradients summed).
struct NativeC2fTrain {
    w1: Vec<f32>,
    w1t: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    w2t: Vec<f32>,
    b2: Vec<f32>,
    m: Vec<BottleneckTrain>,
    half: usize,
    shapes: Vec<[usize; 4]>,
}

/// What one image of one C2f keeps for its backward.
struct C2fSaved {
    pre1: Vec<f32>,
    buf: Vec<f32>,
    m: Vec<BottleneckSaved>,
    pre2: Vec<f32>,
}

impl NativeC2fTrain {
    fn new(spec: &OpSpec, sets: &[LayerWeights]) -> Self {
        let (c, half) = (spec.map.c, hidden(spec));
        let n = bottleneck_count(spec);
        let inner = bottleneck(spec);
        let w = C2fWeights::of(sets);
        let m =
            w.m.iter()
                .map(|s| match spec.kind {
                    OpKind::C2fFaster => BottleneckTrain::Faster(Box::new(
                        block::NativeBlockTrain::new(&inner, BlockWeights::of(s)),
                    )),
                    _ => {
                        let [a, b] = conv_pair(s);
                        BottleneckTrain::Conv {
                            a: Box::new(crate::ops::train::NativePart::new(&inner, a.weight)),
                            ba: a.bias.data.clone(),
                            b: Box::new(crate::ops::train::NativePart::new(&inner, b.weight)),
                            bb: b.bias.data.clone(),
                        }
                    }
                })
                .collect();
        Self {
            w1: w.cv1.weight.data.clone(),
            w1t: block::transpose(&w.cv1.weight.data, 2 * half, c),
            b1: w.cv1.bias.data.clone(),
            w2: w.cv2.weight.data.clone(),
            w2t: block::transpose(&w.cv2.weight.data, c, (2 + n) * half),
            b2: w.cv2.bias.data.clone(),
            m,
            half,
            shapes: sets.iter().map(|s| s.shape).collect(),
        }
    }

    /// One image's forward: its output and what its backward needs.
    fn forward(&self, x: &[f32], (h, w): (usize, usize)) -> (Vec<f32>, C2fSaved) {
        let hw = h * w;
        let (c, half) = (x.len() / hw, self.half);
        let cat = (2 + self.m.len()) * half;
        let mut pre1 = native::with_output(2 * half * hw, |p| {
            pointwise(p, &self.w1, x, (2 * half, c, hw), false)
        });
        let mut buf = native::backward::bias_then_act(&mut pre1, &self.b1, hw, ACT);
        buf.reserve(cat * hw - buf.len());
        let mut kept = Vec::with_capacity(self.m.len());
        for (i, m) in self.m.iter().enumerate() {
            let (out, s) = m.forward(&buf[(1 + i) * half * hw..][..half * hw], (h, w));
            buf.extend(out);
            kept.push(s);
        }
        let mut pre2 = native::with_output(c * hw, |p| {
            pointwise(p, &self.w2, &buf, (c, cat, hw), false)
        });
        let out = native::backward::bias_then_act(&mut pre2, &self.b2, hw, ACT);
        (
            out,
            C2fSaved {
                pre1,
                buf,
                m: kept,
                pre2,
            },
        )
    }

    /// One image's backward: d input, with the weight gradients added into `g` (this C2f's
    /// sets, in order).
    fn backward(
        &self,
        x: &[f32],
        s: &C2fSaved,
        dy: &[f32],
        (h, w): (usize, usize),
        g: &mut [Vec<f32>],
    ) -> Vec<f32> {
        use native::backward::{act_bias_backward, pointwise_weight_grad};
        let hw = h * w;
        let (c, half) = (x.len() / hw, self.half);
        let cat = (2 + self.m.len()) * half;
        let add = |acc: &mut Vec<f32>, d: &[f32]| acc.iter_mut().zip(d).for_each(|(a, b)| *a += b);
        let last = g.len() - 2;
        let mut d2 = dy.to_vec();
        let db2 = act_bias_backward(&mut d2, &s.pre2, c, hw, ACT);
        add(&mut g[last + 1], &db2);
        pointwise_weight_grad(&mut g[last], &d2, &s.buf, (1, c, cat, hw));
        let mut dbuf = native::with_output(cat * hw, |d| {
            pointwise(d, &self.w2t, &d2, (cat, c, hw), false)
        });
        for (i, m) in self.m.iter().enumerate().rev() {
            let (done, rest) = dbuf.split_at_mut((2 + i) * half * hw);
            let dsrc = m.backward(
                &s.buf[(1 + i) * half * hw..][..half * hw],
                &s.m[i],
                &rest[..half * hw],
                (h, w),
                &mut g[2 + 4 * i..][..4],
            );
            add_into(&mut done[(1 + i) * half * hw..][..half * hw], &dsrc);
        }
        let mut d1 = dbuf[..2 * half * hw].to_vec();
        let db1 = act_bias_backward(&mut d1, &s.pre1, 2 * half, hw, ACT);
        add(&mut g[1], &db1);
        pointwise_weight_grad(&mut g[0], &d1, x, (1, 2 * half, c, hw));
        native::with_output(c * hw, |dx| {
            pointwise(dx, &self.w1t, &d1, (c, 2 * half, hw), false)
        })
    }
}

fn add_into(acc: &mut [f32], d: &[f32]) {
    acc.iter_mut().zip(d).for_each(|(a, b)| *a += b);
}

/// Stacked C2fs' native training step.
struct NativeC2fsTrain {
    layers: Vec<NativeC2fTrain>,
    copies: Copies,
}

impl crate::ops::train::TrainStep for NativeC2fsTrain {
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
        let (n, c, h, w) = dims;
        let image = c * h * w;
        let upstream = match upstream {
            Some(g) => Some(with_host(g, <[f32]>::to_vec)?),
            None => None,
        };
        let (y, dx, grads) = with_host(x, |xs| {
            // Forward, image by image through every layer, keeping each layer's input.
            let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
            let mut saved: Vec<Vec<C2fSaved>> = Vec::with_capacity(self.layers.len());
            let mut cur = xs.to_vec();
            for layer in &self.layers {
                let mut next = Vec::with_capacity(cur.len());
                let mut kept = Vec::with_capacity(n);
                for xb in cur.chunks(image) {
                    let (out, s) = layer.forward(xb, (h, w));
                    next.extend(out);
                    kept.push(s);
                }
                inputs.push(std::mem::replace(&mut cur, next));
                saved.push(kept);
            }
            let y = cur;
            let mut dy = upstream.unwrap_or_else(|| vec![1.0; y.len()]);
            let mut grads: Vec<Vec<Vec<f32>>> = self
                .layers
                .iter()
                .map(|l| {
                    l.shapes
                        .iter()
                        .map(|s| vec![0.0; s.iter().product()])
                        .collect()
                })
                .collect();
            for (l, layer) in self.layers.iter().enumerate().rev() {
                let (input, kept) = (
                    inputs.pop().expect("one per layer"),
                    saved.pop().expect("one per layer"),
                );
                let mut dx = Vec::with_capacity(dy.len());
                for ((xb, s), db) in input.chunks(image).zip(&kept).zip(dy.chunks(image)) {
                    dx.extend(layer.backward(xb, s, db, (h, w), &mut grads[l]));
                }
                dy = dx;
            }
            (y, dy, grads)
        })?;
        let mut weights = Vec::new();
        for (layer, g) in self.layers.iter().zip(grads) {
            for (d, shape) in g.into_iter().zip(&layer.shapes) {
                weights.push(Tensor::from_vec(
                    d,
                    shape.to_vec(),
                    &candle_core::Device::Cpu,
                )?);
            }
        }
        Ok(crate::ops::train::Gradients {
            output: Tensor::from_vec(y, dims, &candle_core::Device::Cpu)?,
            input: Tensor::from_vec(dx, dims, &candle_core::Device::Cpu)?,
            weights,
        })
    }

    fn copies(&self) -> &Copies {
        &self.copies
    }
}

/// `layers` C2fs' training step: candle's autograd, or the native kernels.
pub fn build_train(
    spec: &OpSpec,
    weights: &[LayerWeights],
    on: &Target,
) -> Result<Box<dyn crate::ops::train::TrainStep>> {
    use crate::ops::train::{self, CandleTrain};
    let forward = copies(spec, on.implementation);
    match on.implementation {
        Implementation::Native => {
            let layers = weights
                .chunks(weight_sets(spec))
                .map(|w| NativeC2fTrain::new(spec, w))
                .collect();
            Ok(Box::new(NativeC2fsTrain {
                layers,
                copies: train::twice(&forward, "the backward copies likewise"),
            }))
        }
        Implementation::Candle | Implementation::Torch => {
            let mut vars = Vec::with_capacity(weights.len());
            let mut layers: Vec<Box<dyn Module + Send + Sync>> = Vec::new();
            for w in weights.chunks(weight_sets(spec)) {
                let mut var =
                    |lw: &LayerWeights, shape: &[usize]| train::var_of(&mut vars, lw, shape, on);
                layers.push(candle_layer_with(spec, w, &mut var)?);
            }
            Ok(Box::new(CandleTrain {
                layers,
                vars,
                copies: train::candle_copies(forward),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: OpKind, map: &str, n: usize) -> OpSpec {
        OpSpec {
            kind,
            kernel: 3,
            groups: None,
            n_div: (kind == OpKind::C2fFaster).then_some(4),
            forward: (kind == OpKind::C2fFaster).then_some(super::super::PConvForward::SplitCat),
            expansion: (kind == OpKind::C2fFaster).then_some(2),
            act: (kind == OpKind::C2fFaster).then_some(Act::Silu),
            bottlenecks: Some(n),
            model: None,
            map: map.parse().unwrap(),
        }
    }

    #[test]
    fn cost_is_two_pointwise_convs_plus_n_bottlenecks() {
        // c = 64, c_ = 32, n = 2, 8x8: cv1 64->64, two bottlenecks of two 3x3 32->32, cv2 128->64.
        let s = spec(OpKind::C2f, "64x8x8", 2);
        let c = cost(&s);
        assert_eq!(c.macs, 64 * (64 * 64 + 2 * 2 * 9 * 32 * 32 + 128 * 64));
        assert_eq!(
            c.weight_elements,
            (64 * 64 + 64) + 2 * 2 * (9 * 32 * 32 + 32) + (128 * 64 + 64)
        );
        assert_eq!(variant(&s), "n=2 3x3");
        // c2f_faster: the FasterNet block on 32 channels (c_p = 8, hidden 64) replaces the
        // two 3x3 convs.
        let f = spec(OpKind::C2fFaster, "64x8x8", 2);
        assert_eq!(
            cost(&f).macs,
            64 * (64 * 64 + 2 * (9 * 8 * 8 + 2 * 32 * 64) + 128 * 64)
        );
        assert_eq!(variant(&f), "n=2 3x3 n_div=4 split_cat e2 silu");
        assert!(cost(&f).macs < c.macs);
    }

    #[test]
    fn bad_widths_and_counts_are_refused_with_the_value() {
        let msg = |s: OpSpec| validate(&s).unwrap_err().to_string();
        assert!(msg(spec(OpKind::C2f, "64x8x8", 0)).contains("0 bottlenecks"));
        assert!(msg(spec(OpKind::C2f, "63x8x8", 1)).contains("63 channels"));
        // c/2 = 30 is not divisible by n_div 4.
        let m = msg(spec(OpKind::C2fFaster, "60x8x8", 1));
        assert!(m.contains("n_div 4") && m.contains("30 channels"), "{m}");
        assert!(validate(&spec(OpKind::C2fFaster, "64x8x8", 3)).is_ok());
        assert_eq!(weight_sets(&spec(OpKind::C2f, "64x8x8", 3)), 16);
    }
}
