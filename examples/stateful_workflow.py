"""Workflow state: set_data/get_data and recorded step ids and timestamps.

The code between the REFERENCE markers is the reference document's, verbatim; the
imports and the app above the markers are the document's preamble.
"""

from typing import Any

from pynenc import Pynenc

app = Pynenc()

# --- REFERENCE: begin ---
@app.task
def stateful_workflow(user_id: str) -> dict[str, Any]:
    """Demonstrate workflow state management."""

    # Store workflow data that persists across executions
    stateful_workflow.wf.set_data("user_id", user_id)
    stateful_workflow.wf.set_data("started_at", stateful_workflow.wf.utc_now().isoformat())

    # Perform some operations
    processing_steps = []

    for step in range(3):
        step_id = stateful_workflow.wf.uuid()
        step_time = stateful_workflow.wf.utc_now()

        processing_steps.append({
            "step": step + 1,
            "step_id": step_id,
            "timestamp": step_time.isoformat()
        })

        # Store intermediate results
        stateful_workflow.wf.set_data(f"step_{step + 1}_result", step_id)

    # Retrieve stored data
    user_id_retrieved = stateful_workflow.wf.get_data("user_id")
    started_at = stateful_workflow.wf.get_data("started_at")

    return {
        "user_id": user_id_retrieved,
        "started_at": started_at,
        "processing_steps": processing_steps,
        "completed_at": stateful_workflow.wf.utc_now().isoformat()
    }
# --- REFERENCE: end ---


def main() -> None:
    import json

    invocation = stateful_workflow("user-42")
    print(json.dumps(invocation.result, indent=2))
    workflow_id = invocation.workflow.workflow_id
    print("stored step_3_result:", app.get_workflow_data(workflow_id, "step_3_result"))


if __name__ == "__main__":
    main()
