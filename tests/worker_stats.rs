//! Per-handler statistics of a worker (Ray's `instrumented_io_context`):
//! the worker runs on a thread of this process so its counters can be read
//! after the calls; the caller is a separate `CoreWorker` over shm.

mod worker_support;

use std::sync::{mpsc, Arc};
use std::time::Duration;

use shmwire::ids::WorkerId;
use shmwire::spec::FunctionDescriptor;
use shmwire::worker::{TaskOptions, Worker, WorkerOptions};
use worker_support::{as_i64, i64_arg, registry, TestSession, GUARD, MODULE};

#[test]
fn stats_count_every_handler_with_queueing_and_execution_time() {
    let s = TestSession::new("stats");
    let id = WorkerId::from_random();
    let (tx, rx) = mpsc::channel();
    let server = {
        let session = s.session.clone();
        let node = s.node;
        std::thread::spawn(move || {
            let mut w =
                Worker::bind(&session, WorkerOptions::new(id, node), Arc::new(registry())).unwrap();
            tx.send(()).unwrap();
            w.serve_callers(1, GUARD).unwrap();
            w
        })
    };
    rx.recv_timeout(GUARD).unwrap();
    let mut driver = s.driver();
    let actor = driver
        .create_actor(id, MODULE, "Counter", vec![], 0)
        .unwrap();
    for i in 1..=20 {
        let r = driver
            .submit_actor_task(&actor, "slow_add", vec![i64_arg(1)])
            .unwrap();
        assert_eq!(as_i64(&driver.get(&[r], GUARD).unwrap()[0]), i);
    }
    let r = driver
        .submit_task(
            id,
            FunctionDescriptor::rust(MODULE, "", "nope"),
            vec![],
            TaskOptions::default(),
        )
        .unwrap();
    assert!(driver.get(&[r], GUARD).is_err());
    drop(driver);
    let w = server.join().unwrap();
    let snap = w.stats();
    let slow = snap.handler("Counter::slow_add").expect("slow_add ran");
    assert_eq!(slow.count, 20);
    // Each run sleeps 2 ms.
    assert!(slow.cum_execution >= Duration::from_millis(40), "{slow:?}");
    assert!(slow.max_execution >= Duration::from_millis(2));
    assert!(slow.max_execution <= slow.cum_execution);
    assert!(slow.max_queueing <= slow.cum_queueing);
    assert_eq!(snap.handler("Counter::__init__").map(|h| h.count), Some(1));
    assert_eq!(snap.handler("<unknown function>").map(|h| h.count), Some(1));
    assert!(snap.handler("Counter::add").is_none(), "never ran");
    let text = w.stats_string();
    assert!(text.contains("Counter::slow_add: count 20"), "{text}");
    assert_eq!(w.tasks_executed(), 22);
}
