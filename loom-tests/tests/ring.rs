//! Loom models of the ring's data path: push/pop, wrap with a padding frame,
//! full ring back-pressure, empty ring, batched commit/release, partial
//! commit, a stale payload where a later frame starts, the readiness probe.
//!
//! Each model runs a producer and a consumer thread on heap storage with a
//! 64-byte data region (the minimum), so every frame size used below forces
//! the interesting cases within two or three frames. Frame bytes are checked
//! by the consumer; loom's cell tracking checks that no read of a frame
//! races a write of it.
#![cfg(shmwire_loom)]

use loom::thread;
use shmwire::ring::{Consumer, HeapStorage, Producer, Ring, RingError};

const CAP: usize = 64;

fn ring() -> (Producer<HeapStorage>, Consumer<HeapStorage>) {
    Ring::heap(CAP).unwrap()
}

/// Pushes a frame of `len` bytes of `tag`, yielding while the ring is full.
fn push(p: &mut Producer<HeapStorage>, len: usize, tag: u8, deferred: bool) {
    loop {
        match p.reserve_with_kind(len, u32::from(tag)) {
            Ok(mut g) => {
                g.fill(tag);
                if deferred {
                    g.commit_all_deferred();
                } else {
                    g.commit_all();
                }
                return;
            }
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("reserve: {e}"),
        }
    }
}

/// Pops one frame, yielding while the ring is empty, and checks it.
fn pop(c: &mut Consumer<HeapStorage>, len: usize, tag: u8, deferred: bool) {
    loop {
        match c.peek().unwrap() {
            Some(f) => {
                assert_eq!(f.kind(), u32::from(tag));
                assert_eq!(f.len(), len);
                assert!(f.iter().all(|b| *b == tag));
                if deferred {
                    f.release_deferred();
                } else {
                    f.release();
                }
                return;
            }
            None => thread::yield_now(),
        }
    }
}

fn run(frames: &'static [usize], deferred_p: bool, deferred_c: bool) {
    loom::model(move || {
        let (mut p, mut c) = ring();
        let t = thread::spawn(move || {
            for (i, len) in frames.iter().enumerate() {
                push(&mut p, *len, i as u8 + 1, deferred_p);
            }
            p.flush();
        });
        for (i, len) in frames.iter().enumerate() {
            pop(&mut c, *len, i as u8 + 1, deferred_c);
        }
        c.flush();
        t.join().unwrap();
        // The producer dropped: the ring is empty and closed.
        assert_eq!(c.peek().unwrap_err(), RingError::Closed);
    });
}

#[test]
fn push_pop() {
    // Two 32-byte frames fill the ring exactly.
    run(&[1, 16], false, false);
}

#[test]
fn full_ring_back_pressure() {
    // The third frame waits for the first to be released.
    run(&[16, 16, 1], false, false);
}

#[test]
fn wrap_with_padding() {
    // 32 B at [0,32), then a 48-byte frame does not fit in [32,64): padding
    // frame there, frame at 0 once the first frame is released.
    run(&[1, 17], false, false);
}

#[test]
fn batched_commit_and_release() {
    // Deferred commits are published by flush (or when the ring is full);
    // deferred releases are published by flush (or when the ring looks
    // empty).
    run(&[1, 1, 1], true, true);
}

#[test]
fn empty_ring_reports_none_then_frame() {
    loom::model(|| {
        let (mut p, mut c) = ring();
        let t = thread::spawn(move || {
            push(&mut p, 3, 7, false);
            // Keep the producer alive until the consumer is done, so the
            // consumer never sees Closed.
            p
        });
        pop(&mut c, 3, 7, false);
        drop(t.join().unwrap());
    });
}

/// Like [`push`], but reserves `reserve` bytes and commits only the first
/// `len` (a partial commit).
fn push_partial(p: &mut Producer<HeapStorage>, reserve: usize, len: usize, tag: u8) {
    loop {
        match p.reserve_with_kind(reserve, u32::from(tag)) {
            Ok(mut g) => {
                g.fill(tag);
                g.commit(len);
                return;
            }
            Err(RingError::Full) => thread::yield_now(),
            Err(e) => panic!("reserve: {e}"),
        }
    }
}

#[test]
fn partial_commit_then_wrap() {
    // Reserve 48 bytes (a 64-byte frame: the whole ring), commit 1: a
    // 32-byte frame at [0, 32). Reserve 32 (48 bytes) at 32: padding
    // [32, 64), the grant at [0, 48) once the consumer released frame 1 and
    // skipped the padding; commit 1: a 32-byte frame at [0, 32). The third
    // frame goes to [32, 64), bytes the second grant lent (and `fill`
    // wrote) but never published. Loom's cell tracking checks that none of
    // those producer writes races a consumer read.
    loom::model(|| {
        let (mut p, mut c) = ring();
        let t = thread::spawn(move || {
            push_partial(&mut p, 48, 1, 1);
            push_partial(&mut p, 32, 1, 2);
            push(&mut p, 1, 3, false);
            p.flush();
        });
        pop(&mut c, 1, 1, false);
        pop(&mut c, 1, 2, false);
        pop(&mut c, 1, 3, false);
        c.flush();
        t.join().unwrap();
        assert_eq!(c.peek().unwrap_err(), RingError::Closed);
    });
}

#[test]
fn wrap_twice_mixed_sizes() {
    // 32, 48 (padding + wrap), 32, 48 (padding + wrap again).
    run(&[1, 17, 1, 17], false, true);
}

#[test]
fn stale_payload_is_not_a_commit() {
    // Frame 1 fills the ring ([0, 64)); its payload holds, at ring offset
    // 32, the commit value of the frame that will start at position 96
    // (lap 1, offset 32). Frame 2 goes to [64, 96); when it is committed
    // the producer has cleared the word at 96 (the next frame's commit
    // word), so the consumer, having read frame 2, must see "empty" there
    // until frame 3 is committed — never frame 1's stale bytes. (Under
    // loom, payload bytes reach the commit atomics when a grant is
    // committed: `DataRegion::touch_write`.) Without the clearing store in
    // `Producer::seal` this model fails.
    loom::model(|| {
        let (mut p, mut c) = ring();
        let t = thread::spawn(move || {
            let mut g = p.reserve_with_kind(48, 1).unwrap();
            g.fill(1);
            g[16..24].copy_from_slice(&97u64.to_le_bytes());
            g.commit_all();
            push(&mut p, 1, 2, false);
            push(&mut p, 1, 3, false);
            p
        });
        loop {
            if let Some(f) = c.peek().unwrap() {
                assert_eq!((f.kind(), f.len()), (1, 48));
                f.release();
                break;
            }
            thread::yield_now();
        }
        pop(&mut c, 1, 2, false);
        pop(&mut c, 1, 3, false);
        drop(t.join().unwrap());
    });
}

#[test]
fn readiness_probe_then_peek() {
    // has_frames is the same Acquire load of the next commit word as peek:
    // once it says true, the frame's bytes are visible.
    loom::model(|| {
        let (mut p, mut c) = ring();
        let t = thread::spawn(move || {
            push(&mut p, 5, 9, false);
            p
        });
        while !c.has_frames() {
            thread::yield_now();
        }
        let f = c.peek().unwrap().expect("has_frames said a frame is there");
        assert_eq!((f.kind(), f.len()), (9, 5));
        assert!(f.iter().all(|b| *b == 9));
        f.release();
        drop(t.join().unwrap());
    });
}
