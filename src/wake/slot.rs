//! The shared-memory half of the handshake: one [`WakeSlot`] per waiting
//! side, placed by the owner of the memory (a ring header, a store's
//! notification word, …) wherever its own layout contract says.

use crate::sync::AtomicU32;

/// The sleep/wake slot of one side: a "sleeping" flag the waker checks and a
/// futex word the sleeper waits on. Written by the sleeper only when it goes
/// to sleep, so it costs nothing while both sides are awake.
///
/// `#[repr(C)]`, atomics only, no pointers: it may live in memory shared
/// between processes (e.g. lines 3 and 4 of a ring header), and its layout is
/// part of the layout version of whatever embeds it.
#[repr(C)]
#[derive(Debug, Default)]
pub struct WakeSlot {
    /// 0 = awake; otherwise a bit set of [`SLEEP_FUTEX`] / [`SLEEP_EVENTFD`]
    /// saying how the sleeper wants to be woken.
    pub sleeping: AtomicU32,
    /// Futex word: bumped by the waker before `FUTEX_WAKE`.
    pub futex: AtomicU32,
}

/// [`WakeSlot::sleeping`] bit: wake me with `FUTEX_WAKE` on the slot's futex word.
pub const SLEEP_FUTEX: u32 = 1;
/// [`WakeSlot::sleeping`] bit: wake me by writing to my eventfd.
pub const SLEEP_EVENTFD: u32 = 2;

#[cfg(all(test, not(shmwire_loom)))]
mod tests {
    use super::*;

    #[test]
    fn slot_layout_is_fixed() {
        assert_eq!(std::mem::size_of::<WakeSlot>(), 8);
        assert_eq!(std::mem::offset_of!(WakeSlot, sleeping), 0);
        assert_eq!(std::mem::offset_of!(WakeSlot, futex), 4);
    }
}
