"""pynenc-replay: durable, deterministic-replay workflows for Python.

```python
from pynenc import Pynenc
app = Pynenc()

@app.task
def step(x: int) -> int:
    return x + int(step.wf.random() * 10)
```
"""

from pynenc.app import Pynenc
from pynenc.errors import (
    BlockingCallError,
    CorruptEntryError,
    CorruptStoreError,
    InvalidArgumentError,
    InvocationParkedError,
    InvocationSuspended,
    LeaseLostError,
    NonDeterminismError,
    PayloadDecodeError,
    PayloadError,
    PayloadTooLargeError,
    PynencError,
    StoreAccessError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreIOError,
    StoreLockError,
    StoreReadOnlyError,
    StoreUnavailableError,
    TaskError,
    UnfinishedChildError,
    WorkflowCancelledError,
    WorkflowMembershipError,
)
from pynenc.invocation import Invocation, InvocationStatus
from pynenc.journal import JournalEntry
from pynenc.task import Task, TaskOptions
from pynenc.workflow import WorkflowContext, WorkflowIdentity

__all__ = [
    "BlockingCallError",
    "CorruptEntryError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "Invocation",
    "InvocationParkedError",
    "InvocationStatus",
    "InvocationSuspended",
    "JournalEntry",
    "LeaseLostError",
    "NonDeterminismError",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLargeError",
    "Pynenc",
    "PynencError",
    "StoreAccessError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "Task",
    "TaskError",
    "TaskOptions",
    "UnfinishedChildError",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowIdentity",
    "WorkflowMembershipError",
]

__version__ = "0.1.0"
