"""Reading what an invocation recorded: its journal, operation by operation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pynenc import codec
from pynenc.invocation import ErrorInfo
from pynenc.workflow import reserved

__all__ = ["JournalEntry", "decode_ops"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One recorded operation.

    Attributes:
        position: Its position in the invocation's journal (replay is by position).
        operation: `random`, `uuid`, `utc_now`, `side_effect`, `execute_task`, `get_data`,
            `set_data`, `patch` (a `wf.patched` marker), `sleep` (`wf.sleep` and
            `wf.sleep_until`), `wait_signal` (the start of a `wf.wait_signal`), `signal`
            (what it received) or `set_event`.
        value: The recorded value: the float, UUID string, datetime, side-effect value (or the
            exception the side effect raised), child invocation id, or data value read; None
            for a data write; a sleep's or a wait's deadline (a datetime; None for a wait
            without timeout); the signal's value received (a `TimeoutError` when the wait
            timed out); the event's value.
        name: The side-effect name, data key, child task id, signal name or event key; None
            otherwise.
    """

    position: int
    operation: str
    value: Any
    name: str | None = None


def decode_ops(ops: list[tuple[Any, ...]]) -> list[JournalEntry]:
    """Turn the raw `(operation, *values)` tuples of `Store.journal_ops` into entries."""
    out = []
    deadlines: dict[str | None, int | None] = {}  # the deadline of each signal's last wait
    for position, op in enumerate(ops):
        kind = op[0]
        if kind in ("random", "uuid"):
            entry = JournalEntry(position, kind, op[1])
        elif kind == "utc_now":
            entry = JournalEntry(position, kind, _EPOCH + timedelta(microseconds=op[1]))
        elif kind == "side_effect" and op[3]:
            error = ErrorInfo.from_wire(codec.decode(op[2])).to_exception(f"side effect {op[1]!r}")
            entry = JournalEntry(position, kind, error, op[1])
        elif kind == "side_effect" and reserved.operation_of(op[1]) is not None:
            entry = _waiting_entry(position, op[1], op[2], deadlines)
        elif kind == "side_effect":
            entry = JournalEntry(position, kind, codec.decode(op[2]), op[1])
        elif kind == "execute_task":
            entry = JournalEntry(position, kind, str(uuid.UUID(bytes=op[2])), op[1])
        elif kind == "get_data":
            value = None if op[2] is None else codec.decode(op[2])
            entry = JournalEntry(position, kind, value, op[1])
        else:
            entry = JournalEntry(position, kind, None, op[1])
        out.append(entry)
    return out


def _waiting_entry(
    position: int, name: str, data: bytes, deadlines: dict[str | None, int | None]
) -> JournalEntry:
    """The entry of a waiting operation, recorded as a side effect of a reserved name."""
    found = reserved.operation_of(name)
    assert found is not None
    operation, argument = found
    value = codec.decode(data)
    if operation in ("wait_signal", "wait_signal_async"):
        deadlines[argument] = value
    if operation in ("sleep", "wait_signal", "wait_signal_async"):
        value = None if value is None else _EPOCH + timedelta(microseconds=value)
    elif operation == "signal":
        if value is None:
            deadline = reserved.deadline_text(deadlines.get(argument))
            value = TimeoutError(f"no signal {argument!r} arrived by {deadline}")
        else:
            value = codec.decode(bytes(value[1]))
    return JournalEntry(position, operation, value, argument)
