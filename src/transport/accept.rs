//! Accepting on a non-blocking listener: the loop both transports' listeners
//! use.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::sys::fs::SpareDescriptor;

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

/// How often [`accept_within`] tries `accept` again while a caller waits
/// that it could not take for want of descriptors (its spare in use): the
/// edge-triggered `poll` reports no new event for a caller already queued.
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(20);

/// Accepts one caller on a non-blocking listener registered (readable) with
/// `poll`, sleeping on `poll` while none is pending, for at most `timeout`
/// (`Ok(None)` then). The single-transport listeners' `accept_timeout` use
/// it.
///
/// Out of descriptors (`EMFILE`, `ENFILE`) with a caller waiting on
/// `listener`, it closes `spare` so that the caller is taken anyway — to
/// be refused with the cause (a shared-memory caller, whose rings cannot
/// be made) or served on the spare's descriptor (a TCP caller) — instead of
/// being left in the kernel's queue until its handshake times out; the
/// caller retakes the spare as soon as that connection may have closed
/// ([`SpareDescriptor::retake`]; it is taken here first, so a listener
/// that never accepts this way holds none). With no caller waiting it
/// waits for one, as on an empty queue. With the spare already given up it
/// tries again every [`ACCEPT_RETRY`] (the caller gets in as soon as a
/// descriptor is free) and returns the `accept` error at `timeout`, not
/// at once: a caller looping on it does not spin.
pub(crate) fn accept_within<S>(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
    listener: BorrowedFd<'_>,
    spare: &mut SpareDescriptor,
    mut accept: impl FnMut() -> io::Result<S>,
) -> io::Result<Option<S>> {
    let deadline = crate::deadline_after(Instant::now(), timeout);
    spare.retake();
    loop {
        let mut starved = None;
        match try_accept(&mut accept) {
            Ok(Some(s)) => return Ok(Some(s)),
            Ok(None) => {}
            // `accept` fails out of descriptors before it looks at the
            // queue: with nobody waiting, wait for a caller as when the
            // queue is empty (one that connects meanwhile is an edge for
            // `poll`); for a caller that waits, give the spare up.
            Err(e) if crate::sys::fs::is_out_of_descriptors(&e) => {
                if crate::sys::poll::connection_waiting(listener) {
                    if spare.give_up() {
                        continue;
                    }
                    starved = Some(e);
                }
            }
            Err(e) => return Err(e),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return starved.map_or(Ok(None), Err);
        }
        // Edge-triggered: we only sleep after `accept` said WouldBlock (or
        // failed with nobody waiting); a caller we could not take is no
        // new edge, so it is tried again after a pause.
        let wait = if starved.is_some() {
            left.min(ACCEPT_RETRY)
        } else {
            left
        };
        poll.poll(events, Some(wait))?;
    }
}

/// The incoming half of a hello (or reply) read from a non-blocking socket,
/// a few bytes at a time: the 96 fixed bytes, then the extension they
/// announce. Holds at most `FIXED_LEN + MAX_EXT_LEN` bytes.
#[derive(Debug)]
pub(crate) struct HelloReader {
    buf: Vec<u8>,
    have: usize,
    fixed: Option<super::handshake::Fixed>,
    what: &'static str,
}

impl HelloReader {
    /// A reader of one `what` (`"hello"`, `"handshake reply"`).
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            buf: vec![0; super::handshake::FIXED_LEN],
            have: 0,
            fixed: None,
            what,
        }
    }

    /// Whether any byte of the message has arrived.
    pub(crate) fn heard(&self) -> bool {
        self.have > 0 || self.fixed.is_some()
    }

    /// Reads what `r` has without blocking. `Ok(Some(..))` once the whole
    /// message is in; `Ok(None)` when `r` has nothing more for now.
    ///
    /// # Errors
    /// `PeerDied` at end of stream, `Protocol` for bad magic or an
    /// oversized extension, `Io` for other read errors.
    pub(crate) fn read_from(
        &mut self,
        mut r: impl io::Read,
    ) -> Result<Option<(super::handshake::Fixed, Vec<u8>)>, super::ConnectError> {
        use super::handshake::{Fixed, FIXED_LEN};
        use super::ConnectError;
        loop {
            if self.have == self.buf.len() {
                match &self.fixed {
                    None => {
                        let head: &[u8; FIXED_LEN] =
                            self.buf[..FIXED_LEN].try_into().expect("FIXED_LEN bytes");
                        let f = Fixed::decode(head, self.what)?;
                        self.buf.resize(FIXED_LEN + f.ext_len, 0);
                        self.fixed = Some(f);
                        continue;
                    }
                    Some(f) => {
                        let ext = self.buf[FIXED_LEN..].to_vec();
                        return Ok(Some((f.clone(), ext)));
                    }
                }
            }
            match r.read(&mut self.buf[self.have..]) {
                Ok(0) => return Err(ConnectError::PeerDied { during: self.what }),
                Ok(n) => self.have += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnectError::from_handshake_io(e, self.what)),
            }
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket whose send buffer is
/// empty (a fresh connection): a handshake message of a few hundred bytes
/// always fits, so a short write means the peer misbehaves.
pub(crate) fn write_fresh(
    mut w: impl io::Write,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), super::ConnectError> {
    let mut at = 0;
    while at < bytes.len() {
        match w.write(&bytes[at..]) {
            Ok(0) => return Err(super::ConnectError::PeerDied { during: what }),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(super::ConnectError::Protocol {
                    what: format!(
                        "the peer does not read its {what} ({at} of {} bytes taken)",
                        bytes.len()
                    ),
                })
            }
            Err(e) => return Err(super::ConnectError::from_handshake_io(e, what)),
        }
    }
    Ok(())
}

/// A listener-side handshake in progress on one accepted socket: a state
/// machine advanced whenever its socket is readable, with one total
/// deadline. Both transports implement it; the [`Mux`](super::Mux) drives
/// many at once and a blocking `accept_timeout` drives one with
/// [`drive_blocking`].
pub(crate) trait Handshake {
    /// The connection a finished handshake yields.
    type Conn;
    /// The socket to wait on (readable).
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
    /// When the whole handshake must be done.
    fn deadline(&self) -> Instant;
    /// Reads what is there and moves on; `Ok(Some(conn))` when done,
    /// `Ok(None)` when it needs more bytes.
    fn advance(&mut self) -> Result<Option<Self::Conn>, super::ConnectError>;
    /// Whether the peer has sent anything yet (a listener making room
    /// drops a silent hello before one that is under way).
    fn heard(&self) -> bool;
}

/// Runs one handshake to its end, sleeping in `poll(2)` while its socket has
/// nothing, never past its deadline (a caller that sends one byte at a time
/// gets no more time than one that sends nothing).
pub(crate) fn drive_blocking<H: Handshake>(mut h: H) -> Result<H::Conn, super::ConnectError> {
    loop {
        if let Some(c) = h.advance()? {
            return Ok(c);
        }
        wait_readable(h.fd(), h.deadline(), "hello")?;
    }
}

/// Sleeps in `poll(2)` until `fd` is readable or `deadline` passes
/// (`TimedOut` during `what` once it has).
pub(crate) fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    deadline: Instant,
    what: &'static str,
) -> Result<(), super::ConnectError> {
    use crate::sys::poll::{wait_fds, PollFlags};
    if Instant::now() >= deadline {
        return Err(super::ConnectError::TimedOut { during: what });
    }
    wait_fds([(fd, PollFlags::IN)], Some(deadline)).map_err(super::ConnectError::io("poll"))?;
    Ok(())
}

/// Reads one whole `what` from a non-blocking socket (the caller's side of
/// a handshake), by one total `deadline`; `prefix` holds bytes of it already
/// received (e.g. with descriptors attached).
pub(crate) fn read_by_deadline<S>(
    stream: &S,
    what: &'static str,
    deadline: Instant,
    mut prefix: &[u8],
) -> Result<(super::handshake::Fixed, Vec<u8>), super::ConnectError>
where
    S: std::os::fd::AsFd,
    for<'a> &'a S: io::Read,
{
    use io::Read;
    let mut reader = HelloReader::new(what);
    loop {
        match reader.read_from((&mut prefix).chain(stream)) {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            // Hung up after part of it: the peer had started to answer,
            // so this is no hello dropped unread (which a caller tries
            // again, `handshake::retry_dropped_hellos`) but a broken one.
            Err(super::ConnectError::PeerDied { .. }) if reader.heard() => {
                return Err(super::ConnectError::Protocol {
                    what: format!("the peer hung up in the middle of its {what}"),
                })
            }
            Err(e) => return Err(e),
        }
        wait_readable(stream.as_fd(), deadline, what)?;
    }
}
