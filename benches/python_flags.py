"""Feature-flag evaluation from Python: the in-memory client's calls, per call.

    pip install ./crates/py          # a release build (or: maturin develop --release)
    python benches/python_flags.py

Prints the median of 7 rounds of 100,000 calls for: `bool_value` with a ready
`EvalContext` (the fast path: build the context once per user), with a targeting key given
as a str, with a dict context, and the whole `evaluate` (an `Evaluation` object). The flag is
a 5 % rollout, so each call hashes the key (MurmurHash3) in Rust. Target: at most 2 µs a call.
"""

from __future__ import annotations

import statistics
import time

import mvi
from mvi import flags as ff

N = 100_000
ROUNDS = 7


def per_call(f) -> float:
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) / N)
    return statistics.median(times)


def main() -> None:
    cloud = mvi.LocalCloud(in_memory=True, seed=1)
    store = mvi.Flags(cloud, "flags")
    store.create_table()
    store.save(ff.percentage("checkout", 5))
    client = store.client()
    ctx = mvi.EvalContext("user-1234567", country="NL", app_version="2.9.1")
    as_dict = {"targeting_key": "user-1234567", "country": "NL"}

    def ready() -> None:
        for _ in range(N):
            client.bool_value("checkout", False, ctx)

    def key() -> None:
        for _ in range(N):
            client.bool_value("checkout", False, "user-1234567")

    def dict_ctx() -> None:
        for _ in range(N):
            client.bool_value("checkout", False, as_dict)

    def details() -> None:
        for _ in range(N):
            client.evaluate("checkout", False, ctx)

    def empty() -> None:
        for _ in range(N):
            pass

    loop = per_call(empty)
    for name, f in [("bool_value, EvalContext", ready), ("bool_value, str key", key),
                    ("bool_value, dict context", dict_ctx), ("evaluate, EvalContext", details)]:
        print(f"{name:28} {(per_call(f) - loop) * 1e9:8.0f} ns a call")


if __name__ == "__main__":
    main()
