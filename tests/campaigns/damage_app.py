"""The app of the damage campaign: orders that finish, fail, or are stranded by a SIGKILL.

Its store is `PYNENC_STORE`; every side effect that really runs appends a line to the file
named by `DAMAGE_SIDE_LOG`, so a side effect run twice is seen. Values are chosen to show
silent damage: strings, floats with many digits, nested results of children.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from pynenc import Pynenc

app = Pynenc("damage-campaign")

CUSTOMERS = ("alice", "bob", "carol")


def side(line: str) -> str:
    with open(os.environ["DAMAGE_SIDE_LOG"], "a") as f:
        f.write(line + "\n")
    return line


@app.task
def item(customer: str, k: int) -> dict[str, Any]:
    return {"customer": customer, "k": k, "price": 1234.5678 * (k + 1), "r": item.wf.random()}


@app.task
def order(n: int) -> dict[str, Any]:
    wf = order.wf
    customer = CUSTOMERS[n % len(CUSTOMERS)]
    token = wf.uuid()
    items = [wf.execute_task(item, customer, k).result for k in range(2)]
    charge = wf.side_effect("charge", lambda: side(f"charge {n} {customer}"))
    wf.set_data("total", sum(i["price"] for i in items))
    wf.set_data("customer", customer)
    if n % 4 == 3:
        raise ValueError(f"order {n} refused")
    if os.environ.get("DAMAGE_STRAND") == str(n):
        os.kill(os.getpid(), signal.SIGKILL)
    ship = wf.side_effect("ship", lambda: side(f"ship {n}"))
    return {"customer": customer, "token": token, "items": items, "charge": charge, "ship": ship}
