//! Ray's task messages as rkyv 0.8 types, read in place and validated.
//!
//! A [`PushTaskRequest`] (carrying a [`TaskSpec`]) goes from a submitter to
//! the worker that runs it; a [`PushTaskReply`] comes back. Both are encoded
//! with rkyv straight into a byte region the transport hands out (a ring
//! reservation in shared memory or a socket buffer) and read by the receiver
//! *in place*: [`access`] checks the bytes with bytecheck and returns an
//! `&ArchivedPushTaskRequest` that points into the region, without copying or
//! deserializing anything. Shared memory is untrusted input, so validation is
//! the default; [`access_unchecked`] is the explicitly named fast path for a
//! trusted peer.
//!
//! # Map
//!
//! * [`message`]: [`TaskSpec`] and its parts ([`TaskArg`], [`Address`],
//!   [`ActorTaskSpec`], [`ActorCreationTaskSpec`], [`Resource`], …),
//!   [`PushTaskRequest`], [`PushTaskReply`].
//! * [`function_descriptor`]: [`FunctionDescriptor`] (Java / Python / Cpp as
//!   in Ray, plus Rust) and its Ray renderings (`ToString` via `Display`,
//!   `call_site_string`, `call_string`, `default_task_name`).
//! * [`builder`]: [`TaskSpecBuilder`], deriving ids, names and return counts as
//!   Ray's `BuildCommonTaskSpec` / `SubmitActorTask` do.
//! * [`encoding`]: [`Encoder`], [`access`], [`access_unchecked`],
//!   [`from_bytes`], [`to_vec`], errors [`EncodeError`] / [`DecodeError`].
//!
//! # Example
//!
//! ```
//! use shmwire::ids::{JobId, TaskId, WorkerId};
//! use shmwire::spec::{self, Encoder, FunctionDescriptor, PushTaskRequest, TaskSpecBuilder, AlignedBytes};
//!
//! let job = JobId::from_int(7);
//! let spec = TaskSpecBuilder::new(FunctionDescriptor::python("app", "", "work", "h"))
//!     .job_id(job)
//!     .parent(TaskId::for_driver_task(job), 0)
//!     .build_normal_task();
//! let request = PushTaskRequest {
//!     intended_worker_id: WorkerId::nil(),
//!     task_spec: spec,
//!     sequence_number: PushTaskRequest::UNORDERED,
//!     client_processed_up_to: -1,
//!     resource_mapping: vec![],
//! };
//!
//! let mut region = AlignedBytes::new();
//! region.resize(4096, 0);
//! let mut encoder = Encoder::new();
//! let n = encoder.encode_into(&request, region.as_mut_slice())?;
//!
//! let archived = spec::access::<PushTaskRequest>(&region[..n])?;
//! assert_eq!(archived.task_spec.name.as_str(), "work()");
//! assert_eq!(archived.task_spec.return_id(0).object_index(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/messages.md` for the byte layout and measured costs.

pub mod builder;
pub mod encoding;
pub mod function_descriptor;
pub mod message;
pub(crate) mod stamp;

/// Whether `a` and `b` hold the same bytes; equal empty slices are equal
/// without a call to `memcmp`.
///
/// The hot paths compare fields that are usually empty (metadata, status
/// messages, concurrency group names). An empty `Vec` or `String` points at
/// a dangling address in the unmapped first page (`0x1`), and glibc's
/// AVX-512 `memcmp` (`__memcmp_evex_movbe`) compares short slices with a
/// masked load that takes a microcode assist when its window lies on an
/// unmapped page, even with an all-zero mask: 88 ns per comparison of two
/// empty slices on the Xeon of `docs/PERFORMANCE.md`, against 1 ns for the
/// same call on mapped memory. `a == b` on slices calls `memcmp` whenever
/// the lengths are equal, zero included.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

pub use builder::{ActorTaskTarget, TaskSpecBuilder};
pub use encoding::{
    access, access_unchecked, align16, deserialize, from_bytes, to_vec, AlignedBytes, DecodeError,
    EncodeError, Encoder, Message, MESSAGE_ALIGN,
};
pub use function_descriptor::{
    ArchivedCppFunctionDescriptor, ArchivedFunctionDescriptor, ArchivedJavaFunctionDescriptor,
    ArchivedPythonFunctionDescriptor, ArchivedRustFunctionDescriptor, CppFunctionDescriptor,
    FunctionDescriptor, JavaFunctionDescriptor, PythonFunctionDescriptor, RustFunctionDescriptor,
};
pub use message::{
    ActorCreationTaskSpec, ActorTaskSpec, Address, ArchivedActorCreationTaskSpec,
    ArchivedActorTaskSpec, ArchivedAddress, ArchivedConcurrencyGroup, ArchivedInlineData,
    ArchivedInlineValue, ArchivedObjectReference, ArchivedObjectReferenceCount,
    ArchivedPushTaskReply, ArchivedPushTaskRequest, ArchivedResource, ArchivedResourceId,
    ArchivedResourceMapEntry, ArchivedReturnObject, ArchivedReturnValue, ArchivedRpcStatus,
    ArchivedRuntimeEnv, ArchivedTaskArg, ArchivedTaskSpec, ConcurrencyGroup, InlineData,
    InlineValue, Language, ObjectReference, ObjectReferenceCount, PushTaskReply, PushTaskRequest,
    Resource, ResourceId, ResourceMapEntry, ReturnObject, ReturnValue, RpcStatus, RuntimeEnv,
    StatusCode, TaskArg, TaskSpec, TaskType,
};

/// Shapes a receiver keeps per connection at its sender's request
/// (`transport::FrameTag::Shape`; `docs/worker.md`, "Compact requests"): a
/// frame naming a slot at or above this is a protocol violation.
pub const SHAPE_SLOTS: u8 = 4;

#[cfg(test)]
mod tests {
    use super::same_bytes;

    /// `same_bytes` is slice equality, empty and dangling slices included.
    #[test]
    fn same_bytes_is_equality() {
        let empty_vec: Vec<u8> = Vec::new();
        let empty_string = String::new();
        let cases: [(&[u8], &[u8]); 7] = [
            (&empty_vec, &[]),
            (empty_string.as_bytes(), &empty_vec),
            (b"a", b"a"),
            (b"a", b"b"),
            (b"a", b""),
            (b"", b"a"),
            (b"concurrency group", b"concurrency group"),
        ];
        for (a, b) in cases {
            assert_eq!(same_bytes(a, b), a == b, "{a:?} vs {b:?}");
        }
    }
}
