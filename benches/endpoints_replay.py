#!/usr/bin/env python3
"""The servers' own speed, side by side: the local cloud's AWS-compatible endpoints (on disk
and `--memory`) and moto_server, driven by a client that costs almost nothing.

boto3 spends 1-1.5 ms of CPU building, signing and parsing each call (benches/endpoints.py),
which hides the servers' difference. Here each request is built and signed once with botocore
(SigV4, as boto3 would send it) and the same bytes are sent again and again on one keep-alive
connection, the client only reading each answer's length: S3 PUT and GET of 1 KiB, DynamoDB
PutItem and GetItem. A signed request stays valid for its 15 minutes, and moto does not check
signatures, so both servers answer every replay as a fresh call. Prints microseconds per
operation for each server and the ratio to moto.

Usage: python3 benches/endpoints_replay.py [N]   (needs boto3 and moto_server; scripts/setup.sh)
"""

import hashlib
import json
import os
import shutil
import signal
import socket
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


def replay(url, request, n):
    """Sends `request` n times, on one keep-alive connection while the server keeps it open
    (moto's server closes it after each answer: then a new one each time, as any client must);
    seconds per request, and the last status."""
    host, port = url.split("//", 1)[1].split(":")
    addr = (host, int(port))
    conn, buf = None, b""

    def recv():
        more = conn.recv(65536)
        return more

    def need(count):
        nonlocal buf
        while len(buf) < count:
            more = recv()
            if not more:
                raise EOFError
            buf += more

    def line():
        nonlocal buf
        while b"\r\n" not in buf:
            need(len(buf) + 1)
        first, buf = buf.split(b"\r\n", 1)
        return first

    status = None
    start = time.perf_counter()
    for _ in range(n):
        if conn is None:
            conn = socket.create_connection(addr, timeout=30)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
        conn.sendall(request)
        first = line()
        status = int(first.split(b" ", 2)[1])
        length, chunked, close = None, False, first.startswith(b"HTTP/1.0")
        while True:
            h = line()
            if not h:
                break
            name, _, value = h.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            while True:
                size = int(line().split(b";")[0], 16)
                need(size + 2)
                buf = buf[size + 2:]
                if size == 0:
                    break
        elif length is not None:
            need(length)
            buf = buf[length:]
        else:
            close = True  # the body runs to the end of the connection
            try:
                while recv():
                    pass
            except OSError:
                pass
        if close:
            conn.close()
            conn = None
    elapsed = time.perf_counter() - start
    if conn is not None:
        conn.close()
    return elapsed / n, status


def bench(name, url, key, secret, n):
    """µs per operation of each replayed call on one server."""
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
    calls = {
        "s3 PUT 1 KiB": signed(url, key, secret, "s3", "PUT", f"/{bucket}/k", os.urandom(1024)),
        "s3 GET 1 KiB": signed(url, key, secret, "s3", "GET", f"/{bucket}/k"),
        "ddb PutItem": signed(url, key, secret, "dynamodb", "POST", "/",
                              json.dumps({"TableName": table, "Item": item}).encode(),
                              {**ddb, "X-Amz-Target": "DynamoDB_20120810.PutItem"}),
        "ddb GetItem": signed(url, key, secret, "dynamodb", "POST", "/",
                              json.dumps({"TableName": table, "Key": {"id": {"S": "k"}}}).encode(),
                              {**ddb, "X-Amz-Target": "DynamoDB_20120810.GetItem"}),
    }
    out = {}
    for what, request in calls.items():
        replay(url, request, max(10, n // 20))  # warm-up
        per, status = replay(url, request, n)
        if status != 200:
            raise SystemExit(f"{name} {what}: HTTP {status}")
        out[what] = per * 1e6
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    root = tempfile.mkdtemp(prefix="mvi-replay-bench-")
    procs = []
    try:
        moto_port = free_port()
        procs.append(start_moto(moto_port))
        disk, env = start_local(os.path.join(root, "cloud"), free_port())
        procs.append(disk)
        memory, menv = start_local(None, free_port())
        procs.append(memory)
        results = {
            "local, disk": bench("disk", env["AWS_ENDPOINT_URL_S3"], env["AWS_ACCESS_KEY_ID"],
                                 env["AWS_SECRET_ACCESS_KEY"], n),
            "local, memory": bench("memory", menv["AWS_ENDPOINT_URL_S3"], menv["AWS_ACCESS_KEY_ID"],
                                   menv["AWS_SECRET_ACCESS_KEY"], n),
            "moto": bench("moto", f"http://127.0.0.1:{moto_port}", "testing", "testing", n),
        }
        print(f"{'µs per operation':<16} {'local, disk':>12} {'local, memory':>14} {'moto':>9}"
              f" {'moto / disk':>12} {'moto / memory':>14}")
        for what in results["moto"]:
            d, m, moto = (results[k][what] for k in ("local, disk", "local, memory", "moto"))
            print(f"{what:<16} {d:12.1f} {m:14.1f} {moto:9.1f} {moto / d:11.1f}x {moto / m:13.1f}x")
    finally:
        for proc in procs:
            stop_moto(proc)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
