"""Group `steps`: durable child steps, `wf.execute_task(child).result` of a trivial child run
inline, beside the physical limit measured in the same run: one fsync'd LMDB write transaction
per step with the raw `lmdb` package and no engine, writing one small value, and again writing
what a step writes (so the gap between the two is the layout's, the rest the engine's). Without
fsync both write through a writable map (`writemap`), as the store does.
"""

from __future__ import annotations

import os
import time

import lmdb

from benches import tasks
from benches.measure import Row, Settings, Target, temp_dir

__all__ = ["run", "steps_per_second"]

GROUP = "steps"
RAW_FSYNC = "raw LMDB commit, fsync (lmdb package)"
RAW_NOSYNC = "raw LMDB commit, no fsync (lmdb package)"
RAW_SHAPED = "raw LMDB commit shaped like a step, fsync (lmdb package)"


def steps_per_second(n: int, *, sync: bool) -> float:
    """Steps/s of one workflow of `n` durable child steps on a fresh store (timed inside it)."""
    with temp_dir("steps") as d:
        app = tasks.fresh_app(d, sync=sync)
        tasks.run_task(app, tasks.steps, n)
        return n * 1e9 / tasks.LAST["ns"]


def raw_commits_per_second(n: int, *, sync: bool) -> float:
    """Write transactions/s, one small put each, straight on LMDB (opened as the store opens
    it: without fsync, through a writable map)."""
    with temp_dir("steps") as d:
        env = lmdb.open(str(d), sync=sync, writemap=not sync, map_size=1 << 30)
        value = bytes(120)  # about one invocation record
        t0 = time.perf_counter_ns()
        for i in range(n):
            with env.begin(write=True) as txn:
                txn.put(i.to_bytes(8, "big"), value)
        elapsed = time.perf_counter_ns() - t0
        env.close()
        return n * 1e9 / elapsed


def raw_step_shaped_commits_per_second(n: int) -> float:
    """Fsync'd write transactions/s, each writing what a durable step writes, straight on LMDB
    in the store's layout (`docs/journal-format.md`): in the main database, the child's record
    (264 bytes) under its tag and a random 16-byte id, and the parent's journal entry (59 bytes)
    under its tag, the parent's id and the position. No engine: what the layout costs here."""
    with temp_dir("steps") as d:
        env = lmdb.open(str(d), sync=True, map_size=1 << 30, max_dbs=4)
        journal = b"\x01" + os.urandom(16)
        record, entry = bytes(264), bytes(59)
        t0 = time.perf_counter_ns()
        for i in range(n):
            with env.begin(write=True) as txn:
                txn.put(b"\x02" + os.urandom(16), record)
                txn.put(journal + i.to_bytes(8, "big"), entry)
        elapsed = time.perf_counter_ns() - t0
        env.close()
        return n * 1e9 / elapsed


def run(s: Settings) -> list[Row]:
    n_sync = s.n(2_000, 50)
    n_nosync = s.n(10_000, 200)
    # Each repetition measures the raw commit and the engine's step back to back (paired).
    raw_sync, shaped, steps_sync, raw_nosync, steps_nosync = [], [], [], [], []
    for _ in range(s.reps):
        raw_sync.append(raw_commits_per_second(n_sync, sync=True))
        steps_sync.append(steps_per_second(n_sync, sync=True))
        shaped.append(raw_step_shaped_commits_per_second(n_sync))
        raw_nosync.append(raw_commits_per_second(n_nosync, sync=False))
        steps_nosync.append(steps_per_second(n_nosync, sync=False))
    return [
        Row(GROUP, RAW_FSYNC, "commits/s", raw_sync),
        Row(
            GROUP,
            "durable steps, fsync",
            "steps/s",
            steps_sync,
            baseline=RAW_FSYNC,
            target=Target(">=", 0.66),
            paired=True,
        ),
        Row(
            GROUP,
            RAW_SHAPED,
            "commits/s",
            shaped,
            baseline=RAW_FSYNC,
            paired=True,
            note="a random-id record and a journal entry, in the store's layout",
        ),
        Row(GROUP, RAW_NOSYNC, "commits/s", raw_nosync),
        Row(
            GROUP,
            "durable steps, no fsync",
            "steps/s",
            steps_nosync,
            baseline=RAW_NOSYNC,
            target=Target(">=", 20_000, of="value"),
            paired=True,
        ),
    ]
