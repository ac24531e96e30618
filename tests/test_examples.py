"""The README's main job and every example run as scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_order_processing_demo_crashes_and_resumes_identically(tmp_path: Path) -> None:
    proc = run("order_processing.py", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "exited with -9" in out
    for check in (
        "tracking number identical",
        "payment id and timestamp identical",
        "payment not run again",
        "replay of the finished workflow identical",
    ):
        assert f"{check}: True" in out
    assert (tmp_path / ".pynenc").is_dir()  # the default embedded store, in the working dir


def test_crash_flag_then_plain_run_resumes(tmp_path: Path) -> None:
    crashed = run("order_processing.py", tmp_path, "--crash-after", "payment", "--order", "ORD-77")
    assert crashed.returncode == -9
    resumed = run("order_processing.py", tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed workflow" in resumed.stdout and "TRK-ORD-77-" in resumed.stdout


@pytest.mark.parametrize(
    "script",
    [
        "workflow_boundaries.py",
        "deterministic_operations.py",
        "stateful_workflow.py",
        "parent_child.py",
        "robust_processing.py",
    ],
)
def test_example_scripts_run(tmp_path: Path, script: str) -> None:
    proc = run(script, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().startswith("{")


def test_notifications_demo_is_killed_in_its_sleep_and_notifies_once_on_time(
    tmp_path: Path,
) -> None:
    proc = run("notifications.py", tmp_path, "--delay", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "exited with -9" in out and "during its sleep" in out
    for check in (
        "notification sent exactly once",
        "sent at the recorded time, not a full delay after the restart",
        "delivered signal received",
        "replay of the finished workflow identical",
    ):
        assert f"{check}: True" in out
    sent = (tmp_path / "outbox.jsonl").read_text().splitlines()
    assert len(sent) == 1  # the outside world saw one notification
