"""Workflows that wait (durable sleeps, signals, events), for the tests that kill processes and
run workers.

Run as `python waits_app.py start TASK ARGS_JSON` (calls the task, prints its id as JSON and
then its result), `python waits_app.py recover` (prints what `app.recover()` returned, with
results or errors), or serve it with `pynenc --app waits_app:app worker`. Each task appends a
JSON line to the file named by WAITS_LOG whenever its code runs (unrecorded), so a test can
see when each step ran and how often; `WAITS_KILL=STEP` kills the process with SIGKILL the
first time the code reaches `crash_point(STEP)`.
"""

from __future__ import annotations

import json
import os
import signal
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


def crash_point(step: str) -> None:
    """SIGKILL this process the first time any process gets here with WAITS_KILL=step."""
    flag = os.environ["WAITS_LOG"] + f".killed-{step}"
    if os.environ.get("WAITS_KILL") == step and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


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


@app.task
def receiver(count: int, timeout: float | None = None) -> list[Any]:
    """Takes `count` signals `item` (each then logged through a side effect); a wait that times
    out adds "timeout" and ends the loop."""
    got: list[Any] = []
    for n in range(count):
        try:
            value = receiver.wf.wait_signal("item", timeout=timeout)
        except TimeoutError as exc:
            error = str(exc)
            receiver.wf.side_effect(f"timeout-{n}", lambda e=error: log(event="timeout", error=e))
            got.append("timeout")
            break
        crash_point(f"consumed-{n}")
        seen = {"event": "seen", "n": n, "value": value}
        receiver.wf.side_effect(f"seen-{n}", lambda seen=seen: log(**seen))
        got.append(value)
    return got


@app.task
def publisher(delay: float) -> str:
    publisher.wf.sleep(delay)
    publisher.wf.set_event("progress", {"step": 1})
    return "published"


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
        task = {"sleeper": sleeper, "receiver": receiver, "publisher": publisher}[sys.argv[2]]
        inv = task(*json.loads(sys.argv[3]))
        print(json.dumps({"id": inv.invocation_id}), flush=True)
        try:
            print(json.dumps({"id": inv.invocation_id, "result": inv.result}), flush=True)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            print(json.dumps({"id": inv.invocation_id, "error": str(exc)}), flush=True)
    elif command == "recover":
        print(json.dumps(_recover()), flush=True)
    elif command == "signal":
        workflow_id, first, count = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        for n in range(first, first + count):
            app.signal(workflow_id, "item", [first, n])
        print(json.dumps({"sent": count}), flush=True)


if __name__ == "__main__":
    main()
