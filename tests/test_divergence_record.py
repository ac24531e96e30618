"""Where a resumption diverged is kept on the invocation's record: a recovery or a worker that
finds the code doing something else than the journal recorded writes the position and both
sides, `pynenc show` prints it, and a later run that gets past it clears it. Records written
before it was kept still read; a malformed one is refused by name. On LMDB and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from conftest import WorkerPool

from pynenc.errors import CorruptEntryError
from pynenc.invocation import InvocationRecord
from pynenc.workflow.identity import WorkflowIdentity

PROGRAMS = Path(__file__).parent / "programs"


def env(store_url: str, **more: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PYNENC_", "DRIFT_"))}
    return {
        **base,
        "PYTHONPATH": str(PROGRAMS),
        "PYNENC_STORE": store_url,
        "PYNENC_SYNC": "0",
        "COLUMNS": "250",
        **more,
    }


def run(store_url: str, *args: str, **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROGRAMS,
        env=env(store_url, **more),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def show(store_url: str, invocation_id: str) -> dict[str, Any]:
    proc = run(store_url, "-m", "pynenc", "show", invocation_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def the_order(store_url: str) -> str:
    proc = run(store_url, "-m", "pynenc", "list", "--task", "drift.order", "--json")
    (row,) = json.loads(proc.stdout)["invocations"]
    return str(row["invocation_id"])


def logs(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def check_divergence(shown: dict[str, Any]) -> None:
    diverged = shown["divergence"]
    assert diverged is not None, shown
    assert (diverged["position"], diverged["attempt"]) == (1, 0)
    assert diverged["recorded"].startswith("random() at ") and "drift.py:" in diverged["recorded"]
    assert diverged["requested"].startswith("uuid() at ") and "in order()" in diverged["requested"]
    assert diverged["at"] >= shown["created"]
    assert shown["journal"][1]["operation"] == "random"


def test_a_recovery_that_diverges_keeps_where_until_a_resumption_gets_past(
    store_url: str,
) -> None:
    killed = run(store_url, "drift.py", "4", DRIFT_CRASH="1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    order = the_order(store_url)
    assert show(store_url, order)["divergence"] is None
    recovered = run(store_url, "-m", "pynenc", "--app", "drift:app", "recover", DRIFT_CHANGED="1")
    assert recovered.returncode == 1, recovered.stderr
    assert recovered.stdout.splitlines()[-1] == "recovered 0, diverged 1, unreadable 0"
    shown = show(store_url, order)
    assert shown["status"] == "running"
    check_divergence(shown)
    text = run(store_url, "-m", "pynenc", "show", order).stdout
    assert "diverged at position 1 of attempt 0 (" in text
    assert "UTC), the last time it was resumed:" in text
    assert f"  the journal recorded  {shown['divergence']['recorded']}" in text
    assert f"  the code asked for    {shown['divergence']['requested']}" in text
    assert any(line.split()[:3] == ["1", "≠", "random"] for line in text.splitlines())
    assert "≠ marks position 1, where the code diverged" in text
    # The code is fixed: the next recovery gets past it, and it is gone from the record.
    fixed = run(store_url, "-m", "pynenc", "--app", "drift:app", "recover")
    assert fixed.stdout.splitlines()[-1] == "recovered 1, diverged 0, unreadable 0", fixed.stderr
    shown = show(store_url, order)
    assert shown["status"] == "success" and shown["divergence"] is None
    assert "diverged" not in run(store_url, "-m", "pynenc", "show", order).stdout


def test_a_worker_that_meets_a_divergence_keeps_it_on_the_record(
    store_url: str, tmp_path: Path
) -> None:
    queued = {"PYNENC_EXECUTION": "queued", "PYNENC_LEASE_SECONDS": "2"}
    enqueued = run(store_url, "drift.py", "7", **queued)
    assert enqueued.returncode == 0, enqueued.stderr
    order = enqueued.stdout.strip()
    every = {k: v for k, v in env(store_url, **queued).items() if k.startswith("PYNENC_")}
    dying = WorkerPool(
        "drift:app", tmp_path, pythonpath=PROGRAMS, env={**every, "DRIFT_CRASH": "1"}
    )
    (proc,) = dying.start()
    assert proc.wait(timeout=60) == -signal.SIGKILL, dying.log_text(0)
    changed = WorkerPool(
        "drift:app",
        logs(tmp_path, "changed"),
        pythonpath=PROGRAMS,
        env={**every, "DRIFT_CHANGED": "1"},
    )
    changed.start()
    try:
        deadline = time.monotonic() + 60
        while (shown := show(store_url, order))["divergence"] is None:
            assert time.monotonic() < deadline, changed.log_text(0)
            time.sleep(0.2)
    finally:
        changed.stop()
    check_divergence(shown)
    assert shown["status"] == "running"
    assert "non-deterministic replay" in changed.log_text(0)
    fixed = WorkerPool("drift:app", logs(tmp_path, "fixed"), pythonpath=PROGRAMS, env=every)
    fixed.start()
    try:
        deadline = time.monotonic() + 60
        while (shown := show(store_url, order))["status"] != "success":
            assert time.monotonic() < deadline, fixed.log_text(0)
            time.sleep(0.2)
    finally:
        fixed.stop()
    assert shown["divergence"] is None


def _record(**fields: Any) -> dict[str, Any]:
    """A finished record as stored, decoded, with `fields` set."""
    wf = WorkflowIdentity("00000000-0000-0000-0000-000000000000", "t.x", None)
    record = InvocationRecord(bytes(16), "t.x", b"", wf, None)
    d: dict[str, Any] = cbor2.loads(record.encode())
    d.update(fields)
    return d


def test_records_without_a_divergence_read_and_a_malformed_one_is_named() -> None:
    old = _record()
    assert "divergence" not in old, "a record that never diverged is written as before"
    assert InvocationRecord.decode(cbor2.dumps(old), bytes(16)).divergence is None
    good = {"at": 1.5, "attempt": 0, "position": 3, "recorded": "random()", "requested": "uuid()"}
    kept = InvocationRecord.decode(cbor2.dumps(_record(divergence=good)), bytes(16))
    assert kept.divergence is not None and kept.divergence.position == 3
    assert cbor2.loads(kept.encode())["divergence"] == good, "it round-trips"
    for bad, field in [
        ({**good, "position": -1}, "divergence.position"),
        ({**good, "at": "yesterday"}, "divergence.at"),
        ({**good, "recorded": None}, "divergence.recorded"),
        ([1, 2], "divergence"),
    ]:
        with pytest.raises(CorruptEntryError, match=f"its '{field}' field is"):
            InvocationRecord.decode(cbor2.dumps(_record(divergence=bad)), bytes(16))
