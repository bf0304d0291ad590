//! Property tests for `shmwire::ordering`.
//!
//! * Receiver: for any interleaving of arrivals (ordered, unordered, duplicated, stale),
//!   dependency readiness, `client_processed_up_to` values and time advancing (also past
//!   the reorder wait), executed tasks have strictly increasing `seq_no`, no task is
//!   decided twice (so never both executed and rejected), only ready tasks execute, and
//!   once every dependency is ready and time moves on, every added task has been
//!   executed or rejected.
//! * Submitter alone: for any order of dependency resolution and replies, every task is
//!   sent once, in counter order, completes once, the byte budget is respected, and
//!   `next_task_reply_position` always equals the contiguous completed prefix.
//! * Submitter + receiver with restarts, lost requests, out-of-order delivery and
//!   replies, stale replies and reorder timeouts: every task ends exactly once (completed
//!   or failed), each incarnation runs tasks in counter order, a completed task ran, and
//!   `next_task_reply_position` ends at the number of tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shmwire::ordering::{
    request_size_in_bytes, ActorSchedulingQueue, ActorSubmitQueue, Delivery, PushRequest,
    RejectReason, ReplyOutcome, RequestId, SubmitConfig, SubmitEvent, TaskMeta, BASE_REQUEST_SIZE,
};

const WAIT_MS: u64 = 1_000;
const MAX_SEQ: i64 = 12;

// ------------------------------------------------------------------------- receiver

#[derive(Debug, Clone)]
enum RecvOp {
    Add {
        seq: i64,
        cpu: i64,
        deps_ready: bool,
    },
    DepsReady(i64),
    Advance(u64),
    Poll,
}

fn recv_op() -> impl Strategy<Value = RecvOp> {
    prop_oneof![
        6 => (
            prop_oneof![8 => 0..MAX_SEQ, 1 => Just(-1i64), 1 => Just(-3i64)],
            prop_oneof![4 => Just(-1i64), 1 => -1..MAX_SEQ],
            any::<bool>(),
        )
            .prop_map(|(seq, cpu, deps_ready)| RecvOp::Add { seq, cpu, deps_ready }),
        3 => (0..MAX_SEQ).prop_map(RecvOp::DepsReady),
        2 => (0..2 * WAIT_MS).prop_map(RecvOp::Advance),
        2 => Just(RecvOp::Poll),
    ]
}

struct RecvChecker {
    /// Model of buffered ordered tasks: seq -> (id, ready).
    model: HashMap<i64, (u32, bool)>,
    decided: BTreeSet<u32>,
    last_executed: Option<i64>,
}

impl RecvChecker {
    fn check(&mut self, q: &mut ActorSchedulingQueue<u32>, now: Instant) {
        for d in q.poll_decisions(now) {
            let id = *d.delivery.task();
            assert!(self.decided.insert(id), "task {id} decided twice");
            assert_eq!(d.reject_reason.is_some(), !d.delivery.is_execute());
            if d.seq_no == -1 {
                assert!(d.delivery.is_execute(), "unordered tasks always execute");
                continue;
            }
            let was = self.model.get(&d.seq_no).copied();
            if let Some((mid, _)) = was {
                if mid == id {
                    self.model.remove(&d.seq_no);
                }
            }
            if matches!(
                d.reject_reason,
                Some(RejectReason::Stale | RejectReason::ReorderTimeout)
            ) {
                assert!(
                    d.seq_no < q.next_seq_no(),
                    "rejected {} at or above next",
                    d.seq_no
                );
            }
            if d.delivery.is_execute() {
                assert_eq!(was.map(|w| w.0), Some(id), "executed task was buffered");
                assert!(was.is_some_and(|w| w.1), "executed task {id} was not ready");
                if let Some(last) = self.last_executed {
                    assert!(d.seq_no > last, "executed {} after {last}", d.seq_no);
                }
                self.last_executed = Some(d.seq_no);
                assert!(q.next_seq_no() > d.seq_no);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn receiver_orders_and_loses_nothing(ops in prop::collection::vec(recv_op(), 0..60)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut q = ActorSchedulingQueue::new(Duration::from_millis(WAIT_MS));
        let mut c = RecvChecker { model: HashMap::new(), decided: BTreeSet::new(), last_executed: None };
        let mut next_id = 0u32;
        for op in ops {
            match op {
                RecvOp::Add { seq, cpu, deps_ready } => {
                    // A timer that expired before `now` fires first; check its
                    // decisions before the model sees the new task.
                    c.check(&mut q, now);
                    let id = next_id;
                    next_id += 1;
                    if seq != -1 {
                        c.model.insert(seq, (id, deps_ready));
                    }
                    q.add(seq, cpu, id, deps_ready, now);
                    if seq != -1 {
                        prop_assert!(q.next_seq_no() > cpu, "client_processed_up_to applied");
                    }
                }
                RecvOp::DepsReady(seq) => {
                    c.check(&mut q, now);
                    if let Some(e) = c.model.get_mut(&seq) {
                        e.1 = true;
                    }
                    q.dependencies_ready(seq, now);
                }
                RecvOp::Advance(ms) => now += Duration::from_millis(ms),
                RecvOp::Poll => {}
            }
            c.check(&mut q, now);
            prop_assert_eq!(q.len(), q.num_buffered());
            prop_assert_eq!(q.len(), c.model.len());
        }
        // Every dependency becomes ready and time moves past the reorder wait.
        for seq in -3..MAX_SEQ {
            if let Some(e) = c.model.get_mut(&seq) {
                e.1 = true;
            }
            q.dependencies_ready(seq, now);
            c.check(&mut q, now);
        }
        now += Duration::from_millis(WAIT_MS);
        c.check(&mut q, now);
        prop_assert!(q.is_empty(), "{} tasks left", q.len());
        prop_assert_eq!(q.next_timeout(), None);
        prop_assert_eq!(c.decided.len() as u32, next_id, "every added task was decided");
    }
}

// ------------------------------------------------------------------------ submitter

#[derive(Debug, Clone)]
enum SubOp {
    Submit { deps_resolved: bool, big: bool },
    Resolve(usize),
    Reply(usize),
}

fn sub_op() -> impl Strategy<Value = SubOp> {
    prop_oneof![
        3 => (any::<bool>(), any::<bool>())
            .prop_map(|(deps_resolved, big)| SubOp::Submit { deps_resolved, big }),
        2 => any::<usize>().prop_map(SubOp::Resolve),
        4 => any::<usize>().prop_map(SubOp::Reply),
    ]
}

/// Applies submitter events to the checker state of `submitter_replies_in_any_order`.
struct SubChecker {
    outstanding: Vec<PushRequest<u64>>,
    sent: Vec<u64>,
    completed: BTreeSet<u64>,
}

impl SubChecker {
    fn apply(&mut self, evs: Vec<SubmitEvent<u64>>) {
        for e in evs {
            match e {
                SubmitEvent::Send(r) => {
                    assert!(!r.skip_queue && !r.skip_execution);
                    assert_eq!(r.sequence_number as u64, r.id.actor_counter);
                    assert_eq!(r.task, r.id.actor_counter);
                    if let Some(last) = self.sent.last() {
                        assert!(r.id.actor_counter > *last, "sent out of counter order");
                    }
                    self.sent.push(r.id.actor_counter);
                    self.outstanding.push(r);
                }
                SubmitEvent::Completed {
                    actor_counter,
                    task,
                } => {
                    assert_eq!(actor_counter, task);
                    assert!(self.completed.insert(actor_counter), "completed twice");
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    fn prefix(&self) -> u64 {
        (0..).find(|c| !self.completed.contains(c)).unwrap_or(0)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn submitter_replies_in_any_order(ops in prop::collection::vec(sub_op(), 0..80)) {
        let limit = 4 * BASE_REQUEST_SIZE;
        let mut q = ActorSubmitQueue::with_config(SubmitConfig {
            max_bytes_in_flight: limit,
            ..SubmitConfig::default()
        });
        q.connect();
        let mut c = SubChecker { outstanding: Vec::new(), sent: Vec::new(), completed: BTreeSet::new() };
        let mut next_counter = 0u64;
        let mut unresolved: Vec<u64> = Vec::new();
        let check = |q: &ActorSubmitQueue<u64>, c: &SubChecker| {
            assert_eq!(q.next_task_reply_position(), c.prefix());
            let on_wire: u64 = c.outstanding.iter().map(|r| r.size_bytes).sum();
            assert_eq!(q.bytes_in_flight(), on_wire);
            // Ray checks the budget before each send: at most one request past it.
            let biggest = c.outstanding.iter().map(|r| r.size_bytes).max().unwrap_or(0);
            assert!(on_wire < limit + biggest || c.outstanding.len() <= 1);
            assert_eq!(q.client_processed_up_to() < 0, c.completed.is_empty());
        };
        for op in ops {
            match op {
                SubOp::Submit { deps_resolved, big } => {
                    let meta = TaskMeta {
                        actor_counter: next_counter,
                        inline_arg_bytes: if big { 2 * BASE_REQUEST_SIZE } else { 0 },
                        max_retries: 0,
                    };
                    if !deps_resolved {
                        unresolved.push(next_counter);
                    }
                    c.apply(q.submit(meta, next_counter, deps_resolved).unwrap());
                    next_counter += 1;
                }
                SubOp::Resolve(i) if !unresolved.is_empty() => {
                    let counter = unresolved.swap_remove(i % unresolved.len());
                    c.apply(q.dependencies_resolved(counter));
                }
                SubOp::Reply(i) if !c.outstanding.is_empty() => {
                    let r = c.outstanding.swap_remove(i % c.outstanding.len());
                    let evs = q.on_reply(r.id, ReplyOutcome::Ok);
                    c.apply(evs);
                }
                _ => {}
            }
            check(&q, &c);
        }
        for counter in std::mem::take(&mut unresolved) {
            c.apply(q.dependencies_resolved(counter));
            check(&q, &c);
        }
        while let Some(r) = c.outstanding.pop() {
            let evs = q.on_reply(r.id, ReplyOutcome::Ok);
            c.apply(evs);
            check(&q, &c);
        }
        prop_assert_eq!(c.sent.len() as u64, next_counter, "every task sent once");
        prop_assert_eq!(c.completed.len() as u64, next_counter);
        prop_assert_eq!(q.next_task_reply_position(), next_counter);
        prop_assert_eq!(q.num_queued() + q.num_in_flight() + q.num_out_of_order_completed(), 0);
    }
}

// ---------------------------------------------------- submitter + receiver, restarts

#[derive(Debug, Clone)]
enum SimOp {
    Submit {
        deps_resolved: bool,
        max_retries: i32,
    },
    Resolve(usize),
    Deliver(usize),
    ActorPoll,
    Reply(usize),
    Advance(u64),
    Restart,
}

fn sim_op() -> impl Strategy<Value = SimOp> {
    prop_oneof![
        3 => (any::<bool>(), 0..3i32)
            .prop_map(|(deps_resolved, max_retries)| SimOp::Submit { deps_resolved, max_retries }),
        2 => any::<usize>().prop_map(SimOp::Resolve),
        4 => any::<usize>().prop_map(SimOp::Deliver),
        3 => Just(SimOp::ActorPoll),
        4 => any::<usize>().prop_map(SimOp::Reply),
        1 => (0..2 * WAIT_MS).prop_map(SimOp::Advance),
        1 => Just(SimOp::Restart),
    ]
}

struct Sim {
    sub: ActorSubmitQueue<u64>,
    actor: ActorSchedulingQueue<PushRequest<u64>>,
    incarnation: u32,
    now: Instant,
    wire: Vec<PushRequest<u64>>,
    replies: Vec<(RequestId, ReplyOutcome)>,
    /// counter -> terminal events seen (must end at exactly 1).
    terminal: BTreeMap<u64, u32>,
    completed: BTreeSet<u64>,
    /// (incarnation, counter) of every real execution.
    executions: Vec<(u32, u64)>,
    unresolved: Vec<u64>,
    next_counter: u64,
}

impl Sim {
    fn apply(&mut self, evs: Vec<SubmitEvent<u64>>) {
        for e in evs {
            match e {
                SubmitEvent::Send(r) => self.wire.push(r),
                SubmitEvent::Completed { actor_counter, .. } => {
                    *self.terminal.entry(actor_counter).or_default() += 1;
                    self.completed.insert(actor_counter);
                }
                SubmitEvent::Failed { actor_counter, .. } => {
                    *self.terminal.entry(actor_counter).or_default() += 1;
                }
                SubmitEvent::Retrying { .. } | SubmitEvent::ExcessQueueing { .. } => {}
            }
        }
    }

    fn actor_poll(&mut self) {
        for d in self.actor.poll(self.now) {
            match d {
                Delivery::Execute(r) => {
                    if !r.skip_execution {
                        self.executions.push((self.incarnation, r.id.actor_counter));
                    }
                    self.replies.push((r.id, ReplyOutcome::Ok));
                }
                Delivery::Reject(r) => self.replies.push((r.id, ReplyOutcome::Error)),
            }
        }
    }

    fn deliver(&mut self, i: usize) {
        let r = self.wire.swap_remove(i % self.wire.len());
        self.actor.add(
            r.sequence_number,
            r.client_processed_up_to,
            r.clone(),
            true,
            self.now,
        );
    }

    fn reply(&mut self, i: usize) {
        let (id, status) = self.replies.swap_remove(i % self.replies.len());
        let evs = self.sub.on_reply(id, status);
        self.apply(evs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn submitter_and_receiver_survive_restarts(ops in prop::collection::vec(sim_op(), 0..100)) {
        let wait = Duration::from_millis(WAIT_MS);
        let mut s = Sim {
            sub: ActorSubmitQueue::with_config(SubmitConfig {
                max_bytes_in_flight: 3 * request_size_in_bytes(0),
                ..SubmitConfig::default()
            }),
            actor: ActorSchedulingQueue::new(wait),
            incarnation: 0,
            now: Instant::now(),
            wire: Vec::new(),
            replies: Vec::new(),
            terminal: BTreeMap::new(),
            completed: BTreeSet::new(),
            executions: Vec::new(),
            unresolved: Vec::new(),
            next_counter: 0,
        };
        let evs = s.sub.connect();
        s.apply(evs);
        let restarts = ops.iter().filter(|o| matches!(o, SimOp::Restart)).count();
        let timers_may_fire = ops.iter().any(|o| matches!(o, SimOp::Advance(_)));
        let mut max_retries_of: BTreeMap<u64, i32> = BTreeMap::new();
        for op in ops {
            match op {
                SimOp::Submit { deps_resolved, max_retries } => {
                    let meta = TaskMeta { actor_counter: s.next_counter, inline_arg_bytes: 0, max_retries };
                    max_retries_of.insert(s.next_counter, max_retries);
                    if !deps_resolved {
                        s.unresolved.push(s.next_counter);
                    }
                    let evs = s.sub.submit(meta, s.next_counter, deps_resolved).unwrap();
                    s.apply(evs);
                    s.next_counter += 1;
                }
                SimOp::Resolve(i) if !s.unresolved.is_empty() => {
                    let counter = s.unresolved.swap_remove(i % s.unresolved.len());
                    let evs = s.sub.dependencies_resolved(counter);
                    s.apply(evs);
                }
                SimOp::Deliver(i) if !s.wire.is_empty() => s.deliver(i),
                SimOp::ActorPoll => s.actor_poll(),
                SimOp::Reply(i) if !s.replies.is_empty() => s.reply(i),
                SimOp::Advance(ms) => s.now += Duration::from_millis(ms),
                SimOp::Restart => {
                    // The actor process dies: requests on the wire are lost; replies
                    // already in transit may still arrive and must be ignored.
                    s.wire.clear();
                    let evs = s.sub.disconnect(false);
                    s.apply(evs);
                    s.actor = ActorSchedulingQueue::new(wait);
                    s.incarnation += 1;
                    let evs = s.sub.connect();
                    s.apply(evs);
                }
                _ => {}
            }
            for (&counter, &n) in &s.terminal {
                prop_assert!(n <= 1, "counter {} ended {} times", counter, n);
            }
            let ended_prefix = (0..).find(|c| !s.terminal.contains_key(c)).unwrap_or(0);
            prop_assert!(
                s.sub.next_task_reply_position() <= ended_prefix,
                "the reply position never passes a task that has not ended"
            );
        }
        // Drain: resolve everything, deliver everything, let timers fire.
        for counter in std::mem::take(&mut s.unresolved) {
            let evs = s.sub.dependencies_resolved(counter);
            s.apply(evs);
        }
        let mut rounds = 0;
        while !(s.wire.is_empty() && s.replies.is_empty() && s.actor.is_empty()
            && s.sub.num_in_flight() == 0 && s.sub.num_queued() == 0)
        {
            rounds += 1;
            prop_assert!(rounds < 200, "simulation did not settle");
            while !s.wire.is_empty() {
                s.deliver(0);
            }
            s.actor_poll();
            while !s.replies.is_empty() {
                s.reply(0);
            }
            s.now += wait;
            s.actor_poll();
        }
        for c in 0..s.next_counter {
            prop_assert_eq!(s.terminal.get(&c).copied(), Some(1), "counter {} must end exactly once", c);
        }
        prop_assert_eq!(s.sub.next_task_reply_position(), s.next_counter);
        prop_assert_eq!(s.sub.num_out_of_order_completed(), 0);
        // Each incarnation ran tasks in strictly increasing counter order.
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(inc, counter) in &s.executions {
            if let Some(&prev) = last.get(&inc) {
                prop_assert!(counter > prev, "incarnation {} ran {} after {}", inc, counter, prev);
            }
            last.insert(inc, counter);
        }
        // Liveness: without reorder timeouts during the run (the drain delivers every
        // request before time moves), a task with a retry for every restart completes.
        if !timers_may_fire {
            for (&c, &r) in &max_retries_of {
                if r as usize >= restarts {
                    prop_assert!(s.completed.contains(&c), "counter {} (retries {}, restarts {}) did not complete", c, r, restarts);
                }
            }
        }
        // A completed task ran at least once.
        let ran: BTreeSet<u64> = s.executions.iter().map(|&(_, c)| c).collect();
        for c in &s.completed {
            prop_assert!(ran.contains(c), "counter {} completed without running", c);
        }
    }
}
