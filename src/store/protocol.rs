//! The store's control messages (rkyv, validated on receipt like every
//! shmwire message): a client sends [`Request`]s over a shmwire
//! [`Connection`](crate::transport::Connection) and gets one [`Reply`] for
//! each (`Release` and `Drop` are fire-and-forget); a subscriber's
//! connection carries `Sealed` / `Deleted` replies pushed by the service.
//!
//! Descriptors do not travel in these messages: the store's segments and
//! the fallback files of objects named in a reply come over the
//! connection's Unix socket just before the reply (`docs/store.md`,
//! "Fallback directory"). The types are re-exported by `store` so tests
//! and tools can speak the protocol raw (e.g. a client that never reads
//! its socket).

use super::error::StoreError;
use super::table::{Location, Notification, ObjectView};
use crate::ids::ObjectId;

/// Version of this protocol, sent in `Hello`; a mismatch is refused.
/// 6: a client's reference-slot memfd starts with a 64-byte line for its
/// total (a client and a service of builds on either side of that passed
/// the check, then the client quietly ran without the fast path).
/// 7: that line also holds the client's touched-group bits, which the
/// service reads before any slot (an older client would never set them:
/// its references would be invisible); `Reap` names its entry.
/// 8: `Create` says whether it is for a pull (`for_pull`); `PullRoom`.
/// 9: `PullRoom` names the object (pulls refused room queue by it, in
/// order); `PullWaiting`.
/// 10: a pull's `Create` carries the time left before the pull's deadline
/// (`pull_ms`, in place of `for_pull`); `PullLeave`.
/// 11: a request names at most [`MAX_IDS_PER_REQUEST`] objects (an older
/// client could send a frame's worth, ≈ 37,000, and be dropped for it).
pub const STORE_PROTOCOL_VERSION: u32 = 11;

/// The most objects one `Get`, `Delete`, `Refresh`, `Pin` or `Unpin`
/// request names. The service handles a request in one piece, so this
/// bounds what one request holds its loop for (≈ 250 ns an id for a pin:
/// 0.25–0.35 ms, as measured; a frame's worth of ids, ≈ 37,000, held it
/// 5–10 ms, and every other client waited that long once per request, a
/// fresh-eyes attack on 2026-12-07). A `StoreClient` splits longer lists into
/// requests of this many; a client that sends more is dropped, told why.
pub const MAX_IDS_PER_REQUEST: usize = 1024;

/// Client → service.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Request {
    /// First message of every connection. Reply: `Welcome`, then (for a
    /// subscriber) a `Sealed` for every existing object.
    Hello {
        /// [`STORE_PROTOCOL_VERSION`].
        version: u32,
        /// The client's process id (informational).
        pid: u32,
        /// `true` for a notification-only connection.
        subscriber: bool,
    },
    /// Create, fill with `data` and seal an object in one request (small
    /// objects: the bytes travel in the message), then let go of it.
    /// Reply: `Done` or `Error`.
    Put {
        /// The object.
        id: ObjectId,
        /// Its data.
        data: Vec<u8>,
        /// Metadata bytes.
        metadata: Vec<u8>,
    },
    /// A reference taken through the shared index was given back on an
    /// entry that is no longer plainly sealed (a delete may wait for it):
    /// free what can be freed — the deleted object at entry `pos` when
    /// named (a release), every pending delete when `None` (a repair of
    /// the slots; at most one such walk every `REAP_EVERY`, 20 ms, however
    /// often clients ask). No reply.
    Reap {
        /// The index entry the reference was given back at.
        pos: Option<u32>,
    },
    /// Create an unsealed object. Reply: `Object` or `Error`.
    Create {
        /// The object.
        id: ObjectId,
        /// Data size in bytes.
        data_size: u64,
        /// Metadata bytes.
        metadata: Vec<u8>,
        /// For a pull from another node (`Some`): the milliseconds left
        /// before the pull's deadline. The object counts against the pull
        /// capacity while unsealed, and no longer than that (plus
        /// `PULL_DEADLINE_GRACE`): a puller past its deadline gives the
        /// object up itself, so one that is stopped there holds no room
        /// others wait for (`ObjectTable::create_for_pull`).
        pull_ms: Option<u64>,
    },
    /// Seal an object this client created. Reply: `Done` or `Error`.
    Seal {
        /// The object.
        id: ObjectId,
    },
    /// Abort an unsealed object this client created. Reply: `Done` or `Error`.
    Abort {
        /// The object.
        id: ObjectId,
    },
    /// Let go of a builder: abort the object if unsealed, else release the
    /// creator's reference. No reply.
    Drop {
        /// The object.
        id: ObjectId,
    },
    /// Release one reference. No reply.
    Release {
        /// The object.
        id: ObjectId,
    },
    /// Wait until every object is sealed or `timeout_ms` passed, then take a
    /// reference on each that is. Reply: `Objects`.
    Get {
        /// The objects, in the order of the reply.
        ids: Vec<ObjectId>,
        /// Bound on the wait in milliseconds (0 = do not wait).
        timeout_ms: u64,
    },
    /// Reply: `Bool`.
    Contains {
        /// The object.
        id: ObjectId,
    },
    /// Whether a pull's `Create` of object `id` (`data_size` bytes) would
    /// be let in by the pull capacity now (`ObjectTable::pull_room`; if
    /// not, the pull keeps its turn in the queue): a puller that got
    /// `PullsFull` asks this, not the remote, until there is room. Reply:
    /// `Bool`.
    PullRoom {
        /// The local object the pull will create.
        id: ObjectId,
        /// Data size in bytes.
        data_size: u64,
    },
    /// Whether a queued pull waits for room it does not have
    /// (`ObjectTable::pull_waiting`): a puller whose transfer is behind its
    /// pace then gives its room up. Reply: `Bool`.
    PullWaiting,
    /// This client's pull that queued for room (`PullsFull`, or `PullRoom`
    /// answered `false` or `true`) ended without its create: once no other
    /// client that asked for the same local object is left, the pull
    /// leaves the queue at once, and the room it was told of is free for
    /// the pulls behind it (`ObjectTable::pull_leave`). No reply.
    PullLeave {
        /// The local object the pull would have created.
        id: ObjectId,
    },
    /// Reply: `Done` or the first `Error`.
    Delete {
        /// The objects.
        ids: Vec<ObjectId>,
    },
    /// Reply: `Freed`.
    Evict {
        /// Bytes to free.
        bytes: u64,
    },
    /// Reply: `Done`.
    Refresh {
        /// The objects.
        ids: Vec<ObjectId>,
    },
    /// Reply: `Done` or the first `Error`.
    Pin {
        /// The objects.
        ids: Vec<ObjectId>,
    },
    /// Reply: `Done` or the first `Error`.
    Unpin {
        /// The objects.
        ids: Vec<ObjectId>,
    },
}

/// Where an object lives, on the wire.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum WireLocation {
    /// Byte offset in the arena.
    Arena(u64),
    /// A fallback file: the service's token for it (a label: the file has
    /// no name). Its descriptor travels over the connection's socket just
    /// before the reply (see [`Reply::Object`]).
    Fallback(String),
}

/// Where a client finds the shared index and its own reference slots.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct WireIndex {
    /// A label of the index memfd (logs only: the memfd itself travels
    /// over the connection's socket, see [`Reply::Welcome`]).
    pub segment: String,
    /// Entries in it (a power of two).
    pub entries: u32,
    /// The key of the entries' check words.
    pub key: u64,
    /// A label of this client's reference-slot memfd (logs only).
    pub refs_segment: String,
}

/// An object handed to a client.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct WireObject {
    /// The object.
    pub id: ObjectId,
    /// Where its data lives.
    pub location: WireLocation,
    /// Data size in bytes.
    pub data_size: u64,
    /// Metadata.
    pub metadata: Vec<u8>,
}

/// An error on the wire: a code and the fields of the [`StoreError`]
/// variant it stands for.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct WireError {
    /// Which variant (see [`WireError::from_error`]).
    pub code: u8,
    /// The object.
    pub id: ObjectId,
    /// First numeric field of the variant (or 0).
    pub a: u64,
    /// Second numeric field (or 0).
    pub b: u64,
    /// Third numeric field (or 0).
    pub c: u64,
}

/// Service → client.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Reply {
    /// Answer to `Hello`. Just before it, the service sends the
    /// segments themselves over the connection's Unix socket (one
    /// `SCM_RIGHTS` message, see `handoff.rs`): the arena's sealed
    /// memfd, then, with `index`, the index's and this client's slots'.
    /// No segment of the store has a name in the session directory.
    Welcome {
        /// A label of the arena memfd (logs only).
        arena_segment: String,
        /// Arena capacity in bytes.
        capacity: u64,
        /// The shared index (absent for subscribers, or when the service
        /// runs without one).
        index: Option<WireIndex>,
    },
    /// A created object. If it lives in a fallback file, the file's
    /// descriptor was sent over the connection's socket just before this
    /// reply (one `SCM_RIGHTS` hand-off, magic `SWFALLB`, see
    /// `handoff.rs`).
    Object(WireObject),
    /// Answer to `Get`: one entry per requested id, in order, for the
    /// first of them — all of them unless the whole answer would not fit
    /// one frame of the client's connection; the client asks again for the
    /// rest (no wait: the first answer came once all were sealed or the
    /// timeout passed). At least one entry. The descriptors of the entries
    /// in fallback files were sent just before, in this order.
    Objects(Vec<Option<WireObject>>),
    /// Success without data.
    Done,
    /// Answer to `Contains`.
    Bool(bool),
    /// Answer to `Evict`: bytes freed.
    Freed(u64),
    /// A failure.
    Error(WireError),
    /// Pushed to subscribers: an object was sealed (or already existed).
    Sealed {
        /// The object.
        id: ObjectId,
        /// Data size in bytes.
        data_size: u64,
        /// Metadata.
        metadata: Vec<u8>,
    },
    /// Pushed to subscribers: an object was deleted or evicted.
    Deleted {
        /// The object.
        id: ObjectId,
    },
    /// Pushed to a subscriber that fell behind: `missed` notifications
    /// were not sent to it; every existing object is announced again
    /// (`Sealed`), then `Resynced`.
    Missed {
        /// Notifications not sent.
        missed: u64,
    },
    /// Pushed to a subscriber after the re-announcement that followed
    /// `Missed`.
    Resynced,
}

crate::spec::encoding::impl_message!(Request, Reply);

impl From<&ObjectView> for WireObject {
    fn from(v: &ObjectView) -> Self {
        WireObject {
            id: v.id,
            location: match &v.location {
                Location::Arena { offset } => WireLocation::Arena(*offset),
                Location::Fallback { file } => WireLocation::Fallback(file.clone()),
            },
            data_size: v.data_size,
            metadata: v.metadata.clone(),
        }
    }
}

impl Reply {
    /// The fallback tokens this reply names, in order: the descriptors
    /// that travel with it.
    pub(crate) fn fallback_files(&self) -> Vec<&str> {
        fn one(o: &WireObject) -> Option<&str> {
            match &o.location {
                WireLocation::Fallback(t) => Some(t.as_str()),
                WireLocation::Arena(_) => None,
            }
        }
        match self {
            Reply::Object(o) => one(o).into_iter().collect(),
            Reply::Objects(v) => v.iter().flatten().filter_map(one).collect(),
            _ => Vec::new(),
        }
    }
}

impl From<Notification> for Reply {
    fn from(n: Notification) -> Self {
        match n {
            Notification::Sealed {
                id,
                data_size,
                metadata,
            } => Reply::Sealed {
                id,
                data_size,
                metadata,
            },
            Notification::Deleted { id } => Reply::Deleted { id },
            Notification::Missed { missed } => Reply::Missed { missed },
            Notification::Resynced => Reply::Resynced,
        }
    }
}

const NIL: ObjectId = ObjectId::from_array([0xff; 28]);

/// An upper bound of the encoded length in bytes of `Reply::Objects(objs)`:
/// [`OBJECTS_REPLY_BASE`] and each entry's [`object_entry_bound`], which the
/// service sums as it takes references (`StoreService::answer_get`): an
/// answer within it is sent unmeasured; one entry alone beyond it is
/// measured exactly (`StoreService::one_too_large`). The test below holds
/// the bound above the encoded length.
#[cfg(test)]
fn objects_reply_bound(objs: &[Option<WireObject>]) -> usize {
    objs.iter().fold(OBJECTS_REPLY_BASE, |n, o| {
        n.saturating_add(object_entry_bound(o))
    })
}

/// The part of [`objects_reply_bound`] that is not the entries', in bytes.
pub(crate) const OBJECTS_REPLY_BASE: usize = 128;

/// An upper bound of one entry's share of an `Objects` reply, in bytes:
/// its fixed part (128, above its archived size) plus its metadata and
/// fallback label.
pub(crate) fn object_entry_bound(o: &Option<WireObject>) -> usize {
    128usize.saturating_add(o.as_ref().map_or(0, |o| {
        let label = match &o.location {
            WireLocation::Fallback(l) => l.len(),
            WireLocation::Arena(_) => 0,
        };
        o.metadata.len().saturating_add(label)
    }))
}

impl WireError {
    /// Encodes an object error of the table; other errors (which the table
    /// never returns) become `BadRequest`.
    pub fn from_error(e: &StoreError) -> Self {
        use StoreError::*;
        let (code, id, a, b, c) = match *e {
            ObjectExists { id } => (1, id, 0, 0, 0),
            ObjectNotFound { id } => (2, id, 0, 0, 0),
            ObjectAlreadySealed { id } => (3, id, 0, 0, 0),
            ObjectNotSealed { id } => (4, id, 0, 0, 0),
            ObjectInUse { id, holders } => (5, id, u64::from(holders), 0, 0),
            NotCreator { id } => (6, id, 0, 0, 0),
            StoreFull {
                id,
                needed,
                capacity,
                unevictable,
            } => (7, id, needed, capacity, unevictable),
            OutOfDisk { id, size } => (8, id, size, 0, 0),
            MetadataTooLarge { id, len, max } => (9, id, len, max, 0),
            ObjectTooLarge { id, size, max } => (10, id, size, max, 0),
            OutOfDescriptors { id, open, limit } => (11, id, open, limit, 0),
            ReplyTooLarge { id, len, max } => (12, id, len, max, 0),
            MetadataFull {
                id,
                needed,
                capacity,
                used,
            } => (13, id, needed, capacity, used),
            PullsFull {
                id,
                needed,
                pulling,
                capacity,
            } => (14, id, needed, pulling, capacity),
            FileSizeLimit { id, size, limit } => (15, id, size, limit, 0),
            _ => (0, NIL, 0, 0, 0),
        };
        WireError { code, id, a, b, c }
    }

    /// The [`StoreError`] this stands for (an unknown code is a bad reply).
    pub fn to_error(&self) -> StoreError {
        use StoreError::*;
        let id = self.id;
        match self.code {
            1 => ObjectExists { id },
            2 => ObjectNotFound { id },
            3 => ObjectAlreadySealed { id },
            4 => ObjectNotSealed { id },
            5 => ObjectInUse {
                id,
                holders: u32::try_from(self.a).unwrap_or(u32::MAX),
            },
            6 => NotCreator { id },
            7 => StoreFull {
                id,
                needed: self.a,
                capacity: self.b,
                unevictable: self.c,
            },
            8 => OutOfDisk { id, size: self.a },
            9 => MetadataTooLarge {
                id,
                len: self.a,
                max: self.b,
            },
            10 => ObjectTooLarge {
                id,
                size: self.a,
                max: self.b,
            },
            11 => OutOfDescriptors {
                id,
                open: self.a,
                limit: self.b,
            },
            12 => ReplyTooLarge {
                id,
                len: self.a,
                max: self.b,
            },
            13 => MetadataFull {
                id,
                needed: self.a,
                capacity: self.b,
                used: self.c,
            },
            14 => PullsFull {
                id,
                needed: self.a,
                pulling: self.b,
                capacity: self.c,
            },
            15 => FileSizeLimit {
                id,
                size: self.a,
                limit: self.b,
            },
            0 => BadRequest("the service refused the request"),
            _ => BadReply("unknown error code"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;

    #[test]
    fn errors_round_trip_the_wire() {
        let id = ObjectId::from_array([3; 28]);
        let all = [
            StoreError::ObjectExists { id },
            StoreError::ObjectNotFound { id },
            StoreError::ObjectAlreadySealed { id },
            StoreError::ObjectNotSealed { id },
            StoreError::ObjectInUse { id, holders: 4 },
            StoreError::NotCreator { id },
            StoreError::StoreFull {
                id,
                needed: 1,
                capacity: 2,
                unevictable: 3,
            },
            StoreError::OutOfDisk { id, size: 9 },
            StoreError::FileSizeLimit {
                id,
                size: 10,
                limit: 8,
            },
            StoreError::OutOfDescriptors {
                id,
                open: 7,
                limit: 64,
            },
            StoreError::MetadataTooLarge { id, len: 5, max: 4 },
            StoreError::ObjectTooLarge {
                id,
                size: 5,
                max: 4,
            },
            StoreError::ReplyTooLarge {
                id,
                len: 300_000,
                max: 262_128,
            },
            StoreError::MetadataFull {
                id,
                needed: 65_792,
                capacity: 1 << 20,
                used: 1_000_000,
            },
            StoreError::PullsFull {
                id,
                needed: 64,
                pulling: 3 << 20,
                capacity: 4 << 20,
            },
        ];
        for e in all {
            let back = WireError::from_error(&e).to_error();
            assert_eq!(format!("{e:?}"), format!("{back:?}"));
        }
    }

    #[test]
    fn the_objects_reply_bound_is_above_the_encoded_length() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        let mut enc = crate::spec::Encoder::new();
        for n in [0usize, 1, 2, 7, 100, 3_000] {
            let objs: Vec<Option<WireObject>> = (0..n)
                .map(|i| {
                    (next(3) != 0).then(|| WireObject {
                        id: ObjectId::from_array([i as u8; 28]),
                        location: if next(2) == 0 {
                            WireLocation::Arena(next(1 << 40))
                        } else {
                            WireLocation::Fallback("f".repeat(next(40) as usize))
                        },
                        data_size: next(1 << 40),
                        metadata: vec![7; next(200) as usize],
                    })
                })
                .collect();
            let bound = objects_reply_bound(&objs);
            let len = enc.encoded_len(&Reply::Objects(objs)).unwrap();
            assert!(len <= bound, "{n} entries: {len} encoded, bound {bound}");
        }
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let req = Request::Get {
            ids: vec![ObjectId::from_array([1; 28])],
            timeout_ms: 5,
        };
        let bytes = spec::to_vec(&req).unwrap();
        assert_eq!(spec::from_bytes::<Request>(&bytes).unwrap(), req);
        let mut junk = spec::AlignedBytes::new();
        junk.resize(bytes.len(), 0xAB);
        assert!(spec::access::<Request>(&junk).is_err());
        // Every truncation is refused, never a panic.
        for n in 0..bytes.len() {
            let mut cut = spec::AlignedBytes::new();
            cut.extend_from_slice(&bytes[..n]);
            let _ = spec::access::<Request>(&cut);
        }
    }
}
