//! The store across real processes: the test binary re-runs itself as a
//! child (`SHMWIRE_STORE_CHILD=<role>`), children and parent talk to one
//! store service, and children are killed with SIGKILL where the test is
//! about death. Every wait is bounded; each test has its own temporary
//! session root.

mod job_control;
mod store_common;

use std::time::{Duration, Instant};

use shmwire::store::{StoreClient, StoreError, StoreService, DEFAULT_STORE_NAME};
use store_common::*;

fn pass(env: &Env, session: &str) -> Vec<(&'static str, String)> {
    vec![
        (ROOT, env.root.path().display().to_string()),
        (SESSION, session.to_owned()),
    ]
}

/// Child role "service": a store service of the child's session with
/// `config`; says "ready" and serves until killed (at most [`GUARD`]).
fn serve_store(config: shmwire::store::StoreConfig) {
    let s = child_session();
    let _store = StoreService::start(&s, config).unwrap();
    println!("ready");
    std::thread::sleep(GUARD);
}

/// Starts [`serve_store`] in a child running `test`, in `env`'s session
/// `session`, once it is ready.
fn spawn_store(test: &str, env: &Env, session: &str) -> std::process::Child {
    let mut service = spawn_child(test, "service", &pass(env, session));
    expect_line(&stdout_lines(&mut service), "ready");
    service
}

/// [`pass`], and a file (not made yet) whose creation tells a child to go
/// on ([`wait_for_go`]).
fn pass_with_go(env: &Env, session: &str) -> (std::path::PathBuf, Vec<(&'static str, String)>) {
    let go = env.root.path().join("go");
    let mut vars = pass(env, session);
    vars.push((GO, go.display().to_string()));
    (go, vars)
}

/// In a child: the file of [`pass_with_go`].
fn go_file() -> std::path::PathBuf {
    std::path::PathBuf::from(child_env(GO))
}

/// In a child: waits (at most [`GUARD`]) until the parent makes the file
/// of [`pass_with_go`]; `what` names the wait if it never comes.
fn wait_for_go(what: &str) {
    let (go, deadline) = (go_file(), Instant::now() + GUARD);
    while !go.exists() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The variable that passes [`pass_with_go`]'s file.
const GO: &str = "SHMWIRE_TEST_GO";

#[test]
fn objects_cross_processes_with_their_contents() {
    const TEST: &str = "objects_cross_processes_with_their_contents";
    if let Some(role) = child_role() {
        let s = child_session();
        let c = connect(&s);
        assert_eq!(role, "writer-reader");
        // Objects sealed by the parent, read here.
        let ids: Vec<_> = (0..8).map(|i| shared_oid(1, i)).collect();
        let got = c.get(&ids, GUARD).unwrap();
        for (i, g) in got.iter().enumerate() {
            let g = g.as_ref().expect("sealed by the parent");
            assert_eq!(&g[..], &contents(i as u64, 1000 + i * 777)[..]);
            assert_eq!(g.metadata(), format!("p{i}").as_bytes());
        }
        // Objects this child seals, slowly, while the parent waits for them.
        for i in 0..8u32 {
            std::thread::sleep(Duration::from_millis(5));
            let data = contents(100 + u64::from(i), 5000 + i as usize);
            let mut w = c.create(shared_oid(2, i), data.len() as u64, b"c").unwrap();
            w.copy_from_slice(&data);
            w.seal().unwrap();
        }
        println!("done");
        return;
    }
    let env = Env::new("xproc");
    let _store = env.store(4 << 20);
    let c = connect(&env.session);
    for i in 0..8u32 {
        c.put(
            shared_oid(1, i),
            &contents(u64::from(i), 1000 + i as usize * 777),
            format!("p{i}").as_bytes(),
        )
        .unwrap();
    }
    let child = spawn_child(TEST, "writer-reader", &pass(&env, "xproc"));
    // Waits for objects another process seals later.
    let ids: Vec<_> = (0..8).map(|i| shared_oid(2, i)).collect();
    let got = c.get(&ids, GUARD).unwrap();
    for (i, g) in got.iter().enumerate() {
        let g = g.as_ref().expect("sealed by the child");
        assert_eq!(checksum(g), checksum(&contents(100 + i as u64, 5000 + i)));
        assert_eq!(g.metadata(), b"c");
    }
    let (ok, out) = wait_child(child);
    assert!(ok && out.contains("done"), "child failed: {out}");
}

#[test]
fn a_killed_client_releases_its_references_and_aborts_its_objects() {
    const TEST: &str = "a_killed_client_releases_its_references_and_aborts_its_objects";
    if child_role().is_some() {
        let s = child_session();
        let c = connect(&s);
        let held = c.get(&[shared_oid(3, 0)], GUARD).unwrap();
        assert!(held[0].is_some());
        c.pin(&[shared_oid(3, 1)]).unwrap();
        let _w = c.create(shared_oid(3, 2), 100, b"").unwrap();
        println!("ready");
        std::thread::sleep(GUARD);
        unreachable!("killed by the parent");
    }
    let env = Env::new("killclient");
    const SLOT: u64 = 64 * 1024;
    let _store = env.store(4 * SLOT);
    let c = connect(&env.session);
    c.put(shared_oid(3, 0), &[1; SLOT as usize], b"").unwrap();
    c.put(shared_oid(3, 1), &[2; SLOT as usize], b"").unwrap();
    let mut child = spawn_child(TEST, "victim", &pass(&env, "killclient"));
    let lines = stdout_lines(&mut child);
    expect_line(&lines, "ready");
    // While the child lives: its object is unsealed (exists), its held and
    // pinned objects survive an evict-everything, a delete is deferred.
    assert!(matches!(
        c.create(shared_oid(3, 2), 1, b""),
        Err(StoreError::ObjectExists { .. })
    ));
    assert_eq!(c.evict(u64::MAX).unwrap(), 0);
    c.delete(&[shared_oid(3, 0)]).unwrap();
    assert!(matches!(
        c.create(shared_oid(3, 0), 1, b""),
        Err(StoreError::ObjectInUse { .. })
    ));
    kill9(&mut child);
    // The service notices the death: the reference and pin are released,
    // the unsealed object aborted.
    eventually("the dead client's objects released", || {
        c.create(shared_oid(3, 2), 1, b"").map(drop).is_ok()
    });
    eventually("the deferred delete done", || {
        c.create(shared_oid(3, 0), 1, b"").map(drop).is_ok()
    });
    assert_eq!(c.evict(u64::MAX).unwrap(), SLOT);
    assert!(!c.contains(shared_oid(3, 1)).unwrap());
}

#[test]
fn a_killed_service_fails_blocked_and_later_calls_and_restarts_clean() {
    const TEST: &str = "a_killed_service_fails_blocked_and_later_calls_and_restarts_clean";
    if child_role().is_some() {
        let s = child_session();
        let _store = StoreService::start(&s, shmwire::store::StoreConfig::new(1 << 20)).unwrap();
        println!("ready");
        std::thread::sleep(GUARD);
        unreachable!("killed by the parent");
    }
    let env = Env::new("killservice");
    let mut child = spawn_child(TEST, "service", &pass(&env, "killservice"));
    let lines = stdout_lines(&mut child);
    expect_line(&lines, "ready");
    let c = connect(&env.session);
    c.put(shared_oid(4, 0), b"before", b"").unwrap();
    let held = c.get(&[shared_oid(4, 0)], GUARD).unwrap();
    // A get blocked on a missing object when the service dies.
    let blocked = {
        let c = c.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = c.get(&[shared_oid(4, 1)], GUARD);
            (r.map(|v| v.len()), t.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let killed = Instant::now();
    kill9(&mut child);
    let (r, _) = blocked.join().unwrap();
    assert!(
        matches!(
            r,
            Err(StoreError::Recv(_) | StoreError::Send(_) | StoreError::Connect(_))
        ),
        "blocked get: {r:?}"
    );
    assert!(killed.elapsed() < Duration::from_secs(5));
    // Later calls fail too, promptly.
    let t = Instant::now();
    assert!(c.contains(shared_oid(4, 0)).is_err());
    assert!(c.put(shared_oid(4, 2), b"x", b"").is_err());
    assert!(t.elapsed() < Duration::from_secs(5));
    // Held data stays readable.
    assert_eq!(held[0].as_deref().unwrap(), b"before");
    drop(held);
    // A new service in the same session starts clean.
    let _store = env.store(1 << 20);
    let c2 = connect(&env.session);
    assert!(!c2.contains(shared_oid(4, 0)).unwrap());
    c2.put(shared_oid(4, 0), b"after", b"").unwrap();
    // The store's segments are memfds: none has a name in the session,
    // and only the running service's arena is held by this process.
    let named = env
        .session
        .segment_names()
        .unwrap()
        .into_iter()
        .filter(|n| {
            ["store-", "sidx-", "sref-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .count();
    assert_eq!(named, 0);
}

/// Seconds each stress child runs (`SHMWIRE_STORE_STRESS_SECS`, default 10:
/// the issue's run; the four children run at the same time).
fn stress_secs() -> u64 {
    std::env::var("SHMWIRE_STORE_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

const WORKERS: u32 = 4;

/// The id of object `i` of stress worker `w`.
fn stress_id(w: u32, i: u32) -> shmwire::ids::ObjectId {
    let mut b = [0x5a; 28];
    b[..4].copy_from_slice(&w.to_le_bytes());
    b[4..8].copy_from_slice(&i.to_le_bytes());
    shmwire::ids::ObjectId::from_array(b)
}

fn stress_len(w: u32, i: u32) -> usize {
    // 1 B … ~48 KiB, mixed.
    let h = checksum(&[w as u8, i as u8, (i >> 8) as u8, (i >> 16) as u8]);
    match h % 8 {
        0 => (h >> 8) as usize % 48_000,
        1..=3 => (h >> 8) as usize % 4096,
        _ => 1 + (h >> 8) as usize % 256,
    }
}

fn stress_child() {
    let s = child_session();
    let me: u32 = child_env("SHMWIRE_STORE_WORKER").parse().unwrap();
    let c = connect(&s);
    let until = Instant::now() + Duration::from_secs(stress_secs());
    let (mut puts, mut verified, mut missing) = (0u64, 0u64, 0u64);
    let mut i = 0u32;
    // Buffers held across an iteration, so deletes and evictions meet held
    // objects.
    let mut kept = Vec::new();
    // Our last (up to) ten objects: pinned, so none may be lost.
    let mut mine: std::collections::VecDeque<(u32, u64)> = Default::default();
    let mut lost_checks = 0u64;
    while Instant::now() < until {
        // Create and seal one object; its checksum rides in the metadata.
        let data = contents(u64::from(me) << 32 | u64::from(i), stress_len(me, i));
        match c.put(stress_id(me, i), &data, &checksum(&data).to_le_bytes()) {
            Ok(()) => {
                puts += 1;
                c.pin(&[stress_id(me, i)]).unwrap();
                mine.push_back((i, checksum(&data)));
            }
            Err(StoreError::StoreFull { .. }) => {}
            Err(e) => panic!("put {me}/{i}: {e}"),
        }
        // Read a few objects of every worker (they may be gone: deleted or
        // evicted), checking every byte against the checksum.
        let ids: Vec<_> = (0..WORKERS)
            .flat_map(|w| (0..3).map(move |k| stress_id(w, i.saturating_sub(k * 7))))
            .collect();
        let got = c.get(&ids, Duration::ZERO).unwrap();
        for (id, g) in ids.iter().zip(&got) {
            match g {
                Some(buf) => {
                    let sum = u64::from_le_bytes(buf.metadata().try_into().unwrap());
                    assert_eq!(checksum(buf), sum, "object {id} corrupted");
                    verified += 1;
                }
                None => missing += 1,
            }
        }
        // Hold this round's buffers through the next round, half the time.
        kept.clear();
        if i % 2 == 1 {
            kept = got;
        }
        // Every pinned object of ours is still there, intact.
        let ids: Vec<_> = mine.iter().map(|(k, _)| stress_id(me, *k)).collect();
        let got = c.get(&ids, Duration::ZERO).unwrap();
        for ((k, sum), g) in mine.iter().zip(&got) {
            let g = g
                .as_ref()
                .unwrap_or_else(|| panic!("pinned object {me}/{k} lost"));
            assert_eq!(checksum(g), *sum, "pinned object {me}/{k} corrupted");
            lost_checks += 1;
        }
        drop(got);
        // Unpin and delete our oldest.
        if mine.len() >= 10 {
            let (k, _) = mine.pop_front().unwrap();
            c.unpin(&[stress_id(me, k)]).unwrap();
            c.delete(&[stress_id(me, k)]).unwrap();
        }
        i += 1;
    }
    println!("stats {me} puts={puts} verified={verified} missing={missing} kept={lost_checks}");
}

#[test]
fn stress_four_processes_create_read_delete_without_corruption() {
    const TEST: &str = "stress_four_processes_create_read_delete_without_corruption";
    if child_role().is_some() {
        stress_child();
        return;
    }
    let env = Env::new("stress");
    // Small enough that eviction happens all the time.
    let _store = env.store(1 << 20);
    let mut children: Vec<_> = (0..WORKERS)
        .map(|w| {
            let mut e = pass(&env, "stress");
            e.push(("SHMWIRE_STORE_WORKER", w.to_string()));
            spawn_child(TEST, "stress", &e)
        })
        .collect();
    let mut outs = Vec::new();
    for c in children.drain(..) {
        let (ok, out) = wait_child(c);
        assert!(ok, "stress child failed: {out}");
        outs.push(out);
    }
    let mut total_verified = 0u64;
    for out in &outs {
        let line = out
            .lines()
            .find_map(|l| l.find("stats ").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no stats line in {out:?}"));
        eprintln!("{}", line.trim());
        let field = |k: &str| -> u64 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert!(field("puts=") > 0);
        total_verified += field("verified=");
    }
    assert!(total_verified > 0);
    // Everything the children held was released when they exited.
    let c = connect(&env.session);
    c.evict(u64::MAX).unwrap();
    c.put(stress_id(99, 0), &vec![7; 900 * 1024], b"").unwrap();
}

#[test]
fn plasma_behaviours_against_a_service_in_another_process() {
    const TEST: &str = "plasma_behaviours_against_a_service_in_another_process";
    const SLOT: u64 = 64 * 1024;
    if let Some(role) = child_role() {
        let s = child_session();
        if role == "service" {
            let _store =
                StoreService::start(&s, shmwire::store::StoreConfig::new(10 * SLOT)).unwrap();
            println!("ready");
            // Serves until the parent kills it (or the hang guard ends it).
            std::thread::sleep(GUARD);
            return;
        }
        // role "holder": holds object 1 until told to stop (its stdin
        // closes), then exits normally.
        let c = connect(&s);
        let held = c.get(&[shared_oid(6, 1)], GUARD).unwrap();
        assert!(held[0].is_some());
        println!("holding");
        std::thread::sleep(Duration::from_millis(400));
        drop(held);
        println!("released");
        return;
    }
    let env = Env::new("plasma");
    let mut service = spawn_child(TEST, "service", &pass(&env, "plasma"));
    let lines = stdout_lines(&mut service);
    expect_line(&lines, "ready");
    let c = connect(&env.session);
    let mut sub = c.subscribe().unwrap();
    for i in 0..10 {
        c.put(
            shared_oid(6, i),
            &contents(u64::from(i), SLOT as usize),
            b"",
        )
        .unwrap();
    }
    // Another process holds object 1; we refresh object 0.
    let mut holder = spawn_child(TEST, "holder", &pass(&env, "plasma"));
    let hl = stdout_lines(&mut holder);
    expect_line(&hl, "holding");
    c.refresh(&[shared_oid(6, 0)]).unwrap();
    // One more object: 20 % = two objects go, the oldest unprotected ones.
    c.put(shared_oid(6, 100), &[9; SLOT as usize], b"").unwrap();
    for (i, present) in [(0, true), (1, true), (2, false), (3, false), (4, true)] {
        assert_eq!(c.contains(shared_oid(6, i)).unwrap(), present, "object {i}");
    }
    // Delete of the held object is deferred until the holder lets go.
    c.delete(&[shared_oid(6, 1)]).unwrap();
    assert!(matches!(
        c.create(shared_oid(6, 1), 1, b""),
        Err(StoreError::ObjectInUse { .. })
    ));
    expect_line(&hl, "released");
    assert!(wait_status(&mut holder));
    eventually("the deferred delete", || {
        c.create(shared_oid(6, 1), 1, b"").map(drop).is_ok()
    });
    // The subscriber saw the seals, then the two evictions and the delete.
    let mut sealed = 0;
    let mut deleted = Vec::new();
    while deleted.len() < 3 {
        match sub.recv_timeout(GUARD).unwrap().expect("a notification") {
            shmwire::store::Notification::Sealed { .. } => sealed += 1,
            shmwire::store::Notification::Deleted { id } => deleted.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sealed, 11);
    assert_eq!(
        deleted,
        [shared_oid(6, 2), shared_oid(6, 3), shared_oid(6, 1)]
    );
    kill9(&mut service);
}

#[test]
fn a_stopped_service_times_out_and_the_client_refuses_to_go_out_of_step() {
    const TEST: &str = "a_stopped_service_times_out_and_the_client_refuses_to_go_out_of_step";
    if child_role().is_some() {
        serve_store(shmwire::store::StoreConfig::new(1 << 20));
        return;
    }
    let env = Env::new("stopped");
    let mut service = spawn_store(TEST, &env, "stopped");
    let opts = shmwire::store::ClientOptions {
        reply_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let c = StoreClient::connect_with(&env.session, DEFAULT_STORE_NAME, opts.clone()).unwrap();
    let long = StoreClient::connect_with(&env.session, DEFAULT_STORE_NAME, opts).unwrap();
    c.put(shared_oid(7, 0), b"x", b"").unwrap();
    let pid = service.id();
    // A live service that does not answer: bounded by the reply timeout.
    job_control::stop_process(pid);
    // A `get` longer than a request carries (several parts), none of it in
    // the shared index: it fails within its timeout plus its reply
    // timeout counted from the call's start, and says that bound (it said
    // what was left for the part that timed out: "within 0ns").
    let many: Vec<_> = (0..20_000).map(|i| shared_oid(8, i)).collect();
    let t = Instant::now();
    let r = long.get_within(
        &many,
        Duration::from_millis(100),
        Duration::from_millis(200),
    );
    let took = t.elapsed();
    match &r {
        Err(e @ StoreError::TimedOut(d)) if *d == Duration::from_millis(300) => {
            assert!(e.to_string().contains("within 300ms"), "{e}");
        }
        other => {
            kill9(&mut service);
            panic!("expected TimedOut(300ms), got {other:?}");
        }
    }
    assert!(took < Duration::from_millis(800), "took {took:?}");
    // (A sealed object would still be answered from the shared index while
    // the service's heartbeat is fresh; a missing one needs the service.)
    let t = Instant::now();
    let r = c.contains(shared_oid(7, 1));
    if !matches!(r, Err(StoreError::TimedOut(_))) {
        kill9(&mut service);
        panic!("expected TimedOut, got {r:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    job_control::continue_process(pid);
    // The late reply must not answer the next request, and the refusal
    // says what broke the connection.
    match c.contains(shared_oid(7, 0)) {
        Err(e @ StoreError::ConnectionBroken { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(
                    "earlier call failed (the store service did not answer within 200ms)"
                ),
                "{text}"
            );
        }
        other => panic!("expected ConnectionBroken, got {other:?}"),
    }
    // A new connection works.
    let c2 = connect(&env.session);
    assert!(c2.contains(shared_oid(7, 0)).unwrap());
    kill9(&mut service);
}

#[test]
fn truncating_every_session_file_and_memfd_kills_no_process() {
    const TEST: &str = "truncating_every_session_file_and_memfd_kills_no_process";
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "service" => serve_store(shmwire::store::StoreConfig::new(1 << 20)),
            "client" => {
                // Writes, reads back and deletes objects for 3 s (small ones
                // inline, large ones created in place through the arena),
                // while the parent truncates everything it can find.
                let c = connect(&s);
                println!("connected");
                let (mut ok, mut err) = (0u64, 0u64);
                let end = Instant::now() + Duration::from_secs(3);
                let mut i = 0u32;
                while Instant::now() < end {
                    let data = contents(u64::from(i), if i % 2 == 0 { 100 } else { 40_000 });
                    let id = oid(12, i);
                    let r = c.put(id, &data, b"m").and_then(|()| {
                        let got = c.get(&[id], Duration::from_secs(1))?;
                        let buf = got[0].as_ref().ok_or(StoreError::BadReply("missing"))?;
                        assert_eq!(&buf[..], &data[..], "object {i} read back wrong");
                        drop(got);
                        c.delete(&[id])
                    });
                    match r {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            // A typed error, never a signal.
                            if err == 0 {
                                println!("first error: {e}");
                            }
                            err += 1;
                        }
                    }
                    i += 1;
                }
                println!("done ok={ok} err={err}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new("truncate");
    let mut service = spawn_child(TEST, "service", &pass(&env, "truncate"));
    let sl = stdout_lines(&mut service);
    expect_line(&sl, "ready");
    let mut client = spawn_child(TEST, "client", &pass(&env, "truncate"));
    let cl = stdout_lines(&mut client);
    expect_line(&cl, "connected");
    // A hostile process of the same user (this one): for a second, truncate
    // every file of the session root (the session directory, its segments,
    // the token, directory entries, locks) and every memfd of both.
    let pids = [service.id(), client.id()];
    let (mut files, mut refused, mut truncated) = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let (f, r, t) = truncate_everything(env.root.path(), &pids);
        files += f;
        refused += r;
        truncated += t;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(files > 0, "the session has files to truncate");
    assert!(refused >= 3, "the store's memfds were found ({refused})");
    // Every memfd of the store and of the rings is sealed: none shrank.
    assert_eq!(truncated, 0, "a memfd could be truncated");
    let done = expect_line(&cl, "done ");
    let status = {
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(s) = client.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "client hangs");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    assert_eq!(status.signal(), None, "client died of a signal: {status:?}");
    assert!(status.success(), "client failed: {status:?} ({done})");
    let ok: u64 = done
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ok="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(ok > 0, "operations went on: {done}");
    // The service survived it all.
    assert!(
        service.try_wait().unwrap().is_none(),
        "the store service died"
    );
    kill9(&mut service);
}

/// Objects the colliding client fills the store with.
const COLLIDERS: u32 = 40_000;
/// Ids per `refresh` request of the colliding client (its ids again and
/// again: each is one lookup in the service's object table).
const COLLIDING_LOOKUPS: usize = 4_000;

/// A client names its objects, so the ids in the service's object table
/// are a peer's choice. One that picks ids built to collide under an
/// unkeyed pre-hash (`fold_colliding_ids`) must not turn the table's
/// lookups into scans: each of its requests would then hold the service
/// (and every other client) for as long as it likes. The colliding client
/// fills the store with 40,000 such objects, then asks for them 4,000 at a
/// time in a loop; another client's calls meanwhile take what one of
/// those requests takes when lookups are hash lookups (about a
/// millisecond here), not the seconds that scans took (each of the
/// colliding client's requests then compared 4,000 × 40,000 ids).
#[test]
fn ids_built_to_collide_do_not_stall_the_service() {
    const TEST: &str = "ids_built_to_collide_do_not_stall_the_service";
    if child_role().is_some() {
        let s = child_session();
        let c = connect(&s);
        let ids = fold_colliding_ids(COLLIDERS);
        let t = Instant::now();
        for id in &ids {
            c.put(*id, b"x", b"").unwrap();
        }
        println!("filled in {:?}", t.elapsed());
        let lookups: Vec<_> = ids
            .iter()
            .copied()
            .cycle()
            .take(COLLIDING_LOOKUPS)
            .collect();
        let end = Instant::now() + GUARD;
        let mut n = 0u64;
        while Instant::now() < end {
            let t = Instant::now();
            c.refresh(&lookups).unwrap();
            n += 1;
            if n == 1 {
                println!("first request took {:?}", t.elapsed());
            }
        }
        return;
    }
    let env = Env::new("collide");
    let _store = env.store(16 << 20);
    let c = connect(&env.session);
    let mut child = spawn_child(TEST, "collider", &pass(&env, "collide"));
    let lines = stdout_lines(&mut child);
    let filled = expect_line(&lines, "filled");
    let first = expect_line(&lines, "first request");
    let mut worst = Duration::ZERO;
    for i in 0..50u32 {
        let t = Instant::now();
        let id = oid(9, i);
        c.put(id, &contents(u64::from(i), 100), b"").unwrap();
        let got = c.get(&[id], GUARD).unwrap();
        assert_eq!(got[0].as_deref().unwrap(), &contents(u64::from(i), 100)[..]);
        drop(got);
        c.delete(&[id]).unwrap();
        worst = worst.max(t.elapsed());
    }
    kill9(&mut child);
    println!("{filled}; {first}; another client's slowest put+get+delete: {worst:?}");
    assert!(
        worst < Duration::from_millis(250),
        "another client waited {worst:?} for a put, get and delete \
         while a client looked up ids built to collide ({filled}; {first})"
    );
}

/// Kills and reaps a child however the test ends (a failed assertion
/// included).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process of the same user floods the store's Unix socket with silent
/// connections, keeping 300 open and replacing the oldest as fast as it
/// can: the listener holds at most `max_pending_hellos` (64) pending
/// hellos and drops the oldest that has sent nothing for each newcomer. A
/// client whose process was descheduled between its `connect` and its
/// hello's `write` is such a one; it is now tried again within the
/// handshake timeout instead of failing "the peer hung up during the
/// hello" (the attack on `e65c959` saw 7–22 % of `StoreClient::connect`s
/// fail so). Every connect here gets in and its objects round-trip.
#[test]
fn a_flood_of_silent_connections_fails_no_store_connect() {
    const TEST: &str = "a_flood_of_silent_connections_fails_no_store_connect";
    const CLIENTS: u32 = 40;
    const HELD: usize = 300;
    if let Some(role) = child_role() {
        let s = child_session();
        if role == "service" {
            let _store =
                StoreService::start(&s, shmwire::store::StoreConfig::new(1 << 20)).unwrap();
            println!("ready");
            // Serves until the parent kills it (or the hang guard ends it).
            std::thread::sleep(GUARD);
            return;
        }
        // role "flood": until the parent kills it (or the hang guard).
        let dir = shmwire::node::Directory::for_session(&s).unwrap();
        let socket = dir
            .lookup_name(DEFAULT_STORE_NAME)
            .unwrap()
            .unix_socket
            .unwrap();
        let mut held = std::collections::VecDeque::new();
        let (t, mut opened) = (Instant::now(), 0u64);
        while t.elapsed() < GUARD {
            if held.len() >= HELD {
                held.pop_front();
            }
            match std::os::unix::net::UnixStream::connect(&socket) {
                Ok(c) => {
                    held.push_back(c);
                    opened += 1;
                    if opened == HELD as u64 {
                        println!("flooding");
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        return;
    }
    let env = Env::new("flood");
    let mut service = KillOnDrop(spawn_child(TEST, "service", &pass(&env, "flood")));
    expect_line(&stdout_lines(&mut service.0), "ready");
    let mut flood = KillOnDrop(spawn_child(TEST, "flood", &pass(&env, "flood")));
    expect_line(&stdout_lines(&mut flood.0), "flooding");
    let (mut failed, mut slowest) = (Vec::new(), Duration::ZERO);
    for i in 0..CLIENTS {
        let t = Instant::now();
        match StoreClient::connect(&env.session, DEFAULT_STORE_NAME) {
            Ok(c) => {
                slowest = slowest.max(t.elapsed());
                let id = oid(8, i);
                c.put(id, &contents(u64::from(i), 1000), b"").unwrap();
                let got = c.get(&[id], GUARD).unwrap();
                assert_eq!(got[0].as_deref().unwrap(), contents(u64::from(i), 1000));
            }
            Err(e) => failed.push(format!("client {i} after {:?}: {e}", t.elapsed())),
        }
    }
    drop(flood);
    eprintln!("slowest connect under the flood: {slowest:?}");
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} store connects failed under the flood: {failed:#?}",
        failed.len()
    );
}

/// Input (the attack on `7c472c6`, medium): a `get` of about 3,500 or more
/// ids of a service in another process, or of a few objects with large
/// metadata, has an answer longer than one frame of the client's
/// connection: the service could not send it and dropped the client
/// ("receiving from the store: connection closed", and every later call
/// "out of step"); a `delete` of 10,000 ids was refused as a frame too
/// large. Now a request carries at most what a frame holds and the service
/// answers the first part of a long list that fits, the client asking
/// again for the rest: every call below succeeds, each object comes back
/// whole, and the connection serves on. One object whose reply alone is
/// too long for a small-ring client is `ReplyTooLarge`, nothing else fails.
#[test]
fn gets_and_deletes_longer_than_a_frame_keep_the_connection() {
    const TEST: &str = "gets_and_deletes_longer_than_a_frame_keep_the_connection";
    if child_role().is_some() {
        let s = child_session();
        let _store = StoreService::start(&s, shmwire::store::StoreConfig::new(16 << 20)).unwrap();
        println!("ready");
        std::thread::sleep(GUARD);
        return;
    }
    let env = Env::new("longget");
    let mut service = spawn_child(TEST, "service", &pass(&env, "longget"));
    let lines = stdout_lines(&mut service);
    expect_line(&lines, "ready");
    let c = connect(&env.session);
    // 12,000 ids, none there: more than a request or an answer carries.
    let missing: Vec<_> = (0..12_000).map(|i| shared_oid(9, i)).collect();
    for n in [4_000, 12_000] {
        let got = c.get(&missing[..n], Duration::ZERO).unwrap();
        assert_eq!(got.len(), n);
        assert!(got.iter().all(Option::is_none));
    }
    // Objects with 60 KiB of metadata each: eight answers are 480 KiB.
    let big: Vec<_> = (0..8).map(|i| shared_oid(10, i)).collect();
    for (i, id) in big.iter().enumerate() {
        c.put(*id, &contents(i as u64, 1000), &vec![i as u8; 60 << 10])
            .unwrap();
    }
    // Asked of the service (metadata this long is not in the shared
    // index), with 3,000 missing ids before them.
    let mut mixed: Vec<_> = missing[..3_000].to_vec();
    mixed.extend(&big);
    let got = c.get(&mixed, Duration::ZERO).unwrap();
    assert!(got[..3_000].iter().all(Option::is_none));
    for (i, b) in got[3_000..].iter().enumerate() {
        let b = b.as_ref().expect("sealed");
        assert_eq!(&b[..], &contents(i as u64, 1000)[..]);
        assert_eq!(b.metadata(), &vec![i as u8; 60 << 10][..]);
    }
    drop(got);
    // 1,000 objects with 16 KiB of metadata each: about 15 an answer, so
    // 60-odd answers; each object comes back whole. (Before the fix of
    // the attack on `3430896` every answer took references on, and copied
    // the metadata of, all the rest: 1,000 objects with 64 KiB took 7 s.)
    let many: Vec<_> = (0..1_000).map(|i| shared_oid(12, i)).collect();
    for (i, id) in many.iter().enumerate() {
        c.put(*id, &contents(i as u64, 64), &vec![i as u8; 16 << 10])
            .unwrap();
    }
    let t = Instant::now();
    let got = c.get(&many, Duration::ZERO).unwrap();
    eprintln!(
        "a get of 1,000 objects with 16 KiB of metadata: {:?}",
        t.elapsed()
    );
    for (i, b) in got.iter().enumerate() {
        let b = b.as_ref().expect("sealed");
        assert_eq!(&b[..], &contents(i as u64, 64)[..]);
        assert_eq!(b.metadata(), &vec![i as u8; 16 << 10][..]);
    }
    drop(got);
    c.delete(&many).unwrap();
    // Deletes, pins and refreshes of long lists.
    c.refresh(&missing).unwrap();
    c.delete(&missing).unwrap();
    assert!(matches!(
        c.pin(&missing),
        Err(StoreError::ObjectNotFound { .. })
    ));
    // One object too long for a small-ring client's frame alone: refused,
    // the connection serves on.
    let small = shmwire::store::ClientOptions {
        shm: shmwire::transport::ShmOptions {
            ring_capacity: 64 << 10,
            ..shmwire::store::ClientOptions::default().shm
        },
        ..Default::default()
    };
    let c3 = StoreClient::connect_with(&env.session, DEFAULT_STORE_NAME, small).unwrap();
    c3.put(shared_oid(11, 0), b"x", b"m").unwrap();
    // The most metadata an object may have: its answer alone is longer
    // than a 64 KiB ring's frame.
    let fat = shared_oid(11, 1);
    c.put(fat, b"y", &vec![1; shmwire::store::MAX_METADATA_LEN])
        .unwrap();
    // One byte more is refused as what it is, whatever its length (2 MB
    // failed as a transport error, its request beyond the frame: the
    // attack on `b5ede7b`), by `put` and `create`, and the client serves on.
    let max = shmwire::store::MAX_METADATA_LEN as u64;
    for len in [max + 1, 200_000, 2_000_000] {
        let meta = vec![2; len as usize];
        let id = shared_oid(11, 2);
        for r in [
            c.put(id, b"z", &meta),
            c.create(id, 1 << 20, &meta).map(drop),
        ] {
            assert!(
                matches!(r, Err(StoreError::MetadataTooLarge { id: i, len: l, max: m })
                    if i == id && l == len && m == max),
                "{len}: {r:?}"
            );
        }
    }
    assert!(!c.contains(shared_oid(11, 2)).unwrap());
    let r = c3.get(&[fat], Duration::ZERO);
    assert!(
        matches!(r, Err(StoreError::ReplyTooLarge { id, .. }) if id == fat),
        "{r:?}"
    );
    let got = c3.get(&[shared_oid(11, 0)], Duration::ZERO).unwrap();
    assert_eq!(&got[0].as_ref().unwrap()[..], b"x");
    drop(got);
    // A subscription on such rings could not take the notification of
    // `fat` (or of any object with as much metadata): refused when it
    // subscribes, saying why, not cut off at the first large note; the
    // client's own connection serves on. Default rings take it.
    let e = c3.subscribe().unwrap_err();
    let why = shmwire::error_chain(&e);
    assert!(why.contains("largest notification"), "{why}");
    let mut sub = c.subscribe().unwrap();
    let mut heard_fat = false;
    while let Some(n) = sub.recv_timeout(Duration::from_secs(5)).unwrap() {
        if let shmwire::store::Notification::Sealed { id, metadata, .. } = n {
            if id == fat {
                assert_eq!(metadata.len(), shmwire::store::MAX_METADATA_LEN);
                heard_fat = true;
                break;
            }
        }
    }
    assert!(heard_fat);
    drop(sub);
    // Nothing left held: every big object deletes and frees at once.
    c.delete(&big).unwrap();
    c.delete(&[fat]).unwrap();
    for client in [&c, &c3] {
        assert!(!client.is_broken());
    }
    assert!(!c.contains(big[0]).unwrap() && !c.contains(fat).unwrap());
    kill9(&mut service);
}

/// A child that is resumed, killed and reaped however the test ends (also
/// on a panic), so no stopped service outlives it.
struct Reaped(std::process::Child);

impl Reaped {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        job_control::continue_process(self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store service in a child, ready when this returns.
fn service_child(test: &str, env: &Env, session: &str) -> Reaped {
    let mut child = Reaped(spawn_child(test, "service", &pass(env, session)));
    let lines = stdout_lines(&mut child.0);
    expect_line(&lines, "ready");
    child
}

/// The child side of [`service_child`].
fn run_service_child() {
    let s = child_session();
    let _store = StoreService::start(&s, shmwire::store::StoreConfig::new(16 << 20)).unwrap();
    println!("ready");
    std::thread::sleep(GUARD);
}

/// A pull's `timeout` bounds its calls to the local store too (fresh
/// attack on `7c472c6`: with the local service stopped, a 2 s pull took
/// the client's 30 s reply timeout and failed with the store client's
/// generic error). The local service in a child is stopped before a pull
/// (its first look at the local store waits) and, in a second pull, while
/// the transfer runs (its seal waits): each fails `PullTimedOut` naming the
/// object within its timeout and a margin, though the client's reply
/// timeout is 30 s. After `SIGCONT` the broken client refuses at once, and
/// a new connection pulls (and finds the second pull's object sealed or
/// aborted, never left unsealed: its pull works).
#[test]
fn a_pull_into_a_stopped_local_store_times_out_at_its_deadline_naming_the_object() {
    const TEST: &str =
        "a_pull_into_a_stopped_local_store_times_out_at_its_deadline_naming_the_object";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use shmwire::store::{ClientOptions, PullServer, PullServerConfig};
    let remote = Env::new("pullstop-remote");
    let _remote_store = remote.store(16 << 20);
    let server = PullServer::start(
        connect(&remote.session),
        PullServerConfig::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let writer = connect(&remote.session);
    let (small, big) = (shared_oid(8, 0), shared_oid(8, 1));
    writer.put(small, b"remote bytes", b"m").unwrap();
    let big_data = contents(8, 4 << 20);
    writer.put(big, &big_data, b"").unwrap();

    let env = Env::new("pullstop");
    let service = service_child(TEST, &env, "pullstop");
    let opts = ClientOptions {
        reply_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let timeout = Duration::from_millis(1500);
    let margin = Duration::from_secs(1);
    let check = |r: Result<shmwire::store::ObjectBuffer, StoreError>, took: Duration, id| {
        match r {
            Err(e @ StoreError::PullTimedOut { .. }) => {
                assert_eq!(e.object_id(), Some(id), "{e}");
                assert!(e.to_string().contains(&id.to_string()), "{e}");
            }
            Err(e) => panic!("expected PullTimedOut after {took:?}, got {e}"),
            Ok(_) => panic!("the pull succeeded with the store stopped"),
        }
        assert!(took < timeout + margin, "the pull took {took:?}");
    };

    // Stopped before the pull: its first look at the local store waits.
    let c = StoreClient::connect_with(&env.session, DEFAULT_STORE_NAME, opts.clone()).unwrap();
    c.put(shared_oid(8, 9), b"x", b"").unwrap();
    job_control::stop_process(service.pid());
    let t = Instant::now();
    let r = c.pull(small, server.addr(), timeout);
    check(r, t.elapsed(), small);
    assert!(c.is_broken());
    job_control::continue_process(service.pid());
    let t = Instant::now();
    let r = c.pull(small, server.addr(), GUARD);
    assert!(
        matches!(r, Err(StoreError::ConnectionBroken { .. })),
        "{r:?}"
    );
    assert!(t.elapsed() < margin);
    drop(c);

    // Stopped while the transfer runs (after the local create): the seal
    // waits.
    let c = StoreClient::connect_with(&env.session, DEFAULT_STORE_NAME, opts).unwrap();
    let pid = service.pid();
    let mut stopped = false;
    let t = Instant::now();
    let r = c.pull_with_progress(big, server.addr(), timeout, |_, _| {
        if !stopped {
            stopped = true;
            job_control::stop_process(pid);
        }
    });
    let took = t.elapsed();
    assert!(stopped, "no progress before the pull ended: {r:?}");
    check(r, took, big);
    job_control::continue_process(pid);

    // A new connection pulls again (the second object was sealed late or
    // aborted: either way it can be had).
    let c2 = c.connect_again().unwrap();
    drop(c);
    let got = c2.pull(small, server.addr(), GUARD).unwrap();
    assert_eq!(&got[..], b"remote bytes");
    assert_eq!(got.metadata(), b"m");
    let got = c2.pull(big, server.addr(), GUARD).unwrap();
    assert_eq!(checksum(&got), checksum(&big_data));
    drop(got);
    server.shutdown();
}

/// The shared index is hostile input, and its heartbeat must not keep a
/// dead service looking live (fresh attack on `7c472c6`: with the
/// client's wall clock an hour behind, gets went on from a killed store's
/// index for that hour). After a kill, the index's heartbeat is written an
/// hour ahead — what a client whose clock is an hour behind saw, and what
/// any same-user process with the memfd can write: the client still gives
/// the index up within the documented second.
#[test]
fn a_killed_service_whose_beat_is_scribbled_ahead_is_given_up_within_a_second() {
    const TEST: &str = "a_killed_service_whose_beat_is_scribbled_ahead_is_given_up_within_a_second";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    let env = Env::new("beatahead");
    let mut service = service_child(TEST, &env, "beatahead");
    let c = connect(&env.session);
    let id = shared_oid(9, 0);
    c.put(id, b"indexed", b"").unwrap();
    assert!(c.uses_index());
    assert_eq!(
        c.get(&[id], Duration::ZERO).unwrap()[0].as_deref(),
        Some(&b"indexed"[..])
    );
    let index = open_memfd(service.pid(), "sidx-");
    service.0.kill().unwrap();
    service.0.wait().unwrap();
    // SAFETY: header word 3 (the heartbeat) lies in the mapping, which is
    // page aligned; the store accesses it atomically too.
    let beat = unsafe { &*(index.payload_ptr().add(24) as *const AtomicU64) };
    let ahead = beat.load(Ordering::Relaxed).saturating_add(3_600_000);
    beat.store(ahead, Ordering::Relaxed);
    let t = Instant::now();
    while c.uses_index() {
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "the dead service's index is still used after {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Not from the index any more: the dead service is asked, and fails.
    assert!(c.get(&[id], Duration::ZERO).is_err());
}

/// A client that sends `get`s without waiting for their replies, each for
/// objects that do not exist with a long timeout, holds each in the
/// service's memory (up to `MAX_IDS_PER_REQUEST` ids) and in its loop's
/// checks.
/// A `StoreClient` has one waiting at most; the service drops a client
/// with more than four, saying why, and another process's calls go on
/// meanwhile.
#[test]
fn a_client_piling_up_waiting_gets_is_dropped_alone() {
    use shmwire::spec;
    use shmwire::store::{Reply, Request};
    use shmwire::transport::{MessageConnection, RecvError};
    const TEST: &str = "a_client_piling_up_waiting_gets_is_dropped_alone";
    if child_role().is_some() {
        serve_store(shmwire::store::StoreConfig::new(1 << 20));
        return;
    }
    let env = Env::new("piled");
    let mut service = spawn_store(TEST, &env, "piled");
    let good = connect(&env.session);
    let (mut raw, mut enc) = raw_store_client(&env.session, 256 << 10);
    // Ten gets of as many missing ids as a request may name (1,024; it
    // was 5,000 before that bound), a minute's wait, sent at once.
    let missing: Vec<_> = (0..shmwire::store::MAX_IDS_PER_REQUEST as u32)
        .map(|i| shared_oid(31, i))
        .collect();
    for _ in 0..10 {
        let get = Request::Get {
            ids: missing.clone(),
            timeout_ms: 60_000,
        };
        if raw.send_message(&mut enc, &get).is_err() {
            break;
        }
    }
    let t = Instant::now();
    match raw.recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>) {
        Err(RecvError::CutOff { reason, .. }) if reason.contains("gets waiting at once") => {}
        other => {
            kill9(&mut service);
            panic!("expected to be dropped, saying why, got {other:?}");
        }
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The other client was not held up.
    let t = Instant::now();
    for i in 0..200 {
        good.put(shared_oid(32, i), b"fine", b"").unwrap();
        let got = good.get(&[shared_oid(32, i)], GUARD).unwrap();
        assert_eq!(got[0].as_deref().unwrap(), b"fine");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    kill9(&mut service);
}

/// Puts (and gets back, and deletes) small objects by `c` for `span`,
/// timing each; their median and worst, and the host's longest stall
/// meanwhile ([`latency_samples_and_stall`]). Another client's eviction may
/// take an object between its put and its get (it is unheld): then the
/// get finds nothing (it does not wait for it; it waited for ever, the
/// test's bound, 60 s) and the delete has nothing to delete.
fn put_latencies(c: &StoreClient, tag: u8, span: Duration) -> (Duration, Duration, Duration) {
    let (took, stall) = latency_samples_and_stall(span, |i| {
        let id = shared_oid(tag, i);
        c.put(id, b"fine", b"").unwrap();
        let got = c.get(&[id], Duration::ZERO).unwrap();
        if let Some(b) = got[0].as_deref() {
            assert_eq!(b, b"fine");
        }
        drop(got);
        c.delete(&[id]).unwrap();
    });
    (took[took.len() / 2], took[took.len() - 1], stall)
}

/// Runs `op(0)`, `op(1)`, … for `span`, timing each: every latency,
/// sorted.
fn latency_samples(span: Duration, op: impl FnMut(u32)) -> Vec<Duration> {
    latency_samples_and_stall(span, op).0
}

/// [`latency_samples`], and the longest the host kept a thread of this
/// process that only sleeps 1 ms at a time from running meanwhile, beyond
/// its sleep: a stall of the whole (virtual) machine, which delays a
/// client's call by as much whatever the service does (102 ms once in a CI
/// run on a slow host, where the calls' p99 was 0.8 ms). A bound on the
/// worst call is a bound on what the service adds to that.
fn latency_samples_and_stall(span: Duration, mut op: impl FnMut(u32)) -> (Vec<Duration>, Duration) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| {
            let mut stall = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                stall = stall.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            stall
        });
        let end = Instant::now() + span;
        let mut took = Vec::new();
        let mut i = 0;
        while Instant::now() < end {
            let t = Instant::now();
            op(i);
            took.push(t.elapsed());
            i += 1;
        }
        // Relaxed: a stop flag only; `join` below orders the sleeper's
        // result with this thread.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        took.sort();
        (took, sleeper.join().unwrap())
    })
}

/// Two hostile clients in other processes, each delaying nobody (found by
/// a review after the metadata fix):
/// - one sends `Release` requests (which need no reply) without pause: the
///   service handled one client's requests until its ring was empty, so
///   it held the service's thread as long as it kept writing (another
///   client's worst `put` 1.4 s; the shared index's heartbeat went stale).
///   Now a client's turn handles at most 256 requests.
/// - one with 4 KiB rings sends `Contains` requests and never reads the
///   replies, then connects again, over and over: each full ring held the
///   service 200 ms (its send timeout) before it dropped the client
///   (another client's puts fell from 1,492 to 145 in 8 s). Now the service
///   never waits: replies queue on the connection and the client is dropped
///   when it read none of them for the send timeout, told why.
///
/// Meanwhile this process's puts and gets (for 2 s) keep a median under
/// 20 ms and a worst under a second.
#[test]
fn a_flooding_client_and_one_that_never_reads_delay_nobody() {
    use shmwire::spec;
    use shmwire::store::{Reply, Request};
    use shmwire::transport::{MessageConnection, RecvError};
    const TEST: &str = "a_flooding_client_and_one_that_never_reads_delay_nobody";
    if let Some(role) = child_role() {
        let s = child_session();
        let end = Instant::now() + Duration::from_secs(3);
        match role.as_str() {
            "service" => serve_store(shmwire::store::StoreConfig::new(1 << 20)),
            "flood" => {
                let (mut raw, _) = raw_store_client(&s, 256 << 10);
                // Requests that cost the service far more than the client:
                // one encoding of a `Refresh` of 100 ids (each looked up),
                // sent again and again, as fast as the ring takes them; the
                // replies read as they come.
                let refresh = Request::Refresh {
                    ids: (0..100).map(|i| shared_oid(41, i)).collect(),
                };
                let bytes = spec::to_vec(&refresh).unwrap();
                println!("flooding");
                let mut n = 0u32;
                while Instant::now() < end {
                    use shmwire::transport::Connection;
                    raw.send(&bytes).unwrap();
                    n += 1;
                    while let Ok(Some(_)) = raw.try_recv() {}
                }
                println!("sent={n}");
            }
            "unread" => {
                let mut dropped = 0;
                println!("hoarding");
                while Instant::now() < end {
                    let (mut raw, mut enc) = raw_store_client(&s, 4096);
                    let contains = Request::Contains {
                        id: shared_oid(42, 0),
                    };
                    let mut sent = 0;
                    while sent < 400 && raw.try_send_message(&mut enc, &contains).is_ok() {
                        sent += 1;
                    }
                    // Every request handed over (the service reads them),
                    // none of the replies read: they fill the 4 KiB ring.
                    // (A service that drops it first fails the flush.)
                    let _ = shmwire::transport::Connection::flush(&mut raw);
                    // The service cuts it off once it read none of its
                    // replies for the send timeout.
                    std::thread::sleep(Duration::from_millis(400));
                    loop {
                        match raw.recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>) {
                            Ok(_) => continue,
                            Err(RecvError::Closed | RecvError::PeerDied { .. }) => {
                                dropped += 1;
                                break;
                            }
                            Err(RecvError::CutOff { reason, .. }) => {
                                assert!(
                                    reason.contains("read none of its replies")
                                        || reason.contains("are not read"),
                                    "{reason}"
                                );
                                dropped += 1;
                                break;
                            }
                            Err(e) => panic!("expected to be cut off, got {e}"),
                        }
                    }
                }
                println!("dropped={dropped}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("flood");
    let mut service = spawn_store(TEST, &env, "flood");
    let c = connect(&env.session);
    let (quiet, ..) = put_latencies(&c, 40, Duration::from_millis(200));
    let mut flood = spawn_child(TEST, "flood", &pass(&env, "flood"));
    let fl = stdout_lines(&mut flood);
    expect_line(&fl, "flooding");
    let mut unread = spawn_child(TEST, "unread", &pass(&env, "flood"));
    let ul = stdout_lines(&mut unread);
    expect_line(&ul, "hoarding");
    // While both run (each for 3 s from its start).
    let (median, worst, stall) = put_latencies(&c, 43, Duration::from_secs(2));
    let sent = expect_line(&fl, "sent=");
    let dropped = expect_line(&ul, "dropped=");
    let (ok_f, ok_u) = (wait_status(&mut flood), wait_status(&mut unread));
    kill9(&mut service);
    eprintln!(
        "beside the flood: median {median:?}, worst {worst:?}, host stall {stall:?} (alone {quiet:?})"
    );
    assert!(ok_f && ok_u, "a hostile child failed");
    assert!(
        median < Duration::from_millis(20) && worst < Duration::from_secs(1) + stall,
        "median {median:?}, worst {worst:?} (alone {quiet:?}); flood {sent}, unread {dropped}"
    );
    assert!(
        dropped
            .trim_start_matches("dropped=")
            .parse::<u32>()
            .unwrap()
            > 0,
        "{dropped}"
    );
}

/// In a child: puts objects `tag`/`range` of one byte each through a raw
/// connection, 256 at a time without waiting between.
fn put_tiny_objects(s: &shmwire::shm::Session, tag: u8, range: std::ops::Range<u32>) {
    let (mut raw, mut enc) = raw_store_client(s, 1 << 20);
    for part in range.collect::<Vec<_>>().chunks(256) {
        let ids: Vec<_> = part.iter().map(|&i| shared_oid(tag, i)).collect();
        pipeline_puts(&mut raw, &mut enc, &ids, 1);
    }
}

/// Puts `ids` (of `len` bytes each) through a raw connection, sent one
/// after another without waiting, then their replies read: every one
/// `Done`.
fn pipeline_puts(
    raw: &mut shmwire::transport::AnyConnection,
    enc: &mut shmwire::spec::Encoder,
    ids: &[shmwire::ids::ObjectId],
    len: usize,
) {
    use shmwire::spec;
    use shmwire::store::{Reply, Request};
    use shmwire::transport::MessageConnection;
    for &id in ids {
        let put = Request::Put {
            id,
            data: vec![7; len],
            metadata: vec![],
        };
        raw.send_message(enc, &put).unwrap();
    }
    for _ in ids {
        let r = raw
            .recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>)
            .unwrap()
            .unwrap();
        assert!(matches!(r, Reply::Done), "{r:?}");
    }
}

/// Input (the attack on `9bd320f`, medium): with eviction in steps, (1) a
/// large create right after a client holding 60,000 pins exited let go of
/// all of them and evicted its room at once (140–200 ms of the loop: its
/// steps ended when the objects they walked were gone, and the create's
/// own passes did the rest), and (2) the bound was per eviction, not per
/// round: 64 clients each with an `Evict` in progress made every round 64
/// steps (another client's worst op 42 ms; 256 clients: 88 ms). Right
/// behaviour: one eviction step a round, whatever the number waiting
/// (round-robin); a gone client's holds let go of in those steps; the
/// create answered after its room is made, without evicting at once. Here
/// one process pins `n` objects and is killed while another puts `2n`,
/// then sends a create needing part of the gone holder's room and 64
/// `Evict`s of everything at once; this process's put, get and delete
/// take at most 40 ms each meanwhile, and every request is answered.
#[test]
fn many_evictions_and_a_create_beside_a_gone_holder_delay_nobody() {
    const TEST: &str = "many_evictions_and_a_create_beside_a_gone_holder_delay_nobody";
    const EVICTORS: usize = 64;
    let n: u32 = 40_000;
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "service" => serve_store(shmwire::store::StoreConfig {
                metadata_capacity: Some(256 << 20),
                ..shmwire::store::StoreConfig::new(u64::from(3 * n + 4000) * 64)
            }),
            "holder" => {
                put_tiny_objects(&s, 60, 0..n);
                let c = connect(&s);
                let all: Vec<_> = (0..n).map(|i| shared_oid(60, i)).collect();
                c.pin(&all).unwrap();
                println!("ready");
                // Killed holding its pins.
                std::thread::sleep(GUARD);
            }
            "crowd" => {
                put_tiny_objects(&s, 61, 0..2 * n);
                let evictors: Vec<StoreClient> = (0..EVICTORS).map(|_| connect(&s)).collect();
                let c = connect(&s);
                println!("ready");
                wait_for_go("the parent's go");
                let evicts: Vec<_> = evictors
                    .into_iter()
                    .map(|e| std::thread::spawn(move || e.evict(u64::MAX).unwrap()))
                    .collect();
                // More than the objects this process put: some of the gone
                // holder's room too.
                let size = u64::from(2 * n + n / 2) * 64;
                let large = c.create(shared_oid(62, 0), size, b"").unwrap();
                large.abort().unwrap();
                let freed: u64 = evicts.into_iter().map(|t| t.join().unwrap()).sum();
                println!("done freed={freed}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("crowd");
    let mut service = spawn_store(TEST, &env, "crowd");
    let c = connect(&env.session);
    let (quiet, ..) = put_latencies(&c, 63, Duration::from_millis(200));
    let (go, vars) = pass_with_go(&env, "crowd");
    let mut holder = spawn_child(TEST, "holder", &vars);
    let hl = stdout_lines(&mut holder);
    expect_line(&hl, "ready");
    let mut crowd = spawn_child(TEST, "crowd", &vars);
    let cl = stdout_lines(&mut crowd);
    expect_line(&cl, "ready");
    kill9(&mut holder);
    std::fs::write(&go, b"").unwrap();
    let (median, worst, stall) = put_latencies(&c, 64, Duration::from_millis(1500));
    let done = expect_line(&cl, "done");
    let ok = wait_status(&mut crowd);
    // Every pinned object of the killed holder was let go of.
    let left = (0..n)
        .step_by(97)
        .filter(|&i| c.contains(shared_oid(60, i)).unwrap());
    let left = left.count();
    kill9(&mut service);
    eprintln!("beside {EVICTORS} evictions and a create after a gone holder: median {median:?}, worst {worst:?} (alone {quiet:?}); {done}");
    assert!(ok, "the crowd child failed");
    assert_eq!(left, 0, "the gone holder's objects were not let go of");
    // Beyond what a stall of the host itself took from every thread.
    assert!(
        worst < Duration::from_millis(40) + stall,
        "median {median:?}, worst {worst:?}, host stall {stall:?} (alone {quiet:?})"
    );
}

/// Input (the attack on `e0217b7`, high): with a create's eviction in
/// steps, two clients sending small puts without pause filled the holes
/// each step left (8 B objects fit between steps), so the room never came
/// in one piece; after its walks the create failed `StoreFull` with
/// everything evictable (64 KiB to 1.5 MiB creates, 4–5.6 s). Right
/// behaviour: a create whose walks still free something but never its
/// room (contended) evicts at once, as before the steps, and succeeds.
/// Here two processes pipeline 8 B puts into a 4 MiB store for 3 s while
/// this one creates 64 KiB and 1.5 MiB objects: every create succeeds.
#[test]
fn a_create_gets_its_room_beside_clients_pipelining_small_puts() {
    use shmwire::ids::ObjectId;
    const TEST: &str = "a_create_gets_its_room_beside_clients_pipelining_small_puts";
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "service" => serve_store(shmwire::store::StoreConfig::new(4 << 20)),
            "sender" => {
                let (mut raw, mut enc) = raw_store_client(&s, 1 << 20);
                let end = Instant::now() + Duration::from_secs(3);
                println!("sending");
                let mut sent = 0u64;
                while Instant::now() < end {
                    let ids: Vec<_> = (0..512).map(|_| ObjectId::from_random()).collect();
                    pipeline_puts(&mut raw, &mut enc, &ids, 8);
                    sent += 512;
                }
                println!("sent={sent}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("pipelined");
    let mut service = spawn_store(TEST, &env, "pipelined");
    let vars = pass(&env, "pipelined");
    let mut senders: Vec<_> = (0..2).map(|_| spawn_child(TEST, "sender", &vars)).collect();
    let lines: Vec<_> = senders.iter_mut().map(stdout_lines).collect();
    for l in &lines {
        expect_line(l, "sending");
    }
    // The store full of their objects.
    std::thread::sleep(Duration::from_millis(300));
    let c = connect(&env.session);
    let mut results = Vec::new();
    for (i, size) in [64 << 10, 64 << 10, 1536 << 10, 1536 << 10]
        .into_iter()
        .enumerate()
    {
        let t = Instant::now();
        let r = c.create(shared_oid(80, i as u32), size, b"");
        results.push((size, t.elapsed(), r.as_ref().err().map(|e| e.to_string())));
        if let Ok(b) = r {
            b.abort().unwrap();
        }
    }
    let sent: Vec<_> = lines.iter().map(|l| expect_line(l, "sent=")).collect();
    let ok = senders.iter_mut().all(wait_status);
    kill9(&mut service);
    eprintln!("creates beside pipelined puts: {results:?}; {sent:?}");
    assert!(ok, "a sender failed");
    for (size, took, err) in &results {
        assert!(
            err.is_none(),
            "a create of {size} bytes failed after {took:?}: {err:?}"
        );
    }
}

/// Input (the attack on `9bd320f`, medium): a put that failed `StoreFull`
/// because the arena was full of objects held through the shared index
/// cost the service three whole walks of the LRU at once (each object's
/// index slots read): ≈ 12 ms of the loop for every failing put over
/// 16,384 objects, and four clients putting in a loop took another
/// client's `contains` (not answered through the index) to a p99 of
/// 51 ms, max 115 ms. Right behaviour: a
/// put or create short of room evicts in steps like any other, and once
/// its walks free nothing it fails at once without walking again. Here a
/// process holds (through the index) objects filling the arena, another
/// puts in a loop from four threads (each put failing `StoreFull`), and
/// this process's `refresh` takes at most 20 ms at the 99th percentile,
/// and 40 ms or more at most twice (a stall of the host), meanwhile.
#[test]
fn puts_failing_against_objects_held_through_the_index_delay_nobody() {
    held_through_the_index_beside(
        "puts_failing_against_objects_held_through_the_index_delay_nobody",
        "puts",
    );
}

/// Input (found by reading after the attack on `e0217b7`, the same kind):
/// a `Pin` in a full metadata capacity walked the whole LRU at once for
/// each object it named, three times when what it met was held through
/// the shared index, and failed `MetadataFull` only then. Right
/// behaviour: a pin (or service-side `get`) short of room for its holds
/// evicts in steps, never its own objects, then fails at once. Here the
/// metadata capacity is full of objects held through the index, four
/// threads pin them in a loop (each pin failing `MetadataFull`), and this
/// process's `refresh` takes at most 20 ms at the 99th percentile, and
/// 40 ms or more at most twice, meanwhile (57 ms and more with the pins
/// not stepped).
#[test]
fn pins_failing_against_a_full_metadata_capacity_delay_nobody() {
    held_through_the_index_beside(
        "pins_failing_against_a_full_metadata_capacity_delay_nobody",
        "pins",
    );
}

/// Input (the attack on `f96e744`, medium): a `Pin` of the 1,024 least
/// recently used objects in a full metadata capacity, and another
/// client's `Evict` of everything sent right after it while the pin's
/// room is evicted in steps: the `Evict`'s steps took half the pin's
/// objects (the pin's own steps spared them, nobody else's did), and the
/// pin failed `ObjectNotFound` at the 513th, 3 runs of 3. Right
/// behaviour: the objects a waiting `Pin` or `Get` names are kept from
/// every eviction until it is answered; the pin succeeds and every named
/// object outlives the `Evict`.
#[test]
fn a_pin_in_steps_keeps_its_objects_from_another_clients_evict() {
    kept_in_steps_from_another_clients_evict(
        "a_pin_in_steps_keeps_its_objects_from_another_clients_evict",
        "pin",
    );
}

/// Input (the same attack, a `Get` in place of the pin): a service-side
/// `Get` of the 1,024 least recently used objects in a full metadata
/// capacity (each first hold charges `HOLDER_OVERHEAD`), another client's
/// `Evict` of everything sent while the get's room is evicted in steps.
/// Right behaviour: as for the pin — the get answers every object, and
/// every named object outlives the `Evict`. The service keeps no shared
/// index here, so every `get` is answered by the service.
#[test]
fn a_get_in_steps_keeps_its_objects_from_another_clients_evict() {
    kept_in_steps_from_another_clients_evict(
        "a_get_in_steps_keeps_its_objects_from_another_clients_evict",
        "get",
    );
}

/// Input (the attack on `e0217b7`, low): a pull's create short of room,
/// let in by the pull capacity when it came, went on evicting in steps
/// after another pull took the capacity meanwhile, and failed
/// `PullsFull` only once its room was made: megabytes evicted for
/// nothing. Right behaviour: a pull in steps that the pull capacity no
/// longer lets in is answered `PullsFull` at once (its puller tries again
/// as for any pull turned away), evicting no more. Here, in a 4 MiB arena
/// full of tiny objects, a pull's create of 3 MiB steps, a pull of
/// 128 KiB that fits is created meanwhile (the capacity is 3 MiB +
/// 64 KiB), and the large pull fails `PullsFull` having evicted less than
/// a third of its room (without the check: all of it).
#[test]
fn a_pull_in_steps_overtaken_by_another_pull_evicts_no_more() {
    const TEST: &str = "a_pull_in_steps_overtaken_by_another_pull_evicts_no_more";
    const KIB: u64 = 1 << 10;
    const TINY: u32 = 61_440;
    const BIG: u64 = 3072 * KIB;
    if child_role().is_some() {
        // An index entry for every object: counting them is a look each,
        // not a round trip (131,072 round trips took 20 s beside another
        // test on 2 cores).
        let mut config = shmwire::store::StoreConfig::new(4096 * KIB)
            .pull_capacity(BIG + 64 * KIB)
            .index_entries(1 << 17);
        config.metadata_capacity = Some(256 << 20);
        serve_store(config);
        return;
    }
    use shmwire::spec;
    use shmwire::store::{Reply, Request};
    use shmwire::transport::MessageConnection;
    let create = |id, size| Request::Create {
        id,
        data_size: size,
        metadata: vec![],
        pull_ms: Some(10_000),
    };
    let env = Env::new("pullstep");
    // Rounds in which the small pull came too late (the large one's
    // steps had ended) prove nothing: tried again, each with a fresh
    // service (the pull queue remembers the last round's pulls).
    for round in 0..3 {
        let mut service = spawn_store(TEST, &env, "pullstep");
        put_tiny_objects(&env.session, 95, 0..TINY);
        let c = connect(&env.session);
        let present = |c: &StoreClient| present_of(c, 95, TINY);
        let before = present(&c);
        let oldest = (0..TINY)
            .map(|i| shared_oid(95, i))
            .find(|id| c.contains(*id).unwrap())
            .unwrap();
        let (mut big, mut enc) = raw_store_client(&env.session, 1 << 20);
        let (mut small, mut enc2) = raw_store_client(&env.session, 1 << 20);
        big.send_message(&mut enc, &create(shared_oid(96, 0), BIG))
            .unwrap();
        // Its steps have begun: the oldest object is gone.
        let until = Instant::now() + Duration::from_secs(5);
        while c.contains(oldest).unwrap() && Instant::now() < until {
            std::hint::spin_loop();
        }
        small
            .send_message(&mut enc2, &create(shared_oid(96, 1), 128 * KIB))
            .unwrap();
        let recv = |raw: &mut shmwire::transport::AnyConnection| {
            raw.recv_message_with::<Reply, _>(Duration::from_secs(10), spec::deserialize::<Reply>)
                .unwrap()
                .unwrap()
        };
        let small_reply = recv(&mut small);
        let big_reply = recv(&mut big);
        let evicted = before - present(&c);
        eprintln!("round {round}: {before} tiny objects, {evicted} evicted; small {small_reply:?}, big {big_reply:?}");
        kill9(&mut service);
        assert!(matches!(small_reply, Reply::Object(_)), "{small_reply:?}");
        if matches!(big_reply, Reply::Object(_)) {
            // The large one's room came before the small one did.
            continue;
        }
        let Reply::Error(e) = big_reply else {
            panic!("{big_reply:?}");
        };
        assert!(
            matches!(e.to_error(), StoreError::PullsFull { .. }),
            "{e:?}"
        );
        // Its room: 2.75 MiB of 64-byte objects.
        let room = (BIG - (4096 * KIB - u64::from(before as u32) * 64)) / 64;
        assert!(
            (evicted as u64) < room / 3,
            "{evicted} objects evicted for a pull that failed (its room: {room})"
        );
        return;
    }
    panic!("in no round did the small pull come while the large one stepped");
}

/// Input (left by the attacks on `e0217b7` and `9bd320f`, low): a client
/// whose request was in steps was not read until they ended, so its
/// hang-up was noticed only then: an `Evict` of everything sent just
/// before its client closed ran to its end for nobody (a `Pin` of
/// thousands killed mid-step likewise kept its objects and evicted for
/// them). Right behaviour: the hang-up ends the request's steps at once.
/// Here a raw client sends `Evict(u64::MAX)` over 131,072 tiny objects
/// (512 steps) and closes; most of the objects are still there after its
/// steps would have ended (without the check: none).
#[test]
fn a_request_in_steps_ends_when_its_client_hangs_up() {
    const TEST: &str = "a_request_in_steps_ends_when_its_client_hangs_up";
    const TINY: u32 = 131_072;
    if child_role().is_some() {
        // An index entry for every object (see the test above).
        let mut config =
            shmwire::store::StoreConfig::new(u64::from(TINY) * 64).index_entries(1 << 18);
        config.metadata_capacity = Some(256 << 20);
        serve_store(config);
        return;
    }
    use shmwire::store::Request;
    use shmwire::transport::MessageConnection;
    let env = Env::new("hangup");
    let mut service = spawn_store(TEST, &env, "hangup");
    put_tiny_objects(&env.session, 97, 0..TINY);
    let c = connect(&env.session);
    let present = |c: &StoreClient| present_of(c, 97, TINY);
    let before = present(&c);
    let (mut raw, mut enc) = raw_store_client(&env.session, 1 << 20);
    raw.send_message(&mut enc, &Request::Evict { bytes: u64::MAX })
        .unwrap();
    drop(raw);
    // Its steps, had they gone on, would have ended by now (512 steps of
    // tens of microseconds); a request answered through the service
    // comes after this round.
    std::thread::sleep(Duration::from_millis(500));
    c.refresh(&[]).unwrap();
    let after = present(&c);
    kill9(&mut service);
    eprintln!("{before} tiny objects, {after} left after the evicting client hung up");
    assert!(
        after > before / 2,
        "{after} of {before} left: the steps went on for a client that hung up"
    );
}

/// How many of objects `shared_oid(tag, 0..n)` are in the store (each
/// looked up through the index).
fn present_of(c: &StoreClient, tag: u8, n: u32) -> usize {
    (0..n)
        .filter(|&i| c.contains(shared_oid(tag, i)).unwrap())
        .count()
}

/// The body of the two tests above: `what` ("pin" or "get") names the
/// 1,024 oldest of `OBJECTS` tiny objects filling the metadata capacity,
/// and another client's `Evict` of everything comes while it is in steps.
fn kept_in_steps_from_another_clients_evict(test: &str, what: &'static str) {
    // A fifth of the metadata capacity (what the steps evict, as a
    // create's would) is ≈ 6,500 objects: ≈ 30 steps, during which the
    // `Evict` comes in.
    const OBJECTS: u32 = 32_768;
    if child_role().is_some() {
        let mut config = shmwire::store::StoreConfig::new(16 << 20);
        if what == "get" {
            // Every `get` asks the service (none is answered through the
            // index), so its holds are the service's.
            config = config.index_entries(0);
        }
        // The objects, and one hold more (what a put takes while it
        // writes).
        config.metadata_capacity = Some(
            u64::from(OBJECTS) * shmwire::store::heap_charge(0) + shmwire::store::HOLDER_OVERHEAD,
        );
        serve_store(config);
        return;
    }
    let env = Env::new("keep");
    let mut service = spawn_store(test, &env, "keep");
    let (a, b) = (connect(&env.session), connect(&env.session));
    let named: Vec<_> = (0..1024).map(|i| shared_oid(90, i)).collect();
    for round in 0..2u8 {
        // Pipelined: one put at a time, each a round trip that sleeps
        // when the two tests share 2 cores, took 10-20 s.
        put_tiny_objects(&env.session, 90, 0..OBJECTS);
        let go = std::sync::Barrier::new(2);
        let (held, freed) = std::thread::scope(|s| {
            let hold = s.spawn(|| {
                go.wait();
                match what {
                    "pin" => a.pin(&named).map(|()| Vec::new()),
                    _ => a.get(&named, Duration::ZERO),
                }
            });
            let evict = s.spawn(|| {
                go.wait();
                // Once the steps evict (the oldest object not named is
                // gone): the `Evict` comes while the request waits, not
                // before it (sent after a fixed 200 µs, under the whole
                // suite's load both waited in the service together and
                // the `Evict` went first, 1 run in 5: the attack on
                // `04cce60`).
                let until = Instant::now() + Duration::from_secs(5);
                // Polled with a pause: a spinning poller starved the
                // service on 2 cores when the two tests ran together.
                while b.contains(shared_oid(90, 1024)).unwrap() && Instant::now() < until {
                    std::thread::sleep(Duration::from_micros(50));
                }
                b.evict(u64::MAX)
            });
            (hold.join().unwrap(), evict.join().unwrap())
        });
        let alive = named.iter().filter(|id| a.contains(**id).unwrap()).count();
        let got = held
            .as_ref()
            .map(|g| g.iter().filter(|b| b.is_some()).count())
            .map_err(|e| e.to_string());
        eprintln!("round {round}: {what} {got:?}, evict {freed:?}, {alive} named alive");
        let held = held.unwrap();
        assert!(freed.unwrap() > 0);
        assert_eq!(alive, named.len());
        if what == "pin" {
            a.unpin(&named).unwrap();
        } else {
            assert_eq!(
                got.unwrap(),
                named.len(),
                "the get did not answer every object"
            );
            for (b, id) in held.iter().zip(&named) {
                let b = b.as_ref().unwrap();
                assert_eq!((b.id(), &b[..]), (*id, &[7u8][..]));
            }
        }
        drop(held);
        // The buffers' releases go out without replies: a round trip on
        // the same connection (no index in the "get" variant, so
        // `contains` asks the service; "pin" unpinned by one above) is
        // answered only after the service took them, so the `Evict` on the other connection cannot overtake
        // them (it did once in a CI run: round 1's puts met round 0's
        // objects, still held, `ObjectExists`).
        a.contains(named[0]).unwrap();
        b.evict(u64::MAX).unwrap();
    }
    kill9(&mut service);
}

/// The body of the two tests above: a process holds, through the index,
/// objects filling the arena (`what` = "puts") or the metadata capacity
/// ("pins"); four threads of another put tiny objects or pin those, each
/// failing; this process's `refresh` meanwhile takes at most 20 ms at the
/// 99th percentile, and 40 ms or more at most twice.
fn held_through_the_index_beside(test: &str, what: &'static str) {
    const OBJECTS: u32 = 16_384;
    const SIZE: usize = 4096;
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "service" => {
                let mut config = shmwire::store::StoreConfig::new(u64::from(OBJECTS) * SIZE as u64);
                if what == "pins" {
                    // The objects and a hold on each (the holder's gets
                    // not answered through the index take one); the
                    // holder fills the rest.
                    config.capacity *= 2;
                    config.metadata_capacity = Some(
                        u64::from(OBJECTS)
                            * (shmwire::store::heap_charge(0) + shmwire::store::HOLDER_OVERHEAD),
                    );
                }
                serve_store(config)
            }
            "holder" => {
                let c = connect(&s);
                let data = vec![5u8; SIZE];
                for i in 0..OBJECTS {
                    c.put(shared_oid(70, i), &data, b"").unwrap();
                }
                let ids: Vec<_> = (0..OBJECTS).map(|i| shared_oid(70, i)).collect();
                let held = c.get(&ids, Duration::ZERO).unwrap();
                let n = held.iter().filter(|b| b.is_some()).count();
                // The metadata capacity filled with objects left unsealed
                // (not evictable): room for a pin or two more at most.
                let mut unsealed = Vec::new();
                if what == "pins" {
                    loop {
                        let id = shared_oid(69, unsealed.len() as u32);
                        match c.create(id, 8, b"") {
                            Ok(b) => unsealed.push(b),
                            Err(StoreError::MetadataFull { .. }) => break,
                            Err(e) => panic!("filling the metadata capacity: {e}"),
                        }
                    }
                }
                println!("ready held={n} unsealed={}", unsealed.len());
                std::thread::sleep(GUARD);
                drop(held);
            }
            "failing" => {
                let end = Instant::now() + Duration::from_millis(1500);
                let pins = what == "pins";
                let threads: Vec<_> = (0..4u8)
                    .map(|t| {
                        let c = connect(&s);
                        std::thread::spawn(move || {
                            let (mut full, mut i) = (0u32, 0u32);
                            while Instant::now() < end {
                                let r = if pins {
                                    c.pin(&[shared_oid(70, (i * 7 + u32::from(t)) % OBJECTS)])
                                } else {
                                    c.put(shared_oid(71 + t, i), b"tiny", b"")
                                };
                                match r {
                                    Ok(()) => {}
                                    Err(StoreError::StoreFull { .. }) if !pins => full += 1,
                                    Err(StoreError::MetadataFull { .. }) if pins => full += 1,
                                    Err(e) => panic!("{what}: {e}"),
                                }
                                i += 1;
                            }
                            full
                        })
                    })
                    .collect();
                let full: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
                println!("full={full}");
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("idxheld");
    let mut service = spawn_store(test, &env, "idxheld");
    let vars = pass(&env, "idxheld");
    let mut holder = spawn_child(test, "holder", &vars);
    let hl = stdout_lines(&mut holder);
    let held = expect_line(&hl, "ready");
    let c = connect(&env.session);
    let mut failing = spawn_child(test, "failing", &vars);
    let fl = stdout_lines(&mut failing);
    // A request the service answers itself (a `contains` is answered
    // through the index).
    let took = latency_samples(Duration::from_millis(1500), |i| {
        c.refresh(&[shared_oid(70, i % OBJECTS)]).unwrap();
    });
    let at = |q: usize| took[(took.len() - 1) * q / 100];
    let (median, p99, worst) = (at(50), at(99), took[took.len() - 1]);
    let slow = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(40))
        .count();
    let full = expect_line(&fl, "full=");
    let ok = wait_status(&mut failing);
    kill9(&mut holder);
    kill9(&mut service);
    eprintln!(
        "refresh beside failing {what}: median {median:?}, p99 {p99:?}, worst {worst:?}; {held}, {full}"
    );
    assert!(ok, "the {what} did not fail as they should");
    let full: u32 = full.trim_start_matches("full=").parse().unwrap();
    assert!(
        full > 0,
        "none of the {what} failed: nothing was full ({held})"
    );
    // The puts' fault made the p99 51 ms and the worst 115 ms, the pins'
    // the worst 57 ms and more, a stall at every failing request; fixed,
    // the median is ≈ 0.1 ms. The worst is one sample of a 2-core virtual
    // host running six busy threads: with the fix it reached 40.2 and
    // 102 ms (p99 0.8 ms) in CI runs on a slow host. So the verdict is the
    // p99 and how many calls took 40 ms or more: a stall or two of the host,
    // not one per failing request.
    assert!(
        p99 < Duration::from_millis(20) && slow <= 2,
        "median {median:?}, p99 {p99:?}, worst {worst:?}, {slow} of {} at 40 ms or more",
        took.len()
    );
}

/// Input (the attack on `a1497fe`, medium): work the service did in one
/// step grew with a count a client controls — an `Evict` of everything
/// over 100,000 tiny objects held its loop 110–147 ms, a client that held
/// 50,000 objects and exited held it 47 ms while its disconnection let go
/// of all of them, and a create of one large object in a store full of
/// tiny ones evicted all it needed at once (150,000 objects: 225 ms; a
/// create that found the metadata budget full evicted a fifth of it at
/// once, likewise: `store::table`'s tests). Right behaviour: such work
/// goes a bounded step (`OBJECTS_PER_STEP` objects) at a time, other
/// clients served between steps, and nothing changes for the client: its
/// create gets its room, its `evict` frees what it asked for, and the
/// objects a gone client held become evictable. Here another process puts
/// `3 × HEAVY_OBJECTS` tiny objects into an arena they fill, pins the last
/// third, creates an object the size of the first third, evicts the rest
/// and exits; meanwhile this process's put, get and delete take at most
/// `HEAVY_WORST` each (without steps 38–126 ms; with them 4–15 ms).
#[test]
fn an_evict_a_large_create_and_a_holder_of_thousands_leaving_delay_nobody() {
    const TEST: &str = "an_evict_a_large_create_and_a_holder_of_thousands_leaving_delay_nobody";
    const HEAVY_OBJECTS: u32 = 80_000;
    const HEAVY_WORST: Duration = Duration::from_millis(40);
    let n = HEAVY_OBJECTS;
    let id = |i: u32| shared_oid(50, i);
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            // Room for the objects, and 4,000 more for the other client.
            "service" => serve_store(shmwire::store::StoreConfig {
                metadata_capacity: Some(256 << 20),
                ..shmwire::store::StoreConfig::new(u64::from(3 * n + 4000) * 64)
            }),
            "heavy" => {
                put_tiny_objects(&s, 50, 0..3 * n);
                let c = connect(&s);
                let pinned: Vec<_> = (2 * n..3 * n).map(id).collect();
                c.pin(&pinned).unwrap();
                println!("ready");
                wait_for_go("the parent's go");
                // The first third's room, in one piece: evicted, least
                // recently used first.
                let large = c.create(shared_oid(51, 0), u64::from(n) * 64, b"").unwrap();
                large.abort().unwrap();
                println!("created");
                println!("freed={}", c.evict(u64::MAX).unwrap());
                std::thread::sleep(Duration::from_millis(300));
                // Exits holding its pins.
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("heavy");
    let mut service = spawn_store(TEST, &env, "heavy");
    let c = connect(&env.session);
    let (quiet, ..) = put_latencies(&c, 52, Duration::from_millis(200));
    let (go, vars) = pass_with_go(&env, "heavy");
    let mut heavy = spawn_child(TEST, "heavy", &vars);
    let hl = stdout_lines(&mut heavy);
    expect_line(&hl, "ready");
    std::fs::write(&go, b"").unwrap();
    // While it creates and evicts, then leaves.
    let (median, worst, stall) = put_latencies(&c, 53, Duration::from_millis(1500));
    expect_line(&hl, "created");
    let freed = expect_line(&hl, "freed=");
    let ok = wait_status(&mut heavy);
    let freed: u64 = freed.trim_start_matches("freed=").parse().unwrap();
    // Every pinned object was let go of: all evictable now.
    let deadline = Instant::now() + GUARD;
    let mut later = 0;
    while later < u64::from(n) * 64 && Instant::now() < deadline {
        later += c.evict(u64::MAX).unwrap();
    }
    let left = (0..2 * n)
        .step_by(97)
        .filter(|&i| c.contains(id(i)).unwrap())
        .count();
    kill9(&mut service);
    eprintln!("beside the create, the evict and the leaving: median {median:?}, worst {worst:?} (alone {quiet:?}); evict freed {freed}");
    assert!(ok, "the heavy child failed");
    // The second third, but what the create took beyond the first: the
    // allocator finds a piece by its size class (80,000 units round to a
    // class of 81,920: 1,920 objects more here), and the last step's.
    let second = u64::from(n) * 64;
    assert!(
        freed <= second && freed >= second / 2,
        "freed {freed} of {second}"
    );
    assert_eq!(later, u64::from(n) * 64, "the gone holder's objects");
    assert_eq!(left, 0, "unpinned objects left");
    // Beyond what a stall of the host itself took from every thread.
    assert!(
        worst < HEAVY_WORST + stall,
        "median {median:?}, worst {worst:?}, host stall {stall:?} (alone {quiet:?})"
    );
}

/// Input (a fresh-eyes attack on `b0a4fb5`, medium): one request naming a
/// frame's worth of objects — `Pin`/`Unpin`/`Refresh` of 20,000–37,000 ids,
/// one at a time — held the service's loop 5–10 ms per request (a turn's
/// 500 µs bound is checked between requests), and another client's `put`
/// took a median of 3.7 ms (four such clients: 12 ms). Right behaviour: a
/// request names at most `MAX_IDS_PER_REQUEST` objects; a client that
/// names more is dropped, told why, and a `StoreClient`'s longer lists go
/// in parts (`pin`, `unpin`, `refresh`, `get`, `delete` of 3,000 objects
/// from another process), while this process's client goes on. Likewise
/// (the attack on `a1497fe`) a `Put` carrying more than `PUT_INLINE_MAX`
/// bytes (a 16 MiB one held the loop ≈ 8 ms): dropped, told why, where a
/// `StoreClient`'s large put goes by create, write and seal.
#[test]
fn a_request_naming_too_many_objects_is_refused_and_long_lists_go_in_parts() {
    use shmwire::spec;
    use shmwire::store::{Reply, Request, MAX_IDS_PER_REQUEST, PUT_INLINE_MAX};
    use shmwire::transport::{MessageConnection, RecvError};
    const TEST: &str = "a_request_naming_too_many_objects_is_refused_and_long_lists_go_in_parts";
    const LONG: u32 = 3_000;
    if let Some(role) = child_role() {
        let s = child_session();
        match role.as_str() {
            "service" => serve_store(shmwire::store::StoreConfig::new(16 << 20)),
            "long-lists" => {
                let c = connect(&s);
                let ids: Vec<_> = (0..LONG).map(|i| oid(51, i)).collect();
                for id in &ids {
                    c.put(*id, b"v", b"").unwrap();
                }
                c.pin(&ids).unwrap();
                c.unpin(&ids).unwrap();
                c.refresh(&ids).unwrap();
                let got = c.get(&ids, GUARD).unwrap();
                assert!(got.iter().all(|b| b.as_deref() == Some(&b"v"[..])));
                drop(got);
                c.delete(&ids).unwrap();
                assert!(!c.contains(ids[ids.len() - 1]).unwrap());
                // A put larger than the inline bound goes by create, write
                // and seal.
                let large = vec![9; 1 << 20];
                c.put(oid(51, LONG), &large, b"").unwrap();
                let got = c.get(&[oid(51, LONG)], GUARD).unwrap();
                assert_eq!(got[0].as_deref(), Some(&large[..]));
                println!("long lists done");
            }
            "too-many" | "too-big" => {
                let (mut raw, mut enc) = raw_store_client(&s, 1 << 20);
                let req = if role == "too-many" {
                    Request::Pin {
                        ids: (0..=MAX_IDS_PER_REQUEST as u32)
                            .map(|i| oid(52, i))
                            .collect(),
                    }
                } else {
                    Request::Put {
                        id: oid(54, 0),
                        data: vec![7; PUT_INLINE_MAX + 1],
                        metadata: Vec::new(),
                    }
                };
                raw.send_message(&mut enc, &req).unwrap();
                match raw.recv_message_with::<Reply, _>(GUARD, spec::deserialize::<Reply>) {
                    Err(RecvError::CutOff { reason, .. }) => println!("verdict: cut off: {reason}"),
                    other => println!("verdict: not cut off: {other:?}"),
                }
            }
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let env = Env::new("maxids");
    let mut service = spawn_store(TEST, &env, "maxids");
    let c = connect(&env.session);
    let mut long = spawn_child(TEST, "long-lists", &pass(&env, "maxids"));
    let ll = stdout_lines(&mut long);
    let mut hostile = spawn_child(TEST, "too-many", &pass(&env, "maxids"));
    let hl = stdout_lines(&mut hostile);
    let told = expect_line(&hl, "verdict: ");
    let mut big = spawn_child(TEST, "too-big", &pass(&env, "maxids"));
    let bl = stdout_lines(&mut big);
    let told_big = expect_line(&bl, "verdict: ");
    expect_line(&ll, "long lists done");
    let (ok_l, ok_h) = (wait_status(&mut long), wait_status(&mut hostile));
    let ok_b = wait_status(&mut big);
    // This process's client was served meanwhile and still is.
    c.put(oid(53, 0), b"fine", b"").unwrap();
    assert_eq!(
        c.get(&[oid(53, 0)], GUARD).unwrap()[0].as_deref(),
        Some(&b"fine"[..])
    );
    kill9(&mut service);
    assert!(ok_l && ok_h && ok_b, "a child failed");
    assert!(
        told.starts_with("verdict: cut off: ")
            && told.contains(&format!("naming {} objects", MAX_IDS_PER_REQUEST + 1)),
        "{told}"
    );
    assert!(
        told_big.starts_with("verdict: cut off: ")
            && told_big.contains(&format!("a put of {} bytes", PUT_INLINE_MAX + 1)),
        "{told_big}"
    );
}

/// A store serves at most `StoreConfig::max_clients` clients: one more is
/// refused, told why, and connects once another left.
#[test]
fn clients_beyond_max_clients_are_refused_until_one_leaves() {
    const TEST: &str = "clients_beyond_max_clients_are_refused_until_one_leaves";
    if child_role().is_some() {
        let mut config = shmwire::store::StoreConfig::new(1 << 20);
        config.max_clients = 3;
        serve_store(config);
        return;
    }
    let env = Env::new("maxcl");
    let mut service = spawn_store(TEST, &env, "maxcl");
    let mut clients: Vec<StoreClient> = (0..3).map(|_| connect(&env.session)).collect();
    let refused = StoreClient::connect(&env.session, DEFAULT_STORE_NAME);
    let text = match &refused {
        Err(e) => shmwire::error_chain(e),
        Ok(_) => String::new(),
    };
    if !text.contains("max_clients") {
        kill9(&mut service);
        panic!("a fourth client: {text:?} ({:?})", refused.map(|_| ()));
    }
    clients.pop();
    // The service hears of the departure within its tick.
    let deadline = Instant::now() + GUARD;
    let again = loop {
        match StoreClient::connect(&env.session, DEFAULT_STORE_NAME) {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    again.put(shared_oid(44, 0), b"in", b"").unwrap();
    assert!(clients[0].contains(shared_oid(44, 0)).unwrap());
    kill9(&mut service);
}

/// A subscriber that comes late to a store of 3,000 objects with 8,000
/// bytes of metadata each (24 MB of notifications, ninety times its ring)
/// hears of every one, and of a seal made meanwhile: the backlog is sent a
/// turn at a time as it reads, not all at once, and a subscriber that
/// keeps reading is not "unread" (the attack on `02f36f3`: it was dropped,
/// "its replies went unread for over 200ms", after 1,773 of them). The
/// backlog goes on as the subscriber reads, not at the service's tick:
/// here the tick is longer than the subscriber waits for a note, so a
/// backlog fed only at the tick would stall it (what it reads wakes the
/// service's mux, which hands the queued notes over and reports the client
/// once all of them are; the service then feeds the next part).
#[test]
fn a_late_subscriber_hears_of_every_existing_object_as_it_reads() {
    const TEST: &str = "a_late_subscriber_hears_of_every_existing_object_as_it_reads";
    if child_role().is_some() {
        let mut config = shmwire::store::StoreConfig::new(8 << 20);
        config.tick = GUARD;
        serve_store(config);
        return;
    }
    let env = Env::new("latesub");
    let mut service = spawn_store(TEST, &env, "latesub");
    let c = connect(&env.session);
    let meta = vec![5u8; 8_000];
    for i in 0..3_000 {
        c.put(shared_oid(45, i), b"x", &meta).unwrap();
    }
    let mut sub = c.subscribe().unwrap();
    c.put(shared_oid(46, 0), b"y", b"new").unwrap();
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + GUARD;
    while seen.len() < 3_001 {
        assert!(Instant::now() < deadline, "{} heard of", seen.len());
        match sub.recv_timeout(Duration::from_secs(5)).unwrap() {
            Some(shmwire::store::Notification::Sealed { id, metadata, .. }) => {
                let want: &[u8] = if id == shared_oid(46, 0) {
                    b"new"
                } else {
                    &meta
                };
                assert_eq!(metadata, want);
                seen.insert(id);
            }
            Some(other) => panic!("{other:?}"),
            None => panic!("nothing for 5 s after {} of 3,001 notes", seen.len()),
        }
    }
    kill9(&mut service);
}

/// A subscriber that reads nothing while puts and deletes outrun it is not
/// dropped and its queue does not grow without bound: past
/// `SUBSCRIBER_LAG_BYTES` the service counts what it misses, and once it
/// has read what was queued it is told (`Missed`), hears every existing
/// object again and then `Resynced` — after which its view (what it heard
/// sealed since, less what it heard deleted) is exactly the store's.
#[test]
fn a_subscriber_that_falls_behind_is_told_and_resynced_not_dropped() {
    use shmwire::store::Notification;
    const TEST: &str = "a_subscriber_that_falls_behind_is_told_and_resynced_not_dropped";
    if child_role().is_some() {
        serve_store(shmwire::store::StoreConfig::new(64 << 20));
        return;
    }
    let env = Env::new("sublag");
    let mut service = spawn_store(TEST, &env, "sublag");
    let c = connect(&env.session);
    let mut sub = c.subscribe().unwrap();
    // 300 objects of 30 KB metadata (9 MB of notes, far beyond the
    // subscriber's ring and its 256 KiB of queue), then every other deleted,
    // while the subscriber reads nothing.
    let meta = vec![3u8; 30_000];
    for i in 0..300 {
        c.put(shared_oid(48, i), b"x", &meta).unwrap();
    }
    let gone: Vec<_> = (0..300).step_by(2).map(|i| shared_oid(48, i)).collect();
    c.delete(&gone).unwrap();
    let mut view = std::collections::HashSet::new();
    let mut fresh = std::collections::HashSet::new();
    let (mut resyncing, mut missed, mut resynced) = (false, 0u64, false);
    let sentinel = shared_oid(49, 0);
    let mut sentinel_put = false;
    let deadline = Instant::now() + GUARD;
    loop {
        assert!(
            Instant::now() < deadline,
            "no end after {} seen",
            view.len()
        );
        let n = sub
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap_or_else(|| panic!("nothing for 5 s (missed {missed}, resynced {resynced})"));
        match n {
            Notification::Sealed { id, metadata, .. } => {
                if id == sentinel {
                    assert!(!resyncing);
                    break;
                }
                assert_eq!(metadata, meta);
                if resyncing {
                    fresh.insert(id);
                } else {
                    view.insert(id);
                }
            }
            Notification::Deleted { id } => {
                view.remove(&id);
                fresh.remove(&id);
            }
            Notification::Missed { missed: m } => {
                assert!(m > 0);
                missed += m;
                resyncing = true;
                fresh.clear();
            }
            Notification::Resynced => {
                assert!(resyncing, "Resynced without Missed");
                resyncing = false;
                resynced = true;
                view = std::mem::take(&mut fresh);
                if !sentinel_put {
                    // Live notifications flow again.
                    c.put(sentinel, b"s", b"").unwrap();
                    sentinel_put = true;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        missed > 0 && resynced,
        "it never fell behind: the test proves nothing"
    );
    let want: std::collections::HashSet<_> =
        (1..300).step_by(2).map(|i| shared_oid(48, i)).collect();
    let extra: Vec<_> = view.difference(&want).collect();
    let lacking: Vec<_> = want.difference(&view).collect();
    assert!(
        extra.is_empty() && lacking.is_empty(),
        "the view after Resynced is not the store's: {} extra, {} lacking (first {:?} / {:?})",
        extra.len(),
        lacking.len(),
        extra.first(),
        lacking.first()
    );
    kill9(&mut service);
}

/// Clients that go quiet are served when they come back. The service's
/// mux stops looking at a connection quiet for 50–100 ms and arms its
/// wake-up instead (so a thousand idle clients cost the others nothing;
/// `Mux::active_count`). Here 24 clients and a subscriber in this process,
/// beside the service in its own, go quiet for 300 ms; then each client in
/// turn puts, gets and deletes an object, and the subscriber, which reads
/// nothing meanwhile, hears of every put and delete in order afterwards.
/// Twice, with a quiet spell before each round.
#[test]
fn clients_that_went_quiet_are_served_when_they_come_back() {
    use shmwire::store::Notification;
    const TEST: &str = "clients_that_went_quiet_are_served_when_they_come_back";
    if child_role().is_some() {
        serve_store(shmwire::store::StoreConfig::new(8 << 20));
        return;
    }
    let env = Env::new("quiet");
    let mut service = spawn_store(TEST, &env, "quiet");
    let clients: Vec<StoreClient> = (0..24).map(|_| connect(&env.session)).collect();
    let mut sub = connect(&env.session).subscribe().unwrap();
    for round in 0..2u8 {
        std::thread::sleep(Duration::from_millis(300));
        for (i, c) in clients.iter().enumerate() {
            let id = shared_oid(50 + round, i as u32);
            let t = Instant::now();
            c.put(id, &[round, i as u8], b"q").unwrap();
            let got = c.get(&[id], Duration::from_secs(5)).unwrap();
            assert_eq!(
                got[0].as_ref().map(|b| b.to_vec()),
                Some(vec![round, i as u8])
            );
            drop(got);
            c.delete(&[id]).unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "round {round}, client {i}: {:?}",
                t.elapsed()
            );
        }
        for i in 0..24u32 {
            let id = shared_oid(50 + round, i);
            match sub.recv_timeout(Duration::from_secs(5)).unwrap() {
                Some(Notification::Sealed { id: got, .. }) => assert_eq!(got, id, "round {round}"),
                other => panic!("round {round}, client {i}: {other:?}"),
            }
            match sub.recv_timeout(Duration::from_secs(5)).unwrap() {
                Some(Notification::Deleted { id: got }) => assert_eq!(got, id, "round {round}"),
                other => panic!("round {round}, client {i}: {other:?}"),
            }
        }
    }
    kill9(&mut service);
}

/// A client out of descriptors is told so, not that the store does not
/// run. With every descriptor taken but a few, a connect's look into the
/// session's directory could fail to open the store's entry (`EMFILE`),
/// which read as "no such worker", so `connect` said `NotRunning` (found
/// by `store_idle_clients` at `ulimit -n 1024`: "no object store named
/// …"). A child at `ulimit -n 256` takes every descriptor, then frees 1 to
/// 12 of them before each connect: none says `NotRunning`, some fail
/// naming "Too many open files", and with enough free one connects.
#[test]
fn a_client_out_of_descriptors_is_told_so_not_that_the_store_is_gone() {
    const TEST: &str = "a_client_out_of_descriptors_is_told_so_not_that_the_store_is_gone";
    match child_role().as_deref() {
        Some("service") => return serve_store(shmwire::store::StoreConfig::new(8 << 20)),
        Some(_) => {
            let s = child_session();
            let take = |hoard: &mut Vec<std::fs::File>| {
                while let Ok(f) = std::fs::File::open("/dev/null") {
                    hoard.push(f);
                }
            };
            let mut hoard = Vec::new();
            take(&mut hoard);
            for free in 1..=12 {
                hoard.truncate(hoard.len().saturating_sub(free));
                match StoreClient::connect(&s, DEFAULT_STORE_NAME) {
                    Ok(c) => {
                        println!("free {free}: connected");
                        drop(c);
                    }
                    Err(StoreError::NotRunning { name }) => {
                        println!("free {free}: NOT RUNNING {name}")
                    }
                    Err(e) => println!("free {free}: failed: {}", shmwire::error_chain(&e)),
                }
                take(&mut hoard);
            }
            println!("done");
            return;
        }
        None => {}
    }
    let env = Env::new("nofile");
    let mut service = spawn_store(TEST, &env, "nofile");
    let mut client = spawn_child_with_nofile(TEST, "client", &pass(&env, "nofile"), 256);
    let lines = stdout_lines(&mut client);
    let mut got = Vec::new();
    loop {
        let l = lines
            .recv_timeout(GUARD)
            .expect("the client child said nothing");
        if l.contains("done") {
            break;
        }
        // (The first may follow the harness's "test … ..." on its line.)
        if let Some(i) = l.find("free ") {
            got.push(l[i..].to_owned());
        }
    }
    let _ = client.wait();
    kill9(&mut service);
    assert_eq!(got.len(), 12, "{got:#?}");
    assert!(!got.iter().any(|l| l.contains("NOT RUNNING")), "{got:#?}");
    assert!(
        got.iter().any(|l| l.contains("Too many open files")),
        "{got:#?}"
    );
    assert!(got.iter().any(|l| l.contains("connected")), "{got:#?}");
}

/// An object held through the shared index by another process outlives
/// its delete, beside clients that hold nothing. A delete reads each
/// client's total first and that client's slot only when the total is not
/// 0 (idle clients cost a delete a cached load, not a cold slot line); the
/// holder's total must say it holds something, or the service would free
/// the object under it. The holder (a child) takes the object through the
/// index, the parent (with 40 idle clients and one that took and gave back
/// an object, all holding nothing) deletes it: the id stays in use, a put
/// that needs its room fails, the holder reads its bytes intact, and once
/// it drops its buffer the room comes back.
#[test]
fn an_object_held_through_the_index_elsewhere_outlives_its_delete_beside_idle_clients() {
    const TEST: &str =
        "an_object_held_through_the_index_elsewhere_outlives_its_delete_beside_idle_clients";
    const SIZE: usize = 1536 << 10;
    let x = shared_oid(60, 0);
    match child_role().as_deref() {
        Some("service") => {
            serve_store(shmwire::store::StoreConfig::new(4 << 20));
            return;
        }
        Some("holder") => {
            let c = connect(&child_session());
            assert_eq!(c.indexed(x), Some(true), "the object is in the index");
            let got = c.get(&[x], GUARD).unwrap();
            let held = got[0].as_ref().expect("sealed by the parent");
            println!("held");
            wait_for_go("never told to look");
            assert!(
                held[..] == contents(60, SIZE)[..],
                "bytes changed while held"
            );
            println!("intact");
            drop(got);
            println!("dropped");
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let env = Env::new("idleheld");
    let mut service = spawn_store(TEST, &env, "idleheld");
    let idle: Vec<StoreClient> = (0..40).map(|_| connect(&env.session)).collect();
    let a = connect(&env.session);
    // One client that took and gave back an object: its slot shows uses,
    // its total is 0 again.
    a.put(shared_oid(60, 1), b"once", b"o").unwrap();
    drop(idle[0].get(&[shared_oid(60, 1)], GUARD).unwrap());
    a.delete(&[shared_oid(60, 1)]).unwrap();
    a.put(x, &contents(60, SIZE), b"x").unwrap();
    let (go, env_vars) = pass_with_go(&env, "idleheld");
    let mut holder = spawn_child(TEST, "holder", &env_vars);
    let lines = stdout_lines(&mut holder);
    expect_line(&lines, "held");
    a.delete(&[x]).unwrap();
    assert!(held_by_one(&a, x), "the holder's reference was not seen");
    // Its room is not free: 3 MiB do not fit beside it in 4 MiB.
    let big = shared_oid(60, 2);
    assert!(
        matches!(
            a.put(big, &contents(61, 3 << 20), b""),
            Err(StoreError::StoreFull { .. })
        ),
        "the held object's room was given away"
    );
    std::fs::write(&go, b"").unwrap();
    expect_line(&lines, "intact");
    expect_line(&lines, "dropped");
    assert!(wait_status(&mut holder), "the holder failed");
    eventually("the room of the deleted object", || {
        a.put(big, &contents(61, 3 << 20), b"").is_ok()
    });
    drop(idle);
    kill9(&mut service);
}

/// Clients that hold a reference at one entry cost the service's seals
/// and eviction passes no read of their other slots, and what they hold
/// survives the passes: after 20,000 puts through a 4 MiB store (most of
/// them evicted, in batches) beside 12 such clients in another process,
/// their objects are there with their bytes, and the service has touched (mapped, in its
/// `/proc/<pid>/smaps`) no more of each client's 2 MiB of slots than the
/// kernel's fault-around window of the pages it had reason to read (the
/// client's total line and its one slot). Before the touched groups, every
/// seal and every eviction look read each such client's slot at that
/// object's entry — a cold line per client per object: an eviction pass
/// over 30,000 objects beside 1,000 clients stalled the store for half a
/// second (the attack on `08c4269`) — and here all 2 MiB were mapped.
#[test]
fn seals_and_evictions_read_no_slot_a_client_never_wrote() {
    const TEST: &str = "seals_and_evictions_read_no_slot_a_client_never_wrote";
    const READERS: u32 = 12;
    const ENTRIES: u32 = 256 << 10;
    match child_role().as_deref() {
        Some("service") => {
            serve_store(shmwire::store::StoreConfig::new(4 << 20).index_entries(ENTRIES));
            return;
        }
        Some("readers") => {
            let s = child_session();
            let readers: Vec<StoreClient> = (0..READERS).map(|_| connect(&s)).collect();
            // Each holds its object through the index while the parent's
            // puts evict everything else around it.
            let mut held = Vec::new();
            for (i, r) in readers.iter().enumerate() {
                let id = shared_oid(62, i as u32);
                assert_eq!(r.indexed(id), Some(true), "object {i} in the index");
                let got = r.get(&[id], GUARD).unwrap();
                assert_eq!(got[0].as_deref(), Some(&b"once"[..]));
                held.push(got);
            }
            println!("taken");
            wait_for_go("never told to go");
            for (i, got) in held.iter().enumerate() {
                assert_eq!(got[0].as_deref(), Some(&b"once"[..]), "object {i} changed");
            }
            println!("intact");
            drop(held);
            drop(readers);
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let env = Env::new("untouched");
    let mut service = spawn_store(TEST, &env, "untouched");
    let writer = connect(&env.session);
    for i in 0..READERS {
        writer.put(shared_oid(62, i), b"once", b"").unwrap();
    }
    let (go, env_vars) = pass_with_go(&env, "untouched");
    let mut readers = spawn_child(TEST, "readers", &env_vars);
    let lines = stdout_lines(&mut readers);
    expect_line(&lines, "taken");
    let data = [7u8; 1000];
    for i in 0..20_000 {
        writer.put(shared_oid(63, i), &data, b"").unwrap();
    }
    // The service's mappings of the readers' and the writer's slots.
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", service.id())).unwrap();
    let mut rss = Vec::new();
    let mut in_slots = false;
    for line in smaps.lines() {
        let header = line.split_whitespace().next().is_some_and(|t| {
            t.contains('-') && t.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
        });
        if header {
            in_slots = line.contains("/memfd:sref-");
        } else if let Some(kib) = line.strip_prefix("Rss:").filter(|_| in_slots) {
            rss.push(
                kib.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
    }
    // The held objects outlived every eviction pass.
    for i in 0..READERS {
        assert!(
            writer.contains(shared_oid(62, i)).unwrap(),
            "held object {i} evicted"
        );
    }
    std::fs::write(&go, b"").unwrap();
    expect_line(&lines, "intact");
    assert!(wait_status(&mut readers), "the readers failed");
    kill9(&mut service);
    assert_eq!(rss.len(), READERS as usize + 1, "slot mappings: {rss:?}");
    // At most two 64 KiB fault-around windows (the total's, the slot's)
    // and a page, of 2 MiB.
    assert!(
        rss.iter().all(|&kib| kib <= 132),
        "the service mapped slots no client wrote (KiB per client: {rss:?})"
    );
}

/// A client in another process that keeps reading every object through
/// the index while this one puts (and the store evicts) beside idle
/// clients never makes a put fail `StoreFull` with nothing held: an
/// object read since the store last looked gets a second chance on two
/// eviction passes of a create, not on the third. Before, every pass
/// could find every object read again and the create gave up (430 of
/// 3,000 puts failed beside 200 idle clients: the attack on `08c4269`).
#[test]
fn a_client_reading_everything_never_makes_a_put_fail_with_nothing_held() {
    const TEST: &str = "a_client_reading_everything_never_makes_a_put_fail_with_nothing_held";
    const FIT: u32 = 1_000;
    const PUTS: u32 = 3_000;
    match child_role().as_deref() {
        Some("service") => {
            serve_store(shmwire::store::StoreConfig::new(u64::from(FIT) * 128).index_entries(4096));
            return;
        }
        Some("reader") => {
            let c = connect(&child_session());
            let go = go_file();
            let deadline = Instant::now() + GUARD;
            let mut sweeps = 0u32;
            while !go.exists() {
                assert!(Instant::now() < deadline, "never told to stop");
                for i in 0..PUTS {
                    let id = shared_oid(64, i);
                    if c.indexed(id) == Some(true) {
                        drop(c.get(&[id], Duration::ZERO).unwrap());
                    }
                }
                sweeps += 1;
                if sweeps == 1 {
                    println!("reading");
                }
            }
            println!("sweeps {sweeps}");
            return;
        }
        Some(other) => panic!("unknown role {other}"),
        None => {}
    }
    let env = Env::new("readall");
    let mut service = spawn_store(TEST, &env, "readall");
    let idle: Vec<StoreClient> = (0..100).map(|_| connect(&env.session)).collect();
    let writer = connect(&env.session);
    let data = [5u8; 100];
    for i in 0..FIT / 2 {
        writer.put(shared_oid(64, i), &data, b"").unwrap();
    }
    let (go, env_vars) = pass_with_go(&env, "readall");
    let mut reader = spawn_child(TEST, "reader", &env_vars);
    let lines = stdout_lines(&mut reader);
    expect_line(&lines, "reading");
    let mut failed = Vec::new();
    for i in FIT / 2..PUTS {
        if let Err(e) = writer.put(shared_oid(64, i), &data, b"") {
            failed.push((i, e));
        }
    }
    std::fs::write(&go, b"").unwrap();
    let sweeps = expect_line(&lines, "sweeps ");
    assert!(wait_status(&mut reader), "the reader failed");
    drop(idle);
    kill9(&mut service);
    assert!(
        failed.is_empty(),
        "{} of {} puts failed ({sweeps}), the first: {:?}",
        failed.len(),
        PUTS - FIT / 2,
        failed.first()
    );
}

/// A node that answers a pull request with an OK header declaring
/// `declared` bytes of data and then sends the first `sent` of them and
/// nothing more, to every connection it accepts until `stop` is set (it
/// holds them all open); its thread returns how many it accepted.
fn declaring_node(
    declared: u64,
    sent: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<usize>) {
    pacing_node(declared, sent, (0, Duration::from_millis(10)), stop)
}

/// Another node for pulls: a store of `capacity` bytes in this process
/// (session `name`) holding `objects`, and its object endpoint. Keep the
/// three alive while pulling; shut the server down at the end.
fn pull_node(
    name: &str,
    capacity: u64,
    objects: &[(shmwire::ids::ObjectId, &[u8])],
) -> (Env, StoreService, shmwire::store::PullServer) {
    use shmwire::store::{PullServer, PullServerConfig};
    let env = Env::new(name);
    let store = env.store(capacity);
    let server = PullServer::start(
        connect(&env.session),
        PullServerConfig::new("127.0.0.1:0".parse().unwrap()),
    )
    .unwrap();
    let writer = connect(&env.session);
    for (id, data) in objects {
        writer.put(*id, data, b"").unwrap();
    }
    (env, store, server)
}

/// One pull per address of `nodes`, on threads, each from a client of
/// `env`'s store, of object `shared_oid(tag, i)`, within `timeout`: each
/// thread returns the pull's outcome and how long it took.
fn pull_from_each(
    env: &Env,
    nodes: &[(std::net::SocketAddr, std::thread::JoinHandle<usize>)],
    tag: u8,
    timeout: Duration,
) -> Vec<std::thread::JoinHandle<(Result<(), StoreError>, Duration)>> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, (addr, _))| {
            let (c, addr) = (connect(&env.session), *addr);
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = c.pull(shared_oid(tag, i as u32), addr, timeout).map(drop);
                (r, t.elapsed())
            })
        })
        .collect()
}

/// Remote nodes declare sizes before they send the data, and may then
/// send it slowly or not at all: pulls from them hold at most the store's
/// pull capacity (half the arena by default), and local creates keep the
/// rest (attack on `25d4f40`: four endpoints declaring 15 MiB each held
/// 60 MiB of a 64 MiB store unsealed for each task's pull timeout, and a
/// local 8 MiB put failed `StoreFull`). Here, in a 16 MiB store in a child
/// process, three nodes declare 6 MiB and send the first 68 KiB (past the
/// puller's 64 KiB prefix, so that it creates the object) and nothing
/// more: one pull is let in (6 MiB unsealed) and the others queue; each
/// pull let in while another waits gives its room up (`PullPreempted`,
/// its transfer far behind its pace) and the last runs to its deadline.
/// Meanwhile a local 8 MiB put succeeds (before the capacity: two pulls
/// held 12 MiB and it failed `StoreFull`). Afterwards an honest 10 MiB
/// pull, beyond the 8 MiB capacity, comes whole: with no other pull in
/// progress one is let in whatever its size, as Ray's `PullManager` does.
#[test]
fn pulls_from_nodes_that_declare_much_and_send_nothing_leave_local_creates_room() {
    const TEST: &str =
        "pulls_from_nodes_that_declare_much_and_send_nothing_leave_local_creates_room";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullcap");
    let _service = service_child(TEST, &env, "pullcap");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = shmwire::store::PULL_PREFIX + 4096;
    let nodes: Vec<_> = (0..3)
        .map(|_| declaring_node(6 * MIB, sent, stop.clone()))
        .collect();
    let timeout = Duration::from_millis(2500);
    let pullers = pull_from_each(&env, &nodes, 20, timeout);
    std::thread::sleep(Duration::from_millis(700));
    let local = connect(&env.session);
    let put = local.put(shared_oid(21, 0), &contents(21, (8 * MIB) as usize), b"");
    let results: Vec<_> = pullers.into_iter().map(|p| p.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let asked: Vec<usize> = nodes.into_iter().map(|(_, t)| t.join().unwrap()).collect();
    assert!(
        put.is_ok(),
        "a local put failed while pulls waited for data: {put:?}"
    );
    // A pull waiting for room asks its remote again only once there is
    // room (before: every 50 ms, the remote sending the object each time).
    assert!(
        asked.iter().all(|&n| n <= 2),
        "connections per node: {asked:?}"
    );
    let mut preempted = 0;
    for (r, took) in &results {
        match r {
            Err(e @ StoreError::PullsFull { capacity, .. }) => {
                assert_eq!(*capacity, 8 * MIB, "{e}")
            }
            Err(StoreError::PullPreempted { declared, .. }) => {
                assert_eq!(*declared, 6 * MIB);
                preempted += 1;
            }
            Err(StoreError::PullTimedOut { .. }) => {}
            other => panic!("a pull from a node that sends nothing ended {other:?}"),
        }
        assert!(
            *took < timeout + Duration::from_secs(1),
            "a pull took {took:?}"
        );
    }
    assert!(preempted >= 1, "{results:?}");

    // Every pull ended: one larger than the capacity is let in.
    let big = shared_oid(22, 0);
    let data = contents(22, (10 * MIB) as usize);
    let (_remote, _remote_store, server) = pull_node("pullcap-remote", 32 << 20, &[(big, &data)]);
    let got = local.pull(big, server.addr(), GUARD).unwrap();
    assert_eq!(checksum(&got), checksum(&data));
    drop(got);
    server.shutdown();
}

/// A pull whose remote sends far slower than its deadline needs gives its
/// room up to a pull waiting for it (the attack on `964b4bb`, `wcap`,
/// left open on `a5a8db4`: endpoints that sent their first 64 KiB and
/// then trickled held the pull capacity to each pull's deadline, and other
/// pulls failed `PullsFull`). Here, in a 16 MiB store in a child process
/// (8 MiB pull capacity):
///
/// - a node declaring 6 MiB that sends 68 KiB and then 1 KiB every 20 ms
///   holds its room while nobody waits (400 ms); then an honest 4 MiB
///   pull, which does not fit beside it, comes within 700 ms (before: it
///   failed `PullsFull` at its 2 s deadline), and the trickling pull ends
///   `PullPreempted`;
/// - a node sending 6 MiB at 16 MiB/s, well within the pace its 3 s
///   deadline needs, keeps its room while an honest 4 MiB pull waits for
///   it: both come whole (a pull on its pace is never preempted).
#[test]
fn pulls_behind_their_pace_give_their_room_to_a_waiting_pull() {
    const TEST: &str = "pulls_behind_their_pace_give_their_room_to_a_waiting_pull";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullpace");
    let _service = service_child(TEST, &env, "pullpace");
    let honest = [shared_oid(27, 0), shared_oid(27, 1)];
    let data = contents(27, (4 * MIB) as usize);
    let (_remote, _remote_store, server) = pull_node(
        "pullpace-remote",
        32 << 20,
        &[(honest[0], &data), (honest[1], &data)],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = shmwire::store::PULL_PREFIX + 4096;
    let pull_honest = |id| {
        let t = Instant::now();
        let got = connect(&env.session)
            .pull(id, server.addr(), Duration::from_secs(2))
            .map(|b| checksum(&b));
        (got, t.elapsed())
    };

    // Far behind its pace.
    let slow = vec![pacing_node(
        6 * MIB,
        sent,
        (1024, Duration::from_millis(20)),
        stop.clone(),
    )];
    let slow_pull = pull_from_each(&env, &slow, 28, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(400));
    let (got, took) = pull_honest(honest[0]);
    let (slow_result, slow_took) = slow_pull.into_iter().next().unwrap().join().unwrap();
    assert_eq!(got.ok(), Some(checksum(&data)), "the honest pull");
    assert!(
        took < Duration::from_millis(700),
        "the honest pull waited {took:?} beside a trickling one"
    );
    match slow_result {
        Err(StoreError::PullPreempted {
            declared, received, ..
        }) => assert!(
            declared == 6 * MIB && received < MIB,
            "{declared} {received}"
        ),
        other => panic!("the trickling pull ended {other:?}"),
    }
    assert!(
        slow_took >= Duration::from_millis(400),
        "the trickling pull gave its room up with nobody waiting, after {slow_took:?}"
    );

    // On its pace.
    let steady = vec![pacing_node(
        6 * MIB,
        sent,
        (160 << 10, Duration::from_millis(10)),
        stop.clone(),
    )];
    let steady_pull = pull_from_each(&env, &steady, 29, Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(100));
    let (got, _) = pull_honest(honest[1]);
    let (steady_result, _) = steady_pull.into_iter().next().unwrap().join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for (_, t) in slow.into_iter().chain(steady) {
        t.join().unwrap();
    }
    server.shutdown();
    assert_eq!(got.ok(), Some(checksum(&data)), "the honest pull");
    assert!(
        steady_result.is_ok(),
        "a pull on its pace ended {steady_result:?}"
    );
    let copy = connect(&env.session)
        .get(&[shared_oid(29, 0)], Duration::ZERO)
        .unwrap()
        .remove(0)
        .expect("the steady pull's copy");
    assert!(copy.len() == (6 * MIB) as usize && copy.iter().all(|&b| b == 7));
}

/// A pull whose remote answers slowly gets in beside other pulls back to
/// back (the tenth attack's `slowrm`, on `34a73e0`): a pull waiting for
/// room lets the remote's connection go and asks the remote again once the
/// store tells it of room; its turn then lasted 250 ms (`PULL_QUEUE_TTL`),
/// so a remote taking 300 ms to answer lost it at every grant to the next
/// pull asking, and the pull failed at its deadline. Here, in a 16 MiB
/// store (8 MiB pull capacity) in a child process, three threads pull
/// 6 MiB objects from a real node back to back (one at a time fits), and a
/// node that answers each request 300 ms after it came sends a 2 MiB
/// object: the slow pull comes whole within its 4 s timeout (≈ 0.6 s here;
/// a turn told of room is kept for `PULL_GRANT_TTL`, 1 s). Without that it
/// failed at its deadline in 3 of 3 runs, beside 270–380 other pulls.
#[test]
fn a_pull_whose_remote_answers_slowly_gets_in_beside_pulls_back_to_back() {
    const TEST: &str = "a_pull_whose_remote_answers_slowly_gets_in_beside_pulls_back_to_back";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullslow");
    let _service = service_child(TEST, &env, "pullslow");
    let busy = [shared_oid(31, 0), shared_oid(31, 1), shared_oid(31, 2)];
    let data = contents(31, (6 * MIB) as usize);
    let (_remote, _remote_store, server) = pull_node(
        "pullslow-remote",
        32 << 20,
        &[(busy[0], &data), (busy[1], &data), (busy[2], &data)],
    );
    // Each thread pulls its own object again and again.
    let (result, took, beside) = slow_pull_beside_busy(
        &env,
        server.addr(),
        3,
        |i, _| shared_oid(31, i as u32),
        2 * MIB,
        32,
        Duration::from_secs(4),
    );
    server.shutdown();
    assert!(
        result.is_ok(),
        "the slow remote's pull ended {result:?} after {took:?}, beside {beside} other pulls"
    );
    assert!(
        beside >= 2,
        "only {beside} other pulls ran beside the slow one"
    );
    let copy = connect(&env.session)
        .get(&[shared_oid(32, 0)], Duration::ZERO)
        .unwrap()
        .remove(0)
        .expect("the slow pull's copy");
    assert!(copy.len() == (2 * MIB) as usize && copy.iter().all(|&b| b == 7));
}

/// Pulls a `size`-byte object (`shared_oid(tag, 0)`) within `timeout` from a node
/// that answers each request 300 ms after it came, while `threads` threads
/// pull from `busy` back to back (thread `i`'s `n`th pull: object
/// `busy_id(i, n)`, its copy deleted after) — started once each thread
/// pulled once. Returns the slow pull's outcome, how long it took, and how
/// many busy pulls ran meanwhile.
fn slow_pull_beside_busy(
    env: &Env,
    busy: std::net::SocketAddr,
    threads: usize,
    busy_id: fn(usize, u32) -> shmwire::ids::ObjectId,
    size: u64,
    tag: u8,
    timeout: Duration,
) -> (Result<(), StoreError>, Duration, usize) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (enough, pulled) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let pullers: Vec<_> = (0..threads)
        .map(|i| {
            let c = connect(&env.session);
            let (enough, pulled) = (enough.clone(), pulled.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + GUARD;
                for n in 0.. {
                    if enough.load(Ordering::Relaxed) || Instant::now() >= end {
                        break;
                    }
                    let id = busy_id(i, n);
                    drop(c.pull(id, busy, Duration::from_secs(10)).unwrap());
                    c.delete(&[id]).unwrap();
                    pulled.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let deadline = Instant::now() + GUARD;
    while pulled.load(Ordering::Relaxed) < threads {
        assert!(Instant::now() < deadline, "the busy pulls do not run");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let slow = vec![answering_node(
        size,
        Duration::from_millis(300),
        size as usize,
        (0, Duration::from_millis(10)),
        stop.clone(),
    )];
    let before = pulled.load(Ordering::Relaxed);
    let slow_pull = pull_from_each(env, &slow, tag, timeout);
    let (result, took) = slow_pull.into_iter().next().unwrap().join().unwrap();
    let beside = pulled.load(Ordering::Relaxed) - before;
    enough.store(true, Ordering::Relaxed);
    for t in pullers {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for (_, t) in slow {
        t.join().unwrap();
    }
    (result, took, beside)
}

/// The same beside competing transfers longer than a second (the attack
/// on `b2a9833`: a 300 ms remote beside 20 MiB transfers at 15 MB/s failed
/// its 30 s deadline). A pull that came back with its remote's answer to
/// find its room gone waited for room at most `PULL_GRANT_TTL` (1 s); a
/// competing transfer that outlasted that sent it back to its remote, and
/// its room lapsed again while the remote answered. Now it waits until
/// room comes (at most `PULL_ANSWER_HOLD`, 4 s), first in line. Here two
/// threads pull 6 MiB objects back to back from a node that sends them in
/// ≈ 1.4 s, and the slow node's 4 MiB object (8 MiB pull capacity: it fits
/// beside none of them) comes whole within its 8 s timeout.
#[test]
fn a_pull_whose_remote_answers_slowly_gets_in_beside_transfers_longer_than_a_second() {
    const TEST: &str =
        "a_pull_whose_remote_answers_slowly_gets_in_beside_transfers_longer_than_a_second";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    let (result, took, beside) = slow_pull_beside_paced(TEST, "pullslow3", 60, 8);
    assert!(
        result.is_ok(),
        "the slow remote's pull ended {result:?} after {took:?}, beside {beside} other pulls"
    );
}

/// In a 16 MiB store (8 MiB pull capacity) in a child process of `test`
/// (session `session`), two threads pull 6 MiB objects back to back
/// (each a new object: the node sends any id) from a node that sends each
/// in 24 chunks of 256 KiB, one every `tick_ms`, while a 4 MiB object is
/// pulled within `timeout_s` from a node answering 300 ms after each
/// request ([`slow_pull_beside_busy`]'s outcome).
fn slow_pull_beside_paced(
    test: &str,
    session: &str,
    tick_ms: u64,
    timeout_s: u64,
) -> (Result<(), StoreError>, Duration, usize) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new(session);
    let _service = service_child(test, &env, session);
    let stop = Arc::new(AtomicBool::new(false));
    let (busy, busy_node) = pacing_node(
        6 * MIB,
        shmwire::store::PULL_PREFIX,
        (256 << 10, Duration::from_millis(tick_ms)),
        stop.clone(),
    );
    let outcome = slow_pull_beside_busy(
        &env,
        busy,
        2,
        |i, n| shared_oid(35 + i as u8, n),
        4 * MIB,
        37,
        Duration::from_secs(timeout_s),
    );
    stop.store(true, Ordering::Relaxed);
    busy_node.join().unwrap();
    outcome
}

/// A local puller stopped in the middle of a transfer (`SIGSTOP`) holds
/// its object's share of the pull capacity only until its pull's deadline
/// (and `PULL_DEADLINE_GRACE`): the deadline travels with the create. The
/// attack on `5cc8520`: a stopped 20 MiB pull made every pull that did not
/// fit beside it fail `PullsFull` for a minute and more. Here, in a 16 MiB
/// store (8 MiB pull capacity) in a child process, a puller in another
/// child process creates a 6 MiB object for a 1.5 s pull from a node that
/// sends slowly and is stopped; an honest 4 MiB pull from a real node,
/// which fits only once the stopped one no longer counts, comes whole
/// within 4 s of the stopped pull's start (it failed `PullsFull` at its
/// 6 s deadline before).
#[test]
fn a_stopped_puller_holds_no_pull_room_past_its_deadline() {
    const TEST: &str = "a_stopped_puller_holds_no_pull_room_past_its_deadline";
    match child_role().as_deref() {
        Some("puller") => {
            let c = connect(&child_session());
            let from = child_env("SHMWIRE_TEST_FROM").parse().unwrap();
            let mut said = false;
            let _ = c.pull_with_progress(
                shared_oid(44, 0),
                from,
                Duration::from_millis(1500),
                |got, _| {
                    // Created: more than the prefix came.
                    if !said && got > shmwire::store::PULL_PREFIX as u64 {
                        said = true;
                        println!("created");
                    }
                },
            );
            println!("done");
            std::thread::sleep(GUARD);
            return;
        }
        Some(_) => {
            run_service_child();
            return;
        }
        None => {}
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullstopped");
    let _service = service_child(TEST, &env, "pullstopped");
    let honest = shared_oid(45, 0);
    let data = contents(45, (4 * MIB) as usize);
    let (_remote, _remote_store, server) =
        pull_node("pullstopped-remote", 16 << 20, &[(honest, &data)]);
    let stop = Arc::new(AtomicBool::new(false));
    // 6 MiB: the prefix and 64 KiB at once, then 64 KiB every 50 ms.
    let (slow, slow_node) = pacing_node(
        6 * MIB,
        shmwire::store::PULL_PREFIX + (64 << 10),
        (64 << 10, Duration::from_millis(50)),
        stop.clone(),
    );
    let mut vars = pass(&env, "pullstopped");
    vars.push(("SHMWIRE_TEST_FROM", slow.to_string()));
    let started = Instant::now();
    let mut puller = Reaped(spawn_child(TEST, "puller", &vars));
    let lines = stdout_lines(&mut puller.0);
    expect_line(&lines, "created");
    job_control::stop_process(puller.pid());
    let c = connect(&env.session);
    let t = Instant::now();
    let got = c.pull(honest, server.addr(), Duration::from_secs(6));
    let took = t.elapsed();
    let since_start = started.elapsed();
    drop(puller);
    stop.store(true, Ordering::Relaxed);
    slow_node.join().unwrap();
    server.shutdown();
    let got =
        got.unwrap_or_else(|e| panic!("the honest pull beside a stopped one: {e} after {took:?}"));
    assert_eq!(checksum(&got), checksum(&data));
    assert!(
        since_start < Duration::from_secs(4),
        "the honest pull came {since_start:?} after the stopped one started"
    );
}

/// The same beside competing transfers that take a while (the attack on
/// `2dd8bde`, `ATK_FRATE=125 slowrm`): a pull told of room, whose remote
/// answers in 300 ms, found the room gone to a pull that started in the
/// meantime (a turn reserves it 250 ms), let its remote go, waited, asked
/// it again, and lost the room the same way every time. Here two threads
/// pull 6 MiB objects back to back from a node that sends them in
/// ≈ 150 ms, and the slow node's 4 MiB object needs the room of one of
/// them (8 MiB pull capacity): it now waits for room with its remote's
/// answer in hand, at its place, and comes whole within its 4 s timeout.
#[test]
fn a_pull_whose_remote_answers_slowly_gets_in_beside_slow_transfers() {
    const TEST: &str = "a_pull_whose_remote_answers_slowly_gets_in_beside_slow_transfers";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    let (result, took, beside) = slow_pull_beside_paced(TEST, "pullslow2", 6, 4);
    assert!(
        result.is_ok(),
        "the slow remote's pull ended {result:?} after {took:?}, beside {beside} other pulls"
    );
    assert!(
        beside >= 2,
        "only {beside} other pulls ran beside the slow one"
    );
}

/// Remote nodes that fail every turn they are given hold honest pulls up
/// hardly at all (the attacks on `5cc8520` and `2dd8bde`): each hostile
/// pull is told 6 MiB and gets the first 68 KiB, queues for room, and when
/// told of room asks its remote again, which answers a bad header at once
/// — the pull fails, its caller starts the next. A first fix for slow
/// remotes kept a pull told of room its room for 1 s, and three such
/// callers made most honest pulls fail `PullsFull` at their 2 s deadlines;
/// with the room kept `PULL_QUEUE_TTL` (250 ms) each honest pull still
/// waited ≈ 0.7 s behind them. Now a pull that fails after it queued
/// leaves the queue at once (`PullLeave`). Here, in a 16 MiB store (8 MiB
/// pull capacity) in a child process, three threads pull from such a node
/// back to back while five honest 4 MiB pulls from a real node, one after
/// the other, each with a 2 s timeout, must all come whole, in under 2 s
/// together (≈ 65 ms each here; ≈ 0.65–0.86 s each without the leave, and
/// with the room kept 1 s 2 of 5 failed in each of 3 runs).
#[test]
fn remotes_that_fail_every_turn_hold_honest_pulls_up_hardly_at_all() {
    const TEST: &str = "remotes_that_fail_every_turn_hold_honest_pulls_up_hardly_at_all";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullturn");
    let _service = service_child(TEST, &env, "pullturn");
    let honest: Vec<_> = (0..5).map(|i| shared_oid(33, i)).collect();
    let data = contents(33, (4 * MIB) as usize);
    let objects: Vec<_> = honest.iter().map(|id| (*id, &data[..])).collect();
    let (_remote, _remote_store, server) = pull_node("pullturn-remote", 32 << 20, &objects);
    let stop = Arc::new(AtomicBool::new(false));
    let (hostile, node) =
        turn_taking_node(6 * MIB, shmwire::store::PULL_PREFIX + 4096, stop.clone());
    let next = Arc::new(AtomicU32::new(0));
    let attackers: Vec<_> = (0..3)
        .map(|_| {
            let c = connect(&env.session);
            let (stop, next) = (stop.clone(), next.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + GUARD;
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let id = shared_oid(34, next.fetch_add(1, Ordering::Relaxed));
                    let _ = c.pull(id, hostile, Duration::from_secs(2));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let c = connect(&env.session);
    let mut outcomes = Vec::new();
    for id in &honest {
        let t = Instant::now();
        let got = c
            .pull(*id, server.addr(), Duration::from_secs(2))
            .map(|b| checksum(&b));
        outcomes.push((got.map_err(|e| e.to_string()), t.elapsed()));
    }
    let hostile_pulls = next.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        t.join().unwrap();
    }
    node.join().unwrap();
    server.shutdown();
    assert!(
        outcomes
            .iter()
            .all(|(got, _)| got.as_ref().ok() == Some(&checksum(&data))),
        "honest pulls beside {hostile_pulls} hostile ones: {outcomes:?}"
    );
    assert!(hostile_pulls >= 6, "only {hostile_pulls} hostile pulls ran");
    let total: Duration = outcomes.iter().map(|(_, took)| *took).sum();
    assert!(
        total < Duration::from_secs(2),
        "the honest pulls took {total:?} beside {hostile_pulls} hostile ones: {outcomes:?}"
    );
}

/// Two local clients pulling the same local id share its place in the
/// store's queue, and one that gives up takes only itself out (the attack
/// on `8c8359a`: B's `PullLeave` threw A's pull of the same id behind a
/// pull that queued later). Here, in a 16 MiB store (8 MiB pull capacity)
/// in a child process, a 6 MiB transfer of ≈ 0.7 s holds the room; A
/// queues for a 4 MiB object, B for the same local id (from another
/// node) with a 300 ms timeout, then C for a 6 MiB object; B fails at its
/// deadline. When the transfer ends, A comes before C (A and C do not fit
/// together). Without the per-client leave, C came first.
#[test]
fn a_pull_given_up_leaves_another_clients_pull_of_the_same_id_in_place() {
    const TEST: &str = "a_pull_given_up_leaves_another_clients_pull_of_the_same_id_in_place";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullsame");
    let _service = service_child(TEST, &env, "pullsame");
    let (x, y) = (shared_oid(46, 0), shared_oid(46, 1));
    let (dx, dy) = (
        contents(46, (4 * MIB) as usize),
        contents(47, (6 * MIB) as usize),
    );
    let (_remote, _remote_store, server) =
        pull_node("pullsame-remote", 32 << 20, &[(x, &dx), (y, &dy)]);
    let stop = Arc::new(AtomicBool::new(false));
    // 6 MiB in 24 chunks of 256 KiB, one every 30 ms.
    let (busy, busy_node) = pacing_node(
        6 * MIB,
        shmwire::store::PULL_PREFIX,
        (256 << 10, Duration::from_millis(30)),
        stop.clone(),
    );
    let (created_tx, created) = std::sync::mpsc::channel();
    let c = connect(&env.session);
    let busy_pull = std::thread::spawn(move || {
        let mut said = false;
        c.pull_with_progress(
            shared_oid(48, 0),
            busy,
            Duration::from_secs(10),
            |got, _| {
                if !said && got > shmwire::store::PULL_PREFIX as u64 {
                    said = true;
                    let _ = created_tx.send(());
                }
            },
        )
        .map(drop)
    });
    created.recv_timeout(GUARD).expect("the busy pull started");
    let start = Instant::now();
    let pull_at = |delay: u64, id, from, local, timeout: Duration| {
        let c = connect(&env.session);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(delay));
            let r = c.pull_into(id, from, local, timeout).map(|b| checksum(&b));
            (r, start.elapsed())
        })
    };
    let a = pull_at(0, x, server.addr(), x, Duration::from_secs(10));
    let b = pull_at(20, shared_oid(49, 0), busy, x, Duration::from_millis(300));
    let later = pull_at(60, y, server.addr(), y, Duration::from_secs(10));
    let (a, b, later) = (a.join().unwrap(), b.join().unwrap(), later.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    busy_pull.join().unwrap().unwrap();
    busy_node.join().unwrap();
    server.shutdown();
    assert!(b.0.is_err(), "B's pull was to fail at its deadline: {b:?}");
    assert_eq!(a.0.as_ref().ok(), Some(&checksum(&dx)), "A: {a:?}");
    assert_eq!(later.0.as_ref().ok(), Some(&checksum(&dy)), "C: {later:?}");
    assert!(
        a.1 < later.1,
        "A, queued first, came at {:?}, C at {:?}",
        a.1,
        later.1
    );
}

/// A remote node that declares a size and sends nothing holds no room in
/// the pulling store (the attack on `964b4bb`: one such node declaring
/// 60 MiB evicted every cached object of a 64 MiB store and failed a
/// local 8 MiB put for its pull's whole timeout; a dozen declaring the
/// pull capacity failed every other pull `PullsFull`): a pull creates the
/// object only once the first 64 KiB of data came. Here, in a 16 MiB
/// store in a child process holding six cached 1 MiB objects, four nodes
/// declare 12 MiB each and send nothing. Meanwhile a local 9 MiB put
/// succeeds, no cached object is evicted, and an honest 1 MiB pull from a
/// real node comes at once; each silent pull ends `PullTimedOut`.
#[test]
fn pulls_from_nodes_that_send_nothing_hold_no_room() {
    const TEST: &str = "pulls_from_nodes_that_send_nothing_hold_no_room";
    if child_role().is_some() {
        run_service_child();
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const MIB: u64 = 1 << 20;
    let env = Env::new("pullsilent");
    let _service = service_child(TEST, &env, "pullsilent");
    let local = connect(&env.session);
    let cached: Vec<_> = (0..6).map(|i| shared_oid(23, i)).collect();
    for &id in &cached {
        local.put(id, &contents(23, MIB as usize), b"").unwrap();
    }
    let honest = shared_oid(24, 0);
    let data = contents(24, MIB as usize);
    let (_remote, _remote_store, server) =
        pull_node("pullsilent-remote", 8 << 20, &[(honest, &data)]);

    let stop = Arc::new(AtomicBool::new(false));
    let nodes: Vec<_> = (0..4)
        .map(|_| declaring_node(12 * MIB, 0, stop.clone()))
        .collect();
    let timeout = Duration::from_millis(2000);
    let pullers = pull_from_each(&env, &nodes, 25, timeout);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    let got = local
        .pull(honest, server.addr(), GUARD)
        .map(|b| checksum(&b));
    let honest_took = t.elapsed();
    let put = local.put(shared_oid(26, 0), &contents(26, (9 * MIB) as usize), b"");
    let still: Vec<bool> = cached
        .iter()
        .map(|&id| local.contains(id).unwrap())
        .collect();
    let results: Vec<_> = pullers.into_iter().map(|p| p.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    for (_, t) in nodes {
        t.join().unwrap();
    }
    server.shutdown();
    assert_eq!(got.ok(), Some(checksum(&data)), "the honest pull");
    assert!(
        honest_took < Duration::from_millis(500),
        "the honest pull took {honest_took:?}"
    );
    assert!(
        put.is_ok(),
        "a local put failed beside silent pulls: {put:?}"
    );
    assert!(
        still.iter().all(|&c| c),
        "cached objects evicted for silent pulls: {still:?}"
    );
    for (r, took) in &results {
        assert!(
            matches!(r, Err(StoreError::PullTimedOut { .. })),
            "a pull from a node that sends nothing ended {r:?}"
        );
        assert!(
            *took < timeout + Duration::from_secs(1),
            "a pull took {took:?}"
        );
    }
}
