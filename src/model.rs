//! Whole FasterNet classifiers (T0 .. L), as the official `models/fasternet.py` builds them,
//! with random weights: architecture, cost in the paper's convention, weights, the candle
//! and native forwards, and an f64 reference.
//!
//! Stem: Conv 4x4 stride 4 (3 -> e) + BN. Stage i (width e·2^i, depth d_i): FasterNet blocks
//! (PConv 3x3 with n_div 4, MLP ratio 2, split_cat forward). Between stages: Conv 2x2 stride
//! 2 (c -> 2c) + BN. Head: global average pool, Conv 1x1 (8e -> 1280, no bias), the act,
//! Linear 1280 -> 1000. Every BN is folded into its conv (inference).

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Module, Shape, Tensor, D};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{CandleContext, Error, Result};
use crate::ops::block::{self, candle_act, CandleBlock, NativeBlock};
use crate::ops::native::{self, gemm_conv::pointwise};
use crate::ops::{self, Act, Dtype, FeatureMap, LayerWeights, OpKind, OpSpec, PConvForward};

/// One FasterNet variant, and the paper's FLOPs for it at 224x224.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arch {
    pub name: &'static str,
    /// Stage-1 width e (stage i has e·2^i channels).
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub act: Act,
    /// The paper's FLOPs (multiply-adds, fvcore), G, at 224x224 (docs/paper.md).
    pub paper_gflops: f64,
}

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

/// The paper's resolution, at which its FLOPs are quoted.
pub const PAPER_RESOLUTION: usize = 224;
const N_DIV: usize = 4;
const MLP_RATIO: usize = 2;
const FEATURE_DIM: usize = 1280;
const CLASSES: usize = 1000;
/// Smallest input: the last stage (1/32 of it) must fit the 3x3 PConv.
pub const MIN_RESOLUTION: usize = 96;

impl std::str::FromStr for &'static Arch {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ARCHS.iter().find(|a| a.name == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = ARCHS.iter().map(|a| a.name).collect();
            format!("unknown model '{s}': allowed are {}", names.join(", "))
        })
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

/// A FasterNet at one input resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub arch: &'static Arch,
    pub resolution: usize,
}

impl Model {
    pub fn new(arch: &'static Arch, resolution: usize) -> Result<Self> {
        if resolution < MIN_RESOLUTION || !resolution.is_multiple_of(32) {
            return Err(Error::Invalid(format!(
                "resolution {resolution}: allowed are multiples of 32 from {MIN_RESOLUTION} (the stages downsample by 32 in all, and the last one needs a 3x3 map)"
            )));
        }
        Ok(Self { arch, resolution })
    }

    /// Channels and side of stage i's feature map.
    fn stage(&self, i: usize) -> (usize, usize) {
        (self.arch.embed_dim << i, (self.resolution / 4) >> i)
    }

    /// Estimated peak bytes of verifying (2 images, f32 run and f64 reference) and timing
    /// (`batch` images) this network: per image the input plus eight maps of the widest stage
    /// (a block's input, PConv output, hidden 2c, output, with headroom), and the weights;
    /// None when the size overflows 64 bits.
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
        let verify = image
            .checked_mul(2)?
            .checked_add(params)?
            .checked_mul(4 + 8)?;
        Some(timed.max(verify))
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

    /// `make` applied to every block's weight sets, stage by stage.
    fn per_block<T>(
        &self,
        w: &Weights,
        mut make: impl FnMut(&OpSpec, &[LayerWeights]) -> Result<T>,
    ) -> Result<Vec<Vec<T>>> {
        w.blocks
            .iter()
            .enumerate()
            .map(|(i, stage)| {
                let spec = self.block_spec(i);
                stage.iter().map(|sets| make(&spec, sets)).collect()
            })
            .collect()
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
}

/// A strided patch convolution (kernel = stride = p, no padding) with its folded-BN bias.
#[derive(Debug, Clone)]
pub struct PatchConv {
    pub cin: usize,
    pub cout: usize,
    pub p: usize,
    /// (cout, cin, p, p)
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl PatchConv {
    fn random(cin: usize, cout: usize, p: usize, rng: &mut impl Rng) -> Self {
        let (weight, bias) = block::random_conv_bn(cout, cin * p * p, 1.0, rng);
        Self {
            cin,
            cout,
            p,
            weight,
            bias,
        }
    }
}

/// Every weight of one network, drawn from a seed.
#[derive(Debug, Clone)]
pub struct Weights {
    pub stem: PatchConv,
    /// Per stage, per block, its `block::WEIGHT_SETS` sets.
    pub blocks: Vec<Vec<Vec<LayerWeights>>>,
    pub merges: Vec<PatchConv>,
    /// (1280, 8e)
    pub head_conv: Vec<f32>,
    /// (1000, 1280)
    pub fc_weight: Vec<f32>,
    pub fc_bias: Vec<f32>,
}

impl Weights {
    pub fn random(model: &Model, seed: u64) -> Self {
        let mut rng = ops::seeded_rng(seed);
        let e = model.arch.embed_dim;
        let stem = PatchConv::random(3, e, 4, &mut rng);
        let mut blocks = Vec::new();
        let mut merges = Vec::new();
        for (i, &depth) in model.arch.depths.iter().enumerate() {
            let spec = model.block_spec(i);
            blocks.push(
                (0..depth)
                    .map(|_| block::random_weights(&spec, &mut rng))
                    .collect(),
            );
            if i < 3 {
                let c = spec.map.c;
                merges.push(PatchConv::random(c, 2 * c, 2, &mut rng));
            }
        }
        let c_last = model.stage(3).0;
        let head_conv = ops::uniform(FEATURE_DIM * c_last, (3.0 / c_last as f32).sqrt(), &mut rng);
        let fc_weight = ops::uniform(
            CLASSES * FEATURE_DIM,
            (3.0 / FEATURE_DIM as f32).sqrt(),
            &mut rng,
        );
        let fc_bias = ops::uniform(CLASSES, 0.1, &mut rng);
        Self {
            stem,
            blocks,
            merges,
            head_conv,
            fc_weight,
            fc_bias,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Native forward

/// Patch convolution of `n` dense images (cin x h x w): space-to-depth into a column matrix
/// (cin·p·p rows), one GEMM per image, plus the bias.
fn native_patch_conv(pc: &PatchConv, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    let (p, cin, cout) = (pc.p, pc.cin, pc.cout);
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
            pointwise(ob, &pc.weight, &col, (cout, k, pixels), false);
            for (plane, b) in ob.chunks_mut(pixels).zip(&pc.bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
    })
}

/// The whole network on the native kernels, as one custom op: (n, 3, R, R) -> (n, 1000).
pub struct NativeModel {
    model: Model,
    weights: Weights,
    blocks: Vec<Vec<NativeBlock>>,
}

impl NativeModel {
    pub fn new(model: &Model, weights: &Weights) -> Result<Self> {
        Ok(Self {
            model: *model,
            weights: weights.clone(),
            blocks: model.per_block(weights, |spec, sets| Ok(block::native_block(spec, sets)))?,
        })
    }

    fn run(&self, x: &[f32], n: usize) -> Vec<f32> {
        let r = self.model.resolution;
        let mut cur = native_patch_conv(&self.weights.stem, x, n, r, r);
        for (i, stage) in self.blocks.iter().enumerate() {
            let (_, side) = self.model.stage(i);
            for b in stage {
                cur = native::with_output(cur.len(), |out| b.run(&cur, out, n, side, side));
            }
            if i < 3 {
                cur = native_patch_conv(&self.weights.merges[i], &cur, n, side, side);
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
            pointwise(
                &mut feat,
                &self.weights.head_conv,
                &pooled,
                (FEATURE_DIM, c, 1),
                false,
            );
            native::simd::bias_act_plane(&mut feat, 0.0, act);
            let mut out = self.weights.fc_bias.clone();
            pointwise(
                &mut out,
                &self.weights.fc_weight,
                &feat,
                (CLASSES, FEATURE_DIM, 1),
                true,
            );
            logits.extend(out);
        }
        logits
    }
}

impl CustomOp1 for NativeModel {
    fn name(&self) -> &'static str {
        "pconv-bench-native-fasternet"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = native::f32_input(storage, layout)?;
        let n = layout.shape().dims4()?.0;
        Ok((CpuStorage::F32(self.run(x, n)), Shape::from((n, CLASSES))))
    }
}

impl Module for NativeModel {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
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
    fn new(pc: &PatchConv, device: &Device, dtype: Dtype) -> Result<Self> {
        Ok(Self {
            weight: ops::tensor_from(
                pc.weight.clone(),
                &[pc.cout, pc.cin, pc.p, pc.p],
                device,
                dtype,
            )?,
            bias: ops::tensor_from(pc.bias.clone(), &[1, pc.cout, 1, 1], device, dtype)?,
            p: pc.p,
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
    head_conv: Tensor,
    fc_weight: Tensor,
    fc_bias: Tensor,
    act: Act,
}

impl CandleModel {
    pub fn new(model: &Model, w: &Weights, device: &Device, dtype: Dtype) -> Result<Self> {
        let stages = model.per_block(w, |spec, sets| {
            block::candle_block(spec, sets, device, dtype)
        })?;
        let c_last = model.stage(3).0;
        Ok(Self {
            stem: CandlePatch::new(&w.stem, device, dtype)?,
            stages,
            merges: w
                .merges
                .iter()
                .map(|m| CandlePatch::new(m, device, dtype))
                .collect::<Result<_>>()?,
            head_conv: ops::tensor_from(
                w.head_conv.clone(),
                &[FEATURE_DIM, c_last],
                device,
                dtype,
            )?,
            fc_weight: ops::tensor_from(
                w.fc_weight.clone(),
                &[CLASSES, FEATURE_DIM],
                device,
                dtype,
            )?,
            fc_bias: ops::tensor_from(w.fc_bias.clone(), &[1, CLASSES], device, dtype)?,
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
        let feat = candle_act(&pooled.matmul(&self.head_conv.t()?)?, self.act)?;
        feat.matmul(&self.fc_weight.t()?)?
            .broadcast_add(&self.fc_bias)
    }
}

// ---------------------------------------------------------------------------------------
// Reference

fn reference_patch_conv(pc: &PatchConv, x: &[f64], n: usize, h: usize, w: usize) -> Vec<f64> {
    let (p, cin, cout) = (pc.p, pc.cin, pc.cout);
    let (ho, wo) = (h / p, w / p);
    let mut out = vec![0.0; n * cout * ho * wo];
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = f64::from(pc.bias[o]);
                    for ci in 0..cin {
                        for dy in 0..p {
                            for dx in 0..p {
                                let wv = f64::from(pc.weight[((o * cin + ci) * p + dy) * p + dx]);
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

/// The network in f64 with naive loops: (n, 3, R, R) -> (n, 1000).
pub fn reference(model: &Model, w: &Weights, x: &[f64], n: usize) -> Vec<f64> {
    let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    let r = model.resolution;
    let mut cur = reference_patch_conv(&w.stem, x, n, r, r);
    for (i, stage) in w.blocks.iter().enumerate() {
        let spec = model.block_spec(i);
        for sets in stage {
            let sets: Vec<Vec<f64>> = sets.iter().map(|s| wide(&s.data)).collect();
            cur = block::reference(&spec, &sets, &cur, n);
        }
        if i < 3 {
            let (_, side) = model.stage(i);
            cur = reference_patch_conv(&w.merges[i], &cur, n, side, side);
        }
    }
    let (c, side) = model.stage(3);
    let hw = side * side;
    let (head, fc_w) = (wide(&w.head_conv), wide(&w.fc_weight));
    let mut logits = Vec::with_capacity(n * CLASSES);
    for image in cur.chunks(c * hw) {
        let pooled: Vec<f64> = image
            .chunks(hw)
            .map(|plane| plane.iter().sum::<f64>() / hw as f64)
            .collect();
        let feat: Vec<f64> = (0..FEATURE_DIM)
            .map(|o| {
                let v: f64 = (0..c).map(|i| head[o * c + i] * pooled[i]).sum();
                model.arch.act.apply_f64(v)
            })
            .collect();
        logits.extend((0..CLASSES).map(|o| {
            f64::from(w.fc_bias[o])
                + (0..FEATURE_DIM)
                    .map(|i| fc_w[o * FEATURE_DIM + i] * feat[i])
                    .sum::<f64>()
        }));
    }
    logits
}

/// A random input batch (n, 3, R, R) in [-1, 1).
pub fn random_input(model: &Model, n: usize, seed: u64) -> Vec<f32> {
    let r = model.resolution;
    ops::uniform(n * 3 * r * r, 1.0, &mut ops::seeded_rng(seed ^ 0x1a7e))
}

/// Builds the network for an implementation.
pub fn build(
    model: &Model,
    weights: &Weights,
    implementation: ops::Implementation,
    device: &Device,
) -> Result<Box<dyn Module>> {
    match implementation {
        ops::Implementation::Native => Ok(Box::new(NativeModel::new(model, weights)?)),
        ops::Implementation::Candle => Ok(Box::new(CandleModel::new(
            model,
            weights,
            device,
            Dtype::F32,
        )?)),
        ops::Implementation::Torch => Err(Error::Unsupported(
            ops::Implementation::Torch
                .not_runnable_here()
                .unwrap_or_default(),
        )),
    }
}

/// Runs the network on `n` images and returns the logits on the host.
pub fn forward_host(
    net: &dyn Module,
    model: &Model,
    x: &[f32],
    n: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let r = model.resolution;
    let t = ops::tensor_from(x.to_vec(), &[n, 3, r, r], device, Dtype::F32)?;
    net.forward(&t)
        .and_then(|y| y.flatten_all())
        .and_then(|y| y.to_vec1::<f32>())
        .context(|| format!("running {} at {r}x{r}", model.arch.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch(name: &str) -> &'static Arch {
        name.parse().unwrap()
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
    fn bad_names_and_resolutions_are_refused() {
        let err = "fasternet-xl".parse::<&'static Arch>().unwrap_err();
        assert!(
            err.contains("'fasternet-xl'") && err.contains("fasternet-t0"),
            "{err}"
        );
        for r in [0, 64, 200, 225] {
            let msg = Model::new(arch("fasternet-t0"), r).unwrap_err().to_string();
            assert!(msg.contains(&format!("resolution {r}")), "{msg}");
        }
        assert!(Model::new(arch("fasternet-l"), 96).is_ok());
    }

    #[test]
    fn native_and_candle_networks_match_the_f64_reference() {
        let model = Model::new(arch("fasternet-t0"), MIN_RESOLUTION).unwrap();
        let weights = Weights::random(&model, 3);
        let n = 2;
        let x = random_input(&model, n, 3);
        let wide: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let reference = reference(&model, &weights, &wide, n);
        for imp in [ops::Implementation::Native, ops::Implementation::Candle] {
            let net = build(&model, &weights, imp, &Device::Cpu).unwrap();
            let y = forward_host(net.as_ref(), &model, &x, n, &Device::Cpu).unwrap();
            let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
            let (_, rel) = crate::verify::compare(&y, &reference);
            assert!(rel < 1e-4, "{imp}: rel err {rel}");
            // Not a constant: the two images give different logits.
            assert!(y[..CLASSES] != y[CLASSES..], "{imp}");
        }
    }
}
