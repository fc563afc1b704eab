//! Where results go. Every output path (`--json`, `--plot`, `--roofline`, ...) is resolved
//! once, before anything is measured, into what it names, and later written the way that
//! kind of path wants:
//!
//! - `-`, `/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`: this process's standard output,
//!   written through its handle (so `--json /dev/stdout | jq .` and `--json /dev/stdout >
//!   f` both get the JSON after whatever was printed before; the table goes to standard
//!   error); `/dev/stderr` and fd 2 likewise to standard error;
//! - another open descriptor (`/dev/fd/63` from `--json >(jq .)`): opened and appended to;
//! - a new path or an existing regular file: a temp file in the same folder, then a rename,
//!   so an earlier file is replaced whole or not at all (its permission bits kept);
//! - a symlink: the same, at the file it points to; the link stays a link;
//! - a character device or a named pipe (`/dev/null`, a `mkfifo`): appended to, never
//!   renamed over.
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
    Stderr,
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

/// The descriptor a path names when it is one of this process's descriptor links
/// (`/dev/fd/N`, `/proc/self/fd/N`, `/proc/thread-self/fd/N`, `/proc/<our pid>/fd/N`).
fn descriptor_name(path: &Path) -> Option<u32> {
    let text = path.to_str()?;
    let pid = std::process::id().to_string();
    let rest = text
        .strip_prefix("/dev/fd/")
        .or_else(|| text.strip_prefix("/proc/self/fd/"))
        .or_else(|| text.strip_prefix("/proc/thread-self/fd/"))
        .or_else(|| {
            text.strip_prefix("/proc/")?
                .strip_prefix(pid.as_str())?
                .strip_prefix("/fd/")
        })?;
    rest.parse().ok()
}

/// Follows a symlink chain (at most 40 links) and returns the descriptor of the first
/// descriptor link on it (`/dev/stdout` -> `/proc/self/fd/1`: 1), if any. Such links must
/// not be resolved further: their targets (`pipe:[123]`, a file the shell opened) are not
/// paths to write to.
fn descriptor_on_chain(path: &Path) -> Result<Option<u32>> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        if let Some(fd) = descriptor_name(&cur) {
            return Ok(Some(fd));
        }
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = fs::read_link(&cur).map_err(|e| {
                    Error::Invalid(format!("cannot read the link '{}': {e}", cur.display()))
                })?;
                cur = parent_dir(&cur).join(next);
            }
            _ => return Ok(None),
        }
    }
    Err(Error::Invalid(format!(
        "'{}' is a chain of more than 40 symlinks",
        path.display()
    )))
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
        if let Some(fd) = descriptor_on_chain(path)? {
            let sink = match fd {
                1 => Sink::Stdout,
                2 => Sink::Stderr,
                _ => match fs::metadata(path) {
                    Ok(m) if m.is_dir() => {
                        return refuse("it is a directory, give a file path".into())
                    }
                    Ok(_) => Sink::Stream(path.to_path_buf()),
                    Err(e) => return refuse(format!("descriptor {fd} is not open ({e})")),
                },
            };
            return Ok(Output { given, sink });
        }
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            link_target(path)?
        } else {
            path.to_path_buf()
        };
        match fs::metadata(&target) {
            Ok(m) if m.is_dir() => return refuse("it is a directory, give a file path".into()),
            Ok(m) if m.file_type().is_char_device() || m.file_type().is_fifo() => {
                return Ok(Output {
                    given,
                    sink: Sink::Stream(target),
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

    /// True when this output is this process's standard output (then tables and messages
    /// go to standard error).
    pub fn is_stdout(&self) -> bool {
        self.sink == Sink::Stdout
    }

    /// True when the path names a stream (standard output or error, a descriptor, a device,
    /// a named pipe) rather than a file, so its name says nothing about its format.
    pub fn is_stream(&self) -> bool {
        !matches!(self.sink, Sink::Replace(_))
    }

    /// The path as given, for messages.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// The file this output replaces, made absolute through its folder, if it is a file.
    fn file(&self) -> Option<PathBuf> {
        let Sink::Replace(target) = &self.sink else {
            return None;
        };
        let dir = fs::canonicalize(parent_dir(target)).ok()?;
        Some(dir.join(target.file_name()?))
    }

    /// True when both outputs would write the same file (or both standard output).
    pub fn collides_with(&self, other: &Output) -> bool {
        match (self.file(), other.file()) {
            (Some(a), Some(b)) => a == b,
            _ => self.is_stdout() && other.is_stdout(),
        }
    }

    /// True when this output would replace the file at `path` (an input, say).
    pub fn replaces(&self, path: &Path) -> bool {
        match (self.file(), fs::canonicalize(path)) {
            (Some(a), Ok(b)) => a == b,
            _ => false,
        }
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
            Sink::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(bytes)
                    .and_then(|_| out.flush())
                    .map_err(|e| Error::io(format!("writing to standard error ('{shown}')"), e))
            }
            Sink::Stream(p) => fs::OpenOptions::new()
                .append(true)
                .open(p)
                .and_then(|mut f| f.write_all(bytes).and_then(|_| f.flush()))
                .map_err(|e| Error::io(format!("writing '{shown}'"), e)),
            Sink::Replace(target) => {
                replace(target, bytes).map_err(|e| Error::io(format!("writing '{shown}'"), e))
            }
        }
    }
}

/// A temp file in the target's folder, synced, then renamed over the target; an existing
/// target's permission bits (and, where this process may set them, owner and group) carry
/// over to the new file.
fn replace(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let tmp = temp_path(target);
    let old = fs::metadata(target).ok();
    let _ = fs::remove_file(&tmp); // a leftover of a killed process with this pid
    let result = (|| {
        // Created with the old file's permission bits, so contents never sit in a file more
        // readable than the one they replace.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(
                old.as_ref()
                    .map_or(0o666, |m| m.permissions().mode() & 0o7777),
            )
            .open(&tmp)?;
        if let Some(old) = &old {
            // The umask may have narrowed the bits: set them exactly.
            f.set_permissions(old.permissions())?;
            // Only root may give a file away; anyone else keeps their own ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
        }
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
    fn a_replaced_file_keeps_its_permission_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shared.json");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        Output::resolve(&p, "--json")
            .unwrap()
            .write(b"new")
            .unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[test]
    fn descriptor_links_are_recognised_without_following_them() {
        assert_eq!(descriptor_name(Path::new("/dev/fd/63")), Some(63));
        assert_eq!(descriptor_name(Path::new("/proc/self/fd/1")), Some(1));
        let own = format!("/proc/{}/fd/2", std::process::id());
        assert_eq!(descriptor_name(Path::new(&own)), Some(2));
        assert_eq!(
            descriptor_name(Path::new("/proc/1/fd/1")),
            None,
            "another process"
        );
        assert_eq!(descriptor_name(Path::new("/tmp/fd/1")), None);
        // /dev/stdout is a link to /proc/self/fd/1.
        assert_eq!(
            Output::resolve(Path::new("/dev/stdout"), "--json")
                .unwrap()
                .sink,
            Sink::Stdout
        );
        assert_eq!(
            Output::resolve(Path::new("/dev/stderr"), "--json")
                .unwrap()
                .sink,
            Sink::Stderr
        );
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
        assert!(
            Path::new("/dev/full").exists(),
            "this test needs Linux's /dev/full"
        );
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
