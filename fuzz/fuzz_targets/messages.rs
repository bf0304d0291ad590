//! Validated access of every message type on arbitrary bytes: `spec::access`
//! must refuse bad bytes with a `DecodeError` (never panic, never read out
//! of bounds), and whatever it accepts must deserialize and re-encode.
//!
//! Input: byte 0 picks the type (`TaskSpec`, `PushTaskRequest`,
//! `PushTaskReply`); if bit 7 of byte 0 is set the rest is XORed over a
//! valid encoding of a sample message (deep mutations of real archives),
//! otherwise it is used as the bytes themselves. Either way the bytes are
//! copied to a 16-byte aligned buffer first, as every receive path does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmwire::ids::WorkerId;
use shmwire::spec::{
    self, AlignedBytes, FunctionDescriptor, Message, PushTaskReply, PushTaskRequest, TaskArg,
    TaskSpec, TaskSpecBuilder,
};

fn sample_spec() -> TaskSpec {
    TaskSpecBuilder::new(FunctionDescriptor::python(
        "app.module",
        "Counter",
        "add",
        "",
    ))
    .arg(TaskArg::value(vec![7; 24], b"pickle5".to_vec()))
    .build_normal_task()
}

fn sample_request() -> PushTaskRequest {
    PushTaskRequest {
        intended_worker_id: WorkerId::from_array([3; 28]),
        task_spec: sample_spec(),
        sequence_number: 5,
        client_processed_up_to: 4,
        resource_mapping: Vec::new(),
    }
}

fn check<M: Message>(sample: &M, input: &[u8], mutate: bool) {
    let mut bytes = AlignedBytes::with_capacity(input.len().max(16));
    if mutate {
        let valid = spec::to_vec(sample).expect("sample encodes");
        bytes.extend_from_slice(&valid);
        for (b, x) in bytes.iter_mut().zip(input) {
            *b ^= x;
        }
    } else {
        bytes.extend_from_slice(input);
    }
    if let Ok(archived) = spec::access::<M>(&bytes) {
        let owned = spec::deserialize::<M>(archived).expect("validated bytes deserialize");
        let again = spec::to_vec(&owned).expect("a decoded message encodes");
        spec::access::<M>(&again).expect("a re-encoded message validates");
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mutate = sel & 0x80 != 0;
    match sel % 3 {
        0 => check(&sample_spec(), rest, mutate),
        1 => check(&sample_request(), rest, mutate),
        _ => check(&PushTaskReply::default(), rest, mutate),
    }
});
