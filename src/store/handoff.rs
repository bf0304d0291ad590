//! How the store's segments reach a client: as sealed memfds over the
//! connection's own Unix socket (`SCM_RIGHTS`), never by a name in the
//! session directory.
//!
//! A segment found by name can be truncated by any process of the same
//! user, and every process mapping it then dies of `SIGBUS` at its next
//! access. The store's arena, its shared index and each client's
//! reference slots are therefore memfds sealed against shrinking and
//! growing (`sys::memfd`, as the rings are), and the service hands them
//! to a client right after the client's `Hello`: one message of
//! [`HANDOFF_LEN`] bytes (`"SWSTORE"` and the descriptor count) carrying
//! the descriptors, written to the bootstrap socket of the shm connection
//! just before the `Welcome` goes into the ring. The client reads it after
//! the `Welcome` (so it is already queued), and maps each descriptor only
//! after checking its seals and size
//! ([`AnonSegment::from_fd_mode`](crate::shm::AnonSegment::from_fd_mode)):
//! an unsealed descriptor is refused.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::error::StoreError;
use crate::sys::fdpass::{recv_with_fds, send_plain, send_with_fds, MAX_FDS};
use crate::sys::poll::{wait_fds, PollFlags};
use crate::transport::AnyConnection;

/// Bytes of the hand-off message: 7 of magic and the descriptor count.
pub(crate) const HANDOFF_LEN: usize = 8;
const MAGIC: &[u8; 7] = b"SWSTORE";

fn socket(conn: &AnyConnection) -> Result<BorrowedFd<'_>, StoreError> {
    match conn {
        AnyConnection::Shm(c) => Ok(c.socket().as_fd()),
        _ => Err(StoreError::BadRequest(
            "store clients connect over shared memory (segments travel over its socket)",
        )),
    }
}

/// Sends `fds` (at most [`MAX_FDS`]) over `conn`'s Unix socket, waiting at
/// most `timeout` for room (a fresh socket always has it).
pub(crate) fn send(
    conn: &AnyConnection,
    fds: &[BorrowedFd<'_>],
    timeout: Duration,
) -> Result<(), StoreError> {
    if fds.len() > MAX_FDS {
        return Err(StoreError::InvalidConfig(
            "too many segments for one hand-off",
        ));
    }
    let sock = socket(conn)?;
    let mut msg = [0u8; HANDOFF_LEN];
    msg[..7].copy_from_slice(MAGIC);
    msg[7] = fds.len() as u8;
    let deadline = Instant::now() + timeout;
    let mut sent = 0;
    while sent < HANDOFF_LEN {
        let r = if sent == 0 {
            send_with_fds(sock, &msg, fds)
        } else {
            send_plain(sock, &msg[sent..])
        };
        match r {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(StoreError::io("hand the segments over", e));
                }
                wait_fds([(sock, PollFlags::OUT)], Some(deadline))
                    .map_err(|e| StoreError::io("hand the segments over", e))?;
            }
            Err(e) => return Err(StoreError::io("hand the segments over", e)),
        }
    }
    Ok(())
}

/// Receives the hand-off of exactly `expect` descriptors from `conn`'s
/// socket, waiting at most `timeout`. Anything else (wrong magic, another
/// count, end of stream) is [`StoreError::BadReply`]; descriptors that came
/// with a bad message are closed.
pub(crate) fn recv(
    conn: &AnyConnection,
    expect: usize,
    timeout: Duration,
) -> Result<Vec<OwnedFd>, StoreError> {
    let sock = socket(conn).map_err(|_| StoreError::BadReply("store connection is not shm"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; HANDOFF_LEN];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < HANDOFF_LEN {
        let [rev] = wait_fds([(sock, PollFlags::IN)], Some(deadline))
            .map_err(|e| StoreError::io("receive the store's segments", e))?;
        if rev.is_empty() {
            return Err(StoreError::TimedOut(timeout));
        }
        let (n, more) = match recv_with_fds(sock, &mut buf[got..]) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(StoreError::io("receive the store's segments", e)),
        };
        fds.extend(more);
        if n == 0 {
            return Err(StoreError::BadReply(
                "the service hung up before handing over its segments",
            ));
        }
        got += n;
    }
    if &buf[..7] != MAGIC || usize::from(buf[7]) != expect || fds.len() != expect {
        return Err(StoreError::BadReply(
            "the segments' hand-off does not match the welcome",
        ));
    }
    Ok(fds)
}
