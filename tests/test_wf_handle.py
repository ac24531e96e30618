"""`task.wf` is the context of the invocation running now, read afresh on every access: it
never serves another thread's, a finished or an enclosing invocation's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import pytest

from pynenc import Pynenc, Task
from pynenc.errors import WorkflowMembershipError


def test_threads_running_the_same_task_alternate_and_each_sees_its_own(app: Pynenc) -> None:
    rounds = 50
    turn = threading.Condition()
    state = {"turn": 0}

    @app.task(name="test_wf_handle.worker")
    def worker(me: int) -> list[Any]:
        seen = []
        worker.wf.set_data("who", me)
        for r in range(rounds):
            with turn:
                # Strict alternation: thread 0, thread 1, thread 0, ... each one reading
                # `worker.wf` right after the other thread read it for its own invocation.
                assert turn.wait_for(lambda: state["turn"] == me, timeout=30)
                seen.append((worker.wf.invocation_id, worker.wf.get_data("who"), r))
                worker.wf.set_data("round", r)
                state["turn"] = 1 - me
                turn.notify_all()
        return seen

    results: dict[int, Any] = {}
    errors: list[BaseException] = []

    def run(me: int) -> None:
        try:
            inv = worker(me)
            results[me] = (inv.invocation_id, inv.result)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(me,)) for me in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sorted(results) == [0, 1]
    assert results[0][0] != results[1][0]
    for me, (invocation_id, seen) in results.items():
        assert seen == [(invocation_id, me, r) for r in range(rounds)]
        assert app.get_workflow_data(invocation_id, "who") == me
        assert app.get_workflow_data(invocation_id, "round") == rounds - 1


def test_wf_after_the_invocation_finished_raises(app: Pynenc) -> None:
    @app.task(name="test_wf_handle.once")
    def once(fail: bool) -> str:
        once.wf.random()
        if fail:
            raise ValueError("planned")
        return once.wf.invocation_id

    with pytest.raises(WorkflowMembershipError, match=r"test_wf_handle\.once\.wf is only"):
        once.wf
    assert once(False).result
    # The same thread, right after the invocation returned (and after one that failed).
    with pytest.raises(WorkflowMembershipError, match=r"call once\(\.\.\.\)"):
        once.wf
    with pytest.raises(ValueError, match="planned"):
        once(True).result
    with pytest.raises(WorkflowMembershipError):
        once.wf.random()
    with pytest.raises(AttributeError, match="read-only"):
        once.wf = None  # type: ignore[misc]


def test_wf_kept_from_inside_a_task_still_checks_on_each_read(app: Pynenc) -> None:
    kept: list[Task[..., Any]] = []

    @app.task(name="test_wf_handle.keeper")
    def keeper() -> str:
        kept.append(keeper)
        return keeper.wf.invocation_id

    assert keeper().result
    with pytest.raises(WorkflowMembershipError):
        kept[0].wf


def test_recursive_inline_child_sees_its_own_and_parent_its_own_after(app: Pynenc) -> None:
    @app.task(name="test_wf_handle.rec")
    def rec(depth: int) -> dict[str, Any]:
        before = rec.wf.invocation_id
        attempt = rec.wf.attempt
        child = rec(depth - 1).result if depth else None
        return {
            "before": before,
            "after": rec.wf.invocation_id,
            "attempt": attempt,
            "draw": rec.wf.random(),
            "child": child,
        }

    inv = rec(3)
    node: dict[str, Any] | None = inv.result
    ids = []
    while node is not None:
        assert node["before"] == node["after"]
        ids.append(node["before"])
        node = node["child"]
    assert ids[0] == inv.invocation_id and len(set(ids)) == 4
    # The draws after the child returned came from each invocation's own stream.
    assert app.replay(inv.invocation_id) == inv.result


def test_another_tasks_wf_is_the_running_invocations(app: Pynenc) -> None:
    @app.task(name="test_wf_handle.child")
    def child() -> dict[str, str]:
        return {"own": child.wf.invocation_id, "via_parent": parent.wf.invocation_id}

    @app.task(name="test_wf_handle.parent")
    def parent() -> dict[str, Any]:
        seen = parent.wf.execute_task(child).result
        return {"me": parent.wf.invocation_id, "via_child": child.wf.invocation_id, **seen}

    result = parent().result
    assert result["via_parent"] == result["own"] != result["me"]
    assert result["via_child"] == result["me"]


def test_wf_follows_the_context_not_the_thread(app: Pynenc) -> None:
    @app.task(name="test_wf_handle.ctx")
    def ctx() -> dict[str, Any]:
        me = ctx.wf.invocation_id

        def read() -> str:
            return ctx.wf.invocation_id

        async def in_asyncio() -> list[str]:
            own = await asyncio.gather(asyncio.to_thread(read), asyncio.sleep(0, read()))
            return list(own)

        def empty() -> str:
            try:
                return read()
            except WorkflowMembershipError:
                return "outside"

        return {
            "me": me,
            "asyncio": asyncio.run(in_asyncio()),
            "empty context": contextvars.Context().run(empty),
            "copied context": contextvars.copy_context().run(read),
            "plain thread": _in_thread(empty),
            "after": read(),
        }

    result = ctx().result
    me = result["me"]
    assert result["asyncio"] == [me, me]
    assert result["empty context"] == "outside"
    assert result["copied context"] == me
    assert result["plain thread"] == "outside"
    assert result["after"] == me


def _in_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(30)
    return out[0]
