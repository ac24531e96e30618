"""Helpers of the tests of waiting workflows (`tests/programs/waits_app.py`): its environment,
the lines its tasks log, and waiting for one of them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).parent / "programs"
PROGRAM = PROGRAMS / "waits_app.py"


def waits_env(tmp_path: Path, store_url: str, execution: str, **extra: str) -> dict[str, str]:
    """The environment of a process running `waits_app` on the test's store."""
    return dict(
        os.environ,
        PYNENC_STORE=store_url,
        PYNENC_SYNC="0",
        PYNENC_EXECUTION=execution,
        PYNENC_LEASE_SECONDS="2",
        WAITS_LOG=str(tmp_path / "log.jsonl"),
        PYTHONPATH=str(PROGRAMS),
        **extra,
    )


def events(tmp_path: Path) -> list[dict[str, Any]]:
    """Every line the tasks logged so far, in order."""
    path = tmp_path / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_event(tmp_path: Path, event: str, timeout: float = 20) -> dict[str, Any]:
    """The first logged line of `event`, waiting for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events(tmp_path) if e["event"] == event]
        if found:
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no {event!r} event within {timeout} s: {events(tmp_path)}")
