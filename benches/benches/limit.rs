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

mod common;

use std::time::Duration;

use shmwire_bench::cases::{self, CaseKind};

fn main() {
    common::main_with(
        "limit",
        "SHMWIRE_LIMIT_BENCH_CHILD",
        cases::child_main::<String>,
        |c, env| {
            common::bench_pair(
                c,
                "limit",
                CaseKind::Limit.name(),
                Duration::from_secs(5),
                1,
                || cases::start(CaseKind::Limit, env),
                |_| {},
            );
        },
    );
}
