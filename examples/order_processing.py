"""The e-commerce order-processing workflow of the reference document ("Basic Workflow Usage").

The code between the REFERENCE markers is the reference document's, verbatim (with its one
slip read as intended: `process_payment_workflow.wf.execute_task` is
`process_order_workflow.wf.execute_task`).
"""

# --- REFERENCE: begin ---
from pynenc import Pynenc
from datetime import timedelta
from typing import Any

app = Pynenc()

@app.task(force_new_workflow=True)
def process_order_workflow(order_id: str) -> dict[str, Any]:
    """
    Main order processing workflow with explicit workflow boundary.

    Using force_new_workflow=True ensures this task always creates a new workflow
    context, providing access to deterministic operations and state management.
    """
    # All random operations are deterministic and will replay identically
    tracking_number = generate_tracking_number(order_id)

    # Process payment with deterministic retry logic
    payment_result = process_order_workflow.wf.execute_task(
        process_payment, order_id
    )

    # Schedule notifications using deterministic timestamps
    notification_time = process_order_workflow.wf.utc_now() + timedelta(hours=1)

    # Store workflow data for later retrieval
    process_order_workflow.wf.set_data("tracking_number", tracking_number)
    process_order_workflow.wf.set_data("notification_time", notification_time.isoformat())

    return {
        "order_id": order_id,
        "tracking_number": tracking_number,
        "payment_status": payment_result.result,
        "notification_scheduled": notification_time.isoformat()
    }

def generate_tracking_number(order_id: str) -> str:
    """Generate a deterministic tracking number."""
    # This random number will be the same on replay
    random_suffix = int(process_order_workflow.wf.random() * 100000)
    return f"TRK-{order_id}-{random_suffix:05d}"

@app.task
def process_payment(order_id: str) -> dict[str, Any]:
    """Process payment for an order."""
    # Simulate payment processing
    payment_id = process_payment.wf.uuid()
    processing_time = process_payment.wf.utc_now()

    return {
        "payment_id": payment_id,
        "processed_at": processing_time.isoformat(),
        "status": "completed"
    }
# --- REFERENCE: end ---


# --- The demonstration: a crash in the middle, then recovery. ---------------------------------

def _payment_child(workflow_invocation_id: str) -> Any:
    """The payment invocation the workflow dispatched."""
    return app.list_invocations(
        task_id="process_payment", parent_invocation_id=workflow_invocation_id
    )[0]


def crash_run(order_id: str) -> None:
    """Start the workflow; the process kills itself right after the payment is durable."""
    import os

    os.environ["PYNENC_CRASH_AFTER"] = "process_payment"
    print(f"[run 1, pid {os.getpid()}] processing {order_id}; will be killed after the payment")
    process_order_workflow(order_id)
    print("[run 1] not reached: the process was killed")


def recover_and_report() -> list[Any]:
    import json
    import os

    resumed = app.recover()
    for inv in resumed:
        print(f"[run 2, pid {os.getpid()}] resumed workflow {inv.workflow.workflow_id}")
        print(json.dumps(inv.result, indent=2))
    return resumed


def main() -> int:
    import argparse
    import json
    import subprocess
    import sys
    import uuid as _uuid

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crash-after", choices=["payment"],
                        help="kill this process (SIGKILL) right after the payment step is durable")
    parser.add_argument("--order", default=None, help="order id (default: a new one)")
    opts = parser.parse_args()
    order_id = opts.order or f"ORD-{_uuid.uuid4().hex[:6].upper()}"

    if opts.crash_after:
        crash_run(order_id)
        return 1
    if recover_and_report():
        return 0

    # The whole story in one command: run 1 dies mid-workflow, this process resumes it.
    first = subprocess.run([sys.executable, __file__, "--crash-after", "payment", "--order", order_id])
    print(f"[run 1] exited with {first.returncode} (-9 = killed by SIGKILL)")
    stranded = [
        inv
        for inv in app.list_invocations(task_id="process_order_workflow", status="running")
        if inv.arguments["order_id"] == order_id
    ]
    if not stranded:
        print("no interrupted workflow found", file=sys.stderr)
        return 1
    workflow = stranded[0]
    print(f"[run 1] the journal of workflow {workflow.invocation_id} when it died:")
    for entry in app.journal(workflow.invocation_id):
        print(f"    {entry.position}: {entry.operation} {entry.name or ''} -> {entry.value}")
    suffix = int(app.journal(workflow.invocation_id)[0].value * 100000)
    tracking_before = f"TRK-{order_id}-{suffix:05d}"
    payment = _payment_child(workflow.invocation_id)
    before = payment.result
    print(f"[run 1] tracking number drawn: {tracking_before}")
    print(f"[run 1] payment {payment.invocation_id} was durable before the crash:")
    print(json.dumps(before, indent=2))
    resumed = recover_and_report()
    after = resumed[0].result
    checks = {
        "tracking number identical": after["tracking_number"] == tracking_before,
        "payment id and timestamp identical": after["payment_status"] == before,
        "payment not run again": _payment_child(workflow.invocation_id).result == before,
        "replay of the finished workflow identical": app.replay(workflow.invocation_id) == after,
    }
    for check, ok in checks.items():
        print(f"{check}: {ok}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
