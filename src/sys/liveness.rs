//! The one liveness primitive: an exclusive `flock` on a file its owner
//! keeps open for as long as it lives.
//!
//! The kernel drops a `flock` when the last descriptor of the open file
//! description closes — when the owner dies, however it dies — so "can I
//! take the lock without blocking?" answers "is the owner dead?" without
//! trusting a pid (pids are reused, locks are not). Owners open their lock
//! files `O_CLOEXEC`, so an exec'd child never inherits the lock. Both the
//! segment layer (`shm`'s per-process lock files) and the node layer's
//! directory entries use exactly these two functions.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

/// Takes an exclusive lock on `file` without blocking: `Ok(true)` when we
/// now hold it, `Ok(false)` when another open file description holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes a shared lock on `file` without blocking: `Ok(true)` when we now
/// hold it, `Ok(false)` when someone holds it exclusively. (Session
/// creators hold a session directory shared while they set it up; the
/// cleaner holds it exclusively while it sweeps and removes it.)
pub(crate) fn try_lock_shared(file: &File) -> io::Result<bool> {
    loop {
        match flock(file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a lock file says about its owner.
#[derive(Debug)]
pub(crate) enum OwnerState {
    /// Locked: the owner lives.
    Live,
    /// Unlocked: the owner died. We now hold the lock through this `File`,
    /// so nobody else concludes the same at the same time, and can remove
    /// the owner's leftovers before dropping it.
    Dead(File),
    /// No such file.
    Missing,
}

/// Probes the lock file at `path` (opened read-only, `O_NOFOLLOW`,
/// non-blocking: a FIFO or a symlink planted there never blocks or
/// redirects the probe).
pub(crate) fn probe_owner(path: &Path) -> io::Result<OwnerState> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(super::fs::O_NOFOLLOW | super::fs::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(OwnerState::Missing),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            "lock file is not a regular file",
        ));
    }
    if try_lock_exclusive(&file)? {
        Ok(OwnerState::Dead(file))
    } else {
        Ok(OwnerState::Live)
    }
}

/// Whether an error of [`probe_owner`] says the name holds no lock file of
/// shmwire's at all — a symbolic link (`ELOOP`), a socket (`ENXIO`), a
/// FIFO, directory or device (refused as not a regular file) — rather than
/// that probing failed (`EACCES`, `EMFILE`, …). shmwire makes lock files
/// only as regular files, so such a name is, for an owner, a missing lock.
pub(crate) fn is_not_a_lock_file(e: &io::Error) -> bool {
    super::fs::is_eloop(e)
        || e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error())
        || (e.kind() == ErrorKind::InvalidInput && e.raw_os_error().is_none())
}

/// Whether `path` still names the file `file` has open (same device and
/// inode; a missing name or an unreadable one is `false`).
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Removes `path` if it still names the file `held` has open — the dead
/// owner's file we examined and hold (its lock, or the file itself), not a
/// newcomer of the same name. `Ok(false)` if the name is gone or names
/// another file now.
pub(crate) fn remove_if_same(held: &File, path: &Path) -> io::Result<bool> {
    let a = held.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(b) if a.dev() == b.dev() && a.ino() == b.ino() => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pid of the process the kernel names as the holder of an exclusive
/// `flock` on `file` (the `FLOCK … WRITE` line of `/proc/locks` for its
/// device and inode; waiters, `->` lines, are skipped). `None` when no
/// such lock is listed or `/proc/locks` cannot be read. The pid is the
/// one that took the lock, in our pid namespace; for messages only.
/// Reads `/proc/locks` once per call: to ask about many files, read
/// [`FlockHolders`] once.
pub(crate) fn flock_holder(file: &File) -> Option<u32> {
    FlockHolders::read()?.of(file)
}

/// One reading of `/proc/locks`: the holder of every exclusive `flock`,
/// by device and inode, so asking about n files costs one read, not n.
pub(crate) struct FlockHolders(std::collections::HashMap<String, u32>);

impl FlockHolders {
    /// `None` when `/proc/locks` cannot be read.
    pub(crate) fn read() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/locks").ok()?;
        let mut map = std::collections::HashMap::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 6 && f[1] == "FLOCK" && f[3] == "WRITE" {
                if let Ok(pid) = f[4].parse() {
                    map.entry(f[5].to_owned()).or_insert(pid);
                }
            }
        }
        Some(Self(map))
    }

    /// The holder of an exclusive `flock` on `file`, as [`flock_holder`].
    pub(crate) fn of(&self, file: &File) -> Option<u32> {
        self.of_metadata(&file.metadata().ok()?)
    }

    fn of_metadata(&self, md: &std::fs::Metadata) -> Option<u32> {
        let dev = md.dev();
        let key = format!(
            "{:02x}:{:02x}:{}",
            rustix::fs::major(dev),
            rustix::fs::minor(dev),
            md.ino()
        );
        self.0.get(&key).copied()
    }
}

/// Whether process `pid` exists and has not exited (`kill(pid, 0)`:
/// `ESRCH` is "no"; a process of another user, `EPERM`, exists). A zombie
/// — exited, not yet reaped by its parent (state `Z` or `X` in
/// `/proc/<pid>/stat`) — has not: it holds no lock and runs nothing, so a
/// death seen the moment its locks were released is not mistaken for a
/// live process whose entry was removed under it. `None` for pids that
/// name no single process (0, or beyond `i32`).
pub(crate) fn pid_exists(pid: u32) -> Option<bool> {
    let p = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
    match rustix::process::test_kill_process(p) {
        Err(rustix::io::Errno::SRCH) => Some(false),
        _ => Some(!exited(pid)),
    }
}

/// Whether `pid` names an exited process: its leader exiting, a zombie
/// (`Z`) or being reaped (`X`) in `/proc/<pid>/stat` ([`stat_gone`]), and
/// no other thread of it alive (`/proc/<pid>/task`). A leader that ended with `pthread_exit` /
/// `SYS_exit` while other threads run shows `Z` too, though the process
/// lives on (found by the attack on `0e3edad`: such a caller's id was taken
/// for a dead process's). `false` when it cannot be read.
fn exited(pid: u32) -> bool {
    let state = |path: String| std::fs::read(path).ok().and_then(|s| stat_gone(&s));
    if state(format!("/proc/{pid}/stat")) != Some(true) {
        return false;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    let mut gone = tasks.flatten().filter_map(|t| {
        state(format!(
            "/proc/{pid}/task/{}/stat",
            t.file_name().to_string_lossy()
        ))
    });
    gone.all(|g| g)
}

/// `PF_EXITING` in the flags field of `/proc/.../stat`: set when the
/// thread enters `do_exit`, before its files are closed.
const PF_EXITING: u64 = 0x4;

/// Whether the thread of a `/proc/.../stat` line has exited or is
/// exiting: state `Z` (zombie) or `X` (being reaped), or `PF_EXITING` in
/// its flags. A killed process closes its sockets inside `do_exit`, before
/// it becomes a zombie: a caller woken by that close (a refused connect)
/// saw it as alive (found by the attack on `e99056a`: a `SIGKILL`ed worker
/// given up on as "unavailable … its process lives"). The fields follow
/// the last ')' (the command name may hold any byte, parentheses
/// included): state, then the flags as the seventh.
fn stat_gone(stat: &[u8]) -> Option<bool> {
    let rest = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let mut fields = rest
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let state = *fields.next()?.first()?;
    let flags: u64 = std::str::from_utf8(fields.nth(5)?).ok()?.parse().ok()?;
    Some(state == b'Z' || state == b'X' || flags & PF_EXITING != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_leader_with_a_live_thread_is_alive() {
        // The leader's and each task's state, as `exited` reads them (the
        // flags are the field after tpgid).
        let line = |state: &str, flags: u64| format!("12 (a) b)) {state} 1 12 12 0 -1 {flags} 0 0");
        assert_eq!(stat_gone(line("Z", 0x400000).as_bytes()), Some(true));
        assert_eq!(stat_gone(line("X", 0x400000).as_bytes()), Some(true));
        assert_eq!(stat_gone(line("S", 0x400000).as_bytes()), Some(false));
        assert_eq!(stat_gone(line("R", 0x400000).as_bytes()), Some(false));
        // Killed, inside `do_exit`: still `R` or `D`, but exiting.
        assert_eq!(stat_gone(line("R", 0x400004).as_bytes()), Some(true));
        assert_eq!(stat_gone(line("D", 0x400044).as_bytes()), Some(true));
        assert_eq!(stat_gone(b"12 (a) R"), None, "too short");
    }

    #[test]
    fn a_zombie_does_not_exist_and_a_running_process_does() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(pid_exists(pid), Some(true));
        // Killed, not reaped: a zombie until `wait`.
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !exited(pid) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(pid_exists(pid), Some(false));
        child.wait().unwrap();
        assert_eq!(pid_exists(std::process::id()), Some(true));
        assert_eq!(pid_exists(0), None);
    }
}
