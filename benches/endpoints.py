#!/usr/bin/env python3
"""Side by side: the same boto3 client against the local cloud's AWS-compatible endpoints and
against moto_server, in one run.

Starts moto_server and `examples/serve.rs` twice (release build: on a fresh state root on disk,
durable as always, and `--memory`, which like moto keeps nothing) on free loopback ports, then for each: N S3 PUT + GET pairs of 1 KiB objects and N DynamoDB PutItem +
GetItem pairs (an item of four attributes), sequentially and from 16 threads (a client per
thread), and prints one line per server, service and mode. Compare the local
figure with `cargo bench --bench blob` (the same operations in-process) for the endpoint's own
cost. Stops both servers, even on failure.

Usage: python3 benches/endpoints.py [N]   (needs boto3 and moto_server; scripts/setup.sh)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_moto import free_port, start_moto, stop_moto  # noqa: E402

THREADS = 16


def start_local(root, port: int):
    """`cargo run --release --example serve` on `root` (`None`: in memory); returns the process
    and its exports."""
    where = [root] if root else ["--memory"]
    proc = subprocess.Popen(
        ["cargo", "run", "--quiet", "--release", "--example", "serve", "--", *where, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    env = {}
    for line in proc.stdout:
        if not line.startswith("export "):
            break
        name, _, value = line[len("export "):].strip().partition("=")
        env[name] = value
        if name == "AWS_SECRET_ACCESS_KEY":
            return proc, env
    stop_moto(proc)
    raise SystemExit("examples/serve.rs did not print its exports")


def client(service, url, key, secret):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def s3_case(url, key, secret):
    """(what, warm-up, one pair) for S3."""
    bucket = "bench-" + os.urandom(4).hex()
    client("s3", url, key, secret).create_bucket(Bucket=bucket)
    body = os.urandom(1024)

    def pair(c, k):
        c.put_object(Bucket=bucket, Key=k, Body=body)
        assert c.get_object(Bucket=bucket, Key=k)["Body"].read() == body

    return "s3 put+get 1 KiB", lambda c: c.head_bucket(Bucket=bucket), pair


def dynamodb_case(url, key, secret):
    """(what, warm-up, one pair) for DynamoDB."""
    table = "bench-" + os.urandom(4).hex()
    client("dynamodb", url, key, secret).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def pair(c, k):
        item = {"id": {"S": k}, "n": {"N": "42"}, "name": {"S": "visitor"}, "ok": {"BOOL": True}}
        c.put_item(TableName=table, Item=item)
        assert c.get_item(TableName=table, Key={"id": {"S": k}})["Item"] == item

    return "ddb put+get item", lambda c: c.describe_table(TableName=table), pair


def bench(name, service, case, url, key, secret, n):
    what, warm, pair = case(url, key, secret)

    def work(c, count, prefix):
        for i in range(count):
            pair(c, f"{prefix}/{i}")

    for parallel in (1, THREADS):
        clients = [client(service, url, key, secret) for _ in range(parallel)]
        for c in clients:  # open each client's connection before the clock starts
            warm(c)
        per = max(1, n // parallel)
        threads = [threading.Thread(target=work, args=(c, per, f"{parallel}-{i}")) for i, c in enumerate(clients)]
        start, cpu = time.perf_counter(), time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        pairs = per * parallel
        mode = "sequential" if parallel == 1 else f"{parallel} threads"
        # The client's own CPU time per pair (boto3 builds, signs and parses each request;
        # waiting on the socket costs no CPU): what is left of the wall time is the server's
        # (and the loopback's) share.
        print(
            f"{name:<6} {what}, {mode:<11} {pairs / elapsed:8.1f} pairs/s"
            f"   {elapsed / pairs * 1e3:7.3f} ms a pair (wall)"
            f"   client CPU {cpu / pairs * 1e3:6.3f} ms a pair",
            flush=True,
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    root = tempfile.mkdtemp(prefix="mvi-endpoints-bench-")
    moto = local = memory = None
    try:
        moto_port = free_port()
        moto = start_moto(moto_port)
        local, env = start_local(os.path.join(root, "cloud"), free_port())
        memory, menv = start_local(None, free_port())
        moto_url = f"http://127.0.0.1:{moto_port}"
        for service, case, var in (("s3", s3_case, "AWS_ENDPOINT_URL_S3"),
                                   ("dynamodb", dynamodb_case, "AWS_ENDPOINT_URL_DYNAMODB")):
            for name, e in (("local", env), ("memory", menv)):
                bench(name, service, case, e[var], e["AWS_ACCESS_KEY_ID"], e["AWS_SECRET_ACCESS_KEY"], n)
            bench("moto", service, case, moto_url, "testing", "testing", n)
    finally:
        for proc in (local, memory, moto):
            if proc is not None:
                stop_moto(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
