"""A workflow killed with SIGKILL inside its second child resumes in a fresh process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent / "programs" / "crash_workflow.py"


def run(
    tmp_path: Path, store_url: str, *args: str, crash: bool, sync: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYNENC_STORE=store_url,
        PYNENC_SYNC="1" if sync else "0",
        CRASH_LOG=str(tmp_path / "log.jsonl"),
        CRASH="1" if crash else "0",
    )
    return subprocess.run(
        [sys.executable, str(PROGRAM), *args], env=env, capture_output=True, text=True, timeout=60
    )


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sync", [True, False], ids=["fsync", "writable-map"])
def test_sigkill_in_second_child_then_recover(tmp_path: Path, store_url: str, sync: bool) -> None:
    # Without sync the store writes through a writable map: a process crash loses nothing
    # either way.
    first = run(tmp_path, store_url, "start", crash=True, sync=sync)
    assert first.returncode == -signal.SIGKILL, first.stderr
    before = events(tmp_path)
    assert [(e["event"], e.get("task")) for e in before] == [
        ("run", "first_child"),
        ("run", "second_child"),
        ("report", None),
    ]
    report = before[2]

    second = run(tmp_path, store_url, "recover", crash=True, sync=sync)
    assert second.returncode == 0, second.stderr
    [result] = json.loads(second.stdout)
    after = events(tmp_path)
    runs = [e["task"] for e in after if e["event"] == "run"]

    # The finished first child ran exactly once; the crashed child ran twice.
    assert runs.count("first_child") == 1
    assert runs.count("second_child") == 2
    # Its recorded side effect was not repeated: the recorded value was replayed.
    assert [e["event"] for e in after].count("report") == 1
    # Every random/uuid/utc_now value seen before the crash is the one seen after.
    assert result["seen"] == report["seen"]
    assert result["second"]["own"] == report["own"]
    # Time kept moving forward across the crash.
    assert (
        result["end"] > result["second"]["after"] > report["own"]["at"] > report["seen"]["between"]
    )
    # Nothing is left to recover.
    third = run(tmp_path, store_url, "recover", crash=True, sync=sync)
    assert json.loads(third.stdout) == []


ORDER = Path(__file__).parent / "programs" / "dispatch_order.py"


def run_order(
    tmp_path: Path, store_url: str, command: str, shift: int = 0
) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PYNENC_STORE=store_url,
        STEP_LOG=str(tmp_path / "steps.log"),
        STEP_SHIFT=str(shift),
    )
    return subprocess.run(
        [sys.executable, str(ORDER), command], env=env, capture_output=True, text=True, timeout=60
    )


def test_a_durable_child_comes_with_the_dispatch_that_led_to_it(
    tmp_path: Path, store_url: str
) -> None:
    """Killed right after an inline child finished: the workflow's draw and dispatch are durable
    with the child (causal order), `pynenc show` lists both, and the resumed workflow replays
    them and does not run the child again."""
    assert run_order(tmp_path, store_url, "start").returncode == -signal.SIGKILL
    assert (tmp_path / "steps.log").read_text().split() == ["1"]
    running = run_order(tmp_path, store_url, "running").stdout.strip()
    shown = subprocess.run(
        [sys.executable, "-m", "pynenc", "--app", "dispatch_order:app", "show", running, "--json"],
        env=dict(os.environ, PYNENC_STORE=store_url, PYTHONPATH=str(ORDER.parent)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "running"
    assert [e["operation"] for e in state["journal"]] == ["random", "execute_task"]
    [child] = state["children"]
    assert child["task"].endswith(".step") and child["status"] == "success"
    assert state["journal"][1]["value"] == child["invocation_id"]

    recovered = run_order(tmp_path, store_url, "recover")
    assert recovered.returncode == 0, recovered.stderr
    [result] = json.loads(recovered.stdout)
    assert (tmp_path / "steps.log").read_text().split() == ["1", "2"], "step 1 ran once"
    assert result["drawn"] == state["journal"][0]["value"]
    assert result["first"]["x"] == 1 and result["second"]["x"] == 2


def test_a_resumed_workflow_calling_the_recorded_child_with_other_arguments_diverges(
    tmp_path: Path, store_url: str
) -> None:
    assert run_order(tmp_path, store_url, "start").returncode == -signal.SIGKILL
    recovered = run_order(tmp_path, store_url, "recover", shift=5)
    assert recovered.returncode != 0
    assert "NonDeterminismError" in recovered.stderr, recovered.stderr
    assert "execute_task" in recovered.stderr and "position 1" in recovered.stderr
    assert (tmp_path / "steps.log").read_text().split() == ["1"], "no child ran again"
