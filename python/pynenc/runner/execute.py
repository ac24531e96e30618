"""Executing an invocation: its function runs inside a `WorkflowContext` over its journal.

The durability rules of the design live here:
- the invocation record, journal entries and data writes are *staged* in order (no I/O) and
  made durable together by a flush, which commits everything staged in the process;
- a flush happens before a side effect runs if unflushed values could not be regenerated (a
  clock reading, a data read), after it records its value, before a child is dispatched in
  that same case, and when a result or exception is stored;
- random and uuid values never cost a flush of their own: they are regenerated identically.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import os
import signal
import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar

from pynenc import checks, codec
from pynenc import logging as logs
from pynenc._core import Execution
from pynenc.cancel import check_not_cancelled
from pynenc.errors import (
    InvocationParkedError,
    InvocationSuspended,
    NonDeterminismError,
    StoreError,
)
from pynenc.invocation import (
    ErrorInfo,
    InvocationRecord,
    InvocationStatus,
    describe_exception,
)
from pynenc.runner import aio, divergence, suspension
from pynenc.runner.owner import current_owner
from pynenc.runner.records import store_record
from pynenc.task import Task
from pynenc.workflow.context import _CURRENT, WorkflowContext

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["ENGINE_ERRORS", "park", "retry_delay", "run", "run_async"]

log = logs.logger("pynenc.runner")

T = TypeVar("T")

#: Exceptions of the engine itself (a divergence, any failure of the store: damaged, full, a
#: lost lease): never recorded as an outcome; they end the attempt and leave the invocation
#: to resume.
ENGINE_ERRORS = (NonDeterminismError, StoreError)


def run(
    app: Pynenc,
    record: InvocationRecord,
    *,
    replay_only: bool = False,
    fence_token: int | None = None,
    fresh: bool = False,
    taken_over: bool = False,
    awaited_here: bool = False,
) -> Any:
    """Execute `record`'s task over its journal, store its outcome and flush.

    A failure listed in the task's `retry_for` is retried (up to `max_retries`, after a
    jittered exponential backoff) as a new attempt with its own streams and journal. With
    `replay_only`, nothing is written: the journal of the final attempt must match the code
    exactly and the outcome is returned (or raised) instead of stored. With `fence_token`
    (a claimed, queued invocation), every write carries the lease token and the invocation
    leaves the queue when it finishes. `fresh` says its dispatch was recorded just now, so
    it has no journal to read yet. A run resumes the invocation (and counts toward
    `max_recoveries`) when a process died running it: for a claimed invocation, when the claim
    `taken_over` a lease its holder never gave back (whether or not its record had been
    stored as running: it may have died first); otherwise, when its record says running.
    `awaited_here`: the only one waiting on its outcome is this caller (a parent running its
    own queued child), so its completion sends no notice to waiters elsewhere and wakes no
    suspended parent.

    Returns:
        The task's return value (only meaningful with `replay_only`).

    Raises:
        NonDeterminismError: The code diverged from the journal (the record is left as it was,
            so recovery can resume once the code is fixed).
        LeaseLostError: Another worker took the invocation over.
    """
    about = logs.enter(logs.subject_of(record))  # what lines logged meanwhile concern
    try:
        steps = _steps(
            app,
            record,
            replay_only=replay_only,
            fence_token=fence_token,
            fresh=fresh,
            taken_over=taken_over,
            awaited_here=awaited_here,
        )
        step: _Step = next(steps)
        while True:
            try:
                if isinstance(step, WorkflowContext):
                    reply: tuple[Any, BaseException | None] | None = _call(step, step._record)
                else:
                    time.sleep(step)
                    reply = None
            except BaseException as exc:  # noqa: BLE001 - handed to the steps, which decide
                step = steps.throw(exc)
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value
    finally:
        logs.leave(about)


async def run_async(app: Pynenc, record: InvocationRecord, *, fresh: bool = False) -> Any:
    """`run` for an inline invocation of an async task on the running event loop: its
    coroutine is awaited there, and a retry's backoff is an `asyncio.sleep`."""
    about = logs.enter(logs.subject_of(record))
    try:
        steps = _steps(
            app, record, replay_only=False, fence_token=None, fresh=fresh, taken_over=False
        )
        step: _Step = next(steps)
        while True:
            try:
                if isinstance(step, WorkflowContext):
                    reply: tuple[Any, BaseException | None] | None = await _call_async(step)
                else:
                    await asyncio.sleep(step)
                    reply = None
            except BaseException as exc:  # noqa: BLE001 - handed to the steps, which decide
                step = steps.throw(exc)
                continue
            step = steps.send(reply)
    except StopIteration as done:
        return done.value
    finally:
        logs.leave(about)


#: What the steps of a run ask their driver for: call the task's function in this context
#: (answered with `(value, error)`), or wait this many seconds (a retry's backoff).
_Step = WorkflowContext | float


def _steps(
    app: Pynenc,
    record: InvocationRecord,
    *,
    replay_only: bool,
    fence_token: int | None,
    fresh: bool,
    taken_over: bool,
    awaited_here: bool = False,
) -> Generator[_Step, tuple[Any, BaseException | None] | None, Any]:
    """The work of `run`, with the call of the task's function and the retry backoff left to
    the driver (`run`, `run_async`): everything else is the same for plain and async tasks."""
    fence = None if fence_token is None else (record.invocation_id, fence_token)
    if fence_token is not None:
        resuming = taken_over
    else:
        resuming = not replay_only and record.status is InvocationStatus.RUNNING
    if resuming:
        # Its process died while running it: resume, unless that keeps happening.
        record.recoveries += 1
        if record.recoveries > app.config.max_recoveries:
            park(app, record, fence)
            return None
    counted = resuming  # `resuming` is cleared once the resumption is durable
    staged = False  # this run stored the record (an inline child's first run: only at its end)
    try:
        task = app.get_task(record.task_id)
        while True:
            execution = Execution(
                app.store,
                record.invocation_id,
                record.workflow.workflow_id,
                record.attempt,
                replay_only,
                app.config.max_payload_bytes,
                fresh,
            )
            had_journal, fresh = not fresh, False  # a retry's journal is read as usual
            if fence_token is not None:
                execution.set_fence(fence_token)
            if not replay_only:
                if fence is not None or resuming:
                    # A claimed or resumed run of a cancelled workflow starts nothing (a fresh
                    # inline one is checked before its first side effect and its outcome).
                    check_not_cancelled(app, record)
                first_start = record.status is InvocationStatus.PENDING
                record.status = InvocationStatus.RUNNING
                record.owner = current_owner()
                if record.started_at is None:  # a resumption goes on with the same attempt
                    record.started_at = time.time()
                top_level = record.parent_invocation_id is None
                if not (first_start and fence is None and not top_level):
                    # An inline child's record is first stored with its outcome: if the process
                    # dies before, its parent's recovery dispatches it again and it resumes from
                    # its own journal.
                    store_record(app, record, fence)
                    staged = True
                if (first_start and top_level) or resuming:
                    # A workflow's start is durable before its body runs, so a crash anywhere
                    # inside it leaves something to resume; so is each resumption, so work that
                    # keeps killing its process is counted and parked.
                    execution.flush()
                    resuming = False
            ctx = WorkflowContext(
                app, task, record, execution, replay_only=replay_only, fence=fence
            )
            if fence is not None:
                # No code of the task runs under a lease that may have run out meanwhile (the
                # claim's answer held up, the process frozen): another worker may own it now.
                app._lease_keeper().confirm(*fence)
            called = yield ctx
            assert called is not None
            value, error = called
            # An engine error or interruption that ended the attempt stops it here, even if
            # the task's own `except` swallowed it; so does one the task raised itself.
            execution.check_fault()
            if error is not None and _interrupts(error):
                raise error
            if error is None and had_journal:
                # Code that returns having done less than its journal recorded has diverged.
                _finish(ctx)
            if replay_only:
                if error is not None:
                    _finish(ctx)
                    raise error
                return value
            if error is None:
                try:
                    record.result = codec.encode(
                        value,
                        what=lambda: f"result of task {task.task_id!r}",
                        limit=app.config.max_payload_bytes,
                    )
                except Exception as exc:  # noqa: BLE001 - an unstorable result fails the task
                    error = exc
            # Its workflow cancelled meanwhile: stop, storing no outcome over the cancel.
            check_not_cancelled(app, record)
            if error is not None and _retryable(task, record, error):
                record.attempts.append(
                    {
                        "attempt": record.attempt,
                        "error": describe_exception(error),
                        "started": record.started_at,
                        "ended": time.time(),
                        "owner": record.owner,
                    }
                )
                record.attempt += 1
                record.started_at = None  # set when the next attempt starts, after the backoff
                record.divergence = None
                execution.stage()
                store_record(app, record, fence)
                execution.flush()
                yield retry_delay(task, record)
                continue
            if error is None:
                record.status, record.error = InvocationStatus.SUCCESS, None
            else:
                record.status, record.result = InvocationStatus.FAILED, None
                record.error = ErrorInfo.capture(error)
            record.divergence = None  # a run that got this far did all its journal recorded
            execution.stage()
            store_record(app, record, fence)
            if fence is not None:
                app.store.complete(record.invocation_id, fence, notice=not awaited_here)
            execution.flush()
            if fence is not None and record.parent_invocation_id is not None and not awaited_here:
                # A parent suspended while it waits on this child goes on now (else when
                # its suspension ends: a failed wake loses nothing). One that ran it here is
                # not suspended.
                with contextlib.suppress(StoreError):
                    suspension.wake(app, record.parent_invocation_id)
            _maybe_crash(task.task_id)
            return value
    except BaseException as exc:
        # A suspension is not a death of its process either, but the death that led to this
        # resumption (if any) stays counted: work that kills its process after every wait is
        # still parked.
        suspended = isinstance(exc, InvocationSuspended)
        changed = False
        if (
            counted
            and not suspended
            and (isinstance(exc, NonDeterminismError) or not isinstance(exc, Exception))
        ):
            # Not a death of its process (a divergence, an interruption): the resumption is not
            # counted against `max_recoveries`, so resuming it again later still resumes it.
            record.recoveries -= 1
            changed = True
        if not replay_only and isinstance(exc, NonDeterminismError):
            # Kept on the record (`pynenc show`, the timeline) until a later run gets past it.
            noted = divergence.noted(exc, record)
            if noted is not None and staged:
                record.divergence, changed = noted, True
        elif suspended and record.divergence is not None:
            record.divergence, changed = None, True  # it replayed up to its wait: no longer
        if changed:
            with contextlib.suppress(StoreError):
                store_record(app, record, fence)
                app.store.flush()
        raise


def _call(ctx: WorkflowContext, record: InvocationRecord) -> tuple[Any, BaseException | None]:
    """Run the task's function inside `ctx`: (value, None) or (None, what it raised)."""
    args, kwargs = codec.decode(record.args, what=lambda: f"arguments of {record.id_str}")
    token = _CURRENT.set(ctx)
    try:
        value = ctx.task.func(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = aio.run_coroutine(ctx, value)
        return value, None
    except BaseException as exc:  # noqa: BLE001 - sorted out by the caller (`_interrupts`)
        return None, _outcome_error(ctx, exc)
    finally:
        _CURRENT.reset(token)


async def _call_async(ctx: WorkflowContext) -> tuple[Any, BaseException | None]:
    """`_call` on the running event loop: the coroutine is awaited here."""
    record = ctx._record
    args, kwargs = codec.decode(record.args, what=lambda: f"arguments of {record.id_str}")
    token = _CURRENT.set(ctx)
    try:
        value = ctx.task.func(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = await aio.drive(ctx, value)
        return value, None
    except BaseException as exc:  # noqa: BLE001 - sorted out by the caller (`_interrupts`)
        return None, _outcome_error(ctx, exc)
    finally:
        _CURRENT.reset(token)


def _outcome_error(ctx: WorkflowContext, exc: BaseException) -> BaseException:
    if isinstance(exc, NonDeterminismError):
        return divergence.with_recorded_child(ctx, exc)
    return exc


def _finish(ctx: WorkflowContext) -> None:
    """Check that the code did all its journal recorded; a divergence is worded with the
    recorded child's arguments when the missing entry is a child dispatch."""
    try:
        ctx._execution.finish()
    except NonDeterminismError as exc:
        raise divergence.with_recorded_child(ctx, exc) from None


def _interrupts(error: BaseException) -> bool:
    """Whether what the task raised stops the attempt instead of being its outcome.

    An engine error does: the invocation is left to resume. So does an interruption (a
    `BaseException` that is not an `Exception`, `KeyboardInterrupt` above all) in the main
    thread, where Ctrl-C lands: the invocation is left to resume as after a crash. `SystemExit`
    is the task's own decision, and an interruption in any other thread (a worker's) can only
    be raised by the task itself: both are its outcome, a failure. An async task's coroutine
    cancelled under it (`asyncio.CancelledError`: its loop shut down) is interrupted anywhere.
    """
    if isinstance(error, Exception):
        return isinstance(error, ENGINE_ERRORS)
    if isinstance(error, asyncio.CancelledError):
        return True  # its event loop stopped under it (shut down, or the caller cancelled)
    if isinstance(error, SystemExit):
        return False
    return threading.current_thread() is threading.main_thread()


def _retryable(task: Task[..., Any], record: InvocationRecord, error: BaseException) -> bool:
    return record.attempt < task.options.max_retries and isinstance(error, task.options.retry_for)


def retry_delay(task: Task[..., Any], record: InvocationRecord) -> float:
    """Seconds before attempt `record.attempt`: `retry_backoff * 2**(attempt-1)`, scaled by a
    jitter in [0.5, 1.5) drawn from the invocation id and attempt (the same on every replay),
    and at most a day."""
    if task.options.retry_backoff <= 0:
        return 0.0
    seed = hashlib.blake2b(
        record.invocation_id + record.attempt.to_bytes(4, "big"), digest_size=8
    ).digest()
    jitter = 0.5 + int.from_bytes(seed, "big") / 2**64
    # The exponent is capped so the float cannot overflow; the day cap is reached long before.
    delay = task.options.retry_backoff * 2.0 ** min(record.attempt - 1, 1000) * jitter
    return min(delay, checks.MAX_WAIT_SECONDS)


def park(
    app: Pynenc,
    record: InvocationRecord,
    fence: tuple[bytes, int] | None,
    why: str | None = None,
    *,
    quiet: bool = False,
) -> None:
    """Give up on poison work: record why, fail the invocation, take it off the queue."""
    if why is None:
        why = (
            f"its process died while running it {record.recoveries} times "
            f"(max_recoveries={app.config.max_recoveries})"
        )
    reason = InvocationParkedError(
        f"invocation {record.id_str} of {record.task_id} was parked: {why}; fix the cause, "
        "then call the task again"
    )
    record.status, record.result, record.error = (
        InvocationStatus.FAILED,
        None,
        ErrorInfo.capture(reason),
    )
    record.divergence = None
    if not quiet:
        log.error("%s", reason)
    store_record(app, record, fence)
    if fence is not None:
        app.store.complete(record.invocation_id, fence)
    app.store.flush()


_crash_target: list[str | None] = []


def _maybe_crash(task_id: str) -> None:
    """Recovery drills: `PYNENC_CRASH_AFTER=TASK` kills this process with SIGKILL right after
    an invocation of TASK (its id, or the id's last part) is durably finished. The variable is
    read once per process, when the first invocation finishes."""
    if not _crash_target:
        _crash_target.append(os.environ.get("PYNENC_CRASH_AFTER") or None)
    target = _crash_target[0]
    if target is not None and (task_id == target or task_id.endswith("." + target)):
        os.kill(os.getpid(), signal.SIGKILL)
