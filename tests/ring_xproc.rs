//! Cross-process ring tests: two real processes share a ring in a
//! `shmwire::shm::Segment`.
//!
//! The test binary re-runs itself (`--exact <test> --nocapture`) with
//! `SHMWIRE_RING_CHILD=producer` to play the producer; the parent is the
//! consumer. Frames have pseudo-random sizes (mostly 1–256 bytes, one in 64
//! up to a quarter of the ring) and contents derived from `(seed, index)`,
//! so the consumer verifies every byte, the order (the frame kind is the
//! index) and a running checksum that the child prints at the end.
//!
//! Tests run one at a time (a global lock): two spinning processes already
//! fill the machine's two cores.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmwire::ring::{MappedStorage, Ring, RingError, RingStorage};
use shmwire::shm::{kind, Segment, Session};
use shmwire::wake::{EventFd, WaitStrategy, Waiter};

const ENV_ROLE: &str = "SHMWIRE_RING_CHILD";
const ENV_CFG: &str = "SHMWIRE_RING_CFG";
const CAP: usize = 64 * 1024;
const SEGMENT: &str = "ring";
/// Hang guard only (no timing assertions).
const HANG_GUARD: Duration = Duration::from_secs(120);

static SERIAL: Mutex<()> = Mutex::new(());

/// Everything the child needs, passed as one env var (`k=v;k=v`).
#[derive(Debug, Clone)]
struct Cfg {
    root: PathBuf,
    session: String,
    strategy: String,
    frames: u64,
    seed: u64,
    /// Sleep 100 µs every this many frames on the producer (0 = never).
    producer_pause_every: u64,
    /// Fd number (inherited) of the consumer's eventfd, written by the
    /// producer; and of the producer's eventfd, which it waits on.
    efd_consumer: i32,
    efd_producer: i32,
    /// The child creates the segment (kill test) instead of opening it.
    child_creates: bool,
}

impl Cfg {
    fn encode(&self) -> String {
        format!(
            "root={};session={};strategy={};frames={};seed={};ppause={};efdc={};efdp={};create={}",
            self.root.display(),
            self.session,
            self.strategy,
            self.frames,
            self.seed,
            self.producer_pause_every,
            self.efd_consumer,
            self.efd_producer,
            self.child_creates as u8
        )
    }

    fn decode(s: &str) -> Cfg {
        let get = |k: &str| {
            s.split(';')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("missing {k} in {s}"))
                .to_owned()
        };
        Cfg {
            root: PathBuf::from(get("root")),
            session: get("session"),
            strategy: get("strategy"),
            frames: get("frames").parse().unwrap(),
            seed: get("seed").parse().unwrap(),
            producer_pause_every: get("ppause").parse().unwrap(),
            efd_consumer: get("efdc").parse().unwrap(),
            efd_producer: get("efdp").parse().unwrap(),
            child_creates: get("create") == "1",
        }
    }
}

// ---------------------------------------------------------------- frames --

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn frame_len(seed: u64, i: u64) -> usize {
    let h = mix(seed ^ i.wrapping_mul(0x1000_0000_01b3));
    if h % 64 == 0 {
        1 + (h >> 8) as usize % (CAP / 4)
    } else {
        1 + (h >> 8) as usize % 256
    }
}

/// Fills `buf` with the contents of frame `i`; returns the updated checksum.
fn fill(buf: &mut [u8], seed: u64, i: u64, mut sum: u64) -> u64 {
    let mut x = mix(seed.rotate_left(17) ^ i);
    for chunk in buf.chunks_mut(8) {
        x = mix(x);
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
        sum = sum.rotate_left(5) ^ x;
    }
    sum
}

/// Checks `buf` is frame `i`; returns the updated checksum.
fn verify(buf: &[u8], seed: u64, i: u64, mut sum: u64) -> u64 {
    assert_eq!(buf.len(), frame_len(seed, i), "length of frame {i}");
    let mut x = mix(seed.rotate_left(17) ^ i);
    for (k, chunk) in buf.chunks(8).enumerate() {
        x = mix(x);
        let b = x.to_le_bytes();
        assert_eq!(chunk, &b[..chunk.len()], "frame {i}, bytes at {}", k * 8);
        sum = sum.rotate_left(5) ^ x;
    }
    sum
}

// ------------------------------------------------------------ strategies --

fn waiter(name: &str, own_eventfd: Option<EventFd>) -> Waiter {
    let strategy = match name {
        "spin" => WaitStrategy::Spin,
        "yield" => WaitStrategy::spin_yield(),
        "park" => WaitStrategy::spin_park(),
        // A short spin window so the futex / eventfd paths are exercised a
        // lot (the defaults would mostly spin).
        "park-short" => WaitStrategy::SpinPark {
            spin: Duration::from_micros(2),
        },
        "eventfd" => {
            return Waiter::new(WaitStrategy::EventFd {
                spin: Duration::from_micros(2),
            })
            .with_eventfd(own_eventfd.expect("eventfd"))
        }
        other => panic!("unknown strategy {other}"),
    };
    Waiter::new(strategy)
}

/// Liveness of another process through a pidfd (readable once it exits);
/// does not reap it.
fn pid_alive(pid: u32) -> impl Fn() -> bool + Send + Sync + 'static {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    let fd =
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).expect("pidfd_open");
    move || {
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let zero = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }
}

fn storage_of(seg: impl Into<Arc<Segment>>) -> MappedStorage {
    MappedStorage::from_segment(seg.into()).expect("mapped storage")
}

fn create_ring_segment(session: &Session) -> Arc<Segment> {
    shmwire::ring::create_ring_segment(session, SEGMENT, CAP).expect("create ring segment")
}

// ----------------------------------------------------------------- child --

/// The producer process.
fn run_producer_child(cfg: Cfg) {
    let session = Session::open_in(&cfg.root, &cfg.session).expect("session");
    let seg = if cfg.child_creates {
        create_ring_segment(&session)
    } else {
        Arc::new(
            Segment::open_timeout(&session, SEGMENT, kind::RING, Duration::from_secs(30))
                .expect("open segment"),
        )
    };
    let storage = storage_of(seg);
    let mut p = Ring::attach_producer(storage).expect("attach producer");
    let own_efd = (cfg.efd_producer >= 0).then(|| {
        // SAFETY: the parent cleared FD_CLOEXEC on this fd for us; we take
        // sole ownership of our copy.
        EventFd::from_owned(unsafe { OwnedFd::from_raw_fd(cfg.efd_producer) }).unwrap()
    });
    if cfg.efd_consumer >= 0 {
        // SAFETY: as above.
        let fd = EventFd::from_owned(unsafe { OwnedFd::from_raw_fd(cfg.efd_consumer) }).unwrap();
        p.set_peer_eventfd(fd);
    }
    let parent = rustix::process::getppid().expect("parent").as_raw_pid() as u32;
    let waiter = waiter(&cfg.strategy, own_efd).with_liveness(pid_alive(parent));
    let deadline = Instant::now() + HANG_GUARD;
    let mut sum = 0u64;
    for i in 0..cfg.frames {
        let len = frame_len(cfg.seed, i);
        let mut g = p
            .reserve_blocking(len, i as u32, &waiter, deadline)
            .unwrap_or_else(|e| panic!("producer frame {i}: {e}"));
        sum = fill(&mut g, cfg.seed, i, sum);
        // Batches: three of four frames are committed deferred.
        if i % 4 == 3 || cfg.child_creates {
            g.commit_all();
        } else {
            g.commit_all_deferred();
        }
        if cfg.producer_pause_every > 0 && i % cfg.producer_pause_every == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    drop(p); // publishes the rest and closes
    println!("CHECKSUM {sum:016x}");
}

fn child_role() -> Option<Cfg> {
    match std::env::var(ENV_ROLE).as_deref() {
        Ok("producer") => Some(Cfg::decode(&std::env::var(ENV_CFG).expect("cfg"))),
        _ => None,
    }
}

// ---------------------------------------------------------------- parent --

/// Kills and reaps the child if the parent fails.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_output(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.0.take().expect("child");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read child stdout");
        let status = child.wait().expect("wait child");
        (status, out)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct TestDir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn test_dir() -> TestDir {
    let base = Path::new("/dev/shm");
    let tmp = if base.is_dir() {
        tempfile::Builder::new()
            .prefix("shmwire-ring-test-")
            .tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let root = tmp.path().join("root");
    TestDir { _tmp: tmp, root }
}

fn spawn_producer(test: &str, cfg: &Cfg, inherit: &[BorrowedFd<'_>]) -> ChildGuard {
    let fds: Vec<i32> = inherit.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(ENV_ROLE, "producer")
        .env(ENV_CFG, cfg.encode())
        .stdout(Stdio::piped());
    // SAFETY: the closure only calls fcntl(F_SETFD), which is
    // async-signal-safe, on fds that are open in the forked child.
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                let fd = BorrowedFd::borrow_raw(*fd);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    ChildGuard(Some(cmd.spawn().expect("spawn child")))
}

struct Stream<'a> {
    test: &'a str,
    strategy: &'a str,
    frames: u64,
    /// Parent (consumer) sleeps 100 µs every this many frames (0 = never).
    consumer_pause_every: u64,
    producer_pause_every: u64,
}

/// Streams `frames` frames from a child producer to this process and
/// verifies them.
fn stream(s: Stream<'_>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = test_dir();
    let session_name = format!("t{}-{}", std::process::id(), s.test.replace('_', "-"));
    let session = Session::open_in(&dir.root, &session_name).expect("session");
    let seg = create_ring_segment(&session);
    let storage = storage_of(seg);
    let mut c = Ring::attach_consumer(storage).expect("attach consumer");

    let eventfds = s.strategy == "eventfd";
    let efd_c = eventfds.then(|| EventFd::new().unwrap());
    let efd_p = eventfds.then(|| EventFd::new().unwrap());
    if let Some(fd) = &efd_p {
        c.set_peer_eventfd(fd.clone());
    }
    let seed = mix(std::process::id() as u64 ^ s.frames);
    let cfg = Cfg {
        root: dir.root.clone(),
        session: session_name,
        strategy: s.strategy.to_owned(),
        frames: s.frames,
        seed,
        producer_pause_every: s.producer_pause_every,
        efd_consumer: efd_c.as_ref().map_or(-1, |f| f.as_fd().as_raw_fd()),
        efd_producer: efd_p.as_ref().map_or(-1, |f| f.as_fd().as_raw_fd()),
        child_creates: false,
    };
    let inherit: Vec<BorrowedFd<'_>> = [&efd_c, &efd_p]
        .into_iter()
        .flatten()
        .map(|f| f.as_fd())
        .collect();
    let child = spawn_producer(s.test, &cfg, &inherit);
    let pid = child.0.as_ref().unwrap().id();
    let waiter = waiter(s.strategy, efd_c.clone()).with_liveness(pid_alive(pid));
    let deadline = Instant::now() + HANG_GUARD;
    let mut sum = 0u64;
    for i in 0..s.frames {
        let f = c
            .peek_blocking(&waiter, deadline)
            .unwrap_or_else(|e| panic!("consumer frame {i}: {e}"));
        assert_eq!(f.kind(), i as u32, "frame order");
        assert_eq!(f.as_ptr() as usize % 16, 0, "payload alignment");
        sum = verify(&f, seed, i, sum);
        if i % 8 == 7 {
            f.release();
        } else {
            f.release_deferred();
        }
        if s.consumer_pause_every > 0 && i % s.consumer_pause_every == 0 {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    // The producer closes cleanly after its last frame.
    assert_eq!(
        c.peek_blocking(&waiter, deadline).unwrap_err(),
        RingError::Closed
    );
    let (status, out) = child.wait_output();
    assert!(status.success(), "child failed: {status:?}\n{out}");
    let line = out
        .lines()
        .find_map(|l| l.split("CHECKSUM ").nth(1))
        .map(|rest| rest.get(..16).unwrap_or(rest))
        .unwrap_or_else(|| panic!("no checksum from child:\n{out}"));
    assert_eq!(line, format!("{sum:016x}"), "checksums differ");
    drop(c); // last reference to the segment: the creator unlinks it
    assert!(session.segment_names().unwrap().is_empty());
    session.remove_all().unwrap();
}

/// Frames per run: 1,000,000 for the main spin run always and for every
/// main run in release builds; 200,000 for the other main runs in debug
/// builds (override with `SHMWIRE_RING_FRAMES`).
fn frames(always_full: bool) -> u64 {
    std::env::var("SHMWIRE_RING_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if always_full || !cfg!(debug_assertions) {
            1_000_000
        } else {
            200_000
        })
}

fn main_frames() -> u64 {
    frames(false)
}

/// Frames for the slow-side runs.
fn side_frames() -> u64 {
    (frames(false) / 5).max(10_000)
}

macro_rules! child_or {
    () => {
        if let Some(cfg) = child_role() {
            run_producer_child(cfg);
            return;
        }
    };
}

#[test]
fn xproc_stream_spin() {
    child_or!();
    stream(Stream {
        test: "xproc_stream_spin",
        strategy: "spin",
        frames: frames(true),
        consumer_pause_every: 0,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_stream_spin_yield() {
    child_or!();
    stream(Stream {
        test: "xproc_stream_spin_yield",
        strategy: "yield",
        frames: main_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_stream_spin_park() {
    child_or!();
    stream(Stream {
        test: "xproc_stream_spin_park",
        strategy: "park",
        frames: main_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_stream_eventfd() {
    child_or!();
    stream(Stream {
        test: "xproc_stream_eventfd",
        strategy: "eventfd",
        frames: main_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_slow_consumer_park() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_consumer_park",
        strategy: "park-short",
        frames: side_frames(),
        consumer_pause_every: 256,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_slow_producer_park() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_producer_park",
        strategy: "park-short",
        frames: side_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 256,
    });
}

#[test]
fn xproc_slow_consumer_eventfd() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_consumer_eventfd",
        strategy: "eventfd",
        frames: side_frames(),
        consumer_pause_every: 256,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_slow_producer_eventfd() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_producer_eventfd",
        strategy: "eventfd",
        frames: side_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 256,
    });
}

#[test]
fn xproc_slow_consumer_spin() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_consumer_spin",
        strategy: "spin",
        frames: side_frames(),
        consumer_pause_every: 256,
        producer_pause_every: 0,
    });
}

#[test]
fn xproc_slow_producer_yield() {
    child_or!();
    stream(Stream {
        test: "xproc_slow_producer_yield",
        strategy: "yield",
        frames: side_frames(),
        consumer_pause_every: 0,
        producer_pause_every: 256,
    });
}

/// SIGKILL the producer (which also created the segment) mid-stream: the
/// consumer gets every frame published before the kill, then `PeerDied`;
/// session cleanup removes the dead creator's segment.
#[test]
fn xproc_sigkill_producer() {
    child_or!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let test = "xproc_sigkill_producer";
    let dir = test_dir();
    let session_name = format!("t{}-sigkill", std::process::id());
    let session = Session::open_in(&dir.root, &session_name).expect("session");
    let seed = mix(std::process::id() as u64 ^ 0x5157);
    let cfg = Cfg {
        root: dir.root.clone(),
        session: session_name,
        strategy: "park".into(),
        frames: u64::MAX / 2, // until killed
        seed,
        producer_pause_every: 0,
        efd_consumer: -1,
        efd_producer: -1,
        child_creates: true,
    };
    let mut child = spawn_producer(test, &cfg, &[]);
    let pid = child.0.as_ref().unwrap().id();
    let seg = Segment::open_timeout(&session, SEGMENT, kind::RING, Duration::from_secs(30))
        .expect("open the child's segment");
    let storage = storage_of(seg);
    let mut c = Ring::attach_consumer(storage.clone()).expect("attach consumer");
    let waiter = Waiter::new(WaitStrategy::spin_park())
        .with_liveness(pid_alive(pid))
        .with_check_interval(Duration::from_millis(1));
    let deadline = Instant::now() + HANG_GUARD;
    let mut next = 0u64;
    let mut consume = |c: &mut shmwire::ring::Consumer<MappedStorage>| -> Result<(), RingError> {
        let f = c.peek_blocking(&waiter, deadline)?;
        assert_eq!(f.kind(), next as u32, "frame order");
        verify(&f, seed, next, 0);
        f.release();
        next += 1;
        Ok(())
    };
    for _ in 0..20_000 {
        consume(&mut c).expect("frame before the kill");
    }
    // Kill while the producer is running (or blocked on a full ring).
    let mut ch = child.0.take().unwrap();
    ch.kill().expect("SIGKILL");
    let status = ch.wait().expect("reap child");
    assert!(!status.success());
    // Everything published before the kill is delivered, then PeerDied.
    let err = loop {
        if let Err(e) = consume(&mut c) {
            break e;
        }
    };
    assert_eq!(err, RingError::PeerDied);
    let h = storage.header();
    assert_eq!(
        h.head.0.load(std::sync::atomic::Ordering::Acquire),
        h.tail.0.load(std::sync::atomic::Ordering::Acquire),
        "every published frame was consumed"
    );
    assert!(next >= 20_000);
    drop(c);
    drop(storage);
    // The dead creator never unlinked its segment; cleanup finds it by its
    // released flock and removes it.
    assert_eq!(session.segment_names().unwrap(), vec![SEGMENT.to_owned()]);
    let report = session.cleanup_stale().expect("cleanup");
    let _ = report;
    assert!(session.segment_names().unwrap().is_empty());
    session.remove_all().unwrap();
}

/// The wake-up really crosses mappings: the consumer sleeps (zero spin
/// window) with a one-hour check interval and deadline, so only the
/// producer's FUTEX_WAKE / eventfd write can wake it; the producer attaches
/// through a second, independent mapping of the segment (the same futex key
/// another process would use). A lost wake-up trips the 60 s hang guard.
#[test]
fn wake_crosses_mappings() {
    child_or!();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for strat in ["park", "eventfd"] {
        let dir = test_dir();
        let session = Session::open_in(&dir.root, &format!("t{}-wake-{strat}", std::process::id()))
            .expect("session");
        let seg = create_ring_segment(&session);
        let second = Segment::open(&session, SEGMENT, kind::RING).expect("second mapping");
        assert_ne!(seg.payload_ptr(), second.payload_ptr());
        let mut c = Ring::attach_consumer(storage_of(seg)).expect("consumer");
        let mut p = Ring::attach_producer(storage_of(second)).expect("producer");
        let efd = EventFd::new().unwrap();
        p.set_peer_eventfd(efd.clone());
        let w = match strat {
            "park" => Waiter::new(WaitStrategy::SpinPark {
                spin: Duration::ZERO,
            }),
            _ => Waiter::new(WaitStrategy::EventFd {
                spin: Duration::ZERO,
            })
            .with_eventfd(efd),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let consumer = std::thread::spawn(move || {
            let w = w.with_check_interval(Duration::from_secs(3600));
            let far = Instant::now() + Duration::from_secs(3600);
            for i in 0..3u8 {
                let f = c.peek_blocking(&w, far).expect("frame");
                assert_eq!(&*f, &[i; 5]);
                f.release();
                tx.send(i).unwrap();
            }
        });
        for i in 0..3u8 {
            // Give the consumer time to fall asleep (not required for
            // correctness; it makes the sleeping path the likely one).
            std::thread::sleep(Duration::from_millis(20));
            let mut g = p.reserve(5).unwrap();
            g.fill(i);
            g.commit_all();
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(60)),
                Ok(i),
                "consumer not woken ({strat})"
            );
        }
        consumer.join().unwrap();
        drop(p);
        assert!(session.segment_names().unwrap().is_empty());
        session.remove_all().unwrap();
    }
}
