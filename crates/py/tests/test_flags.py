"""Feature flags from Python: saved whole or not at all, evaluated from memory, changes seen
by a running client, defaults with reason ERROR when there is no such flag."""

import time

import pytest

import mvi
from mvi import flags as ff


def store(cloud):
    s = mvi.Flags(cloud, "flags")
    s.create_table()
    return s


def test_save_check_and_evaluate(mem):
    s = store(mem)
    assert s.save(ff.percentage("checkout", 5)) == 1
    with pytest.raises(mvi.InvalidArgument, match="weights sum to 90"):
        s.save(ff.boolean("checkout", rollout=ff.rollout([("on", 60), ("off", 30)])))
    with pytest.raises(mvi.InvalidArgument, match="lt compares numbers"):
        s.save(ff.boolean("checkout", rules=[ff.rule([ff.condition("age", "lt", "ten")], variant="on")]))
    assert s.get("checkout")["rollout"]["splits"][0] == {"variant": "on", "weight": 5}
    theme = ff.flag(
        "theme", "string", {"dark": "dark", "light": "light"}, "light",
        rules=[ff.rule([ff.condition("country", "one_of", ["NL", "BE"])], variant="dark")],
    )
    s.save(theme)
    assert [f["key"] for f in s.list()] == ["checkout", "theme"]

    e = s.evaluate("theme", "?", {"targeting_key": "u", "country": "NL"})
    assert (e.value, e.variant, e.reason, e.error_code) == ("dark", "dark", "TARGETING_MATCH", None)
    e = s.evaluate("nope", True)
    assert (e.value, e.reason, e.error_code) == (True, "ERROR", "FLAG_NOT_FOUND")

    client = s.client(poll=0.05)
    assert client.is_ready()
    nl = mvi.EvalContext("user-1", country="NL")
    assert client.string_value("theme", "?", nl) == "dark"
    assert client.string_value("theme", "?", "user-1") == "light"
    e = client.evaluate("theme", 3, nl)
    assert (e.value, e.reason, e.error_code) == (3, "ERROR", "TYPE_MISMATCH")
    users = [mvi.EvalContext(f"user-{i}") for i in range(2000)]
    early = [u for u in users if client.bool_value("checkout", False, u)]
    assert 60 <= len(early) <= 140, len(early)

    s.save(ff.percentage("checkout", 100))
    deadline = time.monotonic() + 10
    while sum(client.bool_value("checkout", False, u) for u in users) < len(users):
        assert time.monotonic() < deadline, "the change did not reach the client"
        time.sleep(0.01)
    assert s.delete("theme") and not s.delete("theme")


def test_bad_arguments_are_named(mem):
    s = store(mem)
    client = s.client()
    with pytest.raises(TypeError, match="context"):
        client.bool_value("x", False, 42)
    with pytest.raises(TypeError, match="default"):
        client.evaluate("x", [1], None)
    with pytest.raises(mvi.InvalidArgument, match="poll"):
        s.client(poll=0)
    with pytest.raises(mvi.InvalidArgument, match="flag"):
        s.save({"key": "x"})
