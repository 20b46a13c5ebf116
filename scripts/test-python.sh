#!/usr/bin/env bash
# The Python binding: builds the package `mvi` (crates/py) into a virtualenv under the cache
# folder with maturin, then runs its pytest suite (a smoke test of every service on the local
# backend, stacks, and examples/quickstart.py), mypy stubtest (the .pyi stubs against the
# built module) and mypy --strict on the example (the API is typed).
# Usage: ./scripts/test-python.sh   (CARGO_TARGET_DIR is honoured; run scripts/setup.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mvi"
venv="$cache/venv-py"
[ -x "$venv/bin/maturin" ] || { echo "test-python: run scripts/setup.sh first (no $venv)" >&2; exit 1; }

export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
# With the AWS backend: its SDK crates are built already by the workspace tests (same
# profile), and tests/test_aws.py runs the binding against moto_server.
(cd crates/py && maturin develop --locked --quiet --features aws)

cd crates/py
python -m pytest tests -q
python -m mypy.stubtest mvi
python -m mypy --strict ../../examples/quickstart.py ../../examples/deploy.py ../../examples/flags.py ../../examples/autoscale.py
python ../../examples/flags.py
python ../../examples/autoscale.py "$(mktemp -d)/state" | tail -n 3
deploy_state="$(mktemp -d)"
trap 'rm -rf "$deploy_state"' EXIT
python ../../examples/deploy.py "$deploy_state/state" > "$deploy_state/out.txt" || { cat "$deploy_state/out.txt"; exit 1; }
tail -n 8 "$deploy_state/out.txt"
