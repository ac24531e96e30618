"""The workflow operations that wait: `wf.sleep` and `wf.sleep_until`.

A wait's deadline is computed once and recorded (`pynenc.workflow.reserved` lists the
entries), so a replay or a resumption waits only for what is left of it, and a finished run's
replay not at all. Inline the wait blocks the calling thread; under a worker's claim the
invocation is suspended (`pynenc.runner.suspension`) and its worker slot is free meanwhile.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pynenc import checks, codec
from pynenc.cancel import check_not_cancelled
from pynenc.errors import InvalidArgumentError
from pynenc.runner import suspension
from pynenc.runner.operations import _ends_attempt_on_fault
from pynenc.workflow.reserved import SLEEP

if TYPE_CHECKING:
    from pynenc.workflow.context import WorkflowContext

__all__ = ["sleep", "sleep_until"]

#: The longest sleep or timeout: about 100 years.
MAX_SLEEP_SECONDS = 100 * 366 * 86400.0
#: How often a wait that blocks its thread checks whether its workflow was cancelled.
CANCEL_CHECK_SECONDS = 1.0


def _now_us() -> int:
    return time.time_ns() // 1000


def _duration(what: str, value: object) -> float:
    """Seconds (a number or a `timedelta`), finite, from 0 to `MAX_SLEEP_SECONDS`."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
        if value < 0:
            raise InvalidArgumentError(f"{what} must not be negative, got {value:g} s")
    return checks.seconds(what, value, positive=False, most=MAX_SLEEP_SECONDS)


def sleep(ctx: WorkflowContext, duration: object) -> None:
    """Wait `duration` (seconds, or a `timedelta`) from the first time this runs."""
    ctx._execution.guard("sleep")
    seconds = _duration("a sleep's duration", duration)
    _sleep(ctx, lambda: _now_us() + round(seconds * 1e6))


def sleep_until(ctx: WorkflowContext, when: object) -> None:
    """Wait until `when`, a timezone-aware `datetime`."""
    ctx._execution.guard("sleep_until")
    if not isinstance(when, datetime.datetime) or when.utcoffset() is None:
        raise InvalidArgumentError(
            f"sleep_until takes a timezone-aware datetime (e.g. wf.utc_now() + timedelta(...)), "
            f"got {when!r:.200}"
        )
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    deadline_us = (when - epoch) // datetime.timedelta(microseconds=1)
    _sleep(ctx, lambda: deadline_us)


def _sleep(ctx: WorkflowContext, deadline: Callable[[], int]) -> None:
    execution = ctx._execution
    with _ends_attempt_on_fault(execution):
        recorded = execution.side_effect_lookup(SLEEP)
        if recorded is None:
            deadline_us = deadline()
            execution.side_effect_record(SLEEP, _recorded(deadline_us), False)
        else:
            deadline_us = int(codec.decode(recorded[0], what="a sleep's deadline"))
        if ctx._replay_only:
            return  # a finished run's replay does not wait
        left = (deadline_us - _now_us()) / 1e6
        if left <= 0:
            return
        if suspension.can_suspend(ctx) and left >= suspension.SUSPEND_MIN_SECONDS:
            suspension.suspend(ctx, _ms_ceil(deadline_us), "wf.sleep")
        # The deadline is durable before the wait: a crash during it waits only what is left.
        execution.flush()
        while left > 0:  # in steps of a second: a cancel ends the wait
            time.sleep(min(left, CANCEL_CHECK_SECONDS))
            left = (deadline_us - _now_us()) / 1e6
            if left > 0:
                check_not_cancelled(ctx.app, ctx._record)


def _recorded(value: object) -> bytes:
    """The codec bytes of a waiting operation's entry (plain data the engine builds)."""
    return codec.encode(value, what="a waiting operation's entry", limit=1 << 62)


def _ms_ceil(us: int) -> int:
    return -(-us // 1000)
