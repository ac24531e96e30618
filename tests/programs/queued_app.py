"""Tasks for the worker tests. Every task appends JSON lines to the file named by
QUEUED_LOG (raw, unrecorded), so tests can count executions across processes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pynenc import Pynenc

app = Pynenc("queued-test")


def log(**fields: Any) -> None:
    with open(os.environ["QUEUED_LOG"], "a") as f:
        f.write(json.dumps(fields) + "\n")
        f.flush()


@app.task
def step(n: int) -> dict[str, Any]:
    log(event="start", task="step", n=n, inv=step.wf.invocation_id, pid=os.getpid())
    time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
    value = {
        "n": n,
        "r": step.wf.random(),
        "id": step.wf.uuid(),
        "at": step.wf.utc_now().isoformat(),
    }
    seen = step.wf.side_effect("report", lambda: value)
    step.wf.set_data(f"step-{n}", seen["id"])
    return seen


@app.task
def campaign(children: int) -> dict[str, Any]:
    log(event="start", task="campaign", inv=campaign.wf.invocation_id, pid=os.getpid())
    out: dict[str, Any] = {
        "head": campaign.wf.random(),
        "started": campaign.wf.utc_now().isoformat(),
    }
    results = []
    for n in range(children):
        results.append(campaign.wf.execute_task(step, n).result)
        out[f"read-{n}"] = campaign.wf.get_data(f"step-{n}")
        time.sleep(float(os.environ.get("PARENT_SLEEP", "0")))
    out["steps"] = results
    token = campaign.wf.uuid()
    out["token"] = campaign.wf.side_effect("token", lambda: token)
    return out


@app.task
def chain(depth: int) -> int:
    if depth == 0:
        return 0
    return chain(depth - 1).result + 1


@app.task
def slow_once(tag: str) -> dict[str, Any]:
    """Sleeps on its first execution only (a flag file marks it), then reports who ran it."""
    flag = os.environ["QUEUED_LOG"] + f".{tag}.started"
    first = not os.path.exists(flag)
    log(event="start", task="slow_once", pid=os.getpid(), first=first)
    if first:
        open(flag, "w").close()
        time.sleep(float(os.environ.get("SLOW_SLEEP", "3")))
    slow_once.wf.set_data("finisher", os.getpid())
    return {"pid": os.getpid(), "r": slow_once.wf.random()}


@app.task
def slow_dispatch(tag: str) -> dict[str, Any]:
    """Sleeps on its first execution only (a flag file marks it), then dispatches a child: a
    run paused in the sleep and taken over makes the dispatch its first write when resumed."""
    flag = os.environ["QUEUED_LOG"] + f".{tag}.started"
    first = not os.path.exists(flag)
    log(event="start", task="slow_dispatch", pid=os.getpid(), first=first)
    if first:
        open(flag, "w").close()
        time.sleep(float(os.environ.get("SLOW_SLEEP", "3")))
    handle = slow_dispatch.wf.execute_task(step, 7)
    return {"pid": os.getpid(), "child": handle.invocation_id, "n": handle.result["n"]}


@app.task
def slow_effect(tag: str) -> int:
    """Sleeps on its first execution only (a flag file marks it), then runs a side effect that
    logs who ran it: a run paused in the sleep and taken over reaches the effect when resumed."""
    flag = os.environ["QUEUED_LOG"] + f".{tag}.started"
    first = not os.path.exists(flag)
    log(event="start", task="slow_effect", pid=os.getpid(), first=first)
    if first:
        open(flag, "w").close()
        time.sleep(float(os.environ.get("SLOW_SLEEP", "3")))

    def charge() -> int:
        log(event="charge", task="slow_effect", pid=os.getpid())
        return os.getpid()

    return slow_effect.wf.side_effect("charge", charge)


class Flaky(Exception):
    pass


@app.task(max_retries=3, retry_for=(Flaky,), retry_backoff=0.01)
def flaky(failures: int) -> dict[str, Any]:
    draw = flaky.wf.random()
    log(event="attempt", task="flaky", attempt=flaky.wf.attempt, draw=draw)
    if flaky.wf.attempt < failures:
        raise Flaky(f"attempt {flaky.wf.attempt} failed")
    return {"attempt": flaky.wf.attempt, "draw": draw}


@app.task(max_retries=3, retry_for=(Flaky,))
def wrong_error() -> None:
    log(event="attempt", task="wrong_error")
    raise KeyError("not retried")


@app.task
def suicide() -> None:
    """Kills whichever process runs it: poison work."""
    import signal

    log(event="start", task="suicide", pid=os.getpid())
    os.kill(os.getpid(), signal.SIGKILL)


@app.task
def suicide_parent() -> None:
    """Waits on a child that kills whichever process runs it."""
    suicide_parent.wf.execute_task(suicide).result  # waits on the poison child
