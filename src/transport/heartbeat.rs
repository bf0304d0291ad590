//! Heartbeats for a thread's TCP connections while the thread is away.
//!
//! A TCP peer is declared dead when it hears nothing for the liveness
//! timeout (`TransportConfig::liveness_timeout`, 5 s), and only the thread
//! that owns a connection reads and answers it. A worker runs a one-thread
//! actor's tasks and normal tasks on its loop thread (Ray's default), so a
//! task longer than the timeout left its TCP callers without a word and
//! they took it for dead ("stopped answering"), though over shared memory
//! the same call succeeded. Ray answers health checks on gRPC threads of
//! their own; here a [`Heartbeats`] helper thread writes a heartbeat on
//! each registered connection while its owner has been away (running a
//! task) for longer than a heartbeat period — the owner lends them with
//! [`crate::wake::handoff`] (a worker lends each turn of its loop that
//! runs tasks): the helper acts only in an absence it saw at two looks, and
//! never while the owner adds or removes connections (so a registered
//! socket is open). Both sides write a connection only under its write
//! buffer's lock, whole frames at a time (the owner's replies during a
//! lent turn too), so their frames never interleave.
//!
//! The helper works on the connection's own write buffer
//! ([`TcpConnection`](super::TcpConnection)'s, behind a lock the owner
//! takes uncontended): it hands the kernel what the buffer holds — replies
//! queued for a caller slow to read them keep flowing while the task runs —
//! and, once the buffer is empty, appends a heartbeat there and writes it,
//! so a heartbeat always starts at a frame boundary. It is a `PONG`: the
//! peer counts it as heard and owes no answer. A stopped process writes
//! none (its helper is stopped too), so a stopped worker is still found
//! out.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wake::handoff::{handoff, Lent, Owner};

use super::mux::{hello_token, SharedListener, LISTENER_TOKEN};
use super::tcp::WriteBuf;
use super::{AnyConnection, ConnectError, PeerKey, Restored};

/// One connection's registration with a [`Heartbeats`]
/// ([`TcpConnection::heartbeat_beat`](super::TcpConnection::heartbeat_beat)).
#[derive(Debug, Clone)]
pub struct Beat {
    /// Its socket.
    pub fd: RawFd,
    /// Its write buffer (shared with the connection).
    pub write: Arc<Mutex<WriteBuf>>,
}

/// The owner's side: a helper thread writing heartbeats on the owner's
/// registered TCP connections while it is away (see the module docs), and
/// accepting callers for it meanwhile if given its listener
/// ([`Heartbeats::start_accepting`]).
#[derive(Debug)]
pub struct Heartbeats {
    owner: Owner<Beat>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    helper: Option<std::thread::JoinHandle<()>>,
    accept: Option<Arc<AwayAccept>>,
}

/// Accepting callers while the owner is away: a worker's handshakes run on
/// its loop thread (`Mux::accept_pending`), so a new caller's hello, or a
/// reconnect, during a task longer than the handshake timeout (5 s) went
/// unanswered and failed ("timed out during the handshake reply") — Ray's
/// gRPC threads take the connection whatever the task. The helper, in an
/// absence it saw at two looks ([`LOOK`] apart), runs the listener's accept
/// passes itself at turns every [`SERVE`] (under the listener's lock,
/// which the owner takes only when back) and
/// keeps the connections it made for the owner, writing heartbeats on the
/// TCP ones meanwhile; the owner adds them to its mux when back
/// ([`Heartbeats::take_accepted`]).
#[derive(Debug)]
struct AwayAccept {
    listener: SharedListener,
    /// The owner's mux's poll, where hello sockets are registered.
    registry: mio::Registry,
    /// Connections made (or hellos refused) while the owner was away.
    kept: Arc<KeptConnections>,
    /// What the helper put back of the listener's session files while
    /// the owner was away ([`AwayAccept::restore`]), until the owner reports
    /// it ([`Heartbeats::take_restored`]).
    restored: Mutex<Restored>,
}

/// The connections a [`Heartbeats`] helper made while its owner was away
/// (and the hellos it refused), kept for the owner until it takes them
/// ([`Heartbeats::take_accepted`]). The owner makes it and shares it with
/// its listener's admission ([`Heartbeats::start_accepting`]): each of
/// these connections passed the admission, so counts against the owner's
/// limit until the owner adds it to its mux after the task — and one whose
/// caller left meanwhile kept its place until then, unless the admission
/// gives it back first ([`KeptConnections::drop_ended`]).
#[derive(Debug)]
pub struct KeptConnections {
    /// Locked by the helper to add to it (and to write heartbeats), by the
    /// owner to take it, by the admission to drop the ended ones.
    list: Mutex<Vec<Result<AnyConnection, ConnectError>>>,
    /// `list` is not empty. `Release` when set (after the push, under
    /// the lock), `Acquire` by the owner's swap; the lock orders the list
    /// itself, the flag only spares the owner the lock. Left set by
    /// [`KeptConnections::drop_ended`]: the owner's next take finds what
    /// is left, maybe nothing.
    any: std::sync::atomic::AtomicBool,
    /// The owner's count of the connections it serves and will serve
    /// (its admission's, against its `max_connections`): each kept
    /// connection counts in it; one dropped here gives its place back.
    places: Arc<std::sync::atomic::AtomicUsize>,
}

impl KeptConnections {
    /// An empty list whose connections count in `places`.
    pub fn new(places: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        Self {
            list: Mutex::new(Vec::new()),
            any: std::sync::atomic::AtomicBool::new(false),
            places,
        }
    }

    /// Drops the kept connections that are over — their callers closed
    /// them, reset them or died: one mechanism for all, the kernel's word
    /// on each connection's socket without waiting
    /// (`AnyConnection::peer_gone`) — gives their places back and returns
    /// how many. Everything such a connection held goes with it: its place,
    /// its descriptors, its rings' memory (refunded to the listener's
    /// budget). What such a caller sent goes unread with it, as its replies
    /// would (its connection is gone). A poll per kept connection: the
    /// helper calls it at each of its turns (every 10 ms while it stands
    /// in for its owner), the admission at its limit.
    pub fn drop_ended(&self) -> usize {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|c| !c.as_ref().is_ok_and(AnyConnection::peer_gone));
        let gone = before - list.len();
        drop(list);
        if gone > 0 {
            // Relaxed, no partner: a count, nothing published through it
            // (the owner sets it to its mux's count when it takes the
            // list); a give-back stops at zero.
            let less = |n: usize| Some(n.saturating_sub(gone));
            let _ = self.places.fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                less,
            );
        }
        gone
    }
}

/// How often a helper that accepts callers looks whether its owner is away
/// (at most; its heartbeat period if shorter). It stands in for the owner
/// in an absence it saw at two looks, so one at least this long: newcomers
/// wait that much for a long task, not up to two heartbeat periods (3.3 s
/// at the default liveness timeout: the attack on `b87cb39` measured
/// 2.8 s for the first connect into a task).
const LOOK: Duration = Duration::from_millis(100);

/// While the helper stands in for its away owner, the longest it waits
/// between two turns: callers come and go at the pace of connections, not
/// of liveness. Each turn begins by dropping the kept connections whose
/// callers left ([`KeptConnections::drop_ended`]), so what they hold
/// (place, descriptors, ring memory) is back within about this long, and
/// a newcomer's hello is taken up within about this long.
const SERVE: Duration = Duration::from_millis(10);

/// How long one accept turn of the helper steps pending hellos (a
/// handshake takes several steps, the caller answering in between); hellos
/// still pending then get the next turn a [`STEP`] later, after the kept
/// connections were looked at again. Before, a turn stepped for up to
/// 250 ms while hellos kept coming, and the connections it finished
/// meanwhile — of callers connecting and leaving in a loop, ≈ 100 a turn,
/// five descriptors each over shared memory — stayed until the next turn.
const ACCEPT_TURN: Duration = SERVE;

/// At most this many refused hellos are kept for the owner's report while
/// it is away (the oldest go first; the listener's `accept_stats` counts
/// them all).
const MAX_KEPT_REFUSALS: usize = 16;

/// Between two accept steps while hellos are pending.
const STEP: Duration = Duration::from_millis(1);

impl AwayAccept {
    /// Puts back what a stray `rm` or rename took of the listener's session
    /// files — its socket, its directory entry, the process lock
    /// ([`Listener::restore`](super::Listener::restore)) — as the owner does
    /// every [`LISTENER_CHECK_INTERVAL`](super::LISTENER_CHECK_INTERVAL)
    /// between tasks: so newcomers find the worker during a long task too.
    /// What was put back waits for the owner's report; what failed is tried
    /// again at the next interval (and by the owner when back, which
    /// reports it).
    fn restore(&self) {
        let Ok(mut l) = self.listener.try_lock() else {
            return;
        };
        let (done, errors) = l.restore(Some((&self.registry, LISTENER_TOKEN)));
        drop(l);
        if done.any() {
            let mut r = self.restored.lock().unwrap_or_else(|e| e.into_inner());
            *r = r.or(done);
        }
        for e in &errors {
            tracing::debug!(error = %crate::error_chain(e), "helper: a session file of the listener could not be put back yet");
        }
    }

    /// Drops the kept connections whose callers left, then runs accept
    /// passes until no hello is pending or [`ACCEPT_TURN`] passed; then,
    /// if `beat_now`, heartbeats on the TCP connections made and not yet
    /// taken. Returns whether hellos are still pending (the next turn is
    /// due a [`STEP`] later, not a [`SERVE`]).
    fn turn(&self, beat_now: bool) -> bool {
        // Callers that left since the last turn give back what their
        // connections hold (places, descriptors, ring memory) now, not
        // when the owner's task ends: newcomers may need it.
        self.kept.drop_ended();
        let start = std::time::Instant::now();
        let pending = loop {
            // The owner came back and accepts itself: its turn.
            let Ok(mut l) = self.listener.try_lock() else {
                return false;
            };
            let done = l.accept_step(&self.registry, hello_token);
            let pending = l.pending_hellos();
            drop(l);
            if !done.is_empty() {
                let mut kept = self.kept.list.lock().unwrap_or_else(|e| e.into_inner());
                kept.extend(done);
                // Refused hellos are kept only for the owner to report
                // them (at most once a second, counted): the oldest go
                // beyond `MAX_KEPT_REFUSALS`, so callers refused in a loop
                // during a long task do not grow the list without bound.
                let refused = kept.iter().filter(|c| c.is_err()).count();
                let mut over = refused.saturating_sub(MAX_KEPT_REFUSALS);
                if over > 0 {
                    kept.retain(|c| {
                        let drop_it = over > 0 && c.is_err();
                        over -= usize::from(drop_it);
                        !drop_it
                    });
                }
                // Release: pairs with the owner's Acquire swap in
                // `take_kept`.
                self.kept
                    .any
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            if pending == 0 || start.elapsed() >= ACCEPT_TURN {
                break pending;
            }
            std::thread::sleep(STEP);
        };
        if beat_now {
            let mut kept = self.kept.list.lock().unwrap_or_else(|e| e.into_inner());
            for c in kept.iter_mut() {
                if let Ok(AnyConnection::Tcp(t)) = c {
                    let b = t.heartbeat_beat();
                    // SAFETY: the connection is in `kept`, locked: its
                    // socket is open while the lock is held (`drop_ended`
                    // drops one under the same lock).
                    beat(unsafe { BorrowedFd::borrow_raw(b.fd) }, &b.write);
                }
            }
        }
        pending > 0
    }
}

impl Heartbeats {
    /// Starts the helper thread, which looks every `period` (a third of the
    /// liveness timeout: the peer pings after a third of silence and gives
    /// up after the whole timeout) and writes a heartbeat on each
    /// registered connection when the owner has been away since its
    /// previous look.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(period: Duration) -> std::io::Result<Self> {
        Self::spawn(period, None)
    }

    /// [`Heartbeats::start`], the helper also accepting callers with
    /// `listener` (registering hello sockets with `registry`, the owner's
    /// mux's: [`Mux::shared_listener`](super::Mux::shared_listener)) while
    /// the owner is away — every absence is then lent, registered
    /// connections or not. It then looks every 100 ms (or `period`, if
    /// shorter) and, standing in for the owner, takes a turn every 10 ms
    /// (1 ms while hellos are under way); its heartbeats keep `period`.
    /// Standing in, it also puts back the listener's session files a
    /// stray `rm` took (socket, directory entry; once a
    /// [`LISTENER_CHECK_INTERVAL`](super::LISTENER_CHECK_INTERVAL), as the
    /// owner between tasks), reported through [`Heartbeats::take_restored`]. It keeps the connections it makes in `kept`
    /// (shared with the listener's admission, which may drop the ended
    /// ones) until the owner takes them.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start_accepting(
        period: Duration,
        listener: SharedListener,
        registry: mio::Registry,
        kept: Arc<KeptConnections>,
    ) -> std::io::Result<Self> {
        Self::spawn(
            period,
            Some(Arc::new(AwayAccept {
                listener,
                registry,
                kept,
                restored: Mutex::new(Restored::default()),
            })),
        )
    }

    fn spawn(period: Duration, accept: Option<Arc<AwayAccept>>) -> std::io::Result<Self> {
        let (mut owner, mut helper) = handoff::<Beat>();
        if accept.is_some() {
            owner.lend_always();
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let accepting = accept.clone();
        // Looks whether the owner is away: every heartbeat period without
        // accepting; with, every `LOOK` (newcomers need a helper sooner
        // than heartbeats do).
        let look_every = if accept.is_some() {
            period.min(LOOK)
        } else {
            period
        };
        // Heartbeats keep the liveness pace whatever the helper's: the
        // first a period into an absence it saw, then every period (less
        // half a look: a look a little early still writes them).
        let beat_every = period.saturating_sub(look_every / 2);
        let thread = std::thread::Builder::new()
            .name("shmwire-heartbeats".into())
            .spawn(move || {
                let mut wait = look_every;
                // In an absence it stands in: when the listener's session
                // files are next looked at (`AwayAccept::restore`).
                let mut next_restore: Option<std::time::Instant> = None;
                // In an absence the helper watches: when its next
                // heartbeats are due.
                let mut next_beat: Option<std::time::Instant> = None;
                // Relaxed: a flag; `Drop` unparks the thread after setting it.
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(wait);
                    let now = std::time::Instant::now();
                    let due = next_beat.is_some_and(|t| now >= t);
                    let away = helper.look(|b| {
                        if due {
                            // SAFETY: the owner keeps a registered socket
                            // open until it removes it, which it does only
                            // while it holds its connections; `look` runs
                            // this only while the owner is away.
                            beat(unsafe { BorrowedFd::borrow_raw(b.fd) }, &b.write);
                        }
                    });
                    wait = look_every;
                    if !away {
                        // Owner there (nothing due), or the first sight
                        // of an absence: its first heartbeats a period on.
                        next_beat = helper.watching().then(|| now + beat_every);
                        continue;
                    }
                    if due {
                        next_beat = Some(now + beat_every);
                    }
                    if let Some(a) = &accepting {
                        if next_restore.is_none_or(|t| now >= t) {
                            a.restore();
                            next_restore =
                                Some(crate::deadline_after(now, super::LISTENER_CHECK_INTERVAL));
                        }
                        // Standing in for the owner: the next turn at the
                        // pace of callers (`SERVE`), sooner while hellos
                        // are under way.
                        wait = if a.turn(due) { STEP } else { SERVE };
                    }
                }
            })?;
        Ok(Self {
            owner,
            stop,
            helper: Some(thread),
            accept,
        })
    }

    /// The connections the helper made while the owner was away (and the
    /// hellos it refused), for the owner to add to its mux — then
    /// [`Mux::refresh_hello_deadline`](super::Mux::refresh_hello_deadline).
    /// One relaxed load when there are none.
    #[inline]
    pub fn take_accepted(&self) -> Option<Vec<Result<AnyConnection, ConnectError>>> {
        let a = &self.accept.as_ref()?.kept;
        // Relaxed: a hint; `take_kept`'s swap is the acquiring look.
        if !a.any.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        Some(take_kept(a))
    }

    /// What the helper put back of the listener's session files while the
    /// owner was away (see [`Heartbeats::start_accepting`]), since the last
    /// call: for the owner to report.
    pub fn take_restored(&self) -> Restored {
        self.accept.as_ref().map_or(Restored::default(), |a| {
            std::mem::take(&mut *a.restored.lock().unwrap_or_else(|e| e.into_inner()))
        })
    }

    /// Registers the connection under `key`. Call while holding the
    /// connections (not while a [`Heartbeats::lend`] guard lives); its
    /// socket must stay open until [`Heartbeats::remove`].
    pub fn add(&mut self, key: PeerKey, beat: Beat) {
        self.owner.add(key.0, beat);
    }

    /// Forgets the connection under `key` (before its socket closes).
    pub fn remove(&mut self, key: PeerKey) {
        self.owner.remove(key.0);
    }

    /// Leaves the connections to the helper (e.g. to run a task; free
    /// without registered connections) until the guard drops — also by a
    /// panic unwinding through the task ([`Owner::lend`]).
    #[inline]
    pub fn lend(&mut self) -> Lent<'_, Beat> {
        self.owner.lend()
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.helper.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Heartbeats on an owner's TCP connections while it makes no calls on
/// them — the caller's side of [`Heartbeats`]: an application's
/// [`CoreWorker`](crate::worker::CoreWorker) is used only when the
/// application calls it (it has no I/O thread, unlike Ray's core worker),
/// so a driver busy with its own work for the liveness timeout (5 s) heard
/// no ping and answered none, and its workers closed its connections
/// (its held-back replies with them). A helper thread looks every period;
/// if the owner marked no activity ([`IdleHeartbeats::active`]) since its
/// previous look, it does what [`Heartbeats`]' helper does on each
/// registered connection: hands the kernel the queued frames, and once
/// none are left writes a `PONG`.
///
/// Unlike [`Heartbeats`] there is no hand-off: the owner is away at
/// unknown times (between the application's calls), and the helper only
/// *writes*, as the owner does, under the connection's write-buffer lock
/// (it never waits for it: a busy owner is heard anyway). The socket's
/// lifetime is guarded by the registration: the owner
/// [removes](IdleHeartbeats::remove) a connection before closing it, and
/// removing waits for a look in progress.
#[derive(Debug)]
pub struct IdleHeartbeats {
    shared: Arc<IdleShared>,
    helper: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct IdleShared {
    /// The registered connections, by key; locked by the helper for a
    /// whole look.
    beats: Mutex<Vec<(usize, Beat)>>,
    /// Bumped by the owner at each activity. Relaxed: the helper compares
    /// it with its previous look only (no data is published through it).
    activity: std::sync::atomic::AtomicU64,
    /// Set to end the helper (`Drop`, which also unparks it). Relaxed: a
    /// flag, no data behind it.
    stop: std::sync::atomic::AtomicBool,
}

impl IdleHeartbeats {
    /// Starts the helper thread, looking every `period` (a third of the
    /// liveness timeout, as [`Heartbeats::start`]).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(period: Duration) -> std::io::Result<Self> {
        use std::sync::atomic::Ordering::Relaxed;
        let shared = Arc::new(IdleShared::default());
        let seen = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("shmwire-idle-beats".into())
            .spawn(move || {
                let mut last = seen.activity.load(Relaxed);
                while !seen.stop.load(Relaxed) {
                    std::thread::park_timeout(period);
                    let now = seen.activity.load(Relaxed);
                    if now == last {
                        let beats = seen.beats.lock().unwrap_or_else(|e| e.into_inner());
                        for (_, b) in beats.iter() {
                            // SAFETY: the owner removes a connection from
                            // `beats` (waiting for this lock) before its
                            // socket closes, so `fd` is open while the lock
                            // is held.
                            beat(unsafe { BorrowedFd::borrow_raw(b.fd) }, &b.write);
                        }
                    }
                    last = now;
                }
            })?;
        Ok(Self {
            shared,
            helper: Some(thread),
        })
    }

    /// Registers the connection under `key`; its socket must stay open
    /// until [`IdleHeartbeats::remove`].
    pub fn add(&self, key: PeerKey, beat: Beat) {
        let mut beats = self.shared.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|(k, _)| *k != key.0);
        beats.push((key.0, beat));
    }

    /// Forgets the connection under `key` (before its socket closes; waits
    /// for a look in progress).
    pub fn remove(&self, key: PeerKey) {
        self.shared
            .beats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _)| *k != key.0);
    }

    /// Marks the owner active (it reads and writes its connections itself):
    /// no heartbeat at the helper's next look. One relaxed store.
    #[inline]
    pub fn active(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let a = &self.shared.activity;
        a.store(a.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

impl Drop for IdleHeartbeats {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.helper.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

#[cold]
fn take_kept(a: &KeptConnections) -> Vec<Result<AnyConnection, ConnectError>> {
    let mut kept = a.list.lock().unwrap_or_else(|e| e.into_inner());
    // Acquire: pairs with the helper's Release store after its push.
    a.any.swap(false, std::sync::atomic::Ordering::Acquire);
    std::mem::take(&mut *kept)
}

/// Most bytes a helper lets a connection's write buffer hold when it
/// appends a heartbeat (a connection whose peer takes nothing gets none:
/// its queued frames are heard first once it reads).
const HEARTBEAT_ROOM: usize = 64 << 10;

/// Flushes the connection's queued frames to its socket `fd` as far as the
/// kernel takes them, then, if none are left, writes a heartbeat.
fn beat(fd: BorrowedFd<'_>, write: &Mutex<WriteBuf>) {
    // Never waits: the owner, away, holds no lock.
    let Ok(mut w) = write.try_lock() else {
        return;
    };
    let mut out = Socket(fd);
    if let Err(e) = w.flush_some(&mut out) {
        // The owner finds out at its next write or read.
        tracing::debug!(error = %e, "heartbeat helper: write failed");
        return;
    }
    if w.pending() == 0 {
        w.append_heartbeat(HEARTBEAT_ROOM);
        if let Err(e) = w.flush_some(&mut out) {
            tracing::debug!(error = %e, "heartbeat not written");
        }
    }
}

/// A socket written without waiting and without `SIGPIPE`.
struct Socket<'a>(BorrowedFd<'a>);

impl std::io::Write for Socket<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        crate::sys::tcp::send_now(self.0, bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
