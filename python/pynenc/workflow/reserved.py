"""The journal entries of the waiting operations and where their data lives.

`wf.sleep`, `wf.wait_signal` and `wf.set_event` are recorded as side effects (entry kind 4)
under names that start with `pynenc.`, which a task's own side effects cannot take: replay
compares them by position and name like any side effect, and journals and divergence reports
show them as the operations they are (`docs/journal-format.md`, section 4).

- `pynenc.sleep`: the deadline, microseconds since the epoch (an `int`);
- `pynenc.wait_signal/NAME`: the wait's deadline in microseconds, or None without a timeout;
- `pynenc.wait_signal_async/NAME`: the same, for `wf.wait_signal_async`, whose outcome is not
  a journal entry (it would land wherever the delivery happened to come) but a row of its own,
  keyed by the wait's position (below);
- `pynenc.signal/NAME`: the delivery consumed, `[its 16-byte key suffix, its value's codec
  bytes]`, or None when the wait timed out;
- `pynenc.set_event/KEY`: the value published.

Signals and events live in the `data` table under the workflow's id, after a `0xFF` byte that no
workflow data key (valid UTF-8) can hold: a signal under `0xFF 's' ‖ name length (u16 BE) ‖
name ‖ sequence number (u64 BE) ‖ 8 random bytes`, an event under `0xFF 'e' ‖ key`, and the
outcome of a `wf.wait_signal_async` under `0xFF 'w' ‖ invocation id (16 bytes) ‖ attempt
(u32 BE) ‖ position of its `wait_signal_async` entry (u64 BE)`, holding what a `signal` entry
holds.
"""

from __future__ import annotations

import datetime
import struct

__all__ = [
    "PREFIX",
    "SET_EVENT",
    "SIGNAL",
    "SLEEP",
    "WAIT_SIGNAL",
    "WAIT_SIGNAL_ASYNC",
    "deadline_text",
    "event_key",
    "operation_of",
    "signal_outcome_key",
    "signal_prefix",
]

#: Side-effect names starting with this are the engine's own.
PREFIX = "pynenc."
SLEEP = "pynenc.sleep"
WAIT_SIGNAL = "pynenc.wait_signal/"
WAIT_SIGNAL_ASYNC = "pynenc.wait_signal_async/"
SIGNAL = "pynenc.signal/"
SET_EVENT = "pynenc.set_event/"

_OPERATIONS = (
    (WAIT_SIGNAL_ASYNC, "wait_signal_async"),
    (WAIT_SIGNAL, "wait_signal"),
    (SIGNAL, "signal"),
    (SET_EVENT, "set_event"),
)

#: What follows a workflow's id in the key of its signals and events.
_SIGNAL_TAG = b"\xffs"
_EVENT_TAG = b"\xffe"
_OUTCOME_TAG = b"\xffw"


def operation_of(name: str) -> tuple[str, str | None] | None:
    """`(operation, signal name or event key)` for one of the engine's own side-effect names
    (`("sleep", None)`, `("wait_signal", "approval")`, ...), else None."""
    if not name.startswith(PREFIX):
        return None
    if name == SLEEP:
        return "sleep", None
    for prefix, operation in _OPERATIONS:
        if name.startswith(prefix):
            return operation, name[len(prefix) :]
    return None


def signal_prefix(workflow: bytes, name: bytes) -> bytes:
    """The key prefix of the pending deliveries of signal `name` to `workflow`."""
    return workflow + _SIGNAL_TAG + struct.pack(">H", len(name)) + name


def event_key(workflow: bytes, key: bytes) -> bytes:
    """The data key of event `key` of `workflow`."""
    return workflow + _EVENT_TAG + key


def signal_outcome_key(workflow: bytes, invocation: bytes, attempt: int, position: int) -> bytes:
    """The data key of the outcome of the `wf.wait_signal_async` recorded at `position` of
    `invocation`'s attempt `attempt` in `workflow`."""
    return workflow + _OUTCOME_TAG + invocation + struct.pack(">IQ", attempt, position)


def deadline_text(deadline_us: int | None) -> str:
    """A recorded deadline as ISO 8601 (UTC), or `no timeout`."""
    if deadline_us is None:
        return "no timeout"
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (epoch + datetime.timedelta(microseconds=deadline_us)).isoformat()
