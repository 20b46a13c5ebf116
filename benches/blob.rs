//! Benchmark of the local blob service (being written).
fn main() {}
