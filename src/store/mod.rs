//! A plasma-like object store in shared memory.
//!
//! An object is created once in the store's arena (a shared-memory
//! segment of the session), written in place, sealed, and then read by any
//! process of the host without a copy. A [`StoreService`] (a thread you can
//! embed in any process; a node process runs one per session) owns the
//! arena and the [`ObjectTable`]; [`StoreClient`]s connect to it over
//! shmwire connections (shared-memory rings), map the arena, and send it
//! small rkyv control messages.
//!
//! # Map
//!
//! | type | role |
//! | --- | --- |
//! | [`StoreService`], [`StoreConfig`] | the service thread: arena, table, event loop |
//! | [`StoreClient`], [`ClientOptions`] | `create`, `put`, `get`, `contains`, `delete`, `evict`, `refresh`, `pin`, `subscribe` |
//! | [`ObjectBuilder`] | a created object's bytes, writable until [`ObjectBuilder::seal`]; dropped unsealed = aborted |
//! | [`ObjectBuffer`] | a sealed object's bytes (zero-copy) and metadata; holds a reference until dropped |
//! | [`Subscription`] | seal and delete [`Notification`]s; a late subscriber first hears the existing objects; one that falls behind is told (`Missed`) and re-announced every object (`Resynced`) |
//! | [`StoreClient::pull`], [`PullServer`] | remote pull: an object of another node's store copied into this one over TCP, in chunks, size checked (Ray's object manager pull) |
//! | [`ObjectTable`] | the sans-I/O core: states, references, pins, deferred delete, LRU, plasma's eviction rule, fallback |
//! | [`index`] | the shared index of sealed objects: `get` and `contains` without a round trip (seqlock entries, per-client reference slots; loom-checked) |
//! | [`arena`] | the arena segment (pages reserved with `fallocate`) and the fallback directory's unnamed files |
//! | [`Request`], [`Reply`] | the control messages a client and the service exchange (for tools and tests that speak the protocol raw) |
//! | [`StoreError`] | every failure, naming the object and why |
//!
//! # Eviction
//!
//! Sealed objects that no client holds (no [`ObjectBuffer`], no pin) form
//! an LRU list. A `create` that does not fit frees max(what is missing,
//! 20 % of the capacity) from its least-recently-used end and retries, as
//! plasma does; held, unsealed and pinned objects are never evicted. When
//! nothing more can be evicted the object goes to an unnamed file of the
//! fallback directory (if configured; its descriptor reaches clients over
//! their connection, never its name) or the create fails with
//! [`StoreError::StoreFull`]. `docs/store.md` has the state diagram, the
//! arena layout and the failure behaviour.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use shmwire::ids::ObjectId;
//! use shmwire::shm::Session;
//! use shmwire::store::{StoreClient, StoreConfig, StoreService, DEFAULT_STORE_NAME};
//!
//! let tmp = tempfile::tempdir()?;
//! let session = Session::open_in(tmp.path().join("root"), "store-doc")?;
//! let _store = StoreService::start(&session, StoreConfig::new(1 << 20))?;
//!
//! let client = StoreClient::connect(&session, DEFAULT_STORE_NAME)?;
//! let id = ObjectId::from_random();
//! let mut object = client.create(id, 5, b"meta")?; // writable, in shared memory
//! object.copy_from_slice(b"hello");
//! drop(object.seal()?); // immutable and visible from now on
//!
//! // Any process of the session: zero-copy read.
//! let reader = StoreClient::connect(&session, DEFAULT_STORE_NAME)?;
//! let got = reader.get(&[id], Duration::from_secs(1))?;
//! let buffer = got[0].as_ref().expect("sealed");
//! assert_eq!(&buffer[..], b"hello");
//! assert_eq!(buffer.metadata(), b"meta");
//! drop(got); // releases the reference
//! reader.delete(&[id])?;
//! # session.remove_all()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(not(shmwire_loom))]
pub mod arena;
#[cfg(not(shmwire_loom))]
mod client;
#[cfg(not(shmwire_loom))]
pub mod error;
#[cfg(not(shmwire_loom))]
mod handoff;
pub mod index;
#[cfg(not(shmwire_loom))]
mod protocol;
#[cfg(not(shmwire_loom))]
mod pull;
#[cfg(not(shmwire_loom))]
mod service;
#[cfg(not(shmwire_loom))]
mod shared;
#[cfg(not(shmwire_loom))]
pub mod table;

#[cfg(not(shmwire_loom))]
pub use client::{
    ClientOptions, ObjectBuffer, ObjectBuilder, StoreAccess, StoreClient, Subscription,
    PUT_INLINE_MAX,
};
#[cfg(not(shmwire_loom))]
pub use error::StoreError;
#[cfg(not(shmwire_loom))]
pub use protocol::{
    Reply, Request, WireError, WireIndex, WireLocation, WireObject, MAX_IDS_PER_REQUEST,
    STORE_PROTOCOL_VERSION,
};
#[cfg(not(shmwire_loom))]
pub use pull::{
    PullServer, PullServerConfig, DEFAULT_DISPLACE_BELOW, DEFAULT_MAX_PULLS, PULL_ANSWER_HOLD,
    PULL_CHUNK, PULL_PACE_GRACE, PULL_PREFIX, PULL_PROTOCOL_VERSION, PULL_RECONNECT_FIRST,
    PULL_RECONNECT_MAX,
};
#[cfg(not(shmwire_loom))]
pub use service::{
    default_index_entries, StoreConfig, StoreService, DEFAULT_MAX_CLIENTS, DEFAULT_STORE_NAME,
    SNAPSHOT_OBJECTS,
};
#[cfg(not(shmwire_loom))]
pub use shared::DEFAULT_INDEX_ENTRIES;

/// What a part of the store says of itself while it cannot do its work —
/// the [`PullServer`]'s store client broken, the [`StoreService`]'s
/// listener lost — for the node's `/health` ([`PullServer::health`],
/// [`StoreService::health`]). Cheap to clone; clones share the state.
#[cfg(not(shmwire_loom))]
#[derive(Debug, Clone, Default)]
pub struct Health(std::sync::Arc<std::sync::Mutex<Option<String>>>);

#[cfg(not(shmwire_loom))]
impl Health {
    /// `None` while the part works; else what is wrong (a clause naming
    /// the failure and its causes, e.g. `its store client broke
    /// (connecting a new one): …`).
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set(&self, problem: Option<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}
#[cfg(not(shmwire_loom))]
pub use table::{
    default_metadata_capacity, footprint, heap_charge, ClientConnection, ClientId, DeleteOutcome,
    Fallback, Location, Notification, ObjectState, ObjectSummary, ObjectTable, ObjectView,
    SealedCursor, SharedIndex, StoreSnapshot, TableStats, ENTRY_OVERHEAD, HOLDER_OVERHEAD,
    MAX_ARENA_CAPACITY, MAX_METADATA_LEN, MAX_OBJECT_SIZE, MAX_QUEUED_PULLS,
    MIN_DEFAULT_METADATA_CAPACITY, MIN_METADATA_CAPACITY, OBJECT_ALIGN, PULL_DEADLINE_GRACE,
    PULL_GRANT_TTL, PULL_QUEUE_TTL, REAP_EVERY, SUBSCRIBER_LAG_BYTES,
};
