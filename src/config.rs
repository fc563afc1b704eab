//! Suite files (`configs/*.toml`): loading, validation (errors name file and line) and the
//! command-line overrides layered on top.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::ops::{Act, Dtype, FeatureMap, Implementation, Network, OpKind, PConvForward, Pass};

/// The built-in default suite of `run`: `configs/table1.toml`, compiled in so it works
/// from any folder.
pub const TABLE1: (&str, &str) = (
    "configs/table1.toml",
    include_str!("../configs/table1.toml"),
);

/// The built-in default suite of `sweep`.
/// The default suite of `run --device cuda`: Table 1 at the paper's GPU batch of 32.
pub const TABLE1_CUDA: (&str, &str) = (
    "configs/table1-cuda.toml",
    include_str!("../configs/table1-cuda.toml"),
);
pub const SWEEP: (&str, &str) = ("configs/sweep.toml", include_str!("../configs/sweep.toml"));

/// Where the operators run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(0) => f.write_str("cuda"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device '{other}': allowed are cpu, cuda, cuda:N")),
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A resolved suite: every list the benchmark expands (see `plan`), plus the budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    pub device: DeviceSpec,
    pub ops: Vec<OpKind>,
    pub shapes: Vec<FeatureMap>,
    /// Kernel sizes (PWConv is always 1x1).
    pub kernel: Vec<usize>,
    /// GConv group counts.
    pub groups: Vec<usize>,
    /// PConv partial-ratio divisors (r = 1 / n_div).
    pub n_div: Vec<usize>,
    pub pconv_forward: Vec<PConvForward>,
    /// FasterNet block: expansion ratios of its MLP (hidden width e·c).
    #[serde(default = "default_expansion")]
    pub expansion: Vec<usize>,
    /// FasterNet block: activations.
    #[serde(default = "default_act")]
    pub act: Vec<Act>,
    /// C2f / C2f_Faster: bottleneck counts n.
    #[serde(default = "default_bottlenecks")]
    pub bottlenecks: Vec<usize>,
    /// `fasternet`: the networks (each on the suite's 3xRxR shapes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Network>,
    pub batch: Vec<usize>,
    pub threads: Vec<usize>,
    /// Stacked layers per operator (the paper uses 10).
    pub layers: usize,
    pub dtype: Vec<Dtype>,
    #[serde(rename = "impl")]
    pub implementations: Vec<Implementation>,
    /// What each timed run does: `infer` (the forward) and/or `train` (forward, loss,
    /// backward).
    #[serde(default = "default_pass", skip_serializing_if = "is_infer_only")]
    pub pass: Vec<Pass>,
    pub warmup_time_s: f64,
    pub measure_time_s: f64,
    /// Stop sampling a point once the 95 % interval of its median is within this fraction of
    /// it (at least 20 samples; measure_time_s stays the cap). None: sample the whole time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Seed of weights and inputs.
    pub seed: u64,
    /// CUDA: let f32 GEMMs use TF32 tensor cores (candle's reduced-precision flag).
    #[serde(default)]
    pub tf32: bool,
    /// Thread counts above the machine's logical CPUs were allowed (`--oversubscribe`).
    #[serde(default)]
    pub oversubscribe: bool,
}

fn default_pass() -> Vec<Pass> {
    vec![Pass::Infer]
}

fn is_infer_only(p: &[Pass]) -> bool {
    p == [Pass::Infer]
}

fn default_expansion() -> Vec<usize> {
    vec![crate::ops::block::DEFAULT_EXPANSION]
}

fn default_act() -> Vec<Act> {
    vec![Act::Relu]
}

fn default_bottlenecks() -> Vec<usize> {
    vec![1]
}

/// One row of the paper's Table 1, printed beside the matching measured record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperReference {
    pub op: OpKind,
    pub kernel: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_div: Option<usize>,
    pub shape: FeatureMap,
    /// The paper's FLOPs column: multiply-adds of the 10 layers, in millions.
    pub macs_m: f64,
    pub gpu_fps: f64,
    pub gpu_gmacs: f64,
    pub cpu_ms: f64,
    pub cpu_gmacs: f64,
    pub arm_ms: f64,
    pub arm_gmacs: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    suite: Suite,
    #[serde(default)]
    reference: Vec<PaperReference>,
}

/// A suite and the paper references that came with it.
#[derive(Debug, Clone)]
pub struct LoadedSuite {
    pub suite: Suite,
    pub references: Vec<PaperReference>,
    /// Where it came from (for messages and metadata).
    pub source: String,
}

/// A validation failure: which key, and why (the message names the value and what is allowed).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: String) -> Invalid {
    Invalid { key, message }
}

/// Lists must be non-empty and free of duplicates.
pub fn check_list<T: PartialEq + fmt::Display>(
    key: &'static str,
    list: &[T],
) -> Result<(), Invalid> {
    if list.is_empty() {
        return Err(invalid(
            key,
            format!("{key} is empty: give at least one value"),
        ));
    }
    for (i, v) in list.iter().enumerate() {
        if list[..i].contains(v) {
            return Err(invalid(
                key,
                format!("{key} lists '{v}' twice: give each value once"),
            ));
        }
    }
    Ok(())
}

fn check_positive(key: &'static str, values: &[usize]) -> Result<(), Invalid> {
    match values.iter().find(|&&v| v == 0) {
        Some(_) => Err(invalid(
            key,
            format!("{key} 0 is not allowed: give a positive integer"),
        )),
        None => Ok(()),
    }
}

impl Suite {
    /// Checks every value and every combination the suite will expand to.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_list("ops", &self.ops)?;
        check_list("shapes", &self.shapes)?;
        check_list("kernel", &self.kernel)?;
        check_list("groups", &self.groups)?;
        check_list("n_div", &self.n_div)?;
        check_list("pconv_forward", &self.pconv_forward)?;
        check_list("expansion", &self.expansion)?;
        check_list("act", &self.act)?;
        check_positive("expansion", &self.expansion)?;
        check_list("bottlenecks", &self.bottlenecks)?;
        check_positive("bottlenecks", &self.bottlenecks)?;
        check_list("batch", &self.batch)?;
        check_list("threads", &self.threads)?;
        check_list("dtype", &self.dtype)?;
        check_list("impl", &self.implementations)?;
        check_list("pass", &self.pass)?;
        check_positive("batch", &self.batch)?;
        check_positive("threads", &self.threads)?;
        check_positive("layers", &[self.layers])?;
        check_positive("groups", &self.groups)?;
        check_positive("n_div", &self.n_div)?;
        if let Some(&k) = self.kernel.iter().find(|&&k| k == 0 || k.is_multiple_of(2)) {
            return Err(invalid(
                "kernel",
                format!("kernel size {k}: 'same' padding (k/2) needs an odd kernel size (1, 3, 5, 7, ...)"),
            ));
        }
        for (key, v) in [
            ("warmup_time_s", self.warmup_time_s),
            ("measure_time_s", self.measure_time_s),
        ] {
            // 0 is allowed: the minimum run counts (3 warm-up, 10 samples) still apply.
            if !(v.is_finite() && (0.0..=3600.0).contains(&v)) {
                return Err(invalid(
                    key,
                    format!("{key} {v}: allowed are seconds with 0 <= s <= 3600"),
                ));
            }
        }
        if let Some(p) = self.precision {
            if !(p.is_finite() && p > 0.0 && p <= 0.5) {
                return Err(invalid(
                    "precision",
                    format!("precision {p}: allowed is a fraction 0 < p <= 0.5 (0.01 is 1 %)"),
                ));
            }
        }
        let uses = |k: OpKind| self.ops.contains(&k);
        if self.pass.contains(&Pass::Train) {
            if let Some(op) = self.ops.iter().find(|&&o| !crate::ops::trains(o)) {
                let allowed: Vec<&str> = OpKind::ALL
                    .iter()
                    .filter(|&&o| crate::ops::trains(o))
                    .map(|o| o.as_str())
                    .collect();
                return Err(invalid(
                    "pass",
                    format!(
                        "pass train for op {op}: it has no training step; allowed with train are {}",
                        allowed.join(", ")
                    ),
                ));
            }
            let partial = self.ops.iter().any(|&o| crate::plan::has_pconv_forward(o));
            if partial && !self.pconv_forward.contains(&PConvForward::SplitCat) {
                return Err(invalid(
                    "pass",
                    "pass train with pconv forward slicing: FasterNet's code marks slicing inference-only (it overwrites, in place, the input its conv's weight gradient needs, which autograd refuses); allowed with train is split_cat".to_string(),
                ));
            }
        }
        if uses(OpKind::FasterNet) {
            if self.models.is_empty() {
                return Err(invalid(
                    "models",
                    format!(
                        "op fasternet needs models: give --models (or models = [...]) from {}, or run `pconv-bench model`",
                        Network::allowed()
                    ),
                ));
            }
            check_list("models", &self.models)?;
            if self.layers != 1 {
                return Err(invalid(
                    "layers",
                    format!(
                        "layers {} with op fasternet: a network runs once per forward, allowed is 1",
                        self.layers
                    ),
                ));
            }
        }
        for map in &self.shapes {
            let kernels = self
                .kernel
                .iter()
                .filter(|_| self.ops.iter().any(|&o| o != OpKind::PWConv));
            if let Some(k) = kernels.filter(|&&k| k > map.h || k > map.w).max() {
                return Err(invalid(
                    "kernel",
                    format!(
                        "kernel size {k} is larger than the feature map {map}: allowed is k <= {}",
                        map.h.min(map.w)
                    ),
                ));
            }
            if uses(OpKind::GConv) || uses(OpKind::GConvPw) {
                if let Some(g) = self.groups.iter().find(|&&g| map.c % g != 0) {
                    return Err(invalid(
                        "groups",
                        format!("groups {g} does not divide the {} channels of shape {map}: allowed are divisors of {}", map.c, map.c),
                    ));
                }
            }
            if uses(OpKind::PConv)
                || uses(OpKind::PConvPw)
                || uses(OpKind::FasterNetBlock)
                || uses(OpKind::C2fFaster)
            {
                if let Some(n) = self.n_div.iter().find(|&&n| n > map.c) {
                    return Err(invalid(
                        "n_div",
                        format!("n_div {n} gives c_p = c / n_div = 0 for shape {map}: allowed is 1 <= n_div <= {}", map.c),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// 1-based line of byte offset `pos` in `src`.
fn line_at(src: &str, pos: usize) -> usize {
    src[..pos.min(src.len())].matches('\n').count() + 1
}

/// 1-based line where `key = ...` is set in `src` (1 when it is not found).
fn line_of_key(src: &str, key: &str) -> usize {
    src.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// Parses and validates suite text; `name` is used in error messages.
pub fn parse(name: &str, src: &str) -> Result<LoadedSuite> {
    let config_err = |line, message: String| Error::Config {
        path: PathBuf::from(name),
        line,
        message,
    };
    let file: SuiteFile = toml::from_str(src).map_err(|e| {
        let line = e.span().map_or(1, |s| line_at(src, s.start));
        config_err(line, e.message().replace('\n', " "))
    })?;
    file.suite
        .validate()
        .map_err(|e| config_err(line_of_key(src, e.key), e.message))?;
    let references = if file.reference.is_empty() && src != TABLE1.1 {
        builtin_references()
    } else {
        file.reference
    };
    Ok(LoadedSuite {
        suite: file.suite,
        references,
        source: name.to_string(),
    })
}

/// The paper's Table 1, from the built-in `configs/table1.toml`.
pub fn builtin_references() -> Vec<PaperReference> {
    parse(TABLE1.0, TABLE1.1)
        .map(|l| l.references)
        .unwrap_or_default()
}

/// Loads a suite file, or the built-in Table 1 suite when `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<LoadedSuite> {
    load_or(path, TABLE1)
}

/// Loads a suite file, or the built-in `(name, text)` suite when `path` is `None`.
pub fn load_or(path: Option<&Path>, builtin: (&str, &str)) -> Result<LoadedSuite> {
    let Some(path) = path else {
        return parse(builtin.0, builtin.1);
    };
    let src = std::fs::read_to_string(path).map_err(|e| Error::Config {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read config file: {e}"),
    })?;
    parse(&path.display().to_string(), &src)
}

/// Command-line values that replace the suite file's, one flag per key (`run` and `sweep`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Device: cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// Operators: conv, gconv, dwconv, pconv, pwconv; composites pconv_pw, dw_pw, gconv_pw;
    /// blocks fasternet_block, c2f, c2f_faster; whole networks fasternet (with --models).
    #[arg(long, value_delimiter = ',')]
    pub ops: Option<Vec<OpKind>>,
    /// Feature maps CxHxW, e.g. 96x56x56,192x28x28.
    #[arg(long, value_delimiter = ',', value_name = "CxHxW")]
    pub shapes: Option<Vec<FeatureMap>>,
    /// Kernel sizes (odd), e.g. 3 or 3,5,7. PWConv is always 1x1.
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub kernel: Option<Vec<usize>>,
    /// PConv partial-ratio divisors: c_p = c / n_div.
    #[arg(long = "n-div", value_delimiter = ',', value_parser = crate::cli::positive)]
    pub n_div: Option<Vec<usize>>,
    /// GConv group counts (must divide the channels).
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub groups: Option<Vec<usize>>,
    /// PConv forwards: slicing, split_cat.
    #[arg(long = "pconv-forward", value_delimiter = ',')]
    pub pconv_forward: Option<Vec<PConvForward>>,
    /// FasterNet block: expansion ratios of its MLP (hidden width e·c; FasterNet uses 2).
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub expansion: Option<Vec<usize>>,
    /// FasterNet block: activations (relu, gelu, silu). C2f and c2f_faster always use SiLU.
    #[arg(long, value_delimiter = ',')]
    pub act: Option<Vec<Act>>,
    /// C2f / c2f_faster: bottleneck counts n (YOLOv8 uses 1-6 per stage).
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub bottlenecks: Option<Vec<usize>>,
    /// fasternet: networks (fasternet-t0, -t1, -t2, -s, -m, -l) on 3xRxR shapes, 1 layer.
    #[arg(long, value_delimiter = ',', value_name = "MODELS")]
    pub models: Option<Vec<Network>>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub batch: Option<Vec<usize>>,
    /// CPU threads (candle's rayon pool and GEMM).
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::positive)]
    pub threads: Option<Vec<usize>>,
    /// Stacked layers per operator (the paper uses 10).
    #[arg(long, value_parser = crate::cli::positive)]
    pub layers: Option<usize>,
    /// Element types: f32, f16, bf16.
    #[arg(long, value_delimiter = ',')]
    pub dtype: Option<Vec<Dtype>>,
    /// Implementations: native (purpose-built CPU kernels, f32), candle (stock candle ops).
    #[arg(long = "impl", value_delimiter = ',')]
    pub implementations: Option<Vec<Implementation>>,
    /// Passes: infer (the forward), train (forward, loss = sum of the output, backward to
    /// the input's and every weight's gradient). PConv's slicing forward is inference-only.
    #[arg(long, value_delimiter = ',', value_name = "PASSES")]
    pub pass: Option<Vec<Pass>>,
    /// Warm-up time per point (at least 3 runs), e.g. 0.5 or 500ms.
    #[arg(long = "warmup-time", value_parser = crate::cli::seconds, value_name = "SECONDS")]
    pub warmup_time_s: Option<f64>,
    /// Measurement time per point (at least 10 samples), e.g. 2 or 2s.
    #[arg(long = "measure-time", value_parser = crate::cli::seconds, value_name = "SECONDS")]
    pub measure_time_s: Option<f64>,
    /// Stop sampling a point once the 95 % interval of its median is within this much of
    /// it, e.g. 1% (at least 20 samples; --measure-time stays the cap); off samples the whole
    /// --measure-time. Recorded.
    #[arg(long, value_parser = crate::cli::precision, value_name = "PCT|off")]
    pub precision: Option<f64>,
    /// Seed of the random weights and inputs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// CUDA only: let f32 GEMMs use TF32 tensor cores (on, off; default off). Recorded.
    #[arg(long, value_parser = crate::cli::on_off, value_name = "on|off")]
    pub tf32: Option<bool>,
    /// Allow --threads above this machine's logical CPUs (refused by default: the threads
    /// would share cores and time each other). Recorded.
    #[arg(long)]
    pub oversubscribe: bool,
}

impl Suite {
    /// Applies command-line overrides and validates the result.
    pub fn with_overrides(mut self, o: Overrides) -> Result<Suite> {
        macro_rules! take {
            ($($field:ident),+) => { $(if let Some(v) = o.$field { self.$field = v; })+ };
        }
        take!(
            device,
            ops,
            shapes,
            kernel,
            groups,
            n_div,
            pconv_forward,
            expansion,
            act,
            bottlenecks,
            batch,
            threads,
            layers,
            dtype,
            implementations,
            pass,
            warmup_time_s,
            measure_time_s,
            seed,
            tf32,
            models
        );
        if let Some(p) = o.precision {
            self.precision = (p > 0.0).then_some(p);
        }
        self.oversubscribe |= o.oversubscribe;
        self.validate().map_err(|e| Error::Invalid(e.message))?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table1_suite_is_valid_and_has_16_references() {
        let l = load(None).unwrap();
        assert_eq!(l.suite.name, "table1");
        assert_eq!(l.suite.shapes.len(), 4);
        assert_eq!(l.references.len(), 16);
    }

    #[test]
    fn builtin_sweep_suite_is_valid_and_uses_table1_references() {
        let l = load_or(None, SWEEP).unwrap();
        assert_eq!(l.suite.n_div, [2, 4, 8, 16]);
        assert_eq!(l.suite.kernel, [3, 5, 7]);
        assert_eq!(l.suite.groups, [4, 8, 16]);
        assert_eq!(l.references.len(), 16);
    }

    #[test]
    fn shipped_suites_are_valid() {
        for file in [
            "configs/ci.toml",
            "configs/blocks.toml",
            "configs/sweep.toml",
            "configs/table1-cuda.toml",
        ] {
            let l = load(Some(Path::new(file))).unwrap_or_else(|e| panic!("{e}"));
            assert!(!l.suite.ops.is_empty(), "{file}");
        }
        let cuda = parse(TABLE1_CUDA.0, TABLE1_CUDA.1).unwrap();
        assert_eq!(
            (cuda.suite.batch.as_slice(), cuda.suite.device),
            (&[32][..], DeviceSpec::Cuda(0))
        );
        assert_eq!(cuda.references.len(), 16, "Table 1's references");
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let src = TABLE1
            .1
            .replacen("layers = 10", "layers = 10\nlayerz = 3", 1);
        let err = parse("x.toml", &src).unwrap_err().to_string();
        let line = line_of_key(&src, "layerz");
        assert!(err.starts_with(&format!("x.toml:{line}:")), "{err}");
        assert!(err.contains("layerz"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_line_and_value() {
        let src = TABLE1.1.replacen("n_div = [4]", "n_div = [4, 200]", 1);
        let err = parse("s.toml", &src).unwrap_err().to_string();
        let line = line_of_key(&src, "n_div");
        assert!(
            err.starts_with(&format!("s.toml:{line}:")) && err.contains("n_div 200"),
            "{err}"
        );
        let src = TABLE1.1.replacen("\"768x7x7\"]", "\"0x7x7\"]", 1);
        let err = parse("s.toml", &src).unwrap_err().to_string();
        assert!(err.contains("'0x7x7'"), "{err}");
    }

    #[test]
    fn lists_reject_empty_and_duplicates() {
        assert!(check_list::<usize>("kernel", &[])
            .unwrap_err()
            .message
            .contains("empty"));
        assert!(check_list("kernel", &[3, 5, 3])
            .unwrap_err()
            .message
            .contains("'3' twice"));
    }

    #[test]
    fn devices_parse() {
        assert_eq!("cuda:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap().to_string(), "cuda");
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("'tpu'"));
    }
}
