"""Cancelling a workflow: `app.cancel(workflow_id, reason)` and `pynenc cancel ID --reason ...`.

A cancel marks the workflow's root invocation and every unfinished invocation of it, and of
the child workflows started from it (recursively), `cancelled`, with the reason, the time and
the workflow named. A cancelled invocation is finished: recovery and workers never resume it,
and its `.result` raises `WorkflowCancelledError`.

An attempt running right now is stopped by two guards:
- a queued invocation is claimed by the cancel (a fresh lease token), so every later write of
  the worker running it (its record, its journal, its completion) is refused at its next
  flush (`LeaseLostError` in that worker, which drops it);
- any process running an invocation checks, before it runs a side effect's function and
  before it stores an outcome, whether its workflow (or one it was started from) is
  cancelled, and stops with `WorkflowCancelledError` instead, storing nothing of it
  (`check_not_cancelled`).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from pynenc import logging as logs
from pynenc.errors import (
    InvalidArgumentError,
    LeaseLostError,
    StoreError,
    WorkflowCancelledError,
)
from pynenc.invocation import CancelInfo, InvocationRecord, InvocationStatus
from pynenc.record_check import Skipped
from pynenc.runner.leases import now_ms
from pynenc.runner.owner import current_owner
from pynenc.runner.records import INVOCATIONS, store_record

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["cancel", "cancel_claimed", "check_not_cancelled"]

log = logs.logger("pynenc.cancel")

#: Longest reason accepted, in characters (it is stored on every cancelled invocation).
MAX_REASON = 2000
#: Times a queued invocation's lease is fought for before the cancel gives up (a worker
#: claiming it in the instant between the release of its lease and the cancel's own claim).
_CLAIM_TRIES = 50
#: The CBOR text `"cancel"` (0x66: a text of 6 bytes), the key every cancelled record holds:
#: a record without these bytes is not cancelled, so most checks need not decode it.
_CANCEL_KEY = b"\x66cancel"


def cancel(app: Pynenc, workflow_id: str, reason: str) -> list[str]:
    """Cancel workflow `workflow_id` and its unfinished children; return the ids of the
    invocations cancelled (its root first).

    Raises:
        InvalidArgumentError: `reason` is not a non-empty str (of at most 2,000 characters);
            `workflow_id` is not an id, names no stored invocation, names an invocation inside
            another workflow, or a workflow that has already finished. Nothing is written.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidArgumentError(
            f"a cancel needs a reason, a non-empty str saying why, got {reason!r:.80}"
        )
    if len(reason) > MAX_REASON:
        raise InvalidArgumentError(
            f"a cancel reason is at most {MAX_REASON:,} characters, got {len(reason):,}"
        )
    try:
        raw = uuid.UUID(workflow_id).bytes
    except (ValueError, AttributeError, TypeError):
        raise InvalidArgumentError(f"{workflow_id!r:.80} is not a workflow id") from None
    root = app._load_record(raw)
    if root is None:
        raise InvalidArgumentError(
            f"no workflow {workflow_id} in {app.config.store}: nothing to cancel"
        )
    if root.workflow.workflow_id != root.id_str:
        raise InvalidArgumentError(
            f"{workflow_id} is an invocation of {root.task_id} inside workflow "
            f"{root.workflow.workflow_id}, not a workflow: cancel that workflow instead"
        )
    if root.status.finished:
        raise InvalidArgumentError(
            f"workflow {workflow_id} has already finished ({root.status.value}): nothing to cancel"
        )
    info = CancelInfo(root.id_str, reason, time.time())
    targets = _unfinished_members(app, root)
    queued = set(app.store.queued())
    cancelled: list[str] = []
    for record in targets:
        if record.invocation_id in queued:
            done = _cancel_queued(app, record.invocation_id, info)
        else:
            done = _cancel_inline(app, record.invocation_id, info)
        if done:
            cancelled.append(record.id_str)
    app.store.flush()
    log.warning(
        "cancelled workflow %s (%d unfinished invocation(s)): %s",
        root.id_str,
        len(cancelled),
        reason,
        extra=logs.extra(logs.subject_of(root)),
    )
    return cancelled


def _unfinished_members(app: Pynenc, root: InvocationRecord) -> list[InvocationRecord]:
    """The unfinished invocations of `root`'s workflow and of every workflow started from it,
    recursively (the root first)."""
    records = [r for r in app._records(Skipped("cancel")) if not r.status.finished]
    workflows = {root.id_str}
    grew = True
    while grew:
        grew = False
        for record in records:
            wf = record.workflow
            if wf.workflow_id not in workflows and wf.parent_workflow_id in workflows:
                workflows.add(wf.workflow_id)
                grew = True
    members = [r for r in records if r.workflow.workflow_id in workflows]
    members.sort(key=lambda r: (r.invocation_id != root.invocation_id, r.created_at))
    return members


def _mark(record: InvocationRecord, info: CancelInfo) -> None:
    record.status, record.cancel = InvocationStatus.CANCELLED, info
    record.result = record.error = None


def _cancel_inline(app: Pynenc, invocation_id: bytes, info: CancelInfo) -> bool:
    """Stage the cancel of an invocation that is not queued (read again just now)."""
    record = app._load_record(invocation_id)
    if record is None or record.status.finished:
        return False
    _mark(record, info)
    store_record(app, record)
    return True


def _cancel_queued(app: Pynenc, invocation_id: bytes, info: CancelInfo) -> bool:
    """Cancel a queued invocation: take its lease (a fresh token fences off any worker running
    it), then store it cancelled and take it off the queue under that lease, committed."""
    owner = current_owner().encode()
    lease_ms = int(app.config.lease_seconds * 1000)
    for _ in range(_CLAIM_TRIES):
        claim = app.store.claim_invocation(invocation_id, owner, lease_ms, now_ms())
        if claim is None:
            lease = app.store.lease(invocation_id)
            if lease is None or invocation_id not in app.store.queued():
                # Off the queue meanwhile (finished): nothing left to fence.
                return _cancel_inline(app, invocation_id, info)
            if lease.owner:
                try:
                    app.store.release(invocation_id, lease.token)  # a worker holds it: fence it off
                except LeaseLostError:
                    pass  # claimed or released meanwhile: try again
                continue
            # Deferred (suspended in a wait, or set aside) and held by nobody: cancelled under
            # its current token, never made claimable, so no worker starts it meanwhile; a
            # claim in between moves the token and refuses this write (then try again).
            token = lease.token
        else:
            token = claim.token
        fence = (invocation_id, token)
        record = app._load_record(invocation_id)
        if record is None or record.status.finished:
            app.store.complete(invocation_id, fence)
            app.store.flush()
            return False
        _mark(record, info)
        store_record(app, record, fence)
        app.store.complete(invocation_id, fence)
        if not app.store.flush():
            return True
    raise StoreError(
        f"could not cancel queued invocation {uuid.UUID(bytes=invocation_id)}: workers kept "
        f"claiming it ({_CLAIM_TRIES} tries); run the cancel again"
    )


def cancel_claimed(
    app: Pynenc, invocation_id: bytes, fence: tuple[bytes, int], exc: WorkflowCancelledError
) -> None:
    """Store a claimed invocation whose workflow was cancelled as cancelled too, and take it
    off the queue, under its lease (committed)."""
    record = app._load_record(invocation_id)
    if record is not None and not record.status.finished:
        _mark(record, CancelInfo(exc.workflow_id, exc.reason, exc.cancelled_at))
        store_record(app, record, fence)
    app.store.complete(invocation_id, fence)
    app.store.flush()


def check_not_cancelled(app: Pynenc, record: InvocationRecord) -> None:
    """Raise `WorkflowCancelledError` if the workflow of `record`, or one it was started from,
    was cancelled: read from the workflows' stored root records (one read, and no decoding,
    for a workflow started from outside any task that is not cancelled)."""
    workflow_id = record.workflow.workflow_id
    parent: str | None = record.workflow.parent_workflow_id
    parent_known = True  # whether `parent` is the parent workflow of `workflow_id`
    while True:
        key = uuid.UUID(workflow_id).bytes
        data = app.store.get(INVOCATIONS, key)
        if data is not None:
            if parent_known and parent is None and _CANCEL_KEY not in data:
                return  # the common case: not cancelled, started from outside any task
            root = InvocationRecord.decode(data, key, app.config.store)
            if root.status is InvocationStatus.CANCELLED and root.cancel is not None:
                raise root.cancel.error()
            parent = root.workflow.parent_workflow_id
        elif not parent_known:
            return  # an unstored root whose lineage is unknown: nothing more to read
        if parent is None:
            return
        workflow_id, parent_known = parent, False
