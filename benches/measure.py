"""Repetition, summary statistics and the `Row` every group reports."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Row", "Settings", "Target", "per_op_ns", "rate", "repeat", "temp_dir"]


@dataclass(frozen=True)
class Settings:
    """Sizes of one run: `quick` is tiny (a smoke test), the default is the documented run."""

    quick: bool
    reps: int

    def n(self, full: int, quick: int) -> int:
        """`full` operations normally, `quick` in quick mode."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    """A bound on a row: on its ratio to its baseline (`of="ratio"`) or on its value."""

    op: str  # "<=" or ">="
    bound: float
    of: str = "ratio"

    def met(self, value: float | None, ratio: float | None) -> bool | None:
        x = ratio if self.of == "ratio" else value
        if x is None:
            return None
        return x <= self.bound if self.op == "<=" else x >= self.bound

    def __str__(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.of == "ratio":
            return f"{sign} {self.bound:g}×"
        return f"{sign} {self.bound:,.0f}" if self.bound >= 100 else f"{sign} {self.bound:g}"


@dataclass
class Row:
    """One measured figure: `samples` holds one value per repetition.

    `baseline` names the row its ratio is taken against (row value / baseline value). With
    `paired`, sample i of the row and of its baseline were taken in the same repetition, one
    right after the other, and the ratio is the median of the per-repetition ratios: a shared
    machine that slows down for a while slows both sides of a pair alike. `na` is the reason
    when the figure could not be measured in this run.
    """

    group: str
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    baseline: str | None = None
    target: Target | None = None
    note: str = ""
    na: str | None = None
    paired: bool = False

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def low(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def high(self) -> float | None:
        return max(self.samples) if self.samples else None

    def quartiles(self) -> tuple[float, float] | None:
        if not self.samples:
            return None
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[0], q[2]


def repeat(measure: Callable[[], float], reps: int) -> list[float]:
    """`measure()` run `reps` times; one value per run."""
    return [measure() for _ in range(reps)]


def per_op_ns(elapsed_ns: int, n: int) -> float:
    """Nanoseconds per operation."""
    return elapsed_ns / n


def rate(count: int, elapsed_ns: int) -> float:
    """Operations per second."""
    return count * 1e9 / elapsed_ns


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory for one measurement's store, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"pynenc-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
