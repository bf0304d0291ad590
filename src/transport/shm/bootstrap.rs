//! The shared-memory bootstrap shared by both sides: the hello and reply
//! extensions (by named field), the ring segments, and the caller's side of
//! the exchange ([`connect_shm`]).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::connection::ShmConnection;
use super::{ShmOptions, ACK, MIN_RING_CAPACITY};
use crate::ring::{create_ring_anon, MappedStorage, Ring, RingSegmentError, MAX_CAPACITY};
use crate::shm::{AnonSegment, Session};
use crate::sys::fdpass::{recv_with_fds, unix_connect_by};
use crate::transport::accept::{read_by_deadline, wait_readable, write_fresh};
use crate::transport::handshake::{self, ClientSecret, Hello, Reply, Wire, FIXED_LEN};
use crate::transport::{ConnectError, TransportConfig, WorkerId};
use crate::wake::EventFd;

/// The shm hello's extension: the ring capacity the caller asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HelloExt {
    /// Bytes per ring (both directions), a power of two.
    pub ring_capacity: u64,
}

impl HelloExt {
    pub(super) fn encode(&self) -> Vec<u8> {
        self.ring_capacity.to_le_bytes().to_vec()
    }

    pub(super) fn decode(ext: &[u8]) -> Result<Self, ConnectError> {
        let capacity = ext.get(..8).ok_or_else(|| ConnectError::Protocol {
            what: format!(
                "shm hello extension of {} bytes has no ring capacity",
                ext.len()
            ),
        })?;
        Ok(Self {
            ring_capacity: u64::from_le_bytes(capacity.try_into().expect("8 bytes")),
        })
    }
}

/// The shm reply's extension: the capacity of the rings made. The rings
/// themselves travel as descriptors with the reply (see [`REPLY_FDS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplyExt {
    /// Bytes per ring.
    pub ring_capacity: u64,
}

impl ReplyExt {
    pub(super) fn encode(&self) -> Vec<u8> {
        self.ring_capacity.to_le_bytes().to_vec()
    }

    pub(super) fn decode(ext: &[u8]) -> Result<Self, ConnectError> {
        let capacity = ext.get(..8).ok_or_else(|| ConnectError::Protocol {
            what: format!(
                "shm reply extension of {} bytes has no ring capacity",
                ext.len()
            ),
        })?;
        Ok(Self {
            ring_capacity: u64::from_le_bytes(capacity.try_into().expect("8 bytes")),
        })
    }
}

/// The descriptors that travel with an accepting reply, in this order: the
/// listener's eventfd, the caller's eventfd, the caller-to-listener ring,
/// the listener-to-caller ring (sealed memfds).
pub(super) const REPLY_FDS: usize = 4;

/// Checks a requested ring capacity (hostile input on the listener's side).
/// The largest ring capacity a listener with
/// [`ShmOptions::max_ring_capacity`](super::ShmOptions::max_ring_capacity)
/// `max` makes: `max` rounded down to a power of two within
/// [`MIN_RING_CAPACITY`], [`MAX_CAPACITY`].
pub(super) fn capacity_limit(max: usize) -> usize {
    let max = max.clamp(MIN_RING_CAPACITY, MAX_CAPACITY);
    1 << max.ilog2()
}

pub(super) fn check_capacity(cap: u64) -> Result<usize, ConnectError> {
    if !cap.is_power_of_two() || cap < MIN_RING_CAPACITY as u64 || cap > MAX_CAPACITY as u64 {
        return Err(ConnectError::Protocol {
            what: format!(
                "ring capacity {cap} is not a power of two in [{MIN_RING_CAPACITY}, {MAX_CAPACITY}]"
            ),
        });
    }
    Ok(cap as usize)
}

fn create_ring(tag: &str, cap: usize) -> Result<(Arc<AnonSegment>, MappedStorage), ConnectError> {
    let seg = create_ring_anon(tag, cap).map_err(|e| match e {
        RingSegmentError::Shm(e) => ConnectError::Segment(e),
        RingSegmentError::Ring(e) => ConnectError::Ring(e),
    })?;
    let storage = MappedStorage::from_anon(Arc::clone(&seg)).map_err(ConnectError::Ring)?;
    Ok((seg, storage))
}

/// The two rings of a new connection, made by the listener: sealed, nameless
/// memfds (nothing in the file system, nothing a peer can resize).
pub(super) struct NewRings {
    pub c2s_seg: Arc<AnonSegment>,
    pub s2c_seg: Arc<AnonSegment>,
    pub c2s: MappedStorage,
    pub s2c: MappedStorage,
}

/// Creates both rings of a connection.
pub(super) fn create_rings(cap: usize) -> Result<NewRings, ConnectError> {
    let (c2s_seg, c2s) = create_ring("shmwire-ring-c2s", cap)?;
    let (s2c_seg, s2c) = create_ring("shmwire-ring-s2c", cap)?;
    Ok(NewRings {
        c2s_seg,
        s2c_seg,
        c2s,
        s2c,
    })
}

/// Opens a shared-memory connection to the worker `intended` listening on
/// the Unix socket `socket` of `session`, within
/// [`TransportConfig::handshake_timeout`] in all.
///
/// A listener that hangs up before answering the hello (it dropped a hello
/// it had not read yet to make room for newer callers, e.g. under a flood of
/// silent connections) is tried again within that time.
///
/// # Errors
/// [`ConnectError::NoListener`] when nobody listens there; the refusals of
/// the hello (`BadToken`, `WrongRecipient`, `VersionMismatch`, `Refused`);
/// `TimedOut` when the time is up; `PeerDied` when the listener still hung
/// up on the last try; `Protocol` for a malformed reply; `Segment` / `Ring`
/// when the listener's rings cannot be opened.
pub fn connect_shm(
    _session: &Session,
    socket: &Path,
    intended: WorkerId,
    config: &TransportConfig,
    opts: &ShmOptions,
) -> Result<ShmConnection, ConnectError> {
    let cap = check_capacity(opts.ring_capacity as u64)?;
    handshake::retry_dropped_hellos(config.handshake_timeout, |deadline| {
        connect_shm_once(socket, intended, config, opts, cap, deadline)
    })
}

/// One try of [`connect_shm`] for rings of `cap` bytes, done by `deadline`.
fn connect_shm_once(
    socket: &Path,
    intended: WorkerId,
    config: &TransportConfig,
    opts: &ShmOptions,
    cap: usize,
    deadline: Instant,
) -> Result<ShmConnection, ConnectError> {
    // Bounded like the rest of the hello: a stopped listener with a full
    // backlog would hold a blocking connect for as long as it is stopped.
    let stream = unix_connect_by(socket, deadline).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            ConnectError::TimedOut { during: "connect" }
        } else {
            ConnectError::NoListener {
                worker: intended,
                address: socket.display().to_string(),
                source: e,
            }
        }
    })?;
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ConnectError::TimedOut { during: "hello" });
    }
    stream
        .set_write_timeout(Some(left))
        .map_err(ConnectError::io("set socket options"))?;
    let hello = Hello {
        wire: Wire::Shm,
        max_frame: config.max_frame_u32(),
        from: config.worker_id,
        intended,
        token: config.token,
        secret: ClientSecret::of_this_process()
            .map_err(ConnectError::io("draw the client secret"))?,
        ext: HelloExt {
            ring_capacity: cap as u64,
        }
        .encode(),
    };
    handshake::write_msg(&mut &stream, &hello.encode(), "hello")?;

    // One deadline for the whole reply, however slowly it drips in. Its
    // first bytes carry the eventfds.
    let during = "handshake reply";
    stream
        .set_nonblocking(true)
        .map_err(ConnectError::io("set socket options"))?;
    let mut first = [0u8; FIXED_LEN];
    let (got, fds): (usize, Vec<OwnedFd>) = loop {
        match recv_with_fds(&stream, &mut first) {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait_readable(stream.as_fd(), deadline, during)?
            }
            Err(e) => return Err(ConnectError::from_handshake_io(e, during)),
        }
    };
    if got == 0 {
        return Err(ConnectError::PeerDied { during });
    }
    let (fixed, ext) = read_by_deadline(&stream, during, deadline, &first[..got])?;
    let reply = Reply::from_parts(fixed, ext)?;
    handshake::check_reply(&reply, config.worker_id, intended)?;

    let ext = ReplyExt::decode(&reply.ext)?;
    // The listener makes what we asked for or, if smaller, its own
    // largest (`ShmOptions::max_ring_capacity`); never more.
    let cap = match check_capacity(ext.ring_capacity) {
        Ok(made) if made <= cap => made,
        _ => {
            return Err(ConnectError::Protocol {
                what: format!(
                    "listener made rings of {} bytes, asked for {cap}",
                    ext.ring_capacity
                ),
            })
        }
    };
    if fds.len() != REPLY_FDS {
        return Err(ConnectError::Protocol {
            what: format!(
                "expected {REPLY_FDS} descriptors with the reply, got {}",
                fds.len()
            ),
        });
    }
    let mut fds = fds.into_iter();
    let mut next = || fds.next().expect("REPLY_FDS descriptors");
    let peer_efd = EventFd::from_owned(next()).map_err(ConnectError::io("eventfd"))?;
    let my_efd = EventFd::from_owned(next()).map_err(ConnectError::io("eventfd"))?;
    // The ring memory: checked sealed and of the right size before mapping,
    // so the peer can never make our accesses fault.
    let len = MappedStorage::required_len(cap);
    let open = |fd: OwnedFd| -> Result<MappedStorage, ConnectError> {
        let seg = AnonSegment::from_fd(fd, len).map_err(ConnectError::Segment)?;
        MappedStorage::from_anon(Arc::new(seg)).map_err(ConnectError::Ring)
    };
    let c2s = open(next())?;
    let s2c = open(next())?;
    let tx = Ring::attach_producer(c2s).map_err(ConnectError::Ring)?;
    let rx = Ring::attach_consumer(s2c).map_err(ConnectError::Ring)?;
    write_fresh(&stream, &[ACK], "acknowledgement")?;
    stream
        .set_nonblocking(false)
        .map_err(ConnectError::io("set socket options"))?;
    ShmConnection::assemble(
        tx,
        rx,
        stream,
        my_efd,
        peer_efd,
        reply.responder,
        reply.max_frame as usize,
        config,
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listeners_limit_is_a_power_of_two_in_range() {
        assert_eq!(capacity_limit(0), MIN_RING_CAPACITY);
        assert_eq!(capacity_limit(5000), 4096);
        assert_eq!(capacity_limit(64 << 20), 64 << 20);
        assert_eq!(capacity_limit((64 << 20) + 1), 64 << 20);
        assert_eq!(capacity_limit(usize::MAX), MAX_CAPACITY);
    }

    #[test]
    fn extensions_round_trip_and_reject_garbage() {
        let h = HelloExt {
            ring_capacity: 1 << 16,
        };
        assert_eq!(HelloExt::decode(&h.encode()).unwrap(), h);
        assert!(HelloExt::decode(&[1, 2, 3]).is_err());
        let r = ReplyExt {
            ring_capacity: 1 << 20,
        };
        let bytes = r.encode();
        assert_eq!(ReplyExt::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(ReplyExt::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn capacity_is_checked() {
        assert!(check_capacity(1000).is_err());
        assert!(check_capacity(2048).is_err());
        assert!(check_capacity(1 << 40).is_err());
        assert_eq!(check_capacity(1 << 16).unwrap(), 1 << 16);
    }
}
