//! Runs the built `shmwire bench ring --json` with a tiny iteration count
//! and checks the JSON schema and the case names.

use std::process::Command;

mod proc_support;

use serde_json::Value;

mod bench_schema;
use bench_schema::{check_cases, check_machine};

/// Case names `shmwire bench ring` must report (issue 3).
const REQUIRED_CASES: &[&str] = &[
    "limit/atomic-pingpong",
    "ring/spin/roundtrip",
    "ring/futex/roundtrip",
    "ring/eventfd/roundtrip",
    "ring/spin/throughput",
    "ring/futex-sleep/roundtrip",
    "peer/uds/roundtrip",
    "peer/futex/roundtrip",
    "peer/pipe/roundtrip",
    "peer/crossbeam/roundtrip",
];

#[test]
fn bench_ring_json_schema() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["bench", "ring", "--json", "--iters", "200"])
        .output()
        .expect("run shmwire");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shmwire bench ring failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly one JSON document on stdout.
    let doc: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");

    check_machine(
        &doc,
        &[
            "cpu_model",
            "cores",
            "kernel",
            "pinned",
            "placement",
            "clock_overhead_ns",
        ],
    );
    for c in check_cases(&doc, REQUIRED_CASES, 200) {
        let name = c["name"].as_str().unwrap();
        if name.ends_with("/roundtrip") || name == "ring/spin/throughput" {
            assert_eq!(c["payload_bytes"].as_u64(), Some(256), "{name}");
        }
    }
}

#[test]
fn bench_ring_table_and_bad_args() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["bench", "ring", "--iters", "100"])
        .output()
        .expect("run shmwire");
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("limit/atomic-pingpong"), "{table}");
    assert!(table.contains("median ns"), "{table}");
    assert!(
        serde_json::from_str::<Value>(&table).is_err(),
        "table is not JSON"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["bench", "ring", "--iters", "0"])
        .output()
        .expect("run shmwire");
    assert!(!bad.status.success(), "--iters 0 is refused");
}

/// An interrupted `shmwire bench` (SIGINT, SIGTERM, SIGHUP) removes its
/// session (found by an attack: `bench-<pid>` was left behind): it stops
/// after the measurement it is in, stops its child, removes the session
/// and exits with status 1 and `interrupted`.
#[test]
fn an_interrupted_bench_removes_its_session() {
    use std::time::{Duration, Instant};
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    for signal in ["-INT", "-TERM", "-HUP"] {
        let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["bench", "ring", "--iters", "2000"])
            .env("SHMWIRE_ROOT", &root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run shmwire bench");
        let mut child = proc_support::Kid(child);
        let dir = root.join(format!("bench-{}", child.0.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dir.exists() {
            assert!(Instant::now() < deadline, "the bench never made {dir:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (status, err) = child.signal_and_collect(signal, Duration::from_secs(60));
        assert_eq!(status.code(), Some(1), "{signal}: {err}");
        assert!(err.contains("shmwire: interrupted"), "{signal}: {err}");
        assert!(
            !dir.exists(),
            "{signal} left {:?}",
            std::fs::read_dir(&dir).map(|rd| rd.count())
        );
    }
}
