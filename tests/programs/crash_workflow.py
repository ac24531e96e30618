"""A workflow killed with SIGKILL inside its second child, for the crash tests.

Run as `python crash_workflow.py start` (runs until killed) or `python crash_workflow.py recover`
(prints the recovered result as JSON). Every execution of a task appends a line to the file
named by CRASH_LOG, so the test can count runs and compare what was seen before and after.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from pynenc import Pynenc

app = Pynenc("crash-test")


def log(**fields: Any) -> None:
    with open(os.environ["CRASH_LOG"], "a") as f:
        f.write(json.dumps(fields) + "\n")


@app.task
def first_child(x: int) -> dict[str, Any]:
    log(event="run", task="first_child")
    return {"x": x, "id": first_child.wf.uuid(), "at": first_child.wf.utc_now().isoformat()}


@app.task
def second_child(seen: dict[str, Any]) -> dict[str, Any]:
    log(event="run", task="second_child")
    own = {
        "random": second_child.wf.random(),
        "uuid": second_child.wf.uuid(),
        "at": second_child.wf.utc_now().isoformat(),
    }
    # Values leave the process only through a recorded side effect: made durable first.
    second_child.wf.side_effect("report", lambda: log(event="report", seen=seen, own=own))
    if os.environ.get("CRASH") == "1" and not os.path.exists(os.environ["CRASH_LOG"] + ".killed"):
        open(os.environ["CRASH_LOG"] + ".killed", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"own": own, "after": second_child.wf.utc_now().isoformat()}


@app.task
def workflow(n: int) -> dict[str, Any]:
    seen = {
        "random": workflow.wf.random(),
        "uuid": workflow.wf.uuid(),
        "at": workflow.wf.utc_now().isoformat(),
    }
    one = workflow.wf.execute_task(first_child, n).result
    seen["first"] = one
    seen["between"] = workflow.wf.utc_now().isoformat()
    workflow.wf.set_data("seen", seen)
    two = workflow.wf.execute_task(second_child, seen).result
    return {"seen": seen, "second": two, "end": workflow.wf.utc_now().isoformat()}


if __name__ == "__main__":
    if sys.argv[1] == "start":
        workflow(7)
    else:
        print(json.dumps([inv.result for inv in app.recover()]))
