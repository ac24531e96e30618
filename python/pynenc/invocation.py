"""Invocations: one call of a task, its stored record and the handle users hold."""

from __future__ import annotations

import enum
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import cbor2

from pynenc import codec, record_check
from pynenc._core import fast_encode, format_id
from pynenc.errors import (
    CorruptEntryError,
    InvalidArgumentError,
    PayloadError,
    TaskError,
    WorkflowCancelledError,
)
from pynenc.workflow.identity import WorkflowIdentity

if TYPE_CHECKING:
    import asyncio

    from pynenc.app import Pynenc
    from pynenc.task import Task

__all__ = ["Divergence", "Invocation", "InvocationStatus", "describe_exception"]

R = TypeVar("R")

RECORD_VERSION = record_check.RECORD_VERSION


class InvocationStatus(enum.StrEnum):
    """Where an invocation is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    #: Abandoned by `app.cancel`: never resumed; `.result` raises `WorkflowCancelledError`.
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once the invocation has a result or an error that will not change."""
        return self in _FINISHED


_FINISHED = frozenset(
    {InvocationStatus.SUCCESS, InvocationStatus.FAILED, InvocationStatus.CANCELLED}
)
# Stored form <-> member, by dict: `InvocationStatus(value)` and `.value` go through the enum
# machinery, ten times slower, and a record is encoded on every step.
_STATUS_OF = {s.value: s for s in InvocationStatus}
_VALUE_OF = {s: s.value for s in InvocationStatus}


@dataclass(slots=True)
class ErrorInfo:
    """A task's exception, stored so it can be raised again identically (never pickled)."""

    type_name: str
    module: str
    message: str
    args: bytes | None
    traceback_text: str

    @classmethod
    def capture(cls, exc: BaseException) -> ErrorInfo:
        """Describe an exception raised by a task."""
        try:
            args: bytes | None = codec.encode(list(exc.args), what="exception arguments")
        except (TypeError, PayloadError):
            args = None
        return cls(
            type_name=type(exc).__qualname__,
            module=type(exc).__module__,
            message=_message_of(exc),
            args=args,
            traceback_text="".join(traceback.format_exception(exc)),
        )

    def to_exception(self, raised_by: str = "the task") -> BaseException:
        """The exception to raise: the original type when it is an `Exception` class this
        process has already imported and it can be built from the stored arguments, else
        `TaskError` (never `SystemExit` or `KeyboardInterrupt`; nothing is imported).
        `raised_by` names what raised it, in the note that carries the original traceback."""
        exc_type = _loaded_exception_type(self.module, self.type_name)
        if exc_type is not None and self.args is not None:
            try:
                exc = exc_type(*codec.decode(self.args))
            except Exception:  # noqa: BLE001 - a constructor with another signature
                exc = None
            if exc is not None:
                exc.__notes__ = [
                    f"raised by {raised_by}; original traceback:\n{self.traceback_text}"
                ]
                return exc
        return TaskError(
            f"{self.module}.{self.type_name}", str(self.message), str(self.traceback_text)
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "module": self.module,
            "message": self.message,
            "args": self.args,
            "traceback": self.traceback_text,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> ErrorInfo:
        return cls(d["type"], d["module"], d["message"], d["args"], d["traceback"])


def _message_of(exc: BaseException) -> str:
    """`str(exc)`, or a placeholder naming its type when its `__str__` fails."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the exception
        return f"<unprintable {type(exc).__qualname__}>"
    return message


def describe_exception(exc: BaseException) -> str:
    """`TYPE: message`, for logs and attempt lists; never fails (see `_message_of`)."""
    return f"{type(exc).__qualname__}: {_message_of(exc)}"


def _dumps(record: dict[str, Any]) -> bytes:
    """A record as CBOR: in Rust when it holds only plain values (it always does, unless an
    exception's stored arguments are exotic), else through cbor2. Records are read by key, so
    their key order does not matter."""
    fast = fast_encode(record, 1 << 62)
    return fast if fast is not None else cbor2.dumps(record, canonical=True)


def _loaded_exception_type(module: object, qualname: object) -> type[Exception] | None:
    """The `Exception` class `module.qualname`, if that module is already imported: stored data
    never makes this process import anything. Looked up in the namespaces themselves, so no
    module `__getattr__` or descriptor runs either."""
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    obj: Any = sys.modules.get(module)
    if obj is None:
        return None
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        if not isinstance(namespace, Mapping):
            return None
        obj = namespace.get(part)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None


@dataclass(frozen=True, slots=True)
class CancelInfo:
    """What `app.cancel` recorded on an invocation it cancelled."""

    workflow_id: str
    reason: str
    cancelled_at: float

    def to_wire(self) -> dict[str, Any]:
        return {"at": self.cancelled_at, "wf": self.workflow_id, "reason": self.reason}

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> CancelInfo:
        return cls(d["wf"], d["reason"], d["at"])

    def error(self) -> WorkflowCancelledError:
        return WorkflowCancelledError(self.workflow_id, self.reason, self.cancelled_at)


@dataclass(frozen=True, slots=True)
class Divergence:
    """The last divergence a resumption of an invocation met (a recovery or a worker running
    it again found its code no longer doing what its journal recorded); kept on its record
    until a later run gets past it.

    Attributes:
        position: The journal position where the code differed.
        attempt: The attempt whose journal it is.
        at: When it was found (seconds since the epoch).
        recorded: What the journal holds there, in short (`side_effect('charge') at f.py:3`).
        requested: What the code asked for instead, in short.
    """

    position: int
    attempt: int
    at: float
    recorded: str
    requested: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "attempt": self.attempt,
            "position": self.position,
            "recorded": self.recorded,
            "requested": self.requested,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Divergence:
        return cls(d["position"], d["attempt"], d["at"], d["recorded"], d["requested"])


@dataclass(slots=True)
class InvocationRecord:
    """The stored state of one invocation (CBOR in the store's `invocations` table)."""

    invocation_id: bytes
    task_id: str
    args: bytes
    workflow: WorkflowIdentity
    parent_invocation_id: bytes | None
    status: InvocationStatus = InvocationStatus.PENDING
    attempt: int = 0
    owner: str | None = None
    result: bytes | None = None
    error: ErrorInfo | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    recoveries: int = 0
    #: When the latest attempt started (seconds since the epoch); None until it starts, and in
    #: records written before attempts were timed.
    started_at: float | None = None
    #: Claims by workers that did not know its task (parked after `max_recoveries`).
    misses: int = 0
    #: Why and when it was cancelled (status `CANCELLED` only), and the workflow named.
    cancel: CancelInfo | None = None
    #: The last divergence a resumption met, until a later run gets past it; None in records
    #: written before divergences were kept.
    divergence: Divergence | None = None
    _id_str: str = field(default="", repr=False, compare=False)

    @property
    def id_str(self) -> str:
        """The invocation id as a UUID string (formatted once)."""
        if not self._id_str:
            self._id_str = format_id(self.invocation_id)
        return self._id_str

    def encode(self) -> bytes:
        record: dict[str, Any] = {
            # In canonical order (shorter keys first, then bytewise), as records have
            # always been written.
            "v": RECORD_VERSION,
            "id": self.invocation_id,
            "wf": [
                self.workflow.workflow_id,
                self.workflow.workflow_type,
                self.workflow.parent_workflow_id,
            ],
            "args": self.args,
            "task": self.task_id,
            "error": None if self.error is None else self.error.to_wire(),
            "owner": self.owner,
            "misses": self.misses,
            "parent": self.parent_invocation_id,
            "result": self.result,
            "status": _VALUE_OF[self.status],
            "attempt": self.attempt,
            "created": self.created_at,
            "started": self.started_at,
            "updated": self.updated_at,
            "attempts": self.attempts,
            "recoveries": self.recoveries,
        }
        if self.cancel is not None:
            # Only on a cancelled record: every other record stays as it was always written.
            record["cancel"] = self.cancel.to_wire()
        if self.divergence is not None:
            record["divergence"] = self.divergence.to_wire()  # likewise: only while it holds
        return _dumps(record)

    @classmethod
    def decode(
        cls, data: bytes, key: bytes | None = None, store: str | None = None
    ) -> InvocationRecord:
        """The record stored under `key` (of the store `store`, both named in errors), read
        through the strict payload decoder with every field checked (`pynenc.record_check`).

        Raises:
            CorruptEntryError: the bytes are not a well-formed record of `key`.
        """
        try:
            d = record_check.check(record_check.load(data), key, _STATUS_OF)
        except record_check.RecordError as exc:
            raise record_check.corrupt(key, str(exc), store) from None
        wf = d["wf"]
        error = d["error"]
        return cls(
            invocation_id=d["id"],
            task_id=d["task"],
            args=d["args"],
            workflow=WorkflowIdentity(wf[0], wf[1], wf[2]),
            parent_invocation_id=d["parent"],
            status=_STATUS_OF[d["status"]],
            attempt=d["attempt"],
            owner=d["owner"],
            result=d["result"],
            error=None if error is None else ErrorInfo.from_wire(error),
            created_at=d["created"],
            updated_at=d["updated"],
            attempts=d["attempts"],
            recoveries=d.get("recoveries", 0),
            misses=d.get("misses", 0),
            started_at=d.get("started"),
            cancel=None if d.get("cancel") is None else CancelInfo.from_wire(d["cancel"]),
            divergence=None
            if d.get("divergence") is None
            else Divergence.from_wire(d["divergence"]),
        )


class Invocation(Generic[R]):
    """A handle on one call of a task.

    Attributes:
        invocation_id: The id of this call (a UUID string).
    """

    __slots__ = ("_app", "_record", "_running", "invocation_id")

    def __init__(
        self,
        app: Pynenc,
        record: InvocationRecord,
        running: asyncio.Future[Any] | None = None,
    ) -> None:
        self._app = app
        self._record = record
        #: Its run in this process, started on an event loop (an inline async call from
        #: asyncio code, a child of `wf.execute_task_async`); None otherwise.
        self._running = running
        self.invocation_id = record.id_str

    def __repr__(self) -> str:
        task, status = self._record.task_id, self.status.value
        return f"Invocation({self.invocation_id}, task={task}, status={status})"

    def _refresh(self) -> InvocationRecord:
        # A run in this process updates the very record this handle holds.
        if not self._record.status.finished and self._running is None:
            fresh = self._app._load_record(self._record.invocation_id)
            if fresh is not None:
                self._record = fresh
        return self._record

    @property
    def task(self) -> Task[..., R]:
        """The task this invocation calls."""
        return self._app.get_task(self._record.task_id)

    @property
    def task_id(self) -> str:
        """The id of the task this invocation calls (its `name`, or `module.qualname`)."""
        return self._record.task_id

    @property
    def owner(self) -> str | None:
        """The process that last ran it (`host:pid:start`), or None if none has yet."""
        return self._refresh().owner

    @property
    def parent_invocation_id(self) -> str | None:
        """The invocation that dispatched this one, or None for a top-level call."""
        parent = self._record.parent_invocation_id
        return None if parent is None else str(uuid.UUID(bytes=parent))

    @property
    def arguments(self) -> dict[str, Any]:
        """The call's arguments by parameter name (as stored, decoded)."""
        args, kwargs = codec.decode(self._record.args)
        return self._app.get_task(self._record.task_id).bind_arguments(args, kwargs)

    @property
    def status(self) -> InvocationStatus:
        """The invocation's current status."""
        return self._refresh().status

    @property
    def workflow(self) -> WorkflowIdentity:
        """The identity of the workflow this invocation belongs to."""
        return self._record.workflow

    @property
    def attempt(self) -> int:
        """The attempt number of the latest execution (0 for the first)."""
        return self._refresh().attempt

    @property
    def attempts(self) -> list[dict[str, Any]]:
        """Earlier failed attempts: their number (`attempt`), error message (`error`) and, when
        recorded, when they started and ended (`started`, `ended`, seconds since the epoch) and
        the process that ran them (`owner`)."""
        return list(self._refresh().attempts)

    def wait(self, timeout: float | None = None) -> Invocation[R]:
        """Wait until the invocation has finished.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Raises:
            TimeoutError: The invocation did not finish in time.
            BlockingCallError: It has not finished, and an event loop runs in this thread
                (asyncio code, an async task's body): `await wait_async()` instead.
        """
        return self._wait(timeout, "invocation.wait()", "invocation.wait_async()")

    def _wait(self, timeout: float | None, call: str, twin: str) -> Invocation[R]:
        record = self._refresh()
        if record.status.finished:
            return self
        from pynenc.runner import aio
        from pynenc.workflow.context import current_context

        ctx = current_context()
        if ctx is not None and ctx._replay_only:  # a replay runs, claims and waits for nothing
            from pynenc.runner.replay import unfinished_child

            raise unfinished_child(ctx, record.invocation_id, record.status.value)
        aio.refuse_blocking(ctx, f"{call} of unfinished invocation {self.invocation_id}", twin)
        self._record = self._app._wait_for(record.invocation_id, timeout)
        return self

    async def wait_async(self, timeout: float | None = None) -> Invocation[R]:
        """`wait` on the running event loop: awaits the invocation's end without blocking
        the loop (from asyncio code, or in an async task's body).

        Raises:
            TimeoutError: The invocation did not finish in time.
        """
        record = self._refresh()
        if record.status.finished:
            return self
        from pynenc.runner import aio_waits
        from pynenc.workflow.context import current_context

        ctx = current_context()
        if ctx is not None and ctx._replay_only:
            from pynenc.runner.replay import unfinished_child

            raise unfinished_child(ctx, record.invocation_id, record.status.value)
        await aio_waits.wait_for_async(self, timeout)
        return self

    @property
    def result(self) -> R:
        """The task's return value; re-raises the task's exception if it failed.

        Raises:
            WorkflowCancelledError: Its workflow was cancelled before it finished.
            BlockingCallError: It has not finished, and an event loop runs in this thread
                (asyncio code, an async task's body): `await result_async()` instead.
        """
        record = self._record
        if record.status is not InvocationStatus.SUCCESS:
            record = self._wait(None, "invocation.result", "invocation.result_async()")._record
        return self._outcome(record)

    async def result_async(self) -> R:
        """`result` on the running event loop: awaits the invocation's end without blocking
        the loop, then returns its value or raises its exception."""
        record = self._record
        if record.status is not InvocationStatus.SUCCESS:
            record = (await self.wait_async())._record
        return self._outcome(record)

    def _outcome(self, record: InvocationRecord) -> R:
        if record.status is InvocationStatus.CANCELLED:
            if record.cancel is None:  # pragma: no cover - record_check refuses it
                raise CorruptEntryError(f"invocation {self.invocation_id} cancelled without why")
            raise record.cancel.error()
        if record.status is InvocationStatus.FAILED:
            if record.error is None:
                raise InvalidArgumentError(
                    f"invocation {self.invocation_id} failed without an error"
                )
            raise record.error.to_exception()
        if record.result is None:
            raise CorruptEntryError(f"invocation {self.invocation_id} succeeded without a result")
        value: R = codec.decode(record.result, what=lambda: f"result of {self.invocation_id}")
        return value
