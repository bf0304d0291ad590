//! `shmwire bench store`: the object store from one client, the service in
//! another process (`shmwire __bench-child role=store-service`, pinned to
//! the other CPU, as a node runs it), beside single-thread `memcpy` of the
//! same bytes in the same run. The same cases run under criterion in
//! `benches/benches/store.rs`.
//!
//! | case | one operation |
//! | --- | --- |
//! | `store/put-8B`, `store/put-1KiB` | `put` of a new object (one round trip: the bytes travel in the request) |
//! | `store/get-8B`, `store/get-1KiB`, `store/get-64MiB` | `get` of a sealed object with timeout 0 and the drop of its buffer (the shared index: no round trip) |
//! | `store/put-1MiB`, `store/put-64MiB` | `put` of a new object: `create`, copy into the arena, `seal` |
//! | `peer/memcpy-1MiB`, `peer/memcpy-64MiB` | `copy_from_slice` between two warm private buffers |
//!
//! Deleting the objects a put case made happens between timed operations
//! and is not counted.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmwire::ids::ObjectId;
use shmwire::shm::Session;
use shmwire::store::{StoreClient, StoreConfig, StoreService};

use super::cases::{BenchEnv, ChildArgs, ChildProc, Pair};
use super::harness::BenchResult;

/// Role name of the store-service child.
pub const SERVICE_ROLE: &str = "store-service";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Put cases delete their objects in batches of this many (untimed).
const DELETE_BATCH: usize = 1024;

/// One case of `bench store`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    /// `put` of `n` bytes.
    Put(usize),
    /// `get` of a sealed object of `n` bytes (and the drop of its buffer).
    Get(usize),
    /// `memcpy` of `n` bytes.
    Memcpy(usize),
}

/// A case with how it counts its iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreCase {
    /// What one operation is.
    pub op: StoreOp,
    /// `--iters` was given: every case runs that many operations (else the
    /// large cases run fewer than the small ones).
    pub explicit_iters: bool,
}

impl StoreCase {
    /// Every case, in run order (`explicit_iters`: see the field).
    pub fn all(explicit_iters: bool) -> Vec<Self> {
        use StoreOp::*;
        [
            Put(8),
            Get(8),
            Put(KIB),
            Get(KIB),
            Put(MIB),
            Memcpy(MIB),
            Put(64 * MIB),
            Get(64 * MIB),
            Memcpy(64 * MIB),
        ]
        .into_iter()
        .map(|op| StoreCase { op, explicit_iters })
        .collect()
    }

    /// The case name in reports.
    pub fn name(self) -> &'static str {
        use StoreOp::*;
        match self.op {
            Put(8) => "store/put-8B",
            Get(8) => "store/get-8B",
            Put(KIB) => "store/put-1KiB",
            Get(KIB) => "store/get-1KiB",
            Put(MIB) => "store/put-1MiB",
            Put(_) => "store/put-64MiB",
            Get(_) => "store/get-64MiB",
            Memcpy(MIB) => "peer/memcpy-1MiB",
            Memcpy(_) => "peer/memcpy-64MiB",
        }
    }

    /// Bytes per operation.
    pub fn bytes(self) -> usize {
        match self.op {
            StoreOp::Put(n) | StoreOp::Get(n) | StoreOp::Memcpy(n) => n,
        }
    }

    /// Operations per measurement: `iters` when given, else fewer for the
    /// large objects (a 64 MiB copy takes milliseconds).
    pub fn iterations(self, iters: u64) -> u64 {
        if self.explicit_iters || matches!(self.op, StoreOp::Get(_)) {
            return iters;
        }
        match self.bytes() {
            n if n >= 64 * MIB => 40,
            n if n >= MIB => 2_000,
            _ => iters,
        }
    }

    /// Arena capacity of the case's store.
    fn capacity(self) -> u64 {
        if self.bytes() >= 64 * MIB {
            160 * MIB as u64
        } else {
            64 * MIB as u64
        }
    }
}

impl super::Case for StoreCase {
    fn name(self) -> &'static str {
        StoreCase::name(self)
    }
    fn payload_bytes(self) -> usize {
        self.bytes()
    }
    fn iterations(self, spin_iters: u64, _blocking_iters: u64) -> u64 {
        StoreCase::iterations(self, spin_iters)
    }
    fn start(self, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>> {
        Ok(match self.op {
            StoreOp::Memcpy(n) => Box::new(MemcpyPair::new(n)),
            _ => Box::new(StorePair::start(self, env)?),
        })
    }
}

/// Runs `bench store` (see the module docs).
pub fn run(opts: &super::Options) -> BenchResult<super::Report> {
    super::run_mode(
        "store",
        "bench-store",
        opts,
        StoreCase::all(opts.iters.is_some()),
    )
}

/// A store service in a child process and a client of it here.
pub struct ServiceChild {
    /// The client.
    pub client: StoreClient,
    // Dropping it closes the child's stdin: the child stops its service
    // and exits.
    _stdin: Option<std::process::ChildStdin>,
    _child: ChildProc,
}

static STORES: AtomicU64 = AtomicU64::new(0);

impl ServiceChild {
    /// Starts a store of `capacity` bytes in a child pinned to the other
    /// CPU and connects to it.
    pub fn start(env: &BenchEnv, capacity: u64) -> BenchResult<Self> {
        // Relaxed: only makes names distinct.
        let n = STORES.fetch_add(1, Ordering::Relaxed);
        let name = format!("bench-store-{}-{n}", std::process::id());
        let mut child = env.spawn(
            SERVICE_ROLE,
            &[("name", name.clone()), ("capacity", capacity.to_string())],
            Stdio::piped(),
            Stdio::null(),
        )?;
        let stdin = child.take_stdin();
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let client = loop {
            match StoreClient::connect(&env.session, &name) {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => {
                    let e = shmwire::error_chain(&e);
                    return Err(format!("store child did not start: {e}").into());
                }
                Err(_) => {
                    child.check_alive()?;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        };
        Ok(Self {
            client,
            _stdin: stdin,
            _child: child,
        })
    }
}

/// Entry point of the store-service child: runs the service until its
/// stdin closes (the parent is done, or died).
pub fn child(args: &ChildArgs) -> BenchResult<()> {
    let session = Session::attach_in(args.root(), args.session_name())?;
    let capacity: u64 = args.get("capacity")?.parse()?;
    let _store = StoreService::start(&session, StoreConfig::new(capacity).name(args.get("name")?))?;
    let mut sink = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink)?;
    Ok(())
}

/// The measuring side of a store case.
pub struct StorePair {
    case: StoreCase,
    store: ServiceChild,
    data: Vec<u8>,
    next: u64,
    made: Vec<ObjectId>,
    get_id: ObjectId,
}

fn object_id(n: u64) -> ObjectId {
    let mut b = [0x5a; 28];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    ObjectId::from_array(b)
}

impl StorePair {
    /// Starts the service child and, for a get case, puts the object.
    pub fn start(case: StoreCase, env: &BenchEnv) -> BenchResult<Self> {
        let store = ServiceChild::start(env, case.capacity())?;
        let data: Vec<u8> = (0..case.bytes()).map(|i| i as u8).collect();
        let get_id = object_id(u64::MAX);
        if let StoreOp::Get(_) = case.op {
            store.client.put(get_id, &data, b"")?;
        }
        Ok(Self {
            case,
            store,
            data,
            next: 0,
            made: Vec::new(),
            get_id,
        })
    }

    fn one(&mut self) -> BenchResult<()> {
        let c = &self.store.client;
        match self.case.op {
            StoreOp::Put(_) => {
                self.next += 1;
                let id = object_id(self.next);
                c.put(id, &self.data, b"")?;
                self.made.push(id);
            }
            StoreOp::Get(n) => {
                let got = c.get(&[self.get_id], Duration::ZERO)?;
                let len = got[0].as_ref().ok_or("the sealed object is missing")?.len();
                if std::hint::black_box(len) != n {
                    return Err("wrong object size".into());
                }
            }
            StoreOp::Memcpy(_) => return Err("memcpy is not a store case".into()),
        }
        Ok(())
    }

    /// Deletes what the put case made once enough piled up (or always, for
    /// objects of 1 MiB and more). Not timed.
    fn tidy(&mut self) -> BenchResult<()> {
        if self.made.len() >= DELETE_BATCH || (self.case.bytes() >= MIB && !self.made.is_empty()) {
            self.store.client.delete(&self.made)?;
            self.made.clear();
        }
        Ok(())
    }
}

/// `n` operations, each timed on its own (one clock read between two),
/// with untimed `tidy` work between them. Returns the sum of the timed
/// parts.
fn timed_ops(
    n: u64,
    mut hist: Option<&mut Histogram<u64>>,
    mut op: impl FnMut() -> BenchResult<()>,
    mut tidy: impl FnMut() -> BenchResult<()>,
) -> BenchResult<Duration> {
    let mut total = Duration::ZERO;
    let mut prev = Instant::now();
    for _ in 0..n {
        op()?;
        let now = Instant::now();
        let d = now - prev;
        total += d;
        if let Some(h) = hist.as_deref_mut() {
            h.saturating_record(d.as_nanos() as u64);
        }
        tidy()?;
        prev = Instant::now();
    }
    Ok(total)
}

impl Pair for StorePair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let this = std::cell::RefCell::new(self);
        timed_ops(
            n,
            hist,
            || this.borrow_mut().one(),
            || this.borrow_mut().tidy(),
        )
    }
}

/// Single-thread `memcpy` between two warm private buffers.
pub struct MemcpyPair {
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl MemcpyPair {
    /// Buffers of `n` bytes, both touched.
    pub fn new(n: usize) -> Self {
        Self {
            src: (0..n).map(|i| i as u8).collect(),
            dst: vec![1; n],
        }
    }
}

impl Pair for MemcpyPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let (src, dst) = (&self.src, &mut self.dst);
        timed_ops(
            n,
            hist,
            || {
                dst.copy_from_slice(std::hint::black_box(src));
                std::hint::black_box(&mut *dst);
                Ok(())
            },
            || Ok(()),
        )
    }
}
