//! The shared index on real mappings: the service's [`ServiceIndex`] (the
//! index segment it writes, every client's reference-slot segment it reads)
//! and the client's [`ClientIndex`] (the index mapped read-only, its own
//! slots read-write). The protocol itself is in [`super::index`].
//!
//! Both kinds of segment are sealed memfds (no name in the session: a
//! same-user process cannot truncate them under a mapping); the service
//! hands them to each client over its connection (`super::handoff`).

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::error::StoreError;
use super::index::{
    holds, id_words, refs_held, release_counted, uses_batch, IndexWords, IndexWriter, Lookup,
    Record, RefSlots, Snapshot, Tally, ENTRY_BYTES, ENTRY_WORDS, INDEX_HEADER_BYTES, INDEX_MAGIC,
    TOUCHED_WORDS,
};
use super::table::{ClientId, SharedIndex};
use crate::ids::ObjectId;
use crate::shm::AnonSegment;
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// Most index entries [`super::StoreConfig::new`] picks (32 Ki: a 4 MiB
/// index, 256 KiB of slots per client).
pub const DEFAULT_INDEX_ENTRIES: u32 = 1 << 15;

/// Header word (8-byte index into the index payload): the service's state.
const H_STATE: usize = 2;
/// Header word: the service's heartbeat (milliseconds of the host's
/// `CLOCK_BOOTTIME`: see [`now_ms`]).
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
/// A heartbeat further ahead of the client's clock than this is stale too:
/// the clock is the host's, shared by service and client, so a beat can
/// only be ahead by the time between the service's reading and the
/// client's (none, in practice); anything more was written by someone else
/// (the index is shared memory: hostile input), and a beat far in the
/// future must not keep a dead service looking live.
pub const BEAT_AHEAD_SLACK_MS: u64 = 100;

/// Milliseconds of the host's `CLOCK_BOOTTIME`: one clock for every
/// process of the host, never stepped (an NTP step or `settimeofday`
/// moves only `CLOCK_REALTIME`; the wall clock once kept a dead service's
/// index "fresh" for as long as a client's clock was set back), and
/// counting through suspend. The beat lives in the shared memory of a
/// running service, so it is never compared across a reboot.
fn now_ms() -> u64 {
    crate::sys::fs::boottime_ms()
}

/// Whether a heartbeat `beat` read from the index is fresh at `now` (both
/// [`now_ms`]): at most [`STALE_AFTER_MS`] old and at most
/// [`BEAT_AHEAD_SLACK_MS`] ahead.
fn beat_fresh(beat: u64, now: u64) -> bool {
    if beat > now {
        beat - now <= BEAT_AHEAD_SLACK_MS
    } else {
        now - beat <= STALE_AFTER_MS
    }
}

/// Payload bytes of an index of `entries` entries.
fn index_len(entries: u32) -> usize {
    INDEX_HEADER_BYTES + entries as usize * ENTRY_BYTES
}

/// Bytes before the first reference slot in a client's slot segment: a
/// line of its own for the client's total (word 0) and its touched-group
/// bits (words 1..=[`TOUCHED_WORDS`]; [`RefSlots`]), which the service
/// reads for every delete, eviction and seal and which stays in its cache
/// while the client neither takes nor releases.
const SLOTS_OFFSET: usize = 64;

/// Payload bytes of a client's slot segment for an index of `entries`.
fn slots_len(entries: u32) -> usize {
    SLOTS_OFFSET + entries as usize * 8
}

/// A client's slots (and its total) in its slot segment `seg`.
fn ref_slots(seg: &AnonSegment, entries: u32) -> Option<RefSlots<'_>> {
    let total = &words(seg, 0, 1)?[0];
    Some(RefSlots::new(
        words(seg, SLOTS_OFFSET, entries as usize)?,
        total,
        words(seg, 8, TOUCHED_WORDS)?,
    ))
}

/// `count` atomic words at byte `offset` of `seg`'s payload, after checking
/// they lie inside it.
fn words(seg: &AnonSegment, offset: usize, count: usize) -> Option<&[AtomicU64]> {
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

/// Reference-slot memfds made by [`SharedIndex::add_client`], waiting for
/// the service to hand them to their clients (taken by
/// [`ServiceIndex::take_slots`]).
pub type SlotOutbox = Arc<Mutex<Vec<(ClientId, OwnedFd)>>>;

/// The service's side: the index segment (read-write, its only writer),
/// its private `seq`s and records, and one reference-slot segment per
/// client (created by the service at the client's hello, written by the
/// client).
pub struct ServiceIndex {
    tag: String,
    index: Arc<AnonSegment>,
    entries: u32,
    key: u64,
    writer: IndexWriter,
    records: Vec<Record>,
    clients: Vec<(ClientId, AnonSegment)>,
    outbox: SlotOutbox,
}

impl std::fmt::Debug for ServiceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceIndex")
            .field("tag", &self.tag)
            .field("entries", &self.entries)
            .field("clients", &self.clients.len())
            .finish()
    }
}

impl ServiceIndex {
    /// Creates the index memfd (labelled `sidx-<tag>`) of `entries`
    /// entries (a power of two), every entry empty; clients' slot memfds
    /// are labelled `sref-<tag>-<client>`.
    pub fn create(tag: &str, entries: u32) -> Result<Self, StoreError> {
        if entries == 0 || !entries.is_power_of_two() || entries > 1 << 22 {
            return Err(StoreError::InvalidConfig(
                "index entries must be a power of two, at most 4 Mi",
            ));
        }
        let name = format!("sidx-{tag}");
        let seg = AnonSegment::create(&name, index_len(entries))?;
        {
            let h =
                words(&seg, 0, 2).ok_or(StoreError::InvalidConfig("index segment too small"))?;
            // Relaxed: no client has the segment yet (it is handed over
            // later, through a socket, which orders these stores).
            h[0].store(INDEX_MAGIC, Ordering::Relaxed);
            h[1].store(u64::from(entries), Ordering::Relaxed);
        }
        let index = Arc::new(seg);
        let key = random_key()?;
        let writer = {
            let w = words(&index, INDEX_HEADER_BYTES, entries as usize * ENTRY_WORDS)
                .ok_or(StoreError::InvalidConfig("index segment too small"))?;
            let iw = IndexWords::new(w, entries, key)
                .ok_or(StoreError::InvalidConfig("index geometry"))?;
            IndexWriter::new(&iw)
        };
        Ok(Self {
            tag: tag.to_owned(),
            index,
            entries,
            key,
            writer,
            records: vec![Record::EMPTY; entries as usize],
            clients: Vec::new(),
            outbox: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The index segment's label (`/proc/<pid>/fd` listings and logs).
    pub fn segment_name(&self) -> String {
        format!("sidx-{}", self.tag)
    }

    /// The index memfd (to hand to clients).
    pub fn segment(&self) -> Arc<AnonSegment> {
        Arc::clone(&self.index)
    }

    /// Where [`SharedIndex::add_client`] leaves each new client's slot
    /// memfd for the service to hand over.
    pub fn outbox(&self) -> SlotOutbox {
        Arc::clone(&self.outbox)
    }

    /// Takes the slot memfd made for `client` out of `outbox`.
    pub fn take_slots(outbox: &SlotOutbox, client: ClientId) -> Option<OwnedFd> {
        let mut o = outbox.lock().unwrap_or_else(|p| p.into_inner());
        let i = o.iter().position(|(c, _)| *c == client)?;
        Some(o.swap_remove(i).1)
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
    /// slot views (disjoint borrows). The views are made as they are
    /// walked (nothing is allocated per call: a put or delete must not
    /// cost a vector of every client's views).
    fn parts(
        &mut self,
    ) -> (
        IndexWords<'_>,
        &mut IndexWriter,
        &mut Vec<Record>,
        impl Iterator<Item = RefSlots<'_>> + '_,
    ) {
        let w = words(
            &self.index,
            INDEX_HEADER_BYTES,
            self.entries as usize * ENTRY_WORDS,
        )
        .expect("checked at creation");
        let iw = IndexWords::new(w, self.entries, self.key).expect("checked at creation");
        let entries = self.entries;
        let slots = self
            .clients
            .iter()
            .filter_map(move |(_, s)| ref_slots(s, entries));
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

    fn try_evict_batch(&mut self, pos: &[u32]) -> Vec<bool> {
        let (iw, writer, records, slots) = self.parts();
        let batch: Vec<(u32, Record)> = pos.iter().map(|&p| (p, records[p as usize])).collect();
        let done = writer.try_evict_batch(&iw, slots, &batch);
        for (&p, &d) in pos.iter().zip(&done) {
            if d {
                records[p as usize] = Record::EMPTY;
            }
        }
        done
    }

    fn uses_batch(&self, pos: &[u32]) -> Vec<u64> {
        uses_batch(
            self.clients
                .iter()
                .filter_map(|(_, s)| ref_slots(s, self.entries)),
            pos,
        )
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

    fn reap_batch(&mut self, pos: &[u32]) -> Vec<bool> {
        let (iw, writer, records, slots) = self.parts();
        let done = writer.reap_batch(&iw, slots, pos);
        for (&p, &d) in pos.iter().zip(&done) {
            if d {
                records[p as usize] = Record::EMPTY;
            }
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
                .filter_map(|(_, s)| ref_slots(s, self.entries)),
            pos,
        )
    }

    fn refs(&self, pos: u32) -> u64 {
        refs_held(
            self.clients
                .iter()
                .filter_map(|(_, s)| ref_slots(s, self.entries)),
            pos,
        )
    }

    fn add_client(&mut self, client: ClientId) -> Result<String, StoreError> {
        let name = format!("sref-{}-{client}", self.tag);
        let seg = AnonSegment::create(&name, slots_len(self.entries))?;
        let fd = seg
            .fd()
            .try_clone_to_owned()
            .map_err(|e| StoreError::io("duplicate a slot memfd", e))?;
        self.outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((client, fd));
        self.clients.push((client, seg));
        Ok(name)
    }

    fn remove_client(&mut self, client: ClientId) {
        // Dropping our mapping and descriptor: the client's mapping lives
        // on, but we no longer read it: its references are released.
        self.clients.retain(|(c, _)| *c != client);
        if let Some(fd) = Self::take_slots(&self.outbox, client) {
            drop(fd);
        }
    }
}

/// The service's liveness words in the index header: a heartbeat it
/// refreshes while it runs and a state it sets to "closed" as it stops.
#[derive(Debug)]
pub struct IndexLiveness {
    seg: Arc<AnonSegment>,
    last: u64,
}

impl IndexLiveness {
    fn header(&self, word: usize) -> &AtomicU64 {
        &words(&self.seg, 0, INDEX_HEADER_BYTES / 8).expect("header in the payload")[word]
    }

    /// Refreshes the heartbeat (at most every [`BEAT_EVERY_MS`]). Compares
    /// with the last beat this service wrote (private), never with the
    /// shared word, which anyone holding the memfd can write: a scribbled
    /// beat is written over at the next refresh.
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
    /// Entries.
    pub entries: u32,
    /// Check key.
    pub key: u64,
}

/// The client's side: the index mapped read-only and its own slots.
pub struct ClientIndex {
    index: Arc<AnonSegment>,
    refs: AnonSegment,
    entries: u32,
    key: u64,
    /// What this client holds at each entry, in private memory (a
    /// [`Tally`]): the slots are what the service reads, and anyone who
    /// opens their memfd can write them; [`ClientIndex::repair`] lowers
    /// them back to this.
    held: Box<[AtomicU32]>,
    /// The sum of `held` (the tally's total): what
    /// [`repair_total`](super::index::repair_total) puts the shared total
    /// back to.
    held_total: AtomicU64,
    /// The touched-group bits this client set (private copy):
    /// [`repair_total`](super::index::repair_total) sets back any that
    /// another process cleared in the shared line.
    touched: [AtomicU64; TOUCHED_WORDS],
    /// Whether the last [`ClientIndex::repair`] found the total below the
    /// private total (raised only when two in a row do).
    total_was_low: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ClientIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIndex")
            .field("entries", &self.entries)
            .finish()
    }
}

impl ClientIndex {
    /// Maps the index memfd (read-only) and this client's slot memfd
    /// (both received from the service over the connection), after
    /// checking that each is sealed against resizing and has the size
    /// `info` (the welcome) implies. An unsealed descriptor is refused: its
    /// holder could truncate it under the mapping.
    pub fn open(index: OwnedFd, refs: OwnedFd, info: &IndexInfo) -> Result<Self, StoreError> {
        if info.entries == 0 || !info.entries.is_power_of_two() || info.entries > 1 << 22 {
            return Err(StoreError::BadReply("bad index geometry"));
        }
        let index = AnonSegment::from_fd_mode(index, index_len(info.entries), false)?;
        let refs = AnonSegment::from_fd_mode(refs, slots_len(info.entries), true)?;
        {
            let h = words(&index, 0, 2).ok_or(StoreError::BadReply("index too small"))?;
            // Relaxed: written before the hand-off (ordered by the socket).
            if h[0].load(Ordering::Relaxed) != INDEX_MAGIC
                || h[1].load(Ordering::Relaxed) != u64::from(info.entries)
            {
                return Err(StoreError::BadReply(
                    "index header does not match the welcome",
                ));
            }
        }
        Ok(Self {
            index: Arc::new(index),
            refs,
            entries: info.entries,
            key: info.key,
            held: (0..info.entries).map(|_| AtomicU32::new(0)).collect(),
            held_total: AtomicU64::new(0),
            touched: std::array::from_fn(|_| AtomicU64::new(0)),
            total_was_low: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn views(&self) -> (IndexWords<'_>, RefSlots<'_>) {
        let w = words(
            &self.index,
            INDEX_HEADER_BYTES,
            self.entries as usize * ENTRY_WORDS,
        )
        .expect("checked at open");
        (
            IndexWords::new(w, self.entries, self.key).expect("checked at open"),
            ref_slots(&self.refs, self.entries).expect("checked at open"),
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
        state == STATE_RUNNING && beat_fresh(beat, now_ms())
    }

    /// Looks `id` up.
    pub fn lookup(&self, id: &ObjectId) -> Lookup {
        self.views().0.lookup(&id_words(id.as_bytes()))
    }

    /// Takes a reference on the object of `snap` (see
    /// [`IndexWords::try_acquire`]). A take that failed because another
    /// process wrote this client's total or slot (a count no client
    /// reaches) puts them back from the private tally at once
    /// ([`repair_total`](super::index::repair_total),
    /// [`repair_slot`](super::index::repair_slot)) and tries once more.
    pub fn try_acquire(&self, snap: &Snapshot) -> bool {
        let (iw, slots) = self.views();
        let tally = self.tally();
        if iw.try_acquire_counted(&slots, &tally, snap) {
            return true;
        }
        // A lowered slot's `tell` is left to the service's reap backstop
        // (this call sends nothing).
        let fixed = super::index::repair_total(&slots, &tally, true)
            | super::index::repair_slot(&iw, &slots, &tally, snap.pos).is_some();
        fixed && iw.try_acquire_counted(&slots, &tally, snap)
    }

    /// Gives back a reference at `pos`; true if the service should be told.
    pub fn release(&self, pos: u32) -> bool {
        let (iw, slots) = self.views();
        release_counted(&iw, &slots, &self.tally(), pos)
    }

    /// Lowers every slot of this client whose count is above what the
    /// client holds (its private tally) back to that count
    /// ([`repair_slot`](super::index::repair_slot), lock-free: takes and
    /// releases go on meanwhile): a process that opened the slot memfd
    /// through `/proc/<pid>/fd` and raised it would otherwise pin every
    /// object deleted at those entries for as long as this client lives.
    /// A scan of 8 + 4 bytes per index entry (384 KiB with a default
    /// store's most entries). The client's total is put back the same way
    /// ([`repair_total`](super::index::repair_total)): one raised makes the
    /// service read this client's slots on every delete.
    ///
    /// Returns how many slots (and the total, counting as one) were
    /// lowered and whether the service should be told (a pending delete
    /// may now complete: send `Request::Reap`).
    pub fn repair(&self) -> (usize, bool) {
        let (iw, slots) = self.views();
        let tally = self.tally();
        let (mut fixed, mut tell) = (0, false);
        for pos in 0..self.entries {
            if let Some(t) = super::index::repair_slot(&iw, &slots, &tally, pos) {
                fixed += 1;
                tell |= t;
            }
        }
        // A total below the private one is raised only when the last
        // repair found it low too: once, it may be an honest take or
        // release in flight.
        let low = super::index::total_below_tally(&slots, &tally);
        let raise = low && self.total_was_low.swap(true, Ordering::Relaxed);
        if !low {
            self.total_was_low.store(false, Ordering::Relaxed);
        }
        if super::index::repair_total(&slots, &tally, raise) {
            fixed += 1;
        }
        (fixed, tell)
    }

    fn tally(&self) -> Tally<'_> {
        Tally::new(&self.held, &self.held_total, &self.touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heartbeat is in `CLOCK_BOOTTIME` milliseconds (not the wall
    /// clock, which steps), and a beat ahead of the clock by more than the
    /// slack is stale, however far ahead.
    #[test]
    fn the_beat_is_boottime_and_one_far_ahead_is_stale() {
        let index = ServiceIndex::create("beat-unit", 64).unwrap();
        let mut l = index.liveness();
        l.beat();
        let beat = l.header(H_BEAT).load(Ordering::Relaxed);
        let boot = crate::sys::fs::boottime_ms();
        assert!(
            beat <= boot && boot - beat < 5_000,
            "beat {beat}, boottime {boot}"
        );
        let now = now_ms();
        assert!(beat_fresh(now, now));
        assert!(beat_fresh(now - STALE_AFTER_MS, now));
        assert!(!beat_fresh(now - STALE_AFTER_MS - 1, now));
        assert!(beat_fresh(now + BEAT_AHEAD_SLACK_MS, now));
        assert!(!beat_fresh(now + BEAT_AHEAD_SLACK_MS + 1, now));
        assert!(!beat_fresh(now + 3_600_000, now));
        assert!(!beat_fresh(u64::MAX, now));
    }
}
