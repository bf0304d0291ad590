//! Shared-memory and addressing tests beyond the conformance suite: routing
//! by address, the combined listener, message helpers, segment hygiene, and
//! the mux waking on eventfds and on hang-ups.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{cfg, env, id};
use shmwire::ids::{NodeId, WorkerId};
use shmwire::spec::{Address, Encoder, FunctionDescriptor, PushTaskRequest, TaskSpecBuilder};
use shmwire::transport::{
    connect_shm, AnyConnection, ConnectError, Connection, Connector, ListenOptions, Listener,
    MessageConnection, Mux, MuxConnection, MuxEvent, RecvError, SendError, SessionToken,
    ShmConnection, ShmListener, ShmOptions, TransportKind,
};
use shmwire::wake::WaitStrategy;

const GUARD: Duration = Duration::from_secs(30);

fn request(to: WorkerId, seq: i64) -> PushTaskRequest {
    PushTaskRequest {
        intended_worker_id: to,
        task_spec: TaskSpecBuilder::new(FunctionDescriptor::cpp("add")).build_normal_task(),
        sequence_number: seq,
        client_processed_up_to: -1,
        resource_mapping: Vec::new(),
    }
}

/// Worker `n`'s shm connection to worker 1's listener at `path` in `s`,
/// waiting with `wait`.
fn dial(
    s: &shmwire::shm::Session,
    path: &std::path::Path,
    n: u8,
    wait: WaitStrategy,
) -> ShmConnection {
    connect_shm(s, path, id(1), &cfg(n, s), &ShmOptions::with_wait(wait)).unwrap()
}

/// The node layer's directory of `s` (what `Connector`s look workers up in).
fn dir(s: &shmwire::shm::Session) -> shmwire::node::Directory {
    shmwire::node::Directory::for_session(s).unwrap()
}

/// Worker 1's listener in `s` on shared memory (eventfd waits) and TCP
/// (127.0.0.1), and its address on `node`.
fn shm_and_tcp_listener(s: &shmwire::shm::Session, node: NodeId) -> (Listener, Address) {
    let opts = ListenOptions {
        shm: Some(ShmOptions::with_wait(WaitStrategy::eventfd())),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        name: None,
        stats: None,
    };
    let listener = Listener::bind(s, cfg(1, s), opts, &dir(s)).unwrap();
    let addr = listener.address(node);
    (listener, addr)
}

/// The mux tests' wait modes: 0 sleeps at once, 1 spins, 2 spins for
/// 80 µs, then sleeps.
fn set_wait_mode<C: MuxConnection>(mux: &mut Mux<C>, mode: u8) {
    match mode {
        1 => mux.set_spin(true),
        2 => mux.set_spin_window(Duration::from_micros(80)),
        _ => {}
    }
}

/// Works 2 µs on a received frame: longer than a spinning peer takes to
/// send one, so that peer's ring never runs dry and every wait finds work
/// at once.
fn work_on_a_frame() {
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
}

#[test]
fn connector_routes_by_address_and_messages_flow() {
    let env = env("route");
    let s = &env.0;
    let node = NodeId::from_array([3; 28]);
    let other_node = NodeId::from_array([4; 28]);
    let opts = ListenOptions {
        shm: Some(ShmOptions::default()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        name: Some("server".into()),
        stats: None,
    };
    let mut listener = Listener::bind(s, cfg(1, s), opts, &dir(s)).unwrap();
    let addr = listener.address(node);
    assert_eq!(addr.worker_id, id(1));
    assert!(listener.endpoint().unix_socket.is_some() && listener.endpoint().tcp.is_some());

    let connector = Connector::new(cfg(2, s), node).with_session(s, Arc::new(dir(s)));
    let remote = Address {
        node_id: other_node,
        ..addr.clone()
    };
    assert_eq!(connector.route(&addr), TransportKind::Shm);
    assert_eq!(connector.route(&remote), TransportKind::Tcp);
    assert_eq!(
        connector.clone().force_tcp(true).route(&addr),
        TransportKind::Tcp
    );

    let client = {
        let connector = connector.clone();
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut conns: Vec<AnyConnection> = vec![
                connector.connect(&addr).unwrap(),
                connector.connect(&remote).unwrap(),
                connector.clone().force_tcp(true).connect(&addr).unwrap(),
                connector.connect_name("server").unwrap(),
                connector.connect_worker(&id(1)).unwrap(),
            ];
            let kinds: Vec<_> = conns.iter().map(|c| c.kind()).collect();
            assert_eq!(
                kinds,
                [
                    TransportKind::Shm,
                    TransportKind::Tcp,
                    TransportKind::Tcp,
                    TransportKind::Shm,
                    TransportKind::Shm
                ]
            );
            let mut enc = Encoder::new();
            for (i, c) in conns.iter_mut().enumerate() {
                assert_eq!(c.peer_worker_id(), id(1));
                // Misaddressed requests are refused before sending.
                assert!(matches!(
                    c.send_push_task(&mut enc, &request(id(9), 0)),
                    Err(SendError::WrongRecipient { .. })
                ));
                c.send_push_task(&mut enc, &request(id(1), i as i64))
                    .unwrap();
                // A raw misaddressed request (bypassing the check) reaches the
                // receiver, which refuses it.
                c.send_message(&mut enc, &request(id(9), 100)).unwrap();
            }
            for c in conns.iter_mut() {
                let f = c.recv_timeout(GUARD).unwrap();
                assert_eq!(&*f, b"done");
            }
        })
    };
    let mut server: Vec<AnyConnection> = (0..5)
        .map(|_| listener.accept_timeout(GUARD).unwrap())
        .collect();
    let mut seqs = Vec::new();
    for c in server.iter_mut() {
        let seq = c
            .recv_push_task_with(id(1), GUARD, |req| {
                assert_eq!(req.task_spec.name.as_str(), "add");
                req.sequence_number.to_native()
            })
            .unwrap();
        seqs.push(seq);
        match c.recv_push_task_with(id(1), GUARD, |_| ()) {
            Err(RecvError::WrongRecipient { intended, actual }) => {
                assert_eq!(intended, id(9));
                assert_eq!(actual, id(1));
            }
            other => panic!("expected WrongRecipient, got {other:?}"),
        }
        c.send(b"done").unwrap();
    }
    seqs.sort();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    client.join().unwrap();
    // While connections are open, no segment is visible: the listener
    // unlinked them as soon as both sides had mapped them.
    assert!(s.segment_names().unwrap().is_empty());
    drop(server);
    drop(listener);
    assert!(Connector::new(cfg(2, s), node)
        .with_session(s, Arc::new(dir(s)))
        .connect_name("server")
        .is_err());
}

#[test]
fn garbage_on_the_unix_socket_is_refused() {
    use std::io::Write;
    let env = env("garbage");
    let s = &env.0;
    let mut l = ShmListener::bind(s, cfg(1, s), ShmOptions::default()).unwrap();
    let path = l.socket_path().to_owned();
    let t = std::thread::spawn(move || {
        let mut u = std::os::unix::net::UnixStream::connect(path).unwrap();
        u.write_all(&[0x55; 96]).unwrap();
        u
    });
    assert!(matches!(
        l.accept_timeout(GUARD),
        Err(ConnectError::Protocol { .. })
    ));
    drop(t.join().unwrap());
    // A second listener for the same live worker is refused; after the first
    // is gone its socket path can be reused.
    assert!(matches!(
        ShmListener::bind(s, cfg(1, s), ShmOptions::default()),
        Err(ConnectError::Refused { .. })
    ));
    drop(l);
    let _l = ShmListener::bind(s, cfg(1, s), ShmOptions::default()).unwrap();
    assert!(s.segment_names().unwrap().is_empty());
}

#[test]
fn mux_sleeps_and_wakes_on_eventfd_and_hangup() {
    let env = env("muxwake");
    let s = &env.0;
    let mut l =
        ShmListener::bind(s, cfg(1, s), ShmOptions::with_wait(WaitStrategy::eventfd())).unwrap();
    let path = l.socket_path().to_owned();
    let sc = s.clone();
    // Two clients: one with futex waits, one with eventfd waits. The mux
    // wakes through the eventfd either way.
    let (tx, rx) = std::sync::mpsc::channel::<u8>();
    let client = std::thread::spawn(move || {
        let mut a = dial(&sc, &path, 2, WaitStrategy::spin_park());
        let mut b = dial(&sc, &path, 3, WaitStrategy::eventfd());
        for step in rx {
            match step {
                0 => a.send(b"from a").unwrap(),
                1 => b.send(b"from b").unwrap(),
                // Hang up a's socket without closing its rings: what a
                // SIGKILL looks like to the peer.
                _ => {
                    a.socket().shutdown(std::net::Shutdown::Both).unwrap();
                    std::mem::forget(a);
                    return;
                }
            }
        }
    });
    let mut mux = Mux::new().unwrap();
    let ka = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
    let kb = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
    let mut ready = Vec::new();
    mux.wait(Duration::from_millis(20), &mut ready).unwrap();
    assert!(ready.is_empty());
    for (step, key, want) in [(0u8, ka, &b"from a"[..]), (1, kb, b"from b")] {
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || {
                // Let the mux fall asleep first (not a timing assertion: the
                // test passes either way unless a wake-up is lost).
                std::thread::sleep(Duration::from_millis(50));
                tx.send(step).unwrap();
            })
        };
        mux.wait(GUARD, &mut ready).unwrap();
        assert_eq!(ready, [MuxEvent::Ready(key)], "lost wake-up");
        let c = mux.get_mut(key).unwrap();
        assert_eq!(&*c.try_recv().unwrap().unwrap(), want);
        assert!(c.try_recv().unwrap().is_none());
        sender.join().unwrap();
    }
    tx.send(2).unwrap();
    client.join().unwrap();
    // b closed in an orderly way (dropped), a hung up: the mux reports both,
    // as Closed and PeerDied.
    let (mut a_died, mut b_closed) = (false, false);
    while !(a_died && b_closed) {
        mux.wait(GUARD, &mut ready).unwrap();
        assert!(!ready.is_empty(), "hang-up or close not noticed");
        for k in ready.clone().into_iter().filter_map(|e| match e {
            MuxEvent::Ready(k) => Some(k),
            MuxEvent::Incoming => None,
        }) {
            match mux.get_mut(k).unwrap().try_recv() {
                Err(RecvError::PeerDied { .. }) if k == ka => a_died = true,
                Err(RecvError::Closed) if k == kb => b_closed = true,
                Ok(None) => continue,
                other => panic!("{k:?}: unexpected {:?}", other.map(|f| f.map(|f| f.len()))),
            }
            mux.remove(k);
        }
    }
    assert!(mux.is_empty());
    drop(tx);
}

#[test]
fn mux_spin_mode_over_shm() {
    let env = env("muxspin");
    let s = &env.0;
    let mut l = ShmListener::bind(s, cfg(1, s), ShmOptions::with_wait(WaitStrategy::Spin)).unwrap();
    let path = l.socket_path().to_owned();
    let sc = s.clone();
    let client = std::thread::spawn(move || {
        let mut c = dial(&sc, &path, 2, WaitStrategy::Spin);
        for i in 0..100u32 {
            c.send(&i.to_le_bytes()).unwrap();
            assert_eq!(&*c.recv_timeout(GUARD).unwrap(), &i.to_le_bytes());
        }
    });
    let mut mux = Mux::new().unwrap();
    mux.set_spin(true);
    let key = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
    let mut ready = Vec::new();
    let mut echoed = 0;
    while echoed < 100 {
        mux.wait(GUARD, &mut ready).unwrap();
        assert_eq!(ready, [MuxEvent::Ready(key)]);
        let c = mux.get_mut(key).unwrap();
        // Stop at the last echo: the client closes right after receiving it.
        while echoed < 100 {
            let got = c.try_recv().unwrap().map(|f| f.to_vec());
            match got {
                Some(m) => {
                    c.send(&m).unwrap();
                    echoed += 1;
                }
                None => break,
            }
        }
    }
    client.join().unwrap();
    // The client closed (dropped): the spinning mux reports it.
    mux.wait(GUARD, &mut ready).unwrap();
    assert!(matches!(
        mux.get_mut(key).unwrap().try_recv(),
        Err(RecvError::Closed)
    ));
}

#[test]
fn mux_accepts_in_the_same_loop() {
    let env = env("muxaccept");
    let s = &env.0;
    let node = NodeId::from_array([5; 28]);
    let (listener, addr) = shm_and_tcp_listener(s, node);
    let mut mux: Mux<AnyConnection> = Mux::new().unwrap();
    assert!(mux.set_listener(listener).unwrap().is_none());
    let sc = s.clone();
    let client = std::thread::spawn(move || {
        let connector = Connector::new(cfg(2, &sc), node).with_session(&sc, Arc::new(dir(&sc)));
        let mut shm = connector.connect(&addr).unwrap();
        let mut tcp = connector.clone().force_tcp(true).connect(&addr).unwrap();
        // A caller with a wrong token is refused without disturbing the loop.
        let mut bad = cfg(3, &sc);
        bad.token = SessionToken([0; 16]);
        let bad = Connector::new(bad, node).with_session(&sc, Arc::new(dir(&sc)));
        assert!(matches!(bad.connect(&addr), Err(ConnectError::BadToken)));
        shm.send(b"shm").unwrap();
        tcp.send(b"tcp").unwrap();
        assert_eq!(&*shm.recv_timeout(GUARD).unwrap(), b"shm!");
        assert_eq!(&*tcp.recv_timeout(GUARD).unwrap(), b"tcp!");
    });
    let (mut accepted, mut refused, mut got) = (0, 0, Vec::new());
    let mut ready = Vec::new();
    while got.len() < 2 {
        mux.wait(GUARD, &mut ready).unwrap();
        assert!(!ready.is_empty(), "mux missed a caller or a frame");
        for ev in ready.clone() {
            match ev {
                MuxEvent::Incoming => {
                    for r in mux.accept_pending().unwrap() {
                        match r {
                            Ok(_) => accepted += 1,
                            Err(ConnectError::BadToken) => refused += 1,
                            Err(e) => panic!("unexpected accept error {e}"),
                        }
                    }
                }
                MuxEvent::Ready(k) => {
                    let c = mux.get_mut(k).unwrap();
                    let m = c.try_recv().unwrap().map(|f| f.to_vec());
                    if let Some(m) = m {
                        c.send(&[&m[..], b"!"].concat()).unwrap();
                        got.push(String::from_utf8(m).unwrap());
                    }
                }
            }
        }
    }
    client.join().unwrap();
    got.sort();
    assert_eq!(got, ["shm", "tcp"]);
    assert_eq!((accepted, refused), (2, 1));
    assert!(mux.listener().is_some());
}

/// Output queued behind a full ring is handed over as the peer reads, and
/// once all of it is a mux asked to (`Mux::set_report_drained`) reports the
/// connection (`MuxEvent::Ready`), sleeping or spinning: its owner may have more to send, and on shared
/// memory nothing else would wake it (the reader's publishes wake this side
/// only while output is queued). Before, the last hand-over was silent and
/// the wait ran to its timeout.
#[test]
fn mux_reports_a_connection_whose_queued_output_was_handed_over() {
    for spin in [false, true] {
        let env = env(if spin { "muxdrain-spin" } else { "muxdrain" });
        let s = &env.0;
        let mut l = ShmListener::bind(s, cfg(1, s), ShmOptions::with_wait(WaitStrategy::eventfd()))
            .unwrap();
        let path = l.socket_path().to_owned();
        let sc = s.clone();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        const FRAMES: usize = 256;
        let client = std::thread::spawn(move || {
            let mut c = dial(&sc, &path, 2, WaitStrategy::eventfd());
            // Read only once the other side has queued, and slowly enough
            // for its mux to fall asleep (or spin) in between.
            go_rx.recv().unwrap();
            for i in 0..FRAMES {
                let f = c.recv_timeout(GUARD).unwrap();
                assert_eq!(f.len(), 8192);
                assert!(f.iter().all(|b| *b == i as u8), "frame {i}");
                drop(f);
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            // Stay connected (no send, no hang-up) until told: either would
            // wake the mux for its own sake.
            let _ = go_rx.recv();
        });
        let mut mux = Mux::new().unwrap();
        mux.set_spin(spin);
        mux.set_report_drained(true);
        let key = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
        {
            let c = mux.get_mut(key).unwrap();
            for i in 0..FRAMES {
                c.try_send(&[i as u8; 8192]).unwrap();
            }
            assert!(c.pending_send_bytes() > 0, "the ring took everything");
        }
        go_tx.send(()).unwrap();
        let mut ready = Vec::new();
        loop {
            let c = mux.get_mut(key).unwrap();
            let queued = c.pending_send_bytes();
            mux.wait(GUARD, &mut ready).unwrap();
            let c = mux.get_mut(key).unwrap();
            assert!(
                !ready.is_empty(),
                "spin {spin}: the wait ran out with {} of {queued} bytes still queued",
                c.pending_send_bytes()
            );
            assert_eq!(ready, [MuxEvent::Ready(key)]);
            assert!(c.try_recv().unwrap().is_none());
            if c.pending_send_bytes() == 0 {
                break;
            }
        }
        go_tx.send(()).unwrap();
        client.join().unwrap();
    }
}

/// Idle connections cost a wait nothing and still wake it, in every wait
/// mode (sleep, spin, spin-then-sleep): 12 shm peers quiet for longer than
/// the mux's cooling period are no longer looked at (`active_count`); each
/// one's frame, sent in turn, is then reported and the connection is
/// active again. And while a peer sends without a pause, so that every wait
/// finds work at once, an idle peer's frame is still reported (before the
/// mux asked epoll now and then anyway, such a frame waited for the busy
/// peer to pause).
#[test]
fn mux_idle_connections_cost_a_wait_nothing_and_still_wake_it() {
    const IDLE: u8 = 12;
    for mode in 0..3 {
        let env = env(&format!("muxidle{mode}"));
        let s = &env.0;
        let mut l = ShmListener::bind(s, cfg(1, s), ShmOptions::with_wait(WaitStrategy::eventfd()))
            .unwrap();
        let path = l.socket_path().to_owned();
        // The idle peers: one thread sends on peer `i` when told `i`.
        let (tx, rx) = std::sync::mpsc::channel::<u8>();
        let (sc, p) = (s.clone(), path.clone());
        let idle = std::thread::spawn(move || {
            let mut conns: Vec<ShmConnection> = (0..IDLE)
                .map(|i| dial(&sc, &p, 2 + i, WaitStrategy::eventfd()))
                .collect();
            for i in rx {
                conns[usize::from(i)].send(&[i]).unwrap();
            }
        });
        let mut mux = Mux::new().unwrap();
        set_wait_mode(&mut mux, mode);
        let keys: Vec<_> = (0..IDLE)
            .map(|_| mux.add(l.accept_timeout(GUARD).unwrap()).unwrap())
            .collect();
        let mut ready = Vec::new();
        // Quiet for three cooling periods (50 ms each).
        let quiet = std::time::Instant::now();
        while quiet.elapsed() < Duration::from_millis(160) {
            mux.wait(Duration::from_millis(10), &mut ready).unwrap();
            assert!(ready.is_empty(), "mode {mode}: {ready:?}");
        }
        assert_eq!(
            mux.active_count(),
            0,
            "mode {mode}: idle peers still looked at"
        );
        for i in [5u8, 0, 11, 3] {
            tx.send(i).unwrap();
            let k = keys[usize::from(i)];
            mux.wait(GUARD, &mut ready).unwrap();
            assert_eq!(ready, [MuxEvent::Ready(k)], "mode {mode}: peer {i}'s frame");
            let c = mux.get_mut(k).unwrap();
            assert_eq!(&*c.try_recv().unwrap().unwrap(), [i]);
            assert!(c.try_recv().unwrap().is_none());
            assert!(mux.active_count() >= 1, "mode {mode}");
        }
        // A peer that never pauses.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sc, st) = (s.clone(), Arc::clone(&stop));
        let busy = std::thread::spawn(move || {
            let mut c = dial(&sc, &path, 40, WaitStrategy::Spin);
            let mut sent = 0u64;
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                c.send(&sent.to_le_bytes()).unwrap();
                sent += 1;
            }
            sent
        });
        let kb = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
        let mut got = 0u64;
        // Receives what `ready` reports: the busy peer's frames (checked,
        // counted in `got`) and an idle peer's byte, returned.
        let drain = |mux: &mut Mux<ShmConnection>, ready: &[MuxEvent], got: &mut u64| {
            let mut idle_frame = None;
            for e in ready {
                let MuxEvent::Ready(k) = *e else { continue };
                let c = mux.get_mut(k).unwrap();
                // At most 64 a wait (a peer that never pauses never runs
                // dry; the mux reports it again while a frame waits).
                for _ in 0..64 {
                    // (The busy peer's end, once it stopped, is `Closed`.)
                    let f = match c.try_recv() {
                        Ok(Some(f)) => f,
                        Ok(None) | Err(RecvError::Closed) => break,
                        Err(e) => panic!("mode {mode}: {e}"),
                    };
                    if k == kb {
                        assert_eq!(&*f, got.to_le_bytes(), "mode {mode}");
                        *got += 1;
                        work_on_a_frame();
                    } else {
                        idle_frame = Some(f[0]);
                    }
                }
            }
            idle_frame
        };
        // The others cool again while it sends.
        let quiet = std::time::Instant::now();
        while quiet.elapsed() < Duration::from_millis(160) {
            mux.wait(GUARD, &mut ready).unwrap();
            assert_eq!(drain(&mut mux, &ready, &mut got), None, "mode {mode}");
        }
        assert_eq!(
            mux.active_count(),
            1,
            "mode {mode}: only the busy peer is active"
        );
        let before = got;
        tx.send(7).unwrap();
        let asked = std::time::Instant::now();
        loop {
            mux.wait(GUARD, &mut ready).unwrap();
            if drain(&mut mux, &ready, &mut got) == Some(7) {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "mode {mode}: an idle peer's frame waited 5 s beside a busy peer \
                 ({} of its frames received meanwhile)",
                got - before
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Whatever the busy peer sent before it saw `stop` is received.
        let sent = loop {
            if busy.is_finished() {
                break busy.join().unwrap();
            }
            mux.wait(Duration::from_millis(10), &mut ready).unwrap();
            drain(&mut mux, &ready, &mut got);
        };
        let end = std::time::Instant::now() + GUARD;
        while got < sent && std::time::Instant::now() < end {
            mux.wait(Duration::from_millis(10), &mut ready).unwrap();
            drain(&mut mux, &ready, &mut got);
        }
        assert_eq!(got, sent, "mode {mode}");
        drop(tx);
        idle.join().unwrap();
    }
}

/// What only epoll reports — a TCP peer's frame, a caller at the
/// listener — is not held up by a shm peer whose frames keep every wait
/// busy, in every wait mode. A wait that finds a frame at once never had
/// to ask epoll, so before such frames and callers waited for the busy
/// peer to pause (a caller's hello timed out); now a wait asks epoll
/// without blocking at least every 200 µs.
#[test]
fn a_busy_peer_does_not_hold_up_what_only_epoll_reports() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    for mode in 0..3 {
        let env = env(&format!("muxbusy{mode}"));
        let s = &env.0;
        let node = NodeId::from_array([5; 28]);
        let (listener, addr) = shm_and_tcp_listener(s, node);
        let mut mux: Mux<AnyConnection> = Mux::new().unwrap();
        mux.set_listener(listener).unwrap();
        set_wait_mode(&mut mux, mode);
        let connector = |n: u8| Connector::new(cfg(n, s), node).with_session(s, Arc::new(dir(s)));
        // The busy peer: sends without a pause until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let (st, c, a) = (Arc::clone(&stop), connector(2), addr.clone());
        let busy = std::thread::spawn(move || {
            let mut conn = c.connect(&a).unwrap();
            let mut sent = 0u64;
            while !st.load(Relaxed) {
                conn.send(&sent.to_le_bytes()).unwrap();
                sent += 1;
            }
            sent
        });
        let mut late = None;
        let (mut busy_key, mut got, mut answered) = (None, 0u64, 0);
        let mut ready = Vec::new();
        let asked = std::time::Instant::now();
        while answered < 2 {
            assert!(
                asked.elapsed() < Duration::from_secs(20),
                "mode {mode}: {answered} of 2 late peers answered beside a busy one"
            );
            mux.wait(GUARD, &mut ready).unwrap();
            for ev in ready.clone() {
                match ev {
                    MuxEvent::Incoming => {
                        for r in mux.accept_pending().unwrap() {
                            let k = r.unwrap();
                            busy_key.get_or_insert(k);
                        }
                    }
                    MuxEvent::Ready(k) if Some(k) == busy_key => {
                        let c = mux.get_mut(k).unwrap();
                        // At most 64 a wait, each worked on longer than
                        // the peer takes to send one: its ring never runs
                        // dry, so every wait finds work at once.
                        for _ in 0..64 {
                            let Some(f) = c.try_recv().unwrap() else {
                                break;
                            };
                            assert_eq!(&*f, got.to_le_bytes(), "mode {mode}");
                            got += 1;
                            work_on_a_frame();
                        }
                    }
                    MuxEvent::Ready(k) => {
                        let c = mux.get_mut(k).unwrap();
                        if let Some(m) = c.try_recv().unwrap().map(|f| f.to_vec()) {
                            c.send(&[&m[..], b"!"].concat()).unwrap();
                            answered += 1;
                        }
                    }
                }
            }
            if late.is_none() && got >= 10_000 {
                // The busy peer is in full flow: a TCP peer sends, then a
                // new shm caller comes.
                let (tcp, shm, a) = (connector(3).force_tcp(true), connector(4), addr.clone());
                late = Some(std::thread::spawn(move || {
                    let mut t = tcp.connect(&a).unwrap();
                    t.send(b"tcp").unwrap();
                    assert_eq!(&*t.recv_timeout(GUARD).unwrap(), b"tcp!");
                    let mut m = shm.connect(&a).unwrap();
                    m.send(b"shm").unwrap();
                    assert_eq!(&*m.recv_timeout(GUARD).unwrap(), b"shm!");
                }));
            }
        }
        late.unwrap().join().unwrap();
        stop.store(true, Relaxed);
        // Everything the busy peer sent is received, in order.
        let k = busy_key.unwrap();
        let end = std::time::Instant::now() + GUARD;
        while !busy.is_finished() && std::time::Instant::now() < end {
            while let Ok(Some(f)) = mux.get_mut(k).unwrap().try_recv() {
                assert_eq!(&*f, got.to_le_bytes(), "mode {mode}");
                got += 1;
            }
        }
        let sent = busy.join().unwrap();
        while let Ok(Some(f)) = mux.get_mut(k).unwrap().try_recv() {
            assert_eq!(&*f, got.to_le_bytes(), "mode {mode}");
            got += 1;
        }
        assert_eq!(got, sent, "mode {mode}");
    }
}

/// Every active connection with a frame is reported, not only a busy one:
/// a frame committed before a wait began is reported by that wait, in
/// every wait mode, while another peer's frames keep every wait busy. A
/// wait that found work at once (the busy peer, reported again while it
/// holds frames) returned before looking at the other connections, whose
/// frames then waited for their 20 ms tick (the attack on `b1b699d`: a
/// peer sending every 3 ms waited 17 ms a frame).
#[test]
fn every_active_peer_with_a_frame_is_reported_beside_a_busy_one() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
    const PINGS: u64 = 40;
    for mode in 0..3 {
        let env = env(&format!("muxfair{mode}"));
        let s = &env.0;
        let mut l = ShmListener::bind(s, cfg(1, s), ShmOptions::with_wait(WaitStrategy::eventfd()))
            .unwrap();
        let path = l.socket_path().to_owned();
        let mut mux = Mux::new().unwrap();
        set_wait_mode(&mut mux, mode);
        let stop = Arc::new(AtomicBool::new(false));
        let (sc, p, st) = (s.clone(), path.clone(), Arc::clone(&stop));
        let busy = std::thread::spawn(move || {
            let mut c = dial(&sc, &p, 2, WaitStrategy::Spin);
            while !st.load(Relaxed) {
                c.send(&[0; 8]).unwrap();
            }
            c
        });
        let kb = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
        // The pinger: one frame, then waits for it to be received, 1 ms
        // apart (active all along).
        let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (sc, tx, rx) = (s.clone(), Arc::clone(&sent), Arc::clone(&received));
        let pinger = std::thread::spawn(move || {
            let mut c = dial(&sc, &path, 3, WaitStrategy::eventfd());
            for k in 0..PINGS {
                c.send(&[1]).unwrap();
                // Release: the frame is committed before this is seen.
                tx.store(k + 1, Release);
                let end = std::time::Instant::now() + GUARD;
                while rx.load(Acquire) <= k && std::time::Instant::now() < end {
                    std::thread::sleep(Duration::from_micros(100));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            c
        });
        let kp = mux.add(l.accept_timeout(GUARD).unwrap()).unwrap();
        let mut ready = Vec::new();
        let mut pinged = 0;
        let end = std::time::Instant::now() + GUARD;
        while pinged < PINGS {
            assert!(
                std::time::Instant::now() < end,
                "mode {mode}: {pinged} pings"
            );
            // Acquire: pairs with the pinger's Release store.
            let committed = sent.load(Acquire) > pinged;
            mux.wait(GUARD, &mut ready).unwrap();
            let reported = ready.contains(&MuxEvent::Ready(kp));
            assert!(
                reported || !committed,
                "mode {mode}: ping {pinged}, committed before the wait, not reported by it"
            );
            if ready.contains(&MuxEvent::Ready(kb)) {
                let c = mux.get_mut(kb).unwrap();
                // At most 64 a wait, each worked on longer than the peer
                // takes to send one: its ring never runs dry.
                for _ in 0..64 {
                    if c.try_recv().unwrap().is_none() {
                        break;
                    }
                    work_on_a_frame();
                }
            }
            if reported {
                let c = mux.get_mut(kp).unwrap();
                while let Some(f) = c.try_recv().unwrap() {
                    assert_eq!(&*f, [1]);
                    pinged += 1;
                }
                received.store(pinged, Release);
            }
        }
        drop(pinger.join().unwrap());
        stop.store(true, Relaxed);
        // The busy peer may be blocked on a full ring: make room until it
        // sees `stop`.
        let c = mux.get_mut(kb).unwrap();
        let end = std::time::Instant::now() + GUARD;
        while !busy.is_finished() && std::time::Instant::now() < end {
            while let Ok(Some(_)) = c.try_recv() {}
        }
        drop(busy.join().unwrap());
    }
}

#[path = "fd_limit/mod.rs"]
mod fd_limit;

/// Worker `n` of the test process `pid` (what [`common::id`] gives in
/// that process), for a child that talks to its parent's workers.
fn id_of(pid: u32, n: u8) -> WorkerId {
    let mut b = [n; 28];
    b[24..28].copy_from_slice(&pid.to_le_bytes());
    WorkerId::from_array(b)
}

/// The child of `single_listeners_at_the_descriptor_limit_still_take_their_callers`:
/// worker 1 of the parent, with a shared-memory and a TCP listener, left
/// with no free descriptor; accepts two shm callers, then a TCP caller on
/// the spare, then (failing for 300 ms while the spare is in use, served
/// once a descriptor is freed) a second TCP caller, echoing one frame of
/// each TCP caller and printing each outcome. Every wait is bounded
/// (`GUARD`).
fn listeners_at_the_limit_child(session: &str, parent: u32) {
    use shmwire::transport::TcpListener;
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let s = shmwire::shm::Session::attach_in(shmwire::shm::default_root(), session).unwrap();
    let token = shmwire::node::load_or_create_token(&s).unwrap();
    let config = shmwire::transport::TransportConfig::new(id_of(parent, 1), token);
    let mut shm = ShmListener::bind(&s, config.clone(), ShmOptions::default()).unwrap();
    let mut tcp = TcpListener::bind_localhost(config).unwrap();
    // Each listener opens its reserve at its first accept.
    for r in [
        shm.accept_timeout(Duration::ZERO).map(|_| ()),
        tcp.accept_timeout(Duration::ZERO).map(|_| ()),
    ] {
        assert!(matches!(r, Err(ConnectError::TimedOut { .. })), "{r:?}");
    }
    fd_limit::leave_free(1);
    let last = std::fs::File::open("/dev/null").unwrap();
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "a descriptor left"
    );
    let mut out = std::io::stdout().lock();
    out.write_all(b"@ready ").unwrap();
    out.write_all(shm.socket_path().as_os_str().as_bytes())
        .unwrap();
    writeln!(out, " {}", tcp.local_addr().unwrap()).unwrap();
    out.flush().unwrap();
    // What the thread opens between two accepts keeps the number a
    // refused caller's socket freed, unless the listener took its reserve
    // back at once.
    let mut opened = Vec::new();
    for _ in 0..2 {
        let r = shm.accept_timeout(GUARD);
        opened.extend(std::fs::File::open("/dev/null").ok());
        writeln!(out, "@shm {:?}", r.map(|_| ())).unwrap();
        out.flush().unwrap();
    }
    let echo = |c: &mut shmwire::transport::TcpConnection| {
        let f = c.recv_timeout(GUARD).unwrap().to_vec();
        c.send(&f).unwrap();
    };
    let mut c = tcp.accept_timeout(GUARD).unwrap();
    echo(&mut c);
    // The next TCP caller, queued meanwhile, finds the spare in use: the
    // call waits its timeout (trying again), then says why.
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    let r = tcp.accept_timeout(Duration::from_millis(300)).map(|_| ());
    let waited = t.elapsed();
    writeln!(out, "@tcp2 {r:?} after {} ms", waited.as_millis()).unwrap();
    out.flush().unwrap();
    // A descriptor comes free: that caller is taken and served.
    drop(last);
    let mut c2 = tcp.accept_timeout(GUARD).unwrap();
    echo(&mut c2);
    for c in [&mut c, &mut c2] {
        let _ = c.recv_timeout(GUARD);
    }
}

/// At its descriptor limit, a process accepting on a lone `ShmListener` or
/// `TcpListener` still takes a waiting caller on the descriptor each keeps
/// in reserve: a shared-memory caller is refused with the cause (its rings
/// cannot be made), each time, and a TCP caller is served — rather than
/// each waiting in the kernel's queue until its handshake times out while
/// `accept_timeout` fails with `EMFILE` at once. With the spare in use,
/// `accept_timeout` keeps trying for its whole timeout (then says
/// `EMFILE`) instead of failing at once, and the waiting caller is served
/// as soon as a descriptor is free.
#[test]
fn single_listeners_at_the_descriptor_limit_still_take_their_callers() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    const CHILD: &str = "SHMWIRE_LIMIT_LISTENER_CHILD";
    if let Ok(session) = std::env::var(CHILD) {
        let parent = std::env::var("SHMWIRE_LIMIT_PARENT").unwrap();
        listeners_at_the_limit_child(&session, parent.parse().unwrap());
        return;
    }
    let env = env("fdlimitlisten");
    let s = &env.0;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "single_listeners_at_the_descriptor_limit_still_take_their_callers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, s.name())
        .env("SHMWIRE_LIMIT_PARENT", std::process::id().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut next = || loop {
        let l = lines.next().expect("child ended").unwrap();
        // The harness's own output (which may start the line) is not the
        // child's.
        if let Some(at) = l.find('@') {
            return l[at + 1..].to_owned();
        }
    };
    let ready = next();
    let mut words = ready.split(' ').skip(1);
    let path = std::path::PathBuf::from(words.next().unwrap());
    let addr: std::net::SocketAddr = words.next().unwrap().parse().unwrap();
    let mut me = cfg(2, s);
    me.handshake_timeout = Duration::from_secs(3);
    for _ in 0..2 {
        let r = connect_shm(s, &path, id(1), &me, &ShmOptions::default());
        match r {
            Err(ConnectError::Refused { reason }) => {
                assert!(reason.contains("Too many open files"), "{reason}")
            }
            other => panic!("refused for want of descriptors expected: {other:?}"),
        }
        let l = next();
        assert!(
            l.starts_with("shm Err(") && l.contains("Too many open files"),
            "{l}"
        );
    }
    let mut c = shmwire::transport::connect_tcp(addr, id(1), &me).unwrap();
    c.send(b"at the limit").unwrap();
    assert_eq!(&*c.recv_timeout(GUARD).unwrap(), b"at the limit");
    // Another TCP caller while the first holds the spare.
    let mut patient = cfg(3, s);
    patient.handshake_timeout = Duration::from_secs(10);
    let second = std::thread::spawn(move || {
        let mut c2 = shmwire::transport::connect_tcp(addr, id(1), &patient).unwrap();
        c2.send(b"served later").unwrap();
        let back = c2.recv_timeout(GUARD).unwrap().to_vec();
        (back, c2)
    });
    let l = next();
    assert!(
        l.starts_with("tcp2 Err(Io { op: \"accept\"") && l.contains("Too many open files"),
        "{l}"
    );
    let ms: u64 = l.rsplit(' ').nth(1).unwrap().parse().unwrap();
    assert!(ms >= 300, "returned after {ms} ms, not at its timeout: {l}");
    let (back, c2) = second.join().unwrap();
    assert_eq!(back, b"served later");
    drop((c, c2));
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A child process killed and reaped on every way out of a test (after a
/// `wait`, the kill sends nothing).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
