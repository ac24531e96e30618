"""Workflow boundaries: a task with force_new_workflow=True starts a child workflow.

The code between the REFERENCE markers is the reference document's, verbatim; the
imports and the app above the markers are the document's preamble.
"""

from typing import Any

from pynenc import Pynenc

app = Pynenc()

# --- REFERENCE: begin ---
@app.task(force_new_workflow=True)
def independent_workflow(data: dict[str, Any]) -> dict[str, Any]:
    """
    This task always creates a new workflow, regardless of calling context.

    Use force_new_workflow=True when you want to create a clear workflow boundary
    and ensure that this task starts its own workflow context.
    """
    workflow_id = independent_workflow.workflow.workflow_id

    # This workflow has its own deterministic context
    unique_value = independent_workflow.wf.random()
    timestamp = independent_workflow.wf.utc_now()

    return {
        "workflow_id": workflow_id,
        "unique_value": unique_value,
        "timestamp": timestamp.isoformat(),
        "data": data
    }

@app.task
def call_independent_workflow(input_data: dict[str, Any]) -> dict[str, Any]:
    """Demonstrate calling a task that creates its own workflow."""

    # This task runs in its own workflow context
    parent_workflow_id = call_independent_workflow.workflow.workflow_id

    # Execute a task that forces a new workflow
    child_result = call_independent_workflow.wf.execute_task(
        independent_workflow, input_data
    )

    # The child workflow has a different workflow ID
    child_workflow_id = child_result.workflow.workflow_id

    return {
        "parent_workflow_id": parent_workflow_id,
        "child_workflow_id": child_workflow_id,
        "child_result": child_result.result,
        "workflows_are_different": parent_workflow_id != child_workflow_id
    }
# --- REFERENCE: end ---


def main() -> None:
    import json

    invocation = call_independent_workflow({"source": "example"})
    print(json.dumps(invocation.result, indent=2))


if __name__ == "__main__":
    main()
