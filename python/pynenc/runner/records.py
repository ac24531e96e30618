"""Invocation records: a call's encoded arguments, a new invocation's record placed in its
workflow, and staging a record for the next flush."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pynenc import codec
from pynenc._core import format_id
from pynenc.errors import (
    InvalidArgumentError,
)
from pynenc.invocation import (
    InvocationRecord,
)
from pynenc.task import Task
from pynenc.workflow.context import WorkflowContext
from pynenc.workflow.identity import WorkflowIdentity

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["INVOCATIONS", "encode_arguments", "new_record", "store_record"]

INVOCATIONS = "invocations"


def encode_arguments(app: Pynenc, task: Task[..., Any], args: Any, kwargs: dict[str, Any]) -> bytes:
    """Encode a call's arguments; raises `TypeError` naming the parameter before any write
    (and `InvalidArgumentError` for a queued call of a task no worker could import)."""
    if task.unimportable is not None and app.config.execution == "queued":
        raise InvalidArgumentError(task.unimportable)
    task.check_arguments(args, kwargs)
    try:
        return codec.encode(
            [list(args), kwargs],
            what=lambda: f"arguments of task {task.task_id!r}",
            limit=app.config.max_payload_bytes,
        )
    except TypeError:
        for name, value in task.bind_arguments(args, kwargs).items():
            codec.encode(
                value,
                what=f"argument {name!r} of task {task.task_id!r}",
                limit=app.config.max_payload_bytes,
            )
        raise


def new_record(
    task: Task[..., Any],
    invocation_id: bytes,
    args: bytes,
    parent: WorkflowContext | None,
) -> InvocationRecord:
    """The record of a new invocation, placed in its workflow by the membership rules."""
    if parent is None:
        workflow = WorkflowIdentity(format_id(invocation_id), task.task_id, None)
    elif task.options.force_new_workflow:
        workflow = WorkflowIdentity(
            format_id(invocation_id), task.task_id, parent.workflow.workflow_id
        )
    else:
        workflow = parent.workflow
    return InvocationRecord(
        invocation_id=invocation_id,
        task_id=task.task_id,
        args=args,
        workflow=workflow,
        parent_invocation_id=None if parent is None else parent._record.invocation_id,
    )


def store_record(
    app: Pynenc, record: InvocationRecord, fence: tuple[bytes, int] | None = None
) -> None:
    """Stage `record` (with its update time) for the next flush."""
    record.updated_at = time.time()
    app.store.put(INVOCATIONS, record.invocation_id, record.encode(), fence)
