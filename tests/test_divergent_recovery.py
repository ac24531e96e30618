"""Recovery when the journal and the code disagree, and side effects that raise.

A side effect's exception is its recorded outcome, so a task that catches it replays and
resumes like any other. Code that now does less than it recorded has diverged on recovery as on
replay; a divergence leaves the invocation as it was (not counted as a death of its process,
so it is never parked for it) and does not stop other invocations from resuming.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pynenc import Pynenc

PROGRAM = Path(__file__).parent / "programs" / "divergent.py"


def run(tmp_path: Path, *args: str, changed: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYNENC_STORE=f"lmdb://{tmp_path / 'store'}",
        PYNENC_MAX_RECOVERIES="2",
        RUN_LOG=str(tmp_path / "runs.log"),
        CHANGED="1" if changed else "0",
    )
    return subprocess.run(
        [sys.executable, str(PROGRAM), *args], env=env, capture_output=True, text=True, timeout=60
    )


def output(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def runs(tmp_path: Path) -> list[str]:
    return (tmp_path / "runs.log").read_text().splitlines()


def test_a_caught_side_effect_exception_resumes_and_replays(tmp_path: Path) -> None:
    assert run(tmp_path, "start", "catcher").returncode == -signal.SIGKILL
    [(task, result)] = output(run(tmp_path, "recover"))["resumed"]
    assert task.endswith(".catcher") and result["outcome"] == "caught gateway down"
    assert output(run(tmp_path, "replay", "catcher"))["replayed"] == result
    assert runs(tmp_path) == ["gateway"], "the side effect ran once, ever"


def test_an_uncaught_side_effect_exception_fails_the_task_identically_on_replay(
    app: Pynenc,
) -> None:
    calls: list[int] = []

    def call_gateway() -> int:
        calls.append(1)
        raise ConnectionError("gateway down", 503)

    @app.task(name="test_divergent_recovery.pay")
    def pay() -> int:
        return pay.wf.side_effect("call", call_gateway)

    invocation = pay()
    with pytest.raises(ConnectionError) as first:
        invocation.result
    with pytest.raises(ConnectionError) as again:
        app.replay(invocation.invocation_id)
    assert first.value.args == again.value.args == ("gateway down", 503)
    assert "raised by side effect 'call'" in again.value.__notes__[0]
    assert calls == [1]
    [entry] = app.journal(invocation.invocation_id)
    assert entry.operation == "side_effect" and isinstance(entry.value, ConnectionError)


def test_an_unstorable_side_effect_value_is_recorded_as_its_error(app: Pynenc) -> None:
    @app.task(name="test_divergent_recovery.probe")
    def probe() -> str:
        try:
            probe.wf.side_effect("handle", object)
        except TypeError as exc:
            return str(exc)
        return "stored"

    invocation = probe()
    message = invocation.result
    assert "value of side effect 'handle'" in message
    assert app.replay(invocation.invocation_id) == message


def test_resumed_code_that_does_less_than_it_recorded_diverges_and_is_never_parked(
    tmp_path: Path,
) -> None:
    assert run(tmp_path, "start", "shrinking").returncode == -signal.SIGKILL
    # More divergent recoveries than max_recoveries (2): none counts as a death.
    for _ in range(3):
        diverged = output(run(tmp_path, "recover", changed=True))["diverged"]
        assert "execute_task(divergent.charge" in diverged and "the task to return" in diverged
        assert output(run(tmp_path, "state")) == {"shrinking": "running"}
    [(_, result)] = output(run(tmp_path, "recover"))["resumed"]
    assert result == "charged"
    assert runs(tmp_path) == ["charge 1"], "the finished child never ran again"


def test_one_divergent_workflow_does_not_stop_the_others_from_resuming(tmp_path: Path) -> None:
    for task in ("shrinking", "stable"):
        assert run(tmp_path, "start", task).returncode == -signal.SIGKILL
    report = output(run(tmp_path, "recover", changed=True))
    assert "the task to return" in report["diverged"]
    assert report["notes"] == [
        "recover(): 1 stranded invocation(s) diverged and were left as they were; "
        "1 other(s) resumed"
    ]
    assert output(run(tmp_path, "state")) == {"shrinking": "running", "stable": "success"}


def test_two_recoveries_at_once_resume_a_workflow_once(tmp_path: Path) -> None:
    assert run(tmp_path, "start", "slow_resume").returncode == -signal.SIGKILL
    env = dict(
        os.environ,
        PYNENC_STORE=f"lmdb://{tmp_path / 'store'}",
        RUN_LOG=str(tmp_path / "runs.log"),
    )
    both = [
        subprocess.Popen(
            [sys.executable, str(PROGRAM), "recover"], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    reports = sorted(len(json.loads(proc.communicate(timeout=60)[0])["resumed"]) for proc in both)
    assert reports == [0, 1]
    assert runs(tmp_path) == ["slow_resume", "slow_resume"], "one run, then one resumption"


def test_a_recovery_picks_its_invocations_only_while_no_other_one_is(tmp_path: Path) -> None:
    """The recovery lock (`recover.lock` in the store): what makes two recoveries at once
    resume a workflow once, whatever their timing."""
    assert run(tmp_path, "start", "stable").returncode == -signal.SIGKILL
    fd = os.open(tmp_path / "store" / "recover.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another recovery picking its invocations
        env = dict(os.environ, PYNENC_STORE=f"lmdb://{tmp_path / 'store'}", RUN_LOG="-")
        waiting = subprocess.Popen(
            [sys.executable, str(PROGRAM), "recover"], env=env, stdout=subprocess.PIPE, text=True
        )
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)
    finally:
        os.close(fd)
    [(task, _)] = json.loads(waiting.communicate(timeout=60)[0])["resumed"]
    assert task.endswith(".stable")


def test_a_retried_inline_grandchild_is_resumed_once_within_its_workflow(tmp_path: Path) -> None:
    assert run(tmp_path, "start", "nested").returncode == -signal.SIGKILL
    [(task, result)] = output(run(tmp_path, "recover"))["resumed"]
    assert task.endswith(".nested") and result == 1
    assert runs(tmp_path) == ["leaf 0", "leaf 1", "leaf 1"], (
        "the killed attempt, then its resumption"
    )


def test_a_recovery_that_stops_on_an_error_hands_back_what_it_picked(tmp_path: Path) -> None:
    assert run(tmp_path, "start", "forgotten").returncode == -signal.SIGKILL
    env = dict(os.environ, PYNENC_STORE=f"lmdb://{tmp_path / 'store'}", FORGET="1", RUN_LOG="-")
    proc = subprocess.run(
        [sys.executable, str(PROGRAM), "recover-then-delegate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = output(proc)
    assert report["failed"].startswith("InvalidArgumentError") and "forgotten" in report["failed"]
    [(task, _)] = report["delegated"]["resumed"]
    assert task.endswith(".forgotten")
