#!/usr/bin/env python3
"""Side-by-side peer figure: the same KV and Blob operations against moto_server on loopback.

Starts `moto_server` on a free loopback port, runs N sequential S3 put+get of 1 KiB objects and
DynamoDB put / get of small items through boto3, prints per-operation latency (p50, mean) and
ops/s, then stops the server (and its Python child). Compare with `cargo bench --bench blob`
and `--bench kv` (docs/benchmarks.md).

Usage: python3 benches/peer_moto.py [N]   (needs `pip install 'moto[server]' boto3`)
"""

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, so the Python child stops too
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return proc
        except Exception:
            time.sleep(0.1)
    stop_moto(proc)
    raise SystemExit("moto_server did not start within 30 s")


def stop_moto(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)


def timed(n, fn):
    lat = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    return lat


def report(name, lat):
    p50 = statistics.median(lat) * 1e3
    mean = statistics.fmean(lat) * 1e3
    print(f"{name:<28} p50 {p50:7.3f} ms   mean {mean:7.3f} ms   {1 / statistics.fmean(lat):8.0f} ops/s")


def main() -> None:
    import boto3

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    port = free_port()
    proc = start_moto(port)
    try:
        kw = dict(
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3 = boto3.client("s3", **kw)
        ddb = boto3.client("dynamodb", **kw)
        s3.create_bucket(Bucket="peer-bench")
        body = b"x" * 1024
        report("s3 put 1 KiB", timed(n, lambda i: s3.put_object(Bucket="peer-bench", Key=f"k{i}", Body=body)))
        report("s3 get 1 KiB", timed(n, lambda i: s3.get_object(Bucket="peer-bench", Key=f"k{i}")["Body"].read()))
        ddb.create_table(
            TableName="peer-bench",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        item = lambda i: {"pk": {"S": f"k{i}"}, "v": {"S": "value-" * 10}}
        report("dynamodb put", timed(n, lambda i: ddb.put_item(TableName="peer-bench", Item=item(i))))
        report("dynamodb get", timed(n, lambda i: ddb.get_item(TableName="peer-bench", Key={"pk": {"S": f"k{i}"}})))
    finally:
        stop_moto(proc)


if __name__ == "__main__":
    main()
