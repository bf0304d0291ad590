//! The hello exchanged when a connection opens, on TCP and on the Unix socket
//! that bootstraps a shared-memory connection.
//!
//! Wire layout (little endian), 96 fixed bytes followed by `ext_len` bytes of
//! transport-specific extension:
//!
//! | offset | size | hello | reply |
//! | --- | --- | --- | --- |
//! | 0 | 8 | magic `SHMWIRE\0` | same |
//! | 8 | 2 | protocol version | responder's version |
//! | 10 | 1 | kind = 1 | kind = 2 |
//! | 11 | 1 | transport (1 TCP, 2 shm) | status (0 accepted, 1 wrong recipient, 2 bad token, 3 version mismatch, 4 refused) |
//! | 12 | 4 | largest frame the sender accepts | same |
//! | 16 | 28 | sender's worker id | responder's worker id |
//! | 44 | 28 | intended worker id | zero |
//! | 72 | 16 | session token | zero |
//! | 88 | 4 | `ext_len` (≤ 4096) | same |
//! | 92 | 4 | reserved, zero | same |
//!
//! The first 12 bytes keep this meaning in every protocol version, so two
//! versions can always tell each other apart and refuse cleanly.

use std::io::{self, Read, Write};

use super::{TransportError, WorkerId};

/// The protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;
const MAGIC: [u8; 8] = *b"SHMWIRE\0";
pub(crate) const FIXED_LEN: usize = 96;
pub(crate) const MAX_EXT_LEN: usize = 4096;
const KIND_HELLO: u8 = 1;
const KIND_REPLY: u8 = 2;

/// Which transport a hello opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Wire {
    Tcp = 1,
    Shm = 2,
}

/// A session's shared secret: a connection is only accepted from a peer that
/// presents it. Generated once per session (the node layer keeps it in the
/// session directory: `node::load_or_create_token`) and handed to remote
/// nodes out of band.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionToken(pub [u8; 16]);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str("SessionToken(..)")
    }
}

impl SessionToken {
    /// A fresh random token from the kernel's random source.
    pub fn random() -> io::Result<Self> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(io::Error::other)?;
        Ok(Self(b))
    }

    fn ct_eq(&self, other: &Self) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// The reason a hello was refused, as carried in a reply's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    Accepted = 0,
    WrongRecipient = 1,
    BadToken = 2,
    VersionMismatch = 3,
    Refused = 4,
}

/// A client's hello.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    pub wire: Wire,
    pub max_frame: u32,
    pub from: WorkerId,
    pub intended: WorkerId,
    pub token: SessionToken,
    pub ext: Vec<u8>,
}

/// A listener's answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub version: u16,
    pub status: Status,
    pub max_frame: u32,
    pub responder: WorkerId,
    pub ext: Vec<u8>,
}

#[allow(clippy::too_many_arguments)] // one argument per wire field
fn fixed(
    version: u16,
    kind: u8,
    byte11: u8,
    max_frame: u32,
    a: &WorkerId,
    b: &[u8; 28],
    token: &[u8; 16],
    ext: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(FIXED_LEN + ext.len());
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&version.to_le_bytes());
    v.push(kind);
    v.push(byte11);
    v.extend_from_slice(&max_frame.to_le_bytes());
    v.extend_from_slice(a.as_bytes());
    v.extend_from_slice(b);
    v.extend_from_slice(token);
    v.extend_from_slice(&(ext.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0u8; 4]);
    debug_assert_eq!(v.len(), FIXED_LEN);
    v.extend_from_slice(ext);
    v
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        fixed(
            PROTOCOL_VERSION,
            KIND_HELLO,
            self.wire as u8,
            self.max_frame,
            &self.from,
            self.intended.as_bytes(),
            &self.token.0,
            &self.ext,
        )
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        fixed(
            self.version,
            KIND_REPLY,
            self.status as u8,
            self.max_frame,
            &self.responder,
            &[0u8; 28],
            &[0u8; 16],
            &self.ext,
        )
    }
}

fn id_at(b: &[u8], at: usize) -> WorkerId {
    let mut id = [0u8; 28];
    id.copy_from_slice(&b[at..at + 28]);
    WorkerId::from_array(id)
}

fn map_io(e: io::Error, what: &str) -> TransportError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => TransportError::TimedOut,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => {
            TransportError::PeerDied(format!("peer hung up during the {what}"))
        }
        _ => TransportError::Io(e),
    }
}

/// The parsed fixed part: (version, kind, byte 11, max_frame, id A, id B, token, ext_len).
type Fixed = (u16, u8, u8, u32, WorkerId, WorkerId, [u8; 16], usize);

fn read_fixed(r: &mut impl Read, what: &str) -> Result<(Fixed, Vec<u8>), TransportError> {
    let mut b = [0u8; FIXED_LEN];
    r.read_exact(&mut b).map_err(|e| map_io(e, what))?;
    if b[0..8] != MAGIC {
        return Err(TransportError::Protocol(format!(
            "bad magic in the {what}: not a shmwire peer"
        )));
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    let max_frame = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
    let mut token = [0u8; 16];
    token.copy_from_slice(&b[72..88]);
    let ext_len = u32::from_le_bytes(b[88..92].try_into().expect("4 bytes")) as usize;
    if ext_len > MAX_EXT_LEN {
        return Err(TransportError::Protocol(format!(
            "{what} extension of {ext_len} bytes exceeds {MAX_EXT_LEN}"
        )));
    }
    let mut ext = vec![0u8; ext_len];
    r.read_exact(&mut ext).map_err(|e| map_io(e, what))?;
    Ok((
        (
            version,
            b[10],
            b[11],
            max_frame,
            id_at(&b, 16),
            id_at(&b, 44),
            token,
            ext_len,
        ),
        ext,
    ))
}

/// Reads a hello. A version mismatch is reported as `Ok(Err(theirs))` so the
/// listener can still answer it.
pub(crate) fn read_hello(r: &mut impl Read) -> Result<Result<Hello, u16>, TransportError> {
    let ((version, kind, wire, max_frame, from, intended, token, _), ext) = read_fixed(r, "hello")?;
    if version != PROTOCOL_VERSION {
        return Ok(Err(version));
    }
    if kind != KIND_HELLO {
        return Err(TransportError::Protocol(format!(
            "expected a hello, got message kind {kind}"
        )));
    }
    let wire = match wire {
        1 => Wire::Tcp,
        2 => Wire::Shm,
        other => {
            return Err(TransportError::Protocol(format!(
                "unknown transport {other} in hello"
            )))
        }
    };
    Ok(Ok(Hello {
        wire,
        max_frame,
        from,
        intended,
        token: SessionToken(token),
        ext,
    }))
}

/// Reads a reply.
pub(crate) fn read_reply(r: &mut impl Read) -> Result<Reply, TransportError> {
    let ((version, kind, status, max_frame, responder, _, _, _), ext) =
        read_fixed(r, "handshake reply")?;
    if kind != KIND_REPLY {
        return Err(TransportError::Protocol(format!(
            "expected a handshake reply, got message kind {kind}"
        )));
    }
    let status = match status {
        0 => Status::Accepted,
        1 => Status::WrongRecipient,
        2 => Status::BadToken,
        3 => Status::VersionMismatch,
        4 => Status::Refused,
        other => {
            return Err(TransportError::Protocol(format!(
                "unknown handshake status {other}"
            )))
        }
    };
    Ok(Reply {
        version,
        status,
        max_frame,
        responder,
        ext,
    })
}

/// Writes a whole message.
pub(crate) fn write_msg(
    w: &mut impl Write,
    bytes: &[u8],
    what: &str,
) -> Result<(), TransportError> {
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(|e| map_io(e, what))
}

/// The listener's verdict on a hello it read: the reply to send and, if the
/// hello is refused, the error the accepting side reports.
pub(crate) fn judge(
    hello: Result<Hello, u16>,
    me: WorkerId,
    token: &SessionToken,
    wire: Wire,
    my_max_frame: u32,
) -> (Reply, Result<Hello, TransportError>) {
    let reply = |status| Reply {
        version: PROTOCOL_VERSION,
        status,
        max_frame: my_max_frame,
        responder: me,
        ext: Vec::new(),
    };
    match hello {
        Err(theirs) => (
            reply(Status::VersionMismatch),
            Err(TransportError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            }),
        ),
        Ok(h) if !h.token.ct_eq(token) => (reply(Status::BadToken), Err(TransportError::BadToken)),
        Ok(h) if h.intended != me => {
            let e = TransportError::WrongRecipient {
                intended: h.intended,
                actual: me,
            };
            (reply(Status::WrongRecipient), Err(e))
        }
        Ok(h) if h.wire != wire => (
            reply(Status::Refused),
            Err(TransportError::Refused(format!(
                "hello for transport {:?} on a {wire:?} listener",
                h.wire
            ))),
        ),
        Ok(h) => (reply(Status::Accepted), Ok(h)),
    }
}

/// Turns a refusal in a reply into the client's error.
pub(crate) fn check_reply(reply: &Reply, intended: WorkerId) -> Result<(), TransportError> {
    match reply.status {
        Status::Accepted if reply.version == PROTOCOL_VERSION => Ok(()),
        Status::Accepted | Status::VersionMismatch => Err(TransportError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: reply.version,
        }),
        Status::BadToken => Err(TransportError::BadToken),
        Status::WrongRecipient => Err(TransportError::WrongRecipient {
            intended,
            actual: reply.responder,
        }),
        Status::Refused => Err(TransportError::Refused(
            "the listener refused the hello".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> WorkerId {
        WorkerId::from_array([n; 28])
    }

    #[test]
    fn hello_roundtrip_and_judge() {
        let token = SessionToken([9; 16]);
        let h = Hello {
            wire: Wire::Tcp,
            max_frame: 1234,
            from: id(1),
            intended: id(2),
            token,
            ext: vec![1, 2, 3],
        };
        let bytes = h.encode();
        let back = read_hello(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back.from, id(1));
        assert_eq!(back.intended, id(2));
        assert_eq!(back.max_frame, 1234);
        assert_eq!(back.ext, vec![1, 2, 3]);
        let (reply, ok) = judge(Ok(back.clone()), id(2), &token, Wire::Tcp, 99);
        assert!(ok.is_ok());
        let r = read_reply(&mut &reply.encode()[..]).unwrap();
        assert!(check_reply(&r, id(2)).is_ok());
        assert_eq!(r.max_frame, 99);

        let (reply, err) = judge(Ok(back.clone()), id(3), &token, Wire::Tcp, 99);
        assert!(matches!(err, Err(TransportError::WrongRecipient { .. })));
        let r = read_reply(&mut &reply.encode()[..]).unwrap();
        assert!(
            matches!(check_reply(&r, id(2)), Err(TransportError::WrongRecipient { actual, .. }) if actual == id(3))
        );

        let (reply, err) = judge(Ok(back), id(2), &SessionToken([8; 16]), Wire::Tcp, 99);
        assert!(matches!(err, Err(TransportError::BadToken)));
        assert!(matches!(
            check_reply(&reply, id(2)),
            Err(TransportError::BadToken)
        ));
    }

    #[test]
    fn version_and_garbage() {
        let mut bytes = Hello {
            wire: Wire::Tcp,
            max_frame: 1,
            from: id(1),
            intended: id(2),
            token: SessionToken([0; 16]),
            ext: vec![],
        }
        .encode();
        bytes[8] = 77;
        assert_eq!(read_hello(&mut &bytes[..]).unwrap().unwrap_err(), 77);
        bytes[0] = b'X';
        assert!(matches!(
            read_hello(&mut &bytes[..]),
            Err(TransportError::Protocol(_))
        ));
        bytes[0] = b'S';
        bytes[88..92].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            read_hello(&mut &bytes[..]),
            Err(TransportError::Protocol(_))
        ));
        assert!(matches!(
            read_hello(&mut &bytes[..10]),
            Err(TransportError::PeerDied(_))
        ));
    }
}
