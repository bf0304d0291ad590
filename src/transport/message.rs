//! Message-level helpers over any [`Connection`]: rkyv messages encoded in
//! place into the connection and received as validated archived views, plus
//! the `PushTaskRequest` recipient check (Ray's `HandleWrongRecipient`).

use std::time::Duration;

use super::{Connection, SendError, TransportError, WorkerId};
use crate::spec::{self, ArchivedPushTaskRequest, Encoder, Message, PushTaskRequest};

/// Extension methods for sending and receiving [`spec`] messages; implemented
/// for every [`Connection`].
pub trait MessageConnection: Connection {
    /// Encodes `msg` straight into the connection (the peer's ring on shared
    /// memory): measures it, reserves exactly that, serializes in place.
    fn send_message<M: Message>(
        &mut self,
        encoder: &mut Encoder,
        msg: &M,
    ) -> Result<usize, TransportError> {
        let len = encoder.encoded_len(msg).map_err(TransportError::Encode)?;
        self.send_with(len, |buf| encoder.encode_into(msg, buf))
            .map_err(|e| match e {
                SendError::Encode(e) => TransportError::Encode(e),
                SendError::Transport(e) => e,
            })
    }

    /// Receives the next frame, validates it as an `M` (bytecheck) and calls
    /// `f` with the archived view, borrowed from the frame (shared memory on
    /// the shm transport); the frame is released when `f` returns.
    fn recv_message_with<M: Message, R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<R, TransportError> {
        let frame = self.recv_timeout(timeout)?;
        let archived = spec::access::<M>(&frame).map_err(TransportError::Decode)?;
        Ok(f(archived))
    }

    /// Non-blocking [`MessageConnection::recv_message_with`].
    fn try_recv_message_with<M: Message, R>(
        &mut self,
        f: impl FnOnce(&M::Archived) -> R,
    ) -> Result<Option<R>, TransportError> {
        match self.try_recv()? {
            None => Ok(None),
            Some(frame) => {
                let archived = spec::access::<M>(&frame).map_err(TransportError::Decode)?;
                Ok(Some(f(archived)))
            }
        }
    }

    /// Sends a `PushTaskRequest`, refusing one whose intended worker is not
    /// this connection's peer.
    fn send_push_task(
        &mut self,
        encoder: &mut Encoder,
        request: &PushTaskRequest,
    ) -> Result<usize, TransportError> {
        let peer = self.peer_worker_id();
        if request.intended_worker_id != peer {
            return Err(TransportError::WrongRecipient {
                intended: request.intended_worker_id,
                actual: peer,
            });
        }
        self.send_message(encoder, request)
    }

    /// Receives a `PushTaskRequest` for worker `me`: a request meant for
    /// another worker is consumed and refused with
    /// [`TransportError::WrongRecipient`] (Ray's `HandleWrongRecipient`).
    fn recv_push_task_with<R>(
        &mut self,
        me: WorkerId,
        timeout: Duration,
        f: impl FnOnce(&ArchivedPushTaskRequest) -> R,
    ) -> Result<R, TransportError> {
        self.recv_message_with::<PushTaskRequest, _>(timeout, |req| {
            if req.intended_worker_id != me {
                Err(TransportError::WrongRecipient {
                    intended: req.intended_worker_id,
                    actual: me,
                })
            } else {
                Ok(f(req))
            }
        })?
    }
}

impl<C: Connection + ?Sized> MessageConnection for C {}
