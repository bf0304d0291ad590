//! Lending an owner thread's resources to a helper thread while the owner
//! is away.
//!
//! The owner of some resources (a worker's TCP connections) is sometimes
//! away for long (running a task); a helper may then act on them (write a
//! heartbeat, `transport::heartbeat`), but never while the owner acts on
//! them itself. [`handoff`] makes the two sides: the owner marks each
//! absence with [`Owner::away`] and [`Owner::back`], the helper's
//! [`Helper::look`] acts on the registered resources only inside an absence
//! it already saw at its previous look (a short absence never costs an
//! action) and only while the owner cannot come back.
//!
//! ## Handoff (`state`)
//! `OWNED` → (owner: `away`, `Release`) `AWAY` → (helper: CAS `Acquire`)
//! `ACTING` → (helper: `Release`) `AWAY` → (owner: `back`, CAS `Acquire`,
//! spinning while `ACTING`) `OWNED`. The owner's `Release` store pairs with
//! the helper's `Acquire` CAS (what the owner did before leaving is ordered
//! before the helper's action); the helper's `Release` store pairs with the
//! owner's `Acquire` CAS (the helper's action is ordered before what the
//! owner does next). Modelled in `loom-tests/tests/handoff.rs`.

use crate::sync::{spin_loop, Arc, AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering};

/// The owner holds its resources.
const OWNED: u32 = 0;
/// The owner is away: the helper may take the resources.
const AWAY: u32 = 1;
/// The helper acts on them.
const ACTING: u32 = 2;

/// What the owner and its helper share.
#[derive(Debug)]
struct Shared<R> {
    /// `OWNED`, `AWAY` or `ACTING` (see the module docs).
    state: AtomicU32,
    /// Counts the owner's absences (the helper acts only in an absence it
    /// saw at its previous look).
    absence: AtomicU64,
    /// The registered resources by key; changed by the owner, read by the
    /// helper while `ACTING`.
    items: Mutex<Vec<(usize, R)>>,
}

/// The owner's side of a [`handoff`].
#[derive(Debug)]
pub struct Owner<R> {
    shared: Arc<Shared<R>>,
    /// Registered resources, counted on the owner's thread (the check that
    /// makes [`Owner::away`] free without any).
    count: usize,
    /// The owner's absences so far (its own copy of `absence`).
    absences: u64,
    /// Lend even with nothing registered ([`Owner::lend_always`]).
    always: bool,
}

/// The helper's side of a [`handoff`].
#[derive(Debug)]
pub struct Helper<R> {
    shared: Arc<Shared<R>>,
    /// The owner's absence seen at the last look, if it was away.
    seen: Option<u64>,
}

/// An owner holding no resources yet, and its helper.
pub fn handoff<R>() -> (Owner<R>, Helper<R>) {
    let shared = Arc::new(Shared {
        state: AtomicU32::new(OWNED),
        absence: AtomicU64::new(0),
        items: Mutex::new(Vec::new()),
    });
    let helper = Helper {
        shared: Arc::clone(&shared),
        seen: None,
    };
    let owner = Owner {
        shared,
        count: 0,
        absences: 0,
        always: false,
    };
    (owner, helper)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock still holds a consistent list (pushes and retains).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R> Owner<R> {
    /// Registers `item` under `key` (replacing one under the same key).
    /// Call while holding the resources (not between [`Owner::away`] and
    /// [`Owner::back`]).
    pub fn add(&mut self, key: usize, item: R) {
        let mut items = lock(&self.shared.items);
        items.retain(|(k, _)| *k != key);
        items.push((key, item));
        self.count = items.len();
    }

    /// Forgets the resource under `key` (before it goes away: the helper
    /// acts only on registered ones).
    pub fn remove(&mut self, key: usize) {
        if self.count == 0 {
            return;
        }
        let mut items = lock(&self.shared.items);
        items.retain(|(k, _)| *k != key);
        self.count = items.len();
    }

    /// Makes every absence a lending one, also with no resource registered
    /// (a helper with work of its own to do while the owner is away: a
    /// worker's accepting of callers, `transport::heartbeat::Heartbeats`).
    pub fn lend_always(&mut self) {
        self.always = true;
    }

    /// Leaves the resources to the helper. Costs two stores when some are
    /// registered, one compare otherwise. Returns whether it left: pass
    /// that to [`Owner::back`].
    #[inline]
    pub fn away(&mut self) -> bool {
        if self.count == 0 && !self.always {
            return false;
        }
        self.absences = self.absences.wrapping_add(1);
        // No partner: the helper compares it with its previous look only.
        self.shared.absence.store(self.absences, Ordering::Relaxed);
        // Release: pairs with the helper's Acquire CAS in `look`.
        self.shared.state.store(AWAY, Ordering::Release);
        true
    }

    /// Takes the resources back, waiting while the helper finishes acting
    /// on them. `left` is what [`Owner::away`] returned.
    #[inline]
    pub fn back(&mut self, left: bool) {
        if !left {
            return;
        }
        // Acquire: pairs with the helper's Release store in `look`.
        while self
            .shared
            .state
            .compare_exchange_weak(AWAY, OWNED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
    }
}

/// The owner's absence from [`Owner::lend`] to its drop: it comes back when
/// the guard drops, also if what it did meanwhile panicked (so the helper
/// never acts beside an owner that unwound and carried on).
#[derive(Debug)]
pub struct Lent<'a, R> {
    owner: &'a mut Owner<R>,
    left: bool,
}

impl<R> Drop for Lent<'_, R> {
    #[inline]
    fn drop(&mut self) {
        self.owner.back(self.left);
    }
}

impl<R> Owner<R> {
    /// [`Owner::away`] until the returned guard drops ([`Owner::back`]).
    #[inline]
    pub fn lend(&mut self) -> Lent<'_, R> {
        let left = self.away();
        Lent { owner: self, left }
    }
}

impl<R> Helper<R> {
    /// One look: if the owner is away in the same absence as at the last
    /// look, takes the resources, calls `act` on each registered one, and
    /// hands them back. `act` runs only while the owner is away and cannot
    /// come back; the owner waits for it in [`Owner::back`], so it should
    /// be short (a few system calls that never block). Returns whether it
    /// acted (the owner was away in the same absence at both looks).
    pub fn look(&mut self, mut act: impl FnMut(&R)) -> bool {
        let seen = self.seen.take();
        if self.shared.state.load(Ordering::Relaxed) != AWAY {
            return false;
        }
        let now = self.shared.absence.load(Ordering::Relaxed);
        if seen != Some(now) {
            self.seen = Some(now);
            return false;
        }
        // Acquire: pairs with the owner's Release store in `away`.
        if self
            .shared
            .state
            .compare_exchange(AWAY, ACTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // (Had the owner come back and left again between the loads, the
        // action is still due: it was away at both looks.)
        for (_, item) in lock(&self.shared.items).iter() {
            act(item);
        }
        self.seen = Some(now);
        // Release: pairs with the owner's Acquire CAS in `back`.
        self.shared.state.store(AWAY, Ordering::Release);
        true
    }

    /// Whether the last [`Helper::look`] found the owner away: the first
    /// sight of an absence (no action yet) or one it acted in.
    pub fn watching(&self) -> bool {
        self.seen.is_some()
    }
}

#[cfg(all(test, not(shmwire_loom)))]
mod tests {
    use super::*;

    /// The helper acts only in an absence it saw at its previous look (a
    /// short one costs nothing), on every registered resource, and only
    /// while the owner is away.
    #[test]
    fn a_look_acts_only_in_an_absence_it_saw_before() {
        let (mut owner, mut helper) = handoff::<u32>();
        // Nothing registered: leaving costs nothing and is not seen.
        assert!(!owner.away());
        owner.add(1, 10);
        owner.add(2, 20);
        owner.add(2, 21);
        let mut acts = Vec::new();
        helper.look(|r| acts.push(*r));
        assert!(acts.is_empty(), "the owner holds its resources");
        assert!(!helper.watching());
        let left = owner.away();
        helper.look(|_| panic!("first sight of the absence"));
        assert!(helper.watching(), "the absence is seen");
        helper.look(|r| acts.push(*r));
        assert_eq!(acts, [10, 21]);
        helper.look(|r| acts.push(*r));
        assert_eq!(acts.len(), 4, "every look while the absence lasts");
        owner.back(left);
        helper.look(|_| panic!("the owner is back"));
        assert!(!helper.watching());
        // Short absences between looks: never an action.
        for _ in 0..3 {
            let left = owner.away();
            helper.look(|_| panic!("a new absence each time"));
            owner.back(left);
        }
        owner.remove(1);
        owner.remove(2);
        assert!(!owner.away());
    }

    /// A lent absence ends when its guard drops, also by a panic.
    #[test]
    fn a_panic_in_the_absence_still_brings_the_owner_back() {
        let (mut owner, mut helper) = handoff::<u32>();
        owner.add(1, 10);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _lent = owner.lend();
            helper.look(|_| {});
            panic!("the task");
        }));
        assert!(panicked.is_err());
        helper.look(|_| panic!("the owner came back"));
        helper.look(|_| panic!("the owner came back"));
        let lent = owner.lend();
        drop(lent);
        helper.look(|_| panic!("the owner came back"));
    }
}
