//! Where object data lives: the arena (a sealed memfd, created with its
//! pages reserved, so a full tmpfs is a typed error at start, never
//! `SIGBUS` later, and nobody can truncate it under a mapping), the
//! fallback directory's files, and the client-side mappings of both with
//! every offset and length checked.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
/// Errors: [`StoreError::ArenaReserve`] when the memory cannot be reserved
/// (`ENOSPC` on a full `/dev/shm`), [`StoreError::Shm`] otherwise.
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

/// The fallback allocator of the service: one file per object in a
/// directory, created 0600, exclusive, its blocks reserved with
/// `fallocate` so a full disk is [`StoreError::OutOfDisk`] at create time.
#[derive(Debug)]
pub struct FileFallback {
    dir: PathBuf,
}

static FALLBACK_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FileFallback {
    /// Uses `dir`, which must exist and be a directory.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(StoreError::InvalidConfig(
                "the fallback directory does not exist or is not a directory",
            ));
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Fallback for FileFallback {
    fn allocate(&mut self, id: &ObjectId, size: u64) -> Result<String, StoreError> {
        for _ in 0..8 {
            // Relaxed: only makes names distinct.
            let n = FALLBACK_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("shmwire-fb-{}-{n}", std::process::id());
            let path = self.dir.join(&name);
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(crate::sys::fs::O_NOFOLLOW)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "fallback file");
                    return Err(StoreError::OutOfDisk { id: *id, size });
                }
            };
            if let Err(e) = crate::sys::fs::reserve(&file, size.max(1)) {
                tracing::warn!(path = %path.display(), error = %e, "fallback fallocate");
                let _ = std::fs::remove_file(&path);
                return Err(StoreError::OutOfDisk { id: *id, size });
            }
            return Ok(name);
        }
        Err(StoreError::OutOfDisk { id: *id, size })
    }

    fn free(&mut self, file: &str) {
        if valid_file_name(file) {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
    }
}

/// Whether a fallback file name (from the service, untrusted) is a plain
/// name of ours: `[A-Za-z0-9_.-]`, 1..=64 bytes, not starting with `.`.
pub(crate) fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What keeps an object's bytes mapped in a client (held, never read: the
/// mapping lives as long as a `Span` does).
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum Backing {
    /// In the arena (mapped once per client).
    Arena(Arc<AnonSegment>),
    /// In a fallback file, mapped for this object.
    File(Arc<memmap2::MmapMut>),
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

    /// Maps fallback file `file` of `dir` for `data_size` bytes, checking the
    /// name (a plain file name, no path) and that the file is that long.
    pub(crate) fn in_file(dir: &Path, file: &str, data_size: u64) -> Result<Self, StoreError> {
        if !valid_file_name(file) {
            return Err(StoreError::BadReply("bad fallback file name"));
        }
        let len = usize::try_from(data_size)
            .map_err(|_| StoreError::BadReply("object larger than the address space"))?;
        if len == 0 {
            return Ok(Span {
                ptr: std::ptr::NonNull::<u8>::dangling().as_ptr(),
                len: 0,
                _backing: Backing::Empty,
            });
        }
        let f: File = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(crate::sys::fs::O_NOFOLLOW)
            .open(dir.join(file))
            .map_err(|e| StoreError::io("open a fallback file", e))?;
        let md = f
            .metadata()
            .map_err(|e| StoreError::io("stat a fallback file", e))?;
        if !md.is_file() || md.len() < data_size {
            return Err(StoreError::BadReply(
                "fallback file shorter than its object",
            ));
        }
        // SAFETY: a shared read-write mapping of `len` bytes of a regular
        // file at least that long; the bytes are only accessed through
        // `Span` users, which treat them as shared memory.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&f) }
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

    #[test]
    fn fallback_files_are_checked_and_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut fb = FileFallback::new(tmp.path()).unwrap();
        let id = ObjectId::from_array([1; 28]);
        let name = fb.allocate(&id, 10_000).unwrap();
        assert!(valid_file_name(&name));
        let path = tmp.path().join(&name);
        assert!(std::fs::metadata(&path).unwrap().len() >= 10_000);
        let span = Span::in_file(tmp.path(), &name, 10_000).unwrap();
        assert_eq!(span.len, 10_000);
        assert!(matches!(
            Span::in_file(tmp.path(), &name, 10_001),
            Err(StoreError::BadReply(_))
        ));
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(!valid_file_name(bad), "{bad:?}");
            assert!(matches!(
                Span::in_file(tmp.path(), bad, 1),
                Err(StoreError::BadReply(_))
            ));
        }
        fb.free(&name);
        assert!(!path.exists());
        // The mapping outlives the file.
        // SAFETY: the span is 10 000 bytes of a live shared mapping that
        // nothing else writes during the test.
        let bytes = unsafe { std::slice::from_raw_parts(span.ptr, span.len) };
        assert!(bytes.iter().all(|b| *b == 0));
        // A directory that is gone: out of disk, not a panic.
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
