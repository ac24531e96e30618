"""`pynenc signal WORKFLOW_ID NAME --json VALUE`: deliver a signal to a workflow. It needs only
the store (`--store URL`, `PYNENC_STORE`, or `--app`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pynenc.cli import render
from pynenc.cli.command import Command
from pynenc.cli.target import Target, UsageError

__all__ = ["COMMANDS"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow_id", metavar="WORKFLOW_ID", help="the workflow's id (its root invocation's id)"
    )
    parser.add_argument("name", metavar="NAME", help="the signal's name, as wf.wait_signal has it")
    parser.add_argument(
        "--json",
        dest="value",
        metavar="VALUE",
        default="null",
        help="the value to deliver, as JSON (default: null); give the global --json before "
        "the command to print JSON",
    )


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--json VALUE is not JSON ({exc}): {text!r:.200}") from None


def _signal(target: Target, opts: argparse.Namespace) -> int:
    value = _value(opts.value)
    target.read_app().signal(opts.workflow_id, opts.name, value)
    if opts.json:
        render.print_json({"workflow_id": opts.workflow_id, "signal": opts.name, "sent": True})
        return 0
    print(f"sent signal {opts.name!r} to workflow {opts.workflow_id}")
    return 0


COMMANDS = [
    Command(
        "signal",
        "deliver a signal (a JSON value) to a workflow, for its wf.wait_signal",
        _arguments,
        _signal,
        description="Deliver a signal to a workflow: committed to the store when the command "
        "returns, kept until the workflow's wf.wait_signal(NAME) takes it (each delivery "
        "once, in the order sent), and a workflow suspended in a worker is woken. Exits 1 "
        "when the workflow is unknown or has finished, 2 when VALUE is not JSON.",
    ),
]
