//! The writing half of a ring: [`Producer`] and its [`WriteGrant`].
//!
//! The producer alone writes the frames (each published by its own commit
//! word, stored last) and `head`; it caches the consumer's `tail` and
//! re-loads it only when the ring looks full. See the [module docs](super)
//! for the orderings and `docs/ring.md` for the protocol.

use std::ops::{Deref, DerefMut};

use super::layout::{
    commit_value, frame_total, frame_total_sat, FrameHeader, FRAME_ALIGN, FRAME_INFO_OFFSET,
};
use super::storage::cldemote_supported;
use super::{
    audit_header, check_indices, header_poisoned, on_poisoned, peer_end, poison_header, Attached,
    NotSync, PeerEnd, RingError, RingStorage, Side, FRAME_HEADER_LEN, PADDING_KIND, PREFETCH_BYTES,
};
use crate::sync::Ordering;
use crate::wake::{
    announce, retract, wake_peer, Deadline, EventFd, Waiter, WakeSlot, SLEEP_EVENTFD,
};

/// The writing half of a ring. `Send`, not `Sync`.
pub struct Producer<S: RingStorage> {
    storage: S,
    cap: usize,
    /// Bytes written locally (committed or padding), published or not.
    head: u64,
    /// Where the first frame not yet visible to the consumer starts (equal
    /// to `head` when every frame is published). Its commit word is the
    /// one deferred store of a batch: every later frame of the batch has
    /// its commit word written already, but the consumer cannot reach them
    /// before this one. Also the last value stored into the shared `head`.
    published: u64,
    /// Last `tail` loaded from the header.
    cached_tail: u64,
    poisoned: bool,
    /// Whether the last [`audit`](Self::audit) found the consumer's flags
    /// unsettled (see `check_peer_settled`).
    unsettled: bool,
    /// Whether to `CLDEMOTE` the lines just published (run-time detected).
    demote: bool,
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
    /// The producer half over `storage`, whose header `Ring::attach` has
    /// just validated and claimed.
    pub(super) fn new(storage: S, a: Attached) -> Self {
        Self {
            storage,
            cap: a.cap,
            head: a.head,
            published: a.head,
            cached_tail: a.tail,
            poisoned: false,
            unsettled: false,
            demote: cldemote_supported(),
            peer_eventfd: None,
            _not_sync: NotSync::default(),
        }
    }

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

    /// Whether the ring's memory reads as given back by its owner (the
    /// constants written at init all zero: what a punched memfd reads as).
    /// A layer that knows the peer has gone reports the errors of such a
    /// ring as the connection's end, not as corruption.
    pub(crate) fn memory_discarded(&self) -> bool {
        super::header_discarded(self.storage.header())
    }

    /// Whether the consumer closed its end (dropped its half): nothing
    /// committed from now on will be read. A hint for layers above (a
    /// transport refusing to send); [`reserve_blocking`](Self::reserve_blocking)
    /// reports it as [`RingError::Closed`] by itself.
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        // Pairs with the Release store of consumer_closed in
        // `Drop for Consumer` (after its last publish of tail).
        self.storage
            .header()
            .meta
            .0
            .consumer_closed
            .load(Ordering::Acquire)
            != 0
    }

    /// The validated form of [`is_abandoned`](Self::is_abandoned) and
    /// [`is_poisoned`](Self::is_poisoned), for a layer that decides what a
    /// refused send means: `Ok(())` while the ring is usable,
    /// [`RingError::Closed`] when the consumer closed its end (its
    /// `consumer_closed` flag set *and* `consumer_attached` cleared, as its
    /// `Drop` leaves them, and the rest of the shared state passing
    /// [`audit`](Self::audit), else that audit's error: a peer that found the
    /// ring scribbled writes its close over the scribble), [`RingError::Poisoned`] when a side poisoned it,
    /// and [`RingError::Corrupt`] (poisoning the ring) when `poisoned` or
    /// one of those flags holds a value no side writes (neither 0 nor 1):
    /// scribbled memory is never taken for a close. Any other pair of
    /// flags (closed but still attached: a `Drop` half done, or a scribble)
    /// is not a close; [`audit`](Self::audit) reports it if it lasts.
    pub fn check_open(&mut self) -> Result<(), RingError> {
        let h = self.storage.header();
        if self.poisoned || header_poisoned(h) {
            return Err(on_poisoned(&mut self.poisoned, h));
        }
        match peer_end(
            &h.meta.0.consumer_closed,
            &h.meta.0.consumer_attached,
            Side::Consumer,
        ) {
            // Clean only in a whole ring (see `Consumer::on_empty`).
            Ok(PeerEnd::Closed) => Err(self.audit().err().unwrap_or(RingError::Closed)),
            Ok(_) => Ok(()),
            Err(v) => Err(self.poison(v.into())),
        }
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
    /// only while the consumer is known alive): the header's constants,
    /// flags and wake slots (see `audit_header`); the consumer's `closed`
    /// and `attached` flags, which must be a settled pair (attached and
    /// open, or closed and detached) by the second audit running; and
    /// `tail` (re-loaded and validated as when the ring looks full: it may
    /// not move backwards nor pass what was published). A violation
    /// poisons the ring and is returned as [`RingError::Corrupt`]; a ring
    /// poisoned earlier gives [`RingError::Poisoned`].
    pub fn audit(&mut self) -> Result<(), RingError> {
        if self.poisoned {
            return Err(RingError::Poisoned);
        }
        let audited = audit_header(
            self.storage.header(),
            self.cap,
            Side::Consumer,
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
        self.reload_tail()
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
    /// value except [`PADDING_KIND`](super::PADDING_KIND)).
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
                        if self.is_abandoned() {
                            // Closed, or a flag no side writes (corrupt).
                            self.check_open()?;
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
    /// [`Consumer::set_peer_eventfd`](super::Consumer::set_peer_eventfd)) until there is room for a `len`-byte
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

    /// Publishes deferred commits (one store: the commit word of the
    /// batch's first frame) and wakes the consumer if it sleeps.
    #[inline]
    pub fn flush(&mut self) {
        if self.head != self.published {
            let first = self.published;
            let off = first as usize & (self.cap - 1);
            let data = self.storage.data();
            // SAFETY: `first` is a frame start we wrote (16-aligned, below
            // cap, so off + 8 <= cap); its commit word is ours to write until
            // the consumer has read the frame, which it cannot do before
            // this store.
            // Release: pairs with the Acquire load of the commit word in
            // Consumer::try_next (and has_frames): the frame's header and
            // payload, every later frame of the batch (their commit words
            // included) and the cleared commit word after the batch are
            // visible to a consumer that sees this value.
            unsafe { data.store_commit(off, commit_value(first), Ordering::Release) };
            // Pairs with the Acquire load of head in Ring::attach: where a
            // half attaching later (after a close) finds the end of the
            // published frames. The consumer does not read it on the data
            // path.
            self.storage
                .header()
                .head
                .0
                .store(self.head, Ordering::Release);
            self.published = self.head;
            data.demote(
                off,
                ((self.head - first) as usize)
                    .min(self.cap - off)
                    .min(PREFETCH_BYTES),
                self.demote,
            );
            wake_peer(
                &self.storage.header().consumer_wake.0,
                self.peer_eventfd.as_ref(),
            );
            self.prefetch_next();
        }
    }

    /// Completes the frame at the local head (offset `off`, `total` bytes,
    /// reserved by `try_reserve`): writes its `len`/`kind`, clears the
    /// commit word of the frame that will follow it, and stores its own
    /// commit word — unless it is the first frame of a batch, whose commit
    /// word [`flush`](Self::flush) stores. Advances the local head.
    #[inline(always)]
    fn seal(&mut self, off: usize, hdr: FrameHeader, total: usize) {
        let data = self.storage.data();
        // SAFETY: off is a multiple of 16 below cap, so off + 16 <= cap; the
        // frame [off, off + total) was found free and in bounds by
        // try_reserve and we hold the producer exclusively.
        unsafe { data.write_u64_le(off + FRAME_INFO_OFFSET, hdr.to_word()) };
        let pos = self.head;
        let next = pos + total as u64;
        // The word where the next frame's commit will go may hold stale
        // bytes (payload of an earlier lap, or of a grant's unused part
        // after a partial commit) that could equal that frame's commit
        // value. Clear it while it is free; if it is not (the ring is full
        // up to `next`), it is the start of the frame at `cached_tail`, a
        // commit word of the previous lap (`next − cap + 1`), which cannot
        // match.
        if next - self.cached_tail <= (self.cap - FRAME_ALIGN) as u64 {
            let noff = next as usize & (self.cap - 1);
            // SAFETY: noff is a multiple of 16 below cap; [next, next + 16)
            // is free room (checked just above), which the consumer does not
            // read.
            // Relaxed: published by the Release store of this frame's (or
            // its batch's first frame's) commit word, which comes after it.
            unsafe { data.store_commit(noff, 0, Ordering::Relaxed) };
        }
        if pos != self.published {
            // SAFETY: off is a frame start of ours (see above).
            // Release: pairs with the Acquire load of this word in
            // Consumer::try_next; the consumer reaches it only after the
            // batch's first frame, whose commit `flush` stores later.
            unsafe { data.store_commit(off, commit_value(pos), Ordering::Release) };
        }
        self.head = next;
    }

    /// After a publish: asks for write ownership of the lines the next
    /// frame will use (up to `PREFETCH_BYTES` of the room we know is
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

    /// Bytes the consumer has not released yet (published frames and
    /// padding), for inspection: one fresh load of `tail`, clamped to the
    /// capacity (the peer may have written anything there). Changes nothing.
    pub fn fill(&self) -> usize {
        // Acquire: pairs with the Release store of tail in Consumer::flush
        // (as the reload in reserve does); the value is only reported.
        let tail = self.storage.header().tail.0.load(Ordering::Acquire);
        (self.published.wrapping_sub(tail) as usize).min(self.cap)
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
            return Err(on_poisoned(&mut self.poisoned, h));
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
        if let Err(v) = check_indices(self.published, tail, self.cap as u64) {
            return Err(self.poison(v.into()));
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
            return Err(on_poisoned(&mut self.poisoned, self.storage.header()));
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
            // [off, cap) is free: has_room checked that `contiguous` bytes
            // past head are not in use by the consumer.
            let pad = FrameHeader {
                len: (contiguous - FRAME_HEADER_LEN) as u32,
                kind: PADDING_KIND,
            };
            self.seal(off, pad, contiguous);
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
        // Consumer::is_abandoned (called by Consumer::on_empty, which then
        // re-loads head): every frame published above is seen before
        // "closed".
        h.meta.0.producer_closed.store(1, Ordering::Release);
        // Pairs with the AcqRel compare_exchange in Ring::attach, and with
        // the Acquire load in `peer_end` (Consumer::on_empty): closed and
        // detached means nothing more comes. Before the wake-up, so the
        // woken consumer finds the pair settled.
        h.meta.0.producer_attached.store(0, Ordering::Release);
        wake_peer(&h.consumer_wake.0, self.peer_eventfd.as_ref());
    }
}

/// Room for one frame, borrowed from the ring: derefs to `&mut [u8]` of
/// exactly the requested length, 16-byte aligned.
/// [`commit_all`](Self::commit_all) publishes it whole,
/// [`commit(n)`](Self::commit) only its first `n` bytes (a frame of length
/// `n`: reserve the most a message can need, encode, commit what was used);
/// dropping it aborts (nothing becomes visible).
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
    /// Changes the frame kind (any value except
    /// [`PADDING_KIND`](super::PADDING_KIND)).
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

    /// The granted length (what deref lends, the most a commit publishes).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.len
    }

    /// Writes the header of a frame of `n <= len` payload bytes, commits it
    /// (or leaves it as the first frame of a batch for `flush`) and
    /// advances the local head by that frame's size; returns the producer.
    ///
    /// A shorter frame needs no new ordering: the grant's bytes past the
    /// frame were never published and lie beyond `head`, so they simply
    /// become free room again. The next frame's commit word goes right
    /// after the shorter frame, inside the old grant, where the caller may
    /// have written payload bytes: `seal` clears it before this frame is
    /// committed.
    #[inline]
    fn finish(self, n: usize) -> &'a mut Producer<S> {
        debug_assert!(n <= self.len);
        let hdr = FrameHeader {
            len: n as u32,
            kind: self.kind,
        };
        // Under loom: the payload was written through the grant up to now
        // (all of it may have been, whatever part is committed).
        self.producer
            .storage
            .data()
            .touch_write(self.off + FRAME_HEADER_LEN, self.len);
        // n <= len, whose frame fitted the ring, so no overflow.
        let total = frame_total(n).unwrap_or(FRAME_HEADER_LEN);
        self.producer.seal(self.off, hdr, total);
        self.producer
    }

    /// Commits the first `n` bytes of the grant as the frame (its header's
    /// `len` becomes `n`; `head` advances by the smaller frame's size, so the
    /// rest of the grant is free room again) and publishes `head` now
    /// (waking a sleeping consumer). `commit(len)` is
    /// [`commit_all`](Self::commit_all); `commit(0)` publishes an empty
    /// frame of this kind.
    ///
    /// # Panics
    ///
    /// If `n` exceeds the granted length ([`capacity`](Self::capacity)).
    #[inline]
    pub fn commit(self, n: usize) {
        assert!(
            n <= self.len,
            "commit({n}) exceeds the {}-byte grant",
            self.len
        );
        self.finish(n).flush();
    }

    /// Commits the whole grant and publishes `head` now (waking a sleeping
    /// consumer).
    #[inline]
    pub fn commit_all(self) {
        let n = self.len;
        self.finish(n).flush();
    }

    /// Like [`commit`](Self::commit) (the first `n` bytes) without
    /// publishing `head`: publish a batch later with [`Producer::flush`]
    /// (also done automatically when the ring is full and when the producer
    /// is dropped).
    ///
    /// # Panics
    ///
    /// If `n` exceeds the granted length ([`capacity`](Self::capacity)).
    #[inline]
    pub fn commit_deferred(self, n: usize) {
        assert!(
            n <= self.len,
            "commit_deferred({n}) exceeds the {}-byte grant",
            self.len
        );
        self.finish(n);
    }

    /// Like [`commit_all`](Self::commit_all) without publishing `head` (see
    /// [`commit_deferred`](Self::commit_deferred)).
    #[inline]
    pub fn commit_all_deferred(self) {
        let n = self.len;
        self.finish(n);
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
