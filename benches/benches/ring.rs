//! Criterion benches of the shared-memory ring, cross-process and pinned,
//! side by side with the raw atomic limit and the usual peers in the same
//! run (`cargo bench -p shmwire-bench --bench ring`).
//!
//! The measuring side is this process; the echoing side is this same bench
//! binary re-executed with `SHMWIRE_RING_BENCH_CHILD=1` (see `main`), driven
//! over a segment (or a socket / pipe for those peers). Each benchmark
//! starts its child once and measures with `iter_custom`, so criterion sees
//! only round trips, never process start-up (`common`). The case code is shared with
//! `shmwire bench ring` (the `shmwire-bench` crate, `benches/src/`).

#![allow(missing_docs)]

mod common;

use std::time::Duration;

use criterion::Throughput;
use shmwire_bench::cases;

fn main() {
    common::main_with(
        "ring",
        "SHMWIRE_RING_BENCH_CHILD",
        cases::child_main::<String>,
        |c, env| {
            for (k, case) in cases::measured_cases().into_iter().enumerate() {
                common::limit_before(c, env, k, Duration::from_secs(3));
                let group = if case.throughput() {
                    "ring-throughput"
                } else {
                    "roundtrip"
                };
                common::bench_pair(
                    c,
                    group,
                    case.name(),
                    Duration::from_secs(3),
                    1,
                    || cases::start(case, env),
                    |g| {
                        if case.throughput() {
                            g.throughput(Throughput::Elements(1));
                        }
                    },
                );
            }
        },
    );
}
