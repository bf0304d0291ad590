//! [`SeqMap`]: a map from sequence numbers (actor counters) to values,
//! for keys that mostly arrive in ascending order and leave from the front.
//!
//! The ordering layer keeps tasks by actor counter: queued, in flight,
//! completed out of order, executed and not yet acknowledged. Ray keeps
//! each in a `std::map`; shmwire did the same with `BTreeMap`, which
//! allocates a node whenever a map goes from empty to one entry and frees
//! it when the entry leaves: on a warm sync call (one task in every map at
//! a time) that was a `malloc`/`free` pair and a tree walk per map and per
//! call. Here the entries sit in a `VecDeque` sorted by key, so the common
//! cases — insert above the last key, look up or remove the first — are
//! O(1) and reuse the deque's memory; a key found by its distance from the
//! first key when the keys are dense, else by binary search.
//!
//! An entry removed from the middle (a reply that overtook an earlier one)
//! leaves a hole, skipped by every read and trimmed when it reaches either
//! end; the deque is compacted when holes outnumber the entries (amortised
//! O(1) per removal). An insert below the last key (a retry, a re-sent
//! request) is a binary search and a `VecDeque::insert`.

use std::collections::VecDeque;

/// Holes (removed entries) kept beyond the live entries before a compaction.
const SLACK: usize = 32;

/// An ordered map from `u64` keys to `V` (see the module docs). Iteration
/// is in ascending key order, as `BTreeMap`'s.
#[derive(Clone)]
pub(crate) struct SeqMap<V> {
    /// Sorted by key, strictly ascending; `None` is a hole. The first and
    /// the last slot are never holes.
    slots: VecDeque<(u64, Option<V>)>,
    /// Slots that are not holes.
    live: usize,
}

impl<V> Default for SeqMap<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for SeqMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> SeqMap<V> {
    /// An empty map (allocates nothing).
    pub(crate) const fn new() -> Self {
        Self {
            slots: VecDeque::new(),
            live: 0,
        }
    }

    /// Entries in the map.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Whether the map has no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The slot holding `key`: `Ok(index)`, or `Err(index)` where it would go.
    fn find(&self, key: u64) -> Result<usize, usize> {
        let (Some(&(first, _)), Some(&(last, _))) = (self.slots.front(), self.slots.back()) else {
            return Err(0);
        };
        if key > last {
            return Err(self.slots.len());
        }
        if key < first {
            return Err(0);
        }
        // Dense keys: the slot is `key - first` places in.
        if let Ok(i) = usize::try_from(key - first) {
            if self.slots.get(i).is_some_and(|s| s.0 == key) {
                return Ok(i);
            }
        }
        self.slots.binary_search_by_key(&key, |s| s.0)
    }

    /// Inserts `value` under `key`, returning the value it replaced.
    pub(crate) fn insert(&mut self, key: u64, value: V) -> Option<V> {
        match self.find(key) {
            Ok(i) => {
                let old = self.slots[i].1.replace(value);
                if old.is_none() {
                    self.live += 1;
                }
                old
            }
            Err(i) => {
                if i == self.slots.len() {
                    self.slots.push_back((key, Some(value)));
                } else {
                    self.slots.insert(i, (key, Some(value)));
                }
                self.live += 1;
                None
            }
        }
    }

    /// The value under `key`.
    pub(crate) fn get(&self, key: u64) -> Option<&V> {
        let i = self.find(key).ok()?;
        self.slots[i].1.as_ref()
    }

    /// The value under `key`, mutably.
    pub(crate) fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let i = self.find(key).ok()?;
        self.slots[i].1.as_mut()
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Removes and returns the value under `key`.
    pub(crate) fn remove(&mut self, key: u64) -> Option<V> {
        let i = self.find(key).ok()?;
        let v = self.slots[i].1.take()?;
        self.live -= 1;
        self.tidy();
        Some(v)
    }

    /// The entry with the smallest key.
    pub(crate) fn first(&self) -> Option<(u64, &V)> {
        let (k, v) = self.slots.front()?;
        v.as_ref().map(|v| (*k, v))
    }

    /// Removes and returns the entry with the smallest key.
    pub(crate) fn pop_first(&mut self) -> Option<(u64, V)> {
        let (k, v) = self.slots.pop_front()?;
        self.live -= 1;
        self.tidy();
        v.map(|v| (k, v))
    }

    /// Removes every entry (keeps the memory).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.live = 0;
    }

    /// The entries in ascending key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.slots
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
    }

    /// Restores the invariants after a removal: no hole at either end,
    /// and no more holes than `live + SLACK`.
    fn tidy(&mut self) {
        while self.slots.front().is_some_and(|s| s.1.is_none()) {
            self.slots.pop_front();
        }
        while self.slots.back().is_some_and(|s| s.1.is_none()) {
            self.slots.pop_back();
        }
        if self.slots.len() > 2 * self.live + SLACK {
            self.slots.retain(|s| s.1.is_some());
        }
    }
}

impl<V> IntoIterator for SeqMap<V> {
    type Item = (u64, V);
    type IntoIter = std::iter::FilterMap<
        std::collections::vec_deque::IntoIter<(u64, Option<V>)>,
        fn((u64, Option<V>)) -> Option<(u64, V)>,
    >;

    /// The entries in ascending key order.
    fn into_iter(self) -> Self::IntoIter {
        fn entry<V>((k, v): (u64, Option<V>)) -> Option<(u64, V)> {
            v.map(|v| (k, v))
        }
        self.slots.into_iter().filter_map(entry::<V>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        PopFirst,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so inserts, removes and holes collide;
        // weighted towards the ordering layer's pattern (ascending inserts,
        // removes near the front).
        prop_oneof![
            4 => (0u64..64, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u64..64).prop_map(Op::Remove),
            2 => Just(Op::PopFirst),
            1 => Just(Op::Clear),
        ]
    }

    fn check(m: &SeqMap<u32>, b: &BTreeMap<u64, u32>) {
        assert_eq!(m.len(), b.len());
        assert_eq!(m.is_empty(), b.is_empty());
        assert!(m
            .iter()
            .map(|(k, v)| (k, *v))
            .eq(b.iter().map(|(k, v)| (*k, *v))));
        assert_eq!(
            m.first().map(|(k, v)| (k, *v)),
            b.first_key_value().map(|(k, v)| (*k, *v))
        );
        for k in 0..66 {
            assert_eq!(m.get(k), b.get(&k));
            assert_eq!(m.contains_key(k), b.contains_key(&k));
        }
        // The invariants the O(1) paths rely on.
        assert!(m.slots.front().is_none_or(|s| s.1.is_some()));
        assert!(m.slots.back().is_none_or(|s| s.1.is_some()));
        assert!(m
            .slots
            .iter()
            .zip(m.slots.iter().skip(1))
            .all(|(a, b)| a.0 < b.0));
        assert!(m.slots.len() <= 2 * m.live + SLACK);
    }

    proptest! {
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = SeqMap::new();
            let mut b = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(m.insert(k, v), b.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(m.remove(k), b.remove(&k)),
                    Op::PopFirst => prop_assert_eq!(m.pop_first(), b.pop_first()),
                    Op::Clear => {
                        m.clear();
                        b.clear();
                    }
                }
                check(&m, &b);
                if let Some((k, v)) = m.first().map(|(k, v)| (k, *v)) {
                    prop_assert_eq!(m.get_mut(k).copied(), Some(v));
                }
            }
            prop_assert!(m.clone().into_iter().eq(b.clone()));
        }
    }

    #[test]
    fn holes_left_behind_a_stuck_first_entry_are_compacted() {
        // One entry never leaves; every later one is removed in turn (the
        // pattern of a stuck task with calls completing behind it).
        let mut m = SeqMap::new();
        m.insert(0, 0u32);
        for k in 1..10_000u64 {
            m.insert(k, 1);
            m.insert(k + 1, 1);
            m.remove(k);
            assert!(m.slots.len() <= 2 * m.len() + SLACK);
            m.remove(k + 1);
        }
        assert_eq!(m.len(), 1);
        assert_eq!(m.slots.len(), 1);
    }

    #[test]
    fn dense_and_sparse_keys_are_found() {
        let mut m = SeqMap::new();
        for k in [5u64, 6, 7, 1_000, u64::MAX - 1, u64::MAX] {
            m.insert(k, k);
        }
        m.insert(3, 3);
        m.insert(500, 500);
        for k in [3u64, 5, 6, 7, 500, 1_000, u64::MAX - 1, u64::MAX] {
            assert_eq!(m.get(k), Some(&k));
        }
        for k in [0u64, 4, 8, 999, u64::MAX - 2] {
            assert_eq!(m.get(k), None);
        }
    }
}
