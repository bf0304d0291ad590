//! What a heartbeat helper needs of a TCP socket it shares with its owner
//! (`transport::heartbeat`): a write that never waits; and what a sender
//! needs to tell a slow peer from a silent one: how much of its output
//! the kernel still holds.

use std::os::fd::BorrowedFd;

/// `send(2)` of `bytes` without waiting and without `SIGPIPE`: how many
/// the kernel took.
pub(crate) fn send_now(fd: BorrowedFd<'_>, bytes: &[u8]) -> std::io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    Ok(rustix::net::send(fd, bytes, flags)?)
}

/// Bytes in `fd`'s send queue: sent but not acknowledged by the peer's TCP,
/// plus not sent yet (`SIOCOUTQ`, tcp(7)). With the bytes the kernel took
/// from us in all, this says how much the peer acknowledged: a peer whose
/// acknowledgements grow is taking our data, however slowly.
pub(crate) fn unacknowledged(fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    /// `SIOCOUTQ` (= `TIOCOUTQ`).
    const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: `SIOCOUTQ` on a socket writes one `int` (the bytes in its
    // send queue), the getter's output type; `fd` is a live socket for the
    // call.
    let queued = unsafe {
        rustix::ioctl::ioctl(
            fd,
            rustix::ioctl::Getter::<SIOCOUTQ, std::ffi::c_int>::new(),
        )
    }?;
    usize::try_from(queued).map_err(|_| std::io::ErrorKind::InvalidData.into())
}
