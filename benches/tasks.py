"""The tasks the benchmarks run. Task ids are `benches.tasks.NAME`.

`app` takes its store, sync and execution mode from the `PYNENC_*` environment: queued workers
load it as `benches.tasks:app`. In-process measurements use `fresh_app`, a new app on a store of
its own with the same tasks registered. A task body reaches its `wf` through the module-level
task (`op_loop.wf`): `wf` is the context of the invocation running now, whichever app runs it.

Tasks time themselves with `time.perf_counter_ns` and leave the figure in `LAST`, so a replay
(which returns the recorded result) is measured as well as the first run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pynenc import Invocation, Pynenc, Task

__all__ = ["LAST", "app", "child", "fresh_app", "op_loop", "run_task", "sleeper", "steps"]

app = Pynenc("benches")

#: The last self-measurement of a task in this process: {"ns": elapsed, "n": operations}.
LAST: dict[str, int] = {}


def _one() -> int:
    return 1


@app.task
def op_loop(op: str, n: int) -> int:
    """Run `n` operations of kind `op` and time them."""
    wf = op_loop.wf
    if op == "random":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            wf.random()
    elif op == "random_via_task":  # `task.wf.random()` written in full: the property each time
        t0 = time.perf_counter_ns()
        for _ in range(n):
            op_loop.wf.random()
    elif op == "uuid":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            wf.uuid()
    elif op == "utc_now":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            wf.utc_now()
    elif op == "data":
        t0 = time.perf_counter_ns()
        for i in range(n):
            wf.set_data("k", i)
            wf.get_data("k")
    elif op == "data_via_task":  # the same, reaching `wf` through the task on every call
        t0 = time.perf_counter_ns()
        for i in range(n):
            op_loop.wf.set_data("k", i)
            op_loop.wf.get_data("k")
    elif op == "side_effect":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            wf.side_effect("fx", _one)
    else:
        raise ValueError(f"unknown op {op!r}")
    LAST["ns"] = time.perf_counter_ns() - t0
    LAST["n"] = n
    return n


@app.task
def child() -> int:
    """The trivial child of a durable step."""
    return 1


@app.task
def steps(n: int) -> int:
    """`n` durable child steps, one after the other."""
    wf = steps.wf
    t0 = time.perf_counter_ns()
    for _ in range(n):
        wf.execute_task(child).result  # noqa: B018 - the step waits for its child
    LAST["ns"] = time.perf_counter_ns() - t0
    LAST["n"] = n
    return n


@app.task
def sleeper(seconds: float) -> float:
    """A durable sleep; returns when it woke (the recorded clock, seconds since the epoch)."""
    sleeper.wf.sleep(seconds)
    return sleeper.wf.utc_now().timestamp()


TASKS = (op_loop, child, steps, sleeper)


def fresh_app(store: Path | str, *, sync: bool = True, execution: str = "inline") -> Pynenc:
    """A new app with every bench task registered, on the LMDB store in the directory `store`
    (a `Path`) or on the store the URL `store` names (a `str`)."""
    url = f"lmdb://{store}" if isinstance(store, Path) else store
    new = Pynenc("benches", store=url, sync=sync, execution=execution)
    for task in TASKS:
        new.task(**dataclasses.asdict(task.options))(task.func)
    return new


def run_task(on: Pynenc, task: Task[..., int], *args: object) -> Invocation[int]:
    """Call `task` (one of this module's) as registered on the app `on`."""
    return on.get_task(task.task_id)(*args)
