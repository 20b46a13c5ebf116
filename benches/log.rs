//! Benchmark of the local log service (being written).
fn main() {}
