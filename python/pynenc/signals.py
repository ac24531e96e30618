"""Signals and events, the store side: `app.signal` delivers a value to a workflow, the
workflow's `wf.wait_signal` takes deliveries in order, and `app.get_event` reads what its
`wf.set_event` published.

Each delivery is a row of its own in the `data` table (key layout in
`pynenc.workflow.reserved`): `signal_prefix(workflow, name) ‖ sequence number ‖ 8 random
bytes`. The sender numbers it one past the highest delivery of that name still pending, so a
delivery sent after another was stored sorts after it; two processes sending at once may pick
the same number, and the random bytes keep their rows apart (neither overwrites the other) and
put them in a fixed order. Consuming a delivery records it in the waiter's journal, made
durable, before its row is deleted, so a crash in between replays the recorded value and
deletes the row then: each delivery is consumed exactly once.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
from typing import TYPE_CHECKING, Any

from pynenc import checks, codec
from pynenc._core import MAX_KEY_LEN
from pynenc.errors import InvalidArgumentError
from pynenc.runner import suspension
from pynenc.workflow.reserved import event_key, signal_prefix

if TYPE_CHECKING:
    from pynenc._core import Store
    from pynenc.app import Pynenc
    from pynenc.invocation import InvocationRecord

__all__ = [
    "MAX_NAME_BYTES",
    "check_event_key",
    "check_signal_name",
    "get_event",
    "pending_signal",
    "send_signal",
]

#: The longest signal name, in bytes of UTF-8.
MAX_NAME_BYTES = 255
#: The longest event key, in bytes of UTF-8 (a store key is at most `MAX_KEY_LEN`: the
#: workflow id and a 2-byte tag come first).
MAX_EVENT_KEY_BYTES = MAX_KEY_LEN - 18
#: Longest pause between two reads of a value waited for (`get_event`, an inline
#: `wait_signal`): the pauses grow from 1 ms to this.
MAX_POLL_SECONDS = 0.05


def _text(what: str, value: object, most: int) -> bytes:
    """`value` as the UTF-8 bytes of a non-empty `str` of at most `most` bytes, else
    `InvalidArgumentError` naming `what`."""
    encoded = None
    if isinstance(value, str):
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            encoded = None
    if encoded is None or not encoded or len(encoded) > most:
        shown = repr(value)
        cut = shown[:200] + ("..." if len(shown) > 200 else "")
        raise InvalidArgumentError(
            f"{what} is a non-empty str of valid UTF-8 of at most {most} bytes, got {cut}"
        )
    return encoded


def check_signal_name(name: object) -> bytes:
    """A signal name's UTF-8 bytes (1 to 255 of them), else `InvalidArgumentError`."""
    return _text("a signal name", name, MAX_NAME_BYTES)


def check_event_key(key: object) -> bytes:
    """An event key's UTF-8 bytes (1 to 492 of them), else `InvalidArgumentError`."""
    return _text("an event key", key, MAX_EVENT_KEY_BYTES)


def _workflow_root(app: Pynenc, workflow_id: object, doing: str) -> InvocationRecord:
    """The root record of workflow `workflow_id`, else `InvalidArgumentError` saying why
    `doing` cannot be done."""
    try:
        raw = uuid.UUID(str(workflow_id) if isinstance(workflow_id, str) else "").bytes
    except ValueError:
        raise InvalidArgumentError(f"{workflow_id!r:.80} is not a workflow id") from None
    root = app._load_record(raw)
    if root is None:
        raise InvalidArgumentError(f"no workflow {workflow_id} in {app.config.store}: {doing}")
    if root.workflow.workflow_id != root.id_str:
        raise InvalidArgumentError(
            f"{workflow_id} is an invocation of {root.task_id} inside workflow "
            f"{root.workflow.workflow_id}, not a workflow: {doing} (use the workflow's id)"
        )
    return root


def send_signal(app: Pynenc, workflow_id: str, name: str, value: Any) -> None:
    """Deliver `value` as signal `name` to workflow `workflow_id`, durably (committed before
    it returns), and wake the workflow if it is suspended.

    Raises:
        InvalidArgumentError: Not a workflow id, no such workflow, an invocation inside a
            workflow, a workflow that has finished, or a bad name. Nothing is written.
        TypeError: `value` cannot be stored (as for a task's arguments). Nothing is written.
    """
    encoded_name = check_signal_name(name)
    root = _workflow_root(app, workflow_id, "nothing to signal")
    if root.status.finished:
        raise InvalidArgumentError(
            f"workflow {workflow_id} has finished ({root.status.value}): a signal to it would "
            "never be read"
        )
    data = codec.encode(value, what=f"value of signal {name!r}", limit=app.config.max_payload_bytes)
    prefix = signal_prefix(root.invocation_id, encoded_name)
    store = app.store
    pending = store.scan("data", prefix)
    sequence = 0
    if pending:
        sequence = struct.unpack(">Q", pending[-1][0][len(prefix) : len(prefix) + 8])[0] + 1
    store.put("data", prefix + struct.pack(">Q", sequence) + os.urandom(8), data)
    store.flush()
    store.announce(root.invocation_id)  # an inline wait in another process looks at once
    suspension.wake(app, root.invocation_id)


def pause(
    store: Store, ticket: int | None, pause: float, left: float | None, invocation: bytes
) -> float:
    """Wait before the next look at what `invocation`'s waiter waits for (a signal, an
    event): `pause` seconds (at most `left`) without change notices, else until a notice about
    `invocation` arrives after `ticket` or `MAX_POLL_SECONDS` pass. Returns the next pause."""
    if ticket is None:
        time.sleep(pause if left is None else min(pause, left))
        return min(pause * 2, MAX_POLL_SECONDS)
    wait = MAX_POLL_SECONDS if left is None else min(MAX_POLL_SECONDS, left)
    store.wait_notice(ticket, max(0.0, wait), invocation)
    return MAX_POLL_SECONDS


def pending_signal(store: Store, workflow: bytes, name: bytes) -> tuple[bytes, bytes] | None:
    """The first pending delivery of signal `name` to `workflow`, as `(key, value)`."""
    pending = store.scan("data", signal_prefix(workflow, name))
    return pending[0] if pending else None


def get_event(app: Pynenc, workflow_id: str, key: str, timeout: float | None) -> Any:
    """The value of event `key` of workflow `workflow_id`, waiting until it is set.

    The store is read again after pauses growing from 1 ms to 50 ms; on a store with change
    notices (PostgreSQL) as soon as the workflow sets an event, 50 ms at most otherwise.

    Raises:
        TimeoutError: It was not set within `timeout` seconds.
        InvalidArgumentError: Not a workflow id, no such workflow, a bad key or timeout; or
            the workflow finished without setting it (it never will).
    """
    encoded_key = check_event_key(key)
    if timeout is not None:
        timeout = checks.seconds("timeout", timeout, positive=False)
    root = _workflow_root(app, workflow_id, "it has no events")
    row = event_key(root.invocation_id, encoded_key)
    store = app.store
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.001
    while True:
        # Taken before the read: the notice of a `set_event` after it cuts the pause short.
        ticket = store.notice_ticket()
        data = store.get("data", row)
        if data is None:
            record = app._load_record(root.invocation_id)
            if record is not None and record.status.finished:
                data = store.get("data", row)  # set just before it finished
                if data is None:
                    raise InvalidArgumentError(
                        f"workflow {workflow_id} finished ({record.status.value}) without "
                        f"setting event {key!r}: it never will"
                    )
        if data is not None:
            return codec.decode(data, what=f"event {key!r}")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(
                f"event {key!r} of workflow {workflow_id} not set within {timeout} s"
            )
        delay = pause(store, ticket, delay, left, root.invocation_id)
