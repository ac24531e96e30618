"""Group `waits`: durable timers run by queued workers. Many workflows each sleep a while on
2 workers of 2 slots; reported: how long they all take (about one sleep when a sleeping
workflow holds no slot), how late each wakes after its recorded deadline (p50, p99), the worker
slots free while they all sleep, and the store bytes a suspended workflow costs.

Lateness is the workflow's first clock reading after its sleep (recorded when it resumed)
minus the deadline its journal recorded: the time a worker took to see it due, claim it and
replay it. The workers run without fsync (their commits are not what is measured). Store bytes
are measured in this process, with fsync on (so `data.mdb` is not the whole map): the growth
of `data.mdb` from before enqueueing workflows to when each has been claimed, run to its sleep
and suspended, divided by their number: their records, journals, queue entries and leases,
rounded by LMDB's pages.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benches import tasks
from benches.measure import Row, Settings, temp_dir
from benches.queued import NOT_AVAILABLE, ROOT, queued_unavailable
from pynenc.runner import claims
from pynenc.runner.leases import now_ms

__all__ = ["run"]

GROUP = "waits"
WORKERS, SLOTS = 2, 2
WORKER_COMMAND = [
    sys.executable,
    "-m",
    "pynenc",
    "--app",
    "benches.tasks:app",
    "--log-level",
    "WARNING",
    "worker",
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _suspended(app: object, ids: list[bytes]) -> tuple[int, int]:
    """(how many of `ids` are suspended, how many are held by a worker now)."""
    suspended = held = 0
    now = now_ms()
    for raw in ids:
        lease = app.store.lease(raw)  # type: ignore[attr-defined]
        if lease is None:
            continue
        owner, expires, _token = lease
        if owner and expires > now:
            held += 1
        elif not owner and expires > now:
            suspended += 1
    return suspended, held


def sleep_run(workflows: int, seconds: float) -> dict[str, float]:
    """Run `workflows` queued workflows sleeping `seconds` each on the workers; the figures."""
    with temp_dir("waits") as d:
        path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        env = dict(
            os.environ,
            PYNENC_STORE=f"lmdb://{d}",
            PYNENC_EXECUTION="queued",
            PYNENC_SYNC="0",
            PYTHONPATH=path,
        )
        app = tasks.fresh_app(d, sync=False, execution="queued")
        sleeper = app.get_task(tasks.sleeper.task_id)
        procs = [
            subprocess.Popen(
                [*WORKER_COMMAND, "--concurrency", str(SLOTS)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(WORKERS)
        ]
        try:
            for warm in [sleeper(0) for _ in range(WORKERS * SLOTS)]:
                warm.wait(timeout=60)
            t0 = time.perf_counter()
            invs = [sleeper(seconds) for _ in range(workflows)]
            ids = [uuid.UUID(inv.invocation_id).bytes for inv in invs]
            most_held, free = WORKERS * SLOTS, 0.0
            while True:
                suspended, held = _suspended(app, ids)
                if suspended + held == workflows:
                    most_held = min(most_held, held)
                if suspended == workflows:
                    free = WORKERS * SLOTS - held
                    break
                if time.perf_counter() - t0 > seconds:  # some woke before all slept
                    free = WORKERS * SLOTS - most_held
                    break
                time.sleep(0.005)
            woke = [inv.wait(timeout=300).result for inv in invs]
            elapsed = time.perf_counter() - t0
            late = []
            for inv, at in zip(invs, woke, strict=True):
                [deadline] = [
                    e.value for e in app.journal(inv.invocation_id) if e.operation == "sleep"
                ]
                late.append((at - deadline.timestamp()) * 1000)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    _out, err = p.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    _out, err = p.communicate()
                if p.returncode not in (0, -15) and err:
                    print(err.decode(errors="replace")[-2000:], file=sys.stderr)
        return {
            "elapsed": elapsed,
            "p50": statistics.median(late),
            "p99": _percentile(late, 0.99),
            "free": free,
        }


def suspended_bytes(workflows: int) -> float:
    """Store bytes per workflow suspended in a sleep, claimed and run here one by one."""
    with temp_dir("waits-bytes") as d:
        app = tasks.fresh_app(d, sync=True, execution="queued")
        sleeper = app.get_task(tasks.sleeper.task_id)
        app.store.flush()  # create the environment before measuring its growth
        before = (Path(d) / "data.mdb").stat().st_size
        for _ in range(workflows):
            sleeper(3600.0)
        owner = b"bench"
        while (claim := app.store.claim(owner, 30_000, now_ms())) is not None:
            due = claims.run_claimed(app, claim[0], claim[1])
            assert due is not None, "a sleeping workflow was not suspended"
        return ((Path(d) / "data.mdb").stat().st_size - before) / workflows


def run(s: Settings) -> list[Row]:
    workflows, seconds = s.n(200, 10), (2.0 if not s.quick else 0.5)
    shape = f"{workflows} workflows sleeping {seconds:g} s, {WORKERS} workers × {SLOTS} slots"
    rows = [
        Row(GROUP, f"all {workflows} sleeping workflows done", "s", note=shape),
        Row(GROUP, "wake-up lateness p50", "ms", note="first clock reading after the deadline"),
        Row(GROUP, "wake-up lateness p99", "ms", note="first clock reading after the deadline"),
        Row(GROUP, "worker slots free while all sleep", "slots", note=f"of {WORKERS * SLOTS}"),
        Row(GROUP, "store bytes per suspended workflow", "bytes", note="data.mdb growth / n"),
    ]
    reason = queued_unavailable()
    if reason is not None:
        for row in rows:
            row.na = reason
        return rows
    try:
        for _ in range(s.reps):
            got = sleep_run(workflows, seconds)
            for row, key in zip(rows[:-1], ("elapsed", "p50", "p99", "free"), strict=True):
                row.samples.append(got[key])
            rows[-1].samples.append(suspended_bytes(workflows))
    except Exception as exc:  # noqa: BLE001 - reported as n/a rather than failing the run
        for row in rows:
            row.na, row.samples = f"{NOT_AVAILABLE}: {type(exc).__name__}: {exc}", []
    return rows
