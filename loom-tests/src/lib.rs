//! Loom models of shmwire's lock-free protocols live in `tests/`.
//!
//! Run them with
//! `RUSTFLAGS="--cfg shmwire_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release -p loom-tests`.
//! Without `--cfg shmwire_loom` the test files compile to nothing.
