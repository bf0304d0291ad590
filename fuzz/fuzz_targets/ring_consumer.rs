//! Lays arbitrary bytes over a ring's header and data region (heap storage)
//! and drives the consumer and the producer over it, interleaving further
//! "hostile peer" writes between operations. The ring must never panic,
//! loop forever or read out of bounds: every violation is a
//! `RingError::Corrupt` followed by `RingError::Poisoned`.
//!
//! One opcode forges a frame header whose commit word matches the
//! consumer's next poll (the ring's frames announce themselves), so torn
//! and forged frames are reached without guessing 8 matching bytes.
//!
//! Input format: byte 0 picks the capacity (64 << (b % 8)), bytes 1..=2 the
//! length of the initial scribble, then the scribble, then a stream of
//! one-byte opcodes with their operands.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmwire::ring::{HeapStorage, Ring, RingError, HEADER_LEN};

fuzz_target!(|input: &[u8]| {
    shmwire_fuzz_ring(input);
});

fn shmwire_fuzz_ring(input: &[u8]) {
    let Some((&cap_sel, rest)) = input.split_first() else {
        return;
    };
    let cap = 64usize << (cap_sel % 8);
    let storage = HeapStorage::new(cap);
    Ring::init(&storage, cap).unwrap();
    let mut producer = Ring::attach_producer(storage.clone()).ok();
    let mut consumer = Ring::attach_consumer(storage.clone()).ok();

    let (scribble_len, rest) = match rest {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]) as usize, rest),
        _ => (0, rest),
    };
    let n = scribble_len.min(rest.len()).min(HEADER_LEN + cap);
    let (scribble, mut ops) = rest.split_at(n);
    // Overwrite the start of the header + data with the scribble.
    storage.scribble(scribble);

    let mut poisoned_seen = false;
    while let Some((&op, tail)) = ops.split_first() {
        ops = tail;
        match op % 8 {
            // Consumer: peek and release (or not).
            0 | 1 => {
                if let Some(c) = consumer.as_mut() {
                    match c.peek() {
                        Ok(Some(f)) => {
                            // Touch every payload byte.
                            let sum: u32 = f.iter().map(|b| u32::from(*b)).sum();
                            std::hint::black_box(sum);
                            assert!(f.len() <= cap);
                            if op % 2 == 0 {
                                f.release();
                            } else {
                                f.release_deferred();
                            }
                        }
                        Ok(None) | Err(RingError::Closed) => {}
                        Err(RingError::Corrupt { .. }) | Err(RingError::Poisoned) => {
                            poisoned_seen = true;
                            assert!(c.is_poisoned());
                            assert_eq!(c.peek().unwrap_err(), RingError::Poisoned);
                        }
                        Err(e) => panic!("unexpected consumer error {e:?}"),
                    }
                }
            }
            // Producer: reserve a frame of operand-chosen length and commit
            // all of it, or (partial commit, deferred) only its first half.
            2 | 3 => {
                let len = ops.first().map_or(0, |b| usize::from(*b) * (cap / 64));
                ops = ops.get(1..).unwrap_or(&[]);
                if let Some(p) = producer.as_mut() {
                    match p.reserve(len) {
                        Ok(mut g) => {
                            g.fill(op);
                            if op % 2 == 0 {
                                g.commit_all();
                            } else {
                                g.commit_deferred(len / 2);
                            }
                        }
                        Err(RingError::Full) | Err(RingError::TooLarge { .. }) => {}
                        Err(RingError::Corrupt { .. }) | Err(RingError::Poisoned) => {
                            poisoned_seen = true;
                            assert!(p.is_poisoned());
                        }
                        Err(e) => panic!("unexpected producer error {e:?}"),
                    }
                }
            }
            // Hostile peer: overwrite 8 bytes at an operand-chosen offset.
            4 => {
                if ops.len() >= 10 {
                    let off = usize::from(u16::from_le_bytes([ops[0], ops[1]])) % (HEADER_LEN + cap);
                    let mut snapshot = snapshot(&storage, cap);
                    let end = (off + 8).min(snapshot.len());
                    snapshot[off..end].copy_from_slice(&ops[2..2 + (end - off)]);
                    storage.scribble(&snapshot);
                    ops = &ops[10..];
                }
            }
            // Hostile peer: forge a header whose commit word matches where
            // the consumer polls next (the published tail), with an
            // operand-chosen length and kind (a torn or forged frame).
            5 => {
                if ops.len() >= 5 {
                    let len = u32::from_le_bytes([ops[0], ops[1], ops[2], ops[3]]);
                    let kind = if ops[4] & 1 != 0 { u32::MAX } else { u32::from(ops[4]) };
                    let mut snapshot = snapshot(&storage, cap);
                    let tail = u64::from_le_bytes(
                        snapshot[TAIL_OFFSET..TAIL_OFFSET + 8].try_into().expect("8 bytes"),
                    );
                    let off = HEADER_LEN + (tail as usize & (cap - 1) & !15);
                    snapshot[off..off + 8].copy_from_slice(&tail.wrapping_add(1).to_le_bytes());
                    snapshot[off + 8..off + 12].copy_from_slice(&len.to_le_bytes());
                    snapshot[off + 12..off + 16].copy_from_slice(&kind.to_le_bytes());
                    storage.scribble(&snapshot);
                    ops = &ops[5..];
                }
            }
            // Flushes.
            6 => {
                if let Some(p) = producer.as_mut() {
                    p.flush();
                }
                if let Some(c) = consumer.as_mut() {
                    c.flush();
                }
            }
            // Re-attach over whatever the memory now says.
            _ => {
                if op & 0x80 != 0 {
                    drop(consumer.take());
                    consumer = Ring::attach_consumer(storage.clone()).ok();
                } else {
                    drop(producer.take());
                    producer = Ring::attach_producer(storage.clone()).ok();
                }
            }
        }
    }
    std::hint::black_box(poisoned_seen);
}

/// Offset of `tail` in the ring header (line 2).
const TAIL_OFFSET: usize = 256;

/// The current bytes of header + data.
fn snapshot(storage: &HeapStorage, cap: usize) -> Vec<u8> {
    let mut v = vec![0u8; HEADER_LEN + cap];
    storage.read_raw(&mut v);
    v
}
