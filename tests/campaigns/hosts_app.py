"""The app of the hosts campaign: parent workflows that fan out to children, run by workers on
several hosts (network namespaces) against one PostgreSQL store (`PYNENC_STORE`).

Every time a body starts, it appends a JSON line to the file `HOSTS_LOG` names (raw, never
recorded): the invocation, its host and pid, when the body was entered, and the status its
record had when the store answered, so a body that runs again after its invocation had
finished is seen. Every side effect
that really runs appends a line too. Results depend only on the arguments, so a run with faults
must return exactly what a run without them returns; the recorded values (`wf.random()`,
`wf.uuid()`) go into workflow data, where the campaign checks them against the journals.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Any

from pynenc import Pynenc

app = Pynenc("hosts-campaign")

# Task ids are given: the campaign loads this module under other names to drive a run.

CHILDREN = 5


def log(event: str, **fields: Any) -> None:
    """Append an event to `HOSTS_LOG` (a process without it, such as a replay, logs nothing)."""
    path = os.environ.get("HOSTS_LOG")
    if not path:
        return
    line = {"event": event, "host": socket.gethostname(), "pid": os.getpid(), "t": time.time()}
    with open(path, "a") as f:
        f.write(json.dumps({**line, **fields}) + "\n")


def _status_now(invocation_id: str) -> str:
    """The status the store holds for this invocation now (read outside the journal)."""
    found = app.get_invocation(invocation_id)
    return "missing" if found is None else found.status.value


def _work(p: int, k: int) -> str:
    log("effect", what="work", p=p, k=k)
    time.sleep(float(os.environ.get("CHILD_SLEEP", "0.05")))
    return hashlib.sha256(f"work {p}/{k}".encode()).hexdigest()[:16]


@app.task(name="hosts_app.child")
def child(p: int, k: int) -> dict[str, Any]:
    wf = child.wf
    entered = time.time()
    status = _status_now(wf.invocation_id)
    log("start", task="child", inv=wf.invocation_id, p=p, k=k, status=status, t=entered)
    wf.set_data(f"r-{k}", wf.random())
    work = wf.side_effect("work", lambda: _work(p, k))
    return {"p": p, "k": k, "work": work}


def _summary(p: int, works: list[str]) -> str:
    log("effect", what="summary", p=p)
    return hashlib.sha256(f"summary {p} {works}".encode()).hexdigest()[:16]


@app.task(name="hosts_app.parent")
def parent(p: int) -> dict[str, Any]:
    wf = parent.wf
    entered = time.time()
    status = _status_now(wf.invocation_id)
    log("start", task="parent", inv=wf.invocation_id, p=p, status=status, t=entered)
    wf.set_data("token", wf.uuid())
    handles = [wf.execute_task(child, p, k) for k in range(CHILDREN)]
    results = [h.result for h in handles]
    drawn = [wf.get_data(f"r-{k}") for k in range(CHILDREN)]
    summary = wf.side_effect("summary", lambda: _summary(p, [r["work"] for r in results]))
    return {
        "p": p,
        "children": results,
        "summary": summary,
        "data_seen": all(isinstance(r, float) and 0.0 <= r < 1.0 for r in drawn),
    }
