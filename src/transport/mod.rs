//! Connections between workers: one duplex, ordered, reliable frame channel
//! API ([`Connection`]) over two transports; the peer's address decides which.
//!
//! * **Shared memory** ([`shm`]): two SPSC rings in shared memory per
//!   connection, bootstrapped over a Unix socket in the session directory
//!   that stays open so each side notices the other's death within
//!   milliseconds ([`ShmListener`], [`connect_shm`], [`ShmConnection`]).
//! * **TCP** ([`tcp`]): a mio listener and non-blocking streams carrying
//!   length-prefixed, 16-byte padded frames; used between nodes, or locally
//!   when forced ([`TcpListener`], [`connect_tcp`], [`TcpConnection`]).
//!
//! Both start with the same hello ([`handshake`]): protocol version, the
//! caller's worker id, the worker it wants to reach and the session token; a
//! mismatch is refused with a typed error ([`ConnectError::WrongRecipient`],
//! [`ConnectError::BadToken`], [`ConnectError::VersionMismatch`]).
//!
//! Messages are encoded *in place*: [`Connection::send_with`] hands the
//! encoder a 16-byte aligned `&mut [u8]` inside the peer's ring (or the TCP
//! write buffer), and [`Connection::recv_timeout`] / [`Connection::try_recv`]
//! return the frame as a 16-byte aligned `&[u8]` borrowed from shared memory
//! (or the TCP receive buffer), ready for rkyv's validated access
//! ([`MessageConnection`]). Because a shared-memory peer can still write a
//! frame it committed, message receives validate a private snapshot by
//! default ([`Connection::recv_private_timeout`]); reading in place is an
//! explicit, `unsafe` opt-in for trusted peers
//! ([`MessageConnection::recv_message_in_place_trusted`]).
//!
//! Map of the other types:
//!
//! * [`AnyConnection`] — either transport behind one type; [`Connector`]
//!   routes a Ray `Address` (same node → shm, else TCP, or TCP when forced);
//!   [`Listener`] accepts both for one worker.
//! * [`WorkerLookup`] — how a [`Connector`] finds a worker (id / name →
//!   [`Endpoint`]: Unix socket, TCP address) and a [`Listener`] publishes
//!   itself; the node layer's `Directory` implements it.
//! * [`Mux`] — one mio `Poll` (or a spin loop) over many connections.
//!
//! The protocol, frame formats, liveness and directory are described in
//! `docs/transport.md`.
//!
//! ```
//! use std::time::Duration;
//! use shmwire::transport::{connect_tcp, Connection, SessionToken, TcpListener, TransportConfig, WorkerId};
//!
//! let token = SessionToken([7; 16]);
//! let server_id = WorkerId::from_array([1; 28]);
//! let mut listener = TcpListener::bind_localhost(TransportConfig::new(server_id, token)).unwrap();
//! let addr = listener.local_addr().unwrap();
//! let client = std::thread::spawn(move || {
//!     let mut c = connect_tcp(addr, server_id, &TransportConfig::new(WorkerId::from_array([2; 28]), token)).unwrap();
//!     c.send(b"ping").unwrap();
//!     let reply = c.recv_timeout(Duration::from_secs(5)).unwrap();
//!     assert_eq!(&*reply, b"pong");
//! });
//! let mut server = listener.accept_timeout(Duration::from_secs(5)).unwrap();
//! let frame = server.recv_timeout(Duration::from_secs(5)).unwrap();
//! assert_eq!(&*frame, b"ping");
//! assert_eq!(frame.as_ptr() as usize % 16, 0);
//! drop(frame);
//! server.send_with(4, |buf| { buf.copy_from_slice(b"pong"); Ok::<_, std::convert::Infallible>(4) }).unwrap();
//! client.join().unwrap();
//! ```

use std::ops::Deref;
use std::time::Duration;

mod accept;
mod any;
mod error;
mod farewell;
pub mod handshake;
pub mod heartbeat;
mod lookup;
mod message;
mod mux;
mod progress;
pub mod shm;
pub mod tcp;

pub use crate::ids::WorkerId;
pub use any::{
    AcceptStats, AnyConnection, AnyFrame, Connector, ListenOptions, Listener, Restored,
    LISTENER_CHECK_INTERVAL,
};
pub use error::{ConnectError, RecvError, SendError};
pub use handshake::{ClientSecret, SessionToken, PROTOCOL_VERSION};
pub(crate) use lookup::entries_text;
pub use lookup::{
    valid_worker_name, Endpoint, LookupError, PublishError, Published, StatsState, WorkerLookup,
    MAX_STATS_REASON,
};
pub use message::MessageConnection;
pub use mux::{
    hello_token, lock_listener, Mux, MuxConnection, MuxEvent, MuxWaker, PeerKey, SharedListener,
};
pub use progress::ReadProgress;
pub use shm::{connect_shm, ShmConnection, ShmFrame, ShmListener, ShmOptions};
pub use tcp::{
    connect_tcp, TcpConnection, TcpFrame, TcpListener, HEARTBEAT_ALLOWANCE_PERIOD,
    MAX_HEARTBEATS_PER_RECEIVE,
};

/// Default largest frame a connection accepts: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 << 20;

/// Default [`TransportConfig::max_receive_memory`]: 1 GiB of receive
/// buffers grown for large frames, for all the TCP connections one
/// listener accepted (as [`shm::DEFAULT_MAX_RING_MEMORY`] bounds their
/// rings on shared memory).
pub const DEFAULT_MAX_RECEIVE_MEMORY: usize = 1 << 30;

/// Which transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Frames over a TCP stream.
    Tcp,
    /// Frames through rings in shared memory.
    Shm,
}

/// What a frame carries besides its bytes. Every transport carries
/// [`FrameTag::Message`]; the shape frames, with which a caller sends a
/// repeated actor-task request as the bytes that changed since one the
/// worker keeps (`docs/worker.md`, "Compact requests"), travel on shared
/// memory only ([`Connection::carries_tags`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameTag {
    /// A message.
    Message,
    /// A message that the receiver also keeps as shape `slot`
    /// (`< SHAPE_SLOTS`), replacing what that slot held.
    Shape(u8),
    /// The bytes of a message of shape `slot` that may differ from it, in
    /// the shape's order (the receiver rebuilds the message from them).
    Delta(u8),
}

pub use crate::spec::SHAPE_SLOTS;

/// How full a shared-memory connection's two rings are, in bytes (see
/// [`ShmConnection::ring_fill`]): what `shmwire inspect` shows per
/// connection. Values are one fresh look at the peer's index, clamped to
/// the capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingFill {
    /// Bytes waiting in the ring this side reads.
    pub rx_used: usize,
    /// Capacity of the ring this side reads.
    pub rx_capacity: usize,
    /// Bytes this side wrote that the peer has not released yet.
    pub tx_used: usize,
    /// Capacity of the ring this side writes.
    pub tx_capacity: usize,
}

/// Default [`TransportConfig::send_timeout`]: 30 s.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings shared by a worker's listeners and the connections it opens.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This worker's id (sent in every hello; checked against the intended id
    /// of incoming hellos).
    pub worker_id: WorkerId,
    /// The session's token.
    pub token: SessionToken,
    /// Largest frame payload this side accepts (announced to the peer, which
    /// refuses to send more). At most `u32::MAX`.
    pub max_frame_len: usize,
    /// Bound on connecting and on the whole hello exchange (one deadline
    /// per hello, however its bytes arrive).
    pub handshake_timeout: Duration,
    /// Most hellos a [`Listener`] runs at once per transport (Unix socket,
    /// TCP), so silent sockets cannot pile up without bound; a caller beyond
    /// it makes the oldest pending hello of its transport drop, so they
    /// cannot lock new callers out either.
    pub max_pending_hellos: usize,
    /// Bound on a send that waits for the peer to make room (back-pressure):
    /// it fails with [`SendError::TimedOut`] once the peer has taken
    /// nothing for this long.
    pub send_timeout: Duration,
    /// TCP: bytes the write buffer may hold before a send waits for the
    /// kernel to take them (a single larger frame is still accepted).
    pub send_buffer_limit: usize,
    /// Most bytes [`Connection::try_send_with`] queues for a peer that does
    /// not read before it fails with [`SendError::QueueFull`].
    pub send_queue_limit: usize,
    /// TCP: most bytes all the connections one [`TcpListener`] accepted
    /// may hold in receive buffers beyond 256 KiB each (default
    /// [`DEFAULT_MAX_RECEIVE_MEMORY`], 1 GiB). A buffer starts at 16 KiB,
    /// grows as a large frame arrives, up to `max_frame_len`, and goes back
    /// to 16 KiB once empty if it grew past 256 KiB (one of at most 256 KiB
    /// is kept uncharged: idle connections hold none of the budget, and at
    /// most `max_connections` × 256 KiB in all). A connection whose frame
    /// would grow its buffer beyond what is left takes back the shares of
    /// connections whose unfinished frames have held theirs longer than
    /// `liveness_timeout` (5 s when heartbeats are off) and longer than its
    /// own, oldest first, when that makes room (those are cut off at their
    /// next receive or liveness check); otherwise it is cut off itself
    /// (its receive fails with [`RecvError::Protocol`], naming the budget),
    /// not the others: callers with the session token could otherwise make
    /// a worker hold `max_frame_len` per connection, 16 GiB for 1,024
    /// connections sending unfinished frames, or keep every other caller's
    /// large frames out by dripping into theirs. Connections this side
    /// opens ([`connect_tcp`]) are not counted.
    pub max_receive_memory: usize,
    /// TCP: a peer from which nothing (not even a heartbeat answer) arrives
    /// for this long is reported dead ([`RecvError::PeerDied`]); after a
    /// third of it a heartbeat is sent. Heartbeats are answered whenever the
    /// peer receives or waits in a [`Mux`], so a peer must service its
    /// connection at least that often. `Duration::ZERO` turns heartbeats
    /// off. (Shared memory needs none: the bootstrap socket's hang-up is
    /// the death signal.)
    pub liveness_timeout: Duration,
    /// Whether a listener admits a hello from a caller id presenting a
    /// client secret ([`CallerAdmission`]); `None` admits every hello that
    /// passes the token, recipient and transport checks. A worker sets it
    /// to refuse, in the handshake, a caller id it serves for another
    /// process.
    pub admission: Option<CallerAdmission>,
}

/// A listener's question about each hello that passed the token, recipient
/// and transport checks: may caller `id`, presenting `secret`, connect?
/// ([`Admission`]). Called on the accepting thread, once per hello; it must
/// not block.
#[derive(Clone)]
pub struct CallerAdmission(pub std::sync::Arc<AdmitFn>);

/// The question a [`CallerAdmission`] answers: may caller `id`, presenting
/// `secret`, connect?
pub type AdmitFn = dyn Fn(&WorkerId, &ClientSecret) -> Admission + Send + Sync;

/// A [`CallerAdmission`]'s answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The caller connects.
    Admit,
    /// The id is another process's: the hello is answered "caller id in
    /// use" (status 5; the caller gets [`ConnectError::CallerIdInUse`]).
    CallerIdInUse,
    /// No room for this connection, for the reason given (the listener
    /// reports it; the caller gets [`ConnectError::Refused`], status 4).
    Refused(String),
}

impl std::fmt::Debug for CallerAdmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallerAdmission(..)")
    }
}

impl TransportConfig {
    /// Defaults: 16 MiB frames, 5 s handshake, 64 pending hellos, 30 s send
    /// timeout, 256 KiB TCP write buffer, 4 MiB send queue, 1 GiB of TCP
    /// receive memory per listener, 5 s TCP liveness.
    pub fn new(worker_id: WorkerId, token: SessionToken) -> Self {
        Self {
            worker_id,
            token,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: Duration::from_secs(5),
            max_pending_hellos: 64,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            send_buffer_limit: 256 * 1024,
            send_queue_limit: 4 << 20,
            max_receive_memory: DEFAULT_MAX_RECEIVE_MEMORY,
            liveness_timeout: Duration::from_secs(5),
            admission: None,
        }
    }

    pub(crate) fn max_frame_u32(&self) -> u32 {
        u32::try_from(self.max_frame_len).unwrap_or(u32::MAX)
    }
}

/// Refuses a frame of `max_len` bytes when the peer accepts at most
/// `peer_max` (every transport checks this before writing anything).
pub(crate) fn check_send_len<E>(max_len: usize, peer_max: usize) -> Result<(), SendError<E>> {
    if max_len > peer_max {
        return Err(SendError::FrameTooLarge {
            len: max_len,
            max: peer_max,
        });
    }
    Ok(())
}

/// Runs a frame encoder on `buf` (whose length is the frame's maximum) and
/// checks the length it reports; every transport's send path uses it.
pub(crate) fn run_encoder<E>(
    buf: &mut [u8],
    encode: impl FnOnce(&mut [u8]) -> Result<usize, E>,
) -> Result<usize, SendError<E>> {
    let len = buf.len();
    let used = encode(buf).map_err(SendError::Encode)?;
    if used > len {
        return Err(SendError::EncoderOverrun { used, len });
    }
    Ok(used)
}

/// A duplex, ordered, reliable frame channel to one peer worker — the API
/// shared by every transport.
///
/// Frames are delivered exactly once and in order. After the peer closes
/// ([`Connection::close`]) every frame it sent before closing is delivered,
/// then receives fail with [`RecvError::Closed`]; if the peer dies
/// instead, every frame it completed is delivered, then
/// [`RecvError::PeerDied`].
pub trait Connection {
    /// A received frame: derefs to its payload, 16-byte aligned. Dropping it
    /// releases the space (on shared memory, back to the peer's ring).
    type Frame<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// The transport in use.
    fn kind(&self) -> TransportKind;

    /// The peer's worker id (as verified by the handshake).
    fn peer_worker_id(&self) -> WorkerId;

    /// The largest payload the peer accepts.
    fn max_send_len(&self) -> usize;

    /// Cuts the connection off for a violation this side found in what the
    /// peer sent (a frame that does not decode): on shared memory both
    /// rings are poisoned, so the peer's next receive or send reports a
    /// violation (`RecvError::violation`) rather than a close when this side
    /// then drops the connection; the connection itself reports the
    /// violation from now on. Over TCP it does nothing (dropping the
    /// connection closes the socket). Say why first with
    /// [`Connection::farewell`].
    fn cut_off(&mut self) {}

    /// Tells the peer why this side is about to end the connection
    /// (`reason`, at most 512 bytes are sent), so that the peer's next
    /// receive or send fails with [`RecvError::CutOff`] /
    /// [`SendError::CutOff`] naming it, once the connection has ended,
    /// rather than with a bare close, death or violation. Best effort and
    /// never waiting: over shared memory it is written to the bootstrap
    /// socket; over TCP it is the close frame, sent only when no output is
    /// queued (a caller that reads nothing gets none) — and the connection
    /// is closed for sending then. Said once; later calls do nothing. The
    /// default does nothing.
    fn farewell(&mut self, reason: &str) {
        let _ = reason;
    }

    /// Over shared memory, on the listener's side: when this side ends the
    /// connection while the peer is still there, its rings stay whole for
    /// the peer to read its last frames for `extra` longer than the usual
    /// 2 s (`RING_LINGER`) before their memory is discarded. A worker that
    /// cuts off a caller for reading none of its replies gives it as long
    /// again as it waited: the replies already in its ring are read when
    /// it comes back (the attack on `e3a6d33`: a caller busy 35 s between
    /// submit and `get` lost every call, the ones answered in its ring
    /// too, 2 s after the 30 s cut-off). The lingering rings stay charged
    /// against the listener's ring memory, and at most 64 linger at once.
    /// The default (TCP: no rings) does nothing.
    fn linger_longer(&mut self, extra: Duration) {
        let _ = extra;
    }

    /// Sends one frame encoded in place: `encode` receives a 16-byte aligned
    /// buffer of exactly `max_len` bytes and returns how many it used. Nothing
    /// is sent if it fails. Waits (at most the send timeout) while the peer
    /// reads too slowly. Returns the frame's length.
    fn send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>;

    /// Sends one frame encoded in place **without ever waiting**: when the
    /// peer has no room right now the frame is queued on this connection
    /// (bounded by [`TransportConfig::send_queue_limit`] bytes) and handed
    /// over later — by the next send, [`Connection::flush`], or a
    /// [`Mux::wait`] that has this connection, which flushes queued output
    /// while it waits. Frames keep their order with every other send.
    ///
    /// # Errors
    /// [`SendError::QueueFull`] when the queue would exceed its bound — the
    /// peer is not reading; the caller should give up on it (this
    /// connection alone) — plus the errors of [`Connection::send_with`]
    /// except `TimedOut`.
    fn try_send_with<F, E>(&mut self, max_len: usize, encode: F) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>;

    /// Whether this connection carries [`FrameTag`]s other than
    /// `Message` (shared memory does, TCP does not).
    fn carries_tags(&self) -> bool {
        false
    }

    /// [`Connection::send_with`] of a frame tagged `tag`.
    ///
    /// # Errors
    /// As [`Connection::send_with`]; a tag other than `Message` on a
    /// connection that does not [carry](Connection::carries_tags) tags
    /// fails with [`SendError::Unsupported`] (nothing sent).
    fn send_tagged_with<F, E>(
        &mut self,
        tag: FrameTag,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        match tag {
            FrameTag::Message => self.send_with(max_len, encode),
            _ => Err(SendError::Unsupported("tagged frames")),
        }
    }

    /// [`Connection::try_send_with`] of a frame tagged `tag` (queued with
    /// its tag when the peer has no room).
    ///
    /// # Errors
    /// As [`Connection::try_send_with`]; a tag other than `Message` on a
    /// connection that does not [carry](Connection::carries_tags) tags
    /// fails with [`SendError::Unsupported`] (nothing sent).
    fn try_send_tagged_with<F, E>(
        &mut self,
        tag: FrameTag,
        max_len: usize,
        encode: F,
    ) -> Result<usize, SendError<E>>
    where
        F: FnOnce(&mut [u8]) -> Result<usize, E>,
    {
        match tag {
            FrameTag::Message => self.try_send_with(max_len, encode),
            _ => Err(SendError::Unsupported("tagged frames")),
        }
    }

    /// [`Connection::try_send_with`] of a copy of `bytes`.
    fn try_send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.try_send_with::<_, std::convert::Infallible>(bytes.len(), |buf| {
            buf.copy_from_slice(bytes);
            Ok(bytes.len())
        })
        .map(|_| ())
    }

    /// Bytes sent but not yet handed to the peer (TCP: not yet taken by the
    /// kernel; shm: queued behind a full ring).
    fn pending_send_bytes(&self) -> usize;

    /// [`Connection::pending_send_bytes`] as this side left it at its last
    /// send or flush, read without a lock: for a check made after every
    /// send on the hot path (a caller's "behind" flag). Over TCP a
    /// heartbeat helper may have flushed (or written a heartbeat) since,
    /// so it can be stale either way by what the helper did; on shared
    /// memory it is exact. Default: `pending_send_bytes`.
    fn pending_send_hint(&self) -> usize {
        self.pending_send_bytes()
    }

    /// Sends a copy of `bytes` as one frame.
    fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_with::<_, std::convert::Infallible>(bytes.len(), |buf| {
            buf.copy_from_slice(bytes);
            Ok(bytes.len())
        })
        .map(|_| ())
    }

    /// Waits until everything sent has been handed to the peer (TCP: the
    /// kernel; shm: the ring, where it already is).
    fn flush(&mut self) -> Result<(), SendError>;

    /// Receives the next frame if one is there, without waiting.
    ///
    /// On shared memory the frame is borrowed from the ring, which the peer
    /// can still write ([`Connection::frames_shared`]): reading its bytes is
    /// safe, but validate an rkyv message from
    /// [`Connection::try_recv_private`] instead of in place unless the peer
    /// is trusted (see [`MessageConnection`]).
    fn try_recv(&mut self) -> Result<Option<Self::Frame<'_>>, RecvError>;

    /// Receives the next frame, waiting at most `timeout`
    /// ([`RecvError::TimedOut`] then).
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Self::Frame<'_>, RecvError>;

    /// Receives the next frame as a **private snapshot**, waiting at most
    /// `timeout`: bytes no other process can change while the borrow lives,
    /// 16-byte aligned.
    ///
    /// On shared memory the frame is copied into a connection-private,
    /// reusable buffer (it grows to the largest frame received, at most the
    /// maximum frame length, and is not reallocated after that) and released
    /// to the peer's ring at once; on TCP the frame already lies in the
    /// connection's own receive buffer and is returned in place. This is what
    /// [`MessageConnection`]'s default receives validate and read (see
    /// `docs/transport.md`, "Hostile peers").
    fn recv_private_timeout(&mut self, timeout: Duration) -> Result<&[u8], RecvError>;

    /// Non-blocking [`Connection::recv_private_timeout`]. A frame tagged
    /// other than [`FrameTag::Message`] is a violation here (see
    /// [`Connection::try_recv_private_tagged`]).
    fn try_recv_private(&mut self) -> Result<Option<&[u8]>, RecvError>;

    /// [`Connection::try_recv_private`] that also accepts shape frames and
    /// says how the frame is tagged. A connection that does not
    /// [carry](Connection::carries_tags) tags returns only `Message`s.
    fn try_recv_private_tagged(&mut self) -> Result<Option<(FrameTag, &[u8])>, RecvError> {
        Ok(self.try_recv_private()?.map(|b| (FrameTag::Message, b)))
    }

    /// `true` if received frames lie in memory another process can write
    /// while they are borrowed (shared memory), `false` if they are private
    /// to this connection (TCP).
    fn frames_shared(&self) -> bool;

    /// Closes the connection in an orderly way: frames already sent are still
    /// delivered, then the peer sees [`RecvError::Closed`]. Idempotent.
    fn close(&mut self) -> Result<(), SendError>;
}
