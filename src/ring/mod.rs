//! Lock-free single-producer single-consumer byte ring of variable-length
//! frames, placed in heap memory or a shared-memory segment.
//!
//! # Layout
//!
//! ```text
//! +------------------- RingHeader (640 B, repr(C)) -------------------+
//! | line 0: magic, capacity, version, poisoned, closed/attached flags  |
//! | line 1: head  (bytes published, producer writes; attach reads)    |
//! | line 2: tail  (bytes ever released,  consumer writes)             |
//! | line 3: consumer wake slot  (sleeping flag, futex word)            |
//! | line 4: producer wake slot  (sleeping flag, futex word)            |
//! +------------------- data region (capacity = 2^k bytes) ------------+
//! | [commit u64|len u32|kind u32][payload, padded to 16] [hdr][...] ...|
//! +--------------------------------------------------------------------+
//! ```
//!
//! Every frame starts at a 16-byte-aligned offset with a 16-byte header
//! (a commit word, `len`, `kind`), so payloads are 16-byte aligned and
//! rkyv can read them in place. The commit word of a frame that starts at
//! ring position `p` is `p + 1` once the frame is complete: the producer
//! stores it last, and the consumer polls it — each frame announces itself,
//! so the consumer never reads the producer's `head` on the data path. A frame never wraps: when it does not fit
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
//! [`commit_all`](WriteGrant::commit_all)s it, or
//! [`commit(n)`](WriteGrant::commit)s only the first `n` bytes it used (the
//! frame's length becomes `n`), or drops it (abort); the `_deferred` forms
//! ([`commit_deferred`](WriteGrant::commit_deferred),
//! [`commit_all_deferred`](WriteGrant::commit_all_deferred)) build a batch
//! that [`Producer::flush`] publishes with one store (the commit word of the
//! batch's first frame; later frames' commit words are written at once but
//! cannot be reached before it). The consumer
//! [`peek`](Consumer::peek)s a [`ReadFrame`] (a `&[u8]` borrowed from the
//! ring: zero copy), then [`release`](ReadFrame::release)s it, or
//! [`release_deferred`](ReadFrame::release_deferred)s a batch and publishes
//! `tail` once with [`Consumer::flush`]. The producer caches `tail` and
//! re-reads it only when the ring looks full, so it learns of freed room
//! lazily, in batches; the consumer needs no index of the producer's. A full ring is back-pressure ([`RingError::Full`] or a
//! blocking wait), never an overwrite.
//!
//! # Asking the ring, not its memory
//!
//! A layer above never loads the header's atomics itself; it asks a half:
//! [`Producer::is_abandoned`] (the consumer closed its end),
//! [`Consumer::is_abandoned`] (the producer closed: after the frames still
//! in the ring nothing more comes), [`Consumer::has_frames`] (a readiness
//! probe that consumes nothing), `is_poisoned`, and the eventfd arming calls
//! for event loops.
//!
//! # Files
//!
//! `layout.rs` (the `#[repr(C)]` header and frame format), `storage.rs`
//! (heap or mapped memory, [`RingStorage`]), `segment.rs` (rings in
//! [`shm`](crate::shm) segments), `error.rs` ([`AttachError`] for init and
//! attach, [`RingError`] for the data path), `producer.rs` ([`Producer`],
//! [`WriteGrant`]), `consumer.rs` ([`Consumer`], [`ReadFrame`]); this file
//! creates rings and attaches halves ([`Ring`]).
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
//! instructions. An idle consumer spins on the line the next frame's header
//! will arrive in, so learning of a frame and reading its start is one
//! transfer; it then prefetches the frame's other lines together. The
//! producer, after each publish, demotes the lines it published to the
//! shared cache (`CLDEMOTE`, where the CPU has it) and prefetches for
//! writing the free lines its next frame will use (skipping the line the
//! consumer is about to read). All are hints that read and write no value
//! (see `docs/ring.md`, "Hot path").
//!
//! # Orderings
//!
//! - A frame's commit word is stored with `Release` (by `Producer::seal`, or
//!   by `Producer::flush` for a batch's first frame); it pairs with the
//!   `Acquire` load of the commit word in `Consumer::try_next` /
//!   [`Consumer::has_frames`], which makes the frame's bytes — and the 0
//!   the producer stored (`Relaxed`) where the next frame's commit word
//!   goes — visible to the consumer.
//! - `Producer::flush` also stores `head` with `Release`, for `Ring::attach`
//!   (`Acquire`) only.
//! - `Consumer::flush` stores `tail` with `Release`; it pairs with the
//!   `Acquire` load of `tail` in `Producer::reload_tail`, so the consumer's
//!   reads of released bytes happen before the producer overwrites them.
//!   [`ReadFrame::release`] calls it only once a quarter of the capacity
//!   (at most 4 KiB) was released since the last publish; an empty poll, an explicit
//!   [`Consumer::flush`] and the consumer's drop publish the rest, so a
//!   producer sleeping for room is woken by the consumer's next look at an
//!   empty ring at the latest (the producer learns of room lazily; a
//!   round trip's release is no longer between a frame's arrival and its
//!   answer).
//! - After each publish a `SeqCst` fence and a load of the peer's `sleeping`
//!   flag implement the wake-up handshake (see [`crate::wake`]).
//! - `Ring::init` stores `magic` last with `Release`; the `Acquire` load in
//!   `attach_*` pairs with it.
//! - A half's `Drop` stores its `closed` flag (1) and then its `attached`
//!   flag (0), both `Release`, after its last publish, then wakes the peer;
//!   the peer (`peer_end`: the consumer's empty path, [`Producer::check_open`])
//!   loads `attached` then `closed` with `Acquire`, and takes only that pair
//!   for a close; the consumer then re-loads the commit word at its `tail`,
//!   so "closed and empty" really means no more frames.
//!   [`Consumer::is_abandoned`] / [`Producer::is_abandoned`] are hints (the
//!   `closed` flag alone).
//! - A partial commit ([`WriteGrant::commit`]) adds no ordering: the
//!   grant's bytes past the shorter frame were never published, so they
//!   just become free room again; the next commit word among them is
//!   cleared like any other.
//!
//! # Hostile memory
//!
//! Everything read from the header or the data region is copied into a local
//! once, validated, and only then used: at attach `tail ≤ head`, `head −
//! tail ≤ capacity`, both multiples of 16; `tail` never moves backwards
//! nor passes what the producer published; a commit word that is not
//! exactly `tail + 1` is "not yet" (nothing is read); frames lie within the
//! data region, padding frames end exactly at its end, the capacity matches
//! the memory we attached to; every flag is 0 or 1, and a close is only the
//! pair a `Drop` leaves; [`Producer::audit`] / [`Consumer::audit`] check what
//! the data path reads rarely or never (constants, the peer's flag pair,
//! `head`, a published frame's commit word). A violation returns [`RingError::Corrupt`] (or
//! [`AttachError::Corrupt`] when attaching) and poisons the ring (a flag in
//! the header and in the half): every later call returns
//! [`RingError::Poisoned`]. Bytes of a payload may still change under
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
//! grant.commit_all();
//! assert!(rx.has_frames());
//! let frame = rx.peek().unwrap().expect("a frame");
//! assert_eq!(&*frame, b"hello");
//! frame.release();
//! assert!(rx.peek().unwrap().is_none());
//!
//! // Reserve the most a message can need, write, commit what was used.
//! let mut grant = tx.reserve(64).unwrap();
//! grant[..3].copy_from_slice(b"abc");
//! grant.commit(3);
//! let frame = rx.peek().unwrap().expect("a frame");
//! assert_eq!(&*frame, b"abc");
//! frame.release();
//!
//! drop(tx);
//! assert!(rx.is_abandoned() && !rx.has_frames());
//! ```

mod consumer;
mod error;
pub(crate) mod layout;
mod producer;
mod segment;
mod storage;

use std::cell::Cell;
use std::marker::PhantomData;

pub use consumer::{Consumer, ReadFrame, RELEASE_BATCH_DIVISOR, RELEASE_BATCH_MAX};
pub use error::{AttachError, RingError, Side};
pub use layout::{
    Line, RingHeader, RingMeta, FRAME_ALIGN, FRAME_HEADER_LEN, HEADER_LEN, MAX_CAPACITY,
    MIN_CAPACITY, PADDING_KIND, RING_LAYOUT_VERSION, RING_MAGIC,
};
pub use producer::{Producer, WriteGrant};
pub use segment::{create_ring_anon, create_ring_segment, RingSegmentError};
pub use storage::{DataRegion, HeapStorage, MappedStorage, RingStorage};

use crate::sync::{AtomicU32, Ordering};
use error::Violation;

/// Makes a half `!Sync` (and keeps it `Send`).
type NotSync = PhantomData<Cell<()>>;

/// Creating and attaching rings.
#[derive(Debug)]
pub struct Ring;

impl Ring {
    /// Initialises a ring of `capacity` data bytes in `storage` (creator
    /// side; the memory must not be in use by any half). `capacity` must be
    /// a power of two in `[MIN_CAPACITY, MAX_CAPACITY]` and fit the storage's
    /// data region. `magic` is written last (`Release`).
    pub fn init<S: RingStorage>(storage: &S, capacity: usize) -> Result<(), AttachError> {
        let available = storage.data().len();
        if !capacity.is_power_of_two()
            || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
            || capacity > available
        {
            return Err(AttachError::BadCapacity {
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
    ) -> Result<(Producer<HeapStorage>, Consumer<HeapStorage>), AttachError> {
        let storage = HeapStorage::new(capacity);
        Ring::init(&storage, capacity)?;
        Ok((
            Ring::attach_producer(storage.clone())?,
            Ring::attach_consumer(storage)?,
        ))
    }

    /// Attaches the producer half to an initialised ring, validating the
    /// header.
    pub fn attach_producer<S: RingStorage>(storage: S) -> Result<Producer<S>, AttachError> {
        let a = Self::attach(&storage, Side::Producer)?;
        Ok(Producer::new(storage, a))
    }

    /// Attaches the consumer half to an initialised ring, validating the
    /// header.
    pub fn attach_consumer<S: RingStorage>(storage: S) -> Result<Consumer<S>, AttachError> {
        let a = Self::attach(&storage, Side::Consumer)?;
        Ok(Consumer::new(storage, a))
    }

    fn attach<S: RingStorage>(storage: &S, side: Side) -> Result<Attached, AttachError> {
        let h = storage.header();
        // Pairs with the Release store of magic in `Ring::init`.
        if h.meta.0.magic.load(Ordering::Acquire) != RING_MAGIC {
            return Err(AttachError::NotInitialized);
        }
        let version = h.meta.0.version.load(Ordering::Relaxed);
        if version != RING_LAYOUT_VERSION {
            return Err(AttachError::VersionMismatch {
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
            return Err(AttachError::BadCapacity {
                capacity: cap,
                available,
            });
        }
        if header_poisoned(h) {
            return Err(AttachError::Poisoned);
        }
        // Pairs with the Release stores of head/tail by a previous holder
        // of the halves (none on a fresh ring).
        let head = h.head.0.load(Ordering::Acquire);
        let tail = h.tail.0.load(Ordering::Acquire);
        check_indices(head, tail, cap).inspect_err(|_| poison_header(h))?;
        let flag = match side {
            Side::Producer => &h.meta.0.producer_attached,
            Side::Consumer => &h.meta.0.consumer_attached,
        };
        // AcqRel: orders this claim against the Release in the previous
        // holder's Drop (which stores 0).
        if flag
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(AttachError::AlreadyAttached { side });
        }
        Ok(Attached {
            cap: cap as usize,
            head,
            tail,
        })
    }
}

/// What `Ring::attach` validated: the halves start from these.
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
fn check_indices(head: u64, tail: u64, cap: u64) -> Result<(), Violation> {
    if tail > head {
        return Err(Violation {
            what: "tail is ahead of head",
            value: tail,
            limit: head,
        });
    }
    if head - tail > cap {
        return Err(Violation {
            what: "head - tail exceeds capacity",
            value: head - tail,
            limit: cap,
        });
    }
    if head > MAX_INDEX {
        return Err(Violation {
            what: "head beyond the index limit",
            value: head,
            limit: MAX_INDEX,
        });
    }
    if (head | tail) % FRAME_ALIGN as u64 != 0 {
        return Err(Violation {
            what: "index not 16-byte aligned",
            value: head | tail,
            limit: FRAME_ALIGN as u64,
        });
    }
    Ok(())
}

/// Reads a 0/1 flag of the header's first line (`poisoned`, a `closed` or
/// an `attached` flag): any other value is a violation, never taken as
/// "set" (a scribbled closed flag must not pass for a clean close).
#[inline]
fn read_flag(flag: &AtomicU32, what: &'static str, order: Ordering) -> Result<bool, Violation> {
    match flag.load(order) {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(Violation {
            what,
            value: u64::from(v),
            limit: 1,
        }),
    }
}

/// Where the peer half is, as its `closed` and `attached` flags say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnd {
    /// Attached and not closed.
    Open,
    /// Closed and detached: its `Drop` ran to the end, after its last
    /// publish.
    Closed,
    /// Any other pair: not attached yet, in the middle of its `Drop`
    /// (closed, still attached), or scribbled. Not a close: the data path
    /// goes on; an audit that finds it twice running reports it
    /// (`check_peer_settled`).
    Unsettled {
        /// The `closed` flag.
        closed: bool,
        /// The `attached` flag.
        attached: bool,
    },
}

/// Reads the peer's `closed` and `attached` flags (each 0 or 1, else a
/// violation). `attached` is loaded first: its Acquire pairs with the
/// Release store of 0 that ends the peer's `Drop`, made after its store of
/// `closed` and its last publish, so a peer seen detached and closed has
/// nothing more to publish and everything it published is visible.
#[inline]
fn peer_end(closed: &AtomicU32, attached: &AtomicU32, peer: Side) -> Result<PeerEnd, Violation> {
    let (what_a, what_c) = match peer {
        Side::Producer => (
            "producer_attached is neither 0 nor 1",
            "producer_closed is neither 0 nor 1",
        ),
        Side::Consumer => (
            "consumer_attached is neither 0 nor 1",
            "consumer_closed is neither 0 nor 1",
        ),
    };
    let attached = read_flag(attached, what_a, Ordering::Acquire)?;
    let closed = read_flag(closed, what_c, Ordering::Acquire)?;
    Ok(match (closed, attached) {
        (false, true) => PeerEnd::Open,
        (true, false) => PeerEnd::Closed,
        (closed, attached) => PeerEnd::Unsettled { closed, attached },
    })
}

/// The audit's check of the peer's flags: a [`PeerEnd::Unsettled`] pair
/// seen by two audits running (`seen` remembers the last one) is a
/// violation — a `Drop` stores the two flags back to back, and a half
/// attaches before its connection is set up. For a caller that audits at
/// intervals far longer than that and only while the peer is alive.
#[cold]
fn check_peer_settled(end: PeerEnd, seen: &mut bool, peer: Side) -> Result<(), Violation> {
    match end {
        PeerEnd::Unsettled { closed, attached } => {
            if std::mem::replace(seen, true) {
                // Reported as (value: closed, limit: attached).
                return Err(Violation {
                    what: match (peer, closed) {
                        (Side::Producer, true) => "producer closed but still attached",
                        (Side::Producer, false) => "producer neither attached nor closed",
                        (Side::Consumer, true) => "consumer closed but still attached",
                        (Side::Consumer, false) => "consumer neither attached nor closed",
                    },
                    value: u64::from(closed),
                    limit: u64::from(attached),
                });
            }
            Ok(())
        }
        _ => {
            *seen = false;
            Ok(())
        }
    }
}

/// The poisoned flag as an error: `Poisoned` when a side set it, `Corrupt`
/// when it holds a value no side writes. Relaxed, as `header_poisoned`.
#[cold]
fn poisoned_error(h: &RingHeader) -> RingError {
    match read_flag(
        &h.meta.0.poisoned,
        "poisoned flag is neither 0 nor 1",
        Ordering::Relaxed,
    ) {
        Err(v) => v.into(),
        Ok(_) => RingError::Poisoned,
    }
}

/// The error of a half that finds the ring poisoned (`local`: its own
/// flag). The first time, [`poisoned_error`] (a garbage flag is a
/// [`RingError::Corrupt`], and is then set to 1 like any poisoning); after
/// that, [`RingError::Poisoned`] on every call.
#[cold]
fn on_poisoned(local: &mut bool, h: &RingHeader) -> RingError {
    if std::mem::replace(local, true) {
        return RingError::Poisoned;
    }
    let e = poisoned_error(h);
    if matches!(e, RingError::Corrupt { .. }) {
        poison_header(h);
    }
    e
}

/// The checks both halves run in [`Producer::audit`] / [`Consumer::audit`]
/// on the header fields the data path reads rarely or never: the constants
/// written at init (`magic`, `version`, `capacity`, which must still be what
/// this half attached to), every 0/1 flag, and the wake slots' `sleeping`
/// words (a bit set of `SLEEP_FUTEX | SLEEP_EVENTFD`), and the `peer`'s
/// `closed`/`attached` pair, which must be settled by the second audit that
/// sees it (`unsettled`: the half's memory of the first). The poisoned flag
/// is reported as [`poisoned_error`] does: `RingError::Poisoned` means
/// "poisoned earlier", any other error that the caller must poison now.
#[cold]
fn audit_header(
    h: &RingHeader,
    cap: usize,
    peer: Side,
    unsettled: &mut bool,
) -> Result<(), RingError> {
    if h.meta.0.poisoned.load(Ordering::Relaxed) != 0 {
        return Err(poisoned_error(h));
    }
    // Relaxed loads throughout: each value is only compared with what it
    // must be; no data is published through them.
    let magic = h.meta.0.magic.load(Ordering::Relaxed);
    if magic != RING_MAGIC {
        return Err(Violation {
            what: "magic overwritten",
            value: magic,
            limit: RING_MAGIC,
        }
        .into());
    }
    let version = h.meta.0.version.load(Ordering::Relaxed);
    if version != RING_LAYOUT_VERSION {
        return Err(Violation {
            what: "layout version overwritten",
            value: u64::from(version),
            limit: u64::from(RING_LAYOUT_VERSION),
        }
        .into());
    }
    let found = h.meta.0.capacity.load(Ordering::Relaxed);
    if found != cap as u64 {
        return Err(Violation {
            what: "capacity overwritten",
            value: found,
            limit: cap as u64,
        }
        .into());
    }
    for (flag, what) in [
        (
            &h.meta.0.producer_closed,
            "producer_closed is neither 0 nor 1",
        ),
        (
            &h.meta.0.consumer_closed,
            "consumer_closed is neither 0 nor 1",
        ),
        (
            &h.meta.0.producer_attached,
            "producer_attached is neither 0 nor 1",
        ),
        (
            &h.meta.0.consumer_attached,
            "consumer_attached is neither 0 nor 1",
        ),
    ] {
        read_flag(flag, what, Ordering::Relaxed)?;
    }
    let all = u64::from(crate::wake::SLEEP_FUTEX | crate::wake::SLEEP_EVENTFD);
    for (slot, what) in [
        (
            &h.consumer_wake.0,
            "consumer wake slot's sleeping word out of range",
        ),
        (
            &h.producer_wake.0,
            "producer wake slot's sleeping word out of range",
        ),
    ] {
        let v = u64::from(slot.sleeping.load(Ordering::Relaxed));
        if v & !all != 0 {
            return Err(Violation {
                what,
                value: v,
                limit: all,
            }
            .into());
        }
    }
    let (closed, attached) = match peer {
        Side::Producer => (&h.meta.0.producer_closed, &h.meta.0.producer_attached),
        Side::Consumer => (&h.meta.0.consumer_closed, &h.meta.0.consumer_attached),
    };
    peer_end(closed, attached, peer)
        .and_then(|end| check_peer_settled(end, unsettled, peer))
        .map_err(Into::into)
}

/// Whether either side poisoned the ring. Relaxed: the flag carries no
/// data, only "stop" (pairs with nothing; see `poison_header`).
#[inline]
fn header_poisoned(h: &RingHeader) -> bool {
    h.meta.0.poisoned.load(Ordering::Relaxed) != 0
}

fn poison_header(h: &RingHeader) {
    // A discarded ring is left as it is: the write would only put a page
    // of memory back into a memfd its owner gave back.
    if header_discarded(h) {
        return;
    }
    // Relaxed: the flag carries no data; the peer checks it whenever it
    // re-loads our index.
    h.meta.0.poisoned.store(1, Ordering::Relaxed);
}

/// Whether the ring's memory reads as discarded: the constants written at
/// init (magic, layout version, capacity) all zero, as a memfd reads once
/// its owner punched its pages out (`fallocate(PUNCH_HOLE)`: a listener
/// discards the rings of a connection it ended, after
/// `transport::shm::listener::RING_LINGER`). Relaxed loads: only compared.
fn header_discarded(h: &RingHeader) -> bool {
    h.meta.0.magic.load(Ordering::Relaxed) == 0
        && h.meta.0.version.load(Ordering::Relaxed) == 0
        && h.meta.0.capacity.load(Ordering::Relaxed) == 0
}

#[cfg(all(test, not(shmwire_loom)))]
mod tests;
