"""Waiting on a queued invocation: how often it is looked at, and what a caller is told when no
worker runs it (the command that starts one, `pynenc --app MODULE:ATTR worker`, naming this app
when it can be found)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from pynenc import checks
from pynenc import logging as logs
from pynenc.runner import claims, suspension
from pynenc.workflow.context import current_context

if TYPE_CHECKING:
    from pynenc.app import Pynenc
    from pynenc.invocation import InvocationRecord

__all__ = [
    "HINT_AFTER_SECONDS",
    "NOTICE_POLL_SECONDS",
    "unclaimed_hint",
    "wait_for",
    "worker_command",
]

wait_log = logs.logger("pynenc.invocation")

#: How long a wait lasts before it says that nothing has claimed the invocation.
HINT_AFTER_SECONDS = 5.0
#: Longest pause between two reads of an invocation waited on. A store that sends change
#: notices (PostgreSQL) wakes the waiter when the invocation finishes, so it waits this long at
#: once; otherwise the pause grows from 0.5 ms to this.
NOTICE_POLL_SECONDS = 0.05


def wait_for(app: Pynenc, invocation_id: bytes, timeout: float | None) -> InvocationRecord:
    """Wait until the invocation finished. A task waiting on a queued child that no worker
    holds runs it itself, so waiting parents can never starve a worker pool; one waiting on a
    child that is suspended (it sleeps, or waits for a signal) is suspended too, when it runs
    under a worker's claim, until that child is due or finishes. A caller outside any task is
    told (logged once, and in the `TimeoutError`) when no worker has claimed it."""
    if timeout is not None:
        timeout = checks.seconds("timeout", timeout, positive=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    ctx = current_context()
    inside_task = ctx is not None
    hint_at = None if inside_task else time.monotonic() + HINT_AFTER_SECONDS
    delay = 0.0005
    while True:
        # Taken before the read: a completion notice sent after it cuts the pause short.
        ticket = app.store.notice_ticket()
        record = app._load_record(invocation_id)
        if record is not None and record.status.finished:
            return record
        if ctx is not None and app.config.execution == "queued":
            # Its waiter is this task: its completion needs no notice to anyone else.
            if claims.claim_and_run(app, invocation_id, known=record, awaited_here=True):
                continue
            due = suspension.deferred_until(app, invocation_id)
            if due is not None and suspension.can_suspend(ctx) and deadline is None:
                left = (due - app.store.now_ms()) / 1000
                if left >= suspension.SUSPEND_MIN_SECONDS:
                    suspension.suspend(
                        ctx,
                        due,
                        f"its child {uuid.UUID(bytes=invocation_id)}",
                        lambda: _finished(app, invocation_id),
                    )
        if hint_at is not None and time.monotonic() >= hint_at:
            hint_at = None
            hint = unclaimed_hint(app, invocation_id)
            if hint is not None:
                wait_log.warning(
                    "invocation %s waited on for %.0f s: %s",
                    uuid.UUID(bytes=invocation_id),
                    HINT_AFTER_SECONDS,
                    hint,
                    extra=logs.extra(logs.subject_of(record, invocation_id)),
                )
        if deadline is not None and time.monotonic() >= deadline:
            hint = None if inside_task else unclaimed_hint(app, invocation_id)
            raise TimeoutError(
                f"invocation {uuid.UUID(bytes=invocation_id)} did not finish within "
                f"{timeout} s" + ("" if hint is None else f": {hint}")
            )
        if ticket is not None:
            delay = NOTICE_POLL_SECONDS  # woken by the notice; polled as a safety net
        pause = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
        if ticket is None:
            time.sleep(pause)
        else:
            app.store.wait_notice(ticket, pause, invocation_id)
        delay = min(delay * 2, NOTICE_POLL_SECONDS)


def _finished(app: Pynenc, invocation_id: bytes) -> bool:
    record = app._load_record(invocation_id)
    return record is not None and record.status.finished


def unclaimed_hint(app: Pynenc, invocation_id: bytes) -> str | None:
    """What to do when the invocation is queued and no live lease holds it, else None (also
    while it is suspended: it waits for its wake-up time, not for a worker)."""
    store = app.store
    if invocation_id not in store.queued():
        return None
    lease = store.lease(invocation_id)
    if lease is not None and lease.expires_ms > store.now_ms():
        return None  # a worker runs it, or it is suspended until then
    return (
        f"nothing has claimed it (queued on {store.location()}: is a worker running on that "
        f"store?); start one with: {worker_command(app)}"
    )


def worker_command(app: Pynenc) -> str:
    """The command that starts a worker for `app`: exact when the module and name it is
    reachable by can be found, else with `MODULE:ATTR` to fill in."""
    found = _locate(app)
    if found is None:
        return (
            "pynenc --app MODULE:ATTR worker (MODULE:ATTR: where this app is defined, e.g. "
            "myproject.tasks:app)"
        )
    module, attr, root = found
    prefix = "" if root is None else f"PYTHONPATH={root} "
    return f"{prefix}pynenc --app {module}:{attr} worker"


def _locate(app: Pynenc) -> tuple[str, str, str | None] | None:
    """(module, attribute, directory to put on the path or None) naming `app`: the module
    `pynenc --app` loaded it from or any other imported module holding it, else the script run
    as `__main__` under the name it would be imported by."""
    for name in [name for name in list(sys.modules) if name != "__main__"]:
        attr = _attribute_of(sys.modules.get(name), app)
        if attr is not None:
            return name, attr, None
    main = sys.modules.get("__main__")
    attr = _attribute_of(main, app)
    if main is None or attr is None:
        return None
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":  # python -m MODULE
        return spec.name, attr, None
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return None
    path = Path(file).resolve()
    for entry in sys.path:
        root = Path(entry or os.getcwd()).resolve()
        if path.is_relative_to(root) and path.suffix == ".py":
            parts = path.relative_to(root).with_suffix("").parts
            if all(p.isidentifier() for p in parts):
                here = root == Path.cwd().resolve()
                return ".".join(parts), attr, None if here else str(root)
    return None


def _attribute_of(module: object, app: Pynenc) -> str | None:
    try:
        names = vars(module)
    except TypeError:
        return None
    for name, value in list(names.items()):
        if value is app and not name.startswith("_"):
            return str(name)
    return None
