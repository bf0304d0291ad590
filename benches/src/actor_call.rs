//! `shmwire bench actor-call`: whole actor calls through the worker runtime
//! (`CoreWorker` → `Worker` → back), two processes, beside the bare shm
//! transport round trip of 256 bytes (`transport/shm-spin/roundtrip`) and
//! the raw atomic limit measured next to every case.
//!
//! A sync case is one call at a time: `submit_actor_task` builds the
//! `TaskSpec`, the submit queue sequences it, it is encoded in place into
//! the connection, the worker validates it, runs `Counter.add(1)` on the
//! archived spec, encodes the reply, the caller validates it and `get`
//! returns the value — which is checked against the running total.
//! A pipelined case submits `depth` calls, then `get`s all of them (every
//! value checked); each call's sample is its share of its batch
//! (batch time / depth, freeing and checking the values included), and
//! `ops_per_s` is calls per second (iterations / the batches' summed time).
//!
//! The measuring process is the caller (a [`CoreWorker`]); the child
//! (`shmwire __bench-child role=actor-worker mode=…`, or the criterion
//! bench binary re-executed) hosts the actor in a [`Worker`] and serves
//! until the caller is gone (or its parent died).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmwire::ids::{NodeId, WorkerId};
use shmwire::shm::Session;
use shmwire::spec::TaskArg;
use shmwire::transport::ShmOptions;
use shmwire::wake::WaitStrategy;
use shmwire::worker::{
    ActorClass, ActorHandle, CoreWorker, CoreWorkerOptions, FunctionRegistry, Worker, WorkerOptions,
};

use super::cases::{BenchEnv, ChildProc, Pair};
use super::harness::{pin_current_thread, timed_loop, BenchResult};
use super::transport::TransportCase;

/// Role name of the actor-hosting child.
pub const WORKER_ROLE: &str = "actor-worker";
/// Module path of the bench actor class.
pub const MODULE: &str = "shmwire_bench";
/// The bench actor class: `add(x)` adds `x` (i64) to the total and returns it.
pub const CLASS: &str = "Counter";
/// Argument bytes per call (one little-endian i64).
pub const ARG_BYTES: usize = 8;
const START_TIMEOUT: Duration = Duration::from_secs(20);
const GET_TIMEOUT: Duration = Duration::from_secs(20);

/// How the caller reaches the actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Shared memory, both sides busy-spinning (`WaitStrategy::Spin`).
    ShmSpin,
    /// Shared memory, spin for the default window then sleep
    /// (`WaitStrategy::spin_park()`).
    ShmPark,
    /// shmwire's TCP transport on 127.0.0.1.
    Tcp,
}

impl Wire {
    fn mode(self) -> &'static str {
        match self {
            Self::ShmSpin => "shm-spin",
            Self::ShmPark => "shm-park",
            Self::Tcp => "tcp",
        }
    }

    fn from_mode(mode: &str) -> BenchResult<Self> {
        Ok(match mode {
            "shm-spin" => Self::ShmSpin,
            "shm-park" => Self::ShmPark,
            "tcp" => Self::Tcp,
            other => return Err(format!("unknown actor-call mode {other:?}").into()),
        })
    }

    fn shm_options(self) -> ShmOptions {
        let wait = match self {
            Self::ShmSpin => WaitStrategy::Spin,
            Self::ShmPark | Self::Tcp => WaitStrategy::spin_park(),
        };
        ShmOptions::with_wait(wait)
    }
}

/// One case of `bench actor-call`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorCallCase {
    /// The bare transport round trip beside which the calls are judged.
    Transport(TransportCase),
    /// One call at a time.
    Sync(Wire),
    /// `depth` calls in flight, then all of them collected.
    Pipelined(Wire, u32),
}

impl ActorCallCase {
    /// Every case, in run order.
    pub fn all() -> Vec<Self> {
        vec![
            Self::Transport(TransportCase::ShmSpin),
            Self::Sync(Wire::ShmSpin),
            Self::Sync(Wire::ShmPark),
            Self::Sync(Wire::Tcp),
            Self::Pipelined(Wire::ShmSpin, 32),
            Self::Pipelined(Wire::ShmSpin, 1000),
        ]
    }
}

impl super::Case for ActorCallCase {
    fn name(self) -> &'static str {
        match self {
            Self::Transport(t) => t.name(),
            Self::Sync(Wire::ShmSpin) => "actor-call/shm-spin/sync",
            Self::Sync(Wire::ShmPark) => "actor-call/shm-park/sync",
            Self::Sync(Wire::Tcp) => "actor-call/tcp/sync",
            Self::Pipelined(Wire::ShmSpin, 32) => "actor-call/shm-spin/pipelined-32",
            Self::Pipelined(Wire::ShmSpin, 1000) => "actor-call/shm-spin/pipelined-1000",
            Self::Pipelined(..) => "actor-call/pipelined",
        }
    }

    fn payload_bytes(self) -> usize {
        match self {
            Self::Transport(t) => super::Case::payload_bytes(t),
            _ => ARG_BYTES,
        }
    }

    fn iterations(self, spin_iters: u64, blocking_iters: u64) -> u64 {
        match self {
            Self::Transport(t) => super::Case::iterations(t, spin_iters, blocking_iters),
            Self::Sync(Wire::ShmSpin) => spin_iters,
            Self::Sync(_) => blocking_iters,
            // Whole batches, at least one.
            Self::Pipelined(_, depth) => {
                let d = u64::from(depth);
                spin_iters.max(d).div_ceil(d) * d
            }
        }
    }

    fn start(self, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>> {
        match self {
            Self::Transport(t) => super::Case::start(t, env),
            Self::Sync(wire) => Ok(Box::new(ActorPair::start(env, wire, 1)?)),
            Self::Pipelined(wire, depth) => Ok(Box::new(ActorPair::start(env, wire, depth)?)),
        }
    }
}

/// The calling side of a running actor-call case: a [`CoreWorker`] with a
/// `Counter` actor on the child's [`Worker`].
pub struct ActorPair {
    caller: CoreWorker,
    actor: ActorHandle,
    depth: u32,
    /// The actor's total as this side expects it.
    total: i64,
    arg: [u8; ARG_BYTES],
    // Declared last: dropped after the caller, whose connection's close
    // ends the child's serving loop.
    _child: ChildProc,
}

impl ActorPair {
    /// Starts the child worker (mode `wire`), creates the actor on it
    /// (retrying until the worker is in the session's directory, at most
    /// 20 s) and returns the caller. `depth` calls are in flight per batch
    /// (1 = sync).
    pub fn start(env: &mut BenchEnv, wire: Wire, depth: u32) -> BenchResult<Self> {
        let node = NodeId::from_random();
        let worker = WorkerId::from_random();
        let child = env.spawn(
            WORKER_ROLE,
            &[
                ("mode", wire.mode().to_owned()),
                ("worker", worker.hex()),
                ("node", node.hex()),
            ],
            Stdio::null(),
            Stdio::null(),
        )?;
        let mut opts = CoreWorkerOptions::new(node);
        opts.shm = wire.shm_options();
        opts.force_tcp = wire == Wire::Tcp;
        opts.step_timeout = START_TIMEOUT;
        let mut caller = CoreWorker::new(&env.session, opts)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let actor = loop {
            match caller.create_actor(worker, MODULE, CLASS, Vec::new(), 0) {
                Ok(h) => break h,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    let e = shmwire::error_chain(&e);
                    return Err(format!("creating the bench actor: {e}").into());
                }
            }
        };
        Ok(Self {
            caller,
            actor,
            depth: depth.max(1),
            total: 0,
            arg: 1i64.to_le_bytes(),
            _child: child,
        })
    }

    fn call(&mut self) -> BenchResult<shmwire::worker::ObjectRef> {
        Ok(self.caller.submit_actor_task(
            &self.actor,
            "add",
            vec![TaskArg::value(self.arg.to_vec(), Vec::new())],
        )?)
    }

    fn check(&mut self, value: &[u8]) -> BenchResult<()> {
        self.total += 1;
        let got = <[u8; 8]>::try_from(value)
            .map(i64::from_le_bytes)
            .map_err(|_| format!("reply of {} bytes", value.len()))?;
        if got != self.total {
            return Err(format!("actor answered {got}, expected {}", self.total).into());
        }
        Ok(())
    }

    /// `n` calls (whole batches of `depth`); with a histogram, one sample
    /// per call (sync: its round trip; pipelined: its batch's time / depth).
    pub fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        if self.depth == 1 {
            return timed_loop(n, hist, |_| {
                let r = self.call()?;
                let v = self.caller.get(std::slice::from_ref(&r), GET_TIMEOUT)?;
                self.caller.free(std::slice::from_ref(&r));
                self.check(&v[0])
            });
        }
        let depth = u64::from(self.depth);
        let batches = n.div_ceil(depth);
        let mut hist = hist;
        let mut refs = Vec::with_capacity(self.depth as usize);
        // Batches are timed back to back (as `timed_loop` times sync calls),
        // freeing and checking included, so the elapsed time is the sum of
        // the batches and `ops_per_s` is 1 / the mean sample.
        let start = Instant::now();
        let mut t0 = start;
        for _ in 0..batches {
            refs.clear();
            for _ in 0..depth {
                let r = self.call()?;
                refs.push(r);
            }
            let values = self.caller.get(&refs, GET_TIMEOUT)?;
            self.caller.free(&refs);
            for v in &values {
                self.check(v)?;
            }
            let t1 = Instant::now();
            if let Some(h) = hist.as_deref_mut() {
                let per_call = ((t1 - t0).as_nanos() as u64 / depth).max(1);
                h.saturating_record_n(per_call, depth);
            }
            t0 = t1;
        }
        Ok(t0 - start)
    }
}

impl Pair for ActorPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        ActorPair::run(self, n, hist)
    }
}

/// The registry of the bench worker: class [`CLASS`] with `add`.
pub fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_actor_class(ActorClass::new(MODULE, CLASS, |_| Ok(0i64)).method(
        "add",
        |total: &mut i64, args| {
            *total += args.i64(0)?;
            Ok(total.to_le_bytes().to_vec())
        },
    ))
    .expect("a fresh registry has no classes");
    r
}

/// Entry point of the [`WORKER_ROLE`] child: hosts the actor until its one
/// caller is gone, or the parent (`ppid=`) died.
pub fn child_main<S: AsRef<str>>(words: &[S]) -> BenchResult<()> {
    let get = |key: &str| -> Option<&str> {
        words
            .iter()
            .map(|w| w.as_ref())
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    let need = |key: &str| get(key).ok_or_else(|| format!("missing {key}="));
    if let Some(cpu) = get("cpu") {
        pin_current_thread(cpu.parse()?)?;
    }
    let wire = Wire::from_mode(need("mode")?)?;
    let session = Session::attach_in(std::path::PathBuf::from(need("root")?), need("session")?)?;
    let worker_id = WorkerId::from_hex(need("worker")?)?;
    let node_id = NodeId::from_hex(need("node")?)?;
    let ppid: Option<u32> = get("ppid").map(str::parse).transpose()?;
    let mut opts = WorkerOptions::new(worker_id, node_id);
    opts.shm = Some(wire.shm_options());
    let mut worker = Worker::bind(&session, opts, Arc::new(registry()))?;
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut next_check = Instant::now();
    while !(worker.connections_accepted() >= 1 && worker.num_connections() == 0) {
        let now = Instant::now();
        if now >= next_check {
            if now >= deadline {
                return Err("bench worker: no end after an hour".into());
            }
            if ppid.is_some_and(|p| std::os::unix::process::parent_id() != p) {
                return Ok(());
            }
            next_check = now + Duration::from_millis(100);
        }
        worker.run_once(Duration::from_millis(50))?;
    }
    Ok(())
}

/// Runs the actor-call comparison (see the module docs).
pub fn run(opts: &super::Options) -> BenchResult<super::Report> {
    super::run_mode("actor-call", "bench-actor", opts, ActorCallCase::all())
}
