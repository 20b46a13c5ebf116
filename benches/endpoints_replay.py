#!/usr/bin/env python3
"""The servers' own speed, side by side: the local cloud's AWS-compatible endpoints (on disk
and `--memory`) and moto_server, driven by a client that costs almost nothing.

boto3 spends 1-1.5 ms of CPU building, signing and parsing each call (benches/endpoints.py),
which hides the servers' difference. Here each request is built and signed once with botocore
(SigV4, as boto3 would send it) and the same bytes are sent again and again on one keep-alive
connection, the client only reading each answer's length: S3 PUT and GET of 1 KiB, DynamoDB
PutItem and GetItem. A signed request stays valid for its 15 minutes, and moto does not check
signatures, so both servers answer every replay as a fresh call. Prints microseconds per
operation for each server and the ratio to moto: the wall time (the client's own share
included, 10-15 µs of Python a call), and the server's CPU time (its process group's user and
system time over the run, divided by the calls: what serving one call costs it, kernel
networking included).

Calls run in five rounds, each server and call in turn; the median round's wall time is
reported, and the CPU time over all rounds.

Then the same with 16 clients at once (`CLIENTS` processes, a connection each; threads would
share one interpreter lock): the wall time of the whole round divided by its calls, i.e. the
time per operation at that concurrency, and the servers' CPU time per call.

`--awake` keeps every CPU awake meanwhile with a busy loop that runs only when nothing else
wants the CPU (`SCHED_IDLE`), to show how much of a fast call's wall time is idle CPUs waking
(on an idle virtual machine a round trip waits for that twice). It is not a fair comparison:
on this machine the loop also made moto and durable writes slower (its CPU time is shared
with the host), so the figures in docs/benchmarks.md are without it.

Usage: python3 benches/endpoints_replay.py [N] [--awake]   (needs boto3 and moto_server;
scripts/setup.sh)
"""

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from endpoints import client, start_local  # noqa: E402
from peer_moto import free_port, start_moto, stop_moto  # noqa: E402


def signed(url, key, secret, service, method, path, body=b"", headers=None):
    """The bytes of one SigV4-signed HTTP/1.1 request."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = dict(headers or {})
    if service == "s3":
        headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    req = AWSRequest(method=method, url=url + path, data=body, headers=headers)
    auth = S3SigV4Auth if service == "s3" else SigV4Auth
    auth(Credentials(key, secret), service, "us-east-1").add_auth(req)
    host = url.split("//", 1)[1]
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def group_cpu(pgid):
    """CPU seconds (user + system) used so far by the processes of process group `pgid`."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[2] is the pgrp; [11], [12] utime and stime
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def replay(url, request, n):
    """Sends `request` n times, on one keep-alive connection while the server keeps it open
    (moto's server closes it after each answer: then a new one each time, as any client must);
    seconds per request, and the last status.

    The client does as little as it can, so that the server's time is most of what is
    measured: one `sendall`, then `recv` until the head is in, one search each for the body's
    length and a `Connection: close`, and `recv` until the body is in."""
    host, port = url.split("//", 1)[1].split(":")
    addr = (host, int(port))
    conn, buf = None, b""
    status = None
    start = time.perf_counter()
    for _ in range(n):
        if conn is None:
            conn = socket.create_connection(addr, timeout=30)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
        conn.sendall(request)
        while (end := buf.find(b"\r\n\r\n")) < 0:
            more = conn.recv(65536)
            if not more:
                raise EOFError
            buf += more
        head, buf = buf[:end].lower(), buf[end + 4:]
        status = int(head[9:12])
        close = head.startswith(b"http/1.0") or b"\r\nconnection: close" in head
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17:stop if stop > 0 else len(head)])
        elif b"\r\ntransfer-encoding: chunked" in head:
            raise SystemExit("a chunked answer: this client reads only sized bodies")
        else:
            length, close = None, True  # the body runs to the end of the connection
        if length is None:
            while more := conn.recv(65536):
                buf += more
        else:
            while len(buf) < length:
                more = conn.recv(65536)
                if not more:
                    raise EOFError
                buf += more
            buf = buf[length:]
        if close:
            conn.close()
            conn = None
    elapsed = time.perf_counter() - start
    if conn is not None:
        conn.close()
    return elapsed / n, status


def calls(url, key, secret):
    """A bucket and a table of their own on one server, and the signed calls to replay."""
    tag = os.urandom(4).hex()
    bucket, table = f"replay-{tag}", f"replay-{tag}"
    client("s3", url, key, secret).create_bucket(Bucket=bucket)
    client("dynamodb", url, key, secret).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"id": {"S": "k"}, "n": {"N": "42"}, "name": {"S": "visitor"}, "ok": {"BOOL": True}}
    ddb = {"Content-Type": "application/x-amz-json-1.0"}
    return {
        "s3 PUT 1 KiB": signed(url, key, secret, "s3", "PUT", f"/{bucket}/k", os.urandom(1024)),
        "s3 GET 1 KiB": signed(url, key, secret, "s3", "GET", f"/{bucket}/k"),
        "ddb PutItem": signed(url, key, secret, "dynamodb", "POST", "/",
                              json.dumps({"TableName": table, "Item": item}).encode(),
                              {**ddb, "X-Amz-Target": "DynamoDB_20120810.PutItem"}),
        "ddb GetItem": signed(url, key, secret, "dynamodb", "POST", "/",
                              json.dumps({"TableName": table, "Key": {"id": {"S": "k"}}}).encode(),
                              {**ddb, "X-Amz-Target": "DynamoDB_20120810.GetItem"}),
    }


def measure(name, url, request, n, pgid):
    """One round of `request` on one server (process group `pgid`): µs per call of wall time
    and of the server's CPU time."""
    cpu = group_cpu(pgid)
    per, status = replay(url, request, n)
    cpu = group_cpu(pgid) - cpu
    if status != 200:
        raise SystemExit(f"{name}: HTTP {status}")
    return per * 1e6, cpu / n * 1e6


def measure_concurrent(name, url, request, n, pgid, clients):
    """One round of `request` from `clients` processes at once, n calls in all: µs of wall
    time per call (the round's, from when every client is connected and waiting) and of the
    server's CPU time."""
    fork = multiprocessing.get_context("fork")  # the clients share this process's state
    ready = fork.Barrier(clients + 1)
    statuses = fork.Queue()

    def client():
        ready.wait()
        statuses.put(replay(url, request, max(1, n // clients))[1])

    workers = [fork.Process(target=client) for _ in range(clients)]
    for w in workers:
        w.start()
    cpu = group_cpu(pgid)
    ready.wait()
    start = time.perf_counter()
    got = [statuses.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - start
    cpu = group_cpu(pgid) - cpu
    for w in workers:
        w.join()
    if any(status != 200 for status in got):
        raise SystemExit(f"{name}: HTTP {sorted(set(got))} with {clients} clients")
    calls_made = clients * max(1, n // clients)
    return elapsed / calls_made * 1e6, cpu / calls_made * 1e6


ROUNDS = 5
CLIENTS = 16

# A loop that runs only on a CPU nothing else wants, so that the CPU never idles.
SPIN = "import os\nos.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass"


def report(servers, requests, n, clients, awake):
    """Measures every server and call in rounds with `clients` clients and prints the table."""
    # Rounds, each server and call in turn, so that whatever else the machine does falls on
    # all of them alike; the median round is reported.
    rounds = {}
    for _ in range(ROUNDS):
        for name, (url, _, _, pgid) in servers.items():
            for what, request in requests[name].items():
                calls_in_round = max(10 * clients, n // ROUNDS)
                if clients == 1:
                    got = measure(f"{name} {what}", url, request, calls_in_round, pgid)
                else:
                    got = measure_concurrent(f"{name} {what}", url, request, calls_in_round,
                                             pgid, clients)
                rounds.setdefault((name, what), []).append(got)
    # The wall time of the median round; the CPU time over all rounds (the kernel counts it in
    # 10 ms ticks: one round's would be too coarse).
    results = {
        key: (statistics.median(r[0] for r in got), statistics.fmean(r[1] for r in got))
        for key, got in rounds.items()
    }
    who = "sequential" if clients == 1 else f"{clients} clients at once"
    print(f"{n} calls of each kind per server, {who}, in {ROUNDS} rounds: the median round's"
          " wall time, and the CPU time over all" + (" (CPUs kept awake)" if awake else ""))
    for figure, index in (("wall µs per op", 0), ("server CPU µs/op", 1)):
        print(f"{figure:<16} {'local, disk':>12} {'local, memory':>14} {'moto':>9}"
              f" {'moto / disk':>12} {'moto / memory':>14}")
        for what in requests["moto"]:
            d, m, mo = (results[(k, what)][index] for k in servers)
            print(f"{what:<16} {d:12.1f} {m:14.1f} {mo:9.1f} {mo / d:11.1f}x {mo / m:13.1f}x")


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--awake"]
    awake = len(args) < len(sys.argv) - 1
    n = int(args[0]) if args else 2000
    root = tempfile.mkdtemp(prefix="mvi-replay-bench-")
    procs = []
    try:
        if awake:
            for _ in range(os.cpu_count() or 1):
                procs.append(subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True))
        moto_port = free_port()
        moto = start_moto(moto_port)
        procs.append(moto)
        disk, env = start_local(os.path.join(root, "cloud"), free_port())
        procs.append(disk)
        memory, menv = start_local(None, free_port())
        procs.append(memory)
        servers = {
            "local, disk": (env["AWS_ENDPOINT_URL_S3"], env["AWS_ACCESS_KEY_ID"],
                            env["AWS_SECRET_ACCESS_KEY"], disk.pid),
            "local, memory": (menv["AWS_ENDPOINT_URL_S3"], menv["AWS_ACCESS_KEY_ID"],
                              menv["AWS_SECRET_ACCESS_KEY"], memory.pid),
            "moto": (f"http://127.0.0.1:{moto_port}", "testing", "testing", moto.pid),
        }
        requests = {name: calls(*s[:3]) for name, s in servers.items()}
        for name, (url, _, _, _) in servers.items():
            for request in requests[name].values():
                replay(url, request, max(10, n // 20))  # warm-up
        for clients in (1, CLIENTS):
            report(servers, requests, n, clients, awake)
    finally:
        for proc in procs:
            stop_moto(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
