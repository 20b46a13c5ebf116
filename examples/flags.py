"""Feature flags, in Python: the twin of examples/flags.rs. A rollout moved from 5 % to 100 %
while a client (every flag in memory) is asked for 10,000 users; staff first by a rule.

    pip install ./crates/py
    python examples/flags.py
"""

from __future__ import annotations

import time
from typing import Any, Dict, List

import mvi
from mvi import flags as ff

USERS = 10_000


def at(percent: int) -> Dict[str, Any]:
    return ff.percentage(
        "new-checkout", percent,
        description="the one-page checkout",
        rules=[ff.rule([ff.condition("email", "ends_with", "@example.com")], variant="on")],
    )


def main() -> None:
    cloud = mvi.LocalCloud(in_memory=True)
    store = mvi.Flags(cloud, "flags")
    store.create_table()
    store.save(at(5))
    client = store.client()
    users = [mvi.EvalContext(f"user-{i}", email=f"u{i}@mail.test") for i in range(USERS)]

    def with_it() -> List[bool]:
        return [client.bool_value("new-checkout", False, u) for u in users]

    had = with_it()
    print(f"  5 %: {sum(had):>5} of {USERS} users have the new checkout")
    e = client.evaluate("new-checkout", False, mvi.EvalContext("user-1", email="ana@example.com"))
    print(f"       staff (ana@example.com): {e.value} ({e.reason}, variant {e.variant!r})")
    for percent in (25, 50, 100):
        version = store.save(at(percent))
        saved, before = time.monotonic(), client.changes()
        while client.changes() == before:
            time.sleep(0.005)
        took = (time.monotonic() - saved) * 1000
        now = with_it()
        kept = all(b for a, b in zip(had, now) if a)
        print(f"{percent:>3} %: {sum(now):>5} of {USERS} users have it (version {version}, "
              f"seen by the client {took:.0f} ms after the save; all who had it kept it: {kept})")
        had = now
    off = store.save({**at(100), "enabled": False})
    while client.bool_value("new-checkout", False, users[0]):
        time.sleep(0.005)
    print(f"off (version {off}): {sum(with_it())} users have it; "
          f"reason {client.evaluate('new-checkout', False, users[0]).reason}")


if __name__ == "__main__":
    main()
