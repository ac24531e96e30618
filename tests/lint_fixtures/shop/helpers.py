"""Helpers the tasks call; only what a task reaches is flagged."""

import random
import time

from shop import clock


def stamp() -> str:
    return f"{clock.read_clock():.0f}"


def ping(n: int) -> int:
    return pong(n - 1) if n else 0


def pong(n: int) -> int:
    jitter = random.random()  # expect: PNR004
    return ping(n) + int(jitter)


def load_settings() -> str:
    with open("settings.toml") as handle:
        return handle.read()


def safe_clock() -> float:
    return time.perf_counter()  # expect: PNR002


def record_all(task: object, skus: list[str]) -> None:
    for sku in skus:
        task.wf.set_data(sku, True)  # type: ignore[attr-defined]


def tick() -> int:
    return time.monotonic_ns()
