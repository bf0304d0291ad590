//! The message types: [`TaskSpec`] and its parts, [`PushTaskRequest`], [`PushTaskReply`].
//!
//! Field names and meanings follow Ray's `common.proto` / `core_worker.proto`
//! (see the reference note). Departures, each deliberate:
//!
//! * protobuf `map<string, double>` resources are a `Vec<Resource>` of
//!   `(name, quantity)` pairs in insertion order: no hashing on the hot path,
//!   and the archived form is a plain array a receiver can scan in place;
//!   [`TaskSpecBuilder`](super::TaskSpecBuilder) keeps names unique.
//! * `bytes` IDs are fixed-size ID types from [`crate::ids`].
//! * `TaskArg` (object reference *or* inline value) and a reply's return
//!   object (inline *or* in the store) are Rust enums instead of
//!   "whichever field is set".
//! * [`ActorTaskSpec::caller_starts_at`] carries the submitter queue's
//!   `caller_starts_at` (Ray keeps it in the submitter only) so a receiver
//!   can check `sequence_number == actor_counter - caller_starts_at`.

use crate::ids::{ActorId, JobId, NodeId, ObjectId, PlacementGroupId, TaskId, WorkerId};

use super::FunctionDescriptor;

/// Declares a field-less `#[repr(u8)]` enum that is archived as itself
/// (`#[rkyv(as = Self)]`, `Portable`, `CheckBytes`: bytecheck validates the
/// tag), with the usual value derives and a `#[default]` variant. One place
/// for the attribute set the three plain enums below must share.
macro_rules! plain_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            Default,
            rkyv::Archive,
            rkyv::Serialize,
            rkyv::Deserialize,
            rkyv::Portable,
            rkyv::bytecheck::CheckBytes,
        )]
        #[rkyv(as = Self)]
        #[bytecheck(crate = rkyv::bytecheck)]
        #[repr(u8)]
        pub enum $name { $($body)* }
    };
}

plain_enum! {
    /// Ray's `TaskType`.
    pub enum TaskType {
        /// A stateless task (`NORMAL_TASK`).
        #[default]
        NormalTask = 0,
        /// The task that creates an actor (`ACTOR_CREATION_TASK`).
        ActorCreationTask = 1,
        /// A method call on an actor (`ACTOR_TASK`).
        ActorTask = 2,
        /// The driver's own root task (`DRIVER_TASK`).
        DriverTask = 3,
    }
}

plain_enum! {
    /// Ray's `Language`, plus `Rust` for native handlers.
    pub enum Language {
        /// `PYTHON`.
        #[default]
        Python = 0,
        /// `JAVA`.
        Java = 1,
        /// `CPP`.
        Cpp = 2,
        /// Native Rust (shmwire).
        Rust = 3,
    }
}

/// Ray's `Address`: where a worker can be reached.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct Address {
    /// The node (raylet) the worker runs on (Ray's `raylet_id`).
    pub node_id: NodeId,
    /// IP address of the worker.
    pub ip_address: String,
    /// Port of the worker (Ray's `int32`; a TCP port fits `u16`).
    pub port: u16,
    /// The worker.
    pub worker_id: WorkerId,
    /// The object endpoint of the worker's node: `ip:port` of the
    /// `PullServer` serving that node's object store (Ray's
    /// `GcsNodeInfo.node_manager_address` + `object_manager_port`, found in
    /// Ray through the GCS node table by `raylet_id`; here, without a GCS,
    /// it travels with the address). Empty: the node serves no objects to
    /// other nodes. A reader of an object owned by this worker that is not
    /// in its own node's store pulls it from here (shmwire addition).
    pub object_manager_address: String,
}

/// Ray's `ObjectReference`: an object id with its owner.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ObjectReference {
    /// The object.
    pub object_id: ObjectId,
    /// The worker that owns (created) the object.
    pub owner_address: Address,
    /// Where the reference was created, for debugging.
    pub call_site: String,
}

/// A value passed inline in the task spec (Ray's `TaskArg.data/metadata/nested_inlined_refs`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct InlineValue {
    /// The serialized value.
    pub data: Vec<u8>,
    /// Serialization metadata (format tag, error marker, …).
    pub metadata: Vec<u8>,
    /// Object references serialized inside `data`.
    pub nested_inlined_refs: Vec<ObjectReference>,
}

/// One task argument (Ray's `TaskArg`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum TaskArg {
    /// Passed by reference: the receiver fetches the object from its owner /
    /// the store. Boxed so that a `Vec<TaskArg>` of small inline values does
    /// not pay the 104-byte reference in every element.
    ObjectRef(Box<ObjectReference>),
    /// Passed by value, inline.
    Value(InlineValue),
}

impl TaskArg {
    /// An inline argument without nested references.
    pub fn value(data: impl Into<Vec<u8>>, metadata: impl Into<Vec<u8>>) -> Self {
        Self::Value(InlineValue {
            data: data.into(),
            metadata: metadata.into(),
            nested_inlined_refs: Vec::new(),
        })
    }

    /// A by-reference argument.
    pub fn object_ref(object_id: ObjectId, owner_address: Address) -> Self {
        Self::ObjectRef(Box::new(ObjectReference {
            object_id,
            owner_address,
            call_site: String::new(),
        }))
    }

    /// Inline data + metadata bytes (0 for a reference).
    pub fn inline_bytes(&self) -> usize {
        match self {
            Self::Value(v) => v.data.len() + v.metadata.len(),
            Self::ObjectRef(_) => 0,
        }
    }
}

impl ArchivedTaskArg {
    /// Inline data + metadata bytes (0 for a reference).
    pub fn inline_bytes(&self) -> usize {
        match self {
            Self::Value(v) => v.data.len() + v.metadata.len(),
            Self::ObjectRef(_) => 0,
        }
    }
}

/// One resource requirement: a `(name, quantity)` entry of Ray's
/// `map<string, double>` (e.g. `("CPU", 1.0)`).
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Resource {
    /// Resource name, e.g. `CPU`, `GPU`, `memory`.
    pub name: String,
    /// Amount required.
    pub quantity: f64,
}

/// Ray's `ConcurrencyGroup` of an actor.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ConcurrencyGroup {
    /// Group name.
    pub name: String,
    /// Maximum concurrent tasks in the group.
    pub max_concurrency: i32,
    /// Methods that run in this group.
    pub function_descriptors: Vec<FunctionDescriptor>,
}

impl ConcurrencyGroup {
    /// Group `name` of `max_concurrency` threads, no methods listed (they
    /// join it through their class or per call).
    pub fn new(name: impl Into<String>, max_concurrency: i32) -> Self {
        Self {
            name: name.into(),
            max_concurrency,
            function_descriptors: Vec::new(),
        }
    }

    /// This group with `descriptor`'s method in it (Ray fills
    /// `function_descriptors` from `@ray.method(concurrency_group=...)`).
    pub fn with_method(mut self, descriptor: FunctionDescriptor) -> Self {
        self.function_descriptors.push(descriptor);
        self
    }
}

/// Ray's `ActorCreationTaskSpec` (valid when the type is `ActorCreationTask`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ActorCreationTaskSpec {
    /// The actor being created.
    pub actor_id: ActorId,
    /// How often the actor may be restarted (-1 = infinite).
    pub max_actor_restarts: i64,
    /// How often a task of the actor may be retried (-1 = infinite).
    pub max_task_retries: i64,
    /// Worker start-up options (e.g. JVM flags).
    pub dynamic_worker_options: Vec<String>,
    /// Maximum concurrent method calls.
    pub max_concurrency: i32,
    /// Whether the actor outlives its creator.
    pub is_detached: bool,
    /// Actor name ("" if unnamed).
    pub name: String,
    /// Namespace of the named actor.
    pub ray_namespace: String,
    /// Whether the actor is an asyncio actor.
    pub is_asyncio: bool,
    /// Opaque language-specific data.
    pub extension_data: String,
    /// Serialized actor handle for the creator.
    pub serialized_actor_handle: Vec<u8>,
    /// The actor's concurrency groups.
    pub concurrency_groups: Vec<ConcurrencyGroup>,
}

/// Ray's `ActorTaskSpec` (valid when the type is `ActorTask`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ActorTaskSpec {
    /// The actor the method runs on.
    pub actor_id: ActorId,
    /// Return 1 of the actor creation task ([`ObjectId::for_actor_handle`]).
    pub actor_creation_dummy_object_id: ObjectId,
    /// Number of tasks this handle submitted to the actor before this one.
    pub actor_counter: u64,
    /// The previous actor task's cursor object (its last return id).
    pub previous_actor_task_dummy_object_id: ObjectId,
    /// The submitter queue's first counter (`sequence_number = actor_counter - caller_starts_at`).
    pub caller_starts_at: u64,
}

/// Ray's `runtime_env` of a task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct RuntimeEnv {
    /// JSON text of the runtime environment (`"{}"` when none).
    pub serialized_runtime_env: String,
    /// URIs of packages the environment needs.
    pub uris: Vec<String>,
}

impl Default for RuntimeEnv {
    /// `"{}"` and no URIs, as Ray's submit paths pass.
    fn default() -> Self {
        Self {
            serialized_runtime_env: "{}".to_owned(),
            uris: Vec::new(),
        }
    }
}

/// Ray's `TaskSpec`: everything about a task fixed at submission time.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct TaskSpec {
    /// Kind of task (proto field `type`).
    pub task_type: TaskType,
    /// Task name (defaults to the function's `DefaultTaskName`).
    pub name: String,
    /// Language of the function.
    pub language: Language,
    /// The function to execute.
    pub function_descriptor: FunctionDescriptor,
    /// Job the task belongs to.
    pub job_id: JobId,
    /// This task.
    pub task_id: TaskId,
    /// The submitting (parent) task.
    pub parent_task_id: TaskId,
    /// Number of tasks the parent submitted before this one.
    pub parent_counter: u64,
    /// The caller: the parent task, or the actor (as a nil-unique task id) for actors.
    pub caller_id: TaskId,
    /// Address of the caller, where replies and borrowed references go.
    pub caller_address: Address,
    /// Arguments.
    pub args: Vec<TaskArg>,
    /// Number of return objects (actor tasks include the cursor object).
    pub num_returns: u64,
    /// Resources the task needs while it runs.
    pub required_resources: Vec<Resource>,
    /// Resources needed to place the task (empty = same as `required_resources`).
    pub required_placement_resources: Vec<Resource>,
    /// Set for `ActorCreationTask` (boxed: rare, and large when inline).
    pub actor_creation_task_spec: Option<Box<ActorCreationTaskSpec>>,
    /// Set for `ActorTask`.
    pub actor_task_spec: Option<ActorTaskSpec>,
    /// Retries on worker failure.
    pub max_retries: i32,
    /// Placement group of the task (nil if none).
    pub placement_group_id: PlacementGroupId,
    /// Bundle index in the placement group (-1 = any).
    pub placement_group_bundle_index: i64,
    /// Whether child tasks inherit the placement group.
    pub placement_group_capture_child_tasks: bool,
    /// If set, the receiver acknowledges the task without executing it.
    pub skip_execution: bool,
    /// Breakpoint to drop into when the task starts ("" = none).
    pub debugger_breakpoint: Vec<u8>,
    /// Runtime environment.
    pub runtime_env: RuntimeEnv,
    /// Concurrency group the task runs in ("" = default).
    pub concurrency_group_name: String,
    /// Whether application-level errors are retried.
    pub retry_exceptions: bool,
    /// Nesting depth: 0 for the driver's tasks, parent's depth + 1 below.
    pub depth: u64,
}

/// Return id `i` (0-based) of `task_id`: `ObjectId::from_index(task_id, i + 1)`.
fn return_id_of(task_id: TaskId, i: u64) -> ObjectId {
    // Indexes are u32 in Ray; a count above u32::MAX - 1 is not representable.
    ObjectId::from_index(task_id, (i as u32).wrapping_add(1))
}

impl TaskSpec {
    /// Return object `i` (0-based): `ObjectId::from_index(task_id, i + 1)`.
    /// Object indexes are `u32` as in Ray; `i` is taken modulo 2^32.
    pub fn return_id(&self, i: u64) -> ObjectId {
        return_id_of(self.task_id, i)
    }

    /// All return ids, `0..num_returns` (for an actor task the last one is the cursor).
    pub fn return_ids(&self) -> impl Iterator<Item = ObjectId> + '_ {
        (0..self.num_returns).map(move |i| self.return_id(i))
    }

    /// Whether this is an actor method call.
    pub fn is_actor_task(&self) -> bool {
        self.task_type == TaskType::ActorTask
    }

    /// Whether this creates an actor.
    pub fn is_actor_creation_task(&self) -> bool {
        self.task_type == TaskType::ActorCreationTask
    }

    /// Whether this is a normal (stateless) task.
    pub fn is_normal_task(&self) -> bool {
        self.task_type == TaskType::NormalTask
    }

    /// The actor counter of an actor task (`None` otherwise).
    pub fn actor_counter(&self) -> Option<u64> {
        self.actor_task_spec.as_ref().map(|a| a.actor_counter)
    }

    /// The actor an actor task runs on, or the actor an actor-creation task creates.
    pub fn actor_id(&self) -> Option<ActorId> {
        match (&self.actor_task_spec, &self.actor_creation_task_spec) {
            (Some(a), _) => Some(a.actor_id),
            (None, Some(c)) => Some(c.actor_id),
            (None, None) => None,
        }
    }

    /// Ray's `ActorDummyObject()`: the last return id, the cursor the next
    /// actor task of this handle names as `previous_actor_task_dummy_object_id`
    /// (`None` if the task has no returns).
    pub fn actor_dummy_object_id(&self) -> Option<ObjectId> {
        self.num_returns
            .checked_sub(1)
            .map(|last| self.return_id(last))
    }

    /// Inline argument bytes: sum of data + metadata of all inline arguments.
    /// The ordering layer counts a request as `1024 + inline_arg_bytes()`.
    pub fn inline_arg_bytes(&self) -> usize {
        self.args.iter().map(TaskArg::inline_bytes).sum()
    }
}

impl ArchivedTaskSpec {
    /// Return object `i` (0-based): `ObjectId::from_index(task_id, i + 1)`.
    pub fn return_id(&self, i: u64) -> ObjectId {
        return_id_of(self.task_id, i)
    }

    /// Number of return objects.
    pub fn num_returns(&self) -> u64 {
        self.num_returns.to_native()
    }

    /// Whether this is an actor method call.
    pub fn is_actor_task(&self) -> bool {
        self.task_type == TaskType::ActorTask
    }

    /// Whether this creates an actor.
    pub fn is_actor_creation_task(&self) -> bool {
        self.task_type == TaskType::ActorCreationTask
    }

    /// Whether this is a normal (stateless) task.
    pub fn is_normal_task(&self) -> bool {
        self.task_type == TaskType::NormalTask
    }

    /// The actor counter of an actor task (`None` otherwise).
    pub fn actor_counter(&self) -> Option<u64> {
        self.actor_task_spec
            .as_ref()
            .map(|a| a.actor_counter.to_native())
    }

    /// The actor an actor task runs on, or the actor an actor-creation task creates.
    pub fn actor_id(&self) -> Option<ActorId> {
        if let Some(a) = self.actor_task_spec.as_ref() {
            return Some(a.actor_id);
        }
        self.actor_creation_task_spec.as_ref().map(|c| c.actor_id)
    }

    /// Inline argument bytes: sum of data + metadata of all inline arguments.
    pub fn inline_arg_bytes(&self) -> usize {
        self.args.iter().map(ArchivedTaskArg::inline_bytes).sum()
    }
}

/// One resource id assigned to a worker (Ray's `ResourceId`).
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ResourceId {
    /// Index of the resource instance (e.g. GPU 0).
    pub index: i64,
    /// Fraction of the instance.
    pub quantity: f64,
}

/// Resource instances of one resource name (Ray's `ResourceMapEntry`).
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ResourceMapEntry {
    /// Resource name.
    pub name: String,
    /// Assigned instances.
    pub resource_ids: Vec<ResourceId>,
}

/// Ray's `PushTaskRequest`: a task pushed to a worker.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct PushTaskRequest {
    /// The worker this request is for; any other worker refuses it.
    pub intended_worker_id: WorkerId,
    /// The task.
    pub task_spec: TaskSpec,
    /// Per-caller sequence number, from 0; -1 disables ordering.
    pub sequence_number: i64,
    /// The caller has processed replies up to this seqno; requests at or
    /// below it are stale and rejected. On a normal (or actor creation)
    /// task's request, which has no sequence number, shmwire uses it to
    /// acknowledge the normal-task replies processed on the connection:
    /// the index (from 0) of the last one, -1 for none (Ray leaves it -1).
    pub client_processed_up_to: i64,
    /// Resource instances assigned to the executing worker.
    pub resource_mapping: Vec<ResourceMapEntry>,
}

impl PushTaskRequest {
    /// Sequence number meaning "unordered: execute on arrival".
    pub const UNORDERED: i64 = -1;
}

impl ArchivedPushTaskRequest {
    /// The sequence number as a native `i64` (-1 = unordered).
    pub fn sequence_number(&self) -> i64 {
        self.sequence_number.to_native()
    }

    /// `client_processed_up_to` as a native `i64`.
    pub fn client_processed_up_to(&self) -> i64 {
        self.client_processed_up_to.to_native()
    }
}

plain_enum! {
    /// Ray's `StatusCode` values a reply can carry.
    pub enum StatusCode {
        /// Success.
        #[default]
        Ok = 0,
        /// Out of memory.
        OutOfMemory = 1,
        /// Key not found.
        KeyError = 2,
        /// Wrong type.
        TypeError = 3,
        /// Invalid request (e.g. wrong recipient, stale rpc).
        Invalid = 4,
        /// I/O error.
        IoError = 5,
        /// Unknown error.
        UnknownError = 9,
        /// Not implemented.
        NotImplemented = 10,
        /// Timed out.
        TimedOut = 12,
        /// Interrupted.
        Interrupted = 13,
        /// The worker exits on purpose.
        IntentionalSystemExit = 14,
        /// The worker exits unexpectedly.
        UnexpectedSystemExit = 15,
        /// The actor creation task failed.
        CreationTaskError = 16,
        /// Not found.
        NotFound = 17,
        /// The peer disconnected.
        Disconnected = 18,
    }
}

/// The RPC status of a reply: Ray returns a gRPC `Status` next to its
/// `PushTaskReply`; here it travels inside the reply.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct RpcStatus {
    /// The code.
    pub code: StatusCode,
    /// Human-readable message, e.g. `client cancelled stale rpc`.
    pub message: String,
}

impl RpcStatus {
    /// `Ok` with no message.
    pub fn ok() -> Self {
        Self::default()
    }

    /// A status with a code and message.
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Whether the code is `Ok`.
    pub fn is_ok(&self) -> bool {
        self.code == StatusCode::Ok
    }
}

impl ArchivedRpcStatus {
    /// Whether the code is `Ok`.
    pub fn is_ok(&self) -> bool {
        self.code == StatusCode::Ok
    }
}

/// Inline bytes of a return value.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct InlineData {
    /// Serialized value.
    pub data: Vec<u8>,
    /// Serialization metadata.
    pub metadata: Vec<u8>,
}

/// Where a return value is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum ReturnValue {
    /// Small value carried in the reply.
    Inline(InlineData),
    /// Large value put in the shared-memory object store of the executing
    /// worker's node (Ray's `in_plasma`, with the node's location that Ray's
    /// owner records from the lease). It carries that node's object
    /// endpoint (`ip:port` of the `PullServer` of its store, empty if it
    /// serves none): a caller on another node pulls the object from there
    /// (see [`Address::object_manager_address`]).
    InStore(String),
}

/// One return object of a reply (Ray's `ReturnObject`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ReturnObject {
    /// The return id (`TaskSpec::return_id(i)`).
    pub object_id: ObjectId,
    /// Inline bytes or "in the store".
    pub value: ReturnValue,
    /// Total size of the object in bytes.
    pub size: u64,
    /// Object references contained in the value.
    pub nested_inlined_refs: Vec<ObjectReference>,
}

/// Borrowing information for one reference (Ray's `ObjectReferenceCount`).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct ObjectReferenceCount {
    /// The borrowed reference.
    pub reference: ObjectReference,
    /// Whether the executing worker still holds a local reference.
    pub has_local_ref: bool,
    /// Workers that borrowed it from the executing worker.
    pub borrowers: Vec<Address>,
    /// Objects the reference was stored in.
    pub stored_in_objects: Vec<ObjectReference>,
    /// Borrowed ids that contain this one.
    pub contained_in_borrowed_ids: Vec<ObjectId>,
    /// Ids this object contains.
    pub contains: Vec<ObjectId>,
}

/// Ray's `PushTaskReply`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug))]
pub struct PushTaskReply {
    /// The task this reply answers (shmwire addition: lets out-of-order
    /// replies be matched without a side table).
    pub task_id: TaskId,
    /// Return values, in return-index order (actor cursor excluded).
    pub return_objects: Vec<ReturnObject>,
    /// References borrowed during execution.
    pub borrowed_refs: Vec<ObjectReferenceCount>,
    /// The task raised an application-level exception.
    pub is_application_level_error: bool,
    /// The worker exits after this reply and must not be reused.
    pub worker_exiting: bool,
    /// The task was stolen from this worker's queue and not executed.
    pub task_stolen: bool,
    /// Outcome of the request.
    pub status: RpcStatus,
}
