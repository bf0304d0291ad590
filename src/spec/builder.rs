//! [`TaskSpecBuilder`]: builds a [`TaskSpec`] the way Ray's `BuildCommonTaskSpec`,
//! `CoreWorker::SubmitActorTask` and `ActorHandle::SetActorTaskSpec` do.
//!
//! Derived fields:
//!
//! * `task_id`: [`TaskId::for_normal_task`] / [`TaskId::for_actor_task`] /
//!   [`TaskId::for_actor_creation_task`] from the builder's job, parent task
//!   and parent counter.
//! * `name`: the function's [`default_task_name`](FunctionDescriptor::default_task_name)
//!   when none (or an empty one) was given.
//! * `language`: from the function descriptor (Python for `Empty`).
//! * `caller_id`: the parent task unless set (Ray: the actor's creation task
//!   id when the caller is an actor).
//! * actor task: `num_returns + 1` (the extra return is the actor cursor),
//!   `job_id` = the actor's creation job ([`ActorId::job_id`]),
//!   `actor_creation_dummy_object_id` = [`ObjectId::for_actor_handle`],
//!   `previous_actor_task_dummy_object_id` = the cursor given by the caller
//!   (for the first task of a handle: [`ObjectId::for_actor_handle`]).
//!   The next cursor is [`TaskSpec::actor_dummy_object_id`]
//!   (`ObjectId::from_index(task_id, num_returns)`).
//! * actor creation task: `num_returns = 1` (the dummy object).
//! * return ids are never stored: [`TaskSpec::return_id`]`(i)` is
//!   `ObjectId::from_index(task_id, i + 1)`.

use crate::ids::{ActorId, ChildTaskHash, JobId, ObjectId, PlacementGroupId, TaskId};

use super::message::{
    ActorCreationTaskSpec, ActorTaskSpec, Address, Resource, RuntimeEnv, TaskArg, TaskSpec,
    TaskType,
};
use super::{FunctionDescriptor, Language};

/// Where an actor task goes and its place in the handle's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActorTaskTarget {
    /// The actor.
    pub actor_id: ActorId,
    /// The handle's task counter for this task (0, 1, 2, … per handle).
    pub actor_counter: u64,
    /// The cursor of the handle's previous task, or
    /// [`ObjectId::for_actor_handle`] for the first one.
    pub previous_cursor: ObjectId,
    /// The submitter queue's `caller_starts_at`.
    pub caller_starts_at: u64,
}

impl ActorTaskTarget {
    /// The spec's actor fields for this target (Ray's `SetActorTaskSpec`).
    fn actor_task_spec(&self) -> ActorTaskSpec {
        ActorTaskSpec {
            actor_id: self.actor_id,
            actor_creation_dummy_object_id: ObjectId::for_actor_handle(self.actor_id),
            actor_counter: self.actor_counter,
            previous_actor_task_dummy_object_id: self.previous_cursor,
            caller_starts_at: self.caller_starts_at,
        }
    }

    /// The first task (`actor_counter` 0) of a fresh handle to `actor_id`.
    pub fn first(actor_id: ActorId) -> Self {
        Self {
            actor_id,
            actor_counter: 0,
            previous_cursor: ObjectId::for_actor_handle(actor_id),
            caller_starts_at: 0,
        }
    }
}

/// Builds [`TaskSpec`]s, filling the derived fields as Ray does.
///
/// ```
/// use shmwire::ids::{ActorId, JobId, TaskId};
/// use shmwire::spec::{ActorTaskTarget, FunctionDescriptor, TaskArg, TaskSpecBuilder};
///
/// let job = JobId::from_int(1);
/// let driver = TaskId::for_driver_task(job);
/// let actor = ActorId::of_with_nonce(job, driver, 0, 1);
/// let spec = TaskSpecBuilder::new(FunctionDescriptor::python("m", "Counter", "incr", ""))
///     .job_id(job)
///     .parent(driver, 1)
///     .arg(TaskArg::value(b"\x01".to_vec(), b"".to_vec()))
///     .num_returns(1)
///     .build_actor_task(ActorTaskTarget::first(actor));
/// assert_eq!(spec.name, "Counter.incr()");
/// assert_eq!(spec.num_returns, 2); // one value + the actor cursor
/// assert_eq!(spec.task_id.actor_id(), actor);
/// ```
#[derive(Debug, Clone)]
pub struct TaskSpecBuilder {
    function_descriptor: FunctionDescriptor,
    name: String,
    language: Option<Language>,
    job_id: JobId,
    parent_task_id: TaskId,
    parent_counter: u64,
    caller_id: Option<TaskId>,
    caller_address: Address,
    args: Vec<TaskArg>,
    num_returns: u64,
    required_resources: Vec<Resource>,
    required_placement_resources: Vec<Resource>,
    max_retries: i32,
    placement_group_id: PlacementGroupId,
    placement_group_bundle_index: i64,
    placement_group_capture_child_tasks: bool,
    skip_execution: bool,
    debugger_breakpoint: Vec<u8>,
    runtime_env: RuntimeEnv,
    concurrency_group_name: String,
    retry_exceptions: bool,
    depth: u64,
}

fn set_resource(list: &mut Vec<Resource>, name: String, quantity: f64) {
    match list.iter_mut().find(|r| r.name == name) {
        Some(r) => r.quantity = quantity,
        None => list.push(Resource { name, quantity }),
    }
}

impl TaskSpecBuilder {
    /// A builder for a task running `function_descriptor`. Defaults: nil job
    /// and parent, counter 0, one return, no args/resources, no retries, no
    /// placement group (nil, bundle -1), runtime env `"{}"`, depth 0.
    pub fn new(function_descriptor: FunctionDescriptor) -> Self {
        Self {
            function_descriptor,
            name: String::new(),
            language: None,
            job_id: JobId::nil(),
            parent_task_id: TaskId::nil(),
            parent_counter: 0,
            caller_id: None,
            caller_address: Address::default(),
            args: Vec::new(),
            num_returns: 1,
            required_resources: Vec::new(),
            required_placement_resources: Vec::new(),
            max_retries: 0,
            placement_group_id: PlacementGroupId::nil(),
            placement_group_bundle_index: -1,
            placement_group_capture_child_tasks: true,
            skip_execution: false,
            debugger_breakpoint: Vec::new(),
            runtime_env: RuntimeEnv::default(),
            concurrency_group_name: String::new(),
            retry_exceptions: false,
            depth: 0,
        }
    }

    /// Task name; empty means the function's default task name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Overrides the language (default: the function descriptor's).
    pub fn language(mut self, language: Language) -> Self {
        self.language = Some(language);
        self
    }

    /// The submitting worker's current job (used to derive the task id; for
    /// normal tasks also the spec's job id).
    pub fn job_id(mut self, job_id: JobId) -> Self {
        self.job_id = job_id;
        self
    }

    /// The submitting task and how many tasks it submitted before this one.
    pub fn parent(mut self, parent_task_id: TaskId, parent_counter: u64) -> Self {
        self.parent_task_id = parent_task_id;
        self.parent_counter = parent_counter;
        self
    }

    /// The caller id (default: the parent task id).
    pub fn caller_id(mut self, caller_id: TaskId) -> Self {
        self.caller_id = Some(caller_id);
        self
    }

    /// The caller's address.
    pub fn caller_address(mut self, address: Address) -> Self {
        self.caller_address = address;
        self
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: TaskArg) -> Self {
        self.args.push(arg);
        self
    }

    /// Appends arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = TaskArg>) -> Self {
        self.args.extend(args);
        self
    }

    /// Number of values the function returns (actor tasks get one more).
    pub fn num_returns(mut self, num_returns: u64) -> Self {
        self.num_returns = num_returns;
        self
    }

    /// Sets a required resource (replacing a previous value of the same name).
    pub fn resource(mut self, name: impl Into<String>, quantity: f64) -> Self {
        set_resource(&mut self.required_resources, name.into(), quantity);
        self
    }

    /// Sets a placement resource (replacing a previous value of the same name).
    pub fn placement_resource(mut self, name: impl Into<String>, quantity: f64) -> Self {
        set_resource(
            &mut self.required_placement_resources,
            name.into(),
            quantity,
        );
        self
    }

    /// Retries on worker failure.
    pub fn max_retries(mut self, max_retries: i32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Whether application errors are retried.
    pub fn retry_exceptions(mut self, retry: bool) -> Self {
        self.retry_exceptions = retry;
        self
    }

    /// Placement group, bundle index and whether children inherit it.
    pub fn placement_group(
        mut self,
        id: PlacementGroupId,
        bundle_index: i64,
        capture_child_tasks: bool,
    ) -> Self {
        self.placement_group_id = id;
        self.placement_group_bundle_index = bundle_index;
        self.placement_group_capture_child_tasks = capture_child_tasks;
        self
    }

    /// Ask the receiver to acknowledge without executing.
    pub fn skip_execution(mut self, skip: bool) -> Self {
        self.skip_execution = skip;
        self
    }

    /// Debugger breakpoint ("" = none).
    pub fn debugger_breakpoint(mut self, breakpoint: impl Into<Vec<u8>>) -> Self {
        self.debugger_breakpoint = breakpoint.into();
        self
    }

    /// Runtime environment JSON and URIs.
    pub fn runtime_env(mut self, serialized: impl Into<String>, uris: Vec<String>) -> Self {
        self.runtime_env = RuntimeEnv {
            serialized_runtime_env: serialized.into(),
            uris,
        };
        self
    }

    /// Concurrency group name.
    pub fn concurrency_group_name(mut self, name: impl Into<String>) -> Self {
        self.concurrency_group_name = name.into();
        self
    }

    /// Nesting depth.
    pub fn depth(mut self, depth: u64) -> Self {
        self.depth = depth;
        self
    }

    fn common(
        self,
        task_type: TaskType,
        job_id: JobId,
        task_id: TaskId,
        num_returns: u64,
    ) -> TaskSpec {
        let name = if self.name.is_empty() {
            self.function_descriptor.default_task_name()
        } else {
            self.name
        };
        let language = self
            .language
            .or_else(|| self.function_descriptor.language())
            .unwrap_or_default();
        TaskSpec {
            task_type,
            name,
            language,
            function_descriptor: self.function_descriptor,
            job_id,
            task_id,
            parent_task_id: self.parent_task_id,
            parent_counter: self.parent_counter,
            caller_id: self.caller_id.unwrap_or(self.parent_task_id),
            caller_address: self.caller_address,
            args: self.args,
            num_returns,
            required_resources: self.required_resources,
            required_placement_resources: self.required_placement_resources,
            actor_creation_task_spec: None,
            actor_task_spec: None,
            max_retries: self.max_retries,
            placement_group_id: self.placement_group_id,
            placement_group_bundle_index: self.placement_group_bundle_index,
            placement_group_capture_child_tasks: self.placement_group_capture_child_tasks,
            skip_execution: self.skip_execution,
            debugger_breakpoint: self.debugger_breakpoint,
            runtime_env: self.runtime_env,
            concurrency_group_name: self.concurrency_group_name,
            retry_exceptions: self.retry_exceptions,
            depth: self.depth,
        }
    }

    /// A normal task: `task_id = TaskId::for_normal_task(job, parent, counter)`.
    pub fn build_normal_task(self) -> TaskSpec {
        let task_id =
            TaskId::for_normal_task(self.job_id, self.parent_task_id, self.parent_counter);
        let (job, n) = (self.job_id, self.num_returns);
        self.common(TaskType::NormalTask, job, task_id, n)
    }

    /// An actor method call, as `CoreWorker::SubmitActorTask`:
    /// `task_id = TaskId::for_actor_task(job, parent, counter, actor)`,
    /// `num_returns + 1`, job id = the actor's creation job.
    pub fn build_actor_task(self, target: ActorTaskTarget) -> TaskSpec {
        let task_id = TaskId::for_actor_task(
            self.job_id,
            self.parent_task_id,
            self.parent_counter,
            target.actor_id,
        );
        let num_returns = self.num_returns + 1;
        let mut spec = self.common(
            TaskType::ActorTask,
            target.actor_id.job_id(),
            task_id,
            num_returns,
        );
        spec.actor_task_spec = Some(target.actor_task_spec());
        spec
    }

    /// What [`TaskSpecBuilder::build_actor_task`] derives from each call's
    /// own inputs, written into `spec`, an actor task spec built by it
    /// (or re-aimed by this before): task id (from `job`, `parent`,
    /// `parent_counter` and the target's actor, as `build_actor_task`
    /// computes it), parent task and counter, caller id (= the parent, as
    /// a builder without [`TaskSpecBuilder::caller_id`] gives), arguments,
    /// `max_retries`, the actor fields of `target`, and `skip_execution`
    /// false. Everything else — descriptor, name, language, job, caller
    /// address, returns, resources, runtime env, concurrency group — is
    /// kept, so the spec of the next call of the same method through the
    /// same handle is made without building, copying or allocating a
    /// string: the caller's hot path (Ray's `SubmitActorTask` builds a
    /// fresh protobuf each time; shmwire recycles the finished call's
    /// spec). The result equals `build_actor_task` of a builder with the
    /// same settings and these inputs (`tests/spec.rs`). Returns the
    /// previous arguments.
    pub fn rebuild_actor_task(
        spec: &mut TaskSpec,
        job: JobId,
        parent: TaskId,
        parent_counter: u64,
        args: Vec<TaskArg>,
        max_retries: i32,
        target: ActorTaskTarget,
    ) -> Vec<TaskArg> {
        let child = ChildTaskHash::new(job, parent, parent_counter);
        Self::rebuild_actor_task_hashed(spec, &child, args, max_retries, target)
    }

    /// [`TaskSpecBuilder::rebuild_actor_task`] with the task id's hash
    /// computed beforehand: `child` names the job, parent and counter (and
    /// holds their hash), so the task id is `child.actor_task(actor)` and
    /// the spec is the same as `rebuild_actor_task(spec,
    /// child.job_id(), child.parent_task_id(), child.parent_task_counter(),
    /// ..)` gives. A submitter hashes its next counter while it waits
    /// ([`ChildTaskHash`]).
    pub fn rebuild_actor_task_hashed(
        spec: &mut TaskSpec,
        child: &ChildTaskHash,
        args: Vec<TaskArg>,
        max_retries: i32,
        target: ActorTaskTarget,
    ) -> Vec<TaskArg> {
        let parent = child.parent_task_id();
        spec.task_id = child.actor_task(target.actor_id);
        spec.parent_task_id = parent;
        spec.parent_counter = child.parent_task_counter();
        spec.caller_id = parent;
        spec.max_retries = max_retries;
        spec.skip_execution = false;
        spec.actor_task_spec = Some(target.actor_task_spec());
        std::mem::replace(&mut spec.args, args)
    }

    /// An actor creation task: `task_id = TaskId::for_actor_creation_task(actor)`,
    /// one return (the dummy object). `creation.actor_id` names the actor;
    /// derive it with [`ActorId::of`].
    pub fn build_actor_creation_task(self, creation: ActorCreationTaskSpec) -> TaskSpec {
        let task_id = TaskId::for_actor_creation_task(creation.actor_id);
        let job = self.job_id;
        let mut spec = self.common(TaskType::ActorCreationTask, job, task_id, 1);
        spec.actor_creation_task_spec = Some(Box::new(creation));
        spec
    }

    /// The driver's root task: `task_id = TaskId::for_driver_task(job)`, no returns.
    pub fn build_driver_task(self) -> TaskSpec {
        let task_id = TaskId::for_driver_task(self.job_id);
        let job = self.job_id;
        self.common(TaskType::DriverTask, job, task_id, 0)
    }
}
