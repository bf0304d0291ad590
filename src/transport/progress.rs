//! Whether a peer reads what is queued for it: the one judgement a server
//! makes of a peer whose output waits behind its full ring or socket (the
//! worker of a caller it holds back, `Worker::check_held`; the store
//! service of a client, `Service::drop_unread`).

use std::time::{Duration, Instant};

/// How long a peer has read none of its queued output. Progress is the
/// queue falling below the fewest bytes seen since the wait began: a peer
/// that keeps reading while more keeps being queued for it (a subscriber,
/// a caller with tasks in flight) is not "unread", and one that reads
/// nothing is, however the queue grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadProgress {
    since: Instant,
    fewest: usize,
}

impl ReadProgress {
    /// A wait that begins at `now` with `queued` bytes queued.
    pub fn new(now: Instant, queued: usize) -> Self {
        Self {
            since: now,
            fewest: queued,
        }
    }

    /// Notes `queued` bytes queued at `now` (fewer than the fewest seen:
    /// progress, the wait begins afresh) and returns how long the peer has
    /// read none of it.
    pub fn note(&mut self, now: Instant, queued: usize) -> Duration {
        if queued < self.fewest {
            *self = Self::new(now, queued);
        }
        now.saturating_duration_since(self.since)
    }

    /// When the peer last made progress (the wait began).
    pub fn since(&self) -> Instant {
        self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_queue_below_its_fewest_is_progress() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = ReadProgress::new(t0, 100);
        assert_eq!(p.note(t0 + ms(10), 150), ms(10)); // more queued: no progress
        assert_eq!(p.note(t0 + ms(20), 100), ms(20)); // back to the fewest: none
        assert_eq!(p.note(t0 + ms(30), 99), ms(0)); // below it: afresh
        assert_eq!(p.since(), t0 + ms(30));
        assert_eq!(p.note(t0 + ms(50), 120), ms(20));
    }
}
