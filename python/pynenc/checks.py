"""Checks of the settings users pass (app, task, worker and store options).

Each returns the value in its plain Python type, so numpy scalars and other integer or real
types work, and refuses anything else with `InvalidArgumentError` naming the setting.
"""

from __future__ import annotations

import math
import numbers
import operator

from pynenc.errors import InvalidArgumentError

__all__ = ["seconds", "switch", "whole"]


def whole(name: str, value: object, *, least: int, hint: str = "") -> int:
    """`value` as an `int` of at least `least` (any integer type but `bool`)."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number < least:
        raise InvalidArgumentError(f"{name} must be a whole number >= {least}{hint}, got {value!r}")
    return number


def seconds(name: str, value: object, *, positive: bool) -> float:
    """`value` as a finite `float` of seconds, > 0 when `positive`, else >= 0."""
    number = None
    try:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)
        elif hasattr(type(value), "__index__") and not isinstance(value, bool):
            number = float(operator.index(value))  # type: ignore[arg-type]
    except (OverflowError, TypeError, ValueError):
        number = None
    if number is not None and math.isfinite(number) and (number > 0 if positive else number >= 0):
        return number
    least = "positive" if positive else "at least 0"
    raise InvalidArgumentError(f"{name} must be a finite number of seconds, {least}, got {value!r}")


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
