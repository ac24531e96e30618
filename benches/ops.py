"""Group `ops`: the `wf` operations inside a running inline task on a durable LMDB store (fsync
on), timed inside the task, on the first run (record) and on `app.replay` (replay); beside the
same work done in plain Python in this process.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timezone

from benches import tasks
from benches.baselines import NaiveJournal
from benches.measure import Row, Settings, Target, temp_dir
from pynenc import Pynenc

__all__ = ["run"]

GROUP = "ops"

#: wf operation -> (label, plain-Python baseline label, target on record / baseline)
OPS = {
    "random": ("wf.random()", "random.random()", Target("<=", 15)),
    "uuid": ("wf.uuid()", "str(uuid.uuid4())", Target("<=", 0.5)),
    "utc_now": ("wf.utc_now()", "datetime.now(timezone.utc)", Target("<=", 2)),
    "data": ("wf.set_data + wf.get_data", "dict set + get", Target("<=", 10)),
    "side_effect": ("wf.side_effect", "naive durable journal append", None),
}

#: The same operation reached through `task.wf` on every call, as the reference document
#: writes it (`process_order_workflow.wf.random()`), measured in the same repetitions as the
#: operation and its baseline: op -> (its `op_loop` name, label, target on record / baseline).
VIA_TASK = {
    "random": ("random_via_task", "task.wf.random()", Target("<=", 3)),
    "data": ("data_via_task", "task.wf.set_data + task.wf.get_data", Target("<=", 12)),
}


def _baseline(op: str, n: int) -> float:
    """ns per operation of the plain-Python counterpart of `op`."""
    if op == "random":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            random.random()
    elif op == "uuid":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            str(uuid.uuid4())
    elif op == "utc_now":
        t0 = time.perf_counter_ns()
        for _ in range(n):
            datetime.now(timezone.utc)  # noqa: UP017 - the spelling users write
    elif op == "data":
        d: dict[str, int] = {}
        t0 = time.perf_counter_ns()
        for i in range(n):
            d["k"] = i
            d.get("k")
    elif op == "side_effect":
        with temp_dir("ops") as path:
            journal = NaiveJournal(path / "journal.db", sync=True)
            inv = uuid.uuid4().bytes
            t0 = time.perf_counter_ns()
            for _ in range(n):
                journal.append(inv, 4, ["fx", 1])
            elapsed = time.perf_counter_ns() - t0
            journal.close()
            return elapsed / n
    else:
        raise ValueError(op)
    return (time.perf_counter_ns() - t0) / n


def _record_and_replay(app: Pynenc, op: str, n: int) -> tuple[float, float]:
    """ns/op of `op` on a first run and on its replay."""
    inv = tasks.run_task(app, tasks.op_loop, op, n)
    record = tasks.LAST["ns"] / n
    app.replay(inv.invocation_id)
    return record, tasks.LAST["ns"] / n


def run(s: Settings) -> list[Row]:
    rows: list[Row] = []
    for op, (label, base_label, target) in OPS.items():
        # A side effect is durable before it returns: one fsync'd commit each.
        n = s.n(500, 20) if op == "side_effect" else s.n(200_000, 2_000)
        if op == "data":
            n = s.n(50_000, 1_000)
        # Each repetition measures the baseline and the operation back to back (paired).
        paired = not any(r.name == base_label for r in rows)
        base: list[float] = []
        record: list[float] = []
        replay: list[float] = []
        longer: list[float] = []
        via_record: list[float] = []
        via_replay: list[float] = []
        with temp_dir("ops") as d:
            app = tasks.fresh_app(d, sync=True)
            for i in range(s.reps):
                if paired:
                    base.append(_baseline(op, n))
                # The task.wf spelling runs in the same repetition, first in every other one:
                # a run measured later in a repetition can be slowed by the writes of the runs
                # before it (the store's background flush of their data), and alternating the
                # order gives neither spelling that place every time.
                runs = [(op, record, replay)]
                if op in VIA_TASK:
                    runs.append((VIA_TASK[op][0], via_record, via_replay))
                for name, rec_samples, rep_samples in runs if i % 2 == 0 else runs[::-1]:
                    rec, rep = _record_and_replay(app, name, n)
                    rec_samples.append(rec)
                    rep_samples.append(rep)
                if op == "data":
                    tasks.run_task(app, tasks.op_loop, op, 10 * n)
                    longer.append(tasks.LAST["ns"] / (10 * n))
        if paired:
            rows.append(Row(GROUP, base_label, "ns/op", base))
        rows.append(
            Row(
                GROUP,
                f"{label} record",
                "ns/op",
                record,
                baseline=base_label,
                target=target,
                note=f"{n:,} per run",
                paired=paired,
            )
        )
        rows.append(
            Row(
                GROUP,
                f"{label} replay",
                "ns/op",
                replay,
                baseline=f"{label} record",
                target=Target("<=", 1),
                paired=True,
            )
        )
        if longer:
            rows.append(
                Row(
                    GROUP,
                    f"{label} record, 10× longer run",
                    "ns/op",
                    longer,
                    baseline=f"{label} record",
                    note=f"{10 * n:,} per run",
                    paired=True,
                )
            )
        if via_record:
            _, via_label, via_target = VIA_TASK[op]
            rows.append(
                Row(
                    GROUP,
                    f"{via_label} record",
                    "ns/op",
                    via_record,
                    baseline=base_label,
                    target=via_target,
                    note=f"{n:,} per run, task.wf read on every call",
                    paired=paired,
                )
            )
            rows.append(
                Row(
                    GROUP,
                    f"{via_label} replay",
                    "ns/op",
                    via_replay,
                    baseline=f"{via_label} record",
                    target=Target("<=", 1),
                    paired=True,
                )
            )
    return rows
