//! The `#[repr(C)]` header at offset 0 of every segment, and the checks
//! applied to it before anything in it is trusted.

use std::mem::{offset_of, size_of};
use std::sync::atomic::AtomicU32;

use super::error::{Result, ShmError};

/// `b"SHMWIRE\0"` read as a little-endian `u64`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMWIRE\0");

/// Layout version written by this build and the only one it opens.
pub const LAYOUT_VERSION: u32 = 1;

/// Offset of the payload from the start of the segment: one 4 KiB page, so
/// the payload is page aligned (and hence aligned for any cache-line padded
/// structure placed at its start).
pub const PAYLOAD_OFFSET: usize = 4096;

/// Value of the init-state word while the creator is still initialising.
pub const INIT_UNINIT: u32 = 0;

/// Value of the init-state word once the header and payload are ready
/// (`b"REDY"` little-endian).
pub const INIT_READY: u32 = u32::from_le_bytes(*b"REDY");

/// Length of the creator tag field (the creator's lock-file name, NUL padded).
pub const CREATOR_TAG_LEN: usize = 64;

/// Largest payload a segment may have (1 TiB): keeps every size computation
/// far from overflow.
pub const MAX_PAYLOAD_LEN: u64 = 1 << 40;

/// The segment header, at offset 0 of every segment file.
///
/// It holds only plain integers (no pointers), so it means the same thing in
/// every process that maps it. Everything but `init_state` is written once
/// by the creator before `init_state` is set to [`INIT_READY`] with a
/// Release store; an opener reads `init_state` with an Acquire load first
/// and only then reads (and validates) the rest.
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// What lives in the payload (see [`kind`](super::kind)).
    pub kind: u32,
    /// Size of the whole file: `payload_offset + payload_len`.
    pub total_size: u64,
    /// [`PAYLOAD_OFFSET`].
    pub payload_offset: u64,
    /// Length of the payload in bytes.
    pub payload_len: u64,
    /// Pid of the creator, informational only (pids are reused: liveness is
    /// decided by the lock file named in `creator_tag`).
    pub creator_pid: u32,
    /// [`INIT_UNINIT`] until the creator publishes, then [`INIT_READY`].
    pub init_state: AtomicU32,
    /// Name of the creator's liveness lock file in the session directory,
    /// NUL padded.
    pub creator_tag: [u8; CREATOR_TAG_LEN],
    /// Zero; room for future fields.
    pub reserved: [u8; 16],
}

/// Size of [`SegmentHeader`] in bytes.
pub const HEADER_SIZE: usize = size_of::<SegmentHeader>();

const _: () = {
    assert!(HEADER_SIZE == 128);
    assert!(offset_of!(SegmentHeader, magic) == 0);
    assert!(offset_of!(SegmentHeader, version) == 8);
    assert!(offset_of!(SegmentHeader, kind) == 12);
    assert!(offset_of!(SegmentHeader, total_size) == 16);
    assert!(offset_of!(SegmentHeader, payload_offset) == 24);
    assert!(offset_of!(SegmentHeader, payload_len) == 32);
    assert!(offset_of!(SegmentHeader, creator_pid) == 40);
    assert!(offset_of!(SegmentHeader, init_state) == 44);
    assert!(offset_of!(SegmentHeader, creator_tag) == 48);
    assert!(HEADER_SIZE <= PAYLOAD_OFFSET);
};

/// A copy of a header's plain fields, taken once, so every later check and
/// use sees the same values even if another process keeps scribbling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderSnapshot {
    /// `magic` field.
    pub magic: u64,
    /// `version` field.
    pub version: u32,
    /// `kind` field.
    pub kind: u32,
    /// `total_size` field.
    pub total_size: u64,
    /// `payload_offset` field.
    pub payload_offset: u64,
    /// `payload_len` field.
    pub payload_len: u64,
    /// `creator_pid` field.
    pub creator_pid: u32,
    /// `init_state` field.
    pub init_state: u32,
    /// `creator_tag` field, raw.
    pub creator_tag: [u8; CREATOR_TAG_LEN],
}

impl HeaderSnapshot {
    /// Decodes a header from its little-endian (native on the supported
    /// targets) byte image, e.g. as read with `pread` by cleanup and inspect.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Self {
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let mut creator_tag = [0u8; CREATOR_TAG_LEN];
        creator_tag.copy_from_slice(&b[48..48 + CREATOR_TAG_LEN]);
        Self {
            magic: u64_at(0),
            version: u32_at(8),
            kind: u32_at(12),
            total_size: u64_at(16),
            payload_offset: u64_at(24),
            payload_len: u64_at(32),
            creator_pid: u32_at(40),
            init_state: u32_at(44),
            creator_tag,
        }
    }

    /// The byte image [`HeaderSnapshot::from_bytes`] decodes (the reserved
    /// bytes zero), e.g. for a writer that rewrites a header another
    /// process damaged with `pwrite` (`node::StatsArea`).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&self.magic.to_ne_bytes());
        b[8..12].copy_from_slice(&self.version.to_ne_bytes());
        b[12..16].copy_from_slice(&self.kind.to_ne_bytes());
        b[16..24].copy_from_slice(&self.total_size.to_ne_bytes());
        b[24..32].copy_from_slice(&self.payload_offset.to_ne_bytes());
        b[32..40].copy_from_slice(&self.payload_len.to_ne_bytes());
        b[40..44].copy_from_slice(&self.creator_pid.to_ne_bytes());
        b[44..48].copy_from_slice(&self.init_state.to_ne_bytes());
        b[48..48 + CREATOR_TAG_LEN].copy_from_slice(&self.creator_tag);
        b
    }

    /// Reads every field of the header at `hdr` with volatile loads.
    ///
    /// # Safety
    /// - `hdr` must point to `HEADER_SIZE` readable bytes (it need not be
    ///   written by a well-behaved creator: any bit pattern is accepted).
    pub(crate) unsafe fn read(hdr: *const SegmentHeader) -> Self {
        // SAFETY: the caller guarantees `hdr` points to a readable header-sized
        // region; every field is a plain integer type valid for any bit
        // pattern; volatile because another process may write concurrently.
        unsafe {
            Self {
                magic: std::ptr::addr_of!((*hdr).magic).read_volatile(),
                version: std::ptr::addr_of!((*hdr).version).read_volatile(),
                kind: std::ptr::addr_of!((*hdr).kind).read_volatile(),
                total_size: std::ptr::addr_of!((*hdr).total_size).read_volatile(),
                payload_offset: std::ptr::addr_of!((*hdr).payload_offset).read_volatile(),
                payload_len: std::ptr::addr_of!((*hdr).payload_len).read_volatile(),
                creator_pid: std::ptr::addr_of!((*hdr).creator_pid).read_volatile(),
                init_state: std::ptr::addr_of!((*hdr).init_state)
                    .cast::<u32>()
                    .read_volatile(),
                creator_tag: std::ptr::addr_of!((*hdr).creator_tag).read_volatile(),
            }
        }
    }

    /// The creator tag as a string, if it is a non-empty, NUL-padded,
    /// well-formed lock-file name.
    pub fn creator_tag_str(&self) -> Option<&str> {
        let end = self
            .creator_tag
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(CREATOR_TAG_LEN);
        if end == 0 || self.creator_tag[end..].iter().any(|&b| b != 0) {
            return None;
        }
        let s = std::str::from_utf8(&self.creator_tag[..end]).ok()?;
        super::name::is_lock_file_name(s).then_some(s)
    }

    /// Validates the snapshot against what this build writes, the kind the
    /// caller expects and the size of the file. Returns the payload length.
    ///
    /// The init-state word is checked by the caller (before the snapshot is
    /// taken, with Acquire ordering), not here.
    pub fn validate(&self, expected_kind: u32, file_size: u64) -> Result<usize> {
        if self.magic != MAGIC {
            return Err(ShmError::BadMagic {
                found: self.magic,
                expected: MAGIC,
            });
        }
        if self.version != LAYOUT_VERSION {
            return Err(ShmError::VersionMismatch {
                found: self.version,
                expected: LAYOUT_VERSION,
            });
        }
        if self.kind != expected_kind {
            return Err(ShmError::WrongKind {
                found: self.kind,
                expected: expected_kind,
            });
        }
        if self.total_size != file_size {
            return Err(ShmError::WrongSize {
                header: self.total_size,
                file: file_size,
            });
        }
        let layout = |reason| ShmError::BadLayout {
            reason,
            payload_offset: self.payload_offset,
            payload_len: self.payload_len,
            total_size: self.total_size,
        };
        if self.payload_offset != PAYLOAD_OFFSET as u64 {
            return Err(layout("payload offset is not 4096"));
        }
        if self.payload_len > MAX_PAYLOAD_LEN {
            return Err(layout("payload length above the 1 TiB limit"));
        }
        if self.payload_offset.checked_add(self.payload_len) != Some(self.total_size) {
            return Err(layout("payload offset + length != total size"));
        }
        usize::try_from(self.payload_len).map_err(|_| layout("payload does not fit usize"))
    }
}
