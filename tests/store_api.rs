//! The store's client API against an embedded service (a thread of this
//! process; every client is its own shmwire connection): plasma's
//! client-test behaviours. `store_xproc.rs` repeats the cross-process ones
//! with real child processes.

mod store_common;

use std::time::{Duration, Instant};

use shmwire::store::{
    Notification, StoreClient, StoreConfig, StoreError, StoreService, DEFAULT_STORE_NAME,
};
use store_common::{checksum, contents, eventually, oid, Env, GUARD};

fn client(env: &Env) -> StoreClient {
    StoreClient::connect(&env.session, DEFAULT_STORE_NAME).unwrap()
}

#[test]
fn create_seal_get_with_contents_and_metadata() {
    let env = Env::new("basic");
    let _store = env.store(1 << 20);
    let a = client(&env);
    let b = client(&env);
    let data = contents(1, 1000);
    let mut w = a.create(oid(1, 0), 1000, b"meta").unwrap();
    assert_eq!(w.len(), 1000);
    assert_eq!(w.as_ptr() as usize % 64, 0);
    w.copy_from_slice(&data);
    // Unsealed: invisible to others.
    assert!(!b.contains(oid(1, 0)).unwrap());
    let got = b.get(&[oid(1, 0)], Duration::ZERO).unwrap();
    assert!(got[0].is_none());
    let sealed = w.seal().unwrap();
    assert_eq!(&sealed[..], &data[..]);
    assert!(b.contains(oid(1, 0)).unwrap());
    let got = b.get(&[oid(1, 0)], Duration::ZERO).unwrap();
    let buf = got[0].as_ref().unwrap();
    assert_eq!(checksum(buf), checksum(&data));
    assert_eq!(buf.metadata(), b"meta");
    assert_eq!(buf.id(), oid(1, 0));
    // Zero copy: both views are the same shared bytes (same arena offset).
    a.put(oid(1, 1), b"", b"").unwrap();
    let empty = b.get(&[oid(1, 1)], GUARD).unwrap();
    assert_eq!(empty[0].as_ref().unwrap().len(), 0);
}

#[test]
fn get_timeouts_missing_and_sealed_later() {
    let env = Env::new("gettimeout");
    let _store = env.store(1 << 20);
    let a = client(&env);
    let b = client(&env);
    // Timeout 0 on a missing object: at once, None.
    assert!(a.get(&[oid(2, 0)], Duration::ZERO).unwrap()[0].is_none());
    // A timeout on a missing object: waits about that long, then None.
    let t = Instant::now();
    assert!(a.get(&[oid(2, 0)], Duration::from_millis(100)).unwrap()[0].is_none());
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Sealed later by another client while we wait.
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        b.put(oid(2, 1), b"later", b"").unwrap();
    });
    let got = a.get(&[oid(2, 1)], GUARD).unwrap();
    assert_eq!(got[0].as_deref().unwrap(), b"later");
    writer.join().unwrap();
}

#[test]
fn duplicate_create_seal_twice_abort_and_recreate() {
    let env = Env::new("errors");
    let _store = env.store(1 << 20);
    let a = client(&env);
    let b = client(&env);
    let w = a.create(oid(3, 0), 10, b"").unwrap();
    match b.create(oid(3, 0), 10, b"") {
        Err(StoreError::ObjectExists { id }) => assert_eq!(id, oid(3, 0)),
        other => panic!("expected ObjectExists, got {other:?}"),
    }
    assert!(matches!(
        b.seal(oid(3, 0)),
        Err(StoreError::NotCreator { .. })
    ));
    a.seal(oid(3, 0)).unwrap();
    match w.seal() {
        Err(StoreError::ObjectAlreadySealed { id }) => assert_eq!(id, oid(3, 0)),
        other => panic!("expected ObjectAlreadySealed, got {other:?}"),
    }
    assert!(matches!(
        a.seal(oid(3, 9)),
        Err(StoreError::ObjectNotFound { .. })
    ));
    // Abort and create again, repeatedly; also after delete.
    for round in 0..20u8 {
        let mut w = a.create(oid(3, 1), 64, b"").unwrap();
        w.fill(round);
        if round % 2 == 0 {
            w.abort().unwrap();
        } else {
            drop(w); // drop = abort
        }
        assert!(!a.contains(oid(3, 1)).unwrap());
    }
    for round in 0..5u8 {
        a.put(oid(3, 2), &[round; 100], b"").unwrap();
        let got = b.get(&[oid(3, 2)], GUARD).unwrap();
        assert_eq!(got[0].as_deref().unwrap(), &[round; 100][..]);
        drop(got);
        a.delete(&[oid(3, 2)]).unwrap();
        eventually("deleted", || !a.contains(oid(3, 2)).unwrap());
    }
}

#[test]
fn delete_is_deferred_until_the_last_buffer_drops() {
    let env = Env::new("defer");
    let _store = env.store(1 << 20);
    let a = client(&env);
    let b = client(&env);
    a.put(oid(4, 0), b"held", b"").unwrap();
    let held = b.get(&[oid(4, 0)], GUARD).unwrap();
    // Deleting a missing object is no error.
    a.delete(&[oid(4, 0), oid(4, 99)]).unwrap();
    assert!(!a.contains(oid(4, 0)).unwrap());
    assert!(a.get(&[oid(4, 0)], Duration::ZERO).unwrap()[0].is_none());
    // Still readable through the held buffer; the id is not free yet.
    assert_eq!(held[0].as_deref().unwrap(), b"held");
    assert!(matches!(
        a.create(oid(4, 0), 1, b""),
        Err(StoreError::ObjectInUse { holders: 1, .. })
    ));
    drop(held);
    eventually("the deferred delete", || {
        a.create(oid(4, 0), 1, b"").map(drop).is_ok()
    });
    // Delete of an unsealed object is refused.
    let _w = a.create(oid(4, 1), 1, b"").unwrap();
    assert!(matches!(
        b.delete(&[oid(4, 1)]),
        Err(StoreError::ObjectNotSealed { .. })
    ));
}

#[test]
fn multi_get_returns_in_order_with_gaps() {
    let env = Env::new("multiget");
    let _store = env.store(1 << 20);
    let a = client(&env);
    for i in 0..5 {
        if i != 2 {
            a.put(oid(5, i), &contents(u64::from(i), 300), &[i as u8])
                .unwrap();
        }
    }
    let ids: Vec<_> = (0..5).map(|i| oid(5, i)).collect();
    let got = a.get(&ids, Duration::from_millis(20)).unwrap();
    for (i, g) in got.iter().enumerate() {
        if i == 2 {
            assert!(g.is_none());
        } else {
            let g = g.as_ref().unwrap();
            assert_eq!(&g[..], &contents(i as u64, 300)[..]);
            assert_eq!(g.metadata(), &[i as u8]);
        }
    }
}

const SLOT: u64 = 64 * 1024;

/// A store of ten 64 KiB slots filled by `a` with objects 0..10 in order.
fn full_store(env: &Env, tag: u8) -> (StoreService, StoreClient) {
    let store = env.store(10 * SLOT);
    let a = client(env);
    for i in 0..10 {
        a.put(oid(tag, i), &contents(u64::from(i), SLOT as usize), b"")
            .unwrap();
    }
    (store, a)
}

#[test]
fn lru_eviction_takes_the_two_oldest_by_the_twenty_percent_rule() {
    let env = Env::new("lru20");
    let (_store, a) = full_store(&env, 6);
    a.put(oid(6, 100), &[1; SLOT as usize], b"").unwrap();
    assert!(!a.contains(oid(6, 0)).unwrap());
    assert!(!a.contains(oid(6, 1)).unwrap());
    for i in 2..10 {
        assert!(a.contains(oid(6, i)).unwrap(), "object {i}");
    }
    // The freed second slot takes the next object without evicting.
    a.put(oid(6, 101), &[2; SLOT as usize], b"").unwrap();
    assert!(a.contains(oid(6, 2)).unwrap());
    // Evicting explicitly also goes oldest first.
    assert_eq!(a.evict(1).unwrap(), SLOT);
    assert!(!a.contains(oid(6, 2)).unwrap());
    assert!(a.contains(oid(6, 3)).unwrap());
}

#[test]
fn refresh_and_held_objects_are_protected_from_eviction() {
    let env = Env::new("refresh");
    let (_store, a) = full_store(&env, 7);
    let b = client(&env);
    a.refresh(&[oid(7, 0)]).unwrap();
    let held = b.get(&[oid(7, 1)], GUARD).unwrap();
    a.pin(&[oid(7, 2)]).unwrap();
    a.put(oid(7, 100), &[1; SLOT as usize], b"").unwrap();
    for i in [0, 1, 2] {
        assert!(a.contains(oid(7, i)).unwrap(), "object {i} protected");
    }
    assert!(!a.contains(oid(7, 3)).unwrap());
    assert!(!a.contains(oid(7, 4)).unwrap());
    // Evict everything evictable: the held and pinned objects stay.
    a.evict(u64::MAX).unwrap();
    assert!(a.contains(oid(7, 1)).unwrap() && a.contains(oid(7, 2)).unwrap());
    assert_eq!(held[0].as_deref().unwrap(), &contents(1, SLOT as usize)[..]);
    a.unpin(&[oid(7, 2)]).unwrap();
    drop(held);
    eventually("released objects evictable", || {
        a.evict(u64::MAX).unwrap();
        !a.contains(oid(7, 1)).unwrap() && !a.contains(oid(7, 2)).unwrap()
    });
}

#[test]
fn store_full_when_everything_is_held() {
    let env = Env::new("full");
    let _store = env.store(4 * SLOT);
    let a = client(&env);
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(a.create(oid(8, i), SLOT, b"").unwrap()); // unsealed
    }
    match a.create(oid(8, 9), 100, b"") {
        Err(StoreError::StoreFull {
            id,
            needed,
            capacity,
            unevictable,
        }) => {
            assert_eq!(id, oid(8, 9));
            assert_eq!((needed, capacity, unevictable), (128, 4 * SLOT, 4 * SLOT));
        }
        other => panic!("expected StoreFull, got {other:?}"),
    }
    let sealed: Vec<_> = held.into_iter().map(|w| w.seal().unwrap()).collect();
    assert!(matches!(
        a.create(oid(8, 9), 100, b""),
        Err(StoreError::StoreFull { .. })
    ));
    drop(sealed);
    eventually("room after release", || {
        a.create(oid(8, 9), 100, b"").map(drop).is_ok()
    });
}

#[test]
fn fallback_directory_takes_what_does_not_fit() {
    let env = Env::new("fallback");
    let dir = tempfile::tempdir().unwrap();
    let store = StoreService::start(
        &env.session,
        StoreConfig::new(2 * SLOT).fallback_dir(dir.path()),
    )
    .unwrap();
    let a = client(&env);
    let b = client(&env);
    let held = a.create(oid(9, 0), 2 * SLOT, b"").unwrap();
    // Larger than the arena and nothing evictable: into a file.
    let data = contents(9, 3 * SLOT as usize + 5);
    a.put(oid(9, 1), &data, b"fb").unwrap();
    // Created in place too (the creator writes through its descriptor).
    let data2 = contents(10, 2 * SLOT as usize + 1);
    let mut w = a.create(oid(9, 2), data2.len() as u64, b"fb2").unwrap();
    w.copy_from_slice(&data2);
    drop(w.seal().unwrap());
    // The files have no name: the directory stays empty.
    let n_files = || std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(n_files(), 0);
    let got = b
        .get(&[oid(9, 1), oid(9, 0), oid(9, 2)], Duration::ZERO)
        .unwrap();
    let buf = got[0].as_ref().unwrap();
    assert_eq!(checksum(buf), checksum(&data));
    assert_eq!(buf.metadata(), b"fb");
    assert!(got[1].is_none(), "unsealed");
    assert_eq!(checksum(got[2].as_ref().unwrap()), checksum(&data2));
    eventually("two fallback objects counted", || {
        store.snapshot().stats.fallback_objects == 2
    });
    // Deleted while held: the bytes stay readable until dropped.
    drop(held);
    a.delete(&[oid(9, 1), oid(9, 2)]).unwrap();
    assert_eq!(checksum(got[0].as_ref().unwrap()), checksum(&data));
    drop(got);
    eventually("the fallback files freed", || {
        store.snapshot().stats.fallback_objects == 0
    });
    assert_eq!(n_files(), 0);
}

#[test]
fn fallback_on_a_missing_directory_is_refused_at_start() {
    let env = Env::new("fallbackbad");
    match StoreService::start(
        &env.session,
        StoreConfig::new(SLOT).fallback_dir("/nonexistent/shmwire-store"),
    ) {
        Err(e @ StoreError::Io { .. }) => {
            // The error names the directory (an attack found it did not).
            let text = format!("{e}: {}", std::error::Error::source(&e).unwrap());
            assert!(text.contains("/nonexistent/shmwire-store"), "{text}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a missing fallback directory was accepted"),
    }
}

#[test]
fn subscribers_hear_seals_and_deletes_and_late_ones_hear_existing() {
    let env = Env::new("subscribe");
    let _store = env.store(10 * SLOT);
    let a = client(&env);
    a.put(oid(10, 0), b"before", b"m0").unwrap();
    let mut early = a.subscribe().unwrap();
    match early.recv_timeout(GUARD).unwrap() {
        Some(Notification::Sealed {
            id,
            data_size,
            metadata,
        }) => {
            assert_eq!((id, data_size, metadata), (oid(10, 0), 6, b"m0".to_vec()));
        }
        other => panic!("expected the existing object, got {other:?}"),
    }
    a.put(oid(10, 1), b"after", b"").unwrap();
    a.delete(&[oid(10, 0)]).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(early.recv_timeout(GUARD).unwrap().expect("a notification"));
    }
    assert!(matches!(&seen[0], Notification::Sealed { id, data_size: 5, .. } if *id == oid(10, 1)));
    assert_eq!(seen[1], Notification::Deleted { id: oid(10, 0) });
    // A late subscriber first hears the object that exists now.
    let mut late = a.subscribe().unwrap();
    match late.recv_timeout(GUARD).unwrap() {
        Some(Notification::Sealed { id, .. }) => assert_eq!(id, oid(10, 1)),
        other => panic!("expected the existing object, got {other:?}"),
    }
    assert!(late
        .recv_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
    // Evictions are deletions too.
    a.evict(u64::MAX).unwrap();
    assert_eq!(
        late.recv_timeout(GUARD).unwrap(),
        Some(Notification::Deleted { id: oid(10, 1) })
    );
}

#[test]
fn service_shutdown_fails_later_calls_and_restart_starts_clean() {
    let env = Env::new("restart");
    let store = env.store(SLOT);
    let a = client(&env);
    a.put(oid(11, 0), b"x", b"").unwrap();
    let held = a.get(&[oid(11, 0)], GUARD).unwrap();
    store.shutdown().unwrap();
    let t = Instant::now();
    assert!(matches!(
        a.contains(oid(11, 0)),
        Err(StoreError::Recv(_) | StoreError::Send(_) | StoreError::Connect(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    // The held buffer is still readable: its mapping outlives the service.
    assert_eq!(held[0].as_deref().unwrap(), b"x");
    drop(held);
    let _store = env.store(SLOT);
    let c = client(&env);
    assert!(!c.contains(oid(11, 0)).unwrap());
    c.put(oid(11, 0), b"y", b"").unwrap();
    // The store's segments are memfds: none has a name in the session,
    // and only the running service's arena is held by this process.
    let named = env
        .session
        .segment_names()
        .unwrap()
        .into_iter()
        .filter(|n| {
            ["store-", "sidx-", "sref-"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .count();
    assert_eq!(named, 0);
}

/// Connecting where no store runs says so, naming the store (before, the
/// error was the directory's "no live worker named …").
#[test]
fn connecting_where_no_store_runs_says_so() {
    let env = Env::new("nostore");
    match StoreClient::connect(&env.session, DEFAULT_STORE_NAME) {
        Err(e @ StoreError::NotRunning { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("no object store") && m.contains(DEFAULT_STORE_NAME),
                "{m}"
            );
        }
        other => panic!("expected NotRunning, got {:?}", other.map(|_| ())),
    }
}

/// Fault B (found by a review, 2026-12-05): every client holding an object
/// through the service (a `get`'s buffer, a pin) costs the service an entry
/// in that object's holders, and nothing charged them (50 raw clients each
/// getting the same 100,000 objects grew the service by 154 MiB). Now each
/// (object, client) is charged `HOLDER_OVERHEAD` against the metadata
/// capacity: with every object pinned, clients that each get all of them
/// fill it, the next one's `get` fails `MetadataFull` (the part already
/// answered given back), and a client letting go makes room again.
#[test]
fn holders_are_charged_to_the_metadata_capacity_and_a_get_beyond_it_fails() {
    use shmwire::store::{ENTRY_OVERHEAD, HOLDER_OVERHEAD};
    const N: u32 = 100;
    const CAP: u64 = 160 << 10;
    let env = Env::new("holders");
    let mut cfg = StoreConfig::new(1 << 20).metadata_capacity(CAP);
    // Every get through the service (the shared index's holds are the
    // clients' own slots, not the service's heap).
    cfg.index_entries = 0;
    let store = StoreService::start(&env.session, cfg).unwrap();
    let a = client(&env);
    let ids: Vec<_> = (0..N).map(|i| oid(21, i)).collect();
    for id in &ids {
        a.put(*id, b"x", b"").unwrap();
    }
    // Pinned: nothing can be evicted to make room.
    a.pin(&ids).unwrap();
    let pinned = u64::from(N) * (ENTRY_OVERHEAD + HOLDER_OVERHEAD);
    let per_client = u64::from(N) * HOLDER_OVERHEAD;
    let fit = ((CAP - pinned) / per_client) as usize;
    assert!((2..10).contains(&fit), "{fit}");
    let mut kept = Vec::new();
    let err = loop {
        let c = client(&env);
        match c.get(&ids, Duration::ZERO) {
            Ok(bufs) => {
                assert!(bufs.iter().all(Option::is_some));
                kept.push((c, bufs));
            }
            Err(e) => break e,
        }
        assert!(
            kept.len() <= fit,
            "more holders than the capacity has room for"
        );
    };
    assert!(
        matches!(err, StoreError::MetadataFull { needed, capacity: CAP, .. } if needed == HOLDER_OVERHEAD),
        "{err:?}"
    );
    assert_eq!(kept.len(), fit);
    eventually("the snapshot shows the charges", || {
        let s = store.snapshot().stats;
        s.metadata_used == pinned + fit as u64 * per_client && s.metadata_capacity == CAP
    });
    // Objects still all there and readable by their holders.
    assert!(kept
        .iter()
        .all(|(_, b)| b.iter().all(|b| b.as_deref() == Some(&b"x"[..]))));
    // One client lets go: another gets them all.
    drop(kept.pop());
    let d = client(&env);
    eventually("room after a client let go", || {
        d.get(&ids, Duration::ZERO)
            .is_ok_and(|b| b.iter().all(Option::is_some))
    });
    // Disconnects give the charges back.
    drop(kept);
    drop(d);
    a.unpin(&ids).unwrap();
    eventually("every holder's charge given back", || {
        store.snapshot().stats.metadata_used == u64::from(N) * ENTRY_OVERHEAD
    });
}
