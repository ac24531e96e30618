"""`pynenc.testing.replay` on journal files, in this process: unfinished runs, children that
have not finished, and files that are not what they should be."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pytest

from pynenc import (
    InvalidArgumentError,
    NonDeterminismError,
    Pynenc,
    UnfinishedChildError,
    journal_file,
)
from pynenc.runner import claims
from pynenc.testing import Replayed, replay


def _export(app: Pynenc, workflow_id: str, path: Path) -> Path:
    journal_file.write(journal_file.export(app, workflow_id), path)
    return path


def test_an_interrupted_run_replays_up_to_where_its_journal_ends(
    app: Pynenc, tmp_path: Path
) -> None:
    interrupt = [True]

    @app.task(name="t.step")
    def step(n: int) -> int:
        step.wf.random()
        step.wf.set_data("seen", n)
        if interrupt[0]:
            raise KeyboardInterrupt  # in the main thread: the run is left to resume
        return n

    with pytest.raises(KeyboardInterrupt):
        step(1)
    interrupt[0] = False
    [running] = app.list_invocations(status="running")
    path = _export(app, running.invocation_id, tmp_path / "h.json")

    replayed = replay(path, app)
    assert replayed == Replayed(running.invocation_id, 1, 1, None)

    other = Pynenc("other", store=f"lmdb://{tmp_path / 'unused'}", sync=False)

    @other.task(name="t.step")
    def step_now(n: int) -> int:
        step_now.wf.uuid()  # where the run drew a random number
        return n

    with pytest.raises(NonDeterminismError) as caught:
        replay(path, other)
    assert caught.value.position == 0 and caught.value.requested.kind == "uuid"
    assert not (tmp_path / "unused").exists()  # the app's own store is never opened


def test_a_child_that_was_never_waited_on_is_no_obstacle_until_the_code_waits(
    tmp_path: Path,
) -> None:
    url = f"lmdb://{tmp_path / 'store'}"
    app = Pynenc("queued", store=url, execution="queued", sync=False)

    @app.task(name="q.child")
    def child(n: int) -> int:
        return n

    @app.task(name="q.parent")
    def parent(n: int) -> str:
        parent.wf.execute_task(child, n)  # sent, never waited on
        return "sent"

    inv = parent(1)
    assert claims.claim_and_run(app, uuid_bytes(inv.invocation_id))
    path = _export(app, inv.invocation_id, tmp_path / "h.json")
    # The child is pending: replayed over what it recorded (nothing).
    assert replay(path, app) == Replayed(inv.invocation_id, 2, 1, "sent")

    waiting = Pynenc("waiting", store=f"lmdb://{tmp_path / 'unused'}", sync=False)

    @waiting.task(name="q.child")
    def child_now(n: int) -> int:
        return n

    @waiting.task(name="q.parent")
    def parent_now(n: int) -> str:
        return str(parent_now.wf.execute_task(child_now, n).result)

    with pytest.raises(UnfinishedChildError) as caught:
        replay(path, waiting)
    assert caught.value.invocation_id == inv.invocation_id


def uuid_bytes(invocation_id: str) -> bytes:
    return uuid.UUID(invocation_id).bytes


def test_files_that_are_not_journal_files_are_refused(app: Pynenc, tmp_path: Path) -> None:
    @app.task(name="t.one")
    def one() -> float:
        return one.wf.random()

    inv = one()
    path = _export(app, inv.invocation_id, tmp_path / "h.json.gz")
    assert gzip.decompress(path.read_bytes())  # compressed by its name
    document = journal_file.read(path)
    assert replay(path, app).result == inv.result

    def refused(text: str | bytes, message: str) -> None:
        bad = tmp_path / "bad.json"
        bad.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(InvalidArgumentError, match=message):
            replay(bad, app)

    with pytest.raises(InvalidArgumentError, match="cannot read journal file"):
        replay(tmp_path / "missing.json", app)
    refused("not json", "is not a journal file written by `pynenc export ID --journal FILE`")
    refused(json.dumps({"format": "something else"}), 'its "format" is not')
    refused(json.dumps({**document, "version": 99}), "written by a newer pynenc-replay")
    damaged = json.loads(json.dumps(document))
    damaged["invocations"][0]["record"] = "!!"
    refused(json.dumps(damaged), "bad.json is damaged")
    damaged = json.loads(json.dumps(document))
    damaged["invocations"][0]["journals"][0]["entries"][0]["payload"] = "AAAA"
    refused(json.dumps(damaged), "bad.json is damaged")
    with pytest.raises(InvalidArgumentError, match="needs your Pynenc app"):
        replay(path, "app")  # type: ignore[arg-type]
