//! The `shmwire` command line.
//!
//! ```text
//! shmwire demo [--tasks N] [--window W] [--transport both|shm|tcp] [--wait spin|park|eventfd]
//! shmwire bench ring [--json] [--iters N]      cross-process ring comparison
//! shmwire bench transport [--json] [--iters N] Connection round trips: shm, TCP, peers
//! shmwire cleanup (--session S | --all-stale) [--root DIR]
//! shmwire inspect [--session S] [--root DIR]   segments and their headers
//! ```
//!
//! Each subcommand is one variant of [`Command`] with its own `run_*`
//! function; add a subcommand by adding a variant and a match arm in
//! [`main`].

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shmwire::shm::{self, Session};
use shmwire_bench as bench;

/// shmwire: Ray-style tasks between worker processes over shared memory.
#[derive(Debug, Parser)]
#[command(name = "shmwire", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Two worker processes trading Ray-style actor tasks over shared memory
    /// and TCP through every layer of shmwire (the main job).
    Demo(demo::DemoArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Remove shared-memory segments: a whole session, or every segment
    /// whose creating process is dead.
    Cleanup(CleanupArgs),
    /// List sessions, or the segments of one session with their header fields.
    Inspect(InspectArgs),
    /// The actor worker of `demo` (internal).
    #[command(name = demo::WORKER_SUBCOMMAND, hide = true)]
    DemoWorker(demo::WorkerArgs),
    /// Child role of `bench ring` (internal).
    #[command(name = bench::CHILD_SUBCOMMAND, hide = true)]
    BenchChild {
        /// `key=value` words set by the parent.
        words: Vec<String>,
    },
}

/// What to benchmark.
#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Round trips and throughput through the shared-memory ring, beside the
    /// raw atomic limit and Unix socket / pipe / crossbeam peers.
    Ring {
        /// Print exactly one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Round trips per case (default: 200000 for spinning cases, 20000
        /// for blocking ones).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        iters: Option<u64>,
    },
    /// Round trips of a 256-byte message through the transport's
    /// `Connection` API (shm spin/futex/eventfd, TCP) beside raw TCP loopback
    /// and a Unix socket, each next to a fresh raw atomic limit.
    Transport {
        /// Print exactly one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Round trips per case (default: 200000 for shared-memory cases,
        /// 20000 for socket ones).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        iters: Option<u64>,
    },
}

/// Arguments of `shmwire cleanup`.
#[derive(Debug, clap::Args)]
struct CleanupArgs {
    /// Remove every segment and lock file of this session, and its directory.
    #[arg(long, value_name = "S", required_unless_present = "all_stale")]
    session: Option<String>,
    /// Remove the segments of dead creators in every session.
    #[arg(long, conflicts_with = "session")]
    all_stale: bool,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// Arguments of `shmwire inspect`.
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Session to inspect (default: list the sessions).
    #[arg(long, value_name = "S")]
    session: Option<String>,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn run_bench(what: BenchCommand) -> CliResult {
    let (report, json) = match what {
        BenchCommand::Ring { json, iters } => (bench::run(&bench::Options { iters })?, json),
        BenchCommand::Transport { json, iters } => {
            (bench::transport::run(&bench::Options { iters })?, json)
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&bench::to_json(&report))?
        );
    } else {
        print!("{}", bench::to_table(&report));
    }
    Ok(())
}

fn run_cleanup(args: CleanupArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    if let Some(name) = args.session {
        let session = Session::attach_in(&root, &name)?;
        let r = session.remove_all()?;
        println!(
            "session {name}: removed {} segment(s), {} lock file(s), {} other file(s)",
            r.removed_segments.len(),
            r.removed_lock_files.len(),
            r.ignored.len()
        );
    } else {
        let reports = Session::cleanup_all_stale(&root)?;
        if reports.is_empty() {
            println!("no sessions under {}", root.display());
        }
        for (name, r) in reports {
            println!(
                "session {name}: removed {} stale segment(s) {:?}, {} dead lock file(s); kept {} live, {} young untagged",
                r.removed_segments.len(),
                r.removed_segments,
                r.removed_lock_files.len(),
                r.live_segments.len(),
                r.kept_untagged.len()
            );
        }
    }
    Ok(())
}

fn run_inspect(args: InspectArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let Some(name) = args.session else {
        let sessions = Session::list_sessions(&root)?;
        println!("root {}: {} session(s)", root.display(), sessions.len());
        for s in sessions {
            let n = Session::attach_in(&root, &s)
                .and_then(|s| s.segment_names())
                .map(|v| v.len().to_string())
                .unwrap_or_else(|e| format!("? ({e})"));
            println!("  {s}  ({n} segment(s))");
        }
        return Ok(());
    };
    let session = Session::attach_in(&root, &name)?;
    let infos = session.inspect()?;
    println!(
        "session {} ({} segment(s))",
        session.dir().display(),
        infos.len()
    );
    for i in infos {
        println!("  {}  {} bytes", i.name, i.file_size);
        if let Some(h) = &i.header {
            println!(
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
        let alive = match i.creator_alive {
            Some(true) => "alive",
            Some(false) => "dead (stale)",
            None => "unknown",
        };
        println!(
            "    creator {alive}; {}",
            i.problem.as_deref().unwrap_or("valid")
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::DemoWorker(args) => return demo::worker_main(&args),
        Command::Bench { what } => run_bench(what),
        Command::Cleanup(args) => run_cleanup(args),
        Command::Inspect(args) => run_inspect(args),
        Command::BenchChild { words } => bench::transport::child_main(&words),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmwire: {e}");
            ExitCode::FAILURE
        }
    }
}
