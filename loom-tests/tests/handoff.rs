//! Loom model of the owner / helper handoff (`src/wake/handoff.rs`, used
//! for heartbeats on a worker's TCP connections while it runs a task): the
//! helper acts on the owner's resources only while the owner is away,
//! never at the same time as the owner. The resource is a loom cell that
//! both write: loom reports any two writes it does not see ordered.
#![cfg(shmwire_loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use shmwire::wake::handoff::handoff;

#[test]
fn the_helper_acts_only_while_the_owner_is_away() {
    loom::model(|| {
        let socket = Arc::new(UnsafeCell::new(0u32));
        let (mut owner, mut helper) = handoff::<Arc<UnsafeCell<u32>>>();
        owner.add(0, Arc::clone(&socket));
        let t = loom::thread::spawn(move || {
            // The first look sees the absence, the second acts in it.
            for _ in 0..2 {
                // SAFETY (of the model): the handoff is what is checked.
                helper.look(|s| s.with_mut(|v| unsafe { *v += 1 }));
            }
        });
        socket.with_mut(|v| unsafe { *v += 100 });
        let left = owner.away();
        assert!(left);
        // The task: the owner touches none of its resources.
        loom::thread::yield_now();
        owner.back(left);
        socket.with_mut(|v| unsafe { *v += 100 });
        t.join().unwrap();
        let written = socket.with(|v| unsafe { *v });
        assert!(written == 200 || written == 201, "{written}");
    });
}
