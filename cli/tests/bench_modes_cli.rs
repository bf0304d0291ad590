//! `shmwire bench <limit|ring|transport|actor-call|store|all> --json --plot DIR` on a tiny
//! iteration count: each mode prints the JSON schema the other bench tests
//! check (`bench all`: one document whose `modes` array holds one such
//! document per mode) and writes `DIR/<mode>.svg`, a non-empty SVG that names
//! every case of the mode.

use std::process::Command;

use serde_json::Value;

mod bench_schema;
mod proc_support;
use bench_schema::{check_mode, check_svg};

/// Case names each mode must report (more with the `iceoryx2` feature).
fn required(mode: &str) -> Vec<&'static str> {
    let mut v = vec!["limit/atomic-pingpong"];
    match mode {
        "ring" => v.extend([
            "ring/spin/roundtrip",
            "ring/futex/roundtrip",
            "ring/futex-sleep/roundtrip",
            "peer/uds/roundtrip",
            "peer/futex/roundtrip",
            "peer/pipe/roundtrip",
            "peer/crossbeam/roundtrip",
        ]),
        "transport" => {
            v.extend([
                "transport/shm-spin/roundtrip",
                "transport/tcp/roundtrip",
                "peer/tcp-loopback/roundtrip",
                "peer/uds/roundtrip",
                "peer/pipe/roundtrip",
                "peer/crossbeam/roundtrip",
            ]);
            if cfg!(feature = "iceoryx2") {
                v.extend([
                    "peer/iceoryx2-rr/roundtrip",
                    "peer/iceoryx2-pubsub/roundtrip",
                ]);
            }
        }
        "actor-call" => v.extend([
            "transport/shm-spin/roundtrip",
            "actor-call/shm-spin/sync",
            "actor-call/shm-park/sync",
            "actor-call/tcp/sync",
            "actor-call/shm-spin/pipelined-32",
            "actor-call/shm-spin/pipelined-1000",
        ]),
        "store" => v.extend([
            "store/put-8B",
            "store/get-8B",
            "store/put-1KiB",
            "store/get-1KiB",
            "store/put-1MiB",
            "store/put-64MiB",
            "store/get-64MiB",
            "peer/memcpy-1MiB",
            "peer/memcpy-64MiB",
        ]),
        _ => {}
    }
    v
}

fn run(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(args)
        .output()
        .expect("run shmwire");
    assert!(
        out.status.success(),
        "shmwire {args:?} failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Not a terminal: no progress line, nothing but the document.
    serde_json::from_str(&stdout).expect("stdout is one JSON document")
}

#[test]
fn bench_limit_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("plots");
    let doc = run(&[
        "bench",
        "limit",
        "--json",
        "--iters",
        "200",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let cases = check_mode(&doc, "limit", &required("limit"), 200);
    assert_eq!(cases.len(), 1, "the limit alone: {cases:?}");
    // Measured twice (so the run says whether the placement held).
    assert_eq!(
        doc["machine"]["limit_medians_ns"].as_array().unwrap().len(),
        2
    );
    check_svg(&plot.join("limit.svg"), cases);
}

/// `bench actor-call`: every case named, each call's value checked by the
/// bench itself (a wrong total fails the run), the pipelined cases run
/// whole batches (1000 calls even with `--iters 200`), and `ops_per_s` of a
/// pipelined case is calls per second, not batches per second. The bounds
/// hold whatever the machine's timing: batches are timed back to back and
/// every sample is its batch's time / depth (rounded down), so the rate is
/// 1 / the mean sample (within 1 ns); the mean of non-negative samples is at
/// least half their median and at most their largest. A rate in batches/s
/// is 32 or 1000 times too low, one counting each call as a batch too high.
#[test]
fn bench_actor_call_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let doc = run(&[
        "bench",
        "actor-call",
        "--json",
        "--iters",
        "200",
        "--plot",
        dir.path().to_str().unwrap(),
    ]);
    let cases = check_mode(&doc, "actor-call", &required("actor-call"), 200);
    assert_eq!(cases.len(), required("actor-call").len(), "{cases:?}");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        if name == "actor-call/shm-spin/pipelined-1000" {
            assert_eq!(c["iterations"].as_u64(), Some(1000), "{c}");
        }
        if name.starts_with("actor-call/") {
            assert_eq!(c["payload_bytes"].as_u64(), Some(8), "{c}");
        }
        if name.contains("/pipelined-") {
            let rate = c["ops_per_s"].as_f64().unwrap();
            let median = c["median_ns"].as_f64().unwrap();
            let max = c["max_ns"].as_f64().unwrap();
            // 1.01: the histogram keeps 3 significant digits of a sample.
            assert!(rate <= 2.0 * 1.01e9 / median, "{c}");
            assert!(rate * 1.01 * (max + 1.0) >= 1e9, "{c}");
        }
    }
    check_svg(&dir.path().join("actor-call.svg"), cases);
}

#[test]
fn bench_store_json_has_every_case() {
    let doc = run(&["bench", "store", "--json", "--iters", "20"]);
    let cases = check_mode(&doc, "store", &required("store"), 20);
    // The store's cases and nothing else (besides the limit row).
    assert_eq!(cases.len(), 1 + 9, "{cases:?}");
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let bytes = c["payload_bytes"].as_u64().unwrap();
        let want = match name {
            n if n.ends_with("-8B") => 8,
            n if n.ends_with("-1KiB") => 1024,
            n if n.ends_with("-1MiB") => 1 << 20,
            n if n.ends_with("-64MiB") => 64 << 20,
            _ => 0,
        };
        assert_eq!(bytes, want, "{name}");
    }
}

#[test]
fn bench_all_runs_every_mode_with_plots() {
    let dir = tempfile::tempdir().unwrap();
    let doc = run(&[
        "bench",
        "all",
        "--json",
        "--iters",
        "100",
        "--plot",
        dir.path().to_str().unwrap(),
    ]);
    let modes = doc["modes"].as_array().expect("modes array");
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    for mode in ["limit", "ring", "transport", "actor-call", "store"] {
        assert!(names.contains(&mode), "mode {mode} missing: {names:?}");
    }
    for m in modes {
        let mode = m["mode"].as_str().unwrap();
        let cases = check_mode(m, mode, &required(mode), 100);
        check_svg(&dir.path().join(format!("{mode}.svg")), cases);
    }
}

/// A session root the bench made itself (`SHMWIRE_ROOT` naming a missing
/// directory) is removed at the end, empty, as the demo's is; one that
/// existed stays. (The bench used to leave the default root it made.)
#[test]
fn a_root_the_bench_made_is_removed_and_one_that_existed_stays() {
    proc_support::check_a_root_it_made_is_removed(&["bench", "limit", "--json", "--iters", "200"]);
}

#[test]
fn bench_unknown_mode_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["bench", "bogus", "--iters", "10"])
        .output()
        .expect("run shmwire");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limit") && err.contains("all"), "{err}");
}
