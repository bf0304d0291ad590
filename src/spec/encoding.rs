//! Encoding messages into caller-provided regions and reading them in place.
//!
//! * [`Encoder::encode_into`] serializes a [`Message`] straight into a
//!   16-byte-aligned `&mut [u8]` (e.g. a ring reservation) and returns the
//!   encoded length. Scratch space comes from the encoder's reusable
//!   [`rkyv::ser::allocator::Arena`]; after the first few messages nothing is
//!   allocated.
//! * [`access`] validates the bytes with bytecheck (every relative pointer,
//!   length, UTF-8 string and enum tag is checked to lie inside the slice)
//!   and returns the archived message that points into the slice.
//! * [`access_unchecked`] skips validation for trusted peers.
//!
//! The encoded form is rkyv's: the root object sits at the **end** of the
//! bytes, so `access` needs exactly the length `encode_into` returned (a
//! transport that pads frames must carry the real length).

use std::fmt;

use rkyv::rancor;
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::Archive;

use super::message::{PushTaskReply, PushTaskRequest, TaskSpec};

/// Alignment required of every region passed to [`Encoder::encode_into`] and
/// every slice passed to [`access`].
pub const MESSAGE_ALIGN: usize = 16;

/// The crate's one 16-byte-aligned growable byte buffer (rkyv's
/// `AlignedVec`): [`to_vec`]'s output, the TCP transport's send and receive
/// buffers, the shm transport's private snapshots.
pub type AlignedBytes = AlignedVec<MESSAGE_ALIGN>;

/// Rounds `len` up to a multiple of [`MESSAGE_ALIGN`] (16); `None` on
/// overflow. The crate's one round-up helper: ring frames, TCP frames and
/// encoded messages are all padded with it.
#[inline]
pub const fn align16(len: usize) -> Option<usize> {
    match len.checked_add(MESSAGE_ALIGN - 1) {
        Some(n) => Some(n & !(MESSAGE_ALIGN - 1)),
        None => None,
    }
}

/// What went wrong encoding a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The region is shorter than the encoded message.
    #[error("region of {capacity} bytes is too small: the message needs {needed}")]
    RegionTooSmall {
        /// Length of the region given.
        capacity: usize,
        /// The message's encoded size.
        needed: usize,
    },
    /// The region does not start on a 16-byte boundary.
    #[error("region starts at address {address:#x}, not aligned to {MESSAGE_ALIGN} bytes")]
    Misaligned {
        /// Start address of the region.
        address: usize,
    },
    /// rkyv reported another serialization failure.
    #[error("serialization failed: {0}")]
    Serialize(String),
}

/// What went wrong accessing encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the message's fixed-size root.
    #[error("truncated: {len} bytes, the message root alone needs {min}")]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Size of the archived root object.
        min: usize,
    },
    /// The bytes do not start on a 16-byte boundary.
    #[error("bytes start at address {address:#x}, not aligned to {MESSAGE_ALIGN} bytes")]
    Misaligned {
        /// Start address of the slice.
        address: usize,
    },
    /// Validation failed: a pointer, length, string or tag is out of bounds or invalid.
    #[error("invalid or corrupted message: {0}")]
    Invalid(String),
}

/// A [`Writer`] into a borrowed byte region that never writes past its end.
/// From the first write that does not fit (or from the start, with no
/// region: `count_only`) it only counts, so that one serialization pass
/// yields either the encoded bytes or the exact length they need.
pub struct RegionWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
    count_only: bool,
    overflow: bool,
}

impl fmt::Debug for RegionWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionWriter")
            .field("capacity", &self.buf.len())
            .field("pos", &self.pos)
            .field("count_only", &self.count_only)
            .finish()
    }
}

#[derive(Debug)]
struct RegionFull;

impl fmt::Display for RegionFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("region full")
    }
}

impl std::error::Error for RegionFull {}

impl Positional for RegionWriter<'_> {
    fn pos(&self) -> usize {
        self.pos
    }
}

impl<E: rancor::Source> Writer<E> for RegionWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        let Some(end) = self.pos.checked_add(bytes.len()) else {
            return Err(E::new(RegionFull));
        };
        if !(self.count_only | self.overflow) {
            match self.buf.get_mut(self.pos..end) {
                Some(dst) => dst.copy_from_slice(bytes),
                // Counts on from here: the serializer only writes (never
                // reads back), so the final position is the exact length
                // the message needs, and no second pass is needed to learn it.
                None => self.overflow = true,
            }
        }
        self.pos = end;
        Ok(())
    }
}

pub(crate) mod sealed {
    use super::*;

    /// The per-type encode/validate/decode entry points behind [`Message`](super::Message).
    pub trait Sealed: Archive + Sized {
        /// Serializes `self` with the low-level rkyv serializer.
        fn serialize_to(
            &self,
            writer: &mut RegionWriter<'_>,
            arena: ArenaHandle<'_>,
        ) -> Result<(), rancor::Error>;
        /// Validates `bytes` with bytecheck and returns the root. The error
        /// is rancor's `BoxedError`, which keeps bytecheck's description of
        /// what failed and where (field path, offset) in every build — the
        /// thin `rancor::Error` drops it without debug assertions.
        fn check(bytes: &[u8]) -> Result<&Self::Archived, rancor::BoxedError>;
        /// Deserializes an archived value.
        fn deserialize_from(archived: &Self::Archived) -> Result<Self, rancor::Error>;
    }
}

/// A message type this module can encode and access: [`TaskSpec`],
/// [`PushTaskRequest`], [`PushTaskReply`] (sealed; other crate modules add
/// their frame types with the crate-private `impl_message!` macro).
pub trait Message: sealed::Sealed {}

/// Implements [`Message`] for rkyv types of this crate (crate-private).
macro_rules! impl_message {
    ($($ty:ty),* $(,)?) => {$(
        impl $crate::spec::encoding::sealed::Sealed for $ty {
            fn serialize_to(
                &self,
                writer: &mut $crate::spec::encoding::RegionWriter<'_>,
                arena: ::rkyv::ser::allocator::ArenaHandle<'_>,
            ) -> Result<(), ::rkyv::rancor::Error> {
                ::rkyv::api::low::to_bytes_in_with_alloc::<_, _, ::rkyv::rancor::Error>(
                    self, writer, arena,
                )
                .map(|_| ())
            }

            fn check(
                bytes: &[u8],
            ) -> Result<&<Self as ::rkyv::Archive>::Archived, ::rkyv::rancor::BoxedError> {
                ::rkyv::api::low::access::<<Self as ::rkyv::Archive>::Archived, ::rkyv::rancor::BoxedError>(bytes)
            }

            fn deserialize_from(
                archived: &<Self as ::rkyv::Archive>::Archived,
            ) -> Result<Self, ::rkyv::rancor::Error> {
                ::rkyv::api::low::deserialize::<Self, ::rkyv::rancor::Error>(archived)
            }
        }

        impl $crate::spec::encoding::Message for $ty {}
    )*};
}
#[allow(unused_imports)]
pub(crate) use impl_message;

impl_message!(TaskSpec, PushTaskRequest, PushTaskReply);

/// Serializes messages into caller-provided regions, reusing one scratch arena.
///
/// ```
/// use shmwire::spec::{self, Encoder, FunctionDescriptor, TaskSpecBuilder, AlignedBytes};
///
/// let spec = TaskSpecBuilder::new(FunctionDescriptor::cpp("add")).build_normal_task();
/// let mut enc = Encoder::new();
/// let mut region = AlignedBytes::new();
/// region.resize(1024, 0); // stands in for a ring reservation
/// let n = enc.encode_into(&spec, region.as_mut_slice()).unwrap();
/// let archived = spec::access::<spec::TaskSpec>(&region[..n]).unwrap();
/// assert_eq!(archived.name.as_str(), "add");
/// ```
#[derive(Default)]
pub struct Encoder {
    arena: Arena,
    /// Length of the last message this encoder encoded (bytes): the basis
    /// of [`Encoder::reserve_hint`].
    last_len: usize,
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("arena_capacity", &self.arena.capacity())
            .field("last_len", &self.last_len)
            .finish()
    }
}

impl Encoder {
    /// A new encoder with an empty arena.
    pub fn new() -> Self {
        Self {
            arena: Arena::new(),
            last_len: 0,
        }
    }

    /// How many bytes to reserve for the next message when its length is not
    /// known (bytes, a multiple of [`MESSAGE_ALIGN`], at most `max`): the last
    /// encoded length plus an eighth and 64 bytes of slack, at least 256. A
    /// stream of similar messages (the same call again, its reply) then
    /// encodes in one pass straight into the reservation
    /// ([`MessageConnection::send_message`](crate::transport::MessageConnection::send_message));
    /// a message that does not fit fails with [`EncodeError::RegionTooSmall`]
    /// carrying its exact length, and is encoded again into that.
    pub fn reserve_hint(&self, max: usize) -> usize {
        let guess = self
            .last_len
            .saturating_add(self.last_len / 8 + 64)
            .max(256);
        align16(guess).unwrap_or(usize::MAX).min(max)
    }

    /// Serializes `msg` into `region` (which must start 16-byte aligned) and
    /// returns the number of bytes written; the message is `region[..n]`.
    /// Allocation-free once the arena has grown to the message's scratch needs.
    pub fn encode_into<M: Message>(
        &mut self,
        msg: &M,
        region: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let address = region.as_ptr() as usize;
        if address % MESSAGE_ALIGN != 0 {
            return Err(EncodeError::Misaligned { address });
        }
        let capacity = region.len();
        let mut writer = RegionWriter {
            buf: region,
            pos: 0,
            count_only: false,
            overflow: false,
        };
        match msg.serialize_to(&mut writer, self.arena.acquire()) {
            Ok(()) => {
                self.last_len = writer.pos;
                if writer.overflow {
                    // The writer counted on past the region's end: its
                    // position is the exact length needed.
                    Err(EncodeError::RegionTooSmall {
                        capacity,
                        needed: writer.pos,
                    })
                } else {
                    Ok(writer.pos)
                }
            }
            Err(err) => Err(EncodeError::Serialize(err.to_string())),
        }
    }

    /// The exact encoded length of `msg` (serializes once without storing
    /// bytes). Use it to reserve exactly enough ring space.
    pub fn encoded_len<M: Message>(&mut self, msg: &M) -> Result<usize, EncodeError> {
        let mut writer = RegionWriter {
            buf: &mut [],
            pos: 0,
            count_only: true,
            overflow: false,
        };
        msg.serialize_to(&mut writer, self.arena.acquire())
            .map(|()| writer.pos)
            .map_err(|e| EncodeError::Serialize(e.to_string()))
    }

    /// Encodes into a fresh 16-byte-aligned buffer of exactly the encoded length.
    pub fn to_vec<M: Message>(&mut self, msg: &M) -> Result<AlignedBytes, EncodeError> {
        let len = self.encoded_len(msg)?;
        let mut out = AlignedBytes::with_capacity(len);
        out.resize(len, 0);
        let n = self.encode_into(msg, out.as_mut_slice())?;
        debug_assert_eq!(n, len);
        Ok(out)
    }
}

/// Encodes `msg` into a new aligned buffer (convenience; allocates).
pub fn to_vec<M: Message>(msg: &M) -> Result<AlignedBytes, EncodeError> {
    Encoder::new().to_vec(msg)
}

fn precheck<M: Message>(bytes: &[u8]) -> Result<(), DecodeError> {
    // Length first: an empty slice's address is meaningless.
    let min = std::mem::size_of::<M::Archived>();
    if bytes.len() < min {
        return Err(DecodeError::Truncated {
            len: bytes.len(),
            min,
        });
    }
    let address = bytes.as_ptr() as usize;
    if address % MESSAGE_ALIGN != 0 {
        return Err(DecodeError::Misaligned { address });
    }
    Ok(())
}

/// Validates `bytes` (alignment, length, then every pointer, length, string
/// and tag with bytecheck) and returns the archived message in place.
/// Never panics on any input.
///
/// Validation describes the bytes at the moment of the check: the caller
/// must make sure no other process writes them while the returned reference
/// is used. For memory a hostile peer can write (a shared-memory frame),
/// validate a private copy — what the transport's
/// `MessageConnection::recv_message_with` does by default — or accept the
/// residual risk explicitly (`recv_message_in_place_trusted`).
pub fn access<M: Message>(bytes: &[u8]) -> Result<&M::Archived, DecodeError> {
    precheck::<M>(bytes)?;
    M::check(bytes).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Returns the archived message in `bytes` without validation: the fast path
/// for a trusted peer (same binary, memory no other process can write).
///
/// # Safety
///
/// * `bytes` must be exactly the bytes an [`Encoder`] produced for an `M`
///   (same shmwire version), starting 16-byte aligned, and
/// * no one may modify them while the returned reference lives.
///
/// Any other input is undefined behaviour; use [`access`] for untrusted memory.
pub unsafe fn access_unchecked<M: Message>(bytes: &[u8]) -> &M::Archived {
    debug_assert!(precheck::<M>(bytes).is_ok());
    // SAFETY: the caller guarantees `bytes` is a complete, aligned encoding of
    // an `M` that stays unmodified for the borrow, which is exactly rkyv's
    // `access_unchecked` contract (a valid archived root at the end).
    unsafe { rkyv::access_unchecked::<M::Archived>(bytes) }
}

/// Validates `bytes` and deserializes an owned message (convenience; allocates).
pub fn from_bytes<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let archived = access::<M>(bytes)?;
    M::deserialize_from(archived).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// Deserializes an owned message from its archived form (e.g. one obtained
/// from [`access`]).
pub fn deserialize<M: Message>(archived: &M::Archived) -> Result<M, DecodeError> {
    M::deserialize_from(archived).map_err(|e| DecodeError::Invalid(e.to_string()))
}
