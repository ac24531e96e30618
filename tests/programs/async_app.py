"""Async workflows (`async def` tasks), for the tests that kill processes and run workers.

Run as `python async_app.py start TASK ARGS_JSON` (calls the task, prints its id as JSON, then
its result), `python async_app.py recover` (prints what `app.recover()` returned), or serve it
with `pynenc --app async_app:app worker`. Each task appends a JSON line to the file named by
WAITS_LOG whenever its code runs (unrecorded); `WAITS_KILL=STEP` kills the process with
SIGKILL the first time the code reaches `crash_point(STEP)`; `LEG_DELAYS` (a JSON list)
overrides how long each `leg` takes, so a recovery can finish the legs in another order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from pynenc import Pynenc

app = Pynenc("async-test")


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
async def leg(i: int, delay: float) -> dict[str, Any]:
    """Takes `delay` seconds (or what LEG_DELAYS says for leg `i`), unrecorded."""
    log(event="leg.start", i=i)
    override = os.environ.get("LEG_DELAYS")
    await asyncio.sleep(json.loads(override)[i] if override else delay)
    crash_point(f"leg{i}")
    log(event="leg.done", i=i)
    return {"i": i, "pid": os.getpid()}


@app.task
async def fan_out(delays: list[float]) -> dict[str, Any]:
    """Runs one `leg` per delay side by side, then draws a uuid."""
    wf = fan_out.wf
    log(event="fan_out.start", id=wf.invocation_id)
    legs = await asyncio.gather(*(wf.execute_task_async(leg, i, d) for i, d in enumerate(delays)))
    token = wf.uuid()
    log(event="fan_out.done")
    return {"legs": [inv.result for inv in legs], "token": token}


@app.task
async def nap(durations: list[float]) -> dict[str, float]:
    """Sleeps every duration at once (durably), then reports when it started and ended."""
    wf = nap.wf
    before = wf.utc_now()
    log(event="nap.start")
    await asyncio.gather(*(wf.sleep_async(d) for d in durations))
    after = wf.utc_now()
    log(event="nap.done")
    return {"before": before.timestamp(), "after": after.timestamp()}


@app.task
async def inbox(count: int) -> list[Any]:
    """Takes `count` signals `item`, waiting for them all at once."""
    wf = inbox.wf
    log(event="inbox.start")
    return list(await asyncio.gather(*(wf.wait_signal_async("item") for _ in range(count))))


def main() -> None:
    command = sys.argv[1]
    if command == "start":
        task = app.get_task(f"async_app.{sys.argv[2]}")
        invocation = task(*json.loads(sys.argv[3]))
        print(json.dumps({"id": invocation.invocation_id}), flush=True)
        print(json.dumps({"result": invocation.result}), flush=True)
    elif command == "recover":
        resumed = app.recover()
        print(json.dumps([{"id": i.invocation_id, "result": i.result} for i in resumed]))


if __name__ == "__main__":
    main()
