"""Group `queued`: the same durable steps run by queued worker processes (1 and 2 workers),
aggregate steps/s, when queued execution can run workers (`pynenc --app ... worker`).

The workers load `benches.tasks:app` configured through the `PYNENC_*` environment. They are
started and warmed up first; the timed part is from enqueueing the workflows to the last one
finishing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from benches import tasks
from benches.measure import Row, Settings, temp_dir
from pynenc import Pynenc

__all__ = [
    "WORKERS",
    "queued_unavailable",
    "run",
    "steps_per_second",
    "wait_finished",
    "worker_processes",
]

GROUP = "queued"
WORKERS = (1, 2)
NOT_AVAILABLE = "n/a (queued execution not available)"
ROOT = Path(__file__).resolve().parent.parent


def queued_unavailable() -> str | None:
    """Why queued workers cannot run here, or None when they can."""
    for module in ("pynenc.cli", "pynenc.runner.worker"):
        if importlib.util.find_spec(module) is None:
            return f"{NOT_AVAILABLE}: no {module}"
    return None


def _label(workers: int) -> str:
    return f"durable steps, {workers} queued worker{'s' if workers > 1 else ''}"


def wait_finished(app: object, ids: list[str], timeout: float) -> None:
    """Return once every invocation in `ids` finished (polled from the newest back)."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        inv = app.get_invocation(pending[-1])  # type: ignore[attr-defined]
        if inv is not None and inv.status.finished:
            pending.pop()
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} queued workflows did not finish in {timeout} s")
        time.sleep(0.002)


@contextmanager
def worker_processes(store_url: str, workers: int) -> Iterator[Pynenc]:
    """`workers` processes of `pynenc --app benches.tasks:app worker` on the store `store_url`,
    started and warmed up (each has run work, so its imports and connections are made);
    yields an app on that store that enqueues. The workers are stopped on leaving."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(
        os.environ,
        PYNENC_STORE=store_url,
        PYNENC_EXECUTION="queued",
        PYNENC_SYNC="1",
        PYTHONPATH=path,
    )
    app = tasks.fresh_app(store_url, sync=True, execution="queued")
    steps = app.get_task(tasks.steps.task_id)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pynenc",
                "--app",
                "benches.tasks:app",
                "--log-level",
                "WARNING",
                "worker",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    try:
        warm = [steps(1).invocation_id for _ in range(2 * workers)]
        wait_finished(app, warm, timeout=60)
        yield app
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


def steps_per_second(
    workers: int, workflows: int, n_per_workflow: int, store_url: str | None = None
) -> float:
    """Aggregate steps/s of `workflows` queued workflows of `n_per_workflow` steps each, run
    by `workers` worker processes on `store_url` (default: a fresh LMDB store)."""
    with ExitStack() as stack:
        if store_url is None:
            store_url = f"lmdb://{stack.enter_context(temp_dir('queued'))}"
        app = stack.enter_context(worker_processes(store_url, workers))
        steps = app.get_task(tasks.steps.task_id)
        t0 = time.perf_counter_ns()
        ids = [steps(n_per_workflow).invocation_id for _ in range(workflows)]
        wait_finished(app, ids, timeout=300)
        elapsed = time.perf_counter_ns() - t0
    return workflows * n_per_workflow * 1e9 / elapsed


def run(s: Settings) -> list[Row]:
    reason = queued_unavailable()
    workflows, n = s.n(8, 2), s.n(100, 5)
    rows = []
    for workers in WORKERS:
        row = Row(
            GROUP,
            _label(workers),
            "steps/s",
            baseline=None if workers == 1 else _label(1),
            note=f"{workflows} workflows × {n} steps",
        )
        if reason is None:
            try:
                row.samples = [steps_per_second(workers, workflows, n) for _ in range(s.reps)]
            except Exception as exc:  # noqa: BLE001 - a queued mode still being built is n/a
                row.na = f"{NOT_AVAILABLE}: {type(exc).__name__}: {exc}"
        else:
            row.na = reason
        rows.append(row)
    return rows
