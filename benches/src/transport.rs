//! `shmwire bench transport`: round trips of a 256-byte message (the size of
//! a small `PushTaskRequest`) through the [`Connection`] API, two processes,
//! beside raw TCP loopback, a raw Unix socket, a pipe, a crossbeam channel
//! between two threads and (with the `iceoryx2` feature) iceoryx2
//! request-response and publish-subscribe on the same payload, each case
//! preceded by a fresh measurement of the raw atomic limit (the host moves vCPUs between
//! placements, so every ratio is taken against the limit measured next to
//! it). The same cases run under criterion in `benches/benches/transport.rs`.
//!
//! The measuring process listens; the echoing child (`shmwire
//! __bench-child role=transport-echo mode=…`, or the criterion bench binary
//! re-executed) connects, then echoes every frame until the connection
//! closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmwire::ids::WorkerId;
use shmwire::shm::Session;
use shmwire::transport::{
    connect_shm, connect_tcp, AnyConnection, Connection, RecvError, SessionToken, ShmListener,
    ShmOptions, TcpListener, TransportConfig,
};
use shmwire::wake::WaitStrategy;

use super::cases::{self, BenchEnv, CaseKind, ChildProc, Pair, Watchdog};
use super::harness::{pin_current_thread, timed_loop, BenchResult};

/// Bytes per message.
pub const PAYLOAD: usize = 256;
/// Role name of the echoing child.
pub const ECHO_ROLE: &str = "transport-echo";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const RECV_TIMEOUT: Duration = Duration::from_secs(20);

/// One transport case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportCase {
    /// Shared memory, both sides busy-spinning.
    ShmSpin,
    /// Shared memory, spin then futex.
    ShmFutex,
    /// Shared memory, spin then eventfd.
    ShmEventFd,
    /// shmwire's TCP transport on 127.0.0.1.
    Tcp,
    /// Raw `std::net::TcpStream` loopback, `TCP_NODELAY`.
    RawTcp,
    /// Raw Unix stream socket.
    Uds,
    /// A peer shared with `bench ring` on the same 256-byte payload: pipe,
    /// crossbeam channel, iceoryx2 request-response and publish-subscribe.
    Peer(CaseKind),
}

impl TransportCase {
    /// Every case, in run order.
    pub fn all() -> Vec<Self> {
        vec![
            Self::ShmSpin,
            Self::ShmFutex,
            Self::ShmEventFd,
            Self::Tcp,
            Self::RawTcp,
            Self::Uds,
            Self::Peer(CaseKind::Pipe),
            Self::Peer(CaseKind::Crossbeam),
            #[cfg(feature = "iceoryx2")]
            Self::Peer(CaseKind::Iceoryx2Rr),
            #[cfg(feature = "iceoryx2")]
            Self::Peer(CaseKind::Iceoryx2),
        ]
    }

    /// The case name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ShmSpin => "transport/shm-spin/roundtrip",
            Self::ShmFutex => "transport/shm-futex/roundtrip",
            Self::ShmEventFd => "transport/shm-eventfd/roundtrip",
            Self::Tcp => "transport/tcp/roundtrip",
            Self::RawTcp => "peer/tcp-loopback/roundtrip",
            Self::Uds => "peer/uds/roundtrip",
            Self::Peer(k) => k.name(),
        }
    }

    /// Whether a round trip goes through the kernel (fewer iterations).
    pub fn blocking(self) -> bool {
        match self {
            Self::Peer(k) => k.blocking(),
            _ => matches!(self, Self::Tcp | Self::RawTcp | Self::Uds),
        }
    }

    /// The `mode=` word of the echoing child ([`ECHO_ROLE`]); a
    /// [`TransportCase::Peer`] has its own child role.
    fn mode(self) -> &'static str {
        match self {
            Self::ShmSpin => "shm-spin",
            Self::ShmFutex => "shm-futex",
            Self::ShmEventFd => "shm-eventfd",
            Self::Tcp => "tcp",
            Self::RawTcp => "raw-tcp",
            Self::Uds => "uds",
            Self::Peer(_) => "peer",
        }
    }
}

fn shm_options(mode: &str) -> ShmOptions {
    let wait = match mode {
        "shm-spin" => WaitStrategy::Spin,
        "shm-eventfd" => WaitStrategy::eventfd(),
        _ => WaitStrategy::spin_park(),
    };
    ShmOptions {
        ring_capacity: 1 << 16,
        ..ShmOptions::with_wait(wait)
    }
}

const SERVER: WorkerId = WorkerId::from_array([0x51; 28]);
const CLIENT: WorkerId = WorkerId::from_array([0xC1; 28]);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex16(s: &str) -> BenchResult<[u8; 16]> {
    let mut out = [0u8; 16];
    if s.len() != 32 {
        return Err("token must be 32 hex digits".into());
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)?;
    }
    Ok(out)
}

fn spawn(env: &BenchEnv, extra: &[(&str, String)]) -> BenchResult<ChildProc> {
    env.spawn(ECHO_ROLE, extra, Stdio::null(), Stdio::null())
}

#[allow(clippy::large_enum_variant)] // one per bench case, never moved in the loop
enum Side {
    Conn(AnyConnection),
    /// A raw socket, its plain reads guarded by a watchdog on the child.
    Stream(Box<dyn ReadWrite>, Watchdog),
}

/// Accepts the child's connection through `accept` (on a non-blocking
/// listener), waiting at most [`CONNECT_TIMEOUT`] (or the shorter
/// [`cases::stall`]); fails at once if the child exits first.
fn accept_child<S>(
    child: &mut ChildProc,
    mut accept: impl FnMut() -> std::io::Result<S>,
) -> BenchResult<S> {
    let bound = CONNECT_TIMEOUT.min(cases::stall());
    let deadline = Instant::now() + bound;
    loop {
        match accept() {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        child.check_alive()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "the echoing child did not connect within {} s (stopped or hung)",
                bound.as_secs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// The measuring side of a running transport case.
pub struct TransportPair {
    side: Side,
    msg: [u8; PAYLOAD],
    buf: [u8; PAYLOAD],
    // Declared last: dropped after the connection, so the child sees the
    // close and exits before we wait for it.
    _child: ChildProc,
}

impl TransportPair {
    /// Starts `case`: listens, starts the echoing child, accepts it. A
    /// [`TransportCase::Peer`] is not a pair of this kind: start it with
    /// [`super::Case::start`].
    pub fn start(case: TransportCase, env: &mut BenchEnv) -> BenchResult<Self> {
        let token = SessionToken::random()?;
        let cfg = TransportConfig::new(SERVER, token);
        let mut extra = vec![("mode", case.mode().to_owned()), ("token", hex(&token.0))];
        let (side, child) = match case {
            TransportCase::ShmSpin | TransportCase::ShmFutex | TransportCase::ShmEventFd => {
                let mut l = ShmListener::bind(&env.session, cfg, shm_options(case.mode()))?;
                extra.push(("addr", l.socket_path().display().to_string()));
                let child = spawn(env, &extra)?;
                (Side::Conn(l.accept_timeout(CONNECT_TIMEOUT)?.into()), child)
            }
            TransportCase::Tcp => {
                let mut l = TcpListener::bind_localhost(cfg)?;
                extra.push(("addr", l.local_addr()?.to_string()));
                let child = spawn(env, &extra)?;
                (Side::Conn(l.accept_timeout(CONNECT_TIMEOUT)?.into()), child)
            }
            TransportCase::RawTcp => {
                let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                l.set_nonblocking(true)?;
                extra.push(("addr", l.local_addr()?.to_string()));
                let mut child = spawn(env, &extra)?;
                let (s, _) = accept_child(&mut child, || l.accept())?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                let watchdog = Watchdog::start(child.pid()?)?;
                (Side::Stream(Box::new(s), watchdog), child)
            }
            TransportCase::Uds => {
                let path = env
                    .session
                    .dir()
                    .join(format!(".bench-uds-{}.sock", std::process::id()));
                let _ = std::fs::remove_file(&path);
                let l = UnixListener::bind(&path)?;
                l.set_nonblocking(true)?;
                extra.push(("addr", path.display().to_string()));
                let mut child = spawn(env, &extra)?;
                let accepted = accept_child(&mut child, || l.accept());
                let _ = std::fs::remove_file(&path);
                let (s, _) = accepted?;
                s.set_nonblocking(false)?;
                let watchdog = Watchdog::start(child.pid()?)?;
                (Side::Stream(Box::new(s), watchdog), child)
            }
            TransportCase::Peer(k) => {
                return Err(format!("{} is started by Case::start", k.name()).into())
            }
        };
        let mut msg = [0u8; PAYLOAD];
        for (i, b) in msg.iter_mut().enumerate() {
            *b = i as u8;
        }
        Ok(Self {
            side,
            msg,
            buf: [0; PAYLOAD],
            _child: child,
        })
    }

    /// `n` round trips; with a histogram, one sample per round trip.
    pub fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        let msg = &self.msg;
        let buf = &mut self.buf;
        match &mut self.side {
            Side::Conn(c) => timed_loop(n, hist, |_| {
                c.send_with::<_, std::convert::Infallible>(PAYLOAD, |b| {
                    b.copy_from_slice(msg);
                    Ok(PAYLOAD)
                })?;
                let f = c.recv_timeout(RECV_TIMEOUT)?;
                if f.len() != PAYLOAD {
                    return Err(format!("echo of {} bytes", f.len()).into());
                }
                Ok(())
            }),
            Side::Stream(s, watchdog) => watchdog.guard(|| {
                timed_loop(n, hist, |_| {
                    s.write_all(msg)?;
                    s.read_exact(buf)?;
                    watchdog.beat();
                    Ok(())
                })
            }),
        }
    }
}

impl Pair for TransportPair {
    fn run(&mut self, n: u64, hist: Option<&mut Histogram<u64>>) -> BenchResult<Duration> {
        TransportPair::run(self, n, hist)
    }
}

impl Drop for TransportPair {
    fn drop(&mut self) {
        if let Side::Conn(c) = &mut self.side {
            let _ = c.close();
        }
    }
}

/// Entry point of a bench child: plays [`ECHO_ROLE`] itself, hands
/// [`WORKER_ROLE`](super::actor_call::WORKER_ROLE) to the actor-call bench
/// and every other role to the ring bench's children.
pub fn child_main<S: AsRef<str>>(words: &[S]) -> BenchResult<()> {
    let get = |key: &str| -> Option<&str> {
        words
            .iter()
            .map(|w| w.as_ref())
            .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    };
    if get("role") == Some(super::actor_call::WORKER_ROLE) {
        return super::actor_call::child_main(words);
    }
    if get("role") != Some(ECHO_ROLE) {
        return cases::child_main(words);
    }
    let need = |key: &str| get(key).ok_or_else(|| format!("missing {key}="));
    if let Some(cpu) = get("cpu") {
        pin_current_thread(cpu.parse()?)?;
    }
    let mode = need("mode")?;
    let addr = need("addr")?;
    let token = SessionToken(unhex16(need("token")?)?);
    let cfg = TransportConfig::new(CLIENT, token);
    match mode {
        "raw-tcp" | "uds" => {
            let mut s: Box<dyn ReadWrite> = if mode == "uds" {
                Box::new(UnixStream::connect(addr)?)
            } else {
                let s = TcpStream::connect(addr)?;
                s.set_nodelay(true)?;
                Box::new(s)
            };
            let mut buf = [0u8; PAYLOAD];
            loop {
                match s.read_exact(&mut buf) {
                    Ok(()) => s.write_all(&buf)?,
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        _ => {
            let mut conn: AnyConnection = if mode == "tcp" {
                connect_tcp(addr.parse()?, SERVER, &cfg)?.into()
            } else {
                let session = Session::attach_in(PathBuf::from(need("root")?), need("session")?)?;
                connect_shm(&session, addr.as_ref(), SERVER, &cfg, &shm_options(mode))?.into()
            };
            let mut buf = [0u8; PAYLOAD];
            loop {
                let n = match conn.recv_timeout(Duration::from_secs(3600)) {
                    Ok(f) => {
                        let n = f.len().min(PAYLOAD);
                        buf[..n].copy_from_slice(&f[..n]);
                        n
                    }
                    Err(RecvError::Closed) | Err(RecvError::PeerDied { .. }) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                conn.send_with::<_, std::convert::Infallible>(n, |b| {
                    b.copy_from_slice(&buf[..n]);
                    Ok(n)
                })?;
            }
        }
    }
}

/// Runs the transport comparison (see the module docs).
pub fn run(opts: &super::Options) -> BenchResult<super::Report> {
    super::run_mode("transport", "bench-transport", opts, TransportCase::all())
}

impl super::Case for TransportCase {
    fn name(self) -> &'static str {
        TransportCase::name(self)
    }
    fn payload_bytes(self) -> usize {
        PAYLOAD
    }
    fn iterations(self, spin_iters: u64, blocking_iters: u64) -> u64 {
        if self.blocking() {
            blocking_iters
        } else {
            spin_iters
        }
    }
    fn start(self, env: &mut BenchEnv) -> BenchResult<Box<dyn Pair>> {
        match self {
            Self::Peer(k) => cases::start(k, env),
            _ => Ok(Box::new(TransportPair::start(self, env)?)),
        }
    }
}
