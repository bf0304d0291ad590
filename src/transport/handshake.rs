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
//! | 11 | 1 | transport (1 TCP, 2 shm) | status (0 accepted, 1 wrong recipient, 2 bad token, 3 version mismatch, 4 refused, 5 caller id in use) |
//! | 12 | 4 | largest frame the sender accepts | same |
//! | 16 | 28 | sender's worker id | responder's worker id |
//! | 44 | 28 | intended worker id | zero |
//! | 72 | 16 | session token | zero |
//! | 88 | 4 | `ext_len` (≤ 4096) | same |
//! | 92 | 4 | reserved, zero | same |
//!
//! A hello's extension starts with the sender's 16-byte [`ClientSecret`]
//! (since version 4); the transport's own extension follows it. A reply's
//! extension is the transport's alone.
//!
//! The first 12 bytes keep this meaning in every protocol version, so two
//! versions can always tell each other apart and refuse cleanly.

#[cfg(test)]
use std::io::Read;
use std::io::{self, Write};

use super::{ConnectError, WorkerId};

/// The protocol version spoken by this build.
/// Version 2 added the TCP heartbeat frames (kinds 3 and 4); version 3
/// changed the task messages' layout (`Address::object_manager_address`,
/// `ReturnValue::InStore(endpoint)`); version 4 put the sender's
/// [`ClientSecret`] at the start of a hello's extension.
pub const PROTOCOL_VERSION: u16 = 4;
const MAGIC: [u8; 8] = *b"SHMWIRE\0";
/// Length of the fixed part of a hello or reply.
pub(crate) const FIXED_LEN: usize = 96;
/// Largest extension a hello or reply may carry.
pub(crate) const MAX_EXT_LEN: usize = 4096;
const KIND_HELLO: u8 = 1;
const KIND_REPLY: u8 = 2;

/// Byte offsets of the fixed part's fields (the table above).
mod at {
    pub(super) const MAGIC: usize = 0;
    pub(super) const VERSION: usize = 8;
    pub(super) const KIND: usize = 10;
    /// Transport (hello) or status (reply).
    pub(super) const WIRE_OR_STATUS: usize = 11;
    pub(super) const MAX_FRAME: usize = 12;
    pub(super) const SENDER: usize = 16;
    pub(super) const INTENDED: usize = 44;
    pub(super) const TOKEN: usize = 72;
    pub(super) const EXT_LEN: usize = 88;
    pub(super) const RESERVED: usize = 92;
}

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
        ct_eq16(&self.0, &other.0)
    }
}

/// Whether two 16-byte secrets are equal, in time independent of where
/// they differ.
fn ct_eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A random 16-byte value drawn once per process (from the kernel's random
/// source, at its first connect) and sent in every hello the process
/// makes. The token says a peer belongs to the session; the secret tells
/// apart two peers that claim the same worker id: a worker binds each
/// caller's id to the secret of the connection that first used it, for as
/// long as it keeps that caller's state, and closes a connection that
/// claims the id with another secret (`docs/transport.md`, "Handshake").
/// A reconnect from the same process presents the same secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientSecret(pub [u8; 16]);

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        f.write_str("ClientSecret(..)")
    }
}

impl ClientSecret {
    /// This process's secret, drawn at the first call.
    ///
    /// # Errors
    /// The OS random source's failure (`getrandom(2)` unavailable), as
    /// [`io::Error`].
    pub fn of_this_process() -> io::Result<Self> {
        static SECRET: std::sync::OnceLock<ClientSecret> = std::sync::OnceLock::new();
        if let Some(s) = SECRET.get() {
            return Ok(*s);
        }
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(io::Error::other)?;
        // A racing thread's value wins as well as ours: one per process.
        Ok(*SECRET.get_or_init(|| ClientSecret(b)))
    }

    /// Compares in constant time (a secret, like the token).
    pub fn ct_eq(&self, other: &Self) -> bool {
        ct_eq16(&self.0, &other.0)
    }
}

/// Length of a [`ClientSecret`] at the start of a hello's extension.
const SECRET_LEN: usize = 16;

/// The reason a hello was refused, as carried in a reply's status byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    Accepted = 0,
    WrongRecipient = 1,
    BadToken = 2,
    VersionMismatch = 3,
    Refused = 4,
    /// The listener serves the hello's sender id for another process
    /// (another client secret; see `TransportConfig::admission`).
    CallerIdInUse = 5,
}

/// A client's hello.
#[derive(Debug, Clone)]
pub(crate) struct Hello {
    pub wire: Wire,
    pub max_frame: u32,
    pub from: WorkerId,
    pub intended: WorkerId,
    pub token: SessionToken,
    /// The sender's secret (the first 16 bytes of the extension on the
    /// wire).
    pub secret: ClientSecret,
    /// The transport's extension (after the secret).
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

/// The fixed part of a hello or reply, field by field, as read off the wire
/// (validated only for magic and the extension bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fixed {
    pub version: u16,
    pub kind: u8,
    pub wire_or_status: u8,
    pub max_frame: u32,
    pub sender: WorkerId,
    pub intended: WorkerId,
    pub token: [u8; 16],
    pub ext_len: usize,
}

impl Fixed {
    fn encode(&self, ext: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; FIXED_LEN];
        v[at::MAGIC..at::VERSION].copy_from_slice(&MAGIC);
        v[at::VERSION..at::KIND].copy_from_slice(&self.version.to_le_bytes());
        v[at::KIND] = self.kind;
        v[at::WIRE_OR_STATUS] = self.wire_or_status;
        v[at::MAX_FRAME..at::SENDER].copy_from_slice(&self.max_frame.to_le_bytes());
        v[at::SENDER..at::INTENDED].copy_from_slice(self.sender.as_bytes());
        v[at::INTENDED..at::TOKEN].copy_from_slice(self.intended.as_bytes());
        v[at::TOKEN..at::EXT_LEN].copy_from_slice(&self.token);
        v[at::EXT_LEN..at::RESERVED].copy_from_slice(&(ext.len() as u32).to_le_bytes());
        v.extend_from_slice(ext);
        v
    }

    /// Parses the fixed part of a `what` (`"hello"`, `"handshake reply"`):
    /// the magic must match and the extension length be at most
    /// [`MAX_EXT_LEN`].
    pub(crate) fn decode(b: &[u8; FIXED_LEN], what: &str) -> Result<Self, ConnectError> {
        if b[at::MAGIC..at::VERSION] != MAGIC {
            return Err(ConnectError::Protocol {
                what: format!("bad magic in the {what}: not a shmwire peer"),
            });
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let id_at = |i: usize| {
            let mut id = [0u8; 28];
            id.copy_from_slice(&b[i..i + 28]);
            WorkerId::from_array(id)
        };
        let mut token = [0u8; 16];
        token.copy_from_slice(&b[at::TOKEN..at::EXT_LEN]);
        let ext_len = u32_at(at::EXT_LEN) as usize;
        if ext_len > MAX_EXT_LEN {
            return Err(ConnectError::Protocol {
                what: format!("{what} extension of {ext_len} bytes exceeds {MAX_EXT_LEN}"),
            });
        }
        Ok(Self {
            version: u16::from_le_bytes([b[at::VERSION], b[at::VERSION + 1]]),
            kind: b[at::KIND],
            wire_or_status: b[at::WIRE_OR_STATUS],
            max_frame: u32_at(at::MAX_FRAME),
            sender: id_at(at::SENDER),
            intended: id_at(at::INTENDED),
            token,
            ext_len,
        })
    }
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut ext = Vec::with_capacity(SECRET_LEN + self.ext.len());
        ext.extend_from_slice(&self.secret.0);
        ext.extend_from_slice(&self.ext);
        Fixed {
            version: PROTOCOL_VERSION,
            kind: KIND_HELLO,
            wire_or_status: self.wire as u8,
            max_frame: self.max_frame,
            sender: self.from,
            intended: self.intended,
            token: self.token.0,
            ext_len: ext.len(),
        }
        .encode(&ext)
    }

    /// Builds a hello from its parsed fixed part and extension. A version
    /// mismatch is `Ok(Err(theirs))` so the listener can still answer it.
    pub(crate) fn from_parts(f: Fixed, ext: Vec<u8>) -> Result<Result<Hello, u16>, ConnectError> {
        if f.version != PROTOCOL_VERSION {
            return Ok(Err(f.version));
        }
        if f.kind != KIND_HELLO {
            return Err(ConnectError::Protocol {
                what: format!("expected a hello, got message kind {}", f.kind),
            });
        }
        let wire = match f.wire_or_status {
            1 => Wire::Tcp,
            2 => Wire::Shm,
            other => {
                return Err(ConnectError::Protocol {
                    what: format!("unknown transport {other} in hello"),
                })
            }
        };
        if ext.len() < SECRET_LEN {
            return Err(ConnectError::Protocol {
                what: format!(
                    "hello extension of {} bytes has no {SECRET_LEN}-byte client secret",
                    ext.len()
                ),
            });
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&ext[..SECRET_LEN]);
        Ok(Ok(Hello {
            wire,
            max_frame: f.max_frame,
            from: f.sender,
            intended: f.intended,
            token: SessionToken(f.token),
            secret: ClientSecret(secret),
            ext: ext[SECRET_LEN..].to_vec(),
        }))
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Fixed {
            version: self.version,
            kind: KIND_REPLY,
            wire_or_status: self.status as u8,
            max_frame: self.max_frame,
            sender: self.responder,
            intended: WorkerId::from_array([0; 28]),
            token: [0; 16],
            ext_len: self.ext.len(),
        }
        .encode(&self.ext)
    }

    /// Builds a reply from its parsed fixed part and extension.
    pub(crate) fn from_parts(f: Fixed, ext: Vec<u8>) -> Result<Reply, ConnectError> {
        if f.kind != KIND_REPLY {
            return Err(ConnectError::Protocol {
                what: format!("expected a handshake reply, got message kind {}", f.kind),
            });
        }
        let status = match f.wire_or_status {
            0 => Status::Accepted,
            1 => Status::WrongRecipient,
            2 => Status::BadToken,
            3 => Status::VersionMismatch,
            4 => Status::Refused,
            5 => Status::CallerIdInUse,
            other => {
                return Err(ConnectError::Protocol {
                    what: format!("unknown handshake status {other}"),
                })
            }
        };
        Ok(Reply {
            version: f.version,
            status,
            max_frame: f.max_frame,
            responder: f.sender,
            ext,
        })
    }
}

/// Reads the fixed part and the extension of a `what` from a blocking
/// reader (time-outs and hang-ups become their [`ConnectError`] variants).
/// Only the unit tests read whole messages this way; the transports read
/// them without blocking (`accept::HelloReader`).
#[cfg(test)]
fn read_parts(r: &mut impl Read, what: &'static str) -> Result<(Fixed, Vec<u8>), ConnectError> {
    let mut b = [0u8; FIXED_LEN];
    r.read_exact(&mut b)
        .map_err(|e| ConnectError::from_handshake_io(e, what))?;
    let f = Fixed::decode(&b, what)?;
    let mut ext = vec![0u8; f.ext_len];
    r.read_exact(&mut ext)
        .map_err(|e| ConnectError::from_handshake_io(e, what))?;
    Ok((f, ext))
}

/// Reads a hello. A version mismatch is reported as `Ok(Err(theirs))` so the
/// listener can still answer it.
#[cfg(test)]
pub(crate) fn read_hello(r: &mut impl Read) -> Result<Result<Hello, u16>, ConnectError> {
    let (f, ext) = read_parts(r, "hello")?;
    Hello::from_parts(f, ext)
}

/// Reads a reply.
#[cfg(test)]
pub(crate) fn read_reply(r: &mut impl Read) -> Result<Reply, ConnectError> {
    let (f, ext) = read_parts(r, "handshake reply")?;
    Reply::from_parts(f, ext)
}

/// Writes a whole message.
pub(crate) fn write_msg(
    w: &mut impl Write,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), ConnectError> {
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(|e| ConnectError::from_handshake_io(e, what))
}

/// The listener's verdict on a hello it read: the reply to send and, if the
/// hello is refused, the error the accepting side reports.
pub(crate) fn judge(
    hello: Result<Hello, u16>,
    me: WorkerId,
    token: &SessionToken,
    wire: Wire,
    my_max_frame: u32,
    admission: Option<&super::CallerAdmission>,
) -> (Reply, Result<Hello, ConnectError>) {
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
            Err(ConnectError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs,
            }),
        ),
        Ok(h) if !h.token.ct_eq(token) => (reply(Status::BadToken), Err(ConnectError::BadToken)),
        Ok(h) if h.intended != me => {
            let e = ConnectError::WrongRecipient {
                intended: h.intended,
                actual: me,
            };
            (reply(Status::WrongRecipient), Err(e))
        }
        Ok(h) if h.wire != wire => (
            reply(Status::Refused),
            Err(ConnectError::Refused {
                reason: format!("hello for transport {:?} on a {wire:?} listener", h.wire),
            }),
        ),
        Ok(h) => match admission.map_or(super::Admission::Admit, |a| (a.0)(&h.from, &h.secret)) {
            super::Admission::Admit => (reply(Status::Accepted), Ok(h)),
            super::Admission::CallerIdInUse => (
                reply(Status::CallerIdInUse),
                Err(ConnectError::CallerIdInUse {
                    caller: h.from,
                    worker: me,
                }),
            ),
            super::Admission::Refused(reason) => {
                let mut r = reply(Status::Refused);
                r.ext = refusal_ext(&reason);
                (r, Err(ConnectError::Refused { reason }))
            }
        },
    }
}

/// A refusing reply's extension: the reason, UTF-8, at most
/// [`MAX_EXT_LEN`] bytes (cut at a character boundary), for the caller's
/// [`ConnectError::Refused`].
pub(crate) fn refusal_ext(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_EXT_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.as_bytes()[..end].to_vec()
}

/// The first pause before a hello the listener hung up on goes again
/// ([`retry_dropped_hellos`]); each later one doubles, up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);
/// The longest pause between two tries of a dropped hello.
const MAX_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
/// How many times [`retry_dropped_hellos`] tries at most (≈ 115 ms of
/// pauses in all): a caller displaced by a flood gets in within a few
/// tries; a listener that hangs up on every hello is not a shmwire
/// listener making room, and is not sent the session token again and again.
const MAX_HELLO_TRIES: u32 = 8;

/// Runs `attempt` (one connect and hello, bounded by the deadline it is
/// given) and runs it again, after a pause of 1 ms doubling up to 50 ms,
/// while the listener hung up before answering anything
/// ([`ConnectError::PeerDied`] during the hello or before the first byte of
/// its reply; a reply cut short is a `Protocol` error, not tried again),
/// at most [`MAX_HELLO_TRIES`] times and while `timeout` has time left:
/// one deadline for all tries.
///
/// A listener hangs up on a hello it has not read when it has to make room:
/// at its cap on pending hellos a newer caller displaces the oldest that has
/// sent nothing, and a caller whose process was descheduled between its
/// `connect` and its hello's `write` is that one while a flood of silent
/// connections comes in (`docs/reliability.md`). Every other refusal is an
/// answer (`Refused`, `BadToken`, …) and returned at once; a listener that
/// is gone refuses the `connect` itself (`NoListener`), so a dead worker is
/// not waited for.
pub(crate) fn retry_dropped_hellos<C>(
    timeout: std::time::Duration,
    mut attempt: impl FnMut(std::time::Instant) -> Result<C, ConnectError>,
) -> Result<C, ConnectError> {
    let now = std::time::Instant::now();
    let deadline = crate::deadline_after(now, timeout);
    let mut pause = FIRST_RETRY_PAUSE;
    let mut tries = 1;
    loop {
        match attempt(deadline) {
            Err(ConnectError::PeerDied {
                during: during @ ("hello" | "handshake reply"),
            }) if tries < MAX_HELLO_TRIES && std::time::Instant::now() + pause < deadline => {
                tracing::debug!(
                    during,
                    tries,
                    "the listener hung up before answering the hello: trying again"
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
                tries += 1;
            }
            r => return r,
        }
    }
}

/// Turns a refusal in a reply into the client's error.
pub(crate) fn check_reply(
    reply: &Reply,
    me: WorkerId,
    intended: WorkerId,
) -> Result<(), ConnectError> {
    match reply.status {
        Status::Accepted if reply.version == PROTOCOL_VERSION => Ok(()),
        Status::Accepted | Status::VersionMismatch => Err(ConnectError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: reply.version,
        }),
        Status::BadToken => Err(ConnectError::BadToken),
        Status::WrongRecipient => Err(ConnectError::WrongRecipient {
            intended,
            actual: reply.responder,
        }),
        // The listener's reason when it sent one (a peer's text, shown
        // as such: at most `MAX_EXT_LEN` bytes, invalid UTF-8 replaced).
        Status::Refused if !reply.ext.is_empty() => Err(ConnectError::Refused {
            reason: format!(
                "the listener refused the hello: {}",
                String::from_utf8_lossy(&reply.ext)
            ),
        }),
        Status::Refused => Err(ConnectError::Refused {
            reason: "the listener refused the hello: it could not set the connection up \
                     (out of memory or descriptors, its connections' rings at its \
                     ShmOptions::max_ring_memory, a worker at its max_connections, or a \
                     transport it does not serve); its own log names the cause"
                .into(),
        }),
        Status::CallerIdInUse => Err(ConnectError::CallerIdInUse {
            caller: me,
            worker: reply.responder,
        }),
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
            secret: ClientSecret([5; 16]),
            ext: vec![1, 2, 3],
        };
        let bytes = h.encode();
        let back = read_hello(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(back.from, id(1));
        assert_eq!(back.intended, id(2));
        assert_eq!(back.max_frame, 1234);
        assert_eq!(back.ext, vec![1, 2, 3]);
        assert_eq!(back.secret, ClientSecret([5; 16]));
        assert_eq!(&bytes[FIXED_LEN..FIXED_LEN + 16], &[5; 16]);
        let (reply, ok) = judge(Ok(back.clone()), id(2), &token, Wire::Tcp, 99, None);
        assert!(ok.is_ok());
        let r = read_reply(&mut &reply.encode()[..]).unwrap();
        assert!(check_reply(&r, id(1), id(2)).is_ok());

        // An admission that refuses the sender's id with this secret.
        let only_other = super::super::CallerAdmission(std::sync::Arc::new(
            |id: &WorkerId, s: &ClientSecret| {
                if *id != WorkerId::from_array([1; 28]) || s.0 == [6; 16] {
                    super::super::Admission::Admit
                } else {
                    super::super::Admission::CallerIdInUse
                }
            },
        ));
        let (reply, err) = judge(
            Ok(back.clone()),
            id(2),
            &token,
            Wire::Tcp,
            99,
            Some(&only_other),
        );
        assert!(matches!(err, Err(ConnectError::CallerIdInUse { caller, .. }) if caller == id(1)));
        // An admission with no room: refused, its reason reported here.
        let full =
            super::super::CallerAdmission(std::sync::Arc::new(|_: &WorkerId, _: &ClientSecret| {
                super::super::Admission::Refused("full".into())
            }));
        let (no_room, why) = judge(Ok(back.clone()), id(2), &token, Wire::Tcp, 99, Some(&full));
        assert!(matches!(why, Err(ConnectError::Refused { reason }) if reason == "full"));
        let r = read_reply(&mut &no_room.encode()[..]).unwrap();
        assert!(matches!(
            check_reply(&r, id(1), id(2)),
            Err(ConnectError::Refused { .. })
        ));
        let r = read_reply(&mut &reply.encode()[..]).unwrap();
        assert!(matches!(
            check_reply(&r, id(1), id(2)),
            Err(ConnectError::CallerIdInUse { caller, worker }) if caller == id(1) && worker == id(2)
        ));
        assert_eq!(r.max_frame, 99);

        let (reply, err) = judge(Ok(back.clone()), id(3), &token, Wire::Tcp, 99, None);
        assert!(matches!(err, Err(ConnectError::WrongRecipient { .. })));
        let r = read_reply(&mut &reply.encode()[..]).unwrap();
        assert!(
            matches!(check_reply(&r, id(1), id(2)), Err(ConnectError::WrongRecipient { actual, .. }) if actual == id(3))
        );

        let (reply, err) = judge(Ok(back), id(2), &SessionToken([8; 16]), Wire::Tcp, 99, None);
        assert!(matches!(err, Err(ConnectError::BadToken)));
        assert!(matches!(
            check_reply(&reply, id(1), id(2)),
            Err(ConnectError::BadToken)
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
            secret: ClientSecret([0; 16]),
            ext: vec![],
        }
        .encode();
        // A hello whose extension is too short for the secret.
        let mut short = bytes[..FIXED_LEN + 15].to_vec();
        short[88..92].copy_from_slice(&15u32.to_le_bytes());
        assert!(matches!(
            read_hello(&mut &short[..]),
            Err(ConnectError::Protocol { what }) if what.contains("client secret")
        ));
        bytes[8] = 77;
        assert_eq!(read_hello(&mut &bytes[..]).unwrap().unwrap_err(), 77);
        bytes[0] = b'X';
        assert!(matches!(
            read_hello(&mut &bytes[..]),
            Err(ConnectError::Protocol { .. })
        ));
        bytes[0] = b'S';
        bytes[88..92].copy_from_slice(&(1u32 << 30).to_le_bytes());
        assert!(matches!(
            read_hello(&mut &bytes[..]),
            Err(ConnectError::Protocol { .. })
        ));
        assert!(matches!(
            read_hello(&mut &bytes[..10]),
            Err(ConnectError::PeerDied { .. })
        ));
    }
}
