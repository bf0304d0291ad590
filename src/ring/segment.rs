//! Rings placed in shared-memory segments: the safe way to put a ring in a
//! [`Segment`] and to attach to one.
//!
//! [`MappedStorage::from_raw`] is the one `unsafe` door from a mapping to a
//! ring; this module walks through it once, for segments, so that transports,
//! benchmarks, tests and examples do not each repeat the same `unsafe` block.

use std::any::Any;
use std::sync::Arc;

use super::{AttachError, MappedStorage, Ring};
use crate::shm::{kind, AnonSegment, Segment, Session, ShmError};

/// Why a ring segment could not be created or attached.
#[derive(Debug, thiserror::Error)]
pub enum RingSegmentError {
    /// The segment layer refused (name, permissions, header checks, …).
    #[error(transparent)]
    Shm(#[from] ShmError),
    /// The ring layer refused (capacity, region, header checks, …).
    #[error(transparent)]
    Ring(#[from] AttachError),
}

impl MappedStorage {
    /// Ring storage over the payload of `segment`, which stays mapped for as
    /// long as the storage (or any clone of it) lives.
    ///
    /// The segment should be of kind [`kind::RING`] (as
    /// [`create_ring_segment`] makes them and `Segment::open(.., kind::RING)`
    /// checks); the ring's own header is validated when a half attaches.
    pub fn from_segment(segment: Arc<Segment>) -> Result<Self, AttachError> {
        let (ptr, len) = (segment.payload_ptr(), segment.payload_len());
        let keepalive: Arc<dyn Any + Send + Sync> = segment;
        // SAFETY: `ptr`/`len` describe the payload of a live mapping that
        // `keepalive` (the segment) keeps mapped for as long as the storage
        // lives; a mapping is always initialised (zero-filled by the kernel,
        // then written only through rings); peers writing through their own
        // mappings are tolerated by the ring's hostile-memory checks.
        unsafe { MappedStorage::from_raw(ptr, len, keepalive) }
    }
}

impl MappedStorage {
    /// Ring storage over an anonymous sealed segment, which stays mapped for
    /// as long as the storage (or any clone of it) lives.
    pub fn from_anon(segment: Arc<AnonSegment>) -> Result<Self, AttachError> {
        let (ptr, len) = (segment.payload_ptr(), segment.payload_len());
        let keepalive: Arc<dyn Any + Send + Sync> = segment;
        // SAFETY: as in `from_segment`: a live mapping kept by `keepalive`,
        // initialised, sealed against resizing so every page stays backed.
        unsafe { MappedStorage::from_raw(ptr, len, keepalive) }
    }
}

/// Creates an anonymous sealed segment (`tag` names it in `/proc` only)
/// holding an initialised ring of `capacity` bytes, ready to be handed to a
/// peer as a descriptor.
pub fn create_ring_anon(tag: &str, capacity: usize) -> Result<Arc<AnonSegment>, RingSegmentError> {
    let len = MappedStorage::required_len(capacity);
    let seg = Arc::new(AnonSegment::create(tag, len)?);
    let storage = MappedStorage::from_anon(Arc::clone(&seg))?;
    Ring::init(&storage, capacity)?;
    Ok(seg)
}

/// Creates segment `name` in `session` holding a ring of `capacity` bytes,
/// initialises the ring *before* the segment is published (so an opener
/// never sees a half-initialised ring) and returns the published segment.
pub fn create_ring_segment(
    session: &Session,
    name: &str,
    capacity: usize,
) -> Result<Arc<Segment>, RingSegmentError> {
    let len = MappedStorage::required_len(capacity);
    let mut unpublished = Segment::create(session, name, len, kind::RING)?;
    let payload = unpublished.payload_mut();
    // SAFETY: the payload is `payload.len()` bytes of a live, zero-filled
    // mapping owned by `unpublished`, which outlives `tmp` (dropped at the
    // end of this block); nobody else can see it before `publish`.
    let tmp =
        unsafe { MappedStorage::from_raw(payload.as_mut_ptr(), payload.len(), Arc::new(())) }?;
    Ring::init(&tmp, capacity)?;
    drop(tmp);
    Ok(Arc::new(unpublished.publish()))
}
