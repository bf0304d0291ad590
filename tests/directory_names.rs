//! Worker names are unique among live workers even when processes claim
//! one at the same moment (found by the attack on `7c472c6`: six processes
//! registering `dup` at the same millisecond left 2–3 live holders in 9
//! rounds of 10). Real processes: each claimant is this test binary
//! re-executed in a child role. Also: the names lock's bounded wait (a
//! stopped holder) and what is refused in its place (a stray FIFO,
//! directory, symbolic link, socket), each its own temporary session root.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shmwire::ids::WorkerId;
use shmwire::node::{Directory, NAMES_LOCK_WAIT};
use shmwire::shm::{Session, NAMES_LOCK_FILE};
use shmwire::transport::{Endpoint, PublishError, Published};

/// The child role: `claim|<root>|<session>|<start ns since epoch>|<name>`
/// or `hold|<lock path>`.
const ROLE_ENV: &str = "SHMWIRE_DIRECTORY_NAMES_ROLE";
/// Bound on every wait for a child.
const BOUND: Duration = Duration::from_secs(30);

fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("swdn")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn named(name: &str) -> Endpoint {
    let mut e = Endpoint::new(WorkerId::from_random());
    e.name = Some(name.into());
    e
}

/// Children killed and reaped however the test ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs this test binary's `test` in a child role; its stdout is piped.
fn spawn_role(test: &str, role: String) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Sends what follows `@@` on each line of `child`'s stdout to `tx`, tagged with `i`.
fn forward_lines(i: usize, child: &mut Child, tx: mpsc::Sender<(usize, String)>) {
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            // libtest's "test … ... " may precede it on the line.
            if let Some(at) = line.find("@@") {
                if tx.send((i, line[at + 2..].to_owned())).is_err() {
                    break;
                }
            }
        }
    });
}

/// Waits for `child` to exit, at most `BOUND` (then the guard kills it).
fn reap(child: &mut Child) {
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(t.elapsed() < BOUND, "child {} did not exit", child.id());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child role, if this process is one (never returns then).
fn child_role() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    // Never outlive a lost parent by more than the bound.
    std::thread::spawn(|| {
        std::thread::sleep(BOUND);
        std::process::exit(3);
    });
    let mut parts = role.split('|');
    match parts.next().unwrap() {
        "claim" => {
            let root = parts.next().unwrap();
            let session = parts.next().unwrap();
            let start: u128 = parts.next().unwrap().parse().unwrap();
            let name = parts.next().unwrap();
            let session = Session::open_in(root, session).unwrap();
            let dir = Directory::for_session(&session).unwrap();
            let endpoint = named(name);
            // Warm: the directory read once before the race.
            dir.list().unwrap();
            let late = now_ns() > start;
            while now_ns() < start {
                std::hint::spin_loop();
            }
            let result = dir.register(&endpoint);
            let line = match &result {
                Ok(_) => format!("@@OK {} late={late}", endpoint.worker_id),
                Err(PublishError::Refused { why, .. }) => format!("@@REFUSED {why}"),
                Err(e) => format!("@@ERROR {e}: {:?}", std::error::Error::source(e)),
            };
            println!("{line}");
            std::io::stdout().flush().unwrap();
            // Held until the parent closes stdin: every claimant of the
            // round tries while the winner lives.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(result);
        }
        "hold" => {
            let path = parts.next().unwrap();
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .unwrap();
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).unwrap();
            println!("@@HELD");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(BOUND);
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Six processes register the name `dup` at the same instant, eight
/// rounds: in each exactly one succeeds, the others are refused naming
/// the name, and the directory lists one live `dup`. Without the names
/// lock 2–3 of them held it at once in most rounds.
#[test]
fn one_name_claimed_at_once_by_six_processes_has_one_holder() {
    child_role();
    const CLAIMANTS: usize = 6;
    const ROUNDS: usize = 8;
    let tmp = scratch();
    let root = tmp.path().join("root");
    let session = Session::open_in(&root, "names").unwrap();
    let dir = Directory::for_session(&session).unwrap();
    let test = "one_name_claimed_at_once_by_six_processes_has_one_holder";
    for round in 0..ROUNDS {
        let start = now_ns() + Duration::from_millis(600).as_nanos();
        let (tx, rx) = mpsc::channel();
        let mut children = Children(Vec::new());
        for i in 0..CLAIMANTS {
            let role = format!("claim|{}|names|{start}|dup", root.display());
            let mut c = spawn_role(test, role);
            forward_lines(i, &mut c, tx.clone());
            children.0.push(c);
        }
        drop(tx);
        let mut results = vec![None; CLAIMANTS];
        let t = Instant::now();
        while results.iter().any(Option::is_none) {
            let left = BOUND.saturating_sub(t.elapsed());
            let (i, line) = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("round {round}: claimants silent: {results:?}"));
            results[i] = Some(line);
        }
        let results: Vec<String> = results.into_iter().map(Option::unwrap).collect();
        let won: Vec<&String> = results.iter().filter(|r| r.starts_with("OK ")).collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {} processes hold the name: {results:#?}",
            won.len()
        );
        // Refused before writing anything: the name's claim was held. (A
        // claim withdrawn after its entry was written — "removed while its
        // entry was being written" — means the claim file was replaced.)
        for r in results.iter().filter(|r| !r.starts_with("OK ")) {
            assert!(
                r.starts_with("REFUSED ") && r.contains("name \"dup\" is claimed by live worker"),
                "round {round}: {r} ({results:#?})"
            );
        }
        // While every claimant lives: one live `dup`, the winner.
        let live: Vec<Endpoint> = dir
            .list()
            .unwrap()
            .into_iter()
            .filter(|e| e.name.as_deref() == Some("dup"))
            .collect();
        assert_eq!(live.len(), 1, "round {round}: {live:?}");
        assert!(won[0].contains(&live[0].worker_id.to_string()), "{won:?}");
        // Released: stdin closed, every claimant exits.
        for c in &mut children.0 {
            drop(c.stdin.take());
        }
        for c in &mut children.0 {
            reap(c);
        }
    }
    assert!(dir.lookup_name("dup").is_err(), "the winners are gone");
    session.remove_all().unwrap();
    // The names lock goes with the session.
    assert!(!session.dir().exists(), "{:?}", fs::read_dir(session.dir()));
}

fn assert_would_block(e: &PublishError, pid: u32) {
    match e {
        PublishError::Io { path, source, .. } => {
            assert!(path.ends_with(NAMES_LOCK_FILE), "{e}");
            assert_eq!(source.kind(), std::io::ErrorKind::WouldBlock, "{source}");
            assert!(
                source.to_string().contains(&format!("pid {pid}")),
                "{source}"
            );
        }
        other => panic!("not the lock's error: {other}"),
    }
}

/// A process that holds the names lock and is stopped (`SIGSTOP`) makes a
/// named registration fail after the bounded wait, naming its pid, never
/// hang; a worker without a name registers meanwhile, and a named one puts
/// its own lost entry back (it holds its claim); once the holder is
/// dead (killed while stopped) the kernel released the lock and the name
/// registers at once.
#[test]
fn a_stopped_names_lock_holder_does_not_hang_register() {
    child_role();
    let tmp = scratch();
    let session = Session::open_in(tmp.path().join("root"), "stopped").unwrap();
    let dir = Directory::for_session(&session).unwrap();
    let lock = session.dir().join(NAMES_LOCK_FILE);
    // A named worker registered before: its entry goes missing while the
    // lock is held (below).
    let kept_ep = named("kept");
    let mut kept = dir.register(&kept_ep).unwrap();
    let mut children = Children(vec![spawn_role(
        "a_stopped_names_lock_holder_does_not_hang_register",
        format!("hold|{}", lock.display()),
    )]);
    let (tx, rx) = mpsc::channel();
    forward_lines(0, &mut children.0[0], tx);
    let (_, line) = rx.recv_timeout(BOUND).expect("the holder never said HELD");
    assert_eq!(line, "HELD");
    let pid = children.0[0].id();
    let rpid = rustix::process::Pid::from_child(&children.0[0]);
    rustix::process::kill_process(rpid, rustix::process::Signal::STOP).unwrap();

    let t = Instant::now();
    let e = dir.register(&named("stuck")).unwrap_err();
    let took = t.elapsed();
    assert_would_block(&e, pid);
    assert!(
        took >= NAMES_LOCK_WAIT && took < NAMES_LOCK_WAIT + Duration::from_secs(3),
        "{took:?}"
    );
    // A worker putting back its own missing entry (from its event loop,
    // about once a second) holds its name's claim and needs no names lock:
    // a stopped holder neither stalls that loop (it did, 2 s a round, found
    // reviewing the names lock) nor keeps the entry out (the attack on
    // `c61c5a5`: lookups reached a rewritten entry while the lock was held).
    let entry = session.dir().join(format!(
        "{}{}{}",
        shmwire::shm::ENTRY_PREFIX,
        kept_ep.worker_id,
        shmwire::shm::ENTRY_SUFFIX
    ));
    fs::remove_file(&entry).unwrap();
    let t = Instant::now();
    assert!(kept.restore().unwrap());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        dir.lookup_name("kept").unwrap().worker_id,
        kept_ep.worker_id
    );
    // A worker without a name claims nothing: not held up.
    let t = Instant::now();
    let unnamed = dir
        .register(&Endpoint::new(WorkerId::from_random()))
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(unnamed);

    // Killed while stopped: its lock goes with it.
    children.0[0].kill().unwrap();
    reap(&mut children.0[0]);
    let t = Instant::now();
    let reg = dir.register(&named("stuck")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(dir.lookup_name("stuck").unwrap().pid, std::process::id());
    // Put back already: nothing to do at the next check.
    assert!(!kept.restore().unwrap());
    assert_eq!(
        dir.lookup_name("kept").unwrap().worker_id,
        kept_ep.worker_id
    );
    drop((reg, kept));
    session.remove_all().unwrap();
}

/// The kernel names the process that *took* a `flock` (`/proc/locks`);
/// a process it started keeps the lock after it exits. The refusal then
/// says so instead of naming a dead pid as the holder (attack on
/// `f5e384c`, low). Here `flock(1)` takes the lock on a descriptor of a
/// shell, which starts a `sleep` holding it and exits.
#[test]
fn a_names_lock_kept_by_a_forked_child_says_who_took_it() {
    child_role();
    let tmp = scratch();
    let session = Session::open_in(tmp.path().join("root"), "forked").unwrap();
    let dir = Directory::for_session(&session).unwrap();
    drop(dir.register(&named("first")).unwrap()); // makes the lock file
    let lock = session.dir().join(NAMES_LOCK_FILE);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9>>"$1"; flock -x 9 || exit 3; sleep 30 >/dev/null 2>&1 & echo "$!""#)
        .arg("sh")
        .arg(&lock)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run sh (and flock(1), util-linux)");
    assert!(out.status.success(), "{:?}", out.status);
    let sleeper: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let kill = || {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(sleeper).unwrap(),
            rustix::process::Signal::KILL,
        );
    };
    let e = dir.register(&named("second"));
    kill();
    let e = e.unwrap_err();
    let text = e.to_string() + &format!(": {}", std::error::Error::source(&e).unwrap());
    assert!(
        text.contains("has exited") && text.contains("a process pid "),
        "{text}"
    );
    // The sleeper (now the init's child) is gone within the bound: the
    // lock is free again.
    let t = Instant::now();
    loop {
        match dir.register(&named("second")) {
            Ok(r) => {
                drop(r);
                break;
            }
            Err(e) => assert!(t.elapsed() < BOUND, "{e}"),
        }
    }
    session.remove_all().unwrap();
}

/// What a stray is called in the refusal, and how to make one.
type Stray<'a> = (&'static str, &'a dyn Fn(&Path));

/// What is refused in the names lock's place, at once and naming the
/// path: a FIFO (never opened to block), a directory, a symbolic link
/// (never followed: its target stays untouched), a socket. Meanwhile
/// unnamed workers register; removed, the name registers. A huge regular
/// file there is a lock like any other (never read).
#[test]
fn a_stray_file_at_the_names_lock_is_refused_without_hanging() {
    child_role();
    let tmp = scratch();
    let session = Session::open_in(tmp.path().join("root"), "stray").unwrap();
    let dir = Directory::for_session(&session).unwrap();
    let lock = session.dir().join(NAMES_LOCK_FILE);
    let target = tmp.path().join("target");
    fs::write(&target, b"keep").unwrap();
    let strays: [Stray; 5] = [
        ("a FIFO", &|p| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                p,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
                0,
            )
            .unwrap()
        }),
        ("a directory", &|p| fs::create_dir(p).unwrap()),
        ("a symbolic link", &|p| {
            std::os::unix::fs::symlink(&target, p).unwrap()
        }),
        ("a symbolic link", &|p| {
            std::os::unix::fs::symlink(tmp.path().join("nowhere"), p).unwrap()
        }),
        ("a socket", &|p| {
            std::mem::forget(std::os::unix::net::UnixListener::bind(p).unwrap())
        }),
    ];
    for (what, make) in strays {
        make(&lock);
        let t = Instant::now();
        let e = dir.register(&named("strayed")).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{what}: {:?}",
            t.elapsed()
        );
        match &e {
            PublishError::Io { path, source, .. } => {
                assert_eq!(path, &lock, "{e}");
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput, "{source}");
                let msg = source.to_string();
                assert!(msg.contains(what), "{what}: {msg}");
                assert!(msg.contains(&lock.display().to_string()), "{msg}");
            }
            other => panic!("{what}: {other}"),
        }
        assert!(dir.lookup_name("strayed").is_err(), "{what}");
        let unnamed = dir
            .register(&Endpoint::new(WorkerId::from_random()))
            .unwrap();
        drop(unnamed);
        if fs::symlink_metadata(&lock).unwrap().is_dir() {
            fs::remove_dir(&lock).unwrap();
        } else {
            fs::remove_file(&lock).unwrap();
        }
        let reg = dir.register(&named("strayed")).unwrap();
        drop(reg);
        fs::remove_file(&lock).unwrap();
    }
    assert_eq!(fs::read(&target).unwrap(), b"keep");
    // Sparse, 8 GiB: flocked, never read.
    let f = fs::File::create(&lock).unwrap();
    f.set_len(8 << 30).unwrap();
    let t = Instant::now();
    let reg = dir.register(&named("big")).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(fs::metadata(&lock).unwrap().len(), 8 << 30);
    assert!(dir.register(&named("big")).is_err(), "still unique");
    drop(reg);
    session.remove_all().unwrap();
}
