"""The AWS backend from Python, against moto_server (when this build has the `aws` feature
and moto_server is installed): services through the same Python calls as on the local
backend, and the quickstart's whole stack (examples/quickstart.py) applied and destroyed."""

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
    # moto's ECS never runs tasks; this makes its services report their replicas running,
    # as a steady service on AWS does (the stack waits for that).
    env = dict(os.environ, MOTO_ECS_SERVICE_RUNNING="2")
    proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
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


def test_every_service_is_there(aws):
    for service in ["blob", "kv", "crypto", "logs", "metrics", "images", "containers",
                    "load_balancers", "databases", "vms", "networks"]:
        assert getattr(aws, service) is not None, service


def test_quickstart_stack_on_moto(aws, tmp_path):
    """The very stack examples/quickstart.py runs locally: preview, up, nothing to do the
    second time, destroy, and no load balancer, database, VM or VPC of it left."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[3] / "examples" / "quickstart.py"
    spec = importlib.util.spec_from_file_location("quickstart_example", path)
    assert spec is not None and spec.loader is not None
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    vpcs_before = {v.id for v in aws.networks.list_vpcs()}

    def declare() -> mvi.Stack:
        return quickstart.declare(aws, tmp_path, zones=("us-east-1a", "us-east-1b"),
                                  vm_image="ami-12c6146b")

    plan = declare().preview()
    assert not plan.is_empty()
    report = declare().up()
    assert report.outputs["url"].startswith("http://")
    assert [lb.spec.name for lb in aws.load_balancers.list_load_balancers()] == ["quickstart"]
    assert declare().preview().is_empty()
    declare().destroy()
    assert aws.load_balancers.list_load_balancers() == []
    assert aws.databases.list_databases() == []
    assert aws.vms.list_instances() == []
    assert {v.id for v in aws.networks.list_vpcs()} == vpcs_before
