"""`app.replay` re-runs a finished workflow from its journal and detects changed code."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from pynenc import NonDeterminismError, Pynenc, UnfinishedChildError
from pynenc.runner import claims


def make_app(app: Pynenc, mode: dict[str, Any], runs: list[str]) -> Any:
    @app.task(name="test_replay.child")
    def child(x: int) -> dict[str, Any]:
        runs.append("child")
        return {"x": x, "id": child.wf.uuid()}

    @app.task(name="test_replay.parent")
    def parent(n: int) -> dict[str, Any]:
        first = parent.wf.uuid() if mode["uuid_first"] else parent.wf.random()
        kid = parent.wf.execute_task(child, n + mode["offset"]).result
        parent.wf.set_data("kid", kid)
        return {
            "first": first,
            "kid": kid,
            "read": parent.wf.get_data("kid"),
            "at": parent.wf.utc_now().isoformat(),
        }

    return parent


def test_replay_returns_equal_result_and_runs_no_child(app: Pynenc) -> None:
    runs: list[str] = []
    parent = make_app(app, {"uuid_first": False, "offset": 0}, runs)
    inv = parent(3)
    result = inv.result
    assert runs == ["child"]
    assert app.replay(inv.invocation_id) == result
    assert app.replay(inv.invocation_id) == result
    assert runs == ["child"]


def test_other_arguments_to_execute_task_diverge(app: Pynenc) -> None:
    runs: list[str] = []
    mode = {"uuid_first": False, "offset": 0}
    inv = make_app(app, mode, runs)(3)
    assert inv.result["kid"]["x"] == 3
    mode["offset"] = 1
    with pytest.raises(NonDeterminismError) as err:
        app.replay(inv.invocation_id)
    assert err.value.position == 1
    assert err.value.invocation_id == inv.invocation_id
    assert err.value.workflow_id == inv.workflow.workflow_id
    assert err.value.recorded.kind == "execute_task" and "position 1" in str(err.value)
    assert runs == ["child"]


def test_uuid_where_random_was_diverges(app: Pynenc) -> None:
    runs: list[str] = []
    mode = {"uuid_first": False, "offset": 0}
    inv = make_app(app, mode, runs)(3)
    mode["uuid_first"] = True
    with pytest.raises(NonDeterminismError) as err:
        app.replay(inv.invocation_id)
    assert err.value.position == 0
    assert err.value.recorded.call == "random()" and err.value.requested.call == "uuid()"


def test_divergence_cannot_be_swallowed_by_the_task(app: Pynenc) -> None:
    mode = {"swallow": False, "extra": False}

    @app.task(name="test_replay.sloppy")
    def sloppy() -> str:
        try:
            value = sloppy.wf.uuid() if mode["extra"] else sloppy.wf.random()
        except Exception:  # noqa: BLE001 - exactly what a careless workflow might do
            value = "swallowed"
        return str(value)

    inv = sloppy()
    mode["extra"] = True
    with pytest.raises(NonDeterminismError):
        app.replay(inv.invocation_id)


def test_replay_of_a_longer_or_shorter_program_diverges(app: Pynenc) -> None:
    n = {"ops": 3}

    @app.task(name="test_replay.counter")
    def counter() -> list[float]:
        return [counter.wf.random() for _ in range(n["ops"])]

    inv = counter()
    n["ops"] = 4
    with pytest.raises(NonDeterminismError) as more:
        app.replay(inv.invocation_id)
    assert more.value.position == 3
    n["ops"] = 2
    with pytest.raises(NonDeterminismError) as fewer:
        app.replay(inv.invocation_id)
    assert fewer.value.position == 2


def test_failed_workflow_replays_its_exception(app: Pynenc) -> None:
    @app.task(name="test_replay.boom")
    def boom(x: int) -> int:
        raise ValueError(f"bad {x}")

    @app.task(name="test_replay.outer")
    def outer() -> str:
        try:
            return str(outer.wf.execute_task(boom, 5).result)
        except ValueError as exc:
            return f"caught {exc}"

    inv = outer()
    assert inv.result == "caught bad 5"
    assert app.replay(inv.invocation_id) == "caught bad 5"
    failed = boom(6)
    with pytest.raises(ValueError, match="bad 6"):
        failed.result
    with pytest.raises(ValueError, match="bad 6"):
        app.replay(failed.invocation_id)


def test_a_replay_never_waits_for_claims_or_runs_an_unfinished_child(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 'store'}"
    app = Pynenc("queued", store=url, execution="queued", sync=False)

    @app.task(name="test_replay.sent")
    def sent(n: int) -> int:
        return n

    @app.task(name="test_replay.sender")
    def sender(n: int) -> str:
        sender.wf.execute_task(sent, n)  # sent, never waited on
        return "sent"

    inv = sender(1)
    assert claims.claim_and_run(app, uuid.UUID(inv.invocation_id).bytes)
    assert inv.result == "sent" and app.replay(inv.invocation_id) == "sent"

    # The code now waits on the child, which no worker ran: nothing recorded says what it
    # returns, and a replay neither waits, nor claims it, nor runs it.
    waiting = Pynenc("waiting", store=url, execution="queued", sync=False)

    @waiting.task(name="test_replay.sent")
    def sent_now(n: int) -> int:
        return n

    @waiting.task(name="test_replay.sender")
    def sender_now(n: int) -> str:
        child = sender_now.wf.execute_task(sent_now, n)
        try:
            return str(child.result)
        except UnfinishedChildError:
            return "swallowed"  # the replay still ends with the error

    def rows() -> list[object]:
        store = app.store
        return [
            store.scan("invocations", b""),
            store.scan("data", b""),
            store.queued(),
            store.leases(),
        ]

    before = rows()
    with pytest.raises(UnfinishedChildError) as caught:
        waiting.replay(inv.invocation_id)
    assert caught.value.invocation_id == inv.invocation_id
    assert caught.value.code == "UNFINISHED_CHILD"
    assert "not finished" in str(caught.value) and caught.value.child_id in str(caught.value)
    assert rows() == before  # still queued, never claimed, nothing written
    [pending] = app.list_invocations(status="pending")
    assert pending.task_id == "test_replay.sent"
