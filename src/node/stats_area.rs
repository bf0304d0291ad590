//! A process's published statistics: a small fixed-layout segment
//! (`stats-<pid>-<16 hex of the worker id>`, kind `STAT`) that a worker (or
//! the node) rewrites now and then, and that `shmwire inspect` reads
//! without stopping it.
//!
//! # Layout (layout version 1, all little-endian `u64` words)
//!
//! | words | what |
//! | --- | --- |
//! | 0 | magic `SWSTATS\0` |
//! | 1 | layout version ([`AREA_VERSION`]) |
//! | 2 | sequence: odd while the writer rewrites the area |
//! | 3 | pid · 4 role (1 worker, 2 node) · 5 time of the update (ms since the epoch) |
//! | 6 | handlers · 7 connections · 8 objects · 9 dead workers (counts) |
//! | 10 | store present (0/1) · 11 capacity · 12 used · 13 objects · 14 sealed · 15 evictable · 16 fallback objects |
//! | 17 | connections not listed (beyond [`MAX_CONNECTIONS`]) · 18 handlers not listed (beyond [`MAX_HANDLERS`]) |
//! | 19 | store metadata used · 20 store metadata capacity (bytes; 0 from writers before them) |
//! | 21..32 | reserved (0) |
//! | 32.. | [`MAX_HANDLERS`] handlers × 16: name length, name (64 bytes), count, queueing sum and max, execution sum and max (ns), 2 reserved |
//! | then | [`MAX_CONNECTIONS`] connections × 12: peer id (28 bytes in 4 words), transport (1 shm, 2 TCP), ring figures present, rx used, rx capacity, tx used, tx capacity, bytes queued to send, peer pid (0: unknown) |
//! | then | [`MAX_OBJECTS`] objects × 8: id (4 words), state (1 unsealed, 2 sealed, 3 delete pending), data size, holders, in a fallback file (0/1) |
//! | then | [`MAX_DEAD`] dead workers × 16: id (4 words), pid, when its death was seen (ms since the epoch), name length, name (64 bytes), reserved |
//!
//! # Consistency and hostile memory
//!
//! Neither side maps the segment (a same-user process may truncate the
//! file, and a store or load through a truncated mapping raises `SIGBUS`).
//! The writer builds the words privately and writes them with three
//! `pwrite`s — the odd sequence word, every word (the copy's own sequence
//! word odd too), the next even sequence word — so a truncated area is
//! simply written again. Before them, each publish reads the segment
//! header back (one `pread` of its 128 bytes, one `fstat`) and, if another
//! process truncated, zeroed or scribbled it (or grew the file), writes
//! the header it created again: a damaged area is readable again after
//! the writer's next publish (a worker's within
//! `worker::stats::REPUBLISH_IDLE_EVERY`, 1 s, sooner when its figures
//! change; a node's within its next round). The
//! reader copies it with `pread` between two reads of the sequence and
//! keeps the copy only when both are the same even value as the copy's
//! own; it gives up after [`READ_TRIES`] torn copies. Then every field is
//! checked — magic, version, counts within their maxima, name lengths,
//! UTF-8, enumerations, used ≤ capacity — and a violation is an
//! [`AreaError::Invalid`], never a panic.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::ids::{ObjectId, WorkerId};
use crate::shm::{kind, HeaderSnapshot, Segment, Session, ShmError, HEADER_SIZE};
use crate::store::{ObjectState, StoreSnapshot, TableStats};
use crate::transport::{RingFill, TransportKind};

/// Magic word of a statistics area.
pub const AREA_MAGIC: u64 = u64::from_le_bytes(*b"SWSTATS\0");
/// Layout version of a statistics area.
pub const AREA_VERSION: u64 = 1;
/// Handlers an area holds (the first ones registered).
pub const MAX_HANDLERS: usize = 64;
/// Connections an area holds.
pub const MAX_CONNECTIONS: usize = 64;
/// Most connections or handlers an area may say it did not list (2^30,
/// above Linux's largest descriptor limit): a larger count is a scribble,
/// [`AreaError::Invalid`].
pub const MAX_UNLISTED: usize = 1 << 30;
/// Store objects an area holds (the largest).
pub const MAX_OBJECTS: usize = 32;
/// Dead workers a node's area remembers (the most recent).
pub const MAX_DEAD: usize = 16;
/// Longest handler or worker name kept, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_NAME: usize = 64;
/// Torn copies a reader accepts before it reports the area busy.
pub const READ_TRIES: usize = 100;

const HEAD_WORDS: usize = 32;
const HANDLER_WORDS: usize = 16;
const CONN_WORDS: usize = 12;
const OBJECT_WORDS: usize = 8;
const DEAD_WORDS: usize = 16;
const HANDLERS_AT: usize = HEAD_WORDS;
const CONNS_AT: usize = HANDLERS_AT + MAX_HANDLERS * HANDLER_WORDS;
const OBJECTS_AT: usize = CONNS_AT + MAX_CONNECTIONS * CONN_WORDS;
const DEAD_AT: usize = OBJECTS_AT + MAX_OBJECTS * OBJECT_WORDS;
const AREA_WORDS: usize = DEAD_AT + MAX_DEAD * DEAD_WORDS;
/// Payload bytes of an area segment.
pub const AREA_BYTES: usize = AREA_WORDS * 8;
const SEQ: usize = 2;

/// Who publishes an area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AreaRole {
    /// A worker ([`crate::worker::Worker`]).
    Worker,
    /// The node service ([`crate::node::Node`]).
    Node,
}

/// One handler's figures (Ray's `EventStats`), in nanoseconds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HandlerFigures {
    /// The handler's name.
    pub name: String,
    /// Times it ran.
    pub count: u64,
    /// Sum of its queueing times.
    pub cum_queue_ns: u64,
    /// Longest queueing time.
    pub max_queue_ns: u64,
    /// Sum of its execution times.
    pub cum_exec_ns: u64,
    /// Longest execution time.
    pub max_exec_ns: u64,
}

impl Clone for HandlerFigures {
    fn clone(&self) -> Self {
        let mut c = Self::default();
        c.clone_from(self);
        c
    }

    /// Reuses `self.name`'s buffer, so a `Vec::clone_from` of warm figures
    /// allocates nothing (the worker publishes them from its serving loop).
    fn clone_from(&mut self, source: &Self) {
        self.name.clone_from(&source.name);
        self.count = source.count;
        self.cum_queue_ns = source.cum_queue_ns;
        self.max_queue_ns = source.max_queue_ns;
        self.cum_exec_ns = source.cum_exec_ns;
        self.max_exec_ns = source.max_exec_ns;
    }
}

impl HandlerFigures {
    /// Mean queueing time (0 when it never ran).
    pub fn mean_queue_ns(&self) -> u64 {
        self.cum_queue_ns.checked_div(self.count).unwrap_or(0)
    }

    /// Mean execution time (0 when it never ran).
    pub fn mean_exec_ns(&self) -> u64 {
        self.cum_exec_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// One connection a worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFigures {
    /// The caller.
    pub peer: WorkerId,
    /// The caller's pid (shared memory: the kernel's `SO_PEERCRED` of its
    /// bootstrap socket; `None` over TCP or when unknown).
    pub pid: Option<u32>,
    /// Its transport.
    pub transport: TransportKind,
    /// How full its rings are (shared memory only).
    pub ring: Option<RingFill>,
    /// Bytes queued to send, not yet handed to the peer.
    pub pending_send: u64,
}

/// One store object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectFigures {
    /// The object.
    pub id: ObjectId,
    /// Its state.
    pub state: ObjectState,
    /// Data size in bytes.
    pub data_size: u64,
    /// References and pins held on it.
    pub holders: u64,
    /// Whether it lives in a fallback file.
    pub fallback: bool,
}

/// The node's store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// Counts.
    pub stats: TableStats,
    /// The largest objects, largest first.
    pub largest: Vec<ObjectFigures>,
}

impl From<&StoreSnapshot> for StoreFigures {
    fn from(s: &StoreSnapshot) -> Self {
        Self {
            stats: s.stats,
            largest: s
                .largest
                .iter()
                .map(|o| ObjectFigures {
                    id: o.id,
                    state: o.state,
                    data_size: o.data_size,
                    holders: u64::from(o.holders),
                    fallback: o.fallback,
                })
                .collect(),
        }
    }
}

impl From<&crate::store::ClientConnection> for ConnectionFigures {
    fn from(c: &crate::store::ClientConnection) -> Self {
        Self {
            peer: c.peer,
            pid: c.pid,
            transport: c.transport,
            ring: c.ring,
            pending_send: c.pending_send,
        }
    }
}

/// A worker whose death the node saw (its leftovers were then removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadWorker {
    /// Its id.
    pub worker_id: WorkerId,
    /// Its pid.
    pub pid: u32,
    /// Its name, if it had one.
    pub name: Option<String>,
    /// When the node saw it dead (ms since the epoch).
    pub seen_dead_unix_ms: u64,
}

/// Everything one area holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaSnapshot {
    /// The publisher's pid.
    pub pid: u32,
    /// Who publishes it.
    pub role: AreaRole,
    /// When it was last rewritten (ms since the epoch).
    pub updated_unix_ms: u64,
    /// Per-handler figures (a worker's).
    pub handlers: Vec<HandlerFigures>,
    /// Connections served: a worker's callers, or the node's store
    /// clients. An area lists at most [`MAX_CONNECTIONS`].
    pub connections: Vec<ConnectionFigures>,
    /// Connections beyond those listed: when read, how many the writer
    /// served but could not list (`inspect` says so); when published, any
    /// more to report than `connections` holds (usually 0).
    pub connections_unlisted: u64,
    /// Handlers beyond those listed (at most [`MAX_HANDLERS`]), as
    /// `connections_unlisted`.
    pub handlers_unlisted: u64,
    /// The store (the node's).
    pub store: Option<StoreFigures>,
    /// Workers seen dead, most recent last (the node's).
    pub dead: Vec<DeadWorker>,
}

impl AreaSnapshot {
    /// An empty snapshot of this process in `role`.
    pub fn new(role: AreaRole) -> Self {
        Self {
            pid: std::process::id(),
            role,
            updated_unix_ms: 0,
            handlers: Vec::new(),
            connections: Vec::new(),
            connections_unlisted: 0,
            handlers_unlisted: 0,
            store: None,
            dead: Vec::new(),
        }
    }
}

/// Why an area could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AreaError {
    /// There is no such area (the process publishes none, or it is gone).
    #[error("no statistics area {0}")]
    Missing(PathBuf),
    /// Reading the file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The segment header is not a statistics area's.
    #[error("{path}: {source}")]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ShmError,
    },
    /// The writer was rewriting it on every one of [`READ_TRIES`] reads.
    #[error("{0}: never stable over {READ_TRIES} reads")]
    Busy(PathBuf),
    /// A field holds a value no writer of this layout writes.
    #[error("{path}: invalid statistics area: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which field and value.
        why: String,
    },
}

/// The segment name of the area of worker `id` in process `pid`.
pub fn area_name(pid: u32, id: &WorkerId) -> String {
    format!("stats-{pid}-{}", &id.hex()[..16])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The writing side: this process's area for one worker id. Dropping it
/// removes the segment (a dead process's is removed by the cleanup pass:
/// it is owned by the process's lock like every segment).
#[derive(Debug)]
pub struct StatsArea {
    /// Owns the name (and removes the file on drop). Never written
    /// through its mapping: a same-user process may truncate the file,
    /// and a store into a truncated mapping raises `SIGBUS`.
    seg: Segment,
    /// The segment's file, written with `pwrite` (a truncated file is
    /// extended again, never a signal).
    file: std::fs::File,
    /// Where the payload starts in the file (bytes).
    payload_offset: u64,
    /// The words of the next publish, built privately (atomics only so
    /// the word helpers take a shared slice; no other thread sees them).
    words: Box<[AtomicU64]>,
    /// `words` as little-endian bytes, for the `pwrite` (reused).
    bytes: Vec<u8>,
    /// The last even sequence value published.
    seq: u64,
    /// The segment header as it was published (its byte image, from the
    /// creator's snapshot): each publish compares the file's header with it and
    /// writes it again when another process truncated, zeroed or
    /// scribbled it.
    header: [u8; HEADER_SIZE],
    /// The file's size as created (header page + payload): a file grown
    /// past it is cut back, one shrunk below it is written again.
    total_size: u64,
    /// A scratch copy of the file's header, read at each publish.
    header_now: [u8; HEADER_SIZE],
}

fn put_name(w: &[AtomicU64], name: &str) {
    let mut cut = name.len().min(MAX_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let bytes = &name.as_bytes()[..cut];
    w[0].store(cut as u64, Ordering::Relaxed);
    for (i, word) in w[1..=MAX_NAME / 8].iter().enumerate() {
        let mut b = [0u8; 8];
        let start = (i * 8).min(cut);
        let end = (i * 8 + 8).min(cut);
        b[..end - start].copy_from_slice(&bytes[start..end]);
        word.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

fn put_id(w: &[AtomicU64], id: &[u8]) {
    for (i, word) in w[..4].iter().enumerate() {
        let mut b = [0u8; 8];
        let start = (i * 8).min(id.len());
        let end = (i * 8 + 8).min(id.len());
        b[..end - start].copy_from_slice(&id[start..end]);
        word.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

fn state_code(s: ObjectState) -> u64 {
    match s {
        ObjectState::Unsealed => 1,
        ObjectState::Sealed => 2,
        ObjectState::DeletePending => 3,
    }
}

impl StatsArea {
    /// Creates the area of worker `id` of this process in `session` (a
    /// dead predecessor's area of the same name is cleaned up first).
    pub fn create(session: &Session, id: &WorkerId) -> Result<Self, ShmError> {
        let name = area_name(std::process::id(), id);
        let make = || {
            Segment::create_with(session, &name, AREA_BYTES, kind::STATS, |p: &mut [u8]| {
                p[..8].copy_from_slice(&AREA_MAGIC.to_le_bytes());
                p[8..16].copy_from_slice(&AREA_VERSION.to_le_bytes());
                p[24..32].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
                Ok::<_, ShmError>(())
            })
        };
        let seg = match make() {
            Ok(s) => s,
            Err(ShmError::AlreadyExists { .. }) => {
                // Left by a dead process that had our pid: its owner is
                // dead, so the pass removes it.
                session.cleanup_stale()?;
                make()?
            }
            Err(e) => return Err(e),
        };
        // The file by its name, right after we created it (O_NOFOLLOW: a
        // link planted since is refused). A same-user process that swapped
        // the file in this instant only gets our figures written into its
        // own file.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(crate::sys::fs::O_NOFOLLOW)
            .open(seg.path())
            .map_err(|e| ShmError::io("open statistics area", seg.path(), e))?;
        let published = seg.header();
        let payload_offset = published.payload_offset;
        let total_size = published.total_size;
        // The header as published (init word READY), to heal it from.
        let header = published.to_bytes();
        Ok(Self {
            seg,
            file,
            payload_offset,
            words: (0..AREA_WORDS).map(|_| AtomicU64::new(0)).collect(),
            bytes: Vec::with_capacity(AREA_BYTES),
            seq: 0,
            header,
            total_size,
            header_now: [0u8; HEADER_SIZE],
        })
    }

    /// The segment's name.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// Makes the area again under its name — for worker `id` of this
    /// process in `session`, empty until the next [`StatsArea::publish`] —
    /// if its file was removed or another file was renamed over it (readers
    /// found no area, or someone else's); whatever is under the name now is
    /// removed first (it is named after this process). `Ok(true)` if it
    /// did. Costs an `fstat` and an `lstat` when intact.
    ///
    /// # Errors
    /// As [`StatsArea::create`] (the area stays missing: call again later).
    pub fn restore(&mut self, session: &Session, id: &WorkerId) -> Result<bool, ShmError> {
        if crate::sys::liveness::same_file(&self.file, self.seg.path()) {
            return Ok(false);
        }
        match std::fs::remove_file(self.seg.path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ShmError::io("unlink", self.seg.path(), e)),
        }
        // The old segment's drop leaves the new file alone (not the file
        // it made).
        *self = Self::create(session, id)?;
        Ok(true)
    }

    /// Rewrites the area with `snap` (its first [`MAX_HANDLERS`] handlers,
    /// [`MAX_CONNECTIONS`] connections, [`MAX_OBJECTS`] objects and last
    /// [`MAX_DEAD`] dead workers); `updated_unix_ms` is set to now. A few
    /// hundred relaxed stores and five system calls (a `pread` of the
    /// segment header and an `fstat` that check it is still the one this
    /// writer made — rewriting it if not — then three `pwrite`s): cheap
    /// enough to call every few milliseconds.
    pub fn publish(&mut self, snap: &AreaSnapshot) {
        let w = &self.words[..];
        let seq = self.seq;
        // The copy carries the odd value: a reader that read the even one
        // before this publish began sees its copy differ and retries.
        w[SEQ].store(seq.wrapping_add(1), Ordering::Relaxed);
        w[0].store(AREA_MAGIC, Ordering::Relaxed);
        w[1].store(AREA_VERSION, Ordering::Relaxed);
        w[3].store(u64::from(snap.pid), Ordering::Relaxed);
        let role = match snap.role {
            AreaRole::Worker => 1,
            AreaRole::Node => 2,
        };
        w[4].store(role, Ordering::Relaxed);
        w[5].store(now_ms(), Ordering::Relaxed);
        let handlers = &snap.handlers[..snap.handlers.len().min(MAX_HANDLERS)];
        let conns = &snap.connections[..snap.connections.len().min(MAX_CONNECTIONS)];
        let objects = snap
            .store
            .as_ref()
            .map_or(&[][..], |s| &s.largest[..s.largest.len().min(MAX_OBJECTS)]);
        let dead = &snap.dead[snap.dead.len().saturating_sub(MAX_DEAD)..];
        w[6].store(handlers.len() as u64, Ordering::Relaxed);
        w[7].store(conns.len() as u64, Ordering::Relaxed);
        w[8].store(objects.len() as u64, Ordering::Relaxed);
        w[9].store(dead.len() as u64, Ordering::Relaxed);
        let unlisted =
            |all: usize, listed: usize, more: u64| ((all - listed) as u64).saturating_add(more);
        w[17].store(
            unlisted(
                snap.connections.len(),
                conns.len(),
                snap.connections_unlisted,
            ),
            Ordering::Relaxed,
        );
        w[18].store(
            unlisted(snap.handlers.len(), handlers.len(), snap.handlers_unlisted),
            Ordering::Relaxed,
        );
        let st = snap.store.as_ref().map(|s| s.stats).unwrap_or_default();
        let store_words = [
            u64::from(snap.store.is_some()),
            st.capacity,
            st.used,
            st.objects as u64,
            st.sealed as u64,
            st.evictable as u64,
            st.fallback_objects as u64,
        ];
        for (i, v) in store_words.into_iter().enumerate() {
            w[10 + i].store(v, Ordering::Relaxed);
        }
        w[19].store(st.metadata_used, Ordering::Relaxed);
        w[20].store(st.metadata_capacity, Ordering::Relaxed);
        for (i, h) in handlers.iter().enumerate() {
            let e = &w[HANDLERS_AT + i * HANDLER_WORDS..][..HANDLER_WORDS];
            put_name(&e[..9], &h.name);
            for (j, v) in [
                h.count,
                h.cum_queue_ns,
                h.max_queue_ns,
                h.cum_exec_ns,
                h.max_exec_ns,
            ]
            .into_iter()
            .enumerate()
            {
                e[9 + j].store(v, Ordering::Relaxed);
            }
        }
        for (i, c) in conns.iter().enumerate() {
            let e = &w[CONNS_AT + i * CONN_WORDS..][..CONN_WORDS];
            put_id(&e[..4], c.peer.as_bytes());
            let t = match c.transport {
                TransportKind::Shm => 1,
                TransportKind::Tcp => 2,
            };
            let r = c.ring.unwrap_or_default();
            for (j, v) in [
                t,
                u64::from(c.ring.is_some()),
                r.rx_used as u64,
                r.rx_capacity as u64,
                r.tx_used as u64,
                r.tx_capacity as u64,
                c.pending_send,
                c.pid.map_or(0, u64::from),
            ]
            .into_iter()
            .enumerate()
            {
                e[4 + j].store(v, Ordering::Relaxed);
            }
        }
        for (i, o) in objects.iter().enumerate() {
            let e = &w[OBJECTS_AT + i * OBJECT_WORDS..][..OBJECT_WORDS];
            put_id(&e[..4], o.id.as_bytes());
            e[4].store(state_code(o.state), Ordering::Relaxed);
            e[5].store(o.data_size, Ordering::Relaxed);
            e[6].store(o.holders, Ordering::Relaxed);
            e[7].store(u64::from(o.fallback), Ordering::Relaxed);
        }
        for (i, d) in dead.iter().enumerate() {
            let e = &w[DEAD_AT + i * DEAD_WORDS..][..DEAD_WORDS];
            put_id(&e[..4], d.worker_id.as_bytes());
            e[4].store(u64::from(d.pid), Ordering::Relaxed);
            e[5].store(d.seen_dead_unix_ms, Ordering::Relaxed);
            put_name(&e[6..15], d.name.as_deref().unwrap_or(""));
        }
        self.write_out(seq);
    }

    /// Writes the built words to the file as a sequence lock made of three
    /// `pwrite`s, in this order: the odd sequence word, every word (the
    /// copy's own sequence word odd too), the next even sequence word. A
    /// reader keeps a copy only when the sequence it read before and after
    /// and the copy's own word are the same even value. Errors (a full
    /// tmpfs, say) are ignored: the figures are advisory, the reader then
    /// sees an old, torn or missing area and says so.
    ///
    /// First the segment header is healed ([`StatsArea::heal_header`]),
    /// so an area another process truncated, zeroed or scribbled is
    /// readable again after this publish.
    fn write_out(&mut self, seq: u64) {
        self.heal_header();
        self.bytes.clear();
        for word in self.words.iter() {
            self.bytes
                .extend_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let seq_at = self.payload_offset + (SEQ * 8) as u64;
        let odd = seq.wrapping_add(1).to_le_bytes();
        let even = seq.wrapping_add(2);
        let _ = self.file.write_all_at(&odd, seq_at);
        let _ = self.file.write_all_at(&self.bytes, self.payload_offset);
        let _ = self.file.write_all_at(&even.to_le_bytes(), seq_at);
        self.seq = even;
    }

    /// Puts the segment header and the file's size back as they were
    /// created if another process changed them; returns whether anything
    /// had to be rewritten. Costs two system calls when nothing changed
    /// (a `pread` of the header's 128 bytes and an `fstat`): a file
    /// truncated below the header, a zeroed or scribbled header get the
    /// whole header written again (one `pwrite`); a file grown past its
    /// size is cut back (`ftruncate`). A file shrunk elsewhere is extended
    /// again by the payload's `pwrite`. Errors are ignored as in
    /// [`StatsArea::write_out`].
    fn heal_header(&mut self) -> bool {
        let mut healed = false;
        let intact = matches!(
            self.file.read_at(&mut self.header_now, 0),
            Ok(n) if n == HEADER_SIZE && self.header_now == self.header
        );
        if !intact {
            let _ = self.file.write_all_at(&self.header, 0);
            healed = true;
        }
        if let Ok(md) = self.file.metadata() {
            if md.len() > self.total_size {
                let _ = self.file.set_len(self.total_size);
                healed = true;
            }
        }
        healed
    }
}

/// Reads and validates the area `name` of `session` without mapping it
/// (see the module docs).
pub fn read_area(session: &Session, name: &str) -> Result<AreaSnapshot, AreaError> {
    let path = session
        .segment_path(name)
        .map_err(|source| AreaError::Header {
            path: session.dir().join(name),
            source,
        })?;
    let io_err = |op: &'static str, path: &PathBuf| {
        let path = path.clone();
        move |source: io::Error| AreaError::Io { op, path, source }
    };
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(crate::sys::fs::O_NOFOLLOW | crate::sys::fs::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(AreaError::Missing(path)),
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let md = file.metadata().map_err(io_err("stat", &path))?;
    if !md.is_file() || md.uid() != crate::sys::fs::euid() {
        return Err(AreaError::Invalid {
            path,
            why: "not a regular file of ours".into(),
        });
    }
    let mut hb = [0u8; HEADER_SIZE];
    file.read_exact_at(&mut hb, 0)
        .map_err(io_err("read header", &path))?;
    let header = HeaderSnapshot::from_bytes(&hb);
    if header.init_state == crate::shm::INIT_UNINIT {
        // Its creator is still writing it.
        return Err(AreaError::Busy(path));
    }
    if header.init_state != crate::shm::INIT_READY {
        return Err(AreaError::Invalid {
            path,
            why: format!(
                "segment header's init word is {:#x}, neither 0 nor READY",
                header.init_state
            ),
        });
    }
    let payload_len =
        header
            .validate(kind::STATS, md.len())
            .map_err(|source| AreaError::Header {
                path: path.clone(),
                source,
            })?;
    if payload_len < AREA_BYTES {
        return Err(AreaError::Invalid {
            path,
            why: format!("payload of {payload_len} bytes, expected {AREA_BYTES}"),
        });
    }
    let off = header.payload_offset;
    let mut buf = vec![0u8; AREA_BYTES];
    let mut seq_bytes = [0u8; 8];
    for _ in 0..READ_TRIES {
        file.read_exact_at(&mut seq_bytes, off + (SEQ * 8) as u64)
            .map_err(io_err("read", &path))?;
        let s1 = u64::from_le_bytes(seq_bytes);
        if s1 & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        file.read_exact_at(&mut buf, off)
            .map_err(io_err("read", &path))?;
        file.read_exact_at(&mut seq_bytes, off + (SEQ * 8) as u64)
            .map_err(io_err("read", &path))?;
        let s2 = u64::from_le_bytes(seq_bytes);
        let copied = u64::from_le_bytes(buf[SEQ * 8..SEQ * 8 + 8].try_into().unwrap_or([1; 8]));
        if s1 == s2 && copied == s1 {
            return parse(&buf).map_err(|why| AreaError::Invalid { path, why });
        }
        std::thread::yield_now();
    }
    Err(AreaError::Busy(path))
}

/// Validates and decodes one stable copy of an area.
fn parse(buf: &[u8]) -> Result<AreaSnapshot, String> {
    let word = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    if word(0) != AREA_MAGIC {
        return Err(format!("magic {:#018x}", word(0)));
    }
    if word(1) != AREA_VERSION {
        return Err(format!(
            "layout version {} (this build reads {AREA_VERSION})",
            word(1)
        ));
    }
    let pid = u32::try_from(word(3)).map_err(|_| format!("pid {}", word(3)))?;
    let role = match word(4) {
        1 => AreaRole::Worker,
        2 => AreaRole::Node,
        r => return Err(format!("role {r}")),
    };
    let count = |i: usize, max: usize, what: &str| -> Result<usize, String> {
        usize::try_from(word(i))
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{what} count {} (at most {max})", word(i)))
    };
    let n_handlers = count(6, MAX_HANDLERS, "handler")?;
    let n_conns = count(7, MAX_CONNECTIONS, "connection")?;
    let n_objects = count(8, MAX_OBJECTS, "object")?;
    let n_dead = count(9, MAX_DEAD, "dead worker")?;
    // More than any process can hold descriptors for: a scribble.
    let n_unlisted_conns = count(17, MAX_UNLISTED, "unlisted connection")? as u64;
    let n_unlisted_handlers = count(18, MAX_UNLISTED, "unlisted handler")? as u64;
    let name = |at: usize| -> Result<String, String> {
        let len = usize::try_from(word(at))
            .ok()
            .filter(|n| *n <= MAX_NAME)
            .ok_or_else(|| format!("name length {}", word(at)))?;
        let bytes = &buf[(at + 1) * 8..(at + 1) * 8 + len];
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| "name is not UTF-8".to_string())
    };
    let id_bytes = |at: usize| -> &[u8] { &buf[at * 8..at * 8 + 28] };
    let mut handlers = Vec::with_capacity(n_handlers);
    for i in 0..n_handlers {
        let at = HANDLERS_AT + i * HANDLER_WORDS;
        handlers.push(HandlerFigures {
            name: name(at)?,
            count: word(at + 9),
            cum_queue_ns: word(at + 10),
            max_queue_ns: word(at + 11),
            cum_exec_ns: word(at + 12),
            max_exec_ns: word(at + 13),
        });
    }
    let mut connections = Vec::with_capacity(n_conns);
    for i in 0..n_conns {
        let at = CONNS_AT + i * CONN_WORDS;
        let peer = WorkerId::from_bytes(id_bytes(at)).map_err(|e| e.to_string())?;
        let transport = match word(at + 4) {
            1 => TransportKind::Shm,
            2 => TransportKind::Tcp,
            t => return Err(format!("transport {t}")),
        };
        let size = |i: usize| -> Result<usize, String> {
            usize::try_from(word(i)).map_err(|_| format!("ring size {}", word(i)))
        };
        let ring = match word(at + 5) {
            0 => None,
            1 => {
                let r = RingFill {
                    rx_used: size(at + 6)?,
                    rx_capacity: size(at + 7)?,
                    tx_used: size(at + 8)?,
                    tx_capacity: size(at + 9)?,
                };
                if r.rx_used > r.rx_capacity || r.tx_used > r.tx_capacity {
                    return Err(format!("ring fill above its capacity: {r:?}"));
                }
                Some(r)
            }
            f => return Err(format!("ring flag {f}")),
        };
        connections.push(ConnectionFigures {
            peer,
            transport,
            ring,
            pending_send: word(at + 10),
            pid: match word(at + 11) {
                0 => None,
                p => Some(u32::try_from(p).map_err(|_| format!("peer pid {p}"))?),
            },
        });
    }
    let store = match word(10) {
        0 => None,
        1 => {
            let usize_at =
                |i: usize| usize::try_from(word(i)).map_err(|_| format!("store count {}", word(i)));
            let stats = TableStats {
                capacity: word(11),
                used: word(12),
                objects: usize_at(13)?,
                sealed: usize_at(14)?,
                evictable: usize_at(15)?,
                fallback_objects: usize_at(16)?,
                metadata_used: word(19),
                metadata_capacity: word(20),
            };
            if stats.used > stats.capacity {
                return Err(format!(
                    "store used {} above its capacity {}",
                    stats.used, stats.capacity
                ));
            }
            if stats.metadata_used > stats.metadata_capacity {
                return Err(format!(
                    "store metadata used {} above its capacity {}",
                    stats.metadata_used, stats.metadata_capacity
                ));
            }
            let mut largest = Vec::with_capacity(n_objects);
            for i in 0..n_objects {
                let at = OBJECTS_AT + i * OBJECT_WORDS;
                largest.push(ObjectFigures {
                    id: ObjectId::from_bytes(id_bytes(at)).map_err(|e| e.to_string())?,
                    state: match word(at + 4) {
                        1 => ObjectState::Unsealed,
                        2 => ObjectState::Sealed,
                        3 => ObjectState::DeletePending,
                        s => return Err(format!("object state {s}")),
                    },
                    data_size: word(at + 5),
                    holders: word(at + 6),
                    fallback: match word(at + 7) {
                        0 => false,
                        1 => true,
                        f => return Err(format!("fallback flag {f}")),
                    },
                });
            }
            Some(StoreFigures { stats, largest })
        }
        s => return Err(format!("store flag {s}")),
    };
    let mut dead = Vec::with_capacity(n_dead);
    for i in 0..n_dead {
        let at = DEAD_AT + i * DEAD_WORDS;
        let n = name(at + 6)?;
        dead.push(DeadWorker {
            worker_id: WorkerId::from_bytes(id_bytes(at)).map_err(|e| e.to_string())?,
            pid: u32::try_from(word(at + 4)).map_err(|_| format!("pid {}", word(at + 4)))?,
            name: (!n.is_empty()).then_some(n),
            seen_dead_unix_ms: word(at + 5),
        });
    }
    Ok(AreaSnapshot {
        pid,
        role,
        updated_unix_ms: word(5),
        handlers,
        connections,
        connections_unlisted: n_unlisted_conns,
        handlers_unlisted: n_unlisted_handlers,
        store,
        dead,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    impl StatsArea {
        /// Overwrites payload word `at` in the file; returns the old value.
        fn poke(&self, at: usize, v: u64) -> u64 {
            let off = self.payload_offset + (at * 8) as u64;
            let mut old = [0u8; 8];
            self.file.read_exact_at(&mut old, off).unwrap();
            self.file.write_all_at(&v.to_le_bytes(), off).unwrap();
            u64::from_le_bytes(old)
        }
    }

    fn sample() -> AreaSnapshot {
        let mut s = AreaSnapshot::new(AreaRole::Node);
        s.handlers.push(HandlerFigures {
            name: "app.f".into(),
            count: 3,
            cum_queue_ns: 30,
            max_queue_ns: 20,
            cum_exec_ns: 300,
            max_exec_ns: 200,
        });
        s.handlers.push(HandlerFigures {
            name: "é".repeat(40), // 80 bytes: cut at a character boundary
            ..Default::default()
        });
        s.connections.push(ConnectionFigures {
            peer: WorkerId::from_array([7; 28]),
            pid: Some(4242),
            transport: TransportKind::Shm,
            ring: Some(RingFill {
                rx_used: 16,
                rx_capacity: 4096,
                tx_used: 0,
                tx_capacity: 4096,
            }),
            pending_send: 0,
        });
        s.store = Some(StoreFigures {
            stats: TableStats {
                capacity: 1 << 20,
                used: 128,
                objects: 1,
                sealed: 1,
                evictable: 1,
                fallback_objects: 0,
                metadata_used: 300,
                metadata_capacity: 64 << 20,
            },
            largest: vec![ObjectFigures {
                id: ObjectId::from_array([9; 28]),
                state: ObjectState::Sealed,
                data_size: 100,
                holders: 2,
                fallback: false,
            }],
        });
        s.dead.push(DeadWorker {
            worker_id: WorkerId::from_array([5; 28]),
            pid: 42,
            name: Some("w5".into()),
            seen_dead_unix_ms: 1,
        });
        s
    }

    #[test]
    fn publish_then_read_round_trips_and_hostile_words_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let session = Session::open_in(tmp.path().join("root"), "area").unwrap();
        let id = WorkerId::from_array([1; 28]);
        let mut area = StatsArea::create(&session, &id).unwrap();
        assert_eq!(area.name(), area_name(std::process::id(), &id));
        let snap = sample();
        area.publish(&snap);
        let got = read_area(&session, area.name()).unwrap();
        assert!(got.updated_unix_ms > 0);
        assert_eq!(got.handlers[0], snap.handlers[0]);
        assert_eq!(got.handlers[1].name, "é".repeat(32));
        assert_eq!(got.connections, snap.connections);
        assert_eq!(got.store, snap.store);
        assert_eq!(got.dead, snap.dead);
        assert_eq!(got.role, AreaRole::Node);

        // Hostile words, written into the file as another process would:
        // each is reported, none panics.
        for (at, v) in [
            (6, (MAX_HANDLERS + 1) as u64),
            (HANDLERS_AT, 65),
            (CONNS_AT + 4, 9),
            (CONNS_AT + 6, 1 << 40),
            (CONNS_AT + 11, 1 << 40),
            (12, u64::MAX),
            (17, 1_000_000_000_000),
            (18, (MAX_UNLISTED + 1) as u64),
            (OBJECTS_AT + 4, 0),
            (4, 7),
            (1, 2),
            (0, 0),
        ] {
            let old = area.poke(at, v);
            let e = read_area(&session, area.name()).unwrap_err();
            assert!(matches!(e, AreaError::Invalid { .. }), "word {at}: {e}");
            area.poke(at, old);
        }
        // Bad UTF-8 in a name.
        let old = area.poke(HANDLERS_AT + 1, u64::MAX);
        assert!(read_area(&session, area.name()).is_err());
        area.poke(HANDLERS_AT + 1, old);
        // Stuck odd sequence: busy, not a hang.
        let seq = area.poke(SEQ, 0);
        area.poke(SEQ, seq + 1);
        assert!(matches!(
            read_area(&session, area.name()),
            Err(AreaError::Busy(_))
        ));
        // The writer recovers from it.
        area.publish(&snap);
        assert!(read_area(&session, area.name()).is_ok());
        // A scribbled segment header is named as such, not "busy".
        area.file.write_all_at(&[0xA5; 64], 0).unwrap();
        let e = read_area(&session, area.name()).unwrap_err();
        assert!(!matches!(e, AreaError::Busy(_)), "{e}");
        // ... and the next publish writes the header again: readable.
        area.publish(&snap);
        assert_eq!(read_area(&session, area.name()).unwrap().dead, snap.dead);
        // An intact area costs no rewrite.
        assert!(!area.heal_header());
        // Truncated by another process (to nothing, into the header, into
        // the payload), zeroed, or grown: the writer keeps running (no
        // SIGBUS), the reader reports an error, never a panic, and the
        // next publish makes the area whole again.
        let total = area.total_size;
        type Damage<'a> = (&'a str, &'a dyn Fn(&std::fs::File));
        let damage: [Damage; 6] = [
            ("truncated to 0", &|f| f.set_len(0).unwrap()),
            ("truncated to 5 bytes", &|f| f.set_len(5).unwrap()),
            ("truncated into the payload", &|f| f.set_len(5000).unwrap()),
            ("header zeroed", &|f| {
                f.write_all_at(&[0; HEADER_SIZE], 0).unwrap()
            }),
            ("init word scribbled", &|f| {
                f.write_all_at(&[7; 4], 44).unwrap()
            }),
            ("grown", &|f| f.set_len(total + 4096).unwrap()),
        ];
        for (what, hurt) in damage {
            hurt(&area.file);
            assert!(read_area(&session, area.name()).is_err(), "{what}");
            area.publish(&snap);
            let got = read_area(&session, area.name())
                .unwrap_or_else(|e| panic!("{what}: not healed: {e}"));
            assert_eq!(got.handlers[0], snap.handlers[0], "{what}");
            assert_eq!(area.file.metadata().unwrap().len(), total, "{what}");
        }
        assert_eq!(
            HeaderSnapshot::from_bytes(&area.header),
            area.seg.header(),
            "the header image round-trips"
        );
        assert!(matches!(
            read_area(&session, "stats-0-0000000000000000"),
            Err(AreaError::Missing(_))
        ));
        drop(area);
        session.remove_all().unwrap();
    }
}
