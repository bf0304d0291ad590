//! The receiver's queue for normal (non-actor) tasks (Ray's `NormalSchedulingQueue`).
//!
//! Normal tasks carry no ordering constraint (their `sequence_number` is `-1`): they run
//! first-in first-out. Two operations reach into the queue from outside:
//!
//! * **cancel** ([`NormalSchedulingQueue::cancel`], Ray's `CancelTaskIfFound`) removes a
//!   queued task by its id, searching from the back as Ray does;
//! * **steal** ([`NormalSchedulingQueue::steal`], Ray's `Steal` behind
//!   `HandleStealTasks`) hands another worker up to half of the queue, taken from the
//!   back: nothing when one task or none is queued, otherwise `len / 2` (rounded down)
//!   tasks, newest first. The owner gets each stolen task back (Ray sets `task_stolen` in
//!   the reply) and resubmits it elsewhere.
//!
//! The task id type `K` is generic so this layer does not depend on the id module.

use std::collections::VecDeque;

/// FIFO queue of normal tasks with cancel-by-id and work stealing.
#[derive(Debug)]
pub struct NormalSchedulingQueue<K, T> {
    pending: VecDeque<(K, T)>,
}

impl<K, T> Default for NormalSchedulingQueue<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T> NormalSchedulingQueue<K, T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self {
            pending: VecDeque::new(),
        }
    }

    /// Appends a task (Ray's `NormalSchedulingQueue::Add`).
    pub fn add(&mut self, task_id: K, task: T) {
        self.pending.push_back((task_id, task));
    }

    /// Removes and returns the oldest task, if any.
    pub fn pop(&mut self) -> Option<(K, T)> {
        self.pending.pop_front()
    }

    /// Removes and returns every queued task in FIFO order (Ray's `ScheduleRequests`,
    /// which accepts the whole queue front to back).
    pub fn schedule_requests(&mut self) -> Vec<(K, T)> {
        self.pending.drain(..).collect()
    }

    /// Number of queued tasks (Ray's `Size`).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no task is queued (Ray's `TaskQueueEmpty`).
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Gives up to half of the queued tasks to a thief (Ray's `Steal`): nothing if at
    /// most one task is queued, else `len / 2` tasks (rounded down) popped from the back,
    /// returned in the order they were popped (newest first).
    pub fn steal(&mut self) -> Vec<(K, T)> {
        if self.pending.len() <= 1 {
            return Vec::new();
        }
        let half = self.pending.len() / 2;
        let mut stolen = Vec::with_capacity(half);
        for _ in 0..half {
            match self.pending.pop_back() {
                Some(tail) => stolen.push(tail),
                None => break,
            }
        }
        stolen
    }
}

impl<K: PartialEq, T> NormalSchedulingQueue<K, T> {
    /// Removes the queued task with this id (searching from the back, as Ray's
    /// `CancelTaskIfFound` does) and returns it, or `None` if it is not queued (already
    /// running, finished, stolen or never added).
    pub fn cancel(&mut self, task_id: &K) -> Option<T> {
        let pos = self.pending.iter().rposition(|(k, _)| k == task_id)?;
        self.pending.remove(pos).map(|(_, t)| t)
    }

    /// Whether a task with this id is queued.
    pub fn contains(&self, task_id: &K) -> bool {
        self.pending.iter().any(|(k, _)| k == task_id)
    }
}
