//! How every long-running subcommand ends on a signal: SIGINT (a
//! terminal's Ctrl-C), SIGTERM and SIGHUP (a closed terminal) set one flag
//! ([`Interrupt`]) that the subcommand's loop polls, so it leaves by its
//! ordinary way out — which, for a process in a session, removes its files
//! and the session directory when it was the last one in it
//! ([`LeaveSession`]). A second signal while the flag is set ends the
//! process at once (status 1): the way out for a process stuck where it
//! does not poll; what it leaves, `shmwire cleanup` removes.
//!
//! Used by `node`, `bench`, `demo` (the driver) and the demo's worker
//! (`__demo-worker`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
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

impl Interrupt {
    /// Registers the handlers: from here on, the first of [`SIGNALS`] sets
    /// the flag and a second one ends the process with status 1.
    pub fn register() -> io::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in SIGNALS {
            // Registered first, so it sees the flag as it was before this
            // signal: only a second signal ends the process.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
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
