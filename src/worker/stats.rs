//! Event-loop statistics in the spirit of Ray's `instrumented_io_context`
//! (`src/ray/common/event_stats.h`): for each handler, how many times it
//! ran, and its cumulative and maximum queueing time (from arrival to start)
//! and execution time.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::node::{AreaRole, AreaSnapshot, ConnectionFigures, HandlerFigures, StatsArea};
use crate::shm::Session;
use crate::transport::{AnyConnection, Connection, Mux};

/// Counters of one handler (Ray's `EventStats`), kept in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counters {
    count: u64,
    cum_queue_ns: u64,
    max_queue_ns: u64,
    cum_exec_ns: u64,
    max_exec_ns: u64,
}

/// One handler's figures in a [`StatsSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerStats {
    /// The handler's name (a function's call string, or an event-loop step
    /// such as `Worker.HandlePushTask`).
    pub name: String,
    /// Times it ran.
    pub count: u64,
    /// Sum of the time its events waited before running.
    pub cum_queueing: Duration,
    /// Longest single wait.
    pub max_queueing: Duration,
    /// Sum of its run times.
    pub cum_execution: Duration,
    /// Longest single run.
    pub max_execution: Duration,
}

impl HandlerStats {
    /// Mean execution time (zero when it never ran).
    pub fn mean_execution(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.cum_execution / u32::try_from(self.count).unwrap_or(u32::MAX)
        }
    }
}

/// A structured copy of every handler's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Handlers that ran at least once, in registration order.
    pub handlers: Vec<HandlerStats>,
}

impl StatsSnapshot {
    /// The handler called `name`, if it ran.
    pub fn handler(&self, name: &str) -> Option<&HandlerStats> {
        self.handlers.iter().find(|h| h.name == name)
    }

    /// A printable summary, one line per handler (Ray's `StatsString`).
    pub fn stats_string(&self) -> String {
        let total: u64 = self.handlers.iter().map(|h| h.count).sum();
        let mut s = format!("Global stats: {total} total\n");
        for h in &self.handlers {
            let _ = writeln!(
                s,
                "\t{}: count {}, execution mean {:?} total {:?} max {:?}, queueing total {:?} max {:?}",
                h.name,
                h.count,
                h.mean_execution(),
                h.cum_execution,
                h.max_execution,
                h.cum_queueing,
                h.max_queueing
            );
        }
        s
    }
}

/// Per-handler counters indexed by a slot number fixed when the handler is
/// known (no allocation when recording).
#[derive(Debug, Clone, Default)]
pub struct EventStats {
    names: Vec<String>,
    counters: Vec<Counters>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl EventStats {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a handler named `name`; returns its slot.
    pub fn add_handler(&mut self, name: impl Into<String>) -> usize {
        self.names.push(name.into());
        self.counters.push(Counters::default());
        self.names.len() - 1
    }

    /// Records one run of handler `slot` that waited `queueing` and ran
    /// `execution`. An unknown slot is ignored.
    pub fn record(&mut self, slot: usize, queueing: Duration, execution: Duration) {
        if let Some(c) = self.counters.get_mut(slot) {
            let (q, e) = (ns(queueing), ns(execution));
            c.count += 1;
            c.cum_queue_ns = c.cum_queue_ns.saturating_add(q);
            c.max_queue_ns = c.max_queue_ns.max(q);
            c.cum_exec_ns = c.cum_exec_ns.saturating_add(e);
            c.max_exec_ns = c.max_exec_ns.max(e);
        }
    }

    /// A structured copy (handlers that ran at least once).
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            handlers: self
                .names
                .iter()
                .zip(&self.counters)
                .filter(|(_, c)| c.count > 0)
                .map(|(n, c)| HandlerStats {
                    name: n.clone(),
                    count: c.count,
                    cum_queueing: Duration::from_nanos(c.cum_queue_ns),
                    max_queueing: Duration::from_nanos(c.max_queue_ns),
                    cum_execution: Duration::from_nanos(c.cum_exec_ns),
                    max_execution: Duration::from_nanos(c.max_exec_ns),
                })
                .collect(),
        }
    }

    /// [`StatsSnapshot::stats_string`] of the current counters.
    pub fn stats_string(&self) -> String {
        self.snapshot().stats_string()
    }
}

/// How often a worker looks at its figures and rewrites its statistics
/// area if they changed, at most.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// How often a worker rewrites its statistics area when its figures have
/// not changed: each publish also repairs a header another process
/// scribbled or truncated, so that is how long such damage lasts at most
/// on an idle worker. (Rewriting every [`PUBLISH_EVERY`] whatever happened
/// cost an idle worker ≈ 100 syscalls a second.)
pub const REPUBLISH_IDLE_EVERY: Duration = Duration::from_secs(1);

/// A worker's statistics area (`node::StatsArea`): its per-handler figures
/// and its connections with their rings' fill, looked at by the event loop
/// at most every [`PUBLISH_EVERY`] and rewritten when they changed (and
/// every [`REPUBLISH_IDLE_EVERY`] when they did not), read by `shmwire
/// inspect`.
#[derive(Debug)]
pub(crate) struct PublishedStats {
    area: StatsArea,
    /// When the figures were last looked at.
    last: Option<Instant>,
    /// When the area was last rewritten.
    written: Option<Instant>,
    snap: AreaSnapshot,
    /// The figures being gathered, compared with `snap` (kept to reuse
    /// its vectors).
    next: AreaSnapshot,
}

impl PublishedStats {
    /// The area of worker `id` in `session`; if the segment cannot be
    /// made (a full tmpfs, say), a warning and the reason (the error's
    /// text, which names the path and the OS error), which the worker puts in its directory entry
    /// (`StatsState::Unavailable`, shown by `shmwire inspect`) and then
    /// serves without an area.
    pub(crate) fn create(session: &Session, id: &crate::ids::WorkerId) -> Result<Self, String> {
        match StatsArea::create(session, id) {
            Ok(area) => Ok(Self {
                area,
                last: None,
                written: None,
                snap: AreaSnapshot::new(AreaRole::Worker),
                next: AreaSnapshot::new(AreaRole::Worker),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "worker: no statistics area");
                Err(e.to_string())
            }
        }
    }

    /// Looks at the figures if [`PUBLISH_EVERY`] has passed by `now` (the
    /// event-loop turn's start: no extra clock read per turn) and rewrites
    /// the area if they changed or [`REPUBLISH_IDLE_EVERY`] has passed
    /// since it was last written.
    pub(crate) fn maybe_publish(
        &mut self,
        now: Instant,
        stats: &EventStats,
        mux: &mut Mux<AnyConnection>,
    ) {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < PUBLISH_EVERY)
        {
            return;
        }
        self.last = Some(now);
        let next = &mut self.next;
        // Figures are written over the last publish's (their names'
        // buffers reused): a warm publish allocates nothing, so the serving
        // loop does not (`tests/worker_call_alloc.rs`).
        let mut n = 0;
        for (name, c) in stats.names.iter().zip(&stats.counters) {
            if c.count > 0 {
                if n == next.handlers.len() {
                    next.handlers.push(HandlerFigures::default());
                }
                let h = &mut next.handlers[n];
                h.name.clone_from(name);
                h.count = c.count;
                h.cum_queue_ns = c.cum_queue_ns;
                h.max_queue_ns = c.max_queue_ns;
                h.cum_exec_ns = c.cum_exec_ns;
                h.max_exec_ns = c.max_exec_ns;
                n += 1;
            }
        }
        next.handlers.truncate(n);
        next.connections.clear();
        for (_, conn) in mux.iter() {
            next.connections.push(ConnectionFigures {
                peer: conn.peer_worker_id(),
                pid: conn.peer_pid(),
                transport: conn.kind(),
                ring: conn.ring_fill(),
                pending_send: conn.pending_send_bytes() as u64,
            });
        }
        let unchanged =
            next.handlers == self.snap.handlers && next.connections == self.snap.connections;
        let recent = self
            .written
            .is_some_and(|t| now.saturating_duration_since(t) < REPUBLISH_IDLE_EVERY);
        if unchanged && recent {
            return;
        }
        // Copied, not swapped: both keep their warm buffers
        // (`HandlerFigures::clone_from` reuses the names').
        self.snap.handlers.clone_from(&self.next.handlers);
        self.snap.connections.clone_from(&self.next.connections);
        self.written = Some(now);
        self.area.publish(&self.snap);
    }

    /// Makes the area again if its file was removed or replaced
    /// ([`StatsArea::restore`]) and publishes the last figures into it.
    pub(crate) fn restore(
        &mut self,
        session: &Session,
        id: &crate::ids::WorkerId,
    ) -> Result<bool, crate::shm::ShmError> {
        let made = self.area.restore(session, id)?;
        if made {
            self.area.publish(&self.snap);
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_cumulative_and_max() {
        let mut s = EventStats::new();
        let a = s.add_handler("A.f");
        let _idle = s.add_handler("B.g");
        s.record(a, Duration::from_micros(3), Duration::from_micros(10));
        s.record(a, Duration::from_micros(1), Duration::from_micros(30));
        s.record(99, Duration::ZERO, Duration::ZERO);
        let snap = s.snapshot();
        assert_eq!(
            snap.handlers.len(),
            1,
            "handlers that never ran are left out"
        );
        let h = snap.handler("A.f").unwrap();
        assert_eq!(h.count, 2);
        assert_eq!(h.cum_queueing, Duration::from_micros(4));
        assert_eq!(h.max_queueing, Duration::from_micros(3));
        assert_eq!(h.cum_execution, Duration::from_micros(40));
        assert_eq!(h.max_execution, Duration::from_micros(30));
        assert_eq!(h.mean_execution(), Duration::from_micros(20));
        assert!(s.stats_string().contains("A.f: count 2"));
    }
}
