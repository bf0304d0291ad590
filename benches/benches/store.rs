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

mod common;

use std::time::Duration;

use shmwire_bench as bench;

use bench::store::{StoreCase, StoreOp};
use bench::Case as _;
use criterion::Throughput;

fn main() {
    common::main_with(
        "store",
        "SHMWIRE_STORE_BENCH_CHILD",
        bench::cases::child_main::<String>,
        |c, env| {
            for case in StoreCase::all(false) {
                let group = match case.op {
                    StoreOp::Put(n) | StoreOp::Memcpy(n) if n >= 1 << 20 => "store-bandwidth",
                    StoreOp::Get(_) => "store-get",
                    _ => "store-put",
                };
                common::bench_pair(
                    c,
                    group,
                    case.name(),
                    Duration::from_secs(3),
                    1,
                    || case.start(env),
                    |g| {
                        if case.bytes() >= 64 << 20 && !matches!(case.op, StoreOp::Get(_)) {
                            g.sample_size(10);
                        }
                        if group == "store-bandwidth" {
                            g.throughput(Throughput::Bytes(case.bytes() as u64));
                        }
                    },
                );
            }
        },
    );
}
