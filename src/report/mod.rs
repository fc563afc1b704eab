//! Where results are written: one module per output format. Reports never measure.

pub mod by_device;
pub mod comparison;
pub mod csv;
pub mod html;
pub mod json;
pub mod markdown;
pub mod networks;
pub mod outputs;
pub mod plot;
pub mod rows;
pub mod table;
pub mod tracking;

use crate::record::RunResult;

/// One output format: a result in, text out. Adding a format touches nothing else.
pub trait Export {
    fn export(&self, result: &RunResult) -> String;
}

/// The formats `report --format` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Markdown,
    Csv,
    Json,
    /// One self-contained page: environment, answer, tables, figures.
    Html,
    /// Bencher Metric Format: latency (ns) and throughput (MAC/s) with 95 % intervals.
    Bmf,
    /// github-action-benchmark's customSmallerIsBetter: median ms per record.
    GithubActionBenchmark,
}

impl Format {
    pub fn exporter(self) -> &'static dyn Export {
        match self {
            Format::Table => &table::TableFormat,
            Format::Markdown => &markdown::MarkdownFormat,
            Format::Csv => &csv::CsvFormat,
            Format::Json => &json::JsonFormat,
            Format::Html => &html::HtmlFormat,
            Format::Bmf => &tracking::BmfFormat,
            Format::GithubActionBenchmark => &tracking::GithubActionBenchmarkFormat,
        }
    }
}
