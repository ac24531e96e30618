"""A workflow killed with SIGKILL right after an inline child finished, for the causal-order
tests: the child's record is durable, and so must be the workflow's entries that led to it (a
random draw and the dispatch).

`python dispatch_order.py start` runs until killed; `running` prints the id of the interrupted
workflow; `recover` prints the recovered results as JSON. STEP_SHIFT (default 0) is added to the
child's argument: a resumed run that calls the child with another argument than the recorded
one has diverged. Every run of the child appends a line to the file named by STEP_LOG.
"""

from __future__ import annotations

import json
import os
import sys

from pynenc import Pynenc

app = Pynenc("dispatch-order-test")


@app.task
def step(x: int) -> dict[str, object]:
    with open(os.environ["STEP_LOG"], "a") as f:
        f.write(f"{x}\n")
    return {"x": x, "id": step.wf.uuid()}


@app.task
def workflow() -> dict[str, object]:
    drawn = workflow.wf.random()
    first = workflow.wf.execute_task(step, 1 + int(os.environ.get("STEP_SHIFT", "0"))).result
    second = workflow.wf.execute_task(step, 2).result
    return {"drawn": drawn, "first": first, "second": second}


if __name__ == "__main__":
    if sys.argv[1] == "start":
        os.environ["PYNENC_CRASH_AFTER"] = "step"  # SIGKILL once the first step is durable
        workflow()
    elif sys.argv[1] == "running":  # the id of the interrupted workflow
        [running] = app.list_invocations(task_id=workflow.task_id, status="running")
        print(running.invocation_id)
    else:
        print(json.dumps([inv.result for inv in app.recover()]))
