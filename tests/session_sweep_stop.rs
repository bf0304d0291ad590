//! A process stopped (`SIGSTOP`) in the middle of a cleanup pass must not
//! keep other processes out of the session: before, the pass held the
//! session directory's `flock` exclusively for its whole length, and a
//! process opening the session waited 5 s for it and failed ("flock
//! (shared), waiting for a cleanup pass: timed out"). Real processes: the
//! test binary runs itself again as the sweeper and as the opener.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};
use shmwire::shm::{kind, Segment, Session, ShmError, PAYLOAD_OFFSET};

/// `sweeper|<root>|<session>|<files>` or `opener|<root>|<session>`.
const CHILD_ENV: &str = "SHMWIRE_SWEEP_STOP_CHILD";

/// Files in the session that every pass opens and reads (copies of a live
/// segment's header: kept, never removed), so that a pass takes a
/// noticeable time and a stop lands inside one.
const FILES: usize = 3000;

/// How long an opener may take while the sweeper is stopped mid-pass.
const OPEN_BOUND: Duration = Duration::from_secs(1);

fn temp_root() -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("shmwire-test-{}-sweepstop-", std::process::id()))
        .tempdir_in(base)
        .expect("temp root");
    // Session roots must not be accessible to group/other.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Child roles (nothing to do in the parent's run of this test).
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    match parts[0] {
        "sweeper" => sweeper(parts[1], parts[2], parts[3].parse().unwrap()),
        "opener" => opener(parts[1], parts[2]),
        other => panic!("unknown role {other}"),
    }
}

/// Makes the session and `files` copies of a live segment's header, says
/// READY, then runs `cleanup_stale` back to back until killed.
fn sweeper(root: &str, name: &str, files: usize) {
    let s = Session::open_in(root, name).unwrap();
    let seed = Segment::create_with(&s, "seed", 64, kind::TEST, |_: &mut [u8]| {
        Ok::<_, ShmError>(())
    })
    .unwrap();
    let mut header = vec![0u8; PAYLOAD_OFFSET];
    fs::File::open(seed.path())
        .unwrap()
        .read_exact(&mut header)
        .unwrap();
    for i in 0..files {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(s.dir().join(format!("junk-{i}")))
            .unwrap();
        f.write_all(&header).unwrap();
    }
    let t = Instant::now();
    let r = s.cleanup_stale().unwrap();
    assert_eq!(r.live_segments.len(), files + 1, "{r:?}");
    println!("SHMWIRE-CHILD-READY pass {:?}", t.elapsed());
    // Hang guard: the parent kills us long before this.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let r = s.cleanup_stale().unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
    }
    drop(seed);
}

/// Opens the session (taking this process's lock in it) and says how long
/// it took, or why it failed.
fn opener(root: &str, name: &str) {
    let t = Instant::now();
    match Session::open_in(root, name) {
        Ok(_) => println!("SHMWIRE-OPENED {}", t.elapsed().as_micros()),
        Err(e) => println!("SHMWIRE-FAILED {:?} {e}", t.elapsed()),
    }
}

/// Kills and reaps a child on every path out of the test (a stopped one
/// is continued first, so that it dies at once).
struct ChildGuard(Child);

impl ChildGuard {
    fn pid(&self) -> Pid {
        Pid::from_child(&self.0)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = kill_process(self.pid(), Signal::CONT);
        let _ = self.0.wait();
    }
}

fn spawn(spec: String) -> (ChildGuard, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), out)
}

/// The rest of the first line of the child's output carrying `tag` (the
/// harness prints "test child_entry ... " on the same line).
fn read_tagged(out: &mut BufReader<ChildStdout>, tag: &str) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            return None;
        }
        if let Some(at) = line.find(tag) {
            return Some(line[at + tag.len()..].trim().to_owned());
        }
    }
}

/// The state letter of process `pid` (`/proc/<pid>/stat`, after the
/// command name's last `)`).
fn proc_state(pid: Pid) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Whether every thread of `pid` is stopped (a group stop reaches each
/// thread asynchronously).
fn all_stopped(pid: Pid) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", pid.as_raw_nonzero())) else {
        return false;
    };
    tasks.flatten().all(|t| {
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        stat.rfind(')')
            .and_then(|at| stat[at + 1..].trim_start().chars().next())
            == Some('T')
    })
}

/// Whether `pid` holds a `flock` on the file with `dev`/`ino` (a line of
/// `/proc/locks`: `1: FLOCK ADVISORY READ <pid> <maj>:<min>:<ino> 0 EOF`;
/// waiters, `->` lines, skipped).
fn holds_flock(pid: Pid, dev: u64, ino: u64) -> bool {
    let key = format!(
        "{:02x}:{:02x}:{ino}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let pid = pid.as_raw_nonzero().to_string();
    fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| f.len() >= 6 && f[1] == "FLOCK" && f[4] == pid && f[5] == key)
}

/// The attack on the cleanup pass, made deterministic: a process running
/// cleanup passes over a session of a few thousand files is stopped until
/// it is caught inside a pass (it holds the session directory's `flock`,
/// as `/proc/locks` says), and then another process opens the session
/// while it stays stopped. The open must succeed, within a short bound
/// (before: it failed after 5 s). Twice, at two different stops.
#[test]
fn a_cleanup_pass_stopped_midway_does_not_keep_openers_out() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let started = Instant::now();
    let root = temp_root();
    let name = format!("sweepstop-{}", std::process::id());
    let (sweeper, mut out) = spawn(format!("sweeper|{}|{name}|{FILES}", root.path().display()));
    let pass = read_tagged(&mut out, "SHMWIRE-CHILD-READY").expect("the sweeper exited early");
    eprintln!("one pass over {FILES} files: {pass}");
    let dir = root.path().join(&name);
    let md = fs::metadata(&dir).unwrap();
    let (dev, ino) = (md.dev(), md.ino());
    let pid = sweeper.pid();

    let mut caught = 0;
    let mut tries = 0;
    while caught < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sweeper was never caught inside a pass ({tries} stops)"
        );
        tries += 1;
        kill_process(pid, Signal::STOP).unwrap();
        let t = Instant::now();
        while !all_stopped(pid) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the sweeper did not stop"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        if !holds_flock(pid, dev, ino) {
            // Between two passes: go on, and stop it again a little later.
            kill_process(pid, Signal::CONT).unwrap();
            std::thread::sleep(Duration::from_millis(1 + tries % 7));
            continue;
        }
        caught += 1;
        // Stopped inside a pass, and stays stopped while another process
        // opens the session.
        let (mut opener, mut oout) = spawn(format!("opener|{}|{name}", root.path().display()));
        let said = read_tagged(&mut oout, "SHMWIRE-");
        let status = opener.0.wait().unwrap();
        assert_eq!(proc_state(pid), Some('T'), "the sweeper ran meanwhile");
        let said = said.unwrap_or_else(|| panic!("the opener said nothing ({status})"));
        let micros: u64 = match said.strip_prefix("OPENED ") {
            Some(us) => us.parse().unwrap(),
            None => panic!("opening the session beside a stopped pass failed: {said}"),
        };
        assert!(
            Duration::from_micros(micros) < OPEN_BOUND,
            "opening the session beside a stopped pass took {micros} µs"
        );
        assert!(status.success(), "{status}");
        kill_process(pid, Signal::CONT).unwrap();
    }
    eprintln!("caught inside a pass twice in {tries} stops");
    // The sweeper goes on with its passes; the opener's lock (dead now)
    // is the next pass's to remove.
    let t = Instant::now();
    while proc_state(pid) == Some('T') {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the sweeper stays stopped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(sweeper);
    drop(root);
}

/// A lock file being made (`.proc-<stem>.lock.tmp`) is unlocked between
/// its creation and its creator's `flock`, and a pass now runs beside
/// creators: it leaves a young one alone (a creator is setting the session
/// up: the session is live and stays) and removes an old one (its creator
/// died).
#[test]
fn a_young_lock_file_being_made_is_left_alone_and_an_old_one_removed() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let root = temp_root();
    let s = Session::open_in(root.path(), &format!("tmplock-{}", std::process::id())).unwrap();
    let make = |name: &str, age: Duration| {
        let f = fs::File::create_new(s.dir().join(name)).unwrap();
        f.set_modified(std::time::SystemTime::now() - age).unwrap();
    };
    let (young, old) = (".proc-1-0000000a.lock.tmp", ".proc-1-0000000b.lock.tmp");
    make(young, Duration::ZERO);
    make(old, Duration::from_secs(60));
    let r = s.cleanup_stale().unwrap();
    assert_eq!(r.removed_lock_files, [old], "{r:?}");
    assert_eq!(r.live_other, [young], "{r:?}");
    assert!(s.dir().join(young).exists());
    assert!(!s.dir().join(old).exists());
    // With this process's lock gone too, the young one keeps the session.
    let r = s.remove_all().unwrap();
    assert!(!r.removed_dir && r.live_other == [young], "{r:?}");
    assert!(s.dir().join(young).exists());
    // Once old, it goes, and the session with it.
    fs::File::open(s.dir().join(young))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let r = s.remove_all().unwrap();
    assert!(r.removed_dir, "{r:?}");
    assert_eq!(r.removed_lock_files, [young], "{r:?}");
    assert!(!s.dir().exists());
}
