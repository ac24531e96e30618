"""Side effects are all or nothing, and a task's exit never hangs or kills the engine.

Every case runs its workflow in fresh processes over one store (tests/programs/edge_effects.py):
the first run, a run SIGKILLed right after its side effects, the recovery that completes it,
and a replay of its own journal, which must not diverge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT

PROGRAMS = ROOT / "tests" / "programs"

PRELUDE = """
import json, sys
import edge_effects as m
from pynenc import InvocationStatus
def report(**kw):
    print(json.dumps(kw, default=str), flush=True)
"""

CALL = """
args = json.loads(sys.argv[2])
try:
    inv = getattr(m, sys.argv[1])(*args)
    report(id=inv.invocation_id, status=inv.status.value)
except BaseException as exc:
    [inv] = m.app.list_invocations(task_id=sys.argv[1])
    report(id=inv.invocation_id, status=inv.status.value, raised=type(exc).__name__)
    raise
"""

RECOVER = """
resumed = m.app.recover()
out = []
for inv in resumed:
    try:
        out.append({"id": inv.invocation_id, "status": inv.status.value, "result": inv.result})
    except BaseException as exc:
        out.append({"id": inv.invocation_id, "status": inv.status.value,
                    "error": type(exc).__name__, "message": str(exc)})
report(resumed=out)
"""

REPLAY = """
from pynenc import codec
from pynenc._core import journal_id
inv = m.app.get_invocation(sys.argv[1])
# The errors side effects recorded, as stored (type and message).
ops = m.app.store.journal_ops(journal_id(inv._record.invocation_id, inv.attempt))
errors = [codec.decode(op[2]) for op in ops if op[0] == "side_effect" and op[3]]
report(replayed=m.app.replay(sys.argv[1]), result=inv.result,
       journal=[[e.operation, e.name] for e in m.app.journal(sys.argv[1])],
       errors=[[e["type"], e["message"]] for e in errors])
"""

STATE = """
from pynenc.runner.records import INVOCATIONS
from pynenc.invocation import InvocationRecord
inv = m.app.get_invocation(sys.argv[1])
record = InvocationRecord.decode(m.app.store.get(INVOCATIONS, inv._record.invocation_id))
report(status=inv.status.value, recoveries=record.recoveries,
       journal=[[e.operation, e.name] for e in m.app.journal(sys.argv[1])])
"""


class Edge:
    """Runs the program's scripts in fresh processes over one store."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "calls.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(PROGRAMS), os.environ.get("PYTHONPATH", "")]),
            "PYNENC_STORE": f"lmdb://{tmp_path / 'store'}",
            "EDGE_LOG": str(self.log),
        }

    def run(self, script: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines or proc.returncode != 0, proc.stderr
        return proc.returncode, json.loads(lines[-1]) if lines else {}

    def call(self, task: str, *args: Any, **env: str) -> tuple[int, dict[str, Any]]:
        return self.run(CALL, task, json.dumps(list(args)), **env)

    def recover(self, **env: str) -> tuple[int, dict[str, Any]]:
        return self.run(RECOVER, **env)

    def replay(self, invocation_id: str) -> dict[str, Any]:
        code, out = self.run(REPLAY, invocation_id)
        assert code == 0, out
        return out

    def state(self, invocation_id: str) -> dict[str, Any]:
        code, out = self.run(STATE, invocation_id)
        assert code == 0, out
        return out

    def calls(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def recovered(self, **env: str) -> dict[str, Any]:
        code, out = self.recover(**env)
        assert code == 0, out
        [resumed] = out["resumed"]
        return dict(resumed)

    def the_invocation(self, task: str) -> str:
        listed = f"m.app.list_invocations(task_id={task!r})"
        code, out = self.run(f"report(ids=[i.invocation_id for i in {listed}])")
        assert code == 0
        [invocation_id] = out["ids"]
        return str(invocation_id)


def test_an_unprintable_exception_is_recorded_with_a_placeholder(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    code, first = edge.call("unprintable")
    assert code == 0, first
    assert first["status"] == "success"
    replay = edge.replay(first["id"])
    assert replay["replayed"] == replay["result"]
    # Raised, recorded and replayed as its own type, with its arguments.
    assert replay["result"]["caught"] == {"type": "Unprintable", "args": ["boom", 42]}
    assert replay["journal"] == [["side_effect", "fail"], ["random", None]]
    assert replay["errors"] == [["Unprintable", "<unprintable Unprintable>"]]
    assert edge.calls() == ["unprintable"]

    # Killed right after the side effect was recorded: recovery completes from the journal.
    code, _ = edge.call("unprintable", KILL="1")
    assert code == -signal.SIGKILL
    resumed = edge.recovered()
    assert resumed["status"] == "success"
    assert resumed["result"]["caught"] == {"type": "Unprintable", "args": ["boom", 42]}
    assert edge.replay(resumed["id"])["replayed"] == resumed["result"]
    assert edge.calls() == ["unprintable", "unprintable"]  # once per invocation


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt"])
def test_an_interrupted_side_effect_is_not_recorded_and_resumes(tmp_path: Path, kind: str) -> None:
    edge = Edge(tmp_path)
    # The interruption inside the side effect's function is swallowed by the task; the
    # engine refuses the task's next operation and raises it again: the process stops.
    code, first = edge.call("interrupted", kind)
    assert code != 0
    assert first["raised"] == kind
    assert first["status"] == "running"
    state = edge.state(first["id"])
    assert state["journal"] == []  # neither the side effect nor the data write after it
    assert edge.calls() == ["interrupted"]

    # Recovery calls the function again (as after a crash), and is killed once it is
    # recorded; the next recovery completes from the journal without calling it again.
    code, _ = edge.recover(KILL="1")
    assert code == -signal.SIGKILL
    resumed = edge.recovered()
    assert resumed["result"]["value"] == "done"
    assert edge.calls() == ["interrupted", "interrupted"]
    replay = edge.replay(first["id"])
    assert replay["replayed"] == replay["result"] == resumed["result"]
    assert replay["journal"] == [
        ["side_effect", "once"],
        ["set_data", "after"],
        ["random", None],
    ]


def test_a_nested_operation_is_refused_and_that_refusal_is_the_outcome(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    code, _ = edge.call("nested", KILL="1")
    assert code == -signal.SIGKILL
    resumed = edge.recovered()
    assert resumed["status"] == "success"
    expected = [["InvalidArgumentError", True], ["InvalidArgumentError", True]]
    assert resumed["result"]["seen"] == expected
    replay = edge.replay(resumed["id"])
    assert replay["replayed"] == resumed["result"]
    # The outer side effects are recorded, in order, never the refused inner operations.
    assert replay["journal"] == [
        ["side_effect", "outer"],
        ["side_effect", "swallowing"],
        ["random", None],
    ]
    [outer, swallowing] = replay["errors"]
    assert outer[0] == swallowing[0] == "InvalidArgumentError"
    assert 'wf.side_effect() was called inside the function of side effect "outer"' in outer[1]
    assert "side effects cannot nest" in outer[1]
    assert 'wf.random() was called inside the function of side effect "swallowing"' in swallowing[1]
    # The functions ran once each (never again on recovery); the inner one never did.
    assert edge.calls() == ["nested-outer", "nested-swallowing"]


def test_sys_exit_in_a_task_fails_it_and_recover_goes_on(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    # Inline: the task's own SystemExit is its failure; the calling program goes on.
    code, first = edge.call("exits", 5)
    assert code == 0, first
    assert first["status"] == "failed"

    # Killed before its exit: recover() resumes it, the exit fails it, and the recovering
    # process lives on; the resumption is counted once (it is not parked).
    code, _ = edge.call("exits", 6, KILL="1")
    assert code == -signal.SIGKILL
    resumed = edge.recovered()
    assert resumed["status"] == "failed"
    assert "SystemExit" in resumed["error"] + resumed["message"]
    state = edge.state(resumed["id"])
    assert state["status"] == "failed" and state["recoveries"] == 1
    code, again = edge.recover()
    assert code == 0 and again["resumed"] == []


def test_ctrl_c_during_recover_stops_it_without_counting_a_death(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    code, _ = edge.call("ctrl_c", KILL="1")
    assert code == -signal.SIGKILL
    invocation_id = edge.the_invocation("ctrl_c")
    for _ in range(3):
        # An interrupted recovery: the invocation is given back, still running, and the
        # resumption it started is not counted as a death of its process.
        code, _ = edge.recover(INTERRUPT="1")
        assert code != 0
        state = edge.state(invocation_id)
        assert state["status"] == "running" and state["recoveries"] == 0
    resumed = edge.recovered()
    assert resumed["result"] == "finished"
    assert edge.state(invocation_id)["recoveries"] == 1
    assert edge.calls() == ["ctrl_c"]


QUEUED = """
import os, sys
from pynenc import Pynenc

app = Pynenc("exits", store=os.environ["PYNENC_STORE"], execution="queued", sync=False,
             lease_seconds=float(os.environ["LEASE"]))


@app.task
def quit_now(kind: str) -> None:
    if kind == "SystemExit":
        sys.exit(3)
    raise KeyboardInterrupt


@app.task
def fine() -> str:
    return "fine"
"""

WAIT = """
import json, sys, time
import exiting
lease = float(sys.argv[1])
out = []
for kind in ("SystemExit", "KeyboardInterrupt"):
    start = time.monotonic()
    inv = exiting.quit_now(kind)
    try:
        inv.wait(timeout=lease)
        inv.result
        out.append({"kind": kind, "error": None})
    except BaseException as exc:
        out.append({"kind": kind, "error": type(exc).__name__, "message": str(exc),
                    "status": inv.status.value, "seconds": time.monotonic() - start})
later = exiting.fine()
out.append({"fine": later.wait(timeout=lease).result})
print(json.dumps({"waits": out, "leases": len(exiting.app.store.leases())}))
"""


def test_sys_exit_in_a_queued_task_fails_it_within_the_lease(tmp_path: Path) -> None:
    lease = 3.0
    (tmp_path / "exiting.py").write_text(textwrap.dedent(QUEUED))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "PYNENC_STORE": f"lmdb://{tmp_path / 'store'}",
        "LEASE": str(lease),
    }
    script = Path(sys.executable).with_name("pynenc")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pynenc"]
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [*command, "--app", "exiting:app", "worker", "--grace", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(WAIT), str(lease)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.splitlines()[-1])
        assert worker.poll() is None, "the worker must survive its task's exit"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    exited, interrupted, fine = out["waits"]
    for seen, kind in ((exited, "SystemExit"), (interrupted, "KeyboardInterrupt")):
        # A failure, seen well within the lease time; not a hang, not a timeout.
        assert seen["error"] not in (None, "TimeoutError"), seen
        assert kind in seen["error"] + seen["message"], seen
        assert seen["status"] == "failed"
        assert seen["seconds"] < lease
    # The worker went on serving, and holds no lease on work that is not running.
    assert fine == {"fine": "fine"}
    assert out["leases"] == 0
