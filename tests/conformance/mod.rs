//! The transport conformance suite: written once against the
//! [`Connection`] API and instantiated for every transport with
//! [`conformance_suite!`]. Child processes re-run the test binary
//! (`current_exe --exact <test> --nocapture`) with `SHMWIRE_CONF_ROLE` set.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmwire::transport::{
    ConnectError, Connection, RecvError, SendError, SessionToken, TransportConfig, WorkerId,
};

/// Hang guard for every blocking wait in the suite (not a timing assertion).
pub const GUARD: Duration = Duration::from_secs(60);

/// How a transport is set up for the suite.
pub trait Harness {
    /// The connection type.
    type Conn: Connection + Send + 'static;
    /// The listening side.
    type Listener: Send;
    /// A per-test environment (session dir, …) kept alive during the test.
    type Env;
    /// Creates the environment for test `name`; `parent` is false in children.
    fn env(name: &str, parent: bool) -> Self::Env;
    /// Starts listening as `cfg.worker_id`.
    fn listen(env: &Self::Env, cfg: TransportConfig) -> Self::Listener;
    /// How a child finds the listener.
    fn addr(l: &Self::Listener) -> String;
    /// Accepts one connection.
    fn accept(l: &mut Self::Listener, timeout: Duration) -> Result<Self::Conn, ConnectError>;
    /// Connects to the worker `intended` at `addr`.
    fn connect(
        env: &Self::Env,
        addr: &str,
        intended: WorkerId,
        cfg: &TransportConfig,
    ) -> Result<Self::Conn, ConnectError>;
    /// Checks that nothing of the test is left behind (segments, sockets).
    fn assert_clean(env: &Self::Env);
}

pub fn id(n: u8) -> WorkerId {
    let mut b = [n; 28];
    b[0] = 0xA0;
    // Unique per test run: the parent's pid (children inherit it).
    let pid: u32 = std::env::var("SHMWIRE_CONF_PARENT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(std::process::id);
    b[24..28].copy_from_slice(&pid.to_le_bytes());
    WorkerId::from_array(b)
}

pub fn token_for(name: &str) -> SessionToken {
    let mut t = [0u8; 16];
    for (i, b) in name.bytes().enumerate() {
        t[i % 16] ^= b.wrapping_mul(31).wrapping_add(i as u8);
    }
    SessionToken(t)
}

pub fn cfg(n: u8, name: &str) -> TransportConfig {
    let mut c = TransportConfig::new(id(n), token_for(name));
    c.send_timeout = GUARD;
    c
}

/// The role this process plays, if it is a child.
pub fn role() -> Option<String> {
    std::env::var("SHMWIRE_CONF_ROLE").ok()
}

pub fn env_var(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

/// A child process that is killed and reaped when dropped.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn spawn(test: &str, role: &str, vars: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("SHMWIRE_CONF_ROLE", role)
            .env("SHMWIRE_CONF_PARENT", std::process::id().to_string())
            .stdout(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        ChildGuard(Some(cmd.spawn().expect("spawn child")))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Waits for the child (hang guard) and asserts it succeeded.
    pub fn wait_ok(mut self) {
        let mut child = self.0.take().unwrap();
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(st.success(), "child failed: {st}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child hung");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deterministic frame contents: `[seq u64][len u32][pad u32][bytes from xorshift(seq)]`.
pub fn fill_frame(seq: u64, buf: &mut [u8]) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    let len = buf.len() as u32;
    buf[8..12].copy_from_slice(&len.to_le_bytes());
    buf[12..16].fill(0);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf[16..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Checks a frame produced by [`fill_frame`]; returns its sequence number.
pub fn check_frame(frame: &[u8]) -> u64 {
    assert!(frame.len() >= 16, "frame too short: {}", frame.len());
    assert_eq!(frame.as_ptr() as usize % 16, 0, "frame not 16-byte aligned");
    let seq = u64::from_le_bytes(frame[..8].try_into().unwrap());
    assert_eq!(
        u32::from_le_bytes(frame[8..12].try_into().unwrap()) as usize,
        frame.len(),
        "length of frame {seq}"
    );
    let mut want = vec![0u8; frame.len()];
    fill_frame(seq, &mut want);
    assert!(frame == &want[..], "contents of frame {seq} differ");
    seq
}

/// Size of frame `seq` in the streaming tests: 16..=16+max_extra.
pub fn size_of(seq: u64, max_extra: u64) -> usize {
    let h = seq.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
    16 + (h % (max_extra + 1)) as usize
}

pub fn send_seq<C: Connection>(c: &mut C, seq: u64, len: usize) {
    c.send_with::<_, std::convert::Infallible>(len, |buf| {
        fill_frame(seq, buf);
        Ok(len)
    })
    .unwrap_or_else(|e| panic!("send {seq}: {e}"));
}

pub fn recv<C: Connection>(c: &mut C) -> Vec<u8> {
    c.recv_timeout(GUARD)
        .unwrap_or_else(|e| panic!("recv: {e}"))
        .to_vec()
}

/// The shape of every in-process test: listen as worker 1 with `scfg`, run
/// `client(env, addr, name)` on a thread (with its own, non-parent
/// environment), run `server` with the listener, join the client, then drop
/// what `server` returned and the listener and check nothing is left behind.
pub fn in_process<H: Harness, R>(
    name: &str,
    scfg: TransportConfig,
    client: impl FnOnce(&H::Env, &str, &str) + Send + 'static,
    server: impl FnOnce(&mut H::Listener) -> R,
) {
    let env = H::env(name, true);
    let mut l = H::listen(&env, scfg);
    let addr = H::addr(&l);
    let name2 = name.to_owned();
    let client = std::thread::spawn(move || {
        let env = H::env(&name2, false);
        client(&env, &addr, &name2);
    });
    let kept = server(&mut l);
    client.join().unwrap();
    drop(kept);
    drop(l);
    H::assert_clean(&env);
}

/// Connects as worker 2 to worker 1 at `addr` (the usual client).
pub fn connect<H: Harness>(env: &H::Env, addr: &str, name: &str) -> H::Conn {
    H::connect(env, addr, id(1), &cfg(2, name)).unwrap()
}

// ---------------------------------------------------------------- the tests

/// Frames arrive in order, aligned, intact, in both directions at once.
pub fn ordering<H: Harness>(name: &str) {
    const N: u64 = 20_000;
    let client = |env: &H::Env, addr: &str, name: &str| {
        let mut c = connect::<H>(env, addr, name);
        assert_eq!(c.peer_worker_id(), id(1));
        let mut echoes = 0u64;
        for seq in 0..N {
            send_seq(&mut c, seq, size_of(seq, 1000));
            // Interleave receives of the echo stream.
            while let Some(f) = c.try_recv().unwrap() {
                assert_eq!(check_frame(&f), echoes * 100);
                echoes += 1;
            }
        }
        while echoes < N / 100 {
            assert_eq!(check_frame(&c.recv_timeout(GUARD).unwrap()), echoes * 100);
            echoes += 1;
        }
        c.close().unwrap();
        assert!(matches!(c.try_recv(), Err(RecvError::Closed)));
    };
    in_process::<H, _>(name, cfg(1, name), client, |l| {
        let mut s = H::accept(l, GUARD).unwrap();
        assert_eq!(s.peer_worker_id(), id(2));
        for want in 0..N {
            let f = s.recv_timeout(GUARD).unwrap();
            assert_eq!(check_frame(&f), want, "out of order");
            drop(f);
            // Few, small echoes: both directions stay far below any buffer
            // size, so neither side can block in a send while the other does
            // too.
            if want % 100 == 0 {
                send_seq(&mut s, want, size_of(want, 100));
            }
        }
        assert!(matches!(s.recv_timeout(GUARD), Err(RecvError::Closed)));
        s
    });
}

/// Exactly-once delivery of `frames` frames with checksums between two processes.
pub fn stream_two_processes<H: Harness>(name: &str, frames: u64) {
    if role().as_deref() == Some("stream-sender") {
        let env = H::env(name, false);
        let mut c = connect::<H>(&env, &env_var("SHMWIRE_CONF_ADDR"), name);
        let mut digest = 0u64;
        for seq in 0..frames {
            let len = size_of(seq, 240);
            send_seq(&mut c, seq, len);
            digest = digest.wrapping_mul(31).wrapping_add(seq ^ len as u64);
        }
        c.flush().unwrap();
        let ack = recv(&mut c);
        assert_eq!(
            ack,
            [frames.to_le_bytes(), digest.to_le_bytes()].concat(),
            "receiver's count/digest"
        );
        c.close().unwrap();
        return;
    }
    let env = H::env(name, true);
    let mut l = H::listen(&env, cfg(1, name));
    let child = ChildGuard::spawn(name, "stream-sender", &[("SHMWIRE_CONF_ADDR", H::addr(&l))]);
    let mut s = H::accept(&mut l, GUARD).unwrap();
    let mut digest = 0u64;
    for want in 0..frames {
        let f = s.recv_timeout(GUARD).unwrap();
        let seq = check_frame(&f);
        assert_eq!(seq, want, "lost, duplicated or reordered frame");
        digest = digest.wrapping_mul(31).wrapping_add(seq ^ f.len() as u64);
    }
    // Nothing extra may arrive.
    assert!(s.try_recv().unwrap().is_none());
    s.send(&[frames.to_le_bytes(), digest.to_le_bytes()].concat())
        .unwrap();
    match s.recv_timeout(GUARD) {
        Err(RecvError::Closed) => {}
        other => panic!(
            "expected Closed after the last frame, got {:?}",
            other.map(|f| f.len())
        ),
    }
    child.wait_ok();
    drop(s);
    drop(l);
    H::assert_clean(&env);
}

/// Large frames (up to several MiB) and a frame of exactly the maximum size.
pub fn large_frames<H: Harness>(name: &str) {
    let mut scfg = cfg(1, name);
    scfg.max_frame_len = 6 << 20;
    const SIZES: [usize; 5] = [1 << 20, (3 << 20) + 5, 6 << 20, 17, 1 << 16];
    let client = |env: &H::Env, addr: &str, name: &str| {
        let mut c = connect::<H>(env, addr, name);
        assert_eq!(c.max_send_len(), 6 << 20);
        for (i, &n) in SIZES.iter().enumerate() {
            send_seq(&mut c, i as u64, n);
        }
        assert_eq!(recv(&mut c), b"ok");
    };
    in_process::<H, _>(name, scfg, client, |l| {
        let mut s = H::accept(l, GUARD).unwrap();
        for (i, &n) in SIZES.iter().enumerate() {
            let f = s.recv_timeout(GUARD).unwrap();
            assert_eq!(f.len(), n);
            assert_eq!(check_frame(&f), i as u64);
        }
        s.send(b"ok").unwrap();
        s
    });
}

/// ≥ 8 client processes to one receiver waiting on one event loop.
pub fn many_clients<H: Harness>(name: &str, mux: impl FnOnce(Vec<H::Conn>, u64, usize)) {
    const CLIENTS: usize = 8;
    const PER: u64 = 2_000;
    if role().as_deref() == Some("many-client") {
        let env = H::env(name, false);
        let me: u8 = env_var("SHMWIRE_CONF_INDEX").parse().unwrap();
        let mut c = H::connect(
            &env,
            &env_var("SHMWIRE_CONF_ADDR"),
            id(1),
            &cfg(10 + me, name),
        )
        .unwrap();
        for seq in 0..PER {
            send_seq(&mut c, seq, size_of(seq ^ me as u64, 300));
        }
        let ack = recv(&mut c);
        assert_eq!(ack, PER.to_le_bytes());
        c.close().unwrap();
        return;
    }
    let env = H::env(name, true);
    let mut l = H::listen(&env, cfg(1, name));
    let addr = H::addr(&l);
    let children: Vec<ChildGuard> = (0..CLIENTS)
        .map(|i| {
            ChildGuard::spawn(
                name,
                "many-client",
                &[
                    ("SHMWIRE_CONF_ADDR", addr.clone()),
                    ("SHMWIRE_CONF_INDEX", i.to_string()),
                ],
            )
        })
        .collect();
    let conns: Vec<H::Conn> = (0..CLIENTS)
        .map(|_| H::accept(&mut l, GUARD).unwrap())
        .collect();
    let mut ids: Vec<WorkerId> = conns.iter().map(|c| c.peer_worker_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CLIENTS);
    mux(conns, PER, CLIENTS);
    for c in children {
        c.wait_ok();
    }
    drop(l);
    H::assert_clean(&env);
}

/// The receiving side of [`many_clients`] for a mux of `H::Conn`: receives
/// `per` frames from each connection in order, acks each, waits for closes.
pub fn drain_mux<C: shmwire::transport::MuxConnection>(
    mut mux: shmwire::transport::Mux<C>,
    per: u64,
    clients: usize,
) {
    use shmwire::transport::MuxEvent;
    let mut next: HashMap<usize, u64> = HashMap::new();
    let mut closed = 0;
    let mut ready = Vec::new();
    let deadline = Instant::now() + GUARD;
    while closed < clients {
        assert!(Instant::now() < deadline, "mux receiver hung");
        mux.wait(Duration::from_millis(500), &mut ready).unwrap();
        for key in ready.iter().filter_map(|e| match e {
            MuxEvent::Ready(k) => Some(*k),
            MuxEvent::Incoming => None,
        }) {
            loop {
                let conn = mux.get_mut(key).unwrap();
                let got = match conn.try_recv() {
                    Ok(Some(f)) => Some(Ok(check_frame(&f))),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                };
                match got {
                    Some(Ok(seq)) => {
                        let n = next.entry(key.0).or_insert(0);
                        assert_eq!(seq, *n, "peer {key:?} out of order");
                        *n += 1;
                        if *n == per {
                            conn.send(&per.to_le_bytes()).unwrap();
                        }
                    }
                    None => break,
                    Some(Err(RecvError::Closed)) => {
                        assert_eq!(next.get(&key.0), Some(&per));
                        closed += 1;
                        mux.remove(key);
                        break;
                    }
                    Some(Err(e)) => panic!("peer {key:?}: {e}"),
                }
            }
        }
    }
}

/// Timeouts: an idle receive times out, try_recv returns None, and the
/// connection stays usable.
pub fn timeouts<H: Harness>(name: &str) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = move |env: &H::Env, addr: &str, name: &str| {
        let mut c = connect::<H>(env, addr, name);
        assert!(matches!(
            c.recv_timeout(Duration::from_millis(30)),
            Err(RecvError::TimedOut)
        ));
        assert!(c.try_recv().unwrap().is_none());
        rx.recv().unwrap();
        c.send(b"after the timeouts").unwrap();
        assert_eq!(recv(&mut c), b"reply");
    };
    in_process::<H, _>(name, cfg(1, name), client, |l| {
        let mut s = H::accept(l, GUARD).unwrap();
        assert!(matches!(
            s.recv_timeout(Duration::from_millis(20)),
            Err(RecvError::TimedOut)
        ));
        assert!(s.try_recv().unwrap().is_none());
        tx.send(()).unwrap();
        assert_eq!(recv(&mut s), b"after the timeouts");
        s.send(b"reply").unwrap();
        s
    });
}

/// An orderly close: frames sent before it are delivered, then `Closed` on
/// both sides; close is idempotent; sending after close fails.
pub fn close<H: Harness>(name: &str) {
    let client = |env: &H::Env, addr: &str, name: &str| {
        let mut c = connect::<H>(env, addr, name);
        for seq in 0..3 {
            send_seq(&mut c, seq, 64);
        }
        c.close().unwrap();
        c.close().unwrap();
        assert!(matches!(c.send(b"late"), Err(SendError::Closed)));
        assert!(matches!(c.try_recv(), Err(RecvError::Closed)));
    };
    in_process::<H, _>(name, cfg(1, name), client, |l| {
        let mut s = H::accept(l, GUARD).unwrap();
        for want in 0..3 {
            assert_eq!(check_frame(&s.recv_timeout(GUARD).unwrap()), want);
        }
        assert!(matches!(s.recv_timeout(GUARD), Err(RecvError::Closed)));
        assert!(matches!(s.try_recv(), Err(RecvError::Closed)));
        s.close().unwrap();
        s
    });
}

/// A hello for another worker is refused on both sides (HandleWrongRecipient).
pub fn wrong_worker<H: Harness>(name: &str) {
    let client = |env: &H::Env, addr: &str, name: &str| {
        match H::connect(env, addr, id(9), &cfg(2, name)) {
            Err(ConnectError::WrongRecipient { intended, actual }) => {
                assert_eq!(intended, id(9));
                assert_eq!(actual, id(1));
            }
            other => panic!("expected WrongRecipient, got {:?}", other.err()),
        }
        // The right worker still accepts.
        let mut c = connect::<H>(env, addr, name);
        c.send(b"hi").unwrap();
        assert_eq!(recv(&mut c), b"hi");
    };
    in_process::<H, _>(name, cfg(1, name), client, |l| {
        assert!(matches!(
            H::accept(l, GUARD),
            Err(ConnectError::WrongRecipient { .. })
        ));
        let mut s = H::accept(l, GUARD).unwrap();
        let m = recv(&mut s);
        s.send(&m).unwrap();
        s
    });
}

/// A hello with another session's token is refused on both sides.
pub fn wrong_token<H: Harness>(name: &str) {
    let client = |env: &H::Env, addr: &str, name: &str| {
        let mut bad = cfg(2, name);
        bad.token = SessionToken([0xEE; 16]);
        assert!(matches!(
            H::connect(env, addr, id(1), &bad),
            Err(ConnectError::BadToken)
        ));
    };
    in_process::<H, _>(name, cfg(1, name), client, |l| {
        assert!(matches!(H::accept(l, GUARD), Err(ConnectError::BadToken)));
    });
}

/// A frame over the peer's maximum is refused before anything is sent; the
/// connection stays usable.
pub fn oversize_frame<H: Harness>(name: &str) {
    use shmwire::transport::SendError;
    let mut scfg = cfg(1, name);
    scfg.max_frame_len = 4096;
    let client = |env: &H::Env, addr: &str, name: &str| {
        let mut c = connect::<H>(env, addr, name);
        match c.send(&vec![1u8; 4097]) {
            Err(SendError::FrameTooLarge {
                len: 4097,
                max: 4096,
            }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        let r: Result<usize, SendError<std::convert::Infallible>> = c.send_with(1 << 20, |_| Ok(0));
        assert!(matches!(r, Err(SendError::FrameTooLarge { .. })));
        // An encoder error sends nothing.
        let r = c.send_with(64, |_| Err("nope"));
        assert!(matches!(r, Err(SendError::Encode("nope"))));
        send_seq(&mut c, 7, 4096);
        assert_eq!(recv(&mut c), b"ok");
    };
    in_process::<H, _>(name, scfg, client, |l| {
        let mut s = H::accept(l, GUARD).unwrap();
        assert_eq!(check_frame(&s.recv_timeout(GUARD).unwrap()), 7);
        s.send(b"ok").unwrap();
        s
    });
}

/// A peer SIGKILLed mid-stream: the survivor receives what was sent, then
/// `PeerDied` on receive and on send; nothing hangs. Run with the killed
/// process as the client (`killed_is_client`) and as the listener.
pub fn peer_killed<H: Harness>(name: &str, killed_is_client: bool) {
    match role().as_deref() {
        Some("killed-client") => {
            let env = H::env(name, false);
            let mut c = connect::<H>(&env, &env_var("SHMWIRE_CONF_ADDR"), name);
            for seq in 0..100 {
                send_seq(&mut c, seq, 100);
            }
            c.flush().unwrap();
            // Wait to be killed (the parent does it after frame 99).
            let _ = c.recv_timeout(GUARD);
            std::process::exit(3);
        }
        Some("killed-server") => {
            let env = H::env(name, false);
            let mut l = H::listen(&env, cfg(1, name));
            println!("ADDR {}", H::addr(&l));
            std::fs::write(env_var("SHMWIRE_CONF_ADDRFILE") + ".tmp", H::addr(&l)).unwrap();
            std::fs::rename(
                env_var("SHMWIRE_CONF_ADDRFILE") + ".tmp",
                env_var("SHMWIRE_CONF_ADDRFILE"),
            )
            .unwrap();
            let mut s = H::accept(&mut l, GUARD).unwrap();
            for seq in 0..100 {
                send_seq(&mut s, seq, 100);
            }
            s.flush().unwrap();
            let _ = s.recv_timeout(GUARD);
            std::process::exit(3);
        }
        _ => {}
    }
    let env = H::env(name, true);
    let (mut conn, mut child, _l) = if killed_is_client {
        let mut l = H::listen(&env, cfg(1, name));
        let child = ChildGuard::spawn(name, "killed-client", &[("SHMWIRE_CONF_ADDR", H::addr(&l))]);
        let c = H::accept(&mut l, GUARD).unwrap();
        (c, child, Some(l))
    } else {
        let dir = tempfile::tempdir().unwrap();
        let addrfile = dir.path().join("addr");
        let child = ChildGuard::spawn(
            name,
            "killed-server",
            &[("SHMWIRE_CONF_ADDRFILE", addrfile.display().to_string())],
        );
        let deadline = Instant::now() + GUARD;
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&addrfile) {
                break a;
            }
            assert!(Instant::now() < deadline, "child never listened");
            std::thread::sleep(Duration::from_millis(5));
        };
        let c = connect::<H>(&env, &addr, name);
        (c, child, None)
    };
    for want in 0..100 {
        assert_eq!(check_frame(&conn.recv_timeout(GUARD).unwrap()), want);
    }
    child.kill();
    match conn.recv_timeout(GUARD) {
        Err(RecvError::PeerDied { .. }) => {}
        other => panic!(
            "expected PeerDied on receive, got {:?}",
            other.map(|f| f.len())
        ),
    }
    // Sends fail too (possibly after the kernel accepted a few bytes).
    let deadline = Instant::now() + GUARD;
    loop {
        match conn.send(&[0u8; 256]) {
            Err(SendError::PeerDied { .. }) => break,
            Ok(()) => assert!(
                Instant::now() < deadline,
                "send never noticed the dead peer"
            ),
            Err(e) => panic!("expected PeerDied on send, got {e}"),
        }
    }
    drop(conn);
    drop(_l);
    H::assert_clean(&env);
}

/// Instantiates the whole suite for a harness.
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $harness:ty, $frames:expr, $mux:path) => {
        mod $module {
            use super::conformance as conf;
            fn name(t: &str) -> String {
                format!("{}::{}", stringify!($module), t)
            }
            #[test]
            fn ordering() {
                conf::ordering::<$harness>(&name("ordering"));
            }
            #[test]
            fn million_frames_two_processes() {
                conf::stream_two_processes::<$harness>(
                    &name("million_frames_two_processes"),
                    $frames,
                );
            }
            #[test]
            fn large_frames() {
                conf::large_frames::<$harness>(&name("large_frames"));
            }
            #[test]
            fn many_clients_one_event_loop() {
                conf::many_clients::<$harness>(&name("many_clients_one_event_loop"), $mux);
            }
            #[test]
            fn timeouts() {
                conf::timeouts::<$harness>(&name("timeouts"));
            }
            #[test]
            fn close() {
                conf::close::<$harness>(&name("close"));
            }
            #[test]
            fn wrong_worker() {
                conf::wrong_worker::<$harness>(&name("wrong_worker"));
            }
            #[test]
            fn wrong_token() {
                conf::wrong_token::<$harness>(&name("wrong_token"));
            }
            #[test]
            fn oversize_frame() {
                conf::oversize_frame::<$harness>(&name("oversize_frame"));
            }
            #[test]
            fn client_killed() {
                conf::peer_killed::<$harness>(&name("client_killed"), true);
            }
            #[test]
            fn listener_killed() {
                conf::peer_killed::<$harness>(&name("listener_killed"), false);
            }
        }
    };
}
