"""Group `scale`: long workflows. Per-op cost of `wf.random()` and store bytes per journal entry
for 10^3 … 10^6 operations, replay throughput of the longest, and the peak RSS of its replay,
measured alone in a subprocess (`python -m benches.scale STORE INVOCATION`).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from benches import tasks
from benches.measure import Row, Settings, Target, temp_dir

__all__ = ["run"]

GROUP = "scale"
ROOT = Path(__file__).resolve().parent.parent


def _exp(n: int) -> str:
    return f"10^{len(str(n)) - 1}"


def _data_size(store_dir: Path) -> int:
    return (store_dir / "data.mdb").stat().st_size


def _workflow(d: Path, n: int) -> tuple[float, float, float, str]:
    """Record a workflow of `n` random draws on a fresh store in `d`, then replay it:
    (ns/op, store bytes per entry, replay entries/s, invocation id)."""
    app = tasks.fresh_app(d, sync=True)
    app.store.flush()  # create the environment before measuring its growth
    before = _data_size(d)
    inv = tasks.run_task(app, tasks.op_loop, "random", n)
    per_op = tasks.LAST["ns"] / n
    grown = (_data_size(d) - before) / n
    t0 = time.perf_counter_ns()
    app.replay(inv.invocation_id)
    replay = n * 1e9 / (time.perf_counter_ns() - t0)
    return per_op, grown, replay, inv.invocation_id


def _replay_rss_mb(store_dir: Path, invocation_id: str) -> float:
    """Peak RSS (MB) above its start of a fresh process replaying the invocation."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run(
        [sys.executable, "-m", "benches.scale", str(store_dir), invocation_id],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
        check=True,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_mb_above_start"])


def run(s: Settings) -> list[Row]:
    sizes = (100, 1_000) if s.quick else (1_000, 10_000, 100_000, 1_000_000)
    small, big = _exp(sizes[0]), _exp(sizes[-1])
    per_op: dict[int, list[float]] = {n: [] for n in sizes}
    size: dict[int, list[float]] = {n: [] for n in sizes}
    replay: list[float] = []
    rss: list[float] = []
    for _ in range(s.reps):
        for n in sizes:
            with temp_dir("scale") as d:
                op, grown, rate, inv = _workflow(d, n)
                per_op[n].append(op)
                size[n].append(grown)
                if n == sizes[-1]:
                    replay.append(rate)
                    rss.append(_replay_rss_mb(d, inv))
    rows = []
    for n in sizes:
        last = n == sizes[-1]
        rows.append(
            Row(
                GROUP,
                f"wf.random() in a {_exp(n)}-op workflow",
                "ns/op",
                per_op[n],
                baseline=f"wf.random() in a {small}-op workflow" if last else None,
                target=Target("<=", 1.2) if last else None,
            )
        )
    for n in sizes:
        last = n == sizes[-1]
        rows.append(
            Row(
                GROUP,
                f"store bytes per entry, {_exp(n)} ops",
                "B/entry",
                size[n],
                target=Target("<=", 32, of="value") if last else None,
                note="data.mdb growth / entries",
            )
        )
    rows.append(
        Row(
            GROUP,
            f"replay of the {big}-op workflow",
            "entries/s",
            replay,
            note="app.replay, wall time",
        )
    )
    rows.append(
        Row(
            GROUP,
            f"peak RSS of the {big}-op replay",
            "MB",
            rss,
            target=Target("<=", 200, of="value"),
            note="subprocess, peak above its start",
        )
    )
    return rows


def _rss_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _maxrss_kib() -> int:
    """This process's high-water RSS in KiB (`ru_maxrss` counts bytes on macOS, KiB elsewhere)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _replay_alone(store_dir: str, invocation_id: str) -> None:
    """Replay the invocation in this fresh process; print its peak RSS above the start.

    `ru_maxrss` survives `exec`, so a subprocess starts with its parent's high-water mark; on
    Linux the start is the current RSS and the peak this process's own high-water mark (VmHWM),
    elsewhere the difference of `ru_maxrss`.
    """
    app = tasks.fresh_app(Path(store_dir), sync=True)
    app.store  # noqa: B018 - open the store before taking the starting point
    start = _rss_kib("VmRSS") or _maxrss_kib()
    app.replay(invocation_id)
    peak = _rss_kib("VmHWM") or _maxrss_kib()
    print(json.dumps({"peak_mb_above_start": (peak - start) / 1024}))


if __name__ == "__main__":
    _replay_alone(sys.argv[1], sys.argv[2])
