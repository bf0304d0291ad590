//! How a waiting side of a ring waits, and how the other side wakes it.
//!
//! A side that finds the ring empty (consumer) or full (producer) waits with
//! the [`WaitStrategy`] its caller chose:
//!
//! | strategy | waits by | woken by |
//! | --- | --- | --- |
//! | [`WaitStrategy::Spin`] | busy-spinning until the deadline | nothing (it polls) |
//! | [`WaitStrategy::SpinYield`] | spinning, then `sched_yield` in a loop | nothing (it polls) |
//! | [`WaitStrategy::SpinPark`] | spinning, then `FUTEX_WAIT` on a *shared* futex word in the ring header | `FUTEX_WAKE` by the peer |
//! | [`WaitStrategy::EventFd`] | spinning, then `poll` on an eventfd | an eventfd write by the peer |
//!
//! ## The handshake (no lost wake-up, no syscall on the fast path)
//!
//! Each side owns a [`WakeSlot`] in the ring header
//! (its own cache line): a `sleeping` flag and a futex word. The sleeper:
//!
//! 1. reads the futex word (`seq`);
//! 2. stores its `sleeping` flag;
//! 3. `fence(SeqCst)`;
//! 4. re-checks the ring (fresh load of the peer's index) and returns if it
//!    can proceed;
//! 5. `FUTEX_WAIT(word, seq, timeout)` (or polls its eventfd).
//!
//! The waker publishes its index (`Release` store), `fence(SeqCst)`, then
//! loads the peer's `sleeping` flag: only if it is set does it swap it to 0,
//! bump the futex word and call `FUTEX_WAKE` (or write the eventfd). The two
//! SeqCst fences make this a Dekker pair: either the sleeper's re-check sees
//! the new index, or the waker sees the flag. While the peer is awake the
//! waker's cost is one fence and one load of a line that is not being
//! written: no syscall. The loom models in `loom-tests/tests/wake.rs` check
//! both directions.
//!
//! The OS-facing part is one small internal trait, `Park` (block on a
//! token / signal the sleeper), implemented by the shared futex word and by
//! [`EventFd`]; under `cfg(shmwire_loom)` both are modelled with a `Mutex` +
//! `Condvar` (the futex with its "compare then sleep atomically with respect
//! to wakers" semantics, the eventfd as a counter), so loom runs the very
//! handshake code that ships.
//!
//! Every blocking wait is bounded by a deadline and calls the caller's
//! [`PeerLiveness`] check every [`Waiter::check_interval`] (sleeps are sliced
//! to that interval), so a dead peer yields
//! [`RingError::PeerDied`], not a hang.
//!
//! The spin window matters on virtual machines: a wake-up across vCPUs costs
//! tens of microseconds there, so [`DEFAULT_SPIN`] is 80 µs — a peer that
//! answers within that window is never put to sleep.

mod eventfd;
mod park;

use std::time::{Duration, Instant};

pub use eventfd::EventFd;
use park::{Futex, Park};

use crate::ring::layout::{WakeSlot, SLEEP_EVENTFD, SLEEP_FUTEX};
use crate::ring::RingError;
use crate::sync::{fence, spin_loop, Ordering};

/// When a blocking ring call gives up with [`RingError::TimedOut`].
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

/// How a side waits for the ring to become non-empty (consumer) or to have
/// room (producer).
#[derive(Debug, Clone)]
pub enum WaitStrategy {
    /// Busy-spin until the condition holds or the deadline passes. Lowest
    /// latency; burns a core.
    Spin,
    /// Spin for `spin`, then alternate a poll and `sched_yield`.
    SpinYield {
        /// Busy-spin window before yielding.
        spin: Duration,
    },
    /// Spin for `spin`, then sleep on the shared futex word in the ring
    /// header (`FUTEX_WAIT` without the private flag, always with a timeout).
    SpinPark {
        /// Busy-spin window before sleeping.
        spin: Duration,
    },
    /// Spin for `spin`, then block on `fd` (an eventfd the peer writes to
    /// when it finds this side sleeping), so an epoll/mio loop can wait on
    /// many rings. The peer must be given the same eventfd
    /// (`Producer::set_peer_eventfd` / `Consumer::set_peer_eventfd`).
    EventFd {
        /// Busy-spin window before blocking.
        spin: Duration,
        /// The eventfd to block on.
        fd: EventFd,
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
    pub fn eventfd(fd: EventFd) -> Self {
        Self::EventFd {
            spin: DEFAULT_SPIN,
            fd,
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

/// A wait strategy plus the liveness check and check interval used by the
/// blocking ring calls (`Producer::reserve_blocking`,
/// `Consumer::peek_blocking`).
pub struct Waiter {
    strategy: WaitStrategy,
    liveness: Option<Box<dyn PeerLiveness>>,
    check_interval: Duration,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("strategy", &self.strategy)
            .field("liveness", &self.liveness.is_some())
            .field("check_interval", &self.check_interval)
            .finish()
    }
}

impl Waiter {
    /// A waiter with `strategy`, no liveness check and
    /// [`DEFAULT_CHECK_INTERVAL`].
    pub fn new(strategy: WaitStrategy) -> Self {
        Self {
            strategy,
            liveness: None,
            check_interval: DEFAULT_CHECK_INTERVAL,
        }
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
    pub fn strategy(&self) -> &WaitStrategy {
        &self.strategy
    }

    /// Whether the strategy spins at all before yielding or sleeping (a
    /// zero spin window goes straight to sleep).
    #[inline]
    pub(crate) fn spins(&self) -> bool {
        match &self.strategy {
            WaitStrategy::Spin => true,
            WaitStrategy::SpinYield { spin }
            | WaitStrategy::SpinPark { spin }
            | WaitStrategy::EventFd { spin, .. } => !spin.is_zero(),
        }
    }

    /// The liveness-check interval.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    fn peer_alive(&self) -> bool {
        self.liveness.as_ref().is_none_or(|l| l.is_alive())
    }

    /// Waits until `poll` yields a value, an error, the deadline passes
    /// (`TimedOut`) or the peer is found dead (`PeerDied`).
    ///
    /// `my_slot` is the waiting side's own wake slot in the ring header.
    /// The caller has already polled once and found nothing. `poll` must
    /// re-load the peer's index (not only a cached copy) when it finds
    /// nothing, so the re-check after announcing sleep is fresh. Before
    /// reporting `PeerDied` or `TimedOut`, `poll` is called once more, so
    /// everything the peer published before dying is still delivered.
    pub(crate) fn wait_for<T>(
        &self,
        my_slot: &WakeSlot,
        deadline: Deadline,
        mut poll: impl FnMut() -> Result<Option<T>, RingError>,
    ) -> Result<T, RingError> {
        let spin = match &self.strategy {
            WaitStrategy::Spin => Duration::MAX,
            WaitStrategy::SpinYield { spin }
            | WaitStrategy::SpinPark { spin }
            | WaitStrategy::EventFd { spin, .. } => *spin,
        };
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
                    let check = next_check.get_or_insert(now + self.check_interval);
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
        let mut next_check = next_check.unwrap_or_else(|| Instant::now() + self.check_interval);

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
            match &self.strategy {
                WaitStrategy::Spin | WaitStrategy::SpinYield { .. } => {
                    crate::sync::thread::yield_now();
                    if let Some(v) = poll()? {
                        return Ok(v);
                    }
                }
                WaitStrategy::SpinPark { .. } => {
                    if let Some(v) = sleep_once(my_slot, SLEEP_FUTEX, &Futex, slice, &mut poll)? {
                        return Ok(v);
                    }
                }
                WaitStrategy::EventFd { fd, .. } => {
                    if let Some(v) = sleep_once(my_slot, SLEEP_EVENTFD, fd, slice, &mut poll)? {
                        return Ok(v);
                    }
                }
            }
        }
    }

    /// Runs the liveness check when due; a dead peer becomes `PeerDied`
    /// unless one last poll finds something (which is then returned).
    fn periodic<T>(
        &self,
        now: Instant,
        next_check: &mut Instant,
        poll: &mut impl FnMut() -> Result<Option<T>, RingError>,
    ) -> Option<Result<T, RingError>> {
        if now < *next_check {
            return None;
        }
        *next_check = now + self.check_interval;
        if self.peer_alive() {
            return None;
        }
        Some(match poll() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(RingError::PeerDied),
            Err(e) => Err(e),
        })
    }

    fn final_if_expired<T>(
        &self,
        now: Instant,
        deadline: Instant,
        poll: &mut impl FnMut() -> Result<Option<T>, RingError>,
    ) -> Option<Result<T, RingError>> {
        if now < deadline {
            return None;
        }
        Some(match poll() {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(RingError::TimedOut),
            Err(e) => Err(e),
        })
    }
}

/// One sleep of the handshake: announce, fence, re-check, sleep, un-announce.
fn sleep_once<T>(
    slot: &WakeSlot,
    bit: u32,
    parker: &impl Park,
    timeout: Duration,
    poll: &mut impl FnMut() -> Result<Option<T>, RingError>,
) -> Result<Option<T>, RingError> {
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
/// must re-check the ring after this returns and call [`retract`] when it
/// stops waiting.
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
/// of the waker's index: SeqCst fence, then wake the peer only if its
/// `sleeping` flag is set. `peer_eventfd` is used if the peer sleeps on an
/// eventfd.
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
            tracing::warn!("ring peer sleeps on an eventfd but none was configured to wake it");
        }
    }
}
