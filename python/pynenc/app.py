"""The `Pynenc` app: configuration, the task registry and the public entry points."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from pynenc import codec, recovery, signals
from pynenc import logging as logs
from pynenc._core import MAX_KEY_LEN, Store, journal_id
from pynenc.config import PynencConfig
from pynenc.errors import (
    CorruptEntryError,
    CorruptStoreError,
    InvalidArgumentError,
    NonDeterminismError,
    PynencError,
)
from pynenc.invocation import Invocation, InvocationRecord, InvocationStatus
from pynenc.journal import JournalEntry, decode_ops
from pynenc.record_check import Skipped
from pynenc.registry import TaskRegistry, check_modules, check_name
from pynenc.runner import aio, execute, operations, records, waiting
from pynenc.runner.leases import LeaseKeeper
from pynenc.store import open_store
from pynenc.task import Task, TaskOptions
from pynenc.workflow.context import current_context

__all__ = ["Pynenc"]

log = logs.logger("pynenc.recovery")
store_log = logs.logger("pynenc.store")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _TaskDecorator(Protocol):
    """What `@app.task(...)` returns: the decorator, which keeps an async function's awaited
    result type as the task's result type."""

    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


class Pynenc:
    """A pynenc app: tasks registered with `@app.task`, run durably on one store.

    Args:
        app_id: A name for the app (logs, worker banners).
        store: Store URL, `lmdb://PATH` (embedded, one machine) or
            `postgresql://USER@HOST/DATABASE?schema=NAME` (workers on many hosts); default env
            `PYNENC_STORE`, else `lmdb://.pynenc`.
        execution: `inline` (a call runs in the calling process) or `queued` (a call is
            enqueued for workers); default env `PYNENC_EXECUTION`, else `inline`.
        max_payload_bytes: Largest encoded payload accepted (default 16 MiB).
        sync: fsync every commit (default True; env `PYNENC_SYNC=0`).
        lease_seconds: Lease time of a claimed queued invocation (default 30 s).
        max_recoveries: Resumptions after a dead process before an invocation is parked as
            failed (default 5).
        flush_interval_ms: Longest a write waits for its task's next flush before the store
            commits it in the background (default 5; 0: never in the background).
        store_unavailable_seconds: How long store operations retry while a PostgreSQL server
            cannot be reached before failing with `StoreUnavailableError` (default 30).
        include: Modules that define the app's tasks (dotted names), imported the first time
            the app looks up a task id it has not registered (a worker or a recovering process
            meeting a stored invocation), so that it finds them without importing them first.
    """

    def __init__(
        self,
        app_id: str | None = None,
        store: str | None = None,
        *,
        execution: str | None = None,
        max_payload_bytes: int | None = None,
        sync: bool | None = None,
        lease_seconds: float | None = None,
        max_recoveries: int | None = None,
        flush_interval_ms: int | None = None,
        include: Iterable[str] | None = None,
        store_unavailable_seconds: float | None = None,
    ) -> None:
        self.config = PynencConfig.resolve(
            app_id,
            store,
            execution,
            max_payload_bytes,
            sync,
            lease_seconds,
            max_recoveries,
            flush_interval_ms,
            store_unavailable_seconds,
        )
        self._registry = TaskRegistry(self.config.app_id, check_modules("include=", include))
        self._store: Store | None = None
        self._keeper: LeaseKeeper | None = None

    def __repr__(self) -> str:
        return f"Pynenc({self.config.app_id!r}, store={self.config.store!r})"

    @property
    def store(self) -> Store:
        """The store, opened on first use (so defining an app writes nothing)."""
        return self._open_store(create=True)

    def open_existing_store(self) -> Store:
        """Open the app's store like `store` does, but never create one: reading commands
        use this, so that a mistyped path or schema is an error, not a new empty store.

        Raises:
            InvalidArgumentError: No store exists where the app's store URL points.
        """
        return self._open_store(create=False)

    def _open_store(self, *, create: bool) -> Store:
        if self._store is None:
            self._store = open_store(
                self.config.store,
                sync=self.config.sync,
                flush_interval_ms=self.config.flush_interval_ms,
                unavailable_seconds=self.config.store_unavailable_seconds,
                create=create,
            )
        return self._store

    def _lease_keeper(self) -> LeaseKeeper:
        if self._keeper is None:
            self._keeper = LeaseKeeper(self.store, self.config.lease_seconds)
        return self._keeper

    # -- tasks -----------------------------------------------------------------------------

    @overload
    def task(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        force_new_workflow: bool = False,
        max_retries: int = 0,
        retry_for: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        retry_backoff: float = 0.0,
    ) -> _TaskDecorator: ...

    # mypy cannot match the decorator-factory overload's free P/R to this implementation.
    def task(  # type: ignore[misc]
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        force_new_workflow: bool = False,
        max_retries: int = 0,
        retry_for: type[BaseException] | tuple[type[BaseException], ...] = (Exception,),
        retry_backoff: float = 0.0,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task; use as `@app.task` or `@app.task(**options)`.

        `name` is the task's id (stored with every invocation); without it the id is
        `module.qualname`. Other options are those of `TaskOptions` (`force_new_workflow`,
        `max_retries`, `retry_for`, `retry_backoff`).

        Raises:
            InvalidArgumentError: Not a plain function; a lambda or nested function without a
                `name`; or an id another function already has (both places are named).
        """
        task_id = None if name is None else check_name(name)
        if isinstance(retry_for, list | set | frozenset):
            retry_for = tuple(retry_for)
        if isinstance(retry_for, type):
            retry_for = (retry_for,)
        opts = TaskOptions(force_new_workflow, max_retries, retry_for, retry_backoff)

        def register(f: Callable[P, R]) -> Task[P, R]:
            if not _is_function(f):
                raise InvalidArgumentError(f"@app.task decorates a function (def ...), got {f!r}")
            if inspect.isasyncgenfunction(f):
                raise InvalidArgumentError(
                    f"{f.__qualname__} is an async generator: a task returns one result "
                    "(async def ... return ...); return a list, or dispatch a child per item"
                )
            return self._registry.add(Task(self, f, opts, task_id))

        return register(func) if func is not None else register

    def get_task(self, task_id: str) -> Task[..., Any]:
        """The task registered under `task_id`. The id is only looked up, never imported: the
        first miss imports the app's `include` modules, then looks again.

        Raises:
            InvalidArgumentError: No task has this id (the message says how to register it),
                or an `include` module cannot be imported.
        """
        return self._registry.get(task_id)

    # -- running ---------------------------------------------------------------------------

    def _call(self, task: Task[P, R], args: Any, kwargs: dict[str, Any]) -> Invocation[R]:
        ctx = current_context()
        if ctx is not None:
            return operations.dispatch_child(ctx, task, args, kwargs)
        args_bytes = records.encode_arguments(self, task, args, kwargs)
        record = records.new_record(task, uuid.uuid4().bytes, args_bytes, None)
        if self.config.execution == "queued":
            self.store.put(records.INVOCATIONS, record.invocation_id, record.encode(), None)
            self.store.enqueue(record.invocation_id)
            self.store.flush()
        elif task.is_async and aio.loop_running():
            # Called from asyncio code: it runs on that loop; `result_async()` waits for it.
            return Invocation(self, record, aio.start(self, record))
        else:
            execute.run(self, record)
        return Invocation(self, record)

    # -- reading state ---------------------------------------------------------------------

    def _load_record(self, invocation_id: bytes) -> InvocationRecord | None:
        """The record of `invocation_id`, or None; `CorruptEntryError` if it is malformed."""
        data = self.store.get(records.INVOCATIONS, invocation_id)
        if data is None:
            return None
        return InvocationRecord.decode(data, invocation_id, self.config.store)

    def _records(self, skipped: Skipped) -> Iterator[InvocationRecord]:
        """Every well-formed stored record, in key order; each malformed one goes to `skipped`
        (which logs it) and the walk goes on."""
        for key, value in self.store.scan(records.INVOCATIONS, b""):
            try:
                yield InvocationRecord.decode(value, key, self.config.store)
            except CorruptEntryError as exc:
                skipped.add(exc)

    def _wait_for(self, invocation_id: bytes, timeout: float | None) -> InvocationRecord:
        return waiting.wait_for(self, invocation_id, timeout)

    def get_invocation(self, invocation_id: str) -> Invocation[Any] | None:
        """The invocation with this id, or None if the store has none.

        Raises:
            CorruptEntryError: Its stored record is malformed (the error names its key).
        """
        record = self._load_record(_parse_id(invocation_id))
        return None if record is None else Invocation(self, record)

    def list_invocations(
        self,
        *,
        task_id: str | None = None,
        status: InvocationStatus | str | None = None,
        parent_invocation_id: str | None = None,
        top_level: bool = False,
    ) -> list[Invocation[Any]]:
        """The stored invocations matching every filter given, oldest first.

        Args:
            task_id: Only invocations of this task (its full id, or the id's last part).
            status: Only invocations in this status.
            parent_invocation_id: Only children dispatched by this invocation.
            top_level: Only invocations called from outside any task.

        A malformed stored record is left out: it is logged (one ERROR line on the
        `pynenc.store` logger naming its key and what is wrong) and every other one listed.
        """
        try:
            wanted = None if status is None else InvocationStatus(status)
        except ValueError:
            statuses = ", ".join(s.value for s in InvocationStatus)
            raise InvalidArgumentError(
                f"status must be one of {statuses}, got {status!r}"
            ) from None
        parent = None if parent_invocation_id is None else _parse_id(parent_invocation_id)
        found = []
        for record in self._records(Skipped("list_invocations")):
            if (
                task_id is not None
                and record.task_id != task_id
                and not record.task_id.endswith("." + task_id)
            ):
                continue
            if wanted is not None and record.status is not wanted:
                continue
            if parent is not None and record.parent_invocation_id != parent:
                continue
            if top_level and record.parent_invocation_id is not None:
                continue
            found.append(record)
        found.sort(key=lambda r: r.created_at)
        return [Invocation(self, r) for r in found]

    def journal(self, invocation_id: str) -> list[JournalEntry]:
        """What the invocation's latest attempt recorded, in order (durable entries only).

        Raises:
            InvalidArgumentError: No such invocation.
            CorruptEntryError: Its stored record (or a journal entry) is malformed.
        """
        raw_id = _parse_id(invocation_id)
        record = self._load_record(raw_id)
        if record is None:
            raise InvalidArgumentError(f"no invocation {invocation_id} in {self.config.store}")
        return decode_ops(self.store.journal_ops(journal_id(raw_id, record.attempt)))

    def get_workflow_data(self, workflow_id: str, key: str, default: Any = None) -> Any:
        """The live value of `key` in the data of workflow `workflow_id` (from outside it).

        Raises:
            InvalidArgumentError: `workflow_id` is not an id, or `key` is not a key a workflow
                could have written (a `str` of valid UTF-8, at most 494 bytes of it).
        """
        try:
            encoded = key.encode() if isinstance(key, str) else None
        except UnicodeEncodeError:
            encoded = None
        if encoded is None:
            shown = repr(key)
            why = " (it holds a lone surrogate, which UTF-8 cannot encode)"
            raise InvalidArgumentError(
                f"a workflow data key is a str of valid UTF-8, got {shown[:200]}"
                f"{'...' if len(shown) > 200 else ''}{why if isinstance(key, str) else ''}"
            )
        if len(encoded) > MAX_KEY_LEN - 16:
            raise InvalidArgumentError(
                f"workflow data key is {len(encoded)} bytes, the longest accepted is "
                f"{MAX_KEY_LEN - 16}"
            )
        data = self.store.get("data", _parse_id(workflow_id) + encoded)
        return default if data is None else codec.decode(data, what=f"workflow data {key!r}")

    def signal(self, workflow_id: str, name: str, value: Any = None) -> None:
        """Deliver `value` to workflow `workflow_id` as signal `name`, durably (committed
        when this returns), for its `wf.wait_signal(name)`: each delivery is returned once, in
        the order sent; one sent before the workflow waits is kept for it. A workflow
        suspended in a worker is woken. Inside a task this sends on every run of the code,
        replays included: call it from a `wf.side_effect` to send it once.

        Raises:
            InvalidArgumentError: `workflow_id` is not a workflow's id (an unknown one, or an
                invocation inside a workflow), the workflow has finished, or `name` is not a
                non-empty `str` of at most 255 bytes of UTF-8. Nothing is written.
            TypeError: `value` cannot be stored (as for a task's arguments).
        """
        signals.send_signal(self, workflow_id, name, value)

    def get_event(self, workflow_id: str, key: str, timeout: float | None = None) -> Any:
        """The value workflow `workflow_id` published as event `key` (`wf.set_event`),
        waiting until it does: the store is read again after pauses growing from 1 ms to 50 ms
        (on PostgreSQL, at once when the workflow sets an event: it sends a change notice).

        Raises:
            TimeoutError: It was not set within `timeout` seconds (None: no limit).
            InvalidArgumentError: `workflow_id` is not a workflow's id, `key` is not a
                non-empty `str` of valid UTF-8 of at most 492 bytes, or the workflow finished
                without setting it (it never will).
        """
        return signals.get_event(self, workflow_id, key, timeout)

    # -- replay and recovery ---------------------------------------------------------------

    def replay(self, invocation_id: str) -> Any:
        """Re-run a finished invocation against its journal and return its result.

        Nothing is written and no child runs again: every recorded value is served from the
        journal and every child's stored result is reused.

        Raises:
            NonDeterminismError: The code now does something other than what was recorded.
            InvalidArgumentError: No such invocation, or it has not finished.
            CorruptEntryError: Its stored record (or a journal entry) is malformed.
        """
        record = self._load_record(_parse_id(invocation_id))
        if record is None:
            raise InvalidArgumentError(f"no invocation {invocation_id} in {self.config.store}")
        if not record.status.finished:
            raise InvalidArgumentError(
                f"invocation {invocation_id} is {record.status.value}, not finished: use "
                "app.recover() to complete it"
            )
        if record.cancel is not None:
            raise InvalidArgumentError(
                f"invocation {invocation_id} was cancelled before it finished: it has no "
                "outcome to replay"
            )
        return execute.run(self, record, replay_only=True)

    def cancel(self, workflow_id: str, reason: str) -> list[str]:
        """Abandon workflow `workflow_id`: it and its unfinished children (the invocations of
        the workflow and of the child workflows started from it, recursively) are marked
        cancelled with `reason` and the time, and never resumed by `recover()` or workers;
        their `.result` raises `WorkflowCancelledError`. A process still running one of them
        stops at its next side effect or outcome, storing nothing more (see
        `docs/semantics.md`). Returns the ids of the invocations cancelled, the root first.

        Raises:
            InvalidArgumentError: `reason` is not a non-empty str; `workflow_id` is no
                workflow of this store, or the workflow has already finished (nothing to
                cancel). Nothing is written.
        """
        from pynenc.cancel import cancel

        return cancel(self, workflow_id, reason)

    def recover(self) -> list[Invocation[Any]]:
        """Resume every invocation whose owning process died, from the exact point where it
        stopped (replaying its journal), and return the resumed invocations.

        An owner on this machine whose process is gone is dead at once; an owner elsewhere
        only once its lease expired. Only the outermost interrupted invocations are returned;
        their interrupted children are resumed as they are reached again.

        Raises:
            NonDeterminismError: The code of a stranded invocation no longer does what its
                journal recorded. That invocation is left as it was (to resume once the code
                is fixed) and logged; every other stranded invocation is still resumed before
                the first such error is raised, with a note of how many diverged and resumed.
            CorruptStoreError: A stranded invocation could not be resumed because a record or
                journal entry it needs is damaged (`CorruptEntryError`, naming it); raised the
                same way, after every other one was resumed.

        A malformed stored record is skipped: it is logged (one ERROR line on the
        `pynenc.store` logger naming its key and what is wrong) and every other stranded
        invocation is still resumed.
        """
        resumed, diverged, unreadable = self._recover()
        if diverged:
            first: PynencError = diverged[0]
            first.add_note(
                f"recover(): {len(diverged)} stranded invocation(s) diverged and were left as "
                f"they were; {len(resumed)} other(s) resumed"
            )
            raise first
        if unreadable:
            first = unreadable[0]
            first.add_note(
                f"recover(): {len(unreadable)} stranded invocation(s) could not be read and "
                f"were left as they were; {len(resumed)} other(s) resumed"
            )
            raise first
        return resumed

    def _recover(
        self, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[Invocation[Any]], list[NonDeterminismError], list[CorruptStoreError]]:
        """`recover()`'s work, nothing raised for what could not be resumed
        (`pynenc/recovery.py`); `progress(done, total)` is for the command line's bar."""
        return recovery.recover(self, progress)

    def release_dead_leases(self) -> int:
        """Release the leases held by processes of this machine that no longer exist, so the
        invocations they held can be claimed at once (and count as resumed when they are).
        Returns how many were released (always 0 on a store shared across hosts)."""
        return recovery.release_dead_leases(self)


def _parse_id(invocation_id: str) -> bytes:
    try:
        return uuid.UUID(invocation_id).bytes
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgumentError(
            f"{invocation_id!r} is not an invocation or workflow id"
        ) from None


def _is_function(obj: object) -> bool:
    """Whether a task can be made from `obj`: a function of Python code, also one wrapped by a
    decorator that keeps its module and qualified name (e.g. `functools.wraps`); not a class, a
    task, a bound method or a builtin."""
    return (
        callable(obj)
        and not isinstance(obj, type | Task)
        and not inspect.ismethod(obj)  # instances would share one task id
        and not inspect.isbuiltin(obj)
        and isinstance(getattr(obj, "__qualname__", None), str)
        and isinstance(getattr(obj, "__module__", None), str)
    )
