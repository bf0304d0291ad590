//! Heartbeats for a thread's TCP connections while the thread is away.
//!
//! A TCP peer is declared dead when it hears nothing for the liveness
//! timeout (`TransportConfig::liveness_timeout`, 5 s), and only the thread
//! that owns a connection reads and answers it. A worker runs a one-thread
//! actor's tasks and normal tasks on its loop thread (Ray's default), so a
//! task longer than the timeout left its TCP callers without a word and
//! they took it for dead ("stopped answering"), though over shared memory
//! the same call succeeded. Ray answers health checks on gRPC threads of
//! their own; here a [`Heartbeats`] helper thread writes a heartbeat on
//! each registered connection while its owner has been away (running a
//! task) for longer than a heartbeat period — the owner lends them with
//! [`crate::wake::handoff`], so the two never write one socket at once.
//!
//! The helper works on the connection's own write buffer
//! ([`TcpConnection`](super::TcpConnection)'s, behind a lock the owner
//! takes uncontended): it hands the kernel what the buffer holds — replies
//! queued for a caller slow to read them keep flowing while the task runs —
//! and, once the buffer is empty, appends a heartbeat there and writes it,
//! so a heartbeat always starts at a frame boundary. It is a `PONG`: the
//! peer counts it as heard and owes no answer. A stopped process writes
//! none (its helper is stopped too), so a stopped worker is still found
//! out.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wake::handoff::{handoff, Lent, Owner};

use super::tcp::WriteBuf;
use super::PeerKey;

/// One connection's registration with a [`Heartbeats`]
/// ([`TcpConnection::heartbeat_beat`](super::TcpConnection::heartbeat_beat)).
#[derive(Debug, Clone)]
pub struct Beat {
    /// Its socket.
    pub fd: RawFd,
    /// Its write buffer (shared with the connection).
    pub write: Arc<Mutex<WriteBuf>>,
}

/// The owner's side: a helper thread writing heartbeats on the owner's
/// registered TCP connections while it is away (see the module docs).
#[derive(Debug)]
pub struct Heartbeats {
    owner: Owner<Beat>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    helper: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeats {
    /// Starts the helper thread, which looks every `period` (a third of the
    /// liveness timeout: the peer pings after a third of silence and gives
    /// up after the whole timeout) and writes a heartbeat on each
    /// registered connection when the owner has been away since its
    /// previous look.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(period: Duration) -> std::io::Result<Self> {
        let (owner, mut helper) = handoff::<Beat>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("shmwire-heartbeats".into())
            .spawn(move || {
                // Relaxed: a flag; `Drop` unparks the thread after setting it.
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::park_timeout(period);
                    helper.look(|b| {
                        // SAFETY: the owner keeps a registered socket open
                        // until it removes it, which it does only while it
                        // holds its connections; `look` runs this only
                        // while the owner is away.
                        beat(unsafe { BorrowedFd::borrow_raw(b.fd) }, &b.write);
                    });
                }
            })?;
        Ok(Self {
            owner,
            stop,
            helper: Some(thread),
        })
    }

    /// Registers the connection under `key`. Call while holding the
    /// connections (not while a [`Heartbeats::lend`] guard lives); its
    /// socket must stay open until [`Heartbeats::remove`].
    pub fn add(&mut self, key: PeerKey, beat: Beat) {
        self.owner.add(key.0, beat);
    }

    /// Forgets the connection under `key` (before its socket closes).
    pub fn remove(&mut self, key: PeerKey) {
        self.owner.remove(key.0);
    }

    /// Leaves the connections to the helper (e.g. to run a task; free
    /// without registered connections) until the guard drops — also by a
    /// panic unwinding through the task ([`Owner::lend`]).
    #[inline]
    pub fn lend(&mut self) -> Lent<'_, Beat> {
        self.owner.lend()
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.helper.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Most bytes a helper lets a connection's write buffer hold when it
/// appends a heartbeat (a connection whose peer takes nothing gets none:
/// its queued frames are heard first once it reads).
const HEARTBEAT_ROOM: usize = 64 << 10;

/// Flushes the connection's queued frames to its socket `fd` as far as the
/// kernel takes them, then, if none are left, writes a heartbeat.
fn beat(fd: BorrowedFd<'_>, write: &Mutex<WriteBuf>) {
    // Never waits: the owner, away, holds no lock.
    let Ok(mut w) = write.try_lock() else {
        return;
    };
    let mut out = Socket(fd);
    if let Err(e) = w.flush_some(&mut out) {
        // The owner finds out at its next write or read.
        tracing::debug!(error = %e, "heartbeat helper: write failed");
        return;
    }
    if w.pending() == 0 {
        w.append_heartbeat(HEARTBEAT_ROOM);
        if let Err(e) = w.flush_some(&mut out) {
            tracing::debug!(error = %e, "heartbeat not written");
        }
    }
}

/// A socket written without waiting and without `SIGPIPE`.
struct Socket<'a>(BorrowedFd<'a>);

impl std::io::Write for Socket<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        crate::sys::tcp::send_now(self.0, bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
