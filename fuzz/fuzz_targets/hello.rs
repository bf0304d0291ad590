//! The hello on both transports: arbitrary bytes to a `Listener`'s TCP
//! port or Unix socket (byte 0 picks; bit 1 of byte 0 puts a correct hello
//! prefix — magic, version, kind — in front so the fuzzer reaches the
//! fields behind it), then the caller hangs up. The listener must refuse
//! (or time out) that caller with a typed error and then still accept a
//! good caller on the same transport.
#![no_main]

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmwire::shm::Session;
use shmwire::transport::{
    connect_shm, connect_tcp, Connection, Endpoint, ListenOptions, Listener, LookupError,
    PublishError, Published, ShmOptions, WorkerLookup,
};

#[path = "common.rs"]
mod common;

/// A lookup that publishes nowhere (the fuzz target needs no directory).
#[derive(Debug)]
struct Nowhere;
#[derive(Debug)]
struct Guard;
impl Published for Guard {}
impl WorkerLookup for Nowhere {
    fn lookup(&self, id: &shmwire::ids::WorkerId) -> Result<Endpoint, LookupError> {
        Err(LookupError::NoSuchWorker {
            key: id.to_string(),
        })
    }
    fn lookup_name(&self, name: &str) -> Result<Endpoint, LookupError> {
        Err(LookupError::NoSuchWorker { key: name.into() })
    }
    fn publish(&self, _: &Endpoint) -> Result<Box<dyn Published>, PublishError> {
        Ok(Box::new(Guard))
    }
}

fn small_rings() -> ShmOptions {
    ShmOptions {
        ring_capacity: shmwire::transport::shm::MIN_RING_CAPACITY,
        ..ShmOptions::default()
    }
}

fn state() -> &'static Mutex<(Session, Listener)> {
    static S: OnceLock<Mutex<(Session, Listener)>> = OnceLock::new();
    S.get_or_init(|| {
        let s = common::session();
        let l = Listener::bind(
            &s,
            common::cfg(1),
            ListenOptions {
                shm: Some(small_rings()),
                tcp: Some("127.0.0.1:0".parse().unwrap()),
                name: None,
                stats: None,
            },
            &Nowhere,
        )
        .unwrap();
        Mutex::new((s, l))
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let mut guard = state().lock().unwrap();
    let (s, l) = &mut *guard;
    let shm = sel & 1 == 1;
    let mut bytes = Vec::new();
    if sel & 2 != 0 {
        bytes.extend_from_slice(&common::hello(if shm { 2 } else { 1 }, &[])[..12]);
    }
    bytes.extend_from_slice(rest);
    let ep = l.endpoint().clone();
    // The hostile caller: its bytes, then it hangs up.
    if shm {
        let mut u =
            std::os::unix::net::UnixStream::connect(ep.unix_socket.clone().unwrap()).unwrap();
        let _ = u.write_all(&bytes);
    } else {
        let mut t = std::net::TcpStream::connect(ep.tcp.unwrap()).unwrap();
        let _ = t.write_all(&bytes);
    }
    match l.accept_timeout(Duration::from_secs(5)) {
        // Only a byte-for-byte correct hello (with the session's token)
        // becomes a connection; the caller hung up, so it is dead at once.
        Ok(c) => drop(c),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // A good caller is still served.
    let session = s.clone();
    let good = std::thread::spawn(move || -> Result<(), String> {
        let mut c: Box<dyn FnMut() -> Result<(), String>> = if shm {
            let path = ep.unix_socket.unwrap();
            Box::new(move || {
                let mut c = connect_shm(
                    &session,
                    &path,
                    common::wid(1),
                    &common::cfg(2),
                    &small_rings(),
                )
                .map_err(|e| e.to_string())?;
                c.send(b"ok").map_err(|e| e.to_string())
            })
        } else {
            let addr = ep.tcp.unwrap();
            Box::new(move || {
                let mut c = connect_tcp(addr, common::wid(1), &common::cfg(2))
                    .map_err(|e| e.to_string())?;
                c.send(b"ok").map_err(|e| e.to_string())?;
                c.flush().map_err(|e| e.to_string())
            })
        };
        c()
    });
    let mut c = l
        .accept_timeout(Duration::from_secs(5))
        .expect("the listener still accepts a good caller");
    assert_eq!(&*c.recv_timeout(Duration::from_secs(5)).unwrap(), b"ok");
    good.join().unwrap().unwrap();
});
