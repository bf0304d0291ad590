//! The worker runtime: Ray's core-worker path as a library.
//!
//! | piece | type | Ray |
//! | --- | --- | --- |
//! | function registry | [`FunctionRegistry`], [`ActorClass`], [`Args`] | `FunctionActorManager` |
//! | receiving worker | [`Worker`] | `CoreWorker::HandlePushTask`, the scheduling queues, `ExecuteTask` |
//! | submitting worker | [`CoreWorker`], [`ActorHandle`], [`ObjectRef`], [`ObjectValue`] | `CoreWorker::SubmitActorTask` / `SubmitTask` / `CreateActor` / `Put` / `Get` / `Wait`, `CoreWorkerDirectActorTaskSubmitter`, `ReferenceCounter` (simple form) |
//! | large arguments and returns | [`CoreWorkerOptions::store`], [`WorkerOptions::store`] | plasma: `in_plasma` returns, by-reference arguments (`docs/worker.md`, "Large arguments and returns") |
//! | threaded actors | `max_concurrency`, concurrency groups ([`ActorOptions`], [`ActorClass::method_in_group`]) | `ConcurrencyGroupManager`, `BoundedExecutor` |
//! | pending tasks | [`TaskManager`] | `TaskManager` |
//! | statistics | [`EventStats`], [`StatsSnapshot`] | `instrumented_io_context` / `EventStats` |
//!
//! `docs/worker.md` maps every step of Ray's actor-task path to this code.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use shmwire::ids::{NodeId, WorkerId};
//! use shmwire::shm::Session;
//! use shmwire::spec::TaskArg;
//! use shmwire::worker::{ActorClass, CoreWorker, CoreWorkerOptions, FunctionRegistry, Worker,
//!                       WorkerOptions};
//!
//! // In the worker process:
//! let session = Session::open("example")?;
//! let mut registry = FunctionRegistry::new();
//! registry.register_actor_class(
//!     ActorClass::new("app", "Counter", |_| Ok(0i64)).method("add", |total, args| {
//!         *total += args.i64(0)?;
//!         Ok(total.to_le_bytes().to_vec())
//!     }),
//! )?;
//! let node = NodeId::from_random();
//! let worker_id = WorkerId::from_random();
//! let mut worker = Worker::bind(&session, WorkerOptions::new(worker_id, node), Arc::new(registry))?;
//! # std::thread::spawn(move || worker.serve_callers(1, Duration::from_secs(60)));
//!
//! // In the driver process (same session, same node):
//! let mut driver = CoreWorker::new(&session, CoreWorkerOptions::new(node))?;
//! let counter = driver.create_actor(worker_id, "app", "Counter", vec![], 0)?;
//! let r = driver.submit_actor_task(&counter, "add", vec![TaskArg::value(5i64.to_le_bytes().to_vec(), vec![])])?;
//! let v = driver.get(&[r], Duration::from_secs(5))?;
//! assert_eq!(v[0], 5i64.to_le_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod arg_pull;
mod concurrency;
mod core;
mod error;
pub mod ref_count;
pub mod registry;
mod releases;
mod server;
pub mod stats;
pub mod task_manager;

pub use self::core::{
    ActorHandle, ActorOptions, CoreWorker, CoreWorkerOptions, ObjectRef, ObjectValue, TaskOptions,
    RECONNECT_RETRY,
};
pub use concurrency::{MAX_ACTOR_THREADS, MAX_CONCURRENCY_GROUPS, MAX_GROUP_NAME_LEN};
pub use error::{GetError, TaskError, WorkerError};
pub use registry::{
    ActorClass, AlreadyRegistered, AppError, ArgError, Args, FunctionKey, FunctionRegistry,
    TaskResult, CONSTRUCTOR_NAME, TERMINATE_METHOD,
};
pub use server::{
    Worker, WorkerEvent, WorkerOptions, APP_ERROR_METADATA, DEPARTED_CALLER_TTL,
    MAX_BUFFERED_REQUEST_BYTES, MAX_CACHED_REPLY_BYTES, MAX_CONNECTIONS, MAX_DEPARTED_CALLERS,
    MAX_DIRECT_CALL_OBJECT_SIZE, MAX_EVENTS, MAX_HELD_REQUEST_BYTES, OBJECT_LOST_METADATA,
    OBJECT_STORE_ERROR_METADATA, REFUSAL_REPORT_INTERVAL, REPLY_DROPPED_MESSAGE,
    TASK_REFUSED_METADATA, WORKER_BUSY_MESSAGE,
};
pub use stats::{EventStats, HandlerStats, StatsSnapshot};
pub use task_manager::{PendingTask, ReplyMatch, TaskManager};
