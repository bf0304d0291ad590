//! Criterion benches of the shared-memory ring, cross-process and pinned,
//! side by side with the raw atomic limit and the usual peers in the same
//! run (`cargo bench -p shmwire-bench --bench ring`).
//!
//! The measuring side is this process; the echoing side is this same bench
//! binary re-executed with `SHMWIRE_RING_BENCH_CHILD=1` (see `main`), driven
//! over a segment (or a socket / pipe for those peers). Each benchmark
//! starts its child once and measures with `iter_custom`, so criterion sees
//! only round trips, never process start-up. The case code is shared with
//! `shmwire bench ring` (the `shmwire-bench` crate, `benches/src/`).

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use shmwire_bench::cases::{self, start, BenchEnv, CaseKind};

const CHILD_ENV: &str = "SHMWIRE_RING_BENCH_CHILD";

fn bench_case(c: &mut Criterion, env: &mut BenchEnv, group: &str, id: &str, case: CaseKind) {
    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    if case.throughput() {
        g.throughput(Throughput::Elements(1));
    }
    let mut pair = match start(case, env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping {id}: {e}");
            return;
        }
    };
    g.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter_custom(|iters| pair.run(iters, None).expect("bench pair failed"))
    });
    g.finish();
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = cases::child_main(&words) {
            eprintln!("ring bench child: {e}");
            std::process::exit(1);
        }
        return;
    }

    let mut setup = cases::CriterionEnv::new("ring", CHILD_ENV).expect("bench setup");
    let env = &mut setup.env;

    let mut c = Criterion::default().configure_from_args();
    // The limit is measured right before every case (the host moves vCPUs
    // between placements), so each case has an adjacent limit to compare with.
    for (k, case) in cases::measured_cases().into_iter().enumerate() {
        let limit_id = format!("{}/before-{k}", CaseKind::Limit.name());
        bench_case(&mut c, env, "limit", &limit_id, CaseKind::Limit);
        let group = if case.throughput() {
            "ring-throughput"
        } else {
            "roundtrip"
        };
        bench_case(&mut c, env, group, case.name(), case);
    }
    c.final_summary();
}
