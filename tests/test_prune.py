"""`pynenc prune`: old finished workflows deleted whole (records, every attempt's journal, data),
everything else left as it was; a dry run unless `--yes`; one commit per batch; a prune killed
with SIGKILL mid-way, and a workflow pruned only in part, leave a store that reads and that
the next prune finishes. On LMDB and PostgreSQL (`store_url`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from conftest import store_snapshot

from pynenc import Pynenc, prune
from pynenc._core import journal_id
from pynenc.cli import read
from pynenc.runner import claims


def pynenc(url: str, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    return subprocess.run(
        [sys.executable, "-m", "pynenc", "--store", url, *args],
        env={**env, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **popen,
    )


def flows(app: Pynenc) -> SimpleNamespace:
    """A workflow with a task, a child workflow with data of its own, a task that failed twice
    (two attempts, two journals), workflow data and an event."""

    @app.task(name="prunes.step")
    def step(n: int) -> int:
        return n * 2

    @app.task(name="prunes.report", force_new_workflow=True)
    def report(n: int) -> int:
        report.wf.set_data("report", n)
        return report.wf.execute_task(step, n).result

    @app.task(name="prunes.flaky", max_retries=1)
    def flaky(n: int) -> int:
        flaky.wf.random()
        raise ValueError(f"flaky {n}")

    @app.task(name="prunes.order")
    def order(n: int) -> int:
        order.wf.set_data("order", n)
        order.wf.set_event("stage", "charged")
        doubled = order.wf.execute_task(step, n).result
        try:
            order.wf.execute_task(flaky, n).result
        except ValueError:
            pass
        return order.wf.execute_task(report, doubled).result

    @app.task(name="prunes.leaf")
    def leaf(n: int) -> int:
        return n

    @app.task(name="prunes.spawner")
    def spawner(n: int) -> int:
        spawner.wf.execute_task(leaf, n)  # never waited for: it stays queued
        return n

    return SimpleNamespace(order=order, spawner=spawner)


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def gone(app: Pynenc, shown: dict[str, Any]) -> bool:
    """Nothing of a workflow `prune --json` listed is left: records, journals, data."""
    store = app.store
    ids = [bytes.fromhex(i.replace("-", "")) for i in shown["invocation_ids"]]
    workflows = [shown["workflow_id"], *shown["child_workflow_ids"]]
    return (
        all(store.get("invocations", i) is None for i in ids)
        and all(store.journal_len(journal_id(i, a)) == 0 for i in ids for a in range(3))
        and all(not store.scan("data", bytes.fromhex(w.replace("-", ""))) for w in workflows)
    )


def test_prune_deletes_old_finished_workflows_whole_and_nothing_else(store_url: str) -> None:
    app = Pynenc("test", store=store_url, sync=False)
    tasks = flows(app)
    old = [tasks.order(n).invocation_id for n in (1, 2)]
    queued = Pynenc("test", store=store_url, sync=False, execution="queued")
    qtasks = flows(queued)
    spawned = qtasks.spawner(5)
    assert claims.claim_and_run(queued, bytes.fromhex(spawned.invocation_id.replace("-", "")))
    (leaf,) = [i for i in app.list_invocations(task_id="prunes.leaf")]
    assert spawned.status.value == "success" and leaf.status.value == "pending"
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    young = tasks.order(3).invocation_id
    before = store_snapshot(store_url)

    dry = pynenc(store_url, "prune", "--finished-before", iso(cutoff))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split()[:3] == ["WORKFLOW", "TYPE", "FINISHED"]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    assert set(rows) == set(old)
    assert all(row[1] == "prunes.order" and row[-3:] == ["5", "6", "3"] for row in rows.values())
    assert lines[3] == (
        f"kept {spawned.invocation_id} (prunes.spawner): invocation {leaf.invocation_id} "
        "(prunes.leaf) is pending"
    )
    assert lines[4].startswith("would delete 2 workflow(s) finished before ")
    assert lines[4].endswith(
        "UTC (10 invocation(s), 12 journal(s), 6 data key(s)); run again with --yes to delete them"
    )
    assert young not in dry.stdout
    assert store_snapshot(store_url) == before, "a dry run writes nothing"

    shown = json.loads(
        pynenc(store_url, "--json", "prune", "--finished-before", iso(cutoff)).stdout
    )
    assert shown["dry_run"] is True and shown["deleted"] == 0
    assert shown["totals"] == {"workflows": 2, "invocations": 10, "journals": 12, "data_keys": 6}
    assert [w["workflow_id"] for w in shown["workflows"]] == old  # oldest first
    for w in shown["workflows"]:
        assert w["invocation_ids"][0] == w["workflow_id"] and len(w["invocation_ids"]) == 5
        assert len(w["child_workflow_ids"]) == 1 and w["finished"] < iso(cutoff)
    assert shown["kept"] == [
        {
            "workflow_id": spawned.invocation_id,
            "workflow_type": "prunes.spawner",
            "reason": f"invocation {leaf.invocation_id} (prunes.leaf) is pending",
        }
    ]

    done = pynenc(store_url, "prune", "--finished-before", iso(cutoff), "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("deleted 2 workflow(s) finished before ")
    assert "pruning" in done.stderr and "2/2" in done.stderr  # the progress bar
    for w in shown["workflows"]:
        assert f"deleted workflow {w['workflow_id']} (prunes.order" in done.stderr
        assert gone(app, w)
    # Everything else is as it was, byte for byte (lease tombstones included).
    doomed = {
        bytes.fromhex(i.replace("-", "")) for w in shown["workflows"] for i in w["invocation_ids"]
    }
    wfs = {
        bytes.fromhex(x.replace("-", ""))
        for w in shown["workflows"]
        for x in [w["workflow_id"], *w["child_workflow_ids"]]
    }
    records, data, _, queue, leases = before
    after = store_snapshot(store_url)
    assert after[0] == [(k, v) for k, v in records if k not in doomed]
    assert after[1] == [(k, v) for k, v in data if k[:16] not in wfs]
    assert after[3:] == (queue, leases)
    assert app.get_invocation(young) is not None and app.get_invocation(leaf.invocation_id)

    again = pynenc(store_url, "prune", "--finished-before", iso(cutoff), "--yes")
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1].startswith("no workflow finished before ")
    assert again.stdout.splitlines()[-1].endswith("UTC: nothing to delete")


def test_prune_commits_once_per_batch(store_url: str) -> None:
    app = Pynenc("test", store=store_url, sync=False, flush_interval_ms=0)
    tasks = flows(app)
    for n in range(5):
        tasks.order(n)
    planned = prune.plan(app, time.time())
    assert len(planned.doomed) == 5
    seen: list[tuple[int, int]] = []
    commits = app.store.commit_count()
    assert prune.prune(app, planned, batch=2, progress=lambda d, t: seen.append((d, t))) == 5
    assert app.store.commit_count() - commits == 3
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert app.store.scan("invocations", b"") == [] and app.store.scan("data", b"") == []


def test_a_workflow_pruned_in_part_reads_and_the_next_prune_finishes_it(store_url: str) -> None:
    app = Pynenc("test", store=store_url, sync=False)
    tasks = flows(app)
    first = tasks.order(0)
    (one,) = prune.plan(app, time.time()).doomed
    steps = prune.deletes(one)
    assert [kind for kind, _ in steps[-5:]] == ["invocations"] * 5
    assert steps[-1] == ("invocations", one.root.invocation_id), "the root's record goes last"
    for n in range(1, len(steps)):
        tasks.order(n)
    planned = prune.plan(app, time.time())
    assert len(planned.doomed) == len(steps)
    # Workflow i loses the first i of its deletes, as a prune stopped there would leave it.
    for cut, doomed in enumerate(planned.doomed):
        for table, key in prune.deletes(doomed)[:cut]:
            if table == "journal":
                app.store.delete_journal(key)
            else:
                app.store.delete(table, key)
    app.store.flush()
    # What is left reads: every record, every journal, every workflow's tree.
    for inv in app.list_invocations():
        shown = read.show(app, inv.invocation_id)
        assert shown["status"] in ("success", "failed")
    for doomed in planned.doomed:
        assert read.tree(app, doomed.workflow_id)["invocation_id"] == doomed.workflow_id
    assert pynenc(store_url, "status").returncode == 0
    # Each is still found (its root is there) and the next prune finishes every one.
    again = prune.plan(app, time.time())
    assert [d.workflow_id for d in again.doomed] == [d.workflow_id for d in planned.doomed]
    assert prune.prune(app, again) == len(steps)
    assert app.store.scan("invocations", b"") == [] and app.store.scan("data", b"") == []
    assert all(app.store.journal_len(j) == 0 for d in planned.doomed for j in d.journals)
    assert first.invocation_id == planned.doomed[0].workflow_id


def test_a_prune_killed_mid_way_leaves_each_workflow_whole_or_gone(store_url: str) -> None:
    app = Pynenc("test", store=store_url, sync=False)

    @app.task(name="prunes.kill_step")
    def step(n: int) -> int:
        return n + 1

    @app.task(name="prunes.kill_root")
    def root(n: int) -> int:
        root.wf.set_data("n", n)
        return root.wf.execute_task(step, n).result

    for n in range(800):
        root(n)
    planned = prune.plan(app, time.time())
    whole = {d.workflow_id: _contents(app, d) for d in planned.doomed}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYNENC_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pynenc",
            "--store",
            store_url,
            "prune",
            "--finished-before",
            "0s",
            "--yes",
            "--batch",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deleted = 0
    for line in proc.stderr:
        deleted += "deleted workflow" in line
        if deleted == 5:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    left = 0
    for d in planned.doomed:
        contents = _contents(app, d)
        if contents != _NOTHING:
            assert contents == whole[d.workflow_id], f"{d.workflow_id} was cut in part"
            left += 1
    assert 0 < left <= len(planned.doomed) - 5, "killed mid-way, after 5 batches"
    listed = pynenc(store_url, "--json", "list", "--workflows", "--limit", "10000")
    assert len(json.loads(listed.stdout)["invocations"]) == left
    finished = pynenc(store_url, "prune", "--finished-before", "0s", "--yes")
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1].startswith(f"deleted {left} workflow(s)")
    assert app.store.scan("invocations", b"") == [] and app.store.scan("data", b"") == []


_NOTHING: tuple[Any, ...] = ([], [], [])


def _contents(app: Pynenc, d: prune.Doomed) -> tuple[Any, ...]:
    """A workflow's records, journals and data as the store holds them now."""
    store = app.store
    records = [store.get("invocations", r.invocation_id) for r in d.members]
    journals = [store.journal_entries(j) for j in d.journals]
    data = [row for w in d.workflows for row in store.scan("data", _raw(w))]
    return (
        [r for r in records if r is not None],
        [j for j in journals if j],
        data,
    )


def _raw(workflow_id: str) -> bytes:
    return bytes.fromhex(workflow_id.replace("-", ""))


def test_bad_input_is_refused_and_writes_nothing(store_url: str, tmp_path: Any) -> None:
    app = Pynenc("test", store=store_url, sync=False)
    flows(app).order(1)
    before = store_snapshot(store_url)
    bad = pynenc(store_url, "prune", "--finished-before", "last tuesday", "--yes")
    assert bad.returncode == 1
    assert "--finished-before 'last tuesday' is neither an ISO 8601 date" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = pynenc(store_url, "prune", "--yes")
    assert missing.returncode == 2 and "--finished-before" in missing.stderr
    zero = pynenc(store_url, "prune", "--finished-before", "0s", "--batch", "0")
    assert zero.returncode == 2 and "from 1 to 10,000" in zero.stderr
    assert store_snapshot(store_url) == before
    nowhere = pynenc(f"lmdb://{tmp_path / 'none'}", "prune", "--finished-before", "0s")
    assert nowhere.returncode == 1 and "no store at" in nowhere.stderr
    assert not (tmp_path / "none").exists()
