//! The [`Park`] seam between the handshake and the OS, and its futex
//! implementation (the syscalls themselves are in [`crate::sys::futex`]).
//!
//! [`Park`] is what a sleeping side blocks on and what its peer signals:
//! [`Futex`] (the futex word of a [`WakeSlot`](super::WakeSlot) in shared
//! memory) and
//! [`EventFd`](super::EventFd) implement it. Each has a loom model, so the
//! loom tests run the handshake against the same trait.
//!
//! Normal builds call `FUTEX_WAIT` / `FUTEX_WAKE` on a word inside shared
//! memory (a ring header) **without** `FUTEX_PRIVATE_FLAG`, because the word lives in memory
//! shared between processes. Under `cfg(shmwire_loom)` the same functions are
//! modelled with one global `Mutex` + `Condvar` that has the futex's
//! semantics (the value check and the sleep are atomic with respect to a
//! wake), so loom explores the handshake and reports a lost wake-up as a
//! deadlock.

use std::time::Duration;

use crate::sync::AtomicU32;

/// Blocking and signalling for one side's wake slot.
pub(crate) trait Park {
    /// Blocks until signalled, at most `timeout` (not modelled under loom);
    /// returns at once if a signal arrived after `token` (the futex word's
    /// value read before announcing sleep) was taken. May return spuriously.
    fn park(&self, word: &AtomicU32, token: u32, timeout: Duration);
    /// Signals a side parked on `word` (the caller has already bumped it).
    fn unpark(&self, word: &AtomicU32);
}

/// Parking on the shared futex word of a wake slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Futex;

impl Park for Futex {
    #[inline]
    fn park(&self, word: &AtomicU32, token: u32, timeout: Duration) {
        futex_wait(word, token, timeout);
    }
    #[inline]
    fn unpark(&self, word: &AtomicU32) {
        futex_wake(word);
    }
}

/// Sleeps while `*word == expected`, at most `timeout` (the shared futex
/// wait in [`crate::sys::futex`]).
#[cfg(not(shmwire_loom))]
#[inline]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    crate::sys::futex::wait(word, expected, timeout);
}

/// Wakes the one sleeper on `word` (the caller has already changed it).
#[cfg(not(shmwire_loom))]
#[inline]
fn futex_wake(word: &AtomicU32) {
    crate::sys::futex::wake_one(word);
}

#[cfg(shmwire_loom)]
loom::lazy_static! {
    static ref FUTEX: (crate::sync::Mutex<()>, crate::sync::Condvar) =
        (crate::sync::Mutex::new(()), crate::sync::Condvar::new());
}

/// Loom model of `FUTEX_WAIT`: the value check happens under the lock a
/// waker takes before notifying, like the kernel's hash-bucket lock. The
/// timeout is not modelled (loom has no time), so a lost wake-up deadlocks.
#[cfg(shmwire_loom)]
fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Duration) {
    use crate::sync::Ordering;
    let guard = FUTEX.0.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

/// Loom model of `FUTEX_WAKE`.
#[cfg(shmwire_loom)]
fn futex_wake(_word: &AtomicU32) {
    let guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
    drop(guard);
}
