//! Shared by the `worker_*` integration tests: a temporary session root per
//! test, worker child processes started by re-executing the test binary
//! (killed and reaped on drop), and the functions those workers register.

#![allow(dead_code)]

#[path = "../fd_limit/mod.rs"]
mod fd_limit;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmwire::ids::{NodeId, WorkerId};
use shmwire::node::Directory;
use shmwire::shm::Session;
use shmwire::spec::{FunctionDescriptor, TaskArg};
use shmwire::transport::LookupError;
use shmwire::worker::{
    ActorClass, ActorHandle, AppError, CoreWorker, CoreWorkerOptions, FunctionRegistry, GetError,
    ObjectRef, TaskError, Worker, WorkerOptions,
};

pub const ENV_ROLE: &str = "SHMWIRE_WORKER_TEST_ROLE";
pub const ENV_ROOT: &str = "SHMWIRE_WORKER_TEST_ROOT";
pub const ENV_SESSION: &str = "SHMWIRE_WORKER_TEST_SESSION";
pub const ENV_ID: &str = "SHMWIRE_WORKER_TEST_ID";
pub const ENV_NODE: &str = "SHMWIRE_WORKER_TEST_NODE";
pub const ENV_CALLERS: &str = "SHMWIRE_WORKER_TEST_CALLERS";
/// If set: the worker connects to the session's store of this name.
pub const ENV_STORE: &str = "SHMWIRE_WORKER_TEST_STORE";
/// If set: the reply timeout of the worker's store client, in milliseconds.
pub const ENV_STORE_REPLY_MS: &str = "SHMWIRE_WORKER_TEST_STORE_REPLY_MS";
/// If set: the worker's `arg_fetch_timeout` in milliseconds.
pub const ENV_ARG_FETCH_MS: &str = "SHMWIRE_WORKER_TEST_ARG_FETCH_MS";
/// Set: the worker's node object endpoint (`WorkerOptions::object_manager_address`).
pub const ENV_OBJECT_ENDPOINT: &str = "SHMWIRE_WORKER_TEST_OBJECT_ENDPOINT";
/// Set (to anything): the worker serves until its actor is terminated
/// (`Worker::serve_until_exit`) instead of counting callers.
pub const ENV_UNTIL_EXIT: &str = "SHMWIRE_WORKER_TEST_UNTIL_EXIT";
/// If set: the worker's `max_departed_callers`.
pub const ENV_MAX_DEPARTED: &str = "SHMWIRE_WORKER_TEST_MAX_DEPARTED";
/// If set: the worker's `departed_caller_ttl` in milliseconds.
pub const ENV_DEPARTED_TTL_MS: &str = "SHMWIRE_WORKER_TEST_DEPARTED_TTL_MS";
/// If set: once bound, the worker lowers its open-file limit to the
/// descriptors it has open plus this many.
pub const ENV_SPARE_FDS: &str = "SHMWIRE_WORKER_TEST_SPARE_FDS";
/// If set: once it has served, the worker writes its events
/// (`Worker::take_events`, one `Debug` line each) to this file.
pub const ENV_EVENTS_FILE: &str = "SHMWIRE_WORKER_TEST_EVENTS_FILE";
/// If set: the worker's `ShmOptions::max_ring_memory` in bytes.
pub const ENV_RING_MEMORY: &str = "SHMWIRE_WORKER_TEST_RING_MEMORY";
/// If set: the worker's `max_held_request_bytes`.
pub const ENV_MAX_HELD: &str = "SHMWIRE_WORKER_TEST_MAX_HELD";
/// If set: the worker's `max_connections`.
pub const ENV_MAX_CONNECTIONS: &str = "SHMWIRE_WORKER_TEST_MAX_CONNECTIONS";
/// If set: the worker's `max_cached_reply_bytes`.
pub const ENV_MAX_CACHED: &str = "SHMWIRE_WORKER_TEST_MAX_CACHED";
/// If set: the worker's `unread_reply_timeout` in milliseconds.
pub const ENV_UNREAD_MS: &str = "SHMWIRE_WORKER_TEST_UNREAD_MS";
/// If set: the worker's `reorder_wait` in milliseconds.
pub const ENV_REORDER_MS: &str = "SHMWIRE_WORKER_TEST_REORDER_MS";
/// A store child's capacity in bytes ([`TestSession::spawn_store`]).
pub const ENV_STORE_BYTES: &str = "SHMWIRE_WORKER_TEST_STORE_BYTES";
pub const MODULE: &str = "worker_tests";
/// Bound on every wait of these tests.
pub const GUARD: Duration = Duration::from_secs(60);

pub fn i64_arg(x: i64) -> TaskArg {
    TaskArg::value(x.to_le_bytes().to_vec(), Vec::new())
}

pub fn as_i64(v: &[u8]) -> i64 {
    i64::from_le_bytes(v.try_into().expect("an 8-byte value"))
}

/// A session under its own temporary root.
pub struct TestSession {
    pub root: tempfile::TempDir,
    pub session: Session,
    pub node: NodeId,
}

impl TestSession {
    pub fn new(name: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("shmw")
            .tempdir_in("/tmp")
            .unwrap();
        // The session root must be private to this user.
        std::fs::set_permissions(
            root.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let session = Session::open_in(root.path(), name).unwrap();
        Self {
            root,
            session,
            node: NodeId::from_random(),
        }
    }

    pub fn driver(&self) -> CoreWorker {
        CoreWorker::new(&self.session, CoreWorkerOptions::new(self.node)).unwrap()
    }

    /// Starts a worker child process that serves `callers` connections.
    pub fn spawn_worker(&self, test: &str, callers: u64) -> WorkerProcess {
        self.spawn_worker_env(test, callers, &[])
    }

    /// The session's store service ([`shmwire::store::DEFAULT_STORE_NAME`],
    /// `capacity` bytes) in a child process running `test` (so that a test
    /// can stop it), once clients can connect to it.
    pub fn spawn_store(&self, test: &str, capacity: u64) -> KillOnDrop {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(ENV_ROLE, "store")
            .env(ENV_ROOT, self.root.path())
            .env(ENV_SESSION, self.session.name())
            .env(ENV_STORE_BYTES, capacity.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let child = KillOnDrop(Some(child));
        let deadline = Instant::now() + GUARD;
        while shmwire::store::StoreClient::connect(
            &self.session,
            shmwire::store::DEFAULT_STORE_NAME,
        )
        .is_err()
        {
            assert!(Instant::now() < deadline, "the store child never served");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    }

    /// [`Self::spawn_worker`] with extra environment (e.g. [`ENV_STORE`]).
    pub fn spawn_worker_env(
        &self,
        test: &str,
        callers: u64,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let id = WorkerId::from_random();
        let child = Command::new(std::env::current_exe().unwrap())
            .envs(env.iter().copied())
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(ENV_ROLE, "worker")
            .env(ENV_ROOT, self.root.path())
            .env(ENV_SESSION, self.session.name())
            .env(ENV_ID, id.to_string())
            .env(ENV_NODE, self.node.to_string())
            .env(ENV_CALLERS, callers.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut p = WorkerProcess {
            child: Some(child),
            id,
        };
        p.wait_registered(&self.session);
        p
    }
}

impl Drop for TestSession {
    fn drop(&mut self) {
        let _ = self.session.remove_all();
    }
}

/// A worker child; killed and reaped on drop unless waited for.
pub struct WorkerProcess {
    pub child: Option<Child>,
    pub id: WorkerId,
}

impl WorkerProcess {
    fn wait_registered(&mut self, session: &Session) {
        let dir = Directory::for_session(session).unwrap();
        let deadline = Instant::now() + GUARD;
        loop {
            match dir.lookup(&self.id) {
                Ok(_) => return,
                Err(LookupError::NoSuchWorker { .. }) if Instant::now() < deadline => {
                    if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!("worker exited before registering: {status}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("worker never registered: {e}"),
            }
        }
    }

    /// Waits (bounded) for a clean exit.
    pub fn wait_success(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "worker failed: {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A panic payload whose own `drop` panics (a handler may throw any
/// value): `std::panic::panic_any(PanicOnDrop)`.
pub struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("the panic payload's drop panicked too");
    }
}

/// The functions and actor classes every test worker serves.
pub fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "square"), |a| {
        let x = a.i64(0)?;
        Ok((x * x).to_le_bytes().to_vec())
    })
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "pid"), |_| {
        Ok(i64::from(std::process::id()).to_le_bytes().to_vec())
    })
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "panic"), |a| {
        panic!("refusing {}", a.i64(0)?)
    })
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "panic_drop"), |_| {
        std::panic::panic_any(PanicOnDrop)
    })
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "fail"), |a| {
        Err(AppError::new(format!("refusing {}", a.i64(0)?)))
    })
    .unwrap();
    r.register_actor_class(
        ActorClass::new(MODULE, "Counter", |a| Ok(a.i64(0).unwrap_or(0)))
            .method("add", |total: &mut i64, a| {
                *total += a.i64(0)?;
                Ok(total.to_le_bytes().to_vec())
            })
            .method("slow_add", |total: &mut i64, a| {
                std::thread::sleep(Duration::from_millis(2));
                *total += a.i64(0)?;
                Ok(total.to_le_bytes().to_vec())
            })
            .method("get", |total: &mut i64, _| Ok(total.to_le_bytes().to_vec()))
            .method("panic", |_, a| panic!("boom {}", a.i64(0)?))
            .method("panic_drop", |_, _| std::panic::panic_any(PanicOnDrop))
            .method("sleep_ms", |total: &mut i64, a| {
                std::thread::sleep(Duration::from_millis(a.i64(0)? as u64));
                Ok(total.to_le_bytes().to_vec())
            })
            .method("fail", |_, a| {
                Err(AppError::new(format!("boom {}", a.i64(0)?)))
            })
            .method("big", |_, a| Ok(vec![7u8; a.i64(0)? as usize])),
    )
    .unwrap();
    // Large arguments and returns: checks argument 0 against the pattern
    // of seed argument 1 and returns `len` (argument 2) bytes of the
    // pattern of seed + 1; the state counts the bytes checked.
    r.register_actor_class(ActorClass::new(MODULE, "Blob", |_| Ok(0u64)).method(
        "transform",
        |checked: &mut u64, a| {
            let data = a.bytes(0)?;
            let seed = a.i64(1)? as u64;
            let len = a.i64(2)? as usize;
            if let Some(i) = (0..data.len()).find(|&i| data[i] != pattern_byte(seed, i)) {
                return Err(AppError::new(format!(
                    "argument byte {i} of {} is {} (seed {seed})",
                    data.len(),
                    data[i]
                )));
            }
            *checked += data.len() as u64;
            Ok(pattern(seed + 1, len))
        },
    ))
    .unwrap();
    // A constructor that takes a large value: checks argument 0 against
    // the pattern of seed argument 1 and keeps its length (`len`); sleeps
    // argument 2 ms first, if given (a creation that takes a while).
    r.register_actor_class(
        ActorClass::new(MODULE, "Held", |a| {
            std::thread::sleep(Duration::from_millis(a.i64(2).unwrap_or(0).max(0) as u64));
            let data = a.bytes(0)?;
            let seed = a.i64(1)? as u64;
            match (0..data.len()).find(|&i| data[i] != pattern_byte(seed, i)) {
                Some(i) => Err(AppError::new(format!(
                    "constructor argument byte {i} of {} is {} (seed {seed})",
                    data.len(),
                    data[i]
                ))),
                None => Ok(data.len() as i64),
            }
        })
        .method("len", |len: &mut i64, _| Ok(len.to_le_bytes().to_vec())),
    )
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "big_fn"), |_| {
        Ok(vec![9u8; 200_000])
    })
    .unwrap();
    // Sleeps `a[0]` ms, then returns 200,000 bytes that differ each run.
    r.register_function(FunctionDescriptor::rust(MODULE, "", "big_rand"), |a| {
        static RUNS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(1);
        std::thread::sleep(Duration::from_millis(a.i64(0)?.max(0) as u64));
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(vec![run; 200_000])
    })
    .unwrap();
    // `a[0]` bytes of 7s.
    r.register_function(FunctionDescriptor::rust(MODULE, "", "fill"), |a| {
        Ok(vec![7u8; a.i64(0)?.max(0) as usize])
    })
    .unwrap();
    r.register_function(FunctionDescriptor::rust(MODULE, "", "len"), |a| {
        Ok((a.bytes(0)?.len() as i64).to_le_bytes().to_vec())
    })
    .unwrap();
    // Checks that each caller's calls arrive in its submission order.
    r.register_actor_class(
        ActorClass::new(MODULE, "Sequencer", |_| Ok(HashMap::<i64, i64>::new())).method(
            "next",
            |last: &mut HashMap<i64, i64>, a| {
                let (caller, x) = (a.i64(0)?, a.i64(1)?);
                let prev = last.entry(caller).or_insert(-1);
                if x != *prev + 1 {
                    return Err(AppError::new(format!(
                        "caller {caller}: got {x} after {prev}"
                    )));
                }
                *prev = x;
                Ok(x.to_le_bytes().to_vec())
            },
        ),
    )
    .unwrap();
    r.register_actor_class(ActorClass::new(
        MODULE,
        "Failing",
        |_| -> Result<(), AppError> { Err(AppError::new("constructor refuses")) },
    ))
    .unwrap();
    r
}

/// Byte `i` of the test pattern of `seed`.
pub fn pattern_byte(seed: u64, i: usize) -> u8 {
    ((i as u64)
        .wrapping_mul(31)
        .wrapping_add(seed.wrapping_mul(7))
        % 251) as u8
}

/// `len` bytes of the test pattern of `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seed, i)).collect()
}

/// If this process is a worker child, serve and exit; if a store child
/// ([`TestSession::spawn_store`]), run the session's store service until
/// killed (at most [`GUARD`]); otherwise return.
pub fn maybe_run_worker() {
    let role = std::env::var(ENV_ROLE);
    if role.as_deref() != Ok("worker") && role.as_deref() != Ok("store") {
        return;
    }
    let var = |k| std::env::var(k).unwrap();
    let session = Session::open_in(var(ENV_ROOT), &var(ENV_SESSION)).unwrap();
    if role.as_deref() == Ok("store") {
        let bytes: u64 = var(ENV_STORE_BYTES).parse().unwrap();
        let _service =
            shmwire::store::StoreService::start(&session, shmwire::store::StoreConfig::new(bytes))
                .unwrap();
        std::thread::sleep(GUARD);
        std::process::exit(0);
    }
    let id: WorkerId = var(ENV_ID).parse().unwrap();
    let node: NodeId = var(ENV_NODE).parse().unwrap();
    let callers: u64 = var(ENV_CALLERS).parse().unwrap();
    let mut options = WorkerOptions::new(id, node);
    if let Ok(name) = std::env::var(ENV_STORE) {
        let mut opts = shmwire::store::ClientOptions::default();
        if let Ok(ms) = std::env::var(ENV_STORE_REPLY_MS) {
            opts.reply_timeout = Duration::from_millis(ms.parse().unwrap());
        }
        options.store =
            Some(shmwire::store::StoreClient::connect_with(&session, &name, opts).unwrap());
    }
    if let Ok(ms) = std::env::var(ENV_ARG_FETCH_MS) {
        options.arg_fetch_timeout = Duration::from_millis(ms.parse().unwrap());
    }
    if let Ok(n) = std::env::var(ENV_MAX_DEPARTED) {
        options.max_departed_callers = n.parse().unwrap();
    }
    if let Ok(ms) = std::env::var(ENV_DEPARTED_TTL_MS) {
        options.departed_caller_ttl = Duration::from_millis(ms.parse().unwrap());
    }
    if let Ok(n) = std::env::var(ENV_RING_MEMORY) {
        if let Some(shm) = options.shm.as_mut() {
            shm.max_ring_memory = n.parse().unwrap();
        }
    }
    if let Ok(n) = std::env::var(ENV_MAX_HELD) {
        options.max_held_request_bytes = n.parse().unwrap();
    }
    if let Ok(n) = std::env::var(ENV_MAX_CONNECTIONS) {
        options.max_connections = n.parse().unwrap();
    }
    if let Ok(n) = std::env::var(ENV_MAX_CACHED) {
        options.max_cached_reply_bytes = n.parse().unwrap();
    }
    if let Ok(ms) = std::env::var(ENV_UNREAD_MS) {
        options.unread_reply_timeout = Some(Duration::from_millis(ms.parse().unwrap()));
    }
    if let Ok(ms) = std::env::var(ENV_REORDER_MS) {
        options.reorder_wait = Duration::from_millis(ms.parse().unwrap());
    }
    if let Ok(addr) = std::env::var(ENV_OBJECT_ENDPOINT) {
        options.object_manager_address = Some(addr.parse().unwrap());
    }
    let mut worker = Worker::bind(&session, options, Arc::new(registry())).unwrap();
    if let Ok(spare) = std::env::var(ENV_SPARE_FDS) {
        fd_limit::leave_free(spare.parse().unwrap());
    }
    let served = if std::env::var_os(ENV_UNTIL_EXIT).is_some() {
        worker.serve_until_exit(GUARD)
    } else {
        worker.serve_callers(callers, GUARD)
    };
    if let Ok(path) = std::env::var(ENV_EVENTS_FILE) {
        let lines: String = worker
            .take_events()
            .iter()
            .map(|e| format!("{e:?}\n"))
            .collect();
        std::fs::write(path, lines).unwrap();
    }
    let code = match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {id}: {e}");
            1
        }
    };
    std::process::exit(code);
}

/// A child process killed and reaped on every way out of a test.
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    /// Waits (bounded) for a clean exit.
    pub fn wait_success(&mut self) {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "child failed: {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `Counter` actor (the test registry's, starting at `start`) created
/// on `worker`.
pub fn create_counter(driver: &mut CoreWorker, worker: WorkerId, start: i64) -> ActorHandle {
    driver
        .create_actor(worker, MODULE, "Counter", vec![i64_arg(start)], 0)
        .unwrap()
}

/// [`create_counter`] from 0 with `options`.
pub fn create_counter_with(
    driver: &mut CoreWorker,
    worker: WorkerId,
    options: shmwire::worker::ActorOptions,
) -> ActorHandle {
    driver
        .create_actor_with(worker, MODULE, "Counter", vec![i64_arg(0)], options)
        .unwrap()
}

/// A raw connection of caller `me` to `worker` (the protocol driven by
/// hand).
pub fn raw_caller(
    s: &TestSession,
    worker: WorkerId,
    me: WorkerId,
) -> shmwire::transport::AnyConnection {
    raw_caller_over(s, worker, me, false)
}

/// [`raw_caller`] over TCP when `tcp`.
pub fn raw_caller_over(
    s: &TestSession,
    worker: WorkerId,
    me: WorkerId,
    tcp: bool,
) -> shmwire::transport::AnyConnection {
    let token = shmwire::node::load_or_create_token(&s.session).unwrap();
    let directory: Arc<dyn shmwire::transport::WorkerLookup> =
        Arc::new(shmwire::node::Directory::for_session(&s.session).unwrap());
    shmwire::transport::Connector::new(shmwire::transport::TransportConfig::new(me, token), s.node)
        .with_session(&s.session, directory)
        .force_tcp(tcp)
        .connect_worker(&worker)
        .unwrap()
}

/// Caller `me`'s request for `method(args)` of `actor` on `worker`, its
/// task number `counter` (each its own task id), sent with that sequence
/// number and `client_processed_up_to` = `cpu`.
pub fn actor_request(
    (worker, actor, me): (WorkerId, &ActorHandle, WorkerId),
    method: &str,
    counter: u64,
    cpu: i64,
    args: &[i64],
) -> shmwire::spec::PushTaskRequest {
    shmwire::spec::PushTaskRequest {
        intended_worker_id: worker,
        task_spec: shmwire::spec::TaskSpecBuilder::new(actor.method_descriptor(method))
            .parent(
                shmwire::ids::TaskId::compute_driver_task_id(me),
                counter + 1,
            )
            .args(args.iter().map(|&x| i64_arg(x)).collect::<Vec<_>>())
            .num_returns(1)
            .build_actor_task(shmwire::spec::ActorTaskTarget {
                actor_id: actor.actor_id(),
                actor_counter: counter,
                previous_cursor: shmwire::ids::ObjectId::for_actor_handle(actor.actor_id()),
                caller_starts_at: 0,
            }),
        sequence_number: counter as i64,
        client_processed_up_to: cpu,
        resource_mapping: Vec::new(),
    }
}

/// The slowest of rounds of 10 [`square_calls`] of `driver` on `worker`
/// made one after the other for `span`.
pub fn slowest_calls_for(driver: &mut CoreWorker, worker: WorkerId, span: Duration) -> Duration {
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    while start.elapsed() < span {
        slowest = slowest.max(square_calls(driver, worker, 10));
    }
    slowest
}

/// `n` normal `square` tasks of `driver` on `worker`, one after the other,
/// each result checked; returns how long they took.
pub fn square_calls(driver: &mut CoreWorker, worker: WorkerId, n: i64) -> Duration {
    let square = FunctionDescriptor::rust(MODULE, "", "square");
    let start = std::time::Instant::now();
    for x in 0..n {
        let r = driver
            .submit_task(
                worker,
                square.clone(),
                vec![i64_arg(x)],
                shmwire::worker::TaskOptions::default(),
            )
            .unwrap();
        assert_eq!(as_i64(&driver.get(&[r], GUARD).unwrap()[0]), x * x);
    }
    start.elapsed()
}

/// The resident set of process `pid`, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The typed error of a task whose `get` must fail (asserts the error names
/// `r`'s object).
pub fn task_error(driver: &mut CoreWorker, r: &ObjectRef) -> TaskError {
    match driver.get(std::slice::from_ref(r), GUARD) {
        Err(GetError::Task { object_id, error }) => {
            assert_eq!(object_id, r.id());
            error
        }
        other => panic!("expected a task error, got {other:?}"),
    }
}

#[path = "../job_control/mod.rs"]
mod job_control;
#[allow(unused_imports)] // not every test binary stops a process
pub use job_control::{continue_process, stop_process};

/// Options of an owner with the session's store, its client's reply
/// timeout `reply_timeout` (short, for tests that stop the store past it).
pub fn owner_options(
    s: &TestSession,
    reply_timeout: Duration,
) -> shmwire::worker::CoreWorkerOptions {
    let client = shmwire::store::StoreClient::connect_with(
        &s.session,
        shmwire::store::DEFAULT_STORE_NAME,
        shmwire::store::ClientOptions {
            reply_timeout,
            ..Default::default()
        },
    )
    .unwrap();
    shmwire::worker::CoreWorkerOptions::new(s.node).with_store(client)
}
