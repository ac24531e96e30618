"""Group `postgres`: the PostgreSQL store beside the embedded LMDB store and beside a raw
psycopg client on the same server (`benches/pgserver.py` says which server; fsync on).

- `wf.random()` and `wf.uuid()` inside a running inline task, on each store (the fastest of 3
  runs of each side, taking turns, in each repetition): they make no round trip, so they
  should cost what they cost on LMDB.
- Durable child steps (`wf.execute_task(child).result`, inline), beside one `INSERT` and
  `COMMIT` per step from psycopg on the same server: what one durable commit costs there.
- Queued steps/s with 1, 2 and 4 worker processes (`pynenc --app benches.tasks:app worker`).
- Start-to-finish latency of a 1-step queued workflow with one idle worker, from the call
  that enqueues it to `wait()` returning, at random moments (p50 and p99 of each repetition),
  on LMDB and on PostgreSQL.

Each repetition measures both sides of a pair back to back, in alternating order.
"""

from __future__ import annotations

import random
import statistics
import time

from benches import pgserver, queued, tasks
from benches.measure import Row, Settings, Target, temp_dir
from benches.pgserver import Server
from pynenc import Pynenc

__all__ = ["run"]

GROUP = "postgres"
RAW = "raw psycopg INSERT + COMMIT"
WORKERS = (1, 2, 4)
OPS = {"random": "wf.random()", "uuid": "wf.uuid()"}


#: Runs of each side in one repetition of the `wf` rows, taking turns; the fastest counts.
OP_RUNS = 3


def _op_record_ns(app: Pynenc, op: str, n: int) -> float:
    """ns per `op` recorded inside an inline task of `app`."""
    tasks.run_task(app, tasks.op_loop, op, n)
    return tasks.LAST["ns"] / n


def _ops(server: Server, s: Settings) -> list[Row]:
    n = s.n(200_000, 2_000)
    rows: list[Row] = []
    for op, label in OPS.items():
        lmdb: list[float] = []
        pg: list[float] = []
        for i in range(s.reps):
            with temp_dir("pg-ops") as d, server.schema() as url:
                # A run lasts tens of ms, and one that loses the processor to a neighbour for a
                # few time slices reads twice as long: each side's fastest of OP_RUNS runs,
                # taking turns, counts, so both sides get the machine's quiet moments alike.
                apps = [tasks.fresh_app(d, sync=True), tasks.fresh_app(url, sync=True)]
                best = [float("inf"), float("inf")]
                for run in range(OP_RUNS):
                    for side in (0, 1) if (i + run) % 2 == 0 else (1, 0):
                        best[side] = min(best[side], _op_record_ns(apps[side], op, n))
                lmdb.append(best[0])
                pg.append(best[1])
        rows.append(Row(GROUP, f"{label} record, LMDB", "ns/op", lmdb, note=f"{n:,} per run"))
        rows.append(
            Row(
                GROUP,
                f"{label} record, PostgreSQL",
                "ns/op",
                pg,
                baseline=f"{label} record, LMDB",
                target=Target("<=", 1.2),
                paired=True,
                note="no round trip: buffered until the task's flush",
            )
        )
    return rows


def _raw_commits_per_second(server: Server, url: str, n: int) -> float:
    """INSERT + COMMIT per row from psycopg (its default: a transaction opened by the first
    statement), 120 bytes a row under a sequential key: one durable commit each."""
    schema = url.rsplit("schema=", 1)[1]
    with server.connect(url) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".raw (id bigint PRIMARY KEY, value bytea)')
        conn.commit()
        insert = f'INSERT INTO "{schema}".raw (id, value) VALUES (%s, %s)'
        value = bytes(120)
        t0 = time.perf_counter_ns()
        for i in range(n):
            conn.execute(insert, (i, value))
            conn.commit()
        elapsed = time.perf_counter_ns() - t0
    return n * 1e9 / elapsed


def _steps_per_second(store: object, n: int) -> float:
    app = tasks.fresh_app(store, sync=True)  # type: ignore[arg-type]
    tasks.run_task(app, tasks.steps, n)
    return n * 1e9 / tasks.LAST["ns"]


def _steps(server: Server, s: Settings) -> list[Row]:
    n = s.n(1_000, 40)
    raw: list[float] = []
    pg: list[float] = []
    lmdb: list[float] = []
    for i in range(s.reps):
        with server.schema() as raw_url, server.schema() as url, temp_dir("pg-steps") as d:
            runs = [
                (raw, lambda: _raw_commits_per_second(server, raw_url, n)),
                (pg, lambda: _steps_per_second(url, n)),
                (lmdb, lambda: _steps_per_second(d, n)),
            ]
            for samples, measure in runs if i % 2 == 0 else runs[::-1]:
                samples.append(measure())
    return [
        Row(GROUP, RAW, "commits/s", raw, note=f"one 120-byte row a commit; {server.describe}"),
        Row(
            GROUP,
            "durable steps, PostgreSQL",
            "steps/s",
            pg,
            baseline=RAW,
            target=Target(">=", 0.5),
            paired=True,
            note=f"{n:,} inline steps, one transaction each",
        ),
        Row(
            GROUP,
            "durable steps, LMDB (fsync)",
            "steps/s",
            lmdb,
            baseline=RAW,
            paired=True,
            note="the same steps on the embedded store",
        ),
    ]


def _label(workers: int) -> str:
    return f"queued steps, PostgreSQL, {workers} worker{'s' if workers > 1 else ''}"


def _queued(server: Server, s: Settings) -> list[Row]:
    workflows, n = s.n(8, 4), s.n(50, 4)
    samples: dict[int, list[float]] = {w: [] for w in WORKERS}
    for i in range(s.reps):
        order = WORKERS if i % 2 == 0 else WORKERS[::-1]
        for workers in order:
            with server.schema() as url:
                rate = queued.steps_per_second(workers, workflows, n, store_url=url)
            samples[workers].append(rate)
    return [
        Row(
            GROUP,
            _label(workers),
            "steps/s",
            samples[workers],
            baseline=None if workers == 1 else _label(1),
            target=Target(">=", 3) if workers == 4 else None,
            paired=workers > 1,
            note=f"{workflows} workflows × {n} steps",
        )
        for workers in WORKERS
    ]


def _latencies_ms(store_url: str, count: int, rng: random.Random) -> list[float]:
    """Start-to-finish times of `count` 1-step queued workflows, one at a time, each started
    0–50 ms (uniformly at random) after the previous one finished, with one worker."""
    out = []
    with queued.worker_processes(store_url, 1) as app:
        steps = app.get_task(tasks.steps.task_id)
        for _ in range(count):
            time.sleep(rng.uniform(0.0, 0.05))
            t0 = time.perf_counter_ns()
            steps(1).wait(timeout=60)
            out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _latency(server: Server, s: Settings) -> list[Row]:
    count = s.n(100, 15)
    rng = random.Random(15)
    p50: dict[str, list[float]] = {"LMDB": [], "PostgreSQL": []}
    p99: dict[str, list[float]] = {"LMDB": [], "PostgreSQL": []}
    for i in range(s.reps):
        with temp_dir("pg-latency") as d, server.schema() as url:
            runs = [("LMDB", f"lmdb://{d}"), ("PostgreSQL", url)]
            for kind, store_url in runs if i % 2 == 0 else runs[::-1]:
                lat = _latencies_ms(store_url, count, rng)
                p50[kind].append(_p(lat, 50))
                p99[kind].append(_p(lat, 99))
    rows = []
    for name, table in (("p50", p50), ("p99", p99)):
        base = f"1-step queued workflow, start to finish, {name}, LMDB"
        rows.append(Row(GROUP, base, "ms", table["LMDB"], note=f"{count} a repetition"))
        rows.append(
            Row(
                GROUP,
                f"1-step queued workflow, start to finish, {name}, PostgreSQL",
                "ms",
                table["PostgreSQL"],
                baseline=base,
                paired=True,
                note="one idle worker; started 0–50 ms after the previous finished",
            )
        )
    return rows


ROW_NAMES = (
    *(f"{label} record, {kind}" for label in OPS.values() for kind in ("LMDB", "PostgreSQL")),
    RAW,
    "durable steps, PostgreSQL",
    "durable steps, LMDB (fsync)",
    *(_label(w) for w in WORKERS),
    *(
        f"1-step queued workflow, start to finish, {p}, {kind}"
        for p in ("p50", "p99")
        for kind in ("LMDB", "PostgreSQL")
    ),
)


def run(s: Settings) -> list[Row]:
    server, reason = pgserver.acquire()
    if server is None:
        return [Row(GROUP, name, "", na=reason) for name in ROW_NAMES]
    try:
        rows = _ops(server, s) + _steps(server, s)
        unavailable = queued.queued_unavailable()
        if unavailable is None:
            rows += _queued(server, s) + _latency(server, s)
        else:
            rows += [Row(GROUP, name, "", na=unavailable) for name in ROW_NAMES[len(rows) :]]
    finally:
        server.stop()
    return rows
