"""Replaying one invocation against its journal, writing nothing: what `app.replay`,
`pynenc check` and `pynenc.testing.replay` share.

A finished invocation must match its journal exactly, as `app.replay` checks it. An unfinished
one (pending or running: its process died, or it is running now) is replayed over its
*recorded prefix*: every entry it recorded must match the code, in order, and the replay stops
where the journal ends (the point a recovery would go on recording from) or where the code
waits on a child that has not finished. Nothing past that point can be compared, and nothing
is ever written: no entry, no record, no workflow data, no child run.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynenc._core import Store, format_id, journal_id
from pynenc.errors import (
    NonDeterminismError,
    PynencError,
    StoreError,
    UnfinishedChildError,
)
from pynenc.invocation import InvocationRecord, InvocationStatus, describe_exception
from pynenc.runner import execute

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.workflow.context import WorkflowContext

__all__ = ["Outcome", "on_store", "replay_record", "unfinished_child", "unstored_child"]

#: The verdicts of one replayed invocation.
MATCHED, DIVERGED, ERROR = "matched", "diverged", "error"


@dataclass
class Outcome:
    """How one invocation replayed against the code as it is now.

    Attributes:
        invocation_id: The invocation.
        workflow_id: Its workflow.
        task: Its task id.
        status: Its stored status.
        verdict: `matched`, `diverged` (the code does something else than the journal
            recorded), or `error` (it could not be replayed: its task is gone, a record is
            damaged, or a finished run now raises where it returned).
        prefix: Whether only its recorded prefix was replayed (it has not finished).
        entries: How many entries the replayed attempt's journal holds.
        divergence: The `NonDeterminismError` when it diverged.
        error: What stopped it when it could not be replayed.
        value: What the task returned when replayed in full (never sent as JSON).
    """

    invocation_id: str
    workflow_id: str
    task: str
    status: str
    verdict: str
    prefix: bool
    entries: int
    divergence: NonDeterminismError | None = None
    error: BaseException | None = None
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        """As plain JSON values (also what crosses between processes)."""
        out: dict[str, Any] = {
            "invocation_id": self.invocation_id,
            "workflow_id": self.workflow_id,
            "task": self.task,
            "status": self.status,
            "verdict": self.verdict,
            "prefix": self.prefix,
            "entries": self.entries,
            "divergence": None,
            "error": None if self.error is None else describe_exception(self.error),
        }
        exc = self.divergence
        if exc is not None:
            out["divergence"] = {
                "position": exc.position,
                "matched": exc.matched,
                "recorded": dataclasses.asdict(exc.recorded),
                "requested": dataclasses.asdict(exc.requested),
                "report": str(exc),
            }
        return out


def replay_record(app: Pynenc, record: InvocationRecord) -> Outcome:
    """Replay `record` against its journal with the code of `app`'s registry, writing nothing
    (see the module's docstring for what an unfinished one is checked against)."""
    prefix = not record.status.finished
    try:
        app.get_task(record.task_id)  # a task the code no longer has is no divergence
        entries = app.store.journal_len(journal_id(record.invocation_id, record.attempt))
    except PynencError as exc:
        return _outcome(record, ERROR, prefix, 0, error=exc)
    try:
        value = execute.run(app, record, replay_only=True)
    except NonDeterminismError as exc:
        if prefix and _past_the_end(exc, entries):
            return _outcome(record, MATCHED, prefix, entries)
        return _outcome(record, DIVERGED, prefix, entries, divergence=exc)
    except UnfinishedChildError as exc:
        if prefix:
            return _outcome(record, MATCHED, prefix, entries)
        return _outcome(record, ERROR, prefix, entries, error=exc)
    except StoreError as exc:  # a damaged record or entry: nothing to compare
        return _outcome(record, ERROR, prefix, entries, error=exc)
    except Exception as exc:  # noqa: BLE001 - the task's own exception, judged below
        # The engine checked that every recorded entry was consumed before raising it, so a
        # run that failed (or has not finished) replayed as recorded.
        if prefix or record.status is InvocationStatus.FAILED:
            return _outcome(record, MATCHED, prefix, entries)
        changed = PynencError(
            f"invocation {record.id_str} returned when it ran, but the code now raises "
            f"{describe_exception(exc)} after replaying all {entries} recorded entries"
        )
        changed.__cause__ = exc
        return _outcome(record, ERROR, prefix, entries, error=changed)
    outcome = _outcome(record, MATCHED, prefix, entries)
    outcome.value = value
    return outcome


def _outcome(
    record: InvocationRecord,
    verdict: str,
    prefix: bool,
    entries: int,
    *,
    divergence: NonDeterminismError | None = None,
    error: BaseException | None = None,
) -> Outcome:
    return Outcome(
        record.id_str,
        record.workflow.workflow_id,
        record.task_id,
        record.status.value,
        verdict,
        prefix,
        entries,
        divergence,
        error,
    )


def _past_the_end(exc: NonDeterminismError, entries: int) -> bool:
    """Whether `exc` says only that the code went on past the last recorded entry (which an
    unfinished run does: a recovery would record from there)."""
    recorded = getattr(exc, "recorded", None)
    requested = getattr(exc, "requested", None)
    return (
        getattr(exc, "position", -1) >= entries
        and recorded is not None
        and recorded.kind == "return"
        and requested is not None
        and requested.kind != "return"
    )


def unfinished_child(ctx: WorkflowContext, child_id: bytes, state: str) -> UnfinishedChildError:
    """The error of a replay whose code waits on a child that has not finished (`state` is
    its status): a replay never runs, claims or waits for anything. It ends the attempt, so
    the task cannot swallow it."""
    exc = UnfinishedChildError(
        f"cannot replay {ctx.invocation_id} past its wait on child {format_id(child_id)} "
        f"({state}, not finished): nothing recorded says what it returns. Replay it once the "
        "child finished, or check its recorded prefix with pynenc check",
        ctx.invocation_id,
        format_id(child_id),
    )
    ctx._execution.fail(exc)
    return exc


def unstored_child(ctx: WorkflowContext, child_id: bytes) -> UnfinishedChildError:
    """The error of a replay whose code dispatches a child at a position where the journal
    recorded one that was never stored (its invocation had not finished); it ends the
    attempt."""
    exc = UnfinishedChildError(
        f"cannot replay {ctx.invocation_id}: its child {uuid.UUID(bytes=child_id)} was never "
        "stored (the invocation did not finish); use app.recover() instead",
        ctx.invocation_id,
        format_id(child_id),
    )
    ctx._execution.fail(exc)
    return exc


def on_store(app: Pynenc, url: str, store: Store | None = None) -> Pynenc:
    """`app` with its tasks (the same registry) on another store: the store at `url`, opened
    (and the URL checked) on first use, or `store` already open there. `app` itself is left
    as it was."""
    view = copy.copy(app)
    view.config = dataclasses.replace(app.config, store=url)
    view._store = store
    view._keeper = None
    return view
