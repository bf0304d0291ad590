//! A reader that closes stdout early (`shmwire demo | head -1`) is a normal
//! end for every subcommand that prints: exit status 0, no panic message
//! (the `out` module of the CLI). Real processes, bounded waits, a private
//! session root per test.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod proc_support;
use proc_support::Kid;

const GUARD: Duration = Duration::from_secs(60);

impl Kid {
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit within {GUARD:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn shmwire(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shmwire"));
    c.args(args)
        .env("SHMWIRE_ROOT", root)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn stderr_of(k: &mut Kid) -> String {
    let mut s = String::new();
    if let Some(mut e) = k.0.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s
}

fn assert_quiet_end(what: &str, status: ExitStatus, stderr: &str) {
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    // The demo's worker, stopped by its driver, leaves quietly: an
    // "interrupted" line misled (nobody interrupted anything).
    assert!(!stderr.contains("interrupted"), "{what}: {stderr}");
    assert_eq!(status.signal(), None, "{what}: killed by a signal");
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: {status:?}, stderr {stderr}"
    );
}

/// A live `shmwire node` of session `s` (so `inspect` and `cleanup` have
/// something to print).
fn start_node(root: &Path) -> Kid {
    let mut c = shmwire(root, &["node", "--session", "s", "--store-capacity", "1M"]);
    c.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut k = Kid(c.spawn().unwrap());
    let mut out = BufReader::new(k.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("node ready"), "{line}");
    // Keep reading its stdout so it never sees a closed pipe here.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    k
}

/// Every printing subcommand, its stdout a pipe whose reader is already
/// gone: its first write fails with EPIPE.
#[test]
fn every_subcommand_ends_quietly_when_stdout_is_closed() {
    let dir = proc_support::scratch("swo", "closed");
    let root = dir.path().join("root");
    let mut node = start_node(&root);
    for args in [
        &["demo", "--tasks", "50"][..],
        &["inspect"],
        &["inspect", "--session", "s"],
        &["inspect", "--json"],
        &["cleanup", "--all-stale", "--dry-run"],
        &["cleanup", "--session", "s", "--dry-run"],
        &["bench", "limit", "--iters", "100"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut c = shmwire(&root, args);
        c.stdout(writer);
        let mut k = Kid(c.spawn().unwrap());
        drop(c); // our copy of the write end
        let status = k.wait();
        let err = stderr_of(&mut k);
        assert_quiet_end(&args.join(" "), status, &err);
    }
    // The node (whose session the demo and cleanup shared) still serves.
    assert!(node.0.try_wait().unwrap().is_none(), "the node died");
    let _ = Command::new("kill")
        .args(["-TERM", &node.0.id().to_string()])
        .status();
    assert!(node.wait().success());
}

/// `shmwire demo | head -1`: the reader closes after the first line, the
/// demo's later lines hit EPIPE.
#[test]
fn demo_piped_into_head_ends_quietly() {
    let dir = proc_support::scratch("swo", "head");
    let root = dir.path().join("root");
    let mut c = shmwire(&root, &["demo", "--tasks", "2000"]);
    c.stdout(Stdio::piped());
    let mut k = Kid(c.spawn().unwrap());
    let mut out = BufReader::new(k.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(!line.is_empty());
    drop(out);
    let status = k.wait();
    let err = stderr_of(&mut k);
    assert_quiet_end("demo | head -1", status, &err);
    // It stopped what it started: nothing of its session is left running.
    let left: Vec<_> = fs::read_dir(&root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
