//! Shared by the worker examples: start worker processes by re-executing the
//! example itself (`<exe> __worker <session> <worker id> <node id> <callers>
//! <driver pid>`), serve in them until their callers are done or the driver
//! died, and clean up (kill, reap, remove the session) on drop.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmwire::ids::{NodeId, WorkerId};
use shmwire::node::Directory;
use shmwire::shm::Session;
use shmwire::worker::{FunctionRegistry, Worker, WorkerOptions};

/// Bound on every wait of the examples.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// For a driver that takes no arguments (after [`maybe_serve`]): `-h` or
/// `--help` prints `usage` and exits 0; any other argument prints it to
/// stderr and exits 2.
pub fn no_arguments(usage: &str) {
    let Some(arg) = std::env::args().nth(1) else {
        return;
    };
    if arg == "-h" || arg == "--help" {
        println!("{usage}");
        std::process::exit(0);
    }
    eprintln!("unexpected argument {arg:?}\n{usage}");
    std::process::exit(2);
}

/// If this process was started as a worker, serves with `registry()` and
/// exits; otherwise returns.
pub fn maybe_serve(registry: impl FnOnce() -> FunctionRegistry) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some("__worker") || args.len() != 7 {
        return;
    }
    let run = || -> Result<()> {
        let session = Session::open(&args[2])?;
        let served = serve(&session, &args, registry);
        // On every way out our own files go (and what a dead driver left;
        // the session directory too once no process of it lives): a driver
        // killed mid-run cannot remove them for us.
        let _ = session.remove_all();
        served
    };
    std::process::exit(match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("worker: {}", shmwire::error_chain(&*e));
            1
        }
    });
}

/// Serves as `args` say until the callers are done or the driver died.
fn serve(
    session: &Session,
    args: &[String],
    registry: impl FnOnce() -> FunctionRegistry,
) -> Result<()> {
    let id: WorkerId = args[3].parse()?;
    let node: NodeId = args[4].parse()?;
    let callers: u64 = args[5].parse()?;
    let driver: u32 = args[6].parse()?;
    let mut worker = Worker::bind(session, WorkerOptions::new(id, node), Arc::new(registry()))?;
    // Done when the callers are; a driver that died (we were
    // reparented; however early: it passed its own pid) never connects
    // or closes, so waiting on would keep its session for nobody.
    // Asked without a connection (the driver never came) and every 64th
    // turn otherwise: not a syscall per served message.
    let (mut orphaned, mut turn) = (false, 0u32);
    worker.run_until(TIMEOUT, |w| {
        turn = turn.wrapping_add(1);
        if w.num_connections() == 0 || turn % 64 == 0 {
            orphaned = std::os::unix::process::parent_id() != driver;
        }
        orphaned || (w.connections_accepted() >= callers && w.num_connections() == 0)
    })?;
    if orphaned {
        return Err(format!("the driver (pid {driver}) died").into());
    }
    Ok(())
}

/// The driver's session and its worker processes.
pub struct Cluster {
    pub session: Session,
    pub node: NodeId,
    pub workers: Vec<(WorkerId, Child)>,
}

impl Cluster {
    /// A fresh session named after the example and this process.
    pub fn new(example: &str) -> Result<Self> {
        let session = Session::open(&format!("{example}-{}", std::process::id()))?;
        Ok(Self {
            session,
            node: NodeId::from_random(),
            workers: Vec::new(),
        })
    }

    /// Starts a worker process serving `callers` connections and waits until
    /// it is registered in the session's directory (an error at once if it
    /// exits first: its own message is on stderr).
    pub fn spawn_worker(&mut self, callers: u64) -> Result<WorkerId> {
        let id = WorkerId::from_random();
        let child = Command::new(std::env::current_exe()?)
            .args([
                "__worker",
                self.session.name(),
                &id.to_string(),
                &self.node.to_string(),
                &callers.to_string(),
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("start a worker process: {e}"))?;
        self.workers.push((id, child));
        let dir = Directory::for_session(&self.session)?;
        let deadline = Instant::now() + TIMEOUT;
        while dir.lookup(&id).is_err() {
            let child = &mut self.workers.last_mut().expect("pushed above").1;
            if let Some(status) = child.try_wait()? {
                return Err(format!("worker {id} exited before registering: {status}").into());
            }
            if Instant::now() > deadline {
                return Err(format!("worker {id} did not register within {TIMEOUT:?}").into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(id)
    }

    /// Waits (bounded) for every worker to exit successfully.
    pub fn wait_all(&mut self) -> Result<()> {
        let deadline = Instant::now() + TIMEOUT;
        for (id, child) in &mut self.workers {
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        return Err(format!("worker {id} failed: {status}").into());
                    }
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!("worker {id} did not exit").into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        self.workers.clear();
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.session.remove_all();
    }
}

pub fn i64_arg(x: i64) -> shmwire::spec::TaskArg {
    shmwire::spec::TaskArg::value(x.to_le_bytes().to_vec(), Vec::new())
}

pub fn as_i64(v: &[u8]) -> Result<i64> {
    Ok(i64::from_le_bytes(v.try_into().map_err(|_| "not an i64")?))
}
