"""Keeping a workflow's history as a regression test.

`pynenc export ID --journal FILE` writes one workflow's records, journals and data to a file;
`replay(FILE, app)` replays it, inside a test of your own, against the code of your app as it
is now, and raises `NonDeterminismError` (the side-by-side report) when that code no longer does
what the recorded run did::

    from pynenc.testing import replay
    from myproject.tasks import app

    def test_the_order_of_may_still_replays() -> None:
        replayed = replay("tests/histories/order-2026-05.json", app)
        assert replayed.result == {"status": "shipped"}

The file is loaded into a store of its own in a temporary directory: your app's store is never
opened, and nothing of the replay is written anywhere.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynenc import journal_file
from pynenc.app import Pynenc
from pynenc.errors import InvalidArgumentError
from pynenc.invocation import InvocationRecord, InvocationStatus
from pynenc.runner.replay import DIVERGED, ERROR, on_store, replay_record
from pynenc.store import open_store

__all__ = ["Replayed", "replay"]


@dataclass(frozen=True)
class Replayed:
    """What `replay` replayed.

    Attributes:
        workflow_id: The workflow of the file.
        invocations: How many invocations were replayed (every one the file holds: the
            workflow's and those of the child workflows below it).
        unfinished: How many of them had not finished when exported; each was replayed up to
            where its journal ends.
        result: What the file's root invocation returns when replayed now, when it finished
            successfully; None otherwise.
    """

    workflow_id: str
    invocations: int
    unfinished: int
    result: Any


def replay(path: str | os.PathLike[str], app: Pynenc) -> Replayed:
    """Replay the journal file at `path` (written by `pynenc export ID --journal FILE`)
    against the tasks of `app` as they are now, writing nothing to `app`'s store.

    Every invocation of the file is replayed against its own journal, the root first: a
    finished one must match its journal exactly (as `app.replay` checks it); an unfinished one
    must match as far as its journal goes (what a recovery would replay). A child's outcome
    comes from its stored record: no child runs again.

    Returns:
        A `Replayed` saying what was replayed, with the root's result.

    Raises:
        NonDeterminismError: The code now does something other than what was recorded (the
            first divergence, root first; a note says how many other invocations diverged).
        InvalidArgumentError: The file is missing, not a journal file, damaged, or of a newer
            format; or an invocation cannot be replayed: its task is not registered in `app`,
            or (`UnfinishedChildError`) it waits on a child that had not finished.
        PynencError: A run that returned now raises (the task's exception is the error's
            `__cause__`), or a record of the file cannot be read.
    """
    if not isinstance(app, Pynenc):
        raise InvalidArgumentError(f"replay needs your Pynenc app, got {app!r}")
    document = journal_file.read(path)
    with tempfile.TemporaryDirectory(prefix="pynenc-replay-") as directory:
        url = f"lmdb://{directory}"
        store = open_store(url, sync=False, flush_interval_ms=0)
        journal_file.load_into(document, store, str(path))
        view = on_store(app, url, store)
        records = _records(view, document, Path(path))
        outcomes = [replay_record(view, record) for record in records]
    diverged = [o for o in outcomes if o.verdict == DIVERGED]
    if diverged:
        first = diverged[0].divergence
        assert first is not None
        if len(diverged) > 1:
            first.add_note(
                f"{len(diverged) - 1} other invocation(s) of the journal file {path} diverged too"
            )
        raise first
    failed = [o for o in outcomes if o.verdict == ERROR]
    if failed:
        error = failed[0].error
        assert error is not None
        raise error
    root = outcomes[0]
    return Replayed(
        workflow_id=document["workflow_id"],
        invocations=len(outcomes),
        unfinished=sum(o.prefix for o in outcomes),
        result=root.value
        if root.invocation_id == document["root_invocation_id"] and root.status == "success"
        else None,
    )


def _records(app: Pynenc, document: dict[str, Any], path: Path) -> list[InvocationRecord]:
    """The records of the file's invocations, in the file's order (the root first); those of
    cancelled invocations are left out (a cancelled run is never replayed)."""
    out = []
    for item in document["invocations"]:
        inv = app.get_invocation(item["invocation_id"])
        if inv is None:  # pragma: no cover - load_into stored every one
            raise InvalidArgumentError(f"{path} is damaged: {item['invocation_id']} not loaded")
        record = inv._record
        if record.status is not InvocationStatus.CANCELLED and record.cancel is None:
            out.append(record)
    if not out:
        raise InvalidArgumentError(
            f"{path} holds no invocation to replay: its workflow was cancelled"
        )
    return out
