"""A full disk under a running workflow, on a real tiny tmpfs: `StoreFullError`, never a
signal, with sync on and off (`sync=False` writes through a writable map, whose pages would
be a SIGBUS on a full disk if their space were not reserved first).

The tmpfs is mounted by the test (`mount -t tmpfs`), so these tests need root; CI runs as root.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STEPS = 900

WORKFLOW = r"""
import json, os, sys
from pynenc import Pynenc

store, sync, filler = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
app = Pynenc("full-disk", store="lmdb://" + store, sync=sync, flush_interval_ms=0)


def fill():
    # Take every free byte of the filesystem, once (not again when the step is replayed).
    if not filler or os.path.exists(filler):
        return 0
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return 1


@app.task
def workflow(n):
    out = []
    for i in range(n):
        out.append(workflow.wf.side_effect(f"step-{i}", lambda i=i: i * i + 7))
        workflow.wf.set_data(f"blob-{i}", "x" * 3000 + str(i))
        if i == 60:
            workflow.wf.side_effect("fill", fill)
    return out


if __name__ == "__main__" and sys.argv[4] == "run":
    try:
        print(json.dumps({"ok": True, "result": workflow(int(sys.argv[5])).result}))
    except BaseException as e:
        print(json.dumps({"ok": False, "error": type(e).__name__, "message": str(e),
                          "mro": [c.__name__ for c in type(e).__mro__],
                          "chain": [type(c).__name__ for c in (e.__cause__, e.__context__) if c]}))
elif sys.argv[4] == "recover":
    print(json.dumps({"ok": True, "result": [inv.result for inv in app.recover()]}))
elif sys.argv[4] == "list":
    print(json.dumps({"ok": True, "result": [
        [inv.status.value, str(inv.task_id)] for inv in app.list_invocations()]}))
"""


def run(store: Path, sync: bool, filler: Path | None, *command: str) -> dict[str, Any]:
    """Run the workflow program; fail the test if a signal killed it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(WORKFLOW),
            str(store),
            "1" if sync else "0",
            str(filler or ""),
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for the test and unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def clean_result(tmp_path: Path, sync: bool) -> Any:
    clean = run(tmp_path / "clean", sync, None, "run", str(STEPS))
    assert clean["ok"], clean
    return clean["result"]


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_a_full_disk_mid_workflow_is_store_full_error_never_a_signal(
    tiny_disk: Path, sync: bool
) -> None:
    store, filler = tiny_disk / "store", tiny_disk / "filler"
    failed = run(store, sync, filler, "run", str(STEPS))
    assert filler.exists(), "the workflow did not reach the step that fills the disk"
    assert not failed["ok"], "the workflow finished on a full disk"
    # Raised in the caller as the store's own error, or as the task's failure naming it.
    assert "StoreFullError" in (failed["error"], *failed["chain"]) or (
        "StoreFullError" in failed["message"]
    ), failed
    assert "it needs at least" in failed["message"], failed
    # The store is still readable by a new process while the disk is full.
    listed = run(store, sync, None, "list")
    assert listed["ok"] and listed["result"], listed


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "nosync"])
def test_a_workflow_stopped_by_a_full_disk_resumes_once_space_is_freed(
    tiny_disk: Path, tmp_path: Path, sync: bool
) -> None:
    """After space is freed, recovery in a new process finishes the workflow with the values
    of a clean run."""
    store, filler = tiny_disk / "store", tiny_disk / "filler"
    failed = run(store, sync, filler, "run", str(STEPS))
    assert not failed["ok"], failed
    filler.unlink()
    recovered = run(store, sync, None, "recover")
    assert recovered["result"] == [clean_result(tmp_path, sync)], recovered
