//! One synchronisation facade for all lock-free code in shmwire.
//!
//! Normally this re-exports `std`'s atomics, `Arc`, `thread` and
//! `spin_loop`; when the crate is built with `--cfg shmwire_loom` (as the
//! `loom-tests` crate does) it re-exports `loom`'s instead, so the loom
//! models run the very code that ships. `UnsafeCell` is the loom-style cell
//! in both builds: it is only touched through [`UnsafeCell::with`] and
//! [`UnsafeCell::with_mut`], which loom instruments.
//!
//! Code that lives in a shared mapping (a segment header) uses the `std`
//! atomics directly through this module too: under `shmwire_loom` those
//! types are never placed in a mapping — the loom models run on heap storage.

#[cfg(not(shmwire_loom))]
pub use std::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(shmwire_loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(shmwire_loom))]
pub use std::{hint::spin_loop, thread};

#[cfg(shmwire_loom)]
pub use loom::sync::atomic::{
    fence, AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(shmwire_loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(shmwire_loom)]
pub use loom::{hint::spin_loop, thread};

/// A cell that hands out raw pointers only inside closures, so loom can
/// track every access.
///
/// In normal builds this is a zero-cost wrapper around
/// [`std::cell::UnsafeCell`]; under `shmwire_loom` it is `loom`'s.
#[cfg(not(shmwire_loom))]
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct UnsafeCell<T: ?Sized>(std::cell::UnsafeCell<T>);

#[cfg(not(shmwire_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }
}

#[cfg(not(shmwire_loom))]
impl<T: ?Sized> UnsafeCell<T> {
    /// Calls `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Calls `f` with a mutable raw pointer to the contents.
    #[inline(always)]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(shmwire_loom)]
pub use loom::cell::UnsafeCell;
