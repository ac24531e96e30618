"""Tasks whose payloads are dicts with keys out of sorted order, for the key-order tests.

`main(["start"])` runs `flow` (killed with SIGKILL right after its child finishes when
KEY_ORDER_CRASH names a file that does not exist yet); `main(["recover"])` prints the recovered
results; `main(["read", ID])` prints what `.result`, `app.replay` and `app.get_workflow_data`
give for invocation ID. Output is JSON, which keeps key order, so a
test sees the order each reader got. KEY_ORDER=reversed makes every dict the code builds have
its keys in reverse order, KEY_ORDER=canonical in the order canonical CBOR sorts them (shorter
first, then alphabetically, for these ASCII keys): the same values, in another order.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import date
from typing import Any

from pynenc import Pynenc

app = Pynenc("key-order")


def _reorder(value: Any) -> Any:
    """`value` with every dict in it rebuilt in the key order KEY_ORDER asks for."""
    how = os.environ.get("KEY_ORDER")
    if type(value) is dict:
        if how == "reversed":
            keys = list(reversed(value))
        elif how == "canonical":
            keys = sorted(value, key=lambda key: (len(key), key))
        else:
            keys = list(value)
        return {key: _reorder(value[key]) for key in keys}
    if type(value) is list:
        return [_reorder(item) for item in value]
    return value


def doc(tag: str, *, rich: bool = False) -> dict[str, Any]:
    """A nested value, no dict of which has its keys in sorted order. `rich` adds a date, so
    the value is encoded by cbor2 rather than by the Rust fast path."""
    value: dict[str, Any] = {
        "zebra": 1,
        "apple": {"z": [{"b": 2, "a": 1}], "a": None},
        "id": tag,
    }
    if rich:
        value["when"] = {"year": date(2024, 1, 2), "month": 1}
    return _reorder(value)


@app.task
def pair(payload: dict[str, Any], **kwargs: int) -> dict[str, Any]:
    """Reports the argument it got and the order of its keyword arguments."""
    return {"payload": payload, "kwargs": list(kwargs)}


@app.task
def flow() -> dict[str, Any]:
    wf = flow.wf
    wf.set_data("plain", doc("data"))
    wf.set_data("rich", doc("data", rich=True))
    before = {"plain": wf.get_data("plain"), "rich": wf.get_data("rich")}
    fx = wf.side_effect("fetch", lambda: doc("fx"))
    fx_rich = wf.side_effect("fetch-rich", lambda: doc("fx", rich=True))
    kwargs = _reorder({"zz": 1, "a": 2})
    kid = wf.execute_task(pair, doc("arg"), **kwargs).result
    marker = os.environ.get("KEY_ORDER_CRASH")
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    after = {"plain": wf.get_data("plain"), "rich": wf.get_data("rich")}
    return {
        "before": before,
        "fx": fx,
        "fx_rich": fx_rich,
        "kid": kid,
        "after": after,
        "made": doc("result", rich=True),
        "workflow": flow.workflow.workflow_id,
    }


def show(value: Any) -> str:
    return json.dumps(value, default=str)


def main(argv: list[str]) -> None:
    """The program's commands (see the module's docstring)."""
    if argv[0] == "start":
        print(show({"invocation": flow().invocation_id}))
    elif argv[0] == "recover":
        print(show([inv.result for inv in app.recover()]))
    else:
        inv = app.get_invocation(argv[1])
        assert inv is not None, argv
        result = inv.result
        wf_id = result["workflow"]
        print(
            show(
                {
                    "result": result,
                    "replay": app.replay(inv.invocation_id),
                    "plain": app.get_workflow_data(wf_id, "plain"),
                    "rich": app.get_workflow_data(wf_id, "rich"),
                }
            )
        )
