//! Pulls of by-reference arguments from other nodes' object endpoints, off
//! the execution thread (Ray's object manager pulls a task's arguments
//! before the task is dispatched, not on the thread that runs it).
//!
//! The executor asks for the pulls a request needs ([`ArgPulls::request`])
//! and sets the request aside (`WaitingForArgs`) until each one finished;
//! the pulls run on their own threads, at most [`MAX_PULL_THREADS`] at once,
//! [`MAX_PULLS_PER_ENDPOINT`] from one endpoint and [`MAX_PULLS_PER_CALLER`]
//! for one caller, over one store connection of their own. A finished pull wakes the worker's loop, which
//! takes its object ([`ArgPulls::take`]) when the task runs. Before (the
//! attack on `0060161`, left open then), the pull ran on the execution
//! thread: a caller naming an object endpoint that accepts and never answers
//! stalled every other caller for `arg_fetch_timeout` per task.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foldhash::HashMap;

use crate::ids::{ObjectId, WorkerId};
use crate::store::{ObjectBuffer, StoreClient, StoreError};
use crate::transport::MuxWaker;

/// Most pull threads a worker runs at once (each waits on one remote
/// endpoint for at most what is left of a task's `arg_fetch_timeout`).
pub(super) const MAX_PULL_THREADS: usize = 16;

/// Most pulls from one object endpoint at once: an endpoint that does not
/// answer holds at most this many threads, never all of them.
pub(super) const MAX_PULLS_PER_ENDPOINT: usize = 4;

/// Most pulls for one caller's requests at once: a caller naming objects on
/// many endpoints that do not answer holds at most this many threads, and
/// the other callers' pulls go on beside them.
pub(super) const MAX_PULLS_PER_CALLER: usize = 4;

/// What became of one object's pull.
pub(super) enum Pulled {
    /// Still queued or running.
    Pending,
    /// The local copy, and whether the pull made it (`true`: delete it after
    /// the task, as nobody else put it there).
    Done { object: ObjectBuffer, here: bool },
    /// Why it failed (the store error's text).
    Failed(String),
}

enum State {
    Queued,
    Running,
    /// Done or failed at `at`; `deadline` was the pull's.
    Finished {
        outcome: Pulled,
        at: Instant,
        deadline: Instant,
    },
}

struct Job {
    id: ObjectId,
    from: SocketAddr,
    /// The caller whose request asked first.
    caller: WorkerId,
    deadline: Instant,
    /// The task's `arg_fetch_timeout` (what a timeout error names).
    timeout: Duration,
}

#[derive(Default)]
struct Book {
    entries: HashMap<ObjectId, State>,
    queue: VecDeque<Job>,
    threads: usize,
    per_endpoint: HashMap<SocketAddr, usize>,
    per_caller: HashMap<WorkerId, usize>,
}

/// One more for `k` in `counts`.
fn count_in<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, k: K) {
    *counts.entry(k).or_insert(0) += 1;
}

/// One less for `k` in `counts` (gone at zero).
fn count_out<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, k: &K) {
    if let Some(n) = counts.get_mut(k) {
        *n -= 1;
        if *n == 0 {
            counts.remove(k);
        }
    }
}

impl Book {
    /// Takes the first queued job whose endpoint and caller have room
    /// (counted in).
    fn next_job(&mut self) -> Option<Job> {
        let i = self.queue.iter().position(|j| {
            self.per_endpoint.get(&j.from).copied().unwrap_or(0) < MAX_PULLS_PER_ENDPOINT
                && self.per_caller.get(&j.caller).copied().unwrap_or(0) < MAX_PULLS_PER_CALLER
        })?;
        let job = self.queue.remove(i)?;
        count_in(&mut self.per_endpoint, job.from);
        count_in(&mut self.per_caller, job.caller);
        if let Some(s) = self.entries.get_mut(&job.id) {
            *s = State::Running;
        }
        Some(job)
    }

    fn finish(&mut self, job: &Job, outcome: Pulled) {
        count_out(&mut self.per_endpoint, &job.from);
        count_out(&mut self.per_caller, &job.caller);
        self.entries.insert(
            job.id,
            State::Finished {
                outcome,
                at: Instant::now(),
                deadline: job.deadline,
            },
        );
    }
}

struct Shared {
    book: Mutex<Book>,
    /// The pulls' own store connection (made from the worker's at the first
    /// pull, made again when it broke).
    client: Mutex<Option<StoreClient>>,
    /// Set by a pull thread when a pull finished (cleared by
    /// [`ArgPulls::take_finished`]).
    finished: AtomicBool,
    /// The worker loop's waker, once it made one.
    waker: Arc<OnceLock<MuxWaker>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The executor's pulls (see the module docs). Lives in the worker's store
/// bridge; only the execution thread calls it.
pub(super) struct ArgPulls {
    shared: Arc<Shared>,
    /// The worker's store client, from which the pulls' connection is made.
    base: StoreClient,
    /// Whether the book holds entries (kept by the execution thread, the
    /// only one that adds or removes them), so that idle turns skip the
    /// sweep without a lock.
    any: bool,
}

impl ArgPulls {
    /// No pulls yet; `waker` is the worker loop's (set when it has one).
    pub(super) fn new(base: StoreClient, waker: Arc<OnceLock<MuxWaker>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                book: Mutex::new(Book::default()),
                client: Mutex::new(None),
                finished: AtomicBool::new(false),
                waker,
            }),
            base,
            any: false,
        }
    }

    /// Whether any pull is pending or finished and not taken.
    pub(super) fn any(&self) -> bool {
        self.any
    }

    /// Whether a pull finished since the last call (then the requests
    /// waiting for arguments look again at once).
    pub(super) fn take_finished(&self) -> bool {
        // Relaxed would do for the flag itself; Acquire pairs with the
        // Release store in `run` so that the entry is visible (it is read
        // under the book's lock anyway).
        self.any && self.shared.finished.swap(false, Ordering::Acquire)
    }

    /// Whether `id`'s pull finished: `false` while it is queued or
    /// running. Asks for it (from object endpoint `from`, for `caller`, due
    /// by `deadline`, the end of the task's `timeout`) if there is no entry
    /// for it, or if the one there failed with an earlier deadline than
    /// this (another request's pull, which this one outlives: it may yet
    /// succeed); then `false`.
    pub(super) fn request(
        &mut self,
        id: ObjectId,
        from: SocketAddr,
        caller: WorkerId,
        deadline: Instant,
        timeout: Duration,
    ) -> bool {
        let mut book = lock(&self.shared.book);
        match book.entries.get(&id) {
            Some(State::Finished {
                outcome: Pulled::Failed(_),
                deadline: d,
                ..
            }) if *d < deadline => {}
            Some(State::Finished { .. }) => return true,
            Some(_) => return false,
            None => {}
        }
        book.entries.insert(id, State::Queued);
        book.queue.push_back(Job {
            id,
            from,
            caller,
            deadline,
            timeout,
        });
        self.any = true;
        if book.threads < MAX_PULL_THREADS {
            let shared = Arc::clone(&self.shared);
            let base = self.base.clone();
            let started = std::thread::Builder::new()
                .name("shmwire-arg-pull".into())
                .spawn(move || run(&shared, &base));
            match started {
                Ok(_) => book.threads += 1,
                Err(e) if book.threads == 0 => {
                    // Nothing would run it: it fails now.
                    book.queue.pop_back();
                    book.entries.insert(
                        id,
                        State::Finished {
                            outcome: Pulled::Failed(format!("no thread to pull it on: {e}")),
                            at: Instant::now(),
                            deadline,
                        },
                    );
                    return true;
                }
                // A running thread takes it after its current pull.
                Err(_) => {}
            }
        }
        false
    }

    /// Takes `id`'s pull: its object or failure, or `Pending` if it has not
    /// finished (its entry stays) or was never asked for.
    pub(super) fn take(&mut self, id: ObjectId) -> Pulled {
        let mut book = lock(&self.shared.book);
        let out = match book.entries.remove(&id) {
            Some(State::Finished { outcome, .. }) => outcome,
            Some(s) => {
                book.entries.insert(id, s);
                Pulled::Pending
            }
            None => Pulled::Pending,
        };
        self.any = !book.entries.is_empty();
        out
    }

    /// Drops the finished pulls nobody took for `keep` (their request's
    /// connection ended, or its wait ran out first); returns the ids of the
    /// local copies those pulls made, for the caller to delete (after their
    /// buffers are released here).
    pub(super) fn sweep(&mut self, keep: Duration) -> Vec<ObjectId> {
        let now = Instant::now();
        let mut made = Vec::new();
        let mut dropped = Vec::new();
        {
            let mut book = lock(&self.shared.book);
            book.entries.retain(|&id, s| match s {
                State::Finished { at, .. } if now.saturating_duration_since(*at) >= keep => {
                    if let State::Finished {
                        outcome: Pulled::Done { here: true, .. },
                        ..
                    } = s
                    {
                        made.push(id);
                    }
                    dropped.push(std::mem::replace(s, State::Queued));
                    false
                }
                _ => true,
            });
            self.any = !book.entries.is_empty();
        }
        // The buffers go outside the lock (a release may write to the
        // store connection).
        drop(dropped);
        made
    }
}

/// A pull thread: runs queued jobs until none is left that it may take.
fn run(shared: &Shared, base: &StoreClient) {
    loop {
        let job = {
            let mut book = lock(&shared.book);
            match book.next_job() {
                Some(j) => j,
                None => {
                    book.threads -= 1;
                    return;
                }
            }
        };
        let outcome = pull(shared, base, &job);
        lock(&shared.book).finish(&job, outcome);
        // Release: pairs with the Acquire swap in `take_finished`. SeqCst
        // fence: pairs with the one after the loop sets its waker, so that
        // either this sees the waker or the loop's next look sees the flag.
        // (A wake-up lost all the same would cost latency only: each
        // waiting request looks again on its own schedule, at most
        // `ARG_RECHECK_MAX` apart.)
        shared.finished.store(true, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(w) = shared.waker.get() {
            w.wake();
        }
    }
}

/// One pull, within the job's deadline.
fn pull(shared: &Shared, base: &StoreClient, job: &Job) -> Pulled {
    let left = || job.deadline.saturating_duration_since(Instant::now());
    if left().is_zero() {
        return Pulled::Failed("its task's arg_fetch_timeout passed before the pull began".into());
    }
    let client = {
        let mut c = lock(&shared.client);
        match c.as_ref() {
            Some(client) if !client.is_lost() => client.clone(),
            _ => match base.connect_again_within(left()) {
                Ok(client) => {
                    *c = Some(client.clone());
                    client
                }
                Err(e) => {
                    return Pulled::Failed(format!("connecting to the local store failed: {e}"))
                }
            },
        }
    };
    let had = client.contains_within(job.id, left()).map_err(|e| match e {
        StoreError::TimedOut(_) => StoreError::PullTimedOut {
            id: job.id,
            from: job.from,
            timeout: job.timeout,
        },
        e => e,
    });
    match had.and_then(|had| Ok((client.pull(job.id, job.from, left())?, !had))) {
        Ok((object, here)) => Pulled::Done { object, here },
        Err(e) => Pulled::Failed(e.to_string()),
    }
}
