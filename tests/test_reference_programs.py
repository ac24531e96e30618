"""Every program of the reference document runs verbatim and gives what the document implies,
run inline and through two queued worker processes."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

from pynenc import WorkflowIdentity

SPEC = Path(__file__).resolve().parent.parent / "docs" / "reference" / "workflow-system.md"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Loader = Callable[..., ModuleType]


def is_v4(value: str) -> bool:
    u = uuid.UUID(value)
    return u.version == 4 and str(u) == value


def test_examples_hold_the_reference_code_verbatim() -> None:
    """The examples are the document's code, the two known slips aside."""
    blocks = re.findall(r"```python\n(.*?)```", SPEC.read_text(), re.S)
    names = [
        "order_processing",
        "workflow_boundaries",
        "deterministic_operations",
        "stateful_workflow",
        "parent_child",
        "robust_processing",
    ]
    assert len(blocks) == len(names)
    for name, block in zip(names, blocks, strict=True):
        text = (EXAMPLES / f"{name}.py").read_text()
        code = text.split("# --- REFERENCE: begin ---\n", 1)[1].split(
            "# --- REFERENCE: end ---", 1
        )[0]
        expected = block.replace(
            "process_payment_workflow.wf.execute_task(", "process_order_workflow.wf.execute_task("
        )
        assert code == expected, name


def test_order_processing(load_example: Loader, execution: str) -> None:
    ex = load_example("order_processing", execution)
    inv = ex.process_order_workflow("ORD-1")
    result = inv.result
    assert result["order_id"] == "ORD-1"
    assert re.fullmatch(r"TRK-ORD-1-\d{5}", result["tracking_number"])
    payment = result["payment_status"]
    assert payment["status"] == "completed" and is_v4(payment["payment_id"])
    processed = datetime.fromisoformat(payment["processed_at"])
    scheduled = datetime.fromisoformat(result["notification_scheduled"])
    assert processed.tzinfo is not None and scheduled.utcoffset() == timedelta(0)
    # One hour after the parent's clock reading, taken around the payment (queued: the payment
    # may run concurrently with the parent, on another worker).
    assert abs(scheduled - timedelta(hours=1) - processed) < timedelta(seconds=5)
    wf_id = inv.workflow.workflow_id
    assert inv.workflow == WorkflowIdentity(inv.invocation_id, inv.task_id, None)
    assert ex.app.get_workflow_data(wf_id, "tracking_number") == result["tracking_number"]
    assert ex.app.get_workflow_data(wf_id, "notification_time") == result["notification_scheduled"]


def test_workflow_boundaries(load_example: Loader, execution: str) -> None:
    ex = load_example("workflow_boundaries", execution)
    inv = ex.call_independent_workflow({"k": 1})
    result = inv.result
    assert result["workflows_are_different"] is True
    assert result["parent_workflow_id"] == inv.workflow.workflow_id
    assert result["child_workflow_id"] == result["child_result"]["workflow_id"]
    assert result["child_workflow_id"] != result["parent_workflow_id"]
    assert result["child_result"]["data"] == {"k": 1}
    assert 0.0 <= result["child_result"]["unique_value"] < 1.0
    child = ex.app.get_invocation(result["child_workflow_id"])
    assert child is not None
    assert child.workflow.parent_workflow_id == inv.workflow.workflow_id
    assert child.workflow.workflow_type == child.task_id
    # Two calls give two distinct child workflows.
    again = ex.call_independent_workflow({"k": 1}).result
    assert again["child_workflow_id"] not in (
        result["child_workflow_id"],
        result["parent_workflow_id"],
    )


def test_deterministic_operations(load_example: Loader, execution: str) -> None:
    ex = load_example("deterministic_operations", execution)
    inv = ex.deterministic_operations_example()
    result = inv.result
    assert 0.0 <= result["random_value"] < 1.0
    assert is_v4(result["unique_id"])
    start = datetime.fromisoformat(result["start_time"])
    later = datetime.fromisoformat(result["later_time"])
    assert later > start
    assert abs(datetime.now(start.tzinfo) - start) < timedelta(minutes=1)  # real time
    assert 1000 <= result["sequence_number"] <= 9999
    assert ex.app.replay(inv.invocation_id) == result


def test_stateful_workflow(load_example: Loader, execution: str) -> None:
    ex = load_example("stateful_workflow", execution)
    inv = ex.stateful_workflow("user-42")
    result = inv.result
    assert result["user_id"] == "user-42"
    steps = result["processing_steps"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    ids = [s["step_id"] for s in steps]
    assert len(set(ids)) == 3 and all(is_v4(i) for i in ids)
    times = [result["started_at"], *(s["timestamp"] for s in steps), result["completed_at"]]
    parsed = [datetime.fromisoformat(t) for t in times]
    assert all(a < b for a, b in itertools.pairwise(parsed))
    wf_id = inv.workflow.workflow_id
    for n, step_id in enumerate(ids, 1):
        assert ex.app.get_workflow_data(wf_id, f"step_{n}_result") == step_id


def test_parent_child(load_example: Loader, execution: str) -> None:
    ex = load_example("parent_child", execution)
    result = ex.parent_workflow({"Name": "Ada", "ROLE": "admin"}).result
    assert result["status"] == "completed"
    assert result["validation"]["normalized_data"] == {"name": "Ada", "role": "admin"}
    assert result["processing"]["processed_records"] == 2
    assert result["notification"]["processing_id"] == result["processing"]["processing_id"]
    assert is_v4(result["notification"]["notification_id"])
    failed = ex.parent_workflow({}).result
    assert failed == {
        "status": "failed",
        "validation": failed["validation"],
        "error": "Data validation failed",
    }
    assert failed["validation"]["valid"] is False


def test_robust_processing(load_example: Loader, execution: str) -> None:
    ex = load_example("robust_processing", execution)
    order = {
        "order_id": "ORD-9",
        "customer_id": "C-1",
        "total": 10,
        "items": [{"id": "a", "quantity": 1}, {"id": "b", "quantity": 3}],
    }
    inv = ex.robust_processing_workflow(order)
    result = inv.result
    assert result["order_id"] == "ORD-9"
    wf_id = inv.workflow.workflow_id
    # A declined payment (10 %) is a result, not an exception: the workflow completes either way.
    assert result["status"] == "completed"
    assert re.fullmatch(r"TRK-ORD-9-\d{5}", result["tracking_number"])
    assert result["processing_time_seconds"] > 0
    assert ex.app.get_workflow_data(wf_id, "status") == "completed"
    assert ex.app.get_workflow_data(wf_id, "reservation_id") == result["reservation_id"]
    assert ex.app.get_workflow_data(wf_id, "payment_id") == result["payment_id"]

    no_items = ex.robust_processing_workflow({"order_id": "ORD-10"})
    assert no_items.result == {
        "order_id": "ORD-10",
        "status": "failed",
        "step": "validation",
        "error": ["Missing customer_id", "No items in order"],
    }
    assert ex.app.get_workflow_data(no_items.workflow.workflow_id, "status") == "validation_failed"
