"""How a divergence is worded: what the journal recorded and what the code asks for now, side
by side (operation, call site, function, value), with the ids, the position, how many entries
matched before it, and what to do about it."""

from __future__ import annotations

from typing import Any

from pynenc.errors import NonDeterminismError, Operation
from pynenc.workflow import reserved

__all__ = ["SHOWN_CHARS", "cut", "divergence", "operation"]

#: Longest text shown for one value or one call's arguments.
SHOWN_CHARS = 200

#: Longest text of one cell of the side-by-side table.
CELL_CHARS = 60


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, ending in `...` when longer than `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def operation(side: dict[str, Any] | Operation) -> Operation:
    """One side of a divergence as the core reports it (a dict), as an `Operation`."""
    if isinstance(side, Operation):
        return side
    value = side.get("value")
    data = side.get("data")
    kind, name, call = side["kind"], side.get("name"), side["description"]
    waiting = None if kind != "side_effect" or name is None else reserved.operation_of(name)
    if waiting is not None:
        # One of the engine's own entries (`wf.sleep`, `wf.wait_signal`, `wf.set_event`).
        kind, name = waiting
        call = f"{kind}()" if name is None else f"{kind}({_quoted(name)})"
        value = None if data is None else _waiting_value(kind, bytes(data))
    elif data is not None:
        value = _decoded(value, bytes(data))
    return Operation(
        kind=kind,
        name=name,
        value=None if value is None else cut(value),
        file=side.get("file"),
        line=side.get("line"),
        function=side.get("function"),
        call=call,
    )


def _quoted(text: str) -> str:
    """`text` in double quotes, as the core writes names (`side_effect("charge")`)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _waiting_value(kind: str, data: bytes) -> str:
    """The recorded value of a waiting operation as shown: a deadline, or what was received."""
    from pynenc import codec

    try:
        value = codec.decode(data)
        if kind in ("sleep", "wait_signal", "wait_signal_async"):
            return f"until {reserved.deadline_text(value)}"
        if kind == "signal":
            return "timed out" if value is None else repr(codec.decode(bytes(value[1])))
        return repr(value)
    except Exception:  # noqa: BLE001 - a value this build cannot read is still reported
        return f"{len(data)} bytes this build cannot decode"


def _decoded(marker: str | None, data: bytes) -> str:
    """A recorded value (codec bytes) as shown: its repr, or what a side effect raised."""
    from pynenc import codec

    try:
        value = codec.decode(data)
    except Exception:  # noqa: BLE001 - a value this build cannot read is still reported
        return f"{len(data)} bytes this build cannot decode"
    if marker == "raised" and isinstance(value, dict):
        return f"raised {value.get('type')}: {value.get('message')}"
    return repr(value)


def divergence(
    cls: type[NonDeterminismError],
    workflow_id: str,
    invocation_id: str,
    position: int,
    recorded: dict[str, Any] | Operation,
    requested: dict[str, Any] | Operation,
) -> NonDeterminismError:
    """The `NonDeterminismError` for a divergence at `position`, worded and with its data."""
    rec, req = operation(recorded), operation(requested)
    matched = position
    entries = "entry" if matched == 1 else "entries"
    lines = [
        f"non-deterministic replay in workflow {workflow_id}, invocation {invocation_id}, "
        f"position {position} ({matched} {entries} matched before it): the journal recorded "
        f"{rec.call} but the code now asks for {req.call}.",
        "",
        *_table(rec, req),
        "",
        "Restore the code that recorded this workflow; or guard the change with "
        '`if wf.patched("change-id"):` so runs recorded before it keep the old code; or '
        f'abandon the workflow with app.cancel("{workflow_id}", reason).',
    ]
    exc = cls("\n".join(lines))
    exc.workflow_id = workflow_id
    exc.invocation_id = invocation_id
    exc.position = position
    exc.matched = matched
    exc.recorded = rec
    exc.requested = req
    return exc


def _table(rec: Operation, req: Operation) -> list[str]:
    """The two operations in two columns, one row per field."""

    def site(op: Operation) -> str:
        if op.file is None:
            return "(not recorded)"
        where = f"{op.file}:{op.line}"  # a long path keeps its end: the file name and line
        return where if len(where) <= CELL_CHARS else "..." + where[3 - CELL_CHARS :]

    rows = [
        ("", "journal recorded", "code now asks for"),
        ("operation", rec.call, req.call),
        ("at", site(rec), site(req)),
        ("function", rec.function or "-", req.function or "-"),
        ("value", rec.value or "-", req.value or "-"),
    ]
    cells = [(label, cut(a, CELL_CHARS), cut(b, CELL_CHARS)) for label, a, b in rows]
    width = max(len(a) for _, a, _ in cells)
    return [f"  {label:<10} {a:<{width}}  {b}".rstrip() for label, a, b in cells]
