//! Threaded actors: `max_concurrency` and named concurrency groups (Ray's
//! `ConcurrencyGroupManager<BoundedExecutor>`,
//! `src/ray/core_worker/transport/concurrency_group_manager.cc` and
//! `thread_pool.h`, created by `CoreWorker::ExecuteTask` when the actor
//! creation task finished).
//!
//! An actor created with `max_concurrency > 1` or with at least one
//! concurrency group is *threaded*. When its creation task runs, the worker
//! starts one pool per group — the default group (`""`) with the actor's
//! `max_concurrency` threads, each named group with its own — and moves the
//! actor's state behind a lock ([`SharedState`]: a `RwLock` for state that is
//! `Sync`, where shared (`&S`) methods run side by side and exclusive
//! (`&mut S`) ones alone; a `Mutex` otherwise). The threads live as long as
//! the actor: they are joined when the worker drops it.
//!
//! The execution thread keeps receiving and ordering: each caller's tasks
//! still leave its `ActorSchedulingQueue` in sequence-number order (Ray's
//! `ActorSchedulingQueue::ScheduleRequests` posting to the pool of the task's
//! group), but instead of running there they are handed — the validated
//! request, copied once — to the group's FIFO queue, which never blocks the
//! execution thread. A group's threads take tasks from its queue, so at most
//! `max_concurrency` of them run at once and a long task in one group holds
//! up no other group. A finished task's outcome comes back to the execution
//! thread through a channel (waking its [`Mux`](crate::transport::Mux)
//! through a [`MuxWaker`]), which builds, records and sends the reply as for
//! any other task, to whatever connection the caller has then.
//!
//! The group of a call is, in this order: the call's own
//! `concurrency_group_name` (Ray's `.options(concurrency_group=...)`), the
//! group whose `function_descriptors` in the creation spec name the method,
//! the group the class assigned the method to
//! ([`ActorClass::method_in_group`](crate::worker::ActorClass::method_in_group)),
//! else the default group. A name the actor did not define fails the task
//! with [`TaskError::UnknownConcurrencyGroup`](crate::worker::TaskError::UnknownConcurrencyGroup)
//! (Ray aborts the worker there, `RAY_CHECK` in `GetExecutor`).

use std::any::Any;
use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ids::{ObjectId, TaskId, WorkerId};
use crate::spec::{self, AlignedBytes, ArchivedActorCreationTaskSpec, PushTaskRequest};
use crate::store::ObjectBuffer;
use crate::transport::MuxWaker;

use super::registry::{
    AppError, Args, EntryKind, ErasedState, FunctionRegistry, Method, TaskResult,
};

/// Most threads one actor's pools may have in total (the default group's
/// `max_concurrency` plus every group's). The creation spec is peer input:
/// a larger request fails the creation task instead of starting the threads.
pub const MAX_ACTOR_THREADS: usize = 1024;

/// Most named concurrency groups one actor may define.
pub const MAX_CONCURRENCY_GROUPS: usize = 64;

/// Longest concurrency group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 256;

/// An actor's concurrency, read and checked from its creation spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConcurrencyConfig {
    /// Threads of the default group (Ray's `max_concurrency`, ≥ 1).
    pub(crate) default_max: usize,
    /// Named groups and their `max_concurrency`, in the spec's order.
    pub(crate) groups: Vec<(String, usize)>,
    /// Methods (registry entry index) the spec assigned to a group (index
    /// into `groups`), from the groups' `function_descriptors`.
    assigned: Vec<(usize, usize)>,
}

impl ConcurrencyConfig {
    /// Checks and reads `spec`'s `max_concurrency` (0, an unset field,
    /// reads as 1) and `concurrency_groups` (non-empty unique names of at
    /// most [`MAX_GROUP_NAME_LEN`] bytes, each `max_concurrency` ≥ 1, at most
    /// [`MAX_CONCURRENCY_GROUPS`] groups and [`MAX_ACTOR_THREADS`] threads in
    /// all). Descriptors in a group that `registry` does not know are
    /// ignored (no such method can be called).
    ///
    /// # Errors
    /// A message naming the violated rule.
    pub(crate) fn from_spec(
        spec: &ArchivedActorCreationTaskSpec,
        registry: &FunctionRegistry,
    ) -> Result<Self, String> {
        let max = spec.max_concurrency.to_native();
        let default_max = match max {
            0 => 1,
            m if m < 0 => return Err(format!("max_concurrency must be at least 1, not {m}")),
            m => m as usize,
        };
        if default_max > MAX_ACTOR_THREADS {
            return Err(format!(
                "max_concurrency {default_max} exceeds the limit of {MAX_ACTOR_THREADS} threads"
            ));
        }
        if spec.concurrency_groups.len() > MAX_CONCURRENCY_GROUPS {
            return Err(format!(
                "{} concurrency groups exceed the limit of {MAX_CONCURRENCY_GROUPS}",
                spec.concurrency_groups.len()
            ));
        }
        let mut total = default_max;
        let mut groups: Vec<(String, usize)> = Vec::with_capacity(spec.concurrency_groups.len());
        let mut assigned = Vec::new();
        for g in spec.concurrency_groups.iter() {
            let name = g.name.as_str();
            if name.is_empty() || name.len() > MAX_GROUP_NAME_LEN {
                return Err(format!(
                    "a concurrency group name must have 1 to {MAX_GROUP_NAME_LEN} bytes"
                ));
            }
            if groups.iter().any(|(n, _)| n == name) {
                return Err(format!("concurrency group {name:?} is defined twice"));
            }
            let m = g.max_concurrency.to_native();
            if m < 1 {
                return Err(format!(
                    "concurrency group {name:?}: max_concurrency must be at least 1, not {m}"
                ));
            }
            total = total.saturating_add(m as usize);
            if total > MAX_ACTOR_THREADS {
                return Err(format!(
                    "the concurrency groups need more than {MAX_ACTOR_THREADS} threads"
                ));
            }
            for d in g.function_descriptors.iter() {
                if let Some(i) = registry.lookup_index(d) {
                    assigned.push((i, groups.len()));
                }
            }
            groups.push((name.to_owned(), m as usize));
        }
        Ok(Self {
            default_max,
            groups,
            assigned,
        })
    }

    /// `true` if the actor needs pools (`max_concurrency > 1` or groups);
    /// otherwise its tasks run on the execution thread, as Ray runs a
    /// non-threaded actor's tasks on its main thread.
    pub(crate) fn is_threaded(&self) -> bool {
        self.default_max > 1 || !self.groups.is_empty()
    }
}

/// A threaded actor's state, shared by its pools' threads.
pub(crate) enum SharedState {
    /// `S: Sync`: shared methods take the read lock, exclusive ones the
    /// write lock.
    Sync(RwLock<Box<dyn Any + Send + Sync>>),
    /// `S: Send` only: every method takes the lock.
    Exclusive(Mutex<Box<dyn Any + Send>>),
}

impl SharedState {
    fn new(state: ErasedState) -> Self {
        match state {
            ErasedState::Sync(s) => Self::Sync(RwLock::new(s)),
            ErasedState::Send(s) => Self::Exclusive(Mutex::new(s)),
        }
    }

    /// Runs `method` under the lock it needs. A handler that panicked
    /// earlier poisoned nothing for the others: the lock is taken anyway
    /// (the panic was reported as that task's error).
    fn call(&self, method: &Method, args: &Args<'_>) -> TaskResult {
        match (self, method) {
            (Self::Sync(l), Method::Shared(f)) => {
                let g = l.read().unwrap_or_else(PoisonError::into_inner);
                f(&**g, args)
            }
            (Self::Sync(l), Method::Exclusive(f)) => {
                let mut g = l.write().unwrap_or_else(PoisonError::into_inner);
                f(&mut **g, args)
            }
            (Self::Exclusive(m), Method::Shared(f)) => {
                let g = m.lock().unwrap_or_else(PoisonError::into_inner);
                f(&**g, args)
            }
            (Self::Exclusive(m), Method::Exclusive(f)) => {
                let mut g = m.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut **g, args)
            }
        }
    }
}

/// A released actor task on its way to a pool.
pub(crate) struct Job {
    /// The request, validated, in private memory.
    pub(crate) bytes: AlignedBytes,
    /// The caller (replies go to its current connection).
    pub(crate) caller: WorkerId,
    /// The task's actor counter (reply cache key).
    pub(crate) counter: u64,
    /// The task.
    pub(crate) task_id: TaskId,
    /// Its return object.
    pub(crate) return_id: ObjectId,
    /// The method's registry entry (its statistics slot).
    pub(crate) slot: usize,
    /// When the request arrived.
    pub(crate) arrived: Instant,
    /// Its by-reference arguments, fetched from the object store by the
    /// execution thread (by argument index; empty without any), held until
    /// the method returned.
    pub(crate) resolved: Vec<Option<ObjectBuffer>>,
    /// The pulled copies of other nodes' objects among them (object,
    /// endpoint), released by the execution thread when it collects the
    /// completion.
    pub(crate) pulled: Vec<(ObjectId, std::net::SocketAddr)>,
    /// Whether the caller is on another node (its return's copy here is
    /// deleted when the hold ends).
    pub(crate) caller_remote: bool,
    /// The bytes its reply is expected to take in its caller's send queue
    /// (counted for the caller until the completion is collected: the
    /// worker reads no more of a caller's requests while its pools' replies
    /// would not fit).
    pub(crate) expected: usize,
}

/// A task a pool finished.
pub(crate) struct Completion {
    /// The caller.
    pub(crate) caller: WorkerId,
    /// The task's actor counter.
    pub(crate) counter: u64,
    /// The task.
    pub(crate) task_id: TaskId,
    /// Its return object.
    pub(crate) return_id: ObjectId,
    /// The method's statistics slot.
    pub(crate) slot: usize,
    /// What the handler returned.
    pub(crate) result: TaskResult,
    /// From arrival to start.
    pub(crate) queued: Duration,
    /// From start to end.
    pub(crate) ran: Duration,
    /// The job's `caller_remote`.
    pub(crate) caller_remote: bool,
    /// The job's `pulled` (its buffers dropped by now).
    pub(crate) pulled: Vec<(ObjectId, std::net::SocketAddr)>,
    /// Bytes of the job's request copy (counted in the worker's held
    /// bytes until the completion is collected).
    pub(crate) held: usize,
    /// The job's `expected`.
    pub(crate) expected: usize,
}

/// Which group runs a method.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Group(usize),
    /// The class assigned the method to a group the actor did not define.
    Undefined(String),
}

/// A group's FIFO of jobs.
#[derive(Default)]
struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

struct Pool {
    name: String,
    max_concurrency: usize,
    queue: Arc<JobQueue>,
    threads: Vec<JoinHandle<()>>,
}

/// A threaded actor's pools (see the module docs): index 0 is the default
/// group, then the named groups in the creation spec's order.
pub(crate) struct ActorPools {
    pools: Vec<Pool>,
    by_entry: HashMap<usize, Route>,
    completions: mpsc::Receiver<Completion>,
    /// Tasks handed to a pool and not finished, by (caller, actor counter):
    /// a duplicate re-sent meanwhile is not run twice.
    running: HashMap<(WorkerId, u64), TaskId>,
}

impl std::fmt::Debug for ActorPools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorPools")
            .field(
                "groups",
                &self
                    .pools
                    .iter()
                    .map(|p| (p.name.as_str(), p.max_concurrency))
                    .collect::<Vec<_>>(),
            )
            .field("running", &self.running.len())
            .finish()
    }
}

impl ActorPools {
    /// Starts the pools of an actor of class `class` with `config`; its
    /// `state` moves behind the lock its type allows. `waker`, once set,
    /// wakes the execution thread's mux when a task finishes (the execution
    /// thread sets it before it first collects: a task that finished
    /// earlier is collected then).
    ///
    /// # Errors
    /// A thread could not be started (the ones started are joined).
    pub(crate) fn start(
        config: &ConcurrencyConfig,
        state: ErasedState,
        class: usize,
        registry: &Arc<FunctionRegistry>,
        waker: &Arc<OnceLock<MuxWaker>>,
    ) -> Result<Self, String> {
        let state = Arc::new(SharedState::new(state));
        let (tx, completions) = mpsc::channel();
        let mut by_entry = HashMap::new();
        for (index, group) in registry.class_methods(class) {
            if let Some(g) = group {
                let route = match config.groups.iter().position(|(n, _)| n == g) {
                    Some(i) => Route::Group(i + 1),
                    None => Route::Undefined(g.to_owned()),
                };
                by_entry.insert(index, route);
            }
        }
        for &(index, g) in &config.assigned {
            by_entry.insert(index, Route::Group(g + 1));
        }
        let mut me = Self {
            pools: Vec::with_capacity(config.groups.len() + 1),
            by_entry,
            completions,
            running: HashMap::new(),
        };
        let specs = std::iter::once((String::new(), config.default_max))
            .chain(config.groups.iter().cloned());
        for (name, max_concurrency) in specs {
            let queue = Arc::new(JobQueue::default());
            let mut pool = Pool {
                name,
                max_concurrency,
                queue,
                threads: Vec::with_capacity(max_concurrency),
            };
            for i in 0..max_concurrency {
                let (queue, state, registry, tx, waker) = (
                    Arc::clone(&pool.queue),
                    Arc::clone(&state),
                    Arc::clone(registry),
                    tx.clone(),
                    Arc::clone(waker),
                );
                let label = if pool.name.is_empty() {
                    "default"
                } else {
                    pool.name.as_str()
                };
                let thread_name: String = format!("actor-{label}-{i}").chars().take(15).collect();
                let spawned = std::thread::Builder::new()
                    .name(thread_name)
                    .spawn(move || pool_thread(&queue, &state, &registry, &tx, &waker));
                match spawned {
                    Ok(h) => pool.threads.push(h),
                    Err(e) => {
                        me.pools.push(pool);
                        // Dropping `me` closes and joins what started.
                        return Err(format!("starting the actor's thread pools failed: {e}"));
                    }
                }
            }
            me.pools.push(pool);
        }
        Ok(me)
    }

    /// The pool (index) that runs registry entry `slot` when the call names
    /// `call_group` (`""`: none).
    ///
    /// # Errors
    /// The group name the actor did not define.
    pub(crate) fn route<'a>(&'a self, slot: usize, call_group: &'a str) -> Result<usize, &'a str> {
        if !call_group.is_empty() {
            return self
                .pools
                .iter()
                .skip(1)
                .position(|p| p.name == call_group)
                .map(|i| i + 1)
                .ok_or(call_group);
        }
        match self.by_entry.get(&slot) {
            None => Ok(0),
            Some(Route::Group(i)) => Ok(*i),
            Some(Route::Undefined(name)) => Err(name.as_str()),
        }
    }

    /// The names of the groups the actor defined (for error messages).
    pub(crate) fn group_names(&self) -> Vec<&str> {
        self.pools.iter().skip(1).map(|p| p.name.as_str()).collect()
    }

    /// Threads of all the pools together (each group's `max_concurrency`).
    pub(crate) fn threads(&self) -> usize {
        self.pools.iter().map(|p| p.max_concurrency).sum()
    }

    /// `true` if task `task_id` of `caller` with `counter` is in a pool now.
    pub(crate) fn is_running(&self, caller: WorkerId, counter: u64, task_id: TaskId) -> bool {
        self.running.get(&(caller, counter)) == Some(&task_id)
    }

    /// Queues `job` on pool `pool` (never blocks).
    pub(crate) fn submit(&mut self, pool: usize, job: Job) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        self.running.insert((job.caller, job.counter), job.task_id);
        let mut q = p.queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        q.jobs.push_back(job);
        drop(q);
        p.queue.ready.notify_one();
    }

    /// Moves every finished task into `out`.
    pub(crate) fn drain_into(&mut self, out: &mut Vec<Completion>) {
        while let Ok(c) = self.completions.try_recv() {
            self.running.remove(&(c.caller, c.counter));
            out.push(c);
        }
    }

    /// Lets the pools finish what they were given, joins their threads and
    /// moves the outcomes into `out` (when the worker replaces the actor).
    pub(crate) fn finish_into(mut self, out: &mut Vec<Completion>) {
        self.close_and_join();
        self.drain_into(out);
    }

    fn close_and_join(&mut self) {
        for p in &self.pools {
            p.queue
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closed = true;
            p.queue.ready.notify_all();
        }
        for p in &mut self.pools {
            for t in p.threads.drain(..) {
                if t.join().is_err() {
                    tracing::error!(group = %p.name, "an actor pool thread panicked");
                }
            }
        }
    }
}

impl Drop for ActorPools {
    /// Closes the queues (the threads finish the jobs already queued) and
    /// joins the threads.
    fn drop(&mut self) {
        self.close_and_join();
    }
}

/// One thread of a group: takes jobs in FIFO order until the queue is
/// closed and empty.
fn pool_thread(
    queue: &JobQueue,
    state: &SharedState,
    registry: &FunctionRegistry,
    tx: &mpsc::Sender<Completion>,
    waker: &OnceLock<MuxWaker>,
) {
    loop {
        let job = {
            let mut q = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.closed {
                    return;
                }
                q = queue.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let done = run(job, state, registry);
        if tx.send(done).is_err() {
            // The actor is gone and nobody collects: stop.
            return;
        }
        // After the send: if the waker is not set yet, the execution
        // thread sets it before its next collect, which sees this one.
        // SeqCst fence: pairs with the fence in `Worker::run_once` between
        // setting the waker and collecting (either this get sees the waker
        // or that collect sees the completion).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if let Some(w) = waker.get() {
            w.wake();
        }
    }
}

/// Runs one job's method on the shared state.
fn run(mut job: Job, state: &SharedState, registry: &FunctionRegistry) -> Completion {
    let start = Instant::now();
    let result = match spec::access::<PushTaskRequest>(&job.bytes) {
        // Private memory validated before: cannot fail; reported if it does.
        Err(e) => Err(AppError::new(format!(
            "the request no longer validates: {e}"
        ))),
        Ok(req) => {
            let spec = &req.task_spec;
            match registry.lookup(&spec.function_descriptor).map(|e| &e.kind) {
                Some(EntryKind::Method { method, .. }) => {
                    let args = Args::with_resolved(&spec.args, &job.resolved);
                    guarded(|| state.call(method, &args))
                }
                _ => Err(AppError::new("registry entry is not a method")),
            }
        }
    };
    let end = Instant::now();
    // Its references on the arguments go before the completion says it is
    // done with them.
    drop(std::mem::take(&mut job.resolved));
    Completion {
        caller: job.caller,
        counter: job.counter,
        task_id: job.task_id,
        return_id: job.return_id,
        slot: job.slot,
        result,
        queued: start.saturating_duration_since(job.arrived),
        ran: end - start,
        caller_remote: job.caller_remote,
        pulled: job.pulled,
        held: job.bytes.len(),
        expected: job.expected,
    }
}

/// Runs a handler (on the execution thread or a threaded actor's pool),
/// turning a panic into the task's application error ("the handler
/// panicked: <message>"), as Ray turns a task's exception into an error
/// object: before, it unwound through the worker's loop and the process
/// died with every caller's tasks (re-attack on `71e1ecb`). An actor whose
/// method panicked keeps its state as the panic left it. The payload is dropped inside a
/// second guard: a payload whose own `drop` panics (a handler can throw
/// any value) is leaked instead of unwinding through the caller. Before
/// (the attack on `0060161`), that second panic killed a single-threaded
/// worker with every caller's work, and a threaded actor's pool thread for
/// good, its task never answered.
pub(super) fn guarded<T>(run: impl FnOnce() -> Result<T, AppError>) -> Result<T, AppError> {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|payload| {
        let message = format!("the handler panicked: {}", panic_message(&*payload));
        if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            // The drop's own payload may panic when dropped too: leaked.
            std::mem::forget(again);
        }
        Err(AppError::new(message))
    })
}

pub(super) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "a non-string payload"
    }
}
