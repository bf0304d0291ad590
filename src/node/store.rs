//! The object store wired to the node: the session's token file and
//! directory, so that `StoreService::start(&session, config)` and
//! `StoreClient::connect(&session, name)` need nothing else.
//!
//! The store layer sits below the node layer (the node runs the store
//! service), so it takes the token and the registry as arguments
//! ([`StoreService::start_with`], [`StoreClient::connect_via`]); these
//! inherent methods, defined here, fill them in.

use std::sync::Arc;

use super::{load_or_create_token, Directory};
use crate::shm::Session;
use crate::store::{
    ClientOptions, StoreAccess, StoreClient, StoreConfig, StoreError, StoreService,
};

fn access(session: &Session) -> Result<StoreAccess, StoreError> {
    let token = load_or_create_token(session)
        .map_err(|e| StoreError::io("load the session token", std::io::Error::other(e)))?;
    let directory = Directory::for_session(session)
        .map_err(|e| StoreError::io("open the session directory", std::io::Error::other(e)))?;
    Ok(StoreAccess {
        session: session.clone(),
        token,
        lookup: Arc::new(directory),
    })
}

impl StoreService {
    /// Starts a store service in `session`: creates its arena segment
    /// (`config.capacity` bytes, pages reserved), publishes it in the
    /// session's directory under `config.name`, and runs the event loop on a
    /// new thread.
    ///
    /// Errors: `InvalidConfig`, `ArenaReserve` (the file system cannot hold
    /// the arena), `Shm`, `Connect` (the name is taken by a live store).
    pub fn start(session: &Session, config: StoreConfig) -> Result<Self, StoreError> {
        let a = access(session)?;
        Self::start_with(session, a.token, a.lookup.as_ref(), config)
    }
}

impl StoreClient {
    /// Connects to the store named `name` (usually
    /// [`DEFAULT_STORE_NAME`](crate::store::DEFAULT_STORE_NAME)) in
    /// `session` with default [`ClientOptions`], and maps its arena.
    ///
    /// Errors: `Connect` (no such store, refused), `Shm` (the arena segment
    /// does not open), `BadReply`.
    pub fn connect(session: &Session, name: &str) -> Result<Self, StoreError> {
        Self::connect_with(session, name, ClientOptions::default())
    }

    /// [`StoreClient::connect`] with explicit options.
    pub fn connect_with(
        session: &Session,
        name: &str,
        opts: ClientOptions,
    ) -> Result<Self, StoreError> {
        Self::connect_via(access(session)?, name, opts)
    }
}
