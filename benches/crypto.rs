//! Benchmark of the local crypto service (being written).
fn main() {}
