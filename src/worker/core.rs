//! The submitting side (Ray's `CoreWorker::SubmitActorTask` /
//! `SubmitTask` / `CreateActor`, `CoreWorkerDirectActorTaskSubmitter`,
//! `TaskManager` and the in-memory store behind `Get` / `Wait`).
//!
//! A [`CoreWorker`] owns the connections to the workers it calls (one
//! [`Mux`] waits on all of them), one [`ActorSubmitQueue`] per actor it
//! created, the [`TaskManager`] of pending tasks and the memory store of
//! returned values. It does no I/O in the background: submitting sends at
//! once (the request is encoded in place into the connection), and
//! [`CoreWorker::get`] / [`CoreWorker::wait`] receive replies until their
//! objects are ready or the timeout passes.

use foldhash::{HashMap, HashMapExt as _};
use std::collections::hash_map::Entry as MapEntry;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::ids::{ActorId, ChildTaskHash, JobId, NodeId, ObjectId, TaskId, WorkerId};
use crate::ordering::{
    self, seq_map::SeqMap, ActorSubmitQueue, PushRequest, RequestId, SubmitEvent, TaskFailure,
    TaskMeta,
};
use crate::shm::Session;
use crate::spec::same_bytes;
use crate::spec::stamp::{KnownShapes, RequestStamp, STAMP_MISSES};
use crate::spec::{
    self, ActorCreationTaskSpec, ActorTaskTarget, Address, ArchivedPushTaskReply,
    ArchivedReturnValue, Encoder, FunctionDescriptor, PushTaskReply, PushTaskRequest, StatusCode,
    TaskArg, TaskSpecBuilder,
};
use crate::store::{ObjectBuffer, StoreClient};
use crate::transport::heartbeat::IdleHeartbeats;
use crate::transport::{
    AnyConnection, ConnectError, Connection, Connector, Endpoint, FrameTag, MessageConnection, Mux,
    MuxConnection, MuxEvent, PeerKey, SendError, ShmOptions, TransportConfig, TransportKind,
    SHAPE_SLOTS,
};

use super::ref_count::{LocalRef, RefCounter};
use super::registry::CONSTRUCTOR_NAME;
use super::server::{
    MAX_DIRECT_CALL_OBJECT_SIZE, OBJECT_LOST_METADATA, OBJECT_STORE_ERROR_METADATA,
    TASK_REFUSED_METADATA,
};
use super::task_manager::{ReplyMatch, TaskManager};
use super::{GetError, TaskError, WorkerError};

/// A reference to a task's return object (or a `put` object): its id and
/// its owner's address (Ray's `ObjectRef`). The owner is the [`CoreWorker`]
/// that submitted the task; only it can [`get`](CoreWorker::get) the value.
///
/// References are counted, in a simple form of Ray's `ReferenceCounter`:
/// clones share one local reference, and when the last clone is dropped
/// (and no pending task of the owner uses the object as an argument) the
/// owner forgets the value — and deletes its store object, with a store
/// ([`CoreWorkerOptions::store`]) — the next time it is called
/// ([`CoreWorker::release_dropped_refs`]). [`CoreWorker::free`] forgets a
/// value at once, whatever references remain.
#[derive(Clone)]
pub struct ObjectRef {
    /// The id, and the local reference shared by all clones (whose token
    /// holds the owner's address: no copy of it per reference).
    local: LocalRef<ObjectId, Arc<Address>>,
}

impl std::fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectRef")
            .field("object_id", &self.id())
            .field("owner", self.local.owner())
            .finish()
    }
}

impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id() && self.local.owner() == other.local.owner()
    }
}

impl Eq for ObjectRef {}

impl std::hash::Hash for ObjectRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state);
        self.local.owner().hash(state);
    }
}

/// A value handed out by [`CoreWorker::get_buffers`]: inline bytes (a copy
/// out of the reply) or a large object read zero-copy in the object
/// store's shared memory (holding a store reference until dropped). Derefs
/// to `[u8]`.
#[derive(Debug)]
pub enum ObjectValue {
    /// A value that travelled inline (at most `max_direct_call_object_size`).
    Inline(Vec<u8>),
    /// A value in the object store.
    Store(ObjectBuffer),
}

impl std::ops::Deref for ObjectValue {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline(v) => v,
            Self::Store(b) => b,
        }
    }
}

/// A ready object in the owner's memory store.
enum Stored {
    /// The bytes, copied out of the reply.
    Inline(Vec<u8>),
    /// The owner's reference on its store object (keeps it from eviction).
    Store(ObjectBuffer),
}

impl Stored {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline(v) => v,
            Self::Store(b) => b,
        }
    }
}

/// The owner's count of one object's references.
#[derive(Debug, Default, Clone, Copy)]
struct RefState {
    /// An [`ObjectRef`] (or a clone) is alive.
    local: bool,
    /// Pending tasks that pass it by reference (each holds a store pin).
    submitted: u32,
    /// It lives in the store: deleted there once unreferenced.
    in_store: bool,
}

/// What [`CoreWorker`]'s waits take: an [`ObjectRef`], or an id the owner
/// waits for itself (no reference counted).
trait Referent {
    fn id(&self) -> ObjectId;
    /// Made by `owner` and not freed (an id the owner waits for itself:
    /// yes).
    fn owned_by(&self, owner: &RefCounter<ObjectId, Arc<Address>>) -> bool;
}

impl Referent for ObjectRef {
    fn id(&self) -> ObjectId {
        self.local.id()
    }
    fn owned_by(&self, owner: &RefCounter<ObjectId, Arc<Address>>) -> bool {
        owner.holds(&self.local)
    }
}

impl Referent for ObjectId {
    fn id(&self) -> ObjectId {
        *self
    }
    fn owned_by(&self, _: &RefCounter<ObjectId, Arc<Address>>) -> bool {
        true
    }
}

impl ObjectRef {
    /// The object's id (`ObjectId::from_index(task_id, 1)` for the first return).
    pub fn id(&self) -> ObjectId {
        self.local.id()
    }

    /// The owner's address.
    pub fn owner_address(&self) -> &Address {
        self.local.owner()
    }

    /// This reference as a task argument (passed by reference; the owner
    /// inlines the value when it submits the task, as Ray's
    /// `LocalDependencyResolver` does for small objects it owns, and keeps
    /// an object that lives in the store by reference, pinned until the
    /// task finishes).
    ///
    /// The argument names the object; it does not hold it: keep this
    /// `ObjectRef` until the submission returns (the submitted task then
    /// holds the object until it finishes). One dropped before — e.g.
    /// `let arg = driver.put(&v)?.as_arg();` — lets the owner free the
    /// object at its next call, and the submission fails
    /// [`WorkerError::UnresolvedArgument`] ("… freed").
    pub fn as_arg(&self) -> TaskArg {
        TaskArg::object_ref(self.id(), Address::clone(self.local.owner()))
    }
}

/// A handle to an actor created by this [`CoreWorker`] (Ray's `ActorHandle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorHandle {
    actor_id: ActorId,
    worker_id: WorkerId,
    module_path: String,
    class_name: String,
    /// Concurrency group of the calls made through this handle (`""`: the
    /// method's own group).
    concurrency_group: String,
}

impl ActorHandle {
    /// A handle to actor `actor_id` of class `module_path::class_name`
    /// living on worker `worker_id`, as another caller received it (Ray
    /// passes serialized handles between workers); attach it with
    /// [`CoreWorker::register_actor`] before calling it.
    pub fn new(
        actor_id: ActorId,
        worker_id: WorkerId,
        module_path: impl Into<String>,
        class_name: impl Into<String>,
    ) -> Self {
        Self {
            actor_id,
            worker_id,
            module_path: module_path.into(),
            class_name: class_name.into(),
            concurrency_group: String::new(),
        }
    }

    /// This handle with its calls sent to concurrency group `group` of a
    /// threaded actor, whatever group their method has (Ray's
    /// `actor.method.options(concurrency_group=...)`); `""` restores the
    /// method's own group. A group the actor did not define fails each call
    /// with [`TaskError::UnknownConcurrencyGroup`].
    pub fn with_concurrency_group(&self, group: impl Into<String>) -> Self {
        Self {
            concurrency_group: group.into(),
            ..self.clone()
        }
    }

    /// The concurrency group of calls through this handle (`""`: each
    /// method's own).
    pub fn concurrency_group(&self) -> &str {
        &self.concurrency_group
    }

    /// The actor's id.
    pub fn actor_id(&self) -> ActorId {
        self.actor_id
    }

    /// The worker that hosts it.
    pub fn worker_id(&self) -> WorkerId {
        self.worker_id
    }

    /// The descriptor of method `method`:
    /// `Rust { module_path, type_name: class, function_name: method }`.
    pub fn method_descriptor(&self, method: &str) -> FunctionDescriptor {
        FunctionDescriptor::rust(&self.module_path, &self.class_name, method)
    }
}

/// Per-call options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskOptions {
    /// Retries after the request failed (connection broke, request
    /// refused, or its worker given up on as unreachable for a
    /// [`CoreWorkerOptions::reconnect_grace`], each grace one retry);
    /// `-1` = unlimited. Default 0. Application errors are not retried
    /// (Ray's `retry_exceptions = false`).
    pub max_retries: i32,
}

/// Settings of a [`CoreWorker`].
#[derive(Debug, Clone)]
pub struct CoreWorkerOptions {
    /// This worker's id (callers' scheduling queues on the workers are keyed
    /// by it). One live `CoreWorker` per id in a process: a clone of these
    /// options makes a second one fail [`WorkerError::WorkerIdInUse`]
    /// until the first is dropped; give each its own
    /// (`WorkerId::from_random()`, as [`CoreWorkerOptions::new`] does).
    pub worker_id: WorkerId,
    /// The node it runs on (workers of the same node are reached over shm).
    pub node_id: NodeId,
    /// The job its tasks belong to.
    pub job_id: JobId,
    /// Shared-memory options of the connections it opens.
    pub shm: ShmOptions,
    /// Use TCP even for workers on this node.
    pub force_tcp: bool,
    /// Spin instead of sleeping while waiting for replies. Without it,
    /// `get` and `wait` wait as `shm.wait` says: [`WaitStrategy::Spin`]
    /// spins, a spin-then-sleep strategy spins for its window before
    /// sleeping in `epoll`.
    ///
    /// [`WaitStrategy::Spin`]: crate::wake::WaitStrategy::Spin
    pub spin: bool,
    /// Largest inline argument total per task, in bytes
    /// ([`MAX_DIRECT_CALL_OBJECT_SIZE`]).
    pub max_direct_call_object_size: usize,
    /// Bound on resolving a by-reference argument and on actor creation.
    pub step_timeout: Duration,
    /// The session's object store (a client of its store service, e.g.
    /// `StoreClient::connect(&session, DEFAULT_STORE_NAME)`). With it, an
    /// argument above `max_direct_call_object_size` is put in the store and
    /// passed by reference, return values the worker put there are read
    /// from it, [`CoreWorker::put`] stores large values there, and
    /// references are counted (see [`ObjectRef`]). Without it, such
    /// arguments fail with [`WorkerError::ArgsTooLarge`]. Default `None`.
    pub store: Option<StoreClient>,
    /// The object endpoint of this node: the address of the
    /// [`PullServer`](crate::store::PullServer) serving `store` to other
    /// nodes (`shmwire node --object-listen`). It travels in this worker's
    /// [`Address::object_manager_address`], so that a worker on another
    /// node pulls the objects this worker passes by reference from here
    /// (Ray's owner address + object manager); and a return marked
    /// `InStore` with another endpoint than this one is pulled from there
    /// into `store` ([`StoreClient::pull`]). Default `None`: by-reference
    /// arguments can be read on this node only. An unspecified address
    /// (`0.0.0.0`, `::`) or port 0 fails [`CoreWorker::new`] with
    /// [`WorkerError::InvalidOption`] (other nodes could not reach it by
    /// that name).
    pub object_manager_address: Option<SocketAddr>,
    /// How long a worker whose connection broke, and that cannot be
    /// reached again, is still tried while its process lives (its pid —
    /// the kernel's `SO_PEERCRED` over shared memory, the directory
    /// entry's over TCP — exists): every [`RECONNECT_RETRY`], counted from
    /// the break. Its directory entry may be missing or replaced for a
    /// moment (a stray `rm` or copy, which the worker puts back within a
    /// [`LISTENER_CHECK_INTERVAL`](crate::transport::LISTENER_CHECK_INTERVAL)),
    /// or it may be out of descriptors. Meanwhile its actors' tasks wait
    /// as for a restart, and normal tasks submitted to it wait to be sent
    /// ([`CoreWorker::submit_task`] does not fail for it). As soon as the
    /// process is gone the worker is dead and its tasks fail (or restart
    /// the actor) as Ray's do on a death. Past the grace with the process
    /// still there, the worker is given up on, not taken for dead: each
    /// task waiting for it uses a retry if it has one left
    /// ([`ActorOptions::max_task_retries`], [`TaskOptions::max_retries`];
    /// `-1` = forever) and waits in a new grace that starts at once, as
    /// Ray retries `ACTOR_UNAVAILABLE` tasks; the others fail with
    /// [`TaskError::ActorUnavailable`] (its `unreachable` says why) or
    /// [`TaskError::WorkerUnavailable`], their reason giving how long the
    /// worker has been unreachable. A task submitted during a grace waits
    /// only the rest of it (0 to the whole grace). Its actors are kept (not
    /// restarted elsewhere), and the next task for it tries to reach it
    /// again, with a new grace. Each reconnect's
    /// handshake waits at most what is left of the grace (at least 1 s),
    /// on a thread of its own: the caller goes on with its other workers
    /// meanwhile (a stopped worker whose socket still accepts holds up
    /// only its own tasks). Default [`DEATH_GRACE`](crate::node::DEATH_GRACE)
    /// (2.5 s), the node's own wait before it announces a death;
    /// `Duration::ZERO` judges from the one reconnect attempt.
    pub reconnect_grace: Duration,
    /// How long a worker may take none of what this caller sends it before
    /// it is declared silent (`TaskError::ActorUnavailable` /
    /// `WorkerUnavailable` naming the silence, or a retry): requests that
    /// meet a full ring or socket are queued on the connection without
    /// waiting (so `get` and `wait` read replies meanwhile), and a worker
    /// that takes none of them for this long — stopped, or in one long
    /// task — is silent; a send that finds the queue itself full
    /// (`TransportConfig::send_queue_limit`, 4 MiB) waits at most this
    /// long. Default
    /// [`DEFAULT_SEND_TIMEOUT`](crate::transport::DEFAULT_SEND_TIMEOUT) (30 s).
    pub send_timeout: Duration,
}

/// How often a worker in its [`CoreWorkerOptions::reconnect_grace`] is
/// tried again (50 ms).
pub const RECONNECT_RETRY: Duration = Duration::from_millis(50);

/// How long a normal task's submission waits on the caller's thread for
/// the handshake of a first connection to its worker (1 s) before it goes
/// on without it ([`CoreWorker::connect_first`]). Past it the task goes
/// out at a later call of the caller (`drive`), which is what collects the
/// connection: a caller that submits and then makes no call for a while
/// starts the task only then, so the wait is long enough for a worker
/// that is merely slow (a loaded machine) and short against the 5 s
/// handshake a stopped worker held every submission for.
pub(crate) const FIRST_HANDSHAKE_WAIT: Duration = Duration::from_secs(1);

/// The shortest handshake a reconnect attempt allows, whatever is left of
/// the grace (a reconnect's handshake is bounded by the grace's rest).
const RECONNECT_HANDSHAKE_FLOOR: Duration = Duration::from_secs(1);

impl CoreWorkerOptions {
    /// Shared memory with default options, a random worker id, job 1,
    /// Ray's inline limit, 30 s step timeout.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            worker_id: WorkerId::from_random(),
            node_id,
            job_id: JobId::from_int(1),
            shm: ShmOptions::default(),
            force_tcp: false,
            spin: false,
            max_direct_call_object_size: MAX_DIRECT_CALL_OBJECT_SIZE,
            step_timeout: Duration::from_secs(30),
            store: None,
            object_manager_address: None,
            reconnect_grace: crate::node::DEATH_GRACE,
            send_timeout: crate::transport::DEFAULT_SEND_TIMEOUT,
        }
    }

    /// These options with `store` as the object store.
    pub fn with_store(mut self, store: StoreClient) -> Self {
        self.store = Some(store);
        self
    }

    /// These options with `addr` as the node's object endpoint (see
    /// [`CoreWorkerOptions::object_manager_address`]).
    pub fn with_object_manager_address(mut self, addr: SocketAddr) -> Self {
        self.object_manager_address = Some(addr);
        self
    }
}

/// How long the owner waits for a return object the reply says is in the
/// store (it was sealed before the reply was sent; the wait covers a retry
/// that found an earlier attempt's object still being written).
const STORE_RETURN_FETCH: Duration = Duration::from_secs(1);

/// How long dropping a [`CoreWorker`] waits for the store deletes and
/// unpins still queued (its store objects' deletes among them).
const RELEASES_AT_DROP: Duration = Duration::from_secs(1);

/// Bytes of a request besides its inline arguments that a connection's
/// frames must have room for (the spec's ids, descriptor, options; 64 KiB
/// is far more than they take): with `max_direct_call_object_size` the
/// smallest frame a caller accepts on a shared-memory connection
/// (`check_frames`).
const CALL_FRAME_HEADROOM: usize = 64 << 10;

#[derive(Debug, Clone, Copy)]
enum Target {
    Actor(ActorId),
    Normal(WorkerId),
}

impl Payload {
    /// The task's function as Ray's `CallString` (computed only for an error).
    fn function(&self) -> String {
        self.request.task_spec.function_descriptor.call_string()
    }
}

#[derive(Debug)]
struct Payload {
    /// Boxed: the payload moves through the pending-task map and the
    /// spare lists, a pointer moves instead of the whole request.
    request: Box<PushTaskRequest>,
    target: Target,
    /// The actor call template (index in [`ActorEntry::calls`]) the request
    /// was made from, to go back to when the task is finished.
    call: Option<usize>,
    request_id: Option<RequestId>,
    /// Store objects owned here that the task takes by reference, each
    /// pinned for the task until it finishes.
    store_args: Vec<ObjectId>,
    /// `CoreWorker::stray_replies` when the task was submitted: a `get`
    /// that times out on it names the stray replies that came since.
    strays_at_submit: u64,
}

struct Conn {
    key: PeerKey,
    epoch: u64,
    kind: TransportKind,
    /// The reply shapes this connection sent last, validated: a reply of
    /// one of them is read without a bytecheck pass (`spec::stamp::Known`).
    replies: KnownShapes<PushTaskReply>,
    /// Marked lost (`CoreWorker::mark_lost`: a send failed or timed out, a
    /// receive ended), to be handled at the next drive: it takes no more
    /// sends meanwhile ([`Conn::sendable`]), which could only wait out
    /// another send timeout each.
    lost: bool,
    /// The worker's process: the kernel's word over shared memory
    /// (`SO_PEERCRED`), else its directory entry's; `None` if neither
    /// names one. Watched if the connection breaks (`Unreachable`).
    pid: Option<u32>,
    /// Which request stamps the worker keeps in its shape slots for this
    /// connection (`send_stamped`).
    shapes: ShapeSlots,
    /// While requests are queued on it (`send_or_queue`): the fewest
    /// queued bytes seen and when they last fell (`CoreWorker::check_queued`).
    queued: Option<(usize, Instant)>,
    /// Replies to normal and actor creation tasks processed on it (the
    /// owner's reference on a return in the store taken): the next such
    /// request acknowledges them to the worker in its
    /// `client_processed_up_to` (as the count's last index), which lets the
    /// worker release its references on their returns (`send_normal`).
    normal_replies: u64,
}

/// The request stamps ([`RequestStamp::id`]) a connection's worker keeps
/// in its shape slots ([`FrameTag::Shape`]), as this caller assigned them:
/// the worker's table, mirrored (frames arrive in order, and only this
/// caller's `Shape` frames change it). Slots are reused in turn.
#[derive(Debug, Default)]
struct ShapeSlots {
    /// The stamp in each slot; 0 (no stamp's id) for none.
    held: [u64; SHAPE_SLOTS as usize],
    /// The slot the next new stamp goes to.
    next: u8,
}

impl ShapeSlots {
    /// The slot that holds stamp `id`.
    fn slot_of(&self, id: u64) -> Option<u8> {
        let i = self.held.iter().position(|&h| h == id)?;
        u8::try_from(i).ok()
    }

    /// Stamp `id` is now in `slot` (sent as its `Shape`).
    fn assign(&mut self, slot: u8, id: u64) {
        if let Some(h) = self.held.get_mut(usize::from(slot)) {
            *h = id;
        }
        self.next = (slot + 1) % SHAPE_SLOTS;
    }
}

/// A value reply of an actor task, stored, whose bookkeeping is deferred
/// ([`CoreWorker::settle_replies`]).
#[derive(Debug, Clone, Copy)]
struct Unsettled {
    actor_id: ActorId,
    request: RequestId,
    task: TaskId,
}

/// What a reply brought for a task the submit queue completes or fails.
enum ReplyValue {
    /// Its outcome, to store.
    Fresh(Result<Stored, TaskError>),
    /// A value already stored when the reply arrived (`Unsettled`).
    Stored,
}

/// A worker whose connection broke and that could not be reached again
/// while its process lived: tried again every [`RECONNECT_RETRY`] until
/// `until` ([`CoreWorkerOptions::reconnect_grace`]), then settled alive
/// or dead (`CoreWorker::settle`), or given up on if its process still
/// lives (`CoreWorker::give_up`).
#[derive(Debug)]
struct Unreachable {
    /// Its process, if known (shared memory: `SO_PEERCRED`, or its
    /// directory entry): only a living one earns more tries than the first
    /// and a give-up instead of a death.
    pid: Option<u32>,
    until: Instant,
    /// Since when it has been unreachable: the break, or the first grace
    /// of a run of graces that its tasks' retries keep going (`give_up`).
    since: Instant,
    /// Give-ups in that run so far (the first is logged as a warning, the
    /// others only at debug level).
    give_ups: u32,
    /// When the next attempt starts (none runs meanwhile).
    next_try: Instant,
    /// The attempt under way, if one is.
    attempt: Option<Attempt>,
    /// Normal tasks of the broken connection, retried or failed when the
    /// worker is settled.
    normal: Vec<TaskId>,
    /// Normal tasks submitted to it meanwhile, sent (not retried: they
    /// never went out) or failed when it is settled.
    unsent: Vec<TaskId>,
    /// Its actors' tasks in flight without retries left, failed when it is
    /// settled: unavailable if it lives, dead if not.
    failed: Vec<(ActorId, SubmitEvent<TaskId>)>,
    /// The violation the connection was cut off for, if it was.
    cut_off: Option<String>,
    /// How long the worker had been silent when the connection was
    /// declared dead for answering no heartbeat, if it was.
    silent: Option<Duration>,
    /// Never reached yet: its first connection's handshake went on its
    /// own thread ([`CoreWorker::connect_first`]).
    first: bool,
    /// An attempt's connection was found closed before it was taken into
    /// use, and the worker dialled again at once (`retry_unreachable`):
    /// done at most once a grace.
    redialed: bool,
}

/// A worker given up on as unreachable while its process lived, with
/// nothing left waiting for it (`CoreWorker::give_up`): the next task for
/// it tries again (`CoreWorker::reach_again`).
#[derive(Debug, Clone, Copy)]
struct Unavailable {
    pid: u32,
    /// Never reached by this caller ([`Unreachable::first`]).
    first: bool,
}

/// What a reconnect attempt yields: the connection and the directory
/// entry it dialled.
type Reached = Result<(AnyConnection, Endpoint), ConnectError>;

/// A reconnect attempt on a thread of its own (`CoreWorker::start_attempt`),
/// so that the caller goes on serving its other connections while a
/// worker that accepts but does not answer (stopped) holds the handshake
/// for up to what is left of its grace (at least
/// [`RECONNECT_HANDSHAKE_FLOOR`]). The thread sends its result and wakes
/// the caller's mux; `drive` collects it (`retry_unreachable`).
#[derive(Debug)]
struct Attempt {
    result: mpsc::Receiver<Reached>,
}

impl Unreachable {
    /// A grace ending at `until` for a worker of process `pid`, its first
    /// attempt under way, holding no task yet.
    fn trying(pid: Option<u32>, until: Instant, attempt: Attempt) -> Self {
        Self {
            pid,
            until,
            since: Instant::now(),
            give_ups: 0,
            next_try: until,
            attempt: Some(attempt),
            normal: Vec::new(),
            unsent: Vec::new(),
            failed: Vec::new(),
            cut_off: None,
            silent: None,
            first: false,
            redialed: false,
        }
    }
}

impl Conn {
    /// `conn`, unless it is missing or marked lost: the connection to send on.
    fn sendable(conn: Option<&Conn>) -> Result<&Conn, SendError<crate::spec::EncodeError>> {
        conn.filter(|c| !c.lost).ok_or(SendError::Closed)
    }
}

/// How an actor created here comes back after its process died (Ray's
/// `max_restarts`, the GCS re-running the creation task).
struct Restarts {
    /// The creation task, re-run as it was on each restart.
    spec: crate::spec::TaskSpec,
    /// Restarts left (`-1`: unlimited).
    left: i32,
    /// Workers to restart on, in order (Ray would lease one from a raylet).
    standby: std::collections::VecDeque<WorkerId>,
    /// Restarts so far (the incarnation).
    count: u64,
    /// The return object of the creation task of a restart in progress.
    pending: Option<ObjectId>,
    /// The standby worker a restart is connecting to (its handshake on a
    /// thread of its own, [`CoreWorker::start_attempt`], one per worker
    /// for all the restarts that wait for it: `CoreWorker::restart_attempts`):
    /// a stopped or silent standby holds no call of the caller's for its
    /// handshake. Meanwhile the actor lives on no worker (`actors_on`).
    /// The instant is when that attempt started as far as this restart is
    /// concerned: one that joined an attempt already under way and saw it
    /// fail gets an attempt of its own (it had only what was left of the
    /// other's handshake: the attack on `eab0d40`).
    connecting: Option<(WorkerId, Instant)>,
    /// Why the last restart failed (its standby worker could not be
    /// reached, or the creation task failed there), until one succeeds:
    /// named by the [`TaskError::ActorDied`] of tasks that fail for want of
    /// an incarnation.
    failed: Option<String>,
    /// The creation task's arguments this caller put in the store, pinned
    /// (and counted as referenced) for as long as a restart may run the
    /// creation task again: released once none can
    /// ([`CoreWorker::release_creation_args`]).
    creation_args: Vec<ObjectId>,
}

/// Options of [`CoreWorker::create_actor_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorOptions {
    /// Retries of each of its tasks whose request was lost (connection
    /// broke, actor restarted) or whose worker was given up on as
    /// unreachable for a [`CoreWorkerOptions::reconnect_grace`] (each
    /// grace one retry, as Ray retries `ACTOR_UNAVAILABLE`); `-1` =
    /// unlimited (Ray's `max_task_retries`).
    pub max_task_retries: i32,
    /// How many times the actor is restarted after its process died;
    /// `-1` = as long as `restart_workers` lasts (Ray's `max_restarts`).
    /// A restart counts once its creation task is sent: a standby that
    /// cannot be reached is skipped without spending one. While the actor
    /// can restart, the creation task's arguments this caller put in the
    /// object store (those above `max_direct_call_object_size`) stay pinned
    /// for it, as Ray keeps them with the actor.
    pub max_restarts: i32,
    /// Workers to restart it on, in order, each used once (shmwire has no
    /// raylet to lease a fresh worker from).
    pub restart_workers: Vec<WorkerId>,
    /// Threads of the actor's default concurrency group: how many of its
    /// tasks (those of no named group) may run at once (Ray's
    /// `max_concurrency`; 0, the `Default`, means 1). With 1 and no groups
    /// the actor runs its tasks one at a time, in each caller's submission
    /// order, on the worker's execution thread; otherwise it is a threaded
    /// actor whose tasks leave each caller's queue in order but may finish
    /// out of order (`docs/worker.md`). At most
    /// [`MAX_ACTOR_THREADS`](crate::worker::MAX_ACTOR_THREADS) threads in all.
    pub max_concurrency: i32,
    /// Named concurrency groups (Ray's `concurrency_groups={"io": 2}`):
    /// each gets its own pool of `max_concurrency` threads. Methods join a
    /// group through the class
    /// ([`ActorClass::method_in_group`](crate::worker::ActorClass::method_in_group)),
    /// through a group's `function_descriptors` here, or per call
    /// ([`ActorHandle::with_concurrency_group`]).
    /// Build one with [`ConcurrencyGroup::new`](crate::spec::ConcurrencyGroup::new).
    pub concurrency_groups: Vec<crate::spec::ConcurrencyGroup>,
    /// At most this many of its calls pending through this caller —
    /// submitted and not yet finished (replied, failed or given up on) —
    /// after which a call fails at once with
    /// [`WorkerError::PendingCallsLimitExceeded`] (Ray's
    /// `max_pending_calls` and `PendingCallsLimitExceeded`). 0 (the
    /// `Default`) or negative: unlimited, as Ray's `-1`. Bounds what a
    /// caller that fires and forgets keeps while the actor's worker is
    /// stopped or slow (≈ 1 KB a call); a handle attached with
    /// [`CoreWorker::register_actor`] has no limit.
    pub max_pending_calls: i32,
}

struct ActorEntry {
    worker: WorkerId,
    /// Set for actors created here with restarts.
    restarts: Option<Restarts>,
    queue: ActorSubmitQueue<TaskId>,
    next_counter: u64,
    cursor: ObjectId,
    max_task_retries: i32,
    /// [`ActorOptions::max_pending_calls`] (0: unlimited).
    max_pending_calls: usize,
    /// Requests of tasks finished out of order (kept until
    /// `next_task_reply_position` passes them: a reconnect re-sends them
    /// with `skip_execution`), with the call template each came from.
    finished: SeqMap<(Box<PushTaskRequest>, Option<usize>)>,
    /// One entry per method (and handle class and concurrency group)
    /// called through this actor: its finished requests, recycled.
    calls: Vec<CallTemplate>,
}

/// The requests of one actor method's finished calls, kept to make the
/// next calls' specs from without allocating
/// ([`TaskSpecBuilder::rebuild_actor_task`]).
struct CallTemplate {
    module_path: String,
    class_name: String,
    method: String,
    group: String,
    /// The first call's request: cloned when no finished one is spare.
    first: Box<PushTaskRequest>,
    /// Finished requests of this method, at most [`SPARE_REQUESTS`]; kept
    /// in their boxes, which go back into payloads as they are.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<PushTaskRequest>>,
    /// The encoding of a request of this template, re-stamped to send the
    /// next ones (`spec::stamp`): made at the first send, replaced after
    /// [`STAMP_MISSES`] requests in a row had arguments of another shape.
    stamp: Option<RequestStamp>,
    /// Requests in a row whose arguments did not fit `stamp`.
    stamp_misses: u8,
}

/// Finished requests kept per actor method for reuse: enough for the calls
/// a pipelined caller keeps in flight (more are dropped, and allocated
/// again when needed).
const SPARE_REQUESTS: usize = 1024;

/// Call templates kept per actor: methods called beyond the first this many
/// (per handle class and concurrency group) have their specs built in full
/// each time.
const MAX_CALL_TEMPLATES: usize = 64;

impl ActorEntry {
    /// Its calls submitted through this caller and not finished: queued
    /// (not yet handed to a connection) or in flight (sent, or waiting for
    /// byte budget; a `skip_execution` re-send of a finished call counts
    /// until it is answered).
    fn pending_calls(&self) -> usize {
        self.queue.num_queued() + self.queue.num_in_flight()
    }

    /// The index of the call template of `method` through `actor`, if any.
    fn call_template(&self, actor: &ActorHandle, method: &str) -> Option<usize> {
        self.calls.iter().position(|c| {
            same_bytes(c.method.as_bytes(), method.as_bytes())
                && same_bytes(c.group.as_bytes(), actor.concurrency_group.as_bytes())
                && same_bytes(c.class_name.as_bytes(), actor.class_name.as_bytes())
                && same_bytes(c.module_path.as_bytes(), actor.module_path.as_bytes())
        })
    }

    /// Gives a finished request back to the template it was made from.
    fn recycle(&mut self, call: Option<usize>, mut request: Box<PushTaskRequest>) {
        if let Some(c) = call.and_then(|i| self.calls.get_mut(i)) {
            if c.spare.len() < SPARE_REQUESTS {
                // The argument values go now, not when the spec is reused.
                request.task_spec.args.clear();
                c.spare.push(request);
            }
        }
    }
}

/// A caller of tasks and actors (see the module docs).
pub struct CoreWorker {
    options: CoreWorkerOptions,
    connector: Connector,
    address: Address,
    /// Reused buffer of a submit queue's events (no allocation per call).
    events: Vec<SubmitEvent<TaskId>>,
    /// Actor tasks whose value reply is stored but whose bookkeeping (the
    /// submit queue's `on_reply`, the pending entry, its request recycled)
    /// waits for [`CoreWorker::settle_replies`] — off a sync call's path
    /// (`drain`).
    unsettled: Vec<Unsettled>,
    driver_task: TaskId,
    task_counter: u64,
    /// The id hash of the next counter, computed after an actor task was
    /// sent — while the caller waits for its reply — for the next actor
    /// task to take (`child_hash`).
    next_child: Option<ChildTaskHash>,
    mux: Mux<AnyConnection>,
    ready: Vec<MuxEvent>,
    conns: HashMap<WorkerId, Conn>,
    by_key: HashMap<PeerKey, WorkerId>,
    next_epoch: u64,
    actors: HashMap<ActorId, ActorEntry>,
    tasks: TaskManager<Payload>,
    /// Requests re-sent with `skip_execution` for tasks already finished.
    resends: HashMap<TaskId, (ActorId, RequestId, u64)>,
    objects: HashMap<ObjectId, Result<Stored, TaskError>>,
    /// Buffers of freed inline values, reused for the next replies' values.
    spare_values: Vec<Vec<u8>>,
    encoder: Encoder,
    /// Connections found broken, with the violation that broke each (if it
    /// was one rather than a close or death), handled by `handle_lost`.
    lost: Vec<(WorkerId, Option<String>)>,
    /// While `on_connection_lost` handles a connection cut off for a
    /// violation: its worker and the violation, which the tasks failed by
    /// that loss report ([`TaskError::ConnectionCutOff`]) instead of a death.
    cut_off: Option<(WorkerId, String)>,
    /// Connections in `lost` that TCP's liveness check ended (the worker
    /// answered no heartbeat; it may only be stopped), with the silence.
    silent: Vec<(WorkerId, Duration)>,
    /// While `on_connection_lost` handles such a connection: its worker and
    /// the silence, which the deaths of the tasks it fails name
    /// (`stopped_answering`).
    stopped_answering: Option<(WorkerId, Duration)>,
    /// Workers in their reconnect grace (see [`Unreachable`]).
    unreachable: HashMap<WorkerId, Unreachable>,
    /// Workers given up on at the end of their grace though their process
    /// lived (by pid): their tasks failed as unavailable, their actors are
    /// not dead; the next task for one tries to reach it again
    /// (`reach_again`).
    unavailable: HashMap<WorkerId, Unavailable>,
    /// While such a worker's tasks are failed: the worker and why it was
    /// given up on, which their errors give
    /// ([`TaskError::ActorUnavailable`]'s `unreachable`,
    /// [`TaskError::WorkerUnavailable`]).
    given_up: Option<(WorkerId, String)>,
    /// Its session, whose lock file of this process it puts back if a stray
    /// `rm` or rename takes it (without it, `shmwire inspect` calls the
    /// process dead and cleanup passes remove what it owns).
    session: Session,
    /// When to check that lock file next (every
    /// [`LISTENER_CHECK_INTERVAL`](crate::transport::LISTENER_CHECK_INTERVAL),
    /// while `get` / `wait` receive).
    lock_check_at: Instant,
    /// Receiving rounds so far (`drive`), to look at the clock for that
    /// check only every so often while busy.
    drives: u64,
    /// The last submission found this caller behind a worker — its request
    /// not sent at once (held by the submit queue's byte budget, waiting
    /// for a restart), requests queued on the connection (its ring or
    /// socket full), a connection lost — or was every 64th normal task's:
    /// the next submission reads replies first ([`CoreWorker::keep_up`]).
    behind: bool,
    /// Normal tasks submitted so far: every [`NORMAL_SUBMITS_PER_READ`]th
    /// reads replies first ([`CoreWorker::keep_up`]).
    normal_submits: u64,
    /// Heartbeats on the TCP connections while the application makes no
    /// call (`None` until the first TCP connection, or if its thread could
    /// not start: such a caller's connections are then closed by workers
    /// after the liveness timeout without a call, and made again at the
    /// next). Stopped first on drop, before the sockets close.
    heartbeats: Option<IdleHeartbeats>,
    /// Its period: a third of the connections' liveness timeout (zero:
    /// liveness off, no heartbeats).
    heartbeat_period: Duration,
    /// This worker id's claim in this process (`IdClaim`), given up when
    /// the worker is dropped.
    _claim: IdClaim,
    /// The object store (from the options).
    store: Option<StoreClient>,
    /// Reference counts of the objects this worker owns.
    refs: HashMap<ObjectId, RefState>,
    /// The local references handed out ([`ObjectRef`]s): their counts,
    /// and the ids whose last clone was dropped.
    ref_counter: RefCounter<ObjectId, Arc<Address>>,
    /// Ids taken from `ref_counter`, being processed (kept for its
    /// capacity).
    released: Vec<ObjectId>,
    /// Ray's put index: object `i` put by this worker is
    /// `ObjectId::from_index(root task, i)`, from 1.
    put_index: u32,
    /// Replies received for no pending task (nor a re-sent one): a replayed
    /// or corrupted reply whose own task then never hears back. `get`'s
    /// timeout names how many came since the task it waits for was
    /// submitted.
    stray_replies: u64,
    /// When a broken store client may next be replaced ([`heal_store`]).
    store_heal_at: Instant,
    /// Deletes and unpins no call waits for, on a thread of their own.
    releases: super::releases::StoreReleases,
    /// Actors whose restart is connecting to a standby
    /// ([`Restarts::connecting`]): `drive` looks at no actor while empty.
    restarts_connecting: Vec<ActorId>,
    /// Actors holding pinned creation arguments
    /// ([`Restarts::creation_args`]): looked at only while not empty.
    creation_pinned: Vec<ActorId>,
    /// The connection attempts restarts wait for, one per standby worker:
    /// two actors restarting onto one standby at once made two, and the
    /// worker, keeping a caller's newest connection, closed the one the
    /// caller kept (the attack on `2af27d5`: one actor's queued calls
    /// failed, or both actors died).
    restart_attempts: HashMap<WorkerId, (Attempt, Instant)>,
}

impl std::fmt::Debug for CoreWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreWorker")
            .field("worker_id", &self.options.worker_id)
            .field("pending", &self.tasks.len())
            .field("actors", &self.actors.len())
            .finish()
    }
}

/// A request for `intended` carrying `task_spec`, not yet sequenced (the
/// submit queue stamps sequence numbers when it sends).
fn new_request(intended: WorkerId, task_spec: spec::TaskSpec) -> Box<PushTaskRequest> {
    Box::new(PushTaskRequest {
        intended_worker_id: intended,
        task_spec,
        sequence_number: -1,
        client_processed_up_to: -1,
        resource_mapping: Vec::new(),
    })
}

/// Refuses a request that encodes to more than `max` bytes
/// ([`WorkerError::RequestTooLarge`]); one counting pass of the encoder (no
/// bytes written). Runs before a task is recorded or sequenced.
#[cold]
#[inline(never)]
fn check_request_len(
    encoder: &mut Encoder,
    request: &PushTaskRequest,
    max: usize,
) -> Result<(), WorkerError> {
    let size = encoder
        .encoded_len(request)
        .map_err(|e| WorkerError::Send(SendError::Encode(e)))?;
    if size > max {
        return Err(WorkerError::RequestTooLarge {
            size: size as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// The violation a failed send to `worker` reveals (a corrupt or poisoned
/// shared ring: `SendError::violation`), logged as a warning like one a
/// receive reveals.
fn send_violation<E>(e: &SendError<E>, worker: WorkerId) -> Option<String> {
    let v = e.violation();
    match &v {
        Some(v) if matches!(e, SendError::CutOff { .. }) => {
            tracing::warn!(%worker, reason = %v, "the worker cut the connection off")
        }
        Some(v) => {
            tracing::warn!(%worker, violation = %v, "dropping the connection to a worker that broke the protocol")
        }
        None => {}
    }
    v
}

fn send_request(
    mux: &mut Mux<AnyConnection>,
    encoder: &mut Encoder,
    conn: Option<&Conn>,
    request: &PushTaskRequest,
) -> Result<u64, SendError<crate::spec::EncodeError>> {
    let conn = Conn::sendable(conn)?;
    let c = mux.get_mut(conn.key).ok_or(SendError::Closed)?;
    // The recipient check `send_push_task` makes.
    let peer = c.peer_worker_id();
    if request.intended_worker_id != peer {
        return Err(SendError::WrongRecipient {
            intended: request.intended_worker_id,
            actual: peer,
        });
    }
    match c.try_send_message(encoder, request) {
        Err(SendError::QueueFull { .. }) => c.send_push_task(encoder, request)?,
        r => r?,
    };
    Ok(conn.epoch)
}

/// Sends a frame without waiting: when the worker has no room for it (its
/// ring or socket is full: it runs a long task, or holds this caller back
/// until it reads its replies) the frame is queued on the connection and
/// handed over as the caller's next sends and waits (`get`, `wait`) find
/// room, while those waits read replies — so a caller never blocks in a
/// send that only its own reading would unblock. Only a full queue
/// (`TransportConfig::send_queue_limit`) waits, at most the send timeout.
fn send_or_queue<E>(
    c: &mut AnyConnection,
    tag: FrameTag,
    len: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, SendError<E>> {
    match c.try_send_tagged_with(tag, len, &mut encode) {
        Err(SendError::QueueFull { .. }) => c.send_tagged_with(tag, len, encode),
        r => r,
    }
}

/// A submission of a normal task after this many reads replies first
/// ([`CoreWorker::keep_up`]): a caller that submits without `get` keeps at
/// most about this many replies unread beyond what its worker is behind.
/// (Actor tasks are bounded by their submit queue's byte budget, and a sync
/// actor call makes no system call for this.)
const NORMAL_SUBMITS_PER_READ: u64 = 64;

/// One round of [`CoreWorker::keep_up`]'s wait for a connection's queued
/// requests to fall to 7/8 of its limit.
const KEEP_UP_WAIT: Duration = Duration::from_millis(1);

/// Stamps what the submit queue decided for a send (`r`) into `req`: the
/// actor's worker now (another one after a restart), the sequence number,
/// `client_processed_up_to`, `skip_execution` and the queue's
/// `caller_starts_at` (`starts`).
fn stamp_push(req: &mut PushTaskRequest, worker: WorkerId, r: &PushRequest<TaskId>, starts: u64) {
    req.intended_worker_id = worker;
    req.sequence_number = r.sequence_number;
    req.client_processed_up_to = r.client_processed_up_to;
    req.task_spec.skip_execution = r.skip_execution;
    if let Some(a) = req.task_spec.actor_task_spec.as_mut() {
        a.caller_starts_at = starts;
    }
}

/// [`send_request`] of a request of call template `template` (if any),
/// written by re-stamping the template's [`RequestStamp`] when its
/// arguments fit (no serialization pass), else encoded in full. On a
/// connection that carries [`FrameTag`]s (shared memory) a stamped request
/// goes as a [`FrameTag::Delta`] of the stamp when the worker keeps it in a
/// shape slot, else in full as a [`FrameTag::Shape`] that puts it in one
/// (`docs/worker.md`, "Compact requests").
fn send_stamped(
    mux: &mut Mux<AnyConnection>,
    encoder: &mut Encoder,
    conn: Option<&mut Conn>,
    request: &PushTaskRequest,
    template: Option<&mut CallTemplate>,
    fits: Option<bool>,
) -> Result<u64, SendError<crate::spec::EncodeError>> {
    let Some(t) = template else {
        return send_request(mux, encoder, conn.map(|c| &*c), request);
    };
    // Whether its arguments fit the template's stamp: asked once (the
    // submission asked it already before sequencing; the per-call fields
    // stamped since do not change the answer).
    let fits = fits.unwrap_or_else(|| t.stamp.as_ref().is_some_and(|s| s.fits(request)));
    if !fits {
        t.stamp_misses = t.stamp_misses.saturating_add(1);
        if t.stamp.is_some() && t.stamp_misses < STAMP_MISSES {
            return send_request(mux, encoder, conn.map(|c| &*c), request);
        }
        t.stamp = RequestStamp::new(encoder, request);
    }
    let Some(stamp) = t.stamp.as_mut() else {
        return send_request(mux, encoder, conn.map(|c| &*c), request);
    };
    t.stamp_misses = 0;
    let conn = conn.filter(|c| !c.lost).ok_or(SendError::Closed)?;
    let c = mux.get_mut(conn.key).ok_or(SendError::Closed)?;
    // The recipient check `send_push_task` makes.
    let peer = c.peer_worker_id();
    if request.intended_worker_id != peer {
        return Err(SendError::WrongRecipient {
            intended: request.intended_worker_id,
            actual: peer,
        });
    }
    match stamp.delta_len().filter(|_| c.carries_tags()) {
        Some(delta_len) => match conn.shapes.slot_of(stamp.id()) {
            Some(slot) => {
                send_or_queue(c, FrameTag::Delta(slot), delta_len, |buf| {
                    stamp.write_delta(request, buf)
                })?;
            }
            None => {
                // A slot is assigned once its frame is sent: a send that
                // failed leaves the table as the worker's is.
                let slot = conn.shapes.next;
                send_or_queue(c, FrameTag::Shape(slot), stamp.len(), |buf| {
                    stamp.write(request, buf)
                })?;
                conn.shapes.assign(slot, stamp.id());
            }
        },
        None => {
            send_or_queue(c, FrameTag::Message, stamp.len(), |buf| {
                stamp.write(request, buf)
            })?;
        }
    }
    Ok(conn.epoch)
}

/// How long a caller whose store connection broke waits after a failed
/// attempt to connect again before the next (at a call that needs the
/// store).
const STORE_HEAL_INTERVAL: Duration = Duration::from_secs(1);

/// Replaces a store client whose connection broke for good (a call timed
/// out while the store was stopped, say: every later call would fail
/// "out of step") or whose service is gone (killed; another may run now:
/// `StoreClient::is_lost`) by a new connection to the same store — the next
/// attempt a [`STORE_HEAL_INTERVAL`] after a failed one at the soonest
/// (`next` says when); called where the caller is
/// about to use the store. Buffers of the old client stay valid while they
/// live.
pub(super) fn heal_store(store: &mut Option<StoreClient>, next: &mut Instant) {
    heal_store_within(store, next, Duration::MAX);
}

/// [`heal_store`], the new connection's handshake bounded by `bound` (a
/// call with a deadline of its own: the reply path, bounded by the time
/// left to the `get` that receives).
fn heal_store_within(store: &mut Option<StoreClient>, next: &mut Instant, bound: Duration) {
    let Some(s) = store.as_ref() else {
        return;
    };
    if !s.is_lost() {
        return;
    }
    let now = Instant::now();
    if now < *next {
        return;
    }
    let again = if bound == Duration::MAX {
        s.connect_again()
    } else {
        s.connect_again_within(bound)
    };
    match again {
        Ok(c) => {
            tracing::info!("caller: its object store connection broke; connected again");
            *store = Some(c);
        }
        Err(e) => {
            // The next attempt a while on (a stopped store makes each wait
            // out the handshake).
            *next = crate::deadline_after(now, STORE_HEAL_INTERVAL);
            tracing::debug!(error = %e, "caller: connecting to the object store again failed")
        }
    }
}

/// Where the owner reads a return marked `InStore` from.
struct ReturnFetch<'a> {
    /// This node's store.
    store: Option<&'a StoreClient>,
    /// This node's object endpoint (`CoreWorkerOptions::object_manager_address`).
    own_endpoint: Option<SocketAddr>,
    /// Bound on pulling a return from another node's store, and on the
    /// local store's reply to a fetch.
    pull_timeout: Duration,
}

impl ReturnFetch<'_> {
    /// Reads return `id` from the local store, after pulling it there from
    /// `endpoint` (the executing worker's node) if that is another node's
    /// object endpoint. The buffer is the owner's reference.
    fn fetch(
        &self,
        store: &StoreClient,
        id: ObjectId,
        endpoint: &str,
    ) -> Result<Option<ObjectBuffer>, String> {
        let remote = if endpoint.is_empty() {
            None
        } else {
            let addr = super::arg_pull::parse_object_endpoint(endpoint).ok_or_else(|| {
                format!("the reply names an invalid object endpoint {endpoint:?} for return object {id}")
            })?;
            (Some(addr) != self.own_endpoint.map(super::arg_pull::canonical_endpoint))
                .then_some(addr)
        };
        match remote {
            // `pull` takes the local copy if there is one already.
            Some(from) => store
                .pull(id, from, self.pull_timeout)
                .map(Some)
                .map_err(|e| format!("pulling return object {id} from node {from}: {e}")),
            // The store's reply waited for as long as a pull (the time
            // left to the caller's `get` or `wait`, at least 1 s), not the
            // client's reply timeout (30 s by default): a stopped store
            // holds up a `get` about its own timeout.
            None => store
                .get_within(&[id], STORE_RETURN_FETCH, self.pull_timeout)
                .map(|mut v| v.pop().flatten())
                .map_err(|e| format!("fetching return object {id}: {e}")),
        }
    }
}

/// Checks a reply's return objects against its task: the `i`-th must be the
/// task's return `i` (at most `num_returns` of them), and an inline one's
/// `size` the length of its data, as the worker writes them. Validation (in
/// full or by known shape) accepts any value in these per-call fields, so a
/// reply that breaks this — a scribbled ring or a broken peer — is caught
/// here, and the connection is dropped as for a reply that does not decode.
fn check_returns(reply: &ArchivedPushTaskReply, spec: &spec::TaskSpec) -> Result<(), String> {
    let n = reply.return_objects.len() as u64;
    if n > spec.num_returns {
        return Err(format!(
            "{n} return objects for a task with {} returns",
            spec.num_returns
        ));
    }
    for (i, o) in (0..).zip(reply.return_objects.iter()) {
        let want = spec.return_id(i);
        if o.object_id != want {
            return Err(format!(
                "return object {i} is {}, not the task's return {want}",
                o.object_id
            ));
        }
        if let ArchivedReturnValue::Inline(d) = &o.value {
            let (size, len) = (o.size.to_native(), d.data.len());
            if size != len as u64 {
                return Err(format!(
                    "return object {want} says {size} bytes but carries {len}"
                ));
            }
        }
    }
    Ok(())
}

/// What a reply says about its task: the status for the ordering layer and
/// the value or error of its first return object. A return in the store is
/// fetched from the local store, pulled there first if the reply places it
/// in another node's store (the owner's reference is taken here, before any
/// eviction could take it, and before the caller acknowledges the reply,
/// which lets the executing worker release its copy).
fn outcome(
    reply: &ArchivedPushTaskReply,
    payload: &Payload,
    max_inline: usize,
    fetch: &ReturnFetch<'_>,
    spare_values: &mut Vec<Vec<u8>>,
) -> (ordering::ReplyOutcome, Result<Stored, TaskError>) {
    let first = reply.return_objects.first();
    if let Some(o) = first {
        if let (ArchivedReturnValue::InStore(object_manager_address), true) =
            (&o.value, reply.status.is_ok())
        {
            let store = fetch.store;
            let Some(store) = store else {
                return (
                    ordering::ReplyOutcome::Ok,
                    Err(TaskError::ObjectTooLarge {
                        function: payload.function(),
                        size: o.size.to_native(),
                        max: max_inline as u64,
                    }),
                );
            };
            // Only the task's own return id is fetched (and later deleted):
            // a reply naming another object is not trusted.
            let id = payload.request.task_spec.return_id(0);
            if o.object_id != id {
                return (
                    ordering::ReplyOutcome::Ok,
                    Err(TaskError::ObjectStore {
                        function: payload.function(),
                        message: format!(
                            "the reply names object {} in the store, not the return {id}",
                            o.object_id
                        ),
                    }),
                );
            }
            let endpoint = object_manager_address.as_str();
            let fetched = fetch.fetch(store, id, endpoint);
            let result = match fetched {
                Ok(Some(buf)) if buf.len() as u64 == o.size.to_native() => Ok(Stored::Store(buf)),
                Ok(Some(buf)) => Err(TaskError::ObjectStore {
                    function: payload.function(),
                    message: format!(
                        "return object {id} has {} bytes in the store, the reply says {}",
                        buf.len(),
                        o.size.to_native()
                    ),
                }),
                Ok(None) if endpoint.is_empty() => Err(TaskError::ObjectStore {
                    function: payload.function(),
                    message: format!(
                        "return object {id} is not in the local object store, and the executing \
                         worker's node serves no object endpoint to pull it from"
                    ),
                }),
                Ok(None) => Err(TaskError::ObjectStore {
                    function: payload.function(),
                    message: format!("return object {id} is not in the object store"),
                }),
                Err(message) => Err(TaskError::ObjectStore {
                    function: payload.function(),
                    message,
                }),
            };
            return (ordering::ReplyOutcome::Ok, result);
        }
        if matches!(o.value, ArchivedReturnValue::InStore(_)) {
            return (
                ordering::ReplyOutcome::Ok,
                Err(TaskError::ObjectTooLarge {
                    function: payload.function(),
                    size: o.size.to_native(),
                    max: max_inline as u64,
                }),
            );
        }
    }
    let (inline, metadata) = match first.map(|o| &o.value) {
        Some(ArchivedReturnValue::Inline(d)) => (Some(d.data.as_slice()), d.metadata.as_slice()),
        _ => (None, &[][..]),
    };
    let code: StatusCode = reply.status.code;
    if reply.is_application_level_error {
        let message = match inline {
            Some(d) => String::from_utf8_lossy(d).into_owned(),
            None => reply.status.message.as_str().to_owned(),
        };
        if metadata == OBJECT_LOST_METADATA {
            let d = inline.unwrap_or_default();
            let object_id = d
                .get(..ObjectId::SIZE)
                .and_then(|b| ObjectId::from_bytes(b).ok())
                .unwrap_or_default();
            let message = String::from_utf8_lossy(d.get(ObjectId::SIZE..).unwrap_or_default());
            return (
                ordering::ReplyOutcome::Ok,
                Err(TaskError::ArgumentLost {
                    function: payload.function(),
                    object_id,
                    message: message.into_owned(),
                }),
            );
        }
        if metadata == TASK_REFUSED_METADATA {
            // Refused for good (`server::refusal_reply`): failed, not retried.
            return (
                ordering::ReplyOutcome::Ok,
                Err(TaskError::System {
                    function: payload.function(),
                    code,
                    message,
                }),
            );
        }
        if metadata == OBJECT_STORE_ERROR_METADATA {
            return (
                ordering::ReplyOutcome::Ok,
                Err(TaskError::ObjectStore {
                    function: payload.function(),
                    message,
                }),
            );
        }
        let err = if code == StatusCode::NotFound {
            TaskError::FunctionNotFound {
                function: payload.function(),
                message,
            }
        } else if code == StatusCode::KeyError {
            TaskError::UnknownConcurrencyGroup {
                function: payload.function(),
                group: reply.status.message.as_str().to_owned(),
                message,
            }
        } else {
            TaskError::Application {
                function: payload.function(),
                message,
            }
        };
        return (ordering::ReplyOutcome::Ok, Err(err));
    }
    if !reply.status.is_ok() {
        return (
            ordering::ReplyOutcome::Error,
            Err(TaskError::System {
                function: payload.function(),
                code,
                message: reply.status.message.as_str().to_owned(),
            }),
        );
    }
    // The value is copied into a buffer of a freed value (no allocation
    // once warm, if it fits).
    let mut value = spare_values.pop().unwrap_or_default();
    value.clear();
    value.extend_from_slice(inline.unwrap_or_default());
    (ordering::ReplyOutcome::Ok, Ok(Stored::Inline(value)))
}

/// Freed inline values kept to receive later ones: at most this many, each
/// of at most [`SPARE_VALUE_BYTES`] capacity.
const SPARE_VALUES: usize = 1024;

/// See [`SPARE_VALUES`].
const SPARE_VALUE_BYTES: usize = 4096;

/// The worker ids of this process's live [`CoreWorker`]s. A worker id is a
/// caller's identity at every worker it calls (its connections, actor
/// sequencing and reply cache are keyed by it, as Ray keys them by the
/// caller's worker id): two live `CoreWorker`s under one id — made from one
/// cloned [`CoreWorkerOptions`] — would supersede each other's connections
/// and share object ids, so the second is refused.
static LIVE_WORKER_IDS: std::sync::Mutex<Vec<WorkerId>> = std::sync::Mutex::new(Vec::new());

/// A worker id claimed in [`LIVE_WORKER_IDS`], released when dropped.
#[derive(Debug)]
struct IdClaim(WorkerId);

impl IdClaim {
    fn new(id: WorkerId) -> Result<Self, WorkerError> {
        let mut live = LIVE_WORKER_IDS.lock().unwrap_or_else(|e| e.into_inner());
        if live.contains(&id) {
            return Err(WorkerError::WorkerIdInUse(id));
        }
        live.push(id);
        Ok(Self(id))
    }
}

impl Drop for IdClaim {
    fn drop(&mut self) {
        let mut live = LIVE_WORKER_IDS.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|id| *id != self.0);
    }
}

impl CoreWorker {
    /// A caller in `session` (whose directory finds the workers of this node).
    ///
    /// Errors: [`WorkerError::WorkerIdInUse`] while another `CoreWorker` of
    /// this process has `options.worker_id` (give each its own: see
    /// [`CoreWorkerOptions::new`]); the session's token or directory, or the
    /// event loop, failing.
    pub fn new(session: &Session, options: CoreWorkerOptions) -> Result<Self, WorkerError> {
        super::arg_pull::check_own_endpoint(options.object_manager_address)?;
        let claim = IdClaim::new(options.worker_id)?;
        let token = crate::node::load_or_create_token(session)?;
        let directory = crate::node::Directory::for_session(session)?;
        let mut config = TransportConfig::new(options.worker_id, token);
        config.send_timeout = options.send_timeout;
        let heartbeat_period = config.liveness_timeout / 3;
        let connector = Connector::new(config, options.node_id)
            .with_session(session, std::sync::Arc::new(directory))
            .with_shm_options(options.shm.clone())
            .force_tcp(options.force_tcp);
        let mut mux = Mux::new()?;
        // `get` / `wait` wait as the shm wait strategy says (spin, or spin
        // for its window and then sleep), or spin throughout if asked.
        mux.set_wait(options.shm.wait);
        if options.spin {
            mux.set_spin(true);
        }
        let address = Address {
            node_id: options.node_id,
            ip_address: Ipv4Addr::LOCALHOST.to_string(),
            port: 0,
            worker_id: options.worker_id,
            object_manager_address: options
                .object_manager_address
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        Ok(Self {
            // Ray's root task of a driver is `TaskID::ForDriverTask(job)`,
            // one per job; here several CoreWorkers may share a job, so each
            // gets its own root (`TaskID::ComputeDriverTaskId(worker id)`):
            // the ids of its tasks, their return objects and its put objects
            // then never collide with another caller's in the store.
            driver_task: TaskId::compute_driver_task_id(options.worker_id),
            store: options.store.clone(),
            refs: HashMap::new(),
            ref_counter: RefCounter::new(Arc::new(address.clone())),
            released: Vec::new(),
            put_index: 0,
            stray_replies: 0,
            store_heal_at: Instant::now(),
            releases: Default::default(),
            restarts_connecting: Vec::new(),
            creation_pinned: Vec::new(),
            restart_attempts: HashMap::new(),
            options,
            connector,
            events: Vec::new(),
            unsettled: Vec::new(),
            address,
            task_counter: 0,
            next_child: None,
            mux,
            ready: Vec::new(),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_epoch: 1,
            actors: HashMap::new(),
            tasks: TaskManager::new(),
            resends: HashMap::new(),
            objects: HashMap::new(),
            spare_values: Vec::new(),
            encoder: Encoder::new(),
            lost: Vec::new(),
            cut_off: None,
            silent: Vec::new(),
            stopped_answering: None,
            unreachable: HashMap::new(),
            unavailable: HashMap::new(),
            given_up: None,
            session: session.clone(),
            lock_check_at: Instant::now() + crate::transport::LISTENER_CHECK_INTERVAL,
            drives: 0,
            behind: false,
            normal_submits: 0,
            heartbeats: None,
            heartbeat_period,
            _claim: claim,
        })
    }

    /// This worker's id.
    pub fn worker_id(&self) -> WorkerId {
        self.options.worker_id
    }

    /// This worker's address (the owner address of its [`ObjectRef`]s).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Tasks submitted and not yet finished.
    pub fn num_pending_tasks(&self) -> usize {
        // Replies stored but not settled finished their tasks.
        self.tasks.len().saturating_sub(self.unsettled.len())
    }

    /// How many values (or task errors) this worker's memory store holds:
    /// the objects it owns that are ready and still referenced (a value
    /// goes when the last clone of its [`ObjectRef`] is dropped — counted
    /// at the next call, or [`CoreWorker::release_dropped_refs`] — or on
    /// [`CoreWorker::free`]).
    pub fn num_objects(&self) -> usize {
        self.objects.len()
    }

    /// Connects to `worker` if not connected, waiting for the handshake
    /// (at most the handshake timeout): a first connection, which the call
    /// asked for. Reconnects run on their own threads (`start_attempt`).
    fn ensure_conn(&mut self, worker: WorkerId) -> Result<(), WorkerError> {
        if self.conns.contains_key(&worker) {
            return Ok(());
        }
        let reached = self.connector.connect_worker_entry(&worker);
        self.adopt(worker, reached)
    }

    /// [`Self::ensure_conn`] for a normal task, which need not wait for
    /// its connection: the handshake waits on this thread at most
    /// [`FIRST_HANDSHAKE_WAIT`]; a worker that took the connection but has
    /// not answered by then (stopped, or its loop in a long task until its
    /// helper accepts) is reached on a thread of its own, as a broken
    /// connection is, and the task waits for it in a grace of at least the
    /// handshake timeout (sent once it is reached; failed as unavailable
    /// or dead if it is not, as a reconnect's). Before, the whole handshake
    /// (5 s) waited on this thread at every submission to a stopped
    /// worker, holding every other connection's calls and replies
    /// meanwhile (the attack on `583658f`: nine tasks over three workers,
    /// one stopped, took 15 s). Errors as `ensure_conn` but a timed-out
    /// handshake.
    fn connect_first(&mut self, worker: WorkerId) -> Result<(), WorkerError> {
        if self.conns.contains_key(&worker) || self.unreachable.contains_key(&worker) {
            return Ok(());
        }
        let entry =
            self.connector
                .lookup_worker(&worker)
                .map_err(|source| WorkerError::ConnectWorker {
                    worker_id: worker,
                    source: Box::new(source),
                })?;
        let handshake = self.connector.config().handshake_timeout;
        let started = Instant::now();
        match self
            .connector
            .connect_entry_within(&entry, FIRST_HANDSHAKE_WAIT.min(handshake))
        {
            Err(ConnectError::TimedOut { during }) if FIRST_HANDSHAKE_WAIT < handshake => {
                tracing::debug!(%worker, during, "a first handshake not answered at once: going on without waiting");
                let grace = self.options.reconnect_grace.max(handshake);
                let until = crate::deadline_after(Instant::now(), grace);
                let attempt = self.start_attempt(worker, grace);
                let pid = Some(entry.pid).filter(|&p| p != 0);
                // Its give-up counts the wait on this thread too.
                let u = Unreachable {
                    first: true,
                    since: started,
                    ..Unreachable::trying(pid, until, attempt)
                };
                self.unreachable.insert(worker, u);
                Ok(())
            }
            reached => self.adopt(worker, reached.map(|c| (c, entry))),
        }
    }

    /// Takes the connection an attempt made to `worker` into the mux (or
    /// drops it if one was made meanwhile), or returns its error.
    fn adopt(&mut self, worker: WorkerId, reached: Reached) -> Result<(), WorkerError> {
        let named = |source| WorkerError::ConnectWorker {
            worker_id: worker,
            source: Box::new(source),
        };
        let (conn, entry) = reached.map_err(named)?;
        if self.conns.contains_key(&worker) {
            return Ok(());
        }
        self.check_frames(&conn).map_err(named)?;
        // The kernel's word (shared memory) before the entry's, which any
        // process of this user could have written.
        let pid = conn.peer_pid().or(Some(entry.pid)).filter(|&p| p != 0);
        let kind = conn.kind();
        let key = self.mux.add(conn)?;
        if kind == TransportKind::Tcp {
            self.beat_on(key);
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.conns.insert(
            worker,
            Conn {
                key,
                epoch,
                kind,
                replies: KnownShapes::default(),
                lost: false,
                pid,
                shapes: ShapeSlots::default(),
                queued: None,
                normal_replies: 0,
            },
        );
        self.by_key.insert(key, worker);
        Ok(())
    }

    /// Registers the TCP connection under `key` for heartbeats while the
    /// application makes no call (Ray's core worker answers from an I/O
    /// thread of its own; this one has none): without them a driver busy
    /// for the liveness timeout (5 s) between submitting and `get` was
    /// closed by its workers as silent. The helper thread starts with the
    /// first TCP connection.
    #[cold]
    fn beat_on(&mut self, key: PeerKey) {
        if self.heartbeat_period.is_zero() {
            return;
        }
        if self.heartbeats.is_none() {
            match IdleHeartbeats::start(self.heartbeat_period) {
                Ok(h) => self.heartbeats = Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "no heartbeat thread: TCP connections are closed by workers after the liveness timeout without a call");
                    return;
                }
            }
        }
        if let (Some(h), Some(AnyConnection::Tcp(t))) = (&self.heartbeats, self.mux.get_mut(key)) {
            h.add(key, t.heartbeat_beat());
        }
    }

    /// The longest request a task may encode to: what every connection is
    /// checked to carry ([`Self::check_frames`]), `max_direct_call_object_size`
    /// plus [`CALL_FRAME_HEADROOM`]. Longer requests are refused at
    /// submission ([`WorkerError::RequestTooLarge`]).
    fn max_request_len(&self) -> usize {
        self.options
            .max_direct_call_object_size
            .saturating_add(CALL_FRAME_HEADROOM)
    }

    /// Refuses a connection whose frames cannot carry a call at the inline
    /// limit (`max_direct_call_object_size` plus [`CALL_FRAME_HEADROOM`]
    /// for the rest of the request). On shared memory: rings the worker
    /// shrank (a listener short of ring memory, `ShmOptions::max_ring_memory`,
    /// grants the largest that fit; its `max_ring_capacity` caps any), or
    /// small ones this caller asked for. On either transport: an inline
    /// limit above the worker's largest frame (16 MiB,
    /// `TransportConfig::max_frame_len`). The caller is told why here,
    /// instead of its first large call failing as a lost connection
    /// (attack on `c901956`: 8 KiB rings, a 50 KB argument, "connection
    /// lost"; re-attack on `82d7ce8`: 64 KiB rings the caller asked for;
    /// re-attack on `b6412c6`: a 32 MiB inline limit over TCP, a 20 MB
    /// argument broke the connection, with retries for good).
    #[inline(never)]
    fn check_frames(&self, conn: &AnyConnection) -> Result<(), ConnectError> {
        let need = self.max_request_len();
        let can = conn.max_send_len();
        if can >= need {
            return Ok(());
        }
        let limit = self.options.max_direct_call_object_size;
        // Rings too small for the frame, or (rings large enough, or TCP)
        // the worker's largest frame.
        let reason = match conn
            .ring_fill()
            .filter(|f| f.tx_capacity < need.saturating_add(16))
        {
            Some(fill) => {
                let asked = self.options.shm.ring_capacity;
                let why = if fill.tx_capacity < asked {
                    "the worker granted less: its ShmOptions::max_ring_memory is short, or its \
                     max_ring_capacity is lower"
                } else {
                    "this caller asked for them: raise ShmOptions::ring_capacity or lower \
                     max_direct_call_object_size"
                };
                format!(
                    "worker {} gave {} byte rings (asked: {asked}; {why}): frames of at most \
                     {can} bytes, less than the {need} a call at the inline limit needs \
                     (max_direct_call_object_size {limit} + {CALL_FRAME_HEADROOM})",
                    conn.peer_worker_id(),
                    fill.tx_capacity,
                )
            }
            None => format!(
                "worker {} takes frames of at most {can} bytes (its largest frame, \
                 TransportConfig::max_frame_len), less than the {need} a call at the inline \
                 limit needs (max_direct_call_object_size {limit} + {CALL_FRAME_HEADROOM}): \
                 lower max_direct_call_object_size (large values go through the object store)",
                conn.peer_worker_id(),
            ),
        };
        Err(ConnectError::Refused { reason })
    }

    /// Starts an attempt to reach `worker` again, its handshake bounded by
    /// `timeout` (at least [`RECONNECT_HANDSHAKE_FLOOR`]), on a thread of
    /// its own (see [`Attempt`]). Where no thread can be started, the
    /// attempt fails with that error (and is tried again as any other).
    fn start_attempt(&mut self, worker: WorkerId, timeout: Duration) -> Attempt {
        let (tx, result) = mpsc::sync_channel(1);
        let failed = tx.clone();
        let connector = self.connector.clone();
        let timeout = timeout.max(RECONNECT_HANDSHAKE_FLOOR);
        let waker = match self.mux.waker() {
            Ok(w) => Some(w),
            Err(e) => {
                // Then the attempt is collected when the mux wakes for
                // something else, at the latest after a check interval.
                tracing::warn!(error = %e, "no mux waker for a reconnect attempt");
                None
            }
        };
        let spawned = std::thread::Builder::new()
            .name("shmwire-reconnect".into())
            .spawn(move || {
                let reached = connector.connect_worker_entry_within(&worker, timeout);
                // The caller may have gone: then the connection is dropped.
                let _ = tx.send(reached);
                if let Some(w) = waker {
                    w.wake();
                }
            });
        if let Err(e) = spawned {
            let _ = failed.send(Err(ConnectError::Io {
                op: "start a reconnect thread",
                source: e,
            }));
        }
        Attempt { result }
    }

    fn next_parent_counter(&mut self) -> u64 {
        self.task_counter += 1;
        self.task_counter
    }

    /// The id hash of this worker's child task `counter`: the one hashed
    /// ahead (`prepare_next_child`) if it is that counter's, else hashed now.
    fn child_hash(&mut self, counter: u64) -> ChildTaskHash {
        let (job, parent) = (self.options.job_id, self.driver_task);
        match self.next_child.take() {
            Some(c) if c.is_for(job, parent, counter) => c,
            _ => ChildTaskHash::new(job, parent, counter),
        }
    }

    /// Hashes the next counter's task id now, off the critical path of a
    /// sync call (its request is on its way; the caller will wait).
    fn prepare_next_child(&mut self) {
        let next = self.task_counter + 1;
        let (job, parent) = (self.options.job_id, self.driver_task);
        if !self.next_child.is_some_and(|c| c.is_for(job, parent, next)) {
            self.next_child = Some(ChildTaskHash::new(job, parent, next));
        }
    }

    /// Ray's `LocalDependencyResolver` plus the promotion of large
    /// arguments to the store. By-reference arguments this worker owns are
    /// waited for (up to the step timeout); a small one is inlined, one in
    /// the store stays by reference. With a store and `promote`, an inline
    /// argument is put in the store and passed by reference when it is
    /// larger than `max_direct_call_object_size` or would take the task's
    /// inline total above it (Ray's `task_rpc_inlined_bytes_limit` rule,
    /// with the one limit); references owned elsewhere are passed on as
    /// they are (the executing worker reads them from its store). Without a
    /// store the inline total is checked ([`WorkerError::ArgsTooLarge`]).
    ///
    /// Returns the arguments and the store objects owned here that the task
    /// takes by reference, each pinned once for it (undo with
    /// [`Self::release_task_args`] if the task is not submitted).
    fn resolve_args(
        &mut self,
        args: Vec<TaskArg>,
        promote: bool,
    ) -> Result<(Vec<TaskArg>, Vec<ObjectId>), WorkerError> {
        let max = self.options.max_direct_call_object_size;
        if args.iter().all(|a| matches!(a, TaskArg::Value(_))) {
            let size: usize = args.iter().map(TaskArg::inline_bytes).sum();
            if size <= max {
                // Nothing to resolve: the caller's vector is used as it is.
                return Ok((args, Vec::new()));
            }
            if self.store.is_none() || !promote {
                return Err(WorkerError::ArgsTooLarge {
                    size: size as u64,
                    max: max as u64,
                });
            }
        }
        let mut out = Vec::with_capacity(args.len());
        let mut pinned = Vec::new();
        let r = self.resolve_each(args, promote, &mut out, &mut pinned);
        if let Err(e) = r {
            self.release_args(&pinned);
            return Err(e);
        }
        let size: usize = out.iter().map(TaskArg::inline_bytes).sum();
        if size > max {
            self.release_args(&pinned);
            return Err(WorkerError::ArgsTooLarge {
                size: size as u64,
                max: max as u64,
            });
        }
        Ok((out, pinned))
    }

    fn resolve_each(
        &mut self,
        args: Vec<TaskArg>,
        promote: bool,
        out: &mut Vec<TaskArg>,
        pinned: &mut Vec<ObjectId>,
    ) -> Result<(), WorkerError> {
        let max = self.options.max_direct_call_object_size;
        let by_store = promote && self.store.is_some();
        let mut inline_total = 0usize;
        for a in args {
            match a {
                TaskArg::Value(v) => {
                    let size = v.data.len() + v.metadata.len();
                    if by_store && (size > max || inline_total + size > max) {
                        let id = self.put_in_store(&v.data, &v.metadata)?;
                        self.refs.entry(id).or_default().in_store = true;
                        self.pin_for_task(id, pinned)?;
                        out.push(TaskArg::object_ref(id, self.address.clone()));
                    } else {
                        inline_total += size;
                        out.push(TaskArg::Value(v));
                    }
                }
                TaskArg::ObjectRef(r) if r.owner_address.worker_id != self.options.worker_id => {
                    if self.store.is_none() {
                        return Err(WorkerError::UnresolvedArgument {
                            object_id: r.object_id,
                            reason: format!(
                                "owned by worker {}, and this worker has no object store",
                                r.owner_address.worker_id
                            ),
                        });
                    }
                    // Borrowed: the executing worker reads it from its store.
                    out.push(TaskArg::ObjectRef(r));
                }
                TaskArg::ObjectRef(r) => {
                    let object_id = r.object_id;
                    match self
                        .wait_ready(std::slice::from_ref(&object_id), self.options.step_timeout)
                    {
                        Ok(()) => {}
                        Err(GetError::Worker(e)) => return Err(e),
                        Err(e) => {
                            return Err(WorkerError::UnresolvedArgument {
                                object_id,
                                reason: e.to_string(),
                            })
                        }
                    }
                    let value = match self.objects.get(&object_id) {
                        Some(Ok(Stored::Store(_))) if by_store => None,
                        Some(Ok(v)) => Some(v.bytes().to_vec()),
                        Some(Err(e)) => {
                            return Err(WorkerError::UnresolvedArgument {
                                object_id,
                                reason: e.to_string(),
                            })
                        }
                        None => {
                            return Err(WorkerError::UnresolvedArgument {
                                object_id,
                                reason: "freed".into(),
                            })
                        }
                    };
                    match value {
                        Some(value) => {
                            let size = value.len();
                            if by_store && (size > max || inline_total + size > max) {
                                // A small value owned here, promoted with the rest.
                                let id = self.put_in_store(&value, &[])?;
                                self.refs.entry(id).or_default().in_store = true;
                                self.pin_for_task(id, pinned)?;
                                out.push(TaskArg::object_ref(id, self.address.clone()));
                            } else {
                                inline_total += size;
                                out.push(TaskArg::value(value, Vec::new()));
                            }
                        }
                        None => {
                            self.pin_for_task(object_id, pinned)?;
                            out.push(TaskArg::ObjectRef(r));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts `data` into the store under the next put id (Ray's
    /// `CoreWorker::Put`: `ObjectID::FromIndex(current task, put index)`)
    /// and keeps the owner's reference on it in the memory store.
    fn put_in_store(&mut self, data: &[u8], metadata: &[u8]) -> Result<ObjectId, WorkerError> {
        heal_store(&mut self.store, &mut self.store_heal_at);
        let Some(store) = self.store.as_ref() else {
            return Err(WorkerError::ArgsTooLarge {
                size: data.len() as u64,
                max: self.options.max_direct_call_object_size as u64,
            });
        };
        self.put_index = self.put_index.wrapping_add(1).max(1);
        let id = ObjectId::from_index(self.driver_task, self.put_index);
        let mut b = store.create(id, data.len() as u64, metadata)?;
        b.copy_from_slice(data);
        let buf = b.seal()?;
        self.objects.insert(id, Ok(Stored::Store(buf)));
        Ok(id)
    }

    /// Pins `id` in the store for one task and counts the task as a
    /// reference (Ray's submitted-task reference).
    fn pin_for_task(
        &mut self,
        id: ObjectId,
        pinned: &mut Vec<ObjectId>,
    ) -> Result<(), WorkerError> {
        if let Some(store) = self.store.as_ref() {
            if let Err(e) = store.pin(&[id]) {
                // An object put for this task alone goes at once.
                self.maybe_release(id);
                return Err(e.into());
            }
        }
        self.refs.entry(id).or_default().submitted += 1;
        pinned.push(id);
        Ok(())
    }

    /// Undoes [`Self::pin_for_task`] for each of `ids` (the task finished,
    /// or was never submitted) and frees what is no longer referenced.
    fn release_args(&mut self, ids: &[ObjectId]) {
        for id in ids {
            if let Some(store) = self.store.as_ref() {
                self.releases
                    .send(store, super::releases::Release::Unpin, *id);
            }
            if let Some(st) = self.refs.get_mut(id) {
                st.submitted = st.submitted.saturating_sub(1);
            }
            self.maybe_release(*id);
        }
    }

    /// A finished task no longer references its arguments.
    fn release_task_args(&mut self, payload: &Payload) {
        if !payload.store_args.is_empty() {
            let ids = payload.store_args.clone();
            self.release_args(&ids);
        }
    }

    /// Frees `id` if nothing references it any more: its value leaves the
    /// memory store and, if it is in the object store, it is deleted there
    /// (Ray's owner deleting an out-of-scope object).
    fn maybe_release(&mut self, id: ObjectId) {
        let Some(st) = self.refs.get(&id).copied() else {
            return;
        };
        if st.local || st.submitted > 0 || self.owns_pending(id) {
            return;
        }
        self.refs.remove(&id);
        self.forget(id, st);
    }

    /// The rest of [`Self::maybe_release`] once `id`'s reference state
    /// `st` left `refs`: its value goes, and its store copy is deleted.
    fn forget(&mut self, id: ObjectId, st: RefState) {
        let removed = self.objects.remove(&id);
        let in_store = st.in_store || matches!(removed, Some(Ok(Stored::Store(_))));
        // Release the owner's reference before the delete, so that the
        // delete frees the object at once if nobody else holds it.
        self.recycle_value(removed);
        if in_store {
            if let Some(store) = self.store.as_ref() {
                self.releases
                    .send(store, super::releases::Release::Delete, id);
            }
        }
    }

    /// Processes the [`ObjectRef`]s dropped since the last call: each
    /// object whose last reference went away (and that no pending task
    /// uses) is forgotten and deleted from the object store. Every submit,
    /// `get`, `wait`, `put` and `free` does this first; call it to free
    /// store memory while doing none of those. Returns how many references
    /// were processed. The deletes go to the store on a thread of the
    /// owner's (as Ray's owner deletes asynchronously), done a moment
    /// later: a store that stops answering holds up no call that does not
    /// use it.
    #[inline]
    pub fn release_dropped_refs(&mut self) -> usize {
        // Called three times per sync call: the usual nothing-to-do is one
        // load, inlined.
        if !self.ref_counter.has_released() {
            return 0;
        }
        self.process_released_refs()
    }

    /// [`Self::release_dropped_refs`] once something was released.
    #[inline(never)]
    fn process_released_refs(&mut self) -> usize {
        // Their store objects are deleted (on the releases' thread).
        let mut ids = std::mem::take(&mut self.released);
        let n = self.ref_counter.take_released(&mut ids);
        for id in ids.drain(..) {
            match self.refs.get_mut(&id) {
                Some(st) => {
                    st.local = false;
                    self.maybe_release(id);
                }
                None if self.store.is_none() => self.release_untracked(id),
                None => {}
            }
        }
        self.released = ids;
        n
    }

    /// Without a store, objects have a [`RefState`] only once their last
    /// reference went while their task was pending (`new_ref` makes none:
    /// nothing on a sync call's path needs it). Such an object is dropped
    /// now, or — its task pending — marked unreferenced, which drops its
    /// value when the task finishes (`store_result`, `maybe_release`).
    fn release_untracked(&mut self, id: ObjectId) {
        if self.owns_pending(id) {
            self.refs.insert(id, RefState::default());
        } else {
            let removed = self.objects.remove(&id);
            self.recycle_value(removed);
        }
    }

    /// A reference to `object_id`, owned here and counted (in `refs` with
    /// a store, which counts pins too; by its token alone without one).
    fn new_ref(&mut self, object_id: ObjectId) -> ObjectRef {
        if self.store.is_some() {
            self.refs.entry(object_id).or_default().local = true;
        }
        // A sync call's reference reuses the last call's token.
        ObjectRef {
            local: self.ref_counter.new_ref(object_id),
        }
    }

    /// Stores a task's outcome under `object_id` (and frees it at once if
    /// every reference to it was dropped while the task ran).
    fn store_result(&mut self, object_id: ObjectId, result: Result<Stored, TaskError>) {
        // `maybe_release`'s test, without a second lookup when the
        // reference is still held (the usual case).
        let unreferenced = match self.refs.get_mut(&object_id) {
            Some(st) => {
                if matches!(result, Ok(Stored::Store(_))) {
                    st.in_store = true;
                }
                !st.local && st.submitted == 0
            }
            None => false,
        };
        self.objects.insert(object_id, result);
        if unreferenced {
            self.maybe_release(object_id);
        }
    }

    /// Puts `data` as a new object owned by this worker (Ray's `Put`) and
    /// returns its reference. With a store, a value above
    /// `max_direct_call_object_size` goes to the store under
    /// `ObjectId::from_index(root task, put index)`; smaller ones (and all
    /// without a store) stay in this worker's memory store. Passed as an
    /// argument, a store object travels by reference, a small one inline.
    ///
    /// # Errors
    /// [`WorkerError::Store`] (e.g. `StoreFull`).
    pub fn put(&mut self, data: &[u8]) -> Result<ObjectRef, WorkerError> {
        self.release_dropped_refs();
        let id = if self.store.is_some() && data.len() > self.options.max_direct_call_object_size {
            let id = self.put_in_store(data, &[])?;
            self.refs.entry(id).or_default().in_store = true;
            id
        } else {
            self.put_index = self.put_index.wrapping_add(1).max(1);
            let id = ObjectId::from_index(self.driver_task, self.put_index);
            self.objects.insert(id, Ok(Stored::Inline(data.to_vec())));
            id
        };
        Ok(self.new_ref(id))
    }

    /// Submits a normal task running `function` on worker `worker` (Ray's
    /// `SubmitTask`, with the worker chosen by the caller instead of leased
    /// from a raylet). Returns the reference of its return value.
    pub fn submit_task(
        &mut self,
        worker: WorkerId,
        function: FunctionDescriptor,
        args: Vec<TaskArg>,
        options: TaskOptions,
    ) -> Result<ObjectRef, WorkerError> {
        if self.behind {
            self.keep_up(worker);
        }
        self.release_dropped_refs();
        self.reach_again(worker);
        // A worker in its reconnect grace takes the task when it is
        // reached again (or fails it with the others if it is not); so
        // does one whose first handshake is slow to come.
        self.connect_first(worker)?;
        let (args, store_args) = self.resolve_args(args, true)?;
        let counter = self.next_parent_counter();
        let spec = TaskSpecBuilder::new(function)
            .job_id(self.options.job_id)
            .parent(self.driver_task, counter)
            .caller_address(self.address.clone())
            .args(args)
            .num_returns(1)
            .max_retries(options.max_retries)
            .build_normal_task();
        let request = new_request(worker, spec);
        let max_len = self.max_request_len();
        if let Err(e) = check_request_len(&mut self.encoder, &request, max_len) {
            self.release_args(&store_args);
            return Err(e);
        }
        let object_id = request.task_spec.return_id(0);
        let oref = self.new_ref(object_id);
        self.push_to_worker(worker, request, options.max_retries, store_args);
        // Behind: requests queued, a connection lost (its tasks wait for
        // the loss to be handled), or replies to read — over TCP a worker
        // takes requests as fast as they come, so only its replies pile up
        // (unread, each keeping its task's request, arguments and all).
        self.normal_submits = self.normal_submits.wrapping_add(1);
        // Added to, never cleared here: `keep_up` clears it only while no
        // connection holds queued requests (a submission to another worker
        // must not clear what a full queue set).
        self.behind |= self.normal_submits % NORMAL_SUBMITS_PER_READ == 0
            || !self.lost.is_empty()
            || self.queued_for(worker) > 0;
        Ok(oref)
    }

    /// Sends (or re-sends) a pending normal or creation task to its worker;
    /// a failed send is handled as the connection's loss.
    /// Records a task bound for `worker` (normal or actor creation) as
    /// pending and sends it; returns its first return object's id.
    fn push_to_worker(
        &mut self,
        worker: WorkerId,
        request: Box<PushTaskRequest>,
        max_retries: i32,
        store_args: Vec<ObjectId>,
    ) -> ObjectId {
        let task_id = request.task_spec.task_id;
        let object_id = request.task_spec.return_id(0);
        self.tasks.add(
            task_id,
            Payload {
                request,
                target: Target::Normal(worker),
                call: None,
                request_id: None,
                store_args,
                strays_at_submit: self.stray_replies,
            },
            max_retries,
        );
        match self.unreachable.get_mut(&worker) {
            Some(u) if !self.conns.contains_key(&worker) => u.unsent.push(task_id),
            _ => self.send_normal(task_id),
        }
        object_id
    }

    fn send_normal(&mut self, task_id: TaskId) {
        let Some(t) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let Target::Normal(worker) = t.payload.target else {
            return;
        };
        let conn = self.conns.get(&worker);
        // A normal task has no sequence number; its request acknowledges
        // the normal-task replies this connection delivered and this caller
        // processed (their index, from 0, on the connection; -1: none), so
        // the worker releases its references on their store returns. A
        // shmwire use of Ray's field: Ray's owner pins through the raylet
        // instead (`docs/worker.md`, "Object references").
        t.payload.request.client_processed_up_to = conn.map_or(-1, |c| c.normal_replies as i64 - 1);
        let t = &*t;
        let epoch = conn.map(|c| c.epoch);
        let sent = send_request(&mut self.mux, &mut self.encoder, conn, &t.payload.request);
        match sent {
            Ok(epoch) => {
                self.tasks.mark_sent(&task_id, epoch);
            }
            Err(e) => {
                tracing::debug!(error = %e, %worker, "send failed");
                self.send_failed(worker, &e);
                match epoch {
                    // Not sent: its attempt goes with the lost connection,
                    // retried or failed when the loss is handled
                    // (`TaskManager::connection_lost`).
                    Some(epoch) => {
                        self.tasks.mark_sent(&task_id, epoch);
                    }
                    None => self.retry_or_fail_normal(task_id, false),
                }
            }
        }
    }

    /// Creates an actor of class `module_path::class_name` on worker
    /// `worker` (an actor creation task; the worker's current actor becomes
    /// it) and waits for the creation to finish, at most the step timeout.
    /// Unlike Ray, which returns the handle at once and queues calls until
    /// the actor is alive, this returns only once the actor exists, so a
    /// failed constructor is reported here. `args` are resolved as a
    /// task's: values above `max_direct_call_object_size` go through the
    /// object store (Ray's `LocalDependencyResolver`).
    ///
    /// # Errors
    /// [`WorkerError::ConnectWorker`] (or [`WorkerError::Lookup`]) when
    /// `worker` cannot be reached; [`WorkerError::CreationArgsTooLarge`]
    /// for arguments above the inline limit without an object store;
    /// [`WorkerError::ActorCreation`] when the constructor failed (or the
    /// class is unknown there); [`WorkerError::TimedOut`] after the step
    /// timeout.
    pub fn create_actor(
        &mut self,
        worker: WorkerId,
        module_path: &str,
        class_name: &str,
        args: Vec<TaskArg>,
        max_task_retries: i32,
    ) -> Result<ActorHandle, WorkerError> {
        self.create_actor_with(
            worker,
            module_path,
            class_name,
            args,
            ActorOptions {
                max_task_retries,
                ..ActorOptions::default()
            },
        )
    }

    /// [`CoreWorker::create_actor`] with restarts: when the actor's process
    /// dies (its connection breaks and its worker is gone from the
    /// directory) and `max_restarts` allows, the creation task is run again
    /// on the next of `restart_workers`; the actor's tasks then continue
    /// there, in order. Tasks that were sent to the dead incarnation are
    /// retried up to their `max_retries` (the new incarnation runs them
    /// from a fresh constructor; replies from the old one, on an older
    /// connection epoch, are ignored), those without retries left fail with
    /// [`TaskError::ActorDied`]; tasks not yet sent wait for the restart.
    /// Without restarts left (or if the restart's creation task fails) the
    /// actor is dead and every pending and later task fails with `ActorDied`.
    ///
    /// # Errors
    /// As [`CoreWorker::create_actor`].
    pub fn create_actor_with(
        &mut self,
        worker: WorkerId,
        module_path: &str,
        class_name: &str,
        args: Vec<TaskArg>,
        options: ActorOptions,
    ) -> Result<ActorHandle, WorkerError> {
        let max_task_retries = options.max_task_retries;
        self.release_dropped_refs();
        self.reach_again(worker);
        self.ensure_conn(worker)?;
        // Large ones promoted to the store, as a method's (Ray's
        // `LocalDependencyResolver` treats a creation task as any other).
        let (args, store_args) = self.resolve_args(args, true).map_err(|e| match e {
            WorkerError::ArgsTooLarge { size, max } => {
                WorkerError::CreationArgsTooLarge { size, max }
            }
            e => e,
        })?;
        // A restart runs the creation task again with them long after this
        // call: an actor that can restart holds them pinned for its life
        // (Ray keeps a creation task's arguments while the actor can
        // restart), released by `release_creation_args` once it cannot.
        // Taken before the creation task's own pins go with its reply.
        let mut life_pins = Vec::new();
        if options.max_restarts != 0 && !options.restart_workers.is_empty() {
            for id in &store_args {
                if let Err(e) = self.pin_for_task(*id, &mut life_pins) {
                    self.release_args(&life_pins);
                    self.release_args(&store_args);
                    return Err(e);
                }
            }
        }
        let counter = self.next_parent_counter();
        let actor_id = ActorId::of(self.options.job_id, self.driver_task, counter);
        let function = FunctionDescriptor::rust(module_path, class_name, CONSTRUCTOR_NAME);
        let spec = TaskSpecBuilder::new(function)
            .job_id(self.options.job_id)
            .parent(self.driver_task, counter)
            .caller_address(self.address.clone())
            .args(args)
            .build_actor_creation_task(ActorCreationTaskSpec {
                actor_id,
                max_actor_restarts: i64::from(options.max_restarts),
                max_task_retries: i64::from(max_task_retries),
                // 0 (unset) is Ray's default of 1; the worker checks the rest.
                max_concurrency: if options.max_concurrency == 0 {
                    1
                } else {
                    options.max_concurrency
                },
                concurrency_groups: options.concurrency_groups.clone(),
                ..Default::default()
            });
        let restarts = (options.max_restarts != 0).then(|| Restarts {
            spec: spec.clone(),
            left: options.max_restarts.max(-1),
            standby: options.restart_workers.iter().copied().collect(),
            count: 0,
            pending: None,
            connecting: None,
            failed: None,
            creation_args: Vec::new(),
        });
        let request = new_request(worker, spec);
        let max_len = self.max_request_len();
        if let Err(e) = check_request_len(&mut self.encoder, &request, max_len) {
            self.release_args(&life_pins);
            self.release_args(&store_args);
            return Err(e);
        }
        let object_id = self.push_to_worker(worker, request, 0, store_args);
        let result = self
            .wait_ready(std::slice::from_ref(&object_id), self.options.step_timeout)
            .and_then(|()| match self.objects.remove(&object_id) {
                Some(Ok(_)) => Ok(()),
                Some(Err(error)) => Err(GetError::Task { object_id, error }),
                None => Err(GetError::UnknownObject(object_id)),
            });
        let handle = ActorHandle::new(actor_id, worker, module_path, class_name);
        let created = match result {
            Ok(()) => self.register_actor(&handle, max_task_retries),
            Err(GetError::Task { error, .. }) => {
                Err(WorkerError::ActorCreation { actor_id, error })
            }
            Err(GetError::Worker(e)) => Err(e),
            Err(GetError::TimedOut { .. }) => {
                Err(WorkerError::TimedOut("waiting for the actor creation task"))
            }
            Err(GetError::UnknownObject(_)) => {
                Err(WorkerError::TimedOut("the actor creation task vanished"))
            }
        };
        if let Err(e) = created {
            self.release_args(&life_pins);
            return Err(e);
        }
        let Some(a) = self.actors.get_mut(&actor_id) else {
            // (`register_actor` made the entry: not reached.)
            self.release_args(&life_pins);
            return Ok(handle);
        };
        a.max_pending_calls = usize::try_from(options.max_pending_calls).unwrap_or(0);
        a.restarts = restarts.map(|r| Restarts {
            creation_args: life_pins,
            ..r
        });
        if a.restarts
            .as_ref()
            .is_some_and(|r| !r.creation_args.is_empty())
        {
            self.creation_pinned.push(actor_id);
        }
        Ok(handle)
    }

    /// Attaches a handle to an actor created elsewhere (Ray's
    /// `AddActorHandle` when a handle is deserialized): connects to its
    /// worker and starts this caller's own submit queue for it, with actor
    /// counters from 0. A handle already known is left as it is.
    pub fn register_actor(
        &mut self,
        actor: &ActorHandle,
        max_task_retries: i32,
    ) -> Result<(), WorkerError> {
        if self.actors.contains_key(&actor.actor_id) {
            return Ok(());
        }
        self.reach_again(actor.worker_id);
        self.ensure_conn(actor.worker_id)?;
        let mut queue = ActorSubmitQueue::new();
        let evs = queue.connect();
        debug_assert!(evs.is_empty());
        self.actors.insert(
            actor.actor_id,
            ActorEntry {
                worker: actor.worker_id,
                restarts: None,
                queue,
                next_counter: 0,
                cursor: ObjectId::for_actor_handle(actor.actor_id),
                max_task_retries,
                max_pending_calls: 0,
                finished: SeqMap::new(),
                calls: Vec::new(),
            },
        );
        Ok(())
    }

    /// Calls `method` on `actor` (Ray's `SubmitActorTask`): builds the spec,
    /// hands it to the actor's [`ActorSubmitQueue`] (which assigns the
    /// sequence number) and sends what the queue releases. Uses the actor's
    /// `max_task_retries`.
    pub fn submit_actor_task(
        &mut self,
        actor: &ActorHandle,
        method: &str,
        args: Vec<TaskArg>,
    ) -> Result<ObjectRef, WorkerError> {
        self.submit_actor_call(actor, method, args, None)
    }

    /// [`CoreWorker::submit_actor_task`] with explicit options.
    pub fn submit_actor_task_with(
        &mut self,
        actor: &ActorHandle,
        method: &str,
        args: Vec<TaskArg>,
        options: TaskOptions,
    ) -> Result<ObjectRef, WorkerError> {
        self.submit_actor_call(actor, method, args, Some(options))
    }

    /// Ends `actor` gracefully (Ray's `actor.__ray_terminate__.remote()`):
    /// submits [`TERMINATE_METHOD`](crate::worker::TERMINATE_METHOD) as the
    /// actor's next task, so every call this caller submitted before runs
    /// and replies first. Its return is an empty value once the actor is
    /// gone (`get` it to know the earlier calls all ran); the actor's
    /// worker then exits ([`Worker::serve_until_exit`](crate::worker::Worker::serve_until_exit))
    /// and is not restarted, whatever its `max_restarts`: from this call
    /// on, as Ray's GCS treats an actor whose exit was asked for, so a
    /// process that dies before the terminate ran (or replied) is not
    /// restarted either (the attack on `b5ede7b`: it came back on a
    /// standby). A restart already under way completes, and the terminate
    /// then ends that incarnation. Calls submitted after it fail with
    /// [`TaskError::ActorDied`](crate::worker::TaskError::ActorDied)
    /// when the worker's connection ends (Ray's `RayActorError`). Not
    /// retried: a terminate that the connection lost fails the same way.
    ///
    /// # Errors
    /// As [`CoreWorker::submit_actor_task`].
    pub fn terminate_actor(&mut self, actor: &ActorHandle) -> Result<ObjectRef, WorkerError> {
        let r = self.submit_actor_call(
            actor,
            super::registry::TERMINATE_METHOD,
            Vec::new(),
            Some(TaskOptions { max_retries: 0 }),
        )?;
        if let Some(restarts) = self.restarts_mut(actor.actor_id) {
            restarts.left = 0;
        }
        // Its creation arguments are needed no more (unless a restart is
        // under way, which keeps them until it ends).
        if !self.creation_pinned.is_empty() {
            self.release_creation_args();
        }
        Ok(r)
    }

    /// [`CoreWorker::submit_actor_task_with`]; `None` takes the actor's
    /// `max_task_retries`.
    fn submit_actor_call(
        &mut self,
        actor: &ActorHandle,
        method: &str,
        args: Vec<TaskArg>,
        options: Option<TaskOptions>,
    ) -> Result<ObjectRef, WorkerError> {
        if self.behind {
            if let Some(worker) = self.actors.get(&actor.actor_id).map(|a| a.worker) {
                self.keep_up(worker);
            }
        }
        self.release_dropped_refs();
        let Some(worker) = self.actors.get(&actor.actor_id).map(|a| a.worker) else {
            return Err(WorkerError::UnknownActor(actor.actor_id));
        };
        self.reach_again(worker);
        let (args, store_args) = self.resolve_args(args, true)?;
        let parent_counter = self.next_parent_counter();
        let child = self.child_hash(parent_counter);
        let (job, driver_task) = (self.options.job_id, self.driver_task);
        let max_len = self.max_request_len();
        let Some(mut entry) = self.actors.get_mut(&actor.actor_id) else {
            self.release_args(&store_args);
            return Err(WorkerError::UnknownActor(actor.actor_id));
        };
        if entry.max_pending_calls > 0 && entry.pending_calls() >= entry.max_pending_calls {
            let room = self.pending_calls_room(actor.actor_id);
            entry = match (room, self.actors.get_mut(&actor.actor_id)) {
                (Ok(()), Some(entry)) => entry,
                (room, _) => {
                    self.release_args(&store_args);
                    return Err(room
                        .err()
                        .unwrap_or(WorkerError::UnknownActor(actor.actor_id)));
                }
            };
        }
        let options = options.unwrap_or(TaskOptions {
            max_retries: entry.max_task_retries,
        });
        let counter = entry.next_counter;
        let target = ActorTaskTarget {
            actor_id: actor.actor_id,
            actor_counter: counter,
            previous_cursor: entry.cursor,
            caller_starts_at: entry.queue.caller_starts_at(),
        };
        // The spec: a finished call of the same method re-aimed at this
        // one (no string built, nothing allocated), else built in full.
        let (call, request, fits) = match entry.call_template(actor, method) {
            Some(i) => {
                let c = &mut entry.calls[i];
                let mut request = c.spare.pop().unwrap_or_else(|| c.first.clone());
                TaskSpecBuilder::rebuild_actor_task_hashed(
                    &mut request.task_spec,
                    &child,
                    args,
                    options.max_retries,
                    target,
                );
                // Of a shape sent before: as long as that one. Else (new
                // argument shapes, references) measured before it is
                // sequenced: a request no connection carries would leave
                // a gap in the actor's sequence.
                let fits = c.stamp.as_ref().is_some_and(|s| s.fits(&request));
                if !fits {
                    if let Err(e) = check_request_len(&mut self.encoder, &request, max_len) {
                        self.release_args(&store_args);
                        return Err(e);
                    }
                }
                (Some(i), request, Some(fits))
            }
            None => {
                let spec = TaskSpecBuilder::new(actor.method_descriptor(method))
                    .job_id(job)
                    .parent(driver_task, parent_counter)
                    .caller_address(self.address.clone())
                    .args(args)
                    .num_returns(1)
                    .max_retries(options.max_retries)
                    .concurrency_group_name(actor.concurrency_group.clone())
                    .build_actor_task(target);
                let request = new_request(entry.worker, spec);
                // Before a template keeps it (a method name of megabytes).
                if let Err(e) = check_request_len(&mut self.encoder, &request, max_len) {
                    self.release_args(&store_args);
                    return Err(e);
                }
                // Templates for the first methods called (a caller that
                // invents method names keeps building specs, not memory).
                if entry.calls.len() < MAX_CALL_TEMPLATES {
                    let mut first = request.clone();
                    first.task_spec.args.clear();
                    entry.calls.push(CallTemplate {
                        module_path: actor.module_path.clone(),
                        class_name: actor.class_name.clone(),
                        method: method.to_owned(),
                        group: actor.concurrency_group.clone(),
                        first,
                        spare: Vec::new(),
                        stamp: None,
                        stamp_misses: 0,
                    });
                    // A new template has no stamp yet.
                    (Some(entry.calls.len() - 1), request, Some(false))
                } else {
                    (None, request, None)
                }
            }
        };
        let spec = &request.task_spec;
        // The id hashed ahead must be this counter's (tests run with debug
        // assertions, and mix normal tasks, which take counters too).
        debug_assert_eq!(
            spec.task_id,
            TaskId::for_actor_task(job, driver_task, parent_counter, actor.actor_id),
            "an actor task's id hashed for another counter"
        );
        entry.next_counter += 1;
        entry.cursor = spec.actor_dummy_object_id().unwrap_or(entry.cursor);
        let task_id = spec.task_id;
        let object_id = spec.return_id(0);
        let meta = TaskMeta {
            actor_counter: counter,
            inline_arg_bytes: spec.inline_arg_bytes() as u64,
            max_retries: options.max_retries,
        };
        let mut evs = std::mem::take(&mut self.events);
        if let Err(e) = entry.queue.submit_into(meta, task_id, true, &mut evs) {
            // Counters come from this handle only: cannot clash.
            tracing::error!(error = %e, "actor submit queue refused a fresh counter");
        }
        // The usual case: the queue sends this task at once, first. It goes
        // out now, from the request in hand; the bookkeeping (the pending
        // entry, the object reference, any later events) follows while it
        // travels (the caller only waits after this returns).
        let mut request = request;
        let (mut request_id, mut sent) = (None, None);
        if matches!(evs.first(), Some(SubmitEvent::Send(r)) if r.task == task_id) {
            // Usually the only event: taken without shifting the rest.
            let first = if evs.len() == 1 {
                evs.pop()
            } else {
                Some(evs.remove(0))
            };
            if let Some(SubmitEvent::Send(r)) = first {
                stamp_push(
                    &mut request,
                    entry.worker,
                    &r,
                    entry.queue.caller_starts_at(),
                );
                request_id = Some(r.id);
                let template = call.and_then(|i| entry.calls.get_mut(i));
                let conn = self.conns.get_mut(&entry.worker);
                let key = conn.as_ref().map(|c| c.key);
                sent = Some(send_stamped(
                    &mut self.mux,
                    &mut self.encoder,
                    conn,
                    &request,
                    template,
                    fits,
                ));
                // Queued behind a full ring or socket: behind (added to,
                // as in `submit_task`). The hint takes no lock (TCP's
                // write buffer has one, for its heartbeat helper).
                self.behind |= key
                    .and_then(|k| self.mux.get_mut(k))
                    .is_some_and(|c| c.pending_send_hint() > 0);
            }
        }
        // Not sent at once (the byte budget, a restart), or a connection
        // lost: behind.
        self.behind |= request_id.is_none() | !self.lost.is_empty();
        let worker = entry.worker;
        self.tasks.add(
            task_id,
            Payload {
                request,
                target: Target::Actor(actor.actor_id),
                call,
                request_id,
                store_args,
                strays_at_submit: self.stray_replies,
            },
            options.max_retries,
        );
        match sent {
            Some(Ok(epoch)) => {
                self.tasks.mark_sent(&task_id, epoch);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, %worker, "send to actor failed");
                self.send_failed(worker, &e);
            }
            None => {}
        }
        let oref = self.new_ref(object_id);
        self.actor_events(actor.actor_id, &mut evs, None);
        self.events = evs;
        self.prepare_next_child();
        Ok(oref)
    }

    /// Bytes of requests queued on the connection to `worker` (its ring or
    /// socket full); 0 without a usable connection.
    fn queued_for(&mut self, worker: WorkerId) -> usize {
        let Some(key) = self.conns.get(&worker).filter(|c| !c.lost).map(|c| c.key) else {
            return 0;
        };
        self.mux.get(key).map_or(0, |c| c.pending_send_bytes())
    }

    /// Whether `actor_id`, at its `max_pending_calls`, has room for one more
    /// call once the replies that came meanwhile are read and settled (a
    /// reply `get` returned is settled only when the caller next waits,
    /// and this caller has no thread that reads replies): the count is then
    /// the calls still unanswered (re-attack on `b6412c6`: submit, `get`,
    /// submit was refused — and refused for good without another `get`).
    #[cold]
    #[inline(never)]
    fn pending_calls_room(&mut self, actor_id: ActorId) -> Result<(), WorkerError> {
        let _ = self.drive(Duration::ZERO);
        match self.actors.get(&actor_id) {
            Some(a) if a.pending_calls() >= a.max_pending_calls => {
                Err(WorkerError::PendingCallsLimitExceeded {
                    actor_id,
                    max: a.max_pending_calls,
                })
            }
            _ => Ok(()),
        }
    }

    /// Reads replies while submitting to `worker`, when the previous
    /// submission found this caller behind ([`CoreWorker::behind`]): one
    /// round of `drive` without waiting (replies read and settled, which
    /// frees the submit queues' byte budget and sends what waited for it;
    /// queued requests handed over), then, while the requests queued on
    /// `worker`'s connection pass 7/8 of `TransportConfig::send_queue_limit`
    /// (the next request might not fit, and its send would wait without
    /// reading: requests carry at most the inline limit, far below the
    /// last eighth), rounds of 1 ms, at most the send timeout. Only the
    /// connection the submission goes to is waited for: a worker that takes
    /// nothing (stopped) holds up no submission to another. A caller that only submits — Ray's
    /// `actor.log.remote(x)` in a loop, the references dropped, nothing got
    /// — otherwise read no reply: its worker held it back, its requests
    /// piled up in its memory without bound (7.5 GB in 40 s, the attack on
    /// `4b2e27d`) and it was cut off after `unread_reply_timeout` (then
    /// 30 s by default); a normal
    /// task's send blocked on the full queue for the send timeout while the
    /// worker waited for the caller to read. Costs nothing while a caller
    /// keeps up (one flag read per submission).
    #[cold]
    #[inline(never)]
    fn keep_up(&mut self, worker: WorkerId) {
        self.behind = false;
        let _ = self.drive(Duration::ZERO);
        let limit = self.connector.config().send_queue_limit;
        let nearly_full = limit - limit / 8;
        let bound = self.connector.config().send_timeout;
        let start = Instant::now();
        while self.queued_for(worker) > nearly_full && start.elapsed() < bound {
            let _ = self.drive(KEEP_UP_WAIT);
        }
        // Still behind while any connection holds queued requests: a
        // submission to `worker` after one to another worker whose queue
        // is still full waits for that one then (before, a submission to B
        // cleared the flag that A's full queue had set, and the next one
        // to A was sent without reading).
        self.behind = self.conns.values().any(|c| {
            !c.lost
                && self
                    .mux
                    .get_mut(c.key)
                    .is_some_and(|m| m.pending_send_bytes() > 0)
        });
    }

    /// The bookkeeping of the value replies `drain` stored at once
    /// ([`Unsettled`]), in the order they came: the submit queue's
    /// `on_reply` (which may send queued requests), the pending entry
    /// finished, its request recycled. Runs when the caller waits again
    /// (`drive`), before the next reply is read, and before a lost
    /// connection, an unreachable worker or a restart is handled. Between,
    /// the task still counts in flight for its submit queue (a request sent
    /// meanwhile carries a `client_processed_up_to` one reply behind, which
    /// only lets the worker skip less, and may wait for the byte budget)
    /// and as pending in the task table (`num_pending_tasks` subtracts it;
    /// its object is freed once settled if its references went meanwhile).
    fn settle_replies(&mut self) {
        if self.unsettled.is_empty() {
            return;
        }
        let mut unsettled = std::mem::take(&mut self.unsettled);
        for u in unsettled.drain(..) {
            let mut evs = std::mem::take(&mut self.events);
            match self.actors.get_mut(&u.actor_id) {
                Some(a) => {
                    a.queue
                        .on_reply_into(u.request, ordering::ReplyOutcome::Ok, &mut evs);
                    self.actor_events(u.actor_id, &mut evs, Some((u.task, ReplyValue::Stored)));
                }
                None => {
                    if let Some(p) = self.tasks.finish(&u.task) {
                        self.release_task_args(&p);
                        self.maybe_release(p.request.task_spec.return_id(0));
                    }
                }
            }
            self.events = evs;
        }
        // Nothing above reads a connection, so nothing was added meanwhile.
        debug_assert!(self.unsettled.is_empty());
        self.unsettled = unsettled;
    }

    /// Carries out what an actor's submit queue decided. `reply` is the
    /// outcome of the reply being processed (its task and result), if any.
    fn actor_events(
        &mut self,
        actor_id: ActorId,
        evs: &mut Vec<SubmitEvent<TaskId>>,
        mut reply: Option<(TaskId, ReplyValue)>,
    ) {
        for ev in evs.drain(..) {
            match ev {
                SubmitEvent::Send(r) => self.send_actor(actor_id, r),
                SubmitEvent::Completed {
                    actor_counter,
                    task,
                } => {
                    let result = match reply.take() {
                        Some((t, result)) if t == task => Some(result),
                        other => {
                            reply = other;
                            None
                        }
                    };
                    self.finish_actor_task(actor_id, actor_counter, task, result);
                }
                SubmitEvent::Failed {
                    actor_counter,
                    task,
                    error,
                } => {
                    let from_reply = match reply.take() {
                        Some((t, ReplyValue::Fresh(Err(e)))) if t == task => Some(e),
                        Some((t, ReplyValue::Stored)) if t == task => {
                            // Its value is stored: that reply stands.
                            self.finish_actor_task(
                                actor_id,
                                actor_counter,
                                task,
                                Some(ReplyValue::Stored),
                            );
                            continue;
                        }
                        other => {
                            reply = other;
                            None
                        }
                    };
                    let function = self
                        .tasks
                        .get(&task)
                        .map(|t| t.payload.function())
                        .unwrap_or_default();
                    let worker = self.actors.get(&actor_id).map(|a| a.worker);
                    let restart_failed = self
                        .actors
                        .get(&actor_id)
                        .and_then(|a| a.restarts.as_ref()?.failed.clone());
                    let err = from_reply.unwrap_or_else(|| match (error, worker) {
                        (TaskFailure::ActorDied, Some(w)) => {
                            self.loss_error(w, function, |function, stopped_answering| {
                                TaskError::ActorDied {
                                    actor_id,
                                    function,
                                    stopped_answering,
                                    restart_failed,
                                }
                            })
                        }
                        (TaskFailure::ActorUnavailable, Some(w)) => {
                            let unreachable = self.given_up_reason(w);
                            self.loss_error(w, function, |function, stopped_answering| {
                                TaskError::ActorUnavailable {
                                    actor_id,
                                    function,
                                    stopped_answering,
                                    unreachable,
                                }
                            })
                        }
                        (TaskFailure::ActorDied, None) => TaskError::ActorDied {
                            actor_id,
                            function,
                            stopped_answering: None,
                            restart_failed: None,
                        },
                        (TaskFailure::ActorUnavailable, None) => TaskError::ActorUnavailable {
                            actor_id,
                            function,
                            stopped_answering: None,
                            unreachable: None,
                        },
                        (TaskFailure::Cancelled, _) => TaskError::Cancelled { function },
                    });
                    self.finish_actor_task(
                        actor_id,
                        actor_counter,
                        task,
                        Some(ReplyValue::Fresh(Err(err))),
                    );
                }
                SubmitEvent::Retrying {
                    actor_counter,
                    retries_left,
                } => {
                    tracing::debug!(%actor_id, actor_counter, retries_left, "retrying actor task");
                }
                SubmitEvent::ExcessQueueing {
                    num_queued,
                    threshold,
                } => {
                    tracing::warn!(%actor_id, num_queued, threshold, "excess queueing");
                }
            }
        }
        if let Some(entry) = self.actors.get_mut(&actor_id) {
            let ntrp = entry.queue.next_task_reply_position();
            let dead = entry.queue.state() == ordering::ActorState::Dead;
            while entry
                .finished
                .first()
                .is_some_and(|(counter, _)| dead || counter < ntrp)
            {
                let Some((_, (request, call))) = entry.finished.pop_first() else {
                    break;
                };
                entry.recycle(call, request);
            }
        }
    }

    fn finish_actor_task(
        &mut self,
        actor_id: ActorId,
        counter: u64,
        task: TaskId,
        result: Option<ReplyValue>,
    ) {
        let Some(payload) = self.tasks.finish(&task) else {
            // A skip_execution re-send of a task finished earlier.
            return;
        };
        self.release_task_args(&payload);
        let object_id = payload.request.task_spec.return_id(0);
        match result {
            Some(ReplyValue::Fresh(result)) => self.store_result(object_id, result),
            // Stored while the task was pending, which kept it from being
            // freed then.
            Some(ReplyValue::Stored) => self.maybe_release(object_id),
            None => self.store_result(
                object_id,
                Err(TaskError::System {
                    function: payload.function(),
                    code: StatusCode::UnknownError,
                    message: "completed without a reply".into(),
                }),
            ),
        }
        if let Some(entry) = self.actors.get_mut(&actor_id) {
            // Kept for a re-send only while the actor can be reached again:
            // a dead actor's reply position never moves on, and each of its
            // failed calls kept its request (≈ 1 KB a call fired and
            // forgotten at a dead actor, the re-attack on `e8dcebb`).
            if counter >= entry.queue.next_task_reply_position()
                && entry.queue.state() != ordering::ActorState::Dead
            {
                entry
                    .finished
                    .insert(counter, (payload.request, payload.call));
            } else {
                entry.recycle(payload.call, payload.request);
            }
        }
    }

    fn send_actor(&mut self, actor_id: ActorId, r: PushRequest<TaskId>) {
        let Some(entry) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let worker = entry.worker;
        let starts = entry.queue.caller_starts_at();
        let stamp = |req: &mut PushTaskRequest| stamp_push(req, worker, &r, starts);
        let conn = self.conns.get_mut(&worker);
        let sent = if let Some(t) = self.tasks.get_mut(&r.task) {
            stamp(&mut t.payload.request);
            t.payload.request_id = Some(r.id);
            let template = t.payload.call.and_then(|i| entry.calls.get_mut(i));
            let sent = send_stamped(
                &mut self.mux,
                &mut self.encoder,
                conn,
                &t.payload.request,
                template,
                None,
            );
            if let Ok(epoch) = sent {
                t.mark_sent(epoch);
            }
            sent
        } else if let Some((req, _)) = entry.finished.get_mut(r.id.actor_counter) {
            stamp(req);
            let sent = send_request(&mut self.mux, &mut self.encoder, conn.map(|c| &*c), req);
            if let Ok(epoch) = sent {
                self.resends.insert(r.task, (actor_id, r.id, epoch));
            }
            sent
        } else {
            tracing::error!(%actor_id, counter = r.id.actor_counter, "no request to send");
            return;
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, %worker, "send to actor failed");
            self.send_failed(worker, &e);
        }
    }

    /// A send to `worker` failed with `e`: its connection is lost (and
    /// handled at the next drive). A peer that answered no heartbeat (TCP)
    /// or made no room in its ring for the whole send timeout (shared
    /// memory) is noted as silent: the tasks that fail with it say it
    /// died *or stopped answering*.
    fn send_failed<E>(&mut self, worker: WorkerId, e: &SendError<E>) {
        let silent = match e {
            SendError::TimedOut => Some(self.connector.config().send_timeout),
            e => e.stopped_answering(),
        };
        if let Some(silent) = silent {
            self.note_silent(worker, silent);
        }
        self.mark_lost(worker, send_violation(e, worker));
    }

    /// Closes the connection to `worker` and handles it as broken: tasks
    /// sent on it are re-sent on a new connection if the worker is alive
    /// (those it already executed are answered from its reply cache, not
    /// run again) or fail (Ray's `DisconnectActor` / `ConnectActor`).
    pub fn reset_connection(&mut self, worker: WorkerId) {
        self.mark_lost(worker, None);
        self.handle_lost();
    }

    /// Drops the connection (`key`) to `worker` for a `violation` this
    /// caller found in what it sent, telling it why first
    /// ([`Connection::farewell`]).
    fn cut_off_worker(&mut self, key: PeerKey, worker: WorkerId, violation: String) {
        if let Some(c) = self.mux.get_mut(key) {
            c.farewell(&violation);
        }
        self.mark_lost(worker, Some(violation));
    }

    /// Notes that the connection to `worker` broke, for `violation` when
    /// it was cut off for one (the first one noted is kept).
    fn mark_lost(&mut self, worker: WorkerId, violation: Option<String>) {
        // Its sends fail at once from now on (`Conn::sendable`); the
        // submit queue re-sends its actor requests on the new connection.
        if let Some(c) = self.conns.get_mut(&worker) {
            c.lost = true;
        }
        match self.lost.iter_mut().find(|(w, _)| *w == worker) {
            Some((_, v)) => {
                if v.is_none() {
                    *v = violation;
                }
            }
            None => self.lost.push((worker, violation)),
        }
    }

    /// Notes that the connection to `worker` was declared dead because the
    /// worker answered no heartbeat for `silent` (see `silent`).
    fn note_silent(&mut self, worker: WorkerId, silent: Duration) {
        if !self.silent.iter().any(|(w, _)| *w == worker) {
            self.silent.push((worker, silent));
        }
    }

    fn handle_lost(&mut self) {
        if self.lost.is_empty() {
            return;
        }
        // A reply stored before the loss is settled first: its task is not
        // in flight any more.
        self.settle_replies();
        while let Some((worker, violation)) = self.lost.pop() {
            self.cut_off = violation.map(|v| (worker, v));
            self.stopped_answering = self
                .silent
                .iter()
                .position(|(w, _)| *w == worker)
                .map(|i| self.silent.swap_remove(i));
            self.on_connection_lost(worker);
            self.cut_off = None;
            self.stopped_answering = None;
        }
    }

    /// The error of a task failed by the loss being handled: `failure`
    /// (a death or unavailability; given how long `worker` had been silent
    /// when the connection was declared dead for answering no heartbeat),
    /// or [`TaskError::ConnectionCutOff`] when the connection to `worker`
    /// was cut off for a violation.
    fn loss_error(
        &self,
        worker: WorkerId,
        function: String,
        failure: impl FnOnce(String, Option<Duration>) -> TaskError,
    ) -> TaskError {
        match &self.cut_off {
            Some((w, v)) if *w == worker => TaskError::ConnectionCutOff {
                worker_id: worker,
                function,
                violation: v.clone(),
            },
            _ => failure(function, self.silence_of(worker)),
        }
    }

    /// How long `worker` had been silent when its connection, whose loss
    /// is being handled, was declared dead for answering no heartbeat
    /// (`None`: it broke otherwise, or another worker's loss is handled).
    fn silence_of(&self, worker: WorkerId) -> Option<Duration> {
        match self.stopped_answering {
            Some((w, d)) if w == worker => Some(d),
            _ => None,
        }
    }

    fn on_connection_lost(&mut self, worker: WorkerId) {
        let Some(conn) = self.conns.remove(&worker) else {
            return;
        };
        let since = Instant::now();
        self.by_key.remove(&conn.key);
        if let Some(h) = &self.heartbeats {
            h.remove(conn.key);
        }
        if let Some(mut c) = self.mux.remove(conn.key) {
            let _ = c.close();
        }
        let lost = self.tasks.connection_lost(conn.epoch);
        self.resends.retain(|_, (_, _, e)| *e != conn.epoch);
        let mut normal: Vec<TaskId> = lost
            .into_iter()
            .filter(|task| {
                matches!(
                    self.tasks.get(task).map(|t| t.payload.target),
                    Some(Target::Normal(_))
                )
            })
            .collect();
        // A grace already running (a connection made meanwhile broke too)
        // keeps its end.
        let earlier = self.unreachable.remove(&worker);
        let until = earlier
            .as_ref()
            .map_or(since + self.options.reconnect_grace, |u| u.until);
        let (unreachable_since, give_ups) = earlier
            .as_ref()
            .map_or((since, 0), |u| (u.since, u.give_ups));
        let mut unsent = Vec::new();
        let mut failed = Vec::new();
        if let Some(u) = earlier {
            normal.extend(u.normal);
            unsent = u.unsent;
            failed = u.failed;
        }
        // Its actors' tasks wait as for a restart; those in flight are
        // retried, or fail when the worker is settled (as unavailable if it
        // lives, as dead if not).
        for actor_id in self.actors_on(worker) {
            let Some(a) = self.actors.get_mut(&actor_id) else {
                continue;
            };
            let mut evs = a.queue.disconnect(false);
            evs.retain(|ev| match ev {
                SubmitEvent::Failed { .. } => {
                    failed.push((actor_id, ev.clone()));
                    false
                }
                _ => true,
            });
            self.actor_events(actor_id, &mut evs, None);
        }
        // Reached again (a directory entry whose owner holds its lock, and
        // a handshake): alive; else tried again while its process lives,
        // for the rest of the grace; else dead (`retry_unreachable`). The
        // attempt runs on its own thread: a stopped worker whose socket
        // still accepts holds its handshake, not this caller.
        tracing::debug!(%worker, "connection to a worker lost: reaching it again");
        let attempt = self.start_attempt(worker, until.saturating_duration_since(since));
        let u = Unreachable {
            normal,
            unsent,
            failed,
            cut_off: self.cut_off.as_ref().map(|(_, v)| v.clone()),
            silent: self.stopped_answering.map(|(_, d)| d),
            since: unreachable_since,
            give_ups,
            ..Unreachable::trying(conn.pid, until, attempt)
        };
        self.unreachable.insert(worker, u);
    }

    /// Why a worker (process `pid`, unreachable since `broke`) is given up
    /// on: "its process (pid 42) lives but was not reached again in 5.0 s
    /// (reconnect grace 2.5 s): <the last connect error>". The time is the
    /// worker's, from the break, over every grace its tasks' retries kept
    /// going; a task that joined a grace late waited less.
    fn give_up_reason(&self, pid: u32, broke: Instant, first: bool, e: &WorkerError) -> String {
        if first {
            return format!(
                "its process (pid {pid}) lives but this caller's first connection to it did \
                 not succeed in {:.1} s (stopped, not serving its listener, or refusing): {}",
                broke.elapsed().as_secs_f64(),
                crate::error_chain(e)
            );
        }
        let grace = self.options.reconnect_grace;
        format!(
            "its process (pid {pid}) lives but was not reached again in {:.1} s (reconnect grace {:.1} s): {}",
            broke.elapsed().as_secs_f64(),
            grace.as_secs_f64(),
            crate::error_chain(e)
        )
    }

    /// Fails the actor tasks held through a reconnect grace: as unavailable
    /// when the worker was reached again, as dead when it was not.
    fn fail_held(&mut self, held: Vec<(ActorId, SubmitEvent<TaskId>)>, alive: bool) {
        for (actor_id, mut ev) in held {
            if let SubmitEvent::Failed { error, .. } = &mut ev {
                if !alive && *error == TaskFailure::ActorUnavailable {
                    *error = TaskFailure::ActorDied;
                }
            }
            self.actor_events(actor_id, &mut vec![ev], None);
        }
    }

    /// The actors this caller knows on `worker`.
    fn actors_on(&self, worker: WorkerId) -> Vec<ActorId> {
        self.actors
            .iter()
            // One whose restart connects to its next standby lives on no
            // worker: `worker` is where it was (the attack on `2af27d5`: a
            // restart refused on a standby, the next one connecting, then
            // the refusing standby's connection settled alive sent the
            // actor's queued calls to the worker that refused it).
            .filter(|(_, a)| {
                a.worker == worker && a.restarts.as_ref().is_none_or(|r| r.connecting.is_none())
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Starts the attempts to reach workers in their reconnect grace that
    /// are due, and decides those whose attempt ended (from `drive`): one
    /// reached again is alive; one whose process lives is tried again until
    /// its grace ends, then given up on; one whose process is gone (or
    /// unknown) is dead.
    fn retry_unreachable(&mut self) {
        if self.unreachable.is_empty() {
            return;
        }
        self.settle_replies();
        let now = Instant::now();
        let due: Vec<(WorkerId, Duration)> = self
            .unreachable
            .iter()
            .filter(|(_, u)| u.attempt.is_none() && u.next_try <= now)
            .map(|(w, u)| (*w, u.until.saturating_duration_since(now)))
            .collect();
        for (worker, left) in due {
            let attempt = self.start_attempt(worker, left);
            if let Some(u) = self.unreachable.get_mut(&worker) {
                u.attempt = Some(attempt);
            }
        }
        // A worker reached meanwhile by another way (a `create_actor`) is
        // taken as reached: its attempt's connection, if any, is dropped.
        let conns = &self.conns;
        let ended: Vec<(WorkerId, Option<Reached>)> = self
            .unreachable
            .iter_mut()
            .filter_map(|(w, u)| {
                if conns.contains_key(w) {
                    u.attempt = None;
                    return Some((*w, None));
                }
                let r = match u.attempt.as_ref()?.result.try_recv() {
                    Ok(r) => r,
                    Err(mpsc::TryRecvError::Empty) => return None,
                    Err(mpsc::TryRecvError::Disconnected) => Err(ConnectError::Io {
                        op: "reconnect",
                        source: std::io::Error::other(
                            "the attempt's thread ended without a result",
                        ),
                    }),
                };
                u.attempt = None;
                Some((*w, Some(r)))
            })
            .collect();
        for (worker, reached) in ended {
            // Reached, but closed by the worker before this caller came to
            // take it (the caller made no call meanwhile: over TCP nothing
            // answered the worker's heartbeats, and its liveness bound ran
            // out): the worker answers, so it is dialled again at once
            // (once a grace), instead of its tasks going out on a dead
            // connection and failing as if it died (the attack on
            // `761ceb8`: a first connection finished in the background,
            // the caller idle for 8 s).
            // It is dialled again here, on this thread, bounded by
            // `FIRST_HANDSHAKE_WAIT` (it answered a handshake moments
            // ago): an attempt started in the background would sit
            // unread again until the caller's next call, and be closed
            // again (the attack on `02ca898`: a caller polling every 8 s).
            let mut gone_before_taken = false;
            let reached = match reached {
                Some(Ok((conn, entry))) if conn.peer_gone() => {
                    drop(conn);
                    match self
                        .connector
                        .connect_entry_within(&entry, FIRST_HANDSHAKE_WAIT)
                    {
                        Ok(again) => self.adopt(worker, Ok((again, entry))),
                        Err(e) => {
                            gone_before_taken = true;
                            Err(WorkerError::ConnectWorker {
                                worker_id: worker,
                                source: Box::new(e),
                            })
                        }
                    }
                }
                Some(r) => self.adopt(worker, r),
                None => Ok(()),
            };
            let Some(u) = self.unreachable.get_mut(&worker) else {
                continue;
            };
            let mut given_up = None;
            let alive = match reached {
                Ok(()) => true,
                Err(e) => {
                    let now = Instant::now();
                    let lives = u
                        .pid
                        .filter(|&p| crate::sys::liveness::pid_exists(p) == Some(true));
                    match lives {
                        Some(_) if gone_before_taken && !u.redialed => {
                            tracing::debug!(%worker, "a connection closed before it was taken: dialling again");
                            u.redialed = true;
                            u.until = u
                                .until
                                .max(crate::deadline_after(now, RECONNECT_HANDSHAKE_FLOOR));
                            u.next_try = now;
                            continue;
                        }
                        Some(_) if now < u.until => {
                            tracing::debug!(error = %e, %worker, "worker unreachable but its process lives: trying again");
                            u.next_try = now + RECONNECT_RETRY;
                            continue;
                        }
                        // Not a death: its tasks fail as unavailable, its
                        // actors stay, and a later task tries again.
                        Some(pid) => {
                            let (broke, first) = (u.since, u.first);
                            given_up = Some(self.give_up_reason(pid, broke, first, &e));
                        }
                        None => {
                            tracing::info!(error = %e, %worker, "worker unreachable, its process gone: failing its tasks")
                        }
                    }
                    false
                }
            };
            let Some(mut u) = self.unreachable.remove(&worker) else {
                continue;
            };
            self.cut_off = u.cut_off.take().map(|v| (worker, v));
            self.stopped_answering = u.silent.map(|d| (worker, d));
            match (given_up, u.pid) {
                (Some(why), Some(pid)) => self.give_up(worker, pid, why, u),
                _ => {
                    self.fail_held(u.failed, alive);
                    self.settle(worker, alive, u.normal, u.unsent);
                }
            }
            self.cut_off = None;
            self.stopped_answering = None;
        }
    }

    /// Why `worker`'s tasks are being failed as given up on, if they are.
    fn given_up_reason(&self, worker: WorkerId) -> Option<String> {
        match &self.given_up {
            Some((w, why)) if *w == worker => Some(why.clone()),
            _ => None,
        }
    }

    /// Gives up on `worker` (process `pid`), unreachable to the end of its
    /// grace `u` though its process lives (`why`, from `give_up_reason`):
    /// the actor tasks held through the grace (`u.failed`: no retries
    /// left) fail as unavailable (Ray's `ACTOR_UNAVAILABLE`), their errors
    /// saying why; its actors' queued tasks and its normal tasks (`u.normal`,
    /// `u.unsent`) use a retry if they have one left (`max_retries`, `-1` = forever; Ray
    /// retries `ACTOR_UNAVAILABLE` tasks) and wait in a new grace, which
    /// starts at once, or fail as unavailable. Its actors are neither dead
    /// nor restarted elsewhere (their process lives); with nothing left
    /// waiting, the next task for it tries to reach it again
    /// (`reach_again`).
    fn give_up(&mut self, worker: WorkerId, pid: u32, why: String, u: Unreachable) {
        let (since, give_ups, first) = (u.since, u.give_ups, u.first);
        // Once per run of graces: a worker stopped for an hour with tasks
        // retried forever is given up on 1,440 times.
        if give_ups == 0 {
            tracing::warn!(%worker, reason = %why, "giving up on an unreachable worker: its tasks fail as unavailable or use a retry");
        } else {
            tracing::debug!(%worker, reason = %why, give_ups, "giving up on an unreachable worker again");
        }
        self.given_up = Some((worker, why));
        self.fail_held(u.failed, true);
        let mut retrying = false;
        for actor_id in self.actors_on(worker) {
            let Some(a) = self.actors.get_mut(&actor_id) else {
                continue;
            };
            // Tasks in flight (when given up on at the break itself) are
            // queued for a retry or fail; then every queued one uses a
            // retry or fails.
            let mut evs = a.queue.disconnect(false);
            evs.extend(a.queue.fail_or_retry_queued_unavailable());
            retrying |= a.queue.num_queued() > 0;
            self.actor_events(actor_id, &mut evs, None);
        }
        // Normal tasks the same way: one with retries left uses it here
        // and waits in the next grace as unsent (sent when the worker is
        // reached, without using another).
        let mut kept = Vec::new();
        for task in u.normal.into_iter().chain(u.unsent) {
            if self.tasks.take_retry(&task) {
                kept.push(task);
            } else {
                self.retry_or_fail_normal(task, false);
            }
        }
        self.given_up = None;
        if retrying || !kept.is_empty() {
            // Ray retries `ACTOR_UNAVAILABLE` tasks while `max_retries`
            // allows: each grace counts as one retry, the next starts now
            // (a task that joins it late waits only its rest, as one that
            // joins the grace after a break does).
            if give_ups == 0 {
                tracing::info!(%worker, pid, "tasks with retries left wait for an unreachable worker: reaching it again");
            }
            let grace = self.new_grace(worker, pid, first);
            self.unreachable.insert(
                worker,
                Unreachable {
                    unsent: kept,
                    since,
                    give_ups: give_ups.saturating_add(1),
                    ..grace
                },
            );
        } else {
            self.unavailable.insert(worker, Unavailable { pid, first });
        }
    }

    /// A task for `worker`, given up on as unreachable: tries to reach it
    /// again. Reached, its actors' queues connect; its process still
    /// living, a new reconnect grace starts (the task waits in it); gone,
    /// it is dead (its actors restart or die). Nothing for other workers.
    fn reach_again(&mut self, worker: WorkerId) {
        // On every submission: no lookup while no worker is given up on.
        if self.unavailable.is_empty() {
            return;
        }
        let Some(Unavailable { pid, first }) = self.unavailable.remove(&worker) else {
            return;
        };
        // A new grace, its first attempt under way (on its own thread): the
        // task waits in it, as for a broken connection. One never reached
        // is still a first connection (its give-up says so: before, "was
        // not reached again").
        tracing::info!(%worker, pid, "a task for an unavailable worker: reaching it again");
        let grace = self.new_grace(worker, pid, first);
        self.unreachable.insert(worker, grace);
    }

    /// A whole reconnect grace for `worker` (process `pid`) from now, its
    /// first attempt under way (on its own thread), holding no task yet.
    /// For a worker this caller never reached (`first`), the grace is at
    /// least the handshake timeout, as its first one was
    /// ([`CoreWorker::connect_first`]).
    fn new_grace(&mut self, worker: WorkerId, pid: u32, first: bool) -> Unreachable {
        let mut grace = self.options.reconnect_grace;
        if first {
            grace = grace.max(self.connector.config().handshake_timeout);
        }
        let until = crate::deadline_after(Instant::now(), grace);
        let attempt = self.start_attempt(worker, grace);
        Unreachable {
            first,
            ..Unreachable::trying(Some(pid), until, attempt)
        }
    }

    /// Decides the tasks of a worker whose connection broke: reached again
    /// (`alive`), its actors' queued and retried tasks go out on the new
    /// connection, `normal` tasks are retried and `unsent` ones sent; dead,
    /// its actors restart where they can and every other task fails.
    fn settle(&mut self, worker: WorkerId, alive: bool, normal: Vec<TaskId>, unsent: Vec<TaskId>) {
        for actor_id in self.actors_on(worker) {
            let mut evs = match self.actors.get_mut(&actor_id) {
                // A restart's creation task runs on this worker: its queue
                // waits for it (nothing of the actor's was sent here), and
                // the creation task, a normal task below, fails with the
                // connection; `finish_restarts` takes that failure and moves
                // on to the next standby. Restarting here as well popped
                // that standby while the failed creation was still pending,
                // and its failure then found none left and declared the
                // actor dead, its new incarnation unreachable (the attack on
                // `b5ede7b`).
                Some(a) if a.restarts.as_ref().is_some_and(|r| r.pending.is_some()) => {
                    continue;
                }
                Some(a) if !alive && a.restarts.as_ref().is_some_and(Restarts::can_restart) => {
                    // The process died: restart it elsewhere. Tasks sent to
                    // the dead incarnation without retries left died with it.
                    let mut evs = a.queue.disconnect(false);
                    for ev in &mut evs {
                        if let SubmitEvent::Failed { error, .. } = ev {
                            if *error == TaskFailure::ActorUnavailable {
                                *error = TaskFailure::ActorDied;
                            }
                        }
                    }
                    self.actor_events(actor_id, &mut evs, None);
                    self.start_restart(actor_id);
                    continue;
                }
                Some(a) => {
                    let mut evs = a.queue.disconnect(!alive);
                    if alive {
                        evs.extend(a.queue.connect());
                    }
                    evs
                }
                None => continue,
            };
            self.actor_events(actor_id, &mut evs, None);
        }
        for task in normal {
            self.retry_or_fail_normal(task, alive);
        }
        for task in unsent {
            if alive {
                self.send_normal(task);
            } else {
                self.retry_or_fail_normal(task, false);
            }
        }
    }

    /// Runs the creation task of `actor_id` again on its next standby
    /// worker, once connected (one that cannot be reached is skipped:
    /// [`Self::connect_restarts`] comes back here); with none left the
    /// actor is dead. The restart completes in [`Self::finish_restarts`].
    fn start_restart(&mut self, actor_id: ActorId) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let Some(r) = a.restarts.as_mut().filter(|r| r.can_restart()) else {
            let mut evs = a.queue.disconnect(true);
            self.actor_events(actor_id, &mut evs, None);
            return;
        };
        // `can_restart` holds: a standby worker is left.
        let Some(worker) = r.standby.pop_front() else {
            return;
        };
        if self.conns.contains_key(&worker) {
            return self.run_restart(actor_id, worker);
        }
        // Connected on a thread of its own: the handshake of a standby
        // that accepts and never answers (stopped) took 5 s of
        // whichever call of the caller's met the death, for each such
        // standby in turn (15 s for a `get` of another actor's task
        // with three: the attack on `de26da3`). `drive` collects it
        // (`connect_restarts`).
        self.wait_for_standby(actor_id, worker, false);
    }

    /// Makes `actor_id`'s restart wait for the attempt to reach `worker`,
    /// starting one if none is under way. `fresh`: the restart counts the
    /// attempt as its own even if it started a moment ago (one started in
    /// this pass of `connect_restarts`); else it joined now, and an
    /// attempt already under way started before.
    fn wait_for_standby(&mut self, actor_id: ActorId, worker: WorkerId, fresh: bool) {
        self.restarts_connecting.push(actor_id);
        let now = Instant::now();
        let started = self.restart_attempt(worker);
        let joined = if fresh { started } else { now };
        if let Some(r) = self.restarts_mut(actor_id) {
            r.connecting = Some((worker, joined));
        }
    }

    /// The restart state of `actor_id` (an actor created here with
    /// `max_restarts`).
    fn restarts_mut(&mut self, actor_id: ActorId) -> Option<&mut Restarts> {
        self.actors
            .get_mut(&actor_id)
            .and_then(|a| a.restarts.as_mut())
    }

    /// When the restarts' attempt to reach `worker` started, starting one
    /// if none is under way.
    fn restart_attempt(&mut self, worker: WorkerId) -> Instant {
        if let Some((_, started)) = self.restart_attempts.get(&worker) {
            return *started;
        }
        let started = Instant::now();
        let attempt = self.start_attempt(worker, Duration::MAX);
        self.restart_attempts.insert(worker, (attempt, started));
        started
    }

    /// Sends the creation task of `actor_id`'s restart to `worker`, which
    /// is connected; it completes in [`Self::finish_restarts`].
    fn run_restart(&mut self, actor_id: ActorId, worker: WorkerId) {
        let Some(a) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let Some(r) = a.restarts.as_mut() else {
            return;
        };
        // A restart counts (and is spent) once it runs: a standby that
        // could not be reached spent one before, so an actor with one
        // restart and a stopped first standby died unrestarted (the attack
        // on `2af27d5`; Ray spends none on a restart it could not place).
        if r.left > 0 {
            r.left -= 1;
        }
        r.count += 1;
        let (spec, count) = (r.spec.clone(), r.count);
        tracing::info!(%actor_id, %worker, restart = count, "restarting the actor");
        a.worker = worker;
        // The creation request's length was checked when the actor was
        // created.
        let object_id = self.push_to_worker(worker, new_request(worker, spec), 0, Vec::new());
        if let Some(r) = self.restarts_mut(actor_id) {
            r.pending = Some(object_id);
        }
    }

    /// Takes the standby connections restarts were waiting for (from
    /// `drive`): one reached runs its restart; one that failed is recorded
    /// as the restart's failure and the next standby is tried (with none
    /// left, the actor is dead).
    fn connect_restarts(&mut self) {
        if self.restarts_connecting.is_empty() {
            return;
        }
        let mut reached = Vec::new();
        self.restart_attempts.retain(|worker, (attempt, started)| {
            let r = match attempt.result.try_recv() {
                Ok(r) => r,
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => Err(ConnectError::Io {
                    op: "connect to a standby worker",
                    source: std::io::Error::other("the attempt's thread ended without a result"),
                }),
            };
            reached.push((*worker, r, *started));
            false
        });
        if reached.is_empty() {
            return;
        }
        // Each ended attempt taken into the mux once, for every restart
        // that waits for it.
        let mut outcome: HashMap<WorkerId, (Result<(), String>, Instant)> = HashMap::new();
        for (worker, r, started) in reached {
            let r = self.adopt(worker, r).map_err(|e| {
                tracing::warn!(error = %e, %worker, "standby worker unreachable");
                // The restart's message names the worker already.
                match &e {
                    WorkerError::ConnectWorker { source, .. } => crate::error_chain(&**source),
                    e => crate::error_chain(e),
                }
            });
            outcome.insert(worker, (r, started));
        }
        for actor_id in std::mem::take(&mut self.restarts_connecting) {
            // (Field by field: `restart_attempts` is read below.)
            let Some(r) = self
                .actors
                .get_mut(&actor_id)
                .and_then(|a| a.restarts.as_mut())
            else {
                continue;
            };
            let Some((worker, joined)) = r.connecting else {
                continue;
            };
            match outcome.get(&worker) {
                // Still connecting (an attempt this round did not end).
                None if self.restart_attempts.contains_key(&worker) => {
                    self.restarts_connecting.push(actor_id);
                }
                None => {
                    r.connecting = None;
                    r.failed = Some(format!(
                        "restart {} on worker {worker}: its connection attempt was lost",
                        r.count + 1
                    ));
                    self.start_restart(actor_id);
                }
                Some((Ok(()), _)) => {
                    r.connecting = None;
                    self.run_restart(actor_id, worker);
                }
                // It joined an attempt another restart had started: it
                // had only what was left of that handshake. Its own now.
                Some((Err(_), started)) if *started < joined => {
                    self.wait_for_standby(actor_id, worker, true);
                }
                Some((Err(why), _)) => {
                    r.connecting = None;
                    // Named as the restart it would have been.
                    r.failed = Some(format!("restart {} on worker {worker}: {why}", r.count + 1));
                    self.start_restart(actor_id);
                }
            }
        }
    }

    /// Releases the pinned creation arguments of the actors that can no
    /// longer restart (restarts spent, no standby left, terminated, or
    /// dead) and have no restart under way; `can_restart` never comes back,
    /// so they are needed no more. From [`Self::finish_restarts`], after
    /// every reply and death a drive handled.
    fn release_creation_args(&mut self) {
        let mut done = Vec::new();
        let actors = &mut self.actors;
        self.creation_pinned.retain(|id| {
            let Some(r) = actors.get_mut(id).and_then(|a| a.restarts.as_mut()) else {
                return false;
            };
            if r.can_restart() || r.pending.is_some() || r.connecting.is_some() {
                return true;
            }
            done.append(&mut r.creation_args);
            false
        });
        self.release_args(&done);
    }

    /// Completes the restarts whose creation task finished: the actor is
    /// reachable again (its queued and retried tasks go out, in order) or,
    /// if the creation failed, dead.
    fn finish_restarts(&mut self) {
        let done: Vec<(ActorId, ObjectId)> = self
            .actors
            .iter()
            .filter_map(|(id, a)| Some((*id, a.restarts.as_ref()?.pending?)))
            .filter(|(_, o)| self.objects.contains_key(o))
            .collect();
        if !done.is_empty() {
            self.settle_replies();
        }
        for (actor_id, object_id) in done {
            let result = self.objects.remove(&object_id);
            let Some(a) = self.actors.get_mut(&actor_id) else {
                continue;
            };
            let count = a.restarts.as_ref().map_or(0, |r| r.count);
            if let Some(r) = a.restarts.as_mut() {
                r.pending = None;
                if let Some(Err(e)) = &result {
                    r.failed = Some(format!(
                        "restart {count} on worker {}: the creation task failed: {}",
                        a.worker,
                        crate::error_chain(e)
                    ));
                } else if result.is_some() {
                    r.failed = None;
                }
            }
            let mut evs = match result {
                Some(Ok(_)) => a.queue.connect(),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, %actor_id, "actor restart failed");
                    if a.restarts.as_ref().is_some_and(Restarts::can_restart) {
                        self.start_restart(actor_id);
                        continue;
                    }
                    a.queue.disconnect(true)
                }
                None => continue,
            };
            self.actor_events(actor_id, &mut evs, None);
        }
        if !self.creation_pinned.is_empty() {
            self.release_creation_args();
        }
    }

    /// How many times `actor` was restarted (its incarnation: restarts
    /// whose creation task was sent, standbys that could not be reached
    /// not counted; 0 for an actor not created here).
    pub fn actor_restarts(&self, actor: &ActorHandle) -> u64 {
        self.actors
            .get(&actor.actor_id)
            .and_then(|a| a.restarts.as_ref())
            .map_or(0, |r| r.count)
    }

    fn retry_or_fail_normal(&mut self, task: TaskId, alive: bool) {
        if alive && self.tasks.take_retry(&task) {
            self.send_normal(task);
            return;
        }
        if let Some(p) = self.tasks.finish(&task) {
            self.release_task_args(&p);
            let worker = p.request.intended_worker_id;
            // A violation first (as for actor tasks), then the reason it
            // was given up on, else a death.
            let cut_off = matches!(&self.cut_off, Some((w, _)) if *w == worker);
            let err = match self.given_up_reason(worker).filter(|_| !cut_off) {
                Some(reason) => TaskError::WorkerUnavailable {
                    worker_id: worker,
                    function: p.function(),
                    reason: match self.silence_of(worker) {
                        Some(d) => super::error::declared_dead(d) + &reason,
                        None => reason,
                    },
                },
                None => self.loss_error(worker, p.function(), |function, stopped_answering| {
                    TaskError::WorkerDied {
                        worker_id: worker,
                        function,
                        stopped_answering,
                    }
                }),
            };
            self.store_result(p.request.task_spec.return_id(0), Err(err));
        }
    }

    /// Receives replies for at most `timeout` (returns early once something
    /// arrived); handles broken connections.
    fn drive(&mut self, timeout: Duration) -> Result<(), WorkerError> {
        if let Some(h) = &self.heartbeats {
            h.active();
        }
        self.settle_replies();
        // Connections lost since the last drive (a send that failed or
        // timed out) are handled before waiting: their replies would not
        // come, and their tasks are re-sent on a new connection or fail now.
        // What they failed is ready now: the caller looks again before
        // waiting.
        if !self.lost.is_empty() {
            self.handle_lost();
            self.finish_restarts();
            return Ok(());
        }
        // What the kernel takes now, without waiting (the wait below
        // hands over the rest while it reads replies: a worker holding this
        // caller back until it reads them must not meet a blocked flush).
        // (Looked at read-only first: `get_mut` keeps a connection active
        // in the mux.)
        for c in self.conns.values() {
            if c.kind == TransportKind::Tcp
                && self
                    .mux
                    .get(c.key)
                    .is_some_and(|m| m.pending_send_bytes() > 0)
            {
                if let Some(conn) = self.mux.get_mut(c.key) {
                    conn.flush_pending();
                }
            }
        }
        // No longer than a check interval, so an idle caller checks its
        // lock file too.
        let mut timeout = timeout.min(crate::transport::LISTENER_CHECK_INTERVAL);
        // A worker in its reconnect grace is tried when due (the clock is
        // read only then). `is_empty` first: on every sync call, and a map
        // that once held entries is scanned whole by `values()`.
        if !self.unreachable.is_empty() {
            // One whose attempt is under way wakes the mux when it ends.
            if let Some(next) = self
                .unreachable
                .values()
                .filter(|u| u.attempt.is_none())
                .map(|u| u.next_try)
                .min()
            {
                timeout = timeout.min(next.saturating_duration_since(Instant::now()));
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.mux.wait(timeout, &mut ready)?;
        for ev in &ready {
            if let MuxEvent::Ready(key) = *ev {
                self.drain(key, timeout);
            }
        }
        // The clock only after an idle wait or every 64 drives: a sync
        // call drives once, and a clock read is ≈ 2 % of it.
        self.drives = self.drives.wrapping_add(1);
        if ready.is_empty() || self.drives % 64 == 0 {
            self.check_lock_file();
            self.check_queued();
        }
        self.ready = ready;
        self.handle_lost();
        self.retry_unreachable();
        self.connect_restarts();
        self.finish_restarts();
        Ok(())
    }

    /// Declares silent a worker that took none of the requests queued for it
    /// (`send_or_queue`) for the send timeout — what a send blocked on its
    /// full ring found before requests were queued: its tasks fail as
    /// unavailable or are retried, as after a timed-out send. Looked at on
    /// idle waits and every 64th drive, so at most a
    /// [`LISTENER_CHECK_INTERVAL`](crate::transport::LISTENER_CHECK_INTERVAL)
    /// late.
    fn check_queued(&mut self) {
        let limit = self.connector.config().send_timeout;
        let mut now = None;
        let mut silent = Vec::new();
        for (worker, c) in self.conns.iter_mut() {
            let pending = match self.mux.get(c.key) {
                Some(m) if !c.lost => m.pending_send_bytes(),
                _ => 0,
            };
            if pending == 0 {
                c.queued = None;
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            match c.queued {
                Some((fewest, since)) if pending >= fewest => {
                    if now.saturating_duration_since(since) >= limit {
                        silent.push(*worker);
                    }
                }
                _ => c.queued = Some((pending, now)),
            }
        }
        for worker in silent {
            tracing::debug!(%worker, "the worker took none of the queued requests for the send timeout");
            self.send_failed(worker, &SendError::<std::convert::Infallible>::TimedOut);
        }
    }

    /// Puts back this process's lock file in the session if a stray `rm`
    /// or rename took it, at most once a
    /// [`LISTENER_CHECK_INTERVAL`](crate::transport::LISTENER_CHECK_INTERVAL).
    fn check_lock_file(&mut self) {
        let now = Instant::now();
        if now < self.lock_check_at {
            return;
        }
        self.lock_check_at = now + crate::transport::LISTENER_CHECK_INTERVAL;
        match self.session.restore_process_lock() {
            Ok(true) => tracing::warn!(
                session = %self.session.dir().display(),
                "caller: this process's lock file was removed or replaced: put back"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "caller: could not put back this process's lock file")
            }
        }
    }

    /// `budget`: the time left to the `get` / `wait` receiving, the bound
    /// on pulling a return from another node (at least
    /// [`STORE_RETURN_FETCH`], at most `step_timeout`).
    fn drain(&mut self, key: PeerKey, budget: Duration) {
        let pull_timeout = budget
            .max(STORE_RETURN_FETCH)
            .min(self.options.step_timeout.max(STORE_RETURN_FETCH));
        let Some(&worker) = self.by_key.get(&key) else {
            return;
        };
        let Some(epoch) = self.conns.get(&worker).map(|c| c.epoch) else {
            return;
        };
        let max_inline = self.options.max_direct_call_object_size;
        let mut received = false;
        loop {
            let Some(conn) = self.mux.get_mut(key) else {
                return;
            };
            // After a frame, a shared-memory ring that shows no next one is
            // done without the empty receive, which reads the clock for its
            // liveness check (≈ 40 ns of a sync call's path). Its end is
            // not missed: a hang-up or death makes the mux report the
            // connection again (epoll, ticks), and that drain's first
            // receive reports it. TCP is read until it would block: its
            // readiness is edge-triggered.
            if received && conn.kind() == TransportKind::Shm && !conn.ready_hint() {
                return;
            }
            if !self.unsettled.is_empty() {
                // Another frame: the replies before it are settled first
                // (they keep their order through the submit queue).
                self.settle_replies();
            }
            let Some(conn) = self.mux.get_mut(key) else {
                return;
            };
            let bytes = match conn.try_recv_private() {
                Ok(Some(b)) => {
                    received = true;
                    b
                }
                Ok(None) => return,
                Err(e) => {
                    let violation = e.violation();
                    match &violation {
                        // The worker cut this caller off and said why; the
                        // tasks that fail with the connection say it.
                        Some(v) if matches!(e, crate::transport::RecvError::CutOff { .. }) => {
                            tracing::warn!(%worker, reason = %v, "the worker cut the connection off")
                        }
                        // Not a death: the worker broke the protocol (or its
                        // ring was scribbled). The connection is dropped and,
                        // the worker being alive, tasks go on a new one.
                        Some(v) => {
                            conn.farewell(v);
                            tracing::warn!(%worker, violation = %v, "dropping the connection to a worker that broke the protocol")
                        }
                        None => tracing::debug!(error = %e, %worker, "connection to worker ended"),
                    }
                    if let Some(silent) = e.stopped_answering() {
                        self.note_silent(worker, silent);
                    }
                    self.mark_lost(worker, violation);
                    return;
                }
            };
            let checked = match self.conns.get_mut(&worker) {
                Some(c) => c.replies.access(bytes),
                None => spec::access::<PushTaskReply>(bytes),
            };
            let reply = match checked {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, %worker, "invalid reply: dropping the connection");
                    self.cut_off_worker(key, worker, format!("invalid reply: {e}"));
                    return;
                }
            };
            let (task_id, exiting) = (reply.task_id, reply.worker_exiting);
            // One lookup for a reply of the current attempt (the usual
            // case); `match_reply` says what any other reply is.
            match self.tasks.current(&task_id, epoch) {
                Some(t) => {
                    if let Err(why) = check_returns(reply, &t.payload.request.task_spec) {
                        tracing::warn!(%worker, %task_id, error = %why, "invalid reply: dropping the connection");
                        self.cut_off_worker(
                            key,
                            worker,
                            format!("invalid reply to task {task_id}: {why}"),
                        );
                        return;
                    }
                    if matches!(
                        reply.return_objects.first().map(|o| &o.value),
                        Some(ArchivedReturnValue::InStore(_))
                    ) {
                        // Bounded as the fetch is: a stopped store's
                        // handshake (5 s) held up whichever `get` received.
                        heal_store_within(&mut self.store, &mut self.store_heal_at, pull_timeout);
                    }
                    let fetch = ReturnFetch {
                        store: self.store.as_ref(),
                        own_endpoint: self.options.object_manager_address,
                        pull_timeout,
                    };
                    let (status, result) = outcome(
                        reply,
                        &t.payload,
                        max_inline,
                        &fetch,
                        &mut self.spare_values,
                    );
                    // An inline value of an actor task is handed out now;
                    // the rest waits until the caller waits again (off a
                    // sync call's path). Not when store objects are
                    // involved: an idle caller would keep them pinned.
                    let settle_later = !exiting
                        && status == ordering::ReplyOutcome::Ok
                        && t.payload.store_args.is_empty()
                        && matches!(&result, Ok(Stored::Inline(_)));
                    match (t.payload.target, t.payload.request_id) {
                        (Target::Actor(actor_id), Some(rid)) if settle_later => {
                            let object_id = t.payload.request.task_spec.return_id(0);
                            self.store_result(object_id, result);
                            self.unsettled.push(Unsettled {
                                actor_id,
                                request: rid,
                                task: task_id,
                            });
                        }
                        (Target::Actor(actor_id), Some(rid)) => {
                            let mut evs = std::mem::take(&mut self.events);
                            if let Some(a) = self.actors.get_mut(&actor_id) {
                                if exiting {
                                    // Terminated on purpose: not restarted
                                    // when its connection ends.
                                    if let Some(r) = a.restarts.as_mut() {
                                        r.left = 0;
                                    }
                                }
                                a.queue.on_reply_into(rid, status, &mut evs);
                            }
                            self.actor_events(
                                actor_id,
                                &mut evs,
                                Some((task_id, ReplyValue::Fresh(result))),
                            );
                            self.events = evs;
                        }
                        (Target::Actor(_), None) => {}
                        (Target::Normal(_), _) => {
                            if let Some(c) = self.conns.get_mut(&worker) {
                                c.normal_replies += 1;
                            }
                            if status == ordering::ReplyOutcome::Error
                                && self.tasks.take_retry(&task_id)
                            {
                                self.send_normal(task_id);
                            } else if let Some(p) = self.tasks.finish(&task_id) {
                                self.release_task_args(&p);
                                self.store_result(p.request.task_spec.return_id(0), result);
                            }
                        }
                    }
                }
                None if self.tasks.match_reply(&task_id, epoch) != ReplyMatch::Unknown => {
                    tracing::debug!(%task_id, "ignoring the reply of an older attempt");
                }
                None => {
                    if let Some((actor_id, rid, e)) = self.resends.get(&task_id).copied() {
                        if e == epoch {
                            self.resends.remove(&task_id);
                            let mut evs = match self.actors.get_mut(&actor_id) {
                                Some(a) => a.queue.on_reply(rid, ordering::ReplyOutcome::Ok),
                                None => Vec::new(),
                            };
                            self.actor_events(actor_id, &mut evs, None);
                        }
                    } else {
                        self.stray_replies += 1;
                        tracing::warn!(%worker, %task_id, "ignoring a reply for no pending task");
                    }
                }
            }
        }
    }

    /// Waits until every object in `refs` is ready, at most `timeout`, and
    /// returns their values in order (Ray's `Get`). Replies that arrived
    /// are always read before a timeout is reported, also with a `timeout`
    /// of zero and after this process was stopped past its deadline
    /// ([`GetError::TimedOut`] then means a reply had not come). The
    /// first object holding
    /// a task error is reported as [`GetError::Task`]. A value in the object
    /// store is copied out of it here; [`CoreWorker::get_buffers`] lends it
    /// zero-copy instead.
    pub fn get(&mut self, refs: &[ObjectRef], timeout: Duration) -> Result<Vec<Vec<u8>>, GetError> {
        self.release_dropped_refs();
        self.wait_ready(refs, timeout)?;
        refs.iter()
            .map(|r| match self.objects.get(&r.id()) {
                Some(Ok(v)) => Ok(v.bytes().to_vec()),
                Some(Err(e)) => Err(GetError::Task {
                    object_id: r.id(),
                    error: e.clone(),
                }),
                None => Err(GetError::UnknownObject(r.id())),
            })
            .collect()
    }

    /// [`CoreWorker::get`] without copying values out of the object store:
    /// each store object is lent as an [`ObjectValue::Store`] buffer in the
    /// store's shared memory (a new store reference, released when the
    /// buffer is dropped; the object is not deleted while it lives), an
    /// inline value as a copy.
    pub fn get_buffers(
        &mut self,
        refs: &[ObjectRef],
        timeout: Duration,
    ) -> Result<Vec<ObjectValue>, GetError> {
        self.release_dropped_refs();
        self.wait_ready(refs, timeout)?;
        // Only for a value in the store, and bounded as a return's fetch
        // is: a stopped store's reconnect (its handshake, 5 s) holds no
        // `get` of inline values, nor one of store values past its own
        // timeout (at least `STORE_RETURN_FETCH`).
        if refs
            .iter()
            .any(|r| matches!(self.objects.get(&r.id()), Some(Ok(Stored::Store(_)))))
        {
            let bound = timeout.max(STORE_RETURN_FETCH);
            heal_store_within(&mut self.store, &mut self.store_heal_at, bound);
        }
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let v = match self.objects.get(&r.id()) {
                Some(Ok(Stored::Inline(v))) => ObjectValue::Inline(v.clone()),
                Some(Ok(Stored::Store(b))) => {
                    let store = self.store.as_ref().ok_or(GetError::UnknownObject(r.id()))?;
                    // The owner holds a reference, so the object is there:
                    // another reference through the shared index.
                    let got = store
                        .get(&[b.id()], Duration::ZERO)
                        .map_err(|e| GetError::Worker(WorkerError::Store(e)))?;
                    match got.into_iter().next().flatten() {
                        Some(b) => ObjectValue::Store(b),
                        None => return Err(GetError::UnknownObject(r.id())),
                    }
                }
                Some(Err(e)) => {
                    return Err(GetError::Task {
                        object_id: r.id(),
                        error: e.clone(),
                    })
                }
                None => return Err(GetError::UnknownObject(r.id())),
            };
            out.push(v);
        }
        Ok(out)
    }

    /// Receives replies until every object of `refs` is ready (value or
    /// error), at most `timeout`. Before it reports a timeout it looks once
    /// more without waiting (`drive(0)`): a reply that came while this
    /// caller could not run — stopped, descheduled past its deadline, or
    /// asked with a timeout of zero — is taken, not reported missing (Ray's
    /// `get` sees what its I/O thread received meanwhile; the ring's waits
    /// poll once more the same way).
    fn wait_ready<R: Referent>(&mut self, refs: &[R], timeout: Duration) -> Result<(), GetError> {
        // The clock is read once on the way in (not when everything is
        // ready at once), and the first round waits the whole `timeout`
        // without reading it again: a read costs 20–30 ns on the VMs
        // measured, a sizeable part of a sync call.
        //
        // The first round looks at every ref (an unknown one fails at once);
        // later rounds resume at the first ref that was not ready, as one
        // that is ready stays ready while `refs` are held (only `free` and
        // dropped references remove a value): a round costs a lookup per ref
        // that became ready, not one per ref.
        let mut deadline: Option<Instant> = None;
        let mut first_unready = 0;
        let mut whole = true;
        let mut looked_last = false;
        loop {
            let mut next_unready = None;
            for (i, r) in refs.iter().enumerate().skip(first_unready) {
                match self.objects.get(&r.id()) {
                    // Another owner's reference, whatever its id, or a
                    // freed one (its value, if it came before it settles,
                    // is not to be read).
                    _ if whole && !r.owned_by(&self.ref_counter) => {
                        return Err(GetError::UnknownObject(r.id()))
                    }
                    Some(_) => {}
                    None if self.owns_pending(r.id()) => {
                        next_unready.get_or_insert(i);
                        if !whole {
                            break;
                        }
                    }
                    None => return Err(GetError::UnknownObject(r.id())),
                }
            }
            whole = false;
            let Some(next) = next_unready else {
                return Ok(());
            };
            first_unready = next;
            let left = match deadline {
                None => {
                    deadline = Some(crate::deadline_after(Instant::now(), timeout));
                    timeout
                }
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            if left.is_zero() && !looked_last {
                // One look without waiting before a timeout (see above).
                looked_last = true;
                self.drive(Duration::ZERO)?;
                continue;
            }
            if left.is_zero() {
                return Err(GetError::TimedOut {
                    ready: refs
                        .iter()
                        .filter(|r| self.objects.contains_key(&r.id()))
                        .count(),
                    total: refs.len(),
                    waiting_for: self.describe_first_pending(refs),
                });
            }
            self.drive(left)?;
        }
    }

    /// The first of `refs` not ready, and the task behind it (for
    /// [`GetError::TimedOut`]).
    #[cold]
    fn describe_first_pending<R: Referent>(&self, refs: &[R]) -> String {
        let Some(r) = refs.iter().find(|r| !self.objects.contains_key(&r.id())) else {
            return "nothing (every object became ready)".to_owned();
        };
        match self.tasks.get(&r.id().task_id()) {
            Some(p) => {
                let p = &p.payload;
                let to = match p.target {
                    Target::Actor(a) => format!("actor {a}"),
                    Target::Normal(w) => format!("worker {w}"),
                };
                let strays = match self.stray_replies - p.strays_at_submit {
                    0 => String::new(),
                    1 => " (1 reply for no pending task came since it was submitted, \
                          and was ignored: replayed or corrupted?)"
                        .to_owned(),
                    n => format!(
                        " ({n} replies for no pending task came since it was submitted, \
                         and were ignored: replayed or corrupted?)"
                    ),
                };
                format!("object {} of {} on {to}{strays}", r.id(), p.function())
            }
            None => format!("object {}", r.id()),
        }
    }

    /// `r` is ready for [`CoreWorker::wait`]: its value or error is here,
    /// or none will ever come (another owner's reference, or one freed or
    /// unknown here: `get` then fails at once with
    /// [`GetError::UnknownObject`]).
    fn settled(&self, r: &ObjectRef) -> bool {
        self.objects.contains_key(&r.id())
            || !self.ref_counter.holds(&r.local)
            || !self.owns_pending(r.id())
    }

    fn owns_pending(&self, object_id: ObjectId) -> bool {
        self.tasks.contains(&object_id.task_id())
    }

    /// Waits until `num_returns` of `refs` are ready (value or error), at
    /// most `timeout`; returns `(ready, not_ready)` in the order of `refs`
    /// (Ray's `Wait`; `ready` holds at most `num_returns`). Replies that
    /// arrived are read before the timeout ends it, as in
    /// [`CoreWorker::get`]. A reference
    /// whose value will never come here — freed, or another `CoreWorker`'s
    /// — counts as ready at once (its `get` fails with
    /// [`GetError::UnknownObject`]), not as a wait to the timeout.
    ///
    /// # Errors
    /// [`WorkerError::InvalidWait`] when `num_returns` exceeds
    /// `refs.len()` or a reference is given twice (as Ray's `ray.wait`);
    /// what receiving replies meets ([`WorkerError::EventLoop`]).
    pub fn wait(
        &mut self,
        refs: &[ObjectRef],
        num_returns: usize,
        timeout: Duration,
    ) -> Result<(Vec<ObjectRef>, Vec<ObjectRef>), WorkerError> {
        if num_returns > refs.len() {
            return Err(WorkerError::InvalidWait(format!(
                "num_returns {num_returns} is more than the {} references given",
                refs.len()
            )));
        }
        let mut ids: Vec<ObjectId> = refs.iter().map(ObjectRef::id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(WorkerError::InvalidWait(format!(
                "object {} is given twice (the references must be unique)",
                w[0]
            )));
        }
        self.release_dropped_refs();
        let deadline = crate::deadline_after(Instant::now(), timeout);
        let want = num_returns;
        let mut looked_last = false;
        loop {
            let n = refs.iter().filter(|r| self.settled(r)).count();
            let left = deadline.saturating_duration_since(Instant::now());
            if n >= want || (left.is_zero() && looked_last) {
                break;
            }
            // At the deadline, one look without waiting (as in
            // `wait_ready`).
            looked_last = left.is_zero();
            self.drive(left)?;
        }
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for r in refs {
            if ready.len() < want && self.settled(r) {
                ready.push(r.clone());
            } else {
                not_ready.push(r.clone());
            }
        }
        Ok((ready, not_ready))
    }

    /// Drops the values of `refs` now (Ray's `ray.internal.free`; references
    /// another `CoreWorker` made are left alone): from the
    /// memory store and, for store objects, from the object store too once
    /// no pending task passes them as arguments (a moment later, on a
    /// thread of the owner's: [`CoreWorker::release_dropped_refs`]),
    /// whatever clones of the references remain. Dropping the last clone
    /// of an [`ObjectRef`] does the same (see [`ObjectRef`]).
    pub fn free(&mut self, refs: &[ObjectRef]) {
        self.release_dropped_refs();
        for r in refs {
            // Its last drop then has nothing to queue. Another owner's
            // reference is not this one's to free (even with the same id).
            if !self.ref_counter.free(&r.local) {
                continue;
            }
            match self.refs.entry(r.id()) {
                MapEntry::Occupied(mut e) => {
                    // `maybe_release`, with the entry in hand.
                    let st = e.get_mut();
                    st.local = false;
                    if st.submitted == 0 && !self.tasks.contains(&r.id().task_id()) {
                        let st = e.remove();
                        self.forget(r.id(), st);
                    }
                }
                MapEntry::Vacant(e) => {
                    let removed = self.objects.remove(&r.id());
                    if removed.is_none() && self.tasks.contains(&r.id().task_id()) {
                        // Its task is pending: its value goes when it comes.
                        e.insert(RefState::default());
                    }
                    self.recycle_value(removed);
                }
            }
        }
    }

    /// Drops a value taken out of the memory store, keeping a small inline
    /// value's buffer for a later reply.
    fn recycle_value(&mut self, removed: Option<Result<Stored, TaskError>>) {
        if let Some(Ok(Stored::Inline(v))) = removed {
            if self.spare_values.len() < SPARE_VALUES && v.capacity() <= SPARE_VALUE_BYTES {
                self.spare_values.push(v);
            }
        }
    }
}

impl Drop for CoreWorker {
    /// The owner is going away, so are its references (Ray frees an owner's
    /// objects when it dies): its store objects are deleted (each is freed
    /// once no other process holds it; the store drops this client's pins
    /// when its connection closes).
    fn drop(&mut self) {
        // The heartbeat helper ends before any socket closes.
        self.heartbeats = None;
        // Requests still queued behind a full ring or socket
        // (`send_or_queue`) go as far as the worker takes them now; the
        // rest are dropped with the connections, as an owner's pending
        // tasks are when it dies.
        for (_, c) in self.mux.iter_mut() {
            if c.pending_send_bytes() > 0 {
                c.flush_pending();
            }
        }
        if let Some(store) = self.store.take() {
            let ids: Vec<ObjectId> = self
                .refs
                .iter()
                .filter(|(id, st)| {
                    st.in_store || matches!(self.objects.get(id), Some(Ok(Stored::Store(_))))
                })
                .map(|(id, _)| *id)
                .collect();
            // The owner's references go before the deletes.
            self.objects.clear();
            for id in ids {
                self.releases
                    .send(&store, super::releases::Release::Delete, id);
            }
        }
        // After the deletes and unpins queued before, on their thread,
        // waited for at most `RELEASES_AT_DROP`: a store that does not
        // answer (stopped) held the drop for its reply timeout (30 s); it
        // now leaves them to their thread, which ends with the process.
        self.releases.finish(RELEASES_AT_DROP);
    }
}

impl Restarts {
    /// Whether another restart is allowed and a worker is left for it.
    fn can_restart(&self) -> bool {
        self.left != 0 && !self.standby.is_empty()
    }
}
