//! profiling scratch
mod support;
use shmwire::worker::{ActorClass, CoreWorker, CoreWorkerOptions, FunctionRegistry};
use support::{as_i64, i64_arg, Cluster, Result, TIMEOUT};
fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_actor_class(ActorClass::new("m", "C", |_| Ok(0i64)).method(
        "add",
        |t: &mut i64, a| {
            *t += a.i64(0)?;
            Ok(t.to_le_bytes().to_vec())
        },
    ))
    .unwrap();
    r
}
fn main() -> Result<()> {
    support::maybe_serve(registry);
    let batches: i64 = std::env::args().nth(1).unwrap().parse()?;
    let depth = 32;
    let mut cluster = Cluster::new("zzpipe")?;
    let worker = cluster.spawn_worker(1)?;
    let mut driver = CoreWorker::new(&cluster.session, CoreWorkerOptions::new(cluster.node))?;
    let a = driver.create_actor(worker, "m", "C", vec![], 0)?;
    let mut total = 0;
    let mut refs = Vec::new();
    let t = std::time::Instant::now();
    for _ in 0..batches {
        refs.clear();
        for _ in 0..depth {
            refs.push(driver.submit_actor_task(&a, "add", vec![i64_arg(1)])?);
        }
        let v = driver.get(&refs, TIMEOUT)?;
        driver.free(&refs);
        for x in v {
            total += 1;
            assert_eq!(as_i64(&x)?, total);
        }
    }
    let e = t.elapsed();
    println!("{} calls/s", (batches * depth) as f64 / e.as_secs_f64());
    drop(driver);
    cluster.wait_all()?;
    Ok(())
}
