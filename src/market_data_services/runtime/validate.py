"""Argument checks shared by the runtime: each error names the argument and the value."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_LABEL_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")


def seconds(value: float | timedelta, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` in seconds; reject negatives, NaN and infinity (and zero unless allowed)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value:g}")
    return value


def positive_int(value: int, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def fraction(value: float, name: str, *, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bound = "0 <= x <= 1" if allow_zero else "0 < x <= 1"
        raise ValueError(f"{name} must satisfy {bound}, got {value}")
    return float(value)


def label_value(value: str, name: str) -> str:
    """A name used as a Prometheus label value: short, printable, starting with a letter."""
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        raise ValueError(
            f"{name} must be 1-64 characters of letters, digits, '_', '.', ':' or '-' "
            f"starting with a letter (it becomes a Prometheus label value), got {value!r}"
        )
    return value
