//! Criterion bench of the physical limit alone: the raw atomic ping-pong
//! between two pinned processes on two cache lines of a shared segment
//! (`cargo bench -p shmwire-bench --bench limit`; the same case as
//! `shmwire bench limit`). Every other bench measures it again next to each
//! of its cases; this one is for watching the limit itself (placement
//! changes show up as a bimodal distribution in the HTML report).
//!
//! The echoing side is this bench binary re-executed with
//! `SHMWIRE_LIMIT_BENCH_CHILD=1`.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use shmwire_bench::cases::{self, start, CaseKind};

const CHILD_ENV: &str = "SHMWIRE_LIMIT_BENCH_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = cases::child_main(&words) {
            eprintln!("limit bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut setup = cases::CriterionEnv::new("limit", CHILD_ENV).expect("bench setup");
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("limit");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let mut pair = start(CaseKind::Limit, &mut setup.env).expect("start the limit pair");
    g.bench_function(BenchmarkId::from_parameter(CaseKind::Limit.name()), |b| {
        b.iter_custom(|iters| pair.run(iters, None).expect("limit pair failed"))
    });
    g.finish();
    drop(pair);
    c.final_summary();
}
