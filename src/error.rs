//! The one error type at the tool's boundary, and the exit code each kind maps to.
//!
//! | exit | when | error kinds |
//! |---|---|---|
//! | 0 | success (`compare`: the gate passed) | - |
//! | 1 | `compare`: a regression, a baseline record missing from the current run (unless `--allow-missing`), an inconclusive change under `--fail-on-inconclusive` | - (a verdict, not an error) |
//! | 2 | bad input: a flag, a config file, an output path, a thread count above the CPUs, a point whose memory cannot fit, a dtype or device this build cannot run; nothing measured or written | [`Error::Invalid`], [`Error::Config`], [`Error::Unsupported`] |
//! | 3 | an operator failed verification (it was not timed; the others were) | [`Error::Verification`] |
//! | 4 | a run-time failure: writing an output, a backend error, an internal error | [`Error::Io`], [`Error::Candle`] |
//! | 130 | interrupted by Ctrl-C; what finished was written | [`Error::Interrupted`] |
//!
//! `tests/outputs_cli.rs` reaches every code through the binary.

use std::path::PathBuf;

/// Exit codes, documented in README.md ("Exit codes").
pub mod exit {
    /// `compare`'s gate failed (see the table above).
    pub const REGRESSION: i32 = 1;
    /// Bad input: a flag, a config file, an output path. Nothing was measured or written.
    pub const INVALID_INPUT: i32 = 2;
    /// An operator disagreed with the naive reference; it was not timed.
    pub const VERIFICATION: i32 = 3;
    /// Anything else that went wrong at run time (I/O, a backend failure).
    pub const RUNTIME: i32 = 4;
    /// Stopped by Ctrl-C; whatever finished was written.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied value is not allowed. The message names the value and what is allowed.
    #[error("{0}")]
    Invalid(String),
    /// A config file could not be read or is not a valid suite.
    #[error("{path}:{line}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The backend cannot run what was asked (a dtype on a device, a device in this build).
    #[error("{0}")]
    Unsupported(String),
    #[error("verification failed: {0}")]
    Verification(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Candle {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Config { .. } | Error::Unsupported(_) => exit::INVALID_INPUT,
            Error::Verification(_) => exit::VERIFICATION,
            Error::Io { .. } | Error::Candle { .. } => exit::RUNTIME,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a human context to a candle error.
pub trait CandleContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Candle {
            context: context(),
            source,
        })
    }
}

/// Shorthand for `Err(Error::Invalid(format!(...)))`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => {
        Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
