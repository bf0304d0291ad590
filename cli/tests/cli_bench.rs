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

/// Pids of this user's `__bench-child` processes of `role` under `root`
/// whose arguments also hold `extra` (if given).
fn bench_children(root: &std::path::Path, role: &str, extra: Option<&str>) -> Vec<u32> {
    let root_arg = format!("root={}", root.display());
    let role_arg = format!("role={role}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let has = |want: &str| args.contains(&want.as_bytes());
        if has("__bench-child") && has(&role_arg) && has(&root_arg) && extra.is_none_or(has) {
            pids.push(pid);
        }
    }
    pids
}

/// A stopped echoing child (stopped, not dead: nothing tells the measuring
/// side) fails the run once it has answered nothing for the stall bound
/// (`SHMWIRE_BENCH_STALL_SECS`, 60 s by default), with an error that says
/// so: the Unix-socket case (a plain `read`, guarded by a watchdog that
/// kills the child), the bare futex case, a ring case, `bench
/// transport`'s raw Unix socket and the spinning limit. The bench then removes its session and
/// leaves no process. Before, a stopped socket child held the bench for
/// ever and a ring child for 10 minutes.
#[test]
fn a_stopped_bench_child_fails_the_run_after_the_stall_bound() {
    use std::time::{Duration, Instant};
    // (mode, its --iters, child role, one more argument of the child, how
    // long it runs before it is stopped: the transport child connects
    // first).
    for (mode, iters, role, extra, settle) in [
        ("ring", "20000", "uds", None, 0),
        ("ring", "20000", "futex", None, 0),
        ("ring", "20000", "ring-echo", Some("wait=futex-sleep"), 0),
        (
            "transport",
            "20000",
            "transport-echo",
            Some("mode=uds"),
            100,
        ),
        // A spinning measuring side: seconds per limit measurement.
        ("limit", "20000000", "limit", None, 0),
    ] {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("root");
        let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
            .args(["bench", mode, "--iters", iters])
            .env("SHMWIRE_ROOT", &root)
            .env("SHMWIRE_BENCH_STALL_SECS", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run shmwire bench");
        let mut bench = proc_support::Kid(child);
        // Each turn of the sleeping cases lasts ≈ 0.1 s here (a fresh child
        // each); stop the first child of `role` found while it still runs.
        let deadline = Instant::now() + Duration::from_secs(120);
        let stopped = loop {
            assert!(Instant::now() < deadline, "{role}: no running child found");
            if let Some(&pid) = bench_children(&root, role, extra).first() {
                std::thread::sleep(Duration::from_millis(settle));
                if proc_support::stop_if_running(pid) {
                    break pid;
                }
            }
            assert!(
                bench.0.try_wait().unwrap().is_none(),
                "{role}: the bench ended before its child could be stopped"
            );
            std::thread::sleep(Duration::from_millis(2));
        };
        let t0 = Instant::now();
        let status = loop {
            if let Some(st) = bench.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{role}: the bench still waits {:?} after its child {stopped} stopped",
                t0.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = bench.0.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        assert_eq!(status.code(), Some(1), "{role}: {err}");
        assert!(
            err.contains("the echoing child answered nothing for 2 s"),
            "{role}: {err}"
        );
        // Its session (`bench-<pid>`, `bench-limit-<pid>`, …) is gone, and
        // with it the root the bench made.
        let left: Vec<_> = std::fs::read_dir(&root)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{role}: left {left:?}");
        assert!(
            bench_children(&root, role, None).is_empty(),
            "{role}: a child was left"
        );
        println!("{role}: the run failed {:?} after the stop", t0.elapsed());
    }
}
