"""The `pynenc` command line, driven in subprocesses on one real store: filled by the reference
programs of examples/, a workflow killed with SIGKILL and then resumed by `pynenc recover`, a
task that failed after a retry, and tasks of a module that must never be imported."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# Tasks registered under the ids of module `noisy`, whose import prints and raises: a reading
# command on --store that imported user code would show it.
FLAKY = """
from pynenc import Pynenc

app = Pynenc()


@app.task(name="noisy.flaky", max_retries=1)
def flaky(n: int) -> int:
    raise ValueError(f"attempt failed for {n}")


@app.task(name="noisy.fine")
def fine(n: int) -> dict:
    return {"n": n, "drawn": fine.wf.random()}


if __name__ == "__main__":
    print(fine(7).invocation_id)
    try:
        flaky(3).result
    except ValueError:
        pass
"""
NOISY = 'print("NOISY WAS IMPORTED")\nraise RuntimeError("noisy must not be imported")\n'


class Store:
    """The filled store and how to run commands on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"lmdb://{root / 'store'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
        self.env["PYTHONPATH"] = str(root)
        self.env["COLUMNS"] = "250"
        self.crashed = ""

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pynenc", *args],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def ok(self, *args: str) -> str:
        proc = self.run(*args)
        assert proc.returncode == 0, f"{args}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
        assert "NOISY" not in proc.stdout + proc.stderr
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def program(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env={**self.env, "PYNENC_STORE": self.url},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(tmp_path_factory.mktemp("cli"))
    for name in ("order_processing", "parent_child", "workflow_boundaries", "stateful_workflow"):
        shutil.copy(EXAMPLES / f"{name}.py", s.root)
    for name in ("parent_child", "workflow_boundaries", "stateful_workflow"):
        done = s.program(f"{name}.py")
        assert done.returncode == 0, done.stderr
    (s.root / "flaky.py").write_text(FLAKY)
    assert s.program("flaky.py").returncode == 0
    (s.root / "noisy.py").write_text(NOISY)
    # The order workflow kills its process (SIGKILL) right after the payment is durable.
    for order in ("ORD-CLI", "ORD-TWO"):
        killed = s.program("order_processing.py", "--crash-after", "payment", "--order", order)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    running = s.json("--store", s.url, "list", "--status", "running")["invocations"]
    assert [r["task"] for r in running] == ["order_processing.process_order_workflow"] * 2
    s.crashed = running[-1]["invocation_id"]  # the older: ORD-CLI
    s.before_recovery = s.json("--store", s.url, "show", s.crashed)  # type: ignore[attr-defined]
    s.recovered = s.run(  # type: ignore[attr-defined]
        "--app", "order_processing:app", "recover", env={"PYNENC_STORE": s.url}
    )
    return s


def test_recover_resumes_the_killed_workflow_and_says_so(store: Store) -> None:
    before = store.before_recovery  # type: ignore[attr-defined]
    assert (
        before["status"] == "running"
        and before["task"] == "order_processing.process_order_workflow"
    )
    assert [e["operation"] for e in before["journal"]] == ["random", "execute_task"]
    recovered = store.recovered  # type: ignore[attr-defined]
    assert recovered.returncode == 0, recovered.stderr
    lines = recovered.stdout.splitlines()
    assert lines[-1] == "recovered 2, diverged 0, unreadable 0"
    assert lines[0] == f"recovered {store.crashed} order_processing.process_order_workflow: success"
    assert "recovering" in recovered.stderr and "2/2" in recovered.stderr  # the progress bar
    after = store.json("--store", store.url, "show", store.crashed)
    assert after["status"] == "success" and after["recoveries"] == 1
    # The journal kept what was recorded before the crash, and went on from there.
    assert after["journal"][:2] == before["journal"]
    assert after["result"]["tracking_number"].startswith("TRK-ORD-CLI-")
    assert after["arguments"] == {"args": ["ORD-CLI"], "kwargs": {}}
    # Nothing is left to recover: a second run says so, in JSON too.
    again = store.run(
        "--app", "order_processing:app", "recover", "--json", env={"PYNENC_STORE": store.url}
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"recovered": [], "diverged": [], "unreadable": []}


def test_list_is_newest_first_and_pages_through_everything(store: Store) -> None:
    everything = store.json("--store", store.url, "list", "--limit", "10000")
    rows = everything["invocations"]
    assert everything["next_before"] is None and len(rows) >= 10
    created = [r["created"] for r in rows]
    assert created == sorted(created, reverse=True)
    assert set(rows[0]) == {
        "invocation_id",
        "task",
        "status",
        "workflow_id",
        "workflow_type",
        "parent_workflow_id",
        "parent_invocation_id",
        "created",
        "started",
        "ended",
        "duration_s",
        "attempt",
    }
    paged: list[dict[str, Any]] = []
    cursor: list[str] = []
    while True:
        page = store.json("--store", store.url, "list", "--limit", "3", *cursor)
        assert len(page["invocations"]) <= 3
        paged += page["invocations"]
        if page["next_before"] is None:
            break
        cursor = ["--before", page["next_before"]]
    assert [r["invocation_id"] for r in paged] == [r["invocation_id"] for r in rows]
    # The text form: a table, and the command of the next page under it.
    text = store.ok("--store", store.url, "list", "--limit", "3")
    header, *body, footer = text.splitlines()
    assert header.split()[:3] == ["INVOCATION", "TASK", "STATUS"]
    assert [line.split()[0] for line in body] == [r["invocation_id"] for r in rows[:3]]
    assert footer == (
        f"3 shown, more: pynenc --store {store.url} list --limit 3 --before {rows[2]['invocation_id']}"
    )


def test_list_filters(store: Store) -> None:
    def ids(*args: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = store.json("--store", store.url, "list", *args)["invocations"]
        return rows

    failed = ids("--status", "failed")
    assert [r["task"] for r in failed] == ["noisy.flaky"]
    children = ids("--task", "parent_child.validate_data")
    assert children and all(r["task"] == "parent_child.validate_data" for r in children)
    assert ids("--task", "validate_data") == children  # the id's last part
    boundaries = ids("--workflow-type", "call_independent_workflow")
    assert boundaries and all(
        r["workflow_type"] == "workflow_boundaries.call_independent_workflow" for r in boundaries
    )
    workflows = ids("--workflows")
    assert workflows and all(r["invocation_id"] == r["workflow_id"] for r in workflows)
    assert ids("--since", "2999-01-01") == []
    assert len(ids("--since", "1h")) == len(ids("--limit", "10000"))


def test_list_names_the_workflow_of_each_row_child_workflows_included(store: Store) -> None:
    [parent] = store.json("--store", store.url, "list", "--task", "call_independent_workflow")[
        "invocations"
    ]
    [child] = store.json("--store", store.url, "list", "--task", "independent_workflow")[
        "invocations"
    ]
    # The child workflow is a workflow of its own (its id is its starter's), under the parent's.
    assert parent["parent_workflow_id"] is None
    assert child["workflow_id"] == child["invocation_id"] != parent["workflow_id"]
    assert child["parent_workflow_id"] == parent["workflow_id"]
    assert child["parent_invocation_id"] == parent["invocation_id"]
    text = store.ok("--store", store.url, "list", "--workflow-type", "independent_workflow")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:-1]}
    assert rows[child["invocation_id"]][-3:] == ["(child", "of", f"{parent['workflow_id']})"]
    text = store.ok("--store", store.url, "list", "--workflow-type", "call_independent_workflow")
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:-1]}
    assert rows[parent["invocation_id"]][-1] == "(root)"
    # A task inside a workflow names that workflow.
    [member] = store.json("--store", store.url, "list", "--task", "validate_data", "--limit", "1")[
        "invocations"
    ]
    text = store.ok("--store", store.url, "list", "--task", "validate_data", "--limit", "1")
    assert text.splitlines()[1].split()[-1] == member["workflow_id"] != member["invocation_id"]
    shown = store.ok("--store", store.url, "show", child["invocation_id"])
    assert re.search(rf"^parent workflow\s+{parent['workflow_id']}$", shown, re.M), shown


def test_show_decodes_everything_a_person_asks_about(store: Store) -> None:
    [flaky] = store.json("--store", store.url, "list", "--task", "noisy.flaky")["invocations"]
    shown = store.json("--store", store.url, "show", flaky["invocation_id"])
    assert shown["arguments"] == {"args": [3], "kwargs": {}}
    assert shown["status"] == "failed" and shown["result"] is None
    assert (
        shown["error"]["type"] == "ValueError"
        and shown["error"]["message"] == "attempt failed for 3"
    )
    assert "Traceback" in shown["error"]["traceback"] and "flaky.py" in shown["error"]["traceback"]
    first, second = shown["attempts"]
    assert (first["attempt"], first["status"]) == (0, "failed")
    assert (second["attempt"], second["status"]) == (1, "failed")
    for attempt in (first, second):
        assert attempt["started"] <= attempt["ended"] and ":pid=" in attempt["owner"]
        assert attempt["error"] == "ValueError: attempt failed for 3"
    assert first["ended"] <= second["started"]
    text = store.ok("--store", store.url, "show", flaky["invocation_id"])
    assert re.search(r"^status\s+failed$", text, re.M)
    assert "error: builtins.ValueError: attempt failed for 3" in text
    assert re.search(r"^ 1\s+failed\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", text, re.M), text


def test_show_gives_set_data_entries_their_key_and_value(store: Store) -> None:
    [flow] = store.json("--store", store.url, "list", "--task", "stateful_workflow")["invocations"]
    shown = store.json("--store", store.url, "show", flow["invocation_id"])
    writes = [e for e in shown["journal"] if e["operation"] == "set_data"]
    assert writes and all(e["name"] and e["value"] is not None for e in writes)
    assert {"step_3_result"} <= {e["name"] for e in writes}
    assert [e["position"] for e in shown["journal"]] == list(range(len(shown["journal"])))
    assert all(set(e) >= {"position", "operation", "name", "value"} for e in shown["journal"])
    text = store.ok("--store", store.url, "show", flow["invocation_id"])
    [row] = [line for line in text.splitlines() if "set_data" in line and "step_3_result" in line]
    assert row.split()[1:3] == ["set_data", "step_3_result"] and len(row.split()) > 3


def test_tree_nests_tasks_and_child_workflows(store: Store) -> None:
    [root] = store.json(
        "--store", store.url, "list", "--task", "call_independent_workflow", "--workflows"
    )["invocations"]
    tree = store.json("--store", store.url, "tree", root["invocation_id"])
    assert tree["invocation_id"] == root["invocation_id"] and tree["new_workflow"] is True
    [child] = tree["children"]
    assert child["new_workflow"] is True and child["workflow_id"] != tree["workflow_id"]
    assert child["status"] == "success" and child["duration_s"] >= 0
    text = store.ok("--store", store.url, "tree", root["invocation_id"])
    top, branch = text.splitlines()[:2]
    assert top.startswith("workflow workflow_boundaries.call_independent_workflow success ")
    assert top.endswith(root["invocation_id"])
    assert branch.startswith("└── workflow ") and branch.endswith(child["invocation_id"])
    assert re.search(r" success \d+(\.\d)? m?s ", branch), branch
    # Children within one workflow are nested too.
    [parent] = store.json(
        "--store", store.url, "list", "--task", "parent_workflow", "--limit", "1"
    )["invocations"]
    nested = store.json("--store", store.url, "tree", parent["invocation_id"])
    assert nested["children"] and all(not c["new_workflow"] for c in nested["children"])


def test_status_reads_the_store(store: Store) -> None:
    state = store.json("--store", store.url, "status")
    assert state["counts"]["failed"] == 1 and state["queued"] == 0 and state["running"] == []
    text = store.ok("--store", store.url, "status")
    assert text.splitlines()[:4] == [
        f"store {store.url}",
        f"invocations: failed 1, success {state['counts']['success']}",
        "queued: 0",
        "running: none",
    ]


def test_reading_with_store_never_imports_user_code(store: Store) -> None:
    [fine] = store.json("--store", store.url, "list", "--task", "noisy.fine")["invocations"]
    for args in (
        ["list"],
        ["show", fine["invocation_id"]],
        ["tree", fine["invocation_id"]],
        ["status"],
    ):
        for extra in ([], ["--json"]):
            proc = store.run("--store", store.url, *args, *extra)
            assert proc.returncode == 0, proc.stderr
            assert "NOISY" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    # PYNENC_STORE alone does as well as --store.
    proc = store.run("show", fine["invocation_id"], "--json", env={"PYNENC_STORE": store.url})
    assert proc.returncode == 0 and json.loads(proc.stdout)["result"]["n"] == 7
    # With --app the app's module is imported, as asked: here it raises, which is reported.
    proc = store.run("--app", "noisy:app", "status")
    assert proc.returncode == 1 and "NOISY WAS IMPORTED" in proc.stdout


def test_global_options_go_before_or_after_the_command(store: Store) -> None:
    env = {"PYNENC_STORE": store.url}
    [fine] = store.json("--store", store.url, "list", "--task", "noisy.fine")["invocations"]
    forms = [
        ["--store", store.url, "--json", "show", fine["invocation_id"]],
        ["show", fine["invocation_id"], "--store", store.url, "--json"],
        ["--json", "show", "--store", store.url, fine["invocation_id"]],
    ]
    outputs = [store.run(*form) for form in forms]
    assert all(p.returncode == 0 for p in outputs), [p.stderr for p in outputs]
    assert len({p.stdout for p in outputs}) == 1
    # --app after the command (once refused as a missing "required" option).
    after = store.run("status", "--app", "order_processing:app", "--json", env=env)
    before = store.run("--app", "order_processing:app", "--json", "status", env=env)
    assert after.returncode == before.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert store.run("recover", "--app", "order_processing:app", env=env).returncode == 0


def test_replay_reports_what_matched_and_what_diverged(store: Store) -> None:
    env = {"PYNENC_STORE": store.url}
    one = store.run(
        "--app", "parent_child:app", "replay", "--all", "--task", "parent_workflow", env=env
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout.splitlines()[-1] == "replayed 2, diverged 0, errors 0"
    assert "replaying" in one.stderr  # the progress bar, for more than one
    [fine] = store.json("--store", store.url, "list", "--task", "noisy.fine")["invocations"]
    single = store.run("--app", "flaky:app", "replay", fine["invocation_id"], "--json", env=env)
    assert single.returncode == 0, single.stderr
    outcome = json.loads(single.stdout)
    assert outcome["diverged"] == [] and outcome["errors"] == []
    assert outcome["replayed"] == [
        {"invocation_id": fine["invocation_id"], "task": "noisy.fine", "status": "success"}
    ]
    assert "replaying" not in single.stderr
    # The same task now draws a uuid where it drew a random number: it diverges.
    (store.root / "changed.py").write_text(
        FLAKY.replace('"drawn": fine.wf.random()', '"drawn": fine.wf.uuid()')
    )
    changed = store.run("--app", "changed:app", "replay", fine["invocation_id"], env=env)
    assert changed.returncode == 1
    assert changed.stdout.splitlines()[-1] == "replayed 0, diverged 1, errors 0"
    assert f"diverged {fine['invocation_id']}: " in changed.stdout
    # It now raises where it returned: an error line, not a traceback.
    (store.root / "broken.py").write_text(
        FLAKY.replace('return {"n": n, "drawn": fine.wf.random()}', "fine.wf.random()\n    1 / 0")
    )
    broken = store.run("--app", "broken:app", "replay", fine["invocation_id"], env=env)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr
    assert broken.stdout.splitlines()[-1] == "replayed 0, diverged 0, errors 1"
    assert (
        f"cannot replay {fine['invocation_id']}: it returned when it ran, but the code now "
        "raises ZeroDivisionError" in broken.stdout
    )


def test_exit_codes_and_messages(store: Store, tmp_path: Path) -> None:
    missing = "00112233-4455-6677-8899-aabbccddeeff"
    proc = store.run("--store", store.url, "show", missing)
    assert (
        proc.returncode == 1 and proc.stderr == f"pynenc: no invocation {missing} in {store.url}\n"
    )
    proc = store.run("--store", store.url, "tree", missing)
    assert proc.returncode == 1 and f"no workflow {missing}" in proc.stderr
    proc = store.run("--store", f"lmdb://{tmp_path / 'none'}", "list")
    assert proc.returncode == 1 and proc.stderr.startswith("pynenc: no store at ")
    assert not (tmp_path / "none").exists()
    proc = store.run("--store", store.url, "list", "--since", "yesterday")
    assert proc.returncode == 1 and "--since 'yesterday' is neither" in proc.stderr
    for usage in (
        ["--store", store.url, "worker"],
        ["--store", store.url, "recover"],
        ["--store", store.url, "--app", "order_processing:app", "list"],
        ["--store", store.url, "--include", "noisy", "list"],
        ["--store", store.url, "list", "--limit", "0"],
        ["--store", store.url, "list", "--status", "zombie"],
        ["nosuchcommand"],
    ):
        proc = store.run(*usage)
        assert proc.returncode == 2, (usage, proc.stderr)
        assert proc.stderr.strip() and "Traceback" not in proc.stderr
    proc = store.run("--store", store.url, "worker")
    assert "pynenc worker runs your tasks, so it needs --app MODULE:ATTR" in proc.stderr


@pytest.mark.parametrize(
    "command",
    [
        "list",
        "show",
        "tree",
        "timeline",
        "status",
        "worker",
        "recover",
        "replay",
        "check",
        "export",
        "prune",
    ],
)
def test_every_command_has_complete_help(store: Store, command: str) -> None:
    text = store.ok(command, "--help")
    options = re.findall(r"^  (--[a-z-]+)", text, re.M)
    assert {"--app", "--store", "--include", "--json", "--log-level", "--log-format"} <= set(
        options
    )
    # Every option's help says its default.
    blocks = re.split(r"\n  (?=-)", text.split("options:", 1)[1])
    for block in blocks[1:]:
        if block.startswith("-h"):
            continue
        assert "default" in block, block
    assert "Exit codes: 0 done, 1 failed" in " ".join(text.split())
    top = store.ok("--help")
    assert f"    {command} " in top


def test_recover_leaves_a_diverged_workflow_and_exits_1(tmp_path: Path) -> None:
    s = Store(tmp_path)
    shutil.copy(EXAMPLES / "order_processing.py", tmp_path)
    killed = s.program("order_processing.py", "--crash-after", "payment", "--order", "ORD-DIV")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The code changed since: the tracking number now draws a uuid where it drew a number.
    source = tmp_path / "order_processing.py"
    source.write_text(
        source.read_text().replace(
            "int(process_order_workflow.wf.random() * 100000)",
            "len(process_order_workflow.wf.uuid())",
        )
    )
    proc = s.run("--app", "order_processing:app", "recover", env={"PYNENC_STORE": s.url})
    assert proc.returncode == 1, proc.stderr
    *left, summary = proc.stdout.splitlines()
    assert summary == "recovered 0, diverged 1, unreadable 0"
    assert left[0].startswith("left as it was: NonDeterminismError: ")
    assert "position 0" in left[0], left
    running = s.json("--store", s.url, "list", "--status", "running")["invocations"]
    assert [r["task"] for r in running] == ["order_processing.process_order_workflow"]
