//! Large task arguments and return values through the object store, with
//! real processes: the store service runs embedded in the test process (the
//! driver), the worker is a child process (this test binary re-executed)
//! connected to the same store. Each test has its own session root; every
//! wait is bounded; children are reaped.

mod slot_scribble;
mod worker_support;

use std::time::{Duration, Instant};

use shmwire::ids::{ObjectId, WorkerId};
use shmwire::spec::{
    self, Address, Encoder, FunctionDescriptor, PushTaskReply, PushTaskRequest, StatusCode,
    TaskArg, TaskSpecBuilder,
};
use shmwire::store::{StoreClient, StoreConfig, StoreError, StoreService, DEFAULT_STORE_NAME};
use shmwire::transport::{Connector, MessageConnection, TransportConfig};
use shmwire::worker::{
    ActorHandle, ActorOptions, CoreWorker, CoreWorkerOptions, ObjectRef, ObjectValue, TaskError,
    TaskOptions, WorkerError, MAX_DIRECT_CALL_OBJECT_SIZE,
};
use worker_support::{
    actor_request, as_i64, create_counter, i64_arg, maybe_run_worker, owner_options, pattern,
    raw_caller_over, slowest_calls_for, square_calls, task_error, TestSession, WorkerProcess,
    ENV_ARG_FETCH_MS, ENV_STORE, ENV_UNTIL_EXIT, GUARD, MODULE,
};

const MIB: usize = 1 << 20;

fn store_driver(s: &TestSession) -> CoreWorker {
    let store = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    CoreWorker::new(&s.session, CoreWorkerOptions::new(s.node).with_store(store)).unwrap()
}

fn transform(driver: &mut CoreWorker, actor: &ActorHandle, arg: TaskArg, seed: i64) -> ObjectRef {
    driver
        .submit_actor_task(
            actor,
            "transform",
            vec![arg, i64_arg(seed), i64_arg(2 * MIB as i64)],
        )
        .unwrap()
}

fn big_arg(seed: u64) -> TaskArg {
    TaskArg::value(pattern(seed, MIB), Vec::new())
}

/// Waits (bounded) until `id` is gone from the store: an owner's deletes go
/// to the store on a thread of their own, a moment after the reference.
fn wait_deleted(observer: &StoreClient, id: ObjectId) {
    let deadline = Instant::now() + GUARD;
    while observer.contains(id).unwrap() {
        assert!(Instant::now() < deadline, "{id} still in the store");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (bounded) until the store holds no object at all. The service
/// publishes its snapshot every 100 ms: one published before this call
/// could miss an object put just before it, so the first one looked at is
/// published after the call.
fn wait_store_empty(service: &StoreService) {
    std::thread::sleep(Duration::from_millis(250));
    let deadline = Instant::now() + GUARD;
    loop {
        let stats = service.snapshot().stats;
        if stats.objects == 0 && stats.used == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the store still holds objects: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn large_arguments_and_returns_go_through_the_store() {
    maybe_run_worker();
    let s = TestSession::new("wstore");
    let service = StoreService::start(&s.session, StoreConfig::new(64 * MIB as u64)).unwrap();
    let observer = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let worker = s.spawn_worker_env(
        "large_arguments_and_returns_go_through_the_store",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let actor = driver
        .create_actor(worker.id, MODULE, "Blob", vec![], 0)
        .unwrap();

    // One call: a 1 MiB argument (checked byte by byte by the handler,
    // which reads it in the store's shared memory) and a 2 MiB return.
    let r = transform(&mut driver, &actor, big_arg(1), 1);
    let v = driver.get(std::slice::from_ref(&r), GUARD).unwrap();
    assert_eq!(v[0], pattern(2, 2 * MIB));
    // The return lives in the store under Ray's return id, and `get_buffers`
    // lends it from there without a copy.
    assert_eq!(r.id().object_index(), 1);
    assert!(observer.contains(r.id()).unwrap());
    match &driver.get_buffers(std::slice::from_ref(&r), GUARD).unwrap()[0] {
        ObjectValue::Store(b) => {
            assert_eq!(b.id(), r.id());
            assert_eq!(&b[..], &pattern(2, 2 * MIB)[..]);
        }
        ObjectValue::Inline(_) => panic!("a 2 MiB return should be read from the store"),
    }
    // The argument object was deleted by its owner after the reply (no
    // user reference to it): only the return is left.
    wait_sealed(&service, 1);
    assert!(observer.contains(r.id()).unwrap());

    // Several calls in flight, then read.
    let refs: Vec<ObjectRef> = (10..16)
        .map(|seed| transform(&mut driver, &actor, big_arg(seed as u64), seed))
        .collect();
    let values = driver.get(&refs, GUARD).unwrap();
    for (seed, v) in (10..16).zip(&values) {
        assert_eq!(v.len(), 2 * MIB);
        assert!(*v == pattern(seed + 1, 2 * MIB), "seed {seed}");
    }
    for r in &refs {
        assert!(observer.contains(r.id()).unwrap());
    }

    // An object the user holds (`put`) is passed by reference to several
    // calls and outlives them; it goes when its reference is dropped.
    let held = driver.put(&pattern(40, MIB)).unwrap();
    assert!(observer.contains(held.id()).unwrap());
    let a = transform(&mut driver, &actor, held.as_arg(), 40);
    let b = transform(&mut driver, &actor, held.as_arg(), 40);
    let got = driver.get(&[a.clone(), b.clone()], GUARD).unwrap();
    assert!(got[0] == pattern(41, 2 * MIB) && got[1] == pattern(41, 2 * MIB));
    assert!(observer.contains(held.id()).unwrap());
    let held_id = held.id();
    drop(held);
    driver.release_dropped_refs();
    wait_deleted(&observer, held_id);

    // Dropping the references deletes the returns (clones share one
    // reference: the object goes with the last).
    let ids: Vec<ObjectId> = refs.iter().map(ObjectRef::id).collect();
    let clone = refs[0].clone();
    drop(refs);
    driver.release_dropped_refs();
    for id in &ids[1..] {
        wait_deleted(&observer, *id);
    }
    assert!(observer.contains(ids[0]).unwrap());
    drop(clone);
    drop((r, a, b));
    driver.release_dropped_refs();
    wait_deleted(&observer, ids[0]);
    assert_eq!(driver.num_pending_tasks(), 0);
    // No visible object is left; the worker may still hold its references
    // on the last returns (deleted, not yet freed) until the caller
    // acknowledges their replies, which the next call does: then the store
    // is empty while both processes still run.
    wait_sealed(&service, 0);
    // A reference dropped before its task replied: the return's delete is
    // queued as the reply arrives.
    let early = transform(&mut driver, &actor, big_arg(60), 60);
    let early_id = early.id();
    drop(early);
    for seed in [70, 71] {
        let small = driver
            .submit_actor_task(
                &actor,
                "transform",
                vec![
                    TaskArg::value(pattern(seed, 10), Vec::new()),
                    i64_arg(seed as i64),
                    i64_arg(0),
                ],
            )
            .unwrap();
        assert!(driver.get(&[small], GUARD).unwrap()[0].is_empty());
    }
    // The delete goes to the store on the releases thread, a moment
    // after the reply (as every release of the owner's does).
    wait_deleted(&observer, early_id);
    assert_eq!(driver.num_pending_tasks(), 0);
    wait_store_empty(&service);

    drop(driver);
    worker.wait_success();
    // Once the worker let go of its references too, nothing is left.
    drop(observer);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// Waits (bounded) until the store counts `n` sealed, visible objects (its
/// snapshot is refreshed every 100 ms).
fn wait_sealed(service: &StoreService, n: usize) {
    let deadline = Instant::now() + GUARD;
    while service.snapshot().stats.sealed != n {
        assert!(
            Instant::now() < deadline,
            "expected {n} sealed objects: {:?}",
            service.snapshot().stats
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_missing_or_deleted_argument_object_fails_the_task() {
    maybe_run_worker();
    let s = TestSession::new("wlost");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_missing_or_deleted_argument_object_fails_the_task",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME), (ENV_ARG_FETCH_MS, "200")],
    );
    let mut driver = store_driver(&s);
    let len = FunctionDescriptor::rust(MODULE, "", "len");
    // An object another process owns and put in the store: passed on by
    // reference, read by the worker.
    let other = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let foreign_owner = Address {
        worker_id: WorkerId::from_random(),
        ..driver.address().clone()
    };
    let id = ObjectId::from_random();
    other.put(id, &pattern(5, 300_000), b"m").unwrap();
    let arg = TaskArg::object_ref(id, foreign_owner.clone());
    let r = driver
        .submit_task(
            worker.id,
            len.clone(),
            vec![arg.clone()],
            TaskOptions::default(),
        )
        .unwrap();
    assert_eq!(as_i64(&driver.get(&[r], GUARD).unwrap()[0]), 300_000);
    // Deleted by its owner: the task fails with a typed error naming it,
    // within the worker's fetch timeout (no hang).
    other.delete(&[id]).unwrap();
    let start = Instant::now();
    let r = driver
        .submit_task(worker.id, len.clone(), vec![arg], TaskOptions::default())
        .unwrap();
    match task_error(&mut driver, &r) {
        TaskError::ArgumentLost {
            object_id,
            function,
            ..
        } => {
            assert_eq!(object_id, id);
            assert_eq!(function, "len");
        }
        e => panic!("expected ArgumentLost, got {e:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    // Never put at all: the same.
    let never = ObjectId::from_random();
    let r = driver
        .submit_task(
            worker.id,
            len.clone(),
            vec![TaskArg::object_ref(never, foreign_owner)],
            TaskOptions::default(),
        )
        .unwrap();
    assert!(matches!(
        task_error(&mut driver, &r),
        TaskError::ArgumentLost { object_id, .. } if object_id == never
    ));
    // The worker goes on serving.
    let r = driver
        .submit_task(
            worker.id,
            len,
            vec![TaskArg::value(vec![1, 2, 3], Vec::new())],
            TaskOptions::default(),
        )
        .unwrap();
    assert_eq!(as_i64(&driver.get(&[r], GUARD).unwrap()[0]), 3);
    drop(driver);
    worker.wait_success();
    drop(other);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A caller whose tasks name by-reference arguments that are not in the
/// store (never put, or put later) makes only its own tasks wait: they wait
/// aside, its connection paused, while the worker serves another caller at
/// once. Missing ones fail `ArgumentLost` after `arg_fetch_timeout` (1 s
/// here), counted from arrival; one put while its task waits is read and
/// the task succeeds.
///
/// Before (the attack on `0060161`): the worker waited for each such
/// argument on its one execution thread, up to `arg_fetch_timeout` a task,
/// and every other caller waited with it (9.2 s behind 5 such tasks, a
/// timed-out `get` behind 35).
#[test]
fn tasks_waiting_for_their_arguments_do_not_hold_up_other_callers() {
    maybe_run_worker();
    let s = TestSession::new("wargwait");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "tasks_waiting_for_their_arguments_do_not_hold_up_other_callers",
        2,
        &[(ENV_STORE, DEFAULT_STORE_NAME), (ENV_ARG_FETCH_MS, "1000")],
    );
    let mut waiting = store_driver(&s);
    let mut honest = store_driver(&s);
    let len = FunctionDescriptor::rust(MODULE, "", "len");
    let other = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let owner = Address {
        worker_id: WorkerId::from_random(),
        ..waiting.address().clone()
    };
    let call_len = |d: &mut CoreWorker, id: ObjectId| {
        d.submit_task(
            worker.id,
            len.clone(),
            vec![TaskArg::object_ref(id, owner.clone())],
            TaskOptions::default(),
        )
        .unwrap()
    };
    // Five tasks whose arguments never come, then one whose argument comes
    // while it waits.
    let missing: Vec<ObjectId> = (0..5).map(|_| ObjectId::from_random()).collect();
    let lost: Vec<ObjectRef> = missing
        .iter()
        .map(|&id| call_len(&mut waiting, id))
        .collect();
    let late = ObjectId::from_random();
    let late_ref = call_len(&mut waiting, late);
    let honest_took = square_calls(&mut honest, worker.id, 20);
    assert!(
        honest_took < Duration::from_millis(500),
        "20 calls of another caller took {honest_took:?} beside 5 tasks waiting for arguments"
    );
    for (r, id) in lost.iter().zip(&missing) {
        match task_error(&mut waiting, r) {
            TaskError::ArgumentLost { object_id, .. } => assert_eq!(object_id, *id),
            e => panic!("expected ArgumentLost, got {e:?}"),
        }
    }
    // The late one waited behind them (its caller's tasks run in order) and
    // then for its own argument, which comes now.
    other.put(late, &pattern(3, 1234), b"").unwrap();
    assert_eq!(as_i64(&waiting.get(&[late_ref], GUARD).unwrap()[0]), 1234);
    drop((waiting, honest));
    worker.wait_success();
    other.delete(&[late]).unwrap();
    drop(other);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A TCP caller of a threaded actor sends a slow task and then one whose
/// argument never comes (it waits aside, its connection paused), and
/// leaves. The slow task's reply fails to reach it, which ends its
/// connection; new callers connect meanwhile, one of them on the freed
/// slot. Before (the attack on `b78eef7`), the waiting request outlived its
/// connection and, keyed by the slot, paused the new caller's connection
/// for the rest of its `arg_fetch_timeout` (14 s). It goes with its
/// connection now: every new caller is answered at once.
#[test]
fn a_request_waiting_for_its_arguments_goes_with_its_connection() {
    maybe_run_worker();
    let s = TestSession::new("wargslot");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_request_waiting_for_its_arguments_goes_with_its_connection",
        1,
        &[
            (ENV_STORE, DEFAULT_STORE_NAME),
            (ENV_ARG_FETCH_MS, "15000"),
            (ENV_UNTIL_EXIT, "1"),
        ],
    );
    let mut d = store_driver(&s);
    let opts = ActorOptions {
        max_concurrency: 4,
        ..ActorOptions::default()
    };
    let actor = d
        .create_actor_with(worker.id, MODULE, "Counter", vec![i64_arg(0)], opts)
        .unwrap();
    let me = WorkerId::from_random();
    let mut leaving = raw_caller_over(&s, worker.id, me, true);
    let mut enc = Encoder::new();
    let target = (worker.id, &actor, me);
    leaving
        .send_push_task(&mut enc, &actor_request(target, "sleep_ms", 0, -1, &[700]))
        .unwrap();
    let owner = Address {
        worker_id: WorkerId::from_random(),
        ..d.address().clone()
    };
    let mut waits = actor_request(target, "add", 1, -1, &[0]);
    waits.task_spec.args = vec![TaskArg::object_ref(ObjectId::from_random(), owner)];
    leaving.send_push_task(&mut enc, &waits).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    drop(leaving);
    // New callers from before the slow task's reply fails (≈ 0.7 s) until
    // well after.
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let mut callers = Vec::new();
    while t0.elapsed() < Duration::from_millis(1100) {
        let id = WorkerId::from_random();
        callers.push((id, raw_caller_over(&s, worker.id, id, true)));
        std::thread::sleep(Duration::from_millis(5));
    }
    let square = FunctionDescriptor::rust(MODULE, "", "square");
    let mut late = Vec::new();
    for (i, (id, c)) in callers.iter_mut().enumerate() {
        let req = PushTaskRequest {
            intended_worker_id: worker.id,
            task_spec: TaskSpecBuilder::new(square.clone())
                .parent(shmwire::ids::TaskId::compute_driver_task_id(*id), 1)
                .args(vec![i64_arg(3)])
                .num_returns(1)
                .build_normal_task(),
            sequence_number: -1,
            client_processed_up_to: -1,
            resource_mapping: Vec::new(),
        };
        let t = Instant::now();
        c.send_push_task(&mut enc, &req).unwrap();
        let got = c.recv_message_with::<PushTaskReply, _>(Duration::from_secs(5), |r| {
            r.task_id == req.task_spec.task_id && r.return_objects.len() == 1
        });
        if !matches!(got, Ok(true)) || t.elapsed() > Duration::from_secs(1) {
            late.push((i, got.map_err(|e| e.to_string()), t.elapsed()));
        }
    }
    assert!(
        late.is_empty(),
        "of {} new callers, {} were answered late or wrongly, the first: {:?}",
        callers.len(),
        late.len(),
        &late[..late.len().min(3)]
    );
    drop(callers);
    // The actor ran the slow task and never the waiting one.
    let total = d.submit_actor_task(&actor, "get", vec![]).unwrap();
    assert_eq!(as_i64(&d.get(&[total], GUARD).unwrap()[0]), 0);
    drop(d);
    drop(worker);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

#[test]
fn without_a_store_large_values_fail_with_the_size_error() {
    maybe_run_worker();
    let s = TestSession::new("wnostore");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    // The worker has no store; the first driver neither, the second has one.
    let worker = s.spawn_worker_env(
        "without_a_store_large_values_fail_with_the_size_error",
        2,
        &[],
    );
    let mut plain = s.driver();
    let actor = create_counter(&mut plain, worker.id, 0);
    assert!(matches!(
        plain.submit_actor_task(&actor, "add", vec![big_arg(1)]),
        Err(WorkerError::ArgsTooLarge { size, max })
            if size == MIB as u64 && max == MAX_DIRECT_CALL_OBJECT_SIZE as u64
    ));
    let big = plain
        .submit_actor_task(&actor, "big", vec![i64_arg(2 * MIB as i64)])
        .unwrap();
    assert!(matches!(
        task_error(&mut plain, &big),
        TaskError::ObjectTooLarge { size, .. } if size == 2 * MIB as u64
    ));

    // A caller with a store sends the large argument by reference; the
    // worker cannot read it, and says so.
    let mut with_store = store_driver(&s);
    with_store.register_actor(&actor, 0).unwrap();
    let r = with_store
        .submit_actor_task(&actor, "add", vec![big_arg(1)])
        .unwrap();
    assert!(matches!(
        task_error(&mut with_store, &r),
        TaskError::Application { message, .. } if message.contains("needs the object store")
    ));
    let big = with_store
        .submit_actor_task(&actor, "big", vec![i64_arg(2 * MIB as i64)])
        .unwrap();
    assert!(matches!(
        task_error(&mut with_store, &big),
        TaskError::ObjectTooLarge { .. }
    ));
    // A constructor's large argument without a store: the creation's own
    // size error, naming what it needs.
    match plain.create_actor(worker.id, MODULE, "Held", vec![big_arg(3), i64_arg(3)], 0) {
        Err(e @ WorkerError::CreationArgsTooLarge { size, max }) => {
            assert_eq!(
                (size, max),
                (MIB as u64 + 8, MAX_DIRECT_CALL_OBJECT_SIZE as u64)
            );
            assert!(e.to_string().contains("need the object store"), "{e}");
        }
        other => panic!("expected CreationArgsTooLarge, got {other:?}"),
    }
    drop((r, big));
    drop(with_store);
    drop(plain);
    worker.wait_success();
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

#[test]
fn a_full_store_is_a_typed_error_at_submit_and_in_the_task() {
    maybe_run_worker();
    let s = TestSession::new("wfull");
    let service = StoreService::start(&s.session, StoreConfig::new(4 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_full_store_is_a_typed_error_at_submit_and_in_the_task",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let actor = create_counter(&mut driver, worker.id, 0);
    // An argument that cannot fit: refused at submission, nothing sent.
    let huge = TaskArg::value(vec![1u8; 8 * MIB], Vec::new());
    match driver.submit_actor_task(&actor, "add", vec![huge]) {
        Err(WorkerError::Store(StoreError::StoreFull { .. })) => {}
        other => panic!("expected StoreFull at submit, got {other:?}"),
    }
    assert_eq!(driver.num_pending_tasks(), 0);
    // A return that cannot fit: the task's error object says why.
    let r = driver
        .submit_actor_task(&actor, "big", vec![i64_arg(8 * MIB as i64)])
        .unwrap();
    match task_error(&mut driver, &r) {
        TaskError::ObjectStore { function, message } => {
            assert_eq!(function, "Counter::big");
            assert!(message.contains("store full"), "{message}");
        }
        e => panic!("expected ObjectStore, got {e:?}"),
    }
    // One that fits still works.
    let r = driver
        .submit_actor_task(&actor, "big", vec![i64_arg(MIB as i64)])
        .unwrap();
    assert_eq!(driver.get(&[r], GUARD).unwrap()[0], vec![7u8; MIB]);
    drop(driver);
    worker.wait_success();
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

#[test]
fn a_retried_task_whose_return_exists_gets_the_existing_object() {
    maybe_run_worker();
    let s = TestSession::new("wretry");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_retried_task_whose_return_exists_gets_the_existing_object",
        2,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    // The same request twice, as a retry after a lost reply re-sends it
    // (same task id, so the same return id).
    let me = WorkerId::from_random();
    let token = shmwire::node::load_or_create_token(&s.session).unwrap();
    let mut conn = Connector::new(TransportConfig::new(me, token), s.node)
        .with_session(
            &s.session,
            std::sync::Arc::new(shmwire::node::Directory::for_session(&s.session).unwrap()),
        )
        .connect_worker(&worker.id)
        .unwrap();
    let mut enc = Encoder::new();
    let spec = TaskSpecBuilder::new(FunctionDescriptor::rust(MODULE, "", "big_fn"))
        .num_returns(1)
        .build_normal_task();
    let return_id = spec.return_id(0);
    let req = PushTaskRequest {
        intended_worker_id: worker.id,
        task_spec: spec,
        sequence_number: -1,
        client_processed_up_to: -1,
        resource_mapping: Vec::new(),
    };
    let observer = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    for attempt in 0..2 {
        conn.send_push_task(&mut enc, &req).unwrap();
        let (code, id, in_store, size) = conn
            .recv_message_with::<PushTaskReply, _>(GUARD, |r| {
                let o = &r.return_objects[0];
                (
                    r.status.code,
                    o.object_id,
                    matches!(o.value, spec::ArchivedReturnValue::InStore(_)),
                    o.size.to_native(),
                )
            })
            .unwrap();
        assert_eq!(code, StatusCode::Ok, "attempt {attempt}");
        assert_eq!(id, return_id);
        assert!(in_store, "attempt {attempt}");
        assert_eq!(size, 200_000);
        let got = observer.get(&[return_id], GUARD).unwrap();
        assert_eq!(&got[0].as_ref().unwrap()[..], &[9u8; 200_000][..]);
    }
    observer.delete(&[return_id]).unwrap();
    // The worker's references on it (one per attempt; the second taken
    // through the shared index, which then marks the entry deleted rather
    // than removing it) end within about a second of the delete, the
    // caller still connected and silent. Before (attack on `6f1b12f`),
    // the second one lasted `store_return_hold` (60 s).
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(5);
    while service.snapshot().stats.objects > 0 {
        assert!(
            Instant::now() < deadline,
            "a retried task's deleted return is still held: {:?}",
            service.snapshot().stats
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(conn);
    // A CoreWorker's normal task with a large return, for completeness.
    let mut driver = store_driver(&s);
    let r = driver
        .submit_task(
            worker.id,
            FunctionDescriptor::rust(MODULE, "", "big_fn"),
            vec![],
            TaskOptions::default(),
        )
        .unwrap();
    assert_eq!(driver.get(&[r], GUARD).unwrap()[0], vec![9u8; 200_000]);
    drop(driver);
    worker.wait_success();
    drop(observer);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A large return's id is derived from its task id, which any client of
/// the session's store can work out, and any client may create any id. An
/// object that another client made under a return's id is the task's
/// result only if it holds exactly the bytes the task computed; other
/// bytes, or an object left unsealed, fail the task with an
/// `OBJECT_STORE_ERROR` error object that names the conflict.
///
/// Before (the attack on `0060161`): the worker took any existing object
/// for an earlier attempt's and replied `InStore`, so the squatter's bytes
/// were every caller's result (20 of 20 calls).
#[test]
fn a_return_id_taken_by_another_client_is_never_the_result() {
    maybe_run_worker();
    let s = TestSession::new("wsquat");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_return_id_taken_by_another_client_is_never_the_result",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let token = shmwire::node::load_or_create_token(&s.session).unwrap();
    let mut conn = Connector::new(TransportConfig::new(WorkerId::from_random(), token), s.node)
        .with_session(
            &s.session,
            std::sync::Arc::new(shmwire::node::Directory::for_session(&s.session).unwrap()),
        )
        .connect_worker(&worker.id)
        .unwrap();
    let squatter = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let mut enc = Encoder::new();
    // (what the squatter puts under the return id, sealed?, the result expected)
    let cases: [(&[u8], bool, Option<&str>); 4] = [
        (
            &[0xEE; 200_000],
            true,
            Some("with other contents (200000 bytes"),
        ),
        (
            &[0xEE; 150_000],
            true,
            Some("with other contents (150000 bytes"),
        ),
        (&[0u8; 200_000], false, Some("unsealed after")),
        (&[9u8; 200_000], true, None),
    ];
    for (i, (bytes, seal, expect)) in cases.into_iter().enumerate() {
        let spec = TaskSpecBuilder::new(FunctionDescriptor::rust(MODULE, "", "big_fn"))
            .num_returns(1)
            .build_normal_task();
        let return_id = spec.return_id(0);
        let mut b = squatter.create(return_id, bytes.len() as u64, b"").unwrap();
        b.copy_from_slice(bytes);
        let unsealed = if seal {
            drop(b.seal().unwrap());
            None
        } else {
            Some(b)
        };
        let req = PushTaskRequest {
            intended_worker_id: worker.id,
            task_spec: spec,
            sequence_number: -1,
            client_processed_up_to: -1,
            resource_mapping: Vec::new(),
        };
        conn.send_push_task(&mut enc, &req).unwrap();
        let (app_error, in_store, metadata, message) = conn
            .recv_message_with::<PushTaskReply, _>(GUARD, |r| {
                let o = &r.return_objects[0];
                let metadata = match &o.value {
                    spec::ArchivedReturnValue::Inline(d) => d.metadata.to_vec(),
                    _ => Vec::new(),
                };
                (
                    r.is_application_level_error,
                    matches!(o.value, spec::ArchivedReturnValue::InStore(_)),
                    metadata,
                    r.status.message.to_string(),
                )
            })
            .unwrap();
        match expect {
            Some(what) => {
                assert!(app_error && !in_store, "case {i}: {message}");
                assert_eq!(
                    metadata,
                    shmwire::worker::OBJECT_STORE_ERROR_METADATA,
                    "case {i}"
                );
                assert!(
                    message.contains(&format!("{return_id:?}")) && message.contains(what),
                    "case {i}: {message}"
                );
                // The squatter's object is left as it was.
                if seal {
                    let got = squatter.get(&[return_id], GUARD).unwrap();
                    assert_eq!(&got[0].as_ref().unwrap()[..], bytes, "case {i}");
                }
            }
            None => {
                // The same bytes: as an earlier attempt's, the result.
                assert!(!app_error && in_store, "case {i}: {message}");
                let got = squatter.get(&[return_id], GUARD).unwrap();
                assert_eq!(&got[0].as_ref().unwrap()[..], &[9u8; 200_000][..]);
            }
        }
        match unsealed {
            // Dropping the builder aborts the object.
            Some(b) => drop(b),
            None => squatter.delete(&[return_id]).unwrap(),
        }
    }
    drop(conn);
    worker.wait_success();
    drop(squatter);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A sealed argument the store's shared index does not show — here one in
/// a fallback file (the arena is too small for it) — is read at once, not
/// after `arg_fetch_timeout`: where the index does not show an object
/// sealed, the worker asks the store. Before (the attack on `b78eef7`),
/// such a task waited the whole timeout (2.0 s), and its caller's later
/// tasks behind it.
#[test]
fn a_sealed_argument_in_a_fallback_file_is_read_at_once() {
    maybe_run_worker();
    let s = TestSession::new("wfbarg");
    let dir = tempfile::tempdir().unwrap();
    let service = StoreService::start(
        &s.session,
        StoreConfig::new(MIB as u64).fallback_dir(dir.path()),
    )
    .unwrap();
    let worker = s.spawn_worker_env(
        "a_sealed_argument_in_a_fallback_file_is_read_at_once",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME), (ENV_ARG_FETCH_MS, "5000")],
    );
    let mut driver = store_driver(&s);
    let other = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let owner = Address {
        worker_id: WorkerId::from_random(),
        ..driver.address().clone()
    };
    let id = ObjectId::from_random();
    other.put(id, &pattern(7, 3 * MIB), b"").unwrap();
    let start = Instant::now();
    let r = driver
        .submit_task(
            worker.id,
            FunctionDescriptor::rust(MODULE, "", "len"),
            vec![TaskArg::object_ref(id, owner)],
            TaskOptions::default(),
        )
        .unwrap();
    assert_eq!(as_i64(&driver.get(&[r], GUARD).unwrap()[0]), 3 * MIB as i64);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "a sealed argument in a fallback file took {took:?} (the wait is 5 s)"
    );
    drop(driver);
    worker.wait_success();
    other.delete(&[id]).unwrap();
    drop(other);
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A normal task re-sent after a broken connection runs again on the same
/// worker; when its large return differs each run, the first run's object,
/// which the worker still holds for the caller, is the result (as Ray's
/// first attempt's), not a conflict. Before (the attack on `09bd2c0`, a
/// regression of the squatting fix): the re-sent task failed for good with
/// "already exists in the object store with other contents".
#[test]
fn a_resent_task_with_a_changing_large_return_gets_the_first_runs_object() {
    maybe_run_worker();
    let s = TestSession::new("wresend");
    let service = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_resent_task_with_a_changing_large_return_gets_the_first_runs_object",
        2,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let r = driver
        .submit_task(
            worker.id,
            FunctionDescriptor::rust(MODULE, "", "big_rand"),
            vec![i64_arg(300)],
            TaskOptions { max_retries: 3 },
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    driver.reset_connection(worker.id);
    let v = driver.get(&[r], GUARD).unwrap();
    assert_eq!(v[0].len(), 200_000);
    assert!(v[0].iter().all(|&b| b == v[0][0]), "one run's bytes");
    drop(v);
    drop(driver);
    worker.wait_success();
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// A threaded actor (`max_concurrency` 2: its calls run on a pool thread)
/// reads by-reference arguments and returns large values through the store
/// like any actor, and the objects go when their references are dropped.
#[test]
fn a_threaded_actor_takes_and_returns_large_values_through_the_store() {
    maybe_run_worker();
    let s = TestSession::new("wstorepool");
    let service = StoreService::start(&s.session, StoreConfig::new(64 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "a_threaded_actor_takes_and_returns_large_values_through_the_store",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let actor = driver
        .create_actor_with(
            worker.id,
            MODULE,
            "Blob",
            vec![],
            ActorOptions {
                max_concurrency: 2,
                ..ActorOptions::default()
            },
        )
        .unwrap();
    let refs: Vec<ObjectRef> = (1..5)
        .map(|seed| transform(&mut driver, &actor, big_arg(seed as u64), seed))
        .collect();
    let values = driver.get(&refs, GUARD).unwrap();
    for (seed, v) in (1..5).zip(&values) {
        assert!(*v == pattern(seed + 1, 2 * MIB), "seed {seed}");
    }
    drop(refs);
    drop(values);
    // One more call acknowledges the replies above (the worker's holds go),
    // then its own refs are dropped too.
    let last = transform(&mut driver, &actor, i64_arg(0), 0);
    assert!(matches!(
        task_error(&mut driver, &last),
        TaskError::Application { .. }
    ));
    drop(last);
    driver.release_dropped_refs();
    let deadline = Instant::now() + GUARD;
    while service.snapshot().stats.sealed > 0 {
        assert!(
            Instant::now() < deadline,
            "left in the store: {:?}",
            service.snapshot().stats
        );
        driver.release_dropped_refs();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The executing worker's reference on a normal task's return in the store
/// lasts only until the caller acknowledges the reply (in its next normal
/// request's `client_processed_up_to`): a caller that runs many such tasks,
/// one at a time or several in flight, each value dropped once read, never
/// fills the store. Before, those references lasted `store_return_hold`
/// (60 s) and a 4 MiB store was full after 20 calls of 200 kB.
#[test]
fn normal_task_returns_leave_the_store_once_their_replies_are_acknowledged() {
    maybe_run_worker();
    let s = TestSession::new("wnormack");
    let service = StoreService::start(&s.session, StoreConfig::new(4 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "normal_task_returns_leave_the_store_once_their_replies_are_acknowledged",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let big = || FunctionDescriptor::rust(MODULE, "", "big_fn");
    let mut most = 0;
    // 60 one at a time, then 15 rounds of 4 in flight: 120 × 200 kB, six
    // times the store.
    for round in 0..75 {
        let n = if round < 60 { 1 } else { 4 };
        let refs: Vec<ObjectRef> = (0..n)
            .map(|_| {
                driver
                    .submit_task(worker.id, big(), vec![], TaskOptions::default())
                    .unwrap()
            })
            .collect();
        let values = driver
            .get(&refs, GUARD)
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert!(
            values.iter().all(|v| *v == vec![9u8; 200_000]),
            "round {round}"
        );
        most = most.max(service.snapshot().stats.objects);
    }
    // At most the values in flight, the last round's and those not yet
    // acknowledged.
    assert!(most <= 12, "the store held up to {most} objects");
    drop(driver);
    worker.wait_success();
    wait_store_empty(&service);
    service.shutdown().unwrap();
}

/// Callers that never send the request that would acknowledge their
/// replies (each runs one normal task with a large return, drops the value
/// and stays connected, idle) do not keep the worker's references either:
/// once an owner has deleted its return, the worker's reference on it ends
/// when a return does not fit, and within about a second anyway. Before,
/// they lasted `store_return_hold` (60 s): the 21st caller's return did not
/// fit in a 4 MiB store.
#[test]
fn returns_their_idle_owners_deleted_are_not_held_for_them() {
    maybe_run_worker();
    const CALLERS: usize = 25;
    let s = TestSession::new("wnormidle");
    let service = StoreService::start(&s.session, StoreConfig::new(4 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "returns_their_idle_owners_deleted_are_not_held_for_them",
        CALLERS as u64,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    // 25 × 200 kB: more than the store.
    let mut drivers = Vec::new();
    for i in 0..CALLERS {
        let mut driver = store_driver(&s);
        let r = driver
            .submit_task(
                worker.id,
                FunctionDescriptor::rust(MODULE, "", "big_fn"),
                vec![],
                TaskOptions::default(),
            )
            .unwrap();
        let v = driver
            .get(&[r], GUARD)
            .unwrap_or_else(|e| panic!("caller {i}: {e:?}"));
        assert_eq!(v[0], vec![9u8; 200_000], "caller {i}");
        driver.release_dropped_refs();
        drivers.push(driver);
    }
    // All still connected: the worker lets go of the rest within seconds.
    // (The service publishes its counts every 100 ms: first let one be
    // published after the calls.)
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(10);
    while service.snapshot().stats.objects > 0 {
        assert!(
            Instant::now() < deadline,
            "still in the store with every owner's reference gone: {:?}",
            service.snapshot().stats
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(drivers);
    worker.wait_success();
    service.shutdown().unwrap();
}

/// Set in the child that runs the store service of
/// `a_store_that_stopped_answering_is_connected_to_again`.
const ENV_STORE_CHILD: &str = "SHMWIRE_WORKER_TEST_STORE_CHILD";

/// A store that stops answering (its process stopped past the clients'
/// reply timeout) breaks the connections of the worker and of the caller
/// that were waiting on it; once it answers again, both connect again at
/// their next store work (within a second), and large returns and puts
/// work again. Before (fresh attack on `3926ac7`), both clients stayed
/// "out of step" for good: every large return of the worker failed for
/// the rest of its life. Meanwhile a caller that does not use the store is
/// not held up by it beyond the one task that waited on it.
#[test]
fn a_store_that_stopped_answering_is_connected_to_again() {
    const TEST: &str = "a_store_that_stopped_answering_is_connected_to_again";
    maybe_run_worker();
    if std::env::var_os(ENV_STORE_CHILD).is_some() {
        let session = shmwire::shm::Session::open_in(
            std::env::var(worker_support::ENV_ROOT).unwrap(),
            &std::env::var(worker_support::ENV_SESSION).unwrap(),
        )
        .unwrap();
        let _store = StoreService::start(&session, StoreConfig::new(16 * MIB as u64)).unwrap();
        println!("ready");
        std::thread::sleep(GUARD);
        return;
    }
    let s = TestSession::new("wstorestop");
    // The store's process, once ready, and its output (kept open, so
    // that its later output does not fail).
    let start_store = || {
        let mut store = worker_support::KillOnDrop(Some(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
                .env(ENV_STORE_CHILD, "1")
                .env(worker_support::ENV_ROOT, s.root.path())
                .env(worker_support::ENV_SESSION, s.session.name())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        ));
        let child = store.0.as_mut().unwrap();
        // Read until its "ready" (after the test harness's own lines).
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("ready") {
            line.clear();
            let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
            assert!(n > 0, "the store's process ended before it was ready");
        }
        (store, out)
    };
    let (store, out) = start_store();
    let store_pid = store.0.as_ref().unwrap().id();
    let worker = s.spawn_worker_env(
        TEST,
        3,
        &[
            (ENV_STORE, DEFAULT_STORE_NAME),
            (worker_support::ENV_STORE_REPLY_MS, "1000"),
        ],
    );
    let opts = shmwire::store::ClientOptions {
        reply_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let client = StoreClient::connect_with(&s.session, DEFAULT_STORE_NAME, opts).unwrap();
    let mut a = CoreWorker::new(
        &s.session,
        CoreWorkerOptions::new(s.node).with_store(client),
    )
    .unwrap();
    let mut b = s.driver();
    let big = |a: &mut CoreWorker| {
        let r = a
            .submit_task(
                worker.id,
                FunctionDescriptor::rust(MODULE, "", "big_fn"),
                vec![],
                TaskOptions::default(),
            )
            .unwrap();
        a.get(&[r], GUARD)
    };
    let square = |b: &mut CoreWorker| {
        let t = Instant::now();
        let r = b
            .submit_task(
                worker.id,
                FunctionDescriptor::rust(MODULE, "", "square"),
                vec![i64_arg(7)],
                TaskOptions::default(),
            )
            .unwrap();
        assert_eq!(as_i64(&b.get(&[r], GUARD).unwrap()[0]), 49);
        t.elapsed()
    };
    assert_eq!(big(&mut a).unwrap()[0], vec![9u8; 200_000]);
    square(&mut b);
    // A caller with the default client (30 s reply timeout) whose reply
    // comes in while the store is stopped.
    let client = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let mut c = CoreWorker::new(
        &s.session,
        CoreWorkerOptions::new(s.node).with_store(client),
    )
    .unwrap();
    let late = c
        .submit_task(
            worker.id,
            FunctionDescriptor::rust(MODULE, "", "big_fn"),
            vec![],
            TaskOptions::default(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    worker_support::stop_process(store_pid);
    // Calls that need no store go on: the worker holds the first return
    // (not acknowledged yet), and the loop's look at its holds reads the
    // shared index only (asking the stopped store would hold up the loop).
    // For 2.5 s: past the index's staleness (1 s), after which it tells
    // nothing and only the service could.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        slowest = slowest.max(square(&mut b));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a call that needs no store took {slowest:?} while the store was stopped"
    );
    // Its `get` (the store's shared index stale by now: the service is
    // asked) is bounded by about its own timeout, not the client's 30 s.
    let t = Instant::now();
    let r = c.get(std::slice::from_ref(&late), Duration::from_secs(1));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a get with a 1 s timeout took {:?} with the store stopped: {r:?}",
        t.elapsed()
    );
    drop(late);
    drop(c);
    // The worker's create and the caller's put wait out the reply timeout:
    // their connections break.
    match big(&mut a) {
        Err(shmwire::worker::GetError::Task {
            error: TaskError::ObjectStore { .. },
            ..
        }) => {}
        other => panic!("a return while the store is stopped: {other:?}"),
    }
    assert!(a.put(&vec![1u8; 200_000]).is_err());
    worker_support::continue_process(store_pid);
    // Connected again at the next store work, at most a second on.
    std::thread::sleep(Duration::from_millis(1_100));
    for i in 0..3 {
        match big(&mut a) {
            Ok(v) => assert_eq!(v[0], vec![9u8; 200_000]),
            Err(e) => panic!("return {i} after the store came back: {e:?}"),
        }
        let r = a
            .put(&vec![2u8; 200_000])
            .expect("a put after the store came back");
        assert_eq!(a.get(&[r], GUARD).unwrap()[0], vec![2u8; 200_000]);
    }
    // Killed, and another started under its name: the first return and
    // the first put after it already work (the worker and the caller see
    // the old one's socket hung up before they use it: `is_lost`). Before
    // (attack on `6f1b12f`), the first failed "receiving from the store".
    drop((store, out));
    let (_store, _out) = start_store();
    match big(&mut a) {
        Ok(v) => assert_eq!(v[0], vec![9u8; 200_000]),
        Err(e) => panic!("the first return from a new store: {e:?}"),
    }
    let r = a
        .put(&vec![3u8; 200_000])
        .expect("the first put to a new store");
    assert_eq!(a.get(&[r], GUARD).unwrap()[0], vec![3u8; 200_000]);
    drop(a);
    drop(b);
    worker.wait_success();
}

/// Another process of the same user raises every reference slot of a
/// worker's store client (its memfd is reachable through
/// `/proc/<worker pid>/fd`): every object deleted afterwards would stay
/// "delete-pending" for as long as the worker lives. The worker puts its
/// client's slots back from the client's private tally every second, so the
/// deletes complete and their room comes back.
#[test]
fn reference_slots_written_by_another_process_are_put_back_by_the_worker() {
    maybe_run_worker();
    let s = TestSession::new("wsref");
    let service = StoreService::start(&s.session, StoreConfig::new(4 * MIB as u64)).unwrap();
    let worker = s.spawn_worker_env(
        "reference_slots_written_by_another_process_are_put_back_by_the_worker",
        1,
        &[(ENV_STORE, DEFAULT_STORE_NAME)],
    );
    let mut driver = store_driver(&s);
    let actor = create_counter(&mut driver, worker.id, 0);
    // The worker's one store client's slots (its only `sref-` memfd).
    let pid = worker.child.as_ref().unwrap().id();
    assert_eq!(
        slot_scribble::raise_reference_slots(pid),
        1,
        "the worker's store client's slot memfd"
    );
    let store = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    // Freed once the worker has put its slots back (within seconds).
    let big = ObjectId::from_array([42; 28]);
    slot_scribble::deletes_free_their_room(&store, 6, MIB / 2, big);
    store.delete(&[big]).unwrap();
    wait_store_empty(&service);
    drop(store);
    let t = driver.terminate_actor(&actor).unwrap();
    driver.get(std::slice::from_ref(&t), GUARD).unwrap();
    drop(driver);
    worker.wait_success();
    service.shutdown().unwrap();
}

/// Input (the attack on `8bae1dd`): the worker's store stops (`SIGSTOP`;
/// the store in a child process) and a caller sends a task whose local
/// by-reference argument is not sealed (an object another task has yet to
/// make). Right behaviour: the question whether it is sealed goes to the
/// store on a thread of its own, the request waits aside, and another
/// caller's calls, which use no store, go on at their own pace; the task
/// fails `ArgumentLost` at its `arg_fetch_timeout`. Before, the worker's
/// loop asked the stopped store itself and held every caller up for the
/// store's reply timeout (5 s here).
#[test]
fn a_stopped_store_holds_up_no_caller_while_a_request_waits_for_its_argument() {
    const TEST: &str = "a_stopped_store_holds_up_no_caller_while_a_request_waits_for_its_argument";
    maybe_run_worker();
    let s = TestSession::new("wstopped");
    let store = s.spawn_store(TEST, 16 * MIB as u64);
    let store_pid = store.0.as_ref().unwrap().id();
    let worker = s.spawn_worker_env(
        TEST,
        2,
        &[
            (ENV_STORE, DEFAULT_STORE_NAME),
            (ENV_ARG_FETCH_MS, "2000"),
            (worker_support::ENV_STORE_REPLY_MS, "5000"),
        ],
    );
    let mut waiting = store_driver(&s);
    let mut other = s.driver();
    // Warm: the other caller's connection is up before the store stops.
    square_calls(&mut other, worker.id, 1);
    let owner = Address {
        worker_id: WorkerId::from_random(),
        ..waiting.address().clone()
    };
    worker_support::stop_process(store_pid);
    let missing = ObjectId::from_random();
    let r = waiting
        .submit_task(
            worker.id,
            FunctionDescriptor::rust(MODULE, "", "len"),
            vec![TaskArg::object_ref(missing, owner)],
            TaskOptions::default(),
        )
        .unwrap();
    let slowest = slowest_calls_for(&mut other, worker.id, Duration::from_secs(3));
    worker_support::continue_process(store_pid);
    assert!(
        slowest < Duration::from_millis(800),
        "10 calls that use no store took {slowest:?} while the worker's store was stopped"
    );
    match task_error(&mut waiting, &r) {
        TaskError::ArgumentLost { object_id, .. } => assert_eq!(object_id, missing),
        e => panic!("expected ArgumentLost, got {e:?}"),
    }
    drop((r, waiting, other));
    worker.wait_success();
    drop(store);
}

/// Input (the attack on `de26da3`): a caller with the session's store puts
/// an object and drops its reference while the store is stopped (SIGSTOP),
/// then calls an actor whose worker has no store. The owner deleted the
/// object on its own thread at its next call: that call waited out the
/// store's reply timeout (30 s), and every later one a reconnect's
/// handshake (5 s), though none of them used the store; dropping the
/// owner waited out the reply timeout too. The owner's deletes now go to
/// the store on a thread of their own: the calls go on at their pace, the
/// drop takes at most a second, and the delete is done once the store
/// answers again (nothing is left behind).
#[test]
fn a_stopped_store_holds_up_no_call_of_its_owner_that_does_not_use_it() {
    const TEST: &str = "a_stopped_store_holds_up_no_call_of_its_owner_that_does_not_use_it";
    maybe_run_worker();
    let s = TestSession::new("ostopped");
    let store = s.spawn_store(TEST, 16 * MIB as u64);
    let store_pid = store.0.as_ref().unwrap().id();
    let worker = s.spawn_worker(TEST, 1);
    // A 1 s reply timeout, so that the stop below outlasts it: the delete
    // that timed out is tried again (it was given up on: the attack on
    // `2af27d5`, with the default 30 s and a 40 s stop).
    let mut driver =
        CoreWorker::new(&s.session, owner_options(&s, Duration::from_secs(1))).unwrap();
    let actor = driver
        .create_actor(worker.id, MODULE, "Counter", vec![], 0)
        .unwrap();
    let observer = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let put = driver.put(&pattern(7, MIB)).unwrap();
    let id = put.id();
    assert!(
        observer.contains(id).unwrap(),
        "a 1 MiB value is in the store"
    );
    worker_support::stop_process(store_pid);
    drop(put);
    let start = Instant::now();
    for i in 1..=20 {
        let r = driver
            .submit_actor_task(&actor, "add", vec![i64_arg(1)])
            .unwrap();
        let v = driver.get(std::slice::from_ref(&r), GUARD).unwrap();
        assert_eq!(as_i64(&v[0]), i);
    }
    let took = start.elapsed();
    // The owner goes away with the store still stopped: its drop waits
    // at most 1 s for the deletes (it waited out the reply timeout).
    let start = Instant::now();
    drop(driver);
    let dropped = start.elapsed();
    // Stopped for longer than the reply timeout: the delete timed out.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(took + dropped));
    worker_support::continue_process(store_pid);
    assert!(
        took < Duration::from_secs(2),
        "20 calls that use no store took {took:?} while the owner's store was stopped"
    );
    assert!(
        dropped < Duration::from_secs(3),
        "dropping the owner took {dropped:?} while its store was stopped"
    );
    // Nothing lost: the delete is done once the store answers again.
    wait_deleted(&observer, id);
    worker.wait_success();
    drop(store);
}

/// Input (the attack on `2af27d5`): an owner puts objects, passes some by
/// reference to a task of a worker that uses the store, then drops every
/// reference while the store is stopped for longer than the owner's reply
/// timeout, and puts one more object meanwhile (which connects to the
/// store again once it answers). The first request to time out is served
/// when the store goes on, but it leaves the connection broken: every
/// delete queued behind it found it so, could not connect anew while the
/// store was stopped, and was given up — never sent. The objects stayed in
/// the store until evicted (200 of 200 after a 40 s stop with the default
/// 30 s timeout). Now they are tried again until the store
/// answers.
#[test]
fn deletes_a_stopped_store_did_not_answer_are_done_once_it_answers() {
    const TEST: &str = "deletes_a_stopped_store_did_not_answer_are_done_once_it_answers";
    const N: usize = 20;
    maybe_run_worker();
    let s = TestSession::new("odelete");
    let store = s.spawn_store(TEST, 64 * MIB as u64);
    let store_pid = store.0.as_ref().unwrap().id();
    let worker = s.spawn_worker_env(TEST, 1, &[(ENV_STORE, DEFAULT_STORE_NAME)]);
    let mut driver =
        CoreWorker::new(&s.session, owner_options(&s, Duration::from_millis(500))).unwrap();
    let actor = driver
        .create_actor(worker.id, MODULE, "Blob", vec![], 0)
        .unwrap();
    let observer = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let refs: Vec<ObjectRef> = (0..N)
        .map(|i| driver.put(&pattern(100 + i as u64, 200_000)).unwrap())
        .collect();
    let ids: Vec<ObjectId> = refs.iter().map(ObjectRef::id).collect();
    let used: Vec<ObjectRef> = refs
        .iter()
        .take(N / 2)
        .zip(100..)
        .map(|(r, seed)| transform(&mut driver, &actor, r.as_arg(), seed))
        .collect();
    for (v, seed) in driver.get(&used, GUARD).unwrap().iter().zip(100u64..) {
        assert!(*v == pattern(seed + 1, 2 * MIB), "seed {seed}");
    }
    drop(used);
    for id in &ids {
        assert!(observer.contains(*id).unwrap());
    }
    worker_support::stop_process(store_pid);
    drop(refs);
    driver.release_dropped_refs();
    // Stopped for several reply timeouts; a put meanwhile fails.
    std::thread::sleep(Duration::from_millis(1500));
    let put = driver.put(&pattern(1, 200_000));
    assert!(put.is_err(), "a put with the store stopped: {put:?}");
    std::thread::sleep(Duration::from_millis(1000));
    worker_support::continue_process(store_pid);
    // Nothing lost: the deletes are done once the store answers again,
    // with the owner alive and using the store.
    let deadline = Instant::now() + GUARD;
    loop {
        let left = ids
            .iter()
            .filter(|id| observer.contains(**id).unwrap())
            .count();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} of {N} dropped objects still in the store"
        );
        driver.release_dropped_refs();
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = driver.put(&pattern(2, 200_000)).unwrap();
    assert!(observer.contains(again.id()).unwrap());
    drop((again, driver));
    worker.wait_success();
    drop(store);
}

/// Input (the attack on `eab0d40`): deletes wait to be tried again (the
/// store stopped past the owner's reply timeout), the store is killed and
/// another started under its name, and another client makes objects there
/// under the dropped objects' ids. The retried deletes removed them: they
/// are only for the store the objects were in, and go nowhere once it is
/// gone.
#[test]
fn retried_deletes_spare_a_store_started_again_under_the_name() {
    const TEST: &str = "retried_deletes_spare_a_store_started_again_under_the_name";
    const N: usize = 10;
    maybe_run_worker();
    let s = TestSession::new("oreplace");
    let mut first = s.spawn_store(TEST, 16 * MIB as u64);
    let first_pid = first.0.as_ref().unwrap().id();
    let mut driver =
        CoreWorker::new(&s.session, owner_options(&s, Duration::from_millis(300))).unwrap();
    let refs: Vec<ObjectRef> = (0..N)
        .map(|i| driver.put(&pattern(i as u64, 200_000)).unwrap())
        .collect();
    let ids: Vec<ObjectId> = refs.iter().map(ObjectRef::id).collect();
    worker_support::stop_process(first_pid);
    drop(refs);
    driver.release_dropped_refs();
    // The deletes time out, then wait to be tried again.
    std::thread::sleep(Duration::from_millis(1200));
    let mut killed = first.0.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let second = StoreService::start(&s.session, StoreConfig::new(16 * MIB as u64)).unwrap();
    let other = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    for id in &ids {
        other.put(*id, &pattern(7, 1000), &[]).unwrap();
    }
    // The owner connects to the new store (its next put) and its retries
    // run every second: a few of them pass.
    std::thread::sleep(Duration::from_millis(1500));
    let again = driver.put(&pattern(8, 200_000)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    for id in &ids {
        assert!(
            other.contains(*id).unwrap(),
            "{id}, made in the new store by another client, was deleted by the old store's owner"
        );
    }
    drop((again, driver, other));
    second.shutdown().unwrap();
}

/// A session with its store service (64 MiB, in this process), `N` worker
/// processes connected to it (each serving one caller, re-running `test`),
/// and a driver with the store.
fn store_and_workers<const N: usize>(
    test: &str,
    prefix: &str,
) -> (TestSession, StoreService, [WorkerProcess; N], CoreWorker) {
    let s = TestSession::new(prefix);
    let service = StoreService::start(&s.session, StoreConfig::new(64 * MIB as u64)).unwrap();
    let env = [(ENV_STORE, DEFAULT_STORE_NAME)];
    let workers = [(); N].map(|()| s.spawn_worker_env(test, 1, &env));
    let driver = store_driver(&s);
    (s, service, workers, driver)
}

/// A `Held` actor on `worker`, its constructor given `args`.
fn create_held(
    driver: &mut CoreWorker,
    worker: WorkerId,
    args: Vec<TaskArg>,
    options: ActorOptions,
) -> ActorHandle {
    driver
        .create_actor_with(worker, MODULE, "Held", args, options)
        .unwrap()
}

/// `actor`'s `len` (the length of the value its constructor was given).
fn held_len(driver: &mut CoreWorker, actor: &ActorHandle) -> i64 {
    let r = driver.submit_actor_task(actor, "len", vec![]).unwrap();
    as_i64(&driver.get(std::slice::from_ref(&r), GUARD).unwrap()[0])
}

/// A constructor's argument above `max_direct_call_object_size` goes
/// through the store as a method's does, and an actor that can restart
/// keeps it (pinned, referenced) for as long as it can: the restart's
/// constructor reads it after the caller dropped its own reference (Ray
/// keeps a creation task's arguments alive with the actor). Once the actor
/// cannot restart — restarts spent, or terminated — it goes; without
/// restarts it goes with the creation task.
#[test]
fn a_large_constructor_argument_is_kept_while_its_actor_can_restart() {
    maybe_run_worker();
    let (s, service, [plain, mut first, standby, once], mut driver) = store_and_workers(
        "a_large_constructor_argument_is_kept_while_its_actor_can_restart",
        "wctor",
    );
    let observer = StoreClient::connect(&s.session, DEFAULT_STORE_NAME).unwrap();
    let restarts = |standby: WorkerId| ActorOptions {
        max_task_retries: -1,
        max_restarts: 1,
        restart_workers: vec![standby],
        ..ActorOptions::default()
    };

    // Without restarts: the value is promoted for the creation task alone.
    // So with `max_restarts` but no standby to restart on: it can never
    // restart, and no call is needed for its argument to go (it stayed
    // until the caller's next call: the attack on `b5ede7b`).
    let a = create_held(
        &mut driver,
        plain.id,
        vec![big_arg(3), i64_arg(3)],
        ActorOptions {
            max_restarts: -1,
            ..ActorOptions::default()
        },
    );
    wait_store_empty(&service);
    assert_eq!(held_len(&mut driver, &a), MIB as i64);

    // With a restart left: an object put here, its only user reference
    // dropped once the actor exists, stays in the store …
    let held = driver.put(&pattern(5, MIB)).unwrap();
    let id = held.id();
    let b = create_held(
        &mut driver,
        first.id,
        vec![held.as_arg(), i64_arg(5)],
        restarts(standby.id),
    );
    drop(held);
    for _ in 0..5 {
        assert_eq!(held_len(&mut driver, &b), MIB as i64);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        observer.contains(id).unwrap(),
        "the creation argument was deleted"
    );
    // … and the restart's constructor reads it, byte for byte.
    first.kill();
    assert_eq!(held_len(&mut driver, &b), MIB as i64);
    assert_eq!(driver.actor_restarts(&b), 1);
    // Its restart spent, the actor needs it no more.
    wait_deleted(&observer, id);

    // A value promoted for an actor that is terminated with restarts left
    // goes with the termination.
    let c = create_held(
        &mut driver,
        once.id,
        vec![big_arg(7), i64_arg(7)],
        restarts(plain.id),
    );
    assert_eq!(held_len(&mut driver, &c), MIB as i64);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(service.snapshot().stats.sealed, 1, "the promoted argument");
    let bye = driver.terminate_actor(&c).unwrap();
    driver.get(std::slice::from_ref(&bye), GUARD).unwrap();
    wait_store_empty(&service);

    drop(driver);
    for w in [plain, standby, once] {
        drop(w);
    }
    service.shutdown().unwrap();
}

/// Input (the attack on `b5ede7b`, high): an actor with two standbys whose
/// first standby died while the restart's constructor ran there. The death
/// was handled twice — as the actor's worker's (a restart onto the second
/// standby began) and as the failed creation (with no standby left then:
/// the actor was declared dead) — so every call failed `ActorDied` while a
/// live incarnation sat unreachable on the second standby, and the
/// constructor's pinned argument stayed in the store for the caller's
/// life. Right behaviour: the restart goes on to the second standby, the
/// calls run there, and the argument goes when the actor is terminated.
#[test]
fn a_standby_dying_in_a_restarts_creation_passes_it_to_the_next() {
    maybe_run_worker();
    let (_s, service, [mut first, mut second, third], mut driver) = store_and_workers(
        "a_standby_dying_in_a_restarts_creation_passes_it_to_the_next",
        "wctornext",
    );
    // Each creation takes 800 ms.
    let actor = create_held(
        &mut driver,
        first.id,
        vec![big_arg(4), i64_arg(4), i64_arg(800)],
        ActorOptions {
            max_task_retries: -1,
            max_restarts: -1,
            restart_workers: vec![second.id, third.id],
            ..ActorOptions::default()
        },
    );
    first.kill();
    let r = driver.submit_actor_task(&actor, "len", vec![]).unwrap();
    // The restart onto the second standby has sent its creation task.
    let deadline = Instant::now() + GUARD;
    while driver.actor_restarts(&actor) == 0 {
        assert!(Instant::now() < deadline, "no restart began");
        driver
            .wait(std::slice::from_ref(&r), 1, Duration::from_millis(10))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    second.kill();
    let v = driver.get(std::slice::from_ref(&r), GUARD).unwrap();
    assert_eq!(as_i64(&v[0]), MIB as i64);
    assert_eq!(driver.actor_restarts(&actor), 2);
    assert_eq!(held_len(&mut driver, &actor), MIB as i64);
    let bye = driver.terminate_actor(&actor).unwrap();
    driver.get(std::slice::from_ref(&bye), GUARD).unwrap();
    wait_store_empty(&service);
    drop(driver);
    drop(third);
    service.shutdown().unwrap();
}

/// Input (the attack on `b5ede7b`, medium): `terminate_actor` submitted,
/// then the actor's process died before the terminate replied (stopped,
/// then killed). The actor came back on its standby — "not restarted,
/// whatever its `max_restarts`" held only once the terminate's reply
/// arrived — and its constructor's argument stayed pinned. Right
/// behaviour (Ray's GCS does not restart an actor whose exit was asked
/// for): the terminate fails as its process died, the actor is dead,
/// nothing restarted, and the argument goes.
#[test]
fn an_actor_whose_terminate_was_lost_is_not_restarted() {
    maybe_run_worker();
    let (_s, service, [mut first, standby], mut driver) = store_and_workers(
        "an_actor_whose_terminate_was_lost_is_not_restarted",
        "wctorterm",
    );
    let actor = create_held(
        &mut driver,
        first.id,
        vec![big_arg(6), i64_arg(6)],
        ActorOptions {
            max_task_retries: -1,
            max_restarts: 1,
            restart_workers: vec![standby.id],
            ..ActorOptions::default()
        },
    );
    assert_eq!(held_len(&mut driver, &actor), MIB as i64);
    worker_support::stop_process(first.child.as_ref().unwrap().id());
    let bye = driver.terminate_actor(&actor).unwrap();
    first.kill();
    assert!(matches!(
        task_error(&mut driver, &bye),
        TaskError::ActorDied { .. } | TaskError::WorkerDied { .. }
    ));
    let r = driver.submit_actor_task(&actor, "len", vec![]).unwrap();
    assert!(matches!(
        task_error(&mut driver, &r),
        TaskError::ActorDied { .. }
    ));
    assert_eq!(
        driver.actor_restarts(&actor),
        0,
        "restarted after its terminate"
    );
    wait_store_empty(&service);
    drop(driver);
    drop(standby);
    service.shutdown().unwrap();
}
