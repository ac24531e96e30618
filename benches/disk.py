"""Group `disk`: what one fsync costs on this machine's disk, by the shape of what it flushes.

A commit writes the B-tree pages it changed, then syncs. LMDB puts those pages wherever its free
list has room, so the pages of one commit are seldom next to each other, and on a disk that
serves each discontiguous write as its own I/O that shape, not the byte count, sets the cost of
a commit (see `docs/performance.md`, concurrency). This group writes 4 KiB pages into a file
whose blocks already exist (as LMDB's do) and times the `fdatasync` that follows: one page, a
run of contiguous pages, and as many pages scattered across the file.
"""

from __future__ import annotations

import os
import random
import statistics
import time

from benches.measure import Row, Settings, temp_dir

__all__ = ["run"]

GROUP = "disk"
PAGE = 4096
PAGES = 16
FILE_PAGES = 4096  # a 16 MiB file
# macOS has no fdatasync: there the row times fsync, which flushes the same blocks.
_datasync = getattr(os, "fdatasync", os.fsync)


def _sync_us(fd: int, pages: list[int], block: bytes) -> float:
    t0 = time.perf_counter_ns()
    for p in pages:
        os.pwrite(fd, block, p * PAGE)
    _datasync(fd)
    return (time.perf_counter_ns() - t0) / 1e3


def run(s: Settings) -> list[Row]:
    tries = s.n(40, 4)
    rng = random.Random(7)
    one: list[float] = []
    contiguous: list[float] = []
    scattered: list[float] = []
    with temp_dir("disk") as d:
        fd = os.open(d / "pages", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, bytes(FILE_PAGES * PAGE))  # allocate every block before timing
            os.fsync(fd)
            block = b"\x01" * PAGE
            for _ in range(s.reps):
                # Medians of `tries` syncs of each shape, interleaved (paired per repetition).
                a, b, c = [], [], []
                for _ in range(tries):
                    a.append(_sync_us(fd, [rng.randrange(FILE_PAGES)], block))
                    start = rng.randrange(FILE_PAGES - PAGES)
                    b.append(_sync_us(fd, list(range(start, start + PAGES)), block))
                    c.append(_sync_us(fd, rng.sample(range(FILE_PAGES), PAGES), block))
                one.append(statistics.median(a))
                contiguous.append(statistics.median(b))
                scattered.append(statistics.median(c))
        finally:
            os.close(fd)
    contiguous_name = f"write {PAGES} contiguous pages + fdatasync"
    return [
        Row(GROUP, "write 1 page + fdatasync", "µs", one),
        Row(GROUP, contiguous_name, "µs", contiguous),
        Row(
            GROUP,
            f"write {PAGES} scattered pages + fdatasync",
            "µs",
            scattered,
            baseline=contiguous_name,
            paired=True,
            note="as a commit's pages lie in an LMDB file",
        ),
    ]
