"""`pynenc export`: a workflow's history as a journal file, replayed by `pynenc.testing.replay`
inside a pytest run of its own, and its audit trail as JSON; driven through the command line
on a real store."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FLOWS = """
from pynenc import Pynenc

app = Pynenc("hist", sync=False)


@app.task(name="hist.flaky", max_retries=1)
def flaky(n: int) -> int:
    if flaky.wf.attempt == 0:
        flaky.wf.random()
        raise TimeoutError("the first attempt times out")
    return n + 1


@app.task(name="hist.ship", force_new_workflow=True)
def ship(n: int) -> str:
    return f"shipped-{n}-{ship.wf.uuid()[:8]}"


@app.task(name="hist.order")
def order(n: int) -> dict:
    order.wf.set_data("stage", "paying")
    paid = order.wf.execute_task(flaky, n).result
    label = ship(n).result
    order.wf.set_data("stage", "shipped")
    return {"paid": paid, "label": label, "at": order.wf.utc_now().isoformat()}
"""
FIRST = '    order.wf.set_data("stage", "paying")'
FIRST_LINE = FLOWS.splitlines().index(FIRST) + 1
# The change: a clock reading before anything else, on the line of the old first operation.
CHANGED = FLOWS.replace(FIRST, "    started = order.wf.utc_now()\n" + FIRST)

RUN = """
import json, sys
from hist_flows import order
inv = order(int(sys.argv[1]))
print(json.dumps({"id": inv.invocation_id, "result": inv.result}))
"""

# A user's own regression test, run by pytest in a process of its own.
USER_TEST = """
import json
from pathlib import Path

from hist_flows import app
from pynenc.testing import replay


def test_the_recorded_order_still_replays():
    expected = json.loads(Path("expected.json").read_text())
    replayed = replay("history.json.gz", app)
    assert replayed.workflow_id == expected["id"]
    assert replayed.invocations == 3 and replayed.unfinished == 0
    assert replayed.result == expected["result"]
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"lmdb://{root / 'store'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
        self.env.update(PYTHONPATH=str(root), PYNENC_STORE=self.url, PYTHONDONTWRITEBYTECODE="1")
        (root / "hist_flows.py").write_text(FLOWS)

    def run(
        self, *argv: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def pynenc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "pynenc", *args)

    def order(self, n: int) -> dict[str, Any]:
        proc = self.run(sys.executable, "-c", RUN, str(n))
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_an_exported_history_is_a_regression_test(project: Project) -> None:
    run = project.order(5)
    (project.root / "expected.json").write_text(json.dumps(run))
    proc = project.pynenc(
        "--store", project.url, "export", run["id"], "--journal", "history.json.gz"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote 3 invocation(s) of workflow {run['id']} to history.json.gz\n"
    document = json.loads(gzip.decompress((project.root / "history.json.gz").read_bytes()))
    assert document["format"] == "pynenc-replay journal export" and document["version"] == 1
    assert [i["task"] for i in document["invocations"]] == ["hist.order", "hist.flaky", "hist.ship"]
    flaky = document["invocations"][1]
    assert [len(j["entries"]) for j in flaky["journals"]] == [1, 0]  # both attempts' journals
    assert {d["key"] for d in document["data"]} == {"stage"}

    (project.root / "test_history.py").write_text(USER_TEST)
    # The app's own store is never opened by the replay: point it where nothing may appear.
    away = {"PYNENC_STORE": f"lmdb://{project.root / 'never'}"}
    pytest_run = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_history.py")
    passed = project.run(*pytest_run, env=away)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 passed" in passed.stdout

    (project.root / "hist_flows.py").write_text(CHANGED)
    failed = project.run(*pytest_run, env=away)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    out = failed.stdout
    assert "NonDeterminismError: non-deterministic replay in workflow " + run["id"] in out
    assert "position 0 (0 entries matched before it)" in out
    assert 'the journal recorded set_data("stage", value digest' in out
    assert "but the code now asks for utc_now()" in out
    # Both source lines, side by side: the recorded one and the one now.
    assert f"hist_flows.py:{FIRST_LINE}  " in out and f"hist_flows.py:{FIRST_LINE}\n" in out
    assert not (project.root / "never").exists()


def test_export_json_is_the_audit_trail(project: Project) -> None:
    run = project.order(2)
    proc = project.pynenc("--store", project.url, "export", run["id"])  # JSON by default
    assert proc.returncode == 0, proc.stderr
    trail = json.loads(proc.stdout)
    again = project.pynenc("--json", "export", run["id"], "--store", project.url)
    assert json.loads(again.stdout)["invocations"] == trail["invocations"]
    assert trail["format"] == "pynenc-replay audit trail" and trail["version"] == 1
    assert trail["workflow_id"] == trail["root_invocation_id"] == run["id"]
    assert trail["workflow_type"] == "hist.order" and trail["parent_workflow_id"] is None
    order, flaky, ship = trail["invocations"]
    assert order["result"] == run["result"] and order["status"] == "success"
    assert order["arguments"] == {"args": [2], "kwargs": {}}
    assert [e["operation"] for e in order["journal"]] == [
        "set_data",
        "execute_task",
        "execute_task",
        "set_data",
        "utc_now",
    ]
    assert order["journal"][0]["site"]["line"] == FIRST_LINE
    assert order["children"] == [
        {"invocation_id": flaky["invocation_id"], "task": "hist.flaky", "status": "success"},
        {"invocation_id": ship["invocation_id"], "task": "hist.ship", "status": "success"},
    ]
    # Every attempt, the failed one with its own journal.
    first, latest = flaky["attempts"]
    assert first["status"] == "failed" and "TimeoutError" in first["error"]
    assert [e["operation"] for e in first["journal"]] == ["random"]
    assert latest["status"] == "success" and flaky["journal"] == [] and flaky["result"] == 3
    # The child workflow is there with its own identity.
    assert ship["workflow_id"] == ship["invocation_id"] != run["id"]
    assert ship["result"] == run["result"]["label"]
    assert [(w["key"], w["position"]) for w in trail["data_writes"]] == [("stage", 0), ("stage", 3)]
    assert all(w["invocation_id"] == run["id"] and w["digest"] for w in trail["data_writes"])
    assert trail["data"] == [{"workflow_id": run["id"], "key": "stage", "value": "shipped"}]

    # Both outputs at once, to files; a message for each on standard output.
    proc = project.pynenc(
        "--store", project.url, "export", run["id"], "--json", "trail.json", "--journal", "h.json"
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.splitlines()[-1]
        == f"wrote the audit trail of workflow {run['id']} to trail.json"
    )
    written = json.loads((project.root / "trail.json").read_text())
    assert written["invocations"] == trail["invocations"]
    assert json.loads((project.root / "h.json").read_text())["workflow_id"] == run["id"]
    # The journal file with the audit trail on standard output: the message goes to stderr.
    proc = project.pynenc(
        "--store", project.url, "export", run["id"], "--journal", "h2.json", "--json"
    )
    assert json.loads(proc.stdout)["workflow_id"] == run["id"]
    assert proc.stderr.startswith("wrote 3 invocation(s)")


def test_export_failures_write_nothing(project: Project) -> None:
    run = project.order(1)
    missing = "00112233-4455-6677-8899-aabbccddeeff"
    proc = project.pynenc("--store", project.url, "export", missing, "--journal", "x.json")
    assert proc.returncode == 1 and f"no workflow {missing}" in proc.stderr
    proc = project.pynenc("--store", project.url, "export", run["id"], "--journal", "no/x.json")
    assert proc.returncode == 1 and "no directory no" in proc.stderr
    proc = project.pynenc("--store", project.url, "export", run["id"], "--json", "no/x.json")
    assert proc.returncode == 1 and "no directory no" in proc.stderr
    proc = project.pynenc("--store", project.url, "export", "not-an-id", "--json", "y.json")
    assert proc.returncode == 1 and "is not an invocation or workflow id" in proc.stderr
    proc = project.pynenc("--store", project.url, "export")
    assert proc.returncode == 2
    assert sorted(p.name for p in project.root.iterdir()) == ["hist_flows.py", "store"]
