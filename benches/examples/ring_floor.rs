//! How far the ring's spin round trip is from the floor its frame layout
//! allows, on the machine at hand: two threads pinned to CPUs 0 and 1, in
//! rounds, each case next to a fresh atomic ping-pong (the limit):
//!
//! - `limit`: one word each way (as `limit/atomic-pingpong`);
//! - `raw-N`: the least a "frame announces itself" protocol can do with an
//!   N-byte payload: the writer copies (`memcpy`) the payload behind a 16-byte slot and
//!   stores the slot's first word (a sequence number) last with `Release`;
//!   the reader polls that word, copies the payload out and answers the same
//!   way; frames advance through a 64 KiB buffer per direction as the ring's
//!   do (16 + N bytes apart), so they use the same cache lines per frame
//!   (48 B: one line; 64 B: two; 256 B: five);
//! - `ring-N`: the same exchange through two shmwire rings (as
//!   `ring/spin/roundtrip`, spin waits, one frame in flight).
//!
//! It prints the mean ns per round trip of each case (no clock read inside
//! the loop) and its ratio to the mean of the two limits measured around it,
//! then the median ratio of every case over the rounds. `ring-N ÷ raw-N` is
//! what the ring's own code and bookkeeping cost beyond the cache-line
//! transfers its layout needs. Run on an idle machine:
//!
//! ```text
//! cargo run --release -p shmwire-bench --example ring_floor [ROUNDS]
//! ```
//!
//! `ring_floor --loopback N [PAYLOAD]` instead sends N frames through one
//! ring in one thread (nothing waits), for counting the ring's instructions
//! per frame with callgrind (difference of two N).
//!
//! `docs/PERFORMANCE.md` (issue 15 on an AMD EPYC) records the figures.

use std::error::Error;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmwire::ring::{create_ring_segment, MappedStorage, Ring};
use shmwire::shm::Session;
use shmwire::wake::{WaitStrategy, Waiter};
use shmwire_bench::harness::pin_current_thread;

/// Round trips per case and round.
const N: u64 = 100_000;
/// Bytes of each direction's buffer in the raw cases (the rings' capacity).
const CAP: usize = 64 * 1024;
/// Frame header bytes (the ring's: commit word, len, kind).
const HDR: usize = 16;
/// Deadline of the blocking ring calls (a hang guard only).
const DEADLINE: Duration = Duration::from_secs(60);

type Res<T> = Result<T, Box<dyn Error>>;

/// One word on its own 128-byte line.
#[repr(C, align(128))]
struct Line(AtomicU64);

/// The two words of the limit: ping (parent → child), pong (back).
fn limit() -> Res<f64> {
    let w = Arc::new([Line(AtomicU64::new(0)), Line(AtomicU64::new(0))]);
    let w2 = Arc::clone(&w);
    let t = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(1).map_err(|e| e.to_string())?;
        let mut last = 0;
        loop {
            // Pairs with the Release store of ping below.
            let v = w2[0].0.load(Ordering::Acquire);
            if v == last {
                std::hint::spin_loop();
                continue;
            }
            if v == u64::MAX {
                return Ok(());
            }
            // Pairs with the Acquire load of pong below.
            w2[1].0.store(v, Ordering::Release);
            last = v;
        }
    });
    let start = Instant::now();
    for s in 1..=N {
        // Pairs with the child's Acquire load of ping.
        w[0].0.store(s, Ordering::Release);
        // Pairs with the child's Release store of pong.
        while w[1].0.load(Ordering::Acquire) != s {
            std::hint::spin_loop();
        }
    }
    let e = start.elapsed();
    w[0].0.store(u64::MAX, Ordering::Release);
    t.join().map_err(|_| "limit thread panicked")??;
    Ok(e.as_nanos() as f64 / N as f64)
}

/// One direction's buffer of the raw cases: 64-byte aligned like the
/// rings' data regions, with room for a frame that starts near the end.
struct RawBuf {
    words: Box<[AtomicU64]>,
}

impl RawBuf {
    fn new() -> Self {
        // 8-byte words; over-allocate one line so a 64-byte-aligned base
        // fits.
        let words = (0..(CAP + 1024) / 8).map(|_| AtomicU64::new(0)).collect();
        Self { words }
    }

    /// Index of the first word of the 64-byte-aligned region.
    fn base(&self) -> usize {
        let addr = self.words.as_ptr() as usize;
        ((addr + 63) & !63) - addr
    }

    /// The sequence word of the frame at byte offset `off` (a multiple of
    /// 16). Where a frame of one lap has its sequence word, a frame of
    /// another lap may have payload: plain and atomic accesses to one word
    /// are never concurrent (see `write`).
    fn seq(&self, off: usize) -> &AtomicU64 {
        &self.words[self.base() / 8 + off / 8]
    }

    /// Address of byte `off` of the 64-byte-aligned region.
    fn at(&self, off: usize) -> *mut u8 {
        // `AtomicU64` is an `UnsafeCell`: writing through this pointer is
        // allowed (`write` and `read` below say when).
        self.words[self.base() / 8..]
            .as_ptr()
            .cast::<u8>()
            .cast_mut()
            .wrapping_add(off)
    }

    /// Copies `src` into the payload of the frame at `off` (plain stores,
    /// as the ring's grants: the sequence word's Release store publishes
    /// them).
    fn write(&self, off: usize, src: &[u8]) {
        assert!(off + HDR + src.len() <= CAP);
        // SAFETY: in bounds (checked above; the buffer has CAP + 1024 bytes
        // past its unaligned start, the region starts at most 63 bytes in).
        // No other access to these bytes is concurrent: the reader reads
        // them only after the Acquire load that sees this frame's sequence
        // word, and the writer comes back to them only after the reply to a
        // later frame, which the reader sends after its read (both loops
        // have one frame in flight).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.at(off + HDR), src.len()) }
    }

    /// Copies the payload of the frame at `off` into `dst`.
    fn read(&self, off: usize, dst: &mut [u8]) {
        assert!(off + HDR + dst.len() <= CAP);
        // SAFETY: in bounds (as in `write`); ordered after the writer's
        // copy by the Acquire load of the frame's sequence word that the
        // caller made, and before its next write (see `write`).
        unsafe { std::ptr::copy_nonoverlapping(self.at(off + HDR), dst.as_mut_ptr(), dst.len()) }
    }
}

/// The raw frame ping-pong with a `bytes`-byte payload (at least 8).
fn raw(bytes: usize) -> Res<f64> {
    let stride = HDR + bytes.next_multiple_of(16);
    let a = Arc::new(RawBuf::new());
    let b = Arc::new(RawBuf::new());
    let (a2, b2) = (Arc::clone(&a), Arc::clone(&b));
    let t = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(1).map_err(|e| e.to_string())?;
        let mut tmp = vec![0u8; bytes];
        let mut pos = 0usize;
        for s in 1..=N {
            let off = pos % (CAP - stride);
            // Pairs with the parent's Release store of the sequence word.
            // Whatever an earlier lap left in that word (a sequence number,
            // or payload: a sequence number then zeros) is below `s`.
            while a2.seq(off).load(Ordering::Acquire) != s {
                std::hint::spin_loop();
            }
            a2.read(off, &mut tmp);
            b2.write(off, &tmp);
            // Pairs with the parent's Acquire load: the payload is visible.
            b2.seq(off).store(s, Ordering::Release);
            pos += stride;
        }
        Ok(())
    });
    let mut buf = vec![0u8; bytes];
    let mut pos = 0usize;
    let start = Instant::now();
    for s in 1..=N {
        let off = pos % (CAP - stride);
        buf[..8].copy_from_slice(&s.to_le_bytes());
        a.write(off, &buf);
        // Pairs with the child's Acquire load: the payload is visible.
        a.seq(off).store(s, Ordering::Release);
        // Pairs with the child's Release store of its sequence word.
        while b.seq(off).load(Ordering::Acquire) != s {
            std::hint::spin_loop();
        }
        b.read(off, &mut buf);
        if buf[..8] != s.to_le_bytes() {
            return Err("raw echo returned the wrong frame".into());
        }
        pos += stride;
    }
    let e = start.elapsed();
    t.join().map_err(|_| "raw thread panicked")??;
    Ok(e.as_nanos() as f64 / N as f64)
}

/// The ring round trip with a `payload`-byte frame each way.
fn ring(session: &Session, tag: &str, payload: usize) -> Res<f64> {
    let a = create_ring_segment(session, &format!("{tag}-a"), CAP)?;
    let b = create_ring_segment(session, &format!("{tag}-b"), CAP)?;
    let mut tx = Ring::attach_producer(MappedStorage::from_segment(Arc::clone(&a))?)?;
    let mut rx = Ring::attach_consumer(MappedStorage::from_segment(Arc::clone(&b))?)?;
    let mut crx = Ring::attach_consumer(MappedStorage::from_segment(a)?)?;
    let mut ctx = Ring::attach_producer(MappedStorage::from_segment(b)?)?;
    let t = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(1).map_err(|e| e.to_string())?;
        let w = Waiter::new(WaitStrategy::Spin);
        loop {
            // Closed (the parent dropped its producer) ends the echo.
            let Ok(frame) = crx.peek_blocking(&w, DEADLINE) else {
                return Ok(());
            };
            let mut g = ctx.reserve(frame.len()).map_err(|e| e.to_string())?;
            g.copy_from_slice(&frame);
            g.commit_all();
            frame.release();
        }
    });
    let w = Waiter::new(WaitStrategy::Spin);
    let mut buf = vec![0u8; payload];
    let start = Instant::now();
    for s in 1..=N {
        buf[..8].copy_from_slice(&s.to_le_bytes());
        let mut g = tx.reserve(payload)?;
        g.copy_from_slice(&buf);
        g.commit_all();
        let f = rx.peek_blocking(&w, DEADLINE)?;
        buf.copy_from_slice(&f);
        f.release();
        if buf[..8] != s.to_le_bytes() {
            return Err("ring echo returned the wrong frame".into());
        }
    }
    let e = start.elapsed();
    drop(tx);
    t.join().map_err(|_| "ring thread panicked")??;
    Ok(e.as_nanos() as f64 / N as f64)
}

/// `--loopback N`: N frames of `payload` bytes through one ring in one
/// thread (reserve, copy in, commit, peek, copy out, release): the ring's
/// own path with every frame already there, for counting instructions
/// (`valgrind --tool=callgrind`, difference of two N).
fn loopback(n: u64, payload: usize) -> Res<()> {
    let (mut tx, mut rx) = Ring::heap(CAP)?;
    let mut buf = vec![0u8; payload];
    for s in 1..=n {
        buf[..8].copy_from_slice(&s.to_le_bytes());
        let mut g = tx.reserve(payload)?;
        g.copy_from_slice(&buf);
        g.commit_all();
        let f = rx.peek()?.ok_or("loopback frame missing")?;
        buf.copy_from_slice(&f);
        f.release();
        if buf[..8] != s.to_le_bytes() {
            return Err("loopback returned the wrong frame".into());
        }
    }
    Ok(())
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--loopback") {
        let n: u64 = args.next().ok_or("--loopback N [PAYLOAD]")?.parse()?;
        let payload: usize = args.next().map_or(Ok(256), |s| s.parse())?;
        return loopback(n, payload);
    }
    let rounds: usize = match first {
        Some(s) => s.parse()?,
        None => 5,
    };
    // A private session root of our own (mode 0700), removed at the end.
    let root = std::env::temp_dir().join(format!("shmwire-floor-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
    let result = run(&root, rounds);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run(root: &std::path::Path, rounds: usize) -> Res<()> {
    let session = Session::open_in(root, "floor")?;
    pin_current_thread(0).map_err(|e| e.to_string())?;
    let names = ["raw-48", "raw-64", "raw-256", "ring-64", "ring-256"];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut before = limit()?;
    for r in 0..rounds {
        let mut line = format!("round {r}: limit {before:.0}");
        for (i, name) in names.iter().enumerate() {
            let ns = match *name {
                "raw-48" => raw(48)?,
                "raw-64" => raw(64)?,
                "raw-256" => raw(256)?,
                "ring-64" => ring(&session, &format!("r{r}-64"), 64)?,
                _ => ring(&session, &format!("r{r}-256"), 256)?,
            };
            let after = limit()?;
            let ratio = ns / ((before + after) / 2.0);
            ratios[i].push(ratio);
            line.push_str(&format!("  {name} {ns:.0} ({ratio:.2}x)  limit {after:.0}"));
            before = after;
        }
        println!("{line}");
    }
    for (name, mut v) in names.iter().zip(ratios) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median ratio to the adjacent limit {:.2}",
            v[v.len() / 2]
        );
    }
    Ok(())
}
