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
//! knows its owner is gone: the entry is ignored and removed. Bare pids are
//! never trusted (they are reused). Removing a stale entry also removes the
//! dead worker's Unix socket file (`.s-*.sock` in the same directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::WorkerId;
use crate::sys::liveness::{probe_owner, try_lock_exclusive, OwnerState};
use crate::transport::{Endpoint, LookupError, PublishError, Published, WorkerLookup};

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
    path: PathBuf,
    _lock: File,
}

impl Registration {
    /// The entry file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Published for Registration {}

impl Drop for Registration {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so no reader mistakes the entry
        // for a stale one of a *new* registration.
        let _ = fs::remove_file(&self.path);
    }
}

const ENTRY_PREFIX: &str = ".w-";
const ENTRY_SUFFIX: &str = ".entry";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Outcome of probing one entry file.
enum Probe {
    Live(Endpoint),
    /// Dead owner: removed.
    Stale,
    /// Unreadable or vanished meanwhile.
    Skip,
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
    pub fn register(&self, endpoint: &Endpoint) -> Result<Registration, PublishError> {
        let refuse = |why: String| PublishError::Refused {
            worker: endpoint.worker_id,
            why,
        };
        if let Some(n) = &endpoint.name {
            if n.is_empty() || n.len() > 255 || n.chars().any(|c| c.is_control()) {
                return Err(refuse(format!("invalid worker name {n:?}")));
            }
        }
        let path = self.entry_path(&endpoint.worker_id);
        if let Probe::Live(_) = self.probe(&path) {
            return Err(refuse("a live worker is registered under this id".into()));
        }
        if let Some(n) = &endpoint.name {
            let live = self.list().map_err(|e| match e {
                LookupError::Io { path, source } => PublishError::Io {
                    op: "list directory",
                    path,
                    source,
                },
                other => PublishError::Io {
                    op: "list directory",
                    path: self.root.clone(),
                    source: io::Error::other(other),
                },
            })?;
            if let Some(other) = live
                .into_iter()
                .find(|e| e.name.as_deref() == Some(n) && e.worker_id != endpoint.worker_id)
            {
                return Err(refuse(format!(
                    "name {n:?} is taken by live worker {}",
                    other.worker_id
                )));
            }
        }
        let tmp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
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
            fs::rename(&tmp, &path).map_err(io_err("rename entry", &path))?;
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Registration { path, _lock: f })
    }

    /// Reads one entry, removing it if its owner is dead.
    fn probe(&self, path: &Path) -> Probe {
        match probe_owner(path) {
            Ok(OwnerState::Live) => {
                match fs::read_to_string(path)
                    .ok()
                    .as_deref()
                    .and_then(Endpoint::decode)
                {
                    Some(e) => Probe::Live(e),
                    None => Probe::Skip,
                }
            }
            Ok(OwnerState::Dead(f)) => {
                // Nobody holds the lock: the owner died. We hold it now.
                // Remove the entry, but only if the name still points at
                // the file we locked (a new registration may have replaced
                // it meanwhile).
                let same = match (f.metadata(), fs::symlink_metadata(path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if same {
                    // The dead worker's Unix socket goes too (only inside
                    // this directory: entries are untrusted input).
                    let stale = fs::read_to_string(path)
                        .ok()
                        .as_deref()
                        .and_then(Endpoint::decode);
                    if let Some(sock) = stale.and_then(|e| e.unix_socket) {
                        if sock.parent() == Some(self.root.as_path())
                            && sock
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with(".s-"))
                        {
                            let _ = fs::remove_file(&sock);
                        }
                    }
                    let _ = fs::remove_file(path);
                    tracing::debug!(path = %path.display(), "removed stale directory entry");
                }
                drop(f);
                Probe::Stale
            }
            Ok(OwnerState::Missing) | Err(_) => Probe::Skip,
        }
    }

    /// The live worker with this id.
    pub fn lookup(&self, id: &WorkerId) -> Result<Endpoint, LookupError> {
        match self.probe(&self.entry_path(id)) {
            Probe::Live(e) => Ok(e),
            _ => Err(LookupError::NoSuchWorker {
                key: id.to_string(),
            }),
        }
    }

    /// The live worker with this name.
    pub fn lookup_name(&self, name: &str) -> Result<Endpoint, LookupError> {
        self.list()?
            .into_iter()
            .find(|e| e.name.as_deref() == Some(name))
            .ok_or_else(|| LookupError::NoSuchWorker {
                key: format!("named {name:?}"),
            })
    }

    /// Every live worker (stale entries met on the way are removed).
    pub fn list(&self) -> Result<Vec<Endpoint>, LookupError> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.root).map_err(|e| self.io(e))? {
            let ent = ent.map_err(|e| self.io(e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(ENTRY_PREFIX) && name.ends_with(ENTRY_SUFFIX) {
                if let Probe::Live(e) = self.probe(&ent.path()) {
                    out.push(e);
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
}
