"""The read model of the command line: what `list`, `show`, `tree` and `status` report, as
plain JSON-ready values (the keys are documented in docs/operations.md). Nothing here imports
user code: arguments and results are decoded by the payload codec alone."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pynenc import codec
from pynenc._core import format_id, journal_id
from pynenc.app import Pynenc
from pynenc.errors import InvalidArgumentError, PynencError
from pynenc.invocation import InvocationRecord, InvocationStatus
from pynenc.journal import decode_ops
from pynenc.record_check import Skipped

__all__ = [
    "describe",
    "divergence",
    "journal",
    "jsonable",
    "list_page",
    "parse_since",
    "show",
    "status",
    "summary",
    "tree",
]

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def iso(seconds: float | None) -> str | None:
    """A time of the store (seconds since the epoch) as ISO 8601 in UTC, or None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def jsonable(value: Any) -> Any:
    """A decoded payload as JSON: datetimes as ISO 8601, bytes as hex, sets and tuples as
    lists, exceptions as `{"error": "TYPE: message"}`, anything else JSON cannot hold by its
    `repr`."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, BaseException):
        return {"error": f"{type(value).__qualname__}: {value}"}
    return repr(value)


def _started(record: InvocationRecord) -> float:
    return record.started_at if record.started_at is not None else record.created_at


def _ended(record: InvocationRecord) -> float | None:
    return record.updated_at if record.status.finished else None


def summary(record: InvocationRecord) -> dict[str, Any]:
    """One invocation as a row of `list` (and a node of `tree`, without its children)."""
    ended = _ended(record)
    return {
        "invocation_id": record.id_str,
        "task": record.task_id,
        "status": record.status.value,
        "workflow_id": record.workflow.workflow_id,
        "workflow_type": record.workflow.workflow_type,
        "parent_workflow_id": record.workflow.parent_workflow_id,
        "parent_invocation_id": (
            None if record.parent_invocation_id is None else format_id(record.parent_invocation_id)
        ),
        "created": iso(record.created_at),
        "started": iso(record.started_at),
        "ended": iso(ended),
        "duration_s": None if ended is None else round(ended - _started(record), 6),
        "attempt": record.attempt,
    }


def parse_since(text: str, now: float | None = None, option: str = "--since") -> float:
    """`--since` (or another `option` naming a time): an ISO 8601 date or time (UTC when it
    names no offset), or an age such as `30s`, `15m`, `2h`, `7d`, `1w`; as seconds since the
    epoch.

    Raises:
        InvalidArgumentError: It is neither.
    """
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        now = time.time() if now is None else now
        return now - float(match[1]) * _UNIT_SECONDS[match[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"{option} {text!r} is neither an ISO 8601 date or time (2026-05-01, "
            "2026-05-01T12:00:00+02:00) nor an age (30s, 15m, 2h, 7d, 1w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _matches_task(task_id: str, wanted: str) -> bool:
    return task_id == wanted or task_id.endswith("." + wanted)


def _newest_first(records: Iterable[InvocationRecord]) -> list[InvocationRecord]:
    return sorted(records, key=lambda r: (r.created_at, r.invocation_id), reverse=True)


def list_page(
    app: Pynenc,
    *,
    status: str | None = None,
    task: str | None = None,
    workflow_type: str | None = None,
    since: float | None = None,
    workflows_only: bool = False,
    limit: int = 50,
    before: str | None = None,
) -> dict[str, Any]:
    """One page of invocations, newest first, and the `--before` cursor of the next page."""
    cursor: tuple[float, bytes] | None = None
    if before is not None:
        record = _record(app, before)
        cursor = (record.created_at, record.invocation_id)
    wanted = None if status is None else InvocationStatus(status)
    found = []
    # Served by one walk over the invocation records (the store has no secondary index yet).
    for record in app._records(Skipped("list")):
        if wanted is not None and record.status is not wanted:
            continue
        if task is not None and not _matches_task(record.task_id, task):
            continue
        if workflow_type is not None and not _matches_task(
            record.workflow.workflow_type, workflow_type
        ):
            continue
        if since is not None and record.created_at < since:
            continue
        if workflows_only and record.id_str != record.workflow.workflow_id:
            continue
        if cursor is not None and (record.created_at, record.invocation_id) >= cursor:
            continue
        found.append(record)
    ordered = _newest_first(found)
    page = ordered[:limit]
    more = len(ordered) > limit
    return {
        "invocations": [summary(r) for r in page],
        "next_before": page[-1].id_str if more and page else None,
    }


def _record(app: Pynenc, invocation_id: str) -> InvocationRecord:
    inv = app.get_invocation(invocation_id)
    if inv is None:
        raise InvalidArgumentError(f"no invocation {invocation_id} in {app.config.store}")
    return inv._record


def _arguments(record: InvocationRecord) -> dict[str, Any]:
    try:
        args, kwargs = codec.decode(record.args, what=f"arguments of {record.id_str}")
    except PynencError as exc:
        return {"args": None, "kwargs": None, "error": str(exc)}
    return {"args": jsonable(args), "kwargs": jsonable(kwargs)}


def _result(record: InvocationRecord) -> Any:
    if record.result is None:
        return None
    try:
        return jsonable(codec.decode(record.result, what=f"result of {record.id_str}"))
    except PynencError as exc:
        return {"error": str(exc)}


def _attempts(record: InvocationRecord) -> list[dict[str, Any]]:
    """Every attempt: the failed earlier ones, then the latest."""
    out = [
        {
            "attempt": a["attempt"],
            "status": "failed",
            "started": iso(a.get("started")),
            "ended": iso(a.get("ended")),
            "owner": a.get("owner"),
            "error": a["error"],
        }
        for a in record.attempts
    ]
    latest_error = None
    if record.error is not None:
        latest_error = f"{record.error.type_name}: {record.error.message}"
    out.append(
        {
            "attempt": record.attempt,
            "status": record.status.value,
            "started": iso(record.started_at),
            "ended": iso(_ended(record)),
            "owner": record.owner,
            "error": latest_error,
        }
    )
    return out


def journal(
    app: Pynenc, record: InvocationRecord, attempt: int | None = None
) -> list[dict[str, Any]]:
    """The journal of one attempt (the latest by default), decoded entry by entry."""
    jid = journal_id(record.invocation_id, record.attempt if attempt is None else attempt)
    ops = app.store.journal_ops(jid)
    sites = app.store.journal_sites(jid)
    out = []
    for op, entry, site in zip(ops, decode_ops(ops), sites, strict=True):
        item: dict[str, Any] = {
            "position": entry.position,
            "operation": entry.operation,
            "name": entry.name,
            "value": jsonable(entry.value),
            "site": None if site is None else _site(*site),
        }
        if entry.operation == "set_data" and entry.name is not None:
            # The journal holds the value's digest; the value is read from the workflow data.
            item["value"] = jsonable(app.get_workflow_data(record.workflow.workflow_id, entry.name))
            item["digest"] = bytes(op[2]).hex()
        out.append(item)
    return out


def divergence(record: InvocationRecord) -> dict[str, Any] | None:
    """The last divergence a resumption of `record` met, as `show` prints it, or None."""
    d = record.divergence
    if d is None:
        return None
    return {
        "position": d.position,
        "attempt": d.attempt,
        "at": iso(d.at),
        "recorded": d.recorded,
        "requested": d.requested,
    }


def _site(file: str, line: int, function: str) -> dict[str, Any]:
    """A journal entry's call site as `show` prints it."""
    return {"file": file, "line": line, "function": function or None}


def show(app: Pynenc, invocation_id: str) -> dict[str, Any]:
    """An invocation: its record, arguments, attempts, lease, outcome, journal and children."""
    record = _record(app, invocation_id)
    children = app.list_invocations(parent_invocation_id=record.id_str)
    return describe(
        app,
        record,
        [
            {"invocation_id": c.invocation_id, "task": c.task_id, "status": c.status.value}
            for c in children
        ],
    )


def describe(
    app: Pynenc, record: InvocationRecord, children: list[dict[str, Any]]
) -> dict[str, Any]:
    """What `show` prints of `record`, with `children` (`{"invocation_id", "task", "status"}`
    each) as the children it dispatched."""
    lease = app.store.lease(record.invocation_id)
    error = None
    if record.error is not None:
        error = {
            "type": record.error.type_name,
            "module": record.error.module,
            "message": record.error.message,
            "traceback": record.error.traceback_text,
        }
    return {
        **summary(record),
        "updated": iso(record.updated_at),
        "owner": record.owner,
        "recoveries": record.recoveries,
        "arguments": _arguments(record),
        "attempts": _attempts(record),
        "lease": None
        if lease is None
        else {
            "owner": lease.owner.decode(errors="replace"),
            "expires": iso(lease.expires_ms / 1000) if lease.expires_ms else None,
            "token": lease.token,
        },
        "result": _result(record),
        "error": error,
        "divergence": divergence(record),
        "journal": journal(app, record),
        "children": children,
    }


def tree(app: Pynenc, workflow_id: str) -> dict[str, Any]:
    """The workflow started by `workflow_id` (any invocation id works) as nested nodes: each
    invocation with its children, child workflows included."""
    root = _record(app, workflow_id)
    children: dict[bytes, list[InvocationRecord]] = defaultdict(list)
    for record in app._records(Skipped("tree")):
        if record.parent_invocation_id is not None:
            children[record.parent_invocation_id].append(record)

    def node(record: InvocationRecord, parent_workflow: str | None) -> dict[str, Any]:
        kids = sorted(children.get(record.invocation_id, []), key=lambda r: r.created_at)
        return {
            **summary(record),
            "new_workflow": record.workflow.workflow_id != parent_workflow,
            "children": [node(kid, record.workflow.workflow_id) for kid in kids],
        }

    return node(root, None)


def status(app: Pynenc) -> dict[str, Any]:
    """Counts by status, the queue length, who runs what, and the malformed records met (each
    also logged on `pynenc.store`), by key and what is wrong."""
    skipped = Skipped("status")
    records = sorted(app._records(skipped), key=lambda record: record.created_at)
    leases = {
        format_id(lease.invocation): (lease.owner.decode(errors="replace"), lease.expires_ms)
        for lease in app.store.leases()
    }
    running = []
    for record in records:
        if record.status is InvocationStatus.RUNNING:
            owner, expires = leases.get(record.id_str, (record.owner, None))
            running.append(
                {
                    "invocation_id": record.id_str,
                    "task": record.task_id,
                    "workflow_id": record.workflow.workflow_id,
                    "owner": owner,
                    "lease_expires_ms": expires,
                }
            )
    return {
        "store": app.store.location(),
        "counts": dict(sorted(Counter(r.status.value for r in records).items())),
        "queued": len(app.store.queued()),
        "running": running,
        "damaged": [
            {"key": getattr(exc, "key", None), "problem": getattr(exc, "problem", str(exc))}
            for exc in skipped.errors
        ],
    }


def age(seconds: float) -> str:
    """A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 10 min`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else str(timedelta(seconds=int(seconds)))
