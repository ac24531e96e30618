"""Queued execution across worker processes: leases, fencing, recovery, retries, poison."""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import WorkerPool

from pynenc import InvocationParkedError, InvocationStatus
from pynenc.runner.owner import current_owner, owner_is_dead

PROGRAMS = Path(__file__).parent / "programs"


@pytest.fixture
def env(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "PYNENC_STORE": store_url,
        "PYNENC_SYNC": "0",
        "PYNENC_EXECUTION": "queued",
        "QUEUED_LOG": str(tmp_path / "log.jsonl"),
        "PYNENC_LEASE_SECONDS": "2",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


@pytest.fixture
def qapp(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(PROGRAMS))
    sys.modules.pop("queued_app", None)
    yield importlib.import_module("queued_app")
    sys.modules.pop("queued_app", None)


@pytest.fixture
def pool(tmp_path: Path, env: dict[str, str]) -> Iterator[WorkerPool]:
    workers = WorkerPool("queued_app:app", tmp_path, pythonpath=PROGRAMS, env=env)
    yield workers
    workers.stop()


def events(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["QUEUED_LOG"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_workflow_deeper_than_the_worker_pool_completes(
    qapp: ModuleType, pool: WorkerPool
) -> None:
    pool.start(1)  # one worker, one slot: every parent must run its own child
    assert qapp.chain(8).wait(timeout=30).result == 8


def test_result_wait_is_bounded(qapp: ModuleType) -> None:
    inv = qapp.chain(1)  # no worker runs
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2"):
        inv.wait(timeout=0.2)
    assert inv.status is InvocationStatus.PENDING


def test_sigterm_lets_the_running_invocation_finish(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pool.env["STEP_SLEEP"] = "1.0"
    [worker] = pool.start(1)
    inv = qapp.step(1)
    wait_until(lambda: any(e["event"] == "start" for e in events(env)), what="step to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert inv.status is InvocationStatus.SUCCESS
    assert "received SIGTERM" in pool.log_text(0)


def test_a_stopped_worker_is_replaced_and_its_late_writes_are_rejected(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    pool.env["SLOW_SLEEP"] = "4"
    [zombie] = pool.start(1)
    inv = qapp.slow_once("z")
    wait_until(lambda: any(e.get("first") for e in events(env)), what="the first run to start")
    zombie.send_signal(signal.SIGSTOP)
    try:
        [replacement] = pool.start(1)
        result = inv.wait(timeout=30).result
        assert result["pid"] == replacement.pid
    finally:
        zombie.send_signal(signal.SIGCONT)
    # The resumed zombie finishes its sleep, then every write it tries is refused.
    wait_until(lambda: "lease lost" in pool.log_text(0), timeout=20, what="the zombie to notice")
    # Its log line says which invocation of which workflow it lost.
    ids = f"[wf={inv.workflow.workflow_id} inv={inv.invocation_id}]"
    lost = [line for line in pool.log_text(0).splitlines() if "lease lost" in line]
    assert all(ids in line for line in lost), lost
    again = qapp.app.get_invocation(inv.invocation_id)
    assert again is not None and again.result == result
    assert qapp.app.get_workflow_data(inv.workflow.workflow_id, "finisher") == replacement.pid
    starts = [e for e in events(env) if e["task"] == "slow_once"]
    assert [e["pid"] for e in starts] == [zombie.pid, replacement.pid]


def test_retry_then_success_records_every_attempt(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    pool.start(1)
    inv = qapp.flaky(2).wait(timeout=30)
    result = inv.result
    assert result["attempt"] == 2
    assert [a["attempt"] for a in inv.attempts] == [0, 1]
    assert all("Flaky: attempt" in a["error"] for a in inv.attempts)
    draws = [e["draw"] for e in events(env) if e["task"] == "flaky"]
    assert len(draws) == 3 and len(set(draws)) == 3 and draws[-1] == result["draw"]
    # Replay of the finished invocation replays its final attempt.
    assert qapp.app.replay(inv.invocation_id) == result


def test_an_unlisted_exception_fails_at_once(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    pool.start(1)
    inv = qapp.wrong_error().wait(timeout=30)
    with pytest.raises(KeyError, match="not retried"):
        inv.result
    assert inv.attempts == [] and len([e for e in events(env) if e["task"] == "wrong_error"]) == 1


def test_poison_work_is_parked_after_max_recoveries(env: dict[str, str], tmp_path: Path) -> None:
    child_env = {
        **os.environ,
        **env,
        "PYNENC_EXECUTION": "inline",
        "PYNENC_MAX_RECOVERIES": "2",
        "PYTHONPATH": str(PROGRAMS),
    }
    first = subprocess.run(
        [sys.executable, "-c", "import queued_app; queued_app.suicide()"],
        env=child_env,
        capture_output=True,
        timeout=60,
    )
    assert first.returncode == -signal.SIGKILL
    exits = []
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, "-m", "pynenc", "--app", "queued_app:app", "recover", "--json"],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        exits.append(proc.returncode)
        if proc.returncode == 0:
            break
    # Two recoveries die like the first run; the third parks it instead of dying again.
    assert exits == [-signal.SIGKILL, -signal.SIGKILL, 0]
    [parked] = json.loads(proc.stdout)["recovered"]
    assert parked["status"] == "failed"
    starts = [e for e in events(env) if e["task"] == "suicide"]
    assert len(starts) == 3

    sys.path.insert(0, str(PROGRAMS))
    try:
        os.environ["PYNENC_STORE"] = env["PYNENC_STORE"]
        sys.modules.pop("queued_app", None)
        qa = importlib.import_module("queued_app")
        inv = qa.app.get_invocation(parked["invocation_id"])
        with pytest.raises(InvocationParkedError, match="died while running it 3 times"):
            inv.result
    finally:
        sys.path.remove(str(PROGRAMS))
        sys.modules.pop("queued_app", None)


def test_a_queued_child_that_kills_its_worker_is_parked(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    # Each worker dies before the child's start can be stored; the takeover of its lease is
    # what counts the death. Workers are restarted as they die, as a supervisor would.
    pool.env["PYNENC_MAX_RECOVERIES"] = "2"
    parent = qapp.suicide_parent()
    pool.start(1)
    deadline = time.monotonic() + 40
    while not qapp.app.get_invocation(parent.invocation_id).status.finished:
        assert time.monotonic() < deadline, "the pool kept dying"
        if pool.procs[-1].poll() is not None:
            pool.start(1)
        time.sleep(0.05)
    starts = [e for e in events(env) if e["task"] == "suicide"]
    assert len(starts) == 3
    wait_until(lambda: not qapp.app.store.queued(), what="the child to be parked")
    [child] = qapp.app.list_invocations(task_id="suicide")
    with pytest.raises(InvocationParkedError, match="died while running it 3 times"):
        child.result


def test_a_stopped_worker_puts_no_finished_child_back_in_the_queue(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    """Resumed after another worker took its invocation over and finished it, a stale worker's
    first write is the dispatch of a child the new owner already ran: the whole flush is
    refused, the child's enqueue too, so the finished child is never claimed again."""
    pool.env["SLOW_SLEEP"] = "4"
    [zombie] = pool.start(1)
    inv = qapp.slow_dispatch("d")
    wait_until(lambda: any(e.get("first") for e in events(env)), what="the first run to start")
    zombie.send_signal(signal.SIGSTOP)
    try:
        [replacement] = pool.start(1)
        result = inv.wait(timeout=30).result
        assert result["pid"] == replacement.pid
        child = uuid.UUID(result["child"]).bytes
        before = qapp.app.store.lease(child)
    finally:
        zombie.send_signal(signal.SIGCONT)
    wait_until(
        lambda: "another worker owns it now" in pool.log_text(0),
        timeout=20,
        what="the zombie's execution to find its writes refused",
    )
    time.sleep(0.5)  # time for a worker to claim anything put back in the queue
    assert qapp.app.store.lease(child) == before, "the finished child was claimed again"
    assert qapp.app.store.queued() == []


def test_a_resumed_worker_runs_no_side_effect_after_its_lease_ran_out(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    """A worker frozen for longer than its lease and resumed after another worker finished the
    invocation does not call the side effect's function it was about to reach: its lease has
    run out by its own clock, so it asks the store first and learns it lost it."""
    pool.env["SLOW_SLEEP"] = "4"
    [zombie] = pool.start(1)
    inv = qapp.slow_effect("e")
    wait_until(lambda: any(e.get("first") for e in events(env)), what="the first run to start")
    zombie.send_signal(signal.SIGSTOP)
    try:
        [replacement] = pool.start(1)
        assert inv.wait(timeout=30).result == replacement.pid
    finally:
        zombie.send_signal(signal.SIGCONT)
    wait_until(
        lambda: "another worker owns it now" in pool.log_text(0),
        timeout=20,
        what="the zombie's execution to give up",
    )
    charges = [e["pid"] for e in events(env) if e["event"] == "charge"]
    assert charges == [replacement.pid]


def test_graceful_stops_are_not_counted_as_deaths(
    qapp: ModuleType, pool: WorkerPool, env: dict[str, str]
) -> None:
    pool.env.update(PYNENC_MAX_RECOVERIES="1", STEP_SLEEP="1.5")
    pool.grace = 0.1
    inv = qapp.step(1)
    for stop in range(3):  # more graceful stops than max_recoveries
        [worker] = pool.start(1)
        wait_until(
            lambda stop=stop: sum(e["event"] == "start" for e in events(env)) > stop,
            what="step to start",
        )
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    pool.start(1)
    assert inv.wait(timeout=30).result["n"] == 1


def _journals(qapp: ModuleType) -> dict[bytes, list[tuple[int, bytes]]]:
    store = qapp.app.store
    return {
        inv.invocation_id: store.journal_entries(uuid.UUID(inv.invocation_id).bytes)
        for inv in qapp.app.list_invocations()
    }


def test_crash_campaign(qapp: ModuleType, pool: WorkerPool, env: dict[str, str]) -> None:
    """Kill a worker with SIGKILL at a random point of a workflow while another runs."""
    trials, kills, mid_workflow, divergences, reexecuted = 20, 0, 0, 0, 0
    rng = random.Random(20261125)
    pool.env.update(PARENT_SLEEP="0.03", STEP_SLEEP="0.02")
    alive = pool.start(2)
    for _trial in range(trials):
        inv = qapp.campaign(3)
        time.sleep(rng.uniform(0.0, 0.35))
        victim = alive.pop(rng.randrange(len(alive)))
        victim.kill()
        victim.wait()
        kills += 1
        finished = {i.invocation_id for i in qapp.app.list_invocations(status="success")}
        mid_workflow += inv.invocation_id not in finished
        snapshot = _journals(qapp)
        mark = len(events(env))
        alive += pool.start(1)
        result = inv.wait(timeout=60).result
        assert [s["n"] for s in result["steps"]] == [0, 1, 2]
        assert all(result[f"read-{n}"] == result["steps"][n]["id"] for n in range(3))
        later_starts = [e.get("inv") for e in events(env)[mark:] if e["event"] == "start"]
        reexecuted += len([i for i in later_starts if i in finished])
        final = _journals(qapp)
        for inv_id, entries in snapshot.items():
            if final.get(inv_id, [])[: len(entries)] != entries:
                divergences += 1
    print(
        f"crash campaign: {trials} trials, {kills} kills ({mid_workflow} mid-workflow), "
        f"{divergences} divergences, {reexecuted} finished children re-executed"
    )
    assert kills == trials and mid_workflow > 0 and divergences == 0 and reexecuted == 0


def test_status_and_show_commands(qapp: ModuleType, env: dict[str, str]) -> None:
    inv = qapp.chain(0)  # queued, no worker: it waits in the queue
    run_env = {**os.environ, **env, "PYTHONPATH": str(PROGRAMS)}

    def cli(*args: str) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "pynenc", "--app", "queued_app:app", "--json", *args],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    state = cli("status")
    assert state["counts"] == {"pending": 1} and state["queued"] == 1 and state["running"] == []
    shown = cli("show", inv.invocation_id)
    assert shown["task"] == "queued_app.chain" and shown["status"] == "pending"
    assert shown["workflow_id"] == inv.invocation_id and shown["journal"] == []
    missing = subprocess.run(
        [sys.executable, "-m", "pynenc", "--app", "queued_app:app", "show", str(uuid.uuid4())],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no invocation" in missing.stderr


def test_a_forked_process_is_another_owner() -> None:
    # The owner string is cached per process: a fork must not inherit the parent's, or its
    # leases and records would name a process that is alive while the child is dead.
    parent = current_owner()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, current_owner().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 1024).decode()
    os.waitpid(pid, 0)
    assert child != parent
    assert f":pid={pid}:" in child
    assert owner_is_dead(child) is True
    assert owner_is_dead(parent) is False
    assert current_owner() == parent


def test_claim_many_takes_up_to_the_free_slots_in_queue_order_each_once(store_url: str) -> None:
    from pynenc.store import open_store

    store = open_store(store_url)
    ids = [uuid.uuid4().bytes for _ in range(5)]
    for inv in ids:
        store.enqueue(inv)
    store.flush()
    now = store.now_ms()
    first = store.claim_many(b"worker-a", 60_000, now, 3)
    assert [c.invocation for c in first] == ids[:3]
    assert len({c.token for c in first}) == 3 and not any(c.taken_over for c in first)
    rest = store.claim_many(b"worker-b", 60_000, now, 10)
    assert [c.invocation for c in rest] == ids[3:]  # only what is left
    assert store.claim_many(b"worker-b", 60_000, now, 10) == []
    assert store.claim_many(b"worker-b", 60_000, now, 0) == []
    # A lease that ran out is claimed again, as a takeover, and in queue order.
    store.release_dead(ids[1], first[1].token)
    [again] = store.claim_many(b"worker-c", 60_000, store.now_ms(), 4)
    assert again.invocation == ids[1] and again.taken_over


def test_a_worker_fills_every_free_slot_at_once(store_url: str) -> None:
    import threading

    from pynenc import Pynenc
    from pynenc.runner.worker import Worker

    app = Pynenc("slots", store=store_url, execution="queued", sync=False)
    together = threading.Barrier(4, timeout=30)

    @app.task(name="slots.meet")
    def meet(n: int) -> int:
        together.wait()  # returns only once all four run at the same time
        return n

    worker = Worker(app, concurrency=4)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        calls = [meet(n) for n in range(4)]
        assert [c.wait(timeout=60).result for c in calls] == [0, 1, 2, 3]
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive() and app.store.leases() == []
