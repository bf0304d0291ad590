//! The worker layer's errors: [`TaskError`] (why one task produced no value),
//! [`GetError`] (what `get` reports) and [`WorkerError`] (setting up,
//! submitting, serving).

use std::time::Duration;

use crate::ids::{ActorId, ObjectId, WorkerId};
use crate::spec::EncodeError;
use crate::spec::StatusCode;
use crate::transport::{ConnectError, LookupError, RecvError, SendError};

/// How a task's worker was lost, for [`TaskError::ActorDied`] and
/// [`TaskError::WorkerDied`]: "died", or — when it was declared dead for
/// its silence (no heartbeat answered over TCP, no room made in its ring
/// for the send timeout on shared memory) — "died or stopped answering
/// (silent for 5.0 s)": only the silence is known, not that the process is
/// gone.
fn how_lost(stopped_answering: &Option<Duration>) -> String {
    match stopped_answering {
        None => "died".to_string(),
        Some(d) => format!("died or stopped answering ({})", silent_for(*d)),
    }
}

/// "; its restart failed: …" for a [`TaskError::ActorDied`] whose last
/// restart failed, else nothing.
fn restart_failure(failed: &Option<String>) -> String {
    match failed {
        None => String::new(),
        Some(why) => format!("; its restart failed: {why}"),
    }
}

/// How the connection of a [`TaskError::ActorUnavailable`] task broke:
/// "lost", or "declared dead: the actor stopped answering (silent for
/// 5.0 s)"; then why the task got no further try: "no retries left", or,
/// when the actor's worker was given up on, why ("its process (pid 42)
/// lives but was not reached again in 5.0 s (reconnect grace 2.5 s): …":
/// retries, even unlimited ones, need a worker that answers).
fn how_broken(stopped_answering: &Option<Duration>, unreachable: &Option<String>) -> String {
    let broke = match stopped_answering {
        None => "lost".to_string(),
        Some(d) => format!(
            "declared dead: the actor stopped answering ({})",
            silent_for(*d)
        ),
    };
    match unreachable {
        None => format!("{broke}; no retries left"),
        Some(why) => format!("{broke}; {why}"),
    }
}

/// For a [`TaskError::WorkerUnavailable`]'s reason, when its connection was
/// declared dead for the worker's silence: "connection declared dead: the
/// worker stopped answering (silent for 5.0 s); ".
pub(crate) fn declared_dead(silent: Duration) -> String {
    format!(
        "connection declared dead: the worker stopped answering ({}); ",
        silent_for(silent)
    )
}

/// "silent for 5.0 s".
fn silent_for(d: Duration) -> String {
    format!("silent for {:.1} s", d.as_secs_f64())
}

/// Why a task's return object holds an error instead of a value (Ray's error
/// objects: `RayTaskError`, `ActorDiedError`, `WorkerCrashedError`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// The handler ran and returned an application error (Ray's
    /// `is_application_level_error` / `RayTaskError`).
    #[error("task {function} failed: {message}")]
    Application {
        /// The function's call string, e.g. `Counter.add`.
        function: String,
        /// The handler's message.
        message: String,
    },
    /// The receiving worker has no function registered under the task's
    /// descriptor (or no such actor class / method).
    #[error("function {function} is not registered on the worker: {message}")]
    FunctionNotFound {
        /// The function's call string.
        function: String,
        /// The worker's explanation.
        message: String,
    },
    /// The call named a concurrency group the actor did not define (by
    /// [`ActorHandle::with_concurrency_group`](crate::worker::ActorHandle::with_concurrency_group),
    /// or its method's group from the class); the task did not run. (Ray
    /// aborts the actor's worker in `ConcurrencyGroupManager::GetExecutor`.)
    #[error("task {function}: {message}")]
    UnknownConcurrencyGroup {
        /// The function's call string.
        function: String,
        /// The group's name.
        group: String,
        /// The worker's explanation (names the groups the actor has).
        message: String,
    },
    /// The actor died (its process is gone) before the task replied (Ray's
    /// `ACTOR_DIED`) — or it fell silent (`stopped_answering`: over TCP no
    /// heartbeat answered for the liveness bound; on shared memory no room
    /// made in its request ring for the send timeout) and could not be
    /// reached again, its process gone or unknown; the text then says
    /// "died or stopped answering (silent for …)". (A silent actor whose
    /// process lives is [`TaskError::ActorUnavailable`], not dead.)
    #[error(
        "actor {actor_id} {} before task {function} replied{}",
        how_lost(.stopped_answering),
        restart_failure(.restart_failed)
    )]
    ActorDied {
        /// The actor.
        actor_id: ActorId,
        /// The function's call string.
        function: String,
        /// The silence after which the connection was declared dead, when
        /// the actor's worker stopped answering (TCP: no heartbeat answered
        /// for the liveness bound; shared memory: no room made in its ring
        /// for the send timeout) rather than hung up; `None` for a death
        /// seen as a hang-up, reset or end of stream.
        stopped_answering: Option<Duration>,
        /// Why the actor has no incarnation to run the task, when its last
        /// restart failed ([`ActorOptions::max_restarts`](crate::worker::ActorOptions::max_restarts)):
        /// e.g. "restart 1 on worker …: connect: refused: … max_ring_memory …"
        /// (its standby worker could not be reached; each standby is tried
        /// in turn, the last one's reason is kept) or "restart 1 on worker
        /// …: the creation task failed: …". The text adds "; its restart
        /// failed: …". `None` when no restart was tried or the last one
        /// succeeded.
        restart_failed: Option<String>,
    },
    /// The actor could not be reached for this task and it has no retries
    /// left (Ray's `ACTOR_UNAVAILABLE`): the connection it was sent on
    /// broke before its reply, though the actor may live on — or the task
    /// waited for a connection to an actor whose worker's process lived but
    /// could not be reached again within the caller's
    /// [`reconnect_grace`](crate::worker::CoreWorkerOptions::reconnect_grace)
    /// (`unreachable`). The actor is not taken for dead: a later task tries
    /// to reach it again. The text names the silence when the connection
    /// was declared dead for it, and why the worker was given up on.
    #[error(
        "actor {actor_id} unavailable for task {function} (connection {})",
        how_broken(.stopped_answering, .unreachable)
    )]
    ActorUnavailable {
        /// The actor.
        actor_id: ActorId,
        /// The function's call string.
        function: String,
        /// See [`TaskError::ActorDied`]'s field of that name.
        stopped_answering: Option<Duration>,
        /// When the actor's worker was given up on for this task though its
        /// process lived: why, e.g. "its process (pid 42) lives but was not
        /// reached again in 2.5 s (reconnect grace 2.5 s): no live worker …
        /// in the directory". `None` when the task failed with its
        /// connection.
        unreachable: Option<String>,
    },
    /// The worker running a normal task died or its connection broke, and no
    /// retries were left (Ray's `WORKER_DIED`); as for
    /// [`TaskError::ActorDied`], `stopped_answering` is set (and the text
    /// says so) when it was declared dead for its silence.
    #[error("worker {worker_id} {} before task {function} replied", how_lost(.stopped_answering))]
    WorkerDied {
        /// The worker.
        worker_id: WorkerId,
        /// The function's call string.
        function: String,
        /// See [`TaskError::ActorDied`]'s field of that name.
        stopped_answering: Option<Duration>,
    },
    /// The worker of a normal task lost its connection and could not be
    /// reached again within the caller's
    /// [`reconnect_grace`](crate::worker::CoreWorkerOptions::reconnect_grace),
    /// though its process lived: the task failed without being sent again
    /// (its retries are for a worker that answers; at-least-once, it may
    /// have run). Not a death: a later task tries to reach the worker
    /// again. (Ray would lease another worker; shmwire's caller names it.)
    #[error("worker {worker_id} unavailable for task {function}: {reason}")]
    WorkerUnavailable {
        /// The worker.
        worker_id: WorkerId,
        /// The function's call string.
        function: String,
        /// Why, e.g. "its process (pid 42) lives but was not reached again
        /// in 2.5 s (reconnect grace 2.5 s): timed out during the handshake
        /// reply". When the connection was declared dead for the worker's
        /// silence (a stopped process: no heartbeat answered over TCP, no
        /// room made in its ring on shared memory), it says so first, as
        /// [`TaskError::ActorUnavailable`]'s text does: "connection
        /// declared dead: the worker stopped answering (silent for 5.0 s);
        /// its process (pid 42) lives …".
        reason: String,
    },
    /// The connection to the task's worker was cut off before the task
    /// replied, and the task could not be re-sent: for a protocol violation
    /// this caller found — a corrupt shared ring, broken framing
    /// (`RecvError::violation` / `SendError::violation`) — or by the worker,
    /// which said why as it cut the connection off (`RecvError::CutOff`: a
    /// request that did not decode, replies this caller read none of for
    /// the worker's `unread_reply_timeout` when it set one). Not a death: the worker may
    /// well be alive (a new connection is tried for later tasks).
    #[error(
        "connection to worker {worker_id} cut off before task {function} replied: {violation}"
    )]
    ConnectionCutOff {
        /// The worker.
        worker_id: WorkerId,
        /// The function's call string.
        function: String,
        /// What was violated, e.g. `corrupt shared ring: …`, or what the
        /// worker said, e.g. `worker … said: this caller read none of its
        /// replies for 30s …`.
        violation: String,
    },
    /// The receiver cancelled the task before it ran.
    #[error("task {function} was cancelled")]
    Cancelled {
        /// The function's call string.
        function: String,
    },
    /// The return value is larger than `max_direct_call_object_size` and
    /// would live in the object store, but the executing worker (or the
    /// caller) has none (`WorkerOptions::store` / `CoreWorkerOptions::store`).
    #[error(
        "the return value of {function} has {size} bytes, above max_direct_call_object_size \
         ({max} bytes); large objects need the object store"
    )]
    ObjectTooLarge {
        /// The function's call string.
        function: String,
        /// The value's size in bytes.
        size: u64,
        /// The inline limit in bytes.
        max: u64,
    },
    /// A by-reference argument was not in the executing worker's object
    /// store within its fetch timeout (deleted, evicted, never put, or on
    /// another node), so the task did not run (Ray's `ObjectLostError` /
    /// `ObjectFetchTimedOutError` for an argument).
    #[error("argument object {object_id} of {function} is not in the object store: {message}")]
    ArgumentLost {
        /// The function's call string.
        function: String,
        /// The missing argument object.
        object_id: ObjectId,
        /// The worker's explanation.
        message: String,
    },
    /// The object store failed while the task's arguments were fetched or
    /// its return value was stored (e.g. `StoreFull` for a large return),
    /// or the return object the reply names is gone from the store.
    #[error("object store error for {function}: {message}")]
    ObjectStore {
        /// The function's call string.
        function: String,
        /// The store's error, as text.
        message: String,
    },
    /// The worker refused the request or failed it outside the handler
    /// (wrong recipient, stale request, no actor on that worker, …).
    #[error("task {function} failed on the worker ({code:?}): {message}")]
    System {
        /// The function's call string.
        function: String,
        /// Ray's status code from the reply.
        code: StatusCode,
        /// The reply's status message.
        message: String,
    },
}

/// What [`CoreWorker::get`](crate::worker::CoreWorker::get) reports.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Not every object was ready within the timeout (Ray's `GetTimeoutError`).
    #[error("get timed out: {ready} of {total} objects ready; still waiting for {waiting_for}")]
    TimedOut {
        /// Objects that were ready.
        ready: usize,
        /// Objects asked for.
        total: usize,
        /// The first object not ready, and the task that would produce it:
        /// its function (Ray's call string) and the actor or worker it
        /// was sent to, e.g. `object 3f…01 of Counter.add on actor 9c…`;
        /// followed by `(N replies for no pending task came since it was
        /// submitted, and were ignored: …)` when such replies arrived since
        /// that task was submitted (a replayed or corrupted reply, whose
        /// own task then never hears back).
        waiting_for: String,
    },
    /// An object holds a task error.
    #[error("object {object_id}: {error}")]
    Task {
        /// The object.
        object_id: ObjectId,
        /// The task's error.
        #[source]
        error: TaskError,
    },
    /// The object is not owned by this worker, or was freed.
    #[error("object {0} is unknown to this worker (not owned here, or freed)")]
    UnknownObject(ObjectId),
    /// Driving the connections failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// Errors of the worker layer outside a single task's outcome.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Another live `CoreWorker` of this process has this worker id (both
    /// made from one cloned `CoreWorkerOptions`, say): a worker id is a
    /// caller's identity at every worker it calls, so two would supersede
    /// each other's connections and share object ids.
    #[error(
        "worker id {0} is in use by another live CoreWorker of this process: give each CoreWorker its own worker_id (CoreWorkerOptions::new draws a random one)"
    )]
    WorkerIdInUse(WorkerId),
    /// Listening, or another connection step not tied to one worker,
    /// failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Connecting to worker `worker_id` failed, or it was refused (by the
    /// worker, or by this caller when the connection could not carry a call
    /// at the inline limit). `source` says how; the worker is named because
    /// a refusal or a timed-out handshake does not say whose it was.
    #[error("could not connect to worker {worker_id}: {source}")]
    ConnectWorker {
        /// The worker this caller tried to reach.
        worker_id: WorkerId,
        /// What went wrong (boxed: it is large, and every `Result` of
        /// this crate's calls carries a `WorkerError`).
        #[source]
        source: Box<ConnectError>,
    },
    /// Sending a request or reply failed.
    #[error(transparent)]
    Send(#[from] SendError<EncodeError>),
    /// Receiving failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// Finding a worker in the directory failed.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The event loop (its `poll`) failed.
    #[error("event loop: {0}")]
    EventLoop(#[from] std::io::Error),
    /// The session's shared-memory directory failed.
    #[error(transparent)]
    Shm(#[from] crate::shm::ShmError),
    /// The inline arguments of a task exceed `max_direct_call_object_size`
    /// and the caller has no object store to put them in
    /// (`CoreWorkerOptions::store`).
    #[error(
        "task arguments of {size} bytes exceed max_direct_call_object_size ({max} bytes); \
         large arguments need the object store"
    )]
    ArgsTooLarge {
        /// Inline argument bytes of the task.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The inline arguments of an actor creation task exceed
    /// `max_direct_call_object_size` and the caller has no object store to
    /// put them in (`CoreWorkerOptions::store`). With a store they go
    /// through it as a method's do, and an actor that can restart keeps
    /// them pinned while it can (Ray keeps a creation task's arguments
    /// alive with the actor).
    #[error(
        "actor creation arguments of {size} bytes exceed max_direct_call_object_size ({max} \
         bytes); large constructor arguments need the object store"
    )]
    CreationArgsTooLarge {
        /// Inline argument bytes of the creation task.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The actor has [`ActorOptions::max_pending_calls`](crate::worker::ActorOptions::max_pending_calls)
    /// calls pending through this caller already (Ray's
    /// `PendingCallsLimitExceeded`): nothing was submitted; wait for some
    /// of them (`get` / `wait`) and call again.
    #[error(
        "actor {actor_id} has {max} calls pending through this caller, its max_pending_calls: \
         wait for some of them before calling it again"
    )]
    PendingCallsLimitExceeded {
        /// The actor.
        actor_id: ActorId,
        /// Its `max_pending_calls`.
        max: usize,
    },
    /// The task's request encodes to more bytes than every connection is
    /// guaranteed to carry in one frame: `max_direct_call_object_size`
    /// plus 64 KiB for the rest of the request (names, options, each
    /// argument's own fields), which the caller checks every connection
    /// for when it connects. The function, class, method or concurrency
    /// group names are too long, or there are too many arguments. Nothing
    /// was submitted (before, such a request failed its send and was
    /// taken for a broken connection: reconnected and re-sent for good,
    /// the actor's other calls stuck behind it).
    #[error(
        "the task's request encodes to {size} bytes, more than the {max} every connection \
         carries (max_direct_call_object_size + 65536 for names, options and each \
         argument's fields): shorten the function, class or method names, or pass fewer \
         arguments (large values go through the object store)"
    )]
    RequestTooLarge {
        /// Encoded bytes of the task's `PushTaskRequest`.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// An argument is an object reference this worker does not own, or one
    /// whose task failed.
    #[error("argument object {object_id} cannot be resolved: {reason}")]
    UnresolvedArgument {
        /// The argument object.
        object_id: ObjectId,
        /// Why.
        reason: String,
    },
    /// The actor handle names an actor this worker did not create.
    #[error("unknown actor {0}")]
    UnknownActor(ActorId),
    /// The actor's creation task failed; no actor exists.
    #[error("creating actor {actor_id} failed: {error}")]
    ActorCreation {
        /// The actor that was to be created.
        actor_id: ActorId,
        /// Why the creation task failed.
        #[source]
        error: TaskError,
    },
    /// A bounded wait ran out.
    #[error("timed out: {0}")]
    TimedOut(&'static str),
    /// An option of `WorkerOptions` / `CoreWorkerOptions` cannot be used
    /// (an `object_manager_address` with an unspecified address or port 0,
    /// say: other nodes could not reach it by that name).
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// [`CoreWorker::wait`](crate::worker::CoreWorker::wait) was asked for
    /// more references than it was given, or given one twice (Ray's
    /// `ray.wait` raises `ValueError` for both: "num_returns cannot be
    /// greater than the number of objects provided", "Wait requires a list
    /// of unique object refs").
    #[error("wait: {0}")]
    InvalidWait(String),
    /// The object store failed while putting, pinning or reading an object
    /// of this worker (e.g. `StoreFull` when a large argument is put).
    #[error("object store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Reading or creating the session token failed.
    #[error(transparent)]
    Token(#[from] crate::node::TokenError),
}

impl WorkerError {
    /// The connection error behind this one, if it is one
    /// ([`WorkerError::ConnectWorker`] or [`WorkerError::Connect`]): what
    /// to match on for a refusal's reason, whichever worker it was.
    pub fn connect_error(&self) -> Option<&ConnectError> {
        match self {
            WorkerError::ConnectWorker { source, .. } => Some(source),
            WorkerError::Connect(e) => Some(e),
            _ => None,
        }
    }
}
