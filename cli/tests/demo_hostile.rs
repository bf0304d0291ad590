//! Issue 11, input 8: the demo's worker — the pattern users copy — against
//! hostile callers and a dying driver. Refused hellos (garbage, a wrong
//! token, silence) are logged and serving goes on; a driver that is
//! SIGKILLed is reported as dead, not an exit 0 without a word.
//!
//! The worker is started directly (`shmwire __demo-worker`) in a private
//! session root; the "driver" that gets killed is this test binary run
//! again with `SHMWIRE_DEMO_HOSTILE_ROLE=driver`.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmwire::ids::{NodeId, WorkerId};
use shmwire::node::Directory;
use shmwire::shm::Session;
use shmwire::transport::{Connection, Connector, Endpoint, SessionToken, TransportConfig};

const GUARD: Duration = Duration::from_secs(20);
const ROLE: &str = "SHMWIRE_DEMO_HOSTILE_ROLE";
const ACTOR: &str = "demo-counter";
const SESSION: &str = "demo-hostile";
const GONE: &str = "the worker stopped listening after a refused hello";

/// A child killed and reaped on drop.
struct Kid(Option<Child>);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn connector(s: &Session, token: SessionToken) -> Connector {
    Connector::new(
        TransportConfig::new(WorkerId::from_random(), token),
        NodeId::from_random(),
    )
    .with_session(s, Arc::new(Directory::for_session(s).unwrap()))
}

/// The killed driver: connects over shm and waits to be killed.
fn driver() {
    let s = Session::open(SESSION).unwrap();
    let token = shmwire::node::load_or_create_token(&s).unwrap();
    let _c = connector(&s, token).connect_name(ACTOR).unwrap();
    println!("@@CONNECTED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(GUARD);
}

/// A caller that connects and says nothing.
#[allow(dead_code)] // held only to keep the socket open
enum Silent {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

fn hello(token: [u8; 16], intended: WorkerId, wire: u8) -> Vec<u8> {
    let mut v = b"SHMWIRE\0".to_vec();
    v.extend_from_slice(&shmwire::transport::PROTOCOL_VERSION.to_le_bytes());
    v.extend_from_slice(&[1, wire]);
    v.extend_from_slice(&(1u32 << 20).to_le_bytes());
    v.extend_from_slice(WorkerId::from_random().as_bytes());
    v.extend_from_slice(intended.as_bytes());
    v.extend_from_slice(&token);
    // The 16-byte client secret, then (shm) the ring capacity.
    let ext: &[u8] = if wire == 2 {
        &[
            0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e, 0x5e,
            0x5e, 0x5e, 0, 0, 1, 0, 0, 0, 0, 0,
        ]
    } else {
        &[0x5e; 16]
    };
    v.extend_from_slice(&(ext.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(ext);
    v
}

#[test]
fn demo_worker_survives_refused_hellos_and_reports_a_dead_driver() {
    if std::env::var(ROLE).as_deref() == Ok("driver") {
        return driver();
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::env::set_var(shmwire::shm::ROOT_ENV, &root);
    let s = Session::open(SESSION).unwrap();
    let token = shmwire::node::load_or_create_token(&s).unwrap();
    let me = WorkerId::from_random();
    let mut worker = Kid(Some(
        Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["__demo-worker", "--session", SESSION, "--worker"])
            .arg(me.to_string())
            .args(["--wait", "park"])
            .env(shmwire::shm::ROOT_ENV, &root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let dir = Directory::for_session(&s).unwrap();
    let deadline = Instant::now() + GUARD;
    let ep: Endpoint = loop {
        if let Ok(e) = dir.lookup_name(ACTOR) {
            break e;
        }
        assert!(Instant::now() < deadline, "the worker never registered");
        std::thread::sleep(Duration::from_millis(10));
    };
    let unix = ep.unix_socket.clone().unwrap();
    let tcp = ep.tcp.unwrap();

    // Hostile callers: garbage, a wrong token, silence — on both sockets.
    let mut silent = Vec::new();
    for wire in [1u8, 2] {
        let send = |bytes: &[u8]| {
            if wire == 1 {
                let mut t = std::net::TcpStream::connect(tcp).expect(GONE);
                let _ = t.write_all(bytes);
                let _ = t.read(&mut [0u8; 256]);
            } else {
                let mut u = std::os::unix::net::UnixStream::connect(&unix).expect(GONE);
                let _ = u.write_all(bytes);
                let _ = u.read(&mut [0u8; 256]);
            }
        };
        send(&[0x55; 96]);
        send(&hello([0xEE; 16], me, wire));
        if wire == 1 {
            silent.push(Silent::Tcp(std::net::TcpStream::connect(tcp).expect(GONE)));
        } else {
            silent.push(Silent::Unix(
                std::os::unix::net::UnixStream::connect(&unix).expect(GONE),
            ));
        }
    }
    // A real caller is still served, over both transports.
    let c = connector(&s, token);
    let mut shm = c.connect_name(ACTOR).expect("shm caller after refusals");
    let mut tcp_conn = c
        .clone()
        .force_tcp(true)
        .connect_name(ACTOR)
        .expect("TCP caller after refusals");
    assert!(shm.close().is_ok() && tcp_conn.close().is_ok());
    let w = worker.0.as_mut().unwrap();
    assert!(
        w.try_wait().unwrap().is_none(),
        "the worker exited after refused hellos"
    );

    // A driver killed mid-connection is reported.
    let mut d = Kid(Some(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "demo_worker_survives_refused_hellos_and_reports_a_dead_driver",
                "--nocapture",
            ])
            .env(ROLE, "driver")
            .env(shmwire::shm::ROOT_ENV, &root)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut out = d.0.as_mut().unwrap().stdout.take().unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + GUARD;
    while !String::from_utf8_lossy(&seen).contains("@@CONNECTED") {
        assert!(Instant::now() < deadline, "the driver never connected");
        let mut b = [0u8; 256];
        let n = out.read(&mut b).unwrap();
        assert!(n > 0, "the driver exited");
        seen.extend_from_slice(&b[..n]);
    }
    drop(d); // SIGKILL
    std::thread::sleep(Duration::from_millis(500));
    drop(silent);
    let mut w = worker.0.take().unwrap();
    let _ = w.kill();
    let out = w.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase();
    eprintln!("worker log:\n{log}");
    assert!(log.contains("refused"), "refused hellos not logged");
    assert!(log.contains("died"), "the dead driver was not reported");
    let _ = s.remove_all();
}
