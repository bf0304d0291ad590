//! The listening side: [`ShmListener`], a Unix socket in the session
//! directory, and its half of the bootstrap (judge the hello, make the
//! rings, pass the eventfds, wait for the acknowledgement).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};

use super::bootstrap::{check_capacity, create_rings, HelloExt, ReplyExt};
use super::connection::ShmConnection;
use super::{socket_path, ShmOptions, ACK};
use crate::ring::Ring;
use crate::shm::Session;
use crate::sys::fdpass::send_with_fds;
use crate::transport::accept::{accept_within, try_accept};
use crate::transport::handshake::{self, Reply, Status, Wire};
use crate::transport::{ConnectError, TransportConfig};
use crate::wake::EventFd;

/// A worker's shared-memory listener: a Unix socket in the session directory
/// (removed on drop).
pub struct ShmListener {
    listener: mio::net::UnixListener,
    poll: Poll,
    events: Events,
    path: PathBuf,
    ident: (u64, u64),
    session: Session,
    config: TransportConfig,
    opts: ShmOptions,
}

impl std::fmt::Debug for ShmListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmListener")
            .field("path", &self.path)
            .field("worker", &self.config.worker_id)
            .finish()
    }
}

/// Answers a refused hello (best effort: the caller may be gone) and
/// returns the refusal.
fn refuse(
    mut s: &UnixStream,
    reply: &mut Reply,
    status: Status,
    e: ConnectError,
) -> Result<ShmConnection, ConnectError> {
    reply.status = status;
    let _ = handshake::write_msg(&mut s, &reply.encode(), "handshake reply");
    Err(e)
}

impl ShmListener {
    /// Listens for worker `config.worker_id` in `session`. A socket file left
    /// by a dead worker with the same id is replaced; a live one is an error
    /// ([`ConnectError::Refused`]).
    pub fn bind(
        session: &Session,
        config: TransportConfig,
        opts: ShmOptions,
    ) -> Result<Self, ConnectError> {
        let path = socket_path(session, &config.worker_id);
        if path.exists() {
            match UnixStream::connect(&path) {
                Ok(_) => {
                    return Err(ConnectError::Refused {
                        reason: format!("a live worker already listens on {}", path.display()),
                    })
                }
                Err(_) => {
                    // Nobody accepts there: a dead worker's socket.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let mut listener =
            mio::net::UnixListener::bind(&path).map_err(ConnectError::io("bind Unix socket"))?;
        let md = std::fs::symlink_metadata(&path).map_err(ConnectError::io("stat Unix socket"))?;
        let poll = Poll::new().map_err(ConnectError::io("create poll"))?;
        poll.registry()
            .register(&mut listener, Token(0), Interest::READABLE)
            .map_err(ConnectError::io("register listener"))?;
        Ok(Self {
            listener,
            poll,
            events: Events::with_capacity(8),
            path,
            ident: (md.dev(), md.ino()),
            session: session.clone(),
            config,
            opts,
        })
    }

    /// The socket's path (published through the node's directory).
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// The configuration.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The mio listener (to wait for callers on another `Poll`).
    pub fn listener(&self) -> &mio::net::UnixListener {
        &self.listener
    }

    /// Accepts one connection, waiting at most `timeout` for a caller. A
    /// refused hello is answered and reported as its error; the listener
    /// stays usable.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<ShmConnection, ConnectError> {
        let listener = &self.listener;
        match accept_within(&mut self.poll, &mut self.events, timeout, || {
            listener.accept()
        })
        .map_err(ConnectError::io("accept"))?
        {
            Some((stream, _)) => self.handshake(stream.into()),
            None => Err(ConnectError::TimedOut { during: "accept" }),
        }
    }

    /// Accepts a caller whose connection is already pending (used by
    /// [`Listener`](crate::transport::Listener)); `Ok(None)` if none is.
    pub(crate) fn try_accept(&mut self) -> Result<Option<ShmConnection>, ConnectError> {
        match try_accept(|| self.listener.accept()).map_err(ConnectError::io("accept"))? {
            Some((stream, _)) => self.handshake(stream.into()).map(Some),
            None => Ok(None),
        }
    }

    fn handshake(&mut self, stream: UnixStream) -> Result<ShmConnection, ConnectError> {
        let config = &self.config;
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(config.handshake_timeout)))
            .and_then(|()| stream.set_write_timeout(Some(config.handshake_timeout)))
            .map_err(ConnectError::io("set socket options"))?;
        let mut s = &stream;
        let hello = handshake::read_hello(&mut s)?;
        let (mut reply, verdict) = handshake::judge(
            hello,
            config.worker_id,
            &config.token,
            Wire::Shm,
            config.max_frame_u32(),
        );
        let hello = match verdict {
            Ok(h) => h,
            Err(e) => {
                handshake::write_msg(&mut s, &reply.encode(), "handshake reply")?;
                return Err(e);
            }
        };
        let cap = match HelloExt::decode(&hello.ext).and_then(|x| check_capacity(x.ring_capacity)) {
            Ok(c) => c,
            Err(e) => return refuse(&stream, &mut reply, Status::Refused, e),
        };
        let setup = || -> Result<_, ConnectError> {
            let rings = create_rings(&self.session, cap)?;
            let rx = Ring::attach_consumer(rings.c2s.clone()).map_err(ConnectError::Ring)?;
            let tx = Ring::attach_producer(rings.s2c.clone()).map_err(ConnectError::Ring)?;
            let my_efd = EventFd::new().map_err(ConnectError::io("eventfd"))?;
            let peer_efd = EventFd::new().map_err(ConnectError::io("eventfd"))?;
            Ok((rings, rx, tx, my_efd, peer_efd))
        };
        let (rings, rx, tx, my_efd, peer_efd) = match setup() {
            Ok(v) => v,
            // Tell the caller instead of just hanging up.
            Err(e) => return refuse(&stream, &mut reply, Status::Refused, e),
        };
        reply.ext = ReplyExt {
            ring_capacity: cap as u64,
            c2s: rings.c2s_name.clone(),
            s2c: rings.s2c_name.clone(),
        }
        .encode();
        let bytes = reply.encode();
        // The reply travels with both eventfds: ours first, then the caller's.
        let during = "handshake reply";
        let sent = send_with_fds(&stream, &bytes, &[my_efd.as_fd(), peer_efd.as_fd()])
            .map_err(|e| ConnectError::from_handshake_io(e, during))?;
        if sent < bytes.len() {
            (&stream)
                .write_all(&bytes[sent..])
                .map_err(|e| ConnectError::from_handshake_io(e, during))?;
        }
        let mut ack = [0u8; 1];
        (&stream)
            .read_exact(&mut ack)
            .map_err(|e| ConnectError::from_handshake_io(e, "acknowledgement"))?;
        if ack[0] != ACK {
            return Err(ConnectError::Protocol {
                what: format!("bad shm handshake acknowledgement {:#x}", ack[0]),
            });
        }
        // Both sides have mapped the rings: remove the names. The memory
        // lives as long as a mapping does.
        rings.c2s_seg.unlink().map_err(ConnectError::Segment)?;
        rings.s2c_seg.unlink().map_err(ConnectError::Segment)?;
        ShmConnection::assemble(
            tx,
            rx,
            rings.s2c,
            rings.c2s,
            stream,
            my_efd,
            peer_efd,
            hello.from,
            hello.max_frame as usize,
            config,
            &self.opts,
        )
    }
}

impl Drop for ShmListener {
    fn drop(&mut self) {
        // Only remove the socket file if it is still ours.
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.ident {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}
