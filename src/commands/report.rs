//! `pconv-bench report`: re-renders saved results; never measures.

use crate::cli::{ReportArgs, ReportBy};
use crate::error::{Error, Result};
use crate::report::by_device::{self, PaperColumns};
use crate::report::outputs::{Outputs, Paths};
use crate::report::{html, json, markdown, table, Format};

pub fn execute(args: &ReportArgs) -> Result<i32> {
    let outputs = Outputs::resolve(Paths {
        text: args.output.as_deref(),
        plot: args.plot.as_deref(),
        roofline: args.roofline.as_deref(),
        ..Paths::default()
    })?;
    // Without --output the text goes to standard output, so no figure may.
    if outputs.text.is_none() && outputs.any_stdout() {
        return Err(Error::Invalid(
            "report prints its text on standard output: give --plot and --roofline a file path, not -".into(),
        ));
    }
    outputs.refuse_replacing(&args.files)?;
    let files = args
        .files
        .iter()
        .map(|p| Ok((p.clone(), json::read(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let text = match args.by {
        Some(ReportBy::Device) => {
            if outputs.plot.is_some() || outputs.roofline.is_some() {
                return Err(Error::Invalid(
                    "--by device draws no figures: report each file with --plot, or drop --by"
                        .into(),
                ));
            }
            let paper = match (args.paper, args.no_paper) {
                (true, _) => PaperColumns::On,
                (_, true) => PaperColumns::Off,
                _ => PaperColumns::Auto,
            };
            let rows = by_device::build(&files, paper)?;
            match args.format {
                Format::Table => table::render(&rows),
                Format::Markdown => markdown::render(&rows),
                Format::Csv => crate::report::csv::render(&rows),
                Format::Html => html::page(&rows.title, &html::table(&rows, "by-device")),
                Format::Json | Format::Bmf | Format::GithubActionBenchmark => {
                    return Err(Error::Invalid(format!(
                        "--by device writes table, markdown, csv or html, not {}: give the files without --by",
                        match args.format {
                            Format::Json => "json",
                            Format::Bmf => "bmf",
                            _ => "github-action-benchmark",
                        }
                    )))
                }
            }
        }
        None => {
            // Each file answers on its own: records of different runs were not measured side
            // by side.
            let answers: Vec<_> = files
                .iter()
                .filter_map(|(_, f)| crate::answer::Verdicts::of(&f.records))
                .flat_map(|v| v.answers)
                .collect();
            let mut merged = files[0].1.clone();
            for (_, more) in &files[1..] {
                merged.records.extend(more.records.iter().cloned());
                merged.failures.extend(more.failures.iter().cloned());
                merged.complete &= more.complete;
            }
            merged.verdicts = (!answers.is_empty()).then_some(crate::answer::Verdicts {
                confidence: crate::answer::CONFIDENCE,
                answers,
            });
            let text = match args.format {
                // One environment per file: they may come from different machines and runs.
                Format::Html => html::report_of_files(&merged, &files),
                _ => args.format.exporter().export(&merged),
            };
            outputs.write_figures(&merged, false)?;
            text
        }
    };
    match &outputs.text {
        Some(out) => out.write(text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(0)
}
