//! The shared-memory transport: two SPSC rings in shared memory per
//! connection, bootstrapped over a Unix socket in the session directory.
//!
//! # Bootstrap
//!
//! 1. The listening worker binds `<session dir>/.s-<its process's lock
//!    stem>-<n>-<first 8 hex digits of its worker id>.sock`, mode 0600
//!    ([`ShmListener`]).
//! 2. The caller connects and sends the hello ([`super::handshake`])
//!    with transport = shm and, as extension, the ring capacity it wants
//!    (`u64`, a power of two).
//! 3. The listener checks version, token and intended worker (refusing with the
//!    reason otherwise), creates two ring segments in the session
//!    (`ring-<pid>-<n>-c2s`, `ring-<pid>-<n>-s2c`, mode 0600, exclusive),
//!    initialises a ring in each, attaches its halves (consumer of `c2s`,
//!    producer of `s2c`) and answers with the segment names as extension and
//!    two eventfds — its own and the caller's — as `SCM_RIGHTS`.
//! 4. The caller opens and maps both segments, attaches its halves, and sends
//!    one acknowledgement byte; the listener then unlinks both segment files.
//!    From here on nothing of the connection is visible in the file system:
//!    if both processes die, the kernel frees the memory.
//!
//! # Frames
//!
//! A message is one ring frame whose payload is the message bytes, 16-byte
//! aligned in shared memory. [`Connection::send_with`] reserves `max_len`
//! bytes in the peer's ring and the encoder writes straight into them; the
//! ring frame's `kind` word then carries the length actually used (the ring
//! itself only knows the reserved length), so a receiver hands out exactly
//! the encoded bytes. A used length larger than the frame or than the
//! receiver's maximum is a protocol violation.
//!
//! A received frame stays in shared memory, where the peer can still write
//! it: [`Connection::recv_timeout`] lends it as plain bytes, and
//! [`Connection::recv_private_timeout`] copies it into the connection's
//! private snapshot buffer first (what message receives validate; see
//! [`MessageConnection`](super::MessageConnection)).
//!
//! # Liveness
//!
//! The Unix socket stays open for the life of the connection. A peer that
//! exits — however — hangs it up; every blocking wait polls it (non-blocking,
//! at most every [`ShmOptions::check_interval`]) through the ring's liveness
//! hook, a non-blocking receive checks it at most every millisecond, and a
//! [`Mux`](super::Mux) has it registered, so a dead peer turns pending
//! receives and sends into [`TransportError::PeerDied`] within milliseconds —
//! after every frame it had committed was delivered. An orderly close sets
//! the ring's *closed* flags first, so it is reported as
//! [`TransportError::Closed`] instead.
//!
//! # Waiting
//!
//! Each side picks its own [`ShmWait`]: spin, spin-then-yield, spin-then-park
//! on the ring's shared futex word, or spin-then-eventfd. Both eventfds are
//! always exchanged, so a side in any mode can also be woken through its
//! eventfd by a [`Mux`](super::Mux).

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::poll::{wait_fds, PollFlags};
use mio::{Events, Interest, Poll, Token};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::accept::{accept_within, try_accept};
use super::aligned::AlignedBuf;
use super::handshake::{self, Hello, Wire, FIXED_LEN, MAX_EXT_LEN};
use super::{
    check_send_len, Connection, SendError, TransportConfig, TransportError, TransportKind, WorkerId,
};
use crate::ring::{
    create_ring_segment, Consumer, MappedStorage, Producer, ReadFrame, Ring, RingError,
    RingSegmentError, RingStorage, MAX_CAPACITY,
};
use crate::shm::{kind, Segment, Session};
use crate::wake::{EventFd, WaitStrategy, Waiter, DEFAULT_SPIN};

/// Smallest ring capacity a caller may ask for.
pub const MIN_RING_CAPACITY: usize = 4096;
/// Default ring capacity (each direction).
pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;
/// How often a non-blocking receive on an empty ring checks the peer's socket.
const TRY_RECV_CHECK_INTERVAL: Duration = Duration::from_millis(1);
const ACK: u8 = b'A';

/// How a side of a shared-memory connection waits for its peer (see
/// [`crate::wake::WaitStrategy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmWait {
    /// Busy-spin (lowest latency; burns a core while waiting).
    Spin,
    /// Spin for the spin window, then `sched_yield`.
    SpinYield,
    /// Spin for the spin window, then sleep on the ring's shared futex word.
    SpinPark,
    /// Spin for the spin window, then sleep on this side's eventfd.
    EventFd,
}

/// Settings of the shared-memory transport (one side).
#[derive(Debug, Clone)]
pub struct ShmOptions {
    /// How this side waits.
    pub wait: ShmWait,
    /// Spin window before yielding or sleeping.
    pub spin: Duration,
    /// Capacity of each ring (power of two); the caller's choice is used for
    /// both directions.
    pub ring_capacity: usize,
    /// Interval between liveness checks of the peer while blocked.
    pub check_interval: Duration,
}

impl Default for ShmOptions {
    /// Spin-then-park, the ring layer's default spin window, 1 MiB rings, 2 ms
    /// liveness checks.
    fn default() -> Self {
        Self {
            wait: ShmWait::SpinPark,
            spin: DEFAULT_SPIN,
            ring_capacity: DEFAULT_RING_CAPACITY,
            check_interval: Duration::from_millis(2),
        }
    }
}

impl ShmOptions {
    /// The defaults with another wait mode.
    pub fn with_wait(wait: ShmWait) -> Self {
        Self {
            wait,
            ..Self::default()
        }
    }
}

/// Maps a ring error to the transport's.
fn ring_err(e: RingError) -> TransportError {
    match e {
        RingError::PeerDied => TransportError::PeerDied("the peer's socket hung up".into()),
        RingError::Closed => TransportError::Closed,
        RingError::TimedOut => TransportError::TimedOut,
        RingError::TooLarge { len, max } => TransportError::FrameTooLarge { len, max },
        other => TransportError::Protocol(format!("shared-memory ring: {other}")),
    }
}

/// A fresh Unix-socket path for worker `worker`'s listener in `session`:
/// `.s-<stem>-<n>-<first 8 hex digits of the id>.sock`, named after this
/// process's lock file in the session (stem), so the session's cleanup
/// removes it exactly when this process is dead — and never a live
/// successor's socket under the same worker id.
pub fn socket_path(session: &Session, worker: &WorkerId) -> Result<PathBuf, crate::shm::ShmError> {
    session.owned_file_path(crate::shm::SOCKET_TAG, &socket_suffix(worker))
}

fn socket_suffix(worker: &WorkerId) -> String {
    format!("-{}.sock", &worker.to_string()[..8])
}

/// Watches the peer's Unix socket: hang-up or EOF means the peer is gone.
#[derive(Debug)]
struct SocketLiveness {
    fd: OwnedFd,
    dead: AtomicBool,
}

impl SocketLiveness {
    /// Polls the socket without blocking; remembers a death.
    fn check(&self) -> bool {
        // Relaxed: a sticky flag, no data hangs on it.
        if self.dead.load(AtomicOrdering::Relaxed) {
            return false;
        }
        let alive = match wait_fds(
            [(self.fd.as_fd(), PollFlags::IN | PollFlags::RDHUP)],
            Some(Instant::now()),
        ) {
            Ok([rev]) if rev.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP) => {
                false
            }
            Ok([rev]) if rev.contains(PollFlags::IN) => {
                // Readable without a hang-up flag: EOF (dead) or a stray byte.
                let mut b = [0u8; 1];
                match rustix::net::recv(&self.fd, &mut b, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
                    Ok((0, _)) => false,
                    Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => true,
                    Err(_) => false,
                }
            }
            Ok(_) => true,
            Err(_) => false,
        };
        if !alive {
            self.dead.store(true, AtomicOrdering::Relaxed);
        }
        alive
    }

    fn is_dead(&self) -> bool {
        self.dead.load(AtomicOrdering::Relaxed)
    }
}

fn waiter(opts: &ShmOptions, my_efd: &EventFd, live: &Arc<SocketLiveness>) -> Waiter {
    let strategy = match opts.wait {
        ShmWait::Spin => WaitStrategy::Spin,
        ShmWait::SpinYield => WaitStrategy::SpinYield { spin: opts.spin },
        ShmWait::SpinPark => WaitStrategy::SpinPark { spin: opts.spin },
        ShmWait::EventFd => WaitStrategy::EventFd {
            spin: opts.spin,
            fd: my_efd.clone(),
        },
    };
    let live = Arc::clone(live);
    Waiter::new(strategy)
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
/// [module docs](self).
pub struct ShmConnection {
    tx: Option<Producer<MappedStorage>>,
    rx: Option<Consumer<MappedStorage>>,
    tx_storage: MappedStorage,
    rx_storage: MappedStorage,
    tx_waiter: Waiter,
    rx_waiter: Waiter,
    sock: UnixStream,
    live: Arc<SocketLiveness>,
    my_efd: EventFd,
    peer: WorkerId,
    peer_max_frame: usize,
    max_frame: usize,
    send_timeout: Duration,
    state: State,
    last_check: Instant,
    force_check: bool,
    /// Private copies of received frames ([`Connection::recv_private_timeout`]).
    snapshot: AlignedBuf,
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
    len: usize,
}

impl std::fmt::Debug for ShmFrame<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmFrame").field("len", &self.len).finish()
    }
}

impl std::ops::Deref for ShmFrame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.frame {
            Some(f) => &f[..self.len],
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

/// Checks the used length a ring frame carries in its kind word (hostile
/// input: it must lie within the frame and the receiver's maximum) and
/// returns it.
fn check_used<S: RingStorage>(frame: &ReadFrame<'_, S>, max_frame: usize) -> Result<usize, String> {
    let used = frame.kind() as usize;
    if used > frame.len() || used > max_frame {
        return Err(format!(
            "frame claims {used} used bytes in a {}-byte frame (maximum {max_frame})",
            frame.len()
        ));
    }
    Ok(used)
}

/// Wraps a ring frame after checking the used length it carries.
fn wrap(frame: ReadFrame<'_, MappedStorage>, max_frame: usize) -> Result<ShmFrame<'_>, String> {
    let len = check_used(&frame, max_frame)?;
    Ok(ShmFrame {
        frame: Some(frame),
        len,
    })
}

impl ShmConnection {
    #[allow(clippy::too_many_arguments)] // assembled once, by the handshake
    fn assemble(
        tx: Producer<MappedStorage>,
        rx: Consumer<MappedStorage>,
        tx_storage: MappedStorage,
        rx_storage: MappedStorage,
        sock: UnixStream,
        my_efd: EventFd,
        peer_efd: EventFd,
        peer: WorkerId,
        peer_max_frame: usize,
        config: &TransportConfig,
        opts: &ShmOptions,
    ) -> Result<Self, TransportError> {
        let mut tx = tx;
        let mut rx = rx;
        tx.set_peer_eventfd(peer_efd.clone());
        rx.set_peer_eventfd(peer_efd);
        sock.set_read_timeout(None)?;
        sock.set_write_timeout(None)?;
        let live = Arc::new(SocketLiveness {
            fd: sock.as_fd().try_clone_to_owned()?,
            dead: AtomicBool::new(false),
        });
        let peer_max_frame = peer_max_frame.min(tx.max_payload());
        Ok(Self {
            tx_waiter: waiter(opts, &my_efd, &live),
            rx_waiter: waiter(opts, &my_efd, &live),
            tx: Some(tx),
            rx: Some(rx),
            tx_storage,
            rx_storage,
            sock,
            live,
            my_efd,
            peer,
            peer_max_frame,
            max_frame: config.max_frame_len,
            send_timeout: config.send_timeout,
            state: State::Open,
            last_check: Instant::now(),
            force_check: false,
            snapshot: AlignedBuf::default(),
        })
    }

    fn state_error(&self) -> Option<TransportError> {
        match &self.state {
            State::Open => None,
            State::LocalClosed => Some(TransportError::Closed),
            State::Broken(why) => Some(TransportError::Protocol(why.clone())),
        }
    }

    fn dead_error(&self) -> TransportError {
        TransportError::PeerDied(format!("worker {} hung up its socket", self.peer))
    }

    /// The Unix socket (registered by the [`Mux`](super::Mux); its hang-up
    /// means the peer died).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// This side's eventfd (written by the peer when this side sleeps on it).
    pub fn eventfd(&self) -> &EventFd {
        &self.my_efd
    }

    /// Checks the peer's socket now (non-blocking). `false` once it is dead.
    pub fn peer_alive(&self) -> bool {
        self.live.check()
    }
}

impl Connection for ShmConnection {
    type Frame<'a> = ShmFrame<'a>;

    fn kind(&self) -> TransportKind {
        TransportKind::Shm
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
        if let Some(e) = self.state_error() {
            return Err(e.into());
        }
        check_send_len(max_len, self.peer_max_frame)?;
        if self.live.is_dead() {
            return Err(self.dead_error().into());
        }
        // Pairs with the Release store in the peer's Consumer::drop: the peer
        // closed its end, nothing we send would be read.
        if self
            .tx_storage
            .header()
            .meta
            .0
            .consumer_closed
            .load(crate::sync::Ordering::Acquire)
            != 0
        {
            return Err(TransportError::Closed.into());
        }
        let Some(tx) = self.tx.as_mut() else {
            return Err(TransportError::Closed.into());
        };
        // A relative deadline: a send that finds room at once reads no clock.
        let grant = tx.reserve_blocking(max_len, 0, &self.tx_waiter, self.send_timeout);
        let mut grant = match grant {
            Ok(g) => g,
            Err(RingError::PeerDied) => return Err(self.dead_error().into()),
            Err(e) => return Err(ring_err(e).into()),
        };
        let n = encode(&mut grant).map_err(SendError::Encode)?;
        if n > max_len {
            return Err(TransportError::Protocol(format!(
                "encoder reported {n} bytes for a {max_len}-byte grant"
            ))
            .into());
        }
        // The used length rides in the frame kind (see the module docs); it
        // is below the ring's maximum payload, so never the padding kind.
        grant
            .set_kind(n as u32)
            .map_err(|e| SendError::Transport(ring_err(e)))?;
        grant.commit();
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), TransportError> {
        // Every send publishes its frame at once.
        match self.state_error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn try_recv(&mut self) -> Result<Option<ShmFrame<'_>>, TransportError> {
        if let Some(e) = self.state_error() {
            return Err(e);
        }
        // Decide about the peer's liveness *before* looking at the ring, so a
        // frame it published before dying is still returned below.
        let now_dead = if self.force_check || self.last_check.elapsed() >= TRY_RECV_CHECK_INTERVAL {
            self.force_check = false;
            self.last_check = Instant::now();
            !self.live.check()
        } else {
            self.live.is_dead()
        };
        let max_frame = self.max_frame;
        let rx = self.rx.as_mut().ok_or(TransportError::Closed)?;
        match rx.peek() {
            Ok(Some(f)) => match wrap(f, max_frame) {
                Ok(f) => Ok(Some(f)),
                Err(why) => {
                    self.state = State::Broken(why.clone());
                    Err(TransportError::Protocol(why))
                }
            },
            Ok(None) if now_dead => {
                Err(TransportError::PeerDied("the peer's socket hung up".into()))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ring_err(e)),
        }
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<ShmFrame<'_>, TransportError> {
        if let Some(e) = self.state_error() {
            return Err(e);
        }
        let max_frame = self.max_frame;
        let rx = self.rx.as_mut().ok_or(TransportError::Closed)?;
        // A relative deadline: a frame that is already there costs no clock
        // read.
        match rx.peek_blocking(&self.rx_waiter, timeout) {
            Ok(f) => match wrap(f, max_frame) {
                Ok(f) => Ok(f),
                Err(why) => {
                    self.state = State::Broken(why.clone());
                    Err(TransportError::Protocol(why))
                }
            },
            Err(e) => Err(ring_err(e)),
        }
    }

    fn recv_private_timeout(&mut self, timeout: Duration) -> Result<&[u8], TransportError> {
        // The snapshot buffer is moved out for the frame's borrow of `self`
        // (a `Vec` move, no allocation); the frame is released as soon as it
        // has been copied.
        let mut snap = std::mem::take(&mut self.snapshot);
        let len = self.recv_timeout(timeout).map(|f| snap.copy_from(&f));
        self.snapshot = snap;
        Ok(&self.snapshot.bytes()[..len?])
    }

    fn try_recv_private(&mut self) -> Result<Option<&[u8]>, TransportError> {
        let mut snap = std::mem::take(&mut self.snapshot);
        let len = self.try_recv().map(|f| f.map(|f| snap.copy_from(&f)));
        self.snapshot = snap;
        Ok(len?.map(|n| &self.snapshot.bytes()[..n]))
    }

    fn frames_shared(&self) -> bool {
        true
    }

    fn close(&mut self) -> Result<(), TransportError> {
        if matches!(self.state, State::LocalClosed) {
            return Ok(());
        }
        self.state = State::LocalClosed;
        // Dropping the halves sets the rings' closed flags (after publishing
        // everything) and wakes a sleeping peer.
        self.tx = None;
        self.rx = None;
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
        Ok(())
    }
}

impl super::MuxConnection for ShmConnection {
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
        let h = self.rx_storage.header();
        // Acquire pairs with the Release store of head in the peer's
        // Producer::flush (as in Consumer::try_next); tail is ours.
        let head = h.head.0.load(crate::sync::Ordering::Acquire);
        let tail = h.tail.0.load(crate::sync::Ordering::Relaxed);
        head != tail
            || h.meta
                .0
                .producer_closed
                .load(crate::sync::Ordering::Relaxed)
                != 0
            || self.live.is_dead()
            || !matches!(self.state, State::Open)
    }

    fn prepare_sleep(&mut self) -> bool {
        if self.live.is_dead() || !matches!(self.state, State::Open) {
            return false;
        }
        // The ring's announce / SeqCst fence / re-check handshake (the same
        // one its blocking waits use): either the re-check sees a frame, or
        // the peer's producer sees our flag and writes our eventfd.
        match self.rx.as_mut() {
            Some(rx) => matches!(rx.arm_eventfd(), Ok(true)),
            None => false,
        }
    }

    fn note_event(&mut self) {
        self.my_efd.drain();
        if let Some(rx) = self.rx.as_mut() {
            rx.disarm();
        }
        self.force_check = true;
    }
}

// ------------------------------------------------------------------ bootstrap

static RING_COUNTER: AtomicU64 = AtomicU64::new(0);

fn check_capacity(cap: u64) -> Result<usize, TransportError> {
    if !cap.is_power_of_two() || cap < MIN_RING_CAPACITY as u64 || cap > MAX_CAPACITY as u64 {
        return Err(TransportError::Protocol(format!(
            "ring capacity {cap} is not a power of two in [{MIN_RING_CAPACITY}, {MAX_CAPACITY}]"
        )));
    }
    Ok(cap as usize)
}

/// Creates, initialises and publishes one ring segment.
fn create_ring(
    session: &Session,
    name: &str,
    cap: usize,
) -> Result<(Arc<Segment>, MappedStorage), TransportError> {
    let seg = create_ring_segment(session, name, cap).map_err(|e| match e {
        RingSegmentError::Shm(e) => TransportError::from(e),
        RingSegmentError::Ring(e) => ring_err(e),
    })?;
    let storage = map_ring(&seg)?;
    Ok((seg, storage))
}

fn map_ring(seg: &Arc<Segment>) -> Result<MappedStorage, TransportError> {
    MappedStorage::from_segment(Arc::clone(seg)).map_err(ring_err)
}

fn io_hs(e: std::io::Error) -> TransportError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => TransportError::TimedOut,
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => {
            TransportError::PeerDied("peer hung up during the handshake".into())
        }
        _ => TransportError::Io(e),
    }
}

/// A worker's shared-memory listener: a Unix socket in the session directory
/// (removed on drop).
pub struct ShmListener {
    listener: mio::net::UnixListener,
    poll: Poll,
    events: Events,
    path: PathBuf,
    ident: (u64, u64),
    session: Session,
    config: TransportConfig,
    opts: ShmOptions,
}

impl std::fmt::Debug for ShmListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmListener")
            .field("path", &self.path)
            .field("worker", &self.config.worker_id)
            .finish()
    }
}

impl ShmListener {
    /// Listens for worker `config.worker_id` in `session`. A socket file left
    /// by a dead worker with the same id is replaced; a live one is an error.
    pub fn bind(
        session: &Session,
        config: TransportConfig,
        opts: ShmOptions,
    ) -> Result<Self, TransportError> {
        let path = socket_path(session, &config.worker_id)?;
        // Another socket of this worker id that accepts: a live worker. A
        // dead one's socket is left to the session cleanup (it is named
        // after its dead owner's lock), never removed here.
        let id_suffix = socket_suffix(&config.worker_id);
        for ent in std::fs::read_dir(session.dir())?.flatten() {
            let other = ent.path();
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".s-")
                && name.ends_with(&id_suffix)
                && UnixStream::connect(&other).is_ok()
            {
                return Err(TransportError::Refused(format!(
                    "a live worker already listens on {}",
                    other.display()
                )));
            }
        }
        let named = |op: &str, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
        };
        let mut listener = mio::net::UnixListener::bind(&path).map_err(|e| named("bind", e))?;
        // 0600 like every other file of the session (bind applies the umask).
        if let Err(e) =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        {
            let _ = std::fs::remove_file(&path);
            return Err(named("chmod 0600", e).into());
        }
        let md = std::fs::symlink_metadata(&path)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, Token(0), Interest::READABLE)?;
        Ok(Self {
            listener,
            poll,
            events: Events::with_capacity(8),
            path,
            ident: (md.dev(), md.ino()),
            session: session.clone(),
            config,
            opts,
        })
    }

    /// The socket's path (published in the [`Directory`](super::Directory)).
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The mio listener (to wait for callers on another `Poll`).
    pub fn listener(&self) -> &mio::net::UnixListener {
        &self.listener
    }

    /// Accepts one connection, waiting at most `timeout` for a caller. A
    /// refused hello is answered and reported as its error; the listener
    /// stays usable.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<ShmConnection, TransportError> {
        let listener = &self.listener;
        match accept_within(&mut self.poll, &mut self.events, timeout, || {
            listener.accept()
        })? {
            Some((stream, _)) => self.handshake(stream.into()),
            None => Err(TransportError::TimedOut),
        }
    }

    /// Accepts a caller whose connection is already pending (used by
    /// [`Listener`](super::Listener)); `Ok(None)` if none is.
    pub(crate) fn try_accept(&mut self) -> Result<Option<ShmConnection>, TransportError> {
        match try_accept(|| self.listener.accept())? {
            Some((stream, _)) => self.handshake(stream.into()).map(Some),
            None => Ok(None),
        }
    }

    fn handshake(&mut self, stream: UnixStream) -> Result<ShmConnection, TransportError> {
        let config = &self.config;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(config.handshake_timeout))?;
        stream.set_write_timeout(Some(config.handshake_timeout))?;
        let mut s = &stream;
        let hello = handshake::read_hello(&mut s)?;
        let (mut reply, verdict) = handshake::judge(
            hello,
            config.worker_id,
            &config.token,
            Wire::Shm,
            config.max_frame_u32(),
        );
        let hello = match verdict {
            Ok(h) => h,
            Err(e) => {
                handshake::write_msg(&mut s, &reply.encode(), "handshake reply")?;
                return Err(e);
            }
        };
        let cap = match hello.ext.get(..8) {
            Some(b) => check_capacity(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
            None => Err(TransportError::Protocol(
                "shm hello without ring capacity".into(),
            )),
        };
        let cap = match cap {
            Ok(c) => c,
            Err(e) => {
                reply.status = handshake::Status::Refused;
                handshake::write_msg(&mut s, &reply.encode(), "handshake reply")?;
                return Err(e);
            }
        };
        let session = &self.session;
        let setup = || -> Result<_, TransportError> {
            // A name can be taken by a segment a dead process with our (reused)
            // pid left behind: skip to the next number.
            let mut attempt = 0;
            let (c2s_name, s2c_name, c2s_seg, c2s, s2c_seg, s2c) =
                loop {
                    let n = RING_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
                    let base = format!("ring-{}-{n}", std::process::id());
                    let (c2s_name, s2c_name) = (format!("{base}-c2s"), format!("{base}-s2c"));
                    let made = create_ring(session, &c2s_name, cap)
                        .and_then(|a| create_ring(session, &s2c_name, cap).map(|b| (a, b)));
                    match made {
                        Ok(((c2s_seg, c2s), (s2c_seg, s2c))) => {
                            break (c2s_name, s2c_name, c2s_seg, c2s, s2c_seg, s2c)
                        }
                        Err(TransportError::Shm(crate::shm::ShmError::AlreadyExists {
                            ..
                        })) if attempt < 16 => attempt += 1,
                        Err(e) => return Err(e),
                    }
                };
            let rx = Ring::attach_consumer(c2s.clone()).map_err(ring_err)?;
            let tx = Ring::attach_producer(s2c.clone()).map_err(ring_err)?;
            let my_efd = EventFd::new()?;
            let peer_efd = EventFd::new()?;
            Ok((
                c2s_name, s2c_name, c2s_seg, c2s, s2c_seg, s2c, rx, tx, my_efd, peer_efd,
            ))
        };
        let (c2s_name, s2c_name, c2s_seg, c2s, s2c_seg, s2c, rx, tx, my_efd, peer_efd) =
            match setup() {
                Ok(v) => v,
                Err(e) => {
                    // Tell the caller instead of just hanging up.
                    reply.status = handshake::Status::Refused;
                    let _ = handshake::write_msg(&mut s, &reply.encode(), "handshake reply");
                    return Err(e);
                }
            };
        let mut ext = (cap as u64).to_le_bytes().to_vec();
        for name in [&c2s_name, &s2c_name] {
            ext.push(name.len() as u8);
            ext.extend_from_slice(name.as_bytes());
        }
        reply.ext = ext;
        let bytes = reply.encode();
        // The reply travels with both eventfds: ours first, then the caller's.
        let fds = [my_efd.as_fd(), peer_efd.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        let sent = rustix::net::sendmsg(
            &stream,
            &[IoSlice::new(&bytes)],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
        if sent < bytes.len() {
            (&stream).write_all(&bytes[sent..]).map_err(io_hs)?;
        }
        let mut ack = [0u8; 1];
        (&stream).read_exact(&mut ack).map_err(io_hs)?;
        if ack[0] != ACK {
            return Err(TransportError::Protocol(format!(
                "bad shm handshake acknowledgement {:#x}",
                ack[0]
            )));
        }
        // Both sides have mapped the rings: remove the names. The memory
        // lives as long as a mapping does.
        c2s_seg.unlink()?;
        s2c_seg.unlink()?;
        ShmConnection::assemble(
            tx,
            rx,
            s2c,
            c2s,
            stream,
            my_efd,
            peer_efd,
            hello.from,
            hello.max_frame as usize,
            config,
            &self.opts,
        )
    }
}

impl Drop for ShmListener {
    fn drop(&mut self) {
        // Only remove the socket file if it is still ours.
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Opens a shared-memory connection to the worker `intended` listening on
/// the Unix socket `socket` of `session`.
pub fn connect_shm(
    session: &Session,
    socket: &Path,
    intended: WorkerId,
    config: &TransportConfig,
    opts: &ShmOptions,
) -> Result<ShmConnection, TransportError> {
    let cap = check_capacity(opts.ring_capacity as u64)?;
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            TransportError::NoSuchWorker(format!(
                "{intended} (nobody listens on {})",
                socket.display()
            ))
        }
        _ => TransportError::Io(e),
    })?;
    stream.set_read_timeout(Some(config.handshake_timeout))?;
    stream.set_write_timeout(Some(config.handshake_timeout))?;
    let hello = Hello {
        wire: Wire::Shm,
        max_frame: config.max_frame_u32(),
        from: config.worker_id,
        intended,
        token: config.token,
        ext: (cap as u64).to_le_bytes().to_vec(),
    };
    handshake::write_msg(&mut &stream, &hello.encode(), "hello")?;

    // The first bytes of the reply carry the eventfds.
    let mut fixed = [0u8; FIXED_LEN];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            &stream,
            &mut [IoSliceMut::new(&mut fixed)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => break m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_hs(e.into())),
        }
    };
    if got == 0 {
        return Err(TransportError::PeerDied(
            "listener hung up during the handshake".into(),
        ));
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    (&stream).read_exact(&mut fixed[got..]).map_err(io_hs)?;
    let ext_len = u32::from_le_bytes(fixed[88..92].try_into().expect("4 bytes")) as usize;
    if ext_len > MAX_EXT_LEN {
        return Err(TransportError::Protocol(format!(
            "reply extension of {ext_len} bytes"
        )));
    }
    let mut whole = fixed.to_vec();
    whole.resize(FIXED_LEN + ext_len, 0);
    (&stream)
        .read_exact(&mut whole[FIXED_LEN..])
        .map_err(io_hs)?;
    let reply = handshake::read_reply(&mut &whole[..])?;
    handshake::check_reply(&reply, intended)?;

    // Extension: capacity, then two length-prefixed segment names.
    let bad = || TransportError::Protocol("malformed shm handshake reply".into());
    let ext = &reply.ext;
    let rcap = u64::from_le_bytes(ext.get(..8).ok_or_else(bad)?.try_into().expect("8 bytes"));
    if rcap != cap as u64 {
        return Err(TransportError::Protocol(format!(
            "listener made rings of {rcap} bytes, asked for {cap}"
        )));
    }
    let mut at = 8;
    let mut names = Vec::with_capacity(2);
    for _ in 0..2 {
        let len = *ext.get(at).ok_or_else(bad)? as usize;
        let name = std::str::from_utf8(ext.get(at + 1..at + 1 + len).ok_or_else(bad)?)
            .map_err(|_| bad())?;
        names.push(name.to_owned());
        at += 1 + len;
    }
    if fds.len() != 2 {
        return Err(TransportError::Protocol(format!(
            "expected 2 eventfds with the reply, got {}",
            fds.len()
        )));
    }
    let my_fd = fds.pop().expect("two fds");
    let peer_fd = fds.pop().expect("two fds");
    let my_efd = EventFd::from_owned(my_fd)?;
    let peer_efd = EventFd::from_owned(peer_fd)?;

    let open = |name: &str| -> Result<(Arc<Segment>, MappedStorage), TransportError> {
        let seg = Arc::new(Segment::open(session, name, kind::RING)?);
        if seg.payload_len() != MappedStorage::required_len(cap) {
            return Err(TransportError::Protocol(format!(
                "segment {name} has {} bytes, expected {}",
                seg.payload_len(),
                MappedStorage::required_len(cap)
            )));
        }
        let st = map_ring(&seg)?;
        Ok((seg, st))
    };
    let (_c2s_seg, c2s) = open(&names[0])?;
    let (_s2c_seg, s2c) = open(&names[1])?;
    let tx = Ring::attach_producer(c2s.clone()).map_err(ring_err)?;
    let rx = Ring::attach_consumer(s2c.clone()).map_err(ring_err)?;
    (&stream).write_all(&[ACK]).map_err(io_hs)?;
    ShmConnection::assemble(
        tx,
        rx,
        c2s,
        s2c,
        stream,
        my_efd,
        peer_efd,
        reply.responder,
        reply.max_frame as usize,
        config,
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_length_is_checked() {
        let (mut tx, mut rx) = Ring::heap(4096).unwrap();
        for (reserved, used) in [(16usize, 16u32), (16, 17), (64, 20), (64, 2000)] {
            let mut g = tx.reserve(reserved).unwrap();
            g.set_kind(used).unwrap();
            g.commit();
            let f = rx.peek().unwrap().unwrap();
            let ok = check_used(&f, 1000).is_ok();
            assert_eq!(
                ok,
                used as usize <= reserved && used <= 1000,
                "reserved {reserved} used {used}"
            );
            f.release();
        }
        assert!(check_capacity(1000).is_err());
        assert!(check_capacity(2048).is_err());
        assert!(check_capacity(1 << 40).is_err());
        assert_eq!(check_capacity(1 << 16).unwrap(), 1 << 16);
    }
}
