"""`pynenc cancel ID --reason TEXT`: abandon a workflow and its unfinished children. It needs
only the store (`--store URL`, `PYNENC_STORE`, or `--app`)."""

from __future__ import annotations

import argparse

from pynenc.cancel import cancel
from pynenc.cli import render
from pynenc.cli.command import Command
from pynenc.cli.target import Target

__all__ = ["COMMANDS"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow_id", metavar="WORKFLOW_ID", help="the workflow's id (its root invocation's id)"
    )
    parser.add_argument(
        "--reason", required=True, help="why, stored with the cancel (required; no default)"
    )


def _cancel(target: Target, opts: argparse.Namespace) -> int:
    cancelled = cancel(target.read_app(), opts.workflow_id, opts.reason)
    if opts.json:
        render.print_json({"workflow_id": opts.workflow_id, "cancelled": cancelled})
        return 0
    print(f"cancelled workflow {opts.workflow_id}: {len(cancelled)} unfinished invocation(s)")
    for invocation_id in cancelled:
        print(f"  {invocation_id}")
    return 0


COMMANDS = [
    Command(
        "cancel",
        "abandon a workflow and its unfinished children: they are never resumed",
        _arguments,
        _cancel,
        description="Cancel a workflow: it and its unfinished children (child workflows "
        "included) are marked cancelled with the reason and the time, never resumed by "
        "recovery or workers, and their .result raises WorkflowCancelledError. Exits 1 when "
        "there is nothing to cancel (an unknown or finished workflow).",
    ),
]
