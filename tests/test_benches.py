"""The benchmark harness runs end to end in quick mode and reports every figure.

It measures, it never asserts a time: this test checks only that the run completes, prints its
table and writes a JSON with a positive median for every row (or marks the row n/a).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "core": [
        "random.random()",
        "str(uuid.uuid4())",
        "stream next-float (Execution.random)",
        "stream next-uuid (Execution.uuid)",
        "recorder record (random/uuid/clock)",
        "recorder serve (random/uuid/clock)",
        *(
            f"{what} {size} ({mode})"
            for mode in ("sync", "no-sync")
            for size in (1, 10, 100)  # quick sizes; the full run uses 1, 100 and 10,000
            for what in ("naive sqlite append", "journal flush")
        ),
        "naive sqlite read-back",
        "journal read-back (Execution load)",
    ],
    "ops": [
        "random.random()",
        "wf.random() record",
        "wf.random() replay",
        "task.wf.random() record",
        "task.wf.random() replay",
        "str(uuid.uuid4())",
        "wf.uuid() record",
        "wf.uuid() replay",
        "datetime.now(timezone.utc)",
        "wf.utc_now() record",
        "wf.utc_now() replay",
        "dict set + get",
        "wf.set_data + wf.get_data record",
        "wf.set_data + wf.get_data replay",
        "wf.set_data + wf.get_data record, 10× longer run",
        "task.wf.set_data + task.wf.get_data record",
        "task.wf.set_data + task.wf.get_data replay",
        "naive durable journal append",
        "wf.side_effect record",
        "wf.side_effect replay",
    ],
    "steps": [
        "raw LMDB commit, fsync (lmdb package)",
        "durable steps, fsync",
        "raw LMDB commit shaped like a step, fsync (lmdb package)",
        "raw LMDB commit, no fsync (lmdb package)",
        "durable steps, no fsync",
    ],
    "concurrency": [
        "durable steps, 1 thread",
        "durable steps, 4 threads",
        "durable steps, 16 threads",
    ],
    "queued": ["durable steps, 1 queued worker", "durable steps, 2 queued workers"],
    "waits": [
        "all 10 sleeping workflows done",  # quick size; the full run has 200
        "wake-up lateness p50",
        "wake-up lateness p99",
        "worker slots free while all sleep",
        "store bytes per suspended workflow",
    ],
    "scale": [
        "wf.random() in a 10^2-op workflow",
        "wf.random() in a 10^3-op workflow",
        "store bytes per entry, 10^2 ops",
        "store bytes per entry, 10^3 ops",
        "replay of the 10^3-op workflow",
        "peak RSS of the 10^3-op replay",
    ],
    "disk": [
        "write 1 page + fdatasync",
        "write 16 contiguous pages + fdatasync",
        "write 16 scattered pages + fdatasync",
    ],
    "postgres": [
        "wf.random() record, LMDB",
        "wf.random() record, PostgreSQL",
        "wf.uuid() record, LMDB",
        "wf.uuid() record, PostgreSQL",
        "raw psycopg INSERT + COMMIT",
        "durable steps, PostgreSQL",
        "durable steps, LMDB (fsync)",
        "queued steps, PostgreSQL, 1 worker",
        "queued steps, PostgreSQL, 2 workers",
        "queued steps, PostgreSQL, 4 workers",
        *(
            f"1-step queued workflow, start to finish, {p}, {store}"
            for p in ("p50", "p99")
            for store in ("LMDB", "PostgreSQL")
        ),
    ],
}


# Every group runs, PostgreSQL's and the durable timers' included: longer than the default.
@pytest.mark.timeout(330)
def test_quick_run_reports_every_row(tmp_path: Path) -> None:
    out, chart = tmp_path / "r.json", tmp_path / "c.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benches", "--quick", "--json", str(out), "--chart", str(chart)],
        cwd=ROOT,
        # Wide enough that no column is squeezed and every row name prints whole (no terminal).
        env={**os.environ, "COLUMNS": "1000"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
    doc = json.loads(out.read_text())
    assert doc["meta"]["quick"] is True
    rows = {(r["group"], r["name"]): r for r in doc["rows"]}
    for group, names in EXPECTED.items():
        for name in names:
            row = rows.get((group, name))
            assert row is not None, f"no row {group}/{name} in {sorted(rows)}"
            if row["status"] == "n/a":
                assert row["median"] is None and row["reason"].startswith("n/a"), row
                continue
            assert row["status"] == "ok", row
            # Memory growth of a tiny replay can round to 0 MB; every other figure is positive.
            floor_ok = (lambda x: x >= 0) if row["unit"] == "MB" else (lambda x: x > 0)
            assert isinstance(row["median"], (int, float)) and floor_ok(row["median"]), row
            assert all(floor_ok(x) for x in row["samples"]), row
    # The queued rows are measured when workers can run, else marked n/a; never missing.
    assert {rows[("queued", n)]["status"] for n in EXPECTED["queued"]} <= {"ok", "n/a"}
    # The suite's machines have the PostgreSQL server (its own tests need it): measured.
    assert {rows[("postgres", n)]["status"] for n in EXPECTED["postgres"]} == {"ok"}
    # The table was printed: its title and a row of each group.
    assert "benchmarks" in proc.stdout
    for group, names in EXPECTED.items():
        assert names[-1] in proc.stdout, f"{group} row {names[-1]!r} not in the printed table"
    # The chart is drawn when matplotlib is installed, else the run says it skipped it.
    assert chart.exists() or "chart skipped" in proc.stdout
