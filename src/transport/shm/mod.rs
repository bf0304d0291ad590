//! The shared-memory transport: two SPSC rings in shared memory per
//! connection, bootstrapped over a Unix socket in the session directory.
//!
//! # Bootstrap
//!
//! 1. The listening worker binds `<session dir>/.s-<its process's lock
//!    stem>-<n>-<first 8 hex digits of its worker id>.sock`, mode 0600
//!    ([`ShmListener`]).
//! 2. The caller connects and sends the hello ([`super::handshake`])
//!    with transport = shm and, as extension, the ring capacity it wants
//!    (`u64`, a power of two).
//! 3. The listener checks version, token and intended worker (refusing with the
//!    reason otherwise), creates two ring segments in the session
//!    (`ring-<pid>-<n>-c2s`, `ring-<pid>-<n>-s2c`, mode 0600, exclusive),
//!    initialises a ring in each, attaches its halves (consumer of `c2s`,
//!    producer of `s2c`) and answers with the segment names as extension and
//!    two eventfds — its own and the caller's — as `SCM_RIGHTS`.
//! 4. The caller opens and maps both segments, attaches its halves, and sends
//!    one acknowledgement byte; the listener then unlinks both segment files.
//!    From here on nothing of the connection is visible in the file system:
//!    if both processes die, the kernel frees the memory.
//!
//! # Frames
//!
//! A message is one ring frame of kind [`MESSAGE_KIND`] whose payload is the
//! message bytes, 16-byte aligned in shared memory. A caller's repeated
//! actor-task requests may instead travel as [`FrameTag::Shape`] and
//! [`FrameTag::Delta`] frames ([`SHAPE_KIND`], [`DELTA_KIND`] plus the
//! slot; see [`FrameTag`]), which only the tagged receive
//! ([`Connection::try_recv_private_tagged`]) accepts. [`Connection::send_with`]
//! reserves `max_len` bytes in the peer's ring, the encoder writes straight
//! into them, and the ring's partial commit (`WriteGrant::commit(n)`)
//! publishes only the `n` bytes it used: the frame's length is the message
//! length. A frame longer than the receiver's maximum, or of another kind,
//! is a protocol violation.
//!
//! A received frame stays in shared memory, where the peer can still write
//! it: [`Connection::recv_timeout`] lends it as plain bytes, and
//! [`Connection::recv_private_timeout`] copies it into the connection's
//! private snapshot buffer first (what message receives validate; see
//! [`MessageConnection`](super::MessageConnection)).
//!
//! # Liveness
//!
//! The Unix socket stays open for the life of the connection. A peer that
//! exits — however — hangs it up; every blocking wait polls it (non-blocking,
//! at most every [`ShmOptions::check_interval`]) through the ring's liveness
//! hook, a non-blocking receive checks it at most every millisecond, and a
//! [`Mux`](super::Mux) has it registered, so a dead peer turns pending
//! receives and sends into [`RecvError::PeerDied`] / [`SendError::PeerDied`] within milliseconds —
//! after every frame it had committed was delivered. An orderly close sets
//! the ring's *closed* flags first, so it is reported as
//! [`RecvError::Closed`] instead.
//!
//! # Waiting
//!
//! Each side picks its own [`WaitStrategy`] ([`ShmOptions::wait`]): spin,
//! spin-then-yield, spin-then-park on the ring's shared futex word, or
//! spin-then-eventfd. Both eventfds are
//! always exchanged, so a side in any mode can also be woken through its
//! eventfd by a [`Mux`](super::Mux).

//!
//! # Files
//!
//! | file | role |
//! | --- | --- |
//! | `connection.rs` | [`ShmConnection`], [`ShmFrame`], the peer-liveness probe |
//! | `listener.rs` | [`ShmListener`] and the listener's half of the bootstrap |
//! | `bootstrap.rs` | the hello/reply extensions by field, ring segments, [`connect_shm`] |

mod bootstrap;
mod connection;
mod listener;

use std::path::PathBuf;
use std::time::Duration;

pub use bootstrap::connect_shm;
pub use connection::{ShmConnection, ShmFrame};
pub(crate) use listener::ShmAccept;
pub use listener::ShmListener;

use crate::ids::WorkerId;
use crate::shm::Session;
#[cfg(doc)]
use crate::transport::{Connection, RecvError, SendError};
use crate::transport::{FrameTag, SHAPE_SLOTS};
use crate::wake::WaitStrategy;

/// Smallest ring capacity a caller may ask for.
pub const MIN_RING_CAPACITY: usize = 4096;
/// Default ring capacity (each direction).
pub const DEFAULT_RING_CAPACITY: usize = 1 << 20;
/// Default [`ShmOptions::max_ring_capacity`]: 64 MiB per ring (room for
/// the default 16 MiB largest frame several times over).
pub const DEFAULT_MAX_RING_CAPACITY: usize = 64 << 20;
/// Default [`ShmOptions::max_ring_memory`]: 1 GiB of rings for all the
/// connections of one listener (512 callers at the default 1 MiB rings,
/// eight at the 64 MiB largest).
pub const DEFAULT_MAX_RING_MEMORY: usize = 1 << 30;
/// How often a non-blocking receive on an empty ring checks the peer's socket.
pub(crate) const TRY_RECV_CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// How often a connection in a [`Mux`](crate::transport::Mux) audits the
/// shared state of its two rings (the mux's tick; see
/// [`Producer::audit`](crate::ring::Producer::audit) and
/// [`Consumer::audit`](crate::ring::Consumer::audit)): the fields the data
/// path reads rarely or never, so a scribble there is found within this
/// long even on an idle connection.
pub(crate) const AUDIT_INTERVAL: Duration = Duration::from_millis(20);
/// The caller's acknowledgement byte, sent once it has mapped both rings.
const ACK: u8 = b'A';

/// The ring frame kind of a message ([`FrameTag::Message`]).
pub const MESSAGE_KIND: u32 = 0;
/// The ring frame kind of [`FrameTag::Shape`]`(slot)` is this plus `slot`.
pub const SHAPE_KIND: u32 = 0x100;
/// The ring frame kind of [`FrameTag::Delta`]`(slot)` is this plus `slot`.
pub const DELTA_KIND: u32 = 0x200;

/// The ring frame kind that carries `tag`.
pub(crate) fn tag_kind(tag: FrameTag) -> u32 {
    match tag {
        FrameTag::Message => MESSAGE_KIND,
        FrameTag::Shape(slot) => SHAPE_KIND + u32::from(slot),
        FrameTag::Delta(slot) => DELTA_KIND + u32::from(slot),
    }
}

/// The tag a ring frame of `kind` carries; `None` for a kind no sender
/// writes (a violation), a slot number included (`< SHAPE_SLOTS`).
pub(crate) fn kind_tag(kind: u32) -> Option<FrameTag> {
    let slot = |base: u32| u8::try_from(kind - base).ok().filter(|&s| s < SHAPE_SLOTS);
    match kind {
        MESSAGE_KIND => Some(FrameTag::Message),
        k if (SHAPE_KIND..DELTA_KIND).contains(&k) => slot(SHAPE_KIND).map(FrameTag::Shape),
        k if k >= DELTA_KIND => slot(DELTA_KIND).map(FrameTag::Delta),
        _ => None,
    }
}

/// Settings of the shared-memory transport (one side).
#[derive(Debug, Clone)]
pub struct ShmOptions {
    /// How this side waits, and its spin window
    /// ([`WaitStrategy::EventFd`] blocks on this side's eventfd, which the
    /// handshake always exchanges).
    pub wait: WaitStrategy,
    /// Capacity of each ring (power of two) this side asks for when it
    /// connects; the listener makes both directions' rings of it, or of its
    /// own [`max_ring_capacity`](Self::max_ring_capacity) if that is
    /// smaller (the connection's largest frame shrinks to fit).
    pub ring_capacity: usize,
    /// Largest ring capacity this side makes for a caller when it listens
    /// (bytes, each direction; rounded down to a power of two, at least
    /// [`MIN_RING_CAPACITY`]): the rings are the listener's memory, so a
    /// caller's request (up to 2 GiB) must not decide how much of it one
    /// connection reserves. Default [`DEFAULT_MAX_RING_CAPACITY`]. Rings
    /// above [`DEFAULT_RING_CAPACITY`] are made for at most one connection
    /// of this size a second on average, two in a burst (twice this many
    /// bytes per second, both directions): making and discarding them
    /// costs the accepting thread
    /// milliseconds (≈ 18 ms for two 64 MiB rings), so callers churning
    /// connections with large rings would stall it; beyond that a
    /// connection gets [`DEFAULT_RING_CAPACITY`] rings (the handshake's
    /// reply says so).
    pub max_ring_capacity: usize,
    /// Most memory the rings of all connections a listener made may hold
    /// at once (bytes, both directions counted). A connection's share is
    /// given back once its rings' memory is discarded (punched out of the
    /// memfds, whoever still holds them): when the listener's side of it
    /// drops after the peer hung up (or its handshake failed), else 2 s
    /// later. A caller whose rings
    /// would not fit gets smaller ones (the largest power of two that
    /// fits, down to [`MIN_RING_CAPACITY`]; its largest frame shrinks to
    /// fit) or, with less than two of those left, is refused in the
    /// handshake ([`ConnectError::Refused`](crate::transport::ConnectError::Refused)).
    /// The rings are sealed memfds that the listener's `VmRSS` does not
    /// show, so without this a same-user caller holding connections open
    /// decided how much of the host's memory the worker reserved.
    /// Default [`DEFAULT_MAX_RING_MEMORY`].
    pub max_ring_memory: usize,
    /// Interval between liveness checks of the peer while blocked.
    pub check_interval: Duration,
}

impl Default for ShmOptions {
    /// Spin-then-park, the ring layer's default spin window, 1 MiB rings
    /// (at most 64 MiB made for a caller, 1 GiB for all of a listener's),
    /// 2 ms liveness checks.
    fn default() -> Self {
        Self {
            wait: WaitStrategy::spin_park(),
            ring_capacity: DEFAULT_RING_CAPACITY,
            max_ring_capacity: DEFAULT_MAX_RING_CAPACITY,
            max_ring_memory: DEFAULT_MAX_RING_MEMORY,
            check_interval: Duration::from_millis(2),
        }
    }
}

impl ShmOptions {
    /// The defaults with another wait strategy.
    pub fn with_wait(wait: WaitStrategy) -> Self {
        Self {
            wait,
            ..Self::default()
        }
    }
}

/// A fresh Unix-socket path for worker `worker`'s listener in `session`:
/// `.s-<stem>-<n>-<first 8 hex digits of the id>.sock`, named after this
/// process's lock file in the session (stem), so the session's cleanup
/// removes it exactly when this process is dead — and never a live
/// successor's socket under the same worker id.
pub fn socket_path(session: &Session, worker: &WorkerId) -> Result<PathBuf, crate::shm::ShmError> {
    session.owned_file_path(crate::shm::SOCKET_TAG, &socket_suffix(worker))
}

/// The end of every socket name of `worker` (see [`socket_path`]).
pub(crate) fn socket_suffix(worker: &WorkerId) -> String {
    format!("-{}.sock", &worker.to_string()[..8])
}
