//! The [`Park`] seam between the handshake and the OS, and its futex
//! implementation — the one place that issues futex syscalls.
//!
//! [`Park`] is what a sleeping side blocks on and what its peer signals:
//! [`Futex`] (a word in the ring header) and
//! [`EventFd`](super::EventFd) implement it. Each has a loom model, so the
//! loom tests run the handshake against the same trait.
//!
//! Normal builds call `FUTEX_WAIT` / `FUTEX_WAKE` on a word inside the ring
//! header **without** `FUTEX_PRIVATE_FLAG`, because the word lives in memory
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

/// Parking on the shared futex word in the ring header.
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

/// Sleeps while `*word == expected`, at most `timeout`; may return early
/// (spurious wake-ups, signals, the value already differing).
#[cfg(not(shmwire_loom))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    use rustix::thread::futex;
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // Shared futex (empty flags: no FUTEX_PRIVATE_FLAG). EAGAIN (value
    // changed), EINTR and ETIMEDOUT are all "return and re-check"; other
    // errors cannot happen for a valid aligned word and are treated the same
    // (the caller's loop is bounded by its deadline).
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
}

/// Wakes one sleeper in `futex_wait` on `word` (the caller has already
/// changed the word).
#[cfg(not(shmwire_loom))]
fn futex_wake(word: &AtomicU32) {
    use rustix::thread::futex;
    // Only the peer sleeps on this word (SPSC), so waking one suffices.
    if let Err(e) = futex::wake(word, futex::Flags::empty(), 1) {
        tracing::warn!("FUTEX_WAKE failed: {e}");
    }
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
