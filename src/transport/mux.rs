//! One event loop for many peers.
//!
//! A worker that receives from many callers adds their connections to a
//! [`Mux`] and waits on a single mio `Poll`: TCP sockets, the Unix sockets of
//! shared-memory connections (hang-up = peer death) and the eventfds of their
//! inbound rings all wake the same `wait`. Nothing spins while idle unless the
//! application asks for it with [`Mux::set_spin`], which trades a core for the
//! lowest latency by polling every connection in a loop.
//!
//! mio is edge-triggered: after [`Mux::wait`] reports a peer, the caller must
//! receive from it until [`Connection::try_recv`] returns `Ok(None)` (or an
//! error). A peer reported but not drained is reported again only if it still
//! has a complete frame buffered.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token};

use super::{ConnectError, Connection};

/// A connection the [`Mux`] can wait on.
pub trait MuxConnection: Connection {
    /// Registers every descriptor whose readiness may mean "a frame or an
    /// error is waiting" under `token`.
    fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()>;
    /// Undoes [`MuxConnection::register`].
    fn deregister(&mut self, registry: &Registry) -> std::io::Result<()>;
    /// `true` if a frame is known to be waiting without a system call.
    fn ready_hint(&self) -> bool;
    /// `true` when its frames arrive through the kernel's network stack
    /// (TCP), whose processing may run in `ksoftirqd`, an ordinary task
    /// that a mux spinning on the same CPU would starve until its time
    /// slice ends (4–8 ms stalls per round trip, measured); a spinning mux
    /// with such a peer yields the CPU every 64 rounds.
    fn kernel_delivered(&self) -> bool {
        false
    }
    /// Called before the mux sleeps: arms the wake-up (e.g. announces the
    /// sleeping consumer to the ring's producer). Returns `false` if a frame
    /// arrived meanwhile, so the mux must not sleep.
    fn prepare_sleep(&mut self) -> bool {
        !self.ready_hint()
    }
    /// Called when the mux saw an event for this connection (drain wake-up
    /// descriptors, schedule a liveness check).
    fn note_event(&mut self) {}
    /// Hands queued output to the peer as far as it takes it now, without
    /// waiting; `true` while output is still queued (the mux then watches
    /// for the peer making room).
    fn flush_pending(&mut self) -> bool {
        false
    }
    /// Turns the registration's interest in "writable" on or off (only
    /// where writability is a descriptor event, i.e. TCP).
    fn set_write_interest(
        &mut self,
        _registry: &Registry,
        _token: Token,
        _on: bool,
    ) -> std::io::Result<()> {
        Ok(())
    }
    /// Told before each [`MuxConnection::tick`] whether the mux holds the
    /// connection ([`Mux::hold`], [`Mux::pause`]): its owner then takes
    /// none of its frames, so frames waiting in its buffer say nothing of
    /// the owner's lag, and the peer is judged by what it sends behind
    /// them (TCP: `TcpConnection::tick`).
    fn note_held(&mut self, _held: bool) {}
    /// Periodic work (liveness heartbeats); returns when it is next due.
    /// A connection found dead by it reports so from its next receive.
    fn tick(&mut self, _now: Instant) -> Option<Instant> {
        None
    }
    /// `true` once the connection is known to have ended (peer death, a
    /// violation, a close) without a system call: a [held](Mux::hold)
    /// connection is reported ready for that alone. A TCP peer's hang-up
    /// is seen by reading, so a held TCP connection learns of it when its
    /// queued output fails or its liveness tick gives up.
    fn has_ended(&self) -> bool {
        false
    }
}

/// Identifies a connection inside a [`Mux`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub usize);

/// What [`Mux::wait`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxEvent {
    /// The connection may have frames (or an error, such as the peer's death)
    /// to receive — or, with [`Mux::set_report_drained`], the output queued
    /// on it behind a full peer was all handed over, so its owner may send
    /// more (receiving then finds nothing, which is harmless).
    Ready(PeerKey),
    /// Callers are waiting on the mux's [`Listener`](super::Listener): call
    /// [`Mux::accept_pending`].
    Incoming,
}

/// Many connections, one wait: a mio `Poll` over their sockets and eventfds,
/// or a spin loop (see [`Mux::set_spin`]).
pub struct Mux<C: MuxConnection> {
    poll: Poll,
    events: Events,
    peers: Vec<Option<C>>,
    /// Per slot: write interest registered (output queued behind a full
    /// peer).
    writing: Vec<bool>,
    /// Per slot: an event came (or its tick ran) since its queued output
    /// was last handed over: the peer may have made room. A connection
    /// `writing` without it is not tried again (its wake-up is armed), so
    /// many peers that read nothing cost a wait nothing each.
    room: Vec<bool>,
    /// Per slot: the connection's next `tick`.
    due: Vec<Option<Instant>>,
    /// The ticks in time order (`(due, slot)`; an entry whose time is no
    /// longer its slot's `due` is stale and skipped), so a wait runs the
    /// due ones without looking at the rest.
    ticks: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The connections a wait looks at; the others are idle (see
    /// [`Mux::cool`]).
    active: Active,
    /// When the next cooling pass is due.
    cool_at: Option<Instant>,
    /// `epoll` was asked in this wait.
    polled: bool,
    /// When a wait that finds work without asking `epoll` must ask it
    /// anyway ([`POLL_EVERY`]).
    poll_due: Option<Instant>,
    /// How many connections it holds.
    count: usize,
    /// How many of them are [kernel-delivered](MuxConnection::kernel_delivered).
    kernel_fed: usize,
    /// Per slot: its receive side is held ([`Mux::hold`], [`Mux::pause`]).
    held: Vec<bool>,
    /// Per slot: held until [`Mux::resume`] ([`Mux::pause`]), whatever its
    /// output.
    paused: Vec<bool>,
    /// Some slot is held (the spin loops look at `held` only then).
    any_held: bool,
    /// Reported last time; reported again while a frame is still buffered.
    hot: Vec<PeerKey>,
    spin: bool,
    /// [`Mux::set_report_drained`].
    report_drained: bool,
    /// Without `spin`: how long to spin over the connections before arming
    /// the wake-ups and sleeping in `epoll`.
    spin_window: Duration,
    /// Accepting in the same loop (only on a `Mux<AnyConnection>`); shared
    /// with a helper that accepts while this thread is away
    /// ([`Mux::shared_listener`]), which is why it sits behind a lock.
    listener: Option<SharedListener>,
    /// The listener's earliest hello deadline, as of its last accept pass
    /// here ([`Mux::refresh_hello_deadline`] after a helper's): each wait
    /// reads it without the lock.
    hello_due: Option<Instant>,
    /// Set by [`Mux::waker`]: other threads end a wait through it.
    woken: Option<std::sync::Arc<WakerShared>>,
}

/// What a [`MuxWaker`] shares with its [`Mux`].
struct WakerShared {
    /// A wake-up not yet seen by [`Mux::wait`].
    pending: std::sync::atomic::AtomicBool,
    /// The eventfd behind it (mio's `Waker`), for a mux asleep in `epoll`.
    waker: mio::Waker,
}

/// Ends a [`Mux::wait`] from another thread (e.g. a worker's pool thread
/// that finished a task). Cheap when called often: only the first wake-up
/// after the mux last looked writes the eventfd.
#[derive(Clone)]
pub struct MuxWaker {
    shared: std::sync::Arc<WakerShared>,
}

impl std::fmt::Debug for MuxWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuxWaker").finish_non_exhaustive()
    }
}

impl MuxWaker {
    /// Makes the mux's current or next [`Mux::wait`] return (with whatever
    /// it found, possibly nothing).
    pub fn wake(&self) {
        // SeqCst pairs with the swap in Mux::take_wake: a wait that saw
        // `false` before sleeping is woken by the eventfd written here.
        if !self
            .shared
            .pending
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            if let Err(e) = self.shared.waker.wake() {
                tracing::warn!(error = %e, "waking the event loop failed");
            }
        }
    }
}

impl<C: MuxConnection> std::fmt::Debug for Mux<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("peers", &self.len())
            .field("spin", &self.spin)
            .finish()
    }
}

impl<C: MuxConnection> Mux<C> {
    /// An empty mux.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            poll: Poll::new()?,
            listener: None,
            hello_due: None,
            events: Events::with_capacity(256),
            peers: Vec::new(),
            writing: Vec::new(),
            room: Vec::new(),
            due: Vec::new(),
            ticks: BinaryHeap::new(),
            active: Active::default(),
            cool_at: None,
            polled: false,
            poll_due: None,
            count: 0,
            kernel_fed: 0,
            held: Vec::new(),
            paused: Vec::new(),
            any_held: false,
            hot: Vec::new(),
            spin: false,
            report_drained: false,
            spin_window: Duration::ZERO,
            woken: None,
        })
    }

    /// A [`MuxWaker`] for this mux (made on the first call: one eventfd
    /// registered in the poll; later calls hand out the same one). A wake-up
    /// ends [`Mux::wait`] early, possibly with nothing ready.
    ///
    /// # Errors
    /// Creating or registering the eventfd failed.
    pub fn waker(&mut self) -> std::io::Result<MuxWaker> {
        if let Some(shared) = &self.woken {
            return Ok(MuxWaker {
                shared: std::sync::Arc::clone(shared),
            });
        }
        let shared = std::sync::Arc::new(WakerShared {
            pending: std::sync::atomic::AtomicBool::new(false),
            waker: mio::Waker::new(self.poll.registry(), WAKER_TOKEN)?,
        });
        self.woken = Some(std::sync::Arc::clone(&shared));
        Ok(MuxWaker { shared })
    }

    /// Takes a pending wake-up (and clears it).
    fn take_wake(&self) -> bool {
        self.woken.as_ref().is_some_and(|w| {
            // Pairs with the SeqCst swap in MuxWaker::wake.
            w.pending.load(std::sync::atomic::Ordering::Relaxed)
                && w.pending.swap(false, std::sync::atomic::Ordering::SeqCst)
        })
    }

    /// `true` if a wake-up is pending (left set for `take_wake`).
    fn wake_pending(&self) -> bool {
        self.woken
            .as_ref()
            .is_some_and(|w| w.pending.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Spin over the connections instead of sleeping in `epoll` (lowest
    /// latency, one core busy while waiting). With a TCP peer among them
    /// ([`MuxConnection::kernel_delivered`]) the spin yields the CPU
    /// (`sched_yield`) every 64 rounds, so the kernel's network processing
    /// is not starved on a busy machine.
    pub fn set_spin(&mut self, spin: bool) {
        self.spin = spin;
    }

    /// Also report a connection [`MuxEvent::Ready`] once all the output
    /// queued on it behind a full peer has been handed over (as mio
    /// reports a socket writable to an owner that registered that
    /// interest): for an owner with more to send once there is room, such
    /// as a store feeding a subscriber the objects that existed before it
    /// came. On shared memory nothing else would tell it: the peer's
    /// reading wakes this side only while output is queued. Off by default:
    /// an owner that only queues replies (a worker) or requests (a
    /// pipelining caller) needs no such event and would wake for it in
    /// vain.
    pub fn set_report_drained(&mut self, on: bool) {
        self.report_drained = on;
    }

    /// Without [`Mux::set_spin`]: spin over the connections for `window`
    /// before sleeping in `epoll` (a spin-then-park wait, as the ring's
    /// [`WaitStrategy::SpinPark`](crate::wake::WaitStrategy::SpinPark)
    /// does; a peer that answers within the window is never slept
    /// through). Default zero: sleep at once.
    pub fn set_spin_window(&mut self, window: Duration) {
        self.spin_window = window;
    }

    /// Sets how [`Mux::wait`] waits from a transport wait strategy:
    /// [`WaitStrategy::Spin`](crate::wake::WaitStrategy::Spin) spins
    /// ([`Mux::set_spin`]); the others spin for their window, then sleep
    /// ([`Mux::set_spin_window`]).
    pub fn set_wait(&mut self, wait: crate::wake::WaitStrategy) {
        let window = wait.spin();
        self.spin = window == Duration::MAX;
        self.spin_window = if self.spin { Duration::ZERO } else { window };
    }

    /// Adds a connection.
    pub fn add(&mut self, mut conn: C) -> std::io::Result<PeerKey> {
        let slot = self
            .peers
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.peers.len());
        conn.register(self.poll.registry(), Token(slot))?;
        let due = conn.tick(Instant::now());
        self.kernel_fed += usize::from(conn.kernel_delivered());
        self.count += 1;
        if slot == self.peers.len() {
            self.peers.push(Some(conn));
            self.writing.push(false);
            self.room.push(true);
            self.due.push(due);
            self.held.push(false);
            self.paused.push(false);
            self.active.grow();
        } else {
            self.peers[slot] = Some(conn);
            self.writing[slot] = false;
            self.room[slot] = true;
            self.due[slot] = due;
            self.held[slot] = false;
            self.paused[slot] = false;
        }
        if let Some(d) = due {
            self.ticks.push(Reverse((d, slot)));
        }
        self.active.touch(slot);
        let key = PeerKey(slot);
        // It may already hold frames that arrived before registration.
        self.hot.push(key);
        Ok(key)
    }

    /// Removes a connection and hands it back.
    pub fn remove(&mut self, key: PeerKey) -> Option<C> {
        let mut conn = self.peers.get_mut(key.0)?.take()?;
        let _ = conn.deregister(self.poll.registry());
        conn.note_held(false);
        self.count -= 1;
        self.kernel_fed -= usize::from(conn.kernel_delivered());
        self.hot.retain(|k| *k != key);
        self.held[key.0] = false;
        self.paused[key.0] = false;
        // Its tick entry goes stale (skipped when due).
        self.due[key.0] = None;
        self.active.remove(key.0);
        self.any_held = self.active.list.iter().any(|&i| self.held[i]);
        Some(conn)
    }

    /// The cooling pass, every [`COOL_EVERY`]: an active connection that
    /// was not reported, touched by its owner or woken by an event for a
    /// whole period, and is neither held nor has output queued, is armed
    /// ([`MuxConnection::prepare_sleep`]) and becomes idle — no longer
    /// spun over, handed over to or armed again at every wait. The arm
    /// lasts until its peer publishes (the peer then writes the eventfd:
    /// one system call on its side for its first frame after the quiet
    /// period) and that event makes it active again; its tick still runs
    /// (a backstop for a wake-up a hostile peer withheld). One that
    /// cannot be armed (a frame arrived, it ended) is reported instead.
    ///
    /// So a wait costs O(active connections), not O(connections): 1,000
    /// idle clients of a store had made each of its waits walk and arm
    /// 1,000 rings (another client: ≈ 277,000 → ≈ 23,500 operations a
    /// second, 2026-12-05).
    fn cool(&mut self, now: Instant, ready: &mut Vec<MuxEvent>) {
        self.cool_at = Some(now + COOL_EVERY);
        let a = &mut self.active;
        let last = a.period;
        a.period = a.period.wrapping_add(1);
        let mut j = 0;
        while j < a.list.len() {
            let i = a.list[j];
            let Some(c) = self.peers[i].as_mut() else {
                a.member[i] = false;
                a.list.swap_remove(j);
                continue;
            };
            let busy = a.seen[i] == last
                || self.held[i]
                || self.writing[i]
                || c.pending_send_bytes() > 0
                || self.hot.contains(&PeerKey(i));
            if busy {
                j += 1;
            } else if c.prepare_sleep() {
                a.member[i] = false;
                a.list.swap_remove(j);
            } else {
                push_unique(ready, PeerKey(i));
                j += 1;
            }
        }
    }

    /// Holds back the receive side of `key`: while the connection has
    /// output queued (the peer is slow to read what it was sent), the mux
    /// neither reports it ready nor arms its wake-up for frames, so its
    /// frames wait in its ring or socket and its peer's sends meet a full
    /// ring or socket (flow control, as TCP's window: a worker whose
    /// replies to a caller pile up stops reading that caller's requests).
    /// Its queued output is still handed over while the mux waits; once
    /// all of it is — or handing it over failed — the hold ends and the
    /// connection is reported ready, to be received from until
    /// [`Connection::try_recv`] returns `Ok(None)` (which also re-arms
    /// TCP's edge-triggered readiness). A connection that
    /// [ended](MuxConnection::has_ended) is reported at once. Holding a
    /// connection with nothing queued ends the hold at the next wait.
    pub fn hold(&mut self, key: PeerKey) {
        if self.peers.get(key.0).is_some_and(Option::is_some) {
            self.active.touch(key.0);
            self.held[key.0] = true;
            self.any_held = true;
            self.hot.retain(|k| *k != key);
        }
    }

    /// `true` while [`Mux::hold`] or [`Mux::pause`] holds `key`.
    pub fn is_held(&self, key: PeerKey) -> bool {
        self.held.get(key.0).copied().unwrap_or(false)
    }

    /// Holds back the receive side of `key` as [`Mux::hold`] does, but
    /// until [`Mux::resume`], whatever its output: for a receiver whose
    /// own work on what it read from the peer must shrink first (a
    /// worker's pools busy with a caller's tasks whose replies would not
    /// fit its send queue). Its end is still reported at once.
    pub fn pause(&mut self, key: PeerKey) {
        if let Some(p) = self.paused.get_mut(key.0) {
            *p = true;
            self.hold(key);
        }
    }

    /// Ends [`Mux::pause`] on `key`: it is held as [`Mux::hold`] holds it
    /// until its queued output is handed over (at once when there is none),
    /// then reported ready, to be received from until
    /// [`Connection::try_recv`] returns `Ok(None)` (re-arming TCP's
    /// edge-triggered readiness).
    pub fn resume(&mut self, key: PeerKey) {
        if let Some(p) = self.paused.get_mut(key.0) {
            *p = false;
        }
    }

    /// `true` while [`Mux::pause`] holds `key`.
    pub fn is_paused(&self, key: PeerKey) -> bool {
        self.paused.get(key.0).copied().unwrap_or(false)
    }

    /// Reports every active connection with something to receive: a
    /// frame, or for a held one only its end.
    #[inline(always)]
    fn scan(&self, ready: &mut Vec<MuxEvent>) {
        for &i in &self.active.list {
            if let Some(c) = &self.peers[i] {
                let has = if self.any_held && self.held[i] {
                    c.has_ended()
                } else {
                    c.ready_hint()
                };
                if has {
                    push_unique(ready, PeerKey(i));
                }
            }
        }
    }

    /// The connection under `key` (it counts as active for a while: what
    /// its owner sends through it is handed over by the waits to come).
    pub fn get_mut(&mut self, key: PeerKey) -> Option<&mut C> {
        if self.peers.get(key.0).is_some_and(Option::is_some) {
            self.active.touch(key.0);
        }
        self.peers.get_mut(key.0)?.as_mut()
    }

    /// The connection under `key`, read-only.
    pub fn get(&self, key: PeerKey) -> Option<&C> {
        self.peers.get(key.0)?.as_ref()
    }

    /// The connections, with their keys (each counts as active for a
    /// while, as with [`Mux::get_mut`]; [`Mux::iter`] to only look).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (PeerKey, &mut C)> {
        for i in 0..self.peers.len() {
            if self.peers[i].is_some() {
                self.active.touch(i);
            }
        }
        self.peers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| c.as_mut().map(|c| (PeerKey(i), c)))
    }

    /// The connections, with their keys, read-only.
    pub fn iter(&self) -> impl Iterator<Item = (PeerKey, &C)> {
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (PeerKey(i), c)))
    }

    /// How many connections it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// How many connections its waits look at now: the active ones. A
    /// connection that was neither reported nor touched
    /// ([`Mux::get_mut`], [`Mux::iter_mut`], [`Mux::hold`]) nor woken by an
    /// event for 50–100 ms, and holds no queued output, is *idle*: its
    /// wake-up is armed once and a wait neither spins over it, hands
    /// output over to it nor arms it again, so it costs a wait nothing
    /// until its peer sends (the peer's producer then writes the eventfd,
    /// and the connection is active again) or its tick runs. A
    /// diagnostic: at most [`Mux::len`].
    pub fn active_count(&self) -> usize {
        self.active.list.len()
    }

    /// `true` if it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits at most `timeout` until some connection may have something to
    /// receive; appends their keys to `ready` (which it clears first). An
    /// empty `ready` after return means the timeout passed.
    pub fn wait(&mut self, timeout: Duration, ready: &mut Vec<MuxEvent>) -> std::io::Result<()> {
        ready.clear();
        // One clock read serves the deadline, the hello check and the first
        // `service` round (a clock read costs 20–30 ns on the VMs measured,
        // as much as a quarter of a shm round trip).
        let start = Instant::now();
        let deadline = crate::deadline_after(start, timeout);
        // A pending hello's deadline ends the wait too: the caller's
        // `accept_pending` then expires it.
        let hello_due = self.hello_due;
        if hello_due.is_some_and(|d| d <= start) {
            ready.push(MuxEvent::Incoming);
            // The connections get their turn in this same wait: a pass due
            // at once again and again (a flood of callers, each pass taking
            // its most) would otherwise end every wait here, before epoll
            // is asked, and leave every TCP connection's data unread (the
            // attack on `de6e82d`: calls of 1.6–5.5 s, no `epoll_wait` in
            // 3 s).
            self.scan(ready);
            self.poll_events(Some(Duration::ZERO), ready)?;
        }
        let deadline = hello_due.map_or(deadline, |d| d.min(deadline));
        if self.cool_at.is_none_or(|t| t <= start) {
            self.cool(start, ready);
        }
        // Peers reported last time that still hold a buffered frame (the
        // caller did not drain them) and newly added ones.
        for &key in &self.hot {
            if !self.is_held(key)
                && self
                    .peers
                    .get(key.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.ready_hint())
            {
                push_unique(ready, key);
            }
        }
        self.hot.clear();
        let mut spun = false;
        let mut first_round = Some(start);
        loop {
            // Queued output goes out while we wait (whatever its size), and
            // periodic work (heartbeats, liveness) runs on time.
            let now = first_round.take().unwrap_or_else(Instant::now);
            let next_due = self.service(now, ready);
            if !ready.is_empty() || self.take_wake() {
                break;
            }
            // Wake for the next tick too, then go round again.
            let until = next_due.map_or(deadline, |d| d.min(deadline));
            if self.spin {
                // Spin over the connections' own state (ring indices, buffered
                // frames): no system call. Every 64 rounds, and on the way out,
                // also ask epoll (TCP data, hang-ups) without blocking.
                let mut round: u32 = 0;
                let kernel_fed = self.kernel_fed > 0;
                loop {
                    self.scan(ready);
                    round = round.wrapping_add(1);
                    let expired = round % 64 == 0 && Instant::now() >= until;
                    // Not on every hit: a frame found in a ring needs no
                    // system call (hang-ups and TCP data are seen within
                    // 64 rounds).
                    // A wake-up from another thread is looked at as
                    // rarely (the check costs nothing on a mux without one).
                    if round % 64 == 0 || expired {
                        // A peer making room for queued output: back to
                        // `service`, which hands it over.
                        if self.poll_events(Some(Duration::ZERO), ready)? || self.wake_pending() {
                            break;
                        }
                    }
                    if !ready.is_empty() || expired {
                        break;
                    }
                    if kernel_fed && round % 64 == 0 {
                        crate::sync::thread::yield_now();
                    }
                    crate::sync::spin_loop();
                }
                if ready.is_empty() && Instant::now() < deadline {
                    continue;
                }
                break;
            }
            // Spin-then-park: spin over the connections for the window
            // (once per wait) before sleeping.
            if !spun && !self.spin_window.is_zero() {
                spun = true;
                let spin_until = crate::deadline_after(Instant::now(), self.spin_window);
                let spin_until = spin_until.min(until);
                let mut round: u32 = 0;
                let mut room = false;
                loop {
                    self.scan(ready);
                    round = round.wrapping_add(1);
                    // As in spin mode: TCP data and hang-ups are seen by
                    // epoll only, asked without blocking every 64 rounds.
                    if ready.is_empty() && round % 64 == 0 {
                        room = self.poll_events(Some(Duration::ZERO), ready)?;
                        if room || self.wake_pending() {
                            break;
                        }
                    }
                    if !ready.is_empty() || (round % 64 == 0 && Instant::now() >= spin_until) {
                        break;
                    }
                    crate::sync::spin_loop();
                }
                if !ready.is_empty() || self.take_wake() {
                    break;
                }
                if room {
                    // Hand over what the peer made room for, then wait on.
                    continue;
                }
            }
            // Arm every active connection's wake-up (the idle ones are
            // armed already: `cool`), then re-check: a frame that arrived
            // in between must not be slept through.
            for &i in &self.active.list {
                if let Some(c) = &mut self.peers[i] {
                    // A held connection's frames do not wake us (its end
                    // still does: hang-ups and ticks are not armed here).
                    let held = self.held[i];
                    if (held && c.has_ended()) || (!held && !c.prepare_sleep()) {
                        push_unique(ready, PeerKey(i));
                    }
                }
            }
            if !ready.is_empty() {
                break;
            }
            self.poll_events(Some(until.saturating_duration_since(Instant::now())), ready)?;
            if !ready.is_empty() || Instant::now() >= deadline {
                if hello_due.is_some_and(|d| Instant::now() >= d)
                    && !ready.contains(&MuxEvent::Incoming)
                {
                    ready.push(MuxEvent::Incoming);
                }
                break;
            }
        }
        // Every active connection with a frame is reported, not only the
        // first found: a wait that found work at once (a busy peer's
        // frames, one reported last time) returned before looking at the
        // others, which an owner kept busy by one peer then left unread
        // until their 20 ms tick (the attack on `b1b699d`: a peer sending
        // every 3 ms waited 17 ms a frame beside a busy one).
        self.scan(ready);
        // A wait that found work without asking epoll asks it now and
        // then: what only epoll tells (idle connections' frames, TCP data,
        // hang-ups, callers at the listener) must not wait for the busy
        // peers to pause.
        if !self.polled && self.poll_due.is_none_or(|t| t <= start) {
            self.poll_events(Some(Duration::ZERO), ready)?;
        }
        if std::mem::take(&mut self.polled) {
            self.poll_due = Some(start + POLL_EVERY);
        }
        ready.retain(|e| match e {
            MuxEvent::Ready(k) => self.peers.get(k.0).is_some_and(Option::is_some),
            MuxEvent::Incoming => true,
        });
        for e in ready.iter() {
            if let MuxEvent::Ready(k) = *e {
                self.active.touch(k.0);
            }
        }
        // Reuses the vector: no allocation per wait once warm.
        self.hot.extend(ready.iter().filter_map(|e| match e {
            MuxEvent::Ready(k) => Some(*k),
            MuxEvent::Incoming => None,
        }));
        Ok(())
    }
}

impl<C: MuxConnection> Mux<C> {
    /// Flushes every connection's queued output (watching for room where
    /// some stays queued) and runs due ticks; a connection whose tick found
    /// its peer dead is reported ready. Returns the earliest next tick.
    fn service(&mut self, now: Instant, ready: &mut Vec<MuxEvent>) -> Option<Instant> {
        // Due ticks first (idle connections' too): one that says the peer
        // may have made room is handed over to below.
        while let Some(&Reverse((t, i))) = self.ticks.peek() {
            if t > now {
                break;
            }
            self.ticks.pop();
            if self.due[i] != Some(t) {
                // Stale: removed, or ticked since under a new time.
                continue;
            }
            let Some(c) = self.peers[i].as_mut() else {
                continue;
            };
            c.note_held(self.held[i]);
            let next = c.tick(now);
            self.due[i] = next;
            if let Some(d) = next {
                self.ticks.push(Reverse((d, i)));
            }
            self.room[i] = true;
            if c.pending_send_bytes() > 0 {
                // The tick queued output (a TCP heartbeat behind a full
                // socket; a helper thread's, found now): handed over by
                // the active connections' pass below and the waits to
                // come.
                self.active.touch(i);
            }
            if if self.held[i] {
                c.has_ended()
            } else {
                c.ready_hint()
            } {
                push_unique(ready, PeerKey(i));
            }
        }
        // Only active connections can have output queued or be held (an
        // owner's `get_mut` and a hold make a connection active; `cool`
        // leaves busy ones active).
        for &i in &self.active.list {
            let Some(c) = self.peers[i].as_mut() else {
                continue;
            };
            let queued = c.pending_send_bytes();
            // Armed and no sign of room since: its peer's reading will
            // wake us (an event sets `room`), and the tick retries as a
            // backstop (a connection without ticks is retried at every
            // wait, as before).
            let armed = self.writing[i] && queued > 0 && !self.room[i] && self.due[i].is_some();
            if (queued > 0 || self.writing[i]) && !armed {
                self.room[i] = false;
                let still = c.flush_pending();
                if still != self.writing[i]
                    && c.set_write_interest(self.poll.registry(), Token(i), still)
                        .is_ok()
                {
                    self.writing[i] = still;
                }
                if self.report_drained && queued > 0 && c.pending_send_bytes() == 0 && !self.held[i]
                {
                    // All its queued output was handed over now: its owner
                    // may have more to send (a store's backlog for a
                    // subscriber, a caller's queued requests), and nothing
                    // else would tell it — on shared memory the peer's
                    // reading wakes this side only while output is queued.
                    // Once, on the change: output that cannot be handed
                    // over (a broken connection) stays queued and is not
                    // reported at every wait.
                    push_unique(ready, PeerKey(i));
                }
            }
            if self.held[i] && !self.paused[i] && (c.pending_send_bytes() == 0 || !self.writing[i])
            {
                // Its output was handed over (or cannot be: the receive
                // reports why): the hold ends.
                self.held[i] = false;
                push_unique(ready, PeerKey(i));
            }
        }
        if self.any_held {
            self.any_held = self.active.list.iter().any(|&i| self.held[i]);
        }
        self.ticks.peek().map(|&Reverse((t, _))| t)
    }

    /// One `epoll_wait` (mio `poll`); reports and notes every event.
    /// Returns `true` if an event came for a connection with output queued
    /// (possibly its peer making room: the next [`Mux::service`] hands it
    /// over), reported or not.
    fn poll_events(
        &mut self,
        timeout: Option<Duration>,
        ready: &mut Vec<MuxEvent>,
    ) -> std::io::Result<bool> {
        let mut room = false;
        self.polled = true;
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.token() == WAKER_TOKEN {
                // The wait loop looks at the waker's flag itself.
                continue;
            }
            if ev.token() == LISTENER_TOKEN || ev.token().0 >= HELLO_BASE {
                if !ready.contains(&MuxEvent::Incoming) {
                    ready.push(MuxEvent::Incoming);
                }
                continue;
            }
            let key = PeerKey(ev.token().0);
            if let Some(Some(c)) = self.peers.get_mut(key.0) {
                c.note_event();
                // Its wake-up was disarmed: it is active again.
                self.active.touch(key.0);
                self.room[key.0] = true;
                room |= self.writing[key.0];
                // A held connection's event is its peer making room (the
                // next `service` flushes) or its end.
                if self.held[key.0] && !c.has_ended() {
                    continue;
                }
            }
            push_unique(ready, key);
        }
        Ok(room)
    }
}

/// The connections a [`Mux`]'s waits look at.
#[derive(Default)]
struct Active {
    /// Their slots (in no order).
    list: Vec<usize>,
    /// Per slot: in `list`.
    member: Vec<bool>,
    /// Per slot: the cooling period in which it was last reported, touched
    /// by its owner or had an event.
    seen: Vec<u32>,
    /// The cooling period now (one every [`COOL_EVERY`]).
    period: u32,
}

impl Active {
    /// Room for one more slot.
    fn grow(&mut self) {
        self.member.push(false);
        self.seen.push(self.period);
    }

    /// Marks `slot` as seen in this cooling period and makes it active.
    #[inline]
    fn touch(&mut self, slot: usize) {
        self.seen[slot] = self.period;
        if !self.member[slot] {
            self.member[slot] = true;
            self.list.push(slot);
        }
    }

    /// Takes `slot` out (its connection was removed).
    fn remove(&mut self, slot: usize) {
        if std::mem::take(&mut self.member[slot]) {
            self.list.retain(|&i| i != slot);
        }
    }
}

/// How long a connection stays active without being reported, touched by
/// its owner or woken by an event, at least (at most twice it): then it is
/// armed and idle ([`Mux::cool`]). Long against a call's gap, short against
/// how long 1,000 quiet clients would otherwise cost every wait.
const COOL_EVERY: Duration = Duration::from_millis(50);

/// How long waits that each find work at once (a busy peer's frames in
/// its ring) may go without asking `epoll`, at most: then one asks it
/// without blocking. Before, a peer whose frames only `epoll` reports (a
/// TCP peer, and now an idle one) waited for as long as the busy ones kept
/// the mux finding work. One non-blocking `epoll_wait` (≈ 0.5 µs) per
/// 200 µs of such waits.
const POLL_EVERY: Duration = Duration::from_micros(200);

/// Token of the listener's descriptors (never a peer slot).
pub(super) const LISTENER_TOKEN: Token = Token(usize::MAX);
/// Token of the [`MuxWaker`]'s eventfd (never a peer slot or a hello).
const WAKER_TOKEN: Token = Token(usize::MAX - 1);
/// Tokens of pending hellos' sockets: `HELLO_BASE + slot` (never a peer
/// slot: a mux holds far fewer than 2^40 connections).
const HELLO_BASE: usize = 1 << 40;

impl Mux<super::AnyConnection> {
    /// Accepts callers of `listener` in the same loop: its sockets are
    /// registered here and [`Mux::wait`] reports [`MuxEvent::Incoming`] when
    /// callers wait; then call [`Mux::accept_pending`]. Replaces (and returns)
    /// a previous listener.
    pub fn set_listener(
        &mut self,
        listener: super::Listener,
    ) -> std::io::Result<Option<super::Listener>> {
        let old = self.listener.take();
        if let Some(l) = &old {
            lock_listener(l).deregister(self.poll.registry())?;
        }
        listener.register(self.poll.registry(), LISTENER_TOKEN)?;
        self.hello_due = listener.next_hello_deadline();
        self.listener = Some(std::sync::Arc::new(std::sync::Mutex::new(listener)));
        // The old one back, unless a helper still shares it.
        Ok(old
            .and_then(|l| std::sync::Arc::try_unwrap(l).ok())
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            }))
    }

    /// The listener, shared, and a handle on this mux's poll — for a helper
    /// thread that accepts callers while this mux's thread is away (in a
    /// long task: `transport::heartbeat::Heartbeats`), with
    /// [`Listener::accept_step`](super::Listener) and [`hello_token`]. The
    /// connections it makes are [added](Mux::add) here by this thread later,
    /// which then calls [`Mux::refresh_hello_deadline`].
    ///
    /// # Errors
    /// Cloning the poll's registry failed (an OS error).
    pub fn shared_listener(&self) -> std::io::Result<Option<(SharedListener, Registry)>> {
        match &self.listener {
            Some(l) => Ok(Some((
                std::sync::Arc::clone(l),
                self.poll.registry().try_clone()?,
            ))),
            None => Ok(None),
        }
    }

    /// Reads the listener's earliest hello deadline again (after a helper
    /// accepted with it, [`Mux::shared_listener`]).
    pub fn refresh_hello_deadline(&mut self) {
        self.hello_due = self
            .listener
            .as_ref()
            .and_then(|l| lock_listener(l).next_hello_deadline());
    }

    /// Puts back the listener's socket file and directory entry if either
    /// was removed or replaced ([`Listener::restore`](super::Listener::restore));
    /// nothing without a listener.
    ///
    /// Returns what was put back and why each part that could not be
    /// failed, as [`Listener::restore`](super::Listener::restore).
    pub fn restore_listener(&mut self) -> (super::Restored, Vec<ConnectError>) {
        match self.listener.as_ref() {
            Some(l) => lock_listener(l).restore(Some((self.poll.registry(), LISTENER_TOKEN))),
            None => (super::Restored::default(), Vec::new()),
        }
    }

    /// The listener, if any (locked while the guard lives: a helper
    /// accepting with it waits).
    pub fn listener(&self) -> Option<std::sync::MutexGuard<'_, super::Listener>> {
        self.listener.as_ref().map(|l| lock_listener(l))
    }

    /// Accepts every caller waiting on the listener (the event is
    /// edge-triggered: call this after each [`MuxEvent::Incoming`]) and adds
    /// the connections. Each entry is the new connection's key or the error
    /// of a refused hello (wrong token, worker, version, …); refusals do not
    /// stop the loop.
    ///
    /// # Errors
    /// The outer error is a failure to add an accepted connection to the
    /// poll (an OS error).
    pub fn accept_pending(&mut self) -> std::io::Result<Vec<Result<PeerKey, ConnectError>>> {
        let Some(l) = self.listener.as_ref() else {
            return Ok(Vec::new());
        };
        let done = {
            let mut l = lock_listener(l);
            let done = l.accept_step(self.poll.registry(), hello_token);
            self.hello_due = l.next_hello_deadline();
            done
        };
        let mut out = Vec::with_capacity(done.len());
        for r in done {
            out.push(match r {
                Ok(conn) => Ok(self.add(conn)?),
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }
}

/// A [`Listener`](super::Listener) shared by a [`Mux`] and a helper thread
/// that accepts with it while the mux's thread is away
/// ([`Mux::shared_listener`]).
pub type SharedListener = std::sync::Arc<std::sync::Mutex<super::Listener>>;

/// Locks a shared listener (a poisoned lock still holds a listener whose
/// pending hellos are each whole: a pass changes them one at a time).
pub fn lock_listener(l: &SharedListener) -> std::sync::MutexGuard<'_, super::Listener> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The poll token of the listener's pending hello in `slot` (as
/// [`Mux::accept_pending`] registers them).
pub fn hello_token(slot: usize) -> Token {
    Token(HELLO_BASE + slot)
}

fn push_unique(ready: &mut Vec<MuxEvent>, key: PeerKey) {
    let ev = MuxEvent::Ready(key);
    if !ready.contains(&ev) {
        ready.push(ev);
    }
}

impl MuxConnection for super::TcpConnection {
    fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(self.stream_mut(), token, mio::Interest::READABLE)
    }

    fn deregister(&mut self, registry: &Registry) -> std::io::Result<()> {
        registry.deregister(self.stream_mut())
    }

    fn ready_hint(&self) -> bool {
        self.has_buffered_frame()
    }

    fn kernel_delivered(&self) -> bool {
        true
    }

    fn flush_pending(&mut self) -> bool {
        self.flush_queued()
    }

    fn set_write_interest(
        &mut self,
        registry: &Registry,
        token: Token,
        on: bool,
    ) -> std::io::Result<()> {
        let interest = if on {
            mio::Interest::READABLE | mio::Interest::WRITABLE
        } else {
            mio::Interest::READABLE
        };
        registry.reregister(self.stream_mut(), token, interest)
    }

    fn note_held(&mut self, held: bool) {
        super::TcpConnection::note_held(self, held);
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        super::TcpConnection::tick(self, now)
    }

    fn has_ended(&self) -> bool {
        self.ended().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `MuxWaker` ends a long wait from another thread in every wait
    /// mode (epoll sleep, spin, spin-then-sleep), and a wake-up that came
    /// before the wait is not lost.
    #[test]
    fn a_waker_ends_the_wait_from_another_thread() {
        for mode in 0..3 {
            let mut mux: Mux<super::super::AnyConnection> = Mux::new().unwrap();
            match mode {
                1 => mux.set_spin(true),
                2 => mux.set_spin_window(Duration::from_micros(80)),
                _ => {}
            }
            let waker = mux.waker().unwrap();
            let mut ready = Vec::new();
            // Nothing pending: the wait runs to its timeout.
            let t = Instant::now();
            mux.wait(Duration::from_millis(30), &mut ready).unwrap();
            assert!(t.elapsed() >= Duration::from_millis(30), "mode {mode}");
            // Woken before the wait: returns at once.
            waker.wake();
            let t = Instant::now();
            mux.wait(Duration::from_secs(10), &mut ready).unwrap();
            assert!(t.elapsed() < Duration::from_secs(5), "mode {mode}");
            // Woken while waiting.
            let w = waker.clone();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                w.wake();
            });
            let t = Instant::now();
            mux.wait(Duration::from_secs(10), &mut ready).unwrap();
            let took = t.elapsed();
            h.join().unwrap();
            assert!(
                took >= Duration::from_millis(40) && took < Duration::from_secs(5),
                "mode {mode}: {took:?}"
            );
            assert!(ready.is_empty());
            // The same waker again.
            assert!(mux.waker().is_ok());
        }
    }
}
