//! `pconv-bench report`: re-renders saved results; never measures.

use crate::cli::{ReportArgs, ReportBy};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::report::by_device::{self, PaperColumns};
use crate::report::{html, json, markdown, plot, table, Format};

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
    let text_out = args
        .output
        .as_deref()
        .map(|p| Output::resolve(p, "--output"))
        .transpose()?;
    let text_on_stdout = text_out.as_ref().is_none_or(Output::is_stdout);
    let figures: Vec<&Output> = plot_out.iter().chain(&roofline_out).collect();
    if text_on_stdout && figures.iter().any(|o| o.is_stdout()) {
        return Err(Error::Invalid(
            "report prints its text on standard output: give --plot and --roofline a file path, not -".into(),
        ));
    }
    let outputs: Vec<&Output> = text_out.iter().chain(figures).collect();
    for (i, a) in outputs.iter().enumerate() {
        if let Some(b) = outputs[i + 1..].iter().find(|b| a.collides_with(b)) {
            return Err(Error::Invalid(format!(
                "'{}' and '{}' name the same file (or both standard output): give each output its own path",
                a.path().display(),
                b.path().display()
            )));
        }
        if let Some(input) = args.files.iter().find(|f| a.replaces(f)) {
            return Err(Error::Invalid(format!(
                "'{}' would replace the results file '{}' being reported: write the report elsewhere",
                a.path().display(),
                input.display()
            )));
        }
    }
    let files = args
        .files
        .iter()
        .map(|p| Ok((p.clone(), json::read(p)?)))
        .collect::<Result<Vec<_>>>()?;
    let text = match args.by {
        Some(ReportBy::Device) => {
            if plot_out.is_some() || roofline_out.is_some() {
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
            if let Some(out) = &plot_out {
                plot::write(out, &merged)?;
            }
            if let Some(out) = &roofline_out {
                plot::write_roofline(out, &merged)?;
            }
            text
        }
    };
    match &text_out {
        Some(out) => out.write(text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(0)
}
