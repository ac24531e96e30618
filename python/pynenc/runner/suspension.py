"""Suspending a claimed invocation that waits, and waking it.

A queued invocation run under a worker's claim that must wait (a durable sleep, a signal, a
child that is itself suspended) does not hold its worker for the wait: what it recorded is made
durable, its stack unwinds with `InvocationSuspended`, and its lease is given back with
`defer(until)`, which leaves it queued and unclaimable until its wake-up time (the store's
timer). Any worker then claims it and resumes it from its journal: the replay reaches the wait
again and goes on past it, or suspends again for what is left.

Something it waits for that happens earlier (a signal delivered, a child finished) *wakes* it:
its deferred lease is released at once. A wake and a suspension can cross (the signal lands
between the waiter's check and its deferral), so the waiter checks once more after deferring
and wakes itself if what it waits for has come: one of the two always sees the other.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from pynenc.errors import InvocationSuspended, LeaseLostError

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.workflow.context import WorkflowContext

__all__ = [
    "RECHECK_SECONDS",
    "SUSPEND_MIN_SECONDS",
    "can_suspend",
    "deferred_until",
    "give_back",
    "suspend",
    "wake",
]

log = logging.getLogger("pynenc.runner")

#: A wait shorter than this blocks the thread instead: resuming costs a claim and a replay.
SUSPEND_MIN_SECONDS = 0.1
#: The longest a suspended wait with no deadline of its own (a signal without a timeout)
#: stays deferred before it is resumed to check again, should a wake have been lost (its
#: sender died between storing the signal and waking the workflow).
RECHECK_SECONDS = 60.0


def can_suspend(ctx: WorkflowContext) -> bool:
    """Whether the invocation of `ctx` waits by suspending (it runs under a claim) rather than
    by blocking its thread (inline)."""
    return ctx._fence is not None and not ctx._replay_only


def suspend(
    ctx: WorkflowContext, until_ms: int, why: str, ready: Callable[[], bool] | None = None
) -> NoReturn:
    """Make everything recorded durable and stop the attempt until `until_ms`; `ready()` says
    whether what it waits for has come meanwhile (checked after its lease is deferred)."""
    execution = ctx._execution
    execution.flush()
    exc = InvocationSuspended(ctx.invocation_id, until_ms, why)
    exc.ready = ready
    execution.fail(exc)  # a task that catches it stops all the same
    raise exc


def give_back(app: Pynenc, invocation_id: bytes, token: int, exc: InvocationSuspended) -> None:
    """Defer the suspended invocation's lease until it is due, then wake it at once if what it
    waits for came while it was suspending."""
    app.store.defer(invocation_id, token, exc.until_ms)
    if exc.ready is not None and exc.ready():
        wake(app, invocation_id)


def deferred_until(app: Pynenc, invocation_id: bytes) -> int | None:
    """When a queued invocation that no worker holds can be claimed again (its wake-up time,
    in ms since the epoch), or None when it is claimable now, held, or not queued."""
    lease = app.store.lease(invocation_id)
    if lease is None:
        return None
    owner, expires_ms = lease.owner, lease.expires_ms
    if owner or expires_ms <= app.store.now_ms():
        return None
    return expires_ms


def wake(app: Pynenc, invocation_id: bytes) -> bool:
    """Make a suspended (deferred) invocation claimable now; returns whether it was. Nothing
    happens to one that runs, is claimable already or has finished."""
    lease = app.store.lease(invocation_id)
    if lease is None:
        return False
    owner, expires_ms, token = lease.owner, lease.expires_ms, lease.token
    if owner or expires_ms <= app.store.now_ms():
        return False
    with contextlib.suppress(LeaseLostError):  # claimed or woken meanwhile: nothing to do
        app.store.release(invocation_id, token)
        log.debug("woke invocation %s", uuid.UUID(bytes=invocation_id))
        return True
    return False
