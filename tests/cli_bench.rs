//! Runs the built `shmwire bench ring --json` with a tiny iteration count
//! and checks the JSON schema and the case names.

use std::process::Command;

use serde_json::Value;

/// Case names `shmwire bench ring` must report (issue 3).
const REQUIRED_CASES: &[&str] = &[
    "limit/atomic-pingpong",
    "ring/spin/roundtrip",
    "ring/futex/roundtrip",
    "ring/eventfd/roundtrip",
    "ring/spin/throughput",
    "peer/uds/roundtrip",
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

    let machine = doc["machine"].as_object().expect("machine object");
    for key in [
        "cpu_model",
        "cores",
        "kernel",
        "pinned",
        "placement",
        "clock_overhead_ns",
    ] {
        assert!(machine.contains_key(key), "machine.{key} missing");
    }
    assert!(machine["cores"].as_u64().unwrap() >= 1);
    assert!(machine["pinned"].is_boolean());
    if !machine["pinned"].as_bool().unwrap() {
        assert!(machine["pin_note"].is_string(), "unpinned runs say why");
    }

    let cases = doc["cases"].as_array().expect("cases array");
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for required in REQUIRED_CASES {
        assert!(
            names.contains(required),
            "case {required} missing: {names:?}"
        );
    }
    for c in cases {
        let name = c["name"].as_str().unwrap();
        for key in [
            "payload_bytes",
            "iterations",
            "median_ns",
            "p99_ns",
            "p999_ns",
        ] {
            assert!(c[key].is_u64(), "{name}.{key} not an unsigned integer: {c}");
        }
        for key in ["ops_per_s", "ratio_to_limit"] {
            assert!(c[key].is_number(), "{name}.{key} not a number: {c}");
        }
        let (median, p99, p999) = (
            c["median_ns"].as_u64().unwrap(),
            c["p99_ns"].as_u64().unwrap(),
            c["p999_ns"].as_u64().unwrap(),
        );
        assert!(median > 0 && median <= p99 && p99 <= p999, "{name}: {c}");
        assert!(c["ops_per_s"].as_f64().unwrap() > 0.0, "{name}: {c}");
        assert!(c["iterations"].as_u64().unwrap() >= 200, "{name}: {c}");
        let payload = c["payload_bytes"].as_u64().unwrap();
        if name.starts_with("limit/") {
            assert_eq!(payload, 0);
            assert_eq!(c["ratio_to_limit"].as_f64().unwrap(), 1.0);
        } else if name.ends_with("/roundtrip") || name == "ring/spin/throughput" {
            assert_eq!(payload, 256, "{name}");
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
