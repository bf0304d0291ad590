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
//! [`Registration`] lives. The kernel drops the lock when the process dies —
//! however it dies — so a reader that *can* take a shared lock on an entry
//! knows its owner is gone: the entry is ignored and removed. Bare pids are
//! never trusted (they are reused). Removing a stale entry also removes the
//! dead worker's Unix socket file (`.s-*.sock` in the same directory).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{flock, FlockOperation};

use super::{TransportError, WorkerId};

/// Where a worker can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its optional human-readable name (unique among live workers).
    pub name: Option<String>,
    /// Its process id (informational only; liveness is the entry's lock).
    pub pid: u32,
    /// The Unix socket that bootstraps shared-memory connections.
    pub unix_socket: Option<PathBuf>,
    /// The TCP address it listens on.
    pub tcp: Option<SocketAddr>,
}

impl Endpoint {
    /// An endpoint for `worker_id` in this process with no addresses yet.
    pub fn new(worker_id: WorkerId) -> Self {
        Self {
            worker_id,
            name: None,
            pid: std::process::id(),
            unix_socket: None,
            tcp: None,
        }
    }

    fn encode(&self) -> String {
        let mut s = format!("worker_id={}\npid={}\n", self.worker_id, self.pid);
        if let Some(n) = &self.name {
            s += &format!("name={n}\n");
        }
        if let Some(p) = &self.unix_socket {
            s += &format!("unix={}\n", p.display());
        }
        if let Some(a) = &self.tcp {
            s += &format!("tcp={a}\n");
        }
        s
    }

    fn decode(text: &str) -> Option<Self> {
        let mut worker_id = None;
        let mut e = Endpoint {
            worker_id: WorkerId::from_array([0; 28]),
            name: None,
            pid: 0,
            unix_socket: None,
            tcp: None,
        };
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            match k {
                "worker_id" => worker_id = Some(v.parse().ok()?),
                "pid" => e.pid = v.parse().ok()?,
                "name" => e.name = Some(v.to_owned()),
                "unix" => e.unix_socket = Some(PathBuf::from(v)),
                "tcp" => e.tcp = Some(v.parse().ok()?),
                _ => {} // newer fields are ignored
            }
        }
        e.worker_id = worker_id?;
        Some(e)
    }
}

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
    pub fn open(session_dir: &Path) -> Result<Self, TransportError> {
        let root = session_dir.to_owned();
        match fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self { root })
    }

    /// The directory of `session`.
    pub fn for_session(session: &crate::shm::Session) -> Result<Self, TransportError> {
        Self::open(session.dir())
    }

    /// The directory's path (the session directory).
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn entry_path(&self, id: &WorkerId) -> PathBuf {
        self.root.join(format!("{ENTRY_PREFIX}{id}{ENTRY_SUFFIX}"))
    }

    /// Publishes `endpoint`. Fails with [`TransportError::Refused`] if a live
    /// worker already holds this id or name; stale entries are replaced.
    pub fn register(&self, endpoint: &Endpoint) -> Result<Registration, TransportError> {
        if let Some(n) = &endpoint.name {
            if n.is_empty() || n.len() > 255 || n.chars().any(|c| c.is_control()) {
                return Err(TransportError::Refused(format!(
                    "invalid worker name {n:?}"
                )));
            }
        }
        let path = self.entry_path(&endpoint.worker_id);
        if let Probe::Live(_) = self.probe(&path) {
            return Err(TransportError::Refused(format!(
                "worker {} is already registered",
                endpoint.worker_id
            )));
        }
        if let Some(n) = &endpoint.name {
            if let Some(other) = self
                .list()?
                .into_iter()
                .find(|e| e.name.as_deref() == Some(n) && e.worker_id != endpoint.worker_id)
            {
                return Err(TransportError::Refused(format!(
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
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let result = (|| {
            // Locked before it becomes visible: a reader never sees an
            // unlocked entry of a live worker.
            flock(&f, FlockOperation::NonBlockingLockExclusive)?;
            f.write_all(endpoint.encode().as_bytes())?;
            fs::rename(&tmp, &path)?;
            Ok::<_, TransportError>(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(Registration { path, _lock: f })
    }

    /// Reads one entry, removing it if its owner is dead.
    fn probe(&self, path: &Path) -> Probe {
        let Ok(f) = File::open(path) else {
            return Probe::Skip;
        };
        match flock(&f, FlockOperation::NonBlockingLockShared) {
            Err(rustix::io::Errno::WOULDBLOCK) => {
                // Locked: its owner is alive.
                match fs::read_to_string(path)
                    .ok()
                    .as_deref()
                    .and_then(Endpoint::decode)
                {
                    Some(e) => Probe::Live(e),
                    None => Probe::Skip,
                }
            }
            Ok(()) => {
                // Nobody holds the lock: the owner died. Remove the entry, but
                // only if the name still points at the file we locked (a new
                // registration may have replaced it meanwhile).
                let same = match (f.metadata(), fs::metadata(path)) {
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
                Probe::Stale
            }
            Err(_) => Probe::Skip,
        }
    }

    /// The live worker with this id.
    pub fn lookup(&self, id: &WorkerId) -> Result<Endpoint, TransportError> {
        match self.probe(&self.entry_path(id)) {
            Probe::Live(e) => Ok(e),
            _ => Err(TransportError::NoSuchWorker(id.to_string())),
        }
    }

    /// The live worker with this name.
    pub fn lookup_name(&self, name: &str) -> Result<Endpoint, TransportError> {
        self.list()?
            .into_iter()
            .find(|e| e.name.as_deref() == Some(name))
            .ok_or_else(|| TransportError::NoSuchWorker(format!("named {name:?}")))
    }

    /// Every live worker (stale entries met on the way are removed).
    pub fn list(&self) -> Result<Vec<Endpoint>, TransportError> {
        let mut out = Vec::new();
        for ent in fs::read_dir(&self.root)? {
            let ent = ent?;
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
    pub fn remove_stale(&self) -> Result<usize, TransportError> {
        let mut n = 0;
        for ent in fs::read_dir(&self.root)? {
            let ent = ent?;
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
        assert!(matches!(d.register(&e), Err(TransportError::Refused(_))));
        let mut e2 = Endpoint::new(id(2));
        e2.name = Some("alpha".into());
        assert!(matches!(d.register(&e2), Err(TransportError::Refused(_))));
        assert!(matches!(
            d.lookup(&id(2)),
            Err(TransportError::NoSuchWorker(_))
        ));
        assert_eq!(d.list().unwrap().len(), 1);
        let path = reg.path().to_owned();
        // Simulate a dead owner: an entry file nobody locks.
        drop(reg);
        assert!(!path.exists());
        fs::write(&path, e.encode()).unwrap();
        assert!(matches!(
            d.lookup(&id(1)),
            Err(TransportError::NoSuchWorker(_))
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
