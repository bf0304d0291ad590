//! A watch on one directory (inotify): what wakes an idle node.
//!
//! The node (`Node::run`) runs a round when something changes in its
//! session directory, and otherwise rarely. A death is such a change:
//! every file whose lock says a process lives (its process lock, a
//! worker's directory entry, the node lock) is held open for writing by
//! its owner, and the kernel drops an `flock` when the last descriptor of
//! the open file goes — the moment inotify reports `IN_CLOSE_WRITE` for
//! that file. So the node hears of a process's end, however it ended,
//! when its locks are released, without a descriptor per process. The
//! watch only wakes; liveness is judged by the locks.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::inotify;

/// The directory events that call for a round: anything made, removed,
/// renamed, closed after writing (a lock released: see the module docs;
/// a file rewritten in place), or whose attributes changed (`chmod`,
/// ownership, link count) in the session directory, and the directory
/// itself removed or moved. Not `MODIFY`: the node's own statistics area
/// is written in place every publish.
fn dir_events() -> inotify::WatchFlags {
    use inotify::WatchFlags as W;
    W::CREATE
        | W::DELETE
        | W::MOVED_FROM
        | W::MOVED_TO
        | W::CLOSE_WRITE
        | W::ATTRIB
        | W::DELETE_SELF
        | W::MOVE_SELF
        | W::ONLYDIR
        | W::DONT_FOLLOW
}

/// A watch over one directory (see the module docs).
#[derive(Debug)]
pub(crate) struct DirWatch {
    /// The inotify instance watching the session directory (`None`: it
    /// could not be made; the watch is incomplete).
    dir: Option<OwnedFd>,
}

impl DirWatch {
    /// A watch on the session directory `dir` (incomplete if inotify is
    /// refused; the error is logged as a warning).
    pub(crate) fn new(dir: &Path) -> Self {
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
            .and_then(|fd| inotify::add_watch(&fd, dir, dir_events()).map(|_| fd));
        let dir = match inotify {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    "no inotify watch on the session directory (fs.inotify.max_user_instances \
                     reached?): the node runs a round every interval instead of on changes"
                );
                None
            }
        };
        Self { dir }
    }

    /// Whether every change calls for a round by itself (the directory is
    /// watched).
    pub(crate) fn complete(&self) -> bool {
        self.dir.is_some()
    }

    /// Waits until a change in the directory or `until` (an incomplete
    /// watch just sleeps until then). `true`: a change came (its events
    /// are read and dropped). An error of `poll` counts as a change, so
    /// the caller runs a round rather than spin.
    pub(crate) fn wait(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        let Some(d) = &self.dir else {
            std::thread::sleep(left);
            return false;
        };
        let mut fds = [PollFd::new(d, PollFlags::IN)];
        let timeout = Timespec::try_from(left).ok();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => false,
            // A signal: back to the caller, which looks at its stop flag.
            Err(rustix::io::Errno::INTR) => false,
            Ok(_) => {
                self.drain();
                true
            }
            Err(_) => true,
        }
    }

    /// Reads the directory's pending events (what they were does not
    /// matter: a round looks at everything).
    fn drain(&mut self) {
        let Some(d) = &self.dir else { return };
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(d.as_fd(), &mut buf);
        // Non-blocking: ends with EAGAIN once the queue is empty (an
        // overflowed queue's IN_Q_OVERFLOW is just one more event).
        for _ in 0..4096 {
            if reader.next().is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_file_made_or_a_lock_released_in_the_directory_wakes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = DirWatch::new(tmp.path());
        assert!(w.complete());
        // Nothing happens: no wake-up.
        assert!(!w.wait(Instant::now() + Duration::from_millis(30)));
        let path = tmp.path().join("x.lock");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        assert!(w.wait(Instant::now() + Duration::from_secs(5)));
        // The events were read: quiet again while the file stays open.
        assert!(!w.wait(Instant::now() + Duration::from_millis(30)));
        // Its last descriptor closed (its lock, had it one, released).
        drop(f);
        assert!(w.wait(Instant::now() + Duration::from_secs(5)));
        assert!(!w.wait(Instant::now() + Duration::from_millis(30)));
    }
}
