//! The transport's errors: one enum per operation family.
//!
//! | family | enum | returned by |
//! | --- | --- | --- |
//! | connect / accept / bind | [`ConnectError`] | `connect_*`, `*Listener::bind`, `accept_*`, [`Connector`](super::Connector) |
//! | send | [`SendError`] | [`Connection::send_with`](super::Connection::send_with), `send`, `flush`, `close`, message sends |
//! | receive | [`RecvError`] | [`Connection::try_recv`](super::Connection::try_recv), `recv_*`, message receives, [`Mux::wait`](super::Mux::wait) |
//! | lookup | [`LookupError`](super::LookupError), [`PublishError`](super::PublishError) | [`WorkerLookup`](super::WorkerLookup) |
//!
//! Lower-layer failures travel as the error's `source()` (an
//! [`io::Error`], a [`RingError`], an [`AttachError`], a
//! [`ShmError`](crate::shm::ShmError), an rkyv check) — never as a
//! formatted string. A dead peer, an orderly close, a broken protocol and a
//! full peer (time-out) are different variants in every family.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use super::WorkerId;
use crate::ring::{AttachError, RingError};

/// Why a connection could not be opened or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nobody accepts connections at the address (the worker is gone).
    #[error("no worker {worker} listens at {address}")]
    NoListener {
        /// The worker that was to be reached.
        worker: WorkerId,
        /// The socket path or TCP address tried.
        address: String,
        /// The OS error of the connect.
        #[source]
        source: io::Error,
    },
    /// The worker could not be found (see [`LookupError`](super::LookupError)).
    #[error(transparent)]
    Lookup(#[from] super::LookupError),
    /// A listener's endpoint could not be published.
    #[error(transparent)]
    Publish(#[from] super::PublishError),
    /// The hello reached another worker than the one intended (Ray's
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
    /// The caller presented a different session token.
    #[error("bad session token")]
    BadToken,
    /// The two sides speak different protocol versions.
    #[error("protocol version mismatch: ours is {ours}, the peer's is {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The listener serves the worker id this side connects under for
    /// another process (one that presented another
    /// [`ClientSecret`](super::ClientSecret)): a worker binds each caller's
    /// id to the first secret it saw with it (`docs/worker.md`, "Whose
    /// caller state it is"). Connecting again under that id fails the same
    /// way for as long as the worker keeps that caller.
    #[error(
        "worker {worker} serves caller {caller} for another process (another client secret): \
         this process cannot connect under that worker id"
    )]
    CallerIdInUse {
        /// The id this side claimed.
        caller: WorkerId,
        /// The worker that refused it.
        worker: WorkerId,
    },
    /// The listener refused the hello for another reason.
    #[error("connection refused: {reason}")]
    Refused {
        /// Why: our own description, or the listener's (the reason its
        /// refusing reply carried, or a list of likely causes if it sent
        /// none).
        reason: String,
    },
    /// The handshake did not complete within the handshake timeout.
    #[error("timed out during the {during}")]
    TimedOut {
        /// The step (`"connect"`, `"hello"`, `"handshake reply"`, …).
        during: &'static str,
    },
    /// The peer hung up during the handshake.
    #[error("the peer hung up during the {during}")]
    PeerDied {
        /// The step.
        during: &'static str,
    },
    /// The peer's handshake bytes broke the protocol.
    #[error("handshake protocol violation: {what}")]
    Protocol {
        /// What was wrong, naming the field and its value.
        what: String,
    },
    /// A shared-memory segment of the connection could not be created or
    /// opened.
    #[error("ring segment")]
    Segment(#[source] crate::shm::ShmError),
    /// A ring of the connection could not be initialised or attached.
    #[error("attaching a ring")]
    Ring(#[source] AttachError),
    /// An operating-system call failed.
    #[error("{op}")]
    Io {
        /// What was being done (`"bind"`, `"accept"`, `"set socket options"`, …).
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ConnectError {
    /// Whether this is the listener's own failing `accept` (out of
    /// descriptors, say) rather than a caller's refused hello: nobody was
    /// refused, the caller is still queued. [`Listener`](super::Listener)
    /// returns it once while it lasts ([`Listener::accept_failing`](super::Listener)
    /// says whether it still does); the worker reports it as
    /// `WorkerEvent::AcceptFailed`, the store's health as clients left
    /// waiting.
    pub(crate) fn is_accept_failure(&self) -> bool {
        matches!(self, Self::Io { op: "accept", .. })
    }

    /// An [`io::Error`] of the handshake on a blocking socket, by kind:
    /// time-outs and hang-ups get their own variants.
    pub(crate) fn from_handshake_io(e: io::Error, during: &'static str) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::TimedOut { during },
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::PeerDied { during },
            _ => Self::Io {
                op: during,
                source: e,
            },
        }
    }

    /// A closure mapping an [`io::Error`] to [`ConnectError::Io`] for `op`.
    pub(crate) fn io(op: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { op, source }
    }
}

/// Why a frame could not be sent. `E` is the encoder's error
/// ([`Infallible`] for plain byte sends).
#[derive(Debug, thiserror::Error)]
pub enum SendError<E = Infallible> {
    /// The encoder failed; nothing was sent.
    #[error("encoder failed")]
    Encode(#[source] E),
    /// The frame is larger than the peer accepts (nothing was sent).
    #[error("frame of {len} bytes exceeds the peer's maximum of {max} bytes")]
    FrameTooLarge {
        /// Bytes requested.
        len: usize,
        /// The peer's maximum.
        max: usize,
    },
    /// The encoder reported more bytes than it was given (a bug in the
    /// caller's encoder; nothing was sent).
    #[error("encoder reported {used} bytes for a {len}-byte buffer")]
    EncoderOverrun {
        /// Bytes the encoder claimed.
        used: usize,
        /// Bytes it was given.
        len: usize,
    },
    /// A `PushTaskRequest` names another worker than this connection's
    /// peer (nothing was sent).
    #[error("wrong recipient: the request is meant for worker {intended} but the peer is worker {actual}")]
    WrongRecipient {
        /// The worker named in the request.
        intended: WorkerId,
        /// The connection's peer.
        actual: WorkerId,
    },
    /// This transport does not carry what was asked (nothing was sent):
    /// a [`FrameTag`](super::FrameTag) other than `Message` over TCP.
    #[error("this connection does not carry {0}")]
    Unsupported(&'static str),
    /// The peer took nothing for the whole send timeout (back-pressure).
    #[error("timed out waiting for the peer to make room")]
    TimedOut,
    /// A non-blocking send found the connection's queue at its bound: the
    /// peer is not reading (nothing was queued).
    #[error("send queue full: {queued} bytes queued for the peer, limit {limit}")]
    QueueFull {
        /// Bytes already queued.
        queued: usize,
        /// The bound ([`TransportConfig::send_queue_limit`](super::TransportConfig::send_queue_limit)).
        limit: usize,
    },
    /// The connection was closed in an orderly way (by either side).
    #[error("connection closed")]
    Closed,
    /// The peer died (process exit, hang-up, reset).
    #[error("peer worker {peer} died")]
    PeerDied {
        /// The peer.
        peer: WorkerId,
        /// The OS error that revealed it, when there was one.
        #[source]
        source: Option<Arc<io::Error>>,
    },
    /// The connection broke the protocol earlier and is unusable.
    #[error("connection broken: {what}")]
    Broken {
        /// What happened.
        what: String,
    },
    /// The peer cut the connection off and said why (its farewell: see
    /// [`RecvError::CutOff`]); nothing more can be sent.
    #[error("peer {peer} cut the connection off: {reason}")]
    CutOff {
        /// The peer.
        peer: WorkerId,
        /// What it said (at most 512 bytes, made printable).
        reason: String,
    },
    /// The shared ring refused the frame (corrupt or poisoned shared state).
    #[error("ring")]
    Ring(#[source] RingError),
    /// An operating-system call failed.
    #[error("{op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl SendError<Infallible> {
    /// The same error for an encoder of another error type.
    pub fn widen<E>(self) -> SendError<E> {
        match self {
            SendError::Encode(never) => match never {},
            SendError::FrameTooLarge { len, max } => SendError::FrameTooLarge { len, max },
            SendError::EncoderOverrun { used, len } => SendError::EncoderOverrun { used, len },
            SendError::WrongRecipient { intended, actual } => {
                SendError::WrongRecipient { intended, actual }
            }
            SendError::Unsupported(what) => SendError::Unsupported(what),
            SendError::TimedOut => SendError::TimedOut,
            SendError::QueueFull { queued, limit } => SendError::QueueFull { queued, limit },
            SendError::Closed => SendError::Closed,
            SendError::PeerDied { peer, source } => SendError::PeerDied { peer, source },
            SendError::Broken { what } => SendError::Broken { what },
            SendError::CutOff { peer, reason } => SendError::CutOff { peer, reason },
            SendError::Ring(e) => SendError::Ring(e),
            SendError::Io { op, source } => SendError::Io { op, source },
        }
    }
}

/// The source of a [`RecvError::PeerDied`] / [`SendError::PeerDied`] that
/// TCP's liveness check declared (inside an [`io::Error`] of kind
/// `TimedOut`): the peer answered no heartbeat for the liveness bound. It
/// may be dead, or only stopped (`SIGSTOP`, a debugger) or unreachable —
/// unlike a hang-up, reset or end of stream, which only a death (or an
/// abort) causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no heartbeat from the peer for {silent:?} ({after_ping:?} after a ping)")]
pub(crate) struct NoHeartbeat {
    /// Since the peer was last heard.
    pub(crate) silent: std::time::Duration,
    /// Since the unanswered heartbeat was sent.
    pub(crate) after_ping: std::time::Duration,
}

/// The silence of a peer declared dead by the liveness check (see
/// [`NoHeartbeat`]), from a `PeerDied` error's source.
fn no_heartbeat(source: &Option<Arc<io::Error>>) -> Option<std::time::Duration> {
    source
        .as_deref()?
        .get_ref()?
        .downcast_ref::<NoHeartbeat>()
        .map(|n| n.silent)
}

impl<E> SendError<E> {
    /// How long the peer had been silent when it was declared dead because
    /// it answered no heartbeat (TCP's liveness bound,
    /// [`TransportConfig::liveness_timeout`](super::TransportConfig::liveness_timeout));
    /// `None` for every other error, a death seen as a hang-up, reset or end
    /// of stream included. Such a peer may be dead, or only stopped or
    /// unreachable.
    pub fn stopped_answering(&self) -> Option<std::time::Duration> {
        match self {
            SendError::PeerDied { source, .. } => no_heartbeat(source),
            _ => None,
        }
    }

    /// What the peer (or the shared memory) did wrong, when this error means
    /// the connection's shared state is corrupt or poisoned rather than
    /// closed or dead (as [`RecvError::violation`]); for
    /// [`SendError::CutOff`], what the peer said.
    pub fn violation(&self) -> Option<String> {
        match self {
            SendError::Ring(e) => Some(ring_violation(e)),
            SendError::Broken { what } => Some(format!("protocol violation: {what}")),
            SendError::CutOff { peer, reason } => Some(said(*peer, reason)),
            _ => None,
        }
    }

    /// `true` if the connection can carry no more frames (as opposed to a
    /// failure of this one send: encoder, size, time-out).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            SendError::Closed
                | SendError::PeerDied { .. }
                | SendError::Broken { .. }
                | SendError::CutOff { .. }
                | SendError::Ring(_)
                | SendError::Io { .. }
        )
    }
}

/// Why no frame was received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// Nothing arrived within the timeout.
    #[error("timed out")]
    TimedOut,
    /// The connection was closed in an orderly way: every frame the peer sent
    /// before closing has been delivered.
    #[error("connection closed")]
    Closed,
    /// The peer died: every frame it completed has been delivered, nothing
    /// after.
    #[error("peer worker {peer} died")]
    PeerDied {
        /// The peer.
        peer: WorkerId,
        /// The OS error that revealed it, when there was one.
        #[source]
        source: Option<Arc<io::Error>>,
    },
    /// A frame header announced more than this side accepts.
    #[error("incoming frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// Our maximum.
        max: usize,
    },
    /// The peer broke the framing protocol; the connection is now unusable.
    #[error("protocol violation: {what}")]
    Protocol {
        /// What was wrong, naming the field and its value.
        what: String,
    },
    /// The shared ring's state is corrupt or poisoned: the peer violated
    /// the ring's protocol (or memory was scribbled), it did not die.
    #[error("protocol violation on the shared ring: {0}")]
    Ring(#[source] RingError),
    /// The peer cut the connection off and said why: as it ended the
    /// connection it sent a reason (a farewell, `docs/transport.md`) — this
    /// side's request did not decode, this side read none of its replies
    /// for the reply timeout, a frame broke the framing. Every frame it
    /// completed before has been delivered; the peer may be alive (a caller
    /// may connect again).
    #[error("peer {peer} cut the connection off: {reason}")]
    CutOff {
        /// The peer.
        peer: WorkerId,
        /// What it said (at most 512 bytes, made printable).
        reason: String,
    },
    /// A frame is not a valid message of the expected type (the connection
    /// stays usable).
    #[error("invalid message")]
    Decode(#[source] crate::spec::DecodeError),
    /// A `PushTaskRequest` meant for another worker was refused (Ray's
    /// `HandleWrongRecipient`); the connection stays usable.
    #[error(
        "wrong recipient: the request was meant for worker {intended} but reached worker {actual}"
    )]
    WrongRecipient {
        /// The worker named in the request.
        intended: WorkerId,
        /// This worker.
        actual: WorkerId,
    },
    /// An operating-system call failed.
    #[error("{op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A ring violation as [`RecvError::violation`] / [`SendError::violation`]
/// word it: "corrupt shared ring: " and what was wrong, said once.
fn ring_violation(e: &RingError) -> String {
    match e {
        RingError::Corrupt { what, value, limit } => {
            format!("corrupt shared ring: {what} (value {value}, limit {limit})")
        }
        RingError::Poisoned => {
            "corrupt shared ring: marked poisoned (by the other side, or whatever wrote its memory)"
                .to_owned()
        }
        other => format!("corrupt shared ring: {other}"),
    }
}

/// A peer's farewell as [`RecvError::violation`] / [`SendError::violation`]
/// word it: whose words they are, then the words.
fn said(peer: WorkerId, reason: &str) -> String {
    format!("worker {peer} said: {reason}")
}

impl RecvError {
    /// How long the peer had been silent when it was declared dead because
    /// it answered no heartbeat; `None` for every other error (see
    /// [`SendError::stopped_answering`]).
    pub fn stopped_answering(&self) -> Option<std::time::Duration> {
        match self {
            RecvError::PeerDied { source, .. } => no_heartbeat(source),
            _ => None,
        }
    }

    /// What the peer did wrong, when this error means it violated the
    /// protocol (corrupt or poisoned ring, broken framing) rather than
    /// closed or died: the connection is over, but the peer may be alive.
    /// For [`RecvError::CutOff`], what the peer said this side did wrong
    /// ("worker … said: …").
    pub fn violation(&self) -> Option<String> {
        match self {
            RecvError::Ring(e) => Some(ring_violation(e)),
            RecvError::Protocol { what } => Some(format!("protocol violation: {what}")),
            RecvError::FrameTooLarge { len, max } => {
                Some(format!("frame of {len} bytes over the maximum of {max}"))
            }
            RecvError::CutOff { peer, reason } => Some(said(*peer, reason)),
            _ => None,
        }
    }

    /// `true` if the connection can deliver no more frames (as opposed to a
    /// failure of this one receive: time-out, bad message, wrong recipient).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RecvError::Closed
                | RecvError::PeerDied { .. }
                | RecvError::FrameTooLarge { .. }
                | RecvError::Protocol { .. }
                | RecvError::CutOff { .. }
                | RecvError::Ring(_)
                | RecvError::Io { .. }
        )
    }
}

/// The state a connection ends in, from which both families' errors are
/// made (internal: each transport keeps one and reports it on every later
/// call).
#[derive(Debug, Clone)]
pub(crate) enum Ended {
    /// Closed in an orderly way (either side).
    Closed,
    /// The peer died.
    PeerDied(WorkerId, Option<Arc<io::Error>>),
    /// The peer broke the protocol.
    Broken(String),
    /// The peer cut it off and said why (its farewell).
    CutOff(WorkerId, String),
}

impl Ended {
    pub(crate) fn send_error<E>(&self) -> SendError<E> {
        match self {
            Ended::Closed => SendError::Closed,
            Ended::PeerDied(peer, source) => SendError::PeerDied {
                peer: *peer,
                source: source.clone(),
            },
            Ended::Broken(what) => SendError::Broken { what: what.clone() },
            Ended::CutOff(peer, reason) => SendError::CutOff {
                peer: *peer,
                reason: reason.clone(),
            },
        }
    }

    pub(crate) fn recv_error(&self) -> RecvError {
        match self {
            Ended::Closed => RecvError::Closed,
            Ended::PeerDied(peer, source) => RecvError::PeerDied {
                peer: *peer,
                source: source.clone(),
            },
            Ended::Broken(what) => RecvError::Protocol { what: what.clone() },
            Ended::CutOff(peer, reason) => RecvError::CutOff {
                peer: *peer,
                reason: reason.clone(),
            },
        }
    }
}
