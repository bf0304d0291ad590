//! Segment and session tests: create/open/unlink, hostile headers written
//! from a second mapping, and stale cleanup after a SIGKILLed creator.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use shmwire::shm::{
    kind, Segment, Session, ShmError, INIT_READY, LAYOUT_VERSION, MAGIC, PAYLOAD_OFFSET,
};

const CHILD_ENV: &str = "SHMWIRE_SHM_TEST_CHILD";

fn temp_root(test: &str) -> tempfile::TempDir {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = tempfile::Builder::new()
        .prefix(&format!("shmwire-test-{}-{test}-", std::process::id()))
        .tempdir_in(base)
        .expect("temp root");
    // Session roots must not be accessible to group/other.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn session(root: &tempfile::TempDir, test: &str) -> Session {
    Session::open_in(root.path(), &format!("{test}-{}", std::process::id())).expect("session")
}

fn no_init(_: &mut [u8]) -> Result<(), ShmError> {
    Ok(())
}

#[test]
fn create_open_and_drop_unlinks() {
    let root = temp_root("basic");
    let s = session(&root, "basic");
    let seg = Segment::create_with(&s, "seg-a", 1000, kind::TEST, |p: &mut [u8]| {
        assert!(p.iter().all(|&b| b == 0), "payload starts zeroed");
        p[..4].copy_from_slice(b"abcd");
        p[999] = 7;
        Ok::<_, ShmError>(())
    })
    .unwrap();
    assert!(seg.is_creator());
    assert_eq!(seg.payload_len(), 1000);
    assert_eq!(seg.name(), "seg-a");
    assert_eq!(seg.path(), s.dir().join("seg-a"));
    assert_eq!(seg.payload_ptr() as usize % 4096, 0, "payload page aligned");
    let md = fs::metadata(seg.path()).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    assert_eq!(md.len(), (PAYLOAD_OFFSET + 1000) as u64);
    let dmd = fs::metadata(s.dir()).unwrap();
    assert_eq!(dmd.permissions().mode() & 0o777, 0o700);

    let peer = Segment::open(&s, "seg-a", kind::TEST).unwrap();
    assert!(!peer.is_creator());
    assert_eq!(peer.payload_len(), 1000);
    // SAFETY: both point at 1000 payload bytes mapped for the handles' lifetime.
    unsafe {
        assert_eq!(std::slice::from_raw_parts(peer.payload_ptr(), 4), b"abcd");
        assert_eq!(*peer.payload_ptr().add(999), 7);
        *peer.payload_ptr().add(500) = 9;
        assert_eq!(
            *seg.payload_ptr().add(500),
            9,
            "same memory in both mappings"
        );
    }
    let h = peer.header();
    assert_eq!(h.magic, MAGIC);
    assert_eq!(h.version, LAYOUT_VERSION);
    assert_eq!(h.kind, kind::TEST);
    assert_eq!(h.init_state, INIT_READY);
    assert_eq!(h.creator_pid, std::process::id());
    let tag = h.creator_tag_str().expect("creator tag").to_owned();
    assert_eq!(tag, s.process_lock_name().unwrap());
    assert!(s.dir().join(&tag).exists());

    // An opener's drop never unlinks.
    drop(peer);
    assert!(seg.path().exists());
    // The creator's drop does.
    let path = seg.path().to_owned();
    drop(seg);
    assert!(!path.exists());
    assert!(matches!(
        Segment::open(&s, "seg-a", kind::TEST),
        Err(ShmError::NotFound { .. })
    ));

    // Explicit unlink by an opener frees the name; mappings stay valid.
    let seg = Segment::create_with(&s, "seg-b", 8, kind::TEST, no_init).unwrap();
    let peer = Segment::open(&s, "seg-b", kind::TEST).unwrap();
    peer.unlink().unwrap();
    assert!(!seg.path().exists());
    // SAFETY: 8-byte payload, still mapped after the unlink.
    unsafe { *seg.payload_ptr() = 3 };
    // SAFETY: as above.
    assert_eq!(unsafe { *peer.payload_ptr() }, 3);
    // A newcomer of the same name is not removed by the old creator's drop.
    let newcomer = Segment::create_with(&s, "seg-b", 8, kind::TEST, no_init).unwrap();
    drop(seg);
    assert!(newcomer.path().exists());
    drop((peer, newcomer));

    s.remove_all().unwrap();
    assert!(!s.dir().exists());
}

#[test]
fn unpublished_segment_is_not_initialized_until_publish() {
    let root = temp_root("unpub");
    let s = session(&root, "unpub");
    let mut un = Segment::create(&s, "ring", 64, kind::RING).unwrap();
    un.payload_mut()[0] = 1;
    assert!(matches!(
        Segment::open(&s, "ring", kind::RING),
        Err(ShmError::NotInitialized { .. })
    ));
    let seg = un.publish();
    let peer = Segment::open(&s, "ring", kind::RING).unwrap();
    // SAFETY: 64-byte payload, mapped.
    assert_eq!(unsafe { *peer.payload_ptr() }, 1);
    drop((seg, peer));

    // Dropping an unpublished segment removes it.
    let un = Segment::create(&s, "gone", 64, kind::RING).unwrap();
    let path = un.path().to_owned();
    assert!(path.exists());
    drop(un);
    assert!(!path.exists());

    // create_with's init error removes the file and is returned.
    let r = Segment::create_with(&s, "failing", 64, kind::RING, |_p: &mut [u8]| {
        Err(ShmError::NotInitialized {
            path: PathBuf::from("init failed"),
        })
    });
    assert!(matches!(r, Err(ShmError::NotInitialized { .. })));
    assert!(!s.dir().join("failing").exists());
    s.remove_all().unwrap();
}

#[test]
fn open_timeout_waits_for_publish() {
    let root = temp_root("wait");
    let s = session(&root, "wait");
    let un = Segment::create(&s, "late", 64, kind::TEST).unwrap();
    let s2 = s.clone();
    let opener = std::thread::spawn(move || {
        Segment::open_timeout(&s2, "late", kind::TEST, Duration::from_secs(30))
            .map(|seg| seg.payload_len())
    });
    std::thread::sleep(Duration::from_millis(20));
    let seg = un.publish();
    assert_eq!(opener.join().unwrap().unwrap(), 64);
    // A bounded wait for a segment that never appears ends with its error.
    assert!(matches!(
        Segment::open_timeout(&s, "never", kind::TEST, Duration::from_millis(5)),
        Err(ShmError::NotFound { .. })
    ));
    drop(seg);
    s.remove_all().unwrap();
}

#[test]
fn typed_errors_for_names_kinds_and_duplicates() {
    let root = temp_root("errs");
    let s = session(&root, "errs");
    for bad in ["", "../x", "a/b", ".x", "x.lock", &"y".repeat(65)] {
        assert!(
            matches!(
                Segment::create(&s, bad, 8, kind::TEST),
                Err(ShmError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            Segment::open(&s, bad, kind::TEST),
            Err(ShmError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        Session::open_in(root.path(), "no/slash"),
        Err(ShmError::InvalidName { .. })
    ));
    let seg = Segment::create_with(&s, "dup", 8, kind::TEST, no_init).unwrap();
    assert!(matches!(
        Segment::create(&s, "dup", 8, kind::TEST),
        Err(ShmError::AlreadyExists { .. })
    ));
    assert!(matches!(
        Segment::open(&s, "dup", kind::RING),
        Err(ShmError::WrongKind { found, expected }) if found == kind::TEST && expected == kind::RING
    ));
    assert!(matches!(
        Segment::create(&s, "huge", usize::MAX - 10, kind::TEST),
        Err(ShmError::TooLarge { .. })
    ));
    assert!(matches!(
        Session::attach_in(root.path(), "no-such-session"),
        Err(ShmError::SessionNotFound { .. })
    ));
    drop(seg);
    s.remove_all().unwrap();
}

/// Writes `bytes` at `offset` of the segment file through a second mapping.
/// A directory whose marker is missing, or is not a regular file, is no
/// session, and the error says which (it said "no marker" for a FIFO).
#[test]
fn a_marker_of_the_wrong_type_is_named_in_the_refusal() {
    let root = temp_root("markertype");
    let dir = root.path().join("m");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let e = Session::attach_in(root.path(), "m").unwrap_err();
    assert!(
        matches!(e, ShmError::NotASession { found: None, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("(no .shmwire-session marker)"),
        "{e}"
    );
    let marker = dir.join(".shmwire-session");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &marker,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    let e = Session::attach_in(root.path(), "m").unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::NotASession {
                found: Some("a FIFO"),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("its .shmwire-session is a FIFO, not the marker"),
        "{e}"
    );
    // A process starting in the session (a node, a worker) creates the
    // marker if it is missing: it names the FIFO too (it failed with a
    // bare "No such device or address (os error 6)").
    let e = Session::open_in(root.path(), "m").unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::WrongFileType {
                found: "a FIFO",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("FIFO"), "{e}");
}

fn poke(path: &Path, offset: usize, bytes: &[u8]) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: test-only second mapping of a file this test owns.
    let mut m = unsafe { memmap2::MmapMut::map_mut(&f) }.unwrap();
    m[offset..offset + bytes.len()].copy_from_slice(bytes);
}

type Check = fn(&ShmError) -> bool;

#[test]
fn corrupted_headers_give_typed_errors() {
    let root = temp_root("corrupt");
    let s = session(&root, "corrupt");
    let seg = Segment::create_with(&s, "victim", 256, kind::TEST, no_init).unwrap();
    let path = seg.path().to_owned();
    let open = || Segment::open(&s, "victim", kind::TEST);
    open().unwrap();

    let total = ((PAYLOAD_OFFSET + 256) as u64).to_le_bytes().to_vec();
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    let le64 = |v: u64| v.to_le_bytes().to_vec();
    // (offset, bad bytes, good bytes, check)
    let cases: Vec<(usize, Vec<u8>, Vec<u8>, Check)> = vec![
        (0, b"NOTMAGIC".to_vec(), le64(MAGIC), |e| {
            matches!(e, ShmError::BadMagic { .. })
        }),
        (
            8,
            le32(99),
            le32(LAYOUT_VERSION),
            |e| matches!(e, ShmError::VersionMismatch { found: 99, expected } if *expected == LAYOUT_VERSION),
        ),
        (44, le32(0), le32(INIT_READY), |e| {
            matches!(e, ShmError::NotInitialized { .. })
        }),
        (44, le32(0xdead_beef), le32(INIT_READY), |e| {
            matches!(
                e,
                ShmError::BadInitState {
                    found: 0xdead_beef,
                    ..
                }
            )
        }),
        (16, le64(1), total.clone(), |e| {
            matches!(e, ShmError::WrongSize { header: 1, .. })
        }),
        (16, le64(u64::MAX), total.clone(), |e| {
            matches!(e, ShmError::WrongSize { .. })
        }),
        (24, le64(8), le64(PAYLOAD_OFFSET as u64), |e| {
            matches!(e, ShmError::BadLayout { .. })
        }),
        (32, le64(u64::MAX), le64(256), |e| {
            matches!(e, ShmError::BadLayout { .. })
        }),
        (32, le64(255), le64(256), |e| {
            matches!(e, ShmError::BadLayout { .. })
        }),
        (12, le32(kind::RING), le32(kind::TEST), |e| {
            matches!(e, ShmError::WrongKind { .. })
        }),
    ];
    for (offset, bad, good, check) in cases {
        poke(&path, offset, &bad);
        let err = open().expect_err("corrupted header must not open");
        assert!(check(&err), "offset {offset}: unexpected {err:?}");
        poke(&path, offset, &good);
        open().expect("restored header opens");
    }

    // File size disagreeing with the header, both directions.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len((PAYLOAD_OFFSET + 4096) as u64).unwrap();
    assert!(matches!(open(), Err(ShmError::WrongSize { .. })));
    f.set_len(100).unwrap();
    assert!(matches!(
        open(),
        Err(ShmError::WrongSize {
            header: 0,
            file: 100
        })
    ));
    f.set_len(0).unwrap();
    assert!(matches!(open(), Err(ShmError::NotInitialized { .. })));
    drop(f);

    // Permissions and file type.
    let other = Segment::create_with(&s, "perm", 8, kind::TEST, no_init).unwrap();
    fs::set_permissions(other.path(), fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        Segment::open(&s, "perm", kind::TEST),
        Err(ShmError::InsecureMode { mode: 0o644, .. })
    ));
    fs::set_permissions(other.path(), fs::Permissions::from_mode(0o600)).unwrap();
    Segment::open(&s, "perm", kind::TEST).unwrap();
    std::os::unix::fs::symlink(other.path(), s.dir().join("link")).unwrap();
    let err = Segment::open(&s, "link", kind::TEST).unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::WrongFileType {
                found: "a symbolic link (never followed)",
                expected: "regular file",
                ..
            }
        ),
        "{err}"
    );
    if rustix::process::geteuid().is_root() {
        // Only root can give a file away; elsewhere this part cannot run.
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::fs::chown(other.path(), Some(nobody), None).unwrap();
        assert!(matches!(
            Segment::open(&s, "perm", kind::TEST),
            Err(ShmError::WrongOwner { found: 65534, .. })
        ));
    }
    drop((seg, other));
    s.remove_all().unwrap();
}

#[test]
fn untagged_files_respect_the_grace_period() {
    let root = temp_root("untagged");
    let s = session(&root, "untagged");
    fs::write(s.dir().join("half-created"), b"").unwrap();
    fs::write(s.dir().join(".other"), b"x").unwrap();
    let r = s
        .cleanup_stale_with_grace(Duration::from_secs(3600))
        .unwrap();
    assert_eq!(r.kept_untagged, ["half-created"]);
    assert!(r.removed_segments.is_empty());
    assert_eq!(r.ignored, [".other"]);
    let r = s.cleanup_stale_with_grace(Duration::ZERO).unwrap();
    assert_eq!(r.removed_segments, ["half-created"]);
    s.remove_all().unwrap();
}

#[test]
fn sessions_are_listed_and_roots_are_private() {
    let root = temp_root("list");
    let a = Session::open_in(root.path(), "alpha").unwrap();
    let b = Session::open_in(root.path(), "beta").unwrap();
    fs::write(root.path().join("stray-file"), b"").unwrap();
    assert_eq!(
        Session::list_sessions(root.path()).unwrap(),
        ["alpha", "beta"]
    );
    let seg = Segment::create_with(&a, "keep", 8, kind::TEST, no_init).unwrap();
    let reports = Session::cleanup_all_stale(root.path()).unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].1.live_segments, ["keep"]);
    assert!(a.dir().exists(), "session with a live segment stays");
    // Issue 10, input 3: a session whose opener lives is live, even empty.
    assert!(b.dir().exists(), "a live opener's empty session stays");
    assert!(reports[1].1.live_owners.len() == 1 && !reports[1].1.removed_dir);
    // Once its opener lets go, the empty session goes with the next pass.
    b.remove_all().unwrap();
    assert!(!b.dir().exists(), "empty session directory removed");
    // Creating in a session whose directory cleanup removed works again.
    let again = Segment::create_with(&b, "back", 8, kind::TEST, no_init).unwrap();
    drop((seg, again));
    a.remove_all().unwrap();
    b.remove_all().unwrap();

    // A root with group/other access is refused.
    let loose = root.path().join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(
        Session::open_in(&loose, "x"),
        Err(ShmError::InsecureMode { .. })
    ));
    // A root that is a symbolic link (to a good directory) is not followed,
    // and the error says it is a link (was "is not a directory").
    let real = root.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let err = Session::open_in(&link, "x").unwrap_err();
    assert!(
        err.to_string()
            .contains("is a symbolic link (never followed), not a directory"),
        "{err}"
    );

    // The default root (SHMWIRE_ROOT or /dev/shm/shmwire).
    let d = Session::open(&format!("default-root-test-{}", std::process::id())).unwrap();
    assert_eq!(d.root(), shmwire::shm::default_root());
    assert_eq!(
        fs::metadata(d.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    d.remove_all().unwrap();
}

/// A process that made the session root (it was missing) removes it with
/// its last session there (`Session::remove_all`), once empty; a root that
/// was there before stays, and so does one holding another session (an
/// example run under the default root left an empty
/// `/dev/shm/shmwire-<uid>` behind).
#[test]
fn a_root_this_process_made_goes_with_its_last_session() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    // Made here: gone after the last of two sessions in it.
    let made = tmp.path().join("made");
    let a = Session::open_in(&made, "a").unwrap();
    let b = Session::open_in(&made, "b").unwrap();
    a.remove_all().unwrap();
    assert!(made.is_dir(), "removed while session b was in it");
    b.remove_all().unwrap();
    assert!(!made.exists(), "the root this process made was left behind");
    // A later use of the session makes it again, and the next teardown
    // removes it again.
    b.process_lock_name().unwrap();
    assert!(b.dir().is_dir());
    b.remove_all().unwrap();
    assert!(!made.exists());
    // There before: stays.
    let existing = tmp.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o700)).unwrap();
    let c = Session::open_in(&existing, "c").unwrap();
    c.remove_all().unwrap();
    assert!(
        existing.is_dir(),
        "a root that was there before was removed"
    );
    // Made here, but holding a file of someone else's: stays.
    let shared = tmp.path().join("shared");
    let d = Session::open_in(&shared, "d").unwrap();
    fs::write(shared.join("someone-elses"), b"x").unwrap();
    d.remove_all().unwrap();
    assert!(shared.join("someone-elses").is_file());
}

/// Child role: create segments `<prefix>-0`, `<prefix>-1` in the session
/// named by the environment, say READY, then wait to be killed.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do
    };
    let mut parts = spec.splitn(3, '|');
    let (root, sess, prefix) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let s = Session::open_in(root, sess).unwrap();
    let segs: Vec<Segment> = (0..2)
        .map(|i| Segment::create_with(&s, &format!("{prefix}-{i}"), 4096, kind::TEST, no_init))
        .collect::<Result<_, _>>()
        .unwrap();
    println!("SHMWIRE-CHILD-READY");
    // Hang guard: the parent kills us long before this.
    std::thread::sleep(Duration::from_secs(120));
    drop(segs);
}

/// Kills and reaps the child on every path out of the test.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_creator(root: &Path, sess: &str, prefix: &str) -> (ChildGuard, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{sess}|{prefix}", root.display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let out = BufReader::new(child.stdout.take().unwrap());
    (ChildGuard(child), out)
}

fn wait_ready(out: &mut BufReader<ChildStdout>) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "child exited before READY");
        // The harness prints "test child_entry ... " on the same line.
        if line.trim_end().ends_with("SHMWIRE-CHILD-READY") {
            return;
        }
    }
}

#[test]
fn cleanup_removes_only_dead_creators_segments() {
    let root = temp_root("xproc");
    let sess = format!("xproc-{}", std::process::id());
    let s = Session::open_in(root.path(), &sess).unwrap();
    let (mut dead, mut dead_out) = spawn_creator(root.path(), &sess, "dead");
    let (mut live, mut live_out) = spawn_creator(root.path(), &sess, "live");
    wait_ready(&mut dead_out);
    wait_ready(&mut live_out);
    let mine = Segment::create_with(&s, "mine", 64, kind::TEST, no_init).unwrap();
    assert_eq!(
        s.segment_names().unwrap(),
        ["dead-0", "dead-1", "live-0", "live-1", "mine"]
    );

    // Nothing is stale while everyone lives.
    let r = s.cleanup_stale().unwrap();
    assert!(r.removed_segments.is_empty(), "{r:?}");
    assert_eq!(r.live_segments.len(), 5);

    // SIGKILL: no destructor runs, the segments stay behind.
    dead.0.kill().unwrap();
    dead.0.wait().unwrap();
    assert!(s.dir().join("dead-0").exists());
    let info = s.inspect().unwrap();
    let alive = |n: &str| info.iter().find(|i| i.name == n).unwrap().creator_alive;
    assert_eq!(alive("dead-0"), Some(false));
    assert_eq!(alive("live-0"), Some(true));
    assert_eq!(alive("mine"), Some(true));

    let r = s.cleanup_stale().unwrap();
    assert_eq!(r.removed_segments, ["dead-0", "dead-1"]);
    assert_eq!(r.removed_lock_files.len(), 1, "{r:?}");
    assert_eq!(r.live_segments, ["live-0", "live-1", "mine"]);
    assert!(Segment::open(&s, "live-0", kind::TEST).is_ok());
    assert!(Segment::open(&s, "mine", kind::TEST).is_ok());

    live.0.kill().unwrap();
    live.0.wait().unwrap();
    let r = s.cleanup_stale().unwrap();
    assert_eq!(r.removed_segments, ["live-0", "live-1"]);
    assert_eq!(r.live_segments, ["mine"]);
    drop(mine);
    assert!(s.segment_names().unwrap().is_empty());
    s.remove_all().unwrap();
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Arbitrary header bytes (with a valid init word half of the time,
        /// so the later checks are reached) and arbitrary file sizes never
        /// make `open`, `inspect` or `cleanup_stale` panic; when `open`
        /// succeeds, the sizes it uses agree with the file.
        #[test]
        fn arbitrary_headers_never_panic(
            header in proptest::collection::vec(any::<u8>(), 128),
            ready in any::<bool>(),
            keep_magic in any::<bool>(),
            extra in 0u64..3 * 4096,
        ) {
            let root = temp_root("prop");
            let s = session(&root, "prop");
            let path = s.dir().join("victim");
            let mut bytes = header.clone();
            if keep_magic {
                bytes[..8].copy_from_slice(&MAGIC.to_le_bytes());
                bytes[8..12].copy_from_slice(&LAYOUT_VERSION.to_le_bytes());
                bytes[12..16].copy_from_slice(&kind::TEST.to_le_bytes());
            }
            if ready {
                bytes[44..48].copy_from_slice(&INIT_READY.to_le_bytes());
            }
            fs::write(&path, &bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(128 + extra).unwrap();
            drop(f);
            let file_size = fs::metadata(&path).unwrap().len();
            match Segment::open(&s, "victim", kind::TEST) {
                Ok(seg) => {
                    prop_assert_eq!(seg.payload_len() as u64 + PAYLOAD_OFFSET as u64, file_size);
                    prop_assert!(!seg.is_creator());
                }
                Err(e) => {
                    // Every failure is a typed header/size error.
                    prop_assert!(matches!(
                        e,
                        ShmError::BadMagic { .. }
                            | ShmError::VersionMismatch { .. }
                            | ShmError::WrongKind { .. }
                            | ShmError::WrongSize { .. }
                            | ShmError::BadLayout { .. }
                            | ShmError::NotInitialized { .. }
                            | ShmError::BadInitState { .. }
                    ), "unexpected {:?}", e);
                }
            }
            let infos = s.inspect().unwrap();
            prop_assert_eq!(infos.len(), 1);
            // Random tags name no live lock: the file is stale or untagged.
            let r = s.cleanup_stale_with_grace(Duration::from_secs(3600)).unwrap();
            prop_assert!(r.live_segments.is_empty());
            s.remove_all().unwrap();
        }
    }
}
