//! How a waiting side waits, and how the other side wakes it.
//!
//! This layer knows nothing of rings: it waits for a caller's `poll` closure
//! to yield something, and sleeps on a [`WakeSlot`] that the caller placed
//! in (shared) memory. The ring is its main user — a side that finds the
//! ring empty (consumer) or full (producer) waits here — and anything else
//! that needs a cross-process wait/wake (e.g. store notifications) uses the
//! same slot and handshake. A side waits with the [`WaitStrategy`] its
//! caller chose:
//!
//! | strategy | waits by | woken by |
//! | --- | --- | --- |
//! | [`WaitStrategy::Spin`] | busy-spinning until the deadline | nothing (it polls) |
//! | [`WaitStrategy::SpinYield`] | spinning, then `sched_yield` in a loop | nothing (it polls) |
//! | [`WaitStrategy::SpinPark`] | spinning, then `FUTEX_WAIT` on the *shared* futex word of its [`WakeSlot`] | `FUTEX_WAKE` by the peer |
//! | [`WaitStrategy::EventFd`] | spinning, then `poll` on the eventfd given with [`Waiter::with_eventfd`] (without one: as `SpinPark`) | an eventfd write by the peer |
//!
//! ## The handshake (no lost wake-up, no syscall on the fast path)
//!
//! Each side owns a [`WakeSlot`] in shared memory (in a ring header: its own
//! cache line): a `sleeping` flag and a futex word. The sleeper:
//!
//! 1. reads the futex word (`seq`);
//! 2. stores its `sleeping` flag;
//! 3. `fence(SeqCst)`;
//! 4. re-checks (for a ring: a fresh load of the peer's index) and returns
//!    if it can proceed;
//! 5. `FUTEX_WAIT(word, seq, timeout)` (or polls its eventfd).
//!
//! The waker publishes (a ring: its index, `Release` store), then
//! `fence(SeqCst)`, then loads the peer's `sleeping` flag: only if it is set
//! does it swap it to 0, bump the futex word and call `FUTEX_WAKE` (or write
//! the eventfd). The two
//! SeqCst fences make this a Dekker pair: either the sleeper's re-check sees
//! the new index, or the waker sees the flag. While the peer is awake the
//! waker's cost is one fence and one load of a line that is not being
//! written: no syscall. The loom models in `loom-tests/tests/wake.rs` check
//! both directions.
//!
//! The OS-facing part is one small internal trait, `Park` (block on a
//! token / signal the sleeper), implemented by the shared futex word and by
//! [`EventFd`] (whose syscalls live in the OS layer, `crate::sys`); under
//! `cfg(shmwire_loom)` both are modelled with a `Mutex` +
//! `Condvar` (the futex with its "compare then sleep atomically with respect
//! to wakers" semantics, the eventfd as a counter), so loom runs the very
//! handshake code that ships.
//!
//! Every blocking wait is bounded by a deadline and calls the caller's
//! [`PeerLiveness`] check every [`Waiter::check_interval`] (sleeps are sliced
//! to that interval), so a dead peer yields [`WaitError::PeerDied`] (which
//! the ring reports as `RingError::PeerDied`), not a hang.
//!
//! The spin window matters on virtual machines: a wake-up across vCPUs costs
//! tens of microseconds there, so [`DEFAULT_SPIN`] is 80 µs — a peer that
//! answers within that window is never put to sleep.

mod eventfd;
pub mod handoff;
mod park;
mod slot;

use std::time::{Duration, Instant};

pub use eventfd::EventFd;
use park::{Futex, Park};
pub use slot::{WakeSlot, SLEEP_EVENTFD, SLEEP_FUTEX};

use crate::sync::{fence, spin_loop, Ordering};

/// Why a wait ended without the awaited condition.
///
/// The wait loop (`Waiter::wait_for`) returns the caller's own error type
/// `E: From<WaitError>` (the ring's `RingError` has the same two variants),
/// so a caller's poll errors and these two reasons travel in one enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed (after one last poll found nothing).
    #[error("timed out")]
    TimedOut,
    /// The [`PeerLiveness`] check reported the peer dead (after one last
    /// poll found nothing).
    #[error("peer died")]
    PeerDied,
}

/// When a blocking call gives up with [`WaitError::TimedOut`].
///
/// `After` lets a caller bound a call without reading the clock itself: the
/// timeout starts when the call first has to wait and reads the clock (after
/// a few empty polls), so a call that finds a frame or room at once never
/// reads the clock. Both blocking calls take `impl Into<Deadline>`, so an
/// `Instant` or a `Duration` can be passed directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// At this instant.
    At(Instant),
    /// This long after the call starts waiting.
    After(Duration),
}

impl Deadline {
    /// The instant this deadline falls on, for a wait whose clock reads
    /// `now` (a timeout too large to represent means "never").
    pub fn at(self, now: Instant) -> Instant {
        match self {
            Deadline::At(t) => t,
            Deadline::After(d) => now
                .checked_add(d)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
        }
    }
}

impl From<Instant> for Deadline {
    fn from(t: Instant) -> Self {
        Deadline::At(t)
    }
}

impl From<Duration> for Deadline {
    fn from(d: Duration) -> Self {
        Deadline::After(d)
    }
}

/// Default spin window before a parking strategy sleeps (exceeds the
/// ~22–45 µs cost of a cross-vCPU wake-up measured on the target machines).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(80);

/// Default interval between liveness checks (and longest single sleep).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(2);

/// How a side waits (for a ring: to become non-empty as a consumer, to have
/// room as a producer). A plain `Copy` choice: the eventfd an
/// [`EventFd`](WaitStrategy::EventFd) waiter blocks on is given to the
/// [`Waiter`] separately ([`Waiter::with_eventfd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Busy-spin until the condition holds or the deadline passes. Lowest
    /// latency; burns a core.
    Spin,
    /// Spin for `spin`, then alternate a poll and `sched_yield`.
    SpinYield {
        /// Busy-spin window before yielding.
        spin: Duration,
    },
    /// Spin for `spin`, then sleep on the shared futex word of the waiting
    /// side's [`WakeSlot`] (`FUTEX_WAIT` without the private flag, always with
    /// a timeout).
    SpinPark {
        /// Busy-spin window before sleeping.
        spin: Duration,
    },
    /// Spin for `spin`, then block on the waiter's eventfd
    /// ([`Waiter::with_eventfd`]; the peer writes to it when it finds this
    /// side sleeping), so an epoll/mio loop can wait on many rings. The peer
    /// must be given the same eventfd (`Producer::set_peer_eventfd` /
    /// `Consumer::set_peer_eventfd`).
    ///
    /// A [`Waiter`] with this strategy but no eventfd falls back to sleeping
    /// on the shared futex word, exactly as [`SpinPark`](Self::SpinPark)
    /// (the waker serves both, see [`SLEEP_FUTEX`]), so it still never
    /// misses a wake-up.
    EventFd {
        /// Busy-spin window before blocking.
        spin: Duration,
    },
}

impl WaitStrategy {
    /// [`WaitStrategy::SpinPark`] with [`DEFAULT_SPIN`].
    pub fn spin_park() -> Self {
        Self::SpinPark { spin: DEFAULT_SPIN }
    }

    /// [`WaitStrategy::SpinYield`] with [`DEFAULT_SPIN`].
    pub fn spin_yield() -> Self {
        Self::SpinYield { spin: DEFAULT_SPIN }
    }

    /// [`WaitStrategy::EventFd`] with [`DEFAULT_SPIN`].
    pub fn eventfd() -> Self {
        Self::EventFd { spin: DEFAULT_SPIN }
    }

    /// The busy-spin window before yielding or sleeping
    /// ([`Duration::MAX`] for [`Spin`](Self::Spin)).
    pub fn spin(self) -> Duration {
        match self {
            WaitStrategy::Spin => Duration::MAX,
            WaitStrategy::SpinYield { spin }
            | WaitStrategy::SpinPark { spin }
            | WaitStrategy::EventFd { spin } => spin,
        }
    }
}

/// Polls the blocking ring calls make inline, in the caller's own loop,
/// before they enter [`Waiter`]'s general wait loop (only for strategies
/// that spin). A peer that answers within a few hundred nanoseconds is then
/// seen by a tight loop of `pause` and the ring's own poll, with no clock
/// read and no call through the wait loop's closure; measured in
/// `docs/ring.md`, "Hot path". None under loom: the polls are the same
/// `try_next`/`try_reserve` the wait loop makes, and the model explores
/// them there.
#[cfg(not(shmwire_loom))]
pub(crate) const INLINE_SPINS: u32 = 32;
/// See the non-loom definition.
#[cfg(shmwire_loom)]
pub(crate) const INLINE_SPINS: u32 = 0;

/// Tells a waiting side whether its peer is still alive.
///
/// Called at least every [`Waiter::check_interval`] while waiting; it should
/// be cheap (a `waitpid(WNOHANG)`, a pidfd poll, a non-blocking `flock`
/// probe, a socket `POLLHUP` check, …).
pub trait PeerLiveness: Send + Sync {
    /// `false` once the peer is known to be dead.
    fn is_alive(&self) -> bool;
}

impl<F: Fn() -> bool + Send + Sync> PeerLiveness for F {
    fn is_alive(&self) -> bool {
        self()
    }
}

/// A wait strategy plus what it needs: the eventfd to block on (for
/// [`WaitStrategy::EventFd`]), the liveness check and the check interval.
/// Used by the blocking ring calls (`Producer::reserve_blocking`,
/// `Consumer::peek_blocking`).
///
/// ```
/// use shmwire::wake::{EventFd, WaitStrategy, Waiter};
///
/// let fd = EventFd::new()?; // give a clone to the peer (`set_peer_eventfd`)
/// let waiter = Waiter::new(WaitStrategy::eventfd())
///     .with_eventfd(fd.clone())
///     .with_liveness(|| true);
/// assert_eq!(waiter.strategy(), WaitStrategy::eventfd());
/// assert!(waiter.eventfd().is_some());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Waiter {
    strategy: WaitStrategy,
    eventfd: Option<EventFd>,
    liveness: Option<Box<dyn PeerLiveness>>,
    check_interval: Duration,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("strategy", &self.strategy)
            .field("eventfd", &self.eventfd.is_some())
            .field("liveness", &self.liveness.is_some())
            .field("check_interval", &self.check_interval)
            .finish()
    }
}

impl Waiter {
    /// A waiter with `strategy`, no eventfd, no liveness check and
    /// [`DEFAULT_CHECK_INTERVAL`].
    pub fn new(strategy: WaitStrategy) -> Self {
        Self {
            strategy,
            eventfd: None,
            liveness: None,
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
    }

    /// The eventfd a [`WaitStrategy::EventFd`] waiter blocks on (the peer
    /// must write to the same one). Other strategies keep but ignore it.
    pub fn with_eventfd(mut self, fd: EventFd) -> Self {
        self.eventfd = Some(fd);
        self
    }

    /// Adds a liveness check called at least every check interval.
    pub fn with_liveness(mut self, liveness: impl PeerLiveness + 'static) -> Self {
        self.liveness = Some(Box::new(liveness));
        self
    }

    /// Sets the liveness-check interval (also the longest single sleep).
    /// Clamped to at least 10 µs.
    pub fn with_check_interval(mut self, interval: Duration) -> Self {
        self.check_interval = interval.max(Duration::from_micros(10));
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> WaitStrategy {
        self.strategy
    }

    /// The eventfd given with [`with_eventfd`](Self::with_eventfd), if any.
    pub fn eventfd(&self) -> Option<&EventFd> {
        self.eventfd.as_ref()
    }

    /// Whether the strategy spins at all before yielding or sleeping (a
    /// zero spin window goes straight to sleep).
    #[inline]
    pub(crate) fn spins(&self) -> bool {
        !self.strategy.spin().is_zero()
    }

    /// The liveness-check interval.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    fn peer_alive(&self) -> bool {
        self.liveness.as_ref().is_none_or(|l| l.is_alive())
    }

    /// Waits until `poll` yields a value, an error, the deadline passes
    /// ([`WaitError::TimedOut`]) or the peer is found dead
    /// ([`WaitError::PeerDied`]); the two reasons are converted into the
    /// caller's error type `E`.
    ///
    /// `my_slot` is the waiting side's own wake slot (in shared memory; the
    /// waker calls `wake_peer` on it after each publish). The caller has
    /// already polled once and found nothing. `poll` must re-load what the
    /// peer publishes (for a ring: its index, not only a cached copy) when it
    /// finds nothing, so the re-check after announcing sleep is fresh. Before
    /// reporting `PeerDied` or `TimedOut`, `poll` is called once more, so
    /// everything the peer published before dying is still delivered.
    pub(crate) fn wait_for<T, E: From<WaitError>>(
        &self,
        my_slot: &WakeSlot,
        deadline: Deadline,
        mut poll: impl FnMut() -> Result<Option<T>, E>,
    ) -> Result<T, E> {
        let spin = self.strategy.spin();
        let mut next_check: Option<Instant> = None;
        // Resolved at the first clock read (a relative deadline counts from
        // there: a few polls after the call began).
        let mut resolved: Option<Instant> = None;

        // Phase 1: spin. The clock is read only every 32 polls (and not at
        // all if the peer answers within the first 32), so a quick answer
        // costs nothing but the polls.
        if spin > Duration::ZERO {
            let mut spin_end: Option<Instant> = None;
            let mut i: u32 = 0;
            loop {
                spin_loop();
                if let Some(v) = poll()? {
                    return Ok(v);
                }
                i = i.wrapping_add(1);
                if i % 32 == 0 {
                    let now = Instant::now();
                    let deadline = *resolved.get_or_insert_with(|| deadline.at(now));
                    let end = *spin_end.get_or_insert_with(|| {
                        now.checked_add(spin).unwrap_or(deadline).min(deadline)
                    });
                    let check =
                        next_check.get_or_insert(crate::deadline_after(now, self.check_interval));
                    if let Some(v) = self.periodic(now, check, &mut poll) {
                        return v;
                    }
                    if let Some(v) = self.final_if_expired(now, deadline, &mut poll) {
                        return v;
                    }
                    if now >= end {
                        break;
                    }
                }
            }
        }
        let mut next_check = next_check
            .unwrap_or_else(|| crate::deadline_after(Instant::now(), self.check_interval));

        // Phase 2: yield or sleep.
        loop {
            let now = Instant::now();
            let deadline = *resolved.get_or_insert_with(|| deadline.at(now));
            if let Some(v) = self.periodic(now, &mut next_check, &mut poll) {
                return v;
            }
            if let Some(v) = self.final_if_expired(now, deadline, &mut poll) {
                return v;
            }
            let slice = (deadline - now).min(self.check_interval);
            match (self.strategy, &self.eventfd) {
                (WaitStrategy::Spin | WaitStrategy::SpinYield { .. }, _) => {
                    crate::sync::thread::yield_now();
                    if let Some(v) = poll()? {
                        return Ok(v);
                    }
                }
                (WaitStrategy::EventFd { .. }, Some(fd)) => {
                    if let Some(v) = sleep_once(my_slot, SLEEP_EVENTFD, fd, slice, &mut poll)? {
                        return Ok(v);
                    }
                }
                // An EventFd waiter without an eventfd parks on the futex
                // word (documented fallback; the waker serves both bits).
                (WaitStrategy::SpinPark { .. } | WaitStrategy::EventFd { .. }, _) => {
                    if let Some(v) = sleep_once(my_slot, SLEEP_FUTEX, &Futex, slice, &mut poll)? {
                        return Ok(v);
                    }
                }
            }
        }
    }

    /// Runs the liveness check when due; a dead peer becomes `PeerDied`
    /// unless one last poll finds something (which is then returned).
    fn periodic<T, E: From<WaitError>>(
        &self,
        now: Instant,
        next_check: &mut Instant,
        poll: &mut impl FnMut() -> Result<Option<T>, E>,
    ) -> Option<Result<T, E>> {
        if now < *next_check {
            return None;
        }
        *next_check = crate::deadline_after(now, self.check_interval);
        if self.peer_alive() {
            return None;
        }
        Some(match poll() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(WaitError::PeerDied.into()),
            Err(e) => Err(e),
        })
    }

    fn final_if_expired<T, E: From<WaitError>>(
        &self,
        now: Instant,
        deadline: Instant,
        poll: &mut impl FnMut() -> Result<Option<T>, E>,
    ) -> Option<Result<T, E>> {
        if now < deadline {
            return None;
        }
        Some(match poll() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(WaitError::TimedOut.into()),
            Err(e) => Err(e),
        })
    }
}

/// One sleep of the handshake: announce, fence, re-check, sleep, un-announce.
fn sleep_once<T, E>(
    slot: &WakeSlot,
    bit: u32,
    parker: &impl Park,
    timeout: Duration,
    poll: &mut impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    // Read the futex word before announcing: a wake that bumps it after this
    // load makes FUTEX_WAIT return at once. Pairs with the Release
    // fetch_add in `wake_peer`.
    let seq = slot.futex.load(Ordering::Acquire);
    slot.sleeping.store(bit, Ordering::Relaxed);
    // Dekker fence: pairs with the SeqCst fence in `wake_peer` (after the
    // waker's publish of head/tail). Either our re-check below sees the
    // peer's new index, or the peer's load of `sleeping` sees our flag.
    fence(Ordering::SeqCst);
    let r = poll();
    match r {
        Ok(None) => {}
        other => {
            slot.sleeping.store(0, Ordering::Relaxed);
            return other;
        }
    }
    parker.park(&slot.futex, seq, timeout);
    slot.sleeping.store(0, Ordering::Relaxed);
    poll()
}

/// Event-loop half of the handshake: announce that the side owning `slot`
/// is about to block elsewhere (an epoll loop on its eventfd); the caller
/// must re-check (e.g. the ring) after this returns and call [`retract`]
/// when it stops waiting.
pub(crate) fn announce(slot: &WakeSlot, bit: u32) {
    slot.sleeping.store(bit, Ordering::Relaxed);
    // Dekker fence: pairs with the SeqCst fence in `wake_peer`, as in
    // `sleep_once`.
    fence(Ordering::SeqCst);
}

/// Withdraws an [`announce`].
pub(crate) fn retract(slot: &WakeSlot) {
    slot.sleeping.store(0, Ordering::Relaxed);
}

/// The waker's half of the handshake, called right after a `Release` store
/// that publishes (for a ring: the waker's index): SeqCst fence, then wake
/// the peer only if its `sleeping` flag is set. `peer_eventfd` is used if
/// the peer sleeps on an eventfd.
#[inline(always)]
pub(crate) fn wake_peer(peer_slot: &WakeSlot, peer_eventfd: Option<&EventFd>) {
    // Dekker fence: pairs with the SeqCst fence in `sleep_once` (the
    // sleeper's announcement). Orders our preceding index store before the
    // load of the flag below.
    fence(Ordering::SeqCst);
    if peer_slot.sleeping.load(Ordering::Relaxed) != 0 {
        wake_slow(peer_slot, peer_eventfd);
    }
}

#[cold]
#[inline(never)]
fn wake_slow(peer_slot: &WakeSlot, peer_eventfd: Option<&EventFd>) {
    // Take the flag so that a burst of publishes wakes the sleeper once.
    let bits = peer_slot.sleeping.swap(0, Ordering::AcqRel);
    if bits & SLEEP_FUTEX != 0 {
        // Pairs with the Acquire load of the futex word in `sleep_once`: a
        // sleeper that read the old value is either already in FUTEX_WAIT
        // (woken below) or will see the new value and not sleep.
        peer_slot.futex.fetch_add(1, Ordering::Release);
        Futex.unpark(&peer_slot.futex);
    }
    if bits & SLEEP_EVENTFD != 0 {
        if let Some(fd) = peer_eventfd {
            fd.unpark(&peer_slot.futex);
        } else {
            tracing::warn!("peer sleeps on an eventfd but none was configured to wake it");
        }
    }
}
