"""The `pynenc` command: `pynenc --app MODULE:ATTR {worker,recover,status,show}`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections import Counter
from typing import Any

from pynenc._core import format_id
from pynenc.app import Pynenc
from pynenc.errors import InvalidArgumentError, PynencError
from pynenc.invocation import Invocation, InvocationStatus
from pynenc.record_check import Skipped
from pynenc.registry import check_modules
from pynenc.store import store_path

__all__ = ["load_app", "main", "show", "status"]


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
    app._registry.app_module = module_name
    return app


def status(app: Pynenc) -> dict[str, Any]:
    """Counts by status, the queue length, who runs what, and the malformed records met (each
    also logged on `pynenc.store`), by key and what is wrong."""
    skipped = Skipped("status")
    records = sorted(app._records(skipped), key=lambda record: record.created_at)
    invocations: list[Invocation[Any]] = [Invocation(app, record) for record in records]
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
        "damaged": [
            {"key": getattr(exc, "key", None), "problem": getattr(exc, "problem", str(exc))}
            for exc in skipped.errors
        ],
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
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["lint"]:
        # `pynenc lint PATH...` reads source files only: no app, no store, no user import.
        from pynenc.lint.command import main as lint_main

        return lint_main(args[1:])
    if args[:1] == ["cancel"]:  # needs only the store: `pynenc cancel ID --reason TEXT`
        from pynenc.cancel import main as cancel_main

        return cancel_main(args[1:])
    parser = argparse.ArgumentParser(prog="pynenc", description="pynenc-replay workers and tools")
    parser.add_argument("--app", required=True, help="the app to use, as MODULE:ATTR")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module that defines tasks of the app, imported at start (repeatable)",
    )
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
    opts = parser.parse_args(argv)
    logging.basicConfig(
        level=opts.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        app = load_app(opts.app)
        # The app's own `include` modules too: one that cannot be imported fails here, once.
        app._registry.import_included(check_modules("--include", opts.include))
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


if __name__ == "__main__":
    raise SystemExit(main())
