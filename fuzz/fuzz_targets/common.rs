//! Shared by the transport fuzz targets: a session in a temporary directory,
//! worker ids, and a hand-encoded hello (the wire format of
//! `shmwire::transport::handshake`), so a target can speak raw bytes.
#![allow(dead_code)] // each target uses part of it

use shmwire::ids::WorkerId;
use shmwire::shm::Session;
use shmwire::transport::{SessionToken, TransportConfig, PROTOCOL_VERSION};

pub fn wid(n: u8) -> WorkerId {
    WorkerId::from_array([n; 28])
}

pub const TOKEN: SessionToken = SessionToken([0x5e; 16]);

pub fn cfg(n: u8) -> TransportConfig {
    let mut c = TransportConfig::new(wid(n), TOKEN);
    c.handshake_timeout = std::time::Duration::from_millis(300);
    c
}

/// A session under a fresh temporary directory (kept for the process's life).
pub fn session() -> Session {
    let dir = std::env::temp_dir().join(format!("shmwire-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    Session::open_in(dir.join("root"), "fuzz").unwrap()
}

/// A well-formed hello from worker 2 to worker 1 over `wire` (1 TCP, 2 shm)
/// with transport extension `ext` (after the 16-byte client secret).
pub fn hello(wire: u8, ext: &[u8]) -> Vec<u8> {
    let mut v = b"SHMWIRE\0".to_vec();
    v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    v.extend_from_slice(&[1, wire]);
    v.extend_from_slice(&(16u32 << 20).to_le_bytes());
    v.extend_from_slice(wid(2).as_bytes());
    v.extend_from_slice(wid(1).as_bytes());
    v.extend_from_slice(&TOKEN.0);
    v.extend_from_slice(&(16 + ext.len() as u32).to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.extend_from_slice(&[0x5e; 16]);
    v.extend_from_slice(ext);
    v
}
