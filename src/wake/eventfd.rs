//! The eventfd a side can block on, so an epoll/mio loop can wait on many
//! rings. The syscalls themselves are in `crate::sys::eventfd`.

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
        Ok(Self {
            fd: std::sync::Arc::new(crate::sys::eventfd::create()?),
        })
    }

    /// Wraps an eventfd received from elsewhere (e.g. over `SCM_RIGHTS`)
    /// and makes it non-blocking.
    pub fn from_owned(fd: std::os::fd::OwnedFd) -> std::io::Result<Self> {
        crate::sys::eventfd::set_nonblocking(&fd)?;
        Ok(Self {
            fd: std::sync::Arc::new(fd),
        })
    }

    /// Adds 1 to the counter, waking a `poll`/epoll waiter.
    pub fn notify(&self) {
        // A saturated counter (EAGAIN) is success in `signal`: a wake-up is
        // then already pending.
        if let Err(e) = crate::sys::eventfd::signal(&*self.fd) {
            tracing::warn!("eventfd write failed: {e}");
        }
    }

    /// Resets the counter to 0; returns whether it was non-zero.
    pub fn drain(&self) -> bool {
        crate::sys::eventfd::drain(&*self.fd)
    }

    /// Waits until the counter is non-zero (then drains it) or `timeout`
    /// passes. May return early.
    pub(crate) fn wait(&self, timeout: Duration) {
        // EINTR and timeouts both mean "return and re-check".
        if crate::sys::eventfd::wait_readable(&*self.fd, timeout) {
            self.drain();
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
        Self::from_owned(crate::sys::eventfd::create()?)
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
