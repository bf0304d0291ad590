//! The hot path allocates nothing: after one warm-up message, encoding into a
//! caller-provided region and validated/unchecked access perform zero heap
//! allocations (counted by a global allocator wrapper, per thread).

mod common;

use common::allocs;
use shmwire::ids::{ActorId, JobId, NodeId, TaskId, WorkerId};
use shmwire::spec::{
    self, ActorTaskTarget, Address, AlignedBytes, Encoder, FunctionDescriptor, PushTaskRequest,
    TaskArg, TaskSpecBuilder,
};

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

fn request(counter: u64) -> PushTaskRequest {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(job, driver, 0, 1);
    let mut target = ActorTaskTarget::first(actor);
    target.actor_counter = counter;
    let spec = TaskSpecBuilder::new(FunctionDescriptor::python("app", "Counter", "incr", ""))
        .job_id(job)
        .parent(driver, counter)
        .caller_address(Address {
            node_id: NodeId::from_array([1; 28]),
            ip_address: "127.0.0.1".into(),
            port: 4000,
            worker_id: WorkerId::from_array([2; 28]),
            object_manager_address: String::new(),
        })
        .arg(TaskArg::value(vec![1, 2, 3, 4], b"m".to_vec()))
        .arg(TaskArg::object_ref(
            shmwire::ids::ObjectId::from_index(driver, 1),
            Address::default(),
        ))
        .build_actor_task(target);
    PushTaskRequest {
        intended_worker_id: WorkerId::from_array([3; 28]),
        task_spec: spec,
        sequence_number: counter as i64,
        client_processed_up_to: -1,
        resource_mapping: vec![],
    }
}

#[test]
fn encode_and_access_do_not_allocate_after_warm_up() {
    let messages: Vec<PushTaskRequest> = (0..16).map(request).collect();
    let mut enc = Encoder::new();
    let mut region = AlignedBytes::new();
    region.resize(8192, 0);
    // Warm up the arena.
    enc.encode_into(&messages[0], region.as_mut_slice())
        .unwrap();

    let before = allocs();
    let mut total = 0u64;
    for m in &messages {
        let n = enc.encode_into(m, region.as_mut_slice()).unwrap();
        let a = spec::access::<PushTaskRequest>(&region[..n]).unwrap();
        total += a.task_spec.actor_counter().unwrap();
        // SAFETY: `region[..n]` was just encoded from a PushTaskRequest by
        // this encoder, is 16-byte aligned and is not modified while borrowed.
        let u = unsafe { spec::access_unchecked::<PushTaskRequest>(&region[..n]) };
        total += u.sequence_number.to_native() as u64;
        let _ = enc.encoded_len(m).unwrap();
    }
    let after = allocs();
    // The counter itself works: a boxed value is one allocation.
    let probe = allocs();
    let b = std::hint::black_box(Box::new(total));
    assert_eq!(allocs() - probe, 1);
    drop(b);
    assert_eq!(total, 2 * (0..16).sum::<u64>());
    assert_eq!(
        after - before,
        0,
        "hot path allocated {} times",
        after - before
    );
}
