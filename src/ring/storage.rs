//! Where a ring's header and data live: heap memory (tests, loom) or a raw
//! shared mapping (segments), behind [`RingStorage`].
//!
//! The data region is reached through one small internal abstraction,
//! [`DataRegion`]: in normal builds it is a raw pointer and every access is a
//! plain `memcpy`; under `cfg(shmwire_loom)` each 16-byte chunk also has a
//! [`crate::sync::UnsafeCell`] that every access touches (`with` for reads,
//! `with_mut` for writes) so loom checks that no read races a write.

use std::any::Any;
use std::fmt;
use std::sync::Arc as StdArc;

use super::layout::{RingHeader, FRAME_ALIGN, HEADER_LEN};
use super::AttachError;

/// Memory that holds one ring: a [`RingHeader`] and a data region.
///
/// # Safety
///
/// Implementors guarantee that:
/// - [`header`](RingStorage::header) and [`data`](RingStorage::data) stay
///   valid (mapped, readable and writable) for as long as any clone of the
///   storage is alive;
/// - the data region does not overlap the header and is at least
///   [`DataRegion::len`] bytes long, starting at a 16-byte-aligned address;
/// - all clones of one storage refer to the same memory;
/// - the header and data live *behind* a pointer, not inside the storage
///   value itself, so references returned by `header()` stay valid while
///   the storage value is moved or borrowed mutably (the halves rely on this
///   to hold their wake slot while polling).
pub unsafe trait RingStorage: Clone {
    /// The ring header.
    fn header(&self) -> &RingHeader;
    /// The data region following the header.
    fn data(&self) -> &DataRegion;
}

/// The data region of a ring: `len` bytes starting at a 16-byte-aligned
/// address.
pub struct DataRegion {
    ptr: *mut u8,
    len: usize,
    /// Under loom: one access-tracking cell per 16-byte chunk.
    #[cfg(shmwire_loom)]
    cells: Box<[crate::sync::UnsafeCell<()>]>,
    /// Under loom: the commit word (first 8 bytes) of each 16-byte chunk, as
    /// a loom atomic (loom's atomics cannot live in the byte buffer). Only
    /// frame starts are ever accessed through them.
    #[cfg(shmwire_loom)]
    commits: Box<[crate::sync::AtomicU64]>,
}

impl fmt::Debug for DataRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataRegion")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: a `DataRegion` is a view of memory owned elsewhere (a heap buffer or
// a mapping kept alive by the storage); the ring protocol decides who touches
// which bytes, and every access goes through `unsafe` methods whose contracts
// say so.
unsafe impl Send for DataRegion {}
// SAFETY: see the `Send` impl: shared access is governed by the ring protocol.
unsafe impl Sync for DataRegion {}

impl DataRegion {
    /// Describes `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// - `ptr` is 16-byte aligned and valid for reads and writes of `len`
    ///   bytes for as long as the returned value is used.
    unsafe fn new(ptr: *mut u8, len: usize) -> Self {
        debug_assert_eq!(ptr as usize % FRAME_ALIGN, 0);
        Self {
            ptr,
            len,
            #[cfg(shmwire_loom)]
            cells: (0..len.div_ceil(FRAME_ALIGN))
                .map(|_| crate::sync::UnsafeCell::new(()))
                .collect(),
            #[cfg(shmwire_loom)]
            commits: (0..len.div_ceil(FRAME_ALIGN))
                .map(|_| crate::sync::AtomicU64::new(0))
                .collect(),
        }
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Under loom, records a read of `[off, off + len)`.
    #[inline(always)]
    fn track_read(&self, _off: usize, _len: usize) {
        #[cfg(shmwire_loom)]
        for i in _off / FRAME_ALIGN.._off.saturating_add(_len).div_ceil(FRAME_ALIGN) {
            self.cells[i].with(|_| ());
        }
    }

    /// Under loom, records a write of `[off, off + len)`.
    #[inline(always)]
    fn track_write(&self, _off: usize, _len: usize) {
        #[cfg(shmwire_loom)]
        for i in _off / FRAME_ALIGN.._off.saturating_add(_len).div_ceil(FRAME_ALIGN) {
            self.cells[i].with_mut(|_| ());
        }
    }

    /// Reads the little-endian `u64` at `off` with one volatile load, so a
    /// value that a hostile peer changes concurrently is read exactly once
    /// (and in one instruction, not byte by byte).
    ///
    /// # Safety
    ///
    /// - `off + 8 <= self.len()` and `off` is a multiple of 8 (the region
    ///   starts 16-byte aligned);
    /// - the caller owns `[off, off + 8)` for reading under the ring protocol.
    #[inline(always)]
    pub(crate) unsafe fn read_u64_le(&self, off: usize) -> u64 {
        debug_assert!(off + 8 <= self.len && off % 8 == 0);
        self.track_read(off, 8);
        // SAFETY: in bounds and 8-byte aligned by the caller's contract (the
        // region's base is 16-byte aligned); every bit pattern is a valid
        // `u64`.
        u64::from_le(unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u64>()) })
    }

    /// The commit word of the frame that starts (or would start) at `off`:
    /// the first 8 bytes of the 16-byte chunk there, as an atomic.
    ///
    /// # Safety
    ///
    /// - `off + 8 <= self.len()` and `off` is a multiple of 16;
    /// - under the ring protocol, the word at `off` is only ever accessed
    ///   atomically while the returned reference is used (plain writes to
    ///   it happen only while it is not a frame start the peer may poll:
    ///   payload of an earlier frame, ordered before by the ring's
    ///   Release/Acquire pairs).
    #[cfg(not(shmwire_loom))]
    #[inline(always)]
    unsafe fn commit_word(&self, off: usize) -> &crate::sync::AtomicU64 {
        debug_assert!(off + 8 <= self.len && off % FRAME_ALIGN == 0);
        // SAFETY: in bounds and 8-byte aligned by the caller's contract (the
        // region's base is 16-byte aligned); `AtomicU64` has the size and
        // alignment of `u64`, every bit pattern is valid, and the memory is
        // valid for the region's lifetime, which bounds `&self`.
        unsafe { &*self.ptr.add(off).cast::<crate::sync::AtomicU64>() }
    }

    /// Under loom: the chunk's commit-word atomic (see `commits`).
    #[cfg(shmwire_loom)]
    #[inline(always)]
    unsafe fn commit_word(&self, off: usize) -> &crate::sync::AtomicU64 {
        debug_assert!(off + 8 <= self.len && off % FRAME_ALIGN == 0);
        &self.commits[off / FRAME_ALIGN]
    }

    /// Loads the commit word of the frame at `off` (see
    /// [`commit_word`](Self::commit_word)) with ordering `ord`.
    ///
    /// # Safety
    ///
    /// As [`commit_word`](Self::commit_word).
    #[inline(always)]
    pub(crate) unsafe fn load_commit(&self, off: usize, ord: crate::sync::Ordering) -> u64 {
        // SAFETY: forwarded contract.
        unsafe { self.commit_word(off) }.load(ord)
    }

    /// Stores `value` into the commit word of the frame at `off` with
    /// ordering `ord`.
    ///
    /// # Safety
    ///
    /// As [`commit_word`](Self::commit_word); the caller (the producer) owns
    /// the word for writing under the ring protocol.
    #[inline(always)]
    pub(crate) unsafe fn store_commit(&self, off: usize, value: u64, ord: crate::sync::Ordering) {
        // SAFETY: forwarded contract.
        unsafe { self.commit_word(off) }.store(value, ord);
    }

    /// Writes `value` as the little-endian `u64` at `off` (one plain 8-byte
    /// store).
    ///
    /// # Safety
    ///
    /// - `off + 8 <= self.len()` and `off` is a multiple of 8;
    /// - the caller owns `[off, off + 8)` for writing under the ring protocol.
    #[inline(always)]
    pub(crate) unsafe fn write_u64_le(&self, off: usize, value: u64) {
        debug_assert!(off + 8 <= self.len && off % 8 == 0);
        self.track_write(off, 8);
        // SAFETY: in bounds and 8-byte aligned by the caller's contract, and
        // owned for writing.
        unsafe { std::ptr::write(self.ptr.add(off).cast::<u64>(), value.to_le()) }
    }

    /// Copies `bytes` into the region at `off`.
    ///
    /// # Safety
    ///
    /// - `off + bytes.len() <= self.len()`;
    /// - the caller owns `[off, off + bytes.len())` for writing under the
    ///   ring protocol.
    #[inline(always)]
    pub(crate) unsafe fn write_bytes(&self, off: usize, bytes: &[u8]) {
        debug_assert!(off + bytes.len() <= self.len);
        self.track_write(off, bytes.len());
        // SAFETY: in bounds by the caller's contract; `bytes` is a separate
        // borrow so it cannot overlap the region we own for writing.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(off), bytes.len()) }
    }

    /// Borrows `[off, off + len)` for reading.
    ///
    /// # Safety
    ///
    /// - `off + len <= self.len()`;
    /// - the caller owns the range for reading under the ring protocol for
    ///   the returned lifetime (the producer does not write it until the
    ///   consumer releases it; a hostile peer may, which only changes bytes).
    #[inline(always)]
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= self.len);
        self.track_read(off, len);
        // SAFETY: in bounds by the caller's contract, `u8` has no invalid
        // bit patterns.
        unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) }
    }

    /// Borrows `[off, off + len)` for writing.
    ///
    /// # Safety
    ///
    /// - `off + len <= self.len()`;
    /// - the caller owns the range exclusively for writing under the ring
    ///   protocol for the returned lifetime, and creates no other borrow of it.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= self.len);
        self.track_write(off, len);
        // SAFETY: in bounds and exclusively owned by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(off), len) }
    }

    /// Hints the CPU to start fetching the cache lines of `[off, off + len)`
    /// (clamped to the region) for reading, all at once: a consumer that
    /// has just seen new bytes published asks for the frame header and the
    /// payload lines in parallel instead of one after the other (the
    /// payload copy depends on the length read from the header).
    #[inline(always)]
    pub(crate) fn prefetch(&self, off: usize, len: usize) {
        self.prefetch_lines(off, len, false);
    }

    /// Hints the CPU to fetch the cache lines of `[off, off + len)` (clamped
    /// to the region) for writing (`PREFETCHW`, a NOP on CPUs without it):
    /// a producer that has just published a frame asks for exclusive
    /// ownership of the lines its next frame will use while it waits, so
    /// the next commit does not wait for the peer's copies to be
    /// invalidated.
    #[inline(always)]
    pub(crate) fn prefetch_write(&self, off: usize, len: usize) {
        self.prefetch_lines(off, len, true);
    }

    /// One prefetch hint per 64-byte line of `[off, off + len)` clamped to
    /// the region (`prefetcht0`, or `prefetchw` when `write`). A hint only:
    /// it cannot fault, reads no value into the program, writes nothing and
    /// changes no state, so it is sound for any range; a no-op under loom
    /// and off x86-64.
    #[inline(always)]
    fn prefetch_lines(&self, off: usize, len: usize, write: bool) {
        #[cfg(all(target_arch = "x86_64", not(shmwire_loom)))]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let end = off.saturating_add(len).min(self.len);
            let mut at = off & !63;
            while at < end {
                // SAFETY: `at < self.len`, so the address is inside the
                // region. Neither `prefetcht0` nor `prefetchw` (0F 0D /1, a
                // NOP where unsupported) ever faults, changes a register or
                // flag, or reads or writes any memory value.
                unsafe {
                    let p = self.ptr.add(at);
                    if write {
                        std::arch::asm!(
                            "prefetchw [{0}]",
                            in(reg) p,
                            options(nostack, preserves_flags, readonly)
                        );
                    } else {
                        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
                    }
                }
                at += 64;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(shmwire_loom))))]
        let _ = (off, len, write);
    }

    /// Hints the CPU to move the cache lines of `[off, off + len)` (clamped
    /// to the region) from this core's private caches to the shared cache
    /// (`CLDEMOTE`), so that the peer's next miss on them is served there
    /// instead of by a snoop of this core. A hint only, like the prefetches:
    /// it cannot fault, reads or writes no value and changes no state, so it
    /// is sound for any range. `enabled` is [`cldemote_supported`]'s answer
    /// (the instruction is a NOP on CPUs without it, but older assemblers
    /// and emulators may not know that); a no-op under loom and off x86-64.
    #[inline(always)]
    pub(crate) fn demote(&self, off: usize, len: usize, enabled: bool) {
        #[cfg(all(target_arch = "x86_64", not(shmwire_loom)))]
        if enabled {
            let end = off.saturating_add(len).min(self.len);
            let mut at = off & !63;
            while at < end {
                // SAFETY: `at < self.len`, so the address is inside the
                // region. `cldemote` (NP 0F 1C /0, a hint NOP where
                // unsupported) never faults, changes no register or flag and
                // reads or writes no memory value.
                unsafe {
                    std::arch::asm!(
                        "cldemote [{0}]",
                        in(reg) self.ptr.add(at),
                        options(nostack, preserves_flags, readonly)
                    );
                }
                at += 64;
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(shmwire_loom))))]
        let _ = (off, len, enabled);
    }

    /// Records (under loom) that the caller is still reading `[off, off+len)`.
    #[inline(always)]
    pub(crate) fn touch_read(&self, off: usize, len: usize) {
        self.track_read(off, len);
    }

    /// Records (under loom) that the caller is still writing `[off, off+len)`
    /// (the producer, for a grant's payload, when it commits).
    ///
    /// Under loom the commit words live in separate atomics, so payload
    /// bytes written through a grant would never reach them, unlike in real
    /// memory, where a payload can leave any value (a later lap's commit
    /// value included) where a later frame will start. To keep that hazard
    /// in the model, the first 8 bytes of every chunk that starts inside
    /// the range are copied into the chunk's commit atomic here (`Relaxed`:
    /// plain stores in real memory).
    #[inline(always)]
    pub(crate) fn touch_write(&self, off: usize, len: usize) {
        self.track_write(off, len);
        #[cfg(shmwire_loom)]
        {
            let end = off.saturating_add(len).min(self.len);
            let mut at = off.next_multiple_of(FRAME_ALIGN);
            while at + 8 <= end {
                // SAFETY: at + 8 <= end <= len, 16-aligned (so 8-aligned) in
                // the region; the producer owns the range for writing.
                let v = unsafe { std::ptr::read(self.ptr.add(at).cast::<u64>()) };
                self.commits[at / FRAME_ALIGN]
                    .store(u64::from_le(v), crate::sync::Ordering::Relaxed);
                at += FRAME_ALIGN;
            }
        }
    }
}

/// Whether this CPU implements `CLDEMOTE` (CPUID leaf 7, ECX bit 25),
/// asked once per process; `false` off x86-64 and under loom.
pub(crate) fn cldemote_supported() -> bool {
    #[cfg(all(target_arch = "x86_64", not(shmwire_loom)))]
    {
        use std::sync::OnceLock;
        static SUPPORTED: OnceLock<bool> = OnceLock::new();
        *SUPPORTED.get_or_init(|| {
            if std::env::var_os("SHMWIRE_NO_CLDEMOTE").is_some() {
                return false;
            }
            // `__cpuid` is safe since Rust 1.87, `unsafe` in 1.85 (our MSRV).
            #[allow(unused_unsafe)]
            // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 0 gives the
            // highest supported leaf, checked before asking leaf 7.
            let max = unsafe { std::arch::x86_64::__cpuid(0) }.eax;
            if max < 7 {
                return false;
            }
            #[allow(unused_unsafe)]
            // SAFETY: leaf 7 is supported (max >= 7).
            let leaf7 = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
            leaf7.ecx & (1 << 25) != 0
        })
    }
    #[cfg(not(all(target_arch = "x86_64", not(shmwire_loom))))]
    false
}

/// Heap-allocated ring memory, used by unit tests, loom models and
/// in-process rings. Cloning shares the same memory.
#[derive(Clone, Debug)]
pub struct HeapStorage {
    inner: crate::sync::Arc<HeapInner>,
}

#[derive(Debug)]
struct HeapInner {
    header: RingHeader,
    data: DataRegion,
    /// Owns the data bytes (`u128` elements give 16-byte alignment).
    _buf: Box<[std::cell::UnsafeCell<u128>]>,
}

// SAFETY: `_buf` is only reached through `data` (raw pointers, accessed under
// the ring protocol); the header is atomics.
unsafe impl Send for HeapInner {}
// SAFETY: see `Send`.
unsafe impl Sync for HeapInner {}

impl HeapStorage {
    /// Allocates a zeroed header and `data_len` bytes of data (rounded up to
    /// a multiple of 16).
    pub fn new(data_len: usize) -> Self {
        let chunks = data_len.div_ceil(FRAME_ALIGN);
        let buf: Box<[std::cell::UnsafeCell<u128>]> =
            (0..chunks).map(|_| std::cell::UnsafeCell::new(0)).collect();
        let ptr = if chunks == 0 {
            std::ptr::NonNull::<u128>::dangling().as_ptr().cast::<u8>()
        } else {
            buf.as_ptr().cast_mut().cast::<u8>()
        };
        // SAFETY: `ptr` points to `chunks * 16` bytes owned by `buf`, which
        // lives in the same `HeapInner` as the region (moving the box does not
        // move its heap allocation); `u128` gives 16-byte alignment, and the
        // bytes are reached only through raw pointers derived from
        // `UnsafeCell`s.
        let data = unsafe { DataRegion::new(ptr, chunks * FRAME_ALIGN) };
        Self {
            inner: crate::sync::Arc::new(HeapInner {
                header: RingHeader::default(),
                data,
                _buf: buf,
            }),
        }
    }

    /// Overwrites raw bytes of the header and data, as a hostile peer could
    /// (the first [`HEADER_LEN`] bytes of `bytes` go to the header, the rest
    /// to the data region). Used by tests and the fuzz target. Not available
    /// under `shmwire_loom` (loom's atomics are not plain memory).
    #[cfg(not(shmwire_loom))]
    pub fn scribble(&self, bytes: &[u8]) {
        let header_ptr = (&self.inner.header as *const RingHeader)
            .cast_mut()
            .cast::<u8>();
        let n = bytes.len().min(HEADER_LEN);
        // SAFETY: the header is `HEADER_LEN` bytes of atomics (plain integers
        // in normal builds, interior-mutable), so overwriting its bytes is a
        // (racy but defined at the hardware level, as in any shared mapping)
        // store of valid integer values; we write at most `HEADER_LEN` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), header_ptr, n) };
        let rest = &bytes[n..];
        let m = rest.len().min(self.inner.data.len());
        // SAFETY: at most `data.len()` bytes at offset 0 of the data region.
        unsafe { self.inner.data.write_bytes(0, &rest[..m]) };
    }
}

#[cfg(not(shmwire_loom))]
impl HeapStorage {
    /// Copies the raw bytes of the header (first [`HEADER_LEN`] bytes of
    /// `out`) and the data region (the rest) into `out`, as a peer mapping
    /// the same memory would see them. Used with [`scribble`](Self::scribble)
    /// by tests and the fuzz target.
    pub fn read_raw(&self, out: &mut [u8]) {
        let header_ptr = (&self.inner.header as *const RingHeader).cast::<u8>();
        let n = out.len().min(HEADER_LEN);
        // SAFETY: the header is `HEADER_LEN` bytes of plain integers in
        // normal builds; we read at most that many bytes.
        unsafe { std::ptr::copy_nonoverlapping(header_ptr, out.as_mut_ptr(), n) };
        let rest = &mut out[n..];
        let m = rest.len().min(self.inner.data.len());
        // SAFETY: at most `data.len()` bytes from offset 0 of the region.
        rest[..m].copy_from_slice(unsafe { self.inner.data.slice(0, m) });
    }
}

// SAFETY: the header and data live in one `Arc`'d allocation that every clone
// shares and that lives as long as any clone; `DataRegion::new` got a
// 16-aligned pointer to `data.len()` owned bytes that do not overlap the
// header.
unsafe impl RingStorage for HeapStorage {
    #[inline(always)]
    fn header(&self) -> &RingHeader {
        &self.inner.header
    }
    #[inline(always)]
    fn data(&self) -> &DataRegion {
        &self.inner.data
    }
}

/// Ring memory inside a caller-provided raw region (a shared-memory
/// segment): a [`RingHeader`] at the start, the data region right after it.
///
/// The ring does not depend on how the region was mapped: `keepalive` (e.g.
/// an `Arc` of the segment) is held by every clone to keep the mapping alive.
#[derive(Clone)]
pub struct MappedStorage {
    header: *const RingHeader,
    data: StdArc<DataRegion>,
    _keepalive: StdArc<dyn Any + Send + Sync>,
}

impl fmt::Debug for MappedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedStorage")
            .field("header", &self.header)
            .field("data", &*self.data)
            .finish()
    }
}

// SAFETY: the pointers refer to a mapping kept alive by `_keepalive` (itself
// `Send + Sync`); the header is atomics only and the data region is accessed
// under the ring protocol, so sharing or sending the view is sound.
unsafe impl Send for MappedStorage {}
// SAFETY: see `Send`.
unsafe impl Sync for MappedStorage {}

impl MappedStorage {
    /// Bytes of raw region needed for a ring of `capacity` data bytes.
    pub const fn required_len(capacity: usize) -> usize {
        HEADER_LEN + capacity
    }

    /// Views `len` bytes at `ptr` as a ring header followed by a data region
    /// of `len - HEADER_LEN` bytes.
    ///
    /// Fails with [`AttachError::BadRegion`] if `ptr` is not 128-byte aligned
    /// or `len` is smaller than the header. Under `cfg(shmwire_loom)` it
    /// always fails: loom's atomics cannot live in a real mapping.
    ///
    /// # Safety
    ///
    /// - `ptr` is valid for reads and writes of `len` bytes for as long as
    ///   `keepalive` (or any clone of the result) is alive;
    /// - the memory is only ever accessed as a ring (by this process through
    ///   this storage and by peers through their own mappings) — peers may be
    ///   hostile, which the ring tolerates;
    /// - the bytes are initialised (a fresh mapping is zero-filled).
    pub unsafe fn from_raw(
        ptr: *mut u8,
        len: usize,
        keepalive: StdArc<dyn Any + Send + Sync>,
    ) -> Result<Self, AttachError> {
        if cfg!(shmwire_loom) {
            return Err(AttachError::BadRegion {
                reason: "mapped storage is not supported under loom",
            });
        }
        if ptr.is_null() || ptr as usize % std::mem::align_of::<RingHeader>() != 0 {
            return Err(AttachError::BadRegion {
                reason: "region is not 128-byte aligned",
            });
        }
        if len < HEADER_LEN {
            return Err(AttachError::BadRegion {
                reason: "region is smaller than the ring header",
            });
        }
        // SAFETY: `ptr + HEADER_LEN` stays inside the `len`-byte region
        // (len >= HEADER_LEN); it is 128-aligned (HEADER_LEN is a multiple of
        // 128), hence 16-aligned; validity for the lifetime of `keepalive` is
        // the caller's contract.
        let data = unsafe { DataRegion::new(ptr.add(HEADER_LEN), len - HEADER_LEN) };
        Ok(Self {
            header: ptr.cast::<RingHeader>(),
            data: StdArc::new(data),
            _keepalive: keepalive,
        })
    }
}

// SAFETY: `from_raw`'s contract keeps the header and data valid while any
// clone (each holding `_keepalive`) lives; the data region starts right after
// the header and is 16-aligned.
unsafe impl RingStorage for MappedStorage {
    #[inline(always)]
    fn header(&self) -> &RingHeader {
        // SAFETY: `header` is aligned, valid for `HEADER_LEN` bytes and kept
        // alive by `_keepalive` (contract of `from_raw`); `RingHeader` is
        // atomics only, for which any initialised bit pattern is valid.
        unsafe { &*self.header }
    }
    #[inline(always)]
    fn data(&self) -> &DataRegion {
        &self.data
    }
}
