//! Soak: many processes exchange tasks over shared memory and TCP with
//! random delays while one worker is SIGKILLed and restarted midway; counts
//! and checksums prove that nothing is lost, duplicated or reordered per
//! caller, and descriptors, segment files and memory stay flat.
//!
//! Processes: two workers (`A`, `B`: a `Mux` with a `Listener` on both
//! transports, replying to every task) and six callers, each with one
//! connection to each worker — callers 0–2 reach `A` over shm and `B` over
//! TCP, callers 3–5 the other way round — plus this test process, which
//! kills `A` once every caller has done a third of its work and starts it
//! again under the same id and name.
//!
//! A task frame: `task u64 | conn_seq u64 | checksum u64 | len u32 |
//! caller u32 | payload (len bytes)`; the reply echoes `task`, `conn_seq`,
//! the checksum the worker computed over the payload it received, and the
//! worker's incarnation. Each worker checks that every connection's
//! `conn_seq` runs 0, 1, 2, … (nothing lost, duplicated or reordered on the
//! way in) and each caller checks the same of the replies, the checksum,
//! and that every task id completes exactly once (tasks in flight when a
//! worker died are resent on the new connection).
//!
//! Counts: `SHMWIRE_SOAK_TASKS` tasks in all (default 200 000, a few
//! seconds). The full soak (≥ 10 million tasks, minutes):
//!
//! ```text
//! SHMWIRE_SOAK_TASKS=10000000 cargo test --release --test soak -- --nocapture
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use shmwire::ids::{NodeId, WorkerId};
use shmwire::node::Directory;
use shmwire::shm::Session;
use shmwire::transport::{
    AnyConnection, Connection, Connector, ListenOptions, Listener, Mux, MuxEvent, RecvError,
    ShmOptions, TransportConfig,
};
use shmwire::wake::WaitStrategy;

const ROLE: &str = "SHMWIRE_SOAK_ROLE";
const ROOT: &str = "SHMWIRE_SOAK_ROOT";
const ARG: &str = "SHMWIRE_SOAK_ARG";
const SESSION: &str = "soak";
const TAG: &str = "@@";
const CALLERS: usize = 6;
const WINDOW: usize = 16;
const HEADER: usize = 32;
/// Bound on any single wait (a reconnection, a reply).
const GUARD: Duration = Duration::from_secs(30);

fn total_tasks() -> u64 {
    std::env::var("SHMWIRE_SOAK_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn wid(n: u8) -> WorkerId {
    WorkerId::from_array([n; 28])
}

fn session() -> Session {
    Session::open_in(std::env::var(ROOT).unwrap(), SESSION).unwrap()
}

fn cfg(n: u8, s: &Session) -> TransportConfig {
    TransportConfig::new(wid(n), shmwire::node::load_or_create_token(s).unwrap())
}

fn shm_opts() -> ShmOptions {
    ShmOptions {
        ring_capacity: 1 << 16,
        ..ShmOptions::with_wait(WaitStrategy::eventfd())
    }
}

/// FNV-1a over `bytes`.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn say(what: impl std::fmt::Display) {
    println!("{TAG}{what}");
    std::io::stdout().flush().unwrap();
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4
}

// ---------------------------------------------------------------------------
// Worker
// ---------------------------------------------------------------------------

/// Worker `name` (`A` = id 1, `B` = id 2), incarnation from the argument.
fn worker() {
    let arg = std::env::var(ARG).unwrap();
    let (name, incarnation) = arg.split_once(':').unwrap();
    let incarnation: u32 = incarnation.parse().unwrap();
    let s = session();
    let n = if name == "A" { 1 } else { 2 };
    let listener = Listener::bind(
        &s,
        cfg(n, &s),
        ListenOptions {
            shm: Some(shm_opts()),
            tcp: Some("127.0.0.1:0".parse().unwrap()),
            name: Some(format!("soak-{name}")),
            stats: None,
        },
        &Directory::for_session(&s).unwrap(),
    )
    .unwrap();
    let mut mux: Mux<AnyConnection> = Mux::new().unwrap();
    mux.set_listener(listener).unwrap();
    say("LISTENING");
    let mut ev = Vec::new();
    let mut next_seq: HashMap<usize, u64> = HashMap::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(incarnation) ^ n as u64);
    let mut buf = Vec::new();
    let mut reply = [0u8; HEADER];
    loop {
        mux.wait(Duration::from_millis(100), &mut ev).unwrap();
        for e in ev.clone() {
            let k = match e {
                MuxEvent::Incoming => {
                    for k in mux.accept_pending().unwrap().into_iter().flatten() {
                        next_seq.insert(k.0, 0);
                    }
                    continue;
                }
                MuxEvent::Ready(k) => k,
            };
            while let Some(c) = mux.get_mut(k) {
                let got = match c.try_recv() {
                    Ok(Some(f)) => {
                        buf.clear();
                        buf.extend_from_slice(&f);
                        Ok(true)
                    }
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                };
                match got {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        assert!(e.is_fatal(), "worker {name}: {e}");
                        mux.remove(k);
                        next_seq.remove(&k.0);
                        break;
                    }
                }
                let (task, seq, sum) = (u64_at(&buf, 0), u64_at(&buf, 8), u64_at(&buf, 16));
                let len = u32_at(&buf, 24) as usize;
                let want = next_seq.entry(k.0).or_insert(0);
                assert_eq!(seq, *want, "worker {name}: task {task} out of order");
                *want += 1;
                assert_eq!(buf.len(), HEADER + len);
                let got_sum = checksum(&buf[HEADER..]);
                assert_eq!(got_sum, sum, "worker {name}: task {task} corrupted");
                reply[..8].copy_from_slice(&task.to_le_bytes());
                reply[8..16].copy_from_slice(&seq.to_le_bytes());
                reply[16..24].copy_from_slice(&got_sum.to_le_bytes());
                reply[24..28].copy_from_slice(&incarnation.to_le_bytes());
                reply[28..32].copy_from_slice(&buf[28..32]);
                // Random delays: now and then the worker is slow.
                if rng.next() % 512 == 0 {
                    std::thread::sleep(Duration::from_micros(rng.next() % 2000));
                }
                let _ = c.try_send(&reply);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Caller
// ---------------------------------------------------------------------------

/// One caller's connection to one worker and its bookkeeping.
struct Link {
    name: &'static str,
    tcp: bool,
    conn: AnyConnection,
    /// Next `conn_seq` to send / expected in the next reply.
    send_seq: u64,
    recv_seq: u64,
    /// Tasks sent on this connection, not yet answered: (task, checksum).
    in_flight: std::collections::VecDeque<(u64, u64)>,
    /// Tasks to (re)send, in order.
    todo: std::collections::VecDeque<u64>,
    done: u64,
    reconnects: u32,
}

fn caller() {
    let me: usize = std::env::var(ARG).unwrap().parse().unwrap();
    let s = session();
    let per_link = total_tasks() / (CALLERS as u64 * 2);
    let connector = Connector::new(cfg(10 + me as u8, &s), NodeId::from_array([1; 28]))
        .with_session(&s, Arc::new(Directory::for_session(&s).unwrap()))
        .with_shm_options(shm_opts());
    let open = |name: &str, tcp: bool| -> AnyConnection {
        let c = connector.clone().force_tcp(tcp);
        let deadline = Instant::now() + GUARD;
        loop {
            match c.connect_name(&format!("soak-{name}")) {
                Ok(conn) => return conn,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot reach {name}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    };
    let a_tcp = me >= CALLERS / 2;
    let mut links: Vec<Link> = [("A", a_tcp), ("B", !a_tcp)]
        .into_iter()
        .map(|(name, tcp)| Link {
            name,
            tcp,
            conn: open(name, tcp),
            send_seq: 0,
            recv_seq: 0,
            in_flight: Default::default(),
            todo: (0..per_link).collect(),
            done: 0,
            reconnects: 0,
        })
        .collect();
    let mut completed: Vec<Vec<bool>> = vec![vec![false; per_link as usize]; 2];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ me as u64);
    let mut payload = vec![0u8; 4096];
    let mut third = None;
    let mut last_progress = Instant::now();
    while links.iter().any(|l| l.done < per_link) {
        assert!(
            last_progress.elapsed() < GUARD,
            "caller {me}: no progress for {GUARD:?}"
        );
        for (li, l) in links.iter_mut().enumerate() {
            // Send while the window has room.
            while l.in_flight.len() < WINDOW {
                let Some(task) = l.todo.pop_front() else {
                    break;
                };
                let len = (rng.next() % 1024) as usize;
                for b in &mut payload[..len] {
                    *b = rng.next() as u8;
                }
                let sum = checksum(&payload[..len]);
                let seq = l.send_seq;
                let sent = l.conn.send_with(HEADER + len, |buf| {
                    buf[..8].copy_from_slice(&task.to_le_bytes());
                    buf[8..16].copy_from_slice(&seq.to_le_bytes());
                    buf[16..24].copy_from_slice(&sum.to_le_bytes());
                    buf[24..28].copy_from_slice(&(len as u32).to_le_bytes());
                    buf[28..32].copy_from_slice(&(me as u32).to_le_bytes());
                    buf[HEADER..].copy_from_slice(&payload[..len]);
                    Ok::<_, std::convert::Infallible>(HEADER + len)
                });
                match sent {
                    Ok(_) => {
                        l.send_seq += 1;
                        l.in_flight.push_back((task, sum));
                    }
                    Err(e) if e.is_fatal() => {
                        l.todo.push_front(task);
                        break;
                    }
                    Err(e) => panic!("caller {me} → {}: {e}", l.name),
                }
            }
            // Random delays: now and then the caller dawdles.
            if rng.next() % 256 == 0 {
                std::thread::sleep(Duration::from_micros(rng.next() % 1000));
            }
            // Take the replies that are there (wait a little for the first).
            let mut first = true;
            loop {
                let got = if first && !l.in_flight.is_empty() {
                    l.conn
                        .recv_timeout(Duration::from_millis(2))
                        .map(|f| Some(f.to_vec()))
                } else {
                    l.conn.try_recv().map(|f| f.map(|f| f.to_vec()))
                };
                first = false;
                match got {
                    Ok(Some(r)) => {
                        let (task, seq, sum) = (u64_at(&r, 0), u64_at(&r, 8), u64_at(&r, 16));
                        assert_eq!(seq, l.recv_seq, "caller {me}: reply out of order");
                        l.recv_seq += 1;
                        let (want_task, want_sum) = l.in_flight.pop_front().unwrap();
                        assert_eq!(task, want_task, "caller {me}: reply for the wrong task");
                        assert_eq!(sum, want_sum, "caller {me}: checksum of task {task}");
                        let slot = &mut completed[li][task as usize];
                        assert!(!*slot, "caller {me}: task {task} completed twice");
                        *slot = true;
                        l.done += 1;
                        last_progress = Instant::now();
                    }
                    Ok(None) | Err(RecvError::TimedOut) => break,
                    Err(RecvError::PeerDied { .. } | RecvError::Closed) => {
                        // The worker died: the tasks in flight did not
                        // complete; resend them, in order, on a new
                        // connection to its successor.
                        let lost: Vec<u64> = l.in_flight.drain(..).map(|(t, _)| t).collect();
                        for t in lost.into_iter().rev() {
                            l.todo.push_front(t);
                        }
                        l.conn = open(l.name, l.tcp);
                        l.send_seq = 0;
                        l.recv_seq = 0;
                        l.reconnects += 1;
                        break;
                    }
                    Err(e) => panic!("caller {me} ← {}: {e}", l.name),
                }
            }
        }
        let done: u64 = links.iter().map(|l| l.done).sum();
        if third.is_none() && done >= per_link * 2 / 3 {
            third = Some((fd_count(), rss_kib()));
            say("THIRD");
        }
    }
    assert!(completed.iter().flatten().all(|d| *d));
    let (fd_mid, rss_mid) = third.unwrap_or((fd_count(), rss_kib()));
    let reconnects: u32 = links.iter().map(|l| l.reconnects).sum();
    say(format!(
        "DONE {me} tasks {} reconnects {reconnects} fds {fd_mid} {} rss_kib {rss_mid} {}",
        per_link * 2,
        fd_count(),
        rss_kib()
    ));
    // Keep the connections until told to go (the parent counts files).
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

struct Kid {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Kid {
    fn spawn(role: &str, root: &std::path::Path, arg: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "soak_tasks_survive_a_killed_worker",
                "--nocapture",
            ])
            .env(ROLE, role)
            .env(ROOT, root)
            .env(ARG, arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(TAG) {
                    let _ = tx.send(line[at + TAG.len()..].to_owned());
                }
            }
        });
        Self { child, lines }
    }

    fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no line from child {}: {e}", self.child.id()))
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn soak_tasks_survive_a_killed_worker() {
    match std::env::var(ROLE).as_deref() {
        Ok("worker") => return worker(),
        Ok("caller") => return caller(),
        _ => {}
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = Session::open_in(&root, SESSION).unwrap();
    let _token = shmwire::node::load_or_create_token(&s).unwrap();
    let started = Instant::now();
    let a = Kid::spawn("worker", &root, "A:0");
    let b = Kid::spawn("worker", &root, "B:0");
    assert_eq!(a.line(GUARD), "LISTENING");
    assert_eq!(b.line(GUARD), "LISTENING");
    let mut callers: Vec<Kid> = (0..CALLERS)
        .map(|i| Kid::spawn("caller", &root, &i.to_string()))
        .collect();
    let deadline = Instant::now() + GUARD * 20;
    // Midway: every caller has done a third; kill A and start it again.
    for c in &callers {
        assert_eq!(c.line(deadline - Instant::now()), "THIRD");
    }
    let (a_fds, b_fds) = (a.fds(), b.fds());
    drop(a);
    let a = Kid::spawn("worker", &root, "A:1");
    assert_eq!(a.line(GUARD), "LISTENING");
    let mut total = 0u64;
    for c in &callers {
        let l = c.line(deadline - Instant::now());
        eprintln!("{l}");
        let v: Vec<&str> = l.split(' ').collect();
        assert_eq!(v[0], "DONE");
        total += v[3].parse::<u64>().unwrap();
        let (fd_mid, fd_end): (usize, usize) = (v[7].parse().unwrap(), v[8].parse().unwrap());
        let (rss_mid, rss_end): (u64, u64) = (v[10].parse().unwrap(), v[11].parse().unwrap());
        assert_eq!(fd_mid, fd_end, "caller descriptors leaked: {l}");
        assert!(rss_end <= rss_mid + 16 * 1024, "caller memory grew: {l}");
        assert!(v[5].parse::<u32>().unwrap() >= 1, "never saw A die: {l}");
    }
    // Every connection open, nothing visible by name; descriptors flat.
    assert!(s.segment_names().unwrap().is_empty());
    assert_eq!(b.fds(), b_fds, "worker B's descriptors");
    assert_eq!(a.fds(), a_fds, "worker A's successor's descriptors");
    for c in &mut callers {
        let _ = writeln!(c.child.stdin.as_mut().unwrap(), "bye");
    }
    for mut c in callers {
        let st = c.child.wait().unwrap();
        assert!(st.success(), "caller failed: {st}");
    }
    drop((a, b));
    let per_link = total_tasks() / (CALLERS as u64 * 2);
    assert_eq!(total, per_link * 2 * CALLERS as u64);
    eprintln!(
        "soak: {total} tasks over shm and TCP, one worker killed and restarted, in {:?}",
        started.elapsed()
    );
    s.cleanup_stale().unwrap();
    let _ = s.remove_all();
}
