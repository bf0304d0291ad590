//! Threaded actors (`max_concurrency`, named concurrency groups) with real
//! processes: each test's actors live in worker child processes (this test
//! binary re-executed with a role in the environment, serving the `Gate`
//! class below), every wait is bounded, every child is reaped and each test
//! has its own session root.
//!
//! The handlers rendezvous and count inside the worker process: `meet`
//! returns only once a second call with the same key has started (bounded),
//! so two `meet`s complete only if two run at once; `track_*` record the
//! most calls of their group ever running at the same time.

mod worker_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shmwire::ids::{NodeId, WorkerId};
use shmwire::shm::Session;
use shmwire::spec::ConcurrencyGroup;
use shmwire::worker::{
    ActorClass, ActorHandle, ActorOptions, AppError, Args, CoreWorker, CoreWorkerOptions,
    FunctionRegistry, GetError, ObjectRef, TaskError, TaskResult, Worker, WorkerError,
    WorkerOptions,
};
use worker_support::{
    as_i64, i64_arg, TestSession, ENV_CALLERS, ENV_ID, ENV_NODE, ENV_ROLE, ENV_ROOT, ENV_SESSION,
    GUARD, MODULE,
};

/// The state of a `Gate` actor: `Sync`, so its shared methods may run at
/// once on a threaded actor.
#[derive(Default)]
struct Gate {
    /// Rendezvous: calls started per key.
    met: Mutex<HashMap<i64, i64>>,
    met_cv: Condvar,
    released: Mutex<bool>,
    released_cv: Condvar,
    /// Per tracker: (running now, most ever running at once).
    trackers: Mutex<HashMap<&'static str, (i64, i64)>>,
    /// `count_slow`: runs per key.
    runs: Mutex<HashMap<i64, i64>>,
    /// `next`: the last value seen (order check).
    last: AtomicI64,
    /// Set while an exclusive method runs (it must run alone).
    exclusive: AtomicBool,
}

fn ms(a: &Args<'_>, i: usize) -> Result<Duration, AppError> {
    Ok(Duration::from_millis(a.i64(i)?.max(0) as u64))
}

fn ok(x: i64) -> TaskResult {
    Ok(x.to_le_bytes().to_vec())
}

impl Gate {
    /// Returns once `2` calls with key `a[0]` have started, or fails after
    /// `a[1]` ms.
    fn meet(&self, a: &Args<'_>) -> TaskResult {
        let (key, wait) = (a.i64(0)?, ms(a, 1)?);
        let deadline = Instant::now() + wait;
        let mut met = self.met.lock().unwrap();
        *met.entry(key).or_insert(0) += 1;
        self.met_cv.notify_all();
        while met[&key] < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AppError::new(format!("meet {key}: no partner started")));
            }
            met = self.met_cv.wait_timeout(met, left).unwrap().0;
        }
        ok(met[&key])
    }

    /// Waits until `release` ran, at most `a[0]` ms.
    fn block(&self, a: &Args<'_>) -> TaskResult {
        let deadline = Instant::now() + ms(a, 0)?;
        let mut r = self.released.lock().unwrap();
        while !*r {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AppError::new("never released"));
            }
            r = self.released_cv.wait_timeout(r, left).unwrap().0;
        }
        ok(1)
    }

    fn release(&self) -> TaskResult {
        *self.released.lock().unwrap() = true;
        self.released_cv.notify_all();
        ok(0)
    }

    /// Counts itself as running under `name` for `a[0]` ms.
    fn track(&self, name: &'static str, a: &Args<'_>) -> TaskResult {
        {
            let mut t = self.trackers.lock().unwrap();
            let e = t.entry(name).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(e.0);
        }
        if self.exclusive.load(Ordering::SeqCst) {
            return Err(AppError::new("ran next to an exclusive method"));
        }
        std::thread::sleep(ms(a, 0)?);
        let mut t = self.trackers.lock().unwrap();
        t.get_mut(name).unwrap().0 -= 1;
        ok(0)
    }

    fn max_seen(&self, which: i64) -> TaskResult {
        let name = match which {
            0 => "default",
            1 => "io",
            _ => "compute",
        };
        ok(self.trackers.lock().unwrap().get(name).map_or(0, |e| e.1))
    }
}

fn gate_class() -> ActorClass<Gate> {
    ActorClass::new(MODULE, "Gate", |_| Ok(Gate::default()))
        .shared_method("meet", Gate::meet)
        .shared_method_in_group("io", "meet_io", Gate::meet)
        .shared_method_in_group("io", "block", Gate::block)
        .shared_method("release", |g, _| g.release())
        .shared_method("track_default", |g, a| g.track("default", a))
        .shared_method_in_group("io", "track_io", |g, a| g.track("io", a))
        .shared_method_in_group("compute", "track_compute", |g, a| g.track("compute", a))
        .shared_method("max_seen", |g, a| g.max_seen(a.i64(0)?))
        .shared_method("panic_drop", |_, _| {
            std::panic::panic_any(worker_support::PanicOnDrop)
        })
        // `a[0]` bytes of 7s.
        .shared_method("big", |_, a| Ok(vec![7u8; a.i64(0)?.max(0) as usize]))
        .shared_method_in_group("gpu", "on_gpu", |_, _| ok(0))
        .shared_method("next", |g: &Gate, a| {
            let x = a.i64(0)?;
            let prev = g.last.swap(x, Ordering::SeqCst);
            if x != prev + 1 {
                return Err(AppError::new(format!("got {x} after {prev}")));
            }
            ok(x)
        })
        .shared_method("echo", |_, a| {
            // Caller and value back, after a short pause so calls overlap.
            std::thread::sleep(Duration::from_micros(200));
            ok(a.i64(0)? * 1_000_000 + a.i64(1)?)
        })
        // Runs alone (write lock): no shared method may run meanwhile.
        .shared_method("count_slow", |g: &Gate, a| {
            // Counts the runs of key a[0], then takes a[1] ms.
            let n = {
                let mut runs = g.runs.lock().unwrap();
                let n = runs.entry(a.i64(0)?).or_insert(0);
                *n += 1;
                *n
            };
            std::thread::sleep(ms(a, 1)?);
            ok(n)
        })
        .method("exclusive", |g: &mut Gate, a| {
            g.exclusive.store(true, Ordering::SeqCst);
            std::thread::sleep(ms(a, 0)?);
            g.exclusive.store(false, Ordering::SeqCst);
            ok(0)
        })
}

/// If this process is a worker child, serve the `Gate` class and exit.
fn maybe_run_worker() {
    if std::env::var(ENV_ROLE).as_deref() != Ok("worker") {
        return;
    }
    let var = |k| std::env::var(k).unwrap();
    let session = Session::open_in(var(ENV_ROOT), &var(ENV_SESSION)).unwrap();
    let id: WorkerId = var(ENV_ID).parse().unwrap();
    let node: NodeId = var(ENV_NODE).parse().unwrap();
    let callers: u64 = var(ENV_CALLERS).parse().unwrap();
    let mut registry = FunctionRegistry::new();
    registry.register_actor_class(gate_class()).unwrap();
    let mut options = WorkerOptions::new(id, node);
    if let Ok(n) = std::env::var(worker_support::ENV_MAX_HELD) {
        options.max_held_request_bytes = n.parse().unwrap();
    }
    let mut worker = Worker::bind(&session, options, Arc::new(registry)).unwrap();
    let code = match worker.serve_callers(callers, GUARD) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker {id}: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn gate(driver: &mut CoreWorker, worker: WorkerId, options: ActorOptions) -> ActorHandle {
    driver
        .create_actor_with(worker, MODULE, "Gate", vec![], options)
        .unwrap()
}

/// A `Gate` on `worker` with two threads by default and a one-thread `io`
/// group, its calls retried `max_task_retries` times.
fn io_gate(driver: &mut CoreWorker, worker: WorkerId, max_task_retries: i32) -> ActorHandle {
    gate(
        driver,
        worker,
        ActorOptions {
            max_concurrency: 2,
            max_task_retries,
            concurrency_groups: groups(&[("io", 1)]),
            ..ActorOptions::default()
        },
    )
}

fn call(driver: &mut CoreWorker, a: &ActorHandle, m: &str, args: &[i64]) -> ObjectRef {
    driver
        .submit_actor_task(a, m, args.iter().map(|&x| i64_arg(x)).collect())
        .unwrap()
}

fn value(driver: &mut CoreWorker, r: &ObjectRef) -> Result<i64, TaskError> {
    match driver.get(std::slice::from_ref(r), GUARD) {
        Ok(v) => Ok(as_i64(&v[0])),
        Err(GetError::Task { error, .. }) => Err(error),
        Err(e) => panic!("get failed: {e}"),
    }
}

fn groups(spec: &[(&str, i32)]) -> Vec<ConcurrencyGroup> {
    spec.iter()
        .map(|&(n, m)| ConcurrencyGroup::new(n, m))
        .collect()
}

/// `max_concurrency = 2`: two calls that each wait for the other to start
/// both complete. The same calls on an actor with `max_concurrency = 1`
/// run one after the other: the first gives up waiting (bounded), then the
/// second finds it started.
#[test]
fn max_concurrency_two_runs_two_calls_at_once() {
    maybe_run_worker();
    let s = TestSession::new("conc2");
    let test = "max_concurrency_two_runs_two_calls_at_once";
    let (w2, w1) = (s.spawn_worker(test, 1), s.spawn_worker(test, 1));
    let mut driver = s.driver();
    let two = gate(
        &mut driver,
        w2.id,
        ActorOptions {
            max_concurrency: 2,
            ..ActorOptions::default()
        },
    );
    for key in 0..20 {
        let refs = [
            call(&mut driver, &two, "meet", &[key, 20_000]),
            call(&mut driver, &two, "meet", &[key, 20_000]),
        ];
        for r in &refs {
            assert_eq!(value(&mut driver, r), Ok(2), "key {key}");
        }
    }
    let one = gate(&mut driver, w1.id, ActorOptions::default());
    let refs = [
        call(&mut driver, &one, "meet", &[7, 300]),
        call(&mut driver, &one, "meet", &[7, 300]),
    ];
    match value(&mut driver, &refs[0]) {
        Err(TaskError::Application { message, .. }) => {
            assert!(message.contains("no partner"), "{message}")
        }
        other => panic!("a lone meet must time out, got {other:?}"),
    }
    assert_eq!(value(&mut driver, &refs[1]), Ok(2));
    drop(driver);
    w2.wait_success();
    w1.wait_success();
}

/// A threaded actor's method that panics with a payload whose own drop
/// panics fails that call alone: both pool threads live on and serve. Before
/// (the attack on `0060161`), the payload's panic ended the pool thread with
/// its task unanswered, and with both threads gone every later call hung.
#[test]
fn a_panic_payload_that_panics_when_dropped_fails_its_call_alone() {
    maybe_run_worker();
    let s = TestSession::new("conc-pdrop");
    let w = s.spawn_worker(
        "a_panic_payload_that_panics_when_dropped_fails_its_call_alone",
        1,
    );
    let mut driver = s.driver();
    let two = gate(
        &mut driver,
        w.id,
        ActorOptions {
            max_concurrency: 2,
            ..ActorOptions::default()
        },
    );
    for _ in 0..3 {
        let r = call(&mut driver, &two, "panic_drop", &[]);
        match value(&mut driver, &r) {
            Err(TaskError::Application { message, .. }) => {
                assert_eq!(message, "the handler panicked: a non-string payload")
            }
            other => panic!("expected the panic's error, got {other:?}"),
        }
    }
    // Two calls that each wait for the other: both threads are there.
    let refs = [
        call(&mut driver, &two, "meet", &[1, 20_000]),
        call(&mut driver, &two, "meet", &[1, 20_000]),
    ];
    for r in &refs {
        assert_eq!(value(&mut driver, r), Ok(2));
    }
    drop(driver);
    w.wait_success();
}

/// `max_concurrency = 1` (the default): calls run in submission order, a
/// `Sync` class's shared methods included; and a one-thread group of a
/// threaded actor keeps its calls in order too.
#[test]
fn max_concurrency_one_keeps_submission_order() {
    maybe_run_worker();
    let s = TestSession::new("conc1");
    let test = "max_concurrency_one_keeps_submission_order";
    let (wa, wb) = (s.spawn_worker(test, 1), s.spawn_worker(test, 1));
    let mut driver = s.driver();
    let plain = gate(&mut driver, wa.id, ActorOptions::default());
    let refs: Vec<ObjectRef> = (1..=2_000)
        .map(|x| call(&mut driver, &plain, "next", &[x]))
        .collect();
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(value(&mut driver, r), Ok(i as i64 + 1));
    }
    // Threaded (a default pool of 4), but `next` forced into group "seq"
    // of one thread: still in order.
    let threaded = gate(
        &mut driver,
        wb.id,
        ActorOptions {
            max_concurrency: 4,
            concurrency_groups: groups(&[("seq", 1)]),
            ..ActorOptions::default()
        },
    );
    let seq = threaded.with_concurrency_group("seq");
    let refs: Vec<ObjectRef> = (1..=2_000)
        .map(|x| call(&mut driver, &seq, "next", &[x]))
        .collect();
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(value(&mut driver, r), Ok(i as i64 + 1));
    }
    drop(driver);
    wa.wait_success();
    wb.wait_success();
}

/// Groups {"io": 1, "compute": 2}: a call blocked in "io" does not delay
/// calls in "compute" or the default group; no group ever runs more than
/// its `max_concurrency`; a per-call group override moves a method to
/// another pool; an exclusive (`&mut`) method runs alone.
#[test]
fn concurrency_groups_isolate_and_bound_their_calls() {
    maybe_run_worker();
    let s = TestSession::new("groups");
    let w = s.spawn_worker("concurrency_groups_isolate_and_bound_their_calls", 1);
    let mut driver = s.driver();
    let a = gate(
        &mut driver,
        w.id,
        ActorOptions {
            concurrency_groups: groups(&[("io", 1), ("compute", 2)]),
            ..ActorOptions::default()
        },
    );
    let blocked = call(&mut driver, &a, "block", &[30_000]);
    let start = Instant::now();
    let mut refs = Vec::new();
    for _ in 0..8 {
        refs.push(call(&mut driver, &a, "track_compute", &[40]));
    }
    for _ in 0..4 {
        refs.push(call(&mut driver, &a, "track_default", &[20]));
    }
    for r in &refs {
        assert_eq!(value(&mut driver, r), Ok(0));
    }
    // 8 × 40 ms on 2 threads ≈ 160 ms; far below the 30 s block.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let (ready, _) = driver
        .wait(std::slice::from_ref(&blocked), 1, Duration::ZERO)
        .unwrap();
    assert!(ready.is_empty(), "block returned before its release");
    // A second "io" call queues behind the blocked one (one thread).
    let io_queued = call(&mut driver, &a, "track_io", &[1]);
    let (ready, _) = driver
        .wait(
            std::slice::from_ref(&io_queued),
            1,
            Duration::from_millis(200),
        )
        .unwrap();
    assert!(
        ready.is_empty(),
        "io ran a second call next to the blocked one"
    );
    let released = call(&mut driver, &a, "release", &[]);
    assert_eq!(value(&mut driver, &released), Ok(0));
    assert_eq!(value(&mut driver, &blocked), Ok(1));
    assert_eq!(value(&mut driver, &io_queued), Ok(0));
    // "io" is bounded by 1 with several queued.
    let refs: Vec<ObjectRef> = (0..4)
        .map(|_| call(&mut driver, &a, "track_io", &[20]))
        .collect();
    for r in &refs {
        assert_eq!(value(&mut driver, r), Ok(0));
    }
    let max = |d: &mut CoreWorker, which| {
        let r = call(d, &a, "max_seen", &[which]);
        value(d, &r).unwrap()
    };
    assert_eq!(max(&mut driver, 0), 1, "default group: max_concurrency 1");
    assert_eq!(max(&mut driver, 1), 1, "io: max_concurrency 1");
    assert_eq!(
        max(&mut driver, 2),
        2,
        "compute: max_concurrency 2, reached"
    );
    // `meet` is a default-group method (one thread): sent to "compute"
    // (two threads) per call, two of them meet.
    let compute = a.with_concurrency_group("compute");
    let refs = [
        call(&mut driver, &compute, "meet", &[1, 20_000]),
        call(&mut driver, &compute, "meet", &[1, 20_000]),
    ];
    for r in &refs {
        assert_eq!(value(&mut driver, r), Ok(2));
    }
    // An exclusive method next to shared ones: `track` fails if it ever
    // sees the exclusive one running.
    let mut refs = vec![call(&mut driver, &a, "exclusive", &[50])];
    for _ in 0..6 {
        refs.push(call(&mut driver, &a, "track_compute", &[5]));
        refs.push(call(&mut driver, &a, "track_io", &[5]));
    }
    for r in &refs {
        assert_eq!(value(&mut driver, r), Ok(0));
    }
    drop(driver);
    w.wait_success();
}

/// A group the actor did not define — named per call, or the class's
/// group for a method — fails that task with a typed error; the actor
/// keeps serving. Invalid options fail the creation.
#[test]
fn unknown_concurrency_group_is_a_typed_error() {
    maybe_run_worker();
    let s = TestSession::new("nogroup");
    let test = "unknown_concurrency_group_is_a_typed_error";
    let (wt, wp) = (s.spawn_worker(test, 1), s.spawn_worker(test, 1));
    let mut driver = s.driver();
    let threaded = gate(
        &mut driver,
        wt.id,
        ActorOptions {
            concurrency_groups: groups(&[("io", 1)]),
            ..ActorOptions::default()
        },
    );
    let plain = gate(&mut driver, wp.id, ActorOptions::default());
    for a in [&threaded, &plain] {
        let r = call(
            &mut driver,
            &a.with_concurrency_group("nope"),
            "meet",
            &[0, 1],
        );
        match value(&mut driver, &r) {
            Err(TaskError::UnknownConcurrencyGroup {
                function,
                group,
                message,
            }) => {
                assert_eq!(function, "Gate::meet");
                assert_eq!(group, "nope");
                assert!(message.contains("\"nope\""), "{message}");
            }
            other => panic!("expected UnknownConcurrencyGroup, got {other:?}"),
        }
        let r = call(&mut driver, a, "on_gpu", &[]);
        assert!(
            matches!(value(&mut driver, &r),
                Err(TaskError::UnknownConcurrencyGroup { ref group, .. }) if group == "gpu"),
            "the class's group gpu is not defined"
        );
        // Still serving.
        let r = call(&mut driver, a, "release", &[]);
        assert_eq!(value(&mut driver, &r), Ok(0));
    }
    // "io" is defined on the threaded actor only.
    let r = call(&mut driver, &plain, "meet_io", &[0, 1]);
    assert!(matches!(
        value(&mut driver, &r),
        Err(TaskError::UnknownConcurrencyGroup { .. })
    ));
    // Invalid options: the creation task fails, no actor.
    for bad in [
        ActorOptions {
            max_concurrency: -1,
            ..ActorOptions::default()
        },
        ActorOptions {
            concurrency_groups: groups(&[("io", 1), ("io", 2)]),
            ..ActorOptions::default()
        },
        ActorOptions {
            concurrency_groups: groups(&[("io", 0)]),
            ..ActorOptions::default()
        },
        ActorOptions {
            max_concurrency: 1_000_000,
            ..ActorOptions::default()
        },
    ] {
        match driver.create_actor_with(wp.id, MODULE, "Gate", vec![], bad.clone()) {
            Err(WorkerError::ActorCreation {
                error: TaskError::Application { message, .. },
                ..
            }) => assert!(message.contains("invalid concurrency options"), "{message}"),
            other => panic!("{bad:?}: expected a failed creation, got {other:?}"),
        }
    }
    // The worker still hosts the plain actor.
    let r = call(&mut driver, &plain, "release", &[]);
    assert_eq!(value(&mut driver, &r), Ok(0));
    drop(driver);
    wt.wait_success();
    wp.wait_success();
}

/// Several callers at once on a threaded actor (default pool of 4): every
/// reply reaches its own caller with its own value.
#[test]
fn concurrent_replies_reach_their_callers() {
    maybe_run_worker();
    let s = TestSession::new("replies");
    const CALLERS: i64 = 3;
    let w = s.spawn_worker("concurrent_replies_reach_their_callers", 1 + CALLERS as u64);
    let mut creator = s.driver();
    let a = gate(
        &mut creator,
        w.id,
        ActorOptions {
            max_concurrency: 4,
            ..ActorOptions::default()
        },
    );
    std::thread::scope(|scope| {
        for caller in 0..CALLERS {
            let (a, s) = (a.clone(), &s);
            scope.spawn(move || {
                let mut opts = CoreWorkerOptions::new(s.node);
                opts.force_tcp = caller == CALLERS - 1;
                let mut me = CoreWorker::new(&s.session, opts).unwrap();
                me.register_actor(&a, 0).unwrap();
                for base in (0..600).step_by(100) {
                    let refs: Vec<ObjectRef> = (base..base + 100)
                        .map(|x| {
                            me.submit_actor_task(&a, "echo", vec![i64_arg(caller), i64_arg(x)])
                                .unwrap()
                        })
                        .collect();
                    let values = me.get(&refs, GUARD).unwrap();
                    for (i, v) in values.iter().enumerate() {
                        assert_eq!(as_i64(v), caller * 1_000_000 + base + i as i64);
                    }
                    me.free(&refs);
                }
                assert_eq!(me.num_pending_tasks(), 0);
            });
        }
    });
    drop(creator);
    w.wait_success();
}

/// SIGKILL of a threaded actor's process with calls running and queued in
/// its pools: every pending task fails with `ActorDied` (no retries) and
/// nothing stays pending.
#[test]
fn sigkill_of_a_threaded_actor_fails_every_pending_task() {
    maybe_run_worker();
    let s = TestSession::new("conckill");
    let mut w = s.spawn_worker("sigkill_of_a_threaded_actor_fails_every_pending_task", 1);
    let mut driver = s.driver();
    let a = io_gate(&mut driver, w.id, 0);
    let done = call(&mut driver, &a, "track_default", &[1]);
    assert_eq!(value(&mut driver, &done), Ok(0));
    let mut refs = vec![call(&mut driver, &a, "block", &[30_000])];
    for _ in 0..50 {
        refs.push(call(&mut driver, &a, "track_default", &[100]));
        refs.push(call(&mut driver, &a, "track_io", &[100]));
    }
    std::thread::sleep(Duration::from_millis(150));
    w.kill();
    let start = Instant::now();
    let mut died = 0;
    for r in &refs {
        match value(&mut driver, r) {
            Ok(_) => {}
            Err(TaskError::ActorDied { actor_id, .. }) => {
                assert_eq!(actor_id, a.actor_id());
                died += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(died > 0, "the blocked call at least dies");
    assert!(start.elapsed() < GUARD);
    assert_eq!(driver.num_pending_tasks(), 0, "nothing left pending");
}

/// Statistics stay per handler with tasks run on pools: the worker runs on
/// a thread of this process so its counters can be read afterwards.
#[test]
fn stats_count_pool_tasks_per_handler() {
    let s = TestSession::new("concstats");
    let id = WorkerId::from_random();
    let (tx, rx) = std::sync::mpsc::channel();
    let server = {
        let (session, node) = (s.session.clone(), s.node);
        std::thread::spawn(move || {
            let mut registry = FunctionRegistry::new();
            registry.register_actor_class(gate_class()).unwrap();
            let mut w =
                Worker::bind(&session, WorkerOptions::new(id, node), Arc::new(registry)).unwrap();
            tx.send(()).unwrap();
            w.serve_callers(1, GUARD).unwrap();
            w
        })
    };
    rx.recv_timeout(GUARD).unwrap();
    let mut driver = s.driver();
    let a = gate(
        &mut driver,
        id,
        ActorOptions {
            max_concurrency: 3,
            concurrency_groups: groups(&[("compute", 2)]),
            ..ActorOptions::default()
        },
    );
    let mut refs: Vec<ObjectRef> = (0..30)
        .map(|_| call(&mut driver, &a, "track_compute", &[2]))
        .collect();
    refs.extend((0..20).map(|x| call(&mut driver, &a, "echo", &[0, x])));
    let bad = call(&mut driver, &a.with_concurrency_group("x"), "echo", &[0, 0]);
    driver.get(&refs, GUARD).unwrap();
    assert!(driver.get(std::slice::from_ref(&bad), GUARD).is_err());
    drop(driver);
    let w = server.join().unwrap();
    let snap = w.stats();
    let track = snap.handler("Gate::track_compute").unwrap();
    assert_eq!(track.count, 30);
    assert!(
        track.cum_execution >= Duration::from_millis(60),
        "{track:?}"
    );
    assert!(track.max_execution <= track.cum_execution);
    // 20 runs and the refused one.
    assert_eq!(snap.handler("Gate::echo").map(|h| h.count), Some(21));
    assert_eq!(w.tasks_executed(), 1 + 30 + 21);
}

/// A threaded actor replies out of order, and `client_processed_up_to` is the
/// highest sequence number the caller has a reply for, not a contiguous
/// prefix. Driven on the raw protocol so the interleaving is exact: task 0
/// (slow) finishes after task 1 (fast); the caller acknowledges 1 only; the
/// connection breaks before it read 0's reply. The re-sent task 0 must be
/// answered from the reply cache, not run again (it was pruned with 1's
/// acknowledgement when the cache was pruned by sequence number).
#[test]
fn threaded_actor_reply_read_out_of_order_is_not_run_twice_after_a_break() {
    use shmwire::spec::{Encoder, PushTaskReply, StatusCode};
    use shmwire::transport::MessageConnection;

    maybe_run_worker();
    let s = TestSession::new("poolonce");
    // The driver (creation), then the raw caller's two connections.
    let worker = s.spawn_worker(
        "threaded_actor_reply_read_out_of_order_is_not_run_twice_after_a_break",
        3,
    );
    let mut driver = s.driver();
    let actor = gate(
        &mut driver,
        worker.id,
        ActorOptions {
            max_concurrency: 2,
            ..ActorOptions::default()
        },
    );
    let me = WorkerId::from_array([0x7e; 28]);
    let connect = || worker_support::raw_caller(&s, worker.id, me);
    let request = |counter: u64, cpu: i64, args: [i64; 2]| {
        worker_support::actor_request((worker.id, &actor, me), "count_slow", counter, cpu, &args)
    };
    let value = |r: &shmwire::spec::ArchivedPushTaskReply| -> (StatusCode, Option<i64>) {
        let v = match &r.return_objects.first().map(|o| &o.value) {
            Some(shmwire::spec::ArchivedReturnValue::Inline(d)) => {
                d.data.as_slice().try_into().ok().map(i64::from_le_bytes)
            }
            _ => None,
        };
        (r.status.code, v)
    };
    let mut enc = Encoder::new();
    let mut conn = connect();
    // Task 0: slow (300 ms); task 1: fast. 1's reply comes first.
    conn.send_push_task(&mut enc, &request(0, -1, [100, 300]))
        .unwrap();
    conn.send_push_task(&mut enc, &request(1, -1, [101, 0]))
        .unwrap();
    let first = conn
        .recv_message_with::<PushTaskReply, _>(GUARD, |r| (r.task_id, value(r)))
        .unwrap();
    assert_eq!(first.1, (StatusCode::Ok, Some(1)), "task 1 answers first");
    // Task 0 finishes and its reply is sent (and cached); the caller does
    // not read it, but acknowledges 1 with task 2.
    std::thread::sleep(Duration::from_millis(600));
    conn.send_push_task(&mut enc, &request(2, 1, [102, 0]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The connection breaks with 0's and 2's replies unread.
    drop(conn);
    let mut conn = connect();
    conn.send_push_task(&mut enc, &request(0, -1, [100, 0]))
        .unwrap();
    let again = conn
        .recv_message_with::<PushTaskReply, _>(GUARD, |r| value(r))
        .unwrap();
    assert_eq!(
        again,
        (StatusCode::Ok, Some(1)),
        "task 0 is answered from its first run, not run again"
    );
    drop(conn);
    let r = driver
        .submit_actor_task(&actor, "count_slow", vec![i64_arg(100), i64_arg(0)])
        .unwrap();
    assert_eq!(
        as_i64(&driver.get(std::slice::from_ref(&r), GUARD).unwrap()[0]),
        2,
        "task 0's key ran once before this call"
    );
    drop(driver);
    worker.wait_success();
}

/// Input (the attacks of 2026-12-03): a threaded actor's pools queued the
/// tasks given to them without a bound, each a copy of its request; then,
/// with a budget that cut off the caller holding the most, many hostile ids
/// got an honest caller cut off, each new id took another whole budget, and
/// a forgotten flooder's tasks locked every caller out. Now a task that
/// would take the worker's request copies above `max_held_request_bytes`
/// fails at once, in its turn, with `WORKER_BUSY_MESSAGE` (an application
/// error: not run, nobody cut off); what the worker holds stays within the budget however
/// many ids flood, and everyone is served again as the pools drain. (Here
/// 8 MiB against 4 ids × 400 calls of 64 KiB = 100 MiB; the calls wait on
/// the `io` pool's one thread for 20 ms each.)
#[test]
fn calls_beyond_the_workers_budget_are_refused_as_busy_and_nobody_is_cut_off() {
    use shmwire::spec::{Encoder, PushTaskReply, StatusCode, TaskArg};
    use shmwire::transport::MessageConnection;
    use shmwire::worker::WORKER_BUSY_MESSAGE;

    maybe_run_worker();
    let s = TestSession::new("poolbudget");
    const BUDGET: usize = 8 << 20;
    const IDS: u8 = 4;
    const CALLS: u64 = 400;
    // The driver, then the flooders.
    let worker = s.spawn_worker_env(
        "calls_beyond_the_workers_budget_are_refused_as_busy_and_nobody_is_cut_off",
        1 + u64::from(IDS),
        &[(worker_support::ENV_MAX_HELD, &BUDGET.to_string())],
    );
    let pid = worker.child.as_ref().unwrap().id();
    let mut driver = s.driver();
    let actor = io_gate(&mut driver, worker.id, 0);
    let before = worker_support::rss_kib(pid);
    // In order, each its own task: `block` for 20 ms, with 64 KiB of
    // filler.
    let request = |me: WorkerId, counter: u64| {
        let mut r =
            worker_support::actor_request((worker.id, &actor, me), "block", counter, -1, &[20]);
        r.task_spec
            .args
            .push(TaskArg::value(vec![7; 64 << 10], Vec::new()));
        r
    };
    let mut enc = Encoder::new();
    let mut floods = Vec::new();
    let mut peak = 0;
    for id in 0..IDS {
        let me = WorkerId::from_array([0x50 + id; 28]);
        let mut conn = worker_support::raw_caller(&s, worker.id, me);
        for c in 0..CALLS {
            conn.send_push_task(&mut enc, &request(me, c))
                .unwrap_or_else(|e| panic!("id {id}, call {c}: {e}"));
        }
        peak = peak.max(worker_support::rss_kib(pid));
        floods.push((me, conn));
    }
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 40 << 10,
        "the worker grew by {grown} KiB for 100 MiB of calls against an 8 MiB budget"
    );
    // Every call is answered: refused as busy, or run (its 20 ms wait
    // ends unreleased); no connection is cut off.
    for (id, (_, conn)) in floods.iter_mut().enumerate() {
        let mut busy = 0;
        for c in 0..CALLS {
            let (code, message, app) = conn
                .recv_message_with::<PushTaskReply, _>(GUARD, |r| {
                    (
                        r.status.code,
                        r.status.message.to_string(),
                        r.is_application_level_error,
                    )
                })
                .unwrap_or_else(|e| panic!("id {id}, reply {c}: {e}"));
            assert!(
                app && code == StatusCode::Ok,
                "id {id}, reply {c}: {code:?} {message}"
            );
            if message == WORKER_BUSY_MESSAGE {
                busy += 1;
            }
        }
        assert!(busy > 0, "id {id}: no call refused as busy");
    }
    // Drained: the flooders and the driver are served.
    for (me, conn) in &mut floods {
        let echo =
            worker_support::actor_request((worker.id, &actor, *me), "echo", CALLS, -1, &[1, 2]);
        conn.send_push_task(&mut enc, &echo).unwrap();
        let v = conn
            .recv_message_with::<PushTaskReply, _>(GUARD, |r| r.status.code)
            .unwrap();
        assert_eq!(v, StatusCode::Ok);
    }
    let r = call(&mut driver, &actor, "echo", &[3, 4]);
    assert_eq!(value(&mut driver, &r), Ok(3_000_004));
    drop(floods);
    drop(driver);
    worker.wait_success();
}

/// Input (the re-attack of 2026-12-03 on `af025a4`): a call refused as busy
/// was a system error the caller retried on the same connection, after its
/// turn: stale, retried again, for ever with `max_task_retries = -1` (both
/// processes spinning). Busy is the task's outcome now (an application
/// error, not retried): the call fails at once, and the actor serves on.
/// (Budget 256 KiB, held by four blocked calls of 64 KiB.)
#[test]
fn a_busy_call_fails_at_once_even_with_unlimited_retries() {
    use shmwire::spec::{Encoder, PushTaskReply, TaskArg};
    use shmwire::transport::MessageConnection;
    use shmwire::worker::WORKER_BUSY_MESSAGE;

    maybe_run_worker();
    let s = TestSession::new("busyretry");
    let worker = s.spawn_worker_env(
        "a_busy_call_fails_at_once_even_with_unlimited_retries",
        2,
        &[(worker_support::ENV_MAX_HELD, &(256 << 10).to_string())],
    );
    let mut driver = s.driver();
    let actor = io_gate(&mut driver, worker.id, -1);
    // Another caller fills the budget with `block` calls (500 ms each, one
    // at a time on `io`) until one is refused.
    let me = WorkerId::from_array([0x6b; 28]);
    let mut conn = worker_support::raw_caller(&s, worker.id, me);
    let mut enc = Encoder::new();
    let mut sent = 0;
    loop {
        let mut r =
            worker_support::actor_request((worker.id, &actor, me), "block", sent, -1, &[500]);
        r.task_spec
            .args
            .push(TaskArg::value(vec![7; 64 << 10], Vec::new()));
        conn.send_push_task(&mut enc, &r).unwrap();
        sent += 1;
        let busy = conn
            .recv_message_with::<PushTaskReply, _>(Duration::from_millis(50), |r| {
                r.status.message.as_str() == WORKER_BUSY_MESSAGE
            })
            .unwrap_or(false);
        if busy {
            break;
        }
        assert!(sent < 16, "no call refused with a 256 KiB budget");
    }
    // The driver's call (96 KiB) cannot fit: it fails at once as busy,
    // though its handle retries for ever.
    let start = Instant::now();
    let r = driver
        .submit_actor_task(
            &actor,
            "echo",
            vec![
                i64_arg(1),
                i64_arg(2),
                TaskArg::value(vec![1; 96 << 10], Vec::new()),
            ],
        )
        .unwrap();
    match value(&mut driver, &r) {
        Err(TaskError::Application { message, .. }) => {
            assert_eq!(message, WORKER_BUSY_MESSAGE)
        }
        other => panic!("expected the busy error, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The blocked calls end (unreleased); then the actor serves the driver.
    drop(conn);
    let deadline = Instant::now() + GUARD;
    loop {
        let r = call(&mut driver, &actor, "echo", &[3, 4]);
        match value(&mut driver, &r) {
            Ok(v) => {
                assert_eq!(v, 3_000_004);
                break;
            }
            Err(TaskError::Application { message, .. }) if message == WORKER_BUSY_MESSAGE => {
                assert!(Instant::now() < deadline, "still busy");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
    drop(driver);
    worker.wait_success();
}

/// Input (the attack on `7c06c53`): a threaded actor (`max_concurrency`
/// 4) given 200 calls that each return 100 KB, then `get` — 20 MB of
/// replies from tasks the worker had all read into its pools before the
/// first reply was queued, five times its 4 MiB send queue: the caller was
/// cut off ("connection lost" in 16 ms over shared memory). The worker now
/// reads no more of a caller's requests while its tasks in the pools would
/// fill the queue with their replies (as it holds back a caller whose
/// replies pile up on one thread): every call succeeds on the first
/// connection (the worker serves one), over shared memory and TCP, and
/// the actor never restarted.
#[test]
fn a_burst_of_large_returns_from_a_threaded_actor_is_flow_controlled() {
    maybe_run_worker();
    for tcp in [false, true] {
        let s = TestSession::new(if tcp { "poolflowtcp" } else { "poolflowshm" });
        let worker = s.spawn_worker(
            "a_burst_of_large_returns_from_a_threaded_actor_is_flow_controlled",
            1,
        );
        let mut opts = CoreWorkerOptions::new(s.node);
        opts.force_tcp = tcp;
        let mut driver = CoreWorker::new(&s.session, opts).unwrap();
        let actor = gate(
            &mut driver,
            worker.id,
            ActorOptions {
                max_concurrency: 4,
                ..ActorOptions::default()
            },
        );
        let len = 100_000;
        let refs: Vec<ObjectRef> = (0..200)
            .map(|_| call(&mut driver, &actor, "big", &[len]))
            .collect();
        let values = driver
            .get(&refs, GUARD)
            .unwrap_or_else(|e| panic!("tcp {tcp}: {e}"));
        assert_eq!(values.len(), 200);
        for v in &values {
            assert!(
                v.len() == len as usize && v.iter().all(|&b| b == 7),
                "tcp {tcp}: a reply of {} bytes",
                v.len()
            );
        }
        assert_eq!(driver.actor_restarts(&actor), 0, "tcp {tcp}");
        drop(driver);
        worker.wait_success();
    }
}

/// Input (the attack on `f2248e9`): over TCP, a caller paused because its
/// tasks fill a threaded actor's pools (above) heard nothing from the
/// worker between replies — a paused connection is not read, so its pings
/// went unanswered — and once no reply came for the 5 s liveness bound it
/// took the live worker for dead: 40 calls of 7 s to a `max_concurrency` 4
/// actor failed as "stopped answering" at 12 s. The worker now writes
/// heartbeats on paused TCP connections. Here 40 calls of 6 s on 4
/// threads (paused after 30: methods that have not replied yet count as
/// the largest inline reply); the first three rounds (18 s) succeed, then
/// the worker is killed rather than waited for.
#[test]
fn a_caller_paused_longer_than_the_liveness_timeout_is_not_taken_for_dead() {
    maybe_run_worker();
    let s = TestSession::new("pausedtcp");
    let mut worker = s.spawn_worker(
        "a_caller_paused_longer_than_the_liveness_timeout_is_not_taken_for_dead",
        1,
    );
    let mut opts = CoreWorkerOptions::new(s.node);
    opts.force_tcp = true;
    let mut driver = CoreWorker::new(&s.session, opts).unwrap();
    let actor = gate(
        &mut driver,
        worker.id,
        ActorOptions {
            max_concurrency: 4,
            ..ActorOptions::default()
        },
    );
    let refs: Vec<ObjectRef> = (0..40)
        .map(|_| call(&mut driver, &actor, "track_default", &[6_000]))
        .collect();
    for (i, r) in refs.iter().take(12).enumerate() {
        assert_eq!(value(&mut driver, r), Ok(0), "call {i}");
    }
    assert_eq!(driver.actor_restarts(&actor), 0);
    drop(driver);
    worker.kill();
}
