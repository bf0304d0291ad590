//! The node layer's pieces in one process (issue 13): a ring's fill as a
//! connection reports it, the store's snapshot, and `Node::tick` /
//! `Node::shutdown` on a dead worker's entry. `cli/tests/node_cli.rs` runs
//! the same with real processes through the CLI.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use shmwire::ids::{NodeId, ObjectId, WorkerId};
use shmwire::node::{load_or_create_token, Directory, Node, NodeConfig, SessionReport};
use shmwire::shm::{Session, ENTRY_PREFIX, ENTRY_SUFFIX};
use shmwire::store::{ObjectState, ObjectTable};
use shmwire::transport::{
    Connection, Connector, Endpoint, ListenOptions, Listener, ShmOptions, TransportConfig,
};

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("swns")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

#[test]
fn ring_fill_counts_bytes_not_yet_released() {
    let tmp = scratch();
    let session = Session::open_in(tmp.path().join("root"), "fill").unwrap();
    let token = load_or_create_token(&session).unwrap();
    let dir = Arc::new(Directory::for_session(&session).unwrap());
    let server = WorkerId::from_array([1; 28]);
    let mut listener = Listener::bind(
        &session,
        TransportConfig::new(server, token),
        ListenOptions {
            shm: Some(ShmOptions::default()),
            ..Default::default()
        },
        dir.as_ref(),
    )
    .unwrap();
    let connector = Connector::new(
        TransportConfig::new(WorkerId::from_random(), token),
        NodeId::from_random(),
    )
    .with_session(&session, dir.clone());
    let caller = std::thread::spawn(move || connector.connect_worker(&server).unwrap());
    let mut accepted = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut conn = caller.join().unwrap();
    let empty = conn.ring_fill().unwrap();
    assert_eq!((empty.tx_used, empty.rx_used), (0, 0), "{empty:?}");
    assert!(empty.tx_capacity > 0 && empty.rx_capacity > 0);
    conn.send(&[7u8; 100]).unwrap();
    let sent = conn.ring_fill().unwrap();
    let got = accepted.ring_fill().unwrap();
    // A 100-byte payload plus its frame header, 16-byte aligned.
    assert!(sent.tx_used >= 100 && sent.tx_used <= 160, "{sent:?}");
    assert_eq!(got.rx_used, sent.tx_used, "{got:?} / {sent:?}");
    assert_eq!(got.rx_capacity, sent.tx_capacity);
    let frame = accepted
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .to_vec();
    assert_eq!(frame, [7u8; 100]);
    drop((conn, accepted, listener));
    session.remove_all().unwrap();
}

#[test]
fn table_snapshot_lists_the_largest_objects_first() {
    let mut t = ObjectTable::new(1 << 20).unwrap();
    for (i, size) in [(1u8, 10u64), (2, 3000), (3, 500)] {
        let id = ObjectId::from_array([i; 28]);
        t.create(1, id, size, Vec::new()).unwrap();
        if i != 3 {
            t.seal(1, id).unwrap();
        }
    }
    let snap = t.snapshot(2);
    assert_eq!(snap.stats.objects, 3);
    let sizes: Vec<_> = snap.largest.iter().map(|o| o.data_size).collect();
    assert_eq!(sizes, [3000, 500]);
    assert_eq!(snap.largest[0].state, ObjectState::Sealed);
    assert_eq!(snap.largest[1].state, ObjectState::Unsealed);
    // The creator of an unsealed object holds it.
    assert_eq!(
        snap.largest[1].holders,
        t.holders(&ObjectId::from_array([3; 28]))
    );
}

#[test]
fn node_tick_reports_a_dead_worker_once_and_shutdown_leaves_nothing() {
    let tmp = scratch();
    let root = tmp.path().join("root");
    let session = Session::open_in(&root, "tick").unwrap();
    let mut node = Node::start(&session, NodeConfig::new(1 << 20)).unwrap();
    // A worker's entry, locked (its worker lives) while the node looks at
    // it, then unlocked: the worker died.
    let mut e = Endpoint::new(WorkerId::from_array([9; 28]));
    e.name = Some("gone".into());
    e.pid = 4_000_000;
    let entry = session
        .dir()
        .join(format!("{ENTRY_PREFIX}{}{ENTRY_SUFFIX}", e.worker_id));
    fs::write(&entry, e.encode()).unwrap();
    let held = fs::File::open(&entry).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    assert!(node.tick().died.is_empty());
    // Unlocked, not only closed: a child another test of this binary is
    // forking at that moment shares the open file description (and with
    // it the lock) until its `exec` closes it, so a close alone may leave
    // the entry locked for the next tick (it did once in CI).
    rustix::fs::flock(&held, rustix::fs::FlockOperation::Unlock).unwrap();
    drop(held);
    let r = node.tick();
    assert_eq!(r.died.len(), 1, "{r:?}");
    assert_eq!(r.died[0].worker_id, e.worker_id);
    assert_eq!(r.died[0].name.as_deref(), Some("gone"));
    assert_eq!(r.died[0].pid, 4_000_000);
    assert!(r.removed_anything() && !entry.exists(), "{r:?}");
    assert!(node.tick().died.is_empty(), "reported once");
    // An unlocked entry of a worker the node never saw live names a pid
    // nobody vouches for: removed, and no death announced (the attack on
    // `0060161`: planted entries naming a live worker's pid were).
    let mut f = Endpoint::new(WorkerId::from_array([8; 28]));
    f.pid = std::process::id();
    let planted = session
        .dir()
        .join(format!("{ENTRY_PREFIX}{}{ENTRY_SUFFIX}", f.worker_id));
    fs::write(&planted, f.encode()).unwrap();
    let r = node.tick();
    assert!(r.died.is_empty() && !planted.exists(), "{r:?}");
    // inspect knows it from the node's area.
    let report = SessionReport::gather(&session).unwrap();
    let w = report
        .workers
        .iter()
        .find(|w| w.worker_id == e.worker_id)
        .unwrap();
    assert!(!w.live && w.removed_by_node && w.pid == 4_000_000);
    assert_eq!(report.node, Some(node.id()));
    assert_eq!(report.store.as_ref().unwrap().stats.capacity, 1 << 20);
    // A second node of the session is refused while this one lives.
    assert!(Node::start(&session, NodeConfig::new(1 << 20)).is_err());
    let done = node.shutdown().unwrap();
    assert!(done.removed_dir, "{done:?}");
    assert!(!session.dir().exists());
}

/// This test binary run again as test `test` with `env` set (a child
/// role), once it printed `marker`; its stdout is consumed up to there.
/// Panics (after reaping it) if it exits first.
fn spawn_role(test: &str, env: (&str, &str), marker: &str) -> std::process::Child {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(env.0, env.1)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(marker) {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{test}: the child exited before it printed {marker}");
        }
    }
    child
}

/// The role under which this test binary, run again, is a process of the
/// session in `idle_node_…` (the variable gives `<root>|<session>`).
const MEMBER_ENV: &str = "SHMWIRE_NODE_SERVICE_MEMBER";

/// The role under which this test binary, run again, is a worker of the
/// session (`<root>|<session>|<worker id hex>`): it registers in the
/// directory under the name `doomed`, says so, and waits to be killed (at
/// most 30 s).
const WORKER_ENV: &str = "SHMWIRE_NODE_SERVICE_WORKER";

fn registered_worker(spec: &str) {
    use std::io::Write as _;
    let mut parts = spec.split('|');
    let (root, name, id) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let s = Session::open_in(root, name).unwrap();
    let mut e = Endpoint::new(WorkerId::from_hex(id).unwrap());
    e.name = Some("doomed".into());
    let _registration = Directory::for_session(&s).unwrap().register(&e).unwrap();
    println!("@@REGISTERED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(30));
}

/// Input: a worker process is `SIGKILL`ed, and a caller looks it up (by
/// id, by name) before the node's next round — as every caller whose
/// connection broke does at once. The lookups used to remove the dead
/// entry they met, and the node, finding it gone, announced nothing: it
/// cannot tell that from a worker that deregistered. While a node runs,
/// lookups now leave the entry to it: the death is announced, once, and
/// the entry removed by the node's round.
#[test]
fn a_death_a_callers_lookup_meets_first_is_still_announced() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        return registered_worker(&spec);
    }
    let tmp = scratch();
    let root = tmp.path().join("root");
    let session = Session::open_in(&root, "lookup").unwrap();
    let mut node = Node::start(&session, NodeConfig::new(1 << 20)).unwrap();
    let id = WorkerId::from_array([7; 28]);
    let mut child = spawn_role(
        "a_death_a_callers_lookup_meets_first_is_still_announced",
        (WORKER_ENV, &format!("{}|lookup|{id}", root.display())),
        "@@REGISTERED",
    );
    let pid = child.id();
    let dir = Directory::for_session(&session).unwrap();
    assert_eq!(dir.lookup_name("doomed").unwrap().worker_id, id);
    assert!(node.tick().died.is_empty(), "seen live");
    child.kill().unwrap();
    child.wait().unwrap();
    // The caller's lookups, before the node's round: no such worker.
    assert!(dir.lookup(&id).is_err());
    assert!(dir.lookup_name("doomed").is_err());
    assert!(dir.list().unwrap().iter().all(|e| e.worker_id != id));
    let entry = session
        .dir()
        .join(format!("{ENTRY_PREFIX}{id}{ENTRY_SUFFIX}"));
    assert!(entry.exists(), "left to the node");
    let r = node.tick();
    assert_eq!(r.died.len(), 1, "{r:?}");
    assert_eq!(r.died[0].worker_id, id);
    assert_eq!(r.died[0].pid, pid);
    assert_eq!(r.died[0].name.as_deref(), Some("doomed"));
    assert!(!entry.exists(), "removed by the node's round");
    assert!(node.tick().died.is_empty(), "reported once");
    assert!(node.shutdown().unwrap().removed_dir);
}

/// A process of the session: opens it (so holds its process lock), says
/// so, and waits to be killed (at most 30 s).
fn member(spec: &str) {
    use std::io::Write as _;
    let (root, name) = spec.split_once('|').unwrap();
    let _s = Session::open_in(root, name).unwrap();
    println!("@@MEMBER");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(30));
}

/// An idle node runs a round only when something happens (or every
/// `idle_interval`): here that interval is 30 s, yet the lock file of a
/// session process that is `SIGKILL`ed goes within seconds (its pidfd
/// woke the node), and the node's own entry, removed, is put back within
/// seconds (the directory's inotify woke it). Without the watch both
/// would wait for the 30 s round.
#[test]
fn an_idle_node_wakes_for_a_death_and_for_a_removed_file() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Instant;
    if let Ok(spec) = std::env::var(MEMBER_ENV) {
        return member(&spec);
    }
    const BOUND: Duration = Duration::from_secs(10);
    let tmp = scratch();
    let root = tmp.path().join("root");
    let session = Session::open_in(&root, "idle").unwrap();
    let mut config = NodeConfig::new(1 << 20);
    config.idle_interval = Duration::from_secs(30);
    let mut node = Node::start(&session, config).unwrap();
    let entry = session
        .dir()
        .join(format!("{ENTRY_PREFIX}{}{ENTRY_SUFFIX}", node.id()));
    let stop = AtomicBool::new(false);
    // Ends the node's loop on every way out of the scope below (a panic
    // included), so the scope can join it.
    struct StopGuard<'a>(&'a AtomicBool);
    impl Drop for StopGuard<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (tx, rx) = mpsc::channel::<(Vec<String>, bool)>();
    std::thread::scope(|sc| {
        let runner = sc.spawn(|| {
            node.run(&stop, |r| {
                let _ = tx.send((r.cleanup.removed_lock_files.clone(), r.restored.entry));
            })
        });
        let _stop = StopGuard(&stop);
        let mut child = spawn_role(
            "an_idle_node_wakes_for_a_death_and_for_a_removed_file",
            (MEMBER_ENV, &format!("{}|idle", root.display())),
            "@@MEMBER",
        );
        let pid = child.id();
        // Let the rounds its arrival caused pass: the node is idle now,
        // its next round due in 30 s.
        std::thread::sleep(Duration::from_millis(600));
        // A change makes a round; the death comes within the interval
        // after it (the round it calls for waits for the interval, then
        // runs: it once waited for the idle interval instead).
        fs::write(session.dir().join("nudge"), b"").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        while rx.try_recv().is_ok() {}
        let t = Instant::now();
        child.kill().unwrap();
        child.wait().unwrap();
        let prefix = format!("proc-{pid}-");
        loop {
            let left = BOUND.saturating_sub(t.elapsed());
            let (removed, _) = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("the killed process's lock file was not removed within {BOUND:?}")
            });
            if removed.iter().any(|n| n.starts_with(&prefix)) {
                break;
            }
        }
        fs::remove_file(session.dir().join("nudge")).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        while rx.try_recv().is_ok() {}
        let t = Instant::now();
        fs::remove_file(&entry).unwrap();
        loop {
            let left = BOUND.saturating_sub(t.elapsed());
            let (_, restored) = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the node's entry was not put back within {BOUND:?}"));
            if restored {
                break;
            }
        }
        assert!(entry.exists());
        drop(_stop);
        runner.join().unwrap().unwrap();
    });
    let done = node.shutdown().unwrap();
    assert!(done.removed_dir, "{done:?}");
}
