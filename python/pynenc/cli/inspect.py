"""The reading commands: `list`, `show`, `tree`, `status`. They need only a store (`--store`,
`PYNENC_STORE`, or the store of `--app`) and write nothing."""

from __future__ import annotations

import argparse
import sys

from pynenc.cli import read, render
from pynenc.cli.command import Command
from pynenc.cli.target import Target
from pynenc.errors import InvalidArgumentError
from pynenc.invocation import InvocationStatus

__all__ = ["COMMANDS"]

#: `pynenc list --limit` default and largest value.
DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000

_STATUSES = [s.value for s in InvocationStatus]


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_LIMIT:,}")
    return value


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--status", choices=_STATUSES, help="only invocations in this status (default: any)"
    )
    parser.add_argument(
        "--task",
        metavar="TASK",
        help="only invocations of this task: its full id or the id's last part (default: any)",
    )
    parser.add_argument(
        "--workflow-type",
        metavar="TYPE",
        help="only invocations in workflows of this type (the task id that started the "
        "workflow, or its last part; default: any)",
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="only invocations created at or after WHEN: an ISO 8601 date or time (UTC unless "
        "it has an offset) or an age such as 30s, 15m, 2h, 7d, 1w (default: no limit)",
    )
    parser.add_argument(
        "--workflows",
        action="store_true",
        help="only invocations that start a workflow (default: every invocation)",
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N rows, 1 to {MAX_LIMIT:,} (default {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--before",
        metavar="ID",
        help="the next page: only invocations listed after invocation ID (the previous page "
        "prints the command; default: from the newest)",
    )


def _list(target: Target, opts: argparse.Namespace) -> int:
    since = None if opts.since is None else read.parse_since(opts.since)
    page = read.list_page(
        target.read_app(),
        status=opts.status,
        task=opts.task,
        workflow_type=opts.workflow_type,
        since=since,
        workflows_only=opts.workflows,
        limit=opts.limit,
        before=opts.before,
    )
    if opts.json:
        render.print_json(page)
    else:
        render.render_list(page, _page_command(sys.argv[1:] if opts.argv is None else opts.argv))
    return 0


def _page_command(argv: list[str]) -> list[str]:
    """The command line that printed this page, without its `--before` (for the next one)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--before":
            skip = True
        elif not arg.startswith("--before="):
            out.append(arg)
    return out


def _show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("invocation_id", metavar="ID", help="the invocation's id (a UUID)")


def _show(target: Target, opts: argparse.Namespace) -> int:
    shown = read.show(target.read_app(), opts.invocation_id)
    if opts.json:
        render.print_json(shown)
    else:
        render.render_show(shown)
    return 0


def _tree_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow_id",
        metavar="WORKFLOW_ID",
        help="the workflow's id (the id of the invocation that started it; any invocation "
        "id draws the tree below that invocation)",
    )


def _tree(target: Target, opts: argparse.Namespace) -> int:
    app = target.read_app()
    try:
        root = read.tree(app, opts.workflow_id)
    except InvalidArgumentError:
        store = app.config.store
        raise InvalidArgumentError(f"no workflow {opts.workflow_id} in {store}") from None
    if opts.json:
        render.print_json(root)
    else:
        render.render_tree(root)
    return 0


def _status(target: Target, opts: argparse.Namespace) -> int:
    state = read.status(target.read_app())
    if opts.json:
        render.print_json(state)
    else:
        render.render_status(state)
    return 0


def _none(parser: argparse.ArgumentParser) -> None:
    return None


COMMANDS = [
    Command(
        "list",
        "invocations, newest first, a page at a time",
        _list_arguments,
        _list,
        description="List the store's invocations, newest first: id, task, status, workflow, "
        "creation time and duration. Every filter given must match. A page holds --limit "
        "rows; the line under the table gives the command of the next page.",
    ),
    Command(
        "show",
        "one invocation: arguments, attempts, lease, outcome, journal, children",
        _show_arguments,
        _show,
        description="Show one invocation: its task, decoded arguments, status, every attempt "
        "with its start and end times and owner, its lease, its result or error with the "
        "traceback, its journal entry by entry, and the children it dispatched.",
    ),
    Command(
        "tree",
        "a workflow, its tasks and child workflows, as a tree",
        _tree_arguments,
        _tree,
        description="Draw a workflow as a tree: each invocation under the one that dispatched "
        "it, child workflows marked, with status and duration per node.",
    ),
    Command(
        "status",
        "counts by status, the queue, who runs what, damaged records",
        _none,
        _status,
        description="Count the store's invocations by status; give the queue length, each "
        "running invocation with its owner and lease expiry, and the malformed records "
        "skipped (each also logged on pynenc.store).",
    ),
]
