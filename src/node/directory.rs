//! The node-local directory: which worker listens where.
//!
//! Every worker that accepts connections writes one entry file into its
//! session directory, named `.w-<worker id hex>.entry` (dot-prefixed, so the
//! segment layer's cleanup and inspection never mistake it for a segment;
//! `Session::remove_all` removes it with the session), holding its
//! id, optional name, pid, Unix-socket path (shared-memory bootstrap) and TCP
//! address, as `key=value` lines. Entries are written atomically (a temporary
//! file is filled, then renamed into place), so readers never see half an
//! entry.
//!
//! **Liveness** is a `flock`: the worker takes an exclusive lock on its entry
//! file before renaming it into place and holds it for as long as its
//! [`Registration`] lives (the crate's one liveness primitive, in
//! `sys::liveness`). The kernel drops the lock when the process dies —
//! however it dies — so a reader that *can* take the lock on an entry
//! knows its owner is gone: the entry is ignored and removed (by name,
//! after re-checking it is the file we locked). Bare pids are never trusted
//! (they are reused). A dead worker's Unix socket is *not* removed here: it
//! is named after its process's lock (`.s-<stem>-<n>.sock`), so the
//! session's cleanup pass removes it once that process is dead — and never
//! the socket of a live successor registered under the same id.
//!
//! **Names** are unique among live workers. A name is claimed by taking an
//! exclusive `flock` on its claim file (`.n-<hex>.claim`, see
//! [`CLAIM_PREFIX`]) and writing the claiming entry, under an exclusive
//! `flock` on [`NAMES_LOCK_FILE`] (`.names.lock`) in the session directory,
//! held only for that; the claim is then held for the registration's life.
//! So of processes registering one name at the same moment exactly one
//! wins (they once could all find it free: 2–3 live holders of one name,
//! and lookups by name silently took the lowest id), and an entry written
//! under the name by a process that does not hold the claim is passed over
//! by lookups ([`Directory::lookup_name`]: the entry whose lock is held by
//! the claim's holder, both read from `/proc/locks`). The locks are the
//! same kernel primitive as liveness: a holder that dies releases them.
//! The wait for the names lock is bounded ([`NAMES_LOCK_WAIT`]): a holder
//! that keeps it longer (a stopped process) makes the registration fail
//! with a [`PublishError::Io`] of kind `WouldBlock` naming the holder's
//! pid, never hang. Neither name is ever followed nor opened in a way that
//! blocks (`O_NOFOLLOW | O_NONBLOCK`); anything but a regular file under
//! it (a symbolic link, a FIFO, a directory, …) is not replaced but
//! refused — a [`PublishError::Io`] of kind `InvalidInput` naming the path
//! and what to remove — because replacing it would race with another
//! registrant replacing it too (two locks, the race back). Only named
//! registrations take them; a worker without a name registers as before.
//! A claim file removed by someone while its entry is written makes the
//! registration withdraw (refused): two registrants may then both
//! withdraw, never both stay.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ids::WorkerId;
use crate::shm::{
    temp_path_in, CLAIM_PREFIX, CLAIM_SUFFIX, ENTRY_PREFIX, ENTRY_SUFFIX, NAMES_LOCK_FILE,
};
use crate::sys::liveness::{
    flock_holder, probe_owner, remove_if_same, same_file, try_lock_exclusive, FlockHolders,
    OwnerState,
};
use crate::transport::{Endpoint, LookupError, PublishError, Published, WorkerLookup};

/// Longest wait for the names lock ([`NAMES_LOCK_FILE`]) in
/// [`Directory::register`] (a worker putting back its own entry waits
/// only a moment, and tries again at its next check): a holder keeps it
/// for one scan of the directory and one entry write (milliseconds); one
/// that keeps it longer is stopped or stuck, and the registration fails.
pub const NAMES_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The wait for the names lock when a worker claims its name again
/// ([`Published::restore`] after its claim file was removed, from its
/// event loop about once a second): a
/// moment, then the restore fails and is tried again at the next check —
/// a stopped process holding the lock must not stall the loop 2 s a round.
const RESTORE_NAMES_WAIT: Duration = Duration::from_millis(10);

/// The directory of one session: entry files with `flock` liveness (see
/// `docs/transport.md`).
#[derive(Debug, Clone)]
pub struct Directory {
    root: PathBuf,
}

/// A live entry in the [`Directory`]: holds the entry's lock; dropping it
/// removes the entry.
#[derive(Debug)]
pub struct Registration {
    directory: Directory,
    path: PathBuf,
    /// The entry file, locked (the worker's liveness).
    lock: File,
    /// The name's claim file, locked for the registration's life (a named
    /// worker's only; see [`Directory::claim_path`]).
    claim: Option<File>,
    /// What the entry says, to write it again ([`Published::restore`]).
    endpoint: Endpoint,
    /// `endpoint` encoded: the entry file's exact contents.
    encoded: String,
}

impl Registration {
    /// The entry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the entry under the worker's name is still the file this
    /// registration wrote and locks, holding what it wrote (`false` once it
    /// was removed, another file was renamed over it, or its bytes were
    /// changed in place). Costs a `stat` and a `pread` of the entry (a few
    /// hundred bytes).
    pub fn intact(&self) -> bool {
        same_file(&self.lock, &self.path) && self.contents_intact() && self.claim_intact()
    }

    /// Whether the name's claim file is still the one this registration
    /// locks (`true` without a name).
    fn claim_intact(&self) -> bool {
        match (&self.claim, &self.endpoint.name) {
            (Some(c), Some(n)) => {
                same_file(c, &self.directory.claim_path(n))
                    && ClaimRecord::read_from(c)
                        == ClaimRecord::of(self.endpoint.worker_id, &self.lock).ok()
            }
            _ => true,
        }
    }

    /// Whether the locked file holds exactly what this registration wrote
    /// (a read error counts as changed: the entry is written again).
    fn contents_intact(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let want = self.encoded.as_bytes();
        // One byte more than the entry, to see a file that grew.
        let mut got = vec![0u8; want.len() + 1];
        let mut n = 0;
        while n < got.len() {
            match self.lock.read_at(&mut got[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        &got[..n] == want
    }
}

impl Published for Registration {
    /// Writes the entry again (same contents, a new locked file) when
    /// [`Registration::intact`] is `false`. An entry lost that way made the
    /// worker unreachable by id and name, and a file renamed over it (not
    /// locked) made it look dead: readers removed it. An entry whose bytes
    /// were changed in place (still this registration's locked file) read
    /// as garbage, or as another worker's address, for as long as the
    /// worker lived. So is the name's claim, when its file was removed or
    /// replaced (lookups by name pass over an entry whose process holds no
    /// claim under the name).
    ///
    /// Writing it again keeps the claim this registration holds, without
    /// the names lock (nobody else can take the name meanwhile, and a
    /// process holding that lock cannot keep the entry from being put
    /// back). Only a claim file removed under it is claimed again as
    /// [`Directory::register`] does, under the names lock: if another
    /// process took the name's claim since, this fails with
    /// [`PublishError::Refused`] — never two live holders of one name. The
    /// names lock is then waited for only a moment (10 ms, not
    /// [`NAMES_LOCK_WAIT`]: this runs in a worker's event loop about once a
    /// second); held longer, this fails with [`PublishError::Io`] of kind
    /// `WouldBlock`, keeps what it holds, and is tried again at the next
    /// check.
    fn restore(&mut self) -> Result<bool, PublishError> {
        if same_file(&self.lock, &self.path) {
            if self.contents_intact() && self.claim_intact() {
                return Ok(false);
            }
            // Our own file, changed in place, or the name's claim file
            // removed or replaced: the entry's lock is ours (a probe
            // would find it live and refuse), so it is replaced at once by
            // a new locked file with what it should say, the name claimed
            // again (under the names lock, with the claim it holds).
            self.reclaim()?;
            return Ok(true);
        }
        // Another live process's lock on a file under this name: not ours
        // to replace (an unlocked one is a dead owner's: the probe removed
        // it). A reader probing holds a dead file's lock for a moment,
        // which looks live: asked again a few times, as `register` does.
        let mut probe = self.directory.probe(&self.path);
        for _ in 0..5 {
            if !matches!(probe, Probe::Live(_) | Probe::Unreadable(_)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
            probe = self.directory.probe(&self.path);
        }
        match probe {
            Probe::Live(e) => {
                return Err(PublishError::Refused {
                    worker: self.endpoint.worker_id,
                    why: format!(
                        "its entry was replaced by a live process's (pid {}): not written again",
                        e.pid
                    ),
                })
            }
            Probe::Unreadable(cause) => {
                return Err(PublishError::Refused {
                    worker: self.endpoint.worker_id,
                    why: format!(
                        "its entry was replaced by a file another live process locks \
                         ({cause}): not written again"
                    ),
                })
            }
            Probe::Failed(source) => {
                return Err(PublishError::Io {
                    op: "probe entry",
                    path: self.path.clone(),
                    source,
                })
            }
            Probe::Stale | Probe::Skip => {}
        }
        // The old file, unlinked or renamed over, is no entry any more:
        // its lock goes with it. Putting the entry back claims the name
        // again, under the names lock, with the claim it holds (nobody
        // else could take the name while its entry was missing).
        self.reclaim()?;
        Ok(true)
    }
}

impl Registration {
    /// Writes the entry again, claiming the name again with the claim this
    /// registration holds (kept if its file is still the name's claim).
    fn reclaim(&mut self) -> Result<(), PublishError> {
        self.lock = self.directory.claim(
            &self.path,
            &self.endpoint,
            RESTORE_NAMES_WAIT,
            &mut self.claim,
        )?;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so no reader mistakes the
        // entry for a stale one of a *new* registration; only our own file
        // (a live successor may hold the name by now).
        let _ = remove_if_same(&self.lock, &self.path);
        // Then the name's claim, still held (a successor that opened it
        // meanwhile finds it unlinked once it has the lock, and makes a
        // new one).
        if let (Some(claim), Some(n)) = (&self.claim, &self.endpoint.name) {
            let _ = remove_if_same(claim, &self.directory.claim_path(n));
        }
    }
}

/// One entry of [`Directory::workers`].
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    /// The entry file.
    pub path: PathBuf,
    /// Its contents, or why they are not an entry (the read error — a
    /// FIFO or a symbolic link under the name is one —, too long, not
    /// UTF-8, or which line or field is malformed).
    pub endpoint: Result<Endpoint, String>,
    /// Whether its worker lives: `Some(true)` while the entry's lock is
    /// held, `Some(false)` when nobody holds it (its owner died), `None`
    /// when the lock could not be probed (the name is not a regular file:
    /// nobody can hold a lock through it; `endpoint` then says why).
    pub live: Option<bool>,
    /// The pid the kernel lists as holding the entry's lock
    /// (`/proc/locks`), for a live entry; `None` when dead or not listed.
    /// It names the process behind an entry whose text is unreadable.
    pub holder_pid: Option<u32>,
}

/// Outcome of probing one entry file.
enum Probe {
    Live(Endpoint),
    /// Its owner lives (the lock is held) but the entry is not readable:
    /// the cause.
    Unreadable(String),
    /// Dead owner: removed.
    Stale,
    /// Vanished meanwhile, or not a lockable file.
    Skip,
    /// This process could not probe it (out of descriptors or memory):
    /// neither live nor absent, as far as it can tell.
    Failed(io::Error),
}

/// What a probe does with a dead owner's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    /// Removes it.
    Remove,
    /// Leaves it while the session's node runs (its round removes it and
    /// announces the death), removes it otherwise.
    LeaveToNode,
}

/// Whether a node runs in the session directory `dir`: its node lock is a
/// regular file someone holds exclusively (a shared lock cannot be taken;
/// one taken is released at once). Anything else — no file, a free lock,
/// something that cannot be probed — is `false`: the caller then removes
/// the dead entry itself, as without a node.
fn node_lives(dir: &Path) -> bool {
    crate::sys::fs::open_regular(&dir.join(crate::shm::NODE_LOCK_FILE))
        .and_then(|f| crate::sys::liveness::try_lock_shared(&f))
        .is_ok_and(|taken| !taken)
}

impl Directory {
    /// Opens the directory of the session whose directory is `session_dir`
    /// (created with mode 0700 if missing).
    pub fn open(session_dir: &Path) -> Result<Self, LookupError> {
        let root = session_dir.to_owned();
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(LookupError::Io { path: root, source }),
        }
        Ok(Self { root })
    }

    /// The directory of `session`.
    pub fn for_session(session: &crate::shm::Session) -> Result<Self, LookupError> {
        Self::open(session.dir())
    }

    /// The directory's path (the session directory).
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, id: &WorkerId) -> PathBuf {
        self.root.join(format!("{ENTRY_PREFIX}{id}{ENTRY_SUFFIX}"))
    }

    /// Publishes `endpoint`. Fails with [`PublishError::Refused`] if a live
    /// worker already holds this id or name (or the name is empty, longer
    /// than 255 bytes or holds control characters); stale entries are
    /// replaced.
    ///
    /// A name is claimed atomically with respect to every other
    /// registration of the session, in any process: its claim file is
    /// locked and the entry written under an exclusive `flock` on
    /// [`NAMES_LOCK_FILE`] (see the module docs), so of several processes
    /// registering one name at the same moment exactly one succeeds and
    /// the others get [`PublishError::Refused`] naming the claim's holder.
    /// For a named `endpoint` it also fails with [`PublishError::Io`] when
    /// the names lock is held for over [`NAMES_LOCK_WAIT`] (kind
    /// `WouldBlock`: a stopped holder; its pid is named) or its name holds
    /// something other than a regular file (kind `InvalidInput`: the path
    /// is named; remove it). It never waits longer than that bound.
    pub fn register(&self, endpoint: &Endpoint) -> Result<Registration, PublishError> {
        let refuse = |why: String| PublishError::Refused {
            worker: endpoint.worker_id,
            why,
        };
        if let Some(n) = &endpoint.name {
            if !crate::transport::valid_worker_name(n) {
                return Err(refuse(format!("invalid worker name {n:?}")));
            }
        }
        let path = self.entry_path(&endpoint.worker_id);
        // A reader probing a dead predecessor's entry holds its lock for a
        // moment, which looks live: ask again a few times before refusing.
        let mut tries = 0;
        while let Probe::Live(_) = self.probe(&path) {
            tries += 1;
            if tries == 20 {
                return Err(refuse("a live worker is registered under this id".into()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut claim = None;
        let lock = self.claim(&path, endpoint, NAMES_LOCK_WAIT, &mut claim)?;
        Ok(Registration {
            directory: self.clone(),
            path,
            lock,
            claim,
            endpoint: endpoint.clone(),
            encoded: endpoint.encode(),
        })
    }

    /// Writes `endpoint`'s entry to `path` ([`Directory::write_entry`]),
    /// claiming its name if it has one: under the names lock, the name's
    /// claim taken into `claim` ([`Directory::take_claim`]; one held there
    /// already is kept if it is still the name's — whatever fails after,
    /// a registration keeps what it holds), refused if another live
    /// process holds the claim, and withdrawn (the entry removed again,
    /// refused) if the claim file was removed while the entry was written.
    /// Returns the locked entry.
    fn claim(
        &self,
        path: &Path,
        endpoint: &Endpoint,
        wait: Duration,
        claim: &mut Option<File>,
    ) -> Result<File, PublishError> {
        let Some(n) = &endpoint.name else {
            return self.write_entry(path, endpoint);
        };
        // A registration that still holds the name's claim (writing its
        // entry again) needs no names lock: nobody else can take the name
        // meanwhile, and a process holding that lock must not keep it from
        // putting its entry back (the attack on `c61c5a5`: an entry
        // rewritten in place, the names lock held, sent lookups to the
        // attacker's socket for as long as it held the lock).
        let holds = claim
            .as_ref()
            .is_some_and(|c| same_file(c, &self.claim_path(n)));
        let _names = if holds {
            None
        } else {
            Some(self.lock_names(wait)?)
        };
        // Held, the claim is the name's: no other live process holds it,
        // whatever entries are written under the name (lookups pass over
        // them). No scan of the directory, no read of `/proc/locks` here.
        self.take_claim(endpoint, claim)?;
        // The claim's record names the entry (worker id and inode) before
        // the entry is visible, so a lookup that finds it finds it claimed.
        let lock = self.write_entry_then(path, endpoint, |entry| {
            // (`take_claim` left it held.)
            let written = match claim.as_ref() {
                Some(c) => ClaimRecord::of(endpoint.worker_id, entry).and_then(|r| r.write_to(c)),
                None => Err(io::Error::other("no claim held")),
            };
            written.map_err(|source| PublishError::Io {
                op: "write the worker name's claim",
                path: self.claim_path(n),
                source,
            })
        })?;
        let claim_path = self.claim_path(n);
        if claim.as_ref().is_some_and(|c| same_file(c, &claim_path)) {
            return Ok(lock);
        }
        // Its file removed (and perhaps another made and locked) while the
        // entry was written: not this registration's claim any more.
        let _ = remove_if_same(&lock, path);
        Err(PublishError::Refused {
            worker: endpoint.worker_id,
            why: format!(
                "the claim {} of name {n:?} was removed while its entry was being written: \
                 withdrawn",
                claim_path.display()
            ),
        })
    }

    /// The claim file of worker name `name`: `.n-<hex>.claim`, the hex the
    /// first 16 bytes of `SHA-256("shmwire worker name" ‖ name)` (a fixed
    /// length whatever the name).
    fn claim_path(&self, name: &str) -> PathBuf {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"shmwire worker name");
        h.update(name.as_bytes());
        let digest = h.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(format!("{CLAIM_PREFIX}{hex}{CLAIM_SUFFIX}"))
    }

    /// Takes the claim of `endpoint`'s name: an exclusive `flock` on its
    /// claim file ([`Directory::claim_path`], made if missing, never
    /// followed, never blocking), which the registration holds for its
    /// life — what a reader checks an entry under the name against
    /// ([`Directory::lookup_name`]), into `held`: one there is kept if it
    /// is still the claim file (a worker writing its entry again), and
    /// left as it is when this fails. Refused
    /// ([`PublishError::Refused`]) while another live process holds the
    /// claim (its pid named); [`PublishError::Io`] of kind `InvalidInput`
    /// if something other than a regular file is under the name. Called
    /// under the names lock.
    fn take_claim(&self, endpoint: &Endpoint, held: &mut Option<File>) -> Result<(), PublishError> {
        let name = endpoint.name.as_deref().unwrap_or_default();
        let path = self.claim_path(name);
        if held.as_ref().is_some_and(|f| same_file(f, &path)) {
            return Ok(());
        }
        let fail = |op: &'static str, source: io::Error| PublishError::Io {
            op,
            path: path.clone(),
            source,
        };
        let not_regular = |t: fs::FileType| {
            fail(
                "take the worker name's claim",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is {}, not a name's claim file (shmwire makes only a regular file \
                         there and never follows the name); the name {name:?} cannot be \
                         registered until it is removed",
                        path.display(),
                        crate::sys::fs::file_type_name(t)
                    ),
                ),
            )
        };
        // A claim file removed by the cleanup pass (its claimant dead)
        // between this open and the lock is nobody's claim: opened again.
        for _ in 0..20 {
            if let Ok(md) = fs::symlink_metadata(&path) {
                if !md.is_file() {
                    return Err(not_regular(md.file_type()));
                }
            }
            let file = crate::sys::fs::open_claim_file(&path)
                .map_err(|e| fail("open the worker name's claim", e))?;
            let md = file
                .metadata()
                .map_err(|e| fail("stat the worker name's claim", e))?;
            if !md.is_file() {
                return Err(not_regular(md.file_type()));
            }
            // A reader looking at a dead claimant's claim holds it shared
            // for a moment, which looks live: asked again a few times.
            let mut locked = false;
            for _ in 0..10 {
                locked = try_lock_exclusive(&file)
                    .map_err(|e| fail("flock the worker name's claim", e))?;
                if locked {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            if !locked {
                let by = ClaimRecord::read_from(&file)
                    .map_or_else(|| "process".to_owned(), |r| format!("worker {}", r.worker));
                return Err(PublishError::Refused {
                    worker: endpoint.worker_id,
                    why: format!(
                        "name {name:?} is claimed by live {by}{}",
                        flock_holder(&file).map_or_else(String::new, |p| format!(" (pid {p})"))
                    ),
                });
            }
            if same_file(&file, &path) {
                *held = Some(file);
                return Ok(());
            }
        }
        Err(fail(
            "take the worker name's claim",
            io::Error::new(io::ErrorKind::WouldBlock, "its file kept being replaced"),
        ))
    }

    /// Takes the names lock ([`NAMES_LOCK_FILE`], see the module docs),
    /// waiting at most `wait`; dropping the file releases it.
    fn lock_names(&self, wait: Duration) -> Result<File, PublishError> {
        use crate::sys::fs::file_type_name;
        let path = self.root.join(NAMES_LOCK_FILE);
        let fail = |op: &'static str, source: io::Error| PublishError::Io {
            op,
            path: path.clone(),
            source,
        };
        let not_a_lock = |t: fs::FileType| {
            let what = file_type_name(t);
            fail(
                "take the worker-names lock",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is {what}, not a names lock file (shmwire makes only a regular \
                         file there and never follows the name); named workers cannot \
                         register in this session until it is removed (rm {}{})",
                        path.display(),
                        if t.is_dir() { "-r " } else { "" },
                        path.display()
                    ),
                ),
            )
        };
        let not_regular = || {
            fs::symlink_metadata(&path)
                .ok()
                .map(|m| m.file_type())
                .filter(|t| !t.is_file())
        };
        let start = Instant::now();
        loop {
            // Looked at before it is opened, so a device or FIFO there is
            // not even opened; the `fstat` below catches one put there
            // between the two.
            if let Some(t) = not_regular() {
                return Err(not_a_lock(t));
            }
            // Read-only (a `flock` needs no more): closing it is no
            // `IN_CLOSE_WRITE`, which the node's directory watch wakes for.
            let opened = crate::sys::fs::open_lock_file(&path);
            let file = match opened {
                Ok(f) => f,
                // A symbolic link (`ELOOP`), a directory (`EISDIR`), …
                // put there after the look: named as such.
                Err(e) => {
                    return Err(match not_regular() {
                        Some(t) => not_a_lock(t),
                        None => fail("open the worker-names lock", e),
                    })
                }
            };
            let meta = file
                .metadata()
                .map_err(|e| fail("stat the worker-names lock", e))?;
            if !meta.is_file() {
                return Err(not_a_lock(meta.file_type()));
            }
            let held =
                try_lock_exclusive(&file).map_err(|e| fail("flock the worker-names lock", e))?;
            // Ours only if the name still names the file we locked: one
            // removed or replaced after the open is nobody's lock.
            if held && same_file(&file, &path) {
                return Ok(file);
            }
            if start.elapsed() >= wait {
                let why = if held {
                    "its file kept being replaced".to_owned()
                } else {
                    format!(
                        "held by {} for over {wait:?} (a stopped or stuck process?); not \
                         registered",
                        flock_holder(&file).map_or_else(
                            || "a process /proc/locks does not name".into(),
                            |p| {
                                // The kernel names who took the lock; a
                                // child it forked keeps it after it exits.
                                if Path::new(&format!("/proc/{p}")).exists() {
                                    format!("pid {p}")
                                } else {
                                    format!(
                                        "a process pid {p} started (pid {p} took the lock and \
                                         has exited)"
                                    )
                                }
                            }
                        )
                    )
                };
                return Err(fail(
                    "take the worker-names lock",
                    io::Error::new(io::ErrorKind::WouldBlock, why),
                ));
            }
            drop(file);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes `endpoint`'s entry to a temporary file, locks it and renames
    /// it to `path` (replacing what is there); returns the locked file.
    fn write_entry(&self, path: &Path, endpoint: &Endpoint) -> Result<File, PublishError> {
        self.write_entry_then(path, endpoint, |_| Ok(()))
    }

    /// [`Directory::write_entry`], calling `before_rename` with the locked,
    /// written entry just before it is renamed into place (its inode is
    /// the one the entry keeps).
    fn write_entry_then(
        &self,
        path: &Path,
        endpoint: &Endpoint,
        before_rename: impl FnOnce(&File) -> Result<(), PublishError>,
    ) -> Result<File, PublishError> {
        // Owned by this process's lock in the session: if we die before the
        // rename, the session's cleanup removes it.
        let tmp = temp_path_in(&self.root, "entry").map_err(|e| PublishError::Io {
            op: "lock session",
            path: self.root.clone(),
            source: io::Error::other(e),
        })?;
        let io_err = |op: &'static str, path: &Path| {
            let path = path.to_owned();
            move |source| PublishError::Io { op, path, source }
        };
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create entry", &tmp))?;
        let result = (|| {
            // Locked before it becomes visible: a reader never sees an
            // unlocked entry of a live worker. Nobody else can hold a lock
            // on a file we have just created.
            if !try_lock_exclusive(&f).map_err(io_err("lock entry", &tmp))? {
                return Err(io_err("lock entry", &tmp)(io::ErrorKind::WouldBlock.into()));
            }
            f.write_all(endpoint.encode().as_bytes())
                .map_err(io_err("write entry", &tmp))?;
            before_rename(&f)?;
            fs::rename(&tmp, path).map_err(io_err("rename entry", path))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(f)
    }

    /// Reads one entry, removing it if its owner is dead.
    fn probe(&self, path: &Path) -> Probe {
        self.probe_then(path, Stale::Remove)
    }

    /// Reads one entry for a lookup: a dead owner's entry is left to the
    /// session's node while one runs ([`Stale::LeaveToNode`]).
    fn look(&self, path: &Path) -> Probe {
        self.probe_then(path, Stale::LeaveToNode)
    }

    /// Reads one entry; a dead owner's is removed, or left as `stale` says.
    fn probe_then(&self, path: &Path, stale: Stale) -> Probe {
        match probe_owner(path) {
            Ok(OwnerState::Live) => match read_entry(path) {
                Ok(e) => Probe::Live(e),
                Err(cause) => Probe::Unreadable(cause),
            },
            Ok(OwnerState::Dead(f)) => {
                // Nobody holds the lock: the owner died. We hold it now;
                // remove the entry if the name still points at the file we
                // locked (a new registration may have replaced it) — unless
                // a node runs, whose round removes it and announces the
                // death: an entry a caller's lookup removed first was
                // gone without a word (the node cannot tell it from a
                // worker that deregistered).
                let leave = stale == Stale::LeaveToNode && node_lives(&self.root);
                if !leave {
                    if let Ok(true) = remove_if_same(&f, path) {
                        tracing::debug!(path = %path.display(), "removed stale directory entry");
                    }
                }
                drop(f);
                Probe::Stale
            }
            // Out of descriptors or memory is this process's state, not
            // the entry's: before, it read as "no such worker" (a client
            // at its descriptor limit was told the store did not run).
            Err(e)
                if crate::sys::fs::is_out_of_descriptors(&e)
                    || crate::sys::fs::is_out_of_memory(&e) =>
            {
                Probe::Failed(e)
            }
            Ok(OwnerState::Missing) | Err(_) => Probe::Skip,
        }
    }

    /// The live worker with this id ([`LookupError::Unreadable`] when a
    /// live process holds its entry but the entry cannot be read;
    /// [`LookupError::Io`] when this process is out of descriptors or
    /// memory to look).
    pub fn lookup(&self, id: &WorkerId) -> Result<Endpoint, LookupError> {
        let path = self.entry_path(id);
        match self.look(&path) {
            Probe::Live(e) => Ok(e),
            Probe::Unreadable(cause) => Err(LookupError::Unreadable { path, cause }),
            Probe::Failed(source) => Err(LookupError::Io { path, source }),
            Probe::Stale | Probe::Skip => Err(LookupError::NoSuchWorker {
                key: id.to_string(),
            }),
        }
    }

    /// The live worker with this name: the one whose entry the name's
    /// claim names ([`Directory::register`]: the claimant holds the claim
    /// file locked and keeps its record — its worker id and its entry's
    /// inode — in it). Entries written under the name by anyone else are
    /// passed over (a same-user process can write one, or hard-link a
    /// file under an entry's name); with no claimant's entry among them,
    /// [`LookupError::NameUnclaimed`] (the attacks on `1b5f3c1` and
    /// `5aeed3d`: an entry planted under the store's name, with a lower
    /// worker id or the store's own deleted, took every new store client
    /// to a socket that never answered). Costs a look at the claim file
    /// and a `stat` of the entry beyond the directory's listing.
    pub fn lookup_name(&self, name: &str) -> Result<Endpoint, LookupError> {
        let holders: Vec<Endpoint> = self
            .list()?
            .into_iter()
            .filter(|e| e.name.as_deref() == Some(name))
            .collect();
        if holders.is_empty() {
            return Err(LookupError::NoSuchWorker {
                key: format!("named {name:?}"),
            });
        }
        let (claimed, unclaimed) = self.claimed(name, holders);
        claimed.ok_or(unclaimed)
    }

    /// Of `holders` (live entries under `name`), the claimant's (the one
    /// the name's claim record names, by worker id and entry inode), and
    /// the error naming the others ([`LookupError::NameUnclaimed`], its
    /// list empty when there are none).
    fn claimed(&self, name: &str, holders: Vec<Endpoint>) -> (Option<Endpoint>, LookupError) {
        let record = self.claim_record(name);
        let mut claimed = None;
        let mut others = Vec::new();
        for e in holders {
            let theirs = record.as_ref().is_some_and(|r| {
                r.worker == e.worker_id
                    && fs::symlink_metadata(self.entry_path(&e.worker_id))
                        .is_ok_and(|md| (md.dev(), md.ino()) == (r.dev, r.ino))
            });
            if theirs && claimed.is_none() {
                claimed = Some(e);
            } else if !theirs {
                others.push((e.worker_id, e.pid));
            }
        }
        let unclaimed = LookupError::NameUnclaimed {
            name: name.to_owned(),
            holders: others,
            claimant: record.map(|r| r.worker),
        };
        (claimed, unclaimed)
    }

    /// The record of `name`'s claim, if a live process holds the claim
    /// (its file is a regular file whose lock is held) and its record
    /// reads whole (read again twice if not: a reader may meet a claimant
    /// writing it).
    fn claim_record(&self, name: &str) -> Option<ClaimRecord> {
        let f = crate::sys::fs::open_regular(&self.claim_path(name)).ok()?;
        // A shared lock taken is nobody's exclusive one: no live claimant.
        if crate::sys::liveness::try_lock_shared(&f).ok()? {
            return None;
        }
        (0..3).find_map(|_| ClaimRecord::read_from(&f))
    }

    /// Why named workers cannot register in this session now, if its
    /// names lock ([`NAMES_LOCK_FILE`]) is something other than a regular
    /// file (a FIFO, a directory, a symlink, …): every named
    /// [`Directory::register`] then fails until it is removed, and a node
    /// reports it on `/health` (the attack on `e3a6d33`: `200 ok` while
    /// every named worker was refused). `None` when it is a regular file
    /// or missing (made at the next registration).
    pub fn names_lock_problem(&self) -> Option<String> {
        let path = self.root.join(NAMES_LOCK_FILE);
        let t = fs::symlink_metadata(&path).ok()?.file_type();
        (!t.is_file()).then(|| {
            format!(
                "{} is {}, not a names lock file: named workers cannot register in this \
                 session until it is removed",
                path.display(),
                crate::sys::fs::file_type_name(t)
            )
        })
    }

    /// What is wrong with each claimed name among the `live` entries, by
    /// name, as the node's `/health` says it: a name a live worker claimed
    /// used by entries its claim does not name — with the claimant's entry
    /// missing, [`LookupError::NameUnclaimed`]'s text; beside the
    /// claimant's (lookups take the claimant's), which ones. Names nobody
    /// claimed are left out (lookups refuse their entries).
    pub fn name_problems(&self, live: &[Endpoint]) -> Vec<String> {
        let mut by_name: std::collections::BTreeMap<&str, Vec<Endpoint>> = Default::default();
        for e in live {
            if let Some(n) = &e.name {
                by_name.entry(n).or_default().push(e.clone());
            }
        }
        let mut out = Vec::new();
        for (name, holders) in by_name {
            let (claimed, unclaimed) = self.claimed(name, holders);
            let LookupError::NameUnclaimed {
                holders: others,
                claimant,
                ..
            } = &unclaimed
            else {
                continue;
            };
            match claimed {
                // Nobody claimed the name: entries written under it are
                // nobody's to take over (lookups refuse them all the same).
                None if claimant.is_none() => {}
                None => out.push(unclaimed.to_string()),
                Some(_) if others.is_empty() => {}
                Some(c) => out.push(format!(
                    "the name {name:?} is also used by live entries of workers that do not hold \
                     its claim ({}; worker {} holds it): lookups pass over them",
                    crate::transport::entries_text(others),
                    c.worker_id
                )),
            }
        }
        out
    }

    /// Every live worker. Stale entries met on the way are removed, or,
    /// while the session's node runs, left to its next round (which
    /// announces each death; as [`Directory::lookup`]).
    /// [`LookupError::Io`] when this process is out of descriptors or
    /// memory to look at an entry (the list would be short of it).
    pub fn list(&self) -> Result<Vec<Endpoint>, LookupError> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.root).map_err(|e| self.io(e))? {
            let ent = ent.map_err(|e| self.io(e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(ENTRY_PREFIX) && name.ends_with(ENTRY_SUFFIX) {
                match self.look(&ent.path()) {
                    Probe::Live(e) => out.push(e),
                    Probe::Failed(source) => {
                        return Err(LookupError::Io {
                            path: ent.path(),
                            source,
                        })
                    }
                    Probe::Unreadable(_) | Probe::Stale | Probe::Skip => {}
                }
            }
        }
        out.sort_by_key(|e| e.worker_id);
        Ok(out)
    }

    /// Removes the entries of dead workers; returns how many.
    pub fn remove_stale(&self) -> Result<usize, LookupError> {
        let mut n = 0;
        for ent in fs::read_dir(&self.root).map_err(|e| self.io(e))? {
            let ent = ent.map_err(|e| self.io(e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(ENTRY_PREFIX) && name.ends_with(ENTRY_SUFFIX) {
                if let Probe::Stale = self.probe(&ent.path()) {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Every entry with its liveness, changing nothing (for `shmwire
    /// inspect`; a dead entry's lock is held only while it is probed).
    /// Reads the kernel's lock list (`/proc/locks`, host-wide: any process
    /// can make it long) once, for each live entry's `holder_pid`.
    pub fn workers(&self) -> Result<Vec<WorkerStatus>, LookupError> {
        self.workers_with(true)
    }

    /// [`Directory::workers`] without the holders' pids (`holder_pid` is
    /// `None`): no read of `/proc/locks` (the node's rounds, once a
    /// second: with 38,000 locks on the host, reading it took the node to
    /// 45 % of a core — the attack on `f636cec`).
    pub fn entries(&self) -> Result<Vec<WorkerStatus>, LookupError> {
        self.workers_with(false)
    }

    fn workers_with(&self, holder_pids: bool) -> Result<Vec<WorkerStatus>, LookupError> {
        let mut out = Vec::new();
        // Read once, at the first live entry (one read of `/proc/locks`
        // per call: reading it per entry made 1,000 entries take seconds).
        let mut holders: Option<Option<FlockHolders>> = None;
        for ent in fs::read_dir(&self.root).map_err(|e| self.io(e))? {
            let ent = ent.map_err(|e| self.io(e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with(ENTRY_PREFIX) && name.ends_with(ENTRY_SUFFIX)) {
                continue;
            }
            let path = ent.path();
            let (live, holder_pid) = match probe_owner(&path) {
                Ok(OwnerState::Live) if !holder_pids => (true, None),
                Ok(OwnerState::Live) => (
                    true,
                    // The lock is held: the kernel names its holder
                    // (opened as the probe did: never follows, never
                    // blocks on a FIFO swapped in meanwhile).
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(crate::sys::fs::O_NOFOLLOW | crate::sys::fs::O_NONBLOCK)
                        .open(&path)
                        .ok()
                        .and_then(|f| {
                            holders
                                .get_or_insert_with(FlockHolders::read)
                                .as_ref()?
                                .of(&f)
                        }),
                ),
                Ok(OwnerState::Dead(_)) => (false, None),
                Ok(OwnerState::Missing) => continue,
                // Not a regular file (a FIFO, a symbolic link, …) or not
                // openable: listed with why, never taken for absent.
                Err(e) => {
                    out.push(WorkerStatus {
                        endpoint: Err(not_an_entry(&path, e)),
                        path,
                        live: None,
                        holder_pid: None,
                    });
                    continue;
                }
            };
            out.push(WorkerStatus {
                endpoint: read_entry(&path),
                path,
                live: Some(live),
                holder_pid,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn io(&self, source: io::Error) -> LookupError {
        LookupError::Io {
            path: self.root.clone(),
            source,
        }
    }
}

impl WorkerLookup for Directory {
    fn lookup(&self, id: &WorkerId) -> Result<Endpoint, LookupError> {
        Directory::lookup(self, id)
    }

    fn lookup_name(&self, name: &str) -> Result<Endpoint, LookupError> {
        Directory::lookup_name(self, name)
    }

    fn publish(&self, endpoint: &Endpoint) -> Result<Box<dyn Published>, PublishError> {
        Ok(Box::new(self.register(endpoint)?))
    }
}

/// What a name's claim file holds: the claimant's worker id and the
/// device and inode of its entry file, in one fixed-length line
/// (`shmwire-claim 1 <id hex> <dev hex> <ino hex>`), written in one
/// `pwrite` at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClaimRecord {
    worker: WorkerId,
    dev: u64,
    ino: u64,
}

impl ClaimRecord {
    const TAG: &'static str = "shmwire-claim 1 ";

    /// The record of `worker`'s entry `entry`.
    fn of(worker: WorkerId, entry: &File) -> io::Result<Self> {
        let md = entry.metadata()?;
        Ok(Self {
            worker,
            dev: md.dev(),
            ino: md.ino(),
        })
    }

    fn encode(&self) -> String {
        format!(
            "{}{} {:016x} {:016x}\n",
            Self::TAG,
            self.worker,
            self.dev,
            self.ino
        )
    }

    /// Writes it over the start of the claim file `f` and cuts the file to
    /// its length.
    fn write_to(&self, f: &File) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let text = self.encode();
        f.write_all_at(text.as_bytes(), 0)?;
        f.set_len(text.len() as u64)
    }

    /// The record in claim file `f`, if it holds exactly one.
    fn read_from(f: &File) -> Option<Self> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let mut n = 0;
        while n < buf.len() {
            match f.read_at(&mut buf[n..], n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let rest = text.strip_prefix(Self::TAG)?.strip_suffix('\n')?;
        let mut parts = rest.split(' ');
        let worker = WorkerId::from_hex(parts.next()?).ok()?;
        let dev = u64::from_str_radix(parts.next()?, 16).ok()?;
        let ino = u64::from_str_radix(parts.next()?, 16).ok()?;
        let record = Self { worker, dev, ino };
        (parts.next().is_none() && record.encode() == text).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> WorkerId {
        WorkerId::from_array([n; 28])
    }

    #[test]
    fn register_lookup_and_stale() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(dir.path()).unwrap();
        let mut e = Endpoint::new(id(1));
        e.name = Some("alpha".into());
        e.tcp = Some("127.0.0.1:4000".parse().unwrap());
        e.unix_socket = Some(dir.path().join("w1.sock"));
        let reg = d.register(&e).unwrap();
        assert_eq!(d.lookup(&id(1)).unwrap(), e);
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        assert!(matches!(d.register(&e), Err(PublishError::Refused { .. })));
        let mut e2 = Endpoint::new(id(2));
        e2.name = Some("alpha".into());
        assert!(matches!(d.register(&e2), Err(PublishError::Refused { .. })));
        assert!(matches!(
            d.lookup(&id(2)),
            Err(LookupError::NoSuchWorker { .. })
        ));
        assert_eq!(d.list().unwrap().len(), 1);
        // An entry written under the same name without claiming it (a
        // same-user process bypassing the names lock), its lock held, with
        // a lower worker id: passed over — before the claims, the name
        // resolved to the lower id, the planted one here — and named by
        // `name_problems`.
        let mut planted = Endpoint::new(id(0));
        planted.name = Some("alpha".into());
        planted.pid = 77;
        let planted_path = d.entry_path(&planted.worker_id);
        fs::write(&planted_path, planted.encode()).unwrap();
        let held = File::open(&planted_path).unwrap();
        try_lock_exclusive(&held).unwrap();
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        let problems = d.name_problems(&d.list().unwrap());
        assert!(
            problems.len() == 1 && problems[0].contains(&format!("{} pid 77", id(0))),
            "{problems:?}"
        );
        // A hard link of the claim file under an entry's name (its lock the
        // claimant's own), the entry's text written into it: passed over
        // too (the attack on `f636cec`), and the claim's record, written
        // over, is put back by a restore.
        let mut linked = Endpoint::new(id(9));
        linked.name = Some("alpha".into());
        let claim = d.claim_path("alpha");
        let linked_path = d.entry_path(&linked.worker_id);
        fs::hard_link(&claim, &linked_path).unwrap();
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        fs::write(&claim, linked.encode()).unwrap();
        assert!(matches!(
            d.lookup_name("alpha"),
            Err(LookupError::NameUnclaimed { .. })
        ));
        let mut reg = reg;
        assert!(!reg.intact());
        assert!(reg.restore().unwrap());
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        fs::remove_file(&linked_path).unwrap();
        // The claimant's entry deleted: the planted one is not reached.
        fs::remove_file(reg.path()).unwrap();
        match d.lookup_name("alpha") {
            Err(LookupError::NameUnclaimed {
                holders, claimant, ..
            }) => {
                assert_eq!(holders, [(id(0), 77)]);
                assert_eq!(claimant, Some(id(1)));
            }
            other => panic!("expected NameUnclaimed, got {other:?}"),
        }
        assert!(reg.restore().unwrap());
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        drop(held);
        assert_eq!(d.lookup_name("alpha").unwrap(), e);
        assert!(
            !planted_path.exists(),
            "the planted entry, unlocked, is stale"
        );
        let path = reg.path().to_owned();
        // Simulate a dead owner: an entry file nobody locks.
        drop(reg);
        assert!(!path.exists());
        fs::write(&path, e.encode()).unwrap();
        assert!(matches!(
            d.lookup(&id(1)),
            Err(LookupError::NoSuchWorker { .. })
        ));
        assert!(!path.exists(), "stale entry removed");
        fs::write(&path, e.encode()).unwrap();
        assert_eq!(d.remove_stale().unwrap(), 1);
        assert!(d.list().unwrap().is_empty());
        // A stale entry does not block a new registration.
        fs::write(&path, e.encode()).unwrap();
        let _reg = d.register(&e).unwrap();
        assert_eq!(d.lookup_name("alpha").unwrap().worker_id, id(1));
    }

    /// A registration that holds its name's claim puts its entry back
    /// even while another process holds the names lock (removed, or
    /// rewritten in place: the attack on `c61c5a5`), and nobody else can
    /// take the name meanwhile. A claim file removed under it is made
    /// again (then under the names lock).
    #[test]
    fn a_restore_needs_no_names_lock_while_the_claim_holds() {
        let dir = tempfile::tempdir().unwrap();
        let d = Directory::open(dir.path()).unwrap();
        let mut e = Endpoint::new(id(1));
        e.name = Some("beta".into());
        let mut reg = d.register(&e).unwrap();
        let claim = d.claim_path("beta");
        assert!(claim.exists());
        let names = File::open(dir.path().join(NAMES_LOCK_FILE)).unwrap();
        assert!(try_lock_exclusive(&names).unwrap());
        fs::remove_file(reg.path()).unwrap();
        assert!(reg.restore().unwrap());
        assert_eq!(d.lookup_name("beta").unwrap(), e);
        // Rewritten in place (same inode, another address).
        let mut evil = e.clone();
        evil.unix_socket = Some(dir.path().join("evil.sock"));
        fs::write(reg.path(), evil.encode()).unwrap();
        assert!(!reg.intact());
        assert!(reg.restore().unwrap());
        assert_eq!(d.lookup_name("beta").unwrap(), e);
        drop(names);
        let mut e2 = Endpoint::new(id(2));
        e2.name = Some("beta".into());
        match d.register(&e2) {
            Err(PublishError::Refused { why, .. }) => assert!(why.contains("is claimed by live")),
            other => panic!("the name was taken while its claim was held: {other:?}"),
        }
        // The claim file removed: not intact, made again by the restore.
        fs::remove_file(&claim).unwrap();
        assert!(!reg.intact());
        assert!(reg.restore().unwrap());
        assert!(reg.intact() && claim.exists());
        assert_eq!(d.lookup_name("beta").unwrap(), e);
        drop(reg);
        assert!(!claim.exists(), "the claim goes with the registration");
    }
}

/// Longest directory entry read, in bytes (a real one is a few hundred).
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024;

/// Reads and parses a directory entry (small `key=value` text) without
/// following a symlink or blocking on a FIFO, and at most
/// [`MAX_ENTRY_BYTES`]: a larger file (a same-user process can grow one to
/// any size) is not an entry — it costs neither memory nor time beyond
/// that bound. The error is the cause, for `inspect` and
/// [`LookupError::Unreadable`]: the read error, too long, not UTF-8,
/// [`Endpoint::parse`]'s reason, or a `worker_id` other than the one the
/// file is named for.
fn read_entry(path: &Path) -> Result<Endpoint, String> {
    let bytes = crate::sys::fs::read_small_regular(path, MAX_ENTRY_BYTES)
        .map_err(|e| format!("read: {e}"))?;
    if bytes.len() as u64 > MAX_ENTRY_BYTES {
        return Err(format!("longer than {MAX_ENTRY_BYTES} bytes"));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))?;
    let endpoint = Endpoint::parse(&text)?;
    // Read only under its own worker's name: a copied or forged entry
    // would otherwise report the named worker's death, or point at
    // another worker's sockets.
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(ENTRY_PREFIX))
        .and_then(|n| n.strip_suffix(ENTRY_SUFFIX));
    let own = endpoint.worker_id.to_string();
    if named != Some(own.as_str()) {
        return Err(format!(
            "names worker {own}, but its file is named for {}",
            named.map_or_else(|| "no worker".to_owned(), |n| format!("worker {n}"))
        ));
    }
    Ok(endpoint)
}

/// Why the entry name `path` could not be probed: what it is if not a
/// regular file (`a FIFO, not a regular file`), else the error.
fn not_an_entry(path: &Path, e: io::Error) -> String {
    use std::os::unix::fs::FileTypeExt as _;
    match fs::symlink_metadata(path).map(|m| m.file_type()) {
        Ok(t) if !t.is_file() => {
            let what = if t.is_symlink() {
                "a symbolic link"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_socket() {
                "a socket"
            } else {
                "a device file"
            };
            format!("{what}, not a regular file (never opened, no lock to probe)")
        }
        _ => format!("probe its lock: {e}"),
    }
}

#[cfg(test)]
mod entry_bound_tests {
    use super::*;

    #[test]
    fn an_oversized_entry_is_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.entry");
        let f = fs::File::create(&path).unwrap();
        // Sparse: 8 GiB long, no disk used.
        f.set_len(8 << 30).unwrap();
        let t = std::time::Instant::now();
        let err = read_entry(&path).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        fs::write(&path, "a=b\n").unwrap();
        assert_eq!(read_entry(&path).unwrap_err(), "no worker_id line");
        fs::write(&path, [0xA5_u8, 0xA5]).unwrap();
        assert!(read_entry(&path).unwrap_err().starts_with("not UTF-8"));
        let e = Endpoint::new(WorkerId::from_array([3; 28]));
        fs::write(&path, e.encode()).unwrap();
        // A valid entry is read only under its own worker's name.
        let err = read_entry(&path).unwrap_err();
        assert!(err.contains("its file is named for no worker"), "{err}");
        let own = dir
            .path()
            .join(format!("{ENTRY_PREFIX}{}{ENTRY_SUFFIX}", e.worker_id));
        fs::write(&own, e.encode()).unwrap();
        assert_eq!(read_entry(&own), Ok(e.clone()));
        // Copied under another worker's name: refused.
        let other = WorkerId::from_array([4; 28]);
        let forged = dir
            .path()
            .join(format!("{ENTRY_PREFIX}{other}{ENTRY_SUFFIX}"));
        fs::write(&forged, e.encode()).unwrap();
        let err = read_entry(&forged).unwrap_err();
        assert!(
            err.contains(&format!("but its file is named for worker {other}")),
            "{err}"
        );
    }
}
