//! Hostile peers of the store: a client that sends garbage, one that
//! scribbles over the whole arena, a process that scribbles over the shared
//! index, a client that scribbles over its own reference slots, and a
//! fallback directory that vanishes. Each may hurt itself, never the
//! service or other clients.

mod store_common;

use std::time::Duration;

use shmwire::ids::ObjectId;
use shmwire::ids::{NodeId, WorkerId};
use shmwire::store::{
    ObjectBuffer, StoreClient, StoreConfig, StoreError, StoreService, DEFAULT_STORE_NAME,
};
use shmwire::transport::{Connection, Connector, RecvError, TransportConfig};
use store_common::{
    contents, eventually, held_by_one, memfd_links, oid, open_memfd, Env, MemfdMap, GUARD,
};

fn client(env: &Env) -> StoreClient {
    StoreClient::connect(&env.session, DEFAULT_STORE_NAME).unwrap()
}

#[test]
fn garbage_requests_drop_only_the_sender() {
    let env = Env::new("garbage");
    let _store = env.store(1 << 20);
    let good = client(&env);
    good.put(oid(1, 0), b"fine", b"").unwrap();
    let token = shmwire::node::load_or_create_token(&env.session).unwrap();
    for junk in [&b""[..], &[0xAB; 7][..], &[0u8; 64][..], &[0xff; 4096][..]] {
        let mut raw = Connector::new(
            TransportConfig::new(WorkerId::from_random(), token),
            NodeId::nil(),
        )
        .with_session(
            &env.session,
            std::sync::Arc::new(shmwire::node::Directory::for_session(&env.session).unwrap()),
        )
        .connect_name(DEFAULT_STORE_NAME)
        .unwrap();
        raw.send(junk).unwrap();
        // The service hangs up on it, saying why (its farewell).
        match raw.recv_timeout(GUARD) {
            // (64 zero bytes decode as a `Hello` of version 0.)
            Err(RecvError::CutOff { reason, .. })
                if reason.starts_with("a request that does not decode: ")
                    || reason.starts_with("store protocol version 0;") => {}
            other => panic!(
                "{} bytes of junk: expected the service to drop us, saying why, got {other:?}",
                junk.len()
            ),
        };
    }
    // Everyone else is unaffected.
    let got = good.get(&[oid(1, 0)], GUARD).unwrap();
    assert_eq!(got[0].as_deref().unwrap(), b"fine");
    good.put(oid(1, 1), b"still", b"").unwrap();
}

#[test]
fn a_client_scribbling_over_the_arena_hurts_only_object_contents() {
    let env = Env::new("scribble");
    let store = env.store(1 << 20);
    let a = client(&env);
    let data = contents(3, 5000);
    a.put(oid(2, 0), &data, b"m").unwrap();
    // A hostile process maps the arena (through /proc/<pid>/fd: it has no
    // name) and overwrites all of it.
    let seg = open_memfd(std::process::id(), store.arena_segment());
    // SAFETY: the payload is payload_len bytes of a live mapping;
    // scribbling on shared memory is the point of the test.
    unsafe { std::ptr::write_bytes(seg.payload_ptr(), 0xEE, seg.payload_len()) };
    // The service keeps no state in the arena: everything still works, the
    // object reads as scribbled (same length, same metadata), and new
    // objects are correct.
    let got = a.get(&[oid(2, 0)], GUARD).unwrap();
    let buf = got[0].as_ref().unwrap();
    assert_eq!(buf.len(), data.len());
    assert_eq!(buf.metadata(), b"m");
    assert!(buf.iter().all(|b| *b == 0xEE));
    drop(got);
    a.delete(&[oid(2, 0)]).unwrap();
    let fresh = contents(4, 70_000);
    a.put(oid(2, 1), &fresh, b"").unwrap();
    let b = client(&env);
    assert_eq!(
        b.get(&[oid(2, 1)], GUARD).unwrap()[0].as_deref().unwrap(),
        &fresh[..]
    );
}

#[test]
fn a_vanished_fallback_directory_gives_out_of_disk() {
    let env = Env::new("outofdisk");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fallback");
    std::fs::create_dir(&dir).unwrap();
    let _store =
        StoreService::start(&env.session, StoreConfig::new(64 * 1024).fallback_dir(&dir)).unwrap();
    let a = client(&env);
    let _held = a.create(oid(3, 0), 64 * 1024, b"").unwrap();
    std::fs::remove_dir(&dir).unwrap();
    match a.create(oid(3, 1), 1000, b"") {
        Err(StoreError::OutOfDisk { id, size }) => {
            assert_eq!(id, oid(3, 1));
            assert_eq!(size, 1024);
        }
        other => panic!("expected OutOfDisk, got {other:?}"),
    }
    // The store itself goes on.
    drop(_held);
    eventually("room after the abort", || {
        a.create(oid(3, 1), 1000, b"").map(drop).is_ok()
    });
    assert!(a.get(&[oid(3, 0)], Duration::ZERO).unwrap()[0].is_none());
}

/// Unmounts the test's tmpfs when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_session_tmpfs_does_not_touch_the_memfd_arena() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    // Needs CAP_SYS_ADMIN (the project's machines and CI run as root);
    // elsewhere there is no small file system to fill, so say so and stop.
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a 1 MiB tmpfs here (not root)");
        return;
    }
    let _umount = Mount(mnt.clone());
    let session = shmwire::shm::Session::open_in(mnt.join("root"), "full").unwrap();
    // The arena, index and slots are sealed memfds: they do not live in
    // the session's (1 MiB) file system, and their pages are reserved when
    // they are made, so a 4 MiB store starts there and is usable to its
    // last byte (a memfd that cannot be reserved would be `ArenaReserve`
    // at start, never SIGBUS later).
    let store = StoreService::start(&session, StoreConfig::new(4 << 20)).unwrap();
    let a = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    a.put(oid(4, 0), &contents(5, 4 << 20), b"").unwrap();
    let got = a.get(&[oid(4, 0)], GUARD).unwrap();
    assert_eq!(got[0].as_deref().unwrap(), &contents(5, 4 << 20)[..]);
    drop(got);
    drop(a);
    store.shutdown().unwrap();
    // No segment of the store ever had a name there.
    assert!(session.segment_names().unwrap().is_empty());
    session.remove_all().unwrap();
}

/// Overwrites `len` bytes at byte `at` of a segment's payload.
fn scribble(seg: &MemfdMap, at: usize, bytes: &[u8]) {
    assert!(at + bytes.len() <= seg.payload_len());
    // SAFETY: the range lies inside the live mapping (asserted);
    // scribbling on shared memory is the point of the test.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.payload_ptr().add(at), bytes.len())
    };
}

/// The whole payload of a segment.
fn read_all(seg: &MemfdMap) -> Vec<u8> {
    let mut out = vec![0u8; seg.payload_len()];
    // SAFETY: payload_len bytes of a live mapping, copied out.
    unsafe { std::ptr::copy_nonoverlapping(seg.payload_ptr(), out.as_mut_ptr(), out.len()) };
    out
}

/// Connects a new client of `store` and maps its reference-slot memfd (the
/// one `sref-<tag>-` memfd of this process that appeared with it), as
/// another process could through `/proc/<pid>/fd`.
fn client_and_its_slots(env: &Env, store: &StoreService) -> (StoreClient, MemfdMap) {
    // This store's slot memfds are labelled `sref-<tag>-<client>`.
    let sref = format!(
        "sref-{}-",
        store.arena_segment().strip_prefix("store-").unwrap()
    );
    let me = std::process::id();
    let before: Vec<String> = memfd_links(me, &sref).into_iter().map(|l| l.1).collect();
    let c = client(env);
    let name = memfd_links(me, &sref)
        .into_iter()
        .map(|l| l.1)
        .find(|n| !before.contains(n))
        .expect("the new client's slot memfd");
    (c, open_memfd(me, &name))
}

/// Word `i` of a slot segment (word 0: the client's total).
fn slot_word(slots: &MemfdMap, i: usize) -> u64 {
    u64::from_le_bytes(read_all(slots)[i * 8..i * 8 + 8].try_into().unwrap())
}

/// A named way of scribbling on a segment.
type Scribbler<'a> = (&'a str, Box<dyn Fn(&MemfdMap) + 'a>);

#[test]
fn a_scribbled_index_gives_the_slow_path_never_wrong_data() {
    const N: u32 = 24;
    const ENTRY: usize = 128;
    let env = Env::new("idxscribble");
    let store = env.store(1 << 20);
    let a = client(&env);
    let b = client(&env);
    assert!(b.uses_index(), "the fast path is on by default");
    let data = |i: u32| contents(u64::from(i) + 40, 100 + i as usize * 37);
    for i in 0..N {
        a.put(oid(5, i), &data(i), &[i as u8; 3]).unwrap();
    }
    // Every object, its bytes and metadata; a missing one is missing.
    let check = |c: &StoreClient| {
        for i in 0..N {
            let got = c.get(&[oid(5, i)], Duration::ZERO).unwrap();
            let buf = got[0].as_ref().expect("a sealed object is found");
            assert_eq!(&buf[..], &data(i)[..], "object {i}");
            assert_eq!(buf.metadata(), &[i as u8; 3], "object {i}");
            assert!(c.contains(oid(5, i)).unwrap());
        }
        assert!(c.get(&[oid(5, 999)], Duration::ZERO).unwrap()[0].is_none());
        assert!(!c.contains(oid(5, 999)).unwrap());
    };
    check(&b);
    // A hostile process opens the index for writing (clients themselves
    // map it read-only) and scribbles on it in several ways.
    let index_name = store.index_segment().expect("an index").to_owned();
    let seg = open_memfd(std::process::id(), &index_name);
    let clean = read_all(&seg);
    let entries = (clean.len() - ENTRY) / ENTRY;
    let word = |e: usize, w: usize| ENTRY + e * ENTRY + w * 8;
    let valid: Vec<usize> = (0..entries)
        .filter(|e| clean[word(*e, 7)] == 1) // state byte: sealed
        .collect();
    assert!(valid.len() >= 2, "objects are published in the index");
    let garbage = contents(99, clean.len());
    let patterns: Vec<Scribbler<'_>> = vec![
        (
            "random bytes everywhere",
            Box::new(|s| scribble(s, 0, &garbage)),
        ),
        (
            "all zero",
            Box::new(|s| scribble(s, 0, &vec![0; clean.len()])),
        ),
        (
            "every seq stuck odd",
            Box::new(|s| {
                for e in 0..entries {
                    let seq = u64::from_le_bytes(clean[word(e, 0)..word(e, 1)].try_into().unwrap());
                    scribble(s, word(e, 0), &(seq | 1).to_le_bytes());
                }
            }),
        ),
        (
            "entries moved one position on",
            Box::new(|s| scribble(s, ENTRY + ENTRY, &clean[ENTRY..clean.len() - ENTRY])),
        ),
        (
            "two objects' offsets and sizes swapped",
            Box::new(|s| {
                let (x, y) = (valid[0], valid[1]);
                scribble(s, word(x, 5), &clean[word(y, 5)..word(y, 7)]);
                scribble(s, word(y, 5), &clean[word(x, 5)..word(x, 7)]);
            }),
        ),
        (
            "offsets pointing outside the arena",
            Box::new(|s| {
                for e in &valid {
                    scribble(s, word(*e, 5), &(u64::MAX - 63).to_le_bytes());
                }
            }),
        ),
        (
            "header: heartbeat and state garbage",
            Box::new(|s| scribble(s, 0, &garbage[..ENTRY])),
        ),
    ];
    for (what, apply) in &patterns {
        apply(&seg);
        // Other clients (a new one too) still get every object right,
        // through the service; bounded retries, no hang, no crash.
        let t = std::time::Instant::now();
        check(&b);
        check(&client(&env));
        assert!(t.elapsed() < GUARD, "{what}: took {:?}", t.elapsed());
        scribble(&seg, 0, &clean);
    }
    // The service is unaffected and the index serves again once clean.
    check(&b);
    a.put(oid(5, 500), b"after", b"").unwrap();
    assert_eq!(
        b.get(&[oid(5, 500)], GUARD).unwrap()[0].as_deref().unwrap(),
        b"after"
    );
}

#[test]
fn a_client_scribbling_its_own_slots_only_pins_objects_until_it_leaves() {
    const SLOT: u64 = 64 * 1024;
    let env = Env::new("slotscribble");
    let store = env.store(4 * SLOT);
    let a = client(&env);
    for i in 0..4 {
        a.put(oid(6, i), &contents(u64::from(i), SLOT as usize), b"")
            .unwrap();
    }
    let (hostile, slots) = client_and_its_slots(&env, &store);
    // Claims to hold everything.
    scribble(&slots, 0, &vec![0xff; slots.payload_len()]);
    // Like a client holding every buffer: nothing can be evicted...
    assert!(matches!(
        a.put(oid(6, 10), &contents(10, SLOT as usize), b""),
        Err(StoreError::StoreFull { .. })
    ));
    // ...but nobody reads wrong data.
    let b = client(&env);
    for i in 0..4 {
        let got = b.get(&[oid(6, i)], GUARD).unwrap();
        assert_eq!(
            got[0].as_deref().unwrap(),
            &contents(u64::from(i), SLOT as usize)[..]
        );
    }
    // Its client puts every slot back from its private tally (it holds
    // nothing)...
    // (The segment's first 64 bytes hold the client's total, then the
    // slots: the scribble raised the total too, and it is put back with
    // them, counting as one.)
    assert_eq!(
        hostile.repair_reference_slots(),
        (slots.payload_len() - 64) / 8 + 1,
        "every slot and the total differed"
    );
    assert_eq!(hostile.repair_reference_slots(), 0, "nothing left to do");
    eventually("room once the slots are put back", || {
        a.put(oid(6, 10), &contents(10, SLOT as usize), b"").is_ok()
    });
    // ...and its claims end with its connection.
    scribble(&slots, 0, &vec![0xff; slots.payload_len()]);
    assert!(matches!(
        a.put(oid(6, 11), &contents(11, SLOT as usize), b""),
        Err(StoreError::StoreFull { .. })
    ));
    drop(slots);
    drop(hostile);
    eventually("room once the scribbler is gone", || {
        a.put(oid(6, 11), &contents(11, SLOT as usize), b"").is_ok()
    });
}

/// A client's total (the count of its references the service reads
/// before its slots) that another process lowered to 0 under a held
/// reference, and that the release then wrapped below 0, is put back by
/// the client's repair: until then the client's next take would have
/// wrapped it to 0 references again (found by the attack on `08c4269`:
/// an object freed while held, the buffer reading another object's
/// bytes). After the repair a take is seen: a delete of the object waits
/// for the buffer, and the buffer keeps its bytes.
#[test]
fn a_scribbled_total_is_put_back_by_the_repair() {
    const SIZE: usize = 64 * 1024;
    let env = Env::new("totalscribble");
    let store = env.store(8 * SIZE as u64);
    let b = client(&env);
    let (a, slots) = client_and_its_slots(&env, &store);
    let total = || slot_word(&slots, 0);
    let x = oid(8, 0);
    b.put(x, &contents(80, SIZE), b"x").unwrap();
    let held = a.get(&[x], GUARD).unwrap();
    assert_eq!(total() & 0xffff_ffff, 1, "one reference in the total");
    // Another process lowers the total under the reference; the release
    // wraps it below 0.
    scribble(&slots, 0, &0u64.to_le_bytes());
    drop(held);
    assert_eq!(total() & 0xffff_ffff, 0xffff_ffff);
    assert_eq!(a.repair_reference_slots(), 1, "the total, put back");
    assert_eq!(total() & 0xffff_ffff, 0);
    assert_eq!(a.repair_reference_slots(), 0, "nothing left to do");
    // A take is seen again.
    let held = a.get(&[x], GUARD).unwrap();
    b.delete(&[x]).unwrap();
    assert!(
        held_by_one(&b, x),
        "the held reference was hidden from the service"
    );
    for i in 1..12 {
        b.put(oid(8, i), &contents(80 + u64::from(i), SIZE), b"")
            .unwrap();
    }
    assert_eq!(held[0].as_deref().unwrap(), &contents(80, SIZE)[..]);
    drop(held);
    eventually("the deferred delete", || {
        b.create(x, 1, b"").map(drop).is_ok()
    });
}

/// Another process lowers a client's total under a held reference (which
/// hides it from the service): the periodic repair raises it back on its
/// second look — one look may be the client's own take or release in
/// flight, and raising then warned of another process for an honest
/// client (the attack on `fb26879`) — and the next delete sees the
/// reference.
#[test]
fn a_lowered_total_is_raised_by_the_second_repair() {
    const SIZE: usize = 64 * 1024;
    let env = Env::new("lowtotal");
    let store = env.store(8 * SIZE as u64);
    let b = client(&env);
    let (a, slots) = client_and_its_slots(&env, &store);
    let x = oid(12, 0);
    b.put(x, &contents(120, SIZE), b"x").unwrap();
    let held = a.get(&[x], GUARD).unwrap();
    let total = slot_word(&slots, 0);
    assert_eq!(total & 0xffff_ffff, 1);
    scribble(&slots, 0, &(total - 1).to_le_bytes());
    assert_eq!(a.repair_reference_slots(), 0, "raised on the first look");
    assert_eq!(a.repair_reference_slots(), 1, "not raised on the second");
    assert_eq!(slot_word(&slots, 0), total);
    assert_eq!(a.repair_reference_slots(), 0);
    deleted_under_the_hold(&b, x, held, &contents(120, SIZE));
}

/// `b` deletes `x`, which `held` (another client's get of it, bytes
/// `want`) holds through the index: the service sees the hold, the bytes
/// stay, and once the buffer is dropped the delete completes.
fn deleted_under_the_hold(
    b: &StoreClient,
    x: ObjectId,
    held: Vec<Option<ObjectBuffer>>,
    want: &[u8],
) {
    b.delete(&[x]).unwrap();
    assert!(
        held_by_one(b, x),
        "the held reference was hidden from the service"
    );
    assert_eq!(held[0].as_deref().unwrap(), want);
    drop(held);
    eventually("the deferred delete", || {
        b.create(x, 1, b"").map(drop).is_ok()
    });
}

/// Another process clears a client's touched-group bits (the words after
/// its total: which groups of entries it ever took a reference in) under
/// a held reference: the service would skip that client's slot. The
/// repair sets them back from the client's private copy, and the next
/// delete sees the reference again; bits another process sets cost slot
/// reads only and are left.
#[test]
fn cleared_touched_groups_are_set_back_by_the_repair() {
    const SIZE: usize = 64 * 1024;
    let env = Env::new("touchscribble");
    let store = env.store(8 * SIZE as u64);
    let b = client(&env);
    let (a, slots) = client_and_its_slots(&env, &store);
    let groups = || (1..=4).map(|w| slot_word(&slots, w)).collect::<Vec<_>>();
    let x = oid(11, 0);
    b.put(x, &contents(110, SIZE), b"x").unwrap();
    assert_eq!(groups().iter().map(|w| w.count_ones()).sum::<u32>(), 0);
    let held = a.get(&[x], GUARD).unwrap();
    let set = groups();
    assert_eq!(
        set.iter().map(|w| w.count_ones()).sum::<u32>(),
        1,
        "{set:x?}"
    );
    scribble(&slots, 8, &[0u8; 32]);
    assert_eq!(a.repair_reference_slots(), 1, "the groups, set back");
    assert_eq!(groups(), set);
    // Set by another process: left as they are (the service reads more).
    scribble(&slots, 8, &[0xffu8; 32]);
    assert_eq!(a.repair_reference_slots(), 0);
    deleted_under_the_hold(&b, x, held, &contents(110, SIZE));
}

/// Counts written so high that the next take would carry them to 0 — the
/// total at `u64::MAX`, every slot's count at 2^32 - 1 — never hide a
/// reference (the attack on `08c4269`: the take wrapped the total to 0
/// references, the service freed the object, the held buffer read another
/// object's bytes, with no repair in between). The take sees a count no
/// client reaches, gives its reference back, puts the words back from
/// its private tally and takes again: the service sees the reference.
#[test]
fn counts_written_to_wrap_never_hide_a_reference() {
    const SIZE: usize = 64 * 1024;
    let env = Env::new("wrapscribble");
    let store = env.store(8 * SIZE as u64);
    let b = client(&env);
    let (a, slots) = client_and_its_slots(&env, &store);
    for (round, scribbled) in [(0u32, "total"), (1, "slots")] {
        let x = oid(9, round);
        b.put(x, &contents(90 + u64::from(round), SIZE), b"x")
            .unwrap();
        if scribbled == "total" {
            scribble(&slots, 0, &u64::MAX.to_le_bytes());
        } else {
            let n = (slots.payload_len() - 64) / 8;
            let ones: Vec<u8> = (0..n).flat_map(|_| 0xffff_ffffu64.to_le_bytes()).collect();
            scribble(&slots, 64, &ones);
        }
        let held = a.get(&[x], GUARD).unwrap();
        assert_eq!(
            slot_word(&slots, 0) & 0xffff_ffff,
            1,
            "{scribbled}: the total counts the one held"
        );
        b.delete(&[x]).unwrap();
        assert!(
            held_by_one(&b, x),
            "{scribbled}: the held reference was hidden from the service"
        );
        // The other scribbled slots pin their entries' objects (as
        // documented) until the repair puts them back.
        a.repair_reference_slots();
        for i in 1..12 {
            b.put(
                oid(9, 100 * (round + 1) + i),
                &contents(u64::from(i), SIZE),
                b"",
            )
            .unwrap();
        }
        assert_eq!(
            held[0].as_deref().unwrap(),
            &contents(90 + u64::from(round), SIZE)[..],
            "{scribbled}: the held buffer's bytes"
        );
        drop(held);
        a.repair_reference_slots();
        eventually("the deferred delete", || {
            b.create(x, 1, b"").map(drop).is_ok()
        });
    }
}
