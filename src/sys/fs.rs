//! File-system flags and calls that `std` does not offer.

use std::fs::File;
use std::io;

/// `O_NOFOLLOW` for `OpenOptionsExt::custom_flags`.
pub(crate) const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
/// `O_NONBLOCK` for `OpenOptionsExt::custom_flags` (a FIFO opened by
/// mistake then never blocks the open).
pub(crate) const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// `O_DIRECTORY` for `OpenOptionsExt::custom_flags` (open fails unless the
/// path is a directory).
pub(crate) const O_DIRECTORY: i32 = rustix::fs::OFlags::DIRECTORY.bits() as i32;

/// Whether `e` is `ENOTEMPTY` (`rmdir` of a directory that still holds
/// entries).
pub(crate) fn is_enotempty(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
}

/// `errno` value of `ELOOP` (what `open` with `O_NOFOLLOW` returns on a
/// symlink).
pub(crate) fn is_eloop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Reserves `len` bytes of `file` from offset 0 (`fallocate(2)`, mode 0),
/// so later writes through a mapping cannot fail for lack of space (which
/// would be `SIGBUS`). Returns the error the file system gives (`ENOSPC`
/// when it is full).
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    loop {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `errno` value of `ENOSPC` (no space left on the device).
pub(crate) const ENOSPC: i32 = rustix::io::Errno::NOSPC.raw_os_error();
