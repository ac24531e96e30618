"""A workflow killed mid-way, then resumed by code that changed since (`DRIFT_CHANGED=1`).

`python drift.py N` runs `drift.order(N)` inline and prints its id; with `DRIFT_CRASH=1` the
process kills itself with SIGKILL once the order's charge is durable. `PYNENC_EXECUTION=queued
python drift.py N` only enqueues it, for workers (`--app drift:app`), which DRIFT_CRASH kills
the same way. Changed, the order draws a uuid where its journal recorded a random number.
"""

from __future__ import annotations

import os
import signal
import sys

from pynenc import Pynenc

app = Pynenc("drift")


@app.task(name="drift.charge")
def charge(n: int) -> int:
    return n * 10


@app.task(name="drift.order")
def order(n: int) -> dict[str, object]:
    order.wf.set_data("n", n)
    if os.environ.get("DRIFT_CHANGED") == "1":
        drawn: object = order.wf.uuid()
    else:
        drawn = order.wf.random()
    charged = order.wf.execute_task(charge, n).result
    if os.environ.get("DRIFT_CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"charged": charged, "drawn": drawn}


if __name__ == "__main__":
    print(order(int(sys.argv[1])).invocation_id, flush=True)
