//! Normal-task fan-out over several worker processes: the driver spreads
//! `collatz_steps(n)` over four workers, gathers the results with `wait`
//! and `get`, checks each against a local computation, and reports which
//! worker process ran how many. Exits 0 only when all results check.
//!
//! `cargo run --release --example fan_out`

mod support;

use std::collections::HashMap;
use std::time::Duration;

use shmwire::spec::FunctionDescriptor;
use shmwire::worker::{CoreWorker, CoreWorkerOptions, FunctionRegistry, TaskOptions};
use support::{as_i64, i64_arg, Cluster, Result, TIMEOUT};

fn collatz_steps(mut n: i64) -> i64 {
    let mut steps = 0;
    while n > 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_function(
        FunctionDescriptor::rust("fan_out", "", "collatz_steps"),
        |args| {
            let n = args.i64(0)?;
            if n < 1 {
                return Err(shmwire::worker::AppError::new(format!(
                    "{n} is not positive"
                )));
            }
            let steps = collatz_steps(n);
            // Answer with the steps and who computed them.
            let mut out = steps.to_le_bytes().to_vec();
            out.extend_from_slice(&i64::from(std::process::id()).to_le_bytes());
            Ok(out)
        },
    )
    .expect("fresh registry");
    r
}

const WORKERS: usize = 4;
const TASKS: i64 = 4_000;

fn main() -> Result<()> {
    support::maybe_serve(registry);
    support::no_arguments("usage: fan_out (no arguments): spreads collatz_steps(n) over four worker processes and checks every result");
    let mut cluster = Cluster::new("fan-out")?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| cluster.spawn_worker(1))
        .collect::<Result<_>>()?;
    let mut driver = CoreWorker::new(&cluster.session, CoreWorkerOptions::new(cluster.node))?;
    let f = FunctionDescriptor::rust("fan_out", "", "collatz_steps");
    let refs = (1..=TASKS)
        .map(|n| {
            let w = workers[n as usize % WORKERS];
            driver.submit_task(
                w,
                f.clone(),
                vec![i64_arg(n)],
                TaskOptions { max_retries: 3 },
            )
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let (ready, _) = driver.wait(&refs, 1, Duration::from_secs(10))?;
    if ready.is_empty() {
        return Err("no task finished within 10 s".into());
    }
    let results = driver.get(&refs, TIMEOUT)?;
    let mut per_pid: HashMap<i64, usize> = HashMap::new();
    for (i, v) in results.iter().enumerate() {
        let n = i as i64 + 1;
        if v.len() != 16 || as_i64(&v[..8])? != collatz_steps(n) {
            return Err(format!("collatz_steps({n}) came back wrong").into());
        }
        *per_pid.entry(as_i64(&v[8..])?).or_default() += 1;
    }
    if per_pid.len() != WORKERS {
        return Err(format!("expected {WORKERS} worker processes, saw {}", per_pid.len()).into());
    }
    println!("{TASKS} tasks over {WORKERS} worker processes, every result checked: {per_pid:?}");
    drop(driver);
    cluster.wait_all()?;
    println!("ok");
    Ok(())
}
