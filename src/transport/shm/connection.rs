//! The connected side: [`ShmConnection`] (two attached ring halves, the
//! bootstrap socket kept open for liveness, the wait strategy) and the
//! frames it lends ([`ShmFrame`]).

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::{
    kind_tag, tag_kind, ShmOptions, AUDIT_INTERVAL, MESSAGE_KIND, TRY_RECV_CHECK_INTERVAL,
};
use crate::ring::{Consumer, MappedStorage, Producer, ReadFrame, RingError, RingStorage};
use crate::spec::AlignedBytes;
use crate::sys::fdpass::peer_connected;
use crate::transport::error::Ended;
use crate::transport::farewell;
use crate::transport::ClientSecret;
use crate::transport::{
    check_send_len, run_encoder, ConnectError, Connection, FrameTag, MuxConnection, RecvError,
    SendError, TransportConfig, TransportKind, WorkerId,
};
use crate::wake::{EventFd, Waiter};

/// Watches the peer's Unix socket: hang-up or EOF means the peer is gone.
/// The socket also carries the peer's farewell, if it said why it ended the
/// connection (`transport::farewell`).
#[derive(Debug)]
struct SocketLiveness {
    /// The connection's bootstrap socket (shared with the connection: no
    /// duplicate descriptor, which a listener out of descriptors could not
    /// make once it had accepted the caller — the attack on `3430896`).
    sock: Arc<UnixStream>,
    dead: AtomicBool,
    /// The peer's farewell, once read (the socket carries nothing else
    /// after the hello; read only when the connection has ended).
    farewell: Mutex<Option<String>>,
}

impl SocketLiveness {
    /// Polls the socket without blocking; remembers a death.
    fn check(&self) -> bool {
        // Relaxed: a sticky flag, no data hangs on it.
        if self.dead.load(AtomicOrdering::Relaxed) {
            return false;
        }
        let alive = peer_connected(self.sock.as_fd());
        if !alive {
            self.dead.store(true, AtomicOrdering::Relaxed);
        }
        alive
    }

    fn is_dead(&self) -> bool {
        self.dead.load(AtomicOrdering::Relaxed)
    }

    /// The reason the peer gave as it ended the connection, if it sent one
    /// (read without waiting; kept once read). Cold: asked only for an
    /// error that ends the connection.
    #[cold]
    #[inline(never)]
    fn farewell(&self) -> Option<String> {
        let mut kept = self.farewell.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            // Behind whatever else is unread there (a store's descriptor
            // hand-offs share the socket), within a bound.
            let mut read = Vec::new();
            let mut buf = [0u8; 4096];
            while read.len() < farewell::MAX_SCAN {
                match crate::sys::fdpass::recv_nowait(self.sock.as_fd(), &mut buf) {
                    Some(n) if n > 0 => read.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            *kept = farewell::find_last(&read);
        }
        kept.clone()
    }

    /// `e` as the peer's farewell words it, when `e` is an end this side
    /// knows no cause of — a close, a death, or the poison the peer leaves
    /// as it cuts a connection off — and the peer said why
    /// ([`RecvError::CutOff`]); else `e` (a corruption or a framing error
    /// this side found itself is reported as found).
    #[cold]
    #[inline(never)]
    fn said_recv(&self, peer: WorkerId, e: RecvError) -> RecvError {
        if !matches!(
            e,
            RecvError::Closed | RecvError::PeerDied { .. } | RecvError::Ring(RingError::Poisoned)
        ) {
            return e;
        }
        match self.farewell() {
            Some(reason) => RecvError::CutOff { peer, reason },
            None => e,
        }
    }

    /// [`SocketLiveness::said_recv`] of a send error.
    #[cold]
    #[inline(never)]
    fn said_send<E>(&self, peer: WorkerId, e: SendError<E>) -> SendError<E> {
        if !matches!(
            e,
            SendError::Closed | SendError::PeerDied { .. } | SendError::Ring(RingError::Poisoned)
        ) {
            return e;
        }
        match self.farewell() {
            Some(reason) => SendError::CutOff { peer, reason },
            None => e,
        }
    }
}

/// Writes `reason` on the bootstrap socket as this side's farewell, once
/// (`sent`), without waiting (a socket without room now gets none).
#[cold]
#[inline(never)]
fn send_farewell(sock: &UnixStream, reason: &str, sent: &mut bool) {
    if std::mem::replace(sent, true) {
        return;
    }
    crate::sys::fdpass::send_nowait(sock.as_fd(), &farewell::encode(reason));
}

fn waiter(opts: &ShmOptions, my_efd: &EventFd, live: &Arc<SocketLiveness>) -> Waiter {
    let live = Arc::clone(live);
    Waiter::new(opts.wait)
        .with_eventfd(my_efd.clone())
        .with_liveness(move || live.check())
        .with_check_interval(opts.check_interval)
}

#[derive(Debug, Clone)]
enum State {
    Open,
    LocalClosed,
    Broken(String),
}

/// A shared-memory connection to a worker on this host. See the
/// module docs of `transport::shm` (and `docs/transport.md`).
pub struct ShmConnection {
    tx: Option<Producer<MappedStorage>>,
    rx: Option<Consumer<MappedStorage>>,
    /// This side refused a frame the peer published (unknown kind, too
    /// long): both rings are poisoned by the time it lets go of them
    /// (`close`, drop).
    refused: bool,
    /// This side told the peer why it ends the connection
    /// ([`Connection::farewell`]; said once).
    farewell_sent: bool,
    tx_waiter: Waiter,
    rx_waiter: Waiter,
    sock: Arc<UnixStream>,
    live: Arc<SocketLiveness>,
    my_efd: EventFd,
    peer: WorkerId,
    /// The peer's [`ClientSecret`] when it connected to us (its hello's);
    /// `None` on the connecting side.
    pub(super) peer_secret: Option<ClientSecret>,
    /// The listener side's share of its listener's ring memory
    /// (`ShmOptions::max_ring_memory`), given back when this drops.
    pub(super) ring_charge: Option<super::listener::RingCharge>,
    /// Whether the peer had hung up when this side closed (`close`): the
    /// socket's own shutdown looks like a hang-up afterwards.
    peer_left_first: bool,
    /// The peer's pid (`SO_PEERCRED`, read once at the handshake).
    peer_pid: Option<u32>,
    peer_max_frame: usize,
    max_frame: usize,
    send_timeout: Duration,
    state: State,
    last_check: Instant,
    force_check: bool,
    /// Private copies of received frames ([`Connection::recv_private_timeout`]).
    snapshot: AlignedBytes,
    /// Frames [`Connection::try_send_with`] could not put in the full ring
    /// yet, in order (each its encoded bytes).
    queue: VecDeque<(u32, AlignedBytes)>,
    /// Bytes in `queue`.
    queued: usize,
    /// Bound on `queued`.
    queue_limit: usize,
    /// The first violation of the rings' shared state found on this
    /// connection (corrupt or poisoned ring, by either half, on the data
    /// path or in an audit): from then on every receive and send reports
    /// it, and a close or death seen afterwards is reported as it.
    violation: Option<RingError>,
}

impl std::fmt::Debug for ShmConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmConnection")
            .field("peer", &self.peer)
            .field("state", &self.state)
            .finish()
    }
}

/// A frame received on a [`ShmConnection`]: the payload, 16-byte aligned, in
/// shared memory. Dropping it releases its space in the ring.
pub struct ShmFrame<'a> {
    frame: Option<ReadFrame<'a, MappedStorage>>,
}

impl std::fmt::Debug for ShmFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmFrame")
            .field("len", &self.len())
            .finish()
    }
}

impl std::ops::Deref for ShmFrame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.frame {
            Some(f) => f.payload(),
            None => &[],
        }
    }
}

impl Drop for ShmFrame<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.frame.take() {
            f.release();
        }
    }
}

/// Copies `src` into the private snapshot buffer (which keeps its capacity,
/// so a warm buffer copies without allocating); returns `src.len()`.
fn copy_into(snap: &mut AlignedBytes, src: &[u8]) -> usize {
    snap.clear();
    snap.extend_from_slice(src);
    src.len()
}

/// Keeps `e` as the connection's violation if it is one (corrupt or
/// poisoned shared state) and none was kept before.
#[cold]
#[inline(never)]
fn note_violation(violation: &mut Option<RingError>, e: &RingError) {
    if violation.is_none() && matches!(e, RingError::Corrupt { .. } | RingError::Poisoned) {
        *violation = Some(e.clone());
    }
}

/// A ring error found on the data path, judged once for every path that
/// meets one (send, receive, arming a wake-up): a violation is kept
/// ([`note_violation`]); a ring error of a connection whose peer has gone
/// and whose rings' memory reads as discarded is the connection's end
/// ([`RingError::Closed`]), not corruption: a listener that ends a
/// connection (a caller cut off for not reading its replies, say) discards
/// its rings' memory `RING_LINGER` later, and every header field then
/// reads 0, the magic included (the attack on `4b2e27d`: a caller back
/// after 40 s got "corrupt shared ring: magic overwritten (value 0, …)"
/// for each of its tasks). Both conditions: a peer alive with a zeroed
/// ring is a violation as before. (A peer able to zero the ring could as
/// well have closed it.)
#[cold]
#[inline(never)]
fn judge_ring_err(
    e: RingError,
    tx: &Option<Producer<MappedStorage>>,
    live: &SocketLiveness,
    violation: &mut Option<RingError>,
) -> RingError {
    let e = if discarded(&e, tx, live) {
        RingError::Closed
    } else {
        e
    };
    note_violation(violation, &e);
    e
}

/// A data-path ring error met by a receive, as the receive's error
/// ([`judge_ring_err`], then [`end_or_violation`]).
#[cold]
#[inline(never)]
fn recv_ring_failure(
    tx: &mut Option<Producer<MappedStorage>>,
    live: &SocketLiveness,
    violation: &mut Option<RingError>,
    peer: WorkerId,
    e: RingError,
) -> RecvError {
    let e = judge_ring_err(e, tx, live, violation);
    end_or_violation(tx, live, violation, peer, recv_ring_err(peer, e))
}

/// Whether `e` is what [`judge_ring_err`] takes for the connection's end.
fn discarded(e: &RingError, tx: &Option<Producer<MappedStorage>>, live: &SocketLiveness) -> bool {
    matches!(e, RingError::Corrupt { .. } | RingError::Poisoned)
        && tx.as_ref().is_some_and(Producer::memory_discarded)
        && !live.check()
}

/// Why a receive reports the end of a connection whose rings read as
/// discarded ([`judge_ring_err`]).
const DISCARDED: &str = "it ended the connection and gave its rings' memory back (they read \
     as zeros: a listener does so when it ends a connection — cutting off a caller that \
     reads no replies, or one that broke the protocol)";

/// A connection's end as a receive reports it. A close or death seen while
/// the connection's shared state is invalid anywhere — a violation kept
/// earlier, or the sending ring poisoned (the peer found the ring it reads
/// corrupt, then left) or failing its audit — is that violation: the ring
/// memory broke the protocol, and the peer may be alive. Other errors pass.
#[cold]
#[inline(never)]
fn end_or_violation(
    tx: &mut Option<Producer<MappedStorage>>,
    live: &SocketLiveness,
    violation: &mut Option<RingError>,
    peer: WorkerId,
    e: RecvError,
) -> RecvError {
    let e = end_or_violation_unsaid(tx, live, violation, e);
    live.said_recv(peer, e)
}

/// [`end_or_violation`] before the peer's farewell is looked for.
fn end_or_violation_unsaid(
    tx: &mut Option<Producer<MappedStorage>>,
    live: &SocketLiveness,
    violation: &mut Option<RingError>,
    e: RecvError,
) -> RecvError {
    if !matches!(e, RecvError::Closed | RecvError::PeerDied { .. }) {
        return e;
    }
    if violation.is_none() {
        if let Some(Err(v)) = tx.as_mut().map(|tx| tx.audit()) {
            if discarded(&v, tx, live) {
                // Said, as nothing else tells the connection's end from a
                // death: the memory is gone, so whatever the peer found
                // (or did) before can no longer be read.
                return match e {
                    RecvError::PeerDied { peer, source: None } => RecvError::PeerDied {
                        peer,
                        source: Some(Arc::new(std::io::Error::other(DISCARDED))),
                    },
                    e => e,
                };
            }
            note_violation(violation, &v);
        }
    }
    match violation {
        Some(v) => RecvError::Ring(v.clone()),
        None => e,
    }
}

/// A data-path ring error as a receive error on the connection to `peer`.
#[cold]
#[inline(never)]
fn recv_ring_err(peer: WorkerId, e: RingError) -> RecvError {
    match e {
        RingError::PeerDied => Ended::PeerDied(peer, None).recv_error(),
        RingError::Closed => RecvError::Closed,
        RingError::TimedOut => RecvError::TimedOut,
        other => RecvError::Ring(other),
    }
}

/// Checks a received ring frame (hostile input: the ring validated that it
/// lies within the published bytes; its length must also respect the
/// receiver's maximum, and its kind must be a message — or, for a `tagged`
/// receive, any [`FrameTag`] with a slot in range). Returns the frame's
/// tag. One branch on the hot path (a message); the rest out of line.
#[inline(always)]
fn check_frame<S: RingStorage>(
    frame: &ReadFrame<'_, S>,
    max_frame: usize,
    tagged: bool,
) -> Result<FrameTag, String> {
    if (frame.kind() != MESSAGE_KIND) | (frame.len() > max_frame) {
        return other_frame(frame.kind(), frame.len(), max_frame, tagged);
    }
    Ok(FrameTag::Message)
}

/// [`check_frame`] of a frame that is not a message within the maximum:
/// its tag, or what is wrong with it.
#[cold]
#[inline(never)]
fn other_frame(kind: u32, len: usize, max_frame: usize, tagged: bool) -> Result<FrameTag, String> {
    if len > max_frame {
        return Err(format!(
            "frame of {len} bytes exceeds the maximum of {max_frame}"
        ));
    }
    match kind_tag(kind) {
        Some(tag) if tagged => Ok(tag),
        Some(tag) => Err(format!(
            "frame tagged {tag:?} ({len} bytes) where only messages are read"
        )),
        None => Err(format!("frame of unknown kind {kind:#x} ({len} bytes)")),
    }
}

/// Wraps a ring frame after checking it ([`check_frame`]).
#[inline(always)]
fn wrap(
    frame: ReadFrame<'_, MappedStorage>,
    max_frame: usize,
    tagged: bool,
) -> Result<(FrameTag, ShmFrame<'_>), String> {
    let tag = check_frame(&frame, max_frame, tagged)?;
    Ok((tag, ShmFrame { frame: Some(frame) }))
}

/// A received frame breaks the protocol (`why`: an unknown kind, a length
/// above the maximum — the peer's doing, or a third process's scribble):
/// the connection is broken, and the peer must learn of a violation, not
/// of a clean close. Our ring (`tx`) is poisoned now; the peer's when this
/// side lets go of it (`refused`: close, drop), as the caller of this lends
/// `rx` out. Takes the connection's fields, not the connection, for that
/// reason.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)] // the connection's fields, lent apart
fn refuse_frame(
    tx: &mut Option<Producer<MappedStorage>>,
    violation: &mut Option<RingError>,
    refused: &mut bool,
    state: &mut State,
    sock: &UnixStream,
    farewell_sent: &mut bool,
    why: String,
) -> RecvError {
    // Said before the ring is poisoned: the peer looks for it once it
    // finds the poison.
    send_farewell(sock, &format!("protocol violation: {why}"), farewell_sent);
    if let Some(tx) = tx.as_mut() {
        tx.cut_off();
    }
    note_violation(violation, &RingError::Poisoned);
    *refused = true;
    *state = State::Broken(why.clone());
    RecvError::Protocol { what: why }
}

impl ShmConnection {
    #[allow(clippy::too_many_arguments)] // assembled once, by the handshake
    pub(super) fn assemble(
        tx: Producer<MappedStorage>,
        rx: Consumer<MappedStorage>,
        sock: UnixStream,
        my_efd: EventFd,
        peer_efd: EventFd,
        peer: WorkerId,
        peer_max_frame: usize,
        config: &TransportConfig,
        opts: &ShmOptions,
    ) -> Result<Self, ConnectError> {
        let mut tx = tx;
        let mut rx = rx;
        tx.set_peer_eventfd(peer_efd.clone());
        rx.set_peer_eventfd(peer_efd);
        sock.set_read_timeout(None)
            .and_then(|()| sock.set_write_timeout(None))
            .map_err(ConnectError::io("set socket options"))?;
        let sock = Arc::new(sock);
        let live = Arc::new(SocketLiveness {
            sock: Arc::clone(&sock),
            dead: AtomicBool::new(false),
            farewell: Mutex::new(None),
        });
        let peer_max_frame = peer_max_frame.min(tx.max_payload());
        let peer_pid = crate::sys::fdpass::peer_pid(&sock);
        Ok(Self {
            tx_waiter: waiter(opts, &my_efd, &live),
            rx_waiter: waiter(opts, &my_efd, &live),
            tx: Some(tx),
            rx: Some(rx),
            refused: false,
            farewell_sent: false,
            sock,
            live,
            my_efd,
            peer,
            peer_secret: None,
            ring_charge: None,
            peer_left_first: false,
            peer_pid,
            peer_max_frame,
            max_frame: config.max_frame_len,
            send_timeout: config.send_timeout,
            state: State::Open,
            last_check: Instant::now(),
            force_check: false,
            snapshot: AlignedBytes::new(),
            queue: VecDeque::new(),
            queued: 0,
            queue_limit: config.send_queue_limit,
            violation: None,
        })
    }

    fn ended(&self) -> Option<Ended> {
        match &self.state {
            State::Open => None,
            State::LocalClosed => Some(Ended::Closed),
            State::Broken(why) => Some(Ended::Broken(why.clone())),
        }
    }

    fn dead(&self) -> Ended {
        Ended::PeerDied(self.peer, None)
    }

    /// A data-path ring error as a send error (a violation is kept).
    #[cold]
    #[inline(never)]
    fn send_ring_err<E>(&mut self, e: RingError) -> SendError<E> {
        let e = self.send_ring_err_unsaid(e);
        self.live.said_send(self.peer, e)
    }

    /// [`ShmConnection::send_ring_err`] before the peer's farewell is
    /// looked for.
    fn send_ring_err_unsaid<E>(&mut self, e: RingError) -> SendError<E> {
        let e = judge_ring_err(e, &self.tx, &self.live, &mut self.violation);
        if let Some(v) = &self.violation {
            if matches!(e, RingError::PeerDied | RingError::Closed) {
                return SendError::Ring(v.clone());
            }
        }
        match e {
            RingError::PeerDied => self.dead().send_error(),
            RingError::Closed => SendError::Closed,
            RingError::TimedOut => SendError::TimedOut,
            RingError::TooLarge { len, max } => SendError::FrameTooLarge { len, max },
            other => SendError::Ring(other),
        }
    }

    /// The Unix socket (registered by the [`Mux`](crate::transport::Mux); its hang-up
    /// means the peer died).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// This side's eventfd (written by the peer when this side sleeps on it).
    pub fn eventfd(&self) -> &EventFd {
        &self.my_efd
    }

    /// How full the two rings are right now, for inspection (see
    /// [`RingFill`](crate::transport::RingFill)). Changes nothing.
    pub fn ring_fill(&self) -> crate::transport::RingFill {
        crate::transport::RingFill {
            rx_used: self.rx.as_ref().map_or(0, |c| c.fill()),
            rx_capacity: self.rx.as_ref().map_or(0, |c| c.capacity()),
            tx_used: self.tx.as_ref().map_or(0, |p| p.fill()),
            tx_capacity: self.tx.as_ref().map_or(0, |p| p.capacity()),
        }
    }

    /// The pid of the peer's process, as the kernel recorded it when its
    /// bootstrap socket connected (`SO_PEERCRED`; `None` if the kernel
    /// does not say). Informational: pids are reused, so liveness is never
    /// decided by it.
    pub fn peer_pid(&self) -> Option<u32> {
        self.peer_pid
    }

    /// The [`ClientSecret`] the peer's hello carried, on a connection it
    /// opened to us (`None` on a connection we opened).
    pub fn peer_secret(&self) -> Option<ClientSecret> {
        self.peer_secret
    }

    /// Checks the peer's socket now (non-blocking). `false` once it is dead.
    pub fn peer_alive(&self) -> bool {
        self.live.check()
    }
}

impl ShmConnection {
    /// Checks that frames can still be sent: not closed, peer alive, the
    /// peer's consumer still attached. One branch on the hot path; the
    /// error is built out of line.
    #[inline(always)]
    fn check_sendable<E>(&mut self) -> Result<(), SendError<E>> {
        // Non-short-circuit `&`: four loads, one branch.
        let ok = matches!(self.state, State::Open)
            & self.violation.is_none()
            & !self.live.is_dead()
            & self.tx.as_ref().is_some_and(|tx| !tx.is_abandoned());
        if ok {
            Ok(())
        } else {
            self.not_sendable()
        }
    }

    /// The slow path of [`check_sendable`](Self::check_sendable): why it
    /// refuses, or `Ok` when only the hint of the consumer's flag was set
    /// and the ring's validated reading ([`Producer::check_open`]) says the
    /// consumer has not closed (a close half done, or a scribbled flag the
    /// audit reports if it lasts).
    #[cold]
    #[inline(never)]
    fn not_sendable<E>(&mut self) -> Result<(), SendError<E>> {
        let local = matches!(self.state, State::LocalClosed);
        match self.not_sendable_unsaid() {
            Err(e) if !local => Err(self.live.said_send(self.peer, e)),
            r => r,
        }
    }

    /// [`ShmConnection::not_sendable`] before the peer's farewell is
    /// looked for.
    fn not_sendable_unsaid<E>(&mut self) -> Result<(), SendError<E>> {
        if let Some(e) = self.ended() {
            return Err(e.send_error());
        }
        if let Some(v) = &self.violation {
            return Err(SendError::Ring(v.clone()));
        }
        // The ring's validated reading of the consumer's flags: closed, or
        // a value no side writes (a violation, never a close).
        let open = match self.tx.as_mut() {
            Some(tx) => tx.check_open(),
            None => Err(RingError::Closed),
        };
        match open {
            Err(e @ (RingError::Corrupt { .. } | RingError::Poisoned)) => {
                Err(self.send_ring_err(e))
            }
            _ if self.live.is_dead() => Err(self.dead().send_error()),
            Ok(()) => Ok(()),
            // The peer closed its end: nothing we send would be read.
            Err(_) => Err(SendError::Closed),
        }
    }

    /// Runs both halves' audits ([`Producer::audit`], [`Consumer::audit`])
    /// and keeps the first violation found (the mux's tick, every
    /// [`AUDIT_INTERVAL`]). Only while the peer's socket says it is alive:
    /// a peer that died in the middle of closing its halves leaves their
    /// flags unsettled, and its death is what a receive reports.
    fn audit(&mut self) {
        if self.violation.is_some() || !matches!(self.state, State::Open) || !self.live.check() {
            return;
        }
        let found = match (self.tx.as_mut(), self.rx.as_mut()) {
            (Some(tx), Some(rx)) => tx.audit().and_then(|()| rx.audit()),
            _ => Ok(()),
        };
        if let Err(e) = found {
            note_violation(&mut self.violation, &e);
        }
    }

    /// The receive error of a connection that is no longer open (or holds
    /// a violation).
    #[cold]
    #[inline(never)]
    fn ended_recv_error(&self) -> RecvError {
        let e = match (&self.violation, &self.state) {
            (Some(v), State::Open) => RecvError::Ring(v.clone()),
            _ => self.ended().map_or(RecvError::Closed, |e| e.recv_error()),
        };
        // Not after our own close: the peer's words would answer it.
        if matches!(self.state, State::LocalClosed) {
            return e;
        }
        self.live.said_recv(self.peer, e)
    }

    /// Moves queued frames into the ring, in order: waiting for room (at
    /// most the send timeout per frame) when `wait`, else only as far as
    /// there is room now. `Ok(true)` when the queue is empty.
    fn drain_queue(&mut self, wait: bool) -> Result<bool, SendError> {
        while let Some((kind, front)) = self.queue.front() {
            let (kind, len) = (*kind, front.len());
            let Some(tx) = self.tx.as_mut() else {
                return Err(SendError::Closed);
            };
            let grant = if wait {
                tx.reserve_blocking(len, kind, &self.tx_waiter, self.send_timeout)
            } else {
                tx.reserve_with_kind(len, kind)
            };
            let mut grant = match grant {
                Ok(g) => g,
                Err(RingError::Full) if !wait => return Ok(false),
                Err(e) => return Err(self.send_ring_err(e)),
            };
            grant.copy_from_slice(front.as_slice());
            grant.commit_all();
            self.queued -= len;
            self.queue.pop_front();
            self.publish_released();
        }
        Ok(true)
    }

    /// [`Connection::try_send_with`] of a frame of `kind`.
    fn try_send_kind_with<F, E>(
        &mut self,
        kind: u32,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.check_sendable()?;
        check_send_len(max_len, self.peer_max_frame)?;
        if self.drain_queue(false).map_err(SendError::widen)? {
            let Some(tx) = self.tx.as_mut() else {
                return Err(SendError::Closed);
            };
            match tx.reserve_with_kind(max_len, kind) {
                Ok(mut grant) => {
                    let n = run_encoder(&mut grant, encode)?;
                    grant.commit(n);
                    self.publish_released();
                    return Ok(n);
                }
                Err(RingError::Full) => {}
                Err(e) => return Err(self.send_ring_err(e)),
            }
        }
        // No room in the ring: queue a copy, within the bound.
        if self.queued + max_len > self.queue_limit {
            return Err(SendError::QueueFull {
                queued: self.queued,
                limit: self.queue_limit,
            });
        }
        let mut frame = AlignedBytes::with_capacity(max_len);
        frame.resize(max_len, 0);
        let n = run_encoder(frame.as_mut_slice(), encode)?;
        frame.resize(n, 0);
        // What is queued holds what it counts: the room asked for is a
        // guess (an encoder's hint, often far above a small message), and
        // a queue of small frames each keeping its guess held several
        // times its bound (a stuck store subscriber: 4.6 MB of heap for
        // 1 MiB of notes counted, the attack on `42d03ed`).
        frame.shrink_to_fit();
        self.queued += n;
        self.queue.push_back((kind, frame));
        Ok(n)
    }

    /// The Mux's flush: moves what fits of the queue into the ring and, if
    /// something is still queued, asks the peer to wake this side's eventfd
    /// when it frees room. `true` while output is still queued.
    pub(crate) fn flush_queued(&mut self) -> bool {
        loop {
            match self.drain_queue(false) {
                Ok(true) | Err(_) => return false,
                Ok(false) => {}
            }
            let len = self.queue.front().map_or(0, |(_, f)| f.len());
            match self.tx.as_mut().map(|tx| tx.arm_eventfd(len)) {
                // Armed: the peer's next release wakes us.
                Some(Ok(true)) => return true,
                // Room appeared meanwhile: drain again.
                Some(Ok(false)) => continue,
                _ => return false,
            }
        }
    }
}

impl Connection for ShmConnection {
    type Frame<'a> = ShmFrame<'a>;

    fn kind(&self) -> TransportKind {
        TransportKind::Shm
    }

    fn cut_off(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.cut_off();
        }
        if let Some(rx) = self.rx.as_mut() {
            rx.cut_off();
        }
        note_violation(&mut self.violation, &RingError::Poisoned);
    }

    fn farewell(&mut self, reason: &str) {
        send_farewell(&self.sock, reason, &mut self.farewell_sent);
    }

    fn linger_longer(&mut self, extra: Duration) {
        if let Some(charge) = self.ring_charge.as_mut() {
            charge.linger_longer(extra);
        }
    }

    fn peer_worker_id(&self) -> WorkerId {
        self.peer
    }

    fn max_send_len(&self) -> usize {
        self.peer_max_frame
    }

    fn send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.send_kind_with(MESSAGE_KIND, max_len, encode)
    }

    fn carries_tags(&self) -> bool {
        true
    }

    fn send_tagged_with<F, E>(
        &mut self,
        tag: FrameTag,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.send_kind_with(tag_kind(tag), max_len, encode)
    }

    fn try_send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.try_send_kind_with(MESSAGE_KIND, max_len, encode)
    }

    fn try_send_tagged_with<F, E>(
        &mut self,
        tag: FrameTag,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.try_send_kind_with(tag_kind(tag), max_len, encode)
    }

    fn pending_send_bytes(&self) -> usize {
        self.queued
    }

    fn flush(&mut self) -> Result<(), SendError> {
        // Every send publishes its frame at once; queued ones go now.
        if let Some(e) = self.ended() {
            return Err(e.send_error());
        }
        self.drain_queue(true).map(|_| ())
    }

    fn try_recv(&mut self) -> Result<Option<ShmFrame<'_>>, RecvError> {
        Ok(self.try_recv_frame(false)?.map(|(_, f)| f))
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<ShmFrame<'_>, RecvError> {
        if !matches!(self.state, State::Open) | self.violation.is_some() {
            return Err(self.ended_recv_error());
        }
        let max_frame = self.max_frame;
        let Some(rx) = self.rx.as_mut() else {
            return Err(RecvError::Closed);
        };
        // A relative deadline: a frame that is already there costs no clock
        // read.
        match rx.peek_blocking(&self.rx_waiter, timeout) {
            Ok(f) => match wrap(f, max_frame, false) {
                Ok((_, f)) => Ok(f),
                Err(why) => Err(refuse_frame(
                    &mut self.tx,
                    &mut self.violation,
                    &mut self.refused,
                    &mut self.state,
                    &self.sock,
                    &mut self.farewell_sent,
                    why,
                )),
            },
            Err(e) => Err(recv_ring_failure(
                &mut self.tx,
                &self.live,
                &mut self.violation,
                self.peer,
                e,
            )),
        }
    }

    fn recv_private_timeout(&mut self, timeout: Duration) -> Result<&[u8], RecvError> {
        // The snapshot buffer is moved out for the frame's borrow of `self`
        // (a `Vec` move, no allocation); the frame is released as soon as it
        // has been copied.
        let mut snap = std::mem::take(&mut self.snapshot);
        let len = self.recv_timeout(timeout).map(|f| copy_into(&mut snap, &f));
        self.snapshot = snap;
        Ok(&self.snapshot.as_slice()[..len?])
    }

    fn try_recv_private(&mut self) -> Result<Option<&[u8]>, RecvError> {
        let mut snap = std::mem::take(&mut self.snapshot);
        let len = self.try_recv().map(|f| f.map(|f| copy_into(&mut snap, &f)));
        self.snapshot = snap;
        Ok(len?.map(|n| &self.snapshot.as_slice()[..n]))
    }

    fn try_recv_private_tagged(&mut self) -> Result<Option<(FrameTag, &[u8])>, RecvError> {
        let mut snap = std::mem::take(&mut self.snapshot);
        let got = self
            .try_recv_frame(true)
            .map(|f| f.map(|(tag, f)| (tag, copy_into(&mut snap, &f))));
        self.snapshot = snap;
        Ok(got?.map(|(tag, n)| (tag, &self.snapshot.as_slice()[..n])))
    }

    fn frames_shared(&self) -> bool {
        true
    }

    fn close(&mut self) -> Result<(), SendError> {
        if matches!(self.state, State::LocalClosed) {
            return Ok(());
        }
        if self.refused {
            self.cut_off();
        }
        self.state = State::LocalClosed;
        // Whether the peer is done, asked before our own shutdown, which
        // the socket reports as a hang-up too (`RingCharge::end`).
        self.peer_left_first = self.peer_done();
        // Dropping the halves sets the rings' closed flags (after publishing
        // everything) and wakes a sleeping peer.
        self.tx = None;
        self.rx = None;
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        Ok(())
    }
}

impl ShmConnection {
    /// [`Connection::try_recv`], accepting every [`FrameTag`] when
    /// `tagged` (else only messages), and the frame's tag.
    #[inline(always)]
    fn try_recv_frame(
        &mut self,
        tagged: bool,
    ) -> Result<Option<(FrameTag, ShmFrame<'_>)>, RecvError> {
        if !matches!(self.state, State::Open) | self.violation.is_some() {
            return Err(self.ended_recv_error());
        }
        // Decide about the peer's liveness *before* looking at the ring, so a
        // frame it published before dying is still returned below. With a
        // frame already committed there is nothing to decide (it is
        // returned whatever the peer's fate), so the common case of a busy
        // connection reads no clock (one read is ≈ 30 ns on a VM).
        let waiting = self.rx.as_ref().is_some_and(|rx| rx.has_frames());
        let now_dead = if waiting {
            false
        } else if self.force_check || self.last_check.elapsed() >= TRY_RECV_CHECK_INTERVAL {
            self.force_check = false;
            self.last_check = Instant::now();
            !self.live.check()
        } else {
            self.live.is_dead()
        };
        let max_frame = self.max_frame;
        let peer = self.peer;
        let dead = self.dead();
        let rx = self.rx.as_mut().ok_or(RecvError::Closed)?;
        match rx.peek() {
            Ok(Some(f)) => match wrap(f, max_frame, tagged) {
                Ok(f) => Ok(Some(f)),
                Err(why) => Err(refuse_frame(
                    &mut self.tx,
                    &mut self.violation,
                    &mut self.refused,
                    &mut self.state,
                    &self.sock,
                    &mut self.farewell_sent,
                    why,
                )),
            },
            Ok(None) if now_dead => Err(end_or_violation(
                &mut self.tx,
                &self.live,
                &mut self.violation,
                peer,
                dead.recv_error(),
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(recv_ring_failure(
                &mut self.tx,
                &self.live,
                &mut self.violation,
                peer,
                e,
            )),
        }
    }

    /// [`Connection::send_with`] of a ring frame of `kind`.
    fn send_kind_with<F, E>(
        &mut self,
        kind: u32,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        self.check_sendable()?;
        check_send_len(max_len, self.peer_max_frame)?;
        if !self.queue.is_empty() {
            // Earlier non-blocking sends go first.
            self.drain_queue(true).map_err(SendError::widen)?;
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(SendError::Closed);
        };
        // A relative deadline: a send that finds room at once reads no clock.
        let grant = tx.reserve_blocking(max_len, kind, &self.tx_waiter, self.send_timeout);
        let mut grant = match grant {
            Ok(g) => g,
            Err(e) => {
                let e = self.send_ring_err(e);
                return Err(e);
            }
        };
        let n = run_encoder(&mut grant, encode)?;
        // Publish only the bytes the encoder used: the frame's length is the
        // message's (n <= max_len, the grant's length, checked above).
        grant.commit(n);
        self.publish_released();
        Ok(n)
    }

    /// Tells the peer's producer of the room our receives freed (the ring
    /// publishes released frames lazily, see `ReadFrame::release`): after
    /// each of our own frames is committed, so it costs the round trip
    /// nothing, and from the Mux's tick, so a connection the Mux only
    /// probes (`ready_hint`) does not keep its peer short of room.
    #[inline]
    fn publish_released(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            rx.flush();
        }
    }

    /// Whether the peer will read nothing more from us: it let go of an end
    /// of its rings (a connection closes both), or hung up. After a
    /// violation the rings' flags are not believed, only the socket: a
    /// scribbled flag read as "let go" had the listener discard the rings
    /// at once, so the peer, still there, read zeros where the poisoned
    /// flag was and could only report its connection's end, not the
    /// corruption (CI on `ed85971`:
    /// `demo_cli::a_scribbled_ring_header_is_reported_as_corruption_by_both_sides`);
    /// now they linger for it as after any other cut-off.
    fn peer_done(&self) -> bool {
        let flags_trusted = self.violation.is_none() && !self.refused;
        (flags_trusted
            && (self.tx.as_ref().is_some_and(|t| t.is_abandoned())
                || self.rx.as_ref().is_some_and(|r| r.is_abandoned())))
            || !crate::sys::fdpass::peer_connected(self.sock.as_fd())
    }
}

impl Drop for ShmConnection {
    fn drop(&mut self) {
        if self.refused {
            self.cut_off();
        }
        // The listener's side: the rings' memory goes back to the host now
        // if the peer hung up, else after it had time to read its last
        // frames (`RingCharge::end`).
        if let Some(charge) = self.ring_charge.take() {
            // The ring ends first: their detaching writes the rings'
            // headers, which must not fault pages back in after the
            // discard.
            let peer_gone = if matches!(self.state, State::LocalClosed) {
                self.peer_left_first
            } else {
                self.peer_done()
            };
            drop(self.tx.take());
            drop(self.rx.take());
            charge.end(peer_gone);
        }
    }
}

impl MuxConnection for ShmConnection {
    fn register(&mut self, registry: &mio::Registry, token: Token) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        registry.register(
            &mut mio::unix::SourceFd(&self.sock.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        registry.register(
            &mut mio::unix::SourceFd(&self.my_efd.as_fd().as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        registry.deregister(&mut mio::unix::SourceFd(&self.sock.as_raw_fd()))?;
        registry.deregister(&mut mio::unix::SourceFd(&self.my_efd.as_fd().as_raw_fd()))
    }

    fn ready_hint(&self) -> bool {
        // The ring's own probe for a published frame, then the end (a
        // receive reports it).
        self.rx.as_ref().is_some_and(|rx| rx.has_frames()) || self.has_ended()
    }

    fn prepare_sleep(&mut self) -> bool {
        if self.live.is_dead() || !matches!(self.state, State::Open) {
            return false;
        }
        // The ring's announce / SeqCst fence / re-check handshake (the same
        // one its blocking waits use): either the re-check sees a frame, or
        // the peer's producer sees our flag and writes our eventfd.
        match self.rx.as_mut().map(|rx| rx.arm_eventfd()) {
            Some(Ok(armed)) => armed,
            Some(Err(e)) => {
                judge_ring_err(e, &self.tx, &self.live, &mut self.violation);
                false
            }
            None => false,
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        self.publish_released();
        self.audit();
        Some(now + AUDIT_INTERVAL)
    }

    fn flush_pending(&mut self) -> bool {
        self.flush_queued()
    }

    #[inline]
    fn has_ended(&self) -> bool {
        // A peer that closed its end of the ring, or one found dead.
        self.rx.as_ref().is_none_or(|rx| rx.is_abandoned())
            || self.live.is_dead()
            || self.violation.is_some()
            || !matches!(self.state, State::Open)
    }

    fn note_event(&mut self) {
        self.my_efd.drain();
        if let Some(rx) = self.rx.as_mut() {
            rx.disarm();
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.disarm();
        }
        self.force_check = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::Ring;

    #[test]
    fn frame_length_and_kind_are_checked() {
        use super::super::{DELTA_KIND, SHAPE_KIND};
        let (mut tx, mut rx) = Ring::heap(4096).unwrap();
        // (reserved, committed, kind, the tag a tagged receive accepts):
        // the frame is the committed length; an untagged receive accepts
        // messages only, a tagged one a shape slot below SHAPE_SLOTS too.
        let (msg, shape, delta) = (
            Some(FrameTag::Message),
            Some(FrameTag::Shape(3)),
            Some(FrameTag::Delta(0)),
        );
        for (reserved, used, kind, tag) in [
            (16usize, 16usize, MESSAGE_KIND, msg),
            (64, 20, MESSAGE_KIND, msg),
            (2000, 1000, MESSAGE_KIND, msg),
            (2000, 1001, MESSAGE_KIND, None),
            (64, 20, 7, None),
            (64, 20, SHAPE_KIND + 3, shape),
            (2000, 1001, SHAPE_KIND + 3, None),
            (64, 20, SHAPE_KIND + 4, None),
            (64, 20, DELTA_KIND, delta),
            (64, 20, DELTA_KIND + 4, None),
            (64, 20, DELTA_KIND + 256, None),
            (64, 20, 0x7fff_ffff, None),
        ] {
            let g = tx.reserve_with_kind(reserved, kind).unwrap();
            g.commit(used);
            let f = rx.peek().unwrap().unwrap();
            assert_eq!(f.len(), used);
            let why = format!("reserved {reserved} used {used} kind {kind:#x}");
            assert_eq!(check_frame(&f, 1000, true).ok(), tag, "{why}");
            assert_eq!(
                check_frame(&f, 1000, false).ok(),
                tag.filter(|&t| t == FrameTag::Message),
                "{why}"
            );
            f.release();
        }
    }
}
