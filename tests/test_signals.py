"""Signals and events: `app.signal` delivers durably, in order, exactly once per delivery, to
`wf.wait_signal`, whose consumption and timeouts are recorded; `wf.set_event` publishes what
`app.get_event` waits for."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from waits_support import PROGRAM, events, waits_env

from pynenc import InvalidArgumentError, NonDeterminismError, Pynenc


def _signal_rows(app: Pynenc) -> list[bytes]:
    return [key for key, _ in app.store.scan("data", b"") if b"\xffs" in key]


def test_signals_sent_before_the_wait_are_kept_in_order_and_replayed(app: Pynenc) -> None:
    gate = threading.Event()

    @app.task(name="t.inbox")
    def inbox() -> list[Any]:
        inbox.wf.side_effect("ready", gate.set)
        return [inbox.wf.wait_signal("item", timeout=5) for _ in range(3)]

    @app.task(name="t.outer")
    def outer() -> str:
        return "started"

    holder: list[Any] = []
    thread = threading.Thread(target=lambda: holder.append(inbox()))
    thread.start()
    gate.wait(5)
    [running] = app.list_invocations(task_id="t.inbox")
    for value in ({"a": 1}, [2], "three"):
        app.signal(running.invocation_id, "item", value)
    thread.join(10)
    [inv] = holder
    assert inv.result == [{"a": 1}, [2], "three"]
    received = [e for e in app.journal(inv.invocation_id) if e.operation == "signal"]
    assert [(e.name, e.value) for e in received] == [
        ("item", {"a": 1}),
        ("item", [2]),
        ("item", "three"),
    ]
    assert _signal_rows(app) == []  # each delivery consumed, its row gone
    assert app.replay(inv.invocation_id) == [{"a": 1}, [2], "three"]


def test_a_signal_sent_before_the_workflow_waits_is_kept(app: Pynenc) -> None:
    @app.task(name="t.late")
    def late() -> Any:
        late.wf.sleep(0.4)
        return late.wf.wait_signal("go")

    holder: list[Any] = []
    thread = threading.Thread(target=lambda: holder.append(late()))
    thread.start()
    while not app.list_invocations(task_id="t.late"):
        time.sleep(0.01)
    [running] = app.list_invocations(task_id="t.late")
    app.signal(running.invocation_id, "go", 42)  # while it still sleeps
    thread.join(10)
    assert holder[0].result == 42


def test_a_wait_times_out_durably_and_replays_the_timeout(app: Pynenc) -> None:
    @app.task(name="t.patient")
    def patient() -> str:
        try:
            patient.wf.wait_signal("never", timeout=timedelta(seconds=0.3))
        except TimeoutError as exc:
            return f"gave up: {exc}"
        return "received"

    start = time.monotonic()
    inv = patient()
    assert 0.3 <= time.monotonic() - start < 1.0
    assert inv.result.startswith("gave up: no signal 'never' arrived by 20")
    assert [e.operation for e in app.journal(inv.invocation_id)] == ["wait_signal", "signal"]
    assert isinstance(app.journal(inv.invocation_id)[1].value, TimeoutError)
    start = time.monotonic()
    assert app.replay(inv.invocation_id) == inv.result
    assert time.monotonic() - start < 0.2


def test_waiting_for_another_signal_is_a_divergence_that_names_both(app: Pynenc) -> None:
    mode = {"name": "a"}

    @app.task(name="t.which")
    def which() -> str:
        try:
            which.wf.wait_signal(mode["name"], timeout=0)
        except TimeoutError:
            pass
        return "done"

    inv = which()
    mode["name"] = "b"
    with pytest.raises(NonDeterminismError) as caught:
        app.replay(inv.invocation_id)
    assert caught.value.recorded.call == 'wait_signal("a")'
    assert caught.value.requested.call == 'wait_signal("b")'


def test_bad_signals_are_refused_and_write_nothing(app: Pynenc) -> None:
    @app.task(name="t.done")
    def done() -> str:
        return "done"

    @app.task(name="t.outer_flow")
    def outer_flow() -> str:
        return done().invocation_id

    finished = done()
    child_id = outer_flow().result
    cases = [
        ("not-an-id", "item", 1, "not a workflow id"),
        ("0" * 8 + "-0000-0000-0000-" + "0" * 12, "item", 1, "no workflow"),
        (finished.invocation_id, "item", 1, "has finished"),
        (child_id, "item", 1, "inside workflow"),
    ]
    for workflow_id, name, value, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            app.signal(workflow_id, name, value)
    gate, release = threading.Event(), threading.Event()

    @app.task(name="t.open")
    def open_flow() -> Any:
        open_flow.wf.side_effect("ready", gate.set)
        release.wait(5)
        return open_flow.wf.wait_signal("item", timeout=0)

    thread = threading.Thread(target=open_flow)
    thread.start()
    gate.wait(5)
    [running] = app.list_invocations(task_id="t.open")
    for name in ("", 5, "x" * 256, "\ud800"):
        with pytest.raises(InvalidArgumentError, match="a signal name is a non-empty str"):
            app.signal(running.invocation_id, name, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="signal 'item'"):
        app.signal(running.invocation_id, "item", object())
    assert _signal_rows(app) == []
    release.set()
    thread.join(10)


def test_only_the_root_invocation_waits_for_signals(app: Pynenc) -> None:
    @app.task(name="t.inner")
    def inner() -> str:
        try:
            inner.wf.wait_signal("item", timeout=0)
        except InvalidArgumentError as exc:
            return str(exc)
        return "waited"

    @app.task(name="t.root")
    def root() -> str:
        return inner().result

    assert "signals go to a workflow's root invocation" in root().result


def test_get_event_waits_until_the_workflow_sets_it(app: Pynenc) -> None:
    @app.task(name="t.progress")
    def progress(delay: float) -> str:
        progress.wf.sleep(delay)
        progress.wf.set_event("stage", {"n": 1})
        progress.wf.sleep(0.3)
        return "done"

    holder: list[Any] = []
    thread = threading.Thread(target=lambda: holder.append(progress(0.4)))
    thread.start()
    while not app.list_invocations(task_id="t.progress"):
        time.sleep(0.01)
    [running] = app.list_invocations(task_id="t.progress")
    with pytest.raises(TimeoutError, match=r"not set within 0\.1 s"):
        app.get_event(running.invocation_id, "stage", timeout=0.1)
    assert app.get_event(running.invocation_id, "stage", timeout=5) == {"n": 1}
    [entry] = [e for e in app.journal(running.invocation_id) if e.operation == "set_event"]
    sleeps = [e.value for e in app.journal(running.invocation_id) if e.operation == "sleep"]
    assert time.time() - sleeps[0].timestamp() < 0.2  # returned as soon as it was set
    assert entry.name == "stage" and entry.value == {"n": 1}
    thread.join(10)
    assert holder[0].result == "done"
    assert app.get_event(running.invocation_id, "stage") == {"n": 1}  # kept once finished
    with pytest.raises(InvalidArgumentError, match="without setting event 'other'"):
        app.get_event(running.invocation_id, "other")
    with pytest.raises(InvalidArgumentError, match="no workflow"):
        app.get_event("0" * 8 + "-0000-0000-0000-" + "0" * 12, "stage")
    with pytest.raises(InvalidArgumentError, match="an event key"):
        app.get_event(running.invocation_id, "")


def test_signals_from_several_processes_are_each_received_once_in_order(
    waits_app: Any, waits_worker: Any, tmp_path: Path, store_url: str
) -> None:
    waits_worker(concurrency=1)
    senders, each = 3, 15
    inv = waits_app.receiver(senders * each, 20.0)
    env = waits_env(tmp_path, store_url, "queued")
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROGRAM), "signal", inv.invocation_id, str(100 * s), str(each)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for s in range(senders)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    received = inv.wait(timeout=60).result
    assert sorted(map(tuple, received)) == sorted(
        (100 * s, 100 * s + n) for s in range(senders) for n in range(each)
    )
    for s in range(senders):
        mine = [n for first, n in received if first == 100 * s]
        assert mine == sorted(mine), f"sender {s} out of order: {mine}"
    seen = [e["value"] for e in events(tmp_path) if e["event"] == "seen"]
    assert sorted(map(tuple, seen)) == sorted(map(tuple, received))  # each side effect once
    assert _signal_rows(waits_app.app) == []


def test_a_signal_consumed_before_a_crash_is_received_once(tmp_path: Path, store_url: str) -> None:
    env = waits_env(tmp_path, store_url, "inline", WAITS_KILL="consumed-0")
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAM), "start", "receiver", "[2, 10.0]"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    app = Pynenc("waits-test", store=store_url, sync=False)
    while not app.list_invocations():
        time.sleep(0.01)
    [flow] = app.list_invocations()
    app.signal(flow.invocation_id, "item", "first")
    assert proc.wait(timeout=20) < 0  # killed right after consuming it
    app.signal(flow.invocation_id, "item", "second")
    recovered = subprocess.run(
        [sys.executable, str(PROGRAM), "recover"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [item] = json.loads(recovered.stdout)
    assert item["result"] == ["first", "second"]
    assert [e["value"] for e in events(tmp_path) if e["event"] == "seen"] == [
        "first",
        "second",
    ]


def test_a_wait_timeout_after_a_crash_fires_at_its_recorded_deadline(
    tmp_path: Path, store_url: str
) -> None:
    env = waits_env(tmp_path, store_url, "inline")
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAM), "start", "receiver", "[1, 2.0]"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    app = Pynenc("waits-test", store=store_url, sync=False)
    while not app.list_invocations():
        time.sleep(0.01)
    [flow] = app.list_invocations()
    while not [e for e in app.journal(flow.invocation_id) if e.operation == "wait_signal"]:
        time.sleep(0.01)
    [wait] = [e for e in app.journal(flow.invocation_id) if e.operation == "wait_signal"]
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    subprocess.run(
        [sys.executable, str(PROGRAM), "recover"],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    [timeout] = [e for e in events(tmp_path) if e["event"] == "timeout"]
    assert 0 <= timeout["t"] - wait.value.timestamp() < 0.5


def test_a_signal_wakes_a_suspended_workflow_at_once(
    waits_app: Any, waits_worker: Any, tmp_path: Path
) -> None:
    pool = waits_worker(concurrency=1)
    inv = waits_app.receiver(1)
    while not re.search(r"suspended \S+ until", pool.log_text(0)):
        time.sleep(0.02)
    sent = time.time()
    waits_app.app.signal(inv.invocation_id, "item", "wake")
    assert inv.wait(timeout=10).result == ["wake"]
    [seen] = [e for e in events(tmp_path) if e["event"] == "seen"]
    assert seen["t"] - sent < 0.5  # not after the 60 s re-check


def test_the_command_line_sends_a_signal(tmp_path: Path, store_url: str) -> None:
    app = Pynenc("waits-test", store=store_url, sync=False)
    gate = threading.Event()

    @app.task(name="t.cli_inbox")
    def cli_inbox() -> Any:
        cli_inbox.wf.side_effect("ready", gate.set)
        return cli_inbox.wf.wait_signal("approval", timeout=10)

    holder: list[Any] = []
    thread = threading.Thread(target=lambda: holder.append(cli_inbox()))
    thread.start()
    gate.wait(5)
    [running] = app.list_invocations(task_id="t.cli_inbox")
    cli = [sys.executable, "-m", "pynenc", "--store", store_url]
    bad = subprocess.run(
        [*cli, "signal", running.invocation_id, "approval", "--json", "{nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    sent = subprocess.run(
        [*cli, "--json", "signal", running.invocation_id, "approval", "--json", '{"ok": true}'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(sent.stdout) == {
        "workflow_id": running.invocation_id,
        "signal": "approval",
        "sent": True,
    }
    thread.join(10)
    assert holder[0].result == {"ok": True}
    finished = subprocess.run(
        [*cli, "signal", running.invocation_id, "approval", "--json", "1"],
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 1 and "has finished" in finished.stderr
