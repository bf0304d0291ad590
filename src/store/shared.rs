//! The shared index on real mappings: the service's [`ServiceIndex`] (the
//! index segment it writes, every client's reference-slot segment it reads)
//! and the client's [`ClientIndex`] (the index mapped read-only, its own
//! slots read-write). The protocol itself is in [`super::index`].

use std::sync::Arc;

use super::error::StoreError;
use super::index::{
    holds, id_words, release, IndexWords, IndexWriter, Lookup, Record, RefSlots, Snapshot,
    ENTRY_BYTES, ENTRY_WORDS, INDEX_HEADER_BYTES, INDEX_MAGIC,
};
use super::table::{ClientId, SharedIndex};
use crate::ids::ObjectId;
use crate::shm::{kind, Segment, Session};
use crate::sync::{AtomicU64, Ordering};

/// Most index entries [`super::StoreConfig::new`] picks (32 Ki: a 4 MiB
/// index, 256 KiB of slots per client).
pub const DEFAULT_INDEX_ENTRIES: u32 = 1 << 15;

/// Header word (8-byte index into the index payload): the service's state.
const H_STATE: usize = 2;
/// Header word: the service's heartbeat (wall-clock milliseconds).
const H_BEAT: usize = 3;
/// `H_STATE`: serving.
const STATE_RUNNING: u64 = 1;
/// `H_STATE`: shut down (written as the service stops).
const STATE_CLOSED: u64 = 2;
/// A heartbeat older than this makes clients stop using the index (a
/// killed service cannot say it stopped): their calls go to the service,
/// whose connection then reports the death.
pub const STALE_AFTER_MS: u64 = 1000;
/// How often the service refreshes its heartbeat, at most.
pub const BEAT_EVERY_MS: u64 = 50;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Payload bytes of an index of `entries` entries.
fn index_len(entries: u32) -> usize {
    INDEX_HEADER_BYTES + entries as usize * ENTRY_BYTES
}

/// `count` atomic words at byte `offset` of `seg`'s payload, after checking
/// they lie inside it.
fn words(seg: &Segment, offset: usize, count: usize) -> Option<&[AtomicU64]> {
    let end = count.checked_mul(8)?.checked_add(offset)?;
    if end > seg.payload_len() || offset % 8 != 0 {
        return None;
    }
    // SAFETY: `offset + 8·count ≤ payload_len` (checked), the payload is
    // page aligned so `offset % 8 == 0` gives 8-byte alignment; the bytes
    // are initialised (a mapping of a file); `AtomicU64` has the size and
    // alignment of `u64` and any bit pattern is valid; every access goes
    // through the atomics (other processes write the same memory), and the
    // slice borrows `seg`, which keeps the mapping alive. On a read-only
    // mapping only loads are made (clients never store into the index).
    Some(unsafe {
        std::slice::from_raw_parts(seg.payload_ptr().add(offset).cast::<AtomicU64>(), count)
    })
}

fn random_key() -> Result<u64, StoreError> {
    let id = crate::ids::WorkerId::try_from_random()
        .map_err(|_| StoreError::InvalidConfig("no random source for the index key"))?;
    Ok(u64::from_le_bytes(
        id.as_bytes()[..8].try_into().expect("8 bytes"),
    ))
}

/// The service's side: the index segment (read-write, its only writer),
/// its private `seq`s and records, and one reference-slot segment per
/// client (created by the service at the client's hello, written by the
/// client).
pub struct ServiceIndex {
    session: Session,
    tag: String,
    index: Arc<Segment>,
    entries: u32,
    key: u64,
    writer: IndexWriter,
    records: Vec<Record>,
    clients: Vec<(ClientId, Segment)>,
}

impl std::fmt::Debug for ServiceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIndex")
            .field("segment", &self.index.name())
            .field("entries", &self.entries)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ServiceIndex {
    /// Creates index segment `sidx-<tag>` of `entries` entries (a power
    /// of two) in `session`, every entry empty; clients' slot segments will
    /// be `sref-<tag>-<client>`.
    pub fn create(session: &Session, tag: &str, entries: u32) -> Result<Self, StoreError> {
        if entries == 0 || !entries.is_power_of_two() || entries > 1 << 22 {
            return Err(StoreError::InvalidConfig(
                "index entries must be a power of two, at most 4 Mi",
            ));
        }
        let name = format!("sidx-{tag}");
        let mut seg = Segment::create(session, &name, index_len(entries), kind::STORE_INDEX)?;
        seg.payload_mut()[..8].copy_from_slice(&INDEX_MAGIC.to_le_bytes());
        seg.payload_mut()[8..12].copy_from_slice(&entries.to_le_bytes());
        let index = Arc::new(seg.publish());
        let key = random_key()?;
        let writer = {
            let w = words(&index, INDEX_HEADER_BYTES, entries as usize * ENTRY_WORDS)
                .ok_or(StoreError::InvalidConfig("index segment too small"))?;
            let iw = IndexWords::new(w, entries, key)
                .ok_or(StoreError::InvalidConfig("index geometry"))?;
            IndexWriter::new(&iw)
        };
        Ok(Self {
            session: session.clone(),
            tag: tag.to_owned(),
            index,
            entries,
            key,
            writer,
            records: vec![Record::EMPTY; entries as usize],
            clients: Vec::new(),
        })
    }

    /// The index segment's name.
    pub fn segment_name(&self) -> &str {
        self.index.name()
    }

    /// Number of entries.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The check key (told to clients over their connection).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The handle the service's loop keeps to say it is alive (and, at
    /// the end, that it stopped).
    pub fn liveness(&self) -> IndexLiveness {
        let l = IndexLiveness {
            seg: Arc::clone(&self.index),
            last: 0,
        };
        l.header(H_STATE)
            // Release: pairs with the Acquire load in ClientIndex::live.
            .store(STATE_RUNNING, Ordering::Release);
        l
    }

    /// Splits self into the index words, the writer, the records and the
    /// slot views (disjoint borrows).
    fn parts(
        &mut self,
    ) -> (
        IndexWords<'_>,
        &mut IndexWriter,
        &mut Vec<Record>,
        Vec<RefSlots<'_>>,
    ) {
        let w = words(
            &self.index,
            INDEX_HEADER_BYTES,
            self.entries as usize * ENTRY_WORDS,
        )
        .expect("checked at creation");
        let iw = IndexWords::new(w, self.entries, self.key).expect("checked at creation");
        let slots = self
            .clients
            .iter()
            .filter_map(|(_, s)| words(s, 0, self.entries as usize).map(RefSlots::new))
            .collect();
        (iw, &mut self.writer, &mut self.records, slots)
    }
}

impl SharedIndex for ServiceIndex {
    fn publish(
        &mut self,
        id: &ObjectId,
        offset: u64,
        data_size: u64,
        metadata: &[u8],
    ) -> Option<u32> {
        let rec = Record::sealed(id.as_bytes(), offset, data_size, metadata)?;
        let (iw, writer, records, _) = self.parts();
        let pos = writer.publish(&iw, &rec)?;
        records[pos as usize] = rec;
        Some(pos)
    }

    fn try_evict(&mut self, pos: u32) -> bool {
        let (iw, writer, records, slots) = self.parts();
        let rec = records[pos as usize];
        let done = writer.try_evict(&iw, slots, pos, &rec);
        if done {
            records[pos as usize] = Record::EMPTY;
        }
        done
    }

    fn retire(&mut self, pos: u32) -> bool {
        let (iw, writer, records, slots) = self.parts();
        let rec = records[pos as usize];
        let done = writer.retire(&iw, slots, pos, &rec);
        if done {
            records[pos as usize] = Record::EMPTY;
        }
        done
    }

    fn reap(&mut self, pos: u32) -> bool {
        let (iw, writer, records, slots) = self.parts();
        let done = writer.reap(&iw, slots, pos);
        if done {
            records[pos as usize] = Record::EMPTY;
        }
        done
    }

    fn clear(&mut self, pos: u32) {
        let (iw, writer, records, _) = self.parts();
        writer.clear(&iw, pos);
        records[pos as usize] = Record::EMPTY;
    }

    fn holds(&self, pos: u32) -> (u64, u64) {
        holds(
            self.clients
                .iter()
                .filter_map(|(_, s)| words(s, 0, self.entries as usize).map(RefSlots::new)),
            pos,
        )
    }

    fn add_client(&mut self, client: ClientId) -> Result<String, StoreError> {
        let name = format!("sref-{}-{client}", self.tag);
        let seg = Segment::create(
            &self.session,
            &name,
            self.entries as usize * 8,
            kind::STORE_REFS,
        )?
        .publish();
        self.clients.push((client, seg));
        Ok(name)
    }

    fn remove_client(&mut self, client: ClientId) {
        // Dropping the segment unlinks it (we created it); the client's
        // mapping outlives the name but we no longer read it: its
        // references are released.
        self.clients.retain(|(c, _)| *c != client);
    }
}

/// The service's liveness words in the index header: a heartbeat it
/// refreshes while it runs and a state it sets to "closed" as it stops.
#[derive(Debug)]
pub struct IndexLiveness {
    seg: Arc<Segment>,
    last: u64,
}

impl IndexLiveness {
    fn header(&self, word: usize) -> &AtomicU64 {
        &words(&self.seg, 0, INDEX_HEADER_BYTES / 8).expect("header in the payload")[word]
    }

    /// Refreshes the heartbeat (at most every [`BEAT_EVERY_MS`]).
    pub fn beat(&mut self) {
        let now = now_ms();
        if now.saturating_sub(self.last) >= BEAT_EVERY_MS || now < self.last {
            self.last = now;
            // Relaxed: a timestamp; nothing is published through it.
            self.header(H_BEAT).store(now, Ordering::Relaxed);
        }
    }

    /// Says the service stopped: clients stop using the index.
    pub fn close(&self) {
        // Release: pairs with the Acquire load in ClientIndex::live.
        self.header(H_STATE).store(STATE_CLOSED, Ordering::Release);
    }
}

/// What the client learns about the index in its welcome.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// The index segment's name.
    pub index_segment: String,
    /// Entries.
    pub entries: u32,
    /// Check key.
    pub key: u64,
    /// This client's reference-slot segment.
    pub refs_segment: String,
}

/// The client's side: the index mapped read-only and its own slots.
pub struct ClientIndex {
    index: Arc<Segment>,
    refs: Segment,
    entries: u32,
    key: u64,
}

impl std::fmt::Debug for ClientIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIndex")
            .field("entries", &self.entries)
            .finish()
    }
}

impl ClientIndex {
    /// Maps the index (read-only) and this client's slots, checking their
    /// sizes against `info` (from the service's welcome).
    pub fn open(session: &Session, info: &IndexInfo) -> Result<Self, StoreError> {
        if info.entries == 0 || !info.entries.is_power_of_two() || info.entries > 1 << 22 {
            return Err(StoreError::BadReply("bad index geometry"));
        }
        let index = Segment::open_read_only(session, &info.index_segment, kind::STORE_INDEX)?;
        let refs = Segment::open(session, &info.refs_segment, kind::STORE_REFS)?;
        if index.payload_len() < index_len(info.entries)
            || refs.payload_len() < info.entries as usize * 8
        {
            return Err(StoreError::BadReply(
                "index or slots smaller than announced",
            ));
        }
        Ok(Self {
            index: Arc::new(index),
            refs,
            entries: info.entries,
            key: info.key,
        })
    }

    fn views(&self) -> (IndexWords<'_>, RefSlots<'_>) {
        let w = words(
            &self.index,
            INDEX_HEADER_BYTES,
            self.entries as usize * ENTRY_WORDS,
        )
        .expect("checked at open");
        let slots = words(&self.refs, 0, self.entries as usize).expect("checked at open");
        (
            IndexWords::new(w, self.entries, self.key).expect("checked at open"),
            RefSlots::new(slots),
        )
    }

    /// Whether the service is serving (not closed, heartbeat fresh): only
    /// then is the index used.
    pub fn live(&self) -> bool {
        let Some(h) = words(&self.index, 0, INDEX_HEADER_BYTES / 8) else {
            return false;
        };
        // Acquire: pairs with the Release stores of the state in
        // ServiceIndex::liveness and IndexLiveness::close.
        let state = h[H_STATE].load(Ordering::Acquire);
        // Relaxed: a timestamp, compared with our clock only.
        let beat = h[H_BEAT].load(Ordering::Relaxed);
        state == STATE_RUNNING && now_ms().saturating_sub(beat) <= STALE_AFTER_MS
    }

    /// Looks `id` up.
    pub fn lookup(&self, id: &ObjectId) -> Lookup {
        self.views().0.lookup(&id_words(id.as_bytes()))
    }

    /// Takes a reference on the object of `snap` (see
    /// [`IndexWords::try_acquire`]).
    pub fn try_acquire(&self, snap: &Snapshot) -> bool {
        let (iw, slots) = self.views();
        iw.try_acquire(&slots, snap)
    }

    /// Gives back a reference at `pos`; true if the service should be told.
    pub fn release(&self, pos: u32) -> bool {
        let (iw, slots) = self.views();
        release(&iw, &slots, pos)
    }
}
