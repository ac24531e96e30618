"""A complex workflow with error handling: validation, payment, inventory and shipping.

The code between the REFERENCE markers is the reference document's, verbatim; the
imports and the app above the markers are the document's preamble.
"""

from typing import Any

from pynenc import Pynenc

app = Pynenc()

# --- REFERENCE: begin ---
@app.task
def robust_processing_workflow(order_data: dict[str, Any]) -> dict[str, Any]:
    """Complex workflow with built-in error handling and retry logic."""

    workflow_start = robust_processing_workflow.wf.utc_now()
    order_id = order_data.get("order_id", robust_processing_workflow.wf.uuid())

    # Store initial workflow state
    robust_processing_workflow.wf.set_data("order_id", order_id)
    robust_processing_workflow.wf.set_data("started_at", workflow_start.isoformat())
    robust_processing_workflow.wf.set_data("status", "processing")

    try:
        # Step 1: Validate order
        validation_result = robust_processing_workflow.wf.execute_task(
            validate_order, order_data
        )

        if not validation_result.result["valid"]:
            robust_processing_workflow.wf.set_data("status", "validation_failed")
            return {
                "order_id": order_id,
                "status": "failed",
                "step": "validation",
                "error": validation_result.result["errors"]
            }

        # Step 2: Process payment
        payment_result = robust_processing_workflow.wf.execute_task(
            process_payment_with_retry, order_data
        )

        robust_processing_workflow.wf.set_data("payment_id", payment_result.result["payment_id"])

        # Step 3: Reserve inventory
        inventory_result = robust_processing_workflow.wf.execute_task(
            reserve_inventory, order_data
        )

        robust_processing_workflow.wf.set_data("reservation_id", inventory_result.result["reservation_id"])

        # Step 4: Generate shipping
        shipping_result = robust_processing_workflow.wf.execute_task(
            generate_shipping_label, order_id, inventory_result.result
        )

        # Mark workflow as completed
        robust_processing_workflow.wf.set_data("status", "completed")
        completion_time = robust_processing_workflow.wf.utc_now()

        return {
            "order_id": order_id,
            "status": "completed",
            "payment_id": payment_result.result["payment_id"],
            "reservation_id": inventory_result.result["reservation_id"],
            "tracking_number": shipping_result.result["tracking_number"],
            "started_at": workflow_start.isoformat(),
            "completed_at": completion_time.isoformat(),
            "processing_time_seconds": (completion_time - workflow_start).total_seconds()
        }

    except Exception as e:
        # Handle workflow errors
        robust_processing_workflow.wf.set_data("status", "error")
        robust_processing_workflow.wf.set_data("error", str(e))

        # Execute cleanup if needed
        cleanup_result = robust_processing_workflow.wf.execute_task(
            cleanup_failed_order, order_id
        )

        return {
            "order_id": order_id,
            "status": "error",
            "error": str(e),
            "cleanup_result": cleanup_result.result
        }

@app.task
def validate_order(order_data: dict[str, Any]) -> dict[str, Any]:
    """Validate order data with deterministic processing."""
    validation_id = validate_order.wf.uuid()
    validated_at = validate_order.wf.utc_now()

    errors = []
    if not order_data.get("customer_id"):
        errors.append("Missing customer_id")
    if not order_data.get("items"):
        errors.append("No items in order")

    return {
        "validation_id": validation_id,
        "valid": len(errors) == 0,
        "errors": errors,
        "validated_at": validated_at.isoformat()
    }

@app.task
def process_payment_with_retry(order_data: dict[str, Any]) -> dict[str, Any]:
    """Process payment with deterministic retry logic."""
    payment_id = process_payment_with_retry.wf.uuid()
    attempt_time = process_payment_with_retry.wf.utc_now()

    # Simulate processing logic with deterministic behavior
    success_chance = process_payment_with_retry.wf.random()

    if success_chance > 0.1:  # 90% success rate
        return {
            "payment_id": payment_id,
            "status": "completed",
            "amount": order_data.get("total", 0),
            "processed_at": attempt_time.isoformat()
        }
    else:
        # In a real implementation, this would trigger retry logic
        return {
            "payment_id": payment_id,
            "status": "failed",
            "error": "Payment processing failed",
            "attempted_at": attempt_time.isoformat()
        }

@app.task
def reserve_inventory(order_data: dict[str, Any]) -> dict[str, Any]:
    """Reserve inventory for order items."""
    reservation_id = reserve_inventory.wf.uuid()
    reserved_at = reserve_inventory.wf.utc_now()

    items = order_data.get("items", [])
    reserved_items = []

    for item in items:
        item_reservation_id = reserve_inventory.wf.uuid()
        reserved_items.append({
            "item_id": item.get("id"),
            "quantity": item.get("quantity"),
            "reservation_id": item_reservation_id
        })

    return {
        "reservation_id": reservation_id,
        "reserved_items": reserved_items,
        "reserved_at": reserved_at.isoformat()
    }

@app.task
def generate_shipping_label(order_id: str, inventory_data: dict[str, Any]) -> dict[str, Any]:
    """Generate shipping label for reserved inventory."""
    tracking_number = f"TRK-{order_id}-{int(generate_shipping_label.wf.random() * 100000):05d}"
    label_id = generate_shipping_label.wf.uuid()
    generated_at = generate_shipping_label.wf.utc_now()

    return {
        "label_id": label_id,
        "tracking_number": tracking_number,
        "order_id": order_id,
        "reservation_id": inventory_data["reservation_id"],
        "generated_at": generated_at.isoformat()
    }

@app.task
def cleanup_failed_order(order_id: str) -> dict[str, Any]:
    """Clean up resources for a failed order."""
    cleanup_id = cleanup_failed_order.wf.uuid()
    cleaned_at = cleanup_failed_order.wf.utc_now()

    return {
        "cleanup_id": cleanup_id,
        "order_id": order_id,
        "actions": ["released_inventory", "voided_payment", "notified_customer"],
        "cleaned_at": cleaned_at.isoformat()
    }
# --- REFERENCE: end ---


def main() -> None:
    import json

    order = {"order_id": "ORD-7", "customer_id": "C-1", "total": 42.5,
             "items": [{"id": "sku-1", "quantity": 2}, {"id": "sku-2", "quantity": 1}]}
    print(json.dumps(robust_processing_workflow(order).result, indent=2))
    print(json.dumps(robust_processing_workflow({"order_id": "ORD-8"}).result, indent=2))


if __name__ == "__main__":
    main()
