"""Read everything back from a (possibly damaged) store of the damage campaign and print
what each read gave, as one JSON object: `python damage_read.py STORE IDS_JSON`.

Each read is run on its own; an exception is recorded (class, whether it is a StoreError,
its table and key) instead of stopping the rest. Run in a child process by `damage.py`, so a
signal or a hang is seen by the parent.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any


def main() -> None:
    store, ids_file = sys.argv[1], sys.argv[2]
    os.environ["PYNENC_STORE"] = f"lmdb://{store}"
    side_log = os.environ["DAMAGE_SIDE_LOG"]
    ids = json.loads(open(ids_file).read())

    from damage_app import app

    from pynenc.errors import StoreError

    out: dict[str, Any] = {}

    def read(name: str, fn: Callable[[], Any]) -> None:
        try:
            out[name] = {"ok": fn()}
        except BaseException as exc:  # every failure is an outcome to classify
            if isinstance(exc, KeyboardInterrupt):
                raise
            out[name] = {
                "exc": type(exc).__name__,
                "store_error": isinstance(exc, StoreError),
                "table": getattr(exc, "table", None),
                "key": getattr(exc, "key", None),
                "msg": str(exc)[:400],
            }

    def invocation(inv_id: str) -> Any:
        inv = app.get_invocation(inv_id)
        if inv is None:
            return None
        fields = [inv.status.value, inv.task_id, inv.workflow.workflow_id, inv.attempt]
        if inv.status.value in ("success", "failed"):
            try:
                fields.append(repr(inv.result))
            except Exception as exc:
                if isinstance(exc, StoreError):
                    raise
                fields.append(f"raised {type(exc).__name__}: {exc}")
        return fields

    def journal(inv_id: str) -> Any:
        return [[e.position, e.operation, e.name, repr(e.value)] for e in app.journal(inv_id)]

    def replay(inv_id: str) -> Any:
        try:
            return repr(app.replay(inv_id))
        except Exception as exc:
            if isinstance(exc, StoreError) or type(exc).__name__ == "NonDeterminismError":
                raise
            return f"raised {type(exc).__name__}: {exc}"

    def recover() -> Any:
        before = open(side_log).read().splitlines() if os.path.exists(side_log) else []
        resumed = app.recover()
        results = sorted([i.invocation_id, i.status.value, repr(i.result)] for i in resumed)
        after = open(side_log).read().splitlines() if os.path.exists(side_log) else []
        return {"resumed": results, "side_effects_run": after[len(before) :]}

    read("list", lambda: sorted([i.invocation_id, i.status.value] for i in app.list_invocations()))
    for inv_id in ids["invocations"]:
        read(f"get {inv_id}", lambda i=inv_id: invocation(i))
        read(f"journal {inv_id}", lambda i=inv_id: journal(i))
    for wf_id in ids["workflows"]:
        for key in ("total", "customer"):
            read(f"data {wf_id} {key}", lambda w=wf_id, k=key: app.get_workflow_data(w, k))
    for inv_id in ids["finished"]:
        read(f"replay {inv_id}", lambda i=inv_id: replay(i))
    read("recover", recover)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
