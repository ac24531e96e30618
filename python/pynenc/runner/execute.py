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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pynenc import checks, codec
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
    describe_exception,
)
from pynenc.runner import divergence
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

#: Exceptions of the engine itself (a divergence, any failure of the store, a lost lease):
#: never recorded as an outcome; they end the attempt and leave the invocation to resume.
ENGINE_ERRORS = (NonDeterminismError, StoreError)


def encode_arguments(app: Pynenc, task: Task[..., Any], args: Any, kwargs: dict[str, Any]) -> bytes:
    """Encode a call's arguments; raises `TypeError` naming the parameter before any write
    (and `InvalidArgumentError` for a queued call of a task no worker could import)."""
    if task.unimportable is not None and app.config.execution == "queued":
        raise InvalidArgumentError(task.unimportable)
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
            # An engine error or interruption that ended the attempt stops it here, even if
            # the task's own `except` swallowed it; so does one the task raised itself.
            execution.check_fault()
            if error is not None and _interrupts(error):
                raise error
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
                    {"attempt": record.attempt, "error": describe_exception(error)}
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
    except BaseException as exc:
        if counted and (isinstance(exc, NonDeterminismError) or not isinstance(exc, Exception)):
            # Not a death of its process (a divergence, an interruption): the resumption is not
            # counted against `max_recoveries`, so resuming it again later still resumes it.
            record.recoveries -= 1
            with contextlib.suppress(StoreError):
                store_record(app, record, fence)
                app.store.flush()
        raise


def _call(ctx: WorkflowContext, record: InvocationRecord) -> tuple[Any, BaseException | None]:
    """Run the task's function inside `ctx`: (value, None) or (None, what it raised)."""
    args, kwargs = codec.decode(record.args, what=lambda: f"arguments of {record.id_str}")
    token = _CURRENT.set(ctx)
    try:
        return ctx.task.func(*args, **kwargs), None
    except BaseException as exc:  # noqa: BLE001 - sorted out by the caller (`_interrupts`)
        return None, exc
    finally:
        _CURRENT.reset(token)


def _interrupts(error: BaseException) -> bool:
    """Whether what the task raised stops the attempt instead of being its outcome.

    An engine error does: the invocation is left to resume. So does an interruption (a
    `BaseException` that is not an `Exception`, `KeyboardInterrupt` above all) in the main
    thread, where Ctrl-C lands: the invocation is left to resume as after a crash. `SystemExit`
    is the task's own decision, and an interruption in any other thread (a worker's) can only
    be raised by the task itself: both are its outcome, a failure.
    """
    if isinstance(error, Exception):
        return isinstance(error, ENGINE_ERRORS)
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


def _park(
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
    if not quiet:
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
        _check_task_known(app, record, fence)
        run(app, record, fence_token=token, taken_over=taken_over)
    except LeaseLostError:
        raise  # another worker holds it now
    except BaseException as exc:
        # Given back, so another process can run it while this one lives: at once when the
        # engine failed here (an unknown task, a store error); after a lease time when its code
        # diverged or a side effect was interrupted (`SystemExit` in its function), so workers
        # do not spin on it. Either way whoever claims it next is not taking it over.
        keeper.drop(invocation_id)
        with contextlib.suppress(PynencError):  # taken over meanwhile: nothing to give back
            if isinstance(exc, NonDeterminismError) or not isinstance(exc, Exception):
                app.store.defer(invocation_id, token, now_ms() + keeper.lease_ms)
            elif isinstance(exc, UnknownTaskError):
                if exc.retry_seconds is not None:  # else parked: off the queue already
                    app.store.defer(invocation_id, token, now_ms() + exc.retry_ms)
            else:
                app.store.release(invocation_id, token)
        raise
    finally:
        keeper.drop(invocation_id)


class UnknownTaskError(InvalidArgumentError):
    """A claimed invocation's task is not registered here: it was deferred for
    `retry_seconds`, or parked (`retry_seconds` None)."""

    def __init__(self, message: str, retry_seconds: float | None) -> None:
        super().__init__(message)
        self.retry_seconds = retry_seconds

    @property
    def retry_ms(self) -> int:
        return int((self.retry_seconds or 0.0) * 1000)


def _check_task_known(app: Pynenc, record: InvocationRecord, fence: tuple[bytes, int]) -> None:
    """Raise `UnknownTaskError` unless the claimed invocation's task is registered. Each such
    claim is counted in the record; the invocation waits 1, 2, 4 ... s (at most a lease time)
    before it can be claimed again, and is parked once the count exceeds `max_recoveries`."""
    try:
        app.get_task(record.task_id)
    except InvalidArgumentError as exc:
        record.misses += 1
        limit = app.config.max_recoveries
        if record.misses > limit:
            _park(
                app,
                record,
                fence,
                f"no process that claimed it knew task {record.task_id!r} "
                f"({record.misses} claims, max_recoveries={limit})",
                quiet=True,
            )
            raise UnknownTaskError(f"{exc}; parked after {record.misses} claims", None) from None
        store_record(app, record, fence)
        app.store.flush()
        delay = min(float(2 ** (record.misses - 1)), app.config.lease_seconds)
        raise UnknownTaskError(
            f"{exc}; tried again in {delay:g} s (claim {record.misses}, parked after {limit + 1})",
            delay,
        ) from None


def claim_and_run(app: Pynenc, invocation_id: bytes) -> bool:
    """Claim this queued invocation for this process and run it, if no live lease holds it
    and its task is registered here (else it is left to a worker that knows it). Returns
    whether it was claimed."""
    record = app._load_record(invocation_id)
    if record is not None and app._registry.find(record.task_id) is None:
        try:
            app.get_task(record.task_id)
        except InvalidArgumentError:
            return False
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
    execution = ctx._execution
    execution.guard("execute_task")
    if not isinstance(task, Task):
        raise InvalidArgumentError(
            f"execute_task runs a task (a function decorated with @app.task), got {task!r}"
        )
    args_bytes = encode_arguments(ctx.app, task, args, kwargs)
    with _ends_attempt_on_fault(execution):
        return _dispatch(ctx, task, args_bytes)


def _dispatch(ctx: WorkflowContext, task: Task[..., T], args_bytes: bytes) -> Invocation[T]:
    app = ctx.app
    execution = ctx._execution
    try:
        child_id, replayed = execution.child(task.task_id, codec.digest(args_bytes))
    except NonDeterminismError as exc:
        raise divergence.at_child(ctx, exc, task, args_bytes) from None
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


@contextlib.contextmanager
def _ends_attempt_on_fault(execution: Execution) -> Iterator[None]:
    """An engine error, or an interruption (`KeyboardInterrupt`, `SystemExit`, ...), raised
    while a workflow operation is mid-way ends the attempt: the task may catch it, but nothing
    more is recorded and the engine raises it again when the task returns."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, ENGINE_ERRORS) or not isinstance(exc, Exception):
            execution.fail(exc)
        raise


def side_effect(ctx: WorkflowContext, name: str, fn: Callable[[], T]) -> T:
    """Run `fn` once and durably record its outcome, then return its value or raise its
    exception; a replay returns (or raises) the recorded outcome without calling `fn`.

    All or nothing: an engine error, or an interruption raised by `fn` (a `BaseException`
    that is not an `Exception`), is not recorded; it ends the attempt (see
    `_ends_attempt_on_fault`) and the invocation resumes as after a crash, calling `fn` again.
    A workflow operation called by `fn` is refused, and that refusal is the outcome."""
    execution = ctx._execution
    execution.guard("side_effect")
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a side effect's name is a str, got {name!r}")
    if not callable(fn):
        raise InvalidArgumentError(f"side effect {name!r} needs a function to call, got {fn!r}")
    cause: BaseException | None = None
    with _ends_attempt_on_fault(execution):
        recorded = execution.side_effect_lookup(name)
        if recorded is None:
            recorded, cause = _run_side_effect(ctx, name, fn)
    data, failed = recorded
    if failed:
        if cause is not None:
            raise _side_effect_error(name, data) from cause
        raise _side_effect_error(name, data)
    result: T = codec.decode(data, what=f"side effect {name!r}")
    return result


def _run_side_effect(
    ctx: WorkflowContext, name: str, fn: Callable[[], Any]
) -> tuple[tuple[bytes, bool], BaseException | None]:
    """Call `fn`, record its outcome and make it durable: ((encoded value or error, failed),
    the exception `fn` raised or None)."""
    execution = ctx._execution
    if execution.volatile_pending:
        execution.flush()
    limit = ctx.app.config.max_payload_bytes
    execution.enter_side_effect(name)
    try:
        value = fn()
        error: BaseException | None = None
    except ENGINE_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - what it raised is the side effect's outcome
        value, error = None, exc
    finally:
        nested = execution.exit_side_effect()
    if nested is not None:
        error = nested  # whatever `fn` then did with the refusal
    if error is None:
        try:
            what = f"value of side effect {name!r}"
            recorded = (codec.encode(value, what=what, limit=limit), False)
        except Exception as exc:  # noqa: BLE001 - an unstorable value is the outcome too
            error = exc
    if error is not None:
        recorded = (_encode_error(ErrorInfo.capture(error), name, limit), True)
    execution.side_effect_record(name, *recorded)
    execution.flush()
    return recorded, error


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
