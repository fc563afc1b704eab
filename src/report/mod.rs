//! Where results are written: one module per output format. Reports never measure.

pub mod comparison;
pub mod csv;
pub mod json;
pub mod markdown;
pub mod plot;
pub mod rows;
pub mod table;

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
}

impl Format {
    pub fn exporter(self) -> &'static dyn Export {
        match self {
            Format::Table => &table::TableFormat,
            Format::Markdown => &markdown::MarkdownFormat,
            Format::Csv => &csv::CsvFormat,
            Format::Json => &json::JsonFormat,
        }
    }
}

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The folder a file will be written into ("." for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    parent_dir(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Checks, before any work, that `path` can be written: its folder exists and accepts a file.
/// `flag` names the option in the message.
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(Error::Invalid(format!(
            "cannot write {flag} '{}': directory '{}' does not exist",
            path.display(),
            dir.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Invalid(format!(
            "cannot write {flag} '{}': it is a directory, give a file path",
            path.display()
        )));
    }
    let probe = temp_path(path);
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Invalid(format!(
                "cannot write {flag} '{}': directory '{}' is not writable ({e})",
                path.display(),
                dir.display()
            ))
        })
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, synced, then renamed
/// over the target, so an earlier file is never left truncated or half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(format!("writing '{}'", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_destinations_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join("r.json");
        let err = check_writable(&missing, "--json").unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("nope"),
            "{err}"
        );
        let err = check_writable(dir.path(), "--json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(check_writable(&dir.path().join("ok.json"), "--json").is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
