"""The `pynenc` command: `pynenc --app MODULE:ATTR {worker,recover,status,show}`, and
`pynenc verify [--store URL]` (no app needed)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pynenc._core import format_id
from pynenc.app import Pynenc
from pynenc.errors import InvalidArgumentError, PynencError
from pynenc.invocation import InvocationStatus
from pynenc.store import store_path

__all__ = ["load_app", "main", "show", "status", "verify"]


#: The levels `--log-level` accepts (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL")


def load_app(spec: str) -> Pynenc:
    """Import `MODULE:ATTR` and return the app it names."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--app must be MODULE:ATTR (e.g. myproject.tasks:app), got {spec!r}")
    sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"cannot import {module_name!r} for --app: {exc}") from None
    if not hasattr(module, attr):
        raise SystemExit(f"module {module_name!r} has no attribute {attr!r} for --app {spec}")
    app = getattr(module, attr)
    if not isinstance(app, Pynenc):
        raise SystemExit(f"{spec} is not a Pynenc app (found {type(app).__name__})")
    app._main_module = module_name
    return app


def status(app: Pynenc) -> dict[str, Any]:
    """Counts by status, the queue length, and who runs what."""
    invocations = app.list_invocations()
    leases = {
        format_id(inv): (owner.decode(errors="replace"), expires)
        for inv, owner, expires, _token in app.store.leases()
    }
    running = []
    for inv in invocations:
        if inv.status is InvocationStatus.RUNNING:
            owner, expires = leases.get(inv.invocation_id, (inv.owner, None))
            running.append(
                {
                    "invocation_id": inv.invocation_id,
                    "task": inv.task_id,
                    "workflow_id": inv.workflow.workflow_id,
                    "owner": owner,
                    "lease_expires_ms": expires,
                }
            )
    return {
        "store": app.config.store,
        "counts": dict(sorted(Counter(inv.status.value for inv in invocations).items())),
        "queued": len(app.store.queued()),
        "running": running,
    }


def show(app: Pynenc, invocation_id: str) -> dict[str, Any]:
    """An invocation's record, what it recorded, and the children it dispatched."""
    inv = app.get_invocation(invocation_id)
    if inv is None:
        raise InvalidArgumentError(f"no invocation {invocation_id} in {app.config.store}")
    return {
        "invocation_id": inv.invocation_id,
        "task": inv.task_id,
        "status": inv.status.value,
        "workflow_id": inv.workflow.workflow_id,
        "workflow_type": inv.workflow.workflow_type,
        "parent_workflow_id": inv.workflow.parent_workflow_id,
        "parent_invocation_id": inv.parent_invocation_id,
        "attempt": inv.attempt,
        "attempts": inv.attempts,
        "journal": [
            {"position": e.position, "operation": e.operation, "name": e.name, "value": e.value}
            for e in app.journal(invocation_id)
        ],
        "children": [
            {"invocation_id": c.invocation_id, "task": c.task_id, "status": c.status.value}
            for c in app.list_invocations(parent_invocation_id=inv.invocation_id)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pynenc", description="pynenc-replay workers and tools")
    parser.add_argument("--app", help="the app to use, as MODULE:ATTR (all but verify)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LOG_LEVELS,
        help="logging level (default INFO)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run queued invocations until SIGTERM/SIGINT")
    worker.add_argument("--concurrency", type=int, default=1, help="invocations at once")
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running invocations get to finish on SIGTERM (default 30)",
    )
    commands.add_parser("recover", help="resume invocations whose process died; print them")
    commands.add_parser("status", help="count invocations by status; list who runs what")
    show_cmd = commands.add_parser(
        "show", help="one invocation: its record, its journal and its children"
    )
    show_cmd.add_argument("invocation_id")
    verify_cmd = commands.add_parser(
        "verify", help="check every page and record of a store; exit 1 if any is damaged"
    )
    verify_cmd.add_argument(
        "--store", help="lmdb://PATH or a path (default: PYNENC_STORE, else lmdb://.pynenc)"
    )
    verify_cmd.add_argument("--json", action="store_true", help="print the findings as JSON")
    opts = parser.parse_args(argv)
    if opts.command == "verify":
        return verify(opts.store, as_json=opts.json)
    if opts.app is None:
        parser.error(f"--app MODULE:ATTR is required for {opts.command}")
    logging.basicConfig(
        level=opts.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        app = load_app(opts.app)
        if opts.command != "worker":
            path = store_path(app.config.store)
            if not (path / "data.mdb").exists():
                # Reading commands never create a store: a mistyped path is not an empty store.
                raise InvalidArgumentError(
                    f"no store at {path}: check the app's store URL (store=... or PYNENC_STORE)"
                )
        if opts.command == "worker":
            from pynenc.runner.worker import Worker

            Worker(app, concurrency=opts.concurrency, grace_seconds=opts.grace).run()
        elif opts.command == "recover":
            resumed = app.recover()
            print(
                json.dumps(
                    [{"invocation_id": i.invocation_id, "status": i.status.value} for i in resumed]
                )
            )
        elif opts.command == "status":
            print(json.dumps(status(app), indent=2))
        else:
            print(json.dumps(show(app, opts.invocation_id), indent=2, default=str))
    except PynencError as exc:
        print(f"pynenc: {exc}", file=sys.stderr)
        return 1
    return 0


def verify(store: str | None, *, as_json: bool = False) -> int:
    """`pynenc verify`: 0 when the store is intact, 1 when anything is damaged or missing."""
    import os

    from pynenc.config import DEFAULT_STORE
    from pynenc.verify import verify_store

    url = store or os.environ.get("PYNENC_STORE") or DEFAULT_STORE
    try:
        path = store_path(url) if "://" in url else Path(url).expanduser()
        report = verify_store(path)
    except PynencError as exc:
        print(f"pynenc: {exc}", file=sys.stderr)
        return 1
    if as_json:
        findings = [vars(f) for f in report.findings]
        print(json.dumps({"store": str(path), "records": report.records, "damaged": findings}))
    else:
        for finding in report.findings:
            print(f"damaged: {finding}")
        verdict = f"{len(report.findings)} damaged" if report.findings else "no damage found"
        print(f"store {path}: {report.records} records checked, {verdict}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
