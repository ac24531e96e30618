"""The journal entries of the waiting operations.

`wf.sleep` and `wf.sleep_until` are recorded as side effects (entry kind 4, codec bytes) under
names that start with `pynenc.`, which a task's own side effects cannot take: replay compares
them by position and name like any side effect, and journals and divergence reports show them
as the operations they are (`docs/journal-format.md`, section 4).

- `pynenc.sleep`: the deadline, microseconds since the epoch (an `int`).
"""

from __future__ import annotations

import datetime

__all__ = ["PREFIX", "SLEEP", "deadline_text", "operation_of"]

#: Side-effect names starting with this are the engine's own.
PREFIX = "pynenc."
SLEEP = "pynenc.sleep"


def operation_of(name: str) -> tuple[str, str | None] | None:
    """`(operation, its argument)` for one of the engine's own side-effect names
    (`("sleep", None)`), else None."""
    if name == SLEEP:
        return "sleep", None
    return None


def deadline_text(deadline_us: int | None) -> str:
    """A recorded deadline as ISO 8601 (UTC), or `no timeout`."""
    if deadline_us is None:
        return "no timeout"
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (epoch + datetime.timedelta(microseconds=deadline_us)).isoformat()
