"""Group `concurrency`: durable steps from 1, 4 and 16 threads, each thread running its own
workflow, all on one app and store (fsync on): aggregate steps/s. Concurrent flushes share a
commit (group commit), so threads can share an fsync.
"""

from __future__ import annotations

import threading
import time

from benches import tasks
from benches.measure import Row, Settings, Target, temp_dir

__all__ = ["THREADS", "run"]

GROUP = "concurrency"
THREADS = (1, 4, 16)


def _label(threads: int) -> str:
    return f"durable steps, {threads} thread{'s' if threads > 1 else ''}"


def aggregate_steps_per_second(threads: int, n_per_thread: int) -> float:
    """Steps/s of `threads` workflows of `n_per_thread` steps each, run at once."""
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
        start.wait()
        t0 = time.perf_counter_ns()
        for w in workers:
            w.join()
        elapsed = time.perf_counter_ns() - t0
        if errors:
            raise errors[0]
        return threads * n_per_thread * 1e9 / elapsed


def run(s: Settings) -> list[Row]:
    n = s.n(400, 20)
    # Each repetition runs 1, 4 and 16 threads back to back (paired with the one-thread run).
    samples: dict[int, list[float]] = {threads: [] for threads in THREADS}
    for _ in range(s.reps):
        for threads in THREADS:
            samples[threads].append(aggregate_steps_per_second(threads, n))
    return [
        Row(
            GROUP,
            _label(threads),
            "steps/s",
            samples[threads],
            baseline=None if threads == 1 else _label(1),
            target=Target(">=", 4) if threads == 16 else None,
            note=f"{n} steps per thread",
            paired=threads > 1,
        )
        for threads in THREADS
    ]
