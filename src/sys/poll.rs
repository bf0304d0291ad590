//! `poll(2)` on a few descriptors with a deadline.

use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{poll, PollFd, Timespec};

/// The readiness flags of `poll(2)` (`IN`, `OUT`, `HUP`, `ERR`, `RDHUP`).
pub(crate) use rustix::event::PollFlags;

/// Waits until one of `fds` reports one of its requested events, or until
/// `deadline`. Returns the `revents` of every descriptor (all empty on
/// timeout). `EINTR` is retried with the remaining time.
pub(crate) fn wait_fds<const N: usize>(
    fds: [(BorrowedFd<'_>, PollFlags); N],
    deadline: Option<Instant>,
) -> std::io::Result<[PollFlags; N]> {
    let mut pfds: [PollFd<'_>; N] = fds.map(|(fd, ev)| PollFd::from_borrowed_fd(fd, ev));
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                // A deadline in the past means "just look" (a zero timeout:
                // a non-zero one may sleep for the timer slack, ~50 µs).
                let left = d.saturating_duration_since(Instant::now());
                Some(Timespec::try_from(left).unwrap_or(Timespec {
                    tv_sec: i64::MAX,
                    tv_nsec: 0,
                }))
            }
        };
        match poll(&mut pfds, timeout.as_ref()) {
            Ok(_) => return Ok(std::array::from_fn(|i| pfds[i].revents())),
            Err(rustix::io::Errno::INTR) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok([PollFlags::empty(); N]);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
