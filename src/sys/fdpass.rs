//! Descriptors over a Unix stream (`SCM_RIGHTS`), the hang-up probe of a
//! connected socket, and its peer's pid (`SO_PEERCRED`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::PollFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The pid of the process at the other end of a connected Unix socket, as
/// the kernel recorded it when the connection was made (`SO_PEERCRED`);
/// `None` if the kernel does not say.
pub(crate) fn peer_pid(sock: impl AsFd) -> Option<u32> {
    let cred = rustix::net::sockopt::socket_peercred(sock).ok()?;
    u32::try_from(cred.pid.as_raw_nonzero().get()).ok()
}

/// Most descriptors one message carries.
pub(crate) const MAX_FDS: usize = 4;

/// Sends `bytes` with `fds` attached (`sendmsg`, `MSG_NOSIGNAL`, `EINTR`
/// retried). Returns how many bytes the kernel took (the descriptors travel
/// with the first byte; the caller writes the rest normally).
pub(crate) fn send_with_fds(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    loop {
        match rustix::net::sendmsg(
            &sock,
            &[IoSlice::new(bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives into `buf` (`recvmsg`, `MSG_CMSG_CLOEXEC`, `EINTR` retried):
/// the byte count (0 at end of stream) and every descriptor that came
/// with them (at most [`MAX_FDS`] are accepted; more are closed by the
/// kernel's truncation).
pub(crate) fn recv_with_fds(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    Ok((got, fds))
}

/// Whether the peer of a connected stream socket is still there: `false`
/// after a hang-up, an error or end of stream (a readable socket is peeked
/// without consuming anything). Never blocks.
pub(crate) fn peer_connected(sock: BorrowedFd<'_>) -> bool {
    match super::poll::wait_fds(
        [(sock, PollFlags::IN | PollFlags::RDHUP)],
        Some(Instant::now()),
    ) {
        Ok([rev]) if rev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP) => false,
        Ok([rev]) if rev.contains(PollFlags::IN) => {
            // Readable without a hang-up flag: end of stream (gone) or a
            // stray byte (still there).
            let mut b = [0u8; 1];
            match rustix::net::recv(sock, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                Ok((0, _)) => false,
                Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => true,
                Err(_) => false,
            }
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Sends `bytes` without descriptors (`send`, `MSG_NOSIGNAL`, `EINTR`
/// retried); returns how many the kernel took.
pub(crate) fn send_plain(sock: impl AsFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match rustix::net::send(&sock, bytes, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
