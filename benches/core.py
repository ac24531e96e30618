"""Group `core`: the Rust core (`pynenc._core`) driven directly from Python.

Streams and the recorder are timed per call; a journal flush is one LMDB write transaction
(fsync'd with sync on), timed beside a naive cbor2 + sqlite3 journal that commits every entry.
"""

from __future__ import annotations

import random
import time
import uuid

from benches.baselines import NaiveJournal
from benches.measure import Row, Settings, repeat, temp_dir
from pynenc import _core

__all__ = ["run"]

GROUP = "core"
FLUSH_SIZES = (1, 100, 10_000)
QUICK_FLUSH_SIZES = (1, 10, 100)


def _execution(store: _core.Store, invocation: bytes | None = None) -> _core.Execution:
    inv = invocation or uuid.uuid4().bytes
    return _core.Execution(store, inv, str(uuid.UUID(bytes=inv)), 0)


def _stream_random(n: int) -> float:
    with temp_dir("core") as d:
        ex = _execution(_core.Store(d, sync=False))
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ex.random()
        return (time.perf_counter_ns() - t0) / n


def _stream_uuid(n: int) -> float:
    with temp_dir("core") as d:
        ex = _execution(_core.Store(d, sync=False))
        t0 = time.perf_counter_ns()
        for _ in range(n):
            ex.uuid()
        return (time.perf_counter_ns() - t0) / n


def _python_random(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        random.random()
    return (time.perf_counter_ns() - t0) / n


def _python_uuid(n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        str(uuid.uuid4())
    return (time.perf_counter_ns() - t0) / n


def _record_then_serve(n: int) -> tuple[float, float]:
    """ns/op recording n ops (random, uuid, clock in turn), then serving them from the journal."""
    with temp_dir("core") as d:
        store = _core.Store(d, sync=False)
        inv = uuid.uuid4().bytes
        ex = _execution(store, inv)
        t0 = time.perf_counter_ns()
        for _ in range(n // 3):
            ex.random()
            ex.uuid()
            ex.utc_now_us()
        record = (time.perf_counter_ns() - t0) / (3 * (n // 3))
        ex.flush()
        ex = _execution(store, inv)
        t0 = time.perf_counter_ns()
        for _ in range(n // 3):
            ex.random()
            ex.uuid()
            ex.utc_now_us()
        serve = (time.perf_counter_ns() - t0) / (3 * (n // 3))
        return record, serve


def _flush(size: int, sync: bool, flushes: int) -> float:
    """µs per flush of a journal of `size` new entries (mean of `flushes` flushes)."""
    with temp_dir("core") as d:
        store = _core.Store(d, sync=sync)
        total = 0
        for _ in range(flushes):
            ex = _execution(store)
            for _ in range(size):
                ex.random()
            t0 = time.perf_counter_ns()
            ex.flush()
            total += time.perf_counter_ns() - t0
        return total / flushes / 1e3


def _naive_append(size: int, sync: bool, flushes: int) -> float:
    """µs to append `size` entries to the naive journal, each committed (mean of `flushes`)."""
    with temp_dir("core") as d:
        journal = NaiveJournal(d / "journal.db", sync=sync)
        total = 0
        for _ in range(flushes):
            inv = uuid.uuid4().bytes
            values = [random.getrandbits(64) for _ in range(size)]
            t0 = time.perf_counter_ns()
            for v in values:
                journal.append(inv, 1, v)
            total += time.perf_counter_ns() - t0
        journal.close()
        return total / flushes / 1e3


def _read_back(n: int) -> float:
    """Journal entries/s loaded by constructing an Execution over a flushed journal."""
    with temp_dir("core") as d:
        store = _core.Store(d, sync=False)
        inv = uuid.uuid4().bytes
        ex = _execution(store, inv)
        for _ in range(n):
            ex.random()
        ex.flush()
        t0 = time.perf_counter_ns()
        loaded = _execution(store, inv)
        elapsed = time.perf_counter_ns() - t0
        assert loaded.recorded_len == n
        return n * 1e9 / elapsed


def _naive_read_back(n: int) -> float:
    """Entries/s read back (SELECT, cbor2.loads) from the naive journal."""
    with temp_dir("core") as d:
        journal = NaiveJournal(d / "journal.db", sync=False)
        inv = uuid.uuid4().bytes
        for _ in range(n):
            journal.append(inv, 1, random.getrandbits(64))
        t0 = time.perf_counter_ns()
        entries = journal.read(inv)
        elapsed = time.perf_counter_ns() - t0
        journal.close()
        assert len(entries) == n
        return n * 1e9 / elapsed


def run(s: Settings) -> list[Row]:
    n = s.n(300_000, 3_000)
    reps = s.reps
    rows = [
        Row(GROUP, "random.random()", "ns/op", repeat(lambda: _python_random(n), reps)),
        Row(GROUP, "str(uuid.uuid4())", "ns/op", repeat(lambda: _python_uuid(n), reps)),
        Row(
            GROUP,
            "stream next-float (Execution.random)",
            "ns/op",
            repeat(lambda: _stream_random(n), reps),
            baseline="random.random()",
        ),
        Row(
            GROUP,
            "stream next-uuid (Execution.uuid)",
            "ns/op",
            repeat(lambda: _stream_uuid(n), reps),
            baseline="str(uuid.uuid4())",
        ),
    ]
    pairs = [_record_then_serve(n) for _ in range(reps)]
    rows += [
        Row(GROUP, "recorder record (random/uuid/clock)", "ns/op", [p[0] for p in pairs]),
        Row(
            GROUP,
            "recorder serve (random/uuid/clock)",
            "ns/op",
            [p[1] for p in pairs],
            baseline="recorder record (random/uuid/clock)",
        ),
    ]
    for sync in (True, False):
        mode = "sync" if sync else "no-sync"
        for size in QUICK_FLUSH_SIZES if s.quick else FLUSH_SIZES:
            flushes = max(1, s.n(20, 3) * 100 // (100 + size))  # more flushes when each is short
            naive = f"naive sqlite append {size:,} ({mode})"
            naive_samples = [_naive_append(size, sync, flushes) for _ in range(reps)]
            flush_samples = [_flush(size, sync, flushes) for _ in range(reps)]
            rows.append(Row(GROUP, naive, "µs", naive_samples, note="one committed row per entry"))
            rows.append(
                Row(
                    GROUP,
                    f"journal flush {size:,} ({mode})",
                    "µs",
                    flush_samples,
                    baseline=naive,
                    note="one LMDB write transaction",
                )
            )
    n_read = s.n(300_000, 3_000)
    rows.append(
        Row(
            GROUP,
            "naive sqlite read-back",
            "entries/s",
            repeat(lambda: _naive_read_back(n_read), reps),
        )
    )
    rows.append(
        Row(
            GROUP,
            "journal read-back (Execution load)",
            "entries/s",
            repeat(lambda: _read_back(n_read), reps),
            baseline="naive sqlite read-back",
            note=f"{n_read:,} entries",
        )
    )
    return rows
