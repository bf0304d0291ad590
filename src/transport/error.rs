//! The transport layer's error type.

use super::WorkerId;

/// Everything that can go wrong on a [`Connection`](super::Connection), while
/// connecting, accepting, or looking a worker up in the
/// [`Directory`](super::Directory).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer went away without closing the connection (its process died, its
    /// socket hung up, or the connection was reset). Frames it committed before
    /// dying have been delivered; nothing after.
    #[error("peer died: {0}")]
    PeerDied(String),
    /// The connection was closed in an orderly way (by the peer, after all its
    /// frames were delivered, or locally by [`Connection::close`](super::Connection::close)).
    #[error("connection closed")]
    Closed,
    /// A bounded wait ran out before anything happened.
    #[error("timed out")]
    TimedOut,
    /// The hello asked for a worker other than the one listening (Ray's
    /// `HandleWrongRecipient`).
    #[error(
        "wrong recipient: the hello was meant for worker {intended} but reached worker {actual}"
    )]
    WrongRecipient {
        /// The worker the caller wanted.
        intended: WorkerId,
        /// The worker that answered.
        actual: WorkerId,
    },
    /// The peer presented a session token that is not this session's.
    #[error("bad session token")]
    BadToken,
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours is {ours}, the peer's is {theirs}")]
    VersionMismatch {
        /// Our protocol version.
        ours: u16,
        /// The peer's protocol version.
        theirs: u16,
    },
    /// A frame is larger than the receiver accepts (on send: refused before
    /// anything was written; on receive: the peer claimed it, the connection is
    /// now unusable and nothing was allocated for it).
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The offending length.
        len: usize,
        /// The maximum that applies.
        max: usize,
    },
    /// The peer sent bytes that break the protocol (bad magic, bad frame kind,
    /// an encoder that wrote past its grant, corrupted shared memory, …).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The connection was refused for a reason not covered above.
    #[error("connection refused by the peer: {0}")]
    Refused(String),
    /// Nobody listens at the worker's bootstrap socket any more.
    #[error("no live worker {0} in the directory")]
    NoSuchWorker(String),
    /// A message could not be encoded.
    #[error("encoding a message: {0}")]
    Encode(crate::spec::EncodeError),
    /// A received frame is not a valid message of the expected type.
    #[error("invalid message: {0}")]
    Decode(crate::spec::DecodeError),
    /// A worker lookup failed (see [`LookupError`](super::LookupError)).
    #[error(transparent)]
    Lookup(#[from] super::LookupError),
    /// Publishing a listener's endpoint failed.
    #[error(transparent)]
    Publish(#[from] super::PublishError),
    /// A shared-memory segment could not be created or opened.
    #[error("shared memory: {0}")]
    Shm(#[from] crate::shm::ShmError),
    /// An operating-system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<rustix::io::Errno> for TransportError {
    fn from(e: rustix::io::Errno) -> Self {
        TransportError::Io(e.into())
    }
}

impl TransportError {
    /// `true` for errors after which the connection can never carry another
    /// frame (dead or closed peer, protocol violation, I/O failure).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            TransportError::PeerDied(_)
                | TransportError::Closed
                | TransportError::Protocol(_)
                | TransportError::Io(_)
                | TransportError::Shm(_)
        )
    }
}

/// The error of [`Connection::send_with`](super::Connection::send_with): either
/// the caller's encoder failed (nothing was sent) or the transport did.
#[derive(Debug, thiserror::Error)]
pub enum SendError<E> {
    /// The encoder returned an error; nothing was committed.
    #[error("encoder failed: {0}")]
    Encode(E),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl SendError<std::convert::Infallible> {
    /// Unwraps the transport error of an infallible encoder.
    pub fn into_transport(self) -> TransportError {
        match self {
            SendError::Encode(never) => match never {},
            SendError::Transport(e) => e,
        }
    }
}
