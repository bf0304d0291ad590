//! Anonymous shared memory: [`AnonSegment`], a sealed memfd mapped
//! `MAP_SHARED`, handed to a peer as a descriptor (never by name).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use memmap2::{MmapOptions, MmapRaw};

use super::error::{Result, ShmError};

/// A mapping of a sealed, nameless memfd (see `sys::memfd`): its size is
/// fixed for everyone who holds it, so a peer cannot make our accesses fault
/// by truncating it, and nothing of it is visible in the file system.
///
/// Made by [`AnonSegment::create`] (reserved page by page, so a full
/// `/dev/shm` is [`ShmError::OutOfSpace`] here, never `SIGBUS` later) or
/// received from a peer and checked by [`AnonSegment::from_fd`].
#[derive(Debug)]
pub struct AnonSegment {
    /// Owns the mapping (unmapped on drop); accessed through `ptr`.
    _map: MmapRaw,
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory accessed only through raw
// pointers and atomics by the layer above (the ring); moving or sharing the
// handle between threads moves no data.
unsafe impl Send for AnonSegment {}
// SAFETY: as for `Send`: `&AnonSegment` only hands out the raw pointer and
// the length.
unsafe impl Sync for AnonSegment {}

impl AnonSegment {
    /// Creates a sealed memfd of `len` bytes (zero-filled) and maps it.
    /// `tag` names it in `/proc/<pid>/fd` listings only.
    ///
    /// # Errors
    /// [`ShmError::OutOfSpace`] when the pages cannot be reserved (a full
    /// tmpfs), [`ShmError::Io`] for other failures.
    pub fn create(tag: &str, len: usize) -> Result<Self> {
        let path = std::path::PathBuf::from(format!("memfd:{tag}"));
        let fd = crate::sys::memfd::create_sealed(tag, len as u64).map_err(|e| {
            // ENOSPC: the shmem mount is full; OutOfMemory: more than the
            // host's available memory was asked for (`create_sealed`).
            if e.raw_os_error() == Some(crate::sys::fs::ENOSPC)
                || e.kind() == std::io::ErrorKind::OutOfMemory
            {
                ShmError::OutOfSpace {
                    path: path.clone(),
                    len: len as u64,
                    source: e,
                }
            } else {
                ShmError::io("create sealed memfd", &path, e)
            }
        })?;
        Self::map(fd, len, &path, true)
    }

    /// Maps a memfd received from a peer after checking that it is sealed
    /// against resizing and exactly `len` bytes long.
    ///
    /// # Errors
    /// [`ShmError::Io`] naming the check that failed (`InvalidData`: not
    /// sealed, wrong size).
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        Self::from_fd_mode(fd, len, true)
    }

    /// [`AnonSegment::from_fd`], mapped `PROT_READ` when `writable` is
    /// false (a stray write through the mapping then faults in this process
    /// instead of changing the shared bytes). The same checks: a memfd
    /// that is not sealed against shrinking and growing is refused, since
    /// its holder could truncate it under the mapping (`SIGBUS`).
    ///
    /// # Errors
    /// As [`AnonSegment::from_fd`].
    pub fn from_fd_mode(fd: OwnedFd, len: usize, writable: bool) -> Result<Self> {
        let path = std::path::PathBuf::from("memfd:from-peer");
        crate::sys::memfd::check_sealed(&fd, len as u64)
            .map_err(|e| ShmError::io("check memfd seals", &path, e))?;
        Self::map(fd, len, &path, writable)
    }

    /// Another mapping of the same memfd (e.g. a read-write one beside a
    /// read-only one), sharing the bytes.
    ///
    /// # Errors
    /// [`ShmError::Io`] when the descriptor cannot be duplicated or mapped.
    pub fn remap(&self, writable: bool) -> Result<Self> {
        let path = std::path::PathBuf::from("memfd:remap");
        let fd = self
            .fd
            .try_clone()
            .map_err(|e| ShmError::io("dup", &path, e))?;
        Self::map(fd, self.len, &path, writable)
    }

    fn map(fd: OwnedFd, len: usize, path: &std::path::Path, writable: bool) -> Result<Self> {
        let file = File::from(fd.try_clone().map_err(|e| ShmError::io("dup", path, e))?);
        let opts = {
            let mut o = MmapOptions::new();
            o.len(len);
            o
        };
        // SAFETY: the file is a memfd sealed against shrinking and growing
        // (made so by `create`, checked by `from_fd_mode`) and `len` bytes
        // long, so every page of the mapping stays backed; other processes
        // may map it too, which is the point: all accesses to the shared
        // bytes go through raw pointers/atomics (a `MmapRaw` hands out no
        // references).
        let map = if writable {
            opts.map_raw(&file)
        } else {
            opts.map_raw_read_only(&file)
        }
        .map_err(|e| ShmError::io("mmap", path, e))?;
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| ShmError::io("mmap", path, std::io::Error::other("null mapping")))?;
        Ok(Self {
            _map: map,
            ptr,
            len,
            fd,
            writable,
        })
    }

    /// Gives the memory of every page back to the host, keeping the size
    /// (`fallocate(PUNCH_HOLE)`): for memory that peers were handed
    /// and may still hold. Every mapping of it (this one too) reads zeros
    /// afterwards.
    ///
    /// # Errors
    /// [`ShmError::Io`] when the kernel refuses (not expected for a memfd
    /// shmwire made).
    pub fn discard(&self) -> Result<()> {
        crate::sys::memfd::discard(&self.fd, self.len as u64).map_err(|e| {
            ShmError::io(
                "fallocate (punch hole)",
                std::path::Path::new("memfd:ring"),
                e,
            )
        })
    }

    /// Whether the mapping is writable (`PROT_WRITE`).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Start of the mapping (page aligned). Only loads may be made through
    /// it when [`AnonSegment::is_writable`] is false.
    pub fn payload_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn payload_len(&self) -> usize {
        self.len
    }

    /// The memfd, to pass to a peer over `SCM_RIGHTS`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More than the host's available memory is `OutOfSpace` at once,
    /// never a reservation that wakes the OOM killer (a memfd is not
    /// limited by `/dev/shm`'s size). 1 PiB exceeds any host's memory.
    #[test]
    fn more_than_available_memory_is_out_of_space() {
        match AnonSegment::create("too-big", 1 << 50) {
            Err(ShmError::OutOfSpace { len, source, .. }) => {
                assert_eq!(len, 1 << 50);
                assert!(source.to_string().contains("MemAvailable"), "{source}");
            }
            other => panic!("expected OutOfSpace, got {other:?}"),
        }
    }

    #[test]
    fn unsealed_or_wrong_sized_memfds_are_refused() {
        // Sealed and the right size: mapped, read-only or not.
        let seg = AnonSegment::create("anon-test", 8192).unwrap();
        let fd = seg.fd().try_clone_to_owned().unwrap();
        let ro = AnonSegment::from_fd_mode(fd, 8192, false).unwrap();
        assert!(!ro.is_writable());
        assert!(seg.remap(true).unwrap().is_writable());
        // Wrong size.
        let fd = seg.fd().try_clone_to_owned().unwrap();
        assert!(AnonSegment::from_fd_mode(fd, 4096, false).is_err());
        // A memfd without seals: its holder could truncate it under us.
        let raw = crate::sys::memfd::create_weakly_sealed("unsealed", 8192, false).unwrap();
        let err = AnonSegment::from_fd_mode(raw, 8192, false).unwrap_err();
        assert!(err.to_string().contains("not sealed"), "{err}");
        // Sealed against shrinking only (growing allowed): still refused.
        let raw = crate::sys::memfd::create_weakly_sealed("shrink-only", 8192, true).unwrap();
        assert!(AnonSegment::from_fd_mode(raw, 8192, true).is_err());
    }
}
