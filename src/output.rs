//! Where results go. Every output path (`--json`, `--plot`, `--roofline`, ...) is resolved
//! once, before anything is measured, into what it names, and later written the way that
//! kind of path wants:
//!
//! - `-`: standard output (progress and messages stay on standard error);
//! - a new path or an existing regular file: a temp file in the same folder, then a rename,
//!   so an earlier file is replaced whole or not at all;
//! - a symlink: the same, at the file it points to; the link stays a link;
//! - a character device or a named pipe (`/dev/null`, `>(jq .)`): written straight into,
//!   never renamed over.
//!
//! Any write error is one line naming the path (exit 4).

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sink {
    Stdout,
    /// Temp file beside the path, then rename over it.
    Replace(PathBuf),
    /// Opened and written in place.
    Stream(PathBuf),
}

/// A resolved output destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The path as the user gave it, for messages.
    given: PathBuf,
    sink: Sink,
}

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

/// Where a symlink chain ends: the canonical path when the target exists, else the dangling
/// target (relative to the link's folder), so a new file is created there.
fn link_target(path: &Path) -> Result<PathBuf> {
    if let Ok(p) = fs::canonicalize(path) {
        return Ok(p);
    }
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = fs::read_link(&cur).map_err(|e| {
                    Error::Invalid(format!("cannot read the link '{}': {e}", cur.display()))
                })?;
                cur = parent_dir(&cur).join(next);
            }
            _ => return Ok(cur),
        }
    }
    Err(Error::Invalid(format!(
        "'{}' is a chain of more than 40 symlinks",
        path.display()
    )))
}

impl Output {
    /// Resolves `path` for option `flag`, refusing (exit 2) what cannot be written: a
    /// missing or unwritable folder, a directory, a block device or a socket.
    pub fn resolve(path: &Path, flag: &str) -> Result<Output> {
        let given = path.to_path_buf();
        if path.as_os_str() == "-" {
            return Ok(Output {
                given,
                sink: Sink::Stdout,
            });
        }
        let refuse = |why: String| {
            Err(Error::Invalid(format!(
                "cannot write {flag} '{}': {why}",
                path.display()
            )))
        };
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            link_target(path)?
        } else {
            path.to_path_buf()
        };
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => return refuse("it is a directory, give a file path".into()),
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => {
                // Written in place: /proc's fd links (/dev/stdout to a pipe) open as they are.
                let open = if is_link && target.starts_with("/proc") {
                    path.to_path_buf()
                } else {
                    target
                };
                return Ok(Output {
                    given,
                    sink: Sink::Stream(open),
                });
            }
            Ok(m) if !m.is_file() => {
                return refuse(
                    "it is neither a regular file, a character device nor a named pipe".into(),
                )
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return refuse(e.to_string()),
        }
        let dir = parent_dir(&target);
        if !dir.is_dir() {
            return refuse(format!("directory '{}' does not exist", dir.display()));
        }
        let probe = temp_path(&target);
        if let Err(e) = fs::File::create(&probe).and_then(|_| fs::remove_file(&probe)) {
            return refuse(format!(
                "directory '{}' is not writable ({e})",
                dir.display()
            ));
        }
        Ok(Output {
            given,
            sink: Sink::Replace(target),
        })
    }

    /// Resolves an optional path.
    pub fn resolve_opt(path: Option<&Path>, flag: &str) -> Result<Option<Output>> {
        path.map(|p| Output::resolve(p, flag)).transpose()
    }

    pub fn is_stdout(&self) -> bool {
        self.sink == Sink::Stdout
    }

    /// The path as given, for messages.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// Writes `bytes`; any failure is an I/O error naming the path (exit 4), and an earlier
    /// regular file is left whole.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let shown = self.given.display();
        match &self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .map_err(|e| Error::io("writing to standard output ('-')", e))
            }
            Sink::Stream(p) => fs::OpenOptions::new()
                .write(true)
                .open(p)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.flush()))
                .map_err(|e| Error::io(format!("writing '{shown}'"), e)),
            Sink::Replace(target) => {
                replace(target, bytes).map_err(|e| Error::io(format!("writing '{shown}'"), e))
            }
        }
    }
}

/// A temp file in the target's folder, synced, then renamed over the target.
fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(target);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_is_replaced_whole_and_no_temp_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        Output::resolve(&p, "--json")
            .unwrap()
            .write(b"first")
            .unwrap();
        Output::resolve(&p, "--json")
            .unwrap()
            .write(b"second")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unwritable_destinations_are_refused_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join("r.json");
        let err = Output::resolve(&missing, "--json").unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("nope"),
            "{err}"
        );
        let err = Output::resolve(dir.path(), "--json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        assert!(Output::resolve(&dir.path().join("ok.json"), "--json").is_ok());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn links_devices_and_dash_resolve_to_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("real.json");
        fs::write(&file, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let out = Output::resolve(&link, "--json").unwrap();
        out.write(b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&file).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink("made.json", &dangling).unwrap();
        Output::resolve(&dangling, "--json")
            .unwrap()
            .write(b"x")
            .unwrap();
        assert_eq!(fs::read(dir.path().join("made.json")).unwrap(), b"x");
        assert!(fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink());
        // /dev/null is written into, not replaced.
        let null = Output::resolve(Path::new("/dev/null"), "--json").unwrap();
        assert_eq!(null.sink, Sink::Stream(PathBuf::from("/dev/null")));
        null.write(b"gone").unwrap();
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        assert!(Output::resolve(Path::new("-"), "--json")
            .unwrap()
            .is_stdout());
    }

    #[test]
    fn a_device_that_fails_writes_is_an_io_error_naming_the_path() {
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: no /dev/full on this system");
            return;
        }
        let full = Output::resolve(Path::new("/dev/full"), "--json").unwrap();
        let err = full.write(b"{}").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::RUNTIME);
        assert!(err.to_string().contains("/dev/full"), "{err}");
        assert!(fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
