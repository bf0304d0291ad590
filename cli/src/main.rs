//! The `shmwire` command line.
//!
//! ```text
//! shmwire demo [--tasks N] [--window W] [--transport both|shm|tcp] [--wait spin|park|eventfd]
//! shmwire bench <limit|ring|transport|store|all> [--json] [--iters N] [--plot DIR]
//!                                              shmwire and its peers in the same run
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
    /// Benchmarks: shmwire and its peers in the same run, two pinned
    /// processes, each case next to a fresh measurement of the raw atomic
    /// limit.
    Bench(BenchArgs),
    /// Remove what dead processes left: in one session, or in every session
    /// under the root (and sessions nothing live is left in). Never removes
    /// a live process's files or anything shmwire did not make.
    Cleanup(CleanupArgs),
    /// List sessions (live or dead), or one session's processes, workers
    /// and segments with their header fields.
    Inspect(InspectArgs),
    /// The actor worker of `demo` (internal).
    #[command(name = demo::WORKER_SUBCOMMAND, hide = true)]
    DemoWorker(demo::WorkerArgs),
    /// Child role of `bench` (internal).
    #[command(name = bench::CHILD_SUBCOMMAND, hide = true)]
    BenchChild {
        /// `key=value` words set by the parent.
        words: Vec<String>,
    },
}

/// Arguments of `shmwire bench`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = bench_modes_help())]
struct BenchArgs {
    /// What to measure (`all`: every mode in turn).
    #[arg(value_name = "MODE", value_parser = clap::builder::PossibleValuesParser::new(bench::modes::names()))]
    mode: String,
    /// Print exactly one JSON document instead of a table (for `all`: one
    /// document whose `modes` array holds each mode's document).
    #[arg(long)]
    json: bool,
    /// Round trips per case (default: 200000 for spinning cases, 20000
    /// for blocking ones).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    iters: Option<u64>,
    /// Also write each mode's latency distribution (CDF, log-scale latency)
    /// with every case on one chart to `DIR/<mode>.svg`.
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
}

/// The modes, one line each, for `shmwire bench --help`.
fn bench_modes_help() -> String {
    let mut out = String::from("Modes:\n");
    for m in bench::modes::MODES {
        out.push_str(&format!("  {:<10} {}\n", m.name, m.about));
    }
    out.push_str(&format!(
        "  {:<10} every mode above, in turn\n",
        bench::modes::ALL
    ));
    out
}

/// Arguments of `shmwire cleanup`.
#[derive(Debug, clap::Args)]
struct CleanupArgs {
    /// Clean up this session (its directory too, if nothing live is left).
    #[arg(long, value_name = "S", required_unless_present = "all_stale")]
    session: Option<String>,
    /// Clean up every session under the root.
    #[arg(long, conflicts_with = "session")]
    all_stale: bool,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire-<euid>).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// Arguments of `shmwire inspect`.
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Session to inspect (default: list the sessions).
    #[arg(long, value_name = "S")]
    session: Option<String>,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire-<euid>).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn run_bench(args: BenchArgs) -> CliResult {
    let modes = bench::modes::select(&args.mode)
        .ok_or_else(|| format!("unknown bench mode {:?}", args.mode))?;
    let opts = bench::Options {
        iters: args.iters,
        progress: true,
    };
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir).map_err(|e| format!("--plot {}: {e}", dir.display()))?;
    }
    let mut docs = Vec::new();
    for (i, mode) in modes.iter().enumerate() {
        let report = (mode.run)(&opts)?;
        if let Some(dir) = &args.plot {
            let path = dir.join(format!("{}.svg", mode.name));
            bench::plot::write_cdf(&report, &path)
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        if args.json {
            docs.push(bench::to_json(&report));
        } else {
            if i > 0 {
                println!();
            }
            print!("{}", bench::to_table(&report));
        }
    }
    if args.json {
        let doc = if args.mode == bench::modes::ALL {
            serde_json::json!({ "modes": docs })
        } else {
            docs.pop().ok_or("no report")?
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

/// One line (and the errors) of a session's cleanup report; whether it
/// had errors.
fn print_cleanup(name: &str, r: &shm::CleanupReport) -> bool {
    let mut line = format!(
        "session {name}: removed {} stale segment(s) {:?}, {} dead lock file(s), {} other file(s) {:?}",
        r.removed_segments.len(),
        r.removed_segments,
        r.removed_lock_files.len(),
        r.removed_other.len(),
        r.removed_other,
    );
    if r.removed_dir {
        line.push_str(", and the session directory");
    }
    line.push_str(&format!(
        "; kept {} live, {} young untagged",
        r.live_segments.len() + r.live_other.len() + r.live_owners.len(),
        r.kept_untagged.len()
    ));
    if !r.ignored.is_empty() {
        line.push_str(&format!("; left alone (not shmwire's): {:?}", r.ignored));
    }
    if r.busy {
        line.push_str("; busy (being set up), skipped");
    }
    if r.vanished {
        line.push_str("; vanished meanwhile");
    }
    println!("{line}");
    for e in &r.errors {
        eprintln!("shmwire: session {name}: {e}");
    }
    !r.errors.is_empty()
}

fn run_cleanup(args: CleanupArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let mut failed = false;
    if let Some(name) = args.session {
        // The root is checked like a session before anything in it is used.
        Session::scan_root(&root)?;
        let session = Session::attach_in(&root, &name)?;
        failed |= print_cleanup(&name, &session.cleanup()?);
    } else {
        let done = Session::sweep_root(&root)?;
        if done.sessions.is_empty() {
            println!("no sessions under {}", root.display());
        }
        for (name, r) in &done.sessions {
            failed |= print_cleanup(name, r);
        }
        for f in &done.foreign {
            println!("left alone (not a shmwire session): {f}");
        }
    }
    if failed {
        return Err("some files could not be cleaned up (see above)".into());
    }
    Ok(())
}

fn run_inspect(args: InspectArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let Some(name) = args.session else {
        let scan = Session::scan_root(&root)?;
        println!(
            "root {}: {} session(s)",
            root.display(),
            scan.sessions.len()
        );
        for s in scan.sessions {
            let line = Session::attach_in(&root, &s)
                .and_then(|s| s.status())
                .map(|st| {
                    format!(
                        "({}) {} segment(s), {} worker(s) ({} live), {} process(es) ({} live)",
                        if st.is_live() { "live" } else { "dead" },
                        st.segments,
                        st.live_entries.len() + st.dead_entries.len(),
                        st.live_entries.len(),
                        st.live_owners.len() + st.dead_owners.len(),
                        st.live_owners.len(),
                    )
                })
                .unwrap_or_else(|e| format!("? ({e})"));
            println!("  {s}  {line}");
        }
        for f in scan.foreign {
            println!("  {f}: not a shmwire session, left alone");
        }
        return Ok(());
    };
    Session::scan_root(&root)?;
    let session = Session::attach_in(&root, &name)?;
    let status = session.status()?;
    let infos = session.inspect()?;
    println!(
        "session {} ({}; {} segment(s))",
        session.dir().display(),
        if status.is_live() { "live" } else { "dead" },
        infos.len()
    );
    for p in &status.live_owners {
        println!("  process {p}: alive");
    }
    for p in &status.dead_owners {
        println!("  process {p}: dead");
    }
    let workers = shmwire::node::Directory::for_session(&session)?.workers()?;
    for w in workers {
        let who = match &w.endpoint {
            Some(e) => format!(
                "{}{}",
                e.worker_id,
                e.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            None => w.path.display().to_string(),
        };
        println!("  worker {who}: {}", if w.live { "alive" } else { "dead" });
    }
    for f in &status.foreign {
        println!("  {f}: not made by shmwire, left alone");
    }
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
        Command::DemoWorker(args) => demo::run_worker(&args),
        Command::Bench(args) => run_bench(args),
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
