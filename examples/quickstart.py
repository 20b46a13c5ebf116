"""Quickstart, in Python: the whole web app of examples/quickstart.rs as a stack on the
local backend: preview, up (with live progress), requests through the load balancer, a
second preview with nothing to do, destroy.

    pip install ./crates/py
    python examples/quickstart.py [STATE_DIR]

The web service is a Python component (``WebService``): an image built from
examples/webapp, a target group, a load balancer, and two replicas getting the database URL
and a secret encrypted.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import sys
import time
import urllib.request
from typing import List, Tuple

import mvi
from mvi import resources as r

HERE = pathlib.Path(__file__).resolve().parent

FAST_CHECK = mvi.HealthCheck(
    path="/healthz",
    interval=dt.timedelta(milliseconds=200),
    timeout=dt.timedelta(milliseconds=150),
    healthy_threshold=1,
    unhealthy_threshold=3,
)


class WebService(mvi.Component):
    """The app: image, target group, load balancer and replicas, as one component."""

    def __init__(self, scope: mvi.Stack, name: str, *, vpc: r.Vpc, subnets: List[r.Subnet],
                 lb_sg: r.SecurityGroup, app_sg: r.SecurityGroup, db: r.Database,
                 key: r.Key) -> None:
        super().__init__(scope, name)
        repo = r.Repository(self, "repo", name="quickstart/web", force_destroy=True)
        image = r.Image(
            self, "image", repository=repo.name, dir=str(HERE / "webapp"), tag="v1",
            config=mvi.ImageConfig(entrypoint=["python3", "app.py"], exposed_port=8080,
                                   working_dir="/"),
        )
        tg = r.TargetGroup(self, "tg", name="quickstart-web", protocol="Http", vpc=vpc.id,
                           health_check=FAST_CHECK,
                           deregistration_delay=dt.timedelta(milliseconds=200))
        self.lb = r.LoadBalancer(
            self, "lb", name="quickstart",
            listeners=[{"protocol": "Http", "port": 0, "target_groups": [tg.name]}],
            weights=[[1]],
            subnets=[s.id for s in subnets], security_groups=[lb_sg.id],
        )
        app_secret = key.id.apply(lambda _: "s3cr3t-api-token").secret()
        r.ContainerService(
            self, "service", name="web", image=image.reference, replicas=2,
            secret_env={"DATABASE_URL": db.url, "APP_SECRET": app_secret},
            secrets_key=key.id, health_check=FAST_CHECK, target_group=tg.name,
            subnets=[s.id for s in subnets], security_groups=[app_sg.id],
        )


def declare(cloud: mvi.Cloud, state: pathlib.Path,
            zones: Tuple[str, str] = ("local-1a", "local-1b"),
            vm_image: str = "ami-local") -> mvi.Stack:
    """The program: every resource of the app, wired by outputs. `zones` and `vm_image` are
    what differs on AWS (`("eu-west-1a", "eu-west-1b")`, an AMI id)."""
    s = mvi.Stack("quickstart", cloud, state_dir=str(state / "stacks"))
    vpc = r.Vpc(s, "vpc", cidr="10.0.0.0/16")
    subnets = [
        r.Subnet(s, f"subnet-{n}", vpc=vpc.id, cidr=cidr, zone=zone, public=True)
        for n, cidr, zone in [("a", "10.0.0.0/24", zones[0]), ("b", "10.0.1.0/24", zones[1])]
    ]
    lb_sg = r.SecurityGroup(s, "lb-sg", vpc=vpc.id, name="quickstart-lb",
                            rules=[mvi.Rule("Ingress", 80, 80, cidr="0.0.0.0/0")])
    app_sg = r.SecurityGroup(s, "app-sg", vpc=vpc.id, name="quickstart-app",
                             rules=[mvi.Rule("Ingress", 1024, 65535, group=lb_sg.id)])
    for n, subnet in zip("ab", subnets):
        r.Vm(s, f"vm-{n}", name=f"quickstart-{n}", size="t3.medium", image=vm_image,
             subnet=subnet.id)
    db = r.Database(s, "db", name="quickstart-db")
    r.Snapshot(s, "db-initial", database=db.name, name="quickstart-db-initial")
    key = r.Key(s, "app-key", alias="alias/quickstart", description="quickstart app secrets")
    r.Bucket(s, "artifacts", name="quickstart-artifacts", force_destroy=True)
    r.Table(s, "releases", name="quickstart-releases", partition_key=("release", "Str"))
    r.LogGroup(s, "app-logs", name="/quickstart/app", retention_days=7)
    web = WebService(s, "web", vpc=vpc, subnets=subnets, lb_sg=lb_sg, app_sg=app_sg, db=db,
                     key=key)
    r.ScheduledTask(s, "nightly", name="quickstart-nightly", cron="0 3 * * *",
                    container=mvi.ContainerSpec(
                        "quickstart/web:v1", command=["python3", "-c", "print('nightly report')"]))
    r.Alarm(s, "slow", name="quickstart-slow",
            metric=mvi.MetricId("mvi/LoadBalancer", "TargetResponseTime",
                                {"LoadBalancer": "quickstart"}),
            statistic="Average", comparison="GreaterThan", threshold=500.0,
            period=dt.timedelta(seconds=60), evaluation_periods=3)
    s.export("url", web.lb.url)
    s.export("database_url", db.url)
    return s


def http_get(url: str, path: str) -> Tuple[int, str]:
    with urllib.request.urlopen(url + path, timeout=10) as resp:
        return resp.status, resp.read().decode()


def progress(event: mvi.Event) -> None:
    short = event.urn.rsplit("::", 1)[-1]
    if event.kind == "finished" and event.duration is not None:
        print(f"    {event.op:<8} {short} done in {event.duration.total_seconds():.2f}s")
    elif event.kind in ("failed", "skipped"):
        print(f"    {event.op:<8} {short} {event.kind.upper()}: {event.error}")


def main() -> int:
    state = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".mvi/quickstart-py")
    if state.exists():
        # A killed earlier run may have left processes: opening its root stops them.
        del_cloud = mvi.LocalCloud(root=str(state / "cloud"))
        del del_cloud
        shutil.rmtree(state)
    started = time.time()
    cloud = mvi.LocalCloud(root=str(state / "cloud"), seed=42)
    stack = declare(cloud, state)
    plan = stack.preview()
    print(plan)
    assert plan.count("create") == len(plan.steps), "a fresh stack only creates"
    print("applying:")
    ok = False
    try:
        report = stack.up(on_event=progress)
        url = report.outputs["url"]
        print(f"[{time.time() - started:5.1f}s] up: the app is at {url}")
        for path in ["/", "/", "/db", "/secret"]:
            status, body = http_get(url, path)
            print(f"  GET {path:<8} -> {status} {body.strip()}")
            if status != 200:
                raise SystemExit(f"GET {path} answered {status}")
        again = declare(cloud, state).preview()
        print("second preview:", "no changes" if again.is_empty() else "changes!")
        if not again.is_empty():
            raise SystemExit(f"the second preview is not empty:\n{again}")
        ok = True
    finally:
        print("destroying:")
        report = declare(cloud, state).destroy(on_event=progress)
        print(f"[{time.time() - started:5.1f}s] {report.plan.count('delete')} resources deleted")
    return 0 if ok else 1


if __name__ == "__main__":
    if os.environ.get("MVI_QUICKSTART_ROOT"):
        sys.argv[1:] = [os.environ["MVI_QUICKSTART_ROOT"]]
    sys.exit(main())
