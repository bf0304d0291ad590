//! The submitter's per-actor queue (Ray's `ClientQueue` + `SequentialActorSubmitQueue`
//! driven by `CoreWorkerDirectActorTaskSubmitter`, and the byte-limited send queue of
//! `CoreWorkerClient`).
//!
//! [`ActorSubmitQueue`] is pure bookkeeping: every method takes an event (a task was
//! submitted, its dependencies resolved, a reply arrived, the actor connected,
//! disconnected or died) and returns the [`SubmitEvent`]s it causes, in order: requests
//! to write to the connection now ([`SubmitEvent::Send`]), tasks that finished or failed
//! for good, retries and excess-queueing warnings. It never does I/O.
//!
//! The protocol, as in Ray:
//!
//! * Tasks are keyed by their **actor counter** (0, 1, 2, … per caller and actor, fixed at
//!   submission before dependencies resolve, so resolution order cannot reorder them).
//! * `SendPendingTasks` sends the lowest queued counter while it is
//!   `<= next_send_position` and its dependencies are resolved; a counter below
//!   `next_send_position` was sent before and is re-sent with `skip_queue`.
//! * `PushActorTask` stamps `sequence_number = actor_counter − caller_starts_at`; on
//!   every (re)connection `caller_starts_at = next_task_reply_position`, so the new
//!   connection (a fresh receiver queue) sees sequence numbers from 0 again.
//! * `skip_queue` requests go out at once with `client_processed_up_to = -1` and are not
//!   counted against the byte limit; the others enter the connection's send queue
//!   (`SendRequests`): while fewer than [`MAX_BYTES_IN_FLIGHT`] bytes are in flight the
//!   head is sent, its size ([`request_size_in_bytes`]: 1024 + inline argument bytes)
//!   added, and `client_processed_up_to` stamped with the connection's
//!   `max_finished_seq_no`. The check is made *before* each send, as Ray's `while`
//!   loop does, so the last request sent may take the total past the limit (a single
//!   request larger than the limit is never stuck).
//! * **`client_processed_up_to`** (Ray's `max_finished_seq_no_`, see
//!   [`ActorSubmitQueue::client_processed_up_to`]) is the highest `sequence_number`
//!   among requests of the current connection that went through the send queue and got
//!   a reply (any reply: success or error). It starts at -1 on every connection. It is
//!   stamped when a request leaves the send queue, not when it enters it.
//! * Replies may come back in any order. Each completed counter enters
//!   `out_of_order_completed_tasks`, and `next_task_reply_position` advances over the
//!   contiguous completed prefix.
//! * After a reconnect (actor restart), completed tasks that are still out of order
//!   (above `next_task_reply_position`) are re-sent with `skip_execution` (and
//!   `skip_queue`), so the new receiver can move its `next_seq_no` past them without
//!   running them again; their replies count as completions whatever their status.
//! * The excess-queueing warning fires in `PushActorTask` when
//!   `sequence_number − client_processed_up_to >= threshold` (5000 at first); the
//!   threshold then doubles. It is logged with `tracing::warn!` and returned as
//!   [`SubmitEvent::ExcessQueueing`].
//! * A failed request (error reply or a connection that went away) is retried while the
//!   task has retries left (`max_retries`, `-1` = forever) and the actor is not dead:
//!   it goes back into the queue with its counter and is re-sent with `skip_queue`.
//!   Otherwise it fails ([`SubmitEvent::Failed`]) and counts as completed for the reply
//!   position. When the actor dies, queued tasks and tasks handed to the connection
//!   fail, and later submissions fail at once.
//!
//! Deliberate differences from Ray (see `docs/ordering.md`):
//!
//! * On a new connection, tasks still in flight on the old one are failed (or queued for
//!   retry) *before* `caller_starts_at` is reset, so a task that failed for good is
//!   accounted for in `next_task_reply_position` (or re-sent with `skip_execution`);
//!   Ray fails them just after, which can leave a gap on the new receiver.
//! * Re-sending an already-sent counter does not advance `next_send_position` (Ray's
//!   `PopNextTaskToSend` increments it on every pop, which after one retry makes every
//!   later task bypass the byte limit with `skip_queue`).
//! * Ray's warning threshold is shared by all actors of one submitter; here each queue
//!   has its own ([`SubmitConfig::excess_queueing_warn_threshold`]).
//! * Ray's grace period waiting for death information (`wait_for_death_info_tasks`) and
//!   the `num_restarts` filter of stale connect/disconnect notifications belong to the
//!   caller of this queue.

use std::collections::VecDeque;

use super::seq_map::SeqMap;

/// Ray's `kMaxBytesInFlight`: 16 MiB of requests in flight per connection.
pub const MAX_BYTES_IN_FLIGHT: u64 = 16 * 1024 * 1024;

/// Ray's `kBaseRequestSize`: the estimated size of a request without its arguments.
pub const BASE_REQUEST_SIZE: u64 = 1024;

/// Ray's `actor_excess_queueing_warn_threshold` default: the first warning threshold.
pub const EXCESS_QUEUEING_WARN_THRESHOLD: i64 = 5000;

/// Ray's `RequestSizeInBytes`: [`BASE_REQUEST_SIZE`] plus the inline argument bytes.
pub fn request_size_in_bytes(inline_arg_bytes: u64) -> u64 {
    BASE_REQUEST_SIZE.saturating_add(inline_arg_bytes)
}

/// What the queue needs to know about a task besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMeta {
    /// The task's actor counter (`TaskSpec::ActorCounter`), 0-based per caller and actor.
    pub actor_counter: u64,
    /// Total bytes of arguments passed inline in the request.
    pub inline_arg_bytes: u64,
    /// Retries allowed after a failed request (`-1` = unlimited, `0` = none).
    pub max_retries: i32,
}

/// Tunables; [`Default`] gives Ray's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitConfig {
    /// Byte budget of requests in flight per connection ([`MAX_BYTES_IN_FLIGHT`]).
    pub max_bytes_in_flight: u64,
    /// First excess-queueing warning threshold ([`EXCESS_QUEUEING_WARN_THRESHOLD`]).
    pub excess_queueing_warn_threshold: i64,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        Self {
            max_bytes_in_flight: MAX_BYTES_IN_FLIGHT,
            excess_queueing_warn_threshold: EXCESS_QUEUEING_WARN_THRESHOLD,
        }
    }
}

/// Identifies one request handed out in [`SubmitEvent::Send`]; pass it back to
/// [`ActorSubmitQueue::on_reply`]. A reply to a request the queue no longer tracks (it
/// belonged to a connection that went away) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    /// The task's actor counter.
    pub actor_counter: u64,
    /// Unique per request within this queue.
    serial: u64,
}

/// One `PushTaskRequest` to write to the connection now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest<T> {
    /// Pass back to [`ActorSubmitQueue::on_reply`] with the reply.
    pub id: RequestId,
    /// `actor_counter − caller_starts_at`.
    pub sequence_number: i64,
    /// The highest sequence number answered on this connection, or `-1` (always `-1`
    /// for `skip_queue` requests).
    pub client_processed_up_to: i64,
    /// The request was sent before and bypasses the byte-limited send queue.
    pub skip_queue: bool,
    /// The task already completed: the receiver must only advance past it, not run it.
    pub skip_execution: bool,
    /// Estimated request size ([`request_size_in_bytes`]).
    pub size_bytes: u64,
    /// The task payload.
    pub task: T,
}

/// How a request ended on the submitter's side: the peer answered, the
/// request failed, or the receiver cancelled it. (The status *on the wire*
/// is [`crate::spec::RpcStatus`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// The task ran (its own result, success or application error, is in the reply).
    Ok,
    /// The request failed: the connection broke, the worker died, or the receiver
    /// rejected it ("client cancelled stale rpc").
    Error,
    /// The receiver cancelled the task before it ran (Ray's `SchedulingCancelled`).
    Cancelled,
}

/// Why a task failed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskFailure {
    /// The actor is permanently dead (Ray's `ACTOR_DIED`).
    ActorDied,
    /// A request failed and no retries were left (Ray's `ACTOR_UNAVAILABLE`).
    ActorUnavailable,
    /// The receiver cancelled the task before it ran (Ray's `TASK_CANCELLED`).
    Cancelled,
}

/// What the caller must do after an event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitEvent<T> {
    /// Write this request to the actor's connection now.
    Send(PushRequest<T>),
    /// The task ran; hand the reply to the task finisher.
    Completed {
        /// The task's actor counter.
        actor_counter: u64,
        /// The task payload.
        task: T,
    },
    /// The task failed for good.
    Failed {
        /// The task's actor counter.
        actor_counter: u64,
        /// The task payload.
        task: T,
        /// Why.
        error: TaskFailure,
    },
    /// A request failed and the task was queued again (it is re-sent with `skip_queue`).
    Retrying {
        /// The task's actor counter.
        actor_counter: u64,
        /// Retries left after this one (`-1` = unlimited).
        retries_left: i32,
    },
    /// Too many requests are queued at the actor (also logged with `tracing::warn!`).
    ExcessQueueing {
        /// `sequence_number − client_processed_up_to` of the request being pushed.
        num_queued: i64,
        /// The threshold it reached; the next warning needs twice as many.
        threshold: i64,
    },
}

/// The actor's connection state as this queue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorState {
    /// Not connected yet (the actor is being created): tasks queue up.
    Pending,
    /// Connected: tasks are sent.
    Alive,
    /// Disconnected, waiting for the actor to restart: tasks queue up.
    Restarting,
    /// Permanently dead: every task fails.
    Dead,
}

/// A submission the queue refused; the task is handed back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError<T> {
    /// A task with this counter is already queued or in flight.
    #[error("actor counter {actor_counter} is already queued or in flight")]
    CounterInUse {
        /// The offending counter.
        actor_counter: u64,
        /// The refused task.
        task: T,
    },
    /// A task with this counter already completed.
    #[error("actor counter {actor_counter} already completed")]
    CounterCompleted {
        /// The offending counter.
        actor_counter: u64,
        /// The refused task.
        task: T,
    },
}

#[derive(Debug)]
struct Queued<T> {
    task: T,
    meta: TaskMeta,
    deps_resolved: bool,
    retries_left: i32,
}

/// A task on its way into `push_actor_task`.
struct Outgoing<T> {
    task: T,
    meta: TaskMeta,
    retries_left: i32,
}

#[derive(Debug)]
struct InFlight<T> {
    serial: u64,
    task: T,
    meta: TaskMeta,
    retries_left: i32,
    sequence_number: i64,
    size_bytes: u64,
    skip_queue: bool,
    skip_execution: bool,
    /// Handed out in a `Send` (false while waiting in the byte-limited send queue).
    on_wire: bool,
}

impl<T: Clone> InFlight<T> {
    /// Marks this request handed out and returns its `Send` event.
    fn send(&mut self, counter: u64, client_processed_up_to: i64) -> SubmitEvent<T> {
        self.on_wire = true;
        SubmitEvent::Send(PushRequest {
            id: RequestId {
                actor_counter: counter,
                serial: self.serial,
            },
            sequence_number: self.sequence_number,
            client_processed_up_to,
            skip_queue: self.skip_queue,
            skip_execution: self.skip_execution,
            size_bytes: self.size_bytes,
            task: self.task.clone(),
        })
    }
}

/// Ray's `CoreWorkerClient` state for one connection.
#[derive(Debug)]
struct Connection {
    max_finished_seq_no: i64,
    bytes_in_flight: u64,
    /// Counters waiting for byte budget, in push order.
    send_queue: VecDeque<u64>,
}

/// The submitter's queue for one actor (see the module docs).
#[derive(Debug)]
pub struct ActorSubmitQueue<T> {
    config: SubmitConfig,
    state: ActorState,
    /// Ray's `requests`: tasks not yet handed to a connection, by counter.
    requests: SeqMap<Queued<T>>,
    /// Tasks handed to the connection (sent or in its send queue), by counter.
    in_flight: SeqMap<InFlight<T>>,
    /// Completed counters above `next_task_reply_position`, kept for a
    /// `skip_execution` re-send.
    out_of_order_completed: SeqMap<(T, TaskMeta)>,
    next_send_position: u64,
    next_task_reply_position: u64,
    caller_starts_at: u64,
    conn: Option<Connection>,
    next_serial: u64,
    next_queueing_warn_threshold: i64,
    num_connections: u64,
}

impl<T: Clone> Default for ActorSubmitQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> ActorSubmitQueue<T> {
    /// A queue with Ray's limits, not connected yet.
    pub fn new() -> Self {
        Self::with_config(SubmitConfig::default())
    }

    /// A queue with the given limits, not connected yet.
    pub fn with_config(config: SubmitConfig) -> Self {
        Self {
            config,
            state: ActorState::Pending,
            requests: SeqMap::new(),
            in_flight: SeqMap::new(),
            out_of_order_completed: SeqMap::new(),
            next_send_position: 0,
            next_task_reply_position: 0,
            caller_starts_at: 0,
            conn: None,
            next_serial: 0,
            next_queueing_warn_threshold: config.excess_queueing_warn_threshold,
            num_connections: 0,
        }
    }

    /// Queues a task (Ray's `SubmitTask`) and, if its dependencies are already resolved,
    /// sends whatever can go now. On a dead actor the task fails at once.
    pub fn submit(
        &mut self,
        meta: TaskMeta,
        task: T,
        deps_resolved: bool,
    ) -> Result<Vec<SubmitEvent<T>>, SubmitError<T>> {
        let mut out = Vec::new();
        self.submit_into(meta, task, deps_resolved, &mut out)?;
        Ok(out)
    }

    /// [`submit`](Self::submit) appending its events to `out` (no allocation once
    /// `out` has room: the hot path of a caller that reuses one buffer).
    ///
    /// # Errors
    /// As [`submit`](Self::submit); `out` is left as it was.
    pub fn submit_into(
        &mut self,
        meta: TaskMeta,
        task: T,
        deps_resolved: bool,
        out: &mut Vec<SubmitEvent<T>>,
    ) -> Result<(), SubmitError<T>> {
        let actor_counter = meta.actor_counter;
        if self.state == ActorState::Dead {
            out.push(SubmitEvent::Failed {
                actor_counter,
                task,
                error: TaskFailure::ActorDied,
            });
            return Ok(());
        }
        if deps_resolved
            && actor_counter == self.next_send_position
            && self.requests.is_empty()
            && self.conn.is_some()
        {
            // In order with nothing queued: what queueing it and
            // `send_pending_tasks` would do, without the queue. Counters below
            // `next_send_position` are the only ones in flight or completed,
            // so this one is neither.
            self.next_send_position = actor_counter.saturating_add(1);
            let outgoing = Outgoing {
                task,
                meta,
                retries_left: meta.max_retries,
            };
            self.push_actor_task(outgoing, false, false, out);
            return Ok(());
        }
        if actor_counter < self.next_task_reply_position
            || self.out_of_order_completed.contains_key(actor_counter)
        {
            return Err(SubmitError::CounterCompleted {
                actor_counter,
                task,
            });
        }
        if self.requests.contains_key(actor_counter) || self.in_flight.contains_key(actor_counter) {
            return Err(SubmitError::CounterInUse {
                actor_counter,
                task,
            });
        }
        self.requests.insert(
            actor_counter,
            Queued {
                task,
                meta,
                deps_resolved,
                retries_left: meta.max_retries,
            },
        );
        if deps_resolved {
            self.send_pending_tasks(out);
        }
        Ok(())
    }

    /// The dependencies of the queued task `actor_counter` are resolved: send what can
    /// go now. Does nothing if the task is not queued (e.g. it already failed).
    pub fn dependencies_resolved(&mut self, actor_counter: u64) -> Vec<SubmitEvent<T>> {
        let mut out = Vec::new();
        if let Some(q) = self.requests.get_mut(actor_counter) {
            q.deps_resolved = true;
            self.send_pending_tasks(&mut out);
        }
        out
    }

    /// The actor is reachable on a new connection (Ray's `ConnectActor`): tasks of any
    /// previous connection fail or are queued for retry, `caller_starts_at` becomes
    /// `next_task_reply_position`, out-of-order completed tasks are re-sent with
    /// `skip_execution`, then pending tasks are sent. Ignored on a dead actor.
    pub fn connect(&mut self) -> Vec<SubmitEvent<T>> {
        let mut out = Vec::new();
        if self.state == ActorState::Dead {
            return out;
        }
        if self.conn.take().is_some() {
            self.fail_in_flight(&mut out);
        }
        self.conn = Some(Connection {
            max_finished_seq_no: -1,
            bytes_in_flight: 0,
            send_queue: VecDeque::new(),
        });
        self.num_connections += 1;
        self.state = ActorState::Alive;
        tracing::debug!(
            from = self.caller_starts_at,
            to = self.next_task_reply_position,
            "resetting caller_starts_at"
        );
        self.caller_starts_at = self.next_task_reply_position;
        self.resend_out_of_order_completed_tasks(&mut out);
        self.send_pending_tasks(&mut out);
        out
    }

    /// The connection is gone (Ray's `DisconnectActor`). With `dead == false` the actor
    /// is restarting: tasks handed to the connection are retried (if allowed) or fail,
    /// queued tasks wait for [`connect`](Self::connect). With `dead == true` every queued
    /// and in-flight task fails and later submissions fail at once.
    pub fn disconnect(&mut self, dead: bool) -> Vec<SubmitEvent<T>> {
        let mut out = Vec::new();
        if self.state == ActorState::Dead {
            return out;
        }
        self.conn = None;
        self.state = if dead {
            ActorState::Dead
        } else {
            ActorState::Restarting
        };
        self.fail_in_flight(&mut out);
        if dead {
            for (actor_counter, q) in std::mem::take(&mut self.requests) {
                out.push(SubmitEvent::Failed {
                    actor_counter,
                    task: q.task,
                    error: TaskFailure::ActorDied,
                });
            }
        }
        out
    }

    /// Ray's `FailOrRetryPendingTask` with `ACTOR_UNAVAILABLE`, for every
    /// queued task — waiting for a connection, or for its dependencies —
    /// of an actor that could not be reached for as long as its caller
    /// waits, though it may live on (Ray fails or retries the tasks of an
    /// unreachable actor and keeps the actor). A task with retries left
    /// (`max_retries`; `-1` = forever) uses one and stays queued
    /// ([`SubmitEvent::Retrying`]): the caller tries to reach the actor
    /// again for it. Any other fails with [`TaskFailure::ActorUnavailable`]
    /// and counts as completed for the ordering (as a task whose retries
    /// ran out does, so a later connection starts past it). The state is
    /// unchanged, and later submissions queue again. Nothing is in flight
    /// then: call after [`disconnect`](Self::disconnect)`(false)`. Ignored
    /// on a dead actor.
    pub fn fail_or_retry_queued_unavailable(&mut self) -> Vec<SubmitEvent<T>> {
        let mut out = Vec::new();
        if self.state == ActorState::Dead {
            return out;
        }
        for (actor_counter, mut q) in std::mem::take(&mut self.requests) {
            if q.retries_left != 0 {
                if q.retries_left > 0 {
                    q.retries_left -= 1;
                }
                out.push(SubmitEvent::Retrying {
                    actor_counter,
                    retries_left: q.retries_left,
                });
                self.requests.insert(actor_counter, q);
                continue;
            }
            out.push(SubmitEvent::Failed {
                actor_counter,
                task: q.task.clone(),
                error: TaskFailure::ActorUnavailable,
            });
            // Never to be sent: the next task goes out after it.
            self.next_send_position = self.next_send_position.max(actor_counter.saturating_add(1));
            self.mark_seqno_completed(q.task, q.meta);
        }
        out
    }

    /// A reply (or a definitive failure) for a request handed out in
    /// [`SubmitEvent::Send`]. Frees its bytes, sends what the byte budget now allows,
    /// then completes, fails or retries the task. Replies for requests the queue no
    /// longer tracks are ignored (empty result).
    pub fn on_reply(&mut self, id: RequestId, status: ReplyOutcome) -> Vec<SubmitEvent<T>> {
        let mut out = Vec::new();
        self.on_reply_into(id, status, &mut out);
        out
    }

    /// [`on_reply`](Self::on_reply) appending its events to `out` (no allocation once
    /// `out` has room).
    pub fn on_reply_into(
        &mut self,
        id: RequestId,
        status: ReplyOutcome,
        out: &mut Vec<SubmitEvent<T>>,
    ) {
        let Some(f) = self.in_flight.remove(id.actor_counter) else {
            tracing::debug!(?id, "ignoring reply for a request no longer in flight");
            return;
        };
        if f.serial != id.serial || !f.on_wire {
            tracing::debug!(?id, "ignoring reply for a request no longer in flight");
            self.in_flight.insert(id.actor_counter, f);
            return;
        }
        if !f.skip_queue {
            if let Some(conn) = self.conn.as_mut() {
                conn.max_finished_seq_no = conn.max_finished_seq_no.max(f.sequence_number);
                conn.bytes_in_flight = conn.bytes_in_flight.saturating_sub(f.size_bytes);
            }
            self.send_requests(out);
        }
        self.handle_push_task_reply(f, status, out);
    }

    /// The actor's state.
    pub fn state(&self) -> ActorState {
        self.state
    }

    /// The next counter that has never been sent (Ray's `next_send_position`).
    pub fn next_send_position(&self) -> u64 {
        self.next_send_position
    }

    /// The lowest counter without a completion; all below it completed (Ray's
    /// `next_task_reply_position`).
    pub fn next_task_reply_position(&self) -> u64 {
        self.next_task_reply_position
    }

    /// The counter that maps to sequence number 0 on the current connection.
    pub fn caller_starts_at(&self) -> u64 {
        self.caller_starts_at
    }

    /// The value stamped into the next request leaving the send queue (Ray's
    /// `max_finished_seq_no_`); `-1` when not connected.
    pub fn client_processed_up_to(&self) -> i64 {
        self.conn.as_ref().map_or(-1, |c| c.max_finished_seq_no)
    }

    /// Bytes of requests in flight on the current connection.
    pub fn bytes_in_flight(&self) -> u64 {
        self.conn.as_ref().map_or(0, |c| c.bytes_in_flight)
    }

    /// Requests waiting in the connection's send queue for byte budget.
    pub fn num_waiting_for_bytes(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.send_queue.len())
    }

    /// Tasks not yet handed to a connection.
    pub fn num_queued(&self) -> usize {
        self.requests.len()
    }

    /// Requests handed to the connection and not yet answered (including those waiting
    /// for byte budget and `skip_execution` re-sends).
    pub fn num_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Completed counters above [`next_task_reply_position`](Self::next_task_reply_position)
    /// (kept for a `skip_execution` re-send after a restart).
    pub fn num_out_of_order_completed(&self) -> usize {
        self.out_of_order_completed.len()
    }

    /// The threshold of the next excess-queueing warning.
    pub fn next_queueing_warn_threshold(&self) -> i64 {
        self.next_queueing_warn_threshold
    }

    /// How many times [`connect`](Self::connect) opened a connection.
    pub fn num_connections(&self) -> u64 {
        self.num_connections
    }

    /// Ray's `SendPendingTasks` (`PopNextTaskToSend` in a loop).
    fn send_pending_tasks(&mut self, out: &mut Vec<SubmitEvent<T>>) {
        if self.conn.is_none() {
            return;
        }
        while let Some((counter, first)) = self.requests.first() {
            if counter > self.next_send_position || !first.deps_resolved {
                break;
            }
            // If the task has been sent before, it skips the send queue.
            let skip_queue = counter < self.next_send_position;
            let Some((_, q)) = self.requests.pop_first() else {
                break;
            };
            self.next_send_position = self.next_send_position.max(counter.saturating_add(1));
            let outgoing = Outgoing {
                task: q.task,
                meta: q.meta,
                retries_left: q.retries_left,
            };
            self.push_actor_task(outgoing, skip_queue, false, out);
        }
    }

    /// Ray's `ResendOutOfOrderCompletedTasks`.
    fn resend_out_of_order_completed_tasks(&mut self, out: &mut Vec<SubmitEvent<T>>) {
        for (_, (task, meta)) in std::mem::take(&mut self.out_of_order_completed) {
            let outgoing = Outgoing {
                task,
                meta,
                retries_left: 0,
            };
            self.push_actor_task(outgoing, true, true, out);
        }
    }

    /// Ray's `PushActorTask` plus `CoreWorkerClient::PushActorTask`.
    fn push_actor_task(
        &mut self,
        outgoing: Outgoing<T>,
        skip_queue: bool,
        skip_execution: bool,
        out: &mut Vec<SubmitEvent<T>>,
    ) {
        let Outgoing {
            task,
            meta,
            retries_left,
        } = outgoing;
        let counter = meta.actor_counter;
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        // Counters below caller_starts_at completed before this connection and are
        // refused by `submit`, so this never saturates.
        debug_assert!(counter >= self.caller_starts_at);
        let sequence_number =
            i64::try_from(counter.saturating_sub(self.caller_starts_at)).unwrap_or(i64::MAX);
        let num_queued = sequence_number.saturating_sub(conn.max_finished_seq_no);
        if num_queued >= self.next_queueing_warn_threshold {
            let threshold = self.next_queueing_warn_threshold;
            tracing::warn!(
                num_queued,
                threshold,
                "excess queueing: {num_queued} tasks are queued for this actor"
            );
            out.push(SubmitEvent::ExcessQueueing {
                num_queued,
                threshold,
            });
            self.next_queueing_warn_threshold = threshold.saturating_mul(2);
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let size_bytes = request_size_in_bytes(meta.inline_arg_bytes);
        self.in_flight.insert(
            counter,
            InFlight {
                serial,
                task,
                meta,
                retries_left,
                sequence_number,
                size_bytes,
                skip_queue,
                skip_execution,
                on_wire: false,
            },
        );
        if skip_queue {
            // Ray sends -1 so the actor does not skip any tasks for this request.
            self.emit_send(counter, -1, out);
        } else {
            conn.send_queue.push_back(counter);
            self.send_requests(out);
        }
    }

    /// `CoreWorkerClient::SendRequests`: send while under the byte budget.
    fn send_requests(&mut self, out: &mut Vec<SubmitEvent<T>>) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            if conn.bytes_in_flight >= self.config.max_bytes_in_flight {
                break;
            }
            let Some(counter) = conn.send_queue.pop_front() else {
                break;
            };
            let Some(f) = self.in_flight.get_mut(counter) else {
                continue;
            };
            conn.bytes_in_flight = conn.bytes_in_flight.saturating_add(f.size_bytes);
            out.push(f.send(counter, conn.max_finished_seq_no));
        }
        if let Some(conn) = self.conn.as_ref() {
            if !conn.send_queue.is_empty() {
                tracing::trace!(len = conn.send_queue.len(), "client send queue size");
            }
        }
    }

    fn emit_send(
        &mut self,
        counter: u64,
        client_processed_up_to: i64,
        out: &mut Vec<SubmitEvent<T>>,
    ) {
        if let Some(f) = self.in_flight.get_mut(counter) {
            out.push(f.send(counter, client_processed_up_to));
        }
    }

    /// Ray's `HandlePushTaskReply`.
    fn handle_push_task_reply(
        &mut self,
        f: InFlight<T>,
        status: ReplyOutcome,
        out: &mut Vec<SubmitEvent<T>>,
    ) {
        let counter = f.meta.actor_counter;
        if f.skip_execution {
            // The reply for a task that already completed: count it whatever the status.
            self.mark_seqno_completed(f.task, f.meta);
            return;
        }
        match status {
            ReplyOutcome::Ok => {
                out.push(SubmitEvent::Completed {
                    actor_counter: counter,
                    task: f.task.clone(),
                });
                self.mark_seqno_completed(f.task, f.meta);
            }
            ReplyOutcome::Cancelled => {
                out.push(SubmitEvent::Failed {
                    actor_counter: counter,
                    task: f.task.clone(),
                    error: TaskFailure::Cancelled,
                });
                self.mark_seqno_completed(f.task, f.meta);
            }
            ReplyOutcome::Error => self.fail_or_retry(f.task, f.meta, f.retries_left, out),
        }
    }

    /// Ray's `FailOrRetryPendingTask` for an actor task whose request failed.
    fn fail_or_retry(
        &mut self,
        task: T,
        meta: TaskMeta,
        retries_left: i32,
        out: &mut Vec<SubmitEvent<T>>,
    ) {
        let counter = meta.actor_counter;
        if self.state != ActorState::Dead && retries_left != 0 {
            let left = if retries_left > 0 {
                retries_left - 1
            } else {
                retries_left
            };
            out.push(SubmitEvent::Retrying {
                actor_counter: counter,
                retries_left: left,
            });
            self.requests.insert(
                counter,
                Queued {
                    task,
                    meta,
                    deps_resolved: true,
                    retries_left: left,
                },
            );
            self.send_pending_tasks(out);
        } else {
            let error = if self.state == ActorState::Dead {
                TaskFailure::ActorDied
            } else {
                TaskFailure::ActorUnavailable
            };
            out.push(SubmitEvent::Failed {
                actor_counter: counter,
                task: task.clone(),
                error,
            });
            self.mark_seqno_completed(task, meta);
        }
    }

    /// Ray's `FailInflightTasks`: every request handed to the (gone) connection fails as
    /// if the network broke, in counter order. Call with `self.conn` already `None`.
    fn fail_in_flight(&mut self, out: &mut Vec<SubmitEvent<T>>) {
        for (_, f) in std::mem::take(&mut self.in_flight) {
            self.handle_push_task_reply(f, ReplyOutcome::Error, out);
        }
    }

    /// Ray's `MarkSeqnoCompleted`: advance `next_task_reply_position` over the contiguous
    /// completed prefix.
    fn mark_seqno_completed(&mut self, task: T, meta: TaskMeta) {
        let counter = meta.actor_counter;
        if counter < self.next_task_reply_position {
            return;
        }
        if counter == self.next_task_reply_position && self.out_of_order_completed.is_empty() {
            // In order, nothing completed ahead of it: the loop below would
            // take it straight back out.
            self.next_task_reply_position = counter.saturating_add(1);
            return;
        }
        self.out_of_order_completed.insert(counter, (task, meta));
        while let Some((first, _)) = self.out_of_order_completed.first() {
            if first != self.next_task_reply_position {
                break;
            }
            self.out_of_order_completed.pop_first();
            self.next_task_reply_position = self.next_task_reply_position.saturating_add(1);
        }
    }
}
