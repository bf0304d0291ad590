//! The owner's store work that none of its calls waits for: deleting the
//! objects it owns whose last reference went (Ray's owner deleting an
//! out-of-scope object) and unpinning the arguments of tasks that finished.
//! A thread of its own does both, so that a store that stops answering
//! (stopped, or its connection out of step) holds up no call of the owner's
//! that does not use the store: before, the first call after a dropped
//! reference waited out the store's reply timeout (30 s) in its delete, and
//! each later one a reconnect's handshake (5 s), also for calls to actors
//! with no store at all (the attack on `de26da3`).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::ids::ObjectId;
use crate::store::StoreClient;

/// What is done with an object in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// `StoreClient::delete`: the owner lets the object go (freed once no
    /// other process holds it). Any connection to the store will do: one
    /// that broke is replaced ([`super::core::heal_store`]).
    Delete,
    /// `StoreClient::unpin`: a task that passed it as an argument finished.
    /// Pins belong to the connection that made them: through a broken one
    /// there is nothing left to undo.
    Unpin,
}

/// One object's release, through the owner's store client of the moment.
struct Job {
    store: StoreClient,
    what: Release,
    id: ObjectId,
}

/// At most this many releases go to the store in one request.
const BATCH: usize = 1024;

/// The thread that releases store objects for one owner (started with the
/// first release). Dropping it lets the thread finish what was queued and
/// end; [`StoreReleases::finish`] also waits for that, bounded.
#[derive(Debug, Default)]
pub(super) struct StoreReleases {
    queue: Option<mpsc::Sender<Job>>,
    /// Says the thread has done everything queued and ended.
    ended: Option<mpsc::Receiver<()>>,
    /// The thread could not be started: releases are done on the
    /// caller's thread, as before.
    inline: bool,
}

impl StoreReleases {
    /// Queues `what` for object `id` through `store`.
    pub(super) fn send(&mut self, store: &StoreClient, what: Release, id: ObjectId) {
        if self.queue.is_none() && !self.inline {
            self.start();
        }
        let job = Job {
            store: store.clone(),
            what,
            id,
        };
        let job = match &self.queue {
            Some(q) => match q.send(job) {
                Ok(()) => return,
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        // No thread: here, now, once.
        let mut healed = None;
        release(
            std::slice::from_ref(&job),
            &mut healed,
            &mut Instant::now(),
            &mut Vec::new(),
        );
    }

    fn start(&mut self) {
        let (queue, jobs) = mpsc::channel();
        let (done, ended) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("shmwire-releases".into())
            .spawn(move || {
                run(&jobs);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => {
                self.queue = Some(queue);
                self.ended = Some(ended);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no thread for store releases: done on the caller's thread");
                self.inline = true;
            }
        }
    }

    /// Lets the thread end once it has done what was queued, waiting at
    /// most `bound` for that (the owner going away; a store that does not
    /// answer leaves the thread to finish, or end with the process).
    pub(super) fn finish(&mut self, bound: Duration) {
        self.queue = None;
        if let Some(ended) = self.ended.take() {
            if ended.recv_timeout(bound).is_err() {
                tracing::debug!(
                    ?bound,
                    "store releases not done when the owner went away: left to their thread"
                );
            }
        }
    }
}

/// At most this many deletes wait to be tried again (beyond, the oldest
/// are given up on: unheld, they stay until the store evicts them).
const MAX_RETRIED: usize = 1 << 20;

/// The thread: takes what is queued, in batches, until the queue closes;
/// deletes that failed for want of a store that answers are tried again
/// every [`RETRY_EVERY`] (a store stopped longer than its reply timeout
/// left them undone for good: the attack on `2af27d5`), and once more when
/// the queue closes. New releases do not bring the waiting ones forward:
/// each is tried once as it comes, and the waiting ones only when their
/// time is due (before, every batch of new releases tried the whole
/// waiting list again with it, so N references dropped with the store
/// gone cost N passes over a list growing to N — 60,000 took 21 s of a
/// core: the attack on `5cc8520`).
fn run(jobs: &mpsc::Receiver<Job>) {
    let mut healed: Option<StoreClient> = None;
    let mut heal_at = Instant::now();
    let mut batch = Vec::new();
    let mut retry: Vec<Job> = Vec::new();
    let mut failed: Vec<Job> = Vec::new();
    let mut retry_at = Instant::now();
    loop {
        let first = if retry.is_empty() {
            match jobs.recv() {
                Ok(j) => Some(j),
                Err(_) => return,
            }
        } else {
            match jobs.recv_timeout(retry_at.saturating_duration_since(Instant::now())) {
                Ok(j) => Some(j),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    release(&retry, &mut healed, &mut heal_at, &mut Vec::new());
                    return;
                }
            }
        };
        // What failed before goes first, in its order, when it is due.
        let due = !retry.is_empty() && Instant::now() >= retry_at;
        if due {
            batch.append(&mut retry);
        }
        batch.extend(first);
        // At most `BATCH` new ones besides what is due.
        let due_and_first = batch.len();
        while batch.len() < due_and_first + BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let waiting = !retry.is_empty();
        release(&batch, &mut healed, &mut heal_at, &mut failed);
        batch.clear();
        if !failed.is_empty() {
            if !waiting {
                // The first to wait: tried again a while from now.
                retry_at = crate::deadline_after(Instant::now(), RETRY_EVERY);
            }
            retry.append(&mut failed);
        }
        if due && !retry.is_empty() {
            retry_at = crate::deadline_after(Instant::now(), RETRY_EVERY);
        }
        if retry.len() > MAX_RETRIED {
            let over = retry.len() - MAX_RETRIED;
            tracing::warn!(
                objects = over,
                "store deletes given up on: too many waiting to be tried again"
            );
            retry.drain(..over);
        }
    }
}

/// How often deletes that failed are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Does `jobs`, in order: each run of the same kind through the same
/// client in one request. A delete that failed for want of a store that
/// answers goes to `retry`; other failures are logged: the owner has let
/// the objects go, and nobody waits for the answer (a pin not undone goes
/// with its connection).
fn release(
    jobs: &[Job],
    healed: &mut Option<StoreClient>,
    heal_at: &mut Instant,
    retry: &mut Vec<Job>,
) {
    let mut ids = Vec::new();
    let mut rest = jobs;
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|j| j.what == first.what && j.store.same_connection(&first.store))
            .count();
        ids.clear();
        ids.extend(rest[..n].iter().map(|j| j.id));
        let result = match first.what {
            Release::Unpin if first.store.is_lost() => Ok(()),
            Release::Unpin => first.store.unpin(&ids),
            Release::Delete => {
                // The owner's client, else (it broke) the one made in its
                // place here, once it broke too made again.
                if healed.is_none() || !first.store.is_lost() {
                    *healed = Some(first.store.clone());
                }
                super::core::heal_store(healed, heal_at);
                match healed.as_ref() {
                    // Only in the store the objects were in: one started
                    // again under the name holds other processes' objects,
                    // which may have the same ids (the attack on
                    // `eab0d40`: retried deletes removed 20 objects another
                    // client had made in a new node's store).
                    Some(s) if s.same_service(&first.store) => s.delete(&ids),
                    Some(_) => {
                        tracing::debug!(
                            objects = ids.len(),
                            "store deletes dropped: their store is gone (another runs now)"
                        );
                        Ok(())
                    }
                    None => Ok(()),
                }
            }
        };
        match result {
            Ok(()) => {}
            // Not about an object: the store did not answer, or the
            // connection broke. Deletes are tried again (through a new
            // connection once this one is lost).
            Err(e) if first.what == Release::Delete && e.object_id().is_none() => {
                tracing::debug!(error = %e, objects = ids.len(), "store deletes failed: tried again");
                retry.extend(rest[..n].iter().map(|j| Job {
                    store: j.store.clone(),
                    what: j.what,
                    id: j.id,
                }));
            }
            Err(e) => {
                tracing::warn!(error = %e, what = ?first.what, objects = ids.len(), "releasing store objects failed");
            }
        }
        rest = &rest[n..];
    }
}
