//! The TCP frame decoder, driven through a real `TcpConnection` on
//! loopback: a raw socket completes a correct hello, then sends the fuzz
//! bytes as its "frames" and hangs up. The connection must deliver frames
//! or fail with a typed error (`Protocol`, `FrameTooLarge`, `PeerDied`,
//! `Closed`) — never panic, never hang, never hand out a misaligned frame.
#![no_main]

use std::io::{Read, Write};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmwire::transport::{Connection, RecvError, TcpListener};

#[path = "common.rs"]
mod common;

fn listener() -> &'static Mutex<TcpListener> {
    static L: OnceLock<Mutex<TcpListener>> = OnceLock::new();
    L.get_or_init(|| {
        let mut c = common::cfg(1);
        c.max_frame_len = 1 << 16;
        Mutex::new(TcpListener::bind_localhost(c).unwrap())
    })
}

fuzz_target!(|input: &[u8]| {
    let mut l = listener().lock().unwrap();
    let addr = l.local_addr().unwrap();
    let mut raw = std::net::TcpStream::connect(addr).unwrap();
    raw.write_all(&common::hello(1, &[])).unwrap();
    let mut conn = l.accept_timeout(Duration::from_secs(5)).unwrap();
    let mut reply = [0u8; 96];
    raw.read_exact(&mut reply).unwrap();
    raw.write_all(input).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    let mut frames = 0usize;
    loop {
        match conn.recv_timeout(Duration::from_secs(5)) {
            Ok(f) => {
                assert_eq!(f.as_ptr() as usize % 16, 0, "misaligned frame");
                assert!(f.len() <= 1 << 16);
                frames += 1;
                assert!(frames * 16 <= input.len(), "more frames than bytes");
            }
            Err(RecvError::TimedOut) => panic!("a hung-up peer must not time out"),
            Err(e) => {
                assert!(e.is_fatal(), "{e}");
                break;
            }
        }
    }
});
