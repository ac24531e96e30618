"""Exceptions raised by pynenc.

Every error derives from `PynencError` and carries a stable `code` string, so callers and logs
can match a failure without parsing its message. Rust errors are mapped onto this hierarchy in
one place on the binding side.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BlockingCallError",
    "CorruptEntryError",
    "CorruptStoreError",
    "InvalidArgumentError",
    "InvocationParkedError",
    "InvocationSuspended",
    "LeaseLostError",
    "NonDeterminismError",
    "Operation",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLargeError",
    "PynencError",
    "StoreAccessError",
    "StoreCorruptError",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreIOError",
    "StoreLockError",
    "StoreReadOnlyError",
    "StoreUnavailableError",
    "TaskError",
    "UnfinishedChildError",
    "WorkflowCancelledError",
    "WorkflowMembershipError",
]


class PynencError(Exception):
    """Base class of every error pynenc raises on its own behalf."""

    code: str = "PYNENC"


class StoreError(PynencError):
    """The store could not complete an operation."""

    code = "STORE"


class CorruptStoreError(StoreError):
    """The store holds data that violates its own invariants."""

    code = "STORE_CORRUPT"


class StoreCorruptError(CorruptStoreError):
    """One stored record failed its checksum over key and value: it (or its key) was damaged
    on disk. The record is never returned as good.

    Attributes:
        path: The store directory.
        table: The table holding the record (`journal`, `invocations`, `data`, `queue`,
            `queued`, `leases`, `counters`).
        key: The record's key as an operator reads it (invocation or workflow id as a UUID).
        detail: What is wrong with it.
    """

    code = "RECORD_CORRUPT"
    path: str
    table: str
    key: str
    detail: str


class CorruptEntryError(StoreCorruptError):
    """One journal entry cannot be read back (its own checksum failed or it cannot be decoded);
    `table` is `journal`, `invocation_id` and `position` name the entry."""

    code = "ENTRY_CORRUPT"
    invocation_id: str
    position: int


class StoreFormatError(StoreError):
    """The store was written in a format version this build does not understand."""

    code = "STORE_FORMAT"


class StoreAccessError(StoreError):
    """The store exists but cannot be opened or used as requested."""

    code = "STORE_ACCESS"


class StoreReadOnlyError(StoreAccessError):
    """A write was attempted on a store opened read-only."""

    code = "STORE_READ_ONLY"


class StoreIOError(StoreError):
    """The operating system (or the database server of a PostgreSQL store) reported a failure
    while using the store; nothing of the operation was stored."""

    code = "STORE_IO"


class StoreUnavailableError(StoreIOError):
    """The database server of a PostgreSQL store stayed unreachable for longer than
    `store_unavailable_seconds`; the operation did not happen. Workers exit with it.

    Attributes:
        path: The store's URL, without its password.
    """

    code = "STORE_UNAVAILABLE"


class StoreFullError(StoreIOError):
    """The filesystem holding the store has no room left; nothing of the commit was stored.

    Attributes:
        path: The store directory.
        needed: Bytes the store needs beyond what is free (a lower bound when not exact).
        available: Bytes that were free on the filesystem.
    """

    code = "STORE_FULL"


class StoreLockError(StoreError):
    """The store's lock file was deleted or replaced while it was open: processes no longer
    exclude each other, so the store writes nothing more. Stop every process using the store
    and start them again."""

    code = "STORE_LOCK"


class LeaseLostError(StoreError):
    """This worker no longer owns the invocation: its lease expired or was taken over."""

    code = "LEASE_LOST"


@dataclass(frozen=True)
class Operation:
    """One side of a divergence: an operation as the journal recorded it, or as the code asks
    for it now.

    Attributes:
        kind: `random`, `uuid`, `utc_now`, `side_effect`, `execute_task`, `get_data`,
            `set_data`, or `return` (the task returning: the end of the journal, or code that
            returns before doing all it recorded).
        name: The side effect's name, the child's task id or the data key; None otherwise.
        value: The recorded value (a side effect's value or what it raised, the data read,
            the draw, the clock reading) or a child call's decoded arguments, cut to a readable
            length; a digest when only that is known; None when nothing is to show.
        file: The source file the operation was made from, when recorded.
        line: Its line in that file.
        function: The function it was made in.
        call: A short description, such as `side_effect('charge')`.
    """

    kind: str
    name: str | None
    value: str | None
    file: str | None
    line: int | None
    function: str | None
    call: str

    @property
    def site(self) -> str:
        """`file:line in function()`, or a note that the call site is not known."""
        if self.file is None:
            return "(call site not recorded)"
        where = f"{self.file}:{self.line}"
        return f"{where} in {self.function}()" if self.function else where

    def __str__(self) -> str:
        return self.call if self.file is None else f"{self.call} at {self.site}"


class NonDeterminismError(PynencError):
    """Replayed code asked for something other than what the journal recorded.

    Attributes:
        workflow_id: The workflow whose journal diverged.
        invocation_id: The invocation whose journal diverged.
        position: The position of the entry that differs.
        matched: How many entries matched before it (the entries at positions below
            `position`).
        recorded: What the journal recorded there (an `Operation`).
        requested: What the code asks for now (an `Operation`).
    """

    code = "NON_DETERMINISM"

    workflow_id: str
    invocation_id: str
    position: int
    matched: int
    recorded: Operation
    requested: Operation

    @classmethod
    def from_report(
        cls,
        workflow_id: str,
        invocation_id: str,
        position: int,
        recorded: dict[str, Any] | Operation,
        requested: dict[str, Any] | Operation,
    ) -> NonDeterminismError:
        """The error for a divergence at `position`, worded side by side (see
        `pynenc.report`); the two sides as the core reports them or as `Operation`s."""
        from pynenc.report import divergence

        return divergence(cls, workflow_id, invocation_id, position, recorded, requested)


class WorkflowMembershipError(PynencError):
    """An invocation was used outside the workflow it belongs to."""

    code = "WORKFLOW_MEMBERSHIP"


class TaskError(PynencError):
    """A task raised an exception; re-raised in whoever waits on its result.

    Attributes:
        type_name: Qualified name of the original exception type.
        message: The original exception's message.
        traceback_text: The original formatted traceback, as recorded.
    """

    code = "TASK_ERROR"

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[type[TaskError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.traceback_text))


class PayloadError(PynencError):
    """A payload (argument, result, workflow data, side-effect value) cannot be stored."""

    code = "PAYLOAD"


class PayloadTooLargeError(PayloadError):
    """An encoded payload is larger than the configured limit."""

    code = "PAYLOAD_TOO_LARGE"


class PayloadDecodeError(PayloadError):
    """Stored payload bytes are not a valid pynenc payload."""

    code = "PAYLOAD_DECODE"


class InvalidArgumentError(PynencError, ValueError):
    """A pynenc API was called with an invalid argument value."""

    code = "INVALID_ARGUMENT"


class BlockingCallError(InvalidArgumentError):
    """An operation that blocks its thread (`wf.sleep`, `invocation.result`, ...) was called
    where an event loop runs (an async task's body, or asyncio code): it would stall every
    coroutine of that loop. Nothing was recorded; await its async twin instead.

    Attributes:
        twin: The async operation to await instead (`wf.sleep_async`, ...).
    """

    code = "BLOCKING_CALL"

    def __init__(self, message: str, twin: str) -> None:
        # Both are its `args`: a task's failure is rebuilt from them as this same type.
        super().__init__(message, twin)
        self.twin = twin

    def __str__(self) -> str:
        return str(self.args[0])


class UnfinishedChildError(InvalidArgumentError):
    """A replay (`app.replay`, `pynenc check`, `pynenc.testing.replay`) reached a child whose
    outcome is not stored yet: the code waits on it (or dispatches one that was never stored),
    so nothing recorded says what comes next. Nothing was written.

    Attributes:
        invocation_id: The invocation being replayed.
        child_id: The child it reached.
    """

    code = "UNFINISHED_CHILD"

    def __init__(self, message: str, invocation_id: str, child_id: str) -> None:
        super().__init__(message)
        self.invocation_id = invocation_id
        self.child_id = child_id

    def __reduce__(self) -> tuple[type[UnfinishedChildError], tuple[str, str, str]]:
        return (type(self), (str(self), self.invocation_id, self.child_id))


class InvocationParkedError(PynencError):
    """An invocation was given up: its process died while running it more often than
    `max_recoveries` allows (poison work). Raised by `invocation.result`; the reason is
    recorded on the invocation."""

    code = "INVOCATION_PARKED"


class InvocationSuspended(BaseException):
    """A claimed invocation stops here to wait without holding its worker (a `wf.sleep`, a
    `wf.wait_signal`, a child that sleeps): its stack unwinds, its lease is given back until
    `until_ms`, and a worker resumes it from its journal when it is due or woken.

    A `BaseException`, like `GeneratorExit`, so `except Exception` in a task lets it through;
    `finally` blocks run. A task that catches it anyway stops all the same: every later `wf`
    operation raises it again and the engine raises it when the task returns.

    Attributes:
        invocation_id: The invocation that waits.
        until_ms: When it is due again, in milliseconds since the epoch.
        why: What it waits for (`wf.sleep`, `wf.wait_signal('approval')`, a child).
    """

    code = "INVOCATION_SUSPENDED"
    #: Whether what it waits for has come (checked once its lease is deferred), or None.
    ready: Callable[[], bool] | None = None

    def __init__(self, invocation_id: str, until_ms: int, why: str) -> None:
        super().__init__(invocation_id, until_ms, why)
        self.invocation_id = invocation_id
        self.until_ms = until_ms
        self.why = why

    def __str__(self) -> str:
        when = datetime.datetime.fromtimestamp(self.until_ms / 1000, datetime.UTC)
        return (
            f"invocation {self.invocation_id} suspended by {self.why} until "
            f"{when.isoformat(timespec='milliseconds')}: its worker is free meanwhile"
        )


class WorkflowCancelledError(PynencError):
    """The workflow was cancelled (`app.cancel`, `pynenc cancel`): raised by `.result` of
    any of its invocations left unfinished, and in a process still running one of them when it
    next runs a side effect or stores an outcome (which is then not stored).

    Attributes:
        workflow_id: The workflow that was cancelled (the one named to `cancel`).
        reason: The reason given to `cancel`.
        cancelled_at: When it was cancelled, in seconds since the epoch.
    """

    code = "WORKFLOW_CANCELLED"

    def __init__(self, workflow_id: str, reason: str, cancelled_at: float) -> None:
        super().__init__(workflow_id, reason, cancelled_at)
        self.workflow_id = workflow_id
        self.reason = reason
        self.cancelled_at = cancelled_at

    def __str__(self) -> str:
        when = datetime.datetime.fromtimestamp(self.cancelled_at, datetime.UTC)
        return (
            f"workflow {self.workflow_id} was cancelled at "
            f"{when.isoformat(timespec='seconds')}: {self.reason}"
        )
