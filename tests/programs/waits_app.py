"""Workflows that wait (durable sleeps), for the tests that kill processes and run workers.

Run as `python waits_app.py start TASK ARGS_JSON` (calls the task, prints its id as JSON and
then its result), `python waits_app.py recover` (prints what `app.recover()` returned, with
results or errors), or serve it with `pynenc --app waits_app:app worker`. Each task appends a
JSON line to the file named by WAITS_LOG whenever its code runs (unrecorded), so a test can
see when each step ran and how often.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from pynenc import Pynenc

app = Pynenc("waits-test")


def log(**fields: Any) -> None:
    fields.setdefault("t", time.time())
    fields.setdefault("pid", os.getpid())
    with open(os.environ["WAITS_LOG"], "a") as f:
        f.write(json.dumps(fields) + "\n")


@app.task
def sleeper(seconds: float) -> dict[str, Any]:
    log(event="start", task="sleeper")
    before = sleeper.wf.utc_now()
    sleeper.wf.sleep(seconds)
    log(event="woke", task="sleeper")
    return {"before": before.timestamp(), "after": sleeper.wf.utc_now().timestamp()}


@app.task
def quick(tag: str) -> float:
    log(event="quick", tag=tag)
    return time.time()


@app.task
def parent(seconds: float) -> float:
    log(event="start", task="parent")
    slept: float = parent.wf.execute_task(napper, seconds).result
    log(event="done", task="parent")
    return slept


@app.task
def napper(seconds: float) -> float:
    log(event="start", task="napper")
    napper.wf.sleep(seconds)
    return seconds


def _recover() -> list[dict[str, Any]]:
    out = []
    for inv in app.recover():
        try:
            out.append({"id": inv.invocation_id, "result": inv.result})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out.append({"id": inv.invocation_id, "error": f"{type(exc).__name__}: {exc}"})
    return out


def main() -> None:
    command = sys.argv[1]
    if command == "start":
        task = {"sleeper": sleeper}[sys.argv[2]]
        inv = task(*json.loads(sys.argv[3]))
        print(json.dumps({"id": inv.invocation_id}), flush=True)
        try:
            print(json.dumps({"id": inv.invocation_id, "result": inv.result}), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            print(json.dumps({"id": inv.invocation_id, "error": str(exc)}), flush=True)
    elif command == "recover":
        print(json.dumps(_recover()), flush=True)


if __name__ == "__main__":
    main()
