#!/usr/bin/env bash
# Every test of mvi, on a fresh machine: formatting, lints, the unit and conformance tests of
# every crate, the end-to-end tests, the quickstart as a smoke test, and the Python binding.
# Usage: ./scripts/test.sh   (set CARGO_TARGET_DIR to reuse a build cache)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A reused build cache grows with every change (old test binaries, incremental data) until
# the disk is full, and a full disk shows up as a linker "Bus error" half-way through. So
# before building: below 20 GiB free, drop incremental data; still below, drop the cache's
# build output (a cold build needs about 15 GiB and 25 minutes, a failed one saves nothing).
target_dir="${CARGO_TARGET_DIR:-target}"
free_gib() {
  local probe="$target_dir"
  while [ ! -e "$probe" ]; do probe="$(dirname "$probe")"; done
  df -Pk "$probe" | awk 'NR == 2 { print int($4 / 1048576) }'
}
if [ -d "$target_dir" ] && (($(free_gib) < 20)); then
  echo "test: only $(free_gib) GiB free; removing incremental data from $target_dir"
  rm -rf "$target_dir"/*/incremental
  if (($(free_gib) < 20)); then
    echo "test: still $(free_gib) GiB free; removing the build cache $target_dir/debug"
    rm -rf "$target_dir/debug"
  fi
fi
(($(free_gib) >= 15)) || echo "test: warning: $(free_gib) GiB free, a cold build needs about 15" >&2

step "system packages (PostgreSQL, python3)"
./scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

# `--features mvi/aws` adds the facade's AWS feature, so examples/aws_stack.rs is linted too;
# `mvi/openfeature` the OpenFeature provider of the flag client (and its test).
step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked --features mvi/aws,mvi/openfeature -- -D warnings

step "cargo test (unit; conformance on the local backend in memory and on disk, and on AWS"
step "  as moto_server simulates it; the quickstart stack on moto; end to end)"
cargo test --workspace --locked --features mvi/aws,mvi/openfeature

step "a public S3 compatibility suite (s3s-e2e) against the local S3 endpoint and moto_server"
./scripts/s3-compat.sh

step "examples: the data services (in memory), the quickstart stack, the same app as a script,"
step "  the app deployed with each strategy under traffic, autoscaling, flags, a multi-AZ failover,"
step "  restore drills"
cargo run --quiet --locked --example data_services -- --memory
cargo run --quiet --locked --example quickstart
# The quickstart as a command line (docs/cli.md), after the demo on the same root: up, an
# in-sync preview (exit 0 under --expect-no-changes), destroy, and up and destroy again.
for cmd in "up --yes" "preview --expect-no-changes" "destroy --yes" "up --yes" "destroy --yes"; do
  # shellcheck disable=SC2086
  cargo run --quiet --locked --example quickstart -- $cmd | tail -n 1
done
cargo run --quiet --locked --example app_script
cargo run --quiet --locked --example deploy
cargo run --quiet --locked --example flags
cargo run --quiet --locked --example autoscale
cargo run --quiet --locked --example failover | tail -n 2
cargo run --quiet --locked --example drill | tail -n 1

step "Python binding: build the package, pytest (every service, stacks, quickstart.py), stubtest"
./scripts/test-python.sh

echo
echo "all tests passed"
