"""The cost of calling mvi from Python: a KV get on the local backend (on disk) as a blocking
Python call, against the same get done from Rust in the same process, on the same runtime.

    pip install ./crates/py          # a release build
    python benches/python_overhead.py

Prints per-call times (median of 7 rounds of 20,000 calls) and the difference, which is what
the binding adds: argument conversion, releasing and re-taking the GIL, building the result
dict. The asyncio flavour's cost is printed too (one await per get).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time

import mvi
from mvi import _mvi

N = 20_000
ROUNDS = 7


def per_call(f) -> float:
    times = []
    for _ in range(ROUNDS):
        times.append(f() / N)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        cloud = mvi.LocalCloud(root=root, seed=1)
        kv = cloud.kv
        kv.create_table("bench", "id")
        kv.batch_put("bench", [{"id": f"user-{n:06}", "data": b"x" * 100} for n in range(25)])
        key = "user-000007"
        assert kv.get_item("bench", key) is not None

        def python_loop() -> float:
            get = kv.get_item
            t = time.perf_counter()
            for _ in range(N):
                get("bench", key)
            return time.perf_counter() - t

        def rust_loop() -> float:
            return _mvi._bench_kv_get(cloud, "bench", key, N)

        async def aio_loop() -> float:
            get = cloud.aio.kv.get_item
            t = time.perf_counter()
            for _ in range(N // 10):
                await get("bench", key)
            return (time.perf_counter() - t) * 10

        rust_loop(), python_loop()  # warm up
        rust = per_call(rust_loop)
        py = per_call(python_loop)
        aio = per_call(lambda: asyncio.run(aio_loop()))
        print(f"KV get_item, local backend on disk, {N} calls x {ROUNDS} rounds (median):")
        print(f"  from Rust (block_on per call): {rust * 1e6:7.2f} us/call")
        print(f"  from Python, blocking:         {py * 1e6:7.2f} us/call")
        print(f"  overhead of the binding:       {(py - rust) * 1e6:7.2f} us/call")
        print(f"  from Python, asyncio (await):  {aio * 1e6:7.2f} us/call")


if __name__ == "__main__":
    main()
