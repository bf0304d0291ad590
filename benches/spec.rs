//! placeholder, filled by the spec work
fn main() {}
