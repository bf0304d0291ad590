//! The function registry (Ray's `FunctionActorManager`): native Rust handlers
//! registered under a [`FunctionDescriptor`], and actor classes (a
//! constructor plus methods).
//!
//! Dispatch on the receiving side happens once per task, so it must not
//! allocate: each descriptor is reduced to a [`FunctionKey`] (a 64-bit FNV-1a
//! hash of its language tag and fields, computed the same way from the owned
//! descriptor at registration and from the archived one on arrival, straight
//! from the `&str`s in the frame), the bucket is found with that key, and the
//! fields are then compared exactly, so a hash collision can never run the
//! wrong function. Python, Java and C++ descriptors are keyed and routed the
//! same way as the Rust variant; a descriptor nobody registered fails the task
//! with an application-visible error (see [`crate::worker::TaskError::FunctionNotFound`]).
//!
//! A method takes the actor's state as `&mut S` ([`ActorClass::method`]:
//! it runs alone) or as `&S` ([`ActorClass::shared_method`], only for
//! `S: Sync`: on a threaded actor it runs next to other shared methods).
//! Methods may be assigned to a named concurrency group at class definition
//! ([`ActorClass::method_in_group`], Ray's `@ray.method(concurrency_group=...)`);
//! see `docs/worker.md` and [`crate::worker::ActorOptions`].

use foldhash::HashMap;
use std::any::Any;
use std::fmt;

use rkyv::vec::ArchivedVec;

use crate::spec::{ArchivedFunctionDescriptor, ArchivedTaskArg, FunctionDescriptor};
use crate::store::ObjectBuffer;

/// The function name under which an actor class's constructor is registered
/// (Ray's Python actors use `__init__` as the creation task's function).
pub const CONSTRUCTOR_NAME: &str = "__init__";

/// The method every actor class answers without registering it: Ray's
/// `actor.__ray_terminate__.remote()`, a graceful exit queued behind the
/// caller's earlier calls (they run and reply first, in order). The worker
/// replies to it with an empty value and `worker_exiting` set, drops the
/// actor (a threaded actor's queued tasks finish and reply first), reads no
/// further requests, and [`Worker::exited`](crate::worker::Worker::exited)
/// turns true once every reply is handed to its transport; the worker
/// process then exits. (Ray's reply carries a non-OK
/// `IntentionalSystemExit` status, so `ray.get` of it raises; shmwire's
/// `get` of it returns the empty value, so a caller knows its earlier calls
/// all ran.) A class cannot register a method of this name
/// ([`AlreadyRegistered`]).
pub const TERMINATE_METHOD: &str = "__ray_terminate__";

/// What a handler returns: the serialized return value (one return object),
/// or an application error that the caller's `get` reports.
pub type TaskResult = Result<Vec<u8>, AppError>;

/// An application-level error raised by a handler (Ray's `RayTaskError`: the
/// task ran and failed). The caller's `get` returns it as
/// [`TaskError::Application`](crate::worker::TaskError::Application), naming
/// the function and this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    /// Human-readable message, shipped to the caller as the error object's data.
    pub message: String,
}

impl AppError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl From<ArgError> for AppError {
    fn from(e: ArgError) -> Self {
        AppError::new(e.to_string())
    }
}

/// A task argument that a handler could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// The task has fewer arguments.
    #[error("argument {index} missing: the task has {len} arguments")]
    Missing {
        /// The index asked for.
        index: usize,
        /// How many arguments the task has.
        len: usize,
    },
    /// The argument is an object reference that was not fetched: the
    /// executing worker has no object store (`WorkerOptions::store`), so
    /// by-reference arguments cannot be read.
    #[error("argument {index} is an object reference, which needs the object store")]
    ByReference {
        /// The argument's index.
        index: usize,
    },
    /// The argument has the wrong size for the type asked for.
    #[error("argument {index} has {len} bytes, expected {expected}")]
    BadSize {
        /// The argument's index.
        index: usize,
        /// Its size in bytes.
        len: usize,
        /// The size the accessor needs.
        expected: usize,
    },
}

/// A task's arguments, read in place from the validated archived request
/// (no copy, no allocation). A by-reference argument (an object the caller
/// put in the object store) reads the object's bytes in the store's shared
/// memory, zero-copy: the executing worker fetched it before the handler
/// runs and holds it until the handler returns.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    args: &'a ArchivedVec<ArchivedTaskArg>,
    /// By argument index: the store object of a by-reference argument
    /// (empty when the task has none).
    resolved: &'a [Option<ObjectBuffer>],
}

impl fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Args").field("len", &self.len()).finish()
    }
}

impl<'a> Args<'a> {
    /// Wraps the archived argument list of a task (by-reference arguments
    /// unresolved: reading one is [`ArgError::ByReference`]).
    pub fn new(args: &'a ArchivedVec<ArchivedTaskArg>) -> Self {
        Self {
            args,
            resolved: &[],
        }
    }

    /// Wraps the archived argument list of a task whose by-reference
    /// arguments were fetched from the object store: `resolved[i]` is the
    /// object of argument `i` (`None` for inline arguments).
    pub fn with_resolved(
        args: &'a ArchivedVec<ArchivedTaskArg>,
        resolved: &'a [Option<ObjectBuffer>],
    ) -> Self {
        Self { args, resolved }
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.args.len()
    }

    /// `true` if there are none.
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    fn by_ref(&self, index: usize) -> Result<&'a ObjectBuffer, ArgError> {
        match self.resolved.get(index) {
            Some(Some(b)) => Ok(b),
            _ => Err(ArgError::ByReference { index }),
        }
    }

    /// The bytes of argument `index`: inline in the request, or (passed by
    /// reference) the object's data in the store's shared memory.
    pub fn bytes(&self, index: usize) -> Result<&'a [u8], ArgError> {
        match self.args.get(index) {
            None => Err(ArgError::Missing {
                index,
                len: self.len(),
            }),
            Some(ArchivedTaskArg::Value(v)) => Ok(v.data.as_slice()),
            Some(ArchivedTaskArg::ObjectRef(_)) => self.by_ref(index).map(|b| &b[..]),
        }
    }

    /// The metadata of argument `index` (inline, or the store object's).
    pub fn metadata(&self, index: usize) -> Result<&'a [u8], ArgError> {
        match self.args.get(index) {
            None => Err(ArgError::Missing {
                index,
                len: self.len(),
            }),
            Some(ArchivedTaskArg::Value(v)) => Ok(v.metadata.as_slice()),
            Some(ArchivedTaskArg::ObjectRef(_)) => self.by_ref(index).map(ObjectBuffer::metadata),
        }
    }

    /// Argument `index` as a little-endian `i64` (8 bytes).
    pub fn i64(&self, index: usize) -> Result<i64, ArgError> {
        let b = self.bytes(index)?;
        <[u8; 8]>::try_from(b)
            .map(i64::from_le_bytes)
            .map_err(|_| ArgError::BadSize {
                index,
                len: b.len(),
                expected: 8,
            })
    }
}

/// A handler for a normal (stateless) task.
pub type FunctionHandler = Box<dyn Fn(&Args<'_>) -> TaskResult + Send + Sync>;
type Constructor = Box<dyn Fn(&Args<'_>) -> Result<ErasedState, AppError> + Send + Sync>;
type ExclusiveMethod = Box<dyn Fn(&mut dyn Any, &Args<'_>) -> TaskResult + Send + Sync>;
type SharedMethod = Box<dyn Fn(&dyn Any, &Args<'_>) -> TaskResult + Send + Sync>;

/// An actor's state as its constructor made it, with what the type
/// allows: `Sync` state can be read by several threads at once.
pub(crate) enum ErasedState {
    /// `S: Send` only.
    Send(Box<dyn Any + Send>),
    /// `S: Send + Sync` (the class has shared methods).
    Sync(Box<dyn Any + Send + Sync>),
}

/// A method as registered: exclusive (`&mut S`) or shared (`&S`).
pub(crate) enum Method {
    /// Needs the state alone.
    Exclusive(ExclusiveMethod),
    /// Reads the state; may run next to other shared methods.
    Shared(SharedMethod),
}

/// The dispatch key of a descriptor: FNV-1a (64 bit) over its language tag and
/// fields, each field followed by `0xFF` (a byte UTF-8 never contains, so
/// field boundaries cannot shift). Identical for a [`FunctionDescriptor`] and
/// its archived form; computed without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey(pub u64);

/// The identifying fields of a descriptor: language tag and up to four
/// strings (unused ones empty).
type Parts<'a> = (u8, [&'a str; 4]);

fn parts(d: &FunctionDescriptor) -> Parts<'_> {
    match d {
        FunctionDescriptor::Empty => (0, ["", "", "", ""]),
        FunctionDescriptor::Java(j) => (1, [&j.class_name, &j.function_name, &j.signature, ""]),
        FunctionDescriptor::Python(p) => (
            2,
            [
                &p.module_name,
                &p.class_name,
                &p.function_name,
                &p.function_hash,
            ],
        ),
        FunctionDescriptor::Cpp(c) => (3, [&c.function_name, &c.caller, &c.class_name, ""]),
        FunctionDescriptor::Rust(r) => (4, [&r.module_path, &r.type_name, &r.function_name, ""]),
    }
}

fn archived_parts(d: &ArchivedFunctionDescriptor) -> Parts<'_> {
    match d {
        ArchivedFunctionDescriptor::Empty => (0, ["", "", "", ""]),
        ArchivedFunctionDescriptor::Java(j) => (
            1,
            [
                j.class_name.as_str(),
                j.function_name.as_str(),
                j.signature.as_str(),
                "",
            ],
        ),
        ArchivedFunctionDescriptor::Python(p) => (
            2,
            [
                p.module_name.as_str(),
                p.class_name.as_str(),
                p.function_name.as_str(),
                p.function_hash.as_str(),
            ],
        ),
        ArchivedFunctionDescriptor::Cpp(c) => (
            3,
            [
                c.function_name.as_str(),
                c.caller.as_str(),
                c.class_name.as_str(),
                "",
            ],
        ),
        ArchivedFunctionDescriptor::Rust(r) => (
            4,
            [
                r.module_path.as_str(),
                r.type_name.as_str(),
                r.function_name.as_str(),
                "",
            ],
        ),
    }
}

fn key_of(p: &Parts<'_>) -> FunctionKey {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    };
    eat(p.0);
    for s in p.1 {
        for &b in s.as_bytes() {
            eat(b);
        }
        eat(0xFF);
    }
    FunctionKey(h)
}

impl FunctionKey {
    /// The key of an owned descriptor.
    pub fn of(d: &FunctionDescriptor) -> Self {
        key_of(&parts(d))
    }

    /// The key of an archived descriptor (no allocation).
    pub fn of_archived(d: &ArchivedFunctionDescriptor) -> Self {
        key_of(&archived_parts(d))
    }
}

/// What a registry entry runs.
pub(crate) enum EntryKind {
    Function(FunctionHandler),
    Constructor {
        class: usize,
    },
    Method {
        class: usize,
        method: Method,
        /// The concurrency group the class assigned it to (`None`: the
        /// default group).
        group: Option<String>,
    },
    /// [`TERMINATE_METHOD`] of class `class`, registered with the class.
    Terminate {
        class: usize,
    },
}

/// One registered descriptor.
pub(crate) struct Entry {
    descriptor: FunctionDescriptor,
    /// Index into the stats table of the worker (one slot per entry).
    pub(crate) index: usize,
    pub(crate) kind: EntryKind,
}

struct Class {
    name: String,
    constructor: Constructor,
}

type TypedConstructor<S> = Box<dyn Fn(&Args<'_>) -> Result<S, AppError> + Send + Sync>;

/// A method of an [`ActorClass`] before registration, typed by the state.
enum TypedMethod<S> {
    Exclusive(TypedExclusive<S>),
    Shared(TypedShared<S>),
}

type TypedExclusive<S> = Box<dyn Fn(&mut S, &Args<'_>) -> TaskResult + Send + Sync>;
type TypedShared<S> = Box<dyn Fn(&S, &Args<'_>) -> TaskResult + Send + Sync>;

/// One method of a class: name, handler, concurrency group.
struct MethodDef<S> {
    name: String,
    f: TypedMethod<S>,
    group: Option<String>,
}

/// An actor class under construction: its constructor and methods, typed by
/// the actor's state `S` (Ray's actor class; `S` plays the Python instance).
///
/// Methods taking `&mut S` run alone; methods taking `&S`
/// ([`ActorClass::shared_method`], for `S: Sync`) may run at the same time
/// on a threaded actor (`max_concurrency > 1` or concurrency groups, see
/// [`ActorOptions`](crate::worker::ActorOptions)): there an exclusive method
/// holds the state's write lock, shared ones its read lock. An actor with
/// `max_concurrency = 1` and no groups runs everything on the worker's
/// execution thread without any lock.
pub struct ActorClass<S> {
    module_path: String,
    name: String,
    constructor: TypedConstructor<S>,
    methods: Vec<MethodDef<S>>,
    /// How the state is erased: `Sync` once a shared method was added.
    erase: fn(S) -> ErasedState,
}

fn erase_send<S: Send + 'static>(s: S) -> ErasedState {
    ErasedState::Send(Box::new(s))
}

fn erase_sync<S: Send + Sync + 'static>(s: S) -> ErasedState {
    ErasedState::Sync(Box::new(s))
}

impl<S> fmt::Debug for ActorClass<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorClass")
            .field("module_path", &self.module_path)
            .field("name", &self.name)
            .field("methods", &self.methods.len())
            .finish()
    }
}

impl<S: Send + 'static> ActorClass<S> {
    /// A class `module_path::name` whose actor creation task runs
    /// `constructor` with the creation task's arguments.
    pub fn new(
        module_path: impl Into<String>,
        name: impl Into<String>,
        constructor: impl Fn(&Args<'_>) -> Result<S, AppError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            module_path: module_path.into(),
            name: name.into(),
            constructor: Box::new(constructor),
            methods: Vec::new(),
            erase: erase_send::<S>,
        }
    }

    /// Adds method `name`, which gets the state alone (`&mut S`), in the
    /// actor's default concurrency group.
    pub fn method(
        self,
        name: impl Into<String>,
        f: impl Fn(&mut S, &Args<'_>) -> TaskResult + Send + Sync + 'static,
    ) -> Self {
        self.push(name.into(), TypedMethod::Exclusive(Box::new(f)), None)
    }

    /// [`ActorClass::method`] in concurrency group `group` (Ray's
    /// `@ray.method(concurrency_group=...)`). The group's size comes from
    /// the actor's creation ([`ActorOptions::concurrency_groups`]); a call
    /// of this method on an actor that did not define `group` fails with
    /// [`TaskError::UnknownConcurrencyGroup`].
    ///
    /// [`ActorOptions::concurrency_groups`]: crate::worker::ActorOptions::concurrency_groups
    /// [`TaskError::UnknownConcurrencyGroup`]: crate::worker::TaskError::UnknownConcurrencyGroup
    pub fn method_in_group(
        self,
        group: impl Into<String>,
        name: impl Into<String>,
        f: impl Fn(&mut S, &Args<'_>) -> TaskResult + Send + Sync + 'static,
    ) -> Self {
        self.push(
            name.into(),
            TypedMethod::Exclusive(Box::new(f)),
            Some(group.into()),
        )
    }

    fn push(mut self, name: String, f: TypedMethod<S>, group: Option<String>) -> Self {
        self.methods.push(MethodDef { name, f, group });
        self
    }

    /// The descriptor of the class's actor creation task:
    /// `Rust { module_path, type_name: name, function_name: "__init__" }`.
    pub fn creation_descriptor(&self) -> FunctionDescriptor {
        FunctionDescriptor::rust(&self.module_path, &self.name, CONSTRUCTOR_NAME)
    }
}

impl<S: Send + Sync + 'static> ActorClass<S> {
    /// Adds method `name`, which reads the state (`&S`): on a threaded actor
    /// it runs concurrently with other shared methods, up to its group's
    /// `max_concurrency` (Ray's threaded actors; Rust asks `S: Sync` for
    /// it, where Ray leaves thread safety to the user).
    pub fn shared_method(
        mut self,
        name: impl Into<String>,
        f: impl Fn(&S, &Args<'_>) -> TaskResult + Send + Sync + 'static,
    ) -> Self {
        self.erase = erase_sync::<S>;
        self.push(name.into(), TypedMethod::Shared(Box::new(f)), None)
    }

    /// [`ActorClass::shared_method`] in concurrency group `group` (see
    /// [`ActorClass::method_in_group`]).
    pub fn shared_method_in_group(
        mut self,
        group: impl Into<String>,
        name: impl Into<String>,
        f: impl Fn(&S, &Args<'_>) -> TaskResult + Send + Sync + 'static,
    ) -> Self {
        self.erase = erase_sync::<S>;
        self.push(
            name.into(),
            TypedMethod::Shared(Box::new(f)),
            Some(group.into()),
        )
    }
}

/// Registered functions and actor classes; shared read-only by a worker's
/// execution thread once built.
#[derive(Default)]
pub struct FunctionRegistry {
    /// By registration order (an entry's `index`).
    entries: Vec<Entry>,
    /// Indices into `entries` by the hash of their descriptor.
    buckets: HashMap<FunctionKey, Vec<usize>>,
    classes: Vec<Class>,
    names: Vec<String>,
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("entries", &self.names)
            .finish()
    }
}

/// A registration that clashes with an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{descriptor} is already registered")]
pub struct AlreadyRegistered {
    /// Ray's `ToString()` of the descriptor.
    pub descriptor: String,
}

impl FunctionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn insert(
        &mut self,
        descriptor: FunctionDescriptor,
        kind: EntryKind,
    ) -> Result<(), AlreadyRegistered> {
        if self.find(&parts(&descriptor)).is_some() {
            return Err(AlreadyRegistered {
                descriptor: descriptor.to_string(),
            });
        }
        let index = self.names.len();
        self.names.push(descriptor.call_string());
        self.buckets
            .entry(FunctionKey::of(&descriptor))
            .or_default()
            .push(index);
        self.entries.push(Entry {
            descriptor,
            index,
            kind,
        });
        Ok(())
    }

    /// Registers a normal-task handler under `descriptor` (any language
    /// variant; [`FunctionDescriptor::rust`] for native code).
    pub fn register_function(
        &mut self,
        descriptor: FunctionDescriptor,
        handler: impl Fn(&Args<'_>) -> TaskResult + Send + Sync + 'static,
    ) -> Result<(), AlreadyRegistered> {
        self.insert(descriptor, EntryKind::Function(Box::new(handler)))
    }

    /// Registers an actor class: its constructor under
    /// [`ActorClass::creation_descriptor`], each method under
    /// `Rust { module_path, type_name: class, function_name: method }`,
    /// and the built-in [`TERMINATE_METHOD`] the same way.
    /// Nothing is registered if any descriptor clashes (a method named
    /// [`TERMINATE_METHOD`] or [`CONSTRUCTOR_NAME`] clashes with the class's
    /// own).
    pub fn register_actor_class<S: Send + 'static>(
        &mut self,
        class: ActorClass<S>,
    ) -> Result<(), AlreadyRegistered> {
        let ActorClass {
            module_path,
            name,
            constructor,
            methods,
            erase,
        } = class;
        let ctor_desc = FunctionDescriptor::rust(&module_path, &name, CONSTRUCTOR_NAME);
        let terminate_desc = FunctionDescriptor::rust(&module_path, &name, TERMINATE_METHOD);
        let method_descs: Vec<FunctionDescriptor> = methods
            .iter()
            .map(|m| FunctionDescriptor::rust(&module_path, &name, &m.name))
            .collect();
        // Against the registry and each other: a method named like the
        // constructor, the built-in or another method clashes.
        let mut seen = Vec::new();
        for d in [&ctor_desc, &terminate_desc]
            .into_iter()
            .chain(&method_descs)
        {
            let p = parts(d);
            if self.find(&p).is_some() || seen.contains(&p) {
                return Err(AlreadyRegistered {
                    descriptor: d.to_string(),
                });
            }
            seen.push(p);
        }
        let class_index = self.classes.len();
        let type_name = format!("{module_path}::{name}");
        self.classes.push(Class {
            name: type_name.clone(),
            constructor: Box::new(move |args| constructor(args).map(erase)),
        });
        self.insert(ctor_desc, EntryKind::Constructor { class: class_index })?;
        for (d, def) in method_descs.into_iter().zip(methods) {
            let type_name = type_name.clone();
            let wrong = move || AppError::new(format!("the actor's state is not a {type_name}"));
            let method = match def.f {
                TypedMethod::Exclusive(f) => Method::Exclusive(Box::new(move |state, args| {
                    match state.downcast_mut::<S>() {
                        Some(s) => f(s, args),
                        None => Err(wrong()),
                    }
                })),
                TypedMethod::Shared(f) => Method::Shared(Box::new(move |state, args| match state
                    .downcast_ref::<S>()
                {
                    Some(s) => f(s, args),
                    None => Err(wrong()),
                })),
            };
            self.insert(
                d,
                EntryKind::Method {
                    class: class_index,
                    method,
                    group: def.group,
                },
            )?;
        }
        self.insert(terminate_desc, EntryKind::Terminate { class: class_index })?;
        Ok(())
    }

    fn find(&self, p: &Parts<'_>) -> Option<&Entry> {
        self.buckets
            .get(&key_of(p))?
            .iter()
            .filter_map(|&i| self.entries.get(i))
            .find(|e| parts(&e.descriptor) == *p)
    }

    /// The entry of index `index` (its registration order), if any.
    pub(crate) fn entry(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    /// The entry for an archived descriptor: one hash over its bytes, one map
    /// probe, an exact field comparison; no allocation.
    pub(crate) fn lookup(&self, d: &ArchivedFunctionDescriptor) -> Option<&Entry> {
        self.find(&archived_parts(d))
    }

    /// The index of the entry registered under an archived descriptor (its
    /// registration order, also its slot in the worker's statistics), found
    /// the way the worker dispatches: no allocation.
    pub fn lookup_index(&self, d: &ArchivedFunctionDescriptor) -> Option<usize> {
        self.lookup(d).map(|e| e.index)
    }

    /// The methods of class `class`: each entry's index and the concurrency
    /// group the class assigned it to.
    pub(crate) fn class_methods(
        &self,
        class: usize,
    ) -> impl Iterator<Item = (usize, Option<&str>)> {
        self.entries.iter().filter_map(move |e| match &e.kind {
            EntryKind::Method {
                class: c, group, ..
            } if *c == class => Some((e.index, group.as_deref())),
            _ => None,
        })
    }

    /// `true` if `descriptor` is registered (as a function, constructor or method).
    pub fn contains(&self, descriptor: &FunctionDescriptor) -> bool {
        self.find(&parts(descriptor)).is_some()
    }

    /// Number of registered descriptors.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `true` if nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The call string of entry `index` (stats labels).
    pub(crate) fn name(&self, index: usize) -> &str {
        &self.names[index]
    }

    /// Runs class `class`'s constructor.
    pub(crate) fn construct(&self, class: usize, args: &Args<'_>) -> Result<ErasedState, AppError> {
        match self.classes.get(class) {
            Some(c) => (c.constructor)(args),
            None => Err(AppError::new("no such actor class")),
        }
    }

    /// The `module::Class` name of class `class`.
    pub(crate) fn class_name(&self, class: usize) -> &str {
        self.classes.get(class).map_or("?", |c| c.name.as_str())
    }
}

impl Entry {
    /// Runs a method entry on `state`, owned by the calling thread.
    pub(crate) fn call_method(&self, state: &mut dyn Any, args: &Args<'_>) -> Option<TaskResult> {
        match &self.kind {
            EntryKind::Method {
                method: Method::Exclusive(f),
                ..
            } => Some(f(state, args)),
            EntryKind::Method {
                method: Method::Shared(f),
                ..
            } => Some(f(state, args)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{self, TaskArg, TaskSpecBuilder};

    #[test]
    fn archived_key_matches_owned_key_for_every_language() {
        let ds = [
            FunctionDescriptor::rust("m", "C", "f"),
            FunctionDescriptor::python("m", "C", "f", "h"),
            FunctionDescriptor::java("C", "f", "()V"),
            FunctionDescriptor::cpp_with("f", "c", "C"),
            FunctionDescriptor::Empty,
        ];
        for d in ds {
            let spec = TaskSpecBuilder::new(d.clone()).build_normal_task();
            let bytes = spec::to_vec(&spec).unwrap();
            let a = spec::access::<spec::TaskSpec>(&bytes).unwrap();
            assert_eq!(
                FunctionKey::of(&d),
                FunctionKey::of_archived(&a.function_descriptor)
            );
        }
        // Field boundaries matter.
        assert_ne!(
            FunctionKey::of(&FunctionDescriptor::rust("ab", "", "c")),
            FunctionKey::of(&FunctionDescriptor::rust("a", "b", "c"))
        );
    }

    #[test]
    fn lookup_finds_functions_and_refuses_duplicates() {
        let mut r = FunctionRegistry::new();
        r.register_function(FunctionDescriptor::rust("m", "", "double"), |a| {
            Ok((a.i64(0)? * 2).to_le_bytes().to_vec())
        })
        .unwrap();
        assert!(r
            .register_function(FunctionDescriptor::rust("m", "", "double"), |_| Ok(vec![]))
            .is_err());
        r.register_actor_class(ActorClass::new("m", "Counter", |_| Ok(0i64)).method(
            "add",
            |s, a| {
                *s += a.i64(0)?;
                Ok(s.to_le_bytes().to_vec())
            },
        ))
        .unwrap();
        // double, Counter's constructor, add and the built-in terminate.
        assert_eq!(r.len(), 4);
        assert!(r.contains(&FunctionDescriptor::rust("m", "Counter", TERMINATE_METHOD)));
        // A method named like the built-in, or twice, clashes; nothing of
        // the class is registered then.
        for clash in [TERMINATE_METHOD, "add"] {
            let class = ActorClass::new("m", "Other", |_| Ok(0i64))
                .method("add", |_, _| Ok(vec![]))
                .method(clash, |_, _| Ok(vec![]));
            let e = r.register_actor_class(class).unwrap_err();
            assert!(e.descriptor.contains(clash), "{e}");
            assert_eq!(r.len(), 4);
        }
        let spec = TaskSpecBuilder::new(FunctionDescriptor::rust("m", "", "double"))
            .arg(TaskArg::value(21i64.to_le_bytes().to_vec(), Vec::new()))
            .build_normal_task();
        let bytes = spec::to_vec(&spec).unwrap();
        let a = spec::access::<spec::TaskSpec>(&bytes).unwrap();
        let e = r.lookup(&a.function_descriptor).expect("registered");
        let EntryKind::Function(f) = &e.kind else {
            panic!("not a function")
        };
        assert_eq!(f(&Args::new(&a.args)).unwrap(), 42i64.to_le_bytes());
        let unknown =
            TaskSpecBuilder::new(FunctionDescriptor::rust("m", "", "triple")).build_normal_task();
        let bytes = spec::to_vec(&unknown).unwrap();
        let a = spec::access::<spec::TaskSpec>(&bytes).unwrap();
        assert!(r.lookup(&a.function_descriptor).is_none());
        assert!(r.contains(&FunctionDescriptor::rust("m", "Counter", "__init__")));
    }

    #[test]
    fn args_report_bad_shapes() {
        let spec = TaskSpecBuilder::new(FunctionDescriptor::rust("m", "", "f"))
            .arg(TaskArg::value(vec![1, 2, 3], Vec::new()))
            .build_normal_task();
        let bytes = spec::to_vec(&spec).unwrap();
        let a = spec::access::<spec::TaskSpec>(&bytes).unwrap();
        let args = Args::new(&a.args);
        assert_eq!(
            args.i64(0),
            Err(ArgError::BadSize {
                index: 0,
                len: 3,
                expected: 8
            })
        );
        assert_eq!(args.bytes(1), Err(ArgError::Missing { index: 1, len: 1 }));
    }
}
