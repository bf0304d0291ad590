//! What a heartbeat helper needs of a TCP socket it shares with its owner
//! (`transport::heartbeat`): a write that never waits.

use std::os::fd::BorrowedFd;

/// `send(2)` of `bytes` without waiting and without `SIGPIPE`: how many
/// the kernel took.
pub(crate) fn send_now(fd: BorrowedFd<'_>, bytes: &[u8]) -> std::io::Result<usize> {
    let flags = rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL;
    Ok(rustix::net::send(fd, bytes, flags)?)
}
