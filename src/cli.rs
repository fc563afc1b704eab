//! Command-line definitions (clap), with examples in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{DeviceSpec, Overrides};
use crate::ops::{Dtype, Implementation, OpKind};

#[derive(Debug, Parser)]
#[command(
    name = "pconv-bench",
    version,
    about = "Is Partial Convolution (PConv, FasterNet) really faster than DWConv and GConv? Measures latency, MACs, memory access and achieved FLOPS.",
    after_help = "Examples:\n  pconv-bench run                                  # paper Table 1 on CPU, 1 thread\n  pconv-bench run --threads 2 --json results/my-cpu-table1.json\n  pconv-bench run --ops pconv,dwconv --shapes 64x80x80 --batch 8\n\nExit codes: 0 ok, 1 gate failed (compare), 2 bad input, 3 verification failed, 4 runtime error,
130 interrupted."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify, then time, the operator suite (default: the paper's Table 1 on CPU).
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Sweep partial ratio (n_div), kernel size, groups and shape: the FLOPS-vs-latency
    /// landscape (default: configs/sweep.toml).
    #[command(after_help = SWEEP_EXAMPLES)]
    Sweep(Box<SweepArgs>),
    /// Measure the device's ceilings (peak GEMM compute, copy and read bandwidth) for the
    /// roofline, and save them as a profile.
    #[command(after_help = CALIBRATE_EXAMPLES)]
    Calibrate(CalibrateArgs),
    /// Re-render saved results (table, Markdown, CSV, JSON, SVG figures) without measuring.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Compare two results files: per record, the change of the median with a confidence
    /// interval, and a regression verdict (exit 1 when anything regressed).
    #[command(after_help = COMPARE_EXAMPLES)]
    Compare(CompareArgs),
    /// Pool results files of one benchmark measured in separate processes (interleaved
    /// rounds) into one file: each file's samples become a repetition of its records.
    #[command(after_help = MERGE_EXAMPLES)]
    Merge(MergeArgs),
    /// Verify, then time, whole FasterNet classifiers (T0 .. L) with random weights: latency,
    /// and MACs beside the paper's FLOPs.
    #[command(after_help = MODEL_EXAMPLES)]
    Model(ModelArgs),
}

const MODEL_EXAMPLES: &str = "Examples:
  pconv-bench model fasternet-t0                     # 224x224, batch 1, 1 thread, native and candle
  pconv-bench model fasternet-t0 fasternet-t1 fasternet-t2 --json results/models.json
  pconv-bench model fasternet-s --resolution 256 --impl native --threads 2

MACs are counted as the paper's FLOPs are (fvcore on the eval-mode model: convolutions and the
Linear, plus 2 per BatchNorm output and 1 per pooled element) and must be within 1% of them.";

const SWEEP_EXAMPLES: &str = "Examples:
  pconv-bench sweep                                  # configs/sweep.toml: 160 points, ~4 min
  pconv-bench sweep --n-div 2,4,8 --kernel 3,5,7 --shapes 96x56x56 --json s.json --plot s.svg
  pconv-bench sweep --ops pconv,dwconv --shapes 128x40x40,256x20x20 --batch 1,8
  pconv-bench sweep --resume s.json                  # after Ctrl-C: measure only what is missing

Ctrl-C stops after the current point and writes what finished (\"complete\": false).
A sweep of more than 2,000 points needs --yes.";

const CALIBRATE_EXAMPLES: &str = "Examples:
  pconv-bench calibrate                              # 1 thread, saved under ~/.cache/pconv-bench/
  pconv-bench calibrate --threads 1,2 --json results/cpu-xeon-2c-profile.json
  pconv-bench run --profile results/cpu-xeon-2c-profile.json --roofline roofline.svg

A ceiling whose runs scatter (relative IQR above 10%) is reported as unstable.";

const REPORT_EXAMPLES: &str = "Examples:
  pconv-bench report results/cpu-xeon-2c-1t-table1.json
  pconv-bench report run.json run-torch.json --format markdown
  pconv-bench report s.json --format csv > s.csv
  pconv-bench report s.json --plot s.svg
  pconv-bench report run.json --format html --output report.html   # one offline page
  pconv-bench report gpu.json cpu.json arm.json --by device          # the paper's Table 1 layout

--by device puts one device per column group (from each file's device), matching records
by what they computed; with Table 1 shapes the paper's GPU, CPU and ARM columns appear
beside them (--no-paper hides them, --paper insists on them).";

const MERGE_EXAMPLES: &str = "Examples:
  pconv-bench merge round-1.json round-2.json round-3.json --json pooled.json
  pconv-bench compare base.json head.json   # after merging each side's interleaved rounds

Records match by identity (as in compare); stats and rates are recomputed from the pooled
samples. The files must come from one device model with the same layers, seed and TF32 setting.";

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Results files of `run` or `sweep`, in the order they were measured.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Where to write the pooled results (atomically).
    #[arg(long)]
    pub json: PathBuf,
}

const COMPARE_EXAMPLES: &str = "Examples:
  pconv-bench compare base.json head.json
  pconv-bench compare base.json new.json --threshold 5% --format markdown > comment.md

  pconv-bench merge base-1.json base-2.json base-3.json --json base.json   # interleaved rounds
  scripts/ab-gate.sh --base old/pconv-bench --head new/pconv-bench        # the whole CI gate

A record regressed only when the whole confidence interval of median(current) / median(baseline)
lies above 1 + threshold (improved: below 1 - threshold); unchanged only when it lies within
1 ± threshold; otherwise inconclusive (too wide to decide). The interval is a bootstrap that draws
whole repetitions (rounds) first; with two or more a side it also covers the Welch t interval of
their log-medians, so a few rounds that happen to disagree are not called a change. Compare runs
made on the same machine, interleaved: absolute times from different machines say nothing about
the code.
Exit codes: 0 gate passed; 1 a regression, a baseline record missing from the current run (unless
--allow-missing), or an inconclusive change with --fail-on-inconclusive; 2 bad input.";

/// Output formats of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompareFormat {
    Table,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Results file of the baseline run.
    pub baseline: PathBuf,
    /// Results file of the current run.
    pub current: PathBuf,
    /// Noise threshold: changes whose interval stays within ±threshold are `unchanged`.
    /// The default sits above the run-to-run drift measured on a shared 2-core machine.
    #[arg(long, default_value = "10%", value_parser = crate::compare::parse_threshold)]
    pub threshold: f64,
    /// Confidence level of the interval, in percent (50 to 99.9).
    #[arg(long, default_value = "99", value_parser = confidence)]
    pub confidence: f64,
    #[arg(long, value_enum, default_value_t = CompareFormat::Table)]
    pub format: CompareFormat,
    /// Allow comparing runs from different device models.
    #[arg(long)]
    pub allow_different_device: bool,
    /// Do not fail when baseline records are missing from the current run (by default a
    /// benchmark that disappears fails the gate: exit 1).
    #[arg(long)]
    pub allow_missing: bool,
    /// Fail (exit 1) when a change is inconclusive: its interval reaches beyond the
    /// threshold without lying wholly beyond it.
    #[arg(long)]
    pub fail_on_inconclusive: bool,
}

/// Parses a confidence level in percent into a fraction.
fn confidence(s: &str) -> Result<f64, String> {
    s.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|v| (50.0..=99.9).contains(v))
        .map(|v| v / 100.0)
        .ok_or_else(|| {
            format!("confidence '{s}' is not allowed: give a percentage from 50 to 99.9")
        })
}

const RUN_EXAMPLES: &str = "Examples:
  pconv-bench run                                   # configs/table1.toml: Table 1 shapes, 1 thread
  pconv-bench run --json results/cpu-mybox-1t-table1.json
  pconv-bench run --config configs/ci.toml --quiet  # a tiny suite (seconds)
  pconv-bench run --ops pconv --n-div 2,4,8 --pconv-forward split_cat
  pconv-bench run --shapes 128x40x40,256x20x20 --batch 4 --threads 2
  pconv-bench run --repeat 5 --json ci.json         # pooled repetitions, for compare
  pconv-bench run --precision off                   # sample each point for the whole --measure-time
  pconv-bench run --pass infer,train                # training steps (forward + backward) beside forwards

List flags take comma-separated values and replace the config's list.";

/// Parses a duration in seconds: `2`, `0.5`, `1.5s` or `500ms`.
pub(crate) fn seconds(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else {
        (t, 1.0)
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| {
            format!("'{s}' is not a duration: give seconds such as 2, 0.5, 1.5s or 500ms")
        })
}

/// Parses a positive integer.
pub(crate) fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("'{s}' is not allowed: give a positive integer")),
    }
}

/// The suite flags `run` and `sweep` share: a suite file, and flags that each replace one of
/// its values ([`Overrides`]).
#[derive(Debug, Args, Clone)]
pub struct SuiteArgs {
    /// Suite file (TOML); default: the built-in configs/table1.toml.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// Parses a relative precision given as a percentage (`1%`, `0.5%`), or `off` (0). A bare
/// number is refused: `0.5` could mean 0.5 % or a fraction of 50 %.
pub(crate) fn precision(s: &str) -> Result<f64, String> {
    let t = s.trim();
    if t == "off" {
        return Ok(0.0);
    }
    let pct = t.strip_suffix('%').map(|p| p.trim().parse::<f64>());
    match pct {
        Some(Ok(v)) if v.is_finite() && v > 0.0 && v <= 50.0 => Ok(v / 100.0),
        _ => Err(format!(
            "'{s}' is not a precision: give a percentage above 0 and at most 50 with its % sign, such as 1% or 0.5%, or off"
        )),
    }
}

pub(crate) fn on_off(s: &str) -> Result<bool, String> {
    match s.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("'{other}' is not allowed: give on or off")),
    }
}

/// What `run` and `sweep` share besides the suite: outputs and repetitions.
#[derive(Debug, Args)]
pub struct MeasureArgs {
    #[command(flatten)]
    pub suite: SuiteArgs,
    #[command(flatten)]
    pub run: RunOptions,
}

/// What `run`, `sweep` and `model` share beyond the suite: outputs, repetitions, ceilings.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Write the results as JSON (atomically) to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also draw the figures (latency vs MACs, GMAC/s vs n_div / groups, latency vs kernel)
    /// as SVG to this file.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// Draw the roofline chart (both ceilings, one point per record) as SVG to this file
    /// (needs --profile or --calibrate).
    #[arg(long, value_name = "PATH.svg")]
    pub roofline: Option<PathBuf>,
    /// Write a self-contained HTML report (environment, the answer, the table, the figures
    /// inline) to this file.
    #[arg(long, value_name = "PATH.html")]
    pub html: Option<PathBuf>,
    /// Interleaved repetitions of the whole suite, samples pooled per record (tighter
    /// intervals for a regression gate).
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub repeat: usize,
    /// Device ceilings from `pconv-bench calibrate`: every record gets its roofline position
    /// (% of min(peak, intensity x bandwidth)).
    #[arg(long, value_name = "PATH")]
    pub profile: Option<PathBuf>,
    /// Measure the device ceilings first (as `calibrate` does) and use them.
    #[arg(long, conflicts_with = "profile")]
    pub calibrate: bool,
    /// Use a profile from another device or without this run's thread counts.
    #[arg(long)]
    pub allow_profile_mismatch: bool,
    /// No progress bar and no informational messages on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Test hook: sleep this many microseconds inside every timed run (to check that the
    /// regression gate fires). Never use it for real measurements.
    #[arg(long, hide = true, value_name = "US")]
    pub inject_delay_us: Option<u64>,
    /// Test hook: write a NaN into the verified output of this operator (to check that a
    /// verification failure is reported, exit 3). Never use it for real measurements.
    #[arg(long, hide = true, value_name = "OP")]
    pub inject_nan_into: Option<OpKind>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub measure: MeasureArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub measure: MeasureArgs,
    /// Continue a sweep: skip the points already in this results file (made with the same
    /// settings) and write old and new records together (to --json, else back to FILE).
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Run a sweep of more than 2,000 points.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Networks: fasternet-t0, fasternet-t1, fasternet-t2, fasternet-s, fasternet-m,
    /// fasternet-l (several, space-separated).
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<crate::ops::Network>,
    /// Input side in pixels (a multiple of 32, at least 96); the paper uses 224.
    #[arg(long, default_value_t = crate::ops::fasternet::PAPER_RESOLUTION, value_parser = positive)]
    pub resolution: usize,
    /// Implementations: native, candle.
    #[arg(long = "impl", value_delimiter = ',', default_value = "native,candle")]
    pub implementations: Vec<Implementation>,
    /// Device (cpu in this version).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Images per forward.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub batch: usize,
    /// CPU threads.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    pub threads: usize,
    /// Warm-up time per network (at least 3 runs), e.g. 1 or 500ms.
    #[arg(long = "warmup-time", value_parser = seconds, default_value = "1", value_name = "SECONDS")]
    pub warmup_time: f64,
    /// Measurement time per network (at least 10 samples).
    #[arg(long = "measure-time", value_parser = seconds, default_value = "3", value_name = "SECONDS")]
    pub measure_time: f64,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Allow --threads above this machine's logical CPUs.
    #[arg(long)]
    pub oversubscribe: bool,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results files (merged: e.g. a run and its PyTorch reference).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = crate::report::Format::Table)]
    pub format: crate::report::Format,
    /// Lay the files out side by side: `device` gives the paper's Table 1 layout, one
    /// column group (latency, GMAC/s) per device, instead of merging the files.
    #[arg(long, value_enum, value_name = "LAYOUT")]
    pub by: Option<ReportBy>,
    /// With --by device: show the paper's GPU, CPU and ARM columns (the default when any
    /// record has a Table 1 shape; an error when none has).
    #[arg(long, requires = "by", conflicts_with = "no_paper")]
    pub paper: bool,
    /// With --by device: hide the paper's columns.
    #[arg(long, requires = "by")]
    pub no_paper: bool,
    /// Write the report to this file (atomically) instead of standard output.
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Also draw the figures as SVG to this file.
    #[arg(long, value_name = "PATH.svg")]
    pub plot: Option<PathBuf>,
    /// Also draw the roofline chart as SVG to this file (the results must carry a profile).
    #[arg(long, value_name = "PATH.svg")]
    pub roofline: Option<PathBuf>,
}

/// Layouts of `report --by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportBy {
    /// One column group per device (the paper's Table 1).
    Device,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Device: cpu (cuda needs a CUDA build).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Thread counts to calibrate, e.g. 1,2.
    #[arg(long, value_delimiter = ',', value_parser = positive, default_value = "1")]
    pub threads: Vec<usize>,
    /// Element type (the ceilings are for f32).
    #[arg(long, default_value = "f32")]
    pub dtype: Dtype,
    /// Where to save the profile (default: the user's cache folder, printed).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// GEMM size m = n = k of the compute ceiling.
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    pub gemm_size: usize,
    /// Size of each bandwidth buffer, MiB (keep it well above the last-level cache).
    #[arg(long, default_value_t = 1024, value_parser = positive)]
    pub buffer_mib: usize,
    /// Warm-up time per kernel.
    #[arg(long = "warmup-time", value_parser = seconds, default_value = "0.3", value_name = "SECONDS")]
    pub warmup_time: f64,
    /// Measurement time per kernel.
    #[arg(long = "measure-time", value_parser = seconds, default_value = "2", value_name = "SECONDS")]
    pub measure_time: f64,
    /// Allow --threads above this machine's logical CPUs.
    #[arg(long)]
    pub oversubscribe: bool,
    /// No informational messages on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(seconds("2").unwrap(), 2.0);
        assert_eq!(seconds("1.5s").unwrap(), 1.5);
        assert_eq!(seconds("500ms").unwrap(), 0.5);
        assert!(seconds("-1").unwrap_err().contains("'-1'"));
        assert!(seconds("fast").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
