//! Criterion benches of the transport: round trips of a 256-byte message
//! (PushTaskRequest-sized) through the `Connection` API between two
//! processes — shared memory (spin, futex, eventfd) and shmwire's TCP —
//! side by side in the same run with raw std TCP loopback, a raw Unix
//! socket, a pipe, a crossbeam channel, iceoryx2 request-response and
//! publish-subscribe (with the `iceoryx2` feature) and the raw atomic limit
//! measured right before each case
//! (`cargo bench -p shmwire-bench --bench transport`).
//!
//! The echoing side is this bench binary re-executed with
//! `SHMWIRE_TRANSPORT_BENCH_CHILD=1`. The case code is shared with `shmwire
//! bench transport` (`benches/src/transport.rs`).

#![allow(missing_docs)]

use std::time::Duration;

use shmwire_bench as bench;

use bench::cases::{self, BenchEnv, CaseKind};
use bench::transport::TransportCase;
use bench::Case as _;
use criterion::{BenchmarkId, Criterion};

const CHILD_ENV: &str = "SHMWIRE_TRANSPORT_BENCH_CHILD";

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

fn transport(c: &mut Criterion, env: &mut BenchEnv, case: TransportCase) {
    let mut g = c.benchmark_group("transport-roundtrip");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    if case.blocking() {
        g.sample_size(20);
    }
    let mut pair = match case.start(env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping {}: {e}", case.name());
            return;
        }
    };
    g.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
        b.iter_custom(|iters| pair.run(iters, None).expect("transport pair failed"))
    });
    g.finish();
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = bench::transport::child_main(&words) {
            eprintln!("transport bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut setup = cases::CriterionEnv::new("transport", CHILD_ENV).expect("bench setup");
    let env = &mut setup.env;
    let mut c = Criterion::default().configure_from_args();
    for (k, case) in TransportCase::all().into_iter().enumerate() {
        limit(&mut c, env, k);
        transport(&mut c, env, case);
    }
    c.final_summary();
}
