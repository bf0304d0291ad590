//! Schema checks shared by the tests of `shmwire bench ring --json` and
//! `shmwire bench transport --json` (both print the same document shape).

use serde_json::{Map, Value};

/// Checks the `machine` object: `keys` are present, `cores` ≥ 1, `pinned`
/// is a boolean and an unpinned run says why (`pin_note`).
pub fn check_machine<'a>(doc: &'a Value, keys: &[&str]) -> &'a Map<String, Value> {
    let machine = doc["machine"].as_object().expect("machine object");
    for key in keys {
        assert!(machine.contains_key(*key), "machine.{key} missing");
    }
    assert!(machine["cores"].as_u64().unwrap() >= 1);
    assert!(machine["pinned"].is_boolean());
    if !machine["pinned"].as_bool().unwrap() {
        assert!(machine["pin_note"].is_string(), "unpinned runs say why");
    }
    machine
}

/// Checks that every name of `required` is a case and that every case has
/// the fields with the right types, `0 < median ≤ p99 ≤ p999`,
/// positive `ops_per_s`, at least `min_iters` iterations, and that the
/// limit row has no payload and ratio 1. Returns the cases.
pub fn check_cases<'a>(doc: &'a Value, required: &[&str], min_iters: u64) -> &'a Vec<Value> {
    let cases = doc["cases"].as_array().expect("cases array");
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for required in required {
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
        assert!(
            c["iterations"].as_u64().unwrap() >= min_iters,
            "{name}: {c}"
        );
        let peers = c["ratio_to_peers"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}.ratio_to_peers not an object: {c}"));
        for (peer, x) in peers {
            assert!(peer.starts_with("peer/"), "{name}: {peer} is not a peer");
            assert!(x.as_f64().is_some_and(|x| x > 0.0), "{name} vs {peer}: {x}");
        }
        if name.starts_with("limit/") || name.starts_with("peer/") {
            assert!(peers.is_empty(), "{name} has peer ratios: {c}");
        }
        if name.starts_with("limit/") {
            assert_eq!(c["payload_bytes"].as_u64(), Some(0), "{name}");
            assert_eq!(c["ratio_to_limit"].as_f64().unwrap(), 1.0, "{name}");
        }
    }
    cases
}

/// Checks one mode's document (`bench <mode> --json`, or one entry of
/// `bench all --json`'s `modes`): its `mode`, the machine and the cases.
/// Returns the cases.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn check_mode<'a>(
    doc: &'a Value,
    mode: &str,
    required: &[&str],
    min_iters: u64,
) -> &'a Vec<Value> {
    assert_eq!(doc["mode"].as_str(), Some(mode), "mode of {doc}");
    check_machine(
        doc,
        &["cpu_model", "cores", "kernel", "pinned", "placement"],
    );
    check_cases(doc, required, min_iters)
}

/// Checks that `path` is a non-empty SVG naming every case of `cases`
/// (the legend's text).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn check_svg(path: &std::path::Path, cases: &[Value]) {
    let svg = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        svg.trim_start().starts_with("<svg") || svg.contains("<svg"),
        "{}",
        path.display()
    );
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{} is cut short",
        path.display()
    );
    assert!(
        svg.contains("<path") || svg.contains("<polyline"),
        "{} draws no line",
        path.display()
    );
    for c in cases {
        let name = c["name"].as_str().unwrap();
        assert!(
            svg.contains(name),
            "{} does not name case {name}",
            path.display()
        );
    }
}
