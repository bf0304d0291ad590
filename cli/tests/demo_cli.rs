//! `shmwire demo` end to end: a driver process and an actor worker process
//! trade actor tasks over shared memory and TCP; the demo itself checks every
//! reply (ordering, exactly once, running totals) and fails otherwise.

use std::process::Command;

mod proc_support;

fn run_demo(extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["demo", "--tasks", "300", "--window", "8"])
        .args(extra)
        .output()
        .expect("run shmwire demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn session_dir(stdout: &str) -> std::path::PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("shmwire demo: driver pid"))
        .expect("session line");
    line.rsplit(' ').next().expect("session path").into()
}

#[test]
fn demo_runs_both_transports_and_cleans_up() {
    let stdout = run_demo(&[]);
    assert!(stdout.contains("connected over Shm"), "{stdout}");
    assert!(stdout.contains("connected over Tcp"), "{stdout}");
    // The demo's actor is a native (Rust) class: its descriptor renders
    // the Rust way (`Counter::add()`; a Python one would be `Counter.add()`).
    assert!(
        stdout.contains("default task name \"Counter::add()\""),
        "{stdout}"
    );
    // Each caller runs two phases adding 1..=300 (45150 each) to the same
    // actor: 90300 after the shm caller, 180600 after the TCP caller.
    assert!(
        stdout.contains("actor total after this caller: 90300"),
        "{stdout}"
    );
    assert!(
        stdout.contains("actor total after this caller: 180600"),
        "{stdout}"
    );
    assert!(stdout.contains("ok: every reply arrived once"), "{stdout}");
    assert!(
        !session_dir(&stdout).exists(),
        "session directory left behind"
    );
}

#[test]
fn demo_over_shm_with_every_wait_strategy() {
    for wait in ["spin", "park", "eventfd"] {
        let stdout = run_demo(&["--transport", "shm", "--wait", wait]);
        assert!(
            stdout.contains(&format!("shared memory ({wait})")),
            "{stdout}"
        );
        assert!(
            stdout.contains("actor total after this caller: 90300"),
            "{stdout}"
        );
        assert!(
            !session_dir(&stdout).exists(),
            "session directory left behind"
        );
    }
}

/// An interrupted demo worker leaves nothing (issue 13): `__demo-worker`
/// started alone in a private root and stopped by SIGINT (a terminal's
/// Ctrl-C), then another by SIGTERM, exits and its session directory is
/// gone. Every wait is bounded; the child is killed and reaped on the way
/// out.
#[test]
fn an_interrupted_demo_worker_removes_its_session() {
    use std::time::{Duration, Instant};
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    for (n, signal) in ["-INT", "-TERM"].into_iter().enumerate() {
        let session = format!("intr{n}");
        let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["__demo-worker", "--session", &session, "--worker"])
            .arg("ab".repeat(28))
            .env("SHMWIRE_ROOT", &root)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the demo worker");
        let mut child = proc_support::Kid(child);
        let dir = root.join(&session);
        // Serving once its directory entry is there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_dir(&dir).is_ok_and(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".entry"))
        }) {
            assert!(Instant::now() < deadline, "the worker never registered");
            std::thread::sleep(Duration::from_millis(10));
        }
        let (status, err) = child.signal_and_collect(signal, Duration::from_secs(10));
        assert!(err.contains("interrupted"), "{status}: {err}");
        assert!(
            !dir.exists(),
            "{signal} left {:?}",
            std::fs::read_dir(&dir).map(|rd| rd.count())
        );
    }
}

/// The demo's driver stopped by SIGTERM or SIGHUP (as `node` and `bench`
/// are) stops its worker, removes its session and says so; a `--tasks`
/// too large to keep every round trip is refused by the argument parser
/// (it crashed with an allocation failure after starting the worker).
#[test]
fn an_interrupted_demo_removes_its_session_and_huge_task_counts_are_refused() {
    use std::io::BufRead as _;
    use std::time::{Duration, Instant};
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for tasks in ["10000001", "18446744073709551615"] {
        let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["demo", "--tasks", tasks])
            .env("SHMWIRE_ROOT", &root)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--tasks {tasks}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--tasks"));
    }
    for signal in ["-TERM", "-HUP"] {
        let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["demo", "--tasks", "10000000", "--transport", "shm"])
            .env("SHMWIRE_ROOT", &root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the demo");
        let mut child = proc_support::Kid(child);
        // Calling once the actor exists.
        let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !line.contains("created actor") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the demo ended early"
            );
            assert!(Instant::now() < deadline, "no actor created");
        }
        std::thread::sleep(Duration::from_millis(200));
        let (status, err) = child.signal_and_collect(signal, Duration::from_secs(20));
        assert_eq!(status.code(), Some(1), "{signal}: {status}: {err}");
        assert!(err.contains("interrupted"), "{signal}: {err}");
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
    }
}
