"""Deployments from Python on the local backend: a rolling update and a canary, with real
replicas behind the real load balancer, and the answers read through it afterwards."""

import datetime as dt
import threading
import urllib.request

import pytest

import mvi
from conftest import REPO

FAST = mvi.HealthCheck(path="/healthz", interval=dt.timedelta(milliseconds=100),
                       timeout=dt.timedelta(milliseconds=90), healthy_threshold=1,
                       unhealthy_threshold=2)


@pytest.fixture
def app(cloud):
    """The versioned test app's image, two target groups and a load balancer `front`."""
    cfg = mvi.ImageConfig(cmd=["python3", "app.py"], working_dir="/")
    cloud.images.create_repository("app")
    cloud.images.build_from_dir("app", str(REPO / "tests" / "fixtures" / "versioned"), cfg,
                                tag="v1")
    for name in ["app", "app-next"]:
        cloud.load_balancers.create_target_group(mvi.TargetGroupSpec(
            name, health_check=FAST, deregistration_delay=dt.timedelta(seconds=1)))
    lb = cloud.load_balancers.create_load_balancer(mvi.LoadBalancerSpec(
        "front", [mvi.ListenerSpec(0, [("app", 1), ("app-next", 0)])]))
    yield lb.urls[0]
    cloud.containers.delete_service("app")


def spec(version, deployment, **env):
    return mvi.ServiceSpec(
        "app",
        mvi.ContainerSpec("app:v1", env={"APP_VERSION": version, **env}, cpu_millis=128,
                          memory_mib=64),
        replicas=2, target_group="app", deployment=deployment)


def versions(url, n=20):
    seen = set()
    for _ in range(n):
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            assert r.status == 200
            seen.add(r.read().decode().split()[0])
    return seen


def test_rolling_update_and_a_rolled_back_version(cloud, app):
    rolling = mvi.Deployment(mvi.Rolling(max_surge=1, max_unavailable=0),
                             progress_deadline=dt.timedelta(seconds=20))
    first = cloud.deploy(spec("v1", rolling))
    assert first.revision == 1
    assert first.spec.deployment == rolling
    steps = []
    info = cloud.deploy(spec("v2", rolling), on_progress=lambda svc, msg: steps.append(msg))
    assert info.revision == 2 and info.rollout is None
    assert all(i.revision == 2 for i in info.instances)
    assert versions(app) == {"version=v2"}
    assert any("revision 2 is deployed" in m for m in steps), steps
    with pytest.raises(mvi.DeploymentFailed) as e:
        cloud.deploy(spec("v3", rolling, EXIT_AT_ONCE="1"))
    assert "rolled back to revision 2" in str(e.value)
    assert versions(app) == {"version=v2"}
    states = [(r.number, r.state) for r in cloud.containers.list_revisions("app")]
    assert states == [(1, "Superseded"), (2, "Active"), (3, "RolledBack")]


def test_canary_moves_traffic_in_steps(cloud, app):
    cloud.deploy(spec("v1", None))
    shift = mvi.Canary("app-next", [mvi.TrafficStep(50, dt.timedelta(seconds=2)),
                                    mvi.TrafficStep(100)],
                       mvi.Analysis(interval=dt.timedelta(seconds=1), min_requests=1))
    canary = mvi.Deployment(shift, progress_deadline=dt.timedelta(seconds=20))
    steps = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                versions(app, 1)
            except OSError:
                pass

    t = threading.Thread(target=traffic)
    t.start()
    try:
        info = cloud.deploy(spec("v2", canary), on_progress=lambda svc, msg: steps.append(msg))
    finally:
        stop.set()
        t.join()
    assert info.revision == 2
    assert isinstance(info.spec.deployment.strategy, mvi.Canary)
    assert [s.id for s in info.sets] == ["primary"]
    assert versions(app) == {"version=v2"}
    text = "\n".join(steps)
    assert "50 % of the traffic" in text and "analysis of revision 2 passed" in text, text
    front = cloud.load_balancers.describe_load_balancer("front")
    assert front.spec.listeners[0].forward == [("app", 1), ("app-next", 0)]
