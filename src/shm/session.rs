//! Per-session namespaces, per-process liveness locks and stale cleanup.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::sys::liveness::{probe_owner, try_lock_exclusive, OwnerState};

use super::error::{Result, ShmError};
use super::header::{HeaderSnapshot, HEADER_SIZE, INIT_READY, INIT_UNINIT};
use super::name::{
    is_lock_file_name, validate_segment_name, validate_session_name, LOCK_PREFIX, LOCK_SUFFIX,
};

/// Environment variable that overrides the root directory of all sessions.
pub const ROOT_ENV: &str = "SHMWIRE_ROOT";

/// How old an untagged segment file (one whose creator died between
/// `open(O_CREAT)` and writing the header's creator tag, a window of a few
/// system calls) must be before [`Session::cleanup_stale`] removes it.
pub const UNTAGGED_GRACE: Duration = Duration::from_secs(10);

const TMP_LOCK_PREFIX: &str = ".proc-";
const TMP_LOCK_SUFFIX: &str = ".lock.tmp";

fn euid() -> u32 {
    crate::sys::fs::euid()
}

/// The directory under which sessions live: `$SHMWIRE_ROOT` if set, else
/// `/dev/shm/shmwire` (tmpfs), else `<temp dir>/shmwire` when `/dev/shm` is
/// absent. Nothing is created.
pub fn default_root() -> PathBuf {
    if let Some(root) = std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("shmwire")
    } else {
        std::env::temp_dir().join("shmwire")
    }
}

/// Checks that `path` is a directory we own with no group/other access.
fn check_private_dir(path: &Path) -> Result<()> {
    let md = fs::symlink_metadata(path).map_err(|e| ShmError::io("stat", path, e))?;
    if !md.file_type().is_dir() {
        return Err(ShmError::WrongFileType {
            path: path.to_owned(),
            expected: "directory",
        });
    }
    if md.uid() != euid() {
        return Err(ShmError::WrongOwner {
            path: path.to_owned(),
            found: md.uid(),
            expected: euid(),
        });
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ShmError::InsecureMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Creates `path` (mode 0700) unless it exists, then checks it.
fn ensure_private_dir(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            fs::create_dir_all(parent).map_err(|e| ShmError::io("mkdir", parent, e))?;
        }
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            // The umask may have removed bits we want; never adds any.
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| ShmError::io("chmod", path, e))?;
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ShmError::io("mkdir", path, e)),
    }
    check_private_dir(path)
}

/// A few random-ish bits without a random-number crate: the std hasher is
/// seeded randomly per process; mixing in time and a counter makes every
/// call distinct. Used only to make lock-file names unique (O_EXCL catches
/// the rest).
fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// Process-global registry: session directory → our lock file there.
///
/// A plain `std` mutex (not `crate::sync`): this is ordinary bookkeeping,
/// never placed in shared memory and never part of a loom model.
fn registry() -> &'static Mutex<HashMap<PathBuf, ProcLock>> {
    static REG: OnceLock<Mutex<HashMap<PathBuf, ProcLock>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether the file at `path` is still the one `file` has open.
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Returns the name of this process's lock file in `dir`, creating and
/// locking it on first use.
///
/// The lock file is created under a temporary dot-name, locked, and only
/// then renamed to `proc-<pid>-<hex>.lock`: a cleanup never sees a
/// `proc-*.lock` file that is not yet locked by a live owner.
fn proc_lock_name(dir: &Path) -> Result<String> {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lock) = reg.get(dir) {
        if same_file(&lock.file, &dir.join(&lock.name)) {
            return Ok(lock.name.clone());
        }
        // Someone removed it (Session::remove_all); make a new one.
        reg.remove(dir);
    }
    let pid = std::process::id();
    let mut last_err = None;
    for _ in 0..8 {
        let stem = format!("{pid}-{:016x}", random_u64());
        let tmp = dir.join(format!("{TMP_LOCK_PREFIX}{stem}{TMP_LOCK_SUFFIX}"));
        let name = format!("{LOCK_PREFIX}{stem}{LOCK_SUFFIX}");
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(crate::sys::fs::O_NOFOLLOW)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                last_err = Some(ShmError::io("create lock file", &tmp, e));
                continue;
            }
            // `cleanup_all_stale` removes empty session directories; put it back.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                ensure_private_dir(dir)?;
                last_err = Some(ShmError::io("create lock file", &tmp, e));
                continue;
            }
            Err(e) => return Err(ShmError::io("create lock file", &tmp, e)),
        };
        match try_lock_exclusive(&file) {
            Ok(true) => {}
            // Nobody else can hold a lock on a file we just created
            // exclusively, unless a cleaner probes it this instant: retry
            // under a new name.
            Ok(false) => {
                let _ = fs::remove_file(&tmp);
                last_err = Some(ShmError::io(
                    "flock",
                    &tmp,
                    io::Error::from(ErrorKind::WouldBlock),
                ));
                continue;
            }
            Err(e) => return Err(ShmError::io("flock", &tmp, e)),
        }
        match fs::rename(&tmp, dir.join(&name)) {
            Ok(()) => {
                reg.insert(
                    dir.to_owned(),
                    ProcLock {
                        name: name.clone(),
                        file,
                    },
                );
                return Ok(name);
            }
            // A concurrent cleanup removed the temporary file: try again.
            Err(e) if e.kind() == ErrorKind::NotFound => {
                last_err = Some(ShmError::io("rename lock file", &tmp, e));
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(ShmError::io("rename lock file", &tmp, e));
            }
        }
    }
    Err(last_err.expect("loop ran"))
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

/// What [`Session::cleanup_stale`] (or [`Session::remove_all`]) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Segments removed because their creator is dead.
    pub removed_segments: Vec<String>,
    /// Lock files (and leftover temporary lock files) removed.
    pub removed_lock_files: Vec<String>,
    /// Segments kept because their creator is alive.
    pub live_segments: Vec<String>,
    /// Segments without a creator tag younger than [`UNTAGGED_GRACE`]
    /// (probably being created right now), kept.
    pub kept_untagged: Vec<String>,
    /// Directory entries that are neither segments nor lock files, left alone.
    pub ignored: Vec<String>,
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
    /// `Some(true)` if the creator's lock is held, `Some(false)` if the
    /// creator is dead, `None` if the header names no valid creator.
    pub creator_alive: Option<bool>,
    /// Why the segment would not open (any kind accepted), if it would not.
    pub problem: Option<String>,
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
    /// without group/other access.
    pub fn open_in(root: impl AsRef<Path>, name: &str) -> Result<Self> {
        validate_session_name(name)?;
        let root = root.as_ref().to_owned();
        ensure_private_dir(&root)?;
        let dir = root.join(name);
        ensure_private_dir(&dir)?;
        Ok(Self {
            name: name.to_owned(),
            root,
            dir,
        })
    }

    /// Attaches to an existing session without creating anything
    /// (`SessionNotFound` if it does not exist). Used by inspect/cleanup.
    pub fn attach_in(root: impl AsRef<Path>, name: &str) -> Result<Self> {
        validate_session_name(name)?;
        let root = root.as_ref().to_owned();
        let dir = root.join(name);
        if fs::symlink_metadata(&dir).is_err() {
            return Err(ShmError::SessionNotFound { path: dir });
        }
        check_private_dir(&dir)?;
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
    /// locked on first call (segment creation calls this).
    pub fn process_lock_name(&self) -> Result<String> {
        proc_lock_name(&self.dir)
    }

    fn read_dir_names(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| ShmError::io("readdir", &self.dir, e))?;
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| ShmError::io("readdir", &self.dir, e))?;
            // Names that are not UTF-8 are not ours: report them lossily.
            names.push(ent.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Names of the segment files in the session (sorted).
    pub fn segment_names(&self) -> Result<Vec<String>> {
        Ok(self
            .read_dir_names()?
            .into_iter()
            .filter(|n| validate_segment_name(n).is_ok())
            .collect())
    }

    /// Reads every segment's header (without mapping) for `shmwire inspect`.
    pub fn inspect(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for name in self.segment_names()? {
            let path = self.dir.join(&name);
            let Some(file) = open_segment_file(&path)? else {
                continue;
            };
            let file_size = file
                .metadata()
                .map_err(|e| ShmError::io("stat", &path, e))?
                .len();
            let header = read_header_file(&file).map_err(|e| ShmError::io("read", &path, e))?;
            let creator_alive = match header.as_ref().and_then(|h| h.creator_tag_str()) {
                Some(tag) => match probe_owner(&self.dir.join(tag)) {
                    Ok(OwnerState::Live) => Some(true),
                    Ok(OwnerState::Dead(_)) | Ok(OwnerState::Missing) => Some(false),
                    Err(_) => None,
                },
                None => None,
            };
            let problem = match &header {
                None => Some(format!(
                    "file of {file_size} bytes is shorter than a header"
                )),
                Some(h) if h.init_state == INIT_UNINIT => Some("not initialised yet".into()),
                Some(h) if h.init_state != INIT_READY => Some(
                    ShmError::BadInitState {
                        found: h.init_state,
                        expected: INIT_READY,
                    }
                    .to_string(),
                ),
                Some(h) => h.validate(h.kind, file_size).err().map(|e| e.to_string()),
            };
            out.push(SegmentInfo {
                name,
                file_size,
                header,
                creator_alive,
                problem,
            });
        }
        Ok(out)
    }

    /// Removes the segments whose creator is dead, and the dead creators'
    /// lock files. See [`Session::cleanup_stale_with_grace`]; this uses
    /// [`UNTAGGED_GRACE`].
    pub fn cleanup_stale(&self) -> Result<CleanupReport> {
        self.cleanup_stale_with_grace(UNTAGGED_GRACE)
    }

    /// Removes the segments whose creator is dead, and the dead creators'
    /// lock files.
    ///
    /// A creator is dead when its lock file (named by the segment header's
    /// creator tag) can be locked with `LOCK_EX | LOCK_NB`, or no longer
    /// exists. Segments of live processes (including this one) are kept.
    /// Segment files too short to hold a header or without a valid creator
    /// tag are removed only once their modification time is older than
    /// `untagged_grace` (their creator may be between `open` and writing
    /// the tag). Safe to run concurrently with live processes and with
    /// other cleanups.
    pub fn cleanup_stale_with_grace(&self, untagged_grace: Duration) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let mut live: HashSet<String> = HashSet::new();
        // Dead owners' lock files, locked by us until we unlink them.
        let mut dead: HashMap<String, Option<File>> = HashMap::new();
        let mut segments = Vec::new();

        for name in self.read_dir_names()? {
            if is_lock_file_name(&name) {
                match probe_owner(&self.dir.join(&name))
                    .map_err(|e| ShmError::io("flock", self.dir.join(&name), e))?
                {
                    OwnerState::Live => {
                        live.insert(name);
                    }
                    OwnerState::Dead(f) => {
                        dead.insert(name, Some(f));
                    }
                    OwnerState::Missing => {}
                }
            } else if name.starts_with(TMP_LOCK_PREFIX) && name.ends_with(TMP_LOCK_SUFFIX) {
                // A lock file whose creator died before renaming it, or one
                // being created right now; only the former is unlocked.
                let path = self.dir.join(&name);
                if let Ok(OwnerState::Dead(_f)) = probe_owner(&path) {
                    if fs::remove_file(&path).is_ok() {
                        report.removed_lock_files.push(name);
                    }
                }
            } else if validate_segment_name(&name).is_ok() {
                segments.push(name);
            } else {
                report.ignored.push(name);
            }
        }

        for name in segments {
            let path = self.dir.join(&name);
            let Some(file) = open_segment_file(&path)? else {
                continue;
            };
            let md = file
                .metadata()
                .map_err(|e| ShmError::io("stat", &path, e))?;
            if !md.file_type().is_file() {
                report.ignored.push(name);
                continue;
            }
            let header = read_header_file(&file).map_err(|e| ShmError::io("read", &path, e))?;
            let stale = match header.as_ref().and_then(|h| h.creator_tag_str()) {
                Some(tag) if live.contains(tag) => false,
                Some(tag) if dead.contains_key(tag) => true,
                Some(tag) => {
                    // Not in our listing: created after it. Ask directly.
                    let tag = tag.to_owned();
                    match probe_owner(&self.dir.join(&tag))
                        .map_err(|e| ShmError::io("flock", self.dir.join(&tag), e))?
                    {
                        OwnerState::Live => {
                            live.insert(tag);
                            false
                        }
                        OwnerState::Dead(f) => {
                            dead.insert(tag, Some(f));
                            true
                        }
                        OwnerState::Missing => {
                            dead.insert(tag, None);
                            true
                        }
                    }
                }
                None => {
                    let age = md
                        .modified()
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .unwrap_or(Duration::ZERO);
                    if age < untagged_grace {
                        report.kept_untagged.push(name);
                        continue;
                    }
                    true
                }
            };
            if !stale {
                report.live_segments.push(name);
                continue;
            }
            // Only unlink the file we examined (not a same-named newcomer).
            if same_file(&file, &path) {
                match fs::remove_file(&path) {
                    Ok(()) => report.removed_segments.push(name),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(ShmError::io("unlink", path, e)),
                }
            }
        }

        let mut dead_names: Vec<_> = dead.into_iter().collect();
        dead_names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, held) in dead_names {
            if held.is_some() {
                let path = self.dir.join(&name);
                match fs::remove_file(&path) {
                    Ok(()) => report.removed_lock_files.push(name),
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(ShmError::io("unlink", path, e)),
                }
            }
        }
        Ok(report)
    }

    /// Removes every file of the session (segments, lock files, strays —
    /// the latter are listed in `ignored`) and the session directory itself,
    /// whoever created them (for tests and `shmwire cleanup --session`).
    /// Subdirectories are not touched (and make the final `rmdir` fail).
    /// Processes that still map a segment keep their mapping; this process
    /// forgets its lock file here.
    pub fn remove_all(&self) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        {
            let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
            reg.remove(&self.dir);
        }
        let names = match self.read_dir_names() {
            Ok(n) => n,
            Err(ShmError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(report)
            }
            Err(e) => return Err(e),
        };
        for name in names {
            let path = self.dir.join(&name);
            let is_lock = is_lock_file_name(&name)
                || (name.starts_with(TMP_LOCK_PREFIX) && name.ends_with(TMP_LOCK_SUFFIX));
            let is_seg = validate_segment_name(&name).is_ok();
            let is_dir = fs::symlink_metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if is_dir {
                // Not ours to remove; the final rmdir reports the failure.
                report.ignored.push(name);
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) if is_lock => report.removed_lock_files.push(name),
                Ok(()) if is_seg => report.removed_segments.push(name),
                // Any other file (a stray, a symlink) goes too.
                Ok(()) => report.ignored.push(name),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(ShmError::io("unlink", path, e)),
            }
        }
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(report),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(report),
            Err(e) => Err(ShmError::io("rmdir", &self.dir, e)),
        }
    }

    /// Names of the sessions under `root` (sorted); empty if `root` does not
    /// exist.
    pub fn list_sessions(root: impl AsRef<Path>) -> Result<Vec<String>> {
        let root = root.as_ref();
        let rd = match fs::read_dir(root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ShmError::io("readdir", root, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| ShmError::io("readdir", root, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            let is_dir = ent.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && validate_session_name(&name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Runs [`Session::cleanup_stale`] on every session under `root`, and
    /// removes session directories left empty. Sessions that cannot be
    /// attached (wrong owner, insecure mode) are skipped.
    pub fn cleanup_all_stale(root: impl AsRef<Path>) -> Result<Vec<(String, CleanupReport)>> {
        let root = root.as_ref();
        let mut out = Vec::new();
        for name in Self::list_sessions(root)? {
            let Ok(session) = Self::attach_in(root, &name) else {
                continue;
            };
            let report = session.cleanup_stale()?;
            // Fails (harmlessly) unless the directory is empty.
            let _ = fs::remove_dir(session.dir());
            out.push((name, report));
        }
        Ok(out)
    }
}

/// Opens a segment file for reading without following a symlink; `None`
/// when it vanished meanwhile (a creator unlinked it).
fn open_segment_file(path: &Path) -> Result<Option<File>> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(crate::sys::fs::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ShmError::io("open", path, e)),
    }
}
