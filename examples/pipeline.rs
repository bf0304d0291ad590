//! A pipeline through three worker processes: each hosts one `Stage` actor
//! (`y = x * mul + add`); the driver sends every item through stage 1, hands
//! each result *by reference* to stage 2 and then to stage 3 (the owner
//! inlines the value when it submits the next stage, as Ray's dependency
//! resolver does for small objects), and checks every output. Exits 0 only
//! when all results check.
//!
//! `cargo run --release --example pipeline`

mod support;

use shmwire::worker::{ActorClass, CoreWorker, CoreWorkerOptions, FunctionRegistry, ObjectRef};
use support::{as_i64, i64_arg, Cluster, Result, TIMEOUT};

fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_actor_class(
        ActorClass::new("pipeline", "Stage", |args| Ok((args.i64(0)?, args.i64(1)?))).method(
            "apply",
            |(mul, add): &mut (i64, i64), args| {
                Ok((args.i64(0)? * *mul + *add).to_le_bytes().to_vec())
            },
        ),
    )
    .expect("fresh registry");
    r
}

const STAGES: [(i64, i64); 3] = [(2, 1), (3, 0), (1, -5)];
const ITEMS: i64 = 1_000;

fn main() -> Result<()> {
    support::maybe_serve(registry);
    support::no_arguments("usage: pipeline (no arguments): sends items through three Stage actors in three worker processes and checks every output");
    let mut cluster = Cluster::new("pipeline")?;
    let workers: Vec<_> = (0..STAGES.len())
        .map(|_| cluster.spawn_worker(1))
        .collect::<Result<_>>()?;
    let mut driver = CoreWorker::new(&cluster.session, CoreWorkerOptions::new(cluster.node))?;
    let stages = workers
        .iter()
        .zip(STAGES)
        .map(|(w, (mul, add))| {
            driver.create_actor(*w, "pipeline", "Stage", vec![i64_arg(mul), i64_arg(add)], 0)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut refs: Vec<ObjectRef> = (0..ITEMS)
        .map(|x| driver.submit_actor_task(&stages[0], "apply", vec![i64_arg(x)]))
        .collect::<std::result::Result<_, _>>()?;
    for stage in &stages[1..] {
        refs = refs
            .iter()
            .map(|r| driver.submit_actor_task(stage, "apply", vec![r.as_arg()]))
            .collect::<std::result::Result<_, _>>()?;
    }
    let out = driver.get(&refs, TIMEOUT)?;
    for (x, v) in out.iter().enumerate() {
        let want = STAGES
            .iter()
            .fold(x as i64, |acc, (mul, add)| acc * mul + add);
        if as_i64(v)? != want {
            return Err(format!("item {x}: got {}, expected {want}", as_i64(v)?).into());
        }
    }
    println!(
        "{ITEMS} items through {} worker processes: every result checked",
        stages.len()
    );
    drop(driver);
    cluster.wait_all()?;
    println!("ok");
    Ok(())
}
