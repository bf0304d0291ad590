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

/// Sends `SIGSTOP` to `pid` and waits (at most [`STOP_BOUND`]) until no
/// thread of it runs any more: each is stopped (state `T` or `t` in
/// `/proc/<pid>/task/*/stat`) or has exited (a process that ended
/// meanwhile, zombie or reaped, runs no more either). Panics if the signal
/// cannot be sent to a live process or a thread still runs after the
/// bound.
pub fn stop_process(pid: u32) {
    send(pid, rustix::process::Signal::STOP);
    let tasks = format!("/proc/{pid}/task");
    let deadline = Instant::now() + STOP_BOUND;
    while !all_threads_stopped(&tasks) {
        assert!(Instant::now() < deadline, "process {pid} never stopped");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends `SIGCONT` to `pid`.
pub fn continue_process(pid: u32) {
    send(pid, rustix::process::Signal::CONT);
}

/// Sends `sig` to `pid`; a process already gone (`ESRCH`) is left alone.
fn send(pid: u32, sig: rustix::process::Signal) {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("a pid above 0");
    match rustix::process::kill_process(p, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => panic!("{sig:?} to {pid}: {e}"),
    }
}

/// Whether no thread listed under `tasks` (`/proc/<pid>/task`) runs:
/// each is stopped (`T`, `t`) or exited (`Z`, `X`, or its `stat` gone).
/// A process reaped meanwhile (no `tasks` directory) runs no more.
fn all_threads_stopped(tasks: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(tasks) else {
        return true;
    };
    dir.flatten().all(|t| {
        std::fs::read(t.path().join("stat")).map_or(true, |s| {
            // The state follows the parenthesised command name, which may
            // itself hold ')'.
            s.iter()
                .rposition(|&b| b == b')')
                .and_then(|i| s.get(i + 2))
                .is_some_and(|st| b"TtZX".contains(st))
        })
    })
}
