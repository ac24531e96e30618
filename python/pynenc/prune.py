"""Pruning: deleting old finished workflows from a store (`pynenc prune`).

The unit is a *top-level workflow* (started from outside any task) with every child workflow
started below it, recursively: a child workflow is never pruned apart from its parent, whose
replay needs the child's record. Such a workflow is prunable when every invocation of it has
finished (`success`, `failed` or `cancelled`) before the cutoff, none is in the queue and none
has a live lease. What is deleted: every invocation record, the journal of every attempt of
each (`journal_id(invocation, attempt)` for attempts 0 to the latest), and the data of every
one of its workflows (data keys, signals, events). Lease tombstones stay: they fence off a
worker that still holds an old token, which a missing lease would let write again.

Crash safety. The deletes of a batch of workflows are staged in one piece (`Store.delete_many`)
and committed by one flush, in one transaction on either store: a crash (a SIGKILL, a power
cut) leaves each workflow of the batch wholly there or wholly gone. The deletes are ordered
as if that were not so: journals first, then data, then the invocation records, each
workflow's root record last. Any prefix of them leaves the root, which names the workflow,
so a *half-pruned* workflow is found and pruned again by the next prune; and what is left
reads (a record whose journal is gone reads as having an empty journal; LMDB deletes a
journal's segments and its end record in one step).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pynenc import logging as logs
from pynenc._core import journal_id
from pynenc.invocation import InvocationRecord
from pynenc.record_check import Skipped
from pynenc.runner.records import INVOCATIONS

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["BATCH_OPS", "BATCH_WORKFLOWS", "Doomed", "Kept", "Plan", "deletes", "plan", "prune"]

log = logs.logger("pynenc.prune")

#: Workflows deleted per commit, by default.
BATCH_WORKFLOWS = 100
#: A batch is committed once it holds this many deletes, however few workflows it has.
BATCH_OPS = 10_000


@dataclass
class Doomed:
    """A workflow to prune and everything of it that is deleted.

    Attributes:
        root: The record of the invocation that started it.
        members: Every invocation of it and of its child workflows, the root last.
        workflows: Its id, then the ids of its child workflows.
        journals: The journal id of every attempt of every member.
        data_keys: Every key of its workflows' data (`data` table keys).
        finished_at: When its last invocation finished (seconds since the epoch).
    """

    root: InvocationRecord
    members: list[InvocationRecord]
    workflows: list[str]
    journals: list[bytes]
    data_keys: list[bytes] = field(default_factory=list)
    finished_at: float = 0.0

    @property
    def workflow_id(self) -> str:
        return self.root.workflow.workflow_id


@dataclass(frozen=True)
class Kept:
    """A workflow whose root finished before the cutoff that is not pruned, and why."""

    workflow_id: str
    workflow_type: str
    reason: str


@dataclass
class Plan:
    """What a prune deletes (`doomed`, oldest first) and keeps (`kept`), and the malformed
    records it met (each logged on `pynenc.store`, never deleted)."""

    cutoff: float
    doomed: list[Doomed]
    kept: list[Kept]
    malformed: int


def plan(app: Pynenc, cutoff: float) -> Plan:
    """The workflows of `app`'s store that a prune with this cutoff (seconds since the epoch)
    deletes, read in one walk over the invocation records; nothing is written."""
    skipped = Skipped("prune")
    by_workflow: dict[str, list[InvocationRecord]] = defaultdict(list)
    below: dict[str, set[str]] = defaultdict(set)
    roots: list[InvocationRecord] = []
    for record in app._records(skipped):
        wf = record.workflow
        by_workflow[wf.workflow_id].append(record)
        if wf.parent_workflow_id is not None:
            below[wf.parent_workflow_id].add(wf.workflow_id)
        elif record.id_str == wf.workflow_id:
            roots.append(record)
    queued = set(app.store.queued())
    now_ms = app.store.now_ms()
    leased = {lease.invocation for lease in app.store.leases() if lease.expires_ms > now_ms}
    doomed: list[Doomed] = []
    kept: list[Kept] = []
    for root in roots:
        if not root.status.finished or root.updated_at >= cutoff:
            continue  # not old, or not finished: nothing to say
        workflows, seen = [root.id_str], {root.id_str}
        for workflow in workflows:  # grows as child workflows are found
            found = sorted(below.get(workflow, set()) - seen)
            workflows += found
            seen.update(found)
        members = [r for w in workflows for r in by_workflow[w] if r is not root]
        members.append(root)
        why = _unprunable(members, cutoff, queued, leased)
        if why is not None:
            kept.append(Kept(root.id_str, root.workflow.workflow_type, why))
            continue
        doomed.append(
            Doomed(
                root=root,
                members=members,
                workflows=workflows,
                journals=[
                    journal_id(r.invocation_id, attempt)
                    for r in members
                    for attempt in range(r.attempt + 1)
                ],
                finished_at=max(r.updated_at for r in members),
            )
        )
    doomed.sort(key=lambda d: (d.finished_at, d.root.invocation_id))
    for d in doomed:
        for workflow in d.workflows:
            d.data_keys += [bytes(k) for k, _ in app.store.scan("data", uuid.UUID(workflow).bytes)]
    return Plan(cutoff, doomed, kept, len(skipped.errors))


def _unprunable(
    members: list[InvocationRecord], cutoff: float, queued: set[bytes], leased: set[bytes]
) -> str | None:
    """Why a workflow whose root finished before the cutoff is kept, or None."""
    root = members[-1]
    for record in members:
        what = "its root" if record is root else f"invocation {record.id_str} ({record.task_id})"
        if record.workflow.workflow_id != root.id_str:
            what += f" of child workflow {record.workflow.workflow_id}"
        if not record.status.finished:
            return f"{what} is {record.status.value}"
        if record.updated_at >= cutoff:
            return f"{what} finished after the cutoff"
        if record.invocation_id in queued:
            return f"{what} is still in the queue"
        if record.invocation_id in leased:
            return f"{what} has a live lease"
    return None


def deletes(doomed: Doomed) -> list[tuple[str, bytes]]:
    """The deletes of one workflow in the order a prune stages them, as `(table, key)`:
    `("journal", journal id)`, then `("data", key)`, then `("invocations", id)`, the root's
    record last. Any prefix of them leaves a store that reads and that the next prune
    completes (see the module's docstring)."""
    return [
        *(("journal", j) for j in doomed.journals),
        *(("data", k) for k in doomed.data_keys),
        *((INVOCATIONS, r.invocation_id) for r in doomed.members),
    ]


def _batches(doomed: list[Doomed], size: int) -> Iterator[list[Doomed]]:
    batch: list[Doomed] = []
    ops = 0
    for d in doomed:
        batch.append(d)
        ops += len(d.journals) + len(d.data_keys) + len(d.members)
        if len(batch) >= size or ops >= BATCH_OPS:
            yield batch
            batch, ops = [], 0
    if batch:
        yield batch


def prune(
    app: Pynenc,
    planned: Plan,
    *,
    batch: int = BATCH_WORKFLOWS,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Delete the workflows of `planned`, `batch` at a time (one commit each, fewer when a
    batch reaches `BATCH_OPS` deletes), logging one INFO line on `pynenc.prune` per workflow
    once its batch is committed; `progress(done, total)` counts workflows. Returns how many
    were deleted.

    Raises:
        StoreError: A commit failed: the batches before it are deleted, the rest is not
            (run the prune again).
    """
    store = app.store
    total = len(planned.doomed)
    done = 0
    if progress is not None:
        progress(0, total)
    for group in _batches(planned.doomed, batch):
        store.delete_many(
            journals=[j for d in group for j in d.journals],
            data=[k for d in group for k in d.data_keys],
            invocations=[r.invocation_id for d in group for r in d.members],
        )
        store.flush()
        for d in group:
            log.info(
                "deleted workflow %s (%s, finished %s): %d invocation(s), %d journal(s), "
                "%d data key(s)",
                d.workflow_id,
                d.root.workflow.workflow_type,
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d.finished_at)),
                len(d.members),
                len(d.journals),
                len(d.data_keys),
                extra=logs.extra(logs.subject_of(d.root)),
            )
        done += len(group)
        if progress is not None:
            progress(done, total)
    return done
