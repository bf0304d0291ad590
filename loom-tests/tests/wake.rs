//! Loom models of the sleep/wake handshake: no lost wake-up in either
//! direction, with the futex (modelled by a Mutex + Condvar with futex
//! semantics) and the eventfd (modelled as a counter). A lost wake-up makes
//! the sleeper block forever, which loom reports as a deadlock.
//!
//! The spin window is zero so every wait goes straight to the
//! announce / fence / re-check / sleep sequence.
#![cfg(shmwire_loom)]

use std::time::{Duration, Instant};

use loom::thread;
use shmwire::ring::{Ring, RingError};
use shmwire::wake::{EventFd, WaitStrategy, Waiter};

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn park() -> WaitStrategy {
    WaitStrategy::SpinPark {
        spin: Duration::ZERO,
    }
}

#[test]
fn consumer_sleeps_for_data_futex() {
    loom::model(|| {
        let (mut p, mut c) = Ring::heap(64).unwrap();
        let t = thread::spawn(move || {
            let mut g = p.reserve(1).unwrap();
            g[0] = 42;
            g.commit_all();
            p
        });
        let w = Waiter::new(park());
        let f = c.peek_blocking(&w, far()).unwrap();
        assert_eq!(&*f, &[42]);
        f.release();
        drop(t.join().unwrap());
    });
}

#[test]
fn producer_sleeps_for_room_futex() {
    loom::model(|| {
        let (mut p, mut c) = Ring::heap(64).unwrap();
        // Fill the ring: one 64-byte frame.
        let g = p.reserve(48).unwrap();
        g.commit_all();
        let t = thread::spawn(move || {
            let f = c.peek().unwrap().expect("prefilled frame");
            f.release();
            c
        });
        let w = Waiter::new(park());
        let g = p.reserve_blocking(1, 0, &w, far()).unwrap();
        g.commit_all();
        drop(t.join().unwrap());
    });
}

#[test]
fn consumer_sleeps_for_data_eventfd() {
    loom::model(|| {
        let (mut p, mut c) = Ring::heap(64).unwrap();
        let fd = EventFd::new().unwrap();
        p.set_peer_eventfd(fd.clone());
        let t = thread::spawn(move || {
            let g = p.reserve(1).unwrap();
            g.commit_all();
            p
        });
        let w = Waiter::new(WaitStrategy::EventFd {
            spin: Duration::ZERO,
        })
        .with_eventfd(fd);
        let f = c.peek_blocking(&w, far()).unwrap();
        f.release();
        drop(t.join().unwrap());
    });
}

#[test]
fn producer_sleeps_for_room_eventfd() {
    loom::model(|| {
        let (mut p, mut c) = Ring::heap(64).unwrap();
        let fd = EventFd::new().unwrap();
        c.set_peer_eventfd(fd.clone());
        let g = p.reserve(48).unwrap();
        g.commit_all();
        let t = thread::spawn(move || {
            let f = c.peek().unwrap().expect("prefilled frame");
            f.release();
            c
        });
        let w = Waiter::new(WaitStrategy::EventFd {
            spin: Duration::ZERO,
        })
        .with_eventfd(fd);
        let g = p.reserve_blocking(1, 0, &w, far()).unwrap();
        g.commit_all();
        drop(t.join().unwrap());
    });
}

#[test]
fn consumer_sleeping_sees_close() {
    // The producer closes without sending: the sleeping consumer is woken
    // by the close and reports Closed.
    loom::model(|| {
        let (p, mut c) = Ring::heap(64).unwrap();
        let t = thread::spawn(move || drop(p));
        let w = Waiter::new(park());
        assert_eq!(c.peek_blocking(&w, far()).unwrap_err(), RingError::Closed);
        t.join().unwrap();
    });
}

/// Three frames through a ring that holds two, both sides blocking on the
/// futex with a zero spin window, so the producer sleeps for room and the
/// consumer sleeps for data. With `batched`, commits and releases are
/// deferred: the blocking calls must publish them before they sleep (a full
/// ring makes the producer flush; an empty ring makes the consumer flush),
/// so neither side can sleep on work the other has not yet seen.
fn three_frames_both_sides_block(batched: bool) {
    loom::model(move || {
        let (mut p, mut c) = Ring::heap(64).unwrap();
        let t = thread::spawn(move || {
            let w = Waiter::new(park());
            for i in 0..3u8 {
                let mut g = p.reserve_blocking(16, 0, &w, far()).unwrap();
                g.fill(i);
                if batched {
                    g.commit_all_deferred();
                } else {
                    g.commit_all();
                }
            }
            // Dropping the producer publishes any last batch and closes.
        });
        let w = Waiter::new(park());
        for i in 0..3u8 {
            let f = c.peek_blocking(&w, far()).unwrap();
            assert!(f.iter().all(|b| *b == i));
            if batched {
                f.release_deferred();
            } else {
                f.release();
            }
        }
        assert_eq!(c.peek_blocking(&w, far()).unwrap_err(), RingError::Closed);
        t.join().unwrap();
    });
}

/// Both directions in one model (see [`three_frames_both_sides_block`]).
#[test]
fn both_sides_block_futex() {
    three_frames_both_sides_block(false);
}

/// Batching and sleeping together (see [`three_frames_both_sides_block`]).
#[test]
fn batched_blocking_both_sides_futex() {
    three_frames_both_sides_block(true);
}

/// A producer sleeping for room while the consumer's releases are below
/// its publish batch (`RELEASE_BATCH_DIVISOR`: a quarter of the capacity):
/// `release()` of the first, small frame publishes nothing, so the
/// producer may go to sleep on a `tail` that is behind; the consumer's
/// next release crosses the batch and publishes (and wakes). Then the
/// consumer sleeps for the producer's frame and the close.
#[test]
fn producer_sleeps_for_room_behind_a_lazy_release() {
    loom::model(|| {
        let (mut p, mut c) = Ring::heap(256).unwrap();
        // 32 + 208 bytes of 256: a frame of 32 no longer fits.
        let g = p.reserve(16).unwrap();
        g.commit_all();
        let g = p.reserve(192).unwrap();
        g.commit_all();
        let t = thread::spawn(move || {
            let w = Waiter::new(park());
            let f = c.peek().unwrap().expect("first prefilled frame");
            assert_eq!(f.len(), 16);
            // 32 bytes released, below the batch of 64: not published.
            f.release();
            let f = c.peek().unwrap().expect("second prefilled frame");
            assert_eq!(f.len(), 192);
            f.release();
            let f = c.peek_blocking(&w, far()).unwrap();
            assert_eq!(&*f, &[7]);
            f.release();
            assert_eq!(c.peek_blocking(&w, far()).unwrap_err(), RingError::Closed);
        });
        let w = Waiter::new(park());
        let mut g = p.reserve_blocking(1, 0, &w, far()).unwrap();
        g[0] = 7;
        g.commit_all();
        drop(p);
        t.join().unwrap();
    });
}
