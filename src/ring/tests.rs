//! Unit tests of the ring on heap storage (single process).

use std::time::{Duration, Instant};

use super::*;
use crate::sync::Ordering;
use crate::wake::{EventFd, WaitStrategy, Waiter};

fn pair(cap: usize) -> (Producer<HeapStorage>, Consumer<HeapStorage>, HeapStorage) {
    let s = HeapStorage::new(cap);
    Ring::init(&s, cap).unwrap();
    (
        Ring::attach_producer(s.clone()).unwrap(),
        Ring::attach_consumer(s.clone()).unwrap(),
        s,
    )
}

fn push(p: &mut Producer<HeapStorage>, bytes: &[u8], kind: u32) -> Result<(), RingError> {
    let mut g = p.reserve_with_kind(bytes.len(), kind)?;
    g.copy_from_slice(bytes);
    g.commit_all();
    Ok(())
}

fn pop(c: &mut Consumer<HeapStorage>) -> Option<(u32, Vec<u8>)> {
    let f = c.peek().unwrap()?;
    let out = (f.kind(), f.to_vec());
    f.release();
    Some(out)
}

#[test]
fn push_pop_and_alignment() {
    let (mut p, mut c, _s) = pair(1024);
    assert!(c.peek().unwrap().is_none());
    for (i, len) in [0usize, 1, 15, 16, 17, 100].into_iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
        let mut g = p.reserve_with_kind(len, i as u32).unwrap();
        assert_eq!(g.len(), len);
        assert_eq!(g.as_ptr() as usize % 16, 0, "payload must be 16-aligned");
        g.copy_from_slice(&data);
        g.commit_all();
        let f = c.peek().unwrap().unwrap();
        assert_eq!(f.as_ptr() as usize % 16, 0);
        assert_eq!(f.kind(), i as u32);
        assert_eq!(&*f, &data[..]);
        f.release();
    }
    assert!(c.peek().unwrap().is_none());
}

#[test]
fn wrap_with_padding() {
    let (mut p, mut c, _s) = pair(128);
    // 48-byte frames: offsets 0, 48; the third (needs 48) does not fit in the
    // last 32 bytes, so a padding frame covers [96, 128) and it goes to 0.
    push(&mut p, &[1; 32], 1).unwrap();
    push(&mut p, &[2; 32], 2).unwrap();
    assert_eq!(pop(&mut c), Some((1, vec![1; 32])));
    push(&mut p, &[3; 32], 3).unwrap();
    assert_eq!(pop(&mut c), Some((2, vec![2; 32])));
    assert_eq!(pop(&mut c), Some((3, vec![3; 32])));
    assert_eq!(pop(&mut c), None);
    // Many rounds over the wrap point with varying sizes.
    for round in 0..500usize {
        let len = round % 100;
        let data: Vec<u8> = (0..len).map(|b| (b + round) as u8).collect();
        if let Err(e) = push(&mut p, &data, round as u32) {
            // A frame larger than the space left after the padding: the
            // consumer must skip the (published) padding first.
            assert_eq!(e, RingError::Full);
            assert_eq!(pop(&mut c), None);
            push(&mut p, &data, round as u32).unwrap();
        }
        assert_eq!(pop(&mut c), Some((round as u32, data)));
    }
}

#[test]
fn full_is_back_pressure_not_overwrite() {
    let (mut p, mut c, _s) = pair(128);
    push(&mut p, &[1; 48], 0).unwrap(); // 64 bytes
    push(&mut p, &[2; 48], 0).unwrap(); // 64 bytes: full
    assert_eq!(p.reserve(0).unwrap_err(), RingError::Full);
    assert_eq!(pop(&mut c).unwrap().1, vec![1; 48]);
    push(&mut p, &[3; 1], 0).unwrap();
    assert_eq!(pop(&mut c).unwrap().1, vec![2; 48]);
    assert_eq!(pop(&mut c).unwrap().1, vec![3; 1]);
}

#[test]
fn absurd_lengths_are_too_large_not_overflows() {
    // The reserve fast path computes the frame size in saturating u64
    // arithmetic; huge lengths must fall through to TooLarge.
    let (mut p, _c, _s) = pair(1024);
    for len in [usize::MAX, usize::MAX - 15, u32::MAX as usize + 1, 1009] {
        assert_eq!(
            p.reserve(len).unwrap_err(),
            RingError::TooLarge { len, max: 1008 },
            "len {len}"
        );
    }
    // The largest payload still fits an empty ring.
    p.reserve(1008).unwrap().commit_all();
}

#[test]
fn frame_of_whole_capacity_after_padding() {
    let (mut p, mut c, _s) = pair(64);
    assert_eq!(p.max_payload(), 48);
    assert_eq!(
        p.reserve(49).unwrap_err(),
        RingError::TooLarge { len: 49, max: 48 }
    );
    push(&mut p, &[1; 16], 0).unwrap(); // [0, 32)
    assert_eq!(pop(&mut c).unwrap().1, vec![1; 16]);
    // At offset 32 a 64-byte frame needs padding [32, 64) and then the whole
    // ring; the padding is published so the consumer can skip it.
    assert_eq!(p.reserve(48).unwrap_err(), RingError::Full);
    assert_eq!(pop(&mut c), None); // skips the padding, releases it
    push(&mut p, &[9; 48], 4).unwrap();
    assert_eq!(pop(&mut c), Some((4, vec![9; 48])));
}

#[test]
fn deferred_commit_and_release() {
    let (mut p, mut c, s) = pair(1024);
    for i in 0..5u8 {
        let mut g = p.reserve(3).unwrap();
        g.copy_from_slice(&[i; 3]);
        g.commit_all_deferred();
    }
    assert_eq!(p.pending(), 5 * 32);
    assert!(c.peek().unwrap().is_none(), "nothing published yet");
    p.flush();
    assert_eq!(p.pending(), 0);
    for i in 0..5u8 {
        let f = c.peek().unwrap().unwrap();
        assert_eq!(&*f, &[i; 3]);
        f.release_deferred();
    }
    assert_eq!(s.header().tail.0.load(Ordering::Relaxed), 0);
    c.flush();
    assert_eq!(s.header().tail.0.load(Ordering::Relaxed), 5 * 32);
}

/// The producer's published `head` in the header.
fn head_of(s: &HeapStorage) -> u64 {
    s.header().head.0.load(Ordering::Relaxed)
}

#[test]
fn partial_commit_of_zero_bytes_is_an_empty_frame() {
    let (mut p, mut c, s) = pair(256);
    let mut g = p.reserve_with_kind(100, 3).unwrap();
    assert_eq!(g.capacity(), 100);
    g.fill(0xee);
    g.commit(0);
    // Only the 16-byte header was published.
    assert_eq!(head_of(&s), 16);
    assert_eq!(pop(&mut c), Some((3, vec![])));
    assert_eq!(pop(&mut c), None);
}

#[test]
fn partial_commit_of_the_whole_grant_equals_commit_all() {
    let (mut p, mut c, s) = pair(256);
    let mut g = p.reserve(40).unwrap();
    g.fill(1);
    g.commit(40);
    assert_eq!(head_of(&s), 64);
    let mut g = p.reserve(40).unwrap();
    g.fill(2);
    g.commit_all();
    assert_eq!(head_of(&s), 128);
    assert_eq!(pop(&mut c), Some((0, vec![1; 40])));
    assert_eq!(pop(&mut c), Some((0, vec![2; 40])));
}

#[test]
fn partial_commit_then_more_frames_and_a_wrap() {
    let (mut p, mut c, s) = pair(256);
    // Reserve 200 bytes (a 224-byte frame), use 10: a 32-byte frame.
    let mut g = p.reserve(200).unwrap();
    g[..10].copy_from_slice(b"0123456789");
    g[10..].fill(0xaa); // written but never published
    g.commit(10);
    assert_eq!(head_of(&s), 32);
    // The next frames start right after the shorter frame, inside the old
    // grant's bytes.
    push(&mut p, &[5; 100], 5).unwrap(); // [32, 148) -> 128 bytes: [32, 160)
    assert_eq!(head_of(&s), 160);
    assert_eq!(pop(&mut c), Some((0, b"0123456789".to_vec())));
    assert_eq!(pop(&mut c), Some((5, vec![5; 100])));
    // A partial commit that crosses the wrap: a 100-byte grant does not fit
    // in [160, 256) (needs 128), so padding covers it and the grant starts
    // at 0; commit 17 bytes (a 48-byte frame).
    let mut g = p.reserve_with_kind(100, 6).unwrap();
    g.fill(6);
    g.commit(17);
    assert_eq!(head_of(&s), 256 + 48);
    // And a deferred partial commit after it, published by flush.
    let mut g = p.reserve_with_kind(64, 7).unwrap();
    g.fill(7);
    g.commit_deferred(1);
    assert_eq!(p.pending(), 32);
    p.flush();
    assert_eq!(head_of(&s), 256 + 48 + 32);
    assert_eq!(pop(&mut c), Some((6, vec![6; 17])));
    assert_eq!(pop(&mut c), Some((7, vec![7; 1])));
    assert_eq!(pop(&mut c), None);
    // Many rounds of partial commits over the wrap point.
    for round in 0..500usize {
        let (reserved, used) = (round % 150, (round * 7) % 150);
        let used = used.min(reserved);
        let data: Vec<u8> = (0..used).map(|b| (b + round) as u8).collect();
        let mut g = loop {
            match p.reserve_with_kind(reserved, round as u32) {
                Ok(g) => break g,
                Err(RingError::Full) => assert_eq!(pop(&mut c), None),
                Err(e) => panic!("reserve: {e}"),
            }
        };
        g[..used].copy_from_slice(&data);
        g.commit(used);
        assert_eq!(pop(&mut c), Some((round as u32, data)));
    }
}

#[test]
#[should_panic(expected = "exceeds the 8-byte grant")]
fn partial_commit_beyond_the_grant_panics() {
    let (mut p, _c, _s) = pair(256);
    p.reserve(8).unwrap().commit(9);
}

#[test]
fn abandoned_and_readiness_queries() {
    let (mut p, mut c, _s) = pair(256);
    assert!(!p.is_abandoned() && !c.is_abandoned());
    assert!(!c.has_frames());
    let g = p.reserve(4).unwrap();
    g.commit_all_deferred();
    assert!(!c.has_frames(), "deferred commits are not published");
    p.flush();
    assert!(c.has_frames());
    assert!(c.has_frames(), "the probe consumes nothing");
    {
        let _f = c.peek().unwrap().unwrap(); // not released: still there
    }
    assert!(c.has_frames());
    assert_eq!(pop(&mut c).unwrap().1.len(), 4);
    assert!(!c.has_frames());
    // The producer closes with one frame still in the ring.
    push(&mut p, b"x", 0).unwrap();
    drop(p);
    assert!(c.is_abandoned());
    assert!(c.has_frames());
    assert_eq!(pop(&mut c).unwrap().1, b"x");
    assert!(!c.has_frames());
    assert_eq!(c.peek().unwrap_err(), RingError::Closed);

    let (p, c, _s) = pair(256);
    assert!(!p.is_abandoned());
    drop(c);
    assert!(p.is_abandoned());
}

#[test]
fn full_publishes_deferred_commits() {
    let (mut p, mut c, _s) = pair(64);
    let g = p.reserve(16).unwrap();
    g.commit_all_deferred();
    let g = p.reserve(16).unwrap();
    g.commit_all_deferred();
    assert_eq!(p.reserve(16).unwrap_err(), RingError::Full);
    assert!(pop(&mut c).is_some());
    assert!(pop(&mut c).is_some());
}

#[test]
fn dropped_grant_aborts_and_unreleased_frame_stays() {
    let (mut p, mut c, _s) = pair(256);
    {
        let mut g = p.reserve(10).unwrap();
        g.fill(7);
    }
    assert!(c.peek().unwrap().is_none());
    push(&mut p, b"abc", 1).unwrap();
    {
        let f = c.peek().unwrap().unwrap();
        assert_eq!(&*f, b"abc");
    }
    let f = c.peek().unwrap().unwrap();
    assert_eq!(&*f, b"abc");
    f.release();
    assert!(c.peek().unwrap().is_none());
}

#[test]
fn reserved_kind_rejected() {
    let (mut p, _c, _s) = pair(256);
    assert_eq!(
        p.reserve_with_kind(1, PADDING_KIND).unwrap_err(),
        RingError::ReservedKind { kind: PADDING_KIND }
    );
    let mut g = p.reserve(1).unwrap();
    assert!(g.set_kind(PADDING_KIND).is_err());
    g.set_kind(5).unwrap();
    assert_eq!(g.kind(), 5);
}

#[test]
fn producer_close_is_seen_after_draining() {
    let (mut p, mut c, _s) = pair(256);
    push(&mut p, b"last", 0).unwrap();
    let g = p.reserve(2).unwrap();
    g.commit_all_deferred();
    drop(p);
    assert_eq!(pop(&mut c).unwrap().1, b"last");
    assert_eq!(pop(&mut c).unwrap().1.len(), 2);
    assert_eq!(c.peek().unwrap_err(), RingError::Closed);
}

#[test]
fn consumer_close_stops_blocking_producer() {
    let (mut p, c, _s) = pair(64);
    push(&mut p, &[0; 48], 0).unwrap();
    drop(c);
    let w = Waiter::new(WaitStrategy::spin_park());
    let e = p
        .reserve_blocking(48, 0, &w, Instant::now() + Duration::from_secs(10))
        .unwrap_err();
    assert_eq!(e, RingError::Closed);
}

#[test]
fn attach_validation() {
    let s = HeapStorage::new(256);
    assert_eq!(
        Ring::attach_consumer(s.clone()).unwrap_err(),
        AttachError::NotInitialized
    );
    assert!(matches!(
        Ring::init(&s, 100),
        Err(AttachError::BadCapacity { .. })
    ));
    assert!(matches!(
        Ring::init(&s, 512),
        Err(AttachError::BadCapacity { .. })
    ));
    Ring::init(&s, 256).unwrap();
    let p = Ring::attach_producer(s.clone()).unwrap();
    assert_eq!(
        Ring::attach_producer(s.clone()).unwrap_err(),
        AttachError::AlreadyAttached {
            side: Side::Producer
        }
    );
    drop(p);
    let _p = Ring::attach_producer(s.clone()).unwrap();
    s.header().meta.0.version.store(99, Ordering::Relaxed);
    assert_eq!(
        Ring::attach_consumer(s.clone()).unwrap_err(),
        AttachError::VersionMismatch {
            found: 99,
            expected: RING_LAYOUT_VERSION
        }
    );
    s.header()
        .meta
        .0
        .version
        .store(RING_LAYOUT_VERSION, Ordering::Relaxed);
    s.header().meta.0.capacity.store(1 << 20, Ordering::Relaxed);
    assert!(matches!(
        Ring::attach_consumer(s.clone()),
        Err(AttachError::BadCapacity { .. })
    ));
}

fn assert_corrupt_then_poisoned(c: &mut Consumer<HeapStorage>, p: &mut Producer<HeapStorage>) {
    let e = c.peek().unwrap_err();
    assert!(matches!(e, RingError::Corrupt { .. }), "got {e:?}");
    assert!(c.is_poisoned());
    assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);
    assert!(p.is_poisoned());
}

/// A frame header as it lies in the data region: commit word, `len`,
/// `kind`.
fn frame_hdr(commit: u64, len: u32, kind: u32) -> [u8; 16] {
    let mut hdr = [0u8; 16];
    hdr[..8].copy_from_slice(&commit.to_le_bytes());
    hdr[8..12].copy_from_slice(&len.to_le_bytes());
    hdr[12..].copy_from_slice(&kind.to_le_bytes());
    hdr
}

#[test]
fn corrupt_head_refused_at_attach() {
    // The data path never reads `head` (the frames announce themselves);
    // a half attaching later validates it.
    for bad in [1u64 << 20, 7] {
        let (p, c, s) = pair(256);
        drop(c);
        s.header().head.0.store(bad, Ordering::Relaxed);
        assert!(matches!(
            Ring::attach_consumer(s.clone()),
            Err(AttachError::Corrupt { .. })
        ));
        assert!(p.is_poisoned());
    }
}

#[test]
fn corrupt_head_does_not_disturb_the_data_path() {
    let (mut p, mut c, s) = pair(256);
    push(&mut p, b"x", 0).unwrap();
    s.header().head.0.store(7, Ordering::Relaxed);
    assert_eq!(pop(&mut c).unwrap().1, b"x");
    assert!(pop(&mut c).is_none());
    assert!(!c.is_poisoned());
}

#[test]
fn forged_commit_words() {
    // A commit word of another lap (or any other value) is "not yet":
    // nothing is read, nothing hangs.
    let (mut p, mut c, s) = pair(256);
    scribble_data(&s, 0, &frame_hdr(257, 3, 0));
    assert!(!c.has_frames());
    assert!(pop(&mut c).is_none());
    assert!(!c.is_poisoned());
    // The producer's own frame over it is delivered.
    push(&mut p, b"abc", 0).unwrap();
    assert_eq!(pop(&mut c).unwrap().1, b"abc");

    // A forged commit that matches, with a length beyond the end: Corrupt.
    let (mut p, mut c, s) = pair(256);
    scribble_data(&s, 0, &frame_hdr(1, 241, 0));
    assert!(c.has_frames());
    assert_corrupt_then_poisoned(&mut c, &mut p);

    // A forged commit that matches, with a valid length: a frame of the
    // peer's bytes (only bytes), then the ring goes on.
    let (_p, mut c, s) = pair(256);
    scribble_data(&s, 0, &frame_hdr(1, 5, 0));
    assert_eq!(pop(&mut c).unwrap().1.len(), 5);
    assert!(pop(&mut c).is_none());
}

#[test]
fn corrupt_frame_lengths() {
    // Frame crossing the end of the ring.
    let (mut p, mut c, s) = pair(256);
    push(&mut p, b"abc", 0).unwrap();
    scribble_data(&s, 0, &frame_hdr(1, u32::MAX, 0));
    assert_corrupt_then_poisoned(&mut c, &mut p);

    let (mut p, mut c, s) = pair(256);
    push(&mut p, b"abc", 0).unwrap();
    scribble_data(&s, 0, &frame_hdr(1, 241, 7));
    assert_corrupt_then_poisoned(&mut c, &mut p);

    // Padding frame that does not end at the end of the ring.
    let (mut p, mut c, s) = pair(256);
    push(&mut p, &[0; 100], 0).unwrap();
    scribble_data(&s, 0, &frame_hdr(1, 16, PADDING_KIND));
    assert_corrupt_then_poisoned(&mut c, &mut p);

    // Padding frame at offset 0 (even one covering the whole ring).
    let (mut p, mut c, s) = pair(256);
    push(&mut p, &[0; 100], 0).unwrap();
    scribble_data(&s, 0, &frame_hdr(1, 240, PADDING_KIND));
    assert_corrupt_then_poisoned(&mut c, &mut p);
}

#[test]
fn stale_payload_never_passes_for_a_commit() {
    // A payload that holds, at the offset where a later lap's frame will
    // start, exactly that frame's commit value: the producer clears the
    // word before it publishes the frame in front of it, so the consumer
    // never mistakes the stale bytes for a frame.
    let (mut p, mut c, _s) = pair(256);
    // Lap 0: one 240-byte frame at [0, 240) (a 256-byte frame fills the
    // ring); its payload at ring offset 32 (payload byte 16) holds
    // 256 + 32 + 1, the commit value of a frame at position 288.
    let mut big = [0u8; 240];
    big[16..24].copy_from_slice(&(256u64 + 32 + 1).to_le_bytes());
    push(&mut p, &big, 0).unwrap();
    assert_eq!(pop(&mut c).unwrap().1, big.to_vec());
    // Lap 1: a partial commit of 16 bytes out of a 200-byte grant written
    // with the same trick, then nothing more: position 288 must read empty.
    let mut g = p.reserve(200).unwrap();
    g.fill(0);
    g[16..24].copy_from_slice(&(256u64 + 32 + 1).to_le_bytes());
    g[0..16].copy_from_slice(&[9; 16]);
    g.commit(16);
    assert_eq!(pop(&mut c).unwrap().1, [9; 16].to_vec());
    assert!(pop(&mut c).is_none());
    assert!(!c.has_frames());
    assert!(!c.is_poisoned());
}

#[test]
fn corrupt_tail_seen_by_producer() {
    let (mut p, mut c, s) = pair(64);
    push(&mut p, &[0; 48], 0).unwrap();
    s.header().tail.0.store(1 << 30, Ordering::Relaxed);
    let e = p.reserve(16).unwrap_err();
    assert!(matches!(e, RingError::Corrupt { .. }), "got {e:?}");
    assert_eq!(p.reserve(16).unwrap_err(), RingError::Poisoned);
    assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);
}

fn scribble_data(s: &HeapStorage, off: usize, bytes: &[u8]) {
    let mut all = vec![0u8; HEADER_LEN + s.data().len()];
    s.read_raw(&mut all);
    all[HEADER_LEN + off..HEADER_LEN + off + bytes.len()].copy_from_slice(bytes);
    s.scribble(&all);
}

#[test]
fn random_model_check() {
    // A deterministic random sequence of operations checked against a
    // VecDeque model.
    let (mut p, mut c, _s) = pair(512);
    let mut model = std::collections::VecDeque::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut pending_release = 0;
    for step in 0..20_000u32 {
        match rnd() % 4 {
            0 | 1 => {
                let len = (rnd() % 200) as usize;
                let data: Vec<u8> = (0..len).map(|i| (i as u32 ^ step) as u8).collect();
                let deferred = rnd() % 3 == 0;
                match p.reserve_with_kind(len, step) {
                    Ok(mut g) => {
                        g.copy_from_slice(&data);
                        if deferred {
                            g.commit_all_deferred();
                        } else {
                            g.commit_all();
                        }
                        model.push_back((step, data));
                    }
                    Err(RingError::Full) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            _ => {
                let deferred = rnd() % 2 == 0;
                match c.peek().unwrap() {
                    Some(f) => {
                        let (k, d) = model.pop_front().expect("frame not in model");
                        assert_eq!(f.kind(), k);
                        assert_eq!(&*f, &d[..]);
                        if deferred {
                            f.release_deferred();
                            pending_release += 1;
                        } else {
                            f.release();
                        }
                    }
                    None => {
                        // Only unpublished frames may remain.
                        p.flush();
                    }
                }
                if pending_release > 4 {
                    c.flush();
                    pending_release = 0;
                }
            }
        }
    }
    p.flush();
    while let Some((k, d)) = pop(&mut c) {
        assert_eq!(model.pop_front(), Some((k, d)));
    }
    assert!(model.is_empty());
}

fn stream_threads(strategy_c: WaitStrategy, strategy_p: WaitStrategy, n: u32, eventfds: bool) {
    let (mut p, mut c, _s) = pair(1024);
    let mut wc = Waiter::new(strategy_c);
    let mut wp = Waiter::new(strategy_p);
    if eventfds {
        let (efd_c, efd_p) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        p.set_peer_eventfd(efd_c.clone());
        c.set_peer_eventfd(efd_p.clone());
        wc = wc.with_eventfd(efd_c);
        wp = wp.with_eventfd(efd_p);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let t = std::thread::spawn(move || {
        let w = wp;
        for i in 0..n {
            let len = (i as usize * 37) % 300;
            let mut g = p.reserve_blocking(len, i, &w, deadline).unwrap();
            for (j, b) in g.iter_mut().enumerate() {
                *b = (i as usize + j) as u8;
            }
            if i % 4 == 0 {
                g.commit_all();
            } else {
                g.commit_all_deferred();
            }
        }
    });
    let w = wc;
    for i in 0..n {
        let f = c.peek_blocking(&w, deadline).unwrap();
        assert_eq!(f.kind(), i);
        assert_eq!(f.len(), (i as usize * 37) % 300);
        for (j, b) in f.iter().enumerate() {
            assert_eq!(*b, (i as usize + j) as u8);
        }
        f.release();
    }
    t.join().unwrap();
    assert_eq!(
        c.peek_blocking(&w, deadline).unwrap_err(),
        RingError::Closed
    );
}

#[test]
fn threads_spin() {
    stream_threads(WaitStrategy::Spin, WaitStrategy::Spin, 20_000, false);
}

#[test]
fn threads_spin_yield() {
    stream_threads(
        WaitStrategy::spin_yield(),
        WaitStrategy::spin_yield(),
        20_000,
        false,
    );
}

#[test]
fn threads_spin_park_zero_spin() {
    // Zero spin window: every wait goes through the futex handshake.
    let s = WaitStrategy::SpinPark {
        spin: Duration::ZERO,
    };
    stream_threads(s, s, 20_000, false);
}

#[test]
fn threads_eventfd_zero_spin() {
    let s = WaitStrategy::EventFd {
        spin: Duration::ZERO,
    };
    stream_threads(s, s, 20_000, true);
}

#[test]
fn threads_eventfd_strategy_without_eventfd_parks_on_the_futex() {
    // The documented fallback: no eventfd given, so both sides sleep on the
    // futex word (and the peers, given none either, wake them there).
    let s = WaitStrategy::EventFd {
        spin: Duration::ZERO,
    };
    stream_threads(s, s, 5_000, false);
}

#[test]
fn blocking_times_out_and_reports_dead_peer() {
    let (mut p, mut c, _s) = pair(256);
    let w = Waiter::new(WaitStrategy::SpinPark {
        spin: Duration::from_micros(10),
    });
    let e = c
        .peek_blocking(&w, Instant::now() + Duration::from_millis(20))
        .unwrap_err();
    assert_eq!(e, RingError::TimedOut);

    // A frame published before the "death" is still delivered.
    push(&mut p, b"before", 0).unwrap();
    let dead = Waiter::new(WaitStrategy::spin_park())
        .with_liveness(|| false)
        .with_check_interval(Duration::from_millis(1));
    let far = Instant::now() + Duration::from_secs(30);
    let f = c.peek_blocking(&dead, far).unwrap();
    assert_eq!(&*f, b"before");
    f.release();
    assert_eq!(
        c.peek_blocking(&dead, far).unwrap_err(),
        RingError::PeerDied
    );
    std::mem::forget(p); // the "dead" producer never closes
}

#[test]
fn event_loop_arming_with_eventfd() {
    let (mut p, mut c, _s) = pair(64);
    let efd_c = EventFd::new().unwrap();
    let efd_p = EventFd::new().unwrap();
    p.set_peer_eventfd(efd_c.clone());
    c.set_peer_eventfd(efd_p.clone());
    let readable = |fd: &EventFd| crate::sys::eventfd::wait_readable(fd, Duration::ZERO);
    // Consumer arms on an empty ring; a commit makes its eventfd readable.
    assert!(c.arm_eventfd().unwrap());
    assert!(!readable(&efd_c));
    push(&mut p, &[1; 48], 0).unwrap();
    assert!(readable(&efd_c));
    assert!(efd_c.drain());
    c.disarm();
    // Arming with a frame present returns false (and disarms).
    assert!(!c.arm_eventfd().unwrap());
    // Producer arms on a full ring; a release makes its eventfd readable.
    assert!(p.arm_eventfd(16).unwrap());
    assert!(!readable(&efd_p));
    assert_eq!(pop(&mut c), Some((0, vec![1; 48])));
    assert!(readable(&efd_p));
    assert!(efd_p.drain());
    p.disarm();
    assert!(!p.arm_eventfd(16).unwrap(), "room now");
    // Arming when data is already there returns false and disarms.
    push(&mut p, b"x", 0).unwrap();
    assert!(!c.arm_eventfd().unwrap());
    push(&mut p, b"y", 0).unwrap();
    assert!(!readable(&efd_c), "no wake-up when the consumer is awake");
}

#[test]
fn halves_are_send() {
    fn needs_send<T: Send>() {}
    needs_send::<Producer<HeapStorage>>();
    needs_send::<Consumer<HeapStorage>>();
    needs_send::<Producer<MappedStorage>>();
    needs_send::<Consumer<MappedStorage>>();
}

/// A scribbled header is never a close: a `closed` flag set while its half
/// is still attached is not one (the data path goes on; two audits running
/// report it), a flag that is neither 0 nor 1 is `Corrupt` on the data path
/// at once, and only the pair a `Drop` leaves is `Closed`.
#[test]
fn scribbled_flags_are_violations_not_closes() {
    // The producer's flags, read by the consumer.
    let (mut p, mut c, s) = pair(1024);
    s.header()
        .meta
        .0
        .producer_closed
        .store(1, Ordering::Relaxed);
    assert!(
        c.peek().unwrap().is_none(),
        "closed but attached: not a close"
    );
    c.audit().unwrap();
    let e = c.audit().unwrap_err();
    assert!(
        matches!(e, RingError::Corrupt { what, .. } if what == "producer closed but still attached"),
        "{e:?}"
    );
    assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);
    assert_eq!(p.check_open().unwrap_err(), RingError::Poisoned);

    let (_p, mut c, s) = pair(1024);
    s.header()
        .meta
        .0
        .producer_closed
        .store(0xdead_beef, Ordering::Relaxed);
    let e = c.peek().unwrap_err();
    assert!(
        matches!(e, RingError::Corrupt { what, value: 0xdead_beef, .. } if what == "producer_closed is neither 0 nor 1"),
        "{e:?}"
    );

    // The consumer's flags, read by the producer.
    let (mut p, _c, s) = pair(1024);
    s.header()
        .meta
        .0
        .consumer_attached
        .store(0, Ordering::Relaxed);
    p.check_open().unwrap();
    p.audit().unwrap();
    let e = p.audit().unwrap_err();
    assert!(
        matches!(e, RingError::Corrupt { what, .. } if what == "consumer neither attached nor closed"),
        "{e:?}"
    );
    let (mut p, _c, s) = pair(1024);
    s.header()
        .meta
        .0
        .consumer_closed
        .store(2, Ordering::Relaxed);
    assert!(matches!(
        p.check_open().unwrap_err(),
        RingError::Corrupt { value: 2, .. }
    ));

    // A garbage poisoned flag: Corrupt once (then set to 1), Poisoned after.
    let (mut p, mut c, s) = pair(1024);
    s.header().meta.0.poisoned.store(7, Ordering::Relaxed);
    assert!(matches!(
        p.reserve(8).unwrap_err(),
        RingError::Corrupt { value: 7, .. }
    ));
    assert_eq!(s.header().meta.0.poisoned.load(Ordering::Relaxed), 1);
    assert_eq!(p.reserve(8).unwrap_err(), RingError::Poisoned);
    assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);

    // A real close is still one, both ways.
    let (p, mut c, _s) = pair(1024);
    drop(p);
    assert_eq!(c.peek().unwrap_err(), RingError::Closed);
    c.audit().unwrap();
    c.audit().unwrap();
    let (mut p, c, _s) = pair(1024);
    drop(c);
    assert_eq!(p.check_open().unwrap_err(), RingError::Closed);
}

/// A peer that found the ring scribbled and left writes its close pair over
/// the scribble: the other half reports the scribble, not a clean close,
/// both ways (the header's capacity is the scribbled field here).
#[test]
fn a_close_written_over_a_scribbled_header_is_the_violation() {
    let (p, mut c, s) = pair(1024);
    s.header().meta.0.capacity.store(4096, Ordering::Relaxed);
    drop(p);
    assert!(
        matches!(c.peek().unwrap_err(), RingError::Corrupt { .. }),
        "a close over a scribble"
    );
    assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);

    let (mut p, c, s) = pair(1024);
    s.header().meta.0.capacity.store(4096, Ordering::Relaxed);
    drop(c);
    assert!(
        matches!(p.check_open().unwrap_err(), RingError::Corrupt { .. }),
        "a close over a scribble"
    );
}

/// The audits find what the data path never reads: the constants, `head`
/// out of range, a published frame's commit word overwritten (a waiter
/// would wait for it forever), `tail` moved backwards; a healthy ring
/// passes.
#[test]
fn audits_find_what_the_data_path_never_reads() {
    let (mut p, mut c, _s) = pair(1024);
    push(&mut p, b"abc", 0).unwrap();
    p.audit().unwrap();
    c.audit().unwrap();
    assert_eq!(pop(&mut c).unwrap().1, b"abc");
    p.audit().unwrap();
    c.audit().unwrap();

    type Scribble = fn(&RingHeader);
    let cases: [(Scribble, bool, &str); 5] = [
        (
            |h| h.meta.0.magic.store(1, Ordering::Relaxed),
            true,
            "magic overwritten",
        ),
        (
            |h| h.meta.0.capacity.store(4096, Ordering::Relaxed),
            false,
            "capacity overwritten",
        ),
        (
            |h| h.meta.0.version.store(9, Ordering::Relaxed),
            true,
            "layout version overwritten",
        ),
        (
            |h| h.head.0.store(1 << 20, Ordering::Relaxed),
            false,
            "head more than a capacity past tail",
        ),
        (
            |h| h.tail.0.store(0, Ordering::Relaxed),
            true,
            "tail moved backwards",
        ),
    ];
    for (scribble, producer, want) in cases {
        let (mut p, mut c, s) = pair(1024);
        for _ in 0..3 {
            push(&mut p, &[7; 100], 0).unwrap();
            pop(&mut c).unwrap();
        }
        // The producer's cached `tail` catches up (an audit re-loads it).
        p.audit().unwrap();
        c.audit().unwrap();
        scribble(s.header());
        let e = if producer { p.audit() } else { c.audit() }.unwrap_err();
        assert!(
            matches!(e, RingError::Corrupt { what, .. } if what == want),
            "{want}: {e:?}"
        );
        assert!(p.is_poisoned() && c.is_poisoned());
    }

    // A published frame whose commit word was overwritten.
    let (mut p, mut c, s) = pair(1024);
    push(&mut p, b"lost", 0).unwrap();
    // SAFETY: offset 0 is the first frame's commit word, inside the data
    // region; scribbling it is the point of the test.
    unsafe { s.data().store_commit(0, 0xffff, Ordering::Relaxed) };
    assert!(
        c.peek().unwrap().is_none(),
        "not yet, as far as the data path knows"
    );
    let e = c.audit().unwrap_err();
    assert!(
        matches!(e, RingError::Corrupt { what, value: 0xffff, limit: 1 } if what == "commit word of a published frame overwritten"),
        "{e:?}"
    );
}

/// Releases reach the producer in batches of a quarter ring, at most
/// `RELEASE_BATCH_MAX` (4 KiB): a small frame's release is published only
/// when the consumer next finds the ring empty (or flushes); a frame of
/// 4 KiB or more is published as it is released, so a consumer that goes
/// busy right after it withholds nothing of it.
#[test]
fn releases_are_published_in_batches_of_at_most_4_kib() {
    use super::RELEASE_BATCH_MAX;
    let (mut p, mut c, _s) = pair(64 * 1024);
    // 4 KiB frame + 16-byte header, then small frames filling the rest.
    let big = RELEASE_BATCH_MAX;
    push(&mut p, &vec![1; big], 0).unwrap();
    let small = 48; // 64 bytes a frame
    while p.reserve(small).is_ok() {
        push(&mut p, &[2; 48], 0).unwrap();
    }
    assert_eq!(p.reserve(small).unwrap_err(), RingError::Full);
    // The big one: published at its release, the producer has room at once.
    let f = c.peek().unwrap().unwrap();
    assert_eq!(f.len(), big);
    f.release();
    assert!(p.reserve(big).is_ok(), "a 4 KiB release was withheld");
    // Small ones below the batch: not published until the ring looks empty.
    let mut p_full = || p.reserve(big + 64).is_err();
    assert!(p_full());
    let f = c.peek().unwrap().unwrap();
    f.release();
    assert!(p_full(), "one small release was published at once");
    c.flush();
    assert!(!p_full(), "flush did not publish");
}
