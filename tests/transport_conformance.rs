//! The transport conformance suite, run on every transport.

mod conformance;

use std::time::Duration;

use shmwire::transport::{
    connect_tcp, Mux, TcpConnection, TcpListener, TransportConfig, TransportError, WorkerId,
};

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
    fn accept(l: &mut TcpListener, timeout: Duration) -> Result<TcpConnection, TransportError> {
        l.accept_timeout(timeout)
    }
    fn connect(
        _env: &(),
        addr: &str,
        intended: WorkerId,
        cfg: &TransportConfig,
    ) -> Result<TcpConnection, TransportError> {
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

conformance_suite!(tcp, super::Tcp, 1_000_000, super::tcp_mux);
