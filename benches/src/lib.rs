//! shmwire's benchmark harness (`shmwire-bench`): the cross-process
//! comparison of the ring ([`run`], `shmwire bench ring`) and of the
//! transport ([`transport::run`], `shmwire bench transport`), of whole
//! actor calls ([`actor_call::run`], `shmwire bench actor-call`) and of the
//! object store ([`store::run`], `shmwire bench store`) against the
//! physical limit and the usual peers, and the report as a table, JSON
//! ([`to_json`]) or an SVG latency CDF ([`plot::write_cdf`]). The modes
//! `shmwire bench` knows are listed once, in [`modes::MODES`].
//! The `shmwire` binary (`cli/`) and the criterion benches
//! (`benches/benches/`) both use it; the library does not depend on it.
//!
//! Every case runs as two real processes (this one measures, a re-executed
//! `shmwire __bench-child` echoes), each pinned to its own CPU when the
//! machine has two. Each case is preceded by a fresh measurement of the
//! limit (`limit/atomic-pingpong`), and one more limit measurement closes
//! the run, so every ratio is taken against the limit measured right next to
//! it: the host moves vCPUs between placements for minutes at a time, and a
//! ratio against a limit from another placement would mean nothing.

pub mod actor_call;
pub mod cases;
pub mod harness;
pub mod modes;
pub mod plot;
pub mod store;
pub mod transport;

use std::time::Duration;

use serde_json::{json, Value};
use shmwire::shm::Session;

use cases::{start, BenchEnv, CaseKind, Launcher, Pair};
use harness::{
    current_affinity, new_histogram, placement_class, restore_affinity, BenchResult, MachineInfo,
    Placement, Summary,
};
use hdrhistogram::Histogram;

/// Hidden subcommand the binary re-executes itself with for the child role.
pub const CHILD_SUBCOMMAND: &str = "__bench-child";

/// Default round trips per spinning case (and per limit measurement).
pub const DEFAULT_SPIN_ITERS: u64 = 200_000;
/// Default round trips per blocking case (sockets, pipes, channels, wake-ups).
pub const DEFAULT_BLOCKING_ITERS: u64 = 20_000;

/// Options of a `shmwire bench` mode.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Round trips per case (overrides both defaults).
    pub iters: Option<u64>,
    /// Show a progress line on stderr while the mode runs (only drawn when
    /// stderr is a terminal).
    pub progress: bool,
    /// Set (by a signal, `shmwire bench`) to end the run early: it is
    /// looked at before each measurement, and a set flag ends the mode
    /// with [`INTERRUPTED`] once the measurement running is over, after
    /// the mode's children are stopped and its session is removed.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The error of a run ended by [`Options::stop`].
pub const INTERRUPTED: &str = "interrupted";

impl Options {
    /// `Err(INTERRUPTED)` once [`Options::stop`] is set.
    fn check_stop(&self) -> BenchResult<()> {
        // Relaxed: a flag polled between measurements; it publishes nothing.
        match &self.stop {
            Some(s) if s.load(std::sync::atomic::Ordering::Relaxed) => Err(INTERRUPTED.into()),
            _ => Ok(()),
        }
    }
}

/// One measured case with its adjacent limit.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Case name.
    pub name: &'static str,
    /// Payload bytes per operation.
    pub payload_bytes: usize,
    /// Percentiles and rate.
    pub summary: Summary,
    /// Median of the limit measured just before this case, ns.
    pub limit_before_ns: u64,
    /// Median of the limit measured just after this case, ns.
    pub limit_after_ns: u64,
    /// `median / mean(limit_before, limit_after)`.
    pub ratio_to_limit: f64,
    /// How many times the case was measured (more than once when the
    /// placement changed during a measurement).
    pub attempts: u32,
    /// Whether the limits around the case agree (for the limit row: whether
    /// every limit measurement of the run saw the same placement).
    pub placement_stable: bool,
    /// Every sample of the kept measurement (for the limit row: of all its
    /// measurements), for latency plots.
    pub hist: Histogram<u64>,
}

/// The whole run of one mode.
#[derive(Clone, Debug)]
pub struct Report {
    /// The mode's name (`limit`, `ring`, `transport`, …).
    pub mode: &'static str,
    /// Machine facts.
    pub machine: MachineInfo,
    /// CPU placement.
    pub placement: Placement,
    /// Every limit measurement, in order.
    pub limits: Vec<Summary>,
    /// The limit over all its measurements, then every case.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Each case's median as a ratio to every peer measured in the same run
    /// on the same payload and of the same measure (round trip or one-way
    /// throughput): `(peer name, case median / peer median)`, in report
    /// order. Peers are the cases named `peer/…`; the limit and the peers
    /// themselves get none.
    pub fn ratios_to_peers(&self, case: &CaseResult) -> Vec<(&'static str, f64)> {
        let is_throughput = |name: &str| name.contains("throughput");
        if case.name.starts_with("peer/") || case.name.starts_with("limit/") {
            return Vec::new();
        }
        self.cases
            .iter()
            .filter(|p| {
                p.name.starts_with("peer/")
                    && p.payload_bytes == case.payload_bytes
                    && is_throughput(p.name) == is_throughput(case.name)
                    && p.summary.median_ns > 0
            })
            .map(|p| {
                (
                    p.name,
                    case.summary.median_ns as f64 / p.summary.median_ns as f64,
                )
            })
            .collect()
    }
}

/// Warm-up operations before a measurement of `n`.
pub(crate) fn warmup_for(n: u64) -> u64 {
    (n / 10).clamp(n.min(100), 20_000)
}

/// A case [`run_interleaved`] can measure: `bench ring`'s [`CaseKind`]s and
/// `bench transport`'s [`transport::TransportCase`]s.
pub trait Case: Copy {
    /// The case name in reports.
    fn name(self) -> &'static str;
    /// Payload bytes per operation.
    fn payload_bytes(self) -> usize;
    /// Operations per measurement, given the defaults for spinning and
    /// blocking cases.
    fn iterations(self, spin_iters: u64, blocking_iters: u64) -> u64;
    /// Starts the case: segments/sockets, the echoing child.
    fn start(self, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>>;
    /// Whether the case is measured in turns with the alternating cases
    /// next to it in the run (see [`run_interleaved`]). Default: no.
    fn alternates(self) -> bool {
        false
    }
}

impl Case for CaseKind {
    fn name(self) -> &'static str {
        CaseKind::name(self)
    }
    fn payload_bytes(self) -> usize {
        CaseKind::payload_bytes(self)
    }
    fn iterations(self, spin_iters: u64, blocking_iters: u64) -> u64 {
        if self.throughput() {
            // Frames are cheaper than round trips: stream ten times as many.
            spin_iters.saturating_mul(10)
        } else if self.blocking() {
            blocking_iters
        } else {
            spin_iters
        }
    }
    fn start(self, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>> {
        start(self, env)
    }
    fn alternates(self) -> bool {
        CaseKind::alternates(self)
    }
}

/// How many turns the cases of an alternating group take (see
/// [`run_interleaved`]): each measures a tenth of its operations per turn.
const TURNS: u64 = 10;

/// Measures `n` operations of each case of `group` (`case.iterations`),
/// each after a warmup: a group of one at once; a group of alternating
/// cases in [`TURNS`] turns, case after case, each turn on a freshly
/// started pair (so no case's child sits idle, waking for its liveness
/// checks, while another case is measured), so they see the same host
/// conditions. Returns each case's histogram and measured time; every child
/// is stopped before this returns. [`Options::stop`] is looked at before
/// each start and after each warmup; an error of a run whose stop is set (a
/// Ctrl-C also reaches the children and ends them) is [`INTERRUPTED`].
fn measure<C: Case>(
    group: &[C],
    opts: &Options,
    env: &mut BenchEnv,
    n: impl Fn(C) -> u64,
) -> BenchResult<Vec<(Histogram<u64>, Duration)>> {
    let turns = if group.len() > 1 { TURNS } else { 1 };
    let mut out: Vec<_> = group
        .iter()
        .map(|_| (new_histogram(), Duration::ZERO))
        .collect();
    for turn in 0..turns {
        for (&case, (hist, elapsed)) in group.iter().zip(&mut out) {
            let share = n(case) / turns + u64::from(turn < n(case) % turns);
            if share == 0 && turn > 0 {
                // `--iters` below the number of turns: nothing to measure in
                // this turn (a pair started and dropped at once would leave
                // its child waiting for a segment already gone).
                continue;
            }
            opts.check_stop()?;
            let result = (|| {
                let mut pair = case.start(env)?;
                pair.run(warmup_for(share), None)?;
                opts.check_stop()?;
                pair.run(share, Some(hist))
            })();
            match result {
                Ok(t) => *elapsed += t,
                Err(e) => {
                    opts.check_stop()?;
                    return Err(e);
                }
            }
        }
    }
    Ok(out)
}

/// Runs the ring comparison (`shmwire bench ring`).
pub fn run(opts: &Options) -> BenchResult<Report> {
    run_mode("ring", "bench", opts, cases::measured_cases())
}

/// Runs the limit alone (`shmwire bench limit`): the raw atomic ping-pong,
/// measured twice so the run still shows whether the placement held.
pub fn run_limit(opts: &Options) -> BenchResult<Report> {
    run_mode("limit", "bench-limit", opts, std::iter::empty::<CaseKind>())
}

/// Runs mode `mode`: pins this process, opens the session
/// `{session_tag}-{pid}`, measures `cases` between limit measurements
/// ([`run_interleaved`]), restores the affinity and removes the session.
pub fn run_mode<C: Case>(
    mode: &'static str,
    session_tag: &str,
    opts: &Options,
    cases: impl IntoIterator<Item = C>,
) -> BenchResult<Report> {
    let machine = MachineInfo::collect();
    let mut placement = Placement::choose();
    let saved = current_affinity();
    placement.pin_parent();
    // The root is made here, not by `Session::open`, to know whether this
    // run made it (and so removes it, if empty, at the end), as the demo does.
    let root = shmwire::shm::default_root();
    let made_root = shmwire::shm::ensure_root(&root)?;
    let session = match Session::open_in(&root, &format!("{session_tag}-{}", std::process::id())) {
        Ok(s) => s,
        Err(e) => {
            if made_root {
                let _ = std::fs::remove_dir(&root);
            }
            return Err(e.into());
        }
    };
    let launcher = Launcher {
        program: std::env::current_exe()?,
        args: vec![CHILD_SUBCOMMAND.to_owned()],
        env: Vec::new(),
    };
    let mut env = BenchEnv::new(session.clone(), launcher, placement.clone());
    let cases: Vec<C> = cases.into_iter().collect();
    // The limit alone is measured twice (see `run_interleaved`).
    let progress = Progress::new(opts.progress, mode, cases.len().max(1));
    let result = run_interleaved(opts, &mut env, cases, &progress);
    progress.finish();
    restore_affinity(&saved);
    // Our segments are gone already (creators unlink on drop); this removes
    // the lock file and the directory.
    let _ = session.remove_all();
    if made_root {
        // Only if empty: another process may have started a session in it.
        let _ = std::fs::remove_dir(&root);
    }
    let (limits, cases) = result?;
    Ok(Report {
        mode,
        machine,
        placement,
        limits,
        cases,
    })
}

type Measured = (Vec<Summary>, Vec<CaseResult>);

/// The progress line on stderr: `bench ring [3/11] ring/eventfd/roundtrip`.
/// Hidden unless asked for and stderr is a terminal, so piped output and
/// tests never see it.
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    /// A progress line over `cases` cases of `mode` (hidden if `!show` or
    /// stderr is not a terminal).
    pub fn new(show: bool, mode: &str, cases: usize) -> Self {
        use std::io::IsTerminal as _;
        if !show || !std::io::stderr().is_terminal() {
            return Self(indicatif::ProgressBar::hidden());
        }
        let bar = indicatif::ProgressBar::new(cases as u64 + 1);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("bench {prefix} [{pos}/{len}] {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(mode.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }

    /// A progress line that never draws.
    pub fn hidden() -> Self {
        Self(indicatif::ProgressBar::hidden())
    }

    fn measuring(&self, what: &str) {
        self.0.set_message(what.to_owned());
    }

    fn done_one(&self) {
        self.0.inc(1);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Measures every case of `cases` between two measurements of the limit
/// (`limit/atomic-pingpong`): limit, case, limit, case, …, limit. A case
/// counts only when the limits on both sides of it saw the same placement;
/// otherwise the vCPUs moved during it and it is measured again (at most
/// [`MAX_ATTEMPTS`] times, then the last is kept, flagged by `attempts` and
/// `placement_stable`). Consecutive alternating cases ([`Case::alternates`]:
/// `bench ring`'s sleeping round trips) are measured as one group between
/// two limits, in [`TURNS`] turns (a tenth of each case, case after case,
/// see [`measure`]), so a ratio between them is not a drift of the host
/// between two moments.
/// Returns every limit measurement and the results: the limit over all its
/// measurements first, then each case with its ratio to the mean of its two
/// adjacent limits.
pub(crate) fn run_interleaved<C: Case>(
    opts: &Options,
    env: &mut BenchEnv,
    cases: impl IntoIterator<Item = C>,
    progress: &Progress,
) -> BenchResult<Measured> {
    let spin_iters = opts.iters.unwrap_or(DEFAULT_SPIN_ITERS);
    let blocking_iters = opts.iters.unwrap_or(DEFAULT_BLOCKING_ITERS);
    let mut limits = Vec::new();
    let mut limit_hist = new_histogram();
    let mut limit_total = Duration::ZERO;
    let mut measure_limit = |env: &mut BenchEnv, limits: &mut Vec<Summary>| {
        progress.measuring(CaseKind::Limit.name());
        let (hist, elapsed) = measure(&[CaseKind::Limit], opts, env, |_| spin_iters)?
            .pop()
            .ok_or("no limit measurement")?;
        limit_hist.add(&hist).map_err(|e| format!("{e:?}"))?;
        limit_total += elapsed;
        let s = Summary::new(&hist, spin_iters, elapsed);
        limits.push(s.clone());
        BenchResult::Ok(s)
    };
    let n = |case: C| case.iterations(spin_iters, blocking_iters);

    let mut measured = Vec::new();
    let mut before = measure_limit(env, &mut limits)?;
    progress.done_one();
    let cases: Vec<C> = cases.into_iter().collect();
    let any = !cases.is_empty();
    for group in groups(&cases) {
        let mut attempt = 1;
        loop {
            progress.measuring(&match group {
                [one] => one.name().to_owned(),
                [first, rest @ ..] => format!("{} and {} more, in turns", first.name(), rest.len()),
                [] => String::new(),
            });
            let runs = measure(group, opts, env, n)?;
            let after = measure_limit(env, &mut limits)?;
            let stable = same_placement(before.median_ns, after.median_ns);
            if stable || attempt == MAX_ATTEMPTS {
                for (&case, (hist, elapsed)) in group.iter().zip(runs) {
                    let s = Summary::new(&hist, n(case), elapsed);
                    measured.push((case, s, hist, before.median_ns, after.median_ns, attempt));
                    progress.done_one();
                }
                before = after;
                break;
            }
            before = after;
            attempt += 1;
        }
    }
    if !any {
        // The limit alone: a second measurement, so the run still says
        // whether the placement held.
        measure_limit(env, &mut limits)?;
        progress.done_one();
    }
    let limit_iters = spin_iters.saturating_mul(limits.len() as u64);
    let mut results = vec![CaseResult {
        name: CaseKind::Limit.name(),
        payload_bytes: 0,
        summary: Summary::new(&limit_hist, limit_iters, limit_total),
        limit_before_ns: limits[0].median_ns,
        limit_after_ns: limits[limits.len() - 1].median_ns,
        ratio_to_limit: 1.0,
        attempts: 1,
        placement_stable: placement_summary(&limits) != "mixed",
        hist: limit_hist,
    }];
    for (case, s, hist, lb, la, attempts) in measured {
        let adjacent = (lb + la) as f64 / 2.0;
        results.push(CaseResult {
            name: case.name(),
            payload_bytes: case.payload_bytes(),
            ratio_to_limit: s.median_ns as f64 / adjacent.max(1.0),
            summary: s,
            limit_before_ns: lb,
            limit_after_ns: la,
            attempts,
            placement_stable: same_placement(lb, la),
            hist,
        });
    }
    Ok((limits, results))
}

/// `cases` cut into measurement groups, in order: each maximal run of
/// consecutive alternating cases ([`Case::alternates`]) is one group, every
/// other case a group of its own.
fn groups<C: Case>(cases: &[C]) -> Vec<&[C]> {
    let mut out = Vec::new();
    let mut rest = cases;
    while let Some(first) = rest.first() {
        let len = if first.alternates() {
            rest.iter().take_while(|c| c.alternates()).count()
        } else {
            1
        };
        let (group, tail) = rest.split_at(len);
        out.push(group);
        rest = tail;
    }
    out
}

/// Measurements of one case before giving up on a stable placement.
const MAX_ATTEMPTS: u32 = 3;

/// Whether two limit medians come from the same placement: same class and
/// within 30 % of each other.
fn same_placement(a: u64, b: u64) -> bool {
    let (lo, hi) = (a.min(b) as f64, a.max(b) as f64);
    placement_class(a) == placement_class(b) && hi <= lo * 1.3
}

fn placement_summary(limits: &[Summary]) -> &'static str {
    let near = limits
        .iter()
        .filter(|l| placement_class(l.median_ns) == "near")
        .count();
    match near {
        0 => "far",
        n if n == limits.len() => "near",
        _ => "mixed",
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `x` to three significant digits (peer ratios span 1e-5 to 1e3).
fn round_sig3(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

/// The report as one JSON document.
pub fn to_json(r: &Report) -> Value {
    let m = &r.machine;
    json!({
        "mode": r.mode,
        "machine": {
            "cpu_model": m.cpu_model,
            "cores": m.cores,
            "kernel": m.kernel,
            "load_avg_1m": m.load_avg_1m,
            "clock_overhead_ns": round2(m.clock_overhead_ns),
            "pinned": r.placement.pinned(),
            "parent_cpu": r.placement.parent_cpu,
            "child_cpu": r.placement.child_cpu,
            "pin_note": r.placement.note,
            "placement": placement_summary(&r.limits),
            "limit_medians_ns": r.limits.iter().map(|l| l.median_ns).collect::<Vec<_>>(),
            "shmwire_version": env!("CARGO_PKG_VERSION"),
        },
        "cases": r.cases.iter().map(|c| json!({
            "name": c.name,
            "payload_bytes": c.payload_bytes,
            "iterations": c.summary.iterations,
            "median_ns": c.summary.median_ns,
            "p99_ns": c.summary.p99_ns,
            "p999_ns": c.summary.p999_ns,
            "max_ns": c.summary.max_ns,
            "ops_per_s": c.summary.ops_per_s.round(),
            "ratio_to_limit": round2(c.ratio_to_limit),
            "ratio_to_peers": r.ratios_to_peers(c).into_iter()
                .map(|(p, x)| (p.to_owned(), json!(round_sig3(x))))
                .collect::<serde_json::Map<_, _>>(),
            "limit_before_ns": c.limit_before_ns,
            "limit_after_ns": c.limit_after_ns,
            "placement": placement_class(c.limit_before_ns),
            "placement_stable": c.placement_stable,
            "attempts": c.attempts,
        })).collect::<Vec<_>>(),
    })
}

/// The report as a readable table.
pub fn to_table(r: &Report) -> String {
    use std::fmt::Write as _;
    let m = &r.machine;
    let mut out = String::new();
    let _ = writeln!(out, "bench {}", r.mode);
    let _ = writeln!(
        out,
        "machine: {} | {} CPUs | kernel {} | load {} | clock read {:.1} ns",
        m.cpu_model,
        m.cores,
        m.kernel,
        m.load_avg_1m.map_or("?".into(), |l| format!("{l:.2}")),
        m.clock_overhead_ns
    );
    match (&r.placement.parent_cpu, &r.placement.child_cpu) {
        (Some(p), Some(c)) => {
            let _ = writeln!(
                out,
                "pinned: measuring side on CPU {p}, echo side on CPU {c}"
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "NOT pinned: {}",
                r.placement.note.as_deref().unwrap_or("unknown reason")
            );
        }
    }
    let _ = writeln!(
        out,
        "placement: {} (limit medians: {:?} ns)",
        placement_summary(&r.limits),
        r.limits.iter().map(|l| l.median_ns).collect::<Vec<_>>()
    );
    let _ = writeln!(
        out,
        "\n{:<36} {:>7} {:>9} {:>10} {:>10} {:>10} {:>13} {:>8} {:>15}",
        "case",
        "payload",
        "iters",
        "median ns",
        "p99 ns",
        "p999 ns",
        "ops/s",
        "ratio",
        "limit ns b/a"
    );
    for c in &r.cases {
        let s = &c.summary;
        let _ = writeln!(
            out,
            "{:<36} {:>7} {:>9} {:>10} {:>10} {:>10} {:>13.0} {:>8.2} {:>15}{}",
            c.name,
            c.payload_bytes,
            s.iterations,
            s.median_ns,
            s.p99_ns,
            s.p999_ns,
            s.ops_per_s,
            c.ratio_to_limit,
            format!("{}/{}", c.limit_before_ns, c.limit_after_ns),
            if c.placement_stable {
                ""
            } else {
                "  (placement moved)"
            }
        );
    }
    let with_peers: Vec<_> = r
        .cases
        .iter()
        .map(|c| (c.name, r.ratios_to_peers(c)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if !with_peers.is_empty() {
        let _ = writeln!(
            out,
            "\nvs peers (case median / peer median, same run, same payload):"
        );
        for (name, ratios) in with_peers {
            let cells: Vec<String> = ratios
                .iter()
                .map(|(p, x)| format!("{}={}", p.trim_start_matches("peer/"), round_sig3(*x)))
                .collect();
            let _ = writeln!(out, "{name:<36} {}", cells.join("  "));
        }
    }
    let _ = writeln!(
        out,
        "\nratio = case median / mean of the limit medians measured just before and after \
         the case (limit ns b/a); a case whose two limits disagree is measured again \
         (up to {MAX_ATTEMPTS} times). Each sample includes one clock read."
    );
    out
}
