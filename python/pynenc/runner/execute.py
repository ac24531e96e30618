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

import contextlib
import hashlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pynenc import codec
from pynenc._core import Execution, format_id
from pynenc.errors import (
    InvalidArgumentError,
    InvocationParkedError,
    LeaseLostError,
    NonDeterminismError,
    PayloadTooLargeError,
    PynencError,
    StoreError,
)
from pynenc.invocation import (
    ErrorInfo,
    Invocation,
    InvocationRecord,
    InvocationStatus,
)
from pynenc.runner.leases import now_ms
from pynenc.runner.owner import current_owner
from pynenc.task import Task
from pynenc.workflow.context import _CURRENT, WorkflowContext
from pynenc.workflow.identity import WorkflowIdentity

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = [
    "claim_and_run",
    "dispatch_child",
    "encode_arguments",
    "new_record",
    "retry_delay",
    "run",
    "run_claimed",
    "store_record",
]

log = logging.getLogger("pynenc.runner")

T = TypeVar("T")

INVOCATIONS = "invocations"

#: Exceptions of the engine itself: never recorded as the task's outcome. A store that fails
#: (damaged: `StoreCorruptError`; lease lost: `LeaseLostError`) is not the task's doing.
ENGINE_ERRORS = (NonDeterminismError, StoreError)


def encode_arguments(app: Pynenc, task: Task[..., Any], args: Any, kwargs: dict[str, Any]) -> bytes:
    """Encode a call's arguments; raises `TypeError` naming the parameter before any write."""
    task.check_arguments(args, kwargs)
    try:
        return codec.encode(
            [list(args), kwargs],
            what=lambda: f"arguments of task {task.task_id!r}",
            limit=app.config.max_payload_bytes,
        )
    except TypeError:
        for name, value in task.bind_arguments(args, kwargs).items():
            codec.encode(
                value,
                what=f"argument {name!r} of task {task.task_id!r}",
                limit=app.config.max_payload_bytes,
            )
        raise


def new_record(
    task: Task[..., Any],
    invocation_id: bytes,
    args: bytes,
    parent: WorkflowContext | None,
) -> InvocationRecord:
    """The record of a new invocation, placed in its workflow by the membership rules."""
    if parent is None:
        workflow = WorkflowIdentity(format_id(invocation_id), task.task_id, None)
    elif task.options.force_new_workflow:
        workflow = WorkflowIdentity(
            format_id(invocation_id), task.task_id, parent.workflow.workflow_id
        )
    else:
        workflow = parent.workflow
    return InvocationRecord(
        invocation_id=invocation_id,
        task_id=task.task_id,
        args=args,
        workflow=workflow,
        parent_invocation_id=None if parent is None else parent._record.invocation_id,
    )


def store_record(
    app: Pynenc, record: InvocationRecord, fence: tuple[bytes, int] | None = None
) -> None:
    """Stage `record` (with its update time) for the next flush."""
    record.updated_at = time.time()
    app.store.put(INVOCATIONS, record.invocation_id, record.encode(), fence)


def run(
    app: Pynenc,
    record: InvocationRecord,
    *,
    replay_only: bool = False,
    fence_token: int | None = None,
    fresh: bool = False,
    taken_over: bool = False,
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

    Returns:
        The task's return value (only meaningful with `replay_only`).

    Raises:
        NonDeterminismError: The code diverged from the journal (the record is left as it was,
            so recovery can resume once the code is fixed).
        LeaseLostError: Another worker took the invocation over.
    """
    fence = None if fence_token is None else (record.invocation_id, fence_token)
    if fence_token is not None:
        resuming = taken_over
    else:
        resuming = not replay_only and record.status is InvocationStatus.RUNNING
    if resuming:
        # Its process died while running it: resume, unless that keeps happening.
        record.recoveries += 1
        if record.recoveries > app.config.max_recoveries:
            _park(app, record, fence)
            return None
    counted = resuming  # `resuming` is cleared once the resumption is durable
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
                first_start = record.status is InvocationStatus.PENDING
                record.status = InvocationStatus.RUNNING
                record.owner = current_owner()
                top_level = record.parent_invocation_id is None
                if not (first_start and fence is None and not top_level):
                    # An inline child's record is first stored with its outcome: if the process
                    # dies before, its parent's recovery dispatches it again and it resumes from
                    # its own journal.
                    store_record(app, record, fence)
                if (first_start and top_level) or resuming:
                    # A workflow's start is durable before its body runs, so a crash anywhere
                    # inside it leaves something to resume; so is each resumption, so work that
                    # keeps killing its process is counted and parked.
                    execution.flush()
                    resuming = False
            ctx = WorkflowContext(
                app, task, record, execution, replay_only=replay_only, fence=fence
            )
            value, error = _call(ctx, record)
            # Engine errors swallowed by the task's own `except` still stop it here.
            execution.check_divergence()
            if error is None and had_journal:
                # Code that returns having done less than its journal recorded has diverged.
                execution.finish()
            if replay_only:
                if error is not None:
                    execution.finish()
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
            if error is not None and _retryable(task, record, error):
                record.attempts.append(
                    {"attempt": record.attempt, "error": f"{type(error).__qualname__}: {error}"}
                )
                record.attempt += 1
                execution.stage()
                store_record(app, record, fence)
                execution.flush()
                time.sleep(retry_delay(task, record))
                continue
            if error is None:
                record.status, record.error = InvocationStatus.SUCCESS, None
            else:
                record.status, record.result = InvocationStatus.FAILED, None
                record.error = ErrorInfo.capture(error)
            execution.stage()
            store_record(app, record, fence)
            if fence is not None:
                app.store.complete(record.invocation_id, fence)
            execution.flush()
            _maybe_crash(task.task_id)
            return value
    except NonDeterminismError:
        if counted:
            # Not a death of its process: the resumption is not counted against
            # `max_recoveries`, so fixing the code and recovering again still resumes it.
            record.recoveries -= 1
            store_record(app, record, fence)
            app.store.flush()
        raise


def _call(ctx: WorkflowContext, record: InvocationRecord) -> tuple[Any, BaseException | None]:
    """Run the task's function inside `ctx`: (value, None) or (None, the task's exception)."""
    args, kwargs = codec.decode(record.args, what=lambda: f"arguments of {record.id_str}")
    token = _CURRENT.set(ctx)
    try:
        return ctx.task.func(*args, **kwargs), None
    except ENGINE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - the task's own failure is its outcome
        return None, exc
    finally:
        _CURRENT.reset(token)


def _retryable(task: Task[..., Any], record: InvocationRecord, error: BaseException) -> bool:
    return record.attempt < task.options.max_retries and isinstance(error, task.options.retry_for)


def retry_delay(task: Task[..., Any], record: InvocationRecord) -> float:
    """Seconds before attempt `record.attempt`: `retry_backoff * 2**(attempt-1)`, scaled by a
    jitter in [0.5, 1.5) drawn from the invocation id and attempt (the same on every replay)."""
    if task.options.retry_backoff <= 0:
        return 0.0
    seed = hashlib.blake2b(
        record.invocation_id + record.attempt.to_bytes(4, "big"), digest_size=8
    ).digest()
    jitter = 0.5 + int.from_bytes(seed, "big") / 2**64
    return float(task.options.retry_backoff * 2 ** (record.attempt - 1) * jitter)


def _park(app: Pynenc, record: InvocationRecord, fence: tuple[bytes, int] | None) -> None:
    """Give up on poison work: record why, fail the invocation, take it off the queue."""
    reason = InvocationParkedError(
        f"invocation {record.id_str} of {record.task_id} was parked: its process died while "
        f"running it {record.recoveries} times (max_recoveries={app.config.max_recoveries}); "
        "fix the cause, then call the task again"
    )
    record.status, record.result, record.error = (
        InvocationStatus.FAILED,
        None,
        ErrorInfo.capture(reason),
    )
    log.error("%s", reason)
    store_record(app, record, fence)
    if fence is not None:
        app.store.complete(record.invocation_id, fence)
    app.store.flush()


def run_claimed(app: Pynenc, invocation_id: bytes, token: int, *, taken_over: bool = False) -> None:
    """Run a queued invocation this process has just claimed, renewing its lease meanwhile.
    `taken_over` (from the claim): its last holder died with it, so this run resumes it."""
    fence = (invocation_id, token)
    keeper = app._lease_keeper()
    keeper.hold(invocation_id, token)
    try:
        record = app._load_record(invocation_id)
        if record is None or record.status.finished:
            app.store.complete(invocation_id, fence)  # finished (or never stored): off the queue
            app.store.flush()
            return
        run(app, record, fence_token=token, taken_over=taken_over)
    except LeaseLostError:
        raise  # another worker holds it now
    except BaseException as exc:
        # Given back, so another process can run it while this one lives: at once when the
        # engine failed here (an unknown task, a store error, an interrupt); after a lease
        # time when its code diverged, so workers do not spin on it until it is fixed.
        # Either way whoever claims it next is not taking it over.
        keeper.drop(invocation_id)
        with contextlib.suppress(PynencError):  # taken over meanwhile: nothing to give back
            if isinstance(exc, NonDeterminismError):
                app.store.defer(invocation_id, token, now_ms() + keeper.lease_ms)
            else:
                app.store.release(invocation_id, token)
        raise
    finally:
        keeper.drop(invocation_id)


def claim_and_run(app: Pynenc, invocation_id: bytes) -> bool:
    """Claim this queued invocation for this process and run it, if no live lease holds it.
    Returns whether it was claimed."""
    keeper = app._lease_keeper()
    claim = app.store.claim_invocation(
        invocation_id, current_owner().encode(), keeper.lease_ms, now_ms()
    )
    if claim is None:
        return False
    run_claimed(app, invocation_id, claim[1], taken_over=claim[3])
    return True


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


def dispatch_child(
    ctx: WorkflowContext, task: Task[..., T], args: Any, kwargs: dict[str, Any]
) -> Invocation[T]:
    """Start (or, on replay, find) the child invocation of `task` at this position."""
    if not isinstance(task, Task):
        raise InvalidArgumentError(
            f"execute_task runs a task (a function decorated with @app.task), got {task!r}"
        )
    app = ctx.app
    args_bytes = encode_arguments(app, task, args, kwargs)
    execution = ctx._execution
    child_id, replayed = execution.child(task.task_id, codec.digest(args_bytes))
    # A dispatch recorded just now names a child no store can hold yet: a child is only ever
    # durable together with the dispatch that led to it (causal order), so skip the read.
    record = app._load_record(child_id) if replayed or ctx._replay_only else None
    if record is None:
        if ctx._replay_only:
            raise InvalidArgumentError(
                f"cannot replay {ctx.invocation_id}: its child {uuid.UUID(bytes=child_id)} was "
                "never stored (the invocation did not finish); use app.recover() instead"
            )
        record = new_record(task, child_id, args_bytes, ctx)
        # The parent's entries up to this dispatch are staged before anything of the child:
        # no flush, by any thread, can then make the child durable without them.
        execution.stage()
        if app.config.execution == "queued":
            store_record(app, record, ctx._fence)
            app.store.enqueue(child_id)
        # Inline, the child's record is staged with its outcome (see `run`). The child may act
        # on values drawn so far: make those durable first unless they can be regenerated
        # identically after a crash.
        if execution.volatile_pending or app.config.execution == "queued":
            execution.flush()
    if record.status.finished or ctx._replay_only:
        return Invocation(app, record)
    if app.config.execution == "queued":
        return Invocation(app, record)
    run(app, record, fresh=not replayed)
    return Invocation(app, record)


def side_effect(ctx: WorkflowContext, name: str, fn: Callable[[], T]) -> T:
    """Run `fn` once and durably record its outcome, then return its value or raise its
    exception; a replay returns (or raises) the recorded outcome without calling `fn`."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a side effect's name is a str, got {name!r}")
    if not callable(fn):
        raise InvalidArgumentError(f"side effect {name!r} needs a function to call, got {fn!r}")
    execution = ctx._execution
    recorded = execution.side_effect_lookup(name)
    if recorded is None:
        if execution.volatile_pending:
            execution.flush()
        limit = ctx.app.config.max_payload_bytes
        cause: Exception | None = None
        try:
            value = fn()
            recorded = (
                codec.encode(value, what=f"value of side effect {name!r}", limit=limit),
                False,
            )
        except ENGINE_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - what it raised is the side effect's outcome
            recorded, cause = (_encode_error(ErrorInfo.capture(exc), name, limit), True), exc
        execution.side_effect_record(name, *recorded)
        execution.flush()
        if cause is not None:
            raise _side_effect_error(name, recorded[0]) from cause
    data, failed = recorded
    if failed:
        raise _side_effect_error(name, data)
    result: T = codec.decode(data, what=f"side effect {name!r}")
    return result


def _encode_error(error: ErrorInfo, name: str, limit: int) -> bytes:
    """A side effect's error as recorded: whole when it fits in `limit`, else with its message
    (its only argument then) and traceback cut until it fits, so it is recorded either way and
    still raised as its own type."""
    what = f"error of side effect {name!r}"
    try:
        return codec.encode(error.to_wire(), what=what, limit=limit)
    except PayloadTooLargeError:
        pass
    keep = len(error.message) + len(error.traceback_text)
    while True:
        keep //= 2
        message = error.message[:keep]
        tail = error.traceback_text[-keep:] if keep else ""
        cut = ErrorInfo(
            error.type_name,
            error.module,
            message,
            codec.encode([message], what=what, limit=1 << 62),
            f"(cut to fit max_payload_bytes)\n{tail}",
        )
        try:
            return codec.encode(cut.to_wire(), what=what, limit=limit if keep else 1 << 62)
        except PayloadTooLargeError:
            continue


def _side_effect_error(name: str, data: bytes) -> BaseException:
    """The exception a side effect raised, rebuilt from its record as a child's would be."""
    wire = codec.decode(data, what=f"error of side effect {name!r}")
    return ErrorInfo.from_wire(wire).to_exception(f"side effect {name!r}")
