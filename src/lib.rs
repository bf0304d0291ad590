//! shmwire — Ray-style tasks between worker processes.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod ids;
pub mod ordering;
pub mod ring;
pub mod shm;
pub mod spec;
pub mod sync;
pub mod transport;
pub mod wake;
