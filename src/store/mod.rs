//! placeholder
pub mod arena;
pub mod error;
mod protocol;
pub mod table;
pub use error::StoreError;
pub use table::*;
