//! `shmwire demo`: a driver and an actor worker, two real processes, trading
//! Ray-style actor tasks through every layer of the crate.
//!
//! The driver (this process) starts a worker process (`shmwire
//! __demo-worker`) that hosts one actor, `Counter`, registered in the
//! session's directory under [`ACTOR_NAME`]. For each transport (shared
//! memory first, then TCP forced on the same host) the driver:
//!
//! 1. connects by name through the directory ([`Connector::connect_name`]);
//! 2. builds one `TaskSpec` per call of `Counter.add(x)` with
//!    [`TaskSpecBuilder::build_actor_task`] (Ray's `SubmitActorTask`: one
//!    extra return for the actor cursor, return ids from the task id);
//! 3. hands it to an [`ActorSubmitQueue`], which stamps Ray's sequence
//!    numbers and `client_processed_up_to` and keeps the bytes in flight
//!    bounded; every `Send` it emits is encoded in place into the peer's ring
//!    (or the TCP buffer) as a `PushTaskRequest`;
//! 4. matches each `PushTaskReply` to its request, feeds it back to the
//!    submit queue and checks the returned running total: replies must show
//!    the additions applied in submission order, with nothing lost and
//!    nothing run twice.
//!
//! The worker validates each request (bytecheck), refuses one meant for
//! another worker, releases tasks through a per-caller
//! [`ActorSchedulingQueue`] in sequence-number order, runs the registered
//! function and replies inline. Two phases per transport are timed: one
//! request at a time (round-trip latency) and a window of requests in
//! flight (throughput).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmwire::ids::{ActorId, JobId, NodeId, ObjectId, TaskId, WorkerId};
use shmwire::ordering::{
    ActorSchedulingQueue, ActorSubmitQueue, Delivery, RequestId, SubmitEvent, TaskMeta,
    DEFAULT_REORDER_WAIT,
};
use shmwire::shm::Session;
use shmwire::spec::{
    self, ActorTaskTarget, Address, ArchivedTaskArg, Encoder, FunctionDescriptor, InlineData,
    PushTaskReply, PushTaskRequest, ReturnObject, ReturnValue, RpcStatus, StatusCode, TaskArg,
    TaskSpec, TaskSpecBuilder,
};
use shmwire::transport::{
    Connection, Connector, ListenOptions, Listener, MessageConnection, RecvError, ShmOptions,
    TransportConfig,
};
use shmwire::wake::WaitStrategy;

/// Hidden subcommand that plays the worker.
pub const WORKER_SUBCOMMAND: &str = "__demo-worker";
/// The actor's name in the session directory.
pub const ACTOR_NAME: &str = "demo-counter";
/// How long any single wait of the demo may take before it is an error.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Options of `shmwire demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Actor tasks per transport in the throughput phase.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: u64,
    /// Requests kept in flight in the throughput phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub window: u64,
    /// Which transports to run.
    #[arg(long, value_enum, default_value_t = Transports::Both)]
    pub transport: Transports,
    /// How each side waits on shared memory.
    #[arg(long, value_enum, default_value_t = WaitArg::Park)]
    pub wait: WaitArg,
}

/// Transport selection of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transports {
    /// Shared memory, then TCP.
    Both,
    /// Shared memory only.
    Shm,
    /// TCP (forced on this host) only.
    Tcp,
}

/// Wait strategy of the shared-memory transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitArg {
    /// Busy-spin.
    Spin,
    /// Spin, then sleep on the ring's futex word.
    Park,
    /// Spin, then sleep on an eventfd.
    Eventfd,
}

impl WaitArg {
    fn shm_wait(self) -> WaitStrategy {
        match self {
            WaitArg::Spin => WaitStrategy::Spin,
            WaitArg::Park => WaitStrategy::spin_park(),
            WaitArg::Eventfd => WaitStrategy::eventfd(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            WaitArg::Spin => "spin",
            WaitArg::Park => "park",
            WaitArg::Eventfd => "eventfd",
        }
    }
}

/// The worker child: kills and reaps it (and removes the session) unless it
/// was waited for.
struct WorkerProcess {
    child: Option<Child>,
    session: Session,
}

impl WorkerProcess {
    fn wait(mut self) -> DemoResult<()> {
        let mut child = self.child.take().expect("child present until waited");
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("the worker process failed: {status}").into())
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the worker process did not exit".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn check_running(&mut self) -> DemoResult<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                return Err(format!("the worker process exited early: {status}").into());
            }
        }
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.session.remove_all();
    }
}

/// What one phase measured.
struct PhaseStats {
    tasks: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    final_total: i64,
}

impl PhaseStats {
    fn line(&self, label: &str) -> String {
        let us = |ns: u64| ns as f64 / 1000.0;
        format!(
            "  {label:<24} {:>7} tasks  {:>10.0} tasks/s  round trip median {:>8.2} µs  p99 {:>8.2} µs",
            self.tasks,
            self.tasks as f64 / self.elapsed.as_secs_f64(),
            us(self.latency.value_at_quantile(0.5)),
            us(self.latency.value_at_quantile(0.99)),
        )
    }
}

/// Runs the demo (the driver side).
pub fn run(args: &DemoArgs) -> DemoResult<()> {
    let session_name = format!("demo-{}", std::process::id());
    let session = Session::open(&session_name)?;
    let token = shmwire::node::load_or_create_token(&session)?;
    let actor_worker = WorkerId::from_random();
    let transports: &[bool] = match args.transport {
        Transports::Both => &[false, true],
        Transports::Shm => &[false],
        Transports::Tcp => &[true],
    };
    let child = Command::new(std::env::current_exe()?)
        .args([
            WORKER_SUBCOMMAND,
            "--session",
            &session_name,
            "--worker",
            &actor_worker.to_string(),
            "--wait",
            args.wait.as_str(),
            "--connections",
            &transports.len().to_string(),
        ])
        .stdin(Stdio::null())
        .spawn()?;
    let mut worker = WorkerProcess {
        child: Some(child),
        session: session.clone(),
    };

    println!(
        "shmwire demo: driver pid {}, session {}",
        std::process::id(),
        session.dir().display()
    );
    let node_id = NodeId::from_random();
    let driver_id = WorkerId::from_random();
    let connector = Connector::new(TransportConfig::new(driver_id, token), node_id)
        .with_session(
            &session,
            std::sync::Arc::new(shmwire::node::Directory::for_session(&session)?),
        )
        .with_shm_options(ShmOptions::with_wait(args.wait.shm_wait()));

    // The worker registers in the directory once it listens.
    let deadline = Instant::now() + STEP_TIMEOUT;
    let dir = shmwire::node::Directory::for_session(&session)?;
    let endpoint = loop {
        worker.check_running()?;
        match dir.lookup_name(ACTOR_NAME) {
            Ok(e) => break e,
            Err(shmwire::transport::LookupError::NoSuchWorker { .. })
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(format!("the worker never registered: {e}").into()),
        }
    };
    println!(
        "actor worker {} listening: unix socket {:?}, tcp {:?}",
        endpoint.worker_id,
        endpoint.unix_socket.as_deref(),
        endpoint.tcp
    );

    let sample = Caller::new(node_id, driver_id, actor_worker);
    let first = sample.spec(0, 1);
    println!("function descriptor: {}", first.function_descriptor);
    println!(
        "  call site {:?}, call {:?}, default task name {:?}",
        first.function_descriptor.call_site_string(),
        first.function_descriptor.call_string(),
        first.function_descriptor.default_task_name()
    );
    println!(
        "  first task {} (actor {}), {} returns incl. the actor cursor, PushTaskRequest of {} bytes encoded",
        first.task_id,
        sample.actor_id,
        first.num_returns,
        Encoder::new().encoded_len(&request(actor_worker, first.clone(), 0, -1, false))?
    );

    for &force_tcp in transports {
        let label = if force_tcp {
            "tcp (127.0.0.1, forced)".to_string()
        } else {
            format!("shared memory ({})", args.wait.as_str())
        };
        let mut conn = connector
            .clone()
            .force_tcp(force_tcp)
            .connect_name(ACTOR_NAME)?;
        println!("{label}: connected over {:?}", conn.kind());
        // A new handle per connection: its actor counter (and so the
        // receiver's sequence numbers) starts at 0.
        let mut caller = Caller::new(node_id, driver_id, actor_worker);
        let latency_tasks = args.tasks.min(2_000);
        let lat = caller.run_phase(&mut conn, latency_tasks, 1)?;
        println!("{}", lat.line("one at a time"));
        let thr = caller.run_phase(&mut conn, args.tasks, args.window)?;
        println!("{}", thr.line(&format!("window of {}", args.window)));
        println!("  actor total after this caller: {}", thr.final_total);
        conn.close()?;
    }
    worker.wait()?;
    println!("ok: every reply arrived once, in submission order, with the expected running total");
    Ok(())
}

/// The driver's side of one actor handle: ids, the spec template, the
/// running expectation.
struct Caller {
    job_id: JobId,
    driver_task: TaskId,
    actor_id: ActorId,
    actor_worker: WorkerId,
    address: Address,
    function: FunctionDescriptor,
    /// The handle's next actor counter (Ray's `actor_counter`, never reset).
    next_counter: u64,
    previous_cursor: ObjectId,
    encoder: Encoder,
    /// Ray's per-actor submit queue for this handle's connection.
    queue: ActorSubmitQueue<TaskSpec>,
}

impl Caller {
    fn new(node_id: NodeId, driver_id: WorkerId, actor_worker: WorkerId) -> Self {
        let job_id = JobId::from_int(1);
        let driver_task = TaskId::for_driver_task(job_id);
        let actor_id = ActorId::of(job_id, driver_task, 1);
        Self {
            job_id,
            driver_task,
            actor_id,
            actor_worker,
            address: Address {
                node_id,
                ip_address: Ipv4Addr::LOCALHOST.to_string(),
                port: 0,
                worker_id: driver_id,
            },
            function: FunctionDescriptor::python("shmwire_demo", "Counter", "add", ""),
            next_counter: 0,
            previous_cursor: ObjectId::for_actor_handle(actor_id),
            encoder: Encoder::new(),
            queue: ActorSubmitQueue::new(),
        }
    }

    /// The actor task `Counter.add(x)` with actor counter `counter`.
    fn spec(&self, counter: u64, x: i64) -> TaskSpec {
        TaskSpecBuilder::new(self.function.clone())
            .job_id(self.job_id)
            .parent(self.driver_task, counter)
            .caller_address(self.address.clone())
            .arg(TaskArg::value(x.to_le_bytes().to_vec(), b"i64".to_vec()))
            .num_returns(1)
            .build_actor_task(ActorTaskTarget {
                actor_id: self.actor_id,
                actor_counter: counter,
                previous_cursor: self.previous_cursor,
                caller_starts_at: 0,
            })
    }

    /// Submits `tasks` calls of `Counter.add(x)` with `x` = 1, 2, 3, … and at
    /// most `window` requests in flight through the handle's submit queue;
    /// checks every reply.
    fn run_phase<C: Connection>(
        &mut self,
        conn: &mut C,
        tasks: u64,
        window: u64,
    ) -> DemoResult<PhaseStats> {
        let mut outstanding: HashMap<TaskId, (RequestId, Instant, i64)> = HashMap::new();
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
        let mut expected_total: Option<i64> = None;
        let mut submitted = 0u64;
        let mut completed = 0u64;
        let start = Instant::now();
        let mut events = if self.next_counter == 0 {
            self.queue.connect()
        } else {
            Vec::new()
        };
        loop {
            for ev in events.drain(..) {
                match ev {
                    SubmitEvent::Send(req) => {
                        let x = arg_of(&req.task)?;
                        let task_id = req.task.task_id;
                        let msg = request(
                            self.actor_worker,
                            req.task,
                            req.sequence_number,
                            req.client_processed_up_to,
                            req.skip_execution,
                        );
                        conn.send_push_task(&mut self.encoder, &msg)?;
                        outstanding.insert(task_id, (req.id, Instant::now(), x));
                    }
                    SubmitEvent::Completed { .. } => completed += 1,
                    SubmitEvent::Failed {
                        actor_counter,
                        error,
                        ..
                    } => return Err(format!("task {actor_counter} failed: {error:?}").into()),
                    SubmitEvent::Retrying { actor_counter, .. } => {
                        return Err(format!("task {actor_counter} needed a retry").into())
                    }
                    SubmitEvent::ExcessQueueing {
                        num_queued,
                        threshold,
                    } => {
                        println!("  warning: {num_queued} tasks queued (threshold {threshold})")
                    }
                }
            }
            if completed == tasks {
                break;
            }
            if submitted < tasks && submitted - completed < window {
                let counter = self.next_counter;
                let x = submitted as i64 + 1;
                let spec = self.spec(counter, x);
                let meta = TaskMeta {
                    actor_counter: counter,
                    inline_arg_bytes: spec.inline_arg_bytes() as u64,
                    max_retries: 0,
                };
                self.previous_cursor = spec.actor_dummy_object_id().unwrap_or(self.previous_cursor);
                self.next_counter += 1;
                submitted += 1;
                events = self
                    .queue
                    .submit(meta, spec, true)
                    .map_err(|e| e.to_string())?;
                continue;
            }
            // Wait for one reply.
            let (task_id, ok, value) =
                conn.recv_message_with::<PushTaskReply, _>(STEP_TIMEOUT, |r| {
                    let value = r.return_objects.first().and_then(|o| match &o.value {
                        spec::ArchivedReturnValue::Inline(d) => {
                            <[u8; 8]>::try_from(d.data.as_slice())
                                .ok()
                                .map(i64::from_le_bytes)
                        }
                        spec::ArchivedReturnValue::InStore => None,
                    });
                    let ok = r.status.is_ok() && !r.is_application_level_error;
                    (r.task_id, ok, value)
                })?;
            let Some((id, sent_at, x)) = outstanding.remove(&task_id) else {
                return Err(format!("reply for unknown task {task_id}").into());
            };
            latency.record(sent_at.elapsed().as_nanos().max(1) as u64)?;
            if !ok {
                return Err(format!("task {task_id} failed on the actor").into());
            }
            let value = value.ok_or("reply without an inline i64 return")?;
            // The actor adds in submission order: each total is the previous
            // one plus this task's argument.
            if let Some(prev) = expected_total {
                if value != prev + x {
                    return Err(format!(
                        "out-of-order execution: total {value} after adding {x} to {prev}"
                    )
                    .into());
                }
            }
            expected_total = Some(value);
            events = self.queue.on_reply(id, shmwire::ordering::ReplyOutcome::Ok);
        }
        Ok(PhaseStats {
            tasks,
            elapsed: start.elapsed(),
            latency,
            final_total: expected_total.unwrap_or(0),
        })
    }
}

fn request(
    intended_worker_id: WorkerId,
    mut task_spec: TaskSpec,
    sequence_number: i64,
    client_processed_up_to: i64,
    skip_execution: bool,
) -> PushTaskRequest {
    task_spec.skip_execution = skip_execution;
    PushTaskRequest {
        intended_worker_id,
        task_spec,
        sequence_number,
        client_processed_up_to,
        resource_mapping: Vec::new(),
    }
}

fn arg_of(spec: &TaskSpec) -> DemoResult<i64> {
    match spec.args.first() {
        Some(TaskArg::Value(v)) => Ok(i64::from_le_bytes(
            v.data
                .as_slice()
                .try_into()
                .map_err(|_| "argument is not an i64")?,
        )),
        _ => Err("task without an inline argument".into()),
    }
}

/// Arguments of the hidden worker subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Session to join.
    #[arg(long)]
    session: String,
    /// This worker's id (hex).
    #[arg(long)]
    worker: String,
    /// Shared-memory wait strategy.
    #[arg(long, value_enum)]
    wait: WaitArg,
    /// Connections to serve before exiting.
    #[arg(long)]
    connections: u32,
}

/// A registered actor method: takes the actor state and the argument,
/// returns the value.
type Method = fn(&mut i64, i64) -> i64;

/// The worker process: hosts the `Counter` actor until it served the
/// requested number of callers.
pub fn worker_main(args: &WorkerArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shmwire demo worker: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request pulled out of the ring, owned, waiting in the scheduling queue.
struct Pending {
    task_id: TaskId,
    return_id: ObjectId,
    method: String,
    arg: Option<i64>,
    skip_execution: bool,
}

fn serve(args: &WorkerArgs) -> DemoResult<()> {
    let session = Session::open(&args.session)?;
    let token = shmwire::node::load_or_create_token(&session)?;
    let me: WorkerId = args.worker.parse()?;
    let mut methods: HashMap<&'static str, Method> = HashMap::new();
    methods.insert("Counter.add", |state, x| {
        *state += x;
        *state
    });
    methods.insert("Counter.get", |state, _| *state);
    let mut listener = Listener::bind(
        &session,
        TransportConfig::new(me, token),
        ListenOptions {
            shm: Some(ShmOptions::with_wait(args.wait.shm_wait())),
            tcp: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            name: Some(ACTOR_NAME.to_string()),
        },
        &shmwire::node::Directory::for_session(&session)?,
    )?;
    let mut state = 0i64;
    let mut encoder = Encoder::new();
    for _ in 0..args.connections {
        let mut conn = listener.accept_timeout(STEP_TIMEOUT)?;
        // One scheduling queue per caller, as Ray keys them by caller worker.
        let mut queue: ActorSchedulingQueue<Pending> =
            ActorSchedulingQueue::new(DEFAULT_REORDER_WAIT);
        loop {
            let got = conn.recv_push_task_with(me, STEP_TIMEOUT, |req| {
                let spec = &req.task_spec;
                let arg = spec.args.first().and_then(|a| match a {
                    ArchivedTaskArg::Value(v) => <[u8; 8]>::try_from(v.data.as_slice())
                        .ok()
                        .map(i64::from_le_bytes),
                    ArchivedTaskArg::ObjectRef(_) => None,
                });
                (
                    req.sequence_number(),
                    req.client_processed_up_to(),
                    Pending {
                        task_id: spec.task_id,
                        return_id: spec.return_id(0),
                        method: spec.function_descriptor.call_string(),
                        arg,
                        skip_execution: spec.skip_execution,
                    },
                )
            });
            let now = Instant::now();
            match got {
                Ok((seq, processed_up_to, pending)) => {
                    queue.add(seq, processed_up_to, pending, true, now)
                }
                Err(RecvError::Closed | RecvError::PeerDied { .. }) => break,
                Err(RecvError::WrongRecipient { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            for decision in queue.poll(now) {
                let reply = match decision {
                    Delivery::Execute(p) => execute(&methods, &mut state, p),
                    Delivery::Reject(p) => reply_for(
                        &p,
                        None,
                        RpcStatus::new(StatusCode::Invalid, shmwire::ordering::STALE_RPC_MESSAGE),
                    ),
                };
                conn.send_message(&mut encoder, &reply)?;
            }
        }
    }
    Ok(())
}

fn execute(methods: &HashMap<&'static str, Method>, state: &mut i64, p: Pending) -> PushTaskReply {
    if p.skip_execution {
        return reply_for(&p, None, RpcStatus::ok());
    }
    match (methods.get(p.method.as_str()), p.arg) {
        (Some(m), Some(x)) => {
            let v = m(state, x);
            reply_for(&p, Some(v), RpcStatus::ok())
        }
        (None, _) => {
            let mut r = reply_for(&p, None, RpcStatus::ok());
            r.is_application_level_error = true;
            r.status = RpcStatus::new(StatusCode::Invalid, format!("no method {}", p.method));
            r
        }
        (Some(_), None) => reply_for(
            &p,
            None,
            RpcStatus::new(StatusCode::Invalid, "expected one inline i64 argument"),
        ),
    }
}

fn reply_for(p: &Pending, value: Option<i64>, status: RpcStatus) -> PushTaskReply {
    PushTaskReply {
        task_id: p.task_id,
        return_objects: value
            .map(|v| ReturnObject {
                object_id: p.return_id,
                value: ReturnValue::Inline(InlineData {
                    data: v.to_le_bytes().to_vec(),
                    metadata: b"i64".to_vec(),
                }),
                size: 8,
                nested_inlined_refs: Vec::new(),
            })
            .into_iter()
            .collect(),
        borrowed_refs: Vec::new(),
        is_application_level_error: false,
        worker_exiting: false,
        task_stolen: false,
        status,
    }
}
