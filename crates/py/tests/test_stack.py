"""Stacks from Python: outputs, preview/up/destroy/refresh, components, errors, and the
quickstart example as a whole program."""

import os
import subprocess
import sys

import pytest

import mvi
from mvi import resources as r
from conftest import REPO


def test_plan_up_outputs_and_destroy(mem, tmp_path):
    def program():
        s = mvi.Stack("shop", mem, state_dir=str(tmp_path / "stacks"))
        b = r.Bucket(s, "assets", name="shop-assets")
        t = r.Table(s, "orders", name="shop-orders", partition_key=("id", "Str"))
        lg = r.LogGroup(s, "logs", name="/shop/app", retention_days=7)
        # An argument computed from another resource's output: a dependency.
        n = r.Noop(s, "derived", value=b.name.apply(lambda v: f"s3://{v}/config"))
        s.export("bucket", b.name)
        s.export("config", n.value)
        s.export("both", mvi.Output.all(b.name, t.name))
        return s, b, lg

    s, b, lg = program()
    assert isinstance(b.name, mvi.Output)
    assert b.urn == "shop::mvi:blob:Bucket::assets"
    assert n_deps(b.name) == [b.urn]
    plan = s.preview()
    assert plan.count("create") == 4 and not plan.is_empty()
    assert "mvi:blob:Bucket" in str(plan) and "Plan(create=4)" == repr(plan)
    assert plan.steps[0].type_name == "mvi:blob:Bucket" and plan.steps[0].op == "create"
    events = []
    report = s.up(on_event=events.append)
    assert report.outputs == {"bucket": "shop-assets", "config": "s3://shop-assets/config",
                              "both": ["shop-assets", "shop-orders"]}
    assert {e.kind for e in events} == {"started", "finished"}
    assert [bk.name for bk in mem.blob.list_buckets()] == ["shop-assets"]
    assert s.outputs()["bucket"] == "shop-assets"
    # Running the program again changes nothing.
    s2, _, _ = program()
    assert s2.preview().is_empty()
    # Out-of-band change: refresh reports drift, up repairs it.
    mem.logs.set_retention("/shop/app", 30)
    rep = s2.refresh()
    assert [d.urn for d in rep.plan.drift] == [lg.urn]
    s2.up()
    assert mem.logs.list_groups()[0].retention_days == 7
    gone = s2.destroy()
    assert gone.plan.count("delete") == 4
    assert mem.blob.list_buckets() == []


def n_deps(o):
    return o.dependencies


def test_components_written_in_python(mem, tmp_path):
    class Site(mvi.Component):
        def __init__(self, scope, name, *, domain):
            super().__init__(scope, name)
            self.bucket = r.Bucket(self, "content", name=domain)
            self.logs = r.LogGroup(self, "access", name=f"/{domain}/access")

    s = mvi.Stack("web", mem, state_dir=str(tmp_path / "stacks"))
    site = Site(s, "blog", domain="blog-example")
    assert site.bucket.urn == "web::mvi:blob:Bucket::blog/content"
    plan = s.preview()
    parents = {st.name: st.parent for st in plan.steps}
    assert parents["blog/content"] == "web::mvi:component:Site::blog"
    s.up()
    assert [bk.name for bk in mem.blob.list_buckets()] == ["blog-example"]
    s.destroy()


def test_secret_outputs_and_apply_errors(mem, tmp_path):
    s = mvi.Stack("sec", mem, state_dir=str(tmp_path / "stacks"))
    n = r.Noop(s, "a", value="plain")
    secret = n.value.apply(lambda v: v + "-token").secret()
    assert secret.is_secret and not n.value.is_secret
    r.Noop(s, "b", value=secret)
    plan = s.preview()
    assert "plain-token" not in str(plan)

    bad = mvi.Stack("bad", mem, state_dir=str(tmp_path / "stacks"))
    m = r.Noop(bad, "m", value="x")
    r.Noop(bad, "n", value=m.value.apply(lambda v: 1 / 0))
    with pytest.raises(mvi.MviError, match="ZeroDivisionError"):
        bad.up()


def test_declaration_errors(mem, tmp_path):
    s = mvi.Stack("errs", mem, state_dir=str(tmp_path / "stacks"))
    with pytest.raises(TypeError, match="unexpected argument \"nam\".*name, force_destroy"):
        r.Bucket(s, "x", nam="y")
    with pytest.raises(TypeError, match="missing required argument.*name"):
        r.Bucket(s, "x")
    with pytest.raises(mvi.InvalidArgument, match="retention_days"):
        r.LogGroup(s, "lg", name="/x", retention_days="seven")
    r.Bucket(s, "dup", name="dup-bucket")
    with pytest.raises(mvi.AlreadyExists, match="dup"):
        r.Bucket(s, "dup", name="dup-bucket-2")
    with pytest.raises(mvi.InvalidArgument, match="stack names"):
        mvi.Stack("bad name!", mem)
    with pytest.raises(TypeError, match="has no value yet"):
        bool(r.Bucket(s, "z", name="zzz-bucket").name)
    with pytest.raises(AttributeError, match="its outputs are: name"):
        r.Bucket(s, "w", name="www-bucket").nope
    r.Bucket(s, "bad", name="Bad_Name")
    with pytest.raises(mvi.InvalidArgument, match="bucket name"):
        s.preview()


def test_protect(mem, tmp_path):
    s = mvi.Stack("prot", mem, state_dir=str(tmp_path / "stacks"))
    r.Bucket(s, "keep", name="keep-me", opts=mvi.ResourceOptions(protect=True))
    s.up()
    with pytest.raises(mvi.MviError, match="protect"):
        s.destroy()


def test_async_stack(mem, tmp_path):
    import asyncio

    async def main():
        s = mvi.Stack("aio", mem, state_dir=str(tmp_path / "stacks"))
        r.Bucket(s, "b", name="aio-stack-bucket")
        plan = await s.preview_async()
        assert plan.count("create") == 1
        await s.up_async()
        assert (await mem.aio.blob.list_buckets())[0].name == "aio-stack-bucket"
        await s.destroy_async()
    asyncio.run(main())


def test_quickstart_example(tmp_path):
    """examples/quickstart.py: preview, up, requests through the load balancer, destroy."""
    env = dict(os.environ, MVI_QUICKSTART_ROOT=str(tmp_path / "qs"))
    done = subprocess.run([sys.executable, str(REPO / "examples" / "quickstart.py")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Resources: 20 to create" in done.stdout
    assert "GET /db      -> 200 database says hello" in done.stdout
    assert "second preview: no changes" in done.stdout
    assert "20 resources deleted" in done.stdout


def test_outputs_inside_structures_and_plain_values(mem, tmp_path):
    s = mvi.Stack("nest", mem, state_dir=str(tmp_path / "stacks"))
    a = r.Noop(s, "a", value="x")
    both = mvi.Output.all(a.value, "plain", 3)
    b = r.Noop(s, "b", value=both.apply(lambda v: "-".join(map(str, v))))
    assert both.dependencies == [a.urn] and b.value.dependencies == [b.urn]
    with pytest.raises(ValueError, match="at least one Output"):
        mvi.Output.all("only", "plain")
    with pytest.raises(TypeError, match="only be an argument of a stack resource"):
        mem.networks.authorize("sg-1", mvi.Rule("Ingress", 1, 2, group=a.value))
    s.export("b", b.value)
    assert s.up().outputs["b"] == "x-plain-3"


def test_a_value_nested_past_128_levels_is_refused_not_a_crash(tmp_path, mem):
    deep: object = "leaf"
    for _ in range(100_000):
        deep = [deep]
    stack = mvi.Stack("deep", mem, state_dir=str(tmp_path / "stacks"))
    with pytest.raises(mvi.InvalidArgument, match="128 levels"):
        r.Noop(stack, "n", value=deep)


def test_autoscaler_resource_checks_and_needs_its_service(mem, tmp_path):
    """An AutoScaler declared from Python: its spec is checked before anything is written,
    and it needs the service it scales."""
    s = mvi.Stack("scale", mem, state_dir=str(tmp_path / "stacks"))
    r.AutoScaler(s, "web", service="web", min=1, max=4,
                 metrics=[{"cpu": {"target": 60}}, {"requests_per_replica": {"target_group": "web", "target": 50}}])
    plan = s.preview()
    assert plan.count("create") == 1
    with pytest.raises(mvi.NotFound, match="web"):
        s.up()
    bad = mvi.Stack("bad", mem, state_dir=str(tmp_path / "stacks"))
    r.AutoScaler(bad, "web", service="web", min=5, max=2, metrics=[{"cpu": {"target": 60}}])
    with pytest.raises(mvi.InvalidArgument, match="min 5 is above max 2"):
        bad.preview()


def test_grants_of_declared_resources_show_their_policy_in_preview(mem, tmp_path):
    """A service granted a bucket and a table through their outputs: the preview shows the
    IAM policy document its app will get, before anything exists."""
    s = mvi.Stack("granted", mem, state_dir=str(tmp_path / "stacks"))
    b = r.Bucket(s, "uploads", name="app-uploads")
    t = r.Table(s, "visits", name="app-visits", partition_key=("page", "Str"))
    r.ContainerService(s, "web", name="web", image="web:v1", replicas=1,
                       grants=[b.grant_read_write(), t.grant_read(), mvi.Grant.log_group_write("/web")])
    text = str(s.preview())
    assert "outputs.policy" in text, text
    for fragment in ["s3:PutObject", "arn:aws:s3:::app-uploads/*", "dynamodb:Query",
                     "arn:aws:dynamodb:us-east-1:000000000000:table/app-visits",
                     "logs:PutLogEvents"]:
        assert fragment in text, (fragment, text)
    assert "dynamodb:PutItem" not in text, text
