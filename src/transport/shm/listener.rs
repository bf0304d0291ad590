//! The listening side: [`ShmListener`], a Unix socket in the session
//! directory, and its half of the bootstrap (judge the hello, make the
//! rings, pass the eventfds, wait for the acknowledgement).

use std::collections::VecDeque;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::bootstrap::{capacity_limit, check_capacity, create_rings, HelloExt, ReplyExt};
use super::connection::ShmConnection;
use super::{socket_path, socket_suffix, ShmOptions, ACK, MIN_RING_CAPACITY};
use crate::ring::{Consumer, MappedStorage, Producer, Ring};
use crate::shm::{AnonSegment, Session};
use crate::sys::fdpass::send_with_fds;
use crate::transport::accept::{
    accept_within, drive_blocking, try_accept, write_fresh, Handshake, HelloReader,
};
use crate::transport::handshake::{self, Fixed, Hello, Reply, Status, Wire};
use crate::transport::{ConnectError, TransportConfig};
use crate::wake::EventFd;

/// A worker's shared-memory listener: a Unix socket in the session directory
/// (removed on drop).
pub struct ShmListener {
    listener: mio::net::UnixListener,
    poll: Poll,
    events: Events,
    path: PathBuf,
    ident: (u64, u64),
    config: TransportConfig,
    opts: ShmOptions,
    /// The memory its connections' rings hold ([`ShmOptions::max_ring_memory`]).
    budget: Arc<RingBudget>,
    /// [`accept_timeout`](Self::accept_timeout)'s descriptor reserve
    /// (see `accept_within`): opened at its first call, so a listener
    /// driven through [`Listener`](crate::transport::Listener) (which
    /// keeps its own) holds none.
    spare: crate::sys::fs::SpareDescriptor,
}

/// How long the rings of a connection the listener's side ended first
/// stay whole (and charged) for the peer to read its last frames, e.g. the
/// reply to an actor's terminate, before their memory is discarded (2 s).
pub(crate) const RING_LINGER: Duration = Duration::from_secs(2);

/// At most this many ended connections' rings linger at once (two memfds
/// and two mappings each): one more discards the oldest before its
/// [`RING_LINGER`] is over. Without a bound, connections ended fast
/// (a caller superseding its own connection again and again, fresh ids cut
/// off for junk) piled their descriptors up to the process's limit, after
/// which every hello was refused until the linger passed (attack on
/// `742dfdb`).
pub(crate) const MAX_LINGERING: usize = 64;

/// The ring memory of a listener's connections, against
/// [`ShmOptions::max_ring_memory`]. A connection's rings are charged from
/// its hello until their memory is discarded ([`AnonSegment::discard`]),
/// not merely until the connection ends: the caller was handed the memfds
/// and may keep them (and the memory) after hanging up. A mutex, not an
/// atomic: it is taken once per handshake and once per connection's end.
#[derive(Debug)]
pub(crate) struct RingBudget {
    limit: usize,
    /// Bytes of rings above [`super::DEFAULT_RING_CAPACITY`] made per
    /// second at most, on average (see [`RingBudget::reserve`]); twice that
    /// in a burst.
    large_rate: usize,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// Bytes charged: rings live or lingering.
    used: usize,
    /// Rings of connections ended by this side while the peer was still
    /// there, oldest first, discarded (and refunded) at their deadline or
    /// when [`MAX_LINGERING`] newer ones came after them.
    lingering: VecDeque<(Instant, [Arc<AnonSegment>; 2], usize)>,
    /// The bytes of large rings that may be made now (a token bucket:
    /// `large_rate` a second, up to twice that), as of when; `None`: full.
    large: Option<(Instant, usize)>,
}

impl BudgetState {
    /// Discards the lingering rings whose deadline passed.
    fn reap(&mut self, now: Instant) {
        let mut refund = 0;
        self.lingering.retain(|(until, rings, bytes)| {
            if *until > now {
                return true;
            }
            discard(rings);
            refund += bytes;
            false
        });
        self.used = self.used.saturating_sub(refund);
    }

    /// Lets one more connection's rings linger, [`RING_LINGER`] and
    /// `extra`: the oldest lingering ones go first while [`MAX_LINGERING`]
    /// are already there. Each is discarded at its own deadline (the
    /// queue, at most [`MAX_LINGERING`], is scanned whole at each reap), or
    /// when pushed out, oldest first.
    fn linger(&mut self, rings: [Arc<AnonSegment>; 2], bytes: usize, extra: Duration) {
        let now = Instant::now();
        self.reap(now);
        while self.lingering.len() >= MAX_LINGERING {
            let Some((_, old, old_bytes)) = self.lingering.pop_front() else {
                break;
            };
            discard(&old);
            self.used = self.used.saturating_sub(old_bytes);
        }
        let until = crate::deadline_after(now, RING_LINGER.saturating_add(extra));
        self.lingering.push_back((until, rings, bytes));
    }
}

/// Gives both rings' memory back to the host (logged if refused, which a
/// memfd shmwire made does not do).
fn discard(rings: &[Arc<AnonSegment>; 2]) {
    for r in rings {
        if let Err(e) = r.discard() {
            tracing::warn!(error = %e, "could not discard a connection's ring memory");
        }
    }
}

impl RingBudget {
    fn new(limit: usize, large_rate: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            large_rate,
            state: Mutex::new(BudgetState::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves the rings of one connection: `asked` bytes each (a power
    /// of two), or the largest power of two that fits what is left; `None`
    /// when not even two [`MIN_RING_CAPACITY`] rings do.
    ///
    /// Making a ring reserves (zeroes) its memory on the accepting thread —
    /// a worker's loop — and discarding it at the connection's end gives it
    /// back, ≈ 18 ms for two 64 MiB rings: a token holder connecting and
    /// hanging up in a loop with the largest rings took an honest caller's
    /// sync calls from ≈ 1 µs to an 11 ms median (attack on `c901956`). So
    /// rings above [`super::DEFAULT_RING_CAPACITY`] (1 MiB) are made for at
    /// most `large_rate` bytes (both directions) a second — twice the
    /// listener's `max_ring_capacity`: one connection with the largest
    /// rings a second, two in a burst; beyond it a connection gets
    /// default-sized rings (the reply says so, as for any smaller grant).
    fn reserve(&self, asked: usize) -> Option<usize> {
        let now = Instant::now();
        let mut st = self.state();
        st.reap(now);
        let left = self.limit.saturating_sub(st.used) / 2;
        if left < MIN_RING_CAPACITY {
            return None;
        }
        let mut asked = asked;
        let large = super::DEFAULT_RING_CAPACITY;
        let burst = 2 * self.large_rate;
        let tokens = match st.large {
            None => burst,
            Some((at, tokens)) => {
                let refill = now.saturating_duration_since(at).as_nanos() * self.large_rate as u128
                    / 1_000_000_000;
                usize::try_from(refill)
                    .unwrap_or(usize::MAX)
                    .saturating_add(tokens)
                    .min(burst)
            }
        };
        if asked > large && 2 * asked > tokens {
            asked = large;
        }
        let cap = asked.min(1 << left.ilog2());
        st.used += 2 * cap;
        let spent = if cap > large { 2 * cap } else { 0 };
        st.large = Some((now, tokens - spent));
        Some(cap)
    }

    /// Gives back a reservation whose rings were never made.
    fn unreserve(&self, cap: usize) {
        let mut st = self.state();
        st.used = st.used.saturating_sub(2 * cap);
    }

    /// Bytes charged now (lingering rings past their deadline discarded
    /// first).
    fn used(&self) -> usize {
        let mut st = self.state();
        st.reap(Instant::now());
        st.used
    }
}

/// One connection's rings in its listener's [`RingBudget`]. Ended with
/// [`RingCharge::end`] by the connection; dropped otherwise (a handshake
/// that failed after the rings were made: no peer will read them), it
/// discards the rings at once.
#[derive(Debug)]
pub(crate) struct RingCharge {
    budget: Arc<RingBudget>,
    bytes: usize,
    rings: Option<[Arc<AnonSegment>; 2]>,
    /// How much longer than [`RING_LINGER`] the rings linger when this
    /// side ends the connection first
    /// ([`Connection::linger_longer`](crate::transport::Connection::linger_longer)).
    extra: Duration,
}

impl RingCharge {
    /// Lets the rings linger `extra` longer than [`RING_LINGER`] if this
    /// side ends the connection while the peer is still there.
    pub(crate) fn linger_longer(&mut self, extra: Duration) {
        self.extra = extra;
    }

    /// The listener's side of the connection ends. A peer that hung up
    /// reads nothing more: the rings are discarded now. A peer still there
    /// may read its last frames: the rings linger, charged, for
    /// [`RING_LINGER`] and any extra time given
    /// ([`RingCharge::linger_longer`]), or until [`MAX_LINGERING`] later
    /// ones push them out.
    pub(crate) fn end(mut self, peer_gone: bool) {
        let Some(rings) = self.rings.take() else {
            return;
        };
        if peer_gone {
            discard(&rings);
            let mut st = self.budget.state();
            st.used = st.used.saturating_sub(self.bytes);
        } else {
            self.budget.state().linger(rings, self.bytes, self.extra);
        }
    }
}

impl Drop for RingCharge {
    fn drop(&mut self) {
        if let Some(rings) = self.rings.take() {
            discard(&rings);
            let mut st = self.budget.state();
            st.used = st.used.saturating_sub(self.bytes);
        }
    }
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
    /// by a dead worker with the same id is replaced; a live one is an error
    /// ([`ConnectError::Refused`]).
    pub fn bind(
        session: &Session,
        config: TransportConfig,
        opts: ShmOptions,
    ) -> Result<Self, ConnectError> {
        let path = socket_path(session, &config.worker_id).map_err(ConnectError::Segment)?;
        // Another socket of this worker id that accepts: a live worker. A
        // dead one's socket is left to the session cleanup (it is named
        // after its dead owner's lock), never removed here.
        let id_suffix = socket_suffix(&config.worker_id);
        let entries = std::fs::read_dir(session.dir()).map_err(ConnectError::io("list session"))?;
        for ent in entries.flatten() {
            let other = ent.path();
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".s-")
                && name.ends_with(&id_suffix)
                && UnixStream::connect(&other).is_ok()
            {
                return Err(ConnectError::Refused {
                    reason: format!("a live worker already listens on {}", other.display()),
                });
            }
        }
        // `sun_path` holds 108 bytes with the terminating NUL: say which
        // path is too long and what to shorten, not the kernel's SUN_LEN.
        const SUN_PATH_MAX: usize = 107;
        let len = path.as_os_str().len();
        if len > SUN_PATH_MAX {
            return Err(ConnectError::Io {
                op: "bind Unix socket",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "the socket path {} is {len} bytes, more than the {SUN_PATH_MAX} a Unix \
                         socket address holds: use a shorter session root ({}) or session name \
                         (a relative root counts with the directory it was given in: sessions \
                         make it absolute)",
                        path.display(),
                        crate::shm::ROOT_ENV
                    ),
                ),
            });
        }
        let (mut listener, ident) = bind_socket(&path)?;
        let poll = Poll::new().map_err(ConnectError::io("create poll"))?;
        poll.registry()
            .register(&mut listener, Token(0), Interest::READABLE)
            .map_err(ConnectError::io("register listener"))?;
        Ok(Self {
            listener,
            poll,
            events: Events::with_capacity(8),
            path,
            ident,
            budget: RingBudget::new(
                opts.max_ring_memory,
                2 * capacity_limit(opts.max_ring_capacity),
            ),
            config,
            opts,
            spare: crate::sys::fs::SpareDescriptor::default(),
        })
    }

    /// Bytes of ring memory its connections (handshakes under way, and
    /// connections it ended lingering for `RING_LINGER`, 2 s) hold now,
    /// against [`ShmOptions::max_ring_memory`]. Also discards the lingering
    /// rings whose time is up (the worker calls it every
    /// [`LISTENER_CHECK_INTERVAL`](crate::transport::LISTENER_CHECK_INTERVAL)).
    pub fn ring_memory(&self) -> usize {
        self.budget.used()
    }

    /// Discards the rings of connections it ended whose
    /// [`RING_LINGER`] is over (from [`Listener::restore`](crate::transport::Listener::restore)).
    pub(crate) fn discard_lingering_rings(&self) {
        self.budget.state().reap(Instant::now());
    }

    /// Whether the socket file under its path is still the one this
    /// listener bound (`false` once it was removed or another file was
    /// renamed over it: callers can no longer reach this listener).
    pub fn intact(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ident)
    }

    /// Binds the socket again at its path when [`ShmListener::intact`] is
    /// `false`: whatever file is under the path now is removed first (the
    /// path is named after this process's lock, so it is no one else's),
    /// the old socket is closed. `Ok(true)` if it did. Connections already
    /// accepted are not touched; a caller that connected to the old socket
    /// and was not accepted yet is refused (it connects again).
    ///
    /// # Errors
    /// [`ConnectError::Io`] when the stray file cannot be removed or the
    /// socket not bound (the listener stays unreachable: call again).
    pub fn restore(&mut self) -> Result<bool, ConnectError> {
        if self.intact() {
            return Ok(false);
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ConnectError::Io {
                    op: "remove the file under the socket's path",
                    source: e,
                })
            }
        }
        let (mut listener, ident) = bind_socket(&self.path)?;
        self.poll
            .registry()
            .register(&mut listener, Token(0), Interest::READABLE)
            .map_err(ConnectError::io("register listener"))?;
        let _ = self.poll.registry().deregister(&mut self.listener);
        self.listener = listener;
        self.ident = ident;
        Ok(true)
    }

    /// The socket's path (published through the node's directory).
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

    /// Accepts one connection, waiting at most `timeout` for a caller. The
    /// whole hello must arrive within the handshake timeout (one deadline).
    /// A refused hello is answered and reported as its error; the listener
    /// stays usable.
    ///
    /// At the process's descriptor limit a waiting caller is still taken
    /// (on a descriptor this listener keeps in reserve) and refused with
    /// the cause — its rings cannot be made — instead of timing out in the
    /// kernel's queue. With the reserve in use it tries again every 20 ms
    /// and, if no descriptor came free by `timeout`, fails with
    /// [`ConnectError::Io`] (`accept`, `EMFILE`).
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<ShmConnection, ConnectError> {
        let listener = &self.listener;
        let accepted = accept_within(
            &mut self.poll,
            &mut self.events,
            timeout,
            listener.as_fd(),
            &mut self.spare,
            || listener.accept(),
        )
        .map_err(ConnectError::io("accept"))?;
        let r = match accepted {
            Some((stream, _)) => self.start(stream.into()).and_then(drive_blocking),
            None => Err(ConnectError::TimedOut { during: "accept" }),
        };
        // At once if the reserve was given up for a caller now refused
        // (its socket is closed): before anything else takes the number.
        self.spare.retake();
        r
    }

    /// Takes a caller whose connection is already pending and starts its
    /// handshake (non-blocking); `Ok(None)` if none is.
    pub(crate) fn try_accept(&mut self) -> Result<Option<ShmAccept>, ConnectError> {
        match try_accept(|| self.listener.accept()).map_err(ConnectError::io("accept"))? {
            Some((stream, _)) => self.start(stream.into()).map(Some),
            None => Ok(None),
        }
    }

    fn start(&self, stream: UnixStream) -> Result<ShmAccept, ConnectError> {
        stream
            .set_nonblocking(true)
            .map_err(ConnectError::io("set socket options"))?;
        Ok(ShmAccept {
            stream: Some(stream),
            deadline: crate::deadline_after(Instant::now(), self.config.handshake_timeout),
            stage: Stage::Hello(HelloReader::new("hello")),
            config: self.config.clone(),
            opts: self.opts.clone(),
            budget: Arc::clone(&self.budget),
        })
    }
}

/// What the listener's handshake waits for.
enum Stage {
    /// The caller's hello.
    Hello(HelloReader),
    /// The caller's acknowledgement that it mapped the rings.
    Ack(Box<Made>),
    /// Finished (or failed).
    Done,
}

/// The rings and eventfds made for a caller, kept until its acknowledgement.
struct Made {
    rx: Consumer<MappedStorage>,
    tx: Producer<MappedStorage>,
    my_efd: EventFd,
    peer_efd: EventFd,
    hello: Hello,
    charge: RingCharge,
}

/// The listener's side of a shared-memory hello on one accepted socket,
/// advanced without blocking (see [`Handshake`]): read the hello, judge it,
/// make the rings, send the reply with both eventfds, read the
/// acknowledgement, unlink the segment names. A caller that dies or stalls
/// at any step costs only its own deadline; the segments made for it are
/// removed when this value drops.
pub(crate) struct ShmAccept {
    stream: Option<UnixStream>,
    deadline: Instant,
    stage: Stage,
    config: TransportConfig,
    opts: ShmOptions,
    budget: Arc<RingBudget>,
}

impl std::fmt::Debug for ShmAccept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmAccept")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ShmAccept {
    /// Judges a complete hello; on success makes the rings, sends the reply
    /// and its descriptors.
    fn on_hello(&mut self, fixed: Fixed, ext: Vec<u8>) -> Result<Made, ConnectError> {
        let stream = self.stream.as_ref().expect("live until done");
        let config = &self.config;
        let (mut reply, verdict) = handshake::judge(
            Hello::from_parts(fixed, ext)?,
            config.worker_id,
            &config.token,
            Wire::Shm,
            config.max_frame_u32(),
            config.admission.as_ref(),
        );
        let hello = match verdict {
            Ok(h) => h,
            Err(e) => {
                write_fresh(stream, &reply.encode(), "handshake reply")?;
                return Err(e);
            }
        };
        let asked = match HelloExt::decode(&hello.ext).and_then(|x| check_capacity(x.ring_capacity))
        {
            // The caller's choice, up to ours (the reply says which).
            Ok(c) => c.min(capacity_limit(self.opts.max_ring_capacity)),
            Err(e) => return refuse(stream, &mut reply, e),
        };
        // Within what all connections' rings may hold: smaller rings, or
        // none.
        let Some(cap) = self.budget.reserve(asked) else {
            let e = ConnectError::Refused {
                reason: format!(
                    "the rings of this listener's connections hold {} of its {} bytes \
                     (ShmOptions::max_ring_memory): no room for a connection",
                    self.budget.used(),
                    self.budget.limit
                ),
            };
            tracing::warn!(error = %e, caller = %hello.from, "shm hello refused");
            return refuse(stream, &mut reply, e);
        };
        let setup = || -> Result<_, ConnectError> {
            let rings = create_rings(cap)?;
            let rx = Ring::attach_consumer(rings.c2s.clone()).map_err(ConnectError::Ring)?;
            let tx = Ring::attach_producer(rings.s2c.clone()).map_err(ConnectError::Ring)?;
            let my_efd = EventFd::new().map_err(ConnectError::io("eventfd"))?;
            let peer_efd = EventFd::new().map_err(ConnectError::io("eventfd"))?;
            Ok((rings, rx, tx, my_efd, peer_efd))
        };
        let (rings, rx, tx, my_efd, peer_efd) = match setup() {
            Ok(v) => v,
            // Tell the caller instead of just hanging up.
            Err(e) => {
                self.budget.unreserve(cap);
                return refuse(stream, &mut reply, e);
            }
        };
        // From here the rings are charged until discarded, whatever
        // becomes of the handshake.
        let charge = RingCharge {
            budget: Arc::clone(&self.budget),
            bytes: 2 * cap,
            rings: Some([Arc::clone(&rings.c2s_seg), Arc::clone(&rings.s2c_seg)]),
            extra: Duration::ZERO,
        };
        reply.ext = ReplyExt {
            ring_capacity: cap as u64,
        }
        .encode();
        let bytes = reply.encode();
        // The reply travels with both eventfds (ours first, then the
        // caller's) and both rings' sealed memfds (REPLY_FDS).
        let during = "handshake reply";
        let fds = [
            my_efd.as_fd(),
            peer_efd.as_fd(),
            rings.c2s_seg.fd(),
            rings.s2c_seg.fd(),
        ];
        debug_assert_eq!(fds.len(), super::bootstrap::REPLY_FDS);
        let sent = send_with_fds(stream, &bytes, &fds)
            .map_err(|e| ConnectError::from_handshake_io(e, during))?;
        write_fresh(stream, &bytes[sent..], during)?;
        Ok(Made {
            rx,
            tx,
            my_efd,
            peer_efd,
            hello,
            charge,
        })
    }
}

/// Answers a refused hello (best effort: the caller may be gone) and
/// returns the refusal.
fn refuse<T>(stream: &UnixStream, reply: &mut Reply, e: ConnectError) -> Result<T, ConnectError> {
    reply.status = Status::Refused;
    reply.ext = match &e {
        ConnectError::Refused { reason } => handshake::refusal_ext(reason),
        other => handshake::refusal_ext(&crate::error_chain(other)),
    };
    let _ = write_fresh(stream, &reply.encode(), "handshake reply");
    Err(e)
}

impl Handshake for ShmAccept {
    type Conn = ShmConnection;

    fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_ref().expect("live until done").as_fd()
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn heard(&self) -> bool {
        match &self.stage {
            Stage::Hello(reader) => reader.heard(),
            // Its hello was judged (the token was right): under way.
            Stage::Ack(_) | Stage::Done => true,
        }
    }

    fn advance(&mut self) -> Result<Option<ShmConnection>, ConnectError> {
        loop {
            let stream = self.stream.as_ref().ok_or(ConnectError::Protocol {
                what: "handshake already finished".into(),
            })?;
            match &mut self.stage {
                Stage::Hello(reader) => {
                    let Some((fixed, ext)) = reader.read_from(stream)? else {
                        return Ok(None);
                    };
                    self.stage = Stage::Done;
                    let made = self.on_hello(fixed, ext)?;
                    self.stage = Stage::Ack(Box::new(made));
                }
                Stage::Ack(_) => {
                    let mut ack = [0u8; 1];
                    match (&*stream).read(&mut ack) {
                        Ok(0) => {
                            return Err(ConnectError::PeerDied {
                                during: "acknowledgement",
                            })
                        }
                        Ok(_) if ack[0] != ACK => {
                            return Err(ConnectError::Protocol {
                                what: format!("bad shm handshake acknowledgement {:#x}", ack[0]),
                            })
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(ConnectError::from_handshake_io(e, "acknowledgement"))
                        }
                    }
                    let Stage::Ack(made) = std::mem::replace(&mut self.stage, Stage::Done) else {
                        unreachable!("matched above")
                    };
                    let made = *made;
                    // The caller has mapped the rings; the memory lives as
                    // long as a mapping does (nothing to unlink: it never
                    // had a name).
                    let stream = self.stream.take().expect("checked above");
                    stream
                        .set_nonblocking(false)
                        .map_err(ConnectError::io("set socket options"))?;
                    let mut conn = ShmConnection::assemble(
                        made.tx,
                        made.rx,
                        stream,
                        made.my_efd,
                        made.peer_efd,
                        made.hello.from,
                        made.hello.max_frame as usize,
                        &self.config,
                        &self.opts,
                    )?;
                    conn.peer_secret = Some(made.hello.secret);
                    conn.ring_charge = Some(made.charge);
                    return Ok(Some(conn));
                }
                Stage::Done => {
                    return Err(ConnectError::Protocol {
                        what: "handshake already failed".into(),
                    })
                }
            }
        }
    }
}

/// Binds a Unix socket at `path` with mode 0600; returns it and its file's
/// (device, inode).
fn bind_socket(path: &Path) -> Result<(mio::net::UnixListener, (u64, u64)), ConnectError> {
    let listener =
        mio::net::UnixListener::bind(path).map_err(ConnectError::io("bind Unix socket"))?;
    // 0600 like every other file of the session (bind applies the umask).
    if let Err(e) =
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
    {
        let _ = std::fs::remove_file(path);
        return Err(ConnectError::Io {
            op: "chmod 0600 Unix socket",
            source: e,
        });
    }
    let md = std::fs::symlink_metadata(path).map_err(ConnectError::io("stat Unix socket"))?;
    Ok((listener, (md.dev(), md.ino())))
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
