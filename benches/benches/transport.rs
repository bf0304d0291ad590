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

mod common;

use std::time::Duration;

use shmwire_bench as bench;

use bench::transport::TransportCase;
use bench::Case as _;

fn main() {
    common::main_with(
        "transport",
        "SHMWIRE_TRANSPORT_BENCH_CHILD",
        bench::transport::child_main::<String>,
        |c, env| {
            for (k, case) in TransportCase::all().into_iter().enumerate() {
                common::limit_before(c, env, k, Duration::from_secs(2));
                common::bench_pair(
                    c,
                    "transport-roundtrip",
                    case.name(),
                    Duration::from_secs(3),
                    1,
                    || case.start(env),
                    |g| {
                        if case.blocking() {
                            g.sample_size(20);
                        }
                    },
                );
            }
        },
    );
}
