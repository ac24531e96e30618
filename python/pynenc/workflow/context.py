"""The `wf` context of a running task: deterministic operations backed by the Recorder.

Twin of `rust/src/bindings/execution.rs`. The hot operations (`random`, `uuid`, `utc_now`) are
the Rust methods themselves, bound onto the context, so a call costs one trip into Rust.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from pynenc.errors import InvalidArgumentError
from pynenc.workflow.identity import WorkflowIdentity

if TYPE_CHECKING:
    import asyncio
    from datetime import datetime, timedelta

    from pynenc._core import Execution
    from pynenc.app import Pynenc
    from pynenc.invocation import Invocation, InvocationRecord
    from pynenc.runner.aio_waits import Waits
    from pynenc.task import Task

__all__ = ["WorkflowContext", "current_context"]

T = TypeVar("T")

_CURRENT: ContextVar[WorkflowContext | None] = ContextVar("pynenc_current_context", default=None)

current_context = _CURRENT.get
"""The context of the invocation running in this thread/async context, or None."""


class _Deterministic:
    """The `wf.deterministic` namespace of the reference API."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx

    def _deterministic_operation(self, name: str, fn: Callable[[], T]) -> T:
        """Run `fn` once, record its result, return the recorded value on replay."""
        return self._ctx.side_effect(name, fn)


class _WorkflowRandom(_random.Random):
    """A `random.Random` whose every method draws from the invocation's recorded stream."""

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx
        super().__init__()

    def seed(self, a: Any = None, version: int = 2) -> None:
        """Seeding is fixed by the invocation; calls made by `random.Random` itself are ignored."""
        if getattr(self, "_ctx", None) is not None and a is not None:
            raise InvalidArgumentError(
                "wf.rng() is seeded by the invocation and cannot be re-seeded; "
                "use random.Random(seed) for an independent generator"
            )

    def random(self) -> float:
        return self._ctx.random()

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise InvalidArgumentError("number of bits must be non-negative")
        value = 0
        for shift in range(0, k, 64):
            value |= self._ctx._execution.random_u64() << shift
        return value & ((1 << k) - 1)

    def getstate(self) -> Any:
        raise InvalidArgumentError("wf.rng() state lives in the journal and cannot be saved")

    def setstate(self, state: Any) -> None:
        raise InvalidArgumentError("wf.rng() state lives in the journal and cannot be restored")


class WorkflowContext:
    """The deterministic operations of one running invocation (`task.wf`).

    Attributes:
        random: A float in [0, 1) with 53 random bits; the same value on replay.
        uuid: A version-4 UUID string; the same value on replay.
        utc_now: A timezone-aware UTC datetime: the real clock, recorded; strictly increasing
            within the invocation; the recorded value on replay.
        set_data: `set_data(key, value)` stores `value` under `key` in the workflow's durable
            key-value data: visible at once to the workflow's tasks in this process, to others
            once flushed; a replay does not write it again.
        get_data: `get_data(key, default=None)` reads `key` from the workflow's data; the value
            read is recorded, so a replay returns the same value.
        patched: `patched(change_id)` guards a change of the workflow's code: True when this
            run takes the new branch (the first time it gets here, recording a marker; or on
            replay of a run that recorded the marker), False when replaying or resuming a run
            recorded before the change. One answer per change id per execution. See
            docs/semantics.md, "Changing a workflow's code".
        deprecate_patch: `deprecate_patch(change_id)` replaces `patched(change_id)` once no
            run recorded before the change is left and the old branch is deleted: it skips the
            change's marker in runs that recorded it and records nothing.
        deterministic: The reference API's namespace (`_deterministic_operation`).
    """

    __slots__ = (
        "_execution",
        "_fence",
        "_record",
        "_replay_only",
        "_waits",
        "app",
        "deprecate_patch",
        "deterministic",
        "get_data",
        "patched",
        "random",
        "set_data",
        "task",
        "utc_now",
        "uuid",
    )

    random: Callable[[], float]
    uuid: Callable[[], str]
    utc_now: Callable[[], datetime]
    set_data: Callable[[str, Any], None]
    get_data: Callable[..., Any]
    patched: Callable[[str], bool]
    deprecate_patch: Callable[[str], None]

    def __init__(
        self,
        app: Pynenc,
        task: Task[..., Any],
        record: InvocationRecord,
        execution: Execution,
        *,
        replay_only: bool = False,
        fence: tuple[bytes, int] | None = None,
    ) -> None:
        self.app = app
        self._replay_only = replay_only
        self._fence = fence
        self.task = task
        self._record = record
        self._execution = execution
        #: The pending waits of an async task's run (`pynenc.runner.aio_waits.Waits`), set
        #: while its coroutine runs.
        self._waits: Waits | None = None
        # Bound Rust methods: the hot path never runs Python code of ours.
        self.random = execution.random
        self.uuid = execution.uuid
        self.utc_now = execution.utc_now
        self.set_data = execution.set_data
        self.get_data = execution.get_data
        self.patched = execution.patched
        self.deprecate_patch = execution.deprecate_patch
        self.deterministic = _Deterministic(self)

    @property
    def workflow(self) -> WorkflowIdentity:
        """The identity of the workflow this invocation belongs to."""
        return self._record.workflow

    @property
    def invocation_id(self) -> str:
        """The id of the running invocation."""
        return self._record.id_str

    @property
    def attempt(self) -> int:
        """The attempt number of this execution (0 for the first)."""
        return self._record.attempt

    def rng(self) -> _random.Random:
        """A `random.Random` (randint, choice, shuffle, gauss, ...) drawing from the recorded
        stream, so every method replays identically."""
        return _WorkflowRandom(self)

    def execute_task(self, task: Task[..., T], *args: Any, **kwargs: Any) -> Invocation[T]:
        """Run `task` as a child of this invocation: recorded, idempotent (a replay returns the
        same child, and a finished child never runs again).

        Returns:
            The child's `Invocation`; `.result` gives its value or raises its exception.
        """
        from pynenc.runner import operations

        return operations.dispatch_child(self, task, args, kwargs)

    def execute_task_async(
        self, task: Task[..., T], *args: Any, **kwargs: Any
    ) -> asyncio.Future[Invocation[T]]:
        """`execute_task` for the body of an async task: the child is dispatched (recorded)
        by this call, and, inline, starts running at once; await the future returned for its
        `Invocation` once it has finished (its `.result` then reads without waiting).
        Children dispatched one after another and awaited together (`asyncio.gather`) run
        side by side, and the journal holds them in the order of the calls, whichever ends
        first.

        Raises:
            InvalidArgumentError: Called from a plain task, or outside its event loop.
        """
        from pynenc.runner import aio_waits

        return aio_waits.execute_task_async(self, task, args, kwargs)

    def side_effect(self, name: str, fn: Callable[[], T]) -> T:
        """Run `fn()` once and record its (encodable) result; a replay returns the recorded
        value without calling `fn`. The value is durable before it is returned."""
        from pynenc.runner import operations

        return operations.side_effect(self, name, fn)

    def sleep(self, duration: float | timedelta) -> None:
        """Wait `duration` (seconds, or a `timedelta`) durably: the deadline is recorded the
        first time, so a resumption waits only for what is left and a replay of a finished
        run not at all. Inline it blocks the thread; in a worker the invocation is suspended
        and its worker slot is free until it is due (see docs/semantics.md, "Waiting")."""
        from pynenc.runner import waits

        waits.sleep(self, duration)

    def sleep_until(self, when: datetime) -> None:
        """Wait until `when` (a timezone-aware `datetime`), as `sleep` does."""
        from pynenc.runner import waits

        waits.sleep_until(self, when)

    def sleep_async(self, duration: float | timedelta) -> asyncio.Future[None]:
        """`sleep` for the body of an async task: the deadline is recorded by this call;
        await the future returned. Inline it waits on the event loop; in a worker the
        invocation is suspended when every wait pending is long (docs/semantics.md, "Async
        tasks").

        Raises:
            InvalidArgumentError: Called from a plain task, or outside its event loop.
        """
        from pynenc.runner import aio_waits

        return aio_waits.sleep_async(self, duration)

    def sleep_until_async(self, when: datetime) -> asyncio.Future[None]:
        """`sleep_until` for the body of an async task, as `sleep_async`."""
        from pynenc.runner import aio_waits

        return aio_waits.sleep_until_async(self, when)

    def wait_signal(self, name: str, timeout: float | timedelta | None = None) -> Any:
        """The next undelivered value sent to this workflow as signal `name` (`app.signal`),
        waiting for it as `sleep` waits; each delivery is returned once, in the order sent,
        and the same values come back on replay. Only the workflow's root invocation waits
        for signals.

        Raises:
            TimeoutError: None came within `timeout` (seconds or a `timedelta`, counted from
                the first time this ran; recorded, so a replay raises it too).
        """
        from pynenc.runner import waits

        return waits.wait_signal(self, name, timeout)

    def wait_signal_async(
        self, name: str, timeout: float | timedelta | None = None
    ) -> asyncio.Future[Any]:
        """`wait_signal` for the body of an async task: the wait is recorded by this call;
        the future returned ends with the delivery taken, or `TimeoutError`. Waits of one
        name take deliveries in the order the waits were called.

        Raises:
            InvalidArgumentError: Called from a plain task, or outside its event loop.
        """
        from pynenc.runner import aio_waits

        return aio_waits.wait_signal_async(self, name, timeout)

    def set_event(self, key: str, value: Any) -> None:
        """Publish `value` as event `key` of this workflow, durably, for callers outside
        waiting on `app.get_event(workflow_id, key)`; a replay does not publish it again."""
        from pynenc.runner import waits

        waits.set_event(self, key, value)
