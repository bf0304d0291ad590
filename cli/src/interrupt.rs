//! How every long-running subcommand ends on a signal: SIGINT (a
//! terminal's Ctrl-C), SIGTERM and SIGHUP (a closed terminal) set one flag
//! ([`Interrupt`]) that the subcommand's loop polls, so it leaves by its
//! ordinary way out — which, for a process in a session, removes its files
//! and the session directory when it was the last one in it
//! ([`LeaveSession`]). A second signal at least [`SECOND_SIGNAL_AFTER`]
//! (0.5 s) after the first ends the process at once (status 1): the way out
//! for a process stuck where it does not poll; what it leaves, `shmwire
//! cleanup` removes. Signals closer to the first are the same request
//! delivered twice — GNU `timeout` sends SIGTERM to the process and then to
//! its process group, a terminal's Ctrl-C and a supervisor's `kill` may
//! overlap — and are ignored: before, `timeout 600 shmwire node` could
//! exit at once on the second copy and leave its whole session behind.
//!
//! Used by `node`, `bench`, `demo` (the driver) and the demo's worker
//! (`__demo-worker`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use shmwire::shm::Session;

/// The signals that end a subcommand cleanly.
pub const SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// The flag [`SIGNALS`] set (see the module docs).
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<AtomicBool>);

/// How long after the first signal a second one ends the process at once
/// (closer ones are the same request delivered twice: see the module docs).
pub const SECOND_SIGNAL_AFTER: std::time::Duration = std::time::Duration::from_millis(500);

/// The monotonic clock in nanoseconds (at least 1: 0 means "no signal yet").
/// `clock_gettime` is async-signal-safe (POSIX), so a handler may call it.
fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
        .max(1)
}

impl Interrupt {
    /// Registers the handlers: from here on, the first of [`SIGNALS`] sets
    /// the flag, and one coming [`SECOND_SIGNAL_AFTER`] or later after it
    /// ends the process with status 1.
    pub fn register() -> io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        // When the first signal came (monotonic ns; 0: none yet).
        let first = Arc::new(AtomicU64::new(0));
        let after = SECOND_SIGNAL_AFTER.as_nanos() as u64;
        for sig in SIGNALS {
            let flag = Arc::clone(&flag);
            let first = Arc::clone(&first);
            let action = move || {
                let now = monotonic_ns();
                // SeqCst: the two words are read by handlers on any thread
                // and by the polling loops; no other ordering partner.
                match first.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => flag.store(true, Ordering::SeqCst),
                    Err(t0) if now.saturating_sub(t0) >= after => signal_hook::low_level::exit(1),
                    Err(_) => {}
                }
            };
            // SAFETY: `register` requires an async-signal-safe action. This
            // one reads the monotonic clock (`clock_gettime`, async-signal-
            // safe), does atomic operations on memory its own `Arc`s keep
            // alive, and may call `_exit` (`low_level::exit`, async-signal-
            // safe); it allocates nothing, takes no lock and does not panic.
            unsafe { signal_hook::low_level::register(sig, action) }?;
        }
        Ok(Self(flag))
    }

    /// Whether a signal came.
    pub fn is_set(&self) -> bool {
        // Relaxed: a flag polled by loops; it publishes nothing.
        self.0.load(Ordering::Relaxed)
    }

    /// The flag itself (for code that polls an `AtomicBool`: `Node::run`,
    /// `bench::Options::stop`); setting it ends the subcommand as a signal
    /// does.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.0
    }
}

/// Leaves a session on drop ([`Session::remove_all`]): this process's
/// files go, and the session directory too when no other process of it
/// lives.
pub struct LeaveSession(pub Session);

impl Drop for LeaveSession {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}
