"""`app.replay` re-runs a finished workflow from its journal and detects changed code."""

from __future__ import annotations

from typing import Any

import pytest

from pynenc import NonDeterminismError, Pynenc


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
