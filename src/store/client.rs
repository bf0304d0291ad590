//! The client side: [`StoreClient`], the [`ObjectBuilder`] a `create` lends,
//! the [`ObjectBuffer`] a `get` lends, and [`Subscription`]s.
//!
//! Every reply is validated twice: as an rkyv message (bytecheck, on a
//! private snapshot of the frame) and then semantically — an object's offset
//! and length must lie inside the arena; a reply naming fallback objects
//! must come with exactly that many descriptors over the connection's
//! socket, each a regular file at least as long as its object — before
//! anything is mapped or read. A bad reply is [`StoreError::BadReply`]
//! (and the connection is not used again), never a panic or an
//! out-of-bounds access.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::arena::Span;
use super::error::StoreError;
use super::index::{Lookup, STATE_PENDING, STATE_SEALED};
use super::protocol::{
    Reply, Request, WireLocation, WireObject, MAX_IDS_PER_REQUEST, STORE_PROTOCOL_VERSION,
};
use super::shared::{ClientIndex, IndexInfo};
use super::table::Notification;
use crate::ids::{NodeId, ObjectId, WorkerId};
use crate::shm::{AnonSegment, Session};
use crate::spec::{self, Encoder};
use crate::transport::{
    AnyConnection, Connector, MessageConnection, SessionToken, ShmOptions, TransportConfig,
    WorkerLookup,
};

/// Largest `put` whose bytes travel in the request (one round trip; the
/// service copies them into the arena), and at most a quarter of the
/// connection's ring. Larger ones are created, written in place and sealed
/// (two round trips, no extra copy). The service drops a client whose `Put`
/// carries more, told why: the copy is the service's work, and a `Put` of a
/// frame's worth (16 MiB) held its loop ≈ 8 ms (a fresh-eyes attack on
/// 2026-12-07).
pub const PUT_INLINE_MAX: usize = 16 * 1024;

/// Bytes of an object id in a request (an archived `[u8; 28]`).
const ID_WIRE_LEN: usize = 28;

/// Room in a frame for a request's other fields, in bytes.
const REQUEST_HEADROOM: usize = 1024;

/// The most of a caller's time left that [`StoreClient::get_before`]
/// keeps for the service's reply after its wait.
const REPLY_SLACK: Duration = Duration::from_millis(100);

/// How a [`StoreClient`] connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Bound on waiting for a reply, on top of a `get`'s own timeout. A dead
    /// service is noticed much sooner (its socket hangs up; see
    /// `docs/store.md`); this bounds a live service that stopped answering.
    /// It bounds the connection's handshake too, where it is shorter than
    /// the transport's (5 s).
    pub reply_timeout: Duration,
    /// The shared-memory connection's options (ring size, wait mode).
    pub shm: ShmOptions,
}

impl Default for ClientOptions {
    /// 30 s reply timeout, 256 KiB rings, the transport's default wait.
    fn default() -> Self {
        Self {
            reply_timeout: Duration::from_secs(30),
            shm: ShmOptions {
                ring_capacity: 256 * 1024,
                ..ShmOptions::default()
            },
        }
    }
}

struct Conn {
    conn: AnyConnection,
    encoder: Encoder,
    /// Set when a reply went missing or was bad: later replies could answer
    /// earlier requests, so the connection is not used again.
    /// What made the connection unusable, once something did.
    broken: Option<String>,
}

struct Inner {
    conn: Mutex<Conn>,
    /// Releases of buffers dropped while another thread held `conn`.
    pending: Mutex<Vec<ObjectId>>,
    /// The arena mapped read-only: what `get`'s buffers read.
    arena: Arc<AnonSegment>,
    /// The arena mapped read-write, mapped by the first `create`.
    arena_rw: Mutex<Option<Arc<AnonSegment>>>,
    /// The shared index and this client's reference slots (the fast path).
    index: Option<ClientIndex>,
    /// Set once a call failed on the connection (the service died or the
    /// connection is out of step): the index is not used any more.
    lost: AtomicBool,
    /// Set once a call found the connection unusable for good (see
    /// [`StoreClient::is_broken`]).
    broken: AtomicBool,
    capacity: u64,
    access: StoreAccess,
    name: String,
    opts: ClientOptions,
    /// The service's worker id (a new one at each start): which store
    /// this client talks to.
    service: crate::ids::WorkerId,
}

/// A connection to a store service. Cheap to clone (clones share the
/// connection); calls from several threads are serialised.
#[derive(Clone)]
pub struct StoreClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClient")
            .field("store", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a client reaches the service: the session, its token and the
/// registry the service published itself in (the node layer supplies them;
/// see `node`'s `StoreClient::connect`).
#[derive(Clone)]
pub struct StoreAccess {
    /// The session the store lives in.
    pub session: Session,
    /// The session's token.
    pub token: SessionToken,
    /// Where the service is found by name.
    pub lookup: Arc<dyn WorkerLookup>,
}

impl std::fmt::Debug for StoreAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccess")
            .field("session", &self.session.name())
            .finish_non_exhaustive()
    }
}

/// Opens a connection to store `name` and says hello.
fn open(
    access: &StoreAccess,
    name: &str,
    opts: &ClientOptions,
    subscriber: bool,
) -> Result<(Conn, Reply), StoreError> {
    open_within(access, name, opts, subscriber, opts.reply_timeout)
}

/// [`open`], the handshake and the service's hello bounded by `bound`.
fn open_within(
    access: &StoreAccess,
    name: &str,
    opts: &ClientOptions,
    subscriber: bool,
    bound: Duration,
) -> Result<(Conn, Reply), StoreError> {
    let me = WorkerId::try_from_random()
        .map_err(|_| StoreError::InvalidConfig("no random source for the client's id"))?;
    let mut config = TransportConfig::new(me, access.token);
    // The service's hello is a reply too: bounded alike (a stopped service
    // holds a connect no longer than a call).
    config.handshake_timeout = config.handshake_timeout.min(bound);
    let connector = Connector::new(config, NodeId::nil())
        .with_session(&access.session, Arc::clone(&access.lookup))
        .with_shm_options(opts.shm.clone());
    let conn = connector.connect_name(name).map_err(|e| match e {
        crate::transport::ConnectError::Lookup(crate::transport::LookupError::NoSuchWorker {
            ..
        }) => StoreError::NotRunning {
            name: name.to_owned(),
        },
        e => e.into(),
    })?;
    let mut c = Conn {
        conn,
        encoder: Encoder::new(),
        broken: None,
    };
    let (welcome, _) = c.call(
        &Request::Hello {
            version: STORE_PROTOCOL_VERSION,
            pid: std::process::id(),
            subscriber,
        },
        bound,
    )?;
    Ok((c, welcome))
}

impl Conn {
    fn send(&mut self, req: &Request) -> Result<(), StoreError> {
        self.conn.send_message(&mut self.encoder, req)?;
        Ok(())
    }

    fn recv(&mut self, timeout: Duration) -> Result<Reply, StoreError> {
        match self
            .conn
            .recv_message_with::<Reply, _>(timeout, spec::deserialize::<Reply>)
        {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(StoreError::BadReply("reply does not decode")),
            Err(crate::transport::RecvError::TimedOut) => Err(StoreError::TimedOut(timeout)),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `req` and waits at most `timeout` for its reply, then for the
    /// fallback files' descriptors the reply names (queued on the socket
    /// before it), also bounded by `timeout`: exactly as many as it names,
    /// or the connection is broken (`BadReply`, `TimedOut`) — but for those
    /// this process had no descriptor to receive (`MSG_CTRUNC`), which are
    /// missing from the [`Files`] and fail only their objects.
    fn call(&mut self, req: &Request, timeout: Duration) -> Result<(Reply, Files), StoreError> {
        if let Some(cause) = &self.broken {
            return Err(StoreError::ConnectionBroken {
                cause: cause.clone(),
            });
        }
        self.send(req)?;
        let r = self.recv(timeout).and_then(|r| {
            let n = r.fallback_files().len();
            if n == 0 {
                return Ok((r, Files::default()));
            }
            let (fds, _) =
                super::handoff::recv_or_cut(&self.conn, super::handoff::FALLBACK, n, timeout)?;
            Ok((
                r,
                Files(fds.into_iter().map(|f| f.map(File::from)).collect()),
            ))
        });
        match r {
            Ok((Reply::Error(e), _)) => Err(e.to_error()),
            Ok(r) => Ok(r),
            Err(e) => {
                self.broken = Some(crate::error_chain(&e));
                Err(e)
            }
        }
    }
}

/// A `get`'s time limits, both counted from the call's start: the objects'
/// wait (`deadline`) and the replies' (`reply_deadline`, `bound` after the
/// start: the caller's timeout plus its reply timeout).
struct GetBounds {
    deadline: Instant,
    reply_deadline: Instant,
    bound: Duration,
}

/// The fallback files that came with a reply, in its order (each closed
/// when dropped; a mapping made from it outlives it); `None` for one this
/// process had no descriptor to receive.
#[derive(Default)]
struct Files(VecDeque<Option<File>>);

impl Files {
    /// The next fallback file (a reply naming more than came is refused
    /// before this, in [`Conn::call`]). Errors: `Io` for one cut off on
    /// the way (this process at its descriptor limit: it fails that object
    /// alone; the connection stays in step).
    fn next(&mut self) -> Result<File, StoreError> {
        match self.0.pop_front() {
            Some(Some(f)) => Ok(f),
            Some(None) => Err(StoreError::io(
                "receive a fallback object's descriptor",
                crate::sys::fdpass::cut_off(),
            )),
            None => Err(StoreError::BadReply(
                "a fallback object without its descriptor",
            )),
        }
    }
}

impl StoreClient {
    /// Connects to the store named `name` through `access` (the session,
    /// its token and the registry the store published itself in) and maps
    /// its arena. `StoreClient::connect` / `connect_with` (in the node
    /// layer) fill `access` from the session's directory and token file.
    ///
    /// Errors: `Connect` (no such store, refused), `Shm` (the arena
    /// segment does not open), `BadReply`.
    pub fn connect_via(
        access: StoreAccess,
        name: &str,
        opts: ClientOptions,
    ) -> Result<Self, StoreError> {
        let bound = opts.reply_timeout;
        Self::connect_via_within(access, name, opts, bound)
    }

    /// [`StoreClient::connect_via`], the handshake and the hand-off of the
    /// segments bounded by `bound` instead of the reply timeout.
    fn connect_via_within(
        access: StoreAccess,
        name: &str,
        opts: ClientOptions,
        bound: Duration,
    ) -> Result<Self, StoreError> {
        let (conn, welcome) = open_within(&access, name, &opts, false, bound)?;
        let Reply::Welcome {
            capacity, index, ..
        } = welcome
        else {
            return Err(StoreError::BadReply("expected a welcome"));
        };
        // The segments came over the socket just before the welcome: the
        // arena, then (with an index) the index and our slots.
        let mut fds = super::handoff::recv(
            &conn.conn,
            super::handoff::SEGMENTS,
            if index.is_some() { 3 } else { 1 },
            bound,
        )?
        .into_iter();
        let (Some(arena_fd), index_fds) = (fds.next(), (fds.next(), fds.next())) else {
            return Err(StoreError::BadReply("no arena in the hand-off"));
        };
        let len = usize::try_from(capacity)
            .ok()
            .filter(|c| *c > 0 && *c as u64 <= super::MAX_ARENA_CAPACITY)
            .ok_or(StoreError::BadReply("bad arena capacity"))?;
        // Read-only: a client that only reads can never write the arena
        // (a stray write through a buffer faults in that client alone).
        // Refused unless sealed against shrinking: see `handoff`.
        let arena = Arc::new(AnonSegment::from_fd_mode(arena_fd, len, false)?);
        let index = match (index, index_fds) {
            (Some(w), (Some(ix_fd), Some(refs_fd))) => {
                let info = IndexInfo {
                    entries: w.entries,
                    key: w.key,
                };
                match ClientIndex::open(ix_fd, refs_fd, &info) {
                    Ok(ix) => Some(ix),
                    Err(e) => {
                        // No fast path; every call asks the service.
                        tracing::warn!(error = %e, "store: the shared index does not open");
                        None
                    }
                }
            }
            _ => None,
        };
        let service = crate::transport::Connection::peer_worker_id(&conn.conn);
        Ok(Self {
            inner: Arc::new(Inner {
                service,
                conn: Mutex::new(conn),
                pending: Mutex::new(Vec::new()),
                arena,
                arena_rw: Mutex::new(None),
                index,
                lost: AtomicBool::new(false),
                broken: AtomicBool::new(false),
                capacity,
                access: access.clone(),
                name: name.to_owned(),
                opts,
            }),
        })
    }

    /// The arena's capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// Whether a call found this client's connection unusable for good:
    /// the service died or cut the connection off, its rings failed
    /// validation (a violation: someone wrote over them), or a reply went
    /// missing or was bad, so replies can no longer be matched to
    /// requests. Every later call that needs the service fails; connect
    /// again ([`StoreClient::connect_again`]). `false` until a call found
    /// out: a connection broken while no call used it is not noticed
    /// here (calls served from the shared index use no connection).
    pub fn is_broken(&self) -> bool {
        // Relaxed: see `call_files`.
        self.inner.broken.load(Ordering::Relaxed)
    }

    /// Whether this client needs a new connection: it is broken
    /// ([`StoreClient::is_broken`]), or the service at its other end is
    /// gone (its socket hung up: the service died; another may run by
    /// now), which no call has found out yet. A `poll` of the socket, no
    /// call: a live service that is stopped is not lost.
    ///
    /// Never waits: while another thread's call holds the connection
    /// (one waiting for a stopped service, say), `false` — the call finds
    /// out.
    pub fn is_lost(&self) -> bool {
        if self.is_broken() {
            return true;
        }
        match self.inner.conn.try_lock() {
            Ok(c) => c.conn.peer_gone(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().conn.peer_gone(),
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Whether `other` is a clone of this client (shares its connection).
    pub(crate) fn same_connection(&self, other: &StoreClient) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether `other` talks to the same run of the same service (a
    /// service started again under the name is another store: what the
    /// first held went with it).
    pub(crate) fn same_service(&self, other: &StoreClient) -> bool {
        self.inner.service == other.inner.service
    }

    /// A new connection to the same store, with the same options, as
    /// [`StoreClient::connect_via`] made this one (what the holder of a
    /// broken client does, e.g. a [`PullServer`](super::PullServer)).
    /// This client is left as it is; its buffers stay valid while they
    /// live.
    ///
    /// Errors: those of [`StoreClient::connect_via`].
    pub fn connect_again(&self) -> Result<Self, StoreError> {
        Self::connect_via(
            self.inner.access.clone(),
            &self.inner.name,
            self.inner.opts.clone(),
        )
    }

    /// [`StoreClient::connect_again`], the handshake bounded by `bound`
    /// (at most the reply timeout) instead of the reply timeout: for a
    /// caller with a deadline of its own (a worker's argument fetch). The
    /// new client keeps this one's options.
    pub(crate) fn connect_again_within(&self, bound: Duration) -> Result<Self, StoreError> {
        Self::connect_via_within(
            self.inner.access.clone(),
            &self.inner.name,
            self.inner.opts.clone(),
            bound.min(self.inner.opts.reply_timeout),
        )
    }

    /// Puts this client's reference slots back to what it holds, if
    /// another process raised them (their memfd can be opened through
    /// `/proc/<pid>/fd` by the same user): each slot says to the service
    /// how many references this client holds on an index entry, and a
    /// raised one would keep that object from being freed after a delete
    /// for as long as this client lives. The client keeps its own tally in
    /// private memory and lowers every slot above it back to it, lock-free
    /// (its `get`s go on meanwhile; `store::index::repair_slot`), then
    /// tells the service when a pending delete may now complete. A slot
    /// lowered below the tally is left (a take or release in flight looks
    /// the same; the buffers it guards are this client's own). The node's
    /// object endpoint and every [`Worker`](crate::worker::Worker) with a
    /// store call this every second; a long-lived client of an application
    /// can do the same.
    ///
    /// Costs a scan of 12 bytes per index entry (384 KiB with the most
    /// entries a default store has,
    /// [`DEFAULT_INDEX_ENTRIES`](crate::store::DEFAULT_INDEX_ENTRIES)).
    /// The client's total (the count of its references the service reads
    /// before its slots) is put back the same way — lowered at once, raised
    /// when two calls in a row find it low (once, it may be one of this
    /// client's takes or releases in flight) — and the groups of entries it
    /// took references in, which the service reads before a slot, are set
    /// back if another process cleared them. Returns how many slots were
    /// put back, the total and the groups counting as one (0 without an
    /// index: nothing to repair; also logged as a warning when above 0).
    pub fn repair_reference_slots(&self) -> usize {
        let Some(ix) = self.inner.index.as_ref() else {
            return 0;
        };
        let (fixed, tell) = ix.repair();
        if fixed > 0 {
            tracing::warn!(
                store = %self.inner.name,
                slots = fixed,
                "another process wrote into this store client's reference slots: put back"
            );
        }
        if tell {
            self.inner.send_quiet(Request::Reap { pos: None });
        }
        fixed
    }

    /// Whether `get` and `contains` of sealed objects are served from the
    /// shared index now (it is mapped, the service is live and no call
    /// failed), without a round trip to the service.
    pub fn uses_index(&self) -> bool {
        self.live_index().is_some()
    }

    /// One request and its reply, flushing queued releases first and after.
    fn call(&self, req: &Request, extra: Duration) -> Result<Reply, StoreError> {
        self.call_files(req, extra).map(|(r, _)| r)
    }

    /// As [`StoreClient::call`], with the fallback files the reply names.
    fn call_files(&self, req: &Request, extra: Duration) -> Result<(Reply, Files), StoreError> {
        self.call_files_within(req, self.inner.opts.reply_timeout.saturating_add(extra))
    }

    /// As [`StoreClient::call_files`], waiting at most `bound` for the reply.
    fn call_files_within(
        &self,
        req: &Request,
        bound: Duration,
    ) -> Result<(Reply, Files), StoreError> {
        let r = {
            let mut c = lock(&self.inner.conn);
            self.inner.flush_locked(&mut c);
            let r = c.call(req, bound);
            if c.broken.is_some()
                || matches!(
                    r,
                    Err(StoreError::Send(_)
                        | StoreError::Recv(_)
                        | StoreError::Connect(_)
                        | StoreError::ConnectionBroken { .. })
                )
            {
                // Relaxed: only stops later fast-path calls (a hint; the
                // connection itself reports the failure to each call).
                self.inner.lost.store(true, Ordering::Relaxed);
            }
            let fatal = c.broken.is_some()
                || match &r {
                    Err(StoreError::Send(e)) => e.is_fatal(),
                    Err(StoreError::Recv(e)) => e.is_fatal(),
                    Err(StoreError::ConnectionBroken { .. }) => true,
                    _ => false,
                };
            if fatal {
                // Relaxed: a flag read by `is_broken`; the connection
                // itself reports the failure to each call.
                self.inner.broken.store(true, Ordering::Relaxed);
            }
            r
        };
        self.inner.flush_releases();
        r
    }

    /// The shared index, while the service is known to be serving.
    fn live_index(&self) -> Option<&ClientIndex> {
        let ix = self.inner.index.as_ref()?;
        // Relaxed: see `call`.
        if self.inner.lost.load(Ordering::Relaxed) || !ix.live() {
            return None;
        }
        Some(ix)
    }

    /// A reply of the wrong kind: the connection is out of step from now on.
    fn bad_reply(&self, why: &'static str) -> StoreError {
        lock(&self.inner.conn)
            .broken
            .get_or_insert_with(|| format!("bad reply from the store service: {why}"));
        // Relaxed: see `call_files`.
        self.inner.broken.store(true, Ordering::Relaxed);
        StoreError::BadReply(why)
    }

    /// The arena mapped read-write (mapped on first use: clients that never
    /// create never map it writable).
    fn arena_rw(&self) -> Result<Arc<AnonSegment>, StoreError> {
        let mut rw = lock(&self.inner.arena_rw);
        if let Some(a) = rw.as_ref() {
            return Ok(Arc::clone(a));
        }
        // The same sealed memfd, mapped writable this time.
        let a = Arc::new(self.inner.arena.remap(true)?);
        *rw = Some(Arc::clone(&a));
        Ok(a)
    }

    /// The span of `o` to write (a created object: read-write mappings).
    /// `file` is the object's fallback file if it has one.
    fn span_rw(&self, o: &WireObject, file: Option<File>) -> Result<Span, StoreError> {
        match (&o.location, file) {
            (WireLocation::Arena(offset), _) => {
                Span::in_arena(&self.arena_rw()?, *offset, o.data_size)
            }
            (WireLocation::Fallback(_), Some(f)) => Span::in_file(&f, o.data_size, true),
            (WireLocation::Fallback(_), None) => Err(StoreError::BadReply(
                "a fallback object without its descriptor",
            )),
        }
    }

    /// The span of `o` to read (read-only mappings); `file` as in
    /// [`StoreClient::span_rw`].
    fn span(&self, o: &WireObject, file: Option<File>) -> Result<Span, StoreError> {
        match (&o.location, file) {
            (WireLocation::Arena(offset), _) => {
                Span::in_arena(&self.inner.arena, *offset, o.data_size)
            }
            (WireLocation::Fallback(_), Some(f)) => Span::in_file(&f, o.data_size, false),
            (WireLocation::Fallback(_), None) => Err(StoreError::BadReply(
                "a fallback object without its descriptor",
            )),
        }
    }

    /// Creates object `id` of `data_size` bytes with `metadata` and lends
    /// its data, zero-copy, for writing. The object is invisible to others
    /// until [`ObjectBuilder::seal`]; dropping the builder unsealed (or
    /// [`ObjectBuilder::abort`]) frees it. May evict least-recently-used
    /// unheld objects to make room (see `docs/store.md`).
    ///
    /// Errors: `ObjectExists`, `ObjectInUse` (the id is deleted but still
    /// held), `StoreFull`, `OutOfDisk`, `OutOfDescriptors` (the service has
    /// no descriptor left for a fallback file), `MetadataTooLarge`,
    /// `ObjectTooLarge`, connection errors.
    pub fn create(
        &self,
        id: ObjectId,
        data_size: u64,
        metadata: &[u8],
    ) -> Result<ObjectBuilder, StoreError> {
        self.create_within(id, data_size, metadata, None, self.inner.opts.reply_timeout)
    }

    /// [`StoreClient::create`], waiting at most `bound` for the reply (for
    /// a caller with a deadline of its own, e.g. a pull), counted against
    /// the store's pull capacity while unsealed, for at most about
    /// `pull_left` (the time left before the pull's deadline), when that
    /// is given (`StoreError::PullsFull` beyond it). A reply that
    /// does not come within it fails `TimedOut` and leaves the connection
    /// unusable ([`StoreClient::is_broken`]); an object the service
    /// created meanwhile is aborted when the connection closes (the service
    /// aborts a gone client's unsealed objects).
    pub(crate) fn create_within(
        &self,
        id: ObjectId,
        data_size: u64,
        metadata: &[u8],
        pull_left: Option<Duration>,
        bound: Duration,
    ) -> Result<ObjectBuilder, StoreError> {
        check_metadata(id, metadata)?;
        let (reply, mut files) = self.call_files_within(
            &Request::Create {
                id,
                data_size,
                metadata: metadata.to_vec(),
                pull_ms: pull_left.map(|l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
            },
            bound,
        )?;
        let Reply::Object(o) = reply else {
            return Err(self.bad_reply("expected an object"));
        };
        if o.id != id || o.data_size != data_size {
            return Err(self.bad_reply("created object does not match"));
        }
        let file = match o.location {
            WireLocation::Fallback(_) => match files.next() {
                Ok(f) => Some(f),
                Err(e) => {
                    self.inner.send_quiet(Request::Drop { id });
                    return Err(e);
                }
            },
            WireLocation::Arena(_) => None,
        };
        let span = match self.span_rw(&o, file) {
            Ok(s) => s,
            Err(e) => {
                self.inner.send_quiet(Request::Drop { id });
                return Err(e);
            }
        };
        Ok(ObjectBuilder {
            client: self.clone(),
            id,
            metadata: o.metadata,
            span: Some(span),
        })
    }

    /// Creates `id`, copies `data` into it and seals it.
    ///
    /// Errors: as [`StoreClient::create`].
    pub fn put(&self, id: ObjectId, data: &[u8], metadata: &[u8]) -> Result<(), StoreError> {
        check_metadata(id, metadata)?;
        // Small enough to travel in one request, also on a small ring.
        let inline_max = PUT_INLINE_MAX.min(self.inner.opts.shm.ring_capacity / 4);
        if data.len() <= inline_max {
            // One round trip: the bytes travel in the request and the
            // service writes them into the arena.
            return self.done(Request::Put {
                id,
                data: data.to_vec(),
                metadata: metadata.to_vec(),
            });
        }
        let mut b = self.create(id, data.len() as u64, metadata)?;
        b.copy_from_slice(data);
        b.seal().map(drop)
    }

    /// Waits until every object of `ids` is sealed or `timeout` passed
    /// (`Duration::ZERO`: do not wait), then lends each sealed one as an
    /// [`ObjectBuffer`] (`None` for the others, in the order of `ids`).
    /// Each buffer holds a reference: the object is neither evicted nor
    /// freed by a delete while it lives.
    ///
    /// Errors: `BadReply`, connection errors (`Transport(PeerDied)` when the
    /// service died, also while waiting).
    pub fn get(
        &self,
        ids: &[ObjectId],
        timeout: Duration,
    ) -> Result<Vec<Option<ObjectBuffer>>, StoreError> {
        self.get_within(ids, timeout, self.inner.opts.reply_timeout)
    }

    /// [`StoreClient::get`] with `reply_timeout` in place of the client's
    /// [`ClientOptions::reply_timeout`] for this call (at most `timeout` +
    /// `reply_timeout` in all, however the service fares): for a caller
    /// with a deadline of its own. A reply that does not come within it
    /// fails `TimedOut` and, as any, leaves the connection unusable
    /// ([`StoreClient::is_broken`]).
    ///
    /// Errors: as [`StoreClient::get`].
    pub fn get_within(
        &self,
        ids: &[ObjectId],
        timeout: Duration,
        reply_timeout: Duration,
    ) -> Result<Vec<Option<ObjectBuffer>>, StoreError> {
        // Both bounds count from here: the lookups in the shared index (a
        // copy of each object's metadata) are part of the call's time.
        let start = Instant::now();
        let bound = reply_timeout.saturating_add(timeout);
        let call = GetBounds {
            deadline: crate::deadline_after(start, timeout),
            reply_deadline: crate::deadline_after(start, bound),
            bound,
        };
        let Some(ix) = self.live_index() else {
            return self.get_from_service(ids, &call);
        };
        // The fast path: every sealed, indexed object is taken from the
        // shared index; only the others are asked of the service.
        let mut out: Vec<Option<ObjectBuffer>> = Vec::with_capacity(ids.len());
        let mut rest = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let b = self.get_fast(ix, id);
            if b.is_none() {
                rest.push(i);
            }
            out.push(b);
        }
        if rest.is_empty() {
            return Ok(out);
        }
        let ask: Vec<ObjectId> = rest.iter().map(|i| ids[*i]).collect();
        // On error `out` drops, giving its references back.
        let got = self.get_from_service(&ask, &call)?;
        for (i, b) in rest.into_iter().zip(got) {
            out[i] = b;
        }
        Ok(out)
    }

    /// [`StoreClient::get`] for a caller with `left` before its deadline:
    /// waits for the objects at most `wait` and for the service's reply at
    /// most `left` in all (the wait is shortened to leave the reply a
    /// little time: a quarter of `left`, at most 100 ms). A reply that does
    /// not come by then fails `TimedOut` and leaves the connection
    /// unusable ([`StoreClient::is_broken`]), as with
    /// [`StoreClient::get_within`].
    pub(crate) fn get_before(
        &self,
        ids: &[ObjectId],
        wait: Duration,
        left: Duration,
    ) -> Result<Vec<Option<ObjectBuffer>>, StoreError> {
        let slack = (left / 4).min(REPLY_SLACK);
        let wait = wait.min(left.saturating_sub(slack));
        self.get_within(ids, wait, left.saturating_sub(wait))
    }

    /// `id` through the shared index: a buffer if it is sealed and indexed
    /// and its entry reads cleanly, else `None` (ask the service).
    fn get_fast(&self, ix: &ClientIndex, id: &ObjectId) -> Option<ObjectBuffer> {
        // A changed entry (evicted or deleted meanwhile) is looked up once
        // more; then the service answers.
        for _ in 0..2 {
            let Lookup::Found(snap) = ix.lookup(id) else {
                return None;
            };
            if snap.record.state != STATE_SEALED {
                return None;
            }
            if !ix.try_acquire(&snap) {
                continue;
            }
            let r = &snap.record;
            return match Span::in_arena(&self.inner.arena, r.offset, r.data_size) {
                Ok(span) => Some(ObjectBuffer {
                    client: Arc::clone(&self.inner),
                    id: *id,
                    metadata: r.metadata().to_vec(),
                    span,
                    hold: Hold::Index(snap.pos),
                }),
                Err(_) => {
                    // An entry that points outside the arena: not trusted.
                    if ix.release(snap.pos) {
                        self.inner.send_quiet(Request::Reap {
                            pos: Some(snap.pos),
                        });
                    }
                    None
                }
            };
        }
        None
    }

    /// `get` answered by the service (parked there until the objects are
    /// sealed or the timeout passes), its replies waited for at most
    /// `call`'s deadlines. As many requests as the ids need
    /// ([`StoreClient::ids_per_request`]), and as many replies as the
    /// answers need: a service answers the first part of a long list whose
    /// answer would not fit one frame, and is asked again for the rest
    /// (then without waiting: the objects were sealed, or the time is up).
    fn get_from_service(
        &self,
        ids: &[ObjectId],
        call: &GetBounds,
    ) -> Result<Vec<Option<ObjectBuffer>>, StoreError> {
        let per = self.ids_per_request();
        // On error `held` drops, giving its references back.
        let mut held = Vec::with_capacity(ids.len());
        while held.len() < ids.len() {
            let rest = &ids[held.len()..];
            let ask = &rest[..rest.len().min(per)];
            let now = Instant::now();
            let got = self
                .get_part(
                    ask,
                    call.deadline.saturating_duration_since(now),
                    call.reply_deadline.saturating_duration_since(now),
                )
                // The call's bound, not what was left of it for this part
                // (which read "did not answer within 0ns").
                .map_err(|e| match e {
                    StoreError::TimedOut(_) => StoreError::TimedOut(call.bound),
                    e => e,
                })?;
            held.extend(got);
        }
        Ok(held)
    }

    /// The most object ids one request carries on this connection (28
    /// bytes each in a frame of [`Connection::max_send_len`], and at most
    /// [`MAX_IDS_PER_REQUEST`]); longer lists go in several requests.
    fn ids_per_request(&self) -> usize {
        let max = crate::transport::Connection::max_send_len(&lock(&self.inner.conn).conn);
        (max.saturating_sub(REQUEST_HEADROOM) / ID_WIRE_LEN).clamp(1, MAX_IDS_PER_REQUEST)
    }

    /// One `Get` request of `ids` and its reply: buffers for its first
    /// entries (at least one, at most `ids.len()`).
    fn get_part(
        &self,
        ids: &[ObjectId],
        timeout: Duration,
        bound: Duration,
    ) -> Result<Vec<Option<ObjectBuffer>>, StoreError> {
        // Rounded up: a caller's deadline, as measured here, is not cut
        // short by the millisecond.
        let timeout_ms = u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let (reply, mut files) = self.call_files_within(
            &Request::Get {
                ids: ids.to_vec(),
                timeout_ms,
            },
            bound,
        )?;
        let Reply::Objects(objs) = reply else {
            return Err(self.bad_reply("expected objects"));
        };
        if objs.is_empty() || objs.len() > ids.len() {
            return Err(self.bad_reply("wrong number of objects"));
        }
        // Wrap every reference first, so each one is released even if a
        // later one turns out bad.
        let mut held = Vec::with_capacity(objs.len());
        let mut bad = None;
        for (o, want) in objs.into_iter().zip(ids) {
            let Some(o) = o else {
                held.push(None);
                continue;
            };
            // Taken in the reply's order whatever happens to the object.
            let file = match o.location {
                WireLocation::Fallback(_) => Some(files.next()),
                WireLocation::Arena(_) => None,
            };
            let file = match file.transpose() {
                Ok(f) => f,
                Err(e) => {
                    // Its descriptor was cut off on the way: this object
                    // fails, the others and the connection are fine.
                    self.inner.send_quiet(Request::Release { id: o.id });
                    bad.get_or_insert(e);
                    held.push(None);
                    continue;
                }
            };
            if o.id != *want {
                // Not a reference we asked for: release it as named.
                self.inner.send_quiet(Request::Release { id: o.id });
                bad.get_or_insert(StoreError::BadReply("object ids out of order"));
                held.push(None);
                continue;
            }
            match self.span(&o, file) {
                Ok(span) => held.push(Some(ObjectBuffer {
                    client: Arc::clone(&self.inner),
                    id: o.id,
                    metadata: o.metadata,
                    span,
                    hold: Hold::Service,
                })),
                Err(e) => {
                    self.inner.send_quiet(Request::Release { id: o.id });
                    bad.get_or_insert(e);
                    held.push(None);
                }
            }
        }
        match bad {
            Some(e) => Err(e),
            None => Ok(held),
        }
    }

    /// Whether the shared index shows `id` sealed and visible, without a
    /// call to the service (so it never waits, whatever the service does):
    /// `Some(true)` if it does; `Some(false)` if its entry says deleted
    /// (deleted while someone holds it through the index) or the index
    /// holds no entry for `id` — an object that was there is then deleted
    /// (or evicted): a delete takes it out of the index first; an object
    /// the index never held (a fallback file, or a full index) reads
    /// `Some(false)` too — and `None` when the index cannot tell (not
    /// mapped, the service gone or stale, an entry being rewritten or
    /// invalid).
    pub fn indexed(&self, id: ObjectId) -> Option<bool> {
        match self.live_index()?.lookup(&id) {
            Lookup::Found(s) if s.record.state == STATE_SEALED => Some(true),
            Lookup::Found(s) if s.record.state == STATE_PENDING => Some(false),
            Lookup::Absent => Some(false),
            _ => None,
        }
    }

    /// Whether `id` is sealed and visible.
    pub fn contains(&self, id: ObjectId) -> Result<bool, StoreError> {
        self.contains_within(id, self.inner.opts.reply_timeout)
    }

    /// [`StoreClient::contains`], waiting at most `bound` for the service's
    /// reply (a timed-out one breaks the connection, as any).
    pub(crate) fn contains_within(
        &self,
        id: ObjectId,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        if let Some(ix) = self.live_index() {
            if let Lookup::Found(s) = ix.lookup(&id) {
                if s.record.state == STATE_SEALED {
                    return Ok(true);
                }
            }
        }
        self.bool_within(&Request::Contains { id }, bound)
    }

    /// Whether a pull's create of object `id` (`data_size` bytes) would be
    /// let in by the store's pull capacity now (`Request::PullRoom`; if
    /// not, the pull keeps its turn in the store's queue), waiting at most
    /// `bound` for the reply (a timed-out one breaks the connection, as
    /// any).
    pub(crate) fn pull_room_within(
        &self,
        id: ObjectId,
        data_size: u64,
        bound: Duration,
    ) -> Result<bool, StoreError> {
        self.bool_within(&Request::PullRoom { id, data_size }, bound)
    }

    /// Takes pull `id` out of the store's queue of pulls waiting for room
    /// (`Request::PullLeave`, no reply): the pull ended without its create.
    pub(crate) fn pull_leave(&self, id: ObjectId) {
        self.inner.send_quiet(Request::PullLeave { id });
    }

    /// Whether a pull queued in the store waits for room it does not have
    /// (`Request::PullWaiting`), waiting at most `bound` for the reply.
    pub(crate) fn pull_waiting_within(&self, bound: Duration) -> Result<bool, StoreError> {
        self.bool_within(&Request::PullWaiting, bound)
    }

    /// `request`'s `Bool` reply, waited for at most `bound`.
    fn bool_within(&self, request: &Request, bound: Duration) -> Result<bool, StoreError> {
        match self.call_files_within(request, bound)?.0 {
            Reply::Bool(b) => Ok(b),
            _ => Err(self.bad_reply("expected a bool")),
        }
    }

    /// Deletes each of `ids`: freed at once if nobody holds it, else hidden
    /// and freed when the last buffer is dropped. Missing ids are not an
    /// error.
    ///
    /// Errors: `ObjectNotSealed` (the first unsealed id; the others are
    /// still deleted).
    pub fn delete(&self, ids: &[ObjectId]) -> Result<(), StoreError> {
        self.done_for_each(ids, false, |ids| Request::Delete { ids })
    }

    /// Evicts least-recently-used unheld sealed objects until at least
    /// `bytes` are freed or none is left; returns the bytes freed (64-byte
    /// rounded sizes).
    pub fn evict(&self, bytes: u64) -> Result<u64, StoreError> {
        match self.call(&Request::Evict { bytes }, Duration::ZERO)? {
            Reply::Freed(n) => Ok(n),
            _ => Err(self.bad_reply("expected a byte count")),
        }
    }

    /// Marks `ids` as just used: each unheld one moves to the
    /// most-recently-used end of the eviction order.
    pub fn refresh(&self, ids: &[ObjectId]) -> Result<(), StoreError> {
        self.done_for_each(ids, false, |ids| Request::Refresh { ids })
    }

    /// Pins `ids` (arguments of tasks queued on this node): a pinned object
    /// is never evicted, until [`StoreClient::unpin`] or this client's
    /// disconnection. Errors: `ObjectNotFound` (the first missing id;
    /// earlier ones stay pinned); `MetadataFull` when the metadata
    /// capacity has no room for this client's hold on an object it does
    /// not hold yet ([`HOLDER_OVERHEAD`](crate::store::HOLDER_OVERHEAD)
    /// bytes each) and nothing it can evict makes it (the service evicts
    /// in steps first, never the objects named).
    pub fn pin(&self, ids: &[ObjectId]) -> Result<(), StoreError> {
        self.done_for_each(ids, true, |ids| Request::Pin { ids })
    }

    /// Undoes [`StoreClient::pin`]. Errors: `ObjectNotFound` for an id this
    /// client has not pinned.
    pub fn unpin(&self, ids: &[ObjectId]) -> Result<(), StoreError> {
        self.done_for_each(ids, true, |ids| Request::Unpin { ids })
    }

    /// Seals `id` by id (plasma's `Seal`): for objects this client created
    /// whose [`ObjectBuilder`] is still alive elsewhere; usually call
    /// [`ObjectBuilder::seal`]. Errors: `ObjectNotFound`,
    /// `ObjectAlreadySealed`, `NotCreator`.
    pub fn seal(&self, id: ObjectId) -> Result<(), StoreError> {
        self.done(Request::Seal { id })
    }

    /// `request` of `ids` answered `Done`, in as many requests as the ids
    /// need ([`StoreClient::ids_per_request`]): each part goes on after an
    /// object error of an earlier part unless `stop_at_error` (then the
    /// error ends it, as the service stops at it within one request); a
    /// connection error ends it either way. Returns the first error.
    fn done_for_each(
        &self,
        ids: &[ObjectId],
        stop_at_error: bool,
        request: impl Fn(Vec<ObjectId>) -> Request,
    ) -> Result<(), StoreError> {
        let mut first = Ok(());
        for part in ids.chunks(self.ids_per_request()) {
            match self.done(request(part.to_vec())) {
                Ok(()) => {}
                Err(e) if stop_at_error || self.is_broken() => return Err(e),
                Err(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }

    fn done(&self, req: Request) -> Result<(), StoreError> {
        self.done_within(req, self.inner.opts.reply_timeout)
    }

    /// A request answered by `Done`, waiting at most `bound` for it.
    fn done_within(&self, req: Request, bound: Duration) -> Result<(), StoreError> {
        match self.call_files_within(&req, bound)?.0 {
            Reply::Done => Ok(()),
            _ => Err(self.bad_reply("expected done")),
        }
    }

    /// Opens a notification channel: a `Sealed` for every object that
    /// exists now and every seal and deletion (delete or eviction) as it
    /// happens. The existing objects are announced a turn of the service at
    /// a time, as the channel is read, so new events may come between them;
    /// an object gone meanwhile is not announced, one sealed again meanwhile
    /// may be announced twice (`docs/store.md`, "A slow client"). A
    /// subscription read too slowly is told what it missed and brought up
    /// to date ([`Notification::Missed`], [`Notification::Resynced`]).
    ///
    /// Errors: connection errors; among them the service's refusal of a
    /// subscription whose rings (`ClientOptions::shm`) cannot take the
    /// largest notification (64 KiB of metadata: 64 KiB rings cannot,
    /// the default 256 KiB can).
    pub fn subscribe(&self) -> Result<Subscription, StoreError> {
        let (conn, welcome) = open(&self.inner.access, &self.inner.name, &self.inner.opts, true)?;
        if !matches!(welcome, Reply::Welcome { .. }) {
            return Err(StoreError::BadReply("expected a welcome"));
        }
        Ok(Subscription { conn })
    }
}

impl Inner {
    /// Sends releases queued by other threads (connection lock held).
    fn flush_locked(&self, c: &mut Conn) {
        let ids = std::mem::take(&mut *lock(&self.pending));
        for id in ids {
            let _ = c.send(&Request::Release { id });
        }
    }

    /// Sends queued releases if the connection is free (see
    /// [`ObjectBuffer`]'s drop).
    fn flush_releases(&self) {
        while !lock(&self.pending).is_empty() {
            match self.conn.try_lock() {
                Ok(mut c) => self.flush_locked(&mut c),
                Err(_) => return, // the holder flushes after its call
            }
        }
    }

    /// Sends a request that has no reply, now or (if another thread is
    /// mid-call) right after that call. Failures are ignored: a dead
    /// service has already let go of everything.
    fn send_quiet(&self, req: Request) {
        match (&req, self.conn.try_lock()) {
            (_, Ok(mut c)) => {
                let _ = c.send(&req);
                return;
            }
            (Request::Release { id }, Err(_)) => lock(&self.pending).push(*id),
            (_, Err(_)) => {
                let mut c = lock(&self.conn);
                let _ = c.send(&req);
                return;
            }
        }
        self.flush_releases();
    }
}

/// `MetadataTooLarge` for metadata the service would refuse, before it is
/// sent: beyond the request frame's room it failed as a transport error
/// instead ("frame of … bytes exceeds the peer's maximum": the attack on
/// `b5ede7b`, 2 MB of metadata; 200 KB got the store's own refusal).
fn check_metadata(id: ObjectId, metadata: &[u8]) -> Result<(), StoreError> {
    if metadata.len() > super::table::MAX_METADATA_LEN {
        return Err(StoreError::MetadataTooLarge {
            id,
            len: metadata.len() as u64,
            max: super::table::MAX_METADATA_LEN as u64,
        });
    }
    Ok(())
}

/// A new object's data, lent for writing (zero-copy: the bytes are in the
/// store's shared memory). Derefs to `[u8]` mutably.
/// [`ObjectBuilder::seal`] publishes it; dropping it unsealed aborts it.
pub struct ObjectBuilder {
    client: StoreClient,
    id: ObjectId,
    metadata: Vec<u8>,
    /// `None` once sealed or aborted.
    span: Option<Span>,
}

impl std::fmt::Debug for ObjectBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBuilder")
            .field("id", &self.id)
            .field("len", &self.len())
            .finish()
    }
}

impl ObjectBuilder {
    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }

    /// Seals the object: it becomes immutable and visible to `get`,
    /// `contains` and subscribers. Returns the data as a read-only
    /// [`ObjectBuffer`] that keeps the creator's reference (drop it to let
    /// the object become evictable).
    ///
    /// Errors: `ObjectAlreadySealed` (sealed by id meanwhile), connection
    /// errors. On error the builder is dropped (which aborts the object if
    /// it is still unsealed).
    pub fn seal(self) -> Result<ObjectBuffer, StoreError> {
        let bound = self.client.inner.opts.reply_timeout;
        self.seal_within(bound)
    }

    /// [`ObjectBuilder::seal`], waiting at most `bound` for the service's
    /// reply. A reply that does not come within it fails `TimedOut` and
    /// leaves the connection unusable ([`StoreClient::is_broken`]); the
    /// builder's drop still queues a `Drop` of the object on it, which the
    /// service handles after the seal (releasing the creator's reference,
    /// or aborting the object if the seal failed).
    pub(crate) fn seal_within(mut self, bound: Duration) -> Result<ObjectBuffer, StoreError> {
        self.client
            .done_within(Request::Seal { id: self.id }, bound)?;
        let span = self.span.take().expect("a live builder has its span");
        Ok(ObjectBuffer {
            client: Arc::clone(&self.client.inner),
            id: self.id,
            metadata: std::mem::take(&mut self.metadata),
            span,
            hold: Hold::Service,
        })
    }

    /// Aborts the object: it is freed and its id may be created again.
    ///
    /// Errors: `ObjectAlreadySealed` (sealed by id meanwhile), connection
    /// errors.
    pub fn abort(self) -> Result<(), StoreError> {
        let bound = self.client.inner.opts.reply_timeout;
        self.abort_within(bound)
    }

    /// [`ObjectBuilder::abort`], waiting at most `bound` for the service's
    /// reply. The request is sent either way: a service that answers late
    /// still aborts the object (the connection is unusable afterwards,
    /// [`StoreClient::is_broken`]).
    pub(crate) fn abort_within(mut self, bound: Duration) -> Result<(), StoreError> {
        self.span = None;
        self.client
            .done_within(Request::Abort { id: self.id }, bound)
    }
}

impl Deref for ObjectBuilder {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.span {
            // SAFETY: the span lies inside a live mapping (checked when it
            // was made, kept alive by its backing); until sealed, only this
            // builder writes the object (the store hands it to nobody else).
            Some(s) => unsafe { std::slice::from_raw_parts(s.ptr, s.len) },
            None => &[],
        }
    }
}

impl DerefMut for ObjectBuilder {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &self.span {
            // SAFETY: as in `deref`; `&mut self` makes this the only view
            // this process has of the unsealed object.
            Some(s) => unsafe { std::slice::from_raw_parts_mut(s.ptr, s.len) },
            None => &mut [],
        }
    }
}

impl Drop for ObjectBuilder {
    fn drop(&mut self) {
        if self.span.take().is_some() {
            // Abort if still unsealed, else release the creator's reference.
            self.client.inner.send_quiet(Request::Drop { id: self.id });
        }
    }
}

/// A sealed object's data, lent zero-copy from the store's shared memory.
/// Derefs to `[u8]`; holds a reference that keeps the object from being
/// evicted or freed, released on drop.
///
/// The store never changes a sealed object's bytes; a hostile process of
/// the same user with the arena mapped could, which changes what this
/// buffer reads but never makes it read outside the object.
pub struct ObjectBuffer {
    client: Arc<Inner>,
    id: ObjectId,
    metadata: Vec<u8>,
    span: Span,
    hold: Hold,
}

/// Where an [`ObjectBuffer`]'s reference is held.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// In the service's table (released by a `Release` message).
    Service,
    /// In this client's reference slot for this index position.
    Index(u32),
}

impl std::fmt::Debug for ObjectBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBuffer")
            .field("id", &self.id)
            .field("len", &self.span.len)
            .finish()
    }
}

impl ObjectBuffer {
    /// The object's id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The object's metadata (a private copy).
    pub fn metadata(&self) -> &[u8] {
        &self.metadata
    }
}

impl Deref for ObjectBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the span lies inside a live mapping (bounds checked when it
        // was made; the backing keeps it mapped); sealed bytes are not
        // written by the store or any well-behaved client.
        unsafe { std::slice::from_raw_parts(self.span.ptr, self.span.len) }
    }
}

impl AsRef<[u8]> for ObjectBuffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for ObjectBuffer {
    fn drop(&mut self) {
        match self.hold {
            Hold::Service => self.client.send_quiet(Request::Release { id: self.id }),
            Hold::Index(pos) => {
                let tell = self.client.index.as_ref().is_some_and(|ix| ix.release(pos));
                if tell {
                    // A delete may be waiting for this reference.
                    self.client.send_quiet(Request::Reap { pos: Some(pos) });
                }
            }
        }
    }
}

/// Seal and delete notifications from a store ([`StoreClient::subscribe`]).
pub struct Subscription {
    conn: Conn,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish()
    }
}

impl Subscription {
    /// The next notification, waiting at most `timeout`; `Ok(None)` when
    /// none came. A subscription that read too slowly gets
    /// [`Notification::Missed`], a re-announcement of every object and
    /// [`Notification::Resynced`] (see there) instead of being dropped.
    /// Errors: connection errors (the service died or stopped),
    /// `BadReply`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Notification>, StoreError> {
        match self.conn.recv(timeout) {
            Ok(Reply::Sealed {
                id,
                data_size,
                metadata,
            }) => Ok(Some(Notification::Sealed {
                id,
                data_size,
                metadata,
            })),
            Ok(Reply::Deleted { id }) => Ok(Some(Notification::Deleted { id })),
            Ok(Reply::Missed { missed }) => Ok(Some(Notification::Missed { missed })),
            Ok(Reply::Resynced) => Ok(Some(Notification::Resynced)),
            Ok(_) => Err(StoreError::BadReply("expected a notification")),
            Err(StoreError::TimedOut(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<StoreClient>();
    is::<ObjectBuffer>();
    fn send<T: Send>() {}
    send::<ObjectBuilder>();
}
