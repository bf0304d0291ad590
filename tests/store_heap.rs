//! What an object and a holder really cost the service's heap, against
//! what the table charges them (`ENTRY_OVERHEAD` + metadata per object,
//! `HOLDER_OVERHEAD` per holding client) on the metadata capacity: the
//! charge is what bounds a node's memory for its objects (docs/store.md,
//! "Metadata capacity"), so it must not be below the real cost. Measured
//! with a global allocator that counts live bytes; one test in this
//! binary, so no other thread allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use shmwire::ids::ObjectId;
use shmwire::store::{ObjectTable, ENTRY_OVERHEAD, HOLDER_OVERHEAD};

/// The system allocator, counting the bytes live (requested sizes).
struct LiveBytes;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every method forwards to the system allocator unchanged; the
// counter is a side effect only.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

fn oid(n: u32) -> ObjectId {
    let mut b = [0x5a_u8; 28];
    b[..4].copy_from_slice(&n.to_le_bytes());
    ObjectId::from_array(b)
}

/// Objects sealed and released by their creator (evictable, in the LRU),
/// then held by more clients: after every 1,000 objects (holds), the heap
/// the table holds per object (per hold) stays within its charge — at the
/// worst point, just after a map grew.
#[test]
fn an_object_and_its_holders_cost_the_heap_no_more_than_they_are_charged() {
    const N: u32 = 60_000;
    const META: usize = 8;
    let mut t = ObjectTable::new(1 << 30).unwrap();
    let base = LIVE.load(Relaxed);
    let mut worst = 0.0f64;
    for n in 0..N {
        t.create(1, oid(n), 64, vec![7; META]).unwrap();
        t.seal(1, oid(n)).unwrap();
        t.release(1, oid(n)).unwrap();
        if (n + 1) % 1_000 == 0 {
            let per = (LIVE.load(Relaxed) - base) as f64 / f64::from(n + 1);
            worst = worst.max(per);
        }
    }
    let charge = (ENTRY_OVERHEAD as usize + META) as f64;
    println!("an object: at worst {worst:.0} bytes of heap, charged {charge}");
    assert!(
        worst <= charge,
        "an object costs up to {worst:.0} bytes of the service's heap, charged {charge}"
    );
    // A second client holds each (out of the LRU now: what that frees is
    // not a holder's), then eight more clients hold the first 5,000 each:
    // the cost per hold, the objects' holder maps growing (3 to 4, to 8
    // to 16 buckets) and each client's set of what it holds with them.
    for n in 0..N {
        assert!(t.get(2, oid(n)).unwrap().is_some());
    }
    let held_base = LIVE.load(Relaxed);
    let mut worst_holder = 0.0f64;
    let mut holds = 0u32;
    for client in 3..11 {
        for n in 0..5_000 {
            assert!(t.get(client, oid(n)).unwrap().is_some());
            holds += 1;
            if holds % 1_000 == 0 {
                let per = (LIVE.load(Relaxed) - held_base) as f64 / f64::from(holds);
                worst_holder = worst_holder.max(per);
            }
        }
    }
    println!(
        "a holder: at worst {worst_holder:.0} bytes of heap per hold, charged {HOLDER_OVERHEAD}"
    );
    assert!(
        worst_holder <= HOLDER_OVERHEAD as f64,
        "a holder costs up to {worst_holder:.0} bytes per hold, charged {HOLDER_OVERHEAD}"
    );
    // Every holder lets go: the objects, held by nobody, are back within
    // their own charge — the holders' maps do not keep their peak size
    // (the attack on `3821be7`: 500 holders each of 1,000 objects, then
    // let go, left 20 MiB of empty maps against a 4 MiB capacity).
    for client in 2..11 {
        let upto = if client == 2 { N } else { 5_000 };
        for n in 0..upto {
            t.release(client, oid(n)).unwrap();
        }
    }
    let after = (LIVE.load(Relaxed) - base) as f64 / f64::from(N);
    println!("an object, every holder gone: {after:.0} bytes of heap, charged {charge}");
    assert!(
        after <= charge,
        "objects nobody holds keep {after:.0} bytes each, charged {charge}"
    );
    drop(t);
    // And objects that had many holders at once (200 each).
    let mut t = ObjectTable::new(1 << 30).unwrap();
    let base = LIVE.load(Relaxed);
    for n in 0..1_000 {
        t.create(1, oid(n), 64, vec![7; META]).unwrap();
        t.seal(1, oid(n)).unwrap();
        t.release(1, oid(n)).unwrap();
    }
    for client in 2..202 {
        for n in 0..1_000 {
            assert!(t.get(client, oid(n)).unwrap().is_some());
        }
    }
    for client in 2..202 {
        for n in 0..1_000 {
            t.release(client, oid(n)).unwrap();
        }
    }
    let after = (LIVE.load(Relaxed) - base) as f64 / 1_000.0;
    println!("an object that had 200 holders, all gone: {after:.0} bytes of heap");
    assert!(
        after <= charge,
        "objects that had 200 holders keep {after:.0} bytes each, charged {charge}"
    );
}
