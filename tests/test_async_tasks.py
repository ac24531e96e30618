"""Async tasks: `async def` tasks await `wf.execute_task_async`, `wf.sleep_async`,
`wf.wait_signal_async` and `invocation.result_async()`; each operation takes its journal
position when it is called, so children awaited together are recorded in the order of the
calls whichever finishes first, and replay and recovery see the same journal. Blocking calls
inside a running event loop name their async twin."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import WorkerPool
from waits_support import PROGRAMS, events, waits_env

from pynenc import BlockingCallError, InvalidArgumentError, Pynenc

ASYNC_PROGRAM = PROGRAMS / "async_app.py"


def test_gather_records_children_in_call_order_whichever_finishes_first(app: Pynenc) -> None:
    finished: list[int] = []

    @app.task(name="t.leg")
    async def leg(i: int, delay: float) -> int:
        await asyncio.sleep(delay)
        finished.append(i)
        return i * 10

    @app.task(name="t.fan")
    async def fan(delays: list[float]) -> list[Any]:
        wf = fan.wf
        legs = await asyncio.gather(
            *(wf.execute_task_async(leg, i, d) for i, d in enumerate(delays))
        )
        return [inv.result for inv in legs] + [wf.random()]

    start = time.monotonic()
    inv = fan([0.8, 0.0, 0.4])
    result = inv.result
    assert result[:3] == [0, 10, 20]
    assert finished == [1, 2, 0]  # the second leg ended first, the first one last
    assert time.monotonic() - start < 1.1  # side by side: one after another takes 1.2 s
    journal = app.journal(inv.invocation_id)
    assert [(e.operation, e.name) for e in journal] == [
        ("execute_task", "t.leg"),
        ("execute_task", "t.leg"),
        ("execute_task", "t.leg"),
        ("random", None),
    ]
    children = [app.get_invocation(str(e.value)) for e in journal[:3]]
    assert [c.arguments["i"] for c in children if c is not None] == [0, 1, 2]
    # A replay finds every child finished and serves the same journal.
    assert app.replay(inv.invocation_id) == result


def test_plain_children_run_side_by_side_in_threads(app: Pynenc) -> None:
    @app.task(name="t.block")
    def block(i: int) -> int:
        time.sleep(0.5)
        return i

    @app.task(name="t.gathering")
    async def gathering() -> list[int]:
        wf = gathering.wf
        legs = await asyncio.gather(*(wf.execute_task_async(block, i) for i in range(3)))
        return [inv.result for inv in legs]

    start = time.monotonic()
    assert gathering().result == [0, 1, 2]
    assert time.monotonic() - start < 1.2  # one after another takes 1.5 s


def test_the_context_follows_each_asyncio_task(app: Pynenc) -> None:
    @app.task(name="t.whoami")
    async def whoami() -> str:
        await asyncio.sleep(0.01)
        return whoami.wf.invocation_id

    @app.task(name="t.parent")
    async def parent() -> dict[str, Any]:
        async def inner() -> str:
            await asyncio.sleep(0)
            return parent.wf.invocation_id

        mine = await asyncio.gather(inner(), inner())
        kids = await asyncio.gather(*(parent.wf.execute_task_async(whoami) for _ in range(2)))
        return {
            "mine": mine,
            "kids": [k.invocation_id for k in kids],
            "said": [k.result for k in kids],
            "me": parent.wf.invocation_id,
        }

    got = parent().result
    assert got["mine"] == [got["me"], got["me"]]
    assert got["said"] == got["kids"] and got["me"] not in got["kids"]


def test_result_async_awaits_an_inline_call_from_asyncio_code(app: Pynenc) -> None:
    @app.task(name="t.slow")
    async def slow(tag: str) -> str:
        await slow.wf.sleep_async(0.5)
        return tag

    async def main() -> list[str]:
        calls = [slow(tag) for tag in "abc"]  # each starts on this loop at once
        with pytest.raises(BlockingCallError, match=r"await invocation\.result_async\(\)"):
            calls[0].result
        return [await c.result_async() for c in calls]

    start = time.monotonic()
    assert asyncio.run(main()) == ["a", "b", "c"]
    assert time.monotonic() - start < 1.2  # side by side: one after another takes 1.5 s
    # Outside any loop the same task runs to its end in the call.
    assert slow("d").result == "d"


@pytest.mark.parametrize(
    ("body", "twin"),
    [
        ("wf.sleep(1)", r"await wf\.sleep_async"),
        ("wf.sleep_until(wf.utc_now())", r"await wf\.sleep_until_async"),
        ("wf.wait_signal('go')", r"await wf\.wait_signal_async"),
    ],
)
def test_a_blocking_wf_call_in_an_async_task_names_its_async_twin(
    app: Pynenc, body: str, twin: str
) -> None:
    @app.task(name="t.blocking")
    async def blocking() -> None:
        wf = blocking.wf  # noqa: F841 - read by the statement below
        try:
            exec(body)
        except BlockingCallError as exc:
            assert exc.code == "BLOCKING_CALL"
            raise

    inv = blocking()
    with pytest.raises(BlockingCallError, match=twin):
        inv.result
    assert "sleep" not in [e.operation for e in app.journal(inv.invocation_id)]


def test_result_of_an_unfinished_child_in_an_async_task_names_result_async(app: Pynenc) -> None:
    @app.task(name="t.later")
    async def later() -> int:
        await asyncio.sleep(0.05)
        return 7

    @app.task(name="t.impatient")
    async def impatient() -> list[Any]:
        child = later()  # an async child of async code starts on the loop, unfinished
        try:
            child.result
        except BlockingCallError as exc:
            said = str(exc)
        return [said, await child.result_async(), child.result]

    said, value, again = impatient().result
    assert "result_async()" in said and "t.impatient" in said
    assert value == again == 7


def test_async_operations_in_a_plain_task_name_the_plain_one(app: Pynenc) -> None:
    @app.task(name="t.plain")
    def plain() -> None:
        plain.wf.sleep_async(1)

    with pytest.raises(InvalidArgumentError, match=r"call wf\.sleep\(\) instead"):
        plain().result


def test_wait_signal_async_takes_deliveries_in_call_order_and_replays_them(app: Pynenc) -> None:
    @app.task(name="t.inbox")
    async def inbox() -> list[Any]:
        wf = inbox.wf
        first, second = await asyncio.gather(
            wf.wait_signal_async("item"), wf.wait_signal_async("item")
        )
        try:
            third = await wf.wait_signal_async("item", timeout=0.2)
        except TimeoutError:
            third = "timed out"
        return [first, second, third]

    async def main() -> tuple[str, list[Any]]:
        inv = inbox()
        await asyncio.sleep(0.1)  # both waits are pending now
        app.signal(inv.invocation_id, "item", {"n": 1})
        app.signal(inv.invocation_id, "item", {"n": 2})
        return inv.invocation_id, await inv.result_async()

    workflow, result = asyncio.run(main())
    assert result == [{"n": 1}, {"n": 2}, "timed out"]
    assert [(e.operation, e.name) for e in app.journal(workflow)] == [
        ("wait_signal_async", "item"),
        ("wait_signal_async", "item"),
        ("wait_signal_async", "item"),
    ]
    assert app.replay(workflow) == result


def _start(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ASYNC_PROGRAM), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_killed_async_workflow_resumes_without_rerunning_finished_children(
    tmp_path: Path, store_url: str, async_app: Any
) -> None:
    env = waits_env(tmp_path, store_url, "inline", WAITS_KILL="leg0")
    killed = _start(tmp_path, env, "start", "fan_out", json.dumps([[0.6, 0.05, 0.2]]))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    workflow = next(e["id"] for e in events(tmp_path) if e["event"] == "fan_out.start")
    done_before = [e["i"] for e in events(tmp_path) if e["event"] == "leg.done"]
    assert done_before == [1, 2]
    # Recovered, the unfinished leg now ends first: the journal and result do not change.
    env = waits_env(tmp_path, store_url, "inline", LEG_DELAYS=json.dumps([0.0, 0.5, 0.5]))
    recovered = _start(tmp_path, env, "recover")
    assert recovered.returncode == 0, recovered.stderr
    (resumed,) = json.loads(recovered.stdout.splitlines()[-1])
    assert resumed["id"] == workflow
    starts = [e["i"] for e in events(tmp_path) if e["event"] == "leg.start"]
    assert sorted(starts) == [0, 0, 1, 2]  # only the unfinished leg ran again
    legs = resumed["result"]["legs"]
    assert [leg["i"] for leg in legs] == [0, 1, 2]
    assert legs[1]["pid"] == legs[2]["pid"] != legs[0]["pid"]
    app = async_app.app
    journal = app.journal(workflow)
    assert [e.operation for e in journal] == ["execute_task"] * 3 + ["uuid"]
    children = [app.get_invocation(str(e.value)) for e in journal[:3]]
    assert [c.arguments["i"] for c in children if c is not None] == [0, 1, 2]
    assert app.replay(workflow) == resumed["result"]


@pytest.fixture
def async_app(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`tests/programs/async_app.py` imported afresh, queued, on the test's store."""
    import importlib

    for key, value in waits_env(tmp_path, store_url, "queued").items():
        monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("async_app", None)
    yield importlib.import_module("async_app")
    sys.modules.pop("async_app", None)


def _workers(tmp_path: Path, store_url: str, concurrency: int = 2, **extra: str) -> WorkerPool:
    env = waits_env(tmp_path, store_url, "queued", **extra)
    return WorkerPool(
        "async_app:app", tmp_path, pythonpath=PROGRAMS, concurrency=concurrency, env=env
    )


def test_a_queued_async_task_runs_in_a_worker_and_its_sleeps_suspend_it(
    tmp_path: Path, store_url: str, async_app: Any
) -> None:
    pool = _workers(tmp_path, store_url)
    pool.start(1)
    try:
        inv = async_app.nap([0.6, 1.2])

        async def main() -> dict[str, float]:
            result: dict[str, float] = await inv.result_async()
            return result

        result = asyncio.run(main())
        # The two sleeps overlap: it ends after the longer one, not after both in turn.
        assert 1.2 <= result["after"] - result["before"] < 1.7
        assert pool.log_text(0).count("suspended async_app.nap") == 2
        assert [e.operation for e in async_app.app.journal(inv.invocation_id)] == [
            "utc_now",
            "sleep",
            "sleep",
            "utc_now",
        ]
    finally:
        pool.stop()


def test_a_suspended_async_workflow_is_woken_by_its_signals(
    tmp_path: Path, store_url: str, async_app: Any
) -> None:
    pool = _workers(tmp_path, store_url)
    pool.start(1)
    try:
        inv = async_app.inbox(2)
        deadline = time.monotonic() + 20
        while "suspended async_app.inbox" not in pool.log_text(0):
            assert time.monotonic() < deadline, pool.log_text(0)
            time.sleep(0.02)
        sent = time.monotonic()
        async_app.app.signal(inv.invocation_id, "item", "first")
        async_app.app.signal(inv.invocation_id, "item", "second")
        assert inv.result == ["first", "second"]
        assert time.monotonic() - sent < 2.0  # woken, not left to its 60 s recheck
    finally:
        pool.stop()


def test_a_worker_killed_mid_async_workflow_is_resumed_by_another(
    tmp_path: Path, store_url: str, async_app: Any
) -> None:
    pool = _workers(tmp_path, store_url, WAITS_KILL="leg0")
    (first,) = pool.start(1)
    try:
        inv = async_app.fan_out([1.0, 0.05, 0.2])
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert sorted(e["i"] for e in events(tmp_path) if e["event"] == "leg.done") == [1, 2]
        pool.start(1)
        result = inv.result
        assert [leg["i"] for leg in result["legs"]] == [0, 1, 2]
        starts = [e["i"] for e in events(tmp_path) if e["event"] == "leg.start"]
        assert sorted(starts) == [0, 0, 1, 2]  # the finished legs never ran again
        journal = async_app.app.journal(inv.invocation_id)
        assert [e.operation for e in journal] == ["execute_task"] * 3 + ["uuid"]
        assert async_app.app.replay(inv.invocation_id) == result
    finally:
        pool.stop()
