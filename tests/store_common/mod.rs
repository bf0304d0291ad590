//! Helpers shared by the `store_*` integration tests: a private temporary
//! session root per test (removed at the end), object ids, deterministic
//! contents and checksums, and child processes that re-run the test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::shm::Session;
use shmwire::store::{StoreClient, StoreConfig, StoreError, StoreService, DEFAULT_STORE_NAME};

/// Every wait in these tests is bounded by this (a hang guard, no timing
/// assertion).
pub const GUARD: Duration = Duration::from_secs(60);

/// A test's own session under its own temporary root (in `/dev/shm` when
/// there is one), removed when dropped.
pub struct Env {
    pub session: Session,
    pub root: tempfile::TempDir,
}

impl Env {
    pub fn new(test: &str) -> Env {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = tempfile::Builder::new()
            .prefix("shmwire-store-test-")
            .tempdir_in(base)
            .unwrap();
        // Session roots must be private (0700).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let session = Session::open_in(root.path(), test).unwrap();
        Env { session, root }
    }

    /// Opens the same session from a child (given the root path and name).
    pub fn attach(root: &Path, test: &str) -> Session {
        Session::open_in(root, test).unwrap()
    }

    /// Starts a store of `capacity` bytes in this session.
    pub fn store(&self, capacity: u64) -> StoreService {
        StoreService::start(&self.session, StoreConfig::new(capacity)).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.session.remove_all();
    }
}

/// Object id `n` of test-run `tag`.
pub fn oid(tag: u8, n: u32) -> ObjectId {
    let mut b = [tag; 28];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[4..8].copy_from_slice(&std::process::id().to_le_bytes());
    ObjectId::from_array(b)
}

/// Object id `n` with no pid in it (the same in parent and children).
pub fn shared_oid(tag: u8, n: u32) -> ObjectId {
    let mut b = [tag; 28];
    b[..4].copy_from_slice(&n.to_le_bytes());
    ObjectId::from_array(b)
}

/// `n` object ids that all fold to one `u64` under an unkeyed
/// word-by-word fold (FxHash's step: `h = (h.rotl(5) ^ word) * K`, from
/// `h = len`) — the pre-hash shmwire's ids once fed their maps' hasher.
/// Such a fold can be inverted word by word, so a hostile peer can make
/// any number of ids that collide in any map hashing through it, whatever
/// seed the map adds afterwards. Distinct in their first word.
pub fn fold_colliding_ids(n: u32) -> Vec<ObjectId> {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    // K is odd: its inverse modulo 2^64 by Newton's iteration.
    let mut k_inv = K;
    for _ in 0..6 {
        k_inv = k_inv.wrapping_mul(2u64.wrapping_sub(K.wrapping_mul(k_inv)));
    }
    assert_eq!(K.wrapping_mul(k_inv), 1);
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    // Every id's state after its third word is `target`.
    let target = 0x0123_4567_89ab_cdefu64;
    let w2 = 0x5a5a_5a5a_5a5a_5a5au64;
    let tail = [0x77u8; 4];
    (0..n)
        .map(|i| {
            let w1 = u64::from(i) | 0xc0de_0000_0000_0000;
            let h2 = step(step(28, w1), w2);
            let w3 = target.wrapping_mul(k_inv) ^ h2.rotate_left(5);
            debug_assert_eq!(step(h2, w3), target);
            let mut b = [0u8; 28];
            b[..8].copy_from_slice(&w1.to_le_bytes());
            b[8..16].copy_from_slice(&w2.to_le_bytes());
            b[16..24].copy_from_slice(&w3.to_le_bytes());
            b[24..].copy_from_slice(&tail);
            ObjectId::from_array(b)
        })
        .collect()
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Deterministic contents of `len` bytes for `seed`.
pub fn contents(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = mix(seed);
    while out.len() < len {
        x = mix(x);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A checksum (FNV-1a, 64 bit).
pub fn checksum(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Spawns this test binary again to run test `test` as a child with
/// `role` (passed in `SHMWIRE_STORE_CHILD`) and extra environment.
pub fn spawn_child(test: &str, role: &str, env: &[(&str, String)]) -> Child {
    child_command(
        Command::new(std::env::current_exe().unwrap()),
        test,
        role,
        env,
    )
    .spawn()
    .unwrap()
}

/// [`spawn_child`] with its open-file limit (soft and hard: it cannot
/// raise it) at `nofile`, through `sh -c "ulimit -n …"`.
pub fn spawn_child_with_nofile(
    test: &str,
    role: &str,
    env: &[(&str, String)],
    nofile: u32,
) -> Child {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe().unwrap());
    child_command(sh, test, role, env).spawn().unwrap()
}

/// `cmd` given the arguments and environment of a child running `test`
/// as `role`.
fn child_command(mut cmd: Command, test: &str, role: &str, env: &[(&str, String)]) -> Command {
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMWIRE_STORE_CHILD", role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The child role of this process, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var("SHMWIRE_STORE_CHILD").ok()
}

/// A variable the parent passed to the child.
pub fn child_env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("missing {k}"))
}

/// Waits for a child to exit, at most `GUARD` (killed then); returns
/// whether it succeeded and its stdout.
pub fn wait_child(mut c: Child) -> (bool, String) {
    use std::io::Read;
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            let mut out = String::new();
            if let Some(mut so) = c.stdout.take() {
                let _ = so.read_to_string(&mut out);
            }
            return (status.success(), out);
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child did not finish within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `f` until it returns true or `GUARD` passes (then panics).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + GUARD;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads the child's stdout on a thread; lines arrive on the receiver.
pub fn stdout_lines(c: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = c.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (at most `GUARD`) for a line containing `prefix` (the test
/// harness may have printed on the same line); returns it from `prefix` on.
pub fn expect_line(rx: &std::sync::mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + GUARD;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(prefix) => return l[l.find(prefix).unwrap()..].to_owned(),
            Ok(_) => continue,
            Err(e) => panic!("no {prefix:?} line from the child: {e}"),
        }
    }
}

/// Waits for a child whose stdout is already taken (at most `GUARD`).
pub fn wait_status(c: &mut Child) -> bool {
    let deadline = Instant::now() + GUARD;
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s.success();
        }
        if Instant::now() >= deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("child did not finish within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills a child with SIGKILL and reaps it.
pub fn kill9(c: &mut Child) {
    c.kill().unwrap();
    c.wait().unwrap();
}

/// A store memfd opened the way a hostile process of the same user can:
/// through `/proc/<pid>/fd/<n>` of a process holding it (the store's
/// segments have no name in the session), mapped read-write. It can write
/// every byte; the seals keep it from resizing the file.
pub struct MemfdMap {
    pub file: std::fs::File,
    pub map: memmap2::MmapMut,
}

impl MemfdMap {
    pub fn payload_ptr(&self) -> *mut u8 {
        self.map.as_ptr() as *mut u8
    }
    pub fn payload_len(&self) -> usize {
        self.map.len()
    }
}

#[path = "../slot_scribble/mod.rs"]
mod slot_scribble;
pub use slot_scribble::memfd_links;

/// Opens (read-write) and maps the first memfd of `pid` whose label
/// starts with `label`.
pub fn open_memfd(pid: u32, label: &str) -> MemfdMap {
    let (path, _) = memfd_links(pid, label)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no memfd {label}* in /proc/{pid}/fd"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // SAFETY: a shared mapping of a memfd sealed against resizing (so it
    // cannot fault); the test writes through raw pointers only.
    let map = unsafe { memmap2::MmapMut::map_mut(&file) }.unwrap();
    MemfdMap { file, map }
}

/// Environment variables that pass a test's root and session to its
/// children.
pub const ROOT: &str = "SHMWIRE_STORE_ROOT";
/// See [`ROOT`].
pub const SESSION: &str = "SHMWIRE_STORE_SESSION";

/// The session a child process was given through [`ROOT`] and [`SESSION`].
pub fn child_session() -> Session {
    Env::attach(Path::new(&child_env(ROOT)), &child_env(SESSION))
}

/// A client of the session's default store.
pub fn connect(s: &Session) -> StoreClient {
    StoreClient::connect(s, DEFAULT_STORE_NAME).unwrap()
}

/// Truncates every regular file under `dir` (recursively) to 0 bytes, and
/// tries to truncate every memfd of `pids` (through `/proc/<pid>/fd`);
/// returns (files truncated, memfds refused, memfds truncated).
pub fn truncate_everything(dir: &Path, pids: &[u32]) -> (usize, usize, usize) {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(e.path()) {
                    if f.set_len(0).is_ok() {
                        files += 1;
                    }
                }
            }
        }
    }
    let (mut refused, mut truncated) = (0, 0);
    for pid in pids {
        for (path, _) in memfd_links(*pid, "") {
            let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            match f.set_len(0) {
                Ok(()) => truncated += 1,
                Err(e) if e.raw_os_error() == Some(1) => refused += 1, // EPERM: sealed
                Err(e) => panic!("truncating {}: {e}", path.display()),
            }
        }
    }
    (files, refused, truncated)
}

/// A raw store client of the session in `s` (its hello sent and
/// answered), with rings of `ring` bytes.
pub fn raw_store_client(
    s: &shmwire::shm::Session,
    ring: usize,
) -> (shmwire::transport::AnyConnection, shmwire::spec::Encoder) {
    use shmwire::ids::{NodeId, WorkerId};
    use shmwire::spec::{self, Encoder};
    use shmwire::store::{Reply, Request, STORE_PROTOCOL_VERSION};
    use shmwire::transport::{Connector, MessageConnection, ShmOptions, TransportConfig};
    let token = shmwire::node::load_or_create_token(s).unwrap();
    let shm = ShmOptions {
        ring_capacity: ring,
        ..ShmOptions::default()
    };
    let mut raw = Connector::new(
        TransportConfig::new(WorkerId::from_random(), token),
        NodeId::nil(),
    )
    .with_session(
        s,
        std::sync::Arc::new(shmwire::node::Directory::for_session(s).unwrap()),
    )
    .with_shm_options(shm)
    .connect_name(DEFAULT_STORE_NAME)
    .unwrap();
    let mut enc = Encoder::new();
    raw.send_message(
        &mut enc,
        &Request::Hello {
            version: STORE_PROTOCOL_VERSION,
            pid: std::process::id(),
            subscriber: false,
        },
    )
    .unwrap();
    let welcome = raw
        .recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>)
        .unwrap()
        .unwrap();
    assert!(matches!(welcome, Reply::Welcome { .. }), "{welcome:?}");
    (raw, enc)
}

/// Whether the service counts exactly one holder of `id` (a create of it
/// fails `ObjectInUse { holders: 1 }`): after a delete, the one reference
/// a client holds, through the shared index or not.
pub fn held_by_one(c: &StoreClient, id: ObjectId) -> bool {
    matches!(
        c.create(id, 1, b""),
        Err(StoreError::ObjectInUse { holders: 1, .. })
    )
}

/// A remote node for pulls that declares `declared` bytes of data and
/// sends the first `sent` at once, then the rest `chunk` bytes every
/// `tick` (a byte of value 7 each; with `chunk` 0, nothing more, the
/// connection held open), to every connection until `stop`;
/// returns its address and a thread that returns the connections it took.
pub fn pacing_node(
    declared: u64,
    sent: usize,
    pace: (usize, Duration),
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    answering_node(declared, Duration::ZERO, sent, pace, stop)
}

/// [`pacing_node`], answering each request only `answer_after` it came (a
/// remote far away, or busy).
pub fn answering_node(
    declared: u64,
    answer_after: Duration,
    sent: usize,
    (chunk, tick): (usize, Duration),
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    pull_node_serving(stop, move |mut s, _req, stop, end| {
        std::thread::sleep(answer_after);
        let first = sent.min(declared as usize);
        if s.write_all(&pull_header(b"SWPA", declared))
            .and_then(|()| s.write_all(&vec![7u8; first]))
            .is_err()
        {
            return;
        }
        let mut left = declared as usize - first;
        while left > 0 && !stop.load(Ordering::Relaxed) && Instant::now() < end {
            std::thread::sleep(tick);
            let n = chunk.min(left);
            if s.write_all(&vec![7u8; n]).is_err() {
                return;
            }
            left -= n;
        }
    })
}

/// A pull reply header: `magic`, version 1, status ok, no metadata,
/// `declared` bytes of data.
fn pull_header(magic: &[u8; 4], declared: u64) -> [u8; 32] {
    let mut head = [0u8; 32];
    head[0..4].copy_from_slice(magic);
    head[4..8].copy_from_slice(&1u32.to_le_bytes());
    head[16..24].copy_from_slice(&declared.to_le_bytes());
    head
}

/// A fake remote node's object endpoint on 127.0.0.1: each connection on
/// a thread of its own, its 48-byte request read (2 s at most), then
/// `serve(stream, request, stop, end)`; until `stop` or [`GUARD`]. Returns
/// its address and a thread that returns the connections it took.
fn pull_node_serving(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    serve: impl Fn(std::net::TcpStream, [u8; 48], &std::sync::atomic::AtomicBool, Instant)
        + Clone
        + Send
        + 'static,
) -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    use std::io::Read;
    use std::sync::atomic::Ordering;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let (mut servers, mut accepted) = (Vec::new(), 0);
        let end = Instant::now() + GUARD;
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            accepted += 1;
            let (stop, serve) = (stop.clone(), serve.clone());
            servers.push(std::thread::spawn(move || {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = [0u8; 48];
                if s.read_exact(&mut req).is_ok() {
                    serve(s, req, &stop, end);
                }
            }));
        }
        for s in servers {
            s.join().unwrap();
        }
        accepted
    });
    (addr, t)
}

/// A remote node for pulls that uses every turn it is given and sends
/// nothing: the first time an object is asked for it declares `declared`
/// bytes and sends the first `sent` (past the puller's prefix, so that the
/// puller creates the object or queues for room), then holds the
/// connection; asked again (the puller was told of room) it answers a bad
/// header at once, so the pull fails. Until `stop`; returns its address
/// and a thread that returns the connections it took.
pub fn turn_taking_node(
    declared: u64,
    sent: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    let asked: Arc<Mutex<std::collections::HashSet<[u8; 48]>>> = Arc::default();
    pull_node_serving(stop, move |mut s, req, stop, end| {
        if !asked.lock().unwrap().insert(req) {
            let _ = s.write_all(&pull_header(b"XXXX", 0));
            return;
        }
        let first = sent.min(declared as usize);
        if s.write_all(&pull_header(b"SWPA", declared))
            .and_then(|()| s.write_all(&vec![7u8; first]))
            .is_err()
        {
            return;
        }
        // Held until the puller lets go (or the end).
        let mut sink = [0u8; 64];
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            match s.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    })
}
