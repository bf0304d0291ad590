//! placeholder, filled by the ring work
fn main() {}
