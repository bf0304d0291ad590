//! What an eviction pass costs beside many clients: fills a store with
//! `OBJECTS` small indexed objects (100 bytes, 8 bytes of metadata; the
//! store holds exactly that many), lets each of `CLIENTS` other clients
//! read `READS` of them once (spread over the whole index: a few reads
//! touch a few of a client's 256 groups of entries, a few hundred touch
//! nearly all), then puts 2,000 more. The first of those needs room: its
//! eviction pass frees a fifth of the store, asking every client about
//! each candidate. Prints how long that put took, the slowest of the
//! rest, and the slowest round trip another client saw meanwhile. The
//! service runs in a child process (this program, re-run with
//! `SHMWIRE_EVICT_SERVICE` set), as a node runs it.
//!
//! ```text
//! ulimit -n 8192
//! cargo run --release -p shmwire-bench --example store_eviction_pass -- 1000 30000 4
//! ```
//!
//! (Defaults: 1,000 clients, 30,000 objects, 4 reads a client. Each client
//! takes ≈ 8 descriptors here: the program stops connecting at the first
//! refusal and says how many it has.) `docs/PERFORMANCE.md` ("Early
//! morning: eviction passes beside many clients") records the runs.

use std::error::Error;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::shm::Session;
use shmwire::store::{ClientOptions, StoreClient, StoreConfig, StoreService, DEFAULT_STORE_NAME};

/// Set (to the session root) in the service child.
const CHILD: &str = "SHMWIRE_EVICT_SERVICE";
const SESSION: &str = "evict";
/// Arena bytes an object takes (100 bytes rounded up to 64-byte units).
const FOOTPRINT: u64 = 128;
const MORE: u32 = 2_000;

fn oid(tag: u8, n: u32) -> ObjectId {
    let mut b = [0x33u8; 28];
    b[0] = tag;
    b[1..5].copy_from_slice(&n.to_le_bytes());
    ObjectId::from_array(b)
}

fn arg(i: usize, default: u32) -> Result<u32, Box<dyn Error>> {
    Ok(std::env::args().nth(i).map_or(Ok(default), |s| s.parse())?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let objects = arg(2, 30_000)?;
    if let Some(root) = std::env::var_os(CHILD) {
        // The service, until the parent closes our stdin (or dies).
        let session = Session::attach_in(Path::new(&root), SESSION)?;
        let entries = (objects * 2).next_power_of_two().min(1 << 22);
        let config = StoreConfig::new(u64::from(objects) * FOOTPRINT).index_entries(entries);
        let _store = StoreService::start(&session, config)?;
        println!("ready");
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)?;
        return Ok(());
    }
    let (clients, reads) = (arg(1, 1000)?, arg(3, 4)?);
    // A private session root of our own (mode 0700), removed at the end.
    let root = std::env::temp_dir().join(format!("shmwire-evict-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let result = run(&root, clients, objects, reads);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run(root: &Path, clients: u32, objects: u32, reads: u32) -> Result<(), Box<dyn Error>> {
    let _session = Session::open_in(root, SESSION)?;
    let mut service = Command::new(std::env::current_exe()?)
        .args(["0", &objects.to_string()])
        .env(CHILD, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    let out = service.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(out).read_line(&mut line)?;
    let result = measure(root, clients, objects, reads);
    drop(service.stdin.take());
    let _ = service.kill();
    let _ = service.wait();
    result
}

fn measure(root: &Path, clients: u32, objects: u32, reads: u32) -> Result<(), Box<dyn Error>> {
    let session = Session::attach_in(root, SESSION)?;
    let filler = StoreClient::connect(&session, DEFAULT_STORE_NAME)?;
    let probe = StoreClient::connect(&session, DEFAULT_STORE_NAME)?;
    let mut options = ClientOptions::default();
    options.shm.ring_capacity = 64 << 10;
    let mut crowd = Vec::new();
    for i in 0..clients {
        match StoreClient::connect_with(&session, DEFAULT_STORE_NAME, options.clone()) {
            Ok(c) => crowd.push(c),
            Err(e) => {
                println!("stopped connecting at {i} clients: {e}");
                break;
            }
        }
    }
    let data = [9u8; 100];
    let t = Instant::now();
    for n in 0..objects {
        filler.put(oid(1, n), &data, b"8 bytes!")?;
    }
    println!("filled {objects} objects in {:?}", t.elapsed());
    let stride = (objects / reads.max(1)).max(1);
    for (i, c) in (0u32..).zip(&crowd) {
        for k in 0..reads {
            drop(c.get(&[oid(1, (k * stride + i * 7) % objects)], Duration::ZERO)?);
        }
    }
    println!("{} clients read {reads} objects each", crowd.len());
    let stop = AtomicBool::new(false);
    let (first, slowest, worst_trip) = std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = probe.contains(oid(9, 0));
                worst = worst.max(t.elapsed());
                std::thread::sleep(Duration::from_micros(200));
            }
            worst
        });
        std::thread::sleep(Duration::from_millis(20));
        let mut times = Vec::new();
        for n in 0..MORE {
            let t = Instant::now();
            let r = filler.put(oid(2, n), &data, b"8 bytes!");
            times.push(t.elapsed());
            if let Err(e) = r {
                println!("put {n} failed: {e}");
            }
        }
        stop.store(true, Ordering::Relaxed);
        let worst = prober.join().unwrap_or_default();
        (times[0], times[1..].iter().max().copied(), worst)
    });
    println!("first put needing room: {first:?}");
    println!(
        "slowest of the next {}: {:?}",
        MORE - 1,
        slowest.unwrap_or_default()
    );
    println!("another client's slowest round trip meanwhile: {worst_trip:?}");
    Ok(())
}
