//! ID layouts and derivations against values worked out by hand from Ray's
//! `id.h` / `id.cc` (SHA-256 `GenerateUniqueBytes`). The hash prefixes below
//! were computed independently of this crate (Python `hashlib.sha256` over
//! `job ‖ parent ‖ counter_u64_le [‖ extra_u64_le]`).

use std::collections::HashSet;
use std::mem::{align_of, size_of};

use shmwire::ids::{ActorId, IdError, JobId, NodeId, ObjectId, PlacementGroupId, TaskId, WorkerId};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const JOB1: &str = "01000000";
const DRIVER_OF_JOB1: &str = "ffffffffffffffffffffffffffffffffffffffff01000000";
/// sha256(01000000 ‖ DRIVER_OF_JOB1 ‖ 0100000000000000)[..8] ‖ ff×12 ‖ 01000000
const NORMAL_JOB1_DRIVER_1: &str = "a67dc375e60ddd1affffffffffffffffffffffff01000000";
/// sha256(01000000 ‖ NORMAL_JOB1_DRIVER_1 ‖ 0000000000000000)[..8] ‖ ff×12 ‖ 01000000
const NORMAL_JOB1_NESTED_0: &str = "af35dfee07eca675ffffffffffffffffffffffff01000000";
/// sha256(01000000 ‖ DRIVER_OF_JOB1 ‖ 0300000000000000 ‖ 2a00000000000000)[..12] ‖ 01000000
const ACTOR_JOB1_DRIVER_3_NONCE42: &str = "12d46d714a98a36ac9b6e42b01000000";
/// sha256(01000000 ‖ DRIVER_OF_JOB1 ‖ 0300000000000000)[..12] ‖ 01000000 (nonce 0 is not hashed)
const ACTOR_JOB1_DRIVER_3_NONCE0: &str = "69a6825d641b461327313d1c01000000";
/// sha256(01000000 ‖ DRIVER_OF_JOB1 ‖ 0200000000000000)[..8] ‖ ACTOR_JOB1_DRIVER_3_NONCE42
const ACTOR_TASK_JOB1_DRIVER_2: &str = "63964fa4841d4a2e12d46d714a98a36ac9b6e42b01000000";

#[test]
fn sizes_match_ray_and_ids_are_plain_bytes() {
    assert_eq!(size_of::<JobId>(), 4);
    assert_eq!(size_of::<ActorId>(), 16);
    assert_eq!(size_of::<TaskId>(), 24);
    assert_eq!(size_of::<ObjectId>(), 28);
    assert_eq!(size_of::<WorkerId>(), 28);
    assert_eq!(size_of::<NodeId>(), 28);
    assert_eq!(size_of::<PlacementGroupId>(), 18);
    assert_eq!(align_of::<ObjectId>(), 1);
    assert_eq!(
        size_of::<Option<JobId>>(),
        5,
        "no niche: every bit pattern is a valid id"
    );
    // The archived form is the id itself.
    assert_eq!(size_of::<<ObjectId as rkyv::Archive>::Archived>(), 28);
    assert_eq!(JobId::SIZE, 4);
    assert_eq!(ObjectId::SIZE, 28);
}

#[test]
fn nil_is_all_ff() {
    assert_eq!(JobId::nil().as_bytes(), &[0xff; 4]);
    assert_eq!(ActorId::nil().as_bytes(), &[0xff; 16]);
    assert_eq!(TaskId::nil().as_bytes(), &[0xff; 24]);
    assert_eq!(ObjectId::nil().as_bytes(), &[0xff; 28]);
    assert_eq!(WorkerId::nil().as_bytes(), &[0xff; 28]);
    assert_eq!(NodeId::nil().as_bytes(), &[0xff; 28]);
    assert!(TaskId::nil().is_nil());
    assert!(!TaskId::from_array([0; 24]).is_nil());
    assert_eq!(WorkerId::default(), WorkerId::nil());
    let mut almost = [0xff; 28];
    almost[27] = 0xfe;
    assert!(!ObjectId::from_array(almost).is_nil());
}

#[test]
fn job_id_from_int_is_little_endian() {
    let job = JobId::from_int(0x1234_5678);
    assert_eq!(job.as_bytes(), &[0x78, 0x56, 0x34, 0x12]);
    assert_eq!(job.to_int(), 0x1234_5678);
    assert_eq!(JobId::from_int(1).to_string(), JOB1);
}

#[test]
fn nil_actor_from_job_is_twelve_ff_then_job() {
    let job = JobId::from_int(1);
    let nil_actor = ActorId::nil_from_job(job);
    assert_eq!(
        nil_actor.as_bytes().to_vec(),
        hex("ffffffffffffffffffffffff01000000")
    );
    assert_eq!(nil_actor.job_id(), job);
    assert!(!nil_actor.is_nil());
}

#[test]
fn driver_task_is_nil_unique_bytes_plus_nil_actor_of_job() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    assert_eq!(driver.to_string(), DRIVER_OF_JOB1);
    assert_eq!(driver.actor_id(), ActorId::nil_from_job(job));
    assert_eq!(driver.job_id(), job);
    // Ray's IsForActorCreationTask only checks "nil unique bytes, non-nil actor
    // part", and the nil actor of a job is not nil: a driver task id passes it.
    assert!(driver.is_for_actor_creation_task());

    let job2 = JobId::from_int(0xdead_beef);
    let driver2 = TaskId::for_driver_task(job2);
    assert_eq!(&driver2.as_bytes()[..20], &[0xff; 20]);
    assert_eq!(&driver2.as_bytes()[20..], &[0xef, 0xbe, 0xad, 0xde]);
}

#[test]
fn normal_task_id_is_sha256_prefix_plus_nil_actor() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let t = TaskId::for_normal_task(job, driver, 1);
    assert_eq!(t.to_string(), NORMAL_JOB1_DRIVER_1);
    assert_eq!(t.actor_id(), ActorId::nil_from_job(job));
    assert_eq!(t.job_id(), job);
    // A nested task submitted by `t` with counter 0.
    let nested = TaskId::for_normal_task(job, t, 0);
    assert_eq!(nested.to_string(), NORMAL_JOB1_NESTED_0);
    // Deterministic, and the counter matters.
    assert_eq!(TaskId::for_normal_task(job, driver, 1), t);
    assert_ne!(TaskId::for_normal_task(job, driver, 2), t);
}

#[test]
fn actor_id_of_is_sha256_prefix_plus_job() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let a = ActorId::of_with_nonce(job, driver, 3, 42);
    assert_eq!(a.to_string(), ACTOR_JOB1_DRIVER_3_NONCE42);
    assert_eq!(a.job_id(), job);
    let a0 = ActorId::of_with_nonce(job, driver, 3, 0);
    assert_eq!(a0.to_string(), ACTOR_JOB1_DRIVER_3_NONCE0);
    // The time-mixed form keeps the layout (job suffix) and differs from the nonce-0 form.
    let live = ActorId::of(job, driver, 3);
    assert_eq!(live.job_id(), job);
    assert_ne!(live, a0);
}

#[test]
fn actor_task_and_creation_task_ids() {
    let job = JobId::from_int(1);
    let driver = TaskId::for_driver_task(job);
    let actor = ActorId::from_hex(ACTOR_JOB1_DRIVER_3_NONCE42).unwrap();

    let t = TaskId::for_actor_task(job, driver, 2, actor);
    assert_eq!(t.to_string(), ACTOR_TASK_JOB1_DRIVER_2);
    assert_eq!(t.actor_id(), actor);
    assert_eq!(t.job_id(), job);
    assert!(!t.is_for_actor_creation_task());
    // Same hash input as a normal task with the same counter: same unique bytes.
    let normal = TaskId::for_normal_task(job, driver, 2);
    assert_eq!(&t.as_bytes()[..8], &normal.as_bytes()[..8]);

    let c = TaskId::for_actor_creation_task(actor);
    assert_eq!(&c.as_bytes()[..8], &[0xff; 8]);
    assert_eq!(c.actor_id(), actor);
    assert!(c.is_for_actor_creation_task());
    assert_eq!(
        c.to_string(),
        format!("ffffffffffffffff{ACTOR_JOB1_DRIVER_3_NONCE42}")
    );
}

#[test]
fn object_id_from_index_round_trips() {
    let task = TaskId::from_hex(ACTOR_TASK_JOB1_DRIVER_2).unwrap();
    let o = ObjectId::from_index(task, 3);
    assert_eq!(o.to_string(), format!("{ACTOR_TASK_JOB1_DRIVER_2}03000000"));
    assert_eq!(o.task_id(), task);
    assert_eq!(o.object_index(), 3);
    for index in [1u32, 2, 255, 256, 65_536, 0x0102_0304, u32::MAX] {
        let o = ObjectId::from_index(task, index);
        assert_eq!(o.object_index(), index);
        assert_eq!(o.task_id(), task);
        assert_eq!(&o.as_bytes()[24..], &index.to_le_bytes());
    }
}

#[test]
fn actor_handle_object_is_index_one_of_creation_task() {
    let actor = ActorId::from_hex(ACTOR_JOB1_DRIVER_3_NONCE42).unwrap();
    let h = ObjectId::for_actor_handle(actor);
    assert_eq!(
        h.to_string(),
        format!("ffffffffffffffff{ACTOR_JOB1_DRIVER_3_NONCE42}01000000")
    );
}

#[test]
fn driver_worker_id_and_driver_task_id() {
    let job = JobId::from_int(1);
    let w = WorkerId::driver_id_for_job(job);
    let mut expect = vec![1, 0, 0, 0];
    expect.extend([0xff; 24]);
    assert_eq!(w.as_bytes().to_vec(), expect);
    let t = TaskId::compute_driver_task_id(w);
    assert_eq!(t.as_bytes()[..], expect[..24]);
}

#[test]
fn hex_display_and_parse() {
    let bytes: [u8; 28] = core::array::from_fn(|i| (i as u8) * 9);
    let o = ObjectId::from_array(bytes);
    let text = o.to_string();
    assert_eq!(text.len(), 56);
    assert_eq!(&text[..6], "000912");
    assert!(text
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(text.parse::<ObjectId>().unwrap(), o);
    assert_eq!(ObjectId::from_hex(&text.to_uppercase()).unwrap(), o);
    assert_eq!(o.hex(), text);
    assert_eq!(format!("{:?}", JobId::from_int(1)), "JobId(01000000)");

    assert_eq!(
        "0102".parse::<JobId>(),
        Err(IdError::WrongLength {
            kind: "JobId",
            expected: 4,
            actual: 2
        })
    );
    assert_eq!(
        "010".parse::<JobId>(),
        Err(IdError::OddHexLength {
            kind: "JobId",
            len: 3
        })
    );
    assert_eq!(
        "01x20304".parse::<JobId>(),
        Err(IdError::InvalidHex {
            kind: "JobId",
            position: 2
        })
    );
    // Non-ASCII text never panics.
    assert!("ééé\u{1F600}".parse::<JobId>().is_err());
}

#[test]
fn from_bytes_checks_length() {
    let t = TaskId::from_bytes(&[7u8; 24]).unwrap();
    assert_eq!(t.as_bytes(), &[7u8; 24]);
    assert_eq!(
        TaskId::from_bytes(&[7u8; 23]),
        Err(IdError::WrongLength {
            kind: "TaskId",
            expected: 24,
            actual: 23
        })
    );
    assert!(ObjectId::try_from(&[0u8; 29][..]).is_err());
}

#[test]
fn random_ids_differ() {
    let set: HashSet<WorkerId> = (0..64).map(|_| WorkerId::from_random()).collect();
    assert_eq!(set.len(), 64);
    let o = ObjectId::from_random();
    assert_eq!(
        o.object_index(),
        0,
        "Ray's ObjectID::FromRandom leaves index 0"
    );
    let job = JobId::from_int(9);
    let t = TaskId::from_random_in_job(job).unwrap();
    assert_eq!(t.job_id(), job);
    assert_ne!(NodeId::from_random(), NodeId::from_random());
}

#[test]
fn ordering_and_hashing_follow_bytes() {
    let a = JobId::from_array([0, 0, 0, 1]);
    let b = JobId::from_array([0, 0, 1, 0]);
    assert!(a < b);
    let set: HashSet<JobId> = [a, b, a].into_iter().collect();
    assert_eq!(set.len(), 2);
}
