//! What `shmwire inspect --session S` shows, gathered without changing
//! anything and without stopping anyone: the session's liveness, its
//! workers (from the directory) with the figures each live one publishes in
//! its statistics area, the workers the node saw die, and the node's store.
//! The text form is [`SessionReport`]'s `Display`; the CLI's `--json` form
//! is built from the same fields (`docs/node.md` documents both).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::service::NODE_NAME;
use super::stats_area::{
    area_name, read_area, AreaError, AreaSnapshot, ConnectionFigures, StoreFigures,
};
use super::Directory;
use crate::ids::WorkerId;
use crate::shm::{Session, ShmError};
use crate::store::ObjectState;
use crate::transport::{StatsState, TransportKind};

/// One worker of a [`SessionReport`].
#[derive(Debug, Clone)]
pub struct WorkerReport {
    /// Its id.
    pub worker_id: WorkerId,
    /// Its name, if it registered one.
    pub name: Option<String>,
    /// Its pid (informational: liveness is its entry's lock).
    pub pid: u32,
    /// Whether it lives.
    pub live: bool,
    /// Whether it accepts shared-memory callers (has a bootstrap socket).
    pub shm: bool,
    /// The TCP address it listens on.
    pub tcp: Option<SocketAddr>,
    /// Known only from the node, which saw it die and removed its files.
    pub removed_by_node: bool,
    /// What its statistics area says (live workers that publish one).
    pub stats: Option<AreaSnapshot>,
    /// Why a live worker's area is not shown: `no statistics area: …`
    /// (it could not make one and said why in its directory entry, or the
    /// area it said it publishes is missing) or `statistics unreadable: …`
    /// (the read or the validation failed).
    pub stats_error: Option<String>,
}

/// One session, for `shmwire inspect --session S` (see the module docs).
#[derive(Debug, Clone)]
pub struct SessionReport {
    /// The session's name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Whether any process of it lives.
    pub live: bool,
    /// Live and dead process lock files.
    pub processes_live: usize,
    /// Dead process lock files not cleaned up yet.
    pub processes_dead: usize,
    /// Segment files.
    pub segments: usize,
    /// The workers, live ones first, then by name and id.
    pub workers: Vec<WorkerReport>,
    /// The live node's worker id, if a node runs.
    pub node: Option<WorkerId>,
    /// The node's store, as the node last published it.
    pub store: Option<StoreFigures>,
    /// The node's store's client connections with their rings' fill (the
    /// connections in the node's area; taken out of the node's
    /// [`WorkerReport::stats`] so they are listed once).
    pub store_connections: Vec<ConnectionFigures>,
    /// Entries that could not be read (each with its path).
    pub problems: Vec<String>,
}

impl SessionReport {
    /// Gathers the report of `session` (attached, never created).
    pub fn gather(session: &Session) -> Result<Self, ShmError> {
        let status = session.status()?;
        let segments = status.segments;
        let entries = Directory::for_session(session)
            .and_then(|d| d.workers())
            .map_err(|e| ShmError::io("list directory", session.dir(), std::io::Error::other(e)))?;
        let mut workers = Vec::new();
        let mut problems = Vec::new();
        for e in entries {
            let Some(ep) = e.endpoint else {
                problems.push(format!("{}: unreadable directory entry", e.path.display()));
                continue;
            };
            let (stats, stats_error) = if e.live {
                match (
                    read_area(session, &area_name(ep.pid, &ep.worker_id)),
                    &ep.stats,
                ) {
                    (Ok(a), _) => (Some(a), None),
                    // It said why it has none (e.g. a full tmpfs at start).
                    (Err(AreaError::Missing(_)), Some(StatsState::Unavailable(why))) => {
                        (None, Some(format!("no statistics area: {why}")))
                    }
                    // It said it publishes one: gone while it lives.
                    (Err(AreaError::Missing(path)), Some(StatsState::Published)) => (
                        None,
                        Some(format!(
                            "no statistics area: {} is missing (removed while the worker lives)",
                            path.display()
                        )),
                    ),
                    // A process that keeps none (a store service, a bare
                    // listener).
                    (Err(AreaError::Missing(_)), None) => (None, None),
                    (Err(err), _) => (None, Some(format!("statistics unreadable: {err}"))),
                }
            } else {
                (None, None)
            };
            workers.push(WorkerReport {
                worker_id: ep.worker_id,
                name: ep.name,
                pid: ep.pid,
                live: e.live,
                shm: ep.unix_socket.is_some(),
                tcp: ep.tcp,
                removed_by_node: false,
                stats,
                stats_error,
            });
        }
        let node = workers
            .iter_mut()
            .find(|w| w.live && w.name.as_deref() == Some(NODE_NAME));
        let node_id = node.as_ref().map(|w| w.worker_id);
        let store_connections = node
            .and_then(|w| w.stats.as_mut())
            .map(|a| std::mem::take(&mut a.connections))
            .unwrap_or_default();
        let node_area = workers
            .iter()
            .find(|w| Some(w.worker_id) == node_id)
            .and_then(|w| w.stats.clone());
        let store = node_area.as_ref().and_then(|a| a.store.clone());
        for d in node_area.map(|a| a.dead).unwrap_or_default() {
            if workers.iter().any(|w| w.worker_id == d.worker_id) {
                continue;
            }
            workers.push(WorkerReport {
                worker_id: d.worker_id,
                name: d.name,
                pid: d.pid,
                live: false,
                shm: false,
                tcp: None,
                removed_by_node: true,
                stats: None,
                stats_error: None,
            });
        }
        workers.sort_by(|a, b| {
            b.live
                .cmp(&a.live)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.worker_id.cmp(&b.worker_id))
        });
        Ok(Self {
            name: session.name().to_owned(),
            dir: session.dir().to_owned(),
            live: status.is_live(),
            processes_live: status.live_owners.len(),
            processes_dead: status.dead_owners.len(),
            segments,
            workers,
            node: node_id,
            store,
            store_connections,
            problems,
        })
    }
}

/// `"Sealed"` and so on.
pub fn state_name(s: ObjectState) -> &'static str {
    match s {
        ObjectState::Unsealed => "unsealed",
        ObjectState::Sealed => "sealed",
        ObjectState::DeletePending => "delete-pending",
    }
}

/// `"shm"` or `"tcp"`.
pub fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Shm => "shm",
        TransportKind::Tcp => "tcp",
    }
}

fn dur(ns: u64) -> String {
    format!("{:?}", Duration::from_nanos(ns))
}

/// One connection line: `<what> <peer> (pid P) over shm: rx ring …`.
fn write_connection(f: &mut fmt::Formatter<'_>, what: &str, c: &ConnectionFigures) -> fmt::Result {
    write!(f, "{what} {}", c.peer)?;
    if let Some(p) = c.pid {
        write!(f, " (pid {p})")?;
    }
    write!(f, " over {}", transport_name(c.transport))?;
    if let Some(r) = c.ring {
        write!(
            f,
            ": rx ring {}/{} bytes, tx ring {}/{} bytes",
            r.rx_used, r.rx_capacity, r.tx_used, r.tx_capacity
        )?;
    }
    writeln!(f, "; {} bytes queued to send", c.pending_send)
}

impl fmt::Display for SessionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "session {} ({}; processes: {} running, {} dead; {} segment(s); node {})",
            self.dir.display(),
            if self.live { "live" } else { "dead" },
            self.processes_live,
            self.processes_dead,
            self.segments,
            match &self.node {
                Some(id) => format!("{id}"),
                None => "not running".into(),
            }
        )?;
        for w in &self.workers {
            let mut t = Vec::new();
            if w.shm {
                t.push("shm".to_string());
            }
            if let Some(a) = w.tcp {
                t.push(format!("tcp {a}"));
            }
            writeln!(
                f,
                "  worker {}{} pid {}: {}{}{}",
                w.worker_id,
                w.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                w.pid,
                if w.live { "alive" } else { "dead" },
                if w.removed_by_node {
                    " (its files removed by the node)"
                } else {
                    ""
                },
                if t.is_empty() {
                    String::new()
                } else {
                    format!("; {}", t.join(", "))
                }
            )?;
            if let Some(e) = &w.stats_error {
                writeln!(f, "    {e}")?;
            }
            let Some(s) = &w.stats else { continue };
            for c in &s.connections {
                write_connection(f, "    connection from", c)?;
            }
            for h in &s.handlers {
                writeln!(
                    f,
                    "    handler {}: count {}, queueing mean {} max {}, execution mean {} max {}",
                    h.name,
                    h.count,
                    dur(h.mean_queue_ns()),
                    dur(h.max_queue_ns),
                    dur(h.mean_exec_ns()),
                    dur(h.max_exec_ns)
                )?;
            }
        }
        if let Some(st) = &self.store {
            let s = &st.stats;
            writeln!(
                f,
                "  store: capacity {} bytes, used {} bytes, {} object(s) ({} sealed, {} evictable, {} in fallback files)",
                s.capacity, s.used, s.objects, s.sealed, s.evictable, s.fallback_objects
            )?;
            for c in &self.store_connections {
                write_connection(f, "    client", c)?;
            }
            for o in &st.largest {
                writeln!(
                    f,
                    "    object {}: {} bytes, {}, {} holder(s){}",
                    o.id,
                    o.data_size,
                    state_name(o.state),
                    o.holders,
                    if o.fallback { ", fallback file" } else { "" }
                )?;
            }
        }
        for p in &self.problems {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}
