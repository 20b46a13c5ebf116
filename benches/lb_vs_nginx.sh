#!/usr/bin/env bash
# The load balancer against nginx as a reverse proxy to the same backend, and the backend
# directly: wrk -t2 -c64 -d10s --latency on loopback. Prints requests/s and p99 of each.
# Installs wrk and nginx with apt-get if they are missing. Usage: benches/lb_vs_nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND_PORT=${BACKEND_PORT:-18080}
LB_PORT=${LB_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release -q --example lb_backend --example lb_proxy
BIN=${CARGO_TARGET_DIR:-target}/release/examples

WORK=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN/lb_backend" "$BACKEND_PORT" >"$WORK/backend.log" 2>&1 & pids+=($!)
"$BIN/lb_proxy" "127.0.0.1:$BACKEND_PORT" "$LB_PORT" >"$WORK/lb.log" 2>&1 & pids+=($!)

cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"

# Wait until all three answer (the load balancer prints its URL once its target is healthy).
for _ in $(seq 1 100); do
    if grep -q "http://" "$WORK/lb.log" 2>/dev/null \
        && curl -sf "http://127.0.0.1:$BACKEND_PORT/" >/dev/null \
        && curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null; then break; fi
    sleep 0.2
done

run() {
    local name=$1 url=$2
    local out; out=$(wrk -t2 -c64 -d"$DURATION" --latency "$url")
    local rps p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf "%-8s %12s req/s   p99 %s\n" "$name" "$rps" "$p99"
}

echo "wrk -t2 -c64 -d$DURATION --latency, loopback, $(nproc) cores; $ROUNDS rounds, nginx and mvi in alternating order"
run backend "http://127.0.0.1:$BACKEND_PORT/"
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then
        n=$(run nginx "http://127.0.0.1:$NGINX_PORT/"); m=$(run mvi-lb "http://127.0.0.1:$LB_PORT/")
    else
        m=$(run mvi-lb "http://127.0.0.1:$LB_PORT/"); n=$(run nginx "http://127.0.0.1:$NGINX_PORT/")
    fi
    echo "$n"; echo "$m"
    ratios+=("$(awk -v a="$(awk '{print $2}' <<<"$m")" -v b="$(awk '{print $2}' <<<"$n")" 'BEGIN {printf "%.3f", a / b}')")
done
sorted=$(printf '%s\n' "${ratios[@]}" | sort -n)
median=$(awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}' <<<"$sorted")
echo "mvi-lb / nginx requests/s per round: ${ratios[*]}; median $median"
