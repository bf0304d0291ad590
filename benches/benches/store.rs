//! Criterion benches of the object store from one client, the service in
//! another process: `put` and `get` of 8 B and 1 KiB objects, `put` of
//! 1 MiB and 64 MiB beside single-thread `memcpy` of the same bytes, and
//! `get` of a sealed 64 MiB object beside the 8-byte one, in the same run
//! (`cargo bench -p shmwire-bench --bench store`). Throughput is reported
//! in bytes for the copies, so criterion prints put bandwidth next to
//! memcpy bandwidth.
//!
//! The store service runs in this bench binary re-executed with
//! `SHMWIRE_STORE_BENCH_CHILD=1`. The case code is shared with `shmwire
//! bench store` (`benches/src/store.rs`).

#![allow(missing_docs)]

use std::time::Duration;

use shmwire_bench as bench;

use bench::cases::{self, BenchEnv};
use bench::store::{StoreCase, StoreOp};
use bench::Case as _;
use criterion::{BenchmarkId, Criterion, Throughput};

const CHILD_ENV: &str = "SHMWIRE_STORE_BENCH_CHILD";

fn store(c: &mut Criterion, env: &mut BenchEnv, case: StoreCase) {
    let group = match case.op {
        StoreOp::Put(n) | StoreOp::Memcpy(n) if n >= 1 << 20 => "store-bandwidth",
        StoreOp::Get(_) => "store-get",
        _ => "store-put",
    };
    let mut g = c.benchmark_group(group);
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    if case.bytes() >= 64 << 20 && !matches!(case.op, StoreOp::Get(_)) {
        g.sample_size(10);
    }
    if group == "store-bandwidth" {
        g.throughput(Throughput::Bytes(case.bytes() as u64));
    }
    let mut pair = match case.start(env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping {}: {e}", case.name());
            return;
        }
    };
    g.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
        b.iter_custom(|iters| pair.run(iters, None).expect("store pair failed"))
    });
    g.finish();
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let words: Vec<String> = std::env::args().skip(1).collect();
        if let Err(e) = bench::cases::child_main(&words) {
            eprintln!("store bench child: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut setup = cases::CriterionEnv::new("store", CHILD_ENV).expect("bench setup");
    let env = &mut setup.env;
    let mut c = Criterion::default().configure_from_args();
    for case in StoreCase::all(false) {
        store(&mut c, env, case);
    }
    c.final_summary();
}
