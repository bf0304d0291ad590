//! Runs the built `shmwire bench transport --json` with a tiny iteration
//! count and checks the JSON schema (the same as `bench ring`) and the case
//! names issue 5 requires.

use std::process::Command;

use serde_json::Value;

mod bench_schema;
use bench_schema::{check_cases, check_machine};

const REQUIRED_CASES: &[&str] = &[
    "limit/atomic-pingpong",
    "transport/shm-spin/roundtrip",
    "transport/shm-futex/roundtrip",
    "transport/tcp/roundtrip",
    "peer/tcp-loopback/roundtrip",
];

#[test]
fn bench_transport_json_schema() {
    let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["bench", "transport", "--json", "--iters", "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run shmwire");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for shmwire");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "shmwire bench transport failed: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    check_machine(
        &doc,
        &["cpu_model", "cores", "kernel", "pinned", "placement"],
    );
    for c in check_cases(&doc, REQUIRED_CASES, 200) {
        let name = c["name"].as_str().unwrap();
        if name != "limit/atomic-pingpong" {
            assert_eq!(c["payload_bytes"].as_u64(), Some(256), "{name}");
            assert_eq!(c["iterations"].as_u64(), Some(200), "{name}");
        }
        if name == "transport/shm-spin/roundtrip" {
            // Every peer of the run, on the same 256 B payload.
            let peers = c["ratio_to_peers"].as_object().unwrap();
            for peer in ["peer/tcp-loopback/roundtrip", "peer/uds/roundtrip"] {
                let x = peers[peer].as_f64().unwrap();
                let own = c["median_ns"].as_f64().unwrap();
                let theirs = doc["cases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == peer)
                    .unwrap()["median_ns"]
                    .as_f64()
                    .unwrap();
                assert!(
                    (x / (own / theirs) - 1.0).abs() < 0.01,
                    "{name} vs {peer}: {x}"
                );
            }
        }
    }
    // The run removed its session (segments, sockets, lock files).
    let session = shmwire::shm::default_root().join(format!("bench-transport-{pid}"));
    assert!(!session.exists(), "{} left behind", session.display());
}
