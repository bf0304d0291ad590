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

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::ids::{ActorId, JobId, NodeId, ObjectId, TaskId, WorkerId};
use crate::ordering::{
    self, ActorSubmitQueue, PushRequest, RequestId, SubmitEvent, TaskFailure, TaskMeta,
};
use crate::shm::Session;
use crate::spec::{
    self, ActorCreationTaskSpec, ActorTaskTarget, Address, ArchivedPushTaskReply,
    ArchivedReturnValue, Encoder, FunctionDescriptor, PushTaskReply, PushTaskRequest, StatusCode,
    TaskArg, TaskSpecBuilder,
};
use crate::transport::{
    AnyConnection, Connection, Connector, MessageConnection, Mux, MuxEvent, PeerKey, SendError,
    ShmOptions, TransportConfig, TransportKind,
};

use super::registry::CONSTRUCTOR_NAME;
use super::server::MAX_DIRECT_CALL_OBJECT_SIZE;
use super::task_manager::{ReplyMatch, TaskManager};
use super::{GetError, TaskError, WorkerError};

/// A reference to a task's return object: its id and its owner's address
/// (Ray's `ObjectRef`). The owner is the [`CoreWorker`] that submitted the
/// task; only it can [`get`](CoreWorker::get) the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    object_id: ObjectId,
    /// Shared with the owner (no copy of the address per reference).
    owner: std::sync::Arc<Address>,
}

impl ObjectRef {
    /// The object's id (`ObjectId::from_index(task_id, 1)` for the first return).
    pub fn id(&self) -> ObjectId {
        self.object_id
    }

    /// The owner's address.
    pub fn owner_address(&self) -> &Address {
        &self.owner
    }

    /// This reference as a task argument (passed by reference; the owner
    /// inlines the value when it submits the task, as Ray's
    /// `LocalDependencyResolver` does for small objects it owns).
    pub fn as_arg(&self) -> TaskArg {
        TaskArg::object_ref(self.object_id, (*self.owner).clone())
    }
}

/// A handle to an actor created by this [`CoreWorker`] (Ray's `ActorHandle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorHandle {
    actor_id: ActorId,
    worker_id: WorkerId,
    module_path: String,
    class_name: String,
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
        }
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
    /// refused); `-1` = unlimited. Default 0. Application errors are not
    /// retried (Ray's `retry_exceptions = false`).
    pub max_retries: i32,
}

/// Settings of a [`CoreWorker`].
#[derive(Debug, Clone)]
pub struct CoreWorkerOptions {
    /// This worker's id (callers' scheduling queues on the workers are keyed by it).
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
}

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
        }
    }
}

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
    request: PushTaskRequest,
    target: Target,
    request_id: Option<RequestId>,
}

struct Conn {
    key: PeerKey,
    epoch: u64,
    kind: TransportKind,
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
}

/// Options of [`CoreWorker::create_actor_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorOptions {
    /// Retries of each of its tasks whose request was lost (connection
    /// broke, actor restarted); `-1` = unlimited (Ray's `max_task_retries`).
    pub max_task_retries: i32,
    /// How many times the actor is restarted after its process died;
    /// `-1` = as long as `restart_workers` lasts (Ray's `max_restarts`).
    pub max_restarts: i32,
    /// Workers to restart it on, in order, each used once (shmwire has no
    /// raylet to lease a fresh worker from).
    pub restart_workers: Vec<WorkerId>,
}

struct ActorEntry {
    worker: WorkerId,
    /// Set for actors created here with restarts.
    restarts: Option<Restarts>,
    queue: ActorSubmitQueue<TaskId>,
    next_counter: u64,
    cursor: ObjectId,
    max_task_retries: i32,
    /// Requests of tasks finished out of order (kept until
    /// `next_task_reply_position` passes them: a reconnect re-sends them
    /// with `skip_execution`).
    finished: BTreeMap<u64, PushTaskRequest>,
}

/// A caller of tasks and actors (see the module docs).
pub struct CoreWorker {
    options: CoreWorkerOptions,
    connector: Connector,
    address: Address,
    /// `address`, shared by every [`ObjectRef`] this worker hands out.
    owner: std::sync::Arc<Address>,
    /// Reused buffer of a submit queue's events (no allocation per call).
    events: Vec<SubmitEvent<TaskId>>,
    driver_task: TaskId,
    task_counter: u64,
    mux: Mux<AnyConnection>,
    ready: Vec<MuxEvent>,
    conns: HashMap<WorkerId, Conn>,
    by_key: HashMap<PeerKey, WorkerId>,
    next_epoch: u64,
    actors: HashMap<ActorId, ActorEntry>,
    tasks: TaskManager<Payload>,
    /// Requests re-sent with `skip_execution` for tasks already finished.
    resends: HashMap<TaskId, (ActorId, RequestId, u64)>,
    objects: HashMap<ObjectId, Result<Vec<u8>, TaskError>>,
    encoder: Encoder,
    lost: Vec<WorkerId>,
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

fn send_request(
    mux: &mut Mux<AnyConnection>,
    encoder: &mut Encoder,
    conn: Option<&Conn>,
    request: &PushTaskRequest,
) -> Result<u64, SendError<crate::spec::EncodeError>> {
    let conn = conn.ok_or(SendError::Closed)?;
    let c = mux.get_mut(conn.key).ok_or(SendError::Closed)?;
    c.send_push_task(encoder, request)?;
    Ok(conn.epoch)
}

/// What a reply says about its task: the status for the ordering layer and
/// the value or error of its first return object.
fn outcome(
    reply: &ArchivedPushTaskReply,
    payload: &Payload,
    max_inline: usize,
) -> (ordering::ReplyOutcome, Result<Vec<u8>, TaskError>) {
    let first = reply.return_objects.first();
    if let Some(o) = first {
        if matches!(o.value, ArchivedReturnValue::InStore) {
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
    let inline = first.and_then(|o| match &o.value {
        ArchivedReturnValue::Inline(d) => Some(d.data.as_slice()),
        ArchivedReturnValue::InStore => None,
    });
    let code: StatusCode = reply.status.code;
    if reply.is_application_level_error {
        let message = match inline {
            Some(d) => String::from_utf8_lossy(d).into_owned(),
            None => reply.status.message.as_str().to_owned(),
        };
        let err = if code == StatusCode::NotFound {
            TaskError::FunctionNotFound {
                function: payload.function(),
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
    (
        ordering::ReplyOutcome::Ok,
        Ok(inline.map(<[u8]>::to_vec).unwrap_or_default()),
    )
}

impl CoreWorker {
    /// A caller in `session` (whose directory finds the workers of this node).
    pub fn new(session: &Session, options: CoreWorkerOptions) -> Result<Self, WorkerError> {
        let token = crate::node::load_or_create_token(session)?;
        let directory = crate::node::Directory::for_session(session)?;
        let connector = Connector::new(
            TransportConfig::new(options.worker_id, token),
            options.node_id,
        )
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
        };
        Ok(Self {
            driver_task: TaskId::for_driver_task(options.job_id),
            options,
            connector,
            owner: std::sync::Arc::new(address.clone()),
            events: Vec::new(),
            address,
            task_counter: 0,
            mux,
            ready: Vec::new(),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_epoch: 1,
            actors: HashMap::new(),
            tasks: TaskManager::new(),
            resends: HashMap::new(),
            objects: HashMap::new(),
            encoder: Encoder::new(),
            lost: Vec::new(),
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
        self.tasks.len()
    }

    fn ensure_conn(&mut self, worker: WorkerId) -> Result<(), WorkerError> {
        if self.conns.contains_key(&worker) {
            return Ok(());
        }
        let conn = self.connector.connect_worker(&worker)?;
        let kind = conn.kind();
        let key = self.mux.add(conn)?;
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.conns.insert(worker, Conn { key, epoch, kind });
        self.by_key.insert(key, worker);
        Ok(())
    }

    fn next_parent_counter(&mut self) -> u64 {
        self.task_counter += 1;
        self.task_counter
    }

    /// Inlines by-reference arguments this worker owns (waiting for them up
    /// to the step timeout) and checks the inline total against
    /// `max_direct_call_object_size`.
    fn resolve_args(&mut self, args: Vec<TaskArg>) -> Result<Vec<TaskArg>, WorkerError> {
        if args.iter().all(|a| matches!(a, TaskArg::Value(_))) {
            // Nothing to resolve: the caller's vector is used as it is.
            let size: usize = args.iter().map(TaskArg::inline_bytes).sum();
            if size > self.options.max_direct_call_object_size {
                return Err(WorkerError::ArgsTooLarge {
                    size: size as u64,
                    max: self.options.max_direct_call_object_size as u64,
                });
            }
            return Ok(args);
        }
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            match a {
                TaskArg::Value(v) => out.push(TaskArg::Value(v)),
                TaskArg::ObjectRef(r) => {
                    let object_id = r.object_id;
                    let oref = ObjectRef {
                        object_id,
                        owner: std::sync::Arc::new(r.owner_address.clone()),
                    };
                    let value = match self.get(&[oref], self.options.step_timeout) {
                        Ok(mut v) => v.pop().unwrap_or_default(),
                        Err(GetError::Worker(e)) => return Err(e),
                        Err(e) => {
                            return Err(WorkerError::UnresolvedArgument {
                                object_id,
                                reason: e.to_string(),
                            })
                        }
                    };
                    out.push(TaskArg::value(value, Vec::new()));
                }
            }
        }
        let size: usize = out.iter().map(TaskArg::inline_bytes).sum();
        if size > self.options.max_direct_call_object_size {
            return Err(WorkerError::ArgsTooLarge {
                size: size as u64,
                max: self.options.max_direct_call_object_size as u64,
            });
        }
        Ok(out)
    }

    fn request(&self, intended: WorkerId, task_spec: spec::TaskSpec) -> PushTaskRequest {
        PushTaskRequest {
            intended_worker_id: intended,
            task_spec,
            sequence_number: -1,
            client_processed_up_to: -1,
            resource_mapping: Vec::new(),
        }
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
        let args = self.resolve_args(args)?;
        self.ensure_conn(worker)?;
        let counter = self.next_parent_counter();
        let spec = TaskSpecBuilder::new(function)
            .job_id(self.options.job_id)
            .parent(self.driver_task, counter)
            .caller_address(self.address.clone())
            .args(args)
            .num_returns(1)
            .max_retries(options.max_retries)
            .build_normal_task();
        let object_id = self.push_to_worker(worker, spec, options.max_retries);
        Ok(ObjectRef {
            object_id,
            owner: std::sync::Arc::clone(&self.owner),
        })
    }

    /// Sends (or re-sends) a pending normal or creation task to its worker;
    /// a failed send is handled as the connection's loss.
    /// Records a task bound for `worker` (normal or actor creation) as
    /// pending and sends it; returns its first return object's id.
    fn push_to_worker(
        &mut self,
        worker: WorkerId,
        spec: crate::spec::TaskSpec,
        max_retries: i32,
    ) -> ObjectId {
        let task_id = spec.task_id;
        let object_id = spec.return_id(0);
        let request = self.request(worker, spec);
        self.tasks.add(
            task_id,
            Payload {
                request,
                target: Target::Normal(worker),
                request_id: None,
            },
            max_retries,
        );
        self.send_normal(task_id);
        object_id
    }

    fn send_normal(&mut self, task_id: TaskId) {
        let Some(t) = self.tasks.get(&task_id) else {
            return;
        };
        let Target::Normal(worker) = t.payload.target else {
            return;
        };
        match send_request(
            &mut self.mux,
            &mut self.encoder,
            self.conns.get(&worker),
            &t.payload.request,
        ) {
            Ok(epoch) => {
                self.tasks.mark_sent(&task_id, epoch);
            }
            Err(e) => {
                tracing::debug!(error = %e, %worker, "send failed");
                self.mark_lost(worker);
                // Not sent: fail or retry along with the connection's tasks.
                if !self.conns.contains_key(&worker) {
                    self.retry_or_fail_normal(task_id, false);
                }
            }
        }
    }

    /// Creates an actor of class `module_path::class_name` on worker
    /// `worker` (an actor creation task; the worker's current actor becomes
    /// it) and waits for the creation to finish, at most the step timeout.
    /// Unlike Ray, which returns the handle at once and queues calls until
    /// the actor is alive, this returns only once the actor exists, so a
    /// failed constructor is reported here.
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
        let args = self.resolve_args(args)?;
        self.ensure_conn(worker)?;
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
                max_concurrency: 1,
                ..Default::default()
            });
        let restarts = (options.max_restarts != 0).then(|| Restarts {
            spec: spec.clone(),
            left: options.max_restarts.max(-1),
            standby: options.restart_workers.iter().copied().collect(),
            count: 0,
            pending: None,
        });
        let object_id = self.push_to_worker(worker, spec, 0);
        let oref = ObjectRef {
            object_id,
            owner: std::sync::Arc::clone(&self.owner),
        };
        let result = self.get(std::slice::from_ref(&oref), self.options.step_timeout);
        self.objects.remove(&object_id);
        match result {
            Ok(_) => {}
            Err(GetError::Task { error, .. }) => {
                return Err(WorkerError::ActorCreation { actor_id, error })
            }
            Err(GetError::Worker(e)) => return Err(e),
            Err(GetError::TimedOut { .. }) => {
                return Err(WorkerError::TimedOut("waiting for the actor creation task"))
            }
            Err(GetError::UnknownObject(_)) => {
                return Err(WorkerError::TimedOut("the actor creation task vanished"))
            }
        }
        let handle = ActorHandle::new(actor_id, worker, module_path, class_name);
        self.register_actor(&handle, max_task_retries)?;
        if let Some(a) = self.actors.get_mut(&actor_id) {
            a.restarts = restarts;
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
                finished: BTreeMap::new(),
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
        let retries = self
            .actors
            .get(&actor.actor_id)
            .ok_or(WorkerError::UnknownActor(actor.actor_id))?
            .max_task_retries;
        self.submit_actor_task_with(
            actor,
            method,
            args,
            TaskOptions {
                max_retries: retries,
            },
        )
    }

    /// [`CoreWorker::submit_actor_task`] with explicit options.
    pub fn submit_actor_task_with(
        &mut self,
        actor: &ActorHandle,
        method: &str,
        args: Vec<TaskArg>,
        options: TaskOptions,
    ) -> Result<ObjectRef, WorkerError> {
        let args = self.resolve_args(args)?;
        let parent_counter = self.next_parent_counter();
        let function = actor.method_descriptor(method);
        let entry = self
            .actors
            .get_mut(&actor.actor_id)
            .ok_or(WorkerError::UnknownActor(actor.actor_id))?;
        let counter = entry.next_counter;
        let spec = TaskSpecBuilder::new(function)
            .job_id(self.options.job_id)
            .parent(self.driver_task, parent_counter)
            .caller_address(self.address.clone())
            .args(args)
            .num_returns(1)
            .max_retries(options.max_retries)
            .build_actor_task(ActorTaskTarget {
                actor_id: actor.actor_id,
                actor_counter: counter,
                previous_cursor: entry.cursor,
                caller_starts_at: entry.queue.caller_starts_at(),
            });
        entry.next_counter += 1;
        entry.cursor = spec.actor_dummy_object_id().unwrap_or(entry.cursor);
        let task_id = spec.task_id;
        let object_id = spec.return_id(0);
        let meta = TaskMeta {
            actor_counter: counter,
            inline_arg_bytes: spec.inline_arg_bytes() as u64,
            max_retries: options.max_retries,
        };
        let worker = entry.worker;
        let request = PushTaskRequest {
            intended_worker_id: worker,
            task_spec: spec,
            sequence_number: -1,
            client_processed_up_to: -1,
            resource_mapping: Vec::new(),
        };
        self.tasks.add(
            task_id,
            Payload {
                request,
                target: Target::Actor(actor.actor_id),
                request_id: None,
            },
            options.max_retries,
        );
        let mut evs = std::mem::take(&mut self.events);
        if let Err(e) = entry.queue.submit_into(meta, task_id, true, &mut evs) {
            // Counters come from this handle only: cannot clash.
            tracing::error!(error = %e, "actor submit queue refused a fresh counter");
        }
        self.actor_events(actor.actor_id, &mut evs, None);
        self.events = evs;
        Ok(ObjectRef {
            object_id,
            owner: std::sync::Arc::clone(&self.owner),
        })
    }

    /// Carries out what an actor's submit queue decided. `reply` is the
    /// outcome of the reply being processed (its task and result), if any.
    fn actor_events(
        &mut self,
        actor_id: ActorId,
        evs: &mut Vec<SubmitEvent<TaskId>>,
        mut reply: Option<(TaskId, Result<Vec<u8>, TaskError>)>,
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
                        Some((t, Err(e))) if t == task => Some(e),
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
                    let err = from_reply.unwrap_or(match error {
                        TaskFailure::ActorDied => TaskError::ActorDied { actor_id, function },
                        TaskFailure::ActorUnavailable => {
                            TaskError::ActorUnavailable { actor_id, function }
                        }
                        TaskFailure::Cancelled => TaskError::Cancelled { function },
                    });
                    self.finish_actor_task(actor_id, actor_counter, task, Some(Err(err)));
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
            while let Some(e) = entry.finished.first_entry() {
                if *e.key() >= ntrp {
                    break;
                }
                e.remove();
            }
        }
    }

    fn finish_actor_task(
        &mut self,
        actor_id: ActorId,
        counter: u64,
        task: TaskId,
        result: Option<Result<Vec<u8>, TaskError>>,
    ) {
        let Some(payload) = self.tasks.finish(&task) else {
            // A skip_execution re-send of a task finished earlier.
            return;
        };
        let object_id = payload.request.task_spec.return_id(0);
        let result = result.unwrap_or_else(|| {
            Err(TaskError::System {
                function: payload.function(),
                code: StatusCode::UnknownError,
                message: "completed without a reply".into(),
            })
        });
        self.objects.insert(object_id, result);
        if let Some(entry) = self.actors.get_mut(&actor_id) {
            if counter >= entry.queue.next_task_reply_position() {
                entry.finished.insert(counter, payload.request);
            }
        }
    }

    fn send_actor(&mut self, actor_id: ActorId, r: PushRequest<TaskId>) {
        let Some(entry) = self.actors.get_mut(&actor_id) else {
            return;
        };
        let worker = entry.worker;
        let starts = entry.queue.caller_starts_at();
        let stamp = |req: &mut PushTaskRequest| {
            // The actor's worker now (another one after a restart).
            req.intended_worker_id = worker;
            req.sequence_number = r.sequence_number;
            req.client_processed_up_to = r.client_processed_up_to;
            req.task_spec.skip_execution = r.skip_execution;
            if let Some(a) = req.task_spec.actor_task_spec.as_mut() {
                a.caller_starts_at = starts;
            }
        };
        let conn = self.conns.get(&worker);
        let sent = if let Some(t) = self.tasks.get_mut(&r.task) {
            stamp(&mut t.payload.request);
            t.payload.request_id = Some(r.id);
            let sent = send_request(&mut self.mux, &mut self.encoder, conn, &t.payload.request);
            if let Ok(epoch) = sent {
                self.tasks.mark_sent(&r.task, epoch);
            }
            sent
        } else if let Some(req) = entry.finished.get_mut(&r.id.actor_counter) {
            stamp(req);
            let sent = send_request(&mut self.mux, &mut self.encoder, conn, req);
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
            self.mark_lost(worker);
        }
    }

    /// Closes the connection to `worker` and handles it as broken: tasks
    /// sent on it are re-sent on a new connection if the worker is alive
    /// (those it already executed are answered from its reply cache, not
    /// run again) or fail (Ray's `DisconnectActor` / `ConnectActor`).
    pub fn reset_connection(&mut self, worker: WorkerId) {
        self.mark_lost(worker);
        self.handle_lost();
    }

    fn mark_lost(&mut self, worker: WorkerId) {
        if !self.lost.contains(&worker) {
            self.lost.push(worker);
        }
    }

    fn handle_lost(&mut self) {
        while let Some(worker) = self.lost.pop() {
            self.on_connection_lost(worker);
        }
    }

    fn on_connection_lost(&mut self, worker: WorkerId) {
        let Some(conn) = self.conns.remove(&worker) else {
            return;
        };
        self.by_key.remove(&conn.key);
        if let Some(mut c) = self.mux.remove(conn.key) {
            let _ = c.close();
        }
        let lost = self.tasks.connection_lost(conn.epoch);
        self.resends.retain(|_, (_, _, e)| *e != conn.epoch);
        // Alive (a directory entry whose owner holds its lock, and a
        // handshake) or dead.
        let alive = match self.ensure_conn(worker) {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, %worker, "worker unreachable: failing its tasks");
                false
            }
        };
        let actors: Vec<ActorId> = self
            .actors
            .iter()
            .filter(|(_, a)| a.worker == worker)
            .map(|(id, _)| *id)
            .collect();
        for actor_id in actors {
            let mut evs = match self.actors.get_mut(&actor_id) {
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
        for task in lost {
            let normal = matches!(
                self.tasks.get(&task).map(|t| t.payload.target),
                Some(Target::Normal(_))
            );
            if normal {
                self.retry_or_fail_normal(task, alive);
            }
        }
    }

    /// Runs the creation task of `actor_id` again on its next standby
    /// worker (one that cannot be reached is skipped); with none left the
    /// actor is dead. The restart completes in [`Self::finish_restarts`].
    fn start_restart(&mut self, actor_id: ActorId) {
        loop {
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
            if r.left > 0 {
                r.left -= 1;
            }
            r.count += 1;
            let (spec, count) = (r.spec.clone(), r.count);
            if let Err(e) = self.ensure_conn(worker) {
                tracing::warn!(error = %e, %actor_id, %worker, "standby worker unreachable");
                continue;
            }
            tracing::info!(%actor_id, %worker, restart = count, "restarting the actor");
            if let Some(a) = self.actors.get_mut(&actor_id) {
                a.worker = worker;
            }
            let object_id = self.push_to_worker(worker, spec, 0);
            if let Some(r) = self
                .actors
                .get_mut(&actor_id)
                .and_then(|a| a.restarts.as_mut())
            {
                r.pending = Some(object_id);
            }
            return;
        }
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
        for (actor_id, object_id) in done {
            let result = self.objects.remove(&object_id);
            let Some(a) = self.actors.get_mut(&actor_id) else {
                continue;
            };
            if let Some(r) = a.restarts.as_mut() {
                r.pending = None;
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
    }

    /// How many times `actor` was restarted (its incarnation; 0 for an
    /// actor not created here).
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
            let worker = p.request.intended_worker_id;
            self.objects.insert(
                p.request.task_spec.return_id(0),
                Err(TaskError::WorkerDied {
                    worker_id: worker,
                    function: p.function(),
                }),
            );
        }
    }

    /// Receives replies for at most `timeout` (returns early once something
    /// arrived); handles broken connections.
    fn drive(&mut self, timeout: Duration) -> Result<(), WorkerError> {
        for c in self.conns.values() {
            if c.kind == TransportKind::Tcp {
                if let Some(conn) = self.mux.get_mut(c.key) {
                    if let Err(e) = conn.flush() {
                        tracing::debug!(error = %e, "flush failed");
                    }
                }
            }
        }
        let mut ready = std::mem::take(&mut self.ready);
        self.mux.wait(timeout, &mut ready)?;
        for ev in &ready {
            if let MuxEvent::Ready(key) = *ev {
                self.drain(key);
            }
        }
        self.ready = ready;
        self.handle_lost();
        self.finish_restarts();
        Ok(())
    }

    fn drain(&mut self, key: PeerKey) {
        let Some(&worker) = self.by_key.get(&key) else {
            return;
        };
        let Some(epoch) = self.conns.get(&worker).map(|c| c.epoch) else {
            return;
        };
        let max_inline = self.options.max_direct_call_object_size;
        loop {
            let Some(conn) = self.mux.get_mut(key) else {
                return;
            };
            let bytes = match conn.try_recv_private() {
                Ok(Some(b)) => b,
                Ok(None) => return,
                Err(e) => {
                    match e.violation() {
                        // Not a death: the worker broke the protocol (or its
                        // ring was scribbled). The connection is dropped and,
                        // the worker being alive, tasks go on a new one.
                        Some(v) => {
                            tracing::warn!(%worker, violation = %v, "dropping the connection to a worker that broke the protocol")
                        }
                        None => tracing::debug!(error = %e, %worker, "connection to worker ended"),
                    }
                    self.mark_lost(worker);
                    return;
                }
            };
            let reply = match spec::access::<PushTaskReply>(bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, %worker, "invalid reply: dropping the connection");
                    self.mark_lost(worker);
                    return;
                }
            };
            let task_id = reply.task_id;
            match self.tasks.match_reply(&task_id, epoch) {
                ReplyMatch::Current(_) => {
                    let Some(t) = self.tasks.get(&task_id) else {
                        continue;
                    };
                    let (status, result) = outcome(reply, &t.payload, max_inline);
                    match (t.payload.target, t.payload.request_id) {
                        (Target::Actor(actor_id), Some(rid)) => {
                            let mut evs = std::mem::take(&mut self.events);
                            if let Some(a) = self.actors.get_mut(&actor_id) {
                                a.queue.on_reply_into(rid, status, &mut evs);
                            }
                            self.actor_events(actor_id, &mut evs, Some((task_id, result)));
                            self.events = evs;
                        }
                        (Target::Actor(_), None) => {}
                        (Target::Normal(_), _) => {
                            if status == ordering::ReplyOutcome::Error
                                && self.tasks.take_retry(&task_id)
                            {
                                self.send_normal(task_id);
                            } else if let Some(p) = self.tasks.finish(&task_id) {
                                self.objects
                                    .insert(p.request.task_spec.return_id(0), result);
                            }
                        }
                    }
                }
                ReplyMatch::Stale => {
                    tracing::debug!(%task_id, "ignoring the reply of an older attempt");
                }
                ReplyMatch::Unknown => {
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
                        tracing::debug!(%task_id, "ignoring a reply for no pending task");
                    }
                }
            }
        }
    }

    /// Waits until every object in `refs` is ready, at most `timeout`, and
    /// returns their values in order (Ray's `Get`). The first object holding
    /// a task error is reported as [`GetError::Task`].
    pub fn get(&mut self, refs: &[ObjectRef], timeout: Duration) -> Result<Vec<Vec<u8>>, GetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut ready = 0;
            for r in refs {
                match self.objects.get(&r.object_id) {
                    Some(_) => ready += 1,
                    None if self.owns_pending(r.object_id) => {}
                    None => return Err(GetError::UnknownObject(r.object_id)),
                }
            }
            if ready == refs.len() {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GetError::TimedOut {
                    ready,
                    total: refs.len(),
                });
            }
            self.drive(left)?;
        }
        refs.iter()
            .map(|r| match self.objects.get(&r.object_id) {
                Some(Ok(v)) => Ok(v.clone()),
                Some(Err(e)) => Err(GetError::Task {
                    object_id: r.object_id,
                    error: e.clone(),
                }),
                None => Err(GetError::UnknownObject(r.object_id)),
            })
            .collect()
    }

    fn owns_pending(&self, object_id: ObjectId) -> bool {
        self.tasks.get(&object_id.task_id()).is_some()
    }

    /// Waits until `num_returns` of `refs` are ready (value or error), at
    /// most `timeout`; returns `(ready, not_ready)` in the order of `refs`
    /// (Ray's `Wait`; `ready` holds at most `num_returns`).
    pub fn wait(
        &mut self,
        refs: &[ObjectRef],
        num_returns: usize,
        timeout: Duration,
    ) -> Result<(Vec<ObjectRef>, Vec<ObjectRef>), WorkerError> {
        let deadline = Instant::now() + timeout;
        let want = num_returns.min(refs.len());
        loop {
            let n = refs
                .iter()
                .filter(|r| self.objects.contains_key(&r.object_id))
                .count();
            let left = deadline.saturating_duration_since(Instant::now());
            if n >= want || left.is_zero() {
                break;
            }
            self.drive(left)?;
        }
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for r in refs {
            if ready.len() < want && self.objects.contains_key(&r.object_id) {
                ready.push(r.clone());
            } else {
                not_ready.push(r.clone());
            }
        }
        Ok((ready, not_ready))
    }

    /// Drops the values of `refs` from the memory store (Ray frees an
    /// object when its last reference goes away; here the owner says when).
    pub fn free(&mut self, refs: &[ObjectRef]) {
        for r in refs {
            self.objects.remove(&r.object_id);
        }
    }
}

impl Restarts {
    /// Whether another restart is allowed and a worker is left for it.
    fn can_restart(&self) -> bool {
        self.left != 0 && !self.standby.is_empty()
    }
}
