"""The results of a run: the printed table, the JSON file and the PNG chart."""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from benches.measure import Row

__all__ = ["print_table", "ratio_of", "write_chart", "write_json"]

HIGHER_IS_BETTER = ("/s",)


def ratio_of(row: Row, rows: list[Row]) -> float | None:
    """The row's ratio to its baseline (same group), or None: the median of the
    per-repetition ratios for a paired row, else the ratio of the medians."""
    if row.baseline is None or row.median is None:
        return None
    for other in rows:
        if other.group == row.group and other.name == row.baseline and other.median:
            if row.paired and len(other.samples) == len(row.samples):
                return statistics.median(
                    a / b for a, b in zip(row.samples, other.samples, strict=True)
                )
            return row.median / other.median
    return None


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:,.2f} M"
    if x >= 10_000:
        return f"{x:,.0f}"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _cells(row: Row, rows: list[Row]) -> list[str]:
    """group, row, median, unit, spread, ratio, vs, target, met."""
    if row.na is not None:
        return [row.group, row.name, "n/a", row.unit, "", "", "", "", row.na]
    ratio = ratio_of(row, rows)
    q = row.quartiles()
    spread = f"{_num(row.low)} … {_num(row.high)}"
    if q is not None and len(row.samples) >= 4:
        spread += f" (IQR {_num(q[0])} … {_num(q[1])})"
    target = "" if row.target is None else str(row.target)
    met = row.target.met(row.median, ratio) if row.target is not None else None
    mark = "" if met is None else ("✓" if met else "✗")
    return [
        row.group,
        row.name,
        _num(row.median),
        row.unit,
        spread,
        "" if ratio is None else f"{ratio:.2f}×",
        row.baseline or "",
        target,
        mark,
    ]


HEADERS = ["group", "row", "median", "unit", "min … max", "ratio", "ratio to", "target", ""]


def print_table(rows: list[Row]) -> None:
    """Print the results (rich when installed, else aligned plain text)."""
    cells = [_cells(r, rows) for r in rows]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(cells)
        return
    width = max(shutil.get_terminal_size((200, 40)).columns, 200)
    console = Console(width=width if not sys.stdout.isatty() else None)
    table = Table(title="pynenc-replay benchmarks (median of repetitions)")
    for i, h in enumerate(HEADERS):
        table.add_column(h, justify="right" if i in (2, 5) else "left", no_wrap=i != 4)
    previous = None
    for c in cells:
        if previous is not None and c[0] != previous:
            table.add_section()
        previous = c[0]
        style = "red" if c[8] == "✗" else ("green" if c[8] == "✓" else None)
        table.add_row(*c, style=style)
    console.print(table)


def _print_plain(cells: list[list[str]]) -> None:
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADERS)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    print(line)
    print("-" * len(line))
    for c in cells:
        padded = zip(c, widths, strict=True)
        print(
            "  ".join(
                (v.rjust(w) if i in (2, 5) else v.ljust(w)) for i, (v, w) in enumerate(padded)
            )
        )


def _row_json(row: Row, rows: list[Row]) -> dict[str, Any]:
    ratio = ratio_of(row, rows)
    q = row.quartiles()
    return {
        "group": row.group,
        "name": row.name,
        "unit": row.unit,
        "status": "n/a" if row.na is not None else "ok",
        "reason": row.na,
        "median": row.median,
        "min": row.low,
        "max": row.high,
        "q1": None if q is None else q[0],
        "q3": None if q is None else q[1],
        "samples": row.samples,
        "baseline": row.baseline,
        "paired": row.paired,
        "ratio": ratio,
        "target": None if row.target is None else str(row.target),
        "target_met": None if row.target is None else row.target.met(row.median, ratio),
        "note": row.note,
    }


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    """Write every row (with its samples) and the run's settings to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        **meta,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    doc = {"meta": meta, "rows": [_row_json(r, rows) for r in rows]}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_chart(path: Path, rows: list[Row]) -> bool:
    """Draw the chart to `path`: every ratio that has a target, beside its target, then each
    group's medians. Returns False (after a notice) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart skipped: matplotlib is not installed (pip install -e '.[bench]')")
        return False
    measured = [r for r in rows if r.na is None and r.median]
    targeted = [r for r in measured if r.target is not None]
    groups = list(dict.fromkeys(r.group for r in measured))
    heights = [max(1.5, 0.32 * len(targeted) + 0.8)]
    heights += [max(1.5, 0.32 * sum(r.group == g for r in measured) + 0.8) for g in groups]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(11, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    ax = axes[0]
    for i, r in enumerate(targeted):
        ratio = ratio_of(r, rows)
        value = ratio if r.target.of == "ratio" else r.median  # type: ignore[union-attr]
        met = r.target.met(r.median, ratio)  # type: ignore[union-attr]
        ax.barh(i, value or 0, color="tab:green" if met else "tab:red")
        ax.plot([r.target.bound], [i], marker="|", markersize=14, color="black")  # type: ignore[union-attr]
    ax.set_yticks(
        range(len(targeted)),
        [
            f"{r.group}: {r.name}" + (" (×)" if r.target.of == "ratio" else f" ({r.unit})")  # type: ignore[union-attr]
            for r in targeted
        ],
        fontsize=7,
    )
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title("targets: bar = measured (green met, red missed), | = target", fontsize=9)
    for ax, g in zip(axes[1:], groups, strict=True):
        mine = [r for r in measured if r.group == g]
        ax.barh(
            range(len(mine)),
            [r.median for r in mine],
            xerr=[[r.median - r.low for r in mine], [r.high - r.median for r in mine]],  # type: ignore[operator]
            color="tab:blue",
            capsize=2,
        )
        ax.set_yticks(range(len(mine)), [f"{r.name} ({r.unit})" for r in mine], fontsize=7)
        for i, r in enumerate(mine):
            ax.annotate(
                _num(r.median),
                (r.median, i),
                xytext=(3, 0),
                textcoords="offset points",  # type: ignore[arg-type]
                va="center",
                fontsize=6,
            )
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(f"{g} (median, min…max; mixed units, log scale)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
