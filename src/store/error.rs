//! The store's error type.

use crate::ids::ObjectId;

/// Everything a store operation can fail with. Each object error names the
/// object and says why; the same variants come back from the service over
/// the wire (`docs/store.md`, "Control protocol") and from the sans-I/O
/// [`ObjectTable`](super::ObjectTable).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of an id that already names a live object (unsealed or
    /// sealed).
    #[error("object {id} already exists")]
    ObjectExists {
        /// The object.
        id: ObjectId,
    },
    /// No live object has this id (never created, aborted, deleted or
    /// evicted).
    #[error("object {id} does not exist")]
    ObjectNotFound {
        /// The object.
        id: ObjectId,
    },
    /// `seal` or `abort` of an object that is already sealed.
    #[error("object {id} is already sealed")]
    ObjectAlreadySealed {
        /// The object.
        id: ObjectId,
    },
    /// The operation needs a sealed object (e.g. `delete` of an object
    /// that is still being written).
    #[error("object {id} is not sealed yet")]
    ObjectNotSealed {
        /// The object.
        id: ObjectId,
    },
    /// The id names an object that was deleted but is still held by
    /// `holders` references; it can be created again once they are
    /// released.
    #[error("object {id} is deleted but still held by {holders} reference(s)")]
    ObjectInUse {
        /// The object.
        id: ObjectId,
        /// References (buffers and pins) still held by clients.
        holders: u32,
    },
    /// `seal` or `abort` by a client that did not create the object.
    #[error("object {id} was created by another client; only its creator may seal or abort it")]
    NotCreator {
        /// The object.
        id: ObjectId,
    },
    /// The object does not fit the arena even after evicting everything
    /// evictable, and no fallback directory is configured. The free bytes
    /// (`capacity` − `unevictable`) may add up to `needed` and still be in
    /// pieces too small for it (the arena's allocator places an object in
    /// one piece).
    #[error(
        "store full: object {id} needs {needed} bytes; the arena has {capacity} bytes of which \
         {unevictable} are held, unsealed or pinned, and no free piece of {needed} bytes"
    )]
    StoreFull {
        /// The object being created.
        id: ObjectId,
        /// Bytes it needs in the arena (data rounded up to 64).
        needed: u64,
        /// The arena's capacity in bytes.
        capacity: u64,
        /// Bytes occupied by objects that may not be evicted.
        unevictable: u64,
    },
    /// A pull's create while other pulls hold so much of the store that
    /// this one would pass the pull capacity
    /// ([`ObjectTable::create_for_pull`](super::ObjectTable::create_for_pull),
    /// [`StoreConfig::pull_capacity`](super::StoreConfig::pull_capacity)):
    /// [`StoreClient::pull`](super::StoreClient::pull) tries again as they
    /// end, and returns this when its deadline comes first.
    #[error(
        "pulls full: object {id} needs {needed} bytes; pulls in progress and those queued \
         ahead of it take or wait for {pulling} bytes, and pulls may take {capacity} at once"
    )]
    PullsFull {
        /// The object being pulled.
        id: ObjectId,
        /// Bytes it needs (data rounded up to 64).
        needed: u64,
        /// Bytes the unsealed objects of other pulls take, plus the room
        /// of the pulls queued ahead of this one (waiting for theirs).
        pulling: u64,
        /// The pull capacity in bytes.
        capacity: u64,
    },
    /// The object's metadata (plus its bookkeeping, `ENTRY_OVERHEAD`, and
    /// its creator's hold, `HOLDER_OVERHEAD`) — or a client's first hold on
    /// an existing object (a `get` or `pin`, `HOLDER_OVERHEAD`) — does not
    /// fit the store's metadata capacity even after evicting everything
    /// evictable: the service's heap is bounded as its arena is
    /// ([`ObjectTable::with_metadata_capacity`](super::ObjectTable::with_metadata_capacity)).
    #[error(
        "store metadata full: object {id} needs {needed} bytes of the metadata capacity of \
         {capacity} bytes, of which {used} are charged to live objects that cannot be evicted \
         (held, unsealed or pinned)"
    )]
    MetadataFull {
        /// The object being created, got or pinned.
        id: ObjectId,
        /// Bytes the operation is charged: for a create, the metadata plus
        /// `ENTRY_OVERHEAD` plus `HOLDER_OVERHEAD`; for a hold,
        /// `HOLDER_OVERHEAD`.
        needed: u64,
        /// The metadata capacity in bytes.
        capacity: u64,
        /// Bytes charged to live objects when the create failed.
        used: u64,
    },
    /// The arena was full and the fallback file for the object could not be
    /// created or reserved (the fallback directory's file system is full or
    /// unusable; the service's log names the OS error).
    #[error("out of disk: no room for the {size}-byte fallback file of object {id}")]
    OutOfDisk {
        /// The object being created.
        id: ObjectId,
        /// Bytes it needs.
        size: u64,
    },
    /// The arena was full and the object's fallback file would exceed the
    /// store service process's file-size limit (`RLIMIT_FSIZE`, `ulimit -f`):
    /// refused before the file grew, since growing it past the limit sends
    /// the service `SIGXFSZ`. Smaller objects still fit; or start the service
    /// with a higher limit.
    #[error(
        "the {size}-byte fallback file of object {id} would exceed the store service's \
         file-size limit of {limit} bytes (RLIMIT_FSIZE, `ulimit -f`)"
    )]
    FileSizeLimit {
        /// The object being created.
        id: ObjectId,
        /// Bytes it needs.
        size: u64,
        /// The service process's file-size limit in bytes.
        limit: u64,
    },
    /// The arena was full and the object's fallback file could not be
    /// opened because the store service is out of file descriptors: each
    /// fallback object keeps one open for its life (`docs/store.md`,
    /// "Fallback directory"). `open` fallback files are open now; `limit`
    /// is the service's descriptor limit (`RLIMIT_NOFILE`, which it raised
    /// to the hard limit at start). Free objects, or raise the hard limit.
    #[error(
        "out of file descriptors: the store cannot open a fallback file for object {id} \
         ({open} fallback files open, descriptor limit {limit})"
    )]
    OutOfDescriptors {
        /// The object being created.
        id: ObjectId,
        /// Fallback files the service holds open.
        open: u64,
        /// The service's descriptor limit (`u64::MAX`: unlimited).
        limit: u64,
    },
    /// The metadata is longer than [`MAX_METADATA_LEN`](super::MAX_METADATA_LEN).
    #[error("metadata of object {id} is {len} bytes, more than the limit of {max}")]
    MetadataTooLarge {
        /// The object.
        id: ObjectId,
        /// Its metadata length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The reply naming `id` is longer than the frames of this client's
    /// connection carry (its metadata, with a small ring:
    /// [`ClientOptions::shm`](super::ClientOptions)`.ring_capacity`);
    /// nothing was taken. A `get` of many objects is answered in several
    /// replies instead; this is one object alone.
    #[error(
        "the reply naming object {id} takes {len} bytes, more than this client's connection \
         carries ({max} bytes): connect with larger rings (ClientOptions::shm.ring_capacity)"
    )]
    ReplyTooLarge {
        /// The object.
        id: ObjectId,
        /// The reply's encoded length in bytes.
        len: u64,
        /// The largest frame the connection carries, in bytes.
        max: u64,
    },
    /// The data size is larger than the store can address.
    #[error("object {id} of {size} bytes is larger than the limit of {max} bytes")]
    ObjectTooLarge {
        /// The object.
        id: ObjectId,
        /// Requested data size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A store configuration value is unusable.
    #[error("invalid store configuration: {0}")]
    InvalidConfig(&'static str),
    /// Reserving the arena's pages failed (e.g. the tmpfs holding the
    /// session has less free space than the capacity asked for).
    #[error("could not reserve {capacity} bytes for the store arena: {source}")]
    ArenaReserve {
        /// The capacity asked for, in bytes.
        capacity: u64,
        /// The OS error (`ENOSPC` when the file system is full).
        #[source]
        source: std::io::Error,
    },
    /// The service sent a reply that breaks the protocol (an offset or
    /// length outside the arena, a reply of the wrong kind, a bad file
    /// name); the client is unusable afterwards.
    #[error("bad reply from the store service: {0}")]
    BadReply(&'static str),
    /// The client sent a request the service could not parse (reported to
    /// a hostile or buggy client, which is then disconnected).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// An earlier call on this client failed so that replies can no longer
    /// be matched to requests (it timed out, got a bad reply, or the
    /// connection ended: the service died, or cut the client off): connect
    /// again.
    #[error("the store connection is unusable since an earlier call failed ({cause}); reconnect")]
    ConnectionBroken {
        /// What that call failed with (the error and its causes, e.g.
        /// "receiving from the store: peer worker … died").
        cause: String,
    },
    /// The service did not answer within the client's reply timeout.
    #[error("the store service did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// No store service of that name is registered (live) in the
    /// session's directory.
    #[error(
        "no object store named {name:?} runs in this session (`shmwire node` starts one; in a program, `StoreService::start`)"
    )]
    NotRunning {
        /// The store's name (`DEFAULT_STORE_NAME` for a node's).
        name: String,
    },
    /// Connecting to the service failed otherwise (refused, timed out).
    #[error("connecting to the store: {0}")]
    Connect(#[from] crate::transport::ConnectError),
    /// Sending a request (or, on the service, a reply) failed;
    /// [`SendError::PeerDied`](crate::transport::SendError::PeerDied) means
    /// the other process died.
    #[error("sending to the store: {0}")]
    Send(#[from] crate::transport::SendError<crate::spec::EncodeError>),
    /// Receiving a reply failed; [`RecvError::PeerDied`](crate::transport::RecvError::PeerDied)
    /// means the service process died.
    #[error("receiving from the store: {0}")]
    Recv(#[from] crate::transport::RecvError),
    /// Setting up the service's event loop failed.
    #[error("store event loop: {0}")]
    EventLoop(#[from] std::io::Error),
    /// Creating or mapping the arena segment failed.
    #[error("store arena segment: {0}")]
    Shm(#[from] crate::shm::ShmError),
    /// An operating-system call failed (e.g. mapping a fallback file).
    #[error("store I/O: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Pull ([`StoreClient::pull`](super::StoreClient::pull)): the remote
    /// node's object endpoint could not be reached (refused, no route).
    #[error("pull of object {id} from {from}: cannot connect: {source}")]
    RemoteUnreachable {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Pull: the remote node has no sealed object of this id (still so at
    /// the pull's deadline).
    #[error("pull of object {id} from {from}: the remote node has no sealed object of that id")]
    RemoteNotFound {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
    },
    /// Pull: the remote node is serving as many pulls as it allows (still
    /// so at the pull's deadline).
    #[error(
        "pull of object {id} from {from}: the remote node is at its limit of concurrent pulls"
    )]
    RemoteBusy {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
    },
    /// Pull: the remote node could not serve the object (its own store
    /// failed, or it did not understand the request).
    #[error("pull of object {id} from {from}: the remote node failed to serve it")]
    RemoteFailed {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
    },
    /// Pull: the transfer ended (closed or reset, e.g. the serving node
    /// died) before all the declared bytes came; the local copy was
    /// aborted.
    #[error(
        "pull of object {id} from {from}: the transfer ended after {received} of {declared} bytes"
    )]
    PullTruncated {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// Data bytes the remote declared.
        declared: u64,
        /// Data bytes received.
        received: u64,
    },
    /// Pull: the remote sent more than the bytes it declared; the local
    /// copy was aborted.
    #[error("pull of object {id} from {from}: the remote sent more than the {declared} bytes it declared")]
    PullOverrun {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// Data bytes the remote declared.
        declared: u64,
    },
    /// Pull: the remote's reply breaks the pull protocol (wrong magic or
    /// version, unknown status, oversized metadata, closed before its
    /// header).
    #[error("pull of object {id} from {from}: bad reply: {why}")]
    PullProtocol {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// What was wrong.
        why: &'static str,
    },
    /// Pull: not done within the caller's timeout (connecting, waiting for
    /// the remote or for another local puller of the object, or the
    /// transfer); a local copy being written was aborted.
    #[error("pull of object {id} from {from}: not done within {timeout:?}")]
    PullTimedOut {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// The caller's timeout.
        timeout: std::time::Duration,
    },
    /// Pull: the transfer fell behind half the pace its deadline needs
    /// (after its first [`PULL_PACE_GRACE`](super::PULL_PACE_GRACE)) while
    /// another pull waited in the local store's queue for room it did not
    /// have: it gave its room up (the local copy was aborted) instead of
    /// holding the pull capacity to its deadline (see
    /// [`StoreClient::pull`](super::StoreClient::pull)).
    #[error(
        "pull of object {id} from {from} gave its room up to a waiting pull: {received} of \
         {declared} bytes came, under half the pace its timeout needs"
    )]
    PullPreempted {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// Data bytes the remote declared.
        declared: u64,
        /// Data bytes received.
        received: u64,
    },
    /// Pull: cancelled by its caller before it ended (a worker's pull
    /// that no task waits for any more); the local copy, if created, was
    /// aborted.
    #[error("pull of object {id} from {from} cancelled: nobody waits for it any more")]
    PullCancelled {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
    },
    /// Pull: a socket error other than the ones above; the local copy was
    /// aborted.
    #[error("pull of object {id} from {from}: {source}")]
    PullIo {
        /// The object.
        id: ObjectId,
        /// The remote node's object endpoint.
        from: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// The object the error is about, if it is about one.
    pub fn object_id(&self) -> Option<ObjectId> {
        use StoreError::*;
        match self {
            ObjectExists { id }
            | ObjectNotFound { id }
            | ObjectAlreadySealed { id }
            | ObjectNotSealed { id }
            | ObjectInUse { id, .. }
            | NotCreator { id }
            | StoreFull { id, .. }
            | PullsFull { id, .. }
            | MetadataFull { id, .. }
            | OutOfDisk { id, .. }
            | FileSizeLimit { id, .. }
            | OutOfDescriptors { id, .. }
            | MetadataTooLarge { id, .. }
            | ObjectTooLarge { id, .. }
            | RemoteUnreachable { id, .. }
            | RemoteNotFound { id, .. }
            | RemoteBusy { id, .. }
            | RemoteFailed { id, .. }
            | PullTruncated { id, .. }
            | PullOverrun { id, .. }
            | PullProtocol { id, .. }
            | PullTimedOut { id, .. }
            | PullCancelled { id, .. }
            | PullPreempted { id, .. }
            | PullIo { id, .. } => Some(*id),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, source: std::io::Error) -> Self {
        StoreError::Io { op, source }
    }
}
