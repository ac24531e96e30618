"""Side effects at their edges, for tests/test_side_effect_edges.py: an exception that cannot
be printed, an interruption inside a side effect's function, a side effect nested in another,
a task that exits. `PYNENC_STORE` names the store; `EDGE_LOG` a file where every call of a side
effect's function is logged; `KILL=1` makes a task SIGKILL its process right after its side
effects are recorded."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from pynenc import Pynenc

app = Pynenc("edges", sync=False)


def log(what: str) -> None:
    with open(os.environ["EDGE_LOG"], "a") as f:
        f.write(what + "\n")


def calls() -> list[str]:
    path = os.environ["EDGE_LOG"]
    return open(path).read().split() if os.path.exists(path) else []


def maybe_kill() -> None:
    if os.environ.get("KILL") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


class Unprintable(ValueError):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")

    def __repr__(self) -> str:
        raise RuntimeError("nor represented")


@app.task
def unprintable() -> dict[str, Any]:
    def fail() -> None:
        log("unprintable")
        raise Unprintable("boom", 42)

    try:
        unprintable.wf.side_effect("fail", fail)
    except Unprintable as exc:
        caught = {"type": type(exc).__name__, "args": list(exc.args)}
    maybe_kill()
    return {"caught": caught, "draw": unprintable.wf.random()}


INTERRUPTS = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}


@app.task
def interrupted(kind: str) -> dict[str, Any]:
    def once() -> str:
        # Interrupted the first time only, as a deployment's stop would be.
        first = "interrupted" not in calls()
        log("interrupted")
        if first:
            raise INTERRUPTS[kind](7)
        return "done"

    try:
        value = interrupted.wf.side_effect("once", once)
    except (SystemExit, KeyboardInterrupt):
        value = "caught"  # the careless part: the interruption is swallowed
    interrupted.wf.set_data("after", value)
    maybe_kill()
    return {"value": value, "draw": interrupted.wf.random()}


@app.task
def nested() -> dict[str, Any]:
    def inner_side_effect() -> int:
        log("nested-outer")
        return nested.wf.side_effect("inner", lambda: log("nested-inner") or 1)

    def swallowing() -> int:
        log("nested-swallowing")
        try:
            nested.wf.random()
        except Exception:  # noqa: BLE001 - the refusal is the outcome even when swallowed
            pass
        return 2

    seen = []
    for name, fn in (("outer", inner_side_effect), ("swallowing", swallowing)):
        try:
            seen.append(nested.wf.side_effect(name, fn))
        except ValueError as exc:  # InvalidArgumentError is a ValueError
            seen.append([type(exc).__name__, "cannot nest" in str(exc)])
    maybe_kill()
    return {"seen": seen, "draw": nested.wf.random()}


@app.task
def exits(code: int) -> None:
    exits.wf.side_effect("before", lambda: log("exits"))
    maybe_kill()
    sys.exit(code)


@app.task
def ctrl_c() -> str:
    ctrl_c.wf.side_effect("before", lambda: log("ctrl_c"))
    maybe_kill()
    if os.environ.get("INTERRUPT") == "1":
        raise KeyboardInterrupt
    return "finished"
