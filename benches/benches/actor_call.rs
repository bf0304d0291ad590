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

mod common;

use std::time::Duration;

use shmwire_bench as bench;

use bench::actor_call::ActorCallCase;
use bench::Case as _;
use criterion::Throughput;

fn main() {
    common::main_with(
        "actor-call",
        "SHMWIRE_ACTOR_BENCH_CHILD",
        bench::transport::child_main::<String>,
        |c, env| {
            for (k, case) in ActorCallCase::all().into_iter().enumerate() {
                common::limit_before(c, env, k, Duration::from_secs(2));
                let per_iter = match case {
                    ActorCallCase::Pipelined(_, depth) => u64::from(depth),
                    _ => 1,
                };
                common::bench_pair(
                    c,
                    "actor-call",
                    case.name(),
                    Duration::from_secs(3),
                    per_iter,
                    || case.start(env),
                    |g| {
                        g.throughput(Throughput::Elements(per_iter));
                    },
                );
            }
        },
    );
}
