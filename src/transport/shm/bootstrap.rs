//! The shared-memory bootstrap shared by both sides: the hello and reply
//! extensions (by named field), the ring segments, and the caller's side of
//! the exchange ([`connect_shm`]).

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Instant;

use super::connection::ShmConnection;
use super::{ShmOptions, ACK, MIN_RING_CAPACITY};
use crate::ring::{create_ring_segment, MappedStorage, Ring, RingSegmentError, MAX_CAPACITY};
use crate::shm::{kind, Segment, Session};
use crate::sys::fdpass::recv_with_fds;
use crate::sys::poll::{wait_fds, PollFlags};
use crate::transport::accept::{write_fresh, HelloReader};
use crate::transport::handshake::{self, Hello, Reply, Wire, FIXED_LEN};
use crate::transport::{ConnectError, TransportConfig, WorkerId};
use crate::wake::EventFd;

static RING_COUNTER: AtomicU64 = AtomicU64::new(0);

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

/// The shm reply's extension: the capacity of the rings made and the names
/// of their two segments (caller → listener, listener → caller), each
/// length-prefixed by one byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplyExt {
    /// Bytes per ring.
    pub ring_capacity: u64,
    /// Segment of the caller-to-listener ring.
    pub c2s: String,
    /// Segment of the listener-to-caller ring.
    pub s2c: String,
}

impl ReplyExt {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut ext = self.ring_capacity.to_le_bytes().to_vec();
        for name in [&self.c2s, &self.s2c] {
            ext.push(name.len() as u8);
            ext.extend_from_slice(name.as_bytes());
        }
        ext
    }

    pub(super) fn decode(ext: &[u8]) -> Result<Self, ConnectError> {
        let bad = |field: &str| ConnectError::Protocol {
            what: format!(
                "shm reply extension of {} bytes: {field} missing or malformed",
                ext.len()
            ),
        };
        let ring_capacity = u64::from_le_bytes(
            ext.get(..8)
                .ok_or_else(|| bad("ring capacity"))?
                .try_into()
                .expect("8 bytes"),
        );
        let mut at = 8;
        let mut name = |field: &str| -> Result<String, ConnectError> {
            let len = *ext.get(at).ok_or_else(|| bad(field))? as usize;
            let bytes = ext.get(at + 1..at + 1 + len).ok_or_else(|| bad(field))?;
            at += 1 + len;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|_| bad(field))
        };
        let c2s = name("caller-to-listener segment name")?;
        let s2c = name("listener-to-caller segment name")?;
        Ok(Self {
            ring_capacity,
            c2s,
            s2c,
        })
    }
}

/// Checks a requested ring capacity (hostile input on the listener's side).
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

/// Creates, initialises and publishes one ring segment.
fn create_ring(
    session: &Session,
    name: &str,
    cap: usize,
) -> Result<(Arc<Segment>, MappedStorage), ConnectError> {
    let seg = create_ring_segment(session, name, cap).map_err(|e| match e {
        RingSegmentError::Shm(e) => ConnectError::Segment(e),
        RingSegmentError::Ring(e) => ConnectError::Ring(e),
    })?;
    let storage = map_ring(&seg)?;
    Ok((seg, storage))
}

fn map_ring(seg: &Arc<Segment>) -> Result<MappedStorage, ConnectError> {
    MappedStorage::from_segment(Arc::clone(seg)).map_err(ConnectError::Ring)
}

/// The two ring segments of a new connection, created by the listener.
pub(super) struct NewRings {
    pub c2s_name: String,
    pub s2c_name: String,
    pub c2s_seg: Arc<Segment>,
    pub s2c_seg: Arc<Segment>,
    pub c2s: MappedStorage,
    pub s2c: MappedStorage,
}

/// Creates both rings of a connection in `session`. A name can be taken by
/// a segment a dead process with our (reused) pid left behind: skip to the
/// next number.
pub(super) fn create_rings(session: &Session, cap: usize) -> Result<NewRings, ConnectError> {
    let mut attempt = 0;
    loop {
        let n = RING_COUNTER.fetch_add(1, AtomicOrdering::Relaxed);
        let base = format!("ring-{}-{n}", std::process::id());
        let (c2s_name, s2c_name) = (format!("{base}-c2s"), format!("{base}-s2c"));
        let made = create_ring(session, &c2s_name, cap)
            .and_then(|a| create_ring(session, &s2c_name, cap).map(|b| (a, b)));
        match made {
            Ok(((c2s_seg, c2s), (s2c_seg, s2c))) => {
                return Ok(NewRings {
                    c2s_name,
                    s2c_name,
                    c2s_seg,
                    s2c_seg,
                    c2s,
                    s2c,
                })
            }
            Err(ConnectError::Segment(crate::shm::ShmError::AlreadyExists { .. }))
                if attempt < 16 =>
            {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens a shared-memory connection to the worker `intended` listening on
/// the Unix socket `socket` of `session`.
///
/// # Errors
/// [`ConnectError::NoListener`] when nobody listens there; the refusals of
/// the hello (`BadToken`, `WrongRecipient`, `VersionMismatch`, `Refused`);
/// `TimedOut` / `PeerDied` during the exchange; `Protocol` for a malformed
/// reply; `Segment` / `Ring` when the listener's rings cannot be opened.
pub fn connect_shm(
    session: &Session,
    socket: &Path,
    intended: WorkerId,
    config: &TransportConfig,
    opts: &ShmOptions,
) -> Result<ShmConnection, ConnectError> {
    let cap = check_capacity(opts.ring_capacity as u64)?;
    let stream = UnixStream::connect(socket).map_err(|e| ConnectError::NoListener {
        worker: intended,
        address: socket.display().to_string(),
        source: e,
    })?;
    stream
        .set_write_timeout(Some(config.handshake_timeout))
        .map_err(ConnectError::io("set socket options"))?;
    let hello = Hello {
        wire: Wire::Shm,
        max_frame: config.max_frame_u32(),
        from: config.worker_id,
        intended,
        token: config.token,
        ext: HelloExt {
            ring_capacity: cap as u64,
        }
        .encode(),
    };
    handshake::write_msg(&mut &stream, &hello.encode(), "hello")?;

    // One deadline for the whole reply, however slowly it drips in. Its
    // first bytes carry the eventfds.
    let during = "handshake reply";
    let deadline = Instant::now() + config.handshake_timeout;
    stream
        .set_nonblocking(true)
        .map_err(ConnectError::io("set socket options"))?;
    let wait = |deadline: Instant| -> Result<(), ConnectError> {
        if Instant::now() >= deadline {
            return Err(ConnectError::TimedOut { during });
        }
        wait_fds([(stream.as_fd(), PollFlags::IN)], Some(deadline))
            .map_err(ConnectError::io("poll"))?;
        Ok(())
    };
    let mut first = [0u8; FIXED_LEN];
    let (got, mut fds): (usize, Vec<OwnedFd>) = loop {
        match recv_with_fds(&stream, &mut first) {
            Ok(r) => break r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wait(deadline)?,
            Err(e) => return Err(ConnectError::from_handshake_io(e, during)),
        }
    };
    if got == 0 {
        return Err(ConnectError::PeerDied { during });
    }
    let mut reader = HelloReader::new(during);
    let mut rest = &first[..got];
    let (fixed, ext) = loop {
        if let Some(done) = reader.read_from((&mut rest).chain(&stream))? {
            break done;
        }
        wait(deadline)?;
    };
    let reply = Reply::from_parts(fixed, ext)?;
    handshake::check_reply(&reply, intended)?;

    let ext = ReplyExt::decode(&reply.ext)?;
    if ext.ring_capacity != cap as u64 {
        return Err(ConnectError::Protocol {
            what: format!(
                "listener made rings of {} bytes, asked for {cap}",
                ext.ring_capacity
            ),
        });
    }
    if fds.len() != 2 {
        return Err(ConnectError::Protocol {
            what: format!("expected 2 eventfds with the reply, got {}", fds.len()),
        });
    }
    let my_fd = fds.pop().expect("two fds");
    let peer_fd = fds.pop().expect("two fds");
    let my_efd = EventFd::from_owned(my_fd).map_err(ConnectError::io("eventfd"))?;
    let peer_efd = EventFd::from_owned(peer_fd).map_err(ConnectError::io("eventfd"))?;

    let open = |name: &str| -> Result<(Arc<Segment>, MappedStorage), ConnectError> {
        let seg =
            Arc::new(Segment::open(session, name, kind::RING).map_err(ConnectError::Segment)?);
        if seg.payload_len() != MappedStorage::required_len(cap) {
            return Err(ConnectError::Protocol {
                what: format!(
                    "segment {name} has {} bytes, expected {}",
                    seg.payload_len(),
                    MappedStorage::required_len(cap)
                ),
            });
        }
        let st = map_ring(&seg)?;
        Ok((seg, st))
    };
    let (_c2s_seg, c2s) = open(&ext.c2s)?;
    let (_s2c_seg, s2c) = open(&ext.s2c)?;
    let tx = Ring::attach_producer(c2s.clone()).map_err(ConnectError::Ring)?;
    let rx = Ring::attach_consumer(s2c.clone()).map_err(ConnectError::Ring)?;
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
    fn extensions_round_trip_and_reject_garbage() {
        let h = HelloExt {
            ring_capacity: 1 << 16,
        };
        assert_eq!(HelloExt::decode(&h.encode()).unwrap(), h);
        assert!(HelloExt::decode(&[1, 2, 3]).is_err());
        let r = ReplyExt {
            ring_capacity: 1 << 20,
            c2s: "ring-1-0-c2s".into(),
            s2c: "ring-1-0-s2c".into(),
        };
        let bytes = r.encode();
        assert_eq!(ReplyExt::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(ReplyExt::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_utf8 = bytes.clone();
        bad_utf8[9] = 0xff;
        assert!(ReplyExt::decode(&bad_utf8).is_err());
    }

    #[test]
    fn capacity_is_checked() {
        assert!(check_capacity(1000).is_err());
        assert!(check_capacity(2048).is_err());
        assert!(check_capacity(1 << 40).is_err());
        assert_eq!(check_capacity(1 << 16).unwrap(), 1 << 16);
    }
}
