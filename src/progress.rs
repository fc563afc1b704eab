//! The progress bar on stderr: hidden with `--quiet` or when stderr is not a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::plan::Point;

pub fn bar(len: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar
}

/// Short label of a point for the bar's message.
pub fn label(p: &Point) -> String {
    format!(
        "{} {} {} {} {} b{} t{}",
        p.spec.kind,
        p.spec.variant(),
        p.spec.map,
        p.implementation,
        p.dtype,
        p.batch,
        p.threads
    )
}
