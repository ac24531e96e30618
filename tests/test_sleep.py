"""Durable sleep: `wf.sleep` and `wf.sleep_until` record their deadline once; inline they block,
in a worker the workflow is suspended (its slot free) and resumed when due; after a crash only
what is left is waited, and a finished run's replay does not wait at all."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from waits_support import PROGRAM, events, wait_for_event, waits_env

from pynenc import InvalidArgumentError, NonDeterminismError, Pynenc, WorkflowCancelledError


def test_a_sleep_blocks_inline_and_records_its_deadline(app: Pynenc) -> None:
    @app.task(name="t.nap")
    def nap(seconds: float) -> str:
        nap.wf.sleep(seconds)
        nap.wf.sleep(timedelta(seconds=0.05))
        nap.wf.sleep_until(nap.wf.utc_now() + timedelta(seconds=0.05))
        return "rested"

    t0 = datetime.now(UTC)
    start = time.monotonic()
    inv = nap(0.3)
    assert inv.result == "rested" and time.monotonic() - start >= 0.4
    ops = [(e.operation, e.value) for e in app.journal(inv.invocation_id)]
    assert [op for op, _ in ops] == ["sleep", "sleep", "utc_now", "sleep"]
    first = ops[0][1]
    assert isinstance(first, datetime)
    assert t0 + timedelta(seconds=0.3) <= first < t0 + timedelta(seconds=0.5)
    # A replay of the finished run serves the recorded deadlines and does not wait.
    start = time.monotonic()
    assert app.replay(inv.invocation_id) == inv.result
    assert time.monotonic() - start < 0.2


def test_a_sleep_of_zero_or_in_the_past_does_not_wait(app: Pynenc) -> None:
    @app.task(name="t.instant")
    def instant() -> str:
        instant.wf.sleep(0)
        instant.wf.sleep_until(datetime(2000, 1, 1, tzinfo=UTC))
        return "done"

    start = time.monotonic()
    inv = instant()
    assert (
        inv.result == "done" and time.monotonic() - start < 1.0
    )  # PostgreSQL round trips under load
    assert [e.operation for e in app.journal(inv.invocation_id)] == ["sleep", "sleep"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda wf: wf.sleep(-1), "at least 0"),
        (lambda wf: wf.sleep(float("nan")), "finite"),
        (lambda wf: wf.sleep(True), "seconds"),
        (lambda wf: wf.sleep("5"), "seconds"),
        (lambda wf: wf.sleep(timedelta(seconds=-1)), "negative"),
        (lambda wf: wf.sleep(1e12), "at most"),
        (lambda wf: wf.sleep_until(datetime(2030, 1, 1)), "timezone-aware"),
        (lambda wf: wf.sleep_until(5), "timezone-aware"),
        (lambda wf: wf.side_effect("pynenc.sleep", lambda: 1), "engine's own"),
    ],
)
def test_bad_sleeps_are_refused_and_record_nothing(app: Pynenc, call: Any, message: str) -> None:
    @app.task(name="t.bad_sleep")
    def bad_sleep() -> str:
        try:
            call(bad_sleep.wf)
        except InvalidArgumentError as exc:
            return str(exc)
        return "accepted"

    inv = bad_sleep()
    assert message in inv.result
    assert app.journal(inv.invocation_id) == []


def test_replacing_a_sleep_is_a_divergence_that_names_it(app: Pynenc) -> None:
    mode = {"sleep": True}

    @app.task(name="t.changed")
    def changed() -> int:
        if mode["sleep"]:
            changed.wf.sleep(0.01)
        else:
            changed.wf.side_effect("charge", lambda: 1)
        return 1

    inv = changed()
    mode["sleep"] = False
    with pytest.raises(NonDeterminismError) as caught:
        app.replay(inv.invocation_id)
    exc = caught.value
    assert exc.recorded.kind == "sleep" and exc.recorded.call == "sleep()"
    assert exc.recorded.value is not None and exc.recorded.value.startswith("until 20")
    assert exc.requested.call == 'side_effect("charge")'
    assert "the journal recorded sleep() but the code now asks for" in str(exc)


def test_an_inline_sleep_killed_midway_waits_only_what_is_left(
    tmp_path: Path, store_url: str
) -> None:
    env = waits_env(tmp_path, store_url, "inline")
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAM), "start", "sleeper", "[2.0]"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    started = wait_for_event(tmp_path, "start")["t"]
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    recovered = subprocess.run(
        [sys.executable, str(PROGRAM), "recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    done = time.time()
    [item] = json.loads(recovered.stdout)
    result = item["result"]
    # The recorded deadline stands: woken about 2 s after the start, not 2 s after recovery.
    assert 1.95 <= result["after"] - result["before"] < 2.6
    assert done - started < 2.9
    assert [e["event"] for e in events(tmp_path)] == ["start", "start", "woke"]


def test_a_queued_sleep_frees_its_worker_and_wakes_on_time(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    pool = waits_worker(concurrency=1)
    sleeping = waits_app.sleeper(2.0)
    wait_for_event(tmp_path, "start")
    # One worker slot, held by nobody while the sleeper waits: this runs at once.
    asked = time.time()
    other = waits_app.quick("meanwhile")
    assert other.wait(timeout=1.5).result - asked < 1.0
    result = sleeping.wait(timeout=10).result
    [deadline] = [
        e.value for e in waits_app.app.journal(sleeping.invocation_id) if e.operation == "sleep"
    ]
    woke = wait_for_event(tmp_path, "woke")["t"]
    assert 0 <= woke - deadline.timestamp() < 0.5
    assert result["after"] - result["before"] >= 2.0
    assert re.search(r"suspended \S+ until", pool.log_text(0))


def test_a_worker_killed_during_a_sleep_leaves_it_to_another_on_time(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    first = waits_worker()
    sleeping = waits_app.sleeper(3.0)
    wait_for_event(tmp_path, "start")
    time.sleep(0.5)
    first.procs[0].send_signal(signal.SIGKILL)
    first.procs[0].wait()
    time.sleep(1.0)
    waits_worker()  # another worker, started 1.5 s into the sleep
    sleeping.wait(timeout=15)
    [deadline] = [
        e.value for e in waits_app.app.journal(sleeping.invocation_id) if e.operation == "sleep"
    ]
    woke = wait_for_event(tmp_path, "woke")["t"]
    assert 0 <= woke - deadline.timestamp() < 0.5


def test_200_sleeping_workflows_on_two_workers_of_two_slots_take_about_one_sleep(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    waits_worker(concurrency=2, count=2)
    started = time.monotonic()
    sleeping = [waits_app.sleeper(2.0) for _ in range(200)]
    results = [inv.wait(timeout=120).result for inv in sleeping]
    elapsed = time.monotonic() - started
    assert all(r["after"] - r["before"] >= 2.0 for r in results)
    # Holding a slot per sleeping workflow would take 200 x 2 s / 4 slots = 100 s.
    assert elapsed < 15, f"{elapsed:.1f} s"
    assert len([e for e in events(tmp_path) if e["event"] == "woke"]) == 200  # each woke once


def test_a_parent_waiting_on_a_sleeping_child_holds_no_slot(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    waits_worker(concurrency=1)
    waiting = waits_app.parent(2.0)
    wait_for_event(tmp_path, "start")
    time.sleep(0.3)
    # The one slot is free: neither the sleeping child nor its waiting parent holds it.
    asked = time.time()
    assert waits_app.quick("meanwhile").wait(timeout=1.5).result - asked < 1.0
    assert waiting.wait(timeout=10).result == 2.0
    starts = [e for e in events(tmp_path) if e["event"] == "start"]
    napper_start = next(e["t"] for e in starts if e["task"] == "napper")
    done = next(e["t"] for e in events(tmp_path) if e["event"] == "done")
    assert 2.0 <= done - napper_start < 2.6


def test_a_suspended_workflow_can_be_cancelled(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    pool = waits_worker()
    sleeping = waits_app.sleeper(30.0)
    wait_for_event(tmp_path, "start")
    while not re.search(r"suspended \S+ until", pool.log_text(0)):
        time.sleep(0.02)
    assert waits_app.app.cancel(sleeping.invocation_id, "not needed") == [sleeping.invocation_id]
    with pytest.raises(WorkflowCancelledError, match="not needed"):
        _ = sleeping.wait(timeout=5).result
    assert uuid.UUID(sleeping.invocation_id).bytes not in waits_app.app.store.queued()
    assert [e["event"] for e in events(tmp_path)] == ["start"]


def test_an_inline_sleep_ends_when_its_workflow_is_cancelled(app: Pynenc) -> None:
    @app.task(name="t.long_nap")
    def long_nap() -> str:
        long_nap.wf.sleep(30)
        return "woke"

    raised: list[BaseException] = []

    def call() -> None:
        try:
            long_nap()
        except WorkflowCancelledError as exc:
            raised.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    while not app.list_invocations(task_id="t.long_nap"):
        time.sleep(0.01)
    [running] = app.list_invocations(task_id="t.long_nap")
    cancelled = time.monotonic()
    app.cancel(running.invocation_id, "changed our mind")
    thread.join(10)
    assert time.monotonic() - cancelled < 2.0
    assert [str(exc).endswith("changed our mind") for exc in raised] == [True]
