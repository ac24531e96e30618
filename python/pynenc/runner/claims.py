"""Claims: running a queued invocation this process claimed (renewing its lease, giving it back
when the engine fails), and refusing one whose task this process does not know."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from pynenc import logging as logs
from pynenc.errors import (
    InvalidArgumentError,
    InvocationSuspended,
    LeaseLostError,
    NonDeterminismError,
    PynencError,
    WorkflowCancelledError,
)
from pynenc.invocation import (
    InvocationRecord,
)
from pynenc.runner import suspension
from pynenc.runner.leases import now_ms
from pynenc.runner.owner import current_owner

if TYPE_CHECKING:
    from pynenc.app import Pynenc
from pynenc.cancel import cancel_claimed
from pynenc.runner.execute import park, run
from pynenc.runner.records import store_record

__all__ = ["UnknownTaskError", "claim_and_run", "run_claimed"]


def run_claimed(
    app: Pynenc,
    invocation_id: bytes,
    token: int,
    *,
    taken_over: bool = False,
    claimed_at: float | None = None,
    awaited_here: bool = False,
) -> int | None:
    """Run a queued invocation this process has just claimed, renewing its lease meanwhile.
    `taken_over` (from the claim): its last holder died with it, so this run resumes it.
    `claimed_at`: when the claim was sent (`time.monotonic()`), the start of the lease's
    local clock (see `LeaseKeeper`). `awaited_here`: the caller is the one waiting on it (see
    `execute.run`).

    Returns:
        None once it is done with; when it suspended to wait (`wf.sleep`, ...), the time it is
        due again (ms since the epoch): its lease is deferred until then.
    """
    fence = (invocation_id, token)
    keeper = app._lease_keeper()
    # Lines logged meanwhile (by the lease keeper too) carry its ids: its id at once, and its
    # workflow's and task's once its record is read (the first `enter` is undone last).
    about = logs.enter(logs.subject_of_id(invocation_id))
    try:
        # Read after the claim: whoever held it before may have written since any earlier read.
        record = app._load_record(invocation_id)
        if record is not None:
            logs.enter(logs.subject_of(record))
        keeper.hold(invocation_id, token, claimed_at)
        if record is None or record.status.finished:
            app.store.complete(invocation_id, fence)  # finished (or never stored): off the queue
            app.store.flush()
            return None
        _check_task_known(app, record, fence)
        run(app, record, fence_token=token, taken_over=taken_over, awaited_here=awaited_here)
        return None
    except InvocationSuspended as suspended:
        keeper.drop(invocation_id)
        suspension.give_back(app, invocation_id, token, suspended)
        return suspended.until_ms
    except LeaseLostError:
        raise  # another worker holds it now
    except WorkflowCancelledError as exc:
        # Its workflow was cancelled (a child queued after the cancel is not marked yet):
        # cancelled too, and off the queue, so no worker claims it again.
        keeper.drop(invocation_id)
        with contextlib.suppress(PynencError):  # the cancel fenced this claim off: done
            cancel_claimed(app, invocation_id, fence, exc)
        raise
    except BaseException as exc:
        # Given back, so another process can run it while this one lives: at once when the
        # engine failed here (an unknown task, a store error); after a lease time when its code
        # diverged or a side effect was interrupted (`SystemExit` in its function), so workers
        # do not spin on it. Either way whoever claims it next is not taking it over.
        keeper.drop(invocation_id)
        with contextlib.suppress(PynencError):  # taken over meanwhile: nothing to give back
            if isinstance(exc, NonDeterminismError) or not isinstance(exc, Exception):
                app.store.defer(invocation_id, token, app.store.now_ms() + keeper.lease_ms)
            elif isinstance(exc, UnknownTaskError):
                if exc.retry_seconds is not None:  # else parked: off the queue already
                    app.store.defer(invocation_id, token, app.store.now_ms() + exc.retry_ms)
            else:
                app.store.release(invocation_id, token)
        raise
    finally:
        keeper.drop(invocation_id)
        logs.leave(about)


class UnknownTaskError(InvalidArgumentError):
    """A claimed invocation's task is not registered here: it was deferred for
    `retry_seconds`, or parked (`retry_seconds` None)."""

    def __init__(self, message: str, retry_seconds: float | None) -> None:
        super().__init__(message)
        self.retry_seconds = retry_seconds

    @property
    def retry_ms(self) -> int:
        return int((self.retry_seconds or 0.0) * 1000)


def _check_task_known(app: Pynenc, record: InvocationRecord, fence: tuple[bytes, int]) -> None:
    """Raise `UnknownTaskError` unless the claimed invocation's task is registered. Each such
    claim is counted in the record; the invocation waits 1, 2, 4 ... s (at most a lease time)
    before it can be claimed again, and is parked once the count exceeds `max_recoveries`."""
    try:
        app.get_task(record.task_id)
    except InvalidArgumentError as exc:
        record.misses += 1
        limit = app.config.max_recoveries
        if record.misses > limit:
            park(
                app,
                record,
                fence,
                f"no process that claimed it knew task {record.task_id!r} "
                f"({record.misses} claims, max_recoveries={limit})",
                quiet=True,
            )
            raise UnknownTaskError(f"{exc}; parked after {record.misses} claims", None) from None
        store_record(app, record, fence)
        app.store.flush()
        delay = min(float(2 ** (record.misses - 1)), app.config.lease_seconds)
        raise UnknownTaskError(
            f"{exc}; tried again in {delay:g} s (claim {record.misses}, parked after {limit + 1})",
            delay,
        ) from None


def claim_and_run(
    app: Pynenc,
    invocation_id: bytes,
    *,
    known: InvocationRecord | None = None,
    awaited_here: bool = False,
) -> bool:
    """Claim this queued invocation for this process and run it, if no live lease holds it
    and its task is registered here (else it is left to a worker that knows it). `known`: its
    record as the caller has just read it (read here when not given); `awaited_here`: the
    caller is the one waiting on it. Returns whether it was claimed."""
    record = known if known is not None else app._load_record(invocation_id)
    if record is not None and app._registry.find(record.task_id) is None:
        try:
            app.get_task(record.task_id)
        except InvalidArgumentError:
            return False
    keeper = app._lease_keeper()
    sent = time.monotonic()
    claim = app.store.claim_invocation(
        invocation_id, current_owner().encode(), keeper.lease_ms, now_ms()
    )
    if claim is None:
        return False
    run_claimed(
        app,
        invocation_id,
        claim.token,
        taken_over=claim.taken_over,
        claimed_at=sent,
        awaited_here=awaited_here,
    )
    return True
