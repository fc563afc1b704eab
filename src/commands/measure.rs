//! What `run`, `sweep` and `model` share: suite -> points -> verified, timed records ->
//! table, JSON, figures. Every input is checked before the first measurement.

use std::path::{Path, PathBuf};

use crate::bench::{self, Context};
use crate::cli::{RunOptions, SuiteArgs};
use crate::config::{self, Suite};
use crate::error::{exit, Error, Result};
use crate::measure::Budget;
use crate::metadata::{self, ToolInfo};
use crate::plan::{self, Point};
use crate::progress;
use crate::record::{Mode, Record, RunResult, SCHEMA_VERSION};
use crate::report::outputs::{Outputs, Paths};
use crate::report::{self, json, Export};
use crate::roofline;

/// A sweep larger than this needs `--yes`.
pub const MAX_POINTS_WITHOUT_YES: usize = 2000;

/// Seconds one point takes beyond its budgets (verification, building, set-up), for the
/// estimate printed before a sweep.
const OVERHEAD_S: f64 = 0.3;

/// Where a job's suite comes from.
pub enum SuiteFrom<'a> {
    /// A config file (the built-in one without --config) with command-line overrides.
    Config {
        args: &'a SuiteArgs,
        builtin: (&'a str, &'a str),
    },
    /// A suite the command built from its own arguments (`model`), and how to name it.
    Built { suite: Box<Suite>, source: String },
}

/// One invocation of `run`, `sweep` or `model`.
pub struct Job<'a> {
    pub suite: SuiteFrom<'a>,
    pub args: &'a RunOptions,
    pub mode: Mode,
    pub resume: Option<&'a Path>,
    pub yes: bool,
    pub argv: Vec<String>,
}

/// Refuses to resume from a file measured with other settings.
fn check_resumable(path: &Path, old: &RunResult, suite: &Suite) -> Result<()> {
    let shown = path.display();
    let mismatch = |what: &str, a: String, b: String| {
        Err(Error::Invalid(format!(
            "cannot resume '{shown}': its {what} is {a}, this sweep's is {b}; resume with the same settings"
        )))
    };
    let (o, n) = (&old.config, suite);
    if o.device != n.device {
        return mismatch("device", o.device.to_string(), n.device.to_string());
    }
    if old.device.name != crate::device::info(n.device).name {
        return mismatch(
            "device model",
            old.device.name.clone(),
            crate::device::info(n.device).name,
        );
    }
    if o.layers != n.layers {
        return mismatch("layers", o.layers.to_string(), n.layers.to_string());
    }
    if o.seed != n.seed {
        return mismatch("seed", o.seed.to_string(), n.seed.to_string());
    }
    if o.warmup_time_s != n.warmup_time_s || o.measure_time_s != n.measure_time_s {
        return mismatch(
            "budget (warm-up, measure seconds)",
            format!("({}, {})", o.warmup_time_s, o.measure_time_s),
            format!("({}, {})", n.warmup_time_s, n.measure_time_s),
        );
    }
    let shown = |p: Option<f64>| p.map_or("off".to_string(), |p| format!("{}%", p * 100.0));
    let same = match (o.precision, n.precision) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs(),
        (a, b) => a == b,
    };
    if !same {
        return mismatch(
            "precision (--precision; off in files from before it existed)",
            shown(o.precision),
            shown(n.precision),
        );
    }
    Ok(())
}

fn human_duration(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// A job with every input checked: what to measure, on which device, and where to write.
struct Resolved {
    suite: Suite,
    references: Vec<crate::config::PaperReference>,
    source: String,
    /// What is left to measure (a resumed sweep drops what its file holds).
    points: Vec<Point>,
    outputs: Outputs,
    profile: Option<roofline::Profile>,
    /// The file a sweep resumes.
    previous: Option<RunResult>,
    device: candle_core::Device,
}

/// Checks every input before the first measurement (suite, outputs, profile, resumed file,
/// device, memory) and says what will run.
fn preflight(job: &Job) -> Result<Resolved> {
    let args = job.args;
    let (loaded, suite) = match &job.suite {
        SuiteFrom::Config { args, builtin } => {
            let loaded = config::load_or(args.config.as_deref(), *builtin)?;
            let suite = loaded
                .suite
                .clone()
                .with_overrides(args.overrides.clone())?;
            (loaded, suite)
        }
        SuiteFrom::Built { suite, source } => {
            suite.validate().map_err(|e| Error::Invalid(e.message))?;
            let loaded = config::LoadedSuite {
                suite: (**suite).clone(),
                references: Vec::new(),
                source: source.clone(),
            };
            (loaded, (**suite).clone())
        }
    };
    let mut suite = suite;
    // Repetitions are pooled sample by sample, so an early stop would weight a quiet
    // repetition less than a disturbed one: with --repeat each samples the whole time.
    if args.repeat > 1 {
        suite.precision = None;
    }
    let mut points = plan::expand(&suite);
    for p in &points {
        p.spec.validate()?;
    }
    let json_path: Option<PathBuf> = args
        .json
        .clone()
        .or_else(|| job.resume.map(Path::to_path_buf));
    if let (Some(path), Some(_)) = (&json_path, job.resume) {
        if path.as_os_str() == "-" {
            return Err(Error::Invalid(
                "--resume needs a results file to read and rewrite, not -".into(),
            ));
        }
    }
    let outputs = Outputs::resolve(Paths {
        json: json_path.as_deref(),
        plot: args.plot.as_deref(),
        roofline: args.roofline.as_deref(),
        html: args.html.as_deref(),
        ..Paths::default()
    })?;
    if let Some(path) = &args.roofline {
        if args.profile.is_none() && !args.calibrate {
            return Err(Error::Invalid(format!(
                "--roofline '{}' needs device ceilings: add --profile PATH (from `pconv-bench calibrate`) or --calibrate",
                path.display()
            )));
        }
    }
    crate::device::check_threads(&suite.threads, suite.oversubscribe)?;
    let profile = match &args.profile {
        Some(path) => {
            let p = roofline::read(path)?;
            roofline::check_matches(
                &p,
                path,
                &crate::device::info(suite.device),
                &suite.threads,
                args.allow_profile_mismatch,
            )?;
            Some(p)
        }
        None => None,
    };
    let previous = match job.resume {
        Some(path) => {
            let old = json::read(path)?;
            check_resumable(path, &old, &suite)?;
            Some(old)
        }
        None => None,
    };
    let total = points.len();
    if let Some(old) = &previous {
        let done: Vec<Point> = old.records.iter().map(Record::point).collect();
        points.retain(|p| !done.contains(p));
    }
    let per_point = suite.warmup_time_s + suite.measure_time_s + OVERHEAD_S;
    let estimate = human_duration(points.len() as f64 * args.repeat as f64 * per_point);
    // A precision stop ends quiet points early: the budget is then an upper bound.
    let estimate = if suite.precision.is_some() {
        format!("at most {estimate}")
    } else {
        format!("about {estimate}")
    };
    if job.mode == Mode::Sweep && points.len() > MAX_POINTS_WITHOUT_YES && !job.yes {
        return Err(Error::Invalid(format!(
            "sweep of {} points ({estimate}) is over {MAX_POINTS_WITHOUT_YES}: pass --yes to run it, or narrow the lists",
            points.len()
        )));
    }
    let device = crate::device::open(suite.device)?;
    for &implementation in &suite.implementations {
        for &dtype in &suite.dtype {
            crate::device::check_supported(&device, implementation, dtype)?;
        }
    }
    if device.is_cuda() {
        candle_core::cuda::set_gemm_reduced_precision_f32(suite.tf32);
        let cpu_only = points.iter().find(|p| {
            p.implementation == crate::ops::Implementation::Native
                && !crate::ops::native_on_cuda(p.spec.kind)
        });
        if let Some(p) = cpu_only {
            return Err(Error::Unsupported(format!(
                "implementation native runs {} on cpu only: use --impl candle on {}",
                p.spec.kind, suite.device
            )));
        }
        let native_train = points.iter().any(|p| {
            p.implementation == crate::ops::Implementation::Native
                && p.pass == crate::ops::Pass::Train
        });
        if native_train {
            return Err(crate::ops::train::native_on_cuda(&suite.device.to_string()));
        }
    } else if suite.tf32 {
        return Err(Error::Invalid(format!(
            "--tf32 on applies to CUDA GEMMs: allowed on device {} is off",
            suite.device
        )));
    }
    let largest = crate::memory::check_points(&points, suite.layers, &device)?;
    if !args.quiet {
        for note in plan::notes(&suite) {
            eprintln!("note: {note}");
        }
        let skipped = total - points.len();
        let resumed = if skipped > 0 {
            format!(" ({skipped} of {total} already measured)")
        } else {
            String::new()
        };
        eprintln!(
            "{}: {} points{resumed}, {estimate}; the largest needs about {} of memory",
            suite.name,
            points.len(),
            crate::memory::human_bytes(largest)
        );
    }

    Ok(Resolved {
        suite,
        references: loaded.references,
        source: loaded.source,
        points,
        outputs,
        profile,
        previous,
        device,
    })
}

/// Runs the resolved points (calibrating first when asked) and assembles the results file.
fn measure(job: Job, mut r: Resolved) -> Result<(RunResult, Outputs)> {
    let args = job.args;
    crate::device::steady_allocator();
    if args.calibrate {
        let sizes = roofline::Sizes {
            gemm: 1024,
            buffer_bytes: 1 << 30,
        };
        let p = roofline::measure_profile(
            r.suite.device,
            &r.suite.threads,
            sizes,
            &Budget::new(0.2, 1.0),
            args.quiet,
        )?;
        if !args.quiet {
            eprint!("{}", roofline::describe(&p));
        }
        r.profile = Some(p);
    }
    let stop = super::interrupt_flag();
    let bar = progress::bar(r.points.len() * args.repeat, args.quiet);
    let ctx = Context {
        device: &r.device,
        device_label: r.suite.device.to_string(),
        references: &r.references,
        layers: r.suite.layers,
        budget: Budget::new(r.suite.warmup_time_s, r.suite.measure_time_s)
            .with_precision(r.suite.precision),
        seed: r.suite.seed,
        inject_delay: args.inject_delay_us.map(std::time::Duration::from_micros),
        inject_nan_into: args.inject_nan_into,
    };
    let outcome = bench::run(
        &ctx,
        &r.points,
        args.repeat,
        &mut |i, p| {
            bar.set_position(i as u64);
            bar.set_message(progress::label(p));
        },
        &stop,
    );
    bar.finish_and_clear();
    let outcome = outcome?;

    let (mut records, mut failures) = r
        .previous
        .map(|o| (o.records, o.failures))
        .unwrap_or_default();
    records.extend(outcome.records);
    failures.extend(outcome.failures);
    if let Some(p) = &r.profile {
        roofline::place_records(p, &mut records);
    }
    let result = RunResult {
        schema_version: SCHEMA_VERSION,
        mode: job.mode,
        tool: ToolInfo::current(),
        created_at: metadata::now_rfc3339(),
        command: job.argv,
        complete: outcome.complete,
        device: crate::device::info(r.suite.device),
        config: r.suite,
        config_source: r.source,
        verdicts: crate::answer::Verdicts::of(&records),
        records,
        failures,
        profile: r.profile,
    };
    Ok((result, r.outputs))
}

/// Prints the table and writes the JSON, figures and HTML page.
fn write(result: &RunResult, outputs: &Outputs, quiet: bool) -> Result<()> {
    let table = report::table::TableFormat.export(result);
    if outputs.any_stdout() {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    let say = |what: String| {
        if !quiet {
            eprintln!("{what}");
        }
    };
    if let Some(out) = &outputs.json {
        json::write(out, result)?;
        say(format!(
            "wrote {} records to {}",
            result.records.len(),
            out.path().display()
        ));
    }
    for line in outputs.write_figures(result, true)? {
        say(line);
    }
    Ok(())
}

pub fn execute(job: Job) -> Result<i32> {
    let quiet = job.args.quiet;
    let resolved = preflight(&job)?;
    let (result, outputs) = measure(job, resolved)?;
    write(&result, &outputs, quiet)?;
    Ok(if !result.complete {
        exit::INTERRUPTED
    } else if !result.failures.is_empty() {
        exit::VERIFICATION
    } else {
        0
    })
}
