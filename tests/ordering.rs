//! Scenario tests for `shmwire::ordering`, following Ray's `scheduling_queue_test.cc`
//! and `direct_actor_transport_test.cc` / `actor_task_submitter_test.cc` cases.

use std::time::{Duration, Instant};

use shmwire::ordering::{
    request_size_in_bytes, ActorSchedulingQueue, ActorState, ActorSubmitQueue, Delivery,
    NormalSchedulingQueue, PushRequest, RejectReason, ReplyOutcome, SubmitConfig, SubmitError,
    SubmitEvent, TaskFailure, TaskMeta, BASE_REQUEST_SIZE, DEFAULT_REORDER_WAIT,
    MAX_BYTES_IN_FLIGHT,
};

const WAIT: Duration = Duration::from_secs(30);

fn executed(ds: &[Delivery<u32>]) -> Vec<u32> {
    ds.iter()
        .filter_map(|d| match d {
            Delivery::Execute(t) => Some(*t),
            Delivery::Reject(_) => None,
        })
        .collect()
}

fn rejected(ds: &[Delivery<u32>]) -> Vec<u32> {
    ds.iter()
        .filter_map(|d| match d {
            Delivery::Reject(t) => Some(*t),
            Delivery::Execute(_) => None,
        })
        .collect()
}

// ---------------------------------------------------------------- receiver: actor queue

#[test]
fn in_order() {
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    for s in 0..4 {
        q.add(s, -1, s as u32, true, t);
    }
    let ds = q.poll(t);
    assert_eq!(
        ds,
        [0, 1, 2, 3].map(Delivery::Execute).to_vec(),
        "tasks run in seq order"
    );
    assert_eq!(q.next_seq_no(), 4);
    assert!(q.is_empty());
    assert_eq!(q.next_timeout(), None);
}

#[test]
fn out_of_order_arrivals_run_in_order() {
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    q.add(2, -1, 2, true, t);
    q.add(0, -1, 0, true, t);
    assert_eq!(q.poll(t), vec![Delivery::Execute(0)]);
    q.add(3, -1, 3, true, t);
    assert!(q.poll(t).is_empty());
    assert_eq!(q.len(), 2);
    q.add(1, -1, 1, true, t);
    assert_eq!(executed(&q.poll(t)), vec![1, 2, 3]);
    assert!(q.is_empty());
}

#[test]
fn later_tasks_dependencies_ready_first() {
    // Ray's TestWaitForObjects.
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    q.add(0, -1, 0, true, t);
    q.add(1, -1, 1, false, t);
    q.add(2, -1, 2, false, t);
    q.add(3, -1, 3, true, t);
    assert_eq!(executed(&q.poll(t)), vec![0]);
    q.dependencies_ready(2, t);
    assert!(q.poll(t).is_empty(), "2 is ready but 1 holds the line");
    q.dependencies_ready(1, t);
    assert_eq!(executed(&q.poll(t)), vec![1, 2, 3]);
    assert!(q.is_empty());
}

#[test]
fn head_blocked_on_dependencies_never_times_out() {
    // Ray's TestWaitForObjectsNotSubjectToSeqTimeout.
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(Duration::from_secs(1));
    q.add(0, -1, 0, false, t);
    q.add(1, -1, 1, true, t);
    assert_eq!(
        q.next_timeout(),
        None,
        "no timer while the head waits for objects"
    );
    for k in 1..100u64 {
        assert!(q.poll(t + Duration::from_secs(k * 10)).is_empty());
    }
    let later = t + Duration::from_secs(10_000);
    q.dependencies_ready(0, later);
    assert_eq!(executed(&q.poll(later)), vec![0, 1]);
    assert!(q.is_empty());
}

#[test]
fn gap_with_unready_head_has_no_timer() {
    // Ray arms the timer only when the head can execute.
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(Duration::from_secs(1));
    q.add(1, -1, 1, false, t);
    assert_eq!(q.next_timeout(), None);
    assert!(q.poll(t + Duration::from_secs(100)).is_empty());
    let t2 = t + Duration::from_secs(100);
    q.dependencies_ready(1, t2);
    assert_eq!(q.next_timeout(), Some(t2 + Duration::from_secs(1)));
}

#[test]
fn gap_times_out_then_later_seq_nos_run() {
    // Ray's TestSeqWaitTimeout.
    let t = Instant::now();
    let w = Duration::from_secs(1);
    let mut q = ActorSchedulingQueue::new(w);
    q.add(2, -1, 2, true, t);
    q.add(3, -1, 3, true, t);
    assert!(q.poll(t).is_empty());
    assert_eq!(q.next_timeout(), Some(t + w));
    assert!(q.poll(t + w / 2).is_empty(), "not yet");
    let t1 = t + w;
    let ds = q.poll_decisions(t1);
    assert_eq!(
        ds.iter()
            .map(|d| (d.seq_no, d.reject_reason))
            .collect::<Vec<_>>(),
        vec![
            (2, Some(RejectReason::ReorderTimeout)),
            (3, Some(RejectReason::ReorderTimeout))
        ]
    );
    assert_eq!(q.next_seq_no(), 4);
    assert_eq!(q.next_timeout(), None);
    // The missing ones finally arrive: stale.
    q.add(0, -1, 0, true, t1);
    q.add(1, -1, 1, true, t1);
    let ds = q.poll(t1);
    assert_eq!(rejected(&ds), vec![0, 1]);
    // Later seq nos run.
    q.add(4, -1, 4, true, t1);
    q.add(5, -1, 5, true, t1);
    assert_eq!(executed(&q.poll(t1)), vec![4, 5]);
    assert!(q.is_empty());
}

#[test]
fn requests_already_processed_by_client_are_rejected() {
    // Ray's TestSkipAlreadyProcessedByClient.
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    q.add(2, 2, 2, true, t);
    q.add(3, 2, 3, true, t);
    q.add(1, 2, 1, true, t);
    let ds = q.poll_decisions(t);
    let summary: Vec<_> = ds
        .iter()
        .map(|d| (d.seq_no, d.delivery.is_execute(), d.reject_reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, false, Some(RejectReason::Stale)),
            (3, true, None),
            (1, false, Some(RejectReason::Stale)),
        ]
    );
    assert!(ds
        .iter()
        .filter_map(|d| d.reject_reason)
        .all(|r| r.message() == "client cancelled stale rpc"));
}

#[test]
fn client_processed_up_to_rejects_buffered_tasks_below_next() {
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    q.add(3, -1, 3, true, t);
    q.add(6, -1, 6, false, t);
    assert!(q.poll(t).is_empty());
    // The client says it has replies up to 4: 3 is stale, next becomes 5.
    q.add(7, 4, 7, true, t);
    assert_eq!(rejected(&q.poll(t)), vec![3]);
    assert_eq!(q.next_seq_no(), 5);
    // A lower client_processed_up_to never moves next back.
    q.add(5, 1, 5, true, t);
    assert_eq!(executed(&q.poll(t)), vec![5]);
    q.dependencies_ready(6, t);
    assert_eq!(executed(&q.poll(t)), vec![6, 7]);
}

#[test]
fn unordered_tasks_bypass_ordering() {
    let t = Instant::now();
    let mut q = ActorSchedulingQueue::new(WAIT);
    q.add(1, -1, 1, true, t);
    q.add(-1, 5, 100, false, t);
    q.add(-1, 7, 101, true, t);
    assert_eq!(
        q.poll(t),
        vec![Delivery::Execute(100), Delivery::Execute(101)]
    );
    assert_eq!(
        q.next_seq_no(),
        0,
        "client_processed_up_to of -1 tasks is ignored"
    );
    assert_eq!(q.len(), 1, "seq 1 still waits for 0");
    q.add(0, -1, 0, true, t);
    assert_eq!(executed(&q.poll(t)), vec![0, 1]);
}

#[test]
fn default_reorder_wait_is_30s() {
    assert_eq!(DEFAULT_REORDER_WAIT, Duration::from_secs(30));
    let q: ActorSchedulingQueue<u32> = ActorSchedulingQueue::default();
    assert_eq!(q.reorder_wait(), Duration::from_secs(30));
}

// ---------------------------------------------------------------- receiver: normal queue

#[test]
fn normal_queue_is_fifo_and_cancels_by_id() {
    let mut q = NormalSchedulingQueue::new();
    for i in 0..5u32 {
        q.add(format!("task-{i}"), i);
    }
    assert_eq!(q.cancel(&"task-2".to_string()), Some(2));
    assert_eq!(q.cancel(&"task-2".to_string()), None);
    assert!(!q.contains(&"task-2".to_string()));
    assert_eq!(q.pop(), Some(("task-0".to_string(), 0)));
    let rest: Vec<u32> = q.schedule_requests().into_iter().map(|(_, t)| t).collect();
    assert_eq!(rest, vec![1, 3, 4]);
    assert!(q.is_empty());
}

#[test]
fn normal_queue_steal_takes_half_rounded_down_from_the_back() {
    let mut q: NormalSchedulingQueue<u32, u32> = NormalSchedulingQueue::new();
    assert!(q.steal().is_empty());
    q.add(0, 0);
    assert!(q.steal().is_empty(), "a single task is never stolen");
    assert_eq!(q.len(), 1);
    q.add(1, 1);
    assert_eq!(q.steal(), vec![(1, 1)]);
    let mut q: NormalSchedulingQueue<u32, u32> = NormalSchedulingQueue::new();
    for i in 0..3 {
        q.add(i, i);
    }
    assert_eq!(q.steal(), vec![(2, 2)], "3 / 2 = 1");
    let mut q: NormalSchedulingQueue<u32, u32> = NormalSchedulingQueue::new();
    for i in 0..7 {
        q.add(i, i);
    }
    assert_eq!(q.steal(), vec![(6, 6), (5, 5), (4, 4)], "newest first");
    assert_eq!(q.len(), 4);
    assert_eq!(q.pop(), Some((0, 0)), "the owner keeps the oldest");
}

// ---------------------------------------------------------------- submitter

fn meta(c: u64) -> TaskMeta {
    TaskMeta {
        actor_counter: c,
        inline_arg_bytes: 0,
        max_retries: 0,
    }
}

fn sends<T: Clone>(evs: &[SubmitEvent<T>]) -> Vec<PushRequest<T>> {
    evs.iter()
        .filter_map(|e| match e {
            SubmitEvent::Send(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn seq_nos<T>(rs: &[PushRequest<T>]) -> Vec<i64> {
    rs.iter().map(|r| r.sequence_number).collect()
}

/// Feeds the requests a submitter (re)sent into an actor incarnation's
/// receiver queue at `t`, all dependencies ready, and returns what it
/// delivers for execution, in order (a rejection fails the test).
fn receive_all<T: Clone + std::fmt::Debug>(
    actor: &mut ActorSchedulingQueue<PushRequest<T>>,
    reqs: &[PushRequest<T>],
    t: Instant,
) -> Vec<PushRequest<T>> {
    for r in reqs {
        actor.add(
            r.sequence_number,
            r.client_processed_up_to,
            r.clone(),
            true,
            t,
        );
    }
    actor
        .poll(t)
        .into_iter()
        .map(|d| match d {
            Delivery::Execute(r) => r,
            Delivery::Reject(r) => panic!("rejected {r:?}"),
        })
        .collect()
}

#[test]
fn submitter_sends_in_counter_order_when_dependencies_resolve_out_of_order() {
    let mut q = ActorSubmitQueue::new();
    assert!(q.connect().is_empty());
    assert!(q.submit(meta(0), 0u32, false).unwrap().is_empty());
    assert!(q.submit(meta(1), 1, false).unwrap().is_empty());
    assert!(q.submit(meta(2), 2, true).unwrap().is_empty());
    assert!(
        q.dependencies_resolved(1).is_empty(),
        "1 must wait for counter 0"
    );
    let out = sends(&q.dependencies_resolved(0));
    assert_eq!(seq_nos(&out), vec![0, 1, 2]);
    assert!(out.iter().all(|r| !r.skip_queue && !r.skip_execution));
    assert!(out.iter().all(|r| r.client_processed_up_to == -1));
    assert_eq!(q.next_send_position(), 3);
    assert_eq!(q.num_queued(), 0);
    assert_eq!(q.num_in_flight(), 3);
}

#[test]
fn submitter_queues_until_connected() {
    let mut q = ActorSubmitQueue::new();
    assert_eq!(q.state(), ActorState::Pending);
    assert!(q.submit(meta(0), 0u32, true).unwrap().is_empty());
    assert!(q.submit(meta(1), 1, true).unwrap().is_empty());
    let out = sends(&q.connect());
    assert_eq!(seq_nos(&out), vec![0, 1]);
    assert_eq!(q.state(), ActorState::Alive);
}

#[test]
fn out_of_order_replies_advance_over_the_contiguous_prefix() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut reqs = Vec::new();
    for c in 0..5 {
        reqs.extend(sends(&q.submit(meta(c), c as u32, true).unwrap()));
    }
    let mut completed = Vec::new();
    for (i, expect) in [(3usize, 0u64), (1, 0), (0, 2), (4, 2), (2, 5)] {
        for e in q.on_reply(reqs[i].id, ReplyOutcome::Ok) {
            if let SubmitEvent::Completed { actor_counter, .. } = e {
                completed.push(actor_counter);
            }
        }
        assert_eq!(q.next_task_reply_position(), expect);
    }
    assert_eq!(
        completed,
        vec![3, 1, 0, 4, 2],
        "completions as replies arrive"
    );
    assert_eq!(q.num_out_of_order_completed(), 0);
    // client_processed_up_to is the highest seq no with a reply.
    assert_eq!(q.client_processed_up_to(), 4);
    // A second reply for the same request is ignored.
    assert!(q.on_reply(reqs[2].id, ReplyOutcome::Ok).is_empty());
}

#[test]
fn client_processed_up_to_is_stamped_when_leaving_the_send_queue() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let r0 = sends(&q.submit(meta(0), 0u32, true).unwrap());
    let r1 = sends(&q.submit(meta(1), 1, true).unwrap());
    assert_eq!(r1[0].client_processed_up_to, -1);
    // The reply for seq 1 (even an error) raises max_finished_seq_no.
    let evs = q.on_reply(r1[0].id, ReplyOutcome::Error);
    assert!(matches!(
        evs[0],
        SubmitEvent::Failed {
            actor_counter: 1,
            error: TaskFailure::ActorUnavailable,
            ..
        }
    ));
    assert_eq!(q.client_processed_up_to(), 1);
    let r2 = sends(&q.submit(meta(2), 2, true).unwrap());
    assert_eq!(r2[0].client_processed_up_to, 1);
    q.on_reply(r0[0].id, ReplyOutcome::Ok);
    assert_eq!(q.client_processed_up_to(), 1, "the maximum, not the latest");
    assert_eq!(q.next_task_reply_position(), 2);
}

#[test]
fn bytes_in_flight_limit_queues_the_rest() {
    assert_eq!(MAX_BYTES_IN_FLIGHT, 16 * 1024 * 1024);
    assert_eq!(
        request_size_in_bytes(4 << 20),
        BASE_REQUEST_SIZE + (4 << 20)
    );
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut sent = Vec::new();
    for c in 0..6 {
        let m = TaskMeta {
            inline_arg_bytes: 4 << 20,
            ..meta(c)
        };
        sent.extend(sends(&q.submit(m, c as u32, true).unwrap()));
    }
    // 4 requests of 4 MiB + 1 KiB: the 4th is sent while 12 MiB + 3 KiB < 16 MiB are in
    // flight (Ray checks before each send); the 5th and 6th wait.
    assert_eq!(seq_nos(&sent), vec![0, 1, 2, 3]);
    let size = request_size_in_bytes(4 << 20);
    assert_eq!(q.bytes_in_flight(), 4 * size);
    assert_eq!(q.num_waiting_for_bytes(), 2);
    assert_eq!(q.next_send_position(), 6, "handed to the connection");
    // A reply frees budget: exactly one more goes out, stamped with the reply's seq no.
    let more = sends(&q.on_reply(sent[1].id, ReplyOutcome::Ok));
    assert_eq!(seq_nos(&more), vec![4]);
    assert_eq!(more[0].client_processed_up_to, 1);
    assert_eq!(q.bytes_in_flight(), 4 * size);
    let more = sends(&q.on_reply(sent[0].id, ReplyOutcome::Ok));
    assert_eq!(seq_nos(&more), vec![5]);
    assert_eq!(q.num_waiting_for_bytes(), 0);
}

#[test]
fn a_request_larger_than_the_limit_is_not_stuck() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let m = TaskMeta {
        inline_arg_bytes: 2 * MAX_BYTES_IN_FLIGHT,
        ..meta(0)
    };
    assert_eq!(sends(&q.submit(m, 0u32, true).unwrap()).len(), 1);
    assert!(sends(&q.submit(meta(1), 1, true).unwrap()).is_empty());
}

#[test]
fn excess_queueing_warning_thresholds_double() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut warnings = Vec::new();
    for c in 0..20_000u64 {
        for e in q.submit(meta(c), (), true).unwrap() {
            if let SubmitEvent::ExcessQueueing {
                num_queued,
                threshold,
            } = e
            {
                warnings.push((c, num_queued, threshold));
            }
        }
    }
    // num_queued = seq no - client_processed_up_to (-1: no replies yet).
    assert_eq!(
        warnings,
        vec![
            (4_999, 5_000, 5_000),
            (9_999, 10_000, 10_000),
            (19_999, 20_000, 20_000)
        ]
    );
    assert_eq!(q.next_queueing_warn_threshold(), 40_000);
}

#[test]
fn warning_threshold_is_configurable_and_counts_from_client_processed_up_to() {
    let mut q = ActorSubmitQueue::with_config(SubmitConfig {
        excess_queueing_warn_threshold: 3,
        ..SubmitConfig::default()
    });
    q.connect();
    let r0 = sends(&q.submit(meta(0), (), true).unwrap());
    let r1 = sends(&q.submit(meta(1), (), true).unwrap());
    q.on_reply(r0[0].id, ReplyOutcome::Ok);
    q.on_reply(r1[0].id, ReplyOutcome::Ok);
    // client_processed_up_to is now 1: seq 4 is the first with 3 queued.
    let mut at = Vec::new();
    for c in 2..12 {
        if q.submit(meta(c), (), true)
            .unwrap()
            .iter()
            .any(|e| matches!(e, SubmitEvent::ExcessQueueing { .. }))
        {
            at.push(c);
        }
    }
    assert_eq!(at, vec![4, 7], "thresholds 3 then 6");
}

#[test]
fn reconnect_resends_in_flight_tasks_with_skip_queue() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let retry = |c| TaskMeta {
        max_retries: 2,
        ..meta(c)
    };
    let mut reqs = Vec::new();
    for c in 0..4 {
        reqs.extend(sends(&q.submit(retry(c), c as u32, true).unwrap()));
    }
    q.on_reply(reqs[0].id, ReplyOutcome::Ok);
    assert_eq!(q.next_task_reply_position(), 1);
    // The actor restarts: 1..3 were in flight and will be retried.
    let evs = q.disconnect(false);
    assert_eq!(q.state(), ActorState::Restarting);
    assert_eq!(
        evs,
        (1..4)
            .map(|c| SubmitEvent::Retrying {
                actor_counter: c,
                retries_left: 1
            })
            .collect::<Vec<_>>()
    );
    assert!(
        q.submit(retry(4), 4, true).unwrap().is_empty(),
        "no connection"
    );
    let out = sends(&q.connect());
    assert_eq!(q.caller_starts_at(), 1);
    // Resent counters 1..3 skip the queue with client_processed_up_to -1; counter 4 is
    // new and goes through the send queue. Sequence numbers restart at 0.
    assert_eq!(seq_nos(&out), vec![0, 1, 2, 3]);
    let flags: Vec<_> = out
        .iter()
        .map(|r| (r.id.actor_counter, r.skip_queue, r.client_processed_up_to))
        .collect();
    assert_eq!(
        flags,
        vec![(1, true, -1), (2, true, -1), (3, true, -1), (4, false, -1)]
    );
    assert_eq!(q.next_send_position(), 5);
    // Replies from the old connection are ignored.
    assert!(q.on_reply(reqs[1].id, ReplyOutcome::Ok).is_empty());
    for r in &out {
        q.on_reply(r.id, ReplyOutcome::Ok);
    }
    assert_eq!(q.next_task_reply_position(), 5);
}

/// An actor given up on as unreachable (its process lives): the tasks
/// waiting for a connection fail as unavailable, the actor is not dead, and
/// a later connection starts past them (its receiver waits for none).
/// Ray retries a task failed as `ACTOR_UNAVAILABLE` while its
/// `max_retries` allows: at each give-up a queued task with retries left
/// uses one and stays queued (`-1`: every time), one without fails, and
/// the kept ones go out in counter order on the next connection, the
/// receiver waiting for none of the failed.
#[test]
fn queued_tasks_with_retries_left_stay_through_a_give_up() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    assert!(q.disconnect(false).is_empty());
    let retries = |c: u64, max_retries: i32| TaskMeta {
        max_retries,
        ..meta(c)
    };
    for (c, r) in [(0, 0), (1, 1), (2, -1), (3, 2)] {
        assert!(q.submit(retries(c, r), c as u32, true).unwrap().is_empty());
    }
    let first = q.fail_or_retry_queued_unavailable();
    assert_eq!(
        first,
        vec![
            SubmitEvent::Failed {
                actor_counter: 0,
                task: 0,
                error: TaskFailure::ActorUnavailable,
            },
            SubmitEvent::Retrying {
                actor_counter: 1,
                retries_left: 0,
            },
            SubmitEvent::Retrying {
                actor_counter: 2,
                retries_left: -1,
            },
            SubmitEvent::Retrying {
                actor_counter: 3,
                retries_left: 1,
            },
        ]
    );
    assert_eq!(q.num_queued(), 3);
    let second = q.fail_or_retry_queued_unavailable();
    assert_eq!(
        second,
        vec![
            SubmitEvent::Failed {
                actor_counter: 1,
                task: 1,
                error: TaskFailure::ActorUnavailable,
            },
            SubmitEvent::Retrying {
                actor_counter: 2,
                retries_left: -1,
            },
            SubmitEvent::Retrying {
                actor_counter: 3,
                retries_left: 0,
            },
        ]
    );
    for _ in 0..5 {
        q.fail_or_retry_queued_unavailable();
    }
    assert_eq!(q.num_queued(), 1, "only the task retried forever is left");
    assert_eq!(q.state(), ActorState::Restarting, "not dead");
    let out = sends(&q.connect());
    // The failed task 3 completed ahead of 2 goes out again with
    // `skip_execution` (Ray's `ResendOutOfOrderCompletedTasks`), so the
    // receiver's sequence has no gap; 2 is the only one that runs.
    let sent: Vec<_> = out
        .iter()
        .map(|r| (r.id.actor_counter, r.skip_execution))
        .collect();
    assert_eq!(sent, vec![(3, true), (2, false)]);
    let order: Vec<_> = receive_all(&mut ActorSchedulingQueue::new(WAIT), &out, Instant::now())
        .iter()
        .map(|r| (r.id.actor_counter, r.skip_execution))
        .collect();
    assert_eq!(
        order,
        vec![(2, false), (3, true)],
        "the receiver waits for none of the failed"
    );
}

#[test]
fn queued_tasks_fail_unavailable_and_a_later_connection_starts_past_them() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut reqs = Vec::new();
    for c in 0..2 {
        reqs.extend(sends(&q.submit(meta(c), c as u32, true).unwrap()));
    }
    for r in &reqs {
        q.on_reply(r.id, ReplyOutcome::Ok);
    }
    assert!(q.disconnect(false).is_empty(), "nothing was in flight");
    for c in 2..5 {
        assert!(q.submit(meta(c), c as u32, true).unwrap().is_empty());
    }
    let failed = q.fail_or_retry_queued_unavailable();
    assert_eq!(
        failed,
        (2..5)
            .map(|c| SubmitEvent::Failed {
                actor_counter: c,
                task: c as u32,
                error: TaskFailure::ActorUnavailable,
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(q.state(), ActorState::Restarting, "not dead");
    assert_eq!(q.next_task_reply_position(), 5);
    assert!(
        q.submit(meta(5), 5, true).unwrap().is_empty(),
        "queued again until a connection"
    );
    let out = sends(&q.connect());
    assert_eq!(q.caller_starts_at(), 5);
    let sent: Vec<_> = out
        .iter()
        .map(|r| (r.id.actor_counter, r.sequence_number, r.skip_execution))
        .collect();
    assert_eq!(sent, vec![(5, 0, false)]);
    let order: Vec<_> = receive_all(&mut ActorSchedulingQueue::new(WAIT), &out, Instant::now())
        .iter()
        .map(|r| r.id.actor_counter)
        .collect();
    assert_eq!(
        order,
        vec![5],
        "the new connection's receiver waits for nothing"
    );
    // A dead actor's queue ignores it.
    q.disconnect(true);
    assert!(q.fail_or_retry_queued_unavailable().is_empty());
}

#[test]
fn restart_resends_out_of_order_completed_tasks_with_skip_execution() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut reqs = Vec::new();
    for c in 0..4 {
        let m = TaskMeta {
            max_retries: 1,
            ..meta(c)
        };
        reqs.extend(sends(&q.submit(m, c as u32, true).unwrap()));
    }
    // 0 and 2 complete; 1 and 3 are lost with the actor.
    q.on_reply(reqs[0].id, ReplyOutcome::Ok);
    q.on_reply(reqs[2].id, ReplyOutcome::Ok);
    assert_eq!(q.next_task_reply_position(), 1);
    assert_eq!(q.num_out_of_order_completed(), 1);
    q.disconnect(false);
    let out = sends(&q.connect());
    assert_eq!(q.caller_starts_at(), 1);
    let summary: Vec<_> = out
        .iter()
        .map(|r| {
            (
                r.id.actor_counter,
                r.sequence_number,
                r.skip_queue,
                r.skip_execution,
            )
        })
        .collect();
    // Counter 2 completed out of order: re-sent first, not to be executed again.
    assert_eq!(
        summary,
        vec![(2, 1, true, true), (1, 0, true, false), (3, 2, true, false)]
    );
    // Run the new incarnation's receiver: it must execute 1, skip 2, execute 3.
    let order: Vec<_> = receive_all(&mut ActorSchedulingQueue::new(WAIT), &out, Instant::now())
        .iter()
        .map(|r| (r.id.actor_counter, r.skip_execution))
        .collect();
    assert_eq!(order, vec![(1, false), (2, true), (3, false)]);
    // The skip-execution reply completes nothing new for the user but moves the position.
    let evs = q.on_reply(out[0].id, ReplyOutcome::Ok);
    assert!(evs.is_empty());
    assert_eq!(q.next_task_reply_position(), 1);
    let evs = q.on_reply(out[1].id, ReplyOutcome::Ok);
    assert!(matches!(
        evs[..],
        [SubmitEvent::Completed {
            actor_counter: 1,
            ..
        }]
    ));
    assert_eq!(q.next_task_reply_position(), 3);
    q.on_reply(out[2].id, ReplyOutcome::Ok);
    assert_eq!(q.next_task_reply_position(), 4);
}

#[test]
fn failed_in_flight_task_without_retries_is_skipped_on_the_new_connection() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let mut reqs = Vec::new();
    for c in 0..3 {
        reqs.extend(sends(&q.submit(meta(c), c as u32, true).unwrap()));
    }
    // No retries: the restart fails all three, which count as completed.
    let evs = q.disconnect(false);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(
                e,
                SubmitEvent::Failed {
                    error: TaskFailure::ActorUnavailable,
                    ..
                }
            ))
            .count(),
        3
    );
    assert_eq!(q.next_task_reply_position(), 3);
    assert!(q.connect().is_empty());
    assert_eq!(q.caller_starts_at(), 3);
    let out = sends(&q.submit(meta(3), 3, true).unwrap());
    assert_eq!(
        seq_nos(&out),
        vec![0],
        "the new incarnation starts at seq 0"
    );
}

#[test]
fn retries_run_out() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let m = TaskMeta {
        max_retries: 1,
        ..meta(0)
    };
    let r = sends(&q.submit(m, 7u32, true).unwrap());
    let evs = q.on_reply(r[0].id, ReplyOutcome::Error);
    assert!(matches!(
        evs[0],
        SubmitEvent::Retrying {
            actor_counter: 0,
            retries_left: 0
        }
    ));
    let again = sends(&evs);
    assert_eq!(again.len(), 1);
    assert!(again[0].skip_queue);
    assert_eq!(again[0].sequence_number, 0);
    let evs = q.on_reply(again[0].id, ReplyOutcome::Error);
    assert_eq!(
        evs,
        vec![SubmitEvent::Failed {
            actor_counter: 0,
            task: 7,
            error: TaskFailure::ActorUnavailable
        }]
    );
    assert_eq!(q.next_task_reply_position(), 1);
    // Cancellation by the receiver fails the task without retrying.
    let m = TaskMeta {
        max_retries: -1,
        ..meta(1)
    };
    let r = sends(&q.submit(m, 8u32, true).unwrap());
    let evs = q.on_reply(r[0].id, ReplyOutcome::Cancelled);
    assert!(matches!(
        evs[..],
        [SubmitEvent::Failed {
            error: TaskFailure::Cancelled,
            ..
        }]
    ));
}

#[test]
fn unlimited_retries_keep_the_retry_count() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let m = TaskMeta {
        max_retries: -1,
        ..meta(0)
    };
    let mut r = sends(&q.submit(m, 0u32, true).unwrap());
    for _ in 0..10 {
        let evs = q.on_reply(r[0].id, ReplyOutcome::Error);
        assert!(matches!(
            evs[0],
            SubmitEvent::Retrying {
                retries_left: -1,
                ..
            }
        ));
        r = sends(&evs);
    }
    assert!(matches!(
        q.on_reply(r[0].id, ReplyOutcome::Ok)[..],
        [SubmitEvent::Completed { .. }]
    ));
}

#[test]
fn actor_death_fails_queued_and_in_flight_tasks() {
    let mut q = ActorSubmitQueue::with_config(SubmitConfig {
        max_bytes_in_flight: 2 * BASE_REQUEST_SIZE,
        ..SubmitConfig::default()
    });
    q.connect();
    let retry = |c| TaskMeta {
        max_retries: 3,
        ..meta(c)
    };
    let mut sent = Vec::new();
    for c in 0..3 {
        sent.extend(sends(&q.submit(retry(c), c as u32, true).unwrap()));
    }
    assert_eq!(sent.len(), 2, "the third waits for byte budget");
    q.submit(retry(4), 4, true).unwrap(); // queued behind the missing counter 3
    q.submit(retry(5), 5, false).unwrap(); // dependencies unresolved
    let evs = q.disconnect(true);
    let mut failed: Vec<_> = evs
        .iter()
        .map(|e| match e {
            SubmitEvent::Failed {
                actor_counter,
                error: TaskFailure::ActorDied,
                ..
            } => *actor_counter,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(failed, vec![0, 1, 2, 4, 5], "dead actors get no retries");
    assert_eq!(q.state(), ActorState::Dead);
    assert_eq!(q.num_queued() + q.num_in_flight(), 0);
    // Later submissions fail at once; a late reply or connect changes nothing.
    assert!(matches!(
        q.submit(retry(3), 3, true).unwrap()[..],
        [SubmitEvent::Failed {
            actor_counter: 3,
            error: TaskFailure::ActorDied,
            ..
        }]
    ));
    assert!(q.on_reply(sent[0].id, ReplyOutcome::Ok).is_empty());
    assert!(q.connect().is_empty());
    assert_eq!(q.state(), ActorState::Dead);
}

#[test]
fn submit_refuses_reused_counters() {
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let r = sends(&q.submit(meta(0), 0u32, true).unwrap());
    assert_eq!(
        q.submit(meta(0), 9, true),
        Err(SubmitError::CounterInUse {
            actor_counter: 0,
            task: 9
        })
    );
    q.submit(meta(2), 2, false).unwrap();
    assert!(matches!(
        q.submit(meta(2), 9, true),
        Err(SubmitError::CounterInUse { .. })
    ));
    q.on_reply(r[0].id, ReplyOutcome::Ok);
    let err = q.submit(meta(0), 9, true).unwrap_err();
    assert_eq!(err.to_string(), "actor counter 0 already completed");
}

#[test]
fn connect_while_connected_fails_over_in_flight_tasks_first() {
    // A new address without a disconnect notification (Ray's ConnectActor with a live
    // rpc_client): in-flight tasks fail before caller_starts_at is reset, so the one that
    // failed for good does not leave a gap at the new receiver.
    let mut q = ActorSubmitQueue::new();
    q.connect();
    let r0 = sends(&q.submit(meta(0), 0u32, true).unwrap());
    let r1 = sends(
        &q.submit(
            TaskMeta {
                max_retries: 1,
                ..meta(1)
            },
            1,
            true,
        )
        .unwrap(),
    );
    let evs = q.connect();
    assert!(matches!(
        evs[0],
        SubmitEvent::Failed {
            actor_counter: 0,
            ..
        }
    ));
    assert!(matches!(
        evs[1],
        SubmitEvent::Retrying {
            actor_counter: 1,
            ..
        }
    ));
    let out = sends(&evs);
    assert_eq!(q.caller_starts_at(), 1);
    assert_eq!(seq_nos(&out), vec![0]);
    assert!(out[0].skip_queue);
    assert!(q.on_reply(r0[0].id, ReplyOutcome::Ok).is_empty());
    assert!(q.on_reply(r1[0].id, ReplyOutcome::Ok).is_empty());
    assert_eq!(q.num_connections(), 2);
}

#[test]
fn submitter_and_receiver_end_to_end_with_reconnect() {
    let t = Instant::now();
    let mut sub = ActorSubmitQueue::new();
    sub.connect();
    let m = |c| TaskMeta {
        max_retries: 1,
        ..meta(c)
    };
    // Dependencies resolve in reverse: nothing goes out until counter 0 is ready.
    for c in 0..4 {
        sub.submit(m(c), c as u32, false).unwrap();
    }
    let mut wire = Vec::new();
    for c in (0..4).rev() {
        wire.extend(sends(&sub.dependencies_resolved(c)));
    }
    assert_eq!(seq_nos(&wire), vec![0, 1, 2, 3]);
    // The first incarnation gets 3, 2 and 0 (1 is lost), runs 0 and dies.
    let mut ran = Vec::new();
    let mut actor = ActorSchedulingQueue::new(WAIT);
    for i in [3, 2, 0] {
        let r = &wire[i];
        actor.add(
            r.sequence_number,
            r.client_processed_up_to,
            r.clone(),
            true,
            t,
        );
    }
    for d in actor.poll(t) {
        let r = match d {
            Delivery::Execute(r) => r,
            Delivery::Reject(r) => panic!("rejected {r:?}"),
        };
        ran.push(r.task);
        sub.on_reply(r.id, ReplyOutcome::Ok);
    }
    assert_eq!(ran, vec![0]);
    assert_eq!(sub.next_task_reply_position(), 1);
    let retried = sub.disconnect(false);
    assert_eq!(retried.len(), 3);
    // The restarted actor is a fresh receiver; the resends arrive in reverse.
    let resent = sends(&sub.connect());
    assert_eq!(seq_nos(&resent), vec![0, 1, 2]);
    let mut actor = ActorSchedulingQueue::new(WAIT);
    for r in resent.iter().rev() {
        actor.add(
            r.sequence_number,
            r.client_processed_up_to,
            r.clone(),
            true,
            t,
        );
    }
    let mut completed = Vec::new();
    for d in actor.poll(t) {
        let r = d.into_task();
        ran.push(r.task);
        for e in sub.on_reply(r.id, ReplyOutcome::Ok) {
            if let SubmitEvent::Completed { actor_counter, .. } = e {
                completed.push(actor_counter);
            }
        }
    }
    assert_eq!(ran, vec![0, 1, 2, 3], "each task ran once, in order");
    assert_eq!(completed, vec![1, 2, 3]);
    assert_eq!(sub.next_task_reply_position(), 4);
}

/// The worked example of `docs/ordering.md`, step by step (keep the two in sync).
#[test]
fn docs_worked_example() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut sub = ActorSubmitQueue::new();
    let mut actor = ActorSchedulingQueue::new(WAIT);
    sub.connect();
    let m = |c, max_retries| TaskMeta {
        actor_counter: c,
        inline_arg_bytes: 0,
        max_retries,
    };
    // 1. c0 (arguments pending), c1 and c2 (ready): nothing can go before c0.
    assert!(sub.submit(m(0, 0), "c0", false).unwrap().is_empty());
    assert!(sub.submit(m(1, 0), "c1", true).unwrap().is_empty());
    assert!(sub.submit(m(2, 1), "c2", true).unwrap().is_empty());
    // 2. c0's arguments resolve: seq 0, 1, 2 go out, client_processed_up_to -1.
    let w = sends(&sub.dependencies_resolved(0));
    assert_eq!(seq_nos(&w), vec![0, 1, 2]);
    assert!(w.iter().all(|r| r.client_processed_up_to == -1));
    assert_eq!(sub.next_send_position(), 3);
    // 3. t=0: seq 1 arrives first: buffered, head ready, timer armed for t=30.
    actor.add(1, -1, w[1].clone(), true, t0);
    assert!(actor.poll(t0).is_empty());
    assert_eq!(actor.next_timeout(), Some(t0 + s(30)));
    // 4. t=1: seq 0 arrives: 0 and 1 run; timer cancelled.
    actor.add(0, -1, w[0].clone(), true, t0 + s(1));
    let ran: Vec<_> = actor
        .poll(t0 + s(1))
        .into_iter()
        .map(|d| d.into_task().task)
        .collect();
    assert_eq!(ran, vec!["c0", "c1"]);
    assert_eq!((actor.next_seq_no(), actor.next_timeout()), (2, None));
    // 5. Reply for seq 1 first, then seq 0.
    sub.on_reply(w[1].id, ReplyOutcome::Ok);
    assert_eq!(
        (sub.next_task_reply_position(), sub.client_processed_up_to()),
        (0, 1)
    );
    sub.on_reply(w[0].id, ReplyOutcome::Ok);
    assert_eq!(sub.next_task_reply_position(), 2);
    // 6. t=2: seq 2 is lost on the way. c3 is submitted: seq 3, cpu 1; buffered at the
    //    actor behind the gap, timer armed for t=32.
    let w3 = sends(&sub.submit(m(3, 0), "c3", true).unwrap());
    assert_eq!(
        (w3[0].sequence_number, w3[0].client_processed_up_to),
        (3, 1)
    );
    actor.add(3, 1, w3[0].clone(), true, t0 + s(2));
    assert!(actor.poll(t0 + s(2)).is_empty());
    assert_eq!(actor.next_timeout(), Some(t0 + s(32)));
    // 7. t=32: the gap times out: seq 3 rejected, next = 4. c3 has no retries: failed.
    let ds = actor.poll_decisions(t0 + s(32));
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].reject_reason, Some(RejectReason::ReorderTimeout));
    assert_eq!(actor.next_seq_no(), 4);
    let evs = sub.on_reply(w3[0].id, ReplyOutcome::Error);
    assert!(matches!(
        evs[..],
        [SubmitEvent::Failed {
            actor_counter: 3,
            error: TaskFailure::ActorUnavailable,
            ..
        }]
    ));
    assert_eq!(sub.next_task_reply_position(), 2, "c2 still has no reply");
    assert_eq!(sub.num_out_of_order_completed(), 1);
    // 8. The actor restarts. c2 (one retry) is queued again; on connect
    //    caller_starts_at = 2, c3 is re-sent with skip_execution as seq 1, c2 as seq 0.
    let evs = sub.disconnect(false);
    assert!(matches!(
        evs[..],
        [SubmitEvent::Retrying {
            actor_counter: 2,
            retries_left: 0
        }]
    ));
    let w = sends(&sub.connect());
    assert_eq!(sub.caller_starts_at(), 2);
    let summary: Vec<_> = w
        .iter()
        .map(|r| {
            (
                r.task,
                r.sequence_number,
                r.skip_queue,
                r.skip_execution,
                r.client_processed_up_to,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![("c3", 1, true, true, -1), ("c2", 0, true, false, -1)]
    );
    // 9. The new incarnation runs seq 0 (c2) then seq 1 (c3, skip_execution).
    let mut actor = ActorSchedulingQueue::new(WAIT);
    let t = t0 + s(40);
    let order: Vec<_> = receive_all(&mut actor, &w, t)
        .into_iter()
        .map(|r| (r.task, r.skip_execution))
        .collect();
    assert_eq!(order, vec![("c2", false), ("c3", true)]);
    // 10. Replies: c2 completes (position 3), c3's skip reply moves the position to 4.
    assert!(matches!(
        sub.on_reply(w[1].id, ReplyOutcome::Ok)[..],
        [SubmitEvent::Completed {
            actor_counter: 2,
            ..
        }]
    ));
    assert_eq!(sub.next_task_reply_position(), 3);
    assert!(sub.on_reply(w[0].id, ReplyOutcome::Ok).is_empty());
    assert_eq!(sub.next_task_reply_position(), 4);
    // 11. c4 goes out as seq 2 with client_processed_up_to -1 (skip_queue replies do not
    //     count) and runs at once.
    let w4 = sends(&sub.submit(m(4, 0), "c4", true).unwrap());
    assert_eq!(
        (w4[0].sequence_number, w4[0].client_processed_up_to),
        (2, -1)
    );
    actor.add(2, -1, w4[0].clone(), true, t);
    assert_eq!(executed_names(&actor.poll(t)), vec!["c4"]);
}

fn executed_names(ds: &[Delivery<PushRequest<&'static str>>]) -> Vec<&'static str> {
    ds.iter()
        .filter_map(|d| match d {
            Delivery::Execute(r) => Some(r.task),
            Delivery::Reject(_) => None,
        })
        .collect()
}
