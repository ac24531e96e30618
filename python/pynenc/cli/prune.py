"""`pynenc prune --finished-before WHEN [--yes] [--batch N]`: delete old finished workflows.

A dry run unless `--yes`: it prints what it would delete (a table for people, `--json` for
machines) and writes nothing. It needs only the store (`--store URL`, `PYNENC_STORE`, or the
store of `--app`) and imports no code. What is pruned and why it is safe against a crash:
`pynenc.prune`.
"""

from __future__ import annotations

import argparse
from typing import Any

from pynenc import prune
from pynenc.cli import read, render
from pynenc.cli.command import Command
from pynenc.cli.target import Target

__all__ = ["COMMANDS", "outcome"]

#: Largest `--batch`.
MAX_BATCH = 10_000


def outcome(planned: prune.Plan, *, dry_run: bool, deleted: int) -> dict[str, Any]:
    """What `--json` prints (keys in docs/operations.md)."""
    workflows = [
        {
            "workflow_id": d.workflow_id,
            "workflow_type": d.root.workflow.workflow_type,
            "finished": read.iso(d.finished_at),
            "invocations": len(d.members),
            "journals": len(d.journals),
            "data_keys": len(d.data_keys),
            "child_workflow_ids": d.workflows[1:],
            "invocation_ids": [d.root.id_str, *(r.id_str for r in d.members[:-1])],
        }
        for d in planned.doomed
    ]
    return {
        "finished_before": read.iso(planned.cutoff),
        "dry_run": dry_run,
        "workflows": workflows,
        "totals": {
            key: sum(w[key] for w in workflows) if key != "workflows" else len(workflows)
            for key in ("workflows", "invocations", "journals", "data_keys")
        },
        "deleted": deleted,
        "kept": [
            {"workflow_id": k.workflow_id, "workflow_type": k.workflow_type, "reason": k.reason}
            for k in planned.kept
        ],
        "malformed_records": planned.malformed,
    }


def _batch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_BATCH:,}")
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--finished-before",
        required=True,
        metavar="WHEN",
        help="prune workflows that finished before WHEN: an ISO 8601 date or time (UTC unless "
        "it has an offset) or an age such as 12h, 30d, 8w (required; no default)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="delete them; without it, only print what would be deleted (default: a dry run)",
    )
    parser.add_argument(
        "--batch",
        type=_batch,
        default=prune.BATCH_WORKFLOWS,
        metavar="N",
        help=f"workflows deleted per commit, 1 to {MAX_BATCH:,} (default {prune.BATCH_WORKFLOWS})",
    )


def _run(target: Target, opts: argparse.Namespace) -> int:
    cutoff = read.parse_since(opts.finished_before, option="--finished-before")
    app = target.read_app()
    planned = prune.plan(app, cutoff)
    deleted = 0
    if opts.yes:
        with render.progress("pruning", enabled=not opts.json) as update:
            deleted = prune.prune(app, planned, batch=opts.batch, progress=update)
    shown = outcome(planned, dry_run=not opts.yes, deleted=deleted)
    if opts.json:
        render.print_json(shown)
    else:
        _render(shown)
    return 0


def _render(shown: dict[str, Any]) -> None:
    out = render.console()
    cutoff = render.time_text(shown["finished_before"])
    if shown["workflows"]:
        # Plain columns, written as they are: laying out a rich table (or even printing
        # line by line through rich) of many thousand rows takes seconds.
        wide = max(len("TYPE"), *(len(w["workflow_type"]) for w in shown["workflows"]))
        out.print(
            f"{'WORKFLOW':<36}  {'TYPE':<{wide}}  {'FINISHED (UTC)':<23}  INVOCATIONS  JOURNALS"
            "  DATA KEYS",
            markup=False,
            style="bold",
        )
        out.file.write(
            "".join(
                f"{w['workflow_id']:<36}  {w['workflow_type']:<{wide}}  "
                f"{render.time_text(w['finished']):<23}  {w['invocations']:>11}  "
                f"{w['journals']:>8}  {w['data_keys']:>9}\n"
                for w in shown["workflows"]
            )
        )
    for k in shown["kept"]:
        out.print(f"kept {k['workflow_id']} ({k['workflow_type']}): {k['reason']}", markup=False)
    if shown["malformed_records"]:
        out.print(
            f"{shown['malformed_records']} malformed record(s) skipped (logged on pynenc.store; "
            "never deleted)",
            markup=False,
        )
    t = shown["totals"]
    counts = (
        f"{t['workflows']} workflow(s) finished before {cutoff} UTC ({t['invocations']} "
        f"invocation(s), {t['journals']} journal(s), {t['data_keys']} data key(s))"
    )
    if not shown["workflows"]:
        out.print(f"no workflow finished before {cutoff} UTC: nothing to delete", markup=False)
    elif shown["dry_run"]:
        out.print(f"would delete {counts}; run again with --yes to delete them", markup=False)
    else:
        out.print(f"deleted {counts}", markup=False)


COMMANDS = [
    Command(
        "prune",
        "delete old finished workflows (a dry run unless --yes)",
        _arguments,
        _run,
        description="Delete the workflows that finished before --finished-before: the "
        "invocation records of a top-level workflow and of every child workflow below it, the "
        "journal of every attempt, and their workflow data. A workflow with any invocation "
        "unfinished, queued or leased (a child workflow still running included) is kept, and "
        "said so. Without --yes it only prints what it would delete. Deletes --batch "
        "workflows per commit, with a progress bar on standard error; a crash mid-way leaves "
        "each workflow whole or gone (run it again). Exit codes: 0 done (a dry run, or "
        "nothing to delete, included), 1 failed, 2 usage error.",
    ),
]
