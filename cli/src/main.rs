//! The `shmwire` command line.
//!
//! ```text
//! shmwire demo [--tasks N] [--window W] [--transport both|shm|tcp] [--wait spin|park|eventfd]
//! shmwire bench <limit|ring|transport|actor-call|store|all> [--json] [--iters N] [--plot DIR]
//!                                              shmwire and its peers in the same run
//! shmwire node --session S [--store-capacity BYTES] [--store-metadata-capacity BYTES] [--fallback-dir DIR] [--listen ADDR] [--object-listen ADDR] [--root DIR]
//!                                              a host's session: store, liveness, cleanup, HTTP, object pulls
//! shmwire cleanup (--session S | --all-stale) [--dry-run] [--root DIR]
//! shmwire inspect [--session S] [--json] [--root DIR]
//!                                              sessions, workers, connections, store, handlers
//! ```
//!
//! Each subcommand is one variant of [`Command`] with its own `run_*`
//! function; add a subcommand by adding a variant and a match arm in
//! [`main`].

#[macro_use]
mod out;

mod demo;
mod inspect;
mod interrupt;
mod node;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shmwire::shm::{self, Session};
use shmwire_bench as bench;

/// shmwire: Ray-style tasks between worker processes over shared memory.
#[derive(Debug, Parser)]
#[command(
    name = "shmwire",
    version,
    about,
    after_help = "A reader that closes stdout early (`shmwire demo | head -1`) ends any \
                  subcommand quietly: it stops what it started and exits with status 0, \
                  without a message (`node` stops as on SIGTERM at its next line of output)."
)]
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
    /// limit. SIGINT/SIGTERM/SIGHUP end the run after the measurement it is
    /// in, removing its session.
    Bench(BenchArgs),
    /// Run a host's session: its object store, the liveness and cleanup of
    /// dead workers, an HTTP endpoint (`/health`, `/inspect`). Stops on
    /// SIGINT/SIGTERM/SIGHUP, removing its own files; exits with an error
    /// if its session directory is removed under it.
    Node(NodeArgs),
    /// Remove what dead processes left: in one session, or in every session
    /// under the root (and sessions nothing live is left in). Never removes
    /// a live process's files or anything shmwire did not make, but for two
    /// kinds of regular file in a session directory: one named as a dead
    /// process's segment (by the pid in its name) whose header lacks
    /// shmwire's magic (taken for its corrupt segment), and one whose name
    /// could be a segment's, too short for a segment header and older than
    /// 10 s (taken for a segment left half made). A running node removes
    /// them too.
    Cleanup(CleanupArgs),
    /// List sessions (live or dead) with their workers, connections (ring
    /// fill), store and per-handler statistics; with --session, also the
    /// session's processes and segments with their header fields.
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
    /// Round trips per case, at least 1 (default: 200000 for spinning
    /// cases, 20000 for blocking ones).
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

/// Arguments of `shmwire cleanup`: exactly one of `--session S` and
/// `--all-stale` (one group, so the usage line and the error for neither or
/// both name both forms).
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["session", "all_stale"])))]
struct CleanupArgs {
    /// Clean up this session (its directory too, if nothing live is left).
    #[arg(long, value_name = "S")]
    session: Option<String>,
    /// Clean up every session under the root.
    #[arg(long)]
    all_stale: bool,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire-<euid>).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// Arguments of `shmwire inspect`.
#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Session to inspect (default: every session).
    #[arg(long, value_name = "S")]
    session: Option<String>,
    /// Print one JSON document (schema `shmwire-inspect/1`, docs/node.md).
    #[arg(long)]
    json: bool,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire-<euid>).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// Arguments of `shmwire node`.
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The session to run (created if missing).
    #[arg(long, value_name = "NAME")]
    session: String,
    /// The store's arena in bytes (suffixes K, M, G: binary multiples).
    #[arg(long, value_name = "BYTES", default_value = "64M", value_parser = parse_store_capacity)]
    store_capacity: u64,
    /// Bytes of the store's own memory its objects' metadata may take, each
    /// object charged its metadata plus 768 bytes, and 128 more per client
    /// holding it (default: the arena's capacity, at least 64M; at least
    /// 66432).
    #[arg(long, value_name = "BYTES", value_parser = parse_metadata_capacity)]
    store_metadata_capacity: Option<u64>,
    /// Bytes that objects being pulled from other nodes may take in the
    /// store at once before they are sealed (default: half the arena; a
    /// pull beyond it waits in turn for others to end, or to give their
    /// room up when behind half their pace; one pull is let in whatever
    /// its size when no other is in progress; above the arena: no bound
    /// beyond the arena).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    store_pull_capacity: Option<u64>,
    /// Where the store puts objects as files when the arena is full.
    #[arg(long, value_name = "DIR")]
    fallback_dir: Option<PathBuf>,
    /// Address of the HTTP endpoint (`/health`, `/inspect`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Address of the object endpoint, where other nodes pull this node's
    /// objects (`StoreClient::pull`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    object_listen: std::net::SocketAddr,
    /// Session root (default: $SHMWIRE_ROOT or /dev/shm/shmwire-<euid>).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// `4096`, `64K`, `64M`, `1G` (binary multiples).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    match digits.parse::<u64>().ok().map(|n| n.checked_mul(mult)) {
        Some(Some(0)) => Err(format!("{s:?}: the size must be above 0 bytes")),
        Some(Some(n)) => Ok(n),
        Some(None) => Err(format!("{s:?} is more bytes than 64 bits can count")),
        None => Err(format!(
            "{s:?} is not a size in bytes (e.g. 4096, 64K, 64M, 1G)"
        )),
    }
}

/// [`parse_bytes`] within what the store's arena can be: at least one
/// 64-byte unit, at most `MAX_ARENA_CAPACITY` (sizes between are rounded
/// down to a multiple of 64 by the store).
fn parse_store_capacity(s: &str) -> Result<u64, String> {
    use shmwire::store::{MAX_ARENA_CAPACITY, OBJECT_ALIGN};
    match parse_bytes(s)? {
        n if n < OBJECT_ALIGN => Err(format!(
            "{s:?}: the store's arena needs at least {OBJECT_ALIGN} bytes"
        )),
        n if n > MAX_ARENA_CAPACITY => Err(format!(
            "{s:?}: the store's arena is at most {MAX_ARENA_CAPACITY} bytes (256 GiB - 64)"
        )),
        n => Ok(n),
    }
}

/// [`parse_bytes`], at least one object's largest charge against the
/// store's metadata capacity with its creator's hold
/// (`MIN_METADATA_CAPACITY`).
fn parse_metadata_capacity(s: &str) -> Result<u64, String> {
    use shmwire::store::{MAX_METADATA_LEN, MIN_METADATA_CAPACITY};
    let least = MIN_METADATA_CAPACITY;
    match parse_bytes(s)? {
        n if n < least => Err(format!(
            "{s:?}: the store's metadata capacity must hold one object's largest metadata \
             ({MAX_METADATA_LEN} bytes) and its bookkeeping: at least {least} bytes"
        )),
        n => Ok(n),
    }
}

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn run_bench(args: BenchArgs) -> CliResult {
    let modes = bench::modes::select(&args.mode)
        .ok_or_else(|| format!("unknown bench mode {:?}", args.mode))?;
    // A signal ends the run after the measurement it is in; the mode's
    // way out stops its children and removes its session (`interrupt`).
    let stop = interrupt::Interrupt::register()?;
    let opts = bench::Options {
        iters: args.iters,
        progress: true,
        stop: Some(std::sync::Arc::clone(stop.flag())),
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
            errln!("wrote {}", path.display());
        }
        if args.json {
            docs.push(bench::to_json(&report));
        } else {
            if i > 0 {
                outln!();
            }
            out!("{}", bench::to_table(&report));
        }
    }
    if args.json {
        let doc = if args.mode == bench::modes::ALL {
            serde_json::json!({ "modes": docs })
        } else {
            docs.pop().ok_or("no report")?
        };
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

/// One line (and the errors) of a session's cleanup report; whether it
/// had errors.
fn print_cleanup(name: &str, r: &shm::CleanupReport) -> Result<bool, out::StdoutError> {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut line = format!(
        "session {name}: {verb} {} stale segment(s) {:?}, {} dead lock file(s) {:?}, {} other file(s) {:?}",
        r.removed_segments.len(),
        r.removed_segments,
        r.removed_lock_files.len(),
        r.removed_lock_files,
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
    if !r.corrupt.is_empty() {
        line.push_str(&format!(
            "; of which corrupt (header failed validation, creator dead): {:?}",
            r.corrupt
        ));
    }
    if !r.ignored.is_empty() {
        line.push_str(&format!("; left alone (not shmwire's): {:?}", r.ignored));
    }
    if r.busy {
        line.push_str(
            "; busy (being set up, or in another pass): the rest is left to the next pass",
        );
    }
    if r.vanished {
        line.push_str("; vanished meanwhile");
    }
    outln!("{line}");
    for e in &r.errors {
        errln!("shmwire: session {name}: {e}");
    }
    Ok(!r.errors.is_empty())
}

fn run_cleanup(args: CleanupArgs) -> CliResult {
    let root = args.root.unwrap_or_else(shm::default_root);
    let mut failed = false;
    if let Some(name) = args.session {
        // The root is checked like a session before anything in it is used.
        Session::scan_root(&root)?;
        let session = Session::attach_in(&root, &name)?;
        let report = if args.dry_run {
            session.cleanup_dry_run()?
        } else {
            session.cleanup()?
        };
        failed |= print_cleanup(&name, &report)?;
    } else {
        let done = if args.dry_run {
            Session::sweep_root_dry_run(&root)?
        } else {
            Session::sweep_root(&root)?
        };
        if done.sessions.is_empty() {
            outln!(
                "no sessions under {}{}",
                root.display(),
                inspect::missing_note(&root)
            );
        }
        for (name, r) in &done.sessions {
            failed |= print_cleanup(name, r)?;
        }
        for f in &done.foreign {
            outln!("left alone (not a shmwire session): {f}");
        }
    }
    if failed {
        return Err("some files could not be cleaned up (see above)".into());
    }
    Ok(())
}

/// How the CLI prints an error: with every cause behind it (one function
/// for the library's log and the CLI).
pub(crate) use shmwire::error_chain;

/// With `RUST_LOG` set (e.g. `RUST_LOG=warn`), the library's `tracing`
/// events at the levels it selects go to stderr (a protocol violation cut
/// off by a worker or a caller is a warning). Without it nothing is
/// installed, so the output is only what each subcommand prints.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::from_default_env();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn main() -> ExitCode {
    init_logging();
    // Under a file-size limit (`ulimit -f`) the kernel sends SIGXFSZ to a
    // process that grows a file past it, and its default action kills it
    // without a word (the attack on `35c208a`: a node, the demo's worker,
    // bench children). Handled, the call fails with `EFBIG` instead and the
    // error says so; the library also checks the limit before it sizes a
    // file from a length it was given (`sys::fs::check_file_size`).
    if let Err(e) = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    ) {
        errln!("shmwire: cannot handle SIGXFSZ: {e}");
    }
    let cli = Cli::parse();
    // The demo's worker shares the driver's terminal: its lines, its
    // failure too, say whose they are, and the driver's last `shmwire:`
    // line is what ended the run.
    let who = match cli.command {
        Command::DemoWorker(_) => "demo worker",
        _ => "shmwire",
    };
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::DemoWorker(args) => demo::run_worker(&args),
        Command::Bench(args) => run_bench(args),
        Command::Cleanup(args) => run_cleanup(args),
        Command::Inspect(args) => inspect::run(args.session, args.json, args.root),
        Command::Node(args) => node::run(args),
        Command::BenchChild { words } => bench::transport::child_main(&words),
    };
    let ok = match result {
        Ok(()) => true,
        // The reader of stdout closed it: a normal end (see `out`).
        Err(e) if out::is_closed(e.as_ref()) => true,
        Err(e) => {
            errln!("{who}: {}", error_chain(e.as_ref()));
            false
        }
    };
    // What a long-running loop's output thread still holds (`out::background`),
    // written or, for a reader that does not read, given up after a while.
    let ok = match out::finish(out::FINISH_WAIT) {
        Some(e @ out::StdoutError::Io(_)) if ok => {
            errln!("{who}: {e}");
            out::finish(out::FINISH_WAIT);
            false
        }
        _ => ok,
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
