//! The receiver's per-caller actor scheduling queue (Ray's `ActorSchedulingQueue`).
//!
//! One [`ActorSchedulingQueue`] exists per caller worker. It releases that caller's tasks
//! strictly in `seq_no` order, starting at 0, and mirrors Ray's `Add`,
//! `ScheduleRequests` and `OnSequencingWaitTimeout` step for step:
//!
//! * [`add`](ActorSchedulingQueue::add) first applies `client_processed_up_to`
//!   (`client_processed_up_to >= next` moves `next` to `client_processed_up_to + 1`),
//!   stores the task under its `seq_no` and runs one scheduling pass.
//! * A scheduling pass rejects every buffered task below `next` ("client cancelled stale
//!   rpc"), then executes the head while it is exactly `next` and its dependencies are
//!   ready, then arms or cancels the reorder timer: the timer runs only while the head is
//!   *ready* but not `next` (a gap); a head whose dependencies are not ready holds the
//!   line with no timer. The wait counts from when the gap at `next` first appeared:
//!   later arrivals behind the same gap do not re-arm it (Ray's receiver originally
//!   re-armed `wait_timer_.expires_from_now` on every pass, so a caller sending one task
//!   every 10 s kept a 30 s gap open forever; Ray has since changed its receiver the same
//!   way). Only when `next` moves (the gap closed or was skipped) does a new gap get a
//!   fresh wait.
//! * When the timer expires, every buffered task is rejected in `seq_no` order and `next`
//!   moves past the highest of them (`next = max(next, seq_no + 1)`).
//!
//! The queue never reads a clock: every entry point takes `now`. A timer that expired
//! before `now` fires first, at the start of [`add`](ActorSchedulingQueue::add),
//! [`dependencies_ready`](ActorSchedulingQueue::dependencies_ready) or
//! [`poll`](ActorSchedulingQueue::poll), as Ray's event loop would have run it before
//! the later event; so the outcome does not depend on how often `poll` is called.
//! [`next_timeout`](ActorSchedulingQueue::next_timeout) tells an event loop when to call
//! `poll` next.
//!
//! Decisions are made inside `add`/`dependencies_ready`/`poll` and handed out by
//! [`poll`](ActorSchedulingQueue::poll) (or
//! [`poll_decisions`](ActorSchedulingQueue::poll_decisions), which also says why a task
//! was rejected) in the order they must be carried out.
//!
//! Choices where Ray is silent or unsafe:
//! * `seq_no == -1` is the unordered mode (issue item 4, Ray's older `Add`): the task is
//!   executed at once and the ordering state (`next`, the buffer, the timer,
//!   `client_processed_up_to`) is not touched. As in Ray, its dependency flag is not
//!   consulted; the caller resolves dependencies before adding an unordered task.
//! * Any other negative `seq_no` is below `next` (which is never negative) and is
//!   rejected as stale; so is `i64::MAX`, past which `next` could not move. Sequence
//!   numbers come from the peer (untrusted): no value makes the queue panic or run a
//!   task twice. As in Ray, the buffer itself is bounded only by what the peer sends
//!   (an honest submitter keeps at most 16 MiB of requests in flight).
//! * A second task with a `seq_no` that is still buffered replaces the first, as Ray's
//!   `pending_actor_tasks_[seq_no] = ...` does; unlike Ray (which drops the first
//!   request's reply callback), the replaced task is handed back as
//!   [`Delivery::Reject`] with [`RejectReason::Duplicate`], so no task is ever lost.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// Ray's default reorder wait (`kMaxReorderWaitSeconds`, 30 s).
pub const DEFAULT_REORDER_WAIT: Duration = Duration::from_secs(30);

/// The status message Ray replies with for every rejected actor task.
pub const STALE_RPC_MESSAGE: &str = "client cancelled stale rpc";

/// What to do with a task the queue released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery<T> {
    /// Run the task now (Ray's `accept_request`).
    Execute(T),
    /// Do not run the task; reply with [`STALE_RPC_MESSAGE`] (Ray's `reject_request`).
    Reject(T),
}

impl<T> Delivery<T> {
    /// The task, whatever the decision.
    pub fn into_task(self) -> T {
        match self {
            Delivery::Execute(t) | Delivery::Reject(t) => t,
        }
    }

    /// The task, by reference.
    pub fn task(&self) -> &T {
        match self {
            Delivery::Execute(t) | Delivery::Reject(t) => t,
        }
    }

    /// Whether this is [`Delivery::Execute`].
    pub fn is_execute(&self) -> bool {
        matches!(self, Delivery::Execute(_))
    }
}

/// Why a task was rejected. Ray replies `"client cancelled stale rpc"` in every case
/// ([`RejectReason::message`]); the variants tell the cases apart for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Its `seq_no` was below `next`: the client already processed it
    /// (`client_processed_up_to`), a reorder timeout skipped it, or it already ran.
    Stale,
    /// The reorder timer expired while the task waited behind a missing `seq_no`.
    ReorderTimeout,
    /// A later request with the same `seq_no` replaced it while it was buffered.
    Duplicate,
}

impl RejectReason {
    /// The status message sent back to the caller (Ray's, for every reason).
    pub fn message(self) -> &'static str {
        STALE_RPC_MESSAGE
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            RejectReason::Stale => "seq_no already processed by the client or skipped",
            RejectReason::ReorderTimeout => "timed out waiting for an earlier seq_no",
            RejectReason::Duplicate => "replaced by a later request with the same seq_no",
        };
        write!(f, "{STALE_RPC_MESSAGE} ({why})")
    }
}

/// One decision of the queue, with the `seq_no` it concerns and, for a rejection, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// The request's sequence number (`-1` for an unordered task).
    pub seq_no: i64,
    /// Execute or reject, carrying the task.
    pub delivery: Delivery<T>,
    /// `Some` exactly when `delivery` is [`Delivery::Reject`].
    pub reject_reason: Option<RejectReason>,
}

#[derive(Debug)]
struct Buffered<T> {
    task: T,
    deps_ready: bool,
}

/// Releases one caller's actor tasks in `seq_no` order (see the module docs).
#[derive(Debug)]
pub struct ActorSchedulingQueue<T> {
    reorder_wait: Duration,
    /// Ray's `next_seq_no_`: the only `seq_no` that may execute next.
    next_seq_no: i64,
    /// Ray's `pending_actor_tasks_`, ordered by `seq_no`.
    pending: BTreeMap<i64, Buffered<T>>,
    /// Ray's `wait_timer_`: `Some(deadline)` while armed.
    wait_deadline: Option<Instant>,
    /// The `next_seq_no` the armed timer waits for: the gap it measures.
    wait_gap: i64,
    /// Decisions made but not yet returned by `poll`, in the order they were made.
    decided: VecDeque<Decision<T>>,
}

impl<T> Default for ActorSchedulingQueue<T> {
    /// A queue with Ray's default reorder wait of 30 s ([`DEFAULT_REORDER_WAIT`]).
    fn default() -> Self {
        Self::new(DEFAULT_REORDER_WAIT)
    }
}

impl<T> ActorSchedulingQueue<T> {
    /// An empty queue expecting `seq_no` 0 first, giving up on a gap after `reorder_wait`.
    pub fn new(reorder_wait: Duration) -> Self {
        Self {
            reorder_wait,
            next_seq_no: 0,
            pending: BTreeMap::new(),
            wait_deadline: None,
            wait_gap: 0,
            decided: VecDeque::new(),
        }
    }

    /// The configured reorder wait.
    pub fn reorder_wait(&self) -> Duration {
        self.reorder_wait
    }

    /// Accepts one request (Ray's `ActorSchedulingQueue::Add`).
    ///
    /// `seq_no == -1` executes at once without touching the ordering state. Otherwise
    /// `client_processed_up_to >= next` first moves `next` to
    /// `client_processed_up_to + 1`, the task is buffered (or, if its `seq_no` is below
    /// `next`, rejected by the scheduling pass) and one scheduling pass runs.
    /// `deps_ready == false` holds the task until
    /// [`dependencies_ready`](Self::dependencies_ready) is called for its `seq_no`.
    pub fn add(
        &mut self,
        seq_no: i64,
        client_processed_up_to: i64,
        task: T,
        deps_ready: bool,
        now: Instant,
    ) {
        self.fire_timer_if_due(now);
        if seq_no == -1 {
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Execute(task),
                reject_reason: None,
            });
            return;
        }
        if client_processed_up_to >= self.next_seq_no {
            tracing::debug!(
                next = self.next_seq_no,
                client_processed_up_to,
                "client skipping requests"
            );
            // Saturates only for a hostile i64::MAX, which then rejects everything.
            self.next_seq_no = client_processed_up_to.saturating_add(1);
        }
        if seq_no == i64::MAX {
            // No `next` lies beyond it, so it could run more than once: refuse it (no
            // honest caller sends 2^63 tasks).
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Reject(task),
                reject_reason: Some(RejectReason::Stale),
            });
            return;
        }
        if seq_no == self.next_seq_no && deps_ready && self.pending.is_empty() {
            // The in-order arrival with nothing buffered (every task of a
            // well-behaved caller): what the insert and scheduling pass
            // below decide, without touching the map.
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Execute(task),
                reject_reason: None,
            });
            self.next_seq_no = seq_no.saturating_add(1);
            self.wait_deadline = None;
            return;
        }
        let replaced = self.pending.insert(seq_no, Buffered { task, deps_ready });
        if let Some(old) = replaced {
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Reject(old.task),
                reject_reason: Some(RejectReason::Duplicate),
            });
        }
        self.schedule_requests(now);
    }

    /// Marks the dependencies of the buffered task `seq_no` as ready (Ray's
    /// `DependencyWaiter` callback) and runs a scheduling pass. Does nothing (not even a
    /// pass) when no task with that `seq_no` is buffered, as in Ray.
    pub fn dependencies_ready(&mut self, seq_no: i64, now: Instant) {
        self.fire_timer_if_due(now);
        if let Some(entry) = self.pending.get_mut(&seq_no) {
            entry.deps_ready = true;
            self.schedule_requests(now);
        }
    }

    /// Fires the reorder timer if it expired by `now` and returns every decision made
    /// since the last call, in the order they must be carried out.
    pub fn poll(&mut self, now: Instant) -> Vec<Delivery<T>> {
        self.poll_decisions(now)
            .into_iter()
            .map(|d| d.delivery)
            .collect()
    }

    /// [`poll`](Self::poll) appending the deliveries to `out` (no allocation once
    /// `out` has room: the receiver's hot path reuses one buffer).
    pub fn poll_into(&mut self, now: Instant, out: &mut Vec<Delivery<T>>) {
        self.fire_timer_if_due(now);
        out.extend(self.decided.drain(..).map(|d| d.delivery));
    }

    /// Like [`poll`](Self::poll), but each decision also carries its `seq_no` and, for a
    /// rejection, the [`RejectReason`].
    pub fn poll_decisions(&mut self, now: Instant) -> Vec<Decision<T>> {
        self.fire_timer_if_due(now);
        self.decided.drain(..).collect()
    }

    /// The `seq_no` that may execute next (Ray's `next_seq_no_`).
    pub fn next_seq_no(&self) -> i64 {
        self.next_seq_no
    }

    /// Tasks added and not yet returned by `poll`: buffered ones plus decided ones
    /// waiting to be polled.
    pub fn len(&self) -> usize {
        self.pending.len() + self.decided.len()
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tasks still buffered (waiting for their turn or their dependencies).
    pub fn num_buffered(&self) -> usize {
        self.pending.len()
    }

    /// When the reorder timer expires, if it is armed: call [`poll`](Self::poll) at (or
    /// after) this instant.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.wait_deadline
    }

    /// Ray's `ScheduleRequests`.
    fn schedule_requests(&mut self, now: Instant) {
        // Cancel any stale requests that the client doesn't need any longer.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() >= self.next_seq_no {
                break;
            }
            let (seq_no, stale) = entry.remove_entry();
            tracing::debug!(seq_no, next = self.next_seq_no, "cancelling stale rpc");
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Reject(stale.task),
                reject_reason: Some(RejectReason::Stale),
            });
        }
        // Process as many in-order requests as we can.
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next_seq_no || !entry.get().deps_ready {
                break;
            }
            let (seq_no, ready) = entry.remove_entry();
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Execute(ready.task),
                reject_reason: None,
            });
            self.next_seq_no = seq_no.saturating_add(1);
        }
        // No timeout for dependency waits; otherwise arm the timer when the gap at
        // `next` first appears and leave it alone while that same gap stays open.
        match self.pending.first_key_value() {
            Some((_, head)) if head.deps_ready => {
                if self.wait_deadline.is_none() || self.wait_gap != self.next_seq_no {
                    self.wait_deadline = Some(crate::deadline_after(now, self.reorder_wait));
                    self.wait_gap = self.next_seq_no;
                }
            }
            _ => self.wait_deadline = None,
        }
    }

    fn fire_timer_if_due(&mut self, now: Instant) {
        match self.wait_deadline {
            Some(deadline) if now >= deadline => self.on_sequencing_wait_timeout(),
            _ => {}
        }
    }

    /// Ray's `OnSequencingWaitTimeout`: reject everything buffered, move `next` past it.
    fn on_sequencing_wait_timeout(&mut self) {
        tracing::warn!(
            next = self.next_seq_no,
            queued = self.pending.len(),
            "timed out waiting for an earlier seq_no, cancelling all queued tasks"
        );
        self.wait_deadline = None;
        while let Some((seq_no, buffered)) = self.pending.pop_first() {
            self.next_seq_no = self.next_seq_no.max(seq_no.saturating_add(1));
            self.decided.push_back(Decision {
                seq_no,
                delivery: Delivery::Reject(buffered.task),
                reject_reason: Some(RejectReason::ReorderTimeout),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs<T: Copy>(ds: &[Decision<T>]) -> Vec<(i64, bool)> {
        ds.iter()
            .map(|d| (d.seq_no, d.delivery.is_execute()))
            .collect()
    }

    #[test]
    fn timer_counts_from_when_the_gap_first_appeared() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut q = ActorSchedulingQueue::new(w);
        q.add(2, -1, 2, true, t0);
        assert_eq!(q.next_timeout(), Some(t0 + w));
        // A later arrival behind the same gap does not push the deadline out.
        q.add(3, -1, 3, true, t0 + Duration::from_secs(5));
        assert_eq!(q.next_timeout(), Some(t0 + w));
        assert!(q.poll(t0 + Duration::from_secs(9)).is_empty());
        let ds = q.poll_decisions(t0 + w);
        assert_eq!(seqs(&ds), vec![(2, false), (3, false)]);
        assert!(ds
            .iter()
            .all(|d| d.reject_reason == Some(RejectReason::ReorderTimeout)));
        assert_eq!(q.next_seq_no(), 4);
    }

    #[test]
    fn a_slow_caller_cannot_keep_a_gap_open() {
        // One task every 7 s behind a missing seq 0, with a 10 s wait: the gap still
        // times out 10 s after it appeared.
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut q = ActorSchedulingQueue::new(w);
        for k in 1..=3i64 {
            let at = t0 + Duration::from_secs(7 * (k as u64 - 1));
            q.add(k, -1, k, true, at);
        }
        // The third add (t = 14 s) fired the timer first (due at 10 s).
        let ds = q.poll_decisions(t0 + Duration::from_secs(14));
        assert_eq!(seqs(&ds), vec![(1, false), (2, false), (3, true)]);
    }

    #[test]
    fn a_new_gap_gets_a_fresh_wait() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut q = ActorSchedulingQueue::new(w);
        q.add(1, -1, 1, true, t0);
        q.add(3, -1, 3, true, t0 + Duration::from_secs(1));
        assert_eq!(q.next_timeout(), Some(t0 + w));
        // Seq 0 closes the first gap at 4 s; 0 and 1 run; seq 2 is the new gap.
        let t4 = t0 + Duration::from_secs(4);
        q.add(0, -1, 0, true, t4);
        assert_eq!(seqs(&q.poll_decisions(t4)), vec![(0, true), (1, true)]);
        assert_eq!(q.next_timeout(), Some(t4 + w));
    }

    #[test]
    fn expired_timer_fires_before_a_later_add() {
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        let mut q = ActorSchedulingQueue::new(w);
        q.add(1, -1, 1, true, t0);
        // Seq 0 arrives after the deadline: the timeout happened first, so 0 is stale.
        q.add(0, -1, 0, true, t0 + Duration::from_secs(2));
        let ds = q.poll_decisions(t0 + Duration::from_secs(2));
        assert_eq!(seqs(&ds), vec![(1, false), (0, false)]);
        assert_eq!(ds[1].reject_reason, Some(RejectReason::Stale));
    }

    #[test]
    fn duplicate_replaces_and_rejects_the_older_request() {
        let t0 = Instant::now();
        let mut q = ActorSchedulingQueue::new(DEFAULT_REORDER_WAIT);
        q.add(1, -1, "old", true, t0);
        q.add(1, -1, "new", true, t0);
        q.add(0, -1, "zero", true, t0);
        let ds = q.poll_decisions(t0);
        assert_eq!(ds[0].delivery, Delivery::Reject("old"));
        assert_eq!(ds[0].reject_reason, Some(RejectReason::Duplicate));
        assert_eq!(ds[1].delivery, Delivery::Execute("zero"));
        assert_eq!(ds[2].delivery, Delivery::Execute("new"));
        assert!(q.is_empty());
    }

    #[test]
    fn other_negative_seq_nos_are_stale() {
        let t0 = Instant::now();
        let mut q = ActorSchedulingQueue::new(DEFAULT_REORDER_WAIT);
        q.add(-7, -1, 'x', true, t0);
        let ds = q.poll_decisions(t0);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].reject_reason, Some(RejectReason::Stale));
        assert_eq!(q.next_seq_no(), 0);
    }

    #[test]
    fn hostile_extremes_never_run_a_task_twice() {
        let t0 = Instant::now();
        let mut q = ActorSchedulingQueue::new(DEFAULT_REORDER_WAIT);
        q.add(5, i64::MAX - 1, 'a', true, t0);
        q.add(i64::MAX, -1, 'b', true, t0);
        q.add(i64::MAX, i64::MAX, 'c', true, t0);
        q.add(3, -1, 'd', true, t0);
        let ds = q.poll_decisions(t0);
        assert_eq!(ds.len(), 4);
        assert!(ds.iter().all(|d| !d.delivery.is_execute()));
        assert_eq!(q.next_seq_no(), i64::MAX);
        assert!(q.is_empty());
    }

    #[test]
    fn reject_reason_message_is_rays() {
        assert_eq!(
            RejectReason::ReorderTimeout.message(),
            "client cancelled stale rpc"
        );
        assert!(RejectReason::Duplicate
            .to_string()
            .starts_with("client cancelled stale rpc"));
    }
}
