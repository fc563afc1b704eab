//! The files one command writes (`run`, `sweep` and `model` through the measuring engine, and
//! `report`), resolved and checked against each other before anything is measured or read,
//! then written together.

use std::path::{Path, PathBuf};

use super::{html, plot};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::record::RunResult;

/// Where a command was asked to write, by flag.
#[derive(Debug, Default, Clone, Copy)]
pub struct Paths<'a> {
    /// `--json`: the results file.
    pub json: Option<&'a Path>,
    /// `report --output`: the report's text.
    pub text: Option<&'a Path>,
    /// `--plot`: the figures (SVG).
    pub plot: Option<&'a Path>,
    /// `--roofline`: the roofline chart (SVG).
    pub roofline: Option<&'a Path>,
    /// `--html`: the self-contained page.
    pub html: Option<&'a Path>,
}

/// Resolved outputs: each names a regular file, a stream or standard output.
#[derive(Debug)]
pub struct Outputs {
    pub json: Option<Output>,
    pub text: Option<Output>,
    pub plot: Option<Output>,
    pub roofline: Option<Output>,
    pub html: Option<Output>,
}

impl Outputs {
    /// Resolves every path (refusing what cannot be written), then refuses two outputs on
    /// one file and more than one on standard output.
    pub fn resolve(p: Paths) -> Result<Self> {
        let svg = |path: Option<&Path>, flag| path.map(|p| plot::output(p, flag)).transpose();
        let outputs = Self {
            json: Output::resolve_opt(p.json, "--json")?,
            text: Output::resolve_opt(p.text, "--output")?,
            plot: svg(p.plot, "--plot")?,
            roofline: svg(p.roofline, "--roofline")?,
            html: Output::resolve_opt(p.html, "--html")?,
        };
        if outputs.all().filter(|o| o.is_stdout()).count() > 1 {
            return Err(Error::Invalid(format!(
                "only one of {} can be - (standard output)",
                outputs.flags()
            )));
        }
        let all: Vec<&Output> = outputs.all().collect();
        for (i, a) in all.iter().enumerate() {
            if let Some(b) = all[i + 1..].iter().find(|b| a.collides_with(b)) {
                return Err(Error::Invalid(format!(
                    "'{}' and '{}' name the same file: give each output ({}) its own path",
                    a.path().display(),
                    b.path().display(),
                    outputs.flags()
                )));
            }
        }
        Ok(outputs)
    }

    fn all(&self) -> impl Iterator<Item = &Output> {
        self.json
            .iter()
            .chain(&self.text)
            .chain(&self.plot)
            .chain(&self.roofline)
            .chain(&self.html)
    }

    /// The flags given, for messages.
    fn flags(&self) -> String {
        let given = [
            (self.json.is_some(), "--json"),
            (self.text.is_some(), "--output"),
            (self.plot.is_some(), "--plot"),
            (self.roofline.is_some(), "--roofline"),
            (self.html.is_some(), "--html"),
        ];
        let names: Vec<&str> = given.iter().filter(|g| g.0).map(|g| g.1).collect();
        names.join(", ")
    }

    pub fn any_stdout(&self) -> bool {
        self.all().any(Output::is_stdout)
    }

    /// Refuses an output that would replace one of the files being read.
    pub fn refuse_replacing(&self, inputs: &[PathBuf]) -> Result<()> {
        for out in self.all() {
            if let Some(input) = inputs.iter().find(|f| out.replaces(f)) {
                return Err(Error::Invalid(format!(
                    "'{}' would replace the results file '{}' being reported: write the report elsewhere",
                    out.path().display(),
                    input.display()
                )));
            }
        }
        Ok(())
    }

    /// Writes the figures, the roofline chart and the HTML page of `result` where asked;
    /// returns one line per file written. With no records, `--plot` is skipped when `skip_empty_plot` (a run whose
    /// every point failed still writes its JSON) and refused otherwise (`report`).
    pub fn write_figures(&self, result: &RunResult, skip_empty_plot: bool) -> Result<Vec<String>> {
        let mut said = Vec::new();
        if let Some(out) = &self.plot {
            if !(skip_empty_plot && result.records.is_empty()) {
                plot::write(out, result)?;
                said.push(format!("wrote figures to {}", out.path().display()));
            }
        }
        if let Some(out) = &self.roofline {
            plot::write_roofline(out, result)?;
            said.push(format!(
                "wrote the roofline chart to {}",
                out.path().display()
            ));
        }
        if let Some(out) = &self.html {
            out.write(html::report(result).as_bytes())?;
            said.push(format!("wrote the HTML report to {}", out.path().display()));
        }
        Ok(said)
    }
}
