#!/usr/bin/env bash
# A public S3 compatibility suite against the local cloud's S3 endpoint and, as the
# reference, against moto_server: the s3s project's end-to-end cases (`s3s-e2e` 0.14.1, the
# AWS SDK for Rust as the client), all but the STS case (AssumeRole is not S3). Prints which
# cases pass on each, and fails if one of the cases the endpoint is known to pass
# (EXPECTED_LOCAL below) fails on it. docs/endpoints.md lists the results.
# Usage: ./scripts/s3-compat.sh   (installs s3s-e2e under the cache folder on first use)
set -euo pipefail
cd "$(dirname "$0")/.."

EXPECTED_LOCAL=(
  Basic/Essential/test_list_buckets
  Basic/Essential/test_list_objects
  Basic/Essential/test_get_object
  Basic/Essential/test_delete_object
  Basic/Essential/test_head_operations
  Basic/Put/test_put_object_tiny
  Basic/Put/test_put_object_with_metadata
  Basic/Put/test_put_object_with_non_ascii_metadata
  Basic/Put/test_put_object_larger
  Basic/Put/test_put_object_with_content_checksums
  Basic/Copy/test_copy_object
  Advanced/Multipart/test_multipart_upload
  Advanced/ListPagination/test_list_objects_with_pagination
  Advanced/PresignedUrl/test_put_presigned_url
  Advanced/PresignedUrl/test_get_presigned_url
)

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mvi"
tools="$cache/tools"
e2e="$tools/bin/s3s-e2e"
if ! [ -x "$e2e" ]; then
  echo "s3-compat: installing s3s-e2e 0.14.1 into $tools"
  # Its own lock file and target folder; a debug build (the cases are I/O-bound).
  CARGO_TARGET_DIR="$tools/target" cargo install --quiet --locked --debug \
    --root "$tools" s3s-e2e --version 0.14.1
fi

work="$(mktemp -d)"
serve_pid="" moto_pid=""
cleanup() {
  for pid in $serve_pid $moto_pid; do kill -- "-$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "s3-compat: nothing listens on port $1" >&2
  return 1
}

# The suite's cases, without STS.
filters=(--filter '^Basic/' --filter '^Advanced/(Multipart|Tagging|ListPagination|PresignedUrl)/')

run_suite() { # name, then the environment as NAME=value words
  local name="$1"
  shift
  env -u AWS_PROFILE -u AWS_ENDPOINT_URL "$@" AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true NO_COLOR=1 \
    "$e2e" "${filters[@]}" >"$work/$name.out" 2>"$work/$name.err" || true
  grep -oE '^(PASSED|FAILED) +[0-9.]+ms \[[^/]+/[^/]+/[^]]+\]' "$work/$name.out" \
    | sed -E 's/^(PASSED|FAILED) +[0-9.]+ms \[(.*)\]$/\2 \1/' | sort >"$work/$name.cases" || true
}

# The local cloud's endpoint, through examples/serve.rs (fresh admin credentials).
port="$(free_port)"
setsid cargo run --quiet --locked --example serve -- "$work/root" --port "$port" >"$work/serve.env" 2>"$work/serve.err" &
serve_pid=$!
wait_port "$port"
# shellcheck disable=SC2046
run_suite local $(sed -n 's/^export //p' "$work/serve.env")

# moto_server, the reference.
moto_port="$(free_port)"
setsid moto_server -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
moto_pid=$!
wait_port "$moto_port"
run_suite moto AWS_ENDPOINT_URL_S3="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing

printf '%-60s %-7s %s\n' "s3s-e2e 0.14.1 case" local moto
join -a1 -a2 -e - -o 0,1.2,2.2 "$work/local.cases" "$work/moto.cases" \
  | while read -r c l m; do printf '%-60s %-7s %s\n' "$c" "$l" "$m"; done
total="$(wc -l <"$work/local.cases")"
printf 'passed: local %s of %s, moto %s of %s\n' \
  "$(grep -c ' PASSED$' "$work/local.cases" || true)" "$total" \
  "$(grep -c ' PASSED$' "$work/moto.cases" || true)" "$(wc -l <"$work/moto.cases")"

status=0
for c in "${EXPECTED_LOCAL[@]}"; do
  if ! grep -qx "$c PASSED" "$work/local.cases"; then
    echo "s3-compat: $c does not pass on the local endpoint" >&2
    sed -n "/$(basename "$c")/,+3p" "$work/local.out" >&2 || true
    status=1
  fi
done
if ((total == 0)); then
  echo "s3-compat: the suite ran no case on the local endpoint:" >&2
  tail -20 "$work/local.err" >&2
  status=1
fi
exit "$status"
