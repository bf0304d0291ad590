//! shmwire — Ray-style tasks between worker processes.
//!
//! Workers on one host hand each other zero-copy, rkyv-serialized
//! [`TaskSpec`](spec::TaskSpec)s through lock-free SPSC rings in shared
//! memory, woken by a futex or an eventfd only when a side sleeps; actor tasks
//! keep Ray's sequence-number ordering; a peer on another node gets the same
//! frames over TCP (mio). `cargo run --release --bin shmwire -- demo` (the
//! `shmwire-cli` package) runs two worker processes through every layer.
//!
//! # Map (bottom up)
//!
//! Each module uses only the ones above it in this table (`tests/layering.rs`
//! keeps it so; `docs/layers.md` draws the picture). Raw system calls live in
//! a private `sys` module below all of them.
//!
//! | module | what it owns | main types |
//! | --- | --- | --- |
//! | [`sync`] | std atomics normally, loom's under `--cfg shmwire_loom` | |
//! | [`ids`] | Ray-shaped IDs and their derivations | [`JobId`](ids::JobId), [`ActorId`](ids::ActorId), [`TaskId`](ids::TaskId), [`ObjectId`](ids::ObjectId), [`WorkerId`](ids::WorkerId), [`NodeId`](ids::NodeId) |
//! | [`spec`] | the messages as rkyv types; encode in place, validated access | [`TaskSpec`](spec::TaskSpec), [`TaskSpecBuilder`](spec::TaskSpecBuilder), [`FunctionDescriptor`](spec::FunctionDescriptor), [`PushTaskRequest`](spec::PushTaskRequest), [`PushTaskReply`](spec::PushTaskReply), [`Encoder`](spec::Encoder), [`access`](spec::access) |
//! | [`shm`] | named segments in a per-session directory, stale cleanup | [`Session`](shm::Session), [`Segment`](shm::Segment) |
//! | [`wake`] | how a side waits: spin, yield, futex, eventfd | [`WaitStrategy`](wake::WaitStrategy), [`Waiter`](wake::Waiter) |
//! | [`ring`] | the lock-free SPSC byte ring of 16-byte aligned frames | [`Ring`](ring::Ring), [`Producer`](ring::Producer), [`Consumer`](ring::Consumer), [`WriteGrant`](ring::WriteGrant), [`ReadFrame`](ring::ReadFrame) |
//! | [`transport`] | duplex connections over shm or TCP, one event loop for many peers | [`Connection`](transport::Connection), [`Listener`](transport::Listener), [`Connector`](transport::Connector), [`Mux`](transport::Mux), [`WorkerLookup`](transport::WorkerLookup) |
//! | [`ordering`] | Ray's actor-task sequence numbers, both sides | [`ActorSubmitQueue`](ordering::ActorSubmitQueue), [`ActorSchedulingQueue`](ordering::ActorSchedulingQueue), [`NormalSchedulingQueue`](ordering::NormalSchedulingQueue) |
//! | [`store`] | plasma-like object store: an arena in shared memory, create/seal/get zero-copy, LRU eviction, fallback files, dead-client cleanup, remote pull between nodes over TCP | [`StoreService`](store::StoreService), [`StoreClient`](store::StoreClient), [`ObjectBuilder`](store::ObjectBuilder), [`ObjectBuffer`](store::ObjectBuffer), [`ObjectTable`](store::ObjectTable), [`PullServer`](store::PullServer) |
//! | [`node`] | a host's session: the directory of workers, the session token | [`Directory`](node::Directory), [`load_or_create_token`](node::load_or_create_token) |
//! | [`worker`] | the CoreWorker analogue: registry, actors, tasks, `get`/`wait`, pending tasks, stats | [`Worker`](worker::Worker), [`CoreWorker`](worker::CoreWorker), [`ActorHandle`](worker::ActorHandle), [`ObjectRef`](worker::ObjectRef) |
//!
//! `docs/` in the repository explains the message layout, the memory layout,
//! every atomic ordering pair and the wake-up handshake, the transport's
//! handshake and liveness, the ordering protocol and the measured
//! performance.
//!
//! # Example
//!
//! Build an actor task the way Ray's `SubmitActorTask` does, encode its
//! `PushTaskRequest` in place into a ring, and read it back on the other side
//! validated, without deserializing (here both halves live in one process on
//! heap memory; across processes the ring lives in a [`shm::Segment`] and
//! [`transport`] wires it up):
//!
//! ```
//! use shmwire::ids::{ActorId, JobId, TaskId, WorkerId};
//! use shmwire::ring::Ring;
//! use shmwire::spec::{self, ActorTaskTarget, Encoder, FunctionDescriptor, PushTaskRequest,
//!                     TaskArg, TaskSpecBuilder};
//!
//! let job = JobId::from_int(1);
//! let driver = TaskId::for_driver_task(job);
//! let actor = ActorId::of(job, driver, 1);
//! let f = FunctionDescriptor::python("pong", "RolloutWorker", "compute_gradient", "");
//! let task = TaskSpecBuilder::new(f)
//!     .job_id(job)
//!     .parent(driver, 1)
//!     .arg(TaskArg::value(b"weights".to_vec(), Vec::new()))
//!     .num_returns(1)
//!     .build_actor_task(ActorTaskTarget::first(actor));
//! assert_eq!(task.name, "RolloutWorker.compute_gradient()");
//! assert_eq!(task.num_returns, 2); // one extra return: the actor cursor
//!
//! let request = PushTaskRequest {
//!     intended_worker_id: WorkerId::from_random(),
//!     task_spec: task,
//!     sequence_number: 0,
//!     client_processed_up_to: -1,
//!     resource_mapping: Vec::new(),
//! };
//!
//! let (mut producer, mut consumer) = Ring::heap(1 << 16)?;
//! let mut encoder = Encoder::new();
//! let len = encoder.encoded_len(&request)?;
//! let mut grant = producer.reserve(len)?; // 16-byte aligned, in the ring
//! encoder.encode_into(&request, &mut grant)?;
//! grant.commit_all();
//!
//! let frame = consumer.peek()?.expect("a frame");
//! let archived = spec::access::<PushTaskRequest>(&frame)?; // bytecheck-validated
//! assert_eq!(archived.sequence_number(), 0);
//! assert_eq!(archived.task_spec.function_descriptor.call_string(), "RolloutWorker.compute_gradient");
//! frame.release();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod ids;
#[cfg(not(shmwire_loom))]
pub mod node;
pub mod ordering;
pub mod ring;
pub mod shm;
pub mod spec;
// Under `shmwire_loom` only the store's lock-free index is built.
pub mod store;
pub mod sync;
pub(crate) mod sys;
// The transport is OS plumbing (sockets, SCM_RIGHTS, mio) around the ring;
// the loom build (`--cfg shmwire_loom`) models the ring and the wake-up
// handshake only, where eventfds are modelled and have no file descriptor.
#[cfg(not(shmwire_loom))]
pub mod transport;
pub mod wake;
// The worker runtime sits on the transport.
#[cfg(not(shmwire_loom))]
pub mod worker;
/// Under `shmwire_loom` only the owner's reference counting (modelled in
/// `loom-tests/tests/ref_count.rs`).
#[cfg(shmwire_loom)]
pub mod worker {
    #[path = "ref_count.rs"]
    pub mod ref_count;
}

/// `start + after`, saturating: an `after` too large for the clock (e.g.
/// `Duration::MAX`, "no limit") gives a deadline a century away instead of
/// the panic of `Instant + Duration` overflowing. Every deadline made from
/// a caller's timeout or a configured duration goes through it.
#[inline]
pub(crate) fn deadline_after(
    start: std::time::Instant,
    after: std::time::Duration,
) -> std::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
    start
        .checked_add(after)
        .or_else(|| start.checked_add(CENTURY))
        .unwrap_or(start)
}

/// `err` with every cause behind it ([`std::error::Error::source`]),
/// joined by `": "`: the one form in which shmwire prints an error (the
/// node's log, the CLI), so an OS error (`No such file or directory`, …)
/// is never lost behind a message like "reading the worker directory …".
/// A cause whose text the message already shows (errors that print their
/// source themselves) is not repeated.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    // Bounded: a (buggy) cyclic chain must not loop forever.
    for _ in 0..16 {
        let Some(cause) = next else { break };
        let t = cause.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        next = cause.source();
    }
    text
}

/// `text` as it may go to a terminal: every control character except a
/// newline and a tab written as its escape (`\u{1b}` for ESC, `\r`, …),
/// so a name read from a session directory — a file name, a scribbled
/// entry — cannot move the cursor, clear the screen or retitle the window
/// of whoever reads shmwire's output. Text without such characters is
/// returned as it is.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    escape_controls(text, |c| c.is_control() && c != '\n' && c != '\t')
}

/// `name` — one name or value read from a session directory or a shared
/// statistics area (a file name, a handler's name), to be put inside a
/// line — with every character but printable ASCII and the space escaped
/// (`\n`, `\t`, `\u{202e}`, …) and a backslash too (`\\`), so it stays
/// on its line, nothing in it turns the rest of the line around, and no
/// two names print alike: a file named
/// `"x\n  process 1-…: alive"` cannot add a line of its own to `shmwire
/// inspect` or a cleanup report. A name that is not UTF-8 has each byte
/// of its invalid sequences written as `\xNN` (not replaced with `�`,
/// which would make two names look alike). Plain names are returned as
/// they are.
pub fn one_line<S: AsRef<std::ffi::OsStr> + ?Sized>(name: &S) -> std::borrow::Cow<'_, str> {
    // A backslash is written `\\` too: `\n` and `\xff` in the result then
    // only ever stand for a newline and a byte (the attack on `1563086`:
    // a name with a real backslash-n printed like one with a newline).
    // And every character outside printable ASCII: invisible ones (U+200B),
    // bidirectional overrides (U+202E reversed the rest of the line), line
    // separators (U+2028) and letters that look like ASCII ones (Cyrillic
    // `а`) would make names print alike or move what follows them (the
    // attack on `58273f5`). shmwire's own names are ASCII.
    let escape = |c: char| !(c.is_ascii_graphic() || c == ' ') || c == '\\';
    let bytes = name.as_ref().as_encoded_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape_controls(text, escape);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape_controls(chunk.valid(), escape));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` with every character `escape` picks written as its escape.
fn escape_controls(text: &str, escape: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod terminal_safe_tests {
    #[test]
    fn control_characters_are_escaped_and_plain_text_borrowed() {
        let evil = "evil\x1b[2J\x1b[31mPWNED\x07\r\nline\ttab";
        assert_eq!(
            super::terminal_safe(evil),
            "evil\\u{1b}[2J\\u{1b}[31mPWNED\\u{7}\\r\nline\ttab"
        );
        assert!(matches!(
            super::terminal_safe("plain\ntext"),
            std::borrow::Cow::Borrowed("plain\ntext")
        ));
        assert_eq!(super::terminal_safe("\u{9b}x"), "\\u{9b}x");
    }

    #[test]
    fn one_line_escapes_newlines_and_bytes_that_are_not_utf8() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        assert!(matches!(
            super::one_line(OsStr::new("proc-1-ab.lock")),
            std::borrow::Cow::Borrowed("proc-1-ab.lock")
        ));
        assert_eq!(
            super::one_line(OsStr::new("x\n  process 1: alive\t\x1b")),
            "x\\n  process 1: alive\\t\\u{1b}"
        );
        assert_eq!(
            super::one_line(OsStr::from_bytes(b"a\xff\xfe\nb\xc3\xa9")),
            "a\\xff\\xfe\\nb\\u{e9}"
        );
        // Invisible, reordering and look-alike characters are escaped.
        assert_eq!(
            super::one_line(OsStr::new("seg\u{200b}A x\u{202e}y \u{2028} \u{430}")),
            "seg\\u{200b}A x\\u{202e}y \\u{2028} \\u{430}"
        );
        // A name spelling an escape out differs from the one it spells.
        assert_eq!(super::one_line(OsStr::new("a\\xff\\n")), "a\\\\xff\\\\n");
    }
}
