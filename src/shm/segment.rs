//! A named segment: one file in a session directory, mapped shared.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::{addr_of_mut, NonNull};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapMut, MmapOptions};

use super::error::{Result, ShmError};
use super::header::{
    HeaderSnapshot, SegmentHeader, CREATOR_TAG_LEN, INIT_READY, INIT_UNINIT, LAYOUT_VERSION, MAGIC,
    MAX_PAYLOAD_LEN, PAYLOAD_OFFSET,
};
use super::session::Session;

/// A mapped shared-memory segment: a [`SegmentHeader`] at offset 0 and a
/// payload of [`Segment::payload_len`] bytes at offset [`PAYLOAD_OFFSET`].
///
/// The creator ([`Segment::create`] / [`Segment::create_with`]) unlinks the
/// file when its `Segment` is dropped; openers ([`Segment::open`]) never do.
/// Either may call [`Segment::unlink`] explicitly. Processes that have the
/// segment mapped keep their mapping after the unlink.
///
/// `Segment` is `Send + Sync`; share it as `Arc<Segment>` to keep the
/// mapping alive for as long as something (a ring half) points into it.
/// The payload is shared memory that other processes may write at any time:
/// [`Segment::payload_ptr`] hands out a raw pointer, never a reference, and
/// whatever lives in the payload must treat its contents as hostile.
pub struct Segment {
    /// Start of the mapping (the header). Obtained from `map.as_mut_ptr()`.
    base: NonNull<u8>,
    /// Owns the mapping; unmapped on drop.
    _map: Mapping,
    payload_len: usize,
    kind: u32,
    name: String,
    path: PathBuf,
    creator: bool,
    /// (device, inode) of the file we mapped, so unlink removes only it.
    ident: (u64, u64),
    unlinked: AtomicBool,
}

/// The mapping a [`Segment`] owns: read-write, or read-only
/// ([`Segment::open_read_only`]).
#[derive(Debug)]
enum Mapping {
    /// `PROT_READ | PROT_WRITE`, shared.
    ReadWrite(#[allow(dead_code)] MmapMut),
    /// `PROT_READ`, shared: a write through it faults.
    ReadOnly(#[allow(dead_code)] Mmap),
}

impl Mapping {
    fn is_read_only(&self) -> bool {
        matches!(self, Mapping::ReadOnly(_))
    }
}

// SAFETY: `Segment` owns its mapping (`MmapMut`/`Mmap` are Send + Sync); `base` only
// points into that mapping, which lives as long as the `Segment`; all
// accesses to the shared bytes go through raw pointers or atomics, so
// moving or sharing the handle between threads adds no data race of its own.
unsafe impl Send for Segment {}
// SAFETY: see `Send`; `&Segment` exposes only raw pointers, atomics and
// immutable metadata.
unsafe impl Sync for Segment {}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("kind", &format_args!("{:#x}", self.kind))
            .field("payload_len", &self.payload_len)
            .field("creator", &self.creator)
            .finish()
    }
}

fn nofollow() -> i32 {
    crate::sys::fs::O_NOFOLLOW
}

impl Segment {
    /// Creates segment `name` in `session` with a zeroed payload of
    /// `payload_len` bytes holding `kind`, and returns it **unpublished**:
    /// initialise the payload through [`UnpublishedSegment::payload_mut`],
    /// then call [`UnpublishedSegment::publish`]. Until then
    /// [`Segment::open`] reports `NotInitialized`. Dropping the
    /// `UnpublishedSegment` removes the file.
    ///
    /// The file is created under a temporary name owned by this process
    /// (`.tmp-<stem>-<n>-seg`, `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600),
    /// sized with `ftruncate`, given its header — tagged with this
    /// process's liveness lock file, so that [`Session::cleanup_stale`] can
    /// remove it if this process dies — and then hard-linked to `name`
    /// (`AlreadyExists` if the name is taken) and the temporary name
    /// removed.
    pub fn create(
        session: &Session,
        name: &str,
        payload_len: usize,
        kind: u32,
    ) -> Result<UnpublishedSegment> {
        let path = session.segment_path(name)?;
        if payload_len as u64 > MAX_PAYLOAD_LEN {
            return Err(ShmError::TooLarge {
                requested: payload_len as u64,
                limit: MAX_PAYLOAD_LEN,
            });
        }
        let total = PAYLOAD_OFFSET
            .checked_add(payload_len)
            .ok_or(ShmError::TooLarge {
                requested: payload_len as u64,
                limit: MAX_PAYLOAD_LEN,
            })?;
        let tag = session.process_lock_name()?;
        debug_assert!(tag.len() <= CREATOR_TAG_LEN);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(ShmError::AlreadyExists { path });
        }
        // Made under a temporary name owned by our lock, header written,
        // then linked into place: a file under a segment name always has
        // its header (magic and creator tag), and a creator that dies
        // half-way leaves a temporary file that cleanup attributes to it.
        let tmp = session.owned_file_path(super::name::TMP_TAG, "-seg")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nofollow())
            .open(&tmp)
            .map_err(|e| ShmError::io("create", &tmp, e))?;
        // Until it is linked, a failure must remove the temporary file.
        let undo = |e: ShmError| {
            let _ = fs::remove_file(&tmp);
            e
        };
        let md = file
            .metadata()
            .map_err(|e| undo(ShmError::io("stat", &tmp, e)))?;
        if md.permissions().mode() & 0o777 != 0o600 {
            // The umask may have removed bits; make the mode exactly 0600.
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|e| undo(ShmError::io("chmod", &tmp, e)))?;
        }
        crate::sys::fs::check_file_size(total as u64)
            .and_then(|()| file.set_len(total as u64))
            .map_err(|e| undo(ShmError::io("ftruncate", &tmp, e)))?;
        // Reserve every page now: on a full tmpfs this fails here, typed,
        // instead of killing the process with SIGBUS at the first write.
        crate::sys::fs::reserve(&file, total as u64).map_err(|e| {
            undo(if e.raw_os_error() == Some(crate::sys::fs::ENOSPC) {
                ShmError::OutOfSpace {
                    path: tmp.clone(),
                    len: total as u64,
                    source: e,
                }
            } else {
                ShmError::io("fallocate", &tmp, e)
            })
        })?;
        // SAFETY: the file is ours (just created, O_EXCL, 0600) and `total`
        // bytes long; other processes may map it too, which is the point:
        // all accesses to the shared bytes go through raw pointers/atomics.
        let mut map = unsafe { MmapOptions::new().len(total).map_mut(&file) }
            .map_err(|e| undo(ShmError::io("mmap", &tmp, e)))?;
        let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
        let hdr = base.as_ptr().cast::<SegmentHeader>();
        let mut tag_bytes = [0u8; CREATOR_TAG_LEN];
        tag_bytes[..tag.len()].copy_from_slice(tag.as_bytes());
        // SAFETY: the mapping is `total ≥ PAYLOAD_OFFSET ≥ size_of::<SegmentHeader>()`
        // bytes long and page aligned, so `hdr` is valid and aligned for a
        // `SegmentHeader`; the file is fresh (all zero, init_state ==
        // INIT_UNINIT), and openers read nothing but init_state until it
        // becomes INIT_READY.
        unsafe {
            addr_of_mut!((*hdr).creator_tag).write_volatile(tag_bytes);
            addr_of_mut!((*hdr).creator_pid).write_volatile(std::process::id());
            addr_of_mut!((*hdr).magic).write_volatile(MAGIC);
            addr_of_mut!((*hdr).version).write_volatile(LAYOUT_VERSION);
            addr_of_mut!((*hdr).kind).write_volatile(kind);
            addr_of_mut!((*hdr).total_size).write_volatile(total as u64);
            addr_of_mut!((*hdr).payload_offset).write_volatile(PAYLOAD_OFFSET as u64);
            addr_of_mut!((*hdr).payload_len).write_volatile(payload_len as u64);
        }
        // `link` never replaces: the first creator of a name wins.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(ShmError::AlreadyExists { path })
            }
            Err(e) => return Err(ShmError::io("link", path, e)),
        }
        Ok(UnpublishedSegment {
            seg: Segment {
                base,
                _map: Mapping::ReadWrite(map),
                payload_len,
                kind,
                name: name.to_owned(),
                path,
                creator: true,
                ident: (md.dev(), md.ino()),
                unlinked: AtomicBool::new(false),
            },
        })
    }

    /// [`Segment::create`], then `init(payload)`, then publish. If `init`
    /// fails the segment is removed and its error returned.
    pub fn create_with<E>(
        session: &Session,
        name: &str,
        payload_len: usize,
        kind: u32,
        init: impl FnOnce(&mut [u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<Segment, E>
    where
        E: From<ShmError>,
    {
        let mut seg = Self::create(session, name, payload_len, kind)?;
        init(seg.payload_mut())?;
        Ok(seg.publish())
    }

    /// Opens and validates segment `name` of `session`, which must hold
    /// `kind`. Does not wait: a segment whose creator has not published yet
    /// gives `NotInitialized` (see [`Segment::open_timeout`] to retry).
    ///
    /// Checks, in order: the file is a regular file (no symlink) owned by
    /// our euid (`WrongOwner`) with no group/other access (`InsecureMode`);
    /// it is at least a header page long (`WrongSize`); the init-state word
    /// (Acquire) is `INIT_READY` (`NotInitialized` / `BadInitState`); then,
    /// on one snapshot of the header: magic (`BadMagic`), layout version
    /// (`VersionMismatch`), kind (`WrongKind`), total size equal to the file
    /// size (`WrongSize`), payload offset and length (`BadLayout`).
    ///
    /// Known limit: a process that shrinks the file (`ftruncate`) after we
    /// mapped it makes our accesses beyond the new end raise `SIGBUS`; only
    /// processes of our own uid can do that (the file is 0600).
    pub fn open(session: &Session, name: &str, kind: u32) -> Result<Segment> {
        Self::open_as(session, name, kind, false)
    }

    /// [`Segment::open`], but the file is opened `O_RDONLY` and mapped
    /// `PROT_READ`: this process can read the segment and never write it (a
    /// write through [`Segment::payload_ptr`] faults). For readers of state
    /// that only its creator writes (the store's object index).
    pub fn open_read_only(session: &Session, name: &str, kind: u32) -> Result<Segment> {
        Self::open_as(session, name, kind, true)
    }

    fn open_as(session: &Session, name: &str, kind: u32, read_only: bool) -> Result<Segment> {
        let path = session.segment_path(name)?;
        let file = match OpenOptions::new()
            .read(true)
            .write(!read_only)
            .custom_flags(nofollow())
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(ShmError::NotFound { path }),
            Err(e) if crate::sys::fs::is_eloop(&e) => {
                return Err(ShmError::WrongFileType {
                    path,
                    found: "a symbolic link (never followed)",
                    expected: "regular file",
                    hint: "",
                })
            }
            Err(e) => return Err(ShmError::io("open", path, e)),
        };
        Self::open_file(file, name, path, kind, read_only)
    }

    fn open_file(
        file: File,
        name: &str,
        path: PathBuf,
        kind: u32,
        read_only: bool,
    ) -> Result<Segment> {
        let md = file
            .metadata()
            .map_err(|e| ShmError::io("stat", &path, e))?;
        if !md.file_type().is_file() {
            return Err(ShmError::WrongFileType {
                path,
                found: crate::sys::fs::file_type_name(md.file_type()),
                expected: "regular file",
                hint: "",
            });
        }
        let euid = crate::sys::fs::euid();
        if md.uid() != euid {
            return Err(ShmError::WrongOwner {
                path,
                found: md.uid(),
                expected: euid,
                hint: "",
            });
        }
        let mode = md.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(ShmError::InsecureMode {
                path,
                mode,
                hint: "",
            });
        }
        let file_size = md.len();
        if file_size == 0 {
            // Created, not yet sized: the creator is between open and ftruncate.
            return Err(ShmError::NotInitialized { path });
        }
        if file_size < PAYLOAD_OFFSET as u64 || file_size > PAYLOAD_OFFSET as u64 + MAX_PAYLOAD_LEN
        {
            return Err(ShmError::WrongSize {
                header: 0,
                file: file_size,
            });
        }
        // ≤ 4096 + 2^40 (checked above), fits usize on 64-bit targets.
        let map_len = file_size as usize;
        let (map, base) = if read_only {
            // SAFETY: we map exactly the file's current size, read-only
            // shared; the contents are treated as hostile (raw pointers,
            // atomics, checks) and never written through this mapping.
            let map = unsafe { MmapOptions::new().len(map_len).map(&file) }
                .map_err(|e| ShmError::io("mmap", &path, e))?;
            let base = NonNull::new(map.as_ptr().cast_mut()).expect("mmap never returns null");
            (Mapping::ReadOnly(map), base)
        } else {
            // SAFETY: we map exactly the file's current size, read-write
            // shared; the contents are treated as hostile (raw pointers,
            // atomics, checks).
            let mut map = unsafe { MmapOptions::new().len(map_len).map_mut(&file) }
                .map_err(|e| ShmError::io("mmap", &path, e))?;
            let base = NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
            (Mapping::ReadWrite(map), base)
        };
        let hdr = base.as_ptr().cast::<SegmentHeader>();
        // SAFETY: the mapping is ≥ PAYLOAD_OFFSET bytes and page aligned, so
        // the header (128 bytes, align 8) lies inside it, aligned; an
        // AtomicU32 may be created over any initialised u32-sized memory.
        let init_state = unsafe { &*std::ptr::addr_of!((*hdr).init_state) }
            // pairs with the Release store of INIT_READY in
            // UnpublishedSegment::publish: everything the creator wrote before
            // (header fields, payload) is visible after this load.
            .load(Ordering::Acquire);
        match init_state {
            INIT_READY => {}
            INIT_UNINIT => return Err(ShmError::NotInitialized { path }),
            found => {
                return Err(ShmError::BadInitState {
                    found,
                    expected: INIT_READY,
                })
            }
        }
        // SAFETY: as above, the header lies inside the mapping; any bit
        // pattern is accepted and then validated.
        let snap = unsafe { HeaderSnapshot::read(hdr) };
        let payload_len = snap.validate(kind, file_size)?;
        Ok(Segment {
            base,
            _map: map,
            payload_len,
            kind,
            name: name.to_owned(),
            path,
            creator: false,
            ident: (md.dev(), md.ino()),
            unlinked: AtomicBool::new(false),
        })
    }

    /// [`Segment::open`], retrying while the segment is `NotFound` or
    /// `NotInitialized` (a creator still at work) for at most `timeout`,
    /// sleeping 100 µs … 10 ms between tries. Every other error is returned
    /// at once; after the timeout, the last error is returned.
    pub fn open_timeout(
        session: &Session,
        name: &str,
        kind: u32,
        timeout: Duration,
    ) -> Result<Segment> {
        let deadline = crate::deadline_after(Instant::now(), timeout);
        let mut pause = Duration::from_micros(100);
        loop {
            match Self::open(session, name, kind) {
                Err(e @ (ShmError::NotFound { .. } | ShmError::NotInitialized { .. })) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(e);
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    /// Whether this handle maps the segment read-only
    /// ([`Segment::open_read_only`]): writing through
    /// [`Segment::payload_ptr`] would fault.
    pub fn is_read_only(&self) -> bool {
        self._map.is_read_only()
    }

    /// Start of the payload (page aligned). Valid for
    /// [`Segment::payload_len`] bytes while `self` lives. Other processes
    /// may read and write these bytes concurrently. On a read-only handle
    /// ([`Segment::is_read_only`]) only reads are allowed.
    pub fn payload_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is PAYLOAD_OFFSET + payload_len bytes long
        // (checked at create/open), so the offset stays inside it.
        unsafe { self.base.as_ptr().add(PAYLOAD_OFFSET) }
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// The payload kind this segment was created/opened with.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// The segment name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle created the segment (and will unlink it on drop).
    pub fn is_creator(&self) -> bool {
        self.creator
    }

    /// A fresh snapshot of the header (for diagnostics; values are whatever
    /// is in shared memory now, unvalidated).
    pub fn header(&self) -> HeaderSnapshot {
        // SAFETY: the header lies at the start of the mapping, which is at
        // least PAYLOAD_OFFSET bytes long.
        unsafe { HeaderSnapshot::read(self.base.as_ptr().cast::<SegmentHeader>()) }
    }

    /// Removes the segment's file now (idempotent). Mappings, this one
    /// included, stay valid; the name becomes free. Only removes the file
    /// if it is still the one this handle mapped.
    pub fn unlink(&self) -> Result<()> {
        // AcqRel: only makes the unlink happen once; orders nothing else.
        if self.unlinked.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match fs::symlink_metadata(&self.path) {
            Ok(md) if (md.dev(), md.ino()) == self.ident => {}
            Ok(_) => return Ok(()), // replaced by someone else's file
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ShmError::io("stat", &self.path, e)),
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ShmError::io("unlink", &self.path, e)),
        }
    }

    fn init_word(&self) -> &AtomicU32 {
        let hdr = self.base.as_ptr().cast::<SegmentHeader>();
        // SAFETY: the header lies inside the mapping (see `header`), aligned;
        // the reference lives no longer than `self`, hence the mapping.
        unsafe { &*std::ptr::addr_of!((*hdr).init_state) }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.creator {
            if let Err(e) = self.unlink() {
                tracing::warn!(path = %self.path.display(), error = %e, "could not unlink segment");
            }
        }
    }
}

/// A created segment whose payload is being initialised; not yet visible to
/// [`Segment::open`]. Dropping it removes the file.
#[derive(Debug)]
pub struct UnpublishedSegment {
    seg: Segment,
}

impl UnpublishedSegment {
    /// The zeroed payload, for the creator to initialise.
    ///
    /// Until [`UnpublishedSegment::publish`], well-behaved processes do not
    /// touch it (openers get `NotInitialized`), so the creator may treat it
    /// as its own.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: the payload is `payload_len` bytes inside the mapping,
        // which `self` owns; `&mut self` makes this the only reference from
        // this process, and cooperating processes do not access an
        // unpublished segment.
        unsafe { std::slice::from_raw_parts_mut(self.seg.payload_ptr(), self.seg.payload_len) }
    }

    /// Start of the payload (as [`Segment::payload_ptr`]).
    pub fn payload_ptr(&self) -> *mut u8 {
        self.seg.payload_ptr()
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.seg.payload_len
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        &self.seg.path
    }

    /// Publishes the segment: writes `INIT_READY` into the init-state word
    /// (Release, the last write of initialisation), after which
    /// [`Segment::open`] succeeds.
    pub fn publish(self) -> Segment {
        // pairs with the Acquire load of init_state in Segment::open: the
        // header fields and payload written before are visible to an opener
        // that sees INIT_READY.
        self.seg.init_word().store(INIT_READY, Ordering::Release);
        self.seg
    }
}
