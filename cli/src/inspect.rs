//! `shmwire inspect [--session S] [--json] [--root DIR]`: prints what
//! `shmwire::node::SessionReport` gathers (text, or the `shmwire-inspect/1`
//! JSON document described in docs/node.md), and with `--session` in text
//! the session's processes and segment headers too.

use std::path::PathBuf;

use serde_json::{json, Value};
use shmwire::node::{
    inspect::{state_name, transport_name},
    ConnectionFigures, SessionReport, WorkerReport,
};
use shmwire::shm::{self, Session};

use crate::CliResult;

/// The `schema` field of the JSON document.
pub const SCHEMA: &str = "shmwire-inspect/1";

fn connection_json(c: &ConnectionFigures) -> Value {
    let ring = |used: usize, cap: usize| json!({ "used": used, "capacity": cap });
    json!({
        "peer": c.peer.to_string(),
        "pid": c.pid,
        "transport": transport_name(c.transport),
        "rx_ring": c.ring.map(|r| ring(r.rx_used, r.rx_capacity)),
        "tx_ring": c.ring.map(|r| ring(r.tx_used, r.tx_capacity)),
        "pending_send_bytes": c.pending_send,
    })
}

fn worker_json(w: &WorkerReport) -> Value {
    let mut transports = Vec::new();
    if w.shm {
        transports.push("shm");
    }
    if w.tcp.is_some() {
        transports.push("tcp");
    }
    let stats = w.stats.as_ref();
    let connections: Vec<Value> = stats
        .map(|s| s.connections.iter().map(connection_json).collect())
        .unwrap_or_default();
    let handlers: Vec<Value> = stats
        .map(|s| {
            s.handlers
                .iter()
                .map(|h| {
                    json!({
                        "name": h.name,
                        "count": h.count,
                        "queueing_mean_ns": h.mean_queue_ns(),
                        "queueing_max_ns": h.max_queue_ns,
                        "execution_mean_ns": h.mean_exec_ns(),
                        "execution_max_ns": h.max_exec_ns,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "worker_id": w.worker_id.to_string(),
        "name": w.name,
        "pid": w.pid,
        "live": w.live,
        "removed_by_node": w.removed_by_node,
        "transports": transports,
        "tcp": w.tcp.map(|a| a.to_string()),
        "http": w.http.map(|a| a.to_string()),
        "connections": connections,
        "connections_unlisted": stats.map_or(0, |s| s.connections_unlisted),
        "handlers": handlers,
        "handlers_unlisted": stats.map_or(0, |s| s.handlers_unlisted),
        "stats_updated_unix_ms": stats.map(|s| s.updated_unix_ms),
        "stats_error": w.stats_error,
    })
}

fn session_json(r: &SessionReport) -> Value {
    let store = r.store.as_ref().map(|st| {
        let s = &st.stats;
        json!({
            "capacity": s.capacity,
            "used": s.used,
            "objects": s.objects,
            "sealed": s.sealed,
            "evictable": s.evictable,
            "fallback_objects": s.fallback_objects,
            "metadata_used": s.metadata_used,
            "metadata_capacity": s.metadata_capacity,
            "largest": st.largest.iter().map(|o| json!({
                "object_id": o.id.to_string(),
                "data_size": o.data_size,
                "state": state_name(o.state),
                "holders": o.holders,
                "fallback": o.fallback,
            })).collect::<Vec<_>>(),
            "connections": r.store_connections.iter().map(connection_json).collect::<Vec<_>>(),
            "connections_unlisted": r.store_connections_unlisted,
        })
    });
    json!({
        "name": r.name,
        "dir": r.dir.display().to_string(),
        "live": r.live,
        "processes": { "live": r.processes_live, "dead": r.processes_dead },
        "segments": r.segments,
        "node": r.node.map(|id| id.to_string()),
        "node_running": r.node_running,
        "node_pid": r.node_pid,
        "node_error": r.node_error,
        "workers": r.workers.iter().map(worker_json).collect::<Vec<_>>(),
        "store": store,
        "store_error": r.store_error,
        "problems": r.problems,
        "unreadable_entries": r.unreadable.iter().map(|u| json!({
            "path": u.path.display().to_string(),
            "live": u.live,
            "pid": u.pid,
            "error": u.cause,
            "node": u.node,
        })).collect::<Vec<_>>(),
        "refused": r.refused.iter().map(|(name, what)| json!({
            "name": name,
            "type": what,
        })).collect::<Vec<_>>(),
    })
}

/// `" (it does not exist)"` when `root` is missing (a mistyped `--root` or
/// `SHMWIRE_ROOT` reads as "no sessions" otherwise), else nothing.
pub fn missing_note(root: &std::path::Path) -> &'static str {
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => " (it does not exist)",
        _ => "",
    }
}

/// Runs `shmwire inspect`.
pub fn run(session: Option<String>, json: bool, root: Option<PathBuf>) -> CliResult {
    let root = root.unwrap_or_else(shm::default_root);
    // The root is checked before anything in it is used.
    let scan = Session::scan_root(&root)?;
    let names = match &session {
        Some(n) => vec![n.clone()],
        None => scan.sessions.clone(),
    };
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let r =
            Session::attach_in(&root, name).and_then(|s| SessionReport::gather(&s).map(|r| (s, r)));
        match r {
            Ok(x) => reports.push(x),
            // With --session the session must be there; while listing, one
            // that vanished or is unreadable is reported and the rest shown.
            Err(e) if session.is_some() => return Err(e.into()),
            Err(e) => errors.push(format!("{name}: {}", crate::error_chain(&e))),
        }
    }
    if json {
        let doc = json!({
            "schema": SCHEMA,
            "root": root.display().to_string(),
            "sessions": reports.iter().map(|(_, r)| session_json(r)).collect::<Vec<_>>(),
            "foreign": if session.is_some() { Vec::new() } else { scan.foreign },
            "errors": errors,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if session.is_none() {
        outln!(
            "root {}: {} session(s){}",
            root.display(),
            scan.sessions.len(),
            missing_note(&root)
        );
        for (_, r) in &reports {
            let live_workers = r.workers.iter().filter(|w| w.live).count();
            outln!(
                "  {}  ({}) {} segment(s), {} worker(s) ({} live){}, {} process(es) ({} live)",
                r.name,
                if r.live { "live" } else { "dead" },
                r.segments,
                r.workers.len(),
                live_workers,
                match r.unreadable.len() {
                    0 => String::new(),
                    n => format!(
                        ", {n} unreadable directory entr{}",
                        if n == 1 { "y" } else { "ies" }
                    ),
                },
                r.processes_live + r.processes_dead,
                r.processes_live,
            );
        }
        for e in &errors {
            outln!("  ? ({e})");
        }
        for f in &scan.foreign {
            outln!("  {f}: not a shmwire session, left alone");
        }
        for (_, r) in reports.iter().filter(|(_, r)| r.live) {
            outln!();
            out!("{r}");
        }
        return Ok(());
    }
    let Some((session, report)) = reports.pop() else {
        return Ok(());
    };
    out!("{report}");
    let status = session.status()?;
    for p in &status.live_owners {
        outln!("  process {p}: alive");
    }
    for p in &status.dead_owners {
        outln!("  process {p}: dead");
    }
    for f in &status.foreign {
        outln!("  {f}: not made by shmwire, left alone");
    }
    for i in session.inspect()? {
        // A segment-named file that is not a regular file is listed once,
        // by the report above (or under the worker whose area it is).
        if status.refused.iter().any(|(name, _)| *name == i.name) {
            continue;
        }
        outln!("  {}  {} bytes", i.name, i.file_size);
        if let Some(h) = &i.header {
            outln!(
                "    magic {:#018x} version {} kind {} total {} payload {}+{} init {:#x} creator pid {} tag {}",
                h.magic,
                h.version,
                shm::kind::describe(h.kind),
                h.total_size,
                h.payload_offset,
                h.payload_len,
                h.init_state,
                h.creator_pid,
                h.creator_tag_str().unwrap_or("<none>")
            );
        }
        // The cleanup pass's own classification: what inspect says cleanup
        // does is what it does.
        outln!(
            "    {}; {}",
            i.problem.as_deref().unwrap_or("valid"),
            i.fate.describe()
        );
    }
    Ok(())
}
