//! Benchmark of the local metric service (being written).
fn main() {}
