//! Ray's sequence-number ordering protocol, as pure logic (no I/O, no clock, no threads).
//!
//! Ray runs one caller's tasks on an actor in submission order even when their
//! arguments resolve out of order, requests are re-sent after a reconnect, or replies
//! come back out of order. Two halves cooperate:
//!
//! | side | type | Ray |
//! | --- | --- | --- |
//! | submitter, one per actor | [`ActorSubmitQueue`] | `ClientQueue` / `SequentialActorSubmitQueue` in `CoreWorkerDirectActorTaskSubmitter` (`SubmitTask`, `SendPendingTasks`, `PushActorTask`, `ConnectActor`, `DisconnectActor`, `HandlePushTaskReply`) and `CoreWorkerClient` (`PushActorTask`, `SendRequests`) |
//! | receiver, one per caller | [`ActorSchedulingQueue`] | `ActorSchedulingQueue` (`Add`, `ScheduleRequests`, `OnSequencingWaitTimeout`) |
//! | receiver, normal tasks | [`NormalSchedulingQueue`] | `NormalSchedulingQueue` (`Add`, `ScheduleRequests`, `CancelTaskIfFound`, `Steal`) |
//!
//! The submitter numbers tasks by *actor counter*, sends each one only when every
//! earlier counter has been sent, stamps `sequence_number = actor_counter −
//! caller_starts_at` and `client_processed_up_to` (the highest sequence number it has a
//! reply for), and limits the bytes in flight. The receiver executes `sequence_number`
//! 0, 1, 2, … in order, buffers gaps, rejects what the client already processed, and
//! gives up on a gap after a reorder wait. A `sequence_number` of `-1` bypasses
//! ordering. `docs/ordering.md` walks through a full example.
//!
//! Both halves are event driven: methods take the event and the current time where
//! timing matters, and return what must happen next, so the transport (shared-memory
//! ring or TCP) drives them from its event loop and tests drive them directly.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use shmwire::ordering::{ActorSchedulingQueue, ActorSubmitQueue, Delivery, ReplyOutcome,
//!                         SubmitEvent, TaskMeta};
//!
//! // Submitter: two tasks; the second one's arguments are ready first.
//! let mut submit = ActorSubmitQueue::new();
//! submit.connect();
//! let meta = |c| TaskMeta { actor_counter: c, inline_arg_bytes: 0, max_retries: 0 };
//! assert!(submit.submit(meta(0), "a", false).unwrap().is_empty());
//! assert!(submit.submit(meta(1), "b", true).unwrap().is_empty()); // waits for counter 0
//! let sends: Vec<_> = submit
//!     .dependencies_resolved(0)
//!     .into_iter()
//!     .filter_map(|e| match e { SubmitEvent::Send(r) => Some(r), _ => None })
//!     .collect();
//! assert_eq!(sends.iter().map(|r| r.sequence_number).collect::<Vec<_>>(), [0, 1]);
//!
//! // Receiver: the requests arrive in the opposite order and still run in order.
//! let now = Instant::now();
//! let mut recv = ActorSchedulingQueue::new(Duration::from_secs(30));
//! for r in sends.iter().rev() {
//!     recv.add(r.sequence_number, r.client_processed_up_to, r.task, true, now);
//! }
//! assert_eq!(recv.poll(now), [Delivery::Execute("a"), Delivery::Execute("b")]);
//!
//! // Replies may come back in any order.
//! submit.on_reply(sends[1].id, ReplyOutcome::Ok);
//! assert_eq!(submit.next_task_reply_position(), 0);
//! submit.on_reply(sends[0].id, ReplyOutcome::Ok);
//! assert_eq!(submit.next_task_reply_position(), 2);
//! ```

mod actor_queue;
mod normal_queue;
pub(crate) mod seq_map;
mod submit_queue;

pub use actor_queue::{
    ActorSchedulingQueue, Decision, Delivery, RejectReason, DEFAULT_REORDER_WAIT, STALE_RPC_MESSAGE,
};
pub use normal_queue::NormalSchedulingQueue;
pub use submit_queue::{
    request_size_in_bytes, ActorState, ActorSubmitQueue, PushRequest, ReplyOutcome, RequestId,
    SubmitConfig, SubmitError, SubmitEvent, TaskFailure, TaskMeta, BASE_REQUEST_SIZE,
    EXCESS_QUEUEING_WARN_THRESHOLD, MAX_BYTES_IN_FLIGHT,
};
