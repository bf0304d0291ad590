//! Choosing the transport by address: [`AnyConnection`] (either transport
//! behind one type), the [`Connector`] that routes a Ray-style
//! [`Address`](crate::spec::Address) to shared memory or TCP, and the
//! [`Listener`] that accepts both for one worker and publishes it in the
//! [`WorkerLookup`] (the node layer's directory).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

// ACCEPT_RETRY: how long after a failed `accept` with a caller waiting the
// listener tries again (`Listener::next_hello_deadline` wakes a `Mux` for it).
use super::accept::{Handshake, ACCEPT_RETRY};
use super::shm::{connect_shm, ShmAccept, ShmConnection, ShmFrame, ShmListener, ShmOptions};
use super::tcp::{connect_tcp, TcpAccept, TcpConnection, TcpFrame, TcpListener};
use super::{
    ConnectError, Connection, Endpoint, FrameTag, LookupError, MuxConnection, Published, RecvError,
    SendError, TransportConfig, TransportKind, WorkerId, WorkerLookup,
};
use crate::ids::NodeId;
use crate::shm::Session;
use crate::spec::Address;

/// A connection over either transport.
#[derive(Debug)]
// Connections are long-lived and rarely moved; boxing would add a pointer
// chase to every send and receive.
#[allow(clippy::large_enum_variant)]
pub enum AnyConnection {
    /// Over TCP.
    Tcp(TcpConnection),
    /// Over shared memory.
    Shm(ShmConnection),
}

/// A frame received on an [`AnyConnection`].
#[derive(Debug)]
pub enum AnyFrame<'a> {
    /// From TCP.
    Tcp(TcpFrame<'a>),
    /// From shared memory.
    Shm(ShmFrame<'a>),
}

impl std::ops::Deref for AnyFrame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            AnyFrame::Tcp(f) => f,
            AnyFrame::Shm(f) => f,
        }
    }
}

impl From<TcpConnection> for AnyConnection {
    fn from(c: TcpConnection) -> Self {
        AnyConnection::Tcp(c)
    }
}

impl From<ShmConnection> for AnyConnection {
    fn from(c: ShmConnection) -> Self {
        AnyConnection::Shm(c)
    }
}

impl AnyConnection {
    /// The [`ClientSecret`](super::ClientSecret) the peer's hello
    /// carried, on a connection it opened to us (`None` on a connection we
    /// opened): what a worker binds a caller's id to.
    pub fn peer_secret(&self) -> Option<super::ClientSecret> {
        match self {
            AnyConnection::Tcp(c) => c.peer_secret(),
            AnyConnection::Shm(c) => c.peer_secret(),
        }
    }

    /// How full its shared-memory rings are (`None` over TCP), for
    /// inspection. Changes nothing.
    pub fn ring_fill(&self) -> Option<super::RingFill> {
        match self {
            AnyConnection::Tcp(_) => None,
            AnyConnection::Shm(c) => Some(c.ring_fill()),
        }
    }

    /// The peer's pid over shared memory (the kernel's `SO_PEERCRED` of
    /// the bootstrap socket); `None` over TCP, whose peer may be on
    /// another host. For inspection only.
    pub fn peer_pid(&self) -> Option<u32> {
        match self {
            AnyConnection::Tcp(_) => None,
            AnyConnection::Shm(c) => c.peer_pid(),
        }
    }

    /// Whether this connection is over: [ended](MuxConnection::has_ended),
    /// or its peer gone — it closed, reset or died — as the kernel says now
    /// of the socket whose hang-up ends the connection (TCP: the stream;
    /// shared memory: the bootstrap socket, closed with the peer's
    /// process), without waiting and consuming nothing (`poll`, a readable
    /// socket peeked at). For a connection nobody reads yet: a worker's
    /// helper keeps the callers it accepted during a task for the worker's
    /// loop (`heartbeat::KeptConnections`), unread until the task ends.
    pub(crate) fn peer_gone(&self) -> bool {
        let sock = match self {
            AnyConnection::Tcp(c) => c.stream().as_fd(),
            AnyConnection::Shm(c) => c.socket().as_fd(),
        };
        self.has_ended() || !crate::sys::fdpass::peer_connected(sock)
    }
}

impl Connection for AnyConnection {
    type Frame<'a> = AnyFrame<'a>;

    fn kind(&self) -> TransportKind {
        match self {
            AnyConnection::Tcp(c) => c.kind(),
            AnyConnection::Shm(c) => c.kind(),
        }
    }

    fn peer_worker_id(&self) -> WorkerId {
        match self {
            AnyConnection::Tcp(c) => c.peer_worker_id(),
            AnyConnection::Shm(c) => c.peer_worker_id(),
        }
    }

    fn max_send_len(&self) -> usize {
        match self {
            AnyConnection::Tcp(c) => c.max_send_len(),
            AnyConnection::Shm(c) => c.max_send_len(),
        }
    }

    fn send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        match self {
            AnyConnection::Tcp(c) => c.send_with(max_len, encode),
            AnyConnection::Shm(c) => c.send_with(max_len, encode),
        }
    }

    fn try_send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        match self {
            AnyConnection::Tcp(c) => c.try_send_with(max_len, encode),
            AnyConnection::Shm(c) => c.try_send_with(max_len, encode),
        }
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
        match self {
            AnyConnection::Tcp(c) => c.try_send_tagged_with(tag, max_len, encode),
            AnyConnection::Shm(c) => c.try_send_tagged_with(tag, max_len, encode),
        }
    }

    fn carries_tags(&self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.carries_tags(),
            AnyConnection::Shm(c) => c.carries_tags(),
        }
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
        match self {
            AnyConnection::Tcp(c) => c.send_tagged_with(tag, max_len, encode),
            AnyConnection::Shm(c) => c.send_tagged_with(tag, max_len, encode),
        }
    }

    fn pending_send_bytes(&self) -> usize {
        match self {
            AnyConnection::Tcp(c) => c.pending_send_bytes(),
            AnyConnection::Shm(c) => c.pending_send_bytes(),
        }
    }

    fn pending_send_hint(&self) -> usize {
        match self {
            AnyConnection::Tcp(c) => c.pending_send_hint(),
            AnyConnection::Shm(c) => c.pending_send_hint(),
        }
    }

    fn flush(&mut self) -> Result<(), SendError> {
        match self {
            AnyConnection::Tcp(c) => c.flush(),
            AnyConnection::Shm(c) => c.flush(),
        }
    }

    fn cut_off(&mut self) {
        match self {
            AnyConnection::Tcp(c) => c.cut_off(),
            AnyConnection::Shm(c) => c.cut_off(),
        }
    }

    fn farewell(&mut self, reason: &str) {
        match self {
            AnyConnection::Tcp(c) => c.farewell(reason),
            AnyConnection::Shm(c) => c.farewell(reason),
        }
    }

    fn linger_longer(&mut self, extra: std::time::Duration) {
        match self {
            AnyConnection::Tcp(c) => c.linger_longer(extra),
            AnyConnection::Shm(c) => c.linger_longer(extra),
        }
    }

    fn try_recv(&mut self) -> Result<Option<AnyFrame<'_>>, RecvError> {
        Ok(match self {
            AnyConnection::Tcp(c) => c.try_recv()?.map(AnyFrame::Tcp),
            AnyConnection::Shm(c) => c.try_recv()?.map(AnyFrame::Shm),
        })
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<AnyFrame<'_>, RecvError> {
        Ok(match self {
            AnyConnection::Tcp(c) => AnyFrame::Tcp(c.recv_timeout(timeout)?),
            AnyConnection::Shm(c) => AnyFrame::Shm(c.recv_timeout(timeout)?),
        })
    }

    fn recv_private_timeout(&mut self, timeout: Duration) -> Result<&[u8], RecvError> {
        match self {
            AnyConnection::Tcp(c) => c.recv_private_timeout(timeout),
            AnyConnection::Shm(c) => c.recv_private_timeout(timeout),
        }
    }

    fn try_recv_private(&mut self) -> Result<Option<&[u8]>, RecvError> {
        match self {
            AnyConnection::Tcp(c) => c.try_recv_private(),
            AnyConnection::Shm(c) => c.try_recv_private(),
        }
    }

    fn try_recv_private_tagged(&mut self) -> Result<Option<(FrameTag, &[u8])>, RecvError> {
        match self {
            AnyConnection::Tcp(c) => c.try_recv_private_tagged(),
            AnyConnection::Shm(c) => c.try_recv_private_tagged(),
        }
    }

    fn frames_shared(&self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.frames_shared(),
            AnyConnection::Shm(c) => c.frames_shared(),
        }
    }

    fn close(&mut self) -> Result<(), SendError> {
        match self {
            AnyConnection::Tcp(c) => c.close(),
            AnyConnection::Shm(c) => c.close(),
        }
    }
}

impl MuxConnection for AnyConnection {
    fn register(&mut self, registry: &mio::Registry, token: Token) -> std::io::Result<()> {
        match self {
            AnyConnection::Tcp(c) => c.register(registry, token),
            AnyConnection::Shm(c) => c.register(registry, token),
        }
    }

    fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
        match self {
            AnyConnection::Tcp(c) => c.deregister(registry),
            AnyConnection::Shm(c) => c.deregister(registry),
        }
    }

    fn ready_hint(&self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.ready_hint(),
            AnyConnection::Shm(c) => c.ready_hint(),
        }
    }

    fn kernel_delivered(&self) -> bool {
        matches!(self, AnyConnection::Tcp(_))
    }

    fn prepare_sleep(&mut self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.prepare_sleep(),
            AnyConnection::Shm(c) => c.prepare_sleep(),
        }
    }

    fn flush_pending(&mut self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.flush_pending(),
            AnyConnection::Shm(c) => c.flush_pending(),
        }
    }

    fn set_write_interest(
        &mut self,
        registry: &mio::Registry,
        token: Token,
        on: bool,
    ) -> std::io::Result<()> {
        match self {
            AnyConnection::Tcp(c) => c.set_write_interest(registry, token, on),
            AnyConnection::Shm(c) => c.set_write_interest(registry, token, on),
        }
    }

    fn note_held(&mut self, held: bool) {
        if let AnyConnection::Tcp(c) = self {
            c.note_held(held);
        }
    }

    fn tick(&mut self, now: Instant) -> Option<Instant> {
        match self {
            AnyConnection::Tcp(c) => c.tick(now),
            AnyConnection::Shm(c) => c.tick(now),
        }
    }

    fn note_event(&mut self) {
        match self {
            AnyConnection::Tcp(c) => c.note_event(),
            AnyConnection::Shm(c) => c.note_event(),
        }
    }

    fn has_ended(&self) -> bool {
        match self {
            AnyConnection::Tcp(c) => c.has_ended(),
            AnyConnection::Shm(c) => c.has_ended(),
        }
    }
}

/// Opens connections to workers, choosing the transport from the peer's
/// address: a worker on this node (same [`NodeId`], found through the
/// node's [`WorkerLookup`]) is reached over shared memory, any other over TCP at the
/// address's `ip_address:port`. [`Connector::force_tcp`] overrides the
/// choice (tests, or users who want TCP locally).
#[derive(Debug, Clone)]
pub struct Connector {
    config: TransportConfig,
    node_id: NodeId,
    session: Option<Session>,
    directory: Option<Arc<dyn WorkerLookup>>,
    shm: ShmOptions,
    force_tcp: bool,
}

impl Connector {
    /// A connector for the worker `config.worker_id` on node `node_id`,
    /// without a session (TCP only until [`Connector::with_session`]).
    pub fn new(config: TransportConfig, node_id: NodeId) -> Self {
        Self {
            config,
            node_id,
            session: None,
            directory: None,
            shm: ShmOptions::default(),
            force_tcp: false,
        }
    }

    /// Enables shared memory through this node's `session` and lookups of
    /// local workers through `directory` (the node layer's `Directory`, or
    /// any other [`WorkerLookup`]).
    pub fn with_session(mut self, session: &Session, directory: Arc<dyn WorkerLookup>) -> Self {
        self.directory = Some(directory);
        self.session = Some(session.clone());
        self
    }

    /// The transport configuration connections opened from here use.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Sets the shared-memory options for connections opened from here.
    pub fn with_shm_options(mut self, opts: ShmOptions) -> Self {
        self.shm = opts;
        self
    }

    /// Forces TCP even for workers on this node.
    pub fn force_tcp(mut self, force: bool) -> Self {
        self.force_tcp = force;
        self
    }

    /// The transport [`Connector::connect`] would use for `addr`.
    pub fn route(&self, addr: &Address) -> TransportKind {
        if !self.force_tcp && addr.node_id == self.node_id && self.session.is_some() {
            TransportKind::Shm
        } else {
            TransportKind::Tcp
        }
    }

    /// Connects to the worker at `addr` (see the type's docs for the
    /// choice of transport). A local worker not registered for shared
    /// memory is reached over TCP.
    pub fn connect(&self, addr: &Address) -> Result<AnyConnection, ConnectError> {
        if self.route(addr) == TransportKind::Shm {
            if let (Some(session), Some(dir)) = (&self.session, &self.directory) {
                if let Ok(Endpoint {
                    unix_socket: Some(sock),
                    ..
                }) = dir.lookup(&addr.worker_id)
                {
                    return Ok(connect_shm(
                        session,
                        &sock,
                        addr.worker_id,
                        &self.config,
                        &self.shm,
                    )?
                    .into());
                }
            }
        }
        let ip: IpAddr = addr
            .ip_address
            .parse()
            .map_err(|_| LookupError::NoUsableAddress {
                worker: addr.worker_id,
                why: "the address's IP is not valid",
            })?;
        Ok(connect_tcp(SocketAddr::new(ip, addr.port), addr.worker_id, &self.config)?.into())
    }

    /// Connects to a worker of this node by id, through the directory.
    pub fn connect_worker(&self, id: &WorkerId) -> Result<AnyConnection, ConnectError> {
        self.connect_worker_entry(id).map(|(conn, _)| conn)
    }

    /// [`Connector::connect_worker`], also returning the directory entry
    /// it dialled (its [`Endpoint::pid`] says which process to watch if
    /// the connection breaks).
    pub fn connect_worker_entry(
        &self,
        id: &WorkerId,
    ) -> Result<(AnyConnection, Endpoint), ConnectError> {
        let entry = self.lookup_worker(id)?;
        let conn = self.connect_endpoint(&entry)?;
        Ok((conn, entry))
    }

    /// The directory entry of local worker `id` (what
    /// [`Connector::connect_worker_entry`] dials).
    pub(crate) fn lookup_worker(&self, id: &WorkerId) -> Result<Endpoint, ConnectError> {
        let dir = self
            .directory
            .as_ref()
            .ok_or_else(|| LookupError::NoSuchWorker {
                key: format!("{id} (no session directory)"),
            })?;
        Ok(dir.lookup(id)?)
    }

    /// Connects to the worker of directory entry `entry`, the handshake
    /// bounded by `timeout` as well as by
    /// [`TransportConfig::handshake_timeout`].
    pub(crate) fn connect_entry_within(
        &self,
        entry: &Endpoint,
        timeout: Duration,
    ) -> Result<AnyConnection, ConnectError> {
        if timeout >= self.config.handshake_timeout {
            return self.connect_endpoint(entry);
        }
        let mut bounded = self.clone();
        bounded.config.handshake_timeout = timeout;
        bounded.connect_endpoint(entry)
    }

    /// [`Connector::connect_worker_entry`] with the handshake bounded by
    /// `timeout` as well as by [`TransportConfig::handshake_timeout`]: a
    /// reconnect within a grace waits no longer than the grace has left.
    pub fn connect_worker_entry_within(
        &self,
        id: &WorkerId,
        timeout: Duration,
    ) -> Result<(AnyConnection, Endpoint), ConnectError> {
        let entry = self.lookup_worker(id)?;
        let conn = self.connect_entry_within(&entry, timeout)?;
        Ok((conn, entry))
    }

    /// Connects to a worker of this node by name, through the directory.
    pub fn connect_name(&self, name: &str) -> Result<AnyConnection, ConnectError> {
        let dir = self
            .directory
            .as_ref()
            .ok_or_else(|| LookupError::NoSuchWorker {
                key: format!("named {name:?} (no session directory)"),
            })?;
        self.connect_endpoint(&dir.lookup_name(name)?)
    }

    fn connect_endpoint(&self, e: &Endpoint) -> Result<AnyConnection, ConnectError> {
        match (&e.unix_socket, e.tcp, &self.session) {
            (Some(sock), _, Some(session)) if !self.force_tcp => {
                Ok(connect_shm(session, sock, e.worker_id, &self.config, &self.shm)?.into())
            }
            (_, Some(tcp), _) => Ok(connect_tcp(tcp, e.worker_id, &self.config)?.into()),
            _ => Err(LookupError::NoUsableAddress {
                worker: e.worker_id,
                why: "neither a Unix socket in this session nor a TCP address",
            }
            .into()),
        }
    }
}

/// What a [`Listener`] listens on.
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// Accept shared-memory connections (Unix socket in the session) with
    /// these options.
    pub shm: Option<ShmOptions>,
    /// Accept TCP connections on this address (`127.0.0.1:0` is a good
    /// local default; another node needs a reachable address).
    pub tcp: Option<SocketAddr>,
    /// Register under this name in the directory.
    pub name: Option<String>,
    /// What the directory entry says about the process's statistics area
    /// ([`Endpoint::stats`]; `None`: it keeps none).
    pub stats: Option<super::StatsState>,
}

/// A caller's hello in progress, on either transport.
#[derive(Debug)]
enum Pending {
    Tcp(TcpAccept),
    Shm(ShmAccept),
}

impl Handshake for Pending {
    type Conn = AnyConnection;

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Pending::Tcp(h) => h.fd(),
            Pending::Shm(h) => h.fd(),
        }
    }

    fn deadline(&self) -> Instant {
        match self {
            Pending::Tcp(h) => h.deadline(),
            Pending::Shm(h) => h.deadline(),
        }
    }

    fn heard(&self) -> bool {
        match self {
            Pending::Tcp(h) => h.heard(),
            Pending::Shm(h) => h.heard(),
        }
    }

    fn advance(&mut self) -> Result<Option<AnyConnection>, ConnectError> {
        match self {
            Pending::Tcp(h) => h.advance().map(|c| c.map(Into::into)),
            Pending::Shm(h) => h.advance().map(|c| c.map(Into::into)),
        }
    }
}

/// Counts of what became of the callers of a [`Listener`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AcceptStats {
    /// Hellos that became connections.
    pub accepted: u64,
    /// Hellos refused (bad token, version, worker, garbage, hang-up).
    pub refused: u64,
    /// Hellos that did not complete within the handshake timeout.
    pub timed_out: u64,
    /// Pending hellos dropped for a newer caller: of their transport, at
    /// the pending-hello cap; of either, when the process was out of file
    /// descriptors.
    pub over_cap: u64,
}

/// Pending hellos dropped after an accept pass that ran out of descriptors,
/// so that the callers it accepted can finish their hellos: a
/// shared-memory hello needs, besides its socket, two ring memfds, two
/// eventfds and, while the rings are made, one more (`/proc/meminfo` is
/// read to refuse rings larger than the memory available); one to spare.
const ROOM_FOR_A_HELLO: usize = 6;

/// Token range of the pending hellos' sockets in a listener's own poll
/// (the two listening sockets use tokens 0 and 1).
const PENDING_BASE: usize = 16;

/// How often the worker runtime's `Worker` and the store service
/// check that their listener's socket file and directory entry are still
/// theirs ([`Listener::restore`]): 1 s.
pub const LISTENER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What was put back of the files a process keeps in its session, after
/// a stray `rm` or rename took them: by [`Listener::restore`] (lock,
/// socket, entry), by the worker runtime's `Worker` (also token and
/// statistics area) and by the node's round (also the node lock).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// This process's lock file in the session was made again
    /// ([`Session::restore_process_lock`]).
    pub lock: bool,
    /// The Unix socket was bound again (its file had been removed or
    /// replaced).
    pub socket: bool,
    /// The directory entry was written again (it had been removed or
    /// replaced).
    pub entry: bool,
    /// The session's token file was written again (the worker runtime's
    /// check; the transport alone does not keep it).
    pub token: bool,
    /// The statistics area was made again (the worker runtime's check).
    pub area: bool,
    /// The session's node lock was taken again (the node's check).
    pub node_lock: bool,
    /// The session marker (`.shmwire-session`) was made again (the node's
    /// and the worker runtime's check): without it `inspect` and `cleanup`
    /// take the live session for a foreign directory.
    pub marker: bool,
}

impl Restored {
    /// What either put back.
    pub fn or(self, o: Restored) -> Restored {
        Restored {
            lock: self.lock || o.lock,
            socket: self.socket || o.socket,
            entry: self.entry || o.entry,
            token: self.token || o.token,
            area: self.area || o.area,
            node_lock: self.node_lock || o.node_lock,
            marker: self.marker || o.marker,
        }
    }

    /// Whether anything was put back.
    pub fn any(self) -> bool {
        self.lock
            || self.socket
            || self.entry
            || self.token
            || self.area
            || self.node_lock
            || self.marker
    }

    /// What was put back, for a message (`"process lock file, socket
    /// file"`); empty if
    /// nothing.
    pub fn describe(self) -> String {
        [
            (self.lock, "process lock file"),
            (self.socket, "socket file"),
            (self.entry, "directory entry"),
            (self.token, "session token"),
            (self.area, "statistics area"),
            (self.node_lock, "node lock"),
            (self.marker, "session marker"),
        ]
        .iter()
        .filter(|(put_back, _)| *put_back)
        .map(|(_, what)| *what)
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// A worker's listener for both transports, published through a
/// [`WorkerLookup`] (the node's directory) for as long as it lives.
///
/// Every caller's hello is a non-blocking state machine with one total
/// deadline ([`TransportConfig::handshake_timeout`]); at most
/// [`TransportConfig::max_pending_hellos`] run at once per transport, and a
/// caller beyond that makes the oldest pending hello of its transport drop
/// ([`AcceptStats::over_cap`]): silent connections cannot lock callers out.
/// One accept pass takes at most that many callers per transport (the next
/// pass is due at once), so a flood of connections cannot hold the thread
/// that accepts away from the connections it serves.
pub struct Listener {
    poll: Poll,
    events: Events,
    shm: Option<ShmListener>,
    tcp: Option<TcpListener>,
    /// A handle on `poll`'s registry, for the pending hellos of
    /// [`Listener::accept_timeout`].
    registry: Option<mio::Registry>,
    pending: Vec<Option<Pending>>,
    max_pending: usize,
    ready: std::collections::VecDeque<Result<AnyConnection, ConnectError>>,
    stats: AcceptStats,
    endpoint: Endpoint,
    _published: Box<dyn Published>,
    /// Its session: [`Listener::restore`] keeps this process's lock there.
    session: Session,
    /// When to try `accept` again: a pass left a caller in the kernel's
    /// queue because `accept` failed (out of descriptors with no pending
    /// hello to drop, out of memory; in [`ACCEPT_RETRY`]) or because it had
    /// taken `max_pending` callers of that transport (at once). The
    /// listening sockets are
    /// edge-triggered, so nothing else would wake a pass for that caller
    /// before another one connects.
    accept_retry: Option<Instant>,
    /// `accept` failed at the last try, on the shm or the TCP socket: its
    /// error was reported then and is not again (one report while it
    /// lasts, not one a pass — the attack on `58273f5`: under
    /// `ulimit -n 16` one queued caller was reported as ≈ 100 refused
    /// callers a second).
    accept_failing: [bool; 2],
    /// Given up when `accept` fails for want of descriptors with no
    /// pending hello to drop: the caller is then taken instead of timing
    /// out in the kernel's queue ("timed out during the handshake reply")
    /// — a shared-memory caller is refused with the cause (its rings
    /// cannot be made), a TCP caller, which needs nothing more, is served
    /// on the spare's descriptor.
    spare: crate::sys::fs::SpareDescriptor,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

const SHM_TOKEN: Token = Token(0);
const TCP_TOKEN: Token = Token(1);

impl Listener {
    /// Listens as `config.worker_id` in `session` and publishes the endpoint
    /// through `directory` (withdrawn when the listener drops).
    pub fn bind(
        session: &Session,
        config: TransportConfig,
        opts: ListenOptions,
        directory: &dyn WorkerLookup,
    ) -> Result<Self, ConnectError> {
        let poll = Poll::new().map_err(ConnectError::io("create poll"))?;
        let registry = poll
            .registry()
            .try_clone()
            .map_err(ConnectError::io("create poll"))?;
        let max_pending = config.max_pending_hellos.max(1);
        let mut endpoint = Endpoint::new(config.worker_id);
        endpoint.name = opts.name.clone();
        endpoint.stats = opts.stats.clone();
        let tcp = match opts.tcp {
            Some(addr) => {
                let l = TcpListener::bind(addr, config.clone())?;
                endpoint.tcp = Some(l.local_addr()?);
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&l.listener_fd()),
                        TCP_TOKEN,
                        Interest::READABLE,
                    )
                    .map_err(ConnectError::io("register listener"))?;
                Some(l)
            }
            None => None,
        };
        let shm = match opts.shm {
            Some(o) => {
                let l = ShmListener::bind(session, config, o)?;
                endpoint.unix_socket = Some(l.socket_path().to_owned());
                poll.registry()
                    .register(
                        &mut mio::unix::SourceFd(&l.listener().as_fd().as_raw_fd()),
                        SHM_TOKEN,
                        Interest::READABLE,
                    )
                    .map_err(ConnectError::io("register listener"))?;
                Some(l)
            }
            None => None,
        };
        let published = directory.publish(&endpoint)?;
        Ok(Self {
            poll,
            events: Events::with_capacity(64),
            shm,
            tcp,
            registry: Some(registry),
            pending: Vec::new(),
            max_pending,
            ready: std::collections::VecDeque::new(),
            stats: AcceptStats::default(),
            endpoint,
            _published: published,
            session: session.clone(),
            accept_retry: None,
            accept_failing: [false; 2],
            spare: crate::sys::fs::SpareDescriptor::take(),
        })
    }

    /// Where this worker is reachable (as published in the directory).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The worker's Ray-style address on node `node_id` (TCP address if it
    /// listens on TCP, else `127.0.0.1:0`).
    pub fn address(&self, node_id: NodeId) -> Address {
        let tcp = self
            .endpoint
            .tcp
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        Address {
            node_id,
            ip_address: tcp.ip().to_string(),
            port: tcp.port(),
            worker_id: self.endpoint.worker_id,
            object_manager_address: String::new(),
        }
    }

    /// Starts the handshake of every caller waiting on either socket; at
    /// the cap on pending hellos of its transport, the oldest of them is
    /// dropped to make room (counted). Each new pending hello's socket is
    /// registered with `registry` under `token(slot)`.
    fn start_pending(
        &mut self,
        registry: &mio::Registry,
        token: impl Fn(usize) -> Token,
        out: &mut Vec<Result<AnyConnection, ConnectError>>,
    ) {
        // Drain the shm socket, then the TCP one, each until it has no
        // caller waiting (or fails in the kernel, e.g. out of descriptors
        // with nothing to drop: reported, and the pass moves on).
        let mut starved = false;
        self.accept_retry = None;
        self.spare.retake();
        // The deadline of the first hello started in this pass: every
        // pending hello with an earlier one was started before it.
        let mut first_new: Option<Instant> = None;
        for shm in [true, false] {
            // At most `max_pending` callers of a transport per pass: more
            // would only displace hellos started in this very pass before
            // their first read, and a flood re-opening connections as fast
            // as they are accepted would hold the pass (and the thread that
            // serves the connections) for good. The rest wait for the next
            // pass, due at once.
            let mut budget = self.max_pending;
            loop {
                if budget == 0 {
                    if self.connection_waiting(shm) {
                        self.accept_retry = Some(Instant::now());
                    }
                    break;
                }
                budget -= 1;
                let started = match (shm, self.shm.as_mut(), self.tcp.as_mut()) {
                    (true, Some(l), _) => l.try_accept().map(|h| h.map(Pending::Shm)),
                    (false, _, Some(l)) => l.try_accept().map(|h| h.map(Pending::Tcp)),
                    _ => Ok(None),
                };
                if started.is_ok() {
                    self.accept_failing[usize::from(shm)] = false;
                }
                let h = match started {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    // Out of descriptors with a caller waiting: the oldest
                    // pending hello (of either transport: descriptors are
                    // shared) gives its descriptor to it, as at the cap —
                    // under a low limit, silent connections would otherwise
                    // take every descriptor and leave callers in the
                    // kernel's queue.
                    Err(ConnectError::Io { source, .. })
                        if crate::sys::fs::is_out_of_descriptors(&source)
                            && self.connection_waiting(shm)
                            && (self.drop_oldest_pending(
                                registry,
                                |_| true,
                                out,
                                "out of file descriptors",
                            ) || self.spare.give_up()) =>
                    {
                        starved = true;
                        continue;
                    }
                    Err(e) => {
                        // A caller left waiting: try again soon, and say
                        // so once while it lasts. (Out of descriptors,
                        // `accept` fails before it looks at the queue: with
                        // nobody waiting, nobody was refused.)
                        if self.connection_waiting(shm) {
                            self.accept_retry = Some(Instant::now() + ACCEPT_RETRY);
                            if !std::mem::replace(&mut self.accept_failing[usize::from(shm)], true)
                            {
                                out.push(Err(e));
                            }
                        }
                        break;
                    }
                };
                // At the cap of its transport, the oldest pending hello of
                // that transport makes room (as the node's HTTP and object
                // endpoints do): a caller that connects and stays silent
                // holds a slot only until `max_pending` newer callers came,
                // and a real caller's hello, which completes at once, is
                // never the oldest. Each transport has its own cap: anyone
                // who can reach the TCP port cannot crowd out the callers
                // of the Unix socket (reachable by this user only).
                let same = move |p: &Pending| matches!(p, Pending::Shm(_)) == shm;
                if self.pending.iter().flatten().filter(|p| same(p)).count() >= self.max_pending {
                    let why = format!(
                        "{} {} hellos pending at most",
                        self.max_pending,
                        if shm { "Unix-socket" } else { "TCP" }
                    );
                    self.drop_oldest_pending(registry, same, out, &why);
                }
                let slot = self
                    .pending
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.pending.len());
                let fd = h.fd().as_raw_fd();
                if let Err(e) = registry.register(
                    &mut mio::unix::SourceFd(&fd),
                    token(slot),
                    Interest::READABLE,
                ) {
                    out.push(Err(ConnectError::Io {
                        op: "register pending hello",
                        source: e,
                    }));
                    continue;
                }
                first_new.get_or_insert(h.deadline());
                if slot == self.pending.len() {
                    self.pending.push(Some(h));
                } else {
                    self.pending[slot] = Some(h);
                }
            }
        }
        // The callers accepted out of descriptors need more than their
        // socket to finish a hello (a shared-memory one its rings' memfds
        // and eventfds): the oldest hellos started before this pass make
        // that room too (never one of those it was made for).
        if let (true, Some(cut)) = (starved, first_new) {
            for _ in 0..ROOM_FOR_A_HELLO {
                let older = |p: &Pending| p.deadline() < cut;
                self.drop_oldest_pending(registry, older, out, "out of file descriptors");
            }
        }
    }

    /// Whether `accept` failed at its last try on either socket with a
    /// caller waiting (out of descriptors, say), and has not succeeded
    /// since: the failure is returned once while it lasts, so an owner
    /// that reports it as a state (the store's health) asks this to know
    /// it still lasts.
    pub(crate) fn accept_failing(&self) -> bool {
        self.accept_failing.iter().any(|&f| f)
    }

    /// Whether a caller waits on the listening socket of the Unix socket
    /// (`shm`) or TCP ([`crate::sys::poll::connection_waiting`]).
    fn connection_waiting(&self, shm: bool) -> bool {
        let fd = match (shm, &self.shm, &self.tcp) {
            (true, Some(l), _) => l.listener().as_fd().as_raw_fd(),
            (false, _, Some(l)) => l.listener_fd(),
            _ => return false,
        };
        // SAFETY: `fd` is the listening socket of `self.shm` or `self.tcp`,
        // open for as long as `self` (borrowed here) lives.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        crate::sys::poll::connection_waiting(fd)
    }

    /// Makes room for a newer caller among the pending hellos that `which`
    /// selects, oldest first: each is advanced (a caller whose hello waits
    /// unread in its socket — accepted in this pass, not yet read —
    /// finishes now, or fails), and the first that has still sent nothing
    /// is dropped (counted in [`AcceptStats::over_cap`], reported in `out`
    /// with `why`); a hello under way is dropped only when every one is.
    /// Finished and failed hellos go to `out` as [`Self::advance_pending`]
    /// would put them, and leave room too. `false` if there was none.
    fn drop_oldest_pending(
        &mut self,
        registry: &mio::Registry,
        which: impl Fn(&Pending) -> bool,
        out: &mut Vec<Result<AnyConnection, ConnectError>>,
        why: &str,
    ) -> bool {
        let mut order: Vec<(Instant, usize)> = self
            .pending
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().filter(|p| which(p)).map(|p| (p.deadline(), i)))
            .collect();
        if order.is_empty() {
            return false;
        }
        order.sort_unstable();
        for &(_, i) in &order {
            let Some(h) = self.pending[i].as_mut() else {
                continue;
            };
            let fd = h.fd().as_raw_fd();
            let result = match h.advance() {
                Ok(None) if h.heard() => continue,
                Ok(None) => {
                    self.stats.over_cap += 1;
                    Err(ConnectError::Refused {
                        reason: format!(
                            "a pending hello that sent nothing was dropped for a newer caller \
                             ({why})"
                        ),
                    })
                }
                Ok(Some(c)) => {
                    self.stats.accepted += 1;
                    Ok(c)
                }
                Err(e) => {
                    self.stats.refused += 1;
                    Err(e)
                }
            };
            self.pending[i] = None;
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
            out.push(result);
            return true;
        }
        // Every one is under way: the oldest goes.
        let (_, i) = order[0];
        let Some(old) = self.pending[i].take() else {
            return false;
        };
        let _ = registry.deregister(&mut mio::unix::SourceFd(&old.fd().as_raw_fd()));
        drop(old);
        self.stats.over_cap += 1;
        out.push(Err(ConnectError::Refused {
            reason: format!("a pending hello was dropped for a newer caller ({why})"),
        }));
        true
    }

    /// Advances every pending hello without blocking: finished ones become
    /// connections, failed or expired ones errors (each counted); their
    /// sockets are deregistered from `registry`.
    fn advance_pending(
        &mut self,
        registry: &mio::Registry,
        out: &mut Vec<Result<AnyConnection, ConnectError>>,
    ) {
        let now = Instant::now();
        for slot in self.pending.iter_mut() {
            let Some(h) = slot.as_mut() else { continue };
            // Taken before advancing: a finished handshake hands its socket
            // to the new connection.
            let fd = h.fd().as_raw_fd();
            let result = match h.advance() {
                Ok(None) if now >= h.deadline() => {
                    Some(Err(ConnectError::TimedOut { during: "hello" }))
                }
                Ok(None) => None,
                Ok(Some(c)) => Some(Ok(c)),
                Err(e) => Some(Err(e)),
            };
            let Some(result) = result else { continue };
            *slot = None;
            let _ = registry.deregister(&mut mio::unix::SourceFd(&fd));
            match &result {
                Ok(_) => self.stats.accepted += 1,
                Err(ConnectError::TimedOut { .. }) => self.stats.timed_out += 1,
                Err(_) => self.stats.refused += 1,
            }
            if let Err(e) = &result {
                tracing::debug!(error = %e, "hello refused");
            }
            out.push(result);
        }
        // The spare back at once if a hello it was given up for just ended
        // (its socket closed above), not at the next caller's pass: by
        // then this process may have taken the freed descriptor for
        // something else (the attack on `a6baac3`: a store's next object
        // took it, and the next client at the limit timed out again).
        self.spare.retake();
    }

    /// One pass of the accept state machines: starts the handshakes of
    /// callers waiting on the sockets and advances every pending one.
    /// Never blocks. Used by the [`Mux`](super::Mux).
    pub(crate) fn accept_step(
        &mut self,
        registry: &mio::Registry,
        token: impl Fn(usize) -> Token,
    ) -> Vec<Result<AnyConnection, ConnectError>> {
        let mut out = Vec::new();
        self.start_pending(registry, token, &mut out);
        self.advance_pending(registry, &mut out);
        out
    }

    /// The earliest deadline of a pending hello, or the time to retry an
    /// `accept` that failed with a caller waiting, if any (an event loop
    /// must wake by then to run a pass).
    pub(crate) fn next_hello_deadline(&self) -> Option<Instant> {
        self.pending
            .iter()
            .flatten()
            .map(|h| h.deadline())
            .chain(self.accept_retry)
            .min()
    }

    /// How many hellos are in progress.
    pub fn pending_hellos(&self) -> usize {
        self.pending.iter().flatten().count()
    }

    /// What became of the callers so far.
    pub fn accept_stats(&self) -> AcceptStats {
        self.stats
    }

    /// Puts back what a stray `rm` or rename took from under the listener,
    /// in the order a new caller needs it: this process's lock file in the
    /// session ([`Session::restore_process_lock`]: without it, cleanup
    /// passes take the process for dead and remove its socket), the Unix
    /// socket if its file is no longer the one bound
    /// ([`ShmListener::restore`]), the directory entry if it is gone or
    /// replaced ([`Published::restore`]). Each is tried whatever became of
    /// the others. Nothing while the session directory is gone or replaced
    /// ([`Session::dir_intact`]: a new directory or a link at its path is
    /// not this process's to fill). `also` is another poll the sockets are
    /// registered with (the [`Mux`](super::Mux)'s) and their token there.
    /// A TCP listener has no file to lose. Also discards the shm rings of
    /// ended connections whose linger is over
    /// ([`ShmListener::ring_memory`]). Costs six `stat`/`fstat` calls
    /// when nothing is missing; the worker runtime's `Worker` and the
    /// store service call it every [`LISTENER_CHECK_INTERVAL`].
    ///
    /// Returns what was put back and why each part that could not be
    /// failed: the lock's ([`ConnectError::Segment`]), the socket's
    /// ([`ConnectError::Io`]), the entry's ([`ConnectError::Publish`]);
    /// what failed stays missing (call again later).
    pub fn restore(
        &mut self,
        also: Option<(&mio::Registry, Token)>,
    ) -> (Restored, Vec<ConnectError>) {
        // Whatever else is missing: rings lingering past their time go.
        if let Some(l) = &self.shm {
            l.discard_lingering_rings();
        }
        let mut done = Restored::default();
        let mut errors = Vec::new();
        if !self.session.dir_intact() {
            return (done, errors);
        }
        match self.session.restore_process_lock() {
            Ok(made) => done.lock = made,
            Err(e) => errors.push(ConnectError::Segment(e)),
        }
        // A file made without the lock would make it again, in whatever
        // directory is at the path by then.
        if !self.session.process_lock_intact() {
            return (done, errors);
        }
        if let Some(l) = self.shm.as_mut().filter(|l| !l.intact()) {
            let old = l.listener().as_fd().as_raw_fd();
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&old));
            if let Some((r, _)) = also {
                let _ = r.deregister(&mut mio::unix::SourceFd(&old));
            }
            match l.restore() {
                Ok(made) => done.socket = made,
                Err(e) => errors.push(e),
            }
            // The new socket, or the old one again if binding failed.
            let fd = l.listener().as_fd().as_raw_fd();
            let mut register = |r: &mio::Registry, token| {
                if let Err(e) = r.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)
                {
                    errors.push(ConnectError::Io {
                        op: "register listener",
                        source: e,
                    });
                }
            };
            register(self.poll.registry(), SHM_TOKEN);
            if let Some((r, token)) = also {
                register(r, token);
            }
        }
        match self._published.restore() {
            Ok(made) => done.entry = made,
            Err(e) => errors.push(e.into()),
        }
        (done, errors)
    }

    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut v = Vec::new();
        if let Some(l) = &self.shm {
            v.push(l.listener().as_fd().as_raw_fd());
        }
        if let Some(l) = &self.tcp {
            v.push(l.listener_fd());
        }
        v
    }

    /// Registers the listening sockets with another poll (the [`Mux`](super::Mux)).
    pub(crate) fn register(&self, registry: &mio::Registry, token: Token) -> std::io::Result<()> {
        for fd in self.fds() {
            registry.register(&mut mio::unix::SourceFd(&fd), token, Interest::READABLE)?;
        }
        Ok(())
    }

    /// Undoes [`Listener::register`].
    pub(crate) fn deregister(&self, registry: &mio::Registry) -> std::io::Result<()> {
        for fd in self.fds() {
            registry.deregister(&mut mio::unix::SourceFd(&fd))?;
        }
        Ok(())
    }

    /// Accepts the next connection on either transport, waiting at most
    /// `timeout`. Hellos run concurrently (a silent or dripping caller holds
    /// up no other), each within the handshake timeout. Refused hellos are
    /// reported as their errors.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<AnyConnection, ConnectError> {
        let deadline = crate::deadline_after(Instant::now(), timeout);
        loop {
            // Outcomes kept from an earlier pass go first, in order.
            if let Some(r) = self.ready.pop_front() {
                return r;
            }
            // Taken out for the pass (the pass borrows `self` mutably).
            let registry = self.registry.take().expect("present between passes");
            let done = self.accept_step(&registry, |slot| Token(PENDING_BASE + slot));
            self.registry = Some(registry);
            self.ready.extend(done);
            if let Some(r) = self.ready.pop_front() {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ConnectError::TimedOut { during: "accept" });
            }
            let wake = self
                .next_hello_deadline()
                .map_or(deadline, |d| d.min(deadline));
            match self
                .poll
                .poll(&mut self.events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ConnectError::Io {
                        op: "poll",
                        source: e,
                    })
                }
            }
        }
    }
}
