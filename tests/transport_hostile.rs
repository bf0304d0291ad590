//! A hostile shared-memory peer rewriting frames it already committed
//! (time-of-check / time-of-use): the default message receive validates and
//! reads a private snapshot, so the peer's later writes never reach the
//! archived view — no panic, no UB, consistent values or a `Decode` error.
//!
//! The "peer" here is the sending connection's own mapping of the ring: the
//! listener and the caller map the ring segment separately, so in one process
//! the sender's grant pointer is a second mapping of the receiver's frame.
//! Writing through it after the commit is exactly what a hostile process
//! could do.

mod common;

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{allocs, cfg, env, id};
use shmwire::shm::Session;
use shmwire::spec::{self, Encoder, FunctionDescriptor, PushTaskRequest, TaskArg, TaskSpecBuilder};
use shmwire::transport::{
    connect_shm, connect_tcp, Connection, MessageConnection, RecvError, ShmConnection, ShmListener,
    ShmOptions, TcpListener,
};
use shmwire::wake::WaitStrategy;

const GUARD: Duration = Duration::from_secs(30);

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

/// A request with strings and vectors, so relative pointers matter.
fn request(seq: i64) -> PushTaskRequest {
    PushTaskRequest {
        intended_worker_id: id(1),
        task_spec: TaskSpecBuilder::new(FunctionDescriptor::python(
            "app.module",
            "Counter",
            "increment_by",
            "",
        ))
        .arg(TaskArg::value(vec![seq as u8; 48], b"pickle5".to_vec()))
        .build_normal_task(),
        sequence_number: seq,
        client_processed_up_to: -1,
        resource_mapping: Vec::new(),
    }
}

/// (server side, client side) of one shm connection in this process.
fn shm_pair(s: &Session) -> (ShmConnection, ShmConnection) {
    let opts = ShmOptions {
        ring_capacity: 1 << 16,
        ..ShmOptions::with_wait(WaitStrategy::spin_yield())
    };
    let mut listener = ShmListener::bind(s, cfg(1, s), opts.clone()).unwrap();
    let path = listener.socket_path().to_owned();
    let client_cfg = cfg(2, s);
    let session = s.clone();
    let client =
        std::thread::spawn(move || connect_shm(&session, &path, id(1), &client_cfg, &opts));
    let server = listener.accept_timeout(GUARD).unwrap();
    (server, client.join().unwrap().unwrap())
}

/// Sends `req` from `tx`, returning the address and length of the committed
/// payload in the sender's mapping of the ring.
fn send_and_locate(
    tx: &mut ShmConnection,
    enc: &mut Encoder,
    req: &PushTaskRequest,
) -> (usize, usize) {
    let len = enc.encoded_len(req).unwrap();
    let mut at = 0usize;
    tx.send_with(len, |buf| {
        at = buf.as_mut_ptr() as usize;
        enc.encode_into(req, buf)
    })
    .unwrap();
    (at, len)
}

/// Overwrites `len` bytes at `at` in the ring (as a hostile peer would),
/// with atomic byte stores.
fn scribble(at: usize, len: usize, byte: impl Fn(usize) -> u8) {
    for i in 0..len {
        // SAFETY: `at..at + len` is a committed frame's payload inside the
        // sender's live mapping of the ring (the connection outlives every
        // call); byte-wide atomic stores are valid for any alignment.
        unsafe { AtomicU8::from_ptr((at + i) as *mut u8) }.store(byte(i), Ordering::Relaxed);
    }
}

/// Everything the receiver reads from a request, deep (every pointer followed).
fn read_all(req: &spec::ArchivedPushTaskRequest) -> PushTaskRequest {
    spec::deserialize::<PushTaskRequest>(req).unwrap()
}

/// Where the argument's 48 data bytes of `request(seq)` lie in its encoding
/// (any value is valid there).
fn data_offset(enc: &mut Encoder, seq: i64) -> usize {
    let encoded = enc.to_vec(&request(seq)).unwrap();
    encoded
        .windows(48)
        .position(|w| w == [seq as u8; 48])
        .unwrap()
}

/// The next byte a scribbler rewrites (xorshift state `x`): mostly inside
/// the argument's data bytes at `data_at` (so many torn copies pass
/// validation and are read deeply), one write in 64 anywhere in the `len`
/// bytes (pointers, lengths, tags). Returns (offset, value).
fn next_write(x: &mut u32, len: usize, data_at: usize) -> (usize, u8) {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    let i = if *x & 63 != 0 {
        data_at + (*x as usize >> 3) % 48
    } else {
        *x as usize % len
    };
    (i, (*x >> 8) as u8)
}

/// After an attack the connection is still in sync: an untouched request
/// arrives intact.
fn assert_in_sync(tx: &mut ShmConnection, rx: &mut ShmConnection, enc: &mut Encoder, seq: i64) {
    let want = request(seq);
    send_and_locate(tx, enc, &want);
    assert_eq!(
        rx.recv_message_with::<PushTaskRequest, _>(GUARD, read_all)
            .unwrap(),
        want
    );
}

#[test]
fn overwrite_after_validation_never_reaches_the_snapshot() {
    let env = env("hostile-snap");
    let (mut rx, mut tx) = shm_pair(&env.0);
    let mut enc = Encoder::new();

    // Control: the sender's pointer really aliases the receiver's frame —
    // bytes scribbled before the receive are what the receiver sees.
    let (at, len) = send_and_locate(&mut tx, &mut enc, &request(0));
    scribble(at, len, |_| 0xA5);
    {
        let frame = rx.recv_timeout(GUARD).unwrap();
        assert_eq!(frame.len(), len);
        assert!(
            frame.iter().all(|&b| b == 0xA5),
            "second mapping aliases the frame"
        );
    }

    // The attack: validation passes, then the peer rewrites the frame (every
    // relative pointer and length becomes 0xFF…) before the receiver reads.
    for seq in 1..=20i64 {
        let want = request(seq);
        let (at, len) = send_and_locate(&mut tx, &mut enc, &want);
        let got = rx
            .recv_message_with::<PushTaskRequest, _>(GUARD, |req| {
                scribble(
                    at,
                    len,
                    |i| if i % 2 == 0 { 0xFF } else { (seq as u8) ^ 0x5A },
                );
                read_all(req)
            })
            .unwrap();
        assert_eq!(got, want, "the snapshot is the frame as committed");
    }

    // The same through the non-blocking and recipient-checked receives.
    let want = request(21);
    let (at, len) = send_and_locate(&mut tx, &mut enc, &want);
    let got = loop {
        if let Some(got) = rx
            .try_recv_message_with::<PushTaskRequest, _>(|req| {
                scribble(at, len, |_| 0xFF);
                read_all(req)
            })
            .unwrap()
        {
            break got;
        }
    };
    assert_eq!(got, want);
    let want = request(22);
    let (at, len) = send_and_locate(&mut tx, &mut enc, &want);
    let got = rx
        .recv_push_task_with(id(1), GUARD, |req| {
            scribble(at, len, |_| 0);
            read_all(req)
        })
        .unwrap();
    assert_eq!(got, want);

    // A frame corrupted before the copy is refused, and the connection goes on.
    let (at, len) = send_and_locate(&mut tx, &mut enc, &request(23));
    scribble(at, len, |i| (i as u8).wrapping_mul(31) | 0x80);
    assert!(matches!(
        rx.recv_message_with::<PushTaskRequest, _>(GUARD, read_all),
        Err(RecvError::Decode(_))
    ));
    assert_in_sync(&mut tx, &mut rx, &mut enc, 24);
    assert!(rx.frames_shared());
}

#[test]
fn concurrent_scribbler_yields_valid_views_or_decode_errors() {
    // A second thread rewrites the frame with changing bytes *while* the
    // receiver copies, validates and reads it: torn snapshots must be
    // refused or read consistently, never panic or read out of bounds.
    let env = env("hostile-race");
    let (mut rx, mut tx) = shm_pair(&env.0);
    let mut enc = Encoder::new();
    // (address, len, offset of the argument's 48 data bytes) of the frame
    // under attack; address 0 = idle.
    let target = Arc::new((
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ));
    let rounds = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let scribbler = {
        let (target, rounds, stop, busy) =
            (target.clone(), rounds.clone(), stop.clone(), busy.clone());
        std::thread::spawn(move || {
            let mut x = 0x9E37_79B9u32;
            while stop.load(Ordering::Acquire) == 0 {
                // Dekker with the main thread's park below (both SeqCst):
                // either it sees `busy` set, or this load sees the target
                // cleared.
                busy.store(1, Ordering::SeqCst);
                let at = target.0.load(Ordering::SeqCst);
                if at == 0 {
                    busy.store(0, Ordering::SeqCst);
                    std::thread::yield_now();
                    continue;
                }
                // Relaxed: published before the address (SeqCst store).
                let len = target.1.load(Ordering::Relaxed);
                let (i, v) = next_write(&mut x, len, target.2.load(Ordering::Relaxed));
                scribble(at + i, 1, |_| v);
                busy.store(0, Ordering::SeqCst);
                // Release pairs with the main thread's Acquire loads of rounds.
                rounds.fetch_add(1, Ordering::Release);
            }
        })
    };
    let (mut ok, mut refused) = (0u32, 0u32);
    for seq in 0..400i64 {
        let req = request(seq);
        let (at, len) = send_and_locate(&mut tx, &mut enc, &req);
        let data_at = data_offset(&mut enc, seq);
        target.1.store(len, Ordering::Relaxed);
        target.2.store(data_at, Ordering::Relaxed);
        // SeqCst: pairs with the scribbler's SeqCst load of the address.
        target.0.store(at, Ordering::SeqCst);
        let before = rounds.load(Ordering::Acquire);
        while rounds.load(Ordering::Acquire) < before + 2 {
            std::thread::yield_now();
        }
        match rx.recv_message_with::<PushTaskRequest, _>(GUARD, |req| {
            // Deep reads of a snapshot that passed validation.
            let owned = read_all(req);
            (owned.task_spec.name.len(), owned.task_spec.args.len())
        }) {
            Ok(_) => ok += 1,
            Err(RecvError::Decode(_)) => refused += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
        // Park the scribbler before the ring space is reused (Dekker with
        // its `busy` flag, see above).
        target.0.store(0, Ordering::SeqCst);
        while busy.load(Ordering::SeqCst) != 0 {
            std::hint::spin_loop();
        }
    }
    stop.store(1, Ordering::Release);
    scribbler.join().unwrap();
    assert_eq!(ok + refused, 400);
    eprintln!("torn frames: {ok} read consistently, {refused} refused");
    // Still in sync after all of it.
    assert_in_sync(&mut tx, &mut rx, &mut enc, 1000);
}

#[test]
fn snapshot_receive_allocates_nothing_after_warm_up() {
    let env = env("hostile-alloc");
    let (mut rx, mut tx) = shm_pair(&env.0);
    let mut enc = Encoder::new();
    let req = request(5);
    let mut check = |rx: &mut ShmConnection, tx: &mut ShmConnection| {
        tx.send_message(&mut enc, &req).unwrap();
        rx.recv_message_with::<PushTaskRequest, _>(GUARD, |r| r.sequence_number.to_native())
            .unwrap()
    };
    for _ in 0..4 {
        assert_eq!(check(&mut rx, &mut tx), 5);
    }
    let before = allocs();
    for _ in 0..100 {
        assert_eq!(check(&mut rx, &mut tx), 5);
    }
    assert_eq!(allocs() - before, 0, "send + snapshot receive allocated");
}

#[test]
fn trusted_in_place_mode_and_tcp_private_frames() {
    let env = env("hostile-trusted");
    let (mut rx, mut tx) = shm_pair(&env.0);
    let mut enc = Encoder::new();
    let want = request(7);
    let (at, _) = send_and_locate(&mut tx, &mut enc, &want);
    // SAFETY: the sender (this thread) does not touch the frame until the
    // callback has returned.
    let (got, in_ring) = unsafe {
        rx.recv_message_in_place_trusted::<PushTaskRequest, _>(GUARD, |req| {
            (read_all(req), req as *const _ as usize)
        })
    }
    .unwrap();
    assert_eq!(got, want);
    // In place: the view lies in the receiver's mapping of the ring, not in
    // the sender's (a different mapping of the same memory).
    assert_ne!(in_ring, at);
    send_and_locate(&mut tx, &mut enc, &request(8));
    let got = loop {
        // SAFETY: as above: the sender does not touch the frame meanwhile.
        let got = unsafe {
            rx.try_recv_message_in_place_trusted::<PushTaskRequest, _>(|r| {
                r.sequence_number.to_native()
            })
        };
        if let Some(s) = got.unwrap() {
            break s;
        }
    };
    assert_eq!(got, 8);

    // TCP frames are private already: received in place, same policy API.
    let s = &env.0;
    let mut listener = TcpListener::bind_localhost(cfg(1, s)).unwrap();
    let addr = listener.local_addr().unwrap();
    let client_cfg = cfg(2, s);
    let client = std::thread::spawn(move || {
        let mut c = connect_tcp(addr, id(1), &client_cfg).unwrap();
        let mut enc = Encoder::new();
        c.send_push_task(&mut enc, &request(9)).unwrap();
        c.send_push_task(&mut enc, &request(10)).unwrap();
        c.flush().unwrap();
        c.recv_timeout(GUARD).map(|f| f.to_vec()).unwrap()
    });
    let mut server = listener.accept_timeout(GUARD).unwrap();
    assert!(!server.frames_shared());
    assert_eq!(
        server.recv_push_task_with(id(1), GUARD, read_all).unwrap(),
        request(9)
    );
    // SAFETY: TCP frames live in this connection's own buffer.
    let got = unsafe { server.recv_push_task_in_place_trusted(id(1), GUARD, read_all) }.unwrap();
    assert_eq!(got, request(10));
    server.send(b"bye").unwrap();
    assert_eq!(client.join().unwrap(), b"bye");
}

/// Worker id `n` of the parent test process (children derive the same ids).
fn parent_id(n: u8, parent: u32) -> shmwire::ids::WorkerId {
    let mut b = [n; 28];
    b[24..28].copy_from_slice(&parent.to_le_bytes());
    shmwire::ids::WorkerId::from_array(b)
}

/// A child process that is killed and reaped when dropped.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

const ROLE: &str = "SHMWIRE_HOSTILE_ROLE";
const PARENT: &str = "SHMWIRE_HOSTILE_PARENT";
/// The listener's socket path (named after the parent's lock, so the child
/// cannot derive it).
const SOCKET: &str = "SHMWIRE_HOSTILE_SOCKET";
const XPROC_FRAMES: i64 = 200;

/// The hostile peer as another process: it sends each request, then keeps
/// rewriting the committed frame (in its own mapping) until the receiver
/// acknowledges it — while the receiver copies, validates and reads.
fn hostile_child(parent: u32, path: &std::path::Path) {
    let session = Session::open_in(
        shmwire::shm::default_root(),
        &format!("t{parent}-hostile-xproc"),
    )
    .unwrap();
    let token = shmwire::node::load_or_create_token(&session).unwrap();
    let me = shmwire::transport::TransportConfig::new(parent_id(2, parent), token);
    let opts = ShmOptions::with_wait(WaitStrategy::spin_yield());
    let mut c = connect_shm(&session, path, parent_id(1, parent), &me, &opts).unwrap();
    let mut enc = Encoder::new();
    let mut x = 0x2545_F491u32;
    for seq in 0..XPROC_FRAMES {
        let data_at = data_offset(&mut enc, seq);
        let (at, len) = send_and_locate(&mut c, &mut enc, &request(seq));
        // Scribble until the parent acknowledges this frame.
        loop {
            for _ in 0..16 {
                let (i, v) = next_write(&mut x, len, data_at);
                scribble(at + i, 1, |_| v);
            }
            if let Some(ack) = c.try_recv().unwrap() {
                assert_eq!(&*ack, &seq.to_le_bytes());
                break;
            }
        }
    }
    c.close().unwrap();
}

#[test]
fn hostile_peer_process_rewrites_frames_during_receive() {
    if let Ok(parent) = std::env::var(PARENT) {
        if std::env::var(ROLE).as_deref() == Ok("scribbler") {
            let sock = std::env::var(SOCKET).unwrap();
            hostile_child(parent.parse().unwrap(), std::path::Path::new(&sock));
        }
        return;
    }
    let env = env("hostile-xproc");
    let opts = ShmOptions::with_wait(WaitStrategy::spin_yield());
    let mut listener = ShmListener::bind(&env.0, cfg(1, &env.0), opts).unwrap();
    let mut child = Child(Some(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hostile_peer_process_rewrites_frames_during_receive",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, "scribbler")
            .env(PARENT, std::process::id().to_string())
            .env(SOCKET, listener.socket_path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    ));
    let mut rx = listener.accept_timeout(GUARD).unwrap();
    let (mut ok, mut refused) = (0u32, 0u32);
    for seq in 0..XPROC_FRAMES {
        match rx.recv_message_with::<PushTaskRequest, _>(GUARD, |req| {
            // Deep reads of a snapshot that passed validation.
            read_all(req).task_spec.args.len()
        }) {
            Ok(_) => ok += 1,
            Err(RecvError::Decode(_)) => refused += 1,
            Err(e) => panic!("frame {seq}: unexpected error {e:?}"),
        }
        rx.send(&seq.to_le_bytes()).unwrap();
    }
    eprintln!("frames rewritten by another process: {ok} read, {refused} refused");
    assert_eq!(ok + refused, XPROC_FRAMES as u32);
    // The child closes in order once every frame was acknowledged.
    assert!(matches!(rx.recv_timeout(GUARD), Err(RecvError::Closed)));
    let status = child.0.take().unwrap().wait().unwrap();
    assert!(status.success(), "hostile child failed: {status}");
}
