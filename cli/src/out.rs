//! Everything the subcommands print to stdout goes through [`outln!`] and
//! [`out!`]: a reader that closes stdout early (`shmwire demo | head -1`)
//! is a normal end, not a panic.
//!
//! Rust ignores `SIGPIPE`, so a write to a closed pipe is an `EPIPE` error,
//! which `println!` turns into a panic (exit status 101). Here it becomes
//! [`StdoutError::Closed`], which the subcommand returns through `?` like
//! any error (so it stops and cleans up what it started, as on an error),
//! and `main` then exits with status 0 and prints nothing. `shmwire node`,
//! which prints from its rounds, stops as on SIGTERM.
//! (`SIGPIPE` is not reset to its default action: the library's Unix
//! sockets would then kill a worker whose peer hangs up.)
//!
//! Diagnostics go to stderr through [`errln!`], which never fails: a
//! reader that closes stderr early (`shmwire demo 2>&1 >out | head -1`)
//! loses the rest of them, and the run goes on (`eprintln!` would panic).
//!
//! A long-running loop (`shmwire node`, the demo's worker) first calls
//! [`background`]: from then on its lines go, in order, through a queue of
//! at most [`QUEUE_BYTES`] per stream to a thread that writes them (one
//! each for stdout and stderr, so a stalled reader of one never holds up
//! the other), so a reader that
//! is alive but stops reading (a stalled log shipper, `| less` left
//! paused) holds up that thread, never the loop. Before (the attack on
//! `e65c959`), the node's loop blocked in `write(2)` for good: no more
//! cleanup rounds, and SIGTERM never acted on. Lines that find the queue
//! full are dropped and counted ("… lines of output dropped"); a stdout
//! error the thread meets is returned by the next [`outln!`], or by
//! [`finish`], which `main` calls before it exits and which waits for the
//! queue at most a bounded time.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Most bytes of lines waiting for the output thread ([`background`]).
pub const QUEUE_BYTES: usize = 1 << 20;

/// How long [`finish`] waits for the output thread to write what waits.
pub const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Lines waiting for one stream's output thread.
#[derive(Default)]
struct Pending {
    /// Whole lines, in the order written.
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines dropped for a full queue since the thread last said so.
    dropped: u64,
    /// The thread is writing a line.
    writing: bool,
    /// The first error writing to the stream (kind, text); only stdout's
    /// is reported (a closed stderr loses lines, see the module docs).
    error: Option<(io::ErrorKind, String)>,
}

/// One stream's queue, its two signals and which stream it writes.
struct Background {
    to_stderr: bool,
    pending: Mutex<Pending>,
    /// Lines were queued.
    queued: Condvar,
    /// A line was written.
    written: Condvar,
}

/// The queues of stdout and stderr, each written by a thread of its own:
/// a reader that stalls one stream never holds up the other's lines (the
/// attack on `0060161`: with one queue for both, a stalled stdout reader
/// kept the node's warnings from its stderr log until it read again, and
/// dropped them once the queue was full). Lines keep their order within a
/// stream, not across the two.
static BACKGROUND: OnceLock<[&'static Background; 2]> = OnceLock::new();

/// The queue of stdout (`false`) or stderr (`true`), once [`background`]
/// started them.
fn queue(to_stderr: bool) -> Option<&'static Background> {
    BACKGROUND.get().map(|q| q[usize::from(to_stderr)])
}

impl Background {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `bytes` (whole lines); returns the stdout error the thread
    /// met, if any (stdout's queue only).
    fn push(&self, bytes: Vec<u8>) -> Result<(), StdoutError> {
        let mut p = self.lock();
        if let Some((kind, text)) = &p.error {
            if !self.to_stderr {
                return Err(StdoutError::from_io(io::Error::new(*kind, text.clone())));
            }
        }
        // One line larger than the queue is taken when the queue is empty
        // (a removal report of many names, to a reader that reads): what is
        // bounded is what waits behind a reader that does not.
        if p.bytes > 0 && p.bytes + bytes.len() > QUEUE_BYTES {
            p.dropped += 1;
            return Ok(());
        }
        p.bytes += bytes.len();
        p.lines.push_back(bytes);
        self.queued.notify_one();
        Ok(())
    }

    /// The output thread: writes the queued lines, in order, as the
    /// reader takes them.
    fn run(&self) {
        loop {
            let (bytes, dropped) = {
                let mut p = self.lock();
                while p.lines.is_empty() {
                    p = self.queued.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                let bytes = p.lines.pop_front().expect("not empty");
                p.bytes -= bytes.len();
                p.writing = true;
                (bytes, std::mem::take(&mut p.dropped))
            };
            if dropped > 0 {
                let note = format!(
                    "shmwire: {dropped} lines of output dropped: more than \
                     {QUEUE_BYTES} bytes waited for the reader to take them\n"
                )
                .into_bytes();
                // Said on stderr, through its queue (never waiting here).
                match queue(true) {
                    Some(q) if !self.to_stderr => drop(q.push(note)),
                    _ => drop(io::stderr().write_all(&note)),
                }
            }
            let result = if self.to_stderr {
                io::stderr().lock().write_all(&bytes)
            } else {
                let mut o = io::stdout().lock();
                o.write_all(&bytes).and_then(|()| o.flush())
            };
            let mut p = self.lock();
            p.writing = false;
            if let Err(e) = result {
                p.error.get_or_insert_with(|| (e.kind(), e.to_string()));
                // What waits for a failed stream goes nowhere.
                p.lines.clear();
                p.bytes = 0;
            }
            self.written.notify_all();
        }
    }
}

/// From here on, this process's lines ([`outln!`], [`out!`], [`errln!`])
/// are written by two threads, one per stream (see the module docs). Call
/// once, at the start of a long-running loop; later calls do nothing.
///
/// Errors: a thread could not be started (the process or user is at its
/// thread limit, `ulimit -u`: the attack on `35c208a` found a panic here);
/// lines are then written by their callers, as before the call.
pub fn background() -> std::io::Result<()> {
    if BACKGROUND.get().is_some() {
        return Ok(());
    }
    let mut made = Vec::with_capacity(2);
    for to_stderr in [false, true] {
        let b: &'static Background = Box::leak(Box::new(Background {
            to_stderr,
            pending: Mutex::new(Pending::default()),
            queued: Condvar::new(),
            written: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name(
                if to_stderr {
                    "shmwire-stderr"
                } else {
                    "shmwire-stdout"
                }
                .into(),
            )
            .spawn(move || b.run())
            .map_err(|e| std::io::Error::new(e.kind(), format!("spawn an output thread: {e}")))?;
        made.push(b);
    }
    // A thread that started while the other did not waits on its empty
    // queue for good: nothing is ever given to it.
    let _ = BACKGROUND.set([made[0], made[1]]);
    Ok(())
}

/// Whether the stdout thread ([`background`]) met an error writing to
/// stdout (its reader closed it, say): a loop that prints rarely looks at
/// this each turn, to stop as its next line would (`false` without
/// [`background`]).
pub fn stdout_failed() -> bool {
    queue(false).is_some_and(|b| b.lock().error.is_some())
}

/// Waits at most `within` for the output threads ([`background`]) to
/// write what waits (what a stalled reader keeps waiting is then given
/// up), and returns the stdout error met, if any; `None` without
/// [`background`].
pub fn finish(within: Duration) -> Option<StdoutError> {
    let queues = BACKGROUND.get()?;
    let deadline = Instant::now() + within;
    // Stderr first: the last diagnostics matter most to whoever reads them.
    for b in [queues[1], queues[0]] {
        let mut p = b.lock();
        while !p.lines.is_empty() || p.writing {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = b
                .written
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    queues[0]
        .lock()
        .error
        .as_ref()
        .map(|(kind, text)| StdoutError::from_io(io::Error::new(*kind, text.clone())))
}

/// Writing to stdout failed.
#[derive(Debug)]
pub enum StdoutError {
    /// The reader closed stdout (`EPIPE`): a normal end.
    Closed,
    /// Any other write error.
    Io(io::Error),
}

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdoutError::Closed => f.write_str("stdout closed"),
            StdoutError::Io(e) => write!(f, "writing to stdout: {e}"),
        }
    }
}

impl std::error::Error for StdoutError {}

impl StdoutError {
    fn from_io(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            StdoutError::Closed
        } else {
            StdoutError::Io(e)
        }
    }
}

/// Writes `args` (and `end`) to stdout and flushes, control characters
/// other than newlines and tabs escaped ([`shmwire::terminal_safe`]: names
/// read from a session directory reach a terminal as text, never as
/// escape sequences).
pub fn write(args: fmt::Arguments<'_>, end: &str) -> Result<(), StdoutError> {
    let text = args.to_string();
    if let Some(b) = queue(false) {
        let mut bytes = shmwire::terminal_safe(&text).into_owned().into_bytes();
        bytes.extend_from_slice(end.as_bytes());
        return b.push(bytes);
    }
    let mut o = io::stdout().lock();
    o.write_all(shmwire::terminal_safe(&text).as_bytes())
        .and_then(|()| o.write_all(end.as_bytes()))
        .and_then(|()| o.flush())
        .map_err(StdoutError::from_io)
}

/// Writes `args` and a newline to stderr, control characters other than
/// newlines and tabs escaped; a failed write (a closed stderr) is ignored.
pub fn write_err(args: fmt::Arguments<'_>) {
    let text = args.to_string();
    if let Some(b) = queue(true) {
        let mut bytes = shmwire::terminal_safe(&text).into_owned().into_bytes();
        bytes.push(b'\n');
        let _ = b.push(bytes);
        return;
    }
    let mut e = io::stderr().lock();
    let _ = e
        .write_all(shmwire::terminal_safe(&text).as_bytes())
        .and_then(|()| e.write_all(b"\n"));
}

/// Whether `e` (as a subcommand returned it) is a closed stdout.
pub fn is_closed(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(e.downcast_ref::<StdoutError>(), Some(StdoutError::Closed))
}

/// `println!` that returns from the enclosing function with the error
/// (a closed stdout included) instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::write(format_args!(""), "\n")?
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), "\n")?
    };
}

/// `print!` that returns from the enclosing function with the error.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*), "")?
    };
}

/// `eprintln!` that never panics: a closed stderr loses the line
/// ([`write_err`]).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::write_err(format_args!($($arg)*))
    };
}
