//! Two-process actor ping-pong: the driver creates a `Pong` actor in a
//! worker process and calls `ping(x)` one call at a time; the actor answers
//! `x + 1` and counts the calls. Prints calls per second and the median and
//! p99 round trip; exits 0 only when every reply checked.
//!
//! `cargo run --release --example actor_ping_pong [calls] [depth]`
//!
//! With `depth` > 1 the calls are pipelined: `depth` submitted, then all of
//! them awaited with one `get` (as `bench actor-call`'s `pipelined-32`);
//! the round trip printed is then a batch's.

mod support;

use std::time::Instant;

use shmwire::worker::{ActorClass, CoreWorker, CoreWorkerOptions, FunctionRegistry};
use support::{as_i64, i64_arg, Cluster, Result, TIMEOUT};

fn registry() -> FunctionRegistry {
    let mut r = FunctionRegistry::new();
    r.register_actor_class(
        ActorClass::new("ping_pong", "Pong", |_| Ok(0i64))
            .method("ping", |calls: &mut i64, args| {
                *calls += 1;
                Ok((args.i64(0)? + 1).to_le_bytes().to_vec())
            })
            .method("calls", |calls: &mut i64, _| {
                Ok(calls.to_le_bytes().to_vec())
            }),
    )
    .expect("fresh registry");
    r
}

/// How to run it (printed for `--help`, and with a bad argument).
const USAGE: &str = "usage: actor_ping_pong [calls (default 20000, at most 100000000)] \
                     [depth (default 1: one call at a time; calls a multiple of it)]";

/// The most calls a run takes: each batch's round trip is kept (8 bytes).
const MAX_CALLS: i64 = 100_000_000;

/// Positional argument `n` as a number, `default` when absent; a bad one
/// ends the process with the usage (exit status 2).
fn number_arg(n: usize, name: &str, default: i64) -> i64 {
    match std::env::args().nth(n).map(|s| (s.parse(), s)) {
        None => default,
        Some((Ok(v), _)) => v,
        Some((Err(e), s)) => {
            eprintln!("actor_ping_pong: {name} {s:?}: {e}\n{USAGE}");
            std::process::exit(2);
        }
    }
}

fn main() -> Result<()> {
    support::maybe_serve(registry);
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let calls = number_arg(1, "calls", 20_000);
    let depth = number_arg(2, "depth", 1);
    if !(1..=MAX_CALLS).contains(&calls) || depth < 1 || calls % depth != 0 {
        eprintln!(
            "actor_ping_pong: calls ({calls}) must be a multiple of depth ({depth}), \
             from 1 to {MAX_CALLS}\n{USAGE}"
        );
        std::process::exit(2);
    }
    let mut cluster = Cluster::new("ping-pong")?;
    let worker = cluster.spawn_worker(1)?;
    let mut driver = CoreWorker::new(&cluster.session, CoreWorkerOptions::new(cluster.node))?;
    let pong = driver.create_actor(worker, "ping_pong", "Pong", vec![], 0)?;
    let mut rtts = Vec::with_capacity((calls / depth) as usize);
    let mut refs = Vec::with_capacity(depth as usize);
    let start = Instant::now();
    for batch in 0..calls / depth {
        let t = Instant::now();
        refs.clear();
        for x in batch * depth..(batch + 1) * depth {
            refs.push(driver.submit_actor_task(&pong, "ping", vec![i64_arg(x)])?);
        }
        let values = driver.get(&refs, TIMEOUT)?;
        rtts.push(t.elapsed());
        for (x, v) in (batch * depth..).zip(&values) {
            if as_i64(v)? != x + 1 {
                return Err(format!("ping({x}) answered {}", as_i64(v)?).into());
            }
        }
        driver.free(&refs);
    }
    let elapsed = start.elapsed();
    let r = driver.submit_actor_task(&pong, "calls", vec![])?;
    let n = as_i64(&driver.get(&[r], TIMEOUT)?[0])?;
    if n != calls {
        return Err(format!("the actor counted {n} calls, expected {calls}").into());
    }
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() as f64 - 1.0) * p) as usize];
    let kind = if depth == 1 {
        "sync".to_owned()
    } else {
        format!("pipelined ({depth} in flight)")
    };
    println!(
        "{calls} {kind} actor calls in {elapsed:?}: {:.0} calls/s, round trip p50 {:?}, p99 {:?}",
        calls as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    drop(driver);
    cluster.wait_all()?;
    println!("ok: every reply checked");
    Ok(())
}
