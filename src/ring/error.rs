//! The ring's two error families: [`AttachError`] when a ring is set up or a
//! half attaches ([`Ring::init`](super::Ring::init),
//! [`Ring::attach_producer`](super::Ring::attach_producer),
//! [`Ring::attach_consumer`](super::Ring::attach_consumer),
//! [`Ring::heap`](super::Ring::heap),
//! [`MappedStorage::from_raw`](super::MappedStorage::from_raw)), and
//! [`RingError`] on the data path (reserve / commit / peek / release and
//! their blocking forms).

use std::fmt;

use crate::wake::WaitError;

/// Which half of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The writing half ([`Producer`](super::Producer)).
    Producer,
    /// The reading half ([`Consumer`](super::Consumer)).
    Consumer,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Producer => "producer",
            Side::Consumer => "consumer",
        })
    }
}

/// Why a ring could not be initialised or a half could not attach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The ring header was not initialised (`magic` missing).
    #[error("ring is not initialised")]
    NotInitialized,
    /// The ring header has a different layout version.
    #[error("ring layout version {found}, expected {expected}")]
    VersionMismatch {
        /// Version found in the header.
        found: u32,
        /// Version this code speaks.
        expected: u32,
    },
    /// The capacity is not a power of two in range or exceeds the memory.
    #[error("bad ring capacity {capacity} (data region holds {available} bytes)")]
    BadCapacity {
        /// Requested or found capacity.
        capacity: u64,
        /// Bytes available in the data region.
        available: usize,
    },
    /// A producer (or consumer) half is already attached to this ring.
    #[error("a {side} is already attached to this ring")]
    AlreadyAttached {
        /// The half that is taken.
        side: Side,
    },
    /// A raw region cannot hold a ring.
    #[error("bad ring region: {reason}")]
    BadRegion {
        /// Why.
        reason: &'static str,
    },
    /// The ring was poisoned earlier (by either side) and cannot be used.
    #[error("ring is poisoned")]
    Poisoned,
    /// The indices in the header violate the ring's invariants; the ring is
    /// now poisoned.
    #[error("corrupt ring: {what} (value {value}, limit {limit})")]
    Corrupt {
        /// Which invariant failed.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The bound it violated.
        limit: u64,
    },
}

/// What can go wrong on a ring's data path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// No room for the frame right now (back-pressure); retry later.
    #[error("ring is full")]
    Full,
    /// The frame can never fit in this ring.
    #[error("frame payload of {len} bytes exceeds the ring's maximum of {max}")]
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// The frame kind is reserved by the ring
    /// ([`PADDING_KIND`](super::PADDING_KIND)).
    #[error("frame kind {kind:#x} is reserved")]
    ReservedKind {
        /// The rejected kind.
        kind: u32,
    },
    /// Shared state violated the ring's invariants; the ring is now poisoned.
    #[error("corrupt ring: {what} (value {value}, limit {limit})")]
    Corrupt {
        /// Which invariant failed.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The bound it violated.
        limit: u64,
    },
    /// The ring was poisoned earlier (by either side, on finding its shared
    /// state corrupt) and cannot be used.
    #[error("ring is poisoned (a side found its shared state corrupt)")]
    Poisoned,
    /// The peer closed the ring cleanly (and, for a consumer, every frame
    /// has been consumed).
    #[error("peer closed the ring")]
    Closed,
    /// The liveness check reported the peer dead (after everything it
    /// published was delivered).
    #[error("peer died")]
    PeerDied,
    /// A blocking call reached its deadline.
    #[error("timed out")]
    TimedOut,
}

impl From<WaitError> for RingError {
    #[inline]
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::TimedOut => RingError::TimedOut,
            WaitError::PeerDied => RingError::PeerDied,
        }
    }
}

/// A violated invariant of shared state, before it is reported as
/// [`RingError::Corrupt`] or [`AttachError::Corrupt`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Violation {
    pub what: &'static str,
    pub value: u64,
    pub limit: u64,
}

impl From<Violation> for RingError {
    fn from(v: Violation) -> Self {
        RingError::Corrupt {
            what: v.what,
            value: v.value,
            limit: v.limit,
        }
    }
}

impl From<Violation> for AttachError {
    fn from(v: Violation) -> Self {
        AttachError::Corrupt {
            what: v.what,
            value: v.value,
            limit: v.limit,
        }
    }
}
