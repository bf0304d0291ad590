//! Counting an owner's local references without allocating: the lock-free
//! part of [`ObjectRef`](crate::worker::ObjectRef)'s reference counting
//! (Ray's `ReferenceCounter`, local references only).
//!
//! Every reference the owner hands out is a [`LocalRef`]: its id and a
//! pointer to a shared token that counts the live clones (and carries the
//! owner's data `O`, e.g. its address, cloned once per token, not per
//! reference). The clone that takes the count to zero queues the id — with
//! its token — for the owner ([`RefCounter::take_released`]), unless the
//! owner had already forgotten the object ([`RefCounter::free`]). The owner
//! reuses the tokens that come back, so a warm sync call (a reference made,
//! freed or dropped, the next made) allocates nothing, and a freed
//! reference costs one atomic read-modify-write to free and one to drop
//! (what an `Arc` clone and drop would).
//!
//! ## Protocol (a token's `state`: `FREED`, `HELD`, live clones)
//! A token is alive while it has clones or the owner holds it (in a list of
//! its own: spare, freed, or queued to it); whoever ends the last of these
//! frees it (only after the owner is gone: the owner reuses tokens).
//! - Clone: `fetch_add(1, Relaxed)`, made from a live clone (as
//!   `Arc::clone`).
//! - Free (owner, through a live clone): `fetch_or(FREED | HELD, Relaxed)`;
//!   the owner lists the token as *freed* (`HELD`: the list keeps it).
//! - Drop: `fetch_sub(1, Release)`: this clone's uses come before whoever
//!   takes the token next (partners: the owner's `Acquire` read of a freed
//!   token's state, or this drop's `Acquire` fence when last). Only the
//!   drop that ends the count goes on, and only if the owner does not hold
//!   the token; it saw `HELD` and `FREED` without further ordering
//!   (read-modify-writes of one atomic read each other in its modification
//!   order). It then alone has the token (`fence(Acquire)`, as `Arc`'s
//!   last drop) and queues it — with its id, unless freed — under the
//!   queue's mutex, storing `queued` with `Release` (partner: the owner's
//!   `Acquire` load in `take_released`; the list itself is read under the
//!   mutex); or frees it if the owner is gone.
//! - Reuse (owner, `new_ref`): a freed token whose state reads exactly
//!   `FREED | HELD` (`Acquire`, partner: the last drop's `Release`); one
//!   still cloned is let go (`fetch_and(!HELD, AcqRel)`: the last clone
//!   then queues it — or, if the count reached zero meanwhile, the owner
//!   keeps it after all: exactly one side sees the other). Queued tokens
//!   are taken under the mutex. No clone is left of a reused token, so
//!   `store(1, Relaxed)` restarts it.
//!
//! Modelled in `loom-tests/tests/ref_count.rs`.

use std::ptr::NonNull;

use crate::sync::{fence, Arc, AtomicBool, AtomicU32, Mutex, Ordering};

/// A token's state: the count of live clones.
const USERS: u32 = HELD - 1;
/// A token's state: the owner keeps it in its freed list.
const HELD: u32 = 1 << 30;
/// A token's state: the owner forgot the object.
const FREED: u32 = 1 << 31;

/// Tokens kept for reuse, per list (queued back, freed).
const SPARE_TOKENS: usize = 1024;

/// The count shared by the clones of one local reference.
struct RefToken<I, O> {
    /// Live clones ([`USERS`]), [`HELD`], [`FREED`]: one word, so that the
    /// last drop sees in the step that ends the count whether the owner
    /// holds the token.
    state: AtomicU32,
    /// The owner's data (the same for all its tokens).
    owner: O,
    queue: Arc<ReleaseQueue<I, O>>,
}

/// A token the owner has: queued to it, or in one of its lists.
struct Token<I, O>(NonNull<RefToken<I, O>>);

// SAFETY: a token is reached through this pointer by one thread at a time
// (the queue's mutex or the owner's `&mut`); it holds an `I` and an `O`,
// which may be dropped on whichever thread frees it.
unsafe impl<I: Send, O: Send + Sync> Send for Token<I, O> {}

impl<I, O> Token<I, O> {
    fn get(&self) -> &RefToken<I, O> {
        // SAFETY: a `Token` is held by the owner or its queue, which keeps
        // the token alive (freed only by `free_token`, which takes it).
        unsafe { self.0.as_ref() }
    }

    /// Frees the token.
    ///
    /// # Safety
    /// No clone is left and nothing else holds it (the owner is gone or is
    /// giving it up: its count is zero and no list keeps it).
    unsafe fn free_token(self) {
        // SAFETY: allocated by `Box::new` in `new_ref`; the caller
        // guarantees nobody else reaches it.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Where the last clones of an owner's references queue their tokens.
struct ReleaseQueue<I, O> {
    /// Something is queued (the owner locks the list only then).
    queued: AtomicBool,
    list: Mutex<Released<I, O>>,
}

/// Tokens whose last clone was dropped, not yet taken by their owner:
/// each with its id, unless it was freed.
struct Released<I, O> {
    refs: Vec<(Option<I>, Token<I, O>)>,
    /// The owner is gone: the last clones free their tokens themselves.
    closed: bool,
}

/// One clone of a counted reference to `I`, made by a [`RefCounter`].
/// Cloning counts; the drop that ends the count queues the id for the
/// owner.
pub struct LocalRef<I: Copy, O> {
    id: I,
    /// Alive while this clone is (the count includes it).
    token: NonNull<RefToken<I, O>>,
}

// SAFETY: what a clone reaches through its token is the atomic count, the
// owner's `O` (shared: `Sync`) and, as the last clone, the queue (`I`
// crosses threads in it) or the token's own drop (`O` dropped here: `Send`).
unsafe impl<I: Copy + Send, O: Send + Sync> Send for LocalRef<I, O> {}
// SAFETY: through `&LocalRef` a thread clones (atomic) or reads `I` / `O`.
unsafe impl<I: Copy + Sync, O: Send + Sync> Sync for LocalRef<I, O> {}

impl<I: Copy, O> LocalRef<I, O> {
    /// The referenced id.
    pub fn id(&self) -> I {
        self.id
    }

    /// The owner's data (what its [`RefCounter`] was made with).
    pub fn owner(&self) -> &O {
        &self.token().owner
    }

    fn token(&self) -> &RefToken<I, O> {
        // SAFETY: this clone counts in the token, which is freed only once
        // no clone is left.
        unsafe { self.token.as_ref() }
    }
}

impl<I: Copy, O> Clone for LocalRef<I, O> {
    fn clone(&self) -> Self {
        // Made from a live clone: the count cannot reach zero meanwhile;
        // nothing to order (as `Arc::clone`).
        let before = self.token().state.fetch_add(1, Ordering::Relaxed);
        if before & USERS >= USERS - 1 {
            // The count would run into the flags (as `Arc`, abort rather
            // than let a count wrap).
            std::process::abort();
        }
        Self {
            id: self.id,
            token: self.token,
        }
    }
}

impl<I: Copy, O> Drop for LocalRef<I, O> {
    fn drop(&mut self) {
        let t = self.token();
        // `Release`: see the module's protocol.
        let before = t.state.fetch_sub(1, Ordering::Release);
        if before & USERS != 1 || before & HELD != 0 {
            // Other clones live, or the owner holds it: not ours to touch.
            return;
        }
        // The last clone, the owner not holding it: this drop alone has the
        // token. `Acquire`, partners: the other clones' `Release` drops.
        fence(Ordering::Acquire);
        let id = (before & FREED == 0).then_some(self.id);
        let closed = {
            let mut r = t.queue.list.lock().unwrap_or_else(|p| p.into_inner());
            if !r.closed {
                r.refs.push((id, Token(self.token)));
                // `Release`, partner: the owner's `Acquire` load in
                // `take_released` (a hint: the list is read under the lock).
                t.queue.queued.store(true, Ordering::Release);
            }
            r.closed
        };
        if closed {
            // SAFETY: no clone is left, the owner is gone (it closed the
            // queue) and did not hold it: nobody else reaches it.
            unsafe { Token(self.token).free_token() };
        }
    }
}

/// The owner's side: makes counted references, takes back those whose last
/// clone went, reuses their tokens. Dropping it frees the tokens it holds;
/// references that outlive it free theirs.
pub struct RefCounter<I, O> {
    /// Cloned into each new token.
    owner: O,
    queue: Arc<ReleaseQueue<I, O>>,
    /// The list taken from the queue (kept for its capacity).
    taken: Vec<(Option<I>, Token<I, O>)>,
    /// Tokens that came back through the queue (no clones).
    spare: Vec<Token<I, O>>,
    /// Tokens of freed references ([`HELD`]), reused once their last clone
    /// is gone.
    freed: Vec<Token<I, O>>,
}

impl<I: Copy, O: Clone> RefCounter<I, O> {
    /// An owner with no references out; its tokens carry `owner`.
    pub fn new(owner: O) -> Self {
        Self {
            owner,
            queue: Arc::new(ReleaseQueue {
                queued: AtomicBool::new(false),
                list: Mutex::new(Released {
                    refs: Vec::new(),
                    closed: false,
                }),
            }),
            taken: Vec::new(),
            spare: Vec::new(),
            freed: Vec::new(),
        }
    }

    /// A counted reference to `id` (count 1), on a reused token when one is
    /// free: a freed reference's whose last clone is gone (the freed list
    /// is looked at from its end, one entry a call; a freed reference still
    /// cloned is let go, and its last clone queues its token back), else
    /// a queued one's; else a new one (one allocation).
    pub fn new_ref(&mut self, id: I) -> LocalRef<I, O> {
        let freed = self.freed.pop().and_then(|t| {
            let s = t.get();
            // `Acquire`, partner: the last drop's `Release`.
            if s.state.load(Ordering::Acquire) == FREED | HELD {
                return Some(t);
            }
            // Still cloned: let it go. `AcqRel`: if its last clone went
            // meanwhile (it saw `HELD` and left it), its drop's `Release`
            // is ours to pair with; else the drop that ends the count sees
            // `HELD` gone and queues it.
            let before = s.state.fetch_and(!HELD, Ordering::AcqRel);
            (before & USERS == 0).then_some(t)
        });
        let token = match freed.or_else(|| self.spare.pop()) {
            // No clone is left: no other thread touches it now.
            Some(t) => {
                t.get().state.store(1, Ordering::Relaxed);
                t.0
            }
            None => NonNull::from(Box::leak(Box::new(RefToken {
                state: AtomicU32::new(1),
                owner: self.owner.clone(),
                queue: Arc::clone(&self.queue),
            }))),
        };
        LocalRef { id, token }
    }

    /// Whether this owner made `r` (a reference from another owner, even
    /// one with the same id, is not its to read or free).
    #[inline]
    pub fn owns(&self, r: &LocalRef<I, O>) -> bool {
        Arc::ptr_eq(&r.token().queue, &self.queue)
    }

    /// Whether `r` is this owner's ([`RefCounter::owns`]) and not freed
    /// ([`RefCounter::free`] of any of its clones): its value may be read.
    #[inline]
    pub fn holds(&self, r: &LocalRef<I, O>) -> bool {
        // `Relaxed`: only this owner sets FREED (`free`, on `&mut self`),
        // so a set bit is this thread's own earlier write; and `r` being a
        // live clone, the token is not reused (which clears it) meanwhile.
        self.owns(r) && r.token().state.load(Ordering::Relaxed) & FREED == 0
    }

    /// Marks `r`'s object as forgotten by the owner: the drop that ends its
    /// count queues no id. Returns `false` (and marks nothing) for a
    /// reference this owner did not make.
    pub fn free(&mut self, r: &LocalRef<I, O>) -> bool {
        if !self.owns(r) {
            return false;
        }
        let t = r.token();
        // `Relaxed`: `r` is a live clone, so the count is not zero, and the
        // drop that ends it (a read-modify-write after this one in the
        // state's modification order) reads the flags.
        let before = t.state.fetch_or(FREED | HELD, Ordering::Relaxed);
        if before & HELD == 0 {
            if self.freed.len() < SPARE_TOKENS {
                self.freed.push(Token(r.token));
            } else {
                // No room to hold it: its last clone queues it back.
                t.state.fetch_and(!HELD, Ordering::Relaxed);
            }
        }
        true
    }

    /// Whether a reference's last clone queued something since the last
    /// [`RefCounter::take_released`] (one atomic load; `take_released`
    /// looks again under the lock).
    #[inline]
    pub fn has_released(&self) -> bool {
        // `Acquire`, partner: the last drop's `Release` store after its
        // push.
        self.queue.queued.load(Ordering::Acquire)
    }

    /// Appends to `out` the id of each reference whose last clone was
    /// dropped (and not freed) since the last call; returns how many. Takes
    /// the queue's lock only when something is queued.
    pub fn take_released(&mut self, out: &mut Vec<I>) -> usize {
        if !self.has_released() {
            return 0;
        }
        {
            let mut r = self.queue.list.lock().unwrap_or_else(|p| p.into_inner());
            // Under the lock: a push after this sets it again.
            self.queue.queued.store(false, Ordering::Relaxed);
            std::mem::swap(&mut r.refs, &mut self.taken);
        }
        let mut n = 0;
        for (id, token) in self.taken.drain(..) {
            // Queued by the drop that ended its count: no clone is left.
            if self.spare.len() < SPARE_TOKENS {
                self.spare.push(token);
            } else {
                // SAFETY: no clone is left; queued, it was the owner's
                // alone, and no list of it keeps it now.
                unsafe { token.free_token() };
            }
            if let Some(id) = id {
                out.push(id);
                n += 1;
            }
        }
        n
    }
}

impl<I, O> Drop for RefCounter<I, O> {
    /// Frees the tokens it holds without clones; the last clone of any
    /// other frees its own (the queue is closed).
    fn drop(&mut self) {
        let queued = {
            let mut r = self.queue.list.lock().unwrap_or_else(|p| p.into_inner());
            r.closed = true;
            std::mem::take(&mut r.refs)
        };
        let held = self.taken.drain(..).chain(queued).map(|(_, t)| t);
        for t in held.chain(self.spare.drain(..)) {
            // SAFETY: queued or spare: no clone is left, and it leaves the
            // owner's lists now.
            unsafe { t.free_token() };
        }
        for t in self.freed.drain(..) {
            // `AcqRel`: as in `new_ref`; a token still cloned is freed by
            // its last clone, which finds the queue closed.
            let before = t.get().state.fetch_and(!HELD, Ordering::AcqRel);
            if before & USERS == 0 {
                // SAFETY: no clone is left (they saw `HELD` and left it to
                // the owner), and it leaves the freed list now.
                unsafe { t.free_token() };
            }
        }
    }
}
