//! Operators: what each one computes (its forward) and what it costs (its cost model), side by
//! side, so that a formula and the code it describes never drift apart.
//!
//! Data flows one way: an [`OpSpec`] (what to build) gives a cost model and seeded
//! [`LayerWeights`]; an [`Implementation`] turns those weights into a runnable [`Stack`].

pub mod block;
pub mod c2f;
mod conv;
pub mod fasternet;
pub mod kernel_path;
pub mod native;
mod pconv;
pub mod reference;
pub mod train;
pub mod types;

pub use types::{Act, Dtype, FeatureMap, Implementation, Network, OpKind, PConvForward, Pass};

use candle_core::{Device, Tensor};
use candle_nn::Module;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{CandleContext, Result};

/// One operator configuration at one feature-map size. An operator, composite or block is one
/// layer with c_in = c_out, stride 1, "same" padding (k / 2) and no bias on its convolutions;
/// a `fasternet` is a whole network on a 3 x R x R image (ops/fasternet.rs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpSpec {
    /// Written `op` in results files.
    #[serde(rename = "op")]
    pub kind: OpKind,
    /// Kernel size k (k x k). Always 1 for PWConv.
    pub kernel: usize,
    /// Group count: GConv only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// Partial ratio divisor, r = 1 / n_div: PConv only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_div: Option<usize>,
    /// PConv only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward: Option<PConvForward>,
    /// FasterNet block only: hidden width e·c of its MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expansion: Option<usize>,
    /// FasterNet block only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// C2f / C2f_Faster only: bottlenecks n.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottlenecks: Option<usize>,
    /// FasterNet classifier only: which one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Network>,
    /// Written `shape` in results files.
    #[serde(rename = "shape")]
    pub map: FeatureMap,
}

/// Analytic cost of one layer on one image, in the paper's conventions (docs/paper.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerCost {
    /// Multiply-adds: the paper's (and fvcore's) "FLOPs".
    pub macs: u64,
    /// Activation elements read and written (the h·w·2c term).
    pub activation_elements: u64,
    /// Weight elements read (the k²·c²/g term); also the parameter count (no bias).
    pub weight_elements: u64,
}

impl LayerCost {
    /// The paper's memory access for one image: activations plus weights, in elements.
    pub fn memory_elements(&self) -> u64 {
        self.activation_elements + self.weight_elements
    }
}

/// Elements an implementation copies beyond the paper's model (for example PConv's `cat`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copies {
    /// Elements read plus written by copies, per image per layer.
    pub elements_per_image: u64,
    /// What was copied, for people ("" when nothing).
    pub description: String,
}

impl OpSpec {
    /// A single operator with no groups, n_div or block settings (Conv, DWConv, PWConv, or a
    /// base the caller fills in).
    pub fn plain(kind: OpKind, kernel: usize, map: FeatureMap) -> OpSpec {
        OpSpec {
            kind,
            kernel,
            groups: None,
            n_div: None,
            forward: None,
            expansion: None,
            act: None,
            bottlenecks: None,
            model: None,
            map,
        }
    }

    /// The single operators a composite chains, in order; a single operator is its own part.
    pub fn parts(&self) -> Vec<OpSpec> {
        let single = |kind| OpSpec {
            kind,
            expansion: None,
            act: None,
            bottlenecks: None,
            ..self.clone()
        };
        let pw = OpSpec::plain(OpKind::PWConv, 1, self.map);
        match self.kind {
            OpKind::PConvPw => vec![single(OpKind::PConv), pw],
            OpKind::DwPw => vec![single(OpKind::DWConv), pw],
            OpKind::GConvPw => vec![single(OpKind::GConv), pw],
            // The block's own pieces (PWConvs that change width, bias, act, residual) live in
            // ops/block.rs; its PConv is its only convolution of the usual kind.
            _ => vec![self.clone()],
        }
    }

    /// Checks that this operator can be built at this feature-map size.
    pub fn validate(&self) -> Result<()> {
        family(self.kind).validate(self)
    }

    /// The checks of a single operator (kernel size, groups, n_div).
    fn validate_single(&self) -> Result<()> {
        let FeatureMap { c, h, w } = self.map;
        let k = self.kernel;
        if k == 0 || k.is_multiple_of(2) {
            return crate::invalid!(
                "kernel size {k} for {}: 'same' padding (k/2) needs an odd kernel size (1, 3, 5, 7, ...)",
                self.kind
            );
        }
        if k > h || k > w {
            return crate::invalid!(
                "kernel size {k} for {} is larger than the feature map {}: allowed is k <= min(h, w) = {}",
                self.kind,
                self.map,
                h.min(w)
            );
        }
        match self.kind {
            OpKind::GConv => {
                let g = self.groups.unwrap_or(0);
                if g == 0 || c % g != 0 {
                    return crate::invalid!(
                        "groups {g} does not divide the {c} channels of {}: allowed are divisors of {c}",
                        self.map
                    );
                }
            }
            OpKind::PConv => {
                let n_div = self.n_div.unwrap_or(0);
                if n_div == 0 || n_div > c {
                    return crate::invalid!(
                        "n_div {n_div} gives c_p = c / n_div = 0 partial channels for {}: allowed is 1 <= n_div <= {c}",
                        self.map
                    );
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Groups of the convolution this operator runs (for PConv: of its partial conv; for a
    /// composite: of its first part).
    pub fn conv_groups(&self) -> usize {
        match self.kind {
            OpKind::GConv | OpKind::GConvPw => self.groups.unwrap_or(1),
            OpKind::DWConv | OpKind::DwPw => self.map.c,
            _ => 1,
        }
    }

    /// Channels the convolution sees: c, or c_p = c / n_div for PConv (and PConv + PWConv's
    /// first part).
    pub fn conv_channels(&self) -> usize {
        match self.kind {
            OpKind::PConv | OpKind::PConvPw | OpKind::FasterNetBlock => {
                pconv::partial_channels(self.map.c, self.n_div.unwrap_or(1))
            }
            OpKind::C2fFaster => c2f::bottleneck(self).conv_channels(),
            _ => self.map.c,
        }
    }

    /// Short human label of the variant, e.g. `3x3 g=16` or `3x3 n_div=4 slicing`.
    pub fn variant(&self) -> String {
        family(self.kind).variant(self)
    }

    /// The label of a single operator.
    fn variant_single(&self) -> String {
        let k = self.kernel;
        match self.kind {
            OpKind::GConv => format!("{k}x{k} g={}", self.conv_groups()),
            OpKind::PConv => format!(
                "{k}x{k} n_div={} {}",
                self.n_div.unwrap_or(1),
                self.forward.unwrap_or(PConvForward::SplitCat)
            ),
            _ => format!("{k}x{k}"),
        }
    }

    /// The cost model of one layer on one image (a composite: the sum of its parts).
    pub fn cost(&self) -> LayerCost {
        family(self.kind).cost(self)
    }

    /// The cost of a single operator: a grouped convolution over its conv channels.
    fn cost_single(&self) -> LayerCost {
        let FeatureMap { h, w, .. } = self.map;
        conv::grouped_conv_cost(self.conv_channels(), h, w, self.kernel, self.conv_groups())
    }

    /// Shape of one layer's weight, (c_out, c_in / groups, k, k).
    pub fn weight_shape(&self) -> [usize; 4] {
        let c = self.conv_channels();
        [c, c / self.conv_groups(), self.kernel, self.kernel]
    }
}

/// One layer's weights as plain data, drawn from a seeded RNG so that every implementation
/// and the naive reference see the same numbers.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl LayerWeights {
    /// Uniform in ±sqrt(3 / fan_in): unit variance in, unit variance out, so ten stacked
    /// layers neither explode nor vanish (matters for f16).
    pub fn random(spec: &OpSpec, rng: &mut impl Rng) -> Self {
        let shape = spec.weight_shape();
        let fan_in = (shape[1] * shape[2] * shape[3]) as f32;
        let bound = (3.0 / fan_in).sqrt();
        let data = uniform(shape.iter().product(), bound, rng);
        Self { shape, data }
    }
}

/// `n` values uniform in [-bound, bound).
pub fn uniform(n: usize, bound: f32, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// A seeded RNG: the one place seeds become random streams.
pub fn seeded_rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Random weights for `layers` stacked layers, each with one set per part (layer-major).
pub fn random_weights(spec: &OpSpec, layers: usize, seed: u64) -> Vec<LayerWeights> {
    let mut rng = seeded_rng(seed);
    let fam = family(spec.kind);
    (0..layers)
        .flat_map(|_| fam.random_weights(spec, &mut rng))
        .collect()
}

/// Builds a tensor of `dtype` on `device` from f32 data.
pub fn tensor_from(
    data: Vec<f32>,
    shape: &[usize],
    device: &Device,
    dtype: Dtype,
) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype.candle()))
        .and_then(|t| t.to_device(device))
        .context(|| format!("building a {dtype} tensor of shape {shape:?} on {device:?}"))
}

/// A runnable operator: `layers` stacked layers of one implementation.
pub struct Stack {
    pub(crate) layers: Vec<Box<dyn Module + Send + Sync>>,
    pub(crate) copies: Copies,
}

impl Stack {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y)?;
        }
        Ok(y)
    }

    /// What this implementation copies beyond the paper's memory model.
    pub fn copies(&self) -> &Copies {
        &self.copies
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }
}

/// Builds the operator `spec` with the given per-layer weights.
pub fn build(
    spec: &OpSpec,
    implementation: Implementation,
    weights: &[LayerWeights],
    device: &Device,
    dtype: Dtype,
) -> Result<Stack> {
    spec.validate()?;
    if let Some(why) = implementation.not_runnable_here() {
        return Err(crate::error::Error::Unsupported(why));
    }
    let on = Target {
        implementation,
        device,
        dtype,
    };
    family(spec.kind).build(spec, weights, &on)
}

/// Builds a single operator or a composite: each layer is the parts in a row, each part a
/// native layer or stock candle ops.
fn build_parts(spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
    let parts = spec.parts();
    // A composite's layer is its parts in a row: the stack runs them in order.
    let layers = weights
        .iter()
        .zip(parts.iter().cycle())
        .map(|(w, part)| {
            let weight = match on.implementation {
                Implementation::Native => None,
                _ => Some(tensor_from(w.data.clone(), &w.shape, on.device, on.dtype)?),
            };
            Ok(part_layer(part, w, weight))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Stack {
        layers,
        copies: parts_copies(spec, on.implementation),
    })
}

/// One part of a single operator or composite: a native layer, or stock candle ops on
/// `weight` (a tensor of `w`, or a variable for training).
fn part_layer(
    part: &OpSpec,
    w: &LayerWeights,
    weight: Option<Tensor>,
) -> Box<dyn Module + Send + Sync> {
    match (weight, part.kind) {
        (None, _) => Box::new(native::Native(native::NativeLayer::new(part, w))),
        (Some(weight), OpKind::PConv) => Box::new(pconv::CandlePConv::new(part, weight)),
        (Some(weight), _) => Box::new(conv::CandleConv::new(part, weight)),
    }
}

/// What the forward of a single operator or composite copies beyond the paper's model.
fn parts_copies(spec: &OpSpec, implementation: Implementation) -> Copies {
    let part_copies = |part: &OpSpec| match (implementation, part.kind) {
        (Implementation::Native, _) => native::copies(part),
        (Implementation::Candle | Implementation::Torch, OpKind::PConv) => {
            pconv::candle_copies(part)
        }
        (Implementation::Candle | Implementation::Torch, _) => Copies::default(),
    };
    spec.parts()
        .iter()
        .map(part_copies)
        .fold(Copies::default(), |a, b| Copies {
            elements_per_image: a.elements_per_image + b.elements_per_image,
            description: [a.description, b.description]
                .into_iter()
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        })
}

/// What an operator family provides. One implementation per family, picked by one match in
/// [`family`]: adding a family is a new file and one line there.
trait Family: Sync {
    fn validate(&self, spec: &OpSpec) -> Result<()>;
    /// Short human label of the variant.
    fn variant(&self, spec: &OpSpec) -> String;
    /// The cost model of one layer on one image.
    fn cost(&self, spec: &OpSpec) -> LayerCost;
    /// One layer's weights.
    fn random_weights(&self, spec: &OpSpec, rng: &mut rand::rngs::StdRng) -> Vec<LayerWeights>;
    /// The runnable stack (weights: `layers` times what `random_weights` gives).
    fn build(&self, spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack>;
    /// The f64 reference of one layer on `n` images from that layer's weights.
    fn reference(&self, spec: &OpSpec, weights: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64>;
    /// Elements of one layer's output for one image: c x h x w unless the family changes the
    /// shape.
    fn output_elements(&self, spec: &OpSpec) -> usize {
        spec.map.elements()
    }
    /// Whether `--impl native` has a CUDA forward for this family (else it runs on CPU only).
    fn native_on_cuda(&self) -> bool {
        true
    }
    /// The input batch verification runs: `n` images uniform in [-1, 1), from the seed.
    fn verification_input(&self, spec: &OpSpec, n: usize, seed: u64) -> Vec<f32> {
        uniform(n * spec.map.elements(), 1.0, &mut seeded_rng(seed ^ 0x5eed))
    }
    /// The training step (`--pass train`), for families that have one.
    fn build_train(
        &self,
        spec: &OpSpec,
        _weights: &[LayerWeights],
        _on: &Target,
    ) -> Result<Box<dyn train::TrainStep>> {
        Err(crate::error::Error::Unsupported(format!(
            "op {} has no training step",
            spec.kind
        )))
    }
    /// Whether [`Family::build_train`] builds one.
    fn trains(&self) -> bool {
        false
    }
    /// The f64 reference of one layer's training step for the loss sum(y ⊙ dy): (output,
    /// d input, d weights in the order of `random_weights`).
    fn reference_step(
        &self,
        spec: &OpSpec,
        weights: &[Vec<f64>],
        x: &[f64],
        dy: &[f64],
        n: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        train::reference_parts(spec, weights, x, dy, n)
    }
    /// How far an implementation's gradients may honestly differ from `reference_step`'s
    /// beyond rounding: ReLU units within `kink` (a fraction of the largest pre-activation) of
    /// their kink may flip; None: not at all.
    fn reference_slack(
        &self,
        _spec: &OpSpec,
        _weights: &[Vec<f64>],
        _x_dy: (&[f64], &[f64]),
        _n: usize,
        _kink: f64,
    ) -> Option<Slack> {
        None
    }
    /// Activations one layer's backward needs kept from its forward, per pixel of one image:
    /// each convolution's input channels (PConv: c_p).
    fn saved_per_pixel(&self, spec: &OpSpec) -> u64 {
        spec.parts().iter().map(|p| p.conv_channels() as u64).sum()
    }
}

/// Conv, GConv, DWConv, PConv, PWConv: one convolution (PConv: on its first c_p channels).
struct Single;
/// PConv + PWConv, DWConv + PWConv, GConv + PWConv: singles in a row.
struct Composite;
/// The FasterNet block (ops/block.rs).
struct Block;
/// YOLO's C2f and C2f_Faster (ops/c2f.rs).
struct C2f;
/// A whole FasterNet classifier (ops/fasternet.rs).
struct FasterNet;

fn family(kind: OpKind) -> &'static dyn Family {
    match kind {
        OpKind::Conv | OpKind::GConv | OpKind::DWConv | OpKind::PConv | OpKind::PWConv => &Single,
        OpKind::PConvPw | OpKind::DwPw | OpKind::GConvPw => &Composite,
        OpKind::FasterNetBlock => &Block,
        OpKind::C2f | OpKind::C2fFaster => &C2f,
        OpKind::FasterNet => &FasterNet,
    }
}

impl Family for Single {
    fn trains(&self) -> bool {
        true
    }
    fn build_train(
        &self,
        spec: &OpSpec,
        weights: &[LayerWeights],
        on: &Target,
    ) -> Result<Box<dyn train::TrainStep>> {
        train::build_parts(spec, weights, on)
    }
    fn validate(&self, spec: &OpSpec) -> Result<()> {
        spec.validate_single()
    }
    fn variant(&self, spec: &OpSpec) -> String {
        spec.variant_single()
    }
    fn cost(&self, spec: &OpSpec) -> LayerCost {
        spec.cost_single()
    }
    fn random_weights(&self, spec: &OpSpec, rng: &mut rand::rngs::StdRng) -> Vec<LayerWeights> {
        vec![LayerWeights::random(spec, rng)]
    }
    fn build(&self, spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
        build_parts(spec, weights, on)
    }
    fn reference(&self, spec: &OpSpec, weights: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
        reference::reference_forward(spec, &weights[0], x, n)
    }
}

impl Family for Composite {
    fn trains(&self) -> bool {
        true
    }
    fn build_train(
        &self,
        spec: &OpSpec,
        weights: &[LayerWeights],
        on: &Target,
    ) -> Result<Box<dyn train::TrainStep>> {
        train::build_parts(spec, weights, on)
    }
    fn validate(&self, spec: &OpSpec) -> Result<()> {
        spec.parts().iter().try_for_each(OpSpec::validate_single)
    }
    fn variant(&self, spec: &OpSpec) -> String {
        let labels: Vec<String> = spec.parts().iter().map(OpSpec::variant_single).collect();
        labels.join(" + ")
    }
    fn cost(&self, spec: &OpSpec) -> LayerCost {
        spec.parts()
            .iter()
            .map(OpSpec::cost_single)
            .fold(LayerCost::default(), |a, b| LayerCost {
                macs: a.macs + b.macs,
                activation_elements: a.activation_elements + b.activation_elements,
                weight_elements: a.weight_elements + b.weight_elements,
            })
    }
    fn random_weights(&self, spec: &OpSpec, rng: &mut rand::rngs::StdRng) -> Vec<LayerWeights> {
        spec.parts()
            .iter()
            .map(|p| LayerWeights::random(p, rng))
            .collect()
    }
    fn build(&self, spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
        build_parts(spec, weights, on)
    }
    fn reference(&self, spec: &OpSpec, weights: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
        spec.parts()
            .iter()
            .zip(weights)
            .fold(x.to_vec(), |cur, (part, w)| {
                reference::reference_forward(part, w, &cur, n)
            })
    }
}

/// A family whose functions live in one module of the same name (validate, variant, cost,
/// random_weights, build, reference), plus any methods it overrides.
macro_rules! family_in_module {
    ($family:ident, $module:ident $(, $($override:tt)*)?) => {
        impl Family for $family {
            fn validate(&self, spec: &OpSpec) -> Result<()> {
                $module::validate(spec)
            }
            fn variant(&self, spec: &OpSpec) -> String {
                $module::variant(spec)
            }
            fn cost(&self, spec: &OpSpec) -> LayerCost {
                $module::cost(spec)
            }
            fn random_weights(
                &self,
                spec: &OpSpec,
                rng: &mut rand::rngs::StdRng,
            ) -> Vec<LayerWeights> {
                $module::random_weights(spec, rng)
            }
            fn build(&self, spec: &OpSpec, weights: &[LayerWeights], on: &Target) -> Result<Stack> {
                $module::build(spec, weights, on)
            }
            fn reference(
                &self,
                spec: &OpSpec,
                weights: &[Vec<f64>],
                x: &[f64],
                n: usize,
            ) -> Vec<f64> {
                $module::reference(spec, weights, x, n)
            }
            $($($override)*)?
        }
    };
}

family_in_module! {
    Block,
    block,
    fn native_on_cuda(&self) -> bool {
        false
    }
    fn trains(&self) -> bool {
        true
    }
    fn build_train(
        &self,
        spec: &OpSpec,
        weights: &[LayerWeights],
        on: &Target,
    ) -> Result<Box<dyn train::TrainStep>> {
        block::build_train(spec, weights, on)
    }
    fn reference_step(
        &self,
        spec: &OpSpec,
        weights: &[Vec<f64>],
        x: &[f64],
        dy: &[f64],
        n: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        block::reference_step(spec, weights, x, dy, n)
    }
    fn reference_slack(
        &self,
        spec: &OpSpec,
        weights: &[Vec<f64>],
        x_dy: (&[f64], &[f64]),
        n: usize,
        kink: f64,
    ) -> Option<Slack> {
        block::reference_slack(spec, weights, x_dy, n, kink)
    }
    fn saved_per_pixel(&self, spec: &OpSpec) -> u64 {
        block::saved_per_pixel(spec)
    }
}
family_in_module! {
    C2f,
    c2f,
    fn native_on_cuda(&self) -> bool {
        false
    }
    fn trains(&self) -> bool {
        true
    }
    fn build_train(
        &self,
        spec: &OpSpec,
        weights: &[LayerWeights],
        on: &Target,
    ) -> Result<Box<dyn train::TrainStep>> {
        c2f::build_train(spec, weights, on)
    }
    fn reference_step(
        &self,
        spec: &OpSpec,
        weights: &[Vec<f64>],
        x: &[f64],
        dy: &[f64],
        n: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
        c2f::reference_step(spec, weights, x, dy, n)
    }
    fn saved_per_pixel(&self, spec: &OpSpec) -> u64 {
        c2f::saved_per_pixel(spec)
    }
}
family_in_module! {
    FasterNet,
    fasternet,
    fn native_on_cuda(&self) -> bool {
        false
    }
    fn output_elements(&self, _: &OpSpec) -> usize {
        fasternet::CLASSES
    }
    fn verification_input(&self, spec: &OpSpec, n: usize, seed: u64) -> Vec<f32> {
        // The network is verified on the images it is timed on.
        timed_input(spec, n, seed)
    }
}

/// Whether `kind` has a training step (`--pass train`).
pub fn trains(kind: OpKind) -> bool {
    family(kind).trains()
}

/// The f64 reference of one layer's training step of `spec` for the loss sum(y ⊙ dy):
/// (output, d input, d weights).
pub fn reference_step(
    spec: &OpSpec,
    weights: &[Vec<f64>],
    x: &[f64],
    dy: &[f64],
    n: usize,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    family(spec.kind).reference_step(spec, weights, x, dy, n)
}

/// What an implementation's training-step gradients may honestly differ from the f64
/// reference's by, beyond rounding, element by element.
#[derive(Debug, Clone)]
pub struct Slack {
    /// ReLU units within rounding of the kink, whose derivative may go either way.
    pub units: usize,
    /// Per element of the input gradient.
    pub input: Vec<f64>,
    /// Per element of each weight set's gradient.
    pub weights: Vec<Vec<f64>>,
}

/// How far an implementation's gradients of one layer of `spec` may honestly differ from
/// [`reference_step`]'s beyond rounding: ReLU units within `kink` (a fraction of the largest
/// pre-activation) of their kink may flip; None: not at all.
pub fn reference_slack(
    spec: &OpSpec,
    weights: &[Vec<f64>],
    x_dy: (&[f64], &[f64]),
    n: usize,
    kink: f64,
) -> Option<Slack> {
    family(spec.kind).reference_slack(spec, weights, x_dy, n, kink)
}

/// Activations one layer of `spec`'s backward keeps from its forward, per pixel of an image.
pub fn saved_per_pixel(spec: &OpSpec) -> u64 {
    family(spec.kind).saved_per_pixel(spec)
}

/// Builds the training step of `spec` with the given per-layer weights.
pub fn build_train(
    spec: &OpSpec,
    implementation: Implementation,
    weights: &[LayerWeights],
    device: &Device,
    dtype: Dtype,
) -> Result<Box<dyn train::TrainStep>> {
    spec.validate()?;
    if let Some(why) = implementation.not_runnable_here() {
        return Err(crate::error::Error::Unsupported(why));
    }
    if !crate::plan::runs(spec, Pass::Train) {
        return Err(crate::error::Error::Invalid(format!(
            "{} {}: the slicing forward is inference-only (FasterNet's code says so: it overwrites in place the input its conv's weight gradient needs); train split_cat",
            spec.kind,
            spec.variant()
        )));
    }
    if implementation == Implementation::Native && device.is_cuda() {
        return Err(train::native_on_cuda("cuda"));
    }
    let on = Target {
        implementation,
        device,
        dtype,
    };
    family(spec.kind).build_train(spec, weights, &on)
}

/// Whether `--impl native` runs `kind` on CUDA (blocks and networks run natively on CPU only).
pub fn native_on_cuda(kind: OpKind) -> bool {
    family(kind).native_on_cuda()
}

/// The input batch a point is timed on: `n` images of `spec`'s shape uniform in [-1, 1),
/// from the seed (a FasterNet also verifies on it).
pub fn timed_input(spec: &OpSpec, n: usize, seed: u64) -> Vec<f32> {
    uniform(n * spec.map.elements(), 1.0, &mut seeded_rng(seed ^ 0x1a7e))
}

/// Elements of one layer's output for one image (a FasterNet's: its logits).
pub fn output_elements(spec: &OpSpec) -> usize {
    family(spec.kind).output_elements(spec)
}

/// The input batch verification runs for `spec`.
pub fn verification_input(spec: &OpSpec, n: usize, seed: u64) -> Vec<f32> {
    family(spec.kind).verification_input(spec, n, seed)
}

/// Where and how a stack is built.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub implementation: Implementation,
    pub device: &'a Device,
    pub dtype: Dtype,
}

/// A convolution's weight and the bias its folded BN leaves, by name.
#[derive(Debug, Clone, Copy)]
pub struct ConvBias<T> {
    pub weight: T,
    pub bias: T,
}

/// The f64 reference of one layer of `spec` on `n` images, from that layer's weights (each
/// set widened, and rounded to the dtype under test by the caller).
pub fn reference_layer(spec: &OpSpec, weights: &[Vec<f64>], x: &[f64], n: usize) -> Vec<f64> {
    family(spec.kind).reference(spec, weights, x, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: OpKind, c: usize, h: usize, w: usize) -> OpSpec {
        OpSpec {
            kind,
            kernel: if kind == OpKind::PWConv { 1 } else { 3 },
            groups: (kind == OpKind::GConv).then_some(16),
            n_div: (kind == OpKind::PConv).then_some(4),
            forward: (kind == OpKind::PConv).then_some(PConvForward::SplitCat),
            expansion: None,
            act: None,
            bottlenecks: None,
            model: None,
            map: FeatureMap { c, h, w },
        }
    }

    const TABLE1_MAPS: [(usize, usize); 4] = [(96, 56), (192, 28), (384, 14), (768, 7)];

    /// MACs of 10 stacked layers on one image, as Table 1 counts them.
    fn table1_macs(kind: OpKind, c: usize, hw: usize) -> u64 {
        spec(kind, c, hw, hw).cost().macs * 10
    }

    #[test]
    fn cost_model_reproduces_table1_flops_exactly() {
        // docs/paper.md: Conv 2601.12 M; GConv(16) and PConv(1/4) 162.57 M at every size;
        // DWConv 27.095 / 13.548 / 6.774 / 3.387 M.
        for (c, hw) in TABLE1_MAPS {
            assert_eq!(table1_macs(OpKind::Conv, c, hw), 2_601_123_840);
            assert_eq!(table1_macs(OpKind::GConv, c, hw), 162_570_240);
            assert_eq!(table1_macs(OpKind::PConv, c, hw), 162_570_240);
        }
        let dw: Vec<u64> = TABLE1_MAPS
            .iter()
            .map(|&(c, hw)| table1_macs(OpKind::DWConv, c, hw))
            .collect();
        assert_eq!(dw, vec![27_095_040, 13_547_520, 6_773_760, 3_386_880]);
    }

    #[test]
    fn memory_model_follows_the_paper_formulas() {
        // Conv: h·w·2c + k²·c²
        let conv = spec(OpKind::Conv, 96, 56, 56).cost();
        assert_eq!(conv.memory_elements(), 56 * 56 * 2 * 96 + 9 * 96 * 96);
        // DWConv: h·w·2c + k²·c
        let dw = spec(OpKind::DWConv, 96, 56, 56).cost();
        assert_eq!(dw.memory_elements(), 56 * 56 * 2 * 96 + 9 * 96);
        // PConv r = 1/4: h·w·2c_p + k²·c_p²
        let pc = spec(OpKind::PConv, 96, 56, 56).cost();
        assert_eq!(pc.memory_elements(), 56 * 56 * 2 * 24 + 9 * 24 * 24);
        // PWConv: h·w·2c + c²
        let pw = spec(OpKind::PWConv, 96, 56, 56).cost();
        assert_eq!(pw.memory_elements(), 56 * 56 * 2 * 96 + 96 * 96);
        assert_eq!(pw.macs, 56 * 56 * 96 * 96);
        // GConv g=16: h·w·2c + k²·c²/g
        let g = spec(OpKind::GConv, 96, 56, 56).cost();
        assert_eq!(g.memory_elements(), 56 * 56 * 2 * 96 + 9 * 96 * 96 / 16);
    }

    #[test]
    fn pconv_has_r_squared_of_conv_flops_and_about_r_of_its_memory() {
        let conv = spec(OpKind::Conv, 192, 28, 28).cost();
        let pc = spec(OpKind::PConv, 192, 28, 28).cost();
        assert_eq!(conv.macs, 16 * pc.macs);
        let ratio = pc.memory_elements() as f64 / conv.memory_elements() as f64;
        assert!(ratio > 0.06 && ratio < 0.25, "ratio {ratio}");
    }

    #[test]
    fn composites_cost_the_sum_of_their_parts() {
        let pconv = spec(OpKind::PConv, 96, 56, 56).cost();
        let pw = spec(OpKind::PWConv, 96, 56, 56).cost();
        let mut both = spec(OpKind::PConv, 96, 56, 56);
        both.kind = OpKind::PConvPw;
        let c = both.cost();
        assert_eq!(c.macs, pconv.macs + pw.macs);
        // Eq. 7: h·w·(k²·c_p² + c²)
        assert_eq!(c.macs, 56 * 56 * (9 * 24 * 24 + 96 * 96));
        assert_eq!(
            c.memory_elements(),
            pconv.memory_elements() + pw.memory_elements()
        );
        assert_eq!(both.parts()[1].kind, OpKind::PWConv);
    }

    #[test]
    fn partial_channels_use_integer_division() {
        let mut s = spec(OpKind::PConv, 10, 8, 8);
        s.n_div = Some(4);
        assert_eq!(s.conv_channels(), 2);
        s.n_div = Some(11);
        assert!(s.validate().is_err());
        s.n_div = Some(0);
        assert!(s.validate().is_err());
    }

    #[test]
    fn validation_rejects_bad_groups_and_kernels() {
        let mut g = spec(OpKind::GConv, 96, 8, 8);
        g.groups = Some(5);
        let msg = g.validate().unwrap_err().to_string();
        assert!(msg.contains("groups 5") && msg.contains("96"), "{msg}");
        let mut k = spec(OpKind::PConv, 96, 8, 8);
        k.kernel = 4;
        assert!(k.validate().unwrap_err().to_string().contains("odd"));
        k.kernel = 9;
        assert!(k.validate().unwrap_err().to_string().contains("larger"));
    }
}
