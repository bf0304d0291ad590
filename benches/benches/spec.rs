//! Message costs: encode a typical actor-task `PushTaskRequest` in place,
//! access it validated (bytecheck) and unchecked, and — for comparison in the
//! same run — measure it exactly (`encoded_len`) and deserialize it to owned
//! values (what a copying protocol would pay).
//!
//! Run: `cargo bench -p shmwire-bench --bench spec`. Results go to `docs/messages.md`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use shmwire::ids::{ActorId, JobId, NodeId, TaskId, WorkerId};
use shmwire::spec::{
    self, ActorTaskTarget, Address, AlignedBytes, Encoder, FunctionDescriptor, PushTaskRequest,
    TaskArg, TaskSpecBuilder,
};

/// A typical actor call: Python method, one small pickled argument, caller
/// address on loopback, second call of the handle.
fn typical_actor_request() -> PushTaskRequest {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(job, driver, 0, 1);
    let mut target = ActorTaskTarget::first(actor);
    target.actor_counter = 1;
    let spec = TaskSpecBuilder::new(FunctionDescriptor::python("app", "Counter", "incr", ""))
        .job_id(job)
        .parent(driver, 2)
        .caller_address(Address {
            node_id: NodeId::from_array([1; 28]),
            ip_address: "127.0.0.1".into(),
            port: 40_000,
            worker_id: WorkerId::from_array([2; 28]),
            object_manager_address: String::new(),
        })
        .arg(TaskArg::value(
            vec![0x80, 0x05, 0x95, 0x03, 0x4b, 0x01, 0x2e, 0x00],
            b"pickle5".to_vec(),
        ))
        .build_actor_task(target);
    PushTaskRequest {
        intended_worker_id: WorkerId::from_array([3; 28]),
        task_spec: spec,
        sequence_number: 1,
        client_processed_up_to: 0,
        resource_mapping: vec![],
    }
}

fn bench_spec(c: &mut Criterion) {
    let req = typical_actor_request();
    let mut enc = Encoder::new();
    let len = enc.encoded_len(&req).expect("encoded_len");
    println!("typical actor-task PushTaskRequest: {len} bytes encoded");

    let mut region = AlignedBytes::new();
    region.resize(4096, 0);
    let n = enc
        .encode_into(&req, region.as_mut_slice())
        .expect("encode");
    assert_eq!(n, len);

    let mut g = c.benchmark_group("spec");
    g.throughput(Throughput::Elements(1));

    g.bench_function("encode_in_place", |b| {
        b.iter(|| {
            let n = enc
                .encode_into(black_box(&req), region.as_mut_slice())
                .expect("encode");
            black_box(n)
        })
    });

    // Re-encode once more: the region now holds exactly `n` valid bytes.
    let n = enc
        .encode_into(&req, region.as_mut_slice())
        .expect("encode");
    let frame = &region[..n];

    g.bench_function("access_validated", |b| {
        b.iter(|| {
            let a = spec::access::<PushTaskRequest>(black_box(frame)).expect("valid");
            black_box(a.task_spec.actor_counter())
        })
    });

    g.bench_function("access_unchecked", |b| {
        b.iter(|| {
            // SAFETY: `frame` was produced by `encode_into` for a
            // PushTaskRequest, is 16-byte aligned and is not modified while
            // borrowed.
            let a = unsafe { spec::access_unchecked::<PushTaskRequest>(black_box(frame)) };
            black_box(a.task_spec.actor_counter())
        })
    });

    g.bench_function("encoded_len", |b| {
        b.iter(|| black_box(enc.encoded_len(black_box(&req)).expect("len")))
    });

    g.bench_function("validate_and_deserialize_owned", |b| {
        b.iter(|| black_box(spec::from_bytes::<PushTaskRequest>(black_box(frame)).expect("valid")))
    });

    g.finish();
}

criterion_group!(benches, bench_spec);
criterion_main!(benches);
