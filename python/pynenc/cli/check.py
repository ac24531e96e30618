"""`pynenc check`: the deploy gate. Replays the journals of the store's workflows against the
code of `--app` as it is now, in parallel processes, writing nothing, and reports every run
that would diverge, where, and why (the side-by-side `NonDeterminismError` report).

Which workflows (`--workflows`): `running`, those whose root invocation has not finished
(pending or running: what a recovery or a worker would resume); `recent`, those created at
or after `--since` (default: the last 24 hours), finished or not; `all`, every one.
`--since` limits `running` and `all` too. Cancelled workflows are never resumed, so never
checked. Every invocation of a selected workflow is replayed against its own journal: a
finished one must match it exactly (as `app.replay`); an unfinished one as far as its journal
goes (`pynenc.runner.replay`). Exit codes: 0 none diverges, 1 one diverges or cannot be
replayed, 2 a usage error or the gate could not run (no store, an `--app` that cannot be
imported).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from pynenc import journal_file
from pynenc._core import format_id
from pynenc.app import Pynenc
from pynenc.cli import read, render
from pynenc.cli.command import Command
from pynenc.cli.target import Target, UsageError
from pynenc.errors import CorruptEntryError, InvalidArgumentError
from pynenc.invocation import InvocationRecord, InvocationStatus, describe_exception
from pynenc.record_check import Skipped
from pynenc.runner.replay import DIVERGED, ERROR, replay_record

__all__ = ["COMMANDS", "DEFAULT_JOBS", "Workflow", "select"]

SELECTIONS = ("running", "recent", "all")
#: `--workflows recent` without `--since`: the last day.
RECENT_SECONDS = 24 * 3600
#: `--jobs` default and largest value.
DEFAULT_JOBS = min(4, os.cpu_count() or 1)
MAX_JOBS = 256
#: Most invocations one process replays per batch it is handed.
BATCH = 32
#: About what starting the checking processes costs (a Python, pynenc and the app imported in
#: each): without `--jobs`, work that takes less in this process is not shared out.
SPAWN_SECONDS = 1.0


@dataclass
class Workflow:
    """A workflow to check: its root's record and every invocation of it."""

    root: InvocationRecord
    invocations: list[InvocationRecord]


def select(app: Pynenc, which: str, since: float | None) -> list[Workflow]:
    """The workflows `--workflows which --since since` names, oldest first (one walk over the
    store's records); their cancelled invocations are left out."""
    groups: dict[str, list[InvocationRecord]] = {}
    for record in app._records(Skipped("check")):
        groups.setdefault(record.workflow.workflow_id, []).append(record)
    if which == "recent" and since is None:
        since = time.time() - RECENT_SECONDS
    chosen = []
    for workflow_id, records in groups.items():
        records.sort(key=lambda r: (r.created_at, r.invocation_id))
        root = next((r for r in records if r.id_str == workflow_id), records[0])
        if root.status is InvocationStatus.CANCELLED or root.cancel is not None:
            continue
        if which == "running" and root.status.finished:
            continue
        if since is not None and root.created_at < since:
            continue
        kept = [r for r in records if r.status is not InvocationStatus.CANCELLED]
        chosen.append(Workflow(root, kept))
    chosen.sort(key=lambda w: (w.root.created_at, w.root.invocation_id))
    return chosen


# -- the replaying processes -------------------------------------------------------------

_WORKER_APP: list[Pynenc] = []


def _start_worker(app_spec: str, include: list[str], store_url: str | None) -> None:
    """A check process opens the app itself (spawned: nothing is inherited)."""
    _WORKER_APP.append(Target("check", app_spec, store_url, include).code_app())


def _replay_batch(ids: list[bytes]) -> list[dict[str, Any]]:
    return _replay_ids(_WORKER_APP[0], ids)


def _replay_ids(app: Pynenc, ids: list[bytes]) -> list[dict[str, Any]]:
    """Replay each invocation as stored now; JSON-ready outcomes, in order."""
    out = []
    for invocation_id in ids:
        try:
            record = app._load_record(invocation_id)
        except CorruptEntryError as exc:
            error = describe_exception(exc)
            out.append(
                {"invocation_id": format_id(invocation_id), "verdict": ERROR, "error": error}
            )
            continue
        if record is None:  # pruned since it was selected
            continue
        out.append(replay_record(app, record).to_json())
    return out


def _replay_all(
    target: Target,
    app: Pynenc,
    ids: list[bytes],
    jobs: int | None,
    progress: Callable[[int, int], None],
) -> tuple[list[dict[str, Any]], int]:
    """Every outcome, in the order of `ids`, and how many processes replayed them.

    With `jobs` given, that many processes replay (1: this one). Without, this process
    replays a first batch and times it; the rest go to `DEFAULT_JOBS` processes only when
    replaying them here would take longer than starting processes does (`SPAWN_SECONDS`)."""
    total = len(ids)
    progress(0, total)
    outcomes: list[dict[str, Any]] = []
    done = 0
    if jobs is None or jobs == 1:
        started = time.monotonic()
        outcomes = _replay_ids(app, ids[:BATCH])
        done = min(BATCH, total)
        progress(done, total)
        each = (time.monotonic() - started) / max(1, done)
        if (jobs or DEFAULT_JOBS) == 1 or each * (total - done) < SPAWN_SECONDS:
            for start in range(done, total, BATCH):
                outcomes += _replay_ids(app, ids[start : start + BATCH])
                progress(min(start + BATCH, total), total)
            return outcomes, 1
    workers = DEFAULT_JOBS if jobs is None else jobs
    rest = ids[done:]
    size = max(1, min(BATCH, math.ceil(len(rest) / (workers * 4))))
    batches = [rest[i : i + size] for i in range(0, len(rest), size)]
    if not batches:
        return outcomes, 1
    assert target.app_spec is not None
    workers = min(workers, len(batches))
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(target.app_spec, target.include, target.store_url),
        ) as pool:
            futures = {pool.submit(_replay_batch, batch): len(batch) for batch in batches}
            for future in as_completed(futures):
                outcomes += future.result()
                done += futures[future]
                progress(done, total)
    except BrokenProcessPool as exc:
        raise UsageError(f"a checking process died before it finished: {exc}") from None
    order = {i: n for n, i in enumerate(ids)}
    outcomes.sort(key=lambda o: order.get(_raw_id(o["invocation_id"]), -1))
    return outcomes, workers


def _raw_id(invocation_id: str) -> bytes:
    return uuid.UUID(invocation_id).bytes


# -- the command -------------------------------------------------------------------------


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_JOBS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_JOBS}")
    return value


def _since(text: str) -> float:
    try:
        return read.parse_since(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workflows",
        choices=SELECTIONS,
        default="running",
        help="which workflows: running (not finished: what a recovery or a worker would "
        "resume), recent (created since --since, finished or not) or all (default running)",
    )
    parser.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only workflows created at or after WHEN: an ISO 8601 date or time (UTC unless it "
        "has an offset) or an age such as 30m, 2h, 7d (default: no limit; 24h with recent)",
    )
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help=f"processes replaying at once, 1 to {MAX_JOBS}, 1 being this one (default "
        f"{DEFAULT_JOBS}, the smaller of 4 and the number of CPUs, started only when the "
        "replay would take more than about a second in this process)",
    )


def _open(target: Target) -> Pynenc:
    """The app whose code is checked, on its store: a failure to get there is exit 2."""
    try:
        return target.code_app()
    except SystemExit as exc:  # `--app` names nothing importable
        raise UsageError(str(exc.code)) from None
    except InvalidArgumentError as exc:  # no store at the path, a bad --store URL
        raise UsageError(str(exc)) from None


def _check(target: Target, opts: argparse.Namespace) -> int:
    app = _open(target)
    since: float | None = opts.since
    if opts.workflows == "recent" and since is None:
        since = time.time() - RECENT_SECONDS
    workflows = select(app, opts.workflows, since)
    ids = [r.invocation_id for w in workflows for r in w.invocations]
    with render.progress("checking", enabled=not opts.json) as update:
        outcomes, processes = _replay_all(target, app, ids, opts.jobs, update)
    report = _report(app, target, opts.workflows, since, workflows, outcomes)
    report["summary"]["processes"] = processes
    if opts.json:
        render.print_json(report)
    else:
        _print(report)
    summary = report["summary"]
    return 1 if summary["diverged"] or summary["errors"] else 0


def _report(
    app: Pynenc,
    target: Target,
    which: str,
    since: float | None,
    workflows: list[Workflow],
    outcomes: list[dict[str, Any]],
) -> dict[str, Any]:
    roots = {w.root.workflow.workflow_id: w.root for w in workflows}
    # An invocation whose record cannot be read any more is placed by the selection.
    owner = {r.id_str: w.root.workflow.workflow_id for w in workflows for r in w.invocations}
    diverged: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for outcome in outcomes:
        workflow_id = outcome.get("workflow_id") or owner.get(outcome["invocation_id"])
        root = roots.get(workflow_id or "")
        where = {
            "workflow_id": workflow_id,
            "workflow_type": None if root is None else root.workflow.workflow_type,
            "workflow_status": None if root is None else root.status.value,
            "invocation_id": outcome["invocation_id"],
            "task": outcome.get("task"),
            "status": outcome.get("status"),
            "prefix": outcome.get("prefix"),
            "entries": outcome.get("entries"),
        }
        if outcome["verdict"] == DIVERGED:
            diverged.append({**where, **outcome["divergence"]})
        elif outcome["verdict"] == ERROR:
            errors.append({**where, "error": outcome["error"]})
    bad = {d["workflow_id"] for d in diverged}
    failed = {e["workflow_id"] for e in errors} - bad
    return {
        "selection": {
            "workflows": which,
            "since": read.iso(since),
            "app": target.app_spec,
            "store": journal_file.public_url(app.config.store),
        },
        "summary": {
            "workflows": len(workflows),
            "invocations": len(outcomes),
            "matched": len(workflows) - len(bad) - len(failed),
            "diverged": len(bad),
            "errors": len(failed),
        },
        "diverged": diverged,
        "errors": errors,
    }


def _print(report: dict[str, Any]) -> None:
    out = render.console()
    for item in report["diverged"]:
        out.print(
            f"diverged: workflow {item['workflow_id']} ({item['workflow_type']}, "
            f"{item['workflow_status']}) at invocation {item['invocation_id']} "
            f"({item['task']}){_prefix(item)}",
            markup=False,
        )
        for line in item["report"].splitlines():
            out.print(f"  {line}".rstrip(), markup=False, overflow="ignore", crop=False)
        out.print()
    for item in report["errors"]:
        out.print(
            f"cannot check: workflow {item['workflow_id']} at invocation "
            f"{item['invocation_id']} ({item['task']}): {item['error']}",
            markup=False,
        )
    selection, summary = report["selection"], report["summary"]
    scope = _count(summary["workflows"], "workflow")
    if selection["workflows"] == "running":
        scope = scope.replace(" workflow", " running workflow")
    if selection["since"] is not None:
        scope += f" created since {selection['since']}"
    out.print(
        f"checked {scope} ({_count(summary['invocations'], 'invocation')}) against "
        f"{selection['app']}: {summary['matched']} matched, {summary['diverged']} diverged, "
        f"{summary['errors']} {'error' if summary['errors'] == 1 else 'errors'}",
        markup=False,
    )


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _prefix(item: dict[str, Any]) -> str:
    if not item.get("prefix"):
        return ""
    return f", its recorded prefix of {item['entries']} entries"


COMMANDS = [
    Command(
        "check",
        "the deploy gate: replay stored runs against the code now; exit 1 if any diverges",
        _arguments,
        _check,
        description="Replay the journals of the store's workflows against the code of --app "
        "as it is now, in parallel processes, writing nothing to the store. Prints every run "
        "that would diverge with the side-by-side report (what the journal recorded and what "
        "the code asks for now, with both source lines), every run that cannot be replayed, "
        "and a summary line; a progress bar on standard error while more than one invocation "
        "is replayed. A finished run must match its journal exactly; an unfinished one as far "
        "as its journal goes. --store names another store for the app's code. Exit codes: 0 "
        "none diverges, 1 one diverges or cannot be replayed, 2 a usage error or the check "
        "could not run.",
        app_on_store=True,
    ),
]
