//! Where time is measured: the timer (with device synchronisation), the adaptive runner
//! (warm-up by time, then samples to a time budget) and the statistics (pure functions).

pub mod runner;
pub mod stats;

pub use runner::{measure, Budget, Measurement};
pub use stats::Summary;
