//! The transport conformance suite, run on every transport.

mod conformance;

use std::time::Duration;

use std::path::Path;

use shmwire::node::{Directory, Registration};
use shmwire::shm::Session;
use shmwire::transport::{
    connect_shm, connect_tcp, ConnectError, Endpoint, Mux, ShmConnection, ShmListener, ShmOptions,
    TcpConnection, TcpListener, TransportConfig, WorkerId,
};
use shmwire::wake::WaitStrategy;

/// TCP on 127.0.0.1.
struct Tcp;

impl conformance::Harness for Tcp {
    type Conn = TcpConnection;
    type Listener = TcpListener;
    type Env = ();
    fn env(_name: &str, _parent: bool) {}
    fn listen(_env: &(), cfg: TransportConfig) -> TcpListener {
        TcpListener::bind_localhost(cfg).unwrap()
    }
    fn addr(l: &TcpListener) -> String {
        l.local_addr().unwrap().to_string()
    }
    fn accept(l: &mut TcpListener, timeout: Duration) -> Result<TcpConnection, ConnectError> {
        l.accept_timeout(timeout)
    }
    fn connect(
        _env: &(),
        addr: &str,
        intended: WorkerId,
        cfg: &TransportConfig,
    ) -> Result<TcpConnection, ConnectError> {
        connect_tcp(addr.parse().unwrap(), intended, cfg)
    }
    fn assert_clean(_env: &()) {}
}

fn tcp_mux(conns: Vec<TcpConnection>, per: u64, clients: usize) {
    let mut mux = Mux::new().unwrap();
    for c in conns {
        mux.add(c).unwrap();
    }
    conformance::drain_mux(mux, per, clients);
}

/// A per-test session under the default root, removed by the parent.
struct ShmEnv {
    session: Session,
    parent: bool,
}

impl Drop for ShmEnv {
    fn drop(&mut self) {
        if self.parent {
            let _ = self.session.remove_all();
        }
    }
}

/// Shared memory with the wait mode `W` (0 spin, 1 futex, 2 eventfd).
struct Shm<const W: u8>;

impl<const W: u8> Shm<W> {
    fn opts() -> ShmOptions {
        let wait = match W {
            0 => WaitStrategy::Spin,
            1 => WaitStrategy::spin_park(),
            _ => WaitStrategy::eventfd(),
        };
        // Large enough for the large-frame test's 6 MiB frames.
        ShmOptions {
            ring_capacity: 8 << 20,
            ..ShmOptions::with_wait(wait)
        }
    }
}

impl<const W: u8> conformance::Harness for Shm<W> {
    type Conn = ShmConnection;
    type Listener = (ShmListener, Registration);
    type Env = ShmEnv;
    fn env(name: &str, parent: bool) -> ShmEnv {
        let pid: u32 = std::env::var("SHMWIRE_CONF_PARENT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(std::process::id);
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let sname = format!("t{pid}-{short}");
        let sname = &sname[..sname.len().min(64)];
        ShmEnv {
            session: Session::open_in(shmwire::shm::default_root(), sname).unwrap(),
            parent,
        }
    }
    fn listen(env: &ShmEnv, cfg: TransportConfig) -> (ShmListener, Registration) {
        let id = cfg.worker_id;
        let l = ShmListener::bind(&env.session, cfg, Self::opts()).unwrap();
        let mut e = Endpoint::new(id);
        e.unix_socket = Some(l.socket_path().to_owned());
        let reg = Directory::for_session(&env.session)
            .unwrap()
            .register(&e)
            .unwrap();
        (l, reg)
    }
    fn addr(l: &(ShmListener, Registration)) -> String {
        l.0.socket_path().display().to_string()
    }
    fn accept(
        l: &mut (ShmListener, Registration),
        timeout: Duration,
    ) -> Result<ShmConnection, ConnectError> {
        l.0.accept_timeout(timeout)
    }
    fn connect(
        env: &ShmEnv,
        addr: &str,
        intended: WorkerId,
        cfg: &TransportConfig,
    ) -> Result<ShmConnection, ConnectError> {
        connect_shm(&env.session, Path::new(addr), intended, cfg, &Self::opts())
    }
    fn assert_clean(env: &ShmEnv) {
        // Dead workers' directory entries and sockets, dead creators' lock
        // files: what a node's periodic cleanup removes.
        Directory::for_session(&env.session)
            .unwrap()
            .remove_stale()
            .unwrap();
        env.session
            .cleanup_stale_with_grace(Duration::ZERO)
            .unwrap();
        assert_eq!(
            env.session.segment_names().unwrap(),
            Vec::<String>::new(),
            "segments left behind"
        );
        let socks: Vec<_> = std::fs::read_dir(env.session.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".s-") || n.starts_with(".w-"))
            .collect();
        assert!(
            socks.is_empty(),
            "sockets or directory entries left behind: {socks:?}"
        );
    }
}

fn shm_mux(conns: Vec<ShmConnection>, per: u64, clients: usize) {
    let mut mux = Mux::new().unwrap();
    for c in conns {
        mux.add(c).unwrap();
    }
    conformance::drain_mux(mux, per, clients);
}

conformance_suite!(tcp, super::Tcp, 1_000_000, super::tcp_mux);
conformance_suite!(shm_spin, super::Shm<0>, 1_000_000, super::shm_mux);
conformance_suite!(shm_futex, super::Shm<1>, 1_000_000, super::shm_mux);
conformance_suite!(shm_eventfd, super::Shm<2>, 1_000_000, super::shm_mux);
