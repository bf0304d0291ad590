//! The eventfd a side can block on, so an epoll/mio loop can wait on many
//! rings. The only place that touches eventfd syscalls.

use std::time::Duration;

/// An eventfd (non-blocking, close-on-exec) shared by a sleeper and its
/// waker. Cloning shares the same kernel object; the transport passes it to
/// the peer process over `SCM_RIGHTS` ([`EventFd::from_owned`] on the other
/// side).
///
/// Under `cfg(shmwire_loom)` it is a `Mutex<u64>` + `Condvar` counter with
/// the same semantics; it still owns a real fd (never written or polled) so
/// that code registering it with an event loop (the transport) compiles.
#[derive(Debug, Clone)]
pub struct EventFd {
    fd: std::sync::Arc<std::os::fd::OwnedFd>,
    #[cfg(shmwire_loom)]
    inner: crate::sync::Arc<(crate::sync::Mutex<u64>, crate::sync::Condvar)>,
}

#[cfg(not(shmwire_loom))]
impl EventFd {
    /// Creates a new eventfd (`EFD_NONBLOCK | EFD_CLOEXEC`, counter 0).
    pub fn new() -> std::io::Result<Self> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Self {
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Wraps an eventfd received from elsewhere (e.g. over `SCM_RIGHTS`)
    /// and makes it non-blocking.
    pub fn from_owned(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
        let flags = fcntl_getfl(&fd)?;
        fcntl_setfl(&fd, flags | OFlags::NONBLOCK)?;
        Ok(Self {
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Adds 1 to the counter, waking a `poll`/epoll waiter.
    pub fn notify(&self) {
        // EAGAIN only when the counter would overflow: a wake-up is then
        // already pending, so it is safe to ignore.
        if let Err(e) = rustix::io::write(&*self.fd, &1u64.to_ne_bytes()) {
            if e != rustix::io::Errno::AGAIN {
                tracing::warn!("eventfd write failed: {e}");
            }
        }
    }

    /// Resets the counter to 0; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 8];
        matches!(rustix::io::read(&*self.fd, &mut buf), Ok(8))
    }

    /// Waits until the counter is non-zero (then drains it) or `timeout`
    /// passes. May return early.
    pub(crate) fn wait(&self, timeout: Duration) {
        use rustix::event::{poll, PollFd, PollFlags};
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&*self.fd, PollFlags::IN)];
        // EINTR and timeouts both mean "return and re-check".
        if let Ok(n) = poll(&mut fds, Some(&ts)) {
            if n > 0 {
                self.drain();
            }
        }
    }
}

impl std::os::fd::AsFd for EventFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&*self.fd)
    }
}

#[cfg(shmwire_loom)]
impl EventFd {
    /// Creates a new modelled eventfd (counter 0).
    pub fn new() -> std::io::Result<Self> {
        use rustix::event::{eventfd, EventfdFlags};
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Self::from_owned(fd)
    }

    /// Wraps `fd` (kept only for `AsFd`) with a fresh modelled counter.
    pub fn from_owned(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        Ok(Self {
            fd: std::sync::Arc::new(fd),
            inner: crate::sync::Arc::new((crate::sync::Mutex::new(0), crate::sync::Condvar::new())),
        })
    }

    /// Adds 1 to the counter and wakes a waiter.
    pub fn notify(&self) {
        let mut n = self.inner.0.lock().unwrap();
        *n += 1;
        self.inner.1.notify_all();
    }

    /// Resets the counter to 0; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        let mut n = self.inner.0.lock().unwrap();
        std::mem::replace(&mut *n, 0) != 0
    }

    /// Waits until the counter is non-zero, then drains it. The timeout is
    /// not modelled, so a lost wake-up deadlocks the loom model.
    pub(crate) fn wait(&self, _timeout: Duration) {
        let mut n = self.inner.0.lock().unwrap();
        if *n == 0 {
            n = self.inner.1.wait(n).unwrap();
        }
        *n = 0;
    }
}

impl super::park::Park for EventFd {
    /// The eventfd counter plays the futex word's role: a write after the
    /// sleeper announced itself leaves it non-zero, so the wait returns.
    #[inline]
    fn park(&self, _word: &crate::sync::AtomicU32, _token: u32, timeout: Duration) {
        self.wait(timeout);
    }
    #[inline]
    fn unpark(&self, _word: &crate::sync::AtomicU32) {
        self.notify();
    }
}
