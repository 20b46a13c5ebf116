//! Benchmark of the local kv service (being written).
fn main() {}
