//! Anonymous shared memory that a peer cannot resize: `memfd_create` with
//! sealing, reserved with `fallocate`, sealed against shrinking and growing.
//!
//! Passed to a peer over `SCM_RIGHTS`, such a file has no name (nothing to
//! clean up, nothing another process can open by path), and a peer holding
//! it cannot truncate it under our mapping — which would kill us with
//! `SIGBUS` — because the seals forbid it and cannot be removed.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{MemfdFlags, SealFlags};

/// The seals every shmwire memfd carries.
fn required_seals() -> SealFlags {
    SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

/// Creates a sealed memfd of exactly `len` bytes, every page reserved
/// (`ENOSPC` here, never `SIGBUS` later). `name` only shows in
/// `/proc/<pid>/fd` listings.
pub(crate) fn create_sealed(name: &str, len: u64) -> io::Result<OwnedFd> {
    // A memfd lives on the kernel's internal shmem mount, which no
    // `/dev/shm` size limit covers: reserving more than the host's memory
    // does not fail with ENOSPC but wakes the OOM killer, which may kill
    // any process of the host. Refuse it first.
    if let Some(available) = mem_available() {
        if len > available {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "the host has {available} bytes of memory available (MemAvailable in \
                     /proc/meminfo); reserving {len} would wake the OOM killer"
                ),
            ));
        }
    }
    // A memfd is a file too: past the file-size limit, `ftruncate` would
    // be SIGXFSZ.
    crate::sys::fs::check_file_size(len)?;
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len)?;
    loop {
        match rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::fcntl_add_seals(&fd, required_seals())?;
    Ok(fd)
}

/// Frees every page of a memfd of `len` bytes, keeping its size
/// (`fallocate(PUNCH_HOLE | KEEP_SIZE)`, allowed under shmwire's seals,
/// which forbid resizing, not writing): the memory goes back to the host
/// whoever else still holds the descriptor or a mapping of it. Such a
/// holder then reads zeros, and a page it writes again is allocated (and
/// charged) to it.
pub(crate) fn discard(fd: impl AsFd, len: u64) -> io::Result<()> {
    // Whole pages: a partial last page would only be zeroed, not freed.
    // 64 KiB covers every page size Linux uses; past the end of the file
    // there is nothing to punch.
    const ANY_PAGE: u64 = 64 << 10;
    let len = len.div_ceil(ANY_PAGE) * ANY_PAGE;
    loop {
        match rustix::fs::fallocate(
            &fd,
            rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
            0,
            len,
        ) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes; `None` when it cannot be
/// read or parsed (then only the reservation itself can fail).
fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line["MemAvailable:".len()..].split_whitespace();
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then(|| kib.saturating_mul(1024))
}

/// Checks a memfd received from a peer: sealed against shrinking and
/// growing (and against removing the seals), and exactly `len` bytes long.
pub(crate) fn check_sealed(fd: impl AsFd, len: u64) -> io::Result<()> {
    let seals = rustix::fs::fcntl_get_seals(&fd)?;
    if !seals.contains(required_seals()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("shared memory from the peer is not sealed against resizing (seals {seals:?})"),
        ));
    }
    let size = rustix::fs::fstat(&fd)?.st_size;
    if size < 0 || size as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("shared memory from the peer has {size} bytes, expected {len}"),
        ));
    }
    Ok(())
}

/// Test only: a memfd of `len` bytes carrying only `shrink_seal`'s seal
/// (`F_SEAL_SHRINK` if true, none otherwise), as a careless or hostile
/// peer would pass.
#[cfg(test)]
pub(crate) fn create_weakly_sealed(name: &str, len: u64, shrink_seal: bool) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len)?;
    if shrink_seal {
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK)?;
    }
    Ok(fd)
}
