//! Named shared-memory segments in per-session namespaces.
//!
//! # Map
//!
//! - [`Session`]: a directory `<root>/<session>/` (mode 0700, marked by
//!   an empty `.shmwire-session` file) under [`default_root`]
//!   (`$SHMWIRE_ROOT`, else `/dev/shm/shmwire-<euid>`, else
//!   `<tmp>/shmwire-<euid>`). It holds the session's segment files and one
//!   lock file per process that opened it; [`Session::sweep_root`] is the
//!   one cleanup pass (`docs/sessions.md`).
//! - [`Segment`]: one file in a session directory, mapped `MAP_SHARED` with
//!   `memmap2`: a [`SegmentHeader`] at offset 0 and the payload at offset
//!   [`PAYLOAD_OFFSET`] (4096, page aligned). The payload's contents are the
//!   business of the layer above (a ring, the store); [`kind`] says which.
//! - [`UnpublishedSegment`]: what [`Segment::create`] returns — the payload
//!   is initialised, then [`UnpublishedSegment::publish`] writes the
//!   init-state word last (Release), which [`Segment::open`] loads with
//!   Acquire before it trusts anything else.
//!
//! # Liveness without pids
//!
//! A process that opens a session first takes an exclusive `flock` on its
//! own lock file `proc-<pid>-<random>.lock` in the session directory and
//! keeps that file open for the rest of its life (a process-global
//! registry). Every segment header names its creator's lock file; every
//! other file a process makes in the session carries the lock's stem in
//! its name. The
//! kernel drops the lock when the process dies, however it dies, so
//! [`Session::cleanup_stale`] can tell dead creators from live ones with
//! `flock(LOCK_EX | LOCK_NB)` — pids are reused, locks are not. The lock
//! file is opened `O_CLOEXEC`, so exec'd children do not inherit it (a
//! child forked *without* exec would share the lock until it exits).
//!
//! # Hostile input
//!
//! Any process of the same user can write anything into a segment at any
//! time. `open` validates a single snapshot of the header (magic, version,
//! kind, sizes, offsets) against the file size before using any of it, and
//! reports each violation as its own [`ShmError`] variant. Cleanup and
//! inspection read headers with `pread` rather than mapping them.
//!
//! # Example
//!
//! ```
//! use shmwire::shm::{kind, Segment, Session};
//! let tmp = tempfile::tempdir().unwrap();
//! // The root is created with mode 0700 (an existing root must already be private).
//! let session = Session::open_in(tmp.path().join("shmwire"), "doc-example").unwrap();
//! let seg = Segment::create_with(&session, "hello", 64, kind::TEST, |p: &mut [u8]| {
//!     p[0] = 42;
//!     Ok::<_, shmwire::shm::ShmError>(())
//! })
//! .unwrap();
//! let peer = Segment::open(&session, "hello", kind::TEST).unwrap();
//! // SAFETY (example): the payload is 64 bytes long and nobody else writes it.
//! assert_eq!(unsafe { *peer.payload_ptr() }, 42);
//! drop(peer);
//! drop(seg); // the creator unlinks the file
//! assert!(session.segment_names().unwrap().is_empty());
//! session.remove_all().unwrap();
//! ```

mod anon;
mod error;
mod header;
mod name;
mod segment;
mod session;

pub use anon::AnonSegment;
pub use error::{Result, ShmError};
pub use header::{
    HeaderSnapshot, SegmentHeader, CREATOR_TAG_LEN, HEADER_SIZE, INIT_READY, INIT_UNINIT,
    LAYOUT_VERSION, MAGIC, MAX_PAYLOAD_LEN, PAYLOAD_OFFSET,
};
pub use name::{
    validate_segment_name, validate_session_name, CLAIM_PREFIX, CLAIM_SUFFIX, ENTRY_PREFIX,
    ENTRY_SUFFIX, LOCK_PREFIX, LOCK_SUFFIX, MAX_NAME_LEN, NAMES_LOCK_FILE, NODE_LOCK_FILE,
    SESSION_MARKER, SOCKET_TAG, TMP_TAG, TOKEN_FILE,
};
pub use segment::{Segment, UnpublishedSegment};
pub use session::{
    check_root_path, default_root, ensure_root, owned_file_path_in, temp_path_in, CleanupReport,
    RootCleanup, RootScan, SegmentFate, SegmentInfo, Session, SessionStatus, ROOT_ENV,
    UNTAGGED_GRACE,
};

/// Payload kinds recorded in the segment header, so a ring is never opened
/// as a store and vice versa. Four ASCII bytes, little-endian.
pub mod kind {
    /// An SPSC ring (`crate::ring`).
    pub const RING: u32 = u32::from_le_bytes(*b"RING");
    /// The object store arena.
    pub const STORE: u32 = u32::from_le_bytes(*b"STOR");
    /// The object store's index of sealed objects (written by the service,
    /// mapped read-only by clients).
    pub const STORE_INDEX: u32 = u32::from_le_bytes(*b"SIDX");
    /// One store client's reference slots (written by that client, read by
    /// the service).
    pub const STORE_REFS: u32 = u32::from_le_bytes(*b"SREF");
    /// Benchmark scratch (`shmwire bench`).
    pub const BENCH: u32 = u32::from_le_bytes(*b"BNCH");
    /// A process's published statistics (`node::StatsArea`: per-handler
    /// figures, connections and their rings, the node's store).
    pub const STATS: u32 = u32::from_le_bytes(*b"STAT");
    /// Tests and examples.
    pub const TEST: u32 = u32::from_le_bytes(*b"TEST");

    /// A printable name for a kind value (`"RING"`, …, or hex).
    pub fn describe(kind: u32) -> String {
        let b = kind.to_le_bytes();
        if b.iter().all(|c| c.is_ascii_alphanumeric()) {
            String::from_utf8_lossy(&b).into_owned()
        } else {
            format!("{kind:#010x}")
        }
    }
}
