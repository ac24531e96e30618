"""Deterministic operations: random, uuid, utc_now and a custom recorded operation.

The code between the REFERENCE markers is the reference document's, verbatim (its custom
operation needs `import random`, added above the markers).
"""

import random
from typing import Any

from pynenc import Pynenc

app = Pynenc()

# --- REFERENCE: begin ---
@app.task
def deterministic_operations_example() -> dict[str, Any]:
    """Demonstrate deterministic operations in workflows."""

    # Deterministic random number (0.0 to 1.0)
    random_value = deterministic_operations_example.wf.random()

    # Deterministic UUID generation
    unique_id = deterministic_operations_example.wf.uuid()

    # Deterministic timestamp progression
    start_time = deterministic_operations_example.wf.utc_now()

    # Each call advances time deterministically
    later_time = deterministic_operations_example.wf.utc_now()

    # Custom deterministic operation
    def generate_sequence_number() -> int:
        return random.randint(1000, 9999)

    sequence = deterministic_operations_example.wf.deterministic._deterministic_operation(
        "sequence", generate_sequence_number
    )

    return {
        "random_value": random_value,
        "unique_id": unique_id,
        "start_time": start_time.isoformat(),
        "later_time": later_time.isoformat(),
        "sequence_number": sequence
    }
# --- REFERENCE: end ---


def main() -> None:
    import json

    invocation = deterministic_operations_example()
    print(json.dumps(invocation.result, indent=2))
    replayed = app.replay(invocation.invocation_id)
    print("replay returns the identical result:", replayed == invocation.result)


if __name__ == "__main__":
    main()
