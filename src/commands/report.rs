//! `pconv-bench report`: re-renders saved results; never measures.

use crate::cli::ReportArgs;
use crate::error::Result;
use crate::output::Output;
use crate::report::{json, plot};

pub fn execute(args: &ReportArgs) -> Result<i32> {
    let plot_out = args
        .plot
        .as_deref()
        .map(|p| plot::output(p, "--plot"))
        .transpose()?;
    let roofline_out = args
        .roofline
        .as_deref()
        .map(|p| plot::output(p, "--roofline"))
        .transpose()?;
    if plot_out.iter().chain(&roofline_out).any(Output::is_stdout) {
        return Err(crate::error::Error::Invalid(
            "report prints its text on standard output: give --plot and --roofline a file path, not -".into(),
        ));
    }
    let mut files = args.files.iter();
    let first = files.next().expect("clap requires at least one file");
    let mut merged = json::read(first)?;
    for path in files {
        let more = json::read(path)?;
        merged.records.extend(more.records);
        merged.failures.extend(more.failures);
        merged.complete &= more.complete;
    }
    // The answer is recomputed: merged files can pair records no single file held.
    merged.verdicts = crate::answer::Verdicts::of(&merged.records);
    print!("{}", args.format.exporter().export(&merged));
    if let Some(out) = &plot_out {
        plot::write(out, &merged)?;
    }
    if let Some(out) = &roofline_out {
        plot::write_roofline(out, &merged)?;
    }
    Ok(0)
}
