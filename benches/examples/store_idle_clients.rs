//! What idle clients cost the others: one store client's put + get +
//! delete rate of an 8-byte object, first alone, then beside `N` other
//! clients of the same store that connected and do nothing, for two kinds
//! of object: with 100 bytes of metadata (too much for the shared index:
//! every step is a round trip to the service) and with 8 (indexed: the
//! `get` is the index's, no round trip, and the delete checks every
//! client's reference slot for the entry). The store service runs in a
//! child process (this program, re-run with `SHMWIRE_IDLE_SERVICE` set),
//! as a node runs it.
//!
//! ```text
//! cargo run --release -p shmwire-bench --example store_idle_clients -- 1000 3
//! ```
//!
//! (`N` idle clients, default 1,000; seconds per measurement, default 3.)
//! Each idle client has two 256 KiB rings and a few descriptors on both
//! sides (≈ 8 per client in this process): raise `ulimit -n` for large `N`;
//! the program stops connecting at the first refusal and says how many it
//! has. Before the mux left idle connections alone (2026-12-05), 1,000 of
//! them took the first rate from ≈ 277,000 to ≈ 23,500 a second; the
//! second still falls with the number of clients (the slot check is
//! O(clients), `docs/reliability.md`); `docs/PERFORMANCE.md` ("Night: idle
//! connections") records the runs.

use std::error::Error;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::shm::Session;
use shmwire::store::{ClientOptions, StoreClient, StoreConfig, StoreService, DEFAULT_STORE_NAME};

/// Set (to the session root) in the service child.
const CHILD: &str = "SHMWIRE_IDLE_SERVICE";
const SESSION: &str = "idle";

fn main() -> Result<(), Box<dyn Error>> {
    if let Some(root) = std::env::var_os(CHILD) {
        // The service, until the parent closes our stdin (or dies).
        let session = Session::attach_in(Path::new(&root), SESSION)?;
        let _store = StoreService::start(&session, StoreConfig::new(64 << 20))?;
        println!("ready");
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)?;
        return Ok(());
    }
    let idle: usize = arg(1, 1000)?;
    let secs: u64 = arg(2, 3)?;
    // A private session root of our own (mode 0700), removed at the end.
    let root = std::env::temp_dir().join(format!("shmwire-idle-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let result = run(&root, idle, Duration::from_secs(secs));
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn arg<T: std::str::FromStr>(i: usize, default: T) -> Result<T, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    Ok(match std::env::args().nth(i) {
        Some(s) => s.parse()?,
        None => default,
    })
}

/// The service child, killed and reaped when dropped.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(root: &Path, idle: usize, span: Duration) -> Result<(), Box<dyn Error>> {
    let session = Session::open_in(root, SESSION)?;
    let mut service = Service(
        Command::new(std::env::current_exe()?)
            .env(CHILD, root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let mut line = String::new();
    let out = service.0.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(out).read_line(&mut line)?;
    if line.trim() != "ready" {
        return Err(format!("the service child did not start (said {line:?})").into());
    }
    // The measuring client first: the idle ones may take every descriptor.
    let c = StoreClient::connect(&session, DEFAULT_STORE_NAME)?;
    let alone = [rate(&c, span, 100)?, rate(&c, span, 8)?];
    for (m, (r, worst)) in [100, 8].iter().zip(alone) {
        println!(
            "alone,             {m:>3} B metadata: {r:>9.0} put+get+delete/s (slowest {worst:?})"
        );
    }
    let mut opts = ClientOptions::default();
    opts.shm.ring_capacity = 256 << 10;
    let mut clients = Vec::with_capacity(idle);
    for i in 0..idle {
        match StoreClient::connect_with(&session, DEFAULT_STORE_NAME, opts.clone()) {
            Ok(c) => clients.push(c),
            Err(e) => {
                let why = shmwire::error_chain(&e);
                eprintln!("stopped at {i} idle clients: {why} (raise `ulimit -n`?)");
                break;
            }
        }
    }
    // Long enough for the service's mux to find them quiet.
    std::thread::sleep(Duration::from_millis(300));
    for (m, (a, _)) in [100, 8].iter().zip(alone) {
        let (r, worst) = rate(&c, span, *m)?;
        println!(
            "beside {:>5} idle, {m:>3} B metadata: {r:>9.0} put+get+delete/s (slowest {worst:?}), {:.2}x alone",
            clients.len(),
            r / a
        );
    }
    Ok(())
}

/// One client's put + get + delete rate over `span` with `meta` bytes of
/// metadata, and the slowest one.
fn rate(c: &StoreClient, span: Duration, meta: usize) -> Result<(f64, Duration), Box<dyn Error>> {
    let meta = vec![5u8; meta];
    let (start, mut n, mut worst) = (Instant::now(), 0u32, Duration::ZERO);
    while start.elapsed() < span {
        let t = Instant::now();
        let mut b = [0x1d; 28];
        b[..4].copy_from_slice(&n.to_le_bytes());
        let id = ObjectId::from_array(b);
        c.put(id, b"8 bytes!", &meta)?;
        let got = c.get(&[id], Duration::ZERO)?;
        if got[0].as_deref() != Some(b"8 bytes!".as_slice()) {
            return Err("the object read back is not the one put".into());
        }
        drop(got);
        c.delete(&[id])?;
        worst = worst.max(t.elapsed());
        n += 1;
    }
    Ok((f64::from(n) / start.elapsed().as_secs_f64(), worst))
}
