"""The second helper of the chain checkout -> stamp -> read_clock."""

import time as _time


def read_clock() -> float:
    return _time.time()  # expect: PNR001


def not_reached_from_any_task() -> float:
    return _time.monotonic()
