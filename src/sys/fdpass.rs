//! Descriptors over a Unix stream (`SCM_RIGHTS`), the hang-up probe of a
//! connected socket, and its peer's pid (`SO_PEERCRED`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::PollFlags;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
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
    send_fds_flags(sock, bytes, fds, SendFlags::NOSIGNAL)
}

/// As [`send_with_fds`], but never waits, also on a blocking socket
/// (`MSG_DONTWAIT`): a socket whose buffer is full gives `WouldBlock`
/// (and so may a peer with too many descriptors in flight,
/// `ETOOMANYREFS`, as an error of its own).
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the store uses it
pub(crate) fn send_with_fds_now(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    send_fds_flags(sock, bytes, fds, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
}

fn send_fds_flags(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    flags: SendFlags,
) -> io::Result<usize> {
    debug_assert!(fds.len() <= MAX_FDS);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    loop {
        match rustix::net::sendmsg(&sock, &[IoSlice::new(bytes)], &mut control, flags) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives into `buf` (`recvmsg`, `MSG_CMSG_CLOEXEC`, `EINTR` retried):
/// the byte count (0 at end of stream) and every descriptor that came
/// with them. Descriptors the kernel could not pass (`MSG_CTRUNC`: the
/// peer sent more than [`MAX_FDS`], or this process is at its open-file
/// limit) are an error naming both causes: the message is unusable
/// without them, and "got 1 of 4 descriptors" would not say why.
pub(crate) fn recv_with_fds(sock: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    match recv_with_fds_or_cut(sock, buf)? {
        Received { cut: true, .. } => Err(cut_off()),
        Received { bytes, fds, .. } => Ok((bytes, fds)),
    }
}

/// What [`recv_with_fds_or_cut`] received.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes received into the buffer (0 at end of stream).
    pub(crate) bytes: usize,
    /// The descriptors that came with them, in the order sent.
    pub(crate) fds: Vec<OwnedFd>,
    /// Descriptors were cut off (`MSG_CTRUNC`): `fds` holds the first of
    /// those sent (the kernel installs them in order and stops at the
    /// first it cannot), the rest are lost. The bytes came whole.
    pub(crate) cut: bool,
}

/// [`recv_with_fds`], a cut-off (`MSG_CTRUNC`) reported in
/// [`Received::cut`] with the bytes and descriptors that did come, for a
/// caller whose stream stays in step without the lost ones (the store
/// client, whose reply names which objects they were for).
pub(crate) fn recv_with_fds_or_cut(sock: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let (bytes, cut) = loop {
        match rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break (m.bytes, m.flags.contains(ReturnFlags::CTRUNC)),
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
    Ok(Received { bytes, fds, cut })
}

/// The error of descriptors cut off (`MSG_CTRUNC`), naming both causes:
/// "got 1 of 4 descriptors" would not say why.
pub(crate) fn cut_off() -> io::Error {
    io::Error::other(format!(
        "descriptors sent with a message were cut off (MSG_CTRUNC): this process is at its \
         open-file limit (RLIMIT_NOFILE, `ulimit -n` {}) or the peer sent more than {MAX_FDS}",
        rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
    ))
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

/// Connects a Unix stream socket to `path` by `deadline`. A blocking
/// `connect(2)` to a listener whose backlog is full waits until the
/// listener accepts — without end if it is stopped (`SIGSTOP`) and another
/// process of the user filled its backlog (found by the attack on
/// `e99056a`: a caller blocked for the whole stop, `SIGTERM` unheard).
/// Here the socket is non-blocking: a full backlog is `EAGAIN`, tried again
/// every millisecond until `deadline` (then `TimedOut`). The stream
/// returned is blocking.
pub(crate) fn unix_connect_by(
    path: &std::path::Path,
    deadline: Instant,
) -> io::Result<std::os::unix::net::UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the listener's backlog stayed full",
                    ));
                }
                std::thread::sleep((deadline - now).min(std::time::Duration::from_millis(1)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stream = std::os::unix::net::UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Reads what is in the socket's buffer now into `buf`, never waiting:
/// the number of bytes (0 at end of stream), or `None` when nothing is
/// there or the read failed.
pub(crate) fn recv_nowait(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Option<usize> {
    let len = buf.len();
    match rustix::net::recv(sock, buf, RecvFlags::DONTWAIT) {
        Ok((n, _)) => Some(n.min(len)),
        Err(_) => None,
    }
}

/// Writes `bytes` on a connected stream socket if it takes them now, never
/// waiting and raising no `SIGPIPE` (a peer gone is `EPIPE`); whether all
/// of them went.
pub(crate) fn send_nowait(sock: BorrowedFd<'_>, bytes: &[u8]) -> bool {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    matches!(rustix::net::send(sock, bytes, flags), Ok(n) if n == bytes.len())
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// More descriptors than the receive buffer holds are cut off by the
    /// kernel (`MSG_CTRUNC`, the same flag as at the open-file limit): an
    /// error saying so, not a short list.
    #[test]
    fn descriptors_cut_off_by_the_kernel_are_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        let extra: Vec<OwnedFd> = (0..MAX_FDS * 8)
            .map(|_| rustix::io::dup(&a).unwrap())
            .collect();
        let borrowed: Vec<BorrowedFd<'_>> = extra.iter().map(|f| f.as_fd()).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS * 8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        rustix::net::sendmsg(&a, &[IoSlice::new(b"x")], &mut control, SendFlags::empty()).unwrap();
        let err = recv_with_fds(&b, &mut [0u8; 8]).unwrap_err();
        assert!(err.to_string().contains("MSG_CTRUNC"), "{err}");
        // Within the limit: the bytes and every descriptor.
        send_with_fds(&a, b"y", &borrowed[..MAX_FDS]).unwrap();
        let (n, fds) = recv_with_fds(&b, &mut [0u8; 8]).unwrap();
        assert_eq!((n, fds.len()), (1, MAX_FDS));
    }
}
