//! The OS layer: the raw system calls shmwire makes, as small safe functions
//! on rustix. Nothing above this module issues a syscall of its own; the
//! layers above ([`crate::wake`], the transport, the segments) call these.
//!
//! - [`futex`]: `FUTEX_WAIT` / `FUTEX_WAKE` on a *shared* futex word (no
//!   `FUTEX_PRIVATE_FLAG`: the word lives in memory mapped by two processes).
//! - [`eventfd`]: create, signal, drain and wait on an eventfd.
//!
//! Under `cfg(shmwire_loom)` the futex calls are not compiled (the wake layer
//! models them with a `Mutex` + `Condvar`); an eventfd is still created so
//! that code which registers it with an event loop compiles and runs.

// Under loom only `create` is called (the modelled EventFd keeps a real fd).
#[cfg_attr(shmwire_loom, allow(dead_code))]
pub(crate) mod eventfd;
#[cfg(not(shmwire_loom))]
pub(crate) mod futex;

use std::time::Duration;

#[cfg_attr(shmwire_loom, allow(dead_code))]
/// A relative timeout as the kernel takes it (saturating at `i64::MAX`
/// seconds).
fn timespec(timeout: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    }
}
