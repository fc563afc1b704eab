//! The measured data model: one [`Record`] per measured point, one [`RunResult`] per file.
//! This is the versioned JSON schema documented in README.md ("JSON results").

use serde::{Deserialize, Serialize};

use crate::config::{PaperReference, Suite};
use crate::measure::Summary;
use crate::metadata::{DeviceInfo, ToolInfo};
use crate::ops::fasternet::NetworkInfo;
use crate::ops::{Copies, Dtype, FeatureMap, Implementation, OpKind, OpSpec, Pass};
use crate::plan::Point;
use crate::verify::Verification;

/// Bumped on any change that breaks readers of older files.
pub const SCHEMA_VERSION: u32 = 1;

/// The analytic cost of one timed run (the whole stack, the whole batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    /// Multiply-adds of one layer on one image (the paper's "FLOPs").
    pub macs_per_image_layer: u64,
    /// Multiply-adds of one run: all layers, all images.
    pub macs: u64,
    /// FLOP of one run: 2 x macs (an FMA counts as two).
    pub flop: u64,
    /// The paper's memory access of one run, in elements: per layer,
    /// batch x (activations) + weights (weights are read once per batch).
    pub memory_elements: u64,
    /// memory_elements x dtype size.
    pub memory_bytes: u64,
    /// Elements this implementation copies beyond the paper's model (reads plus writes).
    pub copy_elements: u64,
    pub copy_bytes: u64,
    /// What was copied, in words ("" when nothing).
    pub copies: String,
    /// Weights of all layers (no bias).
    pub params: u64,
    /// flop / memory_bytes (paper model, copies excluded).
    pub arithmetic_intensity_flop_per_byte: f64,
    /// Training steps only (`pass: train`): the forward's and the backward's shares of
    /// `macs`, and the activations the backward needs kept from the forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainCost>,
}

/// What a training step adds to the forward, for one run (all layers, all images).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainCost {
    /// Multiply-adds of the forward.
    pub forward_macs: u64,
    /// Multiply-adds of the backward: twice the forward's (input and weight gradients).
    pub backward_macs: u64,
    /// Activations kept from the forward for the backward (each convolution's input;
    /// PConv's first c_p channels), elements and bytes.
    pub saved_activation_elements: u64,
    pub saved_activation_bytes: u64,
}

impl CostRecord {
    /// The cost of one timed run of `pass`: a training step counts its forward and backward
    /// (the cost model of `ops::train::step_cost`).
    pub fn new(
        spec: &OpSpec,
        copies: &Copies,
        (batch, layers): (usize, usize),
        dtype: Dtype,
        pass: Pass,
    ) -> Self {
        let (b, l, size) = (batch as u64, layers as u64, dtype.size_bytes());
        let forward = spec.cost();
        let (c, train) = match pass {
            Pass::Infer => (forward, None),
            Pass::Train => {
                let s = crate::ops::train::step_cost(spec);
                let saved = s.saved_activation_elements * b * l;
                let both = crate::ops::LayerCost {
                    macs: s.forward.macs + s.backward.macs,
                    activation_elements: s.forward.activation_elements
                        + s.backward.activation_elements,
                    weight_elements: s.forward.weight_elements + s.backward.weight_elements,
                };
                let train = TrainCost {
                    forward_macs: s.forward.macs * b * l,
                    backward_macs: s.backward.macs * b * l,
                    saved_activation_elements: saved,
                    saved_activation_bytes: saved * size,
                };
                (both, Some(train))
            }
        };
        let macs = c.macs * b * l;
        let memory_elements = (c.activation_elements * b + c.weight_elements) * l;
        let copy_elements = copies.elements_per_image * b * l;
        Self {
            macs_per_image_layer: c.macs,
            macs,
            flop: 2 * macs,
            memory_elements,
            memory_bytes: memory_elements * size,
            copy_elements,
            copy_bytes: copy_elements * size,
            copies: copies.description.clone(),
            params: forward.weight_elements * l,
            arithmetic_intensity_flop_per_byte: (2 * macs) as f64 / (memory_elements * size) as f64,
            train,
        }
    }
}

/// Rates derived from the median latency and the cost model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Median latency of one run (whole batch, all layers), ms.
    pub latency_ms: f64,
    /// Images per second.
    pub throughput_img_per_s: f64,
    /// Billions of multiply-adds per second: the paper's "FLOPS".
    pub gmac_per_s: f64,
    /// Billions of FLOP per second (2 x gmac_per_s).
    pub gflop_per_s: f64,
    /// Paper-model bytes / latency, GB/s (10^9 bytes).
    pub gb_per_s: f64,
    /// (Paper-model + copied) bytes / latency, GB/s.
    pub gb_per_s_with_copies: f64,
}

impl Rates {
    pub fn new(cost: &CostRecord, latency_ms: f64, batch: usize) -> Self {
        let s = latency_ms / 1e3;
        Self {
            latency_ms,
            throughput_img_per_s: batch as f64 / s,
            gmac_per_s: cost.macs as f64 / s / 1e9,
            gflop_per_s: cost.flop as f64 / s / 1e9,
            gb_per_s: cost.memory_bytes as f64 / s / 1e9,
            gb_per_s_with_copies: (cost.memory_bytes + cost.copy_bytes) as f64 / s / 1e9,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    pub runs: usize,
    pub time_s: f64,
}

/// One measured point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What was measured: `op`, `kernel`, `groups`, `n_div`, `forward`, `expansion`, `act`,
    /// `bottlenecks`, `model`, `shape` (each only where it applies), inline in the record.
    #[serde(flatten)]
    pub spec: OpSpec,
    /// Human label: kernel, groups or n_div and forward.
    pub variant: String,
    /// c_p = c / n_div (PConv only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_channels: Option<usize>,
    /// FasterNet classifier only: its architecture and its cost as the paper counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkInfo>,
    pub batch: usize,
    pub layers: usize,
    pub implementation: Implementation,
    pub dtype: Dtype,
    /// `cpu` or `cuda:N`.
    pub device: String,
    pub threads: usize,
    /// `infer` (the forward) or `train` (forward, loss, backward); files from before passes
    /// existed mean `infer`.
    #[serde(default)]
    pub pass: Pass,
    pub cost: CostRecord,
    /// The kernels the timed runs took (`blocked_oc`, `blocked_px`, `direct`, `im2col_gemm`,
    /// `gemm`, `candle`; several
    /// joined with `+` in first-use order). Always equal to `verification.kernel_path`.
    #[serde(default)]
    pub kernel_path: String,
    pub verification: Verification,
    pub warmup: Warmup,
    pub stats: Summary,
    pub rates: Rates,
    /// The paper's Table 1 row for this operator and shape, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paper: Option<PaperReference>,
    /// Training steps on the CPU: the most heap bytes one step held at once beyond what was
    /// live before it (saved activations, gradients, workspaces), counted by a counting
    /// allocator around one untimed step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_step_bytes: Option<u64>,
    /// Every timed run, ms, in order.
    pub samples_ms: Vec<f64>,
    /// Position under the device's roofline, when a profile was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roofline: Option<crate::roofline::Roofline>,
    /// Samples each repetition (`run --repeat`) contributed, in order; they add up to
    /// samples_ms.len(). `compare` resamples whole repetitions first.
    #[serde(default)]
    pub repetitions: Vec<usize>,
}

impl Record {
    /// The point this record measured.
    pub fn point(&self) -> Point {
        Point {
            spec: self.spec.clone(),
            implementation: self.implementation,
            dtype: self.dtype,
            batch: self.batch,
            threads: self.threads,
            pass: self.pass,
        }
    }
}

/// A point that could not be measured (it failed verification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub op: OpKind,
    pub variant: String,
    pub shape: FeatureMap,
    pub implementation: Implementation,
    pub dtype: Dtype,
    #[serde(default)]
    pub pass: Pass,
    pub error: String,
}

/// Which command wrote a results file (it decides the table's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Run,
    Sweep,
    Model,
}

/// A results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub schema_version: u32,
    /// `run`, `sweep` or `model`.
    #[serde(default)]
    pub mode: Mode,
    pub tool: ToolInfo,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The command line that produced this file.
    pub command: Vec<String>,
    /// False when the run was interrupted before every point was measured.
    pub complete: bool,
    pub device: DeviceInfo,
    /// The resolved suite (config file plus command-line overrides).
    pub config: Suite,
    /// Where the suite came from.
    pub config_source: String,
    pub records: Vec<Record>,
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// The device profile the roofline positions were computed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::roofline::Profile>,
    /// The answer per shape: PConv against DWConv, GConv and Conv, with intervals
    /// (`answer::Verdicts`); absent when no PConv ran beside a rival.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<crate::answer::Verdicts>,
}

/// Finds the paper's row for a spec: same op, kernel, groups / n_div and shape, 10 layers.
pub fn paper_row<'a>(
    refs: &'a [PaperReference],
    spec: &OpSpec,
    layers: usize,
) -> Option<&'a PaperReference> {
    if layers != 10 {
        return None;
    }
    refs.iter().find(|r| {
        r.op == spec.kind
            && r.kernel == spec.kernel
            && r.shape == spec.map
            && (spec.kind != OpKind::GConv || r.groups == spec.groups)
            && (spec.kind != OpKind::PConv || r.n_div == spec.n_div)
    })
}
