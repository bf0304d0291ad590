//! eventfd create / signal / drain / wait: the only eventfd syscalls in the
//! crate. The counter semantics (what a wake-up means) live in
//! [`crate::wake::EventFd`]; these functions only talk to the kernel.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::event::{poll, EventfdFlags, PollFd, PollFlags};

/// A new eventfd with counter 0, non-blocking and close-on-exec.
pub(crate) fn create() -> io::Result<OwnedFd> {
    Ok(rustix::event::eventfd(
        0,
        EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC,
    )?)
}

/// Makes `fd` (e.g. an eventfd received over `SCM_RIGHTS`) non-blocking.
pub(crate) fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    let flags = fcntl_getfl(&fd)?;
    fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
    Ok(())
}

/// Adds 1 to the counter, waking a `poll`/epoll waiter. A counter that
/// would overflow (`EAGAIN`) already has a wake-up pending, so that is
/// success too.
pub(crate) fn signal(fd: impl AsFd) -> io::Result<()> {
    match rustix::io::write(fd, &1u64.to_ne_bytes()) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resets the counter to 0 (one non-blocking read); whether it was non-zero.
pub(crate) fn drain(fd: impl AsFd) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::io::read(fd, &mut buf), Ok(8))
}

/// Waits until `fd` is readable or `timeout` passes; whether it became
/// readable. `EINTR` and errors count as "not readable" (the caller
/// re-checks and its loop is bounded by a deadline).
pub(crate) fn wait_readable(fd: impl AsFd, timeout: Duration) -> bool {
    let ts = super::timespec(timeout);
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    matches!(poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}
