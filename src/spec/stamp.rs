//! Re-stamping an encoded actor-task request in place of encoding it again.
//!
//! An actor's calls of one method from one caller differ only in a few
//! fixed-size fields (the ids and counters [`TaskSpecBuilder::rebuild_actor_task`]
//! and the submitter write, the sequence numbers) and in their argument
//! bytes. rkyv's layout depends only on the values' lengths, variants and
//! `Option` tags, so two such requests whose arguments have the same shape
//! encode to bytes that differ only at those fields. [`RequestStamp`] keeps
//! one full encoding and where those fields lie in it; a later request of
//! the same shape is written by copying the bytes and overwriting the fields
//! (a `memcpy` and a dozen small stores instead of an rkyv serialization
//! pass). [`ReplyStamp`] does the same for the worker's value replies (one
//! inline return object: the task id, the return's id, size and data vary).
//! Unit tests compare every stamped request and reply with its full
//! encoding.
//!
//! The receiving side uses the same fact the other way round ([`Known`],
//! kept per connection in a [`KnownShapes`]: requests on the worker, replies
//! on the caller): a message whose bytes equal an already validated one
//! everywhere outside its per-call fields ([`Shaped::varying`]) — which hold
//! only ids, integers and argument or return bytes, for which every value is
//! valid, and `bool`s, checked to be 0 or 1 — is valid as that one was, and
//! is read without a bytecheck pass (a masked comparison instead of walking
//! every pointer and string).
//!
//! [`TaskSpecBuilder::rebuild_actor_task`]: super::TaskSpecBuilder::rebuild_actor_task

use std::marker::PhantomData;

use super::encoding::{
    access, access_unchecked, AlignedBytes, EncodeError, Encoder, Message, MESSAGE_ALIGN,
};
use super::message::{
    ArchivedPushTaskReply, ArchivedPushTaskRequest, ArchivedReturnValue, ArchivedTaskArg,
    PushTaskReply, PushTaskRequest, TaskArg,
};
use super::same_bytes;
use super::{DecodeError, SHAPE_SLOTS};

/// Byte offsets of the per-call fields in a stamp's bytes.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    intended_worker_id: usize,
    sequence_number: usize,
    client_processed_up_to: usize,
    task_id: usize,
    parent_task_id: usize,
    parent_counter: usize,
    caller_id: usize,
    max_retries: usize,
    skip_execution: usize,
    actor_id: usize,
    actor_creation_dummy_object_id: usize,
    actor_counter: usize,
    previous_actor_task_dummy_object_id: usize,
    caller_starts_at: usize,
}

/// One inline argument's place and shape in a stamp's bytes.
#[derive(Debug, Clone)]
struct ArgShape {
    /// Offset of the value's data bytes.
    data: usize,
    /// Their length.
    len: usize,
    /// The value's metadata (must be equal: it is not re-stamped).
    metadata: Vec<u8>,
}

/// A full encoding of an actor-task [`PushTaskRequest`] and where its
/// per-call fields lie (see the module docs).
///
/// Contract: a request written with [`RequestStamp::write`] must equal the
/// request the stamp was made from in every field other than
/// `intended_worker_id`, `sequence_number`, `client_processed_up_to`, the
/// spec's `task_id`, `parent_task_id`, `parent_counter`, `caller_id`,
/// `max_retries`, `skip_execution`, the fields of its `actor_task_spec`
/// and its arguments' data bytes ([`RequestStamp::fits`] checks the
/// arguments' shape). The worker runtime keeps one stamp per call template,
/// whose requests differ in exactly those fields.
#[derive(Debug)]
pub(crate) struct RequestStamp {
    /// The encoding; its per-call fields hold the last request written
    /// with [`RequestStamp::write_delta`] (every other write overwrites
    /// them all).
    bytes: AlignedBytes,
    at: Offsets,
    args: Vec<ArgShape>,
    /// This stamp's number, unique in the process: which stamp a
    /// connection's shape slot holds.
    id: u64,
    /// The ranges a receiver keeping these bytes as a shape lets vary
    /// ([`shape_ranges`]: computed by the same code from the same bytes);
    /// empty when it would keep none.
    delta: Vec<(usize, usize)>,
    /// Their total length: a delta frame's (bytes).
    delta_len: usize,
}

/// Numbers [`RequestStamp`]s.
static NEXT_STAMP_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Offset of `field` within `base` (both in the same buffer).
fn offset_of<T: ?Sized>(base: &[u8], field: &T) -> usize {
    (field as *const T as *const u8 as usize) - (base.as_ptr() as usize)
}

impl Offsets {
    /// Where `a`'s per-call fields lie in `b` (the bytes `a` was accessed
    /// from); `None` when `a` is not an actor task.
    fn of(b: &[u8], a: &ArchivedPushTaskRequest) -> Option<Self> {
        let s = &a.task_spec;
        let actor = s.actor_task_spec.as_ref()?;
        Some(Self {
            intended_worker_id: offset_of(b, &a.intended_worker_id),
            sequence_number: offset_of(b, &a.sequence_number),
            client_processed_up_to: offset_of(b, &a.client_processed_up_to),
            task_id: offset_of(b, &s.task_id),
            parent_task_id: offset_of(b, &s.parent_task_id),
            parent_counter: offset_of(b, &s.parent_counter),
            caller_id: offset_of(b, &s.caller_id),
            max_retries: offset_of(b, &s.max_retries),
            skip_execution: offset_of(b, &s.skip_execution),
            actor_id: offset_of(b, &actor.actor_id),
            actor_creation_dummy_object_id: offset_of(b, &actor.actor_creation_dummy_object_id),
            actor_counter: offset_of(b, &actor.actor_counter),
            previous_actor_task_dummy_object_id: offset_of(
                b,
                &actor.previous_actor_task_dummy_object_id,
            ),
            caller_starts_at: offset_of(b, &actor.caller_starts_at),
        })
    }

    /// Every per-call field as `(offset, length)`: all but `skip_execution`
    /// are ids (byte arrays) and little-endian integers, valid whatever
    /// their bytes.
    fn spans(&self) -> [(usize, usize); 14] {
        use crate::ids::{ActorId, ObjectId, TaskId, WorkerId};
        [
            (self.intended_worker_id, WorkerId::SIZE),
            (self.sequence_number, 8),
            (self.client_processed_up_to, 8),
            (self.task_id, TaskId::SIZE),
            (self.parent_task_id, TaskId::SIZE),
            (self.parent_counter, 8),
            (self.caller_id, TaskId::SIZE),
            (self.max_retries, 4),
            (self.skip_execution, 1),
            (self.actor_id, ActorId::SIZE),
            (self.actor_creation_dummy_object_id, ObjectId::SIZE),
            (self.actor_counter, 8),
            (self.previous_actor_task_dummy_object_id, ObjectId::SIZE),
            (self.caller_starts_at, 8),
        ]
    }
}

/// Copies a stamp's recorded bytes to the front of `out`: their length and
/// that part of `out`, to write the per-call fields over ([`put`]); or
/// [`EncodeError::RegionTooSmall`].
fn copy_template<'a>(
    bytes: &[u8],
    out: &'a mut [u8],
) -> Result<(usize, &'a mut [u8]), EncodeError> {
    let n = bytes.len();
    let capacity = out.len();
    let out = out.get_mut(..n).ok_or(EncodeError::RegionTooSmall {
        capacity,
        needed: n,
    })?;
    out.copy_from_slice(bytes);
    Ok((n, out))
}

/// Writes `bytes` at offset `at` of a stamp's copy. The offsets come from
/// the stamp's own encoding, so they lie inside it; one that did not would
/// leave the template's bytes there (never a panic).
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(o) = out.get_mut(at..at.saturating_add(bytes.len())) {
        o.copy_from_slice(bytes);
    }
}

/// [`put`] of a field of fixed length (an id, an integer): a copy of `N`
/// bytes the compiler can write as moves, where `put`'s length known only
/// at run time may cost a call to `memcpy` (`stamp_request` went from 225
/// to 202 instructions a call with it, callgrind of
/// `examples/actor_ping_pong`, 2026-12-07).
#[inline(always)]
fn put_fixed<const N: usize>(out: &mut [u8], at: usize, bytes: &[u8; N]) {
    if let Some(o) = out.get_mut(at..).and_then(|o| o.first_chunk_mut::<N>()) {
        *o = *bytes;
    }
}

impl RequestStamp {
    /// Encodes `req` in full and records its per-call fields. `None` when it
    /// is not an actor task, or has an argument passed by reference or with
    /// nested references (those are always encoded in full).
    pub(crate) fn new(encoder: &mut Encoder, req: &PushTaskRequest) -> Option<Self> {
        let spec = &req.task_spec;
        let inline_only = spec.args.iter().all(|a| match a {
            TaskArg::Value(v) => v.nested_inlined_refs.is_empty(),
            TaskArg::ObjectRef(_) => false,
        });
        if spec.actor_task_spec.is_none() || !inline_only {
            return None;
        }
        let bytes = encoder.to_vec(req).ok()?;
        let a: &ArchivedPushTaskRequest = access::<PushTaskRequest>(&bytes).ok()?;
        let s = &a.task_spec;
        let b = bytes.as_slice();
        let at = Offsets::of(b, a)?;
        let mut args = Vec::with_capacity(s.args.len());
        for arg in s.args.iter() {
            match arg {
                ArchivedTaskArg::Value(v) => args.push(ArgShape {
                    data: offset_of(b, v.data.as_slice()),
                    len: v.data.len(),
                    metadata: v.metadata.as_slice().to_vec(),
                }),
                ArchivedTaskArg::ObjectRef(_) => return None,
            }
        }
        let (mut delta, mut bools) = (Vec::new(), Vec::new());
        if !shape_ranges::<PushTaskRequest>(b, a, &mut delta, &mut bools) {
            delta.clear();
        }
        let delta_len = delta.iter().map(|&(start, end)| end - start).sum();
        // Relaxed: only the number's uniqueness matters; nothing else is
        // published through the counter, so it has no partner.
        let id = NEXT_STAMP_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(Self {
            bytes,
            at,
            args,
            id,
            delta,
            delta_len,
        })
    }

    /// This stamp's number (unique in the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The length of this stamp's delta frames (bytes), or `None` when a
    /// receiver keeps no shape of it (then requests go in full).
    pub(crate) fn delta_len(&self) -> Option<usize> {
        (!self.delta.is_empty()).then_some(self.delta_len)
    }

    /// Writes `req` as a delta of this stamp's bytes into
    /// `out[..delta_len]`: `req`'s encoding ([`RequestStamp::write`]) cut
    /// to the ranges a receiver keeping these bytes as a shape lets vary,
    /// in order ([`Known::expand_into`] puts them back). Returns the
    /// length, or [`EncodeError::RegionTooSmall`]. `req` must
    /// [`fit`](Self::fits).
    pub(crate) fn write_delta(
        &mut self,
        req: &PushTaskRequest,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let n = self.delta_len;
        let capacity = out.len();
        let out = out.get_mut(..n).ok_or(EncodeError::RegionTooSmall {
            capacity,
            needed: n,
        })?;
        // The per-call fields are stamped into the stamp's own bytes (they
        // lie in the ranges, which every write overwrites), then gathered.
        stamp_request(&self.at, &self.args, req, self.bytes.as_mut_slice());
        let mut pos = 0;
        for &(start, end) in &self.delta {
            let len = end - start;
            if let (Some(o), Some(i)) = (out.get_mut(pos..pos + len), self.bytes.get(start..end)) {
                o.copy_from_slice(i);
            }
            pos += len;
        }
        Ok(n)
    }

    /// The encoded length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `req` can be written from this stamp: an actor task whose
    /// arguments are inline values of the recorded lengths and metadata,
    /// without nested references (the rest is the caller's contract).
    pub(crate) fn fits(&self, req: &PushTaskRequest) -> bool {
        let spec = &req.task_spec;
        spec.actor_task_spec.is_some()
            && spec.args.len() == self.args.len()
            && spec.args.iter().zip(&self.args).all(|(a, shape)| match a {
                TaskArg::Value(v) => {
                    v.data.len() == shape.len
                        && same_bytes(&v.metadata, &shape.metadata)
                        && v.nested_inlined_refs.is_empty()
                }
                TaskArg::ObjectRef(_) => false,
            })
    }

    /// Writes `req`'s encoding into `out[..self.len()]`: the recorded bytes
    /// with `req`'s per-call fields written over them. Returns the length,
    /// or [`EncodeError::RegionTooSmall`]. `req` must [`fit`](Self::fits).
    pub(crate) fn write(
        &self,
        req: &PushTaskRequest,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let (n, out) = copy_template(&self.bytes, out)?;
        stamp_request(&self.at, &self.args, req, out);
        Ok(n)
    }
}

/// Writes `req`'s per-call fields and argument bytes at their offsets
/// (`at`, `args`) in `out`, a copy of the stamp's bytes.
fn stamp_request(at: &Offsets, args: &[ArgShape], req: &PushTaskRequest, out: &mut [u8]) {
    let s = &req.task_spec;
    put_fixed(
        out,
        at.intended_worker_id,
        req.intended_worker_id.as_bytes(),
    );
    put_fixed(out, at.sequence_number, &req.sequence_number.to_le_bytes());
    put_fixed(
        out,
        at.client_processed_up_to,
        &req.client_processed_up_to.to_le_bytes(),
    );
    put_fixed(out, at.task_id, s.task_id.as_bytes());
    put_fixed(out, at.parent_task_id, s.parent_task_id.as_bytes());
    put_fixed(out, at.parent_counter, &s.parent_counter.to_le_bytes());
    put_fixed(out, at.caller_id, s.caller_id.as_bytes());
    put_fixed(out, at.max_retries, &s.max_retries.to_le_bytes());
    put_fixed(out, at.skip_execution, &[u8::from(s.skip_execution)]);
    if let Some(actor) = &s.actor_task_spec {
        put_fixed(out, at.actor_id, actor.actor_id.as_bytes());
        put_fixed(
            out,
            at.actor_creation_dummy_object_id,
            actor.actor_creation_dummy_object_id.as_bytes(),
        );
        put_fixed(out, at.actor_counter, &actor.actor_counter.to_le_bytes());
        put_fixed(
            out,
            at.previous_actor_task_dummy_object_id,
            actor.previous_actor_task_dummy_object_id.as_bytes(),
        );
        put_fixed(
            out,
            at.caller_starts_at,
            &actor.caller_starts_at.to_le_bytes(),
        );
    }
    for (arg, shape) in s.args.iter().zip(args) {
        if let TaskArg::Value(v) = arg {
            put(out, shape.data, &v.data);
        }
    }
}

/// A full encoding of a value reply — one return object, inline, with no
/// nested references — and where its per-call fields lie: the worker's
/// counterpart of [`RequestStamp`]. Replies of one method whose values
/// have the same length differ only in the task id, the return object's
/// id, its size and its data bytes (the ranges [`Shaped::varying`] names
/// for a reply), so such a reply is written by copying these bytes and
/// overwriting those fields instead of an rkyv serialization pass.
#[derive(Debug)]
pub(crate) struct ReplyStamp {
    bytes: AlignedBytes,
    /// The reply the stamp was made from: [`ReplyStamp::fits`] compares
    /// every field outside the per-call ones with it.
    template: PushTaskReply,
    /// Offsets of the task id, the return object's id, its size and its
    /// data in `bytes`.
    task_id: usize,
    object_id: usize,
    size: usize,
    data: usize,
}

/// The single return object of `r` and its inline data, when `r` is a value
/// reply (what a [`ReplyStamp`] covers).
fn inline_return(
    r: &PushTaskReply,
) -> Option<(&super::message::ReturnObject, &super::message::InlineData)> {
    match r.return_objects.as_slice() {
        [o] if o.nested_inlined_refs.is_empty() => match &o.value {
            super::message::ReturnValue::Inline(d) => Some((o, d)),
            super::message::ReturnValue::InStore(_) => None,
        },
        _ => None,
    }
}

impl ReplyStamp {
    /// Encodes `reply` in full and records its per-call fields. `None`
    /// unless it is a value reply (one inline return object without nested
    /// references): errors, store returns and several returns are always
    /// encoded in full.
    pub(crate) fn new(encoder: &mut Encoder, reply: &PushTaskReply) -> Option<Self> {
        inline_return(reply)?;
        let bytes = encoder.to_vec(reply).ok()?;
        let a: &ArchivedPushTaskReply = access::<PushTaskReply>(&bytes).ok()?;
        let b = bytes.as_slice();
        let [o] = a.return_objects.as_slice() else {
            return None;
        };
        let ArchivedReturnValue::Inline(d) = &o.value else {
            return None;
        };
        Some(Self {
            task_id: offset_of(b, &a.task_id),
            object_id: offset_of(b, &o.object_id),
            size: offset_of(b, &o.size),
            data: offset_of(b, d.data.as_slice()),
            template: reply.clone(),
            bytes,
        })
    }

    /// The encoded length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `reply` can be written from this stamp: a value reply whose
    /// data is as long as the template's and whose every other field but
    /// the task id, the return object's id and its size equals the
    /// template's.
    pub(crate) fn fits(&self, reply: &PushTaskReply) -> bool {
        let (Some((o, d)), Some((to, td))) = (inline_return(reply), inline_return(&self.template))
        else {
            return false;
        };
        let t = &self.template;
        d.data.len() == td.data.len()
            && same_bytes(&d.metadata, &td.metadata)
            && o.nested_inlined_refs == to.nested_inlined_refs
            && reply.borrowed_refs == t.borrowed_refs
            && reply.is_application_level_error == t.is_application_level_error
            && reply.worker_exiting == t.worker_exiting
            && reply.task_stolen == t.task_stolen
            && reply.status.code == t.status.code
            && same_bytes(reply.status.message.as_bytes(), t.status.message.as_bytes())
    }

    /// Writes `reply`'s encoding into `out[..self.len()]`: the recorded
    /// bytes with `reply`'s per-call fields written over them. Returns the
    /// length, or [`EncodeError::RegionTooSmall`]. `reply` must
    /// [`fit`](Self::fits) (one that does not is encoded as the template
    /// with `reply`'s ids: the caller of `write` checks `fits` first).
    pub(crate) fn write(
        &self,
        reply: &PushTaskReply,
        out: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let (n, out) = copy_template(&self.bytes, out)?;
        put_fixed(out, self.task_id, reply.task_id.as_bytes());
        if let Some((o, d)) = inline_return(reply) {
            put_fixed(out, self.object_id, o.object_id.as_bytes());
            put_fixed(out, self.size, &o.size.to_le_bytes());
            put(out, self.data, &d.data);
        }
        Ok(n)
    }
}

/// Messages in a row of another shape after which a stamp is made again
/// from the latest one (a method whose argument or return sizes changed for
/// good), while one odd message costs nothing.
pub(crate) const STAMP_MISSES: u8 = 4;

/// The [`ReplyStamp`] a worker writes its value replies from: made at the
/// first value reply, made again from the latest one after
/// [`STAMP_MISSES`] value replies in a row did not fit it.
#[derive(Debug, Default)]
pub(crate) struct ReplyStamper {
    stamp: Option<ReplyStamp>,
    misses: u8,
}

impl ReplyStamper {
    /// The stamp to write `reply` from, or `None`: encode it in full.
    pub(crate) fn stamp_for(
        &mut self,
        encoder: &mut Encoder,
        reply: &PushTaskReply,
    ) -> Option<&ReplyStamp> {
        if self.stamp.as_ref().is_some_and(|s| s.fits(reply)) {
            self.misses = 0;
            return self.stamp.as_ref();
        }
        // Only value replies can have a stamp; others do not count.
        inline_return(reply)?;
        self.misses = self.misses.saturating_add(1);
        if self.stamp.is_some() && self.misses < STAMP_MISSES {
            return None;
        }
        self.misses = 0;
        self.stamp = ReplyStamp::new(encoder, reply);
        self.stamp.as_ref()
    }
}

/// A message whose validated encodings a receiver keeps ([`Known`]): where
/// an archived message's per-call fields lie.
pub(crate) trait Shaped: Message {
    /// Pushes onto `varying` the byte ranges (`[start, end)` offsets in
    /// `b`, the bytes `a` was accessed from) of `a`'s per-call fields whose
    /// every bit pattern is valid (ids, little-endian integers, `u8` data),
    /// and onto `bools` the offsets of per-call `bool`s (valid as 0 or 1).
    /// `false` when this message has no shape worth keeping.
    fn varying(
        b: &[u8],
        a: &Self::Archived,
        varying: &mut Vec<(usize, usize)>,
        bools: &mut Vec<usize>,
    ) -> bool;
}

impl Shaped for PushTaskRequest {
    /// An actor task's per-call fields ([`Offsets::spans`]) and its inline
    /// arguments' data.
    fn varying(
        b: &[u8],
        a: &ArchivedPushTaskRequest,
        varying: &mut Vec<(usize, usize)>,
        bools: &mut Vec<usize>,
    ) -> bool {
        let Some(at) = Offsets::of(b, a) else {
            return false;
        };
        for (o, n) in at.spans() {
            if o == at.skip_execution {
                bools.push(o);
            } else {
                varying.push((o, o + n));
            }
        }
        for arg in a.task_spec.args.iter() {
            if let ArchivedTaskArg::Value(v) = arg {
                let o = offset_of(b, v.data.as_slice());
                varying.push((o, o + v.data.len()));
            }
        }
        true
    }
}

impl Shaped for PushTaskReply {
    /// The task id, and per return object its id, size and inline data.
    fn varying(
        b: &[u8],
        a: &ArchivedPushTaskReply,
        varying: &mut Vec<(usize, usize)>,
        _bools: &mut Vec<usize>,
    ) -> bool {
        use crate::ids::{ObjectId, TaskId};
        let o = offset_of(b, &a.task_id);
        varying.push((o, o + TaskId::SIZE));
        for r in a.return_objects.iter() {
            let o = offset_of(b, &r.object_id);
            varying.push((o, o + ObjectId::SIZE));
            let o = offset_of(b, &r.size);
            varying.push((o, o + 8));
            if let ArchivedReturnValue::Inline(d) = &r.value {
                let o = offset_of(b, d.data.as_slice());
                varying.push((o, o + d.data.len()));
            }
        }
        true
    }
}

/// A validated message a receiver keeps to recognise later messages of the
/// same shape without validating them again (see the module docs). Its
/// buffers are reused by [`Known::refill`].
#[derive(Debug)]
pub(crate) struct Known<M> {
    bytes: AlignedBytes,
    /// Byte ranges `[start, end)` where a message of this shape may differ,
    /// sorted; each `bool` in `bools` is one of them, of length 1.
    varying: Vec<(usize, usize)>,
    /// Offsets of per-call `bool`s (must be 0 or 1).
    bools: Vec<usize>,
    /// As long as `bytes`: `0xff` where a message of this shape must equal
    /// `bytes`, `0` inside `varying` (compared a word at a time, no branch
    /// per range).
    mask: Vec<u8>,
    /// A value the receiver derived from this shape's fixed bytes (the
    /// worker: the registry entry of the request's function descriptor),
    /// cleared whenever the shape is refilled ([`KnownShapes::access_memo`]).
    memo: Option<u32>,
    /// Total length of the `varying` ranges: a delta's (bytes).
    delta_len: usize,
    _message: PhantomData<fn() -> M>,
}

/// Largest message kept as a shape (64 KiB): a kept shape costs twice its
/// length (its bytes and its mask) for as long as the connection lives, up
/// to `KNOWN_SHAPES` + `SHAPE_SLOTS` of them per connection, so a peer
/// sending large messages of ever new lengths must not make the receiver
/// keep megabytes per idle connection (the attack of 2026-12-03 held
/// ≈ 134 MB per TCP connection with 15 MB frames). A larger message is
/// validated in full each time (its bytecheck does not grow with its
/// argument bytes) and sent in full.
pub(crate) const MAX_SHAPE_BYTES: usize = 64 << 10;

/// Fills `varying` with the byte ranges of `a` (the message `access`
/// validated from `b`) in which a message of its shape may differ from it
/// — [`Shaped::varying`]'s, with each per-call `bool` (listed in `bools`)
/// as a range of its own — sorted, each checked to lie in `b`, touching
/// ones joined ([`join_touching`]). `false`
/// (and both emptied) when the message has no shape worth keeping, is
/// longer than [`MAX_SHAPE_BYTES`], or a range lies outside `b`. The receiver keeping a shape and the sender
/// writing deltas of it ([`RequestStamp`]) both call this on the same
/// bytes, so they agree on the ranges and their order.
fn shape_ranges<M: Shaped>(
    b: &[u8],
    a: &M::Archived,
    varying: &mut Vec<(usize, usize)>,
    bools: &mut Vec<usize>,
) -> bool {
    varying.clear();
    bools.clear();
    let kept = b.len() <= MAX_SHAPE_BYTES && M::varying(b, a, varying, bools) && {
        varying.extend(bools.iter().map(|&o| (o, o + 1)));
        varying.sort_unstable();
        varying
            .iter()
            .all(|&(start, end)| start <= end && end <= b.len())
    };
    if kept {
        join_touching(varying);
    }
    if !kept {
        varying.clear();
        bools.clear();
    }
    kept
}

/// Joins the ranges of sorted `ranges` that touch or overlap into one
/// (their union: the same bytes). A request's per-call fields lie mostly
/// side by side (its task id, parent task id and counter; an id and the
/// next), so its 15 ranges become 8, and a delta is written and expanded
/// with 8 copies, not 15 (`memcpy` calls, each a call for a length known
/// only at run time). No byte outside a range is added: a delta still
/// writes only per-call fields (`Known::expand_into`'s safety argument).
fn join_touching(ranges: &mut Vec<(usize, usize)>) {
    ranges.dedup_by(|next, joined| {
        let touches = next.0 <= joined.1;
        if touches {
            joined.1 = joined.1.max(next.1);
        }
        touches
    });
}

impl<M> Default for Known<M> {
    fn default() -> Self {
        Self {
            bytes: AlignedBytes::new(),
            varying: Vec::new(),
            bools: Vec::new(),
            mask: Vec::new(),
            memo: None,
            delta_len: 0,
            _message: PhantomData,
        }
    }
}

/// A request shape (see [`Known`]).
#[cfg(test)]
type KnownRequest = Known<PushTaskRequest>;

impl<M: Shaped> Known<M> {
    /// Keeps `bytes`, which [`access`] validated as `msg` (the archived view
    /// of these very bytes), reusing this value's buffers. `false` (and
    /// nothing kept) when the message has no shape worth keeping.
    pub(crate) fn refill(&mut self, bytes: &[u8], msg: &M::Archived) -> bool {
        self.clear();
        if !shape_ranges::<M>(bytes, msg, &mut self.varying, &mut self.bools) {
            return false;
        }
        self.mask.resize(bytes.len(), 0xff);
        for &(start, end) in &self.varying {
            // In bounds: `shape_ranges` checked.
            if let Some(m) = self.mask.get_mut(start..end) {
                m.fill(0);
            }
            self.delta_len += end - start;
        }
        self.bytes.extend_from_slice(bytes);
        true
    }

    /// Keeps no shape (nothing is recognised or expanded).
    fn clear(&mut self) {
        self.memo = None;
        self.bytes.clear();
        self.varying.clear();
        self.bools.clear();
        self.mask.clear();
        self.delta_len = 0;
    }

    /// Rebuilds a message of this shape from `delta` (its varying ranges'
    /// bytes, in order: [`RequestStamp::write_delta`]) into `out`: this
    /// shape's bytes with the ranges written over. Valid as the kept
    /// message was when `delta` is exactly as long as the ranges and every
    /// per-call `bool` in it is 0 or 1 (as [`Known::recognise`]); else
    /// [`DecodeError::Invalid`] naming what is wrong (a peer that sent it
    /// broke the protocol).
    pub(crate) fn expand_into<'a>(
        &self,
        delta: &[u8],
        out: &'a mut AlignedBytes,
    ) -> Result<(&'a [u8], &'a M::Archived), DecodeError> {
        let known = self.bytes.as_slice();
        if known.is_empty() {
            return Err(DecodeError::Invalid(
                "a delta for a shape slot that holds no shape".into(),
            ));
        }
        if delta.len() != self.delta_len {
            return Err(DecodeError::Invalid(format!(
                "a delta of {} bytes for a shape whose varying bytes are {}",
                delta.len(),
                self.delta_len
            )));
        }
        out.clear();
        out.extend_from_slice(known);
        let mut pos = 0;
        for &(start, end) in &self.varying {
            let len = end - start;
            // In bounds: the ranges lie in `known` (`shape_ranges`), and
            // their lengths add up to `delta`'s (checked above).
            if let (Some(o), Some(d)) = (out.get_mut(start..end), delta.get(pos..pos + len)) {
                o.copy_from_slice(d);
            }
            pos += len;
        }
        let out: &'a AlignedBytes = out;
        let bytes = out.as_slice();
        if self
            .bools
            .iter()
            .any(|&o| bytes.get(o).is_none_or(|&b| b > 1))
        {
            return Err(DecodeError::Invalid(
                "a delta with a bool that is neither 0 nor 1".into(),
            ));
        }
        // SAFETY: `bytes` is a copy of `known` (so as long, and 16-byte
        // aligned: an `AlignedBytes`) with only the `varying` ranges
        // overwritten; `known` is a copy of bytes `access` validated as an
        // `M`, so every relative pointer, length, tag and string of `bytes`
        // is the validated one. Inside `varying` lie only per-call fields
        // whose every value is valid (`Shaped::varying`: byte arrays,
        // little-endian integers, `u8` data) and `bool`s, checked above to
        // be 0 or 1: `bytes` is a valid archived `M` (the argument of
        // `Known::recognise`). `out` is this process's own buffer, borrowed
        // for the result's lifetime.
        Ok((bytes, unsafe { access_unchecked::<M>(bytes) }))
    }

    /// `bytes` as a message, when they are as long as the kept one, equal to
    /// it outside its varying ranges, and every per-call `bool` is 0 or 1:
    /// then they are valid as the kept one was (the rest is an
    /// [`access`]-validated encoding, and the varying ranges hold values
    /// every bit pattern of which is valid). `None` otherwise: validate in
    /// full.
    pub(crate) fn recognise<'a>(&self, bytes: &'a [u8]) -> Option<&'a M::Archived> {
        let known = self.bytes.as_slice();
        if known.is_empty()
            || bytes.len() != known.len()
            || bytes.as_ptr() as usize % MESSAGE_ALIGN != 0
            || self
                .bools
                .iter()
                .any(|&o| bytes.get(o).is_none_or(|&b| b > 1))
        {
            return None;
        }
        if !equal_where_masked(bytes, known, &self.mask) {
            return None;
        }
        // SAFETY: `bytes` is as long as `known`, 16-byte aligned, and equal
        // to it outside `varying` (wherever `mask` is set); `known` is a copy of bytes `access`
        // validated as an `M`, so every relative pointer, length, tag and
        // string of `bytes` is the validated one. Inside `varying` lie only
        // per-call fields whose every value is valid (`Shaped::varying`:
        // byte arrays, little-endian integers, `u8` data) and `bool`s,
        // checked above to be 0 or 1: `bytes` is a valid archived `M`. The
        // caller holds `bytes` borrowed for the result's lifetime (a private
        // snapshot no other process writes).
        Some(unsafe { access_unchecked::<M>(bytes) })
    }
}

/// Whether `a` and `b` are equal at every byte where `mask` is `0xff`
/// (`mask` is `0` elsewhere). `false` unless all three are as long.
fn equal_where_masked(a: &[u8], b: &[u8], mask: &[u8]) -> bool {
    if a.len() != b.len() || a.len() != mask.len() {
        return false;
    }
    let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
    let (a8, b8, m8) = (a.chunks_exact(8), b.chunks_exact(8), mask.chunks_exact(8));
    let tail = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .zip(m8.remainder())
        .fold(0u8, |d, ((a, b), m)| d | ((a ^ b) & m));
    // One OR-reduction, no early exit: a short loop the compiler vectorises.
    let words = a8
        .zip(b8)
        .zip(m8)
        .fold(0u64, |d, ((a, b), m)| d | ((word(a) ^ word(b)) & word(m)));
    words == 0 && tail == 0
}

/// The shapes one connection sent last ([`Known`]s, at most
/// [`KNOWN_SHAPES`], replaced in turn, their buffers reused: a peer
/// alternating a few shapes is recognised, one whose every message has
/// another shape is validated in full each time).
#[derive(Debug)]
pub(crate) struct KnownShapes<M> {
    shapes: Vec<Known<M>>,
    next: usize,
    /// The shapes the peer asked to be kept (`transport::FrameTag::Shape`), by
    /// slot; grown to a slot when it is first used.
    slots: Vec<Known<M>>,
}

impl<M> Default for KnownShapes<M> {
    fn default() -> Self {
        Self {
            shapes: Vec::new(),
            next: 0,
            slots: Vec::new(),
        }
    }
}

/// Shapes kept per connection.
pub(crate) const KNOWN_SHAPES: usize = 4;

impl<M: Shaped> KnownShapes<M> {
    /// `bytes` (a private snapshot) as an `M`: recognised as one of the
    /// known shapes, else validated in full ([`access`]) and kept as a
    /// known shape (if it has one).
    pub(crate) fn access<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<&'a M::Archived, super::DecodeError> {
        self.access_memo(bytes).map(|(m, _)| m)
    }

    /// The kept shape `bytes` are of (its index) and the message, if any.
    #[inline]
    fn recognised<'a>(&self, bytes: &'a [u8]) -> Option<(usize, &'a M::Archived)> {
        self.shapes
            .iter()
            .enumerate()
            .find_map(|(i, k)| k.recognise(bytes).map(|m| (i, m)))
    }

    /// [`KnownShapes::access`], and the memo of the shape `bytes` have
    /// (`None` when they are not kept as a shape): a value the receiver
    /// derives from a message's fixed bytes — those outside the per-call
    /// fields, equal for every message of the shape — once per shape
    /// instead of once per message. Empty after the shape is (re)filled.
    pub(crate) fn access_memo<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<(&'a M::Archived, Option<&mut Option<u32>>), super::DecodeError> {
        if let Some((i, m)) = self.recognised(bytes) {
            return Ok((m, Some(&mut self.shapes[i].memo)));
        }
        let m = access::<M>(bytes)?;
        let slot = if self.shapes.len() < KNOWN_SHAPES {
            let mut k = Known::default();
            if k.refill(bytes, m) {
                self.shapes.push(k);
                self.shapes.last_mut()
            } else {
                None
            }
        } else {
            let i = self.next % KNOWN_SHAPES;
            if self.shapes[i].refill(bytes, m) {
                self.next = i + 1;
                Some(&mut self.shapes[i])
            } else {
                None
            }
        };
        Ok((m, slot.map(|k| &mut k.memo)))
    }
}

/// A received message's bytes, the message, and the memo of its shape
/// (`None` when it is kept as none): what [`KnownShapes`] reads a frame as.
pub(crate) type ShapeMessage<'a, 'k, M> = (
    &'a [u8],
    &'a <M as rkyv::Archive>::Archived,
    Option<&'k mut Option<u32>>,
);

impl<M: Shaped> KnownShapes<M> {
    /// `bytes` (a private snapshot of a `transport::FrameTag::Shape(slot)` frame)
    /// validated in full as an `M`, and kept as shape `slot` (whatever it
    /// held is replaced; it holds nothing if `bytes` have no shape): the
    /// bytes, the message and the slot's memo (empty: the shape is new). A later
    /// [`KnownShapes::expand`] of the slot rebuilds messages of this shape.
    ///
    /// # Errors
    /// [`DecodeError`] when `bytes` are not a valid `M` (the slot is
    /// emptied), or `slot` is not below [`SHAPE_SLOTS`].
    pub(crate) fn keep<'a>(
        &mut self,
        slot: u8,
        bytes: &'a [u8],
    ) -> Result<ShapeMessage<'a, '_, M>, DecodeError> {
        let k = self.slot(slot)?;
        // Emptied first: a shape that fails validation leaves none.
        k.clear();
        let m = access::<M>(bytes)?;
        let kept = k.refill(bytes, m);
        Ok((bytes, m, kept.then_some(&mut k.memo)))
    }

    /// [`KnownShapes::access_message`] for `bytes` that passed it (or
    /// [`KnownShapes::keep`]) before and have not changed since — a private
    /// copy kept while its request waits for its arguments: no validation
    /// pass again (a request naming 50,000 objects took tens of
    /// milliseconds to validate, at every look: the attack on `5b9f7d6`),
    /// and no shape kept.
    ///
    /// # Safety
    /// `bytes` passed validation as an `M` (by this type's
    /// `access_message` or `keep`) and have not been written since.
    pub(crate) unsafe fn access_validated<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> ShapeMessage<'a, '_, M> {
        if let Some((i, m)) = self.recognised(bytes) {
            return (bytes, m, Some(&mut self.shapes[i].memo));
        }
        // SAFETY: the caller's contract — validated as an `M` before, not
        // written since.
        (bytes, unsafe { access_unchecked::<M>(bytes) }, None)
    }

    /// [`KnownShapes::access_memo`] in the form of [`KnownShapes::keep`].
    pub(crate) fn access_message<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<ShapeMessage<'a, '_, M>, DecodeError> {
        let (m, memo) = self.access_memo(bytes)?;
        Ok((bytes, m, memo))
    }

    /// The message a `transport::FrameTag::Delta(slot)` frame's `delta` (a
    /// private snapshot) stands for, rebuilt into `out`
    /// ([`Known::expand_into`]): its bytes (in `out`), the message and the
    /// slot's memo.
    ///
    /// # Errors
    /// [`DecodeError::Invalid`] when the slot holds no shape, `delta` does
    /// not fit it, or `slot` is not below [`SHAPE_SLOTS`].
    pub(crate) fn expand<'a>(
        &mut self,
        slot: u8,
        delta: &[u8],
        out: &'a mut AlignedBytes,
    ) -> Result<ShapeMessage<'a, '_, M>, DecodeError> {
        let k = self.slot(slot)?;
        let (bytes, m) = k.expand_into(delta, out)?;
        Ok((bytes, m, Some(&mut k.memo)))
    }

    /// Shape slot `slot`, grown to it if needed.
    fn slot(&mut self, slot: u8) -> Result<&mut Known<M>, DecodeError> {
        let i = usize::from(slot);
        if slot >= SHAPE_SLOTS {
            return Err(DecodeError::Invalid(format!(
                "shape slot {slot} is not below {SHAPE_SLOTS}"
            )));
        }
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, Known::default);
        }
        Ok(&mut self.slots[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn masked_equality_is_bytewise(
            pairs in proptest::collection::vec((0u8..4, 0u8..2, proptest::bool::ANY), 0..100),
        ) {
            // a, b, mask built so that differences fall both inside and
            // outside the mask, at every offset of a word and in the tail.
            let a: Vec<u8> = pairs.iter().map(|p| p.0).collect();
            let b: Vec<u8> = pairs.iter().map(|p| p.0 ^ p.1).collect();
            let mask: Vec<u8> = pairs.iter().map(|p| if p.2 { 0xff } else { 0 }).collect();
            let naive = pairs.iter().all(|p| !p.2 || p.1 == 0);
            proptest::prop_assert_eq!(equal_where_masked(&a, &b, &mask), naive);
            proptest::prop_assert!(a.is_empty() || !equal_where_masked(&a, &b, &mask[1..]));
        }
    }
    use crate::ids::{ActorId, JobId, ObjectId, TaskId, WorkerId};
    use crate::spec::{ActorTaskTarget, FunctionDescriptor, TaskSpecBuilder};

    fn request(args: Vec<TaskArg>) -> PushTaskRequest {
        let job = JobId::from_int(3);
        let actor = ActorId::of(job, TaskId::for_driver_task(job), 1);
        let spec = TaskSpecBuilder::new(FunctionDescriptor::rust("m", "C", "f"))
            .job_id(job)
            .parent(TaskId::for_driver_task(job), 7)
            .args(args)
            .num_returns(1)
            .build_actor_task(ActorTaskTarget::first(actor));
        PushTaskRequest {
            intended_worker_id: WorkerId::from_random(),
            task_spec: spec,
            sequence_number: 0,
            client_processed_up_to: -1,
            resource_mapping: Vec::new(),
        }
    }

    /// Touching and overlapping ranges are joined into their union; apart
    /// ones (a byte between) stay apart, so no byte outside a per-call
    /// field joins a delta.
    #[test]
    fn touching_ranges_are_joined_and_apart_ones_kept() {
        let mut r = vec![
            (0, 8),
            (8, 8),
            (8, 20),
            (21, 30),
            (25, 28),
            (29, 40),
            (41, 42),
        ];
        join_touching(&mut r);
        assert_eq!(r, vec![(0, 20), (21, 40), (41, 42)]);
        let mut empty = Vec::new();
        join_touching(&mut empty);
        assert!(empty.is_empty());
        // A request's: fewer ranges than fields (15 before), none touching
        // another (the delta round trips are the tests below).
        let mut enc = Encoder::new();
        let stamp = RequestStamp::new(&mut enc, &request(args(5, b""))).unwrap();
        assert!(
            stamp.delta.windows(2).all(|w| w[0].1 < w[1].0),
            "{:?}",
            stamp.delta
        );
        assert!(stamp.delta.len() < 12, "{:?}", stamp.delta);
    }

    fn args(x: u64, meta: &[u8]) -> Vec<TaskArg> {
        vec![
            TaskArg::value(x.to_le_bytes().to_vec(), meta.to_vec()),
            TaskArg::value(vec![x as u8; 33], Vec::new()),
        ]
    }

    /// A shape's memo stays with messages of that shape (whatever their
    /// per-call fields hold), is empty for a message of another shape (here:
    /// another function name of the same length) and after its slot is
    /// refilled.
    #[test]
    fn a_shape_memo_follows_its_shape_and_is_cleared_on_refill() {
        let mut enc = Encoder::new();
        let named = |f: &str, x: u64| {
            let mut r = request(args(x, b"fmt"));
            r.task_spec.function_descriptor = FunctionDescriptor::rust("m", "C", f);
            r.task_spec.task_id = TaskId::for_driver_task(JobId::from_int(x as u32));
            r.sequence_number = x as i64;
            r
        };
        let bytes = |enc: &mut Encoder, r: &PushTaskRequest| {
            let v = enc.to_vec(r).unwrap();
            let mut a = AlignedBytes::new();
            a.extend_from_slice(&v);
            a
        };
        let mut known = KnownShapes::<PushTaskRequest>::default();
        let f1 = bytes(&mut enc, &named("f1", 1));
        let (m, memo) = known.access_memo(f1.as_slice()).unwrap();
        assert_eq!(m.sequence_number.to_native(), 1);
        let memo = memo.expect("kept as a shape");
        assert_eq!(*memo, None);
        *memo = Some(11);
        // Same shape, other per-call fields: the memo is there.
        let f1b = bytes(&mut enc, &named("f1", 2));
        let (m, memo) = known.access_memo(f1b.as_slice()).unwrap();
        assert_eq!(m.sequence_number.to_native(), 2);
        assert_eq!(memo.map(|m| *m), Some(Some(11)));
        // Another name of the same length: another shape, no memo.
        let f2 = bytes(&mut enc, &named("f2", 3));
        assert_eq!(f2.len(), f1.len());
        let (m, memo) = known.access_memo(f2.as_slice()).unwrap();
        assert_eq!(m.sequence_number.to_native(), 3);
        let memo = memo.expect("kept as a shape");
        assert_eq!(*memo, None);
        *memo = Some(22);
        // Three more shapes: f1's slot (the first) is refilled by f5.
        for (i, f) in ["f3", "f4", "f5"].into_iter().enumerate() {
            let b = bytes(&mut enc, &named(f, 10 + i as u64));
            let (_, memo) = known.access_memo(b.as_slice()).unwrap();
            assert_eq!(memo.map(|m| *m), Some(None), "{f}");
        }
        let (_, memo) = known.access_memo(f2.as_slice()).unwrap();
        assert_eq!(memo.map(|m| *m), Some(Some(22)));
        // f1 comes back into a refilled slot: validated again, memo empty.
        let (_, memo) = known.access_memo(f1.as_slice()).unwrap();
        assert_eq!(memo.map(|m| *m), Some(None));
    }

    /// Every stamped request equals its full encoding, whatever its
    /// per-call fields hold; other shapes do not fit.
    #[test]
    fn stamped_requests_equal_their_full_encoding() {
        let mut enc = Encoder::new();
        let first = request(args(1, b"fmt"));
        let mut stamp = RequestStamp::new(&mut enc, &first).expect("an actor task");
        let job = first.task_spec.job_id;
        let mut buf = vec![0u8; stamp.len() + 64];
        // The receiver's side of deltas: the first request kept as shape 2.
        let mut known = KnownShapes::<PushTaskRequest>::default();
        let n = stamp.write(&first, &mut buf).unwrap();
        let kept = aligned(&buf[..n]);
        assert!(known.keep(2, &kept).unwrap().2.is_some(), "kept as a shape");
        let delta_len = stamp.delta_len().expect("deltas of an actor task");
        assert!(delta_len < n / 2, "a delta of {delta_len} bytes for {n}");
        let (mut delta, mut out) = (vec![0u8; delta_len + 16], AlignedBytes::new());
        for i in 0..200u64 {
            let mut req = request(Vec::new());
            req.task_spec = first.task_spec.clone();
            let actor = ActorId::of(job, TaskId::for_driver_task(job), i % 5);
            let mut target = ActorTaskTarget::first(actor);
            target.actor_counter = i * 7919;
            target.previous_cursor = ObjectId::from_index(TaskId::for_driver_task(job), i as u32);
            target.caller_starts_at = i / 3;
            TaskSpecBuilder::rebuild_actor_task(
                &mut req.task_spec,
                job,
                TaskId::for_driver_task(JobId::from_int(i as u32)),
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                args(i.wrapping_mul(31), b"fmt"),
                (i as i32) - 100,
                target,
            );
            req.intended_worker_id = WorkerId::from_random();
            req.sequence_number = i as i64 * 3 - 1;
            req.client_processed_up_to = i as i64 - 2;
            req.task_spec.skip_execution = i % 2 == 0;
            assert!(stamp.fits(&req));
            let n = stamp.write(&req, &mut buf).unwrap();
            let full = enc.to_vec(&req).unwrap();
            assert_eq!(&buf[..n], full.as_slice(), "call {i}");
            // As a delta of the kept shape, rebuilt by the receiver.
            let d = stamp.write_delta(&req, &mut delta).unwrap();
            assert_eq!(d, delta_len);
            let (bytes, m, memo) = known.expand(2, &delta[..d], &mut out).unwrap();
            assert_eq!(bytes, full.as_slice(), "delta of call {i}");
            assert_eq!(m.sequence_number, req.sequence_number);
            assert!(memo.is_some());
        }
        assert!(matches!(
            stamp.write_delta(&first, &mut delta[..delta_len - 1]),
            Err(EncodeError::RegionTooSmall { .. })
        ));
        assert!(matches!(
            stamp.write(&first, &mut buf[..8]),
            Err(EncodeError::RegionTooSmall { .. })
        ));
        // Other shapes are encoded in full.
        let mut other = first.clone();
        other.task_spec.args = vec![TaskArg::value(vec![1u8; 9], Vec::new())];
        assert!(!stamp.fits(&other));
        other.task_spec.args = args(1, b"fmu");
        assert!(!stamp.fits(&other));
        other.task_spec.args = Vec::new();
        assert!(!stamp.fits(&other));
    }

    /// 16-byte aligned copy of `b` (as a private snapshot is).
    fn aligned(b: &[u8]) -> AlignedBytes {
        let mut a = AlignedBytes::new();
        a.extend_from_slice(b);
        a
    }

    /// A delta the kept shape cannot stand for is refused with an error,
    /// never a panic, and leaves the slot as it was: none kept in the slot,
    /// a slot out of range, a delta one byte short or long, a per-call
    /// `bool` other than 0 or 1; a slot refilled with a message that has no
    /// shape (a normal task) or fails validation keeps none.
    #[test]
    fn deltas_that_do_not_fit_their_shape_are_refused() {
        let mut enc = Encoder::new();
        let first = request(args(5, b""));
        let mut stamp = RequestStamp::new(&mut enc, &first).unwrap();
        let full = aligned(enc.to_vec(&first).unwrap().as_slice());
        let delta_len = stamp.delta_len().unwrap();
        let mut delta = vec![0u8; delta_len];
        stamp.write_delta(&first, &mut delta).unwrap();
        let mut known = KnownShapes::<PushTaskRequest>::default();
        let mut out = AlignedBytes::new();
        let refused = |known: &mut KnownShapes<PushTaskRequest>, slot, d: &[u8]| {
            let mut out = AlignedBytes::new();
            match known.expand(slot, d, &mut out) {
                Err(DecodeError::Invalid(why)) => why,
                other => panic!("expected a refusal, got {:?}", other.map(|r| r.0.len())),
            }
        };
        assert!(refused(&mut known, 0, &delta).contains("holds no shape"));
        assert!(refused(&mut known, SHAPE_SLOTS, &delta).contains("not below"));
        assert!(known.keep(SHAPE_SLOTS, &full).is_err());
        known.keep(0, &full).unwrap();
        assert!(refused(&mut known, 0, &delta[1..]).contains("varying bytes are"));
        let mut long = delta.clone();
        long.push(0);
        assert!(refused(&mut known, 0, &long).contains("varying bytes are"));
        // Every byte that, set to 2, makes a bool invalid: exactly one (the
        // spec's `skip_execution`), wherever the delta puts it.
        let mut bool_bytes = 0;
        for i in 0..delta_len {
            let mut d = delta.clone();
            d[i] = 2;
            if known.expand(0, &d, &mut out).is_err() {
                bool_bytes += 1;
                assert!(refused(&mut known, 0, &d).contains("bool"));
            }
        }
        assert_eq!(bool_bytes, 1);
        // The slot still rebuilds a good delta.
        assert_eq!(
            known.expand(0, &delta, &mut out).unwrap().0,
            full.as_slice()
        );
        // Refilled with a normal task (no shape), or with garbage: nothing kept.
        let mut normal = first.clone();
        normal.task_spec.actor_task_spec = None;
        let normal = aligned(enc.to_vec(&normal).unwrap().as_slice());
        assert!(known.keep(0, &normal).unwrap().2.is_none());
        assert!(refused(&mut known, 0, &delta).contains("holds no shape"));
        known.keep(1, &full).unwrap();
        assert!(known.keep(1, &aligned(&[0xab; 64])).is_err());
        assert!(refused(&mut known, 1, &delta).contains("holds no shape"));
    }

    /// A message longer than `MAX_SHAPE_BYTES` is kept as no shape, on
    /// either side: the receiver neither recognises nor keeps it, the
    /// sender's stamp makes no deltas of it (so the two agree).
    #[test]
    fn large_messages_are_kept_as_no_shape() {
        let mut enc = Encoder::new();
        for (len, kept) in [(MAX_SHAPE_BYTES - 1024, true), (MAX_SHAPE_BYTES, false)] {
            let req = request(vec![TaskArg::value(vec![7u8; len], Vec::new())]);
            let full = aligned(enc.to_vec(&req).unwrap().as_slice());
            let stamp = RequestStamp::new(&mut enc, &req).unwrap();
            assert_eq!(stamp.delta_len().is_some(), kept, "{} bytes", full.len());
            let mut known = KnownShapes::<PushTaskRequest>::default();
            assert_eq!(known.keep(0, &full).unwrap().2.is_some(), kept);
            assert_eq!(known.access_memo(&full).unwrap().1.is_some(), kept);
            // Not kept: nothing of it stays but the (empty) slot.
            if !kept {
                assert!(known
                    .shapes
                    .iter()
                    .chain(&known.slots)
                    .all(|k| k.bytes.is_empty() && k.mask.is_empty()));
            }
        }
    }

    proptest::proptest! {
        /// Whatever bytes a delta of the right length holds, the request
        /// rebuilt from it passes full validation (or is refused for a
        /// `bool`): a hostile caller's delta cannot make the worker read an
        /// invalid archive.
        #[test]
        fn any_delta_of_a_kept_shape_rebuilds_a_valid_request(
            seed in proptest::collection::vec(proptest::num::u8::ANY, 1..64),
            meta in proptest::collection::vec(proptest::num::u8::ANY, 0..5),
        ) {
            let mut enc = Encoder::new();
            let first = request(args(seed[0] as u64, &meta));
            let stamp = RequestStamp::new(&mut enc, &first).unwrap();
            let full = aligned(enc.to_vec(&first).unwrap().as_slice());
            let mut known = KnownShapes::<PushTaskRequest>::default();
            known.keep(3, &full).unwrap();
            let len = stamp.delta_len().unwrap();
            let delta: Vec<u8> = (0..len).map(|i| seed[i % seed.len()] ^ (i as u8)).collect();
            let mut out = AlignedBytes::new();
            match known.expand(3, &delta, &mut out) {
                Ok((bytes, _, _)) => {
                    proptest::prop_assert!(access::<PushTaskRequest>(bytes).is_ok());
                }
                Err(DecodeError::Invalid(why)) => proptest::prop_assert!(why.contains("bool")),
                Err(e) => proptest::prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    /// A caller recognises replies equal to a validated one outside the
    /// task id and the returns' ids, sizes and inline data, and nothing else.
    #[test]
    fn stamped_replies_equal_their_full_encoding() {
        use crate::spec::{InlineData, ReturnObject, ReturnValue, RpcStatus};
        let job = JobId::from_int(9);
        let reply = |i: u64, len: usize, meta: &[u8]| PushTaskReply {
            task_id: TaskId::for_driver_task(JobId::from_int(i as u32)),
            return_objects: vec![ReturnObject {
                object_id: ObjectId::from_index(TaskId::for_driver_task(job), i as u32),
                value: ReturnValue::Inline(InlineData {
                    data: (0..len).map(|b| (b as u64 ^ i) as u8).collect(),
                    metadata: meta.to_vec(),
                }),
                size: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                nested_inlined_refs: Vec::new(),
            }],
            borrowed_refs: Vec::new(),
            is_application_level_error: false,
            worker_exiting: false,
            task_stolen: false,
            status: RpcStatus::ok(),
        };
        let mut enc = Encoder::new();
        for len in [0usize, 1, 8, 15, 16, 17, 100] {
            let stamp = ReplyStamp::new(&mut enc, &reply(1, len, b"raw")).expect("a value reply");
            let mut buf = vec![0u8; stamp.len() + 32];
            for i in 0..100u64 {
                let r = reply(i, len, b"raw");
                assert!(stamp.fits(&r));
                let n = stamp.write(&r, &mut buf).unwrap();
                assert_eq!(
                    &buf[..n],
                    enc.to_vec(&r).unwrap().as_slice(),
                    "len {len}, reply {i}"
                );
            }
            // Anything else in the reply does not fit.
            assert!(!stamp.fits(&reply(2, len + 1, b"raw")));
            assert!(!stamp.fits(&reply(2, len, b"pickle")));
            let mut app = reply(2, len, b"raw");
            app.is_application_level_error = true;
            assert!(!stamp.fits(&app));
            let mut status = reply(2, len, b"raw");
            status.status.message = "x".into();
            assert!(!stamp.fits(&status));
            let mut two = reply(2, len, b"raw");
            two.return_objects.push(two.return_objects[0].clone());
            assert!(!stamp.fits(&two));
            let mut store = reply(2, len, b"raw");
            store.return_objects[0].value = ReturnValue::InStore(String::new());
            assert!(!stamp.fits(&store));
            assert!(ReplyStamp::new(&mut enc, &store).is_none());
            let short = &mut buf[..stamp.len() - 1];
            assert!(matches!(
                stamp.write(&reply(3, len, b"raw"), short),
                Err(EncodeError::RegionTooSmall { .. })
            ));
        }
    }

    #[test]
    fn known_replies_recognise_their_shape_and_nothing_else() {
        use crate::spec::{InlineData, ReturnObject, ReturnValue, RpcStatus};
        let job = JobId::from_int(5);
        let reply = |x: u8| PushTaskReply {
            task_id: TaskId::for_driver_task(JobId::from_int(u32::from(x))),
            return_objects: vec![ReturnObject {
                object_id: ObjectId::from_index(TaskId::for_driver_task(job), u32::from(x)),
                value: ReturnValue::Inline(InlineData {
                    data: vec![x; 8],
                    metadata: b"raw".to_vec(),
                }),
                size: u64::from(x) * 1000,
                nested_inlined_refs: Vec::new(),
            }],
            borrowed_refs: Vec::new(),
            is_application_level_error: false,
            worker_exiting: false,
            task_stolen: false,
            status: RpcStatus::ok(),
        };
        let mut enc = Encoder::new();
        let bytes = enc.to_vec(&reply(1)).unwrap();
        let mut known = Known::<PushTaskReply>::default();
        assert!(known.refill(&bytes, access::<PushTaskReply>(&bytes).unwrap()));
        let other = enc.to_vec(&reply(200)).unwrap();
        let got = known.recognise(&other).expect("same shape");
        assert_eq!(
            crate::spec::deserialize::<PushTaskReply>(got).unwrap(),
            reply(200)
        );
        let varying = known.varying.clone();
        let inside = |i: usize| varying.iter().any(|&(s, e)| (s..e).contains(&i));
        for i in 0..bytes.len() {
            let mut copy = bytes.clone();
            copy.as_mut_slice()[i] ^= 0xa5;
            if inside(i) {
                assert!(access::<PushTaskReply>(&copy).is_ok(), "byte {i}");
                assert!(known.recognise(&copy).is_some(), "byte {i}");
            } else {
                assert!(known.recognise(&copy).is_none(), "byte {i} changed");
            }
        }
        // Another return length: another shape.
        let mut longer = reply(1);
        if let ReturnValue::Inline(d) = &mut longer.return_objects[0].value {
            d.data.push(0);
        }
        assert!(known.recognise(&enc.to_vec(&longer).unwrap()).is_none());
    }

    /// A receiver recognises requests equal to a validated one outside the
    /// per-call fields, and nothing else: every byte it lets vary can hold
    /// any value in a valid request (but `skip_execution`, 0 or 1), and any
    /// other byte changed is validated in full.
    #[test]
    fn known_requests_recognise_their_shape_and_nothing_else() {
        let mut enc = Encoder::new();
        let first = request(args(1, b"fmt"));
        let bytes = enc.to_vec(&first).unwrap();
        let mut known = KnownRequest::default();
        assert!(known.recognise(&bytes).is_none(), "empty: knows nothing");
        assert!(known.refill(&bytes, access::<PushTaskRequest>(&bytes).unwrap()));
        let got = known.recognise(&bytes).expect("itself");
        assert_eq!(got.task_spec.task_id, first.task_spec.task_id);

        // Each varying byte may hold anything (skip_execution: 0 or 1).
        let varying = known.varying.clone();
        let mut copy = bytes.clone();
        for &(start, end) in &varying {
            for i in start..end {
                if i == known.bools[0] {
                    continue;
                }
                for v in [0u8, 0x7f, 0x80, 0xff] {
                    copy.as_mut_slice()[i] = v;
                    assert!(
                        access::<PushTaskRequest>(&copy).is_ok(),
                        "byte {i} = {v:#x}"
                    );
                    assert!(known.recognise(&copy).is_some(), "byte {i} = {v:#x}");
                }
            }
        }
        let mut copy = bytes.clone();
        copy.as_mut_slice()[known.bools[0]] = 2;
        assert!(known.recognise(&copy).is_none(), "a bool of 2");
        assert!(access::<PushTaskRequest>(&copy).is_err());

        // Any byte outside them changed: not recognised.
        let inside = |i: usize| varying.iter().any(|&(s, e)| (s..e).contains(&i));
        for i in (0..bytes.len()).filter(|&i| !inside(i)) {
            let mut copy = bytes.clone();
            copy.as_mut_slice()[i] ^= 0x5a;
            assert!(known.recognise(&copy).is_none(), "byte {i} changed");
        }
        // Another length, another alignment: not recognised.
        assert!(known.recognise(&bytes[..bytes.len() - 16]).is_none());
        let mut shifted = AlignedBytes::new();
        shifted.extend_from_slice(&[0u8; 8]);
        shifted.extend_from_slice(&bytes);
        assert!(known.recognise(&shifted[8..]).is_none());

        // A stamped request of another call is recognised, and reads as its
        // full validation does.
        let stamp = RequestStamp::new(&mut enc, &first).unwrap();
        let mut next = first.clone();
        next.sequence_number = 41;
        next.task_spec.parent_counter = 99;
        next.task_spec.skip_execution = true;
        next.task_spec.args = args(77, b"fmt");
        let mut out = AlignedBytes::new();
        out.resize(stamp.len(), 0);
        stamp.write(&next, &mut out).unwrap();
        let fast = known.recognise(&out).expect("same shape");
        let full = access::<PushTaskRequest>(&out).unwrap();
        assert_eq!(fast.sequence_number, full.sequence_number);
        assert_eq!(fast.task_spec.parent_counter, 99);
        assert!(fast.task_spec.skip_execution);
        assert_eq!(
            crate::spec::from_bytes::<PushTaskRequest>(&out).unwrap(),
            next
        );
        // Not an actor task: nothing kept.
        let mut normal = first.clone();
        normal.task_spec.actor_task_spec = None;
        let nb = enc.to_vec(&normal).unwrap();
        assert!(!known.refill(&nb, access::<PushTaskRequest>(&nb).unwrap()));
        assert!(known.recognise(&bytes).is_none());
    }
}
