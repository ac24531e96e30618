"""Tasks that log through their own logger (`myapp`), each line naming the invocation the
task body sees, for the logging tests. `LOGGED_DIVERGE=1` makes `flow` draw a uuid first, so
a recorded run of it diverges at position 0."""

from __future__ import annotations

import logging
import os
from typing import Any

from pynenc import Pynenc

app = Pynenc("logged")
user = logging.getLogger("myapp")


@app.task(name="logged_app.leaf")
def leaf(n: int) -> int:
    user.info("leaf %d in %s", n, leaf.wf.invocation_id)
    return n * 2


@app.task(name="logged_app.side_flow", force_new_workflow=True)
def side_flow(n: int) -> int:
    user.info("side_flow in %s", side_flow.wf.invocation_id)
    return leaf(n).result + 1


@app.task(name="logged_app.flow")
def flow(n: int) -> dict[str, Any]:
    if os.environ.get("LOGGED_DIVERGE"):
        flow.wf.uuid()
    user.info("flow starts in %s", flow.wf.invocation_id)
    leaves = [leaf(i).result for i in range(n)]
    side = side_flow(10).result
    user.warning("flow ends in %s", flow.wf.invocation_id)
    return {"leaves": leaves, "side": side}
