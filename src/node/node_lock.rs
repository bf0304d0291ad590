//! One node per session, by a kernel lock: the node holds an exclusive
//! `flock` on [`NODE_LOCK_FILE`] in the session directory for its whole
//! life. The kernel drops it when the node dies, however it dies, so the
//! answer to "does a node run here?" never depends on what a file
//! *says* — a scribbled directory entry can neither let a second node in
//! nor keep a restarted one out. A refusal names the holder's pid as the
//! kernel lists it (`/proc/locks`); the pid the holder wrote into the
//! file is used only when the kernel's list does not name it.
//!
//! Taking it: open the file if it exists and try the lock (held: a node
//! lives, unless a cleaner is probing it this instant — asked again for a
//! short while); got it: the node before us died, and the file is ours if
//! its name still names it (a cleaner may have removed it meanwhile: try
//! again). Missing: make a locked temporary file (owned by this process's
//! lock in the session, so cleanup removes it if we die) and `link` it to
//! the name, which fails if another node made it first. The session's
//! cleanup pass removes the file once its lock is free (`shm::session`).
//!
//! The name is never followed (`O_NOFOLLOW`). Something other than a
//! regular file under it (a symbolic link, a directory, a FIFO, …) is not
//! replaced but refused ([`NodeLockError::NotALockFile`], naming the path
//! and what to remove): no node makes such a thing, nobody can lock
//! through it, so it cannot say whether a node lives — a live node's file
//! may have been renamed away and this put in its place — and replacing it
//! would race with another node replacing it too. Whoever made it decides;
//! after `rm` the next node starts as usual.
//!
//! [`probe`] asks the same lock whether a node runs, for `shmwire
//! inspect`: held by a live process means yes, whatever the node's
//! directory entry says (a scribbled entry does not make a live node "not
//! running").

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::shm::{temp_path_in, Session, ShmError, NODE_LOCK_FILE};
use crate::sys::liveness::{flock_holder, remove_if_same, same_file, try_lock_exclusive};

/// How long a held lock is asked again before a node is refused (a
/// cleaner probing a dead node's lock holds it for a moment).
const HELD_RETRIES: u32 = 25;

/// Why the node lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum NodeLockError {
    /// Another node of the session lives: it holds the lock.
    #[error("another node runs in session {session} ({}; it holds {})", pid_text(*pid), path.display())]
    Held {
        /// The session's name.
        session: String,
        /// The holder's pid: the kernel's (`/proc/locks`), else what the
        /// lock file says (`None`: neither).
        pid: Option<u32>,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock's name holds something no node makes (see the module
    /// docs): it is named, with what to do.
    #[error(
        "{} is {what}, not a node lock file (a node only ever makes a regular file there, \
         and never follows this name); if no node of session {session} runs, remove it \
         (rm {}{}) and start the node again",
        path.display(),
        if *what == "a directory" { "-r " } else { "" },
        path.display()
    )]
    NotALockFile {
        /// The session's name.
        session: String,
        /// What is there (`a symbolic link`, `a directory`, …).
        what: &'static str,
        /// The lock file's name.
        path: PathBuf,
    },
    /// The file system.
    #[error(transparent)]
    Io(#[from] ShmError),
}

/// What `path` is, if it exists and is not a regular file (not followed).
fn not_regular(path: &Path) -> Option<&'static str> {
    not_regular_type(fs::symlink_metadata(path).ok()?.file_type())
}

/// What a file of type `t` is, if not a regular file.
fn not_regular_type(t: fs::FileType) -> Option<&'static str> {
    (!t.is_file()).then(|| crate::sys::fs::file_type_name(t))
}

fn pid_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("pid {p}"),
        None => "its pid unreadable".into(),
    }
}

/// What the session's node lock says about its node ([`probe`]): the one
/// answer to "does a node run here?" that no file's content can falsify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeLockState {
    /// A live process holds the lock: a node runs. `pid`: the kernel's
    /// holder (`/proc/locks`), else what the file says, else `None`.
    Held {
        /// The holder's pid, if known.
        pid: Option<u32>,
    },
    /// The file is there and nobody holds its lock: its node died (the
    /// cleanup pass removes it).
    Free,
    /// No lock file: no node runs (a node whose file was renamed or
    /// removed under it is then known only from its directory entry).
    Absent,
    /// The name holds something no node makes (`a FIFO`, …): nobody can
    /// lock through it, so it says nothing about a node.
    NotALockFile(&'static str),
    /// The file could not be opened or probed: the error.
    Unreadable(String),
}

/// Probes `session`'s node lock without taking it from anyone: opened
/// read-only, never followed, never blocking (a FIFO there is named, not
/// opened); held by someone else means a node lives; free is taken for a
/// moment only (as a cleaner's probe: a node starting meanwhile asks
/// again, as taking the lock does) and released at once.
pub fn probe(session: &Session) -> NodeLockState {
    let path = session.dir().join(NODE_LOCK_FILE);
    if let Some(what) = not_regular(&path) {
        return NodeLockState::NotALockFile(what);
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(crate::sys::fs::O_NOFOLLOW | crate::sys::fs::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return NodeLockState::Absent,
        Err(e) => {
            return match not_regular(&path) {
                Some(what) => NodeLockState::NotALockFile(what),
                None => NodeLockState::Unreadable(format!("open {}: {e}", path.display())),
            }
        }
    };
    match file.metadata().map(|m| not_regular_type(m.file_type())) {
        Ok(Some(what)) => return NodeLockState::NotALockFile(what),
        Ok(None) => {}
        Err(e) => return NodeLockState::Unreadable(format!("stat {}: {e}", path.display())),
    }
    match try_lock_exclusive(&file) {
        // Dropping `file` releases it at once.
        Ok(true) => NodeLockState::Free,
        Ok(false) => NodeLockState::Held {
            pid: flock_holder(&file).or_else(|| read_pid(&file)),
        },
        Err(e) => NodeLockState::Unreadable(format!("flock {}: {e}", path.display())),
    }
}

/// The held node lock; dropping it removes the file (while still holding
/// the lock, so nobody takes a file that is about to go) and releases it.
#[derive(Debug)]
pub(crate) struct NodeLock {
    file: File,
    path: PathBuf,
}

impl std::os::fd::AsFd for NodeLock {
    /// The lock file's descriptor (a duplicate closed again leaves the
    /// lock held: a `flock` belongs to the open file, released when its
    /// last descriptor closes).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl NodeLock {
    /// Takes the lock of `session` (see the module docs).
    pub(crate) fn acquire(session: &Session) -> Result<Self, NodeLockError> {
        let dir = session.dir();
        let path = dir.join(NODE_LOCK_FILE);
        let io = |op: &'static str, p: &Path| {
            let p = p.to_owned();
            move |e: io::Error| NodeLockError::Io(ShmError::io(op, p, e))
        };
        let not_a_lock = |what| NodeLockError::NotALockFile {
            session: session.name().to_owned(),
            what,
            path: path.clone(),
        };
        let mut held = 0;
        // Each turn either takes the lock or sees the file change under it
        // (made, removed) or held; bounded.
        for _ in 0..(HELD_RETRIES + 100) {
            // Looked at before it is opened, so a device or FIFO put there
            // is not even opened; the `fstat` below catches one put there
            // between the two.
            if let Some(what) = not_regular(&path) {
                return Err(not_a_lock(what));
            }
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(crate::sys::fs::O_NOFOLLOW | crate::sys::fs::O_NONBLOCK)
                .open(&path)
            {
                Ok(file) => {
                    let meta = file.metadata().map_err(io("stat", &path))?;
                    if let Some(what) = not_regular_type(meta.file_type()) {
                        return Err(not_a_lock(what));
                    }
                    if try_lock_exclusive(&file).map_err(io("flock", &path))? {
                        if same_file(&file, &path) {
                            let lock = Self { file, path };
                            lock.write_pid();
                            return Ok(lock);
                        }
                        // Removed by a cleaner after the open: again.
                        continue;
                    }
                    held += 1;
                    if held >= HELD_RETRIES {
                        return Err(NodeLockError::Held {
                            session: session.name().to_owned(),
                            pid: flock_holder(&file).or_else(|| read_pid(&file)),
                            path,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if let Some(lock) = Self::create(dir, &path)? {
                        return Ok(lock);
                    }
                }
                // A symbolic link (ELOOP under O_NOFOLLOW), a directory
                // (EISDIR), …: named as such.
                Err(e) => match not_regular(&path) {
                    Some(what) => return Err(not_a_lock(what)),
                    None => return Err(io("open node lock", &path)(e)),
                },
            }
        }
        Err(io("take node lock", &path)(io::Error::new(
            ErrorKind::WouldBlock,
            "the lock file kept changing",
        )))
    }

    /// Takes the lock again if its file was removed or replaced under the
    /// node (a stray `rm`, a file renamed over it): without it a second
    /// node of the session could start. `Ok(true)` if it did.
    ///
    /// # Errors
    /// As [`NodeLock::acquire`]: [`NodeLockError::Held`] when another node
    /// took the session's lock in the gap (two nodes run: said, not fought
    /// over).
    pub(crate) fn restore(&mut self, session: &Session) -> Result<bool, NodeLockError> {
        if same_file(&self.file, &self.path) {
            return Ok(false);
        }
        // The old lock's drop leaves the new file alone (not its file).
        *self = Self::acquire(session)?;
        Ok(true)
    }

    /// Makes the file under a temporary name, locked, then links it to
    /// `path`; `None` if another node linked one first.
    fn create(dir: &Path, path: &Path) -> Result<Option<Self>, NodeLockError> {
        let tmp = temp_path_in(dir, "node-lock")?;
        let io = |op: &'static str, p: &Path| {
            let p = p.to_owned();
            move |e: io::Error| NodeLockError::Io(ShmError::io(op, p, e))
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(crate::sys::fs::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io("create node lock", &tmp))?;
        let result = (|| {
            // Nobody else can hold a lock on a file we have just made.
            if !try_lock_exclusive(&file).map_err(io("flock", &tmp))? {
                return Err(io("flock", &tmp)(ErrorKind::WouldBlock.into()));
            }
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io("link node lock", path)(e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        match result {
            Ok(true) => {
                let lock = Self {
                    file,
                    path: path.to_owned(),
                };
                lock.write_pid();
                Ok(Some(lock))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes this process's pid into the file (for a refused node's
    /// message; a failure, e.g. a full file system, only loses that).
    fn write_pid(&self) {
        let text = format!("{}\n", std::process::id());
        let _ = self.file.set_len(0);
        let _ = self.file.write_all_at(text.as_bytes(), 0);
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        let _ = remove_if_same(&self.file, &self.path);
    }
}

/// The pid a holder wrote (at most 32 bytes read; anything else: `None`).
fn read_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 32];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}
