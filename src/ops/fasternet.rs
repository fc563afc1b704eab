//! Whole FasterNet classifiers (T0 .. L), as the official `models/fasternet.py` builds them,
//! with random weights: one operator family (`op = fasternet`, one per `model`) whose layer is
//! a whole network on a 3 x R x R image. Architecture, cost in the paper's convention, named
//! weights, the candle and native forwards and the f64 reference live here side by side.
//!
//! Stem: Conv 4x4 stride 4 (3 -> e) + BN. Stage i (width e·2^i, depth d_i): FasterNet blocks
//! (PConv 3x3 with n_div 4, MLP ratio 2, split_cat forward). Between stages: Conv 2x2 stride
//! 2 (c -> 2c) + BN. Head: global average pool, Conv 1x1 (8e -> 1280, no bias), the act,
//! Linear 1280 -> 1000. Every BN is folded into its conv (inference).

use candle_core::{Device, Module, Shape, Tensor, D};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::block::{self, candle_act, BlockWeights, CandleBlock, NativeBlock};
use super::native::{self, gemm_conv::pointwise, Native, NativeForward};
use super::{
    tensor_from, uniform, Act, ConvBias, Copies, Dtype, FeatureMap, Implementation, LayerCost,
    LayerWeights, Network, OpKind, OpSpec, PConvForward, Stack, Target,
};
use crate::error::{Error, Result};

/// One FasterNet variant, and the paper's FLOPs for it at 224x224.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arch {
    pub name: &'static str,
    /// Stage-1 width e (stage i has e·2^i channels).
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub act: Act,
    /// The paper's FLOPs (multiply-adds, fvcore), G, at 224x224 (docs/paper.md).
    pub paper_gflops: f64,
}

/// In the order of [`Network`].
pub const ARCHS: [Arch; 6] = [
    Arch {
        name: "fasternet-t0",
        embed_dim: 40,
        depths: [1, 2, 8, 2],
        act: Act::Gelu,
        paper_gflops: 0.34,
    },
    Arch {
        name: "fasternet-t1",
        embed_dim: 64,
        depths: [1, 2, 8, 2],
        act: Act::Gelu,
        paper_gflops: 0.85,
    },
    Arch {
        name: "fasternet-t2",
        embed_dim: 96,
        depths: [1, 2, 8, 2],
        act: Act::Relu,
        paper_gflops: 1.91,
    },
    Arch {
        name: "fasternet-s",
        embed_dim: 128,
        depths: [1, 2, 13, 2],
        act: Act::Relu,
        paper_gflops: 4.56,
    },
    Arch {
        name: "fasternet-m",
        embed_dim: 144,
        depths: [3, 4, 18, 3],
        act: Act::Relu,
        paper_gflops: 8.74,
    },
    Arch {
        name: "fasternet-l",
        embed_dim: 192,
        depths: [3, 4, 18, 3],
        act: Act::Relu,
        paper_gflops: 15.52,
    },
];

impl Network {
    /// This network's architecture.
    pub fn arch(self) -> &'static Arch {
        &ARCHS[self as usize]
    }
}

/// The paper's resolution, at which its FLOPs are quoted.
pub const PAPER_RESOLUTION: usize = 224;
const N_DIV: usize = 4;
const MLP_RATIO: usize = 2;
const FEATURE_DIM: usize = 1280;
/// Logits per image: the network's output.
pub const CLASSES: usize = 1000;
/// Smallest input: the last stage (1/32 of it) must fit the 3x3 PConv.
pub const MIN_RESOLUTION: usize = 96;
/// Largest input: 64 times the paper's area, far beyond any detector input, so the cost
/// arithmetic stays well inside 64 bits.
pub const MAX_RESOLUTION: usize = 8192;

/// An RGB image of side R: the input shape of a network.
pub fn image(resolution: usize) -> FeatureMap {
    FeatureMap {
        c: 3,
        h: resolution,
        w: resolution,
    }
}

/// The spec of `network` on inputs of shape `map` (valid when `map` is an `image`).
pub fn spec(network: Network, map: FeatureMap) -> OpSpec {
    OpSpec {
        model: Some(network),
        ..OpSpec::plain(OpKind::FasterNet, 3, map)
    }
}

/// Cost of one image through the network, in the convention of the paper's numbers (fvcore's
/// FlopCountAnalysis on the eval-mode model, which the official `utils.py` uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelCost {
    /// Multiply-adds of every convolution and the final Linear.
    pub conv_linear_macs: u64,
    /// fvcore's count for eval-mode BatchNorm with affine parameters: 2 per output element
    /// (the BN is folded at run time, so this is bookkeeping, not work done).
    pub bn_flops: u64,
    /// fvcore's count for the global average pool: 1 per input element.
    pub pool_flops: u64,
    /// conv_linear_macs + bn_flops + pool_flops: the number the paper quotes as FLOPs.
    pub fvcore_flops: u64,
    /// Parameters (convolutions, BN weight and bias, Linear weight and bias), as fvcore's
    /// parameter_count.
    pub params: u64,
}

/// What a record of a whole network carries beyond an operator's: its architecture, and its
/// cost counted as the paper counts it, beside the paper's figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Stage-1 width e.
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub act: Act,
    /// Per image.
    pub cost: ModelCost,
    /// The paper's FLOPs at 224x224, G (only comparable at resolution 224).
    pub paper_gflops: f64,
    /// fvcore_flops / paper - 1 at resolution 224, else null.
    pub flops_vs_paper: Option<f64>,
}

/// A FasterNet at one input resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub arch: &'static Arch,
    pub resolution: usize,
}

impl Model {
    pub fn new(arch: &'static Arch, resolution: usize) -> Result<Self> {
        if !(MIN_RESOLUTION..=MAX_RESOLUTION).contains(&resolution)
            || !resolution.is_multiple_of(32)
        {
            return Err(Error::Invalid(format!(
                "resolution {resolution}: allowed are multiples of 32 from {MIN_RESOLUTION} to {MAX_RESOLUTION} (the stages downsample by 32 in all, and the last one needs a 3x3 map)"
            )));
        }
        Ok(Self { arch, resolution })
    }

    /// The network a validated spec names.
    pub fn of(spec: &OpSpec) -> Self {
        let network = spec.model.expect("a fasternet spec names its model");
        Self {
            arch: network.arch(),
            resolution: spec.map.h,
        }
    }

    /// Channels and side of stage i's feature map.
    fn stage(&self, i: usize) -> (usize, usize) {
        (self.arch.embed_dim << i, (self.resolution / 4) >> i)
    }

    /// Estimated peak bytes of verifying (the batch in f32, up to three images in the f64
    /// reference) and timing (`batch` images) this network, f32: per image the input plus
    /// eight maps of the widest stage (a block's input, PConv output, hidden 2c, output, with
    /// headroom), and the weights (16 bytes each while verifying); None when the size
    /// overflows 64 bits.
    pub fn peak_bytes(&self, batch: usize) -> Option<u64> {
        let r = self.resolution as u64;
        let widest = (0..4)
            .map(|i| self.stage(i))
            .map(|(c, side)| (c as u64).checked_mul((side as u64).checked_mul(side as u64)?))
            .try_fold(0u64, |m, v| v.map(|v| m.max(v)))?;
        let image = r
            .checked_mul(r)?
            .checked_mul(3)?
            .checked_add(widest.checked_mul(8)?)?;
        let params = self.cost().params;
        let timed = image
            .checked_mul(batch as u64)?
            .checked_add(params)?
            .checked_mul(4)?;
        // Verification also holds the seeded weights (f32), the built network's copy (f32)
        // and their f64 widening, and the f64 reference's images.
        let verify = image
            .checked_mul(batch.min(3) as u64)?
            .checked_mul(8)?
            .checked_add(params.checked_mul(4 + 8)?)?
            .checked_add(timed)?;
        Some(verify)
    }

    /// The FasterNet block of stage i.
    pub fn block_spec(&self, i: usize) -> OpSpec {
        let (c, side) = self.stage(i);
        let map = FeatureMap {
            c,
            h: side,
            w: side,
        };
        OpSpec {
            n_div: Some(N_DIV),
            forward: Some(PConvForward::SplitCat),
            expansion: Some(MLP_RATIO),
            act: Some(self.arch.act),
            ..OpSpec::plain(OpKind::FasterNetBlock, 3, map)
        }
    }

    /// Blocks in all stages.
    fn blocks(&self) -> usize {
        self.arch.depths.iter().sum()
    }

    /// Weight sets of one network: the stem's two, four per block, two per merge, and the
    /// head's three.
    fn weight_sets(&self) -> usize {
        2 + block::WEIGHT_SETS * self.blocks() + 2 * 3 + 3
    }

    pub fn cost(&self) -> ModelCost {
        let e = self.arch.embed_dim as u64;
        let side0 = (self.resolution / 4) as u64;
        // Stem: 4x4 patches of 3 channels.
        let mut macs = side0 * side0 * e * 3 * 16;
        let mut bn = 2 * side0 * side0 * e;
        let mut params = 3 * 16 * e + 2 * e;
        for (i, &depth) in self.arch.depths.iter().enumerate() {
            let spec = self.block_spec(i);
            let (c, side) = (spec.map.c as u64, spec.map.h as u64);
            let hidden = c * MLP_RATIO as u64;
            let block = spec.cost();
            macs += depth as u64 * block.macs;
            bn += depth as u64 * 2 * side * side * hidden;
            // Weights without the folded bias, plus BN's weight and bias.
            params += depth as u64 * (block.weight_elements - hidden + 2 * hidden);
            if i < 3 {
                let out = side / 2;
                macs += out * out * (4 * c) * (2 * c);
                bn += 2 * out * out * 2 * c;
                params += 4 * c * 2 * c + 2 * 2 * c;
            }
        }
        let (c_last, side_last) = self.stage(3);
        let (c_last, side_last) = (c_last as u64, side_last as u64);
        let pool = c_last * side_last * side_last;
        let head = c_last * FEATURE_DIM as u64 + (FEATURE_DIM * CLASSES) as u64;
        macs += head;
        params += head + CLASSES as u64;
        ModelCost {
            conv_linear_macs: macs,
            bn_flops: bn,
            pool_flops: pool,
            fvcore_flops: macs + bn + pool,
            params,
        }
    }

    /// The cost model of one forward on one image, as for every operator: the multiply-adds
    /// of the convolutions and the Linear; every layer's input and output read and written
    /// once (the blocks as `fasternet_block` counts them, the pool reading its map, the head
    /// its vectors); every weight and folded bias read once.
    pub fn layer_cost(&self) -> LayerCost {
        let e = self.arch.embed_dim as u64;
        let r = self.resolution as u64;
        let side0 = r / 4;
        let mut activations = 3 * r * r + e * side0 * side0;
        let mut weights = 3 * 16 * e + e;
        for (i, &depth) in self.arch.depths.iter().enumerate() {
            let block = self.block_spec(i).cost();
            activations += depth as u64 * block.activation_elements;
            weights += depth as u64 * block.weight_elements;
            let (c, side) = self.stage(i);
            let (c, side) = (c as u64, side as u64);
            if i < 3 {
                activations += c * side * side + 2 * c * (side / 2) * (side / 2);
                weights += 4 * c * 2 * c + 2 * c;
            } else {
                // Pool, head conv (a matrix-vector product), act in place, Linear.
                activations += c * side * side + c;
                activations += c + FEATURE_DIM as u64;
                activations += FEATURE_DIM as u64 + CLASSES as u64;
                weights += c * FEATURE_DIM as u64 + (FEATURE_DIM * CLASSES + CLASSES) as u64;
            }
        }
        LayerCost {
            macs: self.cost().conv_linear_macs,
            activation_elements: activations,
            weight_elements: weights,
        }
    }

    /// What a record of this network carries beyond an operator's.
    pub fn info(&self) -> NetworkInfo {
        let cost = self.cost();
        NetworkInfo {
            embed_dim: self.arch.embed_dim,
            depths: self.arch.depths,
            act: self.arch.act,
            cost,
            paper_gflops: self.arch.paper_gflops,
            flops_vs_paper: (self.resolution == PAPER_RESOLUTION)
                .then(|| cost.fvcore_flops as f64 / 1e9 / self.arch.paper_gflops - 1.0),
        }
    }
}

/// The network record fields of a spec (None for an operator).
pub fn info(spec: &OpSpec) -> Option<NetworkInfo> {
    (spec.kind == OpKind::FasterNet).then(|| Model::of(spec).info())
}

pub fn validate(spec: &OpSpec) -> Result<()> {
    let Some(network) = spec.model else {
        return crate::invalid!(
            "op fasternet needs a model: allowed are {} (`pconv-bench model`)",
            Network::allowed()
        );
    };
    let FeatureMap { c, h, w } = spec.map;
    if c != 3 || h != w {
        return crate::invalid!(
            "{network} takes an RGB image 3xRxR, not the feature map {}",
            spec.map
        );
    }
    if spec.kernel != 3 {
        return crate::invalid!(
            "kernel size {} for {network}: its PConvs are 3x3, allowed is 3",
            spec.kernel
        );
    }
    Model::new(network.arch(), h).map(drop)
}

pub fn variant(spec: &OpSpec) -> String {
    spec.model.map_or_else(String::new, |m| m.to_string())
}

pub fn cost(spec: &OpSpec) -> LayerCost {
    Model::of(spec).layer_cost()
}

/// A patch convolution's weight and bias with a random BN folded in (`cout` rows).
fn random_patch(cin: usize, cout: usize, p: usize, rng: &mut impl Rng) -> [LayerWeights; 2] {
    let (weight, bias) = block::random_conv_bn(cout, cin * p * p, 1.0, rng);
    [
        LayerWeights {
            shape: [cout, cin, p, p],
            data: weight,
        },
        LayerWeights {
            shape: [cout, 1, 1, 1],
            data: bias,
        },
    ]
}

/// Every weight of one network, in the order [`FasterNetWeights::of`] names them.
pub fn random_weights(spec: &OpSpec, rng: &mut impl Rng) -> Vec<LayerWeights> {
    let model = Model::of(spec);
    let e = model.arch.embed_dim;
    let mut sets: Vec<LayerWeights> = random_patch(3, e, 4, rng).into();
    for (i, &depth) in model.arch.depths.iter().enumerate() {
        let block = model.block_spec(i);
        for _ in 0..depth {
            sets.extend(block::random_weights(&block, rng));
        }
        if i < 3 {
            let c = block.map.c;
            sets.extend(random_patch(c, 2 * c, 2, rng));
        }
    }
    let c_last = model.stage(3).0;
    let matrix = |rows: usize, cols: usize, data: Vec<f32>| LayerWeights {
        shape: [rows, cols, 1, 1],
        data,
    };
    let head = uniform(FEATURE_DIM * c_last, (3.0 / c_last as f32).sqrt(), rng);
    let fc = uniform(
        CLASSES * FEATURE_DIM,
        (3.0 / FEATURE_DIM as f32).sqrt(),
        rng,
    );
    let fc_bias = uniform(CLASSES, 0.1, rng);
    sets.push(matrix(FEATURE_DIM, c_last, head));
    sets.push(matrix(CLASSES, FEATURE_DIM, fc));
    sets.push(matrix(CLASSES, 1, fc_bias));
    sets
}

/// One network's weights by name (`S` as in `block::BlockWeights`).
pub struct FasterNetWeights<'a, S> {
    /// Conv 4x4 stride 4, 3 -> e, BN folded.
    pub stem: ConvBias<&'a S>,
    /// Per stage, its blocks.
    pub stages: Vec<Vec<BlockWeights<&'a S>>>,
    /// Conv 2x2 stride 2, c -> 2c, BN folded, after stages 0 to 2.
    pub merges: Vec<ConvBias<&'a S>>,
    /// Conv 1x1 8e -> 1280 on the pooled vector, no bias.
    pub head: &'a S,
    /// Linear 1280 -> 1000.
    pub fc: ConvBias<&'a S>,
}

impl<'a, S> FasterNetWeights<'a, S> {
    /// Names the sets of one network, in the order `random_weights` draws them.
    pub fn of(model: &Model, sets: &'a [S]) -> Self {
        assert_eq!(
            sets.len(),
            model.weight_sets(),
            "weight sets of {}",
            model.arch.name
        );
        let mut rest = sets;
        let mut take = |n: usize| {
            let (now, later) = rest.split_at(n);
            rest = later;
            now
        };
        let conv = |s: &'a [S]| ConvBias {
            weight: &s[0],
            bias: &s[1],
        };
        let stem = conv(take(2));
        let mut stages = Vec::new();
        let mut merges = Vec::new();
        for (i, &depth) in model.arch.depths.iter().enumerate() {
            stages.push(
                (0..depth)
                    .map(|_| BlockWeights::of(take(block::WEIGHT_SETS)))
                    .collect(),
            );
            if i < 3 {
                merges.push(conv(take(2)));
            }
        }
        let [head, fc, fc_bias] = take(3) else {
            unreachable!("three head sets remain")
        };
        FasterNetWeights {
            stem,
            stages,
            merges,
            head,
            fc: ConvBias {
                weight: fc,
                bias: fc_bias,
            },
        }
    }
}

/// `make` applied to every block's spec and weights, stage by stage.
fn per_block<T>(
    model: &Model,
    w: &FasterNetWeights<LayerWeights>,
    mut make: impl FnMut(&OpSpec, BlockWeights<&LayerWeights>) -> Result<T>,
) -> Result<Vec<Vec<T>>> {
    w.stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let spec = model.block_spec(i);
            stage.iter().map(|b| make(&spec, *b)).collect()
        })
        .collect()
}

/// Builds `weights.len()` / one network's sets networks (the suite runs one layer).
pub fn build(spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
    let (implementation, device, dtype) = (on.implementation, on.device, on.dtype);
    let model = Model::of(spec);
    let layers = weights
        .chunks(model.weight_sets())
        .map(|sets| {
            let w = FasterNetWeights::of(&model, sets);
            Ok(match implementation {
                Implementation::Native => {
                    Box::new(Native(NativeModel::new(&model, &w))) as Box<dyn Module + Send + Sync>
                }
                Implementation::Candle | Implementation::Torch => {
                    Box::new(CandleModel::new(&model, &w, device, dtype)?)
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Each block copies what its PConv copies; the stem, merges and head copy nothing.
    let mut elements = 0;
    for (i, &depth) in model.arch.depths.iter().enumerate() {
        elements +=
            depth as u64 * block::copies(&model.block_spec(i), implementation).elements_per_image;
    }
    let what = block::copies(&model.block_spec(0), implementation).description;
    Ok(Stack {
        layers,
        copies: Copies {
            elements_per_image: elements,
            description: format!(
                "each of the {} blocks' PConv: {what}; BN folded into every conv",
                model.blocks()
            ),
        },
    })
}

// ---------------------------------------------------------------------------------------
// Native forward

/// A strided patch convolution (kernel = stride = p, no padding) with its folded-BN bias.
struct PatchConv {
    cin: usize,
    cout: usize,
    p: usize,
    /// (cout, cin, p, p)
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl PatchConv {
    fn new(w: ConvBias<&LayerWeights>) -> Self {
        let [cout, cin, p, _] = w.weight.shape;
        Self {
            cin,
            cout,
            p,
            weight: w.weight.data.clone(),
            bias: w.bias.data.clone(),
        }
    }

    /// Patch convolution of `n` dense images (cin x h x w): space-to-depth into a column
    /// matrix (cin·p·p rows), one GEMM per image, plus the bias.
    fn run(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        let (p, cin, cout) = (self.p, self.cin, self.cout);
        let (ho, wo) = (h / p, w / p);
        let (k, pixels) = (cin * p * p, ho * wo);
        native::with_output(n * cout * pixels, |out| {
            for (xb, ob) in x.chunks(cin * h * w).zip(out.chunks_mut(cout * pixels)) {
                let col = native::with_output(k * pixels, |col| {
                    for ci in 0..cin {
                        for dy in 0..p {
                            for dx in 0..p {
                                let row = &mut col[((ci * p + dy) * p + dx) * pixels..][..pixels];
                                for oy in 0..ho {
                                    let src = &xb[ci * h * w + (oy * p + dy) * w + dx..];
                                    for (ox, v) in row[oy * wo..][..wo].iter_mut().enumerate() {
                                        *v = src[ox * p];
                                    }
                                }
                            }
                        }
                    }
                });
                pointwise(ob, &self.weight, &col, (cout, k, pixels), false);
                for (plane, b) in ob.chunks_mut(pixels).zip(&self.bias) {
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
        })
    }
}

/// The whole network on the native kernels, as one custom op: (n, 3, R, R) -> (n, 1000).
pub struct NativeModel {
    model: Model,
    stem: PatchConv,
    blocks: Vec<Vec<NativeBlock>>,
    merges: Vec<PatchConv>,
    head: Vec<f32>,
    fc: Vec<f32>,
    fc_bias: Vec<f32>,
}

impl NativeModel {
    fn new(model: &Model, w: &FasterNetWeights<LayerWeights>) -> Self {
        Self {
            model: *model,
            stem: PatchConv::new(w.stem),
            blocks: per_block(model, w, |spec, b| Ok(block::native_block(spec, b)))
                .expect("building native blocks cannot fail"),
            merges: w.merges.iter().map(|m| PatchConv::new(*m)).collect(),
            head: w.head.data.clone(),
            fc: w.fc.weight.data.clone(),
            fc_bias: w.fc.bias.data.clone(),
        }
    }

    fn run(&self, x: &[f32], n: usize) -> Vec<f32> {
        let r = self.model.resolution;
        let mut cur = self.stem.run(x, n, r, r);
        for (i, stage) in self.blocks.iter().enumerate() {
            let (_, side) = self.model.stage(i);
            for b in stage {
                cur = native::with_output(cur.len(), |out| b.run(&cur, out, n, side, side));
            }
            if let Some(merge) = self.merges.get(i) {
                cur = merge.run(&cur, n, side, side);
            }
        }
        let (c, side) = self.model.stage(3);
        let hw = side * side;
        let act = self.model.arch.act;
        let mut logits = Vec::with_capacity(n * CLASSES);
        for image in cur.chunks(c * hw) {
            let pooled: Vec<f32> = image
                .chunks(hw)
                .map(|plane| plane.iter().sum::<f32>() / hw as f32)
                .collect();
            let mut feat = vec![0.0; FEATURE_DIM];
            pointwise(&mut feat, &self.head, &pooled, (FEATURE_DIM, c, 1), false);
            native::simd::bias_act_plane(&mut feat, 0.0, act);
            let mut out = self.fc_bias.clone();
            pointwise(&mut out, &self.fc, &feat, (CLASSES, FEATURE_DIM, 1), true);
            logits.extend(out);
        }
        logits
    }
}

impl NativeForward for NativeModel {
    const NAME: &'static str = "pconv-bench-native-fasternet";

    fn forward_batch(&self, x: &[f32], (n, ..): (usize, usize, usize, usize)) -> (Vec<f32>, Shape) {
        (self.run(x, n), Shape::from((n, CLASSES)))
    }
}

// ---------------------------------------------------------------------------------------
// Candle forward

/// A patch convolution on candle: conv2d with stride p, plus the bias.
struct CandlePatch {
    weight: Tensor,
    bias: Tensor,
    p: usize,
}

impl CandlePatch {
    fn new(w: ConvBias<&LayerWeights>, device: &Device, dtype: Dtype) -> Result<Self> {
        let [cout, _, p, _] = w.weight.shape;
        Ok(Self {
            weight: tensor_from(w.weight.data.clone(), &w.weight.shape, device, dtype)?,
            bias: tensor_from(w.bias.data.clone(), &[1, cout, 1, 1], device, dtype)?,
            p,
        })
    }
}

impl Module for CandlePatch {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.conv2d(&self.weight, 0, self.p, 1, 1)?
            .broadcast_add(&self.bias)
    }
}

/// The whole network on stock candle ops.
pub struct CandleModel {
    stem: CandlePatch,
    stages: Vec<Vec<CandleBlock>>,
    merges: Vec<CandlePatch>,
    head: Tensor,
    fc: Tensor,
    fc_bias: Tensor,
    act: Act,
}

impl CandleModel {
    fn new(
        model: &Model,
        w: &FasterNetWeights<LayerWeights>,
        device: &Device,
        dtype: Dtype,
    ) -> Result<Self> {
        let matrix = |lw: &LayerWeights| {
            let [rows, cols, _, _] = lw.shape;
            tensor_from(lw.data.clone(), &[rows, cols], device, dtype)
        };
        Ok(Self {
            stem: CandlePatch::new(w.stem, device, dtype)?,
            stages: per_block(model, w, |spec, b| {
                block::candle_block(spec, b, device, dtype)
            })?,
            merges: w
                .merges
                .iter()
                .map(|m| CandlePatch::new(*m, device, dtype))
                .collect::<Result<_>>()?,
            head: matrix(w.head)?,
            fc: matrix(w.fc.weight)?,
            fc_bias: tensor_from(w.fc.bias.data.clone(), &[1, CLASSES], device, dtype)?,
            act: model.arch.act,
        })
    }
}

impl Module for CandleModel {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = self.stem.forward(x)?;
        for (i, stage) in self.stages.iter().enumerate() {
            for b in stage {
                y = b.forward(&y)?;
            }
            if let Some(m) = self.merges.get(i) {
                y = m.forward(&y)?;
            }
        }
        // Global average pool, then the 1x1 conv on a 1x1 map is a matmul.
        let pooled = y.flatten_from(2)?.mean(D::Minus1)?;
        let feat = candle_act(&pooled.matmul(&self.head.t()?)?, self.act)?;
        feat.matmul(&self.fc.t()?)?.broadcast_add(&self.fc_bias)
    }
}

// ---------------------------------------------------------------------------------------
// Reference

/// f64 patch convolution (kernel = stride = p) plus bias of `n` images of h x w.
fn reference_patch_conv(
    wb: ConvBias<&Vec<f64>>,
    p: usize,
    x: &[f64],
    (n, h, w): (usize, usize, usize),
) -> Vec<f64> {
    let cout = wb.bias.len();
    let cin = wb.weight.len() / (cout * p * p);
    let (ho, wo) = (h / p, w / p);
    let mut out = vec![0.0; n * cout * ho * wo];
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = wb.bias[o];
                    for ci in 0..cin {
                        for dy in 0..p {
                            for dx in 0..p {
                                let wv = wb.weight[((o * cin + ci) * p + dy) * p + dx];
                                acc += wv * x[((b * cin + ci) * h + oy * p + dy) * w + ox * p + dx];
                            }
                        }
                    }
                    out[((b * cout + o) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    out
}

/// The network in f64 with naive loops: (n, 3, R, R) -> (n, 1000); `sets` are the weights
/// of `random_weights`, widened.
pub fn reference(spec: &OpSpec, sets: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
    let model = Model::of(spec);
    let w = FasterNetWeights::of(&model, sets);
    let r = model.resolution;
    let mut cur = reference_patch_conv(w.stem, 4, x, (n, r, r));
    for (i, stage) in w.stages.iter().enumerate() {
        let spec = model.block_spec(i);
        for b in stage {
            cur = block::reference_named(&spec, *b, &cur, n);
        }
        if let Some(merge) = w.merges.get(i) {
            let (_, side) = model.stage(i);
            cur = reference_patch_conv(*merge, 2, &cur, (n, side, side));
        }
    }
    let (c, side) = model.stage(3);
    let hw = side * side;
    let mut logits = Vec::with_capacity(n * CLASSES);
    for image in cur.chunks(c * hw) {
        let pooled: Vec<f64> = image
            .chunks(hw)
            .map(|plane| plane.iter().sum::<f64>() / hw as f64)
            .collect();
        let feat: Vec<f64> = (0..FEATURE_DIM)
            .map(|o| {
                let v: f64 = (0..c).map(|i| w.head[o * c + i] * pooled[i]).sum();
                model.arch.act.apply_f64(v)
            })
            .collect();
        logits.extend((0..CLASSES).map(|o| {
            w.fc.bias[o]
                + (0..FEATURE_DIM)
                    .map(|i| w.fc.weight[o * FEATURE_DIM + i] * feat[i])
                    .sum::<f64>()
        }));
    }
    logits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str) -> &'static Arch {
        name.parse::<Network>().unwrap().arch()
    }

    #[test]
    fn the_arch_table_is_in_network_order() {
        for (n, a) in Network::ALL.iter().zip(&ARCHS) {
            assert_eq!(n.as_str(), a.name);
        }
    }

    #[test]
    fn macs_match_the_papers_flops_within_one_percent() {
        for a in &ARCHS {
            let cost = Model::new(a, PAPER_RESOLUTION).unwrap().cost();
            let g = cost.fvcore_flops as f64 / 1e9;
            let diff = g / a.paper_gflops - 1.0;
            assert!(
                diff.abs() < 0.01,
                "{}: {g:.4} G vs {} G",
                a.name,
                a.paper_gflops
            );
            // The convolutions and the Linear are nearly all of it.
            assert!(cost.conv_linear_macs as f64 > 0.98 * cost.fvcore_flops as f64);
        }
        // T0 by hand: stem 56²·40·48 = 6,021,120 MACs.
        let t0 = Model::new(arch("fasternet-t0"), 224).unwrap();
        assert_eq!(t0.cost().pool_flops, 320 * 7 * 7);
        assert_eq!(t0.block_spec(0).map.to_string(), "40x56x56");
        assert_eq!(t0.block_spec(3).map.to_string(), "320x7x7");
    }

    #[test]
    fn the_memory_model_counts_every_layer_once() {
        // T0 at 96, by hand. Stem: 3·96² in, 40·24² out. A block on c x s x s with c_p = c/4
        // and hidden 2c: PConv 2·c_p·s², the PWConvs (c -> 2c, 2c -> c) 2·3c·s², the residual
        // 3·c·s²; weights 9·c_p² + 2·c·2c + 2c (the folded bias). A merge: c·s² in,
        // 2c·(s/2)² out, 2x2 weights 8c² and 2c biases. Head: pool c·s² + c, conv c + 1280,
        // Linear 1280 + 1000.
        let m = Model::new(arch("fasternet-t0"), 96).unwrap();
        let c = m.layer_cost();
        let (mut acts, mut weights) = (3 * 96 * 96 + 40 * 24 * 24, 3 * 16 * 40 + 40);
        for (ch, side, depth) in [(40u64, 24u64, 1u64), (80, 12, 2), (160, 6, 8), (320, 3, 2)] {
            let (cp, s2) = (ch / 4, side * side);
            acts += depth * (2 * cp * s2 + 6 * ch * s2 + 3 * ch * s2);
            weights += depth * (9 * cp * cp + 4 * ch * ch + 2 * ch);
            if ch < 320 {
                acts += ch * s2 + 2 * ch * (side / 2) * (side / 2);
                weights += 8 * ch * ch + 2 * ch;
            }
        }
        acts += 320 * 9 + 320 + 320 + 1280 + 1280 + 1000;
        weights += 320 * 1280 + 1280 * 1000 + 1000;
        assert_eq!(c.activation_elements, acts);
        assert_eq!(c.weight_elements, weights);
        assert_eq!(c.macs, m.cost().conv_linear_macs);
        // The folded weights are fvcore's parameters less one BN vector per conv with BN:
        // the stem's, each merge's, and each block's first PWConv.
        let bn_vectors: u64 = 40 + 2 * (40 + 80 + 160) + 80 + 2 * 160 + 8 * 320 + 2 * 640;
        assert_eq!(weights + bn_vectors, m.cost().params);
    }

    #[test]
    fn bad_names_resolutions_and_shapes_are_refused() {
        let err = "fasternet-xl".parse::<Network>().unwrap_err();
        assert!(
            err.contains("'fasternet-xl'") && err.contains("fasternet-t0"),
            "{err}"
        );
        for r in [0, 64, 200, 225] {
            let msg = Model::new(arch("fasternet-t0"), r).unwrap_err().to_string();
            assert!(msg.contains(&format!("resolution {r}")), "{msg}");
        }
        assert!(Model::new(arch("fasternet-l"), 96).is_ok());
        let mut s = spec(Network::T0, image(224));
        assert!(s.validate().is_ok());
        s.map = "96x56x56".parse().unwrap();
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("96x56x56") && msg.contains("3xRxR"), "{msg}");
        let mut s = spec(Network::T0, image(224));
        s.model = None;
        let msg = s.validate().unwrap_err().to_string();
        assert!(msg.contains("needs a model"), "{msg}");
    }

    #[test]
    fn native_and_candle_networks_match_the_f64_reference() {
        let s = spec(Network::T0, image(MIN_RESOLUTION));
        let weights = crate::ops::random_weights(&s, 1, 3);
        let n = 2;
        let x = crate::ops::timed_input(&s, n, 3);
        let wide = |v: &[f32]| v.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        let sets: Vec<Vec<f64>> = weights.iter().map(|w| wide(&w.data)).collect();
        let reference = reference(&s, &sets, &wide(&x), n);
        for imp in [Implementation::Native, Implementation::Candle] {
            let net = crate::ops::build(&s, imp, &weights, &Device::Cpu, Dtype::F32).unwrap();
            let t = tensor_from(x.clone(), &[n, 3, 96, 96], &Device::Cpu, Dtype::F32).unwrap();
            let y = net.forward(&t).unwrap();
            assert_eq!(y.dims(), [n, CLASSES]);
            let y = wide(&y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            let (_, rel) = crate::ops::reference::compare(&y, &reference);
            assert!(rel < 1e-4, "{imp}: rel err {rel}");
            // Not a constant: the two images give different logits.
            assert!(y[..CLASSES] != y[CLASSES..], "{imp}");
        }
    }
}
