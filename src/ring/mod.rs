//! Lock-free single-producer single-consumer byte ring of variable-length
//! frames, placed in heap memory or a shared-memory segment.
//!
//! # Layout
//!
//! ```text
//! +------------------- RingHeader (640 B, repr(C)) -------------------+
//! | line 0: magic, capacity, version, poisoned, closed/attached flags  |
//! | line 1: head  (bytes ever published, producer writes)             |
//! | line 2: tail  (bytes ever released,  consumer writes)             |
//! | line 3: consumer wake slot  (sleeping flag, futex word)            |
//! | line 4: producer wake slot  (sleeping flag, futex word)            |
//! +------------------- data region (capacity = 2^k bytes) ------------+
//! | [len u32|kind u32|reserved 8][payload, padded to 16] [hdr][...] ...|
//! +--------------------------------------------------------------------+
//! ```
//!
//! Every frame starts at a 16-byte-aligned offset with a 16-byte header
//! (`len`, `kind`, 8 reserved bytes), so payloads are 16-byte aligned and
//! rkyv can read them in place. A frame never wraps: when it does not fit
//! before the end of the data region the producer first writes a *padding
//! frame* ([`PADDING_KIND`]) that covers the rest of the region, and the
//! frame starts at offset 0. `head` and `tail` are monotonically growing byte
//! counters; `head − tail` bytes are in the ring.
//!
//! # Halves
//!
//! [`Producer`] and [`Consumer`] are `Send` but not `Sync`. The producer
//! [`reserve`](Producer::reserve)s a [`WriteGrant`] (a `&mut [u8]` of exactly
//! the requested length inside the ring), encodes into it in place and
//! [`commit`](WriteGrant::commit)s it (or drops it: abort), or
//! [`commit_deferred`](WriteGrant::commit_deferred)s a batch and publishes
//! `head` once with [`Producer::flush`]. The consumer
//! [`peek`](Consumer::peek)s a [`ReadFrame`] (a `&[u8]` borrowed from the
//! ring: zero copy), then [`release`](ReadFrame::release)s it, or
//! [`release_deferred`](ReadFrame::release_deferred)s a batch and publishes
//! `tail` once with [`Consumer::flush`]. Each side caches the other's index
//! and re-reads it only when the ring looks full (producer) or empty
//! (consumer). A full ring is back-pressure ([`RingError::Full`] or a
//! blocking wait), never an overwrite.
//!
//! Both halves can move to another thread but not be shared:
//!
//! ```compile_fail
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<shmwire::ring::Producer<shmwire::ring::HeapStorage>>();
//! ```
//!
//! ```compile_fail
//! fn needs_sync<T: Sync>() {}
//! needs_sync::<shmwire::ring::Consumer<shmwire::ring::HeapStorage>>();
//! ```
//!
//! # Hot path
//!
//! A ping-pong of small frames costs cache-line transfers, not
//! instructions. The consumer prefetches a newly published frame's lines
//! (header and payload together, bounded by the published bytes) before
//! reading its header, and the producer, after each publish, prefetches for
//! writing the free lines its next frame will use (skipping the line the
//! consumer is about to read). Both are hints that read and write no value
//! (see `docs/ring.md`, "Hot path").
//!
//! # Orderings
//!
//! - `Producer::flush` stores `head` with `Release`; it pairs with the
//!   `Acquire` load of `head` in `Consumer::try_next` (and `Consumer::reload_head`), which makes the
//!   frame bytes written before the store visible to the consumer.
//! - `Consumer::flush` stores `tail` with `Release`; it pairs with the
//!   `Acquire` load of `tail` in `Producer::reload_tail`, so the consumer's
//!   reads of released bytes happen before the producer overwrites them.
//! - After each publish a `SeqCst` fence and a load of the peer's `sleeping`
//!   flag implement the wake-up handshake (see [`crate::wake`]).
//! - `Ring::init` stores `magic` last with `Release`; the `Acquire` load in
//!   `attach_*` pairs with it.
//! - `producer_closed` is stored with `Release` after the last publish of
//!   `head`; the consumer loads it with `Acquire` and then re-loads `head`,
//!   so "closed and empty" really means no more frames.
//!
//! # Hostile memory
//!
//! Everything read from the header or the data region is copied into a local
//! once, validated, and only then used: `tail ≤ head`, `head − tail ≤
//! capacity`, indices never move backwards, indices and frame lengths are
//! multiples of 16 / within the data region / within `head − tail`, padding
//! frames end exactly at the end of the region, the capacity matches the
//! memory we attached to. A violation returns [`RingError::Corrupt`] and
//! poisons the ring (a flag in the header and in the half): every later call
//! returns [`RingError::Poisoned`]. Bytes of a payload may still change under
//! a reader if the peer is hostile; that only changes bytes, and the message
//! layer validates them.
//!
//! # Example
//!
//! ```
//! use shmwire::ring::Ring;
//!
//! let (mut tx, mut rx) = Ring::heap(4096).unwrap();
//! let mut grant = tx.reserve(5).unwrap();
//! grant.copy_from_slice(b"hello");
//! grant.commit();
//! let frame = rx.peek().unwrap().expect("a frame");
//! assert_eq!(&*frame, b"hello");
//! frame.release();
//! assert!(rx.peek().unwrap().is_none());
//! ```

pub(crate) mod layout;
mod segment;
mod storage;

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

pub use layout::{
    Line, RingHeader, RingMeta, WakeSlot, FRAME_ALIGN, FRAME_HEADER_LEN, HEADER_LEN, MAX_CAPACITY,
    MIN_CAPACITY, PADDING_KIND, RING_LAYOUT_VERSION, RING_MAGIC, SLEEP_EVENTFD, SLEEP_FUTEX,
};
pub use segment::{create_ring_segment, RingSegmentError};
pub use storage::{DataRegion, HeapStorage, MappedStorage, RingStorage};

use crate::sync::{spin_loop, Ordering};
use crate::wake::{announce, retract, wake_peer, Deadline, EventFd, Waiter, INLINE_SPINS};
use layout::{frame_total, frame_total_sat, FrameHeader};

/// Everything that can go wrong on a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// No room for the frame right now (back-pressure); retry later.
    #[error("ring is full")]
    Full,
    /// The frame can never fit in this ring.
    #[error("frame payload of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// The frame kind is reserved by the ring ([`PADDING_KIND`]).
    #[error("frame kind {kind:#x} is reserved")]
    ReservedKind {
        /// The rejected kind.
        kind: u32,
    },
    /// Shared state violated the ring's invariants; the ring is now poisoned.
    #[error("corrupt ring: {what} (value {value}, limit {limit})")]
    Corrupt {
        /// Which invariant failed.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The bound it violated.
        limit: u64,
    },
    /// The ring was poisoned earlier (by either side) and cannot be used.
    #[error("ring is poisoned")]
    Poisoned,
    /// The peer closed the ring cleanly (and, for a consumer, every frame
    /// has been consumed).
    #[error("peer closed the ring")]
    Closed,
    /// The liveness check reported the peer dead (after everything it
    /// published was delivered).
    #[error("peer died")]
    PeerDied,
    /// A blocking call reached its deadline.
    #[error("timed out")]
    TimedOut,
    /// The ring header was not initialised (`magic` missing).
    #[error("ring is not initialised")]
    NotInitialized,
    /// The ring header has a different layout version.
    #[error("ring layout version {found}, expected {expected}")]
    VersionMismatch {
        /// Version found in the header.
        found: u32,
        /// Version this code speaks.
        expected: u32,
    },
    /// The capacity is not a power of two in range or exceeds the memory.
    #[error("bad ring capacity {capacity} (data region holds {available} bytes)")]
    BadCapacity {
        /// Requested or found capacity.
        capacity: u64,
        /// Bytes available in the data region.
        available: usize,
    },
    /// A producer (or consumer) half is already attached to this ring.
    #[error("a {role} is already attached to this ring")]
    AlreadyAttached {
        /// `"producer"` or `"consumer"`.
        role: &'static str,
    },
    /// A raw region cannot hold a ring.
    #[error("bad ring region: {reason}")]
    BadRegion {
        /// Why.
        reason: &'static str,
    },
}

/// Errors of creating or attaching a ring (until the split lands, the same
/// type as the data path's).
pub type AttachError = RingError;

type NotSync = PhantomData<Cell<()>>;

/// Creating and attaching rings.
#[derive(Debug)]
pub struct Ring;

impl Ring {
    /// Initialises a ring of `capacity` data bytes in `storage` (creator
    /// side; the memory must not be in use by any half). `capacity` must be
    /// a power of two in `[MIN_CAPACITY, MAX_CAPACITY]` and fit the storage's
    /// data region. `magic` is written last (`Release`).
    pub fn init<S: RingStorage>(storage: &S, capacity: usize) -> Result<(), RingError> {
        let available = storage.data().len();
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || capacity > available
        {
            return Err(RingError::BadCapacity {
                capacity: capacity as u64,
                available,
            });
        }
        let h = storage.header();
        h.meta.0.magic.store(0, Ordering::Relaxed);
        h.meta.0.capacity.store(capacity as u64, Ordering::Relaxed);
        h.meta
            .0
            .version
            .store(RING_LAYOUT_VERSION, Ordering::Relaxed);
        for flag in [
            &h.meta.0.poisoned,
            &h.meta.0.producer_closed,
            &h.meta.0.consumer_closed,
            &h.meta.0.producer_attached,
            &h.meta.0.consumer_attached,
            &h.consumer_wake.0.sleeping,
            &h.consumer_wake.0.futex,
            &h.producer_wake.0.sleeping,
            &h.producer_wake.0.futex,
        ] {
            flag.store(0, Ordering::Relaxed);
        }
        h.head.0.store(0, Ordering::Relaxed);
        h.tail.0.store(0, Ordering::Relaxed);
        // Publishes the fields above; pairs with the Acquire load of magic in
        // `Ring::attach`.
        h.meta.0.magic.store(RING_MAGIC, Ordering::Release);
        Ok(())
    }

    /// A ring on fresh heap memory, both halves (for tests and in-process
    /// use).
    pub fn heap(
        capacity: usize,
    ) -> Result<(Producer<HeapStorage>, Consumer<HeapStorage>), RingError> {
        let storage = HeapStorage::new(capacity);
        Ring::init(&storage, capacity)?;
        Ok((
            Ring::attach_producer(storage.clone())?,
            Ring::attach_consumer(storage)?,
        ))
    }

    /// Attaches the producer half to an initialised ring, validating the
    /// header.
    pub fn attach_producer<S: RingStorage>(storage: S) -> Result<Producer<S>, RingError> {
        let a = Self::attach(&storage, true)?;
        Ok(Producer {
            storage,
            cap: a.cap,
            head: a.head,
            published: a.head,
            cached_tail: a.tail,
            poisoned: false,
            peer_eventfd: None,
            _not_sync: PhantomData,
        })
    }

    /// Attaches the consumer half to an initialised ring, validating the
    /// header.
    pub fn attach_consumer<S: RingStorage>(storage: S) -> Result<Consumer<S>, RingError> {
        let a = Self::attach(&storage, false)?;
        Ok(Consumer {
            storage,
            cap: a.cap,
            tail: a.tail,
            published: a.tail,
            cached_head: a.head,
            poisoned: false,
            peer_eventfd: None,
            _not_sync: PhantomData,
        })
    }

    fn attach<S: RingStorage>(storage: &S, producer: bool) -> Result<Attached, RingError> {
        let h = storage.header();
        // Pairs with the Release store of magic in `Ring::init`.
        if h.meta.0.magic.load(Ordering::Acquire) != RING_MAGIC {
            return Err(RingError::NotInitialized);
        }
        let version = h.meta.0.version.load(Ordering::Relaxed);
        if version != RING_LAYOUT_VERSION {
            return Err(RingError::VersionMismatch {
                found: version,
                expected: RING_LAYOUT_VERSION,
            });
        }
        let available = storage.data().len();
        let cap = h.meta.0.capacity.load(Ordering::Relaxed);
        if !cap.is_power_of_two()
            || cap < MIN_CAPACITY as u64
            || cap > MAX_CAPACITY as u64
            || cap > available as u64
        {
            return Err(RingError::BadCapacity {
                capacity: cap,
                available,
            });
        }
        if header_poisoned(h) {
            return Err(RingError::Poisoned);
        }
        // Pairs with the Release stores of head/tail by a previous holder
        // of the halves (none on a fresh ring).
        let head = h.head.0.load(Ordering::Acquire);
        let tail = h.tail.0.load(Ordering::Acquire);
        check_indices(head, tail, cap).inspect_err(|_| poison_header(h))?;
        let (flag, role) = if producer {
            (&h.meta.0.producer_attached, "producer")
        } else {
            (&h.meta.0.consumer_attached, "consumer")
        };
        // AcqRel: orders this claim against the Release in the previous
        // holder's Drop (which stores 0).
        if flag
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(RingError::AlreadyAttached { role });
        }
        Ok(Attached {
            cap: cap as usize,
            head,
            tail,
        })
    }
}

struct Attached {
    cap: usize,
    head: u64,
    tail: u64,
}

/// How many bytes of a newly published frame the consumer prefetches
/// (header plus the first 304 payload bytes: a 256-byte message's frame).
const PREFETCH_BYTES: usize = 320;

/// Largest index accepted from shared memory (2^63 bytes: years of traffic
/// at memory bandwidth), so `index + frame size` can never overflow.
const MAX_INDEX: u64 = 1 << 63;

/// Validates a (head, tail) pair read from shared memory.
#[inline]
fn check_indices(head: u64, tail: u64, cap: u64) -> Result<(), RingError> {
    if tail > head {
        return Err(RingError::Corrupt {
            what: "tail is ahead of head",
            value: tail,
            limit: head,
        });
    }
    if head - tail > cap {
        return Err(RingError::Corrupt {
            what: "head - tail exceeds capacity",
            value: head - tail,
            limit: cap,
        });
    }
    if head > MAX_INDEX {
        return Err(RingError::Corrupt {
            what: "head beyond the index limit",
            value: head,
            limit: MAX_INDEX,
        });
    }
    if (head | tail) % FRAME_ALIGN as u64 != 0 {
        return Err(RingError::Corrupt {
            what: "index not 16-byte aligned",
            value: head | tail,
            limit: FRAME_ALIGN as u64,
        });
    }
    Ok(())
}

/// Whether either side poisoned the ring. Relaxed: the flag carries no
/// data, only "stop" (pairs with nothing; see `poison_header`).
#[inline]
fn header_poisoned(h: &RingHeader) -> bool {
    h.meta.0.poisoned.load(Ordering::Relaxed) != 0
}

fn poison_header(h: &RingHeader) {
    // Relaxed: the flag carries no data; the peer checks it whenever it
    // re-loads our index.
    h.meta.0.poisoned.store(1, Ordering::Relaxed);
}

/// The writing half of a ring. `Send`, not `Sync`.
pub struct Producer<S: RingStorage> {
    storage: S,
    cap: usize,
    /// Bytes written locally (committed or padding), published or not.
    head: u64,
    /// Last value stored into the shared `head`.
    published: u64,
    /// Last `tail` loaded from the header.
    cached_tail: u64,
    poisoned: bool,
    peer_eventfd: Option<EventFd>,
    _not_sync: NotSync,
}

impl<S: RingStorage> std::fmt::Debug for Producer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("cap", &self.cap)
            .field("head", &self.head)
            .field("published", &self.published)
            .field("cached_tail", &self.cached_tail)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<S: RingStorage> Producer<S> {
    /// Capacity of the data region in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Largest payload a single frame can carry (`capacity − 16`).
    pub fn max_payload(&self) -> usize {
        (self.cap - FRAME_HEADER_LEN).min(u32::MAX as usize)
    }

    /// The eventfd to write when the consumer sleeps on one
    /// ([`WaitStrategy::EventFd`](crate::wake::WaitStrategy::EventFd) on the
    /// consumer side).
    pub fn set_peer_eventfd(&mut self, fd: EventFd) {
        self.peer_eventfd = Some(fd);
    }

    /// Whether the ring is poisoned (here or by the peer).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned || header_poisoned(self.storage.header())
    }

    /// Reserves room for a frame with a `len`-byte payload (kind 0).
    ///
    /// Returns [`RingError::Full`] when there is no room now (after
    /// publishing any deferred commits, so the consumer can make progress),
    /// [`RingError::TooLarge`] when the frame can never fit.
    #[inline]
    pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_, S>, RingError> {
        self.reserve_with_kind(len, 0)
    }

    /// Like [`reserve`](Self::reserve) with an explicit frame kind (any
    /// value except [`PADDING_KIND`]).
    #[inline]
    pub fn reserve_with_kind(
        &mut self,
        len: usize,
        kind: u32,
    ) -> Result<WriteGrant<'_, S>, RingError> {
        if kind == PADDING_KIND {
            return Err(RingError::ReservedKind { kind });
        }
        match self.try_reserve(len)? {
            Some(off) => Ok(WriteGrant {
                producer: self,
                off,
                len,
                kind,
            }),
            None => {
                self.flush();
                Err(RingError::Full)
            }
        }
    }

    /// Like [`reserve_with_kind`](Self::reserve_with_kind) but waits for
    /// room with `waiter`'s strategy until `deadline`.
    ///
    /// Errors: [`RingError::TimedOut`], [`RingError::PeerDied`] (liveness
    /// check), [`RingError::Closed`] (consumer gone), and the errors of
    /// `reserve`.
    pub fn reserve_blocking(
        &mut self,
        len: usize,
        kind: u32,
        waiter: &Waiter,
        deadline: impl Into<Deadline>,
    ) -> Result<WriteGrant<'_, S>, RingError> {
        if kind == PADDING_KIND {
            return Err(RingError::ReservedKind { kind });
        }
        let off = match self.try_reserve(len)? {
            Some(off) => off,
            None => {
                self.flush();
                // SAFETY: the slot is used only during this call, while
                // `self` is alive.
                let slot = unsafe { self.own_slot() };
                waiter.wait_for(slot, deadline.into(), || {
                    let r = self.try_reserve(len);
                    if let Ok(None) = r {
                        // A padding frame written by try_reserve, or deferred
                        // commits, must be visible before we sleep.
                        self.flush();
                        if self
                            .storage
                            .header()
                            .meta
                            .0
                            .consumer_closed
                            .load(Ordering::Acquire)
                            != 0
                        {
                            return Err(RingError::Closed);
                        }
                    }
                    r
                })?
            }
        };
        Ok(WriteGrant {
            producer: self,
            off,
            len,
            kind,
        })
    }

    /// Event-loop integration: announces that this producer is about to
    /// block on its eventfd (given to the consumer with
    /// [`Consumer::set_peer_eventfd`]) until there is room for a `len`-byte
    /// payload, then re-checks (publishing deferred commits first).
    ///
    /// `Ok(true)`: still no room — wait for the eventfd, drain it, call
    /// [`disarm`](Self::disarm), then `reserve`. `Ok(false)`: room appeared
    /// (already disarmed) — `reserve` now.
    pub fn arm_eventfd(&mut self, len: usize) -> Result<bool, RingError> {
        self.flush();
        // SAFETY: the slot is used only during this call, while `self` is
        // alive.
        let slot = unsafe { self.own_slot() };
        announce(slot, SLEEP_EVENTFD);
        match self.try_reserve(len) {
            Ok(None) => {
                // try_reserve may have written a padding frame.
                self.flush();
                Ok(true)
            }
            other => {
                retract(slot);
                other.map(|_| false)
            }
        }
    }

    /// Withdraws [`arm_eventfd`](Self::arm_eventfd) after waking up.
    pub fn disarm(&mut self) {
        retract(&self.storage.header().producer_wake.0);
    }

    /// Publishes deferred commits (stores `head` once) and wakes the consumer
    /// if it sleeps.
    #[inline]
    pub fn flush(&mut self) {
        if self.head != self.published {
            // Pairs with the Acquire load of head in Consumer::try_next / reload_head:
            // the frame bytes written before this store are visible to a
            // consumer that loads the new head.
            self.storage
                .header()
                .head
                .0
                .store(self.head, Ordering::Release);
            self.published = self.head;
            wake_peer(
                &self.storage.header().consumer_wake.0,
                self.peer_eventfd.as_ref(),
            );
            self.prefetch_next();
        }
    }

    /// After a publish: asks for write ownership of the lines the next
    /// frame will use (up to [`PREFETCH_BYTES`] of the room we know is
    /// free), skipping the line that holds the end of the frame just
    /// published, which the consumer is about to read.
    #[inline]
    fn prefetch_next(&self) {
        let off = self.head as usize & (self.cap - 1);
        let start = (off + 63) & !63;
        let free = self.cap - (self.head - self.cached_tail) as usize;
        let n = PREFETCH_BYTES.min(free.saturating_sub(start - off));
        if n > 0 && start < self.cap {
            self.storage.data().prefetch_write(start, n);
        }
    }

    /// Bytes committed but not yet published.
    pub fn pending(&self) -> usize {
        (self.head - self.published) as usize
    }

    fn poison(&mut self, e: RingError) -> RingError {
        self.poisoned = true;
        poison_header(self.storage.header());
        e
    }

    /// The producer's own wake slot, detached from the borrow of `self` so a
    /// wait loop can hold it while polling `&mut self`.
    ///
    /// # Safety
    ///
    /// - the returned reference must not be used after `self` is dropped.
    unsafe fn own_slot<'s>(&self) -> &'s WakeSlot {
        let slot: *const WakeSlot = &self.storage.header().producer_wake.0;
        // SAFETY: by the `RingStorage` contract the header lives behind a
        // pointer that stays valid while any clone of the storage lives, and
        // the caller does not outlive `self` (which owns a clone); the slot
        // is atomics only, so shared access is fine.
        unsafe { &*slot }
    }

    /// Re-loads `tail` from the header and validates it.
    fn reload_tail(&mut self) -> Result<(), RingError> {
        let h = self.storage.header();
        if header_poisoned(h) {
            self.poisoned = true;
            return Err(RingError::Poisoned);
        }
        // Pairs with the Release store of tail in Consumer::flush: the
        // consumer's reads of the released bytes happen before we reuse them.
        let tail = h.tail.0.load(Ordering::Acquire);
        if tail < self.cached_tail {
            return Err(self.poison(RingError::Corrupt {
                what: "tail moved backwards",
                value: tail,
                limit: self.cached_tail,
            }));
        }
        // The consumer can only release what we published.
        if let Err(e) = check_indices(self.published, tail, self.cap as u64) {
            return Err(self.poison(e));
        }
        self.cached_tail = tail;
        Ok(())
    }

    /// Finds room for a frame with a `len`-byte payload, writing a padding
    /// frame first if it must wrap. Returns the frame's offset, or `None`
    /// if there is no room now.
    #[inline(always)]
    fn try_reserve(&mut self, len: usize) -> Result<Option<usize>, RingError> {
        // Fast path, one branch: not poisoned (here or by the peer: the flag
        // sits on the header's read-mostly first line, written only at
        // init, attach, close and poisoning, so this is an L1 hit and the
        // peer's poisoning is seen by every call), the frame fits before
        // the end of the data region and in the room the cached `tail`
        // already vouches for. Everything else (naming the poison, size
        // errors, padding, re-loading `tail`) is the slow path.
        let off = self.head as usize & (self.cap - 1);
        // Saturating: an absurd `len` fails the checks below and reaches the
        // slow path's TooLarge.
        let total = frame_total_sat(len as u64);
        let free = self.cap as u64 - (self.head - self.cached_tail);
        let ok = !self.poisoned
            & !header_poisoned(self.storage.header())
            & (total <= (self.cap - off) as u64)
            & (total <= free)
            & (len <= self.max_payload());
        if ok {
            return Ok(Some(off));
        }
        self.try_reserve_slow(len)
    }

    /// [`try_reserve`](Self::try_reserve) when the fast path does not apply.
    #[inline(never)]
    fn try_reserve_slow(&mut self, len: usize) -> Result<Option<usize>, RingError> {
        // The same poisoned check as the fast path (which folds it into its
        // one branch), here to name the error.
        if self.poisoned || header_poisoned(self.storage.header()) {
            self.poisoned = true;
            return Err(RingError::Poisoned);
        }
        let max = self.max_payload();
        let total = match frame_total(len) {
            Some(t) if len <= max => t,
            _ => return Err(RingError::TooLarge { len, max }),
        };
        let mask = self.cap - 1;
        // At most two rounds: after a padding frame the offset is 0 and the
        // frame fits contiguously (total <= cap).
        for _ in 0..2 {
            let off = self.head as usize & mask;
            let contiguous = self.cap - off;
            // Room for the frame here, or for the padding to the end first.
            let need = if total <= contiguous {
                total
            } else {
                contiguous
            };
            if !self.has_room(need)? {
                return Ok(None);
            }
            if total <= contiguous {
                return Ok(Some(off));
            }
            // Pad to the end of the data region; the frame goes to offset 0.
            let pad = FrameHeader {
                len: (contiguous - FRAME_HEADER_LEN) as u32,
                kind: PADDING_KIND,
            };
            // SAFETY: off + 16 <= cap (off is a multiple of 16 below cap, a
            // multiple of 16), and [off, cap) is free: has_room checked that
            // `contiguous` bytes past head are not in use by the consumer.
            unsafe { self.storage.data().write_bytes(off, &pad.to_bytes()) };
            self.head += contiguous as u64;
        }
        // Unreachable in practice (second round has off == 0); treat as full.
        Ok(None)
    }

    /// Whether `need` bytes past `head` are free, re-loading `tail` only if
    /// the cached value says no.
    #[inline]
    fn has_room(&mut self, need: usize) -> Result<bool, RingError> {
        let used = (self.head - self.cached_tail) as usize;
        if self.cap - used >= need {
            return Ok(true);
        }
        self.reload_tail()?;
        let used = (self.head - self.cached_tail) as usize;
        Ok(self.cap - used >= need)
    }
}

impl<S: RingStorage> Drop for Producer<S> {
    fn drop(&mut self) {
        self.flush();
        let h = self.storage.header();
        // Pairs with the Acquire load of producer_closed in
        // Consumer::try_next, which then re-loads head: every frame published
        // above is seen before "closed".
        h.meta.0.producer_closed.store(1, Ordering::Release);
        wake_peer(&h.consumer_wake.0, self.peer_eventfd.as_ref());
        // Pairs with the AcqRel compare_exchange in Ring::attach.
        h.meta.0.producer_attached.store(0, Ordering::Release);
    }
}

/// Room for one frame, borrowed from the ring: derefs to `&mut [u8]` of
/// exactly the requested length, 16-byte aligned. [`commit`](Self::commit)
/// publishes it; dropping it aborts (nothing becomes visible).
pub struct WriteGrant<'a, S: RingStorage> {
    producer: &'a mut Producer<S>,
    /// Offset of the frame header in the data region.
    off: usize,
    len: usize,
    kind: u32,
}

impl<S: RingStorage> std::fmt::Debug for WriteGrant<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGrant")
            .field("off", &self.off)
            .field("len", &self.len)
            .field("kind", &self.kind)
            .finish()
    }
}

impl<'a, S: RingStorage> WriteGrant<'a, S> {
    /// Changes the frame kind (any value except [`PADDING_KIND`]).
    pub fn set_kind(&mut self, kind: u32) -> Result<(), RingError> {
        if kind == PADDING_KIND {
            return Err(RingError::ReservedKind { kind });
        }
        self.kind = kind;
        Ok(())
    }

    /// The frame kind.
    pub fn kind(&self) -> u32 {
        self.kind
    }

    /// Writes the frame header and advances the local head; returns the
    /// producer.
    #[inline]
    fn finish(self) -> &'a mut Producer<S> {
        let hdr = FrameHeader {
            len: self.len as u32,
            kind: self.kind,
        };
        let data = self.producer.storage.data();
        // Under loom: the payload was written through the grant up to now.
        data.touch_write(self.off + FRAME_HEADER_LEN, self.len);
        // SAFETY: the frame [off, off + total) was found free and in bounds
        // by try_reserve, and we hold the producer exclusively.
        unsafe { data.write_bytes(self.off, &hdr.to_bytes()) };
        let total = frame_total(self.len).unwrap_or(FRAME_HEADER_LEN) as u64;
        self.producer.head += total;
        self.producer
    }

    /// Commits the frame and publishes `head` now (waking a sleeping
    /// consumer).
    #[inline]
    pub fn commit(self) {
        self.finish().flush();
    }

    /// Commits the frame without publishing `head`: publish a batch later
    /// with [`Producer::flush`] (also done automatically when the ring is
    /// full and when the producer is dropped).
    #[inline]
    pub fn commit_deferred(self) {
        self.finish();
    }
}

impl<S: RingStorage> Deref for WriteGrant<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: [off + 16, off + 16 + len) is inside the frame reserved by
        // try_reserve (in bounds, not readable by the consumer until commit);
        // the grant borrows the producer exclusively.
        unsafe {
            self.producer
                .storage
                .data()
                .slice(self.off + FRAME_HEADER_LEN, self.len)
        }
    }
}

impl<S: RingStorage> DerefMut for WriteGrant<'_, S> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe {
            self.producer
                .storage
                .data()
                .slice_mut(self.off + FRAME_HEADER_LEN, self.len)
        }
    }
}

/// The reading half of a ring. `Send`, not `Sync`.
pub struct Consumer<S: RingStorage> {
    storage: S,
    cap: usize,
    /// Bytes consumed locally (released or skipped padding), published or not.
    tail: u64,
    /// Last value stored into the shared `tail`.
    published: u64,
    /// Last `head` loaded from the header.
    cached_head: u64,
    poisoned: bool,
    peer_eventfd: Option<EventFd>,
    _not_sync: NotSync,
}

impl<S: RingStorage> std::fmt::Debug for Consumer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("cap", &self.cap)
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("cached_head", &self.cached_head)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// Where a validated frame sits (no borrow, so wait loops can return it).
#[derive(Debug, Clone, Copy)]
struct FrameDesc {
    off: usize,
    len: usize,
    kind: u32,
    total: usize,
}

impl<S: RingStorage> Consumer<S> {
    /// Capacity of the data region in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The eventfd to write when the producer sleeps on one.
    pub fn set_peer_eventfd(&mut self, fd: EventFd) {
        self.peer_eventfd = Some(fd);
    }

    /// Whether the ring is poisoned (here or by the peer).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned || header_poisoned(self.storage.header())
    }

    /// The next frame, if any, borrowed from the ring (zero copy).
    ///
    /// `Ok(None)`: empty for now (deferred releases are published first).
    /// [`RingError::Closed`]: the producer closed cleanly and every frame
    /// was consumed. [`RingError::Corrupt`]: hostile shared state (the ring
    /// is now poisoned).
    #[inline]
    pub fn peek(&mut self) -> Result<Option<ReadFrame<'_, S>>, RingError> {
        Ok(self.try_next()?.map(|desc| ReadFrame {
            consumer: self,
            desc,
        }))
    }

    /// Like [`peek`](Self::peek) but waits for a frame with `waiter`'s
    /// strategy until `deadline`.
    ///
    /// Errors: [`RingError::TimedOut`], [`RingError::PeerDied`] (after every
    /// frame published before the death was returned), [`RingError::Closed`]
    /// and the errors of `peek`.
    pub fn peek_blocking(
        &mut self,
        waiter: &Waiter,
        deadline: impl Into<Deadline>,
    ) -> Result<ReadFrame<'_, S>, RingError> {
        // Spin inline first (see `wake::INLINE_SPINS`). The poll that sees
        // the new frame is only a detector: its result is dropped and the
        // frame is parsed again (try_next is idempotent while the frame is
        // unreleased: same tail, same validated header; a hostile peer that
        // rewrites the header in between gets it validated again). Measured
        // on the 2-vCPU EPYC guest this is tuned on: ~20–30 ns faster per
        // round trip than keeping the detecting call's result. Why is not
        // established (no performance counters there); see `docs/ring.md`.
        let spins = if waiter.spins() { INLINE_SPINS } else { 0 };
        let mut found = None;
        for i in 0..=spins {
            if self.try_next()?.is_some() {
                found = self.try_next()?;
                break;
            }
            if i < spins {
                spin_loop();
            }
        }
        let desc = match found {
            Some(d) => d,
            None => {
                // SAFETY: the slot is used only during this call, while
                // `self` is alive.
                let slot = unsafe { self.own_slot() };
                waiter.wait_for(slot, deadline.into(), || self.try_next())?
            }
        };
        Ok(ReadFrame {
            consumer: self,
            desc,
        })
    }

    /// Event-loop integration: announces that this consumer is about to
    /// block on its eventfd (the one given to the producer with
    /// [`Producer::set_peer_eventfd`]), then re-checks the ring.
    ///
    /// `Ok(true)`: still empty — wait for the eventfd to become readable
    /// (epoll/mio), drain it, call [`disarm`](Self::disarm), then `peek`.
    /// `Ok(false)`: a frame arrived meanwhile (already disarmed) — `peek`
    /// now. This is the same announce / fence / re-check handshake the
    /// blocking calls use, so no wake-up is lost.
    pub fn arm_eventfd(&mut self) -> Result<bool, RingError> {
        // SAFETY: the slot is used only during this call, while `self` is
        // alive.
        let slot = unsafe { self.own_slot() };
        announce(slot, SLEEP_EVENTFD);
        match self.try_next() {
            Ok(None) => Ok(true),
            other => {
                retract(slot);
                other.map(|_| false)
            }
        }
    }

    /// Withdraws [`arm_eventfd`](Self::arm_eventfd) after waking up.
    pub fn disarm(&mut self) {
        retract(&self.storage.header().consumer_wake.0);
    }

    /// Publishes deferred releases (stores `tail` once) and wakes the
    /// producer if it sleeps.
    #[inline]
    pub fn flush(&mut self) {
        if self.tail != self.published {
            // Pairs with the Acquire load of tail in Producer::reload_tail:
            // our reads of the released frames happen before the producer
            // overwrites them.
            self.storage
                .header()
                .tail
                .0
                .store(self.tail, Ordering::Release);
            self.published = self.tail;
            wake_peer(
                &self.storage.header().producer_wake.0,
                self.peer_eventfd.as_ref(),
            );
        }
    }

    fn poison(&mut self, e: RingError) -> RingError {
        self.poisoned = true;
        poison_header(self.storage.header());
        e
    }

    /// The consumer's own wake slot, detached from the borrow of `self` (see
    /// `Producer::own_slot`).
    ///
    /// # Safety
    ///
    /// - the returned reference must not be used after `self` is dropped.
    unsafe fn own_slot<'s>(&self) -> &'s WakeSlot {
        let slot: *const WakeSlot = &self.storage.header().consumer_wake.0;
        // SAFETY: as in `Producer::own_slot`: the header outlives `self`,
        // which the caller does not outlive; the slot is atomics only.
        unsafe { &*slot }
    }

    fn corrupt(&mut self, what: &'static str, value: u64, limit: u64) -> RingError {
        self.poison(RingError::Corrupt { what, value, limit })
    }

    /// Re-loads `head` from the header and validates it.
    fn reload_head(&mut self) -> Result<(), RingError> {
        // Pairs with the Release store of head in Producer::flush: the frame
        // bytes written before it are visible below.
        let head = self.storage.header().head.0.load(Ordering::Acquire);
        self.accept_head(head)
    }

    /// Validates a `head` just loaded from the header and caches it.
    ///
    /// Every check is folded into one branch and the error path is out of
    /// line: this runs between the cache miss that brings the new `head`
    /// and the frame's first read, and keeping that stretch short measurably
    /// shortens the round trip (`docs/ring.md`, "Hot path"). The slow path
    /// names the violation.
    #[inline(always)]
    fn accept_head(&mut self, head: u64) -> Result<(), RingError> {
        // cached_head >= tail always holds, so `head >= cached_head` makes
        // the wrapping difference the real one.
        let bad = (head < self.cached_head)
            | (head.wrapping_sub(self.tail) > self.cap as u64)
            | (head > MAX_INDEX)
            | (head % FRAME_ALIGN as u64 != 0);
        if bad {
            return Err(self.reject_head(head));
        }
        self.cached_head = head;
        Ok(())
    }

    /// The slow path of [`accept_head`](Self::accept_head): which check
    /// failed; poisons the ring.
    #[cold]
    #[inline(never)]
    fn reject_head(&mut self, head: u64) -> RingError {
        if head < self.cached_head {
            return self.corrupt("head moved backwards", head, self.cached_head);
        }
        match check_indices(head, self.tail, self.cap as u64) {
            Err(e) => self.poison(e),
            // Unreachable: accept_head's checks are check_indices' plus the
            // backwards one; report it as corrupt rather than trust it.
            Ok(()) => self.corrupt("head rejected", head, self.cached_head),
        }
    }

    /// The ring looked empty (a fresh load of `head` found nothing new):
    /// the rarer checks that need not run while frames are flowing.
    /// `Ok(true)`: the producer closed and `head` moved meanwhile (parse
    /// on); `Ok(false)`: nothing to read.
    #[inline(never)]
    fn on_empty(&mut self) -> Result<bool, RingError> {
        // Let the producer reuse what we released.
        self.flush();
        let h = self.storage.header();
        // Pairs with the Release store in Producer::drop, made after its
        // last publish of head; re-load head after it.
        if h.meta.0.producer_closed.load(Ordering::Acquire) != 0 {
            self.reload_head()?;
            if self.cached_head == self.tail {
                return Err(RingError::Closed);
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Finds and validates the next frame, skipping padding.
    #[inline(always)]
    fn try_next(&mut self) -> Result<Option<FrameDesc>, RingError> {
        // The poisoned flag sits on the header's read-mostly first line
        // (written only at init, attach, close and poisoning), so this is an
        // L1 hit on the fast path; it makes the peer's poisoning visible to
        // every call, not only to index re-loads.
        if self.poisoned || header_poisoned(self.storage.header()) {
            self.poisoned = true;
            return Err(RingError::Poisoned);
        }
        // At most two rounds: a padding frame is never at offset 0.
        for _ in 0..2 {
            if self.cached_head == self.tail {
                // Pairs with the Release store of head in Producer::flush:
                // the frame bytes written before it are visible below.
                let head = self.storage.header().head.0.load(Ordering::Acquire);
                if head == self.tail {
                    if !self.on_empty()? {
                        return Ok(None);
                    }
                } else {
                    self.accept_head(head)?;
                }
                // New bytes: fetch the next frame's lines (header and the
                // start of its payload) in parallel rather than the header
                // first, then the payload once its length is known. Bounded
                // by what was published and the end of the region.
                let off = self.tail as usize & (self.cap - 1);
                let avail = (self.cached_head - self.tail) as usize;
                self.storage
                    .data()
                    .prefetch(off, avail.min(self.cap - off).min(PREFETCH_BYTES));
            }
            // avail is a non-zero multiple of 16 (accept_head), so at least
            // a frame header is readable.
            let avail = self.cached_head - self.tail;
            let off = self.tail as usize & (self.cap - 1);
            // SAFETY: off is a multiple of 16 (so of 8) below cap (a
            // multiple of 16), so off + 8 <= off + 16 <= cap <= data.len();
            // the bytes are published (avail >= 16) and not yet released, so
            // the producer does not write them (a hostile one may, which
            // only changes the value read).
            let hdr = FrameHeader::from_word(unsafe { self.storage.data().read_u64_le(off) });
            let room = (self.cap - off) as u64;
            let total = frame_total_sat(hdr.len as u64);
            // One branch for the padding frame and every violation (see
            // accept_head for why); the common frame passes straight on.
            if (hdr.kind == PADDING_KIND) | (total > room) | (total > avail) {
                self.skip_padding_or_reject(off, hdr, avail)?;
                continue;
            }
            return Ok(Some(FrameDesc {
                off,
                len: hdr.len as usize,
                kind: hdr.kind,
                total: total as usize,
            }));
        }
        Err(self.corrupt("two consecutive padding frames", 2, 1))
    }

    /// The slow path of a frame header: skips a valid padding frame at
    /// `off`, or poisons the ring with the violation found.
    #[cold]
    #[inline(never)]
    fn skip_padding_or_reject(
        &mut self,
        off: usize,
        hdr: FrameHeader,
        avail: u64,
    ) -> Result<(), RingError> {
        let len = hdr.len as usize;
        let room = self.cap - off;
        if hdr.kind != PADDING_KIND {
            // len <= u32::MAX, so no overflow on 64-bit.
            let total = frame_total(len).unwrap_or(usize::MAX);
            if total > room {
                return Err(self.corrupt(
                    "frame crosses the end of the ring",
                    total as u64,
                    room as u64,
                ));
            }
            return Err(self.corrupt("frame longer than published bytes", total as u64, avail));
        }
        if off == 0 {
            return Err(self.corrupt("padding frame at offset 0", 0, 1));
        }
        if len + FRAME_HEADER_LEN != room {
            return Err(self.corrupt(
                "padding frame does not end at the end of the ring",
                (len + FRAME_HEADER_LEN) as u64,
                room as u64,
            ));
        }
        if room as u64 > avail {
            return Err(self.corrupt(
                "padding frame longer than published bytes",
                room as u64,
                avail,
            ));
        }
        self.tail += room as u64;
        Ok(())
    }
}

impl<S: RingStorage> Drop for Consumer<S> {
    fn drop(&mut self) {
        self.flush();
        let h = self.storage.header();
        // Pairs with the Acquire load of consumer_closed in
        // Producer::reserve_blocking.
        h.meta.0.consumer_closed.store(1, Ordering::Release);
        wake_peer(&h.producer_wake.0, self.peer_eventfd.as_ref());
        // Pairs with the AcqRel compare_exchange in Ring::attach.
        h.meta.0.consumer_attached.store(0, Ordering::Release);
    }
}

/// A frame borrowed from the ring: derefs to its payload `&[u8]` (16-byte
/// aligned, zero copy). [`release`](Self::release) frees it; dropping it
/// without releasing leaves it in the ring (the next `peek` returns it again).
pub struct ReadFrame<'a, S: RingStorage> {
    consumer: &'a mut Consumer<S>,
    desc: FrameDesc,
}

impl<S: RingStorage> std::fmt::Debug for ReadFrame<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadFrame")
            .field("off", &self.desc.off)
            .field("len", &self.desc.len)
            .field("kind", &self.desc.kind)
            .finish()
    }
}

impl<S: RingStorage> ReadFrame<'_, S> {
    /// The frame kind.
    pub fn kind(&self) -> u32 {
        self.desc.kind
    }

    /// The payload (same as deref).
    pub fn payload(&self) -> &[u8] {
        self
    }

    #[inline]
    fn advance(&mut self) {
        // Under loom: the payload was read up to now.
        self.consumer
            .storage
            .data()
            .touch_read(self.desc.off, FRAME_HEADER_LEN + self.desc.len);
        self.consumer.tail += self.desc.total as u64;
    }

    /// Releases the frame and publishes `tail` now (waking a sleeping
    /// producer).
    #[inline]
    pub fn release(mut self) {
        self.advance();
        self.consumer.flush();
    }

    /// Releases the frame without publishing `tail`: publish a batch with
    /// [`Consumer::flush`] (also done automatically when the ring looks
    /// empty and when the consumer is dropped).
    #[inline]
    pub fn release_deferred(mut self) {
        self.advance();
    }
}

impl<S: RingStorage> Deref for ReadFrame<'_, S> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: try_next validated [off, off + total) inside the data
        // region and within the published bytes; the producer does not write
        // it until we release it (a hostile one may, which only changes
        // bytes).
        unsafe {
            self.consumer
                .storage
                .data()
                .slice(self.desc.off + FRAME_HEADER_LEN, self.desc.len)
        }
    }
}

#[cfg(all(test, not(shmwire_loom)))]
mod tests;
