"""Recovery: finding the invocations whose process died and resuming them from their journals
(`Pynenc.recover`), and freeing the leases of dead workers of this machine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynenc import logging as logs
from pynenc.errors import CorruptEntryError, CorruptStoreError, LeaseLostError, NonDeterminismError
from pynenc.invocation import Invocation, InvocationRecord, InvocationStatus, describe_exception
from pynenc.record_check import Skipped
from pynenc.runner import claims, execute, records
from pynenc.runner.owner import current_owner, owner_is_dead

if TYPE_CHECKING:
    from pynenc.app import Pynenc

__all__ = ["recover", "release_dead_leases"]

log = logs.logger("pynenc.recovery")
store_log = logs.logger("pynenc.store")


def recover(
    app: Pynenc, progress: Callable[[int, int], None] | None = None
) -> tuple[list[Invocation[Any]], list[NonDeterminismError], list[CorruptStoreError]]:
    """`app.recover()`'s work: the resumed invocations, the divergences and the unreadable
    ones, nothing raised for them. `progress(done, total)` is called before the first
    stranded root and after each one (the command line draws it)."""
    release_dead_leases(app)
    queued = set(app.store.queued())
    me = current_owner()
    adopted: dict[bytes, str | None] = {}  # id -> the dead owner it had
    try:
        with app.store.recovery_lock():
            stranded = _stranded(app)
            # Every stranded inline invocation, roots and the children inside them, is
            # adopted while no other recover() can look: one that looks next sees a live
            # owner and leaves them alone. Queued ones are claimed atomically instead.
            for record in stranded.values():
                if record.invocation_id not in queued:
                    adopted[record.invocation_id] = record.owner
                    record.owner = me
                    records.store_record(app, record)
            if adopted:
                app.store.flush()
        roots = [r for r in stranded.values() if r.parent_invocation_id not in stranded]
        roots.sort(key=lambda r: r.created_at)
        resumed: list[Invocation[Any]] = []
        diverged: list[NonDeterminismError] = []
        unreadable: list[CorruptStoreError] = []
        for done, root in enumerate(roots):
            if progress is not None:
                progress(done, len(roots))
            with logs.handling(logs.subject_of(root)):
                _resume(app, root, queued, resumed, diverged, unreadable)
        if progress is not None:
            progress(len(roots), len(roots))
    finally:
        # What this call adopted but did not finish (it diverged, or the call stopped on
        # an error) goes back to its dead owner, so a later recover() can take it up.
        _give_back(app, adopted, me)
    return resumed, diverged, unreadable


def _resume(
    app: Pynenc,
    root: InvocationRecord,
    queued: set[bytes],
    resumed: list[Invocation[Any]],
    diverged: list[NonDeterminismError],
    unreadable: list[CorruptStoreError],
) -> None:
    """Resume one stranded root for `recover`, adding it to the list it belongs to (none
    when it finished meanwhile or a worker took it)."""
    # Resuming an earlier root may have finished this one (a retried inline child whose
    # parent's record was not stored yet looks like a root of its own).
    try:
        record = app._load_record(root.invocation_id)
    except CorruptEntryError as exc:  # damaged since it was picked
        store_log.error("recover: %s", exc)
        return
    if record is None or record.status.finished:
        return
    try:
        if record.invocation_id in queued:
            if not claims.claim_and_run(app, record.invocation_id, known=record):
                return  # a worker got there first
        else:
            execute.run(app, record)
    except NonDeterminismError as exc:
        log.error("cannot resume invocation %s: %s", record.id_str, exc)
        diverged.append(exc)
        return
    except SystemExit as exc:
        # Raised inside a side effect's function (a task's own `SystemExit` is its
        # failure): not a death of this process, which goes on recovering.
        log.error(
            "cannot resume invocation %s: interrupted by %s inside a workflow "
            "operation; nothing of it recorded, left to resume",
            record.id_str,
            describe_exception(exc),
        )
    except CorruptStoreError as exc:  # e.g. a damaged journal or child record
        store_log.error("recover: cannot resume %s: %s", record.id_str, exc)
        unreadable.append(exc)
        return
    resumed.append(Invocation(app, app._load_record(record.invocation_id) or record))


def _stranded(app: Pynenc) -> dict[bytes, InvocationRecord]:
    """The running invocations whose owner is dead (or whose lease expired), by id."""
    leases = {lease.invocation: lease.expires_ms for lease in app.store.leases()}
    now = app.store.now_ms()
    stranded: dict[bytes, InvocationRecord] = {}
    for record in app._records(Skipped("recover")):
        if record.status is not InvocationStatus.RUNNING or record.owner is None:
            continue
        lease = leases.get(record.invocation_id)
        if lease is not None and lease > now:
            continue  # a live worker holds it
        if lease is not None or owner_is_dead(record.owner):
            stranded[record.invocation_id] = record
    return stranded


def _give_back(app: Pynenc, adopted: dict[bytes, str | None], me: str) -> None:
    """Hand adopted invocations that are still running as `me` back to their old owner."""
    returned = False
    for invocation_id, owner in adopted.items():
        record = app._load_record(invocation_id)
        if record is not None and record.status is InvocationStatus.RUNNING:
            if record.owner == me:
                record.owner = owner
                records.store_record(app, record)
                returned = True
    if returned:
        app.store.flush()


def release_dead_leases(app: Pynenc) -> int:
    """Release the leases held by processes of this machine that no longer exist, so the
    invocations they held can be claimed at once (and count as resumed when they are).
    Returns how many were released."""
    released = 0
    if not app.store.owners_are_local():
        return 0  # workers on other hosts: only expiry tells that one died
    for lease in app.store.leases():
        if lease.expires_ms and owner_is_dead(lease.owner.decode(errors="replace")):
            try:
                app.store.release_dead(lease.invocation, lease.token)
                released += 1
            except LeaseLostError:
                pass  # someone else released or reclaimed it meanwhile
    return released
