"""A smoke subset of every service on the local backend, through the Python binding."""

import asyncio
import dataclasses
import datetime as dt
import shutil

import pytest

import mvi
from conftest import REPO

UTC = dt.timezone.utc


def test_blob_roundtrip_and_errors(mem):
    blob = mem.blob
    info = blob.create_bucket("photos")
    assert info.name == "photos" and isinstance(info.created, dt.datetime)
    assert info.created.tzinfo is not None
    meta = blob.put("photos", "cat.txt", b"meow", content_type="text/plain", metadata={"a": "1"})
    assert meta.size == 4 and meta.content_type == "text/plain" and meta.metadata == {"a": "1"}
    assert "ObjectMeta(bucket='photos', key='cat.txt'" in repr(meta)
    assert blob.get("photos", "cat.txt") == b"meow"
    part = blob.get_object("photos", "cat.txt", start=1, end=3)
    assert part.body == b"eo" and part.range == (1, 3)
    assert [o.key for o in blob.list_all("photos")] == ["cat.txt"]
    page = blob.list_objects("photos", prefix="c", max_keys=10)
    assert [o.key for o in page.objects] == ["cat.txt"] and page.next is None
    # A conditional create of an existing key fails with PreconditionFailed.
    with pytest.raises(mvi.PreconditionFailed) as e:
        blob.put("photos", "cat.txt", b"x", if_none_match=True)
    assert "cat.txt" in str(e.value) and e.value.service == "blob"
    with pytest.raises(mvi.NotFound) as e:
        blob.get("photos", "dog.txt")
    assert isinstance(e.value, mvi.MviError) and isinstance(e.value, LookupError)
    assert e.value.kind == "not found" and "dog.txt" in str(e.value)
    with pytest.raises(mvi.InvalidArgument, match="bucket name"):
        blob.create_bucket("Bad_Name")
    with pytest.raises(TypeError, match="data must be bytes"):
        blob.put("photos", "n", 5)
    blob.copy_object("photos", "cat.txt", "photos", "cat2.txt")
    blob.delete_object("photos", "cat.txt")
    assert [b.name for b in blob.list_buckets()] == ["photos"]


def test_blob_multipart(mem):
    blob = mem.blob
    blob.create_bucket("big")
    uid = blob.create_multipart_upload("big", "f")
    p1 = blob.upload_part("big", "f", uid, 1, b"a" * (5 * 1024 * 1024))
    p2 = blob.upload_part("big", "f", uid, 2, b"b")
    meta = blob.complete_multipart_upload("big", "f", uid, [mvi.CompletedPart(1, p1), (2, p2)])
    assert meta.size == 5 * 1024 * 1024 + 1 and meta.etag.endswith("-2")


def test_kv(mem):
    kv = mem.kv
    info = kv.create_table("orders", ("customer", "Str"), sort_key=mvi.KeyAttr("n", "Number"))
    assert info.spec.partition_key == mvi.KeyAttr("customer", "Str")
    item = {"customer": "ann", "n": 1, "total": 9.5, "paid": True, "tags": ["a"],
            "blob": b"\x00\x01", "nested": {"x": None}}
    kv.put_item("orders", item)
    assert kv.get_item("orders", "ann", 1) == item
    assert kv.get_item("orders", "ann", 2) is None
    kv.put_item("orders", {"customer": "ann", "n": 2, "version": 1})
    with pytest.raises(mvi.PreconditionFailed):
        kv.put_item("orders", {"customer": "ann", "n": 2}, if_equals=("version", 5))
    kv.put_item("orders", {"customer": "ann", "n": 2, "version": 2}, if_equals=("version", 1))
    assert [i["n"] for i in kv.query_all("orders", "ann")] == [1, 2]
    assert [i["n"] for i in kv.query_all("orders", "ann", sort=("gt", 1))] == [2]
    page = kv.query("orders", "ann", limit=1, descending=True)
    assert [i["n"] for i in page.items] == [2] and page.next is not None
    assert len(kv.scan("orders").items) == 2
    kv.batch_put("orders", [{"customer": "bob", "n": i} for i in range(3)])
    assert len(kv.batch_get("orders", [("bob", 0), ("bob", 2), ("zed", 1)])) == 2
    assert kv.delete_item("orders", "bob", 0)["n"] == 0
    assert kv.describe_table("orders").item_count == 4
    assert kv.list_tables() == ["orders"]
    with pytest.raises(mvi.InvalidArgument, match="missing key attribute"):
        kv.put_item("orders", {"n": 1})
    with pytest.raises(TypeError, match="KV value"):
        kv.put_item("orders", {"customer": "x", "n": 1, "bad": object()})
    with pytest.raises(ValueError, match="sort operator"):
        kv.query("orders", "ann", sort=("near", 1))


def test_crypto(mem):
    c = mem.crypto
    key = c.create_key("app secrets", alias="alias/app")
    assert key.state == "Enabled" and "alias/app" in key.aliases
    ct = c.encrypt("alias/app", b"hello", {"purpose": "test"})
    assert isinstance(ct, bytes) and b"hello" not in ct
    out = c.decrypt(ct, {"purpose": "test"})
    assert out.plaintext == b"hello" and out.key_id == key.id
    assert "hello" not in repr(out)
    with pytest.raises(mvi.MviError):
        c.decrypt(ct, {"purpose": "other"})
    dk = c.generate_data_key(key.id)
    assert len(dk.plaintext) == 32 and c.decrypt(dk.ciphertext).plaintext == dk.plaintext
    assert c.rotate_key(key.id) == 2
    events = c.audit_events(key_id=key.id)
    assert any(e.operation == "Encrypt" for e in events)
    assert any(e.outcome == "Denied" and e.reason for e in events)


def test_logs_and_tail(mem):
    logs = mem.logs
    logs.create_group("/app", retention_days=7)
    logs.create_stream("/app", "web-1")
    now = dt.datetime.now(UTC)
    logs.put_events("/app", "web-1", [mvi.LogEvent(now, "GET / 200"), (now, "GET /x 404")])
    page = logs.get_events("/app", "web-1")
    assert [r.message for r in page.items] == ["GET / 200", "GET /x 404"]
    found = logs.filter_events("/app", "404")
    assert [r.message for r in found.items] == ["GET /x 404"]
    tail = logs.tail("/app", since=now - dt.timedelta(seconds=1))
    assert next(iter(tail)).message == "GET / 200"
    assert next(tail).message == "GET /x 404"
    with pytest.raises(ValueError, match="no time zone"):
        logs.put_events("/app", "web-1", [mvi.LogEvent(dt.datetime.now(), "naive")])


def test_metrics(mem):
    m = mem.metrics
    t0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
    metric = mvi.MetricId("shop", "latency", {"route": "/"})
    m.put_data("shop", [mvi.Datum("latency", float(v), t0 + dt.timedelta(seconds=v),
                                  dimensions={"route": "/"}, unit="Milliseconds")
                        for v in range(1, 101)])
    points = m.get_statistics(metric, t0, t0 + dt.timedelta(minutes=5), dt.timedelta(minutes=5),
                              ["Sum", "Maximum", "p99"])
    assert len(points) == 1
    assert points[0].values == {"Sum": 5050.0, "Maximum": 100.0, "p99": 99.0}
    assert m.list_metrics("shop") == [metric]
    spec = mvi.AlarmSpec("slow", metric, "p99", dt.timedelta(minutes=1), 1, 50.0, "GreaterThan")
    m.put_alarm(spec)
    alarms = m.describe_alarms("slow")
    assert alarms[0].spec == spec
    m.delete_alarm("slow")


def test_network_and_vms(mem):
    net = mem.networks
    zones = net.list_zones()
    assert len(zones) >= 2
    vpc = net.create_vpc("10.0.0.0/16", {"env": "test"})
    sub = net.create_subnet(vpc.id, "10.0.1.0/24", zones[0], public=True)
    sg = net.create_security_group(vpc.id, "web")
    net.authorize(sg.id, mvi.Rule("Ingress", 80, 80, cidr="0.0.0.0/0"))
    assert net.describe_security_group(sg.id).rules == [mvi.Rule("Ingress", 80, 80, cidr="0.0.0.0/0")]
    with pytest.raises(mvi.InvalidArgument):
        net.create_subnet(vpc.id, "192.168.0.0/24", zones[0])
    vm = mem.vms.run_instance(mvi.VmSpec("host", "t3.medium", "ami-local", sub.id))
    assert vm.state == "Running" and vm.zone == zones[0] and vm.private_ip.startswith("10.0.1.")
    assert mem.vms.stop_instance(vm.id).state == "Stopped"
    mem.vms.terminate_instance(vm.id)


def test_images_containers_lb(cloud):
    images = cloud.images
    images.create_repository("web")
    cfg = mvi.ImageConfig(cmd=["python3", "app.py"], working_dir="/")
    digest = images.build_from_dir("web", str(REPO / "examples" / "webapp"), cfg, tag="v1")
    assert digest.startswith("sha256:")
    got, manifest = images.pull_manifest("web", "v1")
    assert got == digest and manifest.layers
    assert [i.tags for i in images.list_images("web")] == [["v1"]]
    # A one-off task from the image.
    res = cloud.containers.run_task(
        "hello", mvi.ContainerSpec("web:v1", command=["python3", "-c", "print('hi')"]),
        dt.timedelta(seconds=30))
    assert res.exit_code == 0
    group, stream = res.log_stream
    assert any("hi" in r.message for r in cloud.logs.get_events(group, stream).items)
    # A service behind a load balancer; a request through it reaches a replica.
    lbs = cloud.load_balancers
    lbs.create_target_group(mvi.TargetGroupSpec(
        "web", "Http", health_check=mvi.HealthCheck(path="/healthz",
                                                    interval=dt.timedelta(milliseconds=200),
                                                    timeout=dt.timedelta(milliseconds=150))))
    info = lbs.create_load_balancer(mvi.LoadBalancerSpec(
        "front", [mvi.ListenerSpec(0, [("web", 1)])]))
    assert info.urls and info.urls[0].startswith("http://")
    grants = [mvi.Grant.bucket_read_write("uploads"), mvi.Grant.table_read("visits")]
    svc = cloud.containers.create_service(mvi.ServiceSpec(
        "web", mvi.ContainerSpec("web:v1", port=8080,
                                 health_check=mvi.HealthCheck(path="/healthz"),
                                 grants=grants),
        replicas=1, target_group="web"))
    assert svc.spec.container.cpu_millis == 256   # the Rust default
    assert svc.spec.container.grants == grants    # kept, and read back as written
    with pytest.raises(ValueError, match="grant kind 'queue'"):
        cloud.containers.create_service(mvi.ServiceSpec(
            "bad", mvi.ContainerSpec("web:v1", grants=[mvi.Grant("queue", "q")]), replicas=1))
    import urllib.request
    import time
    deadline = time.time() + 60
    body = None
    while time.time() < deadline:
        try:
            body = urllib.request.urlopen(info.urls[0] + "/", timeout=2).read()
            break
        except Exception:
            time.sleep(0.2)
    assert body is not None, "no answer through the load balancer"
    # A scaler the backend runs: typed records, durations as timedeltas, the spec put again.
    spec = {"service": "web", "min": 1, "max": 3,
            "metrics": [{"cpu": {"target": 70}}], "period": dt.timedelta(seconds=1)}
    scaler = cloud.containers.put_scaler(spec)
    assert isinstance(scaler, mvi.ScalerInfo) and (scaler.min, scaler.max) == (1, 3)
    assert scaler.spec["period"] == dt.timedelta(seconds=1)
    assert scaler.spec["behavior"]["scale_down"]["stabilization"] == dt.timedelta(seconds=300)
    deadline = time.time() + 30
    while not cloud.containers.describe_scaler("web").decisions:
        assert time.time() < deadline, "the scaler never evaluated"
        time.sleep(0.05)
    d = cloud.containers.describe_scaler("web").decisions[0]
    assert isinstance(d, mvi.ScalingDecision) and isinstance(d.at, dt.datetime)
    assert d.service == "web" and d.current == 1 and isinstance(d.limit, str)
    changed = dict(scaler.spec, max=4)
    assert cloud.containers.put_scaler(changed).spec == changed
    with pytest.raises(mvi.InvalidArgument, match="min 5 is above max 4"):
        cloud.containers.put_scaler(dict(changed, min=5))
    cloud.containers.delete_scaler("web")
    with pytest.raises(mvi.NotFound):
        cloud.containers.describe_scaler("web")
    cloud.containers.delete_service("web")
    lbs.delete_load_balancer("front")
    lbs.delete_target_group("web")


@pytest.mark.skipif(shutil.which("initdb") is None and not list(
    __import__("glob").glob("/usr/lib/postgresql/*/bin/initdb")), reason="PostgreSQL is not installed")
def test_database(cloud):
    db = cloud.databases
    info = db.create_database(mvi.DatabaseSpec("appdb"))
    assert info.state == "Available" and info.spec.engine == "postgres"
    creds = db.credentials("appdb")
    assert creds.url.startswith("postgres://") and creds.password not in repr(creds)
    assert info.zone == "local-1a" and info.standby_zone is None
    rebooted = db.reboot_database("appdb", False)
    assert rebooted.endpoint == info.endpoint and rebooted.state == "Available"
    assert any(e.message == "rebooted" for e in rebooted.events)
    with pytest.raises(mvi.PreconditionFailed, match="multi-AZ"):
        db.reboot_database("appdb", True)
    snap = db.create_snapshot("appdb", "appdb-1")
    assert snap.database == "appdb"
    db.delete_snapshot("appdb-1")
    db.delete_database("appdb")
    with pytest.raises(mvi.NotFound):
        db.describe_database("appdb")


def test_asyncio_flavour(mem):
    async def main():
        blob = mem.aio.blob
        await blob.create_bucket("aio-bucket")
        await asyncio.gather(*(blob.put("aio-bucket", f"k{i}", b"v") for i in range(20)))
        assert len(await blob.list_all("aio-bucket")) == 20
        with pytest.raises(mvi.NotFound):
            await blob.get("aio-bucket", "missing")
        await mem.aio.logs.create_group("/aio")
        await mem.aio.logs.create_stream("/aio", "s")
        now = dt.datetime.now(UTC)
        tail = await mem.aio.logs.tail("/aio")
        await mem.aio.logs.put_events("/aio", "s", [(now, "one")])
        rec = await asyncio.wait_for(tail.__anext__(), 10)
        assert rec.message == "one"
    asyncio.run(main())


def test_gil_released_during_calls(mem):
    import threading
    import time
    mem.kv.create_table("spin", "k")
    stop = time.time() + 0.5
    count = [0]

    def spin():
        while time.time() < stop:
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    while time.time() < stop:
        mem.kv.put_item("spin", {"k": "a"})
    t.join()
    assert count[0] > 0


def test_results_are_frozen_dataclasses(mem):
    info = mem.blob.create_bucket("frozen")
    assert dataclasses.is_dataclass(info)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.name = "x"


def test_unsupported_backend_and_bad_arguments(tmp_path):
    if not mvi.HAS_AWS:
        with pytest.raises(mvi.Unsupported, match="AWS"):
            mvi.AwsCloud(region="us-east-1")
    with pytest.raises(ValueError):
        mvi.LocalCloud(root=str(tmp_path), in_memory=True)


def test_kv_values_nested_past_32_levels_are_refused_before_any_recursion(mem):
    mem.kv.create_table("deep", ("id", "Str"))
    ok = "leaf"
    for _ in range(32):
        ok = [ok]
    mem.kv.put_item("deep", {"id": "ok", "v": ok})
    assert mem.kv.get_item("deep", "ok")["v"] == ok
    deep = "leaf"
    for _ in range(100_000):   # far past what a recursive conversion would survive
        deep = [deep]
    with pytest.raises(mvi.InvalidArgument, match="32 levels"):
        mem.kv.put_item("deep", {"id": "deep", "v": deep})
    assert mem.kv.get_item("deep", "deep") is None


def test_kv_expressions_update_and_conditional_writes(mem):
    """DynamoDB's expression language from Python: atomic updates, condition expressions with
    placeholders, and DynamoDB's refusals (reserved words, unused placeholders)."""
    kv = mem.kv
    kv.create_table("visits", ("page", "Str"))
    for n in (1, 2, 3):
        got = kv.update_item("visits", "/home", update="SET #c = if_not_exists(#c, :z) + :one",
                             names={"#c": "count"}, values={":z": 0, ":one": 1}, returns="updated_new")
        assert got == {"count": n}
    assert kv.get_item("visits", "/home") == {"page": "/home", "count": 3}
    with pytest.raises(mvi.PreconditionFailed):
        kv.update_item("visits", "/home", update="REMOVE #c", condition="#c > :big",
                       names={"#c": "count"}, values={":big": 10})
    kv.put_item("visits", {"page": "/a", "v": 2}, condition="attribute_not_exists(page) OR v < :v",
                values={":v": 2})
    with pytest.raises(mvi.PreconditionFailed):
        kv.put_item("visits", {"page": "/a", "v": 1}, condition="attribute_not_exists(page) OR v < :v",
                    values={":v": 1})
    assert kv.delete_item("visits", "/a", condition="v = :two", values={":two": 2}) == {"page": "/a", "v": 2}
    with pytest.raises(mvi.InvalidArgument, match="reserved keyword: count"):
        kv.update_item("visits", "/home", update="SET count = :one", values={":one": 1})
    with pytest.raises(mvi.InvalidArgument, match="unused"):
        kv.update_item("visits", "/home", update="SET n = :one", values={":one": 1, ":two": 2})
    with pytest.raises(ValueError, match="either a condition expression"):
        kv.put_item("visits", {"page": "/b"}, if_not_exists=True, condition="attribute_exists(page)")
