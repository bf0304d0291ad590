//! The reading half of a ring: [`Consumer`] and the [`ReadFrame`] it lends.
//!
//! The consumer alone writes `tail`. It learns of the next frame from the
//! frame itself: the frame's first word (its commit word) equals its start
//! position + 1 once the producer has written it, so an idle consumer polls
//! the line the frame will arrive in and never reads the producer's `head`.
//! It validates every frame header it reads (the producer may be hostile). See the
//! [module docs](super) for the orderings and `docs/ring.md` for the
//! protocol.

use std::ops::Deref;

use super::layout::{commit_value, frame_total, frame_total_sat, FrameHeader, FRAME_INFO_OFFSET};
use super::{
    audit_header, header_poisoned, on_poisoned, peer_end, poison_header, Attached, NotSync,
    PeerEnd, RingError, RingStorage, Side, FRAME_HEADER_LEN, PADDING_KIND, PREFETCH_BYTES,
};
use crate::sync::{spin_loop, Ordering};
use crate::wake::{
    announce, retract, wake_peer, Deadline, EventFd, Waiter, WakeSlot, INLINE_SPINS, SLEEP_EVENTFD,
};

/// The reading half of a ring. `Send`, not `Sync`.
pub struct Consumer<S: RingStorage> {
    storage: S,
    cap: usize,
    /// Bytes consumed locally (released or skipped padding), published or not.
    tail: u64,
    /// Last value stored into the shared `tail`.
    published: u64,
    /// Released bytes at which [`ReadFrame::release`] publishes `tail`
    /// (a quarter of the capacity, at most [`RELEASE_BATCH_MAX`]).
    batch: u64,
    poisoned: bool,
    /// Whether the last [`audit`](Self::audit) found the producer's flags
    /// unsettled (see `check_peer_settled`).
    unsettled: bool,
    peer_eventfd: Option<EventFd>,
    _not_sync: NotSync,
}

impl<S: RingStorage> std::fmt::Debug for Consumer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("cap", &self.cap)
            .field("tail", &self.tail)
            .field("published", &self.published)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// [`ReadFrame::release`] publishes `tail` once a `1 / RELEASE_BATCH_DIVISOR`
/// share of the capacity (a quarter), but at most [`RELEASE_BATCH_MAX`]
/// bytes, was released since the last publish; below that the producer
/// learns of the room when the consumer next finds the ring empty, flushes
/// or is dropped. A round trip's release then publishes while its side
/// waits for the answer, not between the frame's arrival and its answer.
pub const RELEASE_BATCH_DIVISOR: usize = 4;

/// The most released room (bytes) a consumer keeps from its producer
/// between publishes: 4 KiB. A consumer that goes busy right after a
/// release (a worker running a long task inline) withholds less than this,
/// whatever the frame's size: a frame of 4 KiB or more is published as it
/// is released (an attack on `c901956` found a quarter ring — 256 KiB of
/// a 1 MiB ring — withheld during such a task, which blocked the caller's
/// next large send until the task ended).
pub const RELEASE_BATCH_MAX: usize = 4096;

/// Where a validated frame sits (no borrow, so wait loops can return it).
#[derive(Debug, Clone, Copy)]
struct FrameDesc {
    off: usize,
    len: usize,
    kind: u32,
    total: usize,
}

impl<S: RingStorage> Consumer<S> {
    /// The consumer half over `storage`, whose header `Ring::attach` has
    /// just validated and claimed.
    pub(super) fn new(storage: S, a: Attached) -> Self {
        Self {
            storage,
            cap: a.cap,
            tail: a.tail,
            published: a.tail,
            batch: (a.cap / RELEASE_BATCH_DIVISOR).clamp(1, RELEASE_BATCH_MAX) as u64,
            poisoned: false,
            unsettled: false,
            peer_eventfd: None,
            _not_sync: NotSync::default(),
        }
    }

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

    /// Whether the producer closed its end (dropped its half): after the
    /// frames already in the ring, nothing more comes. Frames may still be
    /// waiting; [`peek`](Self::peek) returns them and then
    /// [`RingError::Closed`].
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        // Pairs with the Release store of producer_closed in
        // `Drop for Producer`, made after its last commit: a caller that
        // sees `true` and then loads the next commit word (as `on_empty`
        // does) sees every frame that will ever come.
        self.storage
            .header()
            .meta
            .0
            .producer_closed
            .load(Ordering::Acquire)
            != 0
    }

    /// A cheap readiness probe: whether the producer has committed the
    /// frame at this consumer's `tail` (one fresh load of that frame's
    /// commit word). Consumes nothing, validates nothing and changes no
    /// state, so an event loop can ask it from `&self`.
    ///
    /// A hint: `true` may also mean a lone padding frame or a corrupt
    /// frame header (then [`peek`](Self::peek) returns `Ok(None)` or the
    /// error); `false` means no frame is waiting right now (`peek` returns
    /// `Ok(None)`, or an error such as [`RingError::Closed`] after
    /// [`is_abandoned`](Self::is_abandoned)).
    #[inline]
    pub fn has_frames(&self) -> bool {
        self.committed(self.tail as usize & (self.cap - 1))
    }

    /// Whether the frame at `tail` (at offset `off`) is committed: one
    /// Acquire load of its commit word.
    #[inline(always)]
    fn committed(&self, off: usize) -> bool {
        // SAFETY: off = tail & (cap - 1) is a multiple of 16 below cap (tail
        // is 16-aligned: validated at attach, advanced by multiples of 16),
        // so off + 8 <= cap <= data.len(); the word is only accessed
        // atomically while it is a frame start (see Producer::seal).
        // Acquire: pairs with the Release store of the commit word in
        // Producer::flush / Producer::seal: the frame's header and payload
        // (and the cleared commit word after it) are visible below.
        let word = unsafe { self.storage.data().load_commit(off, Ordering::Acquire) };
        word == commit_value(self.tail)
    }

    /// Bytes published by the producer and not yet released by this
    /// consumer, for inspection: one fresh load of `head`, clamped to the
    /// capacity (the peer may have written anything there). Changes nothing.
    pub fn fill(&self) -> usize {
        // Acquire: pairs with the Release store of head in Producer::flush
        // (as has_frames does); the value is only reported.
        let head = self.storage.header().head.0.load(Ordering::Acquire);
        (head.wrapping_sub(self.published) as usize).min(self.cap)
    }

    /// Poisons the ring (both halves see [`RingError::Poisoned`] from now
    /// on): for a layer above that found what the peer wrote invalid (a
    /// frame that does not decode) and cuts the connection off, so the
    /// peer learns of a violation, not of a clean close.
    pub fn cut_off(&mut self) {
        self.poisoned = true;
        poison_header(self.storage.header());
    }

    /// Checks the shared state this half reads rarely or never on the data
    /// path (run periodically by a layer above, e.g. the shared-memory
    /// transport's mux tick, at intervals far longer than a `Drop` takes and
    /// only while the producer is known alive): the header's constants,
    /// flags and wake slots (see `audit_header`); the producer's `closed`
    /// and `attached` flags, which must be a settled pair (attached and
    /// open, or closed and detached) by the second audit running; `head`,
    /// and the commit word of the frame at
    /// this consumer's `tail`. `head` (one Acquire load, pairing with the
    /// Release store in `Producer::flush`) must be 16-aligned and within
    /// one capacity of `tail` either way (the producer never publishes more
    /// than a capacity past what was released, and the frames read so far
    /// were published by a flush whose predecessor's `head` store is
    /// visible); when it is past `tail`, the frame at `tail` was published
    /// before that store, so its commit word must be `tail + 1` — anything
    /// else was overwritten after publication (a wait for it would never
    /// end). A violation poisons the ring and is returned as
    /// [`RingError::Corrupt`]; a ring poisoned earlier gives
    /// [`RingError::Poisoned`]. Changes nothing else.
    pub fn audit(&mut self) -> Result<(), RingError> {
        if self.poisoned {
            return Err(RingError::Poisoned);
        }
        let audited = audit_header(
            self.storage.header(),
            self.cap,
            Side::Producer,
            &mut self.unsettled,
        );
        if let Err(e) = audited {
            if matches!(e, RingError::Poisoned) {
                self.poisoned = true;
                return Err(e);
            }
            // A garbage poisoned flag or an unsettled close pair included:
            // now poisoned.
            return Err(self.poison(e));
        }
        let cap = self.cap as u64;
        let head = self.storage.header().head.0.load(Ordering::Acquire);
        if head % FRAME_HEADER_LEN as u64 != 0 {
            return Err(self.corrupt("head not 16-byte aligned", head, FRAME_HEADER_LEN as u64));
        }
        if head > self.tail.saturating_add(cap) {
            return Err(self.corrupt("head more than a capacity past tail", head, self.tail + cap));
        }
        if head.saturating_add(cap) < self.tail {
            return Err(self.corrupt(
                "head more than a capacity behind tail",
                head,
                self.tail - cap,
            ));
        }
        if head > self.tail && !self.committed(self.tail as usize & (self.cap - 1)) {
            // SAFETY: as in `committed` (the same word, read again for the
            // report).
            let word = unsafe {
                self.storage
                    .data()
                    .load_commit(self.tail as usize & (self.cap - 1), Ordering::Relaxed)
            };
            return Err(self.corrupt(
                "commit word of a published frame overwritten",
                word,
                commit_value(self.tail),
            ));
        }
        Ok(())
    }

    /// The next frame, if any, borrowed from the ring (zero copy).
    ///
    /// `Ok(None)`: empty for now (deferred releases are published first).
    /// [`RingError::Closed`]: the producer closed cleanly and every frame
    /// was consumed (a close found in a ring whose shared state fails
    /// [`audit`](Self::audit) is that audit's error instead).
    /// [`RingError::Corrupt`]: hostile shared state (the ring is now
    /// poisoned).
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
    /// [`Producer::set_peer_eventfd`](super::Producer::set_peer_eventfd)), then re-checks the ring.
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

    /// The ring looked empty (the next frame's commit word is not set):
    /// the rarer checks that need not run while frames are flowing.
    /// `Ok(true)`: the producer closed and the frame was committed
    /// meanwhile (parse on); `Ok(false)`: nothing to read.
    #[inline(never)]
    fn on_empty(&mut self, off: usize) -> Result<bool, RingError> {
        // Let the producer reuse what we released.
        self.flush();
        // `peer_end`'s Acquire load of producer_attached pairs with the
        // Release store of 0 that ends `Drop for Producer`, after its last
        // commit; re-load the commit word after it. Closed means closed and
        // detached; a flag no side writes is a violation, not a close; any
        // other pair is not a close (`audit` reports it if it lasts).
        let h = self.storage.header();
        let end = peer_end(
            &h.meta.0.producer_closed,
            &h.meta.0.producer_attached,
            Side::Producer,
        );
        match end {
            Ok(PeerEnd::Closed) if self.committed(off) => Ok(true),
            // A close is clean only in a ring whose shared state is whole:
            // a peer that found the memory scribbled and left writes its
            // close flags over the scribble (once per connection).
            Ok(PeerEnd::Closed) => Err(self.audit().err().unwrap_or(RingError::Closed)),
            Ok(_) => Ok(false),
            Err(v) => Err(self.poison(v.into())),
        }
    }

    /// Finds and validates the next frame, skipping padding.
    #[inline(always)]
    fn try_next(&mut self) -> Result<Option<FrameDesc>, RingError> {
        // The poisoned flag sits on the header's read-mostly first line
        // (written only at init, attach, close and poisoning), so this is an
        // L1 hit on the fast path; it makes the peer's poisoning visible to
        // every call, not only to the frames it writes.
        if self.poisoned || header_poisoned(self.storage.header()) {
            return Err(on_poisoned(&mut self.poisoned, self.storage.header()));
        }
        // At most two rounds: a padding frame is never at offset 0.
        for _ in 0..2 {
            let off = self.tail as usize & (self.cap - 1);
            if !self.committed(off) && !self.on_empty(off)? {
                return Ok(None);
            }
            // SAFETY: off is a multiple of 16 below cap, so off + 16 <= cap
            // <= data.len(); the frame is committed and not yet released,
            // so the producer does not write it (a hostile one may, which
            // only changes the value read, once: one 8-byte load).
            let hdr = FrameHeader::from_word(unsafe {
                self.storage.data().read_u64_le(off + FRAME_INFO_OFFSET)
            });
            let room = (self.cap - off) as u64;
            let total = frame_total_sat(hdr.len as u64);
            // One branch for the padding frame and every violation (the
            // code that names them is out of line); the common frame passes
            // straight on.
            if (hdr.kind == PADDING_KIND) | (total > room) {
                self.skip_padding_or_reject(off, hdr)?;
                continue;
            }
            // The header line is here; fetch the payload's next lines in
            // parallel rather than one after the other as the copy reaches
            // them (bounded by the frame, which lies inside the region).
            self.storage
                .data()
                .prefetch(off, (total as usize).min(PREFETCH_BYTES));
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
    fn skip_padding_or_reject(&mut self, off: usize, hdr: FrameHeader) -> Result<(), RingError> {
        let len = hdr.len as usize;
        let room = self.cap - off;
        if hdr.kind != PADDING_KIND {
            // len <= u32::MAX, so no overflow on 64-bit.
            let total = frame_total(len).unwrap_or(usize::MAX);
            return Err(self.corrupt(
                "frame crosses the end of the ring",
                total as u64,
                room as u64,
            ));
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
        self.tail += room as u64;
        Ok(())
    }
}

impl<S: RingStorage> Drop for Consumer<S> {
    fn drop(&mut self) {
        self.flush();
        let h = self.storage.header();
        // Pairs with the Acquire load of consumer_closed in
        // Producer::is_abandoned (called by Producer::reserve_blocking).
        h.meta.0.consumer_closed.store(1, Ordering::Release);
        // Pairs with the AcqRel compare_exchange in Ring::attach, and with
        // the Acquire load in `peer_end` (Producer::check_open): closed and
        // detached means the consumer is gone. Before the wake-up, so the
        // woken producer finds the pair settled.
        h.meta.0.consumer_attached.store(0, Ordering::Release);
        wake_peer(&h.producer_wake.0, self.peer_eventfd.as_ref());
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

    /// Releases the frame; the producer learns of the room lazily, in
    /// batches: `tail` is published (waking a producer
    /// that sleeps for room) once a quarter of the capacity, at most 4 KiB,
    /// was released since the last publish ([`RELEASE_BATCH_DIVISOR`],
    /// [`RELEASE_BATCH_MAX`]), and otherwise
    /// when this consumer next finds the ring empty (any
    /// [`peek`](Consumer::peek), [`peek_blocking`](Consumer::peek_blocking)
    /// or [`arm_eventfd`](Consumer::arm_eventfd) that finds no frame), at
    /// [`Consumer::flush`] and when it is dropped. A consumer that stops
    /// looking at the ring while the producer may still need the room (an
    /// event loop that polls only [`has_frames`](Consumer::has_frames))
    /// calls [`Consumer::flush`] itself.
    #[inline]
    pub fn release(mut self) {
        self.advance();
        let c = &mut *self.consumer;
        if c.tail.wrapping_sub(c.published) >= c.batch {
            c.flush();
        }
    }

    /// Releases the frame without publishing `tail` at all: publish with
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
