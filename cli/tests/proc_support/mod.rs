//! What the CLI's process tests share: a private scratch root, a watchdog
//! that ends a stuck test process, a child that is killed and reaped on
//! every way out, and reading a child's output up to a marker. Included
//! with `mod proc_support;` by each test binary that needs it.
#![allow(dead_code)] // not every test binary uses every helper

#[path = "../../../tests/job_control/mod.rs"]
mod job_control;
#[allow(unused_imports)] // not every test binary stops a process
pub use job_control::{continue_process, stop_if_running, stop_process};

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A private (0700) scratch directory named `<tag>-<pid>-<test>-…`, on
/// tmpfs when there is one; removed when dropped.
pub fn scratch(tag: &str, test: &str) -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("{tag}-{}-{test}-", std::process::id()))
        .tempdir_in(base)
        .expect("scratch dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Ends the whole test process if a test makes no progress for two
/// minutes; dropping it disarms it.
pub struct Watchdog(Arc<AtomicBool>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Arms a [`Watchdog`] for `test`.
pub fn watchdog(test: &'static str) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            if d.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{test}: not finished within 120 s");
        std::process::exit(101);
    });
    Watchdog(done)
}

/// A child process, killed and reaped on every path out of the test.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Kid {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, then reap.
    pub fn sigkill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }

    /// Waits at most `within` for the child to exit by itself; its status,
    /// or `None` if it still runs (the drop then kills and reaps it).
    pub fn wait_timeout(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`).
    pub fn signal(&self, signal: &str) {
        let st = std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits at most `within` for the child to exit by itself
    /// ([`Kid::wait_timeout`]) and returns its status with what it wrote to
    /// its (piped) stderr (read only once it exited).
    pub fn wait_and_collect(
        &mut self,
        within: std::time::Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let status = self.wait_timeout(within);
        let mut err = String::new();
        if status.is_some() {
            if let Some(mut e) = self.0.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
        }
        (status, err)
    }

    /// Sends `signal` (as `kill` spells it: `-TERM`), waits at most
    /// `within` for the exit, and returns the status with what the child
    /// wrote to its (piped) stderr.
    pub fn signal_and_collect(
        &mut self,
        signal: &str,
        within: std::time::Duration,
    ) -> (std::process::ExitStatus, String) {
        self.signal(signal);
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after {signal}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let mut err = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        (status, err)
    }
}

/// Reads lines until one contains `marker`; returns the text after it.
pub fn wait_for(out: &mut BufReader<ChildStdout>, marker: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child exited before {marker}");
        if let Some(at) = line.find(marker) {
            return line[at + marker.len()..].trim().to_owned();
        }
    }
}

/// Starts `shmwire node <args> --root <root>` (stdout piped, stderr
/// inherited) and reads its output up to the ready line; returns the
/// child, its stdout (the caller must keep draining it so the node never
/// blocks on a full pipe) and the ready line's text after `node ready:`.
pub fn spawn_node(root: &Path, args: &[&str]) -> (Kid, BufReader<ChildStdout>, String) {
    spawn_node_with(root, args, Stdio::inherit())
}

/// As [`spawn_node`], with the node's stderr going to `stderr` (e.g.
/// `Stdio::piped()`, taken from `kid.0.stderr`).
pub fn spawn_node_with(
    root: &Path,
    args: &[&str],
    stderr: Stdio,
) -> (Kid, BufReader<ChildStdout>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .arg("node")
        .args(args)
        .arg("--root")
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("run shmwire node");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let kid = Kid(child);
    let ready = wait_for(&mut out, "node ready:");
    (kid, out, ready)
}

/// A small tmpfs mounted for a test (needs root, as in CI), unmounted
/// (lazily) when dropped.
pub struct SmallTmpfs(pub tempfile::TempDir);

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=…`, e.g. `"2m"`) on a fresh
    /// temporary directory; the error says why it could not (not root, no
    /// `mount`).
    pub fn mount(size: &str) -> Result<Self, String> {
        Self::mount_opts(&format!("size={size}"))
    }

    /// Mounts a tmpfs with options `opts` (`mount -o`, e.g.
    /// `"size=1m,nr_inodes=16"`; mode 0700 is added).
    pub fn mount_opts(opts: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("{opts},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir))
    }

    /// Its mount point.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Takes every inode left with empty files `inode-<n>`, then removes
    /// `leave` of them, so exactly `leave` inodes are free.
    pub fn fill_inodes_leaving(&self, leave: usize) {
        let mut made = Vec::new();
        while let Ok(f) = fs::File::create(self.path().join(format!("inode-{}", made.len()))) {
            drop(f);
            made.push(self.path().join(format!("inode-{}", made.len())));
        }
        for p in made.iter().rev().take(leave) {
            fs::remove_file(p).unwrap();
        }
    }

    /// Fills it with a file `filler` until a write fails (full), then
    /// gives `leave` bytes back (tmpfs frees the truncated pages).
    pub fn fill_leaving(&self, leave: u64) {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = fs::File::create(&path).unwrap();
        let chunk = vec![0xAB_u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(leave)).unwrap();
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Runs `shmwire` with `args` and `SHMWIRE_ROOT` naming first a missing
/// directory, then an existing empty one (mode 0700), each run expected to
/// succeed: a command whose session lives only as long as it runs makes a
/// missing root itself and removes it again, empty; one that existed stays
/// (and is left empty). Returns the scratch directory and the path of the
/// missing root (for more checks on it).
pub fn check_a_root_it_made_is_removed(args: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let scratch = tempfile::tempdir().unwrap();
    let run = |root: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(args)
            .env("SHMWIRE_ROOT", root)
            .output()
            .expect("run shmwire");
        assert!(out.status.success(), "{args:?}: {out:?}");
    };
    let missing = scratch.path().join("missing-root");
    run(&missing);
    assert!(!missing.exists(), "{args:?} left the root it made");
    let existing = scratch.path().join("existing-root");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o700)).unwrap();
    run(&existing);
    assert!(existing.is_dir(), "{args:?} removed a root it did not make");
    assert_eq!(fs::read_dir(&existing).unwrap().count(), 0);
    (scratch, missing)
}
