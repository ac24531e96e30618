"""Owner liveness: a live process is never judged dead, a gone one is, on any platform and with
no /proc at all (then a gone pid is still dead at once, and a live one is left to its lease)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pynenc.runner.owner import current_owner, owner_is_dead

HOST = socket.gethostname()

APP = """
import os, time
from pynenc import Pynenc

app = Pynenc()  # store, execution and lease from the environment

@app.task
def slow(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()
"""

# Judges itself, a gone pid and a real worker (alive, then SIGKILLed), and prints what it saw.
DRIVER = """
import json, os, subprocess, sys, time
from pynenc.runner.owner import current_owner, owner_is_dead
from liveness_app import app, slow

def running_lease():
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        live = [x.owner.decode() for x in app.store.leases() if x.expires_ms]
        if live:
            return live[0]
        time.sleep(0.05)
    raise TimeoutError("no worker holds a lease")

me = current_owner()
proc = sorted(os.listdir("/proc"))[:3] if os.path.isdir("/proc") else None
report = {"proc": proc, "me": me, "me_dead": owner_is_dead(me)}
gone = subprocess.Popen([sys.executable, "-c", "pass"])
gone.wait()
report["gone_dead"] = owner_is_dead(me.replace(f"pid={os.getpid()}:", f"pid={gone.pid}:"))
log = open("worker.log", "w")
worker = subprocess.Popen(
    [sys.executable, "-m", "pynenc", "--app", "liveness_app:app", "worker"], stderr=log
)
try:
    inv = slow(3.0)
    report["worker_owner"] = running_lease()
    released = 0
    deadline = time.monotonic() + 2.5  # the worker's own sweep runs twice meanwhile
    while time.monotonic() < deadline:
        released += app.release_dead_leases()
        time.sleep(0.2)
    report["released_while_alive"] = released
    report["result"] = inv.wait(timeout=20).result
    report["worker_pid"] = worker.pid
    report["worker_log_before_kill"] = open("worker.log").read()
    stranded = slow(60.0)
    running_lease()
finally:
    worker.kill()
    worker.wait()
report["released_after_kill"] = app.release_dead_leases()
print(json.dumps(report))
"""


def _run_driver(tmp_path: Path, hide_proc: bool) -> dict[str, Any]:
    (tmp_path / "liveness_app.py").write_text(APP)
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PYNENC_STORE": f"lmdb://{tmp_path / 'store'}",
        "PYNENC_SYNC": "0",
        "PYNENC_EXECUTION": "queued",
        "PYNENC_LEASE_SECONDS": "2",
    }
    cmd = [sys.executable, "driver.py"]
    if hide_proc:
        # A private mount namespace whose /proc is an empty tmpfs, for the driver, its worker
        # and everything they start: what a platform without /proc looks like.
        shell = f"mount -t tmpfs none /proc && exec {sys.executable} driver.py"
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", shell]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return report


def _check_worker_lifecycle(report: dict[str, Any]) -> None:
    # The live worker kept its lease through every sweep (its own and the driver's) and ran the
    # task once; once SIGKILLed its lease is released at once, not after expiry.
    assert f":pid={report['worker_pid']}:" in report["worker_owner"]
    assert report["released_while_alive"] == 0
    assert "released" not in report["worker_log_before_kill"]
    assert report["result"] == report["worker_pid"]
    assert report["released_after_kill"] == 1
    assert report["gone_dead"] is True


def test_liveness_of_a_worker_and_of_this_process(tmp_path: Path) -> None:
    report = _run_driver(tmp_path, hide_proc=False)
    assert re.fullmatch(rf"{re.escape(HOST)}:pid=\d+:start=boot\+\d+\.\d\d", report["me"])
    assert report["me_dead"] is False
    _check_worker_lifecycle(report)


def _can_hide_proc() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /proc"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_hide_proc(), reason="hiding /proc needs root, unshare and mount namespaces (Linux)"
)
def test_liveness_with_proc_hidden(tmp_path: Path) -> None:
    report = _run_driver(tmp_path, hide_proc=True)
    assert report["proc"] == []  # /proc really was empty in there
    # No start time can be read: the owner says so, and judges itself unknown, never dead.
    assert re.fullmatch(rf"{re.escape(HOST)}:pid=\d+:start=\?", report["me"])
    assert report["me_dead"] is None
    _check_worker_lifecycle(report)


def _pid_of_a_gone_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_recycled_pid_is_not_its_old_owner() -> None:
    me = current_owner()
    start = float(me.rsplit("boot+", 1)[1])
    assert owner_is_dead(me) is False
    # The same pid with a start more than a second away is another process.
    assert owner_is_dead(me.replace(f"boot+{start:.2f}", f"boot+{start - 5:.2f}")) is True
    assert owner_is_dead(me.replace(f"boot+{start:.2f}", f"boot+{start + 0.4:.2f}")) is False
    assert owner_is_dead(f"{HOST}:pid={os.getpid()}:start=?") is None
    assert owner_is_dead(f"{HOST}:pid={_pid_of_a_gone_process()}:start=?") is True
    assert owner_is_dead(f"elsewhere:pid={os.getpid()}:start=boot+1.00") is None
    assert owner_is_dead("not an owner") is None


def _ticks_of_this_process() -> int:
    stat = Path(f"/proc/{os.getpid()}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def test_owners_of_the_previous_format() -> None:
    # `host:pid:ticks` as written before: a gone pid is dead and an unknown start ("0") is left
    # to the lease, on any platform; where the ticks can be compared (Linux) they are.
    pid = os.getpid()
    assert owner_is_dead(f"{HOST}:{_pid_of_a_gone_process()}:12345") is True
    assert owner_is_dead(f"{HOST}:{pid}:0") is None
    assert owner_is_dead(f"elsewhere:{pid}:12345") is None
    if not Path(f"/proc/{pid}/stat").exists():
        pytest.skip("ticks of the previous format come from /proc (Linux), absent here")
    ticks = _ticks_of_this_process()
    assert owner_is_dead(f"{HOST}:{pid}:{ticks}") is False
    tick = os.sysconf("SC_CLK_TCK")
    assert owner_is_dead(f"{HOST}:{pid}:{ticks + 30 * tick}") is True
