//! `shmwire node`, `inspect` and `cleanup` with real processes (issue 13):
//! a node and worker processes (this test binary re-executed in a role),
//! a driver in the test process. Each test has its own private scratch
//! root, reaps every child it starts and bounds every wait.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shmwire::ids::{NodeId, ObjectId, WorkerId};
use shmwire::node::DEATH_GRACE;
use shmwire::shm::Session;
use shmwire::spec::{FunctionDescriptor, TaskArg};
use shmwire::store::{StoreClient, DEFAULT_STORE_NAME};
use shmwire::worker::{
    CoreWorker, CoreWorkerOptions, FunctionRegistry, TaskOptions, Worker, WorkerOptions,
};

mod proc_support;
#[path = "../../tests/slot_scribble/mod.rs"]
mod slot_scribble;
use proc_support::{wait_for, Kid};

const CHILD_ENV: &str = "SHMWIRE_NODE_TEST_CHILD";
const READY: &str = "SHMWIRE-NODE-CHILD-READY";
const MODULE: &str = "node_tests";
/// Upper bound of any single wait.
const GUARD: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ helpers

/// Runs the CLI with `--root root`, bounded; returns (success, stdout, stderr).
fn shmwire(root: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(args)
        .arg("--root")
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmwire");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + GUARD;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shmwire {args:?} did not finish within {GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (
        status.success(),
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    )
}

/// `inspect --json` (of one session), parsed.
fn inspect_json(root: &Path, session: &str) -> Value {
    let (ok, out, err) = shmwire(root, &["inspect", "--session", session, "--json"]);
    assert!(ok, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

impl Kid {
    /// Sends `signal` (`-TERM`, `-INT`) and waits (bounded) for a
    /// successful exit.
    fn signal_and_wait(&mut self, signal: &str) {
        let st = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                assert!(st.success(), "exit after {signal}: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit after {signal}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A running `shmwire node`, its HTTP address and every line it printed.
struct NodeProc {
    kid: Kid,
    addr: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread reading the node's output into `lines`.
    reader: std::thread::JoinHandle<()>,
}

impl NodeProc {
    /// Every line the node printed, once it has exited: waits (at most
    /// `GUARD`) for the reader to reach the end of the output — the
    /// process's exit does not mean its last lines were read (the last
    /// line was missing once, under load).
    fn output_after_exit(&self) -> String {
        let deadline = Instant::now() + GUARD;
        while !self.reader.is_finished() {
            assert!(Instant::now() < deadline, "the node's output did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        self.lines.lock().unwrap().join("\n")
    }
}

fn start_node(root: &Path, session: &str) -> NodeProc {
    let (kid, out, ready) =
        proc_support::spawn_node(root, &["--session", session, "--store-capacity", "1M"]);
    let addr = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .expect(&ready)
        .trim_end_matches(',')
        .to_owned();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            l2.lock().unwrap().push(line);
        }
    });
    NodeProc {
        kid,
        addr,
        lines,
        reader,
    }
}

/// `GET path` on the node's HTTP endpoint.
fn http_get(addr: &str, path: &str) -> String {
    http_get_within(addr, path, GUARD)
}

/// [`http_get`], its answer awaited at most `wait` (else a panic).
fn http_get_within(addr: &str, path: &str, wait: Duration) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn child_spec() -> Option<Vec<String>> {
    std::env::var(CHILD_ENV)
        .ok()
        .map(|s| s.split('|').map(str::to_owned).collect())
}

fn worker_id(n: u8) -> WorkerId {
    WorkerId::from_array([n; 28])
}

fn spawn_worker(root: &Path, session: &str, n: u8) -> Kid {
    spawn_worker_with(
        root,
        session,
        n,
        shmwire::transport::DEFAULT_MAX_RECEIVE_MEMORY,
    )
}

/// [`spawn_worker`] with its `WorkerOptions::max_receive_memory` (bytes).
fn spawn_worker_with(root: &Path, session: &str, n: u8, receive_memory: usize) -> Kid {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("worker|{}|{session}|{n}|{receive_memory}", root.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let kid = Kid(child);
    wait_for(&mut out, READY);
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = out.read_to_string(&mut sink);
    });
    kid
}

/// Child role "worker": worker `n` named `w<n>` in session `sess`, serving
/// `square` over shared memory and TCP until killed (at most 60 s), its TCP
/// connections' receive memory `receive_memory` bytes.
fn worker_role(root: &str, sess: &str, n: u8, receive_memory: usize) {
    let session = Session::open_in(root, sess).unwrap();
    let mut registry = FunctionRegistry::new();
    registry
        .register_function(FunctionDescriptor::rust(MODULE, "", "square"), |args| {
            let x = args.i64(0)?;
            Ok((x * x).to_le_bytes().to_vec())
        })
        .unwrap();
    let mut opts = WorkerOptions::new(worker_id(n), NodeId::from_random());
    opts.name = Some(format!("w{n}"));
    opts.max_receive_memory = receive_memory;
    let mut worker = Worker::bind(&session, opts, Arc::new(registry)).unwrap();
    println!("{READY}");
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        worker.run_once(Duration::from_millis(20)).unwrap();
    }
}

/// Child role "store-client": connects to the session's store, puts one
/// object, prints the client's worker id after [`READY`], then holds the
/// connection until a line (or end of file) arrives on stdin (at most
/// 60 s) and exits normally, closing it.
fn store_client_role(root: &str, sess: &str) {
    let session = Session::open_in(root, sess).unwrap();
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    store
        .put(ObjectId::from_array([9; 28]), &[3u8; 500], b"")
        .unwrap();
    println!("{READY}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(60));
    drop(store);
}

/// The child roles of every test in this file; a no-op in the parent.
#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    match spec[0].as_str() {
        "worker" => worker_role(
            &spec[1],
            &spec[2],
            spec[3].parse().unwrap(),
            spec[4].parse().unwrap(),
        ),
        "store-client" => store_client_role(&spec[1], &spec[2]),
        // Makes the session (its directory, marker, token) and exits.
        "open-session" => drop(Session::open_in(&spec[1], &spec[2]).unwrap()),
        other => panic!("unknown role {other}"),
    }
}

/// Runs `square(x)` on worker `n`; its result.
fn square(driver: &mut CoreWorker, n: u8, x: i64) -> Result<i64, String> {
    let r = driver
        .submit_task(
            worker_id(n),
            FunctionDescriptor::rust(MODULE, "", "square"),
            vec![TaskArg::value(x.to_le_bytes().to_vec(), Vec::new())],
            TaskOptions::default(),
        )
        .map_err(|e| e.to_string())?;
    let v = driver
        .get(&[r], Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(i64::from_le_bytes(v[0].as_slice().try_into().unwrap()))
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `name` in a session directory belongs to process `pid`
/// (its lock, sockets, temporary files and segments carry `<pid>-`) or is
/// the directory entry of worker `n`.
fn owned_by(name: &str, pid: u32, n: u8) -> bool {
    name.contains(&format!("-{pid}-"))
        || name.starts_with(&format!("proc-{pid}-"))
        || name.starts_with(&format!(".w-{}", worker_id(n)))
}

fn worker_json<'a>(doc: &'a Value, name: &str) -> Option<&'a Value> {
    doc["sessions"][0]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
}

// ------------------------------------------------------------------ schema

fn is_u64(v: &Value) -> bool {
    v.is_u64()
}

fn opt_str(v: &Value) -> bool {
    v.is_null() || v.is_string()
}

/// Checks one `connections` element (of a worker or of the store).
fn check_connection(c: &Value) {
    assert!(c["peer"].as_str().unwrap().len() == 56, "{c}");
    assert!(c["pid"].is_null() || is_u64(&c["pid"]), "{c}");
    assert!(c["transport"] == "shm" || c["transport"] == "tcp");
    for ring in [&c["rx_ring"], &c["tx_ring"]] {
        if !ring.is_null() {
            let (u, cap) = (
                ring["used"].as_u64().unwrap(),
                ring["capacity"].as_u64().unwrap(),
            );
            assert!(u <= cap && cap > 0, "{ring}");
        }
    }
    assert!(is_u64(&c["pending_send_bytes"]));
}

/// Checks every field of a `shmwire-inspect/1` document (docs/node.md).
fn check_schema(doc: &Value) {
    assert_eq!(doc["schema"], "shmwire-inspect/1", "{doc:#}");
    assert!(doc["root"].is_string());
    assert!(doc["foreign"].is_array() && doc["errors"].is_array());
    for s in doc["sessions"].as_array().unwrap() {
        assert!(s["name"].is_string() && s["dir"].is_string() && s["live"].is_boolean());
        assert!(is_u64(&s["processes"]["live"]) && is_u64(&s["processes"]["dead"]));
        assert!(is_u64(&s["segments"]) && opt_str(&s["node"]));
        assert!(s["node_running"].is_boolean(), "{s}");
        assert!(s["node_pid"].is_null() || is_u64(&s["node_pid"]), "{s}");
        assert!(
            opt_str(&s["node_error"]) && opt_str(&s["store_error"]),
            "{s}"
        );
        // A node with a readable entry runs; `node_error` only without one.
        if s["node"].is_string() {
            assert!(
                s["node_running"] == true && s["node_error"].is_null(),
                "{s}"
            );
        }
        // Store figures or why not, never both.
        assert!(s["store"].is_null() || s["store_error"].is_null(), "{s}");
        assert!(s["problems"].is_array());
        let unreadable = s["unreadable_entries"].as_array().unwrap();
        assert_eq!(unreadable.len(), s["problems"].as_array().unwrap().len());
        for u in unreadable {
            assert!(u["path"].is_string() && u["error"].is_string(), "{u}");
            assert!(u["live"].is_null() || u["live"].is_boolean(), "{u}");
            assert!(u["pid"].is_null() || is_u64(&u["pid"]), "{u}");
            assert!(u["node"].is_boolean(), "{u}");
        }
        for r in s["refused"].as_array().unwrap() {
            assert!(r["name"].is_string() && r["type"].is_string(), "{r}");
        }
        for w in s["workers"].as_array().unwrap() {
            assert!(w["worker_id"].as_str().unwrap().len() == 56, "{w}");
            assert!(opt_str(&w["name"]) && is_u64(&w["pid"]));
            assert!(w["live"].is_boolean() && w["removed_by_node"].is_boolean());
            for t in w["transports"].as_array().unwrap() {
                assert!(t == "shm" || t == "tcp", "{t}");
            }
            assert!(opt_str(&w["tcp"]) && opt_str(&w["http"]) && opt_str(&w["stats_error"]));
            assert!(w["stats_updated_unix_ms"].is_null() || is_u64(&w["stats_updated_unix_ms"]));
            assert!(is_u64(&w["connections_unlisted"]) && is_u64(&w["handlers_unlisted"]));
            for c in w["connections"].as_array().unwrap() {
                check_connection(c);
            }
            for h in w["handlers"].as_array().unwrap() {
                assert!(h["name"].is_string());
                for k in [
                    "count",
                    "queueing_mean_ns",
                    "queueing_max_ns",
                    "execution_mean_ns",
                    "execution_max_ns",
                ] {
                    assert!(is_u64(&h[k]), "{k}: {h}");
                }
                assert!(h["queueing_mean_ns"].as_u64() <= h["queueing_max_ns"].as_u64());
                assert!(h["execution_mean_ns"].as_u64() <= h["execution_max_ns"].as_u64());
            }
        }
        let st = &s["store"];
        if !st.is_null() {
            for k in [
                "capacity",
                "used",
                "objects",
                "sealed",
                "evictable",
                "fallback_objects",
                "metadata_used",
                "metadata_capacity",
            ] {
                assert!(is_u64(&st[k]), "{k}: {st}");
            }
            let mut last = u64::MAX;
            for o in st["largest"].as_array().unwrap() {
                assert!(o["object_id"].as_str().unwrap().len() == 56);
                let size = o["data_size"].as_u64().unwrap();
                assert!(size <= last, "largest first: {st}");
                last = size;
                let state = o["state"].as_str().unwrap();
                assert!(["unsealed", "sealed", "delete-pending"].contains(&state));
                assert!(is_u64(&o["holders"]) && o["fallback"].is_boolean());
            }
            for c in st["connections"].as_array().unwrap() {
                check_connection(c);
            }
            assert!(is_u64(&st["connections_unlisted"]), "{st}");
        }
    }
}

// ------------------------------------------------------------------ tests

/// A node, two workers and a driver: `inspect --json` (schema checked)
/// shows the workers with their transports, the driver's connection with
/// its rings' fill, the `square` handler's figures and the store's objects
/// largest first. One worker is SIGKILLed: `inspect` calls it dead within a
/// second, and the node removes exactly its files (lock, socket, entry,
/// statistics segment) and nothing else; the other worker still serves.
#[test]
fn node_reports_and_cleans_up_a_killed_worker() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("node_reports_and_cleans_up_a_killed_worker");
    let scratch = proc_support::scratch("swn", "kill");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "n1");
    let _w1 = spawn_worker(&root, "n1", 1);
    let mut w2 = spawn_worker(&root, "n1", 2);
    let session = Session::open_in(&root, "n1").unwrap();
    let mut driver =
        CoreWorker::new(&session, CoreWorkerOptions::new(NodeId::from_random())).unwrap();
    for x in 0..20 {
        assert_eq!(square(&mut driver, 1, x).unwrap(), x * x);
    }
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    store
        .put(ObjectId::from_array([1; 28]), &[7u8; 100], b"")
        .unwrap();
    store
        .put(ObjectId::from_array([2; 28]), &[7u8; 1000], b"")
        .unwrap();

    // The figures arrive within the publishers' periods (50 / 100 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let doc = loop {
        let doc = inspect_json(&root, "n1");
        let w1 = worker_json(&doc, "w1").cloned().unwrap_or_default();
        let handler_done = w1["handlers"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["count"] == 20));
        let conn = w1["connections"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["transport"] == "shm" && c["rx_ring"].is_object())
        });
        let objects = doc["sessions"][0]["store"]["objects"] == 2;
        if handler_done && conn && objects {
            break doc;
        }
        assert!(Instant::now() < deadline, "figures never arrived: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    check_schema(&doc);
    let s = &doc["sessions"][0];
    assert_eq!(s["live"], true);
    assert!(s["node"].is_string());
    let w1 = worker_json(&doc, "w1").unwrap();
    assert_eq!(w1["live"], true);
    assert_eq!(w1["transports"], serde_json::json!(["shm", "tcp"]));
    let h = &w1["handlers"].as_array().unwrap()[0];
    assert!(h["name"].as_str().unwrap().contains("square"), "{h}");
    assert!(h["execution_max_ns"].as_u64().unwrap() > 0, "{h}");
    assert_eq!(w1["connections"][0]["peer"], driver.worker_id().to_string());
    assert_eq!(w1["connections"][0]["pid"], std::process::id(), "{w1}");
    let largest = &s["store"]["largest"];
    assert_eq!(largest[0]["data_size"], 1000, "{largest}");
    assert_eq!(largest[1]["data_size"], 100, "{largest}");
    assert_eq!(largest[0]["state"], "sealed");
    assert!(s["store"]["used"].as_u64().unwrap() >= 1100);
    // The text form and the HTTP endpoint say the same.
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "n1"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("(w1)") && text.contains("handler") && text.contains("rx ring"),
        "{text}"
    );
    let health = http_get(&node.addr, "/health");
    assert!(
        health.starts_with("HTTP/1.0 200") && health.contains("ok n1"),
        "{health}"
    );
    let page = http_get(&node.addr, "/inspect");
    assert!(
        page.contains("(w2)") && page.contains("store: capacity"),
        "{page}"
    );

    // SIGKILL w2: dead within a second, its files (and only they) go.
    let dir = root.join("n1");
    let w2_pid = w2.pid();
    let before = names(&dir);
    assert!(before
        .iter()
        .any(|n| n.starts_with("stats-") && owned_by(n, w2_pid, 2)));
    w2.sigkill();
    let killed = Instant::now();
    loop {
        let doc = inspect_json(&root, "n1");
        check_schema(&doc);
        if worker_json(&doc, "w2").is_some_and(|w| w["live"] == false) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "w2 not reported dead within a second: {doc:#}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = names(&dir);
        if !after.iter().any(|n| owned_by(n, w2_pid, 2)) {
            break after;
        }
        assert!(Instant::now() < deadline, "left: {after:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let removed: BTreeSet<_> = before.difference(&after).cloned().collect();
    let expected: BTreeSet<_> = before
        .iter()
        .filter(|n| owned_by(n, w2_pid, 2))
        .cloned()
        .collect();
    assert_eq!(removed, expected, "before {before:?}\nafter {after:?}");
    assert!(
        expected.len() >= 4,
        "lock, socket, entry, statistics: {expected:?}"
    );
    // The node said so, and inspect still calls it dead (from the node).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("(w2)") && l.contains("died"))
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            node.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let doc = inspect_json(&root, "n1");
    let w2j = worker_json(&doc, "w2").unwrap();
    assert_eq!(w2j["live"], false);
    assert_eq!(w2j["removed_by_node"], true);
    assert_eq!(w2j["pid"], w2_pid);
    // The survivor serves on.
    assert_eq!(square(&mut driver, 1, 9).unwrap(), 81);

    drop((driver, store));
    session.remove_all().unwrap();
    node.kid.signal_and_wait("-TERM");
}

/// A node stopped by SIGTERM, SIGINT or SIGHUP (a closed terminal; it
/// left its files as SIGKILL does, found by an attack) leaves nothing
/// behind; a node
/// SIGKILLed and started again under the same session works (its
/// predecessor's entry, store and statistics are removed, the new store
/// takes objects) and then stops cleanly too.
#[test]
fn node_signals_and_restart_after_sigkill() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("node_signals_and_restart_after_sigkill");
    let scratch = proc_support::scratch("swn", "sig");
    let root = scratch.path().join("root");
    for sig in ["-TERM", "-INT", "-HUP"] {
        let mut node = start_node(&root, "n2");
        assert!(root.join("n2").is_dir());
        node.kid.signal_and_wait(sig);
        assert!(
            names(&root).is_empty(),
            "after {sig}: {:?} / {:?}",
            names(&root),
            names(&root.join("n2"))
        );
    }
    let mut first = start_node(&root, "n2");
    let first_pid = first.kid.pid();
    let first_id = worker_json(&inspect_json(&root, "n2"), "shmwire-node").unwrap()["worker_id"]
        .as_str()
        .unwrap()
        .to_owned();
    first.kid.sigkill();
    let second = start_node(&root, "n2");
    let doc = inspect_json(&root, "n2");
    check_schema(&doc);
    let node = worker_json(&doc, "shmwire-node").unwrap();
    assert_eq!(node["live"], true);
    assert_eq!(node["pid"], second.kid.pid());
    // Its HTTP address is no transport (found by an attack: it was given
    // as `tcp`, which a connector resolving the node would have dialled).
    assert_eq!(node["http"], second.addr.as_str(), "{node}");
    assert!(node["tcp"].is_null(), "{node}");
    assert_eq!(node["transports"], serde_json::json!([]), "{node}");
    // Removed by the new node's cleanup rounds, the first of which may
    // still be to come when it reports ready (CI of `b31f5da` under load
    // found the entry and statistics area still there). Its files are
    // named by its pid between dashes (lock, statistics area) or by its
    // worker id (entry): the bare pid's digits also turn up by chance in
    // the new node's random worker id (CI of `0d5937a`: pid 9713 in
    // `.w-87568a8f…a9713e90.entry`).
    let by_pid = format!("-{first_pid}-");
    within(Duration::from_secs(5), || {
        let left: Vec<_> = names(&root.join("n2"))
            .into_iter()
            .filter(|n| n.contains(&by_pid) || n.contains(&first_id))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("the killed node's files: {left:?}"))
        }
    })
    .unwrap();
    // And it says so: its `removed:` line names the killed node's lock file
    // (the attack on `0060161`: the pass the node makes before it takes the
    // session removed them without a word).
    let lock = format!("proc-{first_pid}-");
    within(Duration::from_secs(5), || {
        let lines = second.lines.lock().unwrap();
        if lines
            .iter()
            .any(|l| l.starts_with("removed: ") && l.contains(&lock))
        {
            Ok(())
        } else {
            Err(format!("no removed: line naming {lock}: {lines:?}"))
        }
    })
    .unwrap();
    // The restarted store works, from another process too.
    {
        let session = Session::open_in(&root, "n2").unwrap();
        let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
        store
            .put(ObjectId::from_array([3; 28]), &[1u8; 64], b"")
            .unwrap();
        assert!(store.contains(ObjectId::from_array([3; 28])).unwrap());
        drop(store);
        session.remove_all().unwrap();
    }
    let mut second = second;
    second.kid.signal_and_wait("-TERM");
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("n2")));
}

/// The same signal delivered twice in a burst — GNU `timeout` sends SIGTERM
/// to the process and then to its process group — stops the node as one
/// does: it removes its session and says so. Before, the second copy, if it
/// came after the handler of the first had run, ended the node at once with
/// status 1, printing nothing and leaving every file of the session (the
/// attack of 2026-12-02: `timeout 600 shmwire node` left its session; with
/// the two kills 20 ms apart, as here, every time).
#[test]
fn a_signal_delivered_twice_stops_the_node_cleanly() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_signal_delivered_twice_stops_the_node_cleanly");
    let scratch = proc_support::scratch("swn", "twice");
    let root = scratch.path().join("root");
    for sig in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
        let mut node = start_node(&root, "n3");
        let pid = rustix::process::Pid::from_raw(node.kid.pid() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let _ = rustix::process::kill_process(pid, sig);
        let deadline = Instant::now() + GUARD;
        let status = loop {
            if let Some(st) = node.kid.0.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "no exit after two {sig:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        // Its output thread has read everything once the pipe closed.
        std::thread::sleep(Duration::from_millis(50));
        let lines = node.lines.lock().unwrap().join("\n");
        assert!(status.success(), "two {sig:?}: {status}; printed:\n{lines}");
        assert!(
            lines.contains("node stopped"),
            "two {sig:?}; printed:\n{lines}"
        );
        assert!(
            names(&root).is_empty(),
            "two {sig:?} left {:?} / {:?}",
            names(&root),
            names(&root.join("n3"))
        );
    }
}

/// `cleanup --dry-run` lists a killed worker's files and removes nothing;
/// `cleanup` then removes exactly them. Then `cleanup --session`,
/// `cleanup --all-stale` and `--dry-run` run in a loop while workers start,
/// serve and are killed: no cleanup run fails, and every live worker
/// answers every call.
#[test]
fn cleanup_in_a_loop_never_breaks_live_workers() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("cleanup_in_a_loop_never_breaks_live_workers");
    let scratch = proc_support::scratch("swn", "loop");
    let root = scratch.path().join("root");
    let session = Session::open_in(&root, "n3").unwrap();
    let dir = root.join("n3");
    let mut driver =
        CoreWorker::new(&session, CoreWorkerOptions::new(NodeId::from_random())).unwrap();
    let _steady = spawn_worker(&root, "n3", 1);
    let mut doomed = spawn_worker(&root, "n3", 2);
    assert_eq!(square(&mut driver, 2, 3).unwrap(), 9);
    let pid = doomed.pid();
    doomed.sigkill();
    let before = names(&dir);
    let (ok, out, err) = shmwire(&root, &["cleanup", "--session", "n3", "--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("would remove"), "{out}");
    assert_eq!(names(&dir), before, "a dry run removed something: {out}");
    let doomed_files: Vec<_> = before.iter().filter(|n| owned_by(n, pid, 2)).collect();
    for f in &doomed_files {
        assert!(out.contains(f.as_str()), "{f} not listed: {out}");
    }
    let (ok, out, err) = shmwire(&root, &["cleanup", "--session", "n3"]);
    assert!(ok, "{out}{err}");
    let after = names(&dir);
    let removed: Vec<_> = before.difference(&after).collect();
    assert_eq!(removed, doomed_files, "{out}");

    // The loop.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let runs = Arc::new(AtomicUsize::new(0));
    let cleaners: Vec<_> = [
        vec!["cleanup", "--session", "n3"],
        vec!["cleanup", "--all-stale"],
        vec!["cleanup", "--all-stale", "--dry-run"],
    ]
    .into_iter()
    .map(|args| {
        let (stop, failures, runs, root) =
            (stop.clone(), failures.clone(), runs.clone(), root.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (ok, out, err) = shmwire(&root, &args);
                runs.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{args:?}: {out}{err}"));
                }
            }
        })
    })
    .collect();
    let mut call_failures = Vec::new();
    let mut prev: Option<Kid> = None;
    for round in 0..6u8 {
        let n = 10 + round;
        let kid = spawn_worker(&root, "n3", n);
        for x in 0..5 {
            for w in [1, n] {
                match square(&mut driver, w, x) {
                    Ok(v) if v == x * x => {}
                    other => call_failures.push(format!("round {round} worker {w}: {other:?}")),
                }
            }
        }
        if let Some(mut p) = prev.take() {
            p.sigkill();
        }
        prev = Some(kid);
    }
    drop(prev);
    // Keep calling the steady worker until the cleaners made enough runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while runs.load(Ordering::Relaxed) < 90 && Instant::now() < deadline {
        if let Err(e) = square(&mut driver, 1, 4) {
            call_failures.push(format!("steady worker: {e}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for c in cleaners {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    eprintln!(
        "{} cleanup runs, {} failed; {} failed calls",
        runs.load(Ordering::Relaxed),
        failures.len(),
        call_failures.len()
    );
    assert!(runs.load(Ordering::Relaxed) >= 90);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(call_failures.is_empty(), "{call_failures:#?}");
    drop(driver);
    session.remove_all().unwrap();
}

/// Reads everything a connection gets until EOF (bounded by `within`);
/// returns the text and when the EOF came.
fn read_until_closed(s: &mut std::net::TcpStream, within: Duration) -> (String, Instant) {
    s.set_read_timeout(Some(within)).unwrap();
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    (String::from_utf8_lossy(&text).into_owned(), Instant::now())
}

/// Silent and dripping (slow-loris) HTTP clients delay nobody: `/health`
/// answers within a second while 20 silent and 5 dripping connections are
/// open; each silent one gets `408` and is closed after `HTTP_TIMEOUT`
/// (500 ms); an over-long head gets `400`; at the cap of silent
/// connections a new client displaces the oldest (it gets `503`), so a
/// hog reopening its connections cannot keep health checks out.
#[test]
fn silent_and_slow_http_clients_delay_nobody() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("silent_and_slow_http_clients_delay_nobody");
    let scratch = proc_support::scratch("swn", "http");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "h1");
    let addr = node.addr.clone();
    let opened = Instant::now();
    let mut silent: Vec<std::net::TcpStream> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    // Slow-loris: one byte of a valid head every 100 ms, on threads.
    let drip_stop = Arc::new(AtomicBool::new(false));
    let drips: Vec<_> = (0..5)
        .map(|_| {
            let (addr, stop) = (addr.clone(), drip_stop.clone());
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(&addr).unwrap();
                for b in b"GET /health HTTP/1.0\r\nX-Slow: yes\r\n\r\n" {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let (text, _) = read_until_closed(&mut s, Duration::from_secs(5));
                text
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        let t = Instant::now();
        let text = http_get(&addr, "/health");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "/health took {:?}",
            t.elapsed()
        );
        assert!(text.starts_with("HTTP/1.0 200 OK"), "{text}");
    }
    // The silent ones are answered 408 and closed after the deadline.
    for s in &mut silent {
        let (text, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(
            text.starts_with("HTTP/1.0 408"),
            "silent client got {text:?}"
        );
        let after = closed - opened;
        assert!(
            after >= Duration::from_millis(450) && after < Duration::from_secs(3),
            "closed after {after:?}"
        );
    }
    drip_stop.store(true, Ordering::Relaxed);
    for d in drips {
        let text = d.join().unwrap();
        assert!(
            text.starts_with("HTTP/1.0 408"),
            "dripping client got {text:?}"
        );
    }
    // An over-long head: 400.
    {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(&[b'a'; 5000]);
        let (text, _) = read_until_closed(&mut s, Duration::from_secs(5));
        assert!(text.starts_with("HTTP/1.0 400"), "{text:?}");
    }
    // At the cap of silent connections a prompt client is still served:
    // it displaces the oldest silent one, which gets 503 (found by an
    // attack: one local process reopening 70 silent connections kept 96 %
    // of health checks at 503).
    let mut hold: Vec<std::net::TcpStream> = (0..shmwire::node::HTTP_MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        let t = Instant::now();
        let text = http_get(&addr, "/health");
        assert!(text.starts_with("HTTP/1.0 200 OK"), "{text:?}");
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    let (text, _) = read_until_closed(&mut hold[0], Duration::from_secs(5));
    assert!(
        text.starts_with("HTTP/1.0 503"),
        "oldest holder got {text:?}"
    );
    drop(hold);
    // A hog that reopens every connection the node closes, 80 at a time,
    // on its own thread: health checks every 20 ms are answered 200.
    let hog_stop = Arc::new(AtomicBool::new(false));
    let hog = {
        let (addr, stop) = (addr.clone(), hog_stop.clone());
        std::thread::spawn(move || {
            let mut held: Vec<std::net::TcpStream> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    s.set_nonblocking(true).unwrap();
                    let mut b = [0u8; 64];
                    (&*s).read(&mut b).is_err()
                });
                while held.len() < 80 {
                    match std::net::TcpStream::connect(&addr) {
                        Ok(s) => held.push(s),
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let text = http_get(&addr, "/health");
        statuses.push(text.lines().next().unwrap_or("").to_owned());
        std::thread::sleep(Duration::from_millis(20));
    }
    hog_stop.store(true, Ordering::Relaxed);
    hog.join().unwrap();
    let ok = statuses.iter().filter(|s| s.contains("200 OK")).count();
    assert!(ok >= 18, "health checks under a hog: {statuses:?}");
    node.kid.signal_and_wait("-TERM");
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("h1")));
}

/// The store's clients are listed under the store (issue 13 item 2): a
/// client process connected to the node's store appears in
/// `inspect --json` under `store.connections` with its pid, transport and
/// both rings' fill (and in the text form as a `client` line); once it
/// exits it is gone from both.
#[test]
fn store_clients_are_listed_with_their_rings_and_go_when_they_exit() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("store_clients_are_listed_with_their_rings_and_go_when_they_exit");
    let scratch = proc_support::scratch("swn", "storeconn");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "sc");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("store-client|{}|sc", root.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn store client");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut client = Kid(child);
    wait_for(&mut out, READY);
    let pid = u64::from(client.pid());
    let ours = |doc: &Value| -> Option<Value> {
        doc["sessions"][0]["store"]["connections"]
            .as_array()?
            .iter()
            .find(|c| c["pid"] == pid)
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (doc, conn) = loop {
        let doc = inspect_json(&root, "sc");
        if let Some(c) = ours(&doc) {
            break (doc, c);
        }
        assert!(Instant::now() < deadline, "client never listed: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    check_schema(&doc);
    assert_eq!(conn["transport"], "shm", "{conn}");
    assert!(conn["rx_ring"]["capacity"].as_u64().unwrap() > 0, "{conn}");
    assert!(conn["tx_ring"]["capacity"].as_u64().unwrap() > 0, "{conn}");
    // Listed once: under the store, not again under the node's entry.
    let node_entry = worker_json(&doc, "shmwire-node").unwrap();
    assert_eq!(
        node_entry["connections"],
        serde_json::json!([]),
        "{node_entry}"
    );
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "sc"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!("(pid {pid}) over shm: rx ring")),
        "{text}"
    );

    // The client exits normally: its connection goes.
    writeln!(stdin, "bye").unwrap();
    let deadline = Instant::now() + GUARD;
    while client.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "store client did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = inspect_json(&root, "sc");
        if ours(&doc).is_none() {
            check_schema(&doc);
            break;
        }
        assert!(Instant::now() < deadline, "client still listed: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, text, _) = shmwire(&root, &["inspect", "--session", "sc"]);
    assert!(!text.contains(&format!("(pid {pid})")), "{text}");
    node.kid.signal_and_wait("-TERM");
    assert!(names(&root.join("sc")).is_empty(), "leftovers");
}

/// A live worker whose statistics area is missing is shown so (issue 13):
/// one whose area file is removed while it lives is listed alive with
/// `stats_error` "no statistics area: … is missing", in JSON and text; one
/// started on a full tmpfs (root only: a 1 MiB tmpfs is mounted, skipped
/// with a printed reason otherwise) runs without an area and `inspect`
/// shows the reason it put in its directory entry (the file system is
/// full).
#[test]
fn a_live_worker_without_its_statistics_area_is_shown() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_live_worker_without_its_statistics_area_is_shown");
    let scratch = proc_support::scratch("swn", "noarea");
    let root = scratch.path().join("root");
    let _w3 = spawn_worker(&root, "na", 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker_json(&inspect_json(&root, "na"), "w3").unwrap()["stats_updated_unix_ms"].is_null()
    {
        assert!(Instant::now() < deadline, "w3 never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    let area = names(&root.join("na"))
        .into_iter()
        .find(|n| n.starts_with("stats-"))
        .expect("w3's area");
    // The worker makes its area again within a second
    // (`removed_or_replaced_session_files_of_live_processes_are_put_back`):
    // removed again if that happened before `inspect` looked.
    let mut tries = 0;
    let (doc, text) = loop {
        let _ = fs::remove_file(root.join("na").join(&area));
        let doc = inspect_json(&root, "na");
        let (ok, text, err) = shmwire(&root, &["inspect", "--session", "na"]);
        assert!(ok, "{err}");
        if worker_json(&doc, "w3").unwrap()["stats_updated_unix_ms"].is_null()
            && text.contains("no statistics area:")
        {
            break (doc, text);
        }
        tries += 1;
        assert!(
            tries < 10,
            "the area kept coming back before inspect: {doc:#}"
        );
    };
    check_schema(&doc);
    let w3 = worker_json(&doc, "w3").unwrap();
    assert_eq!(w3["live"], true, "{w3}");
    assert!(w3["stats_updated_unix_ms"].is_null(), "{w3}");
    let e = w3["stats_error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("no statistics area:") && e.contains(&area) && e.contains("missing"),
        "{w3}"
    );
    assert!(text.contains(&format!("    {e}")), "{text}");
    drop(_w3);

    // A full tmpfs: the worker starts, without an area, and says why.
    let fs = match proc_support::SmallTmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED (full tmpfs part): cannot mount a small tmpfs ({why})");
            return;
        }
    };
    let root = fs.path().join("root");
    // The session and its token exist before the file system is full.
    let session = Session::open_in(&root, "full").unwrap();
    shmwire::node::load_or_create_token(&session).unwrap();
    // Room for the worker's lock file and directory entry, not for its
    // area (a segment of several pages, reserved when it is made).
    fs.fill_leaving(12 << 10);
    let w4 = spawn_worker(&root, "full", 4);
    let doc = inspect_json(&root, "full");
    check_schema(&doc);
    let w = worker_json(&doc, "w4").unwrap();
    assert_eq!(w["live"], true, "{w}");
    assert!(w["stats_updated_unix_ms"].is_null(), "{w}");
    let e = w["stats_error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("no statistics area:") && e.contains("file system is full"),
        "{w}"
    );
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "full"]);
    assert!(ok, "{err}");
    assert!(text.contains("no statistics area:"), "{text}");
    drop(w4);
    drop(session);
}

/// Input (the attack on `4b2e27d`, low): on a full disk, a node whose
/// directory entry and session marker were removed failed to write them
/// again each round, and said so each round ("… said once while it
/// lasts", 34 lines in 3 s): each error named the new temporary file of
/// its round. Errors that differ only in numbers are now one error, said
/// once while errors last (root only: a 2 MiB tmpfs is mounted, skipped
/// with a printed reason otherwise); once there is room again the node
/// puts everything back and says the errors are over.
#[test]
fn a_full_disk_is_said_once_while_it_lasts() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_full_disk_is_said_once_while_it_lasts");
    let fs = match proc_support::SmallTmpfs::mount("2m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs ({why})");
            return;
        }
    };
    let root = fs.path().join("root");
    let (mut kid, _out, _ready) = proc_support::spawn_node_with(
        &root,
        &["--session", "full", "--store-capacity", "1M"],
        Stdio::piped(),
    );
    let err = BufReader::new(kid.0.stderr.take().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    std::thread::spawn(move || {
        for line in err.lines() {
            let Ok(line) = line else { return };
            l2.lock().unwrap().push(line);
        }
    });
    fs.fill_leaving(0);
    let dir = root.join("full");
    for n in names(&dir) {
        if n.ends_with(".entry") || n == ".shmwire-session" {
            fs::remove_file(dir.join(n)).unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let said: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("said once while it lasts"))
        .cloned()
        .collect();
    assert!(
        !said.is_empty() && said.iter().any(|l| l.contains("No space left")),
        "{said:#?}"
    );
    // One line per error: the entry once (whatever its temporary file's
    // name), the marker (and at most a couple more).
    assert!(said.len() <= 4, "{} lines: {said:#?}", said.len());
    assert_eq!(
        said.iter()
            .filter(|l| l.contains("directory entry") && !l.starts_with("shmwire node: store: "))
            .count(),
        1,
        "{said:#?}"
    );
    // The store's own entry: said once too, as what `/health` reports.
    assert!(
        said.iter()
            .filter(|l| l.starts_with("shmwire node: store: "))
            .count()
            <= 1,
        "{said:#?}"
    );
    fs::remove_file(fs.path().join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("cleanup: no errors any more"))
    {
        assert!(Instant::now() < deadline, "{:#?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(dir.join(".shmwire-session").exists());
    kid.signal_and_wait("-TERM");
}

/// A start that fails for want of inodes takes back the session directory
/// it made (found by the attack of 2026-12-02: with 1 inode left, a failed
/// start left an empty directory — no marker, so not even `cleanup`
/// removed it — and with 2, one holding only the marker; each failed run
/// took another inode until nothing could start). With 1 to 4 inodes left
/// under a session root, `shmwire node` fails with "No space left" and the
/// root is as it was; a root it made for itself is removed again.
#[test]
fn a_start_out_of_inodes_leaves_no_session_directory() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_start_out_of_inodes_leaves_no_session_directory");
    for leave in 1..=4 {
        let fs = match proc_support::SmallTmpfs::mount_opts("size=1m,nr_inodes=64") {
            Ok(fs) => fs,
            Err(why) => {
                eprintln!("SKIPPED: cannot mount a small tmpfs ({why})");
                return;
            }
        };
        let root = fs.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        fs.fill_inodes_leaving(leave);
        let (ok, _, err) = shmwire(&root, &["node", "--session", "inodes"]);
        assert!(!ok, "{leave} inodes left: the node started");
        assert!(err.contains("No space left"), "{leave} inodes left: {err}");
        assert!(
            names(&root).is_empty(),
            "{leave} inodes left: {err}; left behind {:?} / {:?}",
            names(&root),
            names(&root.join("inodes"))
        );
        // A root the failed start made goes too.
        let missing = fs.path().join("new-root");
        fs::remove_dir(&root).unwrap();
        let (ok, _, err) = shmwire(&missing, &["node", "--session", "inodes"]);
        assert!(
            !ok && err.contains("No space left"),
            "{leave} inodes left: {err}"
        );
        assert!(
            !missing.exists(),
            "{leave} inodes left: {err}; the root made stays"
        );
    }
}

/// One node per session by the kernel's lock, not by the entries (issue
/// 13): with the live node's directory entry scribbled (and its lock
/// file's text too), a second `shmwire node` of the session is refused
/// with an error naming the live node's pid; after the first is SIGKILLed
/// a new one starts (and cleans up the scribbled leftovers).
#[test]
fn a_second_node_is_refused_by_the_lock_whatever_the_entries_say() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_second_node_is_refused_by_the_lock_whatever_the_entries_say");
    let scratch = proc_support::scratch("swn", "onenode");
    let root = scratch.path().join("root");
    let dir = root.join("one");
    let mut first = start_node(&root, "one");
    let entry = names(&dir)
        .into_iter()
        .find(|n| {
            n.ends_with(".entry")
                && fs::read_to_string(dir.join(n)).is_ok_and(|t| t.contains("name=shmwire-node"))
        })
        .expect("the node's entry");
    fs::write(dir.join(&entry), [0xA5_u8; 300]).unwrap();
    fs::write(dir.join(".node.lock"), "12345\n").unwrap();
    let (ok, out, err) = shmwire(
        &root,
        &["node", "--session", "one", "--store-capacity", "1M"],
    );
    assert!(!ok, "a second node started: {out}{err}");
    assert!(
        err.contains("another node runs in session one")
            && err.contains(&format!("pid {}", first.kid.pid())),
        "{err}"
    );
    // The first node is untouched and still serves.
    let health = http_get(&first.addr, "/health");
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");

    // SIGKILL it: a new node starts in the same session.
    first.kid.sigkill();
    let mut second = start_node(&root, "one");
    let doc = inspect_json(&root, "one");
    check_schema(&doc);
    assert!(doc["sessions"][0]["node"].is_string(), "{doc:#}");
    assert!(!dir.join(&entry).exists(), "the dead node's entry stays");
    assert!(
        doc["sessions"][0]["store"]["capacity"].as_u64() > Some(0),
        "{doc:#}"
    );
    let health = http_get(&second.addr, "/health");
    assert!(health.starts_with("HTTP/1.0 200"), "{health}");
    second.kid.signal_and_wait("-TERM");
    assert!(names(&dir).is_empty(), "leftovers: {:?}", names(&dir));
}

/// Errors keep their cause (issue 13): a node started in a session whose
/// file system is full (root only: a small tmpfs is mounted, skipped with a
/// printed reason otherwise) fails, and its message carries the OS error
/// behind it (`No space left on device`), not only "write entry …".
#[test]
fn a_failing_node_prints_the_os_error_behind_its_message() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_failing_node_prints_the_os_error_behind_its_message");
    let fs = match proc_support::SmallTmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs ({why})");
            return;
        }
    };
    let root = fs.path().join("root");
    let session = Session::open_in(&root, "full").unwrap();
    shmwire::node::load_or_create_token(&session).unwrap();
    fs.fill_leaving(0);
    let (ok, out, err) = shmwire(
        &root,
        &["node", "--session", "full", "--store-capacity", "64K"],
    );
    assert!(!ok, "the node started on a full file system: {out}");
    assert!(
        err.starts_with("shmwire: ") && err.contains("No space left on device"),
        "{err}"
    );
    drop(session);
}

/// Bad node arguments are refused with errors that say what and where
/// (found by an attack: a zero capacity was "not a size", a missing
/// fallback directory and a taken object port were not named).
#[test]
fn bad_node_arguments_name_what_is_wrong() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("bad_node_arguments_name_what_is_wrong");
    let scratch = proc_support::scratch("swn", "badargs");
    let root = scratch.path().join("root");
    let (ok, _, err) = shmwire(&root, &["node", "--session", "a", "--store-capacity", "0"]);
    assert!(!ok && err.contains("must be above 0"), "{err}");
    // Below one 64-byte unit or above the allocator's 256 GiB - 64 bytes:
    // refused by the parser like 0 (was a runtime store error for 1 and
    // 256G, whose message said "at most 256 GiB").
    for cap in ["1", "63", "256G"] {
        let (ok, _, err) = shmwire(&root, &["node", "--session", "a", "--store-capacity", cap]);
        assert!(!ok && err.contains("--store-capacity"), "{cap}: {err}");
        assert!(
            err.contains("at least 64") || err.contains("at most 274877906880"),
            "{err}"
        );
    }
    let (ok, _, err) = shmwire(
        &root,
        &["node", "--session", "a", "--store-metadata-capacity", "64K"],
    );
    assert!(
        !ok && err.contains("--store-metadata-capacity") && err.contains("at least 66432"),
        "{err}"
    );
    let (ok, _, err) = shmwire(
        &root,
        &["node", "--session", "a", "--store-pull-capacity", "0"],
    );
    assert!(
        !ok && err.contains("--store-pull-capacity") && err.contains("above 0"),
        "{err}"
    );
    let missing = scratch.path().join("no-such-dir");
    let missing = missing.to_str().unwrap();
    let (ok, _, err) = shmwire(
        &root,
        &[
            "node",
            "--session",
            "b",
            "--store-capacity",
            "1M",
            "--fallback-dir",
            missing,
        ],
    );
    assert!(!ok && err.contains(missing), "{err}");
    // A directory where no file can be made (found by an attack: accepted
    // at start): refused, naming it and the OS error.
    let (ok, _, err) = shmwire(
        &root,
        &[
            "node",
            "--session",
            "d",
            "--store-capacity",
            "1M",
            "--fallback-dir",
            "/proc",
        ],
    );
    assert!(
        !ok && err.contains("cannot create a file in /proc: ") && err.contains("(os error"),
        "{err}"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, err) = shmwire(
        &root,
        &[
            "node",
            "--session",
            "c",
            "--store-capacity",
            "1M",
            "--object-listen",
            &addr,
        ],
    );
    assert!(!ok && err.contains(&addr), "{err}");
    // Nothing of the refused nodes is left in the root.
    for s in ["a", "b", "c", "d"] {
        let dir = root.join(s);
        assert!(
            !dir.exists() || names(&dir).is_empty(),
            "{s}: {:?}",
            names(&dir)
        );
    }
}

/// A store capacity above the host's available memory is refused at start
/// with an error naming `MemAvailable`: the arena is a memfd, which no
/// `/dev/shm` limit covers, so reserving it would not fail but wake the
/// OOM killer (found by an attack: it killed another session's node).
/// The capacity asked for is twice `MemAvailable`, within the node's
/// 256 GiB limit (skipped, with a printed reason, on larger hosts).
#[test]
fn a_store_capacity_above_available_memory_is_refused_not_oom_killed() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_store_capacity_above_available_memory");
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemAvailable in /proc/meminfo");
    let ask = kib * 1024 * 2;
    if ask > 255 << 30 {
        eprintln!("SKIPPED: {ask} bytes exceed the node's store capacity limit");
        return;
    }
    let scratch = proc_support::scratch("swn", "oomcap");
    let root = scratch.path().join("root");
    let cap = ask.to_string();
    let t0 = Instant::now();
    let (ok, out, err) = shmwire(
        &root,
        &["node", "--session", "huge", "--store-capacity", &cap],
    );
    assert!(!ok, "the node started with {ask} bytes of store: {out}");
    assert!(
        err.contains("MemAvailable") && err.contains(&cap),
        "error does not say why: {err}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

/// `/inspect` runs off the HTTP loop (issue 13): with 1000 live directory
/// entries of 60 KiB each (locked by this process, so every inspect reads
/// them all; ~40 ms per report in a debug build) and 16 clients asking
/// `/inspect` back to back, `/health` still answers each time within
/// 250 ms (measured: under 10 ms). When `/inspect` ran on the loop's
/// thread `/health` waited for the reports queued before it (measured:
/// 570 ms). The `/inspect` answers are whole.
#[test]
fn health_is_not_delayed_by_slow_inspects() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("health_is_not_delayed_by_slow_inspects");
    let scratch = proc_support::scratch("swn", "slowinsp");
    let root = scratch.path().join("root");
    let dir = root.join("si");
    let mut node = start_node(&root, "si");
    let pad = "a".repeat(60 << 10);
    let mut held = Vec::new();
    for i in 0..1000u32 {
        let mut id = [0u8; 28];
        id[..4].copy_from_slice(&i.to_le_bytes());
        id[4] = 0xEE;
        let id = WorkerId::from_array(id);
        let path = dir.join(format!(".w-{id}.entry"));
        let f = fs::File::create(&path).unwrap();
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        fs::write(
            &path,
            format!("worker_id={id}\npid=1\nname=fake{i}\npad={pad}\n"),
        )
        .unwrap();
        held.push(f);
    }
    let t0 = Instant::now();
    let page = http_get(&node.addr, "/inspect");
    let one = t0.elapsed();
    assert!(
        page.contains("(fake999)"),
        "{}",
        &page[..page.len().min(300)]
    );
    eprintln!("one /inspect: {one:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (addr, stop, served) = (node.addr.clone(), stop.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let page = http_get(&addr, "/inspect");
                    assert!(
                        page.starts_with("HTTP/1.0 200") && page.contains("(fake999)"),
                        "{}",
                        &page[..page.len().min(300)]
                    );
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let health = http_get(&node.addr, "/health");
        worst = worst.max(t.elapsed());
        assert!(health.starts_with("HTTP/1.0 200"), "{health}");
        std::thread::sleep(Duration::from_millis(30));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    eprintln!(
        "worst /health {worst:?} with {} inspects served",
        served.load(Ordering::Relaxed)
    );
    assert!(served.load(Ordering::Relaxed) >= 8);
    assert!(
        worst < Duration::from_millis(250),
        "/health took {worst:?} (one /inspect takes {one:?})"
    );
    drop(held);
    node.kid.signal_and_wait("-TERM");
    assert!(names(&dir).is_empty(), "leftovers: {:?}", names(&dir));
}

/// Sends `request` (then half-closes), returns the whole answer.
fn http_raw(addr: &str, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    read_until_closed(&mut s, Duration::from_secs(5)).0
}

/// A malformed request is a client error: `400`, not `405` (found by an
/// attack: an empty request got `405`). Empty (half-closed at once, or an
/// empty line), garbage, a missing or bad version, more words, an
/// over-long line: each `400`. A well-formed request with another method
/// still gets `405`; a client that connects and closes harms nothing.
#[test]
fn malformed_http_requests_get_400() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("malformed_http_requests_get_400");
    let scratch = proc_support::scratch("swn", "http400");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "h4");
    let addr = node.addr.clone();
    let long = format!("GET /{} HTTP/1.0\r\n\r\n", "x".repeat(5000));
    for request in [
        &b""[..],
        b"\r\n\r\n",
        b"\n\n",
        b"garbage\r\n\r\n",
        b"GET /health\r\n\r\n",
        b"GET /health HTTX/1.0\r\n\r\n",
        b"GET /health HTTP/1.0 more\r\n\r\n",
        b"GET  /health HTTP/1.0\r\n\r\n",
        b"G(T /health HTTP/1.0\r\n\r\n",
        b"GET /he\x01alth HTTP/1.0\r\n\r\n",
        b"GET /\xff HTTP/1.0\r\n\r\n",
        long.as_bytes(),
    ] {
        let text = http_raw(&addr, request);
        assert!(
            text.starts_with("HTTP/1.0 400 Bad Request"),
            "{:?} got {text:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(http_raw(&addr, b"POST /health HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
    assert!(http_raw(&addr, b"GET /health HTTP/1.1\n\n").starts_with("HTTP/1.0 200 OK"));
    assert!(http_raw(&addr, b"GET /nothing HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    // A query names the same path; another major version is refused (was
    // 404 and 200: found by an attack).
    assert!(http_raw(&addr, b"GET /health?x=1 HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200 OK"));
    assert!(http_raw(&addr, b"GET /nothing?x HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    for v in ["0.9", "2.0", "9.9"] {
        let request = format!("GET /health HTTP/{v}\r\n\r\n");
        let text = http_raw(&addr, request.as_bytes());
        assert!(text.starts_with("HTTP/1.0 505"), "HTTP/{v}: {text:?}");
    }
    for _ in 0..5 {
        drop(std::net::TcpStream::connect(&addr).unwrap());
    }
    assert!(http_get(&addr, "/health").starts_with("HTTP/1.0 200 OK"));
    node.kid.signal_and_wait("-TERM");
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("h4")));
}

/// A `.node.lock` that is not a regular file (found by an attack: a
/// symbolic link gave `ELOOP` and a bare OS error) is never followed: the
/// node is refused with an error naming the path, what it is and what to
/// remove, the link's target is untouched, and once it is removed the
/// next node starts. A directory and a FIFO there are named so too.
#[test]
fn a_node_lock_that_is_not_a_file_is_named_and_recoverable() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_node_lock_that_is_not_a_file_is_named_and_recoverable");
    let scratch = proc_support::scratch("swn", "nlock");
    let root = scratch.path().join("root");
    let session = Session::open_in(&root, "nl").unwrap();
    let lock = root.join("nl").join(".node.lock");
    let target = scratch.path().join("target");
    fs::write(&target, b"precious\n").unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let args = ["node", "--session", "nl", "--store-capacity", "1M"];
    let (ok, _, err) = shmwire(&root, &args);
    let path = lock.display().to_string();
    assert!(!ok, "{err}");
    assert!(
        err.contains(&format!(
            "{path} is a symbolic link (never followed), not a node lock file"
        )) && err.contains(&format!("remove it (rm {path})")),
        "{err}"
    );
    assert_eq!(fs::read(&target).unwrap(), b"precious\n");
    assert!(lock.is_symlink(), "the refused node removed or replaced it");
    fs::remove_file(&lock).unwrap();
    fs::create_dir(&lock).unwrap();
    let (ok, _, err) = shmwire(&root, &args);
    assert!(
        !ok && err.contains(&format!("{path} is a directory")) && err.contains("rm -r "),
        "{err}"
    );
    fs::remove_dir(&lock).unwrap();
    let st = Command::new("mkfifo").arg(&lock).status().unwrap();
    assert!(st.success());
    let (ok, _, err) = shmwire(&root, &args);
    assert!(
        !ok && err.contains(&format!("{path} is a FIFO")) && err.contains(&format!("(rm {path})")),
        "{err}"
    );
    fs::remove_file(&lock).unwrap();
    // Removed as the error says: the next node starts and stops cleanly.
    let mut node = start_node(&root, "nl");
    assert!(http_get(&node.addr, "/health").starts_with("HTTP/1.0 200 OK"));
    node.kid.signal_and_wait("-TERM");
    session.remove_all().unwrap();
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("nl")));
}

/// A live worker's statistics area whose header's owner tag is rewritten
/// to name a dead process (found by an attack: the node's cleanup then
/// removed a live area for good) is kept: every shmwire segment name
/// carries its creator's pid, and a tag that disagrees with a live named
/// process decides nothing.
#[test]
fn a_live_area_with_a_rewritten_owner_tag_is_not_removed() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_live_area_with_a_rewritten_owner_tag_is_not_removed");
    let scratch = proc_support::scratch("swn", "tag");
    let root = scratch.path().join("root");
    let _w3 = spawn_worker(&root, "tg", 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker_json(&inspect_json(&root, "tg"), "w3").unwrap()["stats_updated_unix_ms"].is_null()
    {
        assert!(Instant::now() < deadline, "w3 never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    let area = names(&root.join("tg"))
        .into_iter()
        .find(|n| n.starts_with("stats-"))
        .expect("w3's area");
    // The creator tag sits at bytes 48..112 of the header (NUL padded).
    let mut tag = [0u8; 64];
    let dead = b"proc-99999-deadbeef.lock";
    tag[..dead.len()].copy_from_slice(dead);
    let f = fs::OpenOptions::new()
        .write(true)
        .open(root.join("tg").join(&area))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &tag, 48).unwrap();
    drop(f);
    let (ok, out, err) = shmwire(&root, &["cleanup", "--session", "tg"]);
    assert!(ok, "{out}{err}");
    assert!(
        names(&root.join("tg")).contains(&area),
        "the live area was removed: {out}"
    );
    let doc = inspect_json(&root, "tg");
    let w3 = worker_json(&doc, "w3").unwrap();
    assert_eq!(w3["live"], true, "{w3}");
}

/// A session token that is a FIFO (found by an attack: the node blocked in
/// `open` forever, and one SIGTERM did not end it) or a symlink is never
/// opened for good or followed. While another process of the session lives
/// — here the test process, which keeps no token — a starting node waits
/// `TOKEN_REPAIR_WAIT` (3 s) for it to be put back and then refuses to
/// start, saying so: a new token would cut every process started from now
/// on off from the live ones (the attack on `de6e82d` split a session so).
/// With nobody in the session, the node replaces the damage at once and
/// starts (before, every start failed, naming the file, until someone
/// removed it by hand; the re-attack on `8744a0d`). A link's target is
/// never touched.
#[test]
fn a_session_token_that_is_not_a_file_is_replaced_not_waited_on() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_session_token_that_is_not_a_file_is_replaced_not_waited_on");
    let scratch = proc_support::scratch("swn", "tok");
    let root = scratch.path().join("root");
    let token = root.join("tk").join(".token");
    let args = ["node", "--session", "tk", "--store-capacity", "1M"];
    // A live process that keeps no token: refused after the wait.
    let session = Session::open_in(&root, "tk").unwrap();
    let target = scratch.path().join("elsewhere");
    fs::write(&target, [7u8; 16]).unwrap();
    std::os::unix::fs::symlink(&target, &token).unwrap();
    let t = Instant::now();
    let (ok, _, err) = shmwire(&root, &args);
    assert!(
        !ok && err.contains(&token.display().to_string()) && err.contains("none put it back"),
        "{err}"
    );
    assert!(t.elapsed() >= Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(fs::read(&target).unwrap(), [7u8; 16]);
    session.remove_all().unwrap();
    // Nobody lives in the session (its one process has exited): the
    // damage is replaced at once.
    let made = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("open-session|{}|tk", root.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let st = Command::new("mkfifo").arg(&token).status().unwrap();
    assert!(st.success());
    let t = Instant::now();
    let mut node = start_node(&root, "tk");
    assert!(http_get(&node.addr, "/health").starts_with("HTTP/1.0 200 OK"));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let md = fs::symlink_metadata(&token).unwrap();
    assert!(md.is_file() && md.len() == 16, "{md:?}");
    node.kid.signal_and_wait("-TERM");
}

/// A node whose session directory is removed under it (found by an attack:
/// it logged `cleanup: list directory: reading the worker directory …`
/// without a cause every 100 ms, and on SIGTERM said the directory was
/// "kept") stops by itself at its next round: exit status 1, one error
/// naming the directory, no repeated cleanup errors, and a last line that
/// says the directory is gone (already, or removed by the node's last
/// pass when it saw the removal before the test finished it).
#[test]
fn a_removed_session_directory_stops_the_node() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_removed_session_directory_stops_the_node");
    let scratch = proc_support::scratch("swn", "gone");
    let root = scratch.path().join("root");
    let (mut kid, out, _) = proc_support::spawn_node_with(
        &root,
        &["--session", "g1", "--store-capacity", "1M"],
        Stdio::piped(),
    );
    let err = kid.0.stderr.take().unwrap();
    let dir = root.join("g1");
    // The node puts back a file of its own (its lock) that the removal took
    // first, and the final rmdir then finds the directory not empty (CI of
    // c18bbac): remove again until it is gone.
    let removing = Instant::now();
    loop {
        match fs::remove_dir_all(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    && removing.elapsed() < Duration::from_secs(5) =>
            {
                continue
            }
            Err(e) => panic!("removing {}: {e}", dir.display()),
        }
    }
    let (text, rest) = stopped_for_its_directory(&mut kid, err, out, &dir, "removed");
    assert!(!text.contains("cleanup:"), "{text}");
    // The node may see the directory go while this test's removal is still
    // retrying (`DirectoryNotEmpty` above): its last pass then finds what is
    // left and removes it itself (CI of a0850ef). Either way the last line
    // says the directory is gone, never "kept".
    assert!(
        rest.last().is_some_and(|l| {
            l.contains("session directory already gone") || l.contains("session directory removed")
        }),
        "{rest:?}"
    );
    assert!(!dir.exists());
}

/// A names lock (`.names.lock`) that is not a regular file refuses every
/// named worker of the session, and the node's `/health` says so while it
/// lasts (the attack on `e3a6d33`: `200 ok` with it a FIFO, while a
/// damaged claim file did make it `503`). Here the lock is replaced by a
/// FIFO under a running node: `/health` turns `503` naming it within the
/// node's round, and `200` again once it is removed.
#[test]
fn a_names_lock_that_is_not_a_file_makes_health_say_so() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_names_lock_that_is_not_a_file_makes_health_say_so");
    let scratch = proc_support::scratch("swn", "nlock");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "h1");
    let lock = root.join("h1").join(".names.lock");
    let health_within = |want: &str, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let h = http_get(&node.addr, "/health");
            if h.starts_with(want) && h.contains(what) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "wanted {want} with {what:?}: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    health_within("HTTP/1.0 200", "ok h1");
    let _ = fs::remove_file(&lock);
    let st = Command::new("mkfifo").arg(&lock).status().unwrap();
    assert!(st.success());
    let h = health_within("HTTP/1.0 503", "not a names lock file");
    assert!(h.contains(".names.lock is a FIFO"), "{h}");
    fs::remove_file(&lock).unwrap();
    health_within("HTTP/1.0 200", "ok h1");
    node.kid.signal_and_wait("-TERM");
}

/// Waits (at most 5 s) for a node whose session directory `dir` went
/// (`how`: removed, replaced by a file, …) to stop, and checks that it
/// stopped with status 1 saying so (`docs/node.md`, step 4). Returns its
/// stderr and its stdout lines.
fn stopped_for_its_directory(
    kid: &mut Kid,
    mut err: std::process::ChildStderr,
    out: BufReader<std::process::ChildStdout>,
    dir: &Path,
    how: &str,
) -> (String, Vec<String>) {
    let t = Instant::now();
    let status = loop {
        if let Some(st) = kid.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{how}: the node did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut text = String::new();
    err.read_to_string(&mut text).unwrap();
    let rest: Vec<String> = out.lines().map_while(Result::ok).collect();
    assert_eq!(status.code(), Some(1), "{how}: {text}");
    assert!(
        text.contains(&format!(
            "the session directory {} was removed, renamed or replaced under the node",
            dir.display()
        )),
        "{how}: {text}"
    );
    (text, rest)
}

/// A session directory replaced under the node by a regular file or a
/// symlink (to another directory) stops the node as a removed one does,
/// with the same words (the attack on `e3a6d33`: the node's last pass
/// opened the path, got `ENOTDIR`, and the node exited with only
/// "session: open …: Not a directory (os error 20)").
#[test]
fn a_session_directory_replaced_by_a_file_or_a_symlink_stops_the_node_saying_so() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog(
        "a_session_directory_replaced_by_a_file_or_a_symlink_stops_the_node_saying_so",
    );
    for how in ["file", "symlink"] {
        let scratch = proc_support::scratch("swn", how);
        let root = scratch.path().join("root");
        let (mut kid, out, _) = proc_support::spawn_node_with(
            &root,
            &["--session", "r1", "--store-capacity", "1M"],
            Stdio::piped(),
        );
        let err = kid.0.stderr.take().unwrap();
        let dir = root.join("r1");
        fs::rename(&dir, root.join("r1.old")).unwrap();
        if how == "file" {
            fs::write(&dir, b"not a directory").unwrap();
        } else {
            let other = scratch.path().join("other");
            fs::create_dir(&other).unwrap();
            std::os::unix::fs::symlink(&other, &dir).unwrap();
        }
        let (text, rest) = stopped_for_its_directory(&mut kid, err, out, &dir, how);
        assert!(!text.contains("Not a directory"), "{how}: {text}");
        assert!(
            rest.last()
                .is_some_and(|l| l.contains("session directory already gone")),
            "{how}: {rest:?}"
        );
        // What replaced it is left alone.
        assert!(fs::symlink_metadata(&dir).is_ok(), "{how}");
    }
}

/// A cleanup error that lasts is printed once with its OS cause, not every
/// round (found by an attack: the node repeated an error every 100 ms):
/// a dead worker's entry made immutable (`chattr +i`: its unlink fails
/// with `EPERM` every round; root and a file system with the flag, else
/// skipped with a printed reason) gives one `cleanup: unlink …: Operation
/// not permitted` line over ~1 s (10 rounds); once the flag is cleared,
/// one `no errors any more` line and the entry is gone.
#[test]
fn a_lasting_cleanup_error_is_printed_once_with_its_cause() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_lasting_cleanup_error_is_printed_once_with_its_cause");
    let scratch = proc_support::scratch("swn", "once");
    let root = scratch.path().join("root");
    let (mut kid, out, _) = proc_support::spawn_node_with(
        &root,
        &["--session", "o1", "--store-capacity", "1M"],
        Stdio::piped(),
    );
    let err = kid.0.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            l2.lock().unwrap().push(line);
        }
    });
    std::thread::spawn(move || for _ in out.lines() {});
    // A dead worker's entry: a regular file nobody holds a lock on.
    let entry = root
        .join("o1")
        .join(format!(".w-{}.entry", worker_id(9).hex()));
    fs::write(&entry, b"dead\n").unwrap();
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&entry)
            .output()
            .map(|o| o.status.success())
    };
    if !matches!(chattr("+i"), Ok(true)) {
        eprintln!("skipped: chattr +i failed (not root, or the file system has no such flag)");
        let _ = fs::remove_file(&entry);
        return;
    }
    // On every way out (a failed assertion too) the flag goes, so the
    // scratch directory can be removed.
    struct Mutable(std::path::PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
    }
    let _mutable = Mutable(entry.clone());
    std::thread::sleep(Duration::from_millis(1000));
    let unlink_errors = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("cleanup: unlink") && l.contains(".entry"))
            .count()
    };
    {
        let l = lines.lock().unwrap();
        assert_eq!(unlink_errors(&l), 1, "{l:#?}");
        assert!(
            l.iter()
                .any(|l| l.contains("Operation not permitted (os error 1)")),
            "{l:#?}"
        );
    }
    assert!(matches!(chattr("-i"), Ok(true)));
    let t = Instant::now();
    while entry.exists()
        || !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("no errors any more"))
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{:#?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = Command::new("kill")
        .args(["-TERM", &kid.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(kid.0.wait().unwrap().success());
    reader.join().unwrap();
    let l = lines.lock().unwrap();
    assert_eq!(unlink_errors(&l), 1, "{l:#?}");
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("o1")));
}

/// The live node's directory entry file (the one naming `shmwire-node`).
fn node_entry(dir: &Path) -> String {
    names(dir)
        .into_iter()
        .find(|n| {
            n.ends_with(".entry")
                && fs::read_to_string(dir.join(n)).is_ok_and(|t| t.contains("name=shmwire-node"))
        })
        .expect("the node's entry")
}

/// Waits (bounded) until `inspect` shows the session's store figures.
fn wait_for_store(root: &Path, session: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = inspect_json(root, session);
        if !doc["sessions"][0]["store"].is_null() {
            return doc;
        }
        assert!(Instant::now() < deadline, "no store figures: {doc:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A live node whose directory entry is scribbled over (found by an
/// attack: `inspect` said "node not running" while the node held
/// `.node.lock`) is shown running, by its lock, with its entry named
/// unreadable and why; its store figures are still found (its area, by
/// the lock holder's pid). Once it is SIGKILLed it is not running.
#[test]
fn a_live_node_with_a_scribbled_entry_is_shown_running() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_live_node_with_a_scribbled_entry_is_shown_running");
    let scratch = proc_support::scratch("swn", "scrib");
    let root = scratch.path().join("root");
    let dir = root.join("sc");
    let mut node = start_node(&root, "sc");
    let pid = node.kid.pid();
    wait_for_store(&root, "sc");
    let entry = node_entry(&dir);
    // Same file (the entry's lock stays held), garbage text.
    fs::write(dir.join(&entry), [0xA5_u8; 300]).unwrap();

    let doc = inspect_json(&root, "sc");
    check_schema(&doc);
    let s = &doc["sessions"][0];
    assert_eq!(s["node_running"], true, "{s:#}");
    assert_eq!(s["node_pid"], pid, "{s:#}");
    assert!(s["node"].is_null(), "{s:#}");
    let e = s["node_error"].as_str().unwrap_or_default();
    assert!(
        e.contains(".node.lock") && e.contains(&entry) && e.contains("unreadable: not UTF-8"),
        "{s:#}"
    );
    let u = s["unreadable_entries"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{s:#}");
    assert_eq!(u[0]["node"], true);
    assert_eq!(u[0]["live"], true);
    assert_eq!(u[0]["pid"], pid);
    assert!(u[0]["path"].as_str().unwrap().ends_with(&entry));
    assert!(s["store"]["capacity"].as_u64() > Some(0), "{s:#}");
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "sc"]);
    assert!(ok, "{err}");
    let first = text.lines().next().unwrap();
    assert!(
        first.contains(&format!(
            "node running (it holds {}",
            dir.join(".node.lock").display()
        )) && first.contains(&format!("pid {pid})"))
            && first.contains(&entry)
            && first.contains("not UTF-8"),
        "{text}"
    );
    assert!(!text.contains("not running"), "{text}");
    // Named once: in the first line, not again as a stray entry.
    assert_eq!(text.matches(&entry).count(), 1, "{text}");
    // The node's own /inspect says the same.
    let http = http_get(&node.addr, "/inspect");
    assert!(
        http.contains("node running (") && !http.contains("not running"),
        "{http}"
    );

    // Dead: the lock is free, the node is not running. Stopped first and
    // scribbled again: the node puts its entry back every round, and under
    // load one round fell between the scribble above and the kill (the
    // entry was whole again when inspected).
    let stopped = Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    fs::write(dir.join(&entry), [0xA5_u8; 300]).unwrap();
    node.kid.sigkill();
    let doc = inspect_json(&root, "sc");
    check_schema(&doc);
    let s = &doc["sessions"][0];
    assert_eq!(s["node_running"], false, "{s:#}");
    assert!(s["node_error"].is_null() && s["store"].is_null() && s["store_error"].is_null());
    let u = s["unreadable_entries"].as_array().unwrap();
    assert!(
        u.len() == 1 && u[0]["live"] == false && u[0]["node"] == false,
        "{s:#}"
    );
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "sc"]);
    assert!(ok, "{err}");
    assert!(
        text.lines().next().unwrap().contains("node not running"),
        "{text}"
    );
    assert!(text.contains("unreadable (its owner is dead)"), "{text}");
}

/// A live worker's corrupt directory entry (found by an attack: shown as
/// if there were no such worker) is reported unreadable with the file and
/// the cause, by `inspect` (text and JSON) and by a lookup of its id; a
/// FIFO under its name likewise. An absent entry and a dead worker's are
/// shown as before.
#[test]
fn a_corrupt_worker_entry_is_reported_unreadable_not_absent() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_corrupt_worker_entry_is_reported_unreadable_not_absent");
    let scratch = proc_support::scratch("swn", "corrupt");
    let root = scratch.path().join("root");
    let dir = root.join("ce");
    let w5 = spawn_worker(&root, "ce", 5);
    let mut w6 = spawn_worker(&root, "ce", 6);
    let entry = format!(".w-{}.entry", worker_id(5));
    fs::write(dir.join(&entry), "worker_id=xyz\npid=1\n").unwrap();

    let doc = inspect_json(&root, "ce");
    check_schema(&doc);
    let s = &doc["sessions"][0];
    assert!(worker_json(&doc, "w5").is_none(), "{s:#}");
    let u = s["unreadable_entries"].as_array().unwrap();
    assert_eq!(u.len(), 1, "{s:#}");
    assert!(u[0]["path"].as_str().unwrap().ends_with(&entry), "{s:#}");
    assert_eq!(u[0]["live"], true);
    assert_eq!(u[0]["pid"], w5.pid());
    assert_eq!(u[0]["node"], false);
    assert_eq!(u[0]["error"], "malformed worker_id value \"xyz\"");
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "ce"]);
    assert!(ok, "{err}");
    let line = format!(
        "  directory entry {} unreadable (held by live pid {}): malformed worker_id value \"xyz\"",
        dir.join(&entry).display(),
        w5.pid()
    );
    assert!(text.contains(&line), "{text}");
    let (ok, text, err) = shmwire(&root, &["inspect"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("1 worker(s) (1 live), 1 unreadable directory entry,"),
        "{text}"
    );
    // A lookup of its id says so too, not "no live worker".
    let session = Session::attach_in(&root, "ce").unwrap();
    let directory = shmwire::node::Directory::for_session(&session).unwrap();
    match directory.lookup(&worker_id(5)) {
        Err(e @ shmwire::transport::LookupError::Unreadable { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&entry) && m.contains("malformed worker_id"),
                "{m}"
            );
        }
        other => panic!("lookup of a live worker's corrupt entry: {other:?}"),
    }

    // A FIFO in its place: named as such, its lock not probed.
    fs::remove_file(dir.join(&entry)).unwrap();
    let st = Command::new("mkfifo")
        .arg(dir.join(&entry))
        .status()
        .unwrap();
    assert!(st.success());
    let doc = inspect_json(&root, "ce");
    check_schema(&doc);
    let u = doc["sessions"][0]["unreadable_entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(u.len(), 1, "{doc:#}");
    assert!(u[0]["live"].is_null() && u[0]["pid"].is_null(), "{doc:#}");
    assert!(u[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("a FIFO, not a regular file"));
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "ce"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("unreadable (its lock cannot be probed): a FIFO"),
        "{text}"
    );

    // Absent: not listed at all; dead: listed dead, as before.
    fs::remove_file(dir.join(&entry)).unwrap();
    w6.sigkill();
    let doc = inspect_json(&root, "ce");
    check_schema(&doc);
    assert!(doc["sessions"][0]["unreadable_entries"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(worker_json(&doc, "w5").is_none());
    assert_eq!(worker_json(&doc, "w6").unwrap()["live"], false, "{doc:#}");
    assert!(matches!(
        directory.lookup(&worker_id(5)),
        Err(shmwire::transport::LookupError::NoSuchWorker { .. })
    ));
    drop(w5);
}

/// The node's statistics area removed while it runs (found by an attack:
/// `inspect` silently dropped the store section): the store's figures
/// are said to be unavailable, with why, in text and JSON.
#[test]
fn a_missing_node_area_says_the_store_figures_are_unavailable() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_missing_node_area_says_the_store_figures_are_unavailable");
    let scratch = proc_support::scratch("swn", "noarea-node");
    let root = scratch.path().join("root");
    let dir = root.join("nn");
    let mut node = start_node(&root, "nn");
    let doc = wait_for_store(&root, "nn");
    check_schema(&doc);
    assert!(doc["sessions"][0]["store_error"].is_null(), "{doc:#}");
    let area = names(&dir)
        .into_iter()
        .find(|n| n.starts_with(&format!("stats-{}-", node.kid.pid())))
        .expect("the node's area");
    fs::remove_file(dir.join(&area)).unwrap();
    let doc = inspect_json(&root, "nn");
    check_schema(&doc);
    let s = &doc["sessions"][0];
    assert!(s["node"].is_string() && s["store"].is_null(), "{s:#}");
    let e = s["store_error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("no statistics area:") && e.contains(&area) && e.contains("missing"),
        "{s:#}"
    );
    let node_w = worker_json(&doc, "shmwire-node").unwrap();
    assert_eq!(node_w["stats_error"], e, "{node_w}");
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "nn"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!("  store: figures unavailable: {e}\n")),
        "{text}"
    );
    node.kid.signal_and_wait("-TERM");
}

/// A FIFO named like a statistics area (found by an attack: listed twice
/// by `inspect --session`) is listed once, as refused; one put in place of
/// a live worker's area is named once, on that worker's line.
#[test]
fn a_fifo_named_like_a_statistics_area_is_listed_once() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_fifo_named_like_a_statistics_area_is_listed_once");
    let scratch = proc_support::scratch("swn", "fifo-area");
    let root = scratch.path().join("root");
    let dir = root.join("ff");
    let w3 = spawn_worker(&root, "ff", 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    while worker_json(&inspect_json(&root, "ff"), "w3").unwrap()["stats_updated_unix_ms"].is_null()
    {
        assert!(Instant::now() < deadline, "w3 never published");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stray = "stats-99999-0123456789abcdef";
    let mkfifo = |p: &Path| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    mkfifo(&dir.join(stray));
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "ff"]);
    assert!(ok, "{err}");
    assert_eq!(text.matches(stray).count(), 1, "{text}");
    assert!(
        text.contains(&format!(
            "  {stray} (fifo): named like a segment but not a regular file: refused (not opened)"
        )),
        "{text}"
    );
    let (ok, text, err) = shmwire(&root, &["inspect"]);
    assert!(ok, "{err}");
    assert_eq!(text.matches(stray).count(), 1, "{text}");
    let doc = inspect_json(&root, "ff");
    check_schema(&doc);
    let refused = doc["sessions"][0]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{doc:#}");
    assert_eq!(refused[0]["name"], stray);
    assert_eq!(refused[0]["type"], "fifo");
    fs::remove_file(dir.join(stray)).unwrap();

    // A live worker's area replaced by a FIFO: on its line only.
    let area = format!("stats-{}-{}", w3.pid(), &worker_id(3).hex()[..16]);
    fs::remove_file(dir.join(&area)).unwrap();
    mkfifo(&dir.join(&area));
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "ff"]);
    assert!(ok, "{err}");
    assert_eq!(text.matches(&area).count(), 1, "{text}");
    assert!(text.contains("    statistics unreadable: "), "{text}");
    let doc = inspect_json(&root, "ff");
    check_schema(&doc);
    assert!(
        doc["sessions"][0]["refused"].as_array().unwrap().is_empty(),
        "{doc:#}"
    );
    let w = worker_json(&doc, "w3").unwrap();
    assert!(w["stats_error"].as_str().unwrap().contains(&area), "{w}");
    drop(w3);
}

/// Names read from a session directory never reach a terminal as escape
/// sequences (found by an attack: a worker name `evil\x1b[2J…` went raw to
/// `inspect`'s text, the node's lines and HTTP `/inspect`). An entry whose
/// name holds control characters is malformed (listed unreadable, the
/// value escaped); a file named with them is printed escaped; no output
/// carries a raw ESC or BEL.
#[test]
fn names_with_control_characters_never_reach_a_terminal_raw() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("names_with_control_characters");
    let scratch = proc_support::scratch("swn", "ctlname");
    let root = scratch.path().join("root");
    let dir = root.join("cn");
    let mut node = start_node(&root, "cn");
    let id = WorkerId::from_array([0xAB; 28]);
    let path = dir.join(format!(".w-{id}.entry"));
    let f = fs::File::create(&path).unwrap();
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    fs::write(
        &path,
        format!("worker_id={id}\npid=1\nname=evil\x1b[2J\x1b[31mPWNED\x07\n"),
    )
    .unwrap();
    fs::write(dir.join("stray-\x1b[2J-file"), b"x").unwrap();
    let raw = |text: &str| text.contains('\x1b') || text.contains('\x07');
    let (ok, out, err) = shmwire(&root, &["inspect", "--session", "cn"]);
    assert!(ok, "{err}");
    assert!(!raw(&out) && !raw(&err), "{out:?} {err:?}");
    assert!(
        out.contains(&format!(".w-{id}.entry")) && out.contains("malformed name value"),
        "{out}"
    );
    assert!(out.contains("stray-\\u{1b}[2J-file"), "{out}");
    let (ok, out, err) = shmwire(&root, &["inspect"]);
    assert!(ok && !raw(&out) && !raw(&err), "{out:?} {err:?}");
    let page = http_get(&node.addr, "/inspect");
    assert!(page.starts_with("HTTP/1.0 200") && !raw(&page), "{page:?}");
    // Released: the node removes the dead entry; its line is escaped too.
    drop(f);
    std::thread::sleep(Duration::from_millis(1500));
    node.kid.signal_and_wait("-TERM");
    let lines = node.output_after_exit();
    assert!(!raw(&lines), "{lines:?}");
    fs::remove_file(dir.join("stray-\x1b[2J-file")).unwrap();
}

/// `shmwire node --session <session>` under `ulimit -n <limit>` (with an
/// object endpoint); its HTTP and object endpoint addresses.
fn limited_node(root: &Path, session: &str, limit: u32) -> (proc_support::Kid, String, String) {
    let (kid, http, objects, _) = limited_node_logged(root, session, limit, "");
    (kid, http, objects)
}

/// [`limited_node`] (`extra`: more options, as shell words), with what the
/// node writes on stderr (collected as it comes).
fn limited_node_logged(
    root: &Path,
    session: &str,
    limit: u32,
    extra: &str,
) -> (
    proc_support::Kid,
    String,
    String,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    fs::create_dir_all(root).unwrap();
    fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" node --session {session} --store-capacity 64K \
             --root \"$1\" {extra}"
        ))
        .arg(env!("CARGO_BIN_EXE_shmwire"))
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kid = proc_support::Kid(child);
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let err = BufReader::new(kid.0.stderr.take().unwrap());
    let log2 = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            eprintln!("node: {line}");
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut out = BufReader::new(kid.0.stdout.take().unwrap());
    let ready = proc_support::wait_for(&mut out, "node ready:");
    // Keeps draining its output (a full pipe would block the node).
    std::thread::spawn(move || for _ in out.lines() {});
    let addr_of = |key: &str| {
        ready
            .split(", ")
            .find_map(|w| w.strip_prefix(key))
            .expect(&ready)
            .trim_end_matches(',')
            .to_owned()
    };
    (kid, addr_of("http://"), addr_of("objects "), log)
}

/// Input (the attack on `7c472c6`, medium): a node whose store ran out of
/// descriptors (`ulimit -n 1024`: at its 140th client) refused every new
/// store client with "the listener refused the hello: ring segment" (or,
/// under a lower limit, "peer worker … died"), logged nothing, and
/// `/health` said 200. Now the refused client's error names the cause
/// (… Too many open files), the node says so once ("shmwire node: store:
/// it refuses new clients …", and its log warns with `RUST_LOG=warn`), and
/// `/health` answers 503 naming it; once clients leave, a new one connects
/// and the node says the store is healthy again. (The node also
/// raises its soft limit to the hard one now; `ulimit -n` sets both.)
#[test]
fn a_store_out_of_descriptors_says_so_in_its_log_health_and_refusals() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_store_out_of_descriptors_says_so");
    let scratch = proc_support::scratch("swn", "emstore");
    let root = scratch.path().join("root");
    let (mut kid, http, _, log) = limited_node_logged(&root, "es", 64, "");
    let session = Session::open_in(&root, "es").unwrap();
    let mut clients = Vec::new();
    let refusal = loop {
        match StoreClient::connect(&session, DEFAULT_STORE_NAME) {
            Ok(c) => clients.push(c),
            Err(e) => break shmwire::error_chain(&e),
        }
        assert!(clients.len() < 60, "60 store clients under a limit of 64");
    };
    assert!(
        refusal.contains("Too many open files"),
        "after {} clients: {refusal}",
        clients.len()
    );
    // The refusal reaches the client as the store thread hears of it:
    // `/health` says so a moment later.
    let until = Instant::now() + GUARD;
    loop {
        let health = http_get(&http, "/health");
        if health.starts_with("HTTP/1.0 503") && health.contains("it refuses new clients") {
            break;
        }
        assert!(Instant::now() < until, "{health}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let until = Instant::now() + GUARD;
    while !log
        .lock()
        .unwrap()
        .contains("shmwire node: store: it refuses new clients")
    {
        assert!(
            Instant::now() < until,
            "no warning: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Room again: a new client connects, and `/health` recovers.
    clients.truncate(clients.len().saturating_sub(2));
    let again = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    again
        .put(shmwire::ids::ObjectId::from_array([5; 28]), b"x", b"")
        .unwrap();
    let until = Instant::now() + GUARD;
    while !http_get(&http, "/health").starts_with("HTTP/1.0 200")
        || !log
            .lock()
            .unwrap()
            .contains("shmwire node: store: healthy again")
    {
        assert!(Instant::now() < until, "/health stays 503");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop((again, clients));
    kid.signal_and_wait("-TERM");
}

/// Input (CI on `e2f06f5`): a node with not one descriptor free — here its
/// store has filled every one with objects in fallback files (each keeps
/// its file open), under `ulimit -n 64`. Before, each of its endpoints'
/// accepts failed for want of a descriptor, every 20–100 ms, and left the
/// caller in the kernel's queue until one was freed: `/health` unanswered
/// (the test above waited 30 s for it once), a new store client timed out
/// in its handshake after 5 s ("timed out during the handshake reply")
/// instead of being told why, a pull unanswered. Now each listener keeps a
/// spare descriptor to give up for that accept: the store client is
/// refused at once naming the cause, the pull and `/health` are answered,
/// and `/health` again after that (the spare is taken back once the
/// connection closes).
#[test]
fn a_node_at_its_descriptor_limit_still_answers_every_endpoint() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_node_at_its_descriptor_limit_still_answers_every_endpoint");
    let scratch = proc_support::scratch("swn", "fdlimit");
    let root = scratch.path().join("root");
    let fallback = scratch.path().join("fallback");
    fs::create_dir_all(&fallback).unwrap();
    let (mut kid, http, objects, _log) = limited_node_logged(
        &root,
        "fl",
        64,
        &format!("--fallback-dir '{}'", fallback.display()),
    );
    let session = Session::open_in(&root, "fl").unwrap();
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    let mut made = 0u32;
    // 70 KB objects do not fit the 64 KiB arena: each goes to a fallback
    // file, pinned so that none is evicted, until the store cannot open
    // another, and again after 100 ms until none more fits (the node closes
    // the last check's connection after this process has its answer): then
    // no descriptor is free in the node.
    let mut fill = || loop {
        let before = made;
        let err = loop {
            let mut b = [7u8; 28];
            b[..4].copy_from_slice(&made.to_le_bytes());
            let id = ObjectId::from_array(b);
            match store
                .put(id, &[made as u8; 70_000], b"")
                .and_then(|()| store.pin(&[id]))
            {
                Ok(()) => made += 1,
                Err(e) => break e,
            }
            assert!(made < 64, "64 fallback objects under a limit of 64");
        };
        assert!(
            matches!(err, shmwire::store::StoreError::OutOfDescriptors { .. }),
            "after {made} objects: {err:?}"
        );
        if made == before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Each check twice, the node filled again before each: the spare is
    // taken back as soon as the connection it was given up for closes,
    // before the store can take the freed descriptor (the attack on
    // `a6baac3`: taken back only at the next caller's accept, it was lost
    // to the next object, and the second client timed out, the second
    // pull went unanswered).
    for _ in 0..2 {
        fill();
        let asked = Instant::now();
        let refusal = shmwire::error_chain(
            &StoreClient::connect(&session, DEFAULT_STORE_NAME)
                .map(drop)
                .unwrap_err(),
        );
        assert!(refusal.contains("Too many open files"), "{refusal}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
    }
    for _ in 0..2 {
        fill();
        assert!(
            object_endpoint_answers(&objects),
            "no answer from the object endpoint"
        );
    }
    fill();
    for _ in 0..2 {
        let health = http_get_within(&http, "/health", Duration::from_secs(5));
        assert!(health.starts_with("HTTP/1.0 "), "{health:?}");
        assert!(health.contains("fl"), "{health:?}");
    }
    drop(store);
    kid.signal_and_wait("-TERM");
}

/// Objects' metadata lives in the store's heap, not its arena, and
/// `--store-metadata-capacity` bounds it (attack on `f5e384c`: 15,000
/// objects of 1 byte with 64 KiB of metadata took a node with a 1 MiB
/// store from 6 MB to 977 MB). A client process (this one) puts 600 such
/// objects into a node with a 1 MiB arena and 4 MiB for metadata: the
/// oldest are evicted to make room, the node's memory grows by less than
/// 16 MiB (not the ≈ 39 MB the metadata adds up to), `inspect` shows the
/// charge within the capacity, the newest object reads back whole; with
/// every live object pinned, the next put fails `MetadataFull`, saying so.
#[test]
fn store_metadata_is_bounded_by_its_capacity() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("store_metadata_is_bounded_by_its_capacity");
    let scratch = proc_support::scratch("swn", "metacap");
    let root = scratch.path().join("root");
    let (mut kid, _out, _ready) = proc_support::spawn_node(
        &root,
        &[
            "--session",
            "mc",
            "--store-capacity",
            "1M",
            "--store-metadata-capacity",
            "4M",
        ],
    );
    let session = Session::open_in(&root, "mc").unwrap();
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    let oid = |i: u32| {
        let mut b = [0u8; 28];
        b[..4].copy_from_slice(&i.to_le_bytes());
        ObjectId::from_array(b)
    };
    let meta: Vec<u8> = (0..64 * 1024u32).map(|i| i as u8).collect();
    let before = rss_kib(kid.pid());
    for i in 0..600 {
        store.put(oid(i), b"x", &meta).unwrap();
    }
    let grew = rss_kib(kid.pid()).saturating_sub(before);
    assert!(grew < 16 * 1024, "the node grew by {grew} KiB");
    let got = store.get(&[oid(599)], Duration::ZERO).unwrap();
    let newest = got[0].as_ref().expect("the newest object was evicted");
    assert_eq!(newest.metadata(), &meta[..]);
    assert_eq!(&newest[..], b"x");
    drop(got);
    let until = Instant::now() + GUARD;
    let st = loop {
        let doc = inspect_json(&root, "mc");
        let st = doc["sessions"][0]["store"].clone();
        if st["objects"].as_u64().is_some_and(|n| n > 0) {
            break st;
        }
        assert!(Instant::now() < until, "no store figures: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st["metadata_capacity"], 4 << 20, "{st}");
    let used = st["metadata_used"].as_u64().unwrap();
    assert!(used > 0 && used <= 4 << 20, "{st}");
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "mc"]);
    assert!(ok && text.contains(" of 4194304 bytes"), "{text}{err}");

    let live: Vec<ObjectId> = (0..600)
        .map(oid)
        .filter(|id| store.contains(*id).unwrap())
        .collect();
    assert!(
        (50..64).contains(&live.len()),
        "{} objects of 64 KiB metadata live in 4 MiB",
        live.len()
    );
    store.pin(&live).unwrap();
    // Each new object pinned too: the capacity fills up and the next put
    // fails, evicting none of the pinned.
    let mut pinned = live.clone();
    let full = loop {
        let id = oid(1000 + pinned.len() as u32);
        match store.put(id, b"x", &meta) {
            Ok(()) => {
                store.pin(&[id]).unwrap();
                pinned.push(id);
            }
            Err(e) => break e,
        }
        assert!(
            pinned.len() < 70,
            "{} pinned, no MetadataFull",
            pinned.len()
        );
    };
    assert!(
        matches!(full, shmwire::store::StoreError::MetadataFull { .. }),
        "{full:?}"
    );
    let text = full.to_string();
    assert!(
        text.contains("store metadata full") && text.contains("4194304"),
        "{text}"
    );
    for id in &pinned {
        assert!(store.contains(*id).unwrap(), "pinned {id} evicted");
    }
    let live = pinned;
    // Unpinned, the oldest give way again.
    store.unpin(&live).unwrap();
    store.put(oid(1000), b"x", &meta).unwrap();
    drop(store);
    kid.signal_and_wait("-TERM");
}

/// An object request to the endpoint at `objects`; whether any answer
/// (a status byte) came within 3 s.
fn object_endpoint_answers(objects: &str) -> bool {
    let mut s = std::net::TcpStream::connect(objects).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut req = b"SWPQ".to_vec();
    req.extend_from_slice(&1u32.to_le_bytes());
    req.extend_from_slice(&[0x11; 28]);
    req.extend_from_slice(&[0; 12]);
    s.write_all(&req).unwrap();
    let mut b = [0u8; 1];
    s.read(&mut b).is_ok_and(|n| n == 1)
}

/// Silent connections held open at a node's descriptor limit (found by the
/// attack of 2026-12-02: under `ulimit -n 56`, 100 silent connections to
/// the HTTP port took every spare descriptor long before the endpoint's
/// cap of 64, and `/health` stayed unaccepted in the kernel's queue — five
/// `curl`s in a row timed out — as did pulls behind a flood of the object
/// port). Out of descriptors, each endpoint now closes the connection that
/// has waited longest for its request to accept the next, as at its cap.
/// Here 300 silent connections are held on each port in turn: before, a
/// `/health` behind them waited for their 1 s request deadlines to free
/// descriptors (2.7 s measured); now it is answered at once.
#[test]
fn silent_connections_at_the_descriptor_limit_do_not_shut_the_endpoints() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("silent_connections_at_the_descriptor_limit");
    let scratch = proc_support::scratch("swn", "emhold");
    let root = scratch.path().join("root");
    let (mut kid, http, objects) = limited_node(&root, "eh", 64);
    for addr in [&http, &objects] {
        let mut held: std::collections::VecDeque<_> = (0..300)
            .filter_map(|_| std::net::TcpStream::connect(addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Re-opens silent connections as fast as it can, closing the
            // oldest (found by the attack on 9af1b88: a `/health` accepted
            // in a burst of such a flood was displaced before its request,
            // already sent, was read — "503 … sent no request").
            scope.spawn(|| {
                let end = Instant::now() + Duration::from_secs(30);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                    held.pop_front();
                    if let Ok(c) = std::net::TcpStream::connect(addr) {
                        held.push_back(c);
                    }
                }
            });
            let mut answers = Vec::new();
            for _ in 0..20 {
                let t = Instant::now();
                answers.push((http_get(&http, "/health"), t.elapsed()));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            // Every one answered `200` (the flood, as fast as this process
            // can open connections, may delay each by up to about a second
            // on 2 cores: it competes for the node's accept loop). Bounded
            // at 10 s: on 2026-12-03 single answers took 5.1–6.1 s here,
            // three times in eight runs (twice in full parallel test runs,
            // once alone) — the 5 s bound was flaky; shut out, as before
            // the fix, the requests are never answered.
            let slowest = answers.iter().map(|(_, took)| *took).max();
            eprintln!("{addr}: slowest /health under the flood {slowest:?}");
            for (answer, took) in &answers {
                assert!(answer.starts_with("HTTP/1.0 200 OK"), "{addr}: {answer}");
                assert!(*took < Duration::from_secs(10), "{addr}: {took:?}");
            }
        });
        assert!(
            object_endpoint_answers(&objects),
            "{addr}: no answer from the object endpoint"
        );
    }
    kid.signal_and_wait("-TERM");
}

/// Another process of the same user writes into the node's own store
/// client's reference slots (the object endpoint's client, which lives as
/// long as the node; its slot memfd is reachable through
/// `/proc/<node pid>/fd`), claiming a reference on every index entry.
/// Before, every object deleted afterwards stayed "delete-pending" for the
/// node's life and the store filled (the attack on `e65c959`: one write,
/// then every put "store full"). The node now puts its client's slots back
/// from the client's private tally every second: the deletes complete and
/// the room comes back.
#[test]
fn reference_slots_written_by_another_process_are_put_back_by_the_node() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("reference_slots_written_by_another_process");
    let scratch = proc_support::scratch("swn", "sref");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "sr");
    // The node's slot memfds (the service's copies and its client's: one
    // client so far, the node's own).
    assert!(
        slot_scribble::raise_reference_slots(node.kid.pid()) > 0,
        "no reference slot memfd in the node"
    );
    let session = Session::open_in(&root, "sr").unwrap();
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    // The four deletes complete once the node has put its slots back: an
    // object that needs the room of all four then fits.
    slot_scribble::deletes_free_their_room(&store, 4, 200 << 10, ObjectId::from_array([42; 28]));
    drop(store);
    node.kid.signal_and_wait("-TERM");
}

/// A node at its open-file limit keeps serving once descriptors free up
/// (found by an attack: after a burst of 60 connections under `ulimit -n
/// 44`, accepts failed with EMFILE, the edge-triggered listeners reported
/// the still-queued connections never again, and `/health` and pulls timed
/// out for good). Both endpoints retry their accepts every turn while
/// connections stay queued.
#[test]
fn a_node_at_its_descriptor_limit_serves_again_after_a_burst() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_node_at_its_descriptor_limit");
    let scratch = proc_support::scratch("swn", "emfile");
    let root = scratch.path().join("root");
    let (mut kid, http, objects) = limited_node(&root, "em", 64);
    for addr in [&http, &objects] {
        let burst: Vec<_> = (0..60)
            .filter_map(|_| std::net::TcpStream::connect(addr).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        drop(burst);
        std::thread::sleep(Duration::from_millis(300));
    }
    for _ in 0..3 {
        let t = Instant::now();
        assert!(http_get(&http, "/health").starts_with("HTTP/1.0 200 OK"));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // The object endpoint answers a request again (any status byte).
    assert!(
        object_endpoint_answers(&objects),
        "no answer from the object endpoint"
    );
    kid.signal_and_wait("-TERM");
}

/// A statistics area whose segment header another process truncated,
/// zeroed or scribbled, or whose file it grew (found by an attack: the
/// writer regrew a truncated file but never rewrote its header, so the
/// area stayed unreadable — "never stable over 100 reads" or invalid —
/// until its process restarted) is readable again within a publish or
/// two: each publish checks the header and the file's size and writes
/// them again. Both a worker's area and the node's, each damage in turn.
#[test]
fn a_damaged_statistics_area_is_whole_again_after_the_next_publish() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_damaged_statistics_area_is_whole_again");
    let scratch = proc_support::scratch("swn", "heal-area");
    let root = scratch.path().join("root");
    let dir = root.join("ha");
    let mut node = start_node(&root, "ha");
    let w3 = spawn_worker(&root, "ha", 3);
    wait_for_store(&root, "ha");
    // Whole: the node's store figures and w3's figures, no error.
    let whole = |doc: &Value| {
        let s = &doc["sessions"][0];
        let w = worker_json(doc, "w3");
        !s["store"].is_null()
            && s["store_error"].is_null()
            && w.is_some_and(|w| {
                w["stats_error"].is_null() && !w["stats_updated_unix_ms"].is_null()
            })
    };
    let wait_whole = |what: &str| -> Duration {
        let t0 = Instant::now();
        loop {
            let doc = inspect_json(&root, "ha");
            if whole(&doc) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{what}: still unreadable after 3 s: {doc:#}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_whole("at start");
    let area_of = |pid: u32| {
        names(&dir)
            .into_iter()
            .find(|n| n.starts_with(&format!("stats-{pid}-")))
            .unwrap_or_else(|| panic!("no area of {pid}"))
    };
    let areas = [area_of(node.kid.pid()), area_of(w3.pid())];
    let total = fs::metadata(dir.join(&areas[0])).unwrap().len();
    type Damage<'a> = (&'a str, &'a dyn Fn(&fs::File));
    let damage: [Damage; 6] = [
        ("truncated to 0", &|f| f.set_len(0).unwrap()),
        ("truncated to 5 bytes", &|f| f.set_len(5).unwrap()),
        ("header zeroed", &|f| {
            std::os::unix::fs::FileExt::write_all_at(f, &[0; 128], 0).unwrap()
        }),
        ("header scribbled", &|f| {
            std::os::unix::fs::FileExt::write_all_at(f, &[0xA5; 64], 0).unwrap()
        }),
        ("init word scribbled", &|f| {
            std::os::unix::fs::FileExt::write_all_at(f, &[7; 4], 44).unwrap()
        }),
        ("grown", &|f| f.set_len(total + 8192).unwrap()),
    ];
    let mut slowest = Duration::ZERO;
    for (what, hurt) in damage {
        for area in &areas {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(dir.join(area))
                .unwrap();
            hurt(&f);
            slowest = slowest.max(wait_whole(&format!("{area} {what}")));
            assert_eq!(
                fs::metadata(dir.join(area)).unwrap().len(),
                total,
                "{area} {what}"
            );
        }
    }
    eprintln!("slowest heal seen by inspect: {slowest:?}");
    drop(w3);
    node.kid.signal_and_wait("-TERM");
}

/// A session root whose path holds a control character or a byte that is
/// not UTF-8 (found by an attack: `shmwire demo` under such a
/// `SHMWIRE_ROOT` said "the worker never registered" after 21 s) is
/// refused at once by every command that takes a root, with one message
/// naming what is wrong, escaped (never a raw control character).
#[test]
fn a_root_path_with_control_characters_or_bad_utf8_is_refused_at_once() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let _watchdog = proc_support::watchdog("a_root_path_with_control_characters");
    let scratch = proc_support::scratch("swn", "badroot");
    let cases: [(&[u8], &str); 5] = [
        (b"a\x1bb", "a control character (\\u{1b})"),
        (b"new\nline", "a control character (\\n)"),
        (b"del\x7f", "a control character (\\u{7f})"),
        (b"x\xffy", "a byte that is not UTF-8 (\\xff)"),
        (b"c1\xc2\x9b", "a control character (\\u{9b})"),
    ];
    let bin = env!("CARGO_BIN_EXE_shmwire");
    for (bad, what) in cases {
        let mut raw = scratch.path().as_os_str().as_bytes().to_vec();
        raw.push(b'/');
        raw.extend_from_slice(bad);
        let root = std::path::PathBuf::from(OsStr::from_bytes(&raw));
        // The directory exists, private: only its name is wrong.
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let mut runs: Vec<(String, Command)> = Vec::new();
        for args in [
            &["node", "--session", "s", "--store-capacity", "1M"][..],
            &["inspect"],
            &["inspect", "--session", "s"],
            &["cleanup", "--all-stale"],
            &["cleanup", "--session", "s"],
        ] {
            let mut c = Command::new(bin);
            c.args(args).arg("--root").arg(&root);
            runs.push((args.join(" "), c));
        }
        for args in [
            &["demo", "--tasks", "3"][..],
            &["bench", "ring", "--iters", "10"],
        ] {
            let mut c = Command::new(bin);
            c.args(args).env("SHMWIRE_ROOT", &root);
            runs.push((format!("SHMWIRE_ROOT=… {}", args.join(" ")), c));
        }
        for (label, mut cmd) in runs {
            let t0 = Instant::now();
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut status = None;
            while t0.elapsed() < Duration::from_secs(2) {
                if let Some(st) = child.try_wait().unwrap() {
                    status = Some(st);
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let Some(st) = status else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{label} under {raw:?}: still running after 2 s");
            };
            let mut err = String::new();
            let mut out = Vec::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
            assert!(!st.success(), "{label} under {raw:?}: {st} {err}");
            assert!(
                err.contains("session root") && err.contains("is refused") && err.contains(what),
                "{label} under {raw:?}: {err:?}"
            );
            assert!(
                !err.chars().any(|c| c.is_control() && c != '\n'),
                "{label}: raw control character in {err:?}"
            );
            assert!(
                !out.iter().any(|b| b.is_ascii_control() && *b != b'\n'),
                "{label}: raw control character in stdout {out:?}"
            );
            // Nothing was made under the refused root.
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "{label}");
        }
    }
}

/// A node under a low descriptor limit (`ulimit -n` from 20 to 90, one
/// by one, so that every step of its start runs out in turn: the store,
/// the object endpoint, the HTTP endpoint, the spare descriptors it
/// needs afterwards) either starts and answers `/health` with `200`, or
/// exits non-zero at once naming the OS error or the limit, leaving no
/// session directory. Before: under `ulimit -n` 36 to 40 the HTTP thread
/// failed to make its event loop after the node printed `node ready`, and
/// `/health` never answered.
#[test]
fn a_node_under_a_low_descriptor_limit_starts_whole_or_not_at_all() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_node_under_a_low_descriptor_limit");
    let scratch = proc_support::scratch("swn", "nofile");
    let root = scratch.path().join("root");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let mut started = Vec::new();
    let mut refused: Vec<(u32, String)> = Vec::new();
    for limit in 20..=90u32 {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" node --session lim --store-capacity 64K \
                 --root \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_shmwire"))
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut kid = proc_support::Kid(child);
        let mut err = kid.0.stderr.take().unwrap();
        let err_text = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut out = BufReader::new(kid.0.stdout.take().unwrap());
        let mut line = String::new();
        // The ready line, or end of output: the node exited.
        let _ = out.read_line(&mut line);
        if let Some(ready) = line.strip_prefix("node ready: ") {
            let http = ready
                .split(", ")
                .find_map(|w| w.strip_prefix("http://"))
                .expect(ready)
                .to_owned();
            std::thread::spawn(move || {
                let mut sink = String::new();
                let _ = out.read_to_string(&mut sink);
            });
            let mut s = std::net::TcpStream::connect_timeout(
                &http.parse().unwrap(),
                Duration::from_secs(2),
            )
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
            let mut answer = String::new();
            let r = s.read_to_string(&mut answer);
            assert!(
                answer.starts_with("HTTP/1.0 200 OK"),
                "ulimit -n {limit}: the node said it was ready and /health got {r:?} {answer:?}"
            );
            kid.signal_and_wait("-TERM");
            started.push(limit);
        } else {
            let st = kid.0.wait().unwrap();
            let text = err_text.join().unwrap();
            assert!(!st.success(), "ulimit -n {limit}: {line}{text}");
            assert!(
                text.starts_with("shmwire: ")
                    && (text.contains("Too many open files")
                        || text.contains("descriptors")
                        || text.contains("open-file limit")),
                "ulimit -n {limit}: {text}"
            );
            refused.push((limit, text));
        }
        assert!(
            !root.join("lim").exists(),
            "ulimit -n {limit} left {:?}",
            names(&root.join("lim"))
        );
    }
    for (limit, text) in &refused {
        eprintln!("ulimit -n {limit}: {}", text.trim_end());
    }
    eprintln!("started under ulimit -n {started:?}");
    // Every step ran out at some limit: the last refusals are the spare
    // check, before it the HTTP endpoint and the object endpoint.
    let hit = |what: &str| refused.iter().any(|(_, t)| t.contains(what));
    assert!(hit("too few file descriptors"), "{refused:?}");
    assert!(hit("the HTTP endpoint on"), "{refused:?}");
    assert!(hit("pull"), "{refused:?}");
    assert!(!started.is_empty(), "{refused:?}");
}

/// Found by a fresh attack: the node's last pass removed the session by
/// its path, so a directory put in the session's place while the node ran
/// (no session marker: not a session) had its files deleted and was
/// removed; and a short file of the user's under a segment-like name
/// (`notes.txt`) in a live session was deleted at once when the node
/// stopped, though cleanup gives such header-less files `UNTAGGED_GRACE`.
/// Now a pass never enters a directory without the marker, and the last
/// pass keeps the same grace.
#[test]
fn the_last_pass_spares_a_replaced_directory_and_young_user_files() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("the_last_pass_spares_a_replaced_directory_and_young_user_files");
    let scratch = proc_support::scratch("swn", "spare");
    let root = scratch.path().join("root");

    // A directory swapped in under the running node's session path.
    let mut node = start_node(&root, "h");
    let replacement = root.join("htmp");
    fs::create_dir(&replacement).unwrap();
    fs::write(replacement.join("myfile"), b"precious").unwrap();
    fs::rename(root.join("h"), root.join("h2")).unwrap();
    fs::rename(&replacement, root.join("h")).unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &node.kid.pid().to_string()])
        .status();
    let deadline = Instant::now() + GUARD;
    while node.kid.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        fs::read(root.join("h").join("myfile")).unwrap(),
        b"precious",
        "{:?}",
        node.lines.lock().unwrap()
    );
    // The renamed session is a dead session now: cleanup removes it.
    let (ok, _, err) = shmwire(&root, &["cleanup", "--all-stale"]);
    assert!(ok, "{err}");
    assert!(!root.join("h2").exists());
    assert!(root.join("h").join("myfile").exists());

    // A young short file of the user's in the session when the node stops.
    let mut node = start_node(&root, "q");
    fs::write(root.join("q").join("notes.txt"), b"hi").unwrap();
    node.kid.signal_and_wait("-TERM");
    assert_eq!(
        fs::read(root.join("q").join("notes.txt")).unwrap(),
        b"hi",
        "{:?}",
        node.lines.lock().unwrap()
    );
    let lines = node.output_after_exit();
    assert!(lines.contains("notes.txt"), "{lines}");
}

/// Input (a fresh attack, 2026-12-02): a copy of a live node's directory
/// entry written under another worker's name, its `pid=` changed. The
/// entry's `worker_id` was trusted over its file's name: the copy, whose
/// lock nobody holds, was taken for the node's own entry and the node
/// announced "worker <its own id> (shmwire-node) (pid 77777) died". An
/// entry is now read only under its own worker's name (else unreadable,
/// with the cause): no death is announced, the dead copy is removed, the
/// node's own entry stays.
#[test]
fn a_forged_entry_under_another_name_announces_no_death() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_forged_entry_under_another_name_announces_no_death");
    let scratch = proc_support::scratch("fe", "forged");
    let root = scratch.path().join("root");
    let node = start_node(&root, "forge");
    let dir = root.join("forge");
    let own = names(&dir)
        .into_iter()
        .find(|n| n.starts_with(".w-") && n.ends_with(".entry"))
        .expect("the node's entry");
    let text = std::fs::read_to_string(dir.join(&own)).unwrap();
    let forged_text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("pid=") {
                "pid=77777\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    // A round reads the entries, then runs the cleanup pass; a copy that
    // appears during the pass is removed unread. Twenty copies, each under
    // a new name, each removed within the node's rounds (every 100 ms)
    // before the next: most are read first.
    for n in 0..20u8 {
        let forged = format!(".w-{}.entry", worker_id(0x60 + n));
        std::fs::write(dir.join(&forged), &forged_text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.join(&forged).exists() {
            assert!(
                Instant::now() < deadline,
                "the forged entry was never removed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let lines = node.lines.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.contains(" died")),
        "a death was announced: {lines:#?}"
    );
    assert!(dir.join(&own).exists(), "the node's own entry went");
    drop(node);
}

/// Replaces `path` by a regular file of junk, renamed over it (as a stray
/// tool writing atomically would).
fn rename_junk_over(path: &Path) {
    let tmp = path.with_extension("junk-tmp");
    fs::write(&tmp, b"not yours\n").unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Retries `f` every 50 ms until it succeeds, at most `within`; the last
/// error otherwise.
fn within<T>(within: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A live worker's, the store's and the node's files removed or replaced
/// under them — the process locks (without them every cleanup pass takes
/// the process for dead and removes its socket and area), the Unix sockets
/// new callers connect to, the directory entries they are found by (a file
/// renamed over an entry is unlocked: readers took the worker for dead and
/// removed it), the statistics areas, the session token — are put back
/// within the check interval (1 s; the node's every round) and stay back:
/// new callers reach the worker and the store, the node is found by name,
/// `inspect` shows the areas, the token is the live processes', the node
/// lock is held (a second node is refused). Connected
/// callers never noticed.
#[test]
fn removed_or_replaced_session_files_of_live_processes_are_put_back() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("removed_or_replaced_session_files_of_live_processes_are_put_back");
    let scratch = proc_support::scratch("swn", "restore");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "rs");
    let mut w = spawn_worker(&root, "rs", 3);
    let session = Session::open_in(&root, "rs").unwrap();
    let sdir = session.dir().to_owned();
    let token = fs::read(sdir.join(".token")).unwrap();
    let dir = shmwire::node::Directory::for_session(&session).unwrap();
    let new_driver = || {
        CoreWorker::new(&session, CoreWorkerOptions::new(NodeId::from_random()))
            .map_err(|e| e.to_string())
    };
    // A caller connected before any loss, kept throughout.
    let mut kept = new_driver().unwrap();
    assert_eq!(square(&mut kept, 3, 4).unwrap(), 16);
    let store_kept = StoreClient::connect(&session, DEFAULT_STORE_NAME).unwrap();
    let entry_of = |id: &WorkerId| sdir.join(format!(".w-{id}.entry"));
    let reach_worker = |x: i64| {
        within(Duration::from_secs(5), || {
            let mut d = new_driver()?;
            square(&mut d, 3, x)
        })
    };
    let reach_store = |n: u8| {
        within(Duration::from_secs(5), || {
            let s =
                StoreClient::connect(&session, DEFAULT_STORE_NAME).map_err(|e| e.to_string())?;
            s.put(ObjectId::from_array([n; 28]), &[n; 64], b"")
                .map_err(|e| e.to_string())
        })
    };
    let lookup_name = |name: &str| {
        within(Duration::from_secs(5), || {
            dir.lookup_name(name).map_err(|e| e.to_string())
        })
    };
    // The files of process `pid` named after it: its lock and its area.
    let owned = |pid: u32| -> Vec<std::path::PathBuf> {
        names(&sdir)
            .into_iter()
            .filter(|n| {
                (n.starts_with(&format!("proc-{pid}-")) && n.ends_with(".lock"))
                    || n.starts_with(&format!("stats-{pid}-"))
            })
            .map(|n| sdir.join(n))
            .collect()
    };
    let areas_shown = || {
        within(Duration::from_secs(5), || {
            let doc = inspect_json(&root, "rs");
            let w3 = worker_json(&doc, "w3").cloned().unwrap_or_default();
            let store = &doc["sessions"][0]["store"];
            if w3["stats_updated_unix_ms"].is_u64() && store["objects"].is_u64() {
                Ok(())
            } else {
                Err(format!("{doc:#}"))
            }
        })
    };
    areas_shown().unwrap();
    let (node_pid, w_pid) = (node.kid.pid(), w.pid());
    for (round, replace) in [(1, false), (2, true)] {
        let lose = |p: &Path| {
            if replace {
                rename_junk_over(p)
            } else {
                fs::remove_file(p).unwrap()
            }
        };
        let ep = dir.lookup(&worker_id(3)).unwrap();
        let st = lookup_name(DEFAULT_STORE_NAME).unwrap();
        let n = lookup_name("shmwire-node").unwrap();
        let mine = [owned(w_pid), owned(node_pid)].concat();
        assert_eq!(mine.len(), 4, "two locks and two areas: {mine:?}");
        for p in &mine {
            lose(p);
        }
        lose(ep.unix_socket.as_deref().unwrap());
        lose(&entry_of(&worker_id(3)));
        lose(st.unix_socket.as_deref().unwrap());
        lose(&entry_of(&st.worker_id));
        lose(&entry_of(&n.worker_id));
        lose(&sdir.join(".token"));
        lose(&sdir.join(".node.lock"));
        let x = 10 + round;
        assert_eq!(reach_worker(x), Ok(x * x), "round {round}: worker");
        reach_store(round as u8).unwrap_or_else(|e| panic!("round {round}: store: {e}"));
        let again = lookup_name("shmwire-node").unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(again.worker_id, n.worker_id);
        areas_shown().unwrap_or_else(|e| panic!("round {round}: areas: {e}"));
        // And they stay: the cleanup passes see live owners again.
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            fs::read(sdir.join(".token")).unwrap(),
            token,
            "round {round}"
        );
        assert_eq!(
            owned(w_pid).len() + owned(node_pid).len(),
            4,
            "round {round}"
        );
        assert!(ep.unix_socket.as_deref().unwrap().exists(), "round {round}");
        // The node holds the session's node lock again: a second node is
        // refused.
        let (ok, out, err) = shmwire(
            &root,
            &["node", "--session", "rs", "--store-capacity", "1M"],
        );
        assert!(!ok, "round {round}: a second node started: {out}{err}");
        assert!(
            err.contains("another node runs in session rs"),
            "round {round}: {err}"
        );
        assert_eq!(reach_worker(x + 1), Ok((x + 1) * (x + 1)), "round {round}");
        reach_store(10 + round as u8).unwrap_or_else(|e| panic!("round {round}: store: {e}"));
        // Connected callers were not disturbed.
        assert_eq!(square(&mut kept, 3, 5).unwrap(), 25);
        store_kept
            .put(ObjectId::from_array([100 + round as u8; 28]), &[1; 8], b"")
            .unwrap();
    }
    // A copy of the worker's entry naming another pid, renamed over it
    // (unlocked, so it reads as dead): the pid the node saw in the locked
    // entry decides (it exists), and the worker puts its entry back within
    // the grace; no death is announced (checked below).
    let e = entry_of(&worker_id(3));
    let forged: String = fs::read_to_string(&e)
        .unwrap()
        .lines()
        .map(|l| match l.strip_prefix("pid=") {
            Some(_) => "pid=77777\n".to_owned(),
            None => format!("{l}\n"),
        })
        .collect();
    let tmp = e.with_extension("forged");
    fs::write(&tmp, forged).unwrap();
    fs::rename(&tmp, &e).unwrap();
    // Entries of workers the node never saw live, naming the live worker's
    // pid and pid 1 (unlocked: they read as dead): nobody's word, so no
    // death is announced for them (the attack on `0060161` had the node
    // announce "(demo-counter) (pid <live pid>) died"); the pass removes
    // them and says so.
    let planted: Vec<WorkerId> = [(201u8, w_pid), (202, 1)]
        .into_iter()
        .map(|(n, pid)| {
            let id = worker_id(n);
            let text = format!("worker_id={id}\npid={pid}\nname=w3\n");
            fs::write(entry_of(&id), text).unwrap();
            id
        })
        .collect();
    std::thread::sleep(DEATH_GRACE + Duration::from_millis(1000));
    for id in &planted {
        let name = format!(".w-{id}.entry");
        within(Duration::from_secs(5), || {
            let lines = node.lines.lock().unwrap();
            if lines
                .iter()
                .any(|l| l.starts_with("removed: ") && l.contains(&name))
            {
                Ok(())
            } else {
                Err(format!("no removed: line names {name}: {lines:?}"))
            }
        })
        .unwrap();
    }
    assert_eq!(reach_worker(7), Ok(49), "after the forged entry");
    // The node said so; the node is healthy; nothing was taken for dead.
    assert!(
        http_get(&node.addr, "/health").starts_with("HTTP/1.0 200"),
        "health after the restores"
    );
    // A store socket that cannot be bound again (a non-empty directory
    // under its path): `/health` names the store and why, until the path
    // is free; then the store is reachable again and healthy.
    let st = dir.lookup_name(DEFAULT_STORE_NAME).unwrap();
    let sock = st.unix_socket.clone().unwrap();
    fs::remove_file(&sock).unwrap();
    fs::create_dir(&sock).unwrap();
    fs::write(sock.join("x"), b"x").unwrap();
    let h = within(Duration::from_secs(5), || {
        let h = http_get(&node.addr, "/health");
        if h.starts_with("HTTP/1.0 503") {
            Ok(h)
        } else {
            Err(h)
        }
    })
    .expect("health never said the store's socket is lost");
    assert!(
        h.contains("store: its listener's socket or directory entry is missing"),
        "{h}"
    );
    fs::remove_dir_all(&sock).unwrap();
    reach_store(3).unwrap_or_else(|e| panic!("store after the path was freed: {e}"));
    within(Duration::from_secs(5), || {
        let h = http_get(&node.addr, "/health");
        if h.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(h)
        }
    })
    .unwrap();
    let lines = node.lines.lock().unwrap().clone();
    assert!(
        !lines.iter().any(|l| l.contains("died")),
        "no death announced: {lines:?}"
    );
    drop((kept, store_kept));
    w.sigkill();
    node.kid.signal_and_wait("-TERM");
}

/// Found by the fresh attack on `e5d77c2`: with the live node's
/// `.node.lock` and entries removed, a second node started, and both ran
/// (the directory split between their stores). The kernel's lock decides:
/// the node that finds its lock taken by another stops, saying so; one node
/// serves the session. Made deterministic by stopping the first node while
/// the second starts.
#[test]
fn a_node_that_lost_its_node_lock_to_another_stops() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_node_that_lost_its_node_lock_to_another_stops");
    let scratch = proc_support::scratch("swn", "twonodes");
    let root = scratch.path().join("root");
    let (mut first_kid, _out, _) = proc_support::spawn_node_with(
        &root,
        &["--session", "tn", "--store-capacity", "1M"],
        Stdio::piped(),
    );
    let sdir = root.join("tn");
    let stderr = first_kid.0.stderr.take();
    // Stopped outside a pass's last step (the only part of a cleanup pass
    // that holds the session directory's lock exclusively: a node stopped
    // there would keep the second out of the session until it went on; a
    // live session's passes never take it since 2026-12-05, before which
    // any pass did, a flake of the whole suite under load). Our shared
    // lock keeps that step from running until the node is stopped.
    let dir_lock = fs::File::open(&sdir).unwrap();
    rustix::fs::flock(&dir_lock, rustix::fs::FlockOperation::LockShared).unwrap();
    // A group stop lands on each thread asynchronously: a round already
    // running would put the node lock back under the removal below, so
    // this waits until every thread stopped.
    proc_support::stop_process(first_kid.pid());
    drop(dir_lock);
    // Its node lock, entries and names' claims removed (with the claim
    // of the store's name still there, the second node's store would be
    // refused the name while the first lives).
    fs::remove_file(sdir.join(".node.lock")).unwrap();
    for n in names(&sdir) {
        if n.starts_with(".w-") || n.starts_with(".n-") {
            fs::remove_file(sdir.join(n)).unwrap();
        }
    }
    let second = start_node(&root, "tn");
    proc_support::continue_process(first_kid.pid());
    // The first stops on its next round, exit status 1, naming the cause.
    let t = Instant::now();
    let status = loop {
        if let Some(st) = first_kid.0.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < GUARD, "the first node kept running");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
    if let Some(mut err) = stderr {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        assert!(
            text.contains("the session's node lock was taken by another node"),
            "{text}"
        );
    }
    // The second serves the session alone, its store reachable.
    assert!(http_get(&second.addr, "/health").starts_with("HTTP/1.0 200"));
    let session = Session::open_in(&root, "tn").unwrap();
    let store = within(Duration::from_secs(5), || {
        StoreClient::connect(&session, DEFAULT_STORE_NAME).map_err(|e| e.to_string())
    })
    .unwrap();
    store
        .put(ObjectId::from_array([5; 28]), &[5; 64], b"")
        .unwrap();
    drop(store);
    drop(session);
    let mut kid = second.kid;
    kid.signal_and_wait("-TERM");
}

/// Found by the fresh attack on `e5d77c2`: a worker whose session
/// directory was removed put its files back into whatever came to be at
/// the path — a symbolic link to a directory outside the root (its socket,
/// token and entry were written there), or a new session's directory. A
/// worker fills only the directory it made its lock in.
#[test]
fn a_worker_does_not_fill_a_replaced_session_directory() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("a_worker_does_not_fill_a_replaced_session_directory");
    let scratch = proc_support::scratch("swn", "replaced");
    let root = scratch.path().join("root");
    let victim = scratch.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let _w = spawn_worker(&root, "rd", 3);
    let sdir = root.join("rd");
    fs::remove_dir_all(&sdir).unwrap();
    std::os::unix::fs::symlink(&victim, &sdir).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        names(&victim).is_empty(),
        "written through the link: {:?}",
        names(&victim)
    );
    fs::remove_file(&sdir).unwrap();
    fs::create_dir(&sdir).unwrap();
    fs::set_permissions(&sdir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        names(&sdir).is_empty(),
        "moved into the new directory: {:?}",
        names(&sdir)
    );
}

/// Counter `field` of `/proc/<pid>/io` (`syscr`: read-type syscalls made
/// so far, `syscw`: write-type).
fn io_counter(pid: u32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(": "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// An idle node sleeps: with a worker in the session and nothing
/// happening it runs a round once a second, not every 100 ms (its reads
/// were ≈ 186 a second, now ≈ 20: `/proc/<pid>/io`; all its syscalls
/// ≈ 1,260 a second, now ≈ 260, `strace -c -f`). It still hears of a
/// worker's death at once — the release of the worker's locks is a change
/// in the session directory (inotify) — and reports and cleans it up.
#[test]
fn an_idle_node_sleeps_and_still_reports_a_death() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("an_idle_node_sleeps_and_still_reports_a_death");
    let scratch = proc_support::scratch("swn", "idle");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "idle");
    let mut w = spawn_worker(&root, "idle", 4);
    let pid = node.kid.pid();
    // Past the rounds the worker's arrival called for.
    std::thread::sleep(Duration::from_millis(1_500));
    let (r0, t0) = (io_counter(pid, "syscr"), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let per_s = (io_counter(pid, "syscr") - r0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        per_s < 60.0,
        "an idle node made {per_s:.0} read syscalls a second"
    );
    let id = worker_id(4).to_string();
    w.sigkill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.starts_with(&format!("worker {id}")) && l.ends_with(" died"))
    {
        assert!(
            Instant::now() < deadline,
            "no death reported: {:?}",
            node.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !names(&root.join("idle")).iter().any(|n| n.contains(&id)),
        "the dead worker's entry is left: {:?}",
        names(&root.join("idle"))
    );
    node.kid.signal_and_wait("-TERM");
    assert!(names(&root).is_empty(), "{:?}", names(&root.join("idle")));
}

/// An idle worker rewrites its statistics area only when its figures
/// change, and once a second besides (each publish heals a damaged
/// header), not every 50 ms whatever happened: ≈ 60 `pwrite`s a second
/// before (three per publish), ≈ 3 now. Its figures still reach `inspect`
/// as soon as they change (the calls below).
#[test]
fn an_idle_worker_does_not_rewrite_its_statistics_area() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("an_idle_worker_does_not_rewrite_its_statistics_area");
    let scratch = proc_support::scratch("swn", "idlew");
    let root = scratch.path().join("root");
    let w = spawn_worker(&root, "iw", 5);
    std::thread::sleep(Duration::from_millis(500));
    let (w0, t0) = (io_counter(w.pid(), "syscw"), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let per_s = (io_counter(w.pid(), "syscw") - w0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        per_s < 20.0,
        "an idle worker made {per_s:.0} write syscalls a second"
    );
    let session = Session::open_in(&root, "iw").unwrap();
    let mut driver =
        CoreWorker::new(&session, CoreWorkerOptions::new(NodeId::from_random())).unwrap();
    for x in 0..7 {
        assert_eq!(square(&mut driver, 5, x).unwrap(), x * x);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = inspect_json(&root, "iw");
        let w5 = worker_json(&doc, "w5").cloned().unwrap_or_default();
        if w5["handlers"]
            .as_array()
            .is_some_and(|hs| hs.iter().any(|h| h["count"] == 7))
        {
            break;
        }
        assert!(Instant::now() < deadline, "figures never arrived: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(driver);
    drop(w);
    let _ = session.remove_all();
}

/// A statistics area lists at most `MAX_CONNECTIONS` (64) connections;
/// `inspect` used to show 64 of a worker's 70 as if that were all (the
/// attack of 2026-12-02: hostile connections could push real callers out
/// of view unseen). The area now carries how many it did not list, and
/// `inspect` says so in text and JSON.
#[test]
fn inspect_says_how_many_connections_it_does_not_list() {
    use shmwire::node::stats_area::MAX_CONNECTIONS;
    use shmwire::transport::{Connector, TransportConfig};
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("inspect_says_how_many_connections_it_does_not_list");
    let scratch = proc_support::scratch("swn", "unlisted");
    let root = scratch.path().join("root");
    let _w = spawn_worker(&root, "ul", 6);
    let session = Session::open_in(&root, "ul").unwrap();
    let token = shmwire::node::load_or_create_token(&session).unwrap();
    let dir = Arc::new(shmwire::node::Directory::for_session(&session).unwrap());
    let extra = 6;
    let conns: Vec<_> = (0..MAX_CONNECTIONS + extra)
        .map(|_| {
            Connector::new(
                TransportConfig::new(WorkerId::from_random(), token),
                NodeId::from_random(),
            )
            .with_session(&session, dir.clone())
            .force_tcp(true)
            .connect_name("w6")
            .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc = inspect_json(&root, "ul");
        let w6 = worker_json(&doc, "w6").cloned().unwrap_or_default();
        if w6["connections_unlisted"] == extra {
            break doc;
        }
        assert!(Instant::now() < deadline, "never counted: {doc:#}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let w6 = worker_json(&doc, "w6").unwrap();
    assert_eq!(
        w6["connections"].as_array().unwrap().len(),
        MAX_CONNECTIONS,
        "{w6}"
    );
    let (ok, text, err) = shmwire(&root, &["inspect", "--session", "ul"]);
    assert!(ok, "{err}");
    assert!(
        text.contains(&format!(
            "… and {extra} more connection(s), not listed (an area lists {MAX_CONNECTIONS})"
        )),
        "{text}"
    );
    drop(conns);
    let _ = session.remove_all();
}

/// Two faults found by the attack on `6bf9e1b`, with the node's rounds woken
/// by changes in its session directory:
/// - a junk file made and renamed over the node's process lock: the round
///   the new file woke checked the lock (intact), the rename landed, and
///   the pass that followed took the node's own stem for dead — it removed
///   the node's statistics area and its store's socket (5 times of 5),
///   then put them back. A process's own files are never dead to its own
///   pass now (only its lock is put back);
/// - the session marker removed: never put back, so `inspect` called the
///   live session "directory without a session marker" and `cleanup` would
///   not touch it. The node puts it back now.
#[test]
fn the_node_never_removes_its_own_files_and_puts_the_marker_back() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("the_node_never_removes_its_own_files_and_puts_the_marker_back");
    let scratch = proc_support::scratch("swn", "ownfiles");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "of");
    let dir = root.join("of");
    let pid = node.kid.pid();
    let lock = names(&dir)
        .into_iter()
        .find(|n| n.starts_with(&format!("proc-{pid}-")))
        .expect("the node's process lock");
    for i in 0..5 {
        let junk = dir.join(format!("junk{i}"));
        fs::write(&junk, b"junk").unwrap();
        fs::rename(&junk, dir.join(&lock)).unwrap();
        // Put back (the junk replaced by an empty lock file) within a
        // round or two.
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read(dir.join(&lock)).ok().as_deref() != Some(&b""[..]) {
            assert!(
                Instant::now() < deadline,
                "the lock was not put back: {:?}",
                node.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let own = format!("-{pid}-");
    let lines = node.lines.lock().unwrap().clone();
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("removed:") && (l.contains(&own))),
        "the node removed its own files: {lines:?}"
    );
    assert!(
        names(&dir)
            .iter()
            .any(|n| n.starts_with(&format!("stats-{pid}-"))),
        "{:?}",
        names(&dir)
    );
    // The marker.
    fs::remove_file(dir.join(".shmwire-session")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !dir.join(".shmwire-session").is_file() {
        assert!(
            Instant::now() < deadline,
            "the marker was not put back: {:?}",
            node.lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (ok, text, err) = shmwire(&root, &["inspect"]);
    assert!(ok, "{err}");
    assert!(!text.contains("without a session marker"), "{text}");
    node.kid.signal_and_wait("-TERM");
    assert!(names(&root).is_empty(), "{:?}", names(&dir));
}

/// Resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

/// An idle TCP connection costs its worker little memory: its buffers
/// start small and grow as frames need. Before, each started with its
/// whole send buffer (256 KiB) and a 64 KiB receive buffer, zero-filled,
/// so resident: ≈ 320 KiB per connection (the attack on `6bf9e1b`: 1,000
/// idle connections with the token grew a worker to 332 MB).
#[test]
fn idle_tcp_connections_cost_a_worker_little_memory() {
    use shmwire::transport::{Connector, TransportConfig};
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("idle_tcp_connections_cost_a_worker_little_memory");
    let scratch = proc_support::scratch("swn", "idlemem");
    let root = scratch.path().join("root");
    let w = spawn_worker(&root, "im", 7);
    let session = Session::open_in(&root, "im").unwrap();
    let token = shmwire::node::load_or_create_token(&session).unwrap();
    let dir = Arc::new(shmwire::node::Directory::for_session(&session).unwrap());
    let connect = || {
        Connector::new(
            TransportConfig::new(WorkerId::from_random(), token),
            NodeId::from_random(),
        )
        .with_session(&session, dir.clone())
        .force_tcp(true)
        .connect_name("w7")
        .unwrap()
    };
    // Warm: the worker's own allocations for its first callers.
    let warm: Vec<_> = (0..8).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = rss_kib(w.pid());
    let n = 200;
    let conns: Vec<_> = (0..n).map(|_| connect()).collect();
    // Every one accepted (the handshake completes on the worker's side).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = inspect_json(&root, "im");
        let w7 = worker_json(&doc, "w7").cloned().unwrap_or_default();
        let listed = w7["connections"].as_array().map_or(0, Vec::len) as u64;
        if listed + w7["connections_unlisted"].as_u64().unwrap_or(0) >= n as u64 + 8 {
            break;
        }
        assert!(Instant::now() < deadline, "not all accepted: {w7}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let per = (rss_kib(w.pid()).saturating_sub(before)) / n as u64;
    eprintln!("{per} KiB resident per idle TCP connection");
    assert!(per < 100, "{per} KiB resident per idle TCP connection");
    drop((conns, warm));
    let _ = session.remove_all();
}

/// Writes all of `bytes` raw to `conn`'s (non-blocking) stream, at most
/// 10 s; `false` if the peer closed or reset it first.
fn write_all_nb(conn: &shmwire::transport::TcpConnection, mut bytes: &[u8]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut w = conn.stream();
    while !bytes.is_empty() {
        match w.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the peer took nothing for 10 s");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// Whether the peer closed or reset `conn`'s stream within `within`
/// (what it sends meanwhile, heartbeats, is read raw and dropped).
fn closed_within(conn: &shmwire::transport::TcpConnection, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut r = conn.stream();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Input (the attack on `e65c959`, high): callers with the session token
/// each open a TCP connection, announce a frame of 16 MiB (the default
/// `max_frame_len`) and send all but 64 bytes of it. The worker grew its
/// receive buffer to 16 MiB on each (64 connections: 1,057 MB; at its 1,024
/// connections, 16 GiB). Now the connections a listener accepted share
/// `max_receive_memory` (here 40 MiB): the connection whose frame would
/// pass it is cut off alone, the worker's memory stays within it, another
/// caller's calls go on, and a connection that ends gives its share back.
#[test]
fn unfinished_large_tcp_frames_stay_within_the_receive_memory() {
    use shmwire::transport::{connect_tcp, TcpConnection, TransportConfig};
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("unfinished_large_tcp_frames_stay_within_the_receive_memory");
    let scratch = proc_support::scratch("swn", "recvmem");
    let root = scratch.path().join("root");
    const BUDGET: usize = 40 << 20;
    const FRAME: usize = 16 << 20;
    let (w, session, token, addr) = tcp_worker_with_budget(&root, "rm", 8, BUDGET);
    let mut opts = CoreWorkerOptions::new(NodeId::from_random());
    opts.force_tcp = true;
    let mut driver = CoreWorker::new(&session, opts).unwrap();
    assert_eq!(square(&mut driver, 8, 3), Ok(9));
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_kib(w.pid());
    // A frame header (length, kind 1 = data, 8 zero bytes), then all but
    // the last 64 bytes of its payload.
    let header = data_frame_header(FRAME);
    let payload = vec![7u8; FRAME - 64];
    let unfinished = || -> TcpConnection {
        // A caller id of its own: a caller's new connection replaces its
        // old one.
        let config = TransportConfig::new(WorkerId::from_random(), token);
        let c = connect_tcp(addr, worker_id(8), &config).unwrap();
        // A write may fail once the worker has cut the connection off.
        let _ = write_all_nb(&c, &header) && write_all_nb(&c, &payload);
        c
    };
    // Two fit (16 MiB each), not four. Which are cut off depends on the
    // order in which the worker reads them (their bytes wait in the
    // kernel meanwhile): the one whose buffer would grow past what is left.
    let conns: Vec<TcpConnection> = (0..4).map(|_| unfinished()).collect();
    let cut: Vec<bool> = conns
        .iter()
        .map(|c| closed_within(c, Duration::from_millis(1000)))
        .collect();
    let grew_kib = rss_kib(w.pid()).saturating_sub(before);
    let kept = cut.iter().filter(|c| !**c).count();
    assert!((1..=2).contains(&kept), "cut off: {cut:?}");
    // Without the budget: 4 × 16 MiB = 64 MiB.
    assert!(
        grew_kib < (BUDGET as u64 >> 10) + 8 * 1024,
        "the worker grew by {grew_kib} KiB, its budget being {} KiB",
        BUDGET >> 10
    );
    // The others' calls go on meanwhile.
    assert_eq!(square(&mut driver, 8, 4), Ok(16));
    // Connections that end give their shares back: two frames of 16 MiB
    // fit again (the worker notices the ends at its next turn).
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    let again: Vec<TcpConnection> = (0..2).map(|_| unfinished()).collect();
    for c in &again {
        assert!(
            !closed_within(c, Duration::from_millis(500)),
            "a frame that fits after the others ended was cut off"
        );
    }
    drop((again, driver));
    let _ = session.remove_all();
}

/// A worker (`spawn_worker_with`) whose TCP connections share
/// `receive_memory` bytes, its session, the session's token and its TCP
/// address.
fn tcp_worker_with_budget(
    root: &Path,
    session: &str,
    n: u8,
    receive_memory: usize,
) -> (
    Kid,
    Session,
    shmwire::transport::SessionToken,
    std::net::SocketAddr,
) {
    let worker = spawn_worker_with(root, session, n, receive_memory);
    let session = Session::open_in(root, session).unwrap();
    let token = shmwire::node::load_or_create_token(&session).unwrap();
    let addr = shmwire::node::Directory::for_session(&session)
        .unwrap()
        .lookup(&worker_id(n))
        .unwrap()
        .tcp
        .expect("the worker listens on TCP");
    (worker, session, token, addr)
}

/// A TCP data frame's header (length, kind 1 = data, 8 zero bytes) for a
/// frame of `len` bytes.
fn data_frame_header(len: usize) -> [u8; 16] {
    let mut header = [0u8; 16];
    header[..4].copy_from_slice(&(len as u32).to_le_bytes());
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    header
}

/// Whether the peer closed or reset `conn`'s stream, looked at now
/// (what it sent, heartbeats, is read raw and dropped).
fn closed_now(conn: &shmwire::transport::TcpConnection) -> bool {
    let mut r = conn.stream();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Input (known limit of the re-attack on `8744a0d`): token holders that
/// send all but the last bytes of 16 MiB frames and then drip a byte now
/// and then (so their connections stay alive) held the listener's receive
/// memory for as long as they dripped, and every other caller's frame over
/// 256 KiB was cut off meanwhile. Now a frame unfinished for longer than
/// the grace (the liveness bound, 5 s) without 64 KiB arriving in it loses
/// its memory to a connection that needs it, the stalest first: the
/// newcomer's frame is kept and the dripper is cut off — not the honest
/// sender whose older 16 MiB frame is still arriving at ≈ 320 KiB/s (the
/// attack on `58273f5`: such a frame lost to a newer one on age alone).
#[test]
fn a_stale_unfinished_frame_gives_its_receive_memory_to_a_new_one() {
    use shmwire::transport::{connect_tcp, TcpConnection, TransportConfig};
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_stale_unfinished_frame_gives_its_receive_memory_to_a_new_one");
    let scratch = proc_support::scratch("swn", "stalefr");
    let root = scratch.path().join("root");
    const BUDGET: usize = 40 << 20;
    const FRAME: usize = 16 << 20;
    let (_worker, session, token, addr) = tcp_worker_with_budget(&root, "sf", 9, BUDGET);
    let header = data_frame_header(FRAME);
    // A connection that sent the header and `sent` bytes of the frame.
    let started = |sent: usize| -> TcpConnection {
        let config = TransportConfig::new(WorkerId::from_random(), token);
        let c = connect_tcp(addr, worker_id(9), &config).unwrap();
        assert!(write_all_nb(&c, &header) && write_all_nb(&c, &vec![7u8; sent]));
        c
    };
    // Whether the worker cut `c` off; else `more` bytes into its frame.
    let feed = |c: &TcpConnection, more: usize| -> bool {
        closed_now(c) || !write_all_nb(c, &vec![7u8; more])
    };
    // The honest sender first (the oldest frame), then the dripper.
    let honest = started(8 << 20);
    let dripper = started(FRAME - 64);
    // Past the grace (5 s): the honest frame keeps arriving (128 KiB every
    // 400 ms), the dripper drips (a byte every 400 ms: alive, stale).
    let until = Instant::now() + Duration::from_millis(6_000);
    while Instant::now() < until {
        assert!(
            !feed(&honest, 128 << 10),
            "the honest sender was cut off early"
        );
        assert!(!feed(&dripper, 1), "the dripper was cut off early");
        std::thread::sleep(Duration::from_millis(400));
    }
    // 8 MiB are left; the newcomer needs 16: the stale frame gives way.
    let newcomer = started(FRAME - 64);
    let (mut honest_cut, mut dripper_cut) = (false, false);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until && !dripper_cut {
        std::thread::sleep(Duration::from_millis(200));
        honest_cut |= feed(&honest, 64 << 10);
        dripper_cut |= feed(&dripper, 1);
    }
    assert!(
        !closed_within(&newcomer, Duration::from_millis(500)),
        "the newcomer's frame was cut off: the stale frame kept its memory"
    );
    assert!(dripper_cut, "the stale dripper kept its memory");
    assert!(
        !honest_cut && !feed(&honest, 1),
        "the honest sender, its frame still arriving, lost its memory"
    );
    drop((honest, dripper, newcomer));
    let _ = session.remove_all();
}

/// Input (the attack on `e65c959`, medium): `shmwire node --root dir`, a
/// relative root. The session's paths were relative to the node's current
/// directory, and so were the Unix socket paths published in its
/// directory entries: a client of the session started in another
/// directory, given the same root as an absolute path, found the store
/// and could not connect ("no worker … listens at dir/s/.s-….sock"). A
/// relative root is now made absolute when the session is opened, and
/// resolved where it exists: here `../relative-root`, from a directory
/// renamed while the node runs (re-attack on `8744a0d`: with the path
/// only prefixed, the node then took its session directory for removed
/// and stopped).
#[test]
fn a_relative_root_publishes_paths_any_directory_reaches() {
    let _watchdog = proc_support::watchdog("a_relative_root_publishes_paths_any_directory_reaches");
    let scratch = proc_support::scratch("swn", "relroot");
    let cwd = scratch.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_shmwire"))
        .args(["node", "--session", "rel", "--store-capacity", "4M"])
        .args(["--root", "../relative-root"])
        .current_dir(&cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shmwire node");
    let mut kid = Kid(child);
    let mut out = BufReader::new(kid.0.stdout.take().unwrap());
    wait_for(&mut out, "node ready:");
    fs::rename(&cwd, scratch.path().join("cwd-renamed")).unwrap();
    let root = scratch.path().join("relative-root");
    let entries: Vec<String> = fs::read_dir(root.join("rel"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".entry"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect();
    let sockets: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("unix=")))
        .collect();
    assert!(!sockets.is_empty(), "no socket published: {entries:?}");
    for unix in sockets {
        assert!(unix.starts_with('/'), "a relative socket path: {unix}");
    }
    // This process's current directory is not the node's.
    let session = Session::open_in(&root, "rel").unwrap();
    let store = StoreClient::connect(&session, DEFAULT_STORE_NAME)
        .unwrap_or_else(|e| panic!("from another directory: {e}"));
    store
        .put(ObjectId::from_array([4; 28]), &[1u8; 64], b"")
        .unwrap();
    drop(store);
    drop(session);
    // Its rounds (every second) still find its session directory.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(kid.0.try_wait().unwrap().is_none(), "the node stopped");
    let (status, err) = kid.signal_and_collect("-TERM", Duration::from_secs(20));
    assert!(status.success(), "{status}: {err}");
}

/// Input (the attack on `e65c959`, medium): a node whose stdout reader is
/// alive but stops reading. One long report (30,000 empty files with
/// segment-like names, removed by a round after 10 s: a line of ≈ 330 KB)
/// filled the pipe, and the node's loop blocked in `write(2)` for good:
/// no more rounds, SIGTERM never acted on, `/health` still "ok". Now its
/// lines go through an output thread (`out::background`): the loop goes
/// on, SIGTERM stops the node, and it exits after a bounded wait for its
/// output, its session removed.
#[test]
fn a_node_whose_output_is_not_read_still_stops_on_sigterm() {
    let _watchdog =
        proc_support::watchdog("a_node_whose_output_is_not_read_still_stops_on_sigterm");
    let scratch = proc_support::scratch("swn", "stalled-out");
    let root = scratch.path().join("root");
    let (mut kid, out, _) = proc_support::spawn_node_with(
        &root,
        &["--session", "quiet", "--store-capacity", "4M"],
        Stdio::piped(),
    );
    // Its stdout is not read from here on (`out` is kept: not closed).
    let dir = root.join("quiet");
    for i in 0..30_000 {
        fs::File::create(dir.join(format!("u{i:06}"))).unwrap();
    }
    let junk = || {
        fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('u'))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while junk() > 0 {
        assert!(Instant::now() < deadline, "{} junk files left", junk());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The round that removed them has printed them (or is printing them).
    std::thread::sleep(Duration::from_millis(500));
    // Its stderr is read, and says what happens while stdout stalls (the
    // attack on `0060161`: both streams shared one queue, so the warning
    // below waited behind the unread report for good).
    let err = Arc::new(Mutex::new(String::new()));
    let mut stderr = kid.0.stderr.take().unwrap();
    let e2 = err.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stderr, &mut buf) {
            if n == 0 {
                break;
            }
            e2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    fs::remove_file(dir.join(".token")).unwrap();
    within(Duration::from_secs(10), || {
        let text = err.lock().unwrap().clone();
        if text.contains("put back: session token") {
            Ok(())
        } else {
            Err(format!("stderr so far: {text}"))
        }
    })
    .unwrap();
    let (status, _) = kid.signal_and_collect("-TERM", Duration::from_secs(15));
    reader.join().unwrap();
    let err = err.lock().unwrap().clone();
    assert!(status.success(), "{status}: {err}");
    assert!(!dir.exists(), "session left: {err}");
    drop(out);
}

/// `/health` answers 503 naming the node while the node cannot put back
/// one of its own files — here its node lock, replaced by a directory it
/// does not remove — and 200 again once it could. Before (the attack on
/// `0060161`), `/health` asked only the store and the object endpoint, and
/// said `200 ok` throughout.
#[test]
fn health_names_the_node_while_it_cannot_put_its_files_back() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("health_names_the_node_while_it_cannot_put_its_files_back");
    let scratch = proc_support::scratch("swn", "health");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "hl");
    assert!(http_get(&node.addr, "/health").starts_with("HTTP/1.0 200"));
    let lock = root.join("hl").join(".node.lock");
    fs::remove_file(&lock).unwrap();
    fs::create_dir(&lock).unwrap();
    fs::write(lock.join("x"), b"x").unwrap();
    let h = within(Duration::from_secs(10), || {
        let h = http_get(&node.addr, "/health");
        if h.starts_with("HTTP/1.0 503") {
            Ok(h)
        } else {
            Err(h)
        }
    })
    .expect("/health never said the node lost its node lock");
    assert!(
        h.contains("node: the session's node lock was removed or replaced"),
        "{h}"
    );
    fs::remove_dir_all(&lock).unwrap();
    within(Duration::from_secs(10), || {
        let h = http_get(&node.addr, "/health");
        if h.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(h)
        }
    })
    .unwrap();
    node.kid.signal_and_wait("-TERM");
}

/// A node stopped by a signal removes the root it made (now empty), as
/// `demo` and `bench` do, and keeps one that existed (attack on `fcd9365`:
/// the README says it leaves nothing of its own).
#[test]
fn a_stopped_node_removes_the_root_it_made() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("missing-root");
    let existing = scratch.path().join("existing-root");
    std::fs::create_dir(&existing).unwrap();
    std::fs::set_permissions(
        &existing,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    for root in [&missing, &existing] {
        let (mut kid, mut out, _) =
            proc_support::spawn_node(root, &["--session", "made-root", "--store-capacity", "4M"]);
        let drain = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        });
        let (status, _) = kid.signal_and_collect("-TERM", std::time::Duration::from_secs(30));
        assert!(status.success(), "{status}");
        drain.join().unwrap();
        if root == &missing {
            assert!(!missing.exists(), "the node left the root it made");
        } else {
            assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 0);
        }
    }
}

/// Input (the attack on `d7747d2`, low): `--object-listen 0.0.0.0:0`. The
/// ready line said "objects 0.0.0.0:<port>" — not an address another node
/// can pull from — and nothing said that every sealed object was now
/// served beyond loopback without a token. The node warns, once, for each
/// endpoint that listens beyond loopback; on the loopback defaults it says
/// nothing.
#[test]
fn an_endpoint_beyond_loopback_is_warned_of() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog = proc_support::watchdog("an_endpoint_beyond_loopback_is_warned_of");
    let scratch = proc_support::scratch("swn", "wide");
    let root = scratch.path().join("root");
    for wide in [true, false] {
        let mut args = vec!["--session", "wide", "--store-capacity", "1M"];
        if wide {
            args.extend(["--object-listen", "0.0.0.0:0"]);
        }
        let (mut kid, _out, ready) = proc_support::spawn_node_with(&root, &args, Stdio::piped());
        let (status, err) = kid.signal_and_collect("-TERM", Duration::from_secs(20));
        assert!(status.success(), "{status}: {err}");
        let warned: Vec<&str> = err.lines().filter(|l| l.contains("warning:")).collect();
        if wide {
            let port = ready
                .split(", ")
                .find_map(|w| w.strip_prefix("objects 0.0.0.0:"))
                .expect(&ready);
            assert_eq!(warned.len(), 1, "{err}");
            assert!(
                warned[0].contains("object endpoint listens at 0.0.0.0:")
                    && warned[0].contains(&format!("port {port}, not at"))
                    && warned[0].contains("no token"),
                "{err}"
            );
        } else {
            assert!(warned.is_empty(), "{err}");
        }
    }
}

/// Input (the attacks on `1b5f3c1` and `5aeed3d`, medium): another
/// process of the user writes a directory entry of its own under the
/// store's name — without claiming the name — with a lower worker id than
/// the store's, holds its lock, and listens on a socket that never
/// answers; then it deletes the store's own entry. Right behaviour: lookups
/// by the name pass over the planted entry (its process does not hold the
/// name's claim, which the node holds for its life): a store client
/// reaches the store beside it; with the store's entry deleted, a client
/// fails at once naming the name's claimant (never reaching the planted
/// socket) until the node puts its entry back (about a second), then
/// reaches the store again; the node's `/health` names the planted entry
/// (503) while it lives. Before: with both entries, every client failed
/// (the name held twice), and with the store's entry deleted every new store
/// client went to the planted socket and timed out after 5 s, the node
/// unable to put its entry back ("name … is taken by live worker …").
#[test]
fn a_name_planted_beside_a_live_workers_is_passed_over_and_reported() {
    if child_spec().is_some() {
        return;
    }
    let _watchdog =
        proc_support::watchdog("a_name_planted_beside_a_live_workers_is_passed_over_and_reported");
    let scratch = proc_support::scratch("swn", "dupname");
    let root = scratch.path().join("root");
    let mut node = start_node(&root, "dup");
    let session = Session::open_in(&root, "dup").unwrap();
    let store_id = shmwire::node::Directory::for_session(&session)
        .unwrap()
        .lookup_name(DEFAULT_STORE_NAME)
        .unwrap()
        .worker_id;
    let store_entry = session.dir().join(format!(".w-{store_id}.entry"));
    let silent_path = scratch.path().join("silent.sock");
    let _silent = std::os::unix::net::UnixListener::bind(&silent_path).unwrap();
    let mut planted = shmwire::transport::Endpoint::new(WorkerId::from_array([0; 28]));
    planted.name = Some(DEFAULT_STORE_NAME.to_owned());
    planted.pid = std::process::id();
    planted.unix_socket = Some(silent_path.clone());
    let entry = session
        .dir()
        .join(format!(".w-{}.entry", planted.worker_id));
    fs::write(&entry, planted.encode()).unwrap();
    let held = fs::File::open(&entry).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let put = |what: &str| {
        let t = Instant::now();
        let r = StoreClient::connect(&session, DEFAULT_STORE_NAME).and_then(|c| {
            c.put(ObjectId::from_random(), b"x", b"")?;
            Ok(())
        });
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
        r.map_err(|e| shmwire::error_chain(&e))
    };
    let until = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = Instant::now() + GUARD;
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Beside the store's entry: passed over, and reported.
    put("beside the planted entry").unwrap();
    let claimant = format!("worker {store_id} holds its claim; its entry is missing");
    until("/health to name the planted entry", &|| {
        let h = http_get(&node.addr, "/health");
        h.starts_with("HTTP/1.0 503")
            && h.contains("also used by live entries of workers that do not hold its claim")
            && h.contains(&format!("worker {store_id} holds it"))
    });

    // The store's entry deleted: refused at once, naming the claimant,
    // until the node puts it back.
    fs::remove_file(&store_entry).unwrap();
    until(
        "the store to be reached again",
        &|| match put("its entry deleted") {
            Ok(()) => true,
            Err(e) => {
                assert!(
                    e.contains("not held by its claimant") && e.contains(&claimant),
                    "a client with the store's entry deleted: {e}"
                );
                false
            }
        },
    );
    for _ in 0..5 {
        if let Err(e) = put("its entry put back") {
            panic!("after the node put its entry back: {e}");
        }
    }
    assert!(store_entry.exists(), "the node put its entry back");

    drop(held);
    fs::remove_file(&entry).unwrap();
    until("/health to be ok again", &|| {
        http_get(&node.addr, "/health").starts_with("HTTP/1.0 200")
    });
    put("after the planted entry went").unwrap();
    node.kid.signal_and_wait("-TERM");
}

/// Input (the attack on `35c208a`, medium): a node under a file-size limit
/// (`ulimit -f`). Growing a file past it is `SIGXFSZ`, whose default
/// action killed the node without a word, leaving its session files. Now
/// the CLI handles `SIGXFSZ`, so a write past the limit fails with `EFBIG`
/// and says so (`ulimit -f 0`: the session token), and the library checks
/// the limit before it sizes a file from a length it was given, naming it
/// (`ulimit -f 1000`, 512-byte blocks in `sh`: the store's 64 MiB arena).
/// Either way the node exits 1 with the cause and leaves no session
/// behind.
#[test]
fn a_node_under_a_file_size_limit_names_it_and_is_not_killed() {
    let root = proc_support::scratch("fsize", "node");
    for (blocks, says) in [
        (0, "File too large"),
        (
            1000,
            "exceed this process's file-size limit of 512000 bytes",
        ),
    ] {
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -f {blocks} && exec \"$0\" node --session fs --root \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_shmwire"))
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut kid = Kid(child);
        let (status, err) = kid.wait_and_collect(Duration::from_secs(30));
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "ulimit -f {blocks}: {status:?}, {err}"
        );
        assert!(err.contains(says), "ulimit -f {blocks}: {err}");
        assert!(
            !root.path().join("fs").exists(),
            "ulimit -f {blocks}: the session was left"
        );
    }
}

/// Input (the attack on `35c208a`, low): a node that cannot start a thread
/// (its user at its process limit, `ulimit -u`). The CLI's output thread
/// was started with `expect`: a panic, exit 101. Now the node exits 1
/// saying what failed. Run as user `nobody` (the limit does not bind
/// root), under `ulimit -u 1`: the shell `exec`s the node, whose first
/// thread is then one process too many.
#[test]
fn a_node_that_cannot_start_a_thread_says_so() {
    let Some((root, mut setpriv)) = as_nobody("nproc") else {
        return;
    };
    let child = setpriv
        .args([
            "bash",
            "-c",
            "ulimit -u 1 && exec \"$0\" node --session np --root \"$1\"",
        ])
        .arg(env!("CARGO_BIN_EXE_shmwire"))
        .arg(root.path().join("r"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut kid = Kid(child);
    let (status, err) = kid.wait_and_collect(Duration::from_secs(30));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{status:?}: {err}");
    assert!(
        err.contains("spawn an output thread: Resource temporarily unavailable"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Input (the attack on `35c208a`, low): a session directory stuffed with
/// files shmwire did not make (100,000 there). On stop the node named
/// every one on one line (1.6 MB). Now it names the first 8 and says how
/// many more.
#[test]
fn a_node_stopping_beside_many_foreign_files_names_a_few_and_counts_the_rest() {
    let root = proc_support::scratch("foreign", "node");
    let (node, mut out, _) =
        proc_support::spawn_node(root.path(), &["--session", "fj", "--store-capacity", "1M"]);
    for i in 0..300 {
        fs::write(root.path().join("fj").join(format!("junk-{i:04}")), b"").unwrap();
    }
    node.signal("-TERM");
    let last = wait_for(&mut out, "node stopped");
    assert!(
        last.contains("kept (300 entries shmwire did not make") && last.contains(" and 292 more)"),
        "{last}"
    );
    assert!(last.len() < 400, "{} bytes: {last}", last.len());
    drop(node);
}

/// Input (the attack on `59a1fb2`, low): files named like segments that
/// the node's user cannot open (mode 000) in its session directory, 3,000
/// of them. Every one failed the cleanup at stop, and the stop line
/// joined every error (210 KB). Now it names 8 and counts the rest. Run
/// as user `nobody` (root opens any file).
#[test]
fn a_node_stopping_beside_many_unreadable_files_names_a_few_errors() {
    let Some((scratch, mut setpriv)) = as_nobody("unreadable") else {
        return;
    };
    let nobody = rustix::process::Uid::from_raw(NOBODY);
    let nogroup = rustix::process::Gid::from_raw(NOBODY);
    let root = scratch.path().join("r");
    let child = setpriv
        .arg(env!("CARGO_BIN_EXE_shmwire"))
        .args([
            "node",
            "--session",
            "ur",
            "--store-capacity",
            "1M",
            "--root",
        ])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kid = Kid(child);
    let mut out = BufReader::new(kid.0.stdout.take().unwrap());
    wait_for(&mut out, "node ready:");
    for i in 0..40 {
        let p = root.join("ur").join(format!("seg-{i}-{i}"));
        fs::write(&p, b"").unwrap();
        rustix::fs::chown(&p, Some(nobody), Some(nogroup)).unwrap();
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    }
    kid.signal("-INT");
    let last = wait_for(&mut out, "node stopped");
    assert!(
        last.contains("kept (cleanup failed: ") && last.contains(" and 32 more)"),
        "{last}"
    );
    assert!(last.len() < 2_000, "{} bytes: {last}", last.len());
    assert!(kid.wait_timeout(Duration::from_secs(30)).is_some());
}

/// For the tests that run a node as user `nobody` (a limit root is exempt
/// from, a file root could open): a private scratch directory owned by
/// `nobody` and a `setpriv` command that runs its program as `nobody`;
/// `None` (the test says SKIPPED) when this process is not root, as CI is.
fn as_nobody(tag: &str) -> Option<(tempfile::TempDir, Command)> {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: running the node as `nobody` needs root");
        return None;
    }
    let scratch = proc_support::scratch(tag, "node");
    rustix::fs::chown(
        scratch.path(),
        Some(rustix::process::Uid::from_raw(NOBODY)),
        Some(rustix::process::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    Some((scratch, cmd))
}

/// User and group id of `nobody`.
const NOBODY: u32 = 65534;
