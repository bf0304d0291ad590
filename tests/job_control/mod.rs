//! Stopping and resuming test processes with job-control signals, shared by
//! the library's and the CLI's process tests (each includes this file with
//! `#[path]`).
//!
//! `kill(SIGSTOP)` returns before the process has stopped: the kernel
//! wakes one thread, and only when that thread runs does it stop the
//! others. Until then a busy thread goes on — under load for milliseconds,
//! long enough to accept a connection and answer its handshake (the flake
//! of `worker_runtime::a_stopped_worker_holds_up_no_call_to_another_worker`:
//! the "stopped" worker answered the caller's reconnect, and the task sent
//! on it then waited for the stopped worker for good). So a test that needs
//! a stopped process waits for every thread to be stopped.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// How long a stop may take to reach every thread before the test fails.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Sends `SIGSTOP` to `pid` and waits (at most [`STOP_BOUND`]) until every
/// thread of it is stopped (state `T` or `t` in `/proc/<pid>/task/*/stat`;
/// a thread that exited, `Z`/`X`, runs no more either). Panics if the
/// process is gone or exits meanwhile, or a thread still runs after the
/// bound: a test that stops a process relies on it being there.
pub fn stop_process(pid: u32) {
    assert!(
        stop_if_running(pid),
        "process {pid} is gone: nothing to stop"
    );
}

/// [`stop_process`] for a process that may end on its own meanwhile (a
/// test stopping it in a loop until it finishes): `false` if it was gone
/// before the signal or exited before every thread stopped.
pub fn stop_if_running(pid: u32) -> bool {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("a pid above 0");
    match rustix::process::kill_process(p, rustix::process::Signal::STOP) {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => return false,
        Err(e) => panic!("SIGSTOP to {pid}: {e}"),
    }
    let tasks = format!("/proc/{pid}/task");
    let deadline = Instant::now() + STOP_BOUND;
    loop {
        match threads(&tasks) {
            Threads::Stopped => return true,
            Threads::Exited => return false,
            Threads::Running => {}
        }
        assert!(Instant::now() < deadline, "process {pid} never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `SIGCONT` to `pid`. A process already gone (`ESRCH`) is left
/// alone: resuming is how a test makes sure it leaves nothing stopped.
pub fn continue_process(pid: u32) {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("a pid above 0");
    match rustix::process::kill_process(p, rustix::process::Signal::CONT) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => panic!("SIGCONT to {pid}: {e}"),
    }
}

/// What the threads of a process are doing.
enum Threads {
    /// At least one runs (or sleeps: not stopped yet).
    Running,
    /// Each is stopped (`T`, `t`) or exited (`Z`, `X`), at least one
    /// stopped.
    Stopped,
    /// Every one exited, or the process was reaped.
    Exited,
}

/// The state of the threads listed under `tasks` (`/proc/<pid>/task`).
fn threads(tasks: &str) -> Threads {
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return Threads::Exited;
    };
    let mut stopped = false;
    for t in dir.flatten() {
        // A thread whose `stat` is gone exited meanwhile.
        let Ok(s) = std::fs::read(t.path().join("stat")) else {
            continue;
        };
        // The state follows the parenthesised command name, which may
        // itself hold ')'.
        let state = s
            .iter()
            .rposition(|&b| b == b')')
            .and_then(|i| s.get(i + 2));
        match state {
            Some(b'T' | b't') => stopped = true,
            Some(b'Z' | b'X') => {}
            _ => return Threads::Running,
        }
    }
    if stopped {
        Threads::Stopped
    } else {
        Threads::Exited
    }
}
