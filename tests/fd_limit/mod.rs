//! The descriptor limit a test sets on a process to leave it a known
//! number of free descriptors — shared by the library's and the CLI's
//! process tests (each includes this file with `#[path]`).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;

/// The soft `RLIMIT_NOFILE` that leaves process `pid` exactly `spare` free
/// descriptor numbers below it.
///
/// The limit bounds descriptor *numbers*, not their count: with holes
/// below the highest open number (descriptors closed earlier), "open
/// count + spare" leaves more than `spare` free (CI on 866afbe: 41
/// counted, the limit set to 43, 44 open after a new store client
/// connected within it). The reading directory's own descriptor, when
/// `pid` is this process, is closed by the time the limit applies and
/// counts as free.
pub fn limit_leaving(pid: u32, spare: u64) -> u64 {
    assert!(spare > 0);
    let dir = format!("/proc/{pid}/fd");
    let used: BTreeSet<u64> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).map_or(true, |l| l != Path::new(&dir)))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let mut free = 0;
    let last = (0..)
        .find(|n| {
            free += u64::from(!used.contains(n));
            free == spare
        })
        .unwrap();
    last + 1
}

/// Lowers this process's soft `RLIMIT_NOFILE` to leave exactly `spare`
/// free descriptor numbers ([`limit_leaving`]); the hard limit stays.
pub fn leave_free(spare: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let current = limit_leaving(std::process::id(), spare);
    let now = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(current),
            maximum: now.maximum,
        },
    )
    .unwrap();
}
