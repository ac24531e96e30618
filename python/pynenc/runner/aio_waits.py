"""The waits of an async task: `wf.sleep_async`, `wf.sleep_until_async`,
`wf.wait_signal_async`, waits on children (`wf.execute_task_async`, `result_async`), and the
one poller per running invocation that resolves them.

Every one of these operations takes its journal position when it is *called*, not when it is
awaited or when what it waits for comes: its entry (a deadline, a child's dispatch) is recorded
by the call, and it returns an `asyncio.Future` to await. Nothing is recorded when a wait ends,
so several waits awaited together (`asyncio.gather`) leave the same journal whichever ends
first; the one outcome that must be kept, the delivery a `wait_signal_async` took, is a row of
its own keyed by the wait's position (`pynenc.workflow.reserved.signal_outcome_key`).

The poller checks its pending waits in the order they were requested, after pauses growing
from 1 ms to 50 ms (never past the nearest deadline). Under a worker's claim, once a full round
found nothing new (no wait ended, none was requested), and every pending wait can be waited for
suspended (a sleep, a signal, a child that is itself suspended) for 0.1 s or more, the
invocation is suspended until the earliest of their wake-up times and woken by any of them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from pynenc import checks, codec, signals
from pynenc import logging as logs
from pynenc.cancel import check_not_cancelled
from pynenc.errors import InvalidArgumentError
from pynenc.runner import aio, claims, suspension, waiting, waits
from pynenc.runner.execute import ENGINE_ERRORS
from pynenc.runner.operations import _ends_attempt_on_fault, dispatch_child
from pynenc.workflow.reserved import WAIT_SIGNAL_ASYNC, signal_outcome_key

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.invocation import Invocation
    from pynenc.task import Task
    from pynenc.workflow.context import WorkflowContext

__all__ = [
    "Waits",
    "execute_task_async",
    "sleep_async",
    "sleep_until_async",
    "wait_for_async",
    "wait_signal_async",
]

MIN_PAUSE = 0.001
MAX_PAUSE = signals.MAX_POLL_SECONDS


class _Wait:
    """One pending wait: `check` ends it when what it waits for has come."""

    why = "a wait"
    future: asyncio.Future[Any]

    def check(self, now_us: int) -> bool:
        """End the wait (resolve its future) if it is over; whether it is."""
        raise NotImplementedError

    def due_us(self) -> int | None:
        """Its deadline (µs since the epoch), or None."""
        return None

    def wake_ms(self, now_ms: int) -> int | None:
        """Until when the invocation could be suspended for it, or None when it cannot."""
        return None

    def ready(self) -> bool:
        """Whether it came while the invocation was suspending (it is then woken)."""
        return False


class _Sleep(_Wait):
    why = "wf.sleep_async"

    def __init__(self, deadline_us: int) -> None:
        self.deadline_us = deadline_us

    def check(self, now_us: int) -> bool:
        if now_us < self.deadline_us:
            return False
        self.future.set_result(None)
        return True

    def due_us(self) -> int | None:
        return self.deadline_us

    def wake_ms(self, now_ms: int) -> int | None:
        return waits.ms_ceil(self.deadline_us)


class _Signal(_Wait):
    def __init__(
        self, ctx: WorkflowContext, name: str, encoded: bytes, deadline_us: int | None, key: bytes
    ) -> None:
        self.ctx, self.name, self.encoded = ctx, name, encoded
        self.deadline_us, self.key = deadline_us, key
        self.why = f"wf.wait_signal_async({name!r})"

    def _pending(self) -> tuple[bytes, bytes] | None:
        return signals.pending_signal(
            self.ctx.app.store, self.ctx._record.invocation_id, self.encoded
        )

    def check(self, now_us: int) -> bool:
        ctx = self.ctx
        found = self._pending()
        if found is not None:
            # What was taken, then the delivery deleted, made durable together (in this order
            # should a background commit come between: a replay deletes it then).
            row, data = found
            value = codec.decode(data, what=f"signal {self.name!r}")
            ctx.app.store.put("data", self.key, waits.encoded_entry([row[-16:], data]), ctx._fence)
            ctx.app.store.delete("data", row, ctx._fence)
            ctx._execution.flush()  # taken, for good, before its value is seen
            self.future.set_result(value)
            return True
        if self.deadline_us is not None and now_us >= self.deadline_us:
            ctx.app.store.put("data", self.key, waits.encoded_entry(None), ctx._fence)
            ctx._execution.flush()
            self.future.set_exception(waits.timed_out(self.name, self.deadline_us))
            return True
        return False

    def due_us(self) -> int | None:
        return self.deadline_us

    def wake_ms(self, now_ms: int) -> int | None:
        until = now_ms + round(suspension.RECHECK_SECONDS * 1000)
        if self.deadline_us is not None:
            until = min(until, waits.ms_ceil(self.deadline_us))
        return until

    def ready(self) -> bool:
        return self._pending() is not None


class _Child(_Wait):
    def __init__(self, app: Pynenc, invocation: Invocation[Any], run_here: bool) -> None:
        self.app, self.invocation, self.run_here = app, invocation, run_here
        self.id = invocation._record.invocation_id
        self.why = f"its child {invocation.invocation_id}"

    def _finished(self) -> bool:
        record = self.app._load_record(self.id)
        if record is None or not record.status.finished:
            return False
        self.invocation._record = record
        return True

    def check(self, now_us: int) -> bool:
        if not self._finished():
            # A queued child that no worker holds is run here, as a plain wait runs it: a
            # pool of waiting parents never starves.
            if not (self.run_here and claims.claim_and_run(self.app, self.id)):
                return False
            if not self._finished():
                return False
        self.future.set_result(self.invocation)
        return True

    def wake_ms(self, now_ms: int) -> int | None:
        due = suspension.deferred_until(self.app, self.id)
        return None if due is None or due <= now_ms else due

    def ready(self) -> bool:
        record = self.app._load_record(self.id)
        return record is not None and record.status.finished


class Waits:
    """The pending waits of one running async invocation, and the poller that ends them.

    Attributes:
        loop: The loop the invocation's coroutine runs on.
        stopped: Ends with what stops the whole run: the invocation suspends, its workflow
            was cancelled, or the store failed.
    """

    def __init__(self, ctx: WorkflowContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.stopped: asyncio.Future[None] = self.loop.create_future()
        self._pending: list[_Wait] = []
        self._poller: asyncio.Task[None] | None = None
        self._nap: asyncio.Future[None] | None = None
        self._unflushed = False
        self._requested = False

    def add(self, wait: _Wait) -> asyncio.Future[Any]:
        """Start waiting for `wait`; returns the future it resolves."""
        wait.future = self.loop.create_future()
        self._pending.append(wait)
        self._unflushed = self._requested = True
        if self._poller is None:
            self._poller = self.loop.create_task(self._poll())
        elif self._nap is not None and not self._nap.done():
            self._nap.set_result(None)
        return wait.future

    def done(self, value: Any = None) -> asyncio.Future[Any]:
        """A future already resolved with `value` (a wait that ended before it began)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        future.set_result(value)
        return future

    def close(self) -> None:
        """The run is over: nothing more is awaited."""
        if self._poller is not None:
            self._poller.cancel()
        for wait in self._pending:
            wait.future.cancel()
        self._pending.clear()
        if not self.stopped.done():
            self.stopped.cancel()

    async def _poll(self) -> None:
        ctx = self.ctx
        pause = MIN_PAUSE
        cancel_checked = time.monotonic()
        while True:
            if not self._pending:
                await self._sleep(None)
                pause = MIN_PAUSE
                continue
            try:
                now_us = int(ctx.app.store.now_ms()) * 1000
                ended = self._check(now_us)
                with _ends_attempt_on_fault(ctx._execution):
                    if self._unflushed and not ctx._replay_only:
                        ctx._execution.flush()  # the deadlines are durable before the waits
                    self._unflushed = False
                    if time.monotonic() - cancel_checked >= waits.CANCEL_CHECK_SECONDS:
                        check_not_cancelled(ctx.app, ctx._record)  # a cancel ends the waits
                        cancel_checked = time.monotonic()
                    quiet = not ended and not self._requested
                    if quiet and self._pending and suspension.can_suspend(ctx):
                        self._suspend_if_long()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - it stops the run: `drive` raises it
                self.stopped.set_exception(exc)
                return
            self._requested = False
            pause = MIN_PAUSE if ended else min(pause * 2, MAX_PAUSE)
            await self._sleep(self._capped(pause, now_us))

    def _check(self, now_us: int) -> bool:
        """Check every pending wait, in the order requested; whether any ended."""
        execution = self.ctx._execution
        ended = False
        for wait in list(self._pending):
            over = wait.future.done()  # given up by its awaiter (a timeout, a cancel)
            if not over:
                try:
                    with _ends_attempt_on_fault(execution):
                        over = wait.check(now_us)
                except Exception as exc:  # noqa: BLE001 - its awaiter's to handle
                    wait.future.set_exception(exc)
                    over = True
            if over:
                self._pending.remove(wait)
                ended = True
            fault = execution.fault
            if fault is not None:
                raise fault
        return ended

    def _suspend_if_long(self) -> None:
        store = self.ctx.app.store
        now_ms = int(store.now_ms())
        wakes = [wait.wake_ms(now_ms) for wait in self._pending]
        if any(w is None for w in wakes):
            return  # one of them cannot be waited for suspended (a child another worker runs)
        until = min(w for w in wakes if w is not None)
        if (until - now_ms) / 1000 < suspension.SUSPEND_MIN_SECONDS:
            return
        pending = list(self._pending)
        why = ", ".join(dict.fromkeys(wait.why for wait in pending))
        suspension.suspend(self.ctx, until, why, lambda: any(w.ready() for w in pending))

    def _capped(self, pause: float, now_us: int) -> float:
        dues = [d for d in (wait.due_us() for wait in self._pending) if d is not None]
        if not dues:
            return pause
        return max(0.0, min(pause, (min(dues) - now_us) / 1e6))

    async def _sleep(self, seconds: float | None) -> None:
        """Pause `seconds` (None: until a wait is requested); a request ends the pause."""
        nap: asyncio.Future[None] = self.loop.create_future()
        self._nap = nap
        timer = None if seconds is None else self.loop.call_later(seconds, _resolve, nap)
        try:
            await nap
        finally:
            if timer is not None:
                timer.cancel()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _waits_here(ctx: WorkflowContext, call: str, plain: str) -> Waits:
    """The waits of the async task running on this thread's loop, else `InvalidArgumentError`
    pointing at the plain operation."""
    found = ctx._waits
    if found is None or not aio.loop_running() or asyncio.get_running_loop() is not found.loop:
        raise InvalidArgumentError(
            f"{call} is awaited in the body of an async task (async def), on its event loop; "
            f"{ctx.task.task_id} is a plain task (or this is another thread): call {plain} "
            "instead"
        )
    return found


def sleep_async(ctx: WorkflowContext, duration: object) -> asyncio.Future[None]:
    """`wf.sleep` for async tasks: the deadline is recorded now; await the future returned."""
    found = _waits_here(ctx, "wf.sleep_async()", "wf.sleep()")
    return _sleep(ctx, found, waits.sleep_deadline(ctx, "sleep_async", duration))


def sleep_until_async(ctx: WorkflowContext, when: object) -> asyncio.Future[None]:
    """`wf.sleep_until` for async tasks."""
    found = _waits_here(ctx, "wf.sleep_until_async()", "wf.sleep_until()")
    return _sleep(ctx, found, waits.until_deadline(ctx, "sleep_until_async", when))


def _sleep(ctx: WorkflowContext, found: Waits, deadline_us: int) -> asyncio.Future[None]:
    if ctx._replay_only or deadline_us <= int(ctx.app.store.now_ms()) * 1000:
        return found.done()
    return found.add(_Sleep(deadline_us))


def wait_signal_async(ctx: WorkflowContext, name: str, timeout: object) -> asyncio.Future[Any]:
    """`wf.wait_signal` for async tasks: the wait (and its deadline) is recorded now; the
    future returned ends with the delivery taken, or `TimeoutError`."""
    found = _waits_here(ctx, "wf.wait_signal_async()", "wf.wait_signal()")
    encoded, seconds = waits.signal_request(ctx, "wait_signal_async", name, timeout)
    execution = ctx._execution
    record = ctx._record
    with _ends_attempt_on_fault(execution):
        position = execution.position
        deadline_us = waits.signal_deadline(ctx, WAIT_SIGNAL_ASYNC + name, seconds)
        key = signal_outcome_key(
            uuid.UUID(ctx.workflow.workflow_id).bytes, record.invocation_id, ctx.attempt, position
        )
        outcome = ctx.app.store.get("data", key)
        if outcome is not None:
            future: asyncio.Future[Any] = found.loop.create_future()
            try:
                future.set_result(waits.replayed(ctx, name, encoded, outcome, deadline_us))
            except TimeoutError as exc:
                future.set_exception(exc)
            return future
    if ctx._replay_only:
        # Never taken in the run replayed (it returned without it): it never ends here either.
        return found.loop.create_future()
    return found.add(_Signal(ctx, name, encoded, deadline_us, key))


def execute_task_async(
    ctx: WorkflowContext, task: Task[..., Any], args: Any, kwargs: dict[str, Any]
) -> asyncio.Future[Invocation[Any]]:
    """`wf.execute_task` for async tasks: the child is dispatched now (and, inline, started);
    the future returned ends with its `Invocation` once it has finished."""
    found = _waits_here(ctx, "wf.execute_task_async()", "wf.execute_task()")
    invocation = dispatch_child(ctx, task, args, kwargs, concurrent=True)
    return _finished(ctx, found, invocation)


def _finished(
    ctx: WorkflowContext, found: Waits, invocation: Invocation[Any]
) -> asyncio.Future[Invocation[Any]]:
    """A future that ends with `invocation` once it has finished."""
    if invocation._record.status.finished:
        return found.done(invocation)
    running = invocation._running
    if running is None or running.get_loop() is not found.loop:
        run_here = ctx.app.config.execution == "queued" and not ctx._replay_only
        return found.add(_Child(ctx.app, invocation, run_here))
    out: asyncio.Future[Invocation[Any]] = found.loop.create_future()
    execution = ctx._execution

    def ended(source: asyncio.Future[Any]) -> None:
        if out.done():
            return
        if source.cancelled():
            out.cancel()
            return
        error = source.exception()
        if error is None:
            out.set_result(invocation)
            return
        if isinstance(error, ENGINE_ERRORS) or not isinstance(error, Exception):
            execution.fail(error)  # as a child run inline by a plain call ends the attempt
        out.set_exception(error)

    running.add_done_callback(ended)
    return out


async def wait_for_async(invocation: Invocation[Any], timeout: float | None) -> None:
    """Wait, on the running loop, until `invocation` has finished (`wait_async`)."""
    from pynenc.workflow.context import current_context

    if timeout is not None:
        timeout = checks.seconds("timeout", timeout, positive=False)
    app = invocation._app
    loop = asyncio.get_running_loop()
    ctx = current_context()
    found = None if ctx is None else ctx._waits
    try:
        if ctx is not None and found is not None and found.loop is loop:
            await asyncio.wait_for(_finished(ctx, found, invocation), timeout)
            return
        running = invocation._running
        if running is not None and running.get_loop() is loop:
            await asyncio.wait_for(asyncio.shield(running), timeout)
            return
    except TimeoutError:
        raise _late(invocation, timeout, None) from None
    await _poll(app, invocation, ctx, timeout)


async def _poll(
    app: Pynenc, invocation: Invocation[Any], ctx: WorkflowContext | None, timeout: float | None
) -> None:
    """Wait by reading the store (a queued invocation, or one run elsewhere), as
    `invocation.wait()` does but without blocking the loop."""
    raw = invocation._record.invocation_id
    start = time.monotonic()
    hint_at = None if ctx is not None else start + waiting.HINT_AFTER_SECONDS
    pause = MIN_PAUSE / 2
    while True:
        record = app._load_record(raw)
        if record is not None and record.status.finished:
            invocation._record = record
            return
        if ctx is not None and app.config.execution == "queued" and not ctx._replay_only:
            if claims.claim_and_run(app, raw):
                continue
        if hint_at is not None and time.monotonic() >= hint_at:
            hint_at = None
            hint = waiting.unclaimed_hint(app, raw)
            if hint is not None:
                waiting.wait_log.warning(
                    "invocation %s waited on for %.0f s: %s",
                    invocation.invocation_id,
                    waiting.HINT_AFTER_SECONDS,
                    hint,
                    extra=logs.extra(logs.subject_of(record, raw)),
                )
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            hint = None if ctx is not None else waiting.unclaimed_hint(app, raw)
            raise _late(invocation, timeout, hint)
        await asyncio.sleep(pause if left is None else min(pause, left))
        pause = min(pause * 2, MAX_PAUSE)


def _late(invocation: Invocation[Any], timeout: float | None, hint: str | None) -> TimeoutError:
    return TimeoutError(
        f"invocation {invocation.invocation_id} did not finish within {timeout} s"
        + ("" if hint is None else f": {hint}")
    )
