//! Dispatch on the receiving side allocates nothing: the function key of an
//! archived descriptor, the registry lookup and reading the arguments, with a
//! counting global allocator (as `tests/spec_alloc.rs` does for encoding).

#[path = "common/mod.rs"]
mod common;

use shmwire::spec::{self, FunctionDescriptor, PushTaskRequest, TaskArg, TaskSpecBuilder};
use shmwire::worker::{ActorClass, Args, FunctionKey, FunctionRegistry};

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

#[test]
fn dispatch_from_the_archived_spec_allocates_nothing() {
    let mut r = FunctionRegistry::new();
    for i in 0..64 {
        r.register_function(
            FunctionDescriptor::rust("alloc", "", format!("f{i}")),
            |_| Ok(Vec::new()),
        )
        .unwrap();
    }
    r.register_actor_class(ActorClass::new("alloc", "Counter", |_| Ok(0i64)).method(
        "add",
        |s: &mut i64, a| {
            *s += a.i64(0)?;
            Ok(Vec::new())
        },
    ))
    .unwrap();
    let spec = TaskSpecBuilder::new(FunctionDescriptor::rust("alloc", "Counter", "add"))
        .arg(TaskArg::value(5i64.to_le_bytes().to_vec(), Vec::new()))
        .num_returns(1)
        .build_normal_task();
    let req = PushTaskRequest {
        intended_worker_id: shmwire::ids::WorkerId::from_random(),
        task_spec: spec,
        sequence_number: 0,
        client_processed_up_to: -1,
        resource_mapping: Vec::new(),
    };
    let bytes = spec::to_vec(&req).unwrap();
    let before = common::allocs();
    let mut found = 0usize;
    let mut sum = 0i64;
    for _ in 0..1000 {
        let a = spec::access::<PushTaskRequest>(&bytes).unwrap();
        let d = &a.task_spec.function_descriptor;
        let _key = FunctionKey::of_archived(d);
        found += r.lookup_index(d).expect("registered");
        sum += Args::new(&a.task_spec.args).i64(0).unwrap();
    }
    let after = common::allocs();
    assert_eq!(after - before, 0, "allocations during dispatch");
    // `Counter::__init__` is entry 64, `Counter::add` entry 65.
    assert_eq!(found, 65 * 1000);
    assert_eq!(sum, 5000);
}
