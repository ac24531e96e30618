"""The workflow operations written in Python: dispatching a child task (`wf.execute_task`) and
running a side effect (`wf.side_effect`), each all-or-nothing: an engine fault ends the attempt
and nothing after it is recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pynenc import codec
from pynenc import logging as logs
from pynenc._core import Execution
from pynenc.cancel import check_not_cancelled
from pynenc.errors import (
    InvalidArgumentError,
    NonDeterminismError,
    PayloadTooLargeError,
)
from pynenc.invocation import (
    ErrorInfo,
    Invocation,
)
from pynenc.runner import aio, divergence, replay
from pynenc.runner.execute import ENGINE_ERRORS, run
from pynenc.runner.records import encode_arguments, new_record, store_record
from pynenc.task import Task
from pynenc.workflow import reserved
from pynenc.workflow.context import WorkflowContext

__all__ = ["dispatch_child", "side_effect"]

log = logs.logger("pynenc.runner")

T = TypeVar("T")


def dispatch_child(
    ctx: WorkflowContext,
    task: Task[..., T],
    args: Any,
    kwargs: dict[str, Any],
    *,
    concurrent: bool = False,
) -> Invocation[T]:
    """Start (or, on replay, find) the child invocation of `task` at this position.

    Inline, the child runs before this returns, except an async child called from code that
    can await (`aio.awaits_here`), and any child with `concurrent` (`wf.execute_task_async`,
    on the running loop): those start on the running loop (an async task) or in one of its
    executor's threads (a plain task), and the `Invocation` returned is waited for with
    `result_async()`."""
    execution = ctx._execution
    execution.guard("execute_task")
    if not isinstance(task, Task):
        raise InvalidArgumentError(
            f"execute_task runs a task (a function decorated with @app.task), got {task!r}"
        )
    args_bytes = encode_arguments(ctx.app, task, args, kwargs)
    with _ends_attempt_on_fault(execution):
        return _dispatch(ctx, task, args_bytes, concurrent)


def _dispatch(
    ctx: WorkflowContext, task: Task[..., T], args_bytes: bytes, concurrent: bool
) -> Invocation[T]:
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
            raise replay.unstored_child(ctx, child_id)
        record = new_record(task, child_id, args_bytes, ctx)
        # The parent's entries up to this dispatch are staged before anything of the child:
        # no flush, by any thread, can then make the child durable without them.
        execution.stage()
        if app.config.execution == "queued":
            store_record(app, record, ctx._fence)
            app.store.enqueue(child_id, ctx._fence)
        # Inline, the child's record is staged with its outcome (see `run`). The child may act
        # on values drawn so far: make those durable first unless they can be regenerated
        # identically after a crash.
        if execution.volatile_pending or app.config.execution == "queued":
            execution.flush()
    if record.status.finished or ctx._replay_only:
        return Invocation(app, record)
    if app.config.execution == "queued":
        return Invocation(app, record)
    if task.is_async and (concurrent or aio.awaits_here(ctx)):
        return Invocation(app, record, aio.start(app, record, fresh=not replayed))
    if concurrent:
        return Invocation(app, record, aio.start_in_thread(app, record, fresh=not replayed))
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
    if name.startswith(reserved.PREFIX):
        raise InvalidArgumentError(
            f"side effect names starting with {reserved.PREFIX!r} are the engine's own (it "
            f"records wf.sleep, wf.wait_signal and wf.set_event under them), got {name!r}: "
            "name it otherwise"
        )
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
    # A cancelled workflow runs no more side effects, here or in any process still running it.
    check_not_cancelled(ctx.app, ctx._record)
    if execution.volatile_pending:
        execution.flush()
    if ctx._fence is not None:
        # Nor does `fn` run under a lease that may have run out (see `LeaseKeeper.confirm`).
        ctx.app._lease_keeper().confirm(*ctx._fence)
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
