//! The store service: one thread that owns the arena and the
//! [`ObjectTable`], accepts clients on a shmwire [`Listener`] registered in
//! the session's directory under the store's name, and answers their
//! requests from one [`Mux`] event loop. Embed it in any process
//! ([`StoreService::start`]); a node process runs one per session.
//!
//! The loop never waits for one client: replies are sent with a short send
//! timeout (a client that does not drain its ring is disconnected), the
//! descriptors of fallback files without waiting at all (a client whose
//! socket is full is disconnected), blocking
//! `get`s are parked with a deadline and answered when their objects are
//! sealed or the deadline passes, and a client whose connection fails —
//! death, close, a message that does not validate — is disconnected, which
//! aborts its unsealed objects and releases its references.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::arena::{create_arena, FallbackFiles, FileFallback, Span};
use super::client::PUT_INLINE_MAX;
use super::error::StoreError;
use super::protocol::{
    object_entry_bound, Reply, Request, WireError, WireIndex, WireLocation, WireObject,
    MAX_IDS_PER_REQUEST, OBJECTS_REPLY_BASE, STORE_PROTOCOL_VERSION,
};
use super::shared::{IndexLiveness, ServiceIndex, SlotOutbox, DEFAULT_INDEX_ENTRIES};
use super::table::{
    ClientConnection, ClientId, Eviction, Location, Notification, ObjectTable, SealedCursor,
    StoreSnapshot, MAX_METADATA_LEN, OBJECTS_PER_STEP, OBJECT_ALIGN, PULL_DEADLINE_GRACE,
    SUBSCRIBER_LAG_BYTES,
};
use super::Health;
use crate::ids::{ObjectId, WorkerId};
use crate::shm::{AnonSegment, Session};
use crate::spec::{self, Encoder};
use crate::transport::{
    Admission, AnyConnection, CallerAdmission, Connection, ListenOptions, Listener,
    MessageConnection, Mux, MuxConnection, MuxEvent, PeerKey, ReadProgress, Restored, SessionToken,
    ShmOptions, TransportConfig, WorkerLookup, LISTENER_CHECK_INTERVAL,
};
use crate::wake::WaitStrategy;

/// The name a store registers under by default in the session's directory.
pub const DEFAULT_STORE_NAME: &str = "shmwire-store";

/// The index size [`StoreConfig::new`] picks for an arena of `capacity`
/// bytes: one entry per 4 KiB of arena, a power of two between 64 and
/// [`DEFAULT_INDEX_ENTRIES`] (128 bytes each in the index, 8 bytes per
/// client in its slots). More objects than entries are still served, by
/// the service.
pub fn default_index_entries(capacity: u64) -> u32 {
    let want = (capacity / 4096).clamp(64, u64::from(DEFAULT_INDEX_ENTRIES));
    u32::try_from(want.next_power_of_two())
        .unwrap_or(DEFAULT_INDEX_ENTRIES)
        .min(DEFAULT_INDEX_ENTRIES)
}

/// How a [`StoreService`] is set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Arena capacity in bytes (rounded down to a multiple of
    /// [`OBJECT_ALIGN`] = 64; at least 64, at most [`MAX_ARENA_CAPACITY`](crate::store::MAX_ARENA_CAPACITY) =
    /// 256 GiB − 64 bytes, else `StoreError::InvalidConfig` at start). The
    /// pages are reserved at start.
    pub capacity: u64,
    /// Bytes of the service's heap its objects may take: their metadata
    /// plus `ENTRY_OVERHEAD` (768) each (`None`: the default, the arena's
    /// capacity and at least 64 MiB; at least 66,432 bytes, else
    /// `StoreError::InvalidConfig` at start). A create beyond it evicts,
    /// then fails with `StoreError::MetadataFull`. See
    /// [`ObjectTable::with_metadata_capacity`].
    pub metadata_capacity: Option<u64>,
    /// Bytes that objects being pulled from other nodes may take at once
    /// while unsealed (`None`: the default, half the arena; at least 1,
    /// else `StoreError::InvalidConfig` at start). A pull beyond it waits
    /// in turn for others to end (`StoreError::PullsFull` at its
    /// deadline), and a pull behind half its pace gives its room up to a
    /// waiting one (`StoreError::PullPreempted`); one pull is let in
    /// whatever its size when no other is in progress, as Ray's
    /// `PullManager` does. See [`ObjectTable::create_for_pull`].
    pub pull_capacity: Option<u64>,
    /// Where objects go, as unnamed files (`O_TMPFILE`; their descriptors
    /// reach clients over their connection), when the arena is full of
    /// objects that cannot be evicted (`None`: such a create fails with
    /// `StoreFull`). Setting it raises the process's soft descriptor limit
    /// to its hard limit at start.
    pub fallback_dir: Option<PathBuf>,
    /// The name clients connect to (registered in the session directory).
    pub name: String,
    /// Longest a client may read none of its replies queued behind its
    /// full ring before it is disconnected (told why; a queue that shrank
    /// is progress). The service never waits for a client: what does not
    /// fit its ring is queued on its connection, at most
    /// `send_queue_limit` (4 MiB) bytes of it, beyond which the client is
    /// disconnected at once. A subscriber is neither: with more than
    /// [`SUBSCRIBER_LAG_BYTES`] of notifications unread it falls behind
    /// and is told so later ([`Notification::Missed`]).
    pub send_timeout: Duration,
    /// Clients (connections) served at once; a newcomer beyond them is
    /// refused, told why, until one leaves (default
    /// [`DEFAULT_MAX_CLIENTS`]). Each costs descriptors, its rings and its
    /// reference slots.
    pub max_clients: usize,
    /// Longest the event loop sleeps before it checks for shutdown and
    /// expired `get`s.
    pub tick: Duration,
    /// Entries of the shared index that clients read `get`s and
    /// `contains` from without asking the service (a power of two; 0: no
    /// index, every call is a round trip). See `docs/store.md`.
    pub index_entries: u32,
    /// After handling a request, the loop busy-polls its connections this
    /// long before it sleeps, so back-to-back requests of a busy client
    /// cost no wake-up (0: always sleep).
    pub spin: Duration,
}

impl StoreConfig {
    /// An arena of `capacity` bytes, no fallback, [`DEFAULT_STORE_NAME`],
    /// 200 ms send timeout, 20 ms tick.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            metadata_capacity: None,
            pull_capacity: None,
            fallback_dir: None,
            name: DEFAULT_STORE_NAME.to_owned(),
            send_timeout: Duration::from_millis(200),
            max_clients: DEFAULT_MAX_CLIENTS,
            tick: Duration::from_millis(20),
            index_entries: default_index_entries(capacity),
            spin: Duration::from_micros(100),
        }
    }

    /// Sets the number of shared-index entries (a power of two; 0: no
    /// index).
    pub fn index_entries(mut self, entries: u32) -> Self {
        self.index_entries = entries;
        self
    }

    /// Sets the pull capacity in bytes (see [`StoreConfig::pull_capacity`]).
    pub fn pull_capacity(mut self, bytes: u64) -> Self {
        self.pull_capacity = Some(bytes);
        self
    }

    /// Sets the metadata capacity in bytes (see
    /// [`StoreConfig::metadata_capacity`]).
    pub fn metadata_capacity(mut self, bytes: u64) -> Self {
        self.metadata_capacity = Some(bytes);
        self
    }

    /// Sets the fallback directory.
    pub fn fallback_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.fallback_dir = Some(dir.into());
        self
    }

    /// Sets the name clients connect to.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// A running store service (a thread of this process). Dropping it stops
/// the service (as [`StoreService::shutdown`]).
#[derive(Debug)]
pub struct StoreService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), StoreError>>>,
    name: String,
    arena_segment: String,
    snapshot: Arc<Mutex<StoreSnapshot>>,
    index_segment: Option<String>,
    health: Health,
    restored: Arc<Mutex<Restored>>,
}

/// Largest objects kept in a [`StoreService::snapshot`].
pub const SNAPSHOT_OBJECTS: usize = 32;

/// How often the service refreshes its [`StoreService::snapshot`].
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);

impl StoreService {
    /// Starts a store in `session`: removes what dead processes left in the
    /// session (a previous store's arena included: a restarted store starts
    /// clean), creates and reserves the arena, listens under
    /// `config.name`, and runs the event loop on a new thread.
    ///
    /// Errors: `InvalidConfig`, `ArenaReserve` (the file system cannot hold
    /// the arena), `Shm`, `Transport` (the name is taken by a live store).
    ///
    /// `token` is the session's token and `directory` the registry the
    /// service publishes itself in (under `config.name`);
    /// `StoreService::start` (in the node layer) supplies the session's own.
    pub fn start_with(
        session: &Session,
        token: SessionToken,
        directory: &dyn WorkerLookup,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        let capacity = config.capacity / OBJECT_ALIGN * OBJECT_ALIGN;
        let mut table = ObjectTable::new(capacity)?;
        if let Some(bytes) = config.metadata_capacity {
            table = table.with_metadata_capacity(bytes)?;
        }
        if let Some(bytes) = config.pull_capacity {
            table = table.with_pull_capacity(bytes)?;
        }
        let fallback_files = match &config.fallback_dir {
            Some(d) => {
                // Also raises the soft descriptor limit to the hard one:
                // each fallback object keeps a descriptor open.
                let fb = FileFallback::new(d)?;
                let files = fb.files();
                table = table.with_fallback(Box::new(fb));
                Some(files)
            }
            None => None,
        };
        if let Err(e) = session.cleanup_stale() {
            tracing::warn!(error = %e, "store: cleaning the session failed");
        }
        let worker_id = WorkerId::try_from_random()
            .map_err(|_| StoreError::InvalidConfig("no random source for the store's id"))?;
        let tag = format!("{}-{}", std::process::id(), &worker_id.hex()[..8]);
        let arena_segment = format!("store-{tag}");
        let arena = create_arena(&arena_segment, capacity)?;
        let mut liveness = None;
        let index_info = if config.index_entries > 0 {
            let index = ServiceIndex::create(&tag, config.index_entries)?;
            let info = IndexHandles {
                label: index.segment_name(),
                entries: index.entries(),
                key: index.key(),
                segment: index.segment(),
                outbox: index.outbox(),
            };
            let mut l = index.liveness();
            l.beat();
            liveness = Some(l);
            table = table.with_shared_index(Box::new(index));
            Some(info)
        } else {
            None
        };
        let mut tcfg = TransportConfig::new(worker_id, token);
        tcfg.send_timeout = config.send_timeout;
        // Clients served now, against `max_clients`: raised by the
        // admission (on this service's thread, in `accept_pending`), set to
        // the number of clients whenever it changes.
        let served = Arc::new(AtomicUsize::new(0));
        let (admitted, max_clients) = (Arc::clone(&served), config.max_clients);
        tcfg.admission = Some(CallerAdmission(Arc::new(move |_, _| {
            // Relaxed: a count on one thread, nothing published through it.
            let now = admitted.load(Ordering::Relaxed);
            if now >= max_clients {
                return Admission::Refused(format!(
                    "the store serves {now} clients, its max_clients: no room for another \
                     until one leaves"
                ));
            }
            admitted.fetch_add(1, Ordering::Relaxed);
            Admission::Admit
        })));
        let listener = Listener::bind(
            session,
            tcfg,
            ListenOptions {
                shm: Some(ShmOptions::with_wait(WaitStrategy::eventfd())),
                tcp: None,
                name: Some(config.name.clone()),
                stats: None,
            },
            directory,
        )?;
        let mut mux = Mux::new()?;
        // A subscriber's backlog goes on when its queued notes are handed
        // over (`feed_backlogs`).
        mux.set_report_drained(true);
        mux.set_listener(listener)?;
        let index_name = index_info.as_ref().map(|i| i.label.clone());
        let welcome = Reply::Welcome {
            arena_segment: arena_segment.clone(),
            capacity,
            index: None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let snapshot = Arc::new(Mutex::new(table.snapshot(SNAPSHOT_OBJECTS)));
        let health = Health::default();
        let restored = Arc::new(Mutex::new(Restored::default()));
        let mut state = Service {
            table,
            mux,
            clients: HashMap::new(),
            next_client: 1,
            parked: Vec::new(),
            evicting: std::collections::VecDeque::new(),
            stepped: false,
            encoder: Encoder::new(),
            welcome,
            index: index_info,
            liveness,
            arena,
            fallback_files,
            tick: config.tick,
            snapshot: Arc::clone(&snapshot),
            snapshot_at: None,
            spin: config.spin,
            listener_check_at: Instant::now() + LISTENER_CHECK_INTERVAL,
            listener_problem: None,
            refusing: None,
            health: health.clone(),
            restored: Arc::clone(&restored),
            served,
            send_timeout: config.send_timeout,
            subscribers: 0,
            unread_check_at: Instant::now(),
            live_subs: Vec::new(),
            note_seq: 0,
            feed_due: Vec::new(),
        };
        // No subscriber yet: seals and deletions are not kept.
        state.table.set_notifying(false);
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("store {}", config.name))
            .spawn(move || state.run(&stop2))
            .map_err(|e| StoreError::io("spawn the store thread", e))?;
        Ok(Self {
            stop,
            thread: Some(thread),
            name: config.name,
            arena_segment,
            snapshot,
            index_segment: index_name,
            health,
            restored,
        })
    }

    /// What the service says of itself while it cannot be reached: its
    /// listener's socket file or directory entry was removed or replaced
    /// and could not be put back (checked every
    /// [`LISTENER_CHECK_INTERVAL`]; clients connected already are served).
    /// The node's `/health` asks it.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// What the service put back of its session files (process lock,
    /// socket, entry) since the last call, after a stray `rm` or rename
    /// took them; the node prints it.
    pub fn take_restored(&self) -> Restored {
        std::mem::take(&mut *self.restored.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The store's counts, its [`SNAPSHOT_OBJECTS`] largest objects and
    /// its client connections (with their rings' fill), as the service
    /// thread last published them (at start, then every 100 ms
    /// while it runs). For inspection: never waits for the service.
    pub fn snapshot(&self) -> StoreSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The name clients connect to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arena memfd's label (`/proc/<pid>/fd` listings, logs): the
    /// arena has no name in the session directory.
    pub fn arena_segment(&self) -> &str {
        &self.arena_segment
    }

    /// The shared index memfd's label (`None` when the service runs
    /// without one).
    pub fn index_segment(&self) -> Option<&str> {
        self.index_segment.as_deref()
    }

    /// Stops the service (within one tick) and waits for its thread. Its
    /// clients' later calls fail with a transport error; the buffers they
    /// hold stay readable (their mappings live on).
    pub fn shutdown(mut self) -> Result<(), StoreError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), StoreError> {
        // Relaxed: a flag polled each tick; nothing is published through it.
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or(Err(StoreError::InvalidConfig("the store thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for StoreService {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            tracing::warn!(error = %e, "store service stopped with an error");
        }
    }
}

struct Client {
    id: ClientId,
    greeted: bool,
    subscriber: bool,
    /// A subscriber's objects sealed before it subscribed, not yet
    /// announced ([`Service::feed_backlogs`]).
    backlog: Option<SealedCursor>,
    /// Whether it reads its replies queued behind its full ring, while
    /// some are ([`Service::drop_unread`]).
    behind_since: Option<ReadProgress>,
    /// A subscriber that fell behind: `Service::note_seq` before the first
    /// notification not sent to it ([`Notification::Missed`]); told once
    /// its queue is read.
    missed: Option<u64>,
    /// A subscriber told `Missed` whose re-announcement (its `backlog`)
    /// ends with `Resynced`.
    resyncing: bool,
}

/// Requests one client's turn handles at most: a client with more waiting
/// (requests that need no reply, such as `Release`, sent without pause)
/// gets its next turn after the other clients' (the mux reports it again).
const DRAIN_BUDGET: usize = 256;

/// Time one client's turn takes at most: past it, after the request in
/// hand, the client's next turn comes after the other clients'. The count
/// alone ([`DRAIN_BUDGET`]) bounded a turn of cheap requests but not of
/// costly ones: 256 `Refresh` requests of 100 ids each held the loop for
/// ≈ 30 ms on a slow host, so another client's `put`, `get` and `delete`
/// took a median of 45–112 ms (`store_xproc`'s flood test, 2026-12-07).
/// The clock is read once per request (≈ 25 ns, against the microseconds
/// a request costs the service) and ends a turn between requests: what one
/// request costs is bounded by its length, the objects it names at most
/// [`MAX_IDS_PER_REQUEST`] (a frame's worth of ids, ≈ 37,000, held the loop
/// 5–10 ms in one request, a fresh-eyes attack on 2026-12-07).
const DRAIN_TIME: Duration = Duration::from_micros(500);

/// Notifications of objects sealed before a subscriber came, sent to it a
/// turn at most — fewer once their metadata reach [`BACKLOG_BYTES_PER_TURN`]
/// or one does not fit its ring (then it waits in the queue, and the rest
/// for the next turn): a store of many objects neither fills the
/// subscriber's queue at once nor holds the loop long.
const BACKLOG_PER_TURN: usize = 1024;

/// Metadata bytes of [`BACKLOG_PER_TURN`] notifications a turn at most.
const BACKLOG_BYTES_PER_TURN: usize = 1 << 20;

/// Default [`StoreConfig::max_clients`].
pub const DEFAULT_MAX_CLIENTS: usize = 1024;

/// A `get` waiting for objects to be sealed.
struct Parked {
    key: PeerKey,
    ids: Vec<ObjectId>,
    deadline: Instant,
    /// How many of `ids`, from the first, were seen sealed: each check
    /// goes on from there, so a parked `get` costs its length once in all,
    /// not at every turn of the loop.
    seen: usize,
}

/// An eviction in steps for a client ([`Service::work_in_steps`]).
struct Stepping {
    key: PeerKey,
    eviction: Eviction,
    /// What to answer once it is done.
    then: AfterEviction,
}

/// What a [`Stepping`] answers once its eviction is done.
enum AfterEviction {
    /// An `Evict`: `Freed` with the bytes freed.
    Freed,
    /// The `Create` it made room for: its answer.
    Create {
        id: ObjectId,
        data_size: u64,
        metadata: Vec<u8>,
        pull_ms: Option<u64>,
    },
    /// The `Put` it made room for: its answer.
    Put {
        id: ObjectId,
        data: Vec<u8>,
        metadata: Vec<u8>,
    },
    /// The `Get` it made room for (its holds): its answer.
    Get { ids: Vec<ObjectId> },
    /// The `Pin` it made room for: its answer.
    Pin { ids: Vec<ObjectId> },
}

/// How many objects `req` names, for the requests that name a list
/// ([`MAX_IDS_PER_REQUEST`] bounds it).
fn named_objects(req: &Request) -> Option<usize> {
    match req {
        Request::Get { ids, .. }
        | Request::Delete { ids }
        | Request::Refresh { ids }
        | Request::Pin { ids }
        | Request::Unpin { ids } => Some(ids.len()),
        _ => None,
    }
}

/// Whether every object of `p` was seen sealed, each check going on from
/// where the last one stopped (one sealed, then deleted before the answer,
/// is answered `None`, as a `get` answers what is sealed when it answers).
fn all_sealed(table: &ObjectTable, p: &mut Parked) -> bool {
    p.seen += p.ids[p.seen..]
        .iter()
        .take_while(|id| table.contains(id))
        .count();
    p.seen == p.ids.len()
}

/// `get`s one client may have waiting at once. A [`StoreClient`](super::StoreClient)
/// waits for each reply before its next request, so it has one at most;
/// a client sending more (requests it does not wait for, each holding up
/// to a frame of ids in the service's memory and its checks in the loop)
/// is dropped, told why.
const MAX_PARKED_PER_CLIENT: usize = 4;

struct Service {
    table: ObjectTable,
    mux: Mux<AnyConnection>,
    clients: HashMap<PeerKey, Client>,
    next_client: ClientId,
    parked: Vec<Parked>,
    /// `Evict`s, and evictions for `Create`s and `Put`s, in progress, in
    /// the order they came: one step a round, of the first, which then
    /// goes last ([`ObjectTable::evict_step`]); the client's further
    /// requests wait for its reply.
    evicting: std::collections::VecDeque<Stepping>,
    /// Whether this round of the loop took its eviction step already (a
    /// request's first step is taken at once only if not).
    stepped: bool,
    encoder: Encoder,
    welcome: Reply,
    /// The shared index, if there is one.
    index: Option<IndexHandles>,
    /// The index's heartbeat and closed flag.
    liveness: Option<IndexLiveness>,
    /// The arena (kept alive, written by `Put`, handed to clients).
    arena: Arc<AnonSegment>,
    /// The fallback objects' open files (their descriptors go to clients
    /// with every reply naming them).
    fallback_files: Option<FallbackFiles>,
    tick: Duration,
    /// Where [`StoreService::snapshot`] reads, and when it was last written.
    snapshot: Arc<Mutex<StoreSnapshot>>,
    snapshot_at: Option<Instant>,
    spin: Duration,
    /// When to check the listener's socket file and entry next, and what
    /// `/health` hears while they cannot be put back.
    listener_check_at: Instant,
    health: Health,
    /// Why the listener's files could not be put back, at the last check.
    listener_problem: Option<String>,
    /// Clients refused because this side could not set their connection
    /// up (out of descriptors or memory: [`setup_failure`]): since when,
    /// the latest cause, how many since the last warning.
    refusing: Option<Refusing>,
    /// What was put back since the owner last asked
    /// ([`StoreService::take_restored`]).
    restored: Arc<Mutex<Restored>>,
    /// Clients served, as the admission counts them against
    /// `max_clients` (set to `clients.len()` whenever it changes).
    served: Arc<AtomicUsize>,
    /// [`StoreConfig::send_timeout`].
    send_timeout: Duration,
    /// Subscribers among the clients (notifications are kept while any).
    subscribers: usize,
    /// When [`Service::drop_unread`] looks next.
    unread_check_at: Instant,
    /// The subscribers live notifications go to: every subscriber but
    /// those behind (`Client::missed`), so a note costs the subscribers
    /// that hear it, not every client.
    live_subs: Vec<PeerKey>,
    /// Live notifications fanned out so far (a subscriber behind is told
    /// how many it missed as the difference).
    note_seq: u64,
    /// Subscribers whose backlog or `Missed` may go on
    /// ([`Service::feed_backlogs`]): reported by the mux (their queued
    /// notes handed over), or stopped at a turn's bounds. Only these are
    /// looked at, not every client every round. Not empty as a round
    /// begins: a backlog stopped at a turn's bound with nothing queued, so
    /// the loop comes round again without sleeping (one stopped by a full
    /// ring goes on when the mux reports its queue handed over).
    feed_due: Vec<PeerKey>,
}

/// Clients the service refused for want of its own resources (see
/// `Service::refused`).
struct Refusing {
    /// The latest such refusal.
    last: Instant,
    /// When the last warning was logged.
    warned: Instant,
    /// Refusals since that warning.
    unreported: u64,
    /// The latest cause.
    why: String,
    /// The latest cause is the listener's failing `accept` (nobody was
    /// refused: clients wait in its queue). The listener returns it once
    /// while it lasts, so it is renewed each listener check while
    /// [`Listener::accept_failing`](crate::transport::Listener) says so (the
    /// attack on `59a1fb2`: health went back to OK 5 s after the report
    /// while every new client still timed out in the queue).
    accepting: bool,
}

/// How long after its last refusal for want of resources the service
/// still reports them in its health.
const REFUSING_FOR: Duration = Duration::from_secs(5);

/// Whether a refused client's error is this side's failure to set the
/// connection up (a ring segment or eventfd it could not make: out of
/// descriptors or memory) rather than the client's doing (a bad hello, a
/// hang-up, a wrong token).
fn setup_failure(e: &crate::transport::ConnectError) -> bool {
    use crate::transport::ConnectError;
    match e {
        ConnectError::Segment(_) | ConnectError::Ring(_) => true,
        ConnectError::Io { source, .. } => {
            crate::sys::fs::is_out_of_descriptors(source)
                || crate::sys::fs::is_out_of_memory(source)
        }
        _ => false,
    }
}

/// The most objects in fallback files one `get` answer names (their
/// descriptors travel with it, [`MAX_FDS`](crate::sys::fdpass) a message,
/// and the client holds them all until it has mapped them, so a client
/// needs this many descriptors to spare); the client asks again for the
/// rest. 64 at first: a client under `ulimit -n 64` failed a `get` of 68
/// (the attack on `f5e384c`).
const MAX_FALLBACK_PER_ANSWER: usize = 16;

/// What the service keeps of its shared index to welcome clients.
struct IndexHandles {
    label: String,
    entries: u32,
    key: u64,
    /// The index memfd (handed to each client).
    segment: Arc<AnonSegment>,
    /// Each new client's slot memfd, left by `add_client`.
    outbox: SlotOutbox,
}

/// What to do after handling one request.
enum Then {
    Reply(Reply),
    Nothing,
    Park(Parked),
    /// Drop the client, telling it why.
    Drop(String),
}

impl Service {
    fn run(&mut self, stop: &AtomicBool) -> Result<(), StoreError> {
        let r = self.serve(stop);
        // Clients stop reading the index: their later calls go to the
        // service's (closing) connection and fail.
        if let Some(l) = &self.liveness {
            l.close();
        }
        r
    }

    fn serve(&mut self, stop: &AtomicBool) -> Result<(), StoreError> {
        let mut ready = Vec::new();
        let mut busy_until = Instant::now();
        // Relaxed: see StoreService::stop_and_join.
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let mut wait = self
                .parked
                .iter()
                .map(|p| p.deadline.saturating_duration_since(now))
                .min()
                .map_or(self.tick, |d| d.min(self.tick));
            // Output queued for a client goes out as the client makes room
            // (its reading wakes the mux, which hands it over and reports
            // the client once all of it is: `MuxEvent::Ready`); a backlog
            // that stopped at a turn's bound goes on at once (the attack on
            // `02f36f3`: a late subscriber got a ring's worth of its backlog
            // a tick, 20 ms).
            if !self.feed_due.is_empty() {
                wait = Duration::ZERO;
            }
            // Work in steps goes on at once.
            if !self.evicting.is_empty() || self.table.leaving() > 0 {
                wait = Duration::ZERO;
            }
            self.stepped = false;
            // Busy: poll without sleeping until the spin window closes.
            let spinning = now < busy_until;
            self.mux.set_spin(spinning);
            if spinning {
                wait = wait.min(busy_until - now);
            }
            self.mux.wait(wait, &mut ready)?;
            if let Some(l) = &mut self.liveness {
                l.beat();
            }
            if !ready.is_empty() && !self.spin.is_zero() {
                busy_until = crate::deadline_after(Instant::now(), self.spin);
            }
            for ev in ready.drain(..) {
                match ev {
                    MuxEvent::Incoming => {
                        for r in self.mux.accept_pending()? {
                            match r {
                                Ok(key) => {
                                    // A client set up again: health says
                                    // so now, not at the next listener
                                    // check (up to a second stale; CI on
                                    // 866afbe read 503 right after a
                                    // pull's new client got in).
                                    if self.refusing.take().is_some() {
                                        self.publish_health(Instant::now());
                                    }
                                    let id = self.next_client;
                                    self.next_client += 1;
                                    self.clients.insert(
                                        key,
                                        Client {
                                            id,
                                            greeted: false,
                                            subscriber: false,
                                            backlog: None,
                                            missed: None,
                                            resyncing: false,
                                            behind_since: None,
                                        },
                                    );
                                }
                                Err(e) => self.refused(&e),
                            }
                        }
                        // A hello admitted whose connection then failed
                        // counts no more. Relaxed: see the admission.
                        self.served.store(self.clients.len(), Ordering::Relaxed);
                    }
                    MuxEvent::Ready(key) => {
                        if self.clients.get(&key).is_some_and(|c| c.subscriber) {
                            // Its queued notes may be handed over: a
                            // backlog or a `Missed` may go on.
                            self.feed_due.push(key);
                        }
                        self.drain(key);
                        // What this turn sealed or deleted goes out now: the
                        // notifications of one turn at most are held.
                        self.notify();
                    }
                }
            }
            // One clock read for the parked gets and the listener check.
            let after = Instant::now();
            self.serve_parked(after);
            // Deleted objects whose last index holders let go (normally
            // announced by a `Reap` request; this is the backstop, at most
            // every `REAP_EVERY`).
            self.table.reap_due(after);
            self.work_in_steps();
            self.notify();
            self.feed_backlogs();
            self.drop_unread(after);
            self.publish_snapshot();
            self.restore_listener(after);
        }
        Ok(())
    }

    /// Every [`LISTENER_CHECK_INTERVAL`]: puts back the listener's socket
    /// file and directory entry if a stray `rm` or rename took them (new
    /// clients could not connect, or found the store dead), logging it; a
    /// failure is [`StoreService::health`]'s problem until a later check
    /// succeeds.
    fn restore_listener(&mut self, now: Instant) {
        if now < self.listener_check_at {
            return;
        }
        self.listener_check_at = now + LISTENER_CHECK_INTERVAL;
        let (done, errors) = self.mux.restore_listener();
        if done.any() {
            tracing::warn!(
                what = %done.describe(),
                "store: files removed or replaced under it: put back"
            );
            let mut r = self.restored.lock().unwrap_or_else(|p| p.into_inner());
            r.lock |= done.lock;
            r.socket |= done.socket;
            r.entry |= done.entry;
        }
        if errors.is_empty() {
            self.listener_problem = None;
        } else {
            let why = errors
                .iter()
                .map(|e| crate::error_chain(e))
                .collect::<Vec<_>>()
                .join("; ");
            if self.listener_problem.is_none() {
                tracing::warn!(error = %why, "store: a file it keeps in its session is missing \
                    and could not be put back; trying again");
            }
            self.listener_problem = Some(format!(
                "its listener's socket or directory entry is missing and could not be put \
                 back (new clients cannot connect; trying again every second): {why}"
            ));
        }
        if let Some(r) = self.refusing.as_mut().filter(|r| r.accepting) {
            if self.mux.listener().is_some_and(|l| l.accept_failing()) {
                r.last = now;
            }
        }
        self.report_refusals(now);
        self.publish_health(now);
    }

    /// A client refused at its hello. One this side could not set up (out
    /// of descriptors or memory) is logged as a warning — at most one a
    /// second, counting the rest — and is [`StoreService::health`]'s
    /// problem until a client is accepted again or none was refused for
    /// [`REFUSING_FOR`]; before (the attack on `7c472c6`), such refusals
    /// were logged at debug level only and `/health` said 200 while every
    /// new client was refused. Others (a bad hello: the client's doing)
    /// stay at debug level.
    #[cold]
    fn refused(&mut self, e: &crate::transport::ConnectError) {
        if !setup_failure(e) {
            tracing::debug!(error = %e, "store: refused a client");
            return;
        }
        let now = Instant::now();
        let why = crate::error_chain(e);
        let accepting = e.is_accept_failure();
        match &mut self.refusing {
            Some(r) => {
                r.last = now;
                r.unreported += u64::from(!accepting);
                r.why = why;
                r.accepting = accepting;
            }
            None => {
                if accepting {
                    // Nobody was refused: the client stays queued, taken
                    // as soon as a descriptor is free (`Listener`).
                    tracing::warn!(error = %why, "store: could not accept a waiting client \
                        (out of descriptors?): it stays queued, tried again every 20 ms");
                } else {
                    tracing::warn!(error = %why, "store: could not set up a client's connection: \
                        refused it (out of descriptors or memory?)");
                }
                self.refusing = Some(Refusing {
                    last: now,
                    warned: now,
                    unreported: 0,
                    why,
                    accepting,
                });
            }
        }
        self.report_refusals(now);
        self.publish_health(now);
    }

    /// Logs the refusals counted since the last warning, at most once a
    /// second; forgets them [`REFUSING_FOR`] after the last.
    fn report_refusals(&mut self, now: Instant) {
        let Some(r) = &mut self.refusing else {
            return;
        };
        if now.saturating_duration_since(r.last) >= REFUSING_FOR {
            self.refusing = None;
            return;
        }
        if r.unreported > 0 && now.saturating_duration_since(r.warned) >= Duration::from_secs(1) {
            tracing::warn!(
                refused = r.unreported,
                latest = %r.why,
                "store: more clients refused: their connections could not be set up"
            );
            r.unreported = 0;
            r.warned = now;
        }
    }

    /// What [`StoreService::health`] says: the listener's files, the
    /// clients refused for want of resources.
    fn publish_health(&self, now: Instant) {
        let refusing = self
            .refusing
            .as_ref()
            .filter(|r| now.saturating_duration_since(r.last) < REFUSING_FOR)
            .map(|r| {
                if r.accepting {
                    format!(
                        "it cannot accept new clients (out of descriptors?): they wait in \
                         its queue until a descriptor is free: {}",
                        r.why
                    )
                } else {
                    format!(
                        "it refuses new clients: their connections cannot be set up (out of \
                         descriptors or memory?): {}",
                        r.why
                    )
                }
            });
        let problem = match (&self.listener_problem, refusing) {
            (Some(l), Some(r)) => Some(format!("{l}; {r}")),
            (Some(l), None) => Some(l.clone()),
            (None, r) => r,
        };
        self.health.set(problem);
    }

    /// Handles the requests waiting on `key`'s connection: all of them, or
    /// [`DRAIN_BUDGET`] of them, or those that fit [`DRAIN_TIME`] (the mux
    /// reports a connection left with requests again, after the others).
    fn drain(&mut self, key: PeerKey) {
        let until = Instant::now() + DRAIN_TIME;
        for n in 0..DRAIN_BUDGET {
            if n > 0 && Instant::now() >= until {
                return;
            }
            // Its request in steps answers first (the mux reports the
            // connection again while requests wait in it) — unless it hung
            // up: nobody waits for the answer, so the steps end now and
            // what they keep is let go of (before, its hang-up was noticed
            // only once they ended: a pin of thousands killed mid-step
            // kept its objects and evicted for them to the end).
            if self.evicting.iter().any(|s| s.key == key) {
                if self.mux.get(key).is_some_and(|c| c.peer_gone()) {
                    self.drop_client(key);
                }
                return;
            }
            let Some(conn) = self.mux.get_mut(key) else {
                return;
            };
            let req = match conn.try_recv_message_with::<Request, _>(spec::deserialize::<Request>) {
                Ok(None) => return,
                Ok(Some(Ok(req))) => req,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "store: undecodable request, dropping the client");
                    self.drop_client_for(key, &format!("a request that does not decode: {e}"));
                    return;
                }
                Err(e) => {
                    if !matches!(e, crate::transport::RecvError::Closed) {
                        tracing::debug!(error = %e, "store: client connection ended");
                    }
                    use crate::transport::RecvError;
                    match &e {
                        // Gone, or gone saying why: nobody to tell.
                        RecvError::Closed
                        | RecvError::PeerDied { .. }
                        | RecvError::CutOff { .. }
                        | RecvError::TimedOut => self.drop_client(key),
                        other => {
                            let why = other.violation().unwrap_or_else(|| {
                                format!(
                                    "a request that does not decode: {}",
                                    crate::error_chain(other)
                                )
                            });
                            self.drop_client_for(key, &why);
                        }
                    }
                    return;
                }
            };
            match self.handle(key, req) {
                Then::Reply(r) => {
                    if !self.send(key, &r) {
                        return;
                    }
                }
                Then::Nothing => {}
                Then::Park(p) => self.parked.push(p),
                Then::Drop(why) => {
                    tracing::debug!(why = %why, "store: dropping a client");
                    self.drop_client_for(key, &why);
                    return;
                }
            }
        }
    }

    fn handle(&mut self, key: PeerKey, req: Request) -> Then {
        let Some(client) = self.clients.get_mut(&key) else {
            return Then::Drop("no such client".into());
        };
        let cid = client.id;
        if !client.greeted {
            return match req {
                Request::Hello {
                    version,
                    subscriber,
                    ..
                } if version == STORE_PROTOCOL_VERSION => {
                    client.greeted = true;
                    if subscriber {
                        // Every notification must fit its frames, whatever
                        // the metadata (64 KiB at most): refused now, with
                        // the sizes, rather than cut off at the first large
                        // one (the attack on `42d03ed`: 64 KiB rings and an
                        // object of 64 KiB metadata cut a subscriber off,
                        // and kept it from subscribing while it existed).
                        let largest = largest_notification();
                        let fits = self.mux.get_mut(key).map_or(0, |c| c.max_send_len());
                        if fits < largest {
                            return Then::Drop(format!(
                                "a subscriber's frames must take the largest notification \
                                 ({largest} bytes, with {MAX_METADATA_LEN} bytes of metadata); \
                                 this connection's take {fits}: give it larger rings"
                            ));
                        }
                    }
                    let Some(client) = self.clients.get_mut(&key) else {
                        return Then::Drop("no such client".into());
                    };
                    client.subscriber = subscriber;
                    if subscriber {
                        // Counted with the flag: `drop_client` counts down.
                        self.subscribers += 1;
                        self.table.set_notifying(true);
                        self.live_subs.push(key);
                    }
                    let mut welcome = self.welcome.clone();
                    let mut slots_fd = None;
                    if let (false, Some(ix), Reply::Welcome { index, .. }) =
                        (subscriber, &self.index, &mut welcome)
                    {
                        // This client's reference slots; without them it
                        // simply has no fast path.
                        let slots = match self.table.shared_index() {
                            Some(s) => s.add_client(cid),
                            None => Err(StoreError::InvalidConfig("no index")),
                        };
                        match slots.map(|l| (l, ServiceIndex::take_slots(&ix.outbox, cid))) {
                            Ok((refs_segment, Some(fd))) => {
                                slots_fd = Some(fd);
                                *index = Some(WireIndex {
                                    segment: ix.label.clone(),
                                    entries: ix.entries,
                                    key: ix.key,
                                    refs_segment,
                                })
                            }
                            Ok((_, None)) => tracing::warn!("store: no reference slot memfd"),
                            Err(e) => tracing::warn!(error = %e, "store: no reference slots"),
                        }
                    }
                    // The segments travel as sealed memfds over the
                    // connection's socket, queued before the welcome.
                    if !subscriber {
                        if let Err(e) = self.hand_over(key, slots_fd.as_ref()) {
                            return Then::Drop(format!(
                                "the store could not hand over its segments: {}",
                                crate::error_chain(&e)
                            ));
                        }
                    }
                    if !self.send(key, &welcome) {
                        return Then::Nothing;
                    }
                    if subscriber {
                        // Announced a few at a time (`feed_backlogs`), as
                        // the subscriber reads them.
                        if let Some(c) = self.clients.get_mut(&key) {
                            c.backlog = Some(SealedCursor::default());
                        }
                        self.feed_backlog(key);
                    }
                    Then::Nothing
                }
                Request::Hello { version, .. } => Then::Drop(format!(
                    "store protocol version {version}; this store speaks \
                     {STORE_PROTOCOL_VERSION}"
                )),
                _ => Then::Drop("the first request must be a Hello".into()),
            };
        }
        if client.subscriber {
            // A subscriber's connection carries notifications only.
            return Then::Drop("a subscriber's connection carries notifications only".into());
        }
        if let Request::Put { data, .. } = &req {
            if data.len() > PUT_INLINE_MAX {
                return Then::Drop(format!(
                    "a put of {} bytes in the request, more than {PUT_INLINE_MAX} (larger objects \
                     are created and written in place)",
                    data.len()
                ));
            }
        }
        if let Some(n) = named_objects(&req).filter(|&n| n > MAX_IDS_PER_REQUEST) {
            return Then::Drop(format!(
                "a request naming {n} objects, more than {MAX_IDS_PER_REQUEST} (longer lists go \
                 in several requests)"
            ));
        }
        let done = |r: Result<(), StoreError>| match r {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Error(WireError::from_error(&e)),
        };
        match req {
            Request::Hello { .. } => Then::Drop("a second Hello".into()),
            Request::Put { id, data, metadata } => {
                let short =
                    self.table
                        .create_short_of_room(&id, data.len() as u64, metadata.len(), None);
                match short {
                    Some(room) => self.step_then(
                        key,
                        Eviction::to_fit(room),
                        AfterEviction::Put { id, data, metadata },
                    ),
                    None => Then::Reply(done(self.put(cid, id, &data, metadata, true))),
                }
            }
            Request::Reap { pos: Some(pos) } => {
                self.table.reap_at(pos);
                Then::Nothing
            }
            Request::Reap { pos: None } => {
                // A whole walk at most every `REAP_EVERY`, however often
                // clients ask (the loop's backstop is the same walk).
                self.table.reap_due(Instant::now());
                Then::Nothing
            }
            Request::Create {
                id,
                data_size,
                metadata,
                pull_ms,
            } => {
                // Short of arena room: the eviction a step now, the rest a
                // step per round (as an `Evict`'s), then the create.
                let short = self.table.create_short_of_room(
                    &id,
                    data_size,
                    metadata.len(),
                    pull_ms.map(|_| Instant::now()),
                );
                match short {
                    Some(room) => self.step_then(
                        key,
                        Eviction::to_fit(room),
                        AfterEviction::Create {
                            id,
                            data_size,
                            metadata,
                            pull_ms,
                        },
                    ),
                    None => Then::Reply(self.create(cid, id, data_size, metadata, pull_ms, true)),
                }
            }
            Request::Seal { id } => Then::Reply(done(self.table.seal(cid, id).map(|_| ()))),
            Request::Abort { id } => Then::Reply(done(self.table.abort(cid, id))),
            Request::Drop { id } => {
                if let Err(StoreError::ObjectAlreadySealed { .. }) = self.table.abort(cid, id) {
                    let _ = self.table.release(cid, id);
                }
                Then::Nothing
            }
            Request::Release { id } => {
                if let Err(e) = self.table.release(cid, id) {
                    tracing::debug!(error = %e, "store: bad release");
                }
                Then::Nothing
            }
            Request::Get { ids, timeout_ms } => {
                let now = Instant::now();
                let deadline = now
                    .checked_add(Duration::from_millis(timeout_ms))
                    .unwrap_or(now + Duration::from_secs(86_400 * 365));
                let mut p = Parked {
                    key,
                    ids,
                    deadline,
                    seen: 0,
                };
                if timeout_ms == 0 || all_sealed(&self.table, &mut p) {
                    self.get_or_step(cid, key, p.ids)
                } else if self.parked.iter().filter(|q| q.key == key).count()
                    >= MAX_PARKED_PER_CLIENT
                {
                    Then::Drop(format!(
                        "more than {MAX_PARKED_PER_CLIENT} gets waiting at once (a client waits \
                         for each reply before its next request)"
                    ))
                } else {
                    Then::Park(p)
                }
            }
            Request::Contains { id } => Then::Reply(Reply::Bool(self.table.contains(&id))),
            Request::PullRoom { id, data_size } => Then::Reply(Reply::Bool(self.table.pull_room(
                cid,
                id,
                data_size,
                Instant::now(),
            ))),
            Request::PullLeave { id } => {
                self.table.pull_leave(cid, id);
                Then::Nothing
            }
            Request::PullWaiting => {
                Then::Reply(Reply::Bool(self.table.pull_waiting(Instant::now())))
            }
            Request::Delete { ids } => {
                let mut first = Ok(());
                for id in ids {
                    if let Err(e) = self.table.delete(id) {
                        if first.is_ok() {
                            first = Err(e);
                        }
                    }
                }
                Then::Reply(done(first))
            }
            Request::Evict { bytes } => {
                // A step now; the rest a step per round, other clients
                // served between (an `Evict` of everything over 100,000
                // tiny objects held the loop 110–147 ms in one go).
                self.step_then(key, Eviction::new(bytes), AfterEviction::Freed)
            }
            Request::Refresh { ids } => {
                self.table.refresh(&ids);
                Then::Reply(Reply::Done)
            }
            Request::Pin { ids } => match self.table.hold_short_of_room(cid, &ids) {
                Some(room) => self.step_then(
                    key,
                    Eviction::to_fit(room).keeping(&ids),
                    AfterEviction::Pin { ids },
                ),
                None => Then::Reply(self.pin(cid, &ids, true)),
            },
            Request::Unpin { ids } => {
                let r = ids.iter().try_for_each(|id| self.table.unpin(cid, *id));
                Then::Reply(done(r))
            }
        }
    }

    /// A `Get`'s answer now, or, when the metadata capacity is short of
    /// room for its holds ([`ObjectTable::hold_short_of_room`]), after an
    /// eviction in steps.
    fn get_or_step(&mut self, cid: ClientId, key: PeerKey, ids: Vec<ObjectId>) -> Then {
        match self.table.hold_short_of_room(cid, &ids) {
            Some(room) => self.step_then(
                key,
                Eviction::to_fit(room).keeping(&ids),
                AfterEviction::Get { ids },
            ),
            None => Then::Reply(self.answer_get(cid, key, &ids, true)),
        }
    }

    /// A `Pin`'s answer: each of `ids` pinned, up to the first error;
    /// without evicting unless `evict` ([`ObjectTable::evicting_if`]).
    fn pin(&mut self, cid: ClientId, ids: &[ObjectId], evict: bool) -> Reply {
        let run = |t: &mut ObjectTable| ids.iter().try_for_each(|id| t.pin(cid, *id));
        match self.table.evicting_if(evict, run) {
            Ok(()) => Reply::Done,
            Err(e) => Reply::Error(WireError::from_error(&e)),
        }
    }

    /// A `Create`'s answer (see [`Request::Create`]); without evicting
    /// unless `evict` ([`ObjectTable::evicting_if`]).
    fn create(
        &mut self,
        cid: ClientId,
        id: ObjectId,
        data_size: u64,
        metadata: Vec<u8>,
        pull_ms: Option<u64>,
        evict: bool,
    ) -> Reply {
        let run = |t: &mut ObjectTable| {
            if let Some(ms) = pull_ms {
                let now = Instant::now();
                let until = crate::deadline_after(
                    crate::deadline_after(now, Duration::from_millis(ms)),
                    PULL_DEADLINE_GRACE,
                );
                t.create_for_pull(cid, id, data_size, metadata, now, until)
            } else {
                t.create(cid, id, data_size, metadata)
            }
        };
        match self.table.evicting_if(evict, run) {
            Ok(v) => Reply::Object(WireObject::from(&v)),
            Err(e) => Reply::Error(WireError::from_error(&e)),
        }
    }

    /// Creates `id`, copies `data` into it, seals it and lets go of the
    /// creator's reference (the `Put` request); the create without
    /// evicting unless `evict` ([`ObjectTable::evicting_if`]).
    fn put(
        &mut self,
        cid: ClientId,
        id: ObjectId,
        data: &[u8],
        metadata: Vec<u8>,
        evict: bool,
    ) -> Result<(), StoreError> {
        let size = data.len() as u64;
        let view = self
            .table
            .evicting_if(evict, |t| t.create(cid, id, size, metadata))?;
        let span = match &view.location {
            Location::Arena { offset } => Span::in_arena(&self.arena, *offset, view.data_size),
            Location::Fallback { file } => match self.fallback_files.as_ref().and_then(|f| {
                f.lock()
                    .get(file)
                    .map(|f| Span::in_file(f, view.data_size, true))
            }) {
                Some(span) => span,
                None => Err(StoreError::BadRequest("fallback object without its file")),
            },
        };
        let span = match span {
            Ok(s) => s,
            Err(e) => {
                let _ = self.table.abort(cid, id);
                return Err(e);
            }
        };
        debug_assert_eq!(span.len, data.len());
        // SAFETY: the span is `data.len()` bytes inside a live mapping
        // (checked by `Span`), just allocated to this unsealed object, which
        // nobody else is handed until it is sealed below; `data` is a
        // private buffer, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), span.ptr, span.len) };
        self.table.seal(cid, id)?;
        self.table.release(cid, id)
    }

    /// Takes a reference on every requested object that is sealed now.
    fn answer_get(&mut self, cid: ClientId, key: PeerKey, ids: &[ObjectId], evict: bool) -> Reply {
        let max = self.mux.get_mut(key).map_or(usize::MAX, |c| {
            crate::transport::Connection::max_send_len(c)
        });
        // The first ids whose answer is within the bound (at least one),
        // at most `MAX_FALLBACK_PER_ANSWER` of them in fallback files: a
        // reference is taken only on what goes out, so a long list costs
        // the service its length once in all (the attack on `3430896`: all
        // of it, metadata copied, for every part of the answer — 1,000
        // objects with 64 KiB of metadata took 7 s, and every other client
        // waited), and the descriptors handed over with one answer stay
        // few (1,200 fallback objects filled the socket and dropped the
        // client).
        let mut objs: Vec<Option<WireObject>> = Vec::new();
        let (mut bound, mut fallbacks) = (OBJECTS_REPLY_BASE, 0);
        for id in ids {
            // No room in the metadata capacity for this client's hold
            // (`HOLDER_OVERHEAD`): the answer ends before it (the client
            // asks again for the rest), or is the error if it is first.
            let o = match self.table.evicting_if(evict, |t| t.get(cid, *id)) {
                Ok(o) => o.map(|v| WireObject::from(&v)),
                Err(e) if objs.is_empty() => return Reply::Error(WireError::from_error(&e)),
                Err(_) => break,
            };
            let fallback = matches!(&o, Some(o) if matches!(o.location, WireLocation::Fallback(_)));
            let grown = bound.saturating_add(object_entry_bound(&o));
            if !objs.is_empty()
                && (grown > max || (fallback && fallbacks == MAX_FALLBACK_PER_ANSWER))
            {
                if let Some(o) = o {
                    let _ = self.table.release(cid, o.id);
                }
                break;
            }
            bound = grown;
            fallbacks += usize::from(fallback);
            objs.push(o);
        }
        // Entries are added only within the bound, which is above their
        // encoded length (unit-tested): only a first entry alone can be
        // over it.
        match objs.as_slice() {
            [Some(o)] if bound > max => {
                let id = o.id;
                self.one_too_large(cid, id, objs, max)
            }
            _ => Reply::Objects(objs),
        }
    }

    /// The answer whose one entry, object `id` (its reference taken), is
    /// over the bound of `max` bytes: measured exactly, sent if it fits,
    /// else `ReplyTooLarge` with the reference given back.
    #[cold]
    fn one_too_large(
        &mut self,
        cid: ClientId,
        id: ObjectId,
        objs: Vec<Option<WireObject>>,
        max: usize,
    ) -> Reply {
        let reply = Reply::Objects(objs);
        match self.encoder.encoded_len(&reply) {
            Ok(len) if len > max => {
                let _ = self.table.release(cid, id);
                Reply::Error(WireError::from_error(&StoreError::ReplyTooLarge {
                    id,
                    len: len as u64,
                    max: max as u64,
                }))
            }
            _ => reply,
        }
    }

    /// Answers every parked `get` whose objects are all sealed or whose
    /// deadline passed.
    fn serve_parked(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.parked.len() {
            let p = &mut self.parked[i];
            let done = p.deadline <= now || all_sealed(&self.table, p);
            if done {
                let p = self.parked.swap_remove(i);
                let Some(cid) = self.clients.get(&p.key).map(|c| c.id) else {
                    continue;
                };
                if let Then::Reply(reply) = self.get_or_step(cid, p.key, p.ids) {
                    self.send(p.key, &reply);
                }
            } else {
                i += 1;
            }
        }
    }

    /// Starts `eviction` for `key`'s request: its first step now if this
    /// round took none yet and none waits (then, if that was all, the
    /// answer now), else in its turn ([`Service::work_in_steps`]).
    fn step_then(&mut self, key: PeerKey, eviction: Eviction, then: AfterEviction) -> Then {
        // What it would hold, kept from every eviction until its answer
        // or its client's end (`finish`, `drop_client`).
        self.table.keep(eviction.kept());
        self.evicting.push_back(Stepping {
            key,
            eviction,
            then,
        });
        if !self.stepped && self.evicting.len() == 1 {
            self.step_first();
        }
        Then::Nothing
    }

    /// This round's eviction step: of the first waiting, which then goes
    /// last, or is answered if done.
    fn step_first(&mut self) {
        if let Some(mut s) = self.evicting.pop_front() {
            self.stepped = true;
            if self.table.evict_step(&mut s.eviction, OBJECTS_PER_STEP) {
                self.finish(s);
            } else {
                self.evicting.push_back(s);
            }
        }
    }

    /// Sends the answer of `s`, whose eviction is done ([`Service::answer_after`]).
    fn finish(&mut self, s: Stepping) {
        let reply = self.answer_after(s.key, &s.eviction, s.then);
        self.table.unkeep(s.eviction.kept());
        if let Some(reply) = reply {
            self.send(s.key, &reply);
        }
    }

    /// The answer to a request whose eviction is done: an `Evict`'s
    /// `Freed`, or the `Create`, `Put`, `Get` or `Pin` it made room for,
    /// done without evicting more (its steps did what a create's or a
    /// hold's passes would) — unless a create's room was contended
    /// ([`Eviction::contended`]): then the create evicts at once, as
    /// before the steps, rather than fail `StoreFull` with everything
    /// evictable. `None` when the client is gone.
    fn answer_after(&mut self, key: PeerKey, e: &Eviction, then: AfterEviction) -> Option<Reply> {
        let cid = self.clients.get(&key)?.id;
        Some(match then {
            AfterEviction::Freed => Reply::Freed(e.freed()),
            AfterEviction::Create {
                id,
                data_size,
                metadata,
                pull_ms,
            } => self.create(cid, id, data_size, metadata, pull_ms, e.contended()),
            AfterEviction::Put { id, data, metadata } => {
                match self.put(cid, id, &data, metadata, e.contended()) {
                    Ok(()) => Reply::Done,
                    Err(e) => Reply::Error(WireError::from_error(&e)),
                }
            }
            // Never at once, contended or not: its room is a count, taken
            // by whoever asks first; evicting at once walked the whole LRU
            // three times in one step when what it met was held through
            // the index (other clients' releases made the room look
            // contended: the attack on `f96e744`, another client's worst
            // op 30-34 ms). As much of the answer as fits, or
            // `MetadataFull`.
            AfterEviction::Get { ids } => self.answer_get(cid, key, &ids, false),
            AfterEviction::Pin { ids } => self.pin(cid, &ids, false),
        })
    }

    /// Answers the requests whose room came or whose id was taken
    /// meanwhile, takes this round's eviction step
    /// ([`Service::step_first`]) if a request did not, and a step of letting go
    /// of gone clients' objects: work that grows with a count (objects in
    /// the LRU, a client's holds), done [`OBJECTS_PER_STEP`] objects at a
    /// time so that every client is served between steps, however many
    /// evictions wait (one step each a round, 64 at once held others
    /// 42–88 ms: the attack on `9bd320f`).
    fn work_in_steps(&mut self) {
        // Requests whose room came meanwhile (made by another's steps, or
        // freed by a delete): answered now, not after the others' steps.
        let mut i = 0;
        let now = Instant::now();
        while i < self.evicting.len() {
            // Or its id taken meanwhile: the create fails `ObjectExists`
            // now, evicting no more for it. Or a pull's create that the
            // pulls in progress leave no room for (one was created while
            // this one stepped): it fails `PullsFull` now, and its client
            // tries again as for any pull turned away (before, it stepped
            // on and failed when its room came, evicted for nothing: the
            // attack on `e0217b7`, low).
            let taken = match &self.evicting[i].then {
                AfterEviction::Create {
                    id,
                    data_size,
                    pull_ms: Some(_),
                    ..
                } => {
                    self.table.state(id).is_some()
                        || self.table.pulls_in_progress_exclude(*data_size, now)
                }
                AfterEviction::Create { id, .. } | AfterEviction::Put { id, .. } => {
                    self.table.state(id).is_some()
                }
                AfterEviction::Freed | AfterEviction::Get { .. } | AfterEviction::Pin { .. } => {
                    false
                }
            };
            if taken || self.table.room_made(&self.evicting[i].eviction) {
                if let Some(s) = self.evicting.remove(i) {
                    self.finish(s);
                }
            } else {
                i += 1;
            }
        }
        if !self.stepped {
            self.step_first();
        }
        self.table.let_go_step(OBJECTS_PER_STEP);
    }

    /// Refreshes [`StoreService::snapshot`] (at most every 100 ms).
    fn publish_snapshot(&mut self) {
        let now = Instant::now();
        if self
            .snapshot_at
            .is_some_and(|t| now.saturating_duration_since(t) < SNAPSHOT_EVERY)
        {
            return;
        }
        self.snapshot_at = Some(now);
        let mut snap = self.table.snapshot(SNAPSHOT_OBJECTS);
        for (_, conn) in self.mux.iter() {
            snap.clients.push(ClientConnection {
                peer: conn.peer_worker_id(),
                pid: conn.peer_pid(),
                transport: conn.kind(),
                ring: conn.ring_fill(),
                pending_send: conn.pending_send_bytes() as u64,
            });
        }
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snap;
    }

    /// Pushes the table's notifications to every subscriber.
    fn notify(&mut self) {
        if self.subscribers == 0 {
            return;
        }
        let notes = self.table.drain_notifications();
        if notes.is_empty() {
            return;
        }
        for n in notes {
            self.note_seq += 1;
            let r = Reply::from(n);
            let mut i = 0;
            while let Some(&k) = self.live_subs.get(i) {
                if self.lagging(k) {
                    self.live_subs.swap_remove(i);
                    continue;
                }
                self.send(k, &r);
                // A client the send dropped left `live_subs` (at `i`).
                if self.clients.contains_key(&k) {
                    i += 1;
                }
            }
        }
    }

    /// Whether live subscriber `key` falls behind now: more than
    /// [`SUBSCRIBER_LAG_BYTES`] of notifications unread. It then leaves
    /// `live_subs` (the caller takes it out): the notification being sent
    /// and every later one count as missed, and its backlog (a late
    /// subscriber's, or a re-announcement under way) is dropped, as the
    /// re-announcement after its `Missed` covers it. `true` for a client
    /// gone too.
    fn lagging(&mut self, key: PeerKey) -> bool {
        let Some(queued) = self.queued_for(key) else {
            return true;
        };
        let Some(c) = self.clients.get_mut(&key) else {
            return true;
        };
        if queued <= SUBSCRIBER_LAG_BYTES {
            return false;
        }
        tracing::debug!(client = c.id, queued, "store: a subscriber fell behind");
        c.missed = Some(self.note_seq - 1);
        c.backlog = None;
        c.resyncing = false;
        true
    }

    /// Bytes queued on `key`'s connection behind its full ring (`None`: no
    /// such connection).
    fn queued_for(&mut self, key: PeerKey) -> Option<usize> {
        self.mux
            .get_mut(key)
            .map(|c| Connection::pending_send_bytes(c))
    }

    /// Announces some of every subscriber's backlog ([`Service::feed_backlog`]).
    fn feed_backlogs(&mut self) {
        if self.subscribers == 0 {
            return;
        }
        let mut due = std::mem::take(&mut self.feed_due);
        due.sort_unstable();
        due.dedup();
        for key in due {
            self.resync(key);
            self.feed_backlog(key);
        }
    }

    /// A subscriber that fell behind and has read all that was queued for
    /// it is told how many notifications it missed
    /// ([`Notification::Missed`]); every existing object is then announced
    /// to it again, as to a late subscriber, and `Resynced` ends that
    /// (`feed_backlog`).
    fn resync(&mut self, key: PeerKey) {
        if self.queued_for(key) != Some(0) {
            // Told when the mux reports the queue handed over.
            return;
        }
        let Some(c) = self.clients.get_mut(&key) else {
            return;
        };
        let Some(from) = c.missed.take() else {
            return;
        };
        c.resyncing = true;
        c.backlog = Some(SealedCursor::default());
        // Live again from here: what comes after the `Missed` is heard.
        self.live_subs.push(key);
        let missed = self.note_seq - from;
        self.send(key, &Reply::Missed { missed });
    }

    /// Sends subscriber `key` up to [`BACKLOG_PER_TURN`] notifications of
    /// objects sealed before it subscribed (and [`BACKLOG_BYTES_PER_TURN`]
    /// of metadata), while it has nothing queued (an object gone since is
    /// skipped: its `Deleted` went out, or the subscriber never heard of
    /// it). Stopped by a queued one, it goes on when the mux reports the
    /// queue handed over; stopped by the turn's bounds, at the loop's next
    /// round, without sleeping (`feed_due`).
    fn feed_backlog(&mut self, key: PeerKey) {
        let mut bytes = 0;
        for n in 0..=BACKLOG_PER_TURN {
            if bytes >= BACKLOG_BYTES_PER_TURN || n == BACKLOG_PER_TURN {
                if self
                    .clients
                    .get(&key)
                    .is_some_and(|c| c.backlog.is_some() || c.resyncing)
                {
                    self.feed_due.push(key);
                }
                return;
            }
            if self.queued_for(key) != Some(0) {
                return;
            }
            let Some(c) = self.clients.get_mut(&key) else {
                return;
            };
            let Some(cursor) = c.backlog.as_mut() else {
                return;
            };
            let Some(n) = self.table.next_sealed(cursor) else {
                c.backlog = None;
                if std::mem::take(&mut c.resyncing) {
                    self.send(key, &Reply::Resynced);
                }
                return;
            };
            if let Notification::Sealed { metadata, .. } = &n {
                bytes += metadata.len();
            }
            if !self.send(key, &Reply::from(n)) {
                return;
            }
        }
    }

    /// Every `send_timeout / 4` at most: drops each client that read none
    /// of its queued replies or notifications for `send_timeout`, telling
    /// it why. What it made room for is handed over first, and a queue
    /// that shrank below its smallest since the wait began is progress
    /// (counted afresh), as `Worker::check_held` judges a caller: a
    /// subscriber that keeps reading while notifications keep coming is
    /// not "unread" (the attack on `02f36f3`: one reading all the time was
    /// dropped 200 ms after a check first found a byte queued).
    fn drop_unread(&mut self, now: Instant) {
        if now < self.unread_check_at {
            return;
        }
        self.unread_check_at = now + (self.send_timeout / 4).max(Duration::from_millis(1));
        let mut late = Vec::new();
        for (key, c) in self.clients.iter_mut() {
            if c.subscriber {
                // Bounded without it: a subscriber behind is sent no more
                // (`Service::lagging`).
                continue;
            }
            // What it made room for is handed over first (only where
            // something is queued).
            // Looked at without `get_mut`, which would keep every idle
            // client's connection active in the mux.
            let queued = match self.mux.get(*key).map(Connection::pending_send_bytes) {
                Some(q) if q > 0 => self.mux.get_mut(*key).map_or(0, |conn| {
                    conn.flush_pending();
                    Connection::pending_send_bytes(conn)
                }),
                _ => 0,
            };
            match &mut c.behind_since {
                _ if queued == 0 => c.behind_since = None,
                Some(p) => {
                    if p.note(now, queued) > self.send_timeout {
                        late.push((*key, queued));
                    }
                }
                None => c.behind_since = Some(ReadProgress::new(now, queued)),
            }
        }
        for (key, queued) in late {
            let why = format!(
                "it read none of its replies for over {:?} ({queued} bytes queued)",
                self.send_timeout
            );
            tracing::warn!(error = %why, "store: dropping the client");
            self.drop_client_for(key, &why);
        }
    }

    /// Sends a new client the arena memfd and, with `slots`, the index's
    /// and its own reference slots' (see `super::handoff`). Returns whether
    /// they were sent (the caller drops the client otherwise).
    fn hand_over(
        &mut self,
        key: PeerKey,
        slots: Option<&std::os::fd::OwnedFd>,
    ) -> Result<(), StoreError> {
        use std::os::fd::AsFd;
        let Some(conn) = self.mux.get_mut(key) else {
            return Err(StoreError::ConnectionBroken {
                cause: "the client's connection is gone".into(),
            });
        };
        let mut fds = vec![self.arena.fd()];
        if let (Some(ix), Some(slots)) = (&self.index, slots) {
            fds.push(ix.segment.fd());
            fds.push(slots.as_fd());
        }
        super::handoff::send(conn, super::handoff::SEGMENTS, &fds).inspect_err(|e| {
            tracing::debug!(error = %e, "store: could not hand over the segments");
        })
    }

    /// Sends `r` to `key`, preceded on the connection's socket by the
    /// descriptors of the fallback files it names (`super::handoff`),
    /// never waiting for the socket; a failure of either disconnects the
    /// client (a client that does not read its descriptors fills its
    /// socket's buffer and is dropped here). Returns whether it was sent.
    fn send(&mut self, key: PeerKey, r: &Reply) -> bool {
        let Some(conn) = self.mux.get_mut(key) else {
            return false;
        };
        let tokens = r.fallback_files();
        if !tokens.is_empty() {
            let sent = match &self.fallback_files {
                Some(files) => {
                    use std::os::fd::AsFd;
                    let files = files.lock();
                    let fds: Option<Vec<_>> = tokens
                        .iter()
                        .map(|t| files.get(*t).map(|f| f.as_fd()))
                        .collect();
                    match fds {
                        Some(fds) => super::handoff::send(conn, super::handoff::FALLBACK, &fds),
                        None => Err(StoreError::BadRequest("a fallback object without its file")),
                    }
                }
                None => Err(StoreError::BadRequest(
                    "a fallback object without a fallback",
                )),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "store: could not hand over fallback files, dropping the client");
                self.drop_client_for(
                    key,
                    &format!(
                        "the store could not hand over fallback files: {}",
                        crate::error_chain(&e)
                    ),
                );
                return false;
            }
        }
        let Some(conn) = self.mux.get_mut(key) else {
            return false;
        };
        // Never waits: what does not fit the client's ring is queued on its
        // connection (and flushed by the mux as the client reads); a client
        // whose queue is full, or whose replies stay unread longer than the
        // send timeout (`drop_unread`), is dropped.
        match conn.try_send_message(&mut self.encoder, r) {
            Ok(_) => true,
            Err(crate::transport::SendError::QueueFull { queued, limit }) => {
                let why = format!(
                    "its replies are not read: {queued} bytes queued, the limit is {limit}"
                );
                tracing::warn!(error = %why, "store: dropping the client");
                self.drop_client_for(key, &why);
                false
            }
            Err(e) => {
                // A client gone is no news; anything else drops a live one.
                if matches!(
                    e,
                    crate::transport::SendError::Closed
                        | crate::transport::SendError::PeerDied { .. }
                ) {
                    tracing::debug!(error = %e, "store: send failed, dropping the client");
                } else {
                    let why = format!("a reply could not be sent: {}", crate::error_chain(&e));
                    tracing::warn!(error = %why, "store: dropping the client");
                    self.drop_client_for(key, &why);
                    return false;
                }
                self.drop_client(key);
                false
            }
        }
    }

    /// [`Service::drop_client`], telling the client `why` first (its
    /// farewell, `Connection::farewell`: the client's error names it).
    fn drop_client_for(&mut self, key: PeerKey, why: &str) {
        if let Some(conn) = self.mux.get_mut(key) {
            use crate::transport::Connection;
            conn.farewell(why);
        }
        self.drop_client(key);
    }

    /// Disconnects a client: its unsealed objects are aborted, its
    /// references and pins released, its parked `get` forgotten.
    fn drop_client(&mut self, key: PeerKey) {
        if let Some(mut conn) = self.mux.remove(key) {
            use crate::transport::Connection;
            let _ = conn.close();
        }
        self.parked.retain(|p| p.key != key);
        let table = &mut self.table;
        self.evicting.retain(|s| {
            let stays = s.key != key;
            if !stays {
                table.unkeep(s.eviction.kept());
            }
            stays
        });
        if let Some(c) = self.clients.remove(&key) {
            // Relaxed: see the admission.
            self.served.store(self.clients.len(), Ordering::Relaxed);
            if c.subscriber {
                self.subscribers -= 1;
                if self.subscribers == 0 {
                    self.table.set_notifying(false);
                }
                // Its slot may come back as another client's.
                self.live_subs.retain(|k| *k != key);
                self.feed_due.retain(|k| *k != key);
            }
            let n = self.table.disconnect(c.id);
            tracing::debug!(client = c.id, objects = n, "store: client gone");
        }
    }
}

/// The encoded length in bytes of the largest notification a subscriber
/// may be sent: a `Sealed` with [`MAX_METADATA_LEN`] bytes of metadata
/// (measured once).
fn largest_notification() -> usize {
    static LEN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LEN.get_or_init(|| {
        let note = Reply::Sealed {
            id: ObjectId::from_array([0xff; 28]),
            data_size: u64::MAX,
            metadata: vec![0xff; MAX_METADATA_LEN],
        };
        crate::spec::Encoder::new()
            .encoded_len(&note)
            .unwrap_or(MAX_METADATA_LEN + 256)
    })
}

#[cfg(test)]
mod tests {
    use super::super::table::tests::oid;
    use super::*;

    #[test]
    fn a_parked_get_checks_each_id_once_until_it_is_sealed() {
        let mut t = ObjectTable::new(1 << 20).unwrap();
        let mut p = Parked {
            key: PeerKey(1),
            ids: (0..4).map(oid).collect(),
            deadline: Instant::now(),
            seen: 0,
        };
        let seal = |t: &mut ObjectTable, n: u32| {
            t.create(1, oid(n), 8, vec![]).unwrap();
            t.seal(1, oid(n)).unwrap();
        };
        assert!(!all_sealed(&t, &mut p));
        assert_eq!(p.seen, 0);
        seal(&mut t, 0);
        seal(&mut t, 2);
        assert!(!all_sealed(&t, &mut p));
        assert_eq!(p.seen, 1, "stops at the first one missing");
        seal(&mut t, 1);
        assert!(!all_sealed(&t, &mut p));
        assert_eq!(p.seen, 3);
        // Ids seen sealed are not looked up again.
        t.delete(oid(0)).unwrap();
        seal(&mut t, 3);
        assert!(all_sealed(&t, &mut p));
        assert_eq!(p.seen, 4);
    }
}
