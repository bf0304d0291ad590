//! The measured cases: for each, the measuring side (`Pair`) and the echoing
//! side (a child process started through a [`Launcher`], or a thread).
//!
//! Shared by `shmwire bench ring` and `benches/benches/ring.rs`: it depends
//! only on the library, std and [`super::harness`].

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmwire::ring::{create_ring_segment, Consumer, MappedStorage, Producer, Ring, RingError};
use shmwire::shm::{kind, Segment, Session, ShmError};
use shmwire::wake::{EventFd, WaitStrategy, Waiter};

use super::harness::{pin_current_thread, timed_loop, BenchResult, Placement};

/// Payload of every round-trip case but the limit and `RingSpin64`.
pub const PAYLOAD: usize = 256;

/// Payload of the small-frame ring round trip (`ring/spin/roundtrip-64B`).
pub const SMALL_PAYLOAD: usize = 64;

/// How many spin iterations pass between two liveness checks of the peer.
const SPIN_CHECK_MASK: u64 = (1 << 16) - 1;

/// The measuring side's guard in a spin loop waiting for one answer:
/// yields the CPU now and then ([`yield_if_long`]) and, every
/// `SPIN_CHECK_MASK + 1` spins, checks that the child lives and fails the
/// wait once it has lasted [`stall()`] (the clock is read only then).
pub(crate) struct SpinWait {
    spins: u64,
    since: Option<Instant>,
    stall: Duration,
}

impl SpinWait {
    /// A wait that has not spun yet, failing after `stall` (the run's
    /// [`stall()`], read once per run, not per answer).
    pub(crate) fn new(stall: Duration) -> Self {
        Self {
            spins: 0,
            since: None,
            stall,
        }
    }

    /// One fruitless poll: spins, and now and then yields, checks the
    /// child (`alive`) and the stall bound.
    #[inline]
    pub(crate) fn spin(&mut self, alive: impl FnOnce() -> BenchResult<()>) -> BenchResult<()> {
        std::hint::spin_loop();
        self.spins += 1;
        yield_if_long(self.spins);
        if self.spins & SPIN_CHECK_MASK == 0 {
            alive()?;
            let now = Instant::now();
            if now.duration_since(*self.since.get_or_insert(now)) >= self.stall {
                return Err(stall_error());
            }
        }
        Ok(())
    }
}

/// How long a measuring side waits for one answer of its child before the
/// run fails (a stopped or hung child; a dead one is found at once): only
/// a hang guard, far above any round trip. `SHMWIRE_BENCH_STALL_SECS`
/// overrides it (for tests of the guard itself).
pub const STALL: Duration = Duration::from_secs(60);

/// [`STALL`], or `SHMWIRE_BENCH_STALL_SECS` if set to a whole number of
/// seconds (read once).
pub fn stall() -> Duration {
    static STALL_OF_RUN: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *STALL_OF_RUN.get_or_init(|| {
        std::env::var("SHMWIRE_BENCH_STALL_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(STALL, Duration::from_secs)
    })
}

/// The error of a measuring side whose child answered nothing for
/// [`stall()`].
fn stall_error() -> Box<dyn std::error::Error + Send + Sync> {
    format!(
        "the echoing child answered nothing for {} s (stopped or hung)",
        stall().as_secs()
    )
    .into()
}

/// Fruitless spins after which a spinning side yields its CPU once.
const YIELD_MASK: u64 = (1 << 12) - 1;

/// Yields the CPU after every 4096 fruitless spins (several µs, far more
/// than a pinned peer ever needs): when both sides share one CPU (unpinned
/// runs), the peer can only answer once we let it run.
#[inline(always)]
fn yield_if_long(spins: u64) {
    if spins & YIELD_MASK == 0 {
        std::thread::yield_now();
    }
}

/// Offset of the "pong" word in the limit segment: two cache lines (128 B)
/// away from "ping", so adjacent-line prefetching does not couple them.
const PONG_OFFSET: usize = 128;

/// The cases, in the order `shmwire bench ring` runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseKind {
    /// Two `AtomicU64` on separate cache lines in a shared segment, raw
    /// spin: the physical limit of a cross-process round trip.
    Limit,
    /// A Unix stream socket pair between the two processes.
    Uds,
    /// The bare wake-up mechanism under `RingRoundtrip(FutexSleep)`: a
    /// 256-byte mailbox each way in a shared segment, signalled by a shared
    /// `FUTEX_WAKE` after every message and waited for by `FUTEX_WAIT`
    /// (with a timeout, as every wait that must notice a dead peer has) —
    /// no ring, no sleep handshake, no spinning.
    Futex,
    /// Two pipes between the two processes.
    Pipe,
    /// Two bounded crossbeam channels between two pinned threads.
    Crossbeam,
    /// Two rings in segments (one each direction), 256-byte frames, both
    /// sides waiting with the given strategy.
    RingRoundtrip(RingWait),
    /// Ring ping-pong like `RingRoundtrip(RingWait::Spin)` with a 64-byte
    /// payload each way (a frame of 80 bytes: header and payload share the
    /// first cache line).
    RingSpin64,
    /// One ring, one-way frames of the given payload size, batched commits
    /// and releases, spinning.
    RingThroughput(usize),
    /// iceoryx2 publish-subscribe ping-pong of a `[u8; 256]` (two services,
    /// zero-copy loans, both sides polling `receive`). Only with the
    /// `iceoryx2` cargo feature.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2,
    /// iceoryx2 request-response round trip of a `[u8; 256]` each way (one
    /// service, the child a server answering every request, both sides
    /// polling). Only with the `iceoryx2` cargo feature.
    #[cfg(feature = "iceoryx2")]
    Iceoryx2Rr,
}

/// Wait strategy of a ring round-trip case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingWait {
    /// `WaitStrategy::Spin`.
    Spin,
    /// `WaitStrategy::SpinPark` with the default spin window.
    Futex,
    /// `WaitStrategy::EventFd` with the default spin window.
    EventFd,
    /// `WaitStrategy::SpinPark` with no spin window: every wait sleeps on
    /// the futex, so this measures the wake-up path itself.
    FutexSleep,
    /// No `Waiter`: the caller polls `Consumer::peek` in a loop. Shows what
    /// the blocking call's bookkeeping (clock reads, liveness checks) costs.
    Poll,
}

impl RingWait {
    fn word(self) -> &'static str {
        match self {
            Self::Spin => "spin",
            Self::Futex => "futex",
            Self::EventFd => "eventfd",
            Self::FutexSleep => "futex-sleep",
            Self::Poll => "poll",
        }
    }

    fn from_word(w: &str) -> BenchResult<Self> {
        Ok(match w {
            "spin" => Self::Spin,
            "futex" => Self::Futex,
            "eventfd" => Self::EventFd,
            "futex-sleep" => Self::FutexSleep,
            "poll" => Self::Poll,
            other => return Err(format!("unknown ring wait {other:?}").into()),
        })
    }

    /// The library waiter (`fd`: this side's eventfd, for `EventFd`).
    fn waiter(self, fd: Option<EventFd>) -> BenchResult<Waiter> {
        Ok(match self {
            // Poll never blocks through the waiter; it only uses its liveness check.
            Self::Spin | Self::Poll => Waiter::new(WaitStrategy::Spin),
            Self::Futex => Waiter::new(WaitStrategy::spin_park()),
            Self::FutexSleep => Waiter::new(WaitStrategy::SpinPark {
                spin: Duration::ZERO,
            }),
            Self::EventFd => Waiter::new(WaitStrategy::eventfd())
                .with_eventfd(fd.ok_or("eventfd case without an eventfd")?),
        })
    }
}

impl CaseKind {
    /// Case name as printed and in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Limit => "limit/atomic-pingpong",
            Self::Uds => "peer/uds/roundtrip",
            Self::Futex => "peer/futex/roundtrip",
            Self::Pipe => "peer/pipe/roundtrip",
            Self::Crossbeam => "peer/crossbeam/roundtrip",
            Self::RingRoundtrip(RingWait::Spin) => "ring/spin/roundtrip",
            Self::RingRoundtrip(RingWait::Futex) => "ring/futex/roundtrip",
            Self::RingRoundtrip(RingWait::EventFd) => "ring/eventfd/roundtrip",
            Self::RingRoundtrip(RingWait::FutexSleep) => "ring/futex-sleep/roundtrip",
            Self::RingRoundtrip(RingWait::Poll) => "ring/poll/roundtrip",
            Self::RingSpin64 => "ring/spin/roundtrip-64B",
            Self::RingThroughput(64) => "ring/spin/throughput-64B",
            Self::RingThroughput(256) => "ring/spin/throughput",
            Self::RingThroughput(4096) => "ring/spin/throughput-4KiB",
            Self::RingThroughput(_) => "ring/spin/throughput-other",
            #[cfg(feature = "iceoryx2")]
            Self::Iceoryx2 => "peer/iceoryx2-pubsub/roundtrip",
            #[cfg(feature = "iceoryx2")]
            Self::Iceoryx2Rr => "peer/iceoryx2-rr/roundtrip",
        }
    }

    /// Bytes carried each way per operation.
    pub fn payload_bytes(self) -> usize {
        match self {
            Self::Limit => 0,
            Self::RingThroughput(p) => p,
            Self::RingSpin64 => SMALL_PAYLOAD,
            _ => PAYLOAD,
        }
    }

    /// Whether the case blocks in the kernel (slow: fewer default iterations).
    pub fn blocking(self) -> bool {
        matches!(
            self,
            Self::Uds
                | Self::Futex
                | Self::Pipe
                | Self::Crossbeam
                | Self::RingRoundtrip(RingWait::FutexSleep)
        )
    }

    /// Whether the case is measured in turns with the other alternating
    /// cases next to it (`run_interleaved`): the sleeping round trips whose
    /// ratios issue 15 sets (`ring/futex-sleep` against the Unix socket) and
    /// the bare futex under it, so host drift between them is not a ratio.
    pub fn alternates(self) -> bool {
        matches!(
            self,
            Self::Uds | Self::Futex | Self::RingRoundtrip(RingWait::FutexSleep)
        )
    }

    /// Whether the case is a one-way throughput case (an operation is one
    /// frame, not a round trip).
    pub fn throughput(self) -> bool {
        matches!(self, Self::RingThroughput(_))
    }

    fn role(self) -> &'static str {
        match self {
            Self::Limit => "limit",
            Self::Uds => "uds",
            Self::Futex => "futex",
            Self::Pipe => "pipe",
            Self::Crossbeam => "crossbeam",
            Self::RingRoundtrip(_) | Self::RingSpin64 => "ring-echo",
            Self::RingThroughput(_) => "ring-sink",
            #[cfg(feature = "iceoryx2")]
            Self::Iceoryx2 => "iceoryx2",
            #[cfg(feature = "iceoryx2")]
            Self::Iceoryx2Rr => "iceoryx2-rr",
        }
    }
}

/// The cases compared with the limit, in the order they run (the limit is
/// measured before each of them and once more at the end).
pub fn measured_cases() -> Vec<CaseKind> {
    #[allow(unused_mut)] // pushed to only with the iceoryx2 feature
    let mut cases = vec![
        CaseKind::RingRoundtrip(RingWait::Spin),
        CaseKind::RingSpin64,
        CaseKind::RingRoundtrip(RingWait::Poll),
        CaseKind::RingRoundtrip(RingWait::Futex),
        CaseKind::RingRoundtrip(RingWait::EventFd),
        CaseKind::RingThroughput(256),
        CaseKind::RingThroughput(64),
        CaseKind::RingThroughput(4096),
        // The three sleeping round trips back to back: they alternate
        // (`CaseKind::alternates`), measured in turns, so the sleep path is
        // compared with its mechanism and with a socket under the same host
        // conditions (wake-up costs drift by ±10 % over seconds on a VM).
        CaseKind::Uds,
        CaseKind::Futex,
        CaseKind::RingRoundtrip(RingWait::FutexSleep),
        CaseKind::Pipe,
        CaseKind::Crossbeam,
    ];
    #[cfg(feature = "iceoryx2")]
    cases.extend([CaseKind::Iceoryx2, CaseKind::Iceoryx2Rr]);
    cases
}

/// How to start a child process that plays the echoing side: the program,
/// the arguments that select the child role, extra environment.
#[derive(Clone, Debug)]
pub struct Launcher {
    /// Program to run (the `shmwire` binary or the bench binary itself).
    pub program: PathBuf,
    /// Leading arguments (e.g. the hidden subcommand).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// What every case needs: the session its segments live in, how to start
/// children, which CPUs to use.
#[derive(Debug)]
pub struct BenchEnv {
    /// Session holding the bench segments.
    pub session: Session,
    /// How to start the child side.
    pub launcher: Launcher,
    /// CPU placement.
    pub placement: Placement,
    next_id: u64,
}

/// A criterion bench's own setup: pins this process (or notes why not),
/// opens a per-process session and re-executes the bench binary with
/// `child_env` set as the echoing side. Dropping it restores the affinity
/// and removes the session.
// Used by the criterion benches (benches/benches/common); the CLI
// binary does not need it.
pub struct CriterionEnv {
    /// The environment the cases start in.
    pub env: BenchEnv,
    saved: Option<rustix::thread::CpuSet>,
}

impl CriterionEnv {
    /// Sets up bench `tag` (`ring`, `transport`).
    pub fn new(tag: &str, child_env: &str) -> BenchResult<Self> {
        let mut placement = Placement::choose();
        let saved = super::harness::current_affinity();
        placement.pin_parent();
        if let Some(note) = &placement.note {
            // A closed stderr loses the note, never the run.
            let _ = writeln!(std::io::stderr(), "{tag} bench: {note}");
        }
        let session = Session::open(&format!("criterion-{tag}-{}", std::process::id()))?;
        let launcher = Launcher {
            program: std::env::current_exe()?,
            args: Vec::new(),
            env: vec![(child_env.to_owned(), "1".to_owned())],
        };
        Ok(Self {
            env: BenchEnv::new(session, launcher, placement),
            saved,
        })
    }
}

impl Drop for CriterionEnv {
    fn drop(&mut self) {
        super::harness::restore_affinity(&self.saved);
        let _ = self.env.session.remove_all();
    }
}

impl BenchEnv {
    /// A bench environment.
    pub fn new(session: Session, launcher: Launcher, placement: Placement) -> Self {
        Self {
            session,
            launcher,
            placement,
            next_id: 0,
        }
    }

    fn fresh_name(&mut self, what: &str) -> String {
        self.next_id += 1;
        format!("{what}-{}", self.next_id)
    }

    /// Starts the echoing child `role` (pinned to the child CPU, with the
    /// session and `extra` as `key=value` words).
    pub fn spawn(
        &self,
        role: &str,
        extra: &[(&str, String)],
        stdin: Stdio,
        stdout: Stdio,
    ) -> BenchResult<ChildProc> {
        let mut cmd = Command::new(&self.launcher.program);
        cmd.args(&self.launcher.args)
            .arg(format!("role={role}"))
            .arg(format!("root={}", self.session.root().display()))
            .arg(format!("session={}", self.session.name()))
            .arg(format!("ppid={}", std::process::id()))
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::inherit());
        if let Some(cpu) = self.placement.child_cpu {
            cmd.arg(format!("cpu={cpu}"));
        }
        for (k, v) in extra {
            cmd.arg(format!("{k}={v}"));
        }
        for (k, v) in &self.launcher.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.launcher.program.display()))?;
        Ok(ChildProc { child: Some(child) })
    }
}

/// A child process that is always reaped: on drop it waits up to 5 s for
/// the child to exit by itself (after the pair told it to stop), then kills
/// it.
#[derive(Debug)]
pub struct ChildProc {
    child: Option<Child>,
}

impl ChildProc {
    /// The child's pid.
    pub(crate) fn pid(&self) -> BenchResult<u32> {
        Ok(self.child.as_ref().ok_or("child already reaped")?.id())
    }

    /// The child's stdin, if it was started with a piped one (closing it
    /// tells children that wait on it to stop).
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Errors if the child has exited (it should echo until told to stop).
    pub(crate) fn check_alive(&mut self) -> BenchResult<()> {
        if let Some(c) = self.child.as_mut() {
            if let Some(status) = c.try_wait()? {
                return Err(format!("bench child exited early: {status}").into());
            }
        }
        Ok(())
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        // A stopped child (job control) cannot exit by itself: not waited for.
        while Instant::now() < deadline && !is_stopped(c.id()) {
            match c.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => break,
            }
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Whether process `pid` is stopped (state `T` or `t` in
/// `/proc/<pid>/stat`); `false` if that cannot be read.
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself hold ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .is_some_and(|state| matches!(state, 'T' | 't'))
}

/// The measuring side of a running case.
pub trait Pair {
    /// Performs `n` operations (round trips, or frames for throughput
    /// cases); with a histogram, records each one (see
    /// [`timed_loop`]). Returns the total time.
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration>;
}

/// Starts `case`: creates its segments/sockets, starts the echoing side.
pub fn start(case: CaseKind, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>> {
    Ok(match case {
        CaseKind::Limit => Box::new(LimitPair::start(env)?),
        CaseKind::Uds => Box::new(StreamPair::start_uds(env)?),
        CaseKind::Futex => Box::new(FutexPair::start(env)?),
        CaseKind::Pipe => Box::new(StreamPair::start_pipe(env)?),
        CaseKind::Crossbeam => Box::new(CrossbeamPair::start(env)?),
        CaseKind::RingRoundtrip(wait) => Box::new(RingPair::start(env, wait, PAYLOAD)?),
        CaseKind::RingSpin64 => Box::new(RingPair::start(env, RingWait::Spin, SMALL_PAYLOAD)?),
        CaseKind::RingThroughput(payload) => Box::new(ThroughputPair::start(env, payload)?),
        #[cfg(feature = "iceoryx2")]
        CaseKind::Iceoryx2 => Box::new(ice::IcePair::start(env)?),
        #[cfg(feature = "iceoryx2")]
        CaseKind::Iceoryx2Rr => Box::new(ice::IceRrPair::start(env)?),
    })
}

// ---------------------------------------------------------------- limit --

/// Raw atomic ping-pong: the parent stores `seq` into `ping`, the child
/// copies it into `pong`; one round trip moves each cache line once each way.
struct LimitPair {
    seg: Arc<Segment>,
    seq: u64,
    child: ChildProc,
}

/// The two words of the limit segment.
///
/// # Safety
/// - `seg` must be a segment of at least `PONG_OFFSET + 8` payload bytes
///   that outlives the returned references.
unsafe fn limit_words(seg: &Segment) -> (&AtomicU64, &AtomicU64) {
    debug_assert!(seg.payload_len() >= PONG_OFFSET + 8);
    let base = seg.payload_ptr();
    // SAFETY: the payload is page aligned and ≥ PONG_OFFSET + 8 bytes (caller),
    // so both words are in bounds and 8-byte aligned; AtomicU64 is valid for
    // any bit pattern, and every access to them is atomic.
    unsafe {
        (
            &*base.cast::<AtomicU64>(),
            &*base.add(PONG_OFFSET).cast::<AtomicU64>(),
        )
    }
}

/// Creates a fresh one-page bench segment for `case` and starts its child
/// with the segment's name (`seg=`): the limit and the futex mailbox.
fn start_page_case(env: &mut BenchEnv, case: CaseKind) -> BenchResult<(Arc<Segment>, ChildProc)> {
    let name = env.fresh_name(case.role());
    let seg = Segment::create_with(&env.session, &name, 4096, kind::BENCH, |_: &mut [u8]| {
        Ok::<_, ShmError>(())
    })?;
    let child = env.spawn(case.role(), &[("seg", name)], Stdio::null(), Stdio::null())?;
    Ok((Arc::new(seg), child))
}

impl LimitPair {
    fn start(env: &mut BenchEnv) -> BenchResult<Self> {
        let (seg, child) = start_page_case(env, CaseKind::Limit)?;
        Ok(Self { seg, seq: 0, child })
    }
}

impl Pair for LimitPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let seg = Arc::clone(&self.seg);
        // SAFETY: 4096-byte payload; `seg` outlives the references.
        let (ping, pong) = unsafe { limit_words(&seg) };
        let child = &mut self.child;
        let seq = &mut self.seq;
        let stall = stall();
        timed_loop(n, hist, |_| {
            *seq += 1;
            let s = *seq;
            // pairs with the Acquire load of ping in limit_child.
            ping.store(s, Ordering::Release);
            let mut wait = SpinWait::new(stall);
            // pairs with the Release store of pong in limit_child.
            while pong.load(Ordering::Acquire) != s {
                wait.spin(|| child.check_alive())?;
            }
            Ok(())
        })
    }
}

impl Drop for LimitPair {
    fn drop(&mut self) {
        // SAFETY: as in `run`.
        let (ping, _) = unsafe { limit_words(&self.seg) };
        // pairs with the Acquire load of ping in limit_child: tells it to stop.
        ping.store(u64::MAX, Ordering::Release);
    }
}

/// The child's side of [`start_page_case`]: opens the one-page segment
/// the parent made, refusing one shorter than `min_len` bytes (`what`
/// names the case in the error).
fn open_page_case(args: &ChildArgs, min_len: usize, what: &str) -> BenchResult<Segment> {
    let session = Session::attach_in(&args.root, &args.session)?;
    let seg = Segment::open_timeout(
        &session,
        args.get("seg")?,
        kind::BENCH,
        Duration::from_secs(10),
    )?;
    if seg.payload_len() < min_len {
        return Err(format!("{what} segment too small").into());
    }
    Ok(seg)
}

fn limit_child(args: &ChildArgs) -> BenchResult<()> {
    let seg = open_page_case(args, PONG_OFFSET + 8, "limit")?;
    // SAFETY: `open_page_case` checked the payload length; `seg` outlives
    // them.
    let (ping, pong) = unsafe { limit_words(&seg) };
    let mut last = 0u64;
    loop {
        let mut spins = 0u64;
        let v = loop {
            // pairs with the Release store of ping in LimitPair::run / drop.
            let v = ping.load(Ordering::Acquire);
            if v != last {
                break v;
            }
            std::hint::spin_loop();
            spins += 1;
            yield_if_long(spins);
            if spins & SPIN_CHECK_MASK == 0 {
                args.check_parent()?;
            }
        };
        if v == u64::MAX {
            return Ok(());
        }
        // pairs with the Acquire load of pong in LimitPair::run.
        pong.store(v, Ordering::Release);
        last = v;
    }
}

// ---------------------------------------------------------------- futex --

/// Layout of the futex mailbox segment: the two futex words on their own
/// cache lines, then a 256-byte message buffer each way.
const FUTEX_PING: usize = 0;
const FUTEX_PONG: usize = 128;
const FUTEX_PING_BUF: usize = 256;
const FUTEX_PONG_BUF: usize = FUTEX_PING_BUF + PAYLOAD;
const FUTEX_SEG_LEN: usize = FUTEX_PONG_BUF + PAYLOAD;

/// `ping` value that tells the futex child to stop.
const FUTEX_STOP: u32 = u32::MAX;

/// How long one `FUTEX_WAIT` of the futex case sleeps before the waiter
/// checks that its peer is alive: the ring's own slice
/// ([`shmwire::wake::DEFAULT_CHECK_INTERVAL`]), so both arm the same timer.
const FUTEX_SLICE: Duration = shmwire::wake::DEFAULT_CHECK_INTERVAL;

/// The futex mailbox segment's words and buffers.
struct FutexMailbox {
    ping: *const AtomicU32,
    pong: *const AtomicU32,
    ping_buf: *mut u8,
    pong_buf: *mut u8,
}

impl FutexMailbox {
    /// # Safety
    /// - `seg` must have at least [`FUTEX_SEG_LEN`] payload bytes and
    ///   outlive the returned value.
    /// - Each buffer may be written only by its side (`ping_buf` by the
    ///   parent, `pong_buf` by the child) and only while the other side is
    ///   not reading it, which the protocol ensures: a buffer is read after
    ///   the Acquire load that sees its word's new value and written again
    ///   only after the answer to it arrived.
    unsafe fn of(seg: &Segment) -> Self {
        debug_assert!(seg.payload_len() >= FUTEX_SEG_LEN);
        let base = seg.payload_ptr();
        // SAFETY: every offset is < FUTEX_SEG_LEN ≤ the payload length
        // (caller), the payload is page aligned, so both words are 4-byte
        // aligned; AtomicU32 is valid for any bit pattern.
        unsafe {
            Self {
                ping: base.add(FUTEX_PING).cast::<AtomicU32>(),
                pong: base.add(FUTEX_PONG).cast::<AtomicU32>(),
                ping_buf: base.add(FUTEX_PING_BUF),
                pong_buf: base.add(FUTEX_PONG_BUF),
            }
        }
    }

    fn ping(&self) -> &AtomicU32 {
        // SAFETY: in bounds and aligned (`of`); the segment outlives `self`.
        unsafe { &*self.ping }
    }

    fn pong(&self) -> &AtomicU32 {
        // SAFETY: as in `ping`.
        unsafe { &*self.pong }
    }
}

/// Sleeps until `word` differs from `seen` and returns its new value;
/// `alive` is asked after every [`FUTEX_SLICE`] without a change, and once
/// `stall` has passed without one the wait fails ([`stall_error`]; `None`:
/// waits as long as `alive` says yes — the child, which waits for its
/// parent). The clock is read only when a slice ends without a change.
fn futex_wait_change(
    word: &AtomicU32,
    seen: u32,
    stall: Option<Duration>,
    mut alive: impl FnMut() -> BenchResult<()>,
) -> BenchResult<u32> {
    let slice = rustix::thread::futex::Timespec {
        tv_sec: 0,
        tv_nsec: FUTEX_SLICE.as_nanos() as _,
    };
    let mut since: Option<Instant> = None;
    loop {
        // pairs with the Release store of the word by the peer.
        let v = word.load(Ordering::Acquire);
        if v != seen {
            return Ok(v);
        }
        // Returns at once if the word no longer holds `seen`; EAGAIN and
        // EINTR mean "look again", as a wake-up does.
        match rustix::thread::futex::wait(
            word,
            rustix::thread::futex::Flags::empty(),
            seen,
            Some(&slice),
        ) {
            Ok(()) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::TIMEDOUT) => {
                alive()?;
                let now = Instant::now();
                let first =
                    *since.get_or_insert_with(|| now.checked_sub(FUTEX_SLICE).unwrap_or(now));
                if stall.is_some_and(|s| now.duration_since(first) >= s) {
                    return Err(stall_error());
                }
            }
            Err(e) => return Err(format!("FUTEX_WAIT: {e}").into()),
        }
    }
}

/// Publishes `v` in `word` and wakes the peer sleeping on it.
fn futex_post(word: &AtomicU32, v: u32) -> BenchResult<()> {
    // pairs with the Acquire load in the peer's `futex_wait_change`.
    word.store(v, Ordering::Release);
    rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), 1)?;
    Ok(())
}

/// The bare futex round trip (`peer/futex/roundtrip`): the parent writes
/// 256 bytes to the ping buffer, publishes the sequence number in `ping`
/// and wakes the child; the child copies the message to the pong buffer,
/// publishes it in `pong` and wakes the parent.
struct FutexPair {
    seg: Arc<Segment>,
    seq: u32,
    child: ChildProc,
}

impl FutexPair {
    fn start(env: &mut BenchEnv) -> BenchResult<Self> {
        let (seg, child) = start_page_case(env, CaseKind::Futex)?;
        Ok(Self { seg, seq: 0, child })
    }
}

impl Pair for FutexPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let seg = Arc::clone(&self.seg);
        // SAFETY: 4096-byte payload ≥ FUTEX_SEG_LEN; `seg` outlives `mb`;
        // this side writes only the ping buffer, after the answer to the
        // previous message arrived.
        let mb = unsafe { FutexMailbox::of(&seg) };
        let child = &mut self.child;
        let seq = &mut self.seq;
        let mut buf = [0u8; PAYLOAD];
        let stall = stall();
        timed_loop(n, hist, |_| {
            // Never FUTEX_STOP, never 0 (the words' initial value).
            *seq = if *seq >= FUTEX_STOP - 1 { 1 } else { *seq + 1 };
            let s = *seq;
            buf[..4].copy_from_slice(&s.to_le_bytes());
            // SAFETY: the ping buffer is PAYLOAD bytes in the segment; the
            // child reads it only after our Release store of `s` below and
            // has answered the previous message (see `FutexMailbox::of`).
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), mb.ping_buf, PAYLOAD) };
            futex_post(mb.ping(), s)?;
            let mut seen = mb.pong().load(Ordering::Acquire);
            while seen != s {
                seen = futex_wait_change(mb.pong(), seen, Some(stall), || child.check_alive())?;
            }
            // SAFETY: the child wrote the pong buffer before its Release
            // store of `s`, which our Acquire load saw; it does not write it
            // again before our next message.
            unsafe { std::ptr::copy_nonoverlapping(mb.pong_buf, buf.as_mut_ptr(), PAYLOAD) };
            if buf[..4] != s.to_le_bytes() {
                return Err("futex echo returned the wrong payload".into());
            }
            Ok(())
        })
    }
}

impl Drop for FutexPair {
    fn drop(&mut self) {
        // SAFETY: as in `run`.
        let mb = unsafe { FutexMailbox::of(&self.seg) };
        let _ = futex_post(mb.ping(), FUTEX_STOP);
    }
}

fn futex_child(args: &ChildArgs) -> BenchResult<()> {
    let seg = open_page_case(args, FUTEX_SEG_LEN, "futex")?;
    // SAFETY: length checked by `open_page_case`; `seg` outlives `mb`; this side
    // writes only the pong buffer, after the parent's message arrived.
    let mb = unsafe { FutexMailbox::of(&seg) };
    let mut buf = [0u8; PAYLOAD];
    let mut last = 0u32;
    loop {
        let v = futex_wait_change(mb.ping(), last, None, || args.check_parent())?;
        if v == FUTEX_STOP {
            return Ok(());
        }
        // SAFETY: the parent wrote the ping buffer before its Release store
        // of `v` (seen by our Acquire load) and waits for our answer before
        // writing it again; we write the pong buffer before publishing `v`.
        unsafe {
            std::ptr::copy_nonoverlapping(mb.ping_buf, buf.as_mut_ptr(), PAYLOAD);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), mb.pong_buf, PAYLOAD);
        }
        futex_post(mb.pong(), v)?;
        last = v;
    }
}

// --------------------------------------------------------- uds and pipe --

/// Round trips over a byte stream: write 256 bytes, read 256 back.
struct StreamPair {
    tx: File,
    rx: File,
    buf: [u8; PAYLOAD],
    seq: u64,
    watchdog: Watchdog,
    _child: ChildProc,
}

/// What a [`Watchdog`] and its pair share.
#[derive(Default)]
struct WatchState {
    /// Round trips done (the pair counts, the watchdog looks).
    beats: AtomicU64,
    /// A run is in progress (only then does silence count).
    busy: std::sync::atomic::AtomicBool,
    /// The watchdog killed the child.
    fired: std::sync::atomic::AtomicBool,
    /// The pair is gone: the watchdog ends.
    done: std::sync::atomic::AtomicBool,
}

/// Kills a child that answers nothing for [`stall()`] while its pair runs, so
/// a measuring side blocked in a plain `read` (sockets, pipes: no deadline
/// without a syscall per round trip more) gets end-of-file and an error
/// instead of waiting for ever. Looks once a second; the pair's cost is one
/// relaxed add per round trip ([`Watchdog::beat`]).
pub(crate) struct Watchdog {
    state: Arc<WatchState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Watches the child `pid`.
    pub(crate) fn start(pid: u32) -> BenchResult<Self> {
        let state = Arc::new(WatchState::default());
        let shared = Arc::clone(&state);
        let stall = stall();
        let thread = std::thread::Builder::new()
            .name("bench-watchdog".into())
            .spawn(move || {
                // Relaxed everywhere: flags and a counter looked at once a
                // second; they publish no other data.
                let mut last = 0;
                let mut silent_since = Instant::now();
                while !shared.done.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_secs(1));
                    let beats = shared.beats.load(Ordering::Relaxed);
                    if beats != last || !shared.busy.load(Ordering::Relaxed) {
                        last = beats;
                        silent_since = Instant::now();
                    } else if silent_since.elapsed() >= stall {
                        shared.fired.store(true, Ordering::Relaxed);
                        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                        return;
                    }
                }
            })?;
        Ok(Self {
            state,
            thread: Some(thread),
        })
    }
}

impl Watchdog {
    /// Runs the measurement `f`, during which a child silent for
    /// [`stall()`] — no [`Watchdog::beat`] — is killed; `f`'s error after
    /// such a kill becomes the stall error.
    pub(crate) fn guard<T>(&self, f: impl FnOnce() -> BenchResult<T>) -> BenchResult<T> {
        // Relaxed: see `Watchdog::start`.
        self.state.busy.store(true, Ordering::Relaxed);
        let r = f();
        self.state.busy.store(false, Ordering::Relaxed);
        if r.is_err() && self.state.fired.load(Ordering::Relaxed) {
            return Err(format!("{}; killed it", stall_error()).into());
        }
        r
    }

    /// One answer came (called by the measuring side inside
    /// [`Watchdog::guard`]).
    #[inline]
    pub(crate) fn beat(&self) {
        // Relaxed: a counter the watchdog compares once a second.
        self.state.beats.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl StreamPair {
    fn start_uds(env: &mut BenchEnv) -> BenchResult<Self> {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (mine, theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        // The child reads and writes its end as stdin (fd 0).
        let child = env.spawn(
            CaseKind::Uds.role(),
            &[],
            Stdio::from(theirs),
            Stdio::null(),
        )?;
        let stream = UnixStream::from(mine);
        let rx = File::from(OwnedFd::from(stream.try_clone()?));
        let tx = File::from(OwnedFd::from(stream));
        Ok(Self {
            tx,
            rx,
            buf: [0; PAYLOAD],
            seq: 0,
            watchdog: Watchdog::start(child.pid()?)?,
            _child: child,
        })
    }

    fn start_pipe(env: &mut BenchEnv) -> BenchResult<Self> {
        use rustix::pipe::{pipe_with, PipeFlags};
        let (child_rx, parent_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        let (parent_rx, child_tx) = pipe_with(PipeFlags::CLOEXEC)?;
        let child = env.spawn(
            CaseKind::Pipe.role(),
            &[],
            Stdio::from(child_rx),
            Stdio::from(child_tx),
        )?;
        Ok(Self {
            tx: File::from(parent_tx),
            rx: File::from(parent_rx),
            buf: [0; PAYLOAD],
            seq: 0,
            watchdog: Watchdog::start(child.pid()?)?,
            _child: child,
        })
    }
}

impl Pair for StreamPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let Self {
            tx,
            rx,
            buf,
            seq,
            watchdog,
            ..
        } = self;
        watchdog.guard(|| {
            timed_loop(n, hist, |_| {
                *seq += 1;
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                tx.write_all(&buf[..])?;
                rx.read_exact(&mut buf[..])?;
                watchdog.beat();
                if buf[..8] != seq.to_le_bytes() {
                    return Err("stream echo returned the wrong payload".into());
                }
                Ok(())
            })
        })
    }
}

/// Echoes 256-byte messages from `rx` to `tx` until EOF.
fn stream_child(mut rx: File, mut tx: File) -> BenchResult<()> {
    let mut buf = [0u8; PAYLOAD];
    loop {
        match rx.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        match tx.write_all(&buf) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes ownership of one of the standard descriptors the parent set up.
fn take_std_fd(fd: i32) -> File {
    // SAFETY: the parent handed us this descriptor (socket or pipe end) as
    // stdin/stdout; nothing else in the child role uses fd 0/1 afterwards,
    // so this `File` is its only owner.
    unsafe { File::from_raw_fd(fd) }
}

// ------------------------------------------------------------ crossbeam --

/// Round trips between two pinned threads over two `bounded(1)` channels.
struct CrossbeamPair {
    tx: Option<crossbeam_channel::Sender<[u8; PAYLOAD]>>,
    rx: crossbeam_channel::Receiver<[u8; PAYLOAD]>,
    seq: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrossbeamPair {
    fn start(env: &mut BenchEnv) -> BenchResult<Self> {
        let (to_peer, peer_rx) = crossbeam_channel::bounded::<[u8; PAYLOAD]>(1);
        let (peer_tx, from_peer) = crossbeam_channel::bounded::<[u8; PAYLOAD]>(1);
        let cpu = env.placement.child_cpu;
        let thread = std::thread::Builder::new()
            .name("bench-crossbeam-echo".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    let _ = pin_current_thread(cpu);
                }
                while let Ok(buf) = peer_rx.recv() {
                    if peer_tx.send(buf).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            tx: Some(to_peer),
            rx: from_peer,
            seq: 0,
            thread: Some(thread),
        })
    }
}

impl Pair for CrossbeamPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let tx = self.tx.as_ref().ok_or("crossbeam pair stopped")?;
        let rx = &self.rx;
        let seq = &mut self.seq;
        let mut buf = [0u8; PAYLOAD];
        timed_loop(n, hist, |_| {
            *seq += 1;
            buf[..8].copy_from_slice(&seq.to_le_bytes());
            tx.send(buf).map_err(|_| "crossbeam peer gone")?;
            buf = rx.recv().map_err(|_| "crossbeam peer gone")?;
            if buf[..8] != seq.to_le_bytes() {
                return Err("crossbeam echo returned the wrong payload".into());
            }
            Ok(())
        })
    }
}

impl Drop for CrossbeamPair {
    fn drop(&mut self) {
        self.tx = None; // disconnects: the echo thread's recv fails, it exits
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----------------------------------------------------------------- ring --

/// Data bytes of each round-trip ring.
const RT_RING_CAPACITY: usize = 64 * 1024;
/// Data bytes of the throughput ring.
const TP_RING_CAPACITY: usize = 1 << 20;
/// Data bytes of the throughput case's acknowledgement ring.
const ACK_RING_CAPACITY: usize = 4096;
/// Frames per commit (producer) and per release (consumer) batch in the
/// throughput case.
const TP_BATCH: u64 = 32;
/// Frame kind of the throughput case's "tell me when you have it all" frame.
const SYNC_KIND: u32 = 1;
/// Deadline of the children's blocking ring calls, renewed when it passes:
/// a child waits for its parent as long as the parent lives (the liveness
/// checks find a dead one); the measuring side waits [`STALL`] per answer.
const RING_DEADLINE: Duration = Duration::from_secs(600);

/// A ring view of a segment; the view keeps the segment mapped.
fn ring_storage(seg: &Arc<Segment>) -> BenchResult<MappedStorage> {
    Ok(MappedStorage::from_segment(Arc::clone(seg))?)
}

/// A liveness check of a child process: `false` once it has exited (its
/// pidfd becomes readable), even before it is reaped.
fn child_liveness(pid: u32) -> BenchResult<impl Fn() -> bool + Send + Sync + 'static> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::process::{pidfd_open, Pid, PidfdFlags};
    let pid = Pid::from_raw(pid as i32).ok_or("bad child pid")?;
    let fd = pidfd_open(pid, PidfdFlags::empty())?;
    Ok(move || {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    })
}

/// A liveness check of the parent: `false` once we were reparented.
fn parent_liveness(ppid: u32) -> impl Fn() -> bool + Send + Sync + 'static {
    move || rustix::process::getppid().map(|p| p.as_raw_pid() as u32) == Some(ppid)
}

/// Takes ownership of a standard descriptor as an `OwnedFd`.
fn take_std_owned(fd: i32) -> OwnedFd {
    OwnedFd::from(take_std_fd(fd))
}

/// Ring ping-pong: a `payload`-byte frame (256, or 64 for `RingSpin64`) to
/// the child on ring A, the child copies it into a frame on ring B, the
/// parent reads it back.
struct RingPair {
    /// Dropped first: closing ring A tells the child to exit.
    tx: Option<Producer<MappedStorage>>,
    rx: Consumer<MappedStorage>,
    waiter: Waiter,
    buf: [u8; PAYLOAD],
    /// Bytes carried each way (at most `PAYLOAD`).
    payload: usize,
    seq: u64,
    /// `RingWait::Poll`: spin on `peek` instead of `peek_blocking`.
    poll: bool,
    child: ChildProc,
}

/// Spins on `peek` until a frame arrives, checking the child every
/// 65536 polls, at most `stall` ([`SpinWait`]).
fn poll_frame<'a>(
    rx: &'a mut Consumer<MappedStorage>,
    child: &mut ChildProc,
    stall: Duration,
) -> BenchResult<shmwire::ring::ReadFrame<'a, MappedStorage>> {
    let mut wait = SpinWait::new(stall);
    // A dropped `ReadFrame` stays in the ring, so the frame found by the
    // first `peek` is returned by the second (two calls because returning
    // the first borrow from inside the loop does not pass the borrow checker).
    loop {
        let found = rx.peek()?.is_some();
        if found {
            return Ok(rx.peek()?.expect("frame seen a moment ago"));
        }
        wait.spin(|| child.check_alive())?;
    }
}

impl RingPair {
    fn start(env: &mut BenchEnv, wait: RingWait, payload: usize) -> BenchResult<Self> {
        if !(8..=PAYLOAD).contains(&payload) {
            return Err("ring round-trip payload must be 8..=256 bytes".into());
        }
        let a = env.fresh_name("ring-a");
        let b = env.fresh_name("ring-b");
        let seg_a = create_ring_segment(&env.session, &a, RT_RING_CAPACITY)?;
        let seg_b = create_ring_segment(&env.session, &b, RT_RING_CAPACITY)?;
        let mut tx = Ring::attach_producer(ring_storage(&seg_a)?)?;
        let rx = Ring::attach_consumer(ring_storage(&seg_b)?)?;
        // For eventfd: the child blocks on `child_fd` (its stdin), we block
        // on `parent_fd` (its stdout); each side writes the other's.
        let (stdin, stdout, my_fd) = if wait == RingWait::EventFd {
            use std::os::fd::AsFd;
            let child_fd = EventFd::new()?;
            let parent_fd = EventFd::new()?;
            tx.set_peer_eventfd(child_fd.clone());
            (
                Stdio::from(child_fd.as_fd().try_clone_to_owned()?),
                Stdio::from(parent_fd.as_fd().try_clone_to_owned()?),
                Some(parent_fd),
            )
        } else {
            (Stdio::null(), Stdio::null(), None)
        };
        let child = env.spawn(
            CaseKind::RingRoundtrip(wait).role(),
            &[("a", a), ("b", b), ("wait", wait.word().to_owned())],
            stdin,
            stdout,
        )?;
        let waiter = wait
            .waiter(my_fd)?
            .with_liveness(child_liveness(child.pid()?)?);
        Ok(Self {
            tx: Some(tx),
            rx,
            waiter,
            buf: [0; PAYLOAD],
            payload,
            seq: 0,
            poll: wait == RingWait::Poll,
            child,
        })
    }
}

impl Pair for RingPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let tx = self.tx.as_mut().ok_or("ring pair stopped")?;
        let Self {
            rx,
            waiter,
            buf,
            payload,
            seq,
            child,
            poll,
            ..
        } = self;
        let payload = *payload;
        let buf = &mut buf[..payload];
        let stall = stall();
        let r = timed_loop(n, hist, |_| {
            *seq += 1;
            buf[..8].copy_from_slice(&seq.to_le_bytes());
            // One frame in flight: the ring is never full here.
            let mut grant = tx.reserve(payload)?;
            grant.copy_from_slice(buf);
            grant.commit_all();
            let frame = if *poll {
                poll_frame(rx, child, stall)?
            } else {
                // A relative deadline: resolved at the wait's first clock
                // read, so a quick answer reads no clock.
                match rx.peek_blocking(waiter, stall) {
                    Err(RingError::TimedOut) => return Err(stall_error()),
                    other => other?,
                }
            };
            if frame.len() != payload {
                return Err("ring echo returned a frame of the wrong length".into());
            }
            buf.copy_from_slice(&frame);
            frame.release();
            if buf[..8] != seq.to_le_bytes() {
                return Err("ring echo returned the wrong frame".into());
            }
            Ok(())
        });
        if r.is_err() {
            child.check_alive()?;
        }
        r
    }
}

/// Child of the ring round-trip cases: echo every frame of ring A on ring B
/// until ring A is closed.
fn ring_echo_child(args: &ChildArgs) -> BenchResult<()> {
    let session = Session::attach_in(&args.root, &args.session)?;
    let open = |name: &str| -> BenchResult<Arc<Segment>> {
        Ok(Arc::new(Segment::open_timeout(
            &session,
            name,
            kind::RING,
            Duration::from_secs(10),
        )?))
    };
    let seg_a = open(args.get("a")?)?;
    let seg_b = open(args.get("b")?)?;
    let mut rx = Ring::attach_consumer(ring_storage(&seg_a)?)?;
    let mut tx = Ring::attach_producer(ring_storage(&seg_b)?)?;
    let wait = RingWait::from_word(args.get("wait")?)?;
    let my_fd = if wait == RingWait::EventFd {
        let mine = EventFd::from_owned(take_std_owned(0))?;
        tx.set_peer_eventfd(EventFd::from_owned(take_std_owned(1))?);
        Some(mine)
    } else {
        None
    };
    let waiter = wait
        .waiter(my_fd)?
        .with_liveness(parent_liveness(args.ppid));
    let mut deadline = Instant::now() + RING_DEADLINE;
    let mut spins = 0u64;
    loop {
        if wait == RingWait::Poll {
            // Spin on peek; check the parent every 65536 empty polls.
            match rx.peek() {
                Ok(Some(_)) => {}
                Ok(None) => {
                    std::hint::spin_loop();
                    spins += 1;
                    yield_if_long(spins);
                    if spins & SPIN_CHECK_MASK == 0 {
                        args.check_parent()?;
                    }
                    continue;
                }
                Err(RingError::Closed) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let frame = match rx.peek_blocking(&waiter, deadline) {
            Ok(f) => f,
            Err(RingError::Closed) => return Ok(()),
            Err(RingError::TimedOut) => {
                deadline = Instant::now() + RING_DEADLINE;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut grant = tx.reserve(frame.len())?;
        grant.copy_from_slice(&frame);
        grant.commit_all();
        frame.release();
    }
}

/// One-way streaming: the parent commits frames in batches of `TP_BATCH`,
/// the child releases them in batches; a final `SYNC_KIND` frame is
/// acknowledged on a second ring so a run ends only when every frame was
/// consumed.
struct ThroughputPair {
    tx: Option<Producer<MappedStorage>>,
    ack: Consumer<MappedStorage>,
    waiter: Waiter,
    src: Vec<u8>,
    seq: u64,
    child: ChildProc,
}

impl ThroughputPair {
    fn start(env: &mut BenchEnv, payload: usize) -> BenchResult<Self> {
        if payload < 8 {
            return Err("throughput payload must hold the 8-byte sequence number".into());
        }
        let a = env.fresh_name("tp-data");
        let b = env.fresh_name("tp-ack");
        let seg_a = create_ring_segment(&env.session, &a, TP_RING_CAPACITY)?;
        let seg_b = create_ring_segment(&env.session, &b, ACK_RING_CAPACITY)?;
        let tx = Ring::attach_producer(ring_storage(&seg_a)?)?;
        let ack = Ring::attach_consumer(ring_storage(&seg_b)?)?;
        let child = env.spawn(
            CaseKind::RingThroughput(payload).role(),
            &[("a", a), ("b", b), ("payload", payload.to_string())],
            Stdio::null(),
            Stdio::null(),
        )?;
        let waiter = Waiter::new(WaitStrategy::Spin).with_liveness(child_liveness(child.pid()?)?);
        Ok(Self {
            tx: Some(tx),
            ack,
            waiter,
            src: (0..payload).map(|i| i as u8).collect(),
            seq: 0,
            child,
        })
    }
}

impl Pair for ThroughputPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let tx = self.tx.as_mut().ok_or("throughput pair stopped")?;
        let Self {
            ack,
            waiter,
            src,
            seq,
            child,
            ..
        } = self;
        let mut hist = hist;
        // Each blocking call waits at most `stall` (relative: no clock read
        // unless it waits).
        let stall = stall();
        let stalled = |e: RingError| match e {
            RingError::TimedOut => stall_error(),
            e => e.into(),
        };
        let start = Instant::now();
        let mut prev = start;
        let mut sent = 0u64;
        let mut body = || -> BenchResult<()> {
            while sent < n {
                let batch = TP_BATCH.min(n - sent);
                for _ in 0..batch {
                    *seq += 1;
                    let mut grant = tx
                        .reserve_blocking(src.len(), 0, waiter, stall)
                        .map_err(stalled)?;
                    grant[..8].copy_from_slice(&seq.to_le_bytes());
                    grant[8..].copy_from_slice(&src[8..]);
                    grant.commit_all_deferred();
                }
                tx.flush();
                sent += batch;
                if let Some(h) = hist.as_deref_mut() {
                    let now = Instant::now();
                    let per_frame = ((now - prev).as_nanos() as u64 / batch).max(1);
                    h.saturating_record_n(per_frame, batch);
                    prev = now;
                }
            }
            // Ask the child to confirm it consumed everything up to `seq`.
            let mut grant = tx
                .reserve_blocking(8, SYNC_KIND, waiter, stall)
                .map_err(stalled)?;
            grant.copy_from_slice(&seq.to_le_bytes());
            grant.commit_all();
            let frame = ack.peek_blocking(waiter, stall).map_err(stalled)?;
            let ok = frame.len() == 8 && frame[..] == seq.to_le_bytes();
            frame.release();
            if !ok {
                return Err("throughput sink acknowledged the wrong sequence number".into());
            }
            Ok(())
        };
        let r = body();
        if r.is_err() {
            child.check_alive()?;
        }
        r?;
        Ok(start.elapsed())
    }
}

/// Child of the throughput cases: consume frames, check their sequence
/// numbers and lengths, acknowledge each `SYNC_KIND` frame.
fn ring_sink_child(args: &ChildArgs) -> BenchResult<()> {
    let session = Session::attach_in(&args.root, &args.session)?;
    let open = |name: &str| -> BenchResult<Arc<Segment>> {
        Ok(Arc::new(Segment::open_timeout(
            &session,
            name,
            kind::RING,
            Duration::from_secs(10),
        )?))
    };
    let payload: usize = args.get("payload")?.parse()?;
    let seg_a = open(args.get("a")?)?;
    let seg_b = open(args.get("b")?)?;
    let mut rx = Ring::attach_consumer(ring_storage(&seg_a)?)?;
    let mut ack = Ring::attach_producer(ring_storage(&seg_b)?)?;
    let waiter = Waiter::new(WaitStrategy::Spin).with_liveness(parent_liveness(args.ppid));
    let mut deadline = Instant::now() + RING_DEADLINE;
    let mut expect: Option<u64> = None;
    let mut count = 0u64;
    loop {
        let frame = match rx.peek_blocking(&waiter, deadline) {
            Ok(f) => f,
            Err(RingError::Closed) => return Ok(()),
            Err(RingError::TimedOut) => {
                deadline = Instant::now() + RING_DEADLINE;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if frame.len() < 8 {
            return Err("throughput frame shorter than its sequence number".into());
        }
        let s = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        if frame.kind() == SYNC_KIND {
            frame.release();
            rx.flush();
            let mut grant = ack.reserve(8)?;
            grant.copy_from_slice(&s.to_le_bytes());
            grant.commit_all();
            continue;
        }
        if frame.len() != payload || expect.is_some_and(|e| e != s) {
            return Err(format!(
                "throughput frame {s} (len {}) out of order or wrong size (expected {expect:?})",
                frame.len()
            )
            .into());
        }
        // Touch the last bytes too, as a decoder would.
        std::hint::black_box(&frame[frame.len() - 8..]);
        expect = Some(s + 1);
        frame.release_deferred();
        count += 1;
        if count % TP_BATCH == 0 {
            rx.flush();
        }
    }
}

// ---------------------------------------------------------- child side --

/// Arguments of a child role: `key=value` words.
#[derive(Debug)]
pub struct ChildArgs {
    role: String,
    root: PathBuf,
    session: String,
    ppid: u32,
    cpu: Option<usize>,
    rest: Vec<(String, String)>,
}

impl ChildArgs {
    /// Parses `key=value` words.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> BenchResult<Self> {
        let mut role = None;
        let mut root = None;
        let mut session = None;
        let mut ppid = None;
        let mut cpu = None;
        let mut rest = Vec::new();
        for w in words {
            let (k, v) = w
                .as_ref()
                .split_once('=')
                .ok_or_else(|| format!("child argument {:?} is not key=value", w.as_ref()))?;
            match k {
                "role" => role = Some(v.to_owned()),
                "root" => root = Some(PathBuf::from(v)),
                "session" => session = Some(v.to_owned()),
                "ppid" => ppid = Some(v.parse()?),
                "cpu" => cpu = Some(v.parse()?),
                _ => rest.push((k.to_owned(), v.to_owned())),
            }
        }
        Ok(Self {
            role: role.ok_or("missing role=")?,
            root: root.ok_or("missing root=")?,
            session: session.ok_or("missing session=")?,
            ppid: ppid.ok_or("missing ppid=")?,
            cpu,
            rest,
        })
    }

    /// The session root the parent gave.
    pub(crate) fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// The session name the parent gave.
    pub(crate) fn session_name(&self) -> &str {
        &self.session
    }

    pub(crate) fn get(&self, key: &str) -> BenchResult<&str> {
        self.rest
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("missing {key}=").into())
    }

    /// Errors once the parent that started us is gone (we were reparented).
    fn check_parent(&self) -> BenchResult<()> {
        let ppid = rustix::process::getppid().map(|p| p.as_raw_pid() as u32);
        if ppid != Some(self.ppid) {
            return Err("its parent, the measuring process, is gone; exiting".into());
        }
        Ok(())
    }
}

/// Entry point of the echoing child process.
pub fn child_main<S: AsRef<str>>(words: &[S]) -> BenchResult<()> {
    let args = ChildArgs::parse(words)?;
    if let Some(cpu) = args.cpu {
        // The parent could pin itself, so this should work too; if not, the
        // run goes on unpinned on this side rather than failing.
        if let Err(e) = pin_current_thread(cpu) {
            let _ = writeln!(std::io::stderr(), "bench child: {e}; running unpinned");
        }
    }
    let r = match args.role.as_str() {
        "limit" => limit_child(&args),
        "futex" => futex_child(&args),
        "uds" => {
            let sock = take_std_fd(0);
            let tx = sock.try_clone()?;
            stream_child(sock, tx)
        }
        "pipe" => stream_child(take_std_fd(0), take_std_fd(1)),
        "ring-echo" => ring_echo_child(&args),
        "ring-sink" => ring_sink_child(&args),
        super::store::SERVICE_ROLE => super::store::child(&args),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2" => ice::child(&args),
        #[cfg(feature = "iceoryx2")]
        "iceoryx2-rr" => ice::rr_child(&args),
        other => Err(format!("unknown bench child role {other:?}").into()),
    };
    // Its stderr is the user's: say whose message it is, with every cause
    // (an OS error such as "No space left on device" was lost behind the
    // library's message: the attack on `583658f`).
    r.map_err(|e| {
        format!(
            "bench child (role={}): {}",
            args.role,
            shmwire::error_chain(&*e)
        )
        .into()
    })
}

// ------------------------------------------------------------- iceoryx2 --

/// The iceoryx2 peers: publish-subscribe ping-pong between the two processes
/// over two services, and request-response over one service, each side
/// spinning on `receive` (iceoryx2's own zero-copy shared-memory transport,
/// measured by the same harness).
#[cfg(feature = "iceoryx2")]
mod ice {
    use iceoryx2::pending_response::PendingResponse;
    use iceoryx2::port::client::Client;
    use iceoryx2::port::publisher::Publisher;
    use iceoryx2::port::server::Server;
    use iceoryx2::port::subscriber::Subscriber;
    use iceoryx2::prelude::*;

    use super::*;

    type Payload = [u8; PAYLOAD];
    type Pub = Publisher<ipc::Service, Payload, ()>;
    type Sub = Subscriber<ipc::Service, Payload, ()>;

    fn err(e: impl std::fmt::Debug) -> Box<dyn std::error::Error + Send + Sync> {
        format!("iceoryx2: {e:?}").into()
    }

    /// Opens (or creates) the ping and pong services of one measurement.
    fn ports(base: &str, parent: bool) -> BenchResult<(Node<ipc::Service>, Pub, Sub)> {
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new().create::<ipc::Service>().map_err(err)?;
        let open = |suffix: &str| -> BenchResult<_> {
            let name: ServiceName = format!("{base}/{suffix}")
                .as_str()
                .try_into()
                .map_err(err)?;
            node.service_builder(&name)
                .publish_subscribe::<Payload>()
                .open_or_create()
                .map_err(err)
        };
        let (ping, pong) = (open("ping")?, open("pong")?);
        let (tx, rx) = if parent {
            (&ping, &pong)
        } else {
            (&pong, &ping)
        };
        let publisher = tx.publisher_builder().create().map_err(err)?;
        let subscriber = rx.subscriber_builder().create().map_err(err)?;
        Ok((node, publisher, subscriber))
    }

    fn send(publisher: &Pub, seq: u64) -> BenchResult<()> {
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        let sample = publisher.loan_uninit().map_err(err)?;
        sample.write_payload(payload).send().map_err(err)?;
        Ok(())
    }

    /// The measuring side.
    pub struct IcePair {
        _node: Node<ipc::Service>,
        publisher: Pub,
        subscriber: Sub,
        seq: u64,
        child: ChildProc,
    }

    impl IcePair {
        pub fn start(env: &mut BenchEnv) -> BenchResult<Self> {
            let fresh = env.fresh_name("iox2");
            let base = format!("shmwire/{}/{fresh}", env.session.name());
            let (node, publisher, subscriber) = ports(&base, true)?;
            let mut child = env.spawn(
                CaseKind::Iceoryx2.role(),
                &[("svc", base)],
                Stdio::null(),
                Stdio::null(),
            )?;
            // A sample reaches only subscribers connected when it is sent:
            // ping until the child's echo shows the path is up, then drain.
            let deadline = Instant::now() + Duration::from_secs(20);
            'connect: loop {
                if Instant::now() > deadline {
                    return Err("iceoryx2 peer did not connect".into());
                }
                child.check_alive()?;
                send(&publisher, 0)?;
                let wait = Instant::now() + Duration::from_millis(20);
                while Instant::now() < wait {
                    if subscriber.receive().map_err(err)?.is_some() {
                        break 'connect;
                    }
                    std::thread::yield_now();
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            while subscriber.receive().map_err(err)?.is_some() {}
            Ok(Self {
                _node: node,
                publisher,
                subscriber,
                seq: 0,
                child,
            })
        }
    }

    impl Pair for IcePair {
        fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
            let (publisher, subscriber) = (&self.publisher, &self.subscriber);
            let (seq, child) = (&mut self.seq, &mut self.child);
            let stall = stall();
            timed_loop(n, hist, |_| {
                *seq += 1;
                send(publisher, *seq)?;
                let mut wait = SpinWait::new(stall);
                loop {
                    if let Some(sample) = subscriber.receive().map_err(err)? {
                        let got = u64::from_le_bytes(sample.payload()[..8].try_into()?);
                        if got == *seq {
                            return Ok(());
                        }
                        // A late echo of a connection ping: skip it.
                        continue;
                    }
                    wait.spin(|| child.check_alive())?;
                }
            })
        }
    }

    /// Tells the child to drop its ports and node and exit, so iceoryx2
    /// removes the services' shared memory (a killed node leaves it behind).
    const STOP: u64 = u64::MAX;

    impl Drop for IcePair {
        fn drop(&mut self) {
            let _ = send(&self.publisher, STOP);
            // `ChildProc`'s drop then waits for the exit (and kills only a
            // child that does not exit).
        }
    }

    /// The echoing side: every ping goes straight back as a pong, until
    /// [`STOP`].
    pub fn child(args: &ChildArgs) -> BenchResult<()> {
        let (_node, publisher, subscriber) = ports(args.get("svc")?, false)?;
        let mut spins = 0u64;
        loop {
            match subscriber.receive().map_err(err)? {
                Some(sample) => {
                    let seq = u64::from_le_bytes(sample.payload()[..8].try_into()?);
                    drop(sample);
                    if seq == STOP {
                        return Ok(());
                    }
                    send(&publisher, seq)?;
                    spins = 0;
                }
                None => {
                    spins += 1;
                    if spins & SPIN_CHECK_MASK == 0 {
                        // The parent stops the child when the case ends.
                        args.check_parent()?;
                    }
                    yield_if_long(spins);
                    std::hint::spin_loop();
                }
            }
        }
    }

    type RrClient = Client<ipc::Service, Payload, (), Payload, ()>;
    type RrServer = Server<ipc::Service, Payload, (), Payload, ()>;
    type Pending = PendingResponse<ipc::Service, Payload, (), Payload, ()>;
    type RrService = iceoryx2::service::port_factory::request_response::PortFactory<
        ipc::Service,
        Payload,
        (),
        Payload,
        (),
    >;

    /// Opens (or creates) the request-response service of one measurement.
    fn rr_service(base: &str) -> BenchResult<(Node<ipc::Service>, RrService)> {
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new().create::<ipc::Service>().map_err(err)?;
        let name: ServiceName = format!("{base}/rr").as_str().try_into().map_err(err)?;
        let service = node
            .service_builder(&name)
            .request_response::<Payload, Payload>()
            .open_or_create()
            .map_err(err)?;
        Ok((node, service))
    }

    fn request(client: &RrClient, seq: u64) -> BenchResult<Pending> {
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        let req = client.loan_uninit().map_err(err)?;
        req.write_payload(payload).send().map_err(err)
    }

    /// The measuring side of request-response: the client.
    pub struct IceRrPair {
        _node: Node<ipc::Service>,
        client: RrClient,
        seq: u64,
        child: ChildProc,
    }

    impl IceRrPair {
        pub fn start(env: &mut BenchEnv) -> BenchResult<Self> {
            let fresh = env.fresh_name("iox2rr");
            let base = format!("shmwire/{}/{fresh}", env.session.name());
            let (node, service) = rr_service(&base)?;
            let client = service.client_builder().create().map_err(err)?;
            let mut child = env.spawn(
                CaseKind::Iceoryx2Rr.role(),
                &[("svc", base)],
                Stdio::null(),
                Stdio::null(),
            )?;
            // A request reaches only servers connected when it is sent:
            // ask until one is answered.
            let deadline = Instant::now() + Duration::from_secs(20);
            'connect: loop {
                if Instant::now() > deadline {
                    return Err("iceoryx2 server did not connect".into());
                }
                child.check_alive()?;
                let pending = request(&client, 0)?;
                let wait = Instant::now() + Duration::from_millis(20);
                while Instant::now() < wait {
                    if pending.receive().map_err(err)?.is_some() {
                        break 'connect;
                    }
                    std::thread::yield_now();
                }
            }
            Ok(Self {
                _node: node,
                client,
                seq: 0,
                child,
            })
        }
    }

    impl Pair for IceRrPair {
        fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
            let client = &self.client;
            let (seq, child) = (&mut self.seq, &mut self.child);
            let stall = stall();
            timed_loop(n, hist, |_| {
                *seq += 1;
                let pending = request(client, *seq)?;
                let mut wait = SpinWait::new(stall);
                loop {
                    if let Some(response) = pending.receive().map_err(err)? {
                        let got = u64::from_le_bytes(response.payload()[..8].try_into()?);
                        if got != *seq {
                            return Err("iceoryx2 response to the wrong request".into());
                        }
                        return Ok(());
                    }
                    wait.spin(|| child.check_alive())?;
                }
            })
        }
    }

    impl Drop for IceRrPair {
        fn drop(&mut self) {
            // A request the server answers by exiting (see `rr_child`).
            let _ = request(&self.client, STOP);
        }
    }

    /// The answering side: every request's payload goes straight back as
    /// its response, until a request carries [`STOP`].
    pub fn rr_child(args: &ChildArgs) -> BenchResult<()> {
        let (_node, service) = rr_service(args.get("svc")?)?;
        let server: RrServer = service.server_builder().create().map_err(err)?;
        let mut spins = 0u64;
        loop {
            match server.receive().map_err(err)? {
                Some(active) => {
                    let payload: Payload = *active.payload();
                    let seq = u64::from_le_bytes(payload[..8].try_into()?);
                    if seq == STOP {
                        return Ok(());
                    }
                    let sent = active
                        .loan_uninit()
                        .map_err(err)
                        .and_then(|r| r.write_payload(payload).send().map_err(err));
                    // A connection ping (0) may have been given up already.
                    if seq != 0 {
                        sent?;
                    }
                    spins = 0;
                }
                None => {
                    spins += 1;
                    if spins & SPIN_CHECK_MASK == 0 {
                        args.check_parent()?;
                    }
                    yield_if_long(spins);
                    std::hint::spin_loop();
                }
            }
        }
    }
}
