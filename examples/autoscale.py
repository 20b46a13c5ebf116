"""Autoscaling, in Python: the twin of examples/autoscale.rs. Load through the load balancer
makes a service grow and it shrinks when the load stops, every decision printed as it happens.

    pip install ./crates/py
    python examples/autoscale.py [STATE_DIR]

One replica of examples/webapp behind a load balancer and a scaler the local backend runs:
1 to 5 replicas, 20 requests a second per replica, evaluated every 2 s, a 6 s scale-down
window (HPA's default is 300 s). Clients send about 80 requests a second for 12 s, then stop.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import shutil
import sys
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional

import mvi

HERE = pathlib.Path(__file__).resolve().parent

CHECK = mvi.HealthCheck(path="/healthz", interval=dt.timedelta(milliseconds=300),
                        timeout=dt.timedelta(milliseconds=250), healthy_threshold=1,
                        unhealthy_threshold=2)


def main() -> int:
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".mvi/autoscale-py")
    if root.exists():
        old = mvi.LocalCloud(root=str(root))  # stops what a killed run left running
        del old
        shutil.rmtree(root)
    cloud = mvi.LocalCloud(root=str(root))
    cloud.images.create_repository("web")
    cloud.images.build_from_dir("web", str(HERE / "webapp"),
                                mvi.ImageConfig(cmd=["python3", "app.py"], working_dir="/"), tag="v1")
    cloud.load_balancers.create_target_group(
        mvi.TargetGroupSpec("web", health_check=CHECK, deregistration_delay=dt.timedelta(seconds=1)))
    lb = cloud.load_balancers.create_load_balancer(
        mvi.LoadBalancerSpec("front", [mvi.ListenerSpec(0, [("web", 1)])]))
    url = lb.urls[0]
    cloud.containers.create_service(mvi.ServiceSpec(
        "web", mvi.ContainerSpec("web:v1", health_check=CHECK), replicas=1, target_group="web"))
    deadline = time.monotonic() + 30
    while not any(t.health == "Healthy" for t in cloud.load_balancers.target_health("web")):
        if time.monotonic() > deadline:
            raise SystemExit("the first replica was not healthy within 30 s")
        time.sleep(0.05)
    print(f"load balancer: {url}; service web: 1 replica, healthy")
    scaler: Dict[str, Any] = {
        "service": "web", "min": 1, "max": 5,
        "metrics": [{"requests_per_replica": {"target_group": "web", "target": 20}}],
        "behavior": {
            "scale_up": {"stabilization": dt.timedelta(0), "select": "max",
                         "policies": [{"kind": "pods", "value": 4, "period": dt.timedelta(seconds=15)},
                                      {"kind": "percent", "value": 100, "period": dt.timedelta(seconds=15)}]},
            "scale_down": {"stabilization": dt.timedelta(seconds=6), "select": "max",
                           "policies": [{"kind": "percent", "value": 100, "period": dt.timedelta(seconds=15)}]},
        },
        "period": dt.timedelta(seconds=2),
    }
    cloud.containers.put_scaler(scaler)
    print("scaler: 1..=5 replicas, 20 requests/s per replica, every 2 s, 6 s down window\n")

    stop = threading.Event()
    counts: List[int] = [0, 0]

    def client() -> None:
        while not stop.is_set():
            counts[0] += 1
            try:
                with urllib.request.urlopen(url + "/", timeout=10) as r:
                    r.read()
            except OSError:
                counts[1] += 1
            time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    started = time.monotonic()
    printed: Optional[dt.datetime] = None
    peak, stopped_at = 1, None
    try:
        while True:
            time.sleep(0.2)
            for d in cloud.containers.describe_scaler("web").decisions:
                if printed is None or d.at > printed:
                    printed = d.at
                    mark = "scaled" if d.scaled else "kept  "
                    print(f"  {time.monotonic() - started:5.1f}s  {mark}  {d.current} → {d.desired} "
                          f"replicas ({d.limit}; proposals {d.proposals})")
            replicas = cloud.containers.describe_service("web").spec.replicas
            peak = max(peak, replicas)
            if stopped_at is None and time.monotonic() - started > 12:
                stop.set()
                stopped_at = time.monotonic()
                print(f"  {time.monotonic() - started:5.1f}s  the load stops ({replicas} replicas)")
            if stopped_at is not None and replicas == 1:
                print(f"  {time.monotonic() - started:5.1f}s  back to 1 replica, "
                      f"{time.monotonic() - stopped_at:.1f}s after the load stopped")
                break
            if time.monotonic() - started > 90:
                raise SystemExit("the demo took too long")
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"\n{counts[0]} requests sent, {counts[1]} failed; at most {peak} replicas")
    cloud.containers.delete_service("web")
    return 0 if peak >= 2 and counts[1] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
