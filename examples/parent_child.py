"""Task execution within workflows: a parent runs validation, processing and notification.

The code between the REFERENCE markers is the reference document's, verbatim; the
imports and the app above the markers are the document's preamble.
"""

from typing import Any

from pynenc import Pynenc

app = Pynenc()

# --- REFERENCE: begin ---
@app.task
def parent_workflow(data: dict[str, Any]) -> dict[str, Any]:
    """Parent workflow that executes child tasks."""

    # Execute tasks deterministically within the workflow
    validation_result = parent_workflow.wf.execute_task(
        validate_data, data
    )

    if validation_result.result["valid"]:
        # Execute processing task only if validation succeeds
        processing_result = parent_workflow.wf.execute_task(
            process_data, data, validation_result.result["normalized_data"]
        )

        # Execute notification task
        notification_result = parent_workflow.wf.execute_task(
            send_notification, processing_result.result
        )

        return {
            "status": "completed",
            "validation": validation_result.result,
            "processing": processing_result.result,
            "notification": notification_result.result
        }
    else:
        return {
            "status": "failed",
            "validation": validation_result.result,
            "error": "Data validation failed"
        }

@app.task
def validate_data(data: dict[str, Any]) -> dict[str, Any]:
    """Validate input data."""
    # Validation logic here
    normalized_data = {k.lower(): v for k, v in data.items()}

    return {
        "valid": len(normalized_data) > 0,
        "normalized_data": normalized_data,
        "validated_at": validate_data.wf.utc_now().isoformat()
    }

@app.task
def process_data(original_data: dict[str, Any], normalized_data: dict[str, Any]) -> dict[str, Any]:
    """Process the validated data."""
    processing_id = process_data.wf.uuid()

    return {
        "processing_id": processing_id,
        "processed_records": len(normalized_data),
        "processed_at": process_data.wf.utc_now().isoformat()
    }

@app.task
def send_notification(processing_result: dict[str, Any]) -> dict[str, Any]:
    """Send processing completion notification."""
    notification_id = send_notification.wf.uuid()

    return {
        "notification_id": notification_id,
        "sent_at": send_notification.wf.utc_now().isoformat(),
        "processing_id": processing_result["processing_id"]
    }
# --- REFERENCE: end ---


def main() -> None:
    import json

    print(json.dumps(parent_workflow({"Name": "Ada", "Role": "admin"}).result, indent=2))
    print(json.dumps(parent_workflow({}).result, indent=2))


if __name__ == "__main__":
    main()
