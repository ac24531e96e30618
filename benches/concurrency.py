"""Group `concurrency`: durable steps from 1, 4 and 16 threads, each thread running its own
workflow, all on one app and store (fsync on): aggregate steps/s. Concurrent flushes share a
commit (group commit), so threads can share an fsync.
"""

from __future__ import annotations

import statistics
import threading
import time

from benches import tasks
from benches.measure import Row, Settings, Target, temp_dir

__all__ = ["THREADS", "run"]

GROUP = "concurrency"
THREADS = (1, 4, 16)


def _label(threads: int) -> str:
    return f"durable steps, {threads} thread{'s' if threads > 1 else ''}"


def aggregate_steps_per_second(threads: int, n_per_thread: int) -> tuple[float, float]:
    """Steps/s of `threads` workflows of `n_per_thread` steps each, run at once, and the
    steps each commit held on average."""
    with temp_dir("threads") as d:
        app = tasks.fresh_app(d, sync=True)
        steps = app.get_task(tasks.steps.task_id)
        start = threading.Barrier(threads + 1)
        errors: list[BaseException] = []

        def work() -> None:
            start.wait()
            try:
                steps(n_per_thread)
            except BaseException as exc:  # noqa: BLE001 - reported after join
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        commits = app.store.commit_count()
        start.wait()
        t0 = time.perf_counter_ns()
        for w in workers:
            w.join()
        elapsed = time.perf_counter_ns() - t0
        commits = app.store.commit_count() - commits
        if errors:
            raise errors[0]
        steps = threads * n_per_thread
        return steps * 1e9 / elapsed, steps / max(commits, 1)


def run(s: Settings) -> list[Row]:
    n = s.n(400, 20)
    # Each repetition runs 1, 4 and 16 threads back to back (paired with the one-thread run).
    samples: dict[int, list[float]] = {threads: [] for threads in THREADS}
    per_commit: dict[int, list[float]] = {threads: [] for threads in THREADS}
    for _ in range(s.reps):
        for threads in THREADS:
            rate, steps_a_commit = aggregate_steps_per_second(threads, n)
            samples[threads].append(rate)
            per_commit[threads].append(steps_a_commit)
    return [
        Row(
            GROUP,
            _label(threads),
            "steps/s",
            samples[threads],
            baseline=None if threads == 1 else _label(1),
            target=Target(">=", 4) if threads == 16 else None,
            note=f"{n} steps per thread, {statistics.median(per_commit[threads]):.1f} a commit",
            paired=threads > 1,
        )
        for threads in THREADS
    ]
