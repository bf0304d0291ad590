//! The few raw OS calls the transport makes directly (polling a descriptor
//! with a deadline, accepting on a non-blocking listener), kept in one place.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

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

/// One non-blocking `accept` attempt: `Ok(None)` if no caller is pending;
/// `EINTR` is retried.
pub(crate) fn try_accept<S>(mut accept: impl FnMut() -> io::Result<S>) -> io::Result<Option<S>> {
    loop {
        match accept() {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Accepts one caller on a non-blocking listener registered (readable) with
/// `poll`, sleeping on `poll` while none is pending, for at most `timeout`
/// (`Ok(None)` then). The listeners of both transports use it.
pub(crate) fn accept_within<S>(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
    mut accept: impl FnMut() -> io::Result<S>,
) -> io::Result<Option<S>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = try_accept(&mut accept)? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        // Edge-triggered: we only sleep after `accept` said WouldBlock.
        poll.poll(events, Some(left))?;
    }
}
