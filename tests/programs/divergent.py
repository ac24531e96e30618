"""Workflows killed mid-way, then resumed by code that may have changed since (`CHANGED=1`).

Usage: `divergent.py start TASK` (runs TASK until it is killed), `divergent.py recover`,
`divergent.py replay TASK`, `divergent.py state`. Each prints one JSON line; the store comes
from `PYNENC_STORE` and every run of a function with an effect is logged to `RUN_LOG`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from pynenc import NonDeterminismError, Pynenc

app = Pynenc("divergent")
CHANGED = os.environ.get("CHANGED") == "1"
COMMAND = sys.argv[1]


def note(what: str) -> None:
    with open(os.environ["RUN_LOG"], "a") as log:
        log.write(what + "\n")


def die_if_starting() -> None:
    if COMMAND == "start":
        os.kill(os.getpid(), signal.SIGKILL)


@app.task
def charge(n: int) -> int:
    note(f"charge {n}")
    return n


def call_gateway() -> str:
    note("gateway")
    raise ConnectionError("gateway down")


@app.task
def catcher() -> dict[str, Any]:
    """Catches the exception its side effect raised, then goes on."""
    try:
        outcome = catcher.wf.side_effect("call", call_gateway)
    except ConnectionError as exc:
        outcome = f"caught {exc}"
    drawn = catcher.wf.random()
    die_if_starting()
    return {"outcome": outcome, "drawn": drawn}


@app.task
def shrinking() -> str:
    """Charges once; changed, it returns before the charge its journal recorded."""
    shrinking.wf.random()
    if CHANGED:
        return "skipped the charge"
    shrinking.wf.execute_task(charge, 1).result  # waits for the charge
    die_if_starting()
    return "charged"


@app.task
def stable() -> float:
    drawn = stable.wf.random()
    die_if_starting()
    return drawn


@app.task
def slow_resume() -> float:
    """Takes a second to finish when resumed, so two recoveries overlap."""
    note("slow_resume")
    drawn = slow_resume.wf.random()
    die_if_starting()
    time.sleep(1.0)
    return drawn


class Flaky(Exception):
    pass


@app.task(max_retries=1, retry_for=Flaky)
def leaf() -> int:
    """Fails its first attempt; its retry (whose record is stored as running) is killed once."""
    attempt = leaf.wf.attempt
    note(f"leaf {attempt}")
    if attempt == 0:
        raise Flaky("first attempt")
    die_if_starting()
    return attempt


@app.task
def middle() -> int:
    return middle.wf.execute_task(leaf).result


@app.task
def nested() -> int:
    return nested.wf.execute_task(middle).result


if os.environ.get("FORGET") != "1":

    @app.task
    def forgotten() -> float:
        """A task that a recovering process may not know (`FORGET=1`)."""
        drawn = forgotten.wf.random()
        die_if_starting()
        return drawn


def top_level(name: str) -> Any:
    [inv] = [i for i in app.list_invocations(top_level=True) if i.task_id.endswith("." + name)]
    return inv


if COMMAND == "start":
    app.get_task(f"{__name__}.{sys.argv[2]}")()
elif COMMAND == "recover":
    try:
        print(json.dumps({"resumed": [[i.task_id, i.result] for i in app.recover()]}))
    except NonDeterminismError as exc:
        print(json.dumps({"diverged": str(exc), "notes": getattr(exc, "__notes__", [])}))
elif COMMAND == "recover-then-delegate":
    # A long-lived process whose recovery stops on an error hands what it picked back: a
    # recovery in another process, while this one still lives, resumes it.
    try:
        app.recover()
    except Exception as exc:  # noqa: BLE001 - reported, then delegated
        failed = f"{type(exc).__name__}: {exc}"
    child = subprocess.run(
        [sys.executable, __file__, "recover"],
        env={**os.environ, "FORGET": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    print(json.dumps({"failed": failed, "delegated": json.loads(child.stdout)}))
elif COMMAND == "replay":
    print(json.dumps({"replayed": app.replay(top_level(sys.argv[2]).invocation_id)}))
elif COMMAND == "state":
    invocations = app.list_invocations(top_level=True)
    print(json.dumps({i.task_id.rsplit(".", 1)[1]: i.status.value for i in invocations}))
