//! Where object data lives: the arena (a sealed memfd, created with its
//! pages reserved, so a full tmpfs is a typed error at start, never
//! `SIGBUS` later, and nobody can truncate it under a mapping), the
//! fallback directory's unnamed files, and the client-side mappings of
//! both with every offset, length and file checked.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::error::StoreError;
use super::table::{Fallback, OBJECT_ALIGN};
use crate::ids::ObjectId;
use crate::shm::AnonSegment;

/// Creates the arena: a memfd of `capacity` bytes (labelled `name` in
/// `/proc/<pid>/fd` listings only), every page reserved (`fallocate`),
/// sealed against shrinking and growing, mapped read-write. The mapping is
/// the arena: object offsets are relative to its start (page aligned, so
/// 64-byte offsets are 64-byte aligned addresses). It has no name in the
/// session: clients receive the descriptor over their connection
/// (`super::handoff`).
///
/// A memfd lives on the kernel's internal shmem mount, which no size limit
/// of `/dev/shm` covers: reserving more than the host's memory would not
/// fail with `ENOSPC` but wake the OOM killer, which may kill any process
/// of the host. Every sealed memfd (arena, index, rings) is therefore
/// checked first against `MemAvailable` of `/proc/meminfo`
/// (`sys::memfd::create_sealed`).
///
/// Errors: [`StoreError::ArenaReserve`] when the memory cannot be reserved
/// (`ENOMEM` naming `MemAvailable` when the capacity exceeds it, `ENOSPC`
/// when the shmem file system is full), [`StoreError::Shm`] otherwise.
pub fn create_arena(name: &str, capacity: u64) -> Result<Arc<AnonSegment>, StoreError> {
    let len = usize::try_from(capacity)
        .map_err(|_| StoreError::InvalidConfig("capacity does not fit the address space"))?;
    // Every page is reserved at creation (`fallocate`): tmpfs allocates
    // them now, so writes through any mapping can never fault for lack of
    // space; a full file system is reported here.
    let seg = AnonSegment::create(name, len).map_err(|e| match e {
        crate::shm::ShmError::OutOfSpace { source, .. } => {
            StoreError::ArenaReserve { capacity, source }
        }
        other => StoreError::Shm(other),
    })?;
    Ok(Arc::new(seg))
}

/// The fallback allocator of the service: one file per object, created
/// in the fallback directory **without a name** (`O_TMPFILE`, mode 0600),
/// its blocks reserved with `fallocate` so a full disk is
/// [`StoreError::OutOfDisk`] at create time, never `SIGBUS` later. The
/// service keeps each file's descriptor for the object's life (in
/// `FallbackFiles`, under the token the table knows the object's slot
/// by) and hands it to clients over their connection's socket
/// (`super::handoff`); freeing the object closes it, and the file's
/// blocks go once no client maps it any more.
///
/// A file system that refuses `O_TMPFILE` (`EOPNOTSUPP`, `EISDIR`,
/// `EINVAL`) gets a file created exclusively (`O_CREAT | O_EXCL |
/// O_NOFOLLOW`, 0600) and unlinked at once, before its blocks are
/// reserved: it has a name for that moment only.
#[derive(Debug)]
pub struct FileFallback {
    dir: PathBuf,
    files: FallbackFiles,
    /// Try `O_TMPFILE` first (always, except in tests of the other way).
    tmpfile: bool,
    /// The descriptor limit in force (after raising it), for errors.
    limit: u64,
}

/// The open fallback files of a [`FileFallback`], by token: shared with
/// the service thread, which sends their descriptors and writes `Put`
/// objects through them.
#[derive(Debug, Clone, Default)]
pub(crate) struct FallbackFiles(Arc<Mutex<HashMap<String, File>>>);

impl FallbackFiles {
    /// The map (one thread uses it: the service's; the lock is never
    /// contended).
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, File>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

static FALLBACK_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileFallback {
    /// Uses `dir`, which must exist, be a directory and take files: one
    /// file is created there as objects' files will be (without a name, or
    /// named and unlinked at once) and closed, so a directory where none
    /// can be made (`/proc`, a read-only mount, no permission) is refused
    /// now, not at the first full arena. Raises this process's soft
    /// `RLIMIT_NOFILE` to its hard limit (each fallback object keeps a
    /// descriptor open).
    ///
    /// Errors: [`StoreError::Io`] naming `dir` when it is missing, not a
    /// directory, or takes no file (with the OS error).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(StoreError::io(
                "use the fallback directory",
                std::io::Error::new(
                    ErrorKind::NotFound,
                    format!("{} does not exist or is not a directory", dir.display()),
                ),
            ));
        }
        let fb = Self {
            dir,
            files: FallbackFiles::default(),
            tmpfile: true,
            limit: crate::sys::fs::raise_nofile_limit(),
        };
        // The trial file: unnamed, so closing it frees it.
        if let Err(e) = fb.create_unnamed() {
            return Err(StoreError::io(
                "use the fallback directory",
                std::io::Error::new(
                    e.kind(),
                    format!("cannot create a file in {}: {e}", fb.dir.display()),
                ),
            ));
        }
        Ok(fb)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fallback files open now.
    pub fn open_files(&self) -> usize {
        self.files.lock().len()
    }

    /// The files' descriptors, by token (for the service).
    pub(crate) fn files(&self) -> FallbackFiles {
        self.files.clone()
    }

    /// A new file without a name in the directory (see the type's docs).
    fn create_unnamed(&self) -> std::io::Result<File> {
        if self.tmpfile {
            match crate::sys::fs::open_tmpfile(&self.dir) {
                Ok(f) => return Ok(f),
                Err(e) if crate::sys::fs::tmpfile_unsupported(&e) => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            // Relaxed: only makes names distinct.
            let n = FALLBACK_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self
                .dir
                .join(format!(".shmwire-fb-{}-{n}", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(crate::sys::fs::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => {
                    std::fs::remove_file(&path)?;
                    return Ok(f);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Fallback for FileFallback {
    fn allocate(&mut self, id: &ObjectId, size: u64) -> Result<String, StoreError> {
        let file = match self.create_unnamed() {
            Ok(f) => f,
            Err(e) if crate::sys::fs::is_out_of_descriptors(&e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "fallback file");
                return Err(StoreError::OutOfDescriptors {
                    id: *id,
                    open: self.open_files() as u64,
                    limit: self.limit,
                });
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "fallback file");
                return Err(StoreError::OutOfDisk { id: *id, size });
            }
        };
        if let Err(e) = crate::sys::fs::reserve(&file, size.max(1)) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "fallback fallocate");
            // Beyond the file-size limit (our check, or the kernel's
            // `EFBIG`): the client is told so, not that the disk is full.
            if e.kind() == std::io::ErrorKind::FileTooLarge {
                return Err(StoreError::FileSizeLimit {
                    id: *id,
                    size,
                    limit: crate::sys::fs::file_size_limit().unwrap_or(u64::MAX),
                });
            }
            return Err(StoreError::OutOfDisk { id: *id, size });
        }
        // Relaxed: only makes tokens distinct.
        let token = format!("fb-{}", FALLBACK_COUNTER.fetch_add(1, Ordering::Relaxed));
        self.files.lock().insert(token.clone(), file);
        Ok(token)
    }

    fn free(&mut self, token: &str) {
        // Closing the last descriptor of an unnamed file frees it once no
        // mapping is left.
        self.files.lock().remove(token);
    }
}

/// What keeps an object's bytes mapped in a client (held, never read: the
/// mapping lives as long as a `Span` does).
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum Backing {
    /// In the arena (mapped once per client).
    Arena(Arc<AnonSegment>),
    /// In a fallback file, mapped for this object (read-only for a
    /// buffer `get` lent, read-write for a creator).
    File(Arc<memmap2::MmapRaw>),
    /// A zero-length object outside the arena: nothing to map.
    Empty,
}

/// A checked view of one object's bytes: `len` bytes at `ptr`, inside a
/// mapping that `backing` keeps alive.
#[derive(Debug)]
pub(crate) struct Span {
    pub(crate) ptr: *mut u8,
    pub(crate) len: usize,
    pub(crate) _backing: Backing,
}

// SAFETY: the pointer refers into a shared mapping owned (reference
// counted) by `backing`, which is `Send + Sync`; a `Span` carries no
// thread-bound state, and who may write the bytes is decided by the types
// that wrap it (`ObjectBuilder` writes, `ObjectBuffer` only reads).
unsafe impl Send for Span {}
// SAFETY: as above; `&Span` gives no access to the bytes by itself.
unsafe impl Sync for Span {}

impl Span {
    /// The span of `data_size` bytes at `offset` in the arena, after checking
    /// (hostile input) that the offset is 64-byte aligned and the whole span
    /// lies inside the arena.
    pub(crate) fn in_arena(
        arena: &Arc<AnonSegment>,
        offset: u64,
        data_size: u64,
    ) -> Result<Self, StoreError> {
        let end = offset
            .checked_add(data_size)
            .ok_or(StoreError::BadReply("object span overflows"))?;
        if offset % OBJECT_ALIGN != 0 {
            return Err(StoreError::BadReply("object offset is not 64-byte aligned"));
        }
        if end > arena.payload_len() as u64 {
            return Err(StoreError::BadReply("object lies outside the arena"));
        }
        // SAFETY: offset + data_size ≤ payload_len (checked above), so the
        // pointer stays inside (or one past the end of) the payload mapping.
        let ptr = unsafe { arena.payload_ptr().add(offset as usize) };
        Ok(Span {
            ptr,
            len: data_size as usize,
            _backing: Backing::Arena(Arc::clone(arena)),
        })
    }

    /// Maps `data_size` bytes of the fallback file `file` (a descriptor
    /// the service handed over: untrusted), read-write for a creator or
    /// read-only, after checking (`fstat`) that it is a regular file at
    /// least that long. The mapping outlives the descriptor, which the
    /// caller may close.
    pub(crate) fn in_file(file: &File, data_size: u64, writable: bool) -> Result<Self, StoreError> {
        let len = usize::try_from(data_size)
            .map_err(|_| StoreError::BadReply("object larger than the address space"))?;
        let md = file
            .metadata()
            .map_err(|_| StoreError::BadReply("a fallback descriptor does not stat"))?;
        if !md.is_file() {
            return Err(StoreError::BadReply(
                "a fallback descriptor is not a regular file",
            ));
        }
        if md.len() < data_size {
            return Err(StoreError::BadReply(
                "fallback file shorter than its object",
            ));
        }
        if len == 0 {
            return Ok(Span {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
                _backing: Backing::Empty,
            });
        }
        let opts = {
            let mut o = memmap2::MmapOptions::new();
            o.len(len);
            o
        };
        let map = if writable {
            opts.map_raw(file)
        } else {
            opts.map_raw_read_only(file)
        }
        .map_err(|e| StoreError::io("map a fallback file", e))?;
        Ok(Span {
            ptr: map.as_mut_ptr(),
            len,
            _backing: Backing::File(Arc::new(map)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_spans_are_bounds_checked() {
        let arena = create_arena("arena", 4096).unwrap();
        assert_eq!(arena.payload_len(), 4096);
        assert!(Span::in_arena(&arena, 0, 4096).is_ok());
        assert!(Span::in_arena(&arena, 4032, 64).is_ok());
        assert!(Span::in_arena(&arena, 4096, 0).is_ok());
        for (offset, len) in [
            (4032, 65),
            (4096, 1),
            (1, 1),
            (63, 0),
            (u64::MAX - 63, 64),
            (64, u64::MAX),
        ] {
            assert!(
                matches!(
                    Span::in_arena(&arena, offset, len),
                    Err(StoreError::BadReply(_))
                ),
                "offset {offset} len {len}"
            );
        }
    }

    /// Allocates a 10 000-byte fallback object in `fb`, checks that the
    /// directory stays empty, maps it, frees it.
    fn unnamed_fallback_round_trip(dir: &Path, mut fb: FileFallback) {
        let id = ObjectId::from_array([1; 28]);
        let token = fb.allocate(&id, 10_000).unwrap();
        // No name anywhere: nothing in the directory.
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
        assert_eq!(fb.open_files(), 1);
        let files = fb.files();
        let span = {
            let map = files.lock();
            let f = map.get(&token).unwrap();
            assert!(f.metadata().unwrap().len() >= 10_000);
            assert!(matches!(
                Span::in_file(f, 10_001, false),
                Err(StoreError::BadReply(_))
            ));
            Span::in_file(f, 10_000, true).unwrap()
        };
        assert_eq!(span.len, 10_000);
        // SAFETY: the span is 10 000 bytes of a live shared read-write
        // mapping that nothing else uses during the test.
        unsafe { std::ptr::write_bytes(span.ptr, 7, span.len) };
        fb.free(&token);
        assert_eq!(fb.open_files(), 0);
        // The mapping outlives the descriptor.
        // SAFETY: as above.
        let bytes = unsafe { std::slice::from_raw_parts(span.ptr, span.len) };
        assert!(bytes.iter().all(|b| *b == 7));
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0);
    }

    #[test]
    fn fallback_files_have_no_name_are_checked_and_freed() {
        let tmp = tempfile::tempdir().unwrap();
        unnamed_fallback_round_trip(tmp.path(), FileFallback::new(tmp.path()).unwrap());
        // The way taken where the file system refuses O_TMPFILE: a named
        // file unlinked at once.
        let mut fb = FileFallback::new(tmp.path()).unwrap();
        fb.tmpfile = false;
        unnamed_fallback_round_trip(tmp.path(), fb);
        // Only regular files map: a directory's descriptor is refused.
        let d = File::open(tmp.path()).unwrap();
        assert!(matches!(
            Span::in_file(&d, 1, false),
            Err(StoreError::BadReply(_))
        ));
        // A directory that is gone: out of disk, not a panic.
        let id = ObjectId::from_array([1; 28]);
        let gone = tmp.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let mut fb = FileFallback::new(&gone).unwrap();
        std::fs::remove_dir(&gone).unwrap();
        assert!(matches!(
            fb.allocate(&id, 1),
            Err(StoreError::OutOfDisk { size: 1, .. })
        ));
        assert!(FileFallback::new(&gone).is_err());
    }
}
