//! Helpers shared by several integration-test binaries (each includes this
//! module with `mod common;` and uses what it needs): per-test worker ids and
//! sessions, and a per-thread allocation counter for the "allocates nothing"
//! tests.

#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmwire::ids::WorkerId;
use shmwire::shm::Session;
use shmwire::transport::TransportConfig;

/// Worker id `n`, unique to this test process (its pid in the last bytes).
pub fn id(n: u8) -> WorkerId {
    let mut b = [n; 28];
    b[24..28].copy_from_slice(&std::process::id().to_le_bytes());
    WorkerId::from_array(b)
}

/// A per-test session under the default root, removed (with everything in
/// it) when dropped.
pub struct Env(pub Session);

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

/// The session of test `test` (its name includes the pid).
pub fn env(test: &str) -> Env {
    Env(Session::open_in(
        shmwire::shm::default_root(),
        &format!("t{}-{test}", std::process::id()),
    )
    .unwrap())
}

/// Transport settings for worker `n` with the session's token.
pub fn cfg(n: u8, session: &Session) -> TransportConfig {
    let token = shmwire::node::load_or_create_token(session).unwrap();
    TransportConfig::new(id(n), token)
}

/// A global allocator that counts the allocations of each thread; install
/// it with `#[global_allocator] static GLOBAL: common::Counting = common::Counting;`
/// and read the count with [`allocs`].
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// The sizes of this thread's last 16 allocations (for a failing
    /// "allocates nothing" test to say what it saw).
    static SIZES: Cell<[usize; 16]> = const { Cell::new([0; 16]) };
}

fn note(size: usize) {
    let _ = ALLOCS.try_with(|c| {
        let n = c.get();
        c.set(n + 1);
        let _ = SIZES.try_with(|s| {
            let mut a = s.get();
            a[(n % 16) as usize] = size;
            s.set(a);
        });
    });
}

/// The sizes in bytes of this thread's last allocations (up to 16, oldest
/// first), to name what a hot path still allocates.
pub fn last_alloc_sizes() -> Vec<usize> {
    let n = allocs();
    let a = SIZES.with(Cell::get);
    let k = n.min(16);
    (n - k..n).map(|i| a[(i % 16) as usize]).collect()
}

// SAFETY: every method forwards to the system allocator unchanged; the only
// addition is a thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) made by this thread so far (counted only
/// where [`Counting`] is the global allocator).
pub fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}
