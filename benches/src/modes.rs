//! The modes of `shmwire bench`, listed once: the CLI takes its choices,
//! help and `all` from [`MODES`], so a new mode (`actor-call`, `store`) is
//! one more entry here and a `run` function beside its cases.

use super::harness::BenchResult;
use super::{Options, Report};

/// One mode of `shmwire bench <mode>`.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    /// The name on the command line, in the JSON (`mode`) and of the plot
    /// file (`DIR/<name>.svg`).
    pub name: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Runs the mode: shmwire's cases and its peers in the same run, each
    /// next to a fresh measurement of the limit.
    pub run: fn(&Options) -> BenchResult<Report>,
}

/// Every mode, in the order `shmwire bench all` runs them.
pub const MODES: &[Mode] = &[
    Mode {
        name: "limit",
        about: "the raw atomic ping-pong between two pinned processes alone (the physical limit)",
        run: super::run_limit,
    },
    Mode {
        name: "ring",
        about: "ring round trips (spin, poll, futex, eventfd) and throughput beside the limit, \
                Unix socket, bare futex, pipe, crossbeam and iceoryx2 peers",
        run: super::run,
    },
    Mode {
        name: "transport",
        about: "256-byte round trips through the Connection API (shm, TCP) beside raw TCP \
                loopback, Unix socket, pipe, crossbeam and iceoryx2 request-response / \
                publish-subscribe",
        run: super::transport::run,
    },
    Mode {
        name: "actor-call",
        about: "whole actor calls through the worker runtime (sync on shm spin / park and \
                TCP, pipelined 32 and 1000 in flight) beside the bare shm transport round trip",
        run: super::actor_call::run,
    },
    Mode {
        name: "store",
        about: "object store from one client (service in another process): small put/get \
                ops/s, 1 MiB and 64 MiB put beside memcpy of the same bytes, 64 MiB get \
                beside 8-byte get",
        run: super::store::run,
    },
];

/// The pseudo-mode that runs every entry of [`MODES`].
pub const ALL: &str = "all";

/// The mode called `name`.
pub fn find(name: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.name == name)
}

/// The modes `name` selects: one, or every mode for [`ALL`].
pub fn select(name: &str) -> Option<Vec<&'static Mode>> {
    if name == ALL {
        Some(MODES.iter().collect())
    } else {
        find(name).map(|m| vec![m])
    }
}

/// Every name the command line accepts: each mode, then [`ALL`].
pub fn names() -> Vec<&'static str> {
    MODES.iter().map(|m| m.name).chain([ALL]).collect()
}
