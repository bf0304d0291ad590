//! Loom model of the owner's reference counting (`src/worker/ref_count.rs`,
//! behind every `ObjectRef`): clones dropped on other threads, frees, and
//! the owner reusing tokens. Each reference's release reaches the owner
//! exactly once (none for a freed one), and a reused token's count is its
//! new reference's alone: a token reused while an old clone still held it
//! would make a later release go missing or come twice.
#![cfg(shmwire_loom)]

use loom::sync::atomic::AtomicUsize;
use loom::sync::atomic::Ordering::SeqCst;
use shmwire::worker::ref_count::RefCounter;

fn taken(owner: &mut RefCounter<u32, ()>) -> Vec<u32> {
    let mut ids = Vec::new();
    owner.take_released(&mut ids);
    ids
}

#[test]
fn the_last_of_two_clones_queues_its_id_once() {
    loom::model(|| {
        let mut owner = RefCounter::new(());
        let r = owner.new_ref(7);
        let c = r.clone();
        let t = loom::thread::spawn(move || drop(c));
        drop(r);
        // Looked at while the other clone may still live.
        let mut ids = taken(&mut owner);
        t.join().unwrap();
        ids.extend(taken(&mut owner));
        assert_eq!(ids, [7]);
        // Its token, reused, counts the new reference alone.
        let r = owner.new_ref(8);
        drop(r);
        assert_eq!(taken(&mut owner), [8]);
    });
}

#[test]
fn a_freed_reference_queues_nothing_and_its_token_waits_for_its_last_clone() {
    loom::model(|| {
        let mut owner = RefCounter::new(());
        let r = owner.new_ref(1);
        let c = r.clone();
        let t = loom::thread::spawn(move || {
            let d = c.clone();
            drop(c);
            drop(d);
        });
        assert!(owner.free(&r));
        drop(r);
        // Made while the other thread's clones may still live: it must not
        // take their token then.
        let next = owner.new_ref(2);
        t.join().unwrap();
        assert_eq!(
            taken(&mut owner),
            Vec::<u32>::new(),
            "a freed reference was queued"
        );
        drop(next);
        assert_eq!(taken(&mut owner), [2]);
        let again = owner.new_ref(3);
        drop(again);
        assert_eq!(taken(&mut owner), [3]);
    });
}

#[test]
fn references_that_outlive_their_owner_queue_nothing() {
    loom::model(|| {
        let mut owner = RefCounter::new(());
        let r = owner.new_ref(9);
        let t = loom::thread::spawn(move || drop(r));
        drop(owner);
        t.join().unwrap();
    });
}

/// The owner's data in the model's tokens: counts its live copies, so a
/// token freed twice (its copy dropped twice) or never is seen.
struct Canary(loom::sync::Arc<AtomicUsize>);

impl Clone for Canary {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, SeqCst);
        Self(loom::sync::Arc::clone(&self.0))
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        assert!(self.0.fetch_sub(1, SeqCst) > 0, "a token freed twice");
    }
}

#[test]
fn an_owner_dropped_while_its_references_live_elsewhere_frees_each_token_once() {
    loom::model(|| {
        let live = loom::sync::Arc::new(AtomicUsize::new(1));
        let mut owner = RefCounter::new(Canary(loom::sync::Arc::clone(&live)));
        let r = owner.new_ref(1);
        let u = owner.new_ref(2);
        let c = r.clone();
        assert!(owner.free(&r));
        drop(r);
        // A freed reference's clone (its token in the owner's freed list)
        // and an unfreed one, dropped while the owner goes: each token is
        // freed exactly once, by one side.
        let t = loom::thread::spawn(move || {
            drop(c);
            drop(u);
        });
        drop(owner);
        t.join().unwrap();
        assert_eq!(live.load(SeqCst), 0, "a token not freed");
    });
}
