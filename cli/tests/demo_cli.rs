//! `shmwire demo` end to end: a driver process and an actor worker process
//! trade actor tasks over shared memory and TCP; the demo itself checks every
//! reply (ordering, exactly once, running totals) and fails otherwise.

use std::process::Command;

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
