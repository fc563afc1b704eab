//! `pconv-bench report`: re-renders saved results; never measures.

use crate::cli::ReportArgs;
use crate::error::Result;
use crate::report::{json, plot};

pub fn execute(args: &ReportArgs) -> Result<i32> {
    for path in args.plot.iter().chain(&args.roofline) {
        plot::check_path(path)?;
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
    print!("{}", args.format.exporter().export(&merged));
    if let Some(path) = &args.plot {
        plot::write(path, &merged)?;
    }
    if let Some(path) = &args.roofline {
        plot::write_roofline(path, &merged)?;
    }
    Ok(0)
}
