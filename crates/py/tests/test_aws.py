"""The AWS backend from Python, against moto_server (when this build has the `aws` feature
and moto_server is installed): the services mvi-aws has today (Blob on S3, KV on
DynamoDB) through the same Python calls as on the local backend."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

import mvi

pytestmark = pytest.mark.skipif(
    not mvi.HAS_AWS or shutil.which("moto_server") is None,
    reason="this build has no AWS backend, or moto_server is not installed",
)


@pytest.fixture
def aws():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except Exception:
                if time.time() > deadline:
                    raise RuntimeError("moto_server did not start")
                time.sleep(0.1)
        yield mvi.AwsCloud(region="us-east-1", endpoint_url=url, access_key_id="test",
                           secret_access_key="test", force_path_style=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_blob_and_kv_on_moto(aws):
    assert aws.backend == "aws"
    aws.blob.create_bucket("py-moto-bucket")
    aws.blob.put("py-moto-bucket", "k", b"v")
    assert aws.blob.get("py-moto-bucket", "k") == b"v"
    with pytest.raises(mvi.NotFound):
        aws.blob.get("py-moto-bucket", "missing")
    aws.kv.create_table("py-moto-table", "id")
    aws.kv.put_item("py-moto-table", {"id": "a", "n": 1})
    assert aws.kv.get_item("py-moto-table", "a") == {"id": "a", "n": 1}
    with pytest.raises(mvi.PreconditionFailed):
        aws.kv.put_item("py-moto-table", {"id": "a"}, if_not_exists=True)


def test_a_stack_of_blob_and_kv_on_moto(aws, tmp_path):
    from mvi import resources as r
    s = mvi.Stack("moto", aws, state_dir=str(tmp_path / "stacks"))
    b = r.Bucket(s, "b", name="py-moto-stack-bucket")
    r.Table(s, "t", name="py-moto-stack-table", partition_key=("id", "Str"))
    s.export("bucket", b.name)
    assert s.up().outputs == {"bucket": "py-moto-stack-bucket"}
    assert s.preview().is_empty()
    s.destroy()
    assert aws.blob.list_buckets() == []


def test_missing_service_is_unsupported(aws):
    with pytest.raises(mvi.Unsupported, match="VM"):
        aws.vms
