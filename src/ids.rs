//! Ray-shaped identifiers: [`JobId`], [`ActorId`], [`TaskId`], [`ObjectId`],
//! [`WorkerId`], [`NodeId`] and [`PlacementGroupId`].
//!
//! Every ID is `#[repr(transparent)]` over its byte array, so
//! `size_of::<ObjectId>() == 28` and an ID inside an archived message is just its
//! bytes: the archived form of each ID *is* the ID (`#[rkyv(as = Self)]`), and
//! its `CheckBytes` accepts any bit pattern. Methods such as
//! [`TaskId::actor_id`] therefore work on IDs read in place from shared memory.
//!
//! # Layouts (as in Ray's `src/ray/common/id.h`)
//!
//! ```text
//! JobId     [ job: 4 ]
//! ActorId   [ unique: 12 ][ JobId: 4 ]                          = 16
//! TaskId    [ unique: 8  ][ ActorId: 16 ]                       = 24
//! ObjectId  [ TaskId: 24 ][ index: u32 little-endian ]          = 28
//! PlacementGroupId [ unique: 14 ][ JobId: 4 ]                   = 18
//! WorkerId, NodeId [ unique: 28 ]                               = 28
//! ```
//!
//! The *nil* ID of every type is all `0xff` bytes, as Ray's `FillNil`.
//!
//! # Derivations (as in Ray's `src/ray/common/id.cc`, SHA-256 version)
//!
//! The unique bytes of actor, actor-task and normal-task IDs come from
//! `GenerateUniqueBytes`: the first `n` bytes of
//! `SHA-256(job_id ‖ parent_task_id ‖ parent_task_counter as u64 LE [‖ extra as u64 LE])`,
//! where `extra` is hashed only when it is non-zero (Ray hashes `size_t`
//! values by their in-memory, little-endian representation on x86-64).
//!
//! * [`TaskId::for_driver_task`]: nil unique bytes + [`ActorId::nil_from_job`].
//! * [`TaskId::for_actor_creation_task`]: nil unique bytes + actor id.
//! * [`TaskId::for_actor_task`]: hash(job, parent, counter)\[..8\] + actor id.
//! * [`TaskId::for_normal_task`]: hash(job, parent, counter)\[..8\] + nil actor of the job.
//! * [`ActorId::of`]: hash(job, parent, counter, now-in-ns)\[..12\] + job id
//!   (Ray mixes the current time in so a restarted driver never reuses an
//!   actor id); [`ActorId::of_with_nonce`] is the deterministic form.
//! * [`ObjectId::from_index`]: task id + index (little-endian `u32`).
//!
//! Text form: [`Display`](std::fmt::Display) and [`FromStr`] use lowercase hex
//! of all bytes, exactly as Ray's `Hex()`.

use std::fmt;
use std::str::FromStr;

/// What went wrong turning bytes or text into an ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The byte slice (or the hex text, counted in bytes) has the wrong length.
    #[error("{kind} must be {expected} bytes, got {actual}")]
    WrongLength {
        /// The ID type, e.g. `"TaskId"`.
        kind: &'static str,
        /// The ID's size in bytes.
        expected: usize,
        /// The length that was given (bytes; for text, characters / 2 rounded down).
        actual: usize,
    },
    /// The text has an odd number of characters, so it cannot be hex bytes.
    #[error("{kind} hex text has odd length {len}")]
    OddHexLength {
        /// The ID type.
        kind: &'static str,
        /// Number of characters given.
        len: usize,
    },
    /// A character of the text is not a hex digit.
    #[error("{kind} hex text has a non-hex character at position {position}")]
    InvalidHex {
        /// The ID type.
        kind: &'static str,
        /// Byte offset of the offending character in the text.
        position: usize,
    },
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn write_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        let mut n = 0;
        for &b in chunk {
            buf[n] = HEX[usize::from(b >> 4)];
            buf[n + 1] = HEX[usize::from(b & 0x0f)];
            n += 2;
        }
        // Only ASCII hex digits were written.
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(kind: &'static str, s: &str) -> Result<[u8; N], IdError> {
    let text = s.as_bytes();
    if text.len() % 2 != 0 {
        return Err(IdError::OddHexLength {
            kind,
            len: text.len(),
        });
    }
    if text.len() / 2 != N {
        return Err(IdError::WrongLength {
            kind,
            expected: N,
            actual: text.len() / 2,
        });
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(IdError::InvalidHex {
            kind,
            position: 2 * i,
        })?;
        let lo = hex_val(pair[1]).ok_or(IdError::InvalidHex {
            kind,
            position: 2 * i + 1,
        })?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IdError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| IdError::Random(e.to_string()))?;
    Ok(out)
}

/// Ray's `GenerateUniqueBytes`: the first `LEN` bytes of
/// `SHA-256(job ‖ parent ‖ counter_le64 [‖ extra_le64 if extra != 0])`.
///
/// The message (36 or 44 bytes) always fits one SHA-256 block, so the block
/// is built here, padding and length included (FIPS 180-4, 5.1.1), and
/// compressed once (`sha2::compress256`, which uses the CPU's SHA
/// extensions where it has them): the `Digest` API's buffering and
/// finalization cost about half as much again as the compression itself
/// (0.8–1.0 % of a pipelined run's samples against ≈ 2 %, `perf record`,
/// 2026-12-07). The test `unique_bytes_are_sha256`
/// checks it against `Sha256::digest`.
fn generate_unique_bytes<const LEN: usize>(
    job_id: &JobId,
    parent_task_id: &TaskId,
    parent_task_counter: u64,
    extra_bytes: u64,
) -> [u8; LEN] {
    const { assert!(LEN <= 32) };
    let mut block = [0u8; 64];
    let (j, p) = (JobId::SIZE, JobId::SIZE + TaskId::SIZE);
    block[..j].copy_from_slice(job_id.as_bytes());
    block[j..p].copy_from_slice(parent_task_id.as_bytes());
    block[p..p + 8].copy_from_slice(&parent_task_counter.to_le_bytes());
    let mut len = p + 8;
    if extra_bytes > 0 {
        block[len..len + 8].copy_from_slice(&extra_bytes.to_le_bytes());
        len += 8;
    }
    // One `1` bit, zeros, then the message's length in bits (big-endian).
    block[len] = 0x80;
    block[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
    let mut state = SHA256_INITIAL_STATE;
    sha2::compress256(&mut state, &[block.into()]);
    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    let mut out = [0u8; LEN];
    out.copy_from_slice(&digest[..LEN]);
    out
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Concatenates two arrays into one of size `N`; `A + B == N` is checked at compile time.
fn concat<const A: usize, const B: usize, const N: usize>(a: &[u8; A], b: &[u8; B]) -> [u8; N] {
    const { assert!(A + B == N) };
    let mut out = [0u8; N];
    out[..A].copy_from_slice(a);
    out[A..].copy_from_slice(b);
    out
}

/// Writes `bytes` (an id's, of a length fixed at compile time) into
/// `state` as 16-, 8-, 4-, 2- and 1-byte little-endian words, every byte
/// once. A seeded word hasher (foldhash's, the worker's maps) mixes each
/// word with its seed as it does a byte string's, at a fraction of the
/// cost: its byte path is an out-of-line call with a branch per length,
/// about 6% of a pipelined caller's time (`perf record` of
/// `examples/actor_ping_pong`, 2026-12-07), its word path a multiply per
/// 16 bytes, inlined.
#[inline(always)]
fn hash_id_words<H: std::hash::Hasher>(bytes: &[u8], state: &mut H) {
    let mut rest = bytes;
    while let Some((w, tail)) = rest.split_first_chunk::<16>() {
        state.write_u128(u128::from_le_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<8>() {
        state.write_u64(u64::from_le_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        state.write_u32(u32::from_le_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        state.write_u16(u16::from_le_bytes(*w));
        rest = tail;
    }
    if let Some(&b) = rest.first() {
        state.write_u8(b);
    }
}

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            rkyv::Archive,
            rkyv::Serialize,
            rkyv::Deserialize,
            rkyv::Portable,
            rkyv::bytecheck::CheckBytes,
        )]
        #[rkyv(as = Self)]
        #[bytecheck(crate = rkyv::bytecheck)]
        #[repr(transparent)]
        pub struct $name([u8; $len]);

        impl std::hash::Hash for $name {
            /// Hands every byte of the id to the map's own (seeded) hasher,
            /// as whole words (`hash_id_words`). Ids reach maps from
            /// peers (a store client names its objects, a caller its worker
            /// id), so the hash must not be one a peer can make collide: an
            /// unkeyed fold to a `u64` first would let a peer craft any
            /// number of ids with one hash, whatever seed the map's hasher
            /// then adds, and turn each of the map's operations into a scan.
            #[inline]
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                hash_id_words(&self.0, state);
            }
        }

        impl $name {
            /// Size of this ID in bytes.
            pub const SIZE: usize = $len;

            /// The nil ID: every byte `0xff`, as Ray's `Nil()`.
            pub const fn nil() -> Self {
                Self([0xff; $len])
            }

            /// Whether this is the nil ID (all bytes `0xff`).
            pub fn is_nil(&self) -> bool {
                self.0.iter().all(|&b| b == 0xff)
            }

            /// Wraps raw bytes.
            pub const fn from_array(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// Copies the ID out of a slice, which must be exactly `SIZE` bytes.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                <[u8; $len]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| IdError::WrongLength {
                        kind: stringify!($name),
                        expected: $len,
                        actual: bytes.len(),
                    })
            }

            /// The ID's bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The ID's bytes, by value.
            pub const fn to_array(self) -> [u8; $len] {
                self.0
            }

            /// Lowercase hex of all bytes (Ray's `Hex()`); same as `to_string()`.
            pub fn hex(&self) -> String {
                self.to_string()
            }

            /// Parses lowercase or uppercase hex of exactly `2 * SIZE` characters.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                parse_hex::<$len>(stringify!($name), s).map(Self)
            }
        }

        impl Default for $name {
            /// The nil ID.
            fn default() -> Self {
                Self::nil()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                write_hex(&self.0, f)?;
                f.write_str(")")
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_hex(s)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl TryFrom<&[u8]> for $name {
            type Error = IdError;
            fn try_from(bytes: &[u8]) -> Result<Self, IdError> {
                Self::from_bytes(bytes)
            }
        }

        impl From<[u8; $len]> for $name {
            fn from(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }
    };
}

macro_rules! define_random {
    ($name:ident, $len:expr) => {
        impl $name {
            /// An ID of random bytes from the operating system's random source.
            pub fn try_from_random() -> Result<Self, IdError> {
                random_bytes::<$len>().map(Self)
            }

            /// An ID of random bytes from the operating system's random source.
            ///
            /// # Panics
            ///
            /// If the OS random source fails (`getrandom(2)` unavailable); use
            /// [`Self::try_from_random`] to get the error instead.
            pub fn from_random() -> Self {
                match Self::try_from_random() {
                    Ok(id) => id,
                    Err(e) => panic!("{}::from_random: {e}", stringify!($name)),
                }
            }
        }
    };
}

define_id!(
    /// A job (driver session) id: 4 bytes, Ray's `JobID`.
    JobId,
    4
);
define_id!(
    /// An actor id: 12 unique bytes followed by the [`JobId`] that created it (Ray's `ActorID`).
    ActorId,
    16
);
define_id!(
    /// A task id: 8 unique bytes followed by an [`ActorId`] (Ray's `TaskID`).
    ///
    /// For a normal task the actor part is [`ActorId::nil_from_job`] of its job.
    TaskId,
    24
);
define_id!(
    /// An object id: the [`TaskId`] that created it followed by a 4-byte
    /// little-endian object index (Ray's `ObjectID`).
    ObjectId,
    28
);
define_id!(
    /// A worker id: 28 unique bytes (Ray's `WorkerID`, a `UniqueID`).
    WorkerId,
    28
);
define_id!(
    /// A node id: 28 unique bytes (Ray's `NodeID`, a `UniqueID`).
    NodeId,
    28
);
define_id!(
    /// A placement group id: 14 unique bytes followed by a [`JobId`] (Ray's `PlacementGroupID`).
    PlacementGroupId,
    18
);

define_random!(JobId, 4);
define_random!(ActorId, 16);
define_random!(TaskId, 24);
define_random!(WorkerId, 28);
define_random!(NodeId, 28);
define_random!(PlacementGroupId, 18);

impl JobId {
    /// Ray's `JobID::FromInt`: the `u32` in little-endian byte order.
    pub const fn from_int(value: u32) -> Self {
        Self(value.to_le_bytes())
    }

    /// Ray's `JobID::ToInt`: the bytes read as a little-endian `u32`.
    pub const fn to_int(self) -> u32 {
        u32::from_le_bytes(self.0)
    }
}

impl ActorId {
    /// Number of unique (hashed) bytes before the job id.
    pub const UNIQUE_BYTES: usize = 12;

    /// Ray's `ActorID::Of`: hashed unique bytes + `job_id`, with the current
    /// time in nanoseconds mixed into the hash (as Ray does, so that a
    /// re-run driver never produces a previously used actor id). Not
    /// deterministic; see [`Self::of_with_nonce`].
    pub fn of(job_id: JobId, parent_task_id: TaskId, parent_task_counter: u64) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self::of_with_nonce(job_id, parent_task_id, parent_task_counter, now)
    }

    /// The deterministic form of [`Self::of`]: `nonce` takes the place of
    /// Ray's current-time value (`0` means "not hashed", as in Ray).
    pub fn of_with_nonce(
        job_id: JobId,
        parent_task_id: TaskId,
        parent_task_counter: u64,
        nonce: u64,
    ) -> Self {
        let unique =
            generate_unique_bytes::<12>(&job_id, &parent_task_id, parent_task_counter, nonce);
        Self(concat(&unique, &job_id.0))
    }

    /// Ray's `ActorID::NilFromJob`: 12 nil (`0xff`) bytes + `job_id`.
    /// This is the actor part of every normal task id of that job.
    pub fn nil_from_job(job_id: JobId) -> Self {
        Self(concat(&[0xff; 12], &job_id.0))
    }

    /// The job that created this actor (the last 4 bytes). Ray asserts the
    /// actor id is not nil; here a nil actor id yields the nil job id.
    pub fn job_id(&self) -> JobId {
        let mut job = [0u8; 4];
        job.copy_from_slice(&self.0[12..]);
        JobId(job)
    }
}

/// The hashed part of a child task's id: the first
/// [`TaskId::UNIQUE_BYTES`] bytes of `SHA-256(job ‖ parent ‖ counter)`,
/// which [`TaskId::for_actor_task`] and [`TaskId::for_normal_task`] put
/// before the actor id. It does not depend on the task's actor, so a
/// submitter can hash its next counter ahead of the submission — while it
/// waits for a reply — and finish the id when it knows the target
/// (`CoreWorker` does; the hash is ≈ 55 ns of a sync actor call here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildTaskHash {
    job_id: JobId,
    parent_task_id: TaskId,
    parent_task_counter: u64,
    unique: [u8; TaskId::UNIQUE_BYTES],
}

impl ChildTaskHash {
    /// Hashes `(job_id, parent_task_id, parent_task_counter)` (Ray's
    /// `GenerateUniqueBytes` without extra bytes).
    pub fn new(job_id: JobId, parent_task_id: TaskId, parent_task_counter: u64) -> Self {
        Self {
            job_id,
            parent_task_id,
            parent_task_counter,
            unique: generate_unique_bytes::<{ TaskId::UNIQUE_BYTES }>(
                &job_id,
                &parent_task_id,
                parent_task_counter,
                0,
            ),
        }
    }

    /// Whether this is the hash of `(job_id, parent_task_id,
    /// parent_task_counter)`.
    pub fn is_for(&self, job_id: JobId, parent_task_id: TaskId, parent_task_counter: u64) -> bool {
        self.parent_task_counter == parent_task_counter
            && self.parent_task_id == parent_task_id
            && self.job_id == job_id
    }

    /// The job hashed.
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// The parent task hashed.
    pub fn parent_task_id(&self) -> TaskId {
        self.parent_task_id
    }

    /// The parent's task counter hashed.
    pub fn parent_task_counter(&self) -> u64 {
        self.parent_task_counter
    }

    /// The actor task's id (as [`TaskId::for_actor_task`]).
    pub fn actor_task(&self, actor_id: ActorId) -> TaskId {
        TaskId(concat(&self.unique, &actor_id.0))
    }

    /// The normal task's id (as [`TaskId::for_normal_task`]).
    pub fn normal_task(&self) -> TaskId {
        TaskId(concat(&self.unique, &ActorId::nil_from_job(self.job_id).0))
    }
}

impl TaskId {
    /// Number of unique (hashed) bytes before the actor id.
    pub const UNIQUE_BYTES: usize = 8;

    /// Ray's `TaskID::ForDriverTask`: 8 nil bytes + [`ActorId::nil_from_job`].
    pub fn for_driver_task(job_id: JobId) -> Self {
        Self(concat(&[0xff; 8], &ActorId::nil_from_job(job_id).0))
    }

    /// Ray's `TaskID::ForActorCreationTask`: 8 nil bytes + `actor_id`.
    pub fn for_actor_creation_task(actor_id: ActorId) -> Self {
        Self(concat(&[0xff; 8], &actor_id.0))
    }

    /// Ray's `TaskID::ForActorTask`: hash(job, parent, counter)\[..8\] + `actor_id`.
    pub fn for_actor_task(
        job_id: JobId,
        parent_task_id: TaskId,
        parent_task_counter: u64,
        actor_id: ActorId,
    ) -> Self {
        ChildTaskHash::new(job_id, parent_task_id, parent_task_counter).actor_task(actor_id)
    }

    /// Ray's `TaskID::ForNormalTask`: hash(job, parent, counter)\[..8\] + nil actor of `job_id`.
    pub fn for_normal_task(
        job_id: JobId,
        parent_task_id: TaskId,
        parent_task_counter: u64,
    ) -> Self {
        ChildTaskHash::new(job_id, parent_task_id, parent_task_counter).normal_task()
    }

    /// Ray's `TaskID::FromRandom(job_id)`: 20 random bytes + `job_id`.
    pub fn from_random_in_job(job_id: JobId) -> Result<Self, IdError> {
        let random = random_bytes::<20>()?;
        Ok(Self(concat(&random, &job_id.0)))
    }

    /// Ray's `TaskID::ComputeDriverTaskId`: the worker id cut to 24 bytes.
    pub fn compute_driver_task_id(driver_id: WorkerId) -> Self {
        let mut out = [0u8; 24];
        out.copy_from_slice(&driver_id.0[..24]);
        Self(out)
    }

    /// The actor part (bytes 8..24). For a normal or driver task this is the
    /// job's nil actor ([`ActorId::nil_from_job`]).
    pub fn actor_id(&self) -> ActorId {
        let mut actor = [0u8; 16];
        actor.copy_from_slice(&self.0[8..]);
        ActorId(actor)
    }

    /// The job id (the last 4 bytes), Ray's `TaskID::JobId`.
    pub fn job_id(&self) -> JobId {
        self.actor_id().job_id()
    }

    /// Ray's `TaskID::IsForActorCreationTask`: nil unique bytes and a non-nil actor part.
    pub fn is_for_actor_creation_task(&self) -> bool {
        self.0[..8].iter().all(|&b| b == 0xff) && !self.actor_id().is_nil()
    }
}

impl ObjectId {
    /// Ray's `ObjectID::FromIndex`: `task_id` + `index` as little-endian `u32`.
    ///
    /// Ray requires `1 <= index` (return `i` of a task has index `i + 1`);
    /// index 0 is not produced by any derivation here but is representable
    /// (it is what [`Self::from_random`] uses, as Ray's `FromRandom`).
    pub fn from_index(task_id: TaskId, index: u32) -> Self {
        Self(concat(&task_id.0, &index.to_le_bytes()))
    }

    /// The creating task (first 24 bytes).
    pub fn task_id(&self) -> TaskId {
        let mut task = [0u8; 24];
        task.copy_from_slice(&self.0[..24]);
        TaskId(task)
    }

    /// The object index (last 4 bytes, little-endian).
    pub fn object_index(&self) -> u32 {
        u32::from_le_bytes([self.0[24], self.0[25], self.0[26], self.0[27]])
    }

    /// Ray's `ObjectID::ForActorHandle`: return 1 of the actor's creation task.
    /// This is also the initial actor cursor (`actor_creation_dummy_object_id`).
    pub fn for_actor_handle(actor_id: ActorId) -> Self {
        Self::from_index(TaskId::for_actor_creation_task(actor_id), 1)
    }

    /// Ray's `ObjectID::FromRandom`: 24 random task bytes + index 0.
    pub fn try_from_random() -> Result<Self, IdError> {
        let task = random_bytes::<24>()?;
        Ok(Self::from_index(TaskId(task), 0))
    }

    /// Ray's `ObjectID::FromRandom`: 24 random task bytes + index 0.
    ///
    /// # Panics
    ///
    /// If the OS random source fails; use [`Self::try_from_random`] to get the error.
    pub fn from_random() -> Self {
        match Self::try_from_random() {
            Ok(id) => id,
            Err(e) => panic!("ObjectId::from_random: {e}"),
        }
    }
}

impl WorkerId {
    /// Ray's `ComputeDriverIdFromJob`: the job id followed by 24 `0xff` bytes.
    pub fn driver_id_for_job(job_id: JobId) -> Self {
        Self(concat(&job_id.0, &[0xff; 24]))
    }
}

impl PlacementGroupId {
    /// The job that created the placement group (the last 4 bytes).
    pub fn job_id(&self) -> JobId {
        let mut job = [0u8; 4];
        job.copy_from_slice(&self.0[14..]);
        JobId(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact() {
        assert_eq!(std::mem::size_of::<JobId>(), 4);
        assert_eq!(std::mem::size_of::<ActorId>(), 16);
        assert_eq!(std::mem::size_of::<TaskId>(), 24);
        assert_eq!(std::mem::size_of::<ObjectId>(), 28);
        assert_eq!(std::mem::size_of::<WorkerId>(), 28);
        assert_eq!(std::mem::size_of::<NodeId>(), 28);
        assert_eq!(std::mem::align_of::<ObjectId>(), 1);
    }

    /// The one-block SHA-256 is SHA-256: against the `Digest` API, for
    /// every message shape (with and without extra bytes) and counters at
    /// the edges.
    #[test]
    fn unique_bytes_are_sha256() {
        use sha2::{Digest, Sha256};
        let parent = TaskId::for_driver_task(JobId::from_int(9));
        for job in [JobId::from_int(0), JobId::from_int(7), JobId::nil()] {
            for counter in [0, 1, 255, 1 << 32, u64::MAX] {
                for extra in [0, 1, u64::MAX] {
                    let mut h = Sha256::new();
                    h.update(job.as_bytes());
                    h.update(parent.as_bytes());
                    h.update(counter.to_le_bytes());
                    if extra > 0 {
                        h.update(extra.to_le_bytes());
                    }
                    let want = h.finalize();
                    let got = generate_unique_bytes::<32>(&job, &parent, counter, extra);
                    assert_eq!(got[..], want[..], "{job:?} {counter} {extra}");
                    let short = generate_unique_bytes::<8>(&job, &parent, counter, extra);
                    assert_eq!(short[..], want[..8]);
                }
            }
        }
    }

    #[test]
    fn ids_hand_all_their_bytes_to_the_maps_hasher() {
        // The map's hasher is seeded; anything the id computes before it
        // (a fold to a `u64`) would be unkeyed and so open to crafted
        // collisions. Every byte goes to the hasher, nothing else.
        #[derive(Default)]
        struct Recorder(Vec<u8>);
        impl std::hash::Hasher for Recorder {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
        }
        fn written<T: std::hash::Hash>(id: &T) -> Vec<u8> {
            let mut r = Recorder::default();
            id.hash(&mut r);
            r.0
        }
        let task = TaskId::for_driver_task(JobId::from_int(7));
        let object = ObjectId::from_index(task, 3);
        let worker = WorkerId::from_array([0x42; 28]);
        assert_eq!(written(&object), object.as_bytes());
        assert_eq!(written(&task), task.as_bytes());
        assert_eq!(written(&worker), worker.as_bytes());
        assert_eq!(written(&JobId::from_int(7)), JobId::from_int(7).as_bytes());
        // The words cover every length (16 + 2 bytes here); the default
        // `write_u*` of `Recorder` writes native-endian bytes.
        if cfg!(target_endian = "little") {
            let group = PlacementGroupId::from_random();
            assert_eq!(written(&group), group.as_bytes());
            let actor = task.actor_id();
            assert_eq!(written(&actor), actor.as_bytes());
        }
    }
}
