//! FunctionDescriptor renderings, TaskSpec builder, encoding round trips and
//! rejection of bad buffers (plus property tests: no input makes `access` panic).

use proptest::prelude::*;

use shmwire::ids::{
    ActorId, ChildTaskHash, JobId, NodeId, ObjectId, PlacementGroupId, TaskId, WorkerId,
};
use shmwire::spec::{
    self, ActorCreationTaskSpec, ActorTaskTarget, Address, AlignedBytes, ArchivedReturnValue,
    ArchivedTaskArg, DecodeError, EncodeError, Encoder, FunctionDescriptor, InlineData,
    InlineValue, Language, ObjectReference, ObjectReferenceCount, PushTaskReply, PushTaskRequest,
    ResourceId, ResourceMapEntry, ReturnObject, ReturnValue, RpcStatus, StatusCode, TaskArg,
    TaskSpec, TaskSpecBuilder, TaskType, MESSAGE_ALIGN,
};

// ---------------------------------------------------------------------------
// FunctionDescriptor renderings
// ---------------------------------------------------------------------------

/// (to_string, call_site_string, call_string, default_task_name)
fn renderings(fd: &FunctionDescriptor) -> (String, String, String, String) {
    (
        fd.to_string(),
        fd.call_site_string(),
        fd.call_string(),
        fd.default_task_name(),
    )
}

fn archived_renderings(fd: &FunctionDescriptor) -> (String, String, String, String) {
    // Wrap in a TaskSpec (a Message) and render from the archived form.
    let spec = TaskSpecBuilder::new(fd.clone()).build_normal_task();
    let bytes = spec::to_vec(&spec).unwrap();
    let a = spec::access::<TaskSpec>(&bytes).unwrap();
    let afd = &a.function_descriptor;
    (
        afd.to_string(),
        afd.call_site_string(),
        afd.call_string(),
        afd.default_task_name(),
    )
}

fn check(fd: FunctionDescriptor, expect: [&str; 4]) {
    let got = renderings(&fd);
    assert_eq!(
        (
            got.0.as_str(),
            got.1.as_str(),
            got.2.as_str(),
            got.3.as_str()
        ),
        (expect[0], expect[1], expect[2], expect[3]),
        "native renderings of {fd:?}"
    );
    assert_eq!(
        archived_renderings(&fd),
        got,
        "archived renderings of {fd:?}"
    );
}

#[test]
fn python_reference_note_example() {
    check(
        FunctionDescriptor::python("plot_pong_example", "RolloutWorker", "compute_gradient", ""),
        [
            "{type=PythonFunctionDescriptor, module_name=plot_pong_example, class_name=RolloutWorker, function_name=compute_gradient, function_hash=}",
            "plot_pong_example.RolloutWorker.compute_gradient",
            "RolloutWorker.compute_gradient",
            "RolloutWorker.compute_gradient()",
        ],
    );
}

#[test]
fn python_plain_function_and_dotted_names() {
    // No class: CallString is the function name after its last dot.
    check(
        FunctionDescriptor::python("__main__", "", "outer.<locals>.f", "9f8e"),
        [
            "{type=PythonFunctionDescriptor, module_name=__main__, class_name=, function_name=outer.<locals>.f, function_hash=9f8e}",
            "__main__.f",
            "f",
            "f()",
        ],
    );
    check(
        FunctionDescriptor::python("app", "", "work", "h"),
        [
            "{type=PythonFunctionDescriptor, module_name=app, class_name=, function_name=work, function_hash=h}",
            "app.work",
            "work",
            "work()",
        ],
    );
    // Dotted class and method names keep only their last components.
    check(
        FunctionDescriptor::python("pkg.mod", "pkg.mod.Outer.Inner", "Inner.method", ""),
        [
            "{type=PythonFunctionDescriptor, module_name=pkg.mod, class_name=pkg.mod.Outer.Inner, function_name=Inner.method, function_hash=}",
            "pkg.mod.Inner.method",
            "Inner.method",
            "Inner.method()",
        ],
    );
    // A trailing dot leaves an empty last component, as substr(find_last_of('.') + 1).
    check(
        FunctionDescriptor::python("m", "C.", "f.", ""),
        [
            "{type=PythonFunctionDescriptor, module_name=m, class_name=C., function_name=f., function_hash=}",
            "m..",
            ".",
            ".()",
        ],
    );
    // Empty module still gets the separating dot.
    check(
        FunctionDescriptor::python("", "A", "b", ""),
        [
            "{type=PythonFunctionDescriptor, module_name=, class_name=A, function_name=b, function_hash=}",
            ".A.b",
            "A.b",
            "A.b()",
        ],
    );
}

#[test]
fn java_renderings() {
    check(
        FunctionDescriptor::java("io.ray.demo.Counter", "increment", "(I)I"),
        [
            "{type=JavaFunctionDescriptor, class_name=io.ray.demo.Counter, function_name=increment, signature=(I)I}",
            "io.ray.demo.Counter.increment.(I)I",
            "io.ray.demo.Counter.increment",
            "io.ray.demo.Counter.increment()",
        ],
    );
    // Empty class name: CallString is the bare function name.
    check(
        FunctionDescriptor::java("", "main", "([Ljava/lang/String;)V"),
        [
            "{type=JavaFunctionDescriptor, class_name=, function_name=main, signature=([Ljava/lang/String;)V}",
            "main.([Ljava/lang/String;)V",
            "main",
            "main()",
        ],
    );
}

#[test]
fn cpp_renderings() {
    // DefaultTaskName of Cpp is the CallString without "()"; CallSiteString is the CallString.
    check(
        FunctionDescriptor::cpp("PlusOne"),
        [
            "{type=CppFunctionDescriptor, function_name=PlusOne}",
            "PlusOne",
            "PlusOne",
            "PlusOne",
        ],
    );
    // class_name is rendered only when non-empty; caller never.
    check(
        FunctionDescriptor::cpp_with("Counter::Add", "main", "Counter"),
        [
            "{type=CppFunctionDescriptor, function_name=Counter::Add, class_name=Counter}",
            "Counter::Add",
            "Counter::Add",
            "Counter::Add",
        ],
    );
    check(
        FunctionDescriptor::cpp_with("Plus", "the_caller", ""),
        [
            "{type=CppFunctionDescriptor, function_name=Plus}",
            "Plus",
            "Plus",
            "Plus",
        ],
    );
}

#[test]
fn empty_and_rust_renderings() {
    check(
        FunctionDescriptor::Empty,
        ["{type=EmptyFunctionDescriptor}", "", "", "()"],
    );
    check(
        FunctionDescriptor::rust("my_app::kernels", "Counter", "incr"),
        [
            "{type=RustFunctionDescriptor, module_path=my_app::kernels, type_name=Counter, function_name=incr}",
            "my_app::kernels::Counter::incr",
            "Counter::incr",
            "Counter::incr()",
        ],
    );
    check(
        FunctionDescriptor::rust("", "", "add"),
        [
            "{type=RustFunctionDescriptor, module_path=, type_name=, function_name=add}",
            "add",
            "add",
            "add()",
        ],
    );
}

#[test]
fn descriptor_languages() {
    assert_eq!(
        FunctionDescriptor::python("m", "", "f", "").language(),
        Some(Language::Python)
    );
    assert_eq!(
        FunctionDescriptor::java("C", "f", "()V").language(),
        Some(Language::Java)
    );
    assert_eq!(FunctionDescriptor::cpp("f").language(), Some(Language::Cpp));
    assert_eq!(
        FunctionDescriptor::rust("m", "", "f").language(),
        Some(Language::Rust)
    );
    assert_eq!(FunctionDescriptor::Empty.language(), None);
}

// ---------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------

fn address(port: u16) -> Address {
    Address {
        node_id: NodeId::from_array([3; 28]),
        ip_address: "127.0.0.1".into(),
        port,
        worker_id: WorkerId::from_array([4; 28]),
        object_manager_address: String::new(),
    }
}

#[test]
fn builder_normal_task_derives_ids_name_language() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let spec = TaskSpecBuilder::new(FunctionDescriptor::python("app", "", "work", "h"))
        .job_id(job)
        .parent(driver, 1)
        .caller_address(address(7000))
        .arg(TaskArg::value(vec![1, 2, 3], vec![9]))
        .num_returns(2)
        .resource("CPU", 1.0)
        .resource("CPU", 2.0)
        .resource("GPU", 0.5)
        .build_normal_task();
    assert_eq!(spec.task_type, TaskType::NormalTask);
    assert_eq!(spec.task_id, TaskId::for_normal_task(job, driver, 1));
    assert_eq!(spec.job_id, job);
    assert_eq!(spec.name, "work()");
    assert_eq!(spec.language, Language::Python);
    assert_eq!(spec.caller_id, driver, "caller defaults to the parent");
    assert_eq!(spec.num_returns, 2);
    assert_eq!(spec.return_id(0), ObjectId::from_index(spec.task_id, 1));
    assert_eq!(spec.return_id(1), ObjectId::from_index(spec.task_id, 2));
    assert_eq!(spec.return_ids().count(), 2);
    assert!(spec.is_normal_task() && !spec.is_actor_task());
    assert_eq!(spec.actor_counter(), None);
    assert_eq!(spec.inline_arg_bytes(), 4);
    assert_eq!(
        spec.required_resources.len(),
        2,
        "resource names stay unique"
    );
    assert_eq!(spec.required_resources[0].quantity, 2.0);
    assert_eq!(spec.runtime_env.serialized_runtime_env, "{}");
    assert_eq!(spec.placement_group_bundle_index, -1);
    assert!(spec.placement_group_id.is_nil());
}

#[test]
fn builder_actor_task_adds_cursor_return_and_chains_cursor() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(JobId::from_int(5), driver, 0, 11);
    let fd =
        FunctionDescriptor::python("plot_pong_example", "RolloutWorker", "compute_gradient", "");

    let first = TaskSpecBuilder::new(fd.clone())
        .job_id(job)
        .parent(driver, 3)
        .num_returns(1)
        .build_actor_task(ActorTaskTarget::first(actor));
    assert_eq!(first.task_type, TaskType::ActorTask);
    assert_eq!(first.task_id, TaskId::for_actor_task(job, driver, 3, actor));
    assert_eq!(first.task_id.actor_id(), actor);
    assert_eq!(
        first.job_id,
        JobId::from_int(5),
        "actor task's job is the actor's creation job"
    );
    assert_eq!(first.num_returns, 2, "num_returns + 1 for the cursor");
    assert_eq!(first.name, "RolloutWorker.compute_gradient()");
    let ats = first.actor_task_spec.as_ref().unwrap();
    assert_eq!(ats.actor_id, actor);
    assert_eq!(ats.actor_counter, 0);
    assert_eq!(
        ats.actor_creation_dummy_object_id,
        ObjectId::for_actor_handle(actor)
    );
    assert_eq!(
        ats.previous_actor_task_dummy_object_id,
        ObjectId::from_index(TaskId::for_actor_creation_task(actor), 1)
    );
    let cursor = first.actor_dummy_object_id().unwrap();
    assert_eq!(cursor, ObjectId::from_index(first.task_id, 2));
    assert!(first.is_actor_task());
    assert_eq!(first.actor_counter(), Some(0));
    assert_eq!(first.actor_id(), Some(actor));

    let second = TaskSpecBuilder::new(fd)
        .job_id(job)
        .parent(driver, 4)
        .name("custom")
        .build_actor_task(ActorTaskTarget {
            actor_id: actor,
            actor_counter: 1,
            previous_cursor: cursor,
            caller_starts_at: 0,
        });
    assert_eq!(second.name, "custom");
    assert_eq!(second.actor_counter(), Some(1));
    assert_eq!(
        second
            .actor_task_spec
            .as_ref()
            .unwrap()
            .previous_actor_task_dummy_object_id,
        cursor
    );
    assert_ne!(second.task_id, first.task_id);
}

#[test]
fn builder_actor_creation_and_driver_tasks() {
    let job = JobId::from_int(2);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(job, driver, 0, 1);
    let spec = TaskSpecBuilder::new(FunctionDescriptor::java("io.ray.Counter", "<init>", "()V"))
        .job_id(job)
        .parent(driver, 0)
        .num_returns(5)
        .build_actor_creation_task(ActorCreationTaskSpec {
            actor_id: actor,
            max_concurrency: 1,
            ..Default::default()
        });
    assert_eq!(spec.task_type, TaskType::ActorCreationTask);
    assert_eq!(spec.task_id, TaskId::for_actor_creation_task(actor));
    assert!(spec.task_id.is_for_actor_creation_task());
    assert_eq!(spec.num_returns, 1, "only the dummy object");
    assert_eq!(spec.language, Language::Java);
    assert_eq!(spec.name, "io.ray.Counter.<init>()");
    assert_eq!(spec.actor_id(), Some(actor));
    assert!(spec.is_actor_creation_task());

    let d = TaskSpecBuilder::new(FunctionDescriptor::Empty)
        .job_id(job)
        .build_driver_task();
    assert_eq!(d.task_type, TaskType::DriverTask);
    assert_eq!(d.task_id, driver);
    assert_eq!(d.num_returns, 0);
    assert_eq!(d.actor_dummy_object_id(), None);
}

// ---------------------------------------------------------------------------
// Encoding round trips
// ---------------------------------------------------------------------------

fn typical_actor_request() -> PushTaskRequest {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(job, driver, 0, 1);
    let spec = TaskSpecBuilder::new(FunctionDescriptor::python("app", "Counter", "incr", ""))
        .job_id(job)
        .parent(driver, 7)
        .caller_address(address(40_000))
        .arg(TaskArg::value(
            vec![0x80, 0x05, 0x4b, 0x01, 0x2e],
            b"pickle5".to_vec(),
        ))
        .build_actor_task(ActorTaskTarget::first(actor));
    PushTaskRequest {
        intended_worker_id: WorkerId::from_array([8; 28]),
        task_spec: spec,
        sequence_number: 0,
        client_processed_up_to: -1,
        resource_mapping: vec![],
    }
}

#[test]
fn a_rebuilt_actor_call_equals_a_freshly_built_one() {
    // The caller's hot path re-aims a finished call's spec at the next call
    // (TaskSpecBuilder::rebuild_actor_task): the result must be exactly what
    // the builder makes for that call, whatever the finished call carried.
    let job = JobId::from_int(3);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::of_with_nonce(job, driver, 0, 9);
    let builder = |counter: u64, args: Vec<TaskArg>, retries: i32| {
        TaskSpecBuilder::new(FunctionDescriptor::rust("app", "Counter", "add"))
            .job_id(job)
            .parent(driver, counter)
            .caller_address(address(50_000))
            .args(args)
            .num_returns(1)
            .max_retries(retries)
            .concurrency_group_name("io")
    };
    let first_target = ActorTaskTarget::first(actor);
    let mut recycled = builder(5, vec![TaskArg::value(vec![1; 300], b"m".to_vec())], 2)
        .build_actor_task(first_target);
    recycled.skip_execution = true; // as a re-send leaves it
    let target = ActorTaskTarget {
        actor_id: actor,
        actor_counter: 41,
        previous_cursor: recycled.actor_dummy_object_id().unwrap(),
        caller_starts_at: 3,
    };
    let args = vec![
        TaskArg::value(vec![7, 8], Vec::new()),
        TaskArg::value(vec![9], b"x".to_vec()),
    ];
    let old = TaskSpecBuilder::rebuild_actor_task(
        &mut recycled,
        job,
        driver,
        44,
        args.clone(),
        -1,
        target,
    );
    assert_eq!(old.len(), 1, "the previous arguments are handed back");
    let fresh = builder(44, args.clone(), -1).build_actor_task(target);
    assert_eq!(recycled, fresh);
    assert_ne!(recycled.task_id, TaskId::nil());

    // With the id's hash computed ahead (as the caller does while it waits
    // for a reply): the same spec.
    let child = ChildTaskHash::new(job, driver, 44);
    assert!(child.is_for(job, driver, 44));
    assert!(!child.is_for(job, driver, 45));
    assert!(!child.is_for(JobId::from_int(4), driver, 44));
    let mut hashed = builder(5, Vec::new(), 2).build_actor_task(first_target);
    TaskSpecBuilder::rebuild_actor_task_hashed(&mut hashed, &child, args, -1, target);
    assert_eq!(hashed, fresh);
    assert_eq!(
        child.normal_task(),
        TaskId::for_normal_task(job, driver, 44)
    );
}

fn big_spec(num_args: usize, blob: usize) -> TaskSpec {
    let job = JobId::from_int(77);
    let driver = TaskId::for_driver_task(job);
    let mut b = TaskSpecBuilder::new(FunctionDescriptor::cpp_with("Big::run", "main", "Big"))
        .job_id(job)
        .parent(driver, 99)
        .caller_address(address(1))
        .num_returns(17)
        .resource("CPU", 4.0)
        .placement_resource("bundle_group_0", 1.0)
        .placement_group(PlacementGroupId::from_array([6; 18]), 3, false)
        .debugger_breakpoint(b"bp".to_vec())
        .runtime_env(r#"{"pip":["numpy"]}"#, vec!["gcs://pkg.zip".into()])
        .concurrency_group_name("io")
        .max_retries(3)
        .retry_exceptions(true)
        .depth(4);
    for i in 0..num_args {
        let arg = if i % 3 == 0 {
            TaskArg::object_ref(
                ObjectId::from_index(driver, i as u32 + 1),
                address(i as u16),
            )
        } else {
            TaskArg::Value(InlineValue {
                data: (0..(i % 50)).map(|x| x as u8).collect(),
                metadata: vec![i as u8],
                nested_inlined_refs: vec![ObjectReference {
                    object_id: ObjectId::from_index(driver, 1),
                    owner_address: address(2),
                    call_site: format!("site{i}"),
                }],
            })
        };
        b = b.arg(arg);
    }
    b = b.arg(TaskArg::value(vec![0xab; blob], vec![]));
    b.build_normal_task()
}

#[test]
fn typical_request_round_trips_in_place() {
    let req = typical_actor_request();
    let mut enc = Encoder::new();
    let len = enc.encoded_len(&req).unwrap();
    let mut region = AlignedBytes::new();
    region.resize(4096, 0xcc);
    let n = enc.encode_into(&req, region.as_mut_slice()).unwrap();
    assert_eq!(n, len, "encoded_len is exact");
    assert!(
        (300..=800).contains(&n),
        "typical actor request is {n} bytes"
    );
    println!("typical actor PushTaskRequest: {n} bytes");

    let a = spec::access::<PushTaskRequest>(&region[..n]).unwrap();
    assert_eq!(a.intended_worker_id, req.intended_worker_id);
    assert_eq!(a.sequence_number.to_native(), 0);
    assert_eq!(a.client_processed_up_to.to_native(), -1);
    let s = &a.task_spec;
    assert_eq!(s.task_id, req.task_spec.task_id);
    assert!(s.is_actor_task());
    assert_eq!(s.actor_counter(), Some(0));
    assert_eq!(s.num_returns(), 2);
    assert_eq!(s.return_id(1), req.task_spec.return_id(1));
    assert_eq!(s.inline_arg_bytes(), 12);
    assert_eq!(s.name.as_str(), "Counter.incr()");
    assert_eq!(s.function_descriptor.call_string(), "Counter.incr");
    match &s.args[0] {
        ArchivedTaskArg::Value(v) => assert_eq!(v.data.as_slice(), &[0x80, 0x05, 0x4b, 0x01, 0x2e]),
        other => panic!("unexpected arg {other:?}"),
    }
    // Unchecked access sees the same thing.
    // SAFETY: `region[..n]` was just produced by `encode_into` for a
    // PushTaskRequest, is 16-byte aligned and is not modified while borrowed.
    let u = unsafe { spec::access_unchecked::<PushTaskRequest>(&region[..n]) };
    assert_eq!(u.task_spec.task_id, req.task_spec.task_id);

    let back: PushTaskRequest = spec::deserialize::<PushTaskRequest>(a).unwrap();
    assert_eq!(back, req);
    assert_eq!(
        spec::from_bytes::<PushTaskRequest>(&region[..n]).unwrap(),
        req
    );

    // The encoder is reusable and deterministic.
    let mut region2 = AlignedBytes::new();
    region2.resize(n, 0);
    let n2 = enc.encode_into(&req, region2.as_mut_slice()).unwrap();
    assert_eq!(&region2[..n2], &region[..n]);
}

#[test]
fn small_and_large_specs_round_trip() {
    let small = TaskSpecBuilder::new(FunctionDescriptor::cpp("f")).build_normal_task();
    let bytes = spec::to_vec(&small).unwrap();
    assert_eq!(spec::from_bytes::<TaskSpec>(&bytes).unwrap(), small);

    let large = big_spec(1000, 1 << 20);
    let bytes = spec::to_vec(&large).unwrap();
    assert!(bytes.len() > 1 << 20);
    let a = spec::access::<TaskSpec>(&bytes).unwrap();
    assert_eq!(a.args.len(), 1001);
    assert_eq!(a.inline_arg_bytes(), large.inline_arg_bytes());
    assert_eq!(a.depth.to_native(), 4);
    assert_eq!(a.runtime_env.uris[0].as_str(), "gcs://pkg.zip");
    assert_eq!(spec::deserialize::<TaskSpec>(a).unwrap(), large);
}

#[test]
fn reply_round_trips() {
    let task = TaskId::for_normal_task(JobId::from_int(1), TaskId::nil(), 0);
    let reply = PushTaskReply {
        task_id: task,
        return_objects: vec![
            ReturnObject {
                object_id: ObjectId::from_index(task, 1),
                value: ReturnValue::Inline(InlineData {
                    data: b"42".to_vec(),
                    metadata: b"raw".to_vec(),
                }),
                size: 2,
                nested_inlined_refs: vec![],
            },
            ReturnObject {
                object_id: ObjectId::from_index(task, 2),
                value: ReturnValue::InStore("10.0.0.7:40100".into()),
                size: 10 << 20,
                nested_inlined_refs: vec![ObjectReference::default()],
            },
        ],
        borrowed_refs: vec![ObjectReferenceCount {
            has_local_ref: true,
            borrowers: vec![address(9)],
            contains: vec![ObjectId::from_index(task, 3)],
            ..Default::default()
        }],
        is_application_level_error: true,
        worker_exiting: false,
        task_stolen: true,
        status: RpcStatus::new(StatusCode::Invalid, "client cancelled stale rpc"),
    };
    let bytes = spec::to_vec(&reply).unwrap();
    let a = spec::access::<PushTaskReply>(&bytes).unwrap();
    assert!(!a.status.is_ok());
    assert_eq!(a.status.code, StatusCode::Invalid);
    match &a.return_objects[1].value {
        ArchivedReturnValue::InStore(endpoint) => assert_eq!(endpoint.as_str(), "10.0.0.7:40100"),
        other => panic!("expected InStore, got {other:?}"),
    }
    assert_eq!(spec::deserialize::<PushTaskReply>(a).unwrap(), reply);
}

#[test]
fn request_with_resource_mapping_round_trips() {
    let mut req = typical_actor_request();
    req.sequence_number = PushTaskRequest::UNORDERED;
    req.resource_mapping = vec![ResourceMapEntry {
        name: "GPU".into(),
        resource_ids: vec![
            ResourceId {
                index: 0,
                quantity: 0.5,
            },
            ResourceId {
                index: 3,
                quantity: 1.0,
            },
        ],
    }];
    let bytes = spec::to_vec(&req).unwrap();
    assert_eq!(spec::from_bytes::<PushTaskRequest>(&bytes).unwrap(), req);
}

// ---------------------------------------------------------------------------
// Rejection of bad regions and buffers
// ---------------------------------------------------------------------------

#[test]
fn encode_rejects_small_and_misaligned_regions() {
    let req = typical_actor_request();
    let mut enc = Encoder::new();
    let needed = enc.encoded_len(&req).unwrap();
    let mut region = AlignedBytes::new();
    region.resize(needed + 32, 0);

    for cap in [0, 1, 16, needed / 2, needed - 1] {
        assert_eq!(
            enc.encode_into(&req, &mut region.as_mut_slice()[..cap]),
            Err(EncodeError::RegionTooSmall {
                capacity: cap,
                needed
            })
        );
    }
    assert_eq!(
        enc.encode_into(&req, &mut region.as_mut_slice()[..needed]),
        Ok(needed)
    );
    for off in [1, 4, 8, 15] {
        let r = enc.encode_into(&req, &mut region.as_mut_slice()[off..]);
        assert!(
            matches!(r, Err(EncodeError::Misaligned { .. })),
            "offset {off}: {r:?}"
        );
    }
}

#[test]
fn a_region_too_small_pass_measures_and_the_retry_is_byte_identical() {
    // The one-pass send: a guessed reservation that is too short reports the
    // exact length, and encoding again into that gives the same bytes as a
    // fresh encoder (the failed pass leaves nothing behind).
    let req = typical_actor_request();
    let expected = spec::to_vec(&req).unwrap();
    let mut enc = Encoder::new();
    assert_eq!(enc.reserve_hint(usize::MAX), 256);
    let mut region = AlignedBytes::new();
    region.resize(expected.len() + 64, 0);
    let needed = match enc.encode_into(&req, &mut region.as_mut_slice()[..64]) {
        Err(EncodeError::RegionTooSmall {
            capacity: 64,
            needed,
        }) => needed,
        other => panic!("{other:?}"),
    };
    assert_eq!(needed, expected.len());
    let n = enc
        .encode_into(&req, &mut region.as_mut_slice()[..needed])
        .unwrap();
    assert_eq!(&region[..n], &expected[..]);
    // The hint follows the last length, with slack, 16-aligned, capped.
    let hint = enc.reserve_hint(usize::MAX);
    assert!(hint >= needed && hint % 16 == 0, "hint {hint} for {needed}");
    assert_eq!(enc.reserve_hint(100), 100);
}

#[test]
fn access_rejects_truncated_buffers() {
    let bytes = spec::to_vec(&typical_actor_request()).unwrap();
    let n = bytes.len();
    for len in 0..n {
        let r = spec::access::<PushTaskRequest>(&bytes[..len]);
        assert!(r.is_err(), "prefix of {len}/{n} bytes was accepted");
    }
    let min = std::mem::size_of::<spec::ArchivedPushTaskRequest>();
    assert_eq!(
        spec::access::<PushTaskRequest>(&bytes[..min - 1]).unwrap_err(),
        DecodeError::Truncated { len: min - 1, min }
    );
    assert!(matches!(
        spec::access::<PushTaskRequest>(&[]),
        Err(DecodeError::Truncated { len: 0, .. })
    ));
}

#[test]
fn access_rejects_misaligned_buffers() {
    let bytes = spec::to_vec(&typical_actor_request()).unwrap();
    let mut shifted = AlignedBytes::new();
    shifted.resize(bytes.len() + 16, 0);
    for off in [1usize, 2, 4, 8, 12] {
        shifted.as_mut_slice()[off..off + bytes.len()].copy_from_slice(&bytes);
        let r = spec::access::<PushTaskRequest>(&shifted[off..off + bytes.len()]);
        assert!(
            matches!(r, Err(DecodeError::Misaligned { .. })),
            "offset {off}: {r:?}"
        );
    }
}

#[test]
fn access_rejects_corrupted_buffers() {
    let req = typical_actor_request();
    let good = spec::to_vec(&req).unwrap();
    let n = good.len();

    // An enum tag out of range: TaskType lives in the root TaskSpec; find it by
    // comparing encodings that differ only in task type.
    let mut other = req.clone();
    other.task_spec.task_type = TaskType::DriverTask;
    let other_bytes = spec::to_vec(&other).unwrap();
    let diffs: Vec<usize> = (0..n).filter(|&i| good[i] != other_bytes[i]).collect();
    assert_eq!(diffs.len(), 1, "task_type is one byte");
    let mut bad = AlignedBytes::new();
    bad.extend_from_slice(&good);
    bad.as_mut_slice()[diffs[0]] = 0x7f;
    let err = spec::access::<PushTaskRequest>(&bad).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid(_)), "{err:?}");
    // The message says what was wrong with the bytes (which field), in
    // release builds too — not "enable debug assertions ... in rancor".
    let text = err.to_string();
    assert!(!text.contains("enable debug assertions"), "{text}");
    assert!(
        text.contains("TaskType") && text.contains("127"),
        "names the field: {text}"
    );

    // Invalid UTF-8 in the task name: the name "Counter.incr()" is stored out of line.
    let pos = good
        .windows(14)
        .position(|w| w == b"Counter.incr()")
        .expect("name bytes present");
    let mut bad = AlignedBytes::new();
    bad.extend_from_slice(&good);
    bad.as_mut_slice()[pos] = 0xff;
    assert!(matches!(
        spec::access::<PushTaskRequest>(&bad),
        Err(DecodeError::Invalid(_))
    ));

    // Every relative pointer / length in the root pointing anywhere: set each
    // 4-byte word of the root to a huge value; none may be accepted silently
    // in a way that panics, and the ones that are pointers must be rejected.
    let root = std::mem::size_of::<spec::ArchivedPushTaskRequest>();
    let mut rejected = 0;
    for word in (n - root..n - 3).step_by(4) {
        let mut bad = AlignedBytes::new();
        bad.extend_from_slice(&good);
        bad.as_mut_slice()[word..word + 4].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        if spec::access::<PushTaskRequest>(&bad).is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected >= 10,
        "only {rejected} corrupted root words were rejected"
    );
}

#[test]
fn message_alignment_constant() {
    assert_eq!(MESSAGE_ALIGN, 16);
    assert!(std::mem::align_of::<spec::ArchivedPushTaskRequest>() <= MESSAGE_ALIGN);
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z_.:<>]{1,24}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

fn arb_fd() -> impl Strategy<Value = FunctionDescriptor> {
    prop_oneof![
        Just(FunctionDescriptor::Empty),
        (arb_string(), arb_string(), arb_string(), arb_string())
            .prop_map(|(a, b, c, d)| FunctionDescriptor::python(a, b, c, d)),
        (arb_string(), arb_string(), arb_string())
            .prop_map(|(a, b, c)| FunctionDescriptor::java(a, b, c)),
        (arb_string(), arb_string(), arb_string())
            .prop_map(|(a, b, c)| FunctionDescriptor::cpp_with(a, b, c)),
        (arb_string(), arb_string(), arb_string())
            .prop_map(|(a, b, c)| FunctionDescriptor::rust(a, b, c)),
    ]
}

fn arb_arg() -> impl Strategy<Value = TaskArg> {
    prop_oneof![
        (
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..8)
        )
            .prop_map(|(d, m)| TaskArg::value(d, m)),
        (any::<[u8; 28]>(), any::<u16>(), arb_string(), arb_string()).prop_map(
            |(o, port, ip, objects)| {
                TaskArg::ObjectRef(Box::new(ObjectReference {
                    object_id: ObjectId::from_array(o),
                    owner_address: Address {
                        ip_address: ip,
                        port,
                        object_manager_address: objects,
                        ..Address::default()
                    },
                    call_site: "site".into(),
                }))
            }
        ),
    ]
}

prop_compose! {
    fn arb_spec()(
        fd in arb_fd(),
        name in arb_string(),
        job in any::<u32>(),
        counter in any::<u64>(),
        num_returns in 0u64..20,
        args in prop::collection::vec(arb_arg(), 0..12),
        cpu in 0.0f64..64.0,
        actor in any::<Option<(u64, [u8; 12])>>(),
        retries in any::<i32>(),
        skip in any::<bool>(),
        depth in any::<u64>(),
    ) -> TaskSpec {
        let job = JobId::from_int(job);
        let parent = TaskId::for_driver_task(job);
        let b = TaskSpecBuilder::new(fd)
            .name(name)
            .job_id(job)
            .parent(parent, counter)
            .args(args)
            .num_returns(num_returns)
            .resource("CPU", cpu)
            .max_retries(retries)
            .skip_execution(skip)
            .depth(depth);
        match actor {
            Some((c, unique)) => {
                let mut a = [0u8; 16];
                a[..12].copy_from_slice(&unique);
                a[12..].copy_from_slice(job.as_bytes());
                let mut t = ActorTaskTarget::first(ActorId::from_array(a));
                t.actor_counter = c;
                b.build_actor_task(t)
            }
            None => b.build_normal_task(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut buf = AlignedBytes::new();
        buf.extend_from_slice(&bytes);
        let _ = spec::access::<PushTaskRequest>(&buf);
        let _ = spec::access::<PushTaskReply>(&buf);
        let _ = spec::access::<TaskSpec>(&buf);
        let _ = spec::from_bytes::<PushTaskRequest>(&buf);
    }

    #[test]
    fn mutations_of_valid_encoding_never_panic(
        spec in arb_spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let req = PushTaskRequest {
            intended_worker_id: WorkerId::nil(),
            task_spec: spec,
            sequence_number: 3,
            client_processed_up_to: 1,
            resource_mapping: vec![],
        };
        let good = spec::to_vec(&req).unwrap();
        let mut bad = AlignedBytes::new();
        bad.extend_from_slice(&good);
        for (i, v) in &edits {
            let i = i.index(bad.len());
            bad.as_mut_slice()[i] = *v;
        }
        let len = if do_cut { cut.index(bad.len() + 1) } else { bad.len() };
        if let Ok(a) = spec::access::<PushTaskRequest>(&bad[..len]) {
            // Whatever validated must also be fully usable.
            let _ = a.task_spec.function_descriptor.to_string();
            let _ = a.task_spec.inline_arg_bytes();
            let _ = spec::deserialize::<PushTaskRequest>(a);
        }
    }

    #[test]
    fn valid_random_specs_round_trip(spec in arb_spec()) {
        let mut enc = Encoder::new();
        let bytes = enc.to_vec(&spec).unwrap();
        prop_assert_eq!(bytes.len(), enc.encoded_len(&spec).unwrap());
        let a = spec::access::<TaskSpec>(&bytes).unwrap();
        prop_assert_eq!(a.task_id, spec.task_id);
        prop_assert_eq!(a.function_descriptor.to_string(), spec.function_descriptor.to_string());
        prop_assert_eq!(a.function_descriptor.default_task_name(), spec.function_descriptor.default_task_name());
        prop_assert_eq!(a.inline_arg_bytes(), spec.inline_arg_bytes());
        prop_assert_eq!(spec::deserialize::<TaskSpec>(a).unwrap(), spec);
    }
}

/// The archived root sizes `docs/messages.md` states (a layout change that
/// moves them must update the page).
#[test]
fn archived_root_sizes_are_as_documented() {
    use std::mem::size_of;
    assert_eq!(size_of::<shmwire::spec::ArchivedPushTaskRequest>(), 496);
    assert_eq!(size_of::<shmwire::spec::ArchivedTaskSpec>(), 440);
    assert_eq!(size_of::<shmwire::spec::ArchivedAddress>(), 76);
}
