//! Output paths of every kind, write failures, memory and thread limits, and every exit
//! code, through the real binary.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One small operator, minimal budgets: enough to produce a results file fast.
fn tiny(json: &str) -> Vec<&str> {
    quick_run_args(json, &["--ops", "dwconv", "--impl", "native"])
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn json_dash_writes_only_valid_json_on_stdout() {
    let out = run(&tiny("-"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    assert_eq!(v["tool"]["name"], "pconv-bench");
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    // The table went to stderr instead.
    assert!(stderr(&out).contains("median ms"), "{}", stderr(&out));
}

#[test]
fn a_symlink_is_kept_and_its_target_written() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("real.json");
    std::fs::write(&target, "earlier").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let out = run(&tiny(link.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(read_json(&target)["tool"]["name"], "pconv-bench");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp file left"
    );
}

#[test]
fn a_named_pipe_is_fed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("results.pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let out = run(&tiny(fifo.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = reader.join().unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).expect("the pipe got JSON");
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

/// A link to a device that refuses writes (/dev/full: every write fails with "no space"):
/// exit 4 naming the path, and neither the link nor the device is replaced.
#[test]
fn a_full_device_gives_exit_4_and_stays_a_device() {
    assert!(
        Path::new("/dev/full").exists(),
        "this test needs Linux's /dev/full"
    );
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("full.json");
    std::os::unix::fs::symlink("/dev/full", &link).unwrap();
    let out = run(&tiny(link.to_str().unwrap()));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(link.to_str().unwrap()), "{err}");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
}

/// A folder no one may create files in is refused before anything is measured, with the
/// earlier file untouched: /proc refuses new files even to root; a folder made read-only
/// refuses them to everyone else.
#[test]
fn an_unwritable_folder_is_refused_before_measuring() {
    let out = run(&tiny("/proc/pconv-bench-results.json"));
    assert_bad_input(&out, "/proc", "not writable");
    if !is_root() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::write(ro.join("r.json"), "earlier").unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
        let p = ro.join("r.json");
        let out = run(&tiny(p.to_str().unwrap()));
        assert_bad_input(&out, "read-only folder", "not writable");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "earlier");
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

/// `--json /dev/stdout` is standard output whatever it is connected to: a pipe (as in
/// `| jq .`) gets only the JSON, and so does a file the shell opened (`> f`), which is
/// written through, not replaced.
#[test]
fn dev_stdout_is_standard_output_to_a_pipe_or_a_file() {
    let out = run(&tiny("/dev/stdout"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("stdout is JSON");
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert!(
        stderr(&out).contains("median ms"),
        "the table goes to stderr"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("shell.json");
    let file = std::fs::File::create(&f).unwrap();
    let status = Command::new(BIN)
        .args(tiny("/dev/stdout"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::from(file))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let v = read_json(&f);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Process substitution (`--json >(cat > f)`) hands the program `/dev/fd/63`, a pipe: it is
/// written into, and plots accept such streams whatever their name.
#[test]
fn process_substitution_and_streamed_plots_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("substituted.json");
    let mut args: Vec<String> = tiny("PLACEHOLDER")
        .into_iter()
        .map(|a| format!("'{a}'"))
        .collect();
    let json_at = args.iter().position(|a| a == "'PLACEHOLDER'").unwrap();
    args[json_at] = r#">(cat > "$1")"#.into();
    let script = format!(
        r#"'{BIN}' {} --plot /dev/null; rc=$?; wait $!; exit $rc"#,
        args.join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script, "_", f.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&f);
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
}

/// A write that fails half-way (here: the file-size limit, which binds root too) is exit 4,
/// and the earlier results file is left whole.
#[test]
fn a_failed_write_leaves_the_earlier_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    std::fs::write(&p, "earlier results").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(tiny(p.to_str().unwrap()))
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 512,
                rlim_max: 512,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("r.json"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "earlier results");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn an_oversized_batch_is_refused_in_under_a_second_with_the_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    let t0 = Instant::now();
    let out = run(&quick_run_args(
        p.to_str().unwrap(),
        &[
            "--ops",
            "conv",
            "--shapes",
            "96x56x56",
            "--batch",
            "100000000",
        ],
    ));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_bad_input(&out, "oversized batch", "batch 100000000: needs about");
    assert!(stderr(&out).contains("available"), "{}", stderr(&out));
    assert!(!p.exists());
    // A size beyond 64 bits is refused too, not wrapped.
    let out = run(&quick_run_args(
        p.to_str().unwrap(),
        &[
            "--ops",
            "conv",
            "--shapes",
            "4000000x4000000x4000000",
            "--kernel",
            "3",
        ],
    ));
    assert_bad_input(&out, "overflowing shape", "2^64 bytes");
}

#[test]
fn an_oversized_thread_count_is_refused_unless_meant() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    let t0 = Instant::now();
    let out = run(&quick_run_args(
        p.to_str().unwrap(),
        &["--threads", "100000"],
    ));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_bad_input(
        &out,
        "threads",
        &format!("threads 100000 is more than the {cpus} logical CPUs"),
    );
    let out = run(&["model", "fasternet-t0", "--threads", "100000", "--quiet"]);
    assert_bad_input(&out, "model threads", "--oversubscribe");
    // Deliberately oversubscribed (a few threads more than CPUs): runs, and is recorded.
    let threads = (cpus + 1).to_string();
    let out = run(&quick_run_args(
        p.to_str().unwrap(),
        &[
            "--ops",
            "dwconv",
            "--impl",
            "native",
            "--threads",
            &threads,
            "--oversubscribe",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = read_json(&p);
    assert_eq!(v["config"]["oversubscribe"], true);
    assert_eq!(v["records"][0]["threads"].as_u64(), Some(cpus as u64 + 1));
}

/// Every exit code of the table in `src/error.rs`, through the binary.
#[test]
fn every_exit_code_is_reachable_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    let ps = p.to_str().unwrap();
    // 0: success.
    assert_eq!(run(&tiny(ps)).status.code(), Some(0));
    // 1: the gate failed (a 1 ms delay per run on a ~0.1 ms operator).
    let slow = dir.path().join("slow.json");
    let out = run(&quick_run_args(
        slow.to_str().unwrap(),
        &[
            "--ops",
            "dwconv",
            "--impl",
            "native",
            "--inject-delay-us",
            "1000",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = run(&["compare", ps, slow.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    // 2: bad input.
    assert_bad_input(
        &run(&tiny("/nonexistent-dir/r.json")),
        "2",
        "does not exist",
    );
    // 3: a verification failure: that point is listed, the others are timed.
    let out = run(&quick_run_args(
        ps,
        &[
            "--ops",
            "dwconv,pwconv",
            "--impl",
            "native",
            "--inject-nan-into",
            "dwconv",
        ],
    ));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v = read_json(&p);
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures
        .iter()
        .all(|f| f["op"] == "dwconv" && f["error"].as_str().unwrap().contains("non-finite")));
    assert!(v["records"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["op"] == "pwconv"));
    // 4: a write error.
    if Path::new("/dev/full").exists() {
        let out = run(&tiny("/dev/full"));
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    }
    // 130: Ctrl-C finishes the point in flight and writes what finished.
    let mut child = Command::new(BIN)
        .args(quick_run_args(ps, &["--measure-time", "0.3"]))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let v = read_json(&p);
    assert_eq!(v["complete"], false);
    assert!(!v["records"].as_array().unwrap().is_empty());
}
