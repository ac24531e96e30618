"""Engine errors cannot be swallowed: a task that catches a failed store operation still stops,
nothing after the failure is recorded, and the invocation is left to resume.

The disk-full case runs on a real, deliberately filled tmpfs in a private mount namespace
(root only), each step in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

STEPS = 8
FILL_AT = 3

FLOW = f'''
import os, sys, time
from pynenc import Pynenc

app = Pynenc("diskfull", store="lmdb://" + os.environ["STORE"])


def effect(i):
    # Outside the full filesystem: every call of a side effect's function, in any process.
    with open(os.environ["EFFECTS_LOG"], "a") as f:
        f.write(f"{{i}}\\n")
    return i * 10


def fill(path):
    """Write zeros until the filesystem is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 16))
                f.flush()
        except OSError:
            pass


@app.task
def careless(steps: int) -> dict:
    seen = []
    for i in range(steps):
        if i == {FILL_AT} and os.environ.get("FILL"):
            fill(os.environ["FILL"])
        try:
            seen.append(careless.wf.side_effect(f"effect-{{i}}", lambda i=i: effect(i)))
            careless.wf.set_data(f"blob-{{i}}", "x" * 300_000)
            # Long enough for the store's background flush to commit (and fail) the write.
            time.sleep(float(os.environ.get("PAUSE", "0")))
        except Exception as exc:  # the careless part: every error is swallowed
            print("swallowed", type(exc).__name__, file=sys.stderr, flush=True)
    return {{"seen": seen, "draw": careless.wf.random()}}
'''

RUN = """
import json
from pynenc.errors import StoreIOError
import flow
try:
    inv = flow.careless(STEPS)
    print(json.dumps({"returned": inv.status.value}))
except StoreIOError as exc:
    running = flow.app.list_invocations(status="running")
    print(json.dumps({"raised": type(exc).__name__, "running": [i.invocation_id for i in running]}))
""".replace("STEPS", str(STEPS))

INSPECT = """
import json, flow
[inv] = flow.app.list_invocations(task_id="careless")
names = [e.name for e in flow.app.journal(inv.invocation_id)]
print(json.dumps({"id": inv.invocation_id, "status": inv.status.value, "names": names}))
"""

RECOVER = """
import json, flow
resumed = flow.app.recover()
print(json.dumps({"resumed": [i.invocation_id for i in resumed],
                  "result": resumed[0].result if resumed else None}))
"""

REPLAY = """
import json, sys, flow
print(json.dumps({"replayed": flow.app.replay(sys.argv[1])}))
"""


def _can_mount_tmpfs() -> str | None:
    """Why a tmpfs cannot be mounted in a private namespace here, or None if it can."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a mount namespace: {probe.stderr.strip()}"
    return None


@pytest.mark.parametrize(
    "pause",
    [
        pytest.param("0", id="the-step-flush-fails"),
        pytest.param("0.05", id="a-background-flush-fails"),
    ],
)
def test_a_swallowed_disk_full_error_leaves_the_workflow_resumable(
    tmp_path: Path, pause: str
) -> None:
    reason = _can_mount_tmpfs()
    if reason is not None:
        pytest.skip(reason)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "flow.py").write_text(textwrap.dedent(FLOW))
    effects = tmp_path / "effects.log"
    py = sys.executable
    steps = {
        "run": RUN,
        "inspect": INSPECT,
        "recover": RECOVER,
        "replay": REPLAY,
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "STORE": str(mnt / "store"),
        "EFFECTS_LOG": str(effects),
        "PAUSE": pause,
        **{f"STEP_{k.upper()}": textwrap.dedent(v) for k, v in steps.items()},
    }
    # One shell in a private mount namespace: the tmpfs exists only there. The first process
    # fills it mid-workflow; the others run once the filler is deleted.
    shell = f"""
        set -e
        mount -t tmpfs -o size=8m tmpfs {mnt}
        FILL={mnt}/filler {py} -c "$STEP_RUN" > {tmp_path}/run.json 2> {tmp_path}/run.err
        df -k {mnt} | tail -1 | awk '{{print $4}}' > {tmp_path}/free.txt
        rm {mnt}/filler
        {py} -c "$STEP_INSPECT" > {tmp_path}/inspect.json
        {py} -c "$STEP_RECOVER" > {tmp_path}/recover.json
        {py} -c "$STEP_REPLAY" "$(cut -d'"' -f4 {tmp_path}/inspect.json)" > {tmp_path}/replay.json
    """
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr + _read(tmp_path, "run.err")

    # The disk really filled up, the task swallowed the store's error, and the engine raised
    # it anyway when the task returned, leaving the workflow running (not failed).
    assert int((tmp_path / "free.txt").read_text()) == 0
    assert "swallowed StoreFullError" in _read(tmp_path, "run.err")
    run = json.loads(_read(tmp_path, "run.json"))
    assert run["raised"] == "StoreFullError", run
    inspect = json.loads(_read(tmp_path, "inspect.json"))
    assert inspect["status"] == "running"
    assert run["running"] == [inspect["id"]]

    # Nothing after the failed write was recorded: the journal is a prefix of the steps, it
    # stops before the step whose write failed (LMDB may place a step or two in pages it
    # already had), and no side effect's function ran after it.
    done = [n for n in inspect["names"] if n.startswith("effect-")]
    assert done == [f"effect-{i}" for i in range(len(done))]
    assert FILL_AT - 1 <= len(done) < STEPS - 1
    calls = Counter(int(line) for line in effects.read_text().split())
    failed_step = len(done)
    # The step whose record failed ran its function once before the failure and once on
    # resumption (at least once, as after a crash); every other step ran exactly once.
    assert calls == Counter({i: 2 if i == failed_step else 1 for i in range(STEPS)}), calls

    # Once space is freed, a new process resumes it to the end; replay agrees exactly.
    recovered = json.loads(_read(tmp_path, "recover.json"))
    assert recovered["resumed"] == [inspect["id"]]
    assert recovered["result"]["seen"] == [i * 10 for i in range(STEPS)]
    assert json.loads(_read(tmp_path, "replay.json"))["replayed"] == recovered["result"]


def _read(directory: Path, name: str) -> str:
    path = directory / name
    return path.read_text() if path.exists() else ""
