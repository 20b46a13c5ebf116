"""Deployments, in Python: the twin of examples/deploy.rs. Three replicas of the quickstart's
web app behind the local load balancer, rolled to v2, moved blue-green to v3 (checked
through a test listener first), moved to v4 by a linear canary (each step analysed), and
rolled back to v1, with clients sending requests all along; every step is printed as it
happens, and at the end how many requests failed (none).

    pip install ./crates/py
    python examples/deploy.py [STATE_DIR]
"""

from __future__ import annotations

import datetime as dt
import pathlib
import shutil
import sys
import threading
import time
import urllib.request
from typing import List, Tuple, Union

import mvi

HERE = pathlib.Path(__file__).resolve().parent

CHECK = mvi.HealthCheck(
    path="/healthz",
    interval=dt.timedelta(milliseconds=500),
    timeout=dt.timedelta(milliseconds=400),
    healthy_threshold=1,
    unhealthy_threshold=2,
)


def spec(version: str, strategy: Union[mvi.Rolling, mvi.BlueGreen, mvi.Canary]) -> mvi.ServiceSpec:
    return mvi.ServiceSpec(
        "web",
        mvi.ContainerSpec("web:v1", env={"APP_VERSION": version}, health_check=CHECK),
        replicas=3,
        target_group="web",
        deployment=mvi.Deployment(strategy, progress_deadline=dt.timedelta(seconds=60)),
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        body: bytes = resp.read()
        return body.decode().strip()


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".mvi/deploy-py")
    if root.exists():
        del_cloud = mvi.LocalCloud(root=str(root))  # stops what a killed run left running
        del del_cloud
        shutil.rmtree(root)
    cloud = mvi.LocalCloud(root=str(root))
    cloud.images.create_repository("web")
    cloud.images.build_from_dir("web", str(HERE / "webapp"),
                                mvi.ImageConfig(cmd=["python3", "app.py"], working_dir="/"),
                                tag="v1")
    for name in ["web", "web-next"]:
        cloud.load_balancers.create_target_group(mvi.TargetGroupSpec(
            name, health_check=CHECK, deregistration_delay=dt.timedelta(seconds=2)))
    lb = cloud.load_balancers.create_load_balancer(mvi.LoadBalancerSpec("front", [
        mvi.ListenerSpec(0, [("web", 1), ("web-next", 0)]),  # production
        mvi.ListenerSpec(0, [("web-next", 1)]),               # test listener
    ]))
    url = lb.urls[0]
    print(f"load balancer: {url} (test listener {lb.urls[1]})")
    started = time.monotonic()

    def progress(service: str, message: str) -> None:
        print(f"  {time.monotonic() - started:6.1f}s  {message}")

    print("\n== v1: three replicas")
    cloud.deploy(spec("v1", mvi.Rolling()), on_progress=progress)
    while sum(t.health == "Healthy" for t in cloud.load_balancers.target_health("web")) < 3:
        time.sleep(0.05)

    stop = threading.Event()
    counts: List[int] = [0, 0]  # sent, failed

    def clients() -> None:
        while not stop.is_set():
            counts[0] += 1
            try:
                get(url)
            except OSError:
                counts[1] += 1
            time.sleep(0.01)

    threads = [threading.Thread(target=clients) for _ in range(4)]
    for t in threads:
        t.start()
    blue_green = mvi.BlueGreen("web-next", preview_path="/healthz",
                               scale_down_delay=dt.timedelta(seconds=2))
    linear = mvi.Canary.linear("web-next", 34, dt.timedelta(seconds=2))
    linear = mvi.Canary(linear.canary_target_group, linear.steps,
                        mvi.Analysis(interval=dt.timedelta(seconds=1), min_requests=5))
    plan: List[Tuple[str, str, Union[mvi.Rolling, mvi.BlueGreen, mvi.Canary]]] = [
        ("rolling", "v2", mvi.Rolling()),
        ("blue-green", "v3", blue_green),
        ("linear canary", "v4", linear),
        ("rolling, back", "v1", mvi.Rolling()),
    ]
    try:
        for title, version, strategy in plan:
            print(f"\n== {title} to {version}")
            info = cloud.deploy(spec(version, strategy), on_progress=progress)
            print(f"  revision {info.revision} runs; the app says: {get(url)}")
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\n{counts[0]} requests through the load balancer during the deployments, "
          f"{counts[1]} failed")
    print("\nrevisions:")
    for r in cloud.containers.list_revisions("web"):
        print(f"  {r.number:>2} {r.state:<10} {(r.container.env or {}).get('APP_VERSION')}")
    cloud.containers.delete_service("web")
    return 1 if counts[1] else 0


if __name__ == "__main__":
    sys.exit(main())
