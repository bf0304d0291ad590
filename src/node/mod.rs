//! A host's session at the node level: the directory of live workers and
//! the session token.
//!
//! The segment layer ([`crate::shm`]) owns a session's *namespace* (its
//! directory and the segments in it); this layer owns what makes it a node:
//!
//! - [`Directory`]: which worker listens where (entry files with `flock`
//!   liveness); it implements the transport's
//!   [`WorkerLookup`](crate::transport::WorkerLookup), which is how a
//!   [`Connector`](crate::transport::Connector) finds a worker and a
//!   [`Listener`](crate::transport::Listener) publishes itself;
//! - [`load_or_create_token`]: the session's shared secret, kept in the
//!   session directory;
//! - the object store wired to both: `StoreService::start(&session, …)`
//!   and `StoreClient::connect(&session, name)` are defined here;
//! - [`Node`]: the host's service (`shmwire node`): the store, liveness and
//!   cleanup of dead workers, an HTTP endpoint (`docs/node.md`);
//! - [`StatsArea`] / [`read_area`]: the small statistics segment each
//!   worker (and the node) publishes and `shmwire inspect` reads;
//!   [`SessionReport`]: what `inspect --session` shows.
//!
//! ```
//! use std::sync::Arc;
//! use shmwire::ids::{NodeId, WorkerId};
//! use shmwire::node::{load_or_create_token, Directory};
//! use shmwire::shm::Session;
//! use shmwire::transport::{Connector, ListenOptions, Listener, TransportConfig};
//!
//! let tmp = tempfile::tempdir()?;
//! let session = Session::open_in(tmp.path().join("root"), "node-doc")?;
//! let token = load_or_create_token(&session)?;
//! let directory = Arc::new(Directory::for_session(&session)?);
//! let server = WorkerId::from_random();
//! let opts = ListenOptions { tcp: Some("127.0.0.1:0".parse()?), name: Some("server".into()), ..Default::default() };
//! let listener = Listener::bind(&session, TransportConfig::new(server, token), opts, directory.as_ref())?;
//! assert_eq!(directory.lookup_name("server")?.worker_id, server);
//! let connector = Connector::new(TransportConfig::new(WorkerId::from_random(), token), NodeId::from_random())
//!     .with_session(&session, directory.clone());
//! # drop((listener, connector));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod directory;
mod http;
pub mod inspect;
mod node_lock;
mod service;
pub mod stats_area;
mod store;
mod token;

pub use directory::{Directory, Registration, WorkerStatus, NAMES_LOCK_WAIT};
pub use inspect::{SessionReport, UnreadableEntry, WorkerReport};
pub use node_lock::{probe as probe_node_lock, NodeLockError, NodeLockState};
pub use service::{
    Node, NodeConfig, NodeError, TickReport, DEATH_GRACE, HTTP_MAX_CONNECTIONS, HTTP_TIMEOUT,
    INSPECT_QUEUE, INSPECT_TIMEOUT, NODE_NAME, NODE_SPARE_DESCRIPTORS,
};
pub use stats_area::{
    area_name, read_area, AreaError, AreaRole, AreaSnapshot, ConnectionFigures, DeadWorker,
    HandlerFigures, ObjectFigures, StatsArea, StoreFigures,
};
pub use token::{
    load_or_create_in, load_or_create_token, restore_token, TokenError, TokenFile, TOKEN_FILE,
    TOKEN_REPAIR_WAIT,
};
