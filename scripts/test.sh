#!/usr/bin/env bash
# Every test of mvi, on a fresh machine: formatting, lints, the unit and conformance tests of
# every crate, the end-to-end tests, the quickstart as a smoke test, and the Python binding.
# Usage: ./scripts/test.sh   (set CARGO_TARGET_DIR to reuse a build cache)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages (PostgreSQL, python3)"
./scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, conformance on the local backend in memory and on disk, end to end)"
cargo test --workspace --locked

step "examples: the data services (in memory), the quickstart stack, the same app as a script"
cargo run --quiet --locked --example data_services -- --memory
cargo run --quiet --locked --example quickstart
cargo run --quiet --locked --example app_script

step "Python binding: build the package, pytest (every service, stacks, quickstart.py), stubtest"
./scripts/test-python.sh

echo
echo "all tests passed"
