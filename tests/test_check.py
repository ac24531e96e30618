"""`pynenc check`, the deploy gate, driven through its command line on a real store: 50 recorded
runs, 3 of them made divergent by a code change, runs killed mid-way and runs never started;
the store is compared byte for byte, and read back record by record, before and after."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOWS = """
from pynenc import Pynenc

app = Pynenc("gate", sync=False)


@app.task(name="gate_flows.charge")
def charge(n: int) -> int:
    return n * 3


@app.task(name="gate_flows.order")
def order(n: int) -> dict:
    token = order.wf.random()
    paid = order.wf.execute_task(charge, n).result
    if n % 20 == 7:
        order.wf.set_data("note", f"special {n}")  # SPECIAL
    order.wf.set_data("paid", paid)
    return {"paid": paid, "token": token}
"""
SPECIAL = '        order.wf.set_data("note", f"special {n}")  # SPECIAL'
# The change: the special branch now records a side effect, one line further down.
CHANGED = FLOWS.replace(
    SPECIAL, '        # audited since v2\n        order.wf.side_effect("audit", lambda: n)'
)
SPECIAL_LINE = FLOWS.splitlines().index(SPECIAL) + 1

FILL = """
import json, sys
from gate_flows import order
print(json.dumps({n: order(n).invocation_id for n in range(int(sys.argv[1]))}))
"""

# Every row of the store read back through its own API: records, every attempt's journal with
# call sites, workflow data, leases and the queue.
DUMP = """
import hashlib, json, sys
from pynenc._core import journal_id
from pynenc.invocation import InvocationRecord
from pynenc.store import LmdbStore, StoreOptions
store = LmdbStore(sys.argv[1], StoreOptions(sync=False))
rows = []
for key, value in store.scan("invocations", b""):
    record = InvocationRecord.decode(value, key)
    rows.append(["record", key.hex(), value.hex()])
    for attempt in range(record.attempt + 1):
        journal = journal_id(key, attempt)
        rows.append(["journal", journal.hex(), repr(store.journal_entries(journal)),
                     repr(store.journal_sites(journal))])
for key, value in store.scan("data", b""):
    rows.append(["data", key.hex(), value.hex()])
rows.append(["leases", repr(store.leases())])
rows.append(["queued", repr(store.queued())])
print(json.dumps({"rows": len(rows), "sha": hashlib.sha256(repr(rows).encode()).hexdigest()}))
"""


class Gate:
    """A project directory with the flows module, its store, and the `pynenc` command."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store"
        self.url = f"lmdb://{self.store}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
        self.env.update(PYTHONPATH=str(root), PYNENC_STORE=self.url, PYTHONDONTWRITEBYTECODE="1")
        self.env["COLUMNS"] = "250"
        self.code(FLOWS)

    def code(self, source: str) -> None:
        (self.root / "gate_flows.py").write_text(source)

    def python(
        self, script: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def fill(self, n: int) -> dict[int, str]:
        proc = self.python(FILL, str(n))
        assert proc.returncode == 0, proc.stderr
        return {int(k): v for k, v in json.loads(proc.stdout).items()}

    def pynenc(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pynenc", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def check(self, *args: str) -> tuple[int, Any]:
        proc = self.pynenc("--app", "gate_flows:app", "check", "--json", *args)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def snapshot(self) -> tuple[str, str]:
        """The data file's bytes (hashed) and every row read back."""
        data = hashlib.sha256((self.store / "data.mdb").read_bytes()).hexdigest()
        proc = self.python(DUMP, str(self.store))
        assert proc.returncode == 0, proc.stderr
        return data, proc.stdout


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(tmp_path)


def test_check_names_exactly_the_divergent_runs_and_writes_nothing(gate: Gate) -> None:
    runs = gate.fill(50)
    special = {runs[n] for n in (7, 27, 47)}
    before = gate.snapshot()
    gate.code(CHANGED)

    code, report = gate.check("--workflows", "all", "--jobs", "2")
    assert code == 1
    assert report["summary"] == {
        "workflows": 50,
        "invocations": 100,
        "matched": 47,
        "diverged": 3,
        "errors": 0,
        "processes": 2,
    }
    assert {d["workflow_id"] for d in report["diverged"]} == special
    assert len(report["diverged"]) == 3 and report["errors"] == []
    for item in report["diverged"]:
        assert item["invocation_id"] == item["workflow_id"] and item["task"] == "gate_flows.order"
        assert item["position"] == 2 and item["matched"] == 2 and item["prefix"] is False
        recorded, requested = item["recorded"], item["requested"]
        assert (recorded["kind"], recorded["name"]) == ("set_data", "note")
        assert (requested["kind"], requested["name"]) == ("side_effect", "audit")
        assert Path(recorded["file"]).name == Path(requested["file"]).name == "gate_flows.py"
        assert (recorded["line"], requested["line"]) == (SPECIAL_LINE, SPECIAL_LINE + 1)
        assert f"gate_flows.py:{SPECIAL_LINE} " in item["report"]
        assert f"gate_flows.py:{SPECIAL_LINE + 1}" in item["report"]

    # The same in text, in three processes and in this one alone.
    for jobs in ("3", "1"):
        proc = gate.pynenc("--app", "gate_flows:app", "check", "--workflows", "all", "--jobs", jobs)
        assert proc.returncode == 1, proc.stderr
        named = set(re.findall(r"^diverged: workflow (\S+) ", proc.stdout, re.M))
        assert named == special
        assert proc.stdout.count(f"gate_flows.py:{SPECIAL_LINE}  ") == 3  # the recorded side
        assert proc.stdout.count(f"gate_flows.py:{SPECIAL_LINE + 1}\n") == 3  # the code now
        assert proc.stdout.splitlines()[-1] == (
            "checked 50 workflows (100 invocations) against gate_flows:app: 47 matched, "
            "3 diverged, 0 errors"
        )
        assert "checking" in proc.stderr  # the progress bar
    assert gate.snapshot() == before

    gate.code(FLOWS)
    code, report = gate.check("--workflows", "all")
    assert code == 0 and report["diverged"] == [] and report["errors"] == []
    assert report["summary"]["matched"] == 50
    assert report["summary"]["processes"] == 1  # too little to be worth starting processes
    assert gate.snapshot() == before


def test_unfinished_runs_are_checked_up_to_where_their_journal_ends(gate: Gate) -> None:
    gate.fill(3)  # finished: not "running"
    killed = gate.python(
        FILL.replace("range(int(sys.argv[1]))", "[7]"), env={"PYNENC_CRASH_AFTER": "charge"}
    )
    assert killed.returncode == -9, killed.stderr  # SIGKILL after the charge, mid-workflow
    queued = gate.python(
        FILL.replace("range(int(sys.argv[1]))", "[8]"), env={"PYNENC_EXECUTION": "queued"}
    )
    assert queued.returncode == 0, queued.stderr  # enqueued, never started: no journal
    running = gate.pynenc("--store", gate.url, "list", "--status", "running", "--json")
    [crashed] = json.loads(running.stdout)["invocations"]
    before = gate.snapshot()

    # Its journal ends at the charge: a change past it is where a recovery would go on.
    gate.code(CHANGED)
    code, report = gate.check()
    assert code == 0, report
    assert report["summary"] == {
        "workflows": 2,
        "invocations": 3,
        "matched": 2,
        "diverged": 0,
        "errors": 0,
        "processes": 1,
    }
    assert report["selection"]["workflows"] == "running"

    # A change inside what it recorded diverges, named as a prefix.
    gate.code(FLOWS.replace("token = order.wf.random()", "token = order.wf.uuid()"))
    code, report = gate.check()
    assert code == 1
    [item] = report["diverged"]
    assert item["workflow_id"] == crashed["invocation_id"] and item["prefix"] is True
    assert item["workflow_status"] == "running" and item["entries"] == 2
    assert item["position"] == 0 and item["requested"]["kind"] == "uuid"
    proc = gate.pynenc("--app", "gate_flows:app", "check")
    assert "its recorded prefix of 2 entries" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("checked 2 running workflows (3 invocations)")
    # Nothing was resumed, claimed or written: the queued run is still queued, unleased.
    assert gate.snapshot() == before


def test_selection_by_age_and_an_app_on_another_store(gate: Gate) -> None:
    gate.fill(4)
    code, report = gate.check("--workflows", "recent")
    assert code == 0 and report["summary"]["workflows"] == 4
    assert report["selection"]["since"] is not None  # the last 24 hours
    code, report = gate.check("--workflows", "recent", "--since", "2099-01-01")
    assert code == 0 and report["summary"]["workflows"] == 0
    code, report = gate.check("--workflows", "all", "--since", "1h")
    assert report["summary"]["workflows"] == 4
    code, report = gate.check()  # running: none
    assert code == 0 and report["summary"] == {
        "workflows": 0,
        "invocations": 0,
        "matched": 0,
        "diverged": 0,
        "errors": 0,
        "processes": 1,
    }
    # --store names the store for the app's code (its own store is elsewhere).
    proc = gate.pynenc(
        "check",
        "--app",
        "gate_flows:app",
        "--store",
        gate.url,
        "--workflows",
        "all",
        env={"PYNENC_STORE": f"lmdb://{gate.root / 'elsewhere'}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == (
        "checked 4 workflows (8 invocations) against gate_flows:app: 4 matched, 0 diverged, "
        "0 errors"
    )
    assert not (gate.root / "elsewhere").exists()


def test_a_task_the_code_no_longer_has_cannot_be_checked(gate: Gate) -> None:
    gate.fill(2)
    gate.code(FLOWS.replace('name="gate_flows.order"', 'name="gate_flows.order_v2"'))
    code, report = gate.check("--workflows", "all")
    assert code == 1 and report["summary"]["errors"] == 2 and report["diverged"] == []
    assert all("gate_flows.order" in e["error"] for e in report["errors"])
    proc = gate.pynenc("--app", "gate_flows:app", "check", "--workflows", "all")
    assert proc.returncode == 1
    assert proc.stdout.count("cannot check: workflow ") == 2


def test_usage_errors_exit_2_and_write_nothing(gate: Gate, tmp_path: Path) -> None:
    gate.fill(1)
    before = gate.snapshot()
    nowhere = f"lmdb://{tmp_path / 'none'}"
    for args in (
        ["--app", "gate_flows:app", "check", "--jobs", "0"],
        ["--app", "gate_flows:app", "check", "--jobs", "many"],
        ["--app", "gate_flows:app", "check", "--workflows", "some"],
        ["--app", "gate_flows:app", "check", "--since", "yesterday"],
        ["--store", gate.url, "check"],
        ["--app", "no_such_module:app", "check"],
        ["--app", "gate_flows:nothing", "check"],
        ["--app", "gate_flows:app", "--store", nowhere, "check"],
    ):
        proc = gate.pynenc(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip() and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "none").exists()
    assert "needs --app" in gate.pynenc("--store", gate.url, "check").stderr
    assert gate.snapshot() == before


def test_without_jobs_processes_start_only_when_worth_it(gate: Gate) -> None:
    gate.fill(40)
    # The same code, now slow between its operations (50 ms a run): too slow for one process.
    gate.code(
        FLOWS.replace(
            "    token = order.wf.random()\n",
            "    token = order.wf.random()\n    __import__('time').sleep(0.05)\n",
        )
    )
    code, report = gate.check("--workflows", "all")
    assert code == 0 and report["summary"]["matched"] == 40
    assert report["summary"]["processes"] == min(4, os.cpu_count() or 1)
