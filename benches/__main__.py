"""`python -m benches [--quick] [--only GROUP] [--reps N] [--json PATH] [--chart PATH]`."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from benches import concurrency, core, disk, ops, postgres, queued, report, scale, steps, waits
from benches.measure import Row, Settings

GROUPS: dict[str, Callable[[Settings], list[Row]]] = {
    "core": core.run,
    "ops": ops.run,
    "steps": steps.run,
    "concurrency": concurrency.run,
    "queued": queued.run,
    "waits": waits.run,
    "scale": scale.run,
    "disk": disk.run,
    "postgres": postgres.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benches",
        description="pynenc-replay beside plain-Python baselines: a table, JSON and a chart.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and 2 repetitions (a smoke run, under a minute)",
    )
    parser.add_argument(
        "--only", choices=sorted(GROUPS), action="append", help="run only this group (repeatable)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 5; quick 2)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/results.json"))
    parser.add_argument("--chart", type=Path, default=Path("bench-results/chart.png"))
    opts = parser.parse_args(argv)
    reps = opts.reps if opts.reps is not None else (2 if opts.quick else 5)
    if reps < 1:
        parser.error("--reps must be at least 1")
    settings = Settings(quick=opts.quick, reps=reps)
    rows: list[Row] = []
    started = time.monotonic()
    timings = {}
    for name, run in GROUPS.items():
        if opts.only and name not in opts.only:
            continue
        t0 = time.monotonic()
        print(f"running {name} ...", flush=True)
        rows += run(settings)
        timings[name] = round(time.monotonic() - t0, 1)
    report.print_table(rows)
    meta = {
        "quick": opts.quick,
        "reps": reps,
        "seconds": timings,
        "total_seconds": round(time.monotonic() - started, 1),
    }
    report.write_json(opts.json, rows, meta)
    print(f"results: {opts.json}")
    if report.write_chart(opts.chart, rows):
        print(f"chart: {opts.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
