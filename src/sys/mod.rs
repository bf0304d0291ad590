//! The OS layer: every raw system call shmwire makes, on `rustix`.
//!
//! Nothing else in the crate calls `rustix` (a test in `tests/layering.rs`
//! keeps it so). Each function here is a small, safe wrapper with the
//! retry/timeout policy its callers need, so the layers above read as
//! protocol code, not as syscall plumbing.
//!
//! | file | calls |
//! | --- | --- |
//! | `liveness.rs` | the one `flock`-based liveness primitive (process locks, directory entries, session directories, the node lock), the holder a `/proc/locks` line names, and removal of a dead owner's file by name after re-checking its inode |
//! | `poll.rs` | `poll(2)` on a few descriptors with a deadline |
//! | `fdpass.rs` | `SCM_RIGHTS` send/receive over a Unix stream, peer hang-up probe, peer pid (`SO_PEERCRED`), a send and a receive that never wait (farewells) |
//! | `fs.rs` | `O_NOFOLLOW`, `O_NONBLOCK`, `O_DIRECTORY`, `O_TMPFILE` (unnamed files), `fallocate`, `geteuid`, `RLIMIT_NOFILE`, spare descriptors (`F_DUPFD_CLOEXEC`), `fcntl` flags, errno tests, lock files opened without following or blocking, `CLOCK_BOOTTIME` |
//! | `memfd.rs` | sealed anonymous shared memory (ring memory passed over `SCM_RIGHTS`) |
//! | `futex.rs` | shared futex wait/wake |
//! | `eventfd.rs` | eventfd create/read/write/poll |
//! | `dirwatch.rs` | an inotify watch on one directory (what wakes an idle node) |
//! | `tcp.rs` | a `send` that never waits and raises no `SIGPIPE` (heartbeats written beside the socket's owner) |

// Under loom only `create` is called (the modelled EventFd keeps a real fd).
#[cfg(not(shmwire_loom))]
pub(crate) mod dirwatch;
#[cfg_attr(shmwire_loom, allow(dead_code))]
pub(crate) mod eventfd;
pub(crate) mod fdpass;
pub(crate) mod fs;
#[cfg(not(shmwire_loom))]
pub(crate) mod futex;
pub(crate) mod liveness;
pub(crate) mod memfd;
pub(crate) mod poll;
#[cfg(not(shmwire_loom))]
pub(crate) mod tcp;

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
