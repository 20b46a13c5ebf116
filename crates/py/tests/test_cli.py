"""mvi.cli: a stack program's command line, from Python (the same commands as Rust's)."""

import json

import mvi
import mvi.cli
from mvi import resources as r

SECRET = "py-cli-secret-81f2"


def declare(value):
    def program(stack):
        b = r.Bucket(stack, "assets", name="pycli-assets")
        n = r.Noop(stack, "plain", value=value)
        t = r.Noop(stack, "token", value=mvi.secret(SECRET))
        stack.export("bucket", b.name)
        stack.export("value", n.value)
        stack.export("token", t.value)

    return program


def run(tmp_path, capsys, value, *argv):
    code = mvi.cli.main(
        declare(value),
        name="pycli",
        argv=["--root", str(tmp_path / "cloud"), "--state", str(tmp_path / "stacks"), *argv],
    )
    return code, capsys.readouterr().out


def test_every_command_and_its_exit_code(tmp_path, capsys):
    code, out = run(tmp_path, capsys, "one", "preview")
    assert code == 0 and "3 to create" in out, out
    code, out = run(tmp_path, capsys, "one", "preview", "--expect-no-changes")
    assert code == 2, out
    # No terminal under pytest: up without --yes refuses and changes nothing.
    code, out = run(tmp_path, capsys, "one", "up")
    assert code == 1 and "--yes" in out, out
    code, out = run(tmp_path, capsys, "one", "state", "list")
    assert out.strip() == "", out

    code, out = run(tmp_path, capsys, "one", "up", "--yes")
    assert code == 0 and "3 created" in out, out
    assert "[secret]" in out and SECRET not in out, out
    code, _ = run(tmp_path, capsys, "one", "preview", "--expect-no-changes")
    assert code == 0

    code, out = run(tmp_path, capsys, "one", "outputs", "--json")
    outputs = json.loads(out)
    assert outputs["bucket"] == "pycli-assets" and outputs["token"] == "[secret]"
    code, out = run(tmp_path, capsys, "one", "outputs", "--json", "--show-secrets")
    assert json.loads(out)["token"] == SECRET
    code, out = run(tmp_path, capsys, "one", "state", "list", "--json")
    assert len(json.loads(out)) == 3
    code, out = run(tmp_path, capsys, "one", "state", "unlock")
    assert (code, out.strip()) == (0, "the stack is not locked")

    code, out = run(tmp_path, capsys, "two", "preview", "--expect-no-changes")
    assert code == 2 and "update" in out, out
    code, out = run(tmp_path, capsys, "two", "up", "--yes")
    assert code == 0 and "1 updated" in out, out
    code, out = run(tmp_path, capsys, "two", "refresh", "--expect-no-changes")
    assert code == 0, out
    code, out = run(tmp_path, capsys, "two", "destroy")
    assert code == 1, out
    code, out = run(tmp_path, capsys, "two", "destroy", "--yes")
    assert code == 0 and "3 deleted" in out, out


def test_a_secret_from_a_plain_value_is_sealed(tmp_path):
    cloud = mvi.LocalCloud(root=str(tmp_path / "cloud"))
    s = mvi.Stack("sealed", cloud, state_dir=str(tmp_path / "stacks"))
    token = mvi.secret(SECRET)
    assert token.is_secret
    r.Noop(s, "token", value=token)
    s.up()
    for f in (tmp_path / "stacks").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_targets_and_import(tmp_path, capsys):
    # A bucket made by hand, adopted as the program's `assets`.
    cloud = mvi.LocalCloud(root=str(tmp_path / "cloud"))
    cloud.blob.create_bucket("pycli-assets")
    del cloud
    code, out = run(tmp_path, capsys, "one", "import", "mvi:blob:Bucket", "assets", "pycli-assets")
    assert code == 0 and "imported" in out and "protected" in out, out
    code, out = run(tmp_path, capsys, "one", "import", "mvi:blob:Bucket", "assets", "pycli-assets")
    assert code == 1 and "already manages" in out, out

    code, out = run(tmp_path, capsys, "one", "preview", "--json", "--target", "plain")
    plan = json.loads(out)
    steps = plan["steps"]
    assert [s["op"] for s in steps] == ["create"] and steps[0]["urn"].endswith("::plain"), out
    # The whole plan, as the Rust command line prints it: types, diffs, drift, the text.
    assert plan["stack"] == "pycli" and plan["drift"] == [] and "create" in plan["text"], out
    assert steps[0]["type_name"] and steps[0]["diffs"][0]["new"] is not None, out
    code, out = run(tmp_path, capsys, "one", "up", "--yes", "-t", "plain")
    assert code == 0 and "1 created" in out, out
    code, out = run(tmp_path, capsys, "one", "up", "--yes", "--target", "nope")
    assert code == 1 and "no resource of the stack" in out, out
    code, out = run(tmp_path, capsys, "one", "up", "--yes")
    assert code == 0 and "1 created" in out, out
    code, out = run(tmp_path, capsys, "one", "destroy", "--yes", "--target", "token")
    assert code == 0 and "1 deleted" in out, out
    code, out = run(tmp_path, capsys, "one", "state", "list", "--json")
    assert len(json.loads(out)) == 2, out
