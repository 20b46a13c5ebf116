#!/usr/bin/env bash
# The load balancer against nginx as a reverse proxy to the same backend, and the backend
# directly, with wrk on loopback, in two configurations (WORKERS, default "1 $(nproc)"):
#   1        nginx `worker_processes 1`; the mvi load balancer on a current-thread runtime
#   N > 1    nginx `worker_processes N` (`auto` is one per core); mvi on N Tokio workers
#            (what `#[tokio::main]` gives a program on N cores)
# Per configuration:
#   - throughput: `wrk -t2 -c64` for DURATION, ROUNDS rounds with nginx and mvi in alternating
#     order; prints requests/s and p99 of each round and the median ratio mvi / nginx.
#   - added latency, two ways: one connection (`wrk -c1`, no queueing: what the proxy itself
#     adds), ROUNDS rounds, the median p99 of each against the backend's; and the same 64
#     connections paced by benches/wrk_paced.lua (each waits PACE_MS between its requests, so
#     all three see the same moderate load, in bursts), p99 of each against the backend's.
# nginx (both variants) keeps a keepalive upstream pool. "nginx+" also does the load
# balancer's job: X-Forwarded-For/-Proto/-Port headers and a buffered access line per request.
# Installs wrk and nginx with apt-get if they are missing. Usage: benches/lb_vs_nginx.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND_PORT=${BACKEND_PORT:-18080}
LB_PORT=${LB_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
NGINX_JOB_PORT=${NGINX_JOB_PORT:-18083}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
PACE_MS=${PACE_MS:-10}
WORKERS=${WORKERS:-"1 $(nproc)"}

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
backend_pid=""
lb_pid=""
stop_proxies() {
    [ -n "$lb_pid" ] && kill "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null || true
    lb_pid=""
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -f "$WORK/nginx.pid"
    sleep 0.5
}
cleanup() {
    stop_proxies
    [ -n "$backend_pid" ] && kill "$backend_pid" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN/lb_backend" "$BACKEND_PORT" >"$WORK/backend.log" 2>&1 & backend_pid=$!

start_proxies() {
    local workers=$1
    cat >"$WORK/nginx.conf" <<CONF
worker_processes $workers;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    log_format elb '\$remote_addr \$upstream_addr \$upstream_response_time \$status "\$request"';
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { proxy_pass http://backend; }
    }
    server {
        listen 127.0.0.1:$NGINX_JOB_PORT;
        access_log $WORK/access.log elb buffer=64k flush=1s;
        location / {
            proxy_pass http://backend;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Port \$server_port;
        }
    }
}
CONF
    "$NGINX" -c "$WORK/nginx.conf" -p "$WORK"
    # One nginx worker is one thread: the load balancer's match is a current-thread runtime.
    local threads=$workers
    [ "$workers" -eq 1 ] && threads=0
    : >"$WORK/lb.log"
    LB_THREADS=$threads "$BIN/lb_proxy" "127.0.0.1:$BACKEND_PORT" "$LB_PORT" >"$WORK/lb.log" 2>&1 &
    lb_pid=$!
    # Wait until all answer (the load balancer prints its URL once its target is healthy).
    for _ in $(seq 1 100); do
        if grep -q "http://" "$WORK/lb.log" 2>/dev/null \
            && curl -sf "http://127.0.0.1:$BACKEND_PORT/" >/dev/null \
            && curl -sf "http://127.0.0.1:$NGINX_PORT/" >/dev/null \
            && curl -sf "http://127.0.0.1:$NGINX_JOB_PORT/" >/dev/null; then return; fi
        sleep 0.2
    done
    echo "the proxies did not come up" >&2
    cat "$WORK/lb.log" "$WORK/nginx-error.log" >&2
    exit 1
}

# run NAME URL [wrk args...]: prints "NAME req/s p50 p99" (64 connections unless the args
# say otherwise: wrk takes the last -t/-c given)
run() {
    local name=$1 url=$2; shift 2
    local out; out=$(wrk -t2 -c64 -d"$DURATION" --latency "$@" "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    printf "%-8s %12s req/s   p50 %8s   p99 %8s\n" "$name" "$rps" "$p50" "$p99"
}
ratio() { awk -v a="$(awk '{print $2}' <<<"$1")" -v b="$(awk '{print $2}' <<<"$2")" 'BEGIN {printf "%.3f", a / b}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# wrk prints latencies as 812.00us, 1.20ms or 1.01s: in milliseconds.
ms() { awk '{v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; printf "%.3f", v}' <<<"$1"; }

echo "wrk -t2 -c64 -d$DURATION --latency, loopback, $(nproc) cores; $ROUNDS rounds per configuration"
for workers in $WORKERS; do
    start_proxies "$workers"
    echo
    echo "== $workers worker(s): nginx worker_processes $workers; mvi $([ "$workers" -eq 1 ] && echo "current-thread runtime" || echo "$workers Tokio workers")"
    # Warm-up: every proxy opens its upstream connections before anything is measured.
    for port in $LB_PORT $NGINX_PORT $NGINX_JOB_PORT; do
        wrk -t2 -c64 -d2s "http://127.0.0.1:$port/" >/dev/null
    done
    run backend "http://127.0.0.1:$BACKEND_PORT/"
    r_nginx=(); r_job=()
    for round in $(seq 1 "$ROUNDS"); do
        if (( round % 2 )); then
            n=$(run nginx "http://127.0.0.1:$NGINX_PORT/"); j=$(run nginx+ "http://127.0.0.1:$NGINX_JOB_PORT/")
            m=$(run mvi-lb "http://127.0.0.1:$LB_PORT/")
        else
            m=$(run mvi-lb "http://127.0.0.1:$LB_PORT/"); j=$(run nginx+ "http://127.0.0.1:$NGINX_JOB_PORT/")
            n=$(run nginx "http://127.0.0.1:$NGINX_PORT/")
        fi
        printf '%s\n%s\n%s\n' "$n" "$j" "$m"
        r_nginx+=("$(ratio "$m" "$n")"); r_job+=("$(ratio "$m" "$j")")
    done
    echo "mvi-lb / nginx  requests/s per round: ${r_nginx[*]}; median $(median "${r_nginx[@]}")"
    echo "mvi-lb / nginx+ requests/s per round: ${r_job[*]}; median $(median "${r_job[@]}")"

    echo "added latency, one connection (wrk -t1 -c1), $ROUNDS rounds:"
    declare -A p99s=()
    for round in $(seq 1 "$ROUNDS"); do
        for target in "backend $BACKEND_PORT" "nginx $NGINX_PORT" "mvi-lb $LB_PORT"; do
            set -- $target
            line=$(run "$1" "http://127.0.0.1:$2/" -t1 -c1)
            echo "$line"
            p99s[$1]+="$(ms "$(awk '{print $7}' <<<"$line")") "
        done
    done
    # shellcheck disable=SC2086
    b1=$(median ${p99s[backend]})
    for name in nginx mvi-lb; do
        # shellcheck disable=SC2086
        awk -v name="$name" -v p="$(median ${p99s[$name]})" -v b="$b1" \
            'BEGIN {printf "%-8s median p99 %.3f ms, adds %.3f ms to the backend median p99 (%.3f ms)\n", name, p, p - b, b}'
    done

    echo "added latency, 64 connections each pacing its requests ${PACE_MS} ms apart:"
    export WRK_PACE_MS=$PACE_MS
    b=$(run backend "http://127.0.0.1:$BACKEND_PORT/" -s benches/wrk_paced.lua)
    n=$(run nginx "http://127.0.0.1:$NGINX_PORT/" -s benches/wrk_paced.lua)
    m=$(run mvi-lb "http://127.0.0.1:$LB_PORT/" -s benches/wrk_paced.lua)
    printf '%s\n%s\n%s\n' "$b" "$n" "$m"
    bp99=$(ms "$(awk '{print $7}' <<<"$b")")
    for line in "$n" "$m"; do
        awk -v name="$(awk '{print $1}' <<<"$line")" -v p="$(ms "$(awk '{print $7}' <<<"$line")")" -v b="$bp99" \
            'BEGIN {printf "%-8s adds %.3f ms to the backend p99 (%.3f ms)\n", name, p - b, b}'
    done
    stop_proxies
done
