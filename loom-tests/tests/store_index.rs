//! Loom models of the store's shared index (`shmwire::store::index`): the
//! seqlock between the service (the only writer of entries) and a reader
//! (`lookup_races_clear`; a rewrite for another object is a clear then a
//! publish, each the same seqlock write),
//! and the Dekker pairs between a client taking or giving back a reference
//! in its own slot and the service evicting or deleting the object.
//!
//! The object's bytes are a loom `UnsafeCell`: the client reads them only
//! while it holds a reference, the service "reuses" them (writes) only
//! after it took the entry back. Loom's cell tracking fails the model if
//! the two could ever race, and the asserts check that a reader never sees
//! another object's bytes or fields under the id it asked for.
#![cfg(shmwire_loom)]

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use shmwire::store::index::{
    id_words, release, IndexWords, IndexWriter, Lookup, Record, RefSlots, ENTRY_WORDS, STATE_SEALED,
};

const KEY: u64 = 0x5eed;

/// Explores a seqlock model for at most a minute: a reader's 16-word
/// snapshot can see each word from either side of a write, which makes
/// the full space too large for CI. The Dekker model below
/// (`delete_races_last_release`) is explored exhaustively.
fn bounded(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.max_duration.is_none() {
        b.max_duration = Some(std::time::Duration::from_secs(60));
    }
    b.check(f);
}
const ENTRIES: u32 = 1;

struct Shared {
    index: Vec<AtomicU64>,
    slots: Vec<AtomicU64>,
    /// The object's bytes in the arena.
    data: UnsafeCell<u64>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            index: (0..ENTRIES as usize * ENTRY_WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            slots: (0..ENTRIES).map(|_| AtomicU64::new(0)).collect(),
            data: UnsafeCell::new(7),
        })
    }

    fn index(&self) -> IndexWords<'_> {
        IndexWords::new(&self.index, ENTRIES, KEY).unwrap()
    }

    fn slots(&self) -> RefSlots<'_> {
        RefSlots::new(&self.slots)
    }
}

fn record(id: u8, offset: u64) -> Record {
    Record::sealed(&[id; 28], offset, 8, b"").unwrap()
}

/// Client: look up object 1, take a reference, read its bytes, give the
/// reference back; returns whether it read.
fn client_get(s: &Shared) -> bool {
    let ix = s.index();
    let Lookup::Found(snap) = ix.lookup(&id_words(&[1; 28])) else {
        return false;
    };
    assert_eq!(snap.record.offset, 64, "object 1's fields");
    if snap.record.state != STATE_SEALED || !ix.try_acquire(&s.slots(), &snap) {
        return false;
    }
    // SAFETY (model): read while holding a reference.
    let v = s.data.with(|p| unsafe { *p });
    assert_eq!(v, 7, "the object's bytes while held");
    release(&ix, &s.slots(), snap.pos);
    true
}

/// A get racing an eviction: the service frees (writes) the bytes only when
/// no reference is held; the client reads them only when it holds one.
#[test]
fn get_races_eviction() {
    bounded(|| {
        let s = Shared::new();
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1, 64)).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || client_get(&s2));
        if w.try_evict(&s.index(), [s.slots()], pos, &record(1, 64)) {
            // Reuse of the memory by another object.
            // SAFETY (model): written only after the entry was taken back.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        t.join().unwrap();
    });
}

/// A reader racing the service clearing the entry (an eviction or delete
/// that found no holder): the reader finds object 1 with object 1's
/// fields, or nothing — never a torn mix of the two writes.
#[test]
fn lookup_races_clear() {
    bounded(|| {
        let s = Shared::new();
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1, 64)).unwrap();
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || match s2.index().lookup(&id_words(&[1; 28])) {
            Lookup::Found(snap) => {
                assert_eq!(snap.record, record(1, 64));
            }
            Lookup::Absent | Lookup::Unknown => {}
        });
        w.clear(&s.index(), pos);
        t.join().unwrap();
    });
}

/// A delete racing the release of the last reference: either the service
/// sees the release and frees the object itself, or the client sees the
/// pending delete and tells the service, whose reap then frees it. The
/// object is freed exactly once and never while read.
#[test]
fn delete_races_last_release() {
    loom::model(|| {
        let s = Shared::new();
        let mut w = IndexWriter::new(&s.index());
        let pos = w.publish(&s.index(), &record(1, 64)).unwrap();
        // The client holds a reference already.
        let Lookup::Found(snap) = s.index().lookup(&id_words(&[1; 28])) else {
            panic!("published")
        };
        assert!(s.index().try_acquire(&s.slots(), &snap));
        let told = Arc::new(AtomicBool::new(false));
        let (s2, told2) = (Arc::clone(&s), Arc::clone(&told));
        let t = thread::spawn(move || {
            // SAFETY (model): read while holding the reference.
            let v = s2.data.with(|p| unsafe { *p });
            assert_eq!(v, 7);
            if release(&s2.index(), &s2.slots(), snap.pos) {
                // Relaxed: joined below.
                told2.store(true, Ordering::Relaxed);
            }
        });
        let mut freed = w.retire(&s.index(), [s.slots()], pos, &record(1, 64));
        if freed {
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        t.join().unwrap();
        if !freed {
            assert!(
                told.load(Ordering::Relaxed),
                "a held delete must hear of the last release"
            );
            freed = w.reap(&s.index(), [s.slots()], pos);
            assert!(freed, "nobody holds it any more");
            // SAFETY (model): freed, nobody holds it.
            s.data.with_mut(|p| unsafe { *p = 99 });
        }
        // No new reference through a retired entry.
        assert!(matches!(
            s.index().lookup(&id_words(&[1; 28])),
            Lookup::Absent
        ));
    });
}
