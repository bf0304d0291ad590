//! How the store's descriptors reach a client: over the connection's own
//! Unix socket (`SCM_RIGHTS`), never by a name anywhere.
//!
//! A file found by name can be truncated by any process of the same user,
//! and every process mapping it then dies of `SIGBUS` at its next access.
//! So nothing the store maps has a name:
//!
//! * the arena, the shared index and each client's reference slots are
//!   memfds sealed against shrinking and growing (`sys::memfd`, as the
//!   rings are). The service hands them to a client right after its
//!   `Hello` ([`SEGMENTS`]), just before the `Welcome` goes into the ring;
//!   the client maps each only after checking its seals and size
//!   ([`AnonSegment::from_fd_mode`](crate::shm::AnonSegment::from_fd_mode)):
//!   an unsealed descriptor is refused.
//! * each fallback object is an unnamed file (`O_TMPFILE`, see
//!   [`super::arena::FileFallback`]). Every reply that names fallback
//!   objects (`Object`, `Objects`) is preceded on the socket by their
//!   descriptors ([`FALLBACK`]), in the reply's order; the client receives
//!   exactly as many as the reply names, checks each (a regular file at
//!   least as long as the object), maps it and closes it.
//!
//! A hand-off is one or more messages of [`HANDOFF_LEN`] bytes — 7 bytes of
//! magic and the count of descriptors riding on that message (1 to
//! [`MAX_FDS`]) — so any number of descriptors travel in
//! `ceil(n / MAX_FDS)` messages. The service never waits to send one: a
//! client whose socket buffer is full (it does not read its descriptors)
//! makes the send fail, and the service disconnects it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::error::StoreError;
use crate::sys::fdpass::{recv_with_fds_or_cut, send_with_fds_now, MAX_FDS};
use crate::sys::poll::{wait_fds, PollFlags};
use crate::transport::AnyConnection;

/// Bytes of one hand-off message: 7 of magic and the descriptor count.
pub(crate) const HANDOFF_LEN: usize = 8;
/// Magic of the segments' hand-off (arena, index, slots) after `Hello`.
pub(crate) const SEGMENTS: &[u8; 7] = b"SWSTORE";
/// Magic of the fallback files' hand-off before a reply naming them.
pub(crate) const FALLBACK: &[u8; 7] = b"SWFALLB";

fn socket(conn: &AnyConnection) -> Result<BorrowedFd<'_>, StoreError> {
    match conn {
        AnyConnection::Shm(c) => Ok(c.socket().as_fd()),
        _ => Err(StoreError::BadRequest(
            "store clients connect over shared memory (descriptors travel over its socket)",
        )),
    }
}

/// Sends `fds` over `conn`'s Unix socket in messages of at most
/// [`MAX_FDS`] descriptors tagged `magic`, never waiting: a socket that
/// cannot take a whole message now (its buffer is full, or the peer holds
/// too many descriptors in flight) is an error, and the stream is then
/// out of step (the caller drops the connection). Nothing is sent for no
/// descriptors.
pub(crate) fn send(
    conn: &AnyConnection,
    magic: &[u8; 7],
    fds: &[BorrowedFd<'_>],
) -> Result<(), StoreError> {
    let sock = socket(conn)?;
    for chunk in fds.chunks(MAX_FDS) {
        let mut msg = [0u8; HANDOFF_LEN];
        msg[..7].copy_from_slice(magic);
        msg[7] = chunk.len() as u8;
        match send_with_fds_now(sock, &msg, chunk) {
            Ok(HANDOFF_LEN) => {}
            Ok(_) => {
                return Err(StoreError::io(
                    "hand descriptors over",
                    std::io::Error::new(
                        std::io::ErrorKind::WouldBlock,
                        "the socket took part of a hand-off message",
                    ),
                ))
            }
            Err(e) => return Err(StoreError::io("hand descriptors over", e)),
        }
    }
    Ok(())
}

/// Receives a hand-off of exactly `expect` descriptors tagged `magic` from
/// `conn`'s socket, waiting at most `timeout` in all. Anything else (wrong
/// magic, a count of 0, above [`MAX_FDS`] or beyond `expect`, descriptors
/// missing from a message, end of stream) is [`StoreError::BadReply`];
/// descriptors that came with a bad message are closed. Descriptors cut
/// off on the way (`MSG_CTRUNC`: this process is at its descriptor limit)
/// are an error too (`StoreError::Io`, naming the limit).
pub(crate) fn recv(
    conn: &AnyConnection,
    magic: &[u8; 7],
    expect: usize,
    timeout: Duration,
) -> Result<Vec<OwnedFd>, StoreError> {
    let (fds, cut) = recv_or_cut(conn, magic, expect, timeout)?;
    if cut {
        return Err(StoreError::io(
            "receive the store's descriptors",
            crate::sys::fdpass::cut_off(),
        ));
    }
    Ok(fds.into_iter().flatten().collect())
}

/// [`recv`], but descriptors cut off on the way (`MSG_CTRUNC`: this
/// process is at its descriptor limit; the messages' bytes come whole, so
/// the socket stays in step) are `None` in their places, and the second
/// value says whether any was: a reply's fallback files, each for the
/// object the reply names in the same place, so that only the objects
/// whose files were lost fail (the attack on `a6baac3`: one `get` of a
/// fallback object by a client at its limit broke its connection for
/// good, and the node's object endpoint answered every pull *failed*
/// until about 15 descriptors were free).
pub(crate) fn recv_or_cut(
    conn: &AnyConnection,
    magic: &[u8; 7],
    expect: usize,
    timeout: Duration,
) -> Result<(Vec<Option<OwnedFd>>, bool), StoreError> {
    let sock = socket(conn).map_err(|_| StoreError::BadReply("store connection is not shm"))?;
    let deadline = crate::deadline_after(Instant::now(), timeout);
    let mut out = Vec::with_capacity(expect.min(1024));
    let mut any_cut = false;
    while out.len() < expect {
        let mut buf = [0u8; HANDOFF_LEN];
        let mut got = 0;
        let mut fds = Vec::new();
        let mut cut = false;
        while got < HANDOFF_LEN {
            let [rev] = wait_fds([(sock, PollFlags::IN)], Some(deadline))
                .map_err(|e| StoreError::io("receive the store's descriptors", e))?;
            if rev.is_empty() {
                return Err(StoreError::TimedOut(timeout));
            }
            // Exactly the rest of this message: never into the next one
            // (whose descriptors belong to it).
            let (n, more) = match recv_with_fds_or_cut(sock, &mut buf[got..]) {
                Ok(r) => {
                    cut |= r.cut;
                    (r.bytes, r.fds)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(StoreError::io("receive the store's descriptors", e)),
            };
            fds.extend(more);
            if n == 0 {
                return Err(StoreError::BadReply(
                    "the service hung up before handing over its descriptors",
                ));
            }
            got += n;
        }
        let count = usize::from(buf[7]);
        // Cut off, the first of them came (the kernel installs them in
        // order and stops at the first it cannot): the rest are `None`.
        if &buf[..7] != magic
            || count == 0
            || count > MAX_FDS
            || count > expect - out.len()
            || fds.len() > count
            || (fds.len() < count && !cut)
        {
            return Err(StoreError::BadReply(
                "the descriptors' hand-off does not match the reply",
            ));
        }
        any_cut |= cut;
        let lost = count - fds.len();
        out.extend(fds.into_iter().map(Some));
        out.extend(std::iter::repeat_with(|| None).take(lost));
    }
    Ok((out, any_cut))
}
