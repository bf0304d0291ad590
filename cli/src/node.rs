//! `shmwire node --session S …`: parses, starts `shmwire::node::Node`,
//! prints what each round did, and stops it on SIGINT/SIGTERM.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use shmwire::node::{Node, NodeConfig, TickReport};
use shmwire::shm::{self, Session};

use crate::{CliResult, NodeArgs};

/// The line `shmwire node` prints once it serves (tests wait for it).
pub const READY_LINE: &str = "node ready";

fn print_tick(r: &TickReport) {
    for d in &r.died {
        println!(
            "worker {}{} (pid {}) died",
            d.worker_id,
            d.name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default(),
            d.pid
        );
    }
    let c = &r.cleanup;
    if r.removed_anything() {
        println!(
            "removed: segments {:?}, lock files {:?}, other {:?}",
            c.removed_segments, c.removed_lock_files, c.removed_other
        );
    }
    for e in &c.errors {
        eprintln!("shmwire node: cleanup: {e}");
    }
    let _ = std::io::stdout().flush();
}

/// Runs `shmwire node`.
pub fn run(args: NodeArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let session = Session::open_in(&root, &args.session)?;
    let mut config = NodeConfig::new(args.store_capacity);
    config.fallback_dir = args.fallback_dir;
    config.listen = args.listen;
    config.object_listen = args.object_listen;
    let mut node = match Node::start(&session, config) {
        Ok(n) => n,
        Err(e) => {
            // Leave nothing of ours behind (another node may be running).
            let _ = session.remove_all();
            return Err(e.into());
        }
    };
    println!(
        "{READY_LINE}: session {} ({}), node {}, http://{}, objects {}, pid {}",
        session.name(),
        session.dir().display(),
        node.id(),
        node.http_addr(),
        node.object_addr()
            .map_or_else(|| "none".to_owned(), |a| a.to_string()),
        std::process::id()
    );
    let _ = std::io::stdout().flush();
    node.run(&stop, print_tick);
    let report = node.shutdown()?;
    println!(
        "node stopped; session directory {}",
        if report.removed_dir {
            "removed"
        } else {
            "kept (other processes live)"
        }
    );
    Ok(())
}
