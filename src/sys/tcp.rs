//! What a heartbeat helper needs of a TCP socket it shares with its owner
//! (`transport::heartbeat`): how much output the kernel still holds, and a
//! write that never waits.

use std::os::fd::BorrowedFd;

/// Bytes of the socket's output the kernel holds (sent but not
/// acknowledged, or not yet sent): `TIOCOUTQ` (`SIOCOUTQ` on TCP).
pub(crate) fn unsent_bytes(fd: BorrowedFd<'_>) -> std::io::Result<usize> {
    const TIOCOUTQ: rustix::ioctl::Opcode = 0x5411;
    // SAFETY: TIOCOUTQ writes one `c_int` to its argument, which `Getter`
    // provides and reads back.
    let n = unsafe {
        rustix::ioctl::ioctl(
            fd,
            rustix::ioctl::Getter::<TIOCOUTQ, std::ffi::c_int>::new(),
        )
    }?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `send(2)` of `bytes` without waiting and without `SIGPIPE`: how many
/// the kernel took.
pub(crate) fn send_now(fd: BorrowedFd<'_>, bytes: &[u8]) -> std::io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    Ok(rustix::net::send(fd, bytes, flags)?)
}
