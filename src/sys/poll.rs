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

/// Whether a connection waits to be accepted on listening socket `fd` (it
/// polls readable), looked at without waiting. Out of descriptors, Linux's
/// `accept` fails with `EMFILE` whether or not one waits (the descriptor is
/// allocated first), so an endpoint that makes room for a newcomer by
/// closing an idle connection asks this first: with nobody waiting, it would
/// close a connection for nothing — possibly one just accepted whose request
/// is unread (its peer then sees a reset).
pub(crate) fn connection_waiting(fd: BorrowedFd<'_>) -> bool {
    wait_fds([(fd, PollFlags::IN)], Some(Instant::now())).is_ok_and(|[r]| r.contains(PollFlags::IN))
}
