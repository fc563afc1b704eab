//! One module per subcommand: each turns parsed arguments into work and an exit code.

pub mod calibrate;
pub mod compare;
pub mod measure;
pub mod merge;
pub mod model;
pub mod report;
pub mod run;
pub mod sweep;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag set by Ctrl-C: long runs stop after the point in flight and keep what finished.
/// A second Ctrl-C exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // Installing can only fail if a handler exists already; then Ctrl-C keeps its default.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(crate::error::exit::INTERRUPTED);
        }
        eprintln!("\ninterrupted: finishing the current point, then writing what was measured (Ctrl-C again to abort)");
    });
    flag
}
