"""`pynenc export WORKFLOW_ID [--journal FILE] [--json [FILE]]`: one workflow, written out.

Two outputs of the same read: `--journal FILE` is the workflow's history as a journal file
(`pynenc.journal_file`), which `pynenc.testing.replay` replays in a test; `--json` is its
audit trail for people and tools: every invocation as `pynenc show` describes it (identity,
arguments, attempts, result or error, the journal decoded entry by entry), earlier attempts'
journals, every data write and the workflow data. Both need only the store and import no
user code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pynenc import codec, journal_file
from pynenc.app import Pynenc
from pynenc.cli import read
from pynenc.cli.command import Command
from pynenc.cli.target import Target
from pynenc.errors import InvalidArgumentError, PynencError

__all__ = ["AUDIT_FORMAT", "AUDIT_VERSION", "COMMANDS", "audit"]

#: The audit document's `format` and `version` (bumped when a key changes meaning).
AUDIT_FORMAT = "pynenc-replay audit trail"
AUDIT_VERSION = 1

#: `--json` given without a FILE: standard output.
STDOUT = "-"


def audit(app: Pynenc, workflow_id: str) -> dict[str, Any]:
    """The audit trail of workflow `workflow_id` (any invocation id: the part below it), child
    workflows included, as JSON-ready values (keys in docs/operations.md)."""
    records = journal_file.family(app, workflow_id)
    children: dict[str, list[dict[str, Any]]] = {r.id_str: [] for r in records}
    for record in records[1:]:
        parent = read.summary(record)["parent_invocation_id"]
        children[parent].append(
            {"invocation_id": record.id_str, "task": record.task_id, "status": record.status.value}
        )
    invocations = []
    writes = []
    for record in records:
        shown = read.describe(app, record, children[record.id_str])
        for attempt in shown["attempts"][:-1]:  # the latest attempt's journal is `journal`
            attempt["journal"] = read.journal(app, record, attempt["attempt"])
        for attempt in shown["attempts"]:
            entries = attempt.get("journal", shown["journal"])
            writes += [
                {
                    "workflow_id": record.workflow.workflow_id,
                    "invocation_id": record.id_str,
                    "attempt": attempt["attempt"],
                    "position": entry["position"],
                    "key": entry["name"],
                    "digest": entry.get("digest"),
                    "site": entry["site"],
                }
                for entry in entries
                if entry["operation"] == "set_data"
            ]
        invocations.append(shown)
    root = records[0]
    data = [
        {"workflow_id": workflow, "key": key, "value": _decoded(value, f"workflow data {key!r}")}
        for workflow in dict.fromkeys(r.workflow.workflow_id for r in records)
        for key, value in journal_file.data_of(app, workflow)
    ]
    return {
        "format": AUDIT_FORMAT,
        "version": AUDIT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "store": journal_file.public_url(app.config.store),
        "workflow_id": root.workflow.workflow_id,
        "workflow_type": root.workflow.workflow_type,
        "parent_workflow_id": root.workflow.parent_workflow_id,
        "root_invocation_id": root.id_str,
        "invocations": invocations,
        "data_writes": writes,
        "data": data,
    }


def _decoded(data: bytes, what: str) -> Any:
    try:
        return read.jsonable(codec.decode(data, what=what))
    except PynencError as exc:
        return {"error": str(exc)}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "workflow_id",
        metavar="WORKFLOW_ID",
        help="the workflow's id (its root invocation's id; any invocation id exports the part "
        "below that invocation)",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        metavar="FILE",
        help="write the workflow's history (records, every journal, its data) to FILE, for "
        "pynenc.testing.replay; gzip-compressed when FILE ends in .gz (default: none)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const=STDOUT,
        default=None,
        dest="json_file",
        metavar="FILE",
        help="write the audit trail as JSON to FILE, or to standard output without FILE "
        "(default: to standard output when --journal is not given)",
    )


def _check_parent(path: Path, option: str) -> None:
    if not path.parent.is_dir():
        raise InvalidArgumentError(
            f"{option} {path}: no directory {path.parent}; create it or name another file"
        )


def _export(target: Target, opts: argparse.Namespace) -> int:
    json_file: str | None = opts.json_file
    if json_file is None and (opts.json or opts.journal is None):
        json_file = STDOUT  # `pynenc --json export ID`, or no output named
    if opts.journal is not None:
        _check_parent(opts.journal, "--journal")
    if json_file not in (None, STDOUT):
        _check_parent(Path(json_file), "--json")
    app = target.read_app()
    # Both documents are built before either file is written: a failure writes nothing.
    history = None if opts.journal is None else journal_file.export(app, opts.workflow_id)
    trail = None if json_file is None else audit(app, opts.workflow_id)
    said = sys.stderr if json_file == STDOUT else sys.stdout
    if history is not None:
        journal_file.write(history, opts.journal)
        print(
            f"wrote {len(history['invocations'])} invocation(s) of workflow "
            f"{history['workflow_id']} to {opts.journal}",
            file=said,
        )
    if trail is not None and json_file == STDOUT:
        print(json.dumps(trail, indent=2, ensure_ascii=False))
    elif trail is not None:
        assert json_file is not None
        journal_file.write(trail, json_file)
        print(f"wrote the audit trail of workflow {trail['workflow_id']} to {json_file}")
    return 0


COMMANDS = [
    Command(
        "export",
        "one workflow written out: --journal for a replay test, --json for an audit trail",
        _arguments,
        _export,
        description="Write one workflow and the child workflows below it. --journal FILE "
        "writes its history (every invocation's record, the journal of every attempt, its "
        "data) as a versioned journal file that pynenc.testing.replay(FILE, app) replays in "
        "your tests. --json [FILE] writes its audit trail: every invocation as pynenc show "
        "describes it, with every journal decoded entry by entry, every data write, the "
        "workflow data, results and attempts (to standard output without FILE, and when "
        "neither option is given). Reads only the store; imports no code.",
        own_json=True,
    ),
]
