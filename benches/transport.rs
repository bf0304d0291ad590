//! placeholder, filled by the transport work
fn main() {}
