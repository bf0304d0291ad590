//! Remote pull: copying a sealed object from another node's store into this
//! node's store over TCP, as Ray's object manager does (`PullManager` asks a
//! node that has the object; that node's `ObjectManager` reads it from its
//! plasma store and sends it in chunks; the receiver creates the object in
//! its own plasma store, writes the chunks into it and seals it).
//!
//! - **Serving side**: a [`PullServer`] (one per node; `shmwire node`
//!   starts it, `docs/node.md`) listens on its own TCP address and answers
//!   each pull from its store through an ordinary [`StoreClient`]: it takes
//!   a reference on the sealed object (a `get` with timeout 0), so the
//!   object can be neither evicted nor freed while it is sent, and writes
//!   the bytes straight from the arena mapping to the socket, at most one
//!   chunk ([`PULL_CHUNK`]) per connection per turn of its mio event loop.
//!   Every connection is a state machine with its own deadline; a silent or
//!   slow puller is dropped alone and never delays another
//!   ([`PullServerConfig`]). When that client breaks (the store cut it
//!   off, its rings were written over, a reply went missing:
//!   [`StoreClient::is_broken`]), the server says so once with the whole
//!   error chain, connects a new client ([`StoreClient::connect_again`]:
//!   at once, then at most every second while that fails) and asks again;
//!   pulls that come while no client works get the *failed* status at
//!   once, and [`PullServer::health`] names the failure meanwhile.
//! - **Pulling side**: [`StoreClient::pull`] connects, reads the reply
//!   header, checks the declared sizes, `create`s the object locally and
//!   receives the bytes straight into the [`ObjectBuilder`]'s view of the
//!   arena (no intermediate buffer), checks the peer sent exactly what it
//!   declared, and seals. On any failure the local object is aborted.
//!
//! # Wire format (little endian)
//!
//! ```text
//! request, puller → server (48 bytes):
//!   magic "SWPQ" | version u32 = 1 | object id (28 bytes) | 12 × 0
//! reply header, server → puller (32 bytes):
//!   magic "SWPA" | version u32 = 1 | status u32 | metadata_len u32 | data_size u64 | 8 × 0
//! then, when status = OK: metadata (metadata_len bytes), data (data_size bytes);
//! then the server closes the connection.
//! ```
//!
//! Statuses: 0 OK, 1 not found (no sealed object of that id now), 2 busy
//! (the server is at its limit of concurrent pulls), 3 failed (a malformed
//! request, or the serving store could not be asked).
//!
//! The transport's framed [`TcpConnection`](crate::transport::TcpConnection)
//! is not used here: its handshake proves membership of one session (its
//! token), while a pull goes between the stores of two nodes, each its own
//! session; and the data needs no framing: its length is declared up front
//! and the stream ends right after it.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::client::{ObjectBuffer, StoreClient};
use super::error::StoreError;
use super::table::{MAX_METADATA_LEN, MAX_OBJECT_SIZE};
use super::Health;
use crate::ids::ObjectId;

/// The pull protocol's version (in every request and reply header).
pub const PULL_PROTOCOL_VERSION: u32 = 1;

/// The largest piece of an object the server writes to one connection per
/// turn of its event loop, and the puller reads per call: 1 MiB.
pub const PULL_CHUNK: usize = 1 << 20;

/// The default limit of pulls a [`PullServer`] serves at once.
pub const DEFAULT_MAX_PULLS: usize = 64;

const REQUEST_MAGIC: [u8; 4] = *b"SWPQ";
const REPLY_MAGIC: [u8; 4] = *b"SWPA";
const REQUEST_LEN: usize = 48;
const HEADER_LEN: usize = 32;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_BUSY: u32 = 2;
const STATUS_FAILED: u32 = 3;

/// The longest a puller sleeps between two tries of a remote that does not
/// have the object (yet) or is busy.
const RETRY_MAX: Duration = Duration::from_millis(50);

/// The least time left before a pull's deadline for which a failed pull
/// waits for its local abort's reply (with less, the abort is only sent),
/// and the longest a pull given no time at all waits for its look at the
/// local store.
const LOCAL_MIN: Duration = Duration::from_millis(50);

/// How long a pull's transfer runs before its pace is judged: it gives its
/// room in the local store up when it is behind half the pace its deadline
/// needs *and* another pull waits for room ([`StoreClient::pull`],
/// `StoreError::PullPreempted`). A connection's first round trips (TCP's
/// slow start) are not judged.
pub const PULL_PACE_GRACE: Duration = Duration::from_millis(100);

/// How often a pull behind its pace asks the local store whether another
/// pull waits for room (`Request::PullWaiting`), at most.
const PACE_ASK_EVERY: Duration = Duration::from_millis(50);

/// The longest a pull that came back from its remote with the answer in
/// hand (header and first bytes) waits for room its local store told it of
/// and then gave to another pull, keeping the remote's connection: until
/// room comes, the deadline, or this — below the serving node's default
/// stall timeout (5 s, [`PullServerConfig::stall_timeout`]), which closes
/// a transfer the puller does not read.
pub const PULL_ANSWER_HOLD: Duration = Duration::from_secs(4);

/// How long a puller that found another local client creating the object
/// waits for that seal before it tries again (the other may have aborted).
const LOCAL_WAIT_SLICE: Duration = Duration::from_millis(500);

/// The longest pause between two looks for another local client's seal
/// (`StoreClient::await_local_seal`).
const LOCAL_POLL_MAX: Duration = Duration::from_millis(20);

/// The first bytes of an object's data a puller receives before it creates
/// the object locally (all of it when smaller): 64 KiB.
pub const PULL_PREFIX: usize = 64 << 10;

fn request_bytes(id: &ObjectId) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC);
    b[4..8].copy_from_slice(&PULL_PROTOCOL_VERSION.to_le_bytes());
    b[8..36].copy_from_slice(id.as_bytes());
    b
}

/// The id a request asks for, if it is a well-formed request.
fn parse_request(b: &[u8; REQUEST_LEN]) -> Option<ObjectId> {
    if b[0..4] != REQUEST_MAGIC
        || b[4..8] != PULL_PROTOCOL_VERSION.to_le_bytes()
        || b[36..].iter().any(|&x| x != 0)
    {
        return None;
    }
    ObjectId::from_bytes(&b[8..36]).ok()
}

fn header_bytes(status: u32, metadata_len: u32, data_size: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..4].copy_from_slice(&REPLY_MAGIC);
    b[4..8].copy_from_slice(&PULL_PROTOCOL_VERSION.to_le_bytes());
    b[8..12].copy_from_slice(&status.to_le_bytes());
    b[12..16].copy_from_slice(&metadata_len.to_le_bytes());
    b[16..24].copy_from_slice(&data_size.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

// ------------------------------------------------------------------ server

/// How a [`PullServer`] runs.
#[derive(Debug, Clone)]
pub struct PullServerConfig {
    /// Where it listens (a node's default: `127.0.0.1:0`, a free port).
    pub listen: SocketAddr,
    /// Pulls served at once (default [`DEFAULT_MAX_PULLS`]). A connection
    /// beyond this displaces the one that has waited longest without
    /// sending its whole request, which gets the *busy* status and is
    /// closed; when every connection is transferring, the newcomer gets
    /// *busy*.
    pub max_pulls: usize,
    /// How long a new connection may take to send its whole request
    /// (default 1 s); a silent one is closed then. Also how long a
    /// connection answered *busy* is given to close first (so the reply is
    /// not lost to a reset).
    pub request_timeout: Duration,
    /// How long a transfer may make no progress (the puller does not read)
    /// before it is closed and the object's reference released (default
    /// 5 s). Progress is 64 KiB more of the reply written, or 64 KiB more
    /// acknowledged by the puller's TCP (a slow puller draining the
    /// kernel's send queue).
    pub stall_timeout: Duration,
    /// Bytes written to one connection per turn of the loop (default
    /// [`PULL_CHUNK`]), so one fast puller does not starve the others.
    pub chunk: usize,
    /// When every one of the `max_pulls` slots is transferring, a newcomer
    /// displaces the slowest transfer that has run for at least
    /// `stall_timeout` at fewer than this many bytes a second (acknowledged
    /// by the puller's TCP; default [`DEFAULT_DISPLACE_BELOW`], 1 MiB/s):
    /// it is closed, its object's reference released, and its puller sees
    /// the transfer cut short. Without it one process reading 64 slow
    /// transfers held every slot for as long as it liked (the attack on
    /// `1563086`: every other node's pull answered *busy*). 0: transfers
    /// are never displaced.
    pub displace_below: u64,
}

/// Default [`PullServerConfig::displace_below`]: 1 MiB/s. Holding every
/// slot then costs a puller 64 MiB/s of reading.
pub const DEFAULT_DISPLACE_BELOW: u64 = 1 << 20;

impl PullServerConfig {
    /// Serves on `listen` with the defaults above.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_pulls: DEFAULT_MAX_PULLS,
            request_timeout: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(5),
            chunk: PULL_CHUNK,
            displace_below: DEFAULT_DISPLACE_BELOW,
        }
    }
}

/// The first pause between two attempts of a [`PullServer`] to connect a
/// new store client after its client broke; it doubles up to
/// [`PULL_RECONNECT_MAX`].
pub const PULL_RECONNECT_FIRST: Duration = Duration::from_millis(10);

/// The longest pause between two attempts to connect a new store client.
pub const PULL_RECONNECT_MAX: Duration = Duration::from_secs(1);

/// Serves pulls of the sealed objects of one store to other nodes (the
/// serving half of Ray's object manager; see the module docs). Runs its own
/// thread with a mio event loop; [`PullServer::shutdown`] or dropping it
/// stops the thread and closes every connection (their references are
/// released).
#[derive(Debug)]
pub struct PullServer {
    addr: SocketAddr,
    health: Health,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_PULL: usize = 2;

impl PullServer {
    /// Listens on `config.listen` and serves the objects of `store` (a
    /// client of the local store; it holds the references of the objects
    /// being sent). Each request costs one `get` with timeout 0 on it
    /// (served from the shared index, or one round trip to the service,
    /// bounded by the client's [`ClientOptions::reply_timeout`](super::ClientOptions)).
    /// A client that breaks is replaced by a new connection to the same
    /// store ([`StoreClient::connect_again`]; see the module docs).
    ///
    /// Every resource the server needs (the listener, its event loop, the
    /// loop's waker and the thread) is made here, so a failure is this
    /// call's error, never a server that started and does not serve.
    ///
    /// Errors: `InvalidConfig` (`max_pulls` or `chunk` 0), `Io` (the
    /// address cannot be bound, the event loop cannot be set up).
    pub fn start(store: StoreClient, config: PullServerConfig) -> Result<Self, StoreError> {
        if config.max_pulls == 0 || config.chunk == 0 {
            return Err(StoreError::InvalidConfig(
                "a pull server needs max_pulls and chunk above 0",
            ));
        }
        let std_listener = std::net::TcpListener::bind(config.listen).map_err(|e| {
            let named = std::io::Error::new(e.kind(), format!("{}: {e}", config.listen));
            StoreError::io("listen for pulls", named)
        })?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| StoreError::io("listen for pulls", e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| StoreError::io("listen for pulls", e))?;
        let mut listener = mio::net::TcpListener::from_std(std_listener);
        let poll = Poll::new().map_err(|e| StoreError::io("pull server event loop", e))?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| StoreError::io("pull server event loop", e))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), WAKER)
                .map_err(|e| StoreError::io("pull server event loop", e))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let health = Health::default();
        let mut server = Server {
            poll,
            listener,
            store: Store {
                client: store,
                outage: None,
                health: health.clone(),
            },
            config,
            pulls: HashMap::new(),
            ready: BTreeSet::new(),
            next: FIRST_PULL,
            accept_failing: false,
            spare: crate::sys::fs::SpareDescriptor::take(),
            accept_more: false,
            repair_at: Instant::now(),
        };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("store pull".into())
            .spawn(move || server.run(&stop2))
            .map_err(|e| StoreError::io("spawn the pull server thread", e))?;
        Ok(Self {
            addr,
            health,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address it listens on (what pullers connect to).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether its store client works, now and later (a handle that
    /// outlives no server state: it just stops changing once the server
    /// stops).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Stops the thread; open transfers are cut (their pullers see a short
    /// transfer) and their references released.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        // Relaxed: the waker's wake-up makes the loop look at the flag; the
        // flag publishes nothing else.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PullServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// One connection being served.
struct Pull {
    stream: mio::net::TcpStream,
    state: PullState,
    /// Closed when this passes without progress.
    deadline: Instant,
    /// Bytes of the reply the puller's TCP had acknowledged when its
    /// deadline last passed ([`Pull::took_more`]).
    acked: usize,
    /// When the connection came, then when its transfer began.
    since: Instant,
    /// Bytes of the reply written when the deadline was last moved by a
    /// write.
    written_mark: usize,
}

/// The least a puller's TCP must acknowledge in a stall timeout for the
/// transfer to count as moving (64 KiB: ≈ 13 KB/s at the default 5 s).
/// Any progress at all would let a puller pin its object (and a slot) for
/// days by reading a kilobyte every few seconds.
const MIN_PROGRESS: usize = 64 << 10;

impl Pull {
    /// Whether the puller's TCP acknowledged at least [`MIN_PROGRESS`]
    /// more of the reply since the last look: a slow puller still reading the kernel's send queue (up
    /// to ≈ 4 MiB, refilled only after a third of it drained) makes no
    /// write possible for longer than the stall timeout, and is not a
    /// stalled one (the attack on `1563086`: every pull at 256 KiB/s failed
    /// part way, "the transfer ended after 4161536 of 8388608 bytes").
    fn took_more(&mut self) -> bool {
        let Some(acked) = self.acknowledged() else {
            return false;
        };
        let more = acked >= self.acked.saturating_add(MIN_PROGRESS);
        self.acked = acked;
        more
    }

    /// Bytes of the reply the puller's TCP acknowledged (what the kernel
    /// took less what it still holds); `None` before the transfer or if
    /// the kernel does not say.
    fn acknowledged(&self) -> Option<usize> {
        let PullState::Send {
            head_sent, sent, ..
        } = &self.state
        else {
            return None;
        };
        let queued = crate::sys::tcp::unacknowledged(self.stream.as_fd()).ok()?;
        Some((head_sent + sent).saturating_sub(queued))
    }
}

enum PullState {
    /// Reading the 48-byte request.
    Request { buf: [u8; REQUEST_LEN], got: usize },
    /// Writing the header (and metadata), then the object's data.
    Send {
        head: Vec<u8>,
        head_sent: usize,
        /// The object (holding a reference); `None` for an error reply.
        data: Option<ObjectBuffer>,
        sent: usize,
    },
    /// A *busy* reply was written and the sending side shut: reads (and
    /// drops) whatever the puller sends until it closes, so that closing
    /// does not reset the connection before the puller read the reply.
    Drain,
}

/// What one step on a connection came to.
enum Step {
    /// The socket would block: wait for its next readiness event.
    Blocked,
    /// Progress, and more to do: step again next turn.
    More,
    /// Finished or failed: close the connection.
    Close,
}

/// The server's store client, replaced by a new connection when it breaks.
struct Store {
    client: StoreClient,
    /// Set while the client is broken and no new one connected yet.
    outage: Option<Outage>,
    health: Health,
}

/// A broken store client not replaced yet.
struct Outage {
    /// When to try connecting again.
    next_try: Instant,
    /// The pause after the next failed try.
    pause: Duration,
    /// A failed try was reported (said once while the outage lasts).
    said: bool,
    /// What broke the client (with its causes).
    broke: String,
}

impl Store {
    /// The sealed object `id` (with a reference), `None` when there is no
    /// such object now. A client found broken by this call is replaced
    /// at once and the call made again on the new one; while none can be
    /// connected, the error.
    fn get(&mut self, id: ObjectId) -> Result<Option<ObjectBuffer>, StoreError> {
        self.reconnect_if_due();
        if let Some(o) = &self.outage {
            return Err(StoreError::ConnectionBroken {
                cause: o.broke.clone(),
            });
        }
        match self.client.get(&[id], Duration::ZERO) {
            Ok(mut v) => Ok(v.pop().flatten()),
            Err(e) if self.client.is_broken() => {
                let why = crate::error_chain(&e);
                tracing::warn!(
                    error = %why,
                    "store pull: the store client broke; connecting a new one"
                );
                self.health.set(Some(format!(
                    "its store client broke (connecting a new one): {why}"
                )));
                self.outage = Some(Outage {
                    next_try: Instant::now(),
                    pause: PULL_RECONNECT_FIRST,
                    said: false,
                    broke: why,
                });
                self.reconnect_if_due();
                if self.outage.is_some() {
                    return Err(e);
                }
                self.client
                    .get(&[id], Duration::ZERO)
                    .map(|mut v| v.pop().flatten())
            }
            Err(e) => Err(e),
        }
    }

    /// Tries to connect a new client if the old one is broken and the
    /// pause since the last try is over.
    fn reconnect_if_due(&mut self) {
        let Some(o) = &mut self.outage else { return };
        let now = Instant::now();
        if now < o.next_try {
            return;
        }
        match self.client.connect_again() {
            Ok(c) => {
                // The old client goes once the buffers of its transfers
                // do; its connection's references with it.
                self.client = c;
                self.outage = None;
                self.health.set(None);
                tracing::info!("store pull: connected to the store again");
            }
            Err(e) => {
                // `/health` names the break and the latest failed try (the
                // cause may have changed since: descriptors, then the
                // store's socket).
                self.health.set(Some(format!(
                    "its store client broke (connecting a new one): {}; the last try failed: {}",
                    o.broke,
                    crate::error_chain(&e)
                )));
                if !o.said {
                    tracing::warn!(
                        error = %crate::error_chain(&e),
                        "store pull: connecting a new store client failed; trying again at most \
                         every second (said once while it lasts)"
                    );
                    o.said = true;
                }
                o.next_try = crate::deadline_after(now, o.pause);
                o.pause = (o.pause * 2).min(PULL_RECONNECT_MAX);
            }
        }
    }

    /// How long the loop may sleep before the next try is due.
    fn due_in(&self, now: Instant) -> Option<Duration> {
        self.outage
            .as_ref()
            .map(|o| o.next_try.saturating_duration_since(now))
    }
}

struct Server {
    poll: Poll,
    listener: mio::net::TcpListener,
    store: Store,
    config: PullServerConfig,
    pulls: HashMap<usize, Pull>,
    /// Connections that may make progress without a new event (edge
    /// triggered readiness not yet drained).
    ready: BTreeSet<usize>,
    next: usize,
    /// An accept failed (e.g. out of descriptors) with connections still
    /// queued: the edge-triggered listener reports no new event for them,
    /// so every turn tries again until the queue is empty.
    accept_failing: bool,
    /// Given up when `accept` fails for want of descriptors with no idle
    /// connection to close, so that the waiting puller is still taken.
    spare: crate::sys::fs::SpareDescriptor,
    /// The last turn took its most (`max_pulls`) with connections still
    /// queued: the next turn comes at once and accepts again.
    accept_more: bool,
    /// When to put back the store client's reference slots next
    /// ([`StoreClient::repair_reference_slots`], every second).
    repair_at: Instant,
}

impl Server {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        // Relaxed: see `PullServer::stop_thread`.
        while !stop.load(Ordering::Relaxed) {
            // The spare back as soon as the connection it was given up for
            // closed (last turn), not at the next caller's accept: by then
            // the store may have taken the freed descriptor (the attack on
            // `a6baac3`: the next pull at the limit went unanswered).
            self.spare.retake();
            // A broken store client is replaced when its pause is over,
            // also while no pull comes.
            self.store.reconnect_if_due();
            // This client lives as long as the node: reference slots
            // another process wrote into are put back (else every object
            // they raised stays after its delete, and the store fills).
            if Instant::now() >= self.repair_at {
                self.repair_at = Instant::now() + crate::transport::LISTENER_CHECK_INTERVAL;
                if self.store.outage.is_none() {
                    self.store.client.repair_reference_slots();
                }
            }
            let now = Instant::now();
            let timeout = if self.ready.is_empty() && !self.accept_more {
                self.pulls
                    .values()
                    .map(|p| p.deadline.saturating_duration_since(now))
                    .chain(self.store.due_in(now))
                    .min()
                    .unwrap_or(Duration::from_millis(100))
                    .min(Duration::from_millis(100))
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "store pull: poll failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            // One accept turn at most: for new callers, or for those the
            // last turn left queued.
            if self.accept_failing
                || self.accept_more
                || events.iter().any(|ev| ev.token() == LISTENER)
            {
                self.accept();
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => {}
                    WAKER => {}
                    Token(t) => {
                        if self.pulls.contains_key(&t) {
                            self.ready.insert(t);
                        }
                    }
                }
            }
            // One step per ready connection per turn: fairness between
            // pullers.
            let turn: Vec<usize> = self.ready.iter().copied().collect();
            for t in turn {
                let Some(p) = self.pulls.get_mut(&t) else {
                    self.ready.remove(&t);
                    continue;
                };
                match step(
                    p,
                    &mut self.store,
                    self.config.chunk,
                    self.config.stall_timeout,
                ) {
                    Step::Blocked => {
                        self.ready.remove(&t);
                    }
                    Step::More => {}
                    Step::Close => self.close(t),
                }
            }
            let now = Instant::now();
            let stall = self.config.stall_timeout;
            let late: Vec<usize> = self
                .pulls
                .iter_mut()
                .filter(|(_, p)| p.deadline <= now)
                .filter_map(|(t, p)| {
                    if p.took_more() {
                        p.deadline = crate::deadline_after(now, stall);
                        return None;
                    }
                    Some(*t)
                })
                .collect();
            for t in late {
                tracing::debug!(pull = t, "store pull: a puller made no progress in time");
                self.close(t);
            }
        }
        // Dropping the connections releases their references.
        self.pulls.clear();
    }

    fn close(&mut self, t: usize) {
        self.ready.remove(&t);
        if let Some(mut p) = self.pulls.remove(&t) {
            let _ = self.poll.registry().deregister(&mut p.stream);
        }
    }

    /// The connection to give way for a newcomer among those still reading
    /// their request: the oldest that has sent nothing, else the oldest
    /// with part of one — but never one whose bytes wait unread in its
    /// socket (accepted in this burst, not read yet: its event will serve
    /// it). `None` if there is none.
    fn oldest_waiting(&self) -> Option<usize> {
        let mut waiting: Vec<(Instant, usize, usize)> = self
            .pulls
            .iter()
            .filter_map(|(t, p)| match p.state {
                PullState::Request { got, .. } => Some((p.deadline, *t, got)),
                _ => None,
            })
            .collect();
        waiting.sort_unstable();
        let unread = |t: &usize| {
            self.pulls
                .get(t)
                .is_some_and(|p| p.stream.peek(&mut [0u8; 1]).is_ok_and(|n| n > 0))
        };
        let silent = waiting.iter().find(|(_, t, got)| *got == 0 && !unread(t));
        silent
            .or_else(|| waiting.iter().find(|(_, t, _)| !unread(t)))
            .map(|&(_, t, _)| t)
    }

    /// Answers *busy* to the connection that has waited longest without
    /// sending its whole request (and drains it, or closes it when
    /// `draining` already fills the drain set). `false` when every
    /// connection has sent its request (transfers are never displaced).
    fn displace_oldest_waiting(&mut self, draining: usize) -> bool {
        let Some(t) = self.oldest_waiting() else {
            return false;
        };
        if draining >= self.config.max_pulls {
            self.close(t);
            return true;
        }
        if let Some(p) = self.pulls.get_mut(&t) {
            let _ = p.stream.write(&header_bytes(STATUS_BUSY, 0, 0));
            let _ = p.stream.shutdown(Shutdown::Write);
            p.state = PullState::Drain;
            p.deadline = crate::deadline_after(Instant::now(), self.config.request_timeout);
        }
        self.ready.insert(t);
        true
    }

    /// Closes the slowest transfer that has run for at least the stall
    /// timeout at fewer than `displace_below` bytes a second, if any
    /// ([`PullServerConfig::displace_below`]).
    fn displace_slowest_transfer(&mut self) -> bool {
        let below = self.config.displace_below as f64;
        let now = Instant::now();
        let slowest = self
            .pulls
            .iter()
            .filter_map(|(t, p)| {
                let ran = now.saturating_duration_since(p.since);
                if ran < self.config.stall_timeout {
                    return None;
                }
                let rate = p.acknowledged()? as f64 / ran.as_secs_f64();
                (rate < below).then_some((rate, *t))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((rate, t)) = slowest else {
            return false;
        };
        tracing::debug!(
            pull = t,
            bytes_per_s = rate,
            "store pull: the slowest transfer gives way to a newcomer"
        );
        self.close(t);
        true
    }

    /// Closes the connection that has waited longest for its request, else
    /// the oldest one draining after a *busy* (neither holds an object);
    /// `false` if there is none.
    fn close_oldest_idle(&mut self) -> bool {
        let oldest_draining = || {
            self.pulls
                .iter()
                .filter(|(_, p)| matches!(p.state, PullState::Drain))
                .min_by_key(|(_, p)| p.deadline)
                .map(|(t, _)| *t)
        };
        match self.oldest_waiting().or_else(oldest_draining) {
            Some(t) => {
                self.close(t);
                true
            }
            None => false,
        }
    }

    /// Accepts the waiting connections (the listener is edge triggered),
    /// at most `max_pulls` in one turn: more would only displace
    /// connections accepted in the same turn, and a flood re-opening
    /// connections as fast as they are accepted would hold the loop for
    /// good. With more waiting, `accept_more` makes the next turn come at
    /// once and accept again.
    fn accept(&mut self) {
        self.accept_more = false;
        for _ in 0..self.config.max_pulls.max(1) {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_failing = false;
                    return;
                }
                // Out of descriptors before the cap: the connection that
                // has waited longest for its request (else the oldest one
                // draining) is closed, giving its descriptor to the next,
                // as at the cap; silent connections would otherwise take
                // every descriptor under a low limit.
                Err(e)
                    if crate::sys::fs::is_out_of_descriptors(&e)
                        && crate::sys::poll::connection_waiting(self.listener.as_fd())
                        && (self.close_oldest_idle() || self.spare.give_up()) =>
                {
                    continue
                }
                Err(e) => {
                    // E.g. out of file descriptors with nothing to close:
                    // the connection stays queued; tried again every turn
                    // (at most 100 ms apart), said once while it lasts.
                    if !self.accept_failing {
                        tracing::warn!(error = %e, "store pull: accept failed");
                    }
                    self.accept_failing = true;
                    return;
                }
            };
            let draining = self
                .pulls
                .values()
                .filter(|p| matches!(p.state, PullState::Drain))
                .count();
            let serving = self.pulls.len() - draining;
            let mut busy = serving >= self.config.max_pulls;
            if busy {
                // At the cap, the connection that has waited longest for
                // its request gives way (answered *busy*), as the HTTP
                // endpoint does: silent connections reopened as they time
                // out would otherwise keep every real puller out; else the
                // slowest long transfer (`displace_below`).
                busy = !self.displace_oldest_waiting(draining) && !self.displace_slowest_transfer();
            }
            if busy {
                // A fresh socket's send buffer takes 32 bytes at once; if it
                // does not, the puller just sees the connection close.
                let _ = stream.write(&header_bytes(STATUS_BUSY, 0, 0));
                let _ = stream.shutdown(Shutdown::Write);
                if draining >= self.config.max_pulls {
                    // Too many to wait for as well: close at once.
                    continue;
                }
            }
            let _ = stream.set_nodelay(true);
            let t = self.next;
            self.next = self.next.wrapping_add(1).max(FIRST_PULL);
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(t),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!(error = %e, "store pull: register failed");
                continue;
            }
            self.pulls.insert(
                t,
                Pull {
                    stream,
                    state: if busy {
                        PullState::Drain
                    } else {
                        PullState::Request {
                            buf: [0; REQUEST_LEN],
                            got: 0,
                        }
                    },
                    deadline: crate::deadline_after(Instant::now(), self.config.request_timeout),
                    acked: 0,
                    since: Instant::now(),
                    written_mark: 0,
                },
            );
            self.ready.insert(t);
        }
        self.accept_more = crate::sys::poll::connection_waiting(self.listener.as_fd());
    }
}

/// The reply to a complete request: the header (+ metadata) and the object.
fn answer(store: &mut Store, req: &[u8; REQUEST_LEN]) -> (Vec<u8>, Option<ObjectBuffer>) {
    let Some(id) = parse_request(req) else {
        return (header_bytes(STATUS_FAILED, 0, 0).to_vec(), None);
    };
    match store.get(id) {
        Ok(got) => match got {
            Some(b) => {
                let meta = b.metadata();
                // The store bounds metadata at 64 KiB, well inside a u32.
                let Ok(meta_len) = u32::try_from(meta.len()) else {
                    return (header_bytes(STATUS_FAILED, 0, 0).to_vec(), None);
                };
                let mut head = Vec::with_capacity(HEADER_LEN + meta.len());
                head.extend_from_slice(&header_bytes(STATUS_OK, meta_len, b.len() as u64));
                head.extend_from_slice(meta);
                (head, Some(b))
            }
            None => (header_bytes(STATUS_NOT_FOUND, 0, 0).to_vec(), None),
        },
        Err(e) => {
            // A broken client was said once (`Store::get`); the pulls
            // that come before a new one connects are not logged each.
            if store.outage.is_none() {
                tracing::warn!(
                    error = %crate::error_chain(&e),
                    object = %id,
                    "store pull: the local store failed"
                );
            }
            (header_bytes(STATUS_FAILED, 0, 0).to_vec(), None)
        }
    }
}

/// Advances one connection by at most one read of the request or one
/// chunk of writing.
fn step(p: &mut Pull, store: &mut Store, chunk: usize, stall: Duration) -> Step {
    match &mut p.state {
        PullState::Drain => {
            // A bounded amount per turn: a flooding peer does not hold
            // the loop.
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                match p.stream.read(&mut sink) {
                    Ok(0) => return Step::Close,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Blocked,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                }
            }
            Step::More
        }
        PullState::Request { buf, got } => {
            while *got < REQUEST_LEN {
                match p.stream.read(&mut buf[*got..]) {
                    Ok(0) => return Step::Close,
                    Ok(n) => *got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Blocked,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                }
            }
            let (head, data) = answer(store, buf);
            p.state = PullState::Send {
                head,
                head_sent: 0,
                data,
                sent: 0,
            };
            p.since = Instant::now();
            p.deadline = crate::deadline_after(p.since, stall);
            Step::More
        }
        PullState::Send {
            head,
            head_sent,
            data,
            sent,
        } => {
            let r = if *head_sent < head.len() {
                p.stream.write(&head[*head_sent..]).map(|n| {
                    *head_sent += n;
                })
            } else {
                let bytes: &[u8] = data.as_deref().unwrap_or(&[]);
                if *sent >= bytes.len() {
                    // Everything is out: end the stream (the puller checks
                    // nothing follows the data).
                    let _ = p.stream.shutdown(Shutdown::Write);
                    return Step::Close;
                }
                let end = bytes.len().min(sent.saturating_add(chunk));
                p.stream.write(&bytes[*sent..end]).map(|n| {
                    *sent += n;
                })
            };
            match r {
                Ok(()) => {
                    // Progress only by `MIN_PROGRESS` at a time: a puller
                    // with a tiny window lets a few KiB be written every
                    // few seconds (the re-attack on `9192950`: a 1 KB/s
                    // puller was never cut off).
                    if *head_sent + *sent >= p.written_mark + MIN_PROGRESS {
                        p.written_mark = *head_sent + *sent;
                        p.deadline = crate::deadline_after(Instant::now(), stall);
                    }
                    Step::More
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Step::Blocked,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Step::More,
                Err(_) => Step::Close,
            }
        }
    }
}

// ------------------------------------------------------------------ puller

/// What one try of a pull came to.
enum Attempt {
    Done(ObjectBuffer),
    /// Worth trying again while time is left; this error if not.
    Retry(StoreError),
    /// Other pulls hold the local store's pull capacity (the error): worth
    /// trying again once a create of this many bytes has room.
    Full(StoreError, u64),
}

/// The time left until `deadline`, or `PullTimedOut`.
fn left(
    id: ObjectId,
    from: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Result<Duration, StoreError> {
    let l = deadline.saturating_duration_since(Instant::now());
    if l.is_zero() {
        return Err(StoreError::PullTimedOut { id, from, timeout });
    }
    Ok(l)
}

/// A local store call's failure, as the pull reports it: a reply that
/// did not come before the pull's deadline is the pull's own timeout
/// (naming the object and the remote), not the store client's generic one.
/// The client's connection is unusable after it ([`StoreClient::is_broken`]:
/// connect again).
fn local_fail(e: StoreError, id: ObjectId, from: SocketAddr, timeout: Duration) -> StoreError {
    match e {
        StoreError::TimedOut(_) => StoreError::PullTimedOut { id, from, timeout },
        e => e,
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn is_cut(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// One pull connection, every read bounded by the pull's deadline.
struct Wire<'a> {
    stream: TcpStream,
    id: ObjectId,
    from: SocketAddr,
    timeout: Duration,
    deadline: Instant,
    cancel: Cancel<'a>,
    /// Set once the local object exists: the transfer's pace is judged.
    pace: Option<Pace<'a>>,
}

impl Wire<'_> {
    /// One read of at most `buf.len()` bytes; `Ok(0)` at the end of the
    /// stream.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFail> {
        loop {
            let l = left(self.id, self.from, self.timeout, self.deadline).map_err(ReadFail::Err)?;
            self.cancel
                .check(self.id, self.from)
                .map_err(ReadFail::Err)?;
            // With its pace judged, the transfer blocks at most a slice at
            // a time, so that a remote sending nothing is judged too.
            let wait = match &mut self.pace {
                Some(p) => {
                    p.check((self.id, self.from), self.timeout, self.deadline)
                        .map_err(ReadFail::Err)?;
                    l.min(CANCEL_SLICE)
                }
                None => self.cancel.slice(l),
            };
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(ReadFail::Io)?;
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(ReadFail::Io(e)),
            }
        }
    }

    /// Fills `buf`; `Ok(false)` when the stream ended first.
    fn read_full(&mut self, buf: &mut [u8]) -> Result<bool, ReadFail> {
        let mut got = 0;
        while got < buf.len() {
            match self.read(&mut buf[got..])? {
                0 => return Ok(false),
                n => got += n,
            }
        }
        Ok(true)
    }

    fn protocol(&self, why: &'static str) -> StoreError {
        StoreError::PullProtocol {
            id: self.id,
            from: self.from,
            why,
        }
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::PullIo {
            id: self.id,
            from: self.from,
            source,
        }
    }
}

/// A transfer's pace: from the local object's create (`since`) to the
/// pull's deadline, `size` bytes are due; `received` have come.
struct Pace<'a> {
    store: &'a StoreClient,
    since: Instant,
    size: u64,
    received: u64,
    /// When it last asked the local store whether a pull waits.
    asked: Option<Instant>,
}

impl Pace<'_> {
    /// `PullPreempted` when, after [`PULL_PACE_GRACE`], fewer than half the
    /// bytes due by now came (at the even pace that ends at the deadline)
    /// and the local store says another pull waits for room it does not
    /// have (asked at most every [`PACE_ASK_EVERY`]): a remote sending
    /// slowly or not at all does not hold the pull capacity to its
    /// deadline while others wait (the attack on `964b4bb`, `wcap`).
    fn check(
        &mut self,
        (id, from): (ObjectId, SocketAddr),
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < PULL_PACE_GRACE
            || self
                .asked
                .is_some_and(|a| now.saturating_duration_since(a) < PACE_ASK_EVERY)
        {
            return Ok(());
        }
        let window = deadline.saturating_duration_since(self.since);
        let behind = u128::from(self.received) * 2 * window.as_nanos()
            < u128::from(self.size) * elapsed.as_nanos();
        if !behind {
            return Ok(());
        }
        self.asked = Some(now);
        let l = deadline.saturating_duration_since(now).max(LOCAL_MIN);
        let waiting = self
            .store
            .pull_waiting_within(l)
            .map_err(|e| local_fail(e, id, from, timeout))?;
        if waiting {
            return Err(StoreError::PullPreempted {
                id,
                from,
                declared: self.size,
                received: self.received,
            });
        }
        Ok(())
    }
}

/// The flag that cancels a pull ([`StoreClient::pull_into_cancellable`]),
/// if it has one.
#[derive(Clone, Copy)]
struct Cancel<'a>(Option<&'a AtomicBool>);

impl Cancel<'_> {
    /// `PullCancelled` once the flag is set.
    fn check(self, id: ObjectId, from: SocketAddr) -> Result<(), StoreError> {
        // Relaxed: a request to stop soon, not a hand-over of data (the
        // canceller reads the pull's outcome under its own lock).
        match self.0 {
            Some(c) if c.load(Ordering::Relaxed) => Err(StoreError::PullCancelled { id, from }),
            _ => Ok(()),
        }
    }

    /// The longest one blocking wait on the socket may take with `left`
    /// before the deadline: all of it, or at most [`CANCEL_SLICE`] when
    /// the pull can be cancelled (the flag is checked between waits).
    fn slice(self, left: Duration) -> Duration {
        match self.0 {
            Some(_) => left.min(CANCEL_SLICE),
            None => left,
        }
    }
}

/// How soon a cancelled pull notices: the longest a cancellable pull
/// blocks on its socket (connecting, reading) or sleeps between two tries
/// without looking at its flag.
const CANCEL_SLICE: Duration = Duration::from_millis(50);

/// A failed read: the pull's own error (timed out) or the socket's.
enum ReadFail {
    Err(StoreError),
    Io(io::Error),
}

impl StoreClient {
    /// Gets object `id`, pulling it from the node whose object endpoint
    /// ([`PullServer`], `shmwire node`'s `objects` address) is `from` when
    /// this store does not have it: Ray's object manager pull. Returns the
    /// local copy, which is an ordinary object of this store from then on
    /// (`get`, `contains`, `delete`, eviction and notifications treat it
    /// like any other); the returned buffer holds a reference to it.
    ///
    /// `timeout` bounds the whole call (connecting, waiting for the remote
    /// to have the object sealed, the transfer). While the remote answers
    /// *not found* (not created or not sealed yet) or *busy*, the pull is
    /// tried again, 1 ms apart at first and at most 50 ms apart, until
    /// `timeout`. If another client of this store is pulling (or creating)
    /// the same object, this call waits for its seal instead (looking every
    /// 1 ms, doubling to 20 ms, and trying the pull again every 500 ms in
    /// case that client gave up), without holding this client's connection
    /// — which its clones share — between looks.
    ///
    /// The remote's declared sizes are checked before anything is created
    /// (metadata at most 64 KiB, data at most the store's object limit; a
    /// local arena too small gives `StoreFull` as `create` does), and the
    /// bytes are received straight into the new object's shared memory. A
    /// remote that sends fewer or more bytes than it declared, or garbage,
    /// fails the pull, and the local object is aborted: nothing half
    /// written is ever visible.
    ///
    /// Errors (each names the object and the remote): `RemoteUnreachable`,
    /// `RemoteNotFound` and `RemoteBusy` (still so at the deadline),
    /// `RemoteFailed`, `PullTruncated` (the stream ended or was reset
    /// early, e.g. the serving node died), `PullOverrun`, `PullProtocol`,
    /// `PullTimedOut`, `PullIo`; `PullsFull` (other pulls held the local
    /// store's pull capacity until the deadline: the local object is
    /// created only while the bytes being pulled, this one's included,
    /// stay within [`StoreConfig::pull_capacity`](super::StoreConfig::pull_capacity),
    /// or when no other pull is in progress; pulls refused room are let
    /// in in the order they came); `PullPreempted` (the transfer fell
    /// behind half the pace that ends at the deadline, after its first
    /// [`PULL_PACE_GRACE`], while another pull waited for room: it gave
    /// its room up rather than hold the pull capacity to its deadline);
    /// and the local store's
    /// `create` errors (`StoreFull`, `ObjectInUse`, `ObjectTooLarge`, …)
    /// and connection errors.
    ///
    /// Every call to the local store the pull makes (the first look, the
    /// `create`, the seal or abort, the wait for another client's copy or
    /// for room) waits at most the time left before the deadline — but at
    /// least 50 ms, so that a live store's answer is never given up on —
    /// not the client's
    /// [`reply_timeout`](super::ClientOptions::reply_timeout): a local
    /// service that does not answer in time (stopped, overloaded) fails
    /// the pull with `PullTimedOut` at the deadline (at most 50 ms after
    /// it). Its late reply would
    /// answer the client's next request, so the client is unusable from
    /// then on ([`StoreClient::is_broken`]; later calls fail
    /// `ConnectionBroken` at once): connect again
    /// ([`StoreClient::connect_again`]), as a worker does by itself. An
    /// object the pull created meanwhile is aborted by the service: by the
    /// `Drop` the pull queues on the connection, or when the broken client
    /// is dropped (the service aborts a gone client's unsealed objects).
    pub fn pull(
        &self,
        id: ObjectId,
        from: SocketAddr,
        timeout: Duration,
    ) -> Result<ObjectBuffer, StoreError> {
        self.pull_with_progress(id, from, timeout, |_, _| {})
    }

    /// [`StoreClient::pull`], calling `progress(received, total)` (bytes
    /// of data) after each read of the transfer, at most [`PULL_CHUNK`]
    /// bytes apart; the transfer waits while it runs.
    pub fn pull_with_progress(
        &self,
        id: ObjectId,
        from: SocketAddr,
        timeout: Duration,
        progress: impl FnMut(u64, u64),
    ) -> Result<ObjectBuffer, StoreError> {
        self.pull_as(id, id, from, timeout, Cancel(None), progress)
    }

    /// [`StoreClient::pull`], the local copy kept under id `local` instead
    /// of `id` (looked for, made and sealed as `local`; errors name `id`):
    /// a copy whose id says where it came from (a worker keeps each
    /// other-node argument under an id derived from the object and the
    /// endpoint it named, so that two claimed sources of one id never
    /// share a copy).
    pub fn pull_into(
        &self,
        id: ObjectId,
        from: SocketAddr,
        local: ObjectId,
        timeout: Duration,
    ) -> Result<ObjectBuffer, StoreError> {
        self.pull_as(id, local, from, timeout, Cancel(None), |_, _| {})
    }

    /// [`StoreClient::pull_into`] that ends early, with `PullCancelled`,
    /// once `cancel` is set (noticed within 50 ms: the pull blocks on its
    /// socket, and sleeps between tries, at most that long at a time; a
    /// call to the local store in progress ends first). A copy created
    /// meanwhile is aborted, as on any failure. For a worker, whose pulls
    /// end when every task waiting for them is gone.
    pub(crate) fn pull_into_cancellable(
        &self,
        id: ObjectId,
        from: SocketAddr,
        local: ObjectId,
        timeout: Duration,
        cancel: &AtomicBool,
    ) -> Result<ObjectBuffer, StoreError> {
        self.pull_as(id, local, from, timeout, Cancel(Some(cancel)), |_, _| {})
    }

    fn pull_as(
        &self,
        id: ObjectId,
        local_id: ObjectId,
        from: SocketAddr,
        timeout: Duration,
        cancel: Cancel<'_>,
        progress: impl FnMut(u64, u64),
    ) -> Result<ObjectBuffer, StoreError> {
        let mut queued = false;
        let pulled = self.pull_queued(id, local_id, from, timeout, cancel, progress, &mut queued);
        // A pull that queued for room and failed leaves the queue at once:
        // the room it waited for, or was told of, goes to the pulls behind
        // it now, not when its turn runs out (`PULL_QUEUE_TTL`). (A pull
        // that created its object left the queue then.)
        if pulled.is_err() && queued {
            self.pull_leave(local_id);
        }
        pulled
    }

    /// [`StoreClient::pull_as`]; `queued` is set once the local store
    /// refused the pull room (it queued it).
    #[allow(clippy::too_many_arguments)]
    fn pull_queued(
        &self,
        id: ObjectId,
        local_id: ObjectId,
        from: SocketAddr,
        timeout: Duration,
        cancel: Cancel<'_>,
        mut progress: impl FnMut(u64, u64),
        queued: &mut bool,
    ) -> Result<ObjectBuffer, StoreError> {
        let deadline = crate::deadline_after(Instant::now(), timeout);
        let mut pause = Duration::from_millis(1);
        // Why the last try was not enough: what the caller hears if time
        // runs out before the next one gets an answer.
        let mut last: Option<StoreError> = None;
        // Whether the local store told this pull of room (it waited for
        // some): its remote is being asked again.
        let mut told_of_room = false;
        loop {
            // Every local call is bounded by the time left (not by the
            // client's reply timeout), and running out of it is this
            // pull's timeout.
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                if let Some(e) = last.take() {
                    return Err(e);
                }
            }
            // (A pull with no time at all still looks here, for a moment.)
            let local = self
                .get_before(&[local_id], Duration::ZERO, l.max(LOCAL_MIN))
                .map_err(|e| local_fail(e, id, from, timeout))?;
            if let Some(b) = local.into_iter().next().flatten() {
                return Ok(b);
            }
            cancel.check(id, from)?;
            let at = (timeout, deadline, cancel);
            let err = match self.pull_once((id, local_id), from, at, told_of_room, &mut progress) {
                Ok(Attempt::Done(b)) => return Ok(b),
                Ok(Attempt::Retry(e)) => e,
                // The remote's connection is let go (it holds one of the
                // remote's slots, the attack on `0642c79`); the remote is
                // asked again once the local store has room.
                Ok(Attempt::Full(e, size)) => {
                    *queued = true;
                    let at = (timeout, deadline, cancel);
                    self.await_pull_room(size, e, (id, local_id, from), at)?;
                    told_of_room = true;
                    pause = Duration::from_millis(1);
                    continue;
                }
                // (Unless the local store was what did not answer: then
                // the pull's timeout says so, and the client is broken.)
                Err(StoreError::PullTimedOut { .. }) if last.is_some() && !self.is_broken() => {
                    return Err(last.take().expect("checked"))
                }
                Err(e) => return Err(e),
            };
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                return Err(err);
            }
            last = Some(err);
            std::thread::sleep(cancel.slice(pause.min(l)));
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// One try: asks the remote, then creates the local object and
    /// receives it. `told_of_room`: the local store told this pull of room
    /// before (see the create below).
    fn pull_once(
        &self,
        (id, local_id): (ObjectId, ObjectId),
        from: SocketAddr,
        (timeout, deadline, cancel): (Duration, Instant, Cancel<'_>),
        told_of_room: bool,
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<Attempt, StoreError> {
        // In slices when the pull can be cancelled (each slice a new try).
        let stream = loop {
            let l = left(id, from, timeout, deadline)?;
            cancel.check(id, from)?;
            let slice = cancel.slice(l);
            match TcpStream::connect_timeout(&from, slice) {
                Ok(s) => break s,
                Err(e) if is_timeout(&e) && slice < l => {}
                Err(e) if is_timeout(&e) => {
                    return Err(StoreError::PullTimedOut { id, from, timeout })
                }
                Err(source) => return Err(StoreError::RemoteUnreachable { id, from, source }),
            }
        };
        let mut w = Wire {
            stream,
            id,
            from,
            timeout,
            deadline,
            cancel,
            pace: None,
        };
        let _ = w.stream.set_nodelay(true);
        let l = left(id, from, timeout, deadline)?;
        w.stream
            .set_write_timeout(Some(l))
            .and_then(|()| w.stream.write_all(&request_bytes(&id)))
            .map_err(|e| {
                if is_timeout(&e) {
                    StoreError::PullTimedOut { id, from, timeout }
                } else {
                    w.io(e)
                }
            })?;
        let fail = |w: &Wire, f: ReadFail| match f {
            ReadFail::Err(e) => e,
            ReadFail::Io(e) => w.io(e),
        };
        let mut head = [0u8; HEADER_LEN];
        match w.read_full(&mut head) {
            Ok(true) => {}
            Ok(false) => return Err(w.protocol("the remote closed before its reply header")),
            Err(ReadFail::Io(e)) if is_cut(&e) => {
                return Err(w.protocol("the remote closed before its reply header"))
            }
            Err(f) => return Err(fail(&w, f)),
        }
        if head[0..4] != REPLY_MAGIC {
            return Err(w.protocol("the reply header has the wrong magic"));
        }
        if head[4..8] != PULL_PROTOCOL_VERSION.to_le_bytes() {
            return Err(w.protocol("the reply has another protocol version"));
        }
        if head[24..].iter().any(|&b| b != 0) {
            return Err(w.protocol("the reply header's reserved bytes are not zero"));
        }
        let (status, meta_len, size) = (u32_at(&head, 8), u32_at(&head, 12), u64_at(&head, 16));
        match status {
            STATUS_OK => {}
            STATUS_NOT_FOUND => return Ok(Attempt::Retry(StoreError::RemoteNotFound { id, from })),
            STATUS_BUSY => return Ok(Attempt::Retry(StoreError::RemoteBusy { id, from })),
            STATUS_FAILED => return Err(StoreError::RemoteFailed { id, from }),
            _ => return Err(w.protocol("the reply has an unknown status")),
        }
        if meta_len as usize > MAX_METADATA_LEN {
            return Err(w.protocol("the declared metadata is longer than 64 KiB"));
        }
        if size > MAX_OBJECT_SIZE {
            return Err(StoreError::ObjectTooLarge {
                id,
                size,
                max: MAX_OBJECT_SIZE,
            });
        }
        let mut meta = vec![0u8; meta_len as usize];
        match w.read_full(&mut meta) {
            Ok(true) => {}
            Ok(false) => {
                return Err(StoreError::PullTruncated {
                    id,
                    from,
                    declared: size,
                    received: 0,
                })
            }
            Err(f) => return Err(fail(&w, f)),
        }
        // The first bytes of the data before anything is created here: a
        // remote that declares a size and sends nothing holds no room in
        // this store, nor any of its pull capacity (the attack on
        // `964b4bb`: one silent endpoint declaring 60 MiB evicted a 64 MiB
        // store's cached objects and failed local puts for its pull's
        // whole timeout, and a caller naming a dozen such endpoints failed
        // every other caller's pulls `PullsFull`).
        let mut prefix = vec![0u8; PULL_PREFIX.min(size as usize)];
        fill(&mut w, &mut prefix, 0, size, &mut |_, _| {})?;
        let local = |e| local_fail(e, id, from, timeout);
        // Bounded by what is left, but at least `LOCAL_MIN`: a local call
        // that times out breaks the connection, which clones of this
        // client share (the attack on `0642c79`: pulls with ≈ 100 ms left
        // broke it under load).
        let mut held = false;
        let builder = loop {
            let l = left(id, from, timeout, deadline)?.max(LOCAL_MIN);
            // (The pull's time left: past its deadline, and a grace, the
            // object no longer counts against the pull capacity, so a
            // puller stopped mid-transfer holds no room others wait for.)
            let pull_left = deadline.saturating_duration_since(Instant::now());
            match self.create_within(local_id, size, &meta, Some(pull_left), l) {
                Ok(b) => break b,
                // Told of room, this pull asked its remote again; the
                // answer came after the room had gone to another pull (a
                // turn reserves it `PULL_QUEUE_TTL`): the pull waits for
                // room again with the answer in hand — its place in the
                // queue is kept (`PULL_GRANT_TTL`) — instead of letting the
                // remote go and asking it once more, which a remote that
                // answers in 300 ms lost the same way every time beside
                // pulls back to back (the attack on `2dd8bde`). Until room
                // comes, the deadline, or `PULL_ANSWER_HOLD`: while it
                // asks, it is first in line, and the room freed next is
                // its. (A hold of at most `PULL_GRANT_TTL`, 1 s, starved
                // beside transfers longer than that: the room lapsed again
                // while the remote was asked anew, the attack on
                // `b2a9833`.) The remote's slot is held meanwhile.
                Err(e @ StoreError::PullsFull { .. }) if told_of_room && !held => {
                    held = true;
                    let until =
                        deadline.min(crate::deadline_after(Instant::now(), PULL_ANSWER_HOLD));
                    match self.await_pull_room(
                        size,
                        e,
                        (id, local_id, from),
                        (timeout, until, cancel),
                    ) {
                        Ok(()) => continue,
                        Err(e @ StoreError::PullsFull { .. }) => return Ok(Attempt::Full(e, size)),
                        Err(e) => return Err(e),
                    }
                }
                Err(e @ StoreError::PullsFull { .. }) => return Ok(Attempt::Full(e, size)),
                Err(StoreError::ObjectExists { .. }) => {
                    // Another local client is pulling or creating it: wait
                    // for its seal, at most `LOCAL_WAIT_SLICE` (it may abort
                    // instead: then the next try pulls it here).
                    drop(w);
                    return self.await_local_seal(
                        (id, local_id),
                        from,
                        (timeout, deadline, cancel),
                    );
                }
                // A create that timed out may have made the object all
                // the same: the service aborts it when this client's (now
                // broken) connection closes.
                Err(e) => return Err(local(e)),
            }
        };
        let mut builder = builder;
        w.pace = Some(Pace {
            store: self,
            since: Instant::now(),
            size,
            received: prefix.len() as u64,
            asked: None,
        });
        let received = (|| {
            // `create` handed out exactly `size` bytes; the check keeps
            // every slice below in bounds whatever happened.
            if builder.len() as u64 != size {
                return Err(w.protocol("the local object has the wrong size"));
            }
            builder[..prefix.len()].copy_from_slice(&prefix);
            if !prefix.is_empty() {
                progress(prefix.len() as u64, size);
            }
            fill(&mut w, &mut builder, prefix.len(), size, progress)?;
            end_of_stream(&mut w, size)
        })();
        match received {
            // A failed seal drops the builder, which queues a `Drop`: the
            // service aborts the object if it is still unsealed (after a
            // seal that only answered late, it releases the creator's
            // reference instead).
            // Every byte came: sealed even at the deadline, its reply
            // waited for at least `LOCAL_MIN` (as the create's).
            Ok(()) => {
                let l = deadline.saturating_duration_since(Instant::now());
                Ok(Attempt::Done(
                    builder.seal_within(l.max(LOCAL_MIN)).map_err(local)?,
                ))
            }
            Err(e) => {
                // Abort with a round trip, so the id is free again by the
                // time the caller hears of the failure, bounded by what is
                // left of the deadline. With too little left for a round
                // trip (the transfer ran out of time), the builder's drop
                // queues the abort instead (no reply awaited: a late one
                // would leave the connection out of step); the service
                // handles it right after.
                let l = deadline.saturating_duration_since(Instant::now());
                if l >= LOCAL_MIN {
                    let _ = builder.abort_within(l);
                } else {
                    drop(builder);
                }
                Err(e)
            }
        }
    }
}

impl StoreClient {
    /// Waits until a pull's create of `size` bytes has room in the local
    /// store's pull capacity (`Request::PullRoom`, asked 1 ms apart,
    /// doubling to 50 ms): the remote is asked again only then, so that
    /// pulls waiting for room do not make it send the object again and
    /// again (the attack on `964b4bb`: 32 such pulls cost the nodes ≈ 38 %
    /// of a core) nor hold its slots (the attack on `0642c79`). `full`
    /// (the last `PullsFull`) is the error at the deadline.
    fn await_pull_room(
        &self,
        size: u64,
        full: StoreError,
        (id, local_id, from): (ObjectId, ObjectId, SocketAddr),
        (timeout, deadline, cancel): (Duration, Instant, Cancel<'_>),
    ) -> Result<(), StoreError> {
        let mut pause = Duration::from_millis(1);
        loop {
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                return Err(full);
            }
            cancel.check(id, from)?;
            std::thread::sleep(cancel.slice(pause.min(l)));
            pause = (pause * 2).min(RETRY_MAX);
            let l = deadline.saturating_duration_since(Instant::now());
            if l.is_zero() {
                return Err(full);
            }
            let room = self
                .pull_room_within(local_id, size, l.max(LOCAL_MIN))
                .map_err(|e| local_fail(e, id, from, timeout))?;
            if room {
                return Ok(());
            }
        }
    }

    /// Waits at most [`LOCAL_WAIT_SLICE`] (and `deadline`) for another
    /// local client's copy `local_id` to be sealed, looking every 1 ms,
    /// doubling to [`LOCAL_POLL_MAX`]: each look is a `get` that does not
    /// wait on the service, because a waiting call holds this client's
    /// connection for its whole length, and clones of a client share it —
    /// a worker's pull threads do, so one pull waiting 500 ms for another
    /// worker's copy held every other pull's store calls up as long.
    fn await_local_seal(
        &self,
        (id, local_id): (ObjectId, ObjectId),
        from: SocketAddr,
        (timeout, deadline, cancel): (Duration, Instant, Cancel<'_>),
    ) -> Result<Attempt, StoreError> {
        let until = Instant::now() + LOCAL_WAIT_SLICE;
        let mut pause = Duration::from_millis(1);
        loop {
            let l = left(id, from, timeout, deadline)?;
            cancel.check(id, from)?;
            // (At least `LOCAL_MIN`: see `pull_once`'s create.)
            let got = self
                .get_before(&[local_id], Duration::ZERO, l.max(LOCAL_MIN))
                .map_err(|e| local_fail(e, id, from, timeout))?;
            if let Some(b) = got.into_iter().next().flatten() {
                return Ok(Attempt::Done(b));
            }
            let now = Instant::now();
            let rest = until.min(deadline).saturating_duration_since(now);
            if rest.is_zero() {
                return Ok(Attempt::Retry(StoreError::PullTimedOut {
                    id,
                    from,
                    timeout,
                }));
            }
            std::thread::sleep(pause.min(rest));
            pause = (pause * 2).min(LOCAL_POLL_MAX);
        }
    }
}

/// Receives the data of an object of `size` bytes into `buf` from offset
/// `got` to its end (chunk by chunk; for the object itself, straight into
/// the arena), calling `progress` after each read.
fn fill(
    w: &mut Wire,
    buf: &mut [u8],
    mut got: usize,
    size: u64,
    progress: &mut impl FnMut(u64, u64),
) -> Result<(), StoreError> {
    let (id, from) = (w.id, w.from);
    let len = buf.len();
    while got < len {
        let end = len.min(got.saturating_add(PULL_CHUNK));
        let truncated = StoreError::PullTruncated {
            id,
            from,
            declared: size,
            received: got as u64,
        };
        if let Some(p) = &mut w.pace {
            p.received = got as u64;
        }
        match w.read(&mut buf[got..end]) {
            Ok(0) => return Err(truncated),
            Ok(n) => got += n,
            Err(ReadFail::Io(e)) if is_cut(&e) => return Err(truncated),
            Err(ReadFail::Io(e)) => return Err(w.io(e)),
            Err(ReadFail::Err(e)) => return Err(e),
        }
        progress(got as u64, size);
    }
    Ok(())
}

/// Checks the stream ends right after the data of an object of `size`
/// bytes: the server closes then, and anything more is a protocol
/// violation.
fn end_of_stream(w: &mut Wire, size: u64) -> Result<(), StoreError> {
    let (id, from) = (w.id, w.from);
    let mut extra = [0u8; 1];
    match w.read(&mut extra) {
        Ok(0) => Ok(()),
        Err(ReadFail::Io(e)) if is_cut(&e) => Ok(()),
        Ok(_) => Err(StoreError::PullOverrun {
            id,
            from,
            declared: size,
        }),
        Err(ReadFail::Io(e)) => Err(w.io(e)),
        Err(ReadFail::Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull holding its remote's answer while it waits for room gives
    /// up before a serving node with the default configuration would close
    /// the transfer as stalled (the pull would then fail cut short).
    #[test]
    fn a_held_answer_is_let_go_before_the_default_stall_timeout() {
        let c = PullServerConfig::new("127.0.0.1:0".parse().unwrap());
        assert!(PULL_ANSWER_HOLD < c.stall_timeout);
    }
}
