"""How a divergence at a child dispatch is worded: with the recorded and the requested
arguments decoded (cut to a readable length), and their digests only when the recorded
arguments cannot be read or the two read alike once cut; and what of a divergence is kept on
the invocation's record (`noted`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pynenc import codec
from pynenc._core import journal_id
from pynenc.errors import NonDeterminismError, Operation
from pynenc.invocation import Divergence
from pynenc.report import cut

if TYPE_CHECKING:
    from pynenc.invocation import InvocationRecord
    from pynenc.task import Task
    from pynenc.workflow.context import WorkflowContext

__all__ = ["at_child", "noted", "with_recorded_child"]

#: Longest summary kept of one side of a divergence (`Divergence.recorded`, `.requested`).
NOTED_CHARS = 300


def noted(exc: NonDeterminismError, record: InvocationRecord) -> Divergence | None:
    """What `record` keeps of `exc`, a divergence of its own journal; None when `exc` is about
    another invocation (a child's, passing through) or carries no position."""
    position = getattr(exc, "position", None)
    recorded: Operation | None = getattr(exc, "recorded", None)
    requested: Operation | None = getattr(exc, "requested", None)
    if getattr(exc, "invocation_id", None) != record.id_str or not isinstance(position, int):
        return None
    if recorded is None or requested is None:
        return None
    return Divergence(
        position=position,
        attempt=record.attempt,
        at=time.time(),
        recorded=cut(str(recorded), NOTED_CHARS),
        requested=cut(str(requested), NOTED_CHARS),
    )


def at_child(
    ctx: WorkflowContext, exc: NonDeterminismError, task: Task[..., Any], args_bytes: bytes
) -> NonDeterminismError:
    """`exc`, raised by dispatching `task` with `args_bytes`, worded with both calls'
    arguments; the execution re-raises it in these words if the task swallows it."""
    position = getattr(exc, "position", None)
    recorded: Operation | None = getattr(exc, "recorded", None)
    requested: Operation | None = getattr(exc, "requested", None)
    if not isinstance(position, int) or recorded is None or requested is None:
        return exc
    mine = _arguments(args_bytes)
    requested = replace(requested, value=mine, call=f"execute_task({task.task_id}{_listed(mine)})")
    op = _recorded_op(ctx, position)
    if op is not None and op[0] == "execute_task":
        _kind, child_task, child_id, digest = op
        shown = _child_arguments(ctx, child_id)
        my_digest = f"args digest {codec.digest(args_bytes)[:4].hex()}"
        if shown is None:  # only the digests can be compared
            requested = replace(requested, call=f"{requested.call} ({my_digest})")
        else:
            recorded = replace(
                recorded, value=shown, call=f"execute_task({child_task}{_listed(shown)})"
            )
            if recorded.call == requested.call:  # they differ beyond what is shown
                theirs = f"args digest {bytes(digest[:4]).hex()}"
                recorded = replace(recorded, call=f"{recorded.call} ({theirs})")
                requested = replace(requested, call=f"{requested.call} ({my_digest})")
    reworded = NonDeterminismError.from_report(
        exc.workflow_id, exc.invocation_id, position, recorded, requested
    )
    return ctx._execution.reword_divergence(position, reworded)


def with_recorded_child(ctx: WorkflowContext, exc: NonDeterminismError) -> NonDeterminismError:
    """`exc` with the recorded child's arguments decoded, when the journal recorded a child
    dispatch where the code now asks for another operation (or returns); `exc` itself when
    there is nothing to decode. The execution re-raises it in these words."""
    recorded: Operation | None = getattr(exc, "recorded", None)
    position = getattr(exc, "position", None)
    if recorded is None or recorded.kind != "execute_task" or not isinstance(position, int):
        return exc
    if recorded.value is not None and not recorded.value.startswith("args digest"):
        return exc  # worded already (at_child)
    op = _recorded_op(ctx, position)
    if op is None or op[0] != "execute_task":
        return exc
    _kind, child_task, child_id, _digest = op
    shown = _child_arguments(ctx, child_id)
    if shown is None:
        return exc
    recorded = replace(recorded, value=shown, call=f"execute_task({child_task}{_listed(shown)})")
    reworded = NonDeterminismError.from_report(
        exc.workflow_id, exc.invocation_id, position, recorded, exc.requested
    )
    return ctx._execution.reword_divergence(position, reworded)


def _listed(arguments: str) -> str:
    """`, 1, 'b'` for the arguments `1, 'b'`; nothing for none."""
    return f", {arguments}" if arguments else ""


def _recorded_op(ctx: WorkflowContext, position: int) -> tuple[Any, ...] | None:
    record = ctx._record
    try:
        ops = ctx.app.store.journal_ops(journal_id(record.invocation_id, record.attempt))
    except Exception:  # noqa: BLE001 - the wording must never hide the divergence itself
        return None
    return ops[position] if position < len(ops) else None


def _child_arguments(ctx: WorkflowContext, child_id: bytes) -> str | None:
    """The recorded child's arguments as shown, or None when its record cannot be read (an
    inline child is stored only with its outcome)."""
    try:
        child = ctx.app._load_record(bytes(child_id))
        return None if child is None else _arguments(child.args)
    except Exception:  # noqa: BLE001 - fall back to the digest
        return None


def _arguments(args_bytes: bytes) -> str:
    """`1, 'b', key=2` for encoded arguments `[[1, 'b'], {'key': 2}]`, cut to
    `SHOWN_CHARS`."""
    try:
        args, kwargs = codec.decode(args_bytes)
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    except Exception:  # noqa: BLE001 - arguments this build cannot read
        return f"args digest {codec.digest(args_bytes)[:4].hex()}"
    return cut(", ".join(parts))
