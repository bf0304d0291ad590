//! The node service: what `shmwire node --session S` runs for one host's
//! session (see `docs/node.md`).
//!
//! - it holds the session's node lock (`.node.lock`, an exclusive `flock`
//!   for its life), so a second node of the session is refused by the
//!   kernel while this one lives, whatever the files say;
//! - it registers itself in the session's [`Directory`] under
//!   [`NODE_NAME`] (so `inspect` finds it and its HTTP address, which its
//!   entry gives as `http=`, not as a transport's `tcp=`);
//! - it runs the session's object store ([`StoreService`]) under
//!   [`DEFAULT_STORE_NAME`](crate::store::DEFAULT_STORE_NAME);
//! - every [`NodeConfig::interval`] ([`Node::tick`]) it looks at the
//!   directory, remembers each worker it sees dead, and runs the session's
//!   cleanup pass ([`Session::cleanup_stale`], the one pass of issue 10),
//!   which removes the dead workers' entries, sockets and segments (and
//!   nothing of a live process);
//! - it publishes its store's figures, its store's client connections
//!   (with their rings' fill) and the workers it saw die in its
//!   statistics area ([`StatsArea`]), which `shmwire inspect` reads;
//! - it serves plain HTTP/1.0 on its TCP address (127.0.0.1 unless told
//!   otherwise): `GET /health` answers `ok <session> <pid>` (`503` while
//!   the object endpoint has no working store client), `GET /inspect`
//!   the text of `shmwire inspect --session S`; every connection is a
//!   state machine of one event loop with its own deadline
//!   (`node::http`), so no client delays another;
//! - it serves pulls of its store's objects to other nodes
//!   ([`PullServer`], Ray's object manager) on its object address
//!   ([`NodeConfig::object_listen`], [`Node::object_addr`]).
//!
//! A node whose session directory is removed (or replaced) under it stops:
//! its lock, entry and store socket went with the directory, so no worker
//! can find it and a new node could start in a new directory of the same
//! name — two nodes of one session. [`Node::tick`] notices it
//! ([`TickReport::session_gone`]) and [`Node::run`] returns
//! [`NodeError::SessionGone`].
//!
//! [`Node::shutdown`] stops the store, removes the node's entry and
//! segments, and runs [`Session::remove_all`], which removes the session
//! directory too when no other process of it lives.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::HttpEndpoint;
use super::stats_area::{
    AreaRole, AreaSnapshot, ConnectionFigures, DeadWorker, StatsArea, StoreFigures,
};
use super::{Directory, Registration};
use crate::ids::WorkerId;
use crate::shm::{CleanupReport, Session, ShmError};
use crate::store::{
    ClientOptions, PullServer, PullServerConfig, StoreClient, StoreConfig, StoreError,
    StoreService, DEFAULT_STORE_NAME,
};
use crate::transport::{Endpoint, Published as _, Restored, SessionToken};

/// The name a node registers under in its session's directory.
pub const NODE_NAME: &str = "shmwire-node";

pub use super::http::{HTTP_MAX_CONNECTIONS, HTTP_TIMEOUT, INSPECT_QUEUE, INSPECT_TIMEOUT};

/// How a [`Node`] runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The store's arena capacity in bytes.
    pub store_capacity: u64,
    /// Bytes of the store's heap its objects' metadata may take (`None`:
    /// the default; see [`StoreConfig::metadata_capacity`]).
    pub store_metadata_capacity: Option<u64>,
    /// Bytes that objects being pulled from other nodes may take in the
    /// store at once while unsealed (`None`: half the arena; see
    /// [`StoreConfig::pull_capacity`]).
    pub store_pull_capacity: Option<u64>,
    /// Where the store puts objects as files when the arena is full of
    /// objects it cannot evict (`None`: such a create fails).
    pub fallback_dir: Option<PathBuf>,
    /// Where the HTTP endpoint listens (default `127.0.0.1:0`, a free port).
    pub listen: SocketAddr,
    /// Where the object endpoint listens: other nodes pull this node's
    /// objects from it ([`StoreClient::pull`]; default `127.0.0.1:0`, a
    /// free port).
    pub object_listen: SocketAddr,
    /// How often at most the node runs a round ([`Node::tick`]: looks for
    /// dead workers and cleans up after them), and how often while the
    /// last round found something to do or a death to confirm, or while
    /// its watch cannot see every change (see [`Node::run`]).
    pub interval: Duration,
    /// How often an idle node runs a round when no event called for one
    /// (see [`Node::run`]): the bound for what no event reports, such as a
    /// file scribbled through a shared mapping.
    pub idle_interval: Duration,
}

impl NodeConfig {
    /// A store of `store_capacity` bytes, no fallback, both endpoints on
    /// `127.0.0.1:0`, rounds at most every 100 ms and at least every
    /// second.
    pub fn new(store_capacity: u64) -> Self {
        Self {
            store_capacity,
            store_metadata_capacity: None,
            store_pull_capacity: None,
            fallback_dir: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            object_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            interval: Duration::from_millis(100),
            idle_interval: Duration::from_secs(1),
        }
    }
}

/// Why a node could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The session (its directory, a segment, the cleanup pass).
    #[error("session: {0}")]
    Session(#[from] ShmError),
    /// The directory: no random source for the node's id.
    #[error("directory: {0}")]
    Directory(String),
    /// Opening the session's directory of workers.
    #[error("directory: {0}")]
    Lookup(#[from] crate::transport::LookupError),
    /// Registering the node's entry (its OS error is the source).
    #[error("directory: {0}")]
    Register(#[from] crate::transport::PublishError),
    /// The node lock: another node of this session runs (its pid named),
    /// or the lock file could not be made.
    #[error(transparent)]
    Lock(#[from] super::node_lock::NodeLockError),
    /// The object store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The session directory was removed or replaced while the node ran
    /// (see the module docs).
    #[error(
        "the session directory {} was removed, renamed or replaced under the node; stopping — \
         start a new node for the session",
        path.display()
    )]
    SessionGone {
        /// The session directory.
        path: PathBuf,
    },
    /// The session's node lock was removed or replaced while the node ran
    /// and another node took it in the gap: the kernel's lock says that
    /// node is the session's, so this one stops (two nodes would split
    /// the directory between their stores).
    #[error(
        "the session's node lock was taken by another node while this one ran ({why}); stopping \
         — that node is the session's now"
    )]
    NodeLockLost {
        /// What taking it again said (the other node's pid).
        why: String,
    },
    /// The HTTP endpoint.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Setting up the HTTP endpoint's event loop, waker or threads (e.g.
    /// out of descriptors).
    #[error("the HTTP endpoint on {addr} could not be set up: {source}")]
    Http {
        /// Its address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Fewer than [`NODE_SPARE_DESCRIPTORS`] descriptors were left once
    /// everything was set up: the node would start and take no store
    /// client, every cleanup round failing for want of a descriptor.
    #[error(
        "too few file descriptors: {spare} left to spare after starting, under the limit of \
         {limit} (RLIMIT_NOFILE, `ulimit -n`); the node needs at least {want} to serve its \
         endpoints and store clients — raise the limit to {} or more",
        limit.saturating_add((*want - *spare) as u64)
    )]
    Descriptors {
        /// Descriptors that could still be opened.
        spare: usize,
        /// [`NODE_SPARE_DESCRIPTORS`].
        want: usize,
        /// The soft `RLIMIT_NOFILE` (`u64::MAX`: unlimited).
        limit: u64,
    },
    /// A step of the start failed while fewer than
    /// [`NODE_SPARE_DESCRIPTORS`] descriptors were left: the limit is the
    /// cause, whatever the step's own error (the source) says — the store
    /// refusing the node's own client reads "connection closed".
    #[error(
        "out of file descriptors while starting, under the limit of {limit} (RLIMIT_NOFILE, \
         `ulimit -n`; the node needs what it sets up and {} more) — raise the limit",
        NODE_SPARE_DESCRIPTORS
    )]
    StartOutOfDescriptors {
        /// The soft `RLIMIT_NOFILE` (`u64::MAX`: unlimited).
        limit: u64,
        /// The step's error.
        #[source]
        source: Box<NodeError>,
    },
}

/// Descriptors a node must still be able to open once it has set
/// everything up, or it refuses to start ([`NodeError::Descriptors`]):
/// one store client costs the node about 7 (its socket, two ring memfds,
/// eventfds, its reference slots), a cleanup round up to 4 at once, each
/// HTTP or pull connection 1. A floor that lets it answer `/health` and
/// serve a client, not a capacity.
pub const NODE_SPARE_DESCRIPTORS: usize = 16;

/// [`NodeError::Descriptors`] unless [`NODE_SPARE_DESCRIPTORS`] more
/// descriptors can be opened now (counted by duplicating `fd`, each
/// duplicate closed again).
fn check_spare_descriptors(fd: &impl std::os::fd::AsFd) -> Result<(), NodeError> {
    let spare = crate::sys::fs::spare_descriptors(fd.as_fd(), NODE_SPARE_DESCRIPTORS);
    if spare < NODE_SPARE_DESCRIPTORS {
        return Err(NodeError::Descriptors {
            spare,
            want: NODE_SPARE_DESCRIPTORS,
            limit: crate::sys::fs::nofile_limit(),
        });
    }
    Ok(())
}

/// A start step's error `e`, or — when fewer than
/// [`NODE_SPARE_DESCRIPTORS`] descriptors are left now (what the node set
/// up before the step is still open) — [`NodeError::StartOutOfDescriptors`]
/// with `e` as its cause.
fn short_of_descriptors(fd: &impl std::os::fd::AsFd, e: NodeError) -> NodeError {
    match check_spare_descriptors(fd) {
        Ok(()) => e,
        Err(_) => NodeError::StartOutOfDescriptors {
            limit: crate::sys::fs::nofile_limit(),
            source: Box::new(e),
        },
    }
}

/// What one [`Node::tick`] saw and did.
#[derive(Debug, Default)]
pub struct TickReport {
    /// Workers seen dead for the first time.
    pub died: Vec<DeadWorker>,
    /// What the cleanup pass did; its errors carry their causes
    /// ([`crate::error_chain`]).
    pub cleanup: CleanupReport,
    /// The session directory is gone or replaced: the round did nothing
    /// else, and [`Node::run`] stops.
    pub session_gone: bool,
    /// The node's own files that had been removed or replaced under it (a
    /// stray `rm`, a file renamed over one) and were put back this round:
    /// its process lock (before the cleanup pass, which would take the
    /// node for dead), the session's node lock (else a second node could
    /// start), its directory entry, the session token file, its statistics
    /// area. A failure to is one of `cleanup.errors`. (The store
    /// service puts back its own listener's socket and entry:
    /// [`StoreService::health`].)
    pub restored: Restored,
    /// What the store service put back of its own (process lock, socket,
    /// entry) since the last round.
    pub store_restored: Restored,
    /// The node lock was lost to another node ([`NodeError::NodeLockLost`]):
    /// the round did nothing else, and [`Node::run`] stops.
    pub node_lock_lost: Option<String>,
    /// What `/health` reports now, by part (`"store"`, `"object
    /// endpoint"`): each unhealthy part's problem ([`crate::store::Health::problem`]);
    /// empty while the node is healthy.
    pub unhealthy: Vec<(&'static str, String)>,
}

impl TickReport {
    /// Whether the pass removed anything.
    pub fn removed_anything(&self) -> bool {
        self.cleanup.removed_anything()
    }
}

/// A running node (see the module docs). Dropping it stops it as
/// [`Node::shutdown`] does, ignoring errors.
#[derive(Debug)]
pub struct Node {
    session: Session,
    directory: Directory,
    id: WorkerId,
    store: Option<StoreService>,
    /// Serves pulls of the store's objects; stopped before the store.
    pull: Option<PullServer>,
    registration: Option<Registration>,
    /// The session's node lock, held for the node's life.
    lock: Option<super::node_lock::NodeLock>,
    area: Option<StatsArea>,
    snap: AreaSnapshot,
    addr: SocketAddr,
    http: Option<HttpEndpoint>,
    config: NodeConfig,
    /// The session directory's (device, inode) when the node started: a
    /// directory that no longer has them is gone (`session_gone`).
    dir_id: (u64, u64),
    /// The session's token, to write its file again if it is lost.
    token: SessionToken,
    /// The token file found holding it.
    token_file: super::TokenFile,
    /// Workers seen live in the last round: id → (pid, name), so a worker
    /// that dies and whose entry a cleanup pass removes between two looks
    /// is still reported.
    known: HashMap<WorkerId, (u32, Option<String>)>,
    /// Workers whose entry says they died while their pid still exists:
    /// id → (pid, name, since when), announced after [`DEATH_GRACE`]
    /// unless seen live again ([`Node::suspect`]).
    suspects: HashMap<WorkerId, (u32, Option<String>, Instant)>,
    /// What the cleanup pass at start removed (a dead predecessor's files).
    start_cleanup: CleanupReport,
    /// The node's own part of `/health`: the files of its own it could not
    /// put back this round (process lock, node lock, entry, marker, token,
    /// statistics area).
    health: crate::store::Health,
}

/// How [`Node::suspect`] learned of a worker's pid and name.
enum Seen {
    /// From its locked entry (this round or an earlier one).
    Live(u32, Option<String>),
    /// From an unlocked entry only: anybody's word.
    Unlocked(u32, Option<String>),
}

/// Records a failure to put back a file of the node's own: `what` (empty if
/// the error says it all) and the error chain go to the round's errors, and
/// to `own` (what `/health` names) unless the cause is running out of file
/// descriptors (`EMFILE`, `ENFILE`) somewhere in the chain.
fn own_failure(
    report: &mut TickReport,
    own: &mut Vec<String>,
    what: &str,
    e: &(dyn std::error::Error + 'static),
) {
    let text = if what.is_empty() {
        crate::error_chain(e)
    } else {
        format!("{what}: {}", crate::error_chain(e))
    };
    let no_descriptors = crate::sys::fs::chain_is_out_of_descriptors(e);
    if !no_descriptors {
        own.push(text.clone());
    }
    report.cleanup.errors.push(text);
}

/// How long a worker whose entry says it died, but whose pid exists, has
/// to put its entry back before the node announces its death: twice the
/// interval at which a live worker checks its files
/// ([`crate::transport::LISTENER_CHECK_INTERVAL`]), plus a round.
pub const DEATH_GRACE: Duration = Duration::from_millis(2_500);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Node {
    /// Starts the node of `session`: cleans up what dead processes left
    /// (a SIGKILLed predecessor node's entry, lock, store arena and area
    /// included), takes the session's node lock (`.node.lock`, an
    /// exclusive `flock` held for the node's life: [`NodeError::Lock`]
    /// naming the live node's pid while another node runs), registers as
    /// [`NODE_NAME`], starts the store, the object endpoint, the HTTP
    /// endpoint and the statistics area.
    ///
    /// Each endpoint makes every resource it needs (listener, event loop,
    /// waker, threads) in its own `start`, none in its thread, so a
    /// returned node serves; then [`NODE_SPARE_DESCRIPTORS`] more
    /// descriptors must be available ([`NodeError::Descriptors`]); a step
    /// that fails while fewer are left is
    /// [`NodeError::StartOutOfDescriptors`] with the step's error as its
    /// cause. On any error what was made is dropped (the caller removes
    /// the session's files: [`Session::remove_all`]). First it raises the
    /// process's soft `RLIMIT_NOFILE` to the hard limit (each store client
    /// costs the node about 7 descriptors).
    pub fn start(session: &Session, config: NodeConfig) -> Result<Self, NodeError> {
        // Each store client costs the node ≈ 7 descriptors: under the
        // common soft limit of 1,024 it served ≈ 140 (the attack on
        // `7c472c6`). The node takes what the hard limit allows.
        let limit = crate::sys::fs::raise_nofile_limit();
        tracing::debug!(limit, "node: open-file limit (raised to the hard limit)");
        let start_cleanup = session.cleanup_stale()?;
        // One node per session: the kernel's lock decides, not a file's
        // content (a dead node's lock is free; the pass above removed it).
        let lock = super::node_lock::NodeLock::acquire(session)?;
        // Any step below that fails while the node is short of
        // descriptors is reported as that (with the step's error as its
        // cause): the step's own error may not say so (the store refusing
        // the node's own client is "connection closed").
        let short = |e: NodeError| short_of_descriptors(&lock, e);
        let dir_id = std::fs::metadata(session.dir())
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| short(ShmError::io("stat", session.dir(), e).into()))?;
        let directory = Directory::for_session(session).map_err(|e| short(e.into()))?;
        let token = super::load_or_create_token(session).map_err(|e| {
            short(NodeError::Store(StoreError::io(
                "load the session token",
                std::io::Error::other(e),
            )))
        })?;
        let id = WorkerId::try_from_random().map_err(|e| {
            NodeError::Directory(format!("no random source for the node's id: {e}"))
        })?;
        let http = TcpListener::bind(config.listen).map_err(|source| {
            short(NodeError::Listen {
                addr: config.listen,
                source,
            })
        })?;
        let addr = http.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        // Made before the node registers, as a worker's is, so its entry
        // can say `stats=published`: `inspect` then reports a missing
        // area (and with it the store's figures) as missing, not as a
        // process that keeps none.
        let mut area = StatsArea::create(session, &id).map_err(|e| short(e.into()))?;
        // Readable from now on (role, pid), store figures to follow.
        area.publish(&AreaSnapshot::new(AreaRole::Node));
        let mut endpoint = Endpoint::new(id);
        endpoint.name = Some(NODE_NAME.to_owned());
        // Its HTTP port is no shmwire transport: `http=`, never `tcp=`
        // (a connector resolving the node would have dialled HTTP).
        endpoint.http = Some(addr);
        endpoint.stats = Some(crate::transport::StatsState::Published);
        let registration = directory.register(&endpoint).map_err(|e| short(e.into()))?;
        let mut store_config = StoreConfig::new(config.store_capacity);
        store_config.metadata_capacity = config.store_metadata_capacity;
        store_config.pull_capacity = config.store_pull_capacity;
        if let Some(d) = &config.fallback_dir {
            store_config = store_config.fallback_dir(d);
        }
        let store = StoreService::start(session, store_config).map_err(|e| short(e.into()))?;
        // The object endpoint reads the store through an ordinary client,
        // whose references keep objects alive while they are sent. Its
        // store is in this process, so a reply slower than a second means
        // the node is broken: the event loop is not held longer.
        let pull_client = StoreClient::connect_with(
            session,
            DEFAULT_STORE_NAME,
            ClientOptions {
                reply_timeout: Duration::from_secs(1),
                ..ClientOptions::default()
            },
        )
        .map_err(|e| short(e.into()))?;
        // Each endpoint makes every resource it needs (listener, event
        // loop, waker, threads) in its `start`, none in its thread: a
        // failure is the node's, before it says it is ready.
        let pull = PullServer::start(pull_client, PullServerConfig::new(config.object_listen))
            .map_err(|e| short(e.into()))?;
        let health = crate::store::Health::default();
        let parts = vec![
            ("node", health.clone()),
            ("store", store.health()),
            ("object endpoint", pull.health()),
        ];
        let http = HttpEndpoint::start(http, session, parts)
            .map_err(|source| short(NodeError::Http { addr, source }))?;
        // Every endpoint is set up; the node must also have descriptors
        // left to serve with, or it would say it is ready and take no
        // store client, its cleanup rounds failing for want of one.
        check_spare_descriptors(&lock)?;
        let mut node = Self {
            session: session.clone(),
            directory,
            id,
            store: Some(store),
            pull: Some(pull),
            registration: Some(registration),
            lock: Some(lock),
            area: Some(area),
            snap: AreaSnapshot::new(AreaRole::Node),
            addr,
            http: Some(http),
            config,
            dir_id,
            token_file: super::TokenFile::of(session),
            token,
            known: HashMap::new(),
            suspects: HashMap::new(),
            start_cleanup,
            health,
        };
        node.publish();
        Ok(node)
    }

    /// What the cleanup pass the node made before it took the session
    /// removed and kept: the files of dead processes, a dead predecessor
    /// node's among them (`shmwire node` prints its `removed:` line as it
    /// does each round's).
    pub fn start_cleanup(&self) -> &CleanupReport {
        &self.start_cleanup
    }

    /// The node's worker id in the directory.
    pub fn id(&self) -> WorkerId {
        self.id
    }

    /// The HTTP endpoint's address.
    pub fn http_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The object endpoint's address: where other nodes pull this node's
    /// objects ([`StoreClient::pull`]).
    pub fn object_addr(&self) -> Option<SocketAddr> {
        self.pull.as_ref().map(PullServer::addr)
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The store service.
    pub fn store(&self) -> Option<&StoreService> {
        self.store.as_ref()
    }

    /// Whether the session directory is still the one the node started in.
    fn session_dir_intact(&self) -> bool {
        std::fs::metadata(self.session.dir()).is_ok_and(|m| (m.dev(), m.ino()) == self.dir_id)
    }

    /// One round: notes the workers now dead, runs the cleanup pass (which
    /// removes their entries, sockets and segments), republishes the area.
    /// If the session directory is gone or replaced, only says so
    /// ([`TickReport::session_gone`]).
    pub fn tick(&mut self) -> TickReport {
        let mut report = TickReport::default();
        if !self.session_dir_intact() {
            report.session_gone = true;
            return report;
        }
        // Before the pass: without its lock the node is a dead process to
        // it (its socket and area would go).
        // The node's own files it could not put back this round, for
        // `/health` (beside the report's errors).
        let mut own = Vec::new();
        match self.session.restore_process_lock() {
            Ok(made) => report.restored.lock = made,
            Err(e) => own_failure(
                &mut report,
                &mut own,
                "the node's process lock is missing and could not be made again",
                &e,
            ),
        }
        // (Only with the process lock in place: see `restore_own`.)
        let lock_kept = self.session.process_lock_intact();
        if let Some(l) = self.lock.as_mut().filter(|_| lock_kept) {
            match l.restore(&self.session) {
                Ok(made) => report.restored.node_lock = made,
                // Another node holds it: that node is the session's.
                Err(e @ super::node_lock::NodeLockError::Held { .. }) => {
                    report.node_lock_lost = Some(crate::error_chain(&e));
                    return report;
                }
                Err(e) => own_failure(
                    &mut report,
                    &mut own,
                    "the session's node lock was removed or replaced and could not be taken again",
                    &e,
                ),
            }
        }
        let mut live = HashMap::new();
        match self.directory.entries() {
            Ok(ws) => {
                for w in ws {
                    let Ok(ep) = w.endpoint else { continue };
                    match w.live {
                        Some(true) => {
                            live.insert(ep.worker_id, (ep.pid, ep.name));
                        }
                        Some(false) => {
                            self.suspect(&mut report, ep.worker_id, Seen::Unlocked(ep.pid, ep.name))
                        }
                        None => {}
                    }
                }
            }
            Err(e) => report
                .cleanup
                .errors
                .push(format!("list directory: {}", crate::error_chain(&e))),
        }
        let mut cleanup = match self.session.cleanup_stale() {
            Ok(c) => c,
            Err(e) => CleanupReport {
                errors: vec![crate::error_chain(&e)],
                ..Default::default()
            },
        };
        // Entries of workers seen live a moment ago that the pass removed:
        // they died in between.
        for name in &cleanup.removed_other {
            let id = name
                .strip_prefix(crate::shm::ENTRY_PREFIX)
                .and_then(|n| n.strip_suffix(crate::shm::ENTRY_SUFFIX))
                .and_then(|h| WorkerId::from_hex(h).ok());
            let Some(id) = id else { continue };
            if let Some((pid, name)) = live.remove(&id).or_else(|| self.known.get(&id).cloned()) {
                self.suspect(&mut report, id, Seen::Live(pid, name));
            }
        }
        // A suspect seen live again had its entry removed or replaced, not
        // its life: it put the entry back.
        let now = Instant::now();
        let mut due = Vec::new();
        self.suspects.retain(|id, (pid, name, since)| {
            if live.contains_key(id) {
                return false;
            }
            // Still there and within the grace: wait. A pid that went
            // meanwhile settles it at once (a process seen in the middle of
            // exiting: locks released, not yet a zombie).
            if now.duration_since(*since) < DEATH_GRACE
                && crate::sys::liveness::pid_exists(*pid) != Some(false)
            {
                return true;
            }
            due.push((*id, *pid, name.take()));
            false
        });
        for (id, pid, name) in due {
            self.note_dead(&mut report, id, pid, name);
        }
        // A name held by entries of processes that do not hold its claim
        // (written under it by a same-user process), or by several
        // workers: lookups by name pass over the former and refuse the
        // latter, and `/health` says so while it lasts (the attacks on
        // `1b5f3c1` and `5aeed3d`: an entry planted under the store's name
        // took every new store client, and the node said `ok`).
        own.extend(name_problems(&self.directory, &live));
        own.extend(self.directory.names_lock_problem());
        self.known = live;
        // After the pass: it removes an unlocked file renamed over the
        // entry, which this writes again.
        // Made only into the directory the node started in, with its lock
        // in place: a file made without the lock makes it again — and the
        // session directory, if it was removed during this round.
        if self.session.process_lock_intact() && self.session_dir_intact() {
            self.restore_own(&mut report, &mut own);
        }
        if let Some(st) = &self.store {
            report.store_restored = st.take_restored();
            if let Some(p) = st.health().problem() {
                report.unhealthy.push(("store", p));
            }
        }
        if let Some(p) = self.pull.as_ref().and_then(|p| p.health().problem()) {
            report.unhealthy.push(("object endpoint", p));
        }
        if !self.session_dir_intact() {
            // Removed during the round: what failed for want of it, and
            // what was made in a directory about to go, is not news.
            return TickReport {
                session_gone: true,
                ..TickReport::default()
            };
        }
        // What is in the report's errors so far is the node's own files it
        // could not put back: `/health` says so while it lasts (the attack
        // on `0060161`: its entry, token and area lost on a full disk, or
        // its node lock replaced by a directory, and `/health` said `ok`).
        // (`shmwire node` prints them as cleanup errors, once.)
        // Failures for want of descriptors are left out: they say nothing
        // about the files (a descriptor flood on the node's endpoints makes
        // every look fail, and `/health` must stay `200` under it: CI on
        // `823462c`), and the round after it looks again.
        self.health.set((!own.is_empty()).then(|| own.join("; ")));
        cleanup.errors.append(&mut report.cleanup.errors);
        report.cleanup = cleanup;
        self.publish();
        report
    }

    /// Puts back the node's directory entry, the session token (replacing
    /// another one a newcomer made) and the node's statistics area, if
    /// they were removed or replaced; failures go to the report's errors.
    fn restore_own(&mut self, report: &mut TickReport, own: &mut Vec<String>) {
        if let Some(r) = &mut self.registration {
            match r.restore() {
                Ok(made) => report.restored.entry = made,
                Err(e) => own_failure(
                    report,
                    own,
                    "the node's directory entry is missing and could not be written again",
                    &e,
                ),
            }
        }
        match self.session.restore_marker() {
            Ok(made) => report.restored.marker = made,
            Err(e) => own_failure(
                report,
                own,
                "the session marker is missing and could not be made again",
                &e,
            ),
        }
        match super::token::restore_token(&self.session, &self.token, true, &mut self.token_file) {
            Ok(made) => report.restored.token = made,
            Err(e) => own_failure(report, own, "", &e),
        }
        if let Some(a) = &mut self.area {
            match a.restore(&self.session, &self.id) {
                Ok(made) => report.restored.area = made,
                Err(e) => own_failure(
                    report,
                    own,
                    "the node's statistics area is missing and could not be made again",
                    &e,
                ),
            }
        }
    }

    /// Worker `id`'s entry says it died (unlocked, or removed by the pass
    /// right after it was seen live). When its process `pid` is gone that
    /// is certain: recorded now. Otherwise the entry may have been removed
    /// or replaced under a live worker (a stray `rm`, a file renamed over
    /// it), which puts it back within its check interval: recorded only if
    /// it has not after [`DEATH_GRACE`] — or as soon as a later round finds
    /// its pid gone (a process is seen in the middle of exiting, its locks
    /// released before it is a zombie: the watch wakes the node then).
    fn suspect(&mut self, report: &mut TickReport, id: WorkerId, seen: Seen) {
        // An unlocked entry's pid is anybody's word (a copy renamed over a
        // live worker's entry with another pid): the pid seen in its
        // locked entry decides when there was one.
        let (pid, name) = match (self.suspects.get(&id), self.known.get(&id), seen) {
            (Some((p, n, _)), _, _) | (None, Some((p, n)), _) => (*p, n.clone()),
            (None, None, Seen::Live(pid, name)) => (pid, name),
            // Never seen live (a worker that died within a round of
            // starting, or a planted file): its `pid=` is believed only
            // when no such process exists — a death, whoever's. A live
            // pid is not this worker's death to announce (the attack on
            // `0060161`: planted entries naming a live worker's pid, or
            // pid 1, were announced dead). The pass removes the entry
            // either way, and its `removed:` line names it.
            (None, None, Seen::Unlocked(pid, name)) => {
                if crate::sys::liveness::pid_exists(pid) == Some(false) {
                    self.note_dead(report, id, pid, name);
                }
                return;
            }
        };
        if crate::sys::liveness::pid_exists(pid) == Some(false) {
            self.suspects.remove(&id);
            return self.note_dead(report, id, pid, name);
        }
        self.suspects
            .entry(id)
            .or_insert_with(|| (pid, name, Instant::now()));
    }

    /// Records worker `id` (process `pid`) as dead, once.
    fn note_dead(&mut self, report: &mut TickReport, id: WorkerId, pid: u32, name: Option<String>) {
        if self
            .snap
            .dead
            .iter()
            .any(|d| d.worker_id == id && d.pid == pid)
        {
            return;
        }
        let d = DeadWorker {
            worker_id: id,
            pid,
            name,
            seen_dead_unix_ms: now_ms(),
        };
        report.died.push(d.clone());
        self.snap.dead.push(d);
        let excess = self
            .snap
            .dead
            .len()
            .saturating_sub(super::stats_area::MAX_DEAD);
        self.snap.dead.drain(..excess);
    }

    /// Publishes the area again if the store's figures changed since the
    /// last publish (between rounds; nothing is written while idle).
    fn publish_store_changes(&mut self) {
        let Some(snap) = self.store.as_ref().map(StoreService::snapshot) else {
            return;
        };
        let changed = self.snap.store.as_ref() != Some(&StoreFigures::from(&snap))
            || !self.snap.connections.iter().eq(snap
                .clients
                .iter()
                .map(ConnectionFigures::from)
                .collect::<Vec<_>>()
                .iter());
        if changed {
            self.publish_snapshot(Some(snap));
        }
    }

    fn publish(&mut self) {
        let snap = self.store.as_ref().map(StoreService::snapshot);
        self.publish_snapshot(snap);
    }

    /// Publishes the area with the store's snapshot `snap` (taken once).
    fn publish_snapshot(&mut self, snap: Option<crate::store::StoreSnapshot>) {
        // The node serves no task connections: its area's connections are
        // its store service's clients.
        self.snap.connections = snap
            .as_ref()
            .map(|s| s.clients.iter().map(ConnectionFigures::from).collect())
            .unwrap_or_default();
        self.snap.store = snap.as_ref().map(StoreFigures::from);
        if let Some(a) = &mut self.area {
            a.publish(&self.snap);
        }
    }

    /// Runs [`Node::tick`] until `stop` is set, handing each report to
    /// `on_tick`: a round when something happened in the session and
    /// otherwise every [`NodeConfig::idle_interval`], never two closer
    /// than [`NodeConfig::interval`].
    ///
    /// "Something happened" is a change in the session directory seen by
    /// inotify: a file made, removed, renamed, closed after writing or
    /// re-permissioned, the directory removed or moved. A process's death
    /// is one: its lock files are open for writing, and the kernel releases
    /// their locks when their last descriptor goes, which inotify reports
    /// (`IN_CLOSE_WRITE`). A round every [`NodeConfig::interval`], as
    /// without the watch, while the last round removed, put back or failed
    /// anything, a death waits for [`DEATH_GRACE`], or inotify was refused.
    /// Liveness is still judged by each round, from the kernel's locks.
    /// Between rounds the store's figures and client connections are
    /// published to the statistics area when they change (looked at every
    /// 100 ms). `stop` is looked at every 100 ms.
    ///
    /// Errors: [`NodeError::NodeLockLost`] (after handing that round's
    /// report) when another node took the session's node lock;
    /// [`NodeError::SessionGone`] (after handing that round's
    /// report) when the session directory was removed or replaced; the node
    /// is still to be shut down.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_tick: impl FnMut(&TickReport),
    ) -> Result<(), NodeError> {
        /// How often `stop` and the store's figures are looked at.
        const LOOK: Duration = Duration::from_millis(100);
        let mut watch = crate::sys::dirwatch::DirWatch::new(self.session.dir());
        // Relaxed: a flag polled each round; nothing is published through it.
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            let r = self.tick();
            on_tick(&r);
            if let Some(why) = r.node_lock_lost {
                return Err(NodeError::NodeLockLost { why });
            }
            if r.session_gone {
                return Err(NodeError::SessionGone {
                    path: self.session.dir().to_owned(),
                });
            }
            let busy = !watch.complete()
                || !self.suspects.is_empty()
                || !r.died.is_empty()
                || r.removed_anything()
                || r.restored.any()
                || r.store_restored.any()
                || !r.cleanup.errors.is_empty()
                || r.cleanup.busy;
            let earliest = crate::deadline_after(start, self.config.interval);
            let due = if busy {
                earliest
            } else {
                crate::deadline_after(start, self.config.idle_interval.max(self.config.interval))
            };
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                let woke = watch.wait(due.min(now + LOOK));
                self.publish_store_changes();
                if woke {
                    // Never two rounds closer than the interval (a burst
                    // of events, or a process making files on purpose):
                    // the round the event calls for waits for it.
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let left = earliest.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::sleep(left.min(LOOK));
                    }
                    break;
                }
            }
        }
        Ok(())
    }

    /// Stops the node: the HTTP endpoint, the store (its arena segment is
    /// removed), the area and the directory entry; then
    /// [`Session::remove_all`] removes this process's lock and whatever
    /// dead processes left, and the session directory when no other process
    /// of it lives. Returns that pass's report.
    pub fn shutdown(mut self) -> Result<CleanupReport, NodeError> {
        self.stop_parts()?;
        Ok(self.session.remove_all()?)
    }

    fn stop_parts(&mut self) -> Result<(), NodeError> {
        if let Some(mut h) = self.http.take() {
            h.stop();
        }
        if let Some(p) = self.pull.take() {
            p.shutdown();
        }
        let store = self.store.take().map(StoreService::shutdown);
        self.area = None;
        self.registration = None;
        // Removed while held, then released: the pass that follows sees
        // no live node.
        self.lock = None;
        if let Some(r) = store {
            r?;
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.http.is_some() || self.store.is_some() {
            let _ = self.stop_parts();
            let _ = self.session.remove_all();
        }
    }
}

/// What `/health` says of each name the `live` workers (id → pid, name)
/// hold that lookups by name cannot take as it is
/// ([`Directory::name_problems`]).
fn name_problems(
    directory: &Directory,
    live: &HashMap<WorkerId, (u32, Option<String>)>,
) -> Vec<String> {
    let entries: Vec<crate::transport::Endpoint> = live
        .iter()
        .filter(|(_, (_, name))| name.is_some())
        .map(|(id, (pid, name))| {
            let mut e = crate::transport::Endpoint::new(*id);
            e.pid = *pid;
            e.name.clone_from(name);
            e
        })
        .collect();
    directory.name_problems(&entries)
}
