//! Pulls of by-reference arguments from other nodes' object endpoints, off
//! the execution thread (Ray's object manager pulls a task's arguments
//! before the task is dispatched, not on the thread that runs it), and the
//! worker's pins on the copies they made.
//!
//! The executor asks for the pulls a request needs ([`ArgPulls::request`])
//! and sets the request aside (`WaitingForArgs`) until each one finished.
//! The pulls run on threads of their own, at most [`MAX_PULL_THREADS`] at
//! once and [`MAX_PULLS_PER_CALLER`] for one caller (one for
//! [`PREEMPTED_CALLER_SLOWDOWN`] after a pull of its gave its room in the
//! store up), one at a time per
//! object and endpoint, over one store connection of their own; a finished
//! pull wakes the worker's loop. Every caller with a pull queued has one
//! running: pulls are queued per caller and callers take turns; a caller
//! that runs none goes first, and gets a thread beyond
//! [`MAX_PULL_THREADS`] if all are taken (up to
//! [`MAX_PULL_THREADS_FOR_FAIRNESS`]); a pull several callers wait for is
//! in each one's queue, so callers that hold their threads with pulls that
//! never end hold up no other caller's pulls. A pull whose callers all left
//! ([`ArgPulls::forget_caller`]) is dropped if queued and cancelled if
//! running: it ends within 50 ms (`StoreClient::pull_into_cancellable`),
//! its thread free for others (callers that send tasks and leave, again
//! and again, held the worker at its 256 threads otherwise). A pulled copy is pinned (the
//! pull's buffer is kept)
//! while tasks use it — each takes a reference of its own
//! ([`ArgPulls::acquire`], [`ArgPulls::release`]), so tasks running at once
//! (a threaded actor's) share one copy — and for [`PULLED_LINGER`] after
//! the last one; then [`ArgPulls::sweep`] drops it, and the worker deletes
//! it if its pull made it.
//!
//! The rest of the executor's store calls that serve no running task go
//! off the execution thread too: the deletes
//! ([`ArgPulls::delete_in_background`]: the copies a sweep drops and the
//! returns whose holds end) and the questions whether a local argument the
//! store's shared index does not show is sealed ([`ArgPulls::sealed`]) are
//! run by one pull thread at a time, over the pulls' connection, so that a store
//! that does not answer (stopped) holds up that thread, not every caller of
//! the worker for the store's reply timeout (30 s by default; the attack on
//! `8bae1dd`). A copy being deleted stays in the book (`Deleting`) until it
//! is gone, and a request for it waits, so that a new pull never makes a
//! copy the old delete then removes.
//!
//! Pulls are kept by object *and* endpoint, and so are their copies: the
//! copy of object `X` pulled from endpoint `E` is kept in the local store
//! under an id derived from both ([`local_copy_id`]), never under `X`.
//! Requests (of any worker of the node) naming `X` on `E` share it; one
//! naming `X` on another endpoint never reads it, nor a copy of `X` put in
//! the store under `X` itself — one object id, two claimed sources, and the
//! bytes a task reads are those of the source it named.
//!
//! Before (the attack on `0060161`, left open then), the pull ran on the
//! execution thread: a caller naming an object endpoint that accepts and
//! never answers stalled every other caller for `arg_fetch_timeout` per
//! task. Then (the attack on `609aa4f`) pulls were kept by object id alone
//! and a copy was deleted right after its first task: a threaded actor's
//! concurrent calls on one remote argument failed ("deleted but still
//! held"), and a caller naming another caller's object on an endpoint of
//! its own had its bytes read as the other's argument — by this worker,
//! and (the attack on `0c20706`) by any other worker of the node.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashSet};
use sha2::{Digest, Sha256};

use crate::ids::{ObjectId, WorkerId};
use crate::store::{ObjectBuffer, StoreClient, StoreError};
use crate::transport::MuxWaker;

/// Most pull threads a worker runs at once (each waits on one remote
/// endpoint for at most what is left of a task's `arg_fetch_timeout`) —
/// unless a caller with a pull queued has none running: then one more
/// starts for it, up to [`MAX_PULL_THREADS_FOR_FAIRNESS`].
pub(super) const MAX_PULL_THREADS: usize = 16;

/// Most pull threads a worker runs at once when callers with pulls queued
/// and none running start threads beyond [`MAX_PULL_THREADS`]: callers
/// that hold their [`MAX_PULLS_PER_CALLER`] threads each with pulls from
/// endpoints that never answer (four of them held all 16 before, the
/// attack on `0c20706`) leave every other caller a pull of its own, as
/// long as fewer than 240 callers starve at once.
pub(super) const MAX_PULL_THREADS_FOR_FAIRNESS: usize = 256;

/// Most pulls for one caller's requests at once: a caller naming objects
/// that never come (on endpoints that do not answer, or answer "not found")
/// holds at most this many threads, and the other callers' pulls go on
/// beside them.
pub(super) const MAX_PULLS_PER_CALLER: usize = 4;

/// How long a caller whose pull gave its room in the local store up
/// (`StoreError::PullPreempted`: its remote sent far slower than the
/// pull's deadline needs while another pull waited) runs at most one pull
/// at a time, counted from its latest such pull: a caller naming many
/// trickling endpoints then has one pull, not [`MAX_PULLS_PER_CALLER`],
/// in the store's queue ahead of other callers' (each such pull holds the
/// room for about a tenth of a second before it gives it up).
pub(super) const PREEMPTED_CALLER_SLOWDOWN: Duration = Duration::from_secs(5);

/// How long a pulled copy stays pinned after the last task that used it
/// (then a sweep, at most a second later, drops it).
pub(super) const PULLED_LINGER: Duration = Duration::from_millis(500);

/// A pull: the object and the endpoint it is pulled from.
type Key = (ObjectId, SocketAddr);

/// The id under which the copy of object `id` pulled from object endpoint
/// `from` is kept in the local store: the first [`ObjectId::SIZE`] bytes of
/// `SHA-256("shmwire pulled argument" ‖ id ‖ from)`, the same in every
/// worker of the node.
pub(super) fn local_copy_id(id: ObjectId, from: SocketAddr) -> ObjectId {
    let mut h = Sha256::new();
    h.update(b"shmwire pulled argument");
    h.update(id.as_bytes());
    h.update(from.to_string().as_bytes());
    let digest = h.finalize();
    ObjectId::from_bytes(&digest[..ObjectId::SIZE]).unwrap_or(id)
}

/// Object endpoint `endpoint` (an owner address's
/// `object_manager_address`) parsed, in one form per endpoint: an
/// IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:7000`) is taken as the
/// IPv4 one it maps (`127.0.0.1:7000`), so that both spellings share one
/// copy and one pull, and one naming this node's endpoint either way is
/// read from the local store. `None` if it does not parse, or names no
/// one endpoint: an unspecified address (`0.0.0.0`, `::`: a listener's
/// "every interface", which a connection reaches as whatever local address
/// — a second name of this node's own endpoint, or of another's) or port 0
/// (the attack on `a2f5f81`: `0.0.0.0:<own port>` pulled a local object
/// from this node into a second copy).
pub(super) fn parse_object_endpoint(endpoint: &str) -> Option<SocketAddr> {
    let a = canonical_endpoint(endpoint.parse().ok()?);
    (!a.ip().is_unspecified() && a.port() != 0).then_some(a)
}

/// Checks a worker's own object endpoint (`object_manager_address`):
/// other nodes pull from it by the name it is given, so it must name one
/// endpoint ([`parse_object_endpoint`]: no unspecified address, no port 0).
pub(super) fn check_own_endpoint(a: Option<SocketAddr>) -> Result<(), crate::worker::WorkerError> {
    match a {
        Some(a) if parse_object_endpoint(&a.to_string()).is_none() => {
            Err(crate::worker::WorkerError::InvalidOption {
                option: "object_manager_address",
                reason: format!(
                    "{a} names no one endpoint (an unspecified address or port 0): give the \
                     address other nodes reach the node's object endpoint at"
                ),
            })
        }
        _ => Ok(()),
    }
}

/// [`parse_object_endpoint`]'s form of `a`.
pub(super) fn canonical_endpoint(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        SocketAddr::V4(_) => a,
    }
}

/// What the execution thread finds for a pull ([`ArgPulls::acquire`]).
pub(super) enum Acquired {
    /// Pulled and pinned; one more task uses it now (until
    /// [`ArgPulls::release`]): read it from the local store.
    Done,
    /// Why it failed (the store error's text).
    Failed(String),
    /// Still queued or running.
    Pending,
    /// Never asked for, or dropped since.
    Missing,
}

enum State {
    /// Waiting for a thread, for `callers` (each has the key in its
    /// `Book::waiting`), due by the latest of their `deadline`s; `timeout`
    /// is the first one's `arg_fetch_timeout`.
    Queued {
        callers: Vec<WorkerId>,
        deadline: Instant,
        timeout: Duration,
    },
    /// On a thread, for `callers` (each has the key in its
    /// `Book::running_of`); `cancel` is set when the last of them left
    /// ([`ArgPulls::forget_caller`]) or the worker went, and the pull then
    /// ends within 50 ms (`StoreClient::pull_into_cancellable`).
    Running {
        callers: Vec<WorkerId>,
        cancel: Arc<AtomicBool>,
    },
    /// The local copy, pinned by `_pin` (its reference, never read);
    /// `here`: the pull made it (deleted when dropped); `users`: tasks
    /// holding it; `used`: whether any task acquired it yet; idle since
    /// `idle_since` (its pull's end, or its last release).
    Done {
        _pin: ObjectBuffer,
        here: bool,
        users: usize,
        used: bool,
        idle_since: Instant,
    },
    /// Dropped by a sweep and queued for deletion (its pull made it, no
    /// task reads it): a request waits until it is gone, then pulls it
    /// again.
    Deleting,
    /// Failed at `at`; `deadline` was the pull's.
    Failed {
        error: String,
        at: Instant,
        deadline: Instant,
    },
}

struct Job {
    id: ObjectId,
    from: SocketAddr,
    /// The caller its run is counted against (the one through whose queue
    /// `next_job` took it).
    counted: WorkerId,
    deadline: Instant,
    /// The task's `arg_fetch_timeout` (what a timeout error names).
    timeout: Duration,
    /// The entry's cancel flag (see [`State::Running`]).
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct Book {
    entries: HashMap<Key, State>,
    /// Per caller, the keys of the queued pulls it waits for, oldest
    /// first; a key another caller's turn took (no longer `Queued`) is
    /// skipped when met. Only callers with keys are in it.
    waiting: HashMap<WorkerId, VecDeque<Key>>,
    /// The callers in `waiting`, in the order their turns come.
    order: VecDeque<WorkerId>,
    /// Per caller, the keys of the running pulls it waits for (only
    /// callers with keys are in it).
    running_of: HashMap<WorkerId, HashSet<Key>>,
    threads: usize,
    per_caller: HashMap<WorkerId, usize>,
    /// Callers whose pull gave its room up, each until when it runs at
    /// most one pull ([`PREEMPTED_CALLER_SLOWDOWN`]).
    slowed: HashMap<WorkerId, Instant>,
    /// Copies unpinned by a pull that found the store full (so that the
    /// store could evict them), whose deletion is left to the execution
    /// thread's next sweep (the ones this worker's pulls made).
    unpinned: Vec<Key>,
    /// Deletes waiting for a thread, oldest first.
    deletes: VecDeque<Delete>,
    /// The service's answers on whether local objects are sealed
    /// ([`ArgPulls::sealed`]), and the questions waiting for a thread.
    probes: HashMap<ObjectId, Probe>,
    probe_queue: VecDeque<ObjectId>,
    /// Whether a thread is deleting or asking now: one at a time, so that
    /// a store that does not answer holds one thread, not every one.
    store_busy: bool,
    /// The worker is gone ([`ArgPulls::close`]): a pull still running
    /// deletes the copy it made itself, and no queued one starts.
    closed: bool,
}

/// A delete for a pull thread: `ids`, and the `keys` whose (`Deleting`)
/// entries go once it is done.
struct Delete {
    ids: Vec<ObjectId>,
    keys: Vec<Key>,
}

/// Whether a local object is sealed, as the store's service said when a
/// pull thread asked ([`ArgPulls::sealed`]).
enum Probe {
    Asking,
    /// The answer (`None`: the question failed — no connection, no reply
    /// in time), and when it came.
    Answered(Option<bool>, Instant),
}

/// What a pull thread takes next.
enum Work {
    Pull(Job),
    Delete(Delete),
    Probe(ObjectId),
}

impl Book {
    /// Unpins every copy no task reads now (the store may then evict them
    /// to make room): returns their states, to be dropped outside the lock
    /// (empty if there was none).
    fn unpin_idle(&mut self) -> Vec<State> {
        let idle: Vec<Key> = self
            .entries
            .iter()
            .filter_map(|(k, s)| matches!(s, State::Done { users: 0, .. }).then_some(*k))
            .collect();
        let mut dropped = Vec::new();
        for k in idle {
            if let Some(s) = self.entries.remove(&k) {
                if let State::Done { here: true, .. } = s {
                    self.unpinned.push(k);
                }
                dropped.push(s);
            }
        }
        dropped
    }

    /// Whether anything is pulled, pinned, kept, deleted or asked about.
    fn busy(&self) -> bool {
        !self.entries.is_empty() || !self.probes.is_empty()
    }

    /// Takes the next work: if no thread deletes or asks now, the oldest
    /// delete, else the oldest question; else the next pull
    /// ([`Book::next_job`]).
    fn next_work(&mut self) -> Option<Work> {
        if let Some(w) = self.next_store_work() {
            return Some(w);
        }
        if self.closed {
            return None;
        }
        self.next_job().map(Work::Pull)
    }

    /// The oldest delete, else the oldest question, if no thread deletes
    /// or asks now.
    fn next_store_work(&mut self) -> Option<Work> {
        if self.store_busy {
            return None;
        }
        let w = match self.deletes.pop_front() {
            Some(d) => Work::Delete(d),
            None => Work::Probe(self.probe_queue.pop_front()?),
        };
        self.store_busy = true;
        Some(w)
    }

    /// A delete is done: the entries of its keys go (a later request pulls
    /// them again).
    fn deleted(&mut self, d: &Delete) {
        self.store_busy = false;
        self.forget_deleting(&d.keys);
    }

    /// Drops the `Deleting` entries of `keys`.
    fn forget_deleting(&mut self, keys: &[Key]) {
        for k in keys {
            if matches!(self.entries.get(k), Some(State::Deleting)) {
                self.entries.remove(k);
            }
        }
    }

    /// Queues `key` (whose `Queued` entry names `caller`) for `caller`.
    fn enqueue(&mut self, caller: WorkerId, key: Key) {
        let q = self.waiting.entry(caller).or_default();
        if q.is_empty() {
            self.order.push_back(caller);
        }
        q.push_back(key);
    }

    /// The most pulls `caller` may run at once at `now`:
    /// [`MAX_PULLS_PER_CALLER`], or one while it is slowed
    /// ([`PREEMPTED_CALLER_SLOWDOWN`]).
    fn limit(&self, caller: WorkerId, now: Instant) -> usize {
        match self.slowed.get(&caller) {
            Some(until) if *until > now => 1,
            _ => MAX_PULLS_PER_CALLER,
        }
    }

    /// Takes the next job, counted against the caller whose turn took it:
    /// callers take turns (round robin), a caller that runs no pull before
    /// any that runs some, none beyond [`MAX_PULLS_PER_CALLER`]; each
    /// caller's oldest queued key first. A pull several callers wait for is
    /// in each one's queue, so it runs in the turn of whichever comes
    /// first with room. Costs a look per caller with pulls queued (the
    /// attack on `a2f5f81`: a scan of one queue of every pull, per
    /// request and argument, held the worker's loop up for seconds beside
    /// a task naming 50,000 objects). A key has at most one entry:
    /// [`ArgPulls::request`] queues one only while it has none or a failed
    /// one.
    fn next_job(&mut self) -> Option<Job> {
        let now = Instant::now();
        for idle_only in [true, false] {
            let mut i = 0;
            while i < self.order.len() {
                let c = self.order[i];
                let r = self.per_caller.get(&c).copied().unwrap_or(0);
                if r >= self.limit(c, now) || (idle_only && r > 0) {
                    i += 1;
                    continue;
                }
                let (entries, q) = (&self.entries, self.waiting.entry(c).or_default());
                let mut taken = None;
                while let Some(k) = q.pop_front() {
                    if matches!(entries.get(&k), Some(State::Queued { .. })) {
                        taken = Some(k);
                        break;
                    }
                }
                // Its turn is over: to the back, or out if it has no more.
                self.order.remove(i);
                if q.is_empty() {
                    self.waiting.remove(&c);
                } else {
                    self.order.push_back(c);
                }
                if let Some(job) = taken.and_then(|k| self.start_job(c, k)) {
                    return Some(job);
                }
            }
        }
        None
    }

    /// The next job of `caller` alone (its oldest queued key), if it has
    /// room: what a thread started for a caller that runs no pull takes, so
    /// that it serves that caller and not the first of many others in
    /// turn (the attack on `5b9f7d6`: beside dozens of new callers a round,
    /// an honest caller's pull waited up to 1.3 s for its turn).
    fn next_job_of(&mut self, caller: WorkerId) -> Option<Job> {
        if self.per_caller.get(&caller).copied().unwrap_or(0) >= self.limit(caller, Instant::now())
        {
            return None;
        }
        let (entries, q) = (&self.entries, self.waiting.get_mut(&caller)?);
        let mut taken = None;
        while let Some(k) = q.pop_front() {
            if matches!(entries.get(&k), Some(State::Queued { .. })) {
                taken = Some(k);
                break;
            }
        }
        if q.is_empty() {
            self.waiting.remove(&caller);
            self.order.retain(|c| *c != caller);
        }
        taken.and_then(|k| self.start_job(caller, k))
    }

    /// Marks queued `key` running, counted against `caller`.
    fn start_job(&mut self, caller: WorkerId, key: Key) -> Option<Job> {
        let Some(State::Queued { .. }) = self.entries.get(&key) else {
            return None;
        };
        let Some(State::Queued {
            callers,
            deadline,
            timeout,
        }) = self.entries.remove(&key)
        else {
            return None;
        };
        for c in &callers {
            self.running_of.entry(*c).or_default().insert(key);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        self.entries.insert(
            key,
            State::Running {
                callers,
                cancel: Arc::clone(&cancel),
            },
        );
        *self.per_caller.entry(caller).or_insert(0) += 1;
        Some(Job {
            id: key.0,
            from: key.1,
            counted: caller,
            deadline,
            timeout,
            cancel,
        })
    }

    /// Takes running `key` out of its callers' `running_of`; returns those
    /// callers (none if it was not running).
    fn stop_running(&mut self, key: Key) -> Vec<WorkerId> {
        let Some(State::Running { callers, .. }) = self.entries.get_mut(&key) else {
            return Vec::new();
        };
        let callers = std::mem::take(callers);
        for c in &callers {
            if let Some(keys) = self.running_of.get_mut(c) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.running_of.remove(c);
                }
            }
        }
        callers
    }

    /// Queues `key` again for `callers` (a pull that could not start, or
    /// was cancelled after another caller came for it), first in each
    /// one's line.
    fn requeue(&mut self, key: Key, callers: Vec<WorkerId>, deadline: Instant, timeout: Duration) {
        for c in &callers {
            let q = self.waiting.entry(*c).or_default();
            if q.is_empty() {
                self.order.push_front(*c);
            }
            q.push_front(key);
        }
        self.entries.insert(
            key,
            State::Queued {
                callers,
                deadline,
                timeout,
            },
        );
    }

    /// Puts back work a thread that could not start took: first in line.
    fn put_back(&mut self, work: Work) {
        match work {
            Work::Pull(job) => {
                self.uncount(job.counted);
                let key = (job.id, job.from);
                let mut callers = self.stop_running(key);
                if callers.is_empty() {
                    callers.push(job.counted);
                }
                self.requeue(key, callers, job.deadline, job.timeout);
            }
            Work::Delete(d) => {
                self.store_busy = false;
                self.deletes.push_front(d);
            }
            Work::Probe(id) => {
                self.store_busy = false;
                self.probe_queue.push_front(id);
            }
        }
    }

    /// One pull fewer runs for `caller`.
    fn uncount(&mut self, caller: WorkerId) {
        if let Some(n) = self.per_caller.get_mut(&caller) {
            *n -= 1;
            if *n == 0 {
                self.per_caller.remove(&caller);
            }
        }
    }

    fn finish(&mut self, job: &Job, outcome: Result<(ObjectBuffer, bool), Failure>) {
        self.uncount(job.counted);
        let now = Instant::now();
        if matches!(&outcome, Err(f) if f.preempted) {
            self.slowed.retain(|_, until| *until > now);
            self.slowed
                .insert(job.counted, now + PREEMPTED_CALLER_SLOWDOWN);
        }
        let outcome = outcome.map_err(|f| f.text);
        let key = (job.id, job.from);
        let callers = self.stop_running(key);
        // Relaxed: set under this lock (`forget_caller`, `close`), never
        // cleared.
        if outcome.is_err() && job.cancel.load(Ordering::Relaxed) {
            // Cancelled: not a failure to keep (whatever error the pull
            // ended with once it was). A caller that came for it after the
            // cancel has it queued again; with none, it goes (a later
            // request asks again).
            if callers.is_empty() || self.closed {
                self.entries.remove(&key);
            } else {
                self.requeue(key, callers, job.deadline, job.timeout);
            }
            return;
        }
        let state = match outcome {
            Ok((_pin, here)) => State::Done {
                _pin,
                here,
                users: 0,
                used: false,
                idle_since: now,
            },
            Err(error) => State::Failed {
                error,
                at: now,
                deadline: job.deadline,
            },
        };
        self.entries.insert((job.id, job.from), state);
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
    /// only one that adds them; a pull thread may remove idle copies, and
    /// the next sweep corrects this), so that idle turns skip the sweep
    /// without a lock.
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

    /// Whether any pull is pending, or any copy pinned or failure kept.
    pub(super) fn any(&self) -> bool {
        self.any
    }

    /// Whether a pull finished since the last call (then the requests
    /// waiting for arguments look again at once).
    pub(super) fn take_finished(&self) -> bool {
        // Acquire pairs with the Release store in `run` (the entry itself
        // is read under the book's lock).
        self.any && self.shared.finished.swap(false, Ordering::Acquire)
    }

    /// Whether the pull of `id` from object endpoint `from` finished:
    /// `false` while it is queued or running. Asks for it (for `caller`,
    /// due by `deadline`, the end of the task's `timeout`) if there is no
    /// entry for it, or if the one there failed with an earlier deadline
    /// than this (another request's pull, which this one outlives: it may
    /// yet succeed); then `false`. A request for a queued pull joins it:
    /// the pull runs for either caller, until the later deadline.
    pub(super) fn request(
        &mut self,
        id: ObjectId,
        from: SocketAddr,
        caller: WorkerId,
        deadline: Instant,
        timeout: Duration,
    ) -> bool {
        let key = (id, from);
        let mut book = lock(&self.shared.book);
        match book.entries.get_mut(&key) {
            Some(State::Failed { deadline: d, .. }) if *d < deadline => {}
            Some(State::Done { .. } | State::Failed { .. }) => return true,
            Some(State::Queued {
                callers,
                deadline: d,
                ..
            }) => {
                // A request for a queued pull joins it (once per caller).
                if !callers.contains(&caller) {
                    callers.push(caller);
                    *d = (*d).max(deadline);
                    book.enqueue(caller, key);
                }
                // This caller may run no pull yet (a thread ended, or none
                // could start for it before): one starts for it.
                if !book.per_caller.contains_key(&caller) {
                    let _ = self.start_thread(&mut book, Some(caller));
                }
                return false;
            }
            Some(State::Running { callers, .. }) => {
                // A request for a running pull joins it (once per caller).
                // One cancelled already (its flag is never taken back: its
                // thread may have seen it) ends, and is queued again for
                // the callers it has then (`Book::finish`).
                if !callers.contains(&caller) {
                    callers.push(caller);
                    book.running_of.entry(caller).or_default().insert(key);
                }
                return false;
            }
            Some(State::Deleting) => return false,
            None => {}
        }
        book.entries.insert(
            key,
            State::Queued {
                callers: vec![caller],
                deadline,
                timeout,
            },
        );
        book.enqueue(caller, key);
        self.any = true;
        if let Err(e) = self.start_thread(&mut book, Some(caller)) {
            // Nothing would run it: it fails now (its key in the caller's
            // queue is skipped when met).
            book.entries.insert(
                key,
                State::Failed {
                    error: format!("no thread to pull it on: {e}"),
                    at: Instant::now(),
                    deadline,
                },
            );
            return true;
        }
        false
    }

    /// `caller` left (its last connection ended): it is taken out of the
    /// turns, its queued pulls no other caller waits for are dropped
    /// (their entries go: a later request asks again), and its running
    /// pulls no other caller waits for are cancelled: each ends within
    /// 50 ms, its entry gone (or queued again if a caller came for it
    /// meanwhile), not failed. Before (the attack on `5b9f7d6`), callers that
    /// sent tasks naming silent endpoints and left kept the worker at its
    /// 256 pull threads for as long as more came, and an honest pull
    /// waited up to 1.2 s for a thread.
    pub(super) fn forget_caller(&mut self, caller: WorkerId) {
        let mut book = lock(&self.shared.book);
        book.slowed.remove(&caller);
        for k in book.running_of.remove(&caller).unwrap_or_default() {
            if let Some(State::Running { callers, cancel }) = book.entries.get_mut(&k) {
                callers.retain(|c| *c != caller);
                if callers.is_empty() {
                    // Relaxed: `finish` reads it under the lock.
                    cancel.store(true, Ordering::Relaxed);
                }
            }
        }
        let Some(keys) = book.waiting.remove(&caller) else {
            return;
        };
        book.order.retain(|c| *c != caller);
        for k in keys {
            if let Some(State::Queued { callers, .. }) = book.entries.get_mut(&k) {
                callers.retain(|c| *c != caller);
                if callers.is_empty() {
                    book.entries.remove(&k);
                }
            }
        }
        self.any = book.busy();
    }

    /// Why the pull of `id` from `from` failed, if it did (kept as
    /// failed).
    pub(super) fn failure(&self, id: ObjectId, from: SocketAddr) -> Option<String> {
        match lock(&self.shared.book).entries.get(&(id, from)) {
            Some(State::Failed { error, .. }) => Some(error.clone()),
            _ => None,
        }
    }

    /// Whether the pull of `id` from `from` failed (kept as failed: a
    /// request that names it fails, whatever else it waits for).
    pub(super) fn failed(&self, id: ObjectId, from: SocketAddr) -> bool {
        matches!(
            lock(&self.shared.book).entries.get(&(id, from)),
            Some(State::Failed { .. })
        )
    }

    /// Starts one more pull thread if fewer than [`MAX_PULL_THREADS`] run,
    /// or fewer than [`MAX_PULL_THREADS_FOR_FAIRNESS`] and `caller` (who
    /// just queued or joined a pull) runs no pull, or a delete or question
    /// waits while no thread deletes or asks (pulls that never end hold up
    /// no store work). The new thread's first work is taken here, so that
    /// it is counted at once (the attack on `a2f5f81`: taken by the thread
    /// later, a starving caller's four requests each started a thread
    /// beyond the 16 while it still ran none — 64 callers took all 256);
    /// with no work to take, none starts. Fails only if none runs and none
    /// could start (with some running, a running one takes the new work
    /// after its current one).
    fn start_thread(&self, book: &mut Book, caller: Option<WorkerId>) -> std::io::Result<()> {
        let starving = caller.filter(|c| !book.per_caller.contains_key(c));
        let mine = |book: &mut Book| {
            let c = starving?;
            if book.closed {
                return None;
            }
            book.next_job_of(c).map(Work::Pull)
        };
        let first = if book.threads < MAX_PULL_THREADS {
            mine(book).or_else(|| book.next_work())
        } else if book.threads < MAX_PULL_THREADS_FOR_FAIRNESS {
            // Beyond the 16, only for the starving caller or store work.
            mine(book).or_else(|| book.next_store_work())
        } else {
            None
        };
        let Some(first) = first else {
            return Ok(());
        };
        let shared = Arc::clone(&self.shared);
        let base = self.base.clone();
        // The work goes to the thread through a slot it can be taken back
        // from if the thread does not start.
        let slot = Arc::new(Mutex::new(Some(first)));
        let handed = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name("shmwire-arg-pull".into())
            .spawn(move || {
                let first = lock(&handed).take();
                run(&shared, &base, first)
            });
        match started {
            Ok(_) => {
                book.threads += 1;
                Ok(())
            }
            Err(e) => {
                if let Some(w) = lock(&slot).take() {
                    book.put_back(w);
                }
                if book.threads == 0 {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Deletes `ids` from the local store on a pull thread (see the module
    /// docs), not on the calling one; a failure is logged (`warn`). If no
    /// thread can start, on this one.
    pub(super) fn delete_in_background(&mut self, ids: Vec<ObjectId>) {
        self.queue_delete(Delete {
            ids,
            keys: Vec::new(),
        });
    }

    fn queue_delete(&mut self, d: Delete) {
        if d.ids.is_empty() && d.keys.is_empty() {
            return;
        }
        let inline = {
            let mut book = lock(&self.shared.book);
            book.deletes.push_back(d);
            self.start_thread(&mut book, None).is_err()
        };
        if inline {
            self.finish_deletes(&self.base.clone(), Duration::ZERO);
        }
    }

    /// Whether local object `id` is sealed, as far as the store's service
    /// said: asked on a pull thread, never on the calling one (the attack
    /// on `8bae1dd`: a stopped store held the worker's loop up for its
    /// reply timeout when a request named a local object the shared index
    /// does not show). `None` while the question is out (asked now if it
    /// was not): the caller waits, and a "sealed" answer wakes the worker's
    /// loop. An answer is handed out once; the next call asks again. A
    /// question that failed (the store stopped: no reply, no new
    /// connection) is asked again, and reads `None` meanwhile: the request
    /// waits to its deadline ([`ArgPulls::asking`]). No thread to ask on
    /// reads `Some(true)`: it says nothing, and the task's fetch decides.
    pub(super) fn sealed(&mut self, id: ObjectId) -> Option<bool> {
        let mut book = lock(&self.shared.book);
        match book.probes.get(&id) {
            Some(Probe::Answered(Some(sealed), _)) => {
                let sealed = *sealed;
                book.probes.remove(&id);
                self.any = book.busy();
                Some(sealed)
            }
            Some(Probe::Asking) => None,
            Some(Probe::Answered(None, _)) | None => {
                book.probes.insert(id, Probe::Asking);
                book.probe_queue.push_back(id);
                self.any = true;
                if self.start_thread(&mut book, None).is_err() {
                    book.probes.remove(&id);
                    book.probe_queue.retain(|&q| q != id);
                    return Some(true);
                }
                None
            }
        }
    }

    /// Whether the last question [`ArgPulls::sealed`] put about `id` is
    /// unanswered or failed: the store's service has not answered it
    /// (stopped, or overloaded) — a task out of time fails then, without
    /// asking again on the execution thread.
    pub(super) fn asking(&self, id: ObjectId) -> bool {
        self.any
            && matches!(
                lock(&self.shared.book).probes.get(&id),
                Some(Probe::Asking | Probe::Answered(None, _))
            )
    }

    /// The worker is gone: no queued pull starts any more, and a pull still
    /// running deletes the copy it makes (if it made it) instead of
    /// keeping it for tasks.
    pub(super) fn close(&mut self) {
        let mut book = lock(&self.shared.book);
        book.closed = true;
        book.waiting.clear();
        book.order.clear();
        for s in book.entries.values() {
            if let State::Running { cancel, .. } = s {
                // Relaxed: see `forget_caller`.
                cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Runs the deletes still queued on this thread with `client` (the
    /// worker stops serving: the process may exit before a pull thread
    /// got to them), after waiting at most `bound` for the one a thread
    /// runs now.
    pub(super) fn finish_deletes(&mut self, client: &StoreClient, bound: Duration) {
        let end = crate::deadline_after(Instant::now(), bound);
        loop {
            let d = {
                let mut book = lock(&self.shared.book);
                if book.store_busy && Instant::now() < end {
                    None
                } else {
                    match book.deletes.pop_front() {
                        Some(d) => Some(d),
                        None => {
                            self.any = book.busy();
                            return;
                        }
                    }
                }
            };
            match d {
                None => std::thread::sleep(Duration::from_millis(1)),
                Some(d) => {
                    if let Err(e) = client.delete(&d.ids) {
                        tracing::warn!(error = %e, "deleting pulled arguments or returns failed");
                    }
                    lock(&self.shared.book).forget_deleting(&d.keys);
                }
            }
        }
    }

    /// What became of the pull of `id` from `from`; if it is done, one more
    /// task uses its copy from now until [`ArgPulls::release`].
    pub(super) fn acquire(&mut self, id: ObjectId, from: SocketAddr) -> Acquired {
        let mut book = lock(&self.shared.book);
        match book.entries.get_mut(&(id, from)) {
            Some(State::Done { users, used, .. }) => {
                *users += 1;
                *used = true;
                Acquired::Done
            }
            Some(State::Failed { error, .. }) => Acquired::Failed(error.clone()),
            Some(State::Queued { .. } | State::Running { .. } | State::Deleting) => {
                Acquired::Pending
            }
            None => Acquired::Missing,
        }
    }

    /// Drops the entry of the copy of `id` pulled from `from` (it was
    /// deleted under it: by another worker of this node whose pull made
    /// it), so that the next request pulls it again; tasks reading it keep
    /// their own references. Returns whether there was such an entry.
    pub(super) fn forget(&mut self, id: ObjectId, from: SocketAddr) -> bool {
        let gone = {
            let mut book = lock(&self.shared.book);
            let gone = match book.entries.get(&(id, from)) {
                Some(State::Done { .. }) => book.entries.remove(&(id, from)),
                _ => None,
            };
            self.any = book.busy();
            gone
        };
        // The pin goes outside the lock.
        gone.is_some()
    }

    /// The tasks that acquired `keys` are done with them.
    pub(super) fn release(&mut self, keys: &[(ObjectId, SocketAddr)]) {
        if keys.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut book = lock(&self.shared.book);
        for k in keys {
            if let Some(State::Done {
                users, idle_since, ..
            }) = book.entries.get_mut(k)
            {
                *users = users.saturating_sub(1);
                *idle_since = now;
            }
        }
    }

    /// Drops the copies no task used for [`PULLED_LINGER`], those no task
    /// took for `keep` since their pull ended, and the failures older than
    /// `keep` (long enough for every request that could still want them:
    /// a request waiting for several pulls takes none before the last one
    /// ended — the attack on `0c20706`: a task with five arguments from a
    /// slow node saw its first copies dropped before the fifth came, pulled
    /// them again, and so on to its timeout) — with `all`, every copy and
    /// failure, in use or not (the worker stops serving: a copy in use is
    /// deleted when its last reader lets go). The dropped copies their
    /// pulls made are deleted in the background (their pins released here
    /// first), and stay `Deleting` until then.
    pub(super) fn sweep(&mut self, keep: Duration, all: bool) {
        let now = Instant::now();
        let mut delete = Delete {
            ids: Vec::new(),
            keys: Vec::new(),
        };
        let mut dropped = Vec::new();
        {
            let mut book = lock(&self.shared.book);
            let old =
                |t: &Instant, after: Duration| all || now.saturating_duration_since(*t) >= after;
            let gone: Vec<Key> = book
                .entries
                .iter()
                .filter_map(|(k, s)| match s {
                    State::Done {
                        users,
                        used,
                        idle_since,
                        ..
                    } if *users == 0
                        && old(idle_since, if *used { PULLED_LINGER } else { keep }) =>
                    {
                        Some(*k)
                    }
                    State::Done { .. } if all => Some(*k),
                    State::Failed { at, .. } if old(at, keep) => Some(*k),
                    _ => None,
                })
                .collect();
            // Copies a full store made a pull unpin: deleted unless pulled
            // again since.
            let unpinned: Vec<Key> = std::mem::take(&mut book.unpinned)
                .into_iter()
                .filter(|k| !book.entries.contains_key(k))
                .collect();
            for k in gone {
                let made = matches!(book.entries.get(&k), Some(State::Done { here: true, .. }));
                let s = if made {
                    delete.keys.push(k);
                    book.entries.insert(k, State::Deleting)
                } else {
                    book.entries.remove(&k)
                };
                dropped.extend(s);
            }
            for k in unpinned {
                book.entries.insert(k, State::Deleting);
                delete.keys.push(k);
            }
            // Answers no request took (it ended meanwhile).
            book.probes
                .retain(|_, p| !matches!(p, Probe::Answered(_, at) if old(at, keep)));
            self.any = book.busy();
        }
        // The pins go outside the lock (a release may write to the store
        // connection), and before the delete, which then frees each copy
        // nobody else reads at once.
        drop(dropped);
        delete.ids = delete
            .keys
            .iter()
            .map(|k| local_copy_id(k.0, k.1))
            .collect();
        self.queue_delete(delete);
    }
}

/// A pull thread: runs queued jobs until none is left that it may take.
fn run(shared: &Shared, base: &StoreClient, mut first: Option<Work>) {
    loop {
        let work = match first.take() {
            Some(w) => w,
            None => {
                let mut book = lock(&shared.book);
                match book.next_work() {
                    Some(w) => w,
                    None => {
                        book.threads -= 1;
                        return;
                    }
                }
            }
        };
        match work {
            Work::Pull(job) => {
                let outcome = pull(shared, base, &job);
                let late = {
                    let mut book = lock(&shared.book);
                    if book.closed {
                        Some(outcome)
                    } else {
                        book.finish(&job, outcome);
                        None
                    }
                };
                // The worker went while this pull ran (the attack on
                // `0c20706`: an in-process worker dropped mid-pull left the
                // copy the pull then made): nobody will read or delete it.
                if let Some(Ok((pin, true))) = late {
                    drop(pin);
                    delete(shared, base, &[local_copy_id(job.id, job.from)]);
                }
            }
            Work::Delete(d) => {
                delete(shared, base, &d.ids);
                // The requests waiting for these copies to go look again.
                lock(&shared.book).deleted(&d);
            }
            Work::Probe(id) => {
                let sealed = connection(shared, base, None)
                    .and_then(|c| c.contains(id))
                    .ok();
                {
                    let mut book = lock(&shared.book);
                    book.store_busy = false;
                    book.probes
                        .insert(id, Probe::Answered(sealed, Instant::now()));
                }
                // Not sealed yet, or no answer: nothing to wake the loop
                // for (its waiting requests look again on their own
                // schedule).
                if sealed != Some(true) {
                    continue;
                }
            }
        }
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

/// Why a pull failed: the store error's text, and whether the pull gave
/// its room up (`StoreError::PullPreempted`).
struct Failure {
    text: String,
    preempted: bool,
}

impl From<String> for Failure {
    fn from(text: String) -> Self {
        Self {
            text,
            preempted: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(text: &str) -> Self {
        text.to_owned().into()
    }
}

/// One pull, within the job's deadline: the pinned local copy and whether
/// this pull made it.
fn pull(shared: &Shared, base: &StoreClient, job: &Job) -> Result<(ObjectBuffer, bool), Failure> {
    let (id, from) = (job.id, job.from);
    let left = || job.deadline.saturating_duration_since(Instant::now());
    // A pull with almost no time left does not begin: its calls on the
    // pulls' shared store connection, bounded by that time, would time out
    // and break the connection under the other callers' pulls (the attack
    // on `5b9f7d6`: an honest pull failed "the store connection is
    // unusable since an earlier call failed" beside departed callers'
    // pulls starting at their deadlines).
    if left() < MIN_PULL_TIME {
        return Err("its task's arg_fetch_timeout passed before the pull began".into());
    }
    let mut client = connection(shared, base, Some(left()))
        .map_err(|e| format!("connecting to the local store failed: {e}"))?;
    let mut reconnected = false;
    let local = local_copy_id(id, from);
    // Errors name the task's timeout, not what was left of it.
    let named = |e: StoreError| match e {
        StoreError::TimedOut(_) | StoreError::PullTimedOut { .. } => StoreError::PullTimedOut {
            id,
            from,
            timeout: job.timeout,
        },
        e => e,
    };
    loop {
        // The local look waits at least `MIN_PULL_TIME` for its reply (a
        // live store answers in microseconds; one that does not within it
        // is stopped or overloaded).
        let had = client
            .contains_within(local, left().max(MIN_PULL_TIME))
            .map_err(named);
        let pulled = |had: bool| {
            Ok((
                client
                    .pull_into_cancellable(id, from, local, left(), &job.cancel)
                    .map_err(named)?,
                !had,
            ))
        };
        match had.and_then(pulled) {
            // The shared connection broke under this pull (another pull's
            // call timed out on it, or the store restarted): once, on a new
            // connection.
            Err(ref e)
                if !reconnected
                    && !matches!(e, StoreError::PullTimedOut { .. })
                    && client.is_lost()
                    && left() >= MIN_PULL_TIME =>
            {
                reconnected = true;
                client = connection(shared, base, Some(left()))
                    .map_err(|e| format!("connecting to the local store failed: {e}"))?;
            }
            // A copy deleted here (by another worker of this node that
            // made it) while readers still hold it: it can be made again
            // once they let go (the attack on `0c20706`).
            Err(StoreError::ObjectInUse { .. }) if left() > IN_USE_RETRY => {
                std::thread::sleep(IN_USE_RETRY)
            }
            // The store is full, and copies this worker pins only for
            // later tasks may be what fills it (the attack on `25d4f40`:
            // sequential tasks on 20 MiB objects failed `StoreFull` in a
            // 64 MiB store, three copies lingering pinned): they are
            // unpinned, so the store can evict them, and the pull tries
            // again; with none to unpin, it waits for readers to let go.
            Err(StoreError::StoreFull { .. }) if left() > STORE_FULL_RETRY => {
                let dropped = lock(&shared.book).unpin_idle();
                if dropped.is_empty() {
                    std::thread::sleep(STORE_FULL_RETRY);
                }
                drop(dropped);
            }
            other => {
                return other.map_err(|e| Failure {
                    preempted: matches!(e, StoreError::PullPreempted { .. }),
                    text: e.to_string(),
                })
            }
        }
    }
}

/// The pulls' store connection, made again (from `base`, the handshake
/// bounded by `bound` if given, else by the reply timeout) if it broke.
fn connection(
    shared: &Shared,
    base: &StoreClient,
    bound: Option<Duration>,
) -> Result<StoreClient, StoreError> {
    let mut c = lock(&shared.client);
    match c.as_ref() {
        Some(client) if !client.is_lost() => Ok(client.clone()),
        _ => {
            let client = match bound {
                Some(b) => base.connect_again_within(b)?,
                None => base.connect_again()?,
            };
            *c = Some(client.clone());
            Ok(client)
        }
    }
}

/// A background delete: tries [`DELETE_ATTEMPTS`] times, [`DELETE_RETRY`]
/// apart, while the connection breaks (the store stopped, or restarted);
/// a failure is logged.
fn delete(shared: &Shared, base: &StoreClient, ids: &[ObjectId]) {
    for attempt in 1..=DELETE_ATTEMPTS {
        let error = match connection(shared, base, None) {
            Ok(client) => match client.delete(ids) {
                Ok(()) => return,
                Err(e) if client.is_lost() => e,
                Err(e) => {
                    tracing::warn!(error = %e, "deleting pulled arguments or returns failed");
                    return;
                }
            },
            Err(e) => e,
        };
        if attempt == DELETE_ATTEMPTS {
            tracing::warn!(error = %error, objects = ids.len(),
                "deleting pulled arguments or returns failed; left to the store's eviction");
            return;
        }
        tracing::debug!(error = %error, "deleting pulled arguments or returns: trying again");
        std::thread::sleep(DELETE_RETRY);
    }
}

/// How many times a background delete is tried while the store's
/// connection breaks.
const DELETE_ATTEMPTS: u32 = 3;

/// The wait between two tries of a background delete.
const DELETE_RETRY: Duration = Duration::from_secs(1);

/// The least time left before its deadline with which a pull begins (or
/// tries again on a new connection), and the least its look at the local
/// store waits for the reply.
const MIN_PULL_TIME: Duration = Duration::from_millis(50);

/// How long a pull waits before it tries again to make a copy whose id is
/// still held after a delete.
const IN_USE_RETRY: Duration = Duration::from_millis(10);

/// How long a pull that found the store full, with no idle copy to unpin,
/// waits before it tries again.
const STORE_FULL_RETRY: Duration = Duration::from_millis(50);
