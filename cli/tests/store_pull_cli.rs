//! Remote pull between two `shmwire node` processes (issue 14, item 6):
//! each node runs its own session and store; the test process is a client
//! of both stores, puts objects through node A's store and pulls them into
//! node B's store over B's client, from A's object endpoint. Hostile
//! servers are TCP listeners of the test process. Each test has its own
//! private scratch root, reaps every child it starts and bounds every
//! wait.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::shm::Session;
use shmwire::store::{Notification, StoreClient, StoreError, DEFAULT_STORE_NAME};

#[path = "../../tests/fd_limit/mod.rs"]
mod fd_limit;
mod proc_support;
use proc_support::Kid;

/// Upper bound of any single wait.
const GUARD: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ helpers

/// A running `shmwire node`: its process, session and object endpoint.
struct NodeProc {
    kid: Kid,
    session: Session,
    objects: SocketAddr,
}

impl NodeProc {
    fn sigkill(&mut self) {
        self.kid.0.kill().unwrap();
        self.kid.0.wait().unwrap();
    }

    /// SIGTERM and a bounded wait for a clean exit.
    fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.kid.0.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(st) = self.kid.0.try_wait().unwrap() {
                assert!(st.success(), "node exit after SIGTERM: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn client(&self) -> StoreClient {
        StoreClient::connect(&self.session, DEFAULT_STORE_NAME).expect("connect to the store")
    }
}

/// Starts `shmwire node` for session `name` with a `capacity` store and
/// waits (bounded by the read of its ready line; a node that fails exits)
/// until it serves.
fn start_node(root: &Path, name: &str, capacity: &str) -> NodeProc {
    let (kid, mut out, ready) =
        proc_support::spawn_node(root, &["--session", name, "--store-capacity", capacity]);
    let objects = ready
        .split(", ")
        .find_map(|w| w.strip_prefix("objects "))
        .unwrap_or_else(|| panic!("no object address in {ready:?}"))
        .parse()
        .expect("object address");
    // Keep draining so the node never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    let session = Session::open_in(root, name).unwrap();
    NodeProc {
        kid,
        session,
        objects,
    }
}

/// Deterministic bytes of object `n`, `len` long.
fn pattern(n: u64, len: usize) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// FNV-1a: a content checksum.
fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The pulled copy's id is free again: not visible, and creatable.
fn assert_left_nothing(b: &StoreClient, id: ObjectId) {
    assert!(!b.contains(id).unwrap(), "{id} visible after a failed pull");
    let got = b.get(&[id], Duration::ZERO).unwrap();
    assert!(got[0].is_none());
    b.put(id, b"again", b"")
        .expect("create after a failed pull");
    b.delete(&[id]).unwrap();
}

// ------------------------------------------------------------------ tests

/// Small, empty and multi-chunk objects of node A pulled into node B's
/// store: content and metadata match, a second pull is served locally, the
/// copy behaves like a local object, a missing object is a typed error
/// within the timeout, a later seal on A is waited for, two concurrent
/// pullers of one object both get it, an unreachable node is a typed error.
#[test]
fn objects_pulled_between_two_nodes_become_local_objects() {
    let _w = proc_support::watchdog("objects_pulled_between_two_nodes_become_local_objects");
    let dir = proc_support::scratch("swp", "two");
    let root = dir.path().join("root");
    let node_a = start_node(&root, "pull-a", "64M");
    let node_b = start_node(&root, "pull-b", "64M");
    let a = node_a.client();
    let b = node_b.client();

    let big_len = 5 * (1 << 20) + 3;
    let cases: Vec<(ObjectId, Vec<u8>, &[u8])> = vec![
        (ObjectId::from_random(), pattern(1, 100), b"small"),
        (ObjectId::from_random(), Vec::new(), b"empty"),
        (ObjectId::from_random(), pattern(3, big_len), b"big"),
        (ObjectId::from_random(), pattern(4, 300_000), &[7u8; 2000]),
    ];
    for (id, data, meta) in &cases {
        a.put(*id, data, meta).unwrap();
    }
    for (id, data, meta) in &cases {
        assert!(!b.contains(*id).unwrap());
        let got = b
            .pull(*id, node_a.objects, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("pull {id}: {e}"));
        assert_eq!(got.len(), data.len());
        assert_eq!(checksum(&got), checksum(data), "content of {id}");
        assert_eq!(&got[..], &data[..]);
        assert_eq!(got.metadata(), *meta);
        drop(got);
        assert!(b.contains(*id).unwrap());
    }

    // A second pull is served locally: it succeeds with the remote unreachable.
    let (big, big_data, _) = &cases[2];
    let again = b.pull(*big, dead_addr(), Duration::from_secs(1)).unwrap();
    assert_eq!(checksum(&again), checksum(big_data));
    drop(again);

    // The copy is an ordinary object of B's store: another client of B
    // gets it, a subscriber hears of it, deleting it on A does not touch
    // it, deleting it on B removes it.
    let b2 = node_b.client();
    let mut sub = b2.subscribe().unwrap();
    let mut heard = Vec::new();
    while let Some(n) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
        if let Notification::Sealed { id, data_size, .. } = n {
            heard.push((id, data_size));
        }
    }
    for (id, data, _) in &cases {
        assert!(
            heard.contains(&(*id, data.len() as u64)),
            "{id} not announced to a late subscriber of B: {heard:?}"
        );
    }
    a.delete(&[*big]).unwrap();
    assert!(!a.contains(*big).unwrap());
    let got = b2.get(&[*big], Duration::from_secs(1)).unwrap();
    assert_eq!(
        checksum(got[0].as_ref().expect("copy on B")),
        checksum(big_data)
    );
    drop(got);
    b.delete(&[*big]).unwrap();
    assert!(!b2.contains(*big).unwrap());

    // A missing object: a typed error, within the timeout.
    let missing = ObjectId::from_random();
    let t = Instant::now();
    let e = b
        .pull(missing, node_a.objects, Duration::from_millis(300))
        .unwrap_err();
    let took = t.elapsed();
    assert!(
        matches!(e, StoreError::RemoteNotFound { id, from } if id == missing && from == node_a.objects),
        "{e}"
    );
    assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(!b.contains(missing).unwrap());

    // An object sealed on A while B's pull waits.
    let later = ObjectId::from_random();
    let later_data = pattern(9, 2 * (1 << 20));
    let (b_c, from) = (b.clone(), node_a.objects);
    let puller = std::thread::spawn(move || {
        b_c.pull(later, from, Duration::from_secs(10))
            .map(|buf| checksum(&buf))
    });
    std::thread::sleep(Duration::from_millis(200));
    a.put(later, &later_data, b"later").unwrap();
    assert_eq!(puller.join().unwrap().unwrap(), checksum(&later_data));

    // Two clients of B pulling the same object at once both get it (one
    // transfers, the other waits for its seal).
    let both = ObjectId::from_random();
    let both_data = pattern(10, 8 * (1 << 20));
    a.put(both, &both_data, b"both").unwrap();
    let pullers: Vec<_> = [node_b.client(), node_b.client()]
        .into_iter()
        .map(|c| {
            std::thread::spawn(move || {
                c.pull(both, from, Duration::from_secs(10))
                    .map(|buf| checksum(&buf))
            })
        })
        .collect();
    for p in pullers {
        assert_eq!(p.join().unwrap().unwrap(), checksum(&both_data));
    }

    // Nobody listening: a typed error at once.
    let nowhere = dead_addr();
    let e = b
        .pull(ObjectId::from_random(), nowhere, Duration::from_secs(5))
        .unwrap_err();
    assert!(
        matches!(e, StoreError::RemoteUnreachable { from, .. } if from == nowhere),
        "{e}"
    );

    drop((a, b, b2, sub));
    node_a.session.remove_all().unwrap();
    node_b.session.remove_all().unwrap();
    node_a.stop();
    node_b.stop();
    assert!(
        fs::read_dir(&root).unwrap().next().is_none(),
        "root not empty"
    );
}

/// Silent connections and pullers that do not read hold only their own
/// connection: another pull of a multi-chunk object completes at once, and
/// a silent connection is closed by the node after its request timeout.
#[test]
fn silent_and_slow_pullers_do_not_delay_other_pulls() {
    let _w = proc_support::watchdog("silent_and_slow_pullers_do_not_delay_other_pulls");
    let dir = proc_support::scratch("swp", "slow");
    let root = dir.path().join("root");
    let node_a = start_node(&root, "slow-a", "64M");
    let node_b = start_node(&root, "slow-b", "64M");
    let a = node_a.client();
    let b = node_b.client();

    let huge = ObjectId::from_random();
    a.put(huge, &pattern(1, 24 << 20), b"").unwrap();
    let wanted = ObjectId::from_random();
    let wanted_data = pattern(2, 5 << 20);
    a.put(wanted, &wanted_data, b"w").unwrap();

    // Three silent connections; two that ask for the 24 MiB object and
    // never read; one that sends half a request.
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(node_a.objects).unwrap())
        .collect();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(node_a.objects).unwrap();
        let mut req = [0u8; 48];
        req[0..4].copy_from_slice(b"SWPQ");
        req[4..8].copy_from_slice(&1u32.to_le_bytes());
        req[8..36].copy_from_slice(huge.as_bytes());
        s.write_all(&req).unwrap();
        stalled.push(s);
    }
    let mut half = TcpStream::connect(node_a.objects).unwrap();
    half.write_all(b"SWPQ\x01\x00").unwrap();
    silent.push(half);
    std::thread::sleep(Duration::from_millis(100));

    // A server that served connections one after the other would wait
    // 1 s for each silent one and 5 s for each stalled one first.
    let t = Instant::now();
    let got = b
        .pull(wanted, node_a.objects, Duration::from_secs(10))
        .unwrap();
    let took = t.elapsed();
    assert_eq!(checksum(&got), checksum(&wanted_data));
    assert!(took < Duration::from_millis(2500), "pull took {took:?}");
    drop(got);

    // The node drops the silent ones after its request timeout (1 s).
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let t = Instant::now();
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a silent puller got an answer");
        assert!(t.elapsed() < Duration::from_secs(4), "not dropped in time");
    }
    // The stalled transfers hold references: deleting the object on A is
    // deferred while they are open, so its id is still in use; once they
    // close, the node releases the references and the id is free.
    a.delete(&[huge]).unwrap();
    assert!(!a.contains(huge).unwrap());
    let e = a.put(huge, b"x", b"").unwrap_err();
    assert!(matches!(e, StoreError::ObjectInUse { .. }), "{e}");
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match a.put(huge, b"x", b"") {
            Ok(()) => break,
            Err(StoreError::ObjectInUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("the closed pullers' references were not released: {e}"),
        }
    }

    drop((a, b));
    node_a.session.remove_all().unwrap();
    node_b.session.remove_all().unwrap();
    node_a.stop();
    node_b.stop();
}

/// Found by the evening attack: a local process holding more silent
/// connections than the endpoint serves at once (70 against 64), each
/// reopened as the node times it out, kept every real pull at *busy*
/// (77 of 77 over 4 s). At the cap a newcomer now displaces the connection
/// that has waited longest for its request, as the HTTP endpoint does.
#[test]
fn silent_connections_at_the_cap_do_not_lock_pullers_out() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let _w = proc_support::watchdog("silent_connections_at_the_cap_do_not_lock_pullers_out");
    let dir = proc_support::scratch("swp", "hog");
    let root = dir.path().join("root");
    let node_a = start_node(&root, "hog-a", "16M");
    let node_b = start_node(&root, "hog-b", "16M");
    let a = node_a.client();
    let b = node_b.client();
    let id = ObjectId::from_random();
    let data = pattern(3, 4096);
    a.put(id, &data, b"").unwrap();

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let addr = node_a.objects;
    let hog = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let open = || {
                let mut s = TcpStream::connect(addr).ok()?;
                s.write_all(b"SW").ok()?;
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut held: Vec<TcpStream> = (0..70).filter_map(|_| open()).collect();
            while !stop.load(Ordering::Relaxed) {
                // Reopen the ones the node closed (or answered).
                held.retain_mut(|s| {
                    let mut buf = [0u8; 64];
                    matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < 70 {
                    match open() {
                        Some(s) => held.push(s),
                        None => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut ok = 0;
    for _ in 0..20 {
        if let Ok(got) = b.pull(id, addr, Duration::from_secs(2)) {
            assert_eq!(checksum(&got), checksum(&data));
            ok += 1;
            drop(got);
            b.delete(&[id]).unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
    assert!(ok >= 18, "{ok} of 20 pulls got through the hog");

    drop((a, b));
    node_a.session.remove_all().unwrap();
    node_b.session.remove_all().unwrap();
    node_a.stop();
    node_b.stop();
}

/// What a hostile server does after reading the request.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// Declares 1 MiB, sends 1000 bytes and closes.
    Short,
    /// Declares 1000 bytes, sends 2000.
    Long,
    /// 32 bytes of garbage instead of a header.
    Garbage,
    /// Declares 1 MiB of metadata.
    HugeMetadata,
    /// Declares 2^41 bytes.
    HugeData,
    /// Declares 128 MiB (the pulling store has 16 MiB) and sends the first
    /// 64 KiB (a puller creates the object only once they came).
    TooBigForTheStore,
    /// Declares 1000 bytes, sends 500 and falls silent.
    Stall,
}

fn header(status: u32, meta: u32, size: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(b"SWPA");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&status.to_le_bytes());
    h.extend_from_slice(&meta.to_le_bytes());
    h.extend_from_slice(&size.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h
}

/// A one-connection server that reads a request and lies as told; it ends
/// when the puller closes (bounded by GUARD).
fn liar(lie: Lie) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut req = [0u8; 48];
        s.read_exact(&mut req).unwrap();
        assert_eq!(&req[0..4], b"SWPQ");
        let body: Vec<u8> = match lie {
            Lie::Short => [header(0, 0, 1 << 20), vec![1; 1000]].concat(),
            Lie::Long => [header(0, 0, 1000), vec![2; 2000]].concat(),
            Lie::Garbage => pattern(77, 32),
            Lie::HugeMetadata => header(0, 1 << 20, 10),
            Lie::HugeData => header(0, 0, 1 << 41),
            Lie::TooBigForTheStore => [
                header(0, 0, 128 << 20),
                vec![5; shmwire::store::PULL_PREFIX],
            ]
            .concat(),
            Lie::Stall => [header(0, 0, 1000), vec![3; 500]].concat(),
        };
        let _ = s.write_all(&body);
        if matches!(lie, Lie::Stall) {
            // Silent until the puller gives up and closes.
            let mut sink = [0u8; 16];
            let _ = s.read(&mut sink);
        }
    });
    (addr, t)
}

/// Servers that declare one size and send another, send garbage or
/// impossible sizes, or fall silent: each pull fails with its typed error
/// within the timeout, and the pulled object is not left behind in B's
/// store (not visible, and its id can be created again).
#[test]
fn a_lying_server_fails_the_pull_and_leaves_nothing_behind() {
    let _w = proc_support::watchdog("a_lying_server_fails_the_pull_and_leaves_nothing_behind");
    let dir = proc_support::scratch("swp", "liar");
    let root = dir.path().join("root");
    let node_b = start_node(&root, "liar-b", "16M");
    let b = node_b.client();
    for lie in [
        Lie::Short,
        Lie::Long,
        Lie::Garbage,
        Lie::HugeMetadata,
        Lie::HugeData,
        Lie::TooBigForTheStore,
        Lie::Stall,
    ] {
        let (addr, server) = liar(lie);
        let id = ObjectId::from_random();
        let t = Instant::now();
        let e = b.pull(id, addr, Duration::from_millis(500)).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{lie:?}: {:?}",
            t.elapsed()
        );
        assert_eq!(e.object_id(), Some(id), "{lie:?}: {e}");
        let ok = match lie {
            Lie::Short => matches!(
                e,
                StoreError::PullTruncated { declared, received, from, .. }
                    if declared == 1 << 20 && received == 1000 && from == addr
            ),
            Lie::Long => matches!(e, StoreError::PullOverrun { declared: 1000, .. }),
            Lie::Garbage | Lie::HugeMetadata => matches!(e, StoreError::PullProtocol { .. }),
            Lie::HugeData => {
                matches!(e, StoreError::ObjectTooLarge { size, .. } if size == 1 << 41)
            }
            Lie::TooBigForTheStore => matches!(e, StoreError::StoreFull { .. }),
            Lie::Stall => matches!(e, StoreError::PullTimedOut { .. }),
        };
        assert!(ok, "{lie:?}: {e}");
        assert_left_nothing(&b, id);
        server.join().unwrap();
    }
    drop(b);
    node_b.session.remove_all().unwrap();
    node_b.stop();
}

/// The serving node SIGKILLed in the middle of a 64 MiB transfer: the pull
/// fails with a short transfer, the local copy is aborted, and the
/// pulling node's store goes on working.
#[test]
fn the_serving_node_killed_mid_transfer_leaves_nothing_behind() {
    let _w = proc_support::watchdog("the_serving_node_killed_mid_transfer_leaves_nothing_behind");
    let dir = proc_support::scratch("swp", "kill");
    let root = dir.path().join("root");
    let mut node_a = start_node(&root, "kill-a", "128M");
    let node_b = start_node(&root, "kill-b", "128M");
    let a = node_a.client();
    let b = node_b.client();
    let id = ObjectId::from_random();
    a.put(id, &pattern(5, 64 << 20), b"big").unwrap();
    drop(a);

    let from = node_a.objects;
    let mut killed = false;
    let e = b
        .pull_with_progress(id, from, Duration::from_secs(20), |got, total| {
            assert_eq!(total, 64 << 20);
            if !killed {
                assert!(got < total);
                // At most a few MiB are in the sockets' buffers now.
                node_a.sigkill();
                killed = true;
            }
        })
        .unwrap_err();
    assert!(killed);
    assert!(
        matches!(
            e,
            StoreError::PullTruncated { declared, received, .. }
                if declared == 64 << 20 && received < declared
        ),
        "{e}"
    );
    assert_left_nothing(&b, id);
    // B's store still serves a full-size object.
    b.put(id, &pattern(6, 64 << 20), b"").unwrap();
    b.delete(&[id]).unwrap();
    drop(b);
    node_b.session.remove_all().unwrap();
    node_a.session.remove_all().unwrap();
    node_b.stop();
}

/// The inodes of the ring memfds (`/memfd:shmwire-ring-…`) process `pid`
/// has open, with the `/proc/<pid>/fd` path of each.
fn ring_memfds(pid: u32) -> Vec<(u64, std::path::PathBuf)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(t) = fs::read_link(e.path()) else {
            continue;
        };
        if !t.to_string_lossy().starts_with("/memfd:shmwire-ring-") {
            continue;
        }
        // The link followed: the memfd itself (shared by every process
        // that maps the ring).
        if let Ok(m) = fs::metadata(e.path()) {
            out.push((m.ino(), e.path()));
        }
    }
    out
}

/// Writes random bytes over both rings of node `pid`'s own store client
/// (the ring memfds it has open that this process has not: this
/// process's clients of the node share theirs with the node's store
/// service), through the node's descriptors in `/proc/<pid>/fd`, as a
/// hostile process of the same user could.
/// Whether `text` names how the endpoint's store client broke after its
/// rings were scribbled: its side found the scribble, or the store service
/// found it first and poisoned the rings, or cut the client off and gave
/// the rings' memory back (the client then reads zeros, and knows only
/// the end).
fn names_the_break(text: &str) -> bool {
    text.contains("corrupt ring: ")
        || text.contains("ring is poisoned")
        || text.contains("gave its rings' memory back")
        // The service found it first and said so as it cut the client off
        // (its farewell).
        || text.contains(" cut the connection off: corrupt shared ring: ")
}

fn scribble_pull_client_rings(pid: u32, salt: u64) {
    use std::os::unix::fs::FileExt;
    // The rings of a connection the store service cut off before linger
    // there for `RING_LINGER` (2 s) in case its peer still reads them,
    // then go at the service's next check (every second): wait for them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let targets = loop {
        let mine: Vec<u64> = ring_memfds(std::process::id())
            .into_iter()
            .map(|(ino, _)| ino)
            .collect();
        let mut targets: Vec<(u64, std::path::PathBuf)> = ring_memfds(pid)
            .into_iter()
            .filter(|(ino, _)| !mine.contains(ino))
            .collect();
        targets.sort();
        targets.dedup_by_key(|(ino, _)| *ino);
        if targets.len() <= 2 || std::time::Instant::now() > deadline {
            break targets;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        targets.len(),
        2,
        "the pull endpoint's client has two rings: {targets:?}"
    );
    // Both opened before either is written: the first write can make the
    // store service drop that connection and close its descriptors, the
    // one listed for the second ring among them (a CI run failed opening
    // it: "No such file or directory").
    let files: Vec<fs::File> = targets
        .iter()
        .map(|(_, path)| fs::OpenOptions::new().write(true).open(path).unwrap())
        .collect();
    for (n, f) in files.iter().enumerate() {
        let len = f.metadata().unwrap().len();
        f.write_all_at(&pattern(salt + n as u64, len as usize), 0)
            .unwrap();
    }
}

/// Sets process `pid`'s soft descriptor limit to `n` (its hard limit
/// unchanged, so it can be raised again without privileges).
fn set_nofile(pid: u32, n: u64) {
    use rustix::process::{prlimit, Pid, Resource, Rlimit};
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect(&limits);
    let pid = Pid::from_raw(pid as i32).unwrap();
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: Some(n),
            maximum: hard.parse().ok(),
        },
    )
    .unwrap();
}

/// The attack on the object endpoint: random bytes written over the rings
/// of the node's own store client (the one its pull endpoint reads the
/// store through). Before the fix every pull was answered *failed* for
/// good while `/health` said ok. Now the endpoint notices the broken
/// client, says so once (with the whole error chain) and connects a fresh
/// one: pulls succeed again within 5 s with the right bytes. Then the
/// same with the node's descriptor limit lowered so that no new client
/// can connect: each pull fails at once with a typed error (never hangs),
/// `/health` is `503` naming the object endpoint and the cause, a failed
/// reconnect is said once; once the limit is raised again, pulls succeed
/// within 5 s and `/health` is `200`.
#[test]
fn a_pull_endpoint_whose_store_rings_are_scribbled_reconnects() {
    let _w = proc_support::watchdog("a_pull_endpoint_whose_store_rings_are_scribbled_reconnects");
    let dir = proc_support::scratch("swp", "scribble");
    let root = dir.path().join("root");
    // Node A logs warnings (RUST_LOG), read here from its stderr.
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args([
            "node",
            "--session",
            "scr-a",
            "--store-capacity",
            "16M",
            "--root",
        ])
        .arg(&root)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let err = child.stderr.take().unwrap();
    let kid = Kid(child);
    let ready = proc_support::wait_for(&mut out, "node ready:");
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let said = |what: &str| {
        log.lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let objects: SocketAddr = ready
        .split(", ")
        .find_map(|w| w.strip_prefix("objects "))
        .expect(&ready)
        .parse()
        .unwrap();
    let http = ready
        .split(", ")
        .find_map(|w| w.strip_prefix("http://"))
        .expect(&ready)
        .to_owned();
    let node_a = NodeProc {
        kid,
        session: Session::open_in(&root, "scr-a").unwrap(),
        objects,
    };
    let pid = node_a.kid.pid();
    let node_b = start_node(&root, "scr-b", "16M");
    let a = node_a.client();
    let b = node_b.client();
    let health = || {
        let mut s = TcpStream::connect(&http).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };

    // Objects of A, put by this process; each pull takes a fresh one (a
    // pulled object is local to B from then on).
    let objs: Vec<(ObjectId, Vec<u8>)> = (0..200)
        .map(|n| {
            (
                ObjectId::from_random(),
                pattern(100 + n, 1000 + 97 * n as usize),
            )
        })
        .collect();
    for (id, data) in &objs {
        a.put(*id, data, b"m").unwrap();
    }
    let mut next = objs.iter();
    // Pulls until one succeeds (checked) within 5 s of `since`; each
    // failure at once and typed.
    let mut recover = |since: Instant, during: &dyn Fn()| {
        let mut failures = Vec::new();
        for (id, data) in next.by_ref() {
            let t = Instant::now();
            match b.pull(*id, node_a.objects, Duration::from_secs(3)) {
                Ok(got) => {
                    assert_eq!(got.len(), data.len());
                    assert_eq!(checksum(&got), checksum(data), "content of {id}");
                    assert_eq!(got.metadata(), b"m");
                    return (since.elapsed(), failures);
                }
                Err(e) => {
                    assert!(t.elapsed() < Duration::from_secs(2), "a pull hung: {e}");
                    assert!(matches!(e, StoreError::RemoteFailed { .. }), "{e}");
                    failures.push(e.to_string());
                    during();
                }
            }
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "pulls did not recover within 5 s: {failures:?}; node log:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ran out of objects");
    };
    let (took, failed) = recover(Instant::now(), &|| {});
    assert!(failed.is_empty(), "{failed:?}");
    assert!(took < Duration::from_secs(1));
    assert!(health().starts_with("HTTP/1.0 200 OK"));

    // 1. The rings scribbled: the next pull that needs the store service
    // finds the client broken, and the endpoint connects a new one at once.
    scribble_pull_client_rings(pid, 7000);
    let scribbled = Instant::now();
    // A pull of an object A does not have: the endpoint's client cannot
    // answer it from the shared index, so it asks the store over the
    // scribbled rings (before the fix, every later pull failed).
    let t = Instant::now();
    let e = b
        .pull(
            ObjectId::from_random(),
            node_a.objects,
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2), "a pull hung: {e}");
    assert!(
        matches!(
            e,
            StoreError::RemoteNotFound { .. } | StoreError::RemoteFailed { .. }
        ),
        "{e}"
    );
    let (took, failed) = recover(scribbled, &|| {});
    eprintln!("recovered {took:?} after the scribble; failed pulls: {failed:?}");
    let broke = said("store pull: the store client broke");
    assert_eq!(broke.len(), 1, "{}", log.lock().unwrap());
    assert!(names_the_break(&broke[0]), "{}", broke[0]);
    assert!(health().starts_with("HTTP/1.0 200 OK"), "{}", health());

    // 2. Again, with the node's descriptor limit a few above what it has
    // open: a pull's connection is accepted, a new store client cannot be
    // made. First the rings of step 1's cut-off connection are let go: the
    // store service keeps a cut-off connection's rings (a memfd each) for
    // 2 s (`RING_LINGER`); counted while they were still there, their two
    // descriptors came free during the outage and the new client could
    // connect before any pull failed ("no pull failed", about 1 run in 10).
    std::thread::sleep(Duration::from_millis(2500));
    scribble_pull_client_rings(pid, 8000);
    let scribbled = Instant::now();
    // The store service audits its rings every 20 ms and cuts the client
    // off, closing its side's descriptors; counted after that.
    std::thread::sleep(Duration::from_millis(200));
    let limit = fd_limit::limit_leaving(pid, 2);
    set_nofile(pid, limit);
    let e = b
        .pull(
            ObjectId::from_random(),
            node_a.objects,
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(matches!(e, StoreError::RemoteFailed { .. }), "{e}");
    let h = health();
    assert!(
        h.starts_with("HTTP/1.0 503") && h.contains("object endpoint: its store client broke"),
        "{h}"
    );
    // The client's own side found the scribble ("corrupt ring: …"), or the
    // store service found it first and poisoned the rings ("ring is
    // poisoned (a side found its shared state corrupt)"), or the service
    // found it, cut the client off and gave the rings' memory back at
    // once (its scribbled flags read as the client gone), so the client
    // reads zeros: then only the end is known ("… gave its rings' memory
    // back …"; before 2026-12-05 the zeros were taken for a scribble of
    // their own, "magic overwritten (value 0)"). Either way named.
    assert!(names_the_break(&h), "{h}");
    // Pulls fail at once while it lasts; the limit is raised after the
    // first failures.
    let restored = std::cell::Cell::new(None);
    let (took, failed) = recover(scribbled, &|| {
        if restored.get().is_none() && scribbled.elapsed() > Duration::from_millis(500) {
            set_nofile(pid, limit + 256);
            restored.set(Some(Instant::now()));
        }
    });
    let since_restored = restored
        .get()
        .unwrap_or_else(|| {
            panic!(
                "no pull failed: limit {limit} (2 free numbers below it), {} open now",
                fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
            )
        })
        .elapsed();
    eprintln!(
        "outage: recovered {took:?} after the scribble, {since_restored:?} after the limit \
         was raised; {} failed pulls",
        failed.len()
    );
    assert!(
        since_restored < Duration::from_millis(1500),
        "{since_restored:?}"
    );
    assert!(health().starts_with("HTTP/1.0 200 OK"), "{}", health());
    assert_eq!(said("store pull: the store client broke").len(), 2);
    let retried = said("connecting a new store client failed");
    assert_eq!(retried.len(), 1, "{}", log.lock().unwrap());
    eprintln!("node log:\n{}", log.lock().unwrap());

    // And stays recovered: an object put after the attacks.
    let late = ObjectId::from_random();
    let late_data = pattern(9, 3 << 20);
    a.put(late, &late_data, b"").unwrap();
    let got = b
        .pull(late, node_a.objects, Duration::from_secs(5))
        .unwrap();
    assert_eq!(checksum(&got), checksum(&late_data));
    drop(got);
    drop((a, b));
    node_a.session.remove_all().unwrap();
    node_b.session.remove_all().unwrap();
    node_a.stop();
    node_b.stop();
}
