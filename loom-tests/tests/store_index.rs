//! Loom models of the store's shared index (`shmwire::store::index`): the
//! seqlock between the service (the only writer of entries) and a reader
//! (`lookup_races_clear`, `get_races_publish`; a rewrite for another object
//! is a clear then a publish, each the same seqlock write), and the Dekker
//! pairs between a client taking or giving back a reference in its own slot
//! and the service evicting or deleting the object.
//!
//! Every model is explored exhaustively (within `LOOM_MAX_PREEMPTIONS`, 2
//! in CI): no duration or permutation cap. That is affordable because the
//! models run the index's code on [`ModelEntry`] entries — `seq`, the first
//! id word, the state word and the check word — instead of the store's 16
//! words: the seqlock code is the same for every layout (only the number of
//! data words between `seq` and the check word differs), and two data
//! words are the least that lets a reader see a torn record.
//!
//! The ordering pairs and the models that exercise them:
//!
//! | pair | models |
//! | --- | --- |
//! | writer: `seq` odd → fence → words → `seq` even (Release) | `lookup_races_clear`, `get_races_publish`, `get_races_eviction` |
//! | reader: `seq` (Acquire) → words → fence(Acquire) → `seq` re-check | `lookup_races_clear`, `get_races_publish`, `get_races_eviction` |
//! | client: touched-group bit (`fetch_or`) → total increment → slot increment → fence → `seq` re-check, against the service's odd `seq` → fence → total load → bit load → slot load | `get_races_eviction`, `delete_races_release_and_take_on_one_total` |
//! | service, a batch: every entry's odd `seq` → one fence → per client the total, the bit words, the slots of the batch's entries in set groups | `batch_eviction_races_a_get` (and `get_races_eviction`: a batch of one) |
//! | service: total and slot loads (Acquire) before the free, against the client's release (slot `fetch_sub` Release → total `fetch_sub` Release) | `get_races_eviction`, `delete_races_last_release`, `delete_races_release_and_take_on_one_total` |
//! | client: release (slot, then total) → fence → state load, against the service's pending state → fence → total load → slot load | `delete_races_last_release`, `delete_races_release_and_take_on_one_total` |
//! | client: repair of a raised slot (compare-exchange Release) → fence → state load, against the same | `delete_races_repair_of_a_raised_slot` |
//! | client: tally raised → slot `fetch_add` (Release), against the repair's slot load (Acquire) → tally load; slot `fetch_sub` → tally decrement (Release), against the repair's tally load (Acquire) → compare-exchange | `repair_races_take_and_release` |
//! | client: private total raised → total `fetch_add` (Release), against the total repair's total load (Acquire) → private total load; total `fetch_sub` → private total decrement (Release), against the repair's private total load (Acquire) → compare-exchange | `repair_of_the_total_races_take_and_release` |
//!
//! The object's bytes are a loom `UnsafeCell`: the client reads them only
//! while it holds a reference, the service writes them only before it
//! publishes the entry or after it took the entry back. Loom's cell
//! tracking fails the model if the two could ever race. The asserts check
//! that a reader never sees another object's fields under the id it asked
//! for, and never reads a torn record that passed the `seq` re-check: the
//! check word would still turn such a read into `Lookup::Invalid` (the
//! slow path), so the models fail on `Invalid`, which only a scribbler
//! could cause, not the service.
//!
//! Which weakened orderings make which model fail (and the three that
//! pass, and why): docs/store.md, "Loom models".
#![cfg(shmwire_loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmwire::store::index::{
    release, release_counted, repair_slot, repair_total, EntryLayout, IndexWords, IndexWriter,
    Lookup, ModelEntry, Record, RefSlots, Snapshot, Tally, STATE_SEALED, TOUCHED_WORDS,
};

const KEY: u64 = 0x5eed;
const ENTRIES: u32 = 1;

/// Explores `f` exhaustively (bounded only by `LOOM_MAX_PREEMPTIONS`) and
/// prints how many executions that took.
fn explore(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let b = loom::model::Builder::new();
    assert!(
        b.max_duration.is_none() && b.max_permutations.is_none(),
        "{name}: the store index models are explored exhaustively; unset LOOM_MAX_DURATION and LOOM_MAX_PERMUTATIONS"
    );
    let start = std::time::Instant::now();
    b.check(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    println!(
        "{name}: {} executions, {:.1} s",
        runs.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
}

struct Shared {
    /// Entries in the index ([`ENTRIES`] but in `batch_eviction_races_a_get`).
    entries: u32,
    index: Vec<AtomicU64>,
    slots: Vec<AtomicU64>,
    /// The client's total: references held over all its slots.
    total: AtomicU64,
    /// The client's touched-group bits (one group: the model's one entry).
    touched: Vec<AtomicU64>,
    /// The private copy of the touched-group bits.
    tally_touched: Vec<AtomicU64>,
    /// The client's private tally (`repair_races_take_and_release`).
    tally: Vec<AtomicU32>,
    /// The tally's total.
    tally_total: AtomicU64,
    /// The object's bytes in the arena.
    data: UnsafeCell<u64>,
}

impl Shared {
    fn new(bytes: u64) -> Arc<Self> {
        Self::with_entries(bytes, ENTRIES)
    }

    fn with_entries(bytes: u64, entries: u32) -> Arc<Self> {
        Arc::new(Self {
            entries,
            index: (0..entries as usize * ModelEntry::WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            slots: (0..entries).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            touched: (0..TOUCHED_WORDS).map(|_| AtomicU64::new(0)).collect(),
            tally_touched: (0..TOUCHED_WORDS).map(|_| AtomicU64::new(0)).collect(),
            tally: (0..entries).map(|_| AtomicU32::new(0)).collect(),
            tally_total: AtomicU64::new(0),
            data: UnsafeCell::new(bytes),
        })
    }

    fn index(&self) -> IndexWords<'_, ModelEntry> {
        IndexWords::with_layout(&self.index, self.entries, KEY).unwrap()
    }

    fn slots(&self) -> RefSlots<'_> {
        RefSlots::new(&self.slots, &self.total, &self.touched)
    }

    fn tally(&self) -> Tally<'_> {
        Tally::new(&self.tally, &self.tally_total, &self.tally_touched)
    }
}

/// Object `id`'s record (what `ModelEntry` stores: the id's first word and
/// the state).
fn record(id: u8) -> Record {
    let mut b = [0u8; 28];
    b[0] = id;
    Record::sealed(&b, 0, 0, b"").unwrap()
}

fn id(n: u8) -> [u64; 4] {
    record(n).id
}

/// A lookup of object 1 by a client: `Invalid` (a torn read that passed
/// the `seq` re-check) fails the model; a snapshot found must be object 1's.
fn lookup_1(ix: &IndexWords<'_, ModelEntry>) -> Lookup {
    let l = ix.lookup(&id(1));
    match &l {
        Lookup::Found(snap) => {
            assert_eq!(snap.record, record(1), "object 1's fields")
        }
        Lookup::Invalid => panic!("a torn entry passed the seq re-check"),
        Lookup::Absent | Lookup::Unknown => {}
    }
    l
}

/// Client: look up object 1, take a reference, read its bytes, give the
/// reference back; returns whether it read.
fn client_get(s: &Shared) -> bool {
    let ix = s.index();
    let Lookup::Found(snap) = lookup_1(&ix) else {
        return false;
    };
    if snap.record.state != STATE_SEALED || !ix.try_acquire(&s.slots(), &snap) {
        return false;
    }
    // SAFETY (model): read while holding a reference.
    let v = s.data.with(|p| unsafe { *p });
    assert_eq!(v, 7, "the object's bytes while held");
    release(&ix, &s.slots(), snap.pos);
    true
}

/// Client: take a reference on `snap`'s object counted in the private
/// tally, read its bytes, give the reference back; returns whether the
/// release said to tell the service (false when the take failed).
fn counted_get(s: &Shared, snap: &Snapshot) -> bool {
    if !s.index().try_acquire_counted(&s.slots(), &s.tally(), snap) {
        return false;
    }
    // SAFETY (model): read while holding the reference.
    let v = s.data.with(|p| unsafe { *p });
    assert_eq!(v, 7, "the object's bytes while held");
    release_counted(&s.index(), &s.slots(), &s.tally(), snap.pos)
}

/// A get racing the publication of a new object: the service writes the
/// object's bytes (standing in for the producer, whose writes reach the
/// service with its seal) and then publishes the entry; a client that finds
/// the entry must see those bytes (the even `seq` Release → the reader's
/// `seq` Acquire), and one that reads the entry mid-write must not find it.
#[test]
fn get_races_publish() {
    explore("get_races_publish", || {
        let s = Shared::new(0);
        let mut w = IndexWriter::new(&s.index());
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || client_get(&s2));
        // SAFETY (model): written before the entry is published.
        s.data.with_mut(|p| unsafe { *p = 7 });
        w.publish(&s.index(), &record(1)).unwrap();
        t.join().unwrap();
    });
}

/// A get racing an eviction of a batch of two entries (one fence for both
/// retractions, one walk over the clients, `IndexWriter::try_evict_batch`,
/// as an eviction pass makes): the object the client reads is freed only
/// when it holds no reference, and the other entry of the batch is taken
/// back either way.
#[test]
fn batch_eviction_races_a_get() {
    explore("batch_eviction_races_a_get", || {
        let s = Shared::with_entries(7, 2);
        let mut w = IndexWriter::new(&s.index());
        let p1 = w.publish(&s.index(), &record(1)).unwrap();
        let p2 = w.publish(&s.index(), &record(2)).unwrap();
        assert_ne!(p1, p2);
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || client_get(&s2));
        let done = w.try_evict_batch(&s.index(), [s.slots()], &[(p2, record(2)), (p1, record(1))]);
        assert!(done[0], "nobody holds object 2");
        if done[1] {
            // SAFETY (model): written only after the entry was taken back.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        t.join().unwrap();
    });
}

/// A get racing an eviction: the service frees (writes) the bytes only when
/// no reference is held; the client reads them only when it holds one.
#[test]
fn get_races_eviction() {
    explore("get_races_eviction", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || client_get(&s2));
        if w.try_evict(&s.index(), [s.slots()], pos, &record(1)) {
            // Reuse of the memory by another object.
            // SAFETY (model): written only after the entry was taken back.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        t.join().unwrap();
    });
}

/// A reader racing the service rewriting the entry for another object (a
/// clear, then object 2's publish, each a seqlock write): the reader finds
/// object 1 with object 1's fields, or not at all — never a torn mix of the
/// writes, and never object 2 under object 1's id.
#[test]
fn lookup_races_clear() {
    explore("lookup_races_clear", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || {
            lookup_1(&s2.index());
        });
        w.clear(&s.index(), pos);
        assert_eq!(w.publish(&s.index(), &record(2)), Some(pos));
        t.join().unwrap();
    });
}

/// A delete racing the release of the last reference: either the service
/// sees the release and frees the object itself, or the client sees the
/// pending delete and tells the service, whose reap then frees it. The
/// object is freed exactly once and never while read.
#[test]
fn delete_races_last_release() {
    explore("delete_races_last_release", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        // The client holds a reference already.
        let Lookup::Found(snap) = s.index().lookup(&id(1)) else {
            panic!("published")
        };
        assert!(s.index().try_acquire(&s.slots(), &snap));
        let s2 = Arc::clone(&s);
        let client = thread::spawn(move || {
            // SAFETY (model): read while holding the reference.
            let v = s2.data.with(|p| unsafe { *p });
            assert_eq!(v, 7);
            release(&s2.index(), &s2.slots(), snap.pos)
        });
        delete_while(&s, &mut w, pos, client, "last release");
    });
}

/// The service deletes object 1 at `pos` while `client` (a thread that
/// returns whether it told the service) lets go of it: the object is freed
/// exactly once, never while read — by the delete itself, or by the reap
/// the client's word asks for — and no new reference is taken through the
/// retired entry.
fn delete_while(
    s: &Shared,
    w: &mut IndexWriter,
    pos: u32,
    client: thread::JoinHandle<bool>,
    what: &str,
) {
    let freed = w.retire(&s.index(), [s.slots()], pos, &record(1));
    if freed {
        // SAFETY (model): freed, nobody holds it.
        s.data.with_mut(|p| unsafe { *p = 99 });
    }
    let told = client.join().unwrap();
    if !freed {
        assert!(told, "a held delete must hear of the {what}");
        assert!(
            w.reap(&s.index(), [s.slots()], pos),
            "nobody holds it any more"
        );
        // SAFETY (model): freed, nobody holds it.
        s.data.with_mut(|p| unsafe { *p = 99 });
    }
    assert!(matches!(s.index().lookup(&id(1)), Lookup::Absent));
}

/// A delete racing the repair of a slot another process raised (the client
/// holds nothing; the slot says one reference): as with the last release,
/// either the service sees the repaired slot and frees the object itself,
/// or the client sees the pending delete and tells the service, whose reap
/// then frees it. The object is freed exactly once.
#[test]
fn delete_races_repair_of_a_raised_slot() {
    explore("delete_races_repair_of_a_raised_slot", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        // Another process wrote one reference into the client's slot (and
        // its total and the entry's group bit, or the service would not
        // read the slot).
        // Relaxed: before the threads start (spawn orders them).
        s.slots[pos as usize].store(1, Ordering::Relaxed);
        s.total.store(1, Ordering::Relaxed);
        s.touched[0].store(1, Ordering::Relaxed);
        let s2 = Arc::clone(&s);
        let client = thread::spawn(move || {
            let tell = repair_slot(&s2.index(), &s2.slots(), &s2.tally(), pos);
            assert!(tell.is_some(), "the slot differed from the tally");
            tell == Some(true)
        });
        delete_while(&s, &mut w, pos, client, "repair");
    });
}

/// The client's own take, read and release of an object racing a repair
/// of its slot (which another process raised by 2 before) while the
/// service deletes the object: the repair never lowers the slot below the
/// reference the client holds (else the service could free the object
/// while it is read — loom's cell tracking fails the model), and once the
/// client let go and a repair ran, the object is freed.
#[test]
fn repair_races_take_and_release() {
    explore("repair_races_take_and_release", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        // Relaxed: before the threads start (spawn orders them).
        s.slots[pos as usize].store(2, Ordering::Relaxed);
        s.total.store(2, Ordering::Relaxed);
        s.touched[0].store(1, Ordering::Relaxed);
        let Lookup::Found(snap) = s.index().lookup(&id(1)) else {
            panic!("published")
        };
        let s2 = Arc::clone(&s);
        let client = thread::spawn(move || {
            counted_get(&s2, &snap);
        });
        let s3 = Arc::clone(&s);
        let repair = thread::spawn(move || {
            repair_slot(&s3.index(), &s3.slots(), &s3.tally(), pos);
        });
        let freed = w.retire(&s.index(), [s.slots()], pos, &record(1));
        if freed {
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        client.join().unwrap();
        repair.join().unwrap();
        if !freed {
            // Whatever the race left, one more repair with nobody taking
            // brings the slot down to the tally, now 0.
            repair_slot(&s.index(), &s.slots(), &s.tally(), pos);
            // Relaxed: every thread joined.
            assert_eq!(
                s.slots[pos as usize].load(Ordering::Relaxed) & 0xffff_ffff,
                0
            );
            assert!(w.reap(&s.index(), [s.slots()], pos), "nobody holds it");
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
    });
}

/// One client, two threads sharing its total: one gives back the reference
/// the client held while the other takes a new one on the same object and
/// reads it, and the service deletes the object meanwhile. The total goes
/// 1 → 2 → 1 or 1 → 0 → 1 under the service's look: a total of 0 is only
/// ever read when the slot holds nothing, so the object is freed exactly
/// once, never while the second thread reads it, and only after both let
/// go (by the delete, or by a reap).
#[test]
fn delete_races_release_and_take_on_one_total() {
    explore("delete_races_release_and_take_on_one_total", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        let Lookup::Found(snap) = s.index().lookup(&id(1)) else {
            panic!("published")
        };
        assert!(s.index().try_acquire(&s.slots(), &snap));
        let s2 = Arc::clone(&s);
        let giver = thread::spawn(move || release(&s2.index(), &s2.slots(), snap.pos));
        let s3 = Arc::clone(&s);
        let taker = thread::spawn(move || {
            if !s3.index().try_acquire(&s3.slots(), &snap) {
                return (false, false);
            }
            // SAFETY (model): read while holding the reference.
            let v = s3.data.with(|p| unsafe { *p });
            assert_eq!(v, 7, "the object's bytes while held");
            (true, release(&s3.index(), &s3.slots(), snap.pos))
        });
        let freed = w.retire(&s.index(), [s.slots()], pos, &record(1));
        if freed {
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        let gave_told = giver.join().unwrap();
        let (took, took_told) = taker.join().unwrap();
        if !freed {
            // A take that backs off (it saw the delete) tells nobody: the
            // service's reap backstop finds such an entry. A take that
            // held the object released it last, or the delete saw it.
            assert!(
                gave_told || took_told || !took,
                "a held delete must hear of the last release"
            );
            assert!(w.reap(&s.index(), [s.slots()], pos), "nobody holds it");
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        // Relaxed: every thread joined. No reference is left in the total.
        assert_eq!(s.total.load(Ordering::Relaxed) & 0xffff_ffff, 0);
    });
}

/// The client's own take, read and release of an object racing a repair
/// of its total (which another process raised by 2 before: the slot is
/// honest) while the service deletes the object: the repair never lowers
/// the total's references below the one the client holds (else the
/// service would skip the client's slot and free the object while it is
/// read — loom's cell tracking fails the model), and once the client let
/// go and a repair ran, the total says nothing is held and the object is
/// freed.
#[test]
fn repair_of_the_total_races_take_and_release() {
    explore("repair_of_the_total_races_take_and_release", || {
        let s = Shared::new(7);
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1)).unwrap();
        // Relaxed: before the threads start (spawn orders it).
        s.total.store(2, Ordering::Relaxed);
        let Lookup::Found(snap) = s.index().lookup(&id(1)) else {
            panic!("published")
        };
        let s2 = Arc::clone(&s);
        let client = thread::spawn(move || counted_get(&s2, &snap));
        let s3 = Arc::clone(&s);
        let repair = thread::spawn(move || {
            repair_total(&s3.slots(), &s3.tally(), true);
        });
        let freed = w.retire(&s.index(), [s.slots()], pos, &record(1));
        if freed {
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        client.join().unwrap();
        repair.join().unwrap();
        // Whatever the race left, one more repair with nobody taking
        // brings the total's references down to the tally's, now 0.
        repair_total(&s.slots(), &s.tally(), true);
        // Relaxed: every thread joined.
        assert_eq!(s.total.load(Ordering::Relaxed) & 0xffff_ffff, 0);
        if !freed {
            assert!(w.reap(&s.index(), [s.slots()], pos), "nobody holds it");
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
    });
}
