//! The node's HTTP/1.0 endpoint: one mio event loop on its own thread in
//! which every connection is a small state machine (reading its request
//! head, then writing its answer) with one total deadline. No client can
//! delay another: a silent or dripping client only holds its own slot until
//! its deadline, then gets `408 Request Timeout` and is closed; at most
//! [`HTTP_MAX_CONNECTIONS`] requests are served at once, and a client over
//! the cap gets `503 Service Unavailable` at once (STYLE habit 16). After
//! its answer a connection's write side is shut and it lingers at most
//! 200 ms, discarding what the client still sends, so the answer is not
//! lost to a reset.
//!
//! `GET /inspect` gathers the session's report, which reads every
//! directory entry and statistics area and can take tens of milliseconds:
//! it runs on a thread of its own (`node inspect`), never on the loop's,
//! so it delays no `/health` and no other client. The loop hands it the
//! waiting connections' tokens over a channel; it gathers once for all
//! requests queued meanwhile, sends the answer back and wakes the loop
//! (a `mio::Waker`). A connection waits for it at most
//! [`INSPECT_TIMEOUT`] (then `503`); at most [`INSPECT_QUEUE`] wait at
//! once (the next gets `503` at once).
//!
//! `GET /health` answers `200` `ok <session> <pid>` while every part of
//! the node works, `503` naming each one that does not and why (the
//! object endpoint while its store client is broken, the store while its
//! listener's socket or entry is lost and cannot be put back, the node
//! while a file of its own could not be put back in its last round: each
//! part's [`Health`]).
//!
//! [`HttpEndpoint::start`] makes everything the loop needs (the event
//! loop, the listener's registration, the waker, the inspect thread)
//! before the loop's thread runs: a failure (e.g. out of descriptors) is
//! the node's start error, never an endpoint that stopped after the node
//! said it was ready.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::inspect::SessionReport;
use crate::shm::Session;
use crate::store::Health as PartHealth;

/// How long one client may take to send its request head, and then again
/// to take the answer (one deadline each, not per read).
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// Most connections the endpoint holds open at once. The next one takes
/// the slot of the oldest connection still waiting for its request head
/// (which gets `503` and is closed); with none such, it gets `503` itself.
pub const HTTP_MAX_CONNECTIONS: usize = 64;

/// Longest request head accepted (`400` beyond it).
const MAX_HEAD: usize = 4096;

const LISTENER: Token = Token(0);
/// The inspect thread's wake-up of the loop (connection tokens start at 1
/// and wrap long before reaching it).
const WAKER: Token = Token(usize::MAX);

/// Longest a `/inspect` request waits for its report (`503` after it).
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most `/inspect` requests waiting for a report at once.
pub const INSPECT_QUEUE: usize = 16;

/// How often the loop looks at the stop flag, at most.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// How long a connection whose answer is written lingers, reading and
/// discarding what the client still sends, before it is closed (closing
/// with unread bytes would reset the connection and could lose the answer).
const LINGER: Duration = Duration::from_millis(200);

struct Conn {
    stream: TcpStream,
    head: Vec<u8>,
    /// The answer, once decided, and how much of it is sent.
    out: Option<(Vec<u8>, usize)>,
    /// Answer written, write side shut: draining until EOF or deadline.
    closing: bool,
    /// Waiting for the inspect thread's report.
    inspecting: bool,
    deadline: Instant,
}

impl Conn {
    fn new(stream: TcpStream, out: Option<Vec<u8>>) -> Self {
        Self {
            stream,
            head: Vec::new(),
            out: out.map(|m| (m, 0)),
            closing: false,
            inspecting: false,
            deadline: Instant::now() + HTTP_TIMEOUT,
        }
    }
}

/// What one step of a connection leaves to do.
enum Step {
    Keep,
    Close,
}

/// The running endpoint: its loop's thread. Dropping it stops the loop
/// (and the inspect thread) and waits for them.
#[derive(Debug)]
pub(super) struct HttpEndpoint {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpEndpoint {
    /// Serves on `listener` (`/health` asks each of `parts`, by name): makes
    /// every resource the loop needs — the event loop, the listener's
    /// registration, the waker, the inspect thread, the loop's thread —
    /// here, so an error (e.g. `EMFILE`) is the caller's and nothing is
    /// left running; the loop's thread itself makes nothing that can fail.
    pub(super) fn start(
        listener: TcpListener,
        session: &Session,
        parts: Vec<(&'static str, PartHealth)>,
    ) -> io::Result<Self> {
        let lp = Loop::new(listener, session, parts)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("node http".into())
            .spawn(move || {
                if let Err(e) = lp.run(&stop2) {
                    tracing::warn!(error = %e, "node http: the endpoint stopped");
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the loop (within 50 ms) and waits for its thread.
    pub(super) fn stop(&mut self) {
        // Relaxed: a flag the loop polls each turn; it publishes nothing.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The inspect thread: gathers the report for every token queued, once per
/// batch, and hands the answers back, waking the loop. Ends when the loop
/// drops its sender.
fn inspect_thread(
    session: Session,
    jobs: mpsc::Receiver<Token>,
    done: mpsc::Sender<(Token, Vec<u8>)>,
    waker: Arc<mio::Waker>,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter());
        let page = match SessionReport::gather(&session) {
            Ok(r) => response("200 OK", &crate::terminal_safe(&r.to_string())),
            Err(e) => response("500 Internal Server Error", &format!("{e}\n")),
        };
        for t in batch {
            if done.send((t, page.clone())).is_err() {
                return;
            }
        }
        if let Err(e) = waker.wake() {
            tracing::warn!(error = %e, "node http: waking the loop");
        }
    }
}

/// The loop's side of the inspect thread.
struct Inspector {
    jobs: Option<mpsc::Sender<Token>>,
    done: mpsc::Receiver<(Token, Vec<u8>)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inspector {
    fn drop(&mut self) {
        // Its `recv` fails once the sender is gone; it finishes the
        // report it may be gathering (bounded reads) and ends.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything the loop runs with, made before its thread starts.
struct Loop {
    listener: mio::net::TcpListener,
    poll: Poll,
    inspector: Inspector,
    session: Session,
    parts: Vec<(&'static str, PartHealth)>,
}

impl Loop {
    fn new(
        listener: TcpListener,
        session: &Session,
        parts: Vec<(&'static str, PartHealth)>,
    ) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let mut listener = mio::net::TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let s2 = session.clone();
        let thread = std::thread::Builder::new()
            .name("node inspect".into())
            .spawn(move || inspect_thread(s2, jobs_rx, done_tx, waker))?;
        Ok(Self {
            listener,
            poll,
            inspector: Inspector {
                jobs: Some(jobs_tx),
                done: done_rx,
                thread: Some(thread),
            },
            session: session.clone(),
            parts,
        })
    }

    fn run(self, stop: &AtomicBool) -> io::Result<()> {
        let Self {
            listener,
            mut poll,
            inspector,
            session,
            parts,
        } = self;
        let health = Health {
            session: &session,
            parts: &parts,
        };
        serve(&listener, &mut poll, &inspector, &health, stop)
    }
}

/// What `/health` looks at.
struct Health<'a> {
    session: &'a Session,
    /// Each part of the node that can say it is not working, by name.
    parts: &'a [(&'static str, PartHealth)],
}

/// The loop: serves until `stop` is set (checked at least every 50 ms).
fn serve(
    listener: &mio::net::TcpListener,
    poll: &mut Poll,
    inspector: &Inspector,
    health: &Health<'_>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut events = Events::with_capacity(128);
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next = 1usize;
    // Connections left queued by the last turn: the edge-triggered
    // listener reports no new event for them, so the next turn accepts
    // again — at once after a turn that took its most, within 50 ms after
    // an accept failed (e.g. out of descriptors), until the queue drains.
    let mut queued = Queued::Nothing;
    let mut spare = crate::sys::fs::SpareDescriptor::take();
    // Relaxed: a flag polled each turn; it publishes nothing.
    while !stop.load(Ordering::Relaxed) {
        spare.retake();
        let now = Instant::now();
        let wait = conns
            .values()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .map_or(STOP_CHECK, |d| d.min(STOP_CHECK));
        let wait = if queued == Queued::More {
            Duration::ZERO
        } else {
            wait
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut answered = Vec::new();
        // One accept turn at most: for new callers, or for those the last
        // turn left queued.
        if queued != Queued::Nothing || events.iter().any(|ev| ev.token() == LISTENER) {
            let failing = queued == Queued::Failing;
            queued = accept_all(listener, poll, &mut conns, &mut next, &mut spare, failing);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                continue;
            }
            if ev.token() == WAKER {
                answered.extend(inspector.done.try_iter());
                continue;
            }
            let t = ev.token();
            let waiting = conns.values().filter(|c| c.inspecting).count();
            let step = match conns.get_mut(&t) {
                Some(c) => advance(c, t, inspector, waiting, health),
                None => continue,
            };
            if let Step::Close = step {
                if let Some(mut c) = conns.remove(&t) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
        // Reports from the inspect thread: each waiting connection gets its
        // answer (one that closed or timed out meanwhile is skipped).
        for (t, page) in answered {
            let step = match conns.get_mut(&t) {
                Some(c) if c.inspecting => {
                    c.inspecting = false;
                    c.out = Some((page, 0));
                    c.deadline = Instant::now() + HTTP_TIMEOUT;
                    write_out(c)
                }
                _ => continue,
            };
            if let Step::Close = step {
                if let Some(mut c) = conns.remove(&t) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
        // Deadlines: a head not complete in time gets 408; an answer not
        // taken in time is dropped.
        let now = Instant::now();
        let expired: Vec<Token> = conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            let step = match conns.get_mut(&t) {
                Some(c) if c.out.is_none() => {
                    let msg = if c.inspecting {
                        c.inspecting = false;
                        response(
                            "503 Service Unavailable",
                            "inspect did not finish in time\n",
                        )
                    } else {
                        response("408 Request Timeout", "request head not complete in time\n")
                    };
                    c.out = Some((msg, 0));
                    c.deadline = now + HTTP_TIMEOUT;
                    write_out(c)
                }
                _ => Step::Close,
            };
            if let Step::Close = step {
                if let Some(mut c) = conns.remove(&t) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }
    Ok(())
}

/// What [`accept_all`] left in the kernel's queue for the next turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// Nothing: the next connection comes with an event.
    Nothing,
    /// An accept failed with connections left (e.g. out of descriptors):
    /// tried again every turn.
    Failing,
    /// The turn took its [`HTTP_MAX_CONNECTIONS`]: the next turn comes at
    /// once, after the connections already open had theirs.
    More,
}

/// Accepts the queued connections, at most [`HTTP_MAX_CONNECTIONS`] in one
/// turn (more would only displace connections accepted in the same turn,
/// and a flood re-opening connections as fast as they are accepted would
/// hold the loop for good); says what it left queued (`failing`: an accept
/// failed last turn too, so the failure is not logged again). Out of
/// descriptors, it gives up an idle connection's descriptor, else the
/// `spare` (CI on `e2f06f5`: a node at its descriptor limit left `/health`
/// unanswered for 30 s, until a descriptor happened to be freed).
fn accept_all(
    listener: &mio::net::TcpListener,
    poll: &Poll,
    conns: &mut HashMap<Token, Conn>,
    next: &mut usize,
    spare: &mut crate::sys::fs::SpareDescriptor,
    failing: bool,
) -> Queued {
    for _ in 0..HTTP_MAX_CONNECTIONS {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let mut busy = conns.values().filter(|c| !c.closing).count();
                if busy >= HTTP_MAX_CONNECTIONS && displace_oldest_idle(conns, poll) {
                    busy -= 1;
                }
                let out = (busy >= HTTP_MAX_CONNECTIONS)
                    .then(|| response("503 Service Unavailable", "too many open connections\n"));
                if let (Some(msg), true) = (&out, conns.len() >= 2 * HTTP_MAX_CONNECTIONS) {
                    // Not even room to linger: best effort, never waits (a
                    // fresh socket has room), then closed.
                    let _ = stream.write(msg);
                    continue;
                }
                *next = next.wrapping_add(1).max(1);
                let t = Token(*next);
                if let Err(e) = poll.registry().register(
                    &mut stream,
                    t,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    tracing::debug!(error = %e, "node http: register");
                    continue;
                }
                let mut c = Conn::new(stream, out);
                if c.out.is_some() {
                    if let Step::Close = write_out(&mut c) {
                        let _ = poll.registry().deregister(&mut c.stream);
                        continue;
                    }
                }
                conns.insert(t, c);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Queued::Nothing,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors before the cap: the oldest connection still
            // waiting for its request gives its descriptor to the next one,
            // as at the cap. Under a low limit, silent connections would
            // otherwise take every descriptor and leave later clients (a
            // health check) unaccepted in the kernel's queue.
            Err(e)
                if crate::sys::fs::is_out_of_descriptors(&e)
                    && crate::sys::poll::connection_waiting(listener.as_fd())
                    && (displace_oldest_idle(conns, poll) || spare.give_up()) =>
            {
                continue
            }
            Err(e) => {
                // e.g. EMFILE with nothing to displace: leave the rest
                // queued for the next turn.
                if !failing {
                    tracing::warn!(error = %e, "node http: accept failed");
                }
                return Queued::Failing;
            }
        }
    }
    if crate::sys::poll::connection_waiting(listener.as_fd()) {
        Queued::More
    } else {
        Queued::Nothing
    }
}

/// At the cap, a new connection takes the slot of the oldest one still
/// waiting for its request head (answered `503` and closed): holding many
/// silent connections open — from any local user, the port has no token —
/// then cannot keep a prompt client such as a health check out, because
/// every newcomer pushes the oldest holder out, and a client that sends its
/// request at once is answered long before it becomes the oldest. Slots
/// busy answering or waiting for an `/inspect` report are never taken.
/// `false` when there is no such connection.
fn displace_oldest_idle(conns: &mut HashMap<Token, Conn>, poll: &Poll) -> bool {
    let mut idle: Vec<(Instant, Token)> = conns
        .iter()
        .filter(|(_, c)| c.out.is_none() && !c.inspecting && !c.closing)
        .map(|(t, c)| (c.deadline, *t))
        .collect();
    idle.sort_unstable();
    // A request that waits unread (its connection accepted in this burst,
    // not read yet) is read now: the oldest that has still sent nothing
    // goes; failing that, the oldest whose head is incomplete. A whole
    // head stays, to be answered when its event comes.
    let mut partial = None;
    for &(_, t) in &idle {
        let Some(c) = conns.get_mut(&t) else { continue };
        read_waiting(c);
        if c.head.is_empty() {
            return displace(conns, t, poll);
        }
        if partial.is_none() && !head_complete(&c.head) && c.head.len() <= MAX_HEAD {
            partial = Some(t);
        }
    }
    partial.is_some_and(|t| displace(conns, t, poll))
}

/// Answers `503` to connection `t` (best effort, never waits: an idle
/// socket has room) and closes it.
fn displace(conns: &mut HashMap<Token, Conn>, t: Token, poll: &Poll) -> bool {
    let Some(mut c) = conns.remove(&t) else {
        return false;
    };
    let _ = c.stream.write(&response(
        "503 Service Unavailable",
        "displaced: too many open connections, and this one sent no whole request\n",
    ));
    let _ = poll.registry().deregister(&mut c.stream);
    true
}

/// Whether `head` holds a whole request head (its blank line).
fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Reads what `c`'s socket holds into its request head without blocking,
/// up to just over [`MAX_HEAD`] (the rest, and an end of stream or error,
/// is for its event to find: edge-triggered, it reads until `WouldBlock`).
fn read_waiting(c: &mut Conn) {
    let mut buf = [0u8; 1024];
    while c.head.len() <= MAX_HEAD {
        match c.stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => c.head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Reads what is there (edge-triggered: until `WouldBlock`), decides the
/// answer once the head is complete (`/inspect`: hands the token `t` to the
/// inspect thread, `waiting` requests already queued there), and writes
/// what the socket takes.
fn advance(
    c: &mut Conn,
    t: Token,
    inspector: &Inspector,
    waiting: usize,
    health: &Health<'_>,
) -> Step {
    if c.closing {
        return drain(c);
    }
    if c.inspecting {
        // Its answer comes from the inspect thread; nothing to read.
        return Step::Keep;
    }
    if c.out.is_none() {
        let mut buf = [0u8; 1024];
        let mut eof = false;
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.head.extend_from_slice(&buf[..n]);
                    if c.head.len() > MAX_HEAD {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Step::Close,
            }
        }
        let complete = head_complete(&c.head);
        let msg = if c.head.len() > MAX_HEAD {
            response("400 Bad Request", "request head over 4 KiB\n")
        } else if complete || eof {
            // A client that half-closes without sending a head (an empty
            // request) gets `400` from `answer` too; one that closed fully
            // reads nothing, and the write fails quietly.
            match answer(&c.head, health) {
                Answer::Now(msg) => msg,
                Answer::Inspect if waiting >= INSPECT_QUEUE => response(
                    "503 Service Unavailable",
                    "too many inspect requests waiting\n",
                ),
                Answer::Inspect => {
                    let sent = inspector.jobs.as_ref().is_some_and(|j| j.send(t).is_ok());
                    if !sent {
                        response("500 Internal Server Error", "the inspect thread ended\n")
                    } else {
                        c.inspecting = true;
                        c.deadline = Instant::now() + INSPECT_TIMEOUT;
                        return Step::Keep;
                    }
                }
            }
        } else {
            return Step::Keep;
        };
        c.out = Some((msg, 0));
        c.deadline = Instant::now() + HTTP_TIMEOUT;
    }
    write_out(c)
}

/// Writes what the socket takes of the answer; once all is written, shuts
/// the write side and lingers ([`LINGER`]).
fn write_out(c: &mut Conn) -> Step {
    let Some((msg, sent)) = c.out.as_mut() else {
        return Step::Keep;
    };
    while *sent < msg.len() {
        match c.stream.write(&msg[*sent..]) {
            Ok(0) => return Step::Close,
            Ok(n) => *sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close,
        }
    }
    if c.stream.shutdown(std::net::Shutdown::Write).is_err() {
        return Step::Close;
    }
    c.closing = true;
    c.deadline = Instant::now() + LINGER;
    drain(c)
}

/// Reads and discards until end of stream (close) or `WouldBlock` (keep).
fn drain(c: &mut Conn) -> Step {
    let mut buf = [0u8; 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return Step::Close,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Step::Close,
        }
    }
}

/// What a complete request head gets.
enum Answer {
    /// This answer, at once.
    Now(Vec<u8>),
    /// The session's report, from the inspect thread.
    Inspect,
}

/// The answer to a complete request head: `400` unless its first line is
/// a request line ([`request_line`]), `505` unless its version is HTTP/1.x,
/// `405` unless its method is `GET`. The path is the target up to a `?`
/// (RFC 9112 §3.2: a query names the same resource here).
fn answer(head: &[u8], health: &Health<'_>) -> Answer {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let Some((method, target, major)) = request_line(line) else {
        return Answer::Now(response(
            "400 Bad Request",
            "malformed request line (want: GET /path HTTP/1.x)\n",
        ));
    };
    if major != b'1' {
        return Answer::Now(response(
            "505 HTTP Version Not Supported",
            "only HTTP/1.x\n",
        ));
    }
    if method != "GET" {
        return Answer::Now(response("405 Method Not Allowed", "only GET\n"));
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    Answer::Now(match path {
        "/health" => {
            let problems: Vec<String> = health
                .parts
                .iter()
                .filter_map(|(name, h)| Some(format!("{name}: {}", h.problem()?)))
                .collect();
            if problems.is_empty() {
                response(
                    "200 OK",
                    &format!("ok {} {}\n", health.session.name(), std::process::id()),
                )
            } else {
                response(
                    "503 Service Unavailable",
                    &format!(
                        "unhealthy {} {}: {}\n",
                        health.session.name(),
                        std::process::id(),
                        crate::terminal_safe(&problems.join("; "))
                    ),
                )
            }
        }
        "/inspect" => return Answer::Inspect,
        _ => response("404 Not Found", "paths: /health /inspect\n"),
    })
}

/// `METHOD SP target SP HTTP/d.d` (a trailing CR dropped), the method a
/// token (RFC 9110 `tchar`s), the target without control characters:
/// `(method, target, major version digit)`. Anything else — an empty line,
/// garbage, a missing or bad version, more words, bytes that are not
/// UTF-8 — is `None`.
fn request_line(line: &[u8]) -> Option<(&str, &str, u8)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    let token = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let major = match version.strip_prefix("HTTP/")?.as_bytes() {
        &[a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit() => a,
        _ => return None,
    };
    let target_ok = !target.is_empty() && !target.bytes().any(|b| b.is_ascii_control());
    (words.next().is_none() && token(method) && target_ok).then_some((method, target, major))
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One turn takes at most [`HTTP_MAX_CONNECTIONS`] connections and
    /// says more are queued; the next takes the rest. (A turn that drained
    /// the queue was held for good by a flood faster than the loop.)
    #[test]
    fn a_turn_accepts_at_most_its_cap() {
        let listener = mio::net::TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let poll = Poll::new().unwrap();
        let clients: Vec<_> = (0..HTTP_MAX_CONNECTIONS + 10)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let (mut conns, mut next) = (HashMap::new(), 0);
        let mut spare = crate::sys::fs::SpareDescriptor::take();
        let mut turn =
            |next: &mut usize| accept_all(&listener, &poll, &mut conns, next, &mut spare, false);
        assert_eq!(turn(&mut next), Queued::More);
        assert_eq!(next, HTTP_MAX_CONNECTIONS);
        assert_eq!(turn(&mut next), Queued::Nothing);
        assert_eq!(next, HTTP_MAX_CONNECTIONS + 10);
        drop(clients);
    }
}
