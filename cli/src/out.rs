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

use std::fmt;
use std::io::{self, Write};

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

/// Writes `args` (and `end`) to stdout and flushes, control characters
/// other than newlines and tabs escaped ([`shmwire::terminal_safe`]: names
/// read from a session directory reach a terminal as text, never as
/// escape sequences).
pub fn write(args: fmt::Arguments<'_>, end: &str) -> Result<(), StdoutError> {
    let text = args.to_string();
    let mut o = io::stdout().lock();
    o.write_all(shmwire::terminal_safe(&text).as_bytes())
        .and_then(|()| o.write_all(end.as_bytes()))
        .and_then(|()| o.flush())
        .map_err(|e| {
            if e.kind() == io::ErrorKind::BrokenPipe {
                StdoutError::Closed
            } else {
                StdoutError::Io(e)
            }
        })
}

/// Writes `args` and a newline to stderr, control characters other than
/// newlines and tabs escaped; a failed write (a closed stderr) is ignored.
pub fn write_err(args: fmt::Arguments<'_>) {
    let text = args.to_string();
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
