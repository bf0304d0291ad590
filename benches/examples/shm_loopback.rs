//! The shared-memory transport's code path, counted in instructions: one
//! thread, one connection to itself (listener and connector in the same
//! process), `N` round trips of a 256-byte frame (send, receive, echo,
//! receive). Every receive finds its frame already there, so nothing spins
//! or sleeps and the count is the path's own cost — stable across runs,
//! unlike cross-core timings. Compare two versions by the difference of two
//! runs (`N` = 10,000 and 20,000 round trips, which cancels the setup):
//!
//! ```text
//! cargo build --release -p shmwire-bench --example shm_loopback
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg10 target/release/examples/shm_loopback 10000
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg20 target/release/examples/shm_loopback 20000
//! ```
//!
//! (instructions per round trip = (Ir of the second − Ir of the first) /
//! 10,000; `callgrind_annotate /tmp/cg20` splits them by function). Without
//! valgrind it prints the mean wall-clock time per round trip of this
//! single-thread loop. `docs/PERFORMANCE.md` records the figures.

use std::error::Error;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use shmwire::ids::WorkerId;
use shmwire::shm::Session;
use shmwire::transport::{
    connect_shm, Connection, SessionToken, ShmListener, ShmOptions, TransportConfig,
};

const SERVER: WorkerId = WorkerId::from_array([0x51; 28]);
const CLIENT: WorkerId = WorkerId::from_array([0xC1; 28]);
const PAYLOAD: usize = 256;
const TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> Result<(), Box<dyn Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 100_000,
    };
    // A private session root of our own (mode 0700), removed at the end.
    let root = std::env::temp_dir().join(format!("shmwire-loopback-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let result = run(&root, n);
    let _ = std::fs::remove_dir_all(&root);
    let per_rt = result?;
    println!("{n} round trips of {PAYLOAD} B, one thread: {per_rt:?} per round trip");
    Ok(())
}

fn run(root: &std::path::Path, n: u64) -> Result<Duration, Box<dyn Error>> {
    let session = Session::open_in(root, "loopback")?;
    let token = SessionToken::random()?;
    let opts = ShmOptions {
        ring_capacity: 1 << 16,
        ..ShmOptions::default()
    };
    let mut listener =
        ShmListener::bind(&session, TransportConfig::new(SERVER, token), opts.clone())?;
    let path = listener.socket_path().to_path_buf();
    // The connector's handshake waits for the listener's: run it on a thread.
    let connector = {
        let session = Session::attach_in(root, "loopback")?;
        let cfg = TransportConfig::new(CLIENT, token);
        std::thread::spawn(move || connect_shm(&session, &path, SERVER, &cfg, &opts))
    };
    let mut server = listener.accept_timeout(TIMEOUT)?;
    let mut client = connector
        .join()
        .map_err(|_| "connector thread panicked")??;
    let msg: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    let mut echo = [0u8; PAYLOAD];
    let start = Instant::now();
    for i in 0..n {
        client.send_with::<_, std::convert::Infallible>(PAYLOAD, |b| {
            b.copy_from_slice(&msg);
            Ok(PAYLOAD)
        })?;
        echo.copy_from_slice(&server.recv_timeout(TIMEOUT)?);
        server.send_with::<_, std::convert::Infallible>(PAYLOAD, |b| {
            b.copy_from_slice(&echo);
            Ok(PAYLOAD)
        })?;
        let back = client.recv_timeout(TIMEOUT)?;
        if *back != *msg {
            return Err(format!("round trip {i}: the echo differs").into());
        }
    }
    let elapsed = start.elapsed();
    client.close()?;
    server.close()?;
    Ok(elapsed / n.max(1) as u32)
}
