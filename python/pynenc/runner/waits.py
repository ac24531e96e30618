"""The workflow operations that wait: `wf.sleep`, `wf.sleep_until`, `wf.wait_signal`, and
`wf.set_event`, which publishes what callers outside wait for.

A wait's deadline is computed once and recorded (`pynenc.workflow.reserved` lists the
entries), so a replay or a resumption waits only for what is left of it, and a finished run's
replay not at all. Inline the wait blocks the calling thread; under a worker's claim the
invocation is suspended (`pynenc.runner.suspension`) and its worker slot is free meanwhile.
"""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynenc import checks, codec, signals
from pynenc.cancel import check_not_cancelled
from pynenc.errors import InvalidArgumentError
from pynenc.runner import aio, suspension
from pynenc.runner.operations import _ends_attempt_on_fault
from pynenc.workflow.reserved import (
    SET_EVENT,
    SIGNAL,
    SLEEP,
    WAIT_SIGNAL,
    deadline_text,
    event_key,
    signal_prefix,
)

if TYPE_CHECKING:
    from pynenc.workflow.context import WorkflowContext

__all__ = ["set_event", "sleep", "sleep_until", "wait_signal"]

#: The longest sleep or timeout: about 100 years.
MAX_SLEEP_SECONDS = 100 * 366 * 86400.0
#: How often a wait that blocks its thread checks whether its workflow was cancelled.
CANCEL_CHECK_SECONDS = 1.0


def _now_us(ctx: WorkflowContext) -> int:
    """The store's clock (the database's on PostgreSQL, so every host agrees on deadlines)."""
    return int(ctx.app.store.now_ms()) * 1000


def _start_us(ctx: WorkflowContext) -> int:
    """Where a new deadline counts from: the store's clock (milliseconds) rounded up, so a
    deadline `d` seconds on is never earlier than `d` after any reading taken before it."""
    return _now_us(ctx) + 1000


def _duration(what: str, value: object) -> float:
    """Seconds (a number or a `timedelta`), finite, from 0 to `MAX_SLEEP_SECONDS`."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
        if value < 0:
            raise InvalidArgumentError(f"{what} must not be negative, got {value:g} s")
    return checks.seconds(what, value, positive=False, most=MAX_SLEEP_SECONDS)


def sleep(ctx: WorkflowContext, duration: object) -> None:
    """Wait `duration` (seconds, or a `timedelta`) from the first time this runs."""
    aio.refuse_blocking(ctx, "wf.sleep()", "wf.sleep_async(...)")
    _wait_until(ctx, sleep_deadline(ctx, "sleep", duration), "wf.sleep")


def sleep_until(ctx: WorkflowContext, when: object) -> None:
    """Wait until `when`, a timezone-aware `datetime`."""
    aio.refuse_blocking(ctx, "wf.sleep_until()", "wf.sleep_until_async(...)")
    _wait_until(ctx, until_deadline(ctx, "sleep_until", when), "wf.sleep")


def sleep_deadline(ctx: WorkflowContext, op: str, duration: object) -> int:
    """The deadline of a sleep of `duration` (operation `op`), recorded the first time."""
    ctx._execution.guard(op)
    seconds = _duration("a sleep's duration", duration)
    return _recorded_deadline(ctx, lambda: _start_us(ctx) + round(seconds * 1e6))


def until_deadline(ctx: WorkflowContext, op: str, when: object) -> int:
    """The deadline of a sleep until `when` (operation `op`), recorded the first time."""
    ctx._execution.guard(op)
    if not isinstance(when, datetime.datetime) or when.utcoffset() is None:
        raise InvalidArgumentError(
            f"{op} takes a timezone-aware datetime (e.g. wf.utc_now() + timedelta(...)), "
            f"got {when!r:.200}"
        )
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    deadline_us = (when - epoch) // datetime.timedelta(microseconds=1)
    return _recorded_deadline(ctx, lambda: deadline_us)


def _recorded_deadline(ctx: WorkflowContext, deadline: Callable[[], int]) -> int:
    execution = ctx._execution
    with _ends_attempt_on_fault(execution):
        recorded = execution.side_effect_lookup(SLEEP)
        if recorded is None:
            deadline_us = deadline()
            execution.side_effect_record(SLEEP, encoded_entry(deadline_us), False)
            return deadline_us
        return int(codec.decode(recorded[0], what="a sleep's deadline"))


def _wait_until(ctx: WorkflowContext, deadline_us: int, why: str) -> None:
    execution = ctx._execution
    with _ends_attempt_on_fault(execution):
        if ctx._replay_only:
            return  # a finished run's replay does not wait
        left = (deadline_us - _now_us(ctx)) / 1e6
        if left <= 0:
            return
        if suspension.can_suspend(ctx) and left >= suspension.SUSPEND_MIN_SECONDS:
            suspension.suspend(ctx, ms_ceil(deadline_us), why)
        # The deadline is durable before the wait: a crash during it waits only what is left.
        execution.flush()
        while left > 0:  # in steps of a second: a cancel ends the wait
            time.sleep(min(left, CANCEL_CHECK_SECONDS))
            left = (deadline_us - _now_us(ctx)) / 1e6
            if left > 0:
                check_not_cancelled(ctx.app, ctx._record)


def encoded_entry(value: object) -> bytes:
    """The codec bytes of a waiting operation's entry (plain data the engine builds)."""
    return codec.encode(value, what="a waiting operation's entry", limit=1 << 62)


def ms_ceil(us: int) -> int:
    """Microseconds as milliseconds, rounded up."""
    return -(-us // 1000)


def wait_signal(ctx: WorkflowContext, name: str, timeout: object = None) -> Any:
    """The next pending delivery of signal `name` to this workflow, waiting for one until
    `timeout` (seconds or a `timedelta` from the first time this runs; None: no limit).

    Raises:
        TimeoutError: No delivery came before the deadline (recorded: a replay raises it too).
        InvalidArgumentError: A bad name or timeout, or not the workflow's root invocation.
    """
    aio.refuse_blocking(ctx, "wf.wait_signal()", "wf.wait_signal_async(...)")
    execution = ctx._execution
    encoded, seconds = signal_request(ctx, "wait_signal", name, timeout)
    raw = ctx._record.invocation_id
    with _ends_attempt_on_fault(execution):
        deadline_us = signal_deadline(ctx, WAIT_SIGNAL + name, seconds)
        outcome = execution.side_effect_lookup(SIGNAL + name)
        if outcome is not None:
            return replayed(ctx, name, encoded, outcome[0], deadline_us)
        pause = 0.001
        checked = time.monotonic()
        while True:
            # Taken before the read: the notice of a signal sent after it cuts the pause short.
            ticket = ctx.app.store.notice_ticket()
            found = signals.pending_signal(ctx.app.store, raw, encoded)
            if found is not None:
                return _consume(ctx, name, found)
            now = _now_us(ctx)
            if deadline_us is not None and now >= deadline_us:
                execution.side_effect_record(SIGNAL + name, encoded_entry(None), False)
                execution.flush()
                raise timed_out(name, deadline_us)
            left = None if deadline_us is None else (deadline_us - now) / 1e6
            if suspension.can_suspend(ctx) and (
                left is None or left >= suspension.SUSPEND_MIN_SECONDS
            ):
                until = now + round(suspension.RECHECK_SECONDS * 1e6)
                if deadline_us is not None:
                    until = min(until, deadline_us)
                suspension.suspend(
                    ctx,
                    ms_ceil(until),
                    f"wf.wait_signal({name!r})",
                    lambda: signals.pending_signal(ctx.app.store, raw, encoded) is not None,
                )
            if execution.volatile_pending:
                execution.flush()  # the deadline is durable before the wait
            if time.monotonic() - checked >= CANCEL_CHECK_SECONDS:
                check_not_cancelled(ctx.app, ctx._record)  # a cancel ends the wait
                checked = time.monotonic()
            pause = signals.pause(ctx.app.store, ticket, pause, left, raw)


def signal_request(
    ctx: WorkflowContext, op: str, name: object, timeout: object
) -> tuple[bytes, float | None]:
    """Check a wait for signal `name` (operation `op`): the name's bytes and the timeout in
    seconds (None: no limit).

    Raises:
        InvalidArgumentError: A bad name or timeout, or not the workflow's root invocation.
    """
    ctx._execution.guard(op)
    encoded = signals.check_signal_name(name)
    seconds = None if timeout is None else _duration(f"a {op} timeout", timeout)
    workflow = ctx.workflow.workflow_id
    if ctx.invocation_id != workflow:
        raise InvalidArgumentError(
            f"wf.{op}({name!r}) was called in invocation {ctx.invocation_id} of "
            f"{ctx.task.task_id}, inside workflow {workflow}: signals go to a workflow's root "
            "invocation, so wait for them there, or start this task as a workflow of its own "
            "(@app.task(force_new_workflow=True)) and signal its id"
        )
    return encoded, seconds


def signal_deadline(ctx: WorkflowContext, entry: str, seconds: float | None) -> int | None:
    """The deadline of a signal wait recorded as `entry`, recorded the first time (None
    without a timeout)."""
    execution = ctx._execution
    found = execution.side_effect_lookup(entry)
    if found is not None:
        deadline: int | None = codec.decode(found[0], what="a wait_signal deadline")
        return deadline
    deadline_us = None if seconds is None else _start_us(ctx) + round(seconds * 1e6)
    execution.side_effect_record(entry, encoded_entry(deadline_us), False)
    return deadline_us


def _consume(ctx: WorkflowContext, name: str, found: tuple[bytes, bytes]) -> Any:
    """Record the delivery `(key, value)` as consumed, durably, then delete its row."""
    key, data = found
    execution = ctx._execution
    value = codec.decode(data, what=f"signal {name!r}")
    execution.side_effect_record(SIGNAL + name, encoded_entry([key[-16:], data]), False)
    execution.flush()  # consumed, for good, before its value is seen
    ctx.app.store.delete("data", key, ctx._fence)
    return value


def replayed(
    ctx: WorkflowContext, name: str, encoded: bytes, outcome: bytes, deadline_us: int | None
) -> Any:
    """The recorded outcome of a wait: the value consumed (its row deleted, should the crash
    that led to this replay have come before that), or the timeout raised again."""
    consumed = codec.decode(outcome, what=f"signal {name!r}")
    if consumed is None:
        raise timed_out(name, deadline_us)
    suffix, data = consumed
    if not ctx._replay_only:
        key = signal_prefix(ctx._record.invocation_id, encoded) + bytes(suffix)
        store = ctx.app.store
        if store.get("data", key) is not None:
            store.delete("data", key, ctx._fence)
    return codec.decode(data, what=f"signal {name!r}")


def timed_out(name: str, deadline_us: int | None) -> TimeoutError:
    return TimeoutError(f"no signal {name!r} arrived by {deadline_text(deadline_us)}")


def set_event(ctx: WorkflowContext, key: str, value: Any) -> None:
    """Publish `value` as event `key` of this workflow, durably, for `app.get_event`."""
    execution = ctx._execution
    execution.guard("set_event")
    encoded = signals.check_event_key(key)
    data = codec.encode(
        value, what=f"value of event {key!r}", limit=ctx.app.config.max_payload_bytes
    )
    with _ends_attempt_on_fault(execution):
        if execution.side_effect_lookup(SET_EVENT + key) is not None:
            return  # published when it was recorded
        if ctx._replay_only:
            return
        # In this order: what led here, then the value, then its entry. A flush between the
        # last two makes the value visible without its entry; a crash then runs this again,
        # publishing the same value.
        execution.stage()
        row = event_key(_workflow_bytes(ctx), encoded)
        ctx.app.store.put("data", row, data, ctx._fence)
        execution.side_effect_record(SET_EVENT + key, data, False)
        execution.flush()
        ctx.app.store.announce(_workflow_bytes(ctx))  # `app.get_event` callers look at once


def _workflow_bytes(ctx: WorkflowContext) -> bytes:
    return uuid.UUID(ctx.workflow.workflow_id).bytes
