"""A command line for a stack program, as in Rust's ``mvi::cli`` (see docs/cli.md)::

    import mvi, mvi.cli

    def declare(stack: mvi.Stack) -> None:
        assets = mvi.resources.Bucket(stack, "assets", name="shop-assets")
        stack.export("bucket", assets.name)

    if __name__ == "__main__":
        raise SystemExit(mvi.cli.main(declare, name="shop"))

``python shop.py preview``, ``up --yes``, ``destroy --yes``, ``refresh``, ``outputs``,
``state list``, ``state unlock [--force]``. Exit codes: 0 done (or nothing to do), 1 an
error, 2 changes or drift found under ``--expect-no-changes``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Dict, Optional, Sequence

from ._errors import MviError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


def _parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=name, description="Preview, apply and destroy this program's stack")
    p.add_argument("--backend", choices=["local", "aws"], default=os.environ.get("MVI_BACKEND", "local"))
    p.add_argument("--state", default=os.environ.get("MVI_STATE"), help="state folder (default .mvi/stacks)")
    p.add_argument("--root", default=os.environ.get("MVI_LOCAL_ROOT"), help="local simulator root (default .mvi/cloud)")
    p.add_argument("--seed", type=int, default=os.environ.get("MVI_SEED"))
    sub = p.add_subparsers(dest="command", required=True)
    pv = sub.add_parser("preview", help="show what up would do; changes nothing")
    pv.add_argument("--diff", action="store_true")
    pv.add_argument("--json", action="store_true")
    pv.add_argument("--expect-no-changes", action="store_true")
    pv.add_argument("--refresh", action="store_true")
    _targets(pv)
    up = sub.add_parser("up", help="apply the program")
    up.add_argument("--yes", "-y", action="store_true")
    up.add_argument("--refresh", action="store_true")
    up.add_argument("--parallel", type=int)
    up.add_argument("--json", action="store_true")
    up.add_argument("--serve", action="store_true")
    _targets(up)
    de = sub.add_parser("destroy", help="delete every resource of the stack")
    de.add_argument("--yes", "-y", action="store_true")
    de.add_argument("--json", action="store_true")
    _targets(de)
    im = sub.add_parser("import", help="adopt an existing resource as the one NAME the program declares")
    im.add_argument("type", metavar="TYPE", help="the resource type, such as mvi:blob:Bucket")
    im.add_argument("name", metavar="NAME", help="the resource's name in the program")
    im.add_argument("id", metavar="ID", help="its id in the cloud")
    im.add_argument("--no-protect", action="store_true", help="record it unprotected")
    rf = sub.add_parser("refresh", help="read the real resources and record drift")
    rf.add_argument("--expect-no-changes", action="store_true")
    rf.add_argument("--json", action="store_true")
    out = sub.add_parser("outputs", help="the stack's outputs")
    out.add_argument("--json", action="store_true")
    out.add_argument("--show-secrets", action="store_true")
    st = sub.add_parser("state", help="the stack's state").add_subparsers(dest="state_command", required=True)
    ls = st.add_parser("list", help="the resources the stack manages")
    ls.add_argument("--json", action="store_true")
    un = st.add_parser("unlock", help="remove a stale lock (or any, with --force)")
    un.add_argument("--force", action="store_true")
    return p


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise MviError(
            "this command asks before changing anything, and there is no terminal to ask on: "
            "run it with --yes to go ahead"
        )
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        print("cancelled: nothing was changed")
        return False
    return True


def _masked(outputs: "dict[str, Any]", secret: Sequence[str], show: bool) -> "dict[str, Any]":
    return {k: (v if show or k not in secret else "[secret]") for k, v in outputs.items()}


def _summary(plan: Any) -> str:
    counts: "dict[str, int]" = {}
    for s in plan.steps:
        counts[s.op] = counts.get(s.op, 0) + 1
    words = [("create", "created"), ("update", "updated"), ("replace", "replaced"), ("delete", "deleted"), ("same", "unchanged")]
    parts = [f"{counts[o]} {w}" for o, w in words if counts.get(o)]
    return "Resources: " + (", ".join(parts) or "nothing to do")


def main(
    declare: Callable[[Any], None],
    *,
    name: str,
    argv: Optional[Sequence[str]] = None,
    root: str = ".mvi/cloud",
    state: str = ".mvi/stacks",
    seed: Optional[int] = None,
) -> int:
    """Parses ``argv`` (default: the process's arguments), opens the cloud and the stack,
    calls ``declare(stack)``, runs the command and returns the exit code."""
    import mvi

    args = _parser(name).parse_args(argv)
    try:
        cloud: mvi.Cloud
        if args.backend == "aws":
            cloud = mvi.AwsCloud()
        else:
            s = args.seed if args.seed is not None else seed
            cloud = mvi.LocalCloud(root=args.root or root, seed=int(s) if s is not None else None)
        where = args.state or state
        if where.startswith("s3://"):
            raise MviError("the Python command line keeps state in a folder; s3:// is the Rust one's")
        stack = mvi.Stack(name, cloud, state_dir=where)
        declare(stack)
        return _run(stack, args)
    except MviError as e:
        print(f"error: {e}")
        return EXIT_ERROR


def _on_event(json_lines: bool) -> Callable[[Any], None]:
    def show(e: Any) -> None:
        if json_lines:
            print(json.dumps({"kind": e.kind, "urn": e.urn, "op": e.op}))
        else:
            print(f"    {e.op:<8} {e.urn.rsplit('::', 1)[-1]} {e.kind}")

    return show


def _targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", "-t", action="append", dest="targets", metavar="URN",
                   help="only this resource (URN, name, URN pattern with *, or component); repeatable")
    p.add_argument("--target-dependents", action="store_true", help="with --target: what depends on the targets too")


def _selection(args: argparse.Namespace) -> "dict[str, Any]":
    if args.target_dependents and not args.targets:
        raise MviError("--target-dependents needs --target")
    return {"targets": args.targets, "target_dependents": args.target_dependents}


def _plan_json(plan: Any) -> Dict[str, Any]:
    """The plan as the Rust command line prints it: stack, steps and drift with their diffs
    (secrets already shown as ``[secret]``), and the text."""
    return dataclasses.asdict(plan)


def _run(stack: Any, args: argparse.Namespace) -> int:
    c = args.command
    if c == "preview":
        plan = stack.preview(refresh=args.refresh, **_selection(args))
        if args.json:
            print(json.dumps(_plan_json(plan), indent=2))
        else:
            print(plan.text)
        changed = any(s.op != "same" for s in plan.steps)
        return EXIT_CHANGES if args.expect_no_changes and changed else EXIT_OK
    if c == "up":
        if not args.yes:
            plan = stack.preview(refresh=args.refresh, **_selection(args))
            print(plan.text)
            if not _ask("Do you want to perform this update?"):
                return EXIT_OK
        report = stack.up(
            refresh=args.refresh, parallelism=args.parallel, on_event=_on_event(args.json), **_selection(args)
        )
        outputs = _masked(report.outputs, stack.secret_outputs(), False)
        if args.json:
            print(
                json.dumps(
                    {
                        "kind": "done",
                        "plan": _plan_json(report.plan),
                        "outputs": outputs,
                        "duration": report.duration.total_seconds(),
                    }
                )
            )
        else:
            print(_summary(report.plan))
            for k, v in outputs.items():
                print(f"    {k}  {v}")
        if args.serve:
            print("serving until Ctrl-C ...")
            try:
                import time

                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return EXIT_OK
    if c == "destroy":
        if not args.yes and not _ask(f"Do you want to destroy every resource of stack {stack.name}?"):
            return EXIT_OK
        report = stack.destroy(on_event=_on_event(args.json), **_selection(args))
        if args.json:
            print(
                json.dumps(
                    {"kind": "done", "plan": _plan_json(report.plan), "duration": report.duration.total_seconds()}
                )
            )
        else:
            print(_summary(report.plan))
        return EXIT_OK
    if c == "import":
        urn, rid = stack.import_resource(args.type, args.name, args.id, protect=not args.no_protect)
        protected = "" if args.no_protect else ", protected"
        print(f"imported {urn} (id {rid}){protected}; the next `up` brings it to the program's declaration")
        return EXIT_OK
    if c == "refresh":
        report = stack.refresh()
        drift = report.plan.drift
        print(report.plan.text if drift else "no drift: every resource is as recorded")
        return EXIT_CHANGES if args.expect_no_changes and drift else EXIT_OK
    if c == "outputs":
        outputs = _masked(stack.outputs(), stack.secret_outputs(), args.show_secrets)
        if args.json:
            print(json.dumps(outputs, indent=2))
        else:
            for k, v in outputs.items():
                print(f"    {k}  {v}")
        return EXIT_OK
    if c == "state":
        if args.state_command == "list":
            rows = stack.resources()
            if args.json:
                print(json.dumps([{"urn": u, "type": t, "id": i} for u, t, i in rows], indent=2))
            else:
                for u, _, i in rows:
                    print(f"{u}  {i}")
            return EXIT_OK
        held = stack.unlock(force=args.force)
        print(f"removed the lock held by {held}" if held else "the stack is not locked")
        return EXIT_OK
    raise MviError(f"unknown command {c!r}")
