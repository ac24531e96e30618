"""The `pynenc` command: `pynenc --app MODULE:ATTR worker [--concurrency N]`."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from pynenc.app import Pynenc
from pynenc.errors import PynencError

__all__ = ["load_app", "main"]


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
    app = getattr(module, attr, None)
    if not isinstance(app, Pynenc):
        raise SystemExit(f"{spec} is not a Pynenc app (found {type(app).__name__})")
    app._main_module = module_name
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pynenc", description="pynenc-replay workers and tools")
    parser.add_argument("--app", required=True, help="the app to use, as MODULE:ATTR")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
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
    opts = parser.parse_args(argv)
    logging.basicConfig(
        level=opts.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = load_app(opts.app)
    try:
        if opts.command == "worker":
            from pynenc.runner.worker import Worker

            Worker(app, concurrency=opts.concurrency, grace_seconds=opts.grace).run()
        else:
            resumed = app.recover()
            print(
                json.dumps(
                    [{"invocation_id": i.invocation_id, "status": i.status.value} for i in resumed]
                )
            )
    except PynencError as exc:
        print(f"pynenc: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
