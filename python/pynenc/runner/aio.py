"""Async tasks: where an `async def` task's coroutine runs, and what drives it.

An async task's coroutine always runs on an event loop, under `drive`, which gives it the
invocation's waits (`pynenc.runner.aio_waits`) and ends it when the invocation is suspended:

- run by a worker, by `app.recover()`, or called where no loop runs in the thread: on a loop of
  its own in that thread (`asyncio.run`);
- called where a loop runs, from asyncio code or from another async task (inline): as an
  `asyncio` task on that loop, started at once; `await invocation.result_async()` waits for it;
- called (inline) from a plain task whose thread runs a loop (its caller's): on a loop of its
  own in a thread of its own, and the call waits for it, as every plain call does.

A plain (`def`) child of an async task, dispatched with `wf.execute_task_async` inline, runs in
a thread of the loop's default executor, so children awaited together run side by side.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pynenc.errors import BlockingCallError

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.invocation import InvocationRecord
    from pynenc.workflow.context import WorkflowContext

__all__ = [
    "drive",
    "loop_running",
    "refuse_blocking",
    "run_coroutine",
    "start",
    "start_in_thread",
]

#: Invocations started on a loop and not finished yet: a loop keeps only weak references to
#: its tasks, and one nobody awaits must still run to its end.
_STARTED: set[asyncio.Future[Any]] = set()


def loop_running() -> bool:
    """Whether an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def awaits_here(ctx: WorkflowContext | None) -> bool:
    """Whether the code calling now runs on a loop and can await: an async task's body, or
    asyncio code outside any task. A plain task run from such code is not: it blocks its
    caller's loop by its nature, and its own waits block with it."""
    return loop_running() and (ctx is None or ctx.task.is_async)


def refuse_blocking(ctx: WorkflowContext | None, call: str, twin: str) -> None:
    """Raise `BlockingCallError` when `call` would block an event loop it could await on
    instead (see `awaits_here`), naming `twin`, the call to await."""
    if not awaits_here(ctx):
        return
    where = (
        "the body of async task " + ctx.task.task_id
        if ctx is not None
        else "asyncio code (a coroutine, or code it calls)"
    )
    raise BlockingCallError(
        f"{call} blocks its thread, and an event loop runs in it ({where}): every coroutine "
        f"of that loop would stall meanwhile; use `await {twin}` instead",
        twin,
    )


def run_coroutine(ctx: WorkflowContext, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run an async task's coroutine to its end from plain code: on a loop of its own in
    this thread, or, when a loop runs here already, in a thread of its own."""
    if not loop_running():
        return asyncio.run(drive(ctx, coro))
    context = contextvars.copy_context()  # the invocation's context goes along
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((context.run(asyncio.run, drive(ctx, coro)), None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            outcome.append((None, exc))

    thread = threading.Thread(target=target, name=f"pynenc-async-{ctx.invocation_id}")
    thread.start()
    thread.join()
    value, error = outcome[0]
    if error is not None:
        raise error
    return value


async def drive(ctx: WorkflowContext, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await the task's coroutine with the invocation's waits open; when those stop it (the
    invocation suspends, its workflow is cancelled, the store fails) the coroutine is
    cancelled and what stopped it is raised."""
    from pynenc.runner.aio_waits import Waits

    waits = Waits(ctx)
    ctx._waits = waits
    main = asyncio.ensure_future(coro)  # in this context: the task's body sees `wf`
    try:
        await asyncio.wait((main, waits.stopped), return_when=asyncio.FIRST_COMPLETED)
        if main.done():
            return main.result()
        main.cancel()
        await asyncio.wait((main,))  # its `finally` blocks run; what it raises is dropped
        if not main.cancelled():
            main.exception()
        error = waits.stopped.exception()
        assert error is not None  # `stopped` only ever ends with what stopped the run
        raise error
    except BaseException:
        if not main.done():
            main.cancel()  # this run was itself cancelled (its loop shuts down)
        raise
    finally:
        waits.close()
        ctx._waits = None


def _keep(future: asyncio.Future[Any]) -> asyncio.Future[Any]:
    _STARTED.add(future)
    future.add_done_callback(_STARTED.discard)
    return future


def start(app: Pynenc, record: InvocationRecord, *, fresh: bool = False) -> asyncio.Task[Any]:
    """Start an inline invocation of an async task on the running loop, as an `asyncio`
    task; it runs whether or not anything awaits it."""
    from pynenc.runner.execute import run_async

    task = asyncio.get_running_loop().create_task(run_async(app, record, fresh=fresh))
    _keep(task)
    return task


def start_in_thread(
    app: Pynenc, record: InvocationRecord, *, fresh: bool = False
) -> asyncio.Future[Any]:
    """Start an inline invocation of a plain task in a thread of the running loop's default
    executor."""
    from pynenc.runner.execute import run

    loop = asyncio.get_running_loop()
    call = functools.partial(run, app, record, fresh=fresh)
    future = loop.run_in_executor(None, contextvars.copy_context().run, call)
    _keep(future)
    return future
