//! Hostile shared memory: a second mapping of a ring's segment corrupts the
//! header, the indices and frame lengths; the halves must return errors
//! (`Corrupt`, then `Poisoned`), never panic, hang or read out of bounds.
//!
//! The property test at the end is the CI-run counterpart of the cargo-fuzz
//! target `fuzz/fuzz_targets/ring_consumer.rs`: arbitrary bytes over the
//! header and data region, interleaved with producer/consumer operations.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::prelude::*;
use shmwire::ring::{
    AttachError, Consumer, HeapStorage, MappedStorage, Producer, Ring, RingError, RingStorage,
    HEADER_LEN, PADDING_KIND, RING_LAYOUT_VERSION,
};
use shmwire::shm::{kind, Segment, Session};

const CAP: usize = 4096;

struct Fixture {
    _tmp: tempfile::TempDir,
    session: Session,
    /// The creator's mapping, used by the ring halves.
    p: Producer<MappedStorage>,
    c: Consumer<MappedStorage>,
    /// A second, independent mapping of the same segment: the "peer".
    evil: MappedStorage,
}

fn storage_of(seg: impl Into<Arc<Segment>>) -> MappedStorage {
    MappedStorage::from_segment(seg.into()).unwrap()
}

fn fixture(name: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let session = Session::open_in(
        tmp.path().join("root"),
        &format!("h{}-{name}", std::process::id()),
    )
    .unwrap();
    let seg = shmwire::ring::create_ring_segment(&session, "ring", CAP).unwrap();
    let evil = storage_of(Segment::open(&session, "ring", kind::RING).unwrap());
    let mine = storage_of(seg);
    assert_ne!(
        mine.header() as *const _ as usize,
        evil.header() as *const _ as usize,
        "two distinct mappings"
    );
    Fixture {
        _tmp: tmp,
        session,
        p: Ring::attach_producer(mine.clone()).unwrap(),
        c: Ring::attach_consumer(mine).unwrap(),
        evil,
    }
}

impl Fixture {
    fn push(&mut self, len: usize) {
        let mut g = self.p.reserve(len).unwrap();
        g.fill(0xab);
        g.commit_all();
    }

    /// Writes raw bytes into the data region through the second mapping.
    fn poke_data(&self, off: usize, bytes: &[u8]) {
        let base = (self.evil.header() as *const _ as *mut u8).wrapping_add(HEADER_LEN);
        assert!(off + bytes.len() <= CAP);
        // SAFETY: [off, off + len) lies inside the mapped data region
        // (checked above); this is the hostile peer's write.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(off), bytes.len()) };
    }

    fn assert_consumer_corrupt(&mut self) {
        let e = self.c.peek().unwrap_err();
        assert!(matches!(e, RingError::Corrupt { .. }), "got {e:?}");
        self.assert_poisoned();
    }

    fn assert_poisoned(&mut self) {
        assert_eq!(self.c.peek().unwrap_err(), RingError::Poisoned);
        assert!(self.c.is_poisoned());
        assert!(self.p.is_poisoned());
        assert_eq!(
            self.evil.header().meta.0.poisoned.load(Ordering::Relaxed),
            1,
            "poisoned flag visible in the other mapping"
        );
        // New halves refuse a poisoned ring.
        assert_eq!(
            Ring::attach_consumer(self.evil.clone()).unwrap_err(),
            AttachError::Poisoned
        );
    }

    fn finish(self) {
        let Fixture {
            _tmp,
            session,
            p,
            c,
            evil,
        } = self;
        drop((p, c, evil));
        assert!(session.segment_names().unwrap().is_empty());
        session.remove_all().unwrap();
    }
}

/// A frame header as it lies in the data region for a frame starting at
/// ring position `pos`: the commit word (`pos + 1`), `len`, `kind`.
fn frame_header(pos: u64, len: u32, kind: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&(pos + 1).to_le_bytes());
    h[8..12].copy_from_slice(&len.to_le_bytes());
    h[12..].copy_from_slice(&kind.to_le_bytes());
    h
}

#[test]
fn bad_head_is_refused_by_a_half_attaching_later() {
    // The data path does not read `head` (each frame announces itself), so
    // a forged `head` disturbs nobody there; a consumer attaching later
    // validates it.
    for (i, bad) in [CAP as u64 * 3, 40 + 3, u64::MAX - 15]
        .into_iter()
        .enumerate()
    {
        let mut f = fixture(&format!("head-bad{i}"));
        f.push(20); // head = 48
        f.evil.header().head.0.store(bad, Ordering::Relaxed);
        let fr = f.c.peek().unwrap().unwrap();
        assert_eq!(fr.len(), 20);
        fr.release();
        assert!(f.c.peek().unwrap().is_none());
        let Fixture {
            _tmp,
            session,
            p,
            c,
            evil,
        } = f;
        drop(c);
        let e = Ring::attach_consumer(evil.clone()).unwrap_err();
        assert!(matches!(e, AttachError::Corrupt { .. }), "got {e:?}");
        assert!(p.is_poisoned());
        drop((p, evil));
        assert!(session.segment_names().unwrap().is_empty());
        session.remove_all().unwrap();
    }
}

fn fill_until_full(p: &mut Producer<MappedStorage>, len: usize) {
    loop {
        match p.reserve(len) {
            Ok(g) => g.commit_all(),
            Err(RingError::Full) => return,
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn tail_ahead_of_head_and_backwards() {
    for (i, bad) in [1u64 << 40, 0].into_iter().enumerate() {
        let mut f = fixture(&format!("tail-bad{i}"));
        fill_until_full(&mut f.p, 1000);
        let fr = f.c.peek().unwrap().unwrap();
        fr.release(); // tail > 0
                      // The producer re-reads tail (now > 0) when it finds the ring full.
        fill_until_full(&mut f.p, 16);
        f.evil.header().tail.0.store(bad, Ordering::Relaxed);
        let e = f.p.reserve(16).unwrap_err();
        assert!(matches!(e, RingError::Corrupt { .. }), "got {e:?}");
        assert_eq!(f.p.reserve(16).unwrap_err(), RingError::Poisoned);
        f.assert_poisoned();
        f.finish();
    }
}

#[test]
fn forged_commit_of_the_next_frame() {
    // The peer forges the commit word of the frame after the one it
    // published, with a length that crosses the end: Corrupt once the
    // consumer gets there.
    let mut f = fixture("forged-next");
    f.push(10); // [0, 32)
    f.poke_data(32, &frame_header(32, (CAP - 32) as u32, 0));
    let fr = f.c.peek().unwrap().unwrap();
    assert_eq!(fr.len(), 10);
    fr.release();
    f.assert_consumer_corrupt();
    f.finish();

    // A commit word for another lap, or garbage: "not yet", never a frame,
    // never a hang.
    let mut f = fixture("forged-lap");
    f.poke_data(0, &frame_header(CAP as u64, 10, 0));
    assert!(!f.c.has_frames());
    assert!(f.c.peek().unwrap().is_none());
    f.push(10);
    assert_eq!(f.c.peek().unwrap().unwrap().len(), 10);
    f.finish();
}

#[test]
fn frame_length_crossing_the_end() {
    let mut f = fixture("len-end");
    f.push(10);
    f.poke_data(0, &frame_header(0, u32::MAX - 3, 7));
    f.assert_consumer_corrupt();
    f.finish();
}

#[test]
fn bad_padding_frames() {
    // Padding that does not reach the end of the ring.
    let mut f = fixture("pad-short");
    f.push(100);
    f.poke_data(0, &frame_header(0, 16, PADDING_KIND));
    f.assert_consumer_corrupt();
    f.finish();

    // Padding at offset 0 covering the whole ring (never written by a
    // producer; would otherwise let a hostile peer loop us).
    let mut f = fixture("pad-zero");
    f.push(100);
    f.poke_data(0, &frame_header(0, (CAP - 16) as u32, PADDING_KIND));
    f.assert_consumer_corrupt();
    f.finish();
}

#[test]
fn header_fields_rejected_on_attach() {
    let f = fixture("attach");
    let h = f.evil.header();
    h.meta.0.capacity.store(CAP as u64 * 2, Ordering::Relaxed);
    assert!(matches!(
        Ring::attach_consumer(f.evil.clone()),
        Err(AttachError::BadCapacity { .. })
    ));
    h.meta.0.capacity.store(CAP as u64 - 16, Ordering::Relaxed);
    assert!(matches!(
        Ring::attach_consumer(f.evil.clone()),
        Err(AttachError::BadCapacity { .. })
    ));
    h.meta.0.capacity.store(CAP as u64, Ordering::Relaxed);
    h.meta.0.version.store(7, Ordering::Relaxed);
    assert_eq!(
        Ring::attach_consumer(f.evil.clone()).unwrap_err(),
        AttachError::VersionMismatch {
            found: 7,
            expected: RING_LAYOUT_VERSION
        }
    );
    h.meta
        .0
        .version
        .store(RING_LAYOUT_VERSION, Ordering::Relaxed);
    h.meta.0.magic.store(0xdead, Ordering::Relaxed);
    assert_eq!(
        Ring::attach_consumer(f.evil.clone()).unwrap_err(),
        AttachError::NotInitialized
    );
    f.finish();
}

#[test]
fn halves_keep_their_capacity_when_the_header_changes() {
    // A changed capacity field after attach is ignored: each half uses the
    // capacity it validated at attach.
    let mut f = fixture("cap-after");
    f.evil
        .header()
        .meta
        .0
        .capacity
        .store(1 << 40, Ordering::Relaxed);
    for i in 0..100 {
        f.push(i * 7 % 300);
        let fr = f.c.peek().unwrap().unwrap();
        assert_eq!(fr.len(), i * 7 % 300);
        fr.release();
    }
    f.finish();
}

// ------------------------------------------------------------ property --

#[derive(Debug, Clone)]
enum Op {
    Push {
        len: usize,
        deferred: bool,
    },
    Pop {
        deferred: bool,
    },
    Flush,
    /// Hostile write of 8 bytes at an offset into header + data.
    Scribble {
        off: usize,
        bytes: [u8; 8],
    },
    Reattach {
        consumer: bool,
    },
    /// Hostile forged frame: at the offset of the published `tail` (where
    /// the consumer polls next, unless it holds deferred releases), a
    /// header whose commit word matches, with an arbitrary `len` and kind.
    ForgeCommit {
        len: u32,
        padding: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..700, any::<bool>()).prop_map(|(len, deferred)| Op::Push { len, deferred }),
        4 => any::<bool>().prop_map(|deferred| Op::Pop { deferred }),
        1 => Just(Op::Flush),
        2 => (0usize..HEADER_LEN + 1024, any::<[u8; 8]>())
            .prop_map(|(off, bytes)| Op::Scribble { off, bytes }),
        1 => any::<bool>().prop_map(|consumer| Op::Reattach { consumer }),
        1 => (prop_oneof![0u32..1100, Just(u32::MAX), Just(u32::MAX - 15)], any::<bool>())
            .prop_map(|(len, padding)| Op::ForgeCommit { len, padding }),
    ]
}

fn run_ops(initial: &[u8], ops: &[Op]) {
    const CAP: usize = 1024;
    let s = HeapStorage::new(CAP);
    Ring::init(&s, CAP).unwrap();
    let mut p = Ring::attach_producer(s.clone()).ok();
    let mut c = Ring::attach_consumer(s.clone()).ok();
    s.scribble(initial);
    let mut snapshot = vec![0u8; HEADER_LEN + CAP];
    for op in ops {
        match op {
            Op::Push { len, deferred } => {
                if let Some(p) = p.as_mut() {
                    match p.reserve(*len) {
                        Ok(mut g) => {
                            g.fill(*len as u8);
                            if *deferred {
                                g.commit_all_deferred();
                            } else {
                                g.commit_all();
                            }
                        }
                        Err(RingError::Full | RingError::TooLarge { .. }) => {}
                        Err(RingError::Corrupt { .. } | RingError::Poisoned) => {
                            assert!(p.is_poisoned());
                            assert_eq!(p.reserve(1).unwrap_err(), RingError::Poisoned);
                        }
                        Err(e) => panic!("producer: {e:?}"),
                    }
                }
            }
            Op::Pop { deferred } => {
                if let Some(c) = c.as_mut() {
                    match c.peek() {
                        Ok(Some(f)) => {
                            assert!(f.len() <= CAP - 16);
                            assert_eq!(f.as_ptr() as usize % 16, 0);
                            let _sum: u64 = f.iter().map(|b| u64::from(*b)).sum();
                            if *deferred {
                                f.release_deferred();
                            } else {
                                f.release();
                            }
                        }
                        Ok(None) | Err(RingError::Closed) => {}
                        Err(RingError::Corrupt { .. } | RingError::Poisoned) => {
                            assert!(c.is_poisoned());
                            assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);
                        }
                        Err(e) => panic!("consumer: {e:?}"),
                    }
                }
            }
            Op::Flush => {
                if let Some(p) = p.as_mut() {
                    p.flush();
                }
                if let Some(c) = c.as_mut() {
                    c.flush();
                }
            }
            Op::Scribble { off, bytes } => {
                s.read_raw(&mut snapshot);
                let end = (off + 8).min(snapshot.len());
                snapshot[*off..end].copy_from_slice(&bytes[..end - off]);
                s.scribble(&snapshot);
            }
            Op::ForgeCommit { len, padding } => {
                s.read_raw(&mut snapshot);
                let tail = s.header().tail.0.load(Ordering::Relaxed);
                let off = HEADER_LEN + (tail as usize & (CAP - 1) & !15);
                snapshot[off..off + 8].copy_from_slice(&tail.wrapping_add(1).to_le_bytes());
                snapshot[off + 8..off + 12].copy_from_slice(&len.to_le_bytes());
                let kind = if *padding { PADDING_KIND } else { 3 };
                snapshot[off + 12..off + 16].copy_from_slice(&kind.to_le_bytes());
                s.scribble(&snapshot);
            }
            Op::Reattach { consumer } => {
                if *consumer {
                    drop(c.take());
                    c = Ring::attach_consumer(s.clone()).ok();
                } else {
                    drop(p.take());
                    p = Ring::attach_producer(s.clone()).ok();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary initial bytes over the header + data, then arbitrary
    /// operations with hostile writes in between: never a panic.
    #[test]
    fn arbitrary_memory_never_panics(
        initial in proptest::collection::vec(any::<u8>(), 0..HEADER_LEN + 256),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        run_ops(&initial, &ops);
    }

    /// Valid traffic with occasional hostile writes only into the indices
    /// and the first frame headers (the interesting fields).
    #[test]
    fn index_and_length_scribbles_never_panic(
        ops in proptest::collection::vec(
            prop_oneof![
                3 => op(),
                1 => (prop_oneof![Just(128usize), Just(256), Just(HEADER_LEN), Just(HEADER_LEN + 32)],
                      any::<[u8; 8]>())
                    .prop_map(|(off, bytes)| Op::Scribble { off, bytes }),
            ],
            0..300,
        ),
    ) {
        run_ops(&[], &ops);
    }
}
