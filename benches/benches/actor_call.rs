//! Criterion mirror of `shmwire bench actor-call`: whole actor calls
//! through the worker runtime between two processes — sync on shared
//! memory (spin, spin-then-park) and TCP, pipelined 32 and 1000 calls in
//! flight on shared memory — beside the bare shm transport round trip
//! (256 B) and the raw atomic limit measured right before each case
//! (`cargo bench -p shmwire-bench --bench actor_call`).
//!
//! The actor lives in this bench binary re-executed with
//! `SHMWIRE_ACTOR_BENCH_CHILD=1`. The case code is shared with `shmwire
//! bench actor-call` (`benches/src/actor_call.rs`). A pipelined iteration
//! is one batch: its throughput (elements/s) is calls per second.

#![allow(missing_docs)]

use std::time::Duration;

use shmwire_bench as bench;

use bench::actor_call::ActorCallCase;
use bench::cases::{self, BenchEnv, CaseKind};
use bench::Case as _;
use criterion::{BenchmarkId, Criterion, Throughput};

const CHILD_ENV: &str = "SHMWIRE_ACTOR_BENCH_CHILD";

fn limit(c: &mut Criterion, env: &mut BenchEnv, k: usize) {
    let mut g = c.benchmark_group("limit");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    let mut pair = match cases::start(CaseKind::Limit, env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the limit: {e}");
            return;
        }
    };
    let id = format!("{}/before-{k}", CaseKind::Limit.name());
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter_custom(|iters| pair.run(iters, None).expect("limit pair failed"))
    });
    g.finish();
}

fn actor_call(c: &mut Criterion, env: &mut BenchEnv, case: ActorCallCase) {
    let mut g = c.benchmark_group("actor-call");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let per_iter = match case {
        ActorCallCase::Pipelined(_, depth) => u64::from(depth),
        _ => 1,
    };
    g.throughput(Throughput::Elements(per_iter));
    let mut pair = match case.start(env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping {}: {e}", case.name());
            return;
        }
    };
    g.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
        b.iter_custom(|iters| {
            pair.run(iters * per_iter, None)
                .expect("actor-call pair failed")
        })
    });
    g.finish();
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = bench::transport::child_main(&words) {
            eprintln!("actor-call bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut setup = cases::CriterionEnv::new("actor-call", CHILD_ENV).expect("bench setup");
    let env = &mut setup.env;
    let mut c = Criterion::default().configure_from_args();
    for (k, case) in ActorCallCase::all().into_iter().enumerate() {
        limit(&mut c, env, k);
        actor_call(&mut c, env, case);
    }
    c.final_summary();
}
