//! `shmwire demo`: a driver and an actor worker, two processes, trading
//! Ray-style actor tasks through the worker runtime ([`shmwire::worker`]) —
//! over shared memory, then TCP.
//!
//! The driver starts the worker process (`shmwire __demo-worker`), which
//! serves a `Counter` actor class ([`ActorClass`]) through a
//! [`Worker`]. For each transport a [`CoreWorker`] caller connects (found by
//! name in the session's directory), creates the actor (the first caller) or
//! registers the existing one (the next), and calls `Counter.add(x)` for
//! `x = 1..=tasks` twice: one call at a time (round-trip latency), then with
//! `window` calls in flight (throughput). Every reply is the actor's running
//! total and is checked, so a lost, duplicated or reordered task fails the
//! demo. The worker reports refused hellos and callers that died on stderr
//! and keeps serving.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::interrupt::{Interrupt, LeaveSession};
use shmwire::ids::{NodeId, WorkerId};
use shmwire::node::Directory;
use shmwire::shm::{self, Session};
use shmwire::spec::TaskArg;
use shmwire::transport::{LookupError, ShmOptions};
use shmwire::wake::WaitStrategy;
use shmwire::worker::{
    ActorClass, ActorHandle, CoreWorker, CoreWorkerOptions, FunctionRegistry, GetError, ObjectRef,
    Worker, WorkerEvent, WorkerOptions,
};

/// The hidden subcommand that runs the actor worker.
pub const WORKER_SUBCOMMAND: &str = "__demo-worker";
/// The name the worker registers under in the session's directory.
pub const ACTOR_NAME: &str = "demo-counter";
/// The actor class's module and name.
const MODULE: &str = "demo";
const CLASS: &str = "Counter";
/// Largest `--tasks` (the round trips of a phase are kept: 160 MB at most).
const MAX_TASKS: u64 = 10_000_000;

/// How long any single wait of the demo may take before it is an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Options of `shmwire demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Actor tasks per transport and phase (at most 10,000,000: each
    /// call's round trip is kept for the percentiles, 16 bytes a call).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=MAX_TASKS))]
    pub tasks: u64,
    /// Calls kept in flight in the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=16384))]
    pub window: u64,
    /// Which transports to run.
    #[arg(long, value_enum, default_value_t = Transports::Both)]
    pub transport: Transports,
    /// How each side waits on shared memory.
    #[arg(long, value_enum, default_value_t = WaitArg::Park)]
    pub wait: WaitArg,
    /// The actor's `max_task_retries` (Ray's option, default 0 as Ray's):
    /// how often a call lost with its connection is sent again on a new
    /// one, or waits another reconnect grace for a worker that lives but
    /// cannot be reached (`-1`: always; the demo still waits at most 20 s
    /// for any one reply, so a worker stopped longer fails the run). A call the actor already ran is answered from
    /// its reply cache, not run twice, so a run that lost a connection to
    /// a live worker still checks every total; with 0 such calls fail as
    /// "actor … unavailable".
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-1..))]
    pub max_task_retries: i32,
}

/// Transport selection of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transports {
    /// Shared memory, then TCP.
    Both,
    /// Shared memory only.
    Shm,
    /// TCP (forced on this host) only.
    Tcp,
}

/// Wait strategy of the shared-memory transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitArg {
    /// Busy-spin.
    Spin,
    /// Spin, then sleep on the ring's futex word.
    Park,
    /// Spin, then sleep on an eventfd.
    Eventfd,
}

impl WaitArg {
    fn strategy(self) -> WaitStrategy {
        match self {
            WaitArg::Spin => WaitStrategy::Spin,
            WaitArg::Park => WaitStrategy::spin_park(),
            WaitArg::Eventfd => WaitStrategy::eventfd(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            WaitArg::Spin => "spin",
            WaitArg::Park => "park",
            WaitArg::Eventfd => "eventfd",
        }
    }
}

/// Arguments of the hidden worker subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The session to serve in.
    #[arg(long)]
    pub session: String,
    /// This worker's id (hex).
    #[arg(long)]
    pub worker: String,
    /// How to wait on shared memory.
    #[arg(long, value_enum, default_value_t = WaitArg::Park)]
    pub wait: WaitArg,
    /// The driver's pid: the worker exits when it is no longer the
    /// worker's parent (the driver died, however early). Default: the
    /// parent the worker finds when it starts.
    #[arg(long)]
    pub driver_pid: Option<u32>,
    /// The worker ids of the driver's callers (hex; repeated, one per
    /// transport): only their deaths fail the worker's run. Any other
    /// caller (a process with the session's token) that dies is reported
    /// and the worker serves on. None given: every caller's death counts.
    #[arg(long = "driver-caller")]
    pub driver_callers: Vec<String>,
}

/// The `Counter` actor class: `add(x)` adds to the total and answers it,
/// `get()` answers it.
fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_actor_class(
        ActorClass::new(MODULE, CLASS, |_| Ok(0i64))
            .method("add", |total: &mut i64, args| {
                *total += args.i64(0)?;
                Ok(total.to_le_bytes().to_vec())
            })
            .method("get", |total: &mut i64, _| Ok(total.to_le_bytes().to_vec())),
    )
    .expect("a fresh registry has no classes");
    r
}

/// The worker process: serves the actor until its callers are done,
/// reporting refused hellos and dead callers as it goes. Exits non-zero if
/// one of the driver's callers (`--driver-caller`; every caller when none
/// is named) died and did not come back.
pub fn run_worker(args: &WorkerArgs) -> DemoResult<()> {
    // Its serving loop prints (callers connecting, refused, gone); a reader
    // that stops reading must not stop it.
    crate::out::background()?;
    // SIGINT (a terminal's Ctrl-C reaches the driver and us), SIGTERM and
    // SIGHUP end the loop like any error, so the way out below runs.
    let stop = Interrupt::register()?;
    // SIGUSR1 is the driver ending the run early ([`END_RUN`]): its own
    // failure, or its reader closing stdout (`shmwire demo | head -1`),
    // which it reports or takes for a normal end itself; we leave by the
    // same way out, without a line ("interrupted" here misled).
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(END_RUN, Arc::clone(&ended))?;
    // The driver that started us; if it dies (however) we are reparented,
    // and serving on would only keep the session alive for nobody. Named
    // by the driver itself: a driver dead before we could read our parent
    // would otherwise leave init as the parent watched.
    let parent = args
        .driver_pid
        .unwrap_or_else(std::os::unix::process::parent_id);
    let session = Session::open(&args.session)?;
    // Dropped after the worker: on every way out (done, error, signal, the
    // driver's death) our lock goes and the pass removes what the dead
    // left, the session directory too when we are the last one in it.
    let _leave = LeaveSession(session.clone());
    let me: WorkerId = args.worker.parse()?;
    let driver_callers = args
        .driver_callers
        .iter()
        .map(|c| c.parse::<WorkerId>())
        .collect::<Result<Vec<_>, _>>()?;
    // Whose death fails the run: the driver's callers, or anyone's when
    // they are not named.
    let counts = |c: &WorkerId| driver_callers.is_empty() || driver_callers.contains(c);
    let mut options = WorkerOptions::new(me, NodeId::from_random());
    options.name = Some(ACTOR_NAME.to_string());
    options.shm = Some(ShmOptions::with_wait(args.wait.strategy()));
    options.tcp = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let mut worker = Worker::bind(&session, options, Arc::new(registry()))?;
    // The driver's callers whose connection ended without a close and
    // that did not come back (one that lost its connection and reconnected
    // is alive). Another process with the token that connects and dies is
    // its own affair: reported, not the demo's failure.
    let mut died: Vec<WorkerId> = Vec::new();
    // Until the driver terminates the actor (Ray's `__ray_terminate__`,
    // after its last call) and the replies are out: not when the
    // connections are gone, which a caller that lost its connection and
    // reconnects would cut short.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut turn = 0u32;
    while !worker.exited() {
        if Instant::now() >= deadline {
            return Err("the demo worker ran for an hour; giving up".into());
        }
        worker.run_once(Duration::from_millis(50))?;
        for event in worker.take_events() {
            match event {
                WorkerEvent::Refused(e) => {
                    errln!("demo worker: refused a caller: {}", crate::error_chain(&e))
                }
                WorkerEvent::AcceptFailed(e) => errln!(
                    "demo worker: could not accept a waiting caller (trying again): {}",
                    crate::error_chain(&e)
                ),
                WorkerEvent::Connected { caller } => {
                    died.retain(|c| *c != caller);
                    errln!("demo worker: caller {caller} connected")
                }
                WorkerEvent::Disconnected {
                    caller,
                    violation: Some(v),
                    ..
                } => errln!("demo worker: caller {caller} cut off: {v}"),
                WorkerEvent::Disconnected {
                    caller,
                    died: true,
                    stopped_answering,
                    ..
                } => {
                    let whose = if counts(&caller) {
                        if !died.contains(&caller) {
                            died.push(caller);
                        }
                        ""
                    } else {
                        " (not the driver's; serving on)"
                    };
                    match stopped_answering {
                        Some(silent) => errln!(
                            "demo worker: caller {caller} died or stopped answering (silent for {:.1} s){whose}",
                            silent.as_secs_f64()
                        ),
                        None => errln!("demo worker: caller {caller} died{whose}"),
                    }
                }
                WorkerEvent::Disconnected {
                    caller,
                    died: false,
                    ..
                } => errln!("demo worker: caller {caller} closed"),
                WorkerEvent::Restored(r) => errln!(
                    "demo worker: removed or replaced under it, put back: {}",
                    r.describe()
                ),
                WorkerEvent::RestoreFailed(why) => errln!(
                    "demo worker: a file it keeps in its session could not be checked or put back \
                     (trying again every second): {why}"
                ),
            }
        }
        // After the events: what happened before a signal is reported.
        // (`main` prints the error as `demo worker: …`.)
        if ended.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        if stop.is_set() {
            return Err(INTERRUPTED.into());
        }
        // Asked without a connection (the driver never came, or went) and
        // every 64th turn otherwise: not a syscall per served call.
        turn = turn.wrapping_add(1);
        if (worker.num_connections() == 0 || turn % 64 == 0)
            && std::os::unix::process::parent_id() != parent
        {
            return Err(format!(
                "the driver (pid {parent}) is no longer our parent: it died; exiting"
            )
            .into());
        }
    }
    errln!(
        "demo worker: served {} tasks\n{}",
        worker.tasks_executed(),
        worker.stats_string()
    );
    if !died.is_empty() {
        return Err(format!(
            "{} of the driver's caller(s) died before closing",
            died.len()
        )
        .into());
    }
    Ok(())
}

/// How long a driver that fails (and so never terminates the actor) gives
/// its worker, asked to stop by [`END_RUN`], to exit by itself before
/// killing it: the worker then leaves its session in order.
const WORKER_GRACE: Duration = Duration::from_secs(1);

/// The signal by which a driver that ends early (it failed, or its stdout
/// was closed) stops its worker: the worker leaves quietly — the driver
/// says what ended the run (SIGINT, SIGTERM and SIGHUP from anyone else
/// still end the worker as "interrupted").
const END_RUN: i32 = signal_hook::consts::SIGUSR1;

/// The worker child: unless it was waited for, stopped by [`END_RUN`], killed
/// after [`WORKER_GRACE`] if still there, and reaped. (Declared after the
/// [`DemoSession`], so dropped before it: the session is removed once the
/// worker is gone.)
struct WorkerProcess {
    child: Option<Child>,
}

/// The driver's session, removed on drop — on every way out of the demo,
/// error and interrupt included ([`Session::remove_all`]: this process's
/// files go, the session directory too when no other process of it lives)
/// — and the session root, when the demo made it itself (a missing
/// `SHMWIRE_ROOT` or default root): removed then if it is empty, so the
/// demo leaves no empty root behind; a root that was there before is never
/// removed.
struct DemoSession {
    session: Session,
    /// The root, when [`shm::ensure_root`] made it for this demo.
    made_root: Option<std::path::PathBuf>,
}

impl Drop for DemoSession {
    fn drop(&mut self) {
        let _ = self.session.remove_all();
        if let Some(root) = &self.made_root {
            // `remove_dir` removes only an empty directory (ENOTEMPTY
            // otherwise): a root another process put a session in since
            // stays.
            let _ = std::fs::remove_dir(root);
        }
    }
}

impl WorkerProcess {
    fn check_running(&mut self) -> DemoResult<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Err(format!("the worker exited early: {status}").into());
            }
        }
        Ok(())
    }

    fn wait(mut self) -> DemoResult<()> {
        let mut child = self.child.take().expect("child present until waited");
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the worker failed: {status}").into())
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the worker did not exit after its actor was terminated".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                // Our own unreaped child: the pid cannot name another
                // process yet.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::USR1);
            }
            let deadline = Instant::now() + WORKER_GRACE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How often a `get` that waits looks at the interrupt flag: a signal
/// stops the demo within this even while a call cannot finish (its worker
/// stopped), instead of after the whole [`STEP_TIMEOUT`].
const STOP_POLL: Duration = Duration::from_millis(100);

/// `caller.get` of `r`, at most [`STEP_TIMEOUT`] (then its own timeout
/// error, naming what it waited for), waited in slices of [`STOP_POLL`]
/// between which a signal ends it as "interrupted".
fn get_one(caller: &mut CoreWorker, r: &ObjectRef, stop: &Interrupt) -> DemoResult<Vec<Vec<u8>>> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = left.min(STOP_POLL);
        match caller.get(std::slice::from_ref(r), slice) {
            Err(GetError::TimedOut { .. }) if slice < left => {
                if stop.is_set() {
                    return Err(INTERRUPTED.into());
                }
            }
            got => return Ok(got?),
        }
    }
}

/// Latency percentiles of one phase.
fn percentiles(rtts: &mut [Duration]) -> (Duration, Duration, Duration) {
    rtts.sort_unstable();
    let at = |p: f64| rtts[((rtts.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99), at(0.999))
}

fn i64_arg(x: i64) -> TaskArg {
    TaskArg::value(x.to_le_bytes().to_vec(), Vec::new())
}

fn as_i64(bytes: &[u8]) -> DemoResult<i64> {
    Ok(i64::from_le_bytes(bytes.try_into().map_err(|_| {
        format!("a reply of {} bytes, expected 8", bytes.len())
    })?))
}

/// One caller's two phases; returns the actor's total afterwards.
fn run_caller(
    caller: &mut CoreWorker,
    actor: &ActorHandle,
    args: &DemoArgs,
    stop: &Interrupt,
    mut total: i64,
) -> DemoResult<i64> {
    let n = args.tasks as i64;
    // Phase 1: one call at a time.
    let mut rtts = Vec::with_capacity(args.tasks as usize);
    let start = Instant::now();
    for x in 1..=n {
        if stop.is_set() {
            return Err(INTERRUPTED.into());
        }
        let t = Instant::now();
        let r = caller.submit_actor_task(actor, "add", vec![i64_arg(x)])?;
        let v = get_one(caller, &r, stop)?;
        rtts.push(t.elapsed());
        total += x;
        let got = as_i64(&v[0])?;
        if got != total {
            return Err(format!("add({x}) answered {got}, expected {total}").into());
        }
        caller.free(&[r]);
    }
    let elapsed = start.elapsed();
    let (p50, p99, p999) = percentiles(&mut rtts);
    outln!(
        "  one at a time: {n} calls in {elapsed:.2?}, {:.0} calls/s, round trip p50 {p50:.2?} p99 {p99:.2?} p99.9 {p999:.2?}",
        n as f64 / elapsed.as_secs_f64()
    );
    // Phase 2: `window` calls in flight; replies are checked in order.
    let start = Instant::now();
    let mut in_flight: std::collections::VecDeque<(i64, ObjectRef)> = Default::default();
    let mut next = 1i64;
    let mut checked = 0i64;
    while checked < n {
        if stop.is_set() {
            return Err(INTERRUPTED.into());
        }
        while next <= n && in_flight.len() < args.window as usize {
            let r = caller.submit_actor_task(actor, "add", vec![i64_arg(next)])?;
            in_flight.push_back((next, r));
            next += 1;
        }
        let (x, r) = in_flight.pop_front().expect("a call in flight");
        let v = get_one(caller, &r, stop)?;
        total += x;
        let got = as_i64(&v[0])?;
        if got != total {
            return Err(format!("pipelined add({x}) answered {got}, expected {total}").into());
        }
        caller.free(&[r]);
        checked += 1;
    }
    let elapsed = start.elapsed();
    outln!(
        "  {} in flight: {n} calls in {elapsed:.2?}, {:.0} calls/s",
        args.window,
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(total)
}

/// Runs the demo (the driver side).
/// What an interrupted demo (driver or worker) ends with.
const INTERRUPTED: &str = "interrupted";

/// Runs the demo. SIGINT, SIGTERM and SIGHUP stop it between calls (the
/// worker process is stopped and the session removed on the way out, as on
/// any error) and it fails with "interrupted" — also when the signal reached
/// the worker first (a terminal's Ctrl-C reaches both) and the driver's
/// call failed because of that.
pub fn run(args: &DemoArgs) -> DemoResult<()> {
    let stop = Interrupt::register()?;
    let result = run_demo(args, &stop);
    if result.is_err() && stop.is_set() {
        return Err(INTERRUPTED.into());
    }
    result
}

fn run_demo(args: &DemoArgs, stop: &Interrupt) -> DemoResult<()> {
    // The pid alone is not unique where roots are shared across pid
    // namespaces (containers sharing /dev/shm run their drivers under the
    // same small pids: the attack on `e65c959` had two demos share
    // `demo-1`, and the second fail): a random part too.
    let session_name = format!(
        "demo-{}-{}",
        std::process::id(),
        &WorkerId::from_random().to_string()[..8]
    );
    // The root is made here, not by `Session::open`, to know whether this
    // demo made it (and so may remove it, empty, at the end).
    let root = shm::default_root();
    let made_root = shm::ensure_root(&root)?.then(|| root.clone());
    let session = match Session::open_in(&root, &session_name) {
        Ok(s) => s,
        Err(e) => {
            if let Some(root) = &made_root {
                let _ = std::fs::remove_dir(root);
            }
            return Err(e.into());
        }
    };
    let demo_session = DemoSession { session, made_root };
    let session = &demo_session.session;
    let actor_worker = WorkerId::from_random();
    let transports: &[bool] = match args.transport {
        Transports::Both => &[false, true],
        Transports::Shm => &[false],
        Transports::Tcp => &[true],
    };
    // One caller per transport, with ids made here so the worker knows
    // whose death fails the run (only the driver's).
    let caller_ids: Vec<WorkerId> = transports.iter().map(|_| WorkerId::from_random()).collect();
    let child = Command::new(std::env::current_exe()?)
        .args([
            WORKER_SUBCOMMAND,
            "--session",
            &session_name,
            "--worker",
            &actor_worker.to_string(),
            "--wait",
            args.wait.as_str(),
            "--driver-pid",
            &std::process::id().to_string(),
        ])
        .args(
            caller_ids
                .iter()
                .flat_map(|id| ["--driver-caller".to_string(), id.to_string()]),
        )
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("start the demo's worker process: {e}"))?;
    let mut worker = WorkerProcess { child: Some(child) };
    outln!(
        "shmwire demo: driver pid {}, session {}",
        std::process::id(),
        session.dir().display()
    );

    // The worker registers in the directory once it listens.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let dir = Directory::for_session(session)?;
    loop {
        worker.check_running()?;
        if stop.is_set() {
            return Err(INTERRUPTED.into());
        }
        match dir.lookup_name(ACTOR_NAME) {
            Ok(_) => break,
            Err(LookupError::NoSuchWorker { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => {
                return Err(
                    format!("the worker never registered: {}", crate::error_chain(&e)).into(),
                )
            }
        }
    }
    outln!("actor worker {actor_worker} listening as {ACTOR_NAME:?}");

    let node = NodeId::from_random();
    let mut actor: Option<ActorHandle> = None;
    let mut total = 0i64;
    for (i, &tcp) in transports.iter().enumerate() {
        let mut options = CoreWorkerOptions::new(node);
        options.shm = ShmOptions::with_wait(args.wait.strategy());
        options.force_tcp = tcp;
        options.step_timeout = STEP_TIMEOUT;
        options.worker_id = caller_ids[i];
        let mut caller = CoreWorker::new(session, options)?;
        let handle = match &actor {
            None => {
                let h = match caller.create_actor(
                    actor_worker,
                    MODULE,
                    CLASS,
                    vec![],
                    args.max_task_retries,
                ) {
                    Ok(h) => h,
                    Err(e) => {
                        // A worker that died is the cause (its own error is
                        // above), not the connection it left refused.
                        worker.check_running()?;
                        return Err(e.into());
                    }
                };
                outln!("created actor {} on worker {actor_worker}", h.actor_id());
                actor = Some(h.clone());
                h
            }
            Some(h) => {
                caller.register_actor(h, args.max_task_retries)?;
                h.clone()
            }
        };
        let how = if tcp {
            "TCP".to_string()
        } else {
            format!("shared memory ({})", args.wait.as_str())
        };
        outln!(
            "caller {}: connected over {} — {how}; default task name {:?}",
            i + 1,
            if tcp { "Tcp" } else { "Shm" },
            handle.method_descriptor("add").default_task_name()
        );
        total = run_caller(&mut caller, &handle, args, stop, total)?;
        let r = caller.submit_actor_task(&handle, "get", vec![])?;
        let got = as_i64(&get_one(&mut caller, &r, stop)?[0])?;
        if got != total {
            return Err(format!("Counter.get() answered {got}, expected {total}").into());
        }
        outln!("  actor total after this caller: {total}");
        if i + 1 == transports.len() {
            // Its worker exits once this is answered (after every earlier
            // call), and only then: a caller that lost its connection and
            // came back is still served.
            let r = caller.terminate_actor(&handle)?;
            get_one(&mut caller, &r, stop)?;
            outln!("terminated actor {}", handle.actor_id());
        }
        // Dropping the caller closes its connection in order.
        drop(caller);
    }
    worker.wait()?;
    let want = transports.len() as i64 * args.tasks as i64 * (args.tasks as i64 + 1);
    if total != want {
        return Err(format!("actor total {total}, expected {want}").into());
    }
    outln!("ok: every reply arrived once, in order, with the expected running total");
    Ok(())
}
