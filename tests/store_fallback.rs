//! The fallback directory across real processes: its files have no name
//! (their descriptors reach clients over the connection's socket), so a
//! process that truncates everything it can find kills nobody; a client
//! that never reads its socket is dropped alone; a service out of
//! descriptors says so. The test binary re-runs itself as a child
//! (`SHMWIRE_STORE_CHILD=<role>`); every wait is bounded, children are
//! reaped, each test has its own session root.

#[path = "fd_limit/mod.rs"]
mod fd_limit;
mod store_common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use shmwire::ids::ObjectId;
use shmwire::spec;
use shmwire::store::{Reply, Request, StoreConfig, StoreError, StoreService};
use shmwire::transport::{MessageConnection, RecvError};
use store_common::*;

const FALLBACK: &str = "SHMWIRE_STORE_FALLBACK";

/// The arena of these tests: smaller than every object, so each one goes
/// to a fallback file.
const ARENA: u64 = 64 * 1024;

fn pass(env: &Env, session: &str, fallback: &Path) -> Vec<(&'static str, String)> {
    vec![
        (ROOT, env.root.path().display().to_string()),
        (SESSION, session.to_owned()),
        (FALLBACK, fallback.display().to_string()),
    ]
}

/// A fallback directory inside the test's root (removed with it).
fn fallback_dir(env: &Env) -> PathBuf {
    let d = env.root.path().join("fallback");
    std::fs::create_dir(&d).unwrap();
    d
}

fn fallback_store(s: &shmwire::shm::Session, dir: &Path) -> StoreService {
    StoreService::start(s, StoreConfig::new(ARENA).fallback_dir(dir)).unwrap()
}

/// Object `i` of the truncation test and its contents (each larger than
/// the arena).
fn object(i: u32) -> (ObjectId, Vec<u8>) {
    (
        shared_oid(21, i),
        contents(500 + u64::from(i), 100_000 + i as usize * 7919),
    )
}

const OBJECTS: u32 = 16;

/// Entries of `dir` (the fallback files would be there if they had names).
fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Descriptors `pid` holds on files of `dir` that have no name (an
/// `O_TMPFILE` file reads as `<dir>/#<inode> (deleted)`).
fn unnamed_files_held(pid: u32, dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let prefix = dir.display().to_string();
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with(&prefix) && t.ends_with(" (deleted)"))
        .count()
}

/// Waits at most `GUARD` for `c` to exit; asserts it was not killed by a
/// signal and succeeded.
fn exits_cleanly(c: &mut Child, what: &str) {
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            kill9(c);
            panic!("{what} hangs");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.signal(), None, "{what} died of a signal: {status:?}");
    assert!(status.success(), "{what} failed: {status:?}");
}

/// `ok=N` of a child's `done` line.
fn count(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        .parse()
        .unwrap()
}

#[test]
fn truncating_everything_while_fallback_objects_live_kills_no_process() {
    const TEST: &str = "truncating_everything_while_fallback_objects_live_kills_no_process";
    if let Some(role) = child_role() {
        let s = child_session();
        let dir = PathBuf::from(child_env(FALLBACK));
        match role.as_str() {
            "service" => {
                let _store = fallback_store(&s, &dir);
                println!("ready");
                std::thread::sleep(GUARD);
            }
            "writer" => {
                // Creates the objects in place (through the descriptors
                // the service hands over) and holds them; then, for 3 s,
                // creates, reads back and deletes more, while the parent
                // truncates everything it can find.
                let c = connect(&s);
                let mut held = Vec::new();
                for i in 0..OBJECTS {
                    let (id, data) = object(i);
                    let mut w = c.create(id, data.len() as u64, b"fb").unwrap();
                    w.copy_from_slice(&data);
                    held.push(w.seal().unwrap());
                }
                println!("sealed");
                let (mut ok, mut err) = (0u64, 0u64);
                let end = Instant::now() + Duration::from_secs(3);
                let mut k = 0u32;
                while Instant::now() < end {
                    let data = contents(9000 + u64::from(k), 80_000 + k as usize % 5000);
                    let id = shared_oid(22, k);
                    let r = c.put(id, &data, b"").and_then(|()| {
                        let got = c.get(&[id], Duration::from_secs(1))?;
                        let buf = got[0].as_ref().ok_or(StoreError::BadReply("missing"))?;
                        assert_eq!(checksum(buf), checksum(&data), "object {k} read back wrong");
                        drop(got);
                        c.delete(&[id])
                    });
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            if err == 0 {
                                println!("first error: {e}");
                            }
                            err += 1;
                        }
                    }
                    for (i, b) in held.iter().enumerate() {
                        assert_eq!(checksum(b), checksum(&object(i as u32).1), "held {i}");
                    }
                    k += 1;
                }
                println!("done ok={ok} err={err}");
            }
            "reader" => {
                let c = connect(&s);
                let ids: Vec<_> = (0..OBJECTS).map(|i| object(i).0).collect();
                let sums: Vec<_> = (0..OBJECTS).map(|i| checksum(&object(i).1)).collect();
                println!("reading");
                let (mut ok, mut err) = (0u64, 0u64);
                let end = Instant::now() + Duration::from_secs(3);
                while Instant::now() < end {
                    match c.get(&ids, Duration::from_secs(1)) {
                        Ok(got) => {
                            for (i, g) in got.iter().enumerate() {
                                let g = g.as_ref().expect("held by the writer");
                                assert_eq!(checksum(g), sums[i], "object {i} read wrong");
                                assert_eq!(g.metadata(), b"fb");
                            }
                            ok += 1;
                        }
                        Err(e) => {
                            if err == 0 {
                                println!("first error: {e}");
                            }
                            err += 1;
                        }
                    }
                }
                println!("done ok={ok} err={err}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("fbtruncate");
    let dir = fallback_dir(&env);
    let args = pass(&env, "fbtruncate", &dir);
    let mut service = spawn_child(TEST, "service", &args);
    expect_line(&stdout_lines(&mut service), "ready");
    // Connected before the session's files (its token too) are truncated.
    let c = connect(&env.session);
    let mut writer = spawn_child(TEST, "writer", &args);
    let wl = stdout_lines(&mut writer);
    expect_line(&wl, "sealed");
    let mut reader = spawn_child(TEST, "reader", &args);
    let rl = stdout_lines(&mut reader);
    expect_line(&rl, "reading");
    // Every object lives in a fallback file: the service holds one
    // unnamed file per object, and the directory shows none.
    let held = unnamed_files_held(service.id(), &dir);
    assert!(
        held >= OBJECTS as usize,
        "service holds {held} unnamed files"
    );
    assert_eq!(entries(&dir), 0, "a fallback file has a name");
    // A hostile process of the same user (this one): for a second,
    // truncate every file of the session root and of the fallback
    // directory, and try every memfd of the three processes.
    let pids = [service.id(), writer.id(), reader.id()];
    let mut files = 0;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let (f, _refused, shrank) = truncate_everything(env.root.path(), &pids);
        assert_eq!(shrank, 0, "a sealed memfd shrank");
        files += f;
        assert_eq!(entries(&dir), 0, "a fallback file has a name");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(files > 0, "the session has files to truncate");
    let wdone = expect_line(&wl, "done ");
    let rdone = expect_line(&rl, "done ");
    exits_cleanly(&mut writer, "writer");
    exits_cleanly(&mut reader, "reader");
    assert!(
        count(&wdone, "ok=") > 0 && count(&rdone, "ok=") > 0,
        "{wdone} / {rdone}"
    );
    assert_eq!(count(&rdone, "err="), 0, "reader: {rdone}");
    assert_eq!(count(&wdone, "err="), 0, "writer: {wdone}");
    assert!(
        service.try_wait().unwrap().is_none(),
        "the store service died"
    );
    // Deleting the objects (the writer, which held them, is gone) closes
    // their files in the service.
    let ids: Vec<_> = (0..OBJECTS).map(|i| object(i).0).collect();
    c.delete(&ids).unwrap();
    let deadline = Instant::now() + GUARD;
    while unnamed_files_held(service.id(), &dir) > 0 {
        assert!(Instant::now() < deadline, "fallback files still open");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill9(&mut service);
}

/// A raw client speaking the store protocol: `get`s object `id` over and
/// over, reading every reply from the ring but never its socket (where
/// each reply's fallback descriptor waits). Returns the replies it read
/// before the service dropped it, or `None` if it never was.
fn never_read_descriptors(s: &shmwire::shm::Session, id: ObjectId) -> Option<u64> {
    let (mut conn, mut enc) = raw_store_client(s, 256 << 10);
    let mut call = |req: &Request| -> Result<Reply, RecvError> {
        if conn.send_message(&mut enc, req).is_err() {
            return Err(RecvError::Closed);
        }
        conn.recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>)
            .map(|r| r.unwrap())
    };
    let get = Request::Get {
        ids: vec![id],
        timeout_ms: 0,
    };
    for n in 0..100_000u64 {
        match call(&get) {
            Ok(Reply::Objects(v)) => assert!(v[0].is_some(), "the object is there"),
            Ok(other) => panic!("unexpected reply {other:?}"),
            Err(RecvError::Closed | RecvError::PeerDied { .. }) => return Some(n),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    None
}

#[test]
fn a_client_that_never_reads_its_descriptors_is_dropped_alone() {
    const TEST: &str = "a_client_that_never_reads_its_descriptors_is_dropped_alone";
    let x = shared_oid(23, 0);
    let data = contents(23, 200_000);
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "hog" => match never_read_descriptors(&s, x) {
                Some(n) => println!("dropped after={n}"),
                None => panic!("the service never dropped a client that reads no descriptor"),
            },
            "reader" => {
                // Gets (and checks) the object until told to stop (its
                // stdin closes), then says how many it read.
                let c = connect(&s);
                println!("reading");
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop2 = std::sync::Arc::clone(&stop);
                std::thread::spawn(move || {
                    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
                    stop2.store(true, std::sync::atomic::Ordering::Relaxed);
                });
                let (mut ok, deadline) = (0u64, Instant::now() + GUARD);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let got = c.get(&[x], Duration::ZERO).unwrap();
                    assert_eq!(checksum(got[0].as_ref().unwrap()), checksum(&data));
                    ok += 1;
                }
                println!("done ok={ok}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("fbhog");
    let dir = fallback_dir(&env);
    let store = fallback_store(&env.session, &dir);
    let a = connect(&env.session);
    a.put(x, &data, b"").unwrap();
    let args = pass(&env, "fbhog", &dir);
    let mut reader = {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env("SHMWIRE_STORE_CHILD", "reader")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        for (k, v) in &args {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    };
    let rl = stdout_lines(&mut reader);
    expect_line(&rl, "reading");
    let mut hog = spawn_child(TEST, "hog", &args);
    let hl = stdout_lines(&mut hog);
    // The service drops the hog once its socket's buffer is full of
    // descriptors it does not read...
    let dropped = expect_line(&hl, "dropped after=");
    exits_cleanly(&mut hog, "hog");
    assert!(count(&dropped, "after=") > 0, "{dropped}");
    // ...while the reader's gets go on, every one right.
    let before = Instant::now();
    std::thread::sleep(Duration::from_millis(100));
    drop(reader.stdin.take());
    let rdone = expect_line(&rl, "done ");
    exits_cleanly(&mut reader, "reader");
    assert!(count(&rdone, "ok=") > 0, "{rdone}");
    assert!(before.elapsed() < GUARD);
    // The hog's references went with it: a delete is not deferred by
    // them, and the object's file is closed.
    a.delete(&[x]).unwrap();
    eventually("the hog's references released", || {
        a.create(x, 1, b"").map(drop).is_ok()
    });
    eventually("no fallback object left", || {
        store.snapshot().stats.fallback_objects == 0
    });
    assert_eq!(unnamed_files_held(std::process::id(), &dir), 0);
}

#[test]
fn a_service_out_of_descriptors_says_so() {
    const TEST: &str = "a_service_out_of_descriptors_says_so";
    if child_role().is_some() {
        let s = child_session();
        let _store = fallback_store(&s, Path::new(&child_env(FALLBACK)));
        println!("ready");
        std::thread::sleep(GUARD);
        return;
    }
    let env = Env::new("fbnofile");
    let dir = fallback_dir(&env);
    // The service runs with at most 64 descriptors (soft and hard: it
    // cannot raise them), each fallback object keeping one.
    let mut service = spawn_child_with_nofile(TEST, "service", &pass(&env, "fbnofile", &dir), 64);
    expect_line(&stdout_lines(&mut service), "ready");
    let c = connect(&env.session);
    let mut made = Vec::new();
    let err = loop {
        let id = shared_oid(24, made.len() as u32);
        // Pinned: an unheld fallback object would be evicted to make room.
        match c
            .put(id, &contents(24, 70_000), b"")
            .and_then(|()| c.pin(&[id]))
        {
            Ok(()) => made.push(id),
            Err(e) => break e,
        }
        assert!(made.len() < 64, "64 fallback objects in 64 descriptors");
    };
    match err {
        StoreError::OutOfDescriptors { id, open, limit } => {
            assert_eq!(id, shared_oid(24, made.len() as u32));
            assert_eq!(open, made.len() as u64);
            assert_eq!(limit, 64);
            assert!(open > 0);
        }
        other => panic!("expected OutOfDescriptors, got {other:?}"),
    }
    // Freeing objects closes their files: creates work again.
    c.unpin(&made[..2]).unwrap();
    c.delete(&made[..2]).unwrap();
    c.put(shared_oid(24, 1000), &contents(24, 70_000), b"")
        .unwrap();
    assert_eq!(
        c.get(&[made[2]], Duration::ZERO).unwrap()[0]
            .as_deref()
            .map(checksum),
        Some(checksum(&contents(24, 70_000)))
    );
    // Unpinned, they are evicted (least recently used first) to make room
    // for more: the fallback does not stay full of objects nobody holds.
    c.unpin(&made[2..]).unwrap();
    for i in 0..2 * made.len() as u32 {
        c.put(shared_oid(25, i), &contents(25, 70_000), b"")
            .unwrap();
    }
    assert!(service.try_wait().unwrap().is_none(), "the service died");
    kill9(&mut service);
}

/// Input (the attack on `35c208a`, medium): a store service in a process
/// with a file-size limit (`ulimit -f`), asked by a client for an object
/// whose fallback file would exceed it. Growing a file past the limit is
/// `SIGXFSZ`, whose default action killed the service's process (a node:
/// any client could stop it). Now the create fails with `FileSizeLimit`,
/// naming the limit (until 2026-12-08 `OutOfDisk`, and only the service's
/// log named the limit), and the service goes on: smaller
/// objects still go to fallback files. (The child keeps `SIGXFSZ`'s
/// default action, as a library user's process does.)
#[test]
fn an_object_beyond_the_services_file_size_limit_fails_and_kills_nothing() {
    const TEST: &str = "an_object_beyond_the_services_file_size_limit_fails_and_kills_nothing";
    const LIMIT: u64 = 1 << 20;
    if child_role().is_some() {
        let s = child_session();
        let _store = fallback_store(&s, Path::new(&child_env(FALLBACK)));
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let now = getrlimit(Resource::Fsize);
        setrlimit(
            Resource::Fsize,
            Rlimit {
                current: Some(LIMIT),
                maximum: now.maximum,
            },
        )
        .unwrap();
        println!("ready");
        std::thread::sleep(GUARD);
        return;
    }
    let env = Env::new("fbfsize");
    let dir = fallback_dir(&env);
    let mut service = spawn_child(TEST, "service", &pass(&env, "fbfsize", &dir));
    expect_line(&stdout_lines(&mut service), "ready");
    let c = connect(&env.session);
    let small = contents(26, 70_000);
    c.put(shared_oid(26, 0), &small, b"").unwrap();
    match c.put(shared_oid(26, 1), &contents(26, 2 * LIMIT as usize), b"") {
        Err(e @ StoreError::FileSizeLimit { id, size, limit }) => {
            assert_eq!((id, size, limit), (shared_oid(26, 1), 2 * LIMIT, LIMIT));
            assert!(e.to_string().contains("`ulimit -f`"), "{e}");
        }
        other => panic!("expected FileSizeLimit, got {other:?}"),
    }
    assert!(service.try_wait().unwrap().is_none(), "the service died");
    c.put(shared_oid(26, 2), &small, b"").unwrap();
    assert_eq!(
        c.get(&[shared_oid(26, 2)], Duration::ZERO).unwrap()[0]
            .as_deref()
            .map(checksum),
        Some(checksum(&small))
    );
    kill9(&mut service);
}

/// Input (the attack on `59a1fb2`, medium): a store service at its
/// descriptor limit whose spare descriptor another thread of its process
/// takes as soon as it is given up, so the listener's `accept` keeps
/// failing while clients wait in its queue. The listener returns that
/// failure once while it lasts; the health used to forget it 5 s later
/// and say OK while every new client still timed out in the queue. Now it
/// stays a problem, worded as clients left waiting (nobody is refused),
/// for as long as the accept fails. (The child prints its health every
/// 100 ms for 9 s; clients try for the first 3 s.)
#[test]
fn a_store_whose_accept_keeps_failing_says_so_while_it_lasts() {
    const TEST: &str = "a_store_whose_accept_keeps_failing_says_so_while_it_lasts";
    if child_role().is_some() {
        let s = child_session();
        let store = StoreService::start(&s, StoreConfig::new(ARENA)).unwrap();
        fd_limit::leave_free(1);
        let _last = std::fs::File::open("/dev/null").unwrap();
        // Takes every descriptor that comes free, the store's spare's
        // included, before the store can take it back.
        std::thread::spawn(|| {
            let mut taken = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                match std::fs::File::open("/dev/null") {
                    Ok(f) => taken.push(f),
                    Err(_) => std::thread::yield_now(),
                }
            }
        });
        let start = Instant::now();
        println!("ready");
        while start.elapsed() < Duration::from_secs(9) {
            println!(
                "health {} {:?}",
                start.elapsed().as_millis(),
                store.health().problem()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        return;
    }
    // The thief thread must take the spare's descriptor before the store's
    // `accept` does; on a slow host the store may win every time (its
    // `accept` then takes the caller and refusals follow, "their
    // connections cannot be set up": a health problem too, but not the
    // one under test). Such a round proves nothing: tried again, each
    // with a fresh service (once in a CI run on a slow AMD host).
    let mut rounds = 0;
    let (health, first) = loop {
        rounds += 1;
        let env = Env::new("acceptfail");
        let dir = fallback_dir(&env);
        let mut service = spawn_child(TEST, "service", &pass(&env, "acceptfail", &dir));
        let lines = stdout_lines(&mut service);
        expect_line(&lines, "ready");
        let opts = shmwire::store::ClientOptions {
            reply_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            let c = shmwire::store::StoreClient::connect_with(
                &env.session,
                shmwire::store::DEFAULT_STORE_NAME,
                opts.clone(),
            );
            assert!(c.is_err(), "a client got in at the limit");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut health: Vec<(u64, String)> = Vec::new();
        for l in lines.iter() {
            if let Some(rest) = l.strip_prefix("health ") {
                let (ms, what) = rest.split_once(' ').unwrap();
                health.push((ms.parse().unwrap(), what.to_owned()));
            }
        }
        assert!(wait_status(&mut service), "the service child failed");
        match health
            .iter()
            .position(|(_, h)| h.contains("it cannot accept new clients"))
        {
            Some(first) => break (health, first),
            None if rounds < 3 => {
                eprintln!("round {rounds}: the store's accept won the race: {health:?}");
            }
            None => panic!("never said it cannot accept in {rounds} rounds: {health:?}"),
        }
    };
    let since = health[first].0;
    let last = health.last().unwrap().0;
    assert!(
        last - since >= 5_500,
        "the failure began too late to outlast the old 5 s: {health:?}"
    );
    for (ms, h) in &health[first..] {
        assert!(
            h.starts_with("Some("),
            "healthy at {ms} ms while clients wait: {health:?}"
        );
    }
}

/// Input (the attack on `a6baac3`, medium–low): a client at its own
/// descriptor limit `get`s an object kept in a fallback file. Its file's
/// descriptor cannot be received (`MSG_CTRUNC`); before, that broke the
/// client's connection for good (every later call "unusable …
/// reconnect", also once descriptors were free — and the node's object
/// endpoint, whose own client that is, answered every pull *failed*).
/// Now that `get` fails alone, naming the limit; once a descriptor is
/// free, the same `get` reads the object whole, and a `put` works: the
/// connection stayed in step. (A client process under `ulimit -n 64`
/// that takes every descriptor left with files of its own.)
#[test]
fn a_client_at_its_own_descriptor_limit_fails_only_that_get() {
    const TEST: &str = "a_client_at_its_own_descriptor_limit_fails_only_that_get";
    let big = shared_oid(26, 0);
    if child_role().is_some() {
        let c = connect(&child_session());
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
            assert!(held.len() < 64, "64 files under a limit of 64");
        }
        let err = match c.get(&[big], GUARD) {
            Err(e) => shmwire::error_chain(&e),
            Ok(_) => panic!("a fallback object's descriptor received at the limit"),
        };
        assert!(err.contains("MSG_CTRUNC"), "{err}");
        assert!(!c.is_broken(), "the connection broke: {err}");
        held.truncate(held.len() - 4);
        let got = c.get(&[big], GUARD).unwrap();
        let got = got[0].as_deref().map(checksum);
        assert_eq!(got, Some(checksum(&contents(26, 100_000))));
        c.put(shared_oid(26, 1), b"small", b"").unwrap();
        println!("done");
        return;
    }
    let env = Env::new("fbclientnofile");
    let dir = fallback_dir(&env);
    let _store = fallback_store(&env.session, &dir);
    let c = connect(&env.session);
    c.put(big, &contents(26, 100_000), b"").unwrap();
    let client = spawn_child_with_nofile(TEST, "client", &pass(&env, "fbclientnofile", &dir), 64);
    let (ok, out) = wait_child(client);
    assert!(ok && out.contains("done"), "the client failed: {out}");
    assert!(c.contains(big).unwrap());
}

/// Input (the attack on `3430896`, medium): a `get` of ≈ 1,200 or more
/// objects in fallback files dropped the client's store connection
/// ("connection closed", then "out of step"): their descriptors went with
/// the one answer, four a message, never waiting, and filled the
/// connection's socket; and the client held them all before mapping any
/// (under the usual 1,024 open files, 1,100 failed). An answer now names at
/// most 16 fallback objects and the client asks again for the rest: a
/// `get` of 1,300 returns each whole, and the connection serves on. (64 at
/// first: a client under `ulimit -n 64` failed a `get` of 68, the attack
/// on `f5e384c`; a client with 48 descriptors gets all of them here.)
#[test]
fn a_get_of_more_fallback_objects_than_a_socket_holds_keeps_the_connection() {
    const TEST: &str = "a_get_of_more_fallback_objects_than_a_socket_holds_keeps_the_connection";
    if let Some(role) = child_role() {
        let s = child_session();
        if role == "getter" {
            let c = connect(&s);
            let ids: Vec<_> = (0..1_300).map(|i| shared_oid(22, i)).collect();
            let got = c.get(&ids, Duration::ZERO).unwrap();
            assert!(got
                .iter()
                .all(|b| b.as_ref().is_some_and(|b| b.len() == 70_000)));
            println!("got all");
            return;
        }
        let _store = fallback_store(&s, Path::new(&child_env(FALLBACK)));
        println!("ready");
        std::thread::sleep(GUARD);
        return;
    }
    let env = Env::new("manyfb");
    let dir = fallback_dir(&env);
    let mut service = spawn_child(TEST, "service", &pass(&env, "manyfb", &dir));
    let lines = stdout_lines(&mut service);
    expect_line(&lines, "ready");
    let c = connect(&env.session);
    const N: u32 = 1_300;
    let ids: Vec<_> = (0..N).map(|i| shared_oid(22, i)).collect();
    for (i, id) in ids.iter().enumerate() {
        c.put(*id, &contents(i as u64, 70_000), b"fb").unwrap();
    }
    let got = c.get(&ids, Duration::ZERO).unwrap();
    for (i, b) in got.iter().enumerate() {
        let b = b.as_ref().expect("sealed");
        assert_eq!(
            checksum(b),
            checksum(&contents(i as u64, 70_000)),
            "object {i}"
        );
        assert_eq!(b.metadata(), b"fb");
    }
    drop(got);
    assert!(!c.is_broken());
    // A client with 48 descriptors (soft and hard) gets them all too.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 48 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMWIRE_STORE_CHILD", "getter")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    for (k, v) in pass(&env, "manyfb", &dir) {
        cmd.env(k, v);
    }
    let (ok, out) = wait_child(cmd.spawn().unwrap());
    assert!(
        ok && out.contains("got all"),
        "the getter under ulimit -n 48: {out}"
    );
    c.delete(&ids).unwrap();
    assert!(!c.contains(ids[0]).unwrap());
    kill9(&mut service);
}
