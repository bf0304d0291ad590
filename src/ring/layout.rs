//! The `#[repr(C)]` layout contract of a ring in memory: the header and the
//! frame header. Everything here holds offsets and counters, never pointers,
//! so the same bytes mean the same thing in every process that maps them.

use crate::sync::{AtomicU32, AtomicU64};
use crate::wake::WakeSlot;

/// Magic number written (last, with `Release`) by [`Ring::init`](super::Ring::init).
pub const RING_MAGIC: u64 = 0x5348_4d57_5249_4e47; // "SHMWRING"

/// Version of the ring layout; bumped on any change to [`RingHeader`] or the
/// frame format.
pub const RING_LAYOUT_VERSION: u32 = 2;

/// Size of a frame header in bytes; also the payload alignment.
pub const FRAME_HEADER_LEN: usize = 16;

/// Alignment of every frame and every payload in the data region.
pub const FRAME_ALIGN: usize = 16;

/// Frame kind reserved for the padding frame that fills the end of the data
/// region when a frame does not fit before the wrap point.
pub const PADDING_KIND: u32 = u32::MAX;

/// Smallest accepted capacity (two minimal frames).
pub const MIN_CAPACITY: usize = 2 * (FRAME_HEADER_LEN + FRAME_ALIGN);

/// Largest accepted capacity (frame offsets are computed in `usize`, frame
/// lengths are `u32`).
pub const MAX_CAPACITY: usize = 1 << 31;

/// One cache line's worth of alignment (128 bytes: the adjacent-line
/// prefetcher on x86 pulls pairs of 64-byte lines, as `CachePadded` assumes).
///
/// Not `crossbeam_utils::CachePadded`: its alignment changes with the target
/// architecture, and this type is part of the versioned shared-memory layout
/// (`RING_LAYOUT_VERSION`), which must not change silently.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Line<T>(pub T);

/// Constants and rarely written flags (first line of the header).
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingMeta {
    /// [`RING_MAGIC`] once initialised (written last, `Release`).
    pub magic: AtomicU64,
    /// Data-region capacity in bytes (power of two).
    pub capacity: AtomicU64,
    /// [`RING_LAYOUT_VERSION`].
    pub version: AtomicU32,
    /// Non-zero once either side saw corrupt shared state.
    pub poisoned: AtomicU32,
    /// Non-zero once the producer closed the ring cleanly (after its last
    /// publish of `head`).
    pub producer_closed: AtomicU32,
    /// Non-zero once the consumer closed the ring.
    pub consumer_closed: AtomicU32,
    /// Non-zero while a producer half is attached.
    pub producer_attached: AtomicU32,
    /// Non-zero while a consumer half is attached.
    pub consumer_attached: AtomicU32,
}

/// The ring header at the start of the ring's memory, followed by the data
/// region (at offset `size_of::<RingHeader>()`, a multiple of 128).
///
/// ```text
///  line 0  meta: magic, capacity, version, poisoned, producer/consumer closed/attached
///  line 1  head      (written by the producer only)
///  line 2  tail      (written by the consumer only)
///  line 3  consumer wake slot (sleeping flag, futex word)
///  line 4  producer wake slot (sleeping flag, futex word)
///  data    capacity bytes of 16-byte-aligned frames
/// ```
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// Constants and flags.
    pub meta: Line<RingMeta>,
    /// Total bytes ever published by the producer (monotonic, never wraps
    /// in practice: 2^64 bytes).
    pub head: Line<AtomicU64>,
    /// Total bytes ever released by the consumer (monotonic).
    pub tail: Line<AtomicU64>,
    /// Where the consumer announces that it sleeps waiting for data (the
    /// wake layer's [`WakeSlot`], embedded here as part of this layout).
    pub consumer_wake: Line<WakeSlot>,
    /// Where the producer announces that it sleeps waiting for room.
    pub producer_wake: Line<WakeSlot>,
}

/// Size of [`RingHeader`] in bytes: the data region starts this far into the
/// ring's memory.
pub const HEADER_LEN: usize = std::mem::size_of::<RingHeader>();

/// Rounds `len` up to [`FRAME_ALIGN`]; `None` on overflow.
#[inline]
pub(crate) fn align_up(len: usize) -> Option<usize> {
    Some(len.checked_add(FRAME_ALIGN - 1)? & !(FRAME_ALIGN - 1))
}

/// Total bytes a frame with a `len`-byte payload occupies; `None` on overflow.
#[inline]
pub(crate) fn frame_total(len: usize) -> Option<usize> {
    align_up(len)?.checked_add(FRAME_HEADER_LEN)
}

/// [`frame_total`] in `u64`, saturating instead of failing: a length too
/// large for any ring yields a total larger than any capacity. For the hot
/// paths' branch-free checks.
#[inline(always)]
pub(crate) fn frame_total_sat(len: u64) -> u64 {
    (len.saturating_add(FRAME_ALIGN as u64 - 1) & !(FRAME_ALIGN as u64 - 1))
        .saturating_add(FRAME_HEADER_LEN as u64)
}

/// Offset of the `len`/`kind` word in a frame header; the first 8 bytes are
/// the commit word.
pub(crate) const FRAME_INFO_OFFSET: usize = 8;

/// The value of the commit word of a frame that starts at ring position
/// `pos` (a byte counter like `head`/`tail`, below 2^63): `pos + 1`, never
/// 0, and different for every lap over the same offset.
#[inline(always)]
pub(crate) fn commit_value(pos: u64) -> u64 {
    pos + 1
}

/// The `len`/`kind` half of a frame header (bytes 8..16; bytes 0..8 are the
/// commit word, written separately and last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub len: u32,
    pub kind: u32,
}

impl FrameHeader {
    /// The little-endian word stored at [`FRAME_INFO_OFFSET`]: `len` in the
    /// low half, `kind` in the high half.
    #[inline]
    pub(crate) fn to_word(self) -> u64 {
        u64::from(self.len) | (u64::from(self.kind) << 32)
    }

    /// The header from the word at [`FRAME_INFO_OFFSET`], read as one
    /// little-endian load.
    #[inline]
    pub(crate) fn from_word(w: u64) -> Self {
        Self {
            len: w as u32,
            kind: (w >> 32) as u32,
        }
    }
}

#[cfg(all(test, not(shmwire_loom)))]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_fixed() {
        assert_eq!(HEADER_LEN, 5 * 128);
        assert_eq!(std::mem::align_of::<RingHeader>(), 128);
        assert_eq!(std::mem::offset_of!(RingHeader, head), 128);
        assert_eq!(std::mem::offset_of!(RingHeader, tail), 256);
        assert_eq!(std::mem::offset_of!(RingHeader, consumer_wake), 384);
        assert_eq!(std::mem::offset_of!(RingHeader, producer_wake), 512);
        assert_eq!(std::mem::size_of::<RingMeta>(), 40);
    }

    #[test]
    fn frame_sizes() {
        assert_eq!(frame_total(0), Some(16));
        assert_eq!(frame_total(1), Some(32));
        assert_eq!(frame_total(16), Some(32));
        assert_eq!(frame_total(17), Some(48));
        assert_eq!(frame_total(usize::MAX), None);
        for len in [0usize, 1, 16, 17, 1000, u32::MAX as usize] {
            assert_eq!(
                frame_total_sat(len as u64),
                frame_total(len).unwrap() as u64
            );
        }
        assert_eq!(frame_total_sat(u64::MAX), u64::MAX);
        assert!(frame_total_sat(u64::MAX - 15) > MAX_CAPACITY as u64);
        let h = FrameHeader { len: 7, kind: 9 };
        assert_eq!(FrameHeader::from_word(h.to_word()), h);
        assert_eq!(h.to_word().to_le_bytes(), [7, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(commit_value(0), 1);
    }
}
