//! placeholder
pub mod arena;
mod client;
pub mod error;
mod protocol;
mod service;
pub mod table;
pub use client::{ClientOptions, ObjectBuffer, ObjectBuilder, StoreClient, Subscription};
pub use error::StoreError;
pub use service::{StoreConfig, StoreService, DEFAULT_STORE_NAME};
pub use table::*;
