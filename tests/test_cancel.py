"""Cancelling a workflow: never resumed by recovery or workers, children included, `.result`
raises `WorkflowCancelledError`, and bad input writes nothing. Real stores, real processes."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import cbor2
import pytest
from conftest import WorkerPool, store_snapshot

from pynenc import InvalidArgumentError, InvocationStatus, WorkflowCancelledError
from pynenc.errors import CorruptEntryError
from pynenc.invocation import InvocationRecord

PROGRAM = '''
import os, time
from pathlib import Path
from pynenc import Pynenc, WorkflowCancelledError

app = Pynenc("cancel-test")
DIR = Path(os.environ["CANCEL_DIR"])


def touch(name: str) -> str:
    (DIR / name).write_text(name)
    return name


def hold(name: str) -> None:
    """Pacing only (not recorded): wait until the test creates `name`."""
    while not (DIR / name).exists():
        time.sleep(0.02)


@app.task
def flow() -> str:
    flow.wf.side_effect("start", lambda: touch("started"))
    hold("go")
    flow.wf.side_effect("later", lambda: touch("later"))
    return "done"


@app.task
def child(n: int) -> int:
    child.wf.side_effect("run", lambda: touch(f"child-{n}"))
    return n


@app.task(force_new_workflow=True)
def sub(n: int) -> int:
    grand = child(n * 10)
    sub.wf.side_effect("run", lambda: touch(f"sub-{n}"))
    return grand.result


@app.task
def parent() -> str:
    child(1)
    sub(2)
    parent.wf.side_effect("start", lambda: touch("started"))
    hold("go")
    parent.wf.side_effect("later", lambda: touch("later"))
    return "done"


@app.task
def waiter() -> str:
    s = sub(3)
    waiter.wf.side_effect("start", lambda: touch("started"))
    hold("go")
    try:
        return f"child returned {s.result}"
    except WorkflowCancelledError as exc:
        return f"child cancelled: {exc.reason}"
'''


@pytest.fixture
def env(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    (tmp_path / "prog").mkdir()
    (tmp_path / "prog" / "cancel_app.py").write_text(PROGRAM)
    (tmp_path / "marks").mkdir()
    values = {
        "PYNENC_STORE": store_url,
        "PYNENC_SYNC": "0",
        "PYNENC_LEASE_SECONDS": "2",
        "CANCEL_DIR": str(tmp_path / "marks"),
        "PYTHONPATH": str(tmp_path / "prog"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(tmp_path / "prog"))
    return values


@pytest.fixture
def mod(env: dict[str, str]) -> Iterator[ModuleType]:
    sys.modules.pop("cancel_app", None)
    yield importlib.import_module("cancel_app")
    sys.modules.pop("cancel_app", None)


def marks(env: dict[str, str]) -> set[str]:
    return {p.name for p in Path(env["CANCEL_DIR"]).iterdir()}


def go(env: dict[str, str]) -> None:
    (Path(env["CANCEL_DIR"]) / "go").write_text("go")


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pynenc", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def python(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def store_digest(env: dict[str, str]) -> str:
    return hashlib.sha256(repr(store_snapshot(env["PYNENC_STORE"])).encode()).hexdigest()


def test_a_killed_then_cancelled_workflow_is_never_recovered(
    mod: ModuleType, env: dict[str, str]
) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-c", "import cancel_app; cancel_app.flow()"],
        env={**os.environ, **env},
    )
    try:
        wait_until(lambda: "started" in marks(env), what="the workflow to start")
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=30)
    (inv,) = mod.app.list_invocations(task_id="flow")
    assert inv.status is InvocationStatus.RUNNING  # stranded: recover() would resume it
    before = time.time()
    done = cli(env, "cancel", inv.invocation_id, "--reason", "bad deploy")
    assert done.returncode == 0, done.stderr
    assert inv.invocation_id in done.stdout
    go(env)  # a resumed attempt would now run its later step at once
    recovered = python(
        env,
        """
        import json, cancel_app
        print(json.dumps([i.invocation_id for i in cancel_app.app.recover()]))
        """,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout) == []
    assert "later" not in marks(env)
    assert inv.status is InvocationStatus.CANCELLED
    with pytest.raises(WorkflowCancelledError) as caught:
        _ = inv.result
    exc = caught.value
    assert (exc.workflow_id, exc.reason, exc.code) == (
        inv.invocation_id,
        "bad deploy",
        "WORKFLOW_CANCELLED",
    )
    assert before - 1 <= exc.cancelled_at <= time.time()
    assert "bad deploy" in str(exc) and inv.invocation_id in str(exc)
    # Cancelling it again: it has finished, nothing to cancel (exit 1).
    again = cli(env, "cancel", inv.invocation_id, "--reason", "twice")
    assert again.returncode == 1 and "nothing to cancel" in again.stderr


@pytest.fixture
def queued(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PYNENC_EXECUTION", "queued")
    return {**env, "PYNENC_EXECUTION": "queued"}


@pytest.fixture
def qmod(queued: dict[str, str]) -> Iterator[ModuleType]:
    """The program with queued execution (its app reads the environment when imported)."""
    sys.modules.pop("cancel_app", None)
    yield importlib.import_module("cancel_app")
    sys.modules.pop("cancel_app", None)


@pytest.fixture
def pool(tmp_path: Path, queued: dict[str, str]) -> Iterator[WorkerPool]:
    workers = WorkerPool("cancel_app:app", tmp_path, pythonpath=tmp_path / "prog", env=queued)
    yield workers
    workers.stop()


def test_a_queued_cancelled_workflow_is_never_run_by_a_worker(
    qmod: ModuleType, queued: dict[str, str], pool: WorkerPool
) -> None:
    mod = qmod
    inv = mod.flow()  # queued; no worker yet
    cancelled = mod.app.cancel(inv.invocation_id, "not wanted")
    assert cancelled == [inv.invocation_id]
    assert mod.app.store.queued() == []  # off the queue
    go(queued)
    pool.start(1)
    other = mod.child(7)  # proves the worker runs what is not cancelled
    assert other.wait(timeout=30).result == 7
    assert "started" not in marks(queued) and "later" not in marks(queued)
    with pytest.raises(WorkflowCancelledError, match="not wanted"):
        _ = inv.result


def test_cancel_stops_a_running_worker_and_every_child(
    qmod: ModuleType, queued: dict[str, str], pool: WorkerPool
) -> None:
    mod = qmod
    pool.start(1)  # one worker, busy with the parent: the children stay queued
    inv = mod.parent()
    wait_until(lambda: "started" in marks(queued), what="the parent to start")
    members = {i.task_id.rsplit(".", 1)[-1]: i for i in mod.app.list_invocations()}
    assert set(members) == {"parent", "child", "sub"}
    cancelled = mod.app.cancel(inv.invocation_id, "diverged after deploy")
    assert cancelled[0] == inv.invocation_id
    assert set(cancelled) == {i.invocation_id for i in members.values()}
    assert members["sub"].workflow.parent_workflow_id == inv.invocation_id  # a child workflow
    assert mod.app.store.queued() == []
    go(queued)  # the running parent goes on: its next side effect must not run
    other = mod.child(8)
    assert other.wait(timeout=30).result == 8  # the worker lives on and took the next one
    time.sleep(0.3)
    assert marks(queued) & {"later", "child-1", "sub-2", "child-20"} == set()
    for member in members.values():
        assert member.status is InvocationStatus.CANCELLED
        with pytest.raises(WorkflowCancelledError) as caught:
            _ = member.result
        assert (caught.value.workflow_id, caught.value.reason) == (
            inv.invocation_id,
            "diverged after deploy",
        )
    assert mod.app.recover() == []


def test_a_parent_waiting_on_a_cancelled_child_workflow_sees_the_error(
    qmod: ModuleType, queued: dict[str, str], pool: WorkerPool
) -> None:
    mod = qmod
    pool.start(1)
    inv = mod.waiter()
    wait_until(lambda: "started" in marks(queued), what="the parent to start")
    (child_wf,) = mod.app.list_invocations(task_id="sub")
    mod.app.cancel(child_wf.invocation_id, "child not needed")
    go(queued)
    assert inv.wait(timeout=30).result == "child cancelled: child not needed"
    assert not marks(queued) & {"sub-3", "child-30"}


def test_bad_input_writes_nothing_and_says_so(mod: ModuleType, env: dict[str, str]) -> None:
    finished = mod.child(5)
    assert finished.result == 5
    running = subprocess.Popen(
        [sys.executable, "-c", "import cancel_app; cancel_app.flow()"],
        env={**os.environ, **env},
    )
    try:
        wait_until(lambda: "started" in marks(env), what="the workflow to start")
    finally:
        running.send_signal(signal.SIGKILL)
        running.wait(timeout=30)
    (flow,) = mod.app.list_invocations(task_id="flow")
    digest = store_digest(env)
    cases: list[tuple[Any, Any, str]] = [
        (str(uuid.uuid4()), "why", "no workflow"),
        ("not-an-id", "why", "not a workflow id"),
        (finished.invocation_id, "why", "nothing to cancel"),
        (flow.invocation_id, 5, "needs a reason"),
        (flow.invocation_id, "  ", "needs a reason"),
        (flow.invocation_id, "x" * 2001, "at most 2,000"),
    ]
    for workflow_id, reason, message in cases:
        with pytest.raises(InvalidArgumentError, match=message):
            mod.app.cancel(workflow_id, reason)
    unknown = cli(env, "cancel", str(uuid.uuid4()), "--reason", "why")
    assert unknown.returncode == 1 and "no workflow" in unknown.stderr
    usage = cli(env, "cancel", flow.invocation_id)  # no --reason
    assert usage.returncode == 2 and "--reason" in usage.stderr
    missing = cli(env, "cancel", flow.invocation_id, "--reason", "x", "--store", "lmdb://nowhere")
    assert missing.returncode == 1 and "no store" in missing.stderr
    assert store_digest(env) == digest
    assert flow.status is InvocationStatus.RUNNING
    # Through --app, the same command cancels it.
    done = cli(env, "cancel", flow.invocation_id, "--reason", "by app", "--app", "cancel_app:app")
    assert done.returncode == 0, done.stderr
    assert flow.status is InvocationStatus.CANCELLED


def test_a_cancel_record_is_checked_and_older_records_stay_readable(
    mod: ModuleType, env: dict[str, str]
) -> None:
    inv = mod.child(4)
    key = uuid.UUID(inv.invocation_id).bytes
    stored = mod.app.store.get("invocations", key)
    assert stored is not None
    record = cbor2.loads(stored)
    assert "cancel" not in record  # a record not cancelled is written as it always was
    record["status"] = "cancelled"
    with pytest.raises(CorruptEntryError, match="no 'cancel' field"):
        InvocationRecord.decode(cbor2.dumps(record), key)
    record["cancel"] = {"at": 1.0, "wf": inv.invocation_id, "reason": 7}
    with pytest.raises(CorruptEntryError, match=r"cancel\.reason"):
        InvocationRecord.decode(cbor2.dumps(record), key)
    record["cancel"]["reason"] = "ok"
    assert InvocationRecord.decode(cbor2.dumps(record), key).cancel is not None
