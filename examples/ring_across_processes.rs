//! A ring in a shared-memory segment between two processes.
//!
//! Run it as written:
//!
//! ```text
//! cargo run --release --example ring_across_processes
//! ```
//!
//! The parent creates a session and a ring segment, starts itself again as
//! the consumer, and streams 100 000 variable-length frames into the ring,
//! each carrying its sequence number and a fill byte. The child attaches the
//! consumer half, checks every frame in place (no copy) and exits with
//! success only if all arrived in order. Both sides wait by spinning, then
//! sleeping on the ring's shared futex word; the consumer notices a dead
//! parent through its liveness check instead of waiting forever.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmwire::ring::{create_ring_segment, MappedStorage, Ring};
use shmwire::shm::{kind, Segment, Session};
use shmwire::wake::{WaitStrategy, Waiter};

const FRAMES: u64 = 100_000;
const CAPACITY: usize = 1 << 16;
const SEGMENT: &str = "example-ring";
const FRAME_KIND: u32 = 1;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn frame_len(i: u64) -> usize {
    8 + (i as usize * 7919) % 600
}

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("consumer") => {
            let arg = |i| {
                std::env::args()
                    .nth(i)
                    .ok_or("usage: consumer <session> <parent pid>")
            };
            consumer(&arg(2)?, arg(3)?.parse()?)
        }
        None => producer(),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("ring_across_processes: unexpected argument {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

/// How to run it (printed for `--help`, and with a bad argument).
const USAGE: &str = "usage: ring_across_processes (no arguments: streams 100,000 frames \
                     to a consumer process it starts)";

fn producer() -> Result<()> {
    let name = format!("example-{}", std::process::id());
    let session = Session::open(&name)?;
    // On every way out, failures included (e.g. a full /dev/shm when the
    // ring is made), the session goes with what this process made in it.
    let result = produce(&session, &name);
    let removed = session.remove_all();
    result?;
    removed?;
    Ok(())
}

/// The producer's run in `session` (named `name`); its ring segment is
/// removed when it returns.
fn produce(session: &Session, name: &str) -> Result<()> {
    let segment = create_ring_segment(session, SEGMENT, CAPACITY)?;
    let mut producer = Ring::attach_producer(MappedStorage::from_segment(Arc::clone(&segment))?)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["consumer", name, &std::process::id().to_string()])
        .spawn()
        .map_err(|e| format!("start the consumer process: {e}"))?;
    let child_pid = child.id();
    let waiter =
        Waiter::new(WaitStrategy::spin_park()).with_liveness(move || process_running(child_pid));
    let start = Instant::now();
    let result = (|| -> Result<()> {
        for i in 0..FRAMES {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut grant =
                producer.reserve_blocking(frame_len(i), FRAME_KIND, &waiter, deadline)?;
            grant[..8].copy_from_slice(&i.to_le_bytes());
            grant[8..].fill(i as u8);
            grant.commit_all();
        }
        Ok(())
    })();
    // Bounded: the consumer gives up within its own 10 s deadline; after a
    // failure here (e.g. it was stopped and the ring stayed full) it is
    // killed at once, and SIGKILL ends even a stopped process.
    if result.is_err() {
        let _ = child.kill();
    }
    let reap_by = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > reap_by {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(producer);
    drop(segment); // the creator unlinks the segment
    result?;
    if !status.success() {
        return Err(format!("consumer failed: {status}").into());
    }
    println!(
        "{FRAMES} frames through a {CAPACITY}-byte ring across two processes in {:?}",
        start.elapsed()
    );
    Ok(())
}

/// Whether `pid` exists and has not exited (a zombie waiting to be reaped
/// counts as dead).
fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// The child: reads every frame and checks it. `parent` is the producer's
/// pid, passed by the producer itself, so a producer that died before the
/// child ran is noticed (a parent read here would be init's). On every way
/// out the child removes its own session files (and those of a dead
/// producer; the session directory too once nobody of it lives).
fn consumer(session_name: &str, parent: i32) -> Result<()> {
    let session = Session::open(session_name)?;
    let result = consume(&session, parent);
    let _ = session.remove_all();
    result
}

fn consume(session: &Session, parent: i32) -> Result<()> {
    let segment = Segment::open_timeout(session, SEGMENT, kind::RING, Duration::from_secs(10))?;
    let mut consumer = Ring::attach_consumer(MappedStorage::from_segment(Arc::new(segment))?)?;
    let waiter = Waiter::new(WaitStrategy::spin_park()).with_liveness(move || {
        rustix::process::getppid()
            .map(rustix::process::Pid::as_raw_nonzero)
            .is_some_and(|p| p.get() == parent)
    });
    for i in 0..FRAMES {
        let frame = consumer.peek_blocking(&waiter, Instant::now() + Duration::from_secs(10))?;
        let seq = u64::from_le_bytes(frame[..8].try_into()?);
        if seq != i || frame.len() != frame_len(i) || frame[8..].iter().any(|&b| b != i as u8) {
            return Err(format!("frame {i} arrived damaged or out of order (seq {seq})").into());
        }
        frame.release();
    }
    Ok(())
}
