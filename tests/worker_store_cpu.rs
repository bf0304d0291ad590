//! The owner's background work costs no CPU while it waits (its own test
//! binary: it measures the process's CPU time, which tests running beside
//! it in one binary would add to).

mod worker_support;

use std::time::{Duration, Instant};

use shmwire::worker::{CoreWorker, ObjectRef};
use worker_support::{maybe_run_worker, owner_options, pattern, TestSession};

const MIB: usize = 1 << 20;

/// Input (the attack on `5cc8520`): an owner puts many small objects in
/// the store (its inline limit lowered), the store is killed for good, and
/// every reference is dropped. Each batch of new deletes tried the whole
/// list of failed ones again with it: N drops cost N passes over a list
/// growing to N (60,000 took 21 s of a core, 75,000 went on after the
/// owner was dropped). Now the failed ones are tried again once a second,
/// and the thread is idle in between.
#[test]
fn deletes_waiting_for_a_dead_store_cost_no_cpu() {
    const TEST: &str = "deletes_waiting_for_a_dead_store_cost_no_cpu";
    const N: usize = 8_000;
    maybe_run_worker();
    let s = TestSession::new("odead");
    let mut store = s.spawn_store(TEST, 64 * MIB as u64);
    let mut options = owner_options(&s, Duration::from_millis(500));
    options.max_direct_call_object_size = 64;
    let mut driver = CoreWorker::new(&s.session, options).unwrap();
    let refs: Vec<ObjectRef> = (0..N)
        .map(|i| driver.put(&pattern(i as u64, 100)).unwrap())
        .collect();
    let mut killed = store.0.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let cpu_before = process_cpu();
    let start = Instant::now();
    // Dropped in batches, as an application drops references over time.
    let mut refs = refs;
    while !refs.is_empty() {
        refs.truncate(refs.len().saturating_sub(N / 40));
        driver.release_dropped_refs();
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(start.elapsed()));
    let cpu = process_cpu() - cpu_before;
    let start = Instant::now();
    drop(driver);
    let dropped = start.elapsed();
    assert!(
        cpu < Duration::from_millis(800),
        "{N} deletes waiting for a dead store took {cpu:?} of CPU in 2.5 s"
    );
    assert!(
        dropped < Duration::from_secs(3),
        "dropping the owner took {dropped:?}"
    );
}

/// This process's CPU time so far (every thread, user and system).
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
