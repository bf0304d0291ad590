//! Accepting on a non-blocking listener: the loop both transports' listeners
//! use.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

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
