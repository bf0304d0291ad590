//! How the transport finds a worker: the [`Endpoint`] it connects to and the
//! small [`WorkerLookup`] trait that answers "where does this worker
//! listen?".
//!
//! The transport does not own the answer: the node layer's
//! `node::Directory` (entry files in the session directory, `flock`
//! liveness) implements the trait, and so can any other registry (a test's
//! in-memory map, a cluster service).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::ids::WorkerId;

/// Where a worker can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The worker.
    pub worker_id: WorkerId,
    /// Its optional human-readable name, unique among live workers: a
    /// directory claims it atomically with respect to every other
    /// registration (`node::Directory::register`, under the session's
    /// names lock), so a second live holder is refused even when both
    /// register at the same moment.
    pub name: Option<String>,
    /// Its process id (informational only; liveness is the entry's lock).
    pub pid: u32,
    /// The Unix socket that bootstraps shared-memory connections.
    pub unix_socket: Option<PathBuf>,
    /// The TCP address it accepts shmwire connections on (what a
    /// [`Connector`](super::Connector) dials).
    pub tcp: Option<SocketAddr>,
    /// An HTTP address it serves (`/health`, `/inspect`: the node's), never
    /// dialled as a transport. Entry line `http=ADDR`.
    pub http: Option<SocketAddr>,
    /// Whether it publishes a statistics area (`shmwire inspect` reads
    /// it): `None` for a process that keeps none (a store service, a bare
    /// listener), so a missing area is only an error when it says it has
    /// one, or says why it has none.
    pub stats: Option<StatsState>,
}

/// What an [`Endpoint`] says about its statistics area (`node::StatsArea`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsState {
    /// It publishes one (named after its pid and worker id).
    Published,
    /// It has none, and why (e.g. the error creating it on a full tmpfs);
    /// at most [`MAX_STATS_REASON`] bytes, control characters replaced.
    Unavailable(String),
}

/// Longest reason a [`StatsState::Unavailable`] keeps, in bytes.
pub const MAX_STATS_REASON: usize = 512;

impl StatsState {
    /// An `Unavailable` of `reason`, cut at [`MAX_STATS_REASON`] bytes (at a
    /// character boundary) with control characters (a newline would end
    /// the entry's line) replaced by spaces.
    pub fn unavailable(reason: &str) -> Self {
        let clean: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut cut = clean.len().min(MAX_STATS_REASON);
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        StatsState::Unavailable(clean[..cut].to_owned())
    }
}

/// Whether `name` may name a worker: 1 to 255 bytes, no control characters
/// (a newline would end an entry's line; an escape sequence would reach
/// every terminal that prints the name). Registration refuses other names
/// and reading an entry refuses them as malformed, so no tool prints one.
pub fn valid_worker_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.chars().any(char::is_control)
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
            http: None,
            stats: None,
        }
    }

    /// The entry-file form: `key=value` lines (`worker_id`, `pid`, and
    /// `name`, `unix`, `tcp`, `http`, `stats` when set; `stats` is `published` or
    /// `unavailable:<reason>`).
    pub fn encode(&self) -> String {
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
        if let Some(a) = &self.http {
            s += &format!("http={a}\n");
        }
        match &self.stats {
            None => {}
            Some(StatsState::Published) => s += "stats=published\n",
            Some(StatsState::Unavailable(why)) => {
                if let StatsState::Unavailable(why) = StatsState::unavailable(why) {
                    s += &format!("stats=unavailable:{why}\n");
                }
            }
        }
        s
    }

    /// Parses [`Endpoint::encode`]'s form; `None` when a known field is
    /// malformed or `worker_id` is missing (unknown keys are ignored, so a
    /// newer writer's extra fields do not break an older reader).
    /// [`Endpoint::parse`] says why.
    pub fn decode(text: &str) -> Option<Self> {
        Self::parse(text).ok()
    }

    /// As [`Endpoint::decode`], with the reason a text is not an entry:
    /// which line or field is malformed (values quoted with control
    /// characters escaped, cut at 40 bytes), or that `worker_id` is
    /// missing. A `name` that [`valid_worker_name`] refuses and a `unix`
    /// path that is empty or holds control characters are malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        fn quoted(v: &str) -> String {
            let mut cut = v.len().min(40);
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{:?}{}", &v[..cut], if cut < v.len() { "…" } else { "" })
        }
        let bad = |k: &str, v: &str| format!("malformed {k} value {}", quoted(v));
        let mut worker_id = None;
        let mut e = Endpoint {
            worker_id: WorkerId::from_array([0; 28]),
            name: None,
            pid: 0,
            unix_socket: None,
            tcp: None,
            http: None,
            stats: None,
        };
        for (n, line) in text.lines().enumerate() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {} is not key=value: {}", n + 1, quoted(line)))?;
            match k {
                "worker_id" => worker_id = Some(v.parse().map_err(|_| bad(k, v))?),
                "pid" => e.pid = v.parse().map_err(|_| bad(k, v))?,
                "name" if valid_worker_name(v) => e.name = Some(v.to_owned()),
                "unix" if !v.is_empty() && !v.chars().any(char::is_control) => {
                    e.unix_socket = Some(PathBuf::from(v))
                }
                "name" | "unix" => return Err(bad(k, v)),
                "tcp" => e.tcp = Some(v.parse().map_err(|_| bad(k, v))?),
                "http" => e.http = Some(v.parse().map_err(|_| bad(k, v))?),
                "stats" => {
                    e.stats = Some(match v.strip_prefix("unavailable:") {
                        Some(why) => StatsState::unavailable(why),
                        None if v == "published" => StatsState::Published,
                        None => return Err(bad(k, v)),
                    })
                }
                _ => {} // newer fields are ignored
            }
        }
        e.worker_id = worker_id.ok_or_else(|| "no worker_id line".to_owned())?;
        Ok(e)
    }
}

/// `holders` (worker id, the pid its entry gives) as a list: `<id> pid
/// <pid>, …`.
pub(crate) fn entries_text(holders: &[(WorkerId, u32)]) -> String {
    holders
        .iter()
        .map(|(w, pid)| format!("{w} pid {pid}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a lookup found no usable worker.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No live worker is registered under this key.
    #[error("no live worker {key} in the directory")]
    NoSuchWorker {
        /// The id (hex) or `named "…"` that was looked up.
        key: String,
    },
    /// The worker is registered but offers no address this side can use.
    #[error("worker {worker} has no usable address ({why})")]
    NoUsableAddress {
        /// The worker.
        worker: WorkerId,
        /// What was missing.
        why: &'static str,
    },
    /// The worker's entry is there and its owner lives (it holds the
    /// entry's lock), but the entry cannot be read or is not an entry:
    /// not "no such worker" (it may be a live worker whose entry was
    /// scribbled over).
    #[error("the directory entry {path} of a live process is unreadable: {cause}")]
    Unreadable {
        /// The entry file.
        path: PathBuf,
        /// Why (the read error, or which line or field is malformed).
        cause: String,
    },
    /// Live entries hold this name, but none is its claimant's: each was
    /// written under the name by a worker that does not hold the name's
    /// claim (a same-user process can write an entry), and the claimant's
    /// own entry is missing (a live node puts its entry back within about
    /// a second), or nobody holds the claim. Not resolved to any: a lookup
    /// would otherwise reach a process that never claimed the name (the
    /// attacks on `1b5f3c1` and `5aeed3d`: an entry planted under the
    /// store's name, with a lower worker id or the store's own deleted,
    /// took every new store client to a socket that never answered).
    #[error(
        "the name {name:?} is not held by its claimant ({}): the live entries under it ({}) \
         were written by workers that do not hold its claim; not resolved to any",
        claimant.map_or_else(
            || "nobody holds its claim".to_owned(),
            |w| format!("worker {w} holds its claim; its entry is missing")
        ),
        entries_text(holders)
    )]
    NameUnclaimed {
        /// The name.
        name: String,
        /// Each live entry's worker id and the pid its text gives, by
        /// worker id.
        holders: Vec<(WorkerId, u32)>,
        /// The worker holding the name's claim, if any.
        claimant: Option<WorkerId>,
    },
    /// The registry could not be read.
    #[error("reading the worker directory {path}")]
    Io {
        /// The directory or entry that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A registry of the workers of a node: who listens where.
///
/// Implemented by the node layer's `Directory`; the transport's
/// [`Connector`](super::Connector) asks it to resolve worker ids and names,
/// and a [`Listener`](super::Listener) publishes itself through it.
pub trait WorkerLookup: Send + Sync + fmt::Debug {
    /// The live worker with this id.
    fn lookup(&self, id: &WorkerId) -> Result<Endpoint, LookupError>;
    /// The live worker with this name.
    fn lookup_name(&self, name: &str) -> Result<Endpoint, LookupError>;
    /// Publishes `endpoint` for as long as the returned guard lives
    /// (dropping it withdraws the entry).
    fn publish(&self, endpoint: &Endpoint) -> Result<Box<dyn Published>, PublishError>;
}

/// The guard of a published [`Endpoint`]: dropping it withdraws the entry.
pub trait Published: Send + fmt::Debug {
    /// Publishes the endpoint again if its entry was removed or replaced
    /// behind the guard's back (a stray `rm`, a file renamed over it);
    /// `Ok(true)` if it did, `Ok(false)` while the entry is intact. A
    /// registry whose entries cannot be lost keeps the default (`false`).
    ///
    /// # Errors
    /// [`PublishError::Refused`] when another live worker now holds the
    /// id or the name; [`PublishError::Io`] when the entry cannot be
    /// written (the old one stays lost: call again later).
    fn restore(&mut self) -> Result<bool, PublishError> {
        Ok(false)
    }
}

/// Why a worker could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A live worker already holds this id or name, or the name is invalid.
    #[error("cannot register worker {worker}: {why}")]
    Refused {
        /// The worker that tried to register.
        worker: WorkerId,
        /// Why (`"id in use"`, `"name taken by live worker …"`, `"invalid name …"`).
        why: String,
    },
    /// Writing the entry failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`"create entry"`, `"lock entry"`, …).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
