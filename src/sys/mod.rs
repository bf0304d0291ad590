//! The OS layer: every raw system call shmwire makes, on `rustix`.
//!
//! Nothing else in the crate calls `rustix` (a test in `tests/layering.rs`
//! keeps it so). Each function here is a small, safe wrapper with the
//! retry/timeout policy its callers need, so the layers above read as
//! protocol code, not as syscall plumbing.
//!
//! | file | calls |
//! | --- | --- |
//! | `liveness.rs` | the one `flock`-based liveness primitive (process locks, directory entries, session directories) and removal of a dead owner's file by name after re-checking its inode |
//! | `poll.rs` | `poll(2)` on a few descriptors with a deadline |
//! | `fdpass.rs` | `SCM_RIGHTS` send/receive over a Unix stream, peer hang-up probe |
//! | `fs.rs` | `O_NOFOLLOW`, `O_NONBLOCK`, `O_DIRECTORY`, `fallocate`, `geteuid`, `fcntl` flags, errno tests |
//! | `futex.rs` | shared futex wait/wake |
//! | `eventfd.rs` | eventfd create/read/write/poll |

pub(crate) mod fdpass;
pub(crate) mod fs;
pub(crate) mod liveness;
pub(crate) mod poll;
