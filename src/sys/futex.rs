//! Shared futex wait and wake: the only futex syscalls in the crate.
//!
//! The word is a `std` `AtomicU32` inside a shared mapping (a ring header's
//! wake slot), so both calls use the shared futex (empty flags, **no**
//! `FUTEX_PRIVATE_FLAG`): a private futex is keyed by the caller's address
//! space and would never meet the peer process.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Sleeps while `*word == expected`, at most `timeout`; may return early
/// (spurious wake-ups, signals, the value already differing). Never fails:
/// every outcome means "return and re-check".
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = super::timespec(timeout);
    // EAGAIN (value changed), EINTR and ETIMEDOUT are all "return and
    // re-check"; other errors cannot happen for a valid aligned word and are
    // treated the same (the caller's loop is bounded by its deadline).
    let _ = futex::wait(word, futex::Flags::empty(), expected, Some(&ts));
}

/// Wakes at most one sleeper in [`wait`] on `word` (the caller has already
/// changed the word). Only one peer ever sleeps on a slot (SPSC), so one
/// suffices.
pub(crate) fn wake_one(word: &AtomicU32) {
    if let Err(e) = futex::wake(word, futex::Flags::empty(), 1) {
        tracing::warn!("FUTEX_WAKE failed: {e}");
    }
}
