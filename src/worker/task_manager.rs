//! The submitter's pending-task table (Ray's `TaskManager`), sans-I/O.
//!
//! Every submitted task is pending until its reply; [`TaskManager`] remembers
//! for each one its payload (the request to re-send), which connection its
//! current attempt went out on, and how many retries are left. The wire
//! carries no attempt number (`PushTaskReply` has only the task id), so an
//! attempt is identified by the connection *epoch* it was sent on: epochs are
//! never reused, a connection delivers replies only for requests sent on it,
//! and a reply is matched only if the task's current attempt went out on the
//! epoch it arrived on ([`ReplyMatch::Current`]); any other reply is stale
//! ([`ReplyMatch::Stale`]) and ignored, as Ray ignores a reply to an old
//! attempt (`TaskManager::CompletePendingTask` checks the attempt number).
//!
//! When a connection breaks, [`TaskManager::connection_lost`] returns every
//! task whose current attempt was on it; the caller then asks
//! [`TaskManager::take_retry`] for each (Ray's `RetryTaskIfPossible`: allowed
//! while `max_retries` is not used up, `-1` = forever) and either re-sends it
//! or fails it. Nothing is dropped silently: a task leaves the table only
//! through [`TaskManager::finish`].

use std::collections::hash_map::Entry;

use foldhash::{HashMap, HashMapExt as _};

use crate::ids::TaskId;

/// One pending task.
#[derive(Debug)]
pub struct PendingTask<P> {
    /// What the caller needs to re-send or report it (the request, ids, names).
    pub payload: P,
    attempt: u32,
    sent_on: Option<u64>,
    retries_left: i32,
}

impl<P> PendingTask<P> {
    /// Attempts made so far (0 before the first send).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The connection epoch of the current attempt, if it was sent.
    pub fn sent_on(&self) -> Option<u64> {
        self.sent_on
    }

    /// Records that the task went out on connection `epoch`; returns the
    /// attempt number (1 for the first send).
    pub fn mark_sent(&mut self, epoch: u64) -> u32 {
        self.attempt = self.attempt.saturating_add(1);
        self.sent_on = Some(epoch);
        self.attempt
    }

    /// Retries still allowed (`-1` = unlimited).
    pub fn retries_left(&self) -> i32 {
        self.retries_left
    }
}

/// How a reply relates to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMatch {
    /// The reply answers the task's current attempt (number given).
    Current(u32),
    /// The task is pending but its current attempt went out on another
    /// connection (or was not sent): ignore the reply.
    Stale,
    /// No such pending task (finished already, or never submitted): ignore.
    Unknown,
}

/// The pending-task table. `P` is the caller's per-task payload.
#[derive(Debug)]
pub struct TaskManager<P> {
    tasks: HashMap<TaskId, PendingTask<P>>,
}

impl<P> Default for TaskManager<P> {
    fn default() -> Self {
        Self {
            tasks: HashMap::new(),
        }
    }
}

impl<P> TaskManager<P> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task (Ray's `AddPendingTask`) with `max_retries` retries
    /// (`-1` = unlimited). Returns `false` (and keeps the old entry) if the
    /// task id is already pending.
    pub fn add(&mut self, task_id: TaskId, payload: P, max_retries: i32) -> bool {
        match self.tasks.entry(task_id) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(PendingTask {
                    payload,
                    attempt: 0,
                    sent_on: None,
                    retries_left: max_retries.max(-1),
                });
                true
            }
        }
    }

    /// Records that the task went out on connection `epoch`; returns the
    /// attempt number (1 for the first send), or `None` if it is not pending.
    pub fn mark_sent(&mut self, task_id: &TaskId, epoch: u64) -> Option<u32> {
        self.tasks.get_mut(task_id).map(|t| t.mark_sent(epoch))
    }

    /// The pending task a reply on connection `epoch` answers, when it is
    /// of the task's current attempt ([`ReplyMatch::Current`]); `None`
    /// otherwise ([`TaskManager::match_reply`] says why).
    pub fn current(&self, task_id: &TaskId, epoch: u64) -> Option<&PendingTask<P>> {
        self.tasks.get(task_id).filter(|t| t.sent_on == Some(epoch))
    }

    /// Matches a reply for `task_id` that arrived on connection `epoch`.
    pub fn match_reply(&self, task_id: &TaskId, epoch: u64) -> ReplyMatch {
        match self.tasks.get(task_id) {
            None => ReplyMatch::Unknown,
            Some(t) if t.sent_on == Some(epoch) => ReplyMatch::Current(t.attempt),
            Some(_) => ReplyMatch::Stale,
        }
    }

    /// Connection `epoch` broke: the tasks whose current attempt was on it
    /// (they are now unsent; retry or fail each one). Sorted by task id so
    /// the outcome does not depend on hash order.
    pub fn connection_lost(&mut self, epoch: u64) -> Vec<TaskId> {
        let mut lost: Vec<TaskId> = self
            .tasks
            .iter_mut()
            .filter(|(_, t)| t.sent_on == Some(epoch))
            .map(|(id, t)| {
                t.sent_on = None;
                *id
            })
            .collect();
        lost.sort_unstable();
        lost
    }

    /// Uses one retry of the task if it has any left (Ray's
    /// `RetryTaskIfPossible`); `false` means it must fail.
    pub fn take_retry(&mut self, task_id: &TaskId) -> bool {
        match self.tasks.get_mut(task_id) {
            Some(t) if t.retries_left == -1 => true,
            Some(t) if t.retries_left > 0 => {
                t.retries_left -= 1;
                true
            }
            _ => false,
        }
    }

    /// The pending task.
    pub fn get(&self, task_id: &TaskId) -> Option<&PendingTask<P>> {
        self.tasks.get(task_id)
    }

    /// `true` if `task_id` is pending.
    pub fn contains(&self, task_id: &TaskId) -> bool {
        self.tasks.contains_key(task_id)
    }

    /// The pending task, mutably.
    pub fn get_mut(&mut self, task_id: &TaskId) -> Option<&mut PendingTask<P>> {
        self.tasks.get_mut(task_id)
    }

    /// Removes a task that completed or failed for good; hands its payload back.
    pub fn finish(&mut self, task_id: &TaskId) -> Option<P> {
        self.tasks.remove(task_id).map(|t| t.payload)
    }

    /// Number of pending tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// `true` if nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::JobId;

    fn tid(n: u64) -> TaskId {
        TaskId::for_normal_task(
            JobId::from_int(1),
            TaskId::for_driver_task(JobId::from_int(1)),
            n,
        )
    }

    #[test]
    fn replies_match_only_the_current_attempt() {
        let mut m = TaskManager::new();
        assert!(m.add(tid(1), "a", 1));
        assert!(!m.add(tid(1), "dup", 0));
        assert_eq!(m.match_reply(&tid(1), 7), ReplyMatch::Stale, "not sent yet");
        assert_eq!(m.mark_sent(&tid(1), 7), Some(1));
        assert_eq!(m.match_reply(&tid(1), 7), ReplyMatch::Current(1));
        // The connection breaks; the retry goes out on epoch 8.
        assert_eq!(m.connection_lost(7), vec![tid(1)]);
        assert!(m.take_retry(&tid(1)));
        assert_eq!(m.mark_sent(&tid(1), 8), Some(2));
        assert_eq!(m.match_reply(&tid(1), 7), ReplyMatch::Stale);
        assert_eq!(m.match_reply(&tid(1), 8), ReplyMatch::Current(2));
        assert_eq!(m.finish(&tid(1)), Some("a"));
        assert_eq!(m.match_reply(&tid(1), 8), ReplyMatch::Unknown);
        assert!(m.is_empty());
    }

    #[test]
    fn retries_are_bounded_unless_unlimited() {
        let mut m = TaskManager::new();
        m.add(tid(1), (), 2);
        m.add(tid(2), (), 0);
        m.add(tid(3), (), -1);
        assert!(m.take_retry(&tid(1)) && m.take_retry(&tid(1)));
        assert!(!m.take_retry(&tid(1)));
        assert!(!m.take_retry(&tid(2)));
        for _ in 0..100 {
            assert!(m.take_retry(&tid(3)));
        }
        assert!(!m.take_retry(&tid(9)));
    }

    #[test]
    fn connection_lost_only_touches_that_epoch() {
        let mut m = TaskManager::new();
        for n in 0..4 {
            m.add(tid(n), n, 0);
            m.mark_sent(&tid(n), n % 2);
        }
        let lost = m.connection_lost(1);
        assert_eq!(lost.len(), 2);
        assert!(lost.iter().all(|t| m.get(t).unwrap().sent_on().is_none()));
        assert_eq!(m.match_reply(&tid(0), 0), ReplyMatch::Current(1));
        assert_eq!(m.len(), 4, "nothing dropped");
    }
}
