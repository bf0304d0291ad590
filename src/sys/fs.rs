//! File-system flags and calls that `std` does not offer.

use std::fs::File;
use std::io;

/// `O_NOFOLLOW` for `OpenOptionsExt::custom_flags`.
pub(crate) const O_NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
/// `O_NONBLOCK` for `OpenOptionsExt::custom_flags` (a FIFO opened by
/// mistake then never blocks the open).
pub(crate) const O_NONBLOCK: i32 = rustix::fs::OFlags::NONBLOCK.bits() as i32;

/// `O_DIRECTORY` for `OpenOptionsExt::custom_flags` (open fails unless the
/// path is a directory).
pub(crate) const O_DIRECTORY: i32 = rustix::fs::OFlags::DIRECTORY.bits() as i32;

/// What a file is, for error messages: "a regular file", "a directory",
/// "a symbolic link (never followed)", "a FIFO", "a socket", "a device".
pub(crate) fn file_type_name(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link (never followed)"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else {
        "a file of an unknown kind"
    }
}

/// Reads a small file of a session directory (a token, a directory entry)
/// as hostile input: the name is not followed (`O_NOFOLLOW`: a symlink is
/// `ELOOP`), opening never blocks (`O_NONBLOCK`: a FIFO put in its place
/// would otherwise wait for a writer forever), anything but a regular file
/// is refused (`InvalidData`, naming what it is), and at most `max + 1`
/// bytes are read, so a file grown to any size costs no more (the caller
/// tells a too-long file by its length).
pub(crate) fn read_small_regular(path: &std::path::Path, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = open_regular(path)?;
    let mut out = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut out)?;
    Ok(out)
}

/// Opens `path` for reading as [`read_small_regular`] does: never
/// following a symbolic link, never blocking, refusing anything but a
/// regular file (`InvalidData`, naming what it is).
pub(crate) fn open_regular(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {}, not a regular file",
                path.display(),
                file_type_name(ft)
            ),
        ));
    }
    Ok(f)
}

/// Whether `e` is `ENOTEMPTY` (`rmdir` of a directory that still holds
/// entries).
pub(crate) fn is_enotempty(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
}

/// Whether `e` says a path no longer names a directory to open: gone
/// (`ENOENT`), or replaced by something else — a regular file or a
/// symlink, which `open` with `O_DIRECTORY | O_NOFOLLOW` refuses with
/// `ENOTDIR` or `ELOOP`.
pub(crate) fn is_gone_or_not_a_directory(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error())
        || is_eloop(e)
}

/// `errno` value of `ELOOP` (what `open` with `O_NOFOLLOW` returns on a
/// symlink).
pub(crate) fn is_eloop(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses a file of `len` bytes beyond this process's file-size limit
/// (the soft `RLIMIT_FSIZE`, `ulimit -f`) with an error that names it:
/// growing a file past it (`ftruncate`, `fallocate`, a write) makes the
/// kernel send `SIGXFSZ`, whose default action kills the process — a
/// store serving a client's large `put`, a worker making a connection's
/// rings (the attack on `35c208a`). Every place that sizes a file from a
/// length it was given asks this first ([`reserve`], `memfd::create_sealed`,
/// `Segment::create`).
pub(crate) fn check_file_size(len: u64) -> io::Result<()> {
    match file_size_limit() {
        Some(limit) if len > limit => Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!(
                "a file of {len} bytes would exceed this process's file-size limit of {limit} \
                 bytes (RLIMIT_FSIZE, `ulimit -f`)"
            ),
        )),
        _ => Ok(()),
    }
}

/// This process's file-size limit in bytes (the soft `RLIMIT_FSIZE`);
/// `None`: unlimited.
pub(crate) fn file_size_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Fsize).current
}

/// Reserves `len` bytes of `file` from offset 0 (`fallocate(2)`, mode 0),
/// so later writes through a mapping cannot fail for lack of space (which
/// would be `SIGBUS`). Returns the error the file system gives (`ENOSPC`
/// when it is full), or [`check_file_size`]'s beyond the file-size limit.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    check_file_size(len)?;
    loop {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `errno` value of `ENOSPC` (no space left on the device).
pub(crate) const ENOSPC: i32 = rustix::io::Errno::NOSPC.raw_os_error();

/// Creates a regular file in directory `dir` that has no name at all
/// (`open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)`): nobody can open
/// it by a path, only through a descriptor. Errors as the file system
/// gives them; [`tmpfile_unsupported`] tells a file system that does not
/// offer `O_TMPFILE` apart.
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the store uses it
pub(crate) fn open_tmpfile(dir: &std::path::Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    loop {
        match rustix::fs::open(
            dir,
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `e` (from [`open_tmpfile`]) says the file system does not
/// support `O_TMPFILE` (`EOPNOTSUPP`, `EISDIR` on kernels that predate it,
/// `EINVAL`), as opposed to a real failure (no room, no directory, no
/// descriptors).
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the store uses it
pub(crate) fn tmpfile_unsupported(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::OPNOTSUPP, Errno::ISDIR, Errno::INVAL]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// Whether `e` is `EMFILE` or `ENFILE` (this process, or the system, is
/// out of file descriptors).
#[cfg_attr(shmwire_loom, allow(dead_code))] // the store and the directory use it
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE]
        .iter()
        .any(|x| e.raw_os_error() == Some(x.raw_os_error()))
}

/// Whether `EMFILE` or `ENFILE` appears anywhere in `e`'s chain of
/// causes (as an `io::Error` or a `rustix` errno; at most 16 deep, as
/// `error_chain`).
#[cfg_attr(shmwire_loom, allow(dead_code))] // the node uses it
pub(crate) fn chain_is_out_of_descriptors(e: &(dyn std::error::Error + 'static)) -> bool {
    use rustix::io::Errno;
    let mut next = Some(e);
    for _ in 0..16 {
        let Some(cause) = next else { break };
        let errno = cause.downcast_ref::<Errno>().copied();
        if cause
            .downcast_ref::<io::Error>()
            .is_some_and(is_out_of_descriptors)
            || errno.is_some_and(|x| x == Errno::MFILE || x == Errno::NFILE)
        {
            return true;
        }
        next = cause.source();
    }
    false
}

/// One descriptor an accept loop keeps open (on `/dev/null`) to give up
/// when `accept` fails for want of descriptors and nothing else can make
/// room, so that a process at its descriptor limit still takes the waiting
/// caller and answers it — a refusal naming the cause, a health check —
/// instead of leaving it in the kernel's queue until it times out (the
/// classic `EMFILE` reserve of libev's and nginx's accept loops). Each
/// listener keeps its own and calls [`SpareDescriptor::retake`] as soon as
/// the connection it gave the spare up for may have closed (before anything
/// else of its thread can take the freed descriptor). Best effort: another
/// thread may take the freed descriptor first, and the accept then fails
/// as it would without one. `Default` is one not taken yet (the first
/// [`SpareDescriptor::retake`] opens it).
#[cfg_attr(shmwire_loom, allow(dead_code))] // only listeners use it
#[derive(Debug, Default)]
pub(crate) struct SpareDescriptor(Option<std::fs::File>);

#[cfg_attr(shmwire_loom, allow(dead_code))]
impl SpareDescriptor {
    /// Opens the spare (none if even that fails: the loop then works as
    /// without one until [`SpareDescriptor::retake`] succeeds).
    pub(crate) fn take() -> Self {
        Self(std::fs::File::open("/dev/null").ok())
    }

    /// Opens the spare again if it was given up and a descriptor is free.
    pub(crate) fn retake(&mut self) {
        if self.0.is_none() {
            *self = Self::take();
        }
    }

    /// Closes the spare, so that the next `accept` can have its
    /// descriptor; `false` if it was already given up.
    pub(crate) fn give_up(&mut self) -> bool {
        self.0.take().is_some()
    }
}

/// How many more descriptors this process can open now, counted up to
/// `want`: duplicates of `fd` are made until one fails (`EMFILE`, `ENFILE`)
/// or `want` exist, then all closed again.
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the node uses it
pub(crate) fn spare_descriptors(fd: std::os::fd::BorrowedFd<'_>, want: usize) -> usize {
    let mut dups = Vec::with_capacity(want);
    while dups.len() < want {
        match rustix::io::fcntl_dupfd_cloexec(fd, 0) {
            Ok(d) => dups.push(d),
            Err(_) => break,
        }
    }
    dups.len()
}

/// This process's soft `RLIMIT_NOFILE` (`u64::MAX`: unlimited).
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the node uses it
pub(crate) fn nofile_limit() -> u64 {
    use rustix::process::{getrlimit, Resource};
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (a process
/// that keeps one descriptor per object needs many). Returns the soft
/// limit in force afterwards (`u64::MAX`: unlimited); a refusal leaves the
/// limit as it was.
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the store and the node use it
pub(crate) fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current != now.maximum {
        let raised = Rlimit {
            current: now.maximum,
            maximum: now.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_err() {
            return now.current.unwrap_or(u64::MAX);
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Opens `path` read-only for a lock, creating it (mode 0600) if missing:
/// never following a symbolic link (`ELOOP`), never blocking on a FIFO
/// (`O_NONBLOCK`), close-on-exec. Read-only: closing it is no
/// `IN_CLOSE_WRITE` (what a directory watch wakes for).
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the directory uses it
pub(crate) fn open_lock_file(path: &std::path::Path) -> io::Result<File> {
    open_locking(path, rustix::fs::OFlags::RDONLY)
}

/// [`open_lock_file`] for reading and writing: a worker name's claim file,
/// which its holder also writes its record into.
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the directory uses it
pub(crate) fn open_claim_file(path: &std::path::Path) -> io::Result<File> {
    open_locking(path, rustix::fs::OFlags::RDWR)
}

/// [`open_lock_file`] with access `mode`.
#[cfg_attr(shmwire_loom, allow(dead_code))]
fn open_locking(path: &std::path::Path, mode: rustix::fs::OFlags) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        mode | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    )?;
    Ok(File::from(fd))
}

/// Whether `e` is `ENOMEM` (the kernel could not allocate for the call).
#[cfg_attr(shmwire_loom, allow(dead_code))] // the store and the directory use it
pub(crate) fn is_out_of_memory(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOMEM.raw_os_error())
}

/// Milliseconds of the host's `CLOCK_BOOTTIME`: one clock for every
/// process of the host, never stepped (an NTP step or `settimeofday`
/// moves only `CLOCK_REALTIME`), counting through suspend.
#[cfg_attr(shmwire_loom, allow(dead_code))] // only the store's index uses it
pub(crate) fn boottime_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(t.tv_nsec as u64 / 1_000_000)
}
