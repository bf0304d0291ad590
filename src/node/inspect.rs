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

use super::node_lock::{probe as probe_node_lock, NodeLockState};
use super::service::NODE_NAME;
use super::stats_area::{
    area_name, read_area, AreaError, AreaRole, AreaSnapshot, ConnectionFigures, StoreFigures,
    MAX_CONNECTIONS, MAX_HANDLERS,
};
use super::Directory;
use crate::ids::WorkerId;
use crate::shm::{Session, ShmError, NODE_LOCK_FILE};
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
    /// The TCP address it accepts shmwire connections on.
    pub tcp: Option<SocketAddr>,
    /// The HTTP address it serves (the node's `/health`, `/inspect`).
    pub http: Option<SocketAddr>,
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

/// A directory entry whose text could not be read or is not an entry
/// (one of a [`SessionReport`]): never shown as an absent or dead worker.
#[derive(Debug, Clone)]
pub struct UnreadableEntry {
    /// The entry file.
    pub path: PathBuf,
    /// Whether a live process holds its lock (`Some(true)`), nobody does
    /// (`Some(false)`: its owner died; the cleanup pass removes it), or
    /// the lock could not be probed (`None`: not a regular file).
    pub live: Option<bool>,
    /// The pid the kernel lists as holding its lock, if live.
    pub pid: Option<u32>,
    /// Why it is unreadable (the read error, too long, not UTF-8, which
    /// line or field is malformed, or what the name is if not a file).
    pub cause: String,
    /// Whether it is taken for the live node's own entry (the node runs,
    /// by its lock, with no readable entry, and the same pid holds this).
    pub node: bool,
}

impl fmt::Display for UnreadableEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "directory entry {} unreadable ", self.path.display())?;
        match (self.live, self.pid) {
            (Some(true), Some(p)) => write!(f, "(held by live pid {p})")?,
            (Some(true), None) => write!(f, "(held by a live process)")?,
            (Some(false), _) => write!(f, "(its owner is dead)")?,
            (None, _) => write!(f, "(its lock cannot be probed)")?,
        }
        write!(f, ": {}", self.cause)
    }
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
    /// The live node's worker id, if a node runs and its directory entry
    /// is readable.
    pub node: Option<WorkerId>,
    /// Whether a node runs: its directory entry is live, or a live
    /// process holds the session's node lock (`.node.lock`) — so a node
    /// whose entry was scribbled over still counts as running.
    pub node_running: bool,
    /// The running node's pid (its entry's, else the lock holder's).
    pub node_pid: Option<u32>,
    /// What keeps the node from being shown in full: its entry is
    /// unreadable (path and cause) or missing while it holds the lock, or
    /// `.node.lock` cannot tell (not a regular file, not readable).
    pub node_error: Option<String>,
    /// What `.node.lock` said.
    pub node_lock: NodeLockState,
    /// The node's store, as the node last published it.
    pub store: Option<StoreFigures>,
    /// Why a running node's store figures are not shown (`store` is
    /// `None`): its statistics area is missing or unreadable, its entry
    /// cannot name it, or it has published none yet.
    pub store_error: Option<String>,
    /// The node's store's client connections with their rings' fill (the
    /// connections in the node's area; taken out of the node's
    /// [`WorkerReport::stats`] so they are listed once).
    pub store_connections: Vec<ConnectionFigures>,
    /// Store clients beyond those listed ([`AreaSnapshot::connections_unlisted`]
    /// of the node's area).
    pub store_connections_unlisted: u64,
    /// Entries that could not be read, as text (each with its path and
    /// cause: `unreadable`'s entries).
    pub problems: Vec<String>,
    /// Directory entries that could not be read, with why.
    pub unreadable: Vec<UnreadableEntry>,
    /// Segment-named entries that are not regular files (a FIFO named
    /// `stats-…`, say): `(name, type)`, never opened. One that is a live
    /// worker's area is reported under that worker instead, not here.
    pub refused: Vec<(String, &'static str)>,
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
        let mut unreadable = Vec::new();
        for e in entries {
            let ep = match e.endpoint {
                Ok(ep) => ep,
                Err(cause) => {
                    unreadable.push(UnreadableEntry {
                        path: e.path,
                        live: e.live,
                        pid: e.holder_pid,
                        cause,
                        node: false,
                    });
                    continue;
                }
            };
            let is_node = ep.name.as_deref() == Some(NODE_NAME);
            // A node always makes its area (it does not start without
            // one), whatever an older node's entry says.
            let said = match (&ep.stats, is_node) {
                (None, true) => Some(StatsState::Published),
                (s, _) => s.clone(),
            };
            // Read, so its lock was probed.
            let live = e.live == Some(true);
            let (stats, stats_error) = if live {
                match (read_area(session, &area_name(ep.pid, &ep.worker_id)), &said) {
                    (Ok(a), _) => (Some(a), None),
                    // It said why it has none (e.g. a full tmpfs at start).
                    (Err(AreaError::Missing(_)), Some(StatsState::Unavailable(why))) => {
                        (None, Some(format!("no statistics area: {why}")))
                    }
                    // It said it publishes one: gone while it lives.
                    (Err(AreaError::Missing(path)), Some(StatsState::Published)) => (
                        None,
                        Some(format!(
                            "no statistics area: {} is missing (removed while the {} lives)",
                            path.display(),
                            if is_node { "node" } else { "worker" }
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
                live,
                shm: ep.unix_socket.is_some(),
                tcp: ep.tcp,
                http: ep.http,
                removed_by_node: false,
                stats,
                stats_error,
            });
        }
        let node = workers
            .iter_mut()
            .find(|w| w.live && w.name.as_deref() == Some(NODE_NAME));
        let node_id = node.as_ref().map(|w| w.worker_id);
        let entry_pid = node.as_ref().map(|w| w.pid);
        let entry_stats_error = node.as_ref().and_then(|w| w.stats_error.clone());
        let (mut store_connections, mut store_connections_unlisted) = node
            .and_then(|w| w.stats.as_mut())
            .map(|a| {
                (
                    std::mem::take(&mut a.connections),
                    std::mem::take(&mut a.connections_unlisted),
                )
            })
            .unwrap_or_default();
        let mut node_area = workers
            .iter()
            .find(|w| Some(w.worker_id) == node_id)
            .and_then(|w| w.stats.clone());

        // Whether a node runs is the lock's answer (a kernel lock, not a
        // file's text), not only whether its entry reads.
        let mut node_lock = probe_node_lock(session);
        let lock_path = session.dir().join(NODE_LOCK_FILE);
        let (node_running, node_pid, node_error, mut store_error) = if node_id.is_some() {
            let store_error = match (&node_area, entry_stats_error) {
                (_, Some(e)) => Some(e),
                (Some(a), None) if a.store.is_none() => {
                    Some("the node has not published its store's figures yet".to_owned())
                }
                _ => None,
            };
            (true, entry_pid, None, store_error)
        } else {
            // Held with no live entry of a node: asked again a few times,
            // since a cleaner or another `inspect` probing a dead node's
            // free lock holds it for a moment; a running node holds it
            // every time.
            for _ in 0..5 {
                if !matches!(node_lock, NodeLockState::Held { .. }) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
                node_lock = probe_node_lock(session);
            }
            match &node_lock {
                NodeLockState::Held { pid } => {
                    // Its entry is among the unreadable ones its pid holds.
                    let mine: Vec<usize> = (0..unreadable.len())
                        .filter(|&i| {
                            unreadable[i].live == Some(true)
                                && pid.is_some()
                                && unreadable[i].pid == *pid
                        })
                        .collect();
                    let held = format!(
                        "it holds {}{}",
                        lock_path.display(),
                        pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                    );
                    let why = match mine.as_slice() {
                        [i] => {
                            unreadable[*i].node = true;
                            format!(
                                "its directory entry {} is unreadable: {}",
                                unreadable[*i].path.display(),
                                unreadable[*i].cause
                            )
                        }
                        [] => "no readable directory entry of it is live (its entry is \
                               missing or among the unreadable ones)"
                            .to_owned(),
                        _ => format!(
                            "its directory entry is one of {} unreadable entries its pid holds",
                            mine.len()
                        ),
                    };
                    // Its area is named after its id, which only its entry
                    // says: found by the pid instead (role node, same pid).
                    node_area = pid.and_then(|p| find_node_area(session, p));
                    let store_error = match &node_area {
                        Some(a) if a.store.is_some() => None,
                        Some(_) => {
                            Some("the node has not published its store's figures yet".to_owned())
                        }
                        None => Some(format!(
                            "no statistics area of the node found (looked for stats-{}-…: \
                             the node's unreadable entry would name it)",
                            pid.map_or_else(|| "<pid>".to_owned(), |p| p.to_string())
                        )),
                    };
                    if let Some(a) = node_area.as_mut() {
                        store_connections = std::mem::take(&mut a.connections);
                        store_connections_unlisted = std::mem::take(&mut a.connections_unlisted);
                    }
                    (
                        true,
                        *pid,
                        Some(format!("running ({held}) but {why}")),
                        store_error,
                    )
                }
                NodeLockState::Free | NodeLockState::Absent => (false, None, None, None),
                NodeLockState::NotALockFile(what) => (
                    false,
                    None,
                    Some(format!(
                        "{} is {what}, not a node lock file: it cannot tell whether a node runs",
                        lock_path.display()
                    )),
                    None,
                ),
                NodeLockState::Unreadable(e) => (
                    false,
                    None,
                    Some(format!("cannot tell whether a node runs: {e}")),
                    None,
                ),
            }
        };
        let store = node_area.as_ref().and_then(|a| a.store.clone());
        if store.is_some() {
            store_error = None;
        }
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
                http: None,
                removed_by_node: true,
                stats: None,
                stats_error: None,
            });
        }
        // A refused file that is a live worker's area is already reported
        // on that worker's line: listed once.
        let refused = status
            .refused
            .iter()
            .filter(|(name, _)| {
                !workers
                    .iter()
                    .any(|w| w.stats_error.is_some() && area_name(w.pid, &w.worker_id) == *name)
            })
            .cloned()
            .collect();
        let problems = unreadable.iter().map(|u| u.to_string()).collect();
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
            node_running,
            node_pid,
            node_error,
            node_lock,
            store,
            store_error,
            store_connections,
            store_connections_unlisted,
            problems,
            unreadable,
            refused,
        })
    }
}

/// The node's area among `stats-<pid>-*` (its name's id part is the
/// node's id, which only its entry says): the first that reads as a node's
/// area of that pid.
fn find_node_area(session: &Session, pid: u32) -> Option<AreaSnapshot> {
    let prefix = format!("stats-{pid}-");
    session
        .segment_names()
        .ok()?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .filter_map(|n| read_area(session, &n).ok())
        .find(|a| a.role == AreaRole::Node && a.pid == pid)
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
            match (&self.node, &self.node_error) {
                (Some(id), _) => format!("{id}"),
                (None, Some(e)) if self.node_running => e.clone(),
                (None, Some(e)) => format!("unknown: {e}"),
                (None, None) => "not running".into(),
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
            if let Some(a) = w.http {
                t.push(format!("http {a}"));
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
            if s.connections_unlisted > 0 {
                writeln!(
                    f,
                    "    … and {} more connection(s), not listed (an area lists {MAX_CONNECTIONS})",
                    s.connections_unlisted
                )?;
            }
            for h in &s.handlers {
                writeln!(
                    f,
                    "    handler {}: count {}, queueing mean {} max {}, execution mean {} max {}",
                    crate::one_line(&h.name),
                    h.count,
                    dur(h.mean_queue_ns()),
                    dur(h.max_queue_ns),
                    dur(h.mean_exec_ns()),
                    dur(h.max_exec_ns)
                )?;
            }
            if s.handlers_unlisted > 0 {
                writeln!(
                    f,
                    "    … and {} more handler(s), not listed (an area lists {MAX_HANDLERS})",
                    s.handlers_unlisted
                )?;
            }
        }
        if let (None, Some(e)) = (&self.store, &self.store_error) {
            writeln!(f, "  store: figures unavailable: {e}")?;
        }
        if let Some(st) = &self.store {
            let s = &st.stats;
            writeln!(
                f,
                "  store: capacity {} bytes, used {} bytes, {} object(s) ({} sealed, {} evictable, {} in fallback files), metadata {} of {} bytes",
                s.capacity,
                s.used,
                s.objects,
                s.sealed,
                s.evictable,
                s.fallback_objects,
                s.metadata_used,
                s.metadata_capacity
            )?;
            for c in &self.store_connections {
                write_connection(f, "    client", c)?;
            }
            if self.store_connections_unlisted > 0 {
                writeln!(
                    f,
                    "    … and {} more client(s), not listed (an area lists {MAX_CONNECTIONS})",
                    self.store_connections_unlisted
                )?;
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
        // The node's own unreadable entry is named in the first line.
        for u in self.unreadable.iter().filter(|u| !u.node) {
            writeln!(f, "  {u}")?;
        }
        for (name, what) in &self.refused {
            writeln!(
                f,
                "  {name} ({what}): named like a segment but not a regular file: refused (not opened), left alone"
            )?;
        }
        Ok(())
    }
}
