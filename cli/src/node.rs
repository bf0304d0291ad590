//! `shmwire node --session S …`: parses, starts `shmwire::node::Node`,
//! prints what each round did, and stops it on SIGINT/SIGTERM/SIGHUP
//! (`interrupt`). A cleanup error is printed when it first appears, not
//! every round while it lasts; when it ends, a line says so.

use std::collections::BTreeSet;
use std::sync::Arc;

use shmwire::node::{Node, NodeConfig, TickReport};
use shmwire::shm::{self, Session};

use crate::interrupt::Interrupt;

use crate::{CliResult, NodeArgs};

/// The line `shmwire node` prints once it serves (tests wait for it).
pub const READY_LINE: &str = "node ready";

/// Prints round `r`: the workers that died, what was removed, and the
/// cleanup errors not in `errors` (the last round's, replaced by this
/// round's).
fn print_tick(
    r: &TickReport,
    errors: &mut BTreeSet<String>,
) -> Result<(), crate::out::StdoutError> {
    for d in &r.died {
        outln!(
            "worker {}{} (pid {}) died",
            d.worker_id,
            d.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            d.pid
        );
    }
    if r.restored.any() {
        errln!(
            "shmwire node: removed or replaced under it, put back: {}",
            r.restored.describe()
        );
    }
    if r.store_restored.any() {
        errln!(
            "shmwire node: removed or replaced under its store, put back: {}",
            r.store_restored.describe()
        );
    }
    let c = &r.cleanup;
    if r.removed_anything() {
        outln!(
            "removed: segments {:?}, lock files {:?}, other {:?}",
            c.removed_segments,
            c.removed_lock_files,
            c.removed_other
        );
    }
    let now: BTreeSet<String> = c.errors.iter().cloned().collect();
    for e in now.difference(errors) {
        errln!(
            "shmwire node: cleanup: {} (said once while it lasts)",
            shmwire::terminal_safe(&e.to_string())
        );
    }
    if now.is_empty() && !errors.is_empty() {
        errln!("shmwire node: cleanup: no errors any more");
    }
    *errors = now;
    Ok(())
}

/// Why the session directory is still there after the node's last pass
/// (or "removed"): only a live process is called one.
fn kept_because(r: &shm::CleanupReport) -> String {
    if r.removed_dir {
        "removed".to_owned()
    } else if r.vanished {
        "already gone from its path (removed, renamed or replaced under the node while it ran)"
            .to_owned()
    } else if r.has_live() {
        "kept (other processes live)".to_owned()
    } else if !r.ignored.is_empty() || !r.kept_untagged.is_empty() {
        format!(
            "kept (files shmwire did not make, left alone: {:?})",
            r.ignored.iter().chain(&r.kept_untagged).collect::<Vec<_>>()
        )
    } else if !r.errors.is_empty() {
        format!("kept (cleanup failed: {})", r.errors.join("; "))
    } else {
        "kept".to_owned()
    }
}

/// Runs `shmwire node`.
pub fn run(args: NodeArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let stop = Interrupt::register()?;
    // The root is made here, not by `Session::open`, to know whether this
    // node made it: a start that fails takes it back when it is empty
    // (`remove_dir` refuses one another process put a session in since).
    let made_root = shm::ensure_root(&root)?;
    let forget_root = || {
        if made_root {
            let _ = std::fs::remove_dir(&root);
        }
    };
    let session = Session::open_in(&root, &args.session).inspect_err(|_| forget_root())?;
    let mut config = NodeConfig::new(args.store_capacity);
    config.fallback_dir = args.fallback_dir;
    config.listen = args.listen;
    config.object_listen = args.object_listen;
    let mut node = match Node::start(&session, config) {
        Ok(n) => n,
        Err(e) => {
            // Leave nothing of ours behind (another node may be running).
            let _ = session.remove_all();
            forget_root();
            return Err(e.into());
        }
    };
    outln!(
        "{READY_LINE}: session {} ({}), node {}, http://{}, objects {}, pid {}",
        session.name(),
        session.dir().display(),
        node.id(),
        node.http_addr(),
        node.object_addr()
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        std::process::id()
    );
    // A closed stdout ends the node as SIGTERM does (see `out`).
    let stop2 = Arc::clone(stop.flag());
    let mut errors = BTreeSet::new();
    // An error here: the session directory went (the node stops itself).
    let ran = node.run(stop.flag(), |r| {
        if print_tick(r, &mut errors).is_err() {
            stop2.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let report = node.shutdown()?;
    // Best effort: stdout may be closed by now (the node still stopped).
    let _ = crate::out::write(
        format_args!("node stopped; session directory {}", kept_because(&report)),
        "\n",
    );
    Ok(ran?)
}
