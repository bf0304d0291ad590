//! Anonymous shared memory: [`AnonSegment`], a sealed memfd mapped
//! `MAP_SHARED`, handed to a peer as a descriptor (never by name).

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use memmap2::{MmapMut, MmapOptions};

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
    _map: MmapMut,
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
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
            if e.raw_os_error() == Some(crate::sys::fs::ENOSPC) {
                ShmError::OutOfSpace {
                    path: path.clone(),
                    len: len as u64,
                    source: e,
                }
            } else {
                ShmError::io("create sealed memfd", &path, e)
            }
        })?;
        Self::map(fd, len, &path)
    }

    /// Maps a memfd received from a peer after checking that it is sealed
    /// against resizing and exactly `len` bytes long.
    ///
    /// # Errors
    /// [`ShmError::Io`] naming the check that failed (`InvalidData`: not
    /// sealed, wrong size).
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        let path = std::path::PathBuf::from("memfd:from-peer");
        crate::sys::memfd::check_sealed(&fd, len as u64)
            .map_err(|e| ShmError::io("check memfd seals", &path, e))?;
        Self::map(fd, len, &path)
    }

    fn map(fd: OwnedFd, len: usize, path: &std::path::Path) -> Result<Self> {
        let file = File::from(fd.try_clone().map_err(|e| ShmError::io("dup", path, e))?);
        // SAFETY: the file is a memfd sealed against shrinking and growing
        // (made so by `create`, checked by `from_fd`) and `len` bytes long,
        // so every page of the mapping stays backed; other processes may map
        // it too, which is the point: all accesses to the shared bytes go
        // through raw pointers/atomics.
        let mut map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| ShmError::io("mmap", path, e))?;
        let ptr = NonNull::new(map.as_mut_ptr())
            .ok_or_else(|| ShmError::io("mmap", path, std::io::Error::other("null mapping")))?;
        Ok(Self {
            _map: map,
            ptr,
            len,
            fd,
        })
    }

    /// Start of the mapping (page aligned).
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
