//! Message-level helpers over any [`Connection`]: rkyv messages encoded in
//! place into the connection and received as validated archived views, plus
//! the `PushTaskRequest` recipient check (Ray's `HandleWrongRecipient`).
//!
//! # Receive policy: validate a snapshot, unless the peer is trusted
//!
//! Validation (bytecheck) describes the bytes at the moment it ran. On shared
//! memory the sending process keeps write access to a committed frame, so a
//! hostile or buggy peer could rewrite a relative pointer or a length
//! *after* validation and make the receiver's later in-place reads leave the
//! frame — undefined behaviour. Hence two modes:
//!
//! * **Default — private snapshot** ([`MessageConnection::recv_message_with`],
//!   [`MessageConnection::try_recv_message_with`],
//!   [`MessageConnection::recv_push_task_with`]): the frame is first copied
//!   into a connection-private, 16-byte aligned, reusable buffer
//!   ([`Connection::recv_private_timeout`]; no allocation once it has grown
//!   to the largest frame), released to the peer's ring, and validated and
//!   read *there*. Whatever the peer writes afterwards cannot reach the
//!   archived view; a frame torn by a concurrent write is either still a
//!   valid archive (and read consistently) or refused with
//!   [`TransportError::Decode`]. Never UB, never a panic. On TCP the frame
//!   already is private, so nothing is copied.
//! * **Opt-in zero copy — `in_place_trusted`**
//!   ([`MessageConnection::recv_message_in_place_trusted`],
//!   [`MessageConnection::try_recv_message_in_place_trusted`]): validated,
//!   then read in place in shared memory. This is DESIGN's "documented
//!   trusted mode" for the transport: the methods are `unsafe` because their
//!   soundness depends on another process (the peer must not modify a frame
//!   it committed until it is released).

use std::time::Duration;

use super::{Connection, RecvError, SendError, WorkerId};
use crate::spec::{self, ArchivedPushTaskRequest, EncodeError, Encoder, Message, PushTaskRequest};

/// Validates `bytes` as an `M` and lends the archived view to `f`.
fn decode<M: Message, R>(bytes: &[u8], f: impl FnOnce(&M::Archived) -> R) -> Result<R, RecvError> {
    let archived = spec::access::<M>(bytes).map_err(RecvError::Decode)?;
    Ok(f(archived))
}

/// Refuses a `PushTaskRequest` not meant for `me` (Ray's
/// `HandleWrongRecipient`), else lends it to `f`.
fn for_me<R>(
    me: WorkerId,
    req: &ArchivedPushTaskRequest,
    f: impl FnOnce(&ArchivedPushTaskRequest) -> R,
) -> Result<R, RecvError> {
    if req.intended_worker_id != me {
        return Err(RecvError::WrongRecipient {
            intended: req.intended_worker_id,
            actual: me,
        });
    }
    Ok(f(req))
}

/// Extension methods for sending and receiving [`spec`] messages; implemented
/// for every [`Connection`].
///
/// Receive policy: by default a message is validated and read in a private
/// snapshot of the frame ([`Connection::recv_private_timeout`]), so a
/// shared-memory peer that rewrites the frame after validation cannot reach
/// the archived view (never UB, never a panic). Reading in place in shared
/// memory is the explicit, `unsafe` opt-in `*_in_place_trusted`, for peers
/// trusted not to modify committed frames (`docs/transport.md`, "Hostile
/// peers").
pub trait MessageConnection: Connection {
    /// Encodes `msg` straight into the connection (the peer's ring on shared
    /// memory) in one serialization pass: reserves
    /// [`Encoder::reserve_hint`] bytes (the last message's length plus
    /// slack), serializes in place and publishes only the bytes used. A
    /// message longer than the reservation is not sent; the failed pass has
    /// measured it, and it is encoded again into a reservation of exactly its
    /// length. Returns the frame's length (bytes).
    fn send_message<M: Message>(
        &mut self,
        encoder: &mut Encoder,
        msg: &M,
    ) -> Result<usize, SendError<EncodeError>> {
        let guess = encoder.reserve_hint(self.max_send_len());
        match self.send_with(guess, |buf| encoder.encode_into(msg, buf)) {
            Err(SendError::Encode(EncodeError::RegionTooSmall { needed, .. })) => {
                self.send_with(needed, |buf| encoder.encode_into(msg, buf))
            }
            other => other,
        }
    }

    /// [`MessageConnection::send_message`] that never waits
    /// ([`Connection::try_send_with`]): when the peer has no room the
    /// message is queued on this connection, within its bound, and
    /// [`SendError::QueueFull`] says the peer is not reading. A server
    /// replying to many callers uses this so that one caller that stops
    /// reading delays no other.
    ///
    /// One serialization pass as in [`MessageConnection::send_message`]:
    /// the guessed length is what must find room in the peer's ring (or in
    /// the queue's bound); the frame itself, sent or queued, has the
    /// message's exact length.
    fn try_send_message<M: Message>(
        &mut self,
        encoder: &mut Encoder,
        msg: &M,
    ) -> Result<usize, SendError<EncodeError>> {
        let guess = encoder.reserve_hint(self.max_send_len());
        match self.try_send_with(guess, |buf| encoder.encode_into(msg, buf)) {
            Err(SendError::Encode(EncodeError::RegionTooSmall { needed, .. })) => {
                self.try_send_with(needed, |buf| encoder.encode_into(msg, buf))
            }
            other => other,
        }
    }

    /// Receives the next frame as a private snapshot
    /// ([`Connection::recv_private_timeout`]: on shared memory a copy into a
    /// reusable connection-private buffer, on TCP the receive buffer),
    /// validates it as an `M` (bytecheck) and calls `f` with the archived
    /// view. Safe against a peer that rewrites the frame at any time: its
    /// writes cannot reach the view.
    fn recv_message_with<M: Message, R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<R, RecvError> {
        decode::<M, R>(self.recv_private_timeout(timeout)?, f)
    }

    /// Non-blocking [`MessageConnection::recv_message_with`].
    fn try_recv_message_with<M: Message, R>(
        &mut self,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<Option<R>, RecvError> {
        self.try_recv_private()?
            .map(|bytes| decode::<M, R>(bytes, f))
            .transpose()
    }

    /// Zero-copy receive for trusted peers: validates the frame where it lies
    /// (shared memory on the shm transport) and calls `f` with an archived
    /// view borrowed from it; the frame is released when `f` returns. Saves
    /// the snapshot copy of [`MessageConnection::recv_message_with`] (tens of
    /// nanoseconds for a typical request, see `docs/messages.md`).
    ///
    /// # Safety
    ///
    /// The peer must not modify the frame after committing it, until `f`
    /// returns. Validation only covers the bytes as they were when checked: a
    /// peer that rewrites a relative pointer or length afterwards can make
    /// the reads in `f` leave the frame, which is undefined behaviour. Use it
    /// only for peers trusted to follow the protocol (same binary, same user,
    /// no one else able to write the session's segments). On TCP frames are
    /// private and the condition always holds.
    unsafe fn recv_message_in_place_trusted<M: Message, R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<R, RecvError> {
        let frame = self.recv_timeout(timeout)?;
        decode::<M, R>(&frame, f)
    }

    /// Non-blocking [`MessageConnection::recv_message_in_place_trusted`].
    ///
    /// # Safety
    ///
    /// As for [`MessageConnection::recv_message_in_place_trusted`]: the peer
    /// must not modify the frame until `f` returns.
    unsafe fn try_recv_message_in_place_trusted<M: Message, R>(
        &mut self,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<Option<R>, RecvError> {
        match self.try_recv()? {
            None => Ok(None),
            Some(frame) => decode::<M, R>(&frame, f).map(Some),
        }
    }

    /// Sends a `PushTaskRequest`, refusing one whose intended worker is not
    /// this connection's peer.
    fn send_push_task(
        &mut self,
        encoder: &mut Encoder,
        request: &PushTaskRequest,
    ) -> Result<usize, SendError<EncodeError>> {
        let peer = self.peer_worker_id();
        if request.intended_worker_id != peer {
            return Err(SendError::WrongRecipient {
                intended: request.intended_worker_id,
                actual: peer,
            });
        }
        self.send_message(encoder, request)
    }

    /// Receives a `PushTaskRequest` for worker `me` (as a private snapshot,
    /// like [`MessageConnection::recv_message_with`]): a request meant for
    /// another worker is consumed and refused with
    /// [`RecvError::WrongRecipient`] (Ray's `HandleWrongRecipient`).
    fn recv_push_task_with<R>(
        &mut self,
        me: WorkerId,
        timeout: Duration,
        f: impl FnOnce(&ArchivedPushTaskRequest) -> R,
    ) -> Result<R, RecvError> {
        self.recv_message_with::<PushTaskRequest, _>(timeout, |req| for_me(me, req, f))?
    }

    /// [`MessageConnection::recv_push_task_with`] read in place, for trusted
    /// peers.
    ///
    /// # Safety
    ///
    /// As for [`MessageConnection::recv_message_in_place_trusted`]: the peer
    /// must not modify the frame until `f` returns.
    unsafe fn recv_push_task_in_place_trusted<R>(
        &mut self,
        me: WorkerId,
        timeout: Duration,
        f: impl FnOnce(&ArchivedPushTaskRequest) -> R,
    ) -> Result<R, RecvError> {
        // SAFETY: forwarded to our caller (this function's contract).
        unsafe {
            self.recv_message_in_place_trusted::<PushTaskRequest, _>(timeout, |req| {
                for_me(me, req, f)
            })
        }?
    }
}

impl<C: Connection + ?Sized> MessageConnection for C {}
