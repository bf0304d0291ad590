//! Per-session namespaces, per-process liveness locks, and the one cleanup
//! pass (see `docs/sessions.md`).
//!
//! # Ownership
//!
//! Every file shmwire makes in a session directory has an owner whose
//! liveness is one `flock` (`sys::liveness`):
//!
//! | file | owner |
//! | --- | --- |
//! | `proc-<stem>.lock` | itself: held by its process for life |
//! | `.proc-<stem>.lock.tmp` | itself (a lock file being made) |
//! | a segment | the lock file named in its header's creator tag |
//! | `.s-<stem>-<n>.sock`, `.tmp-<stem>-…` | `proc-<stem>.lock` (by name) |
//! | `.w-<id>.entry` (node directory) | itself: held by its `Registration` |
//! | `.node.lock` | itself: held by the session's node for its life |
//! | `.names.lock` | the session, as `.token` (locked only while a name is claimed) |
//! | `.token`, `.shmwire-session` | the session: go when nothing live remains |
//!
//! A file is removed only when its owner is dead, while the cleaner holds
//! the dead owner's lock, and by name after re-checking the inode. Anything
//! else — any name or file type shmwire does not make — is never opened in
//! a way that can block and never removed; it is reported.
//!
//! # The session directory's own lock
//!
//! Setting a session up (creating the directory, its marker and a
//! process's lock file) happens under a *shared* `flock` on the session
//! directory. A cleanup pass goes through the entries under the same
//! *shared* lock — every removal there is decided by the owner's lock, held
//! by the cleaner, not by the directory's — so a pass, however long, slow
//! or stopped (`SIGSTOP`) in the middle, never keeps a process from
//! setting the session up. The one exception is the lock file being made,
//! `.proc-<stem>.lock.tmp`, unlocked between its creation and its
//! creator's `flock`: a pass leaves it alone while it is younger than a few
//! seconds (`TMP_LOCK_GRACE`), and a creator stopped longer than that, whose
//! file a pass took or removed meanwhile, makes it again under the same name.
//!
//! Only the pass's last step, when nothing live is left, holds the lock
//! *exclusively*: converted without blocking (tried again for up to
//! `SWEEP_WAIT`, holding no lock meanwhile; skipped, `busy`, when a
//! creator holds it all that time), it lists the directory again — a
//! process that joined since the first listing keeps the session — and
//! removes the token, the names lock, the marker and the directory. That
//! step is a bounded number of system calls (at most `LAST_STEP_NAMES`
//! names read) whatever the directory holds, and only a pass stopped
//! within those calls still keeps a process opening the (dead) session
//! waiting (up to 5 s, then it fails). So a cleaner never removes a
//! directory a creator is setting up, and a creator whose directory was
//! removed meanwhile notices (the path no longer names the directory it
//! locked) and makes it again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::sys::fs::{O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK};
use crate::sys::liveness::{
    probe_owner, remove_if_same, same_file, try_lock_exclusive, try_lock_shared, OwnerState,
};

use super::error::{Result, ShmError};
use super::header::{HeaderSnapshot, HEADER_SIZE, INIT_READY, INIT_UNINIT, MAGIC};
use super::name::{
    classify, is_lock_file_name, lock_name, validate_segment_name, validate_session_name, FileKind,
    LOCK_PREFIX, LOCK_SUFFIX, SESSION_MARKER, TMP_LOCK_PREFIX, TMP_LOCK_SUFFIX,
};

/// Environment variable that overrides the root directory of all sessions.
pub const ROOT_ENV: &str = "SHMWIRE_ROOT";

/// How old a segment-named file too short to hold a header must be before
/// [`Session::cleanup_stale`] removes it. shmwire itself no longer makes
/// such files (segments are created under a temporary name and linked into
/// place with their header written); the rule covers files left by older
/// builds that created segments in place.
pub const UNTAGGED_GRACE: Duration = Duration::from_secs(10);

/// Appended to root errors.
const ROOT_HINT: &str =
    " (this is the session root: set SHMWIRE_ROOT to a directory of your own with mode 0700)";

/// Appended to [`ShmError::BadRootPath`].
const ROOT_PATH_HINT: &str = " (this is the session root: name a directory whose path is printable UTF-8, with --root or SHMWIRE_ROOT)";

/// How long a creator waits for a cleanup pass to release a session
/// directory before it reports the directory busy.
const SETUP_WAIT: Duration = Duration::from_secs(5);

/// How long a cleanup pass tries to take a session directory's lock
/// shared (the last step of another pass, a failed set-up taking its
/// directory back and a token repair hold it exclusively for a few system
/// calls) before it skips the session as busy.
const SWEEP_WAIT: Duration = Duration::from_millis(200);

/// How old a `.proc-<stem>.lock.tmp` (a lock file being made: unlocked
/// between its creation and its creator's `flock`) must be before a cleanup
/// pass looks at it; a younger one is a creator setting the session up.
/// Only spares creators a retry: one stopped longer than this between the
/// two calls starts its lock file over (`owner_lock`).
const TMP_LOCK_GRACE: Duration = Duration::from_secs(5);

/// At most how many names the last step of a cleanup pass reads under the
/// session directory's exclusive lock (`Session::sweep_last_step`); a
/// session with more left in it stays for a later pass.
const LAST_STEP_NAMES: usize = 4096;

/// How long ago `md`'s file was last modified, by its modification time;
/// when that is more than [`CLOCK_SKEW`] in the future, by its
/// status-change time (`ctime`), which the kernel sets to the clock on
/// every change and nobody can set (`touch -d '+10 years'` moves only the
/// modification time). When both are in the future the clock was stepped
/// back (an NTP step, a restored snapshot) and the file's age is unknown:
/// it counts as old. Before (the attack on `0060161`), a file dated in the
/// future stayed young for ever, and its dead session with it (`inspect`
/// said dead, `cleanup` kept it as live).
fn file_age(md: &fs::Metadata) -> Duration {
    let since = |secs: i64, nanos: i64| -> Option<Result<Duration, Duration>> {
        let t = SystemTime::UNIX_EPOCH.checked_add(Duration::new(
            u64::try_from(secs).ok()?,
            u32::try_from(nanos).ok()?,
        ))?;
        Some(
            SystemTime::now()
                .duration_since(t)
                .map_err(|ahead| ahead.duration()),
        )
    };
    let modified = since(md.mtime(), md.mtime_nsec());
    let age = match modified {
        Some(Ok(age)) => return age,
        Some(Err(ahead)) if ahead <= CLOCK_SKEW => return Duration::ZERO,
        _ => since(md.ctime(), md.ctime_nsec()),
    };
    match age {
        Some(Ok(age)) => age,
        Some(Err(ahead)) if ahead <= CLOCK_SKEW => Duration::ZERO,
        _ => Duration::MAX,
    }
}

/// How far in the future a file's time may be and still count as now
/// (clocks read on two CPUs; a coarse file-system timestamp).
const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// Whether `md`'s file last changed at least `age` ago ([`file_age`]).
fn older_than(md: &fs::Metadata, age: Duration) -> bool {
    file_age(md) >= age
}

fn euid() -> u32 {
    crate::sys::fs::euid()
}

/// The directory under which sessions live: `$SHMWIRE_ROOT` if set, else
/// `/dev/shm/shmwire-<euid>` (tmpfs, one root per user), else
/// `<temp dir>/shmwire-<euid>` when `/dev/shm` is absent. Nothing is
/// created.
pub fn default_root() -> PathBuf {
    if let Some(root) = std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    let name = format!("shmwire-{}", euid());
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(name)
    } else {
        std::env::temp_dir().join(name)
    }
}

/// `bytes` as text for a message: control characters escaped as
/// `char::escape_default` does (`\n`, `\u{1b}`), bytes that are not UTF-8
/// as `\xNN`; everything else as it is.
fn escape_path_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Refuses a session root whose path holds a control character (`\n`,
/// `ESC`, DEL, a C1 control, …) or a byte that is not UTF-8, naming the
/// first one found and its byte offset ([`ShmError::BadRootPath`], the
/// path escaped). Every way into a root calls it first — [`Session::open_in`]
/// (so [`Session::open`] and `$SHMWIRE_ROOT`), [`Session::attach_in`],
/// [`Session::scan_root`] (so [`Session::sweep_root`]) — so every command
/// that takes a root refuses such a path at once, the same way: a session
/// under it would hand its workers and nodes paths they print raw or
/// lossily (`shmwire demo` under such a root waited 21 s for a worker
/// that never registered).
pub fn check_root_path(root: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = root.as_os_str().as_bytes();
    let mut at = 0;
    for chunk in bytes.utf8_chunks() {
        for (i, c) in chunk.valid().char_indices() {
            if c.is_control() {
                return Err(ShmError::BadRootPath {
                    path: escape_path_bytes(bytes),
                    what: format!("a control character ({})", c.escape_default()),
                    at: at + i,
                    hint: ROOT_PATH_HINT,
                });
            }
        }
        at += chunk.valid().len();
        if let Some(b) = chunk.invalid().first() {
            return Err(ShmError::BadRootPath {
                path: escape_path_bytes(bytes),
                what: format!("a byte that is not UTF-8 (\\x{b:02x})"),
                at,
                hint: ROOT_PATH_HINT,
            });
        }
    }
    Ok(())
}

/// `root` checked ([`check_root_path`]) and, if relative, made absolute:
/// resolved (`canonicalize`) where it exists — the root, else its parent —
/// so that a `..` in it or the current directory renamed later does not
/// move it, else the current directory prefixed. Every path a
/// session publishes — a worker's Unix socket in its directory entry — is
/// then reachable from any process, whatever its current directory
/// (before, `--root dir` published `dir/…` paths that a process started
/// elsewhere could not connect to).
fn absolute_root(root: &Path) -> Result<PathBuf> {
    check_root_path(root)?;
    if root.is_absolute() {
        return Ok(root.to_owned());
    }
    // Resolved where it exists (a `..` or the current directory renamed
    // later must not move it): the root itself, else its parent.
    let resolved = fs::canonicalize(root).or_else(|e| match (root.parent(), root.file_name()) {
        (Some(p), Some(n)) if e.kind() == ErrorKind::NotFound => {
            let p = if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            };
            fs::canonicalize(p).map(|p| p.join(n))
        }
        _ => Err(e),
    });
    let abs = match resolved {
        Ok(p) => p,
        Err(_) => std::path::absolute(root)
            .map_err(|e| ShmError::io("make the root absolute", root, e))?,
    };
    // The current directory's part is checked too.
    check_root_path(&abs)?;
    Ok(abs)
}

/// Checks that `path` is a directory we own with no group/other access.
fn check_private_dir(path: &Path, hint: &'static str) -> Result<()> {
    let md = fs::symlink_metadata(path).map_err(|e| ShmError::io("stat", path, e))?;
    if !md.file_type().is_dir() {
        return Err(ShmError::WrongFileType {
            path: path.to_owned(),
            found: crate::sys::fs::file_type_name(md.file_type()),
            expected: "directory",
            hint,
        });
    }
    if md.uid() != euid() {
        return Err(ShmError::WrongOwner {
            path: path.to_owned(),
            found: md.uid(),
            expected: euid(),
            hint,
        });
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ShmError::InsecureMode {
            path: path.to_owned(),
            mode,
            hint,
        });
    }
    Ok(())
}

/// Creates `path` (mode 0700) unless it exists, then checks it; returns
/// whether this call created it. Its parent must exist: shmwire never
/// creates directories above a root (a mistyped `SHMWIRE_ROOT` is an error
/// naming the path, not a new tree in `/`).
fn ensure_private_dir(path: &Path, hint: &'static str) -> Result<bool> {
    // A directory removed between the `mkdir` and the check (another
    // process removing the session it opened under the same name, or a
    // cleanup) is made again: a few times, then the error stands.
    let mut tries = 0;
    loop {
        tries += 1;
        let gone = |e: &ShmError| {
            tries < 100
                && matches!(e, ShmError::Io { source, .. } if source.kind() == ErrorKind::NotFound)
        };
        let created = match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {
                // The umask may have removed bits we want; never adds any.
                match fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                {
                    Ok(()) => true,
                    Err(e) => {
                        let e = ShmError::io("chmod", path, e);
                        if gone(&e) {
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => return Err(ShmError::io("mkdir", path, e)),
        };
        match check_private_dir(path, hint) {
            Ok(()) => return Ok(created),
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates the session root `root` (mode 0700) unless it exists, as
/// [`Session::open_in`] would, and checks it (its path first, by
/// [`check_root_path`]; then that it is a directory of this user's without
/// group/other access). Returns whether this call created it — so a
/// command that made a root for itself (`shmwire demo` under a missing
/// `SHMWIRE_ROOT`) can remove it again when it is done and the root is
/// empty, and never removes one that was there before.
pub fn ensure_root(root: &Path) -> Result<bool> {
    check_root_path(root)?;
    ensure_private_dir(root, ROOT_HINT)
}

/// Opens a directory for `flock`, never following a symlink.
fn open_dir(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(O_DIRECTORY | O_NOFOLLOW)
        .open(path)
}

/// A few random-ish bits without a random-number crate: the std hasher is
/// seeded randomly per process; mixing in time and a counter makes every
/// call distinct. Used only to make lock-file names unique (O_EXCL catches
/// the rest).
fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    // Relaxed: the counter only needs to differ between calls, it orders nothing.
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// This process's liveness lock in one session directory.
struct ProcLock {
    name: String,
    /// Holds the exclusive `flock` for as long as the process lives.
    file: File,
    /// The session directory's (device, inode) when the lock was made in
    /// it: a directory at the path that has others is not this one.
    dir_ident: (u64, u64),
}

/// Process-global registry: session directory → our lock file there.
///
/// A plain `std` mutex (not `crate::sync`): this is ordinary bookkeeping,
/// never placed in shared memory and never part of a loom model.
fn registry() -> &'static Mutex<HashMap<PathBuf, ProcLock>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, ProcLock>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Session roots this process made (opening a session in a missing root):
/// [`Session::remove_all`] removes such a root once it is empty, so a
/// process that made one leaves none behind (an example run under the
/// default root left an empty `/dev/shm/shmwire-<uid>`). A root that was
/// there before is never removed.
fn made_roots() -> &'static Mutex<std::collections::HashSet<PathBuf>> {
    static MADE: OnceLock<Mutex<std::collections::HashSet<PathBuf>>> = OnceLock::new();
    MADE.get_or_init(|| Mutex::new(std::collections::HashSet::new()))
}

/// The names in a session directory: those that are UTF-8 (sorted), and
/// the others, escaped ([`crate::one_line`]; sorted; never ours).
#[derive(Debug, Default)]
struct DirNames {
    utf8: Vec<String>,
    not_utf8: Vec<String>,
}

/// Creates the session marker unless it is there; it must be an empty
/// regular file of ours. Opened for reading and writing: a write-only,
/// non-blocking open of a FIFO without a reader fails `ENXIO` ("No such
/// device or address"), which said nothing of the FIFO; a read-write one
/// opens it, and the type check below names it.
fn ensure_marker(dir: &Path) -> Result<()> {
    let path = dir.join(SESSION_MARKER);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(&path)
        .map_err(|e| ShmError::io("create session marker", &path, e))?;
    let md = f.metadata().map_err(|e| ShmError::io("stat", &path, e))?;
    if !md.is_file() {
        return Err(ShmError::WrongFileType {
            path,
            found: crate::sys::fs::file_type_name(md.file_type()),
            expected: "regular file",
            hint: "",
        });
    }
    Ok(())
}

/// How long [`may_become_session`] waits for a missing session marker.
const MARKER_WAIT: Duration = Duration::from_secs(2);

/// Whether the existing directory `dir`, which carried no session marker
/// when looked at, may be made a session: it is empty (its creator has not
/// written the marker yet — the marker is the first file a creator makes —
/// or it was left empty), or the marker appears within [`MARKER_WAIT`] (a
/// creator writing it now; the live processes of a session whose marker
/// was removed put it back within a second). Anything else is someone's
/// own directory. Nothing inside is trusted as evidence: a lock file there
/// proves nothing, since any process can hold one (the attack on `b78eef7`
/// planted `proc-1-deadbeef.lock`, held it with `flock(1)`, and the
/// directory was taken for a session).
fn may_become_session(dir: &Path) -> io::Result<bool> {
    let deadline = Instant::now() + MARKER_WAIT;
    loop {
        if has_marker(dir) || fs::read_dir(dir)?.next().is_none() {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `dir` carries the session marker (a regular file, not followed).
fn has_marker(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(SESSION_MARKER))
        .map(|m| m.file_type().is_file() && m.uid() == euid())
        .unwrap_or(false)
}

/// Returns the name of this process's lock file in `dir`, creating the
/// directory (and `root`, when given), the session marker and the lock on
/// first use — or again, when a cleanup or [`Session::remove_all`] removed
/// them.
///
/// Runs under a shared `flock` on the directory, which a cleanup pass holds
/// exclusively only while it may remove the directory (its last step); the
/// lock file is created under a temporary dot-name, locked, and only then
/// renamed to `proc-<pid>-<8 hex>.lock`, so a cleaner never sees a
/// `proc-*.lock` that is not yet locked by its live owner.
fn owner_lock(dir: &Path, root: Option<&Path>) -> Result<String> {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    // A lock file of ours that was removed or replaced (a stray `rm`, a
    // file renamed over it) is made again under the same name: the files
    // named after it (sockets, areas) stay this live process's, not a
    // dead owner's that every cleanup pass removes.
    //
    // The registry keeps the old entry until the new lock is in place: a
    // failed attempt (a directory at the lock's path, say) leaves the lock
    // missing and this process still knowing it, so the next call tries
    // again (before, the entry was dropped first, and after one failure the
    // process took the missing lock for intact and never put it back).
    let mut reuse = None;
    if let Some(lock) = reg.get(dir) {
        if same_file(&lock.file, &dir.join(&lock.name)) {
            return Ok(lock.name.clone());
        }
        reuse = Some(lock.name.clone());
    }
    // A root this process made may be gone with its last session
    // (`Session::remove_all`): a later use makes it again.
    let made_parent = match root {
        Some(_) => None,
        None => dir.parent().map(Path::to_path_buf).filter(|p| {
            made_roots()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(p)
        }),
    };
    let root = root.or(made_parent.as_deref());
    let deadline = Instant::now() + SETUP_WAIT;
    let pid = std::process::id();
    // Whether this call made the root (then a failed setup takes it back
    // too, when it is empty).
    let mut made_root = false;
    loop {
        if let Some(root) = root {
            made_root |= ensure_private_dir(root, ROOT_HINT)?;
        }
        let made = match ensure_private_dir(dir, "") {
            Ok(made) => made,
            // The root, just made or checked, was removed before the
            // session directory was made in it (by a `shmwire demo` that
            // had made it and left it empty): make it again.
            Err(ShmError::Io {
                op: "mkdir",
                source,
                ..
            }) if root.is_some()
                && source.kind() == ErrorKind::NotFound
                && Instant::now() <= deadline =>
            {
                continue
            }
            // Made, then removed before its `chmod` by another process's
            // `remove_all` of the same session (two processes opening and
            // leaving one session at once: CI on `1a8ef10`, "chmod …: No
            // such file or directory"): make it again.
            Err(ShmError::Io {
                op: "chmod",
                source,
                ..
            }) if source.kind() == ErrorKind::NotFound && Instant::now() <= deadline => continue,
            Err(e) => return Err(e),
        };
        let d = match open_dir(dir) {
            Ok(d) => d,
            // Removed between mkdir and open by a cleanup: make it again.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(ShmError::io("open", dir, e)),
        };
        if !try_lock_shared(&d).map_err(|e| ShmError::io("flock (shared)", dir, e))? {
            // A cleanup pass holds it for a moment.
            if Instant::now() > deadline {
                return Err(ShmError::io(
                    "flock (shared), waiting for a cleanup pass",
                    dir,
                    io::Error::from(ErrorKind::TimedOut),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if !same_file(&d, dir) {
            // The cleanup removed the directory we locked: start over.
            continue;
        }
        // A directory that was there before, without the marker, becomes a
        // session only if it is empty or the marker appears (see
        // `may_become_session`). Otherwise it is
        // someone's own directory: marked, its files would look like a dead
        // process's leftovers to every cleanup pass (the attack on
        // `0060161`: a node started on `~/…/projects` removed the user's
        // files, and a later cleanup the directory).
        if !made && reuse.is_none() && !has_marker(dir) {
            match may_become_session(dir) {
                Ok(true) => {}
                Ok(false) => {
                    // Something else under the marker's name (a FIFO, a
                    // link) is named as such, as `ensure_marker` would.
                    let path = dir.join(SESSION_MARKER);
                    return Err(match fs::symlink_metadata(&path) {
                        Ok(m) if !m.file_type().is_file() => ShmError::WrongFileType {
                            path,
                            found: crate::sys::fs::file_type_name(m.file_type()),
                            expected: "regular file",
                            hint: "",
                        },
                        _ => ShmError::ForeignDirectory {
                            path: dir.to_path_buf(),
                            marker: SESSION_MARKER,
                        },
                    });
                }
                Err(e) => return Err(ShmError::io("readdir", dir, e)),
            }
        }
        // A start that fails from here on (no inode or space left for the
        // marker or the lock file) takes back the directory it made: each
        // failed start would otherwise leave one, and an empty one (no
        // marker) is not even cleanup's to remove.
        let undo = |e: ShmError| {
            if made {
                remove_new_session_dir(&d, dir);
                if let Some(root) = root.filter(|_| made_root) {
                    // Refused unless empty (another session in it stays).
                    let _ = fs::remove_dir(root);
                }
            }
            e
        };
        let dir_ident = d
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .map_err(|e| undo(ShmError::io("stat", dir, e)))?;
        ensure_marker(dir).map_err(undo)?;
        // Short (sockets are named after it and socket paths are limited to
        // 107 bytes); the pid makes it unique among live processes, the
        // random part across pid reuse, O_EXCL below catches the rest.
        let stem = match &reuse {
            Some(name) => name[LOCK_PREFIX.len()..name.len() - LOCK_SUFFIX.len()].to_owned(),
            None => format!("{pid}-{:08x}", random_u64() as u32),
        };
        let tmp = dir.join(format!("{TMP_LOCK_PREFIX}{stem}{TMP_LOCK_SUFFIX}"));
        let name = format!("{LOCK_PREFIX}{stem}{LOCK_SUFFIX}");
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => f,
            // A fresh stem taken: draw another. Never for a lock put back:
            // its stem names the process's other files (socket, area), so
            // something else at its temporary name fails this attempt (the
            // caller tries again later) instead of giving the process a new
            // stem, under which cleanup would take those files for a dead
            // process's.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && reuse.is_none() => continue,
            Err(e) => return Err(undo(ShmError::io("create lock file", &tmp, e))),
        };
        // A cleanup pass runs beside us (it holds the directory shared
        // too) and looks at a `.proc-*.lock.tmp` once it is older than
        // `TMP_LOCK_GRACE`: if we were stopped that long between the create
        // and the `flock`, it may have taken the lock first (then it removes
        // the name while the name is still this file), or removed the name
        // already (the rename below finds nothing). Either way this attempt
        // starts over with a new file under the same name, which no pass
        // takes for the old one (it removes a name only while the name is
        // the file it locked).
        let locked = try_lock_exclusive(&file).map_err(|e| ShmError::io("flock", &tmp, e));
        match locked {
            Ok(true) => {}
            Ok(false) if Instant::now() <= deadline => {
                let _ = remove_if_same(&file, &tmp);
                continue;
            }
            Ok(false) => {
                let _ = remove_if_same(&file, &tmp);
                return Err(undo(ShmError::io(
                    "flock",
                    &tmp,
                    io::Error::from(ErrorKind::WouldBlock),
                )));
            }
            Err(e) => {
                let _ = remove_if_same(&file, &tmp);
                return Err(undo(e));
            }
        }
        match fs::rename(&tmp, dir.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound && Instant::now() <= deadline => continue,
            Err(e) => {
                let _ = remove_if_same(&file, &tmp);
                return Err(undo(ShmError::io("rename lock file", &tmp, e)));
            }
        }
        reg.insert(
            dir.to_owned(),
            ProcLock {
                name: name.clone(),
                file,
                dir_ident,
            },
        );
        if let Some(root) = root.filter(|_| made_root) {
            made_roots()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(root.to_owned());
        }
        return Ok(name);
    }
}

/// Removes session directory `dir`, which this process just made and whose
/// set-up failed, with the marker it may hold — only when no other process
/// is in it: `d` (the directory, locked shared by this process) must take
/// the exclusive lock, which every process in the session and every
/// cleanup pass holds shared or exclusive. Best effort: anything else in
/// the directory keeps it (`rmdir` refuses a non-empty one).
fn remove_new_session_dir(d: &File, dir: &Path) {
    if try_lock_exclusive(d).unwrap_or(false) {
        let _ = fs::remove_file(dir.join(SESSION_MARKER));
        let _ = fs::remove_dir(dir);
    }
}

/// Forgets (and removes) this process's lock file in `dir`.
fn release_owner_lock(dir: &Path) {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lock) = reg.remove(dir) {
        // Still holding the lock: nobody mistakes it for a dead one first.
        let _ = remove_if_same(&lock.file, &dir.join(&lock.name));
    }
}

static OWNED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh path `<dir>/.<tag>-<stem>-<n><suffix>` owned by this process's
/// lock in session directory `dir` (taken if needed, see
/// [`Session::process_lock_name`]): cleanup removes it exactly when that
/// lock is dead. `tag` is [`SOCKET_TAG`](super::SOCKET_TAG) or
/// [`TMP_TAG`](super::TMP_TAG).
pub fn owned_file_path_in(dir: &Path, tag: &str, suffix: &str) -> Result<PathBuf> {
    let lock = owner_lock(dir, None)?;
    let stem = &lock[LOCK_PREFIX.len()..lock.len() - LOCK_SUFFIX.len()];
    // Relaxed: the counter only makes names distinct, it orders nothing.
    let n = OWNED_COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".{tag}-{stem}-{n}{suffix}")))
}

/// A fresh temporary-file path in `dir` ending in `-<what>`: in a session
/// directory (one carrying the marker) it is owned by this process's lock
/// there ([`owned_file_path_in`] with [`TMP_TAG`](super::TMP_TAG)), so
/// cleanup removes it if this process dies before it renames or removes
/// it; in any other directory (which no cleanup enters) it is just unique.
pub fn temp_path_in(dir: &Path, what: &str) -> Result<PathBuf> {
    if has_marker(dir) {
        return owned_file_path_in(dir, super::name::TMP_TAG, &format!("-{what}"));
    }
    // Relaxed: the counter only makes names distinct, it orders nothing.
    let n = OWNED_COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".tmp-{what}-{}-{n}", std::process::id())))
}

/// [`read_header_file`] of a regular file of ours; `None` (nothing read)
/// for anything else, which [`segment_fate`] leaves alone.
fn read_ours(file: &File, md: &fs::Metadata) -> io::Result<Option<HeaderSnapshot>> {
    if md.file_type().is_file() && md.uid() == euid() {
        read_header_file(file)
    } else {
        Ok(None)
    }
}

/// Reads the header of the segment file at `path` with `pread` (no mapping,
/// so a truncated file cannot raise `SIGBUS`). `None` if the file is
/// shorter than a header.
fn read_header_file(file: &File) -> io::Result<Option<HeaderSnapshot>> {
    let mut buf = [0u8; HEADER_SIZE];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => Ok(Some(HeaderSnapshot::from_bytes(&buf))),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// A short name for a file type, for reports.
fn type_name(ft: fs::FileType) -> &'static str {
    if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else {
        "unknown type"
    }
}

/// What a cleanup pass ([`Session::cleanup_stale`], [`Session::remove_all`],
/// [`Session::sweep_root`]) did in one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Segments removed because their creator is dead.
    pub removed_segments: Vec<String>,
    /// Lock files (and leftover temporary lock files) of dead processes removed.
    pub removed_lock_files: Vec<String>,
    /// Other files of dead owners removed: bootstrap sockets, directory
    /// entries, temporary files; and, with the directory, the token and the
    /// session marker.
    pub removed_other: Vec<String>,
    /// Whether the session directory itself was removed (nothing live and
    /// nothing foreign was left in it).
    pub removed_dir: bool,
    /// Segments kept because their creator is alive.
    pub live_segments: Vec<String>,
    /// Segment-named files too short for a header and younger than
    /// [`UNTAGGED_GRACE`], kept.
    pub kept_untagged: Vec<String>,
    /// Lock files of live processes.
    pub live_owners: Vec<String>,
    /// Other files kept because their owner lives (sockets, entries,
    /// temporary files).
    pub live_other: Vec<String>,
    /// Entries shmwire did not make (any name or type it does not create,
    /// or a file without the segment magic whose creator is unknown or
    /// alive), left alone, with their type.
    pub ignored: Vec<String>,
    /// Segment-named files that fail validation (bad magic: a scribbled
    /// header) whose creator is known and dead — named by the header's
    /// creator tag, or by the pid in the name (`<kind>-<pid>-…`) — removed
    /// (also listed in `removed_segments`).
    pub corrupt: Vec<String>,
    /// Part of the pass was skipped; the next pass does it. Either the
    /// whole pass: another process held the session directory's lock
    /// exclusively (the last step of another pass, a failed set-up taking
    /// its directory back, a token repair: a few system calls each) for
    /// longer than 200 ms. Or only its last step, the removal of the
    /// session's own files and directory once nothing live is left: a
    /// process was setting the session up (or another pass was in it), so
    /// the directory's lock was not free to take exclusively, or more than
    /// that step reads was left in the directory.
    pub busy: bool,
    /// The session directory vanished under the pass (another cleanup
    /// removed it): not an error.
    pub vanished: bool,
    /// Operations that failed, each naming the operation and the path; the
    /// pass went on with the other entries.
    pub errors: Vec<String>,
    /// A dry run ([`Session::cleanup_dry_run`]): the `removed_*` lists and
    /// `removed_dir` say what *would* be removed; nothing was.
    pub dry_run: bool,
}

impl CleanupReport {
    /// Whether the pass removed any file.
    pub fn removed_anything(&self) -> bool {
        !self.removed_segments.is_empty()
            || !self.removed_lock_files.is_empty()
            || !self.removed_other.is_empty()
    }

    /// Whether anything of a live process remains in the session.
    pub fn has_live(&self) -> bool {
        !self.live_owners.is_empty()
            || !self.live_segments.is_empty()
            || !self.live_other.is_empty()
    }
}

/// What `shmwire inspect` shows about one segment file.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// Segment name (file name).
    pub name: String,
    /// File size in bytes.
    pub file_size: u64,
    /// The header, if the file is long enough to hold one.
    pub header: Option<HeaderSnapshot>,
    /// `Some(true)` if the creator lives, `Some(false)` if it is dead,
    /// `None` if no creator can be named (`fate.creator_alive()`).
    pub creator_alive: Option<bool>,
    /// Why the segment would not open (any kind accepted), if it would not.
    pub problem: Option<String>,
    /// What the cleanup pass does with it: the pass's own classification.
    pub fate: SegmentFate,
}

/// What the cleanup pass does with a segment-named file, decided from one
/// snapshot of its header, its owner and age, and its creator's liveness
/// (`segment_fate`): the one classification the pass acts on
/// ([`Session::cleanup_stale`] and its siblings) and `shmwire inspect`
/// reports ([`Session::inspect`], [`SegmentInfo::fate`]), so the two never
/// disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentFate {
    /// The creator its header's tag names lives: kept.
    Live,
    /// The creator its header's tag names is dead: removed.
    Stale,
    /// The shmwire magic but no valid creator tag (only a hostile writer
    /// leaves that): removed.
    Untagged,
    /// The header's tag names a dead creator but the pid in the segment's
    /// own name (`<kind>-<pid>-…`) is a live process: the header was
    /// rewritten; kept.
    RewrittenOwnerLives,
    /// No shmwire magic (a scribbled header) and its creator — the
    /// header's tag if it survived, else the pid in the name — is dead:
    /// removed, reported as corrupt ([`CleanupReport::corrupt`]).
    CorruptCreatorDead,
    /// No shmwire magic and its creator (found as above) lives: kept
    /// while it lives.
    CorruptCreatorAlive,
    /// No shmwire magic and no creator can be named (no tag, no pid in the
    /// name): not made by shmwire, left alone ([`CleanupReport::ignored`]).
    NotShmwire,
    /// Not a regular file of ours (another user's, or not a regular file):
    /// left alone.
    NotOurs,
    /// Shorter than a header and younger than the grace
    /// ([`UNTAGGED_GRACE`]): kept for now.
    ShortYoung,
    /// Shorter than a header and older than the grace: removed.
    ShortOld,
    /// It could not be opened or read, or its creator's lock could not be
    /// probed (an I/O error, reported as the problem): the pass keeps it
    /// and reports the same error.
    ProbeFailed,
}

impl SegmentFate {
    /// Whether the cleanup pass removes the file.
    pub fn removed(self) -> bool {
        matches!(
            self,
            Self::Stale | Self::Untagged | Self::CorruptCreatorDead | Self::ShortOld
        )
    }

    /// Whether the process that made the file lives: `Some(true)` /
    /// `Some(false)`, `None` when no creator can be named.
    pub fn creator_alive(self) -> Option<bool> {
        match self {
            Self::Live | Self::RewrittenOwnerLives | Self::CorruptCreatorAlive => Some(true),
            Self::Stale | Self::CorruptCreatorDead => Some(false),
            Self::Untagged
            | Self::NotShmwire
            | Self::NotOurs
            | Self::ShortYoung
            | Self::ShortOld
            | Self::ProbeFailed => None,
        }
    }

    /// What it is and what cleanup does with it, in a few words (as
    /// `shmwire inspect` prints it).
    pub fn describe(self) -> &'static str {
        match self {
            Self::Live => "creator alive: kept",
            Self::Stale => "creator dead: cleanup will remove it",
            Self::Untagged => "no valid creator tag: cleanup will remove it",
            Self::RewrittenOwnerLives => {
                "header names a dead creator, but the process its name carries lives (header rewritten): kept"
            }
            Self::CorruptCreatorDead => "corrupt, creator dead: cleanup will remove it",
            Self::CorruptCreatorAlive => "corrupt, creator alive: kept while it lives",
            Self::NotShmwire => "no creator known: not made by shmwire, left alone",
            Self::NotOurs => "not a regular file of ours: left alone",
            Self::ShortYoung => "too short for a header and young: kept for now",
            Self::ShortOld => "too short for a header: cleanup will remove it",
            Self::ProbeFailed => {
                "it or its creator's lock could not be read: cleanup keeps it and reports the error"
            }
        }
    }
}

/// Classifies the segment-named file `name` in `dir` (see [`SegmentFate`])
/// from its metadata `md` and one snapshot of its `header` (`None`: shorter
/// than a header). Creators' liveness goes through `owners` (a dead one's
/// lock stays held by it until it is dropped).
fn segment_fate(
    owners: &mut Owners,
    dir: &Path,
    name: &str,
    md: &fs::Metadata,
    header: Option<&HeaderSnapshot>,
    untagged_grace: Duration,
) -> Result<SegmentFate> {
    if !md.file_type().is_file() || md.uid() != euid() {
        return Ok(SegmentFate::NotOurs);
    }
    let tag_stem = |h: &HeaderSnapshot| {
        h.creator_tag_str()
            .filter(|t| is_lock_file_name(t))
            .map(|t| t[LOCK_PREFIX.len()..t.len() - LOCK_SUFFIX.len()].to_owned())
    };
    Ok(match header {
        Some(h) if h.magic != MAGIC => {
            // Fails validation: a scribbled header, or not shmwire's.
            // Corrupt (removed) only when its creator is known and dead:
            // the header's creator tag if it survived, else the pid every
            // segment name of shmwire carries second.
            let dead = match tag_stem(h) {
                Some(stem) => Some(owners.is_dead(dir, &stem)?),
                None => name
                    .split('-')
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok())
                    .and_then(crate::sys::liveness::pid_exists)
                    .map(|alive| !alive),
            };
            match dead {
                Some(true) => SegmentFate::CorruptCreatorDead,
                Some(false) => SegmentFate::CorruptCreatorAlive,
                None => SegmentFate::NotShmwire,
            }
        }
        Some(h) => match tag_stem(h) {
            Some(stem) => {
                if !owners.is_dead(dir, &stem)? {
                    SegmentFate::Live
                } else if renamed_owner_lives(name, &stem) {
                    // The tag names another process than the file's name,
                    // and the named one lives: the header was rewritten (a
                    // live node's area was removed this way); a live
                    // process's file is kept.
                    SegmentFate::RewrittenOwnerLives
                } else {
                    SegmentFate::Stale
                }
            }
            // Magic but no valid tag: only a hostile writer makes that.
            None => SegmentFate::Untagged,
        },
        None => {
            // Too short for a header: an older build's half-made segment.
            if !older_than(md, untagged_grace) {
                SegmentFate::ShortYoung
            } else {
                SegmentFate::ShortOld
            }
        }
    })
}

/// Liveness of one session, for `shmwire inspect` (nothing is changed).
#[derive(Clone, Debug, Default)]
pub struct SessionStatus {
    /// Lock files of live processes.
    pub live_owners: Vec<String>,
    /// Lock files of dead processes (still there: not cleaned up yet).
    pub dead_owners: Vec<String>,
    /// Directory entries (`.w-*.entry`) whose worker lives.
    pub live_entries: Vec<String>,
    /// Directory entries whose worker is dead.
    pub dead_entries: Vec<String>,
    /// Segment files.
    pub segments: usize,
    /// Entries shmwire did not make, with their type (segment-named
    /// ones that are not regular files are in `refused` instead); each
    /// name on one line ([`crate::one_line`]: a newline in it is `\n`).
    pub foreign: Vec<String>,
    /// Segment-named entries that are not regular files (a FIFO, a
    /// directory, a symbolic link, … named like a segment or a statistics
    /// area): `(name, type)`. Never opened, left alone; each is listed
    /// once, here, not also in `foreign`.
    pub refused: Vec<(String, &'static str)>,
}

impl SessionStatus {
    /// Whether any process of the session lives.
    pub fn is_live(&self) -> bool {
        !self.live_owners.is_empty() || !self.live_entries.is_empty()
    }
}

/// What is under a root: the shmwire sessions, and everything else.
#[derive(Clone, Debug, Default)]
pub struct RootScan {
    /// Session names (directories carrying the session marker), sorted.
    pub sessions: Vec<String>,
    /// Other entries, `"<name> (<type>)"`, left alone; each name on one
    /// line ([`crate::one_line`]).
    pub foreign: Vec<String>,
}

/// What [`Session::sweep_root`] did.
#[derive(Clone, Debug, Default)]
pub struct RootCleanup {
    /// One report per session, by name.
    pub sessions: Vec<(String, CleanupReport)>,
    /// Entries of the root that are not sessions, left alone.
    pub foreign: Vec<String>,
}

/// Owner states met during one pass: stem → live, or dead (with the dead
/// lock held by us, or `None` when the lock file is gone).
#[derive(Default)]
struct Owners {
    live: HashSet<String>,
    dead: HashMap<String, Option<File>>,
}

impl Owners {
    /// `Ok(true)` when owner `stem` is dead (its lock now held by us, or gone).
    fn is_dead(&mut self, dir: &Path, stem: &str) -> Result<bool> {
        if self.live.contains(stem) {
            return Ok(false);
        }
        if self.dead.contains_key(stem) {
            return Ok(true);
        }
        let path = dir.join(lock_name(stem));
        // Something other than a lock file under the name (a symlink, a
        // FIFO, …: never made by shmwire, left alone by the sweep) is no
        // lock, as if the name were free: the owner's files go as for a
        // missing lock, and the sweep does not stop at it.
        let probed = match probe_owner(&path) {
            Err(e) if crate::sys::liveness::is_not_a_lock_file(&e) => Ok(OwnerState::Missing),
            other => other,
        };
        match probed.map_err(|e| ShmError::io("flock", &path, e))? {
            OwnerState::Live => {
                self.live.insert(stem.to_owned());
                Ok(false)
            }
            OwnerState::Dead(f) => {
                self.dead.insert(stem.to_owned(), Some(f));
                Ok(true)
            }
            OwnerState::Missing => {
                self.dead.insert(stem.to_owned(), None);
                Ok(true)
            }
        }
    }
}

/// Removes `path` if it is still the file `held` has open (the sweep's
/// removal of a dead owner's locked file); in a dry run, only says whether
/// it would.
fn remove_held(dry: bool, held: &File, path: &Path) -> io::Result<bool> {
    if dry {
        Ok(same_file(held, path))
    } else {
        remove_if_same(held, path)
    }
}

/// Removes `path` (a dead owner's file named after it); in a dry run, only
/// checks it is still there (`NotFound` otherwise, as a removal would say).
fn remove_path(dry: bool, path: &Path) -> io::Result<()> {
    if dry {
        fs::symlink_metadata(path).map(|_| ())
    } else {
        fs::remove_file(path)
    }
}

/// Opens a file for reading without following a symlink and without
/// blocking (a FIFO); `None` when it vanished meanwhile.
fn open_nonblocking(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A per-session namespace: the directory `<root>/<name>/` (mode 0700) that
/// holds the session's segment files and the lock files of the processes
/// that created them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    name: String,
    root: PathBuf,
    dir: PathBuf,
}

impl Session {
    /// Opens (creating if needed) session `name` under [`default_root`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_in(default_root(), name)
    }

    /// Opens (creating if needed, mode 0700) session `name` under `root`
    /// (also created 0700 if missing). Both must be directories owned by us
    /// without group/other access, and the root's path must hold no control
    /// character and only UTF-8 ([`check_root_path`], checked first, before
    /// anything is created). A relative root is made absolute (the current
    /// directory prefixed: [`Session::root`] and every path the session
    /// publishes are absolute).
    ///
    /// Takes this process's lock file in the session at once: from here on
    /// the session is live, and no cleanup removes it or anything of ours
    /// in it until this process exits (or calls [`Session::remove_all`]).
    pub fn open_in(root: impl AsRef<Path>, name: &str) -> Result<Self> {
        let root = absolute_root(root.as_ref())?;
        validate_session_name(name)?;
        let dir = root.join(name);
        owner_lock(&dir, Some(&root))?;
        Ok(Self {
            name: name.to_owned(),
            root,
            dir,
        })
    }

    /// Attaches to an existing session without creating anything
    /// (`SessionNotFound` if it does not exist, `NotASession` if the
    /// directory carries no session marker; a root refused by
    /// [`check_root_path`] is `BadRootPath`). Used by inspect/cleanup.
    pub fn attach_in(root: impl AsRef<Path>, name: &str) -> Result<Self> {
        let root = absolute_root(root.as_ref())?;
        validate_session_name(name)?;
        let dir = root.join(name);
        match fs::symlink_metadata(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ShmError::SessionNotFound { path: dir })
            }
            Err(e) => return Err(ShmError::io("stat", dir, e)),
        }
        match check_private_dir(&dir, "") {
            Err(ShmError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Err(ShmError::SessionNotFound { path: dir })
            }
            other => other?,
        }
        if !has_marker(&dir) {
            let found = fs::symlink_metadata(dir.join(SESSION_MARKER))
                .ok()
                .map(|m| {
                    if m.file_type().is_file() {
                        "a regular file of another user"
                    } else {
                        crate::sys::fs::file_type_name(m.file_type())
                    }
                });
            return Err(ShmError::NotASession {
                path: dir,
                marker: SESSION_MARKER,
                found,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            root,
            dir,
        })
    }

    /// The session name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root directory the session lives under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path segment `name` has (or would have) in this session.
    pub fn segment_path(&self, name: &str) -> Result<PathBuf> {
        validate_segment_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Name of this process's liveness lock file in the session, created and
    /// locked on first call (and again if the session directory was removed
    /// meanwhile, which recreates it).
    pub fn process_lock_name(&self) -> Result<String> {
        owner_lock(&self.dir, Some(&self.root))
    }

    /// Makes this process's lock file in the session again — under the
    /// same name, locked, by [`Session::process_lock_name`] — if it was
    /// removed or replaced while the process lives. Until then the
    /// process looked dead to every cleanup pass, which removes the files
    /// named after the lock (its listening socket, its statistics area);
    /// the callers of this put those back next. `Ok(true)` if it did;
    /// `Ok(false)` while the lock is intact, the process holds none here or
    /// the session directory is gone or replaced ([`Session::dir_intact`]).
    /// Costs an `fstat` and an `lstat`.
    ///
    /// # Errors
    /// As [`Session::process_lock_name`] (the lock stays missing: call
    /// again later).
    pub fn restore_process_lock(&self) -> Result<bool> {
        // A session directory removed or replaced under the process (a
        // new one, a symbolic link) is not made again or moved into here.
        if self.process_lock_intact() || !self.dir_intact() {
            return Ok(false);
        }
        self.process_lock_name()?;
        Ok(true)
    }

    /// Whether the session directory at its path is still the one this
    /// process made its lock in (same device and inode, not followed
    /// through a symbolic link); `false` when it holds no lock here. Files
    /// are put back only while it is: a session directory removed, or
    /// replaced by another one or a link, is not this process's to fill.
    pub fn dir_intact(&self) -> bool {
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.get(&self.dir).is_some_and(|l| {
            fs::symlink_metadata(&self.dir)
                .is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == l.dir_ident)
        })
    }

    /// The pass's owner table, this process already in it as live while
    /// it holds its lock here: whatever is found under its lock file's name
    /// (a junk file renamed over it in the middle of a pass, before the
    /// process puts its lock back), its own files are never dead to its own
    /// pass (found by the attack on `6bf9e1b`: a rename over the node's
    /// lock between its check and its pass made the node remove its own
    /// statistics area and its store's socket). [`Session::remove_all`]
    /// gives the lock up first, so its pass removes them.
    fn owners_with_self(&self) -> Owners {
        let mut owners = Owners::default();
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stem) = reg.get(&self.dir).and_then(|l| {
            l.name
                .strip_prefix(LOCK_PREFIX)
                .and_then(|n| n.strip_suffix(LOCK_SUFFIX))
        }) {
            owners.live.insert(stem.to_owned());
        }
        owners
    }

    /// Makes the session marker again if it was removed (a stray `rm`:
    /// the directory is then no session to `inspect` or `cleanup`) or
    /// replaced by something that is not a regular file (a FIFO, a
    /// symbolic link, an empty directory: removed first);
    /// `Ok(true)` if it was made. Only into the directory this process made
    /// its lock in, with that lock in place ([`Session::dir_intact`],
    /// [`Session::process_lock_intact`]); otherwise `Ok(false)`.
    ///
    /// Errors: [`ShmError::Io`] (the create), [`ShmError::WrongFileType`]
    /// (something else under the name).
    pub fn restore_marker(&self) -> Result<bool> {
        if !self.dir_intact() || !self.process_lock_intact() {
            return Ok(false);
        }
        let path = self.dir.join(SESSION_MARKER);
        // Something else under its name (a FIFO, a symbolic link, an empty
        // directory) is no marker to `inspect` and `cleanup` either: it
        // goes (re-attack on `8744a0d`: it was taken for the marker).
        let gone = match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => return Ok(false),
            Ok(m) if m.file_type().is_dir() => fs::remove_dir(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        gone.map_err(|e| ShmError::io("remove what replaced the session marker", &path, e))?;
        ensure_marker(&self.dir).map(|()| true)
    }

    /// Takes the session directory's exclusive `flock` (the one a cleanup
    /// pass's last step holds; creators and passes hold it shared), waiting at
    /// most [`SWEEP_WAIT`]; the lock goes with the returned file.
    /// `Ok(None)` if it stayed taken that long.
    pub(crate) fn lock_dir_exclusive(&self) -> Result<Option<File>> {
        let d = open_dir(&self.dir).map_err(|e| ShmError::io("open", &self.dir, e))?;
        let deadline = Instant::now() + SWEEP_WAIT;
        loop {
            if try_lock_exclusive(&d).map_err(|e| ShmError::io("flock", &self.dir, e))? {
                return Ok(Some(d));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether a process other than this one holds its lock in the session
    /// now ([`Session::status`]'s live owners, this process's own lock
    /// left out). `false` if the directory cannot be read.
    pub(crate) fn others_live(&self) -> bool {
        let mine = self.process_lock_name().ok();
        self.status().is_ok_and(|st| {
            st.live_owners
                .iter()
                .any(|n| Some(n.as_str()) != mine.as_deref())
        })
    }

    /// Whether this process's lock file in the session is the one it
    /// holds (`true` too when it holds none here). Callers that put back
    /// other files check it first: with the lock missing, making a file
    /// makes the lock again, and the session directory with it if that
    /// is gone.
    pub fn process_lock_intact(&self) -> bool {
        let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.get(&self.dir)
            .is_none_or(|l| same_file(&l.file, &self.dir.join(&l.name)))
    }

    /// A fresh file path in the session owned by this process (see
    /// [`owned_file_path_in`]): `.<tag>-<stem>-<n><suffix>`.
    pub fn owned_file_path(&self, tag: &str, suffix: &str) -> Result<PathBuf> {
        self.process_lock_name()?;
        owned_file_path_in(&self.dir, tag, suffix)
    }

    fn read_dir_names(&self) -> Result<DirNames> {
        let rd = fs::read_dir(&self.dir).map_err(|e| ShmError::io("readdir", &self.dir, e))?;
        let mut names = DirNames::default();
        for ent in rd {
            let ent = ent.map_err(|e| ShmError::io("readdir", &self.dir, e))?;
            match ent.file_name().into_string() {
                Ok(n) => names.utf8.push(n),
                // Not ours (shmwire makes only ASCII names), and not to be
                // looked up by a lossy copy of its name: kept apart, so a
                // pass counts it as foreign (before, it vanished from every
                // list and the pass took the session for empty).
                Err(n) => names.not_utf8.push(crate::one_line(&n).into_owned()),
            }
        }
        names.utf8.sort();
        names.not_utf8.sort();
        Ok(names)
    }

    /// Names of the segment files in the session (sorted).
    pub fn segment_names(&self) -> Result<Vec<String>> {
        Ok(self
            .read_dir_names()?
            .utf8
            .into_iter()
            .filter(|n| validate_segment_name(n).is_ok())
            .collect())
    }

    /// Reads every segment-named file's header (without mapping, without
    /// blocking on a FIFO) for `shmwire inspect`: each file with why it
    /// would not open (if it would not: not a regular file — never opened,
    /// refused —, too short, no shmwire magic, …) and what the cleanup pass
    /// does with it ([`SegmentInfo::fate`], the pass's own
    /// [`SegmentFate`]). A dead creator's lock is held only until this
    /// returns, as in a dry run.
    pub fn inspect(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        // Dead creators' locks are held only until the end of this call.
        let mut owners = self.owners_with_self();
        for name in self.segment_names()? {
            let path = self.dir.join(&name);
            let Ok(lmd) = fs::symlink_metadata(&path) else {
                continue;
            };
            if !lmd.file_type().is_file() {
                out.push(SegmentInfo {
                    name,
                    file_size: 0,
                    header: None,
                    creator_alive: None,
                    problem: Some(format!(
                        "a {}, not a regular file: refused (not opened); not made by shmwire, left alone",
                        type_name(lmd.file_type())
                    )),
                    fate: SegmentFate::NotOurs,
                });
                continue;
            }
            // A file that cannot be opened or read (no permission, a
            // lease) is listed with its error, as the pass reports and
            // keeps it; the others are still inspected (before, the first
            // such file ended the whole report: the attack on `0060161`).
            let opened = open_nonblocking(&path)
                .map_err(|e| ShmError::io("open", &path, e))
                .and_then(|f| {
                    let Some(file) = f else { return Ok(None) };
                    let md = file
                        .metadata()
                        .map_err(|e| ShmError::io("stat", &path, e))?;
                    let header =
                        read_ours(&file, &md).map_err(|e| ShmError::io("read", &path, e))?;
                    Ok(Some((md, header)))
                });
            let (md, header) = match opened {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(e) => {
                    out.push(SegmentInfo {
                        name,
                        file_size: lmd.len(),
                        header: None,
                        creator_alive: None,
                        problem: Some(e.to_string()),
                        fate: SegmentFate::ProbeFailed,
                    });
                    continue;
                }
            };
            let file_size = md.len();
            let fate = segment_fate(
                &mut owners,
                &self.dir,
                &name,
                &md,
                header.as_ref(),
                UNTAGGED_GRACE,
            );
            let (fate, probe_error) = match fate {
                Ok(f) => (f, None),
                // The pass would report the same error and keep the file.
                Err(e) => (SegmentFate::ProbeFailed, Some(e.to_string())),
            };
            let problem = probe_error.or_else(|| match &header {
                None => Some(format!(
                    "file of {file_size} bytes is shorter than a header"
                )),
                Some(h) if h.magic != MAGIC => Some(
                    ShmError::BadMagic {
                        found: h.magic,
                        expected: MAGIC,
                    }
                    .to_string(),
                ),
                Some(h) if h.init_state == INIT_UNINIT => Some("not initialised yet".into()),
                Some(h) if h.init_state != INIT_READY => Some(
                    ShmError::BadInitState {
                        found: h.init_state,
                        expected: INIT_READY,
                    }
                    .to_string(),
                ),
                Some(h) => h.validate(h.kind, file_size).err().map(|e| e.to_string()),
            });
            out.push(SegmentInfo {
                name,
                file_size,
                header,
                creator_alive: fate.creator_alive(),
                problem,
                fate,
            });
        }
        Ok(out)
    }

    /// Which processes and workers of the session live (changes nothing;
    /// a probe of a dead lock holds it only for the probe).
    pub fn status(&self) -> Result<SessionStatus> {
        let mut st = SessionStatus::default();
        let names = self.read_dir_names()?;
        st.foreign.extend(
            names
                .not_utf8
                .iter()
                .map(|n| format!("{n} (name not UTF-8)")),
        );
        for name in names.utf8 {
            let path = self.dir.join(&name);
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = classify(&name);
            let regular = md.file_type().is_file();
            match kind {
                FileKind::OwnerLock(_) | FileKind::Entry if regular => {
                    let live = match probe_owner(&path) {
                        Ok(state) => matches!(state, OwnerState::Live),
                        // Out of descriptors or memory says nothing of the
                        // owner: an error, not "dead" (as the directory's
                        // lookups; see `Directory::probe`).
                        Err(e)
                            if crate::sys::fs::is_out_of_descriptors(&e)
                                || crate::sys::fs::is_out_of_memory(&e) =>
                        {
                            return Err(ShmError::io("flock", &path, e));
                        }
                        Err(_) => false,
                    };
                    let list = match (kind, live) {
                        (FileKind::Entry, true) => &mut st.live_entries,
                        (FileKind::Entry, false) => &mut st.dead_entries,
                        (_, true) => &mut st.live_owners,
                        (_, false) => &mut st.dead_owners,
                    };
                    list.push(name);
                }
                FileKind::Segment if regular => st.segments += 1,
                FileKind::Segment => st.refused.push((name, type_name(md.file_type()))),
                FileKind::Marker
                | FileKind::Token
                | FileKind::OwnerLockTmp
                | FileKind::NodeLock
                | FileKind::NameClaim
                | FileKind::NamesLock
                    if regular => {}
                FileKind::Owned(_) if regular || md.file_type().is_socket() => {}
                _ => st.foreign.push(format!(
                    "{} ({})",
                    crate::one_line(&name),
                    type_name(md.file_type())
                )),
            }
        }
        Ok(st)
    }

    /// Removes what dead processes left in the session. See
    /// [`Session::cleanup_stale_with_grace`]; this uses [`UNTAGGED_GRACE`].
    pub fn cleanup_stale(&self) -> Result<CleanupReport> {
        self.cleanup_stale_with_grace(UNTAGGED_GRACE)
    }

    /// Removes what dead processes left in the session — segments whose
    /// creator is dead, dead processes' lock files, their sockets and
    /// temporary files, directory entries of dead workers — entry by entry
    /// (see the module docs for who owns what). The session directory, its
    /// marker and its token stay; see [`Session::sweep_root`] for the pass
    /// that also removes a session nothing live is left in.
    ///
    /// A creator is dead when its lock file can be locked with
    /// `LOCK_EX | LOCK_NB`, or no longer exists. Files of live processes
    /// (this one included) are kept; anything shmwire does not make is left
    /// alone and listed in `ignored`. A segment-named file too short to
    /// hold a header is removed once its modification time is older than
    /// `untagged_grace`. Safe to run concurrently with live processes and
    /// with other cleanups; per-file failures are listed in `errors`.
    pub fn cleanup_stale_with_grace(&self, untagged_grace: Duration) -> Result<CleanupReport> {
        self.sweep(untagged_grace, false, false)
    }

    /// The pass [`Session::sweep_root`] runs on each session (`shmwire
    /// cleanup --session`): [`Session::cleanup_stale`], and then, if
    /// nothing live and nothing foreign is left, the token, the marker and
    /// the directory go too. Never removes a live process's files.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        self.sweep(UNTAGGED_GRACE, true, false)
    }

    /// What [`Session::cleanup`] would remove now, removing nothing (`shmwire
    /// cleanup --dry-run`): the same pass, with every removal reported
    /// instead of made (the report's `dry_run` is set). A dead owner's lock
    /// is held only while it is looked at, as `inspect` does.
    pub fn cleanup_dry_run(&self) -> Result<CleanupReport> {
        self.sweep(UNTAGGED_GRACE, true, true)
    }

    /// Tears this process's part of the session down and cleans up the
    /// rest: forgets (removes) this process's lock file — so every file it
    /// owns in the session counts as dead from here on — then runs the
    /// cleanup pass and removes the session directory if nothing live (of
    /// another process, or a directory entry this process still holds)
    /// and nothing foreign is left in it. Files of other live processes
    /// are never removed. Processes that still map a segment keep their
    /// mapping; a later use of this `Session` takes a new lock file (and
    /// recreates the directory). If this process made the session root
    /// (opening a session in a missing root), the root goes too once it is
    /// empty; a root that was there before is never removed.
    pub fn remove_all(&self) -> Result<CleanupReport> {
        release_owner_lock(&self.dir);
        // The same grace as every pass: a header-less file younger than
        // `UNTAGGED_GRACE` may be another process's segment being made, or
        // a file of the user's under a segment-like name.
        let report = self.sweep(UNTAGGED_GRACE, true, false)?;
        // `remove_dir` removes only an empty directory: a root holding
        // another session (of this process or another) stays, and the
        // last of this process's sessions in it removes it. It stays in the
        // set: a later use of a session in it makes it again.
        if made_roots()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&self.root)
        {
            let _ = fs::remove_dir(&self.root);
        }
        Ok(report)
    }

    /// The one cleanup pass over this session (see the module docs): the
    /// entries under the directory's *shared* lock, each removed only while
    /// its dead owner's lock is held; then, when nothing live is left and
    /// the session itself is to go, [`Session::sweep_last_step`] under the
    /// exclusive lock, taken without waiting.
    fn sweep(
        &self,
        untagged_grace: Duration,
        remove_dir: bool,
        dry: bool,
    ) -> Result<CleanupReport> {
        let mut report = CleanupReport {
            dry_run: dry,
            ..Default::default()
        };
        let dir = &self.dir;
        let d = match open_dir(dir) {
            Ok(d) => d,
            // Gone, or replaced by a file or a symlink (the attack on
            // `e3a6d33`: a node whose session directory was replaced so
            // stopped with "open …: Not a directory" instead of saying it
            // was gone from its path).
            Err(e) if crate::sys::fs::is_gone_or_not_a_directory(&e) => {
                report.vanished = true;
                return Ok(report);
            }
            Err(e) => return Err(ShmError::io("open", dir, e)),
        };
        // Shared, as creators take it: a process setting the session up
        // goes on beside the pass (however long the pass takes, stopped or
        // slow), and the directory is not removed under the pass (another
        // pass's last step, the only remover, takes it exclusively for a
        // few system calls).
        let deadline = Instant::now() + SWEEP_WAIT;
        loop {
            if try_lock_shared(&d).map_err(|e| ShmError::io("flock (shared)", dir, e))? {
                break;
            }
            if Instant::now() > deadline {
                report.busy = true;
                return Ok(report);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // A directory without the marker is not a session (never
        // entered), even at this session's path: the session's directory
        // was renamed away or replaced under its processes (they then find
        // their session gone from its path: `vanished`).
        if !same_file(&d, dir) || !has_marker(dir) {
            report.vanished = true;
            return Ok(report);
        }
        let names = match self.read_dir_names() {
            Ok(n) => {
                // Foreign whatever they are: the directory is not ours alone.
                report
                    .ignored
                    .extend(n.not_utf8.iter().map(|n| format!("{n} (name not UTF-8)")));
                n.utf8
            }
            Err(ShmError::Io { source, .. })
                if crate::sys::fs::is_gone_or_not_a_directory(&source) =>
            {
                report.vanished = true;
                return Ok(report);
            }
            Err(e) => return Err(e),
        };

        let mut owners = self.owners_with_self();
        let mut later = Vec::new();
        let mut errors = Vec::new();
        // Pass 1: the locks themselves.
        for name in names {
            let kind = classify(&name);
            if kind == FileKind::Foreign {
                // Foreign by its name alone: left alone without a look
                // (a `stat` each, every round of a node, made 50,000
                // foreign files cost the node ≈ 17 % of a core).
                report.ignored.push(name);
                continue;
            }
            let path = dir.join(&name);
            let md = match fs::symlink_metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(ShmError::io("stat", &path, e).to_string());
                    continue;
                }
            };
            let ft = md.file_type();
            let ours = match &kind {
                FileKind::Owned(_) => ft.is_file() || ft.is_socket(),
                FileKind::Foreign => false,
                // Whatever took the token's name (a FIFO, a link: never
                // followed) goes with the session, as the token would;
                // a directory may hold someone's files and stays.
                FileKind::Token => !ft.is_dir(),
                _ => ft.is_file(),
            };
            if !ours {
                report.ignored.push(name);
                continue;
            }
            match kind {
                FileKind::OwnerLock(stem) => {
                    if let Err(e) = owners.is_dead(dir, &stem) {
                        errors.push(e.to_string());
                        report.live_owners.push(name);
                    } else if owners.live.contains(&stem) {
                        report.live_owners.push(name);
                    }
                }
                // A lock file being made is unlocked between its creation
                // and its creator's `flock`: a young one is left alone (a
                // creator is setting the session up: the session is live).
                // An older one is probed as any lock; a creator stopped that
                // long starts its lock file over (see `owner_lock`).
                FileKind::OwnerLockTmp if !older_than(&md, TMP_LOCK_GRACE) => {
                    report.live_other.push(name)
                }
                FileKind::OwnerLockTmp | FileKind::Entry | FileKind::NodeLock => {
                    match probe_owner(&path) {
                        Ok(OwnerState::Live) => report.live_other.push(name),
                        Ok(OwnerState::Dead(held)) => match remove_held(dry, &held, &path) {
                            Ok(true) if matches!(kind, FileKind::Entry) => {
                                report.removed_other.push(name)
                            }
                            Ok(true) => report.removed_lock_files.push(name),
                            Ok(false) => {}
                            Err(e) => errors.push(ShmError::io("unlink", &path, e).to_string()),
                        },
                        Ok(OwnerState::Missing) => {}
                        Err(e) => {
                            errors.push(ShmError::io("flock", &path, e).to_string());
                            report.live_other.push(name);
                        }
                    }
                }
                // The session's own files go in the last step, listed again
                // under the exclusive lock. The names lock is held only
                // while a live process claims a name: it goes with the
                // session, never while it lives (removing it each round
                // would make it anew each registration, a change the node's
                // watch wakes for). A name's claim stays too, empty, for
                // the name's next claimant (a worker that exits removes its
                // own): removing a killed claimant's would race a new
                // claimant opening it.
                FileKind::Marker | FileKind::Token | FileKind::NamesLock | FileKind::NameClaim => {}
                FileKind::Owned(_) | FileKind::Segment => later.push((name, kind)),
                FileKind::Foreign => unreachable!("handled above"),
            }
        }
        // Pass 2: files owned by a lock.
        for (name, kind) in later {
            let r = match kind {
                FileKind::Owned(stem) => {
                    self.sweep_owned(&mut owners, &stem, &name, dry, &mut report)
                }
                _ => self.sweep_segment(&mut owners, &name, untagged_grace, dry, &mut report),
            };
            if let Err(e) = r {
                errors.push(e.to_string());
            }
        }
        // Pass 3: the dead owners' lock files, still held by us.
        let mut dead: Vec<_> = owners.dead.into_iter().collect();
        dead.sort_by(|a, b| a.0.cmp(&b.0));
        for (stem, held) in dead {
            let Some(held) = held else { continue };
            let name = lock_name(&stem);
            let path = dir.join(&name);
            match remove_held(dry, &held, &path) {
                Ok(true) => report.removed_lock_files.push(name),
                Ok(false) => {}
                Err(e) => errors.push(ShmError::io("unlink", &path, e).to_string()),
            }
        }
        report.errors = errors;
        if remove_dir && !report.has_live() && report.errors.is_empty() {
            self.sweep_last_step(&d, dry, &mut report);
        }
        Ok(report)
    }

    /// The pass's last step (pass 4): the session itself, once nothing live
    /// is left. The token goes with the last live process; the marker and
    /// the directory only when nothing foreign is left either (then the
    /// directory stays a marked, dead session).
    ///
    /// Under the directory's *exclusive* lock — converted from the pass's
    /// shared one without blocking (a failed conversion leaves no lock
    /// held, so the pass's tries for up to [`SWEEP_WAIT`] keep nobody
    /// waiting): when a process is setting the session up (it holds the
    /// lock shared) or another pass is in it all that time, the step is
    /// skipped (`busy`), and a later pass does it. Under the lock no
    /// process is setting the session up, so the directory is listed again:
    /// only the session's own files, foreign entries and the entries the
    /// pass kept or left alone may be there; anything else (the lock file
    /// of a process that joined since the first listing, a file not removed)
    /// keeps the whole session for a later pass. The step is a bounded
    /// number of system calls — at most [`LAST_STEP_NAMES`] names read, the
    /// session's three files looked at and removed, one `rmdir` — whatever
    /// the directory holds, so a pass stopped in it keeps a process setting
    /// the session up waiting only if stopped within those calls.
    fn sweep_last_step(&self, d: &File, dry: bool, report: &mut CleanupReport) {
        let dir = &self.dir;
        // Tried again for a moment: a process that forked while another
        // pass or a creator had the directory open keeps that lock until
        // its child execs. Meanwhile this pass holds no lock (the failed
        // conversion dropped its shared one): nobody waits for it.
        let deadline = Instant::now() + SWEEP_WAIT;
        loop {
            match try_lock_exclusive(d) {
                Ok(true) => break,
                Ok(false) if Instant::now() <= deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(false) => {
                    report.busy = true;
                    return;
                }
                Err(e) => {
                    report
                        .errors
                        .push(ShmError::io("flock", dir, e).to_string());
                    return;
                }
            }
        }
        if !same_file(d, dir) || !has_marker(dir) {
            report.vanished = true;
            return;
        }
        let kept: HashSet<&str> = report
            .ignored
            .iter()
            .chain(&report.kept_untagged)
            .map(String::as_str)
            .collect();
        // A dry run removed nothing: what it would have removed is still
        // listed here, and counts as gone (before, a dry run stopped at the
        // first such name and said nothing of the session's own files and
        // directory: the attack on `fb26879`).
        let gone: HashSet<String> = if dry {
            report
                .removed_segments
                .iter()
                .chain(&report.removed_lock_files)
                .chain(&report.removed_other)
                .cloned()
                .collect()
        } else {
            HashSet::new()
        };
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if crate::sys::fs::is_gone_or_not_a_directory(&e) => {
                report.vanished = true;
                return;
            }
            Err(e) => {
                let e = ShmError::io("readdir", dir, e).to_string();
                report.errors.push(e);
                return;
            }
        };
        let mut whole = true;
        let mut session_files = Vec::new();
        for (i, ent) in rd.enumerate() {
            if i >= LAST_STEP_NAMES {
                // More than the step reads under the lock: the session
                // stays (foreign entries keep its directory anyway).
                report.busy = true;
                return;
            }
            let ent = match ent {
                Ok(ent) => ent,
                Err(e) => {
                    let e = ShmError::io("readdir", dir, e).to_string();
                    report.errors.push(e);
                    return;
                }
            };
            let Ok(name) = ent.file_name().into_string() else {
                whole = false; // never ours
                continue;
            };
            let kind = classify(&name);
            match kind {
                FileKind::Marker | FileKind::Token | FileKind::NamesLock | FileKind::NameClaim => {
                    let path = dir.join(&name);
                    let ours = match fs::symlink_metadata(&path) {
                        Ok(md) if kind == FileKind::Token => !md.is_dir(),
                        Ok(md) => md.is_file(),
                        Err(e) if e.kind() == ErrorKind::NotFound => continue,
                        Err(e) => {
                            report
                                .errors
                                .push(ShmError::io("stat", &path, e).to_string());
                            return;
                        }
                    };
                    if ours {
                        session_files.push(name);
                    } else {
                        whole = false;
                    }
                }
                FileKind::Foreign => whole = false,
                _ if kept.contains(name.as_str()) => whole = false,
                _ if gone.contains(&name) => {}
                // What may be a live process's: the session stays.
                _ => return,
            }
        }
        session_files.sort_by_key(|n| n == SESSION_MARKER); // the marker last
        for name in session_files {
            if name == SESSION_MARKER && !whole {
                continue;
            }
            let path = dir.join(&name);
            match remove_path(dry, &path) {
                Ok(()) => report.removed_other.push(name),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    report
                        .errors
                        .push(ShmError::io("unlink", &path, e).to_string());
                    return;
                }
            }
        }
        if whole {
            let removed = if dry { Ok(()) } else { fs::remove_dir(dir) };
            match removed {
                Ok(()) => report.removed_dir = true,
                Err(e) if crate::sys::fs::is_gone_or_not_a_directory(&e) => report.vanished = true,
                // Something appeared meanwhile (not a creator: they wait
                // for our lock; a live process whose lock file was removed
                // under it, making a file); leave it, and the directory a
                // marked, dead session that a later pass judges again (an
                // unmarked one no pass enters).
                Err(e) if crate::sys::fs::is_enotempty(&e) => {
                    if ensure_marker(dir).is_ok() {
                        report.removed_other.retain(|n| n != SESSION_MARKER);
                    }
                }
                Err(e) => report
                    .errors
                    .push(ShmError::io("rmdir", dir, e).to_string()),
            }
        }
    }

    /// A socket or temporary file named after its owner's stem.
    fn sweep_owned(
        &self,
        owners: &mut Owners,
        stem: &str,
        name: &str,
        dry: bool,
        report: &mut CleanupReport,
    ) -> Result<()> {
        let path = self.dir.join(name);
        if !owners.is_dead(&self.dir, stem)? {
            report.live_other.push(name.to_owned());
            return Ok(());
        }
        // The stem is unique to one dead lock: nobody can make a new file
        // of this name, so removing by name removes only the dead owner's.
        match remove_path(dry, &path) {
            Ok(()) => report.removed_other.push(name.to_owned()),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(ShmError::io("unlink", path, e)),
        }
        Ok(())
    }

    /// A segment-named regular file: ours only with the magic; owned by the
    /// lock its header names.
    fn sweep_segment(
        &self,
        owners: &mut Owners,
        name: &str,
        untagged_grace: Duration,
        dry: bool,
        report: &mut CleanupReport,
    ) -> Result<()> {
        let path = self.dir.join(name);
        let Some(file) = open_nonblocking(&path).map_err(|e| ShmError::io("open", &path, e))?
        else {
            return Ok(());
        };
        let md = file
            .metadata()
            .map_err(|e| ShmError::io("stat", &path, e))?;
        let header = read_ours(&file, &md).map_err(|e| ShmError::io("read", &path, e))?;
        let fate = segment_fate(
            owners,
            &self.dir,
            name,
            &md,
            header.as_ref(),
            untagged_grace,
        )?;
        let list = match fate {
            SegmentFate::Live => &mut report.live_segments,
            SegmentFate::ShortYoung => &mut report.kept_untagged,
            SegmentFate::RewrittenOwnerLives
            | SegmentFate::CorruptCreatorAlive
            | SegmentFate::NotShmwire
            | SegmentFate::NotOurs
            | SegmentFate::ProbeFailed => &mut report.ignored,
            SegmentFate::Stale
            | SegmentFate::Untagged
            | SegmentFate::CorruptCreatorDead
            | SegmentFate::ShortOld => {
                match remove_held(dry, &file, &path) {
                    Ok(true) => {
                        report.removed_segments.push(name.to_owned());
                        if fate == SegmentFate::CorruptCreatorDead {
                            report.corrupt.push(name.to_owned());
                        }
                    }
                    Ok(false) => {}
                    Err(e) => return Err(ShmError::io("unlink", path, e)),
                }
                return Ok(());
            }
        };
        debug_assert!(!fate.removed());
        list.push(name.to_owned());
        Ok(())
    }

    /// The sessions under `root` and everything else there. The root must
    /// be a directory of ours without group/other access (the error names
    /// it and `SHMWIRE_ROOT`) whose path passes [`check_root_path`]; a
    /// missing root holds nothing. Entries are
    /// examined with `lstat` only: nothing is opened.
    pub fn scan_root(root: impl AsRef<Path>) -> Result<RootScan> {
        let root = root.as_ref();
        check_root_path(root)?;
        match fs::symlink_metadata(root) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RootScan::default()),
            _ => check_private_dir(root, ROOT_HINT)?,
        }
        let rd = match fs::read_dir(root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RootScan::default()),
            Err(e) => return Err(ShmError::io("readdir", root, e)),
        };
        let mut scan = RootScan::default();
        for ent in rd {
            let ent = ent.map_err(|e| ShmError::io("readdir", root, e))?;
            let path = root.join(ent.file_name());
            let name = match ent.file_name().into_string() {
                Ok(n) => n,
                Err(n) => {
                    // No session has such a name (`validate_session_name`).
                    scan.foreign
                        .push(format!("{} (name not UTF-8)", crate::one_line(&n)));
                    continue;
                }
            };
            let Ok(md) = fs::symlink_metadata(&path) else {
                continue; // vanished meanwhile
            };
            let private = md.uid() == euid() && md.mode() & 0o077 == 0;
            if md.file_type().is_dir()
                && private
                && validate_session_name(&name).is_ok()
                && has_marker(&path)
            {
                scan.sessions.push(name);
            } else {
                let what = if !md.file_type().is_dir() {
                    type_name(md.file_type())
                } else if !private {
                    "directory not ours or open to others"
                } else {
                    "directory without a session marker"
                };
                scan.foreign
                    .push(format!("{} ({what})", crate::one_line(&name)));
            }
        }
        scan.sessions.sort();
        scan.foreign.sort();
        Ok(scan)
    }

    /// Names of the sessions under `root` (sorted); empty if `root` does not
    /// exist. See [`Session::scan_root`].
    pub fn list_sessions(root: impl AsRef<Path>) -> Result<Vec<String>> {
        Ok(Self::scan_root(root)?.sessions)
    }

    /// Runs the cleanup pass on every session under `root` and removes each
    /// session nothing live and nothing foreign is left in (its token and
    /// marker, then the directory). Entries of the root that are not
    /// sessions are left alone and reported. A session that cannot be
    /// attached or fails is reported in its `errors`; it never stops the
    /// pass over the others.
    pub fn sweep_root(root: impl AsRef<Path>) -> Result<RootCleanup> {
        Self::sweep_root_with(root.as_ref(), false)
    }

    /// What [`Session::sweep_root`] would remove now, removing nothing
    /// (`shmwire cleanup --all-stale --dry-run`; see
    /// [`Session::cleanup_dry_run`]).
    pub fn sweep_root_dry_run(root: impl AsRef<Path>) -> Result<RootCleanup> {
        Self::sweep_root_with(root.as_ref(), true)
    }

    fn sweep_root_with(root: &Path, dry: bool) -> Result<RootCleanup> {
        let scan = Self::scan_root(root)?;
        let mut out = RootCleanup {
            sessions: Vec::new(),
            foreign: scan.foreign,
        };
        for name in scan.sessions {
            let report = match Self::attach_in(root, &name) {
                Ok(s) => s.sweep(UNTAGGED_GRACE, true, dry),
                Err(e) => Err(e),
            };
            let report = match report {
                Ok(r) => r,
                // Removed (and perhaps being made again, not yet marked) by
                // another process since the scan: nothing to do here.
                Err(ShmError::SessionNotFound { .. } | ShmError::NotASession { .. }) => {
                    CleanupReport {
                        vanished: true,
                        ..Default::default()
                    }
                }
                Err(e) => CleanupReport {
                    errors: vec![e.to_string()],
                    ..Default::default()
                },
            };
            out.sessions.push((name, report));
        }
        Ok(out)
    }

    /// [`Session::sweep_root`], returning the per-session reports.
    pub fn cleanup_all_stale(root: impl AsRef<Path>) -> Result<Vec<(String, CleanupReport)>> {
        Ok(Self::sweep_root(root)?.sessions)
    }
}
/// Whether segment `name`, named as shmwire names the segments it makes
/// itself (`<kind>-<creator pid>-<suffix>`, e.g. `stats-<pid>-<hex>`),
/// carries a pid that differs from the pid of the owner stem its header
/// names (`<pid>-…`), and that process lives: then the header was
/// rewritten, and the header's dead "owner" decides nothing. Names of other
/// forms (an application's `Segment::create` names) are not read this way.
fn renamed_owner_lives(name: &str, stem: &str) -> bool {
    let mut parts = name.splitn(3, '-');
    let (Some(_kind), Some(pid), Some(suffix)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if suffix.is_empty() {
        return false;
    }
    let name_pid = pid.parse::<u32>().ok();
    let stem_pid = stem.split('-').next().and_then(|p| p.parse::<u32>().ok());
    match (name_pid, stem_pid) {
        (Some(n), Some(t)) if n != t => crate::sys::liveness::pid_exists(n) == Some(true),
        _ => false,
    }
}
