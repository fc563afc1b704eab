//! `pconv-bench model`: whole FasterNet classifiers, verified against the f64 reference at the
//! resolution they are timed at (so every block runs the kernels it is timed on), then timed;
//! MACs beside the paper's FLOPs.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use serde::{Deserialize, Serialize};

use crate::cli::ModelArgs;
use crate::config::DeviceSpec;
use crate::error::{CandleContext, Error, Result};
use crate::measure::{self, Budget, Summary};
use crate::metadata::{self, DeviceInfo, ToolInfo};
use crate::model::{self, Model, ModelCost, Weights};
use crate::ops::{kernel_path, Act, Dtype, Implementation};
use crate::output::Output;
use crate::record::Warmup;

/// Version of the `model` results schema.
pub const MODEL_SCHEMA_VERSION: u32 = 1;

/// A `pconv-bench model` results file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    pub schema_version: u32,
    /// Always `model`.
    pub mode: String,
    pub tool: ToolInfo,
    pub created_at: String,
    pub command: Vec<String>,
    pub device: DeviceInfo,
    pub threads: usize,
    pub dtype: Dtype,
    pub seed: u64,
    pub records: Vec<ModelRecord>,
}

/// How one network's output compared with the f64 reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVerification {
    /// Side of the verification input: the timed resolution.
    pub resolution: usize,
    /// The kernels the verified forward ran (see `records[].kernel_path`).
    #[serde(default)]
    pub kernel_path: String,
    /// The timed batch, run whole.
    pub batch: usize,
    /// The images of the batch whose logits the f64 reference recomputed.
    #[serde(default)]
    pub images_checked: Vec<usize>,
    /// max |logit - ref| / max |ref| over the checked images (every logit of the batch is
    /// also checked to be finite).
    pub max_rel_err: f64,
    pub tolerance: f64,
}

/// One network in one implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub model: String,
    pub resolution: usize,
    pub implementation: Implementation,
    pub batch: usize,
    pub embed_dim: usize,
    pub depths: [usize; 4],
    pub act: Act,
    /// Per image.
    pub cost: ModelCost,
    /// The paper's FLOPs at 224x224, G (only comparable at resolution 224).
    pub paper_gflops: f64,
    /// fvcore_flops / paper - 1 at resolution 224, else null.
    pub flops_vs_paper: Option<f64>,
    /// The kernels the timed forwards ran; always equal to `verification.kernel_path`.
    #[serde(default)]
    pub kernel_path: String,
    pub verification: ModelVerification,
    pub warmup: Warmup,
    pub stats: Summary,
    /// batch / median latency.
    pub images_per_s: f64,
    /// conv_linear_macs · batch / median latency, GMAC/s.
    pub gmacs_per_s: f64,
    /// Every timed forward, ms, in order.
    pub samples_ms: Vec<f64>,
}

/// Runs one network at its timed resolution and checks its logits against the f64 reference
/// of the same weights.
fn verify(
    m: &Model,
    implementation: Implementation,
    (batch, seed): (usize, u64),
    device: &candle_core::Device,
) -> Result<ModelVerification> {
    let weights = Weights::random(m, seed);
    let x = model::random_input(m, batch, seed);
    let net = model::build(m, &weights, implementation, device)?;
    let (y, kernel_path) =
        kernel_path::traced(|| model::forward_host(net.as_ref(), m, &x, batch, device));
    let y = y?;
    let wide = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
    // The reference recomputes the first, middle and last image of the timed batch.
    let which = crate::verify::reference_images(batch);
    let r = m.resolution;
    let x_ref = crate::verify::pick_images(&x, 3 * r * r, &which);
    let reference = model::reference(m, &weights, &wide(&x_ref), which.len());
    let finite = y.iter().all(|v| v.is_finite());
    let y = crate::verify::pick_images(&y, y.len() / batch, &which);
    let (_, rel) = crate::verify::compare(&wide(&y), &reference);
    let tolerance = crate::verify::tolerance(Dtype::F32);
    if !finite || rel.is_nan() || rel > tolerance {
        return Err(Error::Verification(format!(
            "{} ({implementation}) at {r}x{r}: max relative error {rel:.3e} against the f64 reference exceeds the f32 tolerance {tolerance:.0e} (NaN: non-finite logits)",
            m.arch.name
        )));
    }
    Ok(ModelVerification {
        resolution: r,
        kernel_path,
        batch,
        images_checked: which,
        max_rel_err: rel,
        tolerance,
    })
}

fn time(
    m: &Model,
    implementation: Implementation,
    args: &ModelArgs,
    device: &candle_core::Device,
) -> Result<(measure::Measurement, String)> {
    let weights = Weights::random(m, args.seed);
    let net = model::build(m, &weights, implementation, device)?;
    let r = m.resolution;
    let x = crate::ops::tensor_from(
        model::random_input(m, args.batch, args.seed),
        &[args.batch, 3, r, r],
        device,
        Dtype::F32,
    )?;
    let budget = Budget::new(args.warmup_time, args.measure_time);
    let (meas, path) = kernel_path::traced(|| {
        measure::measure(
            &budget,
            || net.forward(&x).map(drop),
            || device.synchronize(),
        )
    });
    let meas = meas.context(|| format!("timing {} ({implementation})", m.arch.name))?;
    Ok((meas, path))
}

fn table(records: &[ModelRecord]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "model",
        "impl",
        "input",
        "params (M)",
        "GFLOPs (fvcore)",
        "paper GFLOPs",
        "vs paper",
        "median ms ± IQR",
        "img/s",
        "GMAC/s",
        "verified (rel err)",
    ]);
    for r in records {
        let cells = vec![
            r.model.clone(),
            r.implementation.to_string(),
            format!("{}x{}x{}x{}", r.batch, 3, r.resolution, r.resolution),
            format!("{:.2}", r.cost.params as f64 / 1e6),
            format!("{:.4}", r.cost.fvcore_flops as f64 / 1e9),
            format!("{:.2}", r.paper_gflops),
            r.flops_vs_paper
                .map_or("- (not 224)".into(), |d| format!("{:+.2}%", d * 100.0)),
            format!(
                "{:.3} ± {:.3}{}",
                r.stats.median_ms,
                r.stats.iqr_ms,
                if r.stats.noisy { " noisy" } else { "" }
            ),
            format!("{:.1}", r.images_per_s),
            format!("{:.1}", r.gmacs_per_s),
            format!("{:.1e}", r.verification.max_rel_err),
        ];
        t.add_row(cells.into_iter().enumerate().map(|(i, s)| {
            let c = Cell::new(s);
            if i >= 3 {
                c.set_alignment(CellAlignment::Right)
            } else {
                c
            }
        }));
    }
    format!(
        "{t}\nGFLOPs (fvcore): per image, as the paper counts FLOPs (multiply-adds of the convolutions and the Linear, plus 2 per BatchNorm output and 1 per pooled element). GMAC/s: convolution and Linear multiply-adds per second.\nBN is folded into the convolutions for inference. The paper gives no CPU latency for whole networks at this protocol, so none is printed beside ours.\nverified: the timed batch at the timed resolution, on the timed threads; the logits of its first, middle and last image against an f64 reference of the same network; kernel path as timed.\n"
    )
}

pub fn execute(args: &ModelArgs, argv: Vec<String>) -> Result<i32> {
    // Every input is checked before the first measurement.
    let models = args
        .models
        .iter()
        .map(|a| Model::new(a, args.resolution))
        .collect::<Result<Vec<_>>>()?;
    for (i, imp) in args.implementations.iter().enumerate() {
        if let Some(why) = imp.not_runnable_here() {
            return Err(Error::Invalid(why));
        }
        if args.implementations[..i].contains(imp) {
            return Err(Error::Invalid(format!(
                "impl lists '{imp}' twice: give each value once"
            )));
        }
    }
    let json_out = Output::resolve_opt(args.json.as_deref(), "--json")?;
    crate::device::check_threads(&[args.threads], args.oversubscribe)?;
    let free = crate::memory::available_host_bytes();
    for m in &models {
        let name = m.arch.name;
        let r = m.resolution;
        let Some(need) = m.peak_bytes(args.batch) else {
            return Err(Error::Invalid(format!(
                "{name} at {r}x{r}, batch {}: its buffers would need more than 2^64 bytes: reduce --batch or --resolution",
                args.batch
            )));
        };
        if let Some(free) = free.filter(|&f| need > f) {
            return Err(Error::Invalid(format!(
                "{name} at {r}x{r}, batch {}: needs about {} ({need} bytes) of memory, {} ({free} bytes) available: reduce --batch or --resolution",
                args.batch,
                crate::memory::human_bytes(need),
                crate::memory::human_bytes(free)
            )));
        }
    }
    let device = crate::device::open(args.device)?;
    if args.device != DeviceSpec::Cpu {
        return Err(Error::Unsupported(format!(
            "model runs on --device cpu in this version, not '{}'",
            args.device
        )));
    }
    crate::device::steady_allocator();
    let pool = crate::device::pin_threads(args.threads)?;
    let mut records = Vec::new();
    for m in &models {
        for &imp in &args.implementations {
            if !args.quiet {
                eprintln!(
                    "{} ({imp}): verifying at {r}x{r}, then timing at {r}x{r}, batch {b}, {t} thread(s) ...",
                    m.arch.name,
                    r = m.resolution,
                    b = args.batch,
                    t = args.threads
                );
            }
            let verification = pool.install(|| verify(m, imp, (args.batch, args.seed), &device))?;
            let (meas, kernel_path) = pool.install(|| time(m, imp, args, &device))?;
            if kernel_path != verification.kernel_path {
                return Err(Error::Verification(format!(
                    "{} ({imp}): timed on kernel path '{kernel_path}' but verified on '{}'",
                    m.arch.name, verification.kernel_path
                )));
            }
            let stats = Summary::from_samples(&meas.samples_ms);
            let cost = m.cost();
            let per_s = 1e3 / stats.median_ms;
            records.push(ModelRecord {
                model: m.arch.name.into(),
                resolution: m.resolution,
                implementation: imp,
                batch: args.batch,
                embed_dim: m.arch.embed_dim,
                depths: m.arch.depths,
                act: m.arch.act,
                cost,
                paper_gflops: m.arch.paper_gflops,
                flops_vs_paper: (m.resolution == model::PAPER_RESOLUTION)
                    .then(|| cost.fvcore_flops as f64 / 1e9 / m.arch.paper_gflops - 1.0),
                kernel_path,
                verification,
                warmup: Warmup {
                    runs: meas.warmup_runs,
                    time_s: meas.warmup_time_s,
                },
                images_per_s: args.batch as f64 * per_s,
                gmacs_per_s: cost.conv_linear_macs as f64 * args.batch as f64 * per_s / 1e9,
                stats,
                samples_ms: meas.samples_ms,
            });
        }
    }
    let text = format!(
        "{} threads={} f32, {}\n{}",
        crate::device::info(args.device).name,
        args.threads,
        metadata::now_rfc3339(),
        table(&records)
    );
    // With --json - the JSON owns standard output.
    if json_out.as_ref().is_some_and(Output::is_stdout) {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(out) = &json_out {
        let result = ModelResult {
            schema_version: MODEL_SCHEMA_VERSION,
            mode: "model".into(),
            tool: ToolInfo::current(),
            created_at: metadata::now_rfc3339(),
            command: argv,
            device: crate::device::info(args.device),
            threads: args.threads,
            dtype: Dtype::F32,
            seed: args.seed,
            records,
        };
        let text = serde_json::to_string_pretty(&result).expect("results serialise") + "\n";
        out.write(text.as_bytes())?;
        if !args.quiet {
            eprintln!("wrote {}", out.path().display());
        }
    }
    Ok(0)
}
