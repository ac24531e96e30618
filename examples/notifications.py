"""Delivery notifications that really wait: the reference scenario's "schedules delivery
notifications", made real with a durable timer and a signal.

The order workflow computes its notification time once (`wf.utc_now()` plus a delay), sleeps
until then with `wf.sleep_until` (the deadline is journaled), sends the notification through a
side effect (recorded, so never sent twice), and then waits for the courier's `delivered`
signal, with a timeout.

`python examples/notifications.py` runs the whole story: run 1 starts the workflow in a child
process, which is killed with SIGKILL while it sleeps; this process then resumes it with
`app.recover()`. The resumed workflow waits only for what is left of the sleep, sends the
notification exactly once at the recorded time, and a courier thread here answers with the
`delivered` signal once the notification is in the outbox.

The outbox is `outbox.jsonl` in the working directory (one line per notification sent); the
store is the default embedded one (`.pynenc` in the working directory, or `PYNENC_STORE`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pynenc import Pynenc

app = Pynenc()

#: Where the "email provider" writes what it sent: one JSON line per notification.
OUTBOX = Path("outbox.jsonl")


def send_notification(order_id: str, tracking: str) -> str:
    """The outside world: hand the notification to the provider (here, append to the outbox)."""
    sent_at = datetime.now(UTC).isoformat()
    with OUTBOX.open("a") as outbox:
        outbox.write(json.dumps({"order_id": order_id, "tracking": tracking, "sent_at": sent_at}))
        outbox.write("\n")
    return sent_at


@app.task(force_new_workflow=True)
def notify_order_workflow(order_id: str, delay_seconds: float) -> dict[str, Any]:
    """Notify the customer `delay_seconds` after the order, then wait for the delivery."""
    wf = notify_order_workflow.wf
    tracking = f"TRK-{order_id}-{int(wf.random() * 100000):05d}"
    notification_time = wf.utc_now() + timedelta(seconds=delay_seconds)
    wf.set_data("notification_time", notification_time.isoformat())

    wf.sleep_until(notification_time)  # durable: a restart waits only for what is left
    sent_at = wf.side_effect("send_notification", lambda: send_notification(order_id, tracking))

    try:
        delivered = wf.wait_signal("delivered", timeout=timedelta(minutes=5))
    except TimeoutError:
        delivered = None
    return {
        "order_id": order_id,
        "tracking_number": tracking,
        "notification_time": notification_time.isoformat(),
        "notification_sent_at": sent_at,
        "delivered": delivered,
    }


# --- The demonstration: killed during the sleep, then resumed. ----------------------------------


def _sent(order_id: str) -> list[dict[str, Any]]:
    if not OUTBOX.exists():
        return []
    lines = [json.loads(line) for line in OUTBOX.read_text().splitlines() if line]
    return [line for line in lines if line["order_id"] == order_id]


def _courier(workflow_id: str, order_id: str) -> None:
    """Answer the notification with the `delivered` signal, as a courier's webhook would."""
    for _ in range(6000):  # bounded: 10 minutes
        if _sent(order_id):
            app.signal(workflow_id, "delivered", {"by": "courier", "order_id": order_id})
            return
        time.sleep(0.1)


def _sleeping_workflow(order_id: str) -> Any:
    """The workflow of `order_id` once its sleep is journaled, or None (bounded wait)."""
    for _ in range(600):  # 60 s
        for inv in app.list_invocations(task_id="notify_order_workflow", status="running"):
            if inv.arguments["order_id"] == order_id and any(
                e.operation == "sleep" for e in app.journal(inv.invocation_id)
            ):
                return inv
        time.sleep(0.1)
    return None


def main() -> int:
    import argparse
    import signal
    import subprocess
    import sys
    import threading
    import uuid

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--delay",
        type=float,
        default=3.0,
        help="seconds from the order to its notification (default 3)",
    )
    parser.add_argument("--order", default=None, help="order id (default: a new one)")
    parser.add_argument(
        "--start-only",
        action="store_true",
        help="only start the workflow here (run 1; killed by the demo)",
    )
    opts = parser.parse_args()
    order_id = opts.order or f"ORD-{uuid.uuid4().hex[:6].upper()}"

    if opts.start_only:
        print(f"[run 1, pid {os.getpid()}] order {order_id}: notify in {opts.delay:g} s")
        notify_order_workflow(order_id, opts.delay)
        return 0

    first = subprocess.Popen(
        [sys.executable, __file__, "--start-only", "--order", order_id, "--delay", str(opts.delay)]
    )
    workflow = _sleeping_workflow(order_id)
    if workflow is None:
        first.kill()
        print("the workflow never reached its sleep", file=sys.stderr)
        return 1
    os.kill(first.pid, signal.SIGKILL)
    killed_at = time.time()
    print(f"[run 1] exited with {first.wait()} (-9 = killed by SIGKILL) during its sleep")
    print(f"[run 1] the journal of workflow {workflow.invocation_id} when it died:")
    for entry in app.journal(workflow.invocation_id):
        print(f"    {entry.position}: {entry.operation} {entry.name or ''} -> {entry.value}")
    due = datetime.fromisoformat(app.get_workflow_data(workflow.invocation_id, "notification_time"))

    courier = threading.Thread(target=_courier, args=(workflow.invocation_id, order_id))
    courier.start()
    [resumed] = app.recover()
    courier.join(60)
    result = resumed.result
    print(f"[run 2, pid {os.getpid()}] resumed {resumed.invocation_id}:")
    print(json.dumps(result, indent=2))
    sent = _sent(order_id)
    late = (datetime.fromisoformat(sent[0]["sent_at"]) - due).total_seconds() if sent else None
    checks = {
        "notification sent exactly once": len(sent) == 1,
        "sent at the recorded time, not a full delay after the restart": late is not None
        and 0 <= late < 1.0
        and datetime.fromisoformat(sent[0]["sent_at"]).timestamp() < killed_at + opts.delay,
        "delivered signal received": result["delivered"] == {"by": "courier", "order_id": order_id},
        "replay of the finished workflow identical": app.replay(workflow.invocation_id) == result,
    }
    if late is not None:
        print(f"notification sent {late * 1000:.0f} ms after its recorded time")
    for check, ok in checks.items():
        print(f"{check}: {ok}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
