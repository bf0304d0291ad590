//! The shared object index: the fast path of `get` and `contains`.
//!
//! The service publishes every sealed arena object whose metadata fits
//! inline ([`INLINE_METADATA`] bytes) into a hash table of fixed-size
//! entries in its own segment (kind `SIDX`), which it alone writes and
//! clients map **read-only**. Each client has its own segment of reference
//! slots (kind `SREF`, one `u64` per index entry), which it alone writes and
//! the service reads. A `get` of an indexed object reads the entry
//! (seqlock), takes a reference in its own slot, re-checks the entry, and
//! maps the object — no message to the service. Dropping the buffer gives
//! the reference back in the slot.
//!
//! # Entry (16 words of 8 bytes, 128-byte aligned)
//!
//! | word | content |
//! | --- | --- |
//! | 0 | `seq`: even = stable, odd = being written (only the service writes) |
//! | 1..=4 | the object id (28 bytes, zero padded) |
//! | 5 | arena offset of the data |
//! | 6 | data size |
//! | 7 | state (low 8 bits: empty / sealed / delete pending) and metadata length (bits 8..16) |
//! | 8..=14 | inline metadata (56 bytes) |
//! | 15 | check word: a keyed mix of the key, the entry's position, `seq` and words 1..=14 |
//!
//! # Orderings (each pair named)
//!
//! * **Seqlock write** ([`IndexWords::write_entry`], service): `seq` odd
//!   (Relaxed), `fence(SeqCst)` (the seqlock's Release fence; Release would
//!   do, the Dekker fences below are the service's next ones), the words
//!   (Relaxed), `seq` even (Release). The number of words is the entry
//!   layout's ([`EntryLayout`]): 14 plus the check word in the store
//!   ([`FullEntry`]), 2 plus the check word in the loom models
//!   ([`ModelEntry`]); the orderings are the same.
//! * **Seqlock read** ([`IndexWords::read_entry`], client): `seq` (Acquire —
//!   pairs with the Release store of the even `seq`), the words (Relaxed),
//!   `fence(Acquire)` (pairs with the writer's fence: if a word came from a
//!   newer write, the second `seq` load sees that write's odd `seq` or
//!   later), `seq` again (Relaxed). Equal and even: a consistent snapshot.
//! * **Taking a reference** ([`IndexWords::try_acquire`], client) against
//!   **retracting an entry** ([`IndexWriter::try_evict`] /
//!   [`IndexWriter::retire`], service) is a Dekker pair: the client adds to
//!   its total (Relaxed) and its slot, `fence(SeqCst)`, loads `seq`; the
//!   service stores a new `seq`, `fence(SeqCst)`, and per client loads the
//!   total and, when it is not 0, the slot ([`refs_held`]). By the fences'
//!   total order at least one side sees the other: either the service sees
//!   the total and the reference (the object is held and stays), or the
//!   client sees the new `seq` and gives its reference back (slot, then
//!   total) without touching the object.
//! * **Releasing** ([`release`], client): `fetch_sub` of the slot, then of
//!   the total (both Release — pairing with the Acquire loads of the total
//!   and the slots in [`refs_held`] and [`holds`]: the client's reads of
//!   the object happen before the service frees it), then `fence(SeqCst)`
//!   and a load of the entry's state: against the service's "mark pending,
//!   `fence(SeqCst)`, load the totals and slots" of a delete, either the
//!   service sees the released slot (or a total of 0) and frees the object
//!   itself, or the client sees "delete pending" and tells the service (a
//!   `Reap` message).
//! * **The total** counts the client's references over all entries (low
//!   32 bits) and its takes (high 32 bits, wrapping): raised before a
//!   slot, the references lowered after it, so honestly its references
//!   are 0 only when every slot's count is. A delete reads one total per
//!   client and the slot only of a client whose total holds a reference —
//!   a client that holds nothing costs one load of a line it has not
//!   written since (cached while it is idle), not one slot line per
//!   entry. The uses (LRU) are in the slots; [`holds`] reads the slots of
//!   every client that ever took a reference (total not 0).
//! * **The touched groups**: beside the total, one bit per group of
//!   consecutive entries ([`RefSlots`]), set by a take (Relaxed
//!   `fetch_or`, only when not yet set) before the total's increment and
//!   never cleared. [`refs_held`] and [`holds`] read a client's slot only
//!   when the entry's group bit is set: a client's slots elsewhere cost
//!   the service nothing. The bit is one more store before the take's
//!   `fence(SeqCst)`, so the Dekker argument above covers it: a service
//!   whose fence comes after the client's sees the bit (and the total,
//!   and the slot); one whose fence comes first is seen by the client,
//!   which backs off. A take that finds its bit already set (by an earlier
//!   take, possibly on another thread) loads it before its fence: a
//!   service load that missed that bit is coherence-ordered before this
//!   load, so the service's fence precedes the client's (C++20
//!   [atomics.order] p4.4) and the client sees the new `seq`.
//! * **Repairing the total** ([`repair_total`]): as a slot's, against a
//!   private total raised before the total and lowered after it.
//! * **Repairing a slot** ([`repair_slot`], client, concurrently with its
//!   own takes and releases): the client also counts its references in a
//!   private [`Tally`], raised before the slot (the slot's increment is
//!   Release) and lowered after it (Release); the repair loads the slot
//!   (Acquire) then the tally (Acquire) and, when the slot is above the
//!   tally, compare-exchanges it down to it (Release, as a release's
//!   `fetch_sub`), then the same `fence(SeqCst)` and state load as a
//!   release, against the same delete.
//!
//! # Hostile input
//!
//! Clients cannot write the index through their mapping (read-only); a
//! process that opens the file for writing anyway can make entries say
//! anything. A reader therefore checks everything: a snapshot must be
//! stable within [`READ_RETRIES`] reads (an entry whose `seq` stays odd or
//! keeps moving costs at most that many reads, then the service answers),
//! its check word must match (the key comes from the service over the
//! private connection, so garbage, zeroed or moved entries fail), the id
//! must be the one asked for, the state sealed, the metadata length at most
//! [`INLINE_METADATA`], and the offset and size are checked against the
//! arena before anything is mapped. A reader that fails any of this asks
//! the service (the slow path), which never reads the index. The service
//! never trusts the index either: it keeps each entry's `seq` and
//! occupancy privately, and a slot's value only ever means "held" (a
//! process that scribbles on a client's slots can pin objects, as holding
//! buffers would, until that client repairs its slots from its private
//! tally — [`repair_slot`], every second in the node and in workers — or
//! disconnects). A total is only ever a reason to read the slots: a
//! scribbled total that is not 0 makes the service read that client's
//! slots as it read every client's before the totals, until the client's
//! repair ([`repair_total`], with the slots') puts it back. A total or
//! slot lowered under held references hides them, as lowering the slots
//! always could (the residual risk docs/store.md names), until the
//! repair raises the total back. A count written to 2^31 or more (e.g.
//! `u64::MAX`) would let the next take carry it to 0 and hide that take's
//! reference (the attack on `08c4269`: an object freed under a held
//! buffer, and a pull delivering another object's bytes): a take reads
//! the count it incremented, and one that cannot be honest makes it give
//! the reference back and ask the service instead.

use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Words per entry.
pub const ENTRY_WORDS: usize = 16;
/// Words of a record's body (the entry's words 1..=14 in [`FullEntry`]).
pub const BODY_WORDS: usize = 14;
/// Bytes per entry (two cache lines).
pub const ENTRY_BYTES: usize = ENTRY_WORDS * 8;
/// Bytes of the index segment's header (before the first entry).
pub const INDEX_HEADER_BYTES: usize = 128;
/// Metadata of at most this many bytes is kept in the entry; objects with
/// more are not indexed (served by the service).
pub const INLINE_METADATA: usize = 56;
/// Positions a lookup (and the service's insert) tries from the id's hash.
pub const PROBES: u32 = 8;
/// Reads of one entry before a reader gives up on it (then asks the service).
pub const READ_RETRIES: u32 = 8;

/// Magic word at the start of the index segment's payload.
pub const INDEX_MAGIC: u64 = u64::from_le_bytes(*b"SWIDX\0\x01\0");

/// An entry's state: free.
pub const STATE_EMPTY: u64 = 0;
/// An entry's state: a sealed, visible object.
pub const STATE_SEALED: u64 = 1;
/// An entry's state: deleted while held; no new references.
pub const STATE_PENDING: u64 = 2;

/// One reference in a slot (low 32 bits count references).
pub const REF_ONE: u64 = 1;
/// One use in a slot (high 32 bits count acquisitions, wrapping): lets the
/// service see that an object was read since it last looked (LRU).
pub const USE_ONE: u64 = 1 << 32;

const W_SEQ: usize = 0;
const W_OFFSET: usize = 5;
const W_SIZE: usize = 6;
const W_FLAGS: usize = 7;
const W_META: usize = 8;

/// Which words of a record's body an entry stores: the seqlock code
/// ([`IndexWords::write_entry`], [`IndexWords::read_entry`]) is the same for
/// every layout, only the number of data words between the `seq` word and
/// the check word changes.
///
/// An entry of layout `L` is `L::WORDS` words: `seq`, then body word
/// `L::STORED[i]` at word `1 + i`, then the check word. Body words a layout
/// does not store read as zero; [`IndexWriter::publish`] refuses a record
/// with a nonzero word there. The check word is computed over the whole
/// body ([`check_word`]) in every layout.
pub trait EntryLayout: Copy + std::fmt::Debug + 'static {
    /// The stored body words (indices into the record's [`BODY_WORDS`]-word
    /// body: 0..=3 id, 4 offset, 5 size, 6 state and metadata length,
    /// 7..=13 metadata), in entry order. Must contain 6 (the state word,
    /// which [`release`] reads on its own).
    const STORED: &'static [usize];
    /// Words per entry: `seq`, the stored words, the check word.
    const WORDS: usize = Self::STORED.len() + 2;
    /// Entry word of the state (body word 6).
    const FLAGS_WORD: usize = 1 + stored_at(Self::STORED, W_FLAGS - 1);
}

/// Index of `body` in `stored`; a compile-time error for a layout that
/// does not store it.
const fn stored_at(stored: &[usize], body: usize) -> usize {
    let mut i = 0;
    while i < stored.len() {
        if stored[i] == body {
            return i;
        }
        i += 1;
    }
    panic!("an entry layout must store the state word")
}

/// The shared index's layout: all [`BODY_WORDS`] body words, in order
/// ([`ENTRY_WORDS`] words per entry, the table at the top of this module).
#[derive(Debug, Clone, Copy)]
pub struct FullEntry;

impl EntryLayout for FullEntry {
    const STORED: &'static [usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
}

/// The loom models' layout (`loom-tests/tests/store_index.rs`): the first
/// id word and the state word only — two data words between `seq` and the
/// check word, which is the least that still lets a reader see a torn
/// record (one word from each of two writes). The protocol's orderings do
/// not depend on the number of data words; fewer words keep the model's
/// state space small enough to explore exhaustively. Not used by the store.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry;

impl EntryLayout for ModelEntry {
    const STORED: &'static [usize] = &[0, W_FLAGS - 1];
}

const _: () = assert!(FullEntry::WORDS == ENTRY_WORDS && FullEntry::FLAGS_WORD == W_FLAGS);

/// An object id as the index stores it: 28 bytes in four little-endian
/// words, the last 4 bytes zero.
pub fn id_words(id: &[u8; 28]) -> [u64; 4] {
    let mut b = [0u8; 32];
    b[..28].copy_from_slice(id);
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    [w(0), w(1), w(2), w(3)]
}

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 31)
}

#[inline]
fn finish(h: u64) -> u64 {
    let h = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 32)
}

/// The first position to probe for `id` in an index of `entries` entries
/// (a power of two).
pub fn home(key: u64, id: &[u64; 4], entries: u32) -> u32 {
    let h = finish(id.iter().fold(key ^ 0x5157_4944_5848, |h, w| mix(h, *w)));
    (h as u32) & (entries - 1)
}

/// The check word of an entry: a keyed mix of its position, `seq` and
/// words 1..=14.
pub fn check_word(key: u64, pos: u32, seq: u64, body: &[u64; BODY_WORDS]) -> u64 {
    let h = body
        .iter()
        .fold(mix(key, u64::from(pos)) ^ seq, |h, w| mix(h, *w));
    finish(h)
}

/// What the service publishes about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The object id ([`id_words`]).
    pub id: [u64; 4],
    /// Arena offset of its data.
    pub offset: u64,
    /// Its data size.
    pub data_size: u64,
    /// [`STATE_SEALED`] or [`STATE_PENDING`] ([`STATE_EMPTY`] clears).
    pub state: u64,
    /// Metadata length (≤ [`INLINE_METADATA`]).
    pub meta_len: u8,
    /// Inline metadata, zero padded.
    pub meta: [u8; INLINE_METADATA],
}

impl Record {
    /// An empty entry.
    pub const EMPTY: Record = Record {
        id: [0; 4],
        offset: 0,
        data_size: 0,
        state: STATE_EMPTY,
        meta_len: 0,
        meta: [0; INLINE_METADATA],
    };

    /// A sealed object's record; `None` if the metadata does not fit.
    pub fn sealed(id: &[u8; 28], offset: u64, data_size: u64, metadata: &[u8]) -> Option<Self> {
        if metadata.len() > INLINE_METADATA {
            return None;
        }
        let mut meta = [0u8; INLINE_METADATA];
        meta[..metadata.len()].copy_from_slice(metadata);
        Some(Record {
            id: id_words(id),
            offset,
            data_size,
            state: STATE_SEALED,
            meta_len: metadata.len() as u8,
            meta,
        })
    }

    fn body(&self) -> [u64; BODY_WORDS] {
        let mut b = [0u64; BODY_WORDS];
        b[..4].copy_from_slice(&self.id);
        b[W_OFFSET - 1] = self.offset;
        b[W_SIZE - 1] = self.data_size;
        b[W_FLAGS - 1] = self.state | (u64::from(self.meta_len) << 8);
        for (i, chunk) in self.meta.chunks_exact(8).enumerate() {
            b[W_META - 1 + i] = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        b
    }

    /// Decodes and validates words 1..=14 (state known, metadata length in
    /// bounds); `None` for anything else.
    fn from_body(b: &[u64; BODY_WORDS]) -> Option<Self> {
        let flags = b[W_FLAGS - 1];
        let state = flags & 0xff;
        let meta_len = (flags >> 8) & 0xff;
        if flags >> 16 != 0
            || !matches!(state, STATE_EMPTY | STATE_SEALED | STATE_PENDING)
            || meta_len as usize > INLINE_METADATA
        {
            return None;
        }
        let mut meta = [0u8; INLINE_METADATA];
        for (i, chunk) in meta.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&b[W_META - 1 + i].to_le_bytes());
        }
        let mut id = [0u64; 4];
        id.copy_from_slice(&b[..4]);
        Some(Record {
            id,
            offset: b[W_OFFSET - 1],
            data_size: b[W_SIZE - 1],
            state,
            meta_len: meta_len as u8,
            meta,
        })
    }

    /// The metadata bytes.
    pub fn metadata(&self) -> &[u8] {
        &self.meta[..usize::from(self.meta_len)]
    }

    /// Whether entries of layout `L` can hold this record (every body word
    /// `L` does not store is zero; always true for [`FullEntry`]).
    pub fn fits<L: EntryLayout>(&self) -> bool {
        let b = self.body();
        (0..BODY_WORDS).all(|i| b[i] == 0 || L::STORED.contains(&i))
    }
}

/// A consistent, validated snapshot of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Its position.
    pub pos: u32,
    /// Its `seq` (even).
    pub seq: u64,
    /// Its contents.
    pub record: Record,
}

/// What reading one entry gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRead {
    /// A stable snapshot whose check word matches.
    Valid(Snapshot),
    /// No stable snapshot within [`READ_RETRIES`] reads (`seq` odd or
    /// moving: the service is writing it, or someone scribbles on it): ask
    /// the service.
    Unstable,
    /// A stable snapshot whose check word, state or metadata length does
    /// not match, or a position out of range: the entry was scribbled on
    /// (with only the service writing, this never happens — a torn read is
    /// caught by the `seq` re-check first): ask the service.
    Invalid,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The entry of the id (any state).
    Found(Snapshot),
    /// Every probed entry read cleanly and none holds the id.
    Absent,
    /// Some probed entry was [`EntryRead::Unstable`] (none invalid): ask
    /// the service.
    Unknown,
    /// Some probed entry was [`EntryRead::Invalid`]: ask the service.
    Invalid,
}

/// The entries of an index: `entries × L::WORDS` words (a power of two
/// entries), written by the service, read by clients. The store uses
/// [`FullEntry`] (the default); the loom models use [`ModelEntry`].
#[derive(Debug, Clone, Copy)]
pub struct IndexWords<'a, L: EntryLayout = FullEntry> {
    words: &'a [AtomicU64],
    entries: u32,
    key: u64,
    layout: std::marker::PhantomData<L>,
}

/// One client's reference slots: one word per index entry, and the
/// client's **total**: low 32 bits the references it holds over all
/// entries, high 32 bits its takes (wrapping), raised before a slot and
/// lowered (the references) after it. The service reads it first: a
/// client holding nothing has its slot skipped by [`refs_held`], one that
/// never took a reference (total 0) by [`holds`] too.
///
/// Beside the total, the client's **touched groups**: [`TOUCHED_WORDS`]
/// words, one bit per group of consecutive entries (a power of two of
/// them, [`RefSlots::group_entries`]: with 32 Ki entries 128, one KiB of
/// slots), set before the first take at an entry of that group and never
/// cleared by the client. The service reads a slot only when its group's
/// bit is set: a client that took references at a few entries costs a
/// delete, an eviction or a seal elsewhere one load of its (cached) total
/// line, not a cold slot line. A group beyond the words (which the group
/// size rules out) counts as touched: an unknown is read, never skipped.
#[derive(Debug, Clone, Copy)]
pub struct RefSlots<'a> {
    words: &'a [AtomicU64],
    total: &'a AtomicU64,
    touched: &'a [AtomicU64],
    shift: u32,
}

/// Words of touched-group bits beside a client's total (256 groups).
pub const TOUCHED_WORDS: usize = 4;

/// log2 of the entries per touched group for `entries` entries and `bits`
/// group bits: the least power of two that covers them all (0 without
/// bits: every entry its own group, none ever looked up).
fn group_shift(entries: usize, bits: usize) -> u32 {
    if bits == 0 {
        return 0;
    }
    entries.div_ceil(bits).next_power_of_two().trailing_zeros()
}

impl<'a> RefSlots<'a> {
    /// Slots over `words` (one per index entry) with the client's
    /// `total` word and its touched-group words `touched` (normally
    /// [`TOUCHED_WORDS`]; with none, every slot is read, as before the
    /// groups).
    pub fn new(words: &'a [AtomicU64], total: &'a AtomicU64, touched: &'a [AtomicU64]) -> Self {
        let shift = group_shift(words.len(), touched.len() * 64);
        Self {
            words,
            total,
            touched,
            shift,
        }
    }

    /// Index entries per touched group (a power of two).
    pub fn group_entries(&self) -> usize {
        1 << self.shift
    }

    fn slot(&self, pos: u32) -> Option<&'a AtomicU64> {
        self.words.get(pos as usize)
    }

    /// The word (an index into the touched words) and bit of `pos`'s
    /// touched group.
    fn group(&self, pos: u32) -> (usize, u64) {
        let g = self.group_of(pos);
        (g / 64, 1 << (g % 64))
    }

    /// Calls `f(i)` for every `i` (an index into `by_group`'s positions,
    /// which `by_group` lists sorted by group as `(group, i)`) whose
    /// position lies in a group this client touched, loading each touched
    /// word once. Per client it costs the smaller of a bit test per
    /// position and a search per set bit: a batch of one entry costs one
    /// test whatever the client touched (the attack on `fb26879`: a search
    /// per set bit made every delete beside clients that had read a few
    /// hundred objects 20× dearer), a batch of thousands beside a client
    /// that touched a few groups costs a few searches. Positions of groups
    /// beyond the words (none, given the group size; every one without
    /// group words) are all visited.
    fn for_touched(&self, by_group: &[(usize, usize)], mut f: impl FnMut(usize)) {
        let mut words = [0u64; TOUCHED_WORDS];
        let n = self.touched.len().min(TOUCHED_WORDS);
        for (w, word) in words.iter_mut().zip(self.touched) {
            // Relaxed: as in `touched` (the caller's fence orders it).
            *w = word.load(Ordering::Relaxed);
        }
        let set: u32 = words.iter().map(|w| w.count_ones()).sum();
        if by_group.len() <= set as usize * 8 {
            for &(g, i) in by_group {
                if g >= n * 64 || words[g / 64] & (1 << (g % 64)) != 0 {
                    f(i);
                }
            }
            return;
        }
        let beyond = by_group.partition_point(|&(g, _)| g < n * 64);
        by_group[beyond..].iter().for_each(|&(_, i)| f(i));
        for (w, &word) in words[..n].iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let g = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let from = by_group.partition_point(|&(pg, _)| pg < g);
                for &(_, i) in by_group[from..].iter().take_while(|&&(pg, _)| pg == g) {
                    f(i);
                }
            }
        }
    }

    /// `pos`'s group number (its bit's index over the touched words).
    fn group_of(&self, pos: u32) -> usize {
        (pos as usize) >> self.shift
    }

    /// Whether the client may have taken a reference at `pos`: its
    /// group's bit is set (or there are no group words). Relaxed: the
    /// caller's `fence(SeqCst)` (or, for [`holds`]' hint, nothing) orders
    /// it; the bit is set before the total and the slot, so a reference
    /// the service must see comes with its bit (module docs).
    fn touched(&self, pos: u32) -> bool {
        let (i, bit) = self.group(pos);
        match self.touched.get(i) {
            Some(w) => w.load(Ordering::Relaxed) & bit != 0,
            None => true,
        }
    }

    /// Sets `pos`'s group bit if it is not set yet (a load first: once
    /// set, a take pays one load of a line it writes anyway).
    fn touch(&self, pos: u32) {
        let (i, bit) = self.group(pos);
        if let Some(w) = self.touched.get(i) {
            // Relaxed: only decides whether to store.
            if w.load(Ordering::Relaxed) & bit == 0 {
                // Relaxed: ordered before the service's loads by the
                // take's SeqCst fence after it (the Dekker pair); nothing
                // else reads it for ordering (a repair only adds bits).
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }
}

/// A client's private tally of the references it holds at each index
/// entry (one count per entry, in the client's own memory, which no other
/// process can write) and in all, and of the groups it touched: what
/// [`repair_slot`] puts its shared slot back to, and [`repair_total`] its
/// shared total and touched groups.
#[derive(Debug, Clone, Copy)]
pub struct Tally<'a> {
    counts: &'a [AtomicU32],
    total: &'a AtomicU64,
    touched: &'a [AtomicU64],
}

impl<'a> Tally<'a> {
    /// The tally over `counts` (one per index entry), `total` (their
    /// sum) and `touched` (the private copy of the touched-group bits, as
    /// many words as the slots').
    pub fn new(counts: &'a [AtomicU32], total: &'a AtomicU64, touched: &'a [AtomicU64]) -> Self {
        Self {
            counts,
            total,
            touched,
        }
    }

    fn count(&self, pos: u32) -> Option<&'a AtomicU32> {
        self.counts.get(pos as usize)
    }
}

impl<'a> IndexWords<'a> {
    /// The index over `words` with `entries` entries of [`ENTRY_WORDS`]
    /// words (a power of two, at most `words.len() / ENTRY_WORDS`) and
    /// check key `key`; `None` if the sizes do not fit.
    pub fn new(words: &'a [AtomicU64], entries: u32, key: u64) -> Option<Self> {
        Self::with_layout(words, entries, key)
    }
}

impl<'a, L: EntryLayout> IndexWords<'a, L> {
    /// [`IndexWords::new`] with entries of layout `L` (`L::WORDS` words
    /// each).
    pub fn with_layout(words: &'a [AtomicU64], entries: u32, key: u64) -> Option<Self> {
        if entries == 0
            || !entries.is_power_of_two()
            || (entries as usize).checked_mul(L::WORDS)? > words.len()
        {
            return None;
        }
        Some(Self {
            words,
            entries,
            key,
            layout: std::marker::PhantomData,
        })
    }

    /// Entries in the index.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    fn entry(&self, pos: u32) -> &'a [AtomicU64] {
        debug_assert!(pos < self.entries);
        let start = pos as usize * L::WORDS;
        &self.words[start..start + L::WORDS]
    }

    /// The positions probed for `id`, in order.
    pub fn probes(&self, id: &[u64; 4]) -> impl Iterator<Item = u32> {
        let h = home(self.key, id, self.entries);
        let mask = self.entries - 1;
        (0..PROBES.min(self.entries)).map(move |i| (h + i) & mask)
    }

    // ------------------------------------------------------------ reader --

    /// Reads entry `pos` (a seqlock read, retried at most
    /// [`READ_RETRIES`] times) and validates it.
    pub fn read_entry(&self, pos: u32) -> EntryRead {
        if pos >= self.entries {
            return EntryRead::Invalid;
        }
        let e = self.entry(pos);
        for _ in 0..READ_RETRIES {
            // Acquire: pairs with the Release store of the even seq in
            // write_entry, so the words of that write are visible below.
            let s1 = e[W_SEQ].load(Ordering::Acquire);
            if s1 & 1 == 1 {
                crate::sync::spin_loop();
                continue;
            }
            let mut body = [0u64; BODY_WORDS];
            for (i, b) in L::STORED.iter().enumerate() {
                // Relaxed: validated by the seq re-check below.
                body[*b] = e[1 + i].load(Ordering::Relaxed);
            }
            // Relaxed: like the words, validated by the seq re-check.
            let check = e[L::WORDS - 1].load(Ordering::Relaxed);
            // Acquire fence: pairs with the SeqCst fence after the odd seq
            // store in write_entry; if any word above came from a newer
            // write, the seq load below sees that write's odd seq or later.
            fence(Ordering::Acquire);
            let s2 = e[W_SEQ].load(Ordering::Relaxed);
            if s1 != s2 {
                crate::sync::spin_loop();
                continue;
            }
            if check != check_word(self.key, pos, s1, &body) {
                return EntryRead::Invalid;
            }
            return match Record::from_body(&body) {
                Some(record) => EntryRead::Valid(Snapshot {
                    pos,
                    seq: s1,
                    record,
                }),
                None => EntryRead::Invalid,
            };
        }
        EntryRead::Unstable
    }

    /// Looks `id` up among its [`PROBES`] positions.
    pub fn lookup(&self, id: &[u64; 4]) -> Lookup {
        let mut unclean = Lookup::Absent;
        for pos in self.probes(id) {
            match self.read_entry(pos) {
                EntryRead::Valid(s) if s.record.state != STATE_EMPTY && s.record.id == *id => {
                    return Lookup::Found(s)
                }
                EntryRead::Valid(_) => {}
                EntryRead::Unstable if unclean == Lookup::Absent => unclean = Lookup::Unknown,
                EntryRead::Unstable => {}
                EntryRead::Invalid => unclean = Lookup::Invalid,
            }
        }
        unclean
    }

    /// Takes a reference on the sealed object of `snap` in `slots`: true
    /// when the entry was unchanged afterwards (the object is held until
    /// [`release`]); false when it changed (the reference is given back,
    /// the object must not be touched).
    pub fn try_acquire(&self, slots: &RefSlots<'_>, snap: &Snapshot) -> bool {
        if snap.record.state != STATE_SEALED || snap.pos >= self.entries {
            return false;
        }
        let Some(slot) = slots.slot(snap.pos) else {
            return false;
        };
        // The group's bit first: a service that sees the total's increment
        // after the fences sees the bit too, and reads the slot.
        slots.touch(snap.pos);
        // Release: pairs with the Acquire total load in `repair_total` (a
        // repair that sees this reference sees the private total raised
        // before it, `try_acquire_counted`); towards the service, ordered
        // by the SeqCst fence below (a service whose fence comes after
        // ours sees this increment or a later value, and then the
        // slot's). Raised before the slot, so that the total is never
        // below what the slots honestly hold; a take always adds a use,
        // so a repair never mistakes a total that changed and changed
        // back for the one it read.
        let before = slots.total.fetch_add(REF_ONE | USE_ONE, Ordering::Release);
        // Release: pairs with the Acquire slot load in `repair_slot` (a
        // repair that sees this reference sees the tally raised before it,
        // `try_acquire_counted`); towards the service, ordered by the
        // SeqCst fence below.
        let slot_before = slot.fetch_add(REF_ONE | USE_ONE, Ordering::Release);
        if scribbled(before) || scribbled(slot_before) {
            // Another process wrote the total or the slot (no client holds
            // 2^31 references): the increment may have carried out of the
            // count to 0, hiding this reference from the service. Given
            // back (Release, as a release's) before it was ever trusted;
            // the caller asks the service, and the repair puts the words
            // back.
            slot.fetch_sub(REF_ONE, Ordering::Release);
            slots.total.fetch_sub(REF_ONE, Ordering::Release);
            return false;
        }
        // SeqCst fence: pairs with the SeqCst fence in write_entry (called
        // by try_evict / retire before they load the slots) — Dekker: the
        // service sees this reference or we see its new seq.
        fence(Ordering::SeqCst);
        let now = self.entry(snap.pos)[W_SEQ].load(Ordering::Relaxed);
        if now == snap.seq {
            true
        } else {
            // Release: pairs with the Acquire loads in `holds`.
            slot.fetch_sub(REF_ONE, Ordering::Release);
            // Release: pairs with the Acquire total load in `refs_held`
            // (lowered after the slot).
            slots.total.fetch_sub(REF_ONE, Ordering::Release);
            false
        }
    }

    /// [`IndexWords::try_acquire`], the reference also counted in the
    /// client's `tally`: raised before the slot, lowered again after the
    /// slot's back-off, so the tally is never below what the slot honestly
    /// says and a [`repair_slot`] running meanwhile never lowers the slot
    /// below the references held. Give it back with [`release_counted`].
    pub fn try_acquire_counted(
        &self,
        slots: &RefSlots<'_>,
        tally: &Tally<'_>,
        snap: &Snapshot,
    ) -> bool {
        let Some(n) = tally.count(snap.pos) else {
            return false;
        };
        // Relaxed (both): published by the total's and the slot's Release
        // fetch_adds in try_acquire, which come after them.
        n.fetch_add(1, Ordering::Relaxed);
        tally.total.fetch_add(1, Ordering::Relaxed);
        let took = self.try_acquire(slots, snap);
        // The private copy of the group bit after the shared one (set by
        // the take): a repair between the two then finds nothing to do,
        // where the other way round it "fixed" an honest take in flight
        // and warned of another process (the attack on `fb26879`). Set
        // whatever the shared bit says now: mirroring it let another
        // process that cleared the shared bit during the take keep the
        // reference hidden for good, the repair having nothing to put
        // back (the attack on `3821be7`).
        let (i, bit) = slots.group(snap.pos);
        if let Some(w) = tally.touched.get(i) {
            // Relaxed: private; `repair_total` only ever adds bits from it.
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
        if took {
            return true;
        }
        // Release (both): pair with the Acquire tally loads in
        // `repair_slot` and `repair_total`: a repair that sees this
        // decrement sees the back-off before it (and its compare-exchange
        // then fails on it).
        n.fetch_sub(1, Ordering::Release);
        tally.total.fetch_sub(1, Ordering::Release);
        false
    }

    // ------------------------------------------------------------ writer --

    /// Writes `record` into entry `pos` (service only): `seq` goes from
    /// `old_seq` (the service's private copy, even) to `old_seq + 2`.
    /// Returns the new seq. Body words `L` does not store are not written
    /// (the check word covers them, so a record that does not
    /// [`Record::fits`] reads back as [`EntryRead::Invalid`]).
    pub fn write_entry(&self, pos: u32, old_seq: u64, record: &Record) -> u64 {
        let e = self.entry(pos);
        // Relaxed: the fence below orders it before the words.
        e[W_SEQ].store(old_seq | 1, Ordering::Relaxed);
        // SeqCst fence: the seqlock writer's Release fence (pairs with the
        // Acquire fence in read_entry). Release would do: try_evict and
        // retire each have their own SeqCst fence before loading the slots
        // (the Dekker partners of try_acquire's and release's); the loom
        // models pass with Release here.
        fence(Ordering::SeqCst);
        let body = record.body();
        for (i, b) in L::STORED.iter().enumerate() {
            // Relaxed: published by the Release store of seq below.
            e[1 + i].store(body[*b], Ordering::Relaxed);
        }
        let new_seq = (old_seq | 1) + 1;
        // Relaxed: like the words, published by the Release store of seq.
        e[L::WORDS - 1].store(check_word(self.key, pos, new_seq, &body), Ordering::Relaxed);
        // Release: pairs with the Acquire load of seq in read_entry.
        e[W_SEQ].store(new_seq, Ordering::Release);
        new_seq
    }
}

/// Whether a total or slot word read before an increment cannot be
/// honest: its count (low 32 bits) is at least 2^31 — another process
/// wrote it, and the increment may carry the count to 0 (hiding the
/// reference). A take that sees it gives its reference back
/// ([`IndexWords::try_acquire`]).
fn scribbled(word: u64) -> bool {
    word & 0xffff_ffff >= 1 << 31
}

/// References held on entry `pos` over every client's slots, reading a
/// client's slot only when its total is not 0 and `pos`'s touched group
/// bit is set: a client that holds
/// nothing costs one load of a line it has not written since the last
/// look (a cached line while it is idle), not a slot line per entry. The
/// count is what [`holds`] says of the references; the uses are not read.
///
/// Per client: the total (Acquire: pairs with the Release decrement in
/// [`release`] and the back-off — a 0 read from it comes with the slot's
/// decrement and the client's reads of the object before it), then the
/// slot (Acquire, as in [`holds`]). Against a take or release, the
/// caller's `fence(SeqCst)` before this (retire's, evict's) is the Dekker
/// partner of the client's: the total is raised before the client's fence
/// and lowered after the slot, so a 0 seen after the fences' order put the
/// client first means the slot says 0 too.
pub fn refs_held<'s>(slots: impl IntoIterator<Item = RefSlots<'s>>, pos: u32) -> u64 {
    let mut refs = 0u64;
    for s in slots {
        if s.total.load(Ordering::Acquire) & 0xffff_ffff == 0 || !s.touched(pos) {
            continue;
        }
        if let Some(w) = s.slot(pos) {
            // Acquire: pairs with the Release fetch_sub in `release` (and
            // the back-off in try_acquire), as in `holds`.
            refs = refs.saturating_add(w.load(Ordering::Acquire) & 0xffff_ffff);
        }
    }
    refs
}

/// References and uses held on entry `pos` over every client's slots:
/// (sum of references, sum of uses, wrapping). Reads the slot of every
/// client whose total is not 0 and whose touched group bit for `pos` is
/// set (one that never took a reference there has no use and no
/// reference in that slot; its slot is not read); [`refs_held`]
/// is the cheaper count of references alone. The total's Relaxed load
/// is only a shortcut: a take that raced it is not wanted here (the uses
/// are the LRU's hint; the references that matter are counted by
/// [`refs_held`] after the Dekker fence).
pub fn holds<'s>(slots: impl IntoIterator<Item = RefSlots<'s>>, pos: u32) -> (u64, u64) {
    let mut refs = 0u64;
    let mut uses = 0u64;
    for s in slots {
        if s.total.load(Ordering::Relaxed) == 0 || !s.touched(pos) {
            continue;
        }
        if let Some(w) = s.slot(pos) {
            // Acquire: pairs with the Release fetch_sub in `release` (and
            // the back-off in try_acquire): a client's reads of the object
            // happen before we free it.
            let v = w.load(Ordering::Acquire);
            refs = refs.saturating_add(v & 0xffff_ffff);
            uses = uses.wrapping_add(v >> 32);
        }
    }
    (refs, uses)
}

/// `positions` listed by group, `(group, index into positions)`, sorted:
/// what [`RefSlots::for_touched`] walks. The groups are the same for
/// every client of one index (they depend on the number of entries only).
fn by_group<'s>(sample: &RefSlots<'s>, positions: &[u32]) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = positions
        .iter()
        .enumerate()
        .map(|(i, &p)| (sample.group_of(p), i))
        .collect();
    v.sort_unstable();
    v
}

/// [`refs_held`] of several entries in one walk over the clients:
/// whether each of `positions` is held (`held[i]` for `positions[i]`).
/// Per client: the total (Acquire, as in [`refs_held`]), then, when it
/// holds a reference, the slots of those positions whose group bit is
/// set (Acquire). The caller stores every entry's new `seq` and then
/// fences once before this (`IndexWriter::try_evict_batch`): for each
/// entry, that store and fence, and these loads, are the same Dekker
/// partners of a take's as in [`refs_held`].
pub fn refs_held_batch<'s>(
    slots: impl IntoIterator<Item = RefSlots<'s>>,
    positions: &[u32],
) -> Vec<bool> {
    let mut held = vec![false; positions.len()];
    let mut order: Option<Vec<(usize, usize)>> = None;
    for s in slots {
        if s.total.load(Ordering::Acquire) & 0xffff_ffff == 0 {
            continue;
        }
        let order = order.get_or_insert_with(|| by_group(&s, positions));
        s.for_touched(order, |i| {
            if let Some(w) = s.slot(positions[i]) {
                // Acquire: pairs with the Release fetch_sub in `release`,
                // as in `refs_held`.
                held[i] |= w.load(Ordering::Acquire) & 0xffff_ffff != 0;
            }
        });
    }
    held
}

/// The uses of [`holds`] at several entries in one walk over the clients
/// (`uses[i]` for `positions[i]`, wrapping sums): the LRU's hint for a
/// batch of eviction candidates. Per client that ever took a reference,
/// one load per touched-group word, then only the slots of candidates in
/// its set groups.
pub fn uses_batch<'s>(
    slots: impl IntoIterator<Item = RefSlots<'s>>,
    positions: &[u32],
) -> Vec<u64> {
    let mut uses = vec![0u64; positions.len()];
    let mut order: Option<Vec<(usize, usize)>> = None;
    for s in slots {
        // Relaxed: a shortcut, as in `holds`.
        if s.total.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let order = order.get_or_insert_with(|| by_group(&s, positions));
        s.for_touched(order, |i| {
            if let Some(w) = s.slot(positions[i]) {
                // Relaxed: the uses are a hint (`holds` loads Acquire for
                // the references, which are not read here).
                uses[i] = uses[i].wrapping_add(w.load(Ordering::Relaxed) >> 32);
            }
        });
    }
    uses
}

/// Gives back a reference taken by [`IndexWords::try_acquire`] at `pos`;
/// returns whether the service should be told (the entry is no longer
/// plainly sealed: a delete may be waiting for this release).
pub fn release<L: EntryLayout>(index: &IndexWords<'_, L>, slots: &RefSlots<'_>, pos: u32) -> bool {
    let Some(slot) = slots.slot(pos) else {
        return false;
    };
    // Release: pairs with the Acquire loads in `holds`.
    slot.fetch_sub(REF_ONE, Ordering::Release);
    // Release: pairs with the Acquire total load in `refs_held` (lowered
    // after the slot; the fence in `pending_after_release` orders it
    // before the state load, against a delete).
    slots.total.fetch_sub(REF_ONE, Ordering::Release);
    pending_after_release(index, pos)
}

/// [`release`] of a reference taken by [`IndexWords::try_acquire_counted`]:
/// the slot first, then the tally.
pub fn release_counted<L: EntryLayout>(
    index: &IndexWords<'_, L>,
    slots: &RefSlots<'_>,
    tally: &Tally<'_>,
    pos: u32,
) -> bool {
    let tell = release(index, slots, pos);
    if let Some(n) = tally.count(pos) {
        // Release: pairs with the Acquire tally load in `repair_slot` (a
        // repair that sees this decrement sees the slot's before it).
        n.fetch_sub(1, Ordering::Release);
        // Release: the same with `repair_total` (the total's decrement).
        tally.total.fetch_sub(1, Ordering::Release);
    }
    tell
}

/// Puts this client's total (its references, the low 32 bits) back to
/// what its private tally's total says it holds, when they differ, and
/// returns whether it did; the takes (high 32 bits) are kept. Above it:
/// another process raised it (the service would read this client's slots
/// for every delete). Below it: another process lowered it under held
/// references (hiding them from the service until now, as lowered slots
/// would: docs/store.md, "Hostile input"), or a take or release is in
/// flight — raising the total then over-counts by that one reference,
/// which costs the service slot reads and nothing else, until the next
/// repair.
///
/// The same protocol as [`repair_slot`], on the total: the private total
/// is raised before the total and lowered after it, so honestly the
/// total is never above it; a total seen raised comes with the private
/// total raised before it (the total's Release increment, this Acquire
/// load), a private total seen lowered with the total's decrement before
/// it (its Release decrement, this Acquire load, and the compare-exchange
/// then fails on the lowered total); every take adds a use, so a total
/// seen again is the same state. Changing the total frees nothing by
/// itself (the service then reads or skips the slots, which say what they
/// said), so no delete needs telling.
///
/// It also sets back, from the private copy, any touched-group bit
/// another process cleared (which would hide this client's references at
/// that group as a lowered total would); bits another process set are
/// left (they cost the service slot reads, nothing else). True when it
/// changed the total or a bit.
///
/// With `raise` false a total below the private total is left as it is:
/// a take or release in flight looks the same (the private total is
/// raised before the total and lowered after it), and a periodic repair
/// that raised it then warned of another process for an honest client
/// (the attack on `fb26879`). The client's periodic repair raises a total
/// only when two repairs in a row found it low
/// (`ClientIndex::repair`); a total above the private total is never
/// honest and is lowered at once.
pub fn repair_total(slots: &RefSlots<'_>, tally: &Tally<'_>, raise: bool) -> bool {
    let mut fixed = false;
    for (shared, private) in slots.touched.iter().zip(tally.touched) {
        // Relaxed (both): bits only ever added; a bit the private copy has
        // and the shared one lacks was cleared by another process (hiding
        // references as a lowered total would).
        let want = private.load(Ordering::Relaxed);
        if shared.load(Ordering::Relaxed) & want != want {
            // Relaxed: as the take's (a bit only makes the service read).
            shared.fetch_or(want, Ordering::Relaxed);
            fixed = true;
        }
    }
    // Acquire: pairs with the Release fetch_add in try_acquire (above).
    let v = slots.total.load(Ordering::Acquire);
    // Acquire: pairs with the Release decrements of the private total.
    let want = tally.total.load(Ordering::Acquire);
    if v & 0xffff_ffff == want & 0xffff_ffff || (!raise && v & 0xffff_ffff < want & 0xffff_ffff) {
        return fixed;
    }
    // Release: as the fetch_sub in `release`, pairs with the Acquire total
    // load in `refs_held`. Failure Relaxed: nothing is read from it.
    slots
        .total
        .compare_exchange(
            v,
            (v & !0xffff_ffff) | (want & 0xffff_ffff),
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
        || fixed
}

/// Whether this client's total (its references) is below its private
/// total: another process lowered it, or a take or release is in flight
/// ([`repair_total`] with `raise`).
pub fn total_below_tally(slots: &RefSlots<'_>, tally: &Tally<'_>) -> bool {
    // Acquire (both): as in `repair_total`.
    let v = slots.total.load(Ordering::Acquire);
    let want = tally.total.load(Ordering::Acquire);
    v & 0xffff_ffff < want & 0xffff_ffff
}

/// Lowers this client's slot at `pos` to what its private `tally` says it
/// holds, when the slot's count (its low 32 bits) is above it: a process
/// that can open the slot memfd (`/proc/<pid>/fd`) raised it, and the
/// service would keep every object deleted at that entry for as long as
/// this client lives. The uses (high 32 bits) are kept. `Some(tell)` when it
/// lowered the slot, `tell` as after [`release`] (the entry is not plainly
/// sealed: a delete may be waiting for the count); `None` when there was
/// nothing to do, or the slot changed meanwhile (a take or release: the
/// next repair looks again).
///
/// Runs concurrently with this client's own takes and releases (the
/// `_counted` ones) and never lowers a slot below the references held:
/// the tally is raised before the slot and lowered after it, so honestly
/// the slot is never above the tally; a slot seen raised comes with the
/// tally raised before it (the slot's Release increment, this Acquire
/// load), a tally seen lowered with the slot's decrement before it (the
/// tally's Release decrement, this Acquire load, and the compare-exchange
/// then fails on the decremented slot); and every take adds a use to the
/// slot word, so a word seen again is the same state (no ABA short of 2³²
/// takes in between). A slot *below* the tally is left: a take or release
/// in flight looks the same.
pub fn repair_slot<L: EntryLayout>(
    index: &IndexWords<'_, L>,
    slots: &RefSlots<'_>,
    tally: &Tally<'_>,
    pos: u32,
) -> Option<bool> {
    let slot = slots.slot(pos)?;
    let n = tally.count(pos)?;
    // Acquire: pairs with the Release fetch_add in try_acquire (above).
    let v = slot.load(Ordering::Acquire);
    // Acquire: pairs with the Release tally decrements (above).
    let want = u64::from(n.load(Ordering::Acquire));
    if v & 0xffff_ffff <= want {
        return None;
    }
    // Release: as the fetch_sub in `release`, pairs with the Acquire loads
    // in `holds`. Failure Relaxed: nothing is read from the new value.
    slot.compare_exchange(
        v,
        (v & !0xffff_ffff) | want,
        Ordering::Release,
        Ordering::Relaxed,
    )
    .ok()?;
    Some(pending_after_release(index, pos))
}

/// After a slot's count at `pos` went down: whether the entry is no longer
/// plainly sealed (a delete may be waiting for the count).
fn pending_after_release<L: EntryLayout>(index: &IndexWords<'_, L>, pos: u32) -> bool {
    if pos >= index.entries {
        return false;
    }
    // SeqCst fence: pairs with the SeqCst fence in write_entry of a delete
    // (retire): the service sees our release, or we see its pending state.
    fence(Ordering::SeqCst);
    let e = index.entry(pos);
    // Relaxed: ordered after our release by the SeqCst fence above (its
    // partner is the fence after the odd seq store in write_entry).
    let seq = e[W_SEQ].load(Ordering::Relaxed);
    let flags = e[L::FLAGS_WORD].load(Ordering::Relaxed);
    seq & 1 == 1 || flags & 0xff != STATE_SEALED
}

/// The service's side of the index: its private copy of every entry's
/// `seq` and occupancy (it never reads them back from shared memory).
#[derive(Debug, Clone)]
pub struct IndexWriter {
    seqs: Vec<u64>,
    used: Vec<bool>,
}

impl IndexWriter {
    /// A writer for `index`: writes an empty entry (with its check word)
    /// into every position.
    pub fn new<L: EntryLayout>(index: &IndexWords<'_, L>) -> Self {
        let n = index.entries() as usize;
        let mut w = Self {
            seqs: vec![0; n],
            used: vec![false; n],
        };
        for pos in 0..index.entries() {
            w.clear(index, pos);
        }
        w
    }

    /// Publishes `record` in the first free probe position of its id;
    /// `None` when all are taken or the record does not [`Record::fits`]
    /// `L` (the object is not indexed).
    pub fn publish<L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        record: &Record,
    ) -> Option<u32> {
        if !record.fits::<L>() {
            return None;
        }
        let pos = index.probes(&record.id).find(|p| !self.used[*p as usize])?;
        self.used[pos as usize] = true;
        let p = pos as usize;
        self.seqs[p] = index.write_entry(pos, self.seqs[p], record);
        Some(pos)
    }

    /// Takes entry `pos` back for eviction: the entry is retracted (`seq`
    /// odd), the slots are checked, and then it is cleared (true: nobody
    /// holds it) or restored as it was (false: held).
    pub fn try_evict<'s, L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        slots: impl IntoIterator<Item = RefSlots<'s>>,
        pos: u32,
        record: &Record,
    ) -> bool {
        self.try_evict_batch(index, slots, &[(pos, *record)])[0]
    }

    /// [`IndexWriter::try_evict`] of several entries at once: every entry
    /// retracted (`seq` odd), one fence, one walk over the clients
    /// ([`refs_held_batch`]), then each cleared (true) or restored as it
    /// was (false: held), in `batch`'s order. An eviction pass over
    /// thousands of candidates beside many clients costs one load of each
    /// client's total line per batch, not per candidate. Readers of a
    /// retracted entry meanwhile retry, then ask the service (the slow
    /// path), as during any write.
    pub fn try_evict_batch<'s, L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        slots: impl IntoIterator<Item = RefSlots<'s>>,
        batch: &[(u32, Record)],
    ) -> Vec<bool> {
        let positions: Vec<u32> = batch.iter().map(|(pos, _)| *pos).collect();
        for &pos in &positions {
            // Relaxed stores, then the SeqCst fence: for each entry the
            // Dekker pair with try_acquire (its fetch_add, SeqCst fence,
            // seq load).
            index.entry(pos)[W_SEQ].store(self.seqs[pos as usize] | 1, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        let held = refs_held_batch(slots, &positions);
        for (&(pos, record), &h) in batch.iter().zip(&held) {
            let p = pos as usize;
            if h {
                // Held: republish the same contents under a new seq
                // (readers that saw the old seq retry).
                self.seqs[p] = index.write_entry(pos, self.seqs[p], &record);
            } else {
                self.clear(index, pos);
            }
        }
        held.into_iter().map(|h| !h).collect()
    }

    /// Hides entry `pos` (a delete): it becomes "delete pending" so no new
    /// reference is taken, then the slots are checked; cleared (true) when
    /// nobody holds it, else left pending (false) until [`Self::reap`].
    pub fn retire<'s, L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        slots: impl IntoIterator<Item = RefSlots<'s>>,
        pos: u32,
        record: &Record,
    ) -> bool {
        let p = pos as usize;
        let pending = Record {
            state: STATE_PENDING,
            ..*record
        };
        // write_entry's SeqCst fence comes after the odd seq store, and the
        // state word is written after it; the fence below orders the state
        // store before the slot loads (Dekker pair with `release`).
        self.seqs[p] = index.write_entry(pos, self.seqs[p], &pending);
        fence(Ordering::SeqCst);
        self.reap(index, slots, pos)
    }

    /// Clears a pending entry once no slot holds it; returns whether it
    /// did. One entry: [`refs_held`], no batch (a batch's bookkeeping made
    /// every delete dearer, the attack on `fb26879`).
    pub fn reap<'s, L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        slots: impl IntoIterator<Item = RefSlots<'s>>,
        pos: u32,
    ) -> bool {
        if refs_held(slots, pos) > 0 {
            return false;
        }
        self.clear(index, pos);
        true
    }

    /// [`IndexWriter::reap`] of several pending entries in one walk over
    /// the clients ([`refs_held_batch`]): each cleared when no slot holds
    /// it; whether it was, in `positions`' order. The loads are a reap's
    /// (the totals', then the slots', Acquire: partners of the releases'
    /// Release decrements); the fence that orders them after the pending
    /// state is the retire's, before.
    pub fn reap_batch<'s, L: EntryLayout>(
        &mut self,
        index: &IndexWords<'_, L>,
        slots: impl IntoIterator<Item = RefSlots<'s>>,
        positions: &[u32],
    ) -> Vec<bool> {
        let held = refs_held_batch(slots, positions);
        for (&pos, &h) in positions.iter().zip(&held) {
            if !h {
                self.clear(index, pos);
            }
        }
        held.into_iter().map(|h| !h).collect()
    }

    /// Clears entry `pos` (free for another object).
    pub fn clear<L: EntryLayout>(&mut self, index: &IndexWords<'_, L>, pos: u32) {
        let p = pos as usize;
        self.seqs[p] = index.write_entry(pos, self.seqs[p], &Record::EMPTY);
        self.used[p] = false;
    }
}

#[cfg(all(test, not(shmwire_loom)))]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn id(n: u8) -> [u8; 28] {
        [n; 28]
    }

    #[test]
    fn publish_lookup_acquire_release_evict() {
        let iw = words(16 * ENTRY_WORDS);
        let rw = words(16);
        let idx = IndexWords::new(&iw, 16, 0x1234).unwrap();
        let total = AtomicU64::new(0);
        let tw = words(TOUCHED_WORDS);
        let slots = RefSlots::new(&rw, &total, &tw);
        let mut w = IndexWriter::new(&idx);
        let rec = Record::sealed(&id(1), 640, 10, b"meta").unwrap();
        let pos = w.publish(&idx, &rec).unwrap();
        let Lookup::Found(snap) = idx.lookup(&id_words(&id(1))) else {
            panic!("not found")
        };
        assert_eq!(snap.record, rec);
        assert_eq!(snap.record.metadata(), b"meta");
        assert_eq!(idx.lookup(&id_words(&id(2))), Lookup::Absent);
        assert!(idx.try_acquire(&slots, &snap));
        // Held: eviction restores the entry; the old snapshot is stale.
        assert!(!w.try_evict(&idx, [slots], pos, &rec));
        assert!(!idx.try_acquire(&slots, &snap));
        assert_eq!(holds([slots], pos).0, 1);
        assert!(!release(&idx, &slots, pos));
        assert!(w.try_evict(&idx, [slots], pos, &rec));
        assert_eq!(idx.lookup(&id_words(&id(1))), Lookup::Absent);
        // Delete while held: pending, then reaped after the release.
        let pos = w.publish(&idx, &rec).unwrap();
        let Lookup::Found(snap) = idx.lookup(&id_words(&id(1))) else {
            panic!("not found")
        };
        assert!(idx.try_acquire(&slots, &snap));
        assert!(!w.retire(&idx, [slots], pos, &rec));
        let Lookup::Found(p) = idx.lookup(&id_words(&id(1))) else {
            panic!("pending entry not found")
        };
        assert_eq!(p.record.state, STATE_PENDING);
        assert!(!idx.try_acquire(&slots, &p));
        assert!(
            release(&idx, &slots, pos),
            "the release must tell the service"
        );
        assert!(w.reap(&idx, [slots], pos));
        assert_eq!(holds([slots], pos), (0, 3));
        // Every take and release also went through the total: no
        // reference left, three takes (one backed off).
        assert_eq!(total.load(Ordering::Relaxed), 3 * USE_ONE);
    }

    /// The references are read from a client's slot only when its total
    /// says it holds some, the uses only when it ever took one.
    #[test]
    fn a_client_whose_total_says_nothing_costs_no_slot_read() {
        let iw = words(16 * ENTRY_WORDS);
        let (ra, rb) = (words(16), words(16));
        let (ta, tb) = (AtomicU64::new(0), AtomicU64::new(0));
        // b's groups all set, as if it had taken everywhere.
        let (ga, gb) = (words(TOUCHED_WORDS), words(TOUCHED_WORDS));
        gb.iter().for_each(|w| w.store(u64::MAX, Ordering::Relaxed));
        let (a, b) = (RefSlots::new(&ra, &ta, &ga), RefSlots::new(&rb, &tb, &gb));
        let idx = IndexWords::new(&iw, 16, 5).unwrap();
        let mut w = IndexWriter::new(&idx);
        let rec = Record::sealed(&id(1), 64, 8, b"").unwrap();
        let pos = w.publish(&idx, &rec).unwrap();
        let Lookup::Found(snap) = idx.lookup(&id_words(&id(1))) else {
            panic!("not found")
        };
        assert!(idx.try_acquire(&a, &snap));
        assert!(idx.try_acquire(&a, &snap));
        assert_eq!(ta.load(Ordering::Relaxed), 2 * (REF_ONE | USE_ONE));
        // b's slot says one reference and a use, but its total says it
        // never took one: neither count reads the slot.
        rb[pos as usize].store(REF_ONE | USE_ONE, Ordering::Relaxed);
        assert_eq!(refs_held([a, b], pos), 2);
        assert_eq!(holds([a, b], pos), (2, 2));
        // Took once, holds nothing: the uses are read, the references not.
        tb.store(USE_ONE, Ordering::Relaxed);
        assert_eq!(refs_held([a, b], pos), 2);
        assert_eq!(holds([a, b], pos), (3, 3));
        tb.store(REF_ONE | USE_ONE, Ordering::Relaxed);
        assert_eq!(refs_held([a, b], pos), 3);
        tb.store(0, Ordering::Relaxed);
        assert!(!w.retire(&idx, [a, b], pos, &rec), "a holds it");
        assert!(release(&idx, &a, pos));
        assert!(!w.reap(&idx, [a, b], pos), "a still holds one");
        assert!(release(&idx, &a, pos));
        assert_eq!(ta.load(Ordering::Relaxed), 2 * USE_ONE);
        assert!(w.reap(&idx, [a, b], pos));
    }

    /// A client's slot is read only at entries of a group it took a
    /// reference in; the groups cover every entry with at most
    /// `TOUCHED_WORDS × 64` bits; a cleared bit is set back by the repair.
    #[test]
    fn a_slot_outside_the_touched_groups_is_never_read() {
        assert_eq!(group_shift(32 << 10, 256), 7);
        assert_eq!(group_shift(256, 256), 0);
        assert_eq!(group_shift(64, 256), 0);
        assert_eq!(group_shift(1 << 22, 256), 14);
        let entries = 1024u32;
        let iw = words(entries as usize * ENTRY_WORDS);
        let (rw, tw, total) = (
            words(entries as usize),
            words(TOUCHED_WORDS),
            AtomicU64::new(0),
        );
        let slots = RefSlots::new(&rw, &total, &tw);
        assert_eq!(slots.group_entries(), 4);
        let idx = IndexWords::new(&iw, entries, 3).unwrap();
        let mut w = IndexWriter::new(&idx);
        let rec = Record::sealed(&id(1), 64, 8, b"").unwrap();
        let pos = w.publish(&idx, &rec).unwrap();
        let Lookup::Found(snap) = idx.lookup(&id_words(&id(1))) else {
            panic!("not found")
        };
        let (counts, private_total, private_groups) = (
            (0..entries).map(|_| AtomicU32::new(0)).collect::<Vec<_>>(),
            AtomicU64::new(0),
            words(TOUCHED_WORDS),
        );
        let tally = Tally::new(&counts, &private_total, &private_groups);
        assert!(idx.try_acquire_counted(&slots, &tally, &snap));
        let (g, bit) = slots.group(pos);
        assert_eq!(tw[g].load(Ordering::Relaxed), bit, "only pos's group");
        assert_eq!(private_groups[g].load(Ordering::Relaxed), bit);
        // Another entry in another group: its slot (scribbled) is not read.
        let other = (pos + 4) % entries;
        rw[other as usize].store(REF_ONE | USE_ONE, Ordering::Relaxed);
        assert_eq!(refs_held([slots], other), 0);
        assert_eq!(holds([slots], other), (0, 0));
        assert_eq!((refs_held([slots], pos), holds([slots], pos)), (1, (1, 1)));
        // An entry in the same group is read.
        let near = pos ^ 1;
        rw[near as usize].store(REF_ONE, Ordering::Relaxed);
        assert_eq!(refs_held([slots], near), 1);
        rw[near as usize].store(0, Ordering::Relaxed);
        // Cleared by another process, the bit hides the reference until
        // the repair sets it back.
        tw[g].store(0, Ordering::Relaxed);
        assert_eq!(refs_held([slots], pos), 0);
        assert!(repair_total(&slots, &tally, true));
        assert_eq!(refs_held([slots], pos), 1);
        assert!(
            !repair_total(&slots, &tally, true),
            "nothing left to repair"
        );
        assert!(!w.retire(&idx, [slots], pos, &rec), "held");
        assert!(release_counted(&idx, &slots, &tally, pos));
        assert!(w.reap(&idx, [slots], pos));
    }

    /// A batch eviction answers as one `try_evict` per entry would: held
    /// entries restored (still found), the others cleared; the uses of a
    /// batch are each entry's `holds` uses; clients are read only where
    /// their groups say.
    #[test]
    fn a_batch_answers_as_single_evictions_would() {
        let entries = 1024u32;
        let iw = words(entries as usize * ENTRY_WORDS);
        let idx = IndexWords::new(&iw, entries, 11).unwrap();
        let mut w = IndexWriter::new(&idx);
        let (ra, rb) = (words(entries as usize), words(entries as usize));
        let (ta, tb) = (AtomicU64::new(0), AtomicU64::new(0));
        let (ga, gb) = (words(TOUCHED_WORDS), words(TOUCHED_WORDS));
        let (a, b) = (RefSlots::new(&ra, &ta, &ga), RefSlots::new(&rb, &tb, &gb));
        let mut batch = Vec::new();
        for n in 0..40u8 {
            let rec = Record::sealed(&id(n), 64 * u64::from(n), 8, b"").unwrap();
            batch.push((w.publish(&idx, &rec).unwrap(), rec));
        }
        let snap = |n: usize| match idx.lookup(&batch[n].1.id) {
            Lookup::Found(s) => s,
            other => panic!("{n}: {other:?}"),
        };
        // a holds 3 and 17 (17 twice), b held 5 once and gave it back.
        for (c, n) in [(&a, 3), (&a, 17), (&a, 17), (&b, 5)] {
            assert!(idx.try_acquire(c, &snap(n)));
        }
        assert!(!release(&idx, &b, batch[5].0));
        // A scribbled reference in b's slot outside its groups: not read.
        let far = (0..batch.len())
            .filter(|i| ![3, 5, 17].contains(i))
            .map(|i| batch[i].0)
            .find(|&p| p / 4 != batch[5].0 / 4)
            .unwrap();
        rb[far as usize].store(REF_ONE | USE_ONE, Ordering::Relaxed);
        let pos: Vec<u32> = batch.iter().map(|(p, _)| *p).collect();
        let far_i = pos.iter().position(|&p| p == far).unwrap();
        let uses = uses_batch([a, b], &pos);
        let held = refs_held_batch([a, b], &pos);
        for (i, &p) in pos.iter().enumerate() {
            assert_eq!(uses[i], holds([a, b], p).1, "uses of {i}");
            assert_eq!(held[i], refs_held([a, b], p) > 0, "held {i}");
        }
        assert_eq!((uses[3], uses[17], uses[5], uses[far_i]), (1, 2, 1, 0));
        let done = w.try_evict_batch(&idx, [a, b], &batch);
        for (i, d) in done.iter().enumerate() {
            assert_eq!(*d, i != 3 && i != 17, "entry {i}");
            let found = matches!(idx.lookup(&batch[i].1.id), Lookup::Found(_));
            assert_eq!(found, !*d, "entry {i} after the batch");
        }
        // Deleted while held, then reaped in batches as they are let go.
        let (p3, p17) = (batch[3].0, batch[17].0);
        assert!(!w.retire(&idx, [a, b], p3, &batch[3].1));
        assert!(!w.retire(&idx, [a, b], p17, &batch[17].1));
        assert_eq!(w.reap_batch(&idx, [a, b], &[p3, p17]), [false, false]);
        assert!(release(&idx, &a, p3));
        assert!(release(&idx, &a, p17));
        assert_eq!(w.reap_batch(&idx, [a, b], &[p3, p17]), [true, false]);
        assert!(release(&idx, &a, p17));
        assert_eq!(w.reap_batch(&idx, [a, b], &[p17]), [true]);
        assert_eq!(idx.lookup(&batch[17].1.id), Lookup::Absent);
    }

    #[test]
    fn scribbled_entries_are_unusable_never_found_wrongly() {
        let iw = words(16 * ENTRY_WORDS);
        let idx = IndexWords::new(&iw, 16, 77).unwrap();
        let mut w = IndexWriter::new(&idx);
        let rec = Record::sealed(&id(1), 64, 8, b"").unwrap();
        let pos = w.publish(&idx, &rec).unwrap();
        let base = pos as usize * ENTRY_WORDS;
        // Any single changed word makes the entry unusable.
        for word in 0..ENTRY_WORDS {
            let old = iw[base + word].load(Ordering::Relaxed);
            iw[base + word].store(old ^ 0x40, Ordering::Relaxed);
            assert_eq!(
                idx.lookup(&id_words(&id(1))),
                Lookup::Invalid,
                "word {word}"
            );
            iw[base + word].store(old, Ordering::Relaxed);
        }
        // A valid entry copied to another position fails its check there.
        let other = (pos + 1) & 15;
        for word in 0..ENTRY_WORDS {
            let v = iw[base + word].load(Ordering::Relaxed);
            iw[other as usize * ENTRY_WORDS + word].store(v, Ordering::Relaxed);
        }
        assert_eq!(idx.read_entry(other), EntryRead::Invalid);
        // A seq stuck odd: bounded retries, then unusable.
        iw[base].store(iw[base].load(Ordering::Relaxed) | 1, Ordering::Relaxed);
        assert_eq!(idx.read_entry(pos), EntryRead::Unstable);
        assert_eq!(idx.lookup(&id_words(&id(1))), Lookup::Invalid);
        // Unstable but nothing invalid (the copy cleared by the writer).
        w.clear(&idx, other);
        assert_eq!(idx.lookup(&id_words(&id(1))), Lookup::Unknown);
        // The writer does not trust the memory: its next write fixes it.
        w.clear(&idx, pos);
        assert!(matches!(idx.read_entry(pos), EntryRead::Valid(_)));
        // Out-of-range positions and sizes are refused.
        assert_eq!(idx.read_entry(16), EntryRead::Invalid);
        assert!(IndexWords::new(&iw, 32, 0).is_none());
        assert!(IndexWords::new(&iw, 12, 0).is_none());
        assert!(Record::sealed(&id(1), 0, 0, &[0; INLINE_METADATA + 1]).is_none());
    }

    /// The loom models' layout runs the same protocol on 4-word entries.
    #[test]
    fn the_model_layout_stores_two_body_words_and_refuses_the_rest() {
        assert_eq!((ModelEntry::WORDS, ModelEntry::FLAGS_WORD), (4, 2));
        let iw = words(4 * ModelEntry::WORDS);
        let rw = words(4);
        let idx = IndexWords::<ModelEntry>::with_layout(&iw, 4, 9).unwrap();
        assert!(IndexWords::<ModelEntry>::with_layout(&iw, 8, 9).is_none());
        let total = AtomicU64::new(0);
        let tw = words(TOUCHED_WORDS);
        let slots = RefSlots::new(&rw, &total, &tw);
        let mut w = IndexWriter::new(&idx);
        let mut small = [0u8; 28];
        small[0] = 1;
        let rec = Record::sealed(&small, 0, 0, b"").unwrap();
        assert!(rec.fits::<ModelEntry>() && rec.fits::<FullEntry>());
        let big = Record::sealed(&small, 64, 0, b"").unwrap();
        assert!(!big.fits::<ModelEntry>() && big.fits::<FullEntry>());
        assert_eq!(w.publish(&idx, &big), None);
        let pos = w.publish(&idx, &rec).unwrap();
        let Lookup::Found(snap) = idx.lookup(&rec.id) else {
            panic!("not found")
        };
        assert_eq!(snap.record, rec);
        assert!(idx.try_acquire(&slots, &snap));
        assert!(!w.retire(&idx, [slots], pos, &rec));
        assert!(release(&idx, &slots, pos), "the state word is read");
        assert!(w.reap(&idx, [slots], pos));
        assert_eq!(idx.lookup(&rec.id), Lookup::Absent);
        // A record written anyway loses its unstored words: its check word
        // no longer matches.
        let seq = idx.write_entry(pos, 100, &big);
        assert_eq!(seq, 102);
        assert_eq!(idx.read_entry(pos), EntryRead::Invalid);
    }

    #[test]
    fn a_full_probe_window_leaves_objects_unindexed() {
        let iw = words(8 * ENTRY_WORDS);
        let idx = IndexWords::new(&iw, 8, 5).unwrap();
        let mut w = IndexWriter::new(&idx);
        for n in 0..8 {
            assert!(w
                .publish(&idx, &Record::sealed(&id(n), 0, 1, b"").unwrap())
                .is_some());
        }
        assert!(w
            .publish(&idx, &Record::sealed(&id(9), 0, 1, b"").unwrap())
            .is_none());
        for n in 0..8 {
            assert!(matches!(idx.lookup(&id_words(&id(n))), Lookup::Found(_)));
        }
    }
}
