"""Checks of the settings users pass (app, task, worker and store options).

Each returns the value in its plain Python type, so numpy scalars and other integer or real
types work, and refuses anything else, or anything outside the setting's documented range,
with `InvalidArgumentError` naming the setting.
"""

from __future__ import annotations

import math
import numbers
import operator

from pynenc.errors import InvalidArgumentError

__all__ = ["seconds", "switch", "whole"]

# The documented ranges of the settings (docs/operations.md lists each with its setting).
#: `max_payload_bytes`: 1 byte to 1 GiB.
MAX_PAYLOAD_BYTES = 1 << 30
#: `lease_seconds`: 0.1 s to 7 days.
LEASE_SECONDS = (0.1, 7 * 86400.0)
#: `store_unavailable_seconds`: 0 (fail at once) to one day.
UNAVAILABLE_SECONDS = (0.0, 86400.0)
#: `max_recoveries` and `max_retries`: 0 to 10,000.
MAX_COUNT = 10_000
#: `flush_interval_ms`: 0 to one hour.
MAX_FLUSH_INTERVAL_MS = 3_600_000
#: `retry_backoff` and a worker's `grace_seconds`: 0 to one day (also the longest wait
#: between two attempts of a task).
MAX_WAIT_SECONDS = 86400.0
#: A worker's `idle_poll_seconds`: above 0, at most one minute.
MAX_IDLE_POLL_SECONDS = 60.0
#: A worker's `concurrency`: 1 to 1024 threads.
MAX_CONCURRENCY = 1024
#: `StoreOptions.map_size`: 1 byte (rounded up by LMDB) to 16 TiB.
MAX_MAP_SIZE = 1 << 44
#: `StoreOptions.max_readers`: 1 to 65,536.
MAX_READERS = 1 << 16


def whole(name: str, value: object, *, least: int, most: int | None = None, hint: str = "") -> int:
    """`value` as an `int` from `least` to `most` (any integer type but `bool`)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number < least or (most is not None and number > most):
        span = f">= {least}" if most is None else f"from {least} to {most}"
        raise InvalidArgumentError(f"{name} must be a whole number {span}{hint}, got {value!r}")
    return number


def seconds(
    name: str, value: object, *, positive: bool, least: float = 0.0, most: float | None = None
) -> float:
    """`value` as a finite `float` of seconds: at least `least` (and > 0 when `positive`), at
    most `most`."""
    number = None
    try:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
        elif hasattr(type(value), "__index__") and not isinstance(value, bool):
            number = float(operator.index(value))  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        number = None
    if (
        number is not None
        and math.isfinite(number)
        and (number > 0 if positive else number >= 0)
        and number >= least
        and (most is None or number <= most)
    ):
        return number
    if least > 0:
        span = f"at least {least:g}"
    else:
        span = "positive" if positive else "at least 0"
    if most is not None:
        span += f" and at most {most:g}"
    raise InvalidArgumentError(f"{name} must be a finite number of seconds, {span}, got {value!r}")


def switch(name: str, value: object) -> bool:
    """`value` as a `bool`: True/False, a numpy bool, or an integer 1/0."""
    if isinstance(value, bool):
        return value
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"):  # numpy.bool_
        return bool(value)
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number in (0, 1):
        return bool(number)
    raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
